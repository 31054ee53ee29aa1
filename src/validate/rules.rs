//! The semantic rules a runbook must meet beyond its schema: durations,
//! check shapes, migration directories, built-ins, transaction control,
//! backup and restore pairs, step ids and param declarations.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use crate::diag::Diagnostic;
use crate::duration::{Duration, DurationError};
use crate::load::{Document, pointer_segment};
use crate::model::{self, Runbook, StepKind, Steps};
use crate::params;
use crate::source::Span;

use super::templates::check_templates;

/// Every rule beyond the schema, problems collected in order.
pub(super) fn semantic(doc: &Document, rb: &Runbook) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    // Every step with its pointer, listed once for all the rules.
    let steps = rb.all_steps();
    check_ids(doc, rb, &steps, &mut out);
    check_param_declarations(doc, rb, &mut out);
    check_templates(doc, rb, &steps, &mut out);
    check_backup_restore(doc, &steps, &mut out);
    check_transaction_control(doc, &steps, &mut out);
    check_builtins(doc, rb, &steps, &mut out);
    check_check_shapes(doc, rb, &steps, &mut out);
    check_migrations(doc, &steps, &mut out);
    check_backfills(doc, &steps, &mut out);
    check_watch_timeouts(doc, rb, &steps, &mut out);
    out
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
    "batch_time",
    "max_replica_lag",
    "initial",
    "max",
    "interval",
    "duration",
];

/// Durations whose syntax the schema accepted but whose size is absurd.
pub(super) fn check_durations(doc: &Document) -> Vec<Diagnostic> {
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

/// `text` with each `{{ ... }}` as a name (which parses as a value and as a
/// table) and each `{% ... %}` removed, so
/// that SQL holding templates can be parsed for its shape.
/// Text without a semicolon is at most one statement, and one that begins
/// with the keyword SELECT returns rows: what parsing it would conclude,
/// for a fraction of the cost (a long runbook has hundreds of checks).
fn plainly_one_select(sql: &str) -> bool {
    let t = sql.trim_start();
    !sql.contains(';')
        && t.get(..6).is_some_and(|k| k.eq_ignore_ascii_case("select"))
        && t[6..].starts_with(|c: char| c.is_whitespace() || c == '(' || c == '*')
}

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

/// Every check of the runbook, with the pointer of its `check:` key: check
/// steps, and the check a wait or a watch step repeats.
fn checks_of<'a>(
    rb: &'a Runbook,
    steps: &Steps<'a>,
) -> Vec<(String, &'a str, &'a model::CheckStep)> {
    let mut out: Vec<(String, &str, &model::CheckStep)> = steps
        .iter()
        .filter_map(|(pointer, step)| match &step.kind {
            StepKind::Check(c) => Some((format!("{pointer}/check"), step.id.as_str(), c)),
            StepKind::Wait(w) => {
                Some((format!("{pointer}/wait/check"), step.id.as_str(), &w.check))
            }
            StepKind::Watch(w) => {
                Some((format!("{pointer}/watch/check"), step.id.as_str(), &w.check))
            }
            _ => None,
        })
        .collect();
    for (i, t) in rb.abort_when.iter().enumerate() {
        out.push((format!("/abort_when/{i}/check"), t.id.as_str(), &t.check));
    }
    out
}

/// A watch must be able to finish: a step timeout (its own or the
/// runbook's default) no longer than its `duration` would end every run of
/// it as timed out.
fn check_watch_timeouts(
    doc: &Document,
    rb: &Runbook,
    steps: &Steps<'_>,
    out: &mut Vec<Diagnostic>,
) {
    for (pointer, step) in steps {
        let StepKind::Watch(w) = &step.kind else {
            continue;
        };
        // A templated duration is known once rendered: the plan checks it.
        let crate::model::DurationSetting::Fixed(duration) = &w.duration else {
            continue;
        };
        let Some(t) = step.timeout.or(rb.defaults.timeout) else {
            continue;
        };
        if t.0 <= duration.0 {
            out.push(
                Diagnostic::new(format!(
                    "watch `{}` holds for {}, but its step times out after {t}: it could never finish",
                    step.id, duration
                ))
                .at(doc.spans().value(&format!("{pointer}/watch/duration")))
                .label("longer than the step's timeout")
                .hint("set the step's `timeout:` above `duration` (a minute more leaves room for the last sample)"),
            );
        }
    }
}

/// A check checks something: a query (one statement that returns rows)
/// or a built-in, not both and not neither.
fn check_check_shapes(doc: &Document, rb: &Runbook, steps: &Steps<'_>, out: &mut Vec<Diagnostic>) {
    for (base, id, c) in checks_of(rb, steps) {
        let short = doc.at(&base).is_some_and(Value::is_string);
        // Spans are only for messages: a valid file never builds them.
        let query_at = || {
            if short {
                doc.spans().value(&base)
            } else {
                doc.spans().value(&format!("{base}/query"))
            }
        };
        if c.builtin.is_some() {
            if !c.query.trim().is_empty() {
                out.push(
                    Diagnostic::new(format!(
                        "check `{}` has both `builtin` and `query`; a built-in check runs its own SQL, so the query would be ignored",
                        id
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
                Diagnostic::new(format!("check `{}` has no query: it checks nothing", id))
                    .at(doc.spans().key_or_value(&base))
                    .label("no `query` and no `builtin`")
                    .hint("add `query: SELECT ...` with `expect:` or `assert:`, or `builtin: NAME` (docs/checks.md)"),
            );
            continue;
        }
        // Templates are not SQL: each stands for one value here.
        let sql = without_templates(&c.query);
        if plainly_one_select(&sql) {
            continue;
        }
        let stmts = crate::pg::statements::split(&sql);
        let returns_rows = |kind: &str| {
            kind.contains("SELECT") || matches!(kind, "VALUES" | "TABLE" | "SHOW" | "unparsed")
        };
        if stmts.len() > 1 {
            out.push(
                Diagnostic::new(format!(
                    "check `{}` has {} statements; a check query is one statement that returns rows",
                    id,
                    stmts.len()
                ))
                .at(query_at())
                .label("more than one statement")
                .hint("keep the one whose rows are checked; each other check is a step of its own"),
            );
        } else if let Some(st) = stmts.first()
            && !returns_rows(&st.kind)
        {
            out.push(
                Diagnostic::new(format!(
                    "check `{}` runs `{}`, which returns no rows to check; a check is read-only",
                    id, st.kind
                ))
                .at(query_at())
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
/// How far a `migrate` step goes: a down needs `to` or `steps`, and each
/// must read as a version or a count unless a template decides it.
fn check_migrate_bounds(
    doc: &Document,
    base: &str,
    m: &model::MigrateStep,
    out: &mut Vec<Diagnostic>,
) {
    if m.direction == model::Direction::Down && m.to.is_none() && m.steps.is_none() {
        out.push(
            Diagnostic::new("a down migration needs `to` or `steps`")
                .at(doc.spans().key_or_value(&format!("{base}/direction")))
                .label("how far down?")
                .hint("`steps: 1` rolls back the newest migration; `to: 0` rolls back all of them"),
        );
    }
    if let Some(to) = &m.to
        && !to.contains("{{")
        && let Err((label, hint)) = crate::migrations::check_target(to, m.direction)
    {
        out.push(
            Diagnostic::new(format!("`to: {to}` is not a version"))
                .at(doc.spans().value(&format!("{base}/to")))
                .label(label)
                .hint(hint),
        );
    }
    if let Some(n) = &m.steps
        && !n.contains("{{")
        && let Err(why) = crate::migrations::parse_steps(n)
    {
        out.push(
            Diagnostic::new(format!("`steps: {n}` {why}"))
                .at(doc.spans().value(&format!("{base}/steps")))
                .label("expected a whole number, 1 or more")
                .hint("`steps: 1` rolls back (or applies) one migration; a template such as \"{{ params.steps }}\" is checked once rendered"),
        );
    }
}

fn check_migrations(doc: &Document, steps: &Steps<'_>, out: &mut Vec<Diagnostic>) {
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
        if crate::template::is_template(dir) {
            return;
        }
        let format = match crate::migrations::Format::parse(format.as_deref().unwrap_or("auto")) {
            Ok(f) => f,
            Err(_) => return, // the schema's enum reports it
        };
        if let Err(e) = crate::migrations::load(&base_dir.join(dir), format) {
            out.push(
                Diagnostic::new(e.to_string())
                    .at(doc.spans().value(&format!("{pointer}/dir")))
                    .label("this migration directory")
                    .hint(e.hint().unwrap_or("paths are relative to the runbook's directory; `format:` names the layout when detection cannot")),
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
    for (pointer, step) in steps {
        match &step.kind {
            StepKind::Migrate(m) => {
                let base = format!("{pointer}/migrate");
                dir_check(&base, &m.dir, &m.format, out);
                check_migrate_bounds(doc, &base, m, out);
            }
            StepKind::Rehearse(x) => {
                let base = format!("{pointer}/rehearse");
                if let Some(to) = &x.to
                    && !to.contains("{{")
                    && let Err((label, _)) =
                        crate::migrations::check_target(to, model::Direction::Up)
                {
                    out.push(
                        Diagnostic::new(format!("`to: {to}` is not a version"))
                            .at(doc.spans().value(&format!("{base}/to")))
                            .label(label)
                            .hint(crate::plan::REHEARSAL_TO),
                    );
                }
                match &x.tool {
                    None => dir_check(&base, &x.dir, &x.format, out),
                    // Its `list` command names them at run time; nothing runs now.
                    Some(t) if t.list.is_some() => {}
                    Some(t) if !x.dir.contains("{{") => {
                        if let Err(e) = crate::migrations::tool_set(
                            &base_dir.join(&x.dir),
                            None,
                            t.down.is_some(),
                        ) {
                            out.push(
                                Diagnostic::new(e.to_string())
                                    .at(doc.spans().value(&format!("{base}/dir")))
                                    .label("the tool's migration directory")
                                    .hint("the tool's migrations are the entries whose names start with a digit; `tool.list` prints them when the directory does not"),
                            );
                        }
                    }
                    Some(_) => {}
                }
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

/// The shortest `batch_time`: below it, a batch's own round trips and
/// commit are most of its time, and sizing by time means little.
const MIN_BATCH_TIME: std::time::Duration = std::time::Duration::from_millis(10);

/// `batch_time` and `max_batch_size` of backfills: the cap belongs to the
/// sizing by time, holds at least the first batch, and the time is long
/// enough to size by.
fn check_backfills(doc: &Document, steps: &Steps<'_>, out: &mut Vec<Diagnostic>) {
    for (pointer, step) in steps {
        let StepKind::Backfill(b) = &step.kind else {
            continue;
        };
        let base = format!("{pointer}/backfill");
        match (b.batch_time, b.max_batch_size) {
            (None, Some(_)) => out.push(
                Diagnostic::new("`max_batch_size` is set without `batch_time`")
                    .at(doc.spans().key_or_value(&format!("{base}/max_batch_size")))
                    .label("caps batches sized by time")
                    .hint("add `batch_time: 200ms` to size batches by time, or use `batch_size` for a fixed size"),
            ),
            (Some(t), _) if t.0 < MIN_BATCH_TIME => out.push(
                Diagnostic::new(format!("`batch_time: {t}` is too short to size batches by"))
                    .at(doc.spans().value(&format!("{base}/batch_time")))
                    .label("at least 10ms")
                    .hint("a batch's round trips and commit alone take milliseconds; 100ms to 500ms keeps row locks short"),
            ),
            (Some(_), cap) => {
                let max = cap.unwrap_or(model::DEFAULT_MAX_BATCH_SIZE);
                // The key the user wrote: the cap, or (under the default
                // cap) the first size.
                let at = if cap.is_some() { "max_batch_size" } else { "batch_size" };
                if b.batch_size > max {
                    out.push(
                        Diagnostic::new(format!(
                            "the first batch (`batch_size: {}`) is larger than `max_batch_size` ({max})",
                            b.batch_size
                        ))
                        .at(doc.spans().value(&format!("{base}/{at}")))
                        .label("the first batch must fit under the cap")
                        .hint("with `batch_time`, `batch_size` is where sizing starts: keep it at or below `max_batch_size`"),
                    );
                }
            }
            (None, None) => {}
        }
    }
}

/// Option combinations pg_dump and pg_restore would refuse, and restores
/// that name a step which is not a backup.
/// Built-in checks: each argument belongs to the check, required ones are
/// there, and values have the right kind (the schema only knows the union).
fn check_builtins(doc: &Document, rb: &Runbook, steps: &Steps<'_>, out: &mut Vec<Diagnostic>) {
    use crate::checks::{self, ArgKind};
    for (base, _, c) in checks_of(rb, steps) {
        let at = |key: &str| doc.spans().value(&format!("{base}/{key}"));
        let key_at = |key: &str| doc.spans().key_or_value(&format!("{base}/{key}"));
        let Some(b) = &c.builtin else {
            // Arguments without `builtin` belong to nothing.
            if let Some(Value::Object(m)) = doc.at(&base) {
                for k in m.keys() {
                    if !["query", "expect", "assert", "severity", "database"].contains(&k.as_str())
                    {
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
                ArgKind::Bool => (!v.is_boolean()).then_some("true or false"),
            };
            // pending_migrations' `to` is a migrate step's `to` going up.
            if def.name == "pending_migrations"
                && k == "to"
                && let Some(to) = v.as_str().filter(|t| !t.contains("{{"))
                && let Err((label, _)) =
                    crate::migrations::check_target(to.trim(), model::Direction::Up)
            {
                out.push(
                    Diagnostic::new(format!("`to: {to}` is not a version"))
                        .at(at(k))
                        .label(label)
                        .hint(checks::PENDING_TO_HINT),
                );
            }
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
fn check_transaction_control(doc: &Document, steps: &Steps<'_>, out: &mut Vec<Diagnostic>) {
    for (pointer, step) in steps {
        let StepKind::Sql(sql) = &step.kind else {
            continue;
        };
        if !sql.transaction || crate::template::is_template(&sql.statements) {
            continue;
        }
        let field = if doc
            .at(&format!("{pointer}/sql"))
            .is_some_and(serde_json::Value::is_object)
        {
            format!("{pointer}/sql/statements")
        } else {
            format!("{pointer}/sql")
        };
        for st in crate::pg::statements::split(&sql.statements) {
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

fn check_backup_restore(doc: &Document, steps: &Steps<'_>, out: &mut Vec<Diagnostic>) {
    let kinds: HashMap<&str, &'static str> = steps
        .iter()
        .map(|(_, s)| (s.id.as_str(), s.kind.name()))
        .collect();
    for (pointer, step) in steps {
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
                if r.pick.is_some()
                    && let Some(id) = r.from_step()
                {
                    out.push(
                        Diagnostic::new(format!(
                            "`pick` chooses among the backups of a directory, and `from: steps.{id}` names one backup"
                        ))
                        .at(at("pick"))
                        .label("a step's backup is already one backup")
                        .hint("give `from` the directory the backups are in (the parent of the backup step's `path`), or drop `pick`"),
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

fn check_ids(doc: &Document, rb: &Runbook, steps: &Steps<'_>, out: &mut Vec<Diagnostic>) {
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
    // Triggers share the steps' ids: events and reports name both by id.
    let triggers = rb
        .abort_when
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("/abort_when/{i}"), t.id.as_str()));
    let ids = steps
        .iter()
        .map(|(p, s)| (p.clone(), s.id.as_str()))
        .chain(triggers);
    let mut seen: HashMap<&str, String> = HashMap::new();
    for (pointer, id) in ids {
        if let Some(first) = seen.get(id) {
            let first = doc.spans().value(&format!("{first}/id"));
            out.push(
                Diagnostic::new(format!("duplicate step id `{id}`"))
                    .at(doc.spans().value(&format!("{pointer}/id")))
                    .label("used again here")
                    .hint(format!(
                        "step ids must be unique in the runbook (first used{}); rename one of them",
                        line_of(doc, &first)
                    )),
            );
        } else {
            seen.insert(id, pointer);
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
