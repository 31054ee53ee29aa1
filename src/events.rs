//! Events: what the executor says, and the only thing reporters hear.
//!
//! The executor never prints. It emits events; the bus redacts each one once
//! and hands it to every sink (progress display, event log, report builder).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::redact::Redactor;

/// A step's part in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A step of a phase.
    Main,
    /// A step's `rollback` compensation.
    Compensation,
    /// A phase's `on_failure` step list.
    PhaseBranch,
    /// The runbook's `on_failure` branch.
    OnFailure,
    /// The runbook's `finally` steps.
    Finally,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Succeeded,
    Failed,
    Skipped,
    /// It succeeded, then its compensation undid it.
    RolledBack,
    /// Its compensation failed: a person must look.
    CompensationFailed,
    TimedOut,
    Cancelled,
    /// Started when the run was killed; known only from the event log.
    Running,
    /// Never reached.
    NotRun,
}

impl StepStatus {
    pub fn name(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::RolledBack => "rolled_back",
            Self::CompensationFailed => "compensation_failed",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
            Self::Running => "running",
            Self::NotRun => "not_run",
        }
    }

    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Self::Failed | Self::TimedOut | Self::Cancelled | Self::CompensationFailed
        )
    }
}

/// An undo, checked: the schema after it against a snapshot taken before.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UndoCheck {
    /// What it was compared with: `run_start` (before the run changed
    /// anything) or `phase_start` (before the failed phase).
    pub against: String,
    /// `equal`, `differs` or `unknown` (the comparison could not be made).
    pub result: String,
    /// The objects that differ, with both definitions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    /// A preflight step failed; nothing was changed.
    PreflightFailed,
    /// A step outside preflight failed, and nothing had been changed: its
    /// transaction rolled back and no earlier step changed anything.
    FailedUnchanged,
    /// A step failed and its rollback completed.
    RolledBack,
    /// A verify check failed.
    VerifyFailed,
    /// A compensation or branch step failed, or the undo ran and the schema
    /// still differs from where it should be: a person must act.
    RollbackFailed,
    /// The undo ran and every step of it succeeded, but whether the schema
    /// is back could not be checked: a person must act.
    RollbackUnverified,
    /// The failed phase was undone (or its failed step changed nothing),
    /// but the changes of earlier phases are still in place: a person must
    /// decide whether to keep them or undo them.
    PartlyUndone,
    /// The run changed the database and nothing undid it: `on_failure:
    /// abort`, or a change no rollback covers. A person must act.
    NotUndone,
    NotApproved,
    Interrupted,
    /// Another run of this runbook holds the database; nothing ran.
    Locked,
}

impl RunStatus {
    pub fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::PreflightFailed => "preflight_failed",
            Self::FailedUnchanged => "failed_unchanged",
            Self::RolledBack => "rolled_back",
            Self::VerifyFailed => "verify_failed",
            Self::RollbackFailed => "rollback_failed",
            Self::RollbackUnverified => "rollback_unverified",
            Self::PartlyUndone => "partly_undone",
            Self::NotUndone => "not_undone",
            Self::NotApproved => "not_approved",
            Self::Interrupted => "interrupted",
            Self::Locked => "locked",
        }
    }
}

/// The database a run targets. Never holds the password.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub server_version: Option<String>,
    pub ephemeral: bool,
    /// How the session is protected: `TLSv1.3, certificate and host
    /// verified (sslmode=verify-full)`, or `not encrypted (sslmode=prefer)`.
    #[serde(default)]
    pub tls: Option<String>,
}

/// Which undo a rollback is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackScope {
    /// The compensations of a failed phase's steps.
    Phase,
    /// A phase's own `on_failure` steps.
    PhaseBranch,
    /// The runbook's `on_failure` steps.
    OnFailure,
    /// The compensations of an earlier run (`runbook rollback`).
    Run,
    /// A report rebuilt from events that lack the start of the rollback.
    #[serde(other)]
    Unknown,
}

impl std::fmt::Display for RollbackScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl RollbackScope {
    pub fn name(self) -> &'static str {
        match self {
            Self::Phase => "phase",
            Self::PhaseBranch => "phase_branch",
            Self::OnFailure => "on_failure",
            Self::Run => "run",
            Self::Unknown => "unknown",
        }
    }
}

/// What kind of failure an error is. Retries match on the first four
/// (`retry: on:`); reports and progress show every one by its snake_case
/// name, which report.json's schema lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    LockTimeout,
    Deadlock,
    SerializationFailure,
    Connection,
    /// Any other error the server returned.
    Sql,
    /// The step's timeout passed.
    Timeout,
    Cancelled,
    Interrupted,
    /// A program exited with a code the step did not expect.
    Exit,
    /// A check's expectation did not hold.
    Check,
    Io,
    /// Another run holds the run lock.
    Lock,
    Template,
    Verify,
    Snapshot,
    Migrate,
    Rehearse,
    Backup,
    Backfill,
    Restore,
    /// A PostgreSQL client program is missing or too old.
    Tool,
    /// An `abort_when` trigger fired: the run stops and unwinds.
    AbortTrigger,
    /// Anything else (and any name an older journal row holds that this
    /// version does not know).
    #[default]
    #[serde(other)]
    Internal,
}

impl ErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::LockTimeout => "lock_timeout",
            Self::Deadlock => "deadlock",
            Self::SerializationFailure => "serialization_failure",
            Self::Connection => "connection",
            Self::Sql => "sql",
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
            Self::Exit => "exit",
            Self::Check => "check",
            Self::Io => "io",
            Self::Lock => "lock",
            Self::Template => "template",
            Self::Verify => "verify",
            Self::Snapshot => "snapshot",
            Self::Migrate => "migrate",
            Self::Rehearse => "rehearse",
            Self::Backup => "backup",
            Self::Backfill => "backfill",
            Self::Restore => "restore",
            Self::Tool => "tool",
            Self::AbortTrigger => "abort_trigger",
            Self::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<crate::model::ErrorClass> for ErrorKind {
    fn from(c: crate::model::ErrorClass) -> Self {
        use crate::model::ErrorClass as C;
        match c {
            C::LockTimeout => Self::LockTimeout,
            C::Deadlock => Self::Deadlock,
            C::SerializationFailure => Self::SerializationFailure,
            C::Connection => Self::Connection,
        }
    }
}

/// A server error, in full.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ErrorInfo {
    pub class: ErrorKind,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Character position in the statement (1-based), as the server reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
    /// Where in the runbook, `file:line:col`, when it can be mapped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// One expectation of a check, evaluated.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Expectation {
    pub target: String,
    pub op: String,
    pub expected: Value,
    pub actual: Value,
    pub passed: bool,
}

/// One `assert` expression of a check, evaluated.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Assertion {
    pub expr: String,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a step's locks did to other sessions, sampled by the lock monitor
/// every `interval_ms`; waits and holds are accurate to about one interval.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LockImpact {
    pub samples: u32,
    pub interval_ms: u64,
    /// Sessions that waited on a lock our sessions held or queued for.
    pub sessions_waited: u32,
    /// The longest single wait.
    pub waited_max_ms: u64,
    /// All waits added up.
    pub waited_total_ms: u64,
    /// Sessions waiting at the worst moment.
    pub waiting_max: u32,
    /// The longest ACCESS EXCLUSIVE lock our sessions held on an existing relation.
    pub access_exclusive_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_exclusive_on: Option<String>,
    /// Why sampling stopped early, when it did: the figures cover less than the step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A check's evaluated result.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CheckResult {
    pub rows: usize,
    pub expectations: Vec<Expectation>,
    pub assertions: Vec<Assertion>,
    pub severity: String,
}

/// Who approved a gate, and how.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Approval {
    /// `flag` (--approve PHASE), `yes` (--yes), `prompt` (typed at a
    /// terminal), `file` (`--approval FILE`, from `runbook approve`) or
    /// `not_required`.
    pub method: String,
    /// `--as`, else `$GITHUB_ACTOR`, else the local user.
    pub user: String,
    /// The machine it was given on (empty in journals from before it was
    /// recorded).
    #[serde(default)]
    pub host: String,
    pub at: String,
    /// The approval file it came from (`method: file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// Everything the executor reports. Each carries a timestamp (`at`, RFC 3339).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        at: String,
        run_id: String,
        runbook: String,
        version: String,
        file: String,
        sha256: String,
        runner_version: String,
        params: Value,
        target: Target,
        /// Main-line steps, for progress totals.
        total_steps: usize,
    },
    PhaseStarted {
        at: String,
        phase: String,
        kind: String,
    },
    PhaseSkipped {
        at: String,
        phase: String,
        kind: String,
        reason: String,
    },
    ApprovalGiven {
        at: String,
        phase: String,
        approval: Approval,
    },
    ApprovalRefused {
        at: String,
        phase: String,
        reason: String,
    },
    /// An `abort_when` check failed: the run stops and unwinds. `step` is
    /// the step it stopped (running, or about to start).
    AbortTriggered {
        at: String,
        trigger: String,
        step: Option<String>,
        message: String,
    },
    PhaseFinished {
        at: String,
        phase: String,
        status: String,
        duration_ms: u64,
    },
    CompensationRegistered {
        at: String,
        step: String,
        compensations: Vec<String>,
    },
    StepStarted {
        at: String,
        step: String,
        phase: Option<String>,
        kind: String,
        role: Role,
        /// For compensations, the step they undo.
        #[serde(skip_serializing_if = "Option::is_none")]
        for_step: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        attempt: u32,
        /// The SQL or command, rendered and redacted.
        action: String,
    },
    StepOutput {
        at: String,
        step: String,
        /// `stdout`, `stderr` or `notice`.
        stream: String,
        line: String,
    },
    /// How far a long step has come: tables dumped or restored.
    StepProgress {
        at: String,
        step: String,
        done: u64,
        total: Option<u64>,
        /// What is counted: `tables`, `rows`.
        unit: String,
        /// The item just finished, such as a table name.
        #[serde(skip_serializing_if = "Option::is_none")]
        item: Option<String>,
        /// Units per second so far in this run, when measured.
        #[serde(skip_serializing_if = "Option::is_none")]
        per_second: Option<f64>,
        /// The estimated time left at that rate.
        #[serde(skip_serializing_if = "Option::is_none")]
        eta_ms: Option<u64>,
    },
    /// A rehearsal's verdict on one migration, as soon as it is final: the
    /// report of a rehearsal killed half-way keeps those it reached. The
    /// step's own `details` replace them when it finishes.
    RehearsalVerdict {
        at: String,
        step: String,
        /// One row of the step's `details.migrations`.
        migration: Value,
    },
    StepRetry {
        at: String,
        step: String,
        attempt: u32,
        error: ErrorInfo,
        wait_ms: u64,
    },
    StepSkipped {
        at: String,
        step: String,
        phase: Option<String>,
        kind: String,
        role: Role,
        reason: String,
    },
    StepFinished {
        at: String,
        step: String,
        status: StepStatus,
        duration_ms: u64,
        attempts: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        rows_affected: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        check: Option<CheckResult>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<ErrorInfo>,
        #[serde(skip_serializing_if = "Option::is_none")]
        stdout_tail: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        stderr_tail: Option<String>,
        /// What the step kind reports beyond the common fields: a backup's
        /// manifest summary, a restore's checks.
        #[serde(skip_serializing_if = "Option::is_none")]
        details: Option<Value>,
        /// The step failed part-way: it is not transactional, and what it
        /// did before failing was committed.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        partial: bool,
        /// What the step's locks did to other sessions (steps that change things).
        #[serde(skip_serializing_if = "Option::is_none")]
        lock_impact: Option<LockImpact>,
    },
    /// A step that had succeeded was undone by its compensation (or not).
    StepCompensated {
        at: String,
        step: String,
        status: StepStatus,
    },
    /// A registered compensation that did not run because its step changed
    /// nothing (its transaction rolled back).
    CompensationSkipped {
        at: String,
        step: String,
        /// `not_needed`: the step changed nothing; `not_run`: it failed
        /// part-way and `rollback_on_partial: false` keeps what it did.
        status: SkippedCompensation,
        reason: String,
    },
    RollbackStarted {
        at: String,
        scope: RollbackScope,
        phase: Option<String>,
        reason: String,
    },
    RollbackFinished {
        at: String,
        scope: RollbackScope,
        phase: Option<String>,
        clean: bool,
        /// The schema after the undo compared with the schema before the
        /// changes it undoes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        verification: Option<UndoCheck>,
    },
    Warning {
        at: String,
        message: String,
    },
    RunFinished {
        at: String,
        status: RunStatus,
        exit_code: u8,
        duration_ms: u64,
        verdict: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        failed_step: Option<String>,
    },
}

impl Event {
    /// Keys whose values are fixed vocabularies, never user text.
    const VOCABULARY: &'static [&'static str] = &[
        "event", "role", "status", "kind", "origin", "method", "severity", "op", "scope", "stream",
        "unit", "format", "sha256",
    ];

    /// Redact every string of user text inside the event. An event that
    /// cannot be rebuilt after redaction is replaced by a warning: it is
    /// never passed on unredacted.
    pub fn redacted(&self, r: &Redactor) -> Event {
        let mut v = serde_json::to_value(self).expect("events serialize");
        r.redact_json_except(&mut v, Self::VOCABULARY);
        serde_json::from_value(v).unwrap_or_else(|_| Event::Warning {
            at: now(),
            message: "an event could not be redacted safely and was dropped".into(),
        })
    }
}

/// A consumer of events: a progress display, a log, a report.
pub trait Sink {
    fn event(&mut self, e: &Event);
    /// Called when the run is over; write anything buffered.
    fn finish(&mut self) {}
}

/// Redacts each event once and fans it out to every sink.
pub struct Bus {
    redactor: Redactor,
    sinks: Vec<Box<dyn Sink>>,
}

impl Bus {
    pub fn new(redactor: Redactor, sinks: Vec<Box<dyn Sink>>) -> Self {
        Self { redactor, sinks }
    }

    pub fn emit(&mut self, e: Event) {
        let e = e.redacted(&self.redactor);
        for s in &mut self.sinks {
            s.event(&e);
        }
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// A secret learnt mid-run (a password a `--password-command` gave):
    /// redacted from every event after this one.
    pub fn add_secret(&mut self, secret: &str) {
        self.redactor.add(secret);
    }

    pub fn finish(&mut self) {
        for s in &mut self.sinks {
            s.finish();
        }
    }
}

/// Now, as RFC 3339 UTC with milliseconds.
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// Why a registered compensation did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkippedCompensation {
    /// The step changed nothing: its transaction rolled back.
    NotNeeded,
    /// The step failed part-way, and `rollback_on_partial: false` keeps it.
    NotRun,
}

impl SkippedCompensation {
    pub fn name(self) -> &'static str {
        match self {
            Self::NotNeeded => "not_needed",
            Self::NotRun => "not_run",
        }
    }
}
