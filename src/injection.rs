//! Nothing injected: a param or a var that a template puts into SQL or a
//! shell script must go through a filter that quotes it for that language
//! (`literal` or `ident` in SQL, `shell_quote` in a script), unless its
//! value cannot carry a quote: an integer, number or boolean param, an enum
//! whose values are all identifiers, or a var that is a constant. `unsafe_raw`
//! says the splice is meant (lint reports it). A secret param is never put
//! on a command line. Each finding is a validate error, located in the file.

use std::collections::HashMap;

use minijinja::Environment;

use crate::diag::Diagnostic;
use crate::load::Document;
use crate::model::{ParamType, Runbook};
use crate::template;

/// What a templated field becomes at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Into {
    /// SQL text: `sql`, a check's `query`, a backfill's `set` and `where`
    /// (its `table` is looked up as a name, with a bound parameter).
    Sql,
    /// A script run by `sh -c`.
    ShellScript,
    /// One argument of a command run without a shell: not parsed again, but
    /// still on the command line (so no secret).
    ShellArg,
}

/// Which language a field's pointer puts its text into, if any.
pub(crate) fn into_of(doc: &Document, pointer: &str) -> Option<Into> {
    let is_string = |p: &str| doc.at(p).is_some_and(|v| v.is_string());
    let sql_suffixes = [
        "/sql",
        "/sql/statements",
        "/check/query",
        "/backfill/set",
        "/backfill/where",
    ];
    if sql_suffixes.iter().any(|s| pointer.ends_with(s)) {
        return Some(Into::Sql);
    }
    // `check: SELECT ...`: the short form is the query itself.
    if pointer.ends_with("/check") && is_string(pointer) {
        return Some(Into::Sql);
    }
    if ["/tool/up", "/tool/down", "/tool/list"]
        .iter()
        .any(|s| pointer.ends_with(s))
    {
        return Some(Into::ShellScript);
    }
    if pointer.ends_with("/shell") || pointer.ends_with("/shell/command") {
        return is_string(pointer).then_some(Into::ShellScript);
    }
    let (parent, last) = pointer.rsplit_once('/')?;
    if last.parse::<usize>().is_ok()
        && (parent.ends_with("/shell") || parent.ends_with("/shell/command"))
    {
        return Some(Into::ShellArg);
    }
    None
}

/// A param whose value cannot carry a quote or a shell metacharacter.
fn safe_param(rb: &Runbook, name: &str) -> bool {
    let Some(p) = rb.params.get(name) else {
        return false;
    };
    let identifier = |v: &serde_json::Value| {
        v.as_str().is_some_and(|s| {
            s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }) || v.is_number()
            || v.is_boolean()
    };
    match p.ty {
        ParamType::Integer | ParamType::Number | ParamType::Boolean => true,
        ParamType::String => p
            .allowed
            .as_ref()
            .is_some_and(|values| values.iter().all(identifier)),
    }
}

/// A var defined without templates: the author's constant.
fn constant_var(rb: &Runbook, name: &str) -> bool {
    rb.vars.get(name).is_some_and(|v| {
        let mut constant = true;
        let mut check = |s: &str| constant &= !s.contains("{{") && !s.contains("{%");
        fn walk(v: &serde_json::Value, f: &mut impl FnMut(&str)) {
            match v {
                serde_json::Value::String(s) => f(s),
                serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, f)),
                serde_json::Value::Object(m) => m.values().for_each(|x| walk(x, f)),
                _ => {}
            }
        }
        walk(v, &mut check);
        constant
    })
}

/// The filters that make a value safe in each language.
fn quoting_filters(into: Into) -> &'static [&'static str] {
    match into {
        Into::Sql => &["literal", "ident", "int", "float", "length", "unsafe_raw"],
        Into::ShellScript => &["shell_quote", "int", "float", "length", "unsafe_raw"],
        Into::ShellArg => &[],
    }
}

/// Every `{{ expr }}` in `text`, with its byte range.
fn expressions(text: &str) -> Vec<(std::ops::Range<usize>, &str)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = text[from..].find("{{") {
        let start = from + open;
        let Some(close) = text[start..].find("}}") else {
            break;
        };
        let end = start + close + 2;
        out.push((
            start..end,
            text[start + 2..end - 2].trim().trim_matches('-').trim(),
        ));
        from = end;
    }
    out
}

/// The findings in one field: `(range in the text, message, label, hint)`.
///
/// `known` parses each distinct expression once.
pub(crate) fn check_field(
    env: &Environment<'_>,
    rb: &Runbook,
    into: Into,
    text: &str,
    known: &mut template::References,
) -> Vec<(std::ops::Range<usize>, String, &'static str, String)> {
    let mut out = Vec::new();
    for (range, expr) in expressions(text) {
        let last = expr.rsplit('|').next().unwrap_or("").trim();
        let filter = last.split(['(', ' ']).next().unwrap_or("");
        let piped = expr.contains('|');
        // SQL quoted by its last filter: nothing to find (a secret may go
        // into SQL, which is sent as a query, never on a command line).
        if into == Into::Sql && piped && quoting_filters(into).contains(&filter) {
            continue;
        }
        let refs = known
            .of(env, &format!("{{{{ {expr} }}}}"))
            .unwrap_or_default();
        let params: Vec<&str> = refs
            .iter()
            .filter_map(|r| r.strip_prefix("params."))
            .map(|r| r.split('.').next().unwrap_or(r))
            .collect();
        let vars: Vec<&str> = refs
            .iter()
            .filter_map(|r| r.strip_prefix("vars."))
            .map(|r| r.split('.').next().unwrap_or(r))
            .collect();
        if into != Into::Sql
            && let Some(secret) = params
                .iter()
                .find(|p| rb.params.get(**p).is_some_and(|d| d.secret))
        {
            out.push((
                range.clone(),
                format!("the secret param `{secret}` is put on a command line, where `ps` and logs show it"),
                "secret on a command line",
                "pass it in the step's `env:` and read it there (`\"$NAME\"`); libpq tools in a step already have the run's password (PGPASSFILE)".into(),
            ));
            continue;
        }
        if into == Into::ShellArg {
            continue;
        }
        if piped && quoting_filters(into).contains(&filter) {
            continue;
        }
        let unsafe_params: Vec<&&str> = params.iter().filter(|p| !safe_param(rb, p)).collect();
        let unsafe_vars: Vec<&&str> = vars.iter().filter(|v| !constant_var(rb, v)).collect();
        let Some(name) = unsafe_params
            .first()
            .map(|p| format!("params.{p}"))
            .or_else(|| unsafe_vars.first().map(|v| format!("vars.{v}")))
        else {
            continue;
        };
        let (lang, hint) = match into {
            Into::Sql => (
                "SQL",
                "end it with `| literal` for a value or `| ident` for a name; a param declared as an integer, number, boolean or an enum of identifiers needs neither; `| unsafe_raw` if the text is meant to be SQL",
            ),
            _ => (
                "a shell script",
                "end it with `| shell_quote`, or give the command as a list (`command: [prog, arg]`), which no shell reads; `| unsafe_raw` if the text is meant to be shell code",
            ),
        };
        out.push((
            range,
            format!(
                "`{name}` goes into {lang} unquoted: a value with a quote in it changes what runs"
            ),
            "unquoted",
            hint.into(),
        ));
    }
    out
}

/// The injection findings over every templated field, as diagnostics.
pub(crate) fn check(
    doc: &Document,
    rb: &Runbook,
    fields: &[(String, &str)],
    known: &mut template::References,
    out: &mut Vec<Diagnostic>,
) {
    let env = template::environment();
    let mut seen: HashMap<(String, String), ()> = HashMap::new();
    for (pointer, text) in fields {
        let Some(into) = into_of(doc, pointer) else {
            continue;
        };
        for (range, message, label, hint) in check_field(&env, rb, into, text, known) {
            if seen
                .insert((pointer.clone(), message.clone()), ())
                .is_some()
            {
                continue;
            }
            let at = doc
                .locate(pointer, text, range)
                .or_else(|| doc.spans().value(pointer));
            out.push(Diagnostic::new(message).at(at).label(label).hint(hint));
        }
    }
}
