//! A snapshot step's plan: where the schema snapshot goes and what it must equal.

use std::fmt::Write as _;

use serde::Serialize;

use super::{Action, Planner, Text};
use crate::model;

#[derive(Debug, Clone, Serialize)]
pub struct PlanSnapshot {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub save: Option<Text>,
    /// Another database of the same server to snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<Text>,
    /// The id of the earlier snapshot step it must equal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_as: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    pub ignore_column_order: bool,
}

impl PlanSnapshot {
    /// In one line, for the progress display; `shown` renders a template.
    pub fn describe(&self, _shown: &dyn Fn(&Text) -> String) -> String {
        "schema snapshot".into()
    }
}

impl Planner<'_> {
    pub(super) fn snapshot(&mut self, x: &model::SnapshotStep) -> Action {
        Action::Snapshot(Box::new(PlanSnapshot {
            save: x.save.as_ref().map(|t| self.text(t)),
            database: x.database.as_ref().map(|t| self.text(t)),
            same_as: x
                .expect
                .as_ref()
                .and_then(|e| e.same_as_step())
                .map(str::to_string),
            hash: x.expect.as_ref().and_then(|e| e.hash.clone()),
            ignore_column_order: x.expect.as_ref().is_some_and(|e| e.ignore_column_order),
        }))
    }
}

pub(super) fn write(o: &mut String, x: &PlanSnapshot, inner: usize) {
    let pad = inner + 2;
    let _ = writeln!(
        o,
        "{:pad$}schema snapshot from the catalog, and its hash",
        ""
    );
    if let Some(db) = &x.database {
        let _ = writeln!(o, "{:pad$}of database {}", "", db.text);
    }
    if let Some(id) = &x.same_as {
        let _ = writeln!(o, "{:pad$}must equal steps.{id}", "");
    }
    if let Some(h) = &x.hash {
        let _ = writeln!(o, "{:pad$}must have hash {h}", "");
    }
    if let Some(t) = &x.save {
        let _ = writeln!(o, "{:pad$}saved to {}", "", t.text);
    }
}
