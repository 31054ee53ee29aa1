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
use crate::plan::PlanStep;

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
/// (data-only).
async fn schema_record(
    client: &tokio_postgres::Client,
    b: &crate::plan::PlanBackup,
    tables: &[String],
    schemas: &[String],
    dumped: &[backups::Table],
) -> Result<Option<backups::SchemaRecord>, tokio_postgres::Error> {
    if b.data_only || !b.exclude_tables.is_empty() || !b.exclude_schemas.is_empty() {
        return Ok(None);
    }
    let all = crate::snapshot::take(client).await?;
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
            .map(|r| format!("{}.", r.get::<_, String>(0)))
            .collect();
        let in_schemas = |k: &str| {
            k.split_once(' ')
                .is_some_and(|(_, name)| quoted.iter().any(|q| name.starts_with(q.as_str())))
        };
        ("schemas", all.subset(in_schemas))
    } else if tables.is_empty() && schemas.is_empty() {
        ("whole", all.clone())
    } else {
        return Ok(None);
    };
    let outside = all
        .objects
        .keys()
        .filter(|k| !covered.objects.contains_key(*k))
        .cloned()
        .collect();
    Ok(Some(backups::SchemaRecord {
        covers: covers.into(),
        hash: covered.hash,
        objects: covered.objects,
        outside,
    }))
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
    let matches = |t: &Table, e: &TocEntry| match e.oid {
        Some(oid) if oid != 0 => oid == t.oid,
        _ => e.schema == t.schema && e.name == t.name,
    };
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

pub(crate) async fn run(
    r: &mut Run<'_>,
    s: &PlanStep,
    b: &crate::plan::PlanBackup,
    timeout: Option<Duration>,
) -> Attempt {
    let started = Instant::now();
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let render_fail = |e: ErrorInfo| Fail::new(StepStatus::Failed, e);
    let dir = r.base_dir.join(r.render(&b.path).map_err(render_fail)?.0);
    if let Some(root) = backups::unignored_in_git_tree(&dir) {
        return Err(failed(
            ErrorKind::Backup,
            format!(
                "refusing to write a backup of the database into `{}`: it is inside the git working tree `{}` and git does not ignore it, so `git add` would commit the data; nothing was written",
                dir.display(),
                root.display()
            ),
            Some("put the backup outside the repository (an absolute `path:`), or add its directory to .gitignore".into()),
        )
        .unchanged());
    }
    let list = |items: &[crate::plan::Text]| -> Result<Vec<String>, Fail> {
        items
            .iter()
            .map(|t| r.render(t).map(|x| x.0).map_err(render_fail))
            .collect()
    };
    let tables = list(&b.tables)?;
    let exclude_tables = list(&b.exclude_tables)?;
    let schemas = list(&b.schemas)?;
    let exclude_schemas = list(&b.exclude_schemas)?;

    let bin = r.pg_bin_dir.clone();
    let pg_dump =
        tools::find("pg_dump", &r.server_version, bin.as_deref()).map_err(|e| tool_failure(&e))?;
    let pg_restore = if b.format == BackupFormat::Plain {
        None
    } else {
        Some(
            tools::find("pg_restore", &r.server_version, bin.as_deref())
                .map_err(|e| tool_failure(&e))?,
        )
    };
    let psql = if b.format == BackupFormat::Plain && b.verify == Verify::Restore {
        Some(tools::find("psql", "0", bin.as_deref()).map_err(|e| tool_failure(&e))?)
    } else {
        None
    };

    let mut guard = prepare(&dir)?;
    let dump_name = backups::dump_name(b.format);

    // A session whose repeatable-read snapshot the dump imports: the row
    // counts below see exactly the rows the dump holds.
    let snap = Db::connect(r.db.config().clone(), &r.app_name)
        .await
        .map_err(|e| sql_failure("failed to open the snapshot session", &e))?;
    let snap_client = Arc::new(snap.client);
    let sql_err = |what: &'static str| {
        move |e: tokio_postgres::Error| sql_failure(what, &db::error_info(&e, None))
    };
    snap_client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(sql_err("failed to start the snapshot transaction"))?;
    let snapshot: String = snap_client
        .query_one("SELECT pg_catalog.pg_export_snapshot()", &[])
        .await
        .map_err(sql_err("failed to export a snapshot"))?
        .get(0);
    let mut candidates = candidate_tables(
        &snap_client,
        b.schema_only,
        &tables,
        &exclude_tables,
        &schemas,
        &exclude_schemas,
    )
    .await
    .map_err(sql_err("failed to list the tables to back up"))?;
    let whole = tables.is_empty() && schemas.is_empty() && !b.schema_only;
    let large_objects: Option<i64> = if whole {
        Some(
            snap_client
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

    // Count while pg_dump runs, on the server's other cores.
    let counting = if b.schema_only {
        None
    } else {
        let c = Arc::clone(&snap_client);
        let t = candidates.clone();
        Some(tokio::spawn(async move { count_rows(&c, &t).await }))
    };

    let jobs = match b.format {
        BackupFormat::Directory => Some(b.jobs.unwrap_or_else(default_jobs)),
        _ => None,
    };
    let format = match b.format {
        BackupFormat::Directory => "directory",
        BackupFormat::Custom => "custom",
        BackupFormat::Plain => "plain",
    };
    let mut argv: Vec<String> = vec![
        pg_dump.path.display().to_string(),
        "--verbose".into(),
        "--no-password".into(),
        format!("--format={format}"),
        format!("--file={}", dir.join(dump_name).display()),
        format!("--snapshot={snapshot}"),
        format!("--lock-wait-timeout={}", lock_wait_ms(r, s)),
    ];
    if let Some(j) = jobs {
        argv.push(format!("--jobs={j}"));
    }
    if let Some(c) = b.compress {
        argv.push(format!("--compress={c}"));
    }
    if b.schema_only {
        argv.push("--schema-only".into());
    }
    if b.data_only {
        argv.push("--data-only".into());
    }
    if !tables.is_empty() || !schemas.is_empty() {
        // A pattern that matches nothing is a typo, not an empty backup.
        argv.push("--strict-names".into());
    }
    argv.extend(tables.iter().map(|t| format!("--table={t}")));
    argv.extend(
        exclude_tables
            .iter()
            .map(|t| format!("--exclude-table={t}")),
    );
    argv.extend(schemas.iter().map(|t| format!("--schema={t}")));
    // The run journal records runs on this database; it is not its data,
    // and a restore must not roll it back.
    if r.journal.is_on() {
        argv.push("--exclude-schema=runbook_journal".into());
    }
    argv.extend(
        exclude_schemas
            .iter()
            .map(|t| format!("--exclude-schema={t}")),
    );

    let total = (!b.schema_only).then_some(candidates.len() as u64);
    let step = s.id.clone();
    let mut dumped = 0u64;
    let base_dir = r.base_dir.clone();
    let env = r.pg_env.clone();
    let ran = child::run(r, &argv, &env, &base_dir, deadline, |r, _, line| {
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
    .await;
    let ran = match ran {
        Ok(ran) => ran,
        Err(e) => {
            if let Some(h) = counting {
                h.abort();
            }
            return Err(Fail::new(StepStatus::Failed, e));
        }
    };
    if ran.code != Some(0) || ran.ended.is_some() {
        if let Some(h) = counting {
            h.abort();
        }
        let _ = snap_client
            .cancel_token()
            .cancel_query(tokio_postgres::NoTls)
            .await;
        return Err(child_failure("pg_dump", &ran, timeout));
    }
    if let Some(h) = counting {
        let counts = h
            .await
            .map_err(|e| {
                failed(
                    ErrorKind::Internal,
                    format!("row counting stopped: {e}"),
                    None,
                )
            })?
            .map_err(sql_err("failed to count rows in the dump's snapshot"))?;
        for (t, n) in candidates.iter_mut().zip(counts) {
            t.rows = Some(n);
        }
    }

    // The table of contents is the truth of what was dumped.
    let dump_path = dir.join(dump_name);
    let toc = {
        let restore = pg_restore.as_ref().map(|t| t.path.clone());
        let dump_path = dump_path.clone();
        tokio::task::spawn_blocking(move || match restore {
            Some(p) => backups::archive_toc(&p, &dump_path),
            None => backups::plain_toc(&dump_path),
        })
        .await
        .map_err(|e| failed(ErrorKind::Internal, e.to_string(), None))?
    };
    let toc = toc.map_err(|e| {
        failed(
            ErrorKind::Backup,
            format!("the new dump cannot be read: {e}"),
            Some(e.hint().into()),
        )
    })?;
    let tables_out = reconcile(&snap_client, candidates, &toc, b.schema_only)
        .await
        .map_err(sql_err("failed to count rows in the dump's snapshot"))?;
    let schema_record = schema_record(&snap_client, b, &tables, &schemas, &tables_out)
        .await
        .map_err(sql_err("failed to snapshot the schema the backup covers"))?;
    let _ = snap_client.batch_execute("ROLLBACK").await;
    drop(snap_client);

    let files = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || backups::hash_dump(&dir, dump_name))
            .await
            .map_err(|e| failed(ErrorKind::Internal, e.to_string(), None))?
            .map_err(|e| failed(ErrorKind::Io, format!("failed to hash the dump: {e}"), None))?
    };
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
        pg_dump_version: pg_dump.version.clone(),
        snapshot: Some(snapshot),
        options: backups::Options {
            jobs,
            compress: b.compress,
            schema_only: b.schema_only,
            data_only: b.data_only,
            tables,
            exclude_tables,
            schemas,
            exclude_schemas,
        },
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
    let verdict: Result<(), String> = match b.verify {
        Verify::None => Ok(()),
        Verify::List => {
            let missing = backups::uncovered(&manifest, &toc);
            if missing.is_empty() {
                Ok(())
            } else {
                Err(backups::BackupError::Uncovered { missing }.to_string())
            }
        }
        Verify::Restore => {
            let restorer = match (&pg_restore, &psql) {
                (Some(t), _) | (None, Some(t)) => t.path.clone(),
                (None, None) => unreachable!("found above"),
            };
            verify_by_restore(r, s, &manifest, &dir, &restorer, deadline, timeout).await?
        }
    };
    manifest.verification = Verification {
        method: b.verify,
        status: match (&verdict, b.verify) {
            (_, Verify::None) => "skipped",
            (Ok(()), _) => "passed",
            (Err(_), _) => "failed",
        }
        .into(),
        detail: verdict.as_ref().err().cloned(),
        duration_ms: ms(verify_started.elapsed()),
    };

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

    let mut pruned = Vec::new();
    if let Some(keep) = b.keep {
        for old in backups::prunable(&dir, &r.plan.runbook.name, keep as usize) {
            match std::fs::remove_dir_all(&old) {
                Ok(()) => pruned.push(old.display().to_string()),
                Err(e) => r.bus.emit(Event::Warning {
                    at: now(),
                    message: format!("failed to prune old backup {}: {e}", old.display()),
                }),
            }
        }
    }

    let table_list: Vec<Value> = manifest
        .tables
        .iter()
        .map(|t| json!({"schema": t.schema, "name": t.name, "rows": t.rows}))
        .collect();
    let details = json!({
        "path": dir.display().to_string(),
        "format": b.format.name(),
        "bytes": total_bytes,
        "files": manifest.files.len(),
        "sha256": sha256,
        "tables": table_list,
        "large_objects": large_objects,
        "pg_dump": format!("{} ({})", pg_dump.path.display(), pg_dump.version),
        "jobs": jobs,
        "duration_ms": duration_ms,
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
        ("bytes", json!(total_bytes)),
        ("sha256", json!(sha256)),
        ("tables", json!(table_list)),
        ("duration_ms", json!(duration_ms)),
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
            changed_nothing: false,
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
    restorer: &Path,
    deadline: Option<tokio::time::Instant>,
    timeout: Option<Duration>,
) -> Result<Result<(), String>, Fail> {
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
    // A backup of some tables holds their foreign keys to tables it does
    // not hold, which an empty scratch database cannot satisfy. The test
    // restore leaves those constraints out: it proves data and counts.
    let filtered = !m.options.tables.is_empty()
        || !m.options.schemas.is_empty()
        || !m.options.exclude_tables.is_empty()
        || !m.options.exclude_schemas.is_empty();
    let list_dir =
        tempfile::tempdir().map_err(|e| failed(ErrorKind::Backup, e.to_string(), None))?;
    let use_list = if filtered && m.format != BackupFormat::Plain {
        let out = tokio::process::Command::new(restorer)
            .arg("--list")
            .arg(dir.join(&m.dump))
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| {
                failed(
                    ErrorKind::Backup,
                    format!("failed to run {}: {e}", restorer.display()),
                    None,
                )
            })?;
        let kept: String = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.contains(" FK CONSTRAINT "))
            .map(|l| format!("{l}\n"))
            .collect();
        let path = list_dir.path().join("toc.list");
        std::fs::write(&path, kept).map_err(|e| failed(ErrorKind::Backup, e.to_string(), None))?;
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
        },
        deadline,
        timeout,
    )
    .await;
    let checked: Result<Result<(), String>, Fail> = match result {
        Ok(()) => super::restore::compare_counts(r, &scratch, m)
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
