//! `check` steps: a query in a READ ONLY transaction, with expectations.
//!
//! Rows come back as JSON (`to_json` of each row), so numbers, booleans and
//! NULLs keep their types for comparisons and for later templates.

use std::time::Duration;

use serde_json::{Map, Value};
use tokio_postgres::SimpleQueryMessage;

use super::rows::{json_rows, matches, read_only_prefix, show};
use super::{Attempt, Done, Fail, Run};
use crate::events::ErrorKind;
use crate::events::{Assertion, CheckResult, ErrorInfo, Expectation, StepStatus};
use crate::pg::db;
use crate::plan::{PlanCheck, PlanStep};

/// A check's rows kept in the report; the count is always there.
const REPORTED_ROWS: usize = 100;

pub(crate) async fn run(
    r: &mut Run<'_>,
    s: &PlanStep,
    c: &PlanCheck,
    timeout: Option<Duration>,
) -> Attempt {
    let away = match &c.database {
        Some(t) => Some(r.go_to(t).await?),
        None => None,
    };
    let result = run_here(r, s, c, timeout).await;
    if let Some(a) = away {
        r.come_back(a);
    }
    result
}

/// The check, in whichever database the run's session is in now.
async fn run_here(
    r: &mut Run<'_>,
    s: &PlanStep,
    c: &PlanCheck,
    timeout: Option<Duration>,
) -> Attempt {
    let PlanCheck {
        query,
        builtin,
        expect,
        assert,
        severity,
        database: _,
    } = c;
    let mut found = None;
    let rows = match builtin {
        Some(b) => {
            let o = super::builtin::run(r, s, b, timeout).await?;
            let rows = o.rows.clone();
            found = Some(o);
            rows
        }
        None => query_rows(r, s, query, timeout).await?,
    };
    let first = rows
        .first()
        .cloned()
        .map(Value::Object)
        .unwrap_or(Value::Null);
    let all = Value::Array(rows.iter().cloned().map(Value::Object).collect());
    let mut result = CheckResult {
        rows: rows.len(),
        severity: serde_json::to_value(severity)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        ..CheckResult::default()
    };
    if let Some(o) = &mut found {
        result.expectations.append(&mut o.expectations);
    }
    for e in expect {
        result.expectations.push(expectation(r, e, &rows));
    }
    let locals = [
        (
            "row",
            minijinja::Value::from(minijinja::value::Serde(&first)),
        ),
        (
            "rows",
            minijinja::Value::from(minijinja::value::Serde(&all)),
        ),
    ];
    for a in assert {
        let (passed, error) = match r.eval(a, &locals) {
            Ok(b) => (b, None),
            Err(e) => (false, Some(e)),
        };
        result.assertions.push(Assertion {
            expr: a.clone(),
            passed,
            error,
        });
    }

    let mut output = Map::new();
    output.insert("rows".into(), all);
    output.insert("row".into(), first);
    // What the check found goes into the report, passed or failed, within
    // reason: it is the evidence of what was checked.
    let mut details = match found {
        Some(o) => {
            output.extend(o.output);
            o.details
        }
        None => Value::Object(Map::new()),
    };
    details["rows"] = Value::Array(
        rows.iter()
            .take(REPORTED_ROWS)
            .cloned()
            .map(Value::Object)
            .collect(),
    );
    details["rows_total"] = Value::from(rows.len());
    let details = Some(details);
    let failures = failures(&result);
    let done = Done {
        check: Some(result),
        details,
        output,
        ..Done::default()
    };
    if failures.is_empty() {
        Ok(done)
    } else {
        Err(Fail {
            status: StepStatus::Failed,
            error: ErrorInfo {
                class: ErrorKind::Check,
                message: failures.join("; "),
                ..ErrorInfo::default()
            },
            retry_class: None,
            partial: done,
            unchanged: Some(super::Unchanged::ReadOnly),
            judged: false,
        })
    }
}

/// One expectation, judged against the check's rows: a column of the
/// first row, or `rows` (the count).
fn expectation(
    r: &Run<'_>,
    e: &crate::plan::PlanExpect,
    rows: &[Map<String, Value>],
) -> Expectation {
    let expected = match &e.template {
        Some(t) => match r.render_str(t) {
            Ok(raw) => Value::String(raw),
            Err(err) => Value::String(format!("<{}>", err.message)),
        },
        None => e.value.clone(),
    };
    let actual = if e.target == "rows" {
        Value::from(rows.len())
    } else {
        match rows.first() {
            None => Value::String("<no rows>".into()),
            Some(row) => row
                .get(&e.target)
                .cloned()
                .unwrap_or_else(|| Value::String(format!("<no column `{}`>", e.target))),
        }
    };
    let passed = matches(&actual, e.op, &expected);
    Expectation {
        target: e.target.clone(),
        op: e.op.name().into(),
        expected,
        actual,
        passed,
    }
}

/// What failed, one phrase per expectation or assertion.
fn failures(result: &CheckResult) -> Vec<String> {
    result
        .expectations
        .iter()
        .filter(|e| !e.passed)
        .map(|e| {
            format!(
                "expected {} {} {}, got {}",
                e.target,
                e.op,
                show(&e.expected),
                show(&e.actual)
            )
        })
        .chain(
            result
                .assertions
                .iter()
                .filter(|a| !a.passed)
                .map(|a| match &a.error {
                    Some(err) => format!("assert `{}` failed: {err}", a.expr),
                    None => format!("assert `{}` was false", a.expr),
                }),
        )
        .collect()
}

/// The rows of a check's own query, in a READ ONLY transaction, each as a
/// JSON object (`to_json`), so types survive.
async fn query_rows(
    r: &mut Run<'_>,
    s: &PlanStep,
    query: &crate::plan::Text,
    timeout: Option<Duration>,
) -> Result<Vec<Map<String, Value>>, Fail> {
    let (q, _) = r
        .render(query)
        .map_err(|e| Fail::new(StepStatus::Failed, e))?;
    let body = q.trim_end().trim_end_matches(';').trim_end();
    let is_show = crate::pg::statements::split(body)
        .first()
        .is_some_and(|st| st.kind == "SHOW");
    if is_show {
        // SHOW cannot be a subquery: run it alone and keep its text values.
        let settings = s.settings.as_ref().unwrap_or(&r.plan.settings);
        let set = db::settings_sql(settings, true).unwrap_or_default();
        let sql = format!("BEGIN TRANSACTION READ ONLY;\n{set}\n{body};\nCOMMIT;");
        return match r.db.run(&sql, timeout, r.stop_signal()).await {
            Ok(messages) => Ok(text_rows(messages)),
            Err(fail) => {
                r.db.rollback().await;
                Err(r.query_failure(fail, query, &q, 0, timeout))
            }
        };
    }
    let prefix = read_only_prefix(r, s);
    let sql = format!("{prefix}{body}\n) AS q;\nCOMMIT;");
    match r.db.run(&sql, timeout, r.stop_signal()).await {
        Ok(messages) => Ok(json_rows(messages)),
        Err(fail) => {
            r.db.rollback().await;
            Err(r.query_failure(fail, query, &q, prefix.chars().count(), timeout))
        }
    }
}

/// The rows of the last row-returning statement among a simple query's
/// messages, each column's text as a string (SHOW's rows).
fn text_rows(messages: Vec<SimpleQueryMessage>) -> Vec<Map<String, Value>> {
    let mut rows = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for m in messages {
        match m {
            SimpleQueryMessage::RowDescription(cols) => {
                names = cols.iter().map(|c| c.name().to_string()).collect();
                rows.clear();
            }
            SimpleQueryMessage::Row(row) => {
                let mut o = Map::new();
                for (i, n) in names.iter().enumerate() {
                    o.insert(
                        n.clone(),
                        row.get(i).map_or(Value::Null, |v| Value::String(v.into())),
                    );
                }
                rows.push(o);
            }
            _ => {}
        }
    }
    rows
}
