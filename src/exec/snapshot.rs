//! `snapshot` steps: a canonical description of the schema and its hash,
//! optionally saved to a file and compared with an earlier snapshot.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Attempt, Done, Fail, Run};
use crate::events::ErrorKind;
use crate::events::{ErrorInfo, StepStatus};
use crate::pg::db::{self, Db};
use crate::plan::PlanStep;
use crate::snapshot::{self, Change, Snapshot};

/// Take a snapshot on `db`, within `timeout`, stopping on an interrupt;
/// either cancels the read on the server, so the session is free after.
pub(crate) async fn take(
    r: &Run<'_>,
    db: &Db,
    timeout: Option<Duration>,
) -> Result<Snapshot, Fail> {
    match db
        .within(snapshot::take(&db.client), timeout, r.stop_signal())
        .await
    {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(Fail::new(StepStatus::Failed, db::error_info(&e, None))),
        Err(db::QueryFail::Interrupted) => {
            Err(Fail::new(StepStatus::Cancelled, super::cancelled_error()))
        }
        Err(_) => Err(Fail::new(
            StepStatus::TimedOut,
            super::timeout_error(timeout),
        )),
    }
}

/// The changes as JSON for the report, with a readable diff per object.
pub fn changes_json(changes: &[Change]) -> Value {
    Value::Array(
        changes
            .iter()
            .map(|c| {
                let mut v = json!(c);
                v["diff"] = json!(snapshot::describe(c));
                v
            })
            .collect(),
    )
}

/// "2 objects differ: removed index public.i; column_order table public.t"
pub fn summary(changes: &[Change]) -> String {
    let list: Vec<String> = changes
        .iter()
        .take(10)
        .map(|c| format!("{} {}", c.change, c.object))
        .collect();
    format!(
        "{} object(s) differ: {}{}",
        changes.len(),
        list.join("; "),
        if changes.len() > 10 { "; ..." } else { "" }
    )
}

pub(crate) async fn run(
    r: &mut Run<'_>,
    s: &PlanStep,
    x: &crate::plan::PlanSnapshot,
    timeout: Option<Duration>,
) -> Attempt {
    let away = match &x.database {
        Some(t) => Some(r.go_to(t).await?),
        None => None,
    };
    let snap = take(r, &r.db, timeout).await;
    if let Some(a) = away {
        r.come_back(a);
    }
    let snap = snap?;
    let mut done = Done::default();
    done.output
        .insert("hash".into(), Value::from(snap.hash.clone()));
    done.output
        .insert("objects".into(), Value::from(snap.objects.len()));
    let mut details = json!({ "hash": snap.hash, "objects": snap.objects.len() });
    if let Some(t) = &x.save {
        let (path, shown) = r.render(t).map_err(|e| Fail::new(StepStatus::Failed, e))?;
        let path = super::builtin::relative(r, &path);
        let file = snapshot::File::new(&snap, &r.database, &r.server_version);
        let text = serde_json::to_string_pretty(&file).unwrap_or_default();
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        crate::fsutil::write_atomic(&path, text.as_bytes()).map_err(|e| {
            Fail::new(
                StepStatus::Failed,
                ErrorInfo {
                    class: ErrorKind::Snapshot,
                    message: format!("cannot write the snapshot to {shown}: {e}"),
                    ..ErrorInfo::default()
                },
            )
        })?;
        done.output
            .insert("path".into(), Value::from(path.display().to_string()));
        details["path"] = Value::from(path.display().to_string());
    }
    let expected: Option<(String, Option<&Snapshot>, String)> = match (&x.same_as, &x.hash) {
        (Some(id), _) => {
            let Some(earlier) = r.snapshots.get(id) else {
                return Err(Fail::new(
                    StepStatus::Failed,
                    ErrorInfo {
                        class: ErrorKind::Snapshot,
                        message: format!("steps.{id} took no snapshot in this run"),
                        hint: Some("it was skipped or failed; the comparison needs it".into()),
                        ..ErrorInfo::default()
                    },
                ));
            };
            Some((earlier.hash.clone(), Some(earlier), format!("steps.{id}")))
        }
        (None, Some(h)) => Some((h.clone(), None, format!("hash {h}"))),
        (None, None) => None,
    };
    let mut failure = None;
    if let Some((hash, earlier, what)) = expected
        && hash != snap.hash
    {
        let changes = earlier
            .map(|e| snapshot::compare(e, &snap))
            .unwrap_or_default();
        let only_order = !changes.is_empty() && changes.iter().all(|c| c.change == "column_order");
        details["expected"] = Value::from(hash.clone());
        details["changes"] = changes_json(&changes);
        if !(only_order && x.ignore_column_order) {
            let message = if changes.is_empty() {
                format!("the schema's hash is {}, not {hash} ({what})", snap.hash)
            } else {
                format!("the schema differs from {what}: {}", summary(&changes))
            };
            failure = Some(ErrorInfo {
                class: ErrorKind::Snapshot,
                message,
                hint: Some(if only_order {
                    "only the order of columns differs; `ignore_column_order: true` accepts that"
                        .into()
                } else {
                    "the report lists each object with its definition before and after".into()
                }),
                ..ErrorInfo::default()
            });
        }
    }
    r.snapshots.insert(s.id.clone(), snap);
    done.details = Some(details);
    match failure {
        Some(error) => {
            let mut f = Fail::new(StepStatus::Failed, error);
            f.partial = done;
            Err(f)
        }
        None => Ok(done),
    }
}
