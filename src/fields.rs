//! The templated fields of a runbook: one walk over the model that yields
//! every field a template may appear in, with its JSON pointer (short form
//! or mapping form, as the file wrote it), how its text is read (a template
//! or a bare expression), and which step outputs it may read.
//!
//! This is the only place that knows where a templated field sits in the
//! document. Validation checks each field's references; the planner renders
//! the same fields and finds each one's pointer here ([`Fields::pointer_of`])
//! instead of building it by hand, so the two cannot drift apart.

use std::collections::HashMap;

use serde_json::Value;

use crate::checks::{self, ArgKind};
use crate::load::{Document, pointer_segment};
use crate::model::{
    CheckStep, Command, DurationSetting, OnFailure, Runbook, Scratch, Step, StepKind, VerdictList,
    When,
};

/// How a field's text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Text with `{{ }}` and `{% %}` in it.
    Template,
    /// A bare expression (`when`, `assert`, a `steps.X` reference).
    Expr,
}

/// Which step outputs and locals a field may read.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Main-line steps before this index are readable.
    pub main_upto: usize,
    /// Earlier steps of the same branch or compensation list.
    pub extra: Vec<String>,
    /// Names bound by the step itself (`row`, `rows` in checks).
    pub locals: &'static [&'static str],
    /// Inside `vars`: the index of the var being defined.
    pub var_index: Option<usize>,
    /// A main-line step (its compensations may read it).
    main_line: bool,
}

/// One templated field.
#[derive(Debug)]
pub struct Field<'a> {
    pub pointer: String,
    /// Borrowed from the runbook, so that its address identifies it.
    pub text: &'a str,
    pub mode: Mode,
    pub scope: Scope,
}

/// Every templated field of a runbook, in document order.
pub struct Fields<'a> {
    pub list: Vec<Field<'a>>,
    /// The main-line step ids, in run order.
    pub main: Vec<&'a str>,
    by_address: HashMap<(usize, usize), usize>,
}

impl<'a> Fields<'a> {
    pub fn of(doc: &'a Document, rb: &'a Runbook) -> Fields<'a> {
        let mut w = Walker {
            doc,
            fields: Vec::new(),
            main: Vec::new(),
        };
        w.runbook(rb);
        let by_address = w
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| (address(f.text), i))
            .collect();
        Fields {
            list: w.fields,
            main: w.main,
            by_address,
        }
    }

    /// The pointer of a field, found by the address of its text in the
    /// runbook: the caller passes the `&str` it borrowed from the model.
    /// Empty texts share one address; they render to nothing and never need
    /// a position, so whichever pointer comes back is harmless.
    pub fn pointer_of(&self, text: &str) -> Option<&str> {
        self.by_address
            .get(&address(text))
            .map(|&i| self.list[i].pointer.as_str())
    }
}

fn address(text: &str) -> (usize, usize) {
    (text.as_ptr() as usize, text.len())
}

struct Walker<'a> {
    doc: &'a Document,
    fields: Vec<Field<'a>>,
    main: Vec<&'a str>,
}

const CHECK_LOCALS: &[&str] = &["row", "rows"];
/// A rehearsal's tool commands run once per migration.
const TOOL_LOCALS: &[&str] = &["migration"];

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

    /// `{p}/{key}` when the file wrote the short form (a scalar or a list),
    /// `{p}/{key}/{long}` when it wrote a mapping. `node` is the file's
    /// value at `p`: found once per step, not by a pointer from the root
    /// for each field.
    fn short_or_long(node: Option<&Value>, p: &str, key: &str, long: &str) -> String {
        let short = format!("{p}/{key}");
        if node.and_then(|n| n.get(key)).is_some_and(Value::is_object) {
            format!("{short}/{long}")
        } else {
            short
        }
    }

    fn runbook(&mut self, rb: &'a Runbook) {
        for (i, (name, v)) in rb.vars.iter().enumerate() {
            let scope = Scope {
                var_index: Some(i),
                ..Scope::default()
            };
            self.strings(v, format!("/vars/{}", pointer_segment(name)), &scope);
        }
        if let Some(url) = &rb.database.url {
            self.push(
                "/database/url".into(),
                url,
                Mode::Template,
                &Scope::default(),
            );
        }
        let value = &self.doc.value;
        for (pi, phase) in rb.phases.iter().enumerate() {
            let phase_node = value.get("phases").and_then(|p| p.get(pi));
            let phase_scope = Scope {
                main_upto: self.main.len(),
                ..Scope::default()
            };
            self.when(&phase.when, &format!("/phases/{pi}"), &phase_scope);
            if let Some(prompt) = phase.approval.as_ref().and_then(|a| a.prompt.as_ref()) {
                self.push(
                    format!("/phases/{pi}/approval/prompt"),
                    prompt,
                    Mode::Template,
                    &phase_scope,
                );
            }
            for (si, step) in phase.steps.iter().enumerate() {
                let scope = Scope {
                    main_upto: self.main.len(),
                    main_line: true,
                    ..Scope::default()
                };
                let node = phase_node.and_then(|p| p.get("steps")?.get(si));
                self.step(step, &format!("/phases/{pi}/steps/{si}"), node, &scope);
                self.main.push(&step.id);
            }
            if let OnFailure::Steps(branch) = &phase.on_failure {
                let scope = Scope {
                    main_upto: self.main.len(),
                    ..Scope::default()
                };
                let node = phase_node.and_then(|p| p.get("on_failure"));
                self.list(branch, &format!("/phases/{pi}/on_failure"), node, scope);
            }
        }
        // A trigger runs between any two steps: it reads params and vars.
        for (i, t) in rb.abort_when.iter().enumerate() {
            let p = format!("/abort_when/{i}");
            let node = self.doc.at(&p);
            self.check(&t.check, &p, node, &Scope::default());
        }
        let all = Scope {
            main_upto: self.main.len(),
            ..Scope::default()
        };
        self.list(
            &rb.on_failure,
            "/on_failure",
            value.get("on_failure"),
            all.clone(),
        );
        self.list(&rb.finally, "/finally", value.get("finally"), all);
    }

    /// Every string inside a var's value (vars may be lists and mappings).
    fn strings(&mut self, v: &'a Value, pointer: String, scope: &Scope) {
        match v {
            Value::String(s) => self.push(pointer, s, Mode::Template, scope),
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    self.strings(x, format!("{pointer}/{i}"), scope);
                }
            }
            Value::Object(m) => {
                for (k, x) in m {
                    self.strings(x, format!("{pointer}/{}", pointer_segment(k)), scope);
                }
            }
            _ => {}
        }
    }

    /// A check's templated fields: its query, or a built-in's arguments as
    /// the catalog types them. `p` is where its `check:` key sits (a step,
    /// or a wait step's `wait`), and `node` the file's value there.
    fn check(&mut self, check: &'a CheckStep, p: &str, node: Option<&Value>, scope: &Scope) {
        if let Some(db) = &check.database {
            self.push(format!("{p}/check/database"), db, Mode::Template, scope);
        }
        match &check.builtin {
            None => {
                let at = Walker::short_or_long(node, p, "check", "query");
                self.push(at, &check.query, Mode::Template, scope);
            }
            Some(b) => {
                let kinds = checks::find(&b.name).map_or(&[][..], |d| d.args);
                for (k, v) in &b.args {
                    let Some(kind) = kinds.iter().find(|a| a.name == k).map(|a| a.kind) else {
                        continue;
                    };
                    let at = format!("{p}/check/{}", pointer_segment(k));
                    match (kind, v) {
                        (ArgKind::Text, Value::String(t)) => {
                            self.push(at, t, Mode::Template, scope);
                        }
                        // `steps.X` is a reference, checked for scope and order.
                        (ArgKind::StepRef, Value::String(t)) => {
                            self.push(at, t, Mode::Expr, scope);
                        }
                        (ArgKind::Tables, Value::Array(list)) => {
                            for (i, x) in list.iter().enumerate() {
                                if let Value::String(t) = x {
                                    self.push(format!("{at}/{i}"), t, Mode::Template, scope);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        let local = Scope {
            locals: CHECK_LOCALS,
            ..scope.clone()
        };
        for (col, matcher) in &check.expect {
            let base = format!("{p}/check/expect/{}", pointer_segment(col));
            let plain = !node
                .and_then(|n| n.get("check")?.get("expect")?.get(col))
                .is_some_and(Value::is_object);
            for (op, v) in &matcher.ops {
                let at = if plain {
                    base.clone()
                } else {
                    format!("{base}/{}", op.name())
                };
                match v {
                    Value::String(s) => self.push(at, s, Mode::Template, &local),
                    Value::Array(a) => {
                        for (i, x) in a.iter().enumerate() {
                            if let Value::String(s) = x {
                                self.push(format!("{at}/{i}"), s, Mode::Template, &local);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        for (i, a) in check.assert.iter().enumerate() {
            self.push(format!("{p}/check/assert/{i}"), a, Mode::Expr, &local);
        }
    }

    // Long by design: one arm per step kind, naming its templated fields
    // and the pointer of each. A new step kind adds its arm here.
    /// `node`: the file's value at `p`, handed down by the caller: a
    /// pointer from the root for each step cost more than the rest of
    /// the walk.
    fn step(&mut self, step: &'a Step, p: &str, node: Option<&'a Value>, scope: &Scope) {
        self.when(&step.when, p, scope);
        let t = Mode::Template;
        match &step.kind {
            StepKind::Sql(sql) => {
                let at = Walker::short_or_long(node, p, "sql", "statements");
                self.push(at, &sql.statements, t, scope);
            }
            StepKind::Check(check) => self.check(check, p, node, scope),
            StepKind::Wait(w) => {
                let wait = node.and_then(|n| n.get("wait"));
                self.check(&w.check, &format!("{p}/wait"), wait, scope);
                if let DurationSetting::Template(d) = &w.timeout {
                    self.push(format!("{p}/wait/timeout"), d, t, scope);
                }
            }
            StepKind::Watch(w) => {
                let watch = node.and_then(|n| n.get("watch"));
                self.check(&w.check, &format!("{p}/watch"), watch, scope);
                if let DurationSetting::Template(d) = &w.duration {
                    self.push(format!("{p}/watch/duration"), d, t, scope);
                }
            }
            StepKind::Shell(shell) => {
                let cmd = Walker::short_or_long(node, p, "shell", "command");
                match &shell.command {
                    Command::Script(s) => self.push(cmd, s, t, scope),
                    Command::Argv(argv) => {
                        for (i, a) in argv.iter().enumerate() {
                            self.push(format!("{cmd}/{i}"), a, t, scope);
                        }
                    }
                }
                for (k, v) in &shell.env {
                    self.push(format!("{p}/shell/env/{}", pointer_segment(k)), v, t, scope);
                }
                if let Some(cwd) = &shell.cwd {
                    self.push(format!("{p}/shell/cwd"), cwd, t, scope);
                }
            }
            StepKind::Sleep(_) => {}
            StepKind::Backfill(b) => {
                let base = format!("{p}/backfill");
                self.push(format!("{base}/table"), &b.table, t, scope);
                self.push(format!("{base}/set"), &b.set, t, scope);
                if let Some(w) = &b.where_ {
                    self.push(format!("{base}/where"), w, t, scope);
                }
            }
            StepKind::Backup(b) => {
                let base = format!("{p}/backup");
                // Without `path`, the default is rendered: it belongs to
                // the `backup` mapping that left it out.
                let path = format!("{base}/path");
                if node.and_then(|n| n.get("backup")?.get("path")).is_some() {
                    self.push(path, &b.path, t, scope);
                } else {
                    self.push(base.clone(), &b.path, t, scope);
                }
                for (key, list) in [
                    ("tables", &b.tables),
                    ("exclude_tables", &b.exclude_tables),
                    ("schemas", &b.schemas),
                    ("exclude_schemas", &b.exclude_schemas),
                ] {
                    for (i, x) in list.iter().enumerate() {
                        self.push(format!("{base}/{key}/{i}"), x, t, scope);
                    }
                }
                if let Some(k) = &b.keep {
                    self.push(format!("{base}/keep"), k, t, scope);
                }
                if let Some(DurationSetting::Template(d)) = &b.keep_for {
                    self.push(format!("{base}/keep_for"), d, t, scope);
                }
            }
            StepKind::Restore(r) => {
                let base = format!("{p}/restore");
                // `steps.X` is a reference: checked as an expression, so a
                // backup that runs later or not at all is caught here.
                let mode = if r.from_step().is_some() {
                    Mode::Expr
                } else {
                    t
                };
                self.push(format!("{base}/from"), &r.from, mode, scope);
                if let Some(target) = &r.target {
                    self.push(format!("{base}/target"), target, t, scope);
                }
            }
            StepKind::Migrate(m) => {
                let base = format!("{p}/migrate");
                self.push(format!("{base}/dir"), &m.dir, t, scope);
                if let Some(to) = &m.to {
                    self.push(format!("{base}/to"), to, t, scope);
                }
                if let Some(n) = &m.steps {
                    self.push(format!("{base}/steps"), n, t, scope);
                }
                if let Some(c) = &m.contexts {
                    self.push(format!("{base}/contexts"), c, t, scope);
                }
                if let Some(f) = &m.label_filter {
                    self.push(format!("{base}/label_filter"), f, t, scope);
                }
            }
            StepKind::Snapshot(x) => {
                if let Some(db) = &x.database {
                    self.push(format!("{p}/snapshot/database"), db, t, scope);
                }
                if let Some(save) = &x.save {
                    self.push(format!("{p}/snapshot/save"), save, t, scope);
                }
                if let Some(same) = x.expect.as_ref().and_then(|e| e.same_as.as_ref()) {
                    self.push(
                        format!("{p}/snapshot/expect/same_as"),
                        same,
                        Mode::Expr,
                        scope,
                    );
                }
            }
            StepKind::Rehearse(x) => {
                let base = format!("{p}/rehearse");
                self.push(format!("{base}/dir"), &x.dir, t, scope);
                if let Some(VerdictList::Template(errors)) = &x.errors {
                    self.push(format!("{base}/errors"), errors, t, scope);
                }
                if let Some(DurationSetting::Template(slow)) = &x.slow_threshold {
                    self.push(format!("{base}/slow_threshold"), slow, t, scope);
                }
                if let Some(seed) = &x.seed {
                    self.push(format!("{base}/seed"), seed, t, scope);
                }
                if let Some(c) = &x.contexts {
                    self.push(format!("{base}/contexts"), c, t, scope);
                }
                if let Some(f) = &x.label_filter {
                    self.push(format!("{base}/label_filter"), f, t, scope);
                }
                if let Some(to) = &x.to {
                    self.push(format!("{base}/to"), to, t, scope);
                }
                if let Some(Scratch::Backup { from }) = &x.scratch {
                    self.push(format!("{base}/scratch/from"), from, Mode::Expr, scope);
                }
                if let Some(tool) = &x.tool {
                    let per_migration = Scope {
                        locals: TOOL_LOCALS,
                        ..scope.clone()
                    };
                    self.push(format!("{base}/tool/up"), &tool.up, t, &per_migration);
                    if let Some(down) = &tool.down {
                        self.push(format!("{base}/tool/down"), down, t, &per_migration);
                    }
                    if let Some(list) = &tool.list {
                        self.push(format!("{base}/tool/list"), list, t, scope);
                    }
                    if let Some(cwd) = &tool.cwd {
                        self.push(format!("{base}/tool/cwd"), cwd, t, scope);
                    }
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
            let rollback = node.and_then(|n| n.get("rollback"));
            self.step(&step.rollback[0], &format!("{p}/rollback"), rollback, &comp);
        } else {
            let rollback = node.and_then(|n| n.get("rollback"));
            self.list(&step.rollback, &format!("{p}/rollback"), rollback, comp);
        }
    }

    /// A branch or compensation list: each step may read its earlier siblings.
    fn list(&mut self, steps: &'a [Step], base: &str, node: Option<&'a Value>, mut scope: Scope) {
        for (i, s) in steps.iter().enumerate() {
            self.step(
                s,
                &format!("{base}/{i}"),
                node.and_then(|n| n.get(i)),
                &scope,
            );
            scope.extra.push(s.id.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{Inputs, ParamCheck, validate_doc};

    /// Every field's pointer names the very text the walk borrowed: the
    /// same string in the document, in every ready runbook and example
    /// (between them they use every step kind, both forms of each).
    #[test]
    fn each_pointer_names_its_text_in_the_document() {
        let root = env!("CARGO_MANIFEST_DIR");
        let mut files = Vec::new();
        for dir in ["runbooks", "examples", "tests/fixtures"] {
            collect_yaml(&std::path::Path::new(root).join(dir), &mut files);
        }
        let mut seen = 0;
        for path in files {
            // Some invalid fixtures are not even UTF-8.
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            if !text.contains("kind: Runbook") {
                continue;
            }
            let Ok(doc) = crate::load::load_str(path.display().to_string(), &text) else {
                continue;
            };
            let Ok(v) = validate_doc(doc, &Inputs::default(), ParamCheck::GivenOnly) else {
                continue;
            };
            let fields = Fields::of(&v.doc, &v.runbook);
            for f in &fields.list {
                // A number written bare (`steps: 5`) is read as text; a
                // default (a backup's path) points at the mapping without it.
                let at = v.doc.at(&f.pointer).map(|x| match x {
                    Value::String(s) => s.clone(),
                    Value::Object(_) => f.text.to_string(),
                    other => other.to_string(),
                });
                assert_eq!(
                    at.as_deref(),
                    Some(f.text),
                    "{}: {} does not hold the field's text",
                    path.display(),
                    f.pointer
                );
                assert_eq!(fields.pointer_of(f.text), Some(f.pointer.as_str()));
                seen += 1;
            }
        }
        assert!(seen > 50, "only {seen} fields were checked");
    }

    fn collect_yaml(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                collect_yaml(&p, out);
            } else if p.extension().is_some_and(|x| x == "yml" || x == "yaml") {
                out.push(p);
            }
        }
    }
}
