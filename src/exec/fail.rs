//! How the steps that run tools and SQL of their own (backup, restore,
//! rehearse) say they failed: one shape for every such failure.

use std::time::Duration;

use super::{Done, Fail, cancelled_error, child, timeout_error};
use crate::events::ErrorKind;
use crate::events::{ErrorInfo, StepStatus};
use crate::model::ErrorClass;
use crate::pg::tools;

pub(crate) fn failed(class: ErrorKind, message: String, hint: Option<String>) -> Fail {
    Fail::new(
        StepStatus::Failed,
        ErrorInfo {
            class,
            message,
            hint,
            ..ErrorInfo::default()
        },
    )
}

pub(crate) fn tool_failure(e: &tools::ToolError) -> Fail {
    failed(ErrorKind::Tool, e.to_string(), Some(e.hint()))
}

pub(crate) fn sql_failure(what: &str, e: &ErrorInfo) -> Fail {
    Fail::new(
        StepStatus::Failed,
        ErrorInfo {
            message: format!("{what}: {}", e.message),
            ..e.clone()
        },
    )
}

/// Lines of a verbose pg_dump or pg_restore worth showing: problems, not progress.
pub(crate) fn is_problem(line: &str) -> bool {
    ["error:", "warning:", "detail:", "hint:", "FATAL:", "ERROR:"]
        .iter()
        .any(|m| line.contains(m))
}

/// A child that did not exit 0, as a step failure.
pub(crate) fn child_failure(name: &str, ran: &child::Ran, timeout: Option<Duration>) -> Fail {
    let (status, mut error) = match ran.ended {
        Some(StepStatus::TimedOut) => (StepStatus::TimedOut, timeout_error(timeout)),
        Some(_) => (StepStatus::Cancelled, cancelled_error()),
        None => (
            StepStatus::Failed,
            ErrorInfo {
                class: ErrorKind::Exit,
                message: match ran.code {
                    Some(c) => format!("{name} failed (exit code {c}): {}", last_error(ran)),
                    None => format!("{name} was killed by a signal"),
                },
                ..ErrorInfo::default()
            },
        ),
    };
    let lock = ran.stderr.all.contains("could not obtain lock");
    if lock {
        error.class = ErrorKind::LockTimeout;
        error.hint = Some(
            "another session holds a lock on a table; its `lock_timeout` setting bounds the wait"
                .into(),
        );
    }
    Fail {
        status,
        error,
        retry_class: lock.then_some(ErrorClass::LockTimeout),
        partial: Done {
            stderr_tail: ran.stderr.tail(),
            ..Done::default()
        },
        changed_nothing: false,
    }
}

/// The message of a failed pg_dump or pg_restore: its last error line.
pub(crate) fn last_error(ran: &child::Ran) -> String {
    let tail = ran.stderr.tail().unwrap_or_default();
    tail.lines()
        .rev()
        .find(|l| l.contains("error:") || l.contains("ERROR:") || l.contains("FATAL:"))
        .or_else(|| tail.lines().last())
        .unwrap_or("no message")
        .to_string()
}
