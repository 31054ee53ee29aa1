//! Quoting for PostgreSQL, once: identifiers and string literals, as the
//! server's own `quote_ident` and `quote_literal` write them (with
//! `standard_conforming_strings`, on since PostgreSQL 9.1).

/// `"name"`, with `"` doubled: one identifier, whatever it holds.
pub fn ident(s: &str) -> String {
    quoted(s, '"')
}

/// `'text'`, with `'` doubled: one string literal, whatever it holds.
pub fn literal(s: &str) -> String {
    quoted(s, '\'')
}

/// A dollar-quote tag that `body` does not contain: `$runbook$`, else
/// `$runbook1$`, `$runbook2$` and so on.
pub fn dollar_tag(body: &str) -> String {
    let mut tag = "$runbook$".to_string();
    let mut n = 0;
    while body.contains(&tag) {
        n += 1;
        tag = format!("$runbook{n}$");
    }
    tag
}

fn quoted(s: &str, q: char) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        if c == q {
            out.push(q);
        }
        out.push(c);
    }
    out.push(q);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn identifiers_and_literals_are_one_token_whatever_they_hold() {
        assert_eq!(super::ident("Mixed Case"), "\"Mixed Case\"");
        assert_eq!(super::ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(super::literal("it's"), "'it''s'");
        assert_eq!(
            super::literal("x'; DROP TABLE t; --"),
            "'x''; DROP TABLE t; --'"
        );
        assert_eq!(super::literal(""), "''");
    }

    #[test]
    fn a_dollar_tag_is_never_inside_the_body() {
        assert_eq!(super::dollar_tag("SELECT 1"), "$runbook$");
        assert_eq!(super::dollar_tag("x $runbook$ y"), "$runbook1$");
        assert_eq!(super::dollar_tag("$runbook$ $runbook1$"), "$runbook2$");
    }
}
