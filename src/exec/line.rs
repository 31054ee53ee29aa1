//! The main line and its phases: approvals, compensations registered and
//! run in reverse, the on_failure branches, and the baselines an undo is
//! checked against.

use super::step::may_change;
use super::*;

/// The journal's word for a compensation that failed having changed
/// nothing (a refusal, a transaction rolled back): `runbook rollback` runs
/// it again. One that failed after a change is not run twice.
pub(super) const FAILED_UNCHANGED: &str = "failed_unchanged";

impl<'a> Run<'a> {
    /// Run a list of steps that must all be attempted (a branch, compensations,
    /// `on_failure`, `finally`). Returns whether all succeeded.
    pub(super) async fn all(
        &mut self,
        steps: &[PlanStep],
        phase: Option<&str>,
        role: Role,
        for_step: Option<&str>,
    ) -> bool {
        self.all_changed(steps, phase, role, for_step).await.0
    }

    /// [`Self::all`], and whether any of the steps may have changed the
    /// database: one that succeeded at a change, or failed part-way.
    pub(super) async fn all_changed(
        &mut self,
        steps: &[PlanStep],
        phase: Option<&str>,
        role: Role,
        for_step: Option<&str>,
    ) -> (bool, bool) {
        let (mut clean, mut changed) = (true, false);
        for s in steps {
            let o = self.step(s, phase, role, for_step).await;
            clean &= !o.fatal;
            changed |= match o.status {
                StepStatus::Succeeded => may_change(&s.action, PhaseKind::Migrate),
                _ => o.partial,
            };
        }
        (clean, changed)
    }

    /// How a compensation that ran is recorded in the journal: one that
    /// failed having changed nothing may run again (`runbook rollback`).
    pub(super) fn compensation_record((ok, changed): (bool, bool)) -> &'static str {
        match (ok, changed) {
            (true, _) => "succeeded",
            (false, false) => FAILED_UNCHANGED,
            (false, true) => "failed",
        }
    }

    /// A phase's gate: it opens when `approvers` distinct people approved
    /// it, counting the approval files given for it and the operator's own
    /// approval (`--approve`, `--yes`, or a yes at the prompt; asked only
    /// when the files are not enough). Every approval counted is recorded.
    async fn approve(&mut self, ph: &PlanPhase) -> Result<(), String> {
        let Some(gate) = &ph.approval else {
            return Ok(());
        };
        let need = gate.approvers.max(1) as usize;
        let mut given: Vec<Approval> = self
            .approvals
            .iter()
            .filter(|g| g.file.phase == ph.id)
            .map(|g| Approval {
                method: "file".into(),
                user: g.file.approver.clone(),
                host: g.file.host.clone(),
                at: g.file.at.clone(),
                file: Some(g.path.display().to_string()),
            })
            .collect();
        let people = |list: &[Approval]| {
            let mut names: Vec<&str> = list.iter().map(|a| a.user.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            names.len()
        };
        if people(&given) < need
            && let Some(method) = self.operator_approves(ph, gate).await
        {
            given.push(Approval {
                method: method.into(),
                user: crate::who::person(self.approver.as_deref()),
                host: journal::hostname(),
                at: now(),
                file: None,
            });
        }
        let not_required = given.iter().any(|a| a.method == "not_required");
        if people(&given) >= need || not_required {
            for approval in given {
                self.bus.emit(Event::ApprovalGiven {
                    at: now(),
                    phase: ph.id.clone(),
                    approval,
                });
            }
            return Ok(());
        }
        let reason = self.refusal(ph, need, &given);
        self.bus.emit(Event::ApprovalRefused {
            at: now(),
            phase: ph.id.clone(),
            reason: reason.clone(),
        });
        Err(reason)
    }

    /// How the operator approves this gate, if they do. An interrupt
    /// while the prompt waits is a refusal, at once.
    async fn operator_approves(
        &mut self,
        ph: &PlanPhase,
        gate: &crate::plan::PlanApproval,
    ) -> Option<&'static str> {
        if self.approve.contains(&ph.id) {
            Some("flag")
        } else if self.yes {
            Some("yes")
        } else if self.prompter.is_some() {
            let prompt = match self.render(&gate.prompt) {
                Ok((_, shown)) => shown,
                Err(_) => gate.prompt.text.clone(),
            };
            let p = self.prompter.as_mut()?;
            let answer = p.ask(&ph.id, &prompt);
            let yes = tokio::select! {
                a = answer => Some(a.unwrap_or(false)),
                () = super::interrupted(self.interrupts.clone(), 1) => None,
            };
            p.done(yes.is_some());
            yes.unwrap_or(false).then_some("prompt")
        } else if !gate.required {
            Some("not_required")
        } else {
            None
        }
    }

    /// Why the gate stays shut: no approval at all, or too few people.
    fn refusal(&self, ph: &PlanPhase, need: usize, given: &[Approval]) -> String {
        if given.is_empty() && need == 1 {
            return if self.prompter.is_some() && self.interrupt_count() >= 1 {
                "interrupted at the prompt".to_string()
            } else if self.prompter.is_some() {
                "refused at the prompt".to_string()
            } else {
                format!("no terminal to ask; pass --approve {} or --yes", ph.id)
            };
        }
        let mut names: Vec<String> = given
            .iter()
            .map(|a| format!("{} ({})", a.user, a.method))
            .collect();
        names.dedup();
        let have = if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        };
        format!(
            "{need} different people must approve it, and {} did: {have}; add approvals from `runbook approve RUNBOOK --phase {} --as NAME` with --approval FILE",
            given
                .iter()
                .map(|a| a.user.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            ph.id
        )
    }

    /// Undo this phase's started steps, newest first. A step whose failure
    /// changed nothing (its transaction rolled back) has nothing to undo:
    /// its compensation does not run, because an idempotent `DROP ... IF
    /// EXISTS` would destroy what an earlier run built. Returns whether
    /// every compensation that ran succeeded.
    async fn compensate(&mut self, phase: &str, registered: &[Registered<'_>]) -> bool {
        let mut clean = true;
        for reg in registered.iter().rev() {
            let step = reg.step;
            if let Some(how) = reg.unchanged {
                self.bus.emit(Event::CompensationSkipped {
                    at: now(),
                    step: step.id.clone(),
                    status: SkippedCompensation::NotNeeded,
                    reason: format!("not run: {}, so it changed nothing", how.why()),
                });
                let wrote = self.journal.compensated(&step.id, "not_needed").await;
                self.journal_failed(wrote);
                continue;
            }
            if reg.status.is_failure() && !step.rollback_on_partial {
                self.bus.emit(Event::CompensationSkipped {
                    at: now(),
                    step: step.id.clone(),
                    status: SkippedCompensation::NotRun,
                    reason: "not run: the step failed part-way, and `rollback_on_partial: false` keeps what it did; the undo check below says what is left".into(),
                });
                let wrote = self.journal.compensated(&step.id, "not_run").await;
                self.journal_failed(wrote);
                continue;
            }
            let ran = self
                .all_changed(
                    &step.rollback,
                    Some(phase),
                    Role::Compensation,
                    Some(&step.id),
                )
                .await;
            let ok = ran.0;
            clean &= ok;
            // A step that had succeeded is now rolled back; a failed one keeps
            // its failure, and the event says how its undo went.
            let after = match (ok, reg.status) {
                (false, _) => StepStatus::CompensationFailed,
                (true, StepStatus::Succeeded) => StepStatus::RolledBack,
                (true, s) => s,
            };
            self.bus.emit(Event::StepCompensated {
                at: now(),
                step: step.id.clone(),
                status: after,
            });
            let wrote = self
                .journal
                .compensated(&step.id, Self::compensation_record(ran))
                .await;
            self.journal_failed(wrote);
        }
        clean
    }

    /// A step that ended before the resume, in this phase's bookkeeping:
    /// its compensation stays registered, its change counts.
    fn carried<'p>(
        &mut self,
        ph: &PlanPhase,
        s: &'p PlanStep,
        row: &journal::StepRow,
        registered: &mut Vec<Registered<'p>>,
        phase_touched: &mut bool,
        st: &mut LineState,
    ) {
        let why = format!("{} before the run was resumed", row.status);
        self.carry_over(ph, s, row, &why);
        if row.status == "succeeded" {
            if !s.rollback.is_empty() {
                registered.push(Registered {
                    step: s,
                    status: StepStatus::Succeeded,
                    unchanged: None,
                });
            }
            if may_change(&s.action, ph.kind) {
                *phase_touched = true;
                st.touched = true;
                self.changed = true;
            }
        }
    }

    /// The state an undo is checked against, now.
    pub(super) async fn baseline(&self) -> undo::Baseline {
        undo::Baseline::take(&self.db, self.plan.settings.verify_undo.as_ref()).await
    }

    /// Check an undo: the state now against `before` (taken at `against`).
    async fn check_against(
        &self,
        before: Option<&undo::Baseline>,
        against: &str,
    ) -> (verdict::Check, crate::events::UndoCheck) {
        match before {
            Some(b) => b.compare(&self.baseline().await, against),
            None => unknown_check("no snapshot was taken before the changes"),
        }
    }

    /// Run one main-line step, unless the rollback triggers fire first (one
    /// that fires fails the step before it starts, which changed nothing),
    /// or a resume already knows how it ended (`fail_with`).
    async fn main_step(
        &mut self,
        ph: &PlanPhase,
        s: &PlanStep,
        fail_with: Option<crate::events::ErrorInfo>,
    ) -> Outcome {
        let failed = match fail_with {
            Some(e) => Fail::new(StepStatus::Failed, e),
            None => match self.tripped(&s.id, false).await {
                Some(f) => f.unchanged(),
                None => return self.step(s, Some(&ph.id), Role::Main, None).await,
            },
        };
        self.finish_step(s, Some(ph.kind), Instant::now(), 0, Err(failed), None)
    }

    /// A step with compensations, registered before it runs, so that a
    /// failure from here on undoes it too.
    fn register(&mut self, s: &'a PlanStep) -> Registered<'a> {
        self.bus.emit(Event::CompensationRegistered {
            at: now(),
            step: s.id.clone(),
            compensations: s.rollback.iter().map(|r| r.id.clone()).collect(),
        });
        Registered {
            step: s,
            status: StepStatus::Running,
            unchanged: None,
        }
    }

    /// Undo a failed phase as its `on_failure` says: its compensations, or
    /// its branch; then check the undo against the schema before the run
    /// changed anything when no earlier phase's changes stand in between,
    /// else against the schema before this phase. Returns whether an undo
    /// was needed and ran, and whether it failed.
    async fn undo_phase(
        &mut self,
        ph: &'a PlanPhase,
        mode: &'a PlanOnFailure,
        registered: &[Registered<'a>],
        reason: String,
        st: &mut LineState,
    ) -> (bool, bool) {
        let (scope, needed) = match mode {
            PlanOnFailure::Abort | PlanOnFailure::Continue => return (false, false),
            PlanOnFailure::Rollback => (
                RollbackScope::Phase,
                registered.iter().any(|r| r.unchanged.is_none()),
            ),
            PlanOnFailure::Steps(_) => (RollbackScope::PhaseBranch, true),
        };
        self.bus.emit(Event::RollbackStarted {
            at: now(),
            scope,
            phase: Some(ph.id.clone()),
            reason,
        });
        let clean = match mode {
            PlanOnFailure::Steps(branch) => {
                self.all(branch, Some(&ph.id), Role::PhaseBranch, None)
                    .await
            }
            _ => self.compensate(&ph.id, registered).await,
        };
        let verification = if !needed || !st.touched {
            None
        } else if st.kept.is_empty() {
            let (check, v) = self.check_against(st.run_baseline(), "run_start").await;
            st.back_to_start = Some(check);
            Some(v)
        } else {
            let (check, v) = self.check_against(st.phase_baseline(), "phase_start").await;
            if check.is_equal() {
                st.back_to_phase = Some(ph.id.clone());
            } else {
                st.back_to_start = Some(check);
                st.checked_since = Some(ph.id.clone());
            }
            Some(v)
        };
        self.bus.emit(Event::RollbackFinished {
            at: now(),
            scope,
            phase: Some(ph.id.clone()),
            clean,
            verification,
        });
        (needed, !clean)
    }

    /// Run one phase's steps. On a fatal failure, undo as the phase says
    /// and return what happened.
    async fn run_phase(&mut self, ph: &'a PlanPhase, st: &mut LineState) -> Option<PhaseFailure> {
        let mut registered: Vec<Registered<'a>> = Vec::new();
        let mut phase_touched = false;
        for s in &ph.steps {
            if self.interrupt_count() >= 1 {
                break;
            }
            // A resumed run: what ended before is carried over, and a step
            // the runner died in is run again, counted done, or undone.
            let mut fail_with = None;
            match self.earlier(ph, s) {
                resume::Earlier::Fresh => {}
                resume::Earlier::Done(row) => {
                    self.carried(ph, s, &row, &mut registered, &mut phase_touched, st);
                    continue;
                }
                resume::Earlier::Interrupted(row) => match self.interrupted_step(s, &row).await {
                    Ok(e) => fail_with = e,
                    Err(()) => {
                        let mut row = row;
                        row.status = "succeeded".into();
                        self.carried(ph, s, &row, &mut registered, &mut phase_touched, st);
                        continue;
                    }
                },
            }
            if !s.rollback.is_empty() {
                registered.push(self.register(s));
            }
            let o = self.main_step(ph, s, fail_with).await;
            let changes = may_change(&s.action, ph.kind);
            if changes && o.status != StepStatus::Skipped && o.unchanged.is_none() {
                phase_touched = true;
                st.touched = true;
                self.changed = true;
            }
            if let Some(last) = registered.last_mut().filter(|r| r.step.id == s.id) {
                last.status = o.status;
                last.unchanged = o.unchanged;
                if o.status == StepStatus::Skipped {
                    // Nothing ran, so there is nothing to undo.
                    registered.pop();
                }
            }
            if !o.fatal {
                continue;
            }
            self.failed_step = Some(format!("{}.{}", ph.id, s.id));
            let interrupted = o.status == StepStatus::Cancelled;
            // An interrupt unwinds the phase; so does a rollback trigger,
            // unless the phase says to abort or run its own branch.
            let mode = match &ph.on_failure {
                _ if interrupted => &PlanOnFailure::Rollback,
                PlanOnFailure::Continue if self.aborted => &PlanOnFailure::Rollback,
                own => own,
            };
            if matches!(mode, PlanOnFailure::Continue) {
                st.tolerated += 1;
                st.phase_status = "failed";
                self.bus.emit(Event::Warning {
                    at: now(),
                    message: format!(
                        "step `{}` failed and phase `{}` continues (on_failure: continue)",
                        s.id, ph.id
                    ),
                });
                continue;
            }
            if interrupted {
                // A second Ctrl-C stops the rollback too.
                self.stop_level = 2;
            }
            let reason = format!("step `{}` {}", s.id, o.status.name());
            let (undo_ran, undo_failed) = self.undo_phase(ph, mode, &registered, reason, st).await;
            // A rehearsal that found bad migrations is a verification
            // failure wherever it sits: it proved something, and its
            // scratch work changed nothing.
            // One that could not rehearse (its scratch database not made)
            // proved nothing: it is a failure, not a verification's.
            let rehearsal = matches!(s.action, Action::Rehearse(_));
            return Some(PhaseFailure {
                phase_kind: if rehearsal && o.judged {
                    PhaseKind::Verify
                } else {
                    ph.kind
                },
                judged: !rehearsal || o.judged,
                aborted: matches!(mode, PlanOnFailure::Abort),
                undo_ran,
                undo_failed,
                phase_touched,
            });
        }
        if phase_touched {
            st.kept.push(ph.id.clone());
        }
        None
    }

    /// Phases, failure handling, `on_failure`, `finally`; the status and verdict.
    /// The run's main line: the phases in order, the runbook's
    /// `on_failure` when one failed or the run was interrupted, the verdict,
    /// then `finally`.
    pub(super) async fn main_line(&mut self) -> (RunResult, String) {
        let mut st = LineState {
            touched: false,
            kept: Vec::new(),
            tolerated: 0,
            phase_status: "succeeded",
            baselines: self
                .resumed
                .as_ref()
                .map(|p| journal::baselines_of(&p.record))
                .unwrap_or_default(),
            back_to_start: None,
            back_to_phase: None,
            checked_since: None,
        };
        let (failure, not_approved) = self.phases(&mut st).await;
        let interrupted = self.interrupt_count() >= 1;
        let (on_failure_ran, on_failure_clean) =
            if (failure.is_some() || interrupted) && self.interrupt_count() < 2 {
                self.on_failure(&mut st).await
            } else {
                (false, true)
            };
        let facts = verdict::Facts {
            interrupted,
            interrupted_by: crate::signals::cause(),
            interrupted_at: self.failed_step.clone(),
            undo_clean: on_failure_clean && !failure.as_ref().is_some_and(|f| f.undo_failed),
            not_approved,
            failure: failure.as_ref().map(|f| verdict::Failed {
                at: self.failed_step.clone().unwrap_or_default(),
                phase_kind: f.phase_kind,
                judged: f.judged,
                aborted: f.aborted,
                touched: st.touched,
                undo_ran: f.undo_ran || on_failure_ran,
                undo_failed: f.undo_failed || !on_failure_clean,
                back_to_start: st.back_to_start.clone(),
                back_to_phase: st.back_to_phase.clone(),
                checked_since: st.checked_since.clone(),
                kept: st.kept.clone(),
            }),
            tolerated: st.tolerated,
        };
        let (status, exit_code, mut verdict) = verdict::decide(&facts);
        // A person must act: the backups this run took are the way back.
        if exit_code == crate::exit::ROLLBACK_FAILED && !interrupted {
            verdict.push_str(&self.backups_taken());
        }
        self.run_status = LiveStatus::Ended(status);
        self.finally().await;
        (RunResult { status, exit_code }, verdict)
    }

    /// The backups this run took and finished, as a verdict's last words.
    fn backups_taken(&self) -> String {
        let taken: Vec<(String, String)> = self
            .plan
            .phases
            .iter()
            .flat_map(|ph| &ph.steps)
            .filter(|s| matches!(s.action, crate::plan::Action::Backup(_)))
            .filter_map(|s| {
                let out = self.steps_out.get(&s.id)?;
                (out.get("status")?.as_str()? == "succeeded").then_some(())?;
                Some((s.id.clone(), out.get("path")?.as_str()?.to_string()))
            })
            .collect();
        verdict::restore_from(&taken, "this run")
    }

    /// The phases in order, until one fails, is not approved, or the run
    /// is interrupted.
    async fn phases(&mut self, st: &mut LineState) -> (Option<PhaseFailure>, Option<String>) {
        for ph in &self.plan.phases {
            if self.interrupt_count() >= 1 {
                break;
            }
            match self.phase_when(ph) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(failure) => return (Some(failure), None),
            }
            if self.phase_done_earlier(ph) {
                self.phase_carried_over(ph, st);
                continue;
            }
            if let Err(reason) = self.approve(ph).await {
                return (
                    None,
                    Some(format!("phase `{}` not approved: {reason}", ph.id)),
                );
            }
            // The schema before a phase that may change it: what an undo
            // is checked against.
            if ph.steps.iter().any(|s| may_change(&s.action, ph.kind))
                && !st.baselines.iter().any(|(p, _)| *p == ph.id)
            {
                let before = self.baseline().await;
                st.baselines.push((ph.id.clone(), before));
                let wrote = self.journal.baselines(&st.baselines).await;
                self.journal_failed(wrote);
            }
            let phase_started = Instant::now();
            self.bus.emit(Event::PhaseStarted {
                at: now(),
                phase: ph.id.clone(),
                kind: ph.kind.name().into(),
            });
            st.phase_status = "succeeded";
            let failed = self.run_phase(ph, st).await;
            let status = if failed.is_some() {
                "failed"
            } else if self.interrupt_count() >= 1 {
                "interrupted"
            } else {
                st.phase_status
            };
            self.bus.emit(Event::PhaseFinished {
                at: now(),
                phase: ph.id.clone(),
                status: status.into(),
                duration_ms: ms(phase_started.elapsed()),
            });
            if failed.is_some() {
                return (failed, None);
            }
        }
        (None, None)
    }

    /// A phase's `when`: false skips it (and says so); an expression that
    /// cannot be evaluated fails the run there, before the phase.
    fn phase_when(&mut self, ph: &PlanPhase) -> Result<bool, PhaseFailure> {
        match self.when(&ph.when) {
            Ok(true) => Ok(true),
            Ok(false) => {
                self.bus.emit(Event::PhaseSkipped {
                    at: now(),
                    phase: ph.id.clone(),
                    kind: ph.kind.name().into(),
                    reason: format!(
                        "when: {}",
                        ph.when.as_ref().map_or("false", |w| w.expr.as_str())
                    ),
                });
                Ok(false)
            }
            Err(e) => {
                self.bus.emit(Event::Warning {
                    at: now(),
                    message: format!("phase `{}`: failed to evaluate `when`: {e}", ph.id),
                });
                self.failed_step = Some(format!("{}.when", ph.id));
                Err(PhaseFailure {
                    phase_kind: ph.kind,
                    judged: true,
                    aborted: false,
                    undo_ran: false,
                    undo_failed: false,
                    phase_touched: false,
                })
            }
        }
    }

    /// The runbook's `on_failure` steps, and the check of where they left
    /// the database against the state before the run changed it. Returns
    /// whether they ran, and whether they all succeeded.
    async fn on_failure(&mut self, st: &mut LineState) -> (bool, bool) {
        let plan = self.plan;
        if plan.on_failure.is_empty() {
            return (false, true);
        }
        self.stop_level = 2;
        self.run_status = LiveStatus::Failed;
        self.bus.emit(Event::RollbackStarted {
            at: now(),
            scope: RollbackScope::OnFailure,
            phase: None,
            reason: self
                .failed_step
                .clone()
                .map_or_else(|| "interrupted".into(), |s| format!("{s} failed")),
        });
        let clean = self
            .all(&plan.on_failure, None, Role::OnFailure, None)
            .await;
        // The runbook's own undo answers for the whole run.
        let verification = if st.touched {
            let now_state = self.baseline().await;
            let (check, v) = match st.run_baseline() {
                Some(b) => b.compare(&now_state, "run_start"),
                None => unknown_check("no snapshot was taken before the run's changes"),
            };
            st.back_to_phase = None;
            st.checked_since = None;
            if !check.is_equal() {
                // Not back at the start: say how far back it did get.
                st.back_to_phase = st
                    .baselines
                    .iter()
                    .rev()
                    .find(|(_, b)| b.compare(&now_state, "").0.is_equal())
                    .map(|(p, _)| p.clone());
                // That phase and every later one are undone: only the
                // phases before it keep their changes.
                if let Some(p) = &st.back_to_phase
                    && let Some(i) = st.kept.iter().position(|k| k == p)
                {
                    st.kept.truncate(i);
                }
            }
            st.back_to_start = Some(check);
            Some(v)
        } else {
            None
        };
        self.bus.emit(Event::RollbackFinished {
            at: now(),
            scope: RollbackScope::OnFailure,
            phase: None,
            clean,
            verification,
        });
        (true, clean)
    }

    /// The `finally` steps, once the verdict is known; their failure is a
    /// warning, never a change of the verdict.
    async fn finally(&mut self) {
        let plan = self.plan;
        if plan.finally_steps.is_empty() {
            return;
        }
        self.stop_level = self.stop_level.max(2);
        if !self
            .all(&plan.finally_steps, None, Role::Finally, None)
            .await
        {
            self.bus.emit(Event::Warning {
                at: now(),
                message: "a `finally` step failed; see its entry in the report".into(),
            });
        }
    }
}

/// An undo that could not be checked.
pub(super) fn unknown_check(why: &str) -> (verdict::Check, crate::events::UndoCheck) {
    (
        verdict::Check::Unknown(why.into()),
        crate::events::UndoCheck {
            against: "run_start".into(),
            result: "unknown".into(),
            changes: Vec::new(),
            error: Some(why.into()),
        },
    )
}

/// A step whose compensation is registered, and how it ended.
struct Registered<'p> {
    step: &'p PlanStep,
    status: StepStatus,
    unchanged: Option<super::Unchanged>,
}

/// What the main line keeps across phases.
pub(super) struct LineState {
    /// The run has committed a change.
    pub(super) touched: bool,
    /// Phases that completed with their changes in place.
    pub(super) kept: Vec<String>,
    tolerated: usize,
    phase_status: &'static str,
    /// The state before each phase that may change it, in order: the
    /// first is the state before the run changed anything.
    baselines: Vec<(String, undo::Baseline)>,
    /// How the undo that reaches back to the run's start checked out.
    back_to_start: Option<verdict::Check>,
    /// When it did not reach back that far: the phase it is verified to
    /// have brought the schema back to the start of.
    back_to_phase: Option<String>,
    /// The phase whose start `back_to_start` was checked against, when
    /// earlier phases' changes stay.
    checked_since: Option<String>,
}

impl LineState {
    fn run_baseline(&self) -> Option<&undo::Baseline> {
        self.baselines.first().map(|(_, b)| b)
    }

    fn phase_baseline(&self) -> Option<&undo::Baseline> {
        self.baselines.last().map(|(_, b)| b)
    }
}

/// A phase that stopped on a failure.
struct PhaseFailure {
    phase_kind: PhaseKind,
    /// The failing step judged what it verifies; false for a rehearsal
    /// that could not rehearse ([`Fail::judged`]).
    judged: bool,
    aborted: bool,
    undo_ran: bool,
    undo_failed: bool,
    #[expect(dead_code, reason = "kept for the run journal")]
    phase_touched: bool,
}
