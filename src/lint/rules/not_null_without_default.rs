//! `not-null-without-default`: a NOT NULL column added without a default
//! fails on any existing row, and SET NOT NULL without a validated CHECK
//! first scans the table under ACCESS EXCLUSIVE.
//! docs/lint/not-null-without-default.md

use super::super::facts::Facts;
use super::super::{Finding, Place, Severity};
use super::{SetState, finding};
use crate::pg::statements::Statement;

/// The rule, its severity, and what it catches.
pub const RULE: (&str, Severity, &str) = (
    "not-null-without-default",
    Severity::Error,
    "a NOT NULL column added without a default, or SET NOT NULL without a validated check first",
);

/// Judge one statement; `state` has already seen the statements before it
/// (and this one's NOT NULL checks).
pub(super) fn check(
    st: &Statement,
    f: &Facts,
    state: &SetState,
    place: &Place<'_>,
    out: &mut Vec<Finding>,
) {
    let table = &f.table;
    if state.new_tables.contains(table) {
        return;
    }
    for col in &f.not_null_no_default {
        out.push(finding(
            RULE.0,
            format!("{table}.{col} is added NOT NULL without a default: it fails on any existing row"),
            "add it nullable, backfill it, then add a CHECK (col IS NOT NULL) NOT VALID, VALIDATE it, and SET NOT NULL",
            place,
            st.offset,
        ));
    }
    for col in &f.set_not_null {
        if state.not_null_checks.validated(table, col) {
            continue;
        }
        let unvalidated = state.not_null_checks.pending(table, col);
        out.push(finding(
            RULE.0,
            if unvalidated {
                format!("SET NOT NULL on {table}.{col} after a CHECK added NOT VALID and never validated: PostgreSQL still scans the whole table under ACCESS EXCLUSIVE")
            } else {
                format!("SET NOT NULL on {table}.{col} with no validated CHECK before it: it scans the whole table under ACCESS EXCLUSIVE")
            },
            "first ADD CONSTRAINT ... CHECK (col IS NOT NULL) NOT VALID and VALIDATE CONSTRAINT (outside the same transaction); SET NOT NULL then skips the scan",
            place,
            st.offset,
        ));
    }
}
