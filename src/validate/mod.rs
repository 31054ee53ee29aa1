//! Validate: schema, model and semantic checks, then params.
//!
//! Every problem in a file is collected and reported together; nothing here
//! touches a database or runs a command.

mod rules;
mod templates;

use std::fmt;
use std::path::Path;

use serde_json::Value;

use crate::diag::{Diagnostic, did_you_mean, render_all};
use crate::load::{self, Document, pointer_segment};
use crate::model::Runbook;
use crate::params::{self, Origin, ParamValue, Params};
use crate::source::{Source, Span};
use rules::{check_durations, semantic};

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
        if let Ok(rb) = <Runbook as serde::Deserialize>::deserialize(&doc.value) {
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
    // Read from the document in place: a copy of it to read from by
    // value cost as much as reading.
    let runbook: Runbook = match <Runbook as serde::Deserialize>::deserialize(&doc.value) {
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
        extra.push(from_params_file(path, rb, &mut values, &unknown_hint));
    }
    for arg in &inputs.set {
        extra.extend(from_set(arg, rb, &mut values, &unknown_hint));
    }

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

type Values = indexmap::IndexMap<String, ParamValue>;

/// Values from `--params-file`, each checked against its declaration.
fn from_params_file(
    path: &std::path::Path,
    rb: &Runbook,
    values: &mut Values,
    unknown_hint: &dyn Fn(&str) -> String,
) -> FileDiagnostics {
    let mut file_diags = Vec::new();
    let pdoc = match load::load_file(path) {
        Err(f) => {
            let f = *f;
            return FileDiagnostics {
                source: f.source,
                diagnostics: vec![f.diagnostic],
            };
        }
        Ok(pdoc) => pdoc,
    };
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
    FileDiagnostics {
        source: pdoc.source,
        diagnostics: file_diags,
    }
}

/// One `--set name=value`, checked against its declaration; what is wrong
/// with it, located in the argument itself.
fn from_set(
    arg: &str,
    rb: &Runbook,
    values: &mut Values,
    unknown_hint: &dyn Fn(&str) -> String,
) -> Option<FileDiagnostics> {
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
    d.map(|d| FileDiagnostics {
        source,
        diagnostics: vec![d],
    })
}

/// sha256 of a document's text, hex: what plans and reports identify a runbook by.
pub fn sha256(doc: &Document) -> String {
    crate::hash::sha256_hex(doc.source.text().as_bytes())
}
