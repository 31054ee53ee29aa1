//! Rehearsals of migrations another tool applies (Knex, Prisma, …): the
//! migrations are known by name, from the tool's `list` command or the
//! migration directory, and each leg runs the tool's `up` or `down` command
//! for one migration. The command reaches the rehearsal's database through
//! the libpq variables (the password in a private passfile, as for `shell`
//! steps, refilled before each leg when `--password-command` gives it) and
//! `DATABASE_URL` (without the password). Everything else, the
//! snapshots, checksums, verdicts and timings, is the rehearsal's own, read
//! on its own session after the tool has committed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;

use super::super::migrate::{Ctx, ScriptFail, ScriptRun};
use super::super::{Fail, Run, cancelled_error, child, interrupted, timeout_error};
use crate::events::{ErrorInfo, ErrorKind, StepStatus};
use crate::migrations::{self, Migration, Set};
use crate::model::Direction;
use crate::pg::db::Db;
use crate::plan::{PlanRehearse, PlanTool};

/// The tool's commands, rendered for each migration.
pub(super) struct Tool {
    /// By version: (as run, as shown).
    up: HashMap<String, (String, String)>,
    down: HashMap<String, (String, String)>,
    cwd: PathBuf,
    /// The run's libpq variables; the database is set per leg.
    env: Vec<(String, String)>,
    /// With `--password-command`: each leg's password is a new one (a leg
    /// may come after the one taken at the start has expired).
    refill: Option<crate::pg::db::Refill>,
    /// The run's secrets, and the passwords the legs were given: what a
    /// leg's output says is redacted with them before it is kept.
    redactor: std::sync::Mutex<crate::redact::Redactor>,
    learnt: std::sync::Mutex<Vec<String>>,
}

/// A refusal before any leg ran: it changed nothing.
fn failed(message: String, hint: &str) -> Fail {
    super::failed(message, hint).unchanged()
}

/// The migrations and their commands, before anything runs.
pub(super) async fn prepare(
    r: &mut Run<'_>,
    x: &PlanRehearse,
    t: &PlanTool,
) -> Result<(Set, Tool), Fail> {
    let render = |r: &Run<'_>, src: &str| {
        r.render_str(src)
            .map_err(|e| Fail::new(StepStatus::Failed, e).unchanged())
    };
    let (dir, _) = r
        .render(&x.dir)
        .map_err(|e| Fail::new(StepStatus::Failed, e).unchanged())?;
    let dir = super::super::builtin::relative(r, &dir);
    let cwd = match &t.cwd {
        Some(c) => r.base_dir.join(render(r, c)?),
        None => r.base_dir.clone(),
    };
    if !cwd.is_dir() {
        return Err(failed(
            format!(
                "the tool's working directory {} does not exist",
                cwd.display()
            ),
            "`tool.cwd` is relative to the runbook's directory",
        ));
    }
    // The list's password; each leg gets one of its own.
    let env = r
        .child_env()
        .await
        .map_err(|e| Fail::new(StepStatus::Failed, e).unchanged())?;
    let names = match &t.list {
        Some(l) => {
            let script = render(r, l)?;
            let db = var(&env, "PGDATABASE").unwrap_or_default().to_string();
            Some(list(&script, &with_database(&env, &db), &cwd, r).await?)
        }
        None => None,
    };
    let set = migrations::tool_set(&dir, names, t.down.is_some()).map_err(|e| {
        failed(
            e.to_string(),
            "`dir` is the tool's migration directory; `tool.list` prints the names when the directory does not",
        )
    })?;
    let mut up = HashMap::new();
    let mut down = HashMap::new();
    for m in &set.migrations {
        let local = minijinja::Value::from(minijinja::value::Serde(json!({
            "name": m.up.file,
            "version": m.version,
            "stem": m.up.file.rsplit_once('.').map_or(m.up.file.as_str(), |(s, _)| s),
        })));
        let rendered = |src: &str| -> Result<(String, String), Fail> {
            let raw = r
                .render_with(src, &[("migration", local.clone())])
                .map_err(|e| Fail::new(StepStatus::Failed, e).unchanged())?;
            let shown = r.bus.redactor().redact(&raw).into_owned();
            Ok((raw, shown))
        };
        up.insert(m.version.clone(), rendered(&t.up)?);
        if let Some(d) = &t.down {
            down.insert(m.version.clone(), rendered(d)?);
        }
    }
    Ok((
        set,
        Tool {
            up,
            down,
            cwd,
            env,
            refill: r.refill(),
            redactor: std::sync::Mutex::new(r.bus.redactor().clone()),
            learnt: std::sync::Mutex::new(Vec::new()),
        },
    ))
}

/// Run the `list` script; its output is the migrations' names in order:
/// a JSON array (of names, or of objects with a `name`), or one per line.
async fn list(
    script: &str,
    env: &[(String, String)],
    cwd: &std::path::Path,
    r: &Run<'_>,
) -> Result<Vec<String>, Fail> {
    let argv = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
    let ran = child::run_until(&argv, env, cwd, None, r.stop_signal(), |_, _| {})
        .await
        .map_err(|e| Fail::new(StepStatus::Failed, e).unchanged())?;
    if ran.ended.is_some() {
        return Err(Fail::new(StepStatus::Cancelled, cancelled_error()).unchanged());
    }
    if ran.code != Some(0) {
        return Err(failed(
            format!(
                "the tool's list command exited with {}{}",
                ran.code.map_or("a signal".into(), |c| format!("code {c}")),
                tail(ran.stderr.tail())
            ),
            "`tool.list` must print the migrations, one name per line or a JSON array",
        ));
    }
    let out = ran.stdout.all.trim();
    if let Ok(serde_json::Value::Array(items)) = serde_json::from_str(out) {
        return Ok(items
            .iter()
            .filter_map(|v| {
                v.as_str()
                    .or_else(|| v["name"].as_str())
                    .map(str::to_string)
            })
            .collect());
    }
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

fn var<'e>(env: &'e [(String, String)], key: &str) -> Option<&'e str> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `env` pointed at database `db`: PGDATABASE, and a DATABASE_URL with no
/// password in it (the passfile in PGPASSFILE holds that).
fn with_database(env: &[(String, String)], db: &str) -> Vec<(String, String)> {
    let enc = crate::pg::service::percent_encode;
    let host = var(env, "PGHOST").unwrap_or("localhost");
    let port = var(env, "PGPORT").unwrap_or("5432");
    let user = var(env, "PGUSER")
        .map(|u| format!("{}@", enc(u)))
        .unwrap_or_default();
    let mut query = Vec::new();
    let authority = if host.starts_with('/') {
        query.push(format!("host={}", enc(host)));
        format!("{user}localhost:{port}")
    } else {
        format!("{user}{host}:{port}")
    };
    if let Some(mode) = var(env, "PGSSLMODE") {
        query.push(format!("sslmode={mode}"));
    }
    let url = format!(
        "postgresql://{authority}/{}{}{}",
        enc(db),
        if query.is_empty() { "" } else { "?" },
        query.join("&")
    );
    let mut out: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k != "PGDATABASE" && k != "DATABASE_URL")
        .cloned()
        .collect();
    out.push(("PGDATABASE".into(), db.to_string()));
    out.push(("DATABASE_URL".into(), url));
    out
}

/// The last lines of a stream, for a message.
fn tail(stream: Option<String>) -> String {
    stream
        .map(|t| {
            let lines: Vec<&str> = t.lines().collect();
            format!(": {}", lines[lines.len().saturating_sub(5)..].join(" | "))
        })
        .unwrap_or_default()
}

impl Tool {
    /// The passwords the legs were given, for the run's own redactor.
    pub(super) fn learnt(&self) -> Vec<String> {
        std::mem::take(&mut *self.learnt.lock().expect("not poisoned"))
    }

    /// One leg of `m` through the tool, on `db`'s database.
    pub(super) async fn run(
        &self,
        db: &Db,
        m: &Migration,
        direction: Direction,
        ctx: &Ctx<'_>,
    ) -> Result<ScriptRun, ScriptFail> {
        let commands = match direction {
            Direction::Up => &self.up,
            Direction::Down => &self.down,
        };
        let (raw, shown) = commands
            .get(&m.version)
            .expect("every migration's commands are rendered before the rehearsal");
        let fail = |error: ErrorInfo, status: StepStatus| ScriptFail {
            error,
            status,
            retry: false,
            // What a tool did before it failed is not known: as if it committed some.
            done: 1,
            in_transaction: false,
            maybe_committed: false,
            index: Default::default(),
            before_script: false,
        };
        let name = db
            .config()
            .config
            .get_dbname()
            .unwrap_or_default()
            .to_string();
        if let Some(refill) = &self.refill {
            let password = refill.refill().await.map_err(|error| ScriptFail {
                error,
                status: StepStatus::Failed,
                retry: false,
                // The tool did not start.
                done: 0,
                in_transaction: false,
                maybe_committed: false,
                index: Default::default(),
                before_script: false,
            })?;
            self.redactor.lock().expect("not poisoned").add(&password);
            self.learnt.lock().expect("not poisoned").push(password);
        }
        let env = with_database(&self.env, &name);
        let argv = vec!["sh".to_string(), "-c".to_string(), raw.clone()];
        let deadline = ctx.deadline.map(tokio::time::Instant::from_std);
        let stop = interrupted(ctx.interrupts.clone(), ctx.level);
        let started = Instant::now();
        let ran = child::run_until(&argv, &env, &self.cwd, deadline, stop, |_, _| {})
            .await
            .map_err(|e| fail(e, StepStatus::Failed))?;
        let duration = started.elapsed();
        match (ran.ended, ran.code) {
            (None, Some(0)) => Ok(ScriptRun {
                duration,
                in_transaction: false,
                no_transaction_because: Some("the tool ran it".into()),
                left_open: false,
                statements: 0,
                touched: None,
                checks: None,
            }),
            (Some(StepStatus::TimedOut), _) => {
                Err(fail(timeout_error(ctx.timeout), StepStatus::TimedOut))
            }
            (Some(_), _) => Err(fail(cancelled_error(), StepStatus::Cancelled)),
            (None, code) => Err(fail(
                ErrorInfo {
                    class: ErrorKind::Exit,
                    message: self
                        .redactor
                        .lock()
                        .expect("not poisoned")
                        .redact(&format!(
                            "`{shown}` exited with {}{}",
                            code.map_or("a signal".into(), |c| format!("code {c}")),
                            tail(ran.stderr.tail().or(ran.stdout.tail()))
                        ))
                        .into_owned(),
                    ..ErrorInfo::default()
                },
                StepStatus::Failed,
            )),
        }
    }
}
