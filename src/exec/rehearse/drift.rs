//! Drift, for a forward-only set rehearsed on a scratch copy: does the
//! database's schema equal what its applied migrations give on an empty
//! database? When they differ, someone changed the schema by hand, or an
//! applied migration was edited, and the next migration is rehearsed
//! against a schema the migrations do not describe.

use super::{Outcome, Rig, history_change};
use crate::exec::{Fail, Run};
use crate::history::History;
use crate::migrations::{Migration, Set};
use crate::model::{Direction, Verdict};
use crate::pg::db;
use crate::plan::PlanStep;
use crate::snapshot;

pub(super) async fn check(
    r: &mut Run<'_>,
    s: &PlanStep,
    rig: &mut Rig<'_>,
    set: &Set,
    applied: &[&Migration],
    whole: &mut Outcome,
) -> Result<(), Fail> {
    if applied.is_empty() {
        return Ok(());
    }
    // An applied migration in code (Flyway's Java, goose's Go) changed the
    // schema in ways no script here says: the scripts alone on an empty
    // database would differ from it, and that is not drift.
    let rows = if set.code_migrations.is_empty() {
        Vec::new()
    } else {
        rig.history
            .read(rig.db(), set)
            .await
            .map_err(|e| Fail::new(crate::exec::StepStatus::Failed, e))?
    };
    let in_code: Vec<String> = set
        .code_migrations
        .iter()
        .filter(|c| !c.version.is_empty())
        .filter(|c| rows.iter().any(|a| a.version == c.version && !a.dirty))
        .map(|c| c.label())
        .collect();
    if let Some(first) = in_code.first() {
        whole.find(
            Verdict::NotRehearsed,
            format!(
                "drift was not checked: {first}{} applied, and runbook cannot run a migration in code, so what the applied migrations give on an empty database cannot be built here",
                match in_code.len() {
                    1 => " is".to_string(),
                    n => format!(" and {} more in code are", n - 1),
                }
            ),
        );
        return Ok(());
    }
    let live = rig.snap().await?;
    let name = format!("runbook_drift_{:08x}", fastrand::u32(..));
    let created =
        r.db.client
            .batch_execute(&format!(
                "CREATE DATABASE {} TEMPLATE template0",
                crate::pg::quote::ident(&name)
            ))
            .await;
    if let Err(e) = created {
        whole.find(
            Verdict::NotRehearsed,
            format!(
                "drift was not checked: an empty database to apply the migrations to could not be made: {}",
                db::error_info(&e, None).message
            ),
        );
        return Ok(());
    }
    let found = fresh_apply(r, rig, set, applied, &name).await;
    super::drop_scratch(r, &name).await;
    let fresh = match found {
        Ok(fresh) => fresh,
        Err(why) => {
            whole.find(
                Verdict::NotRehearsed,
                format!("drift was not checked: {why}"),
            );
            return Ok(());
        }
    };
    // The empty database is built by this role, the live one by whoever
    // built it: owners are not drift.
    let changes: Vec<snapshot::Change> =
        snapshot::compare(&fresh.without_owners(), &live.without_owners())
            .into_iter()
            // Another tool's history in the live database is its
            // bookkeeping, not a schema the migrations drifted from.
            .filter(|c| !history_change(c, crate::history::is_tool_table))
            .collect();
    let n = applied.len();
    if changes.is_empty() {
        whole.find(
            Verdict::Ok,
            format!("no drift: the schema is what its {n} applied migration(s) give on an empty database"),
        );
    } else {
        let f = whole.find(
            Verdict::Drift,
            format!(
                "drift: the schema is not what its {n} applied migration(s) give on an empty database: {}",
                crate::exec::snapshot::summary(&changes)
            ),
        );
        f.changes = Some(crate::exec::snapshot::changes_json(&changes));
    }
    super::log(
        r,
        &s.id,
        format!("drift checked against a fresh apply of {n} migration(s)"),
    );
    Ok(())
}

/// The schema that `applied` give on the empty database `name`.
async fn fresh_apply(
    r: &mut Run<'_>,
    rig: &Rig<'_>,
    set: &Set,
    applied: &[&Migration],
    name: &str,
) -> Result<snapshot::Snapshot, String> {
    let app = format!("{}/rehearse", r.app_name);
    let fresh =
        r.db.connect_to(name, &app)
            .await
            .map_err(|e| format!("cannot connect to the empty database: {}", e.message))?;
    let history = History::new(rig.history.tool, &rig.history.name, set);
    if rig.tool.is_none() {
        history
            .ensure(&fresh)
            .await
            .map(|_| ())
            .map_err(|e| format!("cannot create the history table: {}", e.message))?;
    }
    for m in applied {
        rig.run_on(&fresh, &history, m, Direction::Up, false, false)
            .await
            .map_err(|f| {
                format!(
                    "{} {} failed on an empty database: {}",
                    m.version,
                    m.name,
                    super::script_error(&f)
                )
            })?;
    }
    let snapshotter = snapshot::Snapshotter::new(&fresh.client)
        .await
        .map_err(|e| db::error_info(&e, None).message)?;
    let tracked = snapshotter
        .full(&fresh.client)
        .await
        .map_err(|e| db::error_info(&e, None).message)?;
    Ok(std::sync::Arc::unwrap_or_clone(tracked.snapshot))
}
