//! A check step's plan: a query with expectations and assertions, or a
//! built-in check from `checks.rs`.

use std::fmt::Write as _;

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;

use super::text::write_block;
use super::{Planner, Text};
use crate::model::{self, CheckStep};

/// A check: a query with expectations, or a built-in.
#[derive(Debug, Clone, Serialize)]
pub struct PlanCheck {
    pub query: Text,
    /// Another database of the same server to run it in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub builtin: Option<Box<PlanBuiltin>>,
    pub expect: Vec<PlanExpect>,
    pub assert: Vec<String>,
    pub severity: model::Severity,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanExpect {
    /// `rows` for the row count, else a column of the first row.
    pub target: String,
    pub op: model::CompareOp,
    pub value: Value,
    /// The expected value's template, when it must be rendered at run time.
    #[serde(skip)]
    pub template: Option<String>,
}

/// A built-in check with its arguments, defaults filled in. Text arguments
/// (templates) are in `texts`, the rest in `args`.
#[derive(Debug, Clone, Serialize)]
pub struct PlanBuiltin {
    pub name: String,
    pub args: IndexMap<String, Value>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub texts: IndexMap<String, Text>,
    /// `tables` (row_counts), each a template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<Text>>,
}

impl PlanCheck {
    /// In one line, for the progress display; `shown` renders a template.
    pub fn describe(&self, shown: &dyn Fn(&Text) -> String) -> String {
        match &self.builtin {
            Some(b) => format!("builtin check {}", b.name),
            None => shown(&self.query),
        }
    }
}

impl Planner<'_> {
    /// `p` is where the `check:` key sits (a step, or a wait's `wait`).
    pub(super) fn check(&mut self, c: &CheckStep) -> PlanCheck {
        let query = self.text(&c.query);
        let mut expect = Vec::new();
        for (target, m) in &c.expect {
            for (op, value) in &m.ops {
                let (value, template) = match value {
                    Value::String(s) if crate::template::is_template(s) => {
                        (Value::String(self.text(s).text), Some(s.clone()))
                    }
                    other => (other.clone(), None),
                };
                expect.push(PlanExpect {
                    target: target.clone(),
                    op: *op,
                    value,
                    template,
                });
            }
        }
        let builtin = c.builtin.as_ref().map(|b| {
            let mut args = IndexMap::new();
            let mut texts = IndexMap::new();
            let mut tables = None;
            if let Some(def) = crate::checks::find(&b.name) {
                for a in def.args {
                    let given = b.args.get(a.name);
                    match (a.kind, given) {
                        (crate::checks::ArgKind::Tables, Some(Value::Array(list))) => {
                            tables = Some(
                                list.iter()
                                    .filter_map(|v| v.as_str().map(|t| self.text(t)))
                                    .collect(),
                            );
                        }
                        // A migrate step's `to`, checked as the step's is:
                        // once rendered from params, before the run.
                        (crate::checks::ArgKind::Text, Some(Value::String(t)))
                            if b.name == "pending_migrations" && a.name == "to" =>
                        {
                            let to = self.text(t);
                            if t.contains("{{")
                                && to.template.is_none()
                                && let Err((label, _)) = crate::migrations::check_target(
                                    to.raw.expose().trim(),
                                    model::Direction::Up,
                                )
                            {
                                self.errors.push(
                                    crate::diag::Diagnostic::new(format!(
                                        "`to` renders to `{}`, which is not a version",
                                        to.text
                                    ))
                                    .at(self.span_of(t))
                                    .label(label)
                                    .hint(crate::checks::PENDING_TO_HINT),
                                );
                            }
                            texts.insert(a.name.to_string(), to);
                        }
                        (crate::checks::ArgKind::Text, Some(Value::String(t))) => {
                            texts.insert(a.name.to_string(), self.text(t));
                        }
                        (_, Some(v)) => {
                            args.insert(a.name.to_string(), v.clone());
                        }
                        (_, None) => {
                            if let Some(d) = a.default {
                                args.insert(a.name.to_string(), Value::String(d.into()));
                            }
                        }
                    }
                }
            }
            Box::new(PlanBuiltin {
                name: b.name.clone(),
                args,
                texts,
                tables,
            })
        });
        PlanCheck {
            query,
            database: c.database.as_ref().map(|d| self.text(d)),
            builtin,
            expect,
            assert: c
                .assert
                .iter()
                .map(|a| self.redactor.redact(a).into_owned())
                .collect(),
            severity: c.severity,
        }
    }
}

pub(super) fn write(o: &mut String, c: &PlanCheck, inner: usize) {
    let PlanCheck {
        query,
        builtin,
        expect,
        assert,
        database,
        ..
    } = c;
    if let Some(db) = database {
        let _ = writeln!(o, "{:pad$}in database {}", "", db.text, pad = inner + 2);
    }
    match builtin {
        Some(b) => write_builtin(o, b, inner + 2),
        None => write_block(o, &query.text, inner + 2),
    }
    for e in expect {
        let _ = writeln!(
            o,
            "{:inner$}expect {} {} {}",
            "",
            e.target,
            e.op.name(),
            e.value
        );
    }
    for a in assert {
        let _ = writeln!(o, "{:inner$}assert {a}", "");
    }
}

fn write_builtin(o: &mut String, b: &PlanBuiltin, pad: usize) {
    let mut args: Vec<String> = b
        .args
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k} {s}"),
            other => format!("{k} {other}"),
        })
        .collect();
    args.extend(b.texts.iter().map(|(k, t)| format!("{k} {}", t.text)));
    if let Some(tables) = &b.tables {
        let names: Vec<&str> = tables.iter().map(|t| t.text.as_str()).collect();
        args.push(format!("tables {}", names.join(", ")));
    }
    let _ = writeln!(
        o,
        "{:pad$}builtin {}{}",
        "",
        b.name,
        if args.is_empty() {
            String::new()
        } else {
            format!(" ({})", args.join(", "))
        }
    );
    if let Some(def) = crate::checks::find(&b.name) {
        let _ = writeln!(o, "{:pad$}passes when {}", "", def.passes);
    }
}
