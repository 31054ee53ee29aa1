//! Where a rehearsal runs: the target database itself, or a scratch
//! database cloned from a template or restored from a backup step.

use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::events::{Event, StepStatus, now};
use crate::exec::{Fail, Run};
use crate::pg::db::{self, Db};
use crate::plan::{PlanRehearse, PlanScratch, PlanStep};

/// The rehearsal's database session, and the scratch database to drop.
pub(super) struct Target {
    pub(super) db: Db,
    pub(super) scratch: Option<String>,
}

pub(super) async fn open_target(
    r: &mut Run<'_>,
    s: &PlanStep,
    x: &PlanRehearse,
    deadline: Option<tokio::time::Instant>,
    timeout: Option<Duration>,
) -> Result<Target, Fail> {
    let app = format!("{}/rehearse", r.app_name);
    let Some(how) = &x.scratch else {
        let db =
            r.db.connect_to(&r.database, &app)
                .await
                .map_err(|e| Fail::new(StepStatus::Failed, e))?;
        return Ok(Target { db, scratch: None });
    };
    let name = scratch_name(r).await?;
    match how {
        PlanScratch::Template => copy_by_template(r, &name).await?,
        PlanScratch::Backup(id) => restore_backup(r, s, id, &name, deadline, timeout).await?,
    }
    log(
        r,
        &s.id,
        format!("rehearsing on the scratch database {name}"),
    );
    match r.db.connect_to(&name, &app).await {
        Ok(db) => Ok(Target {
            db,
            scratch: Some(name),
        }),
        Err(e) => {
            drop_scratch(r, &name).await;
            Err(Fail::new(StepStatus::Failed, e))
        }
    }
}

/// A new scratch database's name: `runbook_rehearse_<source oid>_<random>`,
/// so that the copies of one database are known as its own. Those of its
/// copies that no session uses are left by a rehearsal that never ended
/// (killed, or its server went away): each is a full copy of the data, so
/// the run warns and names them. It does not drop them: one may be a
/// rehearsal's that has not connected yet.
async fn scratch_name(r: &mut Run<'_>) -> Result<String, Fail> {
    let stale =
        r.db.client
            .query(
                r"SELECT s.oid::text, d.datname::text
             FROM pg_database s
             LEFT JOIN pg_database d
               ON d.datname LIKE 'runbook\_rehearse\_' || s.oid || '\_%'
              AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)
             WHERE s.datname = current_database()
             ORDER BY d.datname",
                &[],
            )
            .await
            .map_err(|e| Fail::new(StepStatus::Failed, db::error_info(&e, None)))?;
    let oid: String = stale.first().map(|row| row.get(0)).unwrap_or_default();
    let left: Vec<String> = stale
        .iter()
        .filter_map(|row| row.get::<_, Option<String>>(1))
        .collect();
    if !left.is_empty() {
        r.bus.emit(Event::Warning {
            at: now(),
            message: format!(
                "scratch copies of {} that no session uses, left by a rehearsal that did not end (killed, or its connection lost): {}; each holds a full copy of the data: drop them once no rehearsal of this database is running (DROP DATABASE {})",
                r.database,
                left.join(", "),
                left.iter()
                    .map(|n| crate::pg::quote::ident(n))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Ok(format!("runbook_rehearse_{oid}_{:08x}", fastrand::u32(..)))
}

/// `scratch: true`: CREATE DATABASE ... TEMPLATE needs the source to have
/// no other sessions, runbook's own included: the main session steps over
/// to the maintenance database for the copy, then comes back and takes the
/// run lock again.
async fn copy_by_template(r: &mut Run<'_>, name: &str) -> Result<(), Fail> {
    let source = r.database.clone();
    let original = r.db.config().clone();
    r.monitor = None;
    let maint = r.db.connect_maintenance(&r.app_name).await;
    let Some(maint) = maint else {
        return Err(failed(
            "cannot connect to the `postgres` or `template1` database to copy the run's database"
                .into(),
            "use `scratch: {from: steps.<backup>}` to rehearse on a restore of a backup",
        ));
    };
    r.db = maint;
    r.journal.step_away();
    let created =
        r.db.client
            .batch_execute(&format!(
                "CREATE DATABASE {} TEMPLATE {}",
                crate::pg::quote::ident(name),
                crate::pg::quote::ident(&source)
            ))
            .await;
    let back = r.journal.come_back().await;
    r.journal_failed(back);
    r.db = Db::login_again(original, &r.app_name)
        .await
        .map_err(|e| Fail::new(StepStatus::Failed, e))?;
    r.relock()
        .await
        .map_err(|e| Fail::new(StepStatus::Failed, e))?;
    if let Err(e) = created {
        let info = db::error_info(&e, None);
        return Err(failed(
            format!(
                "cannot copy {source} into a scratch database: {}{}",
                info.message,
                info.detail.map(|d| format!(" ({d})")).unwrap_or_default()
            ),
            &match info.sqlstate.as_deref() {
                // insufficient_privilege
                Some("42501") => format!(
                    "the scratch copy is made with CREATE DATABASE, which needs a role with CREATEDB (`ALTER ROLE {} CREATEDB`), as does a restore into a scratch database; or make a copy yourself and rehearse on it, given as the run's database, without `scratch`",
                    r.db.config()
                        .config
                        .get_user()
                        .map_or_else(|| "<role>".to_string(), crate::pg::quote::ident)
                ),
                _ => "a template copy needs the database to have no other sessions; use `scratch: {from: steps.<backup>}` to rehearse on a restore of a backup instead".into(),
            },
        ));
    }
    like_source(r, &source, name).await
}

/// A copy gets none of what belongs to the database itself: its settings
/// (a `search_path` or `timezone` set with `ALTER DATABASE`), grants,
/// comment and owner. Without them the migrations would run under other
/// settings than on the database they are rehearsed for.
async fn like_source(r: &mut Run<'_>, source: &str, name: &str) -> Result<(), Fail> {
    match crate::exec::recreate::like_source(&r.db.client, source, name).await {
        Ok(refused) => {
            for why in refused {
                r.bus.emit(Event::Warning {
                    at: now(),
                    message: format!(
                        "the scratch database {name} does not have all of {source}'s own properties: {why}"
                    ),
                });
            }
            Ok(())
        }
        Err(e) => {
            drop_scratch(r, name).await;
            Err(Fail::new(StepStatus::Failed, db::error_info(&e, None)))
        }
    }
}

/// `scratch: {from: steps.<backup>}`: a new database, restored from a
/// backup an earlier step of the run made.
async fn restore_backup(
    r: &mut Run<'_>,
    s: &PlanStep,
    id: &str,
    name: &str,
    deadline: Option<tokio::time::Instant>,
    timeout: Option<Duration>,
) -> Result<(), Fail> {
    let dir = r
        .steps_out
        .get(id)
        .and_then(|o| o.get("path"))
        .and_then(Value::as_str)
        .map(std::path::PathBuf::from)
        .ok_or_else(|| {
            failed(
                format!("steps.{id} has no backup to restore"),
                "the scratch database is restored from a backup step that succeeded earlier in the run",
            )
        })?;
    let m = crate::backups::load(&dir).map_err(|e| {
        failed(
            format!("cannot use the backup in {}: {e}", dir.display()),
            e.hint(),
        )
    })?;
    let bin = r.pg_bin_dir.clone();
    let program = if m.format == crate::model::BackupFormat::Plain {
        crate::exec::child::find_tool("psql", "0", bin.as_deref()).await
    } else {
        crate::exec::child::find_tool("pg_restore", &m.pg_dump_version, bin.as_deref()).await
    }
    .map_err(|e| crate::exec::fail::tool_failure(&e))?;
    r.db.client
        .batch_execute(&format!(
            "CREATE DATABASE {} TEMPLATE template0",
            crate::pg::quote::ident(name)
        ))
        .await
        .map_err(|e| Fail::new(StepStatus::Failed, db::error_info(&e, None)))?;
    let public = crate::exec::restore::room_for_public(r, &m, &dir, &program.path, name).await;
    let restored = crate::exec::restore::restore_into(
        r,
        &s.id,
        &m,
        &dir,
        &program.path,
        name,
        &crate::exec::restore::How {
            clean: false,
            jobs: 1,
            single_transaction: true,
            use_list: None,
            unit: "tables restored to the scratch database",
            finished: None,
        },
        deadline,
        timeout,
    )
    .await;
    let restored = match restored {
        Ok(()) => crate::exec::restore::public_back(r, name, public)
            .await
            .map_err(|e| Fail::new(StepStatus::Failed, e)),
        failed => failed,
    };
    if let Err(f) = restored {
        drop_scratch(r, name).await;
        return Err(f);
    }
    // The backup's database, as the copy by template does.
    like_source(r, &m.database, name).await
}

pub(super) async fn drop_scratch(r: &mut Run<'_>, name: &str) {
    let sql = format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        crate::pg::quote::ident(name)
    );
    if let Err(e) = r.db.client.batch_execute(&sql).await {
        r.bus.emit(Event::Warning {
            at: now(),
            message: format!(
                "failed to drop the scratch database {name}: {}; drop it by hand",
                db::error_info(&e, None).message
            ),
        });
    }
}
