//! A watch step's plan: a check sampled every `interval` for `duration`,
//! which must pass at every sample.

use std::fmt::Write as _;

use serde::Serialize;

use super::check::PlanCheck;
use super::{Action, Planner, Text};
use crate::duration::Duration;
use crate::model;

#[derive(Debug, Clone, Serialize)]
pub struct PlanWatch {
    pub check: PlanCheck,
    pub interval: Duration,
    pub duration: Duration,
}

impl PlanWatch {
    /// In one line, for the progress display; `shown` renders a template.
    pub fn describe(&self, shown: &dyn Fn(&Text) -> String) -> String {
        format!(
            "watch for {} (every {}): {}",
            self.duration,
            self.interval,
            self.check.describe(shown)
        )
    }
}

impl Planner<'_> {
    pub(super) fn watch(&mut self, w: &model::WatchStep) -> Action {
        Action::Watch(Box::new(PlanWatch {
            check: self.check(&w.check),
            interval: w
                .interval
                .unwrap_or(Duration(std::time::Duration::from_millis(
                    model::DEFAULT_WAIT_INTERVAL_MS,
                ))),
            duration: self.duration_setting(
                Some(&w.duration),
                std::time::Duration::ZERO,
                "duration",
            ),
        }))
    }
}

pub(super) fn write(o: &mut String, w: &PlanWatch, inner: usize) {
    let _ = writeln!(
        o,
        "{:inner$}every {} for {}; the first sample that fails it fails the step (and rolls back its phase)",
        "", w.interval, w.duration
    );
    super::check::write(o, &w.check, inner);
}
