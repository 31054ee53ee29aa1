//! `runbook exec --targets FILE`: one runbook over many databases, in one
//! process. Every target is checked and planned before the first starts;
//! then waves of them run on the tokio runtime, each with its own session,
//! advisory lock, journal, report directory and exit code, under the stop
//! rules; the fleet report is rewritten as each target ends.

use std::cell::RefCell;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use crate::events::{Bus, Event, RunStatus, Sink, now};
use crate::exec::{self, Options};
use crate::exit;
use crate::fleet::report::{
    self, Fleet, FleetReport, FleetStatus, RolloutUsed, RunbookId, StopCause, TargetReport,
    TargetState,
};
use crate::fleet::rollout::{Flags, Rules};
use crate::fleet::targets::{self, Choice, Selector, Shard, Target};
use crate::plan::{self, Plan, RunInfo};
use crate::report::Builder;
use crate::report::files::{EventLog, ReportFiles, WriteFailures};
use crate::report::progress::Mode;
use crate::run::{RunArgs, refuse_plain};
use crate::validate::{self, Inputs, ParamCheck, Validated};

/// What `--targets` adds to `exec`'s flags.
#[derive(Debug, Clone, Default)]
pub struct FleetArgs {
    pub targets: PathBuf,
    pub select: Vec<Selector>,
    pub shard: Option<Shard>,
    /// `--only-failed REPORT`: retry the targets that report did not see succeed.
    pub only_failed: Option<PathBuf>,
    pub rollout: Flags,
}

/// The files of a fleet's report directory (an earlier run's move aside).
const FLEET_FILES: &[&str] = &["report.json", "report.md", "events.jsonl", "targets"];

/// One target, checked and planned: all it needs to run.
struct Prepared {
    target: Target,
    v: Validated,
    plan: Plan,
    conn: crate::pg::db::Conn,
    redactor: crate::redact::Redactor,
    warnings: Vec<String>,
    approvals: Vec<crate::approval::Given>,
    run_id: String,
}

pub fn exec(a: RunArgs, f: FleetArgs) -> u8 {
    match prepare_and_run(a, f) {
        Ok(code) | Err(code) => code,
    }
}

fn prepare_and_run(mut a: RunArgs, f: FleetArgs) -> Result<u8, u8> {
    // A stopping signal waits to be counted by the roll-out, which then
    // starts no target (see `run::prepare_and_run`).
    let held = crate::signals::hold();
    let fleet_id = exec::new_run_id();
    let file = targets::load(&f.targets).map_err(|invalid| {
        crate::say_part!("{}", invalid.render(a.color));
        exit::INVALID
    })?;
    let only = match &f.only_failed {
        Some(path) => Some(previous_failures(path, &file)?),
        None => None,
    };
    let chosen = Choice {
        select: &f.select,
        shard: f.shard,
        only: only.as_deref(),
    }
    .apply(&file.list);
    if chosen.is_empty() && !f.select.is_empty() {
        let said: Vec<String> = f
            .select
            .iter()
            .map(|s| format!("{}={}", s.key, s.values.join(",")))
            .collect();
        return Err(refuse_plain(
            &format!(
                "no target in `{}` matches --select {}",
                file.file,
                said.join(" --select ")
            ),
            "`runbook targets list --targets FILE` shows each target's labels",
        ));
    }
    let doc = crate::load::load_file(&a.file).map_err(|failure| {
        crate::say_part!(
            "{}",
            crate::diag::render_all(&failure.source, &[failure.diagnostic], a.color)
        );
        crate::say!("error: `{}` is invalid; nothing ran", a.file.display());
        exit::INVALID
    })?;
    // The runbook itself first, so that its own errors are not said as
    // some target's.
    validate::validate_doc(doc.clone(), &a.inputs, ParamCheck::GivenOnly).map_err(|invalid| {
        crate::say_part!("{}", invalid.render(a.color));
        exit::INVALID
    })?;
    let prepared = chosen
        .into_iter()
        .enumerate()
        .map(|(i, t)| prepare(&a, &doc, t, format!("{fleet_id}-{}", i + 1)))
        .collect::<Result<Vec<_>, u8>>()?;
    same_database_twice(&prepared)?;
    let (runbook, rollout) = match prepared.first() {
        Some(p) => (
            RunbookId {
                name: p.plan.runbook.name.clone(),
                version: p.plan.runbook.version.clone(),
                sha256: p.plan.runbook.sha256.clone(),
            },
            p.v.runbook.rollout.clone(),
        ),
        // An empty shard (or nothing left to retry) still says so in a report.
        None => {
            let v = validate::validate_doc(doc.clone(), &a.inputs, ParamCheck::GivenOnly).map_err(
                |invalid| {
                    crate::say_part!("{}", invalid.render(a.color));
                    exit::INVALID
                },
            )?;
            (
                RunbookId {
                    name: v.runbook.metadata.name.clone(),
                    version: v.runbook.metadata.version.clone(),
                    sha256: crate::validate::sha256(&v.doc),
                },
                v.runbook.rollout.clone(),
            )
        }
    };
    let rules = Rules::new(&rollout, &f.rollout, prepared.len());
    let lint = match prepared.first() {
        Some(p) => crate::run::lint_before_run(&a, &p.v, &p.plan, &Default::default())?,
        None => None,
    };
    let dir = report_dir(&a, &runbook.name, &fleet_id)?;
    let mut fleet = FleetFiles::create(
        &dir,
        new_report(&fleet_id, runbook, &rules, &prepared, f.shard),
    )?;
    fleet.event(serde_json::json!({
        "event": "fleet_started", "at": now(), "fleet_id": fleet_id,
        "targets": prepared.len(), "waves": rules.waves.len(),
    }));
    fleet.write();
    if !quiet(&a) {
        crate::say!(
            "fleet {fleet_id}: {} target(s) from {}{}, {} wave(s), {} at a time; report in {}",
            prepared.len(),
            file.file,
            f.shard.map(|s| format!(" (shard {s})")).unwrap_or_default(),
            rules.waves.len(),
            rules.parallel,
            dir.display()
        );
    }
    let shared = Rc::new(Shared {
        dir: dir.clone(),
        base_dir: base_dir(&a.file),
        approve: std::mem::take(&mut a.approve),
        approver: a.approver.clone(),
        yes: a.yes,
        pg_bin_dir: a.pg_bin_dir.clone(),
        lint,
    });
    let runtime = crate::run::runtime()?;
    let local = tokio::task::LocalSet::new();
    let stop = local.block_on(
        &runtime,
        roll_out(prepared, &rules, shared, &mut fleet, quiet(&a), held),
    );
    Ok(fleet.finish(stop, &a))
}

fn quiet(a: &RunArgs) -> bool {
    matches!(a.progress, Mode::Quiet)
}

fn base_dir(file: &Path) -> PathBuf {
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    std::path::absolute(&dir).unwrap_or(dir)
}

/// The names `--only-failed REPORT` retries; a name the targets file no
/// longer has is said, not silently dropped.
fn previous_failures(path: &Path, file: &targets::Targets) -> Result<Vec<String>, u8> {
    let previous = report::read(path).map_err(|e| {
        refuse_plain(
            &e.to_string(),
            "give the report directory (or report.json) of an earlier `runbook exec --targets` run",
        )
    })?;
    let names = previous.not_succeeded();
    let gone: Vec<&String> = names
        .iter()
        .filter(|n| !file.list.iter().any(|t| &t.name == *n))
        .collect();
    if !gone.is_empty() {
        crate::say!(
            "warning: {} target(s) that did not succeed in {} are not in {} any more: {}",
            gone.len(),
            path.display(),
            file.file,
            gone.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(names)
}

/// A target's params as `--set` values, refused where they would hide a
/// `--set` or carry a secret.
fn target_inputs(a: &RunArgs, doc: &crate::load::Document, t: &Target) -> Result<Inputs, u8> {
    let mut set = Vec::new();
    for (name, value) in &t.params {
        if a.inputs
            .set
            .iter()
            .any(|s| s.split_once('=').is_some_and(|(k, _)| k.trim() == name))
        {
            return Err(refuse_plain(
                &format!(
                    "param `{name}` is given by --set and by target `{}`",
                    t.name
                ),
                "a --set applies to every target; set the param in one place",
            ));
        }
        if doc.value["params"][name]["secret"] == true {
            return Err(refuse_plain(
                &format!(
                    "target `{}` sets param `{name}`, which is secret; a targets file is never the place for a secret",
                    t.name
                ),
                "give it with --set or --params-file, or read it from the environment in the runbook",
            ));
        }
        set.push(match value {
            serde_json::Value::String(s) => format!("{name}={s}"),
            other => format!("{name}={other}"),
        });
    }
    set.extend(a.inputs.set.iter().cloned());
    Ok(Inputs {
        set,
        params_file: a.inputs.params_file.clone(),
    })
}

/// Check and plan one target: its params, its plan, its connection and
/// approvals. Nothing connects.
fn prepare(
    a: &RunArgs,
    doc: &crate::load::Document,
    t: Target,
    run_id: String,
) -> Result<Prepared, u8> {
    let inputs = target_inputs(a, doc, &t)?;
    let info = RunInfo {
        id: Some(run_id.clone()),
        started_at: Some(now()),
    };
    let built = validate::validate_doc(doc.clone(), &inputs, ParamCheck::RequireAll)
        .and_then(|v| plan::build(&v, &info).map(|p| (v, p)));
    let (v, plan) = built.map_err(|invalid| {
        crate::say!("error: target `{}`:", t.name);
        crate::say_part!("{}", invalid.render(a.color));
        exit::INVALID
    })?;
    let conninfo = t.conninfo().map_err(|why| {
        refuse_plain(
            &format!("target `{}` has no database: {why}", t.name),
            "set the variable, or give the target a `url` or `service` (docs/fleet.md)",
        )
    })?;
    let (redactor, warnings) = crate::run::secrets_and_warnings(
        None,
        &plan,
        Some(&conninfo),
        a.password_command.as_deref(),
    )?;
    let mut conn = crate::pg::db::parse_url(&conninfo).map_err(|e| {
        let (message, help) = crate::pg::db::url_refusal(&redactor.redact(&conninfo), &e);
        refuse_plain(&format!("target `{}`: {message}", t.name), help)
    })?;
    if let Some(db) = &t.database {
        conn.config.dbname(db);
    }
    conn.password_command = a
        .password_command
        .clone()
        .map(crate::pg::password::PasswordCommand::new);
    let approvals = crate::run::check_approvals(a, &plan)?;
    Ok(Prepared {
        target: t,
        v,
        plan,
        conn,
        redactor,
        warnings,
        approvals,
        run_id,
    })
}

/// Two targets that reach the same database would race for its lock, and
/// the fleet report would count one database twice: refused up front.
fn same_database_twice(prepared: &[Prepared]) -> Result<(), u8> {
    let mut seen: std::collections::HashMap<(String, u16, String), &str> =
        std::collections::HashMap::new();
    for p in prepared {
        let t = crate::pg::db::target_of(&p.conn.config, false);
        let key = (t.host.clone(), t.port, t.database.clone());
        if let Some(first) = seen.insert(key, &p.target.name) {
            return Err(refuse_plain(
                &format!(
                    "targets `{first}` and `{}` are the same database ({} on {}:{})",
                    p.target.name, t.database, t.host, t.port
                ),
                "each target is one database: remove one, or give it its own `database`",
            ));
        }
    }
    Ok(())
}

fn report_dir(a: &RunArgs, name: &str, fleet_id: &str) -> Result<PathBuf, u8> {
    let (dir, moved) = crate::run::report_dir(a, &format!("{name}-fleet-{fleet_id}"), FLEET_FILES)?;
    if let Some(to) = moved {
        crate::say!(
            "warning: the report directory held an earlier run's reports; they were moved to `{}`",
            to.display()
        );
    }
    Ok(dir)
}

fn new_report(
    fleet_id: &str,
    runbook: RunbookId,
    rules: &Rules,
    prepared: &[Prepared],
    shard: Option<Shard>,
) -> FleetReport {
    let mut r = FleetReport {
        schema: report::SCHEMA_ID.into(),
        fleet: Fleet {
            id: fleet_id.to_string(),
            runbook,
            started_at: now(),
            finished_at: None,
            duration_ms: None,
            status: FleetStatus::Running,
            exit_code: None,
            shards: shard.map(|s| s.to_string()).into_iter().collect(),
            rollout: RolloutUsed {
                parallel: rules.parallel,
                canary: rules.canary,
                waves: rules.waves.len(),
                max_failures: rules.max_failures,
            },
            stopped: None,
        },
        counts: report::Counts::default(),
        targets: prepared
            .iter()
            .enumerate()
            .map(|(i, p)| TargetReport {
                name: p.target.name.clone(),
                labels: p.target.labels.clone(),
                connection: p.redactor.redact(&p.target.describe()).into_owned(),
                wave: rules.wave_of(i) + 1,
                state: TargetState::Pending,
                status: None,
                exit_code: None,
                run_id: Some(p.run_id.clone()),
                started_at: None,
                duration_ms: None,
                failed_step: None,
                reason: None,
                report: None,
            })
            .collect(),
    };
    r.settle(None, false);
    r
}

/// The fleet's own files: report.json and report.md, rewritten whole
/// (atomically) at each change, and events.jsonl, appended.
struct FleetFiles {
    dir: PathBuf,
    report: FleetReport,
    events: std::fs::File,
    failures: WriteFailures,
    started: Instant,
}

impl FleetFiles {
    fn create(dir: &Path, report: FleetReport) -> Result<Self, u8> {
        let log = dir.join("events.jsonl");
        let events = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| {
                refuse_plain(
                    &format!("failed to create `{}`: {e}", log.display()),
                    "choose a writable place with --report-dir DIR",
                )
            })?;
        Ok(FleetFiles {
            dir: dir.to_path_buf(),
            report,
            events,
            failures: WriteFailures::default(),
            started: Instant::now(),
        })
    }

    fn event(&mut self, e: serde_json::Value) {
        let mut line = e.to_string();
        line.push('\n');
        if let Err(err) = self
            .events
            .write_all(line.as_bytes())
            .and_then(|()| self.events.flush())
        {
            self.failures.note(&format!("events.jsonl: {err}"));
        }
    }

    fn write(&mut self) {
        for (name, bytes) in [
            ("report.json", self.report.to_json()),
            ("report.md", report::markdown(&self.report)),
        ] {
            if let Err(e) = crate::fsutil::write_atomic(&self.dir.join(name), bytes.as_bytes()) {
                self.failures.note(&format!("{name}: {e}"));
            }
        }
    }

    /// The last report, JUnit and step summary; the exit code.
    fn finish(mut self, stop: Option<(StopCause, String)>, a: &RunArgs) -> u8 {
        let r = &mut self.report;
        for t in &mut r.targets {
            if matches!(t.state, TargetState::Pending | TargetState::Running) {
                t.state = TargetState::NotStarted;
                t.reason.get_or_insert_with(|| {
                    stop.as_ref()
                        .map_or_else(|| "never started".to_string(), |(_, why)| why.clone())
                });
            }
        }
        r.fleet.stopped = stop.as_ref().map(|(_, why)| why.clone());
        r.fleet.finished_at = Some(now());
        r.fleet.duration_ms = Some(exec::ms(self.started.elapsed()));
        r.settle(stop.map(|(c, _)| c), true);
        let code = r.fleet.exit_code.unwrap_or(exit::OK);
        let summary = serde_json::json!({
            "event": "fleet_finished", "at": now(), "status": r.fleet.status,
            "exit_code": code, "counts": r.counts,
        });
        self.event(summary);
        self.write();
        if let Some(path) = &a.junit
            && let Err(e) =
                crate::fsutil::write_atomic(path, report::junit(&self.report, &self.dir).as_bytes())
        {
            self.failures.note(&format!("{}: {e}", path.display()));
        }
        if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY")
            && let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(summary)
        {
            let _ = f.write_all(report::markdown(&self.report).as_bytes());
        }
        let c = &self.report.counts;
        if !quiet(a) || code != exit::OK {
            crate::say!(
                "fleet {}: {} succeeded, {} failed, {} not started (exit {code})\nreport: {}",
                self.report.fleet.status_name(),
                c.succeeded,
                c.failed,
                c.not_started,
                self.dir.join("report.md").display()
            );
        }
        match self.failures.first() {
            Some(what) => {
                crate::say!(
                    "error: the fleet's report could not be written: {what}\n  = help: free space in {}, or give another --report-dir next time",
                    self.dir.display()
                );
                if code == exit::OK {
                    exit::REPORT_FAILED
                } else {
                    code
                }
            }
            None => code,
        }
    }
}

impl Fleet {
    fn status_name(&self) -> &'static str {
        match self.status {
            FleetStatus::Running => "running",
            FleetStatus::Succeeded => "succeeded",
            FleetStatus::Failed => "failed",
            FleetStatus::Interrupted => "interrupted",
        }
    }
}

/// What every target run shares.
struct Shared {
    dir: PathBuf,
    base_dir: PathBuf,
    approve: Vec<String>,
    approver: Option<String>,
    yes: bool,
    pg_bin_dir: Option<PathBuf>,
    lint: Option<serde_json::Value>,
}

/// How one target's run ended, from its own events.
#[derive(Debug, Default)]
struct Captured {
    started_at: Option<String>,
    status: Option<RunStatus>,
    exit_code: Option<u8>,
    duration_ms: Option<u64>,
    verdict: Option<String>,
    failed_step: Option<String>,
    first_error: Option<(String, String)>,
}

/// A sink that keeps what the fleet report says of a target.
struct Capture(Rc<RefCell<Captured>>);

impl Sink for Capture {
    fn event(&mut self, e: &Event) {
        let mut c = self.0.borrow_mut();
        match e {
            Event::RunStarted { at, .. } => c.started_at = Some(at.clone()),
            Event::StepFinished {
                step,
                error: Some(err),
                ..
            } if c.first_error.is_none() => {
                c.first_error = Some((step.clone(), err.message.clone()));
            }
            Event::RunFinished {
                status,
                exit_code,
                duration_ms,
                verdict,
                failed_step,
                ..
            } => {
                c.status = Some(*status);
                c.exit_code = Some(*exit_code);
                c.duration_ms = Some(*duration_ms);
                c.verdict = Some(verdict.clone());
                c.failed_step.clone_from(failed_step);
            }
            _ => {}
        }
    }
}

/// The end of one target's run, for the fleet report.
struct Ended {
    index: usize,
    status: String,
    exit_code: u8,
    started_at: Option<String>,
    duration_ms: Option<u64>,
    failed_step: Option<String>,
    reason: Option<String>,
}

/// Run one target: its own report directory, event log, session and lock.
async fn run_target(
    index: usize,
    p: Prepared,
    shared: Rc<Shared>,
    interrupts: tokio::sync::watch::Receiver<u32>,
) -> Ended {
    let dir = shared.dir.join("targets").join(&p.target.name);
    let failures = WriteFailures::default();
    let captured = Rc::new(RefCell::new(Captured::default()));
    let early = |why: String| Ended {
        index,
        status: "not_started".into(),
        exit_code: exit::REPORT_FAILED,
        started_at: None,
        duration_ms: None,
        failed_step: None,
        reason: Some(why),
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return early(format!("failed to create `{}`: {e}", dir.display()));
    }
    let events = match EventLog::create(&dir.join("events.jsonl"), failures.clone()) {
        Ok(e) => e,
        Err(e) => return early(format!("failed to create its event log: {e}")),
    };
    let builder = match &shared.lint {
        Some(l) => Builder::new(&p.plan, &p.run_id).with_lint(l.clone()),
        None => Builder::new(&p.plan, &p.run_id),
    };
    let sinks: Vec<Box<dyn Sink>> = vec![
        Box::new(events),
        Box::new(ReportFiles::new(builder, &dir, None, failures.clone()).without_step_summary()),
        Box::new(Capture(Rc::clone(&captured))),
    ];
    let bus = Bus::new(p.redactor, sinks);
    let opts = Options {
        run_id: p.run_id,
        config: p.conn,
        ephemeral: false,
        approve: shared.approve.clone(),
        approver: shared.approver.clone(),
        approvals: p.approvals,
        yes: shared.yes,
        prompter: None,
        base_dir: shared.base_dir.clone(),
        pg_bin_dir: shared.pg_bin_dir.clone(),
        report_dir: Some(dir.clone()),
        warnings: p.warnings,
        mode: exec::Mode::Run,
    };
    let result = exec::execute(&p.v, &p.plan, opts, bus, interrupts).await;
    let c = captured.take();
    let mut exit_code = result.exit_code;
    let mut reason = c.verdict.clone();
    if let Some((step, message)) = &c.first_error
        && result.status != RunStatus::Succeeded
        && !reason
            .as_deref()
            .is_some_and(|r| r.contains(message.as_str()))
    {
        reason = Some(match reason {
            Some(v) => format!("{v} (step `{step}`: {message})"),
            None => format!("step `{step}`: {message}"),
        });
    }
    if let Some(what) = failures.first() {
        // A success whose evidence is missing is not a success.
        if exit_code == exit::OK {
            exit_code = exit::REPORT_FAILED;
        }
        reason = Some(format!(
            "{}; its report could not be written: {what}",
            reason.unwrap_or_default()
        ));
    }
    Ended {
        index,
        status: result.status.name().to_string(),
        exit_code,
        started_at: c.started_at,
        duration_ms: c.duration_ms,
        failed_step: c.failed_step.or(c.first_error.map(|e| e.0)),
        reason,
    }
}

/// Run the waves under the stop rules; returns why it stopped early, if it did.
async fn roll_out(
    prepared: Vec<Prepared>,
    rules: &Rules,
    shared: Rc<Shared>,
    fleet: &mut FleetFiles,
    quiet: bool,
    held: crate::signals::Held,
) -> Option<(StopCause, String)> {
    let interrupts = crate::signals::watch(
        "runbook: interrupted; no new target starts, and each running one stops its step and rolls back (interrupt again to stop the rollbacks)",
        held,
    );
    let mut slots: Vec<Option<Prepared>> = prepared.into_iter().map(Some).collect();
    let mut failed = 0usize;
    for (w, wave) in rules.waves.iter().enumerate() {
        if w > 0
            && let Some(stop) =
                between_waves(w, rules, &interrupts, fleet, (shared.yes, quiet)).await
        {
            return Some(stop);
        }
        let canary = w == 0 && rules.canary > 0;
        if !quiet {
            crate::say!(
                "wave {}/{}{}: {} target(s)",
                w + 1,
                rules.waves.len(),
                if canary { " (canary)" } else { "" },
                wave.len()
            );
        }
        fleet.event(serde_json::json!({
            "event": "wave_started", "at": now(), "wave": w + 1, "canary": canary,
            "targets": wave.len(),
        }));
        let mut queue = wave.clone();
        let mut running = tokio::task::JoinSet::new();
        let mut stop: Option<(StopCause, String)> = None;
        loop {
            while stop.is_none() && running.len() < rules.parallel_in(w) {
                let Some(i) = queue.next() else { break };
                let Some(p) = slots[i].take() else { continue };
                start(fleet, i);
                running.spawn_local(run_target(i, p, Rc::clone(&shared), interrupts.clone()));
            }
            if running.is_empty() {
                break;
            }
            let mut watch = interrupts.clone();
            tokio::select! {
                joined = running.join_next() => {
                    let Some(joined) = joined else { break };
                    let ended = match joined {
                        Ok(e) => e,
                        // A target's task cannot panic unnoticed: say so.
                        Err(e) => {
                            crate::say!("error: a target's run ended abnormally: {e}");
                            continue;
                        }
                    };
                    let ok = ended.exit_code == exit::OK;
                    record(fleet, ended, quiet);
                    if !ok {
                        failed += 1;
                    }
                    if stop.is_none() && !ok {
                        if canary {
                            stop = Some((StopCause::Failures, "the canary failed, so no other target started".into()));
                        } else if failed > rules.max_failures {
                            stop = Some((StopCause::Failures, format!(
                                "{failed} target(s) failed, more than max_failures ({}), so no new target started",
                                rules.max_failures
                            )));
                        }
                    }
                }
                _ = watch.wait_for(|n| *n > 0), if stop.is_none() => {
                    stop = Some((StopCause::Interrupted, "interrupted, so no new target started".into()));
                }
            }
        }
        if stop.is_none() && *interrupts.borrow() > 0 {
            stop = Some((
                StopCause::Interrupted,
                "interrupted, so no new target started".into(),
            ));
        }
        if let Some(s) = stop {
            fleet.event(serde_json::json!({
                "event": "fleet_stopped", "at": now(), "reason": s.1,
            }));
            if !quiet {
                crate::say!("stopped: {}", s.1);
            }
            return Some(s);
        }
    }
    None
}

/// Mark target `i` running, and say so in the report.
fn start(fleet: &mut FleetFiles, i: usize) {
    let t = &mut fleet.report.targets[i];
    t.state = TargetState::Running;
    t.started_at = Some(now());
    let (name, run_id) = (t.name.clone(), t.run_id.clone());
    fleet.report.settle(None, false);
    fleet.event(serde_json::json!({
        "event": "target_started", "at": now(), "target": name, "run_id": run_id,
    }));
    fleet.write();
}

/// A target ended: into the report, the event log and the terminal.
fn record(fleet: &mut FleetFiles, e: Ended, quiet: bool) {
    let rel = crate::fsutil::relative(
        &fleet
            .dir
            .join("targets")
            .join(&fleet.report.targets[e.index].name),
        &fleet.dir,
    );
    let t = &mut fleet.report.targets[e.index];
    t.state = if e.exit_code == exit::OK {
        TargetState::Succeeded
    } else {
        TargetState::Failed
    };
    t.status = Some(e.status.clone());
    t.exit_code = Some(e.exit_code);
    if e.started_at.is_some() {
        t.started_at = e.started_at;
    }
    t.duration_ms = e.duration_ms;
    t.failed_step = e.failed_step;
    t.reason = e.reason;
    t.report = Some(rel);
    let line = format!(
        "  {} {} {} in {:.1} s{}",
        if t.state == TargetState::Succeeded {
            "ok  "
        } else {
            "FAIL"
        },
        t.name,
        e.status,
        t.duration_ms.unwrap_or(0) as f64 / 1000.0,
        match (&t.state, &t.reason) {
            (TargetState::Failed, Some(r)) => format!(": {}", r.lines().next().unwrap_or("")),
            _ => String::new(),
        }
    );
    let event = serde_json::json!({
        "event": "target_finished", "at": now(), "target": t.name, "status": e.status,
        "exit_code": e.exit_code, "duration_ms": t.duration_ms,
    });
    fleet.report.settle(None, false);
    fleet.event(event);
    fleet.write();
    if !quiet || e.exit_code != exit::OK {
        crate::say!("{line}");
    }
}

/// Before wave `w` (from 0, after the first): the pause, then the approval.
async fn between_waves(
    w: usize,
    rules: &Rules,
    interrupts: &tokio::sync::watch::Receiver<u32>,
    fleet: &mut FleetFiles,
    (yes, quiet): (bool, bool),
) -> Option<(StopCause, String)> {
    let interrupted = || {
        Some((
            StopCause::Interrupted,
            "interrupted, so no new target started".to_string(),
        ))
    };
    if *interrupts.borrow() > 0 {
        return interrupted();
    }
    if let Some(pause) = rules.pause {
        if !quiet {
            crate::say!(
                "pausing {} before wave {}",
                humantime::format_duration(pause),
                w + 1
            );
        }
        let mut watch = interrupts.clone();
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = watch.wait_for(|n| *n > 0) => return interrupted(),
        }
    }
    if !rules.approve_waves || yes {
        return None;
    }
    let interactive = std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal()
        && std::env::var_os("CI").is_none();
    let why = format!(
        "wave {} needs approval (`rollout.pause.approve`), and it was not given",
        w + 1
    );
    if !interactive {
        return Some((
            StopCause::NotApproved,
            format!("{why}: there is no terminal to ask, and no --yes"),
        ));
    }
    let c = &fleet.report.counts;
    crate::say_part!(
        "\n{} succeeded, {} failed so far. Type `yes` to start wave {} of {}: ",
        c.succeeded,
        c.failed,
        w + 1,
        rules.waves.len()
    );
    let _ = std::io::stderr().flush();
    // Read on a thread of its own, so that Ctrl-C is seen while the
    // person thinks.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        let _ = tx.send(line);
    });
    let mut watch = interrupts.clone();
    let line = tokio::select! {
        l = rx => l.unwrap_or_default(),
        _ = watch.wait_for(|n| *n > 0) => {
            crate::say!("");
            return interrupted();
        }
    };
    if line.trim() == "yes" {
        fleet.event(serde_json::json!({"event": "wave_approved", "at": now(), "wave": w + 1}));
        None
    } else {
        Some((StopCause::NotApproved, why))
    }
}
