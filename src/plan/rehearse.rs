//! A rehearse step's plan: each migration forward, back and forward again.

use std::fmt::Write as _;

use serde::Serialize;

use super::{Action, Planner, Text};
use crate::duration::Duration;
use crate::model;

/// Where a rehearsal runs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanScratch {
    /// CREATE DATABASE ... TEMPLATE the run's database.
    Template,
    /// A restore of the backup an earlier step took.
    Backup(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanRehearse {
    pub dir: Text,
    pub format: String,
    pub mode: model::RehearseMode,
    pub slow_threshold: Duration,
    pub errors: Vec<model::Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scratch: Option<PlanScratch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<Text>,
    pub history: super::migrate::PlanHistory,
    pub missing_downs: model::MissingDowns,
    /// The commands of the tool that applies the migrations, as written
    /// (rendered per migration at run time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<PlanTool>,
    #[serde(skip_serializing_if = "super::migrate::PlanSelect::is_empty")]
    pub select: super::migrate::PlanSelect,
    /// How far: the pending migrations through this version (rendered at
    /// run time, checked now where params decide it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Text>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanTool {
    pub up: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub list: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

impl PlanRehearse {
    /// In one line, for the progress display; `shown` renders a template.
    pub fn describe(&self, shown: &dyn Fn(&Text) -> String) -> String {
        format!("rehearse {}", shown(&self.dir))
    }
}

/// What a rehearsal's `to` may be: it goes up only.
pub const REHEARSAL_TO: &str =
    "a rehearsal goes up: `to` is `latest` or a version of the directory, as the deploy's `to`";

impl Planner<'_> {
    pub(super) fn rehearse(&mut self, x: &model::RehearseStep) -> Action {
        Action::Rehearse(Box::new(PlanRehearse {
            dir: self.text(&x.dir),
            format: x.format.clone().unwrap_or_else(|| "auto".into()),
            mode: x.mode,
            slow_threshold: self.duration_setting(
                x.slow_threshold.as_ref(),
                std::time::Duration::from_millis(model::DEFAULT_SLOW_THRESHOLD_MS),
                "slow_threshold",
            ),
            errors: self.verdicts(x.errors.as_ref()),
            missing_downs: x.missing_downs,
            scratch: match &x.scratch {
                None | Some(model::Scratch::Template(false)) => None,
                Some(model::Scratch::Template(true)) => Some(PlanScratch::Template),
                Some(model::Scratch::Backup { from }) => Some(PlanScratch::Backup(
                    from.trim().trim_start_matches("steps.").to_string(),
                )),
            },
            seed: x.seed.as_ref().map(|t| self.text(t)),
            history: super::migrate::PlanHistory::of(x.history.as_ref(), x.history_table.as_ref()),
            tool: x.tool.as_ref().map(|t| PlanTool {
                up: t.up.clone(),
                down: t.down.clone(),
                list: t.list.clone(),
                cwd: t.cwd.clone(),
            }),
            select: self.select(x.contexts.as_ref(), x.label_filter.as_ref()),
            to: x
                .to
                .as_ref()
                .map(|t| self.target_hinted(t, model::Direction::Up, Some(REHEARSAL_TO))),
        }))
    }
}

pub(super) fn write(o: &mut String, x: &PlanRehearse, inner: usize) {
    let pad = inner + 2;
    let legs = match x.mode {
        model::RehearseMode::PerMigration => {
            "per migration: up, down (parity and data checked), up again"
        }
        model::RehearseMode::WholeSet => {
            "whole set: every up, every down in reverse (parity and data checked), every up again"
        }
    };
    let _ = writeln!(o, "{:pad$}{} ({} format): {legs}", "", x.dir.text, x.format);
    if let Some(to) = x.to.as_ref().filter(|t| t.text != "latest") {
        let _ = writeln!(o, "{:pad$}the pending migrations through {}", "", to.text);
    }
    let on = match &x.scratch {
        None => "the run's database".to_string(),
        Some(PlanScratch::Template) => {
            "a scratch clone (CREATE DATABASE ... TEMPLATE), dropped afterwards".into()
        }
        Some(PlanScratch::Backup(id)) => {
            format!("a scratch restore of steps.{id}, dropped afterwards")
        }
    };
    let _ = writeln!(o, "{:pad$}on {on}", "");
    let errors: Vec<&str> = x.errors.iter().map(|v| v.name()).collect();
    let _ = writeln!(
        o,
        "{:pad$}slow above {}; fails on {}",
        "",
        x.slow_threshold,
        errors.join(", ")
    );
    if let Some(s) = &x.seed {
        let _ = writeln!(o, "{:pad$}seed {} after each up", "", s.text);
    }
    if let Some(t) = &x.tool {
        let _ = writeln!(o, "{:pad$}each leg through the tool: up `{}`", "", t.up);
        match &t.down {
            Some(d) => {
                let _ = writeln!(o, "{:pad$}  down `{d}`", "");
            }
            None => {
                let _ = writeln!(o, "{:pad$}  no down: forward-only", "");
            }
        }
    }
}
