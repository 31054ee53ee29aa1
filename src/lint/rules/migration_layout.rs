//! `migration-layout`: a migration directory whose order is ambiguous (a
//! version used twice, a down with no up, a file that is skipped).
//! docs/lint/migration-layout.md

use super::super::{Finding, Report, Severity};
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
        let named = w
            .split(|c: char| c.is_whitespace() || c == '`' || c == ':' || c == ',')
            .find(|word| word.ends_with(".sql") && set.dir.join(word).is_file());
        let file = match named {
            Some(f) => set.dir.join(f),
            None => set.dir.clone(),
        };
        report.findings.push(Finding {
            rule: RULE.0.into(),
            source: "runbook",
            severity: RULE.1,
            file: file.display().to_string(),
            line: 1,
            column: 1,
            end_line: 1,
            end_column: 2,
            message: w.clone(),
            help: Some("every other migration in the directory is still linted".into()),
            source_line: std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| t.lines().next().map(str::to_string))
                .unwrap_or_default(),
        });
    }
}
