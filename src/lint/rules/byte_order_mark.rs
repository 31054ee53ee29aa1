//! `byte-order-mark`: a migration file saved with a UTF-8 byte-order mark.
//! psql, Flyway and Liquibase read a file without it, and so does runbook's parser;
//! the other tools send it to PostgreSQL, which reads it as part of the
//! first word and fails (golang-migrate/migrate#1136). A rehearsal under
//! runbook passes the file; the tool fails it at the deploy.
//! docs/lint/byte-order-mark.md

use super::super::{Report, Severity};
use crate::history::Tool;
use crate::migrations::{self, Format};

/// The rule, its severity, and what it catches.
pub const RULE: (&str, Severity, &str) = (
    "byte-order-mark",
    Severity::Warning,
    "a migration file that starts with a UTF-8 byte-order mark, which its tool sends to PostgreSQL",
);

/// Each script of `set` whose file starts with a byte-order mark, where
/// the tools that run the directory's format send it.
pub fn check(set: &migrations::Set, report: &mut Report) {
    let who = match (Tool::of_set(set), set.format) {
        (Some(Tool::Supabase), _) => "the Supabase CLI sends".to_string(),
        (_, format) => match format {
            // psql (sqitch's, and often a plain directory's), Flyway and
            // Liquibase (checked with 4.28) skip it; another tool's
            // migrations are not runbook's to read. Prisma's engine: what
            // it does with the mark was not checked.
            Format::Flyway
            | Format::Sqitch
            | Format::Plain
            | Format::Tool
            | Format::Prisma
            | Format::Liquibase => {
                return;
            }
            Format::Pairs => "golang-migrate and SQLx, which read this layout, send".to_string(),
            f => match Tool::of_format(f) {
                Some(t) => format!("{} sends", t.name()),
                None => return,
            },
        },
    };
    let scripts = set
        .migrations
        .iter()
        .chain(&set.repeatables)
        .flat_map(|m| std::iter::once(&m.up).chain(m.down_script()));
    for s in scripts.filter(|s| s.as_written().starts_with('\u{feff}')) {
        report.findings.push(super::line_finding(
            RULE,
            &set.dir.join(&s.file),
            s.first_line,
            format!(
                "the file starts with a UTF-8 byte-order mark; {who} it to PostgreSQL, which reads it as part of the first word (a syntax error)"
            ),
            "save the file as UTF-8 without a byte-order mark",
        ));
    }
}
