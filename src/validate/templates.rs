//! Templates: every templated field of a runbook (found by
//! [`crate::fields`], with its pointer and the scope it renders in) checked
//! for unknown names and for references to steps that have not run.

use std::collections::{HashMap, HashSet};

use crate::diag::{Diagnostic, did_you_mean};
use crate::fields::{Field, Fields, Mode};
use crate::load::Document;
use crate::model::Runbook;
use crate::template;

pub(super) fn check_templates(
    doc: &Document,
    rb: &Runbook,
    steps: &crate::model::Steps<'_>,
    out: &mut Vec<Diagnostic>,
) {
    let env = template::environment();
    let Fields {
        list: fields, main, ..
    } = Fields::of(doc, rb);
    let texts: Vec<(String, &str)> = fields.iter().map(|f| (f.pointer.clone(), f.text)).collect();
    let mut cache = template::References::default();
    crate::injection::check(doc, rb, &texts, &mut cache, out);
    let names = Names {
        rb,
        main_pos: main.iter().enumerate().map(|(i, id)| (*id, i)).collect(),
        all_ids: steps.iter().map(|(_, s)| s.id.as_str()).collect(),
        var_names: rb.vars.keys().map(String::as_str).collect(),
        param_names: rb.params.keys().map(String::as_str).collect(),
    };
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
        let parsed = if f.mode == Mode::Expr {
            template::references(&env, f.text, true)
        } else {
            cache.of(&env, f.text)
        };
        let refs = match parsed {
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
            out.extend(names.problem(f, root, name, &at_text));
        }
    }
}

/// What the references of a runbook's templates may name.
struct Names<'a> {
    rb: &'a Runbook,
    /// Main-line step ids and their place in the run.
    main_pos: HashMap<&'a str, usize>,
    all_ids: HashSet<&'a str>,
    var_names: Vec<&'a str>,
    param_names: Vec<&'a str>,
}

type At<'x> = dyn Fn(&str) -> Option<crate::source::Span> + 'x;

impl Names<'_> {
    /// What is wrong with one reference (`root.name`) of field `f`, if
    /// anything: an unknown param, var, step, metadata or run field, a var
    /// read before it is defined, or a step read before it runs.
    fn problem(
        &self,
        f: &Field<'_>,
        root: &str,
        name: Option<&str>,
        at_text: &At<'_>,
    ) -> Option<Diagnostic> {
        match (root, name) {
            ("params", Some(n)) if !self.rb.params.contains_key(n) => Some(
                Diagnostic::new(format!("undefined param `{n}`"))
                    .at(at_text(&format!("params.{n}")))
                    .label("not declared under `params`")
                    .hint(match did_you_mean(n, self.param_names.iter().copied()) {
                        Some(s) => format!("did you mean `params.{s}`?"),
                        None => format!("declare it under `params:`, such as `{n}: {{ type: string }}`"),
                    }),
            ),
            ("vars", Some(n)) => match self.rb.vars.get_index_of(n) {
                None => Some(
                    Diagnostic::new(format!("undefined var `{n}`"))
                        .at(at_text(&format!("vars.{n}")))
                        .label("not declared under `vars`")
                        .hint(match did_you_mean(n, self.var_names.iter().copied()) {
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
            ("steps", Some(n)) => self.step_problem(f, n, at_text),
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
                    .hint("templates can read run.id, run.started_at, run.status, run.failed_step and run.changed"),
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
        }
    }

    /// A `steps.N` reference: readable when N runs before the field does,
    /// on the main line or earlier in the same branch.
    fn step_problem(&self, f: &Field<'_>, n: &str, at_text: &At<'_>) -> Option<Diagnostic> {
        let readable = self.main_pos.get(n).is_some_and(|&p| p < f.scope.main_upto)
            || f.scope.extra.iter().any(|e| e == n);
        if readable {
            None
        } else if self.main_pos.contains_key(n) {
            Some(
                Diagnostic::new(format!("step `{n}` runs after the step that reads it"))
                    .at(at_text(&format!("steps.{n}")))
                    .label("not run yet at this point")
                    .hint("a step can read only the outputs of steps that run before it"),
            )
        } else if self.all_ids.contains(n) {
            Some(
                Diagnostic::new(format!(
                    "step `{n}` is a rollback or branch step and cannot be read here"
                ))
                .at(at_text(&format!("steps.{n}")))
                .label("may never run")
                .hint("read the outputs of main-line steps, which always run before this point"),
            )
        } else {
            Some(
                Diagnostic::new(format!("unknown step `{n}`"))
                    .at(at_text(&format!("steps.{n}")))
                    .label("no step has this id")
                    .hint(match did_you_mean(n, self.all_ids.iter().copied()) {
                        Some(s) => format!("did you mean `steps.{s}`?"),
                        None => "check the step's `id`".into(),
                    }),
            )
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
