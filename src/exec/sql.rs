//! `sql` steps: statements in one transaction (one round trip), or alone.

use std::time::Duration;

use serde_json::Value;
use tokio_postgres::SimpleQueryMessage;

use super::db;
use super::{Attempt, Done, Fail, Run};
use crate::events::StepStatus;
use crate::model::Settings;
use crate::plan::Text;

/// Run the statements. In a transaction they go to the server as one query:
/// `BEGIN; <settings>; <statements>; COMMIT`, so a failure anywhere leaves
/// nothing behind and costs a single round trip.
pub(crate) async fn run(
    r: &mut Run<'_>,
    t: &Text,
    transaction: bool,
    timeout: Option<Duration>,
    settings: &Settings,
) -> Attempt {
    let (sql, _) = r.render(t).map_err(|e| Fail::new(StepStatus::Failed, e))?;
    let settings = db::settings_sql(settings, transaction);
    let (query, prefix, skip_front, skip_back) = if transaction {
        let prefix = match &settings {
            Some(s) => format!("BEGIN;\n{s}\n"),
            None => "BEGIN;\n".to_string(),
        };
        let front = 1 + usize::from(settings.is_some());
        (format!("{prefix}{sql}\n;\nCOMMIT;"), prefix, front, 1)
    } else {
        if let Some(s) = &settings
            && let Err(e) = r.db.client.simple_query(s).await
        {
            return Err(Fail::new(StepStatus::Failed, db::error_info(&e, None)));
        }
        (sql.clone(), String::new(), 0, 0)
    };
    let result = r.db.run(&query, timeout, r.stop_signal()).await;
    match result {
        Ok(messages) => {
            let counts: Vec<u64> = messages
                .iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::CommandComplete(n) => Some(*n),
                    _ => None,
                })
                .collect();
            let end = counts.len().saturating_sub(skip_back);
            let rows: u64 = counts
                .get(skip_front.min(end)..end)
                .map_or(0, |c| c.iter().sum());
            let mut done = Done {
                rows_affected: Some(rows),
                ..Done::default()
            };
            done.output
                .insert("rows_affected".into(), Value::from(rows));
            Ok(done)
        }
        Err(fail) => {
            if transaction {
                r.db.rollback().await;
            }
            Err(r.query_failure(fail, t, &sql, prefix.chars().count(), timeout))
        }
    }
}
