//! Release-time control in the plan: how risky the runbook is (declared in
//! `metadata.risk`, or derived from what its main-line steps do), which
//! sets how many people approve each gated phase; and the `abort_when`
//! triggers, each planned as the check it runs.

use serde::Serialize;

use super::*;
use crate::model::{Risk, Trigger};

/// How often a trigger runs during a long step when it does not say.
pub const DEFAULT_TRIGGER_INTERVAL_MS: u64 = 10_000;

/// The runbook's risk, and why.
#[derive(Debug, Clone, Serialize)]
pub struct PlanRisk {
    pub level: Risk,
    /// `declared` (metadata.risk) or `derived` (from the steps).
    pub source: &'static str,
    /// What the steps make it, declared or not: a declared risk below this
    /// is shown beside it.
    pub derived: Risk,
    /// The steps that make it `derived`, one phrase each.
    pub reasons: Vec<String>,
}

/// One `abort_when` entry: its check, planned as a check step of its own.
#[derive(Debug, Clone, Serialize)]
pub struct PlanTrigger {
    pub id: String,
    pub interval: Duration,
    pub step: PlanStep,
}

/// What a main-line action does to the run's database, as far as risk goes:
/// `Some((true, why))` when it destroys data, `Some((false, why))` when it
/// changes something, `None` when it only reads.
fn weight(a: &Action) -> Option<(bool, String)> {
    match a {
        Action::Sql { statements, .. } => {
            let stmts = crate::pg::statements::split(statements.raw.expose());
            if let Some(d) = stmts.iter().find_map(|s| s.destroys) {
                return Some((true, d.to_string()));
            }
            let reads = stmts
                .iter()
                .all(|s| matches!(s.kind.as_str(), "SELECT" | "SHOW" | "EXPLAIN"));
            (!reads).then(|| (false, "changes the schema or data".into()))
        }
        Action::Restore(r) if r.target.is_none() => {
            Some((true, "restores over the run's database".into()))
        }
        Action::Migrate(m) if m.direction == model::Direction::Down => {
            Some((true, "rolls migrations back".into()))
        }
        Action::Migrate(_) => Some((false, "applies migrations".into())),
        Action::Backfill(_) => Some((false, "updates rows in batches".into())),
        Action::Shell(_) => Some((false, "runs a command".into())),
        _ => None,
    }
}

/// The risk the main-line steps carry: high when one destroys data (a
/// DROP TABLE or COLUMN, a TRUNCATE, a DELETE with no WHERE, a restore
/// over the run's database, a migration rolled back), medium when one
/// changes anything, else low.
pub(super) fn derive(phases: &[PlanPhase]) -> (Risk, Vec<String>) {
    let mut high = Vec::new();
    let mut medium = Vec::new();
    for ph in phases {
        for s in &ph.steps {
            match weight(&s.action) {
                Some((true, why)) => high.push(format!("step `{}`: {why}", s.id)),
                Some((false, why)) => medium.push(format!("step `{}`: {why}", s.id)),
                None => {}
            }
        }
    }
    if !high.is_empty() {
        (Risk::High, high)
    } else if !medium.is_empty() {
        medium.truncate(1);
        (Risk::Medium, medium)
    } else {
        (Risk::Low, Vec::new())
    }
}

impl PlanRisk {
    pub(super) fn of(declared: Option<Risk>, phases: &[PlanPhase]) -> PlanRisk {
        let (derived, reasons) = derive(phases);
        PlanRisk {
            level: declared.unwrap_or(derived),
            source: if declared.is_some() {
                "declared"
            } else {
                "derived"
            },
            derived,
            reasons,
        }
    }
}

impl Planner<'_> {
    pub(super) fn trigger(&mut self, t: &Trigger) -> PlanTrigger {
        PlanTrigger {
            id: t.id.clone(),
            interval: t
                .interval
                .unwrap_or(Duration(std::time::Duration::from_millis(
                    DEFAULT_TRIGGER_INTERVAL_MS,
                ))),
            step: PlanStep {
                id: t.id.clone(),
                name: None,
                when: None,
                timeout: None,
                retry: PlanRetry {
                    attempts: 1,
                    initial: Duration::from_millis(DEFAULT_BACKOFF_INITIAL_MS),
                    factor: DEFAULT_BACKOFF_FACTOR,
                    max: Duration::from_millis(DEFAULT_BACKOFF_MAX_MS),
                    on: Vec::new(),
                },
                settings: None,
                action: Action::Check(Box::new(self.check(&t.check))),
                rollback: Vec::new(),
                rollback_on_partial: true,
            },
        }
    }
}

pub(super) fn write(o: &mut String, risk: &PlanRisk, triggers: &[PlanTrigger]) {
    use std::fmt::Write as _;
    let also = if risk.source == "declared" && risk.derived > risk.level {
        format!("; the steps make it {}", risk.derived.name())
    } else {
        String::new()
    };
    let _ = writeln!(o, "risk: {} ({}{also})", risk.level.name(), risk.source);
    for r in &risk.reasons {
        let _ = writeln!(o, "  {r}");
    }
    if !triggers.is_empty() {
        let _ = writeln!(
            o,
            "abort when any of these fails (before each step, and during long steps):"
        );
        for t in triggers {
            let what = t.step.action.describe(&|t: &Text| t.text.clone());
            let _ = writeln!(
                o,
                "  {}: {what} (every {} during long steps)",
                t.id, t.interval
            );
        }
    }
}
