//! `foreign-key-without-index`: a foreign key whose columns no index in the
//! same set starts with; deletes and updates of the referenced rows then
//! scan the referencing table. Judged once the whole set is seen, since
//! the index may come later. docs/lint/foreign-key-without-index.md

use std::collections::HashMap;

use super::super::facts::Facts;
use super::super::{Finding, Place, Severity};
use super::{SetState, finding};
use crate::pg::statements::Statement;

/// The rule, its severity, and what it catches.
pub const RULE: (&str, Severity, &str) = (
    "foreign-key-without-index",
    Severity::Warning,
    "a foreign key whose columns no index in the same set starts with",
);

/// Note the statement's foreign keys; they are judged in `finish`.
pub(super) fn see(st: &Statement, f: &Facts, state: &mut SetState, place: &Place<'_>) {
    for (t, cols) in &f.foreign_keys {
        let fnd = finding(
            RULE.0,
            format!(
                "the foreign key on {t}({}) has no index starting with its columns",
                cols.join(", ")
            ),
            "create an index (CONCURRENTLY) on the referencing columns: deletes and updates of the referenced rows scan this table without one",
            place,
            st.offset,
        );
        state.foreign_keys.push((t.clone(), cols.clone(), fnd));
    }
}

/// The foreign keys no index of the set covers.
pub(super) fn finish(state: SetState, out: &mut Vec<Finding>) {
    let mut by_table: HashMap<&str, Vec<&[String]>> = HashMap::new();
    for (t, cols) in &state.indexes {
        by_table.entry(t.as_str()).or_default().push(cols);
    }
    for (t, cols, f) in state.foreign_keys {
        let covered = by_table.get(t.as_str()).is_some_and(|list| {
            list.iter()
                .any(|ic| ic.len() >= cols.len() && ic[..cols.len()] == cols[..])
        });
        if !covered {
            out.push(f);
        }
    }
}
