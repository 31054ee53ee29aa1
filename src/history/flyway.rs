//! Flyway's `flyway_schema_history`: one row per event, ranked. A version's
//! newest row says where it stands: an `SQL` row that succeeded is applied,
//! one that did not is a failed migration (Flyway refuses to go on until
//! `flyway repair`), and an `UNDO_SQL` row undoes it, as Flyway Teams
//! records an undo. A `BASELINE` row counts every version up to its own as
//! applied. Checksums are Flyway's CRC-32 of the script's lines. A
//! repeatable migration's rows have no version: the newest row with its
//! description says which checksum it was last applied with.

use tokio_postgres::Error;

use super::{Applied, History, Write, utc};
use crate::migrations::{self, Migration};
use crate::model::Direction;
use crate::pg::db::Db;
use crate::pg::quote::literal;

pub(super) fn create(h: &History) -> String {
    let table = h.name.rsplit('.').next().unwrap_or(&h.name);
    format!(
        "CREATE TABLE {t} (
             installed_rank integer NOT NULL PRIMARY KEY,
             version varchar(50),
             description varchar(200) NOT NULL,
             type varchar(20) NOT NULL,
             script varchar(1000) NOT NULL,
             checksum integer,
             installed_by varchar(100) NOT NULL,
             installed_on timestamp NOT NULL DEFAULT now(),
             execution_time integer NOT NULL,
             success boolean NOT NULL
         );
         CREATE INDEX {index} ON {t} (success);",
        t = h.quoted,
        index = crate::pg::quote::ident(&format!("{table}_s_idx")),
    )
}

pub(super) async fn read(h: &History, db: &Db) -> Result<Vec<Applied>, Error> {
    let rows = db
        .client
        .query(
            &format!(
                "SELECT installed_rank::text, version, description, type, script, checksum::text,
                        installed_by, {}, execution_time::bigint, success
                 FROM {} WHERE version IS NOT NULL AND type <> 'SCHEMA' ORDER BY installed_rank",
                utc("installed_on"),
                h.quoted
            ),
            &[],
        )
        .await?;
    let mut out: Vec<Applied> = Vec::new();
    let mut baseline: Option<String> = None;
    for (r, order) in rows.iter().zip(0..) {
        let (version, kind, success): (String, String, bool) = (r.get(1), r.get(3), r.get(9));
        out.retain(|a| a.version != version);
        match kind.as_str() {
            "BASELINE" => {
                baseline = Some(version);
                continue;
            }
            "DELETE" => continue,
            "UNDO_SQL" | "UNDO_JDBC" if success => continue,
            _ => {}
        }
        let undo = kind.starts_with("UNDO");
        out.push(Applied {
            version: version.clone(),
            name: r.get(2),
            key: r.get(0),
            checksum: r.get(5),
            applied_at: r.get(7),
            duration_ms: r.get(8),
            by: r.get(6),
            dirty: !success,
            direction: if undo { "down" } else { "up" }.into(),
            error: (!success).then(|| format!("{} failed", r.get::<_, String>(4))),
            order: Some(order),
            ..Applied::default()
        });
    }
    if let Some(b) = baseline {
        for v in
            h.versions.iter().chain(&h.code_versions).filter(|v| {
                migrations::version_cmp(v, &b).is_le() || migrations::same_version(v, &b)
            })
        {
            if !out.iter().any(|a| migrations::same_version(&a.version, v)) {
                out.push(Applied {
                    version: v.clone(),
                    name: "<< Flyway Baseline >>".into(),
                    by: format!("baseline {b}"),
                    direction: "up".into(),
                    ..Applied::default()
                });
            }
        }
    }
    Ok(out)
}

/// Each repeatable migration's newest row: its description, checksum and
/// whether it succeeded.
pub(super) async fn repeatables(
    h: &History,
    db: &Db,
) -> Result<Vec<(String, Option<i32>, bool)>, Error> {
    let rows = db
        .client
        .query(
            &format!(
                "SELECT DISTINCT ON (description) description, checksum, success FROM {}
                 WHERE version IS NULL AND type = 'SQL' ORDER BY description, installed_rank DESC",
                h.quoted
            ),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Flyway's description of a migration: its name, with spaces.
pub(super) fn description(m: &Migration) -> String {
    m.name.replace('_', " ")
}

/// The version column of a migration's rows: none for a repeatable one.
fn version(m: &Migration) -> String {
    if m.version.is_empty() {
        "NULL".into()
    } else {
        literal(&m.version)
    }
}

/// The rows of a migration: by version, or for a repeatable one by its
/// description.
fn rows_of(m: &Migration) -> String {
    if m.version.is_empty() {
        format!(
            "version IS NULL AND description = {}",
            literal(&description(m))
        )
    } else {
        format!("version = {}", literal(&m.version))
    }
}

/// The name Flyway's `script` column gives a file: its path within its
/// location.
fn script(h: &History, file: &str) -> String {
    h.flyway_locations
        .iter()
        .find_map(|p| file.strip_prefix(p.as_str()))
        .unwrap_or(file)
        .to_string()
}

fn insert(h: &History, m: &Migration, kind: &str, success: bool, ms: u128) -> String {
    let (script, sum) = match kind {
        "UNDO_SQL" => {
            let down = m.down_script().expect("callers check for a down script");
            (
                script(h, &down.file),
                migrations::flyway_checksum(down.as_written()),
            )
        }
        _ => (
            script(h, &m.up.file),
            migrations::flyway_checksum(m.up.as_written()),
        ),
    };
    format!(
        "INSERT INTO {t} (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
         SELECT COALESCE(max(installed_rank), 0) + 1, {v}, {d}, '{kind}', {s}, {sum}, current_user, {ms}, {success} FROM {t}",
        t = h.quoted,
        v = version(m),
        d = literal(&description(m)),
        s = literal(&script),
    )
}

/// The version's newest row of `kind`, if it has not succeeded.
fn unfinished(h: &History, m: &Migration, kind: &str) -> String {
    format!(
        "installed_rank = (SELECT max(installed_rank) FROM {} WHERE {} AND type = '{kind}') AND NOT success",
        h.quoted,
        rows_of(m)
    )
}

pub(super) fn write(h: &History, w: &Write<'_>) -> Option<String> {
    let t = &h.quoted;
    let kind = |d: Direction| match d {
        Direction::Up => "SQL",
        Direction::Down => "UNDO_SQL",
    };
    Some(match *w {
        Write::Mark { in_tx: true, .. } | Write::Progress { .. } | Write::Failed { .. } => {
            return None;
        }
        Write::Mark { m, direction, .. } => insert(h, m, kind(direction), false, 0),
        Write::Finish {
            m,
            direction,
            duration,
            in_tx: true,
            ..
        } => insert(h, m, kind(direction), true, duration.as_millis()),
        Write::Finish {
            m,
            direction,
            duration,
            ..
        } => format!(
            "UPDATE {t} SET success = true, execution_time = {}, installed_on = now() WHERE {}",
            duration.as_millis(),
            unfinished(h, m, kind(direction))
        ),
        Write::Undo { m, direction, .. } => {
            format!(
                "DELETE FROM {t} WHERE {}",
                unfinished(h, m, kind(direction))
            )
        }
        Write::Checksum { m } => format!(
            "UPDATE {t} SET checksum = {} WHERE {} AND type = 'SQL'",
            migrations::flyway_checksum(m.up.as_written()),
            rows_of(m)
        ),
    })
}

/// As `flyway baseline -baselineVersion=V` records it.
pub(super) fn baseline(h: &History, through: &str, by: &str) -> String {
    let by: String = by.chars().take(100).collect();
    baseline_row(h, through, DESCRIPTION, &literal(&by))
}

/// Flyway's baseline description, unless `baselineDescription` says another.
pub const DESCRIPTION: &str = "<< Flyway Baseline >>";

/// The `BASELINE` row: its description is its script too, as Flyway
/// writes it; `by` is SQL (a literal, or `current_user`).
fn baseline_row(h: &History, through: &str, description: &str, by: &str) -> String {
    format!(
        "INSERT INTO {t} (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
         SELECT COALESCE(max(installed_rank), 0) + 1, {v}, {d}, 'BASELINE', {d}, NULL, {by}, 0, true FROM {t}",
        t = h.quoted,
        v = literal(through),
        d = literal(description),
    )
}

/// As Flyway's `baselineOnMigrate` records it, by the connection's user.
pub(super) fn baseline_on_migrate(h: &History, through: &str, description: &str) -> String {
    baseline_row(h, through, description, "current_user")
}

/// Which of `schemas` hold an object, as Flyway asks before it makes a new
/// history: a table, view, materialized view, sequence or foreign table, a
/// type (not a table's row type, nor an array), or a function, that no
/// extension owns.
pub(super) const NOT_EMPTY: &str = "
SELECT n.nspname FROM pg_namespace n
WHERE n.nspname = ANY($1::text[]) AND (
  EXISTS (SELECT FROM pg_class c WHERE c.relnamespace = n.oid
          AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e'))
  OR EXISTS (SELECT FROM pg_type t WHERE t.typnamespace = n.oid
          AND t.typcategory NOT IN ('A', 'C')
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = t.oid AND d.deptype = 'e'))
  OR EXISTS (SELECT FROM pg_proc p WHERE p.pronamespace = n.oid
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')))
ORDER BY array_position($1::text[], n.nspname::text)";

/// As `flyway repair` does for a failed migration: pending removes the
/// failed row; applied marks it succeeded. A failed undo is the reverse.
pub(super) fn repair(h: &History, a: &Applied, applied: bool) -> String {
    let row = format!(
        "installed_rank = {}::integer AND NOT success",
        literal(&a.key)
    );
    let keep_row = (a.direction == "up") == applied;
    if keep_row {
        format!("UPDATE {} SET success = true WHERE {row}", h.quoted)
    } else {
        format!("DELETE FROM {} WHERE {row}", h.quoted)
    }
}
