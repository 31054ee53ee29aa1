//! Liquibase's `DATABASECHANGELOG`: a row per changeset run, known by its
//! file (as Liquibase names it), id and author together, in the order run
//! (`ORDEREXECUTED`), with Liquibase's checksum (`MD5SUM`, `9:` and hex)
//! and what ran it. A file's path matches as Liquibase matches it:
//! `classpath:`, a leading `/`, `\` and `..` worked out; the id and the
//! author exactly. Every row is a changeset Liquibase will not run again,
//! whatever its `EXECTYPE` (`EXECUTED`, `MARK_RAN`, `RERAN`, a `FAILED`
//! one that said `failOnError:false`).
//!
//! Liquibase writes a changeset's row once it has run (in its transaction
//! when it has one) and deletes it when it rolls it back; nothing marks a
//! changeset that stopped half-way, so a `runInTransaction:false` script
//! that stops leaves no trace here, only in runbook's report. runbook
//! writes rows as Liquibase does, its `MD5SUM` as Liquibase computes it, so
//! that `liquibase update` reads them as run; a changeset it marks applied
//! without running it (`baseline`) is `MARK_RAN`. Liquibase's lock is
//! `DATABASECHANGELOGLOCK`'s one row, which `migrate` takes as Liquibase
//! takes it ([`take_lock`]).

use tokio_postgres::Error;

use super::{Applied, History, Write};
use crate::migrations::{ChangesetId, Migration, liquibase_normalize};
use crate::model::Direction;
use crate::pg::db::Db;
use crate::pg::quote::{ident, literal};

/// What the `LIQUIBASE` column (20 characters) says wrote a row.
fn writer() -> String {
    format!("runbook {}", env!("CARGO_PKG_VERSION"))
}

/// The lock table beside the history: `databasechangeloglock`, as
/// Liquibase names it whatever the history's name, unless the project
/// names another.
pub(super) fn lock_table(h: &History) -> String {
    format!("{}.{}", ident(&h.schema), ident(&h.liquibase_lock))
}

/// [`lock_table`] as a message names it.
pub fn lock_name(h: &History) -> String {
    format!("{}.{}", h.schema, h.liquibase_lock)
}

/// Liquibase's own DDL for PostgreSQL, both tables, and the lock's row.
pub(super) fn create(h: &History) -> String {
    format!(
        "CREATE TABLE {t} (
             id varchar(255) NOT NULL,
             author varchar(255) NOT NULL,
             filename varchar(255) NOT NULL,
             dateexecuted timestamp NOT NULL,
             orderexecuted integer NOT NULL,
             exectype varchar(10) NOT NULL,
             md5sum varchar(35),
             description varchar(255),
             comments varchar(255),
             tag varchar(255),
             liquibase varchar(20),
             contexts varchar(255),
             labels varchar(255),
             deployment_id varchar(10)
         );
         {lock}",
        t = h.quoted,
        lock = make_lock(h),
    )
}

/// Liquibase's lock table and its row, where they are missing (without
/// the notice `IF NOT EXISTS` would leave in the step's report).
fn make_lock(h: &History) -> String {
    let l = lock_table(h);
    format!(
        "DO $runbook$ BEGIN
             IF to_regnamespace({schema}) IS NULL THEN
                 CREATE SCHEMA {s};
             END IF;
             IF to_regclass({name}) IS NULL THEN
                 CREATE TABLE {l} (
                     id integer NOT NULL PRIMARY KEY,
                     locked boolean NOT NULL,
                     lockgranted timestamp,
                     lockedby varchar(255)
                 );
             END IF;
         END $runbook$;
         INSERT INTO {l} (id, locked) VALUES (1, false) ON CONFLICT DO NOTHING",
        name = literal(&l),
        schema = literal(&ident(&h.schema)),
        s = ident(&h.schema),
    )
}

/// How the history names the directory's files where Liquibase ran from
/// elsewhere: (what to take off the front of runbook's name, what to put
/// there instead). Liquibase names a file as its changelog was given to it
/// (`--changelog-file db/changelog/master.xml` from a project's root), and
/// runbook from the directory it reads ([`crate::migrations::ChangesetId`]);
/// the rows Liquibase wrote say which, and new rows are written the same way.
pub(super) type Renaming = (String, String);

/// A changeset's file as this history names it.
fn recorded(h: &History, c: &ChangesetId) -> String {
    let renaming = h.liquibase_renaming.lock().expect("renaming lock");
    match &*renaming {
        Some((off, on)) if c.file.starts_with(off.as_str()) => {
            format!("{on}{}", &c.file[off.len()..])
        }
        _ => c.file.clone(),
    }
}

/// The renaming that makes runbook's name of a file the one a row has:
/// the row's is longer by a directory in front, or shorter by one.
fn renaming(ours: &str, row: &str) -> Option<Renaming> {
    if let Some(front) = row.strip_suffix(ours).filter(|f| f.ends_with('/')) {
        return Some((String::new(), front.to_string()));
    }
    ours.strip_suffix(row)
        .filter(|f| f.ends_with('/'))
        .map(|front| (front.to_string(), String::new()))
}

pub(super) async fn read(h: &History, db: &Db) -> Result<Vec<Applied>, Error> {
    let rows = db
        .client
        .query(
            &format!(
                "SELECT id, author, filename, {}, exectype, md5sum, coalesce(liquibase, '')
                 FROM {} ORDER BY orderexecuted, dateexecuted",
                super::utc("dateexecuted::timestamptz"),
                h.quoted
            ),
            &[],
        )
        .await?;
    // Each row's changeset: by its file as Liquibase matches it; where the
    // directory's name of the file differs by a directory in front, by
    // that, the renaming most rows take kept for new rows.
    let mut votes: Vec<(Renaming, usize)> = Vec::new();
    let matched: Vec<Option<usize>> = rows
        .iter()
        .map(|r| {
            let (id, author): (String, String) = (r.get(0), r.get(1));
            let file = liquibase_normalize(r.get::<_, &str>(2));
            let mine = |c: &ChangesetId| c.id == id && c.author == author;
            if let Some(i) = h
                .changesets
                .iter()
                .position(|(_, c)| mine(c) && liquibase_normalize(&c.file) == file)
            {
                return Some(i);
            }
            let (i, rename) = h.changesets.iter().enumerate().find_map(|(i, (_, c))| {
                mine(c)
                    .then(|| renaming(&liquibase_normalize(&c.file), &file))
                    .flatten()
                    .map(|r| (i, r))
            })?;
            match votes.iter_mut().find(|(r, _)| *r == rename) {
                Some((_, n)) => *n += 1,
                None => votes.push((rename, 1)),
            }
            Some(i)
        })
        .collect();
    *h.liquibase_renaming.lock().expect("renaming lock") =
        votes.into_iter().max_by_key(|(_, n)| *n).map(|(r, _)| r);
    Ok(rows
        .iter()
        .zip(matched)
        .zip(0..)
        .map(|((r, matched), order)| {
            let (id, author, file): (String, String, String) = (r.get(0), r.get(1), r.get(2));
            let key = format!("{file}::{id}::{author}");
            let exectype: String = r.get(4);
            let wrote: String = r.get(6);
            let by = match (exectype.as_str(), wrote.as_str()) {
                ("EXECUTED", "") => "Liquibase".to_string(),
                ("EXECUTED", w) if w.starts_with("runbook") => w.to_string(),
                ("EXECUTED", w) => format!("Liquibase {w}"),
                (t, "") => format!("Liquibase ({t})"),
                (t, w) if w.starts_with("runbook") => format!("{w} ({t})"),
                (t, w) => format!("Liquibase {w} ({t})"),
            };
            let (version, name) = match matched.map(|i| &h.changesets[i]) {
                Some((v, _)) => (
                    v.clone(),
                    h.names
                        .get(h.versions.iter().position(|x| x == v).unwrap_or(usize::MAX))
                        .cloned()
                        .unwrap_or_else(|| id.clone()),
                ),
                // A changeset the changelog no longer has: known by its
                // whole name, which no place in the directory is.
                None => (key.clone(), id.clone()),
            };
            Applied {
                version,
                name,
                key,
                // A row whose checksum Liquibase cleared (`clear-checksums`)
                // is filled in by its next update, and one of an older
                // Liquibase's rule (`8:`) is upgraded by it: runbook
                // computes only the rule of today's (`9:`).
                checksum: r
                    .get::<_, Option<String>>(5)
                    .filter(|s| s.starts_with("9:")),
                applied_at: r.get(3),
                by,
                direction: "up".into(),
                order: Some(order),
                ..Applied::default()
            }
        })
        .collect())
}

/// The row of a changeset, by its name as this history has it.
fn row(h: &History, c: &ChangesetId) -> String {
    format!(
        "id = {} AND author = {} AND filename = {}",
        literal(&c.id),
        literal(&c.author),
        literal(&recorded(h, c))
    )
}

/// A new row, as Liquibase inserts one: the next `ORDEREXECUTED`, the
/// server's local time, a deployment id of the moment's milliseconds.
fn insert(h: &History, c: &ChangesetId, exectype: &str) -> String {
    let cut = |s: &str| s.chars().take(255).collect::<String>();
    let opt = |s: &str| {
        if s.is_empty() {
            "NULL".to_string()
        } else {
            literal(&cut(s))
        }
    };
    format!(
        "INSERT INTO {t} (id, author, filename, dateexecuted, orderexecuted, exectype, md5sum,
                          description, comments, liquibase, contexts, labels, deployment_id)
         SELECT {id}, {author}, {file}, localtimestamp, coalesce(max(orderexecuted), 0) + 1, {exectype},
                {sum}, 'sql', {comments}, {wrote}, {contexts}, {labels},
                right((extract(epoch FROM clock_timestamp()) * 1000)::bigint::text, 10)
         FROM {t}",
        t = h.quoted,
        id = literal(&c.id),
        author = literal(&c.author),
        file = literal(&cut(&recorded(h, c))),
        exectype = literal(exectype),
        sum = literal(&c.md5sum),
        comments = opt(&c.comments),
        wrote = literal(&writer()),
        contexts = opt(&c.contexts),
        labels = opt(&c.labels),
    )
}

pub(super) fn write(h: &History, w: &Write<'_>) -> Option<String> {
    fn c(m: &Migration) -> Option<&ChangesetId> {
        m.changeset.as_ref()
    }
    Some(match *w {
        // Liquibase marks nothing before a changeset runs, or while it runs.
        Write::Mark { .. } | Write::Progress { .. } | Write::Failed { .. } | Write::Undo { .. } => {
            return None;
        }
        // A changeset that ran before ran again (`runOnChange`,
        // `runAlways`): its row is updated, as Liquibase updates it, and
        // keeps what else it has (its tag).
        Write::Finish {
            m,
            direction: Direction::Up,
            ..
        } => {
            let c = c(m)?;
            format!(
                "UPDATE {t} SET dateexecuted = localtimestamp,
                    orderexecuted = (SELECT coalesce(max(orderexecuted), 0) + 1 FROM {t}),
                    exectype = 'RERAN', md5sum = {sum}, liquibase = {wrote},
                    deployment_id = right((extract(epoch FROM clock_timestamp()) * 1000)::bigint::text, 10)
                 WHERE {row};\n{insert} HAVING NOT EXISTS (SELECT FROM {t} WHERE {row})",
                t = h.quoted,
                sum = literal(&c.md5sum),
                wrote = literal(&writer()),
                row = row(h, c),
                insert = insert(h, c, "EXECUTED"),
            )
        }
        Write::Finish {
            m,
            direction: Direction::Down,
            ..
        } => format!("DELETE FROM {} WHERE {}", h.quoted, row(h, c(m)?)),
        Write::Checksum { m } => {
            let c = c(m)?;
            format!(
                "UPDATE {} SET md5sum = {} WHERE {}",
                h.quoted,
                literal(&c.md5sum),
                row(h, c)
            )
        }
    })
}

/// As `liquibase changelog-sync` records changesets it did not run, but
/// `MARK_RAN`: marked, not run.
pub(super) fn baseline(h: &History, todo: &[&Migration]) -> String {
    super::joined(todo, |m| {
        m.changeset
            .as_ref()
            .map(|c| insert(h, c, "MARK_RAN"))
            .unwrap_or_default()
    })
}

/// Who holds Liquibase's lock and since when, when someone does.
pub struct Held {
    pub by: String,
    pub since: String,
}

/// What [`take_lock`] did.
pub enum Taken {
    Took,
    /// The row named a runbook run that is not running (one that was
    /// killed leaves it): taken from it.
    Over(Held),
    /// Someone holds it.
    Held(Held),
}

/// What a runbook run writes in the row's `LOCKEDBY`.
pub fn locked_by(run_id: &str) -> String {
    format!("runbook run {run_id}")
}

/// Take Liquibase's lock as Liquibase takes it: its row set `locked` where
/// it was not. The lock table and its row are made where they are
/// missing, as Liquibase makes them. Called with runbook's own migration
/// lock on the history held, so a row another runbook run left is one
/// no run is using: a run that holds it holds that lock too, until it
/// ends. Such a row is taken over; Liquibase's own is not.
pub async fn take_lock(h: &History, db: &Db, by: &str) -> Result<Taken, Error> {
    let l = lock_table(h);
    db.client.batch_execute(&make_lock(h)).await?;
    let by = by.chars().take(255).collect::<String>();
    let took = db
        .client
        .execute(
            &format!(
                "UPDATE {l} SET locked = true, lockgranted = localtimestamp, lockedby = $1
                 WHERE id = 1 AND NOT locked"
            ),
            &[&by],
        )
        .await?;
    if took == 1 {
        return Ok(Taken::Took);
    }
    let row = db
        .client
        .query_one(
            &format!(
                "SELECT coalesce(lockedby, 'someone'), coalesce(lockgranted::text, 'an unknown time') FROM {l} WHERE id = 1"
            ),
            &[],
        )
        .await?;
    let held = Held {
        by: row.get(0),
        since: row.get(1),
    };
    if held.by.starts_with(&locked_by("")) {
        let over = db
            .client
            .execute(
                &format!(
                    "UPDATE {l} SET lockgranted = localtimestamp, lockedby = $1
                     WHERE id = 1 AND locked AND lockedby = $2"
                ),
                &[&by, &held.by],
            )
            .await?;
        if over == 1 {
            return Ok(Taken::Over(held));
        }
    }
    Ok(Taken::Held(held))
}

/// Let Liquibase's lock go, where this run holds it.
pub async fn release_lock(h: &History, db: &Db, by: &str) -> Result<(), Error> {
    db.client
        .execute(
            &format!(
                "UPDATE {} SET locked = false, lockgranted = NULL, lockedby = NULL
                 WHERE id = 1 AND locked AND lockedby = $1",
                lock_table(h)
            ),
            &[&by.chars().take(255).collect::<String>()],
        )
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use crate::migrations::liquibase_checksum;

    #[test]
    fn checksums_are_liquibase_s() {
        // MD5SUMs Liquibase 4.28 wrote for these changesets' SQL.
        assert_eq!(
            liquibase_checksum(
                "CREATE TABLE a (id int primary key, name text);\nINSERT INTO a VALUES (1, 'one');"
            ),
            "9:5b1e2434e817debdac552ff11189a7b9"
        );
        assert_eq!(
            liquibase_checksum("CREATE INDEX CONCURRENTLY a_name ON a (name);"),
            "9:758ed93bc1966770d3911342d8807db1"
        );
        assert_eq!(
            liquibase_checksum("CREATE TABLE raw1 (id int);\n\nINSERT INTO raw1 VALUES (1);\n"),
            "9:a692e8f4fe165697292a56197e94d1c3"
        );
    }
}
