//! `destructive-without-backup`: a statement that destroys data (DROP
//! TABLE/COLUMN, TRUNCATE, DELETE or UPDATE without WHERE) needs an earlier
//! backup that holds the table. docs/lint/destructive-without-backup.md

use std::collections::BTreeSet;

use super::super::steps::{Backup, covering};
use super::super::{Finding, Place, Severity};
use super::finding;

/// The rule, its severity, and what it catches.
pub const RULE: (&str, Severity, &str) = (
    "destructive-without-backup",
    Severity::Error,
    "DROP TABLE/COLUMN, TRUNCATE, or DELETE/UPDATE without WHERE with no earlier backup holding the table's data",
);

/// `destroyed`: the tables the step's statements destroy data in, with
/// the offset of each statement; `backups`: the backups before the step.
pub(super) fn check(
    step_id: &str,
    destroyed: &[(String, usize)],
    backups: &[Backup],
    place: &Place<'_>,
    out: &mut Vec<Finding>,
) {
    let mut seen = BTreeSet::new();
    for (t, offset) in destroyed {
        if !seen.insert(t.clone()) {
            continue;
        }
        if let Err(why) = covering(backups, t) {
            out.push(finding(
                RULE.0,
                format!("step `{step_id}` destroys data in {t}: {why}"),
                "add a `backup` step before it (not schema_only; its `tables:` or `schemas:` must include the table), so a restore is possible",
                place,
                *offset,
            ));
        }
    }
}
