//! Knex's `knex_migrations` (one row per migration file, by name, with the
//! batch it was applied in) and `knex_migrations_lock` (one row, 1 while a
//! migration runs). Every migration of one `migrate` step shares a batch,
//! as one `knex migrate:latest` would. Knex keeps no checksums.
//!
//! A script outside a transaction takes Knex's lock and records its row
//! with no `migration_time` before it runs: if it stops half-way, the lock
//! stays held (Knex itself then refuses to migrate) and the row says which
//! migration it was.

use std::sync::atomic::Ordering;

use tokio_postgres::Error;

use super::{Applied, History, HistoryError, Write, utc};
use crate::migrations::Migration;
use crate::model::Direction;
use crate::pg::db::{self, Db};
use crate::pg::quote::{self, literal};

/// The lock table beside the history table.
pub(super) fn lock(h: &History) -> String {
    let table = h.name.rsplit('.').next().unwrap_or(&h.name);
    format!(
        "{}.{}",
        quote::ident(&h.schema),
        quote::ident(&format!("{table}_lock"))
    )
}

pub(super) fn create(h: &History) -> String {
    format!(
        "CREATE TABLE {t} (id serial PRIMARY KEY, name varchar(255), batch integer, migration_time timestamptz);
         CREATE TABLE IF NOT EXISTS {l} (index serial PRIMARY KEY, is_locked integer);
         INSERT INTO {l} (is_locked) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM {l});",
        t = h.quoted,
        l = lock(h)
    )
}

/// The batch after the newest one: the one this step's migrations get.
pub(super) async fn next_batch(db: &Db, h: &History) -> Result<i64, HistoryError> {
    let exists = h.exists(db).await.map_err(HistoryError::Sql)?;
    if !exists {
        return Ok(1);
    }
    let row = db
        .client
        .query_one(
            &format!(
                "SELECT COALESCE(max(batch), 0)::bigint + 1 FROM {}",
                h.quoted
            ),
            &[],
        )
        .await
        .map_err(|e| HistoryError::Sql(db::error_info(&e, None)))?;
    Ok(row.get(0))
}

/// Knex's name for a migration: its up file's name.
fn name(m: &Migration) -> String {
    super::file_name(&m.up.file).to_string()
}

pub(super) async fn read(h: &History, db: &Db) -> Result<Vec<Applied>, Error> {
    let rows = db
        .client
        .query(
            &format!(
                "SELECT id::text, name, {}, migration_time IS NULL, batch FROM {} ORDER BY id",
                utc("migration_time"),
                h.quoted
            ),
            &[],
        )
        .await?;
    let has_lock: bool = db
        .client
        .query_one(
            &format!("SELECT to_regclass({}) IS NOT NULL", literal(&lock(h))),
            &[],
        )
        .await?
        .get(0);
    let locked = has_lock
        && !db
            .client
            .query(
                &format!("SELECT 1 FROM {} WHERE is_locked = 1", lock(h)),
                &[],
            )
            .await?
            .is_empty();
    let mut out: Vec<Applied> = rows
        .iter()
        .zip(0..)
        .map(|(r, order)| {
            let name: String = r.get(1);
            let unfinished: bool = r.get(3);
            Applied {
                version: name.chars().take_while(char::is_ascii_digit).collect(),
                key: r.get(0),
                applied_at: r.get::<_, Option<String>>(2).unwrap_or_default(),
                by: format!("batch {}", r.get::<_, Option<i32>>(4).unwrap_or(0)),
                dirty: unfinished,
                direction: "up".into(),
                name,
                order: Some(order),
                ..Applied::default()
            }
        })
        .collect();
    if locked && !out.iter().any(|a| a.dirty) {
        out.push(Applied {
            version: String::new(),
            name: lock(h),
            key: String::new(),
            dirty: true,
            direction: "up".into(),
            error: Some(
                "Knex's migration lock is held: a migration is running, or one was stopped; `npx knex migrate:unlock` releases it once you have checked".into(),
            ),
            ..Applied::default()
        });
    }
    Ok(out)
}

pub(super) fn write(h: &History, w: &Write<'_>) -> Option<String> {
    let t = &h.quoted;
    let l = lock(h);
    let batch = h.batch.load(Ordering::Relaxed);
    let row = |m: &Migration| format!("name = {}", literal(&name(m)));
    Some(match *w {
        Write::Mark { in_tx: true, .. }
        | Write::Progress { .. }
        | Write::Failed { .. }
        | Write::Checksum { .. } => return None,
        Write::Mark {
            m,
            direction: Direction::Up,
            ..
        } => format!(
            "UPDATE {l} SET is_locked = 1;
             INSERT INTO {t} (name, batch, migration_time) VALUES ({}, {batch}, NULL)",
            literal(&name(m))
        ),
        Write::Mark {
            m,
            direction: Direction::Down,
            ..
        } => format!(
            "UPDATE {l} SET is_locked = 1;
             UPDATE {t} SET migration_time = NULL WHERE {}",
            row(m)
        ),
        Write::Finish {
            m,
            direction: Direction::Up,
            in_tx: true,
            ..
        } => format!(
            "INSERT INTO {t} (name, batch, migration_time) VALUES ({}, {batch}, now())",
            literal(&name(m))
        ),
        Write::Finish {
            m,
            direction: Direction::Up,
            ..
        }
        | Write::Undo {
            m,
            direction: Direction::Down,
            ..
        } => format!(
            "UPDATE {t} SET migration_time = now() WHERE {};
             UPDATE {l} SET is_locked = 0",
            row(m)
        ),
        Write::Finish {
            m,
            direction: Direction::Down,
            in_tx,
            ..
        } => {
            let unlock = if in_tx {
                String::new()
            } else {
                format!(";\nUPDATE {l} SET is_locked = 0")
            };
            format!("DELETE FROM {t} WHERE {}{unlock}", row(m))
        }
        Write::Undo {
            m,
            direction: Direction::Up,
            ..
        } => format!(
            "DELETE FROM {t} WHERE {} AND migration_time IS NULL;
             UPDATE {l} SET is_locked = 0",
            row(m)
        ),
    })
}

pub(super) fn baseline(h: &History, todo: &[&Migration]) -> String {
    let batch = h.batch.load(Ordering::Relaxed);
    let rows: Vec<String> = todo
        .iter()
        .map(|m| format!("({}, {batch}, now())", literal(&name(m))))
        .collect();
    format!(
        "INSERT INTO {} (name, batch, migration_time) VALUES {}",
        h.quoted,
        rows.join(", ")
    )
}

/// Applied: the row gets its time; pending: it goes. Either way the lock
/// is released, in the same statement.
pub(super) fn repair(h: &History, a: &Applied, applied: bool) -> String {
    let unlock = format!("WITH unlock AS (UPDATE {} SET is_locked = 0)", lock(h));
    if applied {
        format!(
            "{unlock} UPDATE {} SET migration_time = now() WHERE id = {}::integer AND migration_time IS NULL",
            h.quoted,
            literal(&a.key)
        )
    } else {
        format!(
            "{unlock} DELETE FROM {} WHERE id = {}::integer AND migration_time IS NULL",
            h.quoted,
            literal(&a.key)
        )
    }
}
