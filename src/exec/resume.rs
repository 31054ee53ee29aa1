//! Runs that continue or undo an earlier one, from its journal:
//! `runbook resume RUN_ID` goes on where a dead runner stopped, and
//! `runbook rollback RUN_ID` runs the compensations a run registered.
//!
//! What a resume may do is decided before it connects a second time
//! ([`resumable`]); here the executor follows it.

use serde_json::{Map, Value};

use super::journal::StepRow;
use super::line::{LineState, unknown_check};
use super::step::may_change;
use super::{PartialPolicy, Prior, Run, RunResult, journal, now, rerun_is_safe, verdict};
use crate::events::ErrorKind;
use crate::events::{ErrorInfo, Event, Role, SkippedCompensation, StepStatus};
use crate::plan::{Action, Plan, PlanOnFailure, PlanPhase, PlanStep};

/// How a step of the plan stood when the resumed run's runner died.
pub(super) enum Earlier {
    /// Not started: run it.
    Fresh,
    /// It ended (succeeded, skipped, or failed where the phase goes on).
    Done(StepRow),
    /// The runner died while it ran.
    Interrupted(StepRow),
}

/// Why an earlier run cannot be resumed, or what the resume must decide.
pub enum Resumable {
    /// Go on; nothing needs deciding.
    Yes,
    /// The runner died in this step, which may have half-applied: rerun,
    /// skip or undo it is a person's decision.
    Decide { step: String, kind: String },
}

fn finished(row: &StepRow) -> bool {
    matches!(row.status.as_str(), "succeeded" | "skipped")
}

/// Whether a failure of this step let its phase go on.
fn tolerated(ph: &PlanPhase, s: &PlanStep) -> bool {
    matches!(ph.on_failure, PlanOnFailure::Continue)
        || matches!(
            &s.action,
            crate::plan::Action::Check(c) if c.severity == crate::model::Severity::Warn
        )
}

/// Whether `run` can be resumed with `plan`, and what must be decided.
pub fn resumable(run: &journal::RunRecord, plan: &Plan) -> Result<Resumable, String> {
    if run.kind != "exec" {
        return Err(format!(
            "run {} is a `{}` run; only a run of a runbook can be resumed",
            run.run_id, run.kind
        ));
    }
    if run.status != "running" {
        return Err(format!(
            "run {} ended `{}`{}; only a run whose runner died (the journal still says `running`) can be resumed",
            run.run_id,
            run.status,
            run.verdict
                .as_deref()
                .map_or_else(String::new, |v| format!(": {v}"))
        ));
    }
    if let Some(s) = run.steps.iter().find(|s| s.row.role != "main") {
        return Err(format!(
            "run {}'s runner died while handling a failure (it had started the {} step `{}`); what is left half-undone is for `runbook rollback {}`",
            run.run_id, s.row.role, s.row.step, run.run_id
        ));
    }
    let mut decide = None;
    for (i, rec) in run.steps.iter().enumerate() {
        let row = &rec.row;
        let Some((ph, s)) = plan.phases.iter().find_map(|ph| {
            (Some(ph.id.as_str()) == row.phase.as_deref())
                .then(|| ph.steps.iter().find(|s| s.id == row.step).map(|s| (ph, s)))
                .flatten()
        }) else {
            return Err(format!(
                "the journal has step `{}` in phase `{}`, which this runbook does not",
                row.step,
                row.phase.as_deref().unwrap_or("?")
            ));
        };
        let last = i + 1 == run.steps.len();
        match row.status.as_str() {
            _ if finished(row) => {}
            "running" if last => {
                if !rerun_is_safe(&s.action) {
                    decide = Some(Resumable::Decide {
                        step: format!("{}.{}", ph.id, s.id),
                        kind: s.action.kind().into(),
                    });
                }
            }
            _ if tolerated(ph, s) && row.status != "running" => {}
            other => {
                return Err(format!(
                    "step `{}.{}` {} and the runner died before undoing it; that is for `runbook rollback {}`",
                    ph.id, s.id, other, run.run_id
                ));
            }
        }
    }
    Ok(decide.unwrap_or(Resumable::Yes))
}

impl<'a> Run<'a> {
    /// How `s` stood before the resume (always `Fresh` for a new run).
    pub(super) fn earlier(&self, ph: &PlanPhase, s: &PlanStep) -> Earlier {
        let Some(prior) = &self.resumed else {
            return Earlier::Fresh;
        };
        match prior.rows(&ph.id, &s.id) {
            None => Earlier::Fresh,
            Some(r) if r.status == "running" => Earlier::Interrupted(r.clone()),
            Some(r) => Earlier::Done(r.clone()),
        }
    }

    /// Whether every step of a phase ended before the resume.
    pub(super) fn phase_done_earlier(&self, ph: &PlanPhase) -> bool {
        self.resumed.is_some()
            && ph
                .steps
                .iter()
                .all(|s| matches!(self.earlier(ph, s), Earlier::Done(_)))
    }

    /// A step that ended before the resume: not run again; its outputs are
    /// what later templates see.
    pub(super) fn carry_over(&mut self, ph: &PlanPhase, s: &PlanStep, row: &StepRow, why: &str) {
        self.bus.emit(Event::StepSkipped {
            at: now(),
            step: s.id.clone(),
            phase: Some(ph.id.clone()),
            kind: s.action.kind().into(),
            role: Role::Main,
            reason: why.to_string(),
        });
        let mut output = match &row.output {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        output.insert("status".into(), Value::String(row.status.clone()));
        self.steps_out.insert(s.id.clone(), Value::Object(output));
    }

    /// A phase whose steps all ended before the resume.
    pub(super) fn phase_carried_over(&mut self, ph: &PlanPhase, st: &mut LineState) {
        let mut touched = false;
        for s in &ph.steps {
            if let Earlier::Done(row) = self.earlier(ph, s) {
                touched |= row.status == "succeeded" && may_change(&s.action, ph.kind);
                let why = format!("{} before the run was resumed", row.status);
                self.carry_over(ph, s, &row, &why);
            }
        }
        self.bus.emit(Event::PhaseSkipped {
            at: now(),
            phase: ph.id.clone(),
            kind: ph.kind.name().into(),
            reason: "finished before the run was resumed".into(),
        });
        if touched {
            st.touched = true;
            st.kept.push(ph.id.clone());
        }
    }

    /// What to do with a step the runner died in. Returns the error to fail
    /// it with when it is to be undone; None: run it (again).
    pub(super) async fn interrupted_step(
        &mut self,
        s: &PlanStep,
        row: &StepRow,
    ) -> Result<Option<ErrorInfo>, ()> {
        let policy = if rerun_is_safe(&s.action) {
            PartialPolicy::Rerun
        } else {
            self.resumed
                .as_ref()
                .and_then(|p| p.partial)
                .unwrap_or(PartialPolicy::Undo)
        };
        // A migrate step's journal row lists each migration as it commits:
        // those stay, and the step goes on after them.
        let applied: Vec<Value> = match &s.action {
            Action::Migrate(_) => row.output["applied"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let (message, outcome) = match policy {
            PartialPolicy::Rerun if !applied.is_empty() => {
                let versions: Vec<&str> = applied
                    .iter()
                    .map(|a| a["version"].as_str().unwrap_or("repeatable"))
                    .collect();
                self.migrate_resume = Some((s.id.clone(), applied.clone()));
                (
                    format!(
                        "step `{}` was interrupted when the runner died, after {} migration(s) committed ({}): they stay, recorded in their history, and the step goes on with the rest",
                        s.id,
                        versions.len(),
                        versions.join(", ")
                    ),
                    Ok(None),
                )
            }
            PartialPolicy::Rerun if rerun_is_safe(&s.action) => (
                format!(
                    "step `{}` was interrupted when the runner died; it is one transaction (or keeps its own record), so nothing of it stayed, and it runs again",
                    s.id
                ),
                Ok(None),
            ),
            PartialPolicy::Rerun => (
                format!(
                    "step `{}` was interrupted when the runner died and may have half-applied; it runs again (--partial rerun)",
                    s.id
                ),
                Ok(None),
            ),
            PartialPolicy::Skip => (
                format!(
                    "step `{}` was interrupted when the runner died; it is counted as done (--partial skip)",
                    s.id
                ),
                Err(()),
            ),
            PartialPolicy::Undo => (
                format!(
                    "step `{}` was interrupted when the runner died and may have half-applied; it counts as failed part-way and its phase rolls back (--partial undo)",
                    s.id
                ),
                Ok(Some(ErrorInfo {
                    class: ErrorKind::Interrupted,
                    message: "the runner died while this step ran; it may have half-applied".into(),
                    ..ErrorInfo::default()
                })),
            ),
        };
        self.bus.emit(Event::Warning { at: now(), message });
        let status = match policy {
            PartialPolicy::Rerun => "cancelled",
            PartialPolicy::Skip => "succeeded",
            PartialPolicy::Undo => "failed",
        };
        let wrote = self
            .journal
            .step_finished(row.seq, |r| {
                r.status = status.into();
                r.partial = policy == PartialPolicy::Undo;
                r.changed_nothing = policy == PartialPolicy::Rerun
                    && rerun_is_safe(&s.action)
                    && applied.is_empty();
            })
            .await;
        self.journal_failed(wrote);
        outcome
    }

    /// What `runbook rollback` owes: the compensations of the steps that
    /// changed something and were not compensated, newest first (a step a
    /// resume ran again has two rows; the newest speaks for it); and the
    /// steps that changed something with no compensation to run. A
    /// compensation that failed before having changed nothing runs again.
    fn owed(&mut self, prior: &Prior) -> Owed<'a> {
        let mut owed: Vec<(&PlanPhase, &PlanStep, i32)> = Vec::new();
        let mut not_undoable: Vec<String> = Vec::new();
        let mut failed_before: Vec<String> = Vec::new();
        // A step run again by a resume has two rows; the newest speaks for
        // it, so its compensation runs once.
        let mut seen = std::collections::HashSet::new();
        for rec in prior.record.steps.iter().rev() {
            let row = &rec.row;
            if row.role != "main" || !seen.insert((row.phase.clone(), row.step.clone())) {
                continue;
            }
            match row.compensated.as_deref() {
                None | Some(super::line::FAILED_UNCHANGED) => {}
                Some("failed") => {
                    let step = format!("{}.{}", row.phase.as_deref().unwrap_or("-"), row.step);
                    self.bus.emit(Event::CompensationSkipped {
                        at: now(),
                        step: row.step.clone(),
                        status: SkippedCompensation::NotRun,
                        reason: "not run: it failed in an earlier undo after changing something, and running it again could undo twice; finish that undo by hand".into(),
                    });
                    failed_before.push(step);
                    continue;
                }
                Some(_) => continue,
            }
            let Some((ph, s)) = self.plan.phases.iter().find_map(|ph| {
                (Some(ph.id.as_str()) == row.phase.as_deref())
                    .then(|| ph.steps.iter().find(|s| s.id == row.step).map(|s| (ph, s)))
                    .flatten()
            }) else {
                continue;
            };
            let changed = match row.status.as_str() {
                "succeeded" => true,
                "running" => {
                    !rerun_is_safe(&s.action) || matches!(s.action, crate::plan::Action::Migrate(_))
                }
                "failed" | "timed_out" | "cancelled" => !row.changed_nothing,
                _ => false,
            } && may_change(&s.action, ph.kind);
            if !changed {
                continue;
            }
            if s.rollback.is_empty() {
                not_undoable.push(format!("{}.{}", ph.id, s.id));
            } else if row.status != "succeeded" && !s.rollback_on_partial {
                self.bus.emit(Event::CompensationSkipped {
                at: now(),
                step: s.id.clone(),
                status: SkippedCompensation::NotRun,
                reason: "not run: the step failed part-way, and `rollback_on_partial: false` keeps what it did".into(),
            });
            } else {
                owed.push((ph, s, row.seq));
            }
        }
        Owed {
            run: owed,
            not_undoable,
            failed_before,
        }
    }

    /// `runbook rollback RUN_ID`: the compensations `prior` registered and
    /// did not run, newest first; then the state is checked against the one
    /// before that run changed anything.
    pub(super) async fn rollback_line(&mut self, prior: &Prior) -> (RunResult, String) {
        let plan = self.plan;
        let of = prior.record.run_id.clone();
        // What compensations' templates see as `steps.<id>.*`: the outputs
        // that run recorded.
        for rec in &prior.record.steps {
            if rec.row.role == "main" {
                let mut output = rec.row.output.as_object().cloned().unwrap_or_default();
                output.insert("status".into(), Value::String(rec.row.status.clone()));
                self.steps_out
                    .insert(rec.row.step.clone(), Value::Object(output));
            }
        }
        let Owed {
            run: owed,
            not_undoable,
            failed_before,
        } = self.owed(prior);
        self.stop_level = 2;
        self.bus.emit(Event::RollbackStarted {
            at: now(),
            scope: crate::events::RollbackScope::Run,
            phase: None,
            reason: format!("runbook rollback {of}"),
        });
        // A compensation that failed before, after a change, still failed.
        let mut clean = failed_before.is_empty();
        // Whether any compensation changed the database (one refused, or
        // rolled back in its transaction, did not).
        let mut changed = false;
        for (ph, s, seq) in &owed {
            let ran = self
                .all_changed(&s.rollback, Some(&ph.id), Role::Compensation, Some(&s.id))
                .await;
            let ok = ran.0;
            clean &= ok;
            changed |= ran.1;
            let status = if ok {
                StepStatus::RolledBack
            } else {
                StepStatus::CompensationFailed
            };
            self.bus.emit(Event::StepCompensated {
                at: now(),
                step: s.id.clone(),
                status,
            });
            let wrote = self
                .journal
                .compensated_in(&of, *seq, Self::compensation_record(ran))
                .await;
            self.journal_failed(wrote);
        }
        let baselines = journal::baselines_of(&prior.record);
        let (check, verification) = match baselines.first() {
            Some((_, b)) => b.compare(&self.baseline().await, "run_start"),
            None => unknown_check("the journal holds no snapshot from before that run's changes"),
        };
        self.bus.emit(Event::RollbackFinished {
            at: now(),
            scope: crate::events::RollbackScope::Run,
            phase: None,
            clean,
            verification: Some(verification),
        });
        let undone = owed.len();
        // Steps with no rollback are judged as the main line judges them:
        // by the check against the state before the run.
        let mut unguarded = if not_undoable.is_empty() {
            String::new()
        } else {
            format!(
                "; {} had no rollback, so only the check speaks for them (data is compared in the tables `settings.verify_undo` names)",
                not_undoable.join(", ")
            )
        };
        if !failed_before.is_empty() {
            unguarded.push_str(&format!(
                "; the compensation of {} failed in an earlier undo after changing something and was not run again",
                failed_before.join(", ")
            ));
        }
        let (status, code, mut verdict) = verdict::decide_rollback(
            &check,
            (clean, changed || !failed_before.is_empty()),
            &of,
            undone,
            &unguarded,
        );
        // Where the undo did not bring the database back, the backups that
        // run took are the way back: named, not left to be looked for.
        if status != super::RunStatus::RolledBack {
            verdict.push_str(&backups_taken(prior));
        }
        if !plan.finally_steps.is_empty() {
            self.run_status = super::LiveStatus::Ended(status);
            let _ = self
                .all(&plan.finally_steps, None, Role::Finally, None)
                .await;
        }
        (
            RunResult {
                status,
                exit_code: code,
            },
            verdict,
        )
    }
}

/// What `runbook rollback` owes: the compensations to run, newest first;
/// the steps that changed something with no compensation; and those whose
/// compensation failed before after changing something.
struct Owed<'a> {
    run: Vec<(&'a PlanPhase, &'a PlanStep, i32)>,
    not_undoable: Vec<String>,
    failed_before: Vec<String>,
}

/// `; restore from the backup that run took: PATH (step `b`)`: the
/// backups an earlier run took and finished, for when its undo fell short.
fn backups_taken(prior: &Prior) -> String {
    let taken: Vec<(String, String)> = prior
        .record
        .steps
        .iter()
        .map(|s| &s.row)
        .filter(|r| r.role == "main" && r.kind == "backup" && r.status == "succeeded")
        .filter_map(|r| Some((r.step.clone(), r.output.get("path")?.as_str()?.to_string())))
        .collect();
    verdict::restore_from(&taken, "that run")
}
