//! Schema: check a loaded document against `schemas/runbook.v1.schema.json`
//! and turn each violation into a located diagnostic with a hint.

use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

use crate::diag::{Diagnostic, did_you_mean, one_of};
use crate::duration::Duration;
use crate::load::Document;
use crate::model::STEP_KINDS;

/// The runbook schema, as committed.
pub const RUNBOOK_SCHEMA: &str = include_str!("../schemas/runbook.v1.schema.json");

/// The schema of `report.json`, as committed.
pub const REPORT_SCHEMA: &str = include_str!("../schemas/report.v1.schema.json");

fn schema_json() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| serde_json::from_str(RUNBOOK_SCHEMA).expect("committed schema is JSON"))
}

fn validator() -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::draft202012::new(schema_json()).expect("committed schema compiles")
    })
}

/// Every schema violation in the document, located and explained.
pub fn check(doc: &Document) -> Vec<Diagnostic> {
    if doc.value.is_null() {
        return vec![
            Diagnostic::new("the runbook is empty")
                .at(Some(0..doc.source.text().len()))
                .label("no mapping here")
                .hint("a runbook starts with `apiVersion: runbook/v1`; copy one from examples/"),
        ];
    }
    let mut out: Vec<Diagnostic> = Vec::new();
    for err in validator().iter_errors(&doc.value) {
        for d in explain(doc, &err) {
            if !out.contains(&d) {
                out.push(d);
            }
        }
    }
    // A "matches none of its forms" is only said where nothing inside the
    // value says more.
    let sharper = |d: &Diagnostic| {
        let Some(span) = &d.span else { return false };
        d.message.ends_with("matches none of its forms")
            && out.iter().any(|o| {
                !std::ptr::eq(o, d)
                    && o.span
                        .as_ref()
                        .is_some_and(|s| s.start >= span.start && s.end <= span.end && s != span)
            })
    };
    let drop: Vec<bool> = out.iter().map(sharper).collect();
    let mut keep = drop.iter().map(|d| !d);
    out.retain(|_| keep.next().unwrap_or(true));
    out.sort_by_key(|d| d.span.as_ref().map_or(0, |s| s.start));
    out
}

/// The forms a `oneOf` at `schema_path` (a pointer into the schema)
/// allows, for a label: "a boolean, or a mapping with `from`".
fn describe_forms(schema_path: &str) -> String {
    let schema = schema_json();
    let resolve = |v: &'static Value| -> &'static Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => schema.pointer(r.trim_start_matches('#')).unwrap_or(v),
            None => v,
        }
    };
    let forms: Vec<String> = schema
        .pointer(schema_path)
        .and_then(Value::as_array)
        .map(|alts| {
            alts.iter()
                .map(|alt| {
                    let alt = resolve(alt);
                    let ty = alt.get("type").and_then(Value::as_str).or_else(|| {
                        (alt.get("required").is_some() || alt.get("properties").is_some())
                            .then_some("object")
                    });
                    match ty {
                        Some("boolean") => "true or false".to_string(),
                        Some("string") => "a string".to_string(),
                        Some("integer") => "a whole number".to_string(),
                        Some("number") => "a number".to_string(),
                        Some("array") => "a list".to_string(),
                        Some("object") => {
                            let keys: Vec<String> = alt
                                .get("required")
                                .and_then(Value::as_array)
                                .into_iter()
                                .flatten()
                                .filter_map(Value::as_str)
                                .map(|k| format!("`{k}`"))
                                .collect();
                            if keys.is_empty() {
                                "a mapping".to_string()
                            } else {
                                format!("a mapping with {}", keys.join(" and "))
                            }
                        }
                        _ if alt.get("enum").is_some() => format!(
                            "one of {}",
                            alt["enum"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .map(|v| format!(
                                    "`{}`",
                                    v.as_str().map_or_else(|| v.to_string(), str::to_string)
                                ))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        _ => "another form".to_string(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    match forms.len() {
        0 => "one of the documented forms".to_string(),
        1 => forms[0].clone(),
        _ => format!(
            "{}, or {}",
            forms[..forms.len() - 1].join(", "),
            forms[forms.len() - 1]
        ),
    }
}

/// What kind of object a pointer names, for messages and allowed keys.
#[derive(Debug, Clone, PartialEq)]
enum Ctx {
    Root,
    Metadata,
    Param(String),
    Database,
    Settings,
    Defaults,
    Retry(String),
    Backoff(String),
    Phase(Option<String>),
    Approval(Option<String>),
    Step(Option<String>),
    Body(&'static str, Option<String>),
    Matcher(String),
    StepSettings(Option<String>),
    Other,
}

impl Ctx {
    /// Where this object's properties are declared in the schema.
    fn properties(&self) -> Option<&'static serde_json::Map<String, Value>> {
        let s = schema_json();
        let def = |name: &str| &s["$defs"][name];
        let props = match self {
            Ctx::Root => &s["properties"],
            Ctx::Metadata => &def("metadata")["properties"],
            Ctx::Param(_) => &def("param")["properties"],
            Ctx::Database => &def("database")["properties"],
            Ctx::Settings => &def("settings")["properties"],
            Ctx::Defaults => &def("defaults")["properties"],
            Ctx::Retry(_) => &def("retry")["properties"],
            Ctx::Backoff(_) => &def("retry")["properties"]["backoff"]["properties"],
            Ctx::Phase(_) => &def("phase")["properties"],
            Ctx::Approval(_) => &def("approval")["properties"],
            Ctx::Step(_) => &def("step")["properties"],
            Ctx::Body(kind, _) => &def(kind)["then"]["properties"],
            Ctx::Matcher(_) => &def("matcher")["then"]["properties"],
            Ctx::StepSettings(_) => &def("step_settings")["properties"],
            Ctx::Other => return None,
        };
        props.as_object()
    }

    fn describe(&self) -> String {
        match self {
            Ctx::Root => "at the top level".into(),
            Ctx::Metadata => "in metadata".into(),
            Ctx::Param(p) => format!("in param `{p}`"),
            Ctx::Database => "in database".into(),
            Ctx::Settings => "in settings".into(),
            Ctx::Defaults => "in defaults".into(),
            Ctx::Retry(owner) => format!("in the retry of {owner}"),
            Ctx::Backoff(owner) => format!("in the retry backoff of {owner}"),
            Ctx::Phase(id) => format!("in {}", named("phase", id)),
            Ctx::Approval(id) => format!("in the approval of {}", named("phase", id)),
            Ctx::Step(id) => format!("in {}", named("step", id)),
            Ctx::Body(kind, id) => format!("in the {kind} of {}", named("step", id)),
            Ctx::Matcher(col) => format!("in the expectation for `{col}`"),
            Ctx::StepSettings(id) => format!("in the settings of {}", named("step", id)),
            Ctx::Other => "here".into(),
        }
    }
}

fn segments(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

fn id_at(root: &Value, pointer: &str) -> Option<String> {
    root.pointer(pointer)
        .and_then(|v| v.get("id"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn named(what: &str, id: &Option<String>) -> String {
    match id {
        Some(id) => format!("{what} `{id}`"),
        None => format!("a {what} without an id"),
    }
}

/// Classify the object at `pointer`.
fn classify(root: &Value, pointer: &str) -> Ctx {
    let segs = segments(pointer);
    let mut ctx = Ctx::Root;
    let mut at = String::new();
    let mut i = 0;
    while i < segs.len() {
        let seg = segs[i].as_str();
        let next = segs.get(i + 1).map(String::as_str);
        at.push('/');
        at.push_str(&crate::load::pointer_segment(seg));
        ctx = match (&ctx, seg) {
            (Ctx::Root, "metadata") => Ctx::Metadata,
            (Ctx::Root, "settings") => Ctx::Settings,
            (Ctx::Root, "database") => Ctx::Database,
            (Ctx::Root, "defaults") => Ctx::Defaults,
            (Ctx::Root, "params") if next.is_some() => {
                i += 1;
                at.push('/');
                at.push_str(&crate::load::pointer_segment(&segs[i]));
                Ctx::Param(segs[i].clone())
            }
            (Ctx::Root, "phases") if next.is_some() => {
                i += 1;
                at = format!("{at}/{}", segs[i]);
                Ctx::Phase(id_at(root, &at))
            }
            (Ctx::Root, "on_failure" | "finally") | (Ctx::Phase(_), "steps" | "on_failure")
                if next.is_some_and(|n| n.parse::<usize>().is_ok()) =>
            {
                i += 1;
                at = format!("{at}/{}", segs[i]);
                Ctx::Step(id_at(root, &at))
            }
            (Ctx::Phase(id), "approval") => Ctx::Approval(id.clone()),
            (Ctx::Step(_), "rollback") => match next.map(str::parse::<usize>) {
                Some(Ok(_)) => {
                    i += 1;
                    at = format!("{at}/{}", segs[i]);
                    Ctx::Step(id_at(root, &at))
                }
                _ => Ctx::Step(id_at(root, &at)),
            },
            (Ctx::Defaults, "retry") => Ctx::Retry("defaults".into()),
            (Ctx::Step(id), "retry") => Ctx::Retry(named("step", id)),
            (Ctx::Step(id), "settings") => Ctx::StepSettings(id.clone()),
            (Ctx::Retry(owner), "backoff") => Ctx::Backoff(owner.clone()),
            (Ctx::Step(id), "sql") => Ctx::Body("sql", id.clone()),
            (Ctx::Step(id), "check") => Ctx::Body("check", id.clone()),
            (Ctx::Step(id), "shell") => Ctx::Body("shell", id.clone()),
            (Ctx::Body("check", _), "expect") if next.is_some() => {
                i += 1;
                Ctx::Matcher(segs[i].clone())
            }
            _ => Ctx::Other,
        };
        i += 1;
    }
    ctx
}

pub(crate) fn type_words(kind: &TypeKind) -> String {
    let word = |t: &str| {
        match t {
            "object" => "a mapping",
            "array" => "a list",
            "string" => "a string",
            "integer" => "a whole number",
            "number" => "a number",
            "boolean" => "true or false",
            "null" => "nothing",
            other => other,
        }
        .to_string()
    };
    let words: Vec<String> = match kind {
        TypeKind::Single(t) => vec![word(t.as_str())],
        TypeKind::Multiple(set) => set.iter().map(|t| word(t.as_str())).collect(),
    };
    match words.as_slice() {
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
        [] => "a value".into(),
    }
}

pub(crate) fn found_words(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("the number `{n}`"),
        Value::String(s) => format!("the string `{}`", truncate(s)),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

fn truncate(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.chars().count() > 40 || line.len() < s.len() {
        format!("{}…", line.chars().take(40).collect::<String>())
    } else {
        line.to_string()
    }
}

fn last_key(pointer: &str) -> Option<String> {
    segments(pointer).pop()
}

/// "an id like `add_column`" from whatever the user wrote.
fn suggest_id(bad: &str, sep: char) -> Option<String> {
    let mut out = String::new();
    for c in bad.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with(sep) {
            out.push(sep);
        }
    }
    let out = out.trim_matches(sep).to_string();
    let ok = out
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || sep == '-');
    (ok && out != bad).then_some(out)
}

/// Where a schema error is and what is there: what every explanation reads.
struct At<'a> {
    root: &'a Value,
    pointer: &'a str,
    instance: &'a Value,
    spans: &'a crate::load::SpanIndex,
    key: Option<String>,
    key_name: String,
}

// Long by design: one arm per JSON Schema keyword a runbook can break,
// each saying that failure in the runbook's own terms.
fn explain(doc: &Document, err: &ValidationError<'_>) -> Vec<Diagnostic> {
    let pointer = err.instance_path().as_str();
    let key = last_key(pointer);
    let at = At {
        root: &doc.value,
        pointer,
        instance: err.instance(),
        spans: doc.spans(),
        key_name: key.clone().unwrap_or_default(),
        key,
    };
    let At {
        root,
        instance,
        spans,
        key,
        key_name,
        ..
    } = &at;
    match err.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => unknown_keys(&at, unexpected),
        ValidationErrorKind::Required { property } => missing_key(&at, property),
        ValidationErrorKind::Type { kind } => wrong_type(&at, kind),
        ValidationErrorKind::Constant { expected_value } => {
            let found = instance
                .as_str()
                .map_or_else(|| found_words(instance), |s| format!("`{s}`"));
            let expected = expected_value.as_str().unwrap_or_default();
            vec![
                Diagnostic::new(format!("unsupported {key_name} {found}"))
                    .at(spans.value(pointer))
                    .label(format!("expected `{expected}`"))
                    .hint(format!(
                        "this version of runbook reads `{key_name}: {expected}`"
                    )),
            ]
        }
        ValidationErrorKind::Enum { options } => {
            let opts: Vec<&str> = options
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let found = instance.as_str().unwrap_or_default();
            let what = match classify(root, &pointer[..pointer.rfind('/').unwrap_or(0)]) {
                Ctx::Phase(_) if key_name == "kind" => "phase kind".to_string(),
                Ctx::Retry(_) => "retryable error class".to_string(),
                _ if key_name.parse::<usize>().is_ok() => "value".to_string(),
                _ => format!("`{key_name}` value"),
            };
            let hint = match did_you_mean(found, opts.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("expected one of {}", one_of(&opts)),
            };
            vec![
                Diagnostic::new(format!("unknown {what} `{}`", truncate(found)))
                    .at(spans.value(pointer))
                    .label(if what.starts_with('`') || what == "value" {
                        "unknown value".to_string()
                    } else {
                        format!("not a {what}")
                    })
                    .hint(hint),
            ]
        }
        ValidationErrorKind::Pattern { pattern } => pattern_mismatch(&at, pattern),
        ValidationErrorKind::PropertyNames { error } => {
            let name = error.instance().as_str().unwrap_or_default().to_string();
            let what = match key.as_deref() {
                Some("params") => "param",
                Some("vars") => "var",
                _ => "key",
            };
            vec![
                Diagnostic::new(format!("invalid {what} name `{name}`"))
                    .at(spans.key_or_value(&format!("{pointer}/{}", crate::load::pointer_segment(&name))))
                    .label("expected lowercase letters, digits and underscores")
                    .hint(match suggest_id(&name, '_') {
                        Some(s) => format!("names are used in templates as `{what}s.NAME`; try `{s}`"),
                        None => format!("names are used in templates as `{what}s.NAME`; start with a lowercase letter"),
                    }),
            ]
        }
        ValidationErrorKind::OneOfNotValid { .. }
        | ValidationErrorKind::OneOfMultipleValid { .. } => no_form_matches(&at, err),
        ValidationErrorKind::Minimum { limit } | ValidationErrorKind::Maximum { limit } => {
            let below = matches!(err.kind(), ValidationErrorKind::Minimum { .. });
            vec![
                Diagnostic::new(format!(
                    "`{key_name}` is {instance}, {} the {} of {limit}",
                    if below { "below" } else { "above" },
                    if below { "minimum" } else { "maximum" }
                ))
                .at(spans.value(pointer))
                .label(format!(
                    "expected {} {limit}",
                    if below { "at least" } else { "at most" }
                )),
            ]
        }
        ValidationErrorKind::MinItems { limit } | ValidationErrorKind::MaxItems { limit } => {
            let (message, hint) = match key.as_deref() {
                Some("phases") => (
                    "the runbook has no phases".to_string(),
                    "add at least one phase with steps".to_string(),
                ),
                Some("between") => (
                    "`between` takes exactly two values".into(),
                    "write `between: [low, high]`".into(),
                ),
                Some("command") => (
                    "the command list is empty".into(),
                    "give the program and its arguments".into(),
                ),
                _ => (
                    format!("`{key_name}` needs {limit} items"),
                    format!("give {limit} items"),
                ),
            };
            vec![
                Diagnostic::new(message)
                    .at(spans.value(pointer))
                    .label("here")
                    .hint(hint),
            ]
        }
        ValidationErrorKind::MinProperties { .. } => vec![
            Diagnostic::new(format!("empty comparison for `{key_name}`"))
                .at(spans.value(pointer))
                .label("expected a comparison")
                .hint("write a value, or a comparison such as `{ gte: 1 }`"),
        ],
        ValidationErrorKind::Not { schema } if schema.get("required").is_some() => {
            let keys: Vec<String> = schema["required"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(|k| format!("`{k}`"))
                        .collect()
                })
                .unwrap_or_default();
            let last = schema["required"]
                .as_array()
                .and_then(|a| a.last())
                .and_then(Value::as_str)
                .unwrap_or_default();
            vec![
                Diagnostic::new(format!("{} cannot be used together", keys.join(" and ")))
                    .at(spans
                        .key_or_value(&format!("{pointer}/{}", crate::load::pointer_segment(last))))
                    .label("one of them is enough")
                    .hint(format!("keep one of {}", keys.join(" or "))),
            ]
        }
        _ => vec![
            Diagnostic::new(format!("invalid value for `{key_name}`: {err}"))
                .at(spans.value(pointer))
                .label("here"),
        ],
    }
}

fn unknown_keys(at: &At<'_>, unexpected: &[String]) -> Vec<Diagnostic> {
    let At {
        root,
        pointer,
        instance,
        spans,
        ..
    } = at;
    let ctx = classify(root, pointer);
    let allowed: Vec<&str> = ctx
        .properties()
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    unexpected
        .iter()
        .map(|k| {
            let at = spans.key_or_value(&format!("{pointer}/{}", crate::load::pointer_segment(k)));
            let step_props = schema_json()["$defs"]["step"]["properties"].as_object();
            let body_of = |kind: &str| {
                schema_json()["$defs"][kind]["then"]["properties"]
                    .get(k.as_str())
                    .is_some()
            };
            let moved = match &ctx {
                Ctx::Body(kind, _) if step_props.is_some_and(|p| p.contains_key(k.as_str())) => {
                    Some(format!(
                        "`{k}` is a step key: move it out of `{kind}:` to sit beside `id`"
                    ))
                }
                Ctx::Step(_) => ["sql", "check", "shell"]
                    .into_iter()
                    .find(|kind| body_of(kind) && instance.get(*kind).is_some())
                    .map(|kind| {
                        format!("`{k}` belongs inside `{kind}:`; write `{kind}: {{ …, {k}: … }}`")
                    }),
                _ => None,
            };
            let hint = match (moved, did_you_mean(k, allowed.iter().copied())) {
                (Some(m), _) => m,
                (None, Some(s)) => format!("did you mean `{s}`?"),
                (None, None) if allowed.is_empty() => "remove this key".into(),
                (None, None) => format!("expected one of {}", one_of(&allowed)),
            };
            Diagnostic::new(format!("unknown key `{k}` {}", ctx.describe()))
                .at(at)
                .label("unknown key")
                .hint(hint)
        })
        .collect()
}

fn missing_key(at: &At<'_>, property: &Value) -> Vec<Diagnostic> {
    let At {
        root,
        pointer,
        instance,
        spans,
        ..
    } = at;
    let p = property.as_str().unwrap_or_default();
    let ctx = classify(root, pointer);
    let allowed: Vec<&str> = ctx
        .properties()
        .map(|props| props.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let near_miss = instance.as_object().is_some_and(|o| {
        o.keys().any(|k| {
            !allowed.contains(&k.as_str()) && did_you_mean(k, allowed.iter().copied()) == Some(p)
        })
    });
    if near_miss {
        // The unknown-key error already says "did you mean `p`?".
        return vec![];
    }
    let hint = match (p, &ctx) {
        ("apiVersion", _) => Some("start the file with `apiVersion: runbook/v1`".to_string()),
        ("kind", Ctx::Root) => Some("add `kind: Runbook` after apiVersion".into()),
        ("metadata", _) => Some("add `metadata:` with a `name` and a `version`".into()),
        ("phases", _) => Some("add `phases:`, a list of phases with their steps".into()),
        ("id", Ctx::Step(_)) => Some("every step needs an id, such as `id: add_column`".into()),
        ("id", Ctx::Phase(_)) => Some("every phase needs an id, such as `id: expand`".into()),
        ("version", Ctx::Metadata) => {
            Some("add the runbook's own revision, such as `version: 1.0.0`".into())
        }
        ("kind", Ctx::Phase(_)) => Some(
            "add `kind:`, one of preflight, backup, expand, migrate, contract, verify or custom"
                .into(),
        ),
        ("steps", _) => Some("add `steps:`, the list of steps of this phase".into()),
        _ => None,
    };
    vec![
        Diagnostic::new(format!("missing key `{p}` {}", ctx.describe()))
            .at(spans.key_or_value(pointer))
            .label(format!("this mapping needs `{p}`"))
            .maybe_hint(hint),
    ]
}

fn wrong_type(at: &At<'_>, kind: &TypeKind) -> Vec<Diagnostic> {
    let At {
        pointer,
        instance,
        spans,
        key,
        key_name,
        ..
    } = at;
    let expected = type_words(kind);
    let (message, hint) = if pointer.is_empty() {
        (
            format!(
                "expected a mapping at the top level, found {}",
                found_words(instance)
            ),
            Some("a runbook is a mapping that starts with `apiVersion: runbook/v1`".to_string()),
        )
    } else {
        let what = match key.as_deref().map(str::parse::<usize>) {
            Some(Ok(n)) => format!(
                "item {} of `{}`",
                n + 1,
                last_key(&pointer[..pointer.rfind('/').unwrap_or(0)]).unwrap_or_default()
            ),
            _ => format!("`{key_name}`"),
        };
        let quoted_ok = |t: &str| match t {
            "boolean" => matches!(instance.as_str(), Some("true" | "false" | "yes" | "no")),
            "integer" | "number" => instance.as_str().is_some_and(|s| s.parse::<f64>().is_ok()),
            _ => false,
        };
        let wants = |t: &str| match kind {
            TypeKind::Single(x) => x.as_str() == t,
            TypeKind::Multiple(set) => set.iter().any(|x| x.as_str() == t),
        };
        let hint = match key.as_deref() {
            Some("phases" | "steps" | "on_failure" | "finally") if instance.is_object() => {
                Some("write each item on its own line starting with `- `".to_string())
            }
            _ if wants("boolean") && quoted_ok("boolean") => {
                Some("write `true` or `false`, without quotes".to_string())
            }
            _ if (wants("integer") || wants("number")) && quoted_ok("number") => {
                Some("write the number without quotes".to_string())
            }
            _ => None,
        };
        (
            format!(
                "expected {expected} for {what}, found {}",
                found_words(instance)
            ),
            hint,
        )
    };
    let at = if instance.is_object() || instance.is_array() {
        spans.key_or_value(pointer)
    } else {
        spans.value(pointer)
    };
    vec![
        Diagnostic::new(message)
            .at(at)
            .label(format!("expected {expected}"))
            .maybe_hint(hint),
    ]
}

fn pattern_mismatch(at: &At<'_>, pattern: &str) -> Vec<Diagnostic> {
    let At {
        pointer,
        instance,
        spans,
        key_name,
        ..
    } = at;
    let found = instance.as_str().unwrap_or_default();
    let at = spans.value(pointer);
    let d = if pattern.contains("(ms|s|min|h)") {
        Diagnostic::new(format!(
            "invalid duration `{}` for `{key_name}`",
            truncate(found)
        ))
        .label("not a duration")
        .hint(Duration::HINT)
    } else if pattern == "^[a-z0-9-]+$" {
        Diagnostic::new(format!("invalid runbook name `{}`", truncate(found)))
            .label("expected lowercase letters, digits and hyphens")
            .hint(match suggest_id(found, '-') {
                Some(s) => format!("try `{s}`"),
                None => "use lowercase letters, digits and hyphens".into(),
            })
    } else if key_name == "id" {
        Diagnostic::new(format!("invalid id `{}`", truncate(found)))
            .label("expected lowercase letters, digits and underscores")
            .hint(match suggest_id(found, '_') {
                Some(s) => format!(
                    "ids start with a lowercase letter and use only a-z, 0-9 and `_`, so templates can write `steps.{s}`; try `{s}`"
                ),
                None => "ids start with a lowercase letter and use only a-z, 0-9 and `_`".into(),
            })
    } else {
        Diagnostic::new(format!(
            "`{}` does not match the pattern `{pattern}`",
            truncate(found)
        ))
        .label("does not match")
    };
    vec![d.at(at)]
}

fn no_form_matches(at: &At<'_>, err: &ValidationError<'_>) -> Vec<Diagnostic> {
    let At {
        root,
        pointer,
        instance,
        spans,
        key,
        key_name,
        ..
    } = at;
    let obj = instance.as_object();
    let present: Vec<&str> = STEP_KINDS
        .iter()
        .copied()
        .filter(|k| obj.is_some_and(|o| o.contains_key(*k)))
        .collect();
    let id = id_at(root, pointer);
    let at = spans.key_or_value(&format!("{pointer}/id"));
    let known = schema_json()["$defs"]["step"]["properties"].as_object();
    let has_unknown =
        obj.is_some_and(|o| o.keys().any(|k| !known.is_some_and(|p| p.contains_key(k))));
    let is_step = matches!(classify(root, pointer), Ctx::Step(_));
    match present.len() {
        0 if has_unknown && is_step => vec![],
        // Not a step: say which forms the value may take. (A check
        // holding `sql:` has its own, sharper error; `check` keeps
        // that one.)
        // A check's shape has sharper semantic errors of its own
        // (no query, builtin with query, `sql:`): they say it.
        _ if key.as_deref() == Some("check") => vec![],
        _ if !is_step || !obj.is_some_and(|o| o.contains_key("id")) => {
            let forms = err.schema_path().as_str().to_string();
            vec![
                Diagnostic::new(format!("`{key_name}` matches none of its forms"))
                    .at(spans.value(pointer))
                    .label(format!("expected {}", describe_forms(&forms)))
                    .hint("see docs/runbook-format.md for this key"),
            ]
        }
        // One kind key whose body does not match any of its forms.
        1 => malformed_kind(present[0], obj, pointer, &id, spans),
        0 => vec![
            Diagnostic::new(format!("{} has no kind key", named("step", &id)))
                .at(at)
                .label("this step does nothing")
                .hint(format!("add one of {}", one_of(STEP_KINDS))),
        ],
        _ => vec![
            Diagnostic::new(format!(
                "{} has {} kind keys: {}",
                named("step", &id),
                present.len(),
                present
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ))
            .at(spans.key_or_value(&format!("{pointer}/{}", present[1])))
            .label("second kind key")
            .hint("a step does exactly one thing; split it into one step per kind"),
        ],
    }
}

/// A step whose one kind key holds a body of no form that kind takes:
/// name the unknown key when there is one, else the kind.
fn malformed_kind(
    kind: &str,
    step: Option<&serde_json::Map<String, Value>>,
    pointer: &str,
    id: &Option<String>,
    spans: &crate::load::SpanIndex,
) -> Vec<Diagnostic> {
    let def = &schema_json()["$defs"][kind];
    let props = def["properties"]
        .as_object()
        .or_else(|| def["then"]["properties"].as_object());
    let body = step.and_then(|o| o.get(kind));
    let at = format!("{pointer}/{kind}");
    if let (Some(props), Some(Value::Object(o))) = (props, body)
        && let Some(bad) = o.keys().find(|k| !props.contains_key(k.as_str()))
    {
        let allowed: Vec<&str> = props.keys().map(String::as_str).collect();
        let hint = match did_you_mean(bad, allowed.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("expected one of {}", one_of(&allowed)),
        };
        return vec![
            Diagnostic::new(format!("unknown key `{bad}` in `{kind}`"))
                .at(spans.key_or_value(&format!("{at}/{}", crate::load::pointer_segment(bad))))
                .label("unknown key")
                .hint(hint),
        ];
    }
    vec![
        Diagnostic::new(format!(
            "{} has a `{kind}` of no form it takes",
            named("step", id)
        ))
        .at(spans.key_or_value(&at))
        .label(format!("not a valid `{kind}`"))
        .hint(def["description"].as_str().map_or_else(
            || format!("see docs/runbook-format.md for `{kind}`"),
            str::to_string,
        )),
    ]
}
