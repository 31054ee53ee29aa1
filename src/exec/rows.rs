//! Reading what a check's query returned, and comparing values: shared by
//! `check` steps and the built-in checks.

use std::cmp::Ordering;

use serde_json::{Map, Value};
use tokio_postgres::SimpleQueryMessage;

use super::Run;
use crate::model::CompareOp;
use crate::pg::db;
use crate::plan::PlanStep;

/// The column each row comes back in, as JSON.
pub(crate) const ROW: &str = "runbook_row";

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

/// A value as text, for messages: strings without their quotes.
pub(crate) fn show(v: &Value) -> String {
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
