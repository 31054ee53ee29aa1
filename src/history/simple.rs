//! The histories that only list versions: dbmate's `schema_migrations`
//! (one `version` per applied migration) and goose's `goose_db_version`
//! (a row per up, and per down in older goose; the newest row of a
//! version says whether it is applied, and goose's own first row is
//! version 0). Neither keeps checksums, and neither has a way to mark a
//! script unfinished: a script outside a transaction that stops half-way
//! leaves no trace in them, only in runbook's report.

use tokio_postgres::Error;

use super::{Applied, History, Tool, Write, number, utc};
use crate::migrations::Migration;
use crate::model::Direction;
use crate::pg::db::Db;
use crate::pg::quote::literal;

pub(super) fn create(h: &History) -> String {
    match h.tool {
        Tool::Goose => format!(
            "CREATE TABLE {t} (id serial NOT NULL PRIMARY KEY, version_id bigint NOT NULL, is_applied boolean NOT NULL, tstamp timestamp NULL DEFAULT now());
             INSERT INTO {t} (version_id, is_applied) VALUES (0, true);",
            t = h.quoted
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
            "SELECT version_id::text, {} FROM (
                 SELECT DISTINCT ON (version_id) version_id, is_applied, tstamp
                 FROM {} ORDER BY version_id, id DESC
             ) v WHERE is_applied AND version_id <> 0",
            utc("tstamp"),
            h.quoted
        ),
        _ => format!("SELECT version::text, NULL::text FROM {}", h.quoted),
    };
    let rows = db.client.query(&sql, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| Applied {
            version: r.get(0),
            key: r.get(0),
            applied_at: r.get::<_, Option<String>>(1).unwrap_or_default(),
            by: h.tool.name().into(),
            direction: "up".into(),
            ..Applied::default()
        })
        .collect())
}

/// The version as the tool stores it: goose a number, dbmate the file's digits.
fn version(h: &History, m: &Migration) -> String {
    match h.tool {
        Tool::Goose => number(&m.version),
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
        _ => format!(
            "INSERT INTO {} (version) VALUES ({})",
            h.quoted,
            version(h, m)
        ),
    }
}

fn remove(h: &History, m: &Migration) -> String {
    let column = if h.tool == Tool::Goose {
        "version_id"
    } else {
        "version"
    };
    format!(
        "DELETE FROM {} WHERE {column} = {}",
        h.quoted,
        version(h, m)
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
    todo.iter()
        .map(|m| add(h, m))
        .collect::<Vec<_>>()
        .join(";\n")
}
