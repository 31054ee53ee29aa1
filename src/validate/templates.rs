//! Templates: every templated field of a runbook, with its JSON pointer and
//! the scope it renders in (which steps' outputs exist by then), checked for
//! unknown names and for references to steps that have not run.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::diag::{Diagnostic, did_you_mean};
use crate::load::{Document, pointer_segment};
use crate::model::{self, Command, OnFailure, Runbook, Step, StepKind, When};
use crate::template;

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

    /// A check's templated fields: its query, or a built-in's arguments.
    /// `p` is where its `check:` key sits (a step, or a wait step's `wait`).
    fn check(&mut self, check: &'a crate::model::CheckStep, p: &str, scope: &Scope) {
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
                        self.push(format!("{p}/check/tables/{i}"), t, Mode::Template, scope);
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

    // Long by design: one arm per step kind, naming its templated fields
    // and the pointer of each.
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
            StepKind::Check(check) => self.check(check, p, scope),
            StepKind::Wait(w) => self.check(&w.check, &format!("{p}/wait"), scope),
            StepKind::Watch(w) => self.check(&w.check, &format!("{p}/watch"), scope),
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

pub(super) fn check_templates(doc: &Document, rb: &Runbook, out: &mut Vec<Diagnostic>) {
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

#[cfg(test)]
mod tests {
    use crate::validate::{Inputs, ParamCheck, validate_doc};

    fn messages(yaml: &str) -> Vec<String> {
        let doc = crate::load::load_str("t.yml", yaml).expect("loads");
        match validate_doc(doc, &Inputs::default(), ParamCheck::RequireAll) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .files
                .iter()
                .flat_map(|f| f.diagnostics.iter().map(|d| d.message.clone()))
                .collect(),
        }
    }

    fn runbook(steps: &str) -> String {
        format!(
            "apiVersion: runbook/v1\nkind: Runbook\nmetadata: {{ name: t, version: 1 }}\nphases:\n  - id: p\n    kind: custom\n    steps:\n{steps}"
        )
    }

    /// A step may read the outputs of steps before it, never after it, and
    /// names it does not know are refused.
    #[test]
    fn references_reach_back_never_forward() {
        let back = runbook(
            "      - id: first\n        sql: SELECT 1\n      - id: second\n        sql: SELECT {{ steps.first.rows_affected }}\n",
        );
        assert_eq!(messages(&back), Vec::<String>::new());
        let forward = runbook(
            "      - id: first\n        sql: SELECT {{ steps.second.rows_affected }}\n      - id: second\n        sql: SELECT 1\n",
        );
        let m = messages(&forward);
        assert!(m.iter().any(|x| x.contains("second")), "{m:?}");
        let unknown = runbook("      - id: first\n        sql: SELECT {{ nope.x }}\n");
        let m = messages(&unknown);
        assert!(!m.is_empty(), "an unknown name is refused");
    }
}
