//! Drizzle's `drizzle.__drizzle_migrations`: a row per applied migration,
//! its `created_at` the journal's `when` for it and its `hash` the sha256
//! of the file. A row is matched to a migration by `created_at`; Drizzle
//! itself only compares the newest row's `created_at` with each `when`,
//! so a migration merged later with an older `when` is one it skips for
//! good. runbook lists such a migration as pending, and applies it with a
//! warning that it is out of order. Drizzle has no downs and no mark for
//! a script that stopped half-way.

use tokio_postgres::Error;

use super::{Applied, History, Write};
use crate::migrations::Migration;
use crate::model::Direction;
use crate::pg::db::Db;
use crate::pg::quote::literal;

/// Drizzle's own DDL.
pub(super) fn create(h: &History) -> String {
    format!(
        "CREATE TABLE {} (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint);",
        h.quoted
    )
}

pub(super) async fn read(h: &History, db: &Db) -> Result<Vec<Applied>, Error> {
    let rows = db
        .client
        .query(
            &format!(
                "SELECT id::text, hash, created_at, id::bigint FROM {} d ORDER BY d.created_at, d.id",
                h.quoted
            ),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let created: Option<i64> = r.get(2);
            let found = h.stamps.iter().position(|s| s.is_some() && *s == created);
            Applied {
                version: found.map_or_else(
                    || created.map_or_else(|| "NULL".into(), |c| c.to_string()),
                    |i| h.versions[i].clone(),
                ),
                name: found.map(|i| h.names[i].clone()).unwrap_or_default(),
                key: r.get(0),
                checksum: Some(r.get(1)),
                by: String::new(),
                direction: "up".into(),
                order: Some(r.get(3)),
                ..Applied::default()
            }
        })
        .collect())
}

/// The journal's `when` of a migration, as SQL.
fn created(m: &Migration) -> String {
    m.created_ms
        .map_or_else(|| "NULL".into(), |c| c.to_string())
}

fn insert(h: &History, m: &Migration) -> String {
    format!(
        "INSERT INTO {} (hash, created_at) VALUES ({}, {})",
        h.quoted,
        literal(&m.checksum),
        created(m)
    )
}

pub(super) fn write(h: &History, w: &Write<'_>) -> Option<String> {
    Some(match *w {
        Write::Finish {
            m,
            direction: Direction::Up,
            ..
        } => insert(h, m),
        Write::Finish {
            m,
            direction: Direction::Down,
            ..
        } => format!("DELETE FROM {} WHERE created_at = {}", h.quoted, created(m)),
        Write::Checksum { m } => format!(
            "UPDATE {} SET hash = {} WHERE created_at = {}",
            h.quoted,
            literal(&m.checksum),
            created(m)
        ),
        _ => return None,
    })
}

pub(super) fn baseline(h: &History, todo: &[&Migration]) -> String {
    super::joined(todo, |m| insert(h, m))
}
