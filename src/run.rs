//! `runbook exec`: from a file and flags to a finished run with reports.
//!
//! Everything that can be refused is refused here, before any side effect:
//! the runbook, params, `--approve` names, the database URL, the report
//! directory. Then the throwaway cluster (if asked), the runtime, signals.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use indicatif::MultiProgress;

use crate::diag::{Diagnostic, did_you_mean, one_of};
use crate::events::{Bus, Sink};
use crate::exec::{self, Options, Prompter};
use crate::exit;
use crate::plan::{self, RunInfo};
use crate::report::Builder;
use crate::report::files::{EventLog, ReportFiles};
use crate::report::progress::{Mode, Progress};
use crate::source::Source;
use crate::validate::{self, Inputs, ParamCheck};

pub struct RunArgs {
    pub file: PathBuf,
    pub inputs: Inputs,
    pub database_url: Option<String>,
    pub ephemeral: bool,
    pub keep: bool,
    pub approve: Vec<String>,
    /// `--as`: who approves.
    pub approver: Option<String>,
    /// `--approval FILE`: approvals given ahead of time.
    pub approval_files: Vec<PathBuf>,
    pub yes: bool,
    pub report_dir: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    pub progress: Mode,
    pub verbose: bool,
    pub color: bool,
    /// `--pg-bin-dir` or `PG_BIN_DIR`.
    pub pg_bin_dir: Option<PathBuf>,
    /// `--password-command`: asked for a password at each login.
    pub password_command: Option<String>,
    /// `runbook resume` / `runbook rollback`: the earlier run, by id.
    pub earlier: Option<Earlier>,
    /// `--ephemeral --tls`.
    pub tls: bool,
}

/// A run that continues or undoes an earlier one.
pub struct Earlier {
    pub run_id: String,
    pub action: EarlierAction,
}

pub enum EarlierAction {
    /// `runbook resume`, with `--partial` when given.
    Resume(Option<exec::PartialPolicy>),
    /// `runbook rollback`.
    Rollback,
}

/// An input problem found before anything ran: print it, exit 5.
fn refuse(color: bool, source: &Source, d: Diagnostic) -> u8 {
    crate::say_part!("{}", d.render(source, color));
    crate::say!("\n\nerror: nothing ran");
    exit::INVALID
}

/// The single-threaded runtime a run (or a fleet of them) runs on; a
/// failure to start it is refused like bad input: nothing ran.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            refuse_plain(
                &format!("failed to start the async runtime: {e}"),
                "check the process limits",
            )
        })
}

/// `--report-dir`, or `runbook-reports/<default>`, created; the files of
/// an earlier run there (`files`) moved aside whole, so two runs never mix
/// and nothing is lost. Also where they went. A `--junit` path that cannot
/// be written (a directory, or in one that does not exist) is refused
/// first.
pub(crate) fn report_dir(
    a: &RunArgs,
    default: &str,
    files: &[&str],
) -> Result<(PathBuf, Option<PathBuf>), u8> {
    let dir = a
        .report_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("runbook-reports").join(default));
    // The JUnit file's place first: nothing is created or moved aside for
    // a run that is refused. It may be in the report directory, which is
    // created next.
    if let Some(j) = &a.junit {
        if j.is_dir() {
            return Err(refuse_plain(
                &format!("--junit `{}` is a directory", j.display()),
                "give the file's path, such as --junit reports/junit.xml",
            ));
        }
        if let Some(parent) = j.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
            && parent != dir
        {
            return Err(refuse_plain(
                &format!("the directory for --junit `{}` does not exist", j.display()),
                "create it first, or write the file elsewhere",
            ));
        }
    }
    std::fs::create_dir_all(&dir).map_err(|e| {
        refuse_plain(
            &format!(
                "failed to create the report directory `{}`: {e}",
                dir.display()
            ),
            "choose a writable place with --report-dir DIR",
        )
    })?;
    let moved = set_aside_earlier_run(&dir, files).map_err(|e| {
        refuse_plain(
            &format!(
                "the report directory `{}` holds an earlier run's reports, and they could not be moved aside: {e}",
                dir.display()
            ),
            "choose a new directory with --report-dir DIR",
        )
    })?;
    Ok((dir, moved))
}

pub(crate) fn refuse_plain(message: &str, hint: &str) -> u8 {
    crate::say!("error: {message}\n  = help: {hint}\n\nerror: nothing ran");
    exit::INVALID
}

struct TerminalPrompt {
    multi: MultiProgress,
    /// Whether the bars were hidden by `ask`, to be drawn again by `done`.
    hid: bool,
}

impl Prompter for TerminalPrompt {
    fn ask(&mut self, phase: &str, prompt: &str) -> tokio::sync::oneshot::Receiver<bool> {
        // The bars stay hidden until `done`: a spinner's tick would draw
        // over the question while the person types.
        self.hid = !self.multi.is_hidden();
        if self.hid {
            self.multi
                .set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let mut err = std::io::stderr();
        let _ = write!(err, "\n{prompt}\nType `yes` to run phase `{phase}`: ");
        let _ = err.flush();
        let (tx, rx) = tokio::sync::oneshot::channel();
        // A thread of its own: the runtime's thread goes on watching for
        // an interrupt. After one, nothing asks again, and the thread ends
        // with the process.
        std::thread::spawn(move || {
            let mut line = String::new();
            let yes = std::io::stdin().lock().read_line(&mut line).is_ok() && line.trim() == "yes";
            let _ = tx.send(yes);
        });
        rx
    }

    fn done(&mut self, answered: bool) {
        if !answered {
            // The cursor is still on the question's line.
            crate::say!("");
        }
        if self.hid {
            self.multi
                .set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
    }
}

pub fn exec(mut a: RunArgs) -> u8 {
    match prepare_and_run(&mut a) {
        Ok(code) | Err(code) => code,
    }
}

/// Each refusal has printed its error by the time it returns `Err(code)`.
fn prepare_and_run(a: &mut RunArgs) -> Result<u8, u8> {
    // As PID 1 (a container's entry point) a signal with no handler is
    // dropped, not fatal: there, the stopping signals are held from the
    // start, so that a SIGTERM while the runbook is read still stops the
    // run. Elsewhere, until the run is about to begin (below), one ends
    // the process as it does by default; nothing has been done yet.
    let pid1 = (std::process::id() == 1).then(crate::signals::hold);
    let mut run_id = exec::new_run_id();
    let mut info = RunInfo {
        id: Some(run_id.clone()),
        started_at: Some(crate::events::now()),
    };
    let earlier = load_earlier(a, &mut info, &mut run_id)?;
    let built = validate::validate_file(&a.file, &a.inputs, ParamCheck::RequireAll)
        .and_then(|v| plan::build(&v, &info).map(|p| (v, p)));
    let (v, plan) = built.map_err(|invalid| {
        crate::say_part!("{}", invalid.render(a.color));
        exit::INVALID
    })?;
    let mode = match (earlier, &a.earlier) {
        (Some(record), Some(e)) => decide_earlier(&record, &plan, e, a.yes)?,
        _ => exec::Mode::Run,
    };
    // From here on a stopping signal waits to be counted by the run, which
    // then ends before its first step, with its report.
    let held = pid1.unwrap_or_else(crate::signals::hold);
    let approvals = check_approvals(a, &plan)?;
    let url = target_url(a, &plan)?;
    let (redactor, mut warnings) = secrets_and_warnings(
        a.database_url.as_deref(),
        &plan,
        url.as_deref(),
        a.password_command.as_deref(),
    )?;
    if let Some(dir) = &a.pg_bin_dir
        && !dir.is_dir()
    {
        return Err(refuse_plain(
            &format!(
                "--pg-bin-dir (or PG_BIN_DIR) `{}` is not a directory",
                dir.display()
            ),
            "point it at the directory holding pg_dump and pg_restore, such as /usr/lib/postgresql/16/bin",
        ));
    }
    let scopes = what_runs(a, &v, &plan, url.as_deref());
    let lint = lint_before_run(a, &v, &plan, &scopes)?;
    let Reports {
        dir: report_dir,
        events,
        failures,
    } = prepare_reports(a, &plan, &run_id, &mut warnings)?;
    let (config, cluster) = start_target(a, url)?;

    let multi = MultiProgress::new();
    let sinks: Vec<Box<dyn Sink>> = vec![
        Box::new(Progress::new(a.progress, a.verbose, multi.clone())),
        Box::new(events),
        Box::new(ReportFiles::new(
            match lint {
                Some(l) => Builder::new(&plan, &run_id).with_lint(l),
                None => Builder::new(&plan, &run_id),
            },
            &report_dir,
            a.junit.clone(),
            failures.clone(),
        )),
    ];
    let bus = Bus::new(redactor, sinks);
    let interactive = std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal()
        && std::env::var_os("CI").is_none();
    let prompter: Option<Box<dyn Prompter>> =
        interactive.then(|| Box::new(TerminalPrompt { multi, hid: false }) as Box<dyn Prompter>);
    let base_dir = a
        .file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    // Absolute, so paths a step reports (`steps.<id>.path`) hold from any cwd.
    let base_dir = std::path::absolute(&base_dir).unwrap_or(base_dir);
    let opts = Options {
        run_id,
        config,
        ephemeral: cluster.is_some(),
        approve: std::mem::take(&mut a.approve),
        approver: a.approver.clone(),
        approvals,
        yes: a.yes,
        prompter,
        base_dir,
        pg_bin_dir: a.pg_bin_dir.clone(),
        report_dir: Some(report_dir.clone()),
        warnings,
        mode,
    };
    let result = run_with_signals(&v, &plan, opts, bus, held)?;
    Ok(finish(a, &result, cluster, &report_dir, &failures))
}

/// A resume or a rollback reads the earlier run from the journal first:
/// the runbook file, the params, and the run id its templates saw.
fn load_earlier(
    a: &mut RunArgs,
    info: &mut RunInfo,
    run_id: &mut String,
) -> Result<Option<exec::journal::RunRecord>, u8> {
    let Some(e) = &a.earlier else {
        return Ok(None);
    };
    let target = crate::commands::Target {
        database_url: a.database_url.clone(),
        password_command: a.password_command.clone(),
    };
    let record = crate::commands::read_run(&target, &e.run_id).map_err(|e| {
        let code = e.print(&mut std::io::stderr());
        crate::say!("\nerror: nothing ran");
        code
    })?;
    if a.file.as_os_str().is_empty() {
        a.file = PathBuf::from(&record.file);
    }
    a.inputs.set.splice(0..0, recorded_params(&record));
    info.id = Some(record.run_id.clone());
    if matches!(e.action, EarlierAction::Resume(_)) {
        run_id.clone_from(&record.run_id);
    }
    Ok(Some(record))
}

/// Every `--approve` names a phase of the runbook.
/// `--approve` names a phase the runbook has, and every `--approval FILE`
/// approves this runbook's text, with these params, at one of its gates:
/// one that does not is refused before anything runs (exit 6; 5 for a
/// file that cannot be read as an approval).
pub(crate) fn check_approvals(
    a: &RunArgs,
    plan: &plan::Plan,
) -> Result<Vec<crate::approval::Given>, u8> {
    let phases: Vec<&str> = plan.phases.iter().map(|p| p.id.as_str()).collect();
    if let Some(name) = a.approve.iter().find(|n| !phases.contains(&n.as_str())) {
        let text = format!("--approve {name}");
        let src = Source::new("command line", text.clone());
        let hint = match did_you_mean(name, phases.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("the runbook's phases are {}", one_of(&phases)),
        };
        return Err(refuse(
            a.color,
            &src,
            Diagnostic::new(format!("unknown phase `{name}`"))
                .at(Some(10..text.len()))
                .label("no phase has this id")
                .hint(hint),
        ));
    }
    a.approval_files
        .iter()
        .map(|path| {
            crate::approval::read(path, plan).map_err(|e| {
                crate::say!("error: {e}\n  = help: {}\n\nerror: nothing ran", e.hint());
                match e {
                    crate::approval::ApprovalError::Mismatch { .. } => exit::NOT_APPROVED,
                    _ => exit::INVALID,
                }
            })
        })
        .collect()
}

/// The database to run against: the flag, the runbook's `database.url`,
/// then the environment; None for `--ephemeral`.
fn target_url(a: &RunArgs, plan: &plan::Plan) -> Result<Option<String>, u8> {
    if a.ephemeral {
        return Ok(None);
    }
    a.database_url
        .clone()
        .or_else(|| plan.database_url.clone())
        .or_else(crate::pg::db::url_from_env)
        .map(Some)
        .ok_or_else(|| {
            refuse_plain(
                "no database to run against",
                "pass --database-url URL, set `database.url` in the runbook, or set DATABASE_URL; \
                 or use --ephemeral for a throwaway local PostgreSQL",
            )
        })
}

/// The redactor for every output (the plan's secrets and the URL's
/// password), and the warnings the report starts with.
pub(crate) fn secrets_and_warnings(
    flag_url: Option<&str>,
    plan: &plan::Plan,
    url: Option<&str>,
    password_command: Option<&str>,
) -> Result<(crate::redact::Redactor, Vec<String>), u8> {
    let mut redactor = plan.redactor.clone();
    let mut warnings: Vec<String> = Vec::new();
    if flag_url.is_some_and(|u| redactor.redact(u) != u) {
        warnings.push(
            "--database-url carries a password, and every user of this machine can read a command line (`ps`): pass the URL in DATABASE_URL, or keep the password in ~/.pgpass (PGPASSFILE)".into(),
        );
    }
    if let Some(u) = url {
        redactor.add_url(u);
        let conn = crate::pg::db::parse_url(u).map_err(|e| {
            let (message, help) = crate::pg::db::url_refusal(&redactor.redact(u), &e);
            refuse_plain(&message, help)
        })?;
        if let Some(command) = password_command {
            let password = first_password(u, &redactor, &conn, command)?;
            redactor.add(password);
        } else if let Some(pw) = conn.config.get_password() {
            redactor.add(String::from_utf8_lossy(pw).into_owned());
        }
        warnings.extend(conn.notes);
    }
    warnings.extend(redactor.weak().iter().cloned());
    Ok((redactor, warnings))
}

/// `--password-command`, tried once before anything runs: a command that
/// fails, or a connection string that gives a password too, is refused
/// here. What it printed is a secret from now on.
fn first_password(
    url: &str,
    redactor: &crate::redact::Redactor,
    conn: &crate::pg::db::Conn,
    command: &str,
) -> Result<String, u8> {
    let mut said = crate::redact::Redactor::default();
    said.add_url(url);
    if said.redact(url) != url {
        return Err(refuse_plain(
            &format!(
                "`{}` has a password, and --password-command gives one too",
                redactor.redact(url)
            ),
            "give the password one way: leave it out of the connection string",
        ));
    }
    crate::pg::password::PasswordCommand::new(command.to_string())
        .password(&crate::pg::db::password_target(&conn.config))
        .map_err(|e| {
            refuse_plain(
                &format!("--password-command: {e}"),
                "it runs under sh -c, with the target in PGHOST, PGPORT, PGUSER and PGDATABASE, and its first line of output is the password; run it by hand to see why it failed",
            )
        })
}

/// Lint before anything is created or connected: with `settings.lint:
/// error`, error findings stop the run here; with `warn` they go into the
/// report. It lints the plan just built, with the run's params.
pub(crate) fn lint_before_run(
    a: &RunArgs,
    v: &validate::Validated,
    plan: &plan::Plan,
    scopes: &crate::lint::Scopes,
) -> Result<Option<serde_json::Value>, u8> {
    let Some(linted) = crate::lint::lint_plan(&a.file, v, plan, scopes) else {
        return Ok(None);
    };
    let report = linted.map_err(|e| {
        refuse_plain(
            &format!("lint could not run: {}", e.trim_end()),
            "fix runbook-lint.toml or the runbook's `lint:` section, or set `settings.lint: off`",
        )
    })?;
    if plan.settings.lint == Some(crate::model::LintMode::Error) && report.errors() > 0 {
        crate::say_part!("{}", crate::lint::render_text(&report, false));
        return Err(refuse_plain(
            &format!(
                "lint found {} error(s) and `settings.lint` is `error`",
                report.errors()
            ),
            "fix the findings, turn single rules off in `lint:`, say which migrations are applied everywhere already and will not run again (`lint: {applied_through: VERSION}`), or set `settings.lint: warn` to run anyway",
        ));
    }
    if !report.findings.is_empty() && !matches!(a.progress, Mode::Quiet) {
        crate::say!(
            "lint: {} error(s), {} warning(s); they are listed in the report (`runbook lint {}` shows them)",
            report.errors(),
            report.warnings(),
            a.file.display()
        );
    }
    Ok(Some(crate::lint::plan_report_json(&report, plan)))
}

/// What this run runs of each directory whose ups it may run (through the
/// step's `to`, at most its `steps`), with what the target's history
/// records as applied there, read (and nothing written) before lint: so
/// that `exec` lints the migrations it runs, not those applied already. A
/// throwaway cluster (`--ephemeral`) starts empty: nothing is applied. A
/// history that cannot be read here is left unknown, and its directory
/// linted through `to`; the run meets the same problem at its step, and
/// says so there.
fn what_runs(
    a: &RunArgs,
    v: &validate::Validated,
    plan: &plan::Plan,
    url: Option<&str>,
) -> crate::lint::Scopes {
    if plan.settings.lint == Some(crate::model::LintMode::Off) {
        return crate::lint::Scopes::new();
    }
    let mut scopes = crate::lint::scopes(&a.file, v, plan);
    let Some(url) = url else {
        for s in scopes.values_mut() {
            s.applied = Some(std::collections::BTreeSet::new());
        }
        return scopes;
    };
    if scopes.is_empty() {
        return scopes;
    }
    let (Ok(mut config), Ok(rt)) = (crate::pg::db::parse_url(url), runtime()) else {
        return scopes;
    };
    config.password_command = a
        .password_command
        .clone()
        .map(crate::pg::password::PasswordCommand::new);
    // A target slow to answer is linted in full, not waited on twice.
    if config.config.get_connect_timeout().is_none() {
        config
            .config
            .connect_timeout(std::time::Duration::from_secs(5));
    }
    rt.block_on(async {
        let Ok(db) = crate::pg::db::Db::connect(config, "runbook/lint").await else {
            return;
        };
        for (dir, s) in &mut scopes {
            let Ok(format) = crate::migrations::Format::parse(&s.format) else {
                continue;
            };
            let Ok(mut set) = crate::migrations::load(dir, format) else {
                continue;
            };
            let Ok(tool) = crate::history::Tool::parse(&s.history_format) else {
                continue;
            };
            let spec = crate::history::Spec {
                tool,
                table: s.history_table.clone(),
            };
            let Ok(history) = crate::history::History::open(&db, &spec, &mut set).await else {
                continue;
            };
            if let Ok(applied) = history.read(&db, &set).await {
                let done = applied.into_iter().filter(|a| !a.dirty).map(|a| a.version);
                s.applied = Some(done.collect());
            }
        }
    });
    scopes
}

/// Where the run's evidence goes, created before anything runs.
struct Reports {
    dir: PathBuf,
    events: EventLog,
    failures: crate::report::files::WriteFailures,
}

/// The report directory (an earlier run's files in it moved aside, whole),
/// the event log in it, and the JUnit file's directory checked.
fn prepare_reports(
    a: &RunArgs,
    plan: &plan::Plan,
    run_id: &str,
    warnings: &mut Vec<String>,
) -> Result<Reports, u8> {
    let (dir, moved_aside) = report_dir(a, &format!("{}-{run_id}", plan.runbook.name), RUN_FILES)?;
    if let Some(to) = &moved_aside {
        warnings.push(format!(
            "the report directory held an earlier run's reports; they were moved to `{}`",
            to.display()
        ));
    }
    let failures = crate::report::files::WriteFailures::default();
    let log = dir.join("events.jsonl");
    let events = EventLog::create(&log, failures.clone()).map_err(|e| {
        refuse_plain(
            &format!("failed to create `{}`: {e}", log.display()),
            "choose a writable place with --report-dir DIR",
        )
    })?;
    Ok(Reports {
        dir,
        events,
        failures,
    })
}

/// The connection to run with: the URL given, or a throwaway cluster
/// started now (`--ephemeral`), which the caller keeps alive.
fn start_target(
    a: &RunArgs,
    url: Option<String>,
) -> Result<(crate::pg::db::Conn, Option<crate::ephemeral::Ephemeral>), u8> {
    let mut cluster = None;
    let url = match url {
        Some(u) => u,
        None => {
            let started = if a.tls {
                crate::ephemeral::Ephemeral::start_tls()
            } else {
                crate::ephemeral::Ephemeral::start()
            };
            let c = started.map_err(|e| {
                refuse_plain(
                    &format!("failed to start a throwaway PostgreSQL: {e}"),
                    "install the PostgreSQL server (Debian: apt-get install postgresql), or pass --database-url",
                )
            })?;
            let u = c.url("postgres");
            cluster = Some(c);
            u
        }
    };
    let mut config = crate::pg::db::parse_url(&url).map_err(|e| {
        if crate::pg::db::env_fault(&e) {
            let (message, help) = crate::pg::db::url_refusal(&url, &e);
            return refuse_plain(&message, help);
        }
        refuse_plain(
            &format!("invalid database URL: {e}"),
            "report this: runbook built the URL",
        )
    })?;
    config.password_command = a
        .password_command
        .clone()
        .map(crate::pg::password::PasswordCommand::new);
    Ok((config, cluster))
}

/// The run on a current-thread runtime; SIGINT, SIGTERM and SIGHUP count
/// up the interrupts the executor watches (one stops the step and rolls
/// back, two stop the rollback), those held since the run began included.
fn run_with_signals(
    v: &validate::Validated,
    plan: &plan::Plan,
    opts: Options,
    bus: Bus,
    held: crate::signals::Held,
) -> Result<exec::RunResult, u8> {
    let runtime = runtime()?;
    Ok(runtime.block_on(async {
        let rx = crate::signals::watch(
            "runbook: interrupted; stopping the current step and rolling back (interrupt again to stop the rollback)",
            held,
        );
        exec::execute(v, plan, opts, bus, rx).await
    }))
}

/// After the run: where the report is, the kept cluster, and the exit
/// code (a success whose report could not be written is not a success).
fn finish(
    a: &RunArgs,
    result: &exec::RunResult,
    cluster: Option<crate::ephemeral::Ephemeral>,
    report_dir: &std::path::Path,
    failures: &crate::report::files::WriteFailures,
) -> u8 {
    if a.progress != Mode::Quiet || result.exit_code != exit::OK {
        crate::say!("report: {}", report_dir.join("report.md").display());
    }
    if let Some(mut c) = cluster {
        if a.keep {
            c.keep();
            crate::say!(
                "ephemeral PostgreSQL kept running: {} (data in {}); stop it with: {}",
                c.url("postgres"),
                c.dir().join("data").display(),
                c.stop_command()
            );
        }
        drop(c);
    }
    let Some(what) = failures.first() else {
        return result.exit_code;
    };
    // A success whose evidence is missing is not a success; a failure
    // code already demands a look, and keeps what it says.
    let code = if result.exit_code == exit::OK {
        exit::REPORT_FAILED
    } else {
        result.exit_code
    };
    crate::say!(
        "error: the run ended {} (exit code {}), but its report could not be written: {what}\n  = help: the files in {} are missing or out of date; free space there, or give another --report-dir next time",
        result.status.name(),
        result.exit_code,
        report_dir.display(),
    );
    code
}

/// The `--set` values that give a resume or rollback the earlier run's
/// params: every one that was not a default and is not a secret (secrets
/// are not in the journal; they must be given again).
fn recorded_params(r: &exec::journal::RunRecord) -> Vec<String> {
    let Some(params) = r.params.as_object() else {
        return Vec::new();
    };
    params
        .iter()
        .filter(|(_, p)| {
            p["secret"] != true && matches!(p["origin"].as_str(), Some("set" | "params_file"))
        })
        .map(|(k, p)| match &p["value"] {
            serde_json::Value::String(s) => format!("{k}={s}"),
            v => format!("{k}={v}"),
        })
        .collect()
}

/// Check that the runbook and params are the earlier run's, and settle
/// what the resume or rollback will do; refused here, before anything runs.
fn decide_earlier(
    record: &exec::journal::RunRecord,
    plan: &plan::Plan,
    e: &Earlier,
    yes: bool,
) -> Result<exec::Mode, u8> {
    same_as_recorded(record, plan)?;
    decide_action(record, plan, e, yes)
}

/// The runbook (by sha256) and the non-secret params must be the ones the
/// run recorded; a secret it was given must be given again.
fn same_as_recorded(record: &exec::journal::RunRecord, plan: &plan::Plan) -> Result<(), u8> {
    if plan.runbook.sha256 != record.sha256 {
        return Err(refuse_plain(
            &format!(
                "the runbook `{}` changed since run {} (sha256 {} then, {} now)",
                plan.runbook.file,
                record.run_id,
                record.sha256.get(..12).unwrap_or(&record.sha256),
                plan.runbook
                    .sha256
                    .get(..12)
                    .unwrap_or(&plan.runbook.sha256)
            ),
            "resume and rollback run the exact runbook the run started with; check out that version, or pass it with --runbook FILE",
        ));
    }
    let params = record.params.as_object().cloned().unwrap_or_default();
    for (name, was) in &params {
        let Some(now) = plan.params.get(name) else {
            continue;
        };
        if was["secret"] == true {
            if matches!(was["origin"].as_str(), Some("set" | "params_file"))
                && matches!(
                    now.origin,
                    crate::params::Origin::Default | crate::params::Origin::Unset
                )
            {
                return Err(refuse_plain(
                    &format!(
                        "param `{name}` is secret, and run {} was given it; the journal does not keep secrets",
                        record.run_id
                    ),
                    &format!("pass it again: --set {name}=... or --params-file"),
                ));
            }
        } else if was["value"] != now.value {
            return Err(refuse_plain(
                &format!(
                    "param `{name}` was {} in run {}, and is {} now",
                    was["value"], record.run_id, now.value
                ),
                "a resume or rollback runs with the params of the run it continues; drop the --set",
            ));
        }
    }
    Ok(())
}

/// What the resume does with a step that may have half-applied, or
/// whether the rollback is confirmed.
fn decide_action(
    record: &exec::journal::RunRecord,
    plan: &plan::Plan,
    e: &Earlier,
    yes: bool,
) -> Result<exec::Mode, u8> {
    let interactive = std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal()
        && std::env::var_os("CI").is_none();
    let ask = |prompt: &str| -> String {
        crate::say_part!("{prompt}");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        line.trim().to_string()
    };
    match &e.action {
        EarlierAction::Resume(partial) => {
            let decide = match exec::resume::resumable(record, plan) {
                Ok(d) => d,
                Err(why) => {
                    return Err(refuse_plain(
                        &format!("cannot resume: {why}"),
                        &format!(
                            "`runbook runs show {}` shows what the journal holds",
                            record.run_id
                        ),
                    ));
                }
            };
            let partial = match (decide, partial) {
                (exec::resume::Resumable::Yes, p) => *p,
                (exec::resume::Resumable::Decide { .. }, Some(p)) => Some(*p),
                (exec::resume::Resumable::Decide { step, kind }, None) if interactive => {
                    let answer = ask(&format!(
                        "The runner died while `{step}` ({kind}) ran. It is not one transaction, so part of it may have been applied.\nType `rerun` to run it again, `skip` if you checked it finished, `undo` to roll its phase back: "
                    ));
                    match answer.as_str() {
                        "rerun" => Some(exec::PartialPolicy::Rerun),
                        "skip" => Some(exec::PartialPolicy::Skip),
                        "undo" => Some(exec::PartialPolicy::Undo),
                        _ => {
                            return Err(refuse_plain(
                                "no choice made for the interrupted step",
                                "answer rerun, skip or undo, or pass --partial",
                            ));
                        }
                    }
                }
                (exec::resume::Resumable::Decide { step, kind }, None) => {
                    return Err(refuse_plain(
                        &format!(
                            "the runner died while `{step}` ({kind}) ran, and it may have half-applied; someone must decide what happens to it"
                        ),
                        "pass --partial rerun (run it again), --partial skip (you checked it finished) or --partial undo (roll its phase back)",
                    ));
                }
            };
            Ok(exec::Mode::Resume(exec::Prior {
                record: record.clone(),
                partial,
            }))
        }
        EarlierAction::Rollback => {
            if !yes {
                let prompt = format!(
                    "Undo run {} ({} {}, {}): run the compensations it registered, newest first.\nType `yes` to go on: ",
                    record.run_id, record.runbook, record.version, record.status
                );
                if !interactive {
                    return Err(refuse_plain(
                        &format!(
                            "undoing run {} needs a yes, and there is no terminal to ask",
                            record.run_id
                        ),
                        "pass --yes",
                    ));
                }
                if ask(&prompt) != "yes" {
                    return Err(refuse_plain(
                        "not confirmed",
                        "type `yes` at the prompt, or pass --yes",
                    ));
                }
            }
            Ok(exec::Mode::Rollback(exec::Prior {
                record: record.clone(),
                partial: None,
            }))
        }
    }
}

/// The files a run writes into its report directory.
const RUN_FILES: &[&str] = &[
    "report.json",
    "report.md",
    "report.html",
    "events.jsonl",
    "migration-timings.csv",
];

/// Move an earlier run's files out of `dir`, into `dir/previous/<run id>/`.
/// Returns where they went, if there was one.
fn set_aside_earlier_run(
    dir: &std::path::Path,
    files: &[&str],
) -> std::io::Result<Option<PathBuf>> {
    let present: Vec<&str> = files
        .iter()
        .copied()
        .filter(|f| dir.join(f).exists())
        .collect();
    if present.is_empty() {
        return Ok(None);
    }
    let id = std::fs::read_to_string(dir.join("report.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["run"]["id"].as_str().map(str::to_string))
        .filter(|id| {
            !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .unwrap_or_else(exec::new_run_id);
    let mut to = dir.join("previous").join(&id);
    let mut n = 1;
    while to.exists() {
        n += 1;
        to = dir.join("previous").join(format!("{id}-{n}"));
    }
    std::fs::create_dir_all(&to)?;
    for f in present {
        std::fs::rename(dir.join(f), to.join(f))?;
    }
    Ok(Some(to))
}
