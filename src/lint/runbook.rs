//! Rules only a runbook-aware linter can check: they need the runbook's
//! phases, backups, rollbacks, approvals and shell steps, or the whole
//! migration set, which a linter of single SQL files never sees. Each has a
//! page in docs/lint/.

use std::collections::BTreeSet;

use squawk_syntax::SourceFile;
use squawk_syntax::ast::{self, AstNode};

use super::{Finding, Report, Severity};
use crate::load::Document;
use crate::migrations::{self, Down};
use crate::model::{Command, OnFailure, PhaseKind, Runbook, Step, StepKind};
use crate::statements::{self, Statement};

/// Our rules: name, severity, one line of what it catches.
pub const RULES: &[(&str, Severity, &str)] = &[
    (
        "destructive-without-backup",
        Severity::Error,
        "DROP TABLE/COLUMN, TRUNCATE, or DELETE/UPDATE without WHERE with no earlier backup covering the table",
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
        "a secret param or the database URL on a shell command line instead of in its env",
    ),
    (
        "unquoted-template-in-sql",
        Severity::Error,
        "a template value placed into SQL without the literal or ident filter",
    ),
    (
        "missing-timeout",
        Severity::Warning,
        "a shell step without a timeout in a phase that changes things",
    ),
];

fn severity(rule: &str) -> Severity {
    RULES
        .iter()
        .find(|(n, _, _)| *n == rule)
        .map_or(Severity::Error, |(_, s, _)| *s)
}

/// What a statement does that the rules care about.
#[derive(Debug, Default)]
pub struct Facts {
    /// `DROP TABLE t`, `DROP COLUMN`, `TRUNCATE`, `DELETE`/`UPDATE` without WHERE.
    destructive: Option<String>,
    /// UPDATE or DELETE of a table (with or without WHERE).
    writes_rows: bool,
    creates_table: bool,
    /// Foreign key columns, when the statement adds one: (table, columns).
    foreign_key: Option<(String, Vec<String>)>,
    /// Indexes it creates, by leading columns: (table, columns).
    indexes: Vec<(String, Vec<String>)>,
    /// `ADD COLUMN ... NOT NULL` without DEFAULT: the column.
    not_null_no_default: Option<String>,
    /// `ALTER COLUMN c SET NOT NULL`: the column.
    set_not_null: Option<String>,
    /// `CHECK (c IS NOT NULL)`: the column, from ADD CONSTRAINT.
    checks_not_null: Option<String>,
}

fn idents(text: &str) -> Vec<String> {
    text.split(',')
        .map(|c| c.trim().trim_matches('"').to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .collect()
}

/// The text between the first `(` after `at` and its matching `)`.
fn paren_after(text: &str, at: usize) -> Option<&str> {
    let open = at + text[at..].find('(')?;
    let mut depth = 0;
    for (i, c) in text[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&text[open + 1..open + i]);
                }
            }
            _ => {}
        }
    }
    None
}

fn facts(st: &Statement, stmt: Option<ast::Stmt>) -> Facts {
    let mut f = Facts::default();
    let table = st.relations.first().cloned().unwrap_or_default();
    let upper = st.text.to_ascii_uppercase();
    let Some(stmt) = stmt else {
        return f;
    };
    match stmt {
        ast::Stmt::DropTable(_) => f.destructive = Some(format!("DROP TABLE {table}")),
        ast::Stmt::Truncate(_) => f.destructive = Some(format!("TRUNCATE {table}")),
        ast::Stmt::Delete(d) => {
            f.writes_rows = true;
            if d.where_clause_or_current_of().is_none() {
                f.destructive = Some(format!("DELETE FROM {table} without WHERE"));
            }
        }
        ast::Stmt::Update(u) => {
            f.writes_rows = true;
            if u.where_clause_or_current_of().is_none() {
                f.destructive = Some(format!("UPDATE {table} without WHERE"));
            }
        }
        ast::Stmt::CreateTable(_) => {
            f.creates_table = true;
            if let Some(at) = upper.find("PRIMARY KEY (") {
                f.indexes.push((
                    table.clone(),
                    idents(paren_after(&st.text, at).unwrap_or("")),
                ));
            }
        }
        ast::Stmt::CreateIndex(_) => {
            if let Some(on) = upper.find(" ON ") {
                let target = st
                    .relations
                    .get(1)
                    .cloned()
                    .unwrap_or_else(|| table.clone());
                let cols = paren_after(&st.text, on).map(idents).unwrap_or_default();
                f.indexes.push((target, cols));
            }
        }
        ast::Stmt::AlterTable(a) => {
            for action in a.actions() {
                let text = action.syntax().text().to_string();
                let up = text.to_ascii_uppercase();
                match action {
                    ast::AlterTableAction::DropColumn(_) => {
                        f.destructive = Some(format!("{table}: {}", text.trim()));
                    }
                    ast::AlterTableAction::AddColumn(_)
                        if up.contains("NOT NULL")
                            && !up.contains("DEFAULT")
                            && !up.contains("GENERATED") =>
                    {
                        f.not_null_no_default = text
                            .split_whitespace()
                            .find(|w| {
                                !matches!(
                                    w.to_ascii_uppercase().as_str(),
                                    "ADD" | "COLUMN" | "IF" | "NOT" | "EXISTS"
                                )
                            })
                            .map(|c| c.trim_matches('"').to_ascii_lowercase());
                    }
                    ast::AlterTableAction::AlterColumn(_) if up.contains("SET NOT NULL") => {
                        f.set_not_null = text
                            .split_whitespace()
                            .nth(if up.starts_with("ALTER COLUMN") { 2 } else { 1 })
                            .map(|c| c.trim_matches('"').to_ascii_lowercase());
                    }
                    ast::AlterTableAction::AddConstraint(_) => {
                        if let Some(at) = up.find("FOREIGN KEY") {
                            let cols = paren_after(&text, at).map(idents).unwrap_or_default();
                            f.foreign_key = Some((table.clone(), cols));
                        } else if let Some(at) = up.find("CHECK")
                            && let Some(inner) = paren_after(&text, at)
                            && inner
                                .to_ascii_uppercase()
                                .trim_end()
                                .ends_with("IS NOT NULL")
                        {
                            f.checks_not_null = inner
                                .split_whitespace()
                                .next()
                                .map(|c| c.trim_matches('"').to_ascii_lowercase());
                        } else if let Some(at) =
                            up.find("PRIMARY KEY").or_else(|| up.find("UNIQUE"))
                        {
                            f.indexes.push((
                                table.clone(),
                                paren_after(&text, at).map(idents).unwrap_or_default(),
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    f
}

pub(crate) fn bare(table: &str) -> String {
    let t = table.trim_matches('"').to_ascii_lowercase();
    t.strip_prefix("public.").map(str::to_string).unwrap_or(t)
}

/// What the set of SQL seen so far knows: tables created in it, indexes in it.
#[derive(Default)]
struct SetState {
    new_tables: BTreeSet<String>,
    indexes: Vec<(String, Vec<String>)>,
    not_null_checks: BTreeSet<(String, String)>,
    /// Foreign keys waiting to be matched with an index by the end.
    foreign_keys: Vec<(String, Vec<String>, Finding)>,
}

/// A finding located at `offset` of `sql`, itself placed by `place`.
fn finding(
    rule: &str,
    message: String,
    help: &str,
    place: &super::Place<'_>,
    offset: usize,
) -> Finding {
    let (line, column, source_line) = super::line_col(place.text, (place.map)(offset));
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

/// Each statement of a parsed script with what the rules need to know of
/// it: plain data, so files can be read in parallel and judged in order.
pub fn statement_facts(sql: &str, tree: &SourceFile) -> Vec<(Statement, Facts)> {
    let stmts: Vec<ast::Stmt> = tree.stmts().collect();
    statements::split_tree(sql, tree.syntax())
        .into_iter()
        .map(|st| {
            let node = stmts
                .iter()
                .find(|n| {
                    let r = n.syntax().text_range();
                    usize::from(r.start()) <= st.offset && st.offset < usize::from(r.end())
                })
                .cloned();
            let f = facts(&st, node);
            (st, f)
        })
        .collect()
}

/// SQL rules over one piece of SQL in a set (a runbook or a directory).
fn sql_rules(
    sql: &str,
    place: &super::Place<'_>,
    state: &mut SetState,
    out: &mut Vec<Finding>,
) -> Vec<String> {
    let parse = SourceFile::parse(sql);
    judge(&statement_facts(sql, &parse.tree()), place, state, out)
}

/// The rules over a script's statements, in order, in the set's state.
fn judge(
    stmts: &[(Statement, Facts)],
    place: &super::Place<'_>,
    state: &mut SetState,
    out: &mut Vec<Finding>,
) -> Vec<String> {
    let mut destructive = Vec::new();
    for (st, f) in stmts {
        let table = st.relations.first().map(|t| bare(t)).unwrap_or_default();
        if f.destructive.is_some() {
            destructive.push(table.clone());
        }
        if f.creates_table {
            state.new_tables.insert(table.clone());
        }
        for (t, cols) in &f.indexes {
            state.indexes.push((bare(t), cols.clone()));
        }
        if f.writes_rows && !state.new_tables.contains(&table) {
            out.push(finding(
                "unbatched-update",
                format!("{} over the existing table {table} in one statement: it locks every row it touches until it commits", st.kind),
                "use a `backfill` step: keyset batches in short transactions, resumable, with progress",
                place,
                st.offset,
            ));
        }
        if let Some(col) = &f.not_null_no_default
            && !state.new_tables.contains(&table)
        {
            out.push(finding(
                "not-null-without-default",
                format!("{table}.{col} is added NOT NULL without a default: it fails on any existing row"),
                "add it nullable, backfill it, then add a CHECK (col IS NOT NULL) NOT VALID, VALIDATE it, and SET NOT NULL",
                place,
                st.offset,
            ));
        }
        if let Some(col) = &f.checks_not_null {
            state.not_null_checks.insert((table.clone(), col.clone()));
        }
        if let Some(col) = &f.set_not_null
            && !state.new_tables.contains(&table)
            && !state
                .not_null_checks
                .contains(&(table.clone(), col.clone()))
        {
            out.push(finding(
                "not-null-without-default",
                format!("SET NOT NULL on {table}.{col} with no validated CHECK before it: it scans the whole table under ACCESS EXCLUSIVE"),
                "first ADD CONSTRAINT ... CHECK (col IS NOT NULL) NOT VALID and VALIDATE CONSTRAINT (outside the same transaction); SET NOT NULL then skips the scan",
                place,
                st.offset,
            ));
        }
        if let Some((t, cols)) = &f.foreign_key {
            let fnd = finding(
                "foreign-key-without-index",
                format!(
                    "the foreign key on {}({}) has no index starting with its columns",
                    bare(t),
                    cols.join(", ")
                ),
                "create an index (CONCURRENTLY) on the referencing columns: deletes and updates of the referenced rows scan this table without one",
                place,
                st.offset,
            );
            state.foreign_keys.push((bare(t), cols.clone(), fnd));
        }
    }
    destructive
}

fn finish(state: SetState, out: &mut Vec<Finding>) {
    for (t, cols, f) in state.foreign_keys {
        let covered = state
            .indexes
            .iter()
            .any(|(it, ic)| *it == t && ic.len() >= cols.len() && ic[..cols.len()] == cols[..]);
        if !covered {
            out.push(f);
        }
    }
}

/// Runbook rules over a validated runbook.
pub fn check_runbook(doc: &Document, rb: &Runbook, file: &str, report: &mut Report) {
    let text = doc.source.text();
    let mut push = |rule: &str, pointer: &str, message: String, help: &str| {
        let off = doc.spans().key_or_value(pointer).map_or(0, |s| s.start);
        let place = super::Place {
            file,
            text,
            map: &|o| o,
        };
        report
            .findings
            .push(finding(rule, message, help, &place, off));
    };
    let secrets: Vec<&str> = rb
        .params
        .iter()
        .filter(|(_, p)| p.secret)
        .map(|(n, _)| n.as_str())
        .collect();
    let runbook_branch = !rb.on_failure.is_empty();
    // Backups taken so far, in document order: None covers everything.
    let mut backups: Vec<Option<Vec<String>>> = Vec::new();
    let mut state = SetState::default();
    let mut found = Vec::new();
    for (pi, phase) in rb.phases.iter().enumerate() {
        let pp = format!("/phases/{pi}");
        if phase.kind == PhaseKind::Contract && phase.approval.as_ref().is_none_or(|a| !a.required)
        {
            push(
                "contract-without-approval",
                &format!("{pp}/kind"),
                format!(
                    "phase `{}` contracts the schema without a person approving it",
                    phase.id
                ),
                "add `approval: {prompt: ...}`; runs then stop there until `--approve` or a typed yes",
            );
        }
        let phase_branch = matches!(&phase.on_failure, OnFailure::Steps(s) if !s.is_empty());
        // A runbook-wide default timeout covers every step.
        let changes = !matches!(phase.kind, PhaseKind::Preflight | PhaseKind::Verify)
            && rb.defaults.timeout.is_none();
        for (si, step) in phase.steps.iter().enumerate() {
            let sp = format!("{pp}/steps/{si}");
            step_rules(step, &sp, changes, &secrets, &mut push);
            match &step.kind {
                StepKind::Backup(b) => {
                    let mut names: Vec<String> = b.tables.iter().map(|t| bare(t)).collect();
                    names.extend(
                        b.schemas
                            .iter()
                            .map(|s| format!("{}.*", s.to_ascii_lowercase())),
                    );
                    let everything = names.is_empty()
                        && b.exclude_tables.is_empty()
                        && b.exclude_schemas.is_empty()
                        && !b.schema_only;
                    backups.push(if everything { None } else { Some(names) });
                }
                StepKind::Sql(sql) => {
                    let field = if doc
                        .value
                        .pointer(&format!("{sp}/sql"))
                        .is_some_and(|v| v.is_string())
                    {
                        format!("{sp}/sql")
                    } else {
                        format!("{sp}/sql/statements")
                    };
                    let start = doc.spans().value(&field).map_or(0, |s| s.start);
                    let map = |_o: usize| start;
                    let place = super::Place {
                        file,
                        text,
                        map: &map,
                    };
                    let destroyed = sql_rules(&sql.statements, &place, &mut state, &mut found);
                    for t in destroyed.iter().filter(|t| !state.new_tables.contains(*t)) {
                        let covered = backups.iter().any(|b| match b {
                            None => true,
                            Some(names) => names.iter().any(|n| {
                                n == t
                                    || (n.ends_with(".*")
                                        && (t.starts_with(&n[..n.len() - 1])
                                            || (n == "public.*" && !t.contains('.'))))
                            }),
                        });
                        if !covered {
                            push(
                                "destructive-without-backup",
                                &field,
                                format!(
                                    "step `{}` destroys data in {t}, and no earlier backup step covers it",
                                    step.id
                                ),
                                "add a `backup` step before it (its `tables:` or `schemas:` must include the table), so a restore is possible",
                            );
                        }
                    }
                    if !destroyed.is_empty()
                        && step.rollback.is_empty()
                        && !phase_branch
                        && !runbook_branch
                    {
                        push(
                            "destructive-without-rollback",
                            &format!("{sp}/id"),
                            format!(
                                "step `{}` destroys data and has no rollback, and neither its phase nor the runbook has an on_failure branch",
                                step.id
                            ),
                            "add a `rollback:` (for example a restore from the backup) or an `on_failure:` branch",
                        );
                    }
                    unquoted_templates(&sql.statements, &field, &step.id, rb, &mut push);
                }
                _ => {}
            }
        }
    }
    finish(state, &mut found);
    report.findings.extend(found);
}

fn step_rules(
    step: &Step,
    sp: &str,
    changes: bool,
    secrets: &[&str],
    push: &mut impl FnMut(&str, &str, String, &str),
) {
    let StepKind::Shell(sh) = &step.kind else {
        return;
    };
    if changes && step.timeout.is_none() {
        // (`changes` is false when `defaults.timeout` is set.)
        push(
            "missing-timeout",
            &format!("{sp}/shell"),
            format!(
                "shell step `{}` has no timeout in a phase that changes things",
                step.id
            ),
            "set `timeout:` on the step (or in `defaults:`); a hung command otherwise holds the release open",
        );
    }
    let parts: Vec<&str> = match &sh.command {
        Command::Script(s) => vec![s.as_str()],
        Command::Argv(a) => a.iter().map(String::as_str).collect(),
    };
    for part in parts {
        let leak = secrets
            .iter()
            .find(|s| part.contains(&format!("params.{s}")))
            .map(|s| format!("the secret param `{s}`"))
            .or_else(|| {
                ["DATABASE_URL", "PGPASSWORD"]
                    .iter()
                    .find(|v| {
                        part.contains(&format!("${v}")) || part.contains(&format!("${{{v}}}"))
                    })
                    .map(|v| format!("${v}"))
            });
        if let Some(what) = leak {
            push(
                "secret-in-command",
                &format!("{sp}/shell/command"),
                format!(
                    "shell step `{}` puts {what} on its command line, where `ps` and process listings show it",
                    step.id
                ),
                "pass it in `env:` and read it there: libpq tools take PGHOST/PGPASSWORD/... from the environment, which runbook sets for you",
            );
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

/// Runbook rules over a migration directory, fed file by file in version
/// order: missing downs, and the SQL rules over every up script as one set.
#[derive(Default)]
pub struct MigrationChecks {
    state: SetState,
    found: Vec<Finding>,
}

impl MigrationChecks {
    pub fn file(
        &mut self,
        m: &migrations::Migration,
        stmts: &[(Statement, Facts)],
        place: &super::Place<'_>,
        base: usize,
    ) {
        if let Down::Missing(why) = &m.down {
            let at_file = super::Place {
                file: place.file,
                text: place.text,
                map: &|o| o,
            };
            self.found.push(finding(
                "missing-down-migration",
                format!("migration {} ({}) has no down: {why}", m.version, m.name),
                "write the down that undoes it exactly; `runbook` can rehearse it (docs/rehearsal.md)",
                &at_file,
                base,
            ));
        }
        judge(stmts, place, &mut self.state, &mut self.found);
    }

    pub fn finish(mut self, report: &mut Report) {
        finish(self.state, &mut self.found);
        report.findings.extend(self.found);
    }
}
