//! `abort_when`: rollback triggers. Each is a check that must keep passing
//! while the run changes things. They run before every main-line step,
//! and at most every `interval` while a long step (backfill, wait, watch)
//! goes on. The first that fails stops the run: the step it stopped fails
//! with the trigger's finding, and the phase unwinds as its `on_failure`
//! says (`continue` does not apply).
//!
//! A trigger whose query cannot run (a missing table, a timeout) has not
//! fired: that is said in a warning, every time, and the run goes on.

use std::time::Instant;

use super::{Fail, Run, check};
use crate::events::{ErrorInfo, ErrorKind, Event, StepStatus, now};
use crate::plan::Action;

impl Run<'_> {
    /// Run the triggers that are due: all of them between steps, those whose
    /// `interval` has passed during a long step (`during`). Returns the
    /// failure for `step` when one fired.
    pub(crate) async fn tripped(&mut self, step: &str, during: bool) -> Option<Fail> {
        let plan = self.plan;
        for (i, t) in plan.abort_when.iter().enumerate() {
            let due =
                !during || self.triggers_ran[i].is_none_or(|last| last.elapsed() >= t.interval.0);
            let Action::Check(c) = &t.step.action else {
                continue;
            };
            if !due {
                continue;
            }
            self.triggers_ran[i] = Some(Instant::now());
            match check::run(self, &t.step, c, None).await {
                Ok(_) => {}
                Err(f) if f.error.class == ErrorKind::Check => {
                    return Some(self.fire(&t.id, step, f.error.message));
                }
                Err(f) => self.bus.emit(Event::Warning {
                    at: now(),
                    message: format!(
                        "abort_when `{}` could not run, so it did not fire: {}",
                        t.id, f.error.message
                    ),
                }),
            }
        }
        None
    }

    fn fire(&mut self, trigger: &str, step: &str, found: String) -> Fail {
        self.aborted = true;
        self.bus.emit(Event::AbortTriggered {
            at: now(),
            trigger: trigger.to_string(),
            step: Some(step.to_string()),
            message: found.clone(),
        });
        Fail::new(
            StepStatus::Failed,
            ErrorInfo {
                class: ErrorKind::AbortTrigger,
                message: format!("abort_when `{trigger}` fired: {found}"),
                hint: Some(
                    "the run stopped and its phase unwinds; fix what the trigger watches before running it again".into(),
                ),
                ..ErrorInfo::default()
            },
        )
    }
}
