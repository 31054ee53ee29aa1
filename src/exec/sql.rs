//! `sql` steps: the statements, split by the parser, run one by one, in one
//! transaction unless the step or a statement says otherwise.
//!
//! Before the first statement, sessions in the way of its write-blocking
//! locks are named (and waited for, with `wait_for_blockers`). A failed
//! `CREATE INDEX CONCURRENTLY` has its INVALID index dropped before anything
//! else happens, so a retry starts clean.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_postgres::SimpleQueryMessage;

use super::blockers::{self, Blocker};
use super::{Attempt, Done, Fail, Run};
use crate::events::ErrorKind;
use crate::events::{ErrorInfo, Event, StepStatus, now};
use crate::model::Settings;
use crate::pg::db::{self, Db, QueryFail};
use crate::pg::statements::{self, Mode, Statement, mode};
use crate::plan::Text;

pub(crate) async fn run(
    r: &mut Run<'_>,
    step: &str,
    t: &Text,
    transaction: bool,
    timeout: Option<Duration>,
    settings: &Settings,
) -> Attempt {
    let (sql, _) = r
        .render(t)
        .map_err(|e| Fail::new(StepStatus::Failed, e).unchanged())?;
    let stmts = statements::split(&sql);
    if transaction && let Some(tc) = stmts.iter().find(|s| s.transaction_control) {
        return Err(ends_our_transaction(r, t, &sql, tc));
    }
    let mode = mode(&stmts, transaction);
    if let Mode::Forced(i, why) = mode {
        log(
            r,
            step,
            format!(
                "runs without a transaction: statement {} ({}): {why}; each statement commits on its own",
                i + 1,
                stmts[i].summary()
            ),
        );
    }
    let deadline = timeout.map(|t| Instant::now() + t);
    let blockers = look_for_blockers(r, step, &stmts, settings)
        .await
        .map_err(Fail::unchanged)?;

    let in_tx = mode == Mode::Transaction;
    begin(r, settings, in_tx).await?;

    // A retry outside a transaction goes on after what committed.
    let skip = match r.sql_resume.take() {
        Some((id, n)) if id == step && !in_tx && n < stmts.len() => {
            log(
                r,
                step,
                format!(
                    "statement(s) 1 to {n} committed on an earlier attempt; going on from statement {}",
                    n + 1
                ),
            );
            n
        }
        _ => 0,
    };
    let mut ran = Vec::new();
    let mut dropped = Vec::new();
    let mut total = 0u64;
    for (i, st) in stmts.iter().enumerate().skip(skip) {
        // None: the INVALID indexes before it could not be read, so none
        // after it is known to be its own.
        let before = if st.concurrent_index {
            invalid_indexes(&r.db, &st.relations).await.ok()
        } else {
            Some(Vec::new())
        };
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let started = Instant::now();
        let result = if left.is_some_and(|l| l.is_zero()) {
            Err(QueryFail::Timeout)
        } else {
            r.db.run(&st.text, left, r.stop_signal()).await
        };
        match result {
            Ok(messages) => {
                let rows = rows_affected(&messages);
                total += rows;
                ran.push(json!({
                    "statement": i + 1,
                    "kind": st.summary(),
                    "rows": rows,
                    "duration_ms": super::ms(started.elapsed()),
                }));
                if st.concurrent_index
                    && let Some(mut fail) =
                        still_invalid(r, st, before.as_deref().unwrap_or_default()).await
                {
                    // IF NOT EXISTS skipped the build: only the statements
                    // before this one changed anything.
                    fail.unchanged = (i == 0).then_some(super::Unchanged::NothingTookEffect);
                    return Err(fail);
                }
            }
            Err(fail) => {
                if in_tx {
                    r.db.rollback().await;
                }
                let mut f = r.query_failure(fail, t, &sql, 0, timeout);
                if let Some(p) = f.error.position {
                    let shifted = p + sql[..st.offset].chars().count() as u32;
                    f.error.position = Some(shifted);
                    f.error.location = r.locate(t, &sql, Some(shifted));
                }
                // Whether the statement is known to have left nothing: a
                // concurrent index may have left an INVALID one, dropped
                // here when it can be.
                let mut unchanged = Some(super::Unchanged::NothingTookEffect);
                if st.concurrent_index {
                    let left = drop_new_invalid(r, step, st, before.as_deref()).await;
                    unchanged = left.unchanged();
                    dropped = left.dropped;
                }
                f.partial.details = Some(details(&mode, &ran, &blockers, &dropped, i + 1));
                // In a transaction nothing is left; outside one, the
                // statements before this one committed, and a failed first
                // statement committed nothing unless it left an index.
                f.unchanged = if in_tx {
                    Some(super::Unchanged::RolledBack)
                } else if i > 0 {
                    None
                } else {
                    unchanged
                };
                if !in_tx && i > 0 {
                    r.sql_resume = Some((step.to_string(), i));
                }
                return Err(f);
            }
        }
    }
    if in_tx && let Err(fail) = r.db.run("COMMIT", None, std::future::pending()).await {
        r.db.rollback().await;
        // A COMMIT that fails (a deferred constraint) commits nothing; one
        // whose answer was lost may have committed.
        let lost = matches!(&fail, QueryFail::Db(e) if e.is_closed() || e.as_db_error().is_none());
        let mut f = r.query_failure(fail, t, &sql, 0, timeout);
        f.unchanged = (!lost).then_some(super::Unchanged::RolledBack);
        return Err(f);
    }
    let mut done = Done {
        rows_affected: Some(total),
        details: Some(details(&mode, &ran, &blockers, &dropped, 0)),
        ..Done::default()
    };
    done.output
        .insert("rows_affected".into(), Value::from(total));
    Ok(done)
}

/// A COMMIT or ROLLBACK in a step that runs in a transaction: refused
/// before anything runs, pointing at the statement.
fn ends_our_transaction(r: &Run<'_>, t: &Text, sql: &str, tc: &Statement) -> Fail {
    let position = sql[..tc.offset].chars().count() as u32 + 1;
    Fail::new(
        StepStatus::Failed,
        ErrorInfo {
            class: ErrorKind::Sql,
            message: format!(
                "`{}` in a step that runs in a transaction: it would end runbook's transaction early",
                tc.kind
            ),
            hint: Some(
                "set `transaction: false` on the step to manage transactions yourself, or remove the statement"
                    .into(),
            ),
            position: Some(position),
            location: r.locate(t, sql, Some(position)),
            ..ErrorInfo::default()
        },
    )
    .unchanged()
}

/// Open the step's transaction (when it has one) and apply its settings.
/// A failure here changed nothing.
async fn begin(r: &mut Run<'_>, settings: &Settings, in_tx: bool) -> Result<(), Fail> {
    let setup = match (db::settings_sql(settings, in_tx), in_tx) {
        (Some(s), true) => Some(format!("BEGIN;\n{s}")),
        (None, true) => Some("BEGIN;".into()),
        (s, false) => s,
    };
    if let Some(setup) = setup
        && let Err(e) = r.db.client.simple_query(&setup).await
    {
        if in_tx {
            r.db.rollback().await;
        }
        return Err(Fail::new(StepStatus::Failed, db::error_info(&e, None)).unchanged());
    }
    Ok(())
}

/// The rows a statement's commands reported.
fn rows_affected(messages: &[SimpleQueryMessage]) -> u64 {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .sum()
}

fn details(
    mode: &Mode,
    ran: &[Value],
    blockers: &[Blocker],
    dropped: &[String],
    failed_at: usize,
) -> Value {
    let mut d = json!({
        "transaction": *mode == Mode::Transaction,
        "statements": ran,
    });
    if let Mode::Forced(i, why) = mode {
        d["no_transaction_because"] = json!(format!("statement {}: {why}", i + 1));
    }
    if !blockers.is_empty() {
        d["blockers"] = json!(blockers);
    }
    if !dropped.is_empty() {
        d["dropped_invalid_indexes"] = json!(dropped);
    }
    if failed_at > 0 {
        d["failed_statement"] = json!(failed_at);
    }
    d
}

pub(crate) fn log(r: &mut Run<'_>, step: &str, line: String) {
    r.bus.emit(Event::StepOutput {
        at: now(),
        step: step.to_string(),
        stream: "log".into(),
        line,
    });
}

/// Name what stands in the way of the statements' write-blocking locks, and
/// with `wait_for_blockers`, wait for it to go away first. The lookup is
/// advisory: if it fails, the statement is still tried under its lock timeout.
async fn look_for_blockers(
    r: &mut Run<'_>,
    step: &str,
    stmts: &[Statement],
    settings: &Settings,
) -> Result<Vec<Blocker>, Fail> {
    let mut relations: Vec<String> = Vec::new();
    let mut concurrent_index = false;
    for s in stmts
        .iter()
        .filter(|s| s.lock.is_some() || s.concurrent_index)
    {
        concurrent_index |= s.concurrent_index;
        for rel in &s.relations {
            if !relations.contains(rel) {
                relations.push(rel.clone());
            }
        }
    }
    if relations.is_empty() && !concurrent_index {
        return Ok(Vec::new());
    }
    // A transaction open longer than we are willing to wait for a lock is
    // worth naming.
    let long_after = settings.lock_timeout.map_or(
        Duration::from_millis(crate::plan::DEFAULT_LOCK_TIMEOUT_MS),
        |d| d.0,
    );
    let app = r.app_name.clone();
    let found = match blockers::find(&r.db.client, &relations, &app, long_after).await {
        Ok(f) => f,
        Err(e) => {
            log(
                r,
                step,
                format!("could not look for blocking sessions: {}", e.message),
            );
            return Ok(Vec::new());
        }
    };
    for b in &found {
        log(r, step, format!("blocker: {}", b.describe()));
    }
    let waiting = found
        .iter()
        .any(|b| blockers::in_the_way(b, concurrent_index));
    let Some(limit) = settings.wait_for_blockers.filter(|_| waiting) else {
        return Ok(found);
    };
    log(
        r,
        step,
        format!("waiting up to {limit} for blocking sessions to finish"),
    );
    let stop = r.stop_signal();
    match blockers::wait(
        &r.db.client,
        &relations,
        &app,
        long_after,
        concurrent_index,
        limit.0,
        stop,
    )
    .await
    {
        Ok((left, waited)) if left.is_empty() => {
            log(
                r,
                step,
                format!(
                    "blocking sessions finished after {}",
                    crate::duration::Duration(waited)
                ),
            );
        }
        Ok((left, _)) => {
            let pids: Vec<String> = left.iter().map(|b| b.pid.to_string()).collect();
            log(
                r,
                step,
                format!(
                    "still blocked after {limit} (pids {}); trying under the lock timeout",
                    pids.join(", ")
                ),
            );
        }
        Err(e) if e.class == ErrorKind::Cancelled => {
            return Err(Fail::new(StepStatus::Cancelled, e));
        }
        Err(e) => log(
            r,
            step,
            format!("stopped waiting for blockers: {}", e.message),
        ),
    }
    Ok(found)
}

const INVALID: &str = "\
SELECT c.relname::text, c.oid::regclass::text
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE NOT i.indisvalid
  AND i.indrelid IN (SELECT to_regclass(n) FROM unnest($1::text[]) AS n)";

/// INVALID indexes on the tables: (name, qualified name).
pub(super) async fn invalid_indexes(
    db: &Db,
    relations: &[String],
) -> Result<Vec<(String, String)>, ErrorInfo> {
    let rows = db
        .client
        .query(INVALID, &[&relations])
        .await
        .map_err(|e| db::error_info(&e, None))?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// What a failed `CREATE INDEX CONCURRENTLY` left, once runbook dropped it.
#[derive(Debug, Default)]
pub struct LeftIndexes {
    /// INVALID indexes it left, dropped.
    pub dropped: Vec<String>,
    /// INVALID indexes it left that could not be dropped, each with the
    /// statement that drops it and why it failed; or, when the indexes
    /// could not be read, that reason alone.
    pub left: Vec<String>,
}

impl LeftIndexes {
    /// Nothing of the statement is left in the database.
    pub fn clean(&self) -> bool {
        self.left.is_empty()
    }

    /// How a failed first statement outside a transaction left the
    /// database as it found it, if it did: nothing of it took effect, or
    /// its INVALID index was dropped.
    pub(crate) fn unchanged(&self) -> Option<super::Unchanged> {
        if !self.clean() {
            None
        } else if self.dropped.is_empty() {
            Some(super::Unchanged::NothingTookEffect)
        } else {
            Some(super::Unchanged::CleanedUp)
        }
    }
}

/// After a failed `CREATE INDEX CONCURRENTLY` (`st`): drop the INVALID
/// index it left (any on its table that was not there before it ran), so
/// that a retry or a re-run starts clean, and the failure changed nothing.
pub(super) async fn drop_left_invalid(
    db: &Db,
    st: &Statement,
    before: Option<&[(String, String)]>,
) -> LeftIndexes {
    let mut out = LeftIndexes::default();
    let Some(before) = before else {
        out.left
            .push("an INVALID index, maybe: the indexes before it could not be read".into());
        return out;
    };
    let now_invalid = match invalid_indexes(db, &st.relations).await {
        Ok(list) => list,
        Err(e) => {
            out.left.push(format!(
                "the INVALID indexes it may have left could not be read ({})",
                e.message
            ));
            return out;
        }
    };
    let new: Vec<&String> = now_invalid
        .iter()
        .filter(|i| !before.contains(i))
        .map(|(_, q)| q)
        .collect();
    if new.is_empty() {
        return out;
    }
    // The drop waits for the same transactions the build waited for, so
    // the step's lock timeout would fail it the same way. It takes only
    // SHARE UPDATE EXCLUSIVE, which blocks no reads or writes, so it may
    // wait: up to a minute, then the step's setting comes back.
    let prior: Option<String> = db
        .client
        .query_one("SELECT current_setting('lock_timeout')", &[])
        .await
        .ok()
        .map(|row| row.get(0));
    let _ = db.client.batch_execute("SET lock_timeout = 0").await;
    for name in new {
        let sql = format!("DROP INDEX CONCURRENTLY IF EXISTS {name}");
        match db
            .run(&sql, Some(Duration::from_secs(60)), std::future::pending())
            .await
        {
            Ok(_) => out.dropped.push(name.clone()),
            Err(fail) => {
                let why = match fail {
                    QueryFail::Db(e) => db::error_info(&e, None).message,
                    QueryFail::Timeout => "timed out after 60s".into(),
                    QueryFail::Interrupted => "interrupted".into(),
                };
                out.left.push(format!(
                    "the INVALID index {name}, which dropping failed ({why}): run `{sql};` before trying again"
                ));
            }
        }
    }
    if let Some(p) = prior {
        let _ = db
            .client
            .execute("SELECT set_config('lock_timeout', $1, false)", &[&p])
            .await;
    }
    out
}

/// [`drop_left_invalid`] for a step, logged and warned.
async fn drop_new_invalid(
    r: &mut Run<'_>,
    step: &str,
    st: &Statement,
    before: Option<&[(String, String)]>,
) -> LeftIndexes {
    let out = drop_left_invalid(&r.db, st, before).await;
    for name in &out.dropped {
        log(
            r,
            step,
            format!(
                "dropped the INVALID index {name} left by the failed CREATE INDEX CONCURRENTLY"
            ),
        );
        r.bus.emit(Event::Warning {
            at: now(),
            message: format!(
                "step `{step}`: CREATE INDEX CONCURRENTLY failed and left the INVALID index {name}; runbook dropped it"
            ),
        });
    }
    for left in &out.left {
        r.bus.emit(Event::Warning {
            at: now(),
            message: format!("step `{step}`: CREATE INDEX CONCURRENTLY failed and left {left}"),
        });
    }
    out
}

/// `CREATE INDEX CONCURRENTLY IF NOT EXISTS` succeeds without doing anything
/// when an INVALID index of that name is left from an earlier failure. That
/// is not success: the index the statement asked for does not work.
async fn still_invalid(r: &Run<'_>, st: &Statement, before: &[(String, String)]) -> Option<Fail> {
    let name = st.index.as_deref()?;
    let plain = name.trim_matches('"');
    let (_, qualified) = before
        .iter()
        .find(|(n, _)| n == plain || n.eq_ignore_ascii_case(name))?;
    let still = invalid_indexes(&r.db, &st.relations).await.ok()?;
    still.iter().any(|(_, q)| q == qualified).then(|| {
        Fail::new(
            StepStatus::Failed,
            ErrorInfo {
                class: ErrorKind::Sql,
                message: format!(
                    "index {qualified} already exists and is INVALID (an earlier build failed), so IF NOT EXISTS skipped building it"
                ),
                hint: Some(format!(
                    "run `DROP INDEX CONCURRENTLY {qualified};` and run the step again"
                )),
                ..ErrorInfo::default()
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_concurrent_statement_takes_the_step_out_of_its_transaction() {
        let s = statements::split("ALTER TABLE t ADD c int; CREATE INDEX CONCURRENTLY i ON t (c);");
        assert!(matches!(mode(&s, true), Mode::Forced(1, _)));
        assert_eq!(mode(&s, false), Mode::Autocommit);
        let s = statements::split("ALTER TABLE t ADD c int; CREATE INDEX i ON t (c);");
        assert_eq!(mode(&s, true), Mode::Transaction);
    }
}
