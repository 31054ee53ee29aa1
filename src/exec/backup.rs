//! `backup` steps: pg_dump in an exported snapshot, exact row counts taken in
//! that same snapshot while the dump runs, a manifest with the sha256 of
//! every file, and a verification that reads the archive back.
//!
//! A backup that fails, is cancelled or times out is removed; if removal
//! fails, its `.incomplete` marker stays and it has no manifest, so nothing
//! will take it for a backup.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_postgres::Client;

use super::fail::{child_failure, failed, is_problem, sql_failure, tool_failure};
use super::{Attempt, Done, Fail, Run, child, ms};
use crate::backups::{self, FileHash, Manifest, Table, TocEntry, Verification};
use crate::events::ErrorKind;
use crate::events::{ErrorInfo, Event, StepStatus, now};
use crate::model::{BackupFormat, Verify};
use crate::pg::db::{self, Db};
use crate::pg::tools;
use crate::plan::{PlanBackup, PlanStep};

/// Removes a backup directory unless disarmed: every early return of a
/// failed backup cleans up after itself.
struct Partial {
    dir: PathBuf,
    armed: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The default number of dump jobs: the machine's cores, at most 4.
pub fn default_jobs() -> u32 {
    std::thread::available_parallelism()
        .map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
        .clamp(1, 4)
}

/// Create the backup directory; refuse one that holds anything.
fn prepare(dir: &Path) -> Result<Partial, Fail> {
    let io = |what: &str, e: std::io::Error| {
        failed(
            ErrorKind::Io,
            format!("failed to {what} {}: {e}", dir.display()),
            Some(
                "choose a `path` the runbook's user can write, on a disk with room for the dump"
                    .into(),
            ),
        )
    };
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .map_err(|e| io("read", e))?
            .next()
            .is_none();
        if !empty {
            return Err(failed(
                ErrorKind::Io,
                format!("backup directory {} already exists and is not empty", dir.display()),
                Some("backups are never overwritten; use a new `path`, such as one with `{{ run.id }}` in it".into()),
            ));
        }
    } else {
        std::fs::create_dir_all(dir).map_err(|e| io("create", e))?;
    }
    let guard = Partial {
        dir: dir.to_path_buf(),
        armed: true,
    };
    std::fs::write(dir.join(backups::INCOMPLETE), "pg_dump has not finished\n")
        .map_err(|e| io("write into", e))?;
    Ok(guard)
}

/// Tables the dump will hold, by pg_dump's own selection rules.
async fn candidate_tables(
    c: &Client,
    schema_only: bool,
    tables: &[String],
    exclude_tables: &[String],
    schemas: &[String],
    exclude_schemas: &[String],
) -> Result<Vec<Table>, tokio_postgres::Error> {
    fn split(patterns: &[String]) -> (Vec<Option<String>>, Vec<String>) {
        patterns.iter().map(|p| backups::pattern_regex(p)).unzip()
    }
    let (t_s, t_n) = split(tables);
    let (x_s, x_n) = split(exclude_tables);
    let (n_inc, n_exc): (Vec<String>, Vec<String>) = (
        schemas
            .iter()
            .map(|p| backups::pattern_regex(p).1)
            .collect(),
        exclude_schemas
            .iter()
            .map(|p| backups::pattern_regex(p).1)
            .collect(),
    );
    // -t wins over -n/-N, as in pg_dump.
    let use_schemas = tables.is_empty();
    let rows = c
        .query(
            "SELECT c.oid, n.nspname, c.relname
               FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE (c.relkind = 'r' OR ($1 AND c.relkind = 'p'))
                AND c.relpersistence <> 't'
                AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
                AND NOT (n.nspname = 'runbook_journal' AND obj_description(n.oid, 'pg_namespace') = 'runbook run journal')
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                                 WHERE d.classid = 'pg_catalog.pg_class'::regclass
                                   AND d.objid = c.oid AND d.deptype = 'e')
                AND (cardinality($3::text[]) = 0 OR EXISTS (
                       SELECT 1 FROM unnest($2::text[], $3::text[]) AS p(s, t)
                        WHERE CASE WHEN p.s IS NULL THEN pg_catalog.pg_table_is_visible(c.oid)
                                   ELSE n.nspname ~ p.s END
                          AND c.relname ~ p.t))
                AND NOT EXISTS (
                       SELECT 1 FROM unnest($4::text[], $5::text[]) AS p(s, t)
                        WHERE CASE WHEN p.s IS NULL THEN pg_catalog.pg_table_is_visible(c.oid)
                                   ELSE n.nspname ~ p.s END
                          AND c.relname ~ p.t)
                AND (NOT $6 OR cardinality($7::text[]) = 0 OR n.nspname ~ ANY($7))
                AND (NOT $6 OR NOT n.nspname ~ ANY($8))
              ORDER BY n.nspname, c.relname",
            &[
                &schema_only,
                &t_s,
                &t_n,
                &x_s,
                &x_n,
                &use_schemas,
                &n_inc,
                &n_exc,
            ],
        )
        .await?;
    Ok(rows.iter().map(table_of_row).collect())
}

/// A `(oid, schema, name)` row, not counted yet.
fn table_of_row(r: &tokio_postgres::Row) -> Table {
    Table {
        oid: r.get(0),
        schema: r.get(1),
        name: r.get(2),
        rows: None,
    }
}

/// Exact row counts in the session's snapshot; `ONLY`, because pg_dump
/// copies each inheritance child on its own.
async fn count_rows(c: &Client, tables: &[Table]) -> Result<Vec<i64>, tokio_postgres::Error> {
    let mut out = Vec::with_capacity(tables.len());
    for t in tables {
        let row = c
            .query_one(&format!("SELECT count(*) FROM ONLY {}", t.qualified()), &[])
            .await?;
        out.push(row.get(0));
    }
    Ok(out)
}

/// Fail if another session replaced the storage of one of `tables` (a
/// rewrite or a TRUNCATE) after the dump's snapshot was taken and before
/// it was counted, and the table then read as empty (`counts`, in the same
/// order): its rows were written by a transaction the snapshot does not
/// see, so the count, and perhaps the dump's copy, holds none of them.
/// VACUUM FULL and CLUSTER keep each row's own transaction, so the rows
/// they move stay in the snapshot, and are counted. Asked after the
/// counts, whose locks keep the tables as they were counted: the
/// snapshot's catalog row against the server's current one.
async fn replaced(c: &Client, tables: &[Table], counts: &[i64]) -> Result<(), Fail> {
    let oids: Vec<u32> = tables
        .iter()
        .zip(counts)
        .filter(|(_, n)| **n == 0)
        .map(|(t, _)| t.oid)
        .collect();
    if oids.is_empty() {
        return Ok(());
    }
    let rows = c
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname)
               FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.oid = ANY($1::oid[]) AND c.relfilenode <> 0
                AND pg_catalog.pg_relation_filenode(c.oid) IS DISTINCT FROM c.relfilenode
              ORDER BY 1",
            &[&oids],
        )
        .await
        .map_err(sql_err("failed to check the counted tables"))?;
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    if names.is_empty() {
        return Ok(());
    }
    Err(failed(
        ErrorKind::Sql,
        format!(
            "another session rewrote or emptied {} (an ALTER TABLE that rewrites it, or TRUNCATE) after the dump's snapshot was taken: in that snapshot the table reads as empty, so the backup may hold none of its rows",
            names.join(", ")
        ),
        Some(
            "run the backup again once that session is done; runbook's run lock does not stop other clients' DDL"
                .into(),
        ),
    ))
}

/// The run's lock timeout for this step, in milliseconds.
fn lock_wait_ms(r: &Run<'_>, s: &PlanStep) -> u64 {
    let settings = s.settings.as_ref().unwrap_or(&r.plan.settings);
    settings
        .lock_timeout
        .map_or(crate::plan::DEFAULT_LOCK_TIMEOUT_MS, |d| ms(d.0))
}

/// The table name in a verbose pg_dump or pg_restore line about table data.
fn table_of(line: &str, marker: &str) -> Option<String> {
    let rest = line.split_once(marker)?.1;
    Some(rest.trim().trim_matches('"').to_string())
}

/// The schema the backup covers, read in the dump's own snapshot: every
/// object for a whole-database backup, the dumped tables and what belongs
/// to them for `tables:`, every object in them for `schemas:`. None when
/// the coverage cannot be said exactly (exclusions) or holds no schema
/// (data-only): see [`records_schema`]. `all` is every object, read in
/// the snapshot while pg_dump ran.
async fn schema_record(
    client: &tokio_postgres::Client,
    all: Option<crate::snapshot::Snapshot>,
    tables: &[String],
    schemas: &[String],
    dumped: &[backups::Table],
) -> Result<Option<backups::SchemaRecord>, tokio_postgres::Error> {
    let Some(all) = all else {
        return Ok(None);
    };
    let (covers, covered) = if !tables.is_empty() && schemas.is_empty() {
        let list: Vec<(String, String)> = dumped
            .iter()
            .map(|t| (t.schema.clone(), t.name.clone()))
            .collect();
        let keys = crate::snapshot::covered_keys(client, &list).await?;
        ("tables", all.subset(|k| keys.contains(k)))
    } else if !schemas.is_empty()
        && tables.is_empty()
        && !schemas.iter().any(|p| p.contains(['*', '?', '[']))
    {
        let quoted: Vec<String> = client
            .query(
                "SELECT format('%I', n.nspname) FROM pg_catalog.pg_namespace n WHERE n.nspname = ANY($1)",
                &[&schemas],
            )
            .await?
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect();
        let in_schemas =
            |k: &str| crate::snapshot::schema_of(k).is_some_and(|s| quoted.iter().any(|q| q == s));
        ("schemas", all.subset(in_schemas))
    } else if tables.is_empty() && schemas.is_empty() {
        ("whole", all.clone())
    } else {
        return Ok(None);
    };
    let database_owner: String = client
        .query_one(
            "SELECT datdba::regrole::text FROM pg_catalog.pg_database WHERE datname = current_database()",
            &[],
        )
        .await?
        .get(0);
    let outside = all
        .objects
        .keys()
        .filter(|k| !covered.objects.contains_key(*k))
        .map(|k| k.to_string())
        .collect();
    Ok(Some(backups::SchemaRecord {
        covers: covers.into(),
        hash: covered.hash,
        objects: covered
            .objects
            .into_iter()
            .map(|(k, v)| (k.to_string(), std::sync::Arc::unwrap_or_clone(v)))
            .collect(),
        outside,
        reads: crate::snapshot::READS,
        database_owner: Some(database_owner),
    }))
}

/// Whether the backup's manifest records the schema it covers: not for
/// data only, and not with exclusions, whose coverage cannot be said
/// exactly.
fn records_schema(b: &crate::plan::PlanBackup) -> bool {
    !b.data_only && b.exclude_tables.is_empty() && b.exclude_schemas.is_empty()
}

/// What the dump holds, by the table of contents: `tables` with counts,
/// and any table the catalog query missed, counted now in the same snapshot.
async fn reconcile(
    c: &Client,
    mut counted: Vec<Table>,
    toc: &[TocEntry],
    schema_only: bool,
) -> Result<Vec<Table>, tokio_postgres::Error> {
    let desc = if schema_only { "TABLE" } else { "TABLE DATA" };
    let entries: Vec<&TocEntry> = toc.iter().filter(|e| e.desc == desc).collect();
    let matches = |t: &Table, e: &TocEntry| e.is_of(t);
    counted.retain(|t| entries.iter().any(|e| matches(t, e)));
    let missing: Vec<&TocEntry> = entries
        .into_iter()
        .filter(|e| !counted.iter().any(|t| matches(t, e)))
        .collect();
    if !missing.is_empty() {
        let oids: Vec<u32> = missing.iter().filter_map(|e| e.oid).collect();
        let names: Vec<String> = missing.iter().map(|e| e.name.clone()).collect();
        let schemas: Vec<String> = missing.iter().map(|e| e.schema.clone()).collect();
        let rows = c
            .query(
                "SELECT c.oid, n.nspname, c.relname
                   FROM pg_catalog.pg_class c
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.oid = ANY($1)
                     OR (n.nspname, c.relname) IN (SELECT * FROM unnest($2::text[], $3::text[]))",
                &[&oids, &schemas, &names],
            )
            .await?;
        let mut extra: Vec<Table> = rows.iter().map(table_of_row).collect();
        if !schema_only {
            let counts = count_rows(c, &extra).await?;
            for (t, n) in extra.iter_mut().zip(counts) {
                t.rows = Some(n);
            }
        }
        counted.extend(extra);
    }
    counted.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
    Ok(counted)
}

/// The tools a backup needs: pg_dump, and what verifies its dump
/// (pg_restore for archives; psql restores a plain dump).
struct Tools {
    pg_dump: tools::Tool,
    pg_restore: Option<tools::Tool>,
    psql: Option<tools::Tool>,
}

async fn find_tools(r: &Run<'_>, b: &PlanBackup) -> Result<Tools, Fail> {
    let bin = r.pg_bin_dir.as_deref();
    let find = |name: &'static str, version: &str| {
        let version = version.to_string();
        async move {
            child::find_tool(name, &version, bin)
                .await
                .map_err(|e| tool_failure(&e))
        }
    };
    let plain = b.format == BackupFormat::Plain;
    // Each probe runs the program once (`--version`): side by side, and
    // a failure is told in this order, pg_dump's first.
    let (pg_dump, pg_restore, psql) = tokio::join!(
        find("pg_dump", &r.server_version),
        async {
            match plain {
                true => Ok(None),
                false => find("pg_restore", &r.server_version).await.map(Some),
            }
        },
        async {
            match plain && b.verify == Verify::Restore {
                true => find("psql", "0").await.map(Some),
                false => Ok(None),
            }
        },
    );
    Ok(Tools {
        pg_dump: pg_dump?,
        pg_restore: pg_restore?,
        psql: psql?,
    })
}

/// pg_dump's options, rendered: what the manifest records and the argv
/// is built from (one copy of the step's choices, not two).
fn options(r: &Run<'_>, b: &PlanBackup) -> Result<backups::Options, Fail> {
    let list = |items: &[crate::plan::Text]| -> Result<Vec<String>, Fail> {
        items
            .iter()
            .map(|t| {
                r.render(t)
                    .map(|x| x.0)
                    .map_err(|e| Fail::new(StepStatus::Failed, e))
            })
            .collect()
    };
    Ok(backups::Options {
        jobs: match b.format {
            BackupFormat::Directory => Some(b.jobs.unwrap_or_else(default_jobs)),
            _ => None,
        },
        compress: b.compress,
        schema_only: b.schema_only,
        data_only: b.data_only,
        tables: list(&b.tables)?,
        exclude_tables: list(&b.exclude_tables)?,
        schemas: list(&b.schemas)?,
        exclude_schemas: list(&b.exclude_schemas)?,
    })
}

/// pg_dump's argv: in the exported `snapshot`, into `file`.
fn pg_dump_argv(
    r: &Run<'_>,
    s: &PlanStep,
    b: &PlanBackup,
    pg_dump: &Path,
    o: &backups::Options,
    file: &Path,
    snapshot: &str,
) -> Vec<String> {
    let format = match b.format {
        BackupFormat::Directory => "directory",
        BackupFormat::Custom => "custom",
        BackupFormat::Plain => "plain",
    };
    let mut argv: Vec<String> = vec![
        pg_dump.display().to_string(),
        "--verbose".into(),
        "--no-password".into(),
        format!("--format={format}"),
        format!("--file={}", file.display()),
        format!("--snapshot={snapshot}"),
        format!("--lock-wait-timeout={}", lock_wait_ms(r, s)),
    ];
    argv.extend(o.jobs.map(|j| format!("--jobs={j}")));
    argv.extend(o.compress.map(|c| format!("--compress={c}")));
    if o.schema_only {
        argv.push("--schema-only".into());
    }
    if o.data_only {
        argv.push("--data-only".into());
    }
    if !o.tables.is_empty() || !o.schemas.is_empty() {
        // A pattern that matches nothing is a typo, not an empty backup.
        argv.push("--strict-names".into());
    }
    argv.extend(o.tables.iter().map(|t| format!("--table={t}")));
    argv.extend(
        o.exclude_tables
            .iter()
            .map(|t| format!("--exclude-table={t}")),
    );
    argv.extend(o.schemas.iter().map(|t| format!("--schema={t}")));
    // The run journal records runs on this database; it is not its data,
    // and a restore must not roll it back.
    if r.journal.is_on() {
        argv.push("--exclude-schema=runbook_journal".into());
    }
    argv.extend(
        o.exclude_schemas
            .iter()
            .map(|t| format!("--exclude-schema={t}")),
    );
    argv
}

/// Run pg_dump, turning its `--verbose` lines into table progress and
/// passing on the lines that report a problem.
async fn dump(
    r: &mut Run<'_>,
    s: &PlanStep,
    argv: &[String],
    total: Option<u64>,
    deadline: Option<tokio::time::Instant>,
) -> Result<child::Ran, ErrorInfo> {
    let step = s.id.clone();
    let mut dumped = 0u64;
    let base_dir = r.base_dir.clone();
    let env = r.child_env().await?;
    child::run(r, argv, &env, &base_dir, deadline, |r, _, line| {
        if let Some(t) = table_of(line, "dumping contents of table ") {
            dumped += 1;
            r.bus.emit(Event::StepProgress {
                at: now(),
                step: step.clone(),
                done: dumped,
                total,
                unit: "tables".into(),
                item: Some(t),
                per_second: None,
                eta_ms: None,
            });
        } else if is_problem(line) {
            r.bus.emit(Event::StepOutput {
                at: now(),
                step: step.clone(),
                stream: "stderr".into(),
                line: line.to_string(),
            });
        }
    })
    .await
}

/// What the dump covers, read in its own snapshot while pg_dump runs.
struct Snapshot {
    client: Arc<Client>,
    cancel: db::Canceller,
    /// The exported snapshot's name, for `pg_dump --snapshot`.
    name: String,
    candidates: Vec<Table>,
    large_objects: Option<i64>,
}

fn sql_err(what: &'static str) -> impl Fn(tokio_postgres::Error) -> Fail {
    move |e| sql_failure(what, &db::error_info(&e, None))
}

/// A session in a repeatable-read snapshot that the dump imports: the row
/// counts see exactly the rows the dump holds.
async fn open_snapshot(
    r: &Run<'_>,
    o: &backups::Options,
    lock_wait_ms: u64,
) -> Result<Snapshot, Fail> {
    let snap = Db::login_again(r.db.config().clone(), &r.app_name)
        .await
        .map_err(|e| sql_failure("failed to open the snapshot session", &e))?;
    let cancel = snap.canceller();
    let client = Arc::new(snap.client);
    db::as_pg_dump(&client)
        .await
        .map_err(sql_err("failed to prepare the snapshot session"))?;
    let list = |c: Arc<Client>| async move {
        candidate_tables(
            &c,
            o.schema_only,
            &o.tables,
            &o.exclude_tables,
            &o.schemas,
            &o.exclude_schemas,
        )
        .await
        .map_err(sql_err("failed to list the tables to back up"))
    };
    // The tables are locked before the snapshot is taken (a LOCK takes
    // none), so that it is taken after every transaction that holds one of
    // them. A transaction that rewrote a table (ALTER TABLE ... TYPE,
    // TRUNCATE), begun before the snapshot and committed after, left the
    // table empty in it: pg_dump dumped no rows, the counts said 0, a
    // restore matched, and the backup passed with the table's rows missing.
    // Every other session's DDL on them then waits for the reads beside the
    // dump too, as it waits for pg_dump. Each lock is a slot of the
    // server's lock table, which pg_dump fills as much: beyond
    // max_locks_per_transaction tables they are not taken, and
    // [`replaced`] finds a table rewritten in the meantime instead.
    let listed = list(Arc::clone(&client)).await?;
    let budget: i64 = client
        .query_one(
            "SELECT pg_catalog.current_setting('max_locks_per_transaction')::int8",
            &[],
        )
        .await
        .map_err(sql_err("failed to prepare the snapshot session"))?
        .get(0);
    let lock = if !listed.is_empty() && listed.len() as i64 <= budget {
        let names: Vec<String> = listed.iter().map(Table::qualified).collect();
        format!(
            "SET LOCAL lock_timeout = '{lock_wait_ms}ms'; LOCK TABLE ONLY {} IN ACCESS SHARE MODE;",
            names.join(", ")
        )
    } else {
        String::new()
    };
    let opening = if lock.is_empty() {
        "failed to open the snapshot's transaction"
    } else {
        "failed to open the snapshot's transaction and lock the tables to back up"
    };
    // The counts run beside pg_dump, which wants every core: one process
    // each, no parallel workers, and no JIT (a count compiles in more time
    // than it saves), so they take their share and no more.
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;
             SET LOCAL max_parallel_workers_per_gather = 0;
             SET LOCAL jit = off; {lock}"
        ))
        .await
        .map_err(sql_err(opening))?;
    let name: String = client
        .query_one("SELECT pg_catalog.pg_export_snapshot()", &[])
        .await
        .map_err(sql_err("failed to export a snapshot"))?
        .get(0);
    // Listed again in the snapshot: what pg_dump will see.
    let candidates = list(Arc::clone(&client)).await?;
    let whole = o.tables.is_empty() && o.schemas.is_empty() && !o.schema_only;
    let large_objects = if whole {
        Some(
            client
                .query_one(
                    "SELECT count(*) FROM pg_catalog.pg_largeobject_metadata",
                    &[],
                )
                .await
                .map_err(sql_err("failed to count large objects"))?
                .get(0),
        )
    } else {
        None
    };
    Ok(Snapshot {
        client,
        cancel,
        name,
        candidates,
        large_objects,
    })
}

/// The dump's table of contents, which is the truth of what was dumped.
async fn read_toc(tools: &Tools, dump_path: &Path) -> Result<Vec<TocEntry>, Fail> {
    let restore = tools.pg_restore.as_ref().map(|t| t.path.clone());
    let dump_path = dump_path.to_path_buf();
    tokio::task::spawn_blocking(move || match restore {
        Some(p) => backups::archive_toc(&p, &dump_path),
        None => backups::plain_toc(&dump_path),
    })
    .await
    .map_err(|e| failed(ErrorKind::Internal, e.to_string(), None))?
    .map_err(|e| {
        failed(
            ErrorKind::Backup,
            format!("the new dump cannot be read: {e}"),
            Some(e.hint().into()),
        )
    })
}

/// Check the backup as the step asks: `Ok(Err)` is a verification
/// failure, recorded in the manifest; `Err` stops the step.
async fn verify(
    r: &mut Run<'_>,
    s: &PlanStep,
    b: &PlanBackup,
    (manifest, toc, dir): (&Manifest, &[TocEntry], &Path),
    tools: &Tools,
    deadline: Option<tokio::time::Instant>,
    timeout: Option<Duration>,
) -> Result<Result<(), String>, Fail> {
    match b.verify {
        Verify::None => Ok(Ok(())),
        Verify::List => {
            let missing = backups::uncovered(manifest, toc);
            Ok(if missing.is_empty() {
                Ok(())
            } else {
                Err(backups::BackupError::Uncovered { missing }.to_string())
            })
        }
        Verify::Restore => {
            // find_tools found one of them for `verify: restore`.
            let Some(restorer) = tools.pg_restore.as_ref().or(tools.psql.as_ref()) else {
                return Err(failed(
                    ErrorKind::Internal,
                    "no pg_restore or psql to verify the backup with".into(),
                    None,
                ));
            };
            let tools = (tools.pg_dump.path.as_path(), restorer.path.as_path());
            verify_by_restore(r, s, manifest, dir, tools, deadline, timeout).await
        }
    }
}

/// [`backups::archive_list`], off the runtime's thread.
async fn archive_list(pg_restore: &Path, dump: &Path) -> Result<String, backups::BackupError> {
    let (pg_restore, dump) = (pg_restore.to_path_buf(), dump.to_path_buf());
    tokio::task::spawn_blocking(move || backups::archive_list(&pg_restore, &dump))
        .await
        .unwrap_or_else(|e| {
            Err(backups::BackupError::BadArchive {
                reason: e.to_string(),
            })
        })
}

/// What was loaded into a scratch database from outside a backup.
struct Outside {
    /// The objects pg_restore was given.
    objects: usize,
    /// pg_restore's last complaint, when it did not load them all.
    error: Option<String>,
}

/// A `pg_restore --list` line's object, without its dump id, oids and
/// owner: `TYPE public mood`. None for a comment or a blank line.
fn toc_object(line: &str) -> Option<&str> {
    if line.starts_with(';') {
        return None;
    }
    let (_, rest) = line.split_once("; ")?;
    let mut words = rest.splitn(3, ' ');
    let (_, _, object) = (words.next()?, words.next()?, words.next()?);
    Some(
        object
            .trim_end()
            .rsplit_once(' ')
            .map_or(object, |(o, _)| o),
    )
}

/// Kinds of object a table can use from elsewhere, that pg_dump `-t` and
/// `-n` leave out of a backup of some tables or schemas.
fn used_from_outside(object: &str) -> bool {
    if object.starts_with("SEQUENCE OWNED BY") || object.starts_with("SEQUENCE SET") {
        return false;
    }
    [
        "SCHEMA ",
        "EXTENSION ",
        "TYPE ",
        "DOMAIN ",
        "FUNCTION ",
        "PROCEDURE ",
        "AGGREGATE ",
        "COLLATION ",
        "SEQUENCE ",
    ]
    .iter()
    .any(|k| object.starts_with(k))
}

/// What a backup of some tables or schemas needs from outside it to be
/// restored into an empty database: a column's enum, a trigger's function,
/// a default's sequence, the schema or extension they live in. They are
/// read from the source database (its schema's pre-data section, less
/// tables, views and what the backup holds itself) and loaded into the
/// scratch database before the test restore. Best effort: the test
/// restore that follows is the verdict. None when there was nothing to
/// load, or it could not be read.
async fn load_outside(
    r: &mut Run<'_>,
    (pg_dump, pg_restore): (&Path, &Path),
    held: &str,
    scratch: &str,
    tmp: &Path,
    deadline: Option<tokio::time::Instant>,
) -> Option<Outside> {
    let file = tmp.join("outside.dump");
    let argv = vec![
        pg_dump.display().to_string(),
        "--schema-only".into(),
        "--section=pre-data".into(),
        "--format=custom".into(),
        "--no-password".into(),
        format!("--file={}", file.display()),
    ];
    let env = r.child_env().await.ok()?;
    let base = r.base_dir.clone();
    let dumped = child::run(r, &argv, &env, &base, deadline, |_, _, _| {}).await;
    if !dumped.is_ok_and(|d| d.code == Some(0)) {
        return None;
    }
    let listed = archive_list(pg_restore, &file).await.ok()?;
    let held: std::collections::HashSet<&str> = held.lines().filter_map(toc_object).collect();
    let keep: Vec<String> = listed
        .lines()
        .filter(|l| toc_object(l).is_some_and(|o| used_from_outside(o) && !held.contains(o)))
        .map(|l| format!("{l}\n"))
        .collect();
    let list = tmp.join("outside.list");
    if keep.is_empty() || std::fs::write(&list, keep.concat()).is_err() {
        return None;
    }
    let argv = vec![
        pg_restore.display().to_string(),
        "--no-password".into(),
        "--no-owner".into(),
        format!("--dbname={}", super::restore::conninfo_dbname(scratch)),
        format!("--use-list={}", list.display()),
        file.display().to_string(),
    ];
    let mut env = r.child_env().await.ok()?;
    env.retain(|(k, _)| k != "PGDATABASE");
    let loaded = child::run(r, &argv, &env, &base, deadline, |_, _, _| {}).await;
    let error = match loaded {
        Ok(ran) if ran.code == Some(0) => None,
        Ok(ran) => Some(
            ran.stderr
                .tail()
                .and_then(|t| t.lines().last().map(str::to_string))
                .unwrap_or_else(|| "pg_restore failed".into()),
        ),
        Err(e) => Some(e.message),
    };
    Some(Outside {
        objects: keep.len(),
        error,
    })
}

/// Remove all but the newest `keep` backups of this runbook beside `dir`,
/// and those older than `keep_for`
/// (off the runtime's thread: a dump can be many files).
async fn prune(
    r: &mut Run<'_>,
    dir: &Path,
    keep: Option<u32>,
    keep_for: Option<std::time::Duration>,
) -> Vec<String> {
    if keep.is_none() && keep_for.is_none() {
        return Vec::new();
    }
    let (dir, runbook) = (dir.to_path_buf(), r.plan.runbook.name.clone());
    let results = child::blocking(move || {
        backups::prunable(&dir, &runbook, keep.map(|k| k as usize), keep_for)
            .into_iter()
            .map(|old| {
                let removed = std::fs::remove_dir_all(&old);
                (old, removed)
            })
            .collect::<Vec<_>>()
    })
    .await;
    let mut pruned = Vec::new();
    for (old, removed) in results {
        match removed {
            Ok(()) => pruned.push(old.display().to_string()),
            Err(e) => r.bus.emit(Event::Warning {
                at: now(),
                message: format!("failed to prune old backup {}: {e}", old.display()),
            }),
        }
    }
    pruned
}

/// Refuse a backup directory that git would commit.
async fn refuse_in_git_tree(dir: &Path) -> Result<(), Fail> {
    let asked = dir.to_path_buf();
    let Some(root) = child::blocking(move || backups::unignored_in_git_tree(&asked)).await else {
        return Ok(());
    };
    Err(failed(
        ErrorKind::Backup,
        format!(
            "refusing to write a backup of the database into `{}`: it is inside the git working tree `{}` and git does not ignore it, so `git add` would commit the data; nothing was written",
            dir.display(),
            root.display()
        ),
        Some("put the backup outside the repository (an absolute `path:`), or add its directory to .gitignore".into()),
    )
    .unchanged())
}

/// pg_dump in the snapshot's export, with the candidates' rows counted,
/// and then the schema read (when the manifest records it), in the same
/// snapshot meanwhile. Reading the schema while pg_dump still holds its
/// locks also means no DDL on a dumped table can come between the two.
async fn dump_counted(
    r: &mut Run<'_>,
    (s, b): (&PlanStep, &PlanBackup),
    snap: &mut Snapshot,
    (tools, options, dump_path): (&Tools, &backups::Options, &Path),
    deadline: Option<tokio::time::Instant>,
    timeout: Option<Duration>,
) -> Result<(child::Ran, Option<crate::snapshot::Snapshot>), Fail> {
    // On the server's other cores, while pg_dump runs.
    let mut reading = {
        let c = Arc::clone(&snap.client);
        let t = snap.candidates.clone();
        let (count, schema) = (!options.schema_only, records_schema(b));
        tokio::spawn(async move {
            let counts = match count {
                true => {
                    let counts = count_rows(&c, &t)
                        .await
                        .map_err(sql_err("failed to count rows in the dump's snapshot"))?;
                    replaced(&c, &t, &counts).await?;
                    counts
                }
                false => Vec::new(),
            };
            let all = match schema {
                true => Some(
                    crate::snapshot::take(&c)
                        .await
                        .map_err(sql_err("failed to snapshot the schema the backup covers"))?,
                ),
                false => None,
            };
            Ok::<_, Fail>((counts, all))
        })
    };
    let argv = pg_dump_argv(r, s, b, &tools.pg_dump.path, options, dump_path, &snap.name);
    let total = (!options.schema_only).then_some(snap.candidates.len() as u64);
    let ran = dump(r, s, &argv, total, deadline).await;
    let ran = match ran {
        Ok(ran) if ran.code == Some(0) && ran.ended.is_none() => ran,
        failure => {
            reading.abort();
            let ran = failure.map_err(|e| Fail::new(StepStatus::Failed, e))?;
            snap.cancel.cancel().await;
            return Err(child_failure("pg_dump", &ran, timeout));
        }
    };
    // The counts have no server timeout (see `db::as_pg_dump`): the step's
    // own bounds them, as it bounds pg_dump, and an interrupt ends them.
    let until = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    let read = tokio::select! {
        read = &mut reading => Ok(read),
        () = until => Err(Fail::new(StepStatus::TimedOut, super::timeout_error(timeout))),
        () = r.stop_signal() => Err(Fail::new(StepStatus::Cancelled, super::cancelled_error())),
    };
    let read = match read {
        Ok(read) => read,
        Err(stopped) => {
            reading.abort();
            snap.cancel.cancel().await;
            return Err(stopped);
        }
    };
    let (counts, all) = read.map_err(|e| {
        failed(
            ErrorKind::Internal,
            format!("reading the dump's snapshot stopped: {e}"),
            None,
        )
    })??;
    if !options.schema_only {
        for (t, n) in snap.candidates.iter_mut().zip(counts) {
            t.rows = Some(n);
        }
    }
    Ok((ran, all))
}

/// The sha256 of every file of the dump, off the runtime's thread.
async fn hash_files(dir: &Path, dump_name: &'static str) -> Result<Vec<FileHash>, Fail> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || backups::hash_dump(&dir, dump_name))
        .await
        .map_err(|e| failed(ErrorKind::Internal, e.to_string(), None))?
        .map_err(|e| failed(ErrorKind::Io, format!("failed to hash the dump: {e}"), None))
}

/// How the verification went, for the manifest.
fn verification(method: Verify, verdict: &Result<(), String>, started: Instant) -> Verification {
    Verification {
        method,
        status: match (verdict, method) {
            (_, Verify::None) => "skipped",
            (Ok(()), _) => "passed",
            (Err(_), _) => "failed",
        }
        .into(),
        detail: verdict.as_ref().err().cloned(),
        duration_ms: ms(started.elapsed()),
    }
}

pub(crate) async fn run(
    r: &mut Run<'_>,
    s: &PlanStep,
    b: &PlanBackup,
    timeout: Option<Duration>,
) -> Attempt {
    let started = Instant::now();
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let dir = r.base_dir.join(
        r.render(&b.path)
            .map_err(|e| Fail::new(StepStatus::Failed, e))?
            .0,
    );
    let options = options(r, b)?;
    // The checks, the tool probes and the snapshot session are independent
    // and none writes anything: they run side by side, and their failures
    // are still reported in this order.
    let (refused, tools, snap) = tokio::join!(
        refuse_in_git_tree(&dir),
        find_tools(r, b),
        open_snapshot(r, &options, lock_wait_ms(r, s))
    );
    refused?;
    let tools = tools?;
    let mut snap = snap?;
    let mut guard = prepare(&dir)?;
    let dump_name = backups::dump_name(b.format);
    let dump_path = dir.join(dump_name);

    let (ran, all) = dump_counted(
        r,
        (s, b),
        &mut snap,
        (&tools, &options, &dump_path),
        deadline,
        timeout,
    )
    .await?;

    // What the dump holds, read from its table of contents and checked
    // against the snapshot, beside hashing its files: neither needs the
    // other.
    let described = async {
        let toc = read_toc(&tools, &dump_path).await?;
        let candidates = std::mem::take(&mut snap.candidates);
        let tables_out = reconcile(&snap.client, candidates, &toc, options.schema_only)
            .await
            .map_err(sql_err("failed to count rows in the dump's snapshot"))?;
        let schema_record = schema_record(
            &snap.client,
            all,
            &options.tables,
            &options.schemas,
            &tables_out,
        )
        .await
        .map_err(sql_err("failed to snapshot the schema the backup covers"))?;
        Ok::<_, Fail>((toc, tables_out, schema_record))
    };
    let (described, files) = tokio::join!(described, hash_files(&dir, dump_name));
    let _ = snap.client.batch_execute("ROLLBACK").await;
    let (toc, tables_out, schema_record) = described?;
    let files = files?;
    let Snapshot {
        name: snapshot,
        large_objects,
        ..
    } = snap;

    let total_bytes: u64 = files.iter().map(|f: &FileHash| f.bytes).sum();
    let duration_ms = ms(started.elapsed());
    let mut manifest = Manifest {
        manifest_version: backups::MANIFEST_VERSION.into(),
        format: b.format,
        dump: dump_name.into(),
        created_at: now(),
        duration_ms,
        runbook: Some(r.plan.runbook.name.clone()),
        runbook_version: Some(r.plan.runbook.version.clone()),
        run_id: Some(r.run_id.clone()),
        step: Some(s.id.clone()),
        database: r.database.clone(),
        server_version: r.server_version.clone(),
        pg_dump_version: tools.pg_dump.version.clone(),
        snapshot: Some(snapshot),
        options,
        tables: tables_out,
        large_objects,
        total_bytes,
        files,
        schema: schema_record,
        verification: Verification {
            method: b.verify,
            status: "skipped".into(),
            detail: None,
            duration_ms: 0,
        },
    };

    let verify_started = Instant::now();
    let verdict = verify(r, s, b, (&manifest, &toc, &dir), &tools, deadline, timeout).await?;
    manifest.verification = verification(b.verify, &verdict, verify_started);

    backups::write_manifest(&dir, &manifest).map_err(|e| {
        failed(
            ErrorKind::Io,
            format!(
                "failed to write {}: {e}",
                dir.join(backups::MANIFEST).display()
            ),
            Some("the disk may be full; the partial backup was removed".into()),
        )
    })?;
    let _ = std::fs::remove_file(dir.join(backups::INCOMPLETE));
    guard.armed = false;
    let sha256 = backups::manifest_sha256(&dir).unwrap_or_default();
    let pruned = prune(r, &dir, b.keep, b.keep_for.map(|d| d.0)).await;

    step_result(
        &dir,
        &manifest,
        &sha256,
        pruned,
        &ran,
        b,
        &tools.pg_dump,
        verdict,
    )
}

/// The step's result: its details and outputs, and the verification's
/// verdict as its status.
#[expect(
    clippy::too_many_arguments,
    reason = "the facts a finished backup reports"
)]
fn step_result(
    dir: &Path,
    manifest: &Manifest,
    sha256: &str,
    pruned: Vec<String>,
    ran: &child::Ran,
    b: &PlanBackup,
    pg_dump: &tools::Tool,
    verdict: Result<(), String>,
) -> Attempt {
    let table_list: Vec<Value> = manifest
        .tables
        .iter()
        .map(|t| json!({"schema": t.schema, "name": t.name, "rows": t.rows}))
        .collect();
    let details = json!({
        "path": dir.display().to_string(),
        "format": b.format.name(),
        "bytes": manifest.total_bytes,
        "files": manifest.files.len(),
        "sha256": sha256,
        "tables": table_list,
        "large_objects": manifest.large_objects,
        "pg_dump": format!("{} ({})", pg_dump.path.display(), pg_dump.version),
        "jobs": manifest.options.jobs,
        "duration_ms": manifest.duration_ms,
        "verification": manifest.verification,
        "pruned": pruned,
    });
    let mut done = Done {
        stderr_tail: ran.stderr.tail(),
        details: Some(details),
        ..Done::default()
    };
    for (k, v) in [
        ("path", json!(dir.display().to_string())),
        ("bytes", json!(manifest.total_bytes)),
        ("sha256", json!(sha256)),
        ("tables", json!(table_list)),
        ("duration_ms", json!(manifest.duration_ms)),
        ("format", json!(b.format.name())),
    ] {
        done.output.insert(k.into(), v);
    }
    match verdict {
        Ok(()) => Ok(done),
        Err(detail) => Err(Fail {
            status: StepStatus::Failed,
            error: ErrorInfo {
                class: ErrorKind::Verify,
                message: format!("the backup failed verification ({}): {detail}", b.verify_name()),
                hint: Some("the manifest records the failure, so the backup will never be restored; look at the dump and take a new one".into()),
                ..ErrorInfo::default()
            },
            retry_class: None,
            partial: done,
            unchanged: None,
            judged: false,
        }),
    }
}

/// Restore into a scratch database, compare row counts, drop it. `Ok(Err)`
/// is a verification failure; `Err` stops the step (timeout, interrupt).
async fn verify_by_restore(
    r: &mut Run<'_>,
    s: &PlanStep,
    m: &Manifest,
    dir: &Path,
    (pg_dump, restorer): (&Path, &Path),
    deadline: Option<tokio::time::Instant>,
    timeout: Option<Duration>,
) -> Result<Result<(), String>, Fail> {
    // A backup of some tables holds their foreign keys to tables it does
    // not hold, which an empty scratch database cannot satisfy. The test
    // restore leaves those constraints out: it proves data and counts.
    let filtered = !m.options.tables.is_empty()
        || !m.options.schemas.is_empty()
        || !m.options.exclude_tables.is_empty()
        || !m.options.exclude_schemas.is_empty();
    // Read before the scratch database exists: an archive that cannot be
    // listed fails the verification with nothing to clean up.
    let listed = if filtered && m.format != BackupFormat::Plain {
        match archive_list(restorer, &dir.join(&m.dump)).await {
            Ok(l) => Some(l),
            Err(e) => return Ok(Err(format!("the dump cannot be listed: {e}"))),
        }
    } else {
        None
    };
    let scratch = format!("runbook_verify_{:08x}", fastrand::u32(..));
    let q = crate::pg::quote::ident(&scratch);
    if let Err(e) =
        r.db.client
            .batch_execute(&format!("CREATE DATABASE {q} TEMPLATE template0"))
            .await
    {
        return Ok(Err(format!(
            "failed to create the scratch database: {}",
            db::error_info(&e, None).message
        )));
    }
    // Only counts are compared here: `public`'s grants need not come back.
    super::restore::room_for_public(r, m, dir, restorer, &scratch).await;
    let list_dir =
        tempfile::tempdir().map_err(|e| failed(ErrorKind::Backup, e.to_string(), None))?;
    let use_list = if let Some(listed) = listed {
        let kept: String = listed
            .lines()
            .filter(|l| !l.contains(" FK CONSTRAINT "))
            .map(|l| format!("{l}\n"))
            .collect();
        let path = list_dir.path().join("toc.list");
        std::fs::write(&path, kept).map_err(|e| failed(ErrorKind::Backup, e.to_string(), None))?;
        let loaded = load_outside(
            r,
            (pg_dump, restorer),
            &listed,
            &scratch,
            list_dir.path(),
            deadline,
        )
        .await;
        if let Some(Outside { objects, error }) = loaded {
            let how = match error {
                None => "loaded".to_string(),
                Some(e) => format!("given to pg_restore, which did not load them all ({e})"),
            };
            r.bus.emit(Event::StepOutput {
                at: now(),
                step: s.id.clone(),
                stream: "stderr".into(),
                line: format!(
                    "the test restore's database first got {objects} object(s) the tables use from outside the backup (types, functions, sequences, schemas, extensions), read from the source database: {how}"
                ),
            });
        }
        Some(path)
    } else {
        None
    };
    let result = super::restore::restore_into(
        r,
        &s.id,
        m,
        dir,
        restorer,
        &scratch,
        &super::restore::How {
            clean: false,
            jobs: m.options.jobs.unwrap_or(1),
            single_transaction: m.options.jobs.unwrap_or(1) == 1,
            use_list,
            unit: "tables restored to verify",
            finished: None,
        },
        deadline,
        timeout,
    )
    .await;
    let checked: Result<Result<(), String>, Fail> = match result {
        Ok(()) => super::restore::compare_counts(r, &scratch, m, &std::collections::HashMap::new())
            .await
            .map_err(|e| sql_failure("failed to count rows in the scratch database", &e))
            .map(|mismatches| {
                if mismatches.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "row counts differ after a test restore: {}",
                        mismatches.join("; ")
                    ))
                }
            }),
        Err(f) if f.status == StepStatus::Failed => {
            Ok(Err(format!("the test restore failed: {}", f.error.message)))
        }
        Err(f) => Err(f),
    };
    let drop_sql = format!("DROP DATABASE IF EXISTS {q} WITH (FORCE)");
    if let Err(e) = r.db.client.batch_execute(&drop_sql).await {
        r.bus.emit(Event::Warning {
            at: now(),
            message: format!(
                "failed to drop the scratch database {scratch}: {}; drop it by hand",
                db::error_info(&e, None).message
            ),
        });
    }
    checked
}

impl crate::plan::PlanBackup {
    fn verify_name(&self) -> &'static str {
        match self.verify {
            Verify::None => "none",
            Verify::List => "list",
            Verify::Restore => "restore",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toc_line_names_its_object_and_only_outside_kinds_are_loaded() {
        let object = |l| toc_object(l);
        assert_eq!(
            object("215; 1247 16386 TYPE public mood postgres"),
            Some("TYPE public mood")
        );
        assert_eq!(
            object("216; 1255 16390 FUNCTION public f(integer, text) app"),
            Some("FUNCTION public f(integer, text)")
        );
        assert_eq!(object(";  Archive created at 2026-11-30"), None);
        assert_eq!(object(""), None);
        for kept in [
            "TYPE public mood",
            "FUNCTION public f()",
            "SEQUENCE public ids",
            "SCHEMA - app",
        ] {
            assert!(used_from_outside(kept), "{kept}");
        }
        for left in [
            "TABLE public t",
            "VIEW public v",
            "SEQUENCE OWNED BY public ids",
            "SEQUENCE SET public ids",
            "TABLE DATA public t",
            "COMMENT public TABLE t",
        ] {
            assert!(!used_from_outside(left), "{left}");
        }
    }
}
