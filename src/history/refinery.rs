//! Refinery's `refinery_schema_history`: a row per applied version (an
//! integer), with the migration's name, when (RFC 3339 text) and its
//! checksum. Refinery's files are named like Flyway's (`V1__name.sql`), so
//! its directory is the `flyway` format; its name is the part after `__`,
//! underscores kept. The checksum is Refinery's: SipHash-1-3 (keys 0, 0)
//! over the name, the version as a 32-bit integer (64-bit where the table's
//! `version` is `int8`, Refinery's `int8-versions`) and the SQL as the file
//! has it (byte-order mark included, placeholders not filled), each hashed
//! as Rust's `Hash` does, printed as a decimal `u64`. Refinery refuses to
//! run when a checksum differs, so it must be exact. Refinery has no mark
//! for a script that stopped half-way, and no lock.

use std::hash::{Hash, Hasher};

use tokio_postgres::Error;

use super::{Applied, History, HistoryError, Write, number};
use crate::migrations::{Format, Migration, Set};
use crate::pg::db::Db;
use crate::pg::quote::literal;

/// Refinery's own DDL (`ASSERT_MIGRATIONS_TABLE_QUERY`, 32-bit versions).
pub(super) fn create(h: &History) -> String {
    format!(
        "CREATE TABLE {} (version int4 PRIMARY KEY, name VARCHAR(255), applied_on VARCHAR(255), checksum VARCHAR(255))",
        h.quoted
    )
}

pub(super) async fn read(h: &History, db: &Db) -> Result<Vec<Applied>, Error> {
    let rows = db
        .client
        .query(
            &format!(
                "SELECT version::text, coalesce(name, ''), coalesce(applied_on, ''), checksum FROM {} ORDER BY version",
                h.quoted
            ),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Applied {
            version: r.get(0),
            key: r.get(0),
            name: r.get(1),
            applied_at: r.get(2),
            checksum: r.get(3),
            by: String::new(),
            direction: "up".into(),
            ..Applied::default()
        })
        .collect())
}

/// The migration's name as Refinery knows it: its file name after `__`,
/// without `.sql`, underscores kept.
fn name(m: &Migration) -> &str {
    let file = m.up.file.rsplit('/').next().unwrap_or(&m.up.file);
    let stem = file.strip_suffix(".sql").unwrap_or(file);
    stem.split_once("__").map_or(stem, |(_, name)| name)
}

/// The version as Refinery reads it: a 32-bit integer (64-bit when
/// `wide`), or none (Refinery refuses the file).
fn version(m: &Migration, wide: bool) -> Option<i64> {
    let v: i64 = m.version.parse().ok()?;
    (wide || i32::try_from(v).is_ok()).then_some(v)
}

/// Whether the table's versions are 64-bit (Refinery's `int8-versions`).
pub(super) async fn wide(db: &Db, h: &History) -> Result<bool, Error> {
    let row = db
        .client
        .query_one(
            "SELECT coalesce(bool_or(atttypid = 'int8'::regtype), false) FROM pg_attribute
             WHERE attrelid = to_regclass($1) AND attname = 'version'",
            &[&h.quoted],
        )
        .await?;
    Ok(row.get(0))
}

/// Refinery's checksum of a migration (see the module's comment); `wide`:
/// its versions are 64-bit.
pub(super) fn checksum(m: &Migration, wide: bool) -> Option<String> {
    let mut h = siphasher::sip::SipHasher13::new();
    name(m).hash(&mut h);
    let v = version(m, wide)?;
    if wide {
        v.hash(&mut h);
    } else {
        i32::try_from(v).ok()?.hash(&mut h);
    }
    // As Refinery reads the file: with a byte-order mark, where it has one.
    m.up.as_written().hash(&mut h);
    Some(h.finish().to_string())
}

/// What Refinery would not run as this directory has it: a file not named
/// as Refinery's are, a version that is not a 32-bit integer, a `U` file
/// (Refinery's unversioned migration, which runbook would read as
/// Flyway's undo) or an `R__` file.
pub(super) fn refused(set: &Set, wide: bool) -> Option<HistoryError> {
    let not = |m: &Migration, why| {
        Some(HistoryError::NotRefinery {
            file: m.up.file.clone(),
            why,
        })
    };
    for m in &set.migrations {
        if set.format != Format::Flyway {
            return not(m, "Refinery runs only files named `V<integer>__name.sql`");
        }
        if version(m, wide).is_none() {
            return not(
                m,
                "Refinery's versions are integers (32-bit, unless its table's are `int8`)",
            );
        }
        if let Some(u) = m.down_script() {
            return Some(HistoryError::NotRefinery {
                file: u.file.clone(),
                why: "a `U` file is Refinery's unversioned migration, not an undo",
            });
        }
    }
    set.repeatables
        .first()
        .and_then(|m| not(m, "Refinery has no repeatable migrations"))
}

fn insert(h: &History, m: &Migration) -> String {
    format!(
        "INSERT INTO {} (version, name, applied_on, checksum) VALUES ({}, {}, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), {})",
        h.quoted,
        number(&m.version),
        literal(name(m)),
        literal(&checksum(m, h.wide_versions).unwrap_or_default())
    )
}

pub(super) fn write(h: &History, w: &Write<'_>) -> Option<String> {
    super::version_rows(
        h,
        w,
        |m| insert(h, m),
        "checksum",
        |m| checksum(m, h.wide_versions).unwrap_or_default(),
    )
}

pub(super) fn baseline(h: &History, todo: &[&Migration]) -> String {
    super::joined(todo, |m| insert(h, m))
}
