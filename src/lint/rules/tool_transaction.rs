//! `tool-transaction`: a migration that the tool its format belongs to
//! would fail, because that tool runs it in a transaction where one of its
//! statements cannot run (a goose file with `CREATE INDEX CONCURRENTLY`
//! and no `-- +goose NO TRANSACTION`). runbook would run it, statement by
//! statement; the tool, deploying the same files, would not.
//! docs/lint/tool-transaction.md

use super::super::{Report, Severity};
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
        report.findings.push(super::line_finding(
            RULE,
            &set.dir.join(&f.file),
            f.line,
            f.message,
            remedy(tool),
        ));
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
        Tool::Sqlx => {
            "move the statement to a migration of its own, whose first line is `-- no-transaction`"
        }
        Tool::Flyway | Tool::Prisma | Tool::Postgrator | Tool::GolangMigrate => {
            "move the statement to a migration of its own, where it is the only statement"
        }
        _ => {
            "this tool runs every migration in a transaction: run the statement in a runbook `sql` step instead"
        }
    }
}
