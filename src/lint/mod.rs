//! `runbook lint`: squawk's rules over SQL, told what the runner knows.
//!
//! SQL comes from `.sql` files, migration directories (each up script) and
//! runbooks (`sql` steps, and the directories of `migrate` steps). Each
//! piece is linted by `squawk-linter` with its context:
//! - whether it runs inside a transaction (a `sql` step's `transaction`, a
//!   migration's mode as `migrate` decides it), so CONCURRENTLY inside a
//!   transaction is reported and outside one is not;
//! - whether the runner already sets `lock_timeout`/`statement_timeout`
//!   (it always does for runbook SQL), so squawk's timeout rules are
//!   suppressed there and `--explain` says why.
//!
//! squawk reports byte ranges; findings carry `file:line:column` of the
//! file the SQL came from: the `.sql` file, or the line inside the YAML
//! block of the step.

use std::path::{Path, PathBuf};

use serde::Serialize;
use squawk_linter::{Linter, Rule};
use squawk_syntax::SourceFile;

use crate::migrations;
use crate::model::{LintConfig, LintLevel};

pub mod runbook;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding, located in the file the SQL came from.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub rule: String,
    /// `squawk` or `runbook`.
    pub source: &'static str,
    pub severity: Severity,
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// The source line the finding starts on, for the caret display.
    #[serde(skip)]
    pub source_line: String,
}

/// What the runner knows about where a piece of SQL runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct SqlContext {
    pub in_transaction: bool,
    /// `lock_timeout` and `statement_timeout` are set by the runner.
    pub timeouts_set: bool,
}

/// Rule choices: what to add to squawk's defaults, what to remove, each
/// rule's level, and the PostgreSQL version the SQL targets.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub include: Vec<Rule>,
    pub exclude: Vec<Rule>,
    pub levels: std::collections::BTreeMap<String, LintLevel>,
    pub pg_version: Option<squawk_linter::Version>,
}

/// The file at the project root that configures lint for every input.
pub const CONFIG_FILE: &str = "runbook-lint.toml";

fn known_rule(name: &str) -> Result<(), String> {
    if runbook::RULES.iter().any(|(n, _, _)| *n == name) || name.parse::<Rule>().is_ok() {
        Ok(())
    } else {
        Err(format!(
            "unknown lint rule `{name}`{}",
            crate::diag::did_you_mean(
                name,
                runbook::RULES
                    .iter()
                    .map(|(n, _, _)| *n)
                    .chain(SQUAWK_RULE_NAMES.iter().copied())
            )
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default()
        ))
    }
}

/// squawk's rule names, for suggestions.
const SQUAWK_RULE_NAMES: &[&str] = &[
    "require-concurrent-index-creation",
    "require-concurrent-index-deletion",
    "constraint-missing-not-valid",
    "adding-field-with-default",
    "adding-foreign-key-constraint",
    "changing-column-type",
    "adding-not-nullable-field",
    "adding-serial-primary-key-field",
    "renaming-column",
    "renaming-table",
    "disallowed-unique-constraint",
    "ban-drop-database",
    "prefer-bigint-over-int",
    "prefer-bigint-over-smallint",
    "prefer-identity",
    "prefer-robust-stmts",
    "prefer-text-field",
    "prefer-timestamptz",
    "ban-char-field",
    "ban-drop-column",
    "ban-drop-table",
    "ban-drop-not-null",
    "transaction-nesting",
    "adding-required-field",
    "ban-concurrent-index-creation-in-transaction",
    "require-lock-timeout",
    "require-statement-timeout",
];

impl Config {
    /// Apply a `lint:` section (or a runbook-lint.toml) on top of this one.
    pub fn merge(&mut self, c: &LintConfig) -> Result<(), String> {
        for name in c
            .include
            .iter()
            .chain(&c.exclude)
            .chain(c.severities.keys())
        {
            known_rule(name)?;
        }
        for name in &c.include {
            if let Ok(r) = name.parse::<Rule>() {
                self.include.push(r);
            }
            self.levels.remove(name);
        }
        for name in &c.exclude {
            if let Ok(r) = name.parse::<Rule>() {
                self.exclude.push(r);
            }
            self.levels.insert(name.clone(), LintLevel::Off);
        }
        for (name, level) in &c.severities {
            self.levels.insert(name.clone(), *level);
        }
        if let Some(v) = &c.pg_version {
            self.pg_version = Some(
                v.parse()
                    .map_err(|e| format!("lint pg_version `{v}`: {e}"))?,
            );
        }
        Ok(())
    }

    /// Read a runbook-lint.toml (same keys as a runbook's `lint:` section).
    pub fn read_file(&mut self, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let c: LintConfig = toml::from_str(&text)
            .map_err(|e| format!("{}: {}", path.display(), e.to_string().trim_end()))?;
        self.merge(&c)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Levels: drop findings of rules turned off, set the others' severity.
    fn apply(&self, findings: &mut Vec<Finding>, from: usize) {
        let mut i = from;
        while i < findings.len() {
            match self.levels.get(&findings[i].rule) {
                Some(LintLevel::Off) => {
                    findings.remove(i);
                    continue;
                }
                Some(LintLevel::Warning) => findings[i].severity = Severity::Warning,
                Some(LintLevel::Error) => findings[i].severity = Severity::Error,
                None => {}
            }
            i += 1;
        }
    }
}

/// The nearest runbook-lint.toml in `dir` or a directory above it.
pub fn find_config(dir: &Path) -> Option<PathBuf> {
    let mut at = Some(dir);
    while let Some(d) = at {
        let candidate = d.join(CONFIG_FILE);
        if candidate.is_file() {
            return Some(candidate);
        }
        at = d.parent();
    }
    None
}

/// A context note for `--explain`: what the runner's knowledge changed.
#[derive(Debug, Clone, Serialize)]
pub struct Note {
    pub file: String,
    pub line: usize,
    pub note: String,
}

/// The result of linting some inputs.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub notes: Vec<Note>,
    pub files: usize,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }

    pub fn warnings(&self) -> usize {
        self.findings.len() - self.errors()
    }
}

/// Where a piece of SQL sits in its file: a byte offset of the SQL maps to
/// a byte offset of the file's text.
pub struct Place<'a> {
    pub file: &'a str,
    /// The file's text.
    pub text: &'a str,
    /// SQL offset to file offset: plus a base for SQL copied verbatim (a
    /// `.sql` file, a section of a migration file), through the YAML
    /// block's layout for a runbook step.
    pub map: &'a dyn Fn(usize) -> usize,
}

fn line_col(text: &str, offset: usize) -> (usize, usize, String) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[start..offset].chars().count() + 1;
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    (
        line,
        column,
        text[start..end].trim_end_matches('\r').to_string(),
    )
}

/// squawk's timeout rules: noise for SQL the runner wraps in timeouts
/// (squawk issue 678).
const TIMEOUT_RULES: &[Rule] = &[
    Rule::RequireLockTimeout,
    Rule::RequireStatementTimeout,
    Rule::RequireTimeoutSettings,
];

/// Lint one piece of SQL with squawk, in its context.
pub fn lint_sql(
    sql: &str,
    ctx: SqlContext,
    config: &Config,
    place: &Place<'_>,
    report: &mut Report,
) {
    lint_sql_in_set(sql, ctx, config, place, report, &mut Default::default());
}

/// [`lint_sql`] for one piece of a set: tables created by earlier pieces
/// are new (and this piece's creations are added for the next ones).
fn lint_sql_in_set(
    sql: &str,
    ctx: SqlContext,
    config: &Config,
    place: &Place<'_>,
    report: &mut Report,
    new: &mut std::collections::BTreeSet<String>,
) {
    let parse = SourceFile::parse(sql);
    let stmts = crate::statements::split_tree(sql, &parse.syntax_node());
    let found = squawk_findings(&parse, sql, ctx, config);
    let found = drop_for_new_tables(found, &stmts, new, place, report);
    place_findings(found, ctx, place, report);
    new.extend(created(&stmts));
}

/// squawk's raw findings: rule, byte range, message, help.
pub struct Raw {
    rule: Rule,
    start: usize,
    end: usize,
    message: String,
    help: Option<String>,
}

fn squawk_findings(
    parse: &squawk_syntax::Parse<SourceFile>,
    sql: &str,
    ctx: SqlContext,
    config: &Config,
) -> Vec<Raw> {
    let mut linter = Linter::with_rules(&config.include, &config.exclude);
    linter.settings.assume_in_transaction = ctx.in_transaction;
    if let Some(v) = config.pg_version {
        linter.settings.pg_version = v;
    }
    linter
        .lint(parse, sql)
        .into_iter()
        .map(|v| Raw {
            rule: v.code,
            start: usize::from(v.text_range.start()),
            end: usize::from(v.text_range.end()),
            message: v.message,
            help: v.help,
        })
        .collect()
}

/// squawk rules about tables that already hold rows: moot for a table
/// created earlier in the same runbook or migration set, which is empty.
const EXISTING_TABLE_RULES: &[Rule] = &[
    Rule::RequireConcurrentIndexCreation,
    Rule::RequireConcurrentIndexDeletion,
    Rule::ConstraintMissingNotValid,
    Rule::AddingForeignKeyConstraint,
    Rule::AddingFieldWithDefault,
    Rule::AddingNotNullableField,
    Rule::AddingRequiredField,
    Rule::AddingSerialPrimaryKeyField,
    Rule::ChangingColumnType,
    Rule::DisallowedUniqueConstraint,
];

/// Drop findings of [`EXISTING_TABLE_RULES`] on tables in `new`, with a note.
fn drop_for_new_tables(
    raw: Vec<Raw>,
    stmts: &[crate::statements::Statement],
    new: &std::collections::BTreeSet<String>,
    place: &Place<'_>,
    report: &mut Report,
) -> Vec<Raw> {
    if new.is_empty() {
        return raw;
    }
    let mut kept = Vec::new();
    for r in raw {
        let table = stmts
            .iter()
            .rev()
            .find(|s| s.offset <= r.start)
            .and_then(|s| s.relations.first())
            .map(|t| runbook::bare(t));
        match table {
            Some(t) if EXISTING_TABLE_RULES.contains(&r.rule) && new.contains(&t) => {
                let (line, _, _) = line_col(place.text, (place.map)(r.start));
                report.notes.push(Note {
                    file: place.file.to_string(),
                    line,
                    note: format!(
                        "{} not reported: {t} is created earlier in this set, so it is empty",
                        r.rule
                    ),
                });
            }
            _ => kept.push(r),
        }
    }
    kept
}

/// Tables a script creates.
fn created(stmts: &[crate::statements::Statement]) -> impl Iterator<Item = String> + '_ {
    stmts
        .iter()
        .filter(|s| s.kind == "CREATE TABLE")
        .filter_map(|s| s.relations.first().map(|t| runbook::bare(t)))
}

/// Locate raw findings in their file; silence the timeout rules where the
/// runner sets timeouts, and say so.
fn place_findings(found: Vec<Raw>, ctx: SqlContext, place: &Place<'_>, report: &mut Report) {
    let mut silenced = Vec::new();
    for v in found {
        if ctx.timeouts_set && TIMEOUT_RULES.contains(&v.rule) {
            silenced.push(v.rule.to_string());
            continue;
        }
        let (start, end) = (v.start, v.end);
        let (line, column, source_line) = line_col(place.text, (place.map)(start));
        let (end_line, end_column, _) =
            line_col(place.text, (place.map)(end.saturating_sub(1)) + 1);
        let rule = v.rule.to_string();
        report.findings.push(Finding {
            severity: Severity::Error,
            rule,
            source: "squawk",
            file: place.file.to_string(),
            line,
            column,
            end_line,
            end_column,
            message: v.message,
            help: v.help,
            source_line,
        });
    }
    if !silenced.is_empty() {
        let (line, _, _) = line_col(place.text, (place.map)(0));
        report.notes.push(Note {
            file: place.file.to_string(),
            line,
            note: format!(
                "{} not reported: runbook sets lock_timeout and statement_timeout for this SQL",
                silenced.join(", ")
            ),
        });
    }
}

/// Lint a `.sql` file on its own: no transaction is assumed around it.
pub fn lint_sql_file(path: &Path, config: &Config, report: &mut Report) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file = path.display().to_string();
    lint_sql(
        &text,
        SqlContext::default(),
        config,
        &Place {
            file: &file,
            text: &text,
            map: &|o| o,
        },
        report,
    );
    report.files += 1;
    Ok(())
}

/// Lint every up script of a migration directory, each in the transaction
/// mode `migrate` would run it in.
pub fn lint_migrations(
    dir: &Path,
    ctx_timeouts: bool,
    config: &Config,
    report: &mut Report,
) -> Result<(), String> {
    let set = migrations::load(dir, None)?;
    // Reading, parsing and squawk's rules are per file: done on every core.
    // The runbook rules need the files in order (tables created earlier,
    // indexes added later), so they run after, over plain facts.
    struct Done {
        text: String,
        base: usize,
        in_transaction: bool,
        raw: Vec<Raw>,
        facts: Vec<(crate::statements::Statement, runbook::Facts)>,
    }
    let has_sections = matches!(
        set.format,
        migrations::Format::Dbmate | migrations::Format::SqlMigrate | migrations::Format::Goose
    );
    let work = |m: &migrations::Migration| -> Result<Done, String> {
        // A whole-file script is its file; a section needs the file around it.
        let text = if m.up.first_line == 1 && !has_sections {
            m.up.sql.clone()
        } else {
            let path = dir.join(&m.up.file);
            std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        };
        let parse = SourceFile::parse(&m.up.sql);
        let facts = runbook::statement_facts(&m.up.sql, &parse.tree());
        let stmts: Vec<crate::statements::Statement> =
            facts.iter().map(|(s, _)| s.clone()).collect();
        let (in_transaction, _) = crate::migrations::script_mode(&m.up, &stmts);
        let ctx = SqlContext {
            in_transaction,
            timeouts_set: ctx_timeouts,
        };
        // The script's first byte in its file: the line where it starts.
        let base: usize = text
            .split_inclusive('\n')
            .take(m.up.first_line.saturating_sub(1))
            .map(str::len)
            .sum();
        Ok(Done {
            raw: squawk_findings(&parse, &m.up.sql, ctx, config),
            text,
            base,
            in_transaction,
            facts,
        })
    };
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = set.migrations.len().div_ceil(workers).max(1);
    let done: Vec<Result<Done, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = set
            .migrations
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(work).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a lint worker panicked"))
            .collect()
    });
    let mut checks = runbook::MigrationChecks::default();
    let mut new = std::collections::BTreeSet::new();
    for (m, d) in set.migrations.iter().zip(done) {
        let d = d?;
        let file = dir.join(&m.up.file).display().to_string();
        let map = |o: usize| d.base + o;
        let place = Place {
            file: &file,
            text: &d.text,
            map: &map,
        };
        let ctx = SqlContext {
            in_transaction: d.in_transaction,
            timeouts_set: ctx_timeouts,
        };
        checks.file(m, &d.facts, &place, d.base);
        let stmts: Vec<crate::statements::Statement> =
            d.facts.iter().map(|(s, _)| s.clone()).collect();
        let raw = drop_for_new_tables(d.raw, &stmts, &new, &place, report);
        place_findings(raw, ctx, &place, report);
        new.extend(created(&stmts));
        report.files += 1;
    }
    checks.finish(report);
    Ok(())
}

/// Lint a runbook: its `sql` steps, each in the transaction mode it runs in
/// and with the timeouts runbook always sets, runbook's own rules, and the
/// directories of its `migrate` steps. Templated SQL is linted as it
/// renders with the params' defaults; SQL that needs run-time values is
/// noted and left to `exec`.
pub fn lint_runbook(path: &Path, config: &Config, report: &mut Report) -> Result<(), String> {
    use crate::validate::{Inputs, ParamCheck};
    let inputs = &Inputs::default();
    // Without a value for every param nothing renders: static SQL only.
    match crate::validate::validate_file(path, inputs, ParamCheck::RequireAll) {
        Ok(v) => {
            let plan = crate::plan::build(&v, &crate::plan::RunInfo::default())
                .map_err(|e| e.render(false));
            lint_validated(
                path,
                &v,
                plan.as_ref().map_err(String::as_str),
                config,
                report,
            )
        }
        Err(_) => {
            let v = crate::validate::validate_file(path, inputs, ParamCheck::GivenOnly)
                .map_err(|e| e.render(false))?;
            let why = "a param has no value or default";
            lint_validated(path, &v, Err(why), config, report)
        }
    }
}

/// Lint a runbook already validated (and planned, when every param has a
/// value): what `exec` and `plan` call with what they built.
pub fn lint_validated(
    path: &Path,
    v: &crate::validate::Validated,
    plan: Result<&crate::plan::Plan, &str>,
    config: &Config,
    report: &mut Report,
) -> Result<(), String> {
    use crate::model::StepKind;
    let doc = &v.doc;
    let file = path.display().to_string();
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut own = config.clone();
    own.merge(&v.runbook.lint)
        .map_err(|e| format!("{file}: lint: {e}"))?;
    let config = &own;
    let from = report.findings.len();
    report.files += 1;
    runbook::check_runbook(doc, &v.runbook, &file, report);
    let mut new = std::collections::BTreeSet::new();
    // A directory that several migrate steps name is linted once.
    let mut dirs = std::collections::BTreeSet::new();
    for (pointer, step) in v.runbook.all_steps() {
        match &step.kind {
            StepKind::Sql(sql) => {
                let text = &sql.statements;
                let field = if doc
                    .value
                    .pointer(&format!("{pointer}/sql"))
                    .is_some_and(|x| x.is_string())
                {
                    format!("{pointer}/sql")
                } else {
                    format!("{pointer}/sql/statements")
                };
                let rendered;
                let (text, templated): (&str, bool) = if text.contains("{{") || text.contains("{%")
                {
                    match rendered_sql(plan, &step.id) {
                        Ok(t) => {
                            rendered = t;
                            (rendered.as_str(), true)
                        }
                        Err(why) => {
                            let at = doc.spans().value(&field).map_or(0, |s| s.start);
                            report.notes.push(Note {
                                file: file.clone(),
                                line: doc.source.line_col(at).0,
                                note: format!("step `{}`: not linted: {why}", step.id),
                            });
                            continue;
                        }
                    }
                } else {
                    (text.as_str(), false)
                };
                let stmts = crate::statements::split(text);
                let in_transaction = crate::statements::mode(&stmts, sql.transaction)
                    == crate::statements::Mode::Transaction;
                let start = doc.spans().value(&field).map_or(0, |s| s.start);
                let map = |o: usize| {
                    if templated {
                        // Rendered text keeps the template's lines: the
                        // same line of the block, the column as rendered.
                        let (line0, col0) = doc.source.line_col(start);
                        let before = &text[..o.min(text.len())];
                        let line = before.matches('\n').count();
                        let col = before[before.rfind('\n').map_or(0, |i| i + 1)..]
                            .chars()
                            .count();
                        doc.source.offset(line0 + line, col0 + col).unwrap_or(start)
                    } else {
                        doc.locate(&field, text, o..o + 1)
                            .map_or(start, |s| s.start)
                    }
                };
                lint_sql_in_set(
                    text,
                    SqlContext {
                        in_transaction,
                        timeouts_set: true,
                    },
                    config,
                    &Place {
                        file: &file,
                        text: doc.source.text(),
                        map: &map,
                    },
                    report,
                    &mut new,
                );
            }
            StepKind::Migrate(m) if !m.dir.contains("{{") && dirs.insert(m.dir.clone()) => {
                lint_migrations(&base_dir.join(&m.dir), true, config, report)?;
            }
            _ => {}
        }
    }
    config.apply(&mut report.findings, from);
    Ok(())
}

/// The SQL of step `id` as the plan renders it, when nothing in it waits
/// for the run (an earlier step's output, the run id).
fn rendered_sql(plan: Result<&crate::plan::Plan, &str>, id: &str) -> Result<String, String> {
    fn find<'p>(steps: &'p [crate::plan::PlanStep], id: &str) -> Option<&'p crate::plan::PlanStep> {
        steps
            .iter()
            .find_map(|s| (s.id == id).then_some(s).or_else(|| find(&s.rollback, id)))
    }
    let plan = plan.map_err(|e| {
        format!(
            "its templates cannot be rendered ({})",
            e.lines().next().unwrap_or_default()
        )
    })?;
    let step = plan
        .phases
        .iter()
        .find_map(|p| find(&p.steps, id))
        .or_else(|| find(&plan.on_failure, id))
        .or_else(|| find(&plan.finally_steps, id))
        .ok_or_else(|| "not in the plan".to_string())?;
    match &step.action {
        crate::plan::Action::Sql { statements, .. } if statements.after.is_empty() => {
            Ok(statements.raw.expose().clone())
        }
        crate::plan::Action::Sql { statements, .. } => Err(format!(
            "its SQL uses {}, known only when it runs",
            statements.after.join(", ")
        )),
        _ => Err("not a sql step".into()),
    }
}

/// Lint each path: a runbook (`.yml`/`.yaml`), a `.sql` file, or a
/// migration directory. An unreadable input is an `Err`.
pub fn lint_paths(paths: &[PathBuf], config: &Config) -> Result<Report, String> {
    let mut report = Report::default();
    let mut from = 0;
    for p in paths {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
        if p.is_dir() {
            lint_migrations(p, false, config, &mut report)?;
        } else if ext == "yml" || ext == "yaml" {
            lint_runbook(p, config, &mut report)?;
            // lint_runbook applied the runbook's own levels.
            from = report.findings.len();
            continue;
        } else if ext == "sql" {
            lint_sql_file(p, config, &mut report)?;
        } else if !p.exists() {
            return Err(format!("{} does not exist", p.display()));
        } else {
            return Err(format!(
                "{}: expected a runbook (.yml), a .sql file or a migration directory",
                p.display()
            ));
        }
        config.apply(&mut report.findings, from);
        from = report.findings.len();
    }
    report.findings.sort_by(|a, b| {
        (a.file.as_str(), a.line, a.column).cmp(&(b.file.as_str(), b.line, b.column))
    });
    Ok(report)
}

/// SARIF 2.1.0, for GitHub code scanning and other SARIF readers.
pub fn render_sarif(report: &Report) -> String {
    use serde_json::json;
    let mut rules: Vec<&str> = report.findings.iter().map(|f| f.rule.as_str()).collect();
    rules.sort_unstable();
    rules.dedup();
    let describe = |rule: &str| -> String {
        runbook::RULES
            .iter()
            .find(|(n, _, _)| *n == rule)
            .map_or_else(|| format!("squawk rule {rule}"), |(_, _, d)| d.to_string())
    };
    let results: Vec<serde_json::Value> = report
        .findings
        .iter()
        .map(|f| {
            json!({
                "ruleId": f.rule,
                "level": match f.severity { Severity::Error => "error", Severity::Warning => "warning" },
                "message": { "text": match &f.help {
                    Some(h) => format!("{} ({h})", f.message),
                    None => f.message.clone(),
                } },
                "locations": [{ "physicalLocation": {
                    "artifactLocation": { "uri": f.file.trim_start_matches("./") },
                    "region": {
                        "startLine": f.line, "startColumn": f.column,
                        "endLine": f.end_line, "endColumn": f.end_column,
                    },
                } }],
            })
        })
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "runbook lint",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules.iter().map(|r| json!({
                    "id": r,
                    "shortDescription": { "text": describe(r) },
                    "helpUri": if runbook::RULES.iter().any(|(n, _, _)| n == r) {
                        format!("docs/lint/{r}.md")
                    } else {
                        format!("https://squawkhq.com/docs/{r}")
                    },
                })).collect::<Vec<_>>(),
            } },
            "results": results,
        }],
    });
    let mut s = serde_json::to_string_pretty(&doc).expect("SARIF serializes");
    s.push('\n');
    s
}

/// GitHub Actions workflow commands: one annotation per finding.
pub fn render_github(report: &Report) -> String {
    // Workflow command escaping: data escapes %, CR, LF; properties also , and :.
    let data = |s: &str| {
        s.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    };
    let prop = |s: &str| data(s).replace(':', "%3A").replace(',', "%2C");
    let mut o = String::new();
    for f in &report.findings {
        let level = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        o.push_str(&format!(
            "::{level} file={},line={},col={},endLine={},endColumn={},title={}::{}\n",
            prop(&f.file),
            f.line,
            f.column,
            f.end_line,
            f.end_column,
            prop(&f.rule),
            data(&match &f.help {
                Some(h) => format!("{} ({h})", f.message),
                None => f.message.clone(),
            })
        ));
    }
    o
}

/// The project's configuration for a runbook: the nearest
/// runbook-lint.toml from the runbook's directory up.
pub fn config_for(runbook: &Path) -> Result<Config, String> {
    let mut c = Config::default();
    let dir = std::path::absolute(runbook.parent().unwrap_or(Path::new(".")))
        .unwrap_or_else(|_| PathBuf::from("."));
    if let Some(f) = find_config(&dir) {
        c.read_file(&f)?;
    }
    Ok(c)
}

/// The lint as it goes into report.json.
pub fn to_report_json(report: &Report, mode: &str) -> serde_json::Value {
    serde_json::json!({
        "mode": mode,
        "errors": report.errors(),
        "warnings": report.warnings(),
        "findings": report.findings,
    })
}

/// A short listing, a line per finding, for `plan`.
pub fn render_short(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut o = format!(
        "\nlint: {} error(s), {} warning(s)\n",
        report.errors(),
        report.warnings()
    );
    for f in &report.findings {
        let sev = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(
            o,
            "  {}:{}:{} {sev}[{}] {}",
            f.file, f.line, f.column, f.rule, f.message
        );
    }
    o
}

/// Text output: each finding with its source line and a caret, like a compiler.
pub fn render_text(report: &Report, explain: bool) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    for f in &report.findings {
        let sev = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(o, "{sev}[{}]: {}", f.rule, f.message);
        let _ = writeln!(o, "  --> {}:{}:{}", f.file, f.line, f.column);
        let gutter = f.line.to_string().len();
        let _ = writeln!(o, "{:gutter$} |", "");
        let _ = writeln!(o, "{} | {}", f.line, f.source_line);
        let width = if f.end_line == f.line {
            f.end_column.saturating_sub(f.column).max(1)
        } else {
            f.source_line
                .chars()
                .count()
                .saturating_sub(f.column - 1)
                .max(1)
        };
        let _ = writeln!(
            o,
            "{:gutter$} | {}{}",
            "",
            " ".repeat(f.column - 1),
            "^".repeat(width)
        );
        if let Some(h) = &f.help {
            let _ = writeln!(o, "{:gutter$} = help: {h}", "");
        }
        o.push('\n');
    }
    if explain {
        for n in &report.notes {
            let _ = writeln!(o, "note: {}:{}: {}", n.file, n.line, n.note);
        }
    }
    let _ = writeln!(
        o,
        "{} file(s) linted: {} error(s), {} warning(s)",
        report.files,
        report.errors(),
        report.warnings()
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lint(sql: &str, ctx: SqlContext, config: &Config) -> Report {
        let mut r = Report::default();
        lint_sql(
            sql,
            ctx,
            config,
            &Place {
                file: "m.sql",
                text: sql,
                map: &|o| o,
            },
            &mut r,
        );
        r
    }

    fn rules(r: &Report) -> Vec<&str> {
        r.findings.iter().map(|f| f.rule.as_str()).collect()
    }

    #[test]
    fn findings_are_located_by_line_and_column() {
        let sql = "-- add an index\nCREATE INDEX orders_customer ON orders (customer_id);\n";
        let r = lint(sql, RUNNER, &Config::default());
        assert_eq!(rules(&r), ["require-concurrent-index-creation"]);
        let f = &r.findings[0];
        assert_eq!((f.line, f.column), (2, 1));
        assert_eq!(
            f.source_line,
            "CREATE INDEX orders_customer ON orders (customer_id);"
        );
        let text = render_text(&r, false);
        assert!(text.contains("  --> m.sql:2:1\n"), "{text}");
        assert!(text.contains("2 | CREATE INDEX"), "{text}");
    }

    /// Timeouts set, in a transaction: SQL as a runbook step runs it.
    const RUNNER: SqlContext = SqlContext {
        in_transaction: true,
        timeouts_set: true,
    };

    #[test]
    fn the_transaction_context_changes_concurrently_findings() {
        let sql = "CREATE TABLE IF NOT EXISTS t (a bigint);\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);\n";
        let inside = lint(sql, RUNNER, &Config::default());
        assert_eq!(
            rules(&inside),
            ["ban-concurrent-index-creation-in-transaction"]
        );
        let outside = lint(
            sql,
            SqlContext {
                in_transaction: false,
                timeouts_set: true,
            },
            &Config::default(),
        );
        assert!(rules(&outside).is_empty(), "{:?}", rules(&outside));
    }

    #[test]
    fn timeouts_set_by_the_runner_silence_the_timeout_rules_and_say_so() {
        let sql = "ALTER TABLE t ADD COLUMN c int;\n";
        let config = Config::default();
        let alone = lint(sql, SqlContext::default(), &config);
        assert!(
            rules(&alone).contains(&"require-lock-timeout"),
            "{:?}",
            rules(&alone)
        );
        assert!(rules(&alone).contains(&"require-statement-timeout"));
        let run = lint(sql, RUNNER, &config);
        assert!(
            !rules(&run).iter().any(|r| r.contains("timeout")),
            "{:?}",
            rules(&run)
        );
        assert_eq!(run.notes.len(), 1);
        assert!(
            run.notes[0]
                .note
                .starts_with("require-lock-timeout, require-statement-timeout not reported")
        );
    }

    #[test]
    fn squawk_ignore_comments_are_honoured() {
        let sql = "-- squawk-ignore require-concurrent-index-creation\nCREATE INDEX IF NOT EXISTS i ON t (a);\n";
        let r = lint(sql, RUNNER, &Config::default());
        assert!(r.findings.is_empty(), "{:?}", rules(&r));
        let sql = "CREATE INDEX IF NOT EXISTS i ON t (a);\n";
        assert_eq!(
            rules(&lint(sql, RUNNER, &Config::default())),
            ["require-concurrent-index-creation"]
        );
    }
}
