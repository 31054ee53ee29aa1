//! How the steps that run tools and SQL of their own (backup, restore,
//! rehearse) say they failed: one shape for every such failure.

use std::time::Duration;

use super::{Done, Fail, cancelled_error, child, timeout_error};
use crate::events::ErrorKind;
use crate::events::{ErrorInfo, StepStatus};
use crate::model::ErrorClass;
use crate::pg::tools;

pub(crate) fn failed(class: ErrorKind, message: String, hint: Option<String>) -> Fail {
    Fail::new(
        StepStatus::Failed,
        ErrorInfo {
            class,
            message,
            hint,
            ..ErrorInfo::default()
        },
    )
}

pub(crate) fn tool_failure(e: &tools::ToolError) -> Fail {
    failed(ErrorKind::Tool, e.to_string(), Some(e.hint()))
}

pub(crate) fn sql_failure(what: &str, e: &ErrorInfo) -> Fail {
    Fail::new(
        StepStatus::Failed,
        ErrorInfo {
            message: format!("{what}: {}", e.message),
            ..e.clone()
        },
    )
}

/// Lines of a verbose pg_dump or pg_restore worth showing: problems, not progress.
pub(crate) fn is_problem(line: &str) -> bool {
    ["error:", "warning:", "detail:", "hint:", "FATAL:", "ERROR:"]
        .iter()
        .any(|m| line.contains(m))
}

/// A child that did not exit 0, as a step failure.
pub(crate) fn child_failure(name: &str, ran: &child::Ran, timeout: Option<Duration>) -> Fail {
    let (status, mut error) = match ran.ended {
        Some(StepStatus::TimedOut) => (StepStatus::TimedOut, timeout_error(timeout)),
        Some(_) => (StepStatus::Cancelled, cancelled_error()),
        None => (
            StepStatus::Failed,
            ErrorInfo {
                class: ErrorKind::Exit,
                message: match ran.code {
                    Some(c) => format!("{name} failed (exit code {c}): {}", last_error(ran)),
                    None => format!("{name} was killed by a signal"),
                },
                ..ErrorInfo::default()
            },
        ),
    };
    let lock = ran.stderr.all.contains("could not obtain lock");
    if error.hint.is_none() {
        error.hint = dump_tool_hint(&ran.stderr.all);
    }
    if lock {
        error.class = ErrorKind::LockTimeout;
        error.hint = Some(
            "another session holds a lock on a table; its `lock_timeout` setting bounds the wait"
                .into(),
        );
    }
    Fail {
        status,
        error,
        retry_class: lock.then_some(ErrorClass::LockTimeout),
        partial: Done {
            stderr_tail: ran.stderr.tail(),
            ..Done::default()
        },
        unchanged: None,
        judged: false,
    }
}

/// What to do about the failures of pg_dump and pg_restore that managed
/// databases' roles meet (not a superuser, no `BYPASSRLS`), from their
/// output: row-level security in the way of a dump, and an owner the
/// restoring role may not set.
fn dump_tool_hint(stderr: &str) -> Option<String> {
    // The run's session logged in before the tool was started.
    if [
        "password authentication failed",
        "PAM authentication failed",
    ]
    .iter()
    .any(|m| stderr.contains(m))
    {
        return Some(crate::pg::db::LATER_LOGIN_REFUSED.into());
    }
    if stderr.contains("query would be affected by row-level security policy") {
        return Some(
            "pg_dump reads every row, past row-level security, or fails: back up as the table's owner (where the table has no FORCE ROW LEVEL SECURITY), a superuser, or a role with BYPASSRLS".into(),
        );
    }
    let owner = stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Command was: ALTER "))
        .find_map(|l| {
            l.split_once(" OWNER TO ")
                .map(|(_, to)| to.trim_end_matches(';').trim().to_string())
        })?;
    if stderr.contains("permission denied for schema") {
        return Some(format!(
            "pg_restore gives each object its owner before it restores any privilege: {owner} needs CREATE on that schema in the target before the restore (the dump grants it only later); or restore as a superuser"
        ));
    }
    (stderr.contains("must be member of role") || stderr.contains("must be able to SET ROLE")).then(|| {
        format!(
            "the restoring role may give an object to {owner} only as a member of it (GRANT {owner} TO the restoring role), or as a superuser"
        )
    })
}

/// The message of a failed pg_dump or pg_restore: its last error line.
pub(crate) fn last_error(ran: &child::Ran) -> String {
    let tail = ran.stderr.tail().unwrap_or_default();
    tail.lines()
        .rev()
        .find(|l| l.contains("error:") || l.contains("ERROR:") || l.contains("FATAL:"))
        .or_else(|| tail.lines().last())
        .unwrap_or("no message")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::dump_tool_hint;

    #[test]
    fn a_managed_roles_dump_and_restore_failures_say_what_to_do() {
        let owner = "pg_restore: creating TABLE \"public.audit\"\n\
            pg_restore: from TOC entry 217; 1259 18981 TABLE audit other\n\
            pg_restore: error: could not execute query: ERROR:  permission denied for schema public\n\
            Command was: ALTER TABLE public.audit OWNER TO other;\n";
        let hint = dump_tool_hint(owner).unwrap();
        assert!(hint.contains("other needs CREATE on that schema"), "{hint}");
        let member = owner.replace(
            "permission denied for schema public",
            "must be able to SET ROLE \"other\"",
        );
        assert!(
            dump_tool_hint(&member)
                .unwrap()
                .contains("GRANT other TO the restoring role")
        );
        let expired = "pg_dump: error: connection to server at \"db\" (10.0.0.5), port 5432 failed: FATAL:  PAM authentication failed for user \"app\"";
        assert!(
            dump_tool_hint(expired)
                .unwrap()
                .contains("an RDS IAM token lasts 15 minutes")
        );
        let rls = "pg_dump: error: query failed: ERROR:  query would be affected by row-level security policy for table \"audit\"";
        assert!(dump_tool_hint(rls).unwrap().contains("BYPASSRLS"));
        // Another failure on a CREATE has no owner to name.
        assert_eq!(
            dump_tool_hint(
                "pg_restore: error: could not execute query: ERROR:  permission denied for schema public\nCommand was: CREATE TABLE public.t (id integer);\n"
            ),
            None
        );
    }
}
