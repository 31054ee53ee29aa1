//! Atlas's `atlas_schema_revisions`: a row per revision, by version (text),
//! in the schema of the same name unless Atlas's URL names one. A row
//! records how many of the file's statements were applied of how many;
//! fewer, and not `resolved` (type bit 4, `atlas migrate set`), is a file
//! that stopped half-way, which Atlas refuses to go past. A baseline row
//! (type 1), like any first revision, counts every version before its own
//! as done: Atlas never runs a file older than its first revision. The
//! `hash` is the file's entry in atlas.sum; Atlas does not check it against
//! the file later (atlas.sum guards the directory), so it is no checksum
//! here. The row `.atlas_cloud_identifier` is Atlas Cloud's, not a
//! revision.
//!
//! runbook writes rows as Atlas does: a file outside a transaction gets
//! its row first, with 0 statements applied and an error saying it was
//! started, in its own commit; after each statement, how many are applied
//! and their running hashes (`partial_hashes`, Atlas's SHA-256 of each
//! statement's text in turn); when it stops, the error and the statement;
//! when it ends, every statement applied. Atlas, going on from a row that
//! stopped, checks those hashes against its own parse of the file: where
//! they agree it runs the rest, and where they do not it stops with an
//! error, rather than run a committed statement again.

use tokio_postgres::Error;

use super::{Applied, History, Write, utc};
use crate::migrations::{self, Migration};
use crate::model::Direction;
use crate::pg::db::Db;
use crate::pg::quote::literal;

/// Atlas Cloud's identifier row, which is not a revision.
const CLOUD_ROW: &str = ".atlas_cloud_identifier";

/// Atlas's revision types (bits).
const EXECUTE: i64 = 2;
const RESOLVED: i64 = 4;

/// What a mark says while a script outside a transaction runs.
const STARTED_UP: &str = "runbook: started, not finished";
const STARTED_DOWN: &str = "runbook: its down started, not finished";
/// How the error of a down that stopped starts (its row reads as dirty,
/// going down).
const DOWN_STOPPED: &str = "runbook: its down stopped: ";

/// The advisory lock `atlas migrate apply` holds: FNV-1 (32 bits) of
/// `atlas_migrate_execute`, as Atlas's PostgreSQL driver computes it.
pub(super) fn lock_key() -> i64 {
    let mut h: u32 = 0x811c_9dc5;
    for b in b"atlas_migrate_execute" {
        h = h.wrapping_mul(0x0100_0193) ^ u32::from(*b);
    }
    i64::from(h)
}

/// Atlas's own DDL for PostgreSQL.
pub(super) fn create(h: &History) -> String {
    format!(
        "CREATE TABLE {} (
             \"version\" character varying NOT NULL,
             \"description\" character varying NOT NULL,
             \"type\" bigint NOT NULL DEFAULT 2,
             \"applied\" bigint NOT NULL DEFAULT 0,
             \"total\" bigint NOT NULL DEFAULT 0,
             \"executed_at\" timestamptz NOT NULL,
             \"execution_time\" bigint NOT NULL,
             \"error\" text NULL,
             \"error_stmt\" text NULL,
             \"hash\" character varying NOT NULL,
             \"partial_hashes\" jsonb NULL,
             \"operator_version\" character varying NOT NULL,
             PRIMARY KEY (\"version\")
         )",
        h.quoted
    )
}

pub(super) async fn read(h: &History, db: &Db) -> Result<Vec<Applied>, Error> {
    let rows = db
        .client
        .query(
            &format!(
                "SELECT version, description, type, applied, total, {}, execution_time,
                        coalesce(error, ''), operator_version, dense_rank() OVER (ORDER BY executed_at)
                 FROM {} WHERE version <> $1 ORDER BY version",
                utc("executed_at"),
                h.quoted
            ),
            &[&CLOUD_ROW],
        )
        .await?;
    let mut out: Vec<Applied> = rows
        .iter()
        .map(|r| {
            let (kind, applied, total): (i64, i64, i64) = (r.get(2), r.get(3), r.get(4));
            let error: String = r.get(7);
            let dirty = kind & RESOLVED == 0 && applied < total;
            let nanos: i64 = r.get(6);
            Applied {
                version: r.get(0),
                key: r.get(0),
                name: r.get(1),
                applied_at: r.get(5),
                duration_ms: Some(nanos / 1_000_000),
                by: r.get(8),
                dirty,
                direction: if error == STARTED_DOWN || error.starts_with(DOWN_STOPPED) {
                    "down"
                } else {
                    "up"
                }
                .into(),
                statements_done: i32::try_from(applied).unwrap_or(i32::MAX),
                statements_total: i32::try_from(total).unwrap_or(i32::MAX),
                error: (dirty && !error.is_empty()).then_some(error),
                order: Some(r.get(9)),
                ..Applied::default()
            }
        })
        .collect();
    // Atlas never runs a file older than its first revision (a baseline's,
    // or the first it ran): those count as done.
    if let Some(first) = out.first().map(|a| a.version.clone()) {
        for v in h
            .versions
            .iter()
            .filter(|v| migrations::order(h.format, v, &first).is_lt())
        {
            if !out.iter().any(|a| migrations::same_version(&a.version, v)) {
                out.push(Applied {
                    version: v.clone(),
                    by: format!("Atlas: older than its first revision, {first}"),
                    direction: "up".into(),
                    ..Applied::default()
                });
            }
        }
    }
    Ok(out)
}

/// Atlas's description of a file: its name after the version and `_`,
/// without `.sql` (`.up.sql` in golang-migrate's layout).
fn description(m: &Migration) -> &str {
    super::stem(&m.up.file)
        .split_once('_')
        .map_or("", |(_, d)| d)
}

/// The running hashes of the up's first `done` statements, as Atlas keeps
/// them in `partial_hashes`: after each statement's text (trimmed, its `;`
/// kept), the SHA-256 so far, base64, after `h1:`. With the statement that
/// comes next, if any. `NULL` when none is done. A migration's statements
/// and hashes are worked out once, on its first write: a file of N
/// statements is written after each of them.
fn partial(h: &History, m: &Migration, done: usize) -> (String, Option<String>) {
    let mut cache = h.atlas_partials.lock().expect("atlas partials lock");
    let running = cache
        .entry(m.version.clone())
        .or_insert_with(|| running_hashes(&m.up.sql));
    let sums: Vec<serde_json::Value> = running
        .iter()
        .take(done)
        .map(|(sum, _)| serde_json::Value::String(format!("h1:{sum}")))
        .collect();
    let next = running.get(done).map(|(_, text)| text.clone());
    let json = if sums.is_empty() {
        "NULL".to_string()
    } else {
        format!(
            "{}::jsonb",
            literal(&serde_json::Value::Array(sums).to_string())
        )
    };
    (json, next)
}

/// Each statement of a script, trimmed, with the running SHA-256 (base64)
/// after it.
fn running_hashes(sql: &str) -> Vec<(String, String)> {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    crate::pg::statements::split(sql)
        .iter()
        .map(|st| {
            let text = st.text.trim().to_string();
            h.update(text.as_bytes());
            let sum = base64::engine::general_purpose::STANDARD.encode(h.clone().finalize());
            (sum, text)
        })
        .collect()
}

/// The file's entry in atlas.sum, as Atlas records it with the revision.
fn hash<'h>(h: &'h History, m: &Migration) -> &'h str {
    h.atlas_hashes
        .get(super::file_name(&m.up.file))
        .map_or("", String::as_str)
}

fn operator() -> String {
    format!("runbook {}", env!("CARGO_PKG_VERSION"))
}

/// The revision as Atlas writes it (an upsert on the version).
fn upsert(
    h: &History,
    m: &Migration,
    kind: i64,
    applied: usize,
    total: usize,
    nanos: u128,
    error: Option<&str>,
) -> String {
    format!(
        "INSERT INTO {t} (version, description, type, applied, total, executed_at, execution_time, error, hash, operator_version)
         VALUES ({v}, {d}, {kind}, {applied}, {total}, now(), {nanos}, {e}, {hash}, {op})
         ON CONFLICT (version) DO UPDATE SET description = EXCLUDED.description, type = EXCLUDED.type,
             applied = EXCLUDED.applied, total = EXCLUDED.total, executed_at = EXCLUDED.executed_at,
             execution_time = EXCLUDED.execution_time, error = EXCLUDED.error, error_stmt = NULL,
             partial_hashes = NULL, hash = EXCLUDED.hash, operator_version = EXCLUDED.operator_version",
        t = h.quoted,
        v = literal(&m.version),
        d = literal(description(m)),
        nanos = nanos.min(i64::MAX as u128),
        e = error.map_or_else(|| "NULL".to_string(), literal),
        hash = literal(hash(h, m)),
        op = literal(&operator()),
    )
}

pub(super) fn write(h: &History, w: &Write<'_>) -> Option<String> {
    let t = &h.quoted;
    let row = |m: &Migration| format!("version = {}", literal(&m.version));
    Some(match *w {
        Write::Mark { in_tx: true, .. } => return None,
        // Only an up's mark counts its statements: Atlas has no downs.
        Write::Progress { m, done } => format!(
            "UPDATE {t} SET applied = {done}, partial_hashes = {} WHERE {} AND error = {}",
            partial(h, m, done).0,
            row(m),
            literal(STARTED_UP)
        ),
        Write::Mark {
            m,
            direction: Direction::Up,
            total,
            ..
        } => upsert(h, m, EXECUTE, 0, total.max(1), 0, Some(STARTED_UP)),
        Write::Mark {
            m,
            direction: Direction::Down,
            ..
        } => format!(
            "UPDATE {t} SET type = {EXECUTE}, applied = 0, total = greatest(total, 1), error = {}, partial_hashes = NULL WHERE {}",
            literal(STARTED_DOWN),
            row(m)
        ),
        Write::Failed { m, at, message } => {
            let (hashes, stmt) = partial(h, m, at);
            format!(
                "UPDATE {t} SET applied = {at}, partial_hashes = {hashes}, error = {}, error_stmt = {}
                 WHERE {} AND error = {};
                 UPDATE {t} SET error = {} WHERE {} AND error = {}",
                literal(message),
                stmt.as_deref().map_or_else(|| "NULL".to_string(), literal),
                row(m),
                literal(STARTED_UP),
                literal(&format!("{DOWN_STOPPED}{message}")),
                row(m),
                literal(STARTED_DOWN)
            )
        }
        Write::Finish {
            m,
            direction: Direction::Up,
            duration,
            total,
            ..
        } => upsert(h, m, EXECUTE, total, total, duration.as_nanos(), None),
        Write::Finish {
            m,
            direction: Direction::Down,
            ..
        } => format!("DELETE FROM {t} WHERE {}", row(m)),
        Write::Undo {
            m,
            direction: Direction::Up,
            ..
        } => format!(
            "DELETE FROM {t} WHERE {} AND error = {}",
            row(m),
            literal(STARTED_UP)
        ),
        Write::Undo {
            m,
            direction: Direction::Down,
            ..
        } => format!(
            "UPDATE {t} SET applied = total, error = NULL WHERE {} AND error = {}",
            row(m),
            literal(STARTED_DOWN)
        ),
        Write::Checksum { m } => format!(
            "UPDATE {t} SET hash = {} WHERE {}",
            literal(hash(h, m)),
            row(m)
        ),
    })
}

/// As `atlas migrate set` records files it did not run: resolved rows,
/// with no statements.
pub(super) fn baseline(h: &History, todo: &[&Migration]) -> String {
    super::joined(todo, |m| upsert(h, m, RESOLVED, 0, 0, 0, None))
}

/// As `atlas migrate set` resolves a file that stopped half-way: applied
/// keeps the row, resolved (Atlas goes past it); pending removes it.
pub(super) fn repair(h: &History, a: &Applied, applied: bool) -> String {
    let row = format!(
        "version = {} AND type & {RESOLVED} = 0 AND applied < total",
        literal(&a.key)
    );
    if applied {
        format!(
            "UPDATE {} SET type = {}, error = NULL WHERE {row}",
            h.quoted,
            EXECUTE | RESOLVED
        )
    } else {
        format!("DELETE FROM {} WHERE {row}", h.quoted)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_lock_is_atlas_s() {
        // FNV-1, 32 bits, of "atlas_migrate_execute" (Go's hash/fnv
        // New32, which Atlas's PostgreSQL driver locks with).
        assert_eq!(super::lock_key(), 2_686_470_616);
    }
}
