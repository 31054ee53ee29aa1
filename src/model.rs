//! The typed runbook model (`runbook/v1`).
//!
//! It mirrors `schemas/runbook.v1.schema.json`; a test proves the two agree.
//! The schema gives located, friendly errors; the model gives the rest of the
//! program types to work with.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::duration::Duration;

pub const API_VERSION: &str = "runbook/v1";

/// The kind keys a step may use now.
pub const STEP_KINDS: &[&str] = &[
    "sql", "check", "shell", "sleep", "wait", "watch", "backup", "restore", "backfill", "migrate",
    "snapshot", "rehearse",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runbook {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    #[serde(default)]
    pub params: IndexMap<String, Param>,
    #[serde(default)]
    pub vars: IndexMap<String, Value>,
    #[serde(default)]
    pub database: Database,
    #[serde(default)]
    pub settings: Settings,
    #[serde(default)]
    pub defaults: Defaults,
    pub phases: Vec<Phase>,
    /// Rollback triggers: checks that must keep passing while the run goes.
    #[serde(default)]
    pub abort_when: Vec<Trigger>,
    #[serde(default)]
    pub on_failure: Vec<Step>,
    #[serde(default)]
    pub finally: Vec<Step>,
    #[serde(default)]
    pub lint: LintConfig,
    /// How `exec --targets` rolls the runbook out over many databases.
    #[serde(default)]
    pub rollout: Rollout,
}

/// `rollout:` — waves and stop rules for `exec --targets` (see
/// [`crate::fleet`]). Flags on the command line beat these.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    pub parallel: Option<u32>,
    pub canary: Option<u32>,
    pub wave_size: Option<Amount>,
    pub max_failures: Option<Amount>,
    #[serde(default)]
    pub pause: Pause,
}

/// Between waves: a wait, an approval, or both.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pause {
    pub duration: Option<Duration>,
    #[serde(default)]
    pub approve: bool,
}

/// A number of targets, or a share of them (`25%`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "Value")]
pub enum Amount {
    Count(u32),
    Percent(f64),
}

impl Amount {
    /// How many of `total` targets: a share rounds down, but never below
    /// one for a share above zero.
    pub fn of(self, total: usize) -> usize {
        match self {
            Amount::Count(n) => n as usize,
            Amount::Percent(p) => {
                let n = (total as f64 * p / 100.0).floor() as usize;
                if p > 0.0 { n.max(1) } else { 0 }
            }
        }
    }
}

impl std::str::FromStr for Amount {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is neither a count (3) nor a share (25%)");
        match s.trim().strip_suffix('%') {
            Some(p) => match p.parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(Amount::Percent(p)),
                _ => Err(bad()),
            },
            None => s.trim().parse().map(Amount::Count).map_err(|_| bad()),
        }
    }
}

impl TryFrom<Value> for Amount {
    type Error = String;

    fn try_from(v: Value) -> Result<Self, String> {
        match v {
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Amount::Count)
                .ok_or_else(|| format!("`{n}` is not a count of targets")),
            Value::String(s) => s.parse(),
            other => Err(format!("`{other}` is neither a count nor a share")),
        }
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// `lint:` — rule choices for `runbook lint` (see [`crate::lint`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LintConfig {
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub severities: IndexMap<String, LintLevel>,
    pub pg_version: Option<String>,
    /// Migrations before this version were first applied together to an
    /// empty database: their tables count as new for each other.
    pub assume_empty_before: Option<String>,
    /// Migrations up to this version, included, are applied everywhere
    /// already: they will not run again, so they are not linted.
    pub applied_through: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LintLevel {
    Error,
    Warning,
    Off,
}

/// `settings.lint`: what `exec` does with lint findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LintMode {
    Error,
    #[default]
    Warn,
    Off,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(deserialize_with = "string_or_integer")]
    pub version: String,
    pub description: Option<String>,
    pub owner: Option<String>,
    #[serde(default)]
    pub labels: IndexMap<String, String>,
    /// How risky the change is, as its authors judge it.
    pub risk: Option<Risk>,
}

/// How risky a runbook is: it sets how many people approve a gated phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Low,
    Medium,
    High,
}

impl Risk {
    pub fn name(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        }
    }

    /// Approvers a gated phase needs when it does not say: two for a high
    /// risk, one otherwise.
    pub fn default_approvers(self) -> u32 {
        if self == Risk::High { 2 } else { 1 }
    }
}

/// One entry of `abort_when:`: a check that must keep passing. It runs
/// before every main-line step and at most every `interval` during long
/// steps; when it fails, the run stops and unwinds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    pub id: String,
    pub check: CheckStep,
    pub interval: Option<Duration>,
}

fn string_or_integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string, found {other}"
        ))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
}

impl ParamType {
    pub fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    #[serde(rename = "type")]
    pub ty: ParamType,
    #[serde(default)]
    pub required: bool,
    pub default: Option<Value>,
    #[serde(rename = "enum")]
    pub allowed: Option<Vec<Value>>,
    pub pattern: Option<String>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    #[serde(default)]
    pub secret: bool,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    pub url: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement_timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_in_transaction_session_timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_path: Option<String>,
    /// Before a statement that takes a write-blocking lock, wait up to this
    /// long for the sessions in its way to finish. Unset: name them, go on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_for_blockers: Option<Duration>,
    /// Warn when other sessions waited longer than this on a step's locks.
    /// Default 1s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_wait_warning: Option<Duration>,
    /// Sample lock impact while steps run. Default true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_monitor: Option<bool>,
    /// `error`, `warn` (the default) or `off`: lint before `exec` runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lint: Option<LintMode>,
    /// Tables whose data an undo is checked for, besides the schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_undo: Option<VerifyUndo>,
}

/// The tables a runbook's phases change the data of: after a rollback
/// their row counts (and, with `checksums`, their contents) must be what
/// they were before the phase, or the rollback is not clean.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VerifyUndo {
    pub tables: Vec<String>,
    /// Also compare a checksum of every row (one full read of each table
    /// before every phase that may change the database, and after an undo).
    #[serde(default)]
    pub checksums: bool,
}

/// Session settings a step may override.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSettings {
    pub lock_timeout: Option<Duration>,
    pub statement_timeout: Option<Duration>,
    pub wait_for_blockers: Option<Duration>,
    pub lock_wait_warning: Option<Duration>,
    pub lock_monitor: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub timeout: Option<Duration>,
    pub retry: Option<RetrySpec>,
}

/// Retry as written: every field optional, so step values can override
/// defaults key by key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    pub attempts: Option<u32>,
    pub backoff: Option<BackoffSpec>,
    pub on: Option<Vec<ErrorClass>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffSpec {
    pub initial: Option<Duration>,
    pub factor: Option<f64>,
    pub max: Option<Duration>,
}

/// Error classes a retry may cover. Only these are ever retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    LockTimeout,
    Deadlock,
    SerializationFailure,
    Connection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseKind {
    Preflight,
    Backup,
    Expand,
    Migrate,
    Contract,
    Verify,
    Custom,
}

impl PhaseKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Preflight => "preflight",
            Self::Backup => "backup",
            Self::Expand => "expand",
            Self::Migrate => "migrate",
            Self::Contract => "contract",
            Self::Verify => "verify",
            Self::Custom => "custom",
        }
    }
}

/// `when:` — a boolean, or an expression evaluated before the step or phase.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum When {
    Literal(bool),
    Expr(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    pub prompt: Option<String>,
    #[serde(default = "yes")]
    pub required: bool,
    /// Distinct people who must approve; by the runbook's risk when unset.
    pub approvers: Option<u32>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    #[default]
    Rollback,
    Abort,
    Continue,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OnFailure {
    Mode(FailureMode),
    Steps(Vec<Step>),
}

impl Default for OnFailure {
    fn default() -> Self {
        Self::Mode(FailureMode::Rollback)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub id: String,
    pub kind: PhaseKind,
    pub description: Option<String>,
    pub when: Option<When>,
    pub approval: Option<Approval>,
    #[serde(default)]
    pub on_failure: OnFailure,
    pub steps: Vec<Step>,
}

/// A step: the common keys plus exactly one kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawStep")]
pub struct Step {
    pub id: String,
    pub name: Option<String>,
    pub when: Option<When>,
    pub timeout: Option<Duration>,
    pub retry: Option<RetrySpec>,
    pub settings: Option<StepSettings>,
    pub rollback: Vec<Step>,
    /// `rollback:` was written as one step, not a list (it changes the pointer).
    pub rollback_single: bool,
    /// For a step that can fail part-way (non-transactional SQL, shell,
    /// migrate, backfill): whether its compensation runs when it did.
    /// Default true.
    pub rollback_on_partial: bool,
    pub kind: StepKind,
}

#[derive(Debug, Clone)]
pub enum StepKind {
    Sql(SqlStep),
    Check(CheckStep),
    Shell(ShellStep),
    Sleep(Duration),
    Backup(BackupStep),
    Restore(RestoreStep),
    Backfill(BackfillStep),
    Migrate(MigrateStep),
    Snapshot(SnapshotStep),
    Rehearse(RehearseStep),
    Wait(WaitStep),
    Watch(WatchStep),
}

impl StepKind {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sql(_) => "sql",
            Self::Check(_) => "check",
            Self::Shell(_) => "shell",
            Self::Sleep(_) => "sleep",
            Self::Wait(_) => "wait",
            Self::Watch(_) => "watch",
            Self::Backup(_) => "backup",
            Self::Restore(_) => "restore",
            Self::Backfill(_) => "backfill",
            Self::Migrate(_) => "migrate",
            Self::Snapshot(_) => "snapshot",
            Self::Rehearse(_) => "rehearse",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    id: String,
    name: Option<String>,
    when: Option<When>,
    timeout: Option<Duration>,
    retry: Option<RetrySpec>,
    settings: Option<StepSettings>,
    rollback: Option<OneOrMany<Step>>,
    rollback_on_partial: Option<bool>,
    sql: Option<SqlStep>,
    check: Option<CheckStep>,
    shell: Option<ShellStep>,
    sleep: Option<Duration>,
    backup: Option<BackupStep>,
    restore: Option<RestoreStep>,
    backfill: Option<BackfillStep>,
    migrate: Option<MigrateStep>,
    snapshot: Option<SnapshotStep>,
    rehearse: Option<RehearseStep>,
    wait: Option<WaitStep>,
    watch: Option<WatchStep>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(Box<T>),
    Many(Vec<T>),
}

impl TryFrom<RawStep> for Step {
    type Error = String;

    fn try_from(raw: RawStep) -> Result<Self, String> {
        let mut kinds = Vec::new();
        if let Some(s) = raw.sql {
            kinds.push(StepKind::Sql(s));
        }
        if let Some(c) = raw.check {
            kinds.push(StepKind::Check(c));
        }
        if let Some(s) = raw.shell {
            kinds.push(StepKind::Shell(s));
        }
        if let Some(d) = raw.sleep {
            kinds.push(StepKind::Sleep(d));
        }
        if let Some(b) = raw.backup {
            kinds.push(StepKind::Backup(b));
        }
        if let Some(r) = raw.restore {
            kinds.push(StepKind::Restore(r));
        }
        if let Some(b) = raw.backfill {
            kinds.push(StepKind::Backfill(b));
        }
        if let Some(m) = raw.migrate {
            kinds.push(StepKind::Migrate(m));
        }
        if let Some(x) = raw.snapshot {
            kinds.push(StepKind::Snapshot(x));
        }
        if let Some(x) = raw.rehearse {
            kinds.push(StepKind::Rehearse(x));
        }
        if let Some(x) = raw.wait {
            kinds.push(StepKind::Wait(x));
        }
        if let Some(x) = raw.watch {
            kinds.push(StepKind::Watch(x));
        }
        if kinds.len() != 1 {
            return Err(format!(
                "step `{}` needs exactly one kind key, found {}",
                raw.id,
                kinds.len()
            ));
        }
        Ok(Step {
            id: raw.id,
            name: raw.name,
            when: raw.when,
            timeout: raw.timeout,
            retry: raw.retry,
            settings: raw.settings,
            rollback_single: matches!(raw.rollback, Some(OneOrMany::One(_))),
            rollback_on_partial: raw.rollback_on_partial.unwrap_or(true),
            rollback: match raw.rollback {
                None => Vec::new(),
                Some(OneOrMany::One(s)) => vec![*s],
                Some(OneOrMany::Many(v)) => v,
            },
            kind: kinds.remove(0),
        })
    }
}

#[derive(Debug, Clone)]
pub struct SqlStep {
    pub statements: String,
    pub transaction: bool,
}

impl<'de> Deserialize<'de> for SqlStep {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            statements: String,
            #[serde(default = "yes")]
            transaction: bool,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Short(String),
            Full(Box<Full>),
        }
        Ok(match Form::deserialize(d)? {
            Form::Short(statements) => SqlStep {
                statements,
                transaction: true,
            },
            Form::Full(f) => SqlStep {
                statements: f.statements,
                transaction: f.transaction,
            },
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Error,
    Warn,
}

/// `wait:` repeat a check every `interval` until it passes; fail with the
/// last rows it saw once `timeout` has passed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitStep {
    /// The check to repeat: the same shape as a `check:` step.
    pub check: CheckStep,
    /// Between tries; 1s when not given.
    pub interval: Option<Duration>,
    /// How long to keep trying (a template is rendered when the plan is made).
    pub timeout: DurationSetting,
}

/// `watch:` hold for `duration` while a check keeps passing, sampled every
/// `interval`; the first sample that breaks it fails the step (and so
/// starts its phase's rollback).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchStep {
    /// The check each sample runs: the same shape as a `check:` step.
    pub check: CheckStep,
    /// Between samples; 1s when not given.
    pub interval: Option<Duration>,
    /// How long the check must keep passing (a template is rendered when the plan is made).
    pub duration: DurationSetting,
}

/// A wait's interval when the runbook gives none.
pub const DEFAULT_WAIT_INTERVAL_MS: u64 = 1_000;

#[derive(Debug, Clone)]
pub struct CheckStep {
    /// Empty for a built-in check.
    pub query: String,
    /// Run it in this database of the same server (a template), such as a
    /// scratch restore; the run's own database when absent.
    pub database: Option<String>,
    /// `builtin: NAME` and its arguments, as written (checked against
    /// `crate::checks` during validation).
    pub builtin: Option<BuiltinCheck>,
    pub expect: IndexMap<String, Matcher>,
    pub assert: Vec<String>,
    pub severity: Severity,
}

#[derive(Debug, Clone)]
pub struct BuiltinCheck {
    pub name: String,
    pub args: IndexMap<String, Value>,
}

impl<'de> Deserialize<'de> for CheckStep {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Full {
            query: Option<String>,
            builtin: Option<String>,
            #[serde(default)]
            expect: IndexMap<String, Matcher>,
            #[serde(default)]
            assert: Vec<String>,
            #[serde(default)]
            severity: Severity,
            database: Option<String>,
            /// A built-in check's arguments; any other key is refused by
            /// the schema and by validation.
            #[serde(flatten)]
            args: IndexMap<String, Value>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Short(String),
            Full(Box<Full>),
        }
        Ok(match Form::deserialize(d)? {
            Form::Short(query) => CheckStep {
                query,
                database: None,
                builtin: None,
                expect: IndexMap::new(),
                assert: Vec::new(),
                severity: Severity::Error,
            },
            Form::Full(f) => {
                let f = *f;
                CheckStep {
                    query: f.query.unwrap_or_default(),
                    database: f.database,
                    builtin: f.builtin.map(|name| BuiltinCheck { name, args: f.args }),
                    expect: f.expect,
                    assert: f.assert,
                    severity: f.severity,
                }
            }
        })
    }
}

/// One expectation on a value: a plain value means `eq`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Matcher {
    pub ops: Vec<(CompareOp, Value)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
    In,
    Between,
}

impl CompareOp {
    pub fn name(self) -> &'static str {
        match self {
            Self::Eq => "eq",
            Self::Ne => "ne",
            Self::Lt => "lt",
            Self::Lte => "lte",
            Self::Gt => "gt",
            Self::Gte => "gte",
            Self::In => "in",
            Self::Between => "between",
        }
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Object(map) => {
                let mut ops = Vec::with_capacity(map.len());
                for (k, v) in map {
                    let op: CompareOp =
                        serde_json::from_value(Value::String(k.clone())).map_err(|_| {
                            serde::de::Error::custom(format!("unknown comparison `{k}`"))
                        })?;
                    ops.push((op, v));
                }
                Ok(Matcher { ops })
            }
            v => Ok(Matcher {
                ops: vec![(CompareOp::Eq, v)],
            }),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ShellStep {
    pub command: Command,
    pub env: IndexMap<String, String>,
    pub cwd: Option<String>,
    pub expect_exit: Vec<i32>,
}

/// A shell command: a string run by `sh -c`, or an argv list run directly.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Command {
    Script(String),
    Argv(Vec<String>),
}

impl<'de> Deserialize<'de> for ShellStep {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Exit {
            One(i32),
            Many(Vec<i32>),
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            command: Command,
            #[serde(default)]
            env: IndexMap<String, String>,
            cwd: Option<String>,
            expect_exit: Option<Exit>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Short(Command),
            Full(Full),
        }
        Ok(match Form::deserialize(d)? {
            Form::Short(command) => ShellStep {
                command,
                env: IndexMap::new(),
                cwd: None,
                expect_exit: vec![0],
            },
            Form::Full(f) => ShellStep {
                command: f.command,
                env: f.env,
                cwd: f.cwd,
                expect_exit: match f.expect_exit {
                    None => vec![0],
                    Some(Exit::One(c)) => vec![c],
                    Some(Exit::Many(v)) => v,
                },
            },
        })
    }
}

/// The archive format of a backup (pg_dump `--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupFormat {
    /// One file per table; the only format pg_dump can write in parallel.
    #[default]
    Directory,
    Custom,
    /// A SQL script, restored with psql.
    Plain,
}

impl BackupFormat {
    pub fn name(self) -> &'static str {
        match self {
            Self::Directory => "directory",
            Self::Custom => "custom",
            Self::Plain => "plain",
        }
    }
}

/// How a backup is proven readable before the step succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verify {
    /// Only the hashes are written; nothing is read back.
    None,
    /// `pg_restore --list` reads the archive, and its table of contents
    /// covers every table in the manifest.
    #[default]
    List,
    /// Also restore into a scratch database and compare row counts.
    Restore,
}

/// Where the backup goes when `path` is not given.
pub const DEFAULT_BACKUP_PATH: &str = "backups/{{ metadata.name }}/{{ run.id }}";

/// `backup:` — pg_dump, a manifest, and a verification.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupStep {
    #[serde(default = "default_backup_path")]
    pub path: String,
    #[serde(default)]
    pub format: BackupFormat,
    pub jobs: Option<u32>,
    pub compress: Option<u32>,
    #[serde(default)]
    pub schema_only: bool,
    #[serde(default)]
    pub data_only: bool,
    #[serde(default)]
    pub tables: Vec<String>,
    #[serde(default)]
    pub exclude_tables: Vec<String>,
    #[serde(default)]
    pub schemas: Vec<String>,
    #[serde(default)]
    pub exclude_schemas: Vec<String>,
    #[serde(default)]
    pub verify: Verify,
    /// Keep this many backups: a whole number, or a template that renders
    /// to one, checked before the run starts.
    #[serde(default, deserialize_with = "opt_string_or_integer")]
    pub keep: Option<String>,
    /// Also remove this runbook's backups beside it that are older than
    /// this (after a backup succeeded; never the one just taken).
    pub keep_for: Option<DurationSetting>,
}

fn default_backup_path() -> String {
    DEFAULT_BACKUP_PATH.to_string()
}

/// `restore:` — pg_restore (or psql for plain dumps) from a verified backup.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreStep {
    /// A path (a template), or `steps.<id>` naming an earlier backup step.
    pub from: String,
    /// A database name; the run's database when absent.
    pub target: Option<String>,
    #[serde(default)]
    pub clean: bool,
    pub jobs: Option<u32>,
    pub single_transaction: Option<bool>,
    #[serde(default)]
    pub terminate_connections: bool,
    #[serde(default)]
    pub mode: RestoreMode,
    /// `newest`: `from` is a directory of backups, and the newest one whose
    /// verification passed is restored.
    pub pick: Option<Pick>,
}

/// Which backup of a directory of them a restore takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pick {
    Newest,
}

/// `in_place` (the default) restores into the database as it is;
/// `recreate` drops the target database, creates it anew from the
/// maintenance database and restores into it (whole-database backups).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreMode {
    #[default]
    InPlace,
    Recreate,
}

impl RestoreStep {
    /// The backup step `from` names, when it is a step reference.
    pub fn from_step(&self) -> Option<&str> {
        let id = self.from.trim().strip_prefix("steps.")?;
        (!id.is_empty()
            && id.starts_with(|c: char| c.is_ascii_lowercase())
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        .then_some(id)
    }
}

/// `backfill:` — an UPDATE in keyset-paginated batches, each its own short
/// transaction, checkpointed so a re-run resumes where the last one stopped.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillStep {
    /// The table (a template), optionally schema-qualified.
    pub table: String,
    /// The SET list (a template): `customer_ref = legacy_customer_id`.
    pub set: String,
    /// Which rows to change (a template); all rows when absent.
    #[serde(rename = "where")]
    pub where_: Option<String>,
    /// Columns to page by: the primary key when absent. They must be the
    /// columns of a unique index, so no row is skipped or visited twice.
    #[serde(default)]
    pub key: Vec<String>,
    /// Keys per batch; with `batch_time`, the first batch's size.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Size each batch to take about this long, from how long the last
    /// ones took, instead of a fixed `batch_size`.
    pub batch_time: Option<Duration>,
    /// With `batch_time`: the most keys a batch may take.
    pub max_batch_size: Option<u32>,
    /// Sleep between batches.
    pub pause: Option<Duration>,
    pub max_rows_per_second: Option<u32>,
    /// Count the table exactly for the progress total, instead of `reltuples`.
    #[serde(default)]
    pub exact_count: bool,
    /// Wait while any replica's replay lag is above this.
    pub max_replica_lag: Option<Duration>,
    /// Wait while more than this many other sessions are active.
    pub max_active_sessions: Option<u32>,
    /// Run one batch in a transaction that is rolled back, and project the total time.
    #[serde(default)]
    pub dry_run: bool,
    /// Where checkpoints live, in the target database.
    #[serde(default = "default_state_table")]
    pub state_table: String,
}

pub const DEFAULT_BATCH_SIZE: u32 = 1000;
/// With `batch_time` and no `max_batch_size`: the most keys a batch takes.
pub const DEFAULT_MAX_BATCH_SIZE: u32 = 100_000;
pub const DEFAULT_STATE_TABLE: &str = "public.runbook_backfill_state";

fn default_batch_size() -> u32 {
    DEFAULT_BATCH_SIZE
}

fn default_state_table() -> String {
    DEFAULT_STATE_TABLE.to_string()
}

/// `migrate:` — apply (or roll back) a directory of SQL migrations,
/// recording each in a history table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateStep {
    /// The directory (a template), relative to the runbook.
    pub dir: String,
    /// `auto` (the default), or one of [`crate::migrations::FORMATS`].
    pub format: Option<String>,
    /// `latest` (the default going up) or a version: up applies through it,
    /// down rolls back everything after it (`0`: everything). Going down,
    /// `before_run` rolls back exactly what this run applied. A template
    /// (`"{{ params.target }}"`) is checked once rendered.
    #[serde(default, deserialize_with = "opt_string_or_integer")]
    pub to: Option<String>,
    /// At most this many migrations: a whole number, or a template that
    /// renders to one.
    #[serde(default, deserialize_with = "opt_string_or_integer")]
    pub steps: Option<String>,
    #[serde(default)]
    pub direction: Direction,
    /// Where the migrations are recorded. Default: detected.
    pub history: Option<HistoryConfig>,
    /// Shorthand for `history: {table: …}`.
    pub history_table: Option<String>,
    /// Apply even though an applied migration's file changed; the new
    /// checksum is recorded and the report says so.
    #[serde(default)]
    pub allow_checksum_change: bool,
    /// All the step's migrations in one transaction: none is applied
    /// unless all are (as Drizzle, and node-pg-migrate by default, run
    /// them). Each script must be able to run in a transaction. Default:
    /// going up a Flyway directory, as the project's Flyway `group` says;
    /// otherwise false.
    #[serde(default)]
    pub single_transaction: Option<bool>,
    /// Apply a pending migration older than the newest applied one (`true`),
    /// or refuse the step before anything runs (`false`). Default: as the
    /// history's tool does ([`crate::history::Tool::applies_out_of_order`]:
    /// Flyway's as the project's configuration sets its `outOfOrder`).
    /// Going down: `true` lets a rollback keep an applied migration that
    /// was applied after one it rolls back, with a warning; otherwise
    /// that is refused before anything runs.
    pub out_of_order: Option<bool>,
    /// Liquibase: the contexts to run with, as Liquibase's `--contexts`
    /// (Spring's `spring.liquibase.contexts`), a comma list: a changeset
    /// whose context they do not match is left out, as Liquibase leaves it
    /// out. Default: none, and every changeset runs, as in Liquibase.
    pub contexts: Option<String>,
    /// Liquibase: the label filter, as `--label-filter` (`v2 and !beta`).
    pub label_filter: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Up,
    Down,
}

pub const DEFAULT_HISTORY_TABLE: &str = "public.runbook_migrations";

/// `history:` — the tool whose history table records the migrations, and
/// the table. Either may be left out: what is missing is detected.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// `auto` (the default), or one of [`crate::history::TOOLS`].
    pub format: Option<String>,
    pub table: Option<String>,
}

fn opt_string_or_integer<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    string_or_integer(d).map(Some)
}

/// `snapshot:` — a canonical description of the schema and its hash.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotStep {
    /// Also write the snapshot to this file (a template), relative to the runbook.
    pub save: Option<String>,
    /// Snapshot this database of the same server (a template), such as a
    /// scratch restore; the run's own database when absent.
    pub database: Option<String>,
    pub expect: Option<SnapshotExpect>,
}

/// What the snapshot must equal: an earlier snapshot step, or a hash.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotExpect {
    /// `steps.<id>` of an earlier snapshot step.
    pub same_as: Option<String>,
    pub hash: Option<String>,
    /// Accept tables whose only difference is the order of their columns.
    #[serde(default)]
    pub ignore_column_order: bool,
}

impl SnapshotExpect {
    pub fn same_as_step(&self) -> Option<&str> {
        self.same_as.as_deref()?.trim().strip_prefix("steps.")
    }
}

/// `rehearse:` — every pending migration forward, back and forward again,
/// with schema parity, data integrity and timings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RehearseStep {
    pub dir: String,
    pub format: Option<String>,
    #[serde(default)]
    pub mode: RehearseMode,
    /// A leg (up or down) slower than this is `slow`. Default 5s.
    pub slow_threshold: Option<DurationSetting>,
    /// Verdicts that fail the step. Default: [`Verdict::default_errors`].
    pub errors: Option<VerdictList>,
    /// Rehearse on a scratch copy of the database, dropped afterwards.
    pub scratch: Option<Scratch>,
    /// A SQL file (a template path) run after each up.
    pub seed: Option<String>,
    /// Where the migrations are recorded. Default: detected.
    pub history: Option<HistoryConfig>,
    /// Shorthand for `history: {table: …}`.
    pub history_table: Option<String>,
    /// `whole_set`: what the rollback does at a migration with no down.
    #[serde(default)]
    pub missing_downs: MissingDowns,
    /// Migrations another tool applies: its commands, one migration at a time.
    pub tool: Option<ToolCommands>,
    /// Liquibase: the contexts to run with, as Liquibase's `--contexts`
    /// (Spring's `spring.liquibase.contexts`), a comma list: a changeset
    /// whose context they do not match is left out, as Liquibase leaves it
    /// out. Default: none, and every changeset runs, as in Liquibase.
    pub contexts: Option<String>,
    /// Liquibase: the label filter, as `--label-filter` (`v2 and !beta`).
    pub label_filter: Option<String>,
    /// `latest` (the default) or a version: the pending migrations through
    /// it are rehearsed, those a `migrate` step with this `to` deploys. A
    /// template is checked once rendered.
    #[serde(default, deserialize_with = "opt_string_or_integer")]
    pub to: Option<String>,
}

/// `rehearse.tool:` — the commands of the tool that owns the migrations
/// (Knex, Prisma…). `up` and `down` are shell scripts with `migration`
/// (`name`, `version`, `stem`) in their templates; they reach the
/// rehearsal's database through the libpq variables and `DATABASE_URL`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCommands {
    pub up: String,
    /// Without it the migrations are forward-only.
    pub down: Option<String>,
    /// Prints the migrations in order, one name per line or a JSON array.
    /// Without it they are the entries of `dir` whose names start with a digit.
    pub list: Option<String>,
    /// Where the commands run, relative to the runbook. Default: its directory.
    pub cwd: Option<String>,
}

pub const DEFAULT_SLOW_THRESHOLD_MS: u64 = 5000;

/// A duration as written, or a template (`"{{ params.slow }}"`) rendered
/// and read as one when the plan is made.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DurationSetting {
    Fixed(Duration),
    Template(String),
}

/// In a `whole_set` rehearsal, a migration with no down (missing, or only
/// comments): `stop` the rollback there, or `skip` it and go on rolling
/// back the older ones, to find the first down that really fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingDowns {
    #[default]
    Stop,
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RehearseMode {
    #[default]
    PerMigration,
    WholeSet,
}

/// A list of verdicts, or a template that renders to one, comma-separated
/// (so that a param can choose them: `errors: "{{ params.errors }}"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum VerdictList {
    List(Vec<Verdict>),
    Template(String),
}

/// A rehearsal's verdict on one migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    UpFailure,
    Irreversible,
    Lossy,
    ParityMismatch,
    ReupFailure,
    /// The tool that deploys these files would fail the migration: it runs
    /// it in a transaction where one of its statements cannot run
    /// (runbook ran it statement by statement).
    ToolFailure,
    /// The schema of the database differs from what a fresh apply of its
    /// applied migrations gives (a set finding, for forward-only sets).
    Drift,
    /// A forward-only up changed or removed rows that existed before it,
    /// which no down can bring back: a fact to review, not an error by default.
    DestroysData,
    /// After a down that brought back the schema and every earlier table's
    /// rows, the up again wrote other values than the first up (`now()`,
    /// `random()`, a sequence's next value): nothing was lost, but a deploy
    /// after a rollback gives other rows. Not an error by default.
    Nondeterministic,
    ColumnOrder,
    /// After the down (or the up again), a function's PL/pgSQL or SQL body
    /// differs only in whitespace and comments: it does the same, and its
    /// source reads otherwise. Not an error by default.
    BodyLayout,
    Slow,
    /// The rehearsal did not reach this migration's legs (an earlier up
    /// failed, or in `whole_set` its down never ran). Never `ok`.
    NotRehearsed,
    /// The up was rehearsed; the format has no downs (plain, Prisma), so
    /// reversibility cannot be tested. Said once for the set, not per
    /// migration; not an error unless `errors` names it.
    ForwardOnly,
    Ok,
}

impl Verdict {
    pub const ALL: &[Verdict] = &[
        Verdict::UpFailure,
        Verdict::Irreversible,
        Verdict::Lossy,
        Verdict::ParityMismatch,
        Verdict::ReupFailure,
        Verdict::ToolFailure,
        Verdict::Drift,
        Verdict::DestroysData,
        Verdict::Nondeterministic,
        Verdict::ColumnOrder,
        Verdict::BodyLayout,
        Verdict::Slow,
        Verdict::NotRehearsed,
        Verdict::ForwardOnly,
        Verdict::Ok,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::UpFailure => "up_failure",
            Self::Irreversible => "irreversible",
            Self::Lossy => "lossy",
            Self::ParityMismatch => "parity_mismatch",
            Self::ReupFailure => "reup_failure",
            Self::ToolFailure => "tool_failure",
            Self::Drift => "drift",
            Self::DestroysData => "destroys_data",
            Self::Nondeterministic => "nondeterministic",
            Self::ColumnOrder => "column_order",
            Self::BodyLayout => "body_layout",
            Self::Slow => "slow",
            Self::NotRehearsed => "not_rehearsed",
            Self::ForwardOnly => "forward_only",
            Self::Ok => "ok",
        }
    }

    pub fn default_errors() -> Vec<Verdict> {
        vec![
            Verdict::UpFailure,
            Verdict::Irreversible,
            Verdict::Lossy,
            Verdict::ParityMismatch,
            Verdict::ReupFailure,
            Verdict::ToolFailure,
            Verdict::Drift,
        ]
    }
}

/// `scratch: true` clones the run's database with `CREATE DATABASE ...
/// TEMPLATE`; `scratch: {from: steps.<backup>}` restores a backup instead.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Scratch {
    Template(bool),
    Backup { from: String },
}

impl Runbook {
    /// Every step in the runbook with the JSON pointer it came from, in
    /// document order: phase steps (each followed by its compensations),
    /// phase branches, then the runbook's `on_failure` and `finally`.
    pub fn all_steps(&self) -> Vec<(String, &Step)> {
        fn one<'a>(s: &'a Step, p: String, out: &mut Vec<(String, &'a Step)>) {
            out.push((p.clone(), s));
            if s.rollback_single {
                one(&s.rollback[0], format!("{p}/rollback"), out);
            } else {
                for (i, r) in s.rollback.iter().enumerate() {
                    one(r, format!("{p}/rollback/{i}"), out);
                }
            }
        }
        fn walk<'a>(steps: &'a [Step], base: &str, out: &mut Vec<(String, &'a Step)>) {
            for (i, s) in steps.iter().enumerate() {
                one(s, format!("{base}/{i}"), out);
            }
        }
        let mut out = Vec::new();
        for (i, phase) in self.phases.iter().enumerate() {
            walk(&phase.steps, &format!("/phases/{i}/steps"), &mut out);
            if let OnFailure::Steps(branch) = &phase.on_failure {
                walk(branch, &format!("/phases/{i}/on_failure"), &mut out);
            }
        }
        walk(&self.on_failure, "/on_failure", &mut out);
        walk(&self.finally, "/finally", &mut out);
        out
    }

    /// How many steps [`Runbook::all_steps`] lists, without building their
    /// pointers.
    pub fn step_count(&self) -> usize {
        fn one(s: &Step) -> usize {
            1 + s.rollback.iter().map(one).sum::<usize>()
        }
        let list = |steps: &[Step]| steps.iter().map(one).sum::<usize>();
        let branches = self.phases.iter().map(|p| {
            list(&p.steps)
                + match &p.on_failure {
                    OnFailure::Steps(branch) => list(branch),
                    _ => 0,
                }
        });
        branches.sum::<usize>() + list(&self.on_failure) + list(&self.finally)
    }
}

/// Each step of a runbook with its JSON pointer, as
/// [`Runbook::all_steps`] lists them.
pub type Steps<'a> = [(String, &'a Step)];
