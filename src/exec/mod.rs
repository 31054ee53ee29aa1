//! Execute: run a plan against a database, emitting events.
//!
//! Phases run in order, the steps of a phase in order. A step's compensation
//! is registered when the step starts. When a step fails, its phase's
//! `on_failure` decides: roll back (the phase's started steps, newest first),
//! abort, continue, or run a branch. Then the runbook's `on_failure` runs,
//! then `finally`, always. The executor never prints: it emits events.

pub mod backfill;
pub mod backup;
pub mod blockers;
pub mod builtin;
pub mod check;
pub mod child;
pub mod db;
mod fail;
pub mod journal;
pub mod migrate;
pub mod monitor;
mod privileges;
pub mod rehearse;
pub mod restore;
pub mod resume;
mod rows;
pub mod shell;
pub mod snapshot;
pub mod sql;
mod undo;
mod verdict;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use minijinja::Environment;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::events::{
    Approval, Bus, CheckResult, ErrorInfo, ErrorKind, Event, LockImpact, Role, RollbackScope,
    RunStatus, SkippedCompensation, StepStatus, Target, now,
};
use crate::exit;
use crate::model::{ErrorClass, PhaseKind};
use crate::plan::{Action, Plan, PlanOnFailure, PlanPhase, PlanStep, PlanWhen, Text};
use crate::validate::Validated;

use db::Db;

/// Asks a person to approve a phase at a terminal.
pub trait Prompter {
    /// Show `prompt` and return whether the person typed `yes`.
    fn confirm(&mut self, phase: &str, prompt: &str) -> bool;
}

/// What `exec` was asked to do, beyond the plan.
pub struct Options {
    pub run_id: String,
    pub config: db::Conn,
    pub ephemeral: bool,
    /// Phases approved with `--approve`.
    pub approve: Vec<String>,
    /// `--yes`: approve every gate.
    pub yes: bool,
    /// Set when a person can be asked at a terminal.
    pub prompter: Option<Box<dyn Prompter>>,
    /// Relative `cwd`s of shell steps start here: the runbook's directory.
    pub base_dir: PathBuf,
    /// `--pg-bin-dir` / `PG_BIN_DIR`: the only place pg_dump and pg_restore are looked for.
    pub pg_bin_dir: Option<PathBuf>,
    /// Where report.json goes; steps put their own files beside it
    /// (a rehearsal's migration-timings.csv).
    pub report_dir: Option<PathBuf>,
    /// Said before the run starts (a weak secret, a password on the
    /// command line); each becomes a report warning.
    pub warnings: Vec<String>,
    /// A new run, a resumed one, or the undo of an earlier one.
    pub mode: Mode,
}

/// What `execute` does with the plan.
pub enum Mode {
    /// Run it from the start.
    Run,
    /// Continue a run whose runner died: its finished steps are not run
    /// again, their compensations stay registered.
    Resume(Prior),
    /// Run the compensations an earlier run registered, newest first.
    Rollback(Prior),
}

/// An earlier run, as the journal has it.
pub struct Prior {
    pub record: journal::RunRecord,
    /// For a resume: what to do with a step the runner died in that may
    /// have half-applied. Decided before the run starts.
    pub partial: Option<PartialPolicy>,
}

/// What a resume does with a step that was interrupted part-way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartialPolicy {
    /// Run it again from the start.
    Rerun,
    /// Count it as done: a person checked that it finished.
    Skip,
    /// Count it as failed part-way: the phase's rollback runs.
    Undo,
}

impl Prior {
    /// The main-role rows of a step, newest last.
    fn rows(&self, phase: &str, step: &str) -> Option<&journal::StepRow> {
        self.record
            .steps
            .iter()
            .rev()
            .map(|s| &s.row)
            .find(|r| r.role == "main" && r.step == step && r.phase.as_deref() == Some(phase))
    }
}

/// Whether an interrupted attempt of this action can be run again as if
/// it had never started: its work is one transaction, or it changes
/// nothing, or it keeps its own record of what is done (migrations).
pub fn rerun_is_safe(a: &Action) -> bool {
    match a {
        Action::Sql { transaction, .. } => *transaction,
        Action::Check(_)
        | Action::Sleep { .. }
        | Action::Snapshot(_)
        | Action::Backup(_)
        | Action::Migrate(_) => true,
        Action::Rehearse(x) => x.scratch.is_some(),
        Action::Shell(_) | Action::Restore(_) | Action::Backfill(_) => false,
    }
}

/// What `run.status` reads in templates while the run goes on: `running`,
/// `failed` once a step failed and the branches run, then how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LiveStatus {
    Running,
    Failed,
    Ended(RunStatus),
}

impl LiveStatus {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Failed => "failed",
            Self::Ended(s) => s.name(),
        }
    }
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunResult {
    pub status: RunStatus,
    pub exit_code: u8,
}

/// The result of one successful attempt of a step.
#[derive(Debug, Default)]
pub(crate) struct Done {
    pub rows_affected: Option<u64>,
    pub exit_code: Option<i32>,
    pub check: Option<CheckResult>,
    pub stdout_tail: Option<String>,
    pub stderr_tail: Option<String>,
    /// Kind-specific results for the report.
    pub details: Option<Value>,
    /// What later templates see as `steps.<id>.*`.
    pub output: Map<String, Value>,
}

/// A failed attempt.
#[derive(Debug)]
pub(crate) struct Fail {
    pub status: StepStatus,
    pub error: ErrorInfo,
    pub retry_class: Option<ErrorClass>,
    pub partial: Done,
    /// The attempt is known to have left the database as it found it: its
    /// transaction rolled back, or it failed before anything committed.
    /// Its compensation then has nothing to undo.
    pub changed_nothing: bool,
}

impl Fail {
    pub fn new(status: StepStatus, error: ErrorInfo) -> Self {
        Fail {
            status,
            error,
            retry_class: None,
            partial: Done::default(),
            changed_nothing: false,
        }
    }

    /// Mark the failure as one that committed nothing.
    pub fn unchanged(mut self) -> Self {
        self.changed_nothing = true;
        self
    }
}

pub(crate) type Attempt = Result<Done, Fail>;

struct Outcome {
    status: StepStatus,
    attempts: u32,
    /// The failure's message, redacted, for the journal.
    error: Option<String>,
    /// It failed part-way: not transactional, and something committed.
    partial: bool,
    /// False for a failed check of severity `warn`: recorded, not fatal.
    fatal: bool,
    /// The step left the database as it found it: skipped, or failed in a
    /// transaction that rolled back.
    changed_nothing: bool,
}

pub(crate) struct Run<'a> {
    plan: &'a Plan,
    v: &'a Validated,
    pub(crate) db: Db,
    pub(crate) bus: Bus,
    env: Environment<'static>,
    steps_out: Map<String, Value>,
    run_id: String,
    started_at: String,
    run_status: LiveStatus,
    failed_step: Option<String>,
    interrupts: watch::Receiver<u32>,
    /// Interrupts needed to stop the current work: 1, or 2 while rolling
    /// back after a first Ctrl-C.
    pub(crate) stop_level: u32,
    approve: Vec<String>,
    yes: bool,
    prompter: Option<Box<dyn Prompter>>,
    pub(crate) base_dir: PathBuf,
    pub(crate) pg_env: Vec<(String, String)>,
    pub(crate) app_name: String,
    pub(crate) pg_bin_dir: Option<PathBuf>,
    /// The server's version, `15.20`.
    pub(crate) server_version: String,
    /// The run's database.
    pub(crate) database: String,
    /// The run's advisory lock, held by the session; taken again after a reconnect.
    lock_key: i64,
    /// The lock monitor's session (None inside: it could not connect) and
    /// its sampling query; opened on the first step that needs it.
    monitor: Option<Option<(Arc<Db>, Arc<str>)>>,
    /// Snapshots taken by snapshot steps, by step id, for later comparisons.
    pub(crate) snapshots: std::collections::HashMap<String, crate::snapshot::Snapshot>,
    pub(crate) report_dir: Option<PathBuf>,
    /// The run journal in the target database.
    journal: journal::Journal,
    /// The journal row of the step running now.
    journal_seq: Option<i32>,
    /// The run this one resumes.
    resumed: Option<Prior>,
    /// The children's password file; removed when the run ends.
    _passfile: Option<tempfile::NamedTempFile>,
}

/// Resolves once `level` interrupts have arrived.
pub(crate) async fn interrupted(mut rx: watch::Receiver<u32>, level: u32) {
    loop {
        if *rx.borrow_and_update() >= level {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A new run id: the UTC start time and a random suffix, `20261122T033512Z-a1b2`.
pub fn new_run_id() -> String {
    let t = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let compact: String = t.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    format!("{compact}-{:04x}", fastrand::u16(..))
}

/// `application_name` for the run's sessions (at most 63 bytes).
pub fn application_name(plan: &Plan, run_id: &str) -> String {
    let base = plan
        .settings
        .application_name
        .as_deref()
        .unwrap_or("runbook");
    let mut name = format!("{base}/{run_id}");
    while name.len() > 63 {
        name.remove(0);
    }
    name
}

/// A run that ends before its first step: the verdict says why.
fn finish_early(
    mut bus: Bus,
    started: Instant,
    status: RunStatus,
    exit_code: u8,
    verdict: String,
) -> RunResult {
    bus.emit(Event::RunFinished {
        at: now(),
        status,
        exit_code,
        duration_ms: ms(started.elapsed()),
        verdict,
        failed_step: None,
    });
    bus.finish();
    RunResult { status, exit_code }
}

/// Run the plan. Reports are written by the bus's sinks on every outcome.
pub async fn execute(
    v: &Validated,
    plan: &Plan,
    opts: Options,
    mut bus: Bus,
    interrupts: watch::Receiver<u32>,
) -> RunResult {
    let started = Instant::now();
    let started_at = now();
    let app_name = application_name(plan, &opts.run_id);
    let mut target = db::target_of(&opts.config.config, opts.ephemeral);
    let total_steps = plan.phases.iter().map(|p| p.steps.len()).sum();
    let params = serde_json::to_value(&plan.params).unwrap_or_default();
    // The children's password: a private file, not their environment.
    let passfile = db::child_passfile(&opts.config).unwrap_or(None);
    let run_started = |target: Target| Event::RunStarted {
        at: started_at.clone(),
        run_id: opts.run_id.clone(),
        runbook: plan.runbook.name.clone(),
        version: plan.runbook.version.clone(),
        file: plan.runbook.file.clone(),
        sha256: plan.runbook.sha256.clone(),
        runner_version: env!("CARGO_PKG_VERSION").to_string(),
        params: params.clone(),
        target,
        total_steps,
    };
    let connected = tokio::select! {
        r = Db::connect(opts.config.clone(), &app_name) => Some(r),
        () = interrupted(interrupts.clone(), 1) => None,
    };
    let db = match connected {
        Some(Ok(db)) => db,
        failed => {
            bus.emit(run_started(target.clone()));
            let (status, code, verdict) = match failed {
                Some(Err(e)) => (
                    RunStatus::PreflightFailed,
                    exit::PREFLIGHT_FAILED,
                    format!(
                        "FAILED before the first step: could not connect to {}:{}/{}: {}{}",
                        target.host,
                        target.port,
                        target.database,
                        e.message,
                        e.hint
                            .as_deref()
                            .map_or_else(String::new, |h| format!(" (hint: {h})"))
                    ),
                ),
                _ => (
                    RunStatus::Interrupted,
                    exit::INTERRUPTED,
                    "INTERRUPTED while connecting; nothing ran".to_string(),
                ),
            };
            return finish_early(bus, started, status, code, verdict);
        }
    };
    // Of several hosts, the one reached: the report names it, and the
    // children (pg_dump, psql) go to it alone.
    let mut conn = opts.config.clone();
    conn.reached = db.reached_host().await;
    let pg_env = db::libpq_env(
        &conn,
        &app_name,
        passfile.as_ref().map(tempfile::NamedTempFile::path),
    );
    (target.host, target.port) = {
        let t = db::target_of_conn(&conn, opts.ephemeral);
        (t.host, t.port)
    };
    target.server_version = db.server_version().await;
    target.tls = Some(db.tls_summary().await);
    let server_version = target.server_version.clone().unwrap_or_default();
    // Before the run lock: under a transaction-mode pooler the lock would
    // stay behind on a server session that other clients then use.
    let pooled = if opts.ephemeral {
        None
    } else {
        db.pooler_evidence(&journal_app(&app_name), Duration::from_secs(3))
            .await
    };
    if let Some(evidence) = pooled {
        bus.emit(run_started(target));
        return finish_early(
            bus,
            started,
            RunStatus::PreflightFailed,
            exit::PREFLIGHT_FAILED,
            format!(
                "REFUSED: a connection pooler in transaction or statement mode is between runbook and PostgreSQL ({evidence}); the run's lock and session settings would not stay with its statements. Connect to PostgreSQL directly (for PgBouncer, the server's own port instead of the pooler's; on a managed service, its direct endpoint rather than the pooled one), or through a pool in session mode; nothing ran"
            ),
        );
    }
    let lock_key = db::lock_key(&target.database, &plan.runbook.name);
    let locked = db.try_lock(lock_key).await;
    let database = target.database.clone();
    bus.emit(run_started(target));
    for w in &opts.warnings {
        bus.emit(Event::Warning {
            at: now(),
            message: w.clone(),
        });
    }
    if let Ok(Err(_)) | Err(_) = &locked {
        let verdict = match locked {
            Ok(Err(Some(h))) => format!(
                "REFUSED: another run of `{}` holds database `{database}`: pid {}, application_name `{}`, run {}, connected since {} ({} ago), {} for {}; nothing ran. If that run's runner is gone, the server ends a session still running a query within 2 s of noticing (PostgreSQL 14+); to end it now: SELECT pg_terminate_backend({})",
                plan.runbook.name,
                h.pid,
                h.application_name,
                h.run_id(),
                h.since,
                h.held_for,
                if h.state.is_empty() {
                    "state unknown"
                } else {
                    h.state.as_str()
                },
                if h.state_for.is_empty() {
                    "?"
                } else {
                    h.state_for.as_str()
                },
                h.pid
            ),
            Ok(Err(None)) => format!(
                "REFUSED: another run of `{}` holds database `{database}` (its session could not be seen); nothing ran",
                plan.runbook.name
            ),
            Err(e) => format!(
                "REFUSED: failed to take the run lock: {}; nothing ran",
                e.message
            ),
            Ok(Ok(())) => unreachable!("matched a failure above"),
        };
        return finish_early(bus, started, RunStatus::Locked, exit::INVALID, verdict);
    }

    // The journal: its own session, opened once the run lock is held.
    let mut journal = match journal::Journal::open(&db, &database, &journal_app(&app_name)).await {
        Ok(j) => j,
        Err(why) => {
            bus.emit(Event::Warning {
                at: now(),
                message: format!(
                    "the run journal (schema `runbook_journal` in the target database) is off: {why}; this run cannot be resumed or rolled back by id (`runbook resume`, `runbook rollback`)"
                ),
            });
            journal::Journal::off()
        }
    };
    let (resumed, undo) = match opts.mode {
        Mode::Run => (None, None),
        Mode::Resume(p) => {
            journal.continue_from(
                &p.record
                    .steps
                    .iter()
                    .map(|s| s.row.clone())
                    .collect::<Vec<_>>(),
            );
            (Some(p), None)
        }
        Mode::Rollback(p) => (None, Some(p)),
    };
    let row = journal::RunRow {
        run_id: opts.run_id.clone(),
        kind: if undo.is_some() { "rollback" } else { "exec" },
        of_run: undo.as_ref().map(|p| p.record.run_id.clone()),
        runbook: plan.runbook.name.clone(),
        version: plan.runbook.version.clone(),
        file: plan.runbook.file.clone(),
        sha256: plan.runbook.sha256.clone(),
        params: journal_params(plan),
    };
    if let Err(why) = journal.run_started(row).await {
        bus.emit(Event::Warning {
            at: now(),
            message: format!(
                "the run journal could not record this run: {why}; it is off for this run"
            ),
        });
        journal.turn_off();
    }

    let mut run = Run {
        plan,
        v,
        db,
        bus,
        env: crate::template::environment(),
        steps_out: Map::new(),
        run_id: opts.run_id,
        started_at,
        run_status: LiveStatus::Running,
        failed_step: None,
        interrupts,
        stop_level: 1,
        approve: opts.approve,
        yes: opts.yes,
        prompter: opts.prompter,
        base_dir: opts.base_dir,
        pg_env,
        app_name,
        pg_bin_dir: opts.pg_bin_dir,
        server_version,
        database,
        lock_key,
        monitor: None,
        snapshots: std::collections::HashMap::new(),
        report_dir: opts.report_dir.clone(),
        journal,
        journal_seq: None,
        resumed,
        _passfile: passfile,
    };
    let result = match &undo {
        Some(p) => run.rollback_line(p).await,
        None => run.main_line().await,
    };
    let failed_step = run.failed_step.clone();
    let wrote = run
        .journal
        .run_finished(
            result.0.status.name(),
            result.0.exit_code,
            &run.bus.redactor().redact(&result.1),
            failed_step.as_deref(),
        )
        .await;
    run.journal_failed(wrote);
    run.bus.emit(Event::RunFinished {
        at: now(),
        status: result.0.status,
        exit_code: result.0.exit_code,
        duration_ms: ms(started.elapsed()),
        verdict: result.1,
        failed_step: run.failed_step.clone(),
    });
    run.bus.finish();
    result.0
}

/// The journal session's application_name (at most 63 bytes).
fn journal_app(app: &str) -> String {
    let mut name = format!("{app}/journal");
    while name.len() > 63 {
        name.remove(0);
    }
    name
}

/// The run's params for the journal: values, with secrets redacted, and
/// where each came from (a resume asks again for secrets given by hand).
fn journal_params(plan: &Plan) -> Value {
    Value::Object(
        plan.params
            .iter()
            .map(|(k, p)| {
                let value = if p.secret {
                    Value::String(crate::redact::REDACTED.into())
                } else {
                    p.value.clone()
                };
                (
                    k.clone(),
                    json!({"value": value, "secret": p.secret, "origin": p.origin}),
                )
            })
            .collect(),
    )
}

pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<'a> Run<'a> {
    fn interrupt_count(&self) -> u32 {
        *self.interrupts.borrow()
    }

    pub(crate) fn stop_signal(&self) -> impl std::future::Future<Output = ()> + use<> {
        interrupted(self.interrupts.clone(), self.stop_level)
    }

    /// The template context, with every step output so far.
    fn context(&self) -> minijinja::Value {
        use minijinja::value::Serde;
        let c = &self.plan.context;
        minijinja::context! {
            params => minijinja::Value::from(Serde(&c.params)),
            vars => minijinja::Value::from(Serde(&c.vars)),
            metadata => minijinja::Value::from(Serde(&c.metadata)),
            run => minijinja::Value::from(Serde(json!({
                "id": self.run_id,
                "started_at": self.started_at,
                "status": self.run_status.name(),
                "failed_step": self.failed_step.clone().unwrap_or_default(),
            }))),
            steps => minijinja::Value::from(Serde(&self.steps_out)),
        }
    }

    /// Render a planned text now: (as run, as shown).
    pub(crate) fn render(&self, t: &Text) -> Result<(String, String), ErrorInfo> {
        let Some(src) = &t.template else {
            return Ok((t.raw.expose().clone(), t.text.clone()));
        };
        let raw = self.render_str(src)?;
        let shown = self.bus.redactor().redact(&raw).into_owned();
        Ok((raw, shown))
    }

    /// Render a template source with the run context.
    pub(crate) fn render_str(&self, src: &str) -> Result<String, ErrorInfo> {
        match self.env.render_str(src, self.context()) {
            Ok(raw) => Ok(raw),
            Err(e) => Err(ErrorInfo {
                class: ErrorKind::Template,
                message: format!(
                    "failed to render at run time: {}",
                    e.detail()
                        .map_or_else(|| e.kind().to_string(), str::to_string)
                ),
                ..ErrorInfo::default()
            }),
        }
    }

    /// Evaluate an expression with the run context plus `extra` names.
    pub(crate) fn eval(
        &self,
        expr: &str,
        extra: &[(&str, minijinja::Value)],
    ) -> Result<bool, String> {
        let locals: std::collections::BTreeMap<&str, minijinja::Value> =
            extra.iter().map(|(k, v)| (*k, v.clone())).collect();
        let ctx = minijinja::context! { ..minijinja::Value::from(locals), ..self.context() };
        let e = self
            .env
            .compile_expression(expr)
            .map_err(|e| e.to_string())?;
        e.eval(ctx)
            .map(|v| v.is_true())
            .map_err(|e| e.detail().map_or_else(|| e.to_string(), str::to_string))
    }

    fn when(&self, w: &Option<PlanWhen>) -> Result<bool, String> {
        match w {
            None => Ok(true),
            Some(PlanWhen { value: Some(b), .. }) => Ok(*b),
            Some(PlanWhen { expr, value: None }) => self.eval(expr, &[]),
        }
    }

    /// Where a position inside a planned text sits in the runbook file.
    pub(crate) fn locate(&self, t: &Text, raw: &str, position: Option<u32>) -> Option<String> {
        let pos = position? as usize;
        let doc = &self.v.doc;
        let byte = raw
            .char_indices()
            .nth(pos.saturating_sub(1))
            .map_or(raw.len(), |(i, _)| i);
        let source = doc.value.pointer(&t.pointer)?.as_str()?;
        let span = if source == raw {
            doc.locate(&t.pointer, source, byte..byte + 1)
        } else {
            // Templates changed the text: map by line when the line count
            // held, and keep the column when that line is unchanged.
            let line = raw[..byte].matches('\n').count();
            let col = byte - raw[..byte].rfind('\n').map_or(0, |i| i + 1);
            (raw.lines().count() == source.lines().count())
                .then(|| {
                    let start: usize = source.split_inclusive('\n').take(line).map(str::len).sum();
                    let same = source.lines().nth(line) == raw.lines().nth(line);
                    let at = if same { start + col } else { start };
                    doc.locate(&t.pointer, source, at..at + 1)
                })
                .flatten()
        }?;
        let (l, c) = doc.source.line_col(span.start);
        Some(format!("{}:{l}:{c}", doc.source.name()))
    }

    fn record(&mut self, id: &str, status: StepStatus, mut output: Map<String, Value>) {
        output.insert("status".into(), Value::String(status.name().into()));
        self.steps_out.insert(id.to_string(), Value::Object(output));
    }

    /// Run one step with its timeout, retries and cancellation, and
    /// record it in the journal: before it starts, and when it ends.
    async fn step(
        &mut self,
        s: &PlanStep,
        phase: Option<&str>,
        role: Role,
        for_step: Option<&str>,
    ) -> Outcome {
        self.journal_seq = None;
        let o = self.step_body(s, phase, role, for_step).await;
        self.journal_end(s, phase, role, for_step, &o).await;
        o
    }

    /// A journal row for a step, written before it runs.
    async fn journal_start(
        &mut self,
        s: &PlanStep,
        phase: Option<&str>,
        role: Role,
        for_step: Option<&str>,
        status: StepStatus,
    ) {
        if !self.journal.is_on() {
            return;
        }
        let row = journal::StepRow {
            seq: 0,
            phase: phase.map(str::to_string),
            step: s.id.clone(),
            role: serde_json::to_value(role)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            for_step: for_step.map(str::to_string),
            kind: s.action.kind().into(),
            status: status.name().into(),
            attempts: 0,
            changed_nothing: false,
            partial: false,
            compensations: s.rollback.iter().map(|r| r.id.clone()).collect(),
            compensated: None,
            output: json!({}),
            error: None,
        };
        let (seq, wrote) = self.journal.step_started(row).await;
        self.journal_seq = Some(seq);
        self.journal_failed(wrote);
    }

    /// The step's journal row, updated with how it ended.
    async fn journal_end(
        &mut self,
        s: &PlanStep,
        phase: Option<&str>,
        role: Role,
        for_step: Option<&str>,
        o: &Outcome,
    ) {
        if !self.journal.is_on() {
            return;
        }
        if self.journal_seq.is_none() {
            // Skipped before it started (`when` was false).
            self.journal_start(s, phase, role, for_step, o.status).await;
        }
        let Some(seq) = self.journal_seq.take() else {
            return;
        };
        let output = self.steps_out.get(&s.id).cloned().unwrap_or(json!({}));
        let output = serde_json::from_str(&self.bus.redactor().redact(&output.to_string()))
            .unwrap_or(json!({}));
        let wrote = self
            .journal
            .step_finished(seq, |row| {
                row.status = o.status.name().into();
                row.attempts = i32::try_from(o.attempts).unwrap_or(i32::MAX);
                row.changed_nothing = o.changed_nothing;
                row.partial = o.partial;
                row.error.clone_from(&o.error);
                row.output = output;
            })
            .await;
        self.journal_failed(wrote);
    }

    /// Say once that the journal could not be written, and stop writing it.
    fn journal_failed(&mut self, r: Result<(), String>) {
        if let Err(why) = r {
            self.bus.emit(Event::Warning {
                at: now(),
                message: format!(
                    "the run journal could not be written: {why}; it is off for the rest of this run, so `runbook resume` and `runbook rollback` see only what came before"
                ),
            });
            self.journal.turn_off();
        }
    }

    async fn step_body(
        &mut self,
        s: &PlanStep,
        phase: Option<&str>,
        role: Role,
        for_step: Option<&str>,
    ) -> Outcome {
        let kind = s.action.kind();
        let phase_kind = phase
            .and_then(|id| self.plan.phases.iter().find(|p| p.id == id))
            .map(|p| p.kind);
        match self.when(&s.when) {
            Ok(true) => {}
            Ok(false) => {
                self.bus.emit(Event::StepSkipped {
                    at: now(),
                    step: s.id.clone(),
                    phase: phase.map(str::to_string),
                    kind: kind.into(),
                    role,
                    reason: format!(
                        "when: {}",
                        s.when.as_ref().map_or("false", |w| w.expr.as_str())
                    ),
                });
                self.record(&s.id, StepStatus::Skipped, Map::new());
                return Outcome {
                    status: StepStatus::Skipped,
                    attempts: 0,
                    error: None,
                    partial: false,
                    fatal: false,
                    changed_nothing: true,
                };
            }
            Err(e) => {
                let error = ErrorInfo {
                    class: ErrorKind::Template,
                    message: format!("failed to evaluate `when`: {e}"),
                    ..ErrorInfo::default()
                };
                return self.finish_step(
                    s,
                    phase_kind,
                    Instant::now(),
                    0,
                    Err(Fail::new(StepStatus::Failed, error).unchanged()),
                    None,
                );
            }
        }
        self.journal_start(s, phase, role, for_step, StepStatus::Running)
            .await;
        let started = Instant::now();
        // A session lost during an earlier step (terminated, a server
        // restart) is replaced, and the run lock taken again, before this
        // one runs: above all before a compensation.
        if self.db.is_lost()
            && let Err(e) = self.recover_session(&s.id).await
        {
            return self.finish_step(
                s,
                phase_kind,
                started,
                0,
                Err(Fail::new(StepStatus::Failed, e).unchanged()),
                None,
            );
        }
        let monitor = self.start_monitor(s).await;
        let (attempts, result) = self.attempts(s, phase, role, for_step).await;
        let impact = match monitor {
            Some(m) => Some(m.stop().await),
            None => None,
        };
        if let Some(l) = &impact {
            self.warn_about_impact(s, l);
        }
        self.finish_step(s, phase_kind, started, attempts, result, impact)
    }

    /// Attempts until one succeeds, the error is not retryable, the
    /// attempts run out, or the run is interrupted.
    async fn attempts(
        &mut self,
        s: &PlanStep,
        phase: Option<&str>,
        role: Role,
        for_step: Option<&str>,
    ) -> (u32, Attempt) {
        let kind = s.action.kind();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let shown = self.describe(&s.action);
            self.bus.emit(Event::StepStarted {
                at: now(),
                step: s.id.clone(),
                phase: phase.map(str::to_string),
                kind: kind.into(),
                role,
                for_step: for_step.map(str::to_string),
                name: s.name.clone(),
                attempt,
                action: shown,
            });
            let result = self.attempt(s).await;
            for n in self.db.drain_notices() {
                self.bus.emit(Event::StepOutput {
                    at: now(),
                    step: s.id.clone(),
                    stream: "notice".into(),
                    line: n,
                });
            }
            match result {
                Err(f)
                    if attempt < s.retry.attempts
                        && f.retry_class.is_some_and(|c| s.retry.on.contains(&c))
                        && self.interrupt_count() < self.stop_level =>
                {
                    let wait = backoff(s, attempt);
                    self.bus.emit(Event::StepRetry {
                        at: now(),
                        step: s.id.clone(),
                        attempt,
                        error: f.error.clone(),
                        wait_ms: ms(wait),
                    });
                    if f.retry_class == Some(ErrorClass::Connection)
                        && let Err(e) = self.reconnect().await
                    {
                        return (attempt, Err(Fail::new(StepStatus::Failed, e)));
                    }
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.stop_signal() => {
                            return (attempt, Err(Fail::new(StepStatus::Cancelled, cancelled_error())));
                        }
                    }
                }
                r => return (attempt, r),
            }
        }
    }

    /// The lock monitor for a step that may take locks others wait on:
    /// every kind but `check` (read-only) and `sleep`. Its session is opened
    /// once, on first use. If it cannot be opened, the run goes on, and a
    /// warning says the impact was not measured.
    async fn start_monitor(&mut self, s: &PlanStep) -> Option<monitor::Monitor> {
        // A rehearsal on a scratch database takes no lock on the run's.
        if matches!(
            s.action,
            Action::Check(_) | Action::Sleep { .. } | Action::Snapshot(_)
        ) || matches!(&s.action, Action::Rehearse(x) if x.scratch.is_some())
        {
            return None;
        }
        let settings = s.settings.as_ref().unwrap_or(&self.plan.settings);
        if settings.lock_monitor == Some(false) {
            return None;
        }
        if self.monitor.is_none() {
            let app = self.monitor_app();
            let connected = self.db.connect_to(&self.database, &app).await;
            let version = match &connected {
                Ok(m) => m
                    .client
                    .query_one("SELECT current_setting('server_version_num')::int", &[])
                    .await
                    .map(|r| r.get::<_, i32>(0))
                    .map_err(|e| db::error_info(&e, None)),
                Err(e) => Err(e.clone()),
            };
            match (connected, version) {
                (Ok(m), Ok(v)) => {
                    self.monitor = Some(Some((Arc::new(m), monitor::sample_sql(v).into())));
                }
                (Err(e), _) | (_, Err(e)) => {
                    self.bus.emit(Event::Warning {
                        at: now(),
                        message: format!(
                            "the lock monitor could not connect ({}); lock impact is not measured in this run",
                            e.message
                        ),
                    });
                    self.monitor = Some(None);
                }
            }
        }
        let (m, sql) = self.monitor.as_ref()?.as_ref()?;
        Some(monitor::Monitor::start(
            m.clone(),
            sql.clone(),
            self.app_name.clone(),
        ))
    }

    /// The lock monitor session's application_name (as the server keeps
    /// it: at most 63 bytes).
    pub(crate) fn monitor_app(&self) -> String {
        let mut app = format!("{}/monitor", self.app_name);
        while app.len() > 63 {
            app.pop();
        }
        app
    }

    /// A report warning when other sessions waited on this step's locks
    /// longer than `lock_wait_warning` (default 1s).
    fn warn_about_impact(&mut self, s: &PlanStep, l: &LockImpact) {
        let settings = s.settings.as_ref().unwrap_or(&self.plan.settings);
        let limit = settings.lock_wait_warning.map_or(
            Duration::from_millis(crate::plan::DEFAULT_LOCK_WAIT_WARNING_MS),
            |d| d.0,
        );
        if l.waited_max_ms > ms(limit) {
            self.bus.emit(Event::Warning {
                at: now(),
                message: format!(
                    "step `{}` made {} other session(s) wait on its locks: the longest wait was {} ms, {} ms in all, {} waiting at the worst moment",
                    s.id, l.sessions_waited, l.waited_max_ms, l.waited_total_ms, l.waiting_max
                ),
            });
        }
    }

    /// The session was lost: say so, connect again (with backoff, while a
    /// restarting server refuses) and take the run lock again.
    async fn recover_session(&mut self, before_step: &str) -> Result<(), ErrorInfo> {
        self.bus.emit(Event::Warning {
            at: now(),
            message: format!(
                "the database session was lost; reconnecting before step `{before_step}`"
            ),
        });
        self.monitor = None;
        let started = Instant::now();
        match self.reconnect().await {
            Ok(()) => {
                self.bus.emit(Event::Warning {
                    at: now(),
                    message: format!(
                        "reconnected in {} ms and took the run lock again",
                        ms(started.elapsed())
                    ),
                });
                Ok(())
            }
            Err(mut e) => {
                e.message = format!(
                    "the database session was lost and reconnecting failed: {}",
                    e.message
                );
                Err(e)
            }
        }
    }

    /// A new session after a lost one, with the run lock taken again: the
    /// old session's lock died with it.
    async fn reconnect(&mut self) -> Result<(), ErrorInfo> {
        self.db.reconnect(&self.app_name).await?;
        // After a failover the new session may have reached another of
        // several hosts: the children follow it.
        if self.db.config().config.get_hosts().len() > 1 {
            let mut conn = self.db.config().clone();
            conn.reached = self.db.reached_host().await;
            let passfile = self
                .pg_env
                .iter()
                .find(|(k, _)| k == "PGPASSFILE")
                .map(|(_, v)| PathBuf::from(v));
            self.pg_env = db::libpq_env(&conn, &self.app_name, passfile.as_deref());
        }
        self.relock().await
    }

    /// Take the run lock again on a new main session.
    pub(crate) async fn relock(&mut self) -> Result<(), ErrorInfo> {
        match self.db.try_lock(self.lock_key).await? {
            Ok(()) => Ok(()),
            Err(holder) => Err(ErrorInfo {
                class: ErrorKind::Lock,
                message: format!(
                    "lost the run lock while reconnecting: another run took the database{}",
                    holder.map_or_else(String::new, |h| format!(
                        " (pid {}, run {})",
                        h.pid,
                        h.run_id()
                    ))
                ),
                ..ErrorInfo::default()
            }),
        }
    }

    /// The step's action in one line, templates rendered as they run.
    fn describe(&self, a: &Action) -> String {
        a.describe(&|t: &Text| {
            self.render(t)
                .map_or_else(|_| t.text.clone(), |(_, shown)| shown)
        })
    }

    async fn attempt(&mut self, s: &PlanStep) -> Attempt {
        let timeout = s.timeout.map(|d| d.0);
        match &s.action {
            Action::Sql {
                statements,
                transaction,
            } => {
                let plan = self.plan;
                let settings = s.settings.as_ref().unwrap_or(&plan.settings);
                sql::run(self, &s.id, statements, *transaction, timeout, settings).await
            }
            Action::Check(c) => check::run(self, s, c, timeout).await,
            Action::Shell(sh) => shell::run(self, s, sh, timeout).await,
            Action::Backup(b) => backup::run(self, s, b, timeout).await,
            Action::Restore(rs) => restore::run(self, s, rs, timeout).await,
            Action::Backfill(b) => backfill::run(self, s, b, timeout).await,
            Action::Migrate(m) => migrate::run(self, s, m, timeout).await,
            Action::Snapshot(x) => snapshot::run(self, s, x, timeout).await,
            Action::Rehearse(x) => rehearse::run(self, s, x, timeout).await,
            Action::Sleep { duration } => {
                let limit = timeout.unwrap_or(Duration::MAX);
                tokio::select! {
                    () = tokio::time::sleep(duration.0.min(limit)) => {
                        if duration.0 > limit {
                            Err(Fail::new(StepStatus::TimedOut, timeout_error(timeout)))
                        } else {
                            Ok(Done::default())
                        }
                    }
                    () = self.stop_signal() => Err(Fail::new(StepStatus::Cancelled, cancelled_error())),
                }
            }
        }
    }

    fn finish_step(
        &mut self,
        s: &PlanStep,
        phase: Option<PhaseKind>,
        started: Instant,
        attempts: u32,
        r: Attempt,
        lock_impact: Option<LockImpact>,
    ) -> Outcome {
        let (status, done, error, changed_nothing) = match r {
            Ok(d) => (StepStatus::Succeeded, d, None, false),
            Err(f) => (f.status, f.partial, Some(f.error), f.changed_nothing),
        };
        let warn_only =
            matches!(&s.action, Action::Check(c) if c.severity == crate::model::Severity::Warn);
        let fatal = status.is_failure() && !(warn_only && status == StepStatus::Failed);
        // A failure that may have committed part of the step's work.
        let partial = status.is_failure()
            && !changed_nothing
            && may_change(&s.action, phase.unwrap_or(PhaseKind::Migrate));
        if status.is_failure() && !fatal {
            self.bus.emit(Event::Warning {
                at: now(),
                message: format!(
                    "check `{}` failed (severity warn): {}",
                    s.id,
                    error.as_ref().map_or("", |e| e.message.as_str())
                ),
            });
        }
        let message = error
            .as_ref()
            .map(|e| self.bus.redactor().redact(&e.message).into_owned());
        self.bus.emit(Event::StepFinished {
            at: now(),
            step: s.id.clone(),
            status,
            duration_ms: ms(started.elapsed()),
            attempts,
            rows_affected: done.rows_affected,
            exit_code: done.exit_code,
            check: done.check,
            error,
            stdout_tail: done.stdout_tail,
            stderr_tail: done.stderr_tail,
            details: done.details,
            partial,
            lock_impact,
        });
        self.record(&s.id, status, done.output);
        Outcome {
            status,
            attempts,
            error: message,
            partial,
            fatal,
            changed_nothing,
        }
    }

    /// Run a list of steps that must all be attempted (a branch, compensations,
    /// `on_failure`, `finally`). Returns whether all succeeded.
    async fn all(
        &mut self,
        steps: &[PlanStep],
        phase: Option<&str>,
        role: Role,
        for_step: Option<&str>,
    ) -> bool {
        let mut clean = true;
        for s in steps {
            let o = self.step(s, phase, role, for_step).await;
            clean &= !o.fatal;
        }
        clean
    }

    async fn approve(&mut self, ph: &PlanPhase) -> Result<(), String> {
        let Some(gate) = &ph.approval else {
            return Ok(());
        };
        let user = journal::whoami();
        let method = if self.approve.contains(&ph.id) {
            Some("flag")
        } else if self.yes {
            Some("yes")
        } else if self.prompter.is_some() {
            let prompt = match self.render(&gate.prompt) {
                Ok((_, shown)) => shown,
                Err(_) => gate.prompt.text.clone(),
            };
            self.prompter
                .as_mut()
                .is_some_and(|p| p.confirm(&ph.id, &prompt))
                .then_some("prompt")
        } else if !gate.required {
            Some("not_required")
        } else {
            None
        };
        match method {
            Some(m) => {
                self.bus.emit(Event::ApprovalGiven {
                    at: now(),
                    phase: ph.id.clone(),
                    approval: Approval {
                        method: m.into(),
                        user,
                        at: now(),
                    },
                });
                Ok(())
            }
            None => {
                let reason = if self.prompter.is_some() {
                    "refused at the prompt".to_string()
                } else {
                    format!("no terminal to ask; pass --approve {} or --yes", ph.id)
                };
                self.bus.emit(Event::ApprovalRefused {
                    at: now(),
                    phase: ph.id.clone(),
                    reason: reason.clone(),
                });
                Err(reason)
            }
        }
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
            if reg.changed_nothing {
                self.bus.emit(Event::CompensationSkipped {
                    at: now(),
                    step: step.id.clone(),
                    status: SkippedCompensation::NotNeeded,
                    reason: "not run: the step failed inside a transaction that rolled back, so it changed nothing".into(),
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
            let ok = self
                .all(
                    &step.rollback,
                    Some(phase),
                    Role::Compensation,
                    Some(&step.id),
                )
                .await;
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
                .compensated(&step.id, if ok { "succeeded" } else { "failed" })
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
                    changed_nothing: false,
                });
            }
            if may_change(&s.action, ph.kind) {
                *phase_touched = true;
                st.touched = true;
            }
        }
    }

    /// The state an undo is checked against, now.
    async fn baseline(&self) -> undo::Baseline {
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
                self.bus.emit(Event::CompensationRegistered {
                    at: now(),
                    step: s.id.clone(),
                    compensations: s.rollback.iter().map(|r| r.id.clone()).collect(),
                });
                registered.push(Registered {
                    step: s,
                    status: StepStatus::Running,
                    changed_nothing: false,
                });
            }
            let o = match fail_with {
                Some(e) => self.finish_step(
                    s,
                    Some(ph.kind),
                    Instant::now(),
                    0,
                    Err(Fail::new(StepStatus::Failed, e)),
                    None,
                ),
                None => self.step(s, Some(&ph.id), Role::Main, None).await,
            };
            let changes = may_change(&s.action, ph.kind);
            if changes && o.status != StepStatus::Skipped && !o.changed_nothing {
                phase_touched = true;
                st.touched = true;
            }
            if let Some(last) = registered.last_mut().filter(|r| r.step.id == s.id) {
                last.status = o.status;
                last.changed_nothing = o.changed_nothing;
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
            let mode = if interrupted {
                &PlanOnFailure::Rollback
            } else {
                &ph.on_failure
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
            let (scope, needed) = match mode {
                PlanOnFailure::Abort | PlanOnFailure::Continue => (None, false),
                PlanOnFailure::Rollback => (
                    Some(RollbackScope::Phase),
                    registered.iter().any(|r| !r.changed_nothing),
                ),
                PlanOnFailure::Steps(_) => (Some(RollbackScope::PhaseBranch), true),
            };
            let mut undo_ran = false;
            let mut undo_failed = false;
            if let Some(scope) = scope {
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
                    _ => self.compensate(&ph.id, &registered).await,
                };
                undo_ran = needed;
                undo_failed = !clean;
                // Check the undo against the schema before the run changed
                // anything when no earlier phase's changes stand in between;
                // else against the schema before this phase.
                let verification = if !undo_ran || !st.touched {
                    None
                } else if st.kept.is_empty() {
                    let (check, v) = self.check_against(st.run_baseline(), "run_start").await;
                    st.back_to_start = Some(check);
                    Some(v)
                } else {
                    let (check, v) = self.check_against(st.phase_baseline(), "phase_start").await;
                    if check == verdict::Check::Equal {
                        st.back_to_phase = Some(ph.id.clone());
                    } else {
                        st.back_to_start = Some(check);
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
            }
            // A rehearsal that found bad migrations is a verification
            // failure wherever it sits: it proved something, and its
            // scratch work changed nothing.
            let rehearsal_failed =
                matches!(s.action, Action::Rehearse(_)) && o.status == StepStatus::Failed;
            return Some(PhaseFailure {
                phase_kind: if rehearsal_failed {
                    PhaseKind::Verify
                } else {
                    ph.kind
                },
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
    async fn main_line(&mut self) -> (RunResult, String) {
        let plan = self.plan;
        let mut failure: Option<PhaseFailure> = None;
        let mut not_approved: Option<String> = None;
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
        };

        for ph in &plan.phases {
            if self.interrupt_count() >= 1 {
                break;
            }
            match self.when(&ph.when) {
                Ok(true) => {}
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
                    continue;
                }
                Err(e) => {
                    self.bus.emit(Event::Warning {
                        at: now(),
                        message: format!("phase `{}`: failed to evaluate `when`: {e}", ph.id),
                    });
                    self.failed_step = Some(format!("{}.when", ph.id));
                    failure = Some(PhaseFailure {
                        phase_kind: ph.kind,
                        aborted: false,
                        undo_ran: false,
                        undo_failed: false,
                        phase_touched: false,
                    });
                    break;
                }
            }
            if self.phase_done_earlier(ph) {
                self.phase_carried_over(ph, &mut st);
                continue;
            }
            if let Err(reason) = self.approve(ph).await {
                not_approved = Some(format!("phase `{}` not approved: {reason}", ph.id));
                break;
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
            let failed = self.run_phase(ph, &mut st).await;
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
                failure = failed;
                break;
            }
        }

        let interrupted = self.interrupt_count() >= 1;
        let mut on_failure_clean = true;
        let mut on_failure_ran = false;
        if (failure.is_some() || interrupted)
            && !plan.on_failure.is_empty()
            && self.interrupt_count() < 2
        {
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
            on_failure_clean = self
                .all(&plan.on_failure, None, Role::OnFailure, None)
                .await;
            on_failure_ran = true;
            // The runbook's own undo answers for the whole run.
            let verification = if st.touched {
                let now_state = self.baseline().await;
                let (check, v) = match st.run_baseline() {
                    Some(b) => b.compare(&now_state, "run_start"),
                    None => unknown_check("no snapshot was taken before the run's changes"),
                };
                st.back_to_phase = None;
                if check != verdict::Check::Equal {
                    // Not back at the start: say how far back it did get.
                    st.back_to_phase = st
                        .baselines
                        .iter()
                        .rev()
                        .find(|(_, b)| b.compare(&now_state, "").0 == verdict::Check::Equal)
                        .map(|(p, _)| p.clone());
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
                clean: on_failure_clean,
                verification,
            });
        }

        let facts = verdict::Facts {
            interrupted,
            interrupted_at: self.failed_step.clone(),
            undo_clean: on_failure_clean && !failure.as_ref().is_some_and(|f| f.undo_failed),
            not_approved,
            failure: failure.as_ref().map(|f| verdict::Failed {
                at: self.failed_step.clone().unwrap_or_default(),
                phase_kind: f.phase_kind,
                aborted: f.aborted,
                touched: st.touched,
                undo_ran: f.undo_ran || on_failure_ran,
                undo_failed: f.undo_failed || !on_failure_clean,
                back_to_start: st.back_to_start.clone(),
                back_to_phase: st.back_to_phase.clone(),
                kept: st.kept.clone(),
            }),
            tolerated: st.tolerated,
        };
        let (status, exit_code, verdict) = verdict::decide(&facts);

        self.run_status = LiveStatus::Ended(status);
        if !plan.finally_steps.is_empty() {
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
        (RunResult { status, exit_code }, verdict)
    }
}

/// An undo that could not be checked.
fn unknown_check(why: &str) -> (verdict::Check, crate::events::UndoCheck) {
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
    changed_nothing: bool,
}

/// What the main line keeps across phases.
struct LineState {
    /// The run has committed a change.
    touched: bool,
    /// Phases that completed with their changes in place.
    kept: Vec<String>,
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
    aborted: bool,
    undo_ran: bool,
    undo_failed: bool,
    #[expect(dead_code, reason = "kept for the run journal")]
    phase_touched: bool,
}

/// Whether a step may change the database. Checks, sleeps, snapshots,
/// backups and rehearsals on a scratch database never do; a shell step in
/// a preflight or verify phase is taken to be read-only, as those phases
/// promise.
fn may_change(a: &Action, phase: PhaseKind) -> bool {
    match a {
        Action::Check(_) | Action::Sleep { .. } | Action::Snapshot(_) | Action::Backup(_) => false,
        Action::Rehearse(x) => x.scratch.is_none(),
        Action::Shell(_) => !matches!(phase, PhaseKind::Preflight | PhaseKind::Verify),
        Action::Sql { .. } | Action::Restore(_) | Action::Backfill(_) | Action::Migrate(_) => true,
    }
}

impl Run<'_> {
    /// A query that did not complete, as a step failure. `prefix_chars` is
    /// what runbook put before the user's SQL, so the server's position
    /// points into the SQL as written, then into the runbook file.
    pub(crate) fn query_failure(
        &self,
        fail: db::QueryFail,
        t: &Text,
        raw: &str,
        prefix_chars: usize,
        timeout: Option<Duration>,
    ) -> Fail {
        match fail {
            db::QueryFail::Db(e) => {
                let mut info = db::error_info(&e, Some(prefix_chars));
                info.location = self.locate(t, raw, info.position);
                Fail {
                    status: StepStatus::Failed,
                    retry_class: db::classify(&e),
                    error: info,
                    partial: Done::default(),
                    changed_nothing: false,
                }
            }
            db::QueryFail::Timeout => Fail::new(StepStatus::TimedOut, timeout_error(timeout)),
            db::QueryFail::Interrupted => Fail::new(StepStatus::Cancelled, cancelled_error()),
        }
    }
}

pub(crate) fn cancelled_error() -> ErrorInfo {
    ErrorInfo {
        class: ErrorKind::Cancelled,
        message: "interrupted".into(),
        ..ErrorInfo::default()
    }
}

pub(crate) fn timeout_error(t: Option<Duration>) -> ErrorInfo {
    ErrorInfo {
        class: ErrorKind::Timeout,
        message: format!(
            "timed out after {}",
            t.map_or_else(|| "?".into(), |d| crate::duration::Duration(d).to_string())
        ),
        ..ErrorInfo::default()
    }
}

/// Exponential backoff with full jitter in [50%, 100%] of the nominal wait.
fn backoff(s: &PlanStep, attempt: u32) -> Duration {
    let r = &s.retry;
    let nominal = r.initial.0.as_secs_f64() * r.factor.powi(attempt.saturating_sub(1) as i32);
    let capped = nominal.min(r.max.0.as_secs_f64());
    Duration::from_secs_f64(capped * (0.5 + fastrand::f64() * 0.5))
}
