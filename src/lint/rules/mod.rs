//! Rules only a runbook-aware linter can check, one file per rule: they
//! need the runbook's phases, backups, rollbacks, approvals and shell
//! steps, or the whole migration set, which a linter of single SQL files
//! never sees. Each has a page in docs/lint/. This file runs them: one pass
//! over a runbook's steps (`check_runbook`), or over a migration set file
//! by file (`MigrationChecks`), carrying what the SQL so far created.

mod byte_order_mark;
mod contract_without_approval;
mod destructive_without_backup;
mod destructive_without_rollback;
mod foreign_key_without_index;
mod migration_layout;
mod missing_down_migration;
mod missing_timeout;
mod not_null_without_default;
mod secret_in_command;
mod timeout_disabled;
mod tool_transaction;
mod unbatched_update;
mod unquoted_template_in_sql;

use std::collections::BTreeSet;

use super::facts::{Facts, NotNullChecks};
use super::sql::Script;
use super::steps::{Role, RunbookSql};
use super::{Finding, Place, Report, Severity};
use crate::load::Document;
use crate::migrations;
use crate::model::{PhaseKind, Runbook, StepKind};
use crate::pg::statements::Statement;

pub use byte_order_mark::check as byte_order_mark;
pub use migration_layout::check as layout_warnings;
pub use tool_transaction::check as tool_transaction;

/// Our rules: name, severity, one line of what it catches.
pub const RULES: &[(&str, Severity, &str)] = &[
    destructive_without_backup::RULE,
    destructive_without_rollback::RULE,
    contract_without_approval::RULE,
    unbatched_update::RULE,
    foreign_key_without_index::RULE,
    not_null_without_default::RULE,
    missing_down_migration::RULE,
    secret_in_command::RULE,
    unquoted_template_in_sql::RULE,
    missing_timeout::RULE,
    migration_layout::RULE,
    tool_transaction::RULE,
    byte_order_mark::RULE,
    timeout_disabled::RULE,
    super::psql::RULE,
];

fn severity(rule: &str) -> Severity {
    RULES
        .iter()
        .find(|(n, _, _)| *n == rule)
        .map_or(Severity::Error, |(_, s, _)| *s)
}

/// A finding located at `offset` of the SQL that `place` maps.
pub(super) fn finding(
    rule: &str,
    message: String,
    help: &str,
    place: &Place<'_>,
    offset: usize,
) -> Finding {
    let (line, column, source_line) = place.line_col(offset);
    Finding {
        rule: rule.into(),
        source: "runbook",
        severity: severity(rule),
        file: place.file.into(),
        line,
        column,
        end_line: line,
        end_column: column + 1,
        message,
        help: Some(help.into()),
        source_line,
    }
}

/// A finding about a whole line of a file (a migration file's first line,
/// the statement a warning names): column 1, the line's text read from
/// the file (with a byte-order mark left out).
pub(super) fn line_finding(
    rule: (&str, Severity, &str),
    file: &std::path::Path,
    line: usize,
    message: String,
    help: &str,
) -> Finding {
    let line = line.max(1);
    let source_line = std::fs::read_to_string(file)
        .ok()
        .and_then(|t| t.lines().nth(line - 1).map(str::to_string))
        .unwrap_or_default();
    Finding {
        rule: rule.0.into(),
        source: "runbook",
        severity: rule.1,
        file: file.display().to_string(),
        line,
        column: 1,
        end_line: line,
        end_column: 2,
        message,
        help: Some(help.into()),
        source_line: source_line.trim_start_matches('\u{feff}').to_string(),
    }
}

/// What the SQL seen so far knows: tables created in it (empty), indexes,
/// validated NOT NULL checks, foreign keys waiting for an index.
#[derive(Default)]
pub(super) struct SetState {
    new_tables: BTreeSet<String>,
    indexes: Vec<(String, Vec<String>)>,
    not_null_checks: NotNullChecks,
    foreign_keys: Vec<(String, Vec<String>, Finding)>,
}

/// The statement rules over a script, in order, in the set's state.
/// Returns the tables its destructive statements touch (with the offset).
fn judge(
    stmts: &[(Statement, Facts)],
    place: &Place<'_>,
    state: &mut SetState,
    out: &mut Vec<Finding>,
) -> Vec<(String, usize)> {
    let mut destructive = Vec::new();
    for (st, f) in stmts {
        for (_, t) in &f.destructive {
            if !state.new_tables.contains(t) {
                destructive.push((t.clone(), st.offset));
            }
        }
        if f.creates_table == Some(false) {
            state.new_tables.insert(f.table.clone());
        }
        state.indexes.extend(f.indexes.iter().cloned());
        unbatched_update::check(st, f, state, place, out);
        state.not_null_checks.see(f);
        not_null_without_default::check(st, f, state, place, out);
        foreign_key_without_index::see(st, f, state, place);
        timeout_disabled::check(st, place, out);
    }
    destructive
}

/// Runbook rules over a runbook's steps.
pub fn check_runbook(doc: &Document, book: &RunbookSql<'_>, file: &str, report: &mut Report) {
    let rb = book.runbook;
    let at_key = |pointer: &str| doc.spans().key_or_value(pointer).map_or(0, |s| s.start);
    let whole = Place {
        file,
        source: &doc.source,
        map: &|o| o,
    };
    let mut found = Vec::new();
    contract_without_approval::check(rb, &whole, &at_key, &mut found);
    let secrets = secret_names(rb);
    let mut state = SetState::default();
    for (i, s) in book.steps.iter().enumerate() {
        if let StepKind::Shell(sh) = &s.step.kind {
            missing_timeout::check(
                s.step,
                &s.pointer,
                changes(rb, s),
                &whole,
                &at_key,
                &mut found,
            );
            secret_in_command::check(
                s.step, sh, &s.pointer, &secrets, &whole, &at_key, &mut found,
            );
        }
        let Some(sql) = &s.sql else { continue };
        if let StepKind::Sql(raw) = &s.step.kind {
            unquoted_template_in_sql::check(
                &raw.statements,
                &sql.field,
                &s.step.id,
                rb,
                &mut |rule, pointer, message, help| {
                    found.push(finding(rule, message, help, &whole, at_key(pointer)))
                },
            );
        }
        let Some(script) = book.scripts[i].as_ref().filter(|s| !s.unparsed) else {
            continue;
        };
        let map = |o: usize| sql.file_offset(doc, o);
        let place = Place {
            file,
            source: &doc.source,
            map: &map,
        };
        // What a step that may not run creates is not new for later steps.
        let keep = (s.role != Role::Main || s.gated).then(|| state.new_tables.clone());
        let destroyed = judge(&script.stmts, &place, &mut state, &mut found);
        if let Some(k) = keep {
            state.new_tables = k;
        }
        if s.role != Role::Main || destroyed.is_empty() {
            continue;
        }
        let backups = book.backups_before(i);
        destructive_without_backup::check(&s.step.id, &destroyed, &backups, &place, &mut found);
        destructive_without_rollback::check(rb, s, &whole, &at_key, &mut found);
    }
    foreign_key_without_index::finish(state, &mut found);
    report.findings.extend(found);
}

/// Whether a shell step here needs a timeout: in a phase that changes
/// things, and always in an undo, a failure branch or `finally` (a hung
/// command there holds the release open while it is being rolled back).
fn changes(rb: &Runbook, s: &super::steps::StepSql<'_>) -> Option<&'static str> {
    if rb.defaults.timeout.is_some() {
        return None;
    }
    match (&s.role, s.phase) {
        (Role::Main, Some(p)) => {
            (!matches!(rb.phases[p].kind, PhaseKind::Preflight | PhaseKind::Verify))
                .then_some("in a phase that changes things")
        }
        (Role::Compensation(_), _) => Some("in a rollback"),
        (Role::Branch(_), _) => Some("in an on_failure branch"),
        _ => Some("in `finally`"),
    }
}

/// Secret params, and vars whose template reads one (or such a var), as
/// the template names them: `params.x`, `vars.y`.
fn secret_names(rb: &Runbook) -> Vec<String> {
    let mut names: Vec<String> = rb
        .params
        .iter()
        .filter(|(_, p)| p.secret)
        .map(|(n, _)| format!("params.{n}"))
        .collect();
    loop {
        let before = names.len();
        for (v, value) in &rb.vars {
            let key = format!("vars.{v}");
            let text = value.to_string();
            if !names.contains(&key) && names.iter().any(|n| mentions(&text, n)) {
                names.push(key);
            }
        }
        if names.len() == before {
            return names;
        }
    }
}

/// `text` names `name` as a whole (`params.token`, not `params.token_id`).
pub(super) fn mentions(text: &str, name: &str) -> bool {
    text.match_indices(name).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + name.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// Runbook rules over a migration directory, fed file by file in version
/// order: missing downs, and the SQL rules over every up script (indexes
/// and foreign keys across the set; new tables per file).
#[derive(Default)]
pub struct MigrationChecks {
    state: SetState,
    found: Vec<Finding>,
}

impl MigrationChecks {
    /// One file. `new`: tables created by earlier files that are empty here
    /// (none, unless `assume_empty_before` says so).
    pub fn file(
        &mut self,
        m: &migrations::Migration,
        script: &Script,
        place: &Place<'_>,
        new: &BTreeSet<String>,
    ) {
        missing_down_migration::check(m, place, &mut self.found);
        if script.unparsed {
            return;
        }
        self.state.new_tables = new.clone();
        judge(&script.stmts, place, &mut self.state, &mut self.found);
    }

    pub fn finish(mut self, report: &mut Report) {
        foreign_key_without_index::finish(self.state, &mut self.found);
        report.findings.extend(self.found);
    }
}
