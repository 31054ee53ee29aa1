//! A wait step's plan: a check, repeated every `interval` until it passes
//! or `timeout` has passed.

use std::fmt::Write as _;

use serde::Serialize;

use super::check::PlanCheck;
use super::{Action, Planner, Text};
use crate::duration::Duration;
use crate::model;

#[derive(Debug, Clone, Serialize)]
pub struct PlanWait {
    pub check: PlanCheck,
    pub interval: Duration,
    pub timeout: Duration,
}

impl PlanWait {
    /// In one line, for the progress display; `shown` renders a template.
    pub fn describe(&self, shown: &dyn Fn(&Text) -> String) -> String {
        format!(
            "wait up to {} (every {}) until: {}",
            self.timeout,
            self.interval,
            self.check.describe(shown)
        )
    }
}

impl Planner<'_> {
    pub(super) fn wait(&mut self, w: &model::WaitStep) -> Action {
        Action::Wait(Box::new(PlanWait {
            check: self.check(&w.check),
            interval: w
                .interval
                .unwrap_or(Duration(std::time::Duration::from_millis(
                    model::DEFAULT_WAIT_INTERVAL_MS,
                ))),
            timeout: self.duration_setting(Some(&w.timeout), std::time::Duration::ZERO, "timeout"),
        }))
    }
}

pub(super) fn write(o: &mut String, w: &PlanWait, inner: usize) {
    let _ = writeln!(
        o,
        "{:inner$}every {} until it passes, at most {}; then the step fails with the last rows seen",
        "", w.interval, w.timeout
    );
    super::check::write(o, &w.check, inner);
}
