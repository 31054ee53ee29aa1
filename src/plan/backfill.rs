//! A backfill step's plan: the batched UPDATE and its throttles.

use std::fmt::Write as _;

use serde::Serialize;

use super::{Action, Planner, Text};
use crate::duration::Duration;
use crate::model;

#[derive(Debug, Clone, Serialize)]
pub struct PlanBackfill {
    pub table: Text,
    pub set: Text,
    #[serde(rename = "where", skip_serializing_if = "Option::is_none")]
    pub where_: Option<Text>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub key: Vec<String>,
    pub batch_size: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rows_per_second: Option<u32>,
    pub exact_count: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_replica_lag: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_active_sessions: Option<u32>,
    pub dry_run: bool,
    pub state_table: String,
}

impl PlanBackfill {
    /// In one line, for the progress display; `shown` renders a template.
    pub fn describe(&self, shown: &dyn Fn(&Text) -> String) -> String {
        format!(
            "backfill {} SET {}{} in batches of {}",
            shown(&self.table),
            shown(&self.set),
            self.where_
                .as_ref()
                .map(|w| format!(" WHERE {}", shown(w)))
                .unwrap_or_default(),
            self.batch_size
        )
    }
}

impl Planner<'_> {
    pub(super) fn backfill(&mut self, b: &model::BackfillStep) -> Action {
        Action::Backfill(Box::new(PlanBackfill {
            table: self.text(&b.table),
            set: self.text(&b.set),
            where_: b.where_.as_ref().map(|w| self.text(w)),
            key: b.key.clone(),
            batch_size: b.batch_size,
            pause: b.pause,
            max_rows_per_second: b.max_rows_per_second,
            exact_count: b.exact_count,
            max_replica_lag: b.max_replica_lag,
            max_active_sessions: b.max_active_sessions,
            dry_run: b.dry_run,
            state_table: b.state_table.clone(),
        }))
    }
}

pub(super) fn write(o: &mut String, b: &PlanBackfill, inner: usize) {
    let pad = inner + 2;
    let key = if b.key.is_empty() {
        "the primary key".to_string()
    } else {
        b.key.join(", ")
    };
    let _ = writeln!(
        o,
        "{:pad$}UPDATE {} SET {}{}",
        "",
        b.table.text,
        b.set.text,
        b.where_
            .as_ref()
            .map(|w| format!(" WHERE {}", w.text))
            .unwrap_or_default()
    );
    let mut pacing = vec![format!("batches of {} by {key}", b.batch_size)];
    if let Some(p) = b.pause {
        pacing.push(format!("pause {p}"));
    }
    if let Some(r) = b.max_rows_per_second {
        pacing.push(format!("at most {r} rows/s"));
    }
    if let Some(l) = b.max_replica_lag {
        pacing.push(format!("waits while replica lag > {l}"));
    }
    if let Some(n) = b.max_active_sessions {
        pacing.push(format!("waits while > {n} other sessions are active"));
    }
    let _ = writeln!(o, "{:pad$}{}", "", pacing.join("; "));
    let _ = writeln!(
        o,
        "{:pad$}each batch is its own transaction; checkpoints in {}, so a re-run resumes",
        "", b.state_table
    );
    if b.dry_run {
        let _ = writeln!(
            o,
            "{:pad$}dry run: one batch, rolled back, and a projection of the total time",
            ""
        );
    }
}
