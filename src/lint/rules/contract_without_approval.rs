//! `contract-without-approval`: a contract phase removes what the old code
//! still reads, so a person approves it. docs/lint/contract-without-approval.md

use super::super::{Finding, Place, Severity};
use super::finding;
use crate::model::{PhaseKind, Runbook};

/// The rule, its severity, and what it catches.
pub const RULE: (&str, Severity, &str) = (
    "contract-without-approval",
    Severity::Error,
    "a contract phase that runs without a person approving it",
);

pub(super) fn check(
    rb: &Runbook,
    whole: &Place<'_>,
    at_key: &dyn Fn(&str) -> usize,
    out: &mut Vec<Finding>,
) {
    for (pi, phase) in rb.phases.iter().enumerate() {
        if phase.kind == PhaseKind::Contract && phase.approval.as_ref().is_none_or(|a| !a.required)
        {
            out.push(finding(
                RULE.0,
                format!(
                    "phase `{}` contracts the schema without a person approving it",
                    phase.id
                ),
                "add `approval: {prompt: ...}`; runs then stop there until `--approve` or a typed yes",
                whole,
                at_key(&format!("/phases/{pi}/kind")),
            ));
        }
    }
}
