//! Plan: every template rendered, every variable resolved, before anything runs.
//!
//! Values that exist only at run time (step outputs, the run id) render as
//! `<known after steps.X>`; the template is kept beside them so the executor
//! can render it again when the value exists. Secrets are redacted.

mod backfill;
mod backup;
mod build;
mod check;
mod migrate;
mod rehearse;
mod risk;
pub use risk::{DEFAULT_TRIGGER_INTERVAL_MS, PlanRisk, PlanTrigger};
mod restore;
mod shell;
mod snapshot;
mod text;
mod wait;
mod watch;

use indexmap::IndexMap;
use minijinja::Environment;
use minijinja::value::Value as JValue;
use serde::Serialize;
use serde_json::Value;

use crate::diag::Diagnostic;
use crate::duration::Duration;
use crate::model::{self, ErrorClass, FailureMode, OnFailure, Runbook, Step, StepKind, When};
use crate::params::Origin;
use crate::redact::{REDACTED, Redactor};
use crate::secret::Secret;
use crate::template::{self, Deferred, DeferredSteps};
use crate::validate::{FileDiagnostics, Invalid, Validated};

pub use backfill::PlanBackfill;
pub use backup::PlanBackup;
pub use build::build;
pub use check::{PlanBuiltin, PlanCheck, PlanExpect};
pub use migrate::{PlanHistory, PlanMigrate, PlanSelect};
pub use rehearse::{PlanRehearse, PlanScratch, PlanTool, REHEARSAL_TO};
pub use restore::{PlanRestore, RestoreFrom};
pub use shell::PlanShell;
pub use snapshot::PlanSnapshot;
pub use wait::PlanWait;
pub use watch::PlanWatch;

/// Session settings every SQL step gets unless the runbook or step says otherwise:
/// a DDL statement waits at most this long for a lock, so it cannot queue
/// the application's queries behind it for long.
pub const DEFAULT_LOCK_TIMEOUT_MS: u64 = 2_000;

/// Other sessions waiting longer than this on a step's locks get a report warning.
pub const DEFAULT_LOCK_WAIT_WARNING_MS: u64 = 1_000;

pub const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 15 * 60_000;

/// A transaction of runbook's that waits this long for its client (frozen,
/// asleep, or cut off from the server by the network) is ended by the
/// server, and the locks it holds go with it. runbook itself never leaves
/// one idle for more than the time between two statements.
pub const DEFAULT_IDLE_IN_TRANSACTION_MS: u64 = 30_000;

/// SQL and check steps retry lock timeouts and deadlocks this many times
/// unless the runbook says otherwise.
pub const DEFAULT_SQL_ATTEMPTS: u32 = 5;

pub const DEFAULT_SQL_RETRY_ON: &[ErrorClass] = &[ErrorClass::LockTimeout, ErrorClass::Deadlock];

/// Retry defaults when a runbook says nothing.
pub const DEFAULT_BACKOFF_INITIAL_MS: u64 = 500;

pub const DEFAULT_BACKOFF_FACTOR: f64 = 2.0;

pub const DEFAULT_BACKOFF_MAX_MS: u64 = 30_000;

/// Retried by default when `attempts` > 1 and `on` is not given: the classes
/// after which PostgreSQL has rolled the transaction back, so a retry is safe.
pub const DEFAULT_RETRY_ON: &[ErrorClass] = &[
    ErrorClass::LockTimeout,
    ErrorClass::Deadlock,
    ErrorClass::SerializationFailure,
];

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub runbook: RunbookInfo,
    pub params: IndexMap<String, PlanParam>,
    pub vars: IndexMap<String, Value>,
    pub database: PlanDatabase,
    pub settings: model::Settings,
    pub phases: Vec<PlanPhase>,
    pub risk: PlanRisk,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub abort_when: Vec<PlanTrigger>,
    pub on_failure: Vec<PlanStep>,
    #[serde(rename = "finally")]
    pub finally_steps: Vec<PlanStep>,
    #[serde(skip)]
    pub redactor: Redactor,
    /// Unredacted values the executor renders run-time templates with.
    #[serde(skip)]
    pub context: RenderContext,
    /// The runbook's database URL, rendered and unredacted.
    #[serde(skip)]
    pub database_url: Option<String>,
}

/// What templates read, unredacted. Never serialized.
#[derive(Debug, Clone, Default)]
pub struct RenderContext {
    pub params: Value,
    pub vars: Value,
    pub metadata: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunbookInfo {
    pub name: String,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub file: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanParam {
    pub value: Value,
    pub origin: Origin,
    pub secret: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanDatabase {
    /// The URL from the runbook, redacted; `None` when it comes from the
    /// command line or `DATABASE_URL` at run time.
    pub url: Option<String>,
    pub source: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanWhen {
    pub expr: String,
    /// Known at plan time, or `None` when it reads run-time values.
    pub value: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanApproval {
    pub prompt: Text,
    pub required: bool,
    /// Distinct people who must approve: the gate's own `approvers`, else
    /// by the runbook's risk.
    pub approvers: u32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "mode", content = "steps")]
pub enum PlanOnFailure {
    Rollback,
    Abort,
    Continue,
    Steps(Vec<PlanStep>),
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanPhase {
    pub id: String,
    pub kind: model::PhaseKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<PlanWhen>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<PlanApproval>,
    pub on_failure: PlanOnFailure,
    pub steps: Vec<PlanStep>,
}

/// A rendered string. `template` and `after` are set when part of it is
/// known only at run time.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Text {
    /// The rendered text, redacted: what every output shows.
    pub text: String,
    /// The rendered text as it runs, secrets in it. Never serialized,
    /// never printed (`Debug` shows `[REDACTED]`).
    #[serde(skip)]
    pub raw: Secret<String>,
    /// The JSON pointer of the field in the runbook, for error locations.
    #[serde(skip)]
    pub pointer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanRetry {
    pub attempts: u32,
    pub initial: Duration,
    pub factor: f64,
    pub max: Duration,
    pub on: Vec<ErrorClass>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Action {
    Sql { statements: Text, transaction: bool },
    Check(Box<PlanCheck>),
    Shell(Box<PlanShell>),
    Sleep { duration: Duration },
    Backup(Box<PlanBackup>),
    Restore(Box<PlanRestore>),
    Backfill(Box<PlanBackfill>),
    Migrate(Box<PlanMigrate>),
    Snapshot(Box<PlanSnapshot>),
    Rehearse(Box<PlanRehearse>),
    Wait(Box<PlanWait>),
    Watch(Box<PlanWatch>),
}

impl Action {
    /// The step kind, as the runbook names it.
    /// In one line, for the progress display; `shown` renders a template
    /// as it will run (or as the plan shows it).
    pub fn describe(&self, shown: &dyn Fn(&Text) -> String) -> String {
        match self {
            Action::Sql { statements, .. } => shown(statements),
            Action::Sleep { duration } => format!("sleep {duration}"),
            Action::Check(x) => x.describe(shown),
            Action::Shell(x) => x.describe(shown),
            Action::Backup(x) => x.describe(shown),
            Action::Restore(x) => x.describe(shown),
            Action::Backfill(x) => x.describe(shown),
            Action::Migrate(x) => x.describe(shown),
            Action::Snapshot(x) => x.describe(shown),
            Action::Rehearse(x) => x.describe(shown),
            Action::Wait(x) => x.describe(shown),
            Action::Watch(x) => x.describe(shown),
        }
    }

    /// Whether the step writes on the server the run connects to: a
    /// read-only one (a standby, or `default_transaction_read_only` on)
    /// refuses it. A rehearsal writes to the database it rehearses on, or
    /// creates a scratch copy there; a backup verified by a restore creates
    /// a scratch database there. A shell step's command is not known, and
    /// is not counted.
    pub fn writes(&self) -> bool {
        match self {
            Self::Sql { .. }
            | Self::Restore(_)
            | Self::Backfill(_)
            | Self::Migrate(_)
            | Self::Rehearse(_) => true,
            Self::Backup(b) => b.verify == model::Verify::Restore,
            Self::Check(_)
            | Self::Shell(_)
            | Self::Sleep { .. }
            | Self::Snapshot(_)
            | Self::Wait(_)
            | Self::Watch(_) => false,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sql { .. } => "sql",
            Self::Check { .. } => "check",
            Self::Shell { .. } => "shell",
            Self::Sleep { .. } => "sleep",
            Self::Backup(_) => "backup",
            Self::Restore(_) => "restore",
            Self::Backfill(_) => "backfill",
            Self::Migrate(_) => "migrate",
            Self::Snapshot(_) => "snapshot",
            Self::Rehearse(_) => "rehearse",
            Self::Wait(_) => "wait",
            Self::Watch(_) => "watch",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanStep {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<PlanWhen>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    pub retry: PlanRetry,
    /// This step's session settings, when they differ from the runbook's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings: Option<model::Settings>,
    pub action: Action,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rollback: Vec<PlanStep>,
    /// Whether `rollback` runs after this step failed part-way.
    #[serde(skip_serializing_if = "is_true")]
    pub rollback_on_partial: bool,
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Values known before the run starts (the run id is known only to `exec`).
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    pub id: Option<String>,
    pub started_at: Option<String>,
}

struct Planner<'a> {
    doc: &'a crate::load::Document,
    env: Environment<'static>,
    ctx: JValue,
    rb: &'a Runbook,
    /// Where each templated field sits in the document.
    fields: crate::fields::Fields<'a>,
    redactor: Redactor,
    errors: Vec<Diagnostic>,
    /// Params with no value and no default: a template that uses one fails.
    unset: Vec<String>,
}

/// The runbook's settings with the defaults filled in.
pub fn effective_settings(s: &model::Settings) -> model::Settings {
    let mut s = s.clone();
    s.lock_timeout
        .get_or_insert(Duration::from_millis(DEFAULT_LOCK_TIMEOUT_MS));
    s.statement_timeout
        .get_or_insert(Duration::from_millis(DEFAULT_STATEMENT_TIMEOUT_MS));
    s.idle_in_transaction_session_timeout
        .get_or_insert(Duration::from_millis(DEFAULT_IDLE_IN_TRANSACTION_MS));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{Inputs, ParamCheck};

    fn plan_of(yaml: &str, set: &[&str]) -> Plan {
        let doc = crate::load::load_str("t.yml", yaml).expect("loads");
        let inputs = Inputs {
            set: set.iter().map(|s| s.to_string()).collect(),
            params_file: None,
        };
        let v = crate::validate::validate_doc(doc, &inputs, ParamCheck::RequireAll)
            .unwrap_or_else(|e| panic!("{}", e.render(false)));
        build(&v, &RunInfo::default()).unwrap_or_else(|e| panic!("{}", e.render(false)))
    }

    const RUNBOOK: &str = r#"apiVersion: runbook/v1
kind: Runbook
metadata: { name: t, version: 1 }
params:
  table: { type: string, default: users }
  token: { type: string, secret: true }
phases:
  - id: expand
    kind: expand
    steps:
      - id: add
        sql: ALTER TABLE {{ params.table | ident }} ADD COLUMN note text;
      - id: tell
        shell:
          command: echo "$TOKEN" {{ steps.add.rows_affected }}
          env: { TOKEN: "{{ params.token }}" }
      - id: dump
        backup: { path: "bk/{{ params.table }}", verify: list }
"#;

    /// The text a person approves: templates rendered, secrets redacted,
    /// values known only at run time named as such.
    #[test]
    fn the_plan_text_renders_redacts_and_defers() {
        let p = plan_of(RUNBOOK, &["token=s3cr3t-value"]);
        let text = p.to_text();
        assert!(
            text.contains("ALTER TABLE \"users\" ADD COLUMN note text;"),
            "{text}"
        );
        assert!(text.contains("takes ACCESS EXCLUSIVE"), "{text}");
        assert!(!text.contains("s3cr3t-value"), "{text}");
        assert!(text.contains("[REDACTED]"), "{text}");
        assert!(text.contains("<known after steps.add>"), "{text}");
        let json = p.to_json();
        assert!(!json.contains("s3cr3t-value"), "{json}");
    }

    /// Each action describes itself in one line, with the renderer given.
    #[test]
    fn each_action_describes_itself() {
        let p = plan_of(RUNBOOK, &["token=x"]);
        let shown = |t: &Text| t.text.clone();
        let lines: Vec<String> = p.phases[0]
            .steps
            .iter()
            .map(|s| s.action.describe(&shown))
            .collect();
        assert_eq!(lines[0], "ALTER TABLE \"users\" ADD COLUMN note text;");
        assert_eq!(lines[1], "echo \"$TOKEN\" <known after steps.add>");
        assert_eq!(lines[2], "backup (directory) to bk/users");
    }
}
