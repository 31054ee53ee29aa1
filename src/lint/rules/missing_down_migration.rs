//! `missing-down-migration`: an up migration with no down, or a down that
//! holds only comments, cannot be rolled back or rehearsed.
//! docs/lint/missing-down-migration.md

use super::super::{Finding, Place, Severity};
use super::finding;
use crate::migrations::{Down, Migration};

/// The rule, its severity, and what it catches.
pub const RULE: (&str, Severity, &str) = (
    "missing-down-migration",
    Severity::Error,
    "an up migration with no down, or a down that holds only comments",
);

pub(super) fn check(m: &Migration, place: &Place<'_>, out: &mut Vec<Finding>) {
    if let Down::Missing(why) = &m.down {
        out.push(finding(
            RULE.0,
            format!(
                "migration {} has no down: {why}",
                crate::migrations::labeled(&m.version, &m.name)
            ),
            "write the down that undoes it exactly; `runbook` can rehearse it (docs/rehearsal.md)",
            place,
            0,
        ));
    }
}
