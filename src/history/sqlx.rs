//! SQLx's `_sqlx_migrations`: a row per applied version (a number), with
//! its description, a SHA-384 checksum of the file, whether it
//! succeeded and how long it took. SQLx refuses to go on while a row has
//! `success = false`, which makes that its mark of a script left
//! unfinished: a script outside a transaction gets its row with `success
//! = false` first, in its own commit, and `true` when it ends. SQLx also
//! holds an advisory lock while it migrates; `migrate` takes the same one
//! ([`lock_key`]), so an application that runs its migrations at start-up
//! waits for runbook, and runbook refuses to start beside it.

use tokio_postgres::Error;

use super::{Applied, History, Write, number, utc};
use crate::migrations::Migration;
use crate::model::Direction;
use crate::pg::db::Db;
use crate::pg::quote::literal;

/// SQLx's own DDL.
pub(super) fn create(h: &History) -> String {
    format!(
        "CREATE TABLE {} (
             version BIGINT PRIMARY KEY,
             description TEXT NOT NULL,
             installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
             success BOOLEAN NOT NULL,
             checksum BYTEA NOT NULL,
             execution_time BIGINT NOT NULL
         );",
        h.quoted
    )
}

pub(super) async fn read(h: &History, db: &Db) -> Result<Vec<Applied>, Error> {
    let rows = db
        .client
        .query(
            &format!(
                "SELECT version::text, description, {}, success, encode(checksum, 'hex'), execution_time,
                        dense_rank() OVER (ORDER BY installed_on)
                 FROM {} ORDER BY version",
                utc("installed_on"),
                h.quoted
            ),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let success: bool = r.get(3);
            let nanos: i64 = r.get(5);
            Applied {
                version: r.get(0),
                key: r.get(0),
                name: r.get(1),
                applied_at: r.get(2),
                checksum: Some(r.get(4)),
                // -1 until SQLx measured it.
                duration_ms: (nanos >= 0).then_some(nanos / 1_000_000),
                by: String::new(),
                dirty: !success,
                // SQLx's row does not say which way a script was going.
                direction: "up".into(),
                order: Some(r.get(6)),
                ..Applied::default()
            }
        })
        .collect())
}

/// The checksum SQLx records: SHA-384 of the file, as hex.
pub fn checksum(sql: &str) -> String {
    use sha2::{Digest, Sha384};
    crate::hash::hex(&Sha384::digest(sql.as_bytes()))
}

/// SQLx's description of a migration: its file name after the version,
/// without `.up.sql` or `.sql`, underscores as spaces.
fn description(m: &Migration) -> String {
    let stem = super::stem(&m.up.file);
    stem.split_once('_')
        .map_or("", |(_, d)| d)
        .replace('_', " ")
}

fn insert(h: &History, m: &Migration, success: bool, nanos: i64) -> String {
    format!(
        "INSERT INTO {} (version, description, success, checksum, execution_time)
         VALUES ({}, {}, {success}, '\\x{}'::bytea, {nanos})
         ON CONFLICT (version) DO UPDATE SET success = EXCLUDED.success, execution_time = EXCLUDED.execution_time",
        h.quoted,
        number(&m.version),
        literal(&description(m)),
        checksum(&m.up.sql),
    )
}

fn set_success(h: &History, m: &Migration, success: bool) -> String {
    format!(
        "UPDATE {} SET success = {success} WHERE version = {}",
        h.quoted,
        number(&m.version)
    )
}

fn delete(h: &History, m: &Migration) -> String {
    format!(
        "DELETE FROM {} WHERE version = {}",
        h.quoted,
        number(&m.version)
    )
}

pub(super) fn write(h: &History, w: &Write<'_>) -> Option<String> {
    Some(match *w {
        Write::Mark { in_tx: true, .. } | Write::Progress { .. } | Write::Failed { .. } => {
            return None;
        }
        Write::Mark {
            m,
            direction: Direction::Up,
            ..
        } => insert(h, m, false, -1),
        Write::Mark {
            m,
            direction: Direction::Down,
            ..
        } => set_success(h, m, false),
        Write::Finish {
            m,
            direction: Direction::Up,
            duration,
            ..
        } => insert(
            h,
            m,
            true,
            i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX),
        ),
        Write::Finish {
            m,
            direction: Direction::Down,
            ..
        }
        | Write::Undo {
            m,
            direction: Direction::Up,
            ..
        } => delete(h, m),
        Write::Undo {
            m,
            direction: Direction::Down,
            ..
        } => set_success(h, m, true),
        Write::Checksum { m } => format!(
            "UPDATE {} SET checksum = '\\x{}'::bytea WHERE version = {}",
            h.quoted,
            checksum(&m.up.sql),
            number(&m.version)
        ),
    })
}

/// Rows as SQLx writes them, with the execution time it writes before it
/// has measured one: these were not run.
pub(super) fn baseline(h: &History, todo: &[&Migration]) -> String {
    super::joined(todo, |m| insert(h, m, true, -1))
}

pub(super) fn repair(h: &History, a: &Applied, applied: bool) -> String {
    if applied {
        format!(
            "UPDATE {} SET success = true WHERE version = {} AND NOT success",
            h.quoted, a.key
        )
    } else {
        format!(
            "DELETE FROM {} WHERE version = {} AND NOT success",
            h.quoted, a.key
        )
    }
}

/// The advisory lock SQLx's migrator holds, by its rule: a constant times
/// the CRC-32 of the database's name.
pub fn lock_key(database: &str) -> i64 {
    0x3d32_ad9e_i64 * i64::from(crc32fast::hash(database.as_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn checksum_and_lock_key_follow_sqlx() {
        // sha384("") and 0x3d32ad9e * crc32("postgres") (0x156a8775).
        assert_eq!(
            super::checksum(""),
            "38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b"
        );
        assert_eq!(crc32fast::hash(b"postgres"), 0x156a_8775);
        assert_eq!(super::lock_key("postgres"), 0x3d32_ad9e * 0x156a_8775);
    }
}
