//! `missing-timeout`: a shell step with no timeout where a hung command
//! would hold the release open: a phase that changes things, an undo, a
//! failure branch or `finally`. docs/lint/missing-timeout.md

use super::super::{Finding, Place, Severity};
use super::finding;
use crate::model::Step;

/// The rule, its severity, and what it catches.
pub const RULE: (&str, Severity, &str) = (
    "missing-timeout",
    Severity::Warning,
    "a shell step without a timeout in a phase that changes things, a failure branch or finally",
);

/// `changes`: where the step runs, when that needs a timeout.
pub(super) fn check(
    step: &Step,
    sp: &str,
    changes: Option<&str>,
    whole: &Place<'_>,
    at_key: &dyn Fn(&str) -> usize,
    out: &mut Vec<Finding>,
) {
    if let Some(place) = changes
        && step.timeout.is_none()
    {
        out.push(finding(
            RULE.0,
            format!("shell step `{}` has no timeout {place}", step.id),
            "set `timeout:` on the step (or in `defaults:`); a hung command otherwise holds the release open",
            whole,
            at_key(&format!("{sp}/shell")),
        ));
    }
}
