//! `rehearse` steps: every pending migration forward, back and forward
//! again, with evidence.
//!
//! Per migration (`mode: per_migration`):
//! 1. up (then the seed), snapshot S1, row counts and checksums D1 of the
//!    tables that existed before it;
//! 2. down, snapshot S2, D2: S2 must equal the snapshot before up (parity),
//!    and the tables must hold what they held before up, D0 (the down
//!    destroyed no data it did not create);
//! 3. up again, snapshot S3, D3: S3 must equal S1, D3 must equal D1.
//!
//! `mode: whole_set` does the same with every up, every down in reverse and
//! every up again. A bad migration is recorded and the rehearsal goes on
//! from the state after its up; it stops early only when that state cannot
//! be reached (an up or a re-up failed, or a non-transactional down failed
//! half-way).

mod checksums;
mod drift;
mod roles;
mod target;
mod tool;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use super::migrate::{self, Ctx, History, ScriptFail, ScriptRun};
use super::{Attempt, Done, Fail, Run};
use crate::events::ErrorKind;
use crate::events::{ErrorInfo, StepStatus};
use crate::migrations::{Migration, Set};
use crate::model::{Direction, MissingDowns, RehearseMode, Verdict};
use crate::pg::db::{self, Db};
use crate::plan::{PlanRehearse, PlanStep};
use crate::snapshot::{self, Snapshot};
use checksums::Sum;
use checksums::SumCache;
use checksums::data;
use std::sync::Arc;
use target::Target;
use target::drop_scratch;
use target::open_target;

/// A finding about one migration (or, with `version` "*", the whole set).
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub verdict: Verdict,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// The script the finding is about (`up` or `down`), where the verdict
    /// alone does not say: a `tool_failure` can be of either.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leg: Option<&'static str>,
}

/// One timed run of a script.
#[derive(Debug, Clone, Serialize)]
pub struct Leg {
    /// `up`, `down` or `reup`; `verify` for a sqitch change's verify
    /// script, after an up.
    pub leg: &'static str,
    pub duration_ms: u64,
    pub ok: bool,
    pub transaction: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub version: String,
    pub name: String,
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
    pub legs: Vec<Leg>,
    /// It has no down by design: only its up was rehearsed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub forward_only: bool,
    /// Its verdict is final: said, or not rehearsed. A rehearsal that ends
    /// early (an interrupt, a timeout, evidence it could not read) marks
    /// the others `not_rehearsed`, so that none reads as `ok`.
    #[serde(skip)]
    settled: bool,
}

impl Outcome {
    fn new(m: &Migration) -> Outcome {
        Outcome {
            version: m.version.clone(),
            name: m.name.clone(),
            verdict: Verdict::Ok,
            findings: Vec::new(),
            legs: Vec::new(),
            forward_only: m.forward_only(),
            settled: false,
        }
    }

    /// The rehearsal did not reach this migration: its only finding.
    fn not_rehearsed(&mut self, why: &str) {
        self.find(Verdict::NotRehearsed, format!("not rehearsed: {why}"));
        self.settled = true;
    }

    /// An `ok` needs its three legs, each run and passed. One that lacks
    /// any is not rehearsed, whatever path left it so: the verdict's
    /// default is never a pass by omission.
    fn earned(&mut self) {
        if self.verdict != Verdict::Ok {
            return;
        }
        let missing: Vec<&str> = ["up", "down", "reup"]
            .into_iter()
            .filter(|want| !self.legs.iter().any(|l| l.leg == *want && l.ok))
            .collect();
        if !missing.is_empty() {
            self.not_rehearsed(&format!("its {} did not run", missing.join(" and ")));
        }
    }

    fn find(&mut self, verdict: Verdict, message: String) -> &mut Finding {
        self.verdict = self.verdict.min(verdict);
        self.findings.push(Finding {
            verdict,
            message,
            changes: None,
            tables: Vec::new(),
            leg: None,
        });
        self.findings.last_mut().expect("just pushed")
    }
}

fn failed(message: String, hint: &str) -> Fail {
    Fail::new(
        StepStatus::Failed,
        ErrorInfo {
            class: ErrorKind::Rehearse,
            message,
            hint: Some(hint.into()),
            ..ErrorInfo::default()
        },
    )
}

fn log(r: &mut Run<'_>, step: &str, line: String) {
    super::sql::log(r, step, line);
}

pub(crate) async fn run(
    r: &mut Run<'_>,
    s: &PlanStep,
    x: &crate::plan::PlanRehearse,
    timeout: Option<Duration>,
) -> Attempt {
    let x: &PlanRehearse = x;
    // How far, checked before anything is made.
    let to = migrate::render_to(r, x.to.as_ref(), Direction::Up)?.filter(|t| t != "latest");
    let (mut set, tool) = match &x.tool {
        Some(t) => {
            let (set, tool) = tool::prepare(r, x, t).await?;
            (set, Some(tool))
        }
        None => (migrate::load_set(r, &x.dir, &x.format)?, None),
    };
    let selected = migrate::select_changesets(r, &mut set, &x.select)?;
    // What the directory's reading found to say (a file no changelog
    // includes, a shared version), as a migrate step says it; what the
    // history adds later becomes findings of its own.
    for w in &set.warnings {
        log(r, &s.id, format!("warning: {w}"));
    }
    if let Some(note) = selected {
        log(r, &s.id, note);
    }
    let seed = match &x.seed {
        Some(t) => {
            let (path, shown) = r.render(t).map_err(|e| Fail::new(StepStatus::Failed, e))?;
            let path = super::builtin::relative(r, &path);
            Some(std::fs::read_to_string(&path).map_err(|e| {
                failed(
                    format!("cannot read the seed file {shown}: {e}"),
                    "`seed:` is relative to the runbook's directory",
                )
            })?)
        }
        None => None,
    };
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let spec = x
        .history
        .spec()
        .map_err(|e| failed(e, "see docs/migrations.md for the history formats"))?;
    let target = open_target(r, s, x, deadline, timeout).await?;
    let history = match History::open(&target.db, &spec, &mut set).await {
        Ok(h) => h,
        Err(e) => {
            let Target { db, scratch } = target;
            drop(db);
            if let Some(name) = &scratch {
                drop_scratch(r, name).await;
            }
            return Err(failed(e.to_string(), e.hint()));
        }
    };
    log(r, &s.id, format!("history: {}", history.describe()));
    if let Some(note) = set.deployer_note() {
        log(r, &s.id, note);
    }
    if let Some(note) = set.flyway_conf_note() {
        log(r, &s.id, note);
    }
    if let Some(note) = set.liquibase_conf_note() {
        log(r, &s.id, note);
    }
    let settings = s.settings.as_ref().unwrap_or(&r.plan.settings).clone();
    let run_id = r.run_id.clone();
    let server_version = r.server_version.clone();
    let mut rig = Rig {
        target,
        snapshotter: None,
        last: None,
        rebuilt: 0,
        cache: SumCache::default(),
        deployer: (history.tool == crate::history::Tool::Runbook)
            .then(|| history.deployer(&set))
            .flatten(),
        history,
        tool,
        ctx: Ctx {
            run_id: &run_id,
            settings: &settings,
            deadline: timeout.map(|t| Instant::now() + t),
            timeout,
            interrupts: r.interrupts.clone(),
            level: r.stop_level,
            server_version: &server_version,
        },
        seed: seed.as_deref(),
        slow: x.slow_threshold.0,
        step: s.id.clone(),
        recoveries: Vec::new(),
        again: Vec::new(),
        to,
    };
    let roles_before = roles::read(rig.db()).await;
    let mut result = rehearse(r, s, x, &set, &mut rig, deadline, timeout).await;
    // Roles are the cluster's: what the migrations did to them outlives
    // the scratch database, and is said.
    let scripts: String = set
        .migrations
        .iter()
        .chain(&set.repeatables)
        .flat_map(|m| {
            let down = match &m.down {
                crate::migrations::Down::Script(d) => Some(d.sql.as_str()),
                _ => None,
            };
            [Some(m.up.sql.as_str()), down]
        })
        .flatten()
        .collect::<Vec<_>>()
        .join("\n")
        .to_lowercase();
    if let (Some(before), Some(after)) = (roles_before, roles::read(rig.db()).await)
        && let Some(warning) = roles::changed(&before, &after, &scripts)
    {
        log(r, &s.id, format!("warning: {warning}"));
        let done = match &mut result {
            Ok(done) => done,
            Err(f) => &mut f.partial,
        };
        if let Some(Value::Array(list)) = done.details.as_mut().and_then(|d| d.get_mut("warnings"))
        {
            list.push(Value::from(warning));
        }
    }
    for password in rig
        .tool
        .as_ref()
        .map(tool::Tool::learnt)
        .unwrap_or_default()
    {
        r.bus.add_secret(&password);
    }
    let Target { db, scratch } = rig.target;
    drop(db);
    if let Some(name) = &scratch {
        drop_scratch(r, name).await;
    }
    result
}

/// Everything a rehearsal loop needs besides the run.
struct Rig<'a> {
    /// The session and, on a scratch database, its name: a recovery
    /// replaces both.
    target: Target,
    cache: SumCache,
    /// The snapshot queries, prepared once per session, and the last
    /// snapshot: each one after it rebuilds only what changed.
    snapshotter: Option<snapshot::Snapshotter>,
    last: Option<snapshot::Tracked>,
    rebuilt: usize,
    history: History,
    /// With runbook's own history, the tool whose format the directory is
    /// in ([`History::deployer`]).
    deployer: Option<crate::history::Tool>,
    /// The tool that runs each leg, when another tool owns the migrations.
    tool: Option<tool::Tool>,
    ctx: Ctx<'a>,
    seed: Option<&'a str>,
    slow: Duration,
    step: String,
    /// Each recovery: which migration it was for, and how long it took.
    recoveries: Vec<Value>,
    /// The versions the deploy runs again ([`crate::history::Again`]).
    again: Vec<String>,
    /// `to:`: the pending migrations through this version are rehearsed.
    to: Option<String>,
}

impl Rig<'_> {
    fn db(&self) -> &Db {
        &self.target.db
    }

    /// Whether a relation is the bookkeeping of the history the legs
    /// record in, which every leg writes: not what a migration did. With
    /// the team's own tool running the legs, its table is not known by
    /// name here, so any tool's history table is. Before, it was any
    /// tool's always: crates.io's `drop_schema_migrations`, whose down
    /// makes a `schema_migrations` table the database never had, read
    /// `ok` in a Diesel history.
    ///
    /// With runbook's own history, the table of the tool whose format the
    /// directory is in is bookkeeping too: a set may make that table in
    /// its migrations (a baseline dumped with it), for the tool that
    /// deploys it elsewhere.
    fn bookkeeping(&self, qname: &str) -> bool {
        if self.tool.is_some() {
            return crate::history::is_tool_table(qname);
        }
        self.history.keeps(qname)
            || self
                .deployer
                .is_some_and(|t| t.keeps(t.default_table(), qname))
    }

    /// The schema now. A script's `DEALLOCATE ALL` (or `DISCARD ALL`,
    /// outside a transaction) drops the session's prepared statements,
    /// the snapshot queries among them: they are prepared again, and the
    /// schema read whole. Before, the rehearsal ended there, with
    /// "prepared statement "s17" does not exist".
    async fn snap(&mut self) -> Result<Arc<Snapshot>, Fail> {
        let failed =
            |e: tokio_postgres::Error| Fail::new(StepStatus::Failed, db::error_info(&e, None));
        let next = match self.read_schema().await? {
            Err(e)
                if e.code()
                    == Some(&tokio_postgres::error::SqlState::INVALID_SQL_STATEMENT_NAME) =>
            {
                self.snapshotter = None;
                self.last = None;
                self.read_schema().await?.map_err(failed)?
            }
            next => next.map_err(failed)?,
        };
        self.rebuilt += next.rebuilt;
        let snap = next.snapshot.clone();
        self.last = Some(next);
        Ok(snap)
    }

    /// One read of the schema, after the last one when there is one,
    /// bounded by the step's deadline and interrupts (the outer error).
    async fn read_schema(
        &mut self,
    ) -> Result<Result<snapshot::Tracked, tokio_postgres::Error>, Fail> {
        let client = &self.target.db.client;
        if self.snapshotter.is_none() {
            match snapshot::Snapshotter::new(client).await {
                Ok(s) => self.snapshotter = Some(s),
                Err(e) => return Ok(Err(e)),
            }
        }
        let snapshotter = self.snapshotter.as_ref().expect("made above");
        let last = self.last.take();
        let read = async {
            Ok(match last {
                Some(prev) => snapshotter.next(client, prev).await,
                None => snapshotter.full(client).await,
            })
        };
        bounded(&self.target.db, &self.ctx, read).await
    }

    async fn sums(
        &mut self,
        tables: &[(String, Vec<String>)],
        now: &Snapshot,
    ) -> Result<BTreeMap<String, Sum>, Fail> {
        // The history's rows change with every leg, by design.
        let tables: Vec<(String, Vec<String>)> = tables
            .iter()
            .filter(|(t, _)| !self.bookkeeping(t))
            .cloned()
            .collect();
        let read = async {
            self.cache
                .get(&self.target.db, &tables, now)
                .await
                .map_err(|e| Fail::new(StepStatus::Failed, e))
        };
        bounded(&self.target.db, &self.ctx, read).await
    }

    /// Run one leg; record its timing; a failure is returned for the caller
    /// to judge. `nested`: inside the rehearsal's own transaction.
    async fn leg(
        &mut self,
        o: &mut Outcome,
        m: &Migration,
        leg: &'static str,
        nested: bool,
    ) -> Result<ScriptRun, ScriptFail> {
        let direction = if leg == "down" {
            Direction::Down
        } else {
            Direction::Up
        };
        let started = Instant::now();
        // A down and a re-up are new runs of the tool, from a new session.
        let res = self.run(m, direction, nested, leg != "up").await;
        let script = match direction {
            Direction::Up => Some(&m.up),
            Direction::Down => m.down_script(),
        };
        if self.tool.is_none() && script.is_some_and(|s| may_drop_statements(&s.sql)) {
            self.snapshotter = None;
        }
        match &res {
            Ok(done) => self.cache.wrote(done.touched.as_deref()),
            // A failed transaction left nothing behind.
            Err(f) if f.in_transaction => {}
            Err(_) => self.cache.wrote(None),
        }
        let ms = super::ms(started.elapsed());
        match &res {
            Ok(done) => {
                // Its pre-migration checks (Atlas's), before the up: that
                // they ran, and held, is part of what the rehearsal shows.
                if let Some((_, took)) = done.checks {
                    o.legs.push(Leg {
                        leg: "checks",
                        duration_ms: super::ms(took),
                        ok: true,
                        transaction: true,
                    });
                }
                o.legs.push(Leg {
                    leg,
                    duration_ms: super::ms(done.duration),
                    ok: true,
                    transaction: done.in_transaction,
                });
                if leg != "reup" && done.duration > self.slow {
                    o.find(
                        Verdict::Slow,
                        format!(
                            "{leg} took {} ms, over the slow threshold of {} ms",
                            super::ms(done.duration),
                            super::ms(self.slow)
                        ),
                    );
                }
            }
            // A pre-migration check that did not hold: the up never ran.
            Err(f) => o.legs.push(Leg {
                leg: if f.before_script { "checks" } else { leg },
                duration_ms: ms,
                ok: false,
                transaction: f.in_transaction,
            }),
        }
        res
    }

    /// One script of `m`, through the tool when there is one.
    async fn run(
        &self,
        m: &Migration,
        direction: Direction,
        nested: bool,
        fresh: bool,
    ) -> Result<ScriptRun, ScriptFail> {
        self.run_on(&self.target.db, &self.history, m, direction, nested, fresh)
            .await
    }

    /// [`Rig::run`] on another database (with its own history).
    async fn run_on(
        &self,
        db: &Db,
        history: &History,
        m: &Migration,
        direction: Direction,
        nested: bool,
        fresh: bool,
    ) -> Result<ScriptRun, ScriptFail> {
        match &self.tool {
            Some(t) => t.run(db, m, direction, &self.ctx).await,
            None => {
                let how = migrate::How {
                    collect_touched: true,
                    nested,
                    fresh,
                    again: self.again.contains(&m.version),
                };
                migrate::run_script(db, history, m, direction, &self.ctx, how).await
            }
        }
    }

    /// `m`'s verify script (sqitch's `verify/`), after an up: its
    /// statements, less its own BEGIN, COMMIT and ROLLBACK, in a
    /// transaction (a savepoint when `nested`) rolled back after, so that
    /// nothing it does stays, as its own ROLLBACK would have it. When it
    /// fails, the migration gets a finding of `verdict`: the up did not
    /// leave what its verify script checks, and `sqitch deploy --verify`
    /// would have failed and reverted it.
    async fn verify(
        &mut self,
        o: &mut Outcome,
        m: &Migration,
        nested: bool,
        verdict: Verdict,
        after: &str,
    ) -> Result<(), Fail> {
        let Some(script) = m.verify.as_ref().filter(|_| self.tool.is_none()) else {
            return Ok(());
        };
        let body: Vec<String> = crate::pg::statements::split(&script.sql)
            .into_iter()
            .filter(|s| !s.transaction_control)
            .map(|s| {
                let t = s.text.trim_end();
                if t.ends_with(';') {
                    t.to_string()
                } else {
                    format!("{t};")
                }
            })
            .collect();
        let (open, close) = if nested {
            (
                "SAVEPOINT runbook_verify",
                "ROLLBACK TO SAVEPOINT runbook_verify",
            )
        } else {
            ("BEGIN", "ROLLBACK")
        };
        let sql = format!("{open};\n{}", body.join("\n"));
        let client = &self.target.db.client;
        let started = Instant::now();
        let ran = bounded(&self.target.db, &self.ctx, async {
            Ok(client.batch_execute(&sql).await)
        })
        .await;
        let closed = client.batch_execute(close).await;
        let ran = ran?;
        // The report says that it ran, and how it went, as for any leg.
        o.legs.push(Leg {
            leg: "verify",
            duration_ms: started.elapsed().as_millis() as u64,
            ok: ran.is_ok(),
            transaction: true,
        });
        if let Err(e) = ran {
            o.find(
                verdict,
                format!(
                    "its verify script ({}) failed {after}: {}",
                    script.file,
                    db::error_info(&e, None).message
                ),
            );
        }
        closed.map_err(|e| Fail::new(StepStatus::Failed, db::error_info(&e, None)))
    }

    /// Create runbook's history table, unless a tool keeps its own.
    async fn ensure_history(&self) -> Result<(), ErrorInfo> {
        if self.tool.is_some() {
            return Ok(());
        }
        self.history.ensure(self.db()).await.map(|_| ())
    }

    async fn seed(&mut self, o: &mut Outcome) -> bool {
        let Some(sql) = self.seed else { return true };
        self.cache.wrote(None);
        if may_drop_statements(sql) {
            self.snapshotter = None;
        }
        match self.target.db.client.batch_execute(sql).await {
            Ok(()) => true,
            Err(e) => {
                o.find(
                    Verdict::UpFailure,
                    format!(
                        "the seed failed after up: {}",
                        db::error_info(&e, None).message
                    ),
                );
                false
            }
        }
    }

    /// Open the transaction a down and re-up run in, to be rolled back.
    async fn begin(&mut self) -> Result<(), Fail> {
        self.target
            .db
            .client
            .batch_execute("BEGIN")
            .await
            .map_err(|e| Fail::new(StepStatus::Failed, db::error_info(&e, None)))
    }

    /// Roll the down and re-up back: the database is again as it was after
    /// the first up, and so is the last snapshot. The tables the legs wrote
    /// are counted again when next asked for.
    async fn rollback_to(
        &mut self,
        after_up: Option<snapshot::Tracked>,
        wrote: Option<Vec<String>>,
    ) {
        self.target.db.rollback().await;
        self.last = after_up;
        self.cache.wrote(wrote.as_deref());
    }
}

/// Whether a script run on the rehearsal's session may drop its prepared
/// statements (`DEALLOCATE ALL`, `DISCARD ALL`): then the snapshot queries
/// are prepared again before the next read. Any mention counts, in a
/// comment too; preparing them again costs one full parse. Within the
/// rolled-back transaction of a down and re-up, a read of a dropped
/// statement would abort it, so this cannot wait for the error.
fn may_drop_statements(sql: &str) -> bool {
    let upper = sql.to_ascii_uppercase();
    upper.contains("DEALLOCATE") || upper.contains("DISCARD")
}

/// Whether a migration's down and up both run in a transaction, so that a
/// rehearsal can run them in one of its own and roll them back.
fn cycles_in_transaction(m: &Migration) -> bool {
    m.down_script().is_some_and(in_transaction) && in_transaction(&m.up)
}

/// Whether a script runs in a transaction.
fn in_transaction(s: &crate::migrations::Script) -> bool {
    let stmts = crate::pg::statements::split(&s.sql);
    crate::migrations::script_mode(s, &stmts).0
}

/// What became of a script that did not succeed, `what` naming it (`up`):
/// it failed, or, stopped by a pre-migration check, did not run.
fn did_not_succeed(what: &str, f: &ScriptFail) -> String {
    let verb = if f.before_script {
        "did not run"
    } else {
        "failed"
    };
    format!("{what} {verb}: {}", script_error(f))
}

fn script_error(f: &ScriptFail) -> String {
    let mut m = f.error.message.clone();
    if let Some(l) = &f.error.location {
        let _ = write!(m, " (at {l})");
    }
    m
}

/// Whether a schema difference is in a history table (`history` says which
/// relations are): the table itself, its constraints, indexes and owned
/// sequences.
fn history_change(c: &snapshot::Change, history: impl Fn(&str) -> bool) -> bool {
    let Some((kind, name)) = snapshot::kind_and_name(&c.object) else {
        return false;
    };
    let def = c.after.as_ref().or(c.before.as_ref());
    let relation = match kind {
        "table" => Some(name.to_string()),
        // `schema.table.constraint`
        "constraint" => name.rsplit_once('.').map(|(t, _)| t.to_string()),
        "index" => def
            .and_then(|d| d["definition"].as_str())
            .and_then(|d| d.split_once(" ON ").map(|(_, rest)| rest.to_string()))
            .map(|rest| {
                let rest = rest.trim_start_matches("ONLY ");
                rest.split(' ').next().unwrap_or_default().to_string()
            }),
        "sequence" => def
            .and_then(|d| d["owned_by"].as_str())
            .and_then(|o| o.rsplit_once('.').map(|(t, _)| t.to_string())),
        _ => None,
    };
    relation.is_some_and(|r| history(&r)) || history(name)
}

/// Parity of `after` with `want`: a finding when they differ. Changes to
/// the history the legs record in do not count ([`Rig::bookkeeping`]).
/// Returns whether they differ in more than the order of a table's columns.
fn parity(
    rig: &Rig<'_>,
    o: &mut Outcome,
    want: &Snapshot,
    after: &Snapshot,
    verdict: Verdict,
    what: &str,
) -> bool {
    let changes: Vec<snapshot::Change> = snapshot::compare(want, after)
        .into_iter()
        .filter(|c| !history_change(c, |t| rig.bookkeeping(t)))
        .collect();
    if changes.is_empty() {
        return false;
    }
    // What does not change what the schema does: the order of a table's
    // columns, and the layout of a function's body.
    let benign = |c: &snapshot::Change| c.change == "column_order" || c.change == "body_layout";
    let only_order = changes.iter().all(|c| c.change == "column_order");
    let only_layout = !only_order && changes.iter().all(benign);
    // The same SQL made at two moments: definitions that froze the time
    // they were made differ in that alone.
    let only_times = !only_order
        && !only_layout
        && changes
            .iter()
            .all(|c| benign(c) || snapshot::only_times_differ(c));
    let (v, message) = if only_order {
        (
            Verdict::ColumnOrder,
            format!("{what}: {}", super::snapshot::summary(&changes)),
        )
    } else if only_layout {
        (
            Verdict::BodyLayout,
            format!(
                "{what}, only in the layout of function bodies (whitespace and comments, which PL/pgSQL and SQL ignore) or the order of columns: {}",
                super::snapshot::summary(&changes)
            ),
        )
    } else if only_times {
        (
            Verdict::Nondeterministic,
            format!(
                "{what}, only in the times their definitions froze when they were made: {}. \
                 A view or default over 'now'::timestamp or 'today'::date is evaluated once, when \
                 it is created, not when it is read: it holds that moment, and each deploy another",
                super::snapshot::summary(&changes)
            ),
        )
    } else {
        (
            verdict,
            format!("{what}: {}", super::snapshot::summary(&changes)),
        )
    };
    let f = o.find(v, message);
    f.changes = Some(super::snapshot::changes_json(&changes));
    !only_order && !only_layout && !only_times
}

/// By table, the columns that `after` shows dropped and added again since
/// `before`: named where a table's rows changed (see `checksums::lost`).
fn re_added(before: &Snapshot, after: &Snapshot) -> BTreeMap<String, Vec<String>> {
    snapshot::re_added_columns(&snapshot::compare(before, after))
}

/// A changeset the deploy runs again, and why.
type Reran<'s> = (&'s Migration, crate::history::Again);

/// What a rehearsal needs to start over on a fresh scratch database.
struct Again<'x> {
    s: &'x PlanStep,
    x: &'x PlanRehearse,
    deadline: Option<tokio::time::Instant>,
    timeout: Option<Duration>,
}

async fn rehearse(
    r: &mut Run<'_>,
    s: &PlanStep,
    x: &PlanRehearse,
    set: &Set,
    rig: &mut Rig<'_>,
    deadline: Option<tokio::time::Instant>,
    timeout: Option<Duration>,
) -> Attempt {
    // Flyway's repeatable migrations due on this database: each runs after
    // the versioned ones, then again. Refused, if they are, before the
    // history table is made.
    // A `to` short of the newest, as the deploy's, leaves them out.
    let short = rig.to.is_some();
    let repeat: Vec<&Migration> = migrate::repeatables(rig.db(), set, &rig.history, short)
        .await
        .map_err(|f| Fail {
            error: ErrorInfo {
                class: ErrorKind::Rehearse,
                ..f.error.clone()
            },
            ..f
        })?
        .into_iter()
        .filter(|(_, _, runs)| *runs)
        .map(|(m, _, _)| m)
        .collect();
    let pending = pending(rig, set).await?;
    rig.again = pending
        .again
        .iter()
        .map(|(m, _)| m.version.clone())
        .collect();
    if let (RehearseMode::WholeSet, Some((m, why))) = (x.mode, pending.again.first()) {
        return Err(failed(
            format!(
                "{} {} runs again ({}): `mode: whole_set` rolls the set back, and its rollback undoes the changeset, not the change to its text (the text it replaced is not kept), so the set's parity could not be judged",
                m.version,
                m.name,
                why.why()
            ),
            "rehearse it with `mode: per_migration`, which runs it twice and never rolls it back, as the deploy does",
        ));
    }
    let again = Again {
        s,
        x,
        deadline,
        timeout,
    };
    let started = Instant::now();
    let mut outcomes: Vec<Outcome> = pending
        .run
        .iter()
        .chain(&repeat)
        .map(|m| Outcome::new(m))
        .collect();
    // What the tool deploying these files would fail is a verdict of its
    // migration, and so not a set warning as well.
    let mut as_verdicts: Vec<String> = Vec::new();
    for f in &rig.history.tool_fails {
        let of = outcomes
            .iter_mut()
            .find(|o| o.version == f.version && o.name == f.name);
        if let Some(o) = of {
            as_verdicts.push(f.to_string());
            o.find(Verdict::ToolFailure, f.to_string()).leg = Some(f.leg);
        }
    }
    // Older than the newest applied on this database: what a migrate step
    // would make of them there.
    let late = (!pending.early.is_empty()).then(|| {
        let list: Vec<String> = pending
            .early
            .iter()
            .map(|m| crate::migrations::labeled(&m.version, &m.name))
            .collect();
        format!(
            "{} pending migration(s) are older than the newest applied on this database: {}; {}",
            list.len(),
            list.join(", "),
            rig.history.tool.out_of_order_fate(set)
        )
    });
    // Started as the deploy starts: from Flyway's baseline.
    let baselined = pending.baselined.as_ref().map(|b| {
        format!(
            "schema {} already held objects, and there was no Flyway history: the rehearsal starts, as the deploy does, from a baseline at version {} (Flyway's baselineOnMigrate, {}); migrations up to it are taken as applied, and not rehearsed",
            b.schemas.join(", "),
            b.version,
            b.at
        )
    });
    if let Some(note) = &baselined {
        log(r, &s.id, note.clone());
    }
    let warnings: Vec<&String> = set
        .warnings
        .iter()
        .filter(|w| !as_verdicts.contains(w))
        .chain(&late)
        .chain(&baselined)
        .collect();
    let mut whole = Outcome {
        version: "*".into(),
        name: "the whole set".into(),
        verdict: Verdict::Ok,
        findings: Vec::new(),
        legs: Vec::new(),
        forward_only: false,
        settled: false,
    };
    let judged = judge(
        r,
        (s, x, set),
        rig,
        &again,
        (&pending.run, &repeat, &pending.again),
        &mut outcomes,
        &mut whole,
    )
    .await;
    // Ended early: what was judged is kept, and the rest says why it was
    // not, so that the report of an interrupted rehearsal still has its
    // table, and no migration in it reads as passed.
    let (stopped, ended) = match judged {
        Ok(stopped) => (stopped, None),
        Err(f) => {
            let why = &f.error.message;
            for o in outcomes.iter_mut().filter(|o| !o.settled) {
                let when = if o.legs.is_empty() {
                    "before"
                } else {
                    "during"
                };
                o.not_rehearsed(&format!("the rehearsal ended {when} it: {why}"));
            }
            if x.mode == RehearseMode::WholeSet && whole.findings.is_empty() {
                whole.not_rehearsed(&format!(
                    "the rehearsal ended before the set was judged: {why}"
                ));
            }
            (Some(why.clone()), Some(f))
        }
    };
    for o in &mut outcomes {
        o.earned();
    }
    let took = started.elapsed();
    let csv_path = write_timings(r, s, &outcomes);
    let mut all: Vec<&Outcome> = outcomes.iter().collect();
    if !whole.findings.is_empty() {
        all.push(&whole);
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for o in &outcomes {
        *counts.entry(o.verdict.name()).or_default() += 1;
    }
    let errors: Vec<&Outcome> = all
        .iter()
        .copied()
        .filter(|o| o.findings.iter().any(|f| x.errors.contains(&f.verdict)))
        .collect();
    // The counts are of migrations; the set's own verdict (its worst
    // finding) is beside them, so that "346 ok" is never all there is to
    // read when the set as a whole failed.
    let set_verdict = (!whole.findings.is_empty()).then(|| whole.verdict.name());
    let rehearsed = outcomes
        .iter()
        .filter(|o| o.verdict != Verdict::NotRehearsed)
        .count();
    let details = json!({
        "mode": x.mode,
        "format": set.format.name(),
        // What the step names: the directory, or Liquibase's master in it.
        "dir": set.liquibase_master.as_ref().unwrap_or(&set.dir).display().to_string(),
        "database": rig.db().config().config.get_dbname().unwrap_or_default(),
        "scratch": x.scratch.is_some(),
        "migrations": outcomes,
        "set_findings": whole.findings,
        "set_verdict": set_verdict,
        "verdicts": counts,
        "errors": x.errors,
        "stopped": stopped,
        "coverage": { "rehearsed": rehearsed, "total": outcomes.len() },
        "recoveries": rig.recoveries,
        "duration_ms": super::ms(took),
        "table_checksums": {
            "computed": rig.cache.counted,
            "reused": rig.cache.reused,
            "foreign_not_read": rig.cache.foreign,
        },
        "schema_objects_rebuilt": rig.rebuilt,
        "timings_csv": csv_path.as_ref().map(|p| p.display().to_string()),
        "warnings": warnings,
    });
    let mut done = Done {
        details: Some(details),
        ..Done::default()
    };
    done.output
        .insert("migrations".into(), Value::from(outcomes.len()));
    done.output
        .insert("rehearsed".into(), Value::from(rehearsed));
    done.output.insert("verdicts".into(), json!(counts));
    done.output.insert("set_verdict".into(), json!(set_verdict));
    done.output
        .insert("failed".into(), Value::from(errors.len()));
    if outcomes.is_empty() {
        log(
            r,
            &s.id,
            "nothing to rehearse: no migration is pending".into(),
        );
    }
    if let Some(mut f) = ended {
        f.partial = done;
        return Err(f);
    }
    if errors.is_empty() && stopped.is_none() {
        return Ok(done);
    }
    let message = failure_message(&errors, stopped.as_deref());
    let mut f = failed(
        message,
        "report.md has a table of every migration's verdict, with the schema differences and the tables whose data changed",
    );
    f.partial = done;
    // A verdict in `errors` is a judgement; a rehearsal that stopped short
    // of any (its connection lost, say) judged nothing.
    f.judged = !errors.is_empty();
    Err(f)
}

/// The legs and their evidence: the versioned migrations in `x.mode`, then
/// Flyway's repeatables. Each outcome is settled as it is judged. Returns
/// why the rehearsal stopped early, if it did.
async fn judge(
    r: &mut Run<'_>,
    (s, x, set): (&PlanStep, &PlanRehearse, &Set),
    rig: &mut Rig<'_>,
    again: &Again<'_>,
    (run, repeat, reran): (&[&Migration], &[&Migration], &[Reran<'_>]),
    outcomes: &mut [Outcome],
    whole: &mut Outcome,
) -> Result<Option<String>, Fail> {
    forward_only_set(r, s, x, set, run, rig, whole).await?;
    let (versioned, repeatables) = outcomes.split_at_mut(run.len());
    let stopped = match x.mode {
        RehearseMode::PerMigration => per_migration(r, rig, again, (run, reran), versioned).await?,
        RehearseMode::WholeSet => whole_set(r, rig, x.missing_downs, run, versioned, whole).await?,
    };
    match stopped {
        Some(why) => {
            for o in repeatables {
                o.not_rehearsed(&why);
            }
            Ok(Some(why))
        }
        None => repeated(r, rig, repeat, repeatables).await,
    }
}

/// What the rehearsal runs: the migrations not yet applied on the scratch
/// database. Refused while its history has a dirty row, or an applied
/// migration's file changed since. Where Flyway's history is not there
/// yet and a schema it manages holds objects, refused as the deploy
/// would be, or started from the baseline the deploy records
/// ([`History::flyway_start`]).
async fn pending<'s>(rig: &mut Rig<'_>, set: &'s Set) -> Result<migrate::Pending<'s>, Fail> {
    let start = match rig.tool {
        Some(_) => crate::history::FlywayStart::AsUsual,
        None => rig
            .history
            .flyway_start(rig.db(), set)
            .await
            .map_err(|e| Fail::new(StepStatus::Failed, e))?,
    };
    let baselined = match start {
        crate::history::FlywayStart::AsUsual => None,
        crate::history::FlywayStart::Refused(message, hint) => {
            return Err(failed(
                format!("{message}; the deploy would be refused too"),
                hint,
            ));
        }
        crate::history::FlywayStart::Baseline(b) => Some(b),
    };
    rig.ensure_history()
        .await
        .map_err(|e| Fail::new(StepStatus::Failed, e))?;
    if let Some(b) = &baselined {
        rig.history
            .baseline_on_migrate(rig.db(), &b.version, b.description.as_deref())
            .await
            .map_err(|e| Fail::new(StepStatus::Failed, e))?;
    }
    let applied = rig
        .history
        .read(rig.db(), set)
        .await
        .map_err(|e| Fail::new(StepStatus::Failed, e))?;
    if let Some(d) = applied.iter().find(|a| a.dirty) {
        let (message, hint) = rig.history.dirty_message(d);
        return Err(failed(message, &hint));
    }
    let mut pending = migrate::select(
        set,
        &applied,
        &rig.history,
        Direction::Up,
        rig.to.as_deref(),
        None,
    );
    pending.baselined = baselined;
    // A team's own tool may run the application's migrations in code.
    if let Some((message, hint)) =
        migrate::code_passed_over(set, &pending, Direction::Up, true).filter(|_| rig.tool.is_none())
    {
        return Err(failed(
            format!(
                "{message}; the deploy would be refused too, and a rehearsal without it is not the deploy's"
            ),
            &hint,
        ));
    }
    // A tool judges its own files; runbook has no checksum of them.
    if let Some((v, f, was, now)) = pending.changed.first().filter(|_| rig.tool.is_none()) {
        let kind = rig.history.tool.checksum_kind().unwrap_or("checksum");
        return Err(failed(
            format!("{f} (version {v}) changed after it was applied: {kind} {was} then, {now} now"),
            "an applied migration must not be edited: restore the file, or add a new migration",
        ));
    }
    Ok(pending)
}

/// What a forward-only set's rehearsal says once for the set: that
/// reversibility cannot be tested, and, on a scratch copy, whether the
/// schema drifted from its applied migrations.
async fn forward_only_set(
    r: &mut Run<'_>,
    s: &PlanStep,
    x: &PlanRehearse,
    set: &Set,
    pending: &[&Migration],
    rig: &mut Rig<'_>,
    whole: &mut Outcome,
) -> Result<(), Fail> {
    if !pending.is_empty() && pending.iter().all(|m| m.forward_only()) {
        let what = match (set.forward_only_because, set.format) {
            (Some(why), _) => format!("{why}, so its migrations are forward-only"),
            (None, crate::migrations::Format::Tool) => {
                "the tool has no `down` command, so its migrations are forward-only".to_string()
            }
            (None, f) => format!("the {} format is forward-only", f.name()),
        };
        whole.find(
            Verdict::ForwardOnly,
            format!(
                "{what}: reversibility cannot be tested. What was rehearsed: every up applies in order on a copy, each with its timing and the data it changed"
            ),
        );
    }
    if x.scratch.is_some() && set.migrations.iter().all(|m| m.forward_only()) {
        let applied: Vec<&Migration> = set
            .migrations
            .iter()
            .filter(|m| !pending.iter().any(|p| p.version == m.version))
            .collect();
        drift::check(r, s, rig, set, &applied, whole).await?;
    }
    Ok(())
}

/// The step's error: the migrations that failed (the first 20 named), and
/// why the rehearsal stopped early, if it did.
fn failure_message(errors: &[&Outcome], stopped: Option<&str>) -> String {
    let (set, errors): (Vec<&Outcome>, Vec<&Outcome>) =
        errors.iter().partition(|o| o.version == "*");
    let message = migrations_message(&errors, stopped);
    match set.first() {
        Some(o) if errors.is_empty() && stopped.is_none() => {
            format!("the whole set failed the rehearsal ({})", o.verdict.name())
        }
        Some(o) => format!("{message}; the whole set: {}", o.verdict.name()),
        None => message,
    }
}

fn migrations_message(errors: &[&Outcome], stopped: Option<&str>) -> String {
    let list: Vec<String> = errors
        .iter()
        .map(|o| {
            format!(
                "{} ({})",
                crate::migrations::titled(&o.version, &o.name),
                o.verdict.name()
            )
        })
        .collect();
    let shown = list.iter().take(20).cloned().collect::<Vec<_>>().join(", ");
    let more = if list.len() > 20 {
        format!(" and {} more", list.len() - 20)
    } else {
        String::new()
    };
    match (stopped, list.is_empty()) {
        (Some(why), true) => format!("the rehearsal stopped early: {why}"),
        (Some(why), false) => format!(
            "{} migration(s) failed the rehearsal: {shown}{more}; then it stopped early: {why}",
            list.len(),
        ),
        (None, _) => format!(
            "{} migration(s) failed the rehearsal: {shown}{more}",
            list.len(),
        ),
    }
}

/// The timings CSV beside the report, when there is a report directory.
fn write_timings(
    r: &mut Run<'_>,
    s: &PlanStep,
    outcomes: &[Outcome],
) -> Option<std::path::PathBuf> {
    let mut csv = String::from("migration,direction,duration_seconds\n");
    for o in outcomes {
        for l in &o.legs {
            let _ = writeln!(
                csv,
                "{}_{},{},{:.3}",
                crate::migrations::shown_version(&o.version),
                o.name.replace(',', "_"),
                l.leg,
                l.duration_ms as f64 / 1000.0
            );
        }
    }
    let p = r.report_dir.as_ref()?.join("migration-timings.csv");
    if let Err(e) = crate::fsutil::write_atomic(&p, csv.as_bytes()) {
        log(
            r,
            &s.id,
            format!("warning: cannot write {}: {e}", p.display()),
        );
    }
    Some(p)
}

/// How a migration's down and re-up left the database.
enum Cycle {
    /// As after its first up: the rehearsal goes on from here.
    AtAfterUp,
    /// Somewhere else (why): the state after the first up must be rebuilt.
    Elsewhere(String),
}

/// Each migration: up, down, up again. Every migration gets a verdict:
/// after a down or re-up failure the database is brought back to the state
/// after that migration's first up (a rolled-back transaction, or a fresh
/// scratch database with the ups replayed), and the rehearsal goes on. Only
/// an up that fails stops it: the later migrations are `not_rehearsed`.
/// Returns why it stopped early, if it did.
async fn per_migration(
    r: &mut Run<'_>,
    rig: &mut Rig<'_>,
    again: &Again<'_>,
    (run, reran): (&[&Migration], &[Reran<'_>]),
    outcomes: &mut [Outcome],
) -> Result<Option<String>, Fail> {
    let total = run.len();
    let mut before = rig.snap().await?;
    let mut stopped: Option<String> = None;
    for (i, m) in run.iter().enumerate() {
        let o = &mut outcomes[i];
        if let Some(why) = &stopped {
            o.not_rehearsed(why);
            continue;
        }
        // Run again as Liquibase runs it: its rollback undoes the
        // changeset, not the change to its text, so there is no down to
        // rehearse, and the deploy's undo leaves it.
        if let Some((_, why)) = reran.iter().find(|(x, _)| x.version == m.version) {
            o.find(
                Verdict::ForwardOnly,
                format!(
                    "run again, as Liquibase runs it ({}): applied, then applied again; not rolled back, since its rollback undoes the changeset and the text it replaced is not kept",
                    why.why()
                ),
            );
            let what = format!("{} {} (run again)", m.version, m.name);
            stopped = run_twice(r, rig, m, o, &what, (i, total)).await?;
            before = rig.snap().await?;
            continue;
        }
        let tables = before.tables();
        let d0 = rig.sums(&tables, &before).await?;
        // 1. up
        if let Err(f) = rig.leg(o, m, "up", false).await {
            up_failed(r, rig, (i, total), o, &f)?;
            stopped = Some(format!(
                "{} {}'s up failed, and every later migration starts from the state after it",
                m.version, m.name
            ));
            continue;
        }
        rig.verify(o, m, false, Verdict::UpFailure, "after the up")
            .await?;
        if !rig.seed(o).await {
            say(r, rig, i, total, o);
            stopped = Some(format!(
                "the seed failed after {} {}'s up",
                m.version, m.name
            ));
            continue;
        }
        let after_up = rig.snap().await?;
        let after_up_tracked = rig.last.clone();
        let d1 = rig.sums(&tables, &after_up).await?;
        // 2. and 3.: down, up again.
        if m.forward_only() {
            // Said once for the set (see `rehearse`), not per migration.
            o.verdict = o.verdict.min(Verdict::ForwardOnly);
            // What no down can bring back: rows that existed before it.
            checksums::destroyed(o, &d0, &d1, &re_added(&before, &after_up));
        } else if m.down_script().is_none() {
            o.find(
                Verdict::Irreversible,
                format!("no down: {}", m.down_missing().unwrap_or_default()),
            );
        } else if cycles_in_transaction(m) {
            rig.begin().await?;
            let cycle = down_and_up(rig, o, m, &before, &after_up, &d0, &d1, &tables, true).await;
            let wrote = match &cycle {
                Ok((_, w)) => w.clone(),
                Err(_) => None,
            };
            rig.rollback_to(after_up_tracked, wrote).await;
            cycle?;
        } else {
            let (cycle, _) =
                down_and_up(rig, o, m, &before, &after_up, &d0, &d1, &tables, false).await?;
            if let Cycle::Elsewhere(why) = cycle
                && let Err(e) = recover(r, rig, again, &run[..=i], &after_up, &why).await
            {
                stopped = Some(e);
            }
        }
        say(r, rig, i, total, o);
        before = after_up;
    }
    Ok(stopped)
}

/// Flyway's repeatable migrations, after every versioned one, in order:
/// each applied, then applied again, as Flyway does whenever its file
/// changes. The second run must succeed and leave the schema and the rows
/// as the first left them (`reup_failure` if not); it runs in a
/// transaction that is rolled back, where the script runs in one. A
/// repeatable has no down: its verdict is at best `forward_only`, and rows
/// its first run changed are `destroys_data`. Returns why the rehearsal
/// stopped early, if it did.
async fn repeated(
    r: &mut Run<'_>,
    rig: &mut Rig<'_>,
    run: &[&Migration],
    outcomes: &mut [Outcome],
) -> Result<Option<String>, Fail> {
    let total = run.len();
    let mut stopped: Option<String> = None;
    for (i, m) in run.iter().enumerate() {
        let o = &mut outcomes[i];
        if let Some(why) = &stopped {
            o.not_rehearsed(why);
            continue;
        }
        let what = format!("repeatable {}", m.up.file);
        stopped = run_twice(r, rig, m, o, &what, (i, total)).await?;
    }
    Ok(stopped)
}

/// One migration that has no down to rehearse, run as a deploy runs it
/// (a Flyway repeatable, a Liquibase changeset run again): applied, then
/// applied again in a transaction rolled back, which must succeed and
/// leave the schema and the rows as the first run left them. Its verdict
/// is at best `forward_only`; rows its first run changed are
/// `destroys_data`. Returns why the rehearsal stops, if it does.
async fn run_twice(
    r: &mut Run<'_>,
    rig: &mut Rig<'_>,
    m: &Migration,
    o: &mut Outcome,
    what: &str,
    (i, total): (usize, usize),
) -> Result<Option<String>, Fail> {
    o.verdict = o.verdict.min(Verdict::ForwardOnly);
    let before = rig.snap().await?;
    let tables = before.tables();
    let d0 = rig.sums(&tables, &before).await?;
    if let Err(f) = rig.leg(o, m, "up", false).await {
        up_failed(r, rig, (i, total), o, &f)?;
        return Ok(Some(format!("{what}'s first run failed")));
    }
    let after = rig.snap().await?;
    let after_tracked = rig.last.clone();
    checksums::destroyed(
        o,
        &d0,
        &rig.sums(&tables, &after).await?,
        &re_added(&before, &after),
    );
    let tables = after.tables();
    let d1 = rig.sums(&tables, &after).await?;
    let nested = in_transaction(&m.up);
    if nested {
        rig.begin().await?;
    }
    let wrote = match rig.leg(o, m, "reup", nested).await {
        Ok(done) => {
            let again = rig.snap().await?;
            let d2 = rig.sums(&tables, &again).await?;
            parity(
                rig,
                o,
                &after,
                &again,
                Verdict::ReupFailure,
                "applied again, the schema differs from after its first run",
            );
            checksums::changed_again(o, &d1, &d2);
            done.touched
        }
        Err(f) => {
            if nested {
                rig.rollback_to(after_tracked, None).await;
            }
            cancelled(&f)?;
            o.find(
                Verdict::ReupFailure,
                format!("applied again, it failed: {}", script_error(&f)),
            );
            say(r, rig, i, total, o);
            return Ok((!nested && f.done > 0).then(|| {
                format!("{what} failed half-way outside a transaction when applied again")
            }));
        }
    };
    if nested {
        rig.rollback_to(after_tracked, wrote).await;
    }
    say(r, rig, i, total, o);
    Ok(None)
}

/// An up that failed: its finding, said; an error when it was cancelled
/// rather than failed, which ends the rehearsal.
fn up_failed(
    r: &mut Run<'_>,
    rig: &Rig<'_>,
    (i, total): (usize, usize),
    o: &mut Outcome,
    f: &ScriptFail,
) -> Result<(), Fail> {
    cancelled(f)?;
    o.find(Verdict::UpFailure, did_not_succeed("up", f));
    say(r, rig, i, total, o);
    Ok(())
}

/// A migration's down, then its up again, with parity and data checks.
/// Returns where that left the database, and the tables the legs wrote
/// (when known).
#[expect(
    clippy::too_many_arguments,
    reason = "the states a cycle is judged against"
)]
async fn down_and_up(
    rig: &mut Rig<'_>,
    o: &mut Outcome,
    m: &Migration,
    before: &Snapshot,
    after_up: &Snapshot,
    d0: &BTreeMap<String, Sum>,
    d1: &BTreeMap<String, Sum>,
    tables: &[(String, Vec<String>)],
    nested: bool,
) -> Result<(Cycle, Option<Vec<String>>), Fail> {
    let mut wrote: Vec<String> = Vec::new();
    let mut known = true;
    let mut note = |run: &ScriptRun| match &run.touched {
        Some(t) => wrote.extend(t.iter().cloned()),
        None => known = false,
    };
    match rig.leg(o, m, "down", nested).await {
        Ok(done) => note(&done),
        Err(f) => {
            cancelled(&f)?;
            o.find(
                Verdict::Irreversible,
                format!("down failed: {}", script_error(&f)),
            );
            if f.in_transaction || f.done == 0 {
                return Ok((Cycle::AtAfterUp, Some(wrote)));
            }
            return Ok((
                Cycle::Elsewhere(format!(
                    "its down failed half-way outside a transaction ({} statement(s) committed)",
                    f.done
                )),
                None,
            ));
        }
    }
    let after_down = rig.snap().await?;
    let d2 = rig.sums(tables, &after_down).await?;
    // A down of only comments runs where its format runs it (popx's
    // generated stubs), and undoes nothing: the finding says why.
    let what = match m.down_script().filter(|d| d.is_blank()) {
        Some(d) => format!(
            "after down ({} holds only comments: it ran and undid nothing), the schema is not what it was before up",
            d.file
        ),
        None => "after down, the schema is not what it was before up".to_string(),
    };
    let down_kept_schema = !parity(rig, o, before, &after_down, Verdict::ParityMismatch, &what);
    let lossy_down = data(o, d0, &d2, &re_added(before, &after_down), "the down");
    checksums::kept_rows(o, d0, &d2, "the down");
    match rig.leg(o, m, "reup", nested).await {
        Ok(done) => note(&done),
        Err(f) => {
            cancelled(&f)?;
            o.find(Verdict::ReupFailure, did_not_succeed("up after down", &f));
            return Ok((
                Cycle::Elsewhere("it could not be applied again after its down".into()),
                None,
            ));
        }
    }
    rig.verify(o, m, nested, Verdict::ReupFailure, "after the up again")
        .await?;
    let after_reup = rig.snap().await?;
    let d3 = rig.sums(tables, &after_reup).await?;
    let n = o.findings.len();
    parity(
        rig,
        o,
        after_up,
        &after_reup,
        Verdict::ReupFailure,
        "after up, down and up again, the schema differs from after the first up",
    );
    let reup_differs = o.findings.len() > n;
    if !lossy_down {
        // After a lossy down the re-up cannot bring the data back; that
        // loss is already the finding.
        let down = checksums::Down::of(down_kept_schema, d0, &d2);
        checksums::written_again(o, d1, &d3, "up again", down);
    }
    let wrote = known.then_some(wrote);
    if reup_differs {
        return Ok((
            Cycle::Elsewhere("its re-up left a different schema than its first up".into()),
            wrote,
        ));
    }
    if !nested && !rig.seed(o).await {
        return Ok((
            Cycle::Elsewhere("the seed failed after its re-up".into()),
            wrote,
        ));
    }
    Ok((Cycle::AtAfterUp, wrote))
}

/// Bring a scratch database back to the state after the last of `ups`: a
/// fresh scratch database, every up replayed (with the seed), then checked
/// against `want`. Without a scratch database the run's own database cannot
/// be rebuilt: the reason the rehearsal stops is returned.
async fn recover(
    r: &mut Run<'_>,
    rig: &mut Rig<'_>,
    again: &Again<'_>,
    ups: &[&Migration],
    want: &Snapshot,
    why: &str,
) -> Result<(), String> {
    let last = ups.last().expect("recover is called for a migration");
    let what = format!("{} {}", last.version, last.name);
    if rig.target.scratch.is_none() {
        return Err(format!(
            "{what}: {why}, and the run's own database cannot be rebuilt to go on; rehearse on a scratch database (`scratch: true`) to let the rehearsal recover"
        ));
    }
    let started = Instant::now();
    log(
        r,
        &rig.step,
        format!("{what}: {why}; rebuilding the state after its up on a fresh scratch database"),
    );
    let fresh = open_target(r, again.s, again.x, again.deadline, again.timeout)
        .await
        .map_err(|f| {
            format!(
                "{what}: {why}, and a fresh scratch database could not be made: {}",
                f.error.message
            )
        })?;
    let old = std::mem::replace(&mut rig.target, fresh);
    drop(old.db);
    if let Some(name) = &old.scratch {
        drop_scratch(r, name).await;
    }
    rig.snapshotter = None;
    rig.last = None;
    rig.cache.forget();
    let fail = |e: String| format!("{what}: {why}, and replaying the ups failed: {e}");
    rig.ensure_history().await.map_err(|e| fail(e.message))?;
    let mut scratch_outcome = Outcome::new(last);
    for m in ups {
        rig.run(m, Direction::Up, false, false)
            .await
            .map_err(|f| fail(format!("{} {}: {}", m.version, m.name, script_error(&f))))?;
        if !rig.seed(&mut scratch_outcome).await {
            return Err(fail("the seed failed".into()));
        }
    }
    let now = rig.snap().await.map_err(|f| fail(f.error.message))?;
    if now.hash != want.hash {
        return Err(format!(
            "{what}: {why}, and replaying the ups did not give the schema after its up back"
        ));
    }
    let ms = super::ms(started.elapsed());
    rig.recoveries.push(json!({
        "after": what,
        "why": why,
        "replayed": ups.len(),
        "duration_ms": ms,
    }));
    log(
        r,
        &rig.step,
        format!("recovered in {ms} ms: {} up(s) replayed", ups.len()),
    );
    Ok(())
}

/// Every up, every down in reverse, every up again. A migration whose legs
/// did not run gets `not_rehearsed`, with the reason.
async fn whole_set(
    r: &mut Run<'_>,
    rig: &mut Rig<'_>,
    missing_downs: MissingDowns,
    run: &[&Migration],
    outcomes: &mut [Outcome],
    whole: &mut Outcome,
) -> Result<Option<String>, Fail> {
    let total = run.len();
    let before = rig.snap().await?;
    let tables = before.tables();
    let d0 = rig.sums(&tables, &before).await?;
    if let Some(why) = all_ups(r, rig, run, outcomes).await? {
        return Ok(Some(why));
    }
    if run.iter().all(|m| m.forward_only()) {
        // Nothing to go down with: the ups are the rehearsal.
        for (i, o) in outcomes.iter_mut().enumerate() {
            o.verdict = o.verdict.min(Verdict::ForwardOnly);
            say(r, rig, i, total, o);
        }
        return Ok(None);
    }
    let after_up = rig.snap().await?;
    let d1 = rig.sums(&tables, &after_up).await?;
    let downs = match all_downs(rig, missing_downs, run, outcomes, whole).await? {
        Ok(downs) => downs,
        Err(why) => return Ok(Some(why)),
    };
    let after_down = rig.snap().await?;
    let d2 = rig.sums(&tables, &after_down).await?;
    // The state after the downs is the state before the ups only when
    // every down ran: otherwise what the others' ups did is still there,
    // and is neither a parity difference nor data the downs lost.
    // `None` after a lossy down: that loss is the finding.
    let mut down = Some(checksums::Down::NotJudged);
    if downs.reup.len() == total {
        let kept_schema = !parity(
            rig,
            whole,
            &before,
            &after_down,
            Verdict::ParityMismatch,
            "after every down, objects are left over or missing",
        );
        let lossy = data(
            whole,
            &d0,
            &d2,
            &re_added(&before, &after_down),
            "the downs",
        );
        checksums::kept_rows(whole, &d0, &d2, "the downs");
        down = (!lossy).then(|| checksums::Down::of(kept_schema, &d0, &d2));
    } else if downs.skipped > 0 && downs.stop.is_none() {
        // Not judged is not passed: the set's verdict says why.
        whole.find(
            Verdict::Irreversible,
            format!(
                "whole-set parity not judged: {} migration(s) had no down and were skipped (missing_downs: skip), so their objects stay",
                downs.skipped
            ),
        );
    }
    if let Some(why) = all_reups(rig, run, &downs.reup, outcomes).await? {
        return Ok(Some(why));
    }
    let after_reup = rig.snap().await?;
    let d3 = rig.sums(&tables, &after_reup).await?;
    if downs.skipped == 0 {
        parity(
            rig,
            whole,
            &after_up,
            &after_reup,
            Verdict::ReupFailure,
            "after every up again, the schema differs from after the first ups",
        );
        if let Some(down) = down {
            checksums::written_again(whole, &d1, &d3, "the ups again", down);
        }
    }
    for (i, o) in outcomes.iter_mut().enumerate() {
        say(r, rig, i, total, o);
    }
    Ok(None)
}

/// The whole set's first leg: every up in order, each followed by the
/// seed. Returns why it stopped, if it did.
async fn all_ups(
    r: &mut Run<'_>,
    rig: &mut Rig<'_>,
    run: &[&Migration],
    outcomes: &mut [Outcome],
) -> Result<Option<String>, Fail> {
    for (i, m) in run.iter().enumerate() {
        let why = match rig.leg(&mut outcomes[i], m, "up", false).await {
            Err(f) => {
                cancelled(&f)?;
                outcomes[i].find(Verdict::UpFailure, did_not_succeed("up", &f));
                format!(
                    "{} {}'s up failed, so the set was not rolled back",
                    m.version, m.name
                )
            }
            Ok(_) => {
                rig.verify(
                    &mut outcomes[i],
                    m,
                    false,
                    Verdict::UpFailure,
                    "after the up",
                )
                .await?;
                if rig.seed(&mut outcomes[i]).await {
                    continue;
                }
                format!(
                    "the seed failed after {} {}'s up, so the set was not rolled back",
                    m.version, m.name
                )
            }
        };
        // The ups before it went up, but their downs never ran: not
        // rehearsed, as are the ups after it.
        for (k, o) in outcomes.iter_mut().enumerate() {
            if k != i {
                o.not_rehearsed(&why);
            }
            say(r, rig, k, run.len(), o);
        }
        return Ok(Some(why));
    }
    Ok(None)
}

/// What the downs of a whole set did.
struct Downs {
    /// The migrations whose down ran, newest first: they are applied again.
    reup: Vec<usize>,
    /// Migrations with no down, skipped under `missing_downs: skip`.
    skipped: usize,
    /// Where the downs stopped (a missing or failed down), and why.
    stop: Option<(usize, String)>,
}

/// The second leg: every down, newest first, until one is missing or
/// fails. `Err(why)` when a down failed half-way outside a transaction,
/// which leaves nothing to go on with.
async fn all_downs(
    rig: &mut Rig<'_>,
    missing_downs: MissingDowns,
    run: &[&Migration],
    outcomes: &mut [Outcome],
    whole: &mut Outcome,
) -> Result<Result<Downs, String>, Fail> {
    let mut downs = Downs {
        reup: Vec::new(),
        skipped: 0,
        stop: None,
    };
    for (i, m) in run.iter().enumerate().rev() {
        if m.down_script().is_none() {
            let why = m.down_missing().unwrap_or_default();
            outcomes[i].find(Verdict::Irreversible, format!("no down: {why}"));
            if missing_downs == MissingDowns::Skip {
                downs.skipped += 1;
                continue;
            }
            whole.find(
                Verdict::Irreversible,
                format!(
                    "the set cannot roll back past {} {}: no down ({why})",
                    m.version, m.name
                ),
            );
            downs.stop = Some((
                i,
                format!(
                    "the rollback stopped at {} {}: it has no down",
                    m.version, m.name
                ),
            ));
            break;
        }
        match rig.leg(&mut outcomes[i], m, "down", false).await {
            Ok(_) => downs.reup.push(i),
            Err(f) => {
                cancelled(&f)?;
                let e = script_error(&f);
                outcomes[i].find(Verdict::Irreversible, format!("down failed: {e}"));
                whole.find(
                    Verdict::Irreversible,
                    format!("the first down to fail is {} {}: {e}", m.version, m.name),
                );
                if !(f.in_transaction || f.done == 0) {
                    let why = format!(
                        "{} {}'s down failed half-way outside a transaction",
                        m.version, m.name
                    );
                    for o in outcomes.iter_mut().take(i) {
                        o.not_rehearsed(&format!("its down did not run: {why}"));
                    }
                    // The newer ones went down, but never up again.
                    for &k in &downs.reup {
                        outcomes[k].not_rehearsed(&format!("its re-up did not run: {why}"));
                    }
                    return Ok(Err(why));
                }
                downs.stop = Some((
                    i,
                    format!(
                        "the rollback stopped at {} {}: its down failed",
                        m.version, m.name
                    ),
                ));
                break;
            }
        }
    }
    if let Some((at, why)) = &downs.stop {
        for o in outcomes.iter_mut().take(*at) {
            o.not_rehearsed(&format!("its down did not run: {why}"));
        }
    }
    Ok(Ok(downs))
}

/// The third leg: the migrations whose down ran, applied again, oldest
/// first. Returns why it stopped, if it did.
async fn all_reups(
    rig: &mut Rig<'_>,
    run: &[&Migration],
    reup: &[usize],
    outcomes: &mut [Outcome],
) -> Result<Option<String>, Fail> {
    for &i in reup.iter().rev() {
        let m = run[i];
        if let Err(f) = rig.leg(&mut outcomes[i], m, "reup", false).await {
            cancelled(&f)?;
            let e = script_error(&f);
            outcomes[i].find(
                Verdict::ReupFailure,
                format!("up after the downs failed: {e}"),
            );
            let why = format!("{} {} could not be applied again", m.version, m.name);
            for &k in reup.iter().filter(|&&k| k > i) {
                outcomes[k].not_rehearsed(&format!("its re-up did not run: {why}"));
            }
            return Ok(Some(why));
        }
        rig.verify(
            &mut outcomes[i],
            m,
            false,
            Verdict::ReupFailure,
            "after the up again",
        )
        .await?;
    }
    Ok(None)
}

/// The evidence a rehearsal reads between legs (snapshots, counts and
/// checksums) within the step's bounds, as a leg is: the step's timeout or
/// an interrupt cancels the read on the server and ends the step, instead
/// of waiting for the count of a large table to finish.
async fn bounded<T>(
    db: &Db,
    ctx: &Ctx<'_>,
    read: impl std::future::Future<Output = Result<T, Fail>>,
) -> Result<T, Fail> {
    let left = ctx
        .deadline
        .map(|d| d.saturating_duration_since(Instant::now()));
    let stop = super::interrupted(ctx.interrupts.clone(), ctx.level);
    db.within(read, left, stop).await.map_err(|q| match q {
        db::QueryFail::Interrupted => Fail::new(StepStatus::Cancelled, super::cancelled_error()),
        _ => Fail::new(StepStatus::TimedOut, super::timeout_error(ctx.timeout)),
    })?
}

/// An interrupt or a timeout ends the rehearsal as the step's failure.
fn cancelled(f: &ScriptFail) -> Result<(), Fail> {
    if f.status == StepStatus::Failed {
        Ok(())
    } else {
        Err(Fail::new(f.status, f.error.clone()))
    }
}

/// A migration's verdict is final: settled, said in the log, and sent as
/// an event, which keeps it in the report of a rehearsal killed later.
fn say(r: &mut Run<'_>, rig: &Rig<'_>, i: usize, total: usize, o: &mut Outcome) {
    o.settled = true;
    r.bus.emit(crate::events::Event::RehearsalVerdict {
        at: crate::events::now(),
        step: rig.step.clone(),
        migration: serde_json::to_value(&*o).unwrap_or_default(),
    });
    let legs: Vec<String> = o
        .legs
        .iter()
        .map(|l| {
            format!(
                "{} {} ms{}",
                l.leg,
                l.duration_ms,
                if l.ok { "" } else { " (failed)" }
            )
        })
        .collect();
    log(
        r,
        &rig.step,
        format!(
            "[{}/{total}] {} {}: {}; {}",
            i + 1,
            o.version,
            o.name,
            o.verdict.name(),
            legs.join(", ")
        ),
    );
    for f in &o.findings {
        log(
            r,
            &rig.step,
            format!("  {}: {}", f.verdict.name(), f.message),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(legs: &[(&'static str, bool)]) -> Outcome {
        Outcome {
            version: "1".into(),
            name: "a".into(),
            verdict: Verdict::Ok,
            findings: Vec::new(),
            legs: legs
                .iter()
                .map(|&(leg, ok)| Leg {
                    leg,
                    duration_ms: 0,
                    ok,
                    transaction: true,
                })
                .collect(),
            forward_only: false,
            settled: false,
        }
    }

    #[test]
    fn an_ok_without_all_three_legs_passed_is_not_rehearsed() {
        let mut full = outcome(&[("up", true), ("down", true), ("reup", true)]);
        full.earned();
        assert_eq!(full.verdict, Verdict::Ok);
        let mut half = outcome(&[("up", true), ("down", true)]);
        half.earned();
        assert_eq!(half.verdict, Verdict::NotRehearsed);
        assert_eq!(
            half.findings[0].message,
            "not rehearsed: its reup did not run"
        );
        let mut none = outcome(&[]);
        none.earned();
        assert_eq!(
            none.findings[0].message,
            "not rehearsed: its up and down and reup did not run"
        );
    }
}
