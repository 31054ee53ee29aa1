//! `timeout-disabled`: a statement that turns off `lock_timeout` or
//! `statement_timeout` for the rest of its script (`SET lock_timeout = 0`,
//! as pg_dump's output starts, and `supabase db pull` writes it into
//! migrations). runbook sets both for every script from the step's
//! settings; after such a line, a statement that waits for a lock waits as
//! long as it is held, and every query behind it waits too.
//! docs/lint/timeout-disabled.md

use super::super::{Finding, Place, Severity};
use super::finding;
use crate::pg::statements::Statement;

/// The rule, its severity, and what it catches.
pub const RULE: (&str, Severity, &str) = (
    "timeout-disabled",
    Severity::Warning,
    "a statement that turns off lock_timeout or statement_timeout for the rest of its script",
);

const TIMEOUTS: [&str; 2] = ["lock_timeout", "statement_timeout"];

pub(super) fn check(st: &Statement, place: &Place<'_>, out: &mut Vec<Finding>) {
    let Some(name) = turned_off(&st.text) else {
        return;
    };
    let what = if name == "lock_timeout" {
        "a statement after it that waits for a lock waits as long as the lock is held, and every query that needs the table waits behind it"
    } else {
        "a statement after it runs for as long as it takes"
    };
    out.push(finding(
        RULE.0,
        format!("this turns off {name} for the rest of the script, over the step's own: {what}"),
        "delete the line (pg_dump writes it at the top of its output); runbook sets lock_timeout and statement_timeout for every script from the step's settings",
        place,
        st.offset,
    ));
}

/// The timeout a statement sets to 0 or to its default (which is 0 unless
/// the server says otherwise): `SET [SESSION|LOCAL] lock_timeout = 0`,
/// `TO DEFAULT`, or `set_config('lock_timeout', '0', ...)`.
fn turned_off(text: &str) -> Option<&'static str> {
    let lower = text.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| c.is_whitespace() || "=;(),".contains(c))
        .filter(|w| !w.is_empty())
        .collect();
    let off = |v: &str| {
        let v = v.trim_matches(['\'', '"']);
        matches!(v, "0" | "0ms" | "0s" | "default")
    };
    let named = |w: &str| TIMEOUTS.into_iter().find(|t| w.trim_matches('\'') == *t);
    match words.as_slice() {
        ["set", rest @ ..] => {
            let rest = match rest {
                ["session" | "local", r @ ..] => r,
                r => r,
            };
            match rest {
                [name, "to", value] | [name, value] if off(value) => named(name),
                _ => None,
            }
        }
        ["select", call, name, value, ..]
            if call.rsplit('.').next() == Some("set_config") && off(value) =>
        {
            named(name)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::turned_off;

    #[test]
    fn what_turns_a_timeout_off_is_told_from_what_sets_one() {
        for off in [
            "SET lock_timeout = 0;",
            "SET statement_timeout = 0;",
            "set session lock_timeout to default;",
            "SET LOCAL lock_timeout = '0';",
            "SELECT pg_catalog.set_config('lock_timeout', '0', false);",
        ] {
            assert!(turned_off(off).is_some(), "{off}");
        }
        for on in [
            "SET lock_timeout = '2s';",
            "SET idle_in_transaction_session_timeout = 0;",
            "SELECT pg_catalog.set_config('search_path', '', false);",
            "SET search_path = default;",
        ] {
            assert_eq!(turned_off(on), None, "{on}");
        }
    }
}
