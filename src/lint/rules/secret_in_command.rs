//! `secret-in-command`: a secret param (or a var built from one) or the
//! database URL on a shell step's command line, where `ps` shows it.
//! docs/lint/secret-in-command.md

use super::super::{Finding, Place, Severity};
use super::{finding, mentions};
use crate::model::{Command, ShellStep, Step};

/// The rule, its severity, and what it catches.
pub const RULE: (&str, Severity, &str) = (
    "secret-in-command",
    Severity::Error,
    "a secret param (or a var built from one) or the database URL on a shell command line instead of in its env",
);

/// Variables whose value is a credential.
const SECRET_ENV: &[&str] = &["DATABASE_URL", "PGPASSWORD"];

/// `secrets`: `params.NAME` of each secret param, and `vars.NAME` of each
/// var built from one.
pub(super) fn check(
    step: &Step,
    sh: &ShellStep,
    sp: &str,
    secrets: &[String],
    whole: &Place<'_>,
    at_key: &dyn Fn(&str) -> usize,
    out: &mut Vec<Finding>,
) {
    let parts: Vec<&str> = match &sh.command {
        Command::Script(s) => vec![s.as_str()],
        Command::Argv(a) => a.iter().map(String::as_str).collect(),
    };
    let leak = parts.iter().find_map(|part| leaked(part, secrets));
    if let Some(what) = leak {
        out.push(finding(
            RULE.0,
            format!(
                "shell step `{}` puts {what} on its command line, where `ps` and process listings show it",
                step.id
            ),
            "pass it in `env:` and read it there: libpq tools take PGHOST/PGPASSWORD/... from the environment, which runbook sets for you",
            whole,
            at_key(&format!("{sp}/shell/command")),
        ));
    }
}

/// What secret one part of the command line shows, in words.
fn leaked(part: &str, secrets: &[String]) -> Option<String> {
    secrets
        .iter()
        .find(|s| mentions(part, s))
        .map(|s| match s.strip_prefix("params.") {
            Some(p) => format!("the secret param `{p}`"),
            None => format!("`{s}`, which is built from a secret param"),
        })
        .or_else(|| {
            SECRET_ENV.iter().find_map(|v| {
                if part.contains(&format!("${v}")) || part.contains(&format!("${{{v}}}")) {
                    Some(format!("${v}"))
                } else if part.contains(&format!("env('{v}')"))
                    || part.contains(&format!("env(\"{v}\")"))
                {
                    Some(format!("`env('{v}')`"))
                } else {
                    None
                }
            })
        })
}

#[cfg(test)]
mod tests {
    use super::leaked;

    #[test]
    fn a_secret_on_the_command_line_is_named_and_one_in_env_is_not() {
        let secrets = vec!["params.token".to_string(), "vars.auth".to_string()];
        assert_eq!(
            leaked("curl -H {{ params.token }}", &secrets).as_deref(),
            Some("the secret param `token`")
        );
        assert_eq!(
            leaked("echo {{ vars.auth }}", &secrets).as_deref(),
            Some("`vars.auth`, which is built from a secret param")
        );
        assert_eq!(
            leaked("psql $DATABASE_URL", &secrets).as_deref(),
            Some("$DATABASE_URL")
        );
        assert_eq!(leaked("echo \"$TOKEN\"", &secrets), None);
        assert_eq!(leaked("echo {{ params.tokenizer }}", &secrets), None);
    }
}
