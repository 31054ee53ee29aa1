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
    /// Batches sized to take about this long; `batch_size` is the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_time: Option<Duration>,
    /// With `batch_time`: the most keys a batch takes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_batch_size: Option<u32>,
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
            "backfill {} SET {}{} in {}",
            shown(&self.table),
            shown(&self.set),
            self.where_
                .as_ref()
                .map(|w| format!(" WHERE {}", shown(w)))
                .unwrap_or_default(),
            self.batches()
        )
    }

    /// The most keys one batch takes.
    pub fn max_batch(&self) -> u32 {
        match self.batch_time {
            Some(_) => self.max_batch_size.unwrap_or(model::DEFAULT_MAX_BATCH_SIZE),
            None => self.batch_size,
        }
    }

    /// How batches are sized: `batches of 1000`, or `batches of about
    /// 200ms (the first 1000 keys, at most 100000)`.
    fn batches(&self) -> String {
        match self.batch_time {
            Some(t) => format!(
                "batches of about {t} (the first {} keys, at most {})",
                self.batch_size,
                self.max_batch()
            ),
            None => format!("batches of {}", self.batch_size),
        }
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
            batch_time: b.batch_time,
            max_batch_size: b.max_batch_size,
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
    let mut pacing = vec![format!("{} by {key}", b.batches())];
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
