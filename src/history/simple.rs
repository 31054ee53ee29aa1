//! The histories that only list what is applied: dbmate's
//! `schema_migrations` (one `version` per applied migration), goose's
//! `goose_db_version` (a row per up, and per down in older goose; the
//! newest row of a version says whether it is applied, and goose's own
//! first row is version 0), sql-migrate's `gorp_migrations` (a row per
//! applied file, by its file name, with when) and popx's `schema_migration`
//! (a row per applied version; a row of a version's first 14 digits, from
//! pop's older table, counts every version that starts with them, as popx
//! counts it), Diesel's `__diesel_schema_migrations` (a row per applied
//! version, with when) and node-pg-migrate's `pgmigrations` (a row per
//! applied migration, by its file name without `.sql`, with when; its
//! migrator holds [`NODE_PG_MIGRATE_LOCK`], and so does `migrate`). None keeps checksums, and none has a way to mark a script
//! unfinished: a script outside a transaction that stops half-way leaves
//! no trace in them, only in runbook's report.

use tokio_postgres::Error;

use super::{Applied, History, Tool, Write, file_name, number, stem, utc};
use crate::migrations::Migration;
use crate::model::Direction;
use crate::pg::db::Db;
use crate::pg::quote::{ident, literal};

/// The advisory lock node-pg-migrate's runner holds (`PG_MIGRATE_LOCK_ID`).
pub const NODE_PG_MIGRATE_LOCK: i64 = 7_241_865_325_823_964;

/// popx's older versions: the first 14 digits.
const POP_LEGACY_DIGITS: usize = 14;

pub(super) fn create(h: &History) -> String {
    match h.tool {
        Tool::Goose => format!(
            "CREATE TABLE {t} (id serial NOT NULL PRIMARY KEY, version_id bigint NOT NULL, is_applied boolean NOT NULL, tstamp timestamp NULL DEFAULT now());
             INSERT INTO {t} (version_id, is_applied) VALUES (0, true);",
            t = h.quoted
        ),
        Tool::SqlMigrate => format!(
            "CREATE TABLE {} (id varchar(255) NOT NULL PRIMARY KEY, applied_at timestamptz);",
            h.quoted
        ),
        // popx's own DDL, with its index names.
        Tool::Popx => {
            let table = h.name.rsplit('.').next().unwrap_or(&h.name);
            format!(
                "CREATE TABLE {t} (version varchar(48) NOT NULL, version_self int NOT NULL DEFAULT 0);
                 CREATE UNIQUE INDEX {} ON {t} (version);
                 CREATE INDEX {} ON {t} (version_self);",
                ident(&format!("{table}_version_idx")),
                ident(&format!("{table}_version_self_idx")),
                t = h.quoted
            )
        }
        // node-pg-migrate's own DDL.
        Tool::NodePgMigrate => format!(
            "CREATE TABLE {} (id SERIAL PRIMARY KEY, name varchar(255) NOT NULL, run_on timestamp NOT NULL);",
            h.quoted
        ),
        // Diesel's own DDL.
        Tool::Diesel => format!(
            "CREATE TABLE {} (version varchar(50) PRIMARY KEY NOT NULL, run_on timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP);",
            h.quoted
        ),
        _ => format!(
            "CREATE TABLE {} (version varchar(128) PRIMARY KEY);",
            h.quoted
        ),
    }
}

pub(super) async fn read(h: &History, db: &Db) -> Result<Vec<Applied>, Error> {
    let sql = match h.tool {
        Tool::Goose => format!(
            "SELECT version_id::text, {}, id::bigint FROM (
                 SELECT DISTINCT ON (version_id) version_id, is_applied, tstamp, id
                 FROM {} ORDER BY version_id, id DESC
             ) v WHERE is_applied AND version_id <> 0",
            utc("tstamp"),
            h.quoted
        ),
        // The order they were applied in: by when, where the row has no id.
        Tool::SqlMigrate => format!(
            "SELECT id::text, {}, dense_rank() OVER (ORDER BY applied_at) FROM {}",
            utc("applied_at"),
            h.quoted
        ),
        Tool::Diesel => format!(
            "SELECT version::text, {}, dense_rank() OVER (ORDER BY run_on) FROM {}",
            utc("run_on"),
            h.quoted
        ),
        Tool::NodePgMigrate => format!(
            "SELECT name::text, {}, id::bigint FROM {}",
            utc("run_on"),
            h.quoted
        ),
        _ => format!(
            "SELECT version::text, NULL::text, NULL::bigint FROM {}",
            h.quoted
        ),
    };
    let rows = db.client.query(&sql, &[]).await?;
    let applied = |key: String, version: String, at: Option<String>, order: Option<i64>| Applied {
        version,
        key,
        applied_at: at.unwrap_or_default(),
        by: String::new(),
        direction: "up".into(),
        order,
        ..Applied::default()
    };
    let mut out: Vec<Applied> = rows
        .iter()
        .map(|r| {
            let key: String = r.get(0);
            let version = match h.tool {
                // The file's version; a file no longer in the directory by
                // its leading digits.
                Tool::SqlMigrate | Tool::NodePgMigrate => h
                    .files
                    .iter()
                    .position(|f| *f == key || (h.tool == Tool::NodePgMigrate && stem(f) == key))
                    .map(|i| h.versions[i].clone())
                    .unwrap_or_else(|| key.chars().take_while(char::is_ascii_digit).collect()),
                _ => key.clone(),
            };
            applied(key, version, r.get(1), r.get(2))
        })
        .collect();
    if h.tool == Tool::Popx {
        // pop's older rows of 14 digits stand for the versions they count,
        // not for one of their own (unless a version is exactly that).
        let (legacy, mut full): (Vec<Applied>, Vec<Applied>) = out
            .into_iter()
            .partition(|a| a.key.len() == POP_LEGACY_DIGITS && !h.versions.contains(&a.key));
        for v in &h.versions {
            let counted = v.len() > POP_LEGACY_DIGITS
                && legacy.iter().any(|l| v.starts_with(l.key.as_str()))
                && !full.iter().any(|a| a.key == *v);
            if counted {
                full.push(applied(
                    v[..POP_LEGACY_DIGITS].to_string(),
                    v.clone(),
                    None,
                    None,
                ));
            }
        }
        out = full;
    }
    Ok(out)
}

/// The version as the tool stores it: goose a number, dbmate the file's digits.
fn version(h: &History, m: &Migration) -> String {
    match h.tool {
        Tool::Goose => number(&m.version),
        // sql-migrate knows a migration by its file name.
        Tool::SqlMigrate => literal(file_name(&m.up.file)),
        // node-pg-migrate by its file name without `.sql`.
        Tool::NodePgMigrate => literal(stem(&m.up.file)),
        _ => literal(
            &m.version
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>(),
        ),
    }
}

fn add(h: &History, m: &Migration) -> String {
    match h.tool {
        Tool::Goose => format!(
            "INSERT INTO {} (version_id, is_applied) VALUES ({}, true)",
            h.quoted,
            version(h, m)
        ),
        Tool::SqlMigrate => format!(
            "INSERT INTO {} (id, applied_at) VALUES ({}, now())",
            h.quoted,
            version(h, m)
        ),
        Tool::NodePgMigrate => format!(
            "INSERT INTO {} (name, run_on) VALUES ({}, now())",
            h.quoted,
            version(h, m)
        ),
        _ => format!(
            "INSERT INTO {} (version) VALUES ({})",
            h.quoted,
            version(h, m)
        ),
    }
}

fn remove(h: &History, m: &Migration) -> String {
    let column = match h.tool {
        Tool::Goose => "version_id",
        Tool::SqlMigrate => "id",
        Tool::NodePgMigrate => "name",
        _ => "version",
    };
    let delete = format!(
        "DELETE FROM {} WHERE {column} = {}",
        h.quoted,
        version(h, m)
    );
    match h.tool {
        Tool::Popx => format!("{};\n{delete}", split_legacy(h, m)),
        _ => delete,
    }
}

/// popx: before a version covered only by pop's older 14-digit row is
/// rolled back, that row becomes a row of each other version it covers,
/// and goes. Left as it is, it would still count the rolled-back version as
/// applied (popx deletes only the full version, so its next down would run
/// the same down again). Nothing happens where the version has its own row
/// or no such row exists.
fn split_legacy(h: &History, m: &Migration) -> String {
    if m.version.len() <= POP_LEGACY_DIGITS || !m.version.is_char_boundary(POP_LEGACY_DIGITS) {
        return "SELECT 1".into();
    }
    let prefix = &m.version[..POP_LEGACY_DIGITS];
    let legacy = literal(prefix);
    let own = literal(&m.version);
    let others: Vec<String> = h
        .versions
        .iter()
        .filter(|v| v.len() > POP_LEGACY_DIGITS && v.starts_with(prefix) && **v != m.version)
        .map(|v| format!("({})", literal(v)))
        .collect();
    let covered = format!(
        "EXISTS (SELECT 1 FROM {t} WHERE version = {legacy}) AND NOT EXISTS (SELECT 1 FROM {t} WHERE version = {own})",
        t = h.quoted
    );
    let insert = if others.is_empty() {
        String::new()
    } else {
        format!(
            "INSERT INTO {t} (version) SELECT v FROM (VALUES {}) o(v)
             WHERE {covered} AND NOT EXISTS (SELECT 1 FROM {t} WHERE version = o.v);\n",
            others.join(", "),
            t = h.quoted
        )
    };
    format!(
        "{insert}DELETE FROM {t} WHERE version = {legacy} AND NOT EXISTS (SELECT 1 FROM {t} WHERE version = {own})",
        t = h.quoted
    )
}

pub(super) fn write(h: &History, w: &Write<'_>) -> Option<String> {
    match *w {
        Write::Finish {
            m,
            direction: Direction::Up,
            ..
        } => Some(add(h, m)),
        Write::Finish {
            m,
            direction: Direction::Down,
            ..
        } => Some(remove(h, m)),
        _ => None,
    }
}

pub(super) fn baseline(h: &History, todo: &[&Migration]) -> String {
    super::joined(todo, |m| add(h, m))
}
