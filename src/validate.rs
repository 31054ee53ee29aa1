//! Validate: schema, model and semantic checks, then params.
//!
//! Every problem in a file is collected and reported together; nothing here
//! touches a database or runs a command.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;

use serde_json::Value;

use crate::diag::{Diagnostic, did_you_mean, render_all};
use crate::duration::{Duration, DurationError};
use crate::load::{self, Document, pointer_segment};

use crate::model::{self, Command, OnFailure, Runbook, Step, StepKind, When};
use crate::params::{self, Origin, ParamValue, Params};
use crate::source::{Source, Span};
use crate::template;

/// What the caller supplied for params.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// `--set name=value`, in the order given.
    pub set: Vec<String>,
    /// `--params-file FILE`.
    pub params_file: Option<std::path::PathBuf>,
}

impl Inputs {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.params_file.is_none()
    }
}

/// Whether missing required params are an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamCheck {
    /// Check only the values given (`validate` without any params).
    GivenOnly,
    /// Every required param must have a value (`plan`, `exec`).
    RequireAll,
}

/// A runbook that passed every check.
#[derive(Debug, Clone)]
pub struct Validated {
    pub doc: Document,
    pub runbook: Runbook,
    pub params: Params,
}

/// The diagnostics of one file.
#[derive(Debug, Clone)]
pub struct FileDiagnostics {
    pub source: Source,
    pub diagnostics: Vec<Diagnostic>,
}

/// Why a runbook (or its params) was refused. Nothing ran.
#[derive(Debug, Clone)]
pub struct Invalid {
    /// The runbook file, as named by the user.
    pub file: String,
    pub files: Vec<FileDiagnostics>,
}

impl Invalid {
    pub fn count(&self) -> usize {
        self.files.iter().map(|f| f.diagnostics.len()).sum()
    }

    /// Every diagnostic, then a summary line.
    pub fn render(&self, color: bool) -> String {
        let mut out = String::new();
        for f in &self.files {
            out.push_str(&render_all(&f.source, &f.diagnostics, color));
        }
        let n = self.count();
        out.push_str(&format!(
            "error: `{}` is invalid ({n} {}); nothing ran\n",
            self.file,
            if n == 1 { "error" } else { "errors" }
        ));
        out
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for Invalid {}

/// Load and check a runbook file with the given params.
pub fn validate_file(
    path: &Path,
    inputs: &Inputs,
    check: ParamCheck,
) -> Result<Validated, Invalid> {
    let file = path.display().to_string();
    let doc = load::load_file(path).map_err(|f| {
        let f = *f;
        Invalid {
            file: file.clone(),
            files: vec![FileDiagnostics {
                source: f.source,
                diagnostics: vec![f.diagnostic],
            }],
        }
    })?;
    validate_doc(doc, inputs, check)
}

/// Check an already loaded runbook document.
pub fn validate_doc(
    doc: Document,
    inputs: &Inputs,
    check: ParamCheck,
) -> Result<Validated, Invalid> {
    let file = doc.source.name().to_string();
    let fail = |source: Source, diagnostics: Vec<Diagnostic>, extra: Vec<FileDiagnostics>| {
        let mut files = vec![FileDiagnostics {
            source,
            diagnostics,
        }];
        files.extend(extra);
        files.retain(|f| !f.diagnostics.is_empty());
        Invalid {
            file: file.clone(),
            files,
        }
    };

    let mut diags = crate::schema::check(&doc);
    diags.extend(check_durations(&doc));
    if !diags.is_empty() {
        // Every error of a file at once: when the typed model can still be
        // read past the schema's errors, its semantic errors are reported
        // beside them, not after the next attempt.
        if let Ok(rb) = serde_json::from_value::<Runbook>(doc.value.clone()) {
            // A step with a schema error is reported by that error alone:
            // what the model made of it would only echo it.
            let starts: Vec<usize> = diags
                .iter()
                .filter_map(|d| d.span.as_ref().map(|s| s.start))
                .collect();
            // A step's text runs from where it starts to where the next
            // one (in the file) starts.
            let mut at: Vec<usize> = rb
                .all_steps()
                .iter()
                .filter_map(|(p, _)| doc.spans().node(p).map(|n| n.value.start))
                .collect();
            at.sort_unstable();
            let tainted: Vec<Span> = at
                .iter()
                .enumerate()
                .map(|(i, &a)| a..at.get(i + 1).copied().unwrap_or(usize::MAX))
                .filter(|span| starts.iter().any(|s| span.contains(s)))
                .collect();
            for d in semantic(&doc, &rb) {
                let start = d.span.as_ref().map(|s| s.start);
                let echo = start.is_some_and(|s| tainted.iter().any(|t| t.contains(&s)))
                    || diags.iter().any(|x| {
                        x.message == d.message && x.span.as_ref().map(|s| s.start) == start
                    });
                if !echo {
                    diags.push(d);
                }
            }
            diags.sort_by_key(|d| d.span.as_ref().map_or(0, |s| s.start));
        }
        return Err(fail(doc.source, diags, vec![]));
    }
    let runbook: Runbook = match serde_json::from_value(doc.value.clone()) {
        Ok(rb) => rb,
        Err(e) => {
            // The schema accepted what the model refused: a bug in their
            // agreement, still reported rather than panicking.
            let d = Diagnostic::new(format!("failed to read the runbook: {e}"))
                .hint("the schema and the model disagree; please report this with the file");
            return Err(fail(doc.source, vec![d], vec![]));
        }
    };
    let mut diags = semantic(&doc, &runbook);
    let (params, extra) = resolve_params(&doc, &runbook, inputs, check, &mut diags);
    if !diags.is_empty() || extra.iter().any(|f| !f.diagnostics.is_empty()) {
        diags.sort_by_key(|d| d.span.as_ref().map_or(0, |s| s.start));
        return Err(fail(doc.source, diags, extra));
    }
    Ok(Validated {
        doc,
        runbook,
        params,
    })
}

/// sha256 of a document's text, hex: what plans and reports identify a runbook by.
pub fn sha256(doc: &Document) -> String {
    crate::hash::sha256_hex(doc.source.text().as_bytes())
}

const DURATION_KEYS: &[&str] = &[
    "timeout",
    "sleep",
    "lock_timeout",
    "statement_timeout",
    "idle_in_transaction_session_timeout",
    "wait_for_blockers",
    "lock_wait_warning",
    "pause",
    "max_replica_lag",
    "initial",
    "max",
];

/// Durations whose syntax the schema accepted but whose size is absurd.
fn check_durations(doc: &Document) -> Vec<Diagnostic> {
    use std::borrow::Cow;
    fn walk<'a>(
        v: &'a Value,
        path: &mut Vec<Cow<'a, str>>,
        doc: &Document,
        out: &mut Vec<Diagnostic>,
    ) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    path.push(Cow::Borrowed(k));
                    if let (true, Some(s)) = (DURATION_KEYS.contains(&k.as_str()), child.as_str())
                        && let Err(DurationError::Overflow(_)) = Duration::parse(s)
                    {
                        let pointer: String = path
                            .iter()
                            .map(|s| format!("/{}", pointer_segment(s)))
                            .collect();
                        out.push(
                            Diagnostic::new(format!("duration `{s}` for `{k}` is too long"))
                                .at(doc.spans().value(&pointer))
                                .label("more than a year")
                                .hint("durations are limited to one year; check the number and the unit"),
                        );
                    }
                    walk(child, path, doc, out);
                    path.pop();
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    path.push(Cow::Owned(i.to_string()));
                    walk(child, path, doc, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&doc.value, &mut Vec::new(), doc, &mut out);
    out
}

fn semantic(doc: &Document, rb: &Runbook) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    check_ids(doc, rb, &mut out);
    check_param_declarations(doc, rb, &mut out);
    check_templates(doc, rb, &mut out);
    check_backup_restore(doc, rb, &mut out);
    check_transaction_control(doc, rb, &mut out);
    check_builtins(doc, rb, &mut out);
    check_check_shapes(doc, rb, &mut out);
    check_migrations(doc, rb, &mut out);
    out
}

/// `text` with each `{{ ... }}` as a name (which parses as a value and as a
/// table) and each `{% ... %}` removed, so
/// that SQL holding templates can be parsed for its shape.
fn without_templates(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let next = [("{{", "}}", "runbook_template_value"), ("{%", "%}", "")]
            .into_iter()
            .filter_map(|(open, close, with)| rest.find(open).map(|i| (i, open, close, with)))
            .min_by_key(|x| x.0);
        let Some((i, open, close, with)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..i]);
        match rest[i + open.len()..].find(close) {
            Some(j) => {
                out.push_str(with);
                rest = &rest[i + open.len() + j + close.len()..];
            }
            None => {
                out.push_str(&rest[i..]);
                return out;
            }
        }
    }
}

/// A check checks something: a query (one statement that returns rows)
/// or a built-in, not both and not neither.
fn check_check_shapes(doc: &Document, rb: &Runbook, out: &mut Vec<Diagnostic>) {
    for (pointer, step) in &rb.all_steps() {
        let StepKind::Check(c) = &step.kind else {
            continue;
        };
        let base = format!("{pointer}/check");
        let short = doc.value.pointer(&base).is_some_and(Value::is_string);
        let query_at = if short {
            doc.spans().value(&base)
        } else {
            doc.spans().value(&format!("{base}/query"))
        };
        if c.builtin.is_some() {
            if !c.query.trim().is_empty() {
                out.push(
                    Diagnostic::new(format!(
                        "check `{}` has both `builtin` and `query`; a built-in check runs its own SQL, so the query would be ignored",
                        step.id
                    ))
                    .at(doc.spans().key_or_value(&format!("{base}/query")))
                    .label("ignored")
                    .hint("remove `query:`, or make it a check of its own"),
                );
            }
            continue;
        }
        if c.query.trim().is_empty() {
            out.push(
                Diagnostic::new(format!("check `{}` has no query: it checks nothing", step.id))
                    .at(doc.spans().key_or_value(&base))
                    .label("no `query` and no `builtin`")
                    .hint("add `query: SELECT ...` with `expect:` or `assert:`, or `builtin: NAME` (docs/checks.md)"),
            );
            continue;
        }
        // Templates are not SQL: each stands for one value here.
        let stmts = crate::statements::split(&without_templates(&c.query));
        let returns_rows = |kind: &str| {
            kind.contains("SELECT") || matches!(kind, "VALUES" | "TABLE" | "SHOW" | "unparsed")
        };
        if stmts.len() > 1 {
            out.push(
                Diagnostic::new(format!(
                    "check `{}` has {} statements; a check query is one statement that returns rows",
                    step.id,
                    stmts.len()
                ))
                .at(query_at.clone())
                .label("more than one statement")
                .hint("keep the one whose rows are checked; each other check is a step of its own"),
            );
        } else if let Some(st) = stmts.first()
            && !returns_rows(&st.kind)
        {
            out.push(
                Diagnostic::new(format!(
                    "check `{}` runs `{}`, which returns no rows to check; a check is read-only",
                    step.id, st.kind
                ))
                .at(query_at)
                .label("not a query")
                .hint(
                    "use a `sql` step to change things, and a check with `SELECT` to verify them",
                ),
            );
        }
    }
}

/// Migration directories given as plain paths are read now, so a missing
/// directory, a mixed format or a down without its up stops the run before
/// anything changes. Step references name the right kind of step.
fn check_migrations(doc: &Document, rb: &Runbook, out: &mut Vec<Diagnostic>) {
    let steps = rb.all_steps();
    let kinds: HashMap<&str, &'static str> = steps
        .iter()
        .map(|(_, s)| (s.id.as_str(), s.kind.name()))
        .collect();
    let base_dir = Path::new(doc.source.name())
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let dir_check = |pointer: &str,
                     dir: &str,
                     format: &Option<String>,
                     out: &mut Vec<Diagnostic>| {
        if dir.contains("{{") || dir.contains("{%") {
            return;
        }
        let format = match crate::migrations::Format::parse(format.as_deref().unwrap_or("auto")) {
            Ok(f) => f,
            Err(_) => return, // the schema's enum reports it
        };
        if let Err(e) = crate::migrations::load(&base_dir.join(dir), format) {
            out.push(
                Diagnostic::new(e)
                    .at(doc.spans().value(&format!("{pointer}/dir")))
                    .label("this migration directory")
                    .hint("paths are relative to the runbook's directory; `format:` names the layout when detection cannot"),
            );
        }
    };
    let kind_is = |id: &str, want: &str, pointer: &str, what: &str, out: &mut Vec<Diagnostic>| {
        if let Some(kind) = kinds.get(id)
            && *kind != want
        {
            out.push(
                Diagnostic::new(format!("`steps.{id}` names a {kind} step, not a {want}"))
                    .at(doc.spans().value(pointer))
                    .label(what.to_string())
                    .hint(format!("name an earlier `{want}` step")),
            );
        }
    };
    for (pointer, step) in &steps {
        match &step.kind {
            StepKind::Migrate(m) => {
                let base = format!("{pointer}/migrate");
                dir_check(&base, &m.dir, &m.format, out);
                if m.direction == model::Direction::Down && m.to.is_none() && m.steps.is_none() {
                    out.push(
                        Diagnostic::new("a down migration needs `to` or `steps`")
                            .at(doc.spans().key_or_value(&format!("{base}/direction")))
                            .label("how far down?")
                            .hint("`steps: 1` rolls back the newest migration; `to: 0` rolls back all of them"),
                    );
                }
                if let Some(to) = &m.to
                    && to != "latest"
                    && (to.is_empty() || !to.chars().all(|c| c.is_ascii_digit()))
                {
                    out.push(
                        Diagnostic::new(format!("`to: {to}` is not a version"))
                            .at(doc.spans().value(&format!("{base}/to")))
                            .label("expected `latest` or a version number")
                            .hint("a version is the leading digits of a migration's file name"),
                    );
                }
            }
            StepKind::Rehearse(x) => {
                let base = format!("{pointer}/rehearse");
                dir_check(&base, &x.dir, &x.format, out);
                if let Some(seed) = &x.seed
                    && !seed.contains("{{")
                    && !base_dir.join(seed).is_file()
                {
                    out.push(
                        Diagnostic::new(format!("the seed file `{seed}` does not exist"))
                            .at(doc.spans().value(&format!("{base}/seed")))
                            .label("no such file")
                            .hint("`seed:` is a SQL file, relative to the runbook's directory"),
                    );
                }
                if let Some(model::Scratch::Backup { from }) = &x.scratch {
                    let id = from.trim().trim_start_matches("steps.");
                    kind_is(
                        id,
                        "backup",
                        &format!("{base}/scratch/from"),
                        "a scratch database is restored from a backup",
                        out,
                    );
                }
            }
            StepKind::Snapshot(x) => {
                if let Some(id) = x.expect.as_ref().and_then(|e| e.same_as_step()) {
                    kind_is(
                        id,
                        "snapshot",
                        &format!("{pointer}/snapshot/expect/same_as"),
                        "compared with an earlier snapshot",
                        out,
                    );
                }
            }
            _ => {}
        }
    }
}

/// Option combinations pg_dump and pg_restore would refuse, and restores
/// that name a step which is not a backup.
/// Built-in checks: each argument belongs to the check, required ones are
/// there, and values have the right kind (the schema only knows the union).
fn check_builtins(doc: &Document, rb: &Runbook, out: &mut Vec<Diagnostic>) {
    use crate::checks::{self, ArgKind};
    for (pointer, step) in &rb.all_steps() {
        let StepKind::Check(c) = &step.kind else {
            continue;
        };
        let base = format!("{pointer}/check");
        let at = |key: &str| doc.spans().value(&format!("{base}/{key}"));
        let key_at = |key: &str| doc.spans().key_or_value(&format!("{base}/{key}"));
        let Some(b) = &c.builtin else {
            // Arguments without `builtin` belong to nothing.
            if let Some(Value::Object(m)) = doc.value.pointer(&base) {
                for k in m.keys() {
                    if !["query", "expect", "assert", "severity"].contains(&k.as_str()) {
                        out.push(
                            Diagnostic::new(format!("`{k}` is an argument of built-in checks"))
                                .at(key_at(k))
                                .label("this check runs `query`, not a built-in")
                                .hint("remove it, or use `builtin:` instead of `query:`"),
                        );
                    }
                }
            }
            continue;
        };
        let Some(def) = checks::find(&b.name) else {
            continue; // the schema's enum reports it, with the names
        };
        for (k, v) in &b.args {
            let Some(arg) = def.arg(k) else {
                let takes: Vec<&str> = def.args.iter().map(|a| a.name).collect();
                out.push(
                    Diagnostic::new(format!("`{}` does not take `{k}`", def.name))
                        .at(key_at(k))
                        .label("unknown argument")
                        .hint(if takes.is_empty() {
                            format!("`{}` takes no arguments", def.name)
                        } else {
                            format!("`{}` takes {}", def.name, crate::diag::one_of(&takes))
                        }),
                );
                continue;
            };
            let problem = match arg.kind {
                ArgKind::Count => v.as_u64().is_none().then_some("a whole number, 0 or more"),
                ArgKind::Duration => match v.as_str() {
                    Some(t) if crate::duration::Duration::parse(t).is_ok() => None,
                    _ => Some("a duration such as `30s` or `5min`"),
                },
                ArgKind::Size => match v {
                    Value::Number(n) if n.is_u64() => None,
                    Value::String(t) if checks::parse_size(t).is_some() => None,
                    _ => Some("a size such as `500MB` or `50GB`"),
                },
                ArgKind::Version => {
                    let text = match v {
                        Value::String(t) => t.clone(),
                        other => other.to_string(),
                    };
                    checks::parse_version(&text)
                        .is_none()
                        .then_some("a PostgreSQL version such as `14` or `15.4`")
                }
                ArgKind::Fraction => (!v.is_number()).then_some("a number"),
                ArgKind::Text => (!v.is_string()).then_some("a string"),
                ArgKind::Tables => (!v.is_array()).then_some("a list of table names"),
                ArgKind::StepRef => (!v.is_string()).then_some("`steps.<id>`"),
            };
            if let Some(expected) = problem {
                out.push(
                    Diagnostic::new(format!("`{k}` of `{}` must be {expected}", def.name))
                        .at(at(k))
                        .label(format!("{}: {}", arg.name, arg.doc))
                        .hint(format!("see `{}` in docs/checks.md", def.name)),
                );
            }
        }
        for a in def.args.iter().filter(|a| a.required) {
            if !b.args.contains_key(a.name) {
                out.push(
                    Diagnostic::new(format!("`{}` needs `{}`", def.name, a.name))
                        .at(at("builtin"))
                        .label(format!("missing `{}`: {}", a.name, a.doc))
                        .hint(format!("add `{}:` beside `builtin:`", a.name)),
                );
            }
        }
    }
}

/// `BEGIN`/`COMMIT` inside a step that runs in runbook's transaction would
/// end that transaction early and leave the rest outside it. Checked here
/// when the SQL has no templates, and again at run time when it does.
fn check_transaction_control(doc: &Document, rb: &Runbook, out: &mut Vec<Diagnostic>) {
    for (pointer, step) in &rb.all_steps() {
        let StepKind::Sql(sql) = &step.kind else {
            continue;
        };
        if !sql.transaction || sql.statements.contains("{{") || sql.statements.contains("{%") {
            continue;
        }
        let field = if doc
            .value
            .pointer(&format!("{pointer}/sql"))
            .is_some_and(serde_json::Value::is_object)
        {
            format!("{pointer}/sql/statements")
        } else {
            format!("{pointer}/sql")
        };
        for st in crate::statements::split(&sql.statements) {
            if st.transaction_control {
                let end = st.offset + st.text.len();
                out.push(
                    Diagnostic::new(format!(
                        "`{}` in a step that runs in a transaction",
                        st.kind
                    ))
                    .at(doc.locate(&field, &sql.statements, st.offset..end))
                    .label("this would end runbook's transaction early")
                    .hint("set `transaction: false` on the step to manage transactions yourself, or remove the statement"),
                );
            }
        }
    }
}

fn check_backup_restore(doc: &Document, rb: &Runbook, out: &mut Vec<Diagnostic>) {
    let steps = rb.all_steps();
    let kinds: HashMap<&str, &'static str> = steps
        .iter()
        .map(|(_, s)| (s.id.as_str(), s.kind.name()))
        .collect();
    for (pointer, step) in &steps {
        match &step.kind {
            StepKind::Backup(b) => {
                let at = |key: &str| doc.spans().value(&format!("{pointer}/backup/{key}"));
                if b.schema_only && b.data_only {
                    out.push(
                        Diagnostic::new("`schema_only` and `data_only` together back up nothing")
                            .at(at("data_only"))
                            .label("conflicts with `schema_only: true`")
                            .hint("keep one of them, or neither for a full backup"),
                    );
                }
                if b.jobs.is_some() && b.format != model::BackupFormat::Directory {
                    out.push(
                        Diagnostic::new(format!(
                            "`jobs` needs `format: directory`, not `{}`",
                            b.format.name()
                        ))
                        .at(at("jobs"))
                        .label("pg_dump dumps in parallel only to a directory")
                        .hint("remove `jobs`, or use `format: directory`"),
                    );
                }
                if b.verify == model::Verify::Restore && b.schema_only {
                    out.push(
                        Diagnostic::new("`verify: restore` compares row counts, and a schema-only backup has none")
                            .at(at("verify"))
                            .label("nothing to compare")
                            .hint("use `verify: list` for a schema-only backup"),
                    );
                }
            }
            StepKind::Restore(r) => {
                let at = |key: &str| doc.spans().value(&format!("{pointer}/restore/{key}"));
                if r.single_transaction == Some(true) && r.jobs.is_some_and(|j| j > 1) {
                    out.push(
                        Diagnostic::new("`single_transaction` cannot be used with `jobs` above 1")
                            .at(at("single_transaction"))
                            .label("pg_restore runs parallel jobs in separate sessions")
                            .hint("set `jobs: 1` for an all-or-nothing restore, or drop `single_transaction`"),
                    );
                }
                if let Some(id) = r.from_step()
                    && let Some(kind) = kinds.get(id)
                    && *kind != "backup"
                {
                    out.push(
                        Diagnostic::new(format!(
                            "`from: steps.{id}` names a {kind} step, not a backup"
                        ))
                        .at(at("from"))
                        .label("a restore reads the backup a `backup` step took")
                        .hint("name a backup step, or give the backup's directory"),
                    );
                }
            }
            _ => {}
        }
    }
}

fn line_of(doc: &Document, span: &Option<Span>) -> String {
    span.as_ref().map_or_else(String::new, |s| {
        format!(" on line {}", doc.source.line_col(s.start).0)
    })
}

fn check_ids(doc: &Document, rb: &Runbook, out: &mut Vec<Diagnostic>) {
    // Positions are looked up only for duplicates: a valid runbook never
    // needs them.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, phase) in rb.phases.iter().enumerate() {
        if let Some(first) = seen.get(phase.id.as_str()) {
            let first = doc.spans().value(&format!("/phases/{first}/id"));
            out.push(
                Diagnostic::new(format!("duplicate phase id `{}`", phase.id))
                    .at(doc.spans().value(&format!("/phases/{i}/id")))
                    .label("used again here")
                    .hint(format!(
                        "phase ids must be unique (first used{}); `--approve` names phases by id",
                        line_of(doc, &first)
                    )),
            );
        } else {
            seen.insert(&phase.id, i);
        }
    }
    let mut seen: HashMap<&str, String> = HashMap::new();
    for (pointer, step) in rb.all_steps() {
        if let Some(first) = seen.get(step.id.as_str()) {
            let first = doc.spans().value(&format!("{first}/id"));
            out.push(
                Diagnostic::new(format!("duplicate step id `{}`", step.id))
                    .at(doc.spans().value(&format!("{pointer}/id")))
                    .label("used again here")
                    .hint(format!(
                        "step ids must be unique in the runbook (first used{}); rename one of them",
                        line_of(doc, &first)
                    )),
            );
        } else {
            seen.insert(&step.id, pointer);
        }
    }
}

fn check_param_declarations(doc: &Document, rb: &Runbook, out: &mut Vec<Diagnostic>) {
    for (name, p) in &rb.params {
        let base = format!("/params/{}", pointer_segment(name));
        if let Some(pattern) = &p.pattern
            && let Err(e) = params::anchored(pattern)
        {
            let first = e
                .to_string()
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_string();
            out.push(
                Diagnostic::new(format!("invalid pattern for param `{name}`"))
                    .at(doc.spans().value(&format!("{base}/pattern")))
                    .label("not a regular expression")
                    .hint(first),
            );
            continue;
        }
        if let (Some(min), Some(max)) = (p.minimum, p.maximum)
            && min > max
        {
            out.push(
                Diagnostic::new(format!(
                    "param `{name}` has minimum {min} above maximum {max}"
                ))
                .at(doc.spans().value(&format!("{base}/minimum")))
                .label("no value can satisfy this")
                .hint("swap `minimum` and `maximum`"),
            );
        }
        if let Some(allowed) = &p.allowed {
            for (i, v) in allowed.iter().enumerate() {
                if let Err(e) = params::check_type(p.ty, v) {
                    out.push(
                        Diagnostic::new(format!("enum value of param `{name}` has the wrong type"))
                            .at(doc.spans().value(&format!("{base}/enum/{i}")))
                            .label(e)
                            .hint(format!(
                                "param `{name}` is declared `type: {}`",
                                p.ty.name()
                            )),
                    );
                }
            }
        }
        if let Some(default) = &p.default {
            if p.required {
                out.push(
                    Diagnostic::new(format!("param `{name}` is required but has a default"))
                        .at(doc.spans().key_or_value(&format!("{base}/required")))
                        .label("a param with a default is never missing")
                        .hint("remove `required: true`, or remove the default"),
                );
            }
            let checked = params::check_type(p.ty, default)
                .and_then(|()| params::check_constraints(p, default));
            if let Err(e) = checked {
                out.push(
                    Diagnostic::new(format!("invalid default for param `{name}`"))
                        .at(doc.spans().value(&format!("{base}/default")))
                        .label(e)
                        .hint("the default must satisfy the param's own type and constraints"),
                );
            }
        }
    }
}

/// How a field's text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Template,
    Expr,
}

/// Which step outputs and locals a field may read.
#[derive(Debug, Clone, Default)]
struct Scope {
    /// Main-line steps before this index are readable.
    main_upto: usize,
    /// Earlier steps of the same branch or compensation list.
    extra: Vec<String>,
    /// Names bound by the step itself (`row`, `rows` in checks).
    locals: &'static [&'static str],
    /// Inside `vars`: the index of the var being defined.
    var_index: Option<usize>,
    /// A main-line step (its compensations may read it).
    main_line: bool,
}

struct Field<'a> {
    pointer: String,
    text: &'a str,
    mode: Mode,
    scope: Scope,
}

struct Walker<'a> {
    doc: &'a Document,
    fields: Vec<Field<'a>>,
    main: Vec<&'a str>,
}

const CHECK_LOCALS: &[&str] = &["row", "rows"];

impl<'a> Walker<'a> {
    fn push(&mut self, pointer: String, text: &'a str, mode: Mode, scope: &Scope) {
        self.fields.push(Field {
            pointer,
            text,
            mode,
            scope: scope.clone(),
        });
    }

    fn when(&mut self, when: &'a Option<When>, pointer: &str, scope: &Scope) {
        if let Some(When::Expr(e)) = when {
            self.push(format!("{pointer}/when"), e, Mode::Expr, scope);
        }
    }

    fn is_string(&self, pointer: &str) -> bool {
        self.doc
            .value
            .pointer(pointer)
            .is_some_and(Value::is_string)
    }

    fn step(&mut self, step: &'a Step, p: &str, scope: &Scope) {
        self.when(&step.when, p, scope);
        match &step.kind {
            StepKind::Sql(sql) => {
                let at = if self.is_string(&format!("{p}/sql")) {
                    format!("{p}/sql")
                } else {
                    format!("{p}/sql/statements")
                };
                self.push(at, &sql.statements, Mode::Template, scope);
            }
            StepKind::Check(check) => {
                let short = self.is_string(&format!("{p}/check"));
                let at = if short {
                    format!("{p}/check")
                } else {
                    format!("{p}/check/query")
                };
                if check.builtin.is_none() {
                    self.push(at, &check.query, Mode::Template, scope);
                }
                if let Some(b) = &check.builtin {
                    if let Some(Value::Array(list)) = b.args.get("tables") {
                        for (i, v) in list.iter().enumerate() {
                            if let Value::String(t) = v {
                                self.push(
                                    format!("{p}/check/tables/{i}"),
                                    t,
                                    Mode::Template,
                                    scope,
                                );
                            }
                        }
                    }
                    for (k, v) in &b.args {
                        let Value::String(text) = v else { continue };
                        let mode = match k.as_str() {
                            // `steps.X` is a reference, checked for scope and order.
                            "from" => Mode::Expr,
                            "dir" | "path" | "table" | "column" | "hash" => Mode::Template,
                            _ => continue,
                        };
                        self.push(format!("{p}/check/{k}"), text, mode, scope);
                    }
                }
                let local = Scope {
                    locals: CHECK_LOCALS,
                    ..scope.clone()
                };
                for (col, matcher) in &check.expect {
                    let base = format!("{p}/check/expect/{}", pointer_segment(col));
                    let plain = !self.doc.value.pointer(&base).is_some_and(Value::is_object);
                    for (op, v) in &matcher.ops {
                        let at = if plain {
                            base.clone()
                        } else {
                            format!("{base}/{}", op.name())
                        };
                        let items: Vec<(String, &'a Value)> = match v {
                            Value::Array(a) => a
                                .iter()
                                .enumerate()
                                .map(|(i, x)| (format!("{at}/{i}"), x))
                                .collect(),
                            other => vec![(at.clone(), other)],
                        };
                        for (ptr, item) in items {
                            if let Value::String(s) = item {
                                self.push(ptr, s, Mode::Template, &local);
                            }
                        }
                    }
                }
                for (i, a) in check.assert.iter().enumerate() {
                    self.push(format!("{p}/check/assert/{i}"), a, Mode::Expr, &local);
                }
            }
            StepKind::Shell(shell) => {
                let short = !self
                    .doc
                    .value
                    .pointer(&format!("{p}/shell"))
                    .is_some_and(Value::is_object);
                let cmd = if short {
                    format!("{p}/shell")
                } else {
                    format!("{p}/shell/command")
                };
                match &shell.command {
                    Command::Script(s) => self.push(cmd, s, Mode::Template, scope),
                    Command::Argv(argv) => {
                        for (i, a) in argv.iter().enumerate() {
                            self.push(format!("{cmd}/{i}"), a, Mode::Template, scope);
                        }
                    }
                }
                for (k, v) in &shell.env {
                    self.push(
                        format!("{p}/shell/env/{}", pointer_segment(k)),
                        v,
                        Mode::Template,
                        scope,
                    );
                }
                if let Some(cwd) = &shell.cwd {
                    self.push(format!("{p}/shell/cwd"), cwd, Mode::Template, scope);
                }
            }
            StepKind::Sleep(_) => {}
            StepKind::Backfill(b) => {
                let base = format!("{p}/backfill");
                self.push(format!("{base}/table"), &b.table, Mode::Template, scope);
                self.push(format!("{base}/set"), &b.set, Mode::Template, scope);
                if let Some(w) = &b.where_ {
                    self.push(format!("{base}/where"), w, Mode::Template, scope);
                }
            }
            StepKind::Backup(b) => {
                let base = format!("{p}/backup");
                if self.doc.value.pointer(&format!("{base}/path")).is_some() {
                    self.push(format!("{base}/path"), &b.path, Mode::Template, scope);
                }
                for (key, list) in [
                    ("tables", &b.tables),
                    ("exclude_tables", &b.exclude_tables),
                    ("schemas", &b.schemas),
                    ("exclude_schemas", &b.exclude_schemas),
                ] {
                    for (i, x) in list.iter().enumerate() {
                        self.push(format!("{base}/{key}/{i}"), x, Mode::Template, scope);
                    }
                }
            }
            StepKind::Restore(r) => {
                let base = format!("{p}/restore");
                // `steps.X` is a reference: checked as an expression, so a
                // backup that runs later or not at all is caught here.
                let mode = if r.from_step().is_some() {
                    Mode::Expr
                } else {
                    Mode::Template
                };
                self.push(format!("{base}/from"), &r.from, mode, scope);
                if let Some(t) = &r.target {
                    self.push(format!("{base}/target"), t, Mode::Template, scope);
                }
            }
            StepKind::Migrate(m) => {
                self.push(format!("{p}/migrate/dir"), &m.dir, Mode::Template, scope);
            }
            StepKind::Snapshot(x) => {
                if let Some(t) = &x.save {
                    self.push(format!("{p}/snapshot/save"), t, Mode::Template, scope);
                }
                if let Some(e) = &x.expect
                    && let Some(same) = &e.same_as
                {
                    self.push(
                        format!("{p}/snapshot/expect/same_as"),
                        same,
                        Mode::Expr,
                        scope,
                    );
                }
            }
            StepKind::Rehearse(x) => {
                self.push(format!("{p}/rehearse/dir"), &x.dir, Mode::Template, scope);
                if let Some(t) = &x.seed {
                    self.push(format!("{p}/rehearse/seed"), t, Mode::Template, scope);
                }
                if let Some(model::Scratch::Backup { from }) = &x.scratch {
                    self.push(
                        format!("{p}/rehearse/scratch/from"),
                        from,
                        Mode::Expr,
                        scope,
                    );
                }
            }
        }
        // Compensations may read this step and everything before it.
        let comp = if scope.main_line {
            Scope {
                main_upto: scope.main_upto + 1,
                ..Scope::default()
            }
        } else {
            let mut extra = scope.extra.clone();
            extra.push(step.id.clone());
            Scope {
                main_upto: scope.main_upto,
                extra,
                ..Scope::default()
            }
        };
        if step.rollback_single {
            self.step(&step.rollback[0], &format!("{p}/rollback"), &comp);
        } else {
            self.list(&step.rollback, &format!("{p}/rollback"), comp);
        }
    }

    /// A branch or compensation list: each step may read its earlier siblings.
    fn list(&mut self, steps: &'a [Step], base: &str, mut scope: Scope) {
        for (i, s) in steps.iter().enumerate() {
            self.step(s, &format!("{base}/{i}"), &scope);
            scope.extra.push(s.id.clone());
        }
    }
}

fn collect_fields<'a>(doc: &'a Document, rb: &'a Runbook) -> (Vec<Field<'a>>, Vec<&'a str>) {
    let mut w = Walker {
        doc,
        fields: Vec::new(),
        main: Vec::new(),
    };
    fn strings<'a>(v: &'a Value, pointer: String, out: &mut Vec<(String, &'a str)>) {
        match v {
            Value::String(s) => out.push((pointer, s)),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, x)| strings(x, format!("{pointer}/{i}"), out)),
            Value::Object(m) => m
                .iter()
                .for_each(|(k, x)| strings(x, format!("{pointer}/{}", pointer_segment(k)), out)),
            _ => {}
        }
    }
    for (i, (name, v)) in rb.vars.iter().enumerate() {
        let mut found = Vec::new();
        strings(v, format!("/vars/{}", pointer_segment(name)), &mut found);
        let scope = Scope {
            var_index: Some(i),
            ..Scope::default()
        };
        for (p, s) in found {
            w.push(p, s, Mode::Template, &scope);
        }
    }
    if let Some(url) = &rb.database.url {
        w.push(
            "/database/url".into(),
            url,
            Mode::Template,
            &Scope::default(),
        );
    }
    for (pi, phase) in rb.phases.iter().enumerate() {
        let phase_scope = Scope {
            main_upto: w.main.len(),
            ..Scope::default()
        };
        w.when(&phase.when, &format!("/phases/{pi}"), &phase_scope);
        if let Some(prompt) = phase.approval.as_ref().and_then(|a| a.prompt.as_ref()) {
            w.push(
                format!("/phases/{pi}/approval/prompt"),
                prompt,
                Mode::Template,
                &phase_scope,
            );
        }
        for (si, step) in phase.steps.iter().enumerate() {
            let scope = Scope {
                main_upto: w.main.len(),
                main_line: true,
                ..Scope::default()
            };
            w.step(step, &format!("/phases/{pi}/steps/{si}"), &scope);
            w.main.push(&step.id);
        }
        if let OnFailure::Steps(branch) = &phase.on_failure {
            let scope = Scope {
                main_upto: w.main.len(),
                ..Scope::default()
            };
            w.list(branch, &format!("/phases/{pi}/on_failure"), scope);
        }
    }
    let all = Scope {
        main_upto: w.main.len(),
        ..Scope::default()
    };
    w.list(&rb.on_failure, "/on_failure", all.clone());
    w.list(&rb.finally, "/finally", all);
    (w.fields, w.main)
}

fn check_templates(doc: &Document, rb: &Runbook, out: &mut Vec<Diagnostic>) {
    let env = template::environment();
    let (fields, main) = collect_fields(doc, rb);
    let texts: Vec<(String, &str)> = fields.iter().map(|f| (f.pointer.clone(), f.text)).collect();
    crate::injection::check(doc, rb, &texts, out);
    let main_pos: HashMap<&str, usize> = main.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let all_ids: HashSet<&str> = rb
        .all_steps()
        .into_iter()
        .map(|(_, s)| s.id.as_str())
        .collect();
    let var_names: Vec<&str> = rb.vars.keys().map(String::as_str).collect();
    let param_names: Vec<&str> = rb.params.keys().map(String::as_str).collect();

    for f in &fields {
        let at_text = |needle: &str| {
            let start = f.text.find(needle);
            start
                .and_then(|s| doc.locate(&f.pointer, f.text, s..s + needle.len()))
                .or_else(|| doc.spans().value(&f.pointer))
        };
        if f.mode == Mode::Expr && f.text.trim_start().starts_with("{{") {
            let inner = f
                .text
                .trim()
                .trim_start_matches("{{")
                .trim_end_matches("}}")
                .trim();
            out.push(
                Diagnostic::new("expression written as a template")
                    .at(doc.spans().value(&f.pointer))
                    .label("`{{ }}` is not needed here")
                    .hint(format!(
                        "`when` and `assert` take a bare expression; write `{inner}`"
                    )),
            );
            continue;
        }
        // Plain text has no references and no template syntax to get wrong.
        if f.mode == Mode::Template && !["{{", "{%", "{#"].iter().any(|t| f.text.contains(t)) {
            continue;
        }
        let refs = match template::references(&env, f.text, f.mode == Mode::Expr) {
            Ok(r) => r,
            Err(e) => {
                let span = e
                    .range()
                    .and_then(|r| doc.locate(&f.pointer, f.text, r))
                    .or_else(|| doc.spans().value(&f.pointer));
                let what = if f.mode == Mode::Expr {
                    "expression"
                } else {
                    "template"
                };
                out.push(
                    Diagnostic::new(format!(
                        "{what} syntax error: {}",
                        e.detail().unwrap_or("invalid syntax")
                    ))
                    .at(span)
                    .label("here")
                    .hint("templates use minijinja (Jinja2) syntax: `{{ params.name }}`, `{% if x %}…{% endif %}`"),
                );
                continue;
            }
        };
        for r in refs {
            let mut parts = r.split('.');
            let root = parts.next().unwrap_or_default();
            let name = parts.next();
            if template::GLOBALS.contains(&root) || f.scope.locals.contains(&root) {
                continue;
            }
            let d = match (root, name) {
                ("params", Some(n)) if !rb.params.contains_key(n) => Some(
                    Diagnostic::new(format!("undefined param `{n}`"))
                        .at(at_text(&format!("params.{n}")))
                        .label("not declared under `params`")
                        .hint(match did_you_mean(n, param_names.iter().copied()) {
                            Some(s) => format!("did you mean `params.{s}`?"),
                            None => format!("declare it under `params:`, such as `{n}: {{ type: string }}`"),
                        }),
                ),
                ("vars", Some(n)) => match rb.vars.get_index_of(n) {
                    None => Some(
                        Diagnostic::new(format!("undefined var `{n}`"))
                            .at(at_text(&format!("vars.{n}")))
                            .label("not declared under `vars`")
                            .hint(match did_you_mean(n, var_names.iter().copied()) {
                                Some(s) => format!("did you mean `vars.{s}`?"),
                                None => "declare it under `vars:`".into(),
                            }),
                    ),
                    Some(i) if f.scope.var_index.is_some_and(|me| i >= me) => Some(
                        Diagnostic::new(format!("var `{n}` is defined after the var that reads it"))
                            .at(at_text(&format!("vars.{n}")))
                            .label("not defined yet")
                            .hint("vars are computed in order; move this var below the one it reads"),
                    ),
                    Some(_) => None,
                },
                ("steps", _) if f.scope.var_index.is_some() => Some(
                    Diagnostic::new("vars cannot read step outputs")
                        .at(at_text("steps"))
                        .label("vars are computed before any step runs")
                        .hint("read `steps.…` directly in the step that needs it"),
                ),
                ("steps", Some(n)) => {
                    let readable = main_pos.get(n).is_some_and(|&p| p < f.scope.main_upto)
                        || f.scope.extra.iter().any(|e| e == n);
                    if readable {
                        None
                    } else if main_pos.contains_key(n) {
                        Some(
                            Diagnostic::new(format!("step `{n}` runs after the step that reads it"))
                                .at(at_text(&format!("steps.{n}")))
                                .label("not run yet at this point")
                                .hint("a step can read only the outputs of steps that run before it"),
                        )
                    } else if all_ids.contains(n) {
                        Some(
                            Diagnostic::new(format!("step `{n}` is a rollback or branch step and cannot be read here"))
                                .at(at_text(&format!("steps.{n}")))
                                .label("may never run")
                                .hint("read the outputs of main-line steps, which always run before this point"),
                        )
                    } else {
                        Some(
                            Diagnostic::new(format!("unknown step `{n}`"))
                                .at(at_text(&format!("steps.{n}")))
                                .label("no step has this id")
                                .hint(match did_you_mean(n, all_ids.iter().copied()) {
                                    Some(s) => format!("did you mean `steps.{s}`?"),
                                    None => "check the step's `id`".into(),
                                }),
                        )
                    }
                }
                ("metadata", Some(n)) if !["name", "version", "description", "owner", "labels"].contains(&n) => {
                    Some(
                        Diagnostic::new(format!("unknown metadata field `{n}`"))
                            .at(at_text(&format!("metadata.{n}")))
                            .label("not a metadata field")
                            .hint("templates can read metadata.name, version, description, owner and labels"),
                    )
                }
                ("run", Some(n)) if !template::RUN_FIELDS.contains(&n) => Some(
                    Diagnostic::new(format!("unknown run field `{n}`"))
                        .at(at_text(&format!("run.{n}")))
                        .label("not a run field")
                        .hint("templates can read run.id, run.started_at, run.status and run.failed_step"),
                ),
                (r, _) if !template::ROOTS.contains(&r) => {
                    let mut names: Vec<&str> = template::ROOTS.to_vec();
                    names.extend(f.scope.locals);
                    Some(
                        Diagnostic::new(format!("unknown name `{r}` in template"))
                            .at(at_text(r))
                            .label("not defined")
                            .hint(match did_you_mean(r, names.iter().copied()) {
                                Some(s) => format!("did you mean `{s}`?"),
                                None => format!("templates can read {}", crate::diag::one_of(&names)),
                            }),
                    )
                }
                _ => None,
            };
            out.extend(d);
        }
    }
}

/// Resolve params from defaults, the params file and `--set`, checking each.
fn resolve_params(
    doc: &Document,
    rb: &Runbook,
    inputs: &Inputs,
    check: ParamCheck,
    diags: &mut Vec<Diagnostic>,
) -> (Params, Vec<FileDiagnostics>) {
    let mut extra = Vec::new();
    let mut values: indexmap::IndexMap<String, ParamValue> = rb
        .params
        .iter()
        .map(|(name, p)| {
            let (value, origin) = match &p.default {
                Some(d) => (d.clone(), Origin::Default),
                None => (Value::Null, Origin::Unset),
            };
            (
                name.clone(),
                ParamValue {
                    value,
                    secret: p.secret,
                    origin,
                },
            )
        })
        .collect();
    let names: Vec<&str> = rb.params.keys().map(String::as_str).collect();
    let unknown_hint = |n: &str| match did_you_mean(n, names.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None if names.is_empty() => "this runbook declares no params".to_string(),
        None => format!("declared params: {}", crate::diag::one_of(&names)),
    };

    if let Some(path) = &inputs.params_file {
        let mut file_diags = Vec::new();
        match load::load_file(path) {
            Err(f) => {
                let f = *f;
                extra.push(FileDiagnostics {
                    source: f.source,
                    diagnostics: vec![f.diagnostic],
                });
            }
            Ok(pdoc) => {
                match pdoc.value.as_object() {
                    None if pdoc.value.is_null() => {}
                    None => file_diags.push(
                        Diagnostic::new("expected a mapping of param names to values")
                            .at(pdoc.spans().value(""))
                            .label("not a mapping")
                            .hint("write one `name: value` per line"),
                    ),
                    Some(map) => {
                        for (k, v) in map {
                            let p = format!("/{}", pointer_segment(k));
                            let Some(decl) = rb.params.get(k) else {
                                file_diags.push(
                                    Diagnostic::new(format!("unknown param `{k}`"))
                                        .at(pdoc.spans().key_or_value(&p))
                                        .label("not declared by the runbook")
                                        .hint(unknown_hint(k)),
                                );
                                continue;
                            };
                            match params::check_type(decl.ty, v)
                                .and_then(|()| params::check_constraints(decl, v))
                            {
                                Ok(()) => {
                                    let slot = &mut values[k.as_str()];
                                    slot.value = v.clone();
                                    slot.origin = Origin::ParamsFile;
                                }
                                Err(e) => file_diags.push(
                                    Diagnostic::new(format!("invalid value for param `{k}`"))
                                        .at(pdoc.spans().value(&p))
                                        .label(e)
                                        .maybe_hint(decl.description.clone()),
                                ),
                            }
                        }
                    }
                }
                extra.push(FileDiagnostics {
                    source: pdoc.source,
                    diagnostics: file_diags,
                });
            }
        }
    }

    let mut cli = Vec::new();
    for arg in &inputs.set {
        let text = format!("--set {arg}");
        let source = Source::new("command line", text.clone());
        let name_end = arg.find('=').unwrap_or(arg.len());
        let name = &arg[..name_end];
        let name_span = 6..6 + name.len();
        let d = if name_end == arg.len() {
            Some(
                Diagnostic::new(format!("`--set {arg}` has no value"))
                    .at(Some(name_span))
                    .label("expected name=value")
                    .hint(format!("write `--set {name}=VALUE`")),
            )
        } else if let Some(decl) = rb.params.get(name) {
            let raw = &arg[name_end + 1..];
            let value_span = 6 + name_end + 1..text.len();
            match params::parse_cli(decl.ty, raw)
                .and_then(|v| params::check_constraints(decl, &v).map(|()| v))
            {
                Ok(v) => {
                    let slot = &mut values[name];
                    slot.value = v;
                    slot.origin = Origin::Set;
                    None
                }
                Err(e) => Some(
                    Diagnostic::new(format!("invalid value for param `{name}`"))
                        .at(Some(value_span))
                        .label(e)
                        .maybe_hint(decl.description.clone()),
                ),
            }
        } else {
            Some(
                Diagnostic::new(format!("unknown param `{name}`"))
                    .at(Some(name_span))
                    .label("not declared by the runbook")
                    .hint(unknown_hint(name)),
            )
        };
        if let Some(d) = d {
            cli.push(FileDiagnostics {
                source,
                diagnostics: vec![d],
            });
        }
    }
    extra.extend(cli);

    if check == ParamCheck::RequireAll || !inputs.is_empty() {
        for (name, p) in &rb.params {
            if p.required && values[name.as_str()].origin == Origin::Unset {
                diags.push(
                    Diagnostic::new(format!("missing value for required param `{name}`"))
                        .at(doc
                            .spans()
                            .key_or_value(&format!("/params/{}", pointer_segment(name))))
                        .label("required")
                        .hint(format!(
                            "pass `--set {name}=VALUE` or put `{name}:` in a --params-file"
                        )),
                );
            }
        }
    }
    (Params(values), extra)
}
