//! The runner's context for squawk's destructive rules (`ban-drop-column`,
//! `ban-drop-table`, `renaming-column`, ...). squawk judges a statement
//! alone; a runbook knows where it sits. A destructive statement is
//! accepted, with a note that says why, in two places only:
//!
//! - **A contract phase that is ready for it**: the phase has an approval
//!   gate, an earlier backup that holds data covers every table it
//!   touches, and the step has a rollback (its own, or an `on_failure`
//!   branch of its phase or of the runbook).
//! - **An undo of what the runbook built**: a compensation (`rollback:`)
//!   that drops only what its own step created, or an `on_failure` branch
//!   that drops only what the steps it undoes created.
//!
//! Anywhere else the finding stays, and its message names each condition
//! that is missing. docs/lint/destructive-context.md has the details.

use squawk_linter::Rule;

use super::facts::{Facts, Obj};
use super::steps::{Backup, Role, RunbookSql, covering};

/// squawk's rules that this context can accept.
pub const DESTRUCTIVE_RULES: &[Rule] = &[
    Rule::BanDropColumn,
    Rule::BanDropTable,
    Rule::BanTruncateCascade,
    Rule::BanDropNotNull,
    Rule::BanDropConstraint,
    Rule::BanDropDefault,
    Rule::BanDropView,
    Rule::BanDropFunction,
    Rule::BanDropType,
    Rule::BanDropTrigger,
    Rule::BanDropSequence,
    Rule::BanDropDomain,
    Rule::BanDropIndex,
    Rule::BanDropSchema,
    Rule::BanDropExtension,
    Rule::BanDropPolicy,
    Rule::BanDropGeneratedExpression,
    Rule::RenamingColumn,
    Rule::RenamingTable,
    Rule::RenamingObject,
];

/// Judge a destructive finding on statement `facts` of piece `at`.
/// `Ok(why)` accepts it; `Err(what is missing)` keeps it.
pub fn judge(
    rule: Rule,
    facts: &Facts,
    at: usize,
    sql: &RunbookSql<'_>,
    backups: &[Backup],
) -> Option<Result<String, String>> {
    if !DESTRUCTIVE_RULES.contains(&rule) {
        return None;
    }
    let piece = &sql.steps[at];
    Some(match &piece.role {
        Role::Compensation(parent) => compensation(facts, piece, sql, &[*parent])
            .map(|objs| {
                format!(
                    "step `{}` is the compensation of `{}`, and drops only what that step created ({objs})",
                    piece.step.id, sql.steps[*parent].step.id
                )
            }),
        Role::Branch(undoes) => compensation(facts, piece, sql, undoes).map(|objs| {
            format!(
                "`{}` is in an on_failure branch and drops only what the steps it undoes created ({objs})",
                piece.step.id
            )
        }),
        Role::Finally => Err("it is in `finally`, which runs after every run, failed or not".into()),
        Role::Main => contract(facts, piece, sql, backups),
    })
}

/// Accept when every object the statement drops was created by `creators`.
fn compensation(
    facts: &Facts,
    piece: &super::steps::StepSql<'_>,
    sql: &RunbookSql<'_>,
    creators: &[usize],
) -> Result<String, String> {
    let created: Vec<&Obj> = creators
        .iter()
        .filter_map(|&i| sql.scripts[i].as_ref())
        .flat_map(|s| s.stmts.iter().flat_map(|(_, f)| &f.creates))
        .collect();
    let mut dropped: Vec<Obj> = facts.drops.clone();
    for (what, t) in &facts.destructive {
        if what.starts_with("TRUNCATE") {
            dropped.push(Obj::Relation(t.clone()));
        }
    }
    if dropped.is_empty() {
        return Err(format!(
            "`{}` is an undo, but runbook cannot tell what this statement removes",
            piece.step.id
        ));
    }
    let foreign: Vec<String> = dropped
        .iter()
        .filter(|d| !created.iter().any(|c| d.made_by(c)))
        .map(|d| d.to_string())
        .collect();
    if foreign.is_empty() {
        Ok(dropped
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", "))
    } else {
        let whose = creators
            .iter()
            .map(|&i| format!("`{}`", sql.steps[i].step.id))
            .collect::<Vec<_>>()
            .join(", ");
        Err(format!(
            "`{}` undoes {whose}, but drops {}, which {} not create",
            piece.step.id,
            foreign.join(", "),
            if creators.len() == 1 {
                "that step did"
            } else {
                "those steps did"
            }
        ))
    }
}

/// Accept in a contract phase with approval, backup and rollback.
fn contract(
    facts: &Facts,
    piece: &super::steps::StepSql<'_>,
    sql: &RunbookSql<'_>,
    backups: &[Backup],
) -> Result<String, String> {
    let mut missing = Vec::new();
    let mut have = Vec::new();
    match piece.phase.map(|p| &sql.runbook.phases[p]) {
        Some(phase) if phase.kind == crate::model::PhaseKind::Contract => {
            have.push(format!("contract phase `{}`", phase.id));
            if phase.approval.as_ref().is_some_and(|a| a.required) {
                have.push("behind its approval gate".to_string());
            } else {
                missing.push(format!("phase `{}` has no approval gate", phase.id));
            }
        }
        Some(phase) => missing.push(format!(
            "it is in the {} phase `{}`, not a contract phase",
            phase.kind.name(),
            phase.id
        )),
        None => missing.push("it is not in a contract phase".into()),
    }
    let mut tables: Vec<&str> = facts
        .drops
        .iter()
        .filter_map(Obj::table)
        .chain(facts.destructive.iter().map(|(_, t)| t.as_str()))
        .collect();
    tables.sort_unstable();
    tables.dedup();
    let others: Vec<String> = facts
        .drops
        .iter()
        .filter(|o| o.table().is_none())
        .map(|o| o.to_string())
        .collect();
    for t in tables.iter().copied().chain(if tables.is_empty() {
        Some(facts.table.as_str())
    } else {
        None
    }) {
        match covering(backups, t) {
            Ok(b) => have.push(format!("backup `{}` covers {t}", b.id)),
            Err(why) => missing.push(why),
        }
    }
    for o in &others {
        match backups.iter().find(|b| b.everything && !b.schema_only) {
            Some(b) => have.push(format!("backup `{}` holds {o}", b.id)),
            None => missing.push(format!("no earlier whole-database backup holds {o}")),
        }
    }
    let phase_branch = piece.phase.is_some_and(|p| {
        matches!(&sql.runbook.phases[p].on_failure, crate::model::OnFailure::Steps(s) if !s.is_empty())
    });
    if !piece.step.rollback.is_empty() {
        have.push(format!("rollback `{}`", piece.step.rollback[0].id));
    } else if phase_branch {
        have.push("its phase's on_failure branch".into());
    } else if !sql.runbook.on_failure.is_empty() {
        have.push("the runbook's on_failure branch".into());
    } else {
        missing.push(format!(
            "step `{}` has no rollback, and neither its phase nor the runbook an on_failure branch",
            piece.step.id
        ));
    }
    if missing.is_empty() {
        Ok(format!("step `{}`: {}", piece.step.id, have.join(", ")))
    } else {
        Err(format!(
            "runbook accepts it only in an approved contract phase, after a backup of the table, with a rollback; here {}",
            missing.join("; ")
        ))
    }
}
