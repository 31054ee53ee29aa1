//! Execute: run a plan against a database, emitting events.
//!
//! Phases run in order, the steps of a phase in order. A step's compensation
//! is registered when the step starts. When a step fails, its phase's
//! `on_failure` decides: roll back (the phase's started steps, newest first),
//! abort, continue, or run a branch. Then the runbook's `on_failure` runs,
//! then `finally`, always. The executor never prints: it emits events.

mod abort;
pub mod backfill;
pub mod backup;
pub mod blockers;
pub mod builtin;
pub mod check;
pub mod child;
mod fail;
pub mod journal;
mod line;
pub mod migrate;
pub mod monitor;
mod privileges;
pub(crate) mod recreate;
pub mod rehearse;
pub mod restore;
pub mod resume;
mod rows;
pub mod shell;
pub mod snapshot;
pub mod sql;
mod step;
mod undo;
mod verdict;
mod wait;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use minijinja::Environment;
use serde_json::{Map, Value, json};
use tokio::sync::watch::Receiver;

use crate::events::{
    Approval, Bus, CheckResult, ErrorInfo, ErrorKind, Event, LockImpact, Role, RollbackScope,
    RunStatus, SkippedCompensation, StepStatus, Target, now,
};
use crate::model::{ErrorClass, PhaseKind};
use crate::plan::{Action, Plan, PlanOnFailure, PlanPhase, PlanStep, PlanWhen, Text};
use crate::validate::Validated;

use crate::pg::db::{self, Db};

/// Asks a person to approve a phase at a terminal.
pub trait Prompter {
    /// Show `prompt`, and read the answer off the runtime's thread, so
    /// that an interrupt is seen while the person thinks: the receiver
    /// says whether they typed `yes`.
    fn ask(&mut self, phase: &str, prompt: &str) -> tokio::sync::oneshot::Receiver<bool>;
    /// The question is over, `answered` or cut short by an interrupt:
    /// the display comes back.
    fn done(&mut self, answered: bool);
}

/// What `exec` was asked to do, beyond the plan.
pub struct Options {
    pub run_id: String,
    pub config: db::Conn,
    pub ephemeral: bool,
    /// Phases approved with `--approve`.
    pub approve: Vec<String>,
    /// `--as`: who approves, when given.
    pub approver: Option<String>,
    /// `--approval FILE`: approvals given ahead of time, checked against
    /// this plan already.
    pub approvals: Vec<crate::approval::Given>,
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
        | Action::Wait(_)
        | Action::Watch(_)
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

/// The run's own session, set aside while a step reads another database.
pub(crate) struct Elsewhere {
    db: Db,
    database: String,
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
    /// The attempt is known to have left the database as it found it, and
    /// how: its compensation then has nothing to undo.
    pub unchanged: Option<Unchanged>,
    /// A rehearsal's failure that is its judgement of the migrations (a
    /// verdict in its `errors`), not a failure to rehearse at all (a
    /// scratch database it could not make): only that is a verification
    /// that failed.
    pub judged: bool,
}

/// How a failed step is known to have left the database as it found it,
/// as the report says it when its compensation does not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unchanged {
    /// It failed inside a transaction, which rolled back.
    RolledBack,
    /// It stopped before anything it ran took effect: refused before it
    /// ran, or its first statement failed outside a transaction.
    NothingTookEffect,
    /// It removed what it had made (a database it created) when it failed.
    CleanedUp,
    /// It only reads (a check).
    ReadOnly,
}

impl Unchanged {
    pub fn why(self) -> &'static str {
        match self {
            Self::RolledBack => "the step failed inside a transaction that rolled back",
            Self::NothingTookEffect => "the step failed before anything it ran took effect",
            Self::CleanedUp => "the step removed what it had made when it failed",
            Self::ReadOnly => "the step only reads",
        }
    }
}

impl Fail {
    pub fn new(status: StepStatus, error: ErrorInfo) -> Self {
        Fail {
            status,
            error,
            retry_class: None,
            partial: Done::default(),
            unchanged: None,
            judged: false,
        }
    }

    /// Mark the failure as one that stopped before anything it ran took
    /// effect (a refusal, say).
    pub fn unchanged(mut self) -> Self {
        self.unchanged = Some(Unchanged::NothingTookEffect);
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
    /// A rehearsal's failure that judged the migrations ([`Fail::judged`]).
    judged: bool,
    /// The step left the database as it found it (skipped, or failed
    /// without a change), and how.
    unchanged: Option<Unchanged>,
}

pub(crate) struct Run<'a> {
    plan: &'a Plan,
    v: &'a Validated,
    pub(crate) db: Db,
    pub(crate) bus: Bus,
    env: Environment<'static>,
    steps_out: Map<String, Value>,
    run_id: String,
    /// The run whose work `to: before_run` undoes: this one, or, for
    /// `runbook rollback`, the run being undone.
    origin_run_id: String,
    started_at: String,
    run_status: LiveStatus,
    failed_step: Option<String>,
    /// Whether a main-line step changed (or may have changed) the database:
    /// `run.changed`, so a failure branch undoes only when there is
    /// something to undo.
    pub(crate) changed: bool,
    /// The step whose compensation is running now: its `to: before_run`
    /// reads what that step applied where the history does not record runs
    /// (elsewhere, what every migrate step of the run applied).
    undoing: Option<String>,
    interrupts: Receiver<u32>,
    /// Interrupts needed to stop the current work: 1, or 2 while rolling
    /// back after a first Ctrl-C.
    pub(crate) stop_level: u32,
    approve: Vec<String>,
    approver: Option<String>,
    /// Approvals given ahead of time (`--approval FILE`).
    approvals: Vec<crate::approval::Given>,
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
    /// When each `abort_when` trigger last ran (parallel to the plan's).
    triggers_ran: Vec<Option<Instant>>,
    /// A trigger fired: the failing phase unwinds even under `continue`.
    aborted: bool,
    /// A `sql` step outside a transaction whose attempt failed at statement
    /// N (by index) after the ones before it committed: its retry goes on
    /// from there instead of running them again.
    sql_resume: Option<(String, usize)>,
    /// A `migrate` step whose attempt failed after migrations committed:
    /// those, for its retry to count as this step's (in its `applied`, and
    /// in whether it changed anything).
    migrate_resume: Option<(String, Vec<Value>)>,
    /// A `backfill` step whose attempt failed: what it did, for its retry
    /// to report the step's batches and rows as a whole.
    backfill_resume: Option<(String, Box<backfill::Tally>)>,
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
pub(crate) async fn interrupted(mut rx: Receiver<u32>, level: u32) {
    loop {
        if *rx.borrow_and_update() >= level {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A new run id: the UTC start time and a random suffix, `20261122T033512Z-a1b2c3d4`.
/// 32 random bits: with 16, two runs of one runbook started in the same
/// second shared an id one time in 65,536 (it happened in the test suite),
/// and the second found the first's backup directory in its way.
pub fn new_run_id() -> String {
    let t = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let compact: String = t.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    format!("{compact}-{:08x}", fastrand::u32(..))
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

/// Why a run ended before its first step.
struct Refusal {
    status: RunStatus,
    verdict: String,
}

/// A run that ends before its first step: the verdict says why.
fn finish_early(mut bus: Bus, started: Instant, r: Refusal) -> RunResult {
    let exit_code = verdict::refusal_code(r.status);
    bus.emit(Event::RunFinished {
        at: now(),
        status: r.status,
        exit_code,
        duration_ms: ms(started.elapsed()),
        verdict: r.verdict,
        failed_step: None,
    });
    bus.finish();
    RunResult {
        status: r.status,
        exit_code,
    }
}

/// The main session, or why there is none: the server refused, or the
/// run was interrupted while connecting (or before: a signal held back
/// while a throwaway cluster started is counted here).
async fn connect(
    opts: &Options,
    app_name: &str,
    interrupts: &Receiver<u32>,
    target: &Target,
) -> Result<Db, Refusal> {
    let connected = tokio::select! {
        r = Db::connect(opts.config.clone(), app_name) => Some(r),
        () = interrupted(interrupts.clone(), 1) => None,
    };
    match connected {
        Some(Ok(db)) => Ok(db),
        Some(Err(e)) => Err(Refusal {
            status: RunStatus::PreflightFailed,
            verdict: format!(
                "FAILED before the first step: could not connect to {}:{}/{}: {}{}",
                target.host,
                target.port,
                target.database,
                e.message,
                e.hint
                    .as_deref()
                    .map_or_else(String::new, |h| format!(" (hint: {h})"))
            ),
        }),
        None => Err(Refusal {
            status: RunStatus::Interrupted,
            verdict: format!(
                "INTERRUPTED{} before the first step; nothing ran",
                crate::signals::cause().map_or_else(String::new, |c| format!(" by {c}"))
            ),
        }),
    }
}

/// What the report's header says of the server reached, and the children's
/// environment: of several hosts, the one reached, so pg_dump and psql go
/// to it alone.
async fn learn_target(
    db: &Db,
    opts: &Options,
    app_name: &str,
    passfile: Option<&std::path::Path>,
    target: &mut Target,
) -> Vec<(String, String)> {
    let mut conn = opts.config.clone();
    conn.reached = db.reached_host().await;
    let t = db::target_of_conn(&conn, opts.ephemeral);
    (target.host, target.port) = (t.host, t.port);
    target.server_version = db.server_version().await;
    target.tls = Some(db.tls_summary().await);
    db::libpq_env(&conn, app_name, passfile)
}

/// Refuse a transaction-mode pooler before the run lock: under one, the
/// lock would stay behind on a server session that other clients then use.
async fn pooler_refusal(db: &Db, opts: &Options, app_name: &str) -> Option<Refusal> {
    if opts.ephemeral {
        return None;
    }
    let evidence = db
        .pooler_evidence(&journal_app(app_name), Duration::from_secs(3))
        .await?;
    Some(Refusal {
        status: RunStatus::PreflightFailed,
        verdict: format!(
            "REFUSED: a connection pooler in transaction or statement mode is between runbook and PostgreSQL ({evidence}); the run's lock and session settings would not stay with its statements. Connect to PostgreSQL directly (for PgBouncer, the server's own port instead of the pooler's; on a managed service, its direct endpoint rather than the pooled one), or through a pool in session mode; nothing ran"
        ),
    })
}

/// Refuse a server that takes no writes when the runbook writes: a standby
/// (a reader endpoint, or a name that still points at the old primary
/// after a failover), or sessions that are read-only by default (for the
/// database, the role or the connection). Unrefused, the steps before the
/// first write ran (a backup, say), and the run failed at the write.
async fn read_only_refusal(db: &Db, plan: &Plan) -> Option<Refusal> {
    let (step, kind) = first_write(plan)?;
    let row = db
        .client
        .query_one(
            "SELECT pg_catalog.pg_is_in_recovery(), pg_catalog.current_setting('transaction_read_only') = 'on'",
            &[],
        )
        .await
        .ok()?;
    let why = match (row.get::<_, bool>(0), row.get::<_, bool>(1)) {
        (true, _) => "the server is a standby (in recovery)",
        (false, true) => {
            "its sessions are read-only (default_transaction_read_only is on, for the database, the role or the connection)"
        }
        (false, false) => return None,
    };
    Some(Refusal {
        status: RunStatus::PreflightFailed,
        verdict: format!(
            "REFUSED: {why}, and step `{step}` ({kind}) writes to it. Connect to the primary (on a managed service, its writer endpoint rather than a reader); nothing ran"
        ),
    })
}

/// Refuse a run whose `verify_undo` names a table this session cannot read
/// in full: every undo would end unverified (exit 4), after the changes.
async fn verify_undo_refusal(db: &Db, plan: &Plan) -> Option<Refusal> {
    let why = undo::unreadable(db, plan.settings.verify_undo.as_ref()?).await?;
    Some(Refusal {
        status: RunStatus::PreflightFailed,
        verdict: format!(
            "REFUSED: settings.verify_undo names a table this role cannot read in full ({why}), so no undo could be verified. Grant it SELECT on the tables, and where row-level security is on, run as a role with BYPASSRLS (or as the table's owner, unless the table forces it); nothing ran"
        ),
    })
}

/// The first step that writes on the server (see [`Action::writes`]), in
/// the phases, the steps after a failure and the final ones, rollback
/// branches included: its name and kind.
fn first_write(plan: &Plan) -> Option<(String, &'static str)> {
    fn find(steps: &[PlanStep]) -> Option<&PlanStep> {
        steps.iter().find_map(|s| match s.action.writes() {
            true => Some(s),
            false => find(&s.rollback),
        })
    }
    let named = |prefix: &str, s: &PlanStep| (format!("{prefix}{}", s.id), s.action.kind());
    plan.phases
        .iter()
        .find_map(|p| find(&p.steps).map(|s| named(&format!("{}.", p.id), s)))
        .or_else(|| find(&plan.on_failure).map(|s| named("on_failure.", s)))
        .or_else(|| find(&plan.finally_steps).map(|s| named("finally.", s)))
}

/// The run lock not taken, in words: who holds it, and how to end that
/// session if its runner is gone.
fn lock_refusal(
    runbook: &str,
    database: &str,
    locked: Result<Result<(), Option<db::Holder>>, ErrorInfo>,
) -> Option<Refusal> {
    let verdict = match locked {
        Ok(Ok(())) => return None,
        Ok(Err(Some(h))) => format!(
            "REFUSED: another run of `{runbook}` holds database `{database}`: pid {}, application_name `{}`, run {}, connected since {} ({} ago), {} for {}; nothing ran. If that run's runner is gone, the server ends a session still running a query within 2 s of noticing (PostgreSQL 14+); to end it now: SELECT pg_terminate_backend({})",
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
            "REFUSED: another run of `{runbook}` holds database `{database}` (its session could not be seen); nothing ran"
        ),
        Err(e) => format!(
            "REFUSED: failed to take the run lock: {}; nothing ran",
            e.message
        ),
    };
    Some(Refusal {
        status: RunStatus::Locked,
        verdict,
    })
}

/// The journal, on its own session, opened once the run lock is held, with
/// this run recorded; off (with a warning saying what that costs) when the
/// database will not hold it. A resume continues the earlier run's rows.
async fn open_journal(
    db: &Db,
    database: &str,
    app_name: &str,
    (plan, run_id, mode): (&Plan, &str, Mode),
    bus: &mut Bus,
) -> (journal::Journal, Option<Prior>, Option<Prior>) {
    let mut journal = match journal::Journal::open(db, database, &journal_app(app_name)).await {
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
    let (resumed, undo) = match mode {
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
        run_id: run_id.to_string(),
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
    (journal, resumed, undo)
}

/// Run the plan. Reports are written by the bus's sinks on every outcome.
pub async fn execute(
    v: &Validated,
    plan: &Plan,
    opts: Options,
    mut bus: Bus,
    interrupts: Receiver<u32>,
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
    let db = match connect(&opts, &app_name, &interrupts, &target).await {
        Ok(db) => db,
        Err(refusal) => {
            bus.emit(run_started(target));
            return finish_early(bus, started, refusal);
        }
    };
    let pg_env = learn_target(
        &db,
        &opts,
        &app_name,
        passfile.as_ref().map(tempfile::NamedTempFile::path),
        &mut target,
    )
    .await;
    let server_version = target.server_version.clone().unwrap_or_default();
    if let Some(refusal) = pooler_refusal(&db, &opts, &app_name).await {
        bus.emit(run_started(target));
        return finish_early(bus, started, refusal);
    }
    if let Some(refusal) = read_only_refusal(&db, plan).await {
        bus.emit(run_started(target));
        return finish_early(bus, started, refusal);
    }
    if let Some(refusal) = verify_undo_refusal(&db, plan).await {
        bus.emit(run_started(target));
        return finish_early(bus, started, refusal);
    }
    if let Some(setting) = db.refused_child_setting().await {
        bus.emit(run_started(target));
        return finish_early(
            bus,
            started,
            Refusal {
                status: RunStatus::PreflightFailed,
                verdict: format!(
                    "REFUSED: the environment sets {setting}; pg_dump and psql, which the run starts, would send it and fail to connect. Correct or unset it; nothing ran"
                ),
            },
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
    if let Some(refusal) = lock_refusal(&plan.runbook.name, &database, locked) {
        return finish_early(bus, started, refusal);
    }
    let (journal, resumed, undo) = open_journal(
        &db,
        &database,
        &app_name,
        (plan, &opts.run_id, opts.mode),
        &mut bus,
    )
    .await;

    let mut run = Run {
        plan,
        v,
        db,
        bus,
        env: crate::template::environment(),
        steps_out: Map::new(),
        origin_run_id: undo
            .as_ref()
            .map_or_else(|| opts.run_id.clone(), |p| p.record.run_id.clone()),
        run_id: opts.run_id,
        started_at,
        run_status: LiveStatus::Running,
        failed_step: None,
        changed: false,
        undoing: None,
        interrupts,
        stop_level: 1,
        approve: opts.approve,
        approver: opts.approver,
        approvals: opts.approvals,
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
        triggers_ran: vec![None; plan.abort_when.len()],
        aborted: false,
        sql_resume: None,
        migrate_resume: None,
        backfill_resume: None,
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
    run.end(result, started).await
}

impl Run<'_> {
    /// The run's last words: its ending in the journal, then `RunFinished`
    /// (which makes the sinks write the final reports).
    async fn end(mut self, result: (RunResult, String), started: Instant) -> RunResult {
        let failed_step = self.failed_step.clone();
        let wrote = self
            .journal
            .run_finished(
                result.0.status.name(),
                result.0.exit_code,
                &self.bus.redactor().redact(&result.1),
                failed_step.as_deref(),
            )
            .await;
        self.journal_failed(wrote);
        self.bus.emit(Event::RunFinished {
            at: now(),
            status: result.0.status,
            exit_code: result.0.exit_code,
            duration_ms: ms(started.elapsed()),
            verdict: result.1,
            failed_step: self.failed_step.clone(),
        });
        self.bus.finish();
        result.0
    }
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
                "changed": self.changed,
            }))),
            steps => minijinja::Value::from(Serde(&self.steps_out)),
        }
    }
    /// Render a planned text now: (as run, as shown).
    /// Move the run's session to another database of the same server for
    /// one step (a check's or a snapshot's `database:`): a session of its
    /// own there, while the run's own (and the run lock it holds) waits
    /// aside until [`Run::come_back`].
    pub(crate) async fn go_to(&mut self, t: &Text) -> Result<Elsewhere, Fail> {
        let (name, shown) = self
            .render(t)
            .map_err(|e| Fail::new(StepStatus::Failed, e))?;
        let name = name.trim().to_string();
        let there = self
            .db
            .connect_to(&name, &self.app_name)
            .await
            .map_err(|mut e| {
                e.message = format!("cannot connect to database `{}`: {}", shown.trim(), e.message);
                e.hint.get_or_insert_with(|| {
                    "the database must exist on the run's server (a `restore` step with `target:` creates one)".into()
                });
                Fail::new(StepStatus::Failed, e)
            })?;
        let db = std::mem::replace(&mut self.db, there);
        let database = std::mem::replace(&mut self.database, name);
        Ok(Elsewhere { db, database })
    }

    /// Back to the run's own session after [`Run::go_to`]; the other one closes.
    pub(crate) fn come_back(&mut self, e: Elsewhere) {
        self.db = e.db;
        self.database = e.database;
    }

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
        self.render_with(src, &[])
    }
    /// Render a template source with the run context plus `extra` names.
    pub(crate) fn render_with(
        &self,
        src: &str,
        extra: &[(&str, minijinja::Value)],
    ) -> Result<String, ErrorInfo> {
        let locals: std::collections::BTreeMap<&str, minijinja::Value> =
            extra.iter().map(|(k, v)| (*k, v.clone())).collect();
        let ctx = minijinja::context! { ..minijinja::Value::from(locals), ..self.context() };
        match self.env.render_str(src, ctx) {
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
                if let Some(note) =
                    crate::pg::tools::needs_newer(&info.message, &self.server_version)
                {
                    info.message = format!("{}; {note}", info.message);
                }
                Fail {
                    status: StepStatus::Failed,
                    retry_class: db::classify(&e),
                    error: info,
                    partial: Done::default(),
                    unchanged: None,
                    judged: false,
                }
            }
            db::QueryFail::Timeout => Fail::new(StepStatus::TimedOut, timeout_error(timeout)),
            db::QueryFail::Interrupted => Fail::new(StepStatus::Cancelled, cancelled_error()),
        }
    }
}

/// A step stopped by an interrupt, with the signal that sent it.
pub(crate) fn cancelled_error() -> ErrorInfo {
    ErrorInfo {
        class: ErrorKind::Cancelled,
        message: crate::signals::cause()
            .map_or_else(|| "interrupted".into(), |c| format!("interrupted by {c}")),
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
