//! `migration-layout`: a migration directory whose order is ambiguous (a
//! version used twice, a down with no up, a file that is skipped).
//! docs/lint/migration-layout.md

use super::super::{Report, Severity};
use crate::migrations;

/// The rule, its severity, and what it catches.
pub const RULE: (&str, Severity, &str) = (
    "migration-layout",
    Severity::Warning,
    "a migration directory whose order is ambiguous: a version used twice, a down with no up, a file that is skipped",
);

/// A migration set's layout warnings (a version used twice, a down with no
/// up, a file skipped), each located at the file it names.
pub fn check(set: &migrations::Set, report: &mut Report) {
    for w in &set.warnings {
        // The first file the warning names (`001_a.sql`, `0005_x.go`), at
        // the line it gives (`deploy/users.sql:2:`), else the directory.
        let named = w
            .split(|c: char| c.is_whitespace() || c == '`' || c == ',')
            .find_map(|word| {
                let word = word.trim_end_matches(':');
                let (path, line) = match word.rsplit_once(':') {
                    Some((p, n)) if n.parse::<usize>().is_ok() => (p, n.parse().ok()),
                    _ => (word, None),
                };
                (path.contains('.') && set.dir.join(path).is_file()).then_some((path, line))
            });
        let (file, line) = match named {
            Some((f, line)) => (set.dir.join(f), line.unwrap_or(1).max(1)),
            None => (set.dir.clone(), 1),
        };
        report.findings.push(super::line_finding(
            RULE,
            &file,
            line,
            w.clone(),
            "every other migration in the directory is still linted",
        ));
    }
}
