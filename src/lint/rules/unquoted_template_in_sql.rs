//! `unquoted-template-in-sql`: a template value placed into SQL without
//! the `literal` or `ident` filter; a value with a quote in it changes the
//! statement. docs/lint/unquoted-template-in-sql.md

use super::super::Severity;
use crate::model::Runbook;

/// The rule, its severity, and what it catches.
pub const RULE: (&str, Severity, &str) = (
    "unquoted-template-in-sql",
    Severity::Error,
    "a template value placed into SQL without the literal or ident filter",
);

/// `{{ expr }}` in SQL whose last filter is not `literal` or `ident`.
pub(super) fn check(
    sql: &str,
    field: &str,
    id: &str,
    rb: &Runbook,
    push: &mut impl FnMut(&str, &str, String, &str),
) {
    // A param that cannot hold a quote: not a string, an enum, or a string
    // whose (whole-value) pattern admits no quote, semicolon or wildcard.
    let constrained = |expr: &str| -> bool {
        let name = expr.split('|').next().unwrap_or("").trim();
        let Some(p) = name.strip_prefix("params.").and_then(|n| rb.params.get(n)) else {
            return false;
        };
        p.ty != crate::model::ParamType::String
            || p.allowed.is_some()
            || p.pattern.as_deref().is_some_and(|pat| {
                !pat.contains(['.', '\\', '\'', '"', ';']) && !pat.contains("[^")
            })
    };
    let mut rest = sql;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open..].find("}}") else {
            break;
        };
        let expr = rest[open + 2..open + close].trim();
        let last = expr.rsplit('|').next().unwrap_or("").trim();
        let filter = last.split(['(', ' ']).next().unwrap_or("");
        let piped = expr.contains('|');
        let safe = piped && matches!(filter, "literal" | "ident");
        // Numbers from `| int` are safe too: they cannot carry quotes.
        let numeric = piped && matches!(filter, "int" | "float" | "length");
        if piped && filter == "unsafe_raw" {
            // Accepted by validate because the author said so: shown here.
            push(
                RULE.0,
                field,
                format!(
                    "step `{id}` splices `{{{{ {expr} }}}}` into SQL as is (`unsafe_raw`): whatever the value holds runs"
                ),
                "keep `unsafe_raw` for text that is SQL on purpose, and constrain the param (`enum`, `pattern`)",
            );
        } else if !safe && !numeric && !constrained(expr) {
            push(
                RULE.0,
                field,
                format!(
                    "step `{id}` puts `{{{{ {expr} }}}}` into SQL unquoted: a value with a quote in it changes the statement"
                ),
                "end the expression with `| literal` for a value or `| ident` for a name",
            );
        }
        rest = &rest[open + close + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    fn findings(sql: &str) -> Vec<String> {
        let yaml = "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: t, version: 1 }\nparams:\n  name: { type: string }\n  size: { type: integer }\n  mode: { type: string, enum: [a, b] }\nphases: []\n";
        let rb: crate::model::Runbook = serde_yaml::from_str(yaml).unwrap();
        let mut out = Vec::new();
        check(sql, "/x", "s", &rb, &mut |_, _, message: String, _| {
            out.push(message)
        });
        out
    }

    #[test]
    fn only_quoted_or_constrained_values_go_into_sql() {
        assert!(
            findings("SELECT {{ params.name | literal }}, {{ params.name | ident }}").is_empty()
        );
        assert!(findings("LIMIT {{ params.size }} -- {{ params.mode }}").is_empty());
        assert!(findings("LIMIT {{ params.name | int }}").is_empty());
        assert_eq!(findings("SELECT '{{ params.name }}'").len(), 1);
        assert!(findings("{{ params.name | unsafe_raw }}")[0].contains("unsafe_raw"));
    }
}
