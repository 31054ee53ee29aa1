//! `unbatched-update`: an UPDATE or DELETE over an existing table in one
//! statement locks every row it touches until it commits; a `backfill`
//! step does it in batches. docs/lint/unbatched-update.md

use super::super::facts::Facts;
use super::super::{Finding, Place, Severity};
use super::{SetState, finding};
use crate::pg::statements::Statement;

/// The rule, its severity, and what it catches.
pub const RULE: (&str, Severity, &str) = (
    "unbatched-update",
    Severity::Warning,
    "UPDATE/DELETE over an existing table in one statement; use a backfill step",
);

pub(super) fn check(
    st: &Statement,
    f: &Facts,
    state: &SetState,
    place: &Place<'_>,
    out: &mut Vec<Finding>,
) {
    let table = &f.table;
    if f.writes_rows && !f.pinned_write && !state.new_tables.contains(table) {
        out.push(finding(
            RULE.0,
            format!("{} over the existing table {table} in one statement: it locks every row it touches until it commits", st.kind),
            "use a `backfill` step: keyset batches in short transactions, resumable, with progress",
            place,
            st.offset,
        ));
    }
}
