//! `restore` steps: re-check a backup's sha256s before anything is dropped,
//! refuse (or terminate) other sessions on the target, run pg_restore (psql
//! for plain dumps), then compare every table's row count with the manifest.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::backup::{child_failure, failed, is_problem, sql_failure, tool_failure};
use super::db::{self, Db};
use super::{Attempt, Done, Fail, Run, child};
use crate::backups::{self, Manifest};
use crate::events::{ErrorInfo, Event, StepStatus, now};
use crate::model::BackupFormat;
use crate::pgtools;
use crate::plan::{Action, PlanStep, RestoreFrom};

/// How to restore.
pub(crate) struct How {
    pub clean: bool,
    pub jobs: u32,
    pub single_transaction: bool,
    /// A pg_restore `--use-list` file: restore only the entries it lists.
    pub use_list: Option<std::path::PathBuf>,
}

/// A libpq connection string naming only a database: no secret in it.
fn conninfo_dbname(name: &str) -> String {
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
    let mut env = r.pg_env.clone();
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
        if let Some(t) = line.split_once("processing data for table ").map(|x| x.1) {
            restored += 1;
            r.bus.emit(Event::StepProgress {
                at: now(),
                step: step_id.clone(),
                done: restored,
                total,
                unit: "tables".into(),
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

/// Tables whose row count in `database` differs from the manifest.
pub(crate) async fn compare_counts(
    r: &Run<'_>,
    database: &str,
    m: &Manifest,
) -> Result<Vec<String>, ErrorInfo> {
    let other;
    let client = if database == r.database {
        &r.db.client
    } else {
        other = r.db.connect_to(database, &r.app_name).await?;
        &other.client
    };
    let mut mismatches = Vec::new();
    for t in &m.tables {
        let Some(expected) = t.rows else { continue };
        let sql = format!("SELECT count(*) FROM ONLY {}", t.qualified());
        match client.query_one(&sql, &[]).await {
            Ok(row) => {
                let n: i64 = row.get(0);
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
            Err(e) => return Err(db::error_info(&e, None)),
        }
    }
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

/// Other client sessions on `database`; runbook's own lock monitor
/// (`monitor_app`), which only reads the catalogs, is not one of them.
async fn sessions_on(
    db: &Db,
    database: &str,
    monitor_app: &str,
) -> Result<Vec<Session>, ErrorInfo> {
    let rows = db
        .client
        .query(
            "SELECT pid, coalesce(usename::text, ''), coalesce(application_name, ''),
                    coalesce(host(client_addr), 'local socket'), coalesce(state, ''),
                    to_char(backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
               FROM pg_catalog.pg_stat_activity
              WHERE datname = $1 AND pid <> pg_catalog.pg_backend_pid()
                AND backend_type = 'client backend'
                AND application_name IS DISTINCT FROM $2
              ORDER BY pid",
            &[&database, &monitor_app],
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

/// The backup directory `from` names.
fn source_dir(r: &Run<'_>, from: &RestoreFrom) -> Result<PathBuf, Fail> {
    match from {
        RestoreFrom::Step(id) => {
            let out = r.steps_out.get(id);
            match out.and_then(|o| o.get("path")).and_then(Value::as_str) {
                Some(p) => Ok(PathBuf::from(p)),
                None => Err(failed(
                    "restore",
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

pub(crate) async fn run(r: &mut Run<'_>, s: &PlanStep, timeout: Option<Duration>) -> Attempt {
    let Action::Restore(rs) = &s.action else {
        unreachable!("restore::run is called for restore steps")
    };
    let started = Instant::now();
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    // Every refusal up to the first session terminated touches nothing.
    let dir = source_dir(r, &rs.from).map_err(Fail::unchanged)?;
    let refuse = |e: backups::BackupError| {
        failed(
            "backup",
            format!(
                "refusing to restore from {}: {e}; nothing was touched",
                dir.display()
            ),
            Some(e.hint().into()),
        )
        .unchanged()
    };

    // Everything about the backup is checked before the database is touched.
    let m = backups::load(&dir).map_err(refuse)?;
    if m.verification.status == "failed" {
        return Err(refuse(backups::BackupError::FailedVerification {
            detail: m.verification.detail.clone().unwrap_or_default(),
        }));
    }
    {
        let (dir, m) = (dir.clone(), m.clone());
        tokio::task::spawn_blocking(move || backups::check_files(&dir, &m))
            .await
            .map_err(|e| failed("internal", e.to_string(), None))?
            .map_err(refuse)?;
    }
    if m.format == BackupFormat::Plain && rs.clean {
        return Err(failed(
            "restore",
            format!("`clean: true` needs an archive, and {} holds a plain SQL dump; nothing was touched", dir.display()),
            Some("restore a plain dump into a new database (`target`), or take the backup with `format: directory` or `custom`".into()),
        ).unchanged());
    }
    if m.format == BackupFormat::Plain && rs.jobs > 1 {
        return Err(failed(
            "restore",
            "a plain SQL dump is restored by psql in one session; `jobs` must be 1".into(),
            Some("remove `jobs`, or take the backup with `format: directory`".into()),
        )
        .unchanged());
    }
    let bin = r.pg_bin_dir.clone();
    let program = if m.format == BackupFormat::Plain {
        pgtools::find("psql", "0", bin.as_deref())
    } else {
        // pg_restore cannot read archives of a newer pg_dump.
        pgtools::find("pg_restore", &m.pg_dump_version, bin.as_deref())
    }
    .map_err(|e| tool_failure(&e).unchanged())?;

    let target = match &rs.target {
        Some(t) => {
            r.render(t)
                .map_err(|e| Fail::new(StepStatus::Failed, e).unchanged())?
                .0
        }
        None => r.database.clone(),
    };
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
    let mut terminated = Vec::new();
    if exists {
        let others = sessions_on(&r.db, &target, &r.monitor_app())
            .await
            .map_err(|e| sql_failure("failed to list sessions on the target", &e).unchanged())?;
        if !others.is_empty() && !rs.terminate_connections {
            return Err(failed(
                "restore",
                format!(
                    "refusing to restore into `{target}`: {} other session(s) are connected: {}; nothing was touched",
                    others.len(),
                    others.iter().map(Session::describe).collect::<Vec<_>>().join("; ")
                ),
                Some("stop those clients, or set `terminate_connections: true` to disconnect them first".into()),
            ).unchanged());
        }
        // PostgreSQL 14 can wait for the session to be gone.
        let sql = if pgtools::major_of(&r.server_version).unwrap_or(0) >= 14 {
            "SELECT pg_catalog.pg_terminate_backend($1, 5000)"
        } else {
            "SELECT pg_catalog.pg_terminate_backend($1)"
        };
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
    } else {
        r.db.client
            .batch_execute(&format!(
                "CREATE DATABASE {} TEMPLATE template0",
                backups::quote_ident(&target)
            ))
            .await
            .map_err(|e| {
                sql_failure(
                    "failed to create the target database",
                    &db::error_info(&e, None),
                )
            })?;
    }

    let how = How {
        clean: rs.clean,
        jobs: rs.jobs,
        single_transaction: rs.single_transaction,
        use_list: None,
    };
    restore_into(
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
    .await?;
    let restored_ms = super::ms(started.elapsed());
    let check_started = Instant::now();
    let mismatches = compare_counts(r, &target, &m)
        .await
        .map_err(|e| sql_failure("failed to count rows after the restore", &e))?;
    let check_ms = super::ms(check_started.elapsed());

    let checked = m.tables.iter().filter(|t| t.rows.is_some()).count();
    let details = json!({
        "from": dir.display().to_string(),
        "target": target,
        "created": !exists,
        "format": m.format.name(),
        "backup_taken_at": m.created_at,
        "terminated": terminated,
        "tables_checked": checked,
        "large_objects": m.large_objects,
        "mismatches": mismatches,
        "restore_ms": restored_ms,
        "check_ms": check_ms,
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
    if mismatches.is_empty() {
        Ok(done)
    } else {
        Err(Fail {
            status: StepStatus::Failed,
            error: ErrorInfo {
                class: "verify".into(),
                message: format!(
                    "restored into `{target}`, but {} table(s) differ from the manifest: {}",
                    mismatches.len(),
                    mismatches.join("; ")
                ),
                hint: Some("the restore is incomplete; compare the database with the backup before using it".into()),
                ..ErrorInfo::default()
            },
            retry_class: None,
            partial: done,
            changed_nothing: false,
        })
    }
}
