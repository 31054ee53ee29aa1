//! `runbook lint`: squawk's rules over SQL, told what the runner knows.
//!
//! SQL comes from `.sql` files, migration directories (each up script) and
//! runbooks (`sql` steps, and the directories of `migrate` steps). Each
//! piece is read once ([`sql::Script`]: parsed, its statements' facts, what
//! squawk found) and then judged in order with its context:
//! - whether it runs inside a transaction (a `sql` step's `transaction`, a
//!   migration's mode as `migrate` decides it), so CONCURRENTLY inside a
//!   transaction is reported and outside one is not;
//! - whether the runner already sets `lock_timeout`/`statement_timeout`
//!   (it always does for runbook SQL), so squawk's timeout rules are
//!   suppressed there and `--explain` says why;
//! - tables created earlier in the same runbook or migration file, which
//!   are empty;
//! - for runbooks, where a destructive statement sits ([`context`]).
//!
//! squawk reports byte ranges; findings carry `file:line:column` of the
//! file the SQL came from: the `.sql` file, or the line inside the YAML
//! block of the step. SQL that does not parse is a `syntax-error` finding.
//!
//! Files: [`config`] (which rules, how loud), [`facts`] (what a statement
//! does), [`sql`] (squawk's pass), [`steps`] (a runbook's steps as lint
//! sees them), [`context`] (destructive statements in context),
//! [`runbook`] (runbook's own rules), [`output`] (text, JSON, SARIF,
//! GitHub).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::migrations;
use crate::source::Source;

pub mod config;
mod context;
mod facts;
pub mod output;
mod psql;
pub mod rules;
mod sql;
pub use sql::{NO_ARGUMENTS, NON_VOLATILE_CALLS};
mod steps;

pub use config::{CONFIG_FILE, Config, config_for, find_config};
pub use output::{render_github, render_sarif, render_short, render_text, to_report_json};

/// The rule name of a parse error, as squawk names it.
pub const SYNTAX_ERROR: &str = "syntax-error";

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
    /// SQL steps and migration directories left out (their notes say
    /// why): a summary of no errors must not read as all of it checked.
    pub not_linted: usize,
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
/// a byte offset of the file's text, which `source` turns into a line and
/// column by binary search (so locating n findings costs n log n).
pub struct Place<'a> {
    pub file: &'a str,
    pub source: &'a Source,
    /// SQL offset to file offset: plus a base for SQL copied verbatim (a
    /// `.sql` file, a section of a migration file), through the YAML
    /// block's layout for a runbook step.
    pub map: &'a dyn Fn(usize) -> usize,
}

impl Place<'_> {
    /// Line, column and the line's text of SQL offset `o`.
    fn line_col(&self, o: usize) -> (usize, usize, String) {
        let at = (self.map)(o);
        let (line, column) = self.source.line_col(at);
        let span = self.source.line_span(at);
        let text = self.source.text()[span].trim_end_matches('\r').to_string();
        (line, column, text)
    }

    /// Line and column just past the last byte of a range ending at `end`.
    fn line_col_end(&self, end: usize) -> (usize, usize, String) {
        let at = (self.map)(end.saturating_sub(1)) + 1;
        let (line, column) = self.source.line_col(at);
        (line, column, String::new())
    }
}

/// Lint one piece of SQL with squawk, in its context (no set around it).
pub fn lint_sql(
    sql: &str,
    ctx: SqlContext,
    config: &Config,
    place: &Place<'_>,
    report: &mut Report,
) {
    let script = sql::Script::read(sql, ctx, config);
    sql::report(
        &script,
        ctx,
        &BTreeSet::new(),
        &|_, _| sql::Verdict::Keep,
        place,
        report,
    );
}

/// Lint a `.sql` file on its own: no transaction is assumed around it.
pub fn lint_sql_file(path: &Path, config: &Config, report: &mut Report) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file = path.display().to_string();
    let source = Source::new(file.clone(), text);
    lint_sql(
        source.text(),
        SqlContext::default(),
        config,
        &Place {
            file: &file,
            source: &source,
            map: &|o| o,
        },
        report,
    );
    report.files += 1;
    Ok(())
}

/// Lint every up script of a migration directory, each in the transaction
/// mode `migrate` would run it in. A history's quirks (a version used
/// twice, a down with no up) are `migration-layout` warnings, and the rest
/// is linted.
pub fn lint_migrations(
    dir: &Path,
    ctx_timeouts: bool,
    config: &Config,
    report: &mut Report,
) -> Result<(), String> {
    lint_directory(dir, ctx_timeouts, None, config, report)
}

/// [`lint_migrations`] for a run that runs only part of the directory
/// (`scope`): the migrations applied on the target already, and those
/// after the step's `to` or `steps`, are not linted, since this run does
/// not run them. The tables that the migrations it runs create are new
/// (empty) for the files after them, since this run creates them.
fn lint_directory(
    dir: &Path,
    ctx_timeouts: bool,
    scope: Option<&Scope>,
    config: &Config,
    report: &mut Report,
) -> Result<(), String> {
    let set = migrations::load_tolerant(dir).map_err(|e| e.to_string())?;
    // Reading, parsing and squawk's rules are per file: done on every core.
    // The runbook rules need the files in order (indexes added later), so
    // they run after, over plain facts.
    struct Done {
        source: Source,
        base: usize,
        ctx: SqlContext,
        script: sql::Script,
    }
    let has_sections = matches!(
        set.format,
        migrations::Format::Dbmate
            | migrations::Format::SqlMigrate
            | migrations::Format::Goose
            | migrations::Format::Tern
            | migrations::Format::NodePgMigrate
    );
    let work = |m: &migrations::Migration| -> Result<Done, String> {
        let path = set.dir.join(&m.up.file);
        // A whole-file script is its file; a section needs the file around it.
        let text = if m.up.first_line == 1 && !has_sections {
            m.up.sql.clone()
        } else {
            std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        };
        // Flyway's placeholders stand in as `_`s, so the script parses.
        let sql = match set.format {
            migrations::Format::Flyway => {
                migrations::flyway_stand_ins(&m.up.sql, set.flyway_conf.as_ref())
            }
            _ => m.up.sql.as_str().into(),
        };
        let (script, ctx) = sql::Script::read_in(&sql, config, |stmts| {
            let stmts: Vec<crate::pg::statements::Statement> =
                stmts.iter().map(|(s, _)| s.clone()).collect();
            SqlContext {
                in_transaction: crate::migrations::script_mode(&m.up, &stmts).0,
                timeouts_set: ctx_timeouts,
            }
        });
        let source = Source::new(path.display().to_string(), text);
        // The script's first byte in its file: the line where it starts.
        let base = source.offset(m.up.first_line, 1).unwrap_or(0);
        Ok(Done {
            script,
            source,
            base,
            ctx,
        })
    };
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    // Flyway's repeatable migrations run after the versioned ones.
    let all: Vec<&crate::migrations::Migration> =
        set.migrations.iter().chain(&set.repeatables).collect();
    let chunk = all.len().div_ceil(workers).max(1);
    let done: Vec<Result<Done, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = all
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|m| work(m)).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a lint worker panicked"))
            .collect()
    });
    rules::layout_warnings(&set, report);
    rules::tool_transaction(&set, report);
    rules::byte_order_mark(&set, report);
    let mut checks = rules::MigrationChecks::default();
    // Tables created by earlier files count as empty only before
    // `assume_empty_before` (a history applied at once to an empty database).
    let mut carried: BTreeSet<String> = BTreeSet::new();
    // Files that will not run again: read for what they make, not reported.
    let mut applied: BTreeSet<String> = BTreeSet::new();
    let (first, first_note) = (report.findings.len(), report.notes.len());
    let mut last_applied = String::new();
    let mut on_target = 0;
    // Pending migrations this run runs, and the files it does not reach.
    let mut runs = 0;
    let mut beyond: BTreeSet<String> = BTreeSet::new();
    for (m, d) in all.iter().zip(done) {
        let d = d?;
        let file = d.source.name().to_string();
        let map = |o: usize| d.base + o;
        let place = Place {
            file: &file,
            source: &d.source,
            map: &map,
        };
        // On the target: applied there already, or run by this run.
        let there = scope
            .and_then(|s| s.applied.as_ref())
            .filter(|_| !m.version.is_empty())
            .map(|a| a.contains(&m.version));
        let after_to = scope.is_some_and(|s| {
            !m.version.is_empty()
                && (s
                    .to
                    .as_deref()
                    .is_some_and(|t| set.cmp(&m.version, t).is_gt())
                    || there == Some(false) && s.steps.is_some_and(|n| runs >= n))
        });
        if there == Some(false) && !after_to {
            runs += 1;
        }
        if after_to {
            beyond.insert(file);
            continue;
        }
        let early = there == Some(false)
            || !m.version.is_empty()
                && config
                    .assume_empty_before
                    .as_deref()
                    .is_some_and(|v| set.cmp(&m.version, v).is_lt());
        let none = BTreeSet::new();
        let new = if early { &carried } else { &none };
        checks.file(m, &d.script, &place, new);
        sql::report(
            &d.script,
            d.ctx,
            new,
            &|_, _| sql::Verdict::Keep,
            &place,
            report,
        );
        if early {
            carried.extend(d.script.created_tables().map(str::to_string));
        }
        let everywhere = !m.version.is_empty()
            && config
                .applied_through
                .as_deref()
                .is_some_and(|v| set.cmp(&m.version, v).is_le());
        if there == Some(true) {
            on_target += 1;
        }
        if everywhere || there == Some(true) {
            last_applied.clone_from(&file);
            applied.insert(file);
        } else {
            report.files += 1;
        }
    }
    checks.finish(report);
    if !applied.is_empty() || !beyond.is_empty() {
        let gone = |file: &String| applied.contains(file) || beyond.contains(file);
        let mut i = 0;
        report.findings.retain(|f| {
            i += 1;
            i <= first || !gone(&f.file)
        });
        let mut i = 0;
        report.notes.retain(|n| {
            i += 1;
            i <= first_note || !gone(&n.file)
        });
    }
    if let Some(first_beyond) = beyond.first() {
        let s = scope.expect("only a scope leaves files out");
        let limit = match (&s.to, s.steps) {
            (Some(to), Some(n)) => format!("`to: {to}` and `steps: {n}`"),
            (Some(to), None) => format!("`to: {to}`"),
            (None, Some(n)) => format!("`steps: {n}`"),
            (None, None) => String::new(),
        };
        report.notes.push(Note {
            file: first_beyond.clone(),
            line: 1,
            note: format!(
                "{} migration(s) are past the step's {limit}: this run does not run them, so they are not linted",
                beyond.len()
            ),
        });
        report.not_linted += beyond.len();
    }
    if !applied.is_empty() {
        let note = match config.applied_through.as_deref() {
            Some(through) if on_target < applied.len() => format!(
                "{} migration(s) through {through} are applied everywhere already \
                 (`applied_through`){}: they will not run again, so they are not linted",
                applied.len(),
                if on_target > 0 {
                    format!(", {on_target} of them on this database by its history")
                } else {
                    String::new()
                }
            ),
            _ => format!(
                "{} migration(s) are applied on this database already, by its history: \
                 this run does not run them again, so they are not linted",
                applied.len()
            ),
        };
        report.notes.push(Note {
            file: last_applied,
            line: 1,
            note,
        });
        report.not_linted += applied.len();
    }
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
                Params::Defaults,
                config,
                report,
            )
        }
        Err(_) => {
            let v = crate::validate::validate_file(path, inputs, ParamCheck::GivenOnly)
                .map_err(|e| e.render(false))?;
            let why = "a param has no value or default";
            lint_validated(path, &v, Err(why), Params::Defaults, config, report)
        }
    }
}

/// What `exec` lints before it runs and `plan` shows: the plan just built,
/// with the configuration beside the file. None when `settings.lint: off`.
pub fn lint_plan(
    path: &Path,
    v: &crate::validate::Validated,
    plan: &crate::plan::Plan,
    scopes: &Scopes,
) -> Option<Result<Report, String>> {
    if plan.settings.lint == Some(crate::model::LintMode::Off) {
        return None;
    }
    let mut report = Report::default();
    let linted = config_for(path)
        .and_then(|c| lint_validated(path, v, Ok(plan), Params::Run(scopes), &c, &mut report));
    Some(linted.map(|()| report))
}

/// report.json's `lint` section for a plan's findings: with the mode the
/// runbook set (`error` or `warn`).
pub fn plan_report_json(report: &Report, plan: &crate::plan::Plan) -> serde_json::Value {
    let mode = match plan.settings.lint {
        Some(crate::model::LintMode::Error) => "error",
        _ => "warn",
    };
    to_report_json(report, mode)
}

/// Whose params a runbook is linted with.
#[derive(Debug, Clone, Copy)]
pub enum Params<'a> {
    /// The params' defaults (`runbook lint`): every step is linted, as any
    /// run may take it.
    Defaults,
    /// A run's (`exec`, `plan`): a step that will not run with them (a
    /// `when` false) is not linted, and a note says so. With what the
    /// target database's history holds (`exec`), a migration applied there
    /// already is not linted either, since the run does not run it again.
    Run(&'a Scopes),
}

/// What a run runs of a migration directory that an up `migrate` step
/// names: the migrations through `to`, at most `steps` of those not
/// applied; and, once `exec` has read the target's history, which are
/// applied there already.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// The step's format and history, to read the history with.
    pub format: String,
    pub history_format: String,
    pub history_table: Option<String>,
    /// The newest version the step applies; None: all.
    pub to: Option<String>,
    /// How many the step applies at most; None: all.
    pub steps: Option<usize>,
    /// The versions the target's history records as applied and finished;
    /// None when not read (`plan`, or a history that could not be read):
    /// then every migration through `to` is linted.
    pub applied: Option<BTreeSet<String>>,
}

/// [`Scope`] for each directory (joined to the runbook's directory) whose
/// ups a run may run.
pub type Scopes = BTreeMap<PathBuf, Scope>;

/// The directories whose ups a run with this plan may run: those of the up
/// `migrate` steps whose `when` is not false, rendered. A directory two
/// such steps name is linted whole.
pub fn scopes(path: &Path, v: &crate::validate::Validated, plan: &crate::plan::Plan) -> Scopes {
    let none = Scopes::new();
    let book = steps::RunbookSql::steps(&v.doc, &v.runbook, Ok(plan), Params::Run(&none));
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut out = Scopes::new();
    for s in book.iter().filter(|s| s.skipped.is_none()) {
        let crate::model::StepKind::Migrate(m) = &s.step.kind else {
            continue;
        };
        let Some(crate::plan::Action::Migrate(pm)) =
            steps::plan_step(plan, &s.step.id).map(|p| &p.action)
        else {
            continue;
        };
        let Ok(d) = steps::rendered_dir(Ok(plan), &s.step.id) else {
            continue;
        };
        if m.direction != crate::model::Direction::Up {
            continue;
        }
        let known = |t: &Option<crate::plan::Text>| {
            t.as_ref()
                .filter(|t| t.after.is_empty())
                .map(|t| t.raw.expose().clone())
        };
        let scope = Scope {
            format: pm.format.clone(),
            history_format: pm.history.format.clone(),
            history_table: pm.history.table.clone(),
            to: known(&pm.to).filter(|t| t != "latest"),
            steps: known(&pm.steps).and_then(|n| n.parse().ok()),
            applied: None,
        };
        out.entry(base_dir.join(d))
            .and_modify(|e| {
                e.to = None;
                e.steps = None;
            })
            .or_insert(scope);
    }
    out
}

/// Lint a runbook already validated (and planned, when every param has a
/// value): what `exec` and `plan` call with what they built.
pub fn lint_validated(
    path: &Path,
    v: &crate::validate::Validated,
    plan: Result<&crate::plan::Plan, &str>,
    params: Params<'_>,
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
    let book = steps::RunbookSql::collect(doc, &v.runbook, plan, params, config);
    // Tables created by main steps that always run: empty for what follows.
    let mut new: BTreeSet<String> = BTreeSet::new();
    // Validated CHECK (col IS NOT NULL) constraints of earlier main steps.
    let mut checks = facts::NotNullChecks::default();
    for (i, s) in book.steps.iter().enumerate() {
        let Some(sql) = &s.sql else { continue };
        let at = doc.spans().value(&sql.field).map_or(0, |s| s.start);
        let script = match (&s.skipped, &book.scripts[i]) {
            (None, Some(script)) => script,
            (skipped, _) => {
                let note = match skipped {
                    Some(why) => format!("step `{}` does not run: {why}; not linted", s.step.id),
                    None => format!(
                        "step `{}`: not linted: {}",
                        s.step.id,
                        sql.text.as_ref().err().map_or("", String::as_str)
                    ),
                };
                report.notes.push(Note {
                    file: file.clone(),
                    line: doc.source.line_col(at).0,
                    note,
                });
                report.not_linted += 1;
                continue;
            }
        };
        let backups = book.backups_before(i);
        let judge =
            |raw: &sql::Raw, stmt: Option<&(crate::pg::statements::Statement, facts::Facts)>| {
                let (sql::Code::Squawk(rule), Some((_, f))) = (raw.code, stmt) else {
                    return sql::Verdict::Keep;
                };
                if rule == squawk_linter::Rule::AddingNotNullableField
                    && !f.set_not_null.is_empty()
                    && f.set_not_null.iter().all(|c| checks.validated(&f.table, c))
                {
                    return sql::Verdict::Accept(format!(
                        "an earlier step validated CHECK ({} IS NOT NULL) on {}, so SET NOT NULL skips its scan",
                        f.set_not_null.join(", "),
                        f.table
                    ));
                }
                match context::judge(rule, f, i, &book, &backups) {
                    None => sql::Verdict::Keep,
                    Some(Ok(why)) => sql::Verdict::Accept(why),
                    Some(Err(missing)) => sql::Verdict::KeepBecause(missing),
                }
            };
        let map = |o: usize| sql.file_offset(doc, o);
        sql::report(
            script,
            SqlContext {
                in_transaction: sql.in_transaction,
                timeouts_set: true,
            },
            &new,
            &judge,
            &Place {
                file: &file,
                source: &doc.source,
                map: &map,
            },
            report,
        );
        if s.role == steps::Role::Main && !s.gated {
            new.extend(script.created_tables().map(str::to_string));
            for (_, f) in &script.stmts {
                checks.see(f);
            }
        }
    }
    rules::check_runbook(doc, &book, &file, report);
    // A directory that several migrate steps name is linted once. One
    // named by a template is linted as it renders with the params; when it
    // cannot be (a param with no value, a value known only at run time),
    // a note says so: a directory left out must not read as clean.
    let mut dirs = BTreeSet::new();
    let mut unrendered = BTreeSet::new();
    // Directories of steps that run no up, noted when no other step
    // lints them.
    let mut later: Vec<(Result<String, String>, Note)> = Vec::new();
    for s in &book.steps {
        let StepKind::Migrate(m) = &s.step.kind else {
            continue;
        };
        let templated = crate::template::is_template(&m.dir);
        let dir = if templated {
            steps::rendered_dir(plan, &s.step.id)
        } else {
            Ok(m.dir.clone())
        };
        let not_linted = |why: String| Note {
            file: file.clone(),
            line: doc
                .spans()
                .value(&format!("{}/migrate/dir", s.pointer))
                .map_or(0, |at| doc.source.line_col(at.start).0),
            note: format!(
                "step `{}`: its migration directory is not linted: {why}",
                s.step.id
            ),
        };
        // Lint reads the ups: a step that runs none has nothing of its
        // directory linted, and says so unless another step lints it.
        let runs_none = match &s.skipped {
            Some(why) => Some(format!("the step does not run: {why}")),
            None => (m.direction == crate::model::Direction::Down)
                .then(|| "the step runs the downs, and lint reads the ups".to_string()),
        };
        if let Some(why) = runs_none {
            later.push((dir.map_err(|_| m.dir.clone()), not_linted(why)));
            continue;
        }
        match dir {
            Ok(d) if !dirs.insert(d.clone()) => {}
            Ok(d)
                if templated
                    && !base_dir.join(&d).is_dir()
                    && !crate::migrations::liquibase_changelog(&base_dir.join(&d)) =>
            {
                report.notes.push(not_linted(format!(
                    "`{d}` (as its params render it) is not a directory here"
                )));
                report.not_linted += 1;
            }
            Ok(d) => {
                let dir = base_dir.join(&d);
                let scope = match params {
                    Params::Run(scopes) => scopes.get(&dir),
                    Params::Defaults => None,
                };
                lint_directory(&dir, true, scope, config, report)?;
            }
            Err(_) if !unrendered.insert(m.dir.clone()) => {}
            Err(why) => {
                report.notes.push(not_linted(why));
                report.not_linted += 1;
            }
        }
    }
    for (dir, note) in later {
        let first = match dir {
            Ok(d) => dirs.insert(d),
            Err(template) => unrendered.insert(template),
        };
        if first {
            report.notes.push(note);
            report.not_linted += 1;
        }
    }
    config.apply(&mut report.findings, from);
    Ok(())
}

fn is_runbook_file(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml"))
}

/// The runbooks directly in `dir`, sorted.
fn runbooks_in(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_runbook_file(p))
        // A Liquibase changelog's directory is a migration directory.
        .filter(|p| !crate::migrations::liquibase_changelog(p))
        .collect();
    out.sort();
    Ok(out)
}

/// Lint each path: a runbook (`.yml`/`.yaml`), a `.sql` file, a migration
/// directory, or a directory of runbooks. An unreadable input is an `Err`.
pub fn lint_paths(paths: &[PathBuf], config: &Config) -> Result<Report, String> {
    let mut report = Report::default();
    let mut from = 0;
    for p in paths {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
        if p.is_dir() {
            let books = runbooks_in(p)?;
            if books.is_empty() {
                lint_migrations(p, false, config, &mut report)?;
            } else {
                // A directory of runbooks (`runbooks/`): each is linted
                // with its own levels applied.
                for b in books {
                    lint_runbook(&b, config, &mut report)?;
                }
                from = report.findings.len();
                continue;
            }
        } else if is_runbook_file(p) {
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
                "{}: expected a runbook (.yml), a .sql file, a migration directory or a directory of runbooks",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lint(sql: &str, ctx: SqlContext, config: &Config) -> Report {
        let mut r = Report::default();
        let source = Source::new("m.sql", sql);
        lint_sql(
            sql,
            ctx,
            config,
            &Place {
                file: "m.sql",
                source: &source,
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

    #[test]
    fn safety_assured_blocks_turn_squawks_findings_into_notes() {
        let index = "CREATE INDEX i ON t (a);\n";
        let sql = format!(
            "-- Safety-Assured:start\n{index}--safety-assured:end\n{}",
            index.replace(" i ", " j ")
        );
        let r = lint(&sql, RUNNER, &Config::default());
        // The one inside is a note at its line; the one after is kept.
        assert_eq!(
            r.findings
                .iter()
                .map(|f| (f.rule.as_str(), f.line))
                .collect::<Vec<_>>(),
            [("require-concurrent-index-creation", 4)]
        );
        assert!(
            r.notes.iter().any(|n| n.line == 2
                && n.note.starts_with(
                    "require-concurrent-index-creation accepted: in a `-- safety-assured` block"
                )),
            "{:?}",
            r.notes
        );
        // A start with no end, an end with no start, and a start inside an
        // open block silence nothing and say so.
        for (sql, said) in [
            (
                format!("-- safety-assured:start\n{index}"),
                "without an end",
            ),
            (format!("-- safety-assured:end\n{index}"), "without a start"),
        ] {
            let r = lint(&sql, RUNNER, &Config::default());
            assert_eq!(rules(&r), ["require-concurrent-index-creation"], "{sql}");
            assert!(
                r.notes.iter().any(|n| n.note.contains(said)),
                "{:?}",
                r.notes
            );
        }
        let nested = format!(
            "-- safety-assured:start\n-- safety-assured:start\n{index}-- safety-assured:end\n"
        );
        let r = lint(&nested, RUNNER, &Config::default());
        assert!(r.findings.is_empty(), "{:?}", rules(&r));
        assert!(
            r.notes.iter().any(|n| n.note.contains("do not nest")),
            "{:?}",
            r.notes
        );
        // Inside a string, it is text, not a marker.
        let quoted = format!(
            "SELECT '\n-- safety-assured:start\n';\n{index}SELECT '-- safety-assured:end';\n"
        );
        assert_eq!(
            rules(&lint(&quoted, RUNNER, &Config::default())),
            ["require-concurrent-index-creation"]
        );
    }

    #[test]
    fn sql_that_does_not_parse_is_a_located_syntax_error() {
        let sql = "SELECT 1 FROM ;\nSELEC * FROM x;\nCREATE INDEX i ON t (a);\n";
        let r = lint(sql, RUNNER, &Config::default());
        assert!(!r.findings.is_empty());
        assert!(
            rules(&r).iter().all(|r| *r == SYNTAX_ERROR),
            "{:?}",
            rules(&r)
        );
        let at: Vec<(usize, usize)> = r.findings.iter().map(|f| (f.line, f.column)).collect();
        assert_eq!(at[0], (1, 14), "{at:?}");
        assert_eq!(at[1], (2, 1), "{at:?}");
        assert!(r.errors() > 0);
    }
}
