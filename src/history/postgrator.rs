//! Postgrator's `schemaversion`: a row per applied version (with its name,
//! the MD5 of its `do` file and when), and a first row of version 0.
//! Postgrator takes the highest version as the database's and counts every
//! migration up to it as applied, which is how it is read here too; a row
//! of a version the directory lacks is applied, with no file. A row with
//! no MD5 (a JavaScript migration, or an older table) is not checked.
//! Postgrator has no mark for a script that stopped half-way, and no lock.

use tokio_postgres::Error;

use super::{Applied, History, Write, number};
use crate::migrations::{self, Migration};
use crate::pg::db::Db;
use crate::pg::quote::literal;

/// Postgrator's own DDL, as its `ensureTable` leaves it.
pub(super) fn create(h: &History) -> String {
    format!(
        "CREATE TABLE {t} (version BIGINT PRIMARY KEY, name TEXT, md5 TEXT, run_at TIMESTAMP WITH TIME ZONE);
         INSERT INTO {t} (version) VALUES (0);",
        t = h.quoted
    )
}

pub(super) async fn read(h: &History, db: &Db) -> Result<Vec<Applied>, Error> {
    let rows = db
        .client
        .query(
            &format!(
                // Postgrator's first tables had no md5 column.
                "SELECT version::text, NULLIF(to_jsonb(s) ->> 'md5', '') FROM {} s ORDER BY version",
                h.quoted
            ),
            &[],
        )
        .await?;
    let Some(at) = rows.last().map(|r| r.get::<_, String>(0)) else {
        return Ok(Vec::new());
    };
    let md5 = |v: &str| {
        rows.iter()
            .find(|r| migrations::same_version(&r.get::<_, String>(0), v))
            .and_then(|r| r.get::<_, Option<String>>(1))
    };
    Ok(h.up_to(&at, "0")
        .into_iter()
        .map(|v| Applied {
            version: v.to_string(),
            key: number(v),
            checksum: md5(v),
            by: String::new(),
            direction: "up".into(),
            ..Applied::default()
        })
        .collect())
}

fn insert(h: &History, m: &Migration) -> String {
    format!(
        "INSERT INTO {} (version, name, md5, run_at) VALUES ({}, {}, {}, now())",
        h.quoted,
        number(&m.version),
        literal(&m.name),
        literal(&migrations::postgrator_checksum(&m.up.sql))
    )
}

pub(super) fn write(h: &History, w: &Write<'_>) -> Option<String> {
    super::version_rows(
        h,
        w,
        |m| insert(h, m),
        "md5",
        |m| migrations::postgrator_checksum(&m.up.sql),
    )
}

pub(super) fn baseline(h: &History, todo: &[&Migration]) -> String {
    super::joined(todo, |m| insert(h, m))
}
