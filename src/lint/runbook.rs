//! Rules only a runbook-aware linter can check: they need the runbook's
//! phases, backups, rollbacks, approvals and shell steps, or the whole
//! migration set, which a linter of single SQL files never sees. Each has a
//! page in docs/lint/.

use std::collections::BTreeSet;

use super::facts::{Facts, NotNullChecks};
use super::sql::Script;
use super::steps::{Backup, Role, RunbookSql, covering};
use super::{Finding, Place, Report, Severity};
use crate::load::Document;
use crate::migrations::{self, Down};
use crate::model::{Command, OnFailure, PhaseKind, Runbook, Step, StepKind};
use crate::pg::statements::Statement;

/// Our rules: name, severity, one line of what it catches.
pub const RULES: &[(&str, Severity, &str)] = &[
    (
        "destructive-without-backup",
        Severity::Error,
        "DROP TABLE/COLUMN, TRUNCATE, or DELETE/UPDATE without WHERE with no earlier backup holding the table's data",
    ),
    (
        "destructive-without-rollback",
        Severity::Error,
        "a destructive step with no rollback and no failure branch",
    ),
    (
        "contract-without-approval",
        Severity::Error,
        "a contract phase that runs without a person approving it",
    ),
    (
        "unbatched-update",
        Severity::Warning,
        "UPDATE/DELETE over an existing table in one statement; use a backfill step",
    ),
    (
        "foreign-key-without-index",
        Severity::Warning,
        "a foreign key whose columns no index in the same set starts with",
    ),
    (
        "not-null-without-default",
        Severity::Error,
        "a NOT NULL column added without a default, or SET NOT NULL without a validated check first",
    ),
    (
        "missing-down-migration",
        Severity::Error,
        "an up migration with no down, or a down that holds only comments",
    ),
    (
        "secret-in-command",
        Severity::Error,
        "a secret param (or a var built from one) or the database URL on a shell command line instead of in its env",
    ),
    (
        "unquoted-template-in-sql",
        Severity::Error,
        "a template value placed into SQL without the literal or ident filter",
    ),
    (
        "missing-timeout",
        Severity::Warning,
        "a shell step without a timeout in a phase that changes things, a failure branch or finally",
    ),
    (
        "migration-layout",
        Severity::Warning,
        "a migration directory whose order is ambiguous: a version used twice, a down with no up, a file that is skipped",
    ),
];

fn severity(rule: &str) -> Severity {
    RULES
        .iter()
        .find(|(n, _, _)| *n == rule)
        .map_or(Severity::Error, |(_, s, _)| *s)
}

/// A finding located at `offset` of the SQL that `place` maps.
fn finding(rule: &str, message: String, help: &str, place: &Place<'_>, offset: usize) -> Finding {
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

/// What the SQL seen so far knows: tables created in it (empty), indexes,
/// validated NOT NULL checks, foreign keys waiting for an index.
#[derive(Default)]
struct SetState {
    new_tables: BTreeSet<String>,
    indexes: Vec<(String, Vec<String>)>,
    not_null_checks: NotNullChecks,
    foreign_keys: Vec<(String, Vec<String>, Finding)>,
}

/// The rules over a script's statements, in order, in the set's state.
/// Returns the tables its destructive statements touch (with the offset).
fn judge(
    stmts: &[(Statement, Facts)],
    place: &Place<'_>,
    state: &mut SetState,
    out: &mut Vec<Finding>,
) -> Vec<(String, usize)> {
    let mut destructive = Vec::new();
    for (st, f) in stmts {
        let table = &f.table;
        for (_, t) in &f.destructive {
            if !state.new_tables.contains(t) {
                destructive.push((t.clone(), st.offset));
            }
        }
        if f.creates_table == Some(false) {
            state.new_tables.insert(table.clone());
        }
        state.indexes.extend(f.indexes.iter().cloned());
        if f.writes_rows && !f.pinned_write && !state.new_tables.contains(table) {
            out.push(finding(
                "unbatched-update",
                format!("{} over the existing table {table} in one statement: it locks every row it touches until it commits", st.kind),
                "use a `backfill` step: keyset batches in short transactions, resumable, with progress",
                place,
                st.offset,
            ));
        }
        if !state.new_tables.contains(table) {
            for col in &f.not_null_no_default {
                out.push(finding(
                    "not-null-without-default",
                    format!("{table}.{col} is added NOT NULL without a default: it fails on any existing row"),
                    "add it nullable, backfill it, then add a CHECK (col IS NOT NULL) NOT VALID, VALIDATE it, and SET NOT NULL",
                    place,
                    st.offset,
                ));
            }
        }
        state.not_null_checks.see(f);
        for col in &f.set_not_null {
            if state.new_tables.contains(table) || state.not_null_checks.validated(table, col) {
                continue;
            }
            let unvalidated = state.not_null_checks.pending(table, col);
            out.push(finding(
                "not-null-without-default",
                if unvalidated {
                    format!("SET NOT NULL on {table}.{col} after a CHECK added NOT VALID and never validated: PostgreSQL still scans the whole table under ACCESS EXCLUSIVE")
                } else {
                    format!("SET NOT NULL on {table}.{col} with no validated CHECK before it: it scans the whole table under ACCESS EXCLUSIVE")
                },
                "first ADD CONSTRAINT ... CHECK (col IS NOT NULL) NOT VALID and VALIDATE CONSTRAINT (outside the same transaction); SET NOT NULL then skips the scan",
                place,
                st.offset,
            ));
        }
        for (t, cols) in &f.foreign_keys {
            let fnd = finding(
                "foreign-key-without-index",
                format!(
                    "the foreign key on {t}({}) has no index starting with its columns",
                    cols.join(", ")
                ),
                "create an index (CONCURRENTLY) on the referencing columns: deletes and updates of the referenced rows scan this table without one",
                place,
                st.offset,
            );
            state.foreign_keys.push((t.clone(), cols.clone(), fnd));
        }
    }
    destructive
}

fn finish(state: SetState, out: &mut Vec<Finding>) {
    let mut by_table: std::collections::HashMap<&str, Vec<&[String]>> =
        std::collections::HashMap::new();
    for (t, cols) in &state.indexes {
        by_table.entry(t.as_str()).or_default().push(cols);
    }
    for (t, cols, f) in state.foreign_keys {
        let covered = by_table.get(t.as_str()).is_some_and(|list| {
            list.iter()
                .any(|ic| ic.len() >= cols.len() && ic[..cols.len()] == cols[..])
        });
        if !covered {
            out.push(f);
        }
    }
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
    for (pi, phase) in rb.phases.iter().enumerate() {
        if phase.kind == PhaseKind::Contract && phase.approval.as_ref().is_none_or(|a| !a.required)
        {
            found.push(finding(
                "contract-without-approval",
                format!(
                    "phase `{}` contracts the schema without a person approving it",
                    phase.id
                ),
                "add `approval: {prompt: ...}`; runs then stop there until `--approve` or a typed yes",
                &whole,
                at_key(&format!("/phases/{pi}/kind")),
            ));
        }
    }
    let secrets = secret_names(rb);
    let runbook_branch = !rb.on_failure.is_empty();
    let mut state = SetState::default();
    for (i, s) in book.steps.iter().enumerate() {
        shell_rules(
            s.step,
            &s.pointer,
            changes(rb, s),
            &secrets,
            &whole,
            &mut found,
            &at_key,
        );
        let Some(sql) = &s.sql else { continue };
        if let StepKind::Sql(raw) = &s.step.kind {
            unquoted_templates(
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
        let backups: Vec<Backup> = book.backups_before(i);
        let mut seen = BTreeSet::new();
        for (t, offset) in &destroyed {
            if !seen.insert(t.clone()) {
                continue;
            }
            if let Err(why) = covering(&backups, t) {
                found.push(finding(
                    "destructive-without-backup",
                    format!("step `{}` destroys data in {t}: {why}", s.step.id),
                    "add a `backup` step before it (not schema_only; its `tables:` or `schemas:` must include the table), so a restore is possible",
                    &place,
                    *offset,
                ));
            }
        }
        let phase_branch = s.phase.is_some_and(
            |p| matches!(&rb.phases[p].on_failure, OnFailure::Steps(b) if !b.is_empty()),
        );
        if s.step.rollback.is_empty() && !phase_branch && !runbook_branch {
            found.push(finding(
                "destructive-without-rollback",
                format!(
                    "step `{}` destroys data and has no rollback, and neither its phase nor the runbook has an on_failure branch",
                    s.step.id
                ),
                "add a `rollback:` (for example a restore from the backup) or an `on_failure:` branch",
                &whole,
                at_key(&format!("{}/id", s.pointer)),
            ));
        }
    }
    finish(state, &mut found);
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
fn mentions(text: &str, name: &str) -> bool {
    text.match_indices(name).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + name.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// Environment variables that hold the database password.
const SECRET_ENV: &[&str] = &["DATABASE_URL", "PGPASSWORD"];

fn shell_rules(
    step: &Step,
    sp: &str,
    changes: Option<&str>,
    secrets: &[String],
    whole: &Place<'_>,
    out: &mut Vec<Finding>,
    at_key: &dyn Fn(&str) -> usize,
) {
    let StepKind::Shell(sh) = &step.kind else {
        return;
    };
    if let Some(place) = changes
        && step.timeout.is_none()
    {
        out.push(finding(
            "missing-timeout",
            format!("shell step `{}` has no timeout {place}", step.id),
            "set `timeout:` on the step (or in `defaults:`); a hung command otherwise holds the release open",
            whole,
            at_key(&format!("{sp}/shell")),
        ));
    }
    let parts: Vec<&str> = match &sh.command {
        Command::Script(s) => vec![s.as_str()],
        Command::Argv(a) => a.iter().map(String::as_str).collect(),
    };
    for part in parts {
        let leak = secrets
            .iter()
            .find(|s| mentions(part, s))
            .map(|s| match s.strip_prefix("params.") {
                Some(p) => format!("the secret param `{p}`"),
                None => format!("`{s}`, which is built from a secret param"),
            })
            .or_else(|| {
                SECRET_ENV.iter().find_map(|v| {
                    if part.contains(&format!("${v}")) || part.contains(&format!("${{{v}}}")) {
                        Some(format!("${v}"))
                    } else if part.contains(&format!("env('{v}')"))
                        || part.contains(&format!("env(\"{v}\")"))
                    {
                        Some(format!("`env('{v}')`"))
                    } else {
                        None
                    }
                })
            });
        if let Some(what) = leak {
            out.push(finding(
                "secret-in-command",
                format!(
                    "shell step `{}` puts {what} on its command line, where `ps` and process listings show it",
                    step.id
                ),
                "pass it in `env:` and read it there: libpq tools take PGHOST/PGPASSWORD/... from the environment, which runbook sets for you",
                whole,
                at_key(&format!("{sp}/shell/command")),
            ));
            break;
        }
    }
}

/// `{{ expr }}` in SQL whose last filter is not `literal` or `ident`.
fn unquoted_templates(
    sql: &str,
    field: &str,
    id: &str,
    rb: &Runbook,
    push: &mut impl FnMut(&str, &str, String, &str),
) {
    // A param that cannot hold a quote: not a string, an enum, or a string
    // whose (whole-value) pattern admits no quote, semicolon or wildcard.
    let constrained = |expr: &str| -> bool {
        let name = expr.split('|').next().unwrap_or("").trim();
        let Some(p) = name.strip_prefix("params.").and_then(|n| rb.params.get(n)) else {
            return false;
        };
        p.ty != crate::model::ParamType::String
            || p.allowed.is_some()
            || p.pattern.as_deref().is_some_and(|pat| {
                !pat.contains(['.', '\\', '\'', '"', ';']) && !pat.contains("[^")
            })
    };
    let mut rest = sql;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open..].find("}}") else {
            break;
        };
        let expr = rest[open + 2..open + close].trim();
        let last = expr.rsplit('|').next().unwrap_or("").trim();
        let filter = last.split(['(', ' ']).next().unwrap_or("");
        let piped = expr.contains('|');
        let safe = piped && matches!(filter, "literal" | "ident");
        // Numbers from `| int` are safe too: they cannot carry quotes.
        let numeric = piped && matches!(filter, "int" | "float" | "length");
        if piped && filter == "unsafe_raw" {
            // Accepted by validate because the author said so: shown here.
            push(
                "unquoted-template-in-sql",
                field,
                format!(
                    "step `{id}` splices `{{{{ {expr} }}}}` into SQL as is (`unsafe_raw`): whatever the value holds runs"
                ),
                "keep `unsafe_raw` for text that is SQL on purpose, and constrain the param (`enum`, `pattern`)",
            );
        } else if !safe && !numeric && !constrained(expr) {
            push(
                "unquoted-template-in-sql",
                field,
                format!(
                    "step `{id}` puts `{{{{ {expr} }}}}` into SQL unquoted: a value with a quote in it changes the statement"
                ),
                "end the expression with `| literal` for a value or `| ident` for a name",
            );
        }
        rest = &rest[open + close + 2..];
    }
}

/// A migration set's layout warnings (a version used twice, a down with no
/// up, a file skipped), each located at the file it names.
pub fn layout_warnings(set: &migrations::Set, report: &mut Report) {
    for w in &set.warnings {
        let named = w
            .split(|c: char| c.is_whitespace() || c == '`' || c == ':' || c == ',')
            .find(|word| word.ends_with(".sql") && set.dir.join(word).is_file());
        let file = match named {
            Some(f) => set.dir.join(f),
            None => set.dir.clone(),
        };
        report.findings.push(Finding {
            rule: "migration-layout".into(),
            source: "runbook",
            severity: severity("migration-layout"),
            file: file.display().to_string(),
            line: 1,
            column: 1,
            end_line: 1,
            end_column: 2,
            message: w.clone(),
            help: Some("every other migration in the directory is still linted".into()),
            source_line: std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| t.lines().next().map(str::to_string))
                .unwrap_or_default(),
        });
    }
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
        if let Down::Missing(why) = &m.down {
            self.found.push(finding(
                "missing-down-migration",
                format!("migration {} ({}) has no down: {why}", m.version, m.name),
                "write the down that undoes it exactly; `runbook` can rehearse it (docs/rehearsal.md)",
                place,
                0,
            ));
        }
        if script.unparsed {
            return;
        }
        self.state.new_tables = new.clone();
        judge(&script.stmts, place, &mut self.state, &mut self.found);
    }

    pub fn finish(mut self, report: &mut Report) {
        finish(self.state, &mut self.found);
        report.findings.extend(self.found);
    }
}
