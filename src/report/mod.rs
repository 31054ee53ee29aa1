//! Report: the run as a document, built only from events.
//!
//! The report starts from the plan, so phases and steps that never ran are
//! listed as `not_run` rather than missing. Each event updates it. Sinks write
//! it as `report.json` (schemas/report.v1.schema.json), `report.md`, JUnit XML
//! and `events.jsonl`, during the run and at its end, on every outcome.
//! The report is rewritten off the executor's path, by a writer thread.

pub mod files;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod progress;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::{
    Approval, CheckResult, ErrorInfo, Event, LockImpact, Role, RunStatus, StepStatus, Target,
};
use crate::plan::{Plan, PlanOnFailure, PlanStep};

pub const REPORT_VERSION: &str = "runbook-report/v1";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub report_version: String,
    pub runbook: RunbookRef,
    pub runner: Runner,
    pub run: RunInfo,
    pub params: Value,
    pub target: Target,
    pub phases: Vec<PhaseReport>,
    /// Rollbacks and branches, in the order they ran.
    pub branches: Vec<BranchReport>,
    #[serde(rename = "finally")]
    pub finally_steps: Vec<StepReport>,
    pub warnings: Vec<String>,
    /// What `runbook lint` found before the run (absent with `settings.lint: off`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lint: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunbookRef {
    pub name: String,
    pub version: String,
    pub file: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Runner {
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    pub id: String,
    pub status: RunStatus,
    pub exit_code: Option<u8>,
    pub verdict: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<u64>,
    pub failed_step: Option<String>,
    /// The `abort_when` trigger that stopped the run, if one did.
    #[serde(default)]
    pub aborted_by: Option<AbortedBy>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AbortedBy {
    pub trigger: String,
    pub step: Option<String>,
    pub message: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PhaseReport {
    pub id: String,
    pub kind: String,
    /// not_run, running, succeeded, failed, skipped, interrupted.
    pub status: String,
    pub started_at: Option<String>,
    pub duration_ms: Option<u64>,
    /// The first approval of its gate (kept for readers of version 1).
    pub approval: Option<Approval>,
    /// Every approval its gate counted, one per person.
    #[serde(default)]
    pub approvals: Vec<Approval>,
    /// How many different people its gate needs; null without a gate.
    #[serde(default)]
    pub approvers_required: Option<u32>,
    pub note: Option<String>,
    pub steps: Vec<StepReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttemptReport {
    pub attempt: u32,
    pub started_at: String,
    pub error: Option<ErrorInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Compensation {
    pub steps: Vec<String>,
    /// registered, succeeded or failed.
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepReport {
    pub id: String,
    pub name: Option<String>,
    pub kind: String,
    pub role: Role,
    pub for_step: Option<String>,
    pub status: StepStatus,
    pub started_at: Option<String>,
    pub duration_ms: Option<u64>,
    pub attempts: Vec<AttemptReport>,
    /// The SQL or command as it ran, redacted.
    pub action: String,
    pub rows_affected: Option<u64>,
    pub exit_code: Option<i32>,
    pub check: Option<CheckResult>,
    pub error: Option<ErrorInfo>,
    pub stdout_tail: Option<String>,
    pub stderr_tail: Option<String>,
    pub notices: Vec<String>,
    /// Kind-specific results: a backup's manifest summary, a restore's checks.
    pub details: Option<Value>,
    /// What the step's locks did to other sessions.
    pub lock_impact: Option<LockImpact>,
    pub compensation: Option<Compensation>,
    /// The step failed part-way: it is not transactional, and what it did
    /// before failing was committed.
    pub partial: bool,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BranchReport {
    /// phase (compensations), phase_branch or on_failure.
    pub scope: crate::events::RollbackScope,
    pub phase: Option<String>,
    pub reason: String,
    pub clean: Option<bool>,
    /// The schema after the undo against the snapshot before the changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<crate::events::UndoCheck>,
    pub steps: Vec<StepReport>,
}

#[derive(Debug, Clone, Copy)]
enum Loc {
    Phase(usize, usize),
    Branch(usize, usize),
    Finally(usize),
}

fn planned(s: &PlanStep, role: Role) -> StepReport {
    StepReport {
        id: s.id.clone(),
        name: s.name.clone(),
        kind: s.action.kind().into(),
        role,
        ..planned_blank()
    }
}

/// Builds a [`Report`] from the event stream.
#[derive(Debug, Clone)]
pub struct Builder {
    report: Report,
    locs: HashMap<String, Loc>,
    /// Every planned step by id, for steps that appear only in branches.
    plan_steps: HashMap<String, StepReport>,
}

impl Builder {
    /// Record the lint that ran before the run.
    pub fn with_lint(mut self, lint: Value) -> Self {
        self.report.lint = Some(lint);
        self
    }

    pub fn new(plan: &Plan, run_id: &str) -> Self {
        let mut plan_steps = HashMap::new();
        fn index(steps: &[PlanStep], role: Role, out: &mut HashMap<String, StepReport>) {
            for s in steps {
                out.insert(s.id.clone(), planned(s, role));
                index(&s.rollback, Role::Compensation, out);
            }
        }
        let mut locs = HashMap::new();
        let phases = plan
            .phases
            .iter()
            .enumerate()
            .map(|(pi, ph)| {
                index(&ph.steps, Role::Main, &mut plan_steps);
                if let PlanOnFailure::Steps(b) = &ph.on_failure {
                    index(b, Role::PhaseBranch, &mut plan_steps);
                }
                PhaseReport {
                    id: ph.id.clone(),
                    kind: ph.kind.name().into(),
                    status: "not_run".into(),
                    started_at: None,
                    duration_ms: None,
                    approval: None,
                    approvals: Vec::new(),
                    approvers_required: ph.approval.as_ref().map(|a| a.approvers),
                    note: None,
                    steps: ph
                        .steps
                        .iter()
                        .enumerate()
                        .map(|(si, s)| {
                            locs.insert(s.id.clone(), Loc::Phase(pi, si));
                            planned(s, Role::Main)
                        })
                        .collect(),
                }
            })
            .collect();
        index(&plan.on_failure, Role::OnFailure, &mut plan_steps);
        index(&plan.finally_steps, Role::Finally, &mut plan_steps);
        Builder {
            report: Report {
                report_version: REPORT_VERSION.into(),
                runbook: RunbookRef {
                    name: plan.runbook.name.clone(),
                    version: plan.runbook.version.clone(),
                    file: plan.runbook.file.clone(),
                    sha256: plan.runbook.sha256.clone(),
                },
                runner: Runner {
                    version: env!("CARGO_PKG_VERSION").into(),
                },
                run: RunInfo {
                    id: run_id.into(),
                    status: RunStatus::Running,
                    exit_code: None,
                    verdict: "RUNNING (or killed before it could finish)".into(),
                    started_at: None,
                    finished_at: None,
                    duration_ms: None,
                    failed_step: None,
                    aborted_by: None,
                },
                params: serde_json::to_value(&plan.params).unwrap_or_default(),
                target: Target::default(),
                phases,
                branches: Vec::new(),
                finally_steps: Vec::new(),
                warnings: Vec::new(),
                lint: None,
            },
            locs,
            plan_steps,
        }
    }

    pub fn report(&self) -> &Report {
        &self.report
    }

    fn step_mut(&mut self, id: &str) -> Option<&mut StepReport> {
        match *self.locs.get(id)? {
            Loc::Phase(p, s) => self.report.phases.get_mut(p)?.steps.get_mut(s),
            Loc::Branch(b, s) => self.report.branches.get_mut(b)?.steps.get_mut(s),
            Loc::Finally(s) => self.report.finally_steps.get_mut(s),
        }
    }

    /// Place a step that runs outside the main line (compensations,
    /// branches, finally) the first time it appears.
    fn place(&mut self, id: &str, role: Role) {
        if role == Role::Main || self.locs.contains_key(id) {
            return;
        }
        let mut s = self
            .plan_steps
            .get(id)
            .cloned()
            .unwrap_or_else(|| StepReport {
                id: id.to_string(),
                ..planned_blank()
            });
        s.role = role;
        if role == Role::Finally {
            self.report.finally_steps.push(s);
            self.locs
                .insert(id.into(), Loc::Finally(self.report.finally_steps.len() - 1));
            return;
        }
        if self.report.branches.is_empty() {
            self.report.branches.push(BranchReport {
                scope: crate::events::RollbackScope::Unknown,
                phase: None,
                reason: String::new(),
                clean: None,
                verification: None,
                steps: Vec::new(),
            });
        }
        let b = self.report.branches.len() - 1;
        self.report.branches[b].steps.push(s);
        self.locs.insert(
            id.into(),
            Loc::Branch(b, self.report.branches[b].steps.len() - 1),
        );
    }

    // Long by design: one arm per event kind, each folding that event into
    // the report; splitting it would scatter one fold over many functions.
    pub fn apply(&mut self, e: &Event) {
        match e {
            Event::RunStarted {
                at, target, params, ..
            } => {
                self.report.run.started_at = Some(at.clone());
                self.report.target = target.clone();
                self.report.params = params.clone();
            }
            Event::PhaseStarted { at, phase, .. } => {
                if let Some(p) = self.report.phases.iter_mut().find(|p| &p.id == phase) {
                    p.status = "running".into();
                    p.started_at = Some(at.clone());
                }
            }
            Event::PhaseSkipped { phase, reason, .. } => {
                if let Some(p) = self.report.phases.iter_mut().find(|p| &p.id == phase) {
                    p.status = "skipped".into();
                    p.note = Some(reason.clone());
                    for s in &mut p.steps {
                        s.status = StepStatus::Skipped;
                    }
                }
            }
            Event::ApprovalGiven {
                phase, approval, ..
            } => {
                if let Some(p) = self.report.phases.iter_mut().find(|p| &p.id == phase) {
                    p.approval.get_or_insert_with(|| approval.clone());
                    p.approvals.push(approval.clone());
                }
            }
            Event::AbortTriggered {
                at,
                trigger,
                step,
                message,
            } => {
                self.report.run.aborted_by = Some(AbortedBy {
                    trigger: trigger.clone(),
                    step: step.clone(),
                    message: message.clone(),
                    at: at.clone(),
                });
            }
            Event::ApprovalRefused { phase, reason, .. } => {
                if let Some(p) = self.report.phases.iter_mut().find(|p| &p.id == phase) {
                    p.status = "not_approved".into();
                    p.note = Some(reason.clone());
                }
            }
            Event::PhaseFinished {
                phase,
                status,
                duration_ms,
                ..
            } => {
                if let Some(p) = self.report.phases.iter_mut().find(|p| &p.id == phase) {
                    p.status = status.clone();
                    p.duration_ms = Some(*duration_ms);
                }
            }
            Event::CompensationRegistered {
                step,
                compensations,
                ..
            } => {
                if let Some(s) = self.step_mut(step) {
                    s.compensation = Some(Compensation {
                        steps: compensations.clone(),
                        status: "registered".into(),
                    });
                }
            }
            Event::StepStarted {
                at,
                step,
                role,
                for_step,
                attempt,
                action,
                ..
            } => {
                self.place(step, *role);
                if let Some(s) = self.step_mut(step) {
                    s.status = StepStatus::Running;
                    if s.started_at.is_none() {
                        s.started_at = Some(at.clone());
                    }
                    s.for_step.clone_from(for_step);
                    s.action.clone_from(action);
                    s.attempts.push(AttemptReport {
                        attempt: *attempt,
                        started_at: at.clone(),
                        error: None,
                    });
                }
            }
            Event::StepOutput {
                step, stream, line, ..
            } => {
                if stream == "notice"
                    && let Some(s) = self.step_mut(step)
                {
                    s.notices.push(line.clone());
                }
            }
            Event::StepProgress { .. } => {}
            // Kept while the step runs, so that a report written before it
            // ends (a killed run's) has the verdicts reached.
            Event::RehearsalVerdict {
                step, migration, ..
            } => {
                if let Some(s) = self.step_mut(step) {
                    let details = s.details.get_or_insert_with(|| {
                        serde_json::json!({
                            "migrations": [],
                            "stopped": "the run ended (killed, or its connection lost) before the rehearsal did; the migrations after these were not judged"
                        })
                    });
                    if let Some(rows) = details["migrations"].as_array_mut() {
                        rows.push(migration.clone());
                    }
                }
            }
            Event::StepRetry { step, error, .. } => {
                if let Some(a) = self.step_mut(step).and_then(|s| s.attempts.last_mut()) {
                    a.error = Some(error.clone());
                }
            }
            Event::StepSkipped {
                step, role, reason, ..
            } => {
                self.place(step, *role);
                if let Some(s) = self.step_mut(step) {
                    s.status = StepStatus::Skipped;
                    s.note = Some(reason.clone());
                }
            }
            Event::StepFinished {
                step,
                status,
                duration_ms,
                rows_affected,
                exit_code,
                check,
                error,
                stdout_tail,
                stderr_tail,
                details,
                lock_impact,
                partial,
                ..
            } => {
                if let Some(s) = self.step_mut(step) {
                    s.partial = *partial;
                    s.details.clone_from(details);
                    s.lock_impact.clone_from(lock_impact);
                    s.status = *status;
                    s.duration_ms = Some(*duration_ms);
                    s.rows_affected = *rows_affected;
                    s.exit_code = *exit_code;
                    s.check.clone_from(check);
                    s.error.clone_from(error);
                    s.stdout_tail.clone_from(stdout_tail);
                    s.stderr_tail.clone_from(stderr_tail);
                    if let (Some(a), Some(err)) = (s.attempts.last_mut(), error) {
                        a.error = Some(err.clone());
                    }
                }
            }
            Event::StepCompensated { step, status, .. } => {
                if let Some(s) = self.step_mut(step) {
                    s.status = *status;
                    if let Some(c) = s.compensation.as_mut() {
                        c.status = if *status == StepStatus::CompensationFailed {
                            "failed"
                        } else {
                            "succeeded"
                        }
                        .into();
                    }
                }
            }
            Event::RollbackStarted {
                scope,
                phase,
                reason,
                ..
            } => {
                self.report.branches.push(BranchReport {
                    scope: *scope,
                    phase: phase.clone(),
                    reason: reason.clone(),
                    clean: None,
                    verification: None,
                    steps: Vec::new(),
                });
            }
            Event::RollbackFinished {
                clean,
                verification,
                ..
            } => {
                if let Some(b) = self.report.branches.last_mut() {
                    b.clean = Some(*clean);
                    b.verification.clone_from(verification);
                }
            }
            Event::CompensationSkipped {
                step,
                status,
                reason,
                ..
            } => {
                if let Some(s) = self.step_mut(step) {
                    if let Some(c) = s.compensation.as_mut() {
                        c.status = status.name().into();
                    }
                    s.note = Some(reason.clone());
                }
            }
            Event::Warning { message, .. } => self.report.warnings.push(message.clone()),
            Event::RunFinished {
                at,
                status,
                exit_code,
                duration_ms,
                verdict,
                failed_step,
            } => {
                let r = &mut self.report.run;
                r.status = *status;
                r.exit_code = Some(*exit_code);
                r.finished_at = Some(at.clone());
                r.duration_ms = Some(*duration_ms);
                r.verdict.clone_from(verdict);
                r.failed_step.clone_from(failed_step);
            }
        }
    }
}

fn planned_blank() -> StepReport {
    StepReport {
        id: String::new(),
        name: None,
        kind: String::new(),
        role: Role::Main,
        for_step: None,
        status: StepStatus::NotRun,
        started_at: None,
        duration_ms: None,
        attempts: Vec::new(),
        action: String::new(),
        rows_affected: None,
        exit_code: None,
        check: None,
        error: None,
        stdout_tail: None,
        stderr_tail: None,
        details: None,
        lock_impact: None,
        notices: Vec::new(),
        compensation: None,
        partial: false,
        note: None,
    }
}

impl Report {
    /// Every step that ran or was planned, main line first.
    pub fn all_steps(&self) -> impl Iterator<Item = (Option<&str>, &StepReport)> {
        self.phases
            .iter()
            .flat_map(|p| p.steps.iter().map(move |s| (Some(p.id.as_str()), s)))
            .chain(
                self.branches
                    .iter()
                    .flat_map(|b| b.steps.iter().map(move |s| (b.phase.as_deref(), s))),
            )
            .chain(self.finally_steps.iter().map(|s| (None, s)))
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("report serializes");
        s.push('\n');
        s
    }
}
