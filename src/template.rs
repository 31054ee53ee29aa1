//! Templates: the one minijinja environment every stage uses.
//!
//! Undefined values are errors (strict), the process environment is read
//! only through `env('NAME')`, and SQL gets two quoting filters: `literal`
//! for values and `ident` for identifiers.

use std::fmt;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};

/// Names a template may read at its top level.
pub const ROOTS: &[&str] = &["params", "vars", "steps", "metadata", "run"];

/// Global functions and tests that are not variables.
pub const GLOBALS: &[&str] = &[
    "env",
    "range",
    "dict",
    "namespace",
    "true",
    "false",
    "none",
    "True",
    "False",
    "None",
];

/// Fields of `run` that templates may read.
pub const RUN_FIELDS: &[&str] = &["id", "started_at", "status", "failed_step", "changed"];

/// Build the shared environment.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // SQL and commands run exactly as written, final newline included.
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("default delimiters are valid"),
    );
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.add_function("env", env_var);
    env.add_filter("literal", sql_literal);
    env.add_filter("ident", sql_ident);
    env.add_filter("shell_quote", shell_quote);
    env.add_filter("unsafe_raw", unsafe_raw);
    env
}

/// `s` as one POSIX shell word: single quotes, with each single quote
/// written as `'\''`.
pub fn shell_word(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Quote a value as one POSIX shell word ([`shell_word`]).
pub fn shell_quote(v: Value) -> Result<String, Error> {
    if let Some(d) = v.downcast_object_ref::<Deferred>() {
        return Ok(d.to_string());
    }
    let s = match v.as_str() {
        Some(s) => s.to_string(),
        None if v.is_none() || v.is_undefined() => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "`shell_quote` needs a value, and this one is none",
            ));
        }
        None => v.to_string(),
    };
    if s.contains('\0') {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "a shell word cannot hold a NUL byte",
        ));
    }
    Ok(shell_word(&s))
}

/// The value as it is, on purpose: SQL or shell text the runbook's author
/// means to splice in. `validate` accepts it; `runbook lint` reports it.
pub fn unsafe_raw(v: Value) -> Value {
    v
}

fn env_var(name: String, default: Option<String>) -> Result<String, Error> {
    match (std::env::var(&name), default) {
        (Ok(v), _) => Ok(v),
        (Err(_), Some(d)) => Ok(d),
        (Err(_), None) => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("environment variable `{name}` is not set"),
        )),
    }
}

/// Quote a value as an SQL literal: strings in single quotes with quotes
/// doubled, numbers and booleans bare, none as NULL.
pub fn sql_literal(v: Value) -> Result<String, Error> {
    if let Some(d) = v.downcast_object_ref::<Deferred>() {
        return Ok(d.to_string());
    }
    if v.is_none() {
        return Ok("NULL".into());
    }
    match v.kind() {
        minijinja::value::ValueKind::Bool => Ok(if v.is_true() { "TRUE" } else { "FALSE" }.into()),
        minijinja::value::ValueKind::Number => Ok(v.to_string()),
        minijinja::value::ValueKind::String => {
            Ok(crate::pg::quote::literal(v.as_str().unwrap_or_default()))
        }
        _ => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "`literal` quotes strings, numbers and booleans, not {}",
                v.kind()
            ),
        )),
    }
}

/// Quote a string as one SQL identifier, in double quotes.
#[cfg(test)]
mod quote_tests {
    use super::*;

    #[test]
    fn shell_quote_makes_one_word_of_anything() {
        let q = |s: &str| shell_quote(Value::from(s)).unwrap();
        assert_eq!(q("plain"), "'plain'");
        assert_eq!(q("$(touch pwned)"), "'$(touch pwned)'");
        assert_eq!(q("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(Value::from(42)).unwrap(), "'42'");
        assert!(shell_quote(Value::from(())).is_err());
    }
}

pub fn sql_ident(v: Value) -> Result<String, Error> {
    if let Some(d) = v.downcast_object_ref::<Deferred>() {
        return Ok(d.to_string());
    }
    match v.as_str() {
        Some(s) if !s.is_empty() && !s.contains('\0') => Ok(crate::pg::quote::ident(s)),
        _ => Err(Error::new(
            ErrorKind::InvalidOperation,
            "`ident` quotes a non-empty string as one identifier",
        )),
    }
}

/// A value that only exists at run time. At plan time it renders as
/// `<known after steps.X>`, and any lookup on it stays deferred.
#[derive(Debug, Clone)]
pub struct Deferred {
    pub origin: String,
}

impl Deferred {
    pub fn value(origin: impl Into<String>) -> Value {
        Value::from_object(Deferred {
            origin: origin.into(),
        })
    }
}

impl fmt::Display for Deferred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.origin.starts_with("steps.") {
            write!(f, "<known after {}>", self.origin)
        } else {
            write!(f, "<known at run time: {}>", self.origin)
        }
    }
}

impl Object for Deferred {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, _key: &Value) -> Option<Value> {
        Some(Value::from_object((**self).clone()))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Empty
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `steps` at plan time: every known step id resolves to a deferred value.
#[derive(Debug)]
pub struct DeferredSteps;

impl Object for DeferredSteps {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        key.as_str()
            .map(|id| Deferred::value(format!("steps.{id}")))
    }
}

/// True when the rendered text still holds a deferred placeholder.
pub fn mentions_deferred(text: &str) -> bool {
    text.contains("<known after ") || text.contains("<known at run time")
}

/// Whether a field holds a template (`{{ }}` or `{% %}`) rather than plain text.
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// Render one template.
pub fn render(env: &Environment<'_>, source: &str, ctx: &Value) -> Result<String, Error> {
    env.render_str(source, ctx.clone())
}

/// The top-level names a template or expression reads, with nested trivial
/// lookups kept (`steps.count_before.rows`).
pub fn references(
    env: &Environment<'_>,
    source: &str,
    expression: bool,
) -> Result<Vec<String>, Error> {
    let mut names: Vec<String> = if expression {
        env.compile_expression(source)?
            .undeclared_variables(true)
            .into_iter()
            .collect()
    } else {
        env.template_from_str(source)?
            .undeclared_variables(true)
            .into_iter()
            .collect()
    };
    names.sort();
    Ok(names)
}

/// [`references`] over many templates, each distinct `{{ expression }}`
/// parsed once. Runbooks repeat the same few expressions in every step
/// (`{{ params.table | ident }}`), and parsing is most of what checking a
/// long runbook costs. A template with only `{{ }}` expressions reads the
/// union of what they read; one with blocks or comments, or one whose
/// pieces do not parse alone, is parsed whole, so errors and their
/// positions are the template's own.
#[derive(Default)]
pub struct References {
    known: std::collections::HashMap<String, Vec<String>>,
}

impl References {
    /// The references of the template `source`, as [`references`] gives them.
    pub fn of(&mut self, env: &Environment<'_>, source: &str) -> Result<Vec<String>, Error> {
        if source.contains("{%") || source.contains("{#") {
            return references(env, source, false);
        }
        let mut names = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            let Some(len) = rest[open..].find("}}") else {
                return references(env, source, false);
            };
            let piece = &rest[open..open + len + 2];
            rest = &rest[open + len + 2..];
            let found = match self.known.get(piece) {
                Some(found) => found,
                None => match references(env, piece, false) {
                    Ok(found) => self.known.entry(piece.to_string()).or_insert(found),
                    Err(_) => return references(env, source, false),
                },
            };
            names.extend(found.iter().cloned());
        }
        if rest.contains("}}") {
            return references(env, source, false);
        }
        names.sort();
        names.dedup();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    #[test]
    fn references_by_piece_match_references_of_the_whole() {
        let env = environment();
        let mut cache = References::default();
        for source in [
            "SELECT {{ params.a | literal }} FROM {{ params.t | ident }} WHERE x = {{ params.a | literal }}",
            "{{- steps.one.rows[0].n -}} and {{ vars.v }}",
            "plain text",
            "{% if params.a %}{{ params.b }}{% endif %}",
            "{{ \"}}\" ~ params.c }}",
            "{{ params.a }} }} {{ params.b }}",
        ] {
            let whole = references(&env, source, false).unwrap();
            assert_eq!(cache.of(&env, source).unwrap(), whole, "{source}");
            assert_eq!(cache.of(&env, source).unwrap(), whole, "{source}, cached");
        }
        let broken = "SELECT {{ params.a | }} FROM t";
        let (a, b) = (
            references(&env, broken, false).unwrap_err(),
            cache.of(&env, broken).unwrap_err(),
        );
        assert_eq!(a.range(), b.range());
    }

    #[test]
    fn literal_and_ident_quote_for_sql() {
        let env = environment();
        let out = env
            .render_str(
                "{{ name | literal }} {{ n | literal }} {{ t | ident }} {{ nothing | literal }}",
                context! { name => "O'Brien", n => 42, t => "Order \"Items\"", nothing => () },
            )
            .unwrap();
        assert_eq!(out, r#"'O''Brien' 42 "Order ""Items""" NULL"#);
    }

    #[test]
    fn undefined_values_are_errors() {
        let env = environment();
        let err = env
            .render_str("{{ params.nope }}", context! { params => context! {} })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UndefinedError);
    }

    #[test]
    fn env_reads_only_what_it_is_asked_for() {
        let env = environment();
        let out = env
            .render_str("{{ env('RUNBOOK_TEST_SURELY_UNSET', 'fallback') }}", ())
            .unwrap();
        assert_eq!(out, "fallback");
        let err = env
            .render_str("{{ env('RUNBOOK_TEST_SURELY_UNSET') }}", ())
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("`RUNBOOK_TEST_SURELY_UNSET` is not set"),
            "{err}"
        );
    }

    #[test]
    fn deferred_values_render_as_placeholders() {
        let env = environment();
        let ctx = context! { steps => Value::from_object(DeferredSteps) };
        let out = env
            .render_str("n = {{ steps.count_before.rows[0].n | literal }}", ctx)
            .unwrap();
        assert_eq!(out, "n = <known after steps.count_before>");
    }

    #[test]
    fn references_keep_dotted_paths() {
        let env = environment();
        let refs = references(
            &env,
            "{{ params.t | ident }} {{ steps.a.row.n }} {{ env('X') }}",
            false,
        )
        .unwrap();
        assert_eq!(refs, vec!["env", "params.t", "steps.a.row.n"]);
    }
}
