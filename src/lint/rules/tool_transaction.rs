//! `tool-transaction`: a migration that the tool its format belongs to
//! would fail, because that tool runs it in a transaction where one of its
//! statements cannot run (a goose file with `CREATE INDEX CONCURRENTLY`
//! and no `-- +goose NO TRANSACTION`). runbook would run it, statement by
//! statement; the tool, deploying the same files, would not.
//! docs/lint/tool-transaction.md

use super::super::{Finding, Report, Severity};
use crate::history::{FailCause, Tool};
use crate::migrations;

/// The rule, its severity, and what it catches.
pub const RULE: (&str, Severity, &str) = (
    "tool-transaction",
    Severity::Warning,
    "a migration its own tool would fail: the tool runs it in a transaction, where a statement of it cannot run",
);

/// Each script of `set` that its format's tool would fail, at the
/// statement that cannot run in the tool's transaction.
pub fn check(set: &migrations::Set, report: &mut Report) {
    let Some(tool) = Tool::of_set(set) else {
        return;
    };
    let fails = tool.would_fail(set);
    // A byte-order mark is `byte-order-mark`'s.
    for f in fails
        .into_iter()
        .filter(|f| f.cause == FailCause::Transaction)
    {
        let path = set.dir.join(&f.file);
        let source_line = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.lines().nth(f.line.saturating_sub(1)).map(str::to_string))
            .unwrap_or_default();
        report.findings.push(Finding {
            rule: RULE.0.into(),
            source: "runbook",
            severity: RULE.1,
            file: path.display().to_string(),
            line: f.line,
            column: 1,
            end_line: f.line,
            end_column: 2,
            message: f.message,
            help: Some(remedy(tool).into()),
            source_line,
        });
    }
}

/// What takes the statement out of the tool's transaction, in its terms.
fn remedy(tool: Tool) -> &'static str {
    match tool {
        Tool::Goose => "add `-- +goose NO TRANSACTION` to the file",
        Tool::SqlMigrate => "write `-- +migrate Up notransaction`",
        Tool::Tern => "add `---- tern: disable-tx ----` to the file",
        Tool::Dbmate => {
            "move the statement to a migration of its own, with `-- migrate:up transaction:false`"
        }
        Tool::Diesel => {
            "move the statement to a migration of its own, with `run_in_transaction = false` in its metadata.toml"
        }
        Tool::Popx => "move the statement to a migration of its own, named `….autocommit.up.sql`",
        Tool::Flyway | Tool::Prisma | Tool::Postgrator => {
            "move the statement to a migration of its own, where it is the only statement"
        }
        _ => {
            "this tool runs every migration in a transaction: run the statement in a runbook `sql` step instead"
        }
    }
}
