//! A restore step's plan: what to restore from (a backup step or a path) and how.

use std::fmt::Write as _;

use serde::Serialize;

use super::{Action, Planner, Text};
use crate::model;

/// Where a restore reads its backup.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreFrom {
    /// The backup an earlier step took: its `path` output.
    Step(String),
    Path(Text),
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanRestore {
    pub from: RestoreFrom,
    /// A database name; the run's database when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Text>,
    pub clean: bool,
    pub jobs: u32,
    pub single_transaction: bool,
    pub terminate_connections: bool,
    pub mode: model::RestoreMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pick: Option<model::Pick>,
}

impl PlanRestore {
    /// In one line, for the progress display; `shown` renders a template.
    pub fn describe(&self, shown: &dyn Fn(&Text) -> String) -> String {
        format!(
            "restore from {}",
            match &self.from {
                RestoreFrom::Step(id) => format!("steps.{id}"),
                RestoreFrom::Path(t) => shown(t),
            }
        )
    }
}

impl Planner<'_> {
    pub(super) fn restore(&mut self, r: &model::RestoreStep) -> Action {
        let jobs = r.jobs.unwrap_or(1);
        Action::Restore(Box::new(PlanRestore {
            from: match r.from_step() {
                Some(id) => RestoreFrom::Step(id.to_string()),
                None => RestoreFrom::Path(self.text(&r.from)),
            },
            target: r.target.as_ref().map(|t| self.text(t)),
            clean: r.clean,
            jobs,
            single_transaction: r.single_transaction.unwrap_or(jobs == 1),
            terminate_connections: r.terminate_connections,
            mode: r.mode,
            pick: r.pick,
        }))
    }
}

pub(super) fn write(o: &mut String, r: &PlanRestore, inner: usize) {
    let w = inner + 2;
    let from = match (&r.from, r.pick) {
        (RestoreFrom::Step(id), _) => format!("the backup of steps.{id}"),
        (RestoreFrom::Path(t), Some(model::Pick::Newest)) => {
            format!("the newest verified backup under {}", t.text)
        }
        (RestoreFrom::Path(t), None) => t.text.clone(),
    };
    let target = r.target.as_ref().map_or_else(
        || "the run's database".to_string(),
        |t| format!("database `{}`", t.text),
    );
    let _ = writeln!(o, "{:w$}from {from} into {target}", "");
    let mut how = vec!["re-check sha256s first".to_string()];
    if r.clean {
        how.push("drop its objects first (--clean --if-exists)".into());
    }
    how.push(if r.single_transaction {
        "one transaction".to_string()
    } else {
        format!("{} jobs", r.jobs)
    });
    how.push(if r.terminate_connections {
        "terminate other sessions".to_string()
    } else {
        "refuse if other sessions are connected".to_string()
    });
    how.push("compare row counts with the manifest".into());
    let _ = writeln!(o, "{:w$}{}", "", how.join("; "));
}
