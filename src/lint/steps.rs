//! A runbook's steps as lint sees them: each with its place (phase, and
//! whether it is a main step, a compensation, an on_failure branch or
//! `finally`), its SQL rendered as it will run, and the backups it takes.
//! Built once; squawk's pass and runbook's rules both read it.

use crate::load::Document;
use crate::model::{Runbook, Step, StepKind, When};
use crate::plan::{Action, Plan, PlanStep};

use super::facts::bare;
use super::sql::Script;
use super::{Config, SqlContext};

/// Where a step runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A step of a phase.
    Main,
    /// The rollback of the step at this index.
    Compensation(usize),
    /// An on_failure branch step; it undoes the main steps at these indexes
    /// (its phase's, or every phase's for the runbook's branch).
    Branch(Vec<usize>),
    /// `finally`: runs after every run.
    Finally,
}

/// A `sql` step's SQL as lint reads it.
pub struct SqlText {
    /// The JSON pointer of the SQL field.
    pub field: String,
    /// The SQL as it will run, or why it cannot be known before the run.
    pub text: Result<String, String>,
    /// Rendered from a template: located by line, not byte for byte.
    pub templated: bool,
    pub in_transaction: bool,
}

pub struct StepSql<'a> {
    pub pointer: String,
    pub step: &'a Step,
    pub phase: Option<usize>,
    pub role: Role,
    /// The step or its phase has a `when`: it may not run.
    pub gated: bool,
    /// Why it will not run with a run's params ([`super::Params::Run`]):
    /// its `when`, or its phase's, is false with them, or it undoes a step
    /// that will not run. None when it may run, or for the defaults.
    pub skipped: Option<String>,
    pub sql: Option<SqlText>,
    pub backup: Option<Backup>,
}

/// Every step of a runbook, in document order, with each SQL step's script.
pub struct RunbookSql<'a> {
    pub runbook: &'a Runbook,
    pub steps: Vec<StepSql<'a>>,
    /// Parallel to `steps`: the script of each SQL step that could be read.
    pub scripts: Vec<Option<Script>>,
}

fn gated(w: &Option<When>) -> bool {
    !matches!(w, None | Some(When::Literal(true)))
}

pub(super) fn plan_step<'p>(plan: &'p Plan, id: &str) -> Option<&'p PlanStep> {
    fn find<'p>(steps: &'p [PlanStep], id: &str) -> Option<&'p PlanStep> {
        steps
            .iter()
            .find_map(|s| (s.id == id).then_some(s).or_else(|| find(&s.rollback, id)))
    }
    plan.phases
        .iter()
        .find_map(|p| find(&p.steps, id))
        .or_else(|| find(&plan.on_failure, id))
        .or_else(|| find(&plan.finally_steps, id))
}

/// What the plan does at step `id`, or why there is no plan to ask.
fn planned<'p>(plan: Result<&'p Plan, &str>, id: &str) -> Result<Option<&'p Action>, String> {
    let plan = plan.map_err(|e| {
        format!(
            "its templates cannot be rendered ({})",
            e.lines().next().unwrap_or_default()
        )
    })?;
    Ok(plan_step(plan, id).map(|s| &s.action))
}

/// The SQL of step `id` as the plan renders it, when nothing in it waits
/// for the run (an earlier step's output, the run id).
fn rendered_sql(plan: Result<&Plan, &str>, id: &str) -> Result<String, String> {
    match planned(plan, id)? {
        Some(Action::Sql { statements, .. }) if statements.after.is_empty() => {
            Ok(statements.raw.expose().clone())
        }
        Some(Action::Sql { statements, .. }) => Err(format!(
            "its SQL uses {}, known only when it runs",
            statements.after.join(", ")
        )),
        _ => Err("not in the plan".into()),
    }
}

/// A migrate step's directory as its params render it.
pub(super) fn rendered_dir(plan: Result<&Plan, &str>, id: &str) -> Result<String, String> {
    match planned(plan, id)? {
        // Its findings name files under it: a path that holds a secret
        // would print it.
        Some(Action::Migrate(m)) if m.dir.text != *m.dir.raw.expose() => {
            Err("its path holds a secret param, which lint never prints".into())
        }
        Some(Action::Migrate(m)) if m.dir.after.is_empty() => Ok(m.dir.raw.expose().clone()),
        Some(Action::Migrate(m)) => Err(format!(
            "it uses {}, known only when it runs",
            m.dir.after.join(", ")
        )),
        _ => Err("not in the plan".into()),
    }
}

fn backup(step: &Step, b: &crate::model::BackupStep, plan: Result<&Plan, &str>) -> Backup {
    let rendered: Option<Vec<String>> =
        plan.ok()
            .and_then(|p| match &plan_step(p, &step.id)?.action {
                Action::Backup(pb) => {
                    let known = pb
                        .tables
                        .iter()
                        .chain(&pb.schemas)
                        .all(|t| t.after.is_empty());
                    known.then(|| {
                        pb.tables
                            .iter()
                            .map(|t| bare(t.raw.expose()))
                            .chain(
                                pb.schemas
                                    .iter()
                                    .map(|s| format!("{}.*", bare(s.raw.expose()))),
                            )
                            .collect()
                    })
                }
                _ => None,
            });
    let templated = b.tables.iter().chain(&b.schemas).any(|t| t.contains("{{"));
    let names = rendered.clone().unwrap_or_else(|| {
        b.tables
            .iter()
            .map(|t| bare(t))
            .chain(b.schemas.iter().map(|s| format!("{}.*", bare(s))))
            .collect()
    });
    Backup {
        id: step.id.clone(),
        schema_only: b.schema_only,
        everything: b.tables.is_empty()
            && b.schemas.is_empty()
            && b.exclude_tables.is_empty()
            && b.exclude_schemas.is_empty(),
        names,
        unknown: templated && rendered.is_none(),
    }
}

impl<'a> RunbookSql<'a> {
    pub fn collect(
        doc: &Document,
        rb: &'a Runbook,
        plan: Result<&Plan, &str>,
        params: super::Params<'_>,
        config: &Config,
    ) -> Self {
        let steps = Self::steps(doc, rb, plan, params);
        let scripts = steps
            .iter()
            .map(|s| {
                let sql = s.sql.as_ref()?;
                let text = sql.text.as_ref().ok()?;
                Some(Script::read(
                    text,
                    SqlContext {
                        in_transaction: sql.in_transaction,
                        timeouts_set: true,
                    },
                    config,
                ))
            })
            .collect();
        RunbookSql {
            runbook: rb,
            steps,
            scripts,
        }
    }

    /// Every step with its place, as [`RunbookSql::collect`] has them,
    /// without reading their SQL.
    pub fn steps(
        doc: &Document,
        rb: &'a Runbook,
        plan: Result<&Plan, &str>,
        params: super::Params<'_>,
    ) -> Vec<StepSql<'a>> {
        let all = rb.all_steps();
        let mut steps: Vec<StepSql<'a>> = Vec::with_capacity(all.len());
        for (pointer, step) in all {
            let phase: Option<usize> = pointer
                .strip_prefix("/phases/")
                .and_then(|r| r.split('/').next())
                .and_then(|i| i.parse().ok());
            let role = if let Some(at) = pointer.rfind("/rollback") {
                let parent = &pointer[..at];
                let i = steps
                    .iter()
                    .position(|s| s.pointer == parent)
                    .expect("a rollback follows its step");
                Role::Compensation(i)
            } else if pointer.starts_with("/finally") {
                Role::Finally
            } else if pointer.contains("/on_failure") {
                let undoes = steps
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.role == Role::Main && (phase.is_none() || s.phase == phase))
                    .map(|(i, _)| i)
                    .collect();
                Role::Branch(undoes)
            } else {
                Role::Main
            };
            let gated = gated(&step.when) || phase.is_some_and(|p| gated(&rb.phases[p].when));
            let skipped = match (params, plan) {
                (super::Params::Run(_), Ok(plan)) => {
                    let undone = match &role {
                        Role::Compensation(i) => steps[*i].skipped.clone(),
                        _ => None,
                    };
                    let phase_when = phase
                        .and_then(|p| plan.phases.iter().find(|x| x.id == rb.phases[p].id))
                        .and_then(|x| x.when.as_ref());
                    let step_when = plan_step(plan, &step.id).and_then(|s| s.when.as_ref());
                    undone.or_else(|| {
                        [phase_when, step_when]
                            .into_iter()
                            .flatten()
                            .find(|w| w.value == Some(false))
                            .map(|w| format!("`when: {}` is false with these params", w.expr))
                    })
                }
                _ => None,
            };
            let sql = match &step.kind {
                StepKind::Sql(sql) => Some(sql_text(doc, &pointer, step, sql, plan)),
                _ => None,
            };
            let backup = match &step.kind {
                StepKind::Backup(b) => Some(backup(step, b, plan)),
                _ => None,
            };
            steps.push(StepSql {
                pointer,
                step,
                phase,
                role,
                gated,
                skipped,
                sql,
                backup,
            });
        }
        steps
    }

    /// The backups main steps before step `i` take.
    pub fn backups_before(&self, i: usize) -> Vec<Backup> {
        self.steps[..i]
            .iter()
            .filter(|s| s.role == Role::Main && s.skipped.is_none())
            .filter_map(|s| s.backup.clone())
            .collect()
    }
}

fn sql_text(
    doc: &Document,
    pointer: &str,
    step: &Step,
    sql: &crate::model::SqlStep,
    plan: Result<&Plan, &str>,
) -> SqlText {
    let field = if doc
        .value
        .pointer(&format!("{pointer}/sql"))
        .is_some_and(|x| x.is_string())
    {
        format!("{pointer}/sql")
    } else {
        format!("{pointer}/sql/statements")
    };
    let raw = &sql.statements;
    let templated = crate::template::is_template(raw);
    let text = if templated {
        rendered_sql(plan, &step.id)
    } else {
        Ok(raw.clone())
    };
    let in_transaction = text.as_ref().is_ok_and(|t| {
        crate::pg::statements::mode(&crate::pg::statements::split(t), sql.transaction)
            == crate::pg::statements::Mode::Transaction
    });
    SqlText {
        field,
        text,
        templated,
        in_transaction,
    }
}

impl SqlText {
    /// Where byte `o` of the SQL is in the runbook's text.
    pub fn file_offset(&self, doc: &Document, o: usize) -> usize {
        let start = doc.spans().value(&self.field).map_or(0, |s| s.start);
        let Ok(text) = &self.text else {
            return start;
        };
        if self.templated {
            // Rendered text keeps the template's lines: the same line of
            // the block, the column as rendered.
            let (line0, col0) = doc.source.line_col(start);
            let before = &text[..o.min(text.len())];
            let line = before.matches('\n').count();
            let col = before[before.rfind('\n').map_or(0, |i| i + 1)..]
                .chars()
                .count();
            doc.source.offset(line0 + line, col0 + col).unwrap_or(start)
        } else {
            doc.locate(&self.field, text, o..o + 1)
                .map_or(start, |s| s.start)
        }
    }
}

/// A backup step seen so far, with what it holds.
#[derive(Debug, Clone)]
pub struct Backup {
    pub id: String,
    pub schema_only: bool,
    /// Every table (no `tables`, `schemas` or exclusions).
    pub everything: bool,
    /// Tables (bare names) and schemas (`name.*`) it names.
    pub names: Vec<String>,
    /// Its table list could not be rendered before the run.
    pub unknown: bool,
}

impl Backup {
    /// It holds the data of `table`.
    pub fn covers(&self, table: &str) -> bool {
        !self.schema_only && self.names(table)
    }

    /// Its list takes in `table` (data or not).
    fn names(&self, table: &str) -> bool {
        self.everything
            || self.names.iter().any(|n| {
                n == table
                    || n.strip_suffix(".*").is_some_and(|schema| {
                        table
                            .strip_prefix(schema)
                            .is_some_and(|rest| rest.starts_with('.'))
                            || (schema == "public" && !table.contains('.'))
                    })
            })
    }
}

/// The first backup in `backups` that covers `table`, or why none does.
pub fn covering<'b>(backups: &'b [Backup], table: &str) -> Result<&'b Backup, String> {
    if let Some(b) = backups.iter().find(|b| b.covers(table)) {
        return Ok(b);
    }
    let schema_only: Vec<&str> = backups
        .iter()
        .filter(|b| b.schema_only && b.names(table))
        .map(|b| b.id.as_str())
        .collect();
    let unknown: Vec<&str> = backups
        .iter()
        .filter(|b| b.unknown)
        .map(|b| b.id.as_str())
        .collect();
    Err(if !schema_only.is_empty() {
        format!(
            "no earlier backup holds the data of {table} (`{}` is schema_only)",
            schema_only.join("`, `")
        )
    } else if !unknown.is_empty() {
        format!(
            "no earlier backup is known to cover {table} (the tables of `{}` are known only at run time)",
            unknown.join("`, `")
        )
    } else {
        format!("no earlier backup covers {table}")
    })
}
