//! Plan: every template rendered, every variable resolved, before anything runs.
//!
//! Values that exist only at run time (step outputs, the run id) render as
//! `<known after steps.X>`; the template is kept beside them so the executor
//! can render it again when the value exists. Secrets are redacted.

use std::fmt::Write as _;

use indexmap::IndexMap;
use minijinja::Environment;
use minijinja::value::Value as JValue;
use serde::Serialize;
use serde_json::Value;

use crate::diag::Diagnostic;
use crate::duration::Duration;
use crate::model::{
    self, CheckStep, Command, ErrorClass, FailureMode, OnFailure, Runbook, Step, StepKind, When,
};
use crate::params::Origin;
use crate::redact::{REDACTED, Redactor};
use crate::secret::Secret;
use crate::template::{self, Deferred, DeferredSteps};
use crate::validate::{FileDiagnostics, Invalid, Validated};

/// Session settings every SQL step gets unless the runbook or step says otherwise:
/// a DDL statement waits at most this long for a lock, so it cannot queue
/// the application's queries behind it for long.
pub const DEFAULT_LOCK_TIMEOUT_MS: u64 = 2_000;
/// Other sessions waiting longer than this on a step's locks get a report warning.
pub const DEFAULT_LOCK_WAIT_WARNING_MS: u64 = 1_000;
pub const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 15 * 60_000;
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
pub struct PlanExpect {
    /// `rows` for the row count, else a column of the first row.
    pub target: String,
    pub op: model::CompareOp,
    pub value: Value,
    /// The expected value's template, when it must be rendered at run time.
    #[serde(skip)]
    pub template: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Action {
    Sql {
        statements: Text,
        transaction: bool,
    },
    Check {
        query: Text,
        #[serde(skip_serializing_if = "Option::is_none")]
        builtin: Option<Box<PlanBuiltin>>,
        expect: Vec<PlanExpect>,
        assert: Vec<String>,
        severity: model::Severity,
    },
    Shell {
        /// `sh -c SCRIPT` when `script` is set, else `argv` run directly.
        #[serde(skip_serializing_if = "Option::is_none")]
        script: Option<Text>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        argv: Vec<Text>,
        env: IndexMap<String, Text>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cwd: Option<Text>,
        expect_exit: Vec<i32>,
    },
    Sleep {
        duration: Duration,
    },
    Backup(Box<PlanBackup>),
    Restore(Box<PlanRestore>),
    Backfill(Box<PlanBackfill>),
    Migrate(Box<PlanMigrate>),
    Snapshot(Box<PlanSnapshot>),
    Rehearse(Box<PlanRehearse>),
}

impl Action {
    /// The step kind, as the runbook names it.
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
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanMigrate {
    pub dir: Text,
    /// `auto` or a format name.
    pub format: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    pub direction: model::Direction,
    pub history_table: String,
    pub allow_checksum_change: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanSnapshot {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub save: Option<Text>,
    /// The id of the earlier snapshot step it must equal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_as: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    pub ignore_column_order: bool,
}

/// Where a rehearsal runs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanScratch {
    /// CREATE DATABASE ... TEMPLATE the run's database.
    Template,
    /// A restore of the backup an earlier step took.
    Backup(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanRehearse {
    pub dir: Text,
    pub format: String,
    pub mode: model::RehearseMode,
    pub slow_threshold: Duration,
    pub errors: Vec<model::Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scratch: Option<PlanScratch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<Text>,
    pub history_table: String,
    pub missing_downs: model::MissingDowns,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanBackup {
    pub path: Text,
    pub format: model::BackupFormat,
    /// Parallel jobs; `None` means the machine's cores, at most 4.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jobs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compress: Option<u32>,
    pub schema_only: bool,
    pub data_only: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<Text>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude_tables: Vec<Text>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<Text>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude_schemas: Vec<Text>,
    pub verify: model::Verify,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
}

/// Where a restore reads its backup.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreFrom {
    /// The backup an earlier step took: its `path` output.
    Step(String),
    Path(Text),
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanRestore {
    pub from: RestoreFrom,
    /// A database name; the run's database when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Text>,
    pub clean: bool,
    pub jobs: u32,
    pub single_transaction: bool,
    pub terminate_connections: bool,
    pub mode: model::RestoreMode,
}

/// A built-in check with its arguments, defaults filled in. Text arguments
/// (templates) are in `texts`, the rest in `args`.
#[derive(Debug, Clone, Serialize)]
pub struct PlanBuiltin {
    pub name: String,
    pub args: IndexMap<String, Value>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub texts: IndexMap<String, Text>,
    /// `tables` (row_counts), each a template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<Text>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanBackfill {
    pub table: Text,
    pub set: Text,
    #[serde(rename = "where", skip_serializing_if = "Option::is_none")]
    pub where_: Option<Text>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub key: Vec<String>,
    pub batch_size: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rows_per_second: Option<u32>,
    pub exact_count: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_replica_lag: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_active_sessions: Option<u32>,
    pub dry_run: bool,
    pub state_table: String,
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
    redactor: Redactor,
    errors: Vec<Diagnostic>,
    /// Params with no value and no default: a template that uses one fails.
    unset: Vec<String>,
}

/// Build the plan of a validated runbook.
pub fn build(v: &Validated, run: &RunInfo) -> Result<Plan, Invalid> {
    let rb = &v.runbook;
    let mut redactor = Redactor::new(v.params.secret_values());
    let metadata = serde_json::json!({
        "name": rb.metadata.name,
        "version": rb.metadata.version,
        "description": rb.metadata.description,
        "owner": rb.metadata.owner,
        "labels": rb.metadata.labels,
    });
    // The run's status and failed step exist only once it ends (for
    // `finally`); its id exists once `exec` starts.
    let run_value = match &run.id {
        Some(id) => minijinja::context! {
            id => id,
            started_at => run.started_at.clone(),
            status => Deferred::value("run.status"),
            failed_step => Deferred::value("run.failed_step"),
        },
        None => Deferred::value("run"),
    };
    let env = template::environment();
    let params = JValue::from(minijinja::value::Serde(v.params.defined()));
    let mut errors = Vec::new();

    // Vars render in order; each sees the ones before it.
    let mut vars = serde_json::Map::new();
    for (name, raw) in &rb.vars {
        let ctx = minijinja::context! {
            params => params.clone(),
            vars => JValue::from(minijinja::value::Serde(&vars)),
            metadata => JValue::from(minijinja::value::Serde(&metadata)),
            run => run_value.clone(),
        };
        let reads_secret = uses_secret(&env, raw, v);
        match render_value(&env, raw, &ctx) {
            Ok(val) => {
                if reads_secret {
                    collect_strings(&val, &mut |s| redactor.add(s));
                }
                vars.insert(name.clone(), val);
            }
            Err(e) => errors.push(
                Diagnostic::new(format!("failed to render var `{name}`: {}", error_text(&e)))
                    .at(v
                        .doc
                        .spans()
                        .value(&format!("/vars/{}", crate::load::pointer_segment(name))))
                    .label("here"),
            ),
        }
    }
    let ctx = minijinja::context! {
        params => params,
        vars => JValue::from(minijinja::value::Serde(&vars)),
        metadata => JValue::from(minijinja::value::Serde(&metadata)),
        run => run_value,
        steps => JValue::from_object(DeferredSteps),
    };
    let mut p = Planner {
        doc: &v.doc,
        env,
        ctx,
        rb,
        redactor,
        errors,
        unset: v.params.unset().into_iter().map(str::to_string).collect(),
    };
    let mut database_url = None;
    let database = match &rb.database.url {
        Some(url) => {
            let t = p.text(url, "/database/url");
            p.redactor.add_url(t.raw.expose());
            database_url = Some(t.raw.expose().clone());
            PlanDatabase {
                url: Some(p.redactor.redact(t.raw.expose()).into_owned()),
                source: "runbook",
            }
        }
        None => PlanDatabase {
            url: None,
            source: "--database-url or DATABASE_URL at run time",
        },
    };
    let phases = rb
        .phases
        .iter()
        .enumerate()
        .map(|(i, ph)| {
            let base = format!("/phases/{i}");
            PlanPhase {
                id: ph.id.clone(),
                kind: ph.kind,
                description: ph.description.clone(),
                when: p.when(&ph.when, &base),
                approval: ph.approval.as_ref().map(|a| PlanApproval {
                    prompt: match &a.prompt {
                        Some(t) => p.text(t, &format!("{base}/approval/prompt")),
                        None => plain(format!("Run phase `{}`?", ph.id)),
                    },
                    required: a.required,
                }),
                on_failure: match &ph.on_failure {
                    OnFailure::Mode(FailureMode::Rollback) => PlanOnFailure::Rollback,
                    OnFailure::Mode(FailureMode::Abort) => PlanOnFailure::Abort,
                    OnFailure::Mode(FailureMode::Continue) => PlanOnFailure::Continue,
                    OnFailure::Steps(s) => {
                        PlanOnFailure::Steps(p.steps(s, &format!("{base}/on_failure")))
                    }
                },
                steps: p.steps(&ph.steps, &format!("{base}/steps")),
            }
        })
        .collect();
    let on_failure = p.steps(&rb.on_failure, "/on_failure");
    let finally_steps = p.steps(&rb.finally, "/finally");
    if !p.errors.is_empty() {
        return Err(Invalid {
            file: v.doc.source.name().to_string(),
            files: vec![FileDiagnostics {
                source: v.doc.source.clone(),
                diagnostics: p.errors,
            }],
        });
    }
    let redactor = p.redactor;
    let context = RenderContext {
        params: serde_json::to_value(v.params.defined()).unwrap_or_default(),
        vars: Value::Object(vars.clone()),
        metadata,
    };
    let mut vars = Value::Object(vars);
    redactor.redact_json(&mut vars);
    let Value::Object(vars) = vars else {
        unreachable!("vars is an object")
    };
    let params = v
        .params
        .0
        .iter()
        .map(|(k, pv)| {
            let value = if pv.secret && !pv.value.is_null() {
                Value::String(REDACTED.into())
            } else {
                pv.value.clone()
            };
            (
                k.clone(),
                PlanParam {
                    value,
                    origin: pv.origin,
                    secret: pv.secret,
                },
            )
        })
        .collect();
    Ok(Plan {
        runbook: RunbookInfo {
            name: rb.metadata.name.clone(),
            version: rb.metadata.version.clone(),
            description: rb.metadata.description.clone(),
            owner: rb.metadata.owner.clone(),
            file: v.doc.source.name().to_string(),
            sha256: crate::validate::sha256(&v.doc),
        },
        params,
        vars: vars.into_iter().collect(),
        database,
        settings: effective_settings(&rb.settings),
        phases,
        on_failure,
        finally_steps,
        redactor,
        context,
        database_url,
    })
}

/// The runbook's settings with the defaults filled in.
pub fn effective_settings(s: &model::Settings) -> model::Settings {
    let mut s = s.clone();
    s.lock_timeout
        .get_or_insert(Duration::from_millis(DEFAULT_LOCK_TIMEOUT_MS));
    s.statement_timeout
        .get_or_insert(Duration::from_millis(DEFAULT_STATEMENT_TIMEOUT_MS));
    s
}

fn uses_secret(env: &Environment<'_>, raw: &Value, v: &Validated) -> bool {
    let mut found = false;
    collect_strings(raw, &mut |s| {
        if let Ok(refs) = template::references(env, s, false) {
            found |= refs.iter().any(|r| {
                r.strip_prefix("params.")
                    .and_then(|n| v.params.0.get(n.split('.').next().unwrap_or(n)))
                    .is_some_and(|p| p.secret)
            });
        }
    });
    found
}

fn collect_strings(v: &Value, f: &mut impl FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, f)),
        Value::Object(m) => m.values().for_each(|x| collect_strings(x, f)),
        _ => {}
    }
}

fn render_value(
    env: &Environment<'_>,
    raw: &Value,
    ctx: &JValue,
) -> Result<Value, minijinja::Error> {
    Ok(match raw {
        Value::String(s) => Value::String(template::render(env, s, ctx)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| render_value(env, x, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), render_value(env, x, ctx)?)))
                .collect::<Result<_, minijinja::Error>>()?,
        ),
        other => other.clone(),
    })
}

fn error_text(e: &minijinja::Error) -> String {
    e.detail()
        .map_or_else(|| e.kind().to_string(), str::to_string)
}

fn plain(text: String) -> Text {
    Text {
        raw: Secret::new(text.clone()),
        text,
        pointer: String::new(),
        template: None,
        after: Vec::new(),
    }
}

impl Planner<'_> {
    /// Render one template field; on a render error, record a diagnostic.
    fn text(&mut self, source: &str, pointer: &str) -> Text {
        match template::render(&self.env, source, &self.ctx) {
            Ok(out) => {
                let after = if template::mentions_deferred(&out) {
                    let mut names: Vec<String> = template::references(&self.env, source, false)
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|r| {
                            let mut it = r.split('.');
                            match (it.next(), it.next()) {
                                (Some("steps"), Some(id)) => Some(format!("steps.{id}")),
                                (Some("run"), _) => Some("run".to_string()),
                                _ => None,
                            }
                        })
                        .collect();
                    names.dedup();
                    names
                } else {
                    Vec::new()
                };
                let text = self.redactor.redact(&out).into_owned();
                Text {
                    template: (!after.is_empty()).then(|| source.to_string()),
                    text,
                    raw: Secret::new(out),
                    pointer: pointer.to_string(),
                    after,
                }
            }
            Err(e) => {
                // Arithmetic or filters on a run-time value cannot be done
                // now: show the template itself and say when it is known.
                let refs = template::references(&self.env, source, false).unwrap_or_default();
                let after: Vec<String> = refs
                    .iter()
                    .filter_map(|r| {
                        let mut it = r.split('.');
                        match (it.next(), it.next()) {
                            (Some("steps"), Some(id)) => Some(format!("steps.{id}")),
                            (Some("run"), _) => Some("run".to_string()),
                            _ => None,
                        }
                    })
                    .collect();
                let unset: Vec<&String> = self
                    .unset
                    .iter()
                    .filter(|n| {
                        refs.iter().any(|r| {
                            r.strip_prefix("params.")
                                .is_some_and(|rest| rest.split('.').next() == Some(n.as_str()))
                        })
                    })
                    .collect();
                if let Some(name) = unset.first() {
                    self.errors.push(
                        Diagnostic::new(format!(
                            "param `{name}` is used here but has no value and no default"
                        ))
                        .at(self.rb_span(pointer))
                        .label("uses an unset param")
                        .hint(format!(
                            "pass `--set {name}=VALUE`, give it a `default:`, or test it with `params.{name} is defined`"
                        )),
                    );
                    return plain(String::new());
                }
                if after.is_empty() {
                    self.errors.push(
                        Diagnostic::new(format!("failed to render template: {}", error_text(&e)))
                            .at(self.rb_span(pointer))
                            .label("here")
                            .hint("check the names and filters used in this template"),
                    );
                    return plain(String::new());
                }
                Text {
                    text: self.redactor.redact(source).into_owned(),
                    raw: Secret::new(source.to_string()),
                    pointer: pointer.to_string(),
                    template: Some(source.to_string()),
                    after,
                }
            }
        }
    }

    /// A rehearsal's `errors`: a list, or a template rendered now and read
    /// as comma-separated verdict names.
    fn verdicts(&mut self, v: Option<&model::VerdictList>, pointer: &str) -> Vec<model::Verdict> {
        let source = match v {
            None => return model::Verdict::default_errors(),
            Some(model::VerdictList::List(list)) => return list.clone(),
            Some(model::VerdictList::Template(t)) => t,
        };
        let rendered = self.text(source, pointer);
        let mut out = Vec::new();
        for name in rendered
            .raw
            .expose()
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|n| !n.is_empty())
        {
            match model::Verdict::ALL.iter().find(|v| v.name() == name) {
                Some(v) if !out.contains(v) => out.push(*v),
                Some(_) => {}
                None => self.errors.push(
                    Diagnostic::new(format!("unknown verdict `{name}` in `errors`"))
                        .at(self.rb_span(pointer))
                        .label("renders to an unknown verdict")
                        .hint(format!(
                            "expected a comma-separated list of: {}",
                            model::Verdict::ALL
                                .iter()
                                .filter(|v| **v != model::Verdict::Ok)
                                .map(|v| v.name())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                ),
            }
        }
        out
    }

    fn rb_span(&self, pointer: &str) -> Option<crate::source::Span> {
        self.doc.spans().value(pointer)
    }

    fn when(&mut self, when: &Option<When>, base: &str) -> Option<PlanWhen> {
        match when {
            None => None,
            Some(When::Literal(b)) => Some(PlanWhen {
                expr: b.to_string(),
                value: Some(*b),
            }),
            Some(When::Expr(e)) => {
                let refs = template::references(&self.env, e, true).unwrap_or_default();
                let runtime = refs
                    .iter()
                    .any(|r| r.starts_with("steps") || r.starts_with("run"));
                let value = if runtime {
                    None
                } else {
                    match self
                        .env
                        .compile_expression(e)
                        .and_then(|x| x.eval(self.ctx.clone()))
                    {
                        Ok(v) => Some(v.is_true()),
                        Err(err) => {
                            self.errors.push(
                                Diagnostic::new(format!(
                                    "failed to evaluate `when`: {}",
                                    error_text(&err)
                                ))
                                .at(self.rb_span(&format!("{base}/when")))
                                .label("here"),
                            );
                            None
                        }
                    }
                };
                Some(PlanWhen {
                    expr: e.clone(),
                    value,
                })
            }
        }
    }

    fn steps(&mut self, steps: &[Step], base: &str) -> Vec<PlanStep> {
        steps
            .iter()
            .enumerate()
            .map(|(i, s)| self.step(s, &format!("{base}/{i}")))
            .collect()
    }

    fn retry(&self, step: &Step) -> PlanRetry {
        let d = self.rb.defaults.retry.as_ref();
        let s = step.retry.as_ref();
        // Backfills resume from their checkpoint, so a retry repeats no work.
        let sql = matches!(
            step.kind,
            StepKind::Sql(_) | StepKind::Check(_) | StepKind::Backfill(_) | StepKind::Migrate(_)
        );
        let given = s.and_then(|r| r.attempts).or(d.and_then(|r| r.attempts));
        let attempts = given.unwrap_or(if sql { DEFAULT_SQL_ATTEMPTS } else { 1 });
        let b = |f: fn(&model::BackoffSpec) -> Option<Duration>| {
            s.and_then(|r| r.backoff.as_ref())
                .and_then(f)
                .or(d.and_then(|r| r.backoff.as_ref()).and_then(f))
        };
        PlanRetry {
            attempts,
            initial: b(|x| x.initial).unwrap_or(Duration::from_millis(DEFAULT_BACKOFF_INITIAL_MS)),
            factor: s
                .and_then(|r| r.backoff.as_ref())
                .and_then(|x| x.factor)
                .or(d.and_then(|r| r.backoff.as_ref()).and_then(|x| x.factor))
                .unwrap_or(DEFAULT_BACKOFF_FACTOR),
            max: b(|x| x.max).unwrap_or(Duration::from_millis(DEFAULT_BACKOFF_MAX_MS)),
            on: s
                .and_then(|r| r.on.clone())
                .or(d.and_then(|r| r.on.clone()))
                .unwrap_or_else(|| match (given, sql) {
                    (None, true) => DEFAULT_SQL_RETRY_ON.to_vec(),
                    _ if attempts > 1 => DEFAULT_RETRY_ON.to_vec(),
                    _ => Vec::new(),
                }),
        }
    }

    /// A step's own settings over the runbook's, when it has any.
    fn settings(&self, step: &Step) -> Option<model::Settings> {
        let own = step.settings.as_ref()?;
        let mut s = effective_settings(&self.rb.settings);
        if own.lock_timeout.is_some() {
            s.lock_timeout = own.lock_timeout;
        }
        if own.statement_timeout.is_some() {
            s.statement_timeout = own.statement_timeout;
        }
        if own.wait_for_blockers.is_some() {
            s.wait_for_blockers = own.wait_for_blockers;
        }
        if own.lock_wait_warning.is_some() {
            s.lock_wait_warning = own.lock_wait_warning;
        }
        if own.lock_monitor.is_some() {
            s.lock_monitor = own.lock_monitor;
        }
        Some(s)
    }

    /// The pointer of a kind's main field: the short form or the mapping form.
    fn field(&self, p: &str, kind: &str, long: &str) -> String {
        let short = format!("{p}/{kind}");
        if self.doc.value.pointer(&short).is_some_and(Value::is_object) {
            format!("{short}/{long}")
        } else {
            short
        }
    }

    fn check(&mut self, c: &CheckStep, p: &str) -> Action {
        let query = self.text(&c.query, &self.field(p, "check", "query"));
        let mut expect = Vec::new();
        for (target, m) in &c.expect {
            for (op, value) in &m.ops {
                let (value, template) = match value {
                    Value::String(s) if s.contains("{{") || s.contains("{%") => {
                        (Value::String(self.text(s, p).text), Some(s.clone()))
                    }
                    other => (other.clone(), None),
                };
                expect.push(PlanExpect {
                    target: target.clone(),
                    op: *op,
                    value,
                    template,
                });
            }
        }
        let builtin = c.builtin.as_ref().map(|b| {
            let mut args = IndexMap::new();
            let mut texts = IndexMap::new();
            let mut tables = None;
            if let Some(def) = crate::checks::find(&b.name) {
                for a in def.args {
                    let given = b.args.get(a.name);
                    match (a.kind, given) {
                        (crate::checks::ArgKind::Tables, Some(Value::Array(list))) => {
                            tables = Some(
                                list.iter()
                                    .enumerate()
                                    .filter_map(|(i, v)| {
                                        v.as_str().map(|t| {
                                            self.text(t, &format!("{p}/check/{}/{i}", a.name))
                                        })
                                    })
                                    .collect(),
                            );
                        }
                        (crate::checks::ArgKind::Text, Some(Value::String(t))) => {
                            texts.insert(
                                a.name.to_string(),
                                self.text(t, &format!("{p}/check/{}", a.name)),
                            );
                        }
                        (_, Some(v)) => {
                            args.insert(a.name.to_string(), v.clone());
                        }
                        (_, None) => {
                            if let Some(d) = a.default {
                                args.insert(a.name.to_string(), Value::String(d.into()));
                            }
                        }
                    }
                }
            }
            Box::new(PlanBuiltin {
                name: b.name.clone(),
                args,
                texts,
                tables,
            })
        });
        Action::Check {
            query,
            builtin,
            expect,
            assert: c
                .assert
                .iter()
                .map(|a| self.redactor.redact(a).into_owned())
                .collect(),
            severity: c.severity,
        }
    }

    fn step(&mut self, s: &Step, p: &str) -> PlanStep {
        let action = match &s.kind {
            StepKind::Sql(sql) => Action::Sql {
                statements: self.text(&sql.statements, &self.field(p, "sql", "statements")),
                transaction: sql.transaction,
            },
            StepKind::Check(c) => self.check(c, p),
            StepKind::Shell(sh) => {
                let cmd = self.field(p, "shell", "command");
                let (script, argv) = match &sh.command {
                    Command::Script(t) => (Some(self.text(t, &cmd)), Vec::new()),
                    Command::Argv(a) => (
                        None,
                        a.iter()
                            .enumerate()
                            .map(|(i, x)| self.text(x, &format!("{cmd}/{i}")))
                            .collect(),
                    ),
                };
                Action::Shell {
                    script,
                    argv,
                    env: sh
                        .env
                        .iter()
                        .map(|(k, v)| (k.clone(), self.text(v, p)))
                        .collect(),
                    cwd: sh.cwd.as_ref().map(|c| self.text(c, p)),
                    expect_exit: sh.expect_exit.clone(),
                }
            }
            StepKind::Sleep(d) => Action::Sleep { duration: *d },
            StepKind::Backup(b) => {
                let base = format!("{p}/backup");
                let mut list = |items: &[String], key: &str| -> Vec<Text> {
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, x)| self.text(x, &format!("{base}/{key}/{i}")))
                        .collect()
                };
                let tables = list(&b.tables, "tables");
                let exclude_tables = list(&b.exclude_tables, "exclude_tables");
                let schemas = list(&b.schemas, "schemas");
                let exclude_schemas = list(&b.exclude_schemas, "exclude_schemas");
                Action::Backup(Box::new(PlanBackup {
                    path: self.text(&b.path, &format!("{base}/path")),
                    format: b.format,
                    jobs: b.jobs,
                    compress: b.compress,
                    schema_only: b.schema_only,
                    data_only: b.data_only,
                    tables,
                    exclude_tables,
                    schemas,
                    exclude_schemas,
                    verify: b.verify,
                    keep: b.keep,
                }))
            }
            StepKind::Restore(r) => {
                let base = format!("{p}/restore");
                let jobs = r.jobs.unwrap_or(1);
                Action::Restore(Box::new(PlanRestore {
                    from: match r.from_step() {
                        Some(id) => RestoreFrom::Step(id.to_string()),
                        None => RestoreFrom::Path(self.text(&r.from, &format!("{base}/from"))),
                    },
                    target: r
                        .target
                        .as_ref()
                        .map(|t| self.text(t, &format!("{base}/target"))),
                    clean: r.clean,
                    jobs,
                    single_transaction: r.single_transaction.unwrap_or(jobs == 1),
                    terminate_connections: r.terminate_connections,
                    mode: r.mode,
                }))
            }
            StepKind::Backfill(b) => {
                let base = format!("{p}/backfill");
                Action::Backfill(Box::new(PlanBackfill {
                    table: self.text(&b.table, &format!("{base}/table")),
                    set: self.text(&b.set, &format!("{base}/set")),
                    where_: b
                        .where_
                        .as_ref()
                        .map(|w| self.text(w, &format!("{base}/where"))),
                    key: b.key.clone(),
                    batch_size: b.batch_size,
                    pause: b.pause,
                    max_rows_per_second: b.max_rows_per_second,
                    exact_count: b.exact_count,
                    max_replica_lag: b.max_replica_lag,
                    max_active_sessions: b.max_active_sessions,
                    dry_run: b.dry_run,
                    state_table: b.state_table.clone(),
                }))
            }
            StepKind::Migrate(m) => Action::Migrate(Box::new(PlanMigrate {
                dir: self.text(&m.dir, &format!("{p}/migrate/dir")),
                format: m.format.clone().unwrap_or_else(|| "auto".into()),
                to: m.to.clone(),
                steps: m.steps,
                direction: m.direction,
                history_table: m.history_table.clone(),
                allow_checksum_change: m.allow_checksum_change,
            })),
            StepKind::Snapshot(x) => Action::Snapshot(Box::new(PlanSnapshot {
                save: x
                    .save
                    .as_ref()
                    .map(|t| self.text(t, &format!("{p}/snapshot/save"))),
                same_as: x
                    .expect
                    .as_ref()
                    .and_then(|e| e.same_as_step())
                    .map(str::to_string),
                hash: x.expect.as_ref().and_then(|e| e.hash.clone()),
                ignore_column_order: x.expect.as_ref().is_some_and(|e| e.ignore_column_order),
            })),
            StepKind::Rehearse(x) => Action::Rehearse(Box::new(PlanRehearse {
                dir: self.text(&x.dir, &format!("{p}/rehearse/dir")),
                format: x.format.clone().unwrap_or_else(|| "auto".into()),
                mode: x.mode,
                slow_threshold: x.slow_threshold.unwrap_or(Duration(
                    std::time::Duration::from_millis(model::DEFAULT_SLOW_THRESHOLD_MS),
                )),
                errors: self.verdicts(x.errors.as_ref(), &format!("{p}/rehearse/errors")),
                missing_downs: x.missing_downs,
                scratch: match &x.scratch {
                    None | Some(model::Scratch::Template(false)) => None,
                    Some(model::Scratch::Template(true)) => Some(PlanScratch::Template),
                    Some(model::Scratch::Backup { from }) => Some(PlanScratch::Backup(
                        from.trim().trim_start_matches("steps.").to_string(),
                    )),
                },
                seed: x
                    .seed
                    .as_ref()
                    .map(|t| self.text(t, &format!("{p}/rehearse/seed"))),
                history_table: x.history_table.clone(),
            })),
        };
        let rollback = if s.rollback_single {
            vec![self.step(&s.rollback[0], &format!("{p}/rollback"))]
        } else {
            self.steps(&s.rollback, &format!("{p}/rollback"))
        };
        PlanStep {
            id: s.id.clone(),
            name: s.name.clone(),
            when: self.when(&s.when, p),
            timeout: s.timeout.or(self.rb.defaults.timeout),
            retry: self.retry(s),
            settings: self.settings(s),
            action,
            rollback,
            rollback_on_partial: s.rollback_on_partial,
        }
    }
}

impl Plan {
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("plan serializes");
        s.push('\n');
        s
    }

    /// The plan as a person reads it.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let r = &self.runbook;
        let _ = writeln!(o, "plan: {} {} ({})", r.name, r.version, r.file);
        let _ = writeln!(o, "sha256: {}", r.sha256);
        if let Some(d) = &r.description {
            let _ = writeln!(o, "description: {d}");
        }
        match &self.database.url {
            Some(url) => {
                let _ = writeln!(o, "database: {url}");
            }
            None => {
                let _ = writeln!(o, "database: from {}", self.database.source);
            }
        }
        if !self.params.is_empty() {
            let _ = writeln!(o, "params:");
            for (k, p) in &self.params {
                let origin = match p.origin {
                    Origin::Set => "--set",
                    Origin::ParamsFile => "params file",
                    Origin::Default => "default",
                    Origin::Unset => "unset",
                };
                let _ = writeln!(o, "  {k} = {} ({origin})", show(&p.value));
            }
        }
        if !self.vars.is_empty() {
            let _ = writeln!(o, "vars:");
            for (k, v) in &self.vars {
                let _ = writeln!(o, "  {k} = {}", show(v));
            }
        }
        let settings = serde_json::to_value(&self.settings).unwrap_or_default();
        if let Some(map) = settings.as_object().filter(|m| !m.is_empty()) {
            let list: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}={}", show(v)))
                .collect();
            let _ = writeln!(o, "settings: {}", list.join(", "));
        }
        let total = self.phases.len();
        for (i, ph) in self.phases.iter().enumerate() {
            let _ = writeln!(
                o,
                "\nphase {}/{total} {} [{}]",
                i + 1,
                ph.id,
                ph.kind.name()
            );
            if let Some(d) = &ph.description {
                let _ = writeln!(o, "  {d}");
            }
            if let Some(w) = &ph.when {
                let _ = writeln!(o, "  when: {}", when_text(w));
            }
            if let Some(a) = &ph.approval {
                let _ = writeln!(
                    o,
                    "  gate: {} approval: {}",
                    if a.required { "required" } else { "optional" },
                    a.prompt.text
                );
            }
            let on_failure = match &ph.on_failure {
                PlanOnFailure::Rollback => {
                    "roll back this phase's started steps, newest first".to_string()
                }
                PlanOnFailure::Abort => "abort without undoing anything".to_string(),
                PlanOnFailure::Continue => "record the failure and continue".to_string(),
                PlanOnFailure::Steps(s) => format!("run the branch below ({} steps)", s.len()),
            };
            let _ = writeln!(o, "  on failure: {on_failure}");
            for (n, s) in ph.steps.iter().enumerate() {
                write_step(&mut o, s, &format!("{}.", n + 1), 2);
            }
            if let PlanOnFailure::Steps(branch) = &ph.on_failure {
                let _ = writeln!(o, "  failure branch:");
                for s in branch {
                    write_step(&mut o, s, "-", 4);
                }
            }
        }
        if !self.on_failure.is_empty() {
            let _ = writeln!(o, "\non failure (runbook):");
            for s in &self.on_failure {
                write_step(&mut o, s, "-", 2);
            }
        }
        if !self.finally_steps.is_empty() {
            let _ = writeln!(o, "\nfinally (always):");
            for s in &self.finally_steps {
                write_step(&mut o, s, "-", 2);
            }
        }
        o
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "(none)".into(),
        other => other.to_string(),
    }
}

fn when_text(w: &PlanWhen) -> String {
    match w.value {
        Some(true) => format!("{} (true: runs)", w.expr),
        Some(false) => format!("{} (false: skipped)", w.expr),
        None => format!("{} (evaluated at run time)", w.expr),
    }
}

fn write_block(o: &mut String, text: &str, indent: usize) {
    for line in text.trim_end().lines() {
        let _ = writeln!(o, "{:indent$}{line}", "");
    }
}

/// What the parser says about a sql step: how its statements run, and
/// which take locks that block writes. Known only when the text is.
fn sql_facts(t: &Text, transaction: bool, facts: &mut Vec<String>, lines: &mut Vec<String>) {
    use crate::statements::{Mode, mode};
    if t.template.is_some() {
        facts.push(
            if transaction {
                "in a transaction"
            } else {
                "no transaction"
            }
            .into(),
        );
        lines.push("statements are split when their templates render, at run time".into());
        return;
    }
    let stmts = crate::statements::split(t.raw.expose());
    let n = stmts.len();
    let each = if n == 1 {
        "1 statement".to_string()
    } else {
        format!("{n} statements")
    };
    match mode(&stmts, transaction) {
        Mode::Transaction => facts.push(format!("in a transaction; {each}")),
        Mode::Autocommit if n < 2 => facts.push(format!("no transaction; {each}")),
        Mode::Autocommit => facts.push(format!("no transaction; {each}, each commits on its own")),
        Mode::Forced(i, why) => {
            facts.push(if n < 2 {
                format!("no transaction; {each}")
            } else {
                format!("no transaction; {each}, each commits on its own")
            });
            lines.push(format!(
                "outside a transaction: statement {} ({}): {why}",
                i + 1,
                stmts[i].summary()
            ));
        }
    }
    for (i, st) in stmts.iter().enumerate() {
        if let Some(l) = st.lock {
            lines.push(format!(
                "statement {}: {} takes {} (blocks writes while held or queued)",
                i + 1,
                st.summary(),
                l.name()
            ));
        } else if st.concurrent_index {
            lines.push(format!(
                "statement {}: {} waits for older transactions; a failure leaves an INVALID index, which runbook drops",
                i + 1,
                st.summary()
            ));
        }
        if st.transaction_control && transaction {
            lines.push(format!(
                "statement {}: {} inside runbook's transaction fails the step; set `transaction: false`",
                i + 1,
                st.kind
            ));
        }
    }
}

fn write_step(o: &mut String, s: &PlanStep, marker: &str, indent: usize) {
    let kind = s.action.kind();
    let mut facts = Vec::new();
    let mut lines = Vec::new();
    if let Action::Sql {
        transaction,
        statements,
    } = &s.action
    {
        sql_facts(statements, *transaction, &mut facts, &mut lines);
    }
    if let Action::Check { severity, .. } = &s.action {
        facts.push("read-only".to_string());
        if *severity == model::Severity::Warn {
            facts.push("warn only".to_string());
        }
    }
    if let Some(t) = &s.timeout {
        facts.push(format!("timeout {t}"));
    }
    if let Some(own) = &s.settings {
        if let Some(l) = own.lock_timeout {
            facts.push(format!("lock_timeout {l}"));
        }
        if let Some(st) = own.statement_timeout {
            facts.push(format!("statement_timeout {st}"));
        }
        if let Some(w) = own.wait_for_blockers {
            facts.push(format!("wait_for_blockers {w}"));
        }
    }
    if s.retry.attempts > 1 {
        let on: Vec<String> = s
            .retry
            .on
            .iter()
            .map(|c| {
                serde_json::to_value(c)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            })
            .collect();
        facts.push(format!(
            "retry {}x on {} (backoff {} x{} up to {})",
            s.retry.attempts,
            on.join(", "),
            s.retry.initial,
            s.retry.factor,
            s.retry.max
        ));
    }
    let name = s
        .name
        .as_ref()
        .map(|n| format!(" \"{n}\""))
        .unwrap_or_default();
    let facts = if facts.is_empty() {
        String::new()
    } else {
        format!("  ({})", facts.join("; "))
    };
    let _ = writeln!(o, "{:indent$}{marker} {kind} {}{name}{facts}", "", s.id);
    let inner = indent + marker.len() + 1;
    if let Some(w) = &s.when {
        let _ = writeln!(o, "{:inner$}when: {}", "", when_text(w));
    }
    for l in lines {
        let _ = writeln!(o, "{:inner$}{l}", "");
    }
    match &s.action {
        Action::Sql { statements, .. } => write_block(o, &statements.text, inner + 2),
        Action::Check {
            query,
            builtin,
            expect,
            assert,
            ..
        } => {
            match builtin {
                Some(b) => write_builtin(o, b, inner + 2),
                None => write_block(o, &query.text, inner + 2),
            }
            for e in expect {
                let _ = writeln!(
                    o,
                    "{:inner$}expect {} {} {}",
                    "",
                    e.target,
                    e.op.name(),
                    e.value
                );
            }
            for a in assert {
                let _ = writeln!(o, "{:inner$}assert {a}", "");
            }
        }
        Action::Shell {
            script,
            argv,
            env,
            cwd,
            expect_exit,
        } => {
            match script {
                Some(t) => write_block(o, &format!("$ {}", t.text), inner + 2),
                None => {
                    let words: Vec<&str> = argv.iter().map(|t| t.text.as_str()).collect();
                    let _ = writeln!(o, "{:w$}$ {}", "", words.join(" "), w = inner + 2);
                }
            }
            for (k, v) in env {
                let _ = writeln!(o, "{:inner$}env {k}={}", "", v.text);
            }
            if let Some(c) = cwd {
                let _ = writeln!(o, "{:inner$}cwd {}", "", c.text);
            }
            if expect_exit.as_slice() != [0] {
                let codes: Vec<String> = expect_exit.iter().map(ToString::to_string).collect();
                let _ = writeln!(o, "{:inner$}expect exit {}", "", codes.join(" or "));
            }
        }
        Action::Sleep { duration } => {
            let _ = writeln!(o, "{:w$}{duration}", "", w = inner + 2);
        }
        Action::Backup(b) => write_backup(o, b, inner),
        Action::Restore(r) => write_restore(o, r, inner),
        Action::Backfill(b) => write_backfill(o, b, inner),
        Action::Migrate(m) => write_migrate(o, m, inner),
        Action::Snapshot(x) => write_snapshot(o, x, inner),
        Action::Rehearse(x) => write_rehearse(o, x, inner),
    }
    if !s.rollback.is_empty() {
        let _ = writeln!(o, "{:inner$}rollback:", "");
        for r in &s.rollback {
            write_step(o, r, "-", inner + 2);
        }
    }
}

fn texts(list: &[Text]) -> String {
    list.iter()
        .map(|t| t.text.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn write_backup(o: &mut String, b: &PlanBackup, inner: usize) {
    let w = inner + 2;
    let jobs = match (b.format, b.jobs) {
        (model::BackupFormat::Directory, Some(j)) => format!(", {j} jobs"),
        (model::BackupFormat::Directory, None) => ", jobs: cores (at most 4)".to_string(),
        _ => String::new(),
    };
    let _ = writeln!(
        o,
        "{:w$}pg_dump {} format{jobs} -> {}",
        "",
        b.format.name(),
        b.path.text
    );
    let mut what = Vec::new();
    if b.schema_only {
        what.push("schema only".to_string());
    }
    if b.data_only {
        what.push("data only".to_string());
    }
    if let Some(c) = b.compress {
        what.push(format!("compress {c}"));
    }
    for (label, list) in [
        ("tables", &b.tables),
        ("exclude tables", &b.exclude_tables),
        ("schemas", &b.schemas),
        ("exclude schemas", &b.exclude_schemas),
    ] {
        if !list.is_empty() {
            what.push(format!("{label} {}", texts(list)));
        }
    }
    if !what.is_empty() {
        let _ = writeln!(o, "{:w$}{}", "", what.join("; "));
    }
    let verify = match b.verify {
        model::Verify::None => "hashes only, not read back",
        model::Verify::List => "pg_restore --list covers every table",
        model::Verify::Restore => "restore into a scratch database, compare row counts",
    };
    let _ = writeln!(
        o,
        "{:w$}manifest.json: sha256 of every file, row counts in the dump's snapshot",
        ""
    );
    let _ = writeln!(o, "{:w$}verify: {verify}", "");
    if let Some(k) = b.keep {
        let _ = writeln!(
            o,
            "{:w$}keep the newest {k} backups of this runbook beside it",
            ""
        );
    }
}

fn write_builtin(o: &mut String, b: &PlanBuiltin, pad: usize) {
    let mut args: Vec<String> = b
        .args
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k} {s}"),
            other => format!("{k} {other}"),
        })
        .collect();
    args.extend(b.texts.iter().map(|(k, t)| format!("{k} {}", t.text)));
    if let Some(tables) = &b.tables {
        let names: Vec<&str> = tables.iter().map(|t| t.text.as_str()).collect();
        args.push(format!("tables {}", names.join(", ")));
    }
    let _ = writeln!(
        o,
        "{:pad$}builtin {}{}",
        "",
        b.name,
        if args.is_empty() {
            String::new()
        } else {
            format!(" ({})", args.join(", "))
        }
    );
    if let Some(def) = crate::checks::find(&b.name) {
        let _ = writeln!(o, "{:pad$}passes when {}", "", def.passes);
    }
}

fn write_backfill(o: &mut String, b: &PlanBackfill, inner: usize) {
    let pad = inner + 2;
    let key = if b.key.is_empty() {
        "the primary key".to_string()
    } else {
        b.key.join(", ")
    };
    let _ = writeln!(
        o,
        "{:pad$}UPDATE {} SET {}{}",
        "",
        b.table.text,
        b.set.text,
        b.where_
            .as_ref()
            .map(|w| format!(" WHERE {}", w.text))
            .unwrap_or_default()
    );
    let mut pacing = vec![format!("batches of {} by {key}", b.batch_size)];
    if let Some(p) = b.pause {
        pacing.push(format!("pause {p}"));
    }
    if let Some(r) = b.max_rows_per_second {
        pacing.push(format!("at most {r} rows/s"));
    }
    if let Some(l) = b.max_replica_lag {
        pacing.push(format!("waits while replica lag > {l}"));
    }
    if let Some(n) = b.max_active_sessions {
        pacing.push(format!("waits while > {n} other sessions are active"));
    }
    let _ = writeln!(o, "{:pad$}{}", "", pacing.join("; "));
    let _ = writeln!(
        o,
        "{:pad$}each batch is its own transaction; checkpoints in {}, so a re-run resumes",
        "", b.state_table
    );
    if b.dry_run {
        let _ = writeln!(
            o,
            "{:pad$}dry run: one batch, rolled back, and a projection of the total time",
            ""
        );
    }
}

fn write_migrate(o: &mut String, m: &PlanMigrate, inner: usize) {
    let pad = inner + 2;
    let what = match (m.direction, &m.to, m.steps) {
        (model::Direction::Up, to, n) => format!(
            "apply pending migrations{}{}",
            to.as_ref()
                .filter(|t| *t != "latest")
                .map(|t| format!(" through {t}"))
                .unwrap_or_default(),
            n.map(|n| format!(", at most {n}")).unwrap_or_default()
        ),
        (model::Direction::Down, to, n) => format!(
            "roll back applied migrations, newest first{}{}",
            to.as_ref()
                .map(|t| format!(", down to {t}"))
                .unwrap_or_default(),
            n.map(|n| format!(", at most {n}")).unwrap_or_default()
        ),
    };
    let _ = writeln!(
        o,
        "{:pad$}{what} from {} ({} format)",
        "", m.dir.text, m.format
    );
    let _ = writeln!(
        o,
        "{:pad$}each in its own transaction unless it cannot run in one; history in {}",
        "", m.history_table
    );
    let _ = writeln!(
        o,
        "{:pad$}refuses a dirty migration{}",
        "",
        if m.allow_checksum_change {
            "; a changed applied file is accepted and recorded"
        } else {
            " and a changed applied file"
        }
    );
}

fn write_snapshot(o: &mut String, x: &PlanSnapshot, inner: usize) {
    let pad = inner + 2;
    let _ = writeln!(
        o,
        "{:pad$}schema snapshot from the catalog, and its hash",
        ""
    );
    if let Some(id) = &x.same_as {
        let _ = writeln!(o, "{:pad$}must equal steps.{id}", "");
    }
    if let Some(h) = &x.hash {
        let _ = writeln!(o, "{:pad$}must have hash {h}", "");
    }
    if let Some(t) = &x.save {
        let _ = writeln!(o, "{:pad$}saved to {}", "", t.text);
    }
}

fn write_rehearse(o: &mut String, x: &PlanRehearse, inner: usize) {
    let pad = inner + 2;
    let legs = match x.mode {
        model::RehearseMode::PerMigration => {
            "per migration: up, down (parity and data checked), up again"
        }
        model::RehearseMode::WholeSet => {
            "whole set: every up, every down in reverse (parity and data checked), every up again"
        }
    };
    let _ = writeln!(o, "{:pad$}{} ({} format): {legs}", "", x.dir.text, x.format);
    let on = match &x.scratch {
        None => "the run's database".to_string(),
        Some(PlanScratch::Template) => {
            "a scratch clone (CREATE DATABASE ... TEMPLATE), dropped afterwards".into()
        }
        Some(PlanScratch::Backup(id)) => {
            format!("a scratch restore of steps.{id}, dropped afterwards")
        }
    };
    let _ = writeln!(o, "{:pad$}on {on}", "");
    let errors: Vec<&str> = x.errors.iter().map(|v| v.name()).collect();
    let _ = writeln!(
        o,
        "{:pad$}slow above {}; fails on {}",
        "",
        x.slow_threshold,
        errors.join(", ")
    );
    if let Some(s) = &x.seed {
        let _ = writeln!(o, "{:pad$}seed {} after each up", "", s.text);
    }
}

fn write_restore(o: &mut String, r: &PlanRestore, inner: usize) {
    let w = inner + 2;
    let from = match &r.from {
        RestoreFrom::Step(id) => format!("the backup of steps.{id}"),
        RestoreFrom::Path(t) => t.text.clone(),
    };
    let target = r.target.as_ref().map_or_else(
        || "the run's database".to_string(),
        |t| format!("database `{}`", t.text),
    );
    let _ = writeln!(o, "{:w$}from {from} into {target}", "");
    let mut how = vec!["re-check sha256s first".to_string()];
    if r.clean {
        how.push("drop its objects first (--clean --if-exists)".into());
    }
    how.push(if r.single_transaction {
        "one transaction".to_string()
    } else {
        format!("{} jobs", r.jobs)
    });
    how.push(if r.terminate_connections {
        "terminate other sessions".to_string()
    } else {
        "refuse if other sessions are connected".to_string()
    });
    how.push("compare row counts with the manifest".into());
    let _ = writeln!(o, "{:w$}{}", "", how.join("; "));
}
