//! sqitch's registry, read only: `sqitch.changes` has a row per deployed
//! change of each project, with the SHA-1 of its deploy script. runbook
//! reads it to say what is deployed and whether a deploy script changed
//! since; deploying stays with `sqitch deploy`, which also keeps
//! `sqitch.events`, tags and dependencies.

use tokio_postgres::Error;

use super::{Applied, History, utc};
use crate::migrations::Set;
use crate::pg::db::Db;

pub(super) async fn read(h: &History, db: &Db, set: &Set) -> Result<Vec<Applied>, Error> {
    let rows = db
        .client
        .query(
            &format!(
                "SELECT change_id, change, script_hash, {}, committer_name
                 FROM {} WHERE $1::text IS NULL OR project = $1 ORDER BY committed_at",
                utc("committed_at"),
                h.quoted
            ),
            &[&set.project],
        )
        .await?;
    // A reworked change is planned, and deployed, more than once under one
    // name: its n-th row (in the order deployed) is its n-th place in the plan.
    let mut taken: std::collections::HashMap<String, usize> = Default::default();
    Ok(rows
        .iter()
        .map(|r| {
            let change: String = r.get(1);
            let nth = taken.entry(change.clone()).or_default();
            let version = set
                .migrations
                .iter()
                .filter(|m| m.name == change)
                .nth(*nth)
                .map_or_else(|| change.clone(), |m| m.version.clone());
            *nth += 1;
            Applied {
                version,
                name: change,
                key: r.get(0),
                checksum: r.get(2),
                applied_at: r.get(3),
                by: r.get(4),
                direction: "up".into(),
                ..Applied::default()
            }
        })
        .collect())
}
