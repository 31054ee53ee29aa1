//! runbook's own history: one row per migration, marked dirty before its
//! script runs (in its own commit, even for a transactional script, so a
//! killed run always shows), with how far a script outside a transaction
//! got and what stopped it.

use tokio_postgres::Error;

use super::{Applied, History, Write, utc};
use crate::model::Direction;
use crate::pg::db::Db;
use crate::pg::quote::literal;

pub(super) fn create(h: &History) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {t} (
             version text PRIMARY KEY,
             name text NOT NULL,
             checksum text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now(),
             duration_ms bigint,
             run_id text NOT NULL,
             dirty boolean NOT NULL,
             direction text NOT NULL DEFAULT 'up',
             in_transaction boolean NOT NULL DEFAULT true,
             statements_done integer NOT NULL DEFAULT 0,
             statements_total integer NOT NULL DEFAULT 0,
             error text
         );
         COMMENT ON TABLE {t} IS {comment};",
        t = h.quoted,
        comment = literal(&format!(
            "{} migration history, written by runbook migrate",
            crate::snapshot::STATE_COMMENT
        )),
    )
}

pub(super) async fn read(h: &History, db: &Db) -> Result<Vec<Applied>, Error> {
    let rows = db
        .client
        .query(
            &format!(
                "SELECT version, name, checksum, {}, duration_ms, run_id, dirty, direction,
                        in_transaction, statements_done, statements_total, error,
                        dense_rank() OVER (ORDER BY applied_at)
                 FROM {}",
                utc("applied_at"),
                h.quoted
            ),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Applied {
            version: r.get(0),
            name: r.get(1),
            key: r.get(0),
            checksum: Some(r.get(2)),
            applied_at: r.get(3),
            duration_ms: r.get(4),
            run_id: r.get(5),
            by: format!("run {}", r.get::<_, String>(5)),
            dirty: r.get(6),
            direction: r.get(7),
            in_transaction: r.get(8),
            statements_done: r.get(9),
            statements_total: r.get(10),
            error: r.get(11),
            order: Some(r.get(12)),
        })
        .collect())
}

pub(super) fn write(h: &History, w: &Write<'_>) -> Option<String> {
    let t = &h.quoted;
    Some(match *w {
        // A migration run again (a Liquibase changeset's `runOnChange`,
        // `runAlways`) keeps the row of the run that applied it, its
        // checksum and its time, until it finishes: a failure that changed
        // nothing puts back only the mark, and the run that applied it is
        // the one whose undo undoes it.
        Write::Mark {
            m,
            direction: Direction::Up,
            in_tx,
            total,
            again: true,
            ..
        } => format!(
            "UPDATE {t} SET dirty = true, in_transaction = {in_tx}, statements_done = 0,
                 statements_total = {total}, error = NULL
             WHERE version = {}",
            literal(&h.key_of(&m.version))
        ),
        Write::Finish {
            m,
            direction: Direction::Up,
            duration,
            total,
            again: true,
            ..
        } => format!(
            "UPDATE {t} SET dirty = false, statements_done = {total}, duration_ms = {}, applied_at = now(), checksum = {}
             WHERE version = {}",
            duration.as_millis(),
            literal(&m.checksum),
            literal(&h.key_of(&m.version))
        ),
        Write::Undo {
            m,
            direction: Direction::Up,
            again: true,
        } => format!(
            "UPDATE {t} SET dirty = false, error = NULL, statements_done = statements_total WHERE version = {}",
            literal(&h.key_of(&m.version))
        ),
        Write::Mark {
            m,
            direction: Direction::Up,
            run_id,
            in_tx,
            total,
            again: false,
        } => format!(
            "INSERT INTO {t} (version, name, checksum, run_id, dirty, direction, in_transaction, statements_done, statements_total)
             VALUES ({v}, {name}, {sum}, {run}, true, 'up', {in_tx}, 0, {total})
             ON CONFLICT (version) DO UPDATE SET dirty = true, direction = 'up', run_id = EXCLUDED.run_id,
                 in_transaction = EXCLUDED.in_transaction, statements_done = 0,
                 statements_total = EXCLUDED.statements_total, error = NULL, applied_at = now()",
            v = literal(&h.key_of(&m.version)),
            name = literal(&m.name),
            sum = literal(&m.checksum),
            run = literal(run_id),
        ),
        Write::Mark {
            m,
            direction: Direction::Down,
            run_id,
            in_tx,
            total,
            ..
        } => format!(
            "UPDATE {t} SET dirty = true, direction = 'down', run_id = {run}, in_transaction = {in_tx},
                 statements_done = 0, statements_total = {total}, error = NULL
             WHERE version = {v}",
            v = literal(&h.key_of(&m.version)),
            run = literal(run_id),
        ),
        Write::Progress { m, done } => format!(
            "UPDATE {t} SET statements_done = {done} WHERE version = {}",
            literal(&h.key_of(&m.version))
        ),
        Write::Failed { m, at, message } => format!(
            "UPDATE {t} SET error = {} WHERE version = {}",
            literal(&format!("statement {} failed: {message}", at + 1)),
            literal(&h.key_of(&m.version)),
        ),
        Write::Finish {
            m,
            direction: Direction::Up,
            duration,
            total,
            ..
        } => format!(
            "UPDATE {t} SET dirty = false, statements_done = {total}, duration_ms = {}, applied_at = now() WHERE version = {}",
            duration.as_millis(),
            literal(&h.key_of(&m.version))
        ),
        Write::Finish {
            m,
            direction: Direction::Down,
            ..
        }
        | Write::Undo {
            m,
            direction: Direction::Up,
            again: false,
        } => format!("DELETE FROM {t} WHERE version = {}", literal(&h.key_of(&m.version))),
        Write::Undo {
            m,
            direction: Direction::Down,
            ..
        } => format!(
            "UPDATE {t} SET dirty = false, direction = 'up', error = NULL WHERE version = {}",
            literal(&h.key_of(&m.version))
        ),
        Write::Checksum { m } => format!(
            "UPDATE {t} SET checksum = {} WHERE version = {}",
            literal(&m.checksum),
            literal(&h.key_of(&m.version))
        ),
    })
}

pub(super) fn baseline(h: &History, todo: &[&crate::migrations::Migration], by: &str) -> String {
    let rows: Vec<String> = todo
        .iter()
        .map(|m| {
            format!(
                "({}, {}, {}, {}, false, 'up')",
                literal(&h.key_of(&m.version)),
                literal(&m.name),
                literal(&m.checksum),
                literal(by)
            )
        })
        .collect();
    format!(
        "INSERT INTO {} (version, name, checksum, run_id, dirty, direction) VALUES {} \
         ON CONFLICT (version) DO NOTHING",
        h.quoted,
        rows.join(", ")
    )
}

pub(super) fn repair(h: &History, a: &Applied, applied: bool) -> String {
    let v = literal(&a.key);
    if applied {
        format!(
            "UPDATE {} SET dirty = false, error = NULL, direction = 'up' WHERE version = {v} AND dirty",
            h.quoted
        )
    } else {
        format!("DELETE FROM {} WHERE version = {v} AND dirty", h.quoted)
    }
}

pub(super) fn dirty_message(a: &Applied, history: &str) -> String {
    let state = if a.in_transaction {
        "it ran in a transaction, so its changes were rolled back when it stopped: the schema should be as before it".to_string()
    } else {
        format!(
            "it ran statement by statement: {} of {} statements completed before it stopped{}",
            a.statements_done,
            a.statements_total,
            a.error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        )
    };
    format!(
        "migration {} is dirty in {history}: its {} was started by run {} at {} and never finished; {state}",
        crate::migrations::labeled(&a.version, &a.name),
        a.direction,
        a.run_id,
        a.applied_at
    )
}
