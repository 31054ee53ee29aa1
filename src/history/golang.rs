//! golang-migrate's `schema_migrations`: one row, the newest applied
//! version and whether it is `dirty`. Every migration up to that version
//! counts as applied. golang-migrate marks the row dirty before each
//! script and clean after it; here only a script outside a transaction is
//! marked first, since a transactional one writes the row in its own
//! transaction. It keeps no checksums.

use tokio_postgres::Error;

use super::{Applied, History, Write, number};
use crate::migrations;
use crate::model::Direction;
use crate::pg::db::Db;

pub(super) fn create(h: &History) -> String {
    format!(
        "CREATE TABLE {} (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);",
        h.quoted
    )
}

pub(super) async fn read(h: &History, db: &Db) -> Result<Vec<Applied>, Error> {
    let rows = db
        .client
        .query(
            &format!(
                "SELECT version::text, dirty FROM {} ORDER BY version DESC LIMIT 1",
                h.quoted
            ),
            &[],
        )
        .await?;
    let Some(row) = rows.first() else {
        return Ok(Vec::new());
    };
    let (at, dirty): (String, bool) = (row.get(0), row.get(1));
    let row_of = |version: &str, dirty: bool| Applied {
        version: version.to_string(),
        key: at.clone(),
        by: String::new(),
        dirty,
        direction: "up".into(),
        ..Applied::default()
    };
    let mut out: Vec<Applied> = h
        .up_to(&at, "-1")
        .into_iter()
        .map(|v| row_of(v, dirty && migrations::same_version(v, &at)))
        .collect();
    if at == "-1" && dirty {
        // golang-migrate's "no version, dirty": the first migration's rollback stopped.
        if let Some(first) = h.versions.first() {
            out.push(Applied {
                direction: "down".into(),
                ..row_of(first, true)
            });
        }
    }
    Ok(out)
}

/// The statements that leave the one row at `version` (none: no row).
fn set(h: &History, version: Option<&str>, dirty: bool) -> String {
    match version {
        Some(v) => format!(
            "DELETE FROM {t};\nINSERT INTO {t} (version, dirty) VALUES ({}, {dirty})",
            number(v),
            t = h.quoted
        ),
        None if dirty => format!(
            "DELETE FROM {t};\nINSERT INTO {t} (version, dirty) VALUES (-1, true)",
            t = h.quoted
        ),
        None => format!("DELETE FROM {}", h.quoted),
    }
}

pub(super) fn write(h: &History, w: &Write<'_>) -> Option<String> {
    Some(match *w {
        Write::Mark { in_tx: true, .. }
        | Write::Progress { .. }
        | Write::Failed { .. }
        | Write::Checksum { .. } => return None,
        Write::Mark {
            m,
            direction: Direction::Up,
            ..
        } => set(h, Some(&m.version), true),
        Write::Mark {
            m,
            direction: Direction::Down,
            ..
        } => set(h, h.before(&m.version), true),
        Write::Finish {
            m,
            direction: Direction::Up,
            ..
        }
        | Write::Undo {
            m,
            direction: Direction::Down,
            ..
        } => set(h, Some(&m.version), false),
        Write::Finish {
            m,
            direction: Direction::Down,
            ..
        }
        | Write::Undo {
            m,
            direction: Direction::Up,
            ..
        } => set(h, h.before(&m.version), false),
    })
}

/// golang-migrate's `force V`.
pub(super) fn baseline(h: &History, through: &str) -> String {
    set(h, Some(through), false)
}

pub(super) fn repair(h: &History, a: &Applied, applied: bool) -> String {
    let t = &h.quoted;
    let at = &a.key;
    if applied && a.direction == "up" {
        return format!("UPDATE {t} SET dirty = false WHERE version = {at} AND dirty");
    }
    let clean = match (applied, h.before(&a.version)) {
        (true, _) => Some(number(&a.version)),
        (false, Some(prev)) => Some(number(prev)),
        (false, None) => None,
    };
    match clean {
        Some(v) => {
            format!("UPDATE {t} SET version = {v}, dirty = false WHERE version = {at} AND dirty")
        }
        None => format!("DELETE FROM {t} WHERE version = {at} AND dirty"),
    }
}
