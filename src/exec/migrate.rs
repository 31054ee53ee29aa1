//! `migrate` steps: apply a directory of SQL migrations in version order,
//! or roll them back, recording each in a history table.
//!
//! A migration runs in its own transaction unless its file or format says
//! otherwise, a statement cannot run in a transaction block, a new enum
//! value is used after the statement that adds it, or the file manages its
//! own transactions. Then its statements run one by one, and the history row
//! counts how many completed, so a failure leaves a precise record.
//!
//! The history row is written, `dirty`, before the script runs and
//! cleaned in the script's own transaction when there is one. A run killed
//! mid-script therefore leaves the row dirty, and `migrate` refuses to go
//! on until a person has looked (`runbook migrations repair`).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_postgres::SimpleQueryMessage;

use super::{Attempt, Done, Fail, Run};
use crate::events::ErrorKind;
use crate::events::{ErrorInfo, StepStatus};
use crate::history::liquibase::Taken;
use crate::history::{
    Again, Ensured, FlywayBaseline, FlywayStart, Newest, Repeatable, Tool, Write,
};
pub use crate::history::{Applied, History};
use crate::migrations::{self, Migration, Script, Set};
use crate::model::{Direction, Settings};
use crate::pg::db::{self, Db, QueryFail};
use crate::pg::statements::{self, Statement};
use crate::plan::{PlanMigrate, PlanStep};

/// A migration's pre-migration checks (Atlas's `checks.sql`), before its
/// up: each statement must return true, as Atlas requires before it
/// applies the migration. The first that fails, or returns anything else,
/// is what stops it; they only read. Returns how many held.
async fn pre_checks(db: &Db, m: &Migration) -> Result<usize, ErrorInfo> {
    let mut held = 0;
    for script in &m.checks {
        for st in statements::split(&script.sql) {
            let at = script.locate(st.offset);
            let rows = match db.client.simple_query(&st.text).await {
                Ok(rows) => rows,
                Err(e) => {
                    let mut info = db::error_info(&e, None);
                    info.message =
                        format!("its pre-migration check at {at} failed: {}", info.message);
                    return Err(info);
                }
            };
            let value = rows.iter().find_map(|r| match r {
                SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_string)),
                _ => None,
            });
            let got = match value {
                Some(Some(v)) if v == "t" => {
                    held += 1;
                    continue;
                }
                Some(Some(v)) => format!("`{v}`"),
                Some(None) => "NULL".into(),
                None => "no row".into(),
            };
            // The check as written, on one line, cut short where long.
            let mut text = st.text.split_whitespace().collect::<Vec<_>>().join(" ");
            if let Some((cut, _)) = text.char_indices().nth(160) {
                text.truncate(cut);
                text.push('…');
            }
            return Err(ErrorInfo {
                class: ErrorKind::Check,
                message: format!(
                    "its pre-migration check at {at} returned {got}, not true (`{text}`): Atlas applies a migration only when each of its checks returns true, and nothing of it ran"
                ),
                hint: Some(
                    "the database is not in the state the migration was written for (a table it drops still holds rows, say): look at the data the check reads before changing the check".into(),
                ),
                ..ErrorInfo::default()
            });
        }
    }
    Ok(held)
}

/// A script that failed.
pub struct ScriptFail {
    pub error: ErrorInfo,
    pub status: StepStatus,
    pub retry: bool,
    /// Statements that completed (and committed, outside a transaction).
    pub done: usize,
    pub in_transaction: bool,
    /// The connection closed as the script's COMMIT was sent: the server
    /// may have committed it, with its history row.
    pub maybe_committed: bool,
    /// A `CREATE INDEX CONCURRENTLY` outside a transaction failed: the
    /// INVALID index it left, dropped, and what is left of it.
    pub index: super::sql::LeftIndexes,
    /// It failed before any of the script ran: a pre-migration check did
    /// not hold.
    pub before_script: bool,
}

/// What running a script did.
pub struct ScriptRun {
    pub duration: Duration,
    pub in_transaction: bool,
    pub no_transaction_because: Option<String>,
    /// A script outside runbook's transaction that ended inside one it
    /// opened (nakama's `COMMIT; CREATE INDEX CONCURRENTLY ...; BEGIN;`,
    /// written for sql-migrate's own transaction): committed with its
    /// history row, as the tool's own COMMIT commits it.
    pub left_open: bool,
    pub statements: usize,
    /// With `collect_touched`, for a script that ran in a transaction: the
    /// tables whose rows it inserted, updated or deleted (from the
    /// transaction's own statistics, read before COMMIT).
    pub touched: Option<Vec<String>>,
    /// The migration's pre-migration checks, run before its up: how many
    /// returned true (all of them, or the up would not have run), and how
    /// long they took. `None`: it has none, or this was not its up.
    pub checks: Option<(usize, Duration)>,
}

/// The tables the current transaction wrote rows to. Exact: these are the
/// backend's own counters for the open transaction, not sampled statistics.
/// The counters `pg_stat_xact_user_tables` reads, without the view: it
/// also joins every index and groups, which took twice as long (4.5 vs
/// 2.2 ms on a 200-table schema), and this runs after every leg. The
/// counters are read only for relations created after initdb (the server
/// tests the cheaper oid first): reading them for every system catalog
/// and toast table too took 1.5 ms, against 0.5.
const TOUCHED_SQL: &str = "SELECT format('%I.%I', n.nspname, c.relname) \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'm', 'p') AND c.oid >= 16384 \
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
       AND pg_catalog.pg_stat_get_xact_tuples_inserted(c.oid) \
         + pg_catalog.pg_stat_get_xact_tuples_updated(c.oid) \
         + pg_catalog.pg_stat_get_xact_tuples_deleted(c.oid) > 0";

/// How [`run_script`] runs a script.
#[derive(Debug, Clone, Copy, Default)]
pub struct How {
    /// Read the tables the script wrote, before it commits.
    pub collect_touched: bool,
    /// Under a savepoint of a transaction the session is already in.
    pub nested: bool,
    /// From a clean session, as a new run of the tool.
    pub fresh: bool,
    /// It ran before, and runs again ([`Again`]).
    pub again: bool,
}

/// The parts of a run a script needs: where to log, the interrupt signal,
/// the deadline.
pub struct Ctx<'c> {
    pub run_id: &'c str,
    pub settings: &'c Settings,
    pub deadline: Option<Instant>,
    pub timeout: Option<Duration>,
    pub interrupts: tokio::sync::watch::Receiver<u32>,
    pub level: u32,
    /// `SHOW server_version`, to say when a script is for a newer one.
    pub server_version: &'c str,
}

fn fail_at(
    script: &Script,
    st: &Statement,
    i: usize,
    q: QueryFail,
    ctx: &Ctx<'_>,
) -> (ErrorInfo, StepStatus, bool) {
    match q {
        QueryFail::Db(e) => {
            let mut info = db::error_info(&e, None);
            let within = info
                .position
                .map(|p| {
                    st.text
                        .char_indices()
                        .nth(p.saturating_sub(1) as usize)
                        .map_or(0, |(b, _)| b)
                })
                .unwrap_or(0);
            info.location = Some(format!(
                "{} (statement {})",
                script.locate(st.offset + within),
                i + 1
            ));
            if let Some(note) = crate::pg::tools::needs_newer(&info.message, ctx.server_version) {
                info.message = format!("{}; {note}", info.message);
            }
            let retry = db::classify(&e).is_some();
            (info, StepStatus::Failed, retry)
        }
        QueryFail::Timeout => (
            super::timeout_error(ctx.timeout),
            StepStatus::TimedOut,
            false,
        ),
        QueryFail::Interrupted => (super::cancelled_error(), StepStatus::Cancelled, false),
    }
}

/// The savepoint a leg runs under inside a rehearsal's own transaction.
const LEG_SAVEPOINT: &str = "runbook_leg";

/// Run one migration's up or down on `db`, keeping the history row in step.
///
/// `nested`: the session is already inside a transaction (a rehearsal's
/// down and re-up, rolled back together afterwards). A transactional
/// script then runs under a savepoint instead of its own transaction, its
/// history mark inside it, and deferred constraints are checked before the
/// savepoint is released, as a COMMIT would. Callers only nest scripts that
/// run in a transaction.
///
/// `how.fresh`: the script starts from a clean session
/// ([`db::RESET_SESSION`]), as it would in a new run of its tool: a down
/// is one, and so is a rehearsal's re-up. What an up set for the session (pg_dump's
/// `search_path` of '', a `SET ROLE`) would otherwise reach its own down,
/// which the tool runs later, from a new connection.
pub async fn run_script(
    db: &Db,
    history: &History,
    m: &Migration,
    direction: Direction,
    ctx: &Ctx<'_>,
    how: How,
) -> Result<ScriptRun, ScriptFail> {
    let script = match direction {
        Direction::Up => &m.up,
        Direction::Down => m.down_script().expect("callers check for a down script"),
    };
    let stmts = statements::split(&script.sql);
    let (in_tx, why) = migrations::script_mode(script, &stmts);
    let plain = |e: ErrorInfo| ScriptFail {
        error: e,
        status: StepStatus::Failed,
        retry: false,
        done: 0,
        in_transaction: in_tx,
        maybe_committed: false,
        index: super::sql::LeftIndexes::default(),
        before_script: false,
    };
    let total = stmts.len();
    let How {
        collect_touched,
        nested,
        fresh,
        again,
    } = how;
    let again = again && direction == Direction::Up;
    let nested = nested && in_tx;
    let checks = if direction == Direction::Up && !m.checks.is_empty() {
        let started = Instant::now();
        match pre_checks(db, m).await {
            Ok(held) => Some((held, started.elapsed())),
            // Nothing of the script ran.
            Err(e) => {
                return Err(ScriptFail {
                    in_transaction: true,
                    before_script: true,
                    ..plain(e)
                });
            }
        }
    } else {
        None
    };
    // Mark the row unfinished before anything runs, in its own commit.
    let mark = history.sql(&Write::Mark {
        m,
        direction,
        run_id: ctx.run_id,
        in_tx,
        total,
        again,
    });
    let mark = match (nested, mark) {
        (true, Some(mark)) => Some(format!("SAVEPOINT {LEG_SAVEPOINT};\n{mark}")),
        (true, None) => Some(format!("SAVEPOINT {LEG_SAVEPOINT}")),
        (false, mark) => mark,
    };
    if let Some(mark) = mark {
        db.client
            .batch_execute(&mark)
            .await
            .map_err(|e| plain(db::error_info(&e, None)))?;
    }
    let leg = Leg {
        history,
        m,
        direction,
        in_tx,
        nested,
        again,
    };
    let mut setup = setup_sql(db::settings_sql(ctx.settings, in_tx), in_tx, nested);
    // Before the step's own settings, which a reset would undo.
    if let Some(reset) = &history.session_reset {
        setup = format!("{reset};\n{setup}");
    }
    if fresh && history.session_reset.as_deref() != Some(db::RESET_SESSION) {
        setup = format!("{};\n{setup}", db::RESET_SESSION);
    }
    if !setup.is_empty()
        && let Err(e) = db.client.batch_execute(&setup).await
    {
        // As if its first statement had failed: nothing ran.
        leave_after_failure(db, &leg, 0, false, "").await;
        return Err(plain(db::error_info(&e, None)));
    }
    let started = Instant::now();
    for (i, st) in stmts.iter().enumerate() {
        let left = ctx
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()));
        // A concurrent build outside a transaction that fails leaves an
        // INVALID index: the ones there before are not its own.
        let before = if st.concurrent_index && !in_tx {
            super::sql::invalid_indexes(db, &st.relations).await.ok()
        } else {
            Some(Vec::new())
        };
        let result = if left.is_some_and(|l| l.is_zero()) {
            Err(QueryFail::Timeout)
        } else {
            db.run(
                &st.text,
                left,
                super::interrupted(ctx.interrupts.clone(), ctx.level),
            )
            .await
        };
        if let Err(q) = result {
            let (mut error, status, retry) = fail_at(script, st, i, q, ctx);
            let index = if st.concurrent_index && !in_tx {
                super::sql::drop_left_invalid(db, st, before.as_deref()).await
            } else {
                super::sql::LeftIndexes::default()
            };
            if !index.clean() {
                // Its history row stays dirty, saying what is left.
                error.message = format!("{}; it left {}", error.message, index.left.join("; "));
            }
            // Outside runbook's transaction, a failure inside one the
            // script opened undoes it back to its BEGIN.
            let done =
                if !in_tx && stmts[..i].iter().any(opens_transaction) && open_transaction(db).await
                {
                    db.rollback().await;
                    stmts[..i].iter().rposition(opens_transaction).unwrap_or(i)
                } else {
                    i
                };
            leave_after_failure(db, &leg, done, !index.clean(), &error.message).await;
            return Err(ScriptFail {
                error,
                status,
                retry: retry && (in_tx || done == 0) && index.clean(),
                done,
                in_transaction: in_tx,
                maybe_committed: false,
                index,
                before_script: false,
            });
        }
        if !in_tx
            && i + 1 < total
            && let Some(progress) = history.sql(&Write::Progress { m, done: i + 1 })
        {
            let _ = db.client.batch_execute(&progress).await;
        }
    }
    let duration = started.elapsed();
    let mut finish = finish_sql(&leg, total, duration);
    // A script run outside runbook's transaction may end inside one of its
    // own: its history row would go into it, and the session's end would
    // roll both back, the row lost while the script's work before its
    // BEGIN stays. The tools that wrap a script commit what it left open
    // with their own COMMIT, and so does runbook.
    let left_open = !in_tx && stmts.iter().any(opens_transaction) && open_transaction(db).await;
    if left_open {
        // Outside a transaction, `finish` is the row's write and its `;`.
        finish.push_str("COMMIT");
    }
    // The tables written are read before the history row is, in the same
    // round trip (the session runs them in the order they were sent).
    let touched = async {
        if !(in_tx && collect_touched) {
            return None;
        }
        // The simple protocol: one message, where a prepared query takes two.
        let messages = db.client.simple_query(TOUCHED_SQL).await.ok()?;
        Some(
            messages
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                    _ => None,
                })
                .collect(),
        )
    };
    let (touched, finished) = tokio::join!(touched, db.client.batch_execute(&finish));
    if let Err(e) = finished {
        // A COMMIT whose answer never came (the connection closed under
        // it) may have committed; one the server answered did not.
        let lost = in_tx && !nested && (e.is_closed() || e.as_db_error().is_none());
        // Statements of a script outside a transaction have committed: its
        // row stays dirty. Otherwise the whole script goes.
        if in_tx && !lost {
            leave_after_failure(db, &leg, 0, false, "").await;
        }
        return Err(ScriptFail {
            retry: db::classify(&e).is_some() && in_tx,
            maybe_committed: lost,
            ..plain(db::error_info(&e, None))
        });
    }
    Ok(ScriptRun {
        duration,
        in_transaction: in_tx,
        no_transaction_because: why,
        left_open,
        statements: total,
        touched,
        checks,
    })
}

/// Whether the session is inside a transaction block (one a script opened
/// with BEGIN and left open, or an aborted one): a savepoint can be set
/// only there.
async fn open_transaction(db: &Db) -> bool {
    match db
        .client
        .batch_execute("SAVEPOINT runbook_open_probe; RELEASE SAVEPOINT runbook_open_probe")
        .await
    {
        Ok(()) => true,
        Err(e) => e.code() != Some(&tokio_postgres::error::SqlState::NO_ACTIVE_SQL_TRANSACTION),
    }
}

/// `BEGIN` or `START TRANSACTION` (the parser's one kind for both), which
/// a script outside runbook's transaction may send.
fn opens_transaction(st: &statements::Statement) -> bool {
    st.kind == "BEGIN"
}

/// What opens a script: its own transaction (unless nested under a
/// savepoint already) and the step's settings.
fn setup_sql(settings: Option<String>, in_tx: bool, nested: bool) -> String {
    match (settings, in_tx) {
        (Some(s), true) if nested => s,
        (None, true) if nested => String::new(),
        (Some(s), true) => format!("BEGIN;\n{s}"),
        (None, true) => "BEGIN;".into(),
        (Some(s), false) => s,
        (None, false) => String::new(),
    }
}

/// What closes a script that ran to its end: the history row clean (or
/// gone, after a down), then COMMIT, or the savepoint released after the
/// deferred constraints are checked as a COMMIT would.
fn finish_sql(leg: &Leg<'_>, total: usize, duration: Duration) -> String {
    let Leg {
        history,
        m,
        direction,
        in_tx,
        nested,
        again,
    } = *leg;
    let finish = history
        .sql(&Write::Finish {
            m,
            direction,
            duration,
            total,
            in_tx,
            again,
        })
        .map(|sql| format!("{sql};\n"))
        .unwrap_or_default();
    if nested {
        format!("{finish}SET CONSTRAINTS ALL IMMEDIATE;\nRELEASE SAVEPOINT {LEG_SAVEPOINT}")
    } else if in_tx {
        format!("{finish}COMMIT")
    } else {
        finish
    }
}

/// One script being run, as far as cleaning up after it goes.
#[derive(Clone, Copy)]
struct Leg<'a> {
    history: &'a History,
    m: &'a Migration,
    direction: Direction,
    in_tx: bool,
    nested: bool,
    again: bool,
}

/// After statement `i` failed: undo what the failure undid anyway, and
/// leave the history row saying what is true. A nested leg goes back to
/// its savepoint (its mark with it); a transactional script, or one whose
/// first statement failed, left nothing, so its row goes back to what it
/// was; otherwise statements before `i` committed and the row stays dirty,
/// with the error on it.
async fn leave_after_failure(db: &Db, leg: &Leg<'_>, i: usize, left: bool, message: &str) {
    if leg.nested {
        let _ = db
            .client
            .batch_execute(&format!("ROLLBACK TO SAVEPOINT {LEG_SAVEPOINT}"))
            .await;
        return;
    }
    if leg.in_tx {
        db.rollback().await;
    }
    let write = if leg.in_tx || i == 0 && !left {
        Write::Undo {
            m: leg.m,
            direction: leg.direction,
            again: leg.again,
        }
    } else {
        Write::Failed {
            m: leg.m,
            at: i,
            message,
        }
    };
    if let Some(sql) = leg.history.sql(&write) {
        let _ = db.client.batch_execute(&sql).await;
    }
}

/// Which migrations a `migrate` would run, given the history.
pub struct Pending<'s> {
    pub run: Vec<&'s Migration>,
    /// Flyway's repeatable migrations, after `run`: each with where it
    /// stands, and whether this step runs it (those due do, unless `to` or
    /// `steps` stops short of the newest version).
    pub repeatables: Vec<(&'s Migration, Repeatable, bool)>,
    /// Applied migrations whose up script changed: (version, file, recorded, now).
    pub changed: Vec<(String, String, String, String)>,
    /// Going up, the applied changesets of `run` that run again, as
    /// Liquibase runs them ([`History::runs_again`]), each with why.
    pub again: Vec<(&'s Migration, Again)>,
    /// Applied versions with no file in the directory.
    pub missing: Vec<String>,
    /// The application's Java or Kotlin migrations this step would pass
    /// over: going up, pending ones within its reach; going down, applied
    /// ones newer than the oldest it undoes. runbook runs neither.
    pub code: Vec<&'s migrations::CodeMigration>,
    /// Going up, those of `run` older than the newest applied migration
    /// ([`Newest`]): applying them is applying them out of order.
    pub early: Vec<&'s Migration>,
    /// Going down, applied migrations that stay applied but were applied
    /// after one of `run`: its down runs under a schema they changed.
    pub kept_later: Vec<&'s Migration>,
    /// Under `to: before_run`, the changesets that run ran again: they stay
    /// as they are now.
    pub stays: Vec<String>,
    /// Whether the step made the history table (and its schema).
    pub made: Ensured,
    /// The baseline the step recorded in the history it made, as Flyway's
    /// `baselineOnMigrate` does ([`History::flyway_start`]).
    pub baselined: Option<FlywayBaseline>,
}

impl Pending<'_> {
    /// Why `m` runs again, when it does.
    pub fn again_of(&self, m: &Migration) -> Option<Again> {
        self.again
            .iter()
            .find(|(x, _)| x.version == m.version)
            .map(|(_, why)| *why)
    }
}

/// Decide what to run. Refuses on a dirty row, and on a changed checksum
/// unless `allow_checksum_change`.
pub fn select<'s>(
    set: &'s Set,
    applied: &[Applied],
    history: &History,
    direction: Direction,
    to: Option<&str>,
    steps: Option<u32>,
) -> Pending<'s> {
    let done = |v: &str| applied.iter().any(|a| a.version == v);
    // What Liquibase runs again is not a change to refuse: it runs, in its
    // place among the pending ones.
    let again: Vec<(&Migration, Again)> = match direction {
        Direction::Up => set
            .migrations
            .iter()
            .filter_map(|m| {
                let a = applied.iter().find(|a| a.version == m.version)?;
                Some((m, history.runs_again(m, a)?))
            })
            .collect(),
        Direction::Down => Vec::new(),
    };
    let runs_again = |m: &Migration| again.iter().any(|(x, _)| x.version == m.version);
    let changed = applied
        .iter()
        .filter_map(|a| {
            let m = set.migrations.iter().find(|m| m.version == a.version)?;
            let (was, now) = (a.checksum.clone()?, history.checksum_of(m)?);
            (was != now && !runs_again(m) && !History::change_accepted(m, &was))
                .then(|| (a.version.clone(), m.up.file.clone(), was, now))
        })
        .collect();
    // A changeset the step's contexts leave out is in the directory: an
    // applied one has its file.
    let missing = applied
        .iter()
        .filter(|a| {
            !set.migrations
                .iter()
                .chain(&set.unselected)
                .any(|m| m.version == a.version)
                && !set.code_migrations.iter().any(|c| c.version == a.version)
        })
        .map(|a| a.version.clone())
        .collect();
    let to = to.filter(|t| *t != "latest");
    let mut run: Vec<&Migration> = match direction {
        Direction::Up => set
            .migrations
            .iter()
            .filter(|m| !done(&m.version) || runs_again(m))
            .filter(|m| to.is_none_or(|t| set.cmp(&m.version, t).is_le()))
            .collect(),
        Direction::Down => {
            let mut run: Vec<&Migration> = set
                .migrations
                .iter()
                .rev()
                .filter(|m| done(&m.version))
                .filter(|m| to.is_none_or(|t| set.cmp(&m.version, t).is_gt()))
                .collect();
            // The last applied first, where the history says the order:
            // out of order (Liquibase's changeset added to an earlier
            // file, `out_of_order: true`), that is not the directory's.
            run.sort_by_key(|m| std::cmp::Reverse(applied_order(applied, m)));
            run
        }
    };
    // Going up, a Java migration older than the newest the step applies is
    // passed over; with no `steps`, so is every one up to `to`.
    let newest_run = steps.map(|n| {
        run.get(..run.len().min(n as usize))
            .and_then(<[_]>::last)
            .map(|m| m.version.clone())
    });
    if let Some(n) = steps {
        run.truncate(n as usize);
    }
    let passed_over = |c: &migrations::CodeMigration| match direction {
        Direction::Up => {
            !done(&c.version)
                && match &newest_run {
                    Some(newest) => newest
                        .as_deref()
                        .is_some_and(|v| set.cmp(&c.version, v).is_lt()),
                    None => to.is_none_or(|t| set.cmp(&c.version, t).is_le()),
                }
        }
        Direction::Down => {
            done(&c.version) && run.iter().any(|m| set.cmp(&c.version, &m.version).is_gt())
        }
    };
    let code = set
        .code_migrations
        .iter()
        .filter(|c| !c.version.is_empty() && passed_over(c))
        .collect();
    let kept_later = match direction {
        Direction::Down => kept_later(set, applied, &run),
        Direction::Up => Vec::new(),
    };
    let newest = Newest::of(set, applied);
    let early = match direction {
        Direction::Up => run
            .iter()
            .copied()
            .filter(|m| newest.is_after(set, m) && !runs_again(m))
            .collect(),
        Direction::Down => Vec::new(),
    };
    let again = again
        .into_iter()
        .filter(|(m, _)| run.iter().any(|x| x.version == m.version))
        .collect();
    Pending {
        run,
        repeatables: Vec::new(),
        changed,
        again,
        stays: Vec::new(),
        missing,
        code,
        early,
        kept_later,
        made: Ensured::Existed,
        baselined: None,
    }
}

/// Why a step that would pass over one of the application's Java or
/// Kotlin migrations ([`Pending::code`]) is refused, and the hint: it would
/// report a deploy done that the application's Flyway (or goose) does
/// otherwise.
pub(crate) fn code_passed_over(
    set: &Set,
    p: &Pending<'_>,
    direction: Direction,
    rehearsal: bool,
) -> Option<(String, String)> {
    let first = p.code.first()?;
    let list = p
        .code
        .iter()
        .map(|c| format!("{}, version {}", c.label(), c.version))
        .collect::<Vec<_>>()
        .join("; ");
    Some(match direction {
        Direction::Up => {
            let before = set
                .migrations
                .iter()
                .rev()
                .find(|m| set.cmp(&m.version, &first.version).is_lt());
            let newer = p
                .run
                .iter()
                .any(|m| set.cmp(&m.version, &first.version).is_gt());
            (
                format!(
                    "{} pending: {} runs it from the application's code, in one version order with the scripts, and runbook cannot run it. {}",
                    if p.code.len() == 1 {
                        format!("{list} is")
                    } else {
                        format!(
                            "{} of the application's migrations in code are ({list})",
                            p.code.len()
                        )
                    },
                    first.tool,
                    if newer {
                        format!(
                            "This step would apply the scripts after it and leave it out: {}",
                            first.left_behind()
                        )
                    } else {
                        format!(
                            "This step would report the deploy done without it, and the application's {} would apply it later, {}",
                            first.tool,
                            first.applied_when()
                        )
                    }
                ),
                match before {
                    Some(m) => format!(
                        "nothing ran. {} up to the script before it (`to: \"{}\"`{}), have {}, then run this step again; or write it as a SQL script",
                        if rehearsal {
                            "Rehearse and deploy"
                        } else {
                            "Deploy"
                        },
                        m.version,
                        if rehearsal { " on both steps" } else { "" },
                        first.applied_by()
                    ),
                    None => format!(
                        "nothing ran. Have {} first, then run this step; or write it as a SQL script",
                        first.applied_by()
                    ),
                },
            )
        }
        Direction::Down => (
            format!(
                "this rollback would pass over {list}, which is applied: runbook cannot undo a migration in code, and the scripts before it would be undone with it still applied"
            ),
            format!(
                "nothing ran. Roll back no further than it (`to: \"{}\"`); undoing it is the application's to do",
                first.version
            ),
        ),
    })
}

/// The migrations a rollback keeps though applied after one it undoes,
/// for a message.
fn kept_later_list(p: &Pending<'_>) -> String {
    p.kept_later
        .iter()
        .map(|x| migrations::labeled(&x.version, &x.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Applied migrations that a rollback of `run` keeps but that were applied
/// after one of it.
fn kept_later<'s>(set: &'s Set, applied: &[Applied], run: &[&Migration]) -> Vec<&'s Migration> {
    let Some(first) = run.iter().map(|m| applied_order(applied, m)).min() else {
        return Vec::new();
    };
    set.migrations
        .iter()
        .filter(|m| !run.iter().any(|x| x.version == m.version))
        .filter(|m| applied.iter().any(|a| a.version == m.version))
        .filter(|m| applied_order(applied, m) > first)
        .collect()
}

/// Where a migration's row is in the order the history applied them; for
/// one the history does not order, before every ordered one.
fn applied_order(applied: &[Applied], m: &Migration) -> i64 {
    applied
        .iter()
        .filter(|a| a.version == m.version)
        .filter_map(|a| a.order)
        .max()
        .unwrap_or(i64::MIN)
}

fn fail(message: String, hint: &str) -> Fail {
    Fail::new(
        StepStatus::Failed,
        ErrorInfo {
            class: ErrorKind::Migrate,
            message,
            hint: Some(hint.into()),
            ..ErrorInfo::default()
        },
    )
}

/// A refusal before any migration ran: it changed nothing.
fn refused(message: String, hint: &str) -> Fail {
    fail(message, hint).unchanged()
}

/// Liquibase's changesets the step's `contexts` and `label_filter`
/// select, the others left out; what the log says of it. Refused, having
/// changed nothing, for a directory without changesets.
pub(crate) fn select_changesets(
    r: &Run<'_>,
    set: &mut Set,
    select: &crate::plan::PlanSelect,
) -> Result<Option<String>, Fail> {
    let render = |t: &Option<crate::plan::Text>| {
        t.as_ref()
            .map(|t| {
                r.render(t)
                    .map(|(raw, _)| raw.trim().to_string())
                    .map_err(|e| Fail::new(StepStatus::Failed, e).unchanged())
            })
            .transpose()
    };
    let (contexts, label_filter) = (render(&select.contexts)?, render(&select.label_filter)?);
    if (&contexts, &label_filter) == (&None, &None)
        && let Some((why, hint)) = migrations::liquibase_ungiven(set)
    {
        return Err(refused(why, &hint));
    }
    migrations::liquibase_select(set, contexts.as_deref(), label_filter.as_deref())
        .map_err(|e| {
            refused(
                e,
                "`contexts` and `label_filter` are Liquibase's; leave them out for another tool's migrations",
            )
        })
}

/// Load the directory a step names (relative to the runbook).
pub(crate) fn load_set(r: &Run<'_>, dir: &crate::plan::Text, format: &str) -> Result<Set, Fail> {
    let (dir, _) = r
        .render(dir)
        .map_err(|e| Fail::new(StepStatus::Failed, e).unchanged())?;
    let format = migrations::Format::parse(format)
        .map_err(|e| refused(e.to_string(), "see docs/migrations.md for the formats"))?;
    migrations::load(&super::builtin::relative(r, &dir), format).map_err(|e| {
        refused(
            e.to_string(),
            e.hint().unwrap_or("check `dir:`; it is relative to the runbook's directory, and `format:` names the layout when detection cannot"),
        )
    })
}

pub(crate) async fn run(
    r: &mut Run<'_>,
    s: &PlanStep,
    m: &crate::plan::PlanMigrate,
    timeout: Option<Duration>,
) -> Attempt {
    let m: &PlanMigrate = m;
    let settings = s.settings.as_ref().unwrap_or(&r.plan.settings).clone();
    let mut set = load_set(r, &m.dir, &m.format)?;
    let selected = select_changesets(r, &mut set, &m.select)?;
    for w in &set.warnings {
        super::sql::log(r, &s.id, format!("warning: {w}"));
    }
    let spec = m
        .history
        .spec()
        .map_err(|e| refused(e, "see docs/migrations.md for the history formats"))?;
    let read = set.warnings.len();
    let history = History::open(&r.db, &spec, &mut set)
        .await
        .map_err(|e| refused(e.to_string(), e.hint()))?;
    super::sql::log(r, &s.id, format!("history: {}", history.describe()));
    if let Some(note) = set.deployer_note() {
        super::sql::log(r, &s.id, note);
    }
    if let Some(note) = set.flyway_conf_note() {
        super::sql::log(r, &s.id, note);
    }
    if let Some(note) = set.liquibase_conf_note() {
        super::sql::log(r, &s.id, note);
    }
    if let Some(note) = &set.liquibase_names {
        super::sql::log(r, &s.id, note.clone());
    }
    if let Some(note) = selected {
        super::sql::log(r, &s.id, note);
    }
    set.warnings.extend(history.not_kept());
    for w in &set.warnings[read..] {
        super::sql::log(r, &s.id, format!("warning: {w}"));
    }
    // Nothing has run yet: a failure here, up to the first migration,
    // changed nothing (the history's own table aside).
    let key = history
        .lock_key(&r.db, &r.database)
        .await
        .map_err(|e| Fail::new(StepStatus::Failed, e).unchanged())?;
    match r.db.try_lock(key).await {
        Ok(Ok(())) => {}
        Ok(Err(holder)) => {
            let whose = match history.tool.lock_owner() {
                Some(tool) => format!(
                    "{tool}'s migration lock is held (an application migrating at start-up, or another runbook)"
                ),
                None => "another session is migrating".to_string(),
            };
            return Err(refused(
                format!(
                    "{whose} with {}{}",
                    history.name,
                    holder
                        .map(|h| format!(": pid {} ({})", h.pid, h.application_name))
                        .unwrap_or_default()
                ),
                "wait for it to finish; two migrators on one history table would race",
            ));
        }
        Err(e) => return Err(Fail::new(StepStatus::Failed, e).unchanged()),
    }
    // Liquibase's own lock, as Liquibase takes it: its one row, so that an
    // application running Liquibase at start-up waits for this run.
    let liquibase_lock = crate::history::liquibase::locked_by(&r.run_id);
    // Going down where there is no history, nothing is rolled back: no
    // lock table is made for it.
    let liquibase = history.tool == Tool::Liquibase
        && (m.direction == Direction::Up || history.exists(&r.db).await.unwrap_or(true));
    if liquibase {
        let took = crate::history::liquibase::take_lock(&history, &r.db, &liquibase_lock).await;
        let refusal = match took {
            Ok(Taken::Took) => None,
            Ok(Taken::Over(left)) => {
                super::sql::log(
                    r,
                    &s.id,
                    format!(
                        "Liquibase's lock was held by {} since {}, which is not running (this step holds runbook's migration lock on the history): taken over",
                        left.by, left.since
                    ),
                );
                None
            }
            Ok(Taken::Held(held)) => Some(refused(
                format!(
                    "Liquibase's lock (the row of {}) is held by {} since {}",
                    crate::history::liquibase::lock_name(&history),
                    held.by,
                    held.since
                ),
                "wait for that Liquibase to finish; if none is running (one that was killed leaves its lock), release it with `liquibase release-locks`",
            )),
            Err(e) => {
                Some(Fail::new(StepStatus::Failed, crate::pg::db::error_info(&e, None)).unchanged())
            }
        };
        if let Some(f) = refusal {
            let _ =
                r.db.client
                    .batch_execute(&format!("SELECT pg_advisory_unlock({key})"))
                    .await;
            return Err(f);
        }
    }
    // What the tool does to the session before each script (Flyway's and
    // Liquibase's search path) is its own: the steps after this one get
    // the session's search path back.
    let search_path = match &history.session_reset {
        Some(_) => {
            r.db.client
                .query_one("SELECT current_setting('search_path')", &[])
                .await
                .ok()
                .map(|row| row.get::<_, String>(0))
        }
        None => None,
    };
    let result = migrate(r, s, m, &set, &history, &settings, timeout).await;
    if let Some(path) = search_path {
        let _ =
            r.db.client
                .execute("SELECT set_config('search_path', $1, false)", &[&path])
                .await;
    }
    if liquibase {
        let _ = crate::history::liquibase::release_lock(&history, &r.db, &liquibase_lock).await;
    }
    let _ =
        r.db.client
            .batch_execute(&format!("SELECT pg_advisory_unlock({key})"))
            .await;
    result
}

/// `to: before_run`: undo what the run applied.
const BEFORE_RUN: &str = "before_run";

/// A step's `to:` rendered (it may come from params) and checked, or a
/// refusal that changed nothing.
pub(crate) fn render_to(
    r: &Run<'_>,
    to: Option<&crate::plan::Text>,
    direction: Direction,
) -> Result<Option<String>, Fail> {
    let to = to
        .map(|t| {
            r.render(t)
                .map(|(raw, _)| raw.trim().to_string())
                .map_err(|e| Fail::new(StepStatus::Failed, e).unchanged())
        })
        .transpose()?;
    if let Some(t) = &to
        && let Err((label, hint)) = migrations::check_target(t, direction)
    {
        return Err(refused(format!("`to` is `{t}`: {label}"), hint));
    }
    Ok(to)
}

/// `to:` and `steps:` rendered (they may come from params) and checked, or
/// a refusal that changed nothing.
fn target(r: &Run<'_>, m: &PlanMigrate) -> Result<(Option<String>, Option<u32>), Fail> {
    let render = |t: &crate::plan::Text| {
        r.render(t)
            .map(|(raw, _)| raw.trim().to_string())
            .map_err(|e| Fail::new(StepStatus::Failed, e).unchanged())
    };
    let to = render_to(r, m.to.as_ref(), m.direction)?;
    let steps = match m.steps.as_ref().map(render).transpose()? {
        None => None,
        Some(n) => Some(migrations::parse_steps(&n).map_err(|why| {
            refused(
                format!("`steps` is `{n}`, which {why}"),
                "give a whole number, 1 or more",
            )
        })?),
    };
    Ok((to, steps))
}

/// A `migrate` step: decide what to run, refuse what must not run, then
/// run each script in order, stopping at the first failure.
async fn migrate(
    r: &mut Run<'_>,
    s: &PlanStep,
    m: &PlanMigrate,
    set: &Set,
    history: &History,
    settings: &Settings,
    timeout: Option<Duration>,
) -> Attempt {
    let (applied, pending) = decide(r, m, set, history).await?;
    if let Some(note) = history.liquibase_renaming() {
        super::sql::log(r, &s.id, note);
    }
    // The history table this step made: a rollback of all it applied, or a
    // failure before anything, drops it again.
    // runbook's own table is its state, left out of every check, and kept.
    let made = match pending.made {
        Ensured::Made { schema } if history.tool != Tool::Runbook => {
            let mut made = json!({ "table": history.name, "schema": schema });
            if let Some(b) = &pending.baselined {
                made["baselined"] = json!(b.version);
            }
            Some(made)
        }
        _ => None,
    };
    let mut details = json!({
        "format": set.format.name(),
        // What the step names: the directory, or Liquibase's master in it.
        "dir": set.liquibase_master.as_ref().unwrap_or(&set.dir).display().to_string(),
        "history_table": history.name,
        "history_format": history.tool.name(),
        "direction": m.direction,
    });
    if !set.warnings.is_empty() {
        details["warnings"] = json!(set.warnings);
    }
    if let Some(b) = &pending.baselined {
        super::sql::log(
            r,
            &s.id,
            format!(
                "schema {} already held objects, and there was no Flyway history: recorded a baseline at version {} in {}, as Flyway's baselineOnMigrate ({}) does; migrations up to it are taken as applied, without running",
                b.schemas.join(", "),
                b.version,
                history.name,
                b.at
            ),
        );
        details["baselined"] = json!({
            "version": b.version,
            "because": format!("baselineOnMigrate ({})", b.at),
            "schemas_not_empty": b.schemas,
        });
    }
    if !pending.kept_later.is_empty() {
        super::sql::log(
            r,
            &s.id,
            format!(
                "warning: {} stay applied though applied after migrations this step rolls back (`out_of_order: true`)",
                kept_later_list(&pending)
            ),
        );
        details["kept_applied_later"] = json!(
            pending
                .kept_later
                .iter()
                .map(|x| &x.version)
                .collect::<Vec<_>>()
        );
    }
    if !pending.stays.is_empty() {
        super::sql::log(
            r,
            &s.id,
            format!(
                "note: {} changeset(s) this run ran again stay as they are now: {}. Liquibase's rollback of one undoes the changeset, not the change to its text, and the text it replaced is not kept",
                pending.stays.len(),
                pending.stays.join(", ")
            ),
        );
        details["ran_again_kept"] = json!(pending.stays);
    }
    // Liquibase runs these on every update; only its history records that.
    let always = set
        .migrations
        .iter()
        .filter(|x| x.changeset.as_ref().is_some_and(|c| c.run_always))
        .filter(|x| applied.iter().any(|a| a.version == x.version))
        .count();
    if m.direction == Direction::Up
        && always > 0
        && !matches!(history.tool, Tool::Liquibase | Tool::Runbook)
    {
        super::sql::log(
            r,
            &s.id,
            format!(
                "warning: {always} applied changeset(s) say runAlways:true: Liquibase runs them on every update, and runbook does on Liquibase's history and its own; this step's history is {}, and they do not run again",
                history.describe()
            ),
        );
    }
    if !pending.changed.is_empty() {
        details["checksum_changes_allowed"] =
            json!(accept_changes(r, s, m, history, set, &pending).await?);
    }
    if !pending.missing.is_empty() {
        super::sql::log(
            r,
            &s.id,
            format!(
                "warning: applied version(s) {} have no file in {}",
                pending.missing.join(", "),
                set.dir.display()
            ),
        );
        details["applied_without_file"] = json!(pending.missing);
    }
    if m.direction == Direction::Down
        && let Some(x) = pending.run.iter().find(|x| x.down_script().is_none())
    {
        return Err(refused(
            format!(
                "migration {} cannot be rolled back: {}",
                migrations::labeled(&x.version, &x.name),
                x.down_missing().unwrap_or_default()
            ),
            "nothing was rolled back; write its down script, or restore from a backup",
        ));
    }
    let newest = Newest::of(set, &applied);
    let run_id = r.run_id.clone();
    let server_version = r.server_version.clone();
    let ctx = Ctx {
        run_id: &run_id,
        settings,
        deadline: timeout.map(|t| Instant::now() + t),
        timeout,
        interrupts: r.interrupts.clone(),
        level: r.stop_level,
        server_version: &server_version,
    };
    // A retry: the migrations an earlier attempt of this step applied are
    // this step's too.
    let mut done_list: Vec<Value> = match r.migrate_resume.take() {
        Some((id, earlier)) if id == s.id => {
            // One whose COMMIT's answer was lost is the step's when the
            // history now says it committed.
            let earlier: Vec<Value> = earlier
                .into_iter()
                .filter_map(|mut e| {
                    if e.get("maybe").is_none() {
                        return Some(e);
                    }
                    let v = e["version"].as_str()?;
                    let now = applied.iter().any(|a| a.version == v && !a.dirty);
                    let committed = match m.direction {
                        Direction::Up => now,
                        Direction::Down => !now,
                    };
                    let entry = e.as_object_mut()?;
                    entry.remove("maybe");
                    entry.insert(
                        "note".into(),
                        "the connection closed as its COMMIT was sent; the history says it committed"
                            .into(),
                    );
                    committed.then_some(e)
                })
                .collect();
            if !earlier.is_empty() {
                super::sql::log(
                    r,
                    &s.id,
                    format!(
                        "{} migration(s) applied earlier in this step (before a retry or a resume): {}",
                        earlier.len(),
                        earlier
                            .iter()
                            .map(|e| e["version"].as_str().unwrap_or("repeatable"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
            earlier
        }
        _ => Vec::new(),
    };
    let repeat: Vec<&Migration> = pending
        .repeatables
        .iter()
        .filter(|(_, _, runs)| *runs)
        .map(|(x, _, _)| *x)
        .collect();
    let total = pending.run.len() + repeat.len();
    if total == 0 {
        let none = match m.direction {
            Direction::Up => "nothing to do: no migration is pending",
            Direction::Down => "nothing to do: no migration it would roll back is applied",
        };
        super::sql::log(r, &s.id, none.into());
    }
    if m.direction == Direction::Down && !set.repeatables.is_empty() {
        super::sql::log(
            r,
            &s.id,
            format!(
                "note: {} repeatable migration(s) stay as they are: Flyway has no undo for them",
                set.repeatables.len()
            ),
        );
    }
    if !pending.repeatables.is_empty() {
        details["repeatables"] = pending
            .repeatables
            .iter()
            .map(|(x, state, runs)| {
                json!({"name": x.name, "file": x.up.file, "state": state.name(), "runs": runs})
            })
            .collect();
        let held = pending
            .repeatables
            .iter()
            .filter(|(_, st, runs)| st.due() && !runs)
            .count();
        if held > 0 {
            super::sql::log(
                r,
                &s.id,
                format!(
                    "warning: {held} repeatable migration(s) are due and not run: `to` or `steps` may stop before the newest version, which they are written against"
                ),
            );
        }
    }
    let all: Vec<&Migration> = pending.run.iter().copied().chain(repeat).collect();
    // Unset, a Flyway project's `group` decides, going up, as it does for
    // the project's Flyway.
    let grouped = match m.single_transaction {
        Some(_) => None,
        None => set
            .flyway_conf
            .as_ref()
            .and_then(|c| c.group.clone())
            .filter(|(on, _)| *on && set.format == migrations::Format::Flyway)
            .filter(|_| m.direction == Direction::Up)
            .map(|(_, at)| at),
    };
    let single = (m.single_transaction == Some(true) || grouped.is_some()) && !all.is_empty();
    if single {
        begin_single(r, &s.id, &all, m.direction, grouped.as_deref()).await?;
    }
    // The history table this step made is in the journal before the first
    // script runs: a run killed in that script (which then applied
    // nothing) leaves the table to a `runbook rollback`, which knows the
    // run applied nothing.
    if let Some(made) = made.as_ref().filter(|_| !single) {
        r.journal_progress(json!({ "applied": [], "history_made": made }))
            .await;
    }
    // Flyway's repeatable migrations after every versioned one (they run
    // only going up).
    for (i, x) in all.iter().copied().enumerate() {
        let repeatable = x.version.is_empty();
        let again = pending.again_of(x);
        let lines = if repeatable {
            vec![format!(
                "[{}/{total}] applying repeatable {}",
                i + 1,
                x.up.file
            )]
        } else if let Some(why) = again {
            vec![format!(
                "[{}/{total}] running {} {} again, as Liquibase does: {}",
                i + 1,
                x.version,
                x.name,
                why.why()
            )]
        } else {
            let configured = history.tool.configured_out_of_order(set);
            let why = configured
                .filter(|_| m.out_of_order.is_none())
                .map(|(_, at)| at);
            announce(x, m.direction, &newest, set, why, (i + 1, total))
        };
        for line in lines {
            super::sql::log(r, &s.id, line);
        }
        let fresh = m.direction == Direction::Down;
        let how = How {
            nested: single,
            fresh,
            again: again.is_some(),
            ..How::default()
        };
        match run_script(&r.db, history, x, m.direction, &ctx, how).await {
            Ok(done) => {
                if let Some((held, _)) = done.checks {
                    super::sql::log(
                        r,
                        &s.id,
                        format!("  its {held} pre-migration check(s) returned true"),
                    );
                }
                if let Some(why) = &done.no_transaction_because {
                    super::sql::log(r, &s.id, format!("  ran without a transaction: {why}"));
                }
                if done.left_open {
                    super::sql::log(
                        r,
                        &s.id,
                        "  it ended inside a transaction it opened (a BEGIN with no COMMIT after it): committed with its history row, as the tool that wraps it in its own transaction commits it".into(),
                    );
                }
                let mut entry = json!({
                    "version": x.version,
                    "name": x.name,
                    "direction": m.direction,
                    "duration_ms": super::ms(done.duration),
                    "transaction": done.in_transaction,
                    "statements": done.statements,
                });
                if repeatable {
                    entry["version"] = Value::Null;
                    entry["repeatable"] = true.into();
                }
                // Run again: what it replaced is not kept, so no undo of
                // this run runs its rollback ([`applied_by_this_run`]).
                if let Some(why) = again {
                    entry["again"] = why.name().into();
                }
                // A changeset's place moves when one is added before it;
                // its name does not.
                if let Some(c) = &x.changeset {
                    entry["changeset"] = c.key().into();
                }
                if let Some((held, _)) = done.checks {
                    entry["checks_held"] = held.into();
                }
                done_list.push(entry);
                // Committed: in the journal before the next one starts, for
                // a resume or a rollback after the runner dies.
                if !single {
                    r.journal_progress(json!({ "applied": done_list, "history_made": made }))
                        .await;
                }
            }
            Err(f) => {
                if single {
                    r.db.rollback().await;
                } else if f.retry && (!done_list.is_empty() || f.maybe_committed) {
                    let mut carried = done_list.clone();
                    if f.maybe_committed {
                        let mut entry = json!({
                            "version": x.version,
                            "name": x.name,
                            "direction": m.direction,
                            "maybe": true,
                        });
                        if let Some(c) = &x.changeset {
                            entry["changeset"] = c.key().into();
                        }
                        carried.push(entry);
                    }
                    r.migrate_resume = Some((s.id.clone(), carried));
                }
                let mut fail = script_failed(x, f, details, done_list, single);
                if let Some(made) = &made {
                    fail.partial
                        .output
                        .insert("history_made".into(), made.clone());
                    if fail.unchanged.is_some() && !drop_made(r, &s.id, (history, set), made).await
                    {
                        // Its history table stays: the step changed that.
                        fail.unchanged = None;
                    }
                }
                return Err(fail);
            }
        }
    }
    if single && let Err(e) = r.db.client.batch_execute("COMMIT").await {
        // Each migration's deferred constraints were checked at its
        // savepoint; COMMIT can still fail (the session lost): nothing was
        // applied.
        r.db.rollback().await;
        let mut fail = fail(
            format!(
                "the migrations' transaction did not commit: {}",
                db::error_info(&e, None).message
            ),
            "nothing was applied; run the step again once the cause is fixed",
        )
        .unchanged();
        details["applied"] = json!([]);
        details["rolled_back"] = json!(done_list);
        fail.partial = Done {
            details: Some(details),
            ..Done::default()
        };
        return Err(fail);
    }
    details["applied"] = json!(done_list);
    let mut done = Done {
        details: Some(details),
        ..Done::default()
    };
    let count = done_list.len();
    done.output.insert("applied".into(), json!(done_list));
    done.output.insert("count".into(), Value::from(count));
    if let Some(made) = made {
        done.output.insert("history_made".into(), made);
    }
    // Everything this run applied is rolled back: the history table it
    // made goes too, so the database is as the run found it.
    if m.direction == Direction::Down
        && target(r, m)?.0.as_deref() == Some(BEFORE_RUN)
        && let Some(made) = made_by_this_run(r, &history.name)
    {
        drop_made(r, &s.id, (history, set), &made).await;
    }
    Ok(done)
}

/// Drop the history table the run made (`made`, as its step's
/// `history_made` says it), when no migration is left in it; said in the
/// step's log. Whether it is gone.
async fn drop_made(
    r: &mut Run<'_>,
    step: &str,
    (history, set): (&History, &Set),
    made: &Value,
) -> bool {
    let (schema, baselined) = (made["schema"] == true, made["baselined"].is_string());
    match history.drop_made(&r.db, set, schema, baselined).await {
        Ok(true) => {
            super::sql::log(
                r,
                step,
                format!(
                    "dropped {}, which this run made and which records no migration now",
                    history.name
                ),
            );
            true
        }
        Ok(false) => false,
        Err(e) => {
            super::sql::log(
                r,
                step,
                format!(
                    "warning: {}, which this run made, could not be dropped: {}",
                    history.name, e.message
                ),
            );
            false
        }
    }
}

/// Whether a migrate step of this run (or of the run being undone) made
/// the history table `name`: its `history_made`, which says whether it
/// made its schema too, and the baseline it recorded.
fn made_by_this_run(r: &Run<'_>, name: &str) -> Option<Value> {
    recorded_outputs(r)?
        .iter()
        .filter_map(|o| o.get("history_made"))
        .find(|h| h["table"] == name)
        .cloned()
}

/// The log lines before a script runs: its place in the list, and a
/// warning when it is applied below the newest applied version (`why`:
/// where the project's configuration lets Flyway apply it).
fn announce(
    x: &Migration,
    direction: Direction,
    newest: &Newest<'_>,
    set: &Set,
    why: Option<&str>,
    (n, total): (usize, usize),
) -> Vec<String> {
    let mut lines = Vec::new();
    if direction == Direction::Up && newest.is_after(set, x) {
        lines.push(match (x.created_ms, newest.when) {
            (Some(_), Some(_)) => format!(
                "warning: {}'s journal `when` is older than that of the newest applied migration; Drizzle would never run it; applying it out of order",
                x.version
            ),
            _ => format!(
                "warning: {} is older than the newest applied migration ({}); applying it out of order{}",
                x.version,
                newest.version.unwrap_or_default(),
                why.map(|at| format!(", as {at} sets Flyway's outOfOrder"))
                    .unwrap_or_default()
            ),
        });
    }
    let verb = match direction {
        Direction::Up => "applying",
        Direction::Down => "rolling back",
    };
    lines.push(format!("[{n}/{total}] {verb} {} {}", x.version, x.name));
    lines
}

/// What the history says is applied, and what this step would run: none
/// of it while a row is dirty; under `to: before_run`, exactly what this
/// run applied (or, for `runbook rollback`, the run being undone), newest
/// first, and nothing an earlier run built.
async fn decide<'s>(
    r: &Run<'_>,
    m: &PlanMigrate,
    set: &'s Set,
    history: &History,
) -> Result<(Vec<Applied>, Pending<'s>), Fail> {
    let (to, steps) = target(r, m)?;
    // Refused, if they are, before the history table is made.
    let repeat = match m.direction {
        Direction::Up if !set.repeatables.is_empty() => {
            // `to: latest` is the newest version: they run.
            let short = to.as_deref().is_some_and(|t| t != "latest") || steps.is_some();
            repeatables(&r.db, set, history, short).await?
        }
        _ => Vec::new(),
    };
    let baseline = match m.direction {
        Direction::Up if history.tool == Tool::Flyway => {
            match history
                .flyway_start(&r.db, set)
                .await
                .map_err(|e| Fail::new(StepStatus::Failed, e).unchanged())?
            {
                FlywayStart::AsUsual => None,
                FlywayStart::Refused(message, hint) => return Err(refused(message, hint)),
                FlywayStart::Baseline(b) => Some(b),
            }
        }
        _ => None,
    };
    // Going down, a history that does not exist has nothing applied.
    let made = match m.direction {
        Direction::Up => history
            .ensure(&r.db)
            .await
            .map_err(|e| Fail::new(StepStatus::Failed, e).unchanged())?,
        Direction::Down => Ensured::Existed,
    };
    let mut baselined = None;
    if let (Some(b), Ensured::Made { schema }) = (baseline, made) {
        if let Err(e) = history
            .baseline_on_migrate(&r.db, &b.version, b.description.as_deref())
            .await
        {
            let _ = history.drop_made(&r.db, set, schema, true).await;
            return Err(Fail::new(StepStatus::Failed, e).unchanged());
        }
        baselined = Some(b);
    }
    let decided = decide_made(r, m, set, history, (to, steps), repeat).await;
    match (decided, made) {
        (Ok((applied, mut pending)), _) => {
            pending.made = made;
            pending.baselined = baselined;
            Ok((applied, pending))
        }
        // A refusal changed nothing: not even the history table stays.
        (Err(f), Ensured::Made { schema }) => {
            let _ = history
                .drop_made(&r.db, set, schema, baselined.is_some())
                .await;
            Err(f)
        }
        (Err(f), Ensured::Existed) => Err(f),
    }
}

/// [`decide`], once the history table is there.
async fn decide_made<'s>(
    r: &Run<'_>,
    m: &PlanMigrate,
    set: &'s Set,
    history: &History,
    (to, steps): (Option<String>, Option<u32>),
    repeat: Vec<(&'s Migration, Repeatable, bool)>,
) -> Result<(Vec<Applied>, Pending<'s>), Fail> {
    let applied = history
        .read(&r.db, set)
        .await
        .map_err(|e| Fail::new(StepStatus::Failed, e).unchanged())?;
    if let Some(d) = applied.iter().find(|a| a.dirty) {
        let (message, hint) = history.dirty_message(d);
        return Err(refused(message, &hint));
    }
    // Where the history does not say which run applied a migration, what
    // this run applied is what the step being undone recorded it applied.
    let recorded = if to.as_deref() == Some(BEFORE_RUN) && !history.tool.records_runs() {
        Some(applied_by_this_run(r).ok_or_else(|| {
            refused(
                format!(
                    "`to: before_run` needs to know which migrations that run applied: the {} history does not record which run applied each, and no migrate step of the run recorded what it applied",
                    history.tool.name()
                ),
                "give the version to roll back to (`to: \"{{ params.version }}\"`), or use runbook's own history",
            )
        })?)
    } else {
        None
    };
    let before_run = to.as_deref() == Some(BEFORE_RUN);
    let mut pending = select(
        set,
        &applied,
        history,
        m.direction,
        to.as_deref().filter(|t| *t != BEFORE_RUN),
        steps.filter(|_| !before_run),
    );
    if before_run {
        let ours = |m: &Migration| match &recorded {
            Some(list) => list.iter().any(|x| x.is(m)),
            None => applied
                .iter()
                .any(|a| a.version == m.version && a.run_id == r.origin_run_id),
        };
        pending.run.retain(|m| ours(m));
        if let Some(n) = steps {
            pending.run.truncate(n as usize);
        }
        pending.kept_later = kept_later(set, &applied, &pending.run);
        pending.stays = ran_again_by_this_run(r);
        // Passed over only by what this run's rollback undoes.
        let run = &pending.run;
        pending
            .code
            .retain(|c| run.iter().any(|m| set.cmp(&c.version, &m.version).is_gt()));
    }
    pending.repeatables = repeat;
    if let Some((message, hint)) = code_passed_over(set, &pending, m.direction, false) {
        return Err(refused(message, &hint));
    }
    if m.direction == Direction::Up && !history.tool.applies_out_of_order(set, m.out_of_order) {
        let early = &pending.early;
        if let (Some(first), Some(max)) = (early.first(), Newest::of(set, &applied).version) {
            let list: Vec<String> = early
                .iter()
                .map(|x| migrations::labeled(&x.version, &x.name))
                .collect();
            let configured = history.tool.configured_out_of_order(set);
            let whose = match (m.out_of_order, configured) {
                (Some(false), _) => "`out_of_order: false` refuses it".to_string(),
                (None, Some((false, at))) => {
                    format!("{at} turns Flyway's outOfOrder off, and so this step refuses it")
                }
                _ => format!(
                    "{} would not apply a migration out of order, and neither does this step",
                    history.tool.name()
                ),
            };
            return Err(refused(
                format!(
                    "{} pending migration(s) are older than the newest applied ({max}): {}; {whose}",
                    early.len(),
                    list.join(", ")
                ),
                &format!(
                    "nothing ran. {} was written before {max} ran, and may not fit the schema after it: give it a version after {max}; or, if it is safe to run after the newer ones, set `out_of_order: true` on the step (Flyway's outOfOrder, the Supabase CLI's --include-all, goose's -allow-missing)",
                    first.version
                ),
            ));
        }
    }
    // The one it rolls back that the first kept was applied straight after.
    let undone = pending.kept_later.first().and_then(|kept| {
        let at = applied_order(&applied, kept);
        pending
            .run
            .iter()
            .filter(|x| applied_order(&applied, x) < at)
            .max_by_key(|x| applied_order(&applied, x))
    });
    // A rollback that keeps a migration applied after one it undoes runs
    // that one's down under a schema the kept one changed, and leaves the
    // kept one recorded over what may no longer be there.
    if let (Some(kept), Some(undone)) = (pending.kept_later.first(), undone)
        && m.out_of_order != Some(true)
    {
        return Err(refused(
            format!(
                "{} {} applied after {}, and would stay applied while this step rolls back {}: {}'s down would run under a schema changed since it was applied",
                kept_later_list(&pending),
                if pending.kept_later.len() == 1 {
                    "was"
                } else {
                    "were"
                },
                migrations::labeled(&undone.version, &undone.name),
                pending
                    .run
                    .iter()
                    .map(|x| x.version.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                undone.version,
            ),
            &if before_run {
                // What a later run applied: undo that run first.
                let later: Vec<&str> = pending
                    .kept_later
                    .iter()
                    .filter_map(|x| applied.iter().find(|a| a.version == x.version))
                    .map(|a| a.run_id.as_str())
                    .filter(|id| !id.is_empty() && *id != r.origin_run_id)
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                format!(
                    "nothing was rolled back. Undo what was applied after this run first{}; or, if the down is safe with them in place, set `out_of_order: true` on the step",
                    if later.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (`runbook rollback {}`)",
                            later.join("`, `runbook rollback ")
                        )
                    }
                )
            } else {
                format!(
                    "nothing was rolled back. A rollback undoes the last applied first: `steps: {}` rolls back the {0} last applied, {} among them; or, if the down is safe with them in place, set `out_of_order: true` on the step",
                    pending.run.len() + pending.kept_later.len(),
                    kept.version,
                )
            },
        ));
    }
    // A Liquibase changeset with a context or labels, pending where later
    // ones are applied: the runs that applied those passed it over, as
    // Liquibase run with contexts (Spring's `spring.liquibase.contexts`)
    // passes over a `context:test` seed. With no word on the contexts,
    // running it would put it where those runs never did.
    if m.direction == Direction::Up && m.select.is_empty() {
        let passed_over: Vec<&Migration> = pending
            .early
            .iter()
            .copied()
            .filter(|x| x.changeset.as_ref().is_some_and(|c| c.is_selective()))
            .collect();
        if let Some(first) = passed_over.first() {
            let said = first.changeset.as_ref().expect("a changeset").selector();
            return Err(refused(
                format!(
                    "{} pending changeset(s) with a context or labels are older than applied ones, which the runs before passed over ({} {}: {said}{}); this step gives no contexts, and would run them",
                    passed_over.len(),
                    first.version,
                    first.name,
                    if passed_over.len() > 1 { "; …" } else { "" }
                ),
                "say the contexts (and label filter) this database is deployed with, as Liquibase is given them: `contexts: prod` on the step; to run them after all, give the contexts that select them",
            ));
        }
    }
    if !history.tool.writable() && !pending.run.is_empty() {
        return Err(refused(
            format!(
                "{} migration(s) would run, and runbook reads the {} history but does not write it",
                pending.run.len(),
                history.tool.name()
            ),
            "deploy with the tool itself (`sqitch deploy`); runbook's status, checks and rehearsals read its registry",
        ));
    }
    Ok((applied, pending))
}

/// The migrations (version and name) this run recorded it applied going
/// up: in a compensation, the step it undoes; anywhere else (an
/// `on_failure` branch, a main-line step), every migrate step of the run.
/// In this run, or, for `runbook rollback`, in the journal of the run
/// being undone. `None` when no such step recorded anything (a run killed
/// in it with its journal off).
fn applied_by_this_run(r: &Run<'_>) -> Option<Vec<Recorded>> {
    let lists: Vec<&Vec<Value>> = recorded_outputs(r)?
        .iter()
        .filter_map(|o| o.get("applied")?.as_array())
        .collect();
    if lists.is_empty() {
        return None;
    }
    // A repeatable migration (no version) has no down to run; a changeset
    // run again is not undone (its rollback undoes the changeset, and the
    // text it replaced is not kept).
    Some(
        lists
            .into_iter()
            .flatten()
            .filter(|a| a["direction"] == "up" && a.get("again").is_none())
            .filter_map(|a| {
                Some(Recorded {
                    version: a["version"].as_str()?.into(),
                    name: a["name"].as_str()?.into(),
                    changeset: a["changeset"].as_str().map(str::to_string),
                })
            })
            .collect(),
    )
}

/// The changesets this run ran again ([`Again`]), as `VERSION NAME`
/// (why): an undo leaves them as they are.
fn ran_again_by_this_run(r: &Run<'_>) -> Vec<String> {
    recorded_outputs(r)
        .unwrap_or_default()
        .iter()
        .filter_map(|o| o.get("applied")?.as_array())
        .flatten()
        .filter_map(|a| {
            Some(format!(
                "{} {} ({})",
                a["version"].as_str()?,
                a["name"].as_str()?,
                a.get("again")?.as_str()?
            ))
        })
        .collect()
}

/// The outputs a `to: before_run` undo reads: in a compensation, the step
/// it undoes; anywhere else, every step of the run. `None` when the step
/// undone recorded nothing.
fn recorded_outputs<'r>(r: &'r Run<'_>) -> Option<Vec<&'r Value>> {
    Some(match r.undoing.as_deref() {
        Some(step) => vec![r.steps_out.get(step)?],
        None => r.steps_out.values().collect(),
    })
}

/// A migration a step recorded it applied.
struct Recorded {
    version: String,
    name: String,
    /// A Liquibase changeset's `FILE::ID::AUTHOR`: by that, where its place
    /// (`version`) moved since.
    changeset: Option<String>,
}

impl Recorded {
    fn is(&self, m: &Migration) -> bool {
        match (&self.changeset, &m.changeset) {
            (Some(k), Some(c)) => *k == c.key(),
            _ => self.version == m.version && self.name == m.name,
        }
    }
}

/// Flyway's repeatable migrations, each with where it stands and whether
/// it runs: those never applied or changed since, after the versioned
/// ones, unless `short` (a `to` or `steps` that may stop before the newest
/// version, which they are written against). Refused while one's last run
/// stopped half-way, and when one would run but the history is not
/// Flyway's (no other records them).
pub(crate) async fn repeatables<'s>(
    db: &Db,
    set: &'s Set,
    history: &History,
    short: bool,
) -> Result<Vec<(&'s Migration, Repeatable, bool)>, Fail> {
    let states = history
        .repeatables(db, set)
        .await
        .map_err(|e| Fail::new(StepStatus::Failed, e).unchanged())?;
    if let Some((x, _)) = states.iter().find(|(_, s)| *s == Repeatable::Dirty) {
        return Err(refused(
            format!(
                "repeatable migration {} stopped half-way on its last run (its newest row in {} did not succeed)",
                x.up.file, history.name
            ),
            "check what it left, then delete that row (`flyway repair` does) and run again",
        ));
    }
    let due = states.iter().filter(|(_, s)| s.due()).count();
    if due > 0 && history.tool != Tool::Flyway {
        return Err(refused(
            format!(
                "{due} repeatable migration(s) (`R__*.sql`) would run, and only Flyway's history records them; this step's history is {}",
                history.describe()
            ),
            "say `history: {format: flyway}` (or --history-format flyway): flyway_schema_history keeps each one's checksum, so it runs again only when it changes",
        ));
    }
    Ok(states
        .into_iter()
        .map(|(x, state)| (x, state, state.due() && !short))
        .collect())
}

/// Applied migrations whose files changed: refused, unless the step
/// allows it; then each change is logged and its new checksum recorded.
async fn accept_changes(
    r: &mut Run<'_>,
    s: &PlanStep,
    m: &PlanMigrate,
    history: &History,
    set: &Set,
    pending: &Pending<'_>,
) -> Result<Vec<String>, Fail> {
    let list: Vec<String> = pending
        .changed
        .iter()
        .map(|(v, f, was, now)| {
            format!(
                "{f} (version {v}): applied with {} {was}, now {now}",
                history.tool.checksum_kind().unwrap_or("checksum")
            )
        })
        .collect();
    // A changeset Liquibase runs again when it changes: recording its new
    // checksum without running it would tell Liquibase (and runbook) that
    // the new text ran.
    // (On Liquibase's history and runbook's it runs again, as Liquibase
    // runs it.)
    let reruns: Vec<&str> = pending
        .changed
        .iter()
        .filter_map(|(v, ..)| set.migrations.iter().find(|x| x.version == *v))
        .filter(|x| x.changeset.as_ref().is_some_and(|c| c.run_on_change))
        .map(|x| x.up.file.as_str())
        .collect();
    if let Some(first) = reruns.first() {
        return Err(refused(
            format!(
                "{} changed changeset(s) say runOnChange:true ({first}{}): Liquibase runs such a changeset again, and runbook does too on Liquibase's history and its own, which record the run again; this step's history is {}, which does not{}",
                reruns.len(),
                if reruns.len() > 1 { ", …" } else { "" },
                history.describe(),
                if m.allow_checksum_change {
                    ", and `allow_checksum_change` would record the new checksum as if the new text had run"
                } else {
                    ""
                }
            ),
            "deploy this directory with Liquibase's history (`history: {format: liquibase}`) or runbook's, or give the change a new changeset",
        ));
    }
    if !m.allow_checksum_change {
        return Err(refused(
            format!(
                "{} applied migration(s) changed since they were applied: {}",
                list.len(),
                list.join("; ")
            ),
            "an applied migration must not be edited: restore the file, or add a new migration; `allow_checksum_change: true` accepts the change and records it",
        ));
    }
    for (v, f, was, now) in &pending.changed {
        super::sql::log(
            r,
            &s.id,
            format!("warning: {f} changed after it was applied (allowed): {was} -> {now}"),
        );
        if let Some(x) = set.migrations.iter().find(|x| x.version == *v)
            && let Some(sql) = history.sql(&Write::Checksum { m: x })
        {
            let _ = r.db.client.batch_execute(&sql).await;
        }
    }
    Ok(list)
}

/// The step's failure when migration `x` failed after `done_list` were
/// applied: what committed, what is dirty, and whether anything changed.
/// `single_transaction`: every script must be able to run in a
/// transaction (checked before anything runs), then one is opened for all
/// of them, each under a savepoint as a rehearsal nests its legs.
/// `grouped`: where a Flyway project's `group=true` asks for it, where the
/// step does not say.
async fn begin_single(
    r: &mut Run<'_>,
    step: &str,
    all: &[&Migration],
    direction: Direction,
    grouped: Option<&str>,
) -> Result<(), Fail> {
    let asked = match grouped {
        Some(at) => {
            format!("the project's Flyway `group` ({at}) runs them all in one, as this step does")
        }
        None => "`single_transaction` runs them all in one".to_string(),
    };
    for x in all {
        let script = match direction {
            Direction::Up => &x.up,
            Direction::Down => x
                .down_script()
                .expect("checked above: every one has a down"),
        };
        let stmts = statements::split(&script.sql);
        if let (false, why) = migrations::script_mode(script, &stmts) {
            return Err(refused(
                format!(
                    "migration {} cannot run in a transaction ({}), and {asked}",
                    migrations::labeled(&x.version, &x.name),
                    why.unwrap_or_default()
                ),
                match grouped {
                    Some(_) => {
                        "nothing ran; a grouped Flyway migrate fails on it too. Apply it in a migrate step of its own (`to:` the version before it here, then the rest, with `single_transaction: false`)"
                    }
                    None => {
                        "nothing ran; apply it in a migrate step of its own (`to:` the version before it here, then the rest), or drop `single_transaction`"
                    }
                },
            ));
        }
    }
    r.db.client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| fail(db::error_info(&e, None).message, "nothing ran").unchanged())?;
    super::sql::log(
        r,
        step,
        format!(
            "{} migration(s) in one transaction: none is applied unless all are{}",
            all.len(),
            match grouped {
                Some(at) => format!(" (the project's Flyway `group`, {at})"),
                None => String::new(),
            }
        ),
    );
    Ok(())
}

/// A migration failed. What ran before it in the step stays applied;
/// under `single_transaction` (`single`) the step's one transaction was
/// rolled back, those with it, and nothing was applied.
fn script_failed(
    x: &Migration,
    f: ScriptFail,
    mut details: Value,
    done_list: Vec<Value>,
    single: bool,
) -> Fail {
    let before = done_list.len();
    let applied = if single {
        details["rolled_back"] = json!(done_list);
        Vec::new()
    } else {
        done_list
    };
    details["applied"] = json!(applied);
    details["failed"] = json!({
        "version": x.version,
        "name": x.name,
        "statements_done": f.done,
        "transaction": f.in_transaction,
    });
    if !f.index.dropped.is_empty() {
        details["failed"]["dropped_invalid_indexes"] = json!(f.index.dropped);
    }
    let mut error = f.error;
    error.message = format!(
        "migration {}: {}",
        migrations::labeled(&x.version, &x.name),
        error.message
    );
    if single {
        error.hint = Some(format!(
            "nothing was applied: the step's one transaction was rolled back, with the {before} migration(s) before this one"
        ));
    } else if !f.in_transaction && f.done > 0 {
        error.hint = Some(format!(
            "{} statement(s) of it committed before the failure and it is marked dirty; see `runbook migrations status` and repair it by hand",
            f.done
        ));
    }
    if f.maybe_committed {
        error.hint = Some(
            "the connection closed as its COMMIT was sent, so it may have committed: `runbook migrations status` says whether it is applied"
                .into(),
        );
    }
    if f.done == 0 && !f.in_transaction {
        if !f.index.clean() {
            error.hint = Some(
                "it is marked dirty: drop what it left (above), then repair the history row (`runbook migrations repair`) and run the step again".into(),
            );
        } else if !f.index.dropped.is_empty() {
            error.hint = Some(format!(
                "runbook dropped the INVALID index {} that the failed CREATE INDEX CONCURRENTLY left, so nothing of it is left; fix the cause and run the step again",
                f.index.dropped.join(", ")
            ));
        }
    }
    // Retried as what it is: a lost connection reconnects first, and each
    // class is retried only where `retry.on` names it.
    let class = {
        use crate::model::ErrorClass as C;
        match error.class {
            ErrorKind::Deadlock => C::Deadlock,
            ErrorKind::SerializationFailure => C::SerializationFailure,
            ErrorKind::Connection => C::Connection,
            _ => C::LockTimeout,
        }
    };
    let mut fail = Fail::new(f.status, error);
    if f.retry {
        fail.retry_class = Some(class);
    }
    fail.unchanged = if f.maybe_committed || !applied.is_empty() {
        None
    } else if f.in_transaction {
        Some(super::Unchanged::RolledBack)
    } else if f.done > 0 {
        None
    } else {
        f.index.unchanged()
    };
    let mut partial = Done {
        details: Some(details),
        ..Done::default()
    };
    partial.output.insert("applied".into(), json!(applied));
    fail.partial = partial;
    fail
}

/// The text of a simple query's first value.
pub async fn scalar(db: &Db, sql: &str) -> Result<Option<String>, ErrorInfo> {
    let rows = db
        .client
        .simple_query(sql)
        .await
        .map_err(|e| db::error_info(&e, None))?;
    Ok(rows.into_iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(sql: &str) -> Script {
        Script {
            sql: sql.into(),
            file: "1_a.up.sql".into(),
            first_line: 1,
            no_transaction: None,
            written: None,
        }
    }

    fn mode(sql: &str) -> (bool, Option<String>) {
        let s = script(sql);
        migrations::script_mode(&s, &statements::split(sql))
    }

    #[test]
    fn transaction_mode_follows_the_statements() {
        assert_eq!(
            mode("CREATE TABLE t (a int); INSERT INTO t VALUES (1);"),
            (true, None)
        );
        let (tx, why) = mode("CREATE TABLE t (a int);\nCREATE INDEX CONCURRENTLY i ON t (a);");
        assert!(!tx);
        assert!(
            why.unwrap()
                .starts_with("statement 2 (CREATE INDEX CONCURRENTLY")
        );
        let (tx, why) = mode("BEGIN; CREATE TABLE t (a int); COMMIT;");
        assert!(!tx && why.unwrap().contains("manages its own transactions"));
        let (tx, why) =
            mode("ALTER TYPE mood ADD VALUE 'meh';\nUPDATE people SET m = 'meh' WHERE m IS NULL;");
        assert!(
            !tx && why
                .unwrap()
                .contains("adds the enum value 'meh' and statement 2 uses it")
        );
        assert!(mode("ALTER TYPE mood ADD VALUE 'meh';\nSELECT 1;").0);
        // Naming it again in ALTER TYPE is not using it (PostgreSQL takes
        // all of these in the transaction that added it).
        assert!(
            mode(
                "ALTER TYPE mood ADD VALUE 'meh';\nALTER TYPE tone ADD VALUE 'meh';\n\
                 ALTER TYPE mood ADD VALUE 'okay' AFTER 'meh';"
            )
            .0
        );
    }
}
