//! `restore` steps: re-check a backup's sha256s before anything is dropped,
//! refuse (or terminate) other sessions on the target, run pg_restore (psql
//! for plain dumps), then compare every table's row count with the manifest.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::fail::{child_failure, failed, is_problem, sql_failure, tool_failure};
use super::{Attempt, Done, Fail, Run, child};
use crate::backups::{self, Manifest};
use crate::events::ErrorKind;
use crate::events::{ErrorInfo, Event, StepStatus, now};
use crate::model::BackupFormat;
use crate::pg::db::{self, Db};
use crate::pg::tools;
use crate::plan::{PlanRestore, PlanStep, RestoreFrom};

/// How to restore.
pub(crate) struct How {
    pub clean: bool,
    pub jobs: u32,
    pub single_transaction: bool,
    /// A pg_restore `--use-list` file: restore only the entries it lists.
    pub use_list: Option<std::path::PathBuf>,
    /// What its progress counts, as shown: `tables`, or `tables restored
    /// to verify` when a backup's check restores it (so the two counts
    /// of one backup step are told apart).
    pub unit: &'static str,
    /// Told the dump id of each table's data as pg_restore finishes it
    /// (parallel archive restores only).
    pub finished: Option<tokio::sync::mpsc::UnboundedSender<u32>>,
}

/// A libpq connection string naming only a database: no secret in it.
pub(super) fn conninfo_dbname(name: &str) -> String {
    format!(
        "dbname='{}'",
        name.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

/// Run pg_restore (or psql) from the backup in `dir` into `database`.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site per caller, all distinct"
)]
pub(crate) async fn restore_into(
    r: &mut Run<'_>,
    step: &str,
    m: &Manifest,
    dir: &Path,
    program: &Path,
    database: &str,
    how: &How,
    deadline: Option<tokio::time::Instant>,
    timeout: Option<Duration>,
) -> Result<(), Fail> {
    let dump = dir.join(&m.dump);
    let mut argv: Vec<String> = vec![program.display().to_string()];
    if m.format == BackupFormat::Plain {
        argv.extend([
            "--no-psqlrc".into(),
            "--quiet".into(),
            "--no-password".into(),
            "--set=ON_ERROR_STOP=1".into(),
        ]);
        if how.single_transaction {
            argv.push("--single-transaction".into());
        }
        argv.push(format!("--dbname={}", conninfo_dbname(database)));
        argv.push(format!("--file={}", dump.display()));
    } else {
        argv.extend([
            "--verbose".into(),
            "--no-password".into(),
            "--exit-on-error".into(),
            format!("--dbname={}", conninfo_dbname(database)),
        ]);
        if how.clean {
            argv.extend(["--clean".into(), "--if-exists".into()]);
        }
        if how.single_transaction {
            argv.push("--single-transaction".into());
        } else {
            argv.push(format!("--jobs={}", how.jobs));
        }
        if let Some(list) = &how.use_list {
            argv.push(format!("--use-list={}", list.display()));
        }
        argv.push(dump.display().to_string());
    }
    let mut env = r
        .child_env()
        .await
        .map_err(|e| Fail::new(StepStatus::Failed, e))?;
    env.retain(|(k, _)| k != "PGDATABASE");
    let total = Some(m.tables.iter().filter(|t| t.rows.is_some()).count() as u64);
    let mut restored = 0;
    let step_id = step.to_string();
    let name = if m.format == BackupFormat::Plain {
        "psql"
    } else {
        "pg_restore"
    };
    let base = r.base_dir.clone();
    let ran = child::run(r, &argv, &env, &base, deadline, |r, _, line| {
        if let Some(id) = finished_data_item(line)
            && let Some(tx) = &how.finished
        {
            let _ = tx.send(id);
        } else if let Some(t) = line.split_once("processing data for table ").map(|x| x.1) {
            restored += 1;
            r.bus.emit(Event::StepProgress {
                at: now(),
                step: step_id.clone(),
                done: restored,
                total,
                unit: how.unit.into(),
                item: Some(t.trim().trim_matches('"').to_string()),
                per_second: None,
                eta_ms: None,
            });
        } else if is_problem(line) {
            r.bus.emit(Event::StepOutput {
                at: now(),
                step: step_id.clone(),
                stream: "stderr".into(),
                line: line.to_string(),
            });
        }
    })
    .await
    .map_err(|e| Fail::new(StepStatus::Failed, e))?;
    if ran.code != Some(0) || ran.ended.is_some() {
        return Err(child_failure(name, &ran, timeout));
    }
    Ok(())
}

/// The dump id in pg_restore's `finished item 3365 TABLE DATA orders`.
fn finished_data_item(line: &str) -> Option<u32> {
    let (id, what) = line.split_once("finished item ")?.1.split_once(' ')?;
    what.starts_with("TABLE DATA ")
        .then(|| id.parse().ok())
        .flatten()
}

/// Row counts taken while a parallel pg_restore still runs: a table whose
/// data item has finished holds its final rows, because nothing later in
/// a restore inserts into it (its triggers and rules are created after its
/// data). A partition is the exception: a dump that loads through the
/// partition root can route another partition's rows into it, so a
/// partition is left to be counted after the restore. Counting beside
/// the restore hides the count of the largest table behind the building
/// of its indexes. The counts are by table oid (as the manifest names
/// it); a table it could not count is counted again afterwards.
struct EarlyCounts {
    tx: tokio::sync::mpsc::UnboundedSender<u32>,
    task: tokio::task::JoinHandle<std::collections::HashMap<u32, i64>>,
}

impl EarlyCounts {
    /// Start counting on a session of its own in `database`; None when the
    /// archive's table of contents cannot be read or the session cannot
    /// be opened (then everything is counted after the restore).
    async fn start(
        r: &Run<'_>,
        database: &str,
        m: &Manifest,
        program: &Path,
        dir: &Path,
    ) -> Option<Self> {
        let toc = {
            let (program, dump) = (program.to_path_buf(), dir.join(&m.dump));
            child::blocking(move || backups::archive_toc(&program, &dump))
                .await
                .ok()?
        };
        // Dump id of each table's data → the manifest's table.
        let items: std::collections::HashMap<u32, backups::Table> = toc
            .iter()
            .filter(|e| e.desc == "TABLE DATA")
            .filter_map(|e| {
                let t = m.tables.iter().find(|t| t.rows.is_some() && e.is_of(t))?;
                Some((e.id?, t.clone()))
            })
            .collect();
        let session = r.db.connect_to(database, &r.app_name).await.ok()?;
        // Every row, as pg_dump read them: a table that row-level security
        // would filter for this role is left to the count after, which
        // says so. No server timeout either, as pg_restore's own session.
        db::as_pg_dump(&session.client).await.ok()?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let task = tokio::spawn(async move {
            let mut counts = std::collections::HashMap::new();
            while let Some(id) = rx.recv().await {
                let Some(t) = items.get(&id) else { continue };
                let partition = format!(
                    "SELECT c.relispartition FROM pg_catalog.pg_class c WHERE c.oid = to_regclass({})",
                    crate::pg::quote::literal(&t.qualified())
                );
                match session.client.query_opt(&partition, &[]).await {
                    Ok(Some(row)) if !row.get::<_, bool>(0) => {}
                    _ => continue,
                }
                let count = format!("SELECT count(*) FROM ONLY {}", t.qualified());
                if let Ok(row) = session.client.query_one(&count, &[]).await {
                    counts.insert(t.oid, row.get::<_, i64>(0));
                }
            }
            counts
        });
        Some(EarlyCounts { tx, task })
    }

    /// The counts taken; the restore has ended.
    async fn finish(self) -> std::collections::HashMap<u32, i64> {
        drop(self.tx);
        self.task.await.unwrap_or_default()
    }
}

/// A session on the restore's target: the run's own, or a new one.
enum TargetClient {
    Own,
    Other(Box<Db>),
}

impl TargetClient {
    fn get<'c>(&'c self, r: &'c Run<'_>) -> &'c tokio_postgres::Client {
        match self {
            TargetClient::Own => &r.db.client,
            TargetClient::Other(db) => &db.client,
        }
    }
}

async fn target_client(r: &Run<'_>, database: &str) -> Result<TargetClient, ErrorInfo> {
    if database == r.database {
        Ok(TargetClient::Own)
    } else {
        Ok(TargetClient::Other(Box::new(
            r.db.connect_to(database, &r.app_name).await?,
        )))
    }
}

/// Make room, in a database just made from template0, for a dump that
/// creates the `public` schema ([`backups::creates_public`]): its empty
/// `public` is dropped, for the dump's, with its owner and comment. Returns
/// the grants it had, for [`public_back`]. Where it cannot be dropped (an
/// older server's `public` belongs to the bootstrap superuser), the restore
/// fails as it would have, on `schema "public" already exists`.
pub(crate) async fn room_for_public(
    r: &Run<'_>,
    m: &Manifest,
    dir: &Path,
    program: &Path,
    database: &str,
) -> Option<String> {
    let (dump, pg_restore) = (
        dir.join(&m.dump),
        (m.format != BackupFormat::Plain).then(|| program.to_path_buf()),
    );
    let creates = tokio::task::spawn_blocking(move || {
        backups::creates_public(pg_restore.as_deref(), &dump).unwrap_or(false)
    })
    .await
    .unwrap_or(false);
    if !creates {
        return None;
    }
    // A session of its own, never the run's: while the run's own database
    // is made anew, the run's session is on another one.
    let db = r.db.connect_to(database, &r.app_name).await.ok()?;
    let grants: String = db.client.query_one(PUBLIC_GRANTS, &[]).await.ok()?.get(0);
    db.client.batch_execute("DROP SCHEMA public").await.ok()?;
    Some(grants)
}

/// The grants of `public` in a new database (to PUBLIC, on PostgreSQL 15
/// `USAGE`), as statements. pg_dump leaves out a schema's grants when they
/// are the ones it was made with, so the dump's `public` came back with
/// none: no role but its owner could use it.
const PUBLIC_GRANTS: &str =
    "SELECT coalesce(string_agg(format('GRANT %s ON SCHEMA public TO %s', a.privilege_type,
        CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END), '; '), '')
   FROM pg_catalog.pg_namespace n, aclexplode(n.nspacl) a
  WHERE n.nspname = 'public' AND a.grantee <> n.nspowner";

/// After the restore: `public`'s grants as a new database has them, when
/// the dump said nothing of them (see [`PUBLIC_GRANTS`]); a dump that
/// revoked or granted has its own.
pub(crate) async fn public_back(
    r: &Run<'_>,
    database: &str,
    grants: Option<String>,
) -> Result<(), ErrorInfo> {
    let Some(grants) = grants.filter(|g| !g.is_empty()) else {
        return Ok(());
    };
    let db = r.db.connect_to(database, &r.app_name).await?;
    let error = |e: tokio_postgres::Error| db::error_info(&e, None);
    let unset: bool = db
        .client
        .query_one(
            "SELECT nspacl IS NULL FROM pg_catalog.pg_namespace WHERE nspname = 'public'",
            &[],
        )
        .await
        .map_err(error)?
        .get(0);
    if unset {
        db.client.batch_execute(&grants).await.map_err(error)?;
    }
    Ok(())
}

/// Tables whose row count in `database` differs from the manifest.
pub(crate) async fn compare_counts(
    r: &Run<'_>,
    database: &str,
    m: &Manifest,
    early: &std::collections::HashMap<u32, i64>,
) -> Result<Vec<String>, ErrorInfo> {
    let other;
    let client = if database == r.database {
        &r.db.client
    } else {
        other = r.db.connect_to(database, &r.app_name).await?;
        &other.client
    };
    // Every row, as pg_dump read them (it turns row-level security off
    // too): with it on, a policy that applies to this role (say, the
    // owner's, under FORCE ROW LEVEL SECURITY) hid rows, and the restore
    // was said to have lost them. Off, such a table's count is refused,
    // and said to be not counted. And no server timeout, as pg_restore's
    // own session: a role's `statement_timeout` cancelled the count of a
    // large table that had restored. The run's own session gets its
    // settings back after.
    let before = db::read_as_pg_dump(client)
        .await
        .map_err(|e| db::error_info(&e, None))?;
    let counted = count_each(client, m, early).await;
    let put_back = before.put_back(client).await;
    let mut mismatches = counted?;
    put_back.map_err(|e| db::error_info(&e, None))?;
    if let Some(expected) = m.large_objects {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_catalog.pg_largeobject_metadata",
                &[],
            )
            .await
            .map_err(|e| db::error_info(&e, None))?
            .get(0);
        if n < expected {
            mismatches.push(format!("large objects: {n}, the manifest says {expected}"));
        }
    }
    Ok(mismatches)
}

/// Each table's count against the manifest's, with row-level security
/// off: a table missing, or one whose rows a policy would hide from this
/// role, is said as such.
async fn count_each(
    client: &tokio_postgres::Client,
    m: &Manifest,
    early: &std::collections::HashMap<u32, i64>,
) -> Result<Vec<String>, ErrorInfo> {
    let mut mismatches = Vec::new();
    for t in &m.tables {
        let Some(expected) = t.rows else { continue };
        let sql = format!("SELECT count(*) FROM ONLY {}", t.qualified());
        let counted = match early.get(&t.oid) {
            Some(n) => Ok(*n),
            None => client.query_one(&sql, &[]).await.map(|row| row.get(0)),
        };
        match counted {
            Ok(n) => {
                if n != expected {
                    mismatches.push(format!(
                        "{}.{}: {n} rows, the manifest says {expected}",
                        t.schema, t.name
                    ));
                }
            }
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
                mismatches.push(format!("{}.{}: missing", t.schema, t.name));
            }
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
            {
                mismatches.push(format!(
                    "{}.{}: not counted: {}; the manifest says {expected} rows (restore as a role that may read every row of it, such as the one that took the backup)",
                    t.schema,
                    t.name,
                    e.as_db_error().map_or("permission denied", |d| d.message())
                ));
            }
            Err(e) => return Err(db::error_info(&e, None)),
        }
    }
    Ok(mismatches)
}

/// A session on the target database that is not this run's.
struct Session {
    pid: i32,
    user: String,
    application_name: String,
    client: String,
    state: String,
    since: String,
}

impl Session {
    fn describe(&self) -> String {
        format!(
            "pid {} ({}, user {}, from {}, {}, connected since {})",
            self.pid,
            if self.application_name.is_empty() {
                "no application_name"
            } else {
                &self.application_name
            },
            self.user,
            self.client,
            self.state,
            self.since
        )
    }
}

/// Other client sessions on `database`; runbook's own lock monitor, which
/// only reads the catalogs, and its journal, which writes only its own
/// schema (left out of backups), are not among them.
async fn sessions_on(
    db: &Db,
    database: &str,
    own_apps: &[String],
) -> Result<Vec<Session>, ErrorInfo> {
    let rows = db
        .client
        .query(
            &format!(
                "SELECT pid, coalesce(usename::text, ''), coalesce(application_name, ''),
                    CASE WHEN {hidden} THEN 'a client hidden from this role'
                         ELSE coalesce(host(client_addr), 'local socket') END,
                    coalesce(state, 'activity hidden'),
                    coalesce(to_char(backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), 'a time hidden from this role')
               FROM pg_catalog.pg_stat_activity a
              WHERE datname = $1 AND pid <> pg_catalog.pg_backend_pid()
                AND (backend_type = 'client backend' OR {hidden})
                AND NOT (coalesce(application_name, '') = ANY($2))
              ORDER BY pid",
                hidden = crate::pg::activity::HIDDEN
            ),
            &[&database, &own_apps],
        )
        .await
        .map_err(|e| db::error_info(&e, None))?;
    Ok(rows
        .iter()
        .map(|r| Session {
            pid: r.get(0),
            user: r.get(1),
            application_name: r.get(2),
            client: r.get(3),
            state: r.get(4),
            since: r.get(5),
        })
        .collect())
}

/// A foreign key on a table outside the backup that references a table it
/// restores: dropped before `clean` drops the table, added again after.
struct ForeignKey {
    table: String,
    name: String,
    definition: String,
}

/// What `clean` did before pg_restore ran.
#[derive(Default)]
struct Cleared {
    /// Objects created after the backup, dropped: the failed phase's.
    dropped: Vec<String>,
    /// Foreign keys from tables that existed at backup time, to add back.
    readd: Vec<ForeignKey>,
}

/// Objects created after the backup that stand in the way of `clean`: in a
/// whole-database or schema backup, every relation, function and type
/// the backup does not hold; in a backup of some tables, what references
/// those tables. They are dropped (CASCADE), so that nothing of the failed
/// phase stays behind. Foreign keys into the restored tables from tables
/// that already existed are dropped and added back after the restore.
async fn clear_for_clean(
    client: &tokio_postgres::Client,
    m: &Manifest,
    record: &backups::SchemaRecord,
) -> Result<Cleared, ErrorInfo> {
    let err = |e: tokio_postgres::Error| db::error_info(&e, None);
    let mut out = Cleared::default();
    // Only what the runbook that took the backup would have seen: an
    // object of a kind it did not read may well be older than the backup,
    // and dropping it (CASCADE) could take data along.
    let now = if record.covers != "tables" {
        Some(
            crate::snapshot::take(client)
                .await
                .map_err(err)?
                .as_read_at(record.reads),
        )
    } else {
        None
    };
    let mut drops = match &now {
        Some(now) => created_later(now, record, &mut out),
        None => table_dependents(client, m, record, &mut out).await?,
    };
    drops.dedup();
    if drops.is_empty() {
        return Ok(out);
    }
    // All of it, or none: one transaction, rolled back on an error or when
    // it would take along what the backup does not hold.
    client.batch_execute("BEGIN").await.map_err(err)?;
    let done = drop_keeping_outside(client, record, now.as_ref(), &drops).await;
    let end = if matches!(done, Ok(ref lost) if lost.is_empty()) {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    client.batch_execute(end).await.map_err(err)?;
    let lost = done.map_err(err)?;
    if !lost.is_empty() {
        return Err(ErrorInfo {
            message: format!(
                "it would also drop what lies outside the backup and was there when it was taken: {}; nothing was dropped",
                lost.join(", ")
            ),
            hint: Some(
                "a change the failed phase made outside the backup's schemas uses an object it created in them: undo that change by hand, then run the restore again".into(),
            ),
            ..ErrorInfo::default()
        });
    }
    Ok(out)
}

/// Run `drops` (in the caller's transaction). For a backup of some
/// schemas, what lies outside them is compared before (`now`, read just
/// before the transaction) and after: `CASCADE` takes along what depends on
/// a dropped object, in any schema, and pg_restore puts back only what is
/// in the backup. Returns the objects outside that
/// were there when the backup was taken and are now gone or lost a column
/// (one whose type was dropped, say), which the caller must not keep.
async fn drop_keeping_outside(
    client: &tokio_postgres::Client,
    record: &backups::SchemaRecord,
    now: Option<&crate::snapshot::Snapshot>,
    drops: &[String],
) -> Result<Vec<String>, tokio_postgres::Error> {
    use crate::snapshot::schema_of;
    let schemas: std::collections::BTreeSet<&str> =
        record.objects.keys().filter_map(|k| schema_of(k)).collect();
    let outside = |s: &crate::snapshot::Snapshot| {
        s.as_read_at(record.reads)
            .subset(|k| !schema_of(k).is_some_and(|s| schemas.contains(s)))
    };
    let before = now.filter(|_| record.covers == "schemas").map(outside);
    for sql in drops {
        client.batch_execute(sql).await?;
    }
    let Some(before) = before else {
        return Ok(Vec::new());
    };
    let after = outside(&crate::snapshot::take(client).await?);
    Ok(crate::snapshot::compare(&before, &after)
        .into_iter()
        .filter(|c| record.outside.contains(&c.object) && destroys(c))
        .map(|c| c.object)
        .collect())
}

/// Whether a change to an object outside the backup destroys what the
/// restore cannot bring back: the object itself, or a table's column. A
/// change that undoes what the failed phase did to it (a publication no
/// longer naming a table the phase made, a default that used a function
/// it made) does not.
fn destroys(c: &crate::snapshot::Change) -> bool {
    let names = |v: &Option<serde_json::Value>| -> Vec<String> {
        v.as_ref()
            .and_then(|v| v["columns"].as_array())
            .map(|cols| {
                cols.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    match c.change {
        "removed" => true,
        "changed" | "column_order" => {
            let after = names(&c.after);
            names(&c.before).iter().any(|n| !after.contains(n))
        }
        _ => false,
    }
}

/// Is `k` (`kind name`) in the backup's schema record, or recorded as
/// outside what it covers?
fn known(record: &backups::SchemaRecord, k: &str) -> bool {
    record.objects.contains_key(k) || record.outside.iter().any(|o| o == k)
}

/// What was created after the backup, in what the backup covers (the
/// whole database, or its schemas): the statements that drop it, each
/// noted in `out`. Default privileges have no statement that drops them,
/// and pg_restore adds the backup's on top of what it finds: those that
/// changed since the backup are set back to PostgreSQL's defaults first,
/// so that the restore gives the backup's.
fn created_later(
    now: &crate::snapshot::Snapshot,
    record: &backups::SchemaRecord,
    out: &mut Cleared,
) -> Vec<String> {
    use crate::snapshot::{kind_and_name, schema_of};
    let schemas: std::collections::BTreeSet<&str> =
        record.objects.keys().filter_map(|k| schema_of(k)).collect();
    let covered = |k: &str| {
        !record.outside.iter().any(|o| o == k)
            && (record.covers != "schemas" || schema_of(k).is_some_and(|s| schemas.contains(s)))
    };
    let (mut resets, mut drops): (Vec<String>, Vec<(usize, String)>) = (Vec::new(), Vec::new());
    for (k, def) in &now.objects {
        let Some((kind, name)) = kind_and_name(k).filter(|_| covered(k)) else {
            continue;
        };
        if kind == "default privileges" {
            if record.objects.get(&**k) != Some(&**def) {
                resets.extend(default_privileges_reset(name, def));
                if !known(record, k) {
                    out.dropped.push(k.to_string());
                }
            }
            continue;
        }
        if known(record, k) {
            continue;
        }
        let sql = match kind {
            "table" if def["kind"] == "f" => format!("DROP FOREIGN TABLE IF EXISTS {name} CASCADE"),
            "table" => format!("DROP TABLE IF EXISTS {name} CASCADE"),
            "view" => format!("DROP VIEW IF EXISTS {name} CASCADE"),
            "materialized view" => format!("DROP MATERIALIZED VIEW IF EXISTS {name} CASCADE"),
            "sequence" => format!("DROP SEQUENCE IF EXISTS {name} CASCADE"),
            "function" => format!("DROP ROUTINE IF EXISTS {name} CASCADE"),
            "aggregate" => format!("DROP AGGREGATE IF EXISTS {name} CASCADE"),
            "type" => format!("DROP TYPE IF EXISTS {name} CASCADE"),
            "statistics" => format!("DROP STATISTICS IF EXISTS {name}"),
            "collation" => format!("DROP COLLATION IF EXISTS {name} CASCADE"),
            "operator" => format!("DROP OPERATOR IF EXISTS {name} CASCADE"),
            "cast" => format!("DROP CAST IF EXISTS ({name}) CASCADE"),
            "publication" => format!("DROP PUBLICATION IF EXISTS {name}"),
            "event trigger" => format!("DROP EVENT TRIGGER IF EXISTS {name}"),
            "text search configuration" => {
                format!("DROP TEXT SEARCH CONFIGURATION IF EXISTS {name} CASCADE")
            }
            "text search dictionary" => {
                format!("DROP TEXT SEARCH DICTIONARY IF EXISTS {name} CASCADE")
            }
            "text search parser" => format!("DROP TEXT SEARCH PARSER IF EXISTS {name} CASCADE"),
            "text search template" => {
                format!("DROP TEXT SEARCH TEMPLATE IF EXISTS {name} CASCADE")
            }
            "access method" => format!("DROP ACCESS METHOD IF EXISTS {name} CASCADE"),
            "foreign data wrapper" => format!("DROP FOREIGN DATA WRAPPER IF EXISTS {name} CASCADE"),
            "foreign server" => format!("DROP SERVER IF EXISTS {name} CASCADE"),
            // Named `SCHEMA.NAME using METHOD`, as the statement wants them.
            "operator class" => format!("DROP OPERATOR CLASS IF EXISTS {name} CASCADE"),
            "operator family" => format!("DROP OPERATOR FAMILY IF EXISTS {name} CASCADE"),
            // Named `for ROLE server SERVER`; both are in the entry, quoted.
            "user mapping" => match (def["user"].as_str(), def["server"].as_str()) {
                (Some(user), Some(server)) => {
                    format!("DROP USER MAPPING IF EXISTS FOR {user} SERVER {server}")
                }
                _ => continue,
            },
            // Only a schema nothing in the backup lived in, and never
            // `public` (it shows only where its grants changed).
            "schema" if name != "public" && !schemas.contains(name) => {
                format!("DROP SCHEMA IF EXISTS {name} CASCADE")
            }
            _ => continue,
        };
        drops.push((drop_order(kind), sql));
        out.dropped.push(k.to_string());
    }
    // What is part of another object goes with it, and cannot be dropped
    // on its own, even with CASCADE: an identity column's sequence with its
    // table, a range type's constructor functions with the type.
    drops.sort_by_key(|(order, _)| *order);
    // The resets first: they need the role's membership, and fail before
    // anything is dropped when it is missing.
    resets.extend(drops.into_iter().map(|(_, sql)| sql));
    resets
}

/// The order to drop kinds of object in: what may be part of a later
/// kind's object first.
fn drop_order(kind: &str) -> usize {
    const ORDER: [&str; 24] = [
        "event trigger",
        "user mapping",
        "publication",
        "cast",
        "operator class",
        "operator family",
        "operator",
        "statistics",
        "aggregate",
        "materialized view",
        "view",
        "table",
        "sequence",
        "type",
        "collation",
        "text search configuration",
        "text search dictionary",
        "text search parser",
        "text search template",
        "foreign server",
        "foreign data wrapper",
        "access method",
        "function",
        "schema",
    ];
    ORDER.iter().position(|k| *k == kind).unwrap_or(ORDER.len())
}

/// The statements that set the default privileges named `name` (`for ROLE
/// [in schema SCHEMA] on tables`, as snapshots name them) back to
/// PostgreSQL's own: nothing in a schema; in every schema, everything for
/// the role itself, and `EXECUTE` or `USAGE` for PUBLIC on functions and
/// types. The entry then goes from pg_default_acl.
fn default_privileges_reset(name: &str, def: &serde_json::Value) -> Vec<String> {
    let Some((head, objects)) = name
        .strip_prefix("for ")
        .and_then(|rest| rest.rsplit_once(" on "))
    else {
        return Vec::new();
    };
    let (role, schema) = match head.split_once(" in schema ") {
        Some((role, schema)) => (role, Some(schema)),
        None => (head, None),
    };
    let target = match schema {
        Some(schema) => format!("ALTER DEFAULT PRIVILEGES FOR ROLE {role} IN SCHEMA {schema}"),
        None => format!("ALTER DEFAULT PRIVILEGES FOR ROLE {role}"),
    };
    let objects = objects.to_uppercase();
    let mut out: Vec<String> = def["grants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_str()?.split_once('='))
        .map(|(grantee, _)| format!("{target} REVOKE ALL ON {objects} FROM {grantee}"))
        .collect();
    if schema.is_none() {
        out.push(format!("{target} GRANT ALL ON {objects} TO {role}"));
        match objects.as_str() {
            "FUNCTIONS" => out.push(format!("{target} GRANT EXECUTE ON FUNCTIONS TO PUBLIC")),
            "TYPES" => out.push(format!("{target} GRANT USAGE ON TYPES TO PUBLIC")),
            _ => {}
        }
    }
    out
}

/// A backup of some tables: what outside them depends on them (foreign
/// keys, views) must go before they are replaced; a foreign key from a
/// table the backup knows is added back afterwards.
async fn table_dependents(
    client: &tokio_postgres::Client,
    m: &Manifest,
    record: &backups::SchemaRecord,
    out: &mut Cleared,
) -> Result<Vec<String>, ErrorInfo> {
    let err = |e: tokio_postgres::Error| db::error_info(&e, None);
    let known = |k: &str| known(record, k);
    let mut drops: Vec<String> = Vec::new();
    let schemas: Vec<&str> = m.tables.iter().map(|t| t.schema.as_str()).collect();
    let names: Vec<&str> = m.tables.iter().map(|t| t.name.as_str()).collect();
    let rows = client
        .query(
            "WITH t AS (
                SELECT c.oid FROM unnest($1::text[], $2::text[]) AS x(s, name)
                JOIN pg_catalog.pg_namespace n ON n.nspname = x.s
                JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = x.name)
             SELECT 'fk', format('%I.%I', n.nspname, c.relname), co.conname::text,
                    pg_catalog.pg_get_constraintdef(co.oid)
               FROM pg_catalog.pg_constraint co
               JOIN pg_catalog.pg_class c ON c.oid = co.conrelid
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE co.contype = 'f' AND co.confrelid IN (SELECT oid FROM t)
                AND co.conrelid NOT IN (SELECT oid FROM t)
             UNION
             SELECT CASE v.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END,
                    format('%I.%I', vn.nspname, v.relname), '', ''
               FROM pg_catalog.pg_depend d
               JOIN pg_catalog.pg_rewrite rw ON rw.oid = d.objid
               JOIN pg_catalog.pg_class v ON v.oid = rw.ev_class
               JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace
              WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass
                AND d.refobjid IN (SELECT oid FROM t) AND v.oid NOT IN (SELECT oid FROM t)",
            &[&schemas, &names],
        )
        .await
        .map_err(err)?;
    for row in &rows {
        let (kind, rel, name, def): (String, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if kind == "fk" {
            let table_key = format!("table {rel}");
            if known(&table_key) {
                let key = format!("constraint {rel}.{}", crate::pg::quote::ident(&name));
                drops.push(format!(
                    "ALTER TABLE {rel} DROP CONSTRAINT {}",
                    crate::pg::quote::ident(&name)
                ));
                if known(&key)
                    || record
                        .outside
                        .iter()
                        .any(|o| o.starts_with(&format!("constraint {rel}.")))
                {
                    out.readd.push(ForeignKey {
                        table: rel,
                        name,
                        definition: def,
                    });
                } else {
                    out.dropped.push(key);
                }
            } else {
                drops.push(format!("DROP TABLE IF EXISTS {rel} CASCADE"));
                out.dropped.push(table_key);
            }
        } else {
            let key = format!("{kind} {rel}");
            if !known(&key) {
                drops.push(format!(
                    "DROP {} IF EXISTS {rel} CASCADE",
                    kind.to_uppercase()
                ));
                out.dropped.push(key);
            }
        }
    }
    Ok(drops)
}

/// The restored schema against the backup's: every object that differs.
async fn compare_schema(
    client: &tokio_postgres::Client,
    m: &Manifest,
    record: &backups::SchemaRecord,
) -> Result<Vec<crate::snapshot::Change>, ErrorInfo> {
    let err = |e: tokio_postgres::Error| db::error_info(&e, None);
    let now = match &record.database_owner {
        Some(owner) => crate::snapshot::take_as_if_owned_by(client, owner).await,
        None => crate::snapshot::take(client).await,
    }
    .map_err(err)?
    .as_read_at(record.reads);
    let now = match record.covers.as_str() {
        "tables" => {
            let list: Vec<(String, String)> = m
                .tables
                .iter()
                .map(|t| (t.schema.clone(), t.name.clone()))
                .collect();
            let keys = crate::snapshot::covered_keys(client, &list)
                .await
                .map_err(err)?;
            now.subset(|k| keys.contains(k))
        }
        "schemas" => {
            use crate::snapshot::schema_of;
            let schemas: std::collections::BTreeSet<&str> =
                record.objects.keys().filter_map(|k| schema_of(k)).collect();
            now.subset(|k| schema_of(k).is_some_and(|s| schemas.contains(s)))
        }
        _ => now,
    };
    let want = crate::snapshot::Snapshot::from_objects(record.objects.clone());
    Ok(crate::snapshot::compare(&want, &now))
}

/// After `recreate` of the run's own database: the session comes back and
/// takes the run lock again.
async fn come_back(r: &mut Run<'_>, original: db::Conn) -> Result<(), Fail> {
    r.db = Db::login_again(original, &r.app_name)
        .await
        .map_err(|e| Fail::new(StepStatus::Failed, e))?;
    r.relock()
        .await
        .map_err(|e| Fail::new(StepStatus::Failed, e))
}

/// The backup directory `from` names.
fn source_dir(r: &Run<'_>, from: &RestoreFrom) -> Result<PathBuf, Fail> {
    match from {
        RestoreFrom::Step(id) => {
            let out = r.steps_out.get(id);
            match out.and_then(|o| o.get("path")).and_then(Value::as_str) {
                Some(p) => Ok(PathBuf::from(p)),
                None => Err(failed(
                    ErrorKind::Restore,
                    format!(
                        "steps.{id} has no backup to restore: the step {}",
                        out.and_then(|o| o.get("status"))
                            .and_then(Value::as_str)
                            .map_or_else(|| "has not run".to_string(), |s| format!("ended {s}"))
                    ),
                    Some("a restore can only use a backup that was taken; check the backup step's result".into()),
                )),
            }
        }
        RestoreFrom::Path(t) => r
            .render(t)
            .map(|(raw, _)| r.base_dir.join(raw))
            .map_err(|e| Fail::new(StepStatus::Failed, e)),
    }
}

/// `pick: newest`: the newest backup under `dir` whose verification
/// passed (a failed, incomplete or unreadable one is passed over, and said).
fn newest(dir: &Path) -> Result<(PathBuf, Vec<String>), Fail> {
    let listed = backups::list(dir).map_err(|e| {
        failed(
            ErrorKind::Restore,
            format!("cannot list the backups under {}: {e}", dir.display()),
            Some("`pick: newest` takes the directory the backups are in".into()),
        )
    })?;
    let mut passed_over = Vec::new();
    for l in listed {
        if l.state == "ok" {
            return Ok((l.path, passed_over));
        }
        passed_over.push(format!(
            "{} ({}{})",
            l.path.display(),
            l.state,
            l.problem.map(|p| format!(": {p}")).unwrap_or_default()
        ));
    }
    Err(failed(
        ErrorKind::Restore,
        format!(
            "no backup under {} can be restored{}",
            dir.display(),
            if passed_over.is_empty() {
                String::new()
            } else {
                format!(": {}", passed_over.join("; "))
            }
        ),
        Some("`runbook backups list DIR` shows each backup's state".into()),
    ))
}

/// Everything about the backup, checked before the database is touched:
/// its manifest (the one this run's backup step wrote, when it names one),
/// its verification, its files' hashes, and that the step's options suit
/// its format.
async fn checked_backup(
    r: &Run<'_>,
    rs: &PlanRestore,
    dir: &Path,
    target: &str,
) -> Result<Manifest, Fail> {
    let refuse = |e: backups::BackupError| {
        failed(
            ErrorKind::Backup,
            format!(
                "refusing to restore from {}: {e}; nothing was touched",
                dir.display()
            ),
            Some(e.hint().into()),
        )
        .unchanged()
    };
    let m = backups::load(dir).map_err(refuse)?;
    // A backup this run took: its manifest must be the one the backup step
    // wrote (it carries the schema the restore is judged against).
    if let RestoreFrom::Step(id) = &rs.from
        && let Some(want) = r
            .steps_out
            .get(id)
            .and_then(|o| o.get("sha256"))
            .and_then(Value::as_str)
            .filter(|h| !h.is_empty())
    {
        let now = backups::manifest_sha256(dir).unwrap_or_default();
        if now != want {
            return Err(failed(
                ErrorKind::Backup,
                format!(
                    "refusing to restore from {}: its manifest.json changed after steps.{id} wrote it (sha256 {want} then, {now} now); nothing was touched",
                    dir.display()
                ),
                Some("the manifest says what the restore must produce; take a new backup".into()),
            )
            .unchanged());
        }
    }
    if m.verification.status == "failed" {
        return Err(refuse(backups::BackupError::FailedVerification {
            detail: m.verification.detail.clone().unwrap_or_default(),
        }));
    }
    {
        let (dir, m) = (dir.to_path_buf(), m.clone());
        tokio::task::spawn_blocking(move || backups::check_files(&dir, &m))
            .await
            .map_err(|e| failed(ErrorKind::Internal, e.to_string(), None))?
            .map_err(refuse)?;
    }
    if m.format == BackupFormat::Plain && rs.clean {
        return Err(failed(
            ErrorKind::Restore,
            format!("`clean: true` needs an archive, and {} holds a plain SQL dump; nothing was touched", dir.display()),
            Some("restore a plain dump into a new database (`target`), or take the backup with `format: directory` or `custom`".into()),
        ).unchanged());
    }
    if m.format == BackupFormat::Plain && rs.jobs > 1 {
        return Err(failed(
            ErrorKind::Restore,
            "a plain SQL dump is restored by psql in one session; `jobs` must be 1".into(),
            Some("remove `jobs`, or take the backup with `format: directory`".into()),
        )
        .unchanged());
    }
    if rs.mode == crate::model::RestoreMode::Recreate
        && m.schema.as_ref().is_none_or(|x| x.covers != "whole")
    {
        return Err(failed(
            ErrorKind::Restore,
            format!("`mode: recreate` drops the whole database `{target}`, and {} is not a whole-database backup; nothing was touched", dir.display()),
            Some("restore a backup taken without `tables`, `schemas` or exclusions, or use `clean: true`".into()),
        )
        .unchanged());
    }
    Ok(m)
}

/// Make the target ready: when it exists, no other session may be on it
/// (they are refused, or terminated with `terminate_connections`); when
/// it does not, create it. Returns whether it existed, and who was
/// terminated.
async fn prepare_target(
    r: &mut Run<'_>,
    s: &PlanStep,
    rs: &PlanRestore,
    target: &str,
) -> Result<(bool, Vec<String>), Fail> {
    let exists: bool =
        r.db.client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1)",
                &[&target],
            )
            .await
            .map_err(|e| {
                sql_failure(
                    "failed to look up the target database",
                    &db::error_info(&e, None),
                )
                .unchanged()
            })?
            .get(0);
    if !exists {
        r.db.client
            .batch_execute(&format!(
                "CREATE DATABASE {} TEMPLATE template0",
                crate::pg::quote::ident(target)
            ))
            .await
            .map_err(|e| {
                sql_failure(
                    "failed to create the target database",
                    &db::error_info(&e, None),
                )
            })?;
        return Ok((false, Vec::new()));
    }
    let own = [r.monitor_app(), r.journal.app().to_string()];
    let others = sessions_on(&r.db, target, &own)
        .await
        .map_err(|e| sql_failure("failed to list sessions on the target", &e).unchanged())?;
    if !others.is_empty() && !rs.terminate_connections {
        return Err(failed(
            ErrorKind::Restore,
            format!(
                "refusing to restore into `{target}`: {} other session(s) are connected: {}; nothing was touched",
                others.len(),
                others.iter().map(Session::describe).collect::<Vec<_>>().join("; ")
            ),
            Some("stop those clients, or set `terminate_connections: true` to disconnect them first".into()),
        ).unchanged());
    }
    // PostgreSQL 14 can wait for the session to be gone.
    let sql = if tools::major_of(&r.server_version).unwrap_or(0) >= 14 {
        "SELECT pg_catalog.pg_terminate_backend($1, 5000)"
    } else {
        "SELECT pg_catalog.pg_terminate_backend($1)"
    };
    let mut terminated = Vec::new();
    for o in &others {
        let ok: bool =
            r.db.client
                .query_one(sql, &[&o.pid])
                .await
                .map_err(|e| {
                    sql_failure(
                        &format!("failed to terminate pid {}", o.pid),
                        &db::error_info(&e, None),
                    )
                })?
                .get(0);
        if ok {
            terminated.push(o.describe());
        }
    }
    if !terminated.is_empty() {
        r.bus.emit(Event::Warning {
            at: now(),
            message: format!(
                "step `{}` terminated {} session(s) on `{target}` before restoring: {}",
                s.id,
                terminated.len(),
                terminated.join("; ")
            ),
        });
    }
    Ok((true, terminated))
}

/// After a restore into a database this step created failed part-way:
/// drop that database, which held nothing before, so the step changed
/// nothing and can simply run again. Left, it said "partly changed" and
/// stood in the way of the next attempt. If it cannot be dropped (a session
/// connected to it meanwhile), it is left, and the failure says so.
async fn drop_created(r: &mut Run<'_>, s: &PlanStep, target: &str, fail: Fail) -> Fail {
    let dropped =
        r.db.client
            .batch_execute(&format!(
                "DROP DATABASE {}",
                crate::pg::quote::ident(target)
            ))
            .await;
    match dropped {
        Ok(()) => {
            super::sql::log(
                r,
                &s.id,
                format!("dropped `{target}`, which this step had created for the restore"),
            );
            Fail {
                unchanged: Some(super::Unchanged::CleanedUp),
                ..fail
            }
        }
        Err(e) => {
            let why = db::error_info(&e, None).message;
            r.bus.emit(Event::Warning {
                at: now(),
                message: format!(
                    "step `{}` created `{target}` and could not drop it after the restore failed ({why}): it is left partly restored",
                    s.id
                ),
            });
            fail
        }
    }
}

/// The foreign keys `clear_for_clean` took off the tables it kept, back on.
async fn add_back_foreign_keys(
    r: &mut Run<'_>,
    client: &TargetClient,
    cleared: &Cleared,
) -> Result<(), Fail> {
    for fk in &cleared.readd {
        client
            .get(r)
            .batch_execute(&format!(
                "ALTER TABLE {} ADD CONSTRAINT {} {}",
                fk.table,
                crate::pg::quote::ident(&fk.name),
                fk.definition
            ))
            .await
            .map_err(|e| {
                sql_failure(
                    &format!(
                        "failed to add back the foreign key {} of {}",
                        fk.name, fk.table
                    ),
                    &db::error_info(&e, None),
                )
            })?;
    }
    Ok(())
}

/// What the restore checked, and what it found different.
struct Checked {
    mismatches: Vec<String>,
    /// `mode: recreate`: what the new database did not get back of the
    /// old one's own properties.
    database: super::recreate::Recreated,
    schema_changes: Vec<crate::snapshot::Change>,
    restore_ms: u64,
    check_ms: u64,
    /// Tables counted as their data landed, while pg_restore still ran.
    counted_during_restore: usize,
}

/// The step's result: details and outputs, failed when a count or the
/// schema differs from the backup.
fn step_result(
    dir: &Path,
    m: &Manifest,
    (target, created, recreating): (&str, bool, bool),
    terminated: &[String],
    cleared: &Cleared,
    c: &Checked,
) -> Attempt {
    let checked = m.tables.iter().filter(|t| t.rows.is_some()).count();
    let schema_lines: Vec<String> = c
        .schema_changes
        .iter()
        .map(|c| format!("{} {}", c.change, c.object))
        .collect();
    let details = json!({
        "from": dir.display().to_string(),
        "target": target,
        "created": created,
        "format": m.format.name(),
        "backup_taken_at": m.created_at,
        "terminated": terminated,
        "tables_checked": checked,
        "large_objects": m.large_objects,
        "mismatches": c.mismatches,
        "schema": m.schema.as_ref().map(|x| json!({
            "covers": x.covers,
            "hash": x.hash,
            "objects": x.objects.len(),
            "differences": super::snapshot::changes_json(&c.schema_changes),
            // A backup taken by an older runbook: what it did not read.
            "not_compared": crate::snapshot::Snapshot::unread_at(x.reads),
        })),
        "dropped_created_after_backup": cleared.dropped,
        "foreign_keys_added_back": cleared.readd.iter().map(|f| format!("{}.{}", f.table, f.name)).collect::<Vec<_>>(),
        "mode": if recreating { "recreate" } else { "in_place" },
        // `mode: recreate`: the database's own properties, as read before
        // the drop, and any the new one did not get back.
        "database": recreating.then(|| json!({
            "kept": c.database.props,
            "differences": c.database.differences,
        })),
        "restore_ms": c.restore_ms,
        "check_ms": c.check_ms,
        "counted_during_restore": c.counted_during_restore,
    });
    let mut done = Done {
        details: Some(details),
        ..Done::default()
    };
    for (k, v) in [
        ("target", json!(target)),
        ("tables", json!(checked)),
        ("terminated", json!(terminated.len())),
        ("from", json!(dir.display().to_string())),
    ] {
        done.output.insert(k.into(), v);
    }
    if c.mismatches.is_empty() && schema_lines.is_empty() && c.database.differences.is_empty() {
        return Ok(done);
    }
    let mut what = Vec::new();
    if !c.mismatches.is_empty() {
        what.push(format!(
            "{} table(s) differ from the manifest: {}",
            c.mismatches.len(),
            c.mismatches.join("; ")
        ));
    }
    if !schema_lines.is_empty() {
        what.push(format!(
            "{} schema object(s) differ from the backup's snapshot: {}",
            schema_lines.len(),
            schema_lines.join("; ")
        ));
    }
    if !c.database.differences.is_empty() {
        what.push(format!(
            "the database was created again without its own {}",
            c.database.differences.join("; ")
        ));
    }
    Err(Fail {
        status: StepStatus::Failed,
        error: ErrorInfo {
            class: ErrorKind::Verify,
            message: format!("restored into `{target}`, but {}", what.join("; and ")),
            hint: Some(
                "the restore is incomplete; compare the database with the backup before using it"
                    .into(),
            ),
            ..ErrorInfo::default()
        },
        retry_class: None,
        partial: done,
        unchanged: None,
        judged: false,
    })
}

/// psql for a plain dump, pg_restore for an archive.
async fn restorer(r: &Run<'_>, m: &Manifest) -> Result<tools::Tool, Fail> {
    let bin = r.pg_bin_dir.as_deref();
    if m.format == BackupFormat::Plain {
        super::child::find_tool("psql", "0", bin).await
    } else {
        // pg_restore cannot read archives of a newer pg_dump.
        super::child::find_tool("pg_restore", &m.pg_dump_version, bin).await
    }
    .map_err(|e| tool_failure(&e).unchanged())
}

pub(crate) async fn run(
    r: &mut Run<'_>,
    s: &PlanStep,
    rs: &PlanRestore,
    timeout: Option<Duration>,
) -> Attempt {
    let started = Instant::now();
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    // Every refusal up to the first session terminated touches nothing.
    let mut dir = source_dir(r, &rs.from).map_err(Fail::unchanged)?;
    if rs.pick == Some(crate::model::Pick::Newest) {
        let (picked, passed_over) = newest(&dir).map_err(Fail::unchanged)?;
        for p in passed_over {
            super::sql::log(r, &s.id, format!("passed over {p}"));
        }
        super::sql::log(
            r,
            &s.id,
            format!("the newest verified backup is {}", picked.display()),
        );
        dir = picked;
    }
    let target = match &rs.target {
        Some(t) => {
            r.render(t)
                .map_err(|e| Fail::new(StepStatus::Failed, e).unchanged())?
                .0
        }
        None => r.database.clone(),
    };
    let m = checked_backup(r, rs, &dir, &target).await?;
    let program = restorer(r, &m).await?;
    let (exists, terminated) = prepare_target(r, s, rs, &target).await?;

    let recreating = rs.mode == crate::model::RestoreMode::Recreate;
    let how = How {
        clean: rs.clean && !recreating,
        jobs: rs.jobs,
        single_transaction: rs.single_transaction,
        use_list: None,
        unit: "tables",
        finished: None,
    };
    let original = r.db.config().clone();
    let own = target == r.database;
    let mut cleared = Cleared::default();
    let mut database = super::recreate::Recreated::default();
    if recreating {
        database = super::recreate::recreate(r, &target).await?;
    }
    let mut public = None;
    if recreating || !exists {
        public = room_for_public(r, &m, &dir, &program.path, &target).await;
    } else if how.clean
        && exists
        && m.format != BackupFormat::Plain
        && let Some(record) = &m.schema
    {
        let client = target_client(r, &target)
            .await
            .map_err(|e| sql_failure("failed to connect to the target", &e))?;
        cleared = clear_for_clean(client.get(r), &m, record)
            .await
            .map_err(|e| sql_failure("failed to drop what was created after the backup", &e))?;
        for d in &cleared.dropped {
            super::sql::log(r, &s.id, format!("dropped {d}: created after the backup"));
        }
    }
    let early = if m.format != BackupFormat::Plain && !how.single_transaction && how.jobs > 1 {
        EarlyCounts::start(r, &target, &m, &program.path, &dir).await
    } else {
        None
    };
    let how = How {
        finished: early.as_ref().map(|e| e.tx.clone()),
        ..how
    };
    let restored = restore_into(
        r,
        &s.id,
        &m,
        &dir,
        &program.path,
        &target,
        &how,
        deadline,
        timeout,
    )
    .await;
    drop(how);
    let early = match early {
        Some(e) => e.finish().await,
        None => std::collections::HashMap::new(),
    };
    if recreating && own {
        come_back(r, original).await?;
    }
    let restored = match restored {
        Ok(()) => public_back(r, &target, public).await.map_err(|e| {
            sql_failure(
                "failed to grant on schema public as a new database does",
                &e,
            )
        }),
        failed => failed,
    };
    if let Err(fail) = restored {
        return Err(match exists || recreating {
            true => fail,
            false => drop_created(r, s, &target, fail).await,
        });
    }
    let client = target_client(r, &target)
        .await
        .map_err(|e| sql_failure("failed to connect to the target", &e))?;
    add_back_foreign_keys(r, &client, &cleared).await?;
    let schema_changes = match &m.schema {
        Some(rec) => compare_schema(client.get(r), &m, rec)
            .await
            .map_err(|e| sql_failure("failed to compare the restored schema", &e))?,
        None => Vec::new(),
    };
    drop(client);
    let restore_ms = super::ms(started.elapsed());
    let check_started = Instant::now();
    let mismatches = compare_counts(r, &target, &m, &early)
        .await
        .map_err(|e| sql_failure("failed to count rows after the restore", &e))?;
    let checked = Checked {
        mismatches,
        database,
        schema_changes,
        restore_ms,
        check_ms: super::ms(check_started.elapsed()),
        counted_during_restore: early.len(),
    };
    step_result(
        &dir,
        &m,
        (&target, !exists, recreating),
        &terminated,
        &cleared,
        &checked,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_data_items_are_read_from_pg_restore_verbose_lines() {
        assert_eq!(
            finished_data_item("pg_restore: finished item 3365 TABLE DATA pgbench_accounts"),
            Some(3365)
        );
        assert_eq!(
            finished_data_item(
                "pg_restore: finished item 3218 CONSTRAINT pgbench_accounts pgbench_accounts_pkey"
            ),
            None
        );
        assert_eq!(
            finished_data_item("pg_restore: launching item 3365 TABLE DATA pgbench_accounts"),
            None
        );
        assert_eq!(
            finished_data_item("pg_restore: finished main parallel loop"),
            None
        );
    }
}
