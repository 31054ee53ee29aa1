//! `destructive-without-rollback`: a step that destroys data needs a way
//! back: its own `rollback:`, or an `on_failure` branch of its phase or of
//! the runbook. docs/lint/destructive-without-rollback.md

use super::super::steps::StepSql;
use super::super::{Finding, Place, Severity};
use super::finding;
use crate::model::{OnFailure, Runbook};

/// The rule, its severity, and what it catches.
pub const RULE: (&str, Severity, &str) = (
    "destructive-without-rollback",
    Severity::Error,
    "a destructive step with no rollback and no failure branch",
);

pub(super) fn check(
    rb: &Runbook,
    s: &StepSql<'_>,
    whole: &Place<'_>,
    at_key: &dyn Fn(&str) -> usize,
    out: &mut Vec<Finding>,
) {
    let phase_branch = s
        .phase
        .is_some_and(|p| matches!(&rb.phases[p].on_failure, OnFailure::Steps(b) if !b.is_empty()));
    if s.step.rollback.is_empty() && !phase_branch && rb.on_failure.is_empty() {
        out.push(finding(
            RULE.0,
            format!(
                "step `{}` destroys data and has no rollback, and neither its phase nor the runbook has an on_failure branch",
                s.step.id
            ),
            "add a `rollback:` (for example a restore from the backup) or an `on_failure:` branch",
            whole,
            at_key(&format!("{}/id", s.pointer)),
        ));
    }
}
