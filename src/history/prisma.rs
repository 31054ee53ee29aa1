//! Prisma's `_prisma_migrations`: one row per attempt, named by the
//! migration's folder, with the sha256 of its `migration.sql`. A row with
//! no `finished_at` is a failed migration (Prisma refuses to go on until
//! `prisma migrate resolve`); one with `rolled_back_at` no longer counts.
//!
//! A rollback (which Prisma itself cannot do) sets `rolled_back_at`, as
//! `migrate resolve --rolled-back` would; one outside a transaction is
//! marked in `logs` while it runs.

use tokio_postgres::Error;

use super::{Applied, History, Write, utc};
use crate::migrations::Migration;
use crate::model::Direction;
use crate::pg::db::Db;
use crate::pg::quote::literal;

/// The `logs` of a row whose rollback is under way.
const ROLLING_BACK: &str = "runbook: rolling back";

pub(super) fn create(h: &History) -> String {
    format!(
        "CREATE TABLE {} (
             id varchar(36) PRIMARY KEY NOT NULL,
             checksum varchar(64) NOT NULL,
             finished_at timestamptz,
             migration_name varchar(255) NOT NULL,
             logs text,
             rolled_back_at timestamptz,
             started_at timestamptz NOT NULL DEFAULT now(),
             applied_steps_count integer NOT NULL DEFAULT 0
         );",
        h.quoted
    )
}

/// Prisma's name for a migration: its folder, else the up file's stem.
fn name(m: &Migration) -> String {
    match m.up.file.split_once('/') {
        Some((folder, _)) => folder.to_string(),
        None => super::stem(&m.up.file).to_string(),
    }
}

/// A new row's id: a random version-4 UUID, made by the server, as Prisma
/// makes its ids. Built from random bits with the version (`4`) and the
/// variant (`8` to `b`) in their places, so that it needs no extension and
/// no `gen_random_uuid()` (PostgreSQL 13 on).
const NEW_ID: &str = "(SELECT overlay(overlay(md5(random()::text || clock_timestamp()::text) \
     placing '4' from 13) placing substr('89ab', 1 + floor(random() * 4)::int, 1) from 17)::uuid::text)";

pub(super) async fn read(h: &History, db: &Db) -> Result<Vec<Applied>, Error> {
    let rows = db
        .client
        .query(
            &format!(
                "SELECT id, migration_name, checksum, {}, finished_at IS NULL, logs,
                        (extract(epoch FROM finished_at - started_at) * 1000)::bigint
                 FROM {} WHERE rolled_back_at IS NULL ORDER BY started_at",
                utc("COALESCE(finished_at, started_at)"),
                h.quoted
            ),
            &[],
        )
        .await?;
    let mut out: Vec<Applied> = Vec::new();
    for r in &rows {
        let migration_name: String = r.get(1);
        let logs: Option<String> = r.get(5);
        let rolling_back = logs.as_deref().is_some_and(|l| l.starts_with(ROLLING_BACK));
        let unfinished: bool = r.get(4);
        let a = Applied {
            version: migration_name
                .chars()
                .take_while(char::is_ascii_digit)
                .collect(),
            name: migration_name.clone(),
            key: r.get(0),
            checksum: Some(r.get(2)),
            applied_at: r.get(3),
            duration_ms: r.get(6),
            by: String::new(),
            dirty: unfinished || rolling_back,
            direction: if rolling_back { "down" } else { "up" }.into(),
            error: logs.filter(|_| unfinished),
            ..Applied::default()
        };
        // A later attempt of the same migration replaces an earlier one.
        out.retain(|b| b.name != migration_name);
        out.push(a);
    }
    Ok(out)
}

pub(super) fn write(h: &History, w: &Write<'_>) -> Option<String> {
    let t = &h.quoted;
    let current = |m: &Migration| {
        format!(
            "migration_name = {} AND rolled_back_at IS NULL",
            literal(&name(m))
        )
    };
    let insert = |m: &Migration, finished: &str, steps: u8| {
        format!(
            "INSERT INTO {t} (id, checksum, migration_name, started_at, finished_at, applied_steps_count)
             VALUES ({NEW_ID}, {}, {}, now(), {finished}, {steps})",
            literal(&m.checksum),
            literal(&name(m)),
        )
    };
    Some(match *w {
        Write::Mark { in_tx: true, .. } | Write::Progress { .. } => return None,
        Write::Mark {
            m,
            direction: Direction::Up,
            ..
        } => insert(m, "NULL", 0),
        Write::Mark {
            m,
            direction: Direction::Down,
            run_id,
            ..
        } => format!(
            "UPDATE {t} SET logs = {} WHERE {}",
            literal(&format!("{ROLLING_BACK} (run {run_id})")),
            current(m)
        ),
        Write::Failed { m, at, message } => format!(
            "UPDATE {t} SET logs = {} WHERE {} AND finished_at IS NULL",
            literal(&format!("statement {} failed: {message}", at + 1)),
            current(m)
        ),
        Write::Finish {
            m,
            direction: Direction::Up,
            in_tx: true,
            ..
        } => insert(m, "now()", 1),
        Write::Finish {
            m,
            direction: Direction::Up,
            ..
        } => format!(
            "UPDATE {t} SET finished_at = now(), applied_steps_count = 1 WHERE {} AND finished_at IS NULL",
            current(m)
        ),
        Write::Finish {
            m,
            direction: Direction::Down,
            ..
        } => format!("UPDATE {t} SET rolled_back_at = now() WHERE {}", current(m)),
        Write::Undo {
            m,
            direction: Direction::Up,
            ..
        } => format!(
            "DELETE FROM {t} WHERE {} AND finished_at IS NULL",
            current(m)
        ),
        Write::Undo {
            m,
            direction: Direction::Down,
            ..
        } => format!("UPDATE {t} SET logs = NULL WHERE {}", current(m)),
        Write::Checksum { m } => format!(
            "UPDATE {t} SET checksum = {} WHERE {}",
            literal(&m.checksum),
            current(m)
        ),
    })
}

/// As `prisma migrate resolve --applied` records them, with who did it in
/// `logs`.
pub(super) fn baseline(h: &History, todo: &[&Migration], by: &str) -> String {
    let rows: Vec<String> = todo
        .iter()
        .map(|m| {
            format!(
                "({NEW_ID}, {}, {}, now(), now(), 0, {})",
                literal(&m.checksum),
                literal(&name(m)),
                literal(&format!("runbook: baselined by {by}"))
            )
        })
        .collect();
    format!(
        "INSERT INTO {} (id, checksum, migration_name, started_at, finished_at, applied_steps_count, logs) VALUES {}",
        h.quoted,
        rows.join(", ")
    )
}

/// Applied: finished (or its rollback abandoned); pending: rolled back, as
/// `prisma migrate resolve --rolled-back` records it.
pub(super) fn repair(h: &History, a: &Applied, applied: bool) -> String {
    let row = format!("id = {} AND rolled_back_at IS NULL", literal(&a.key));
    if applied {
        format!(
            "UPDATE {} SET finished_at = COALESCE(finished_at, now()), logs = NULL WHERE {row}",
            h.quoted
        )
    } else {
        format!("UPDATE {} SET rolled_back_at = now() WHERE {row}", h.quoted)
    }
}
