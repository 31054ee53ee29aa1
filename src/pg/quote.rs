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
}
