//! tern's `schema_version`: one row, the number of the last migration
//! applied; every migration up to it counts as applied. tern numbers its
//! migrations 1, 2, 3… (the directory is refused otherwise), so that
//! number is the file's. tern has no mark for a script that stopped
//! half-way, and keeps no checksums. It holds an advisory lock while it
//! migrates; `migrate` takes the same one ([`LOCK_KEY`]).

use tokio_postgres::Error;

use super::{Applied, History, Write, number};
use crate::model::Direction;
use crate::pg::db::Db;

/// The advisory lock tern's migrator holds (its `lockNum`).
pub const LOCK_KEY: i64 = 9_628_173_550_095_224;

/// tern's own DDL, and its first row.
pub(super) fn create(h: &History) -> String {
    format!(
        "CREATE TABLE {t} (version int4 NOT NULL PRIMARY KEY);
         INSERT INTO {t} (version) VALUES (0);",
        t = h.quoted
    )
}

pub(super) async fn read(h: &History, db: &Db) -> Result<Vec<Applied>, Error> {
    let rows = db
        .client
        .query(&format!("SELECT max(version)::text FROM {}", h.quoted), &[])
        .await?;
    let Some(at) = rows.first().and_then(|r| r.get::<_, Option<String>>(0)) else {
        return Ok(Vec::new());
    };
    let row_of = |version: &str| Applied {
        version: version.to_string(),
        key: at.clone(),
        by: String::new(),
        direction: "up".into(),
        ..Applied::default()
    };
    Ok(h.up_to(&at, "0").into_iter().map(row_of).collect())
}

fn set(h: &History, version: Option<&str>) -> String {
    format!(
        "UPDATE {} SET version = {}",
        h.quoted,
        version.map_or_else(|| "0".to_string(), number)
    )
}

pub(super) fn write(h: &History, w: &Write<'_>) -> Option<String> {
    Some(match *w {
        Write::Finish {
            m,
            direction: Direction::Up,
            ..
        } => set(h, Some(&m.version)),
        Write::Finish {
            m,
            direction: Direction::Down,
            ..
        } => set(h, h.before(&m.version)),
        _ => return None,
    })
}

/// What `tern migrate --destination N` leaves, without running anything.
pub(super) fn baseline(h: &History, through: &str) -> String {
    set(h, Some(through))
}
