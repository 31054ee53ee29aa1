//! `psql-meta-command`: a line only psql reads (`\restrict`, `\connect`,
//! `\set`...) in SQL that runbook, or the tool that deploys a migration,
//! sends to PostgreSQL, which fails on it with a syntax error. pg_dump 17.6
//! and later write `\restrict` and `\unrestrict` around a plain-format dump,
//! so a schema dump used as a first migration has them. Without this rule
//! the file did not parse: its lines gave bare syntax errors and no other
//! rule ran on the rest of it. The lines are blanked for the parser, so
//! the rest is linted as usual.
//! It sits beside the parser, not under `rules/`: the parser needs the
//! lines blanked before it can read the rest.
//! docs/lint/psql-meta-command.md

use super::Severity;

/// The rule, its severity, and what it catches.
pub const RULE: (&str, Severity, &str) = (
    "psql-meta-command",
    Severity::Error,
    "a psql meta-command (a line such as \\restrict or \\connect) in SQL that is sent to PostgreSQL",
);

/// One meta-command line: from its backslash to the end of the line.
pub struct MetaCommand {
    pub start: usize,
    pub end: usize,
    /// The command as written (`\restrict`).
    pub command: String,
}

impl MetaCommand {
    pub fn message(&self) -> String {
        format!(
            "`{}` is a psql meta-command: only psql reads it, and this SQL is sent to PostgreSQL, which fails on it with a syntax error",
            self.command
        )
    }

    pub fn help(&self) -> String {
        match self.command.as_str() {
            "\\restrict" | "\\unrestrict" => "delete the `\\restrict` and `\\unrestrict` lines: pg_dump 17.6 and later write them around a plain-format dump, for psql (the Supabase CLI comments them out)".into(),
            _ => "delete the line, or write what it does as SQL: here it is sent to PostgreSQL as it is, not run by psql".into(),
        }
    }
}

/// The meta-command lines of `sql`, as the parser found them: a backslash
/// outside any string, comment or dollar-quoted body, first on its line.
pub fn find(sql: &str, tree: &squawk_syntax::SyntaxNode) -> Vec<MetaCommand> {
    use squawk_syntax::SyntaxKind as K;
    if !sql.contains('\\') {
        return Vec::new();
    }
    tree.descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| t.kind() == K::ERROR && t.text() == "\\")
        .filter_map(|t| {
            let start = usize::from(t.text_range().start());
            let line_start = sql[..start].rfind('\n').map_or(0, |n| n + 1);
            if !sql[line_start..start].trim().is_empty() {
                return None;
            }
            let end = sql[start..].find('\n').map_or(sql.len(), |n| start + n);
            let line = &sql[start..end];
            let word = line.find(char::is_whitespace).map_or(line, |n| &line[..n]);
            Some(MetaCommand {
                start,
                end,
                command: word.to_string(),
            })
        })
        .collect()
}

/// `sql` with the `lines` blanked (spaces, so every offset stays where it
/// was), for the parser and the other rules.
pub fn blank(sql: &str, lines: &[MetaCommand]) -> String {
    let mut bytes = sql.as_bytes().to_vec();
    for l in lines {
        for b in &mut bytes[l.start..l.end] {
            if *b != b'\r' {
                *b = b' ';
            }
        }
    }
    // Only whole lines of text were replaced with ASCII spaces.
    String::from_utf8(bytes).unwrap_or_else(|_| sql.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(sql: &str) -> Vec<String> {
        let tree = squawk_syntax::SourceFile::parse(sql).syntax_node();
        find(sql, &tree).into_iter().map(|m| m.command).collect()
    }

    #[test]
    fn meta_commands_are_lines_the_parser_cannot_read_and_nothing_quoted() {
        assert_eq!(
            found("\\restrict abc\n\nSET x = 1;\nCREATE TABLE t (id int);\n\\unrestrict abc\n"),
            ["\\restrict", "\\unrestrict"]
        );
        assert_eq!(found("  \\connect app\nSELECT 1;"), ["\\connect"]);
        assert!(found("SELECT E'\\n';\n-- \\set x\nCREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$\n\\x\n$$;").is_empty());
        let sql = "\\restrict k\nSELECT 1;\n";
        let tree = squawk_syntax::SourceFile::parse(sql).syntax_node();
        let blanked = blank(sql, &find(sql, &tree));
        assert_eq!(blanked, "           \nSELECT 1;\n");
        assert!(
            squawk_syntax::SourceFile::parse(&blanked)
                .errors()
                .is_empty()
        );
    }
}
