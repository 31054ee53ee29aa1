//! A migrate step's plan: a migration directory, applied up or down.

use std::fmt::Write as _;

use serde::Serialize;

use super::{Action, Planner, Text};
use crate::model;

#[derive(Debug, Clone, Serialize)]
pub struct PlanMigrate {
    pub dir: Text,
    /// `auto` or a format name.
    pub format: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    pub direction: model::Direction,
    pub history_table: String,
    pub allow_checksum_change: bool,
}

impl PlanMigrate {
    /// In one line, for the progress display; `shown` renders a template.
    pub fn describe(&self, shown: &dyn Fn(&Text) -> String) -> String {
        format!(
            "migrate {} {}",
            match self.direction {
                model::Direction::Up => "up",
                model::Direction::Down => "down",
            },
            shown(&self.dir)
        )
    }
}

impl Planner<'_> {
    pub(super) fn migrate(&mut self, m: &model::MigrateStep, p: &str) -> Action {
        Action::Migrate(Box::new(PlanMigrate {
            dir: self.text(&m.dir, &format!("{p}/migrate/dir")),
            format: m.format.clone().unwrap_or_else(|| "auto".into()),
            to: m.to.clone(),
            steps: m.steps,
            direction: m.direction,
            history_table: m.history_table.clone(),
            allow_checksum_change: m.allow_checksum_change,
        }))
    }
}

pub(super) fn write(o: &mut String, m: &PlanMigrate, inner: usize) {
    let pad = inner + 2;
    let what = match (m.direction, &m.to, m.steps) {
        (model::Direction::Up, to, n) => format!(
            "apply pending migrations{}{}",
            to.as_ref()
                .filter(|t| *t != "latest")
                .map(|t| format!(" through {t}"))
                .unwrap_or_default(),
            n.map(|n| format!(", at most {n}")).unwrap_or_default()
        ),
        (model::Direction::Down, to, n) => format!(
            "roll back applied migrations, newest first{}{}",
            to.as_ref()
                .map(|t| format!(", down to {t}"))
                .unwrap_or_default(),
            n.map(|n| format!(", at most {n}")).unwrap_or_default()
        ),
    };
    let _ = writeln!(
        o,
        "{:pad$}{what} from {} ({} format)",
        "", m.dir.text, m.format
    );
    let _ = writeln!(
        o,
        "{:pad$}each in its own transaction unless it cannot run in one; history in {}",
        "", m.history_table
    );
    let _ = writeln!(
        o,
        "{:pad$}refuses a dirty migration{}",
        "",
        if m.allow_checksum_change {
            "; a changed applied file is accepted and recorded"
        } else {
            " and a changed applied file"
        }
    );
}
