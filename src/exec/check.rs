//! `check` steps: a query in a READ ONLY transaction, with expectations.
//!
//! Rows come back as JSON (`to_json` of each row), so numbers, booleans and
//! NULLs keep their types for comparisons and for later templates.

use std::cmp::Ordering;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio_postgres::SimpleQueryMessage;

use super::db;
use super::{Attempt, Done, Fail, Run};
use crate::events::{Assertion, CheckResult, ErrorInfo, Expectation, StepStatus};
use crate::model::CompareOp;
use crate::plan::{Action, PlanStep};

const ROW: &str = "runbook_row";
/// A check's rows kept in the report; the count is always there.
const REPORTED_ROWS: usize = 100;

pub(crate) async fn run(r: &mut Run<'_>, s: &PlanStep, timeout: Option<Duration>) -> Attempt {
    let Action::Check {
        query,
        builtin,
        expect,
        assert,
        severity,
    } = &s.action
    else {
        unreachable!("check::run is called for checks")
    };
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
        result.expectations.push(Expectation {
            target: e.target.clone(),
            op: e.op.name().into(),
            expected,
            actual,
            passed,
        });
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
    let failures: Vec<String> = result
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
        .collect();
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
                class: "check".into(),
                message: failures.join("; "),
                ..ErrorInfo::default()
            },
            retry_class: None,
            partial: done,
            changed_nothing: true,
        })
    }
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
    let is_show = crate::statements::split(body)
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

/// `BEGIN TRANSACTION READ ONLY`, the step's settings, and the opening of
/// `SELECT to_json(q) ... FROM (`.
pub(crate) fn read_only_prefix(r: &Run<'_>, s: &PlanStep) -> String {
    let mut prefix = String::from("BEGIN TRANSACTION READ ONLY;\n");
    if let Some(set) = db::settings_sql(s.settings.as_ref().unwrap_or(&r.plan.settings), true) {
        prefix.push_str(&set);
        prefix.push('\n');
    }
    prefix.push_str(&format!("SELECT to_json(q) AS {ROW} FROM (\n"));
    prefix
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

/// The rows of the `to_json` query among a simple query's messages.
pub(crate) fn json_rows(messages: Vec<SimpleQueryMessage>) -> Vec<Map<String, Value>> {
    let mut ours = false;
    let mut rows = Vec::new();
    for m in messages {
        match m {
            SimpleQueryMessage::RowDescription(cols) => {
                ours = cols.first().is_some_and(|c| c.name() == ROW);
            }
            SimpleQueryMessage::Row(row) if ours => {
                let v = row
                    .get(0)
                    .and_then(|t| serde_json::from_str::<Value>(t).ok());
                rows.push(match v {
                    Some(Value::Object(m)) => m,
                    _ => Map::new(),
                });
            }
            _ => {}
        }
    }
    rows
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A value as a number, when it is one or a string that spells one.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Compare two values: numerically when both are numbers (or numeric
/// strings, as rendered templates are), as booleans, else as text.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    if let (Value::Number(x), Value::Number(y)) = (a, b)
        && let (Some(x), Some(y)) = (x.as_i64(), y.as_i64())
    {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (number(a), number(b)) {
        return x.partial_cmp(&y);
    }
    let boolean = |v: &Value| match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    };
    if let (Some(x), Some(y)) = (boolean(a), boolean(b)) {
        return Some(x.cmp(&y));
    }
    match (a, b) {
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Null, _) | (_, Value::Null) => None,
        _ => Some(show(a).cmp(&show(b))),
    }
}

pub(crate) fn matches(actual: &Value, op: CompareOp, expected: &Value) -> bool {
    let cmp = |e: &Value| compare(actual, e);
    match op {
        CompareOp::Eq => cmp(expected) == Some(Ordering::Equal),
        CompareOp::Ne => cmp(expected) != Some(Ordering::Equal),
        CompareOp::Lt => cmp(expected) == Some(Ordering::Less),
        CompareOp::Lte => matches!(cmp(expected), Some(Ordering::Less | Ordering::Equal)),
        CompareOp::Gt => cmp(expected) == Some(Ordering::Greater),
        CompareOp::Gte => matches!(cmp(expected), Some(Ordering::Greater | Ordering::Equal)),
        CompareOp::In => expected
            .as_array()
            .is_some_and(|xs| xs.iter().any(|x| cmp(x) == Some(Ordering::Equal))),
        CompareOp::Between => match expected.as_array().map(Vec::as_slice) {
            Some([lo, hi]) => {
                matches!(cmp(lo), Some(Ordering::Greater | Ordering::Equal))
                    && matches!(cmp(hi), Some(Ordering::Less | Ordering::Equal))
            }
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn comparisons_follow_types() {
        let cases = [
            (json!(3), CompareOp::Eq, json!("3"), true),
            (json!(3), CompareOp::Gte, json!(2), true),
            (json!(10), CompareOp::Gt, json!("9"), true),
            (json!("10"), CompareOp::Lt, json!("9"), false),
            (json!(true), CompareOp::Eq, json!("true"), true),
            (json!(null), CompareOp::Eq, json!(null), true),
            (json!(null), CompareOp::Gt, json!(0), false),
            (json!("ok"), CompareOp::In, json!(["ok", "fine"]), true),
            (json!(5), CompareOp::Between, json!([1, 5]), true),
            (json!(6), CompareOp::Between, json!([1, 5]), false),
            (
                json!(9007199254740993_i64),
                CompareOp::Eq,
                json!(9007199254740992_i64),
                false,
            ),
        ];
        for (a, op, e, want) in cases {
            assert_eq!(matches(&a, op, &e), want, "{a} {op:?} {e}");
        }
    }
}
