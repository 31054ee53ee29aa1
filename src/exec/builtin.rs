//! Running the built-in checks of `crate::checks`: fill in the arguments,
//! run the SQL in a READ ONLY transaction, and say whether it passed as an
//! expectation the report shows like any other ("expected rows eq 0, got 2").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::rows::{json_rows, matches, read_only_prefix};
use super::{Fail, Run};
use crate::checks::{self, Builtin, Kind};
use crate::events::ErrorKind;
use crate::events::{ErrorInfo, Expectation, StepStatus};
use crate::model::CompareOp;
use crate::plan::{PlanBuiltin, PlanStep};

type Row = Map<String, Value>;

/// What a built-in check found.
pub(crate) struct Found {
    pub rows: Vec<Row>,
    /// The check's own pass condition.
    pub expectations: Vec<Expectation>,
    /// For the report: the check and its arguments.
    pub details: Value,
    /// Extra outputs for later steps (`tables`, `hash`, `objects`).
    pub output: Map<String, Value>,
}

fn fail(message: String, hint: Option<String>) -> Fail {
    Fail::new(
        StepStatus::Failed,
        ErrorInfo {
            class: ErrorKind::Check,
            message,
            hint,
            ..ErrorInfo::default()
        },
    )
}

fn expectation(target: &str, op: CompareOp, expected: Value, actual: Value) -> Expectation {
    Expectation {
        target: target.into(),
        op: op.name().into(),
        passed: matches(&actual, op, &expected),
        expected,
        actual,
    }
}

fn rows_expectation(rows: &[Row], op: CompareOp, limit: u64) -> Expectation {
    expectation("rows", op, Value::from(limit), Value::from(rows.len()))
}

fn column(rows: &[Row], name: &str) -> Value {
    rows.first()
        .and_then(|r| r.get(name).cloned())
        .unwrap_or(Value::Null)
}

/// Replace `:name` placeholders (not `::casts`) with the given SQL text.
fn fill(sql: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(sql.len());
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < sql.len() {
        let c = bytes[i];
        if c == b':' && bytes.get(i + 1) != Some(&b':') && (i == 0 || bytes[i - 1] != b':') {
            let name: String = sql[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if let Some((_, v)) = values.iter().find(|(n, _)| *n == name) {
                out.push_str(v);
                i += 1 + name.len();
                continue;
            }
        }
        let ch = sql[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Run `body` (a SELECT) READ ONLY and return its rows as JSON objects.
async fn query(
    r: &mut Run<'_>,
    s: &PlanStep,
    body: &str,
    timeout: Option<Duration>,
) -> Result<Vec<Row>, Fail> {
    query_after(r, s, "", body, timeout).await
}

/// [`query`], with `setup` run first in its read-only transaction.
async fn query_after(
    r: &mut Run<'_>,
    s: &PlanStep,
    setup: &str,
    body: &str,
    timeout: Option<Duration>,
) -> Result<Vec<Row>, Fail> {
    let prefix = read_only_prefix(r, s);
    let sql = match prefix.split_once('\n') {
        Some((begin, rest)) if !setup.is_empty() => {
            format!("{begin}\n{setup}\n{rest}{body}\n) AS q;\nCOMMIT;")
        }
        _ => format!("{prefix}{body}\n) AS q;\nCOMMIT;"),
    };
    match r.db.run(&sql, timeout, r.stop_signal()).await {
        Ok(messages) => Ok(json_rows(messages)),
        Err(f) => {
            r.db.rollback().await;
            let raw = body.to_string();
            let mut fail = r.query_failure(
                f,
                &crate::plan::Text {
                    text: raw.clone(),
                    raw: crate::secret::Secret::new(raw.clone()),
                    pointer: String::new(),
                    template: None,
                    after: Vec::new(),
                },
                &raw,
                0,
                timeout,
            );
            fail.error.position = None;
            fail.error.location = None;
            Err(fail)
        }
    }
}

fn duration_arg(b: &PlanBuiltin, name: &str) -> Duration {
    b.args
        .get(name)
        .and_then(Value::as_str)
        .and_then(|t| crate::duration::Duration::parse(t).ok())
        .map_or(Duration::ZERO, |d| d.0)
}

fn interval(d: Duration) -> String {
    format!("'{} milliseconds'", d.as_millis())
}

fn number_arg(b: &PlanBuiltin, name: &str) -> f64 {
    match b.args.get(name) {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(s)) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

fn text_arg(r: &Run<'_>, b: &PlanBuiltin, name: &str) -> Result<Option<String>, Fail> {
    b.texts
        .get(name)
        .map(|t| {
            r.render(t)
                .map(|(raw, _)| raw)
                .map_err(|e| Fail::new(StepStatus::Failed, e))
        })
        .transpose()
}

pub(crate) fn relative(r: &Run<'_>, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        r.base_dir.join(p)
    }
}

/// The output of an earlier step that `from: steps.X` names.
fn from_step<'v>(r: &'v Run<'_>, b: &PlanBuiltin) -> Option<(&'v str, &'v Map<String, Value>)> {
    let id = b.args.get("from")?.as_str()?.strip_prefix("steps.")?;
    let (k, v) = r.steps_out.get_key_value(id)?;
    Some((k.as_str(), v.as_object()?))
}

// Long by design: one arm per built-in (`checks::Kind`), exhaustive, so a
// catalog entry without a runner does not compile.
pub(crate) async fn run(
    r: &mut Run<'_>,
    s: &PlanStep,
    b: &PlanBuiltin,
    timeout: Option<Duration>,
) -> Result<Found, Fail> {
    let Some(def) = checks::find(&b.name) else {
        return Err(fail(format!("unknown built-in check `{}`", b.name), None));
    };
    let ours = crate::pg::quote::literal(&r.app_name);
    let mut output = Map::new();
    // Every argument as the check read it: text ones rendered (secrets
    // masked), so the report shows the directory and history it used.
    let mut args = Map::new();
    args.extend(b.args.iter().map(|(k, v)| (k.clone(), v.clone())));
    for (k, t) in &b.texts {
        let shown = r
            .render(t)
            .map_or_else(|_| t.text.clone(), |(_, shown)| shown);
        args.insert(k.clone(), Value::from(shown));
    }
    let mut details = json!({ "builtin": b.name, "args": args });
    if matches!(
        def.kind,
        Kind::LongRunningTransactions
            | Kind::IdleInTransaction
            | Kind::BlockingLocks
            | Kind::ActiveConnections
    ) {
        all_sessions_visible(r, s, def, timeout).await?;
    }
    let (rows, expectations) = match def.kind {
        Kind::LongRunningTransactions | Kind::IdleInTransaction => {
            let sql = fill(
                def.sql,
                &[
                    ("ours", ours),
                    ("max_age", interval(duration_arg(b, "max_age"))),
                ],
            );
            let rows = query(r, s, &sql, timeout).await?;
            let e = rows_expectation(&rows, CompareOp::Eq, 0);
            (rows, vec![e])
        }
        Kind::BlockingLocks => {
            let sql = fill(
                def.sql,
                &[("min_wait", interval(duration_arg(b, "min_wait")))],
            );
            let rows = query(r, s, &sql, timeout).await?;
            let e = rows_expectation(&rows, CompareOp::Eq, 0);
            (rows, vec![e])
        }
        Kind::ActiveConnections => {
            let rows = query(r, s, &fill(def.sql, &[("ours", ours)]), timeout).await?;
            let e = expectation(
                "active",
                CompareOp::Lte,
                b.args["max"].clone(),
                column(&rows, "active"),
            );
            (rows, vec![e])
        }
        Kind::ReplicationLag => replication_lag(r, s, b, def, timeout, &mut details).await?,
        Kind::DatabaseSize => {
            let max = match &b.args["max"] {
                Value::String(t) => checks::parse_size(t).unwrap_or(0),
                v => v.as_u64().unwrap_or(0),
            };
            let rows = query(r, s, def.sql, timeout).await?;
            let e = expectation(
                "bytes",
                CompareOp::Lte,
                Value::from(max),
                column(&rows, "bytes"),
            );
            (rows, vec![e])
        }
        Kind::ServerVersion => {
            let min = match &b.args["min"] {
                Value::String(t) => checks::parse_version(t),
                v => checks::parse_version(&v.to_string()),
            }
            .unwrap_or(0);
            let rows = query(r, s, def.sql, timeout).await?;
            let e = expectation(
                "version_num",
                CompareOp::Gte,
                Value::from(min),
                column(&rows, "version_num"),
            );
            (rows, vec![e])
        }
        Kind::PendingMigrations => pending(r, b, &mut details).await?,
        Kind::DirtyMigrations => dirty(r, b, &mut details).await?,
        Kind::DiskFreeForBackup => disk_free(r, s, b, def, timeout).await?,
        Kind::InvalidIndexes | Kind::UnvalidatedConstraints | Kind::SequenceExhaustion => {
            if def.kind == Kind::SequenceExhaustion {
                all_sequences_readable(r, s, timeout).await?;
            }
            let sql = fill(
                def.sql,
                &[("threshold", number_arg(b, "threshold").to_string())],
            );
            let rows = query(r, s, &sql, timeout).await?;
            let e = rows_expectation(&rows, CompareOp::Eq, 0);
            (rows, vec![e])
        }
        Kind::ForeignKeyOrphans => orphans(r, s, def, timeout, &mut details).await?,
        Kind::NotNullViolations => {
            let table = text_arg(r, b, "table")?.unwrap_or_default();
            let col = text_arg(r, b, "column")?.unwrap_or_default();
            let found = query(
                r,
                s,
                &format!(
                    "SELECT to_regclass({})::text AS name",
                    crate::pg::quote::literal(&table)
                ),
                timeout,
            )
            .await?;
            let Some(name) = column(&found, "name").as_str().map(str::to_string) else {
                return Err(fail(
                    format!("not_null_violations: table `{table}` does not exist"),
                    Some(
                        "check `table:`; schema-qualify it if it is not on the search_path".into(),
                    ),
                ));
            };
            let sql = fill(
                def.sql,
                &[("table", name), ("column", crate::pg::quote::ident(&col))],
            );
            let rows = every_row(r, s, &sql, timeout).await?;
            let e = expectation(
                "nulls",
                CompareOp::Eq,
                Value::from(0),
                column(&rows, "nulls"),
            );
            (rows, vec![e])
        }
        Kind::RowCounts => row_counts(r, s, b, def, timeout, &mut output).await?,
        Kind::SchemaMatches => schema_matches(r, s, b, timeout, &mut output, &mut details).await?,
        Kind::Privileges => {
            let rows = match super::privileges::query(r.plan) {
                Some(sql) => query(r, s, &sql, timeout).await?,
                None => Vec::new(),
            };
            let e = rows_expectation(&rows, CompareOp::Eq, 0);
            (rows, vec![e])
        }
    };
    Ok(Found {
        rows,
        expectations,
        details,
        output,
    })
}

/// The directory (`None`: the check names none) and its history, read as
/// `migrate` reads it.
async fn history(
    r: &mut Run<'_>,
    b: &PlanBuiltin,
) -> Result<
    (
        crate::migrations::Set,
        crate::history::History,
        Vec<crate::history::Applied>,
    ),
    Fail,
> {
    let dir = text_arg(r, b, "dir")?;
    let mut set = match &dir {
        Some(d) => crate::migrations::load(&relative(r, d), None).map_err(|e| {
            fail(
                e.to_string(),
                Some(
                    e.hint()
                        .unwrap_or("check `dir:`; it is relative to the runbook's directory")
                        .into(),
                ),
            )
        })?,
        None => crate::migrations::Set::empty(),
    };
    // Liquibase's changesets, as a migrate step with these contexts and
    // this label filter selects them.
    let contexts = text_arg(r, b, "contexts")?;
    let label_filter = text_arg(r, b, "label_filter")?;
    // Counted as a step given the same would run them: one that gives none
    // where the project's deploys give some is refused.
    if (&contexts, &label_filter) == (&None, &None)
        && let Some((why, hint)) = crate::migrations::liquibase_ungiven(&set)
    {
        return Err(fail(why, Some(hint)));
    }
    crate::migrations::liquibase_select(&mut set, contexts.as_deref(), label_filter.as_deref())
        .map_err(|e| {
            fail(
                e,
                Some("`contexts` and `label_filter` are Liquibase's".into()),
            )
        })?;
    // Text arguments are templates, kept apart from the others in the plan.
    let format = text_arg(r, b, "history_format")?;
    let tool = crate::history::Tool::parse(format.as_deref().map(str::trim).unwrap_or("auto"))
        .map_err(|e| {
            fail(
                e,
                Some("see docs/migrations.md for the history formats".into()),
            )
        })?;
    let spec = crate::history::Spec {
        tool,
        table: text_arg(r, b, "history_table")?,
    };
    let history = crate::history::History::open(&r.db, &spec, &mut set)
        .await
        .map_err(|e| fail(e.to_string(), Some(e.hint().into())))?;
    let applied = history
        .read(&r.db, &set)
        .await
        .map_err(|e| Fail::new(StepStatus::Failed, e))?;
    Ok((set, history, applied))
}

async fn pending(
    r: &mut Run<'_>,
    b: &PlanBuiltin,
    details: &mut Value,
) -> Result<(Vec<Row>, Vec<Expectation>), Fail> {
    let (set, history, applied) = history(r, b).await?;
    details["history"] = Value::from(history.describe());
    let repeatables = history
        .repeatables(&r.db, &set)
        .await
        .map_err(|e| Fail::new(StepStatus::Failed, e))?;
    let row = |version: Value, file: &str, out_of_order: Value| {
        let mut row = Map::new();
        row.insert("version".into(), version);
        row.insert("file".into(), Value::from(file));
        row.insert("out_of_order".into(), out_of_order);
        row
    };
    // As far as a `migrate` step with this `to` goes: a version stops it
    // there, and Flyway's repeatables then wait for a full migrate.
    let to = text_arg(r, b, "to")?;
    let to = to.as_deref().map(str::trim).filter(|t| *t != "latest");
    if let Some(t) = to
        && let Err((label, hint)) = crate::migrations::check_target(t, crate::model::Direction::Up)
    {
        return Err(fail(format!("`to` is `{t}`: {label}"), Some(hint.into())));
    }
    let within =
        |m: &crate::migrations::Migration| to.is_none_or(|t| set.cmp(&m.version, t).is_le());
    let newest = crate::history::Newest::of(&set, &applied);
    // No Flyway history yet, on a schema that holds objects: a migrate
    // step refuses, or starts from Flyway's baseline (`baselineOnMigrate`).
    let (start_refused, baseline) = match history
        .flyway_start(&r.db, &set)
        .await
        .map_err(|e| Fail::new(StepStatus::Failed, e))?
    {
        crate::history::FlywayStart::AsUsual => (None, None),
        crate::history::FlywayStart::Refused(message, _) => (Some(message), None),
        crate::history::FlywayStart::Baseline(b) => (None, Some(b)),
    };
    let baselined = |m: &crate::migrations::Migration| {
        baseline.as_ref().is_some_and(|b| {
            crate::migrations::version_cmp(&m.version, &b.version).is_le()
                || crate::migrations::same_version(&m.version, &b.version)
        })
    };
    if let Some(b) = &baseline {
        details["baseline"] = Value::from(format!(
            "a migrate step records Flyway's baseline at version {} first (baselineOnMigrate, {}): schema {} already holds objects, and there is no Flyway history; the migrations up to it are not run, nor counted here",
            b.version,
            b.at,
            b.schemas.join(", ")
        ));
    }
    let pending: Vec<_> = set
        .migrations
        .iter()
        .filter(|m| !applied.iter().any(|a| a.version == m.version && !a.dirty))
        .filter(|m| !baselined(m))
        .collect();
    let beyond = pending.iter().filter(|m| !within(m)).count();
    if beyond > 0 {
        details["after_to"] = Value::from(beyond);
    }
    // The application's Java or Kotlin migrations: pending as the scripts
    // are, but a migrate step refuses to pass over one.
    let code: Vec<_> = set
        .code_migrations
        .iter()
        .filter(|c| !c.version.is_empty())
        .filter(|c| !applied.iter().any(|a| a.version == c.version && !a.dirty))
        .filter(|c| {
            !baseline.as_ref().is_some_and(|b| {
                crate::migrations::version_cmp(&c.version, &b.version).is_le()
                    || crate::migrations::same_version(&c.version, &b.version)
            })
        })
        .filter(|c| to.is_none_or(|t| set.cmp(&c.version, t).is_le()))
        .collect();
    // What Liquibase runs again, in its place (never out of order): a
    // changed runOnChange changeset is behind, and counts; a runAlways
    // one runs on every update and is never behind, so it is named apart.
    let (again, always): (Vec<_>, Vec<_>) = set
        .migrations
        .iter()
        .filter(|m| within(m))
        .filter_map(|m| {
            let a = applied.iter().find(|a| a.version == m.version)?;
            Some((m, history.runs_again(m, a)?))
        })
        .partition(|(_, why)| *why == crate::history::Again::Changed);
    if !always.is_empty() {
        details["run_always"] = always
            .iter()
            .map(|(m, _)| Value::from(m.up.file.clone()))
            .collect();
    }
    let mut versioned: Vec<(&str, Row)> = pending
        .into_iter()
        .filter(|m| within(m))
        .map(|m| {
            let early = newest.is_after(&set, m);
            let r = row(Value::from(m.version.clone()), &m.up.file, early.into());
            (m.version.as_str(), r)
        })
        .chain(again.iter().map(|(m, why)| {
            let mut r = row(Value::from(m.version.clone()), &m.up.file, false.into());
            r.insert("again".into(), Value::from(why.name()));
            (m.version.as_str(), r)
        }))
        .chain(code.iter().map(|c| {
            let early = newest
                .version
                .is_some_and(|v| set.cmp(&c.version, v).is_lt());
            let mut r = row(Value::from(c.version.clone()), &c.file, early.into());
            r.insert("code".into(), Value::from(c.language));
            (c.version.as_str(), r)
        }))
        .collect();
    versioned.sort_by(|a, b| set.cmp(a.0, b.0));
    let rows: Vec<Row> = versioned
        .into_iter()
        .map(|(_, r)| r)
        // Flyway's repeatable migrations that the next migrate runs.
        .chain(
            repeatables
                .iter()
                .filter(|(_, state)| to.is_none() && *state != crate::history::Repeatable::Applied)
                .map(|(m, _)| row(Value::Null, &m.up.file, Value::Null)),
        )
        .collect();
    let max = b.args.get("max").and_then(Value::as_u64).unwrap_or(0);
    let count = rows_expectation(&rows, CompareOp::Lte, max);
    // What a `migrate` step would refuse before running anything: found
    // here, a preflight stops the run before its backup.
    let setting = b.args.get("out_of_order").and_then(Value::as_bool);
    let early = rows
        .iter()
        .filter(|r| r.get("out_of_order") == Some(&Value::Bool(true)))
        .count();
    // A Liquibase changeset with a context or labels that the runs before
    // passed over: a step that gives no contexts refuses it.
    let unselected =
        text_arg(r, b, "contexts")?.is_none() && text_arg(r, b, "label_filter")?.is_none();
    let passed_over = set
        .migrations
        .iter()
        .filter(|m| unselected && within(m) && newest.is_after(&set, m))
        .filter(|m| !applied.iter().any(|a| a.version == m.version))
        .filter(|m| m.changeset.as_ref().is_some_and(|c| c.is_selective()))
        .count();
    if passed_over > 0 {
        details["passed_over"] = Value::from(format!(
            "{passed_over} pending changeset(s) with a context or labels are older than applied ones, which the runs before passed over; a migrate step that gives no contexts refuses them"
        ));
    }
    let refused = if history.tool.applies_out_of_order(&set, setting) {
        passed_over
    } else {
        early
    };
    if refused > 0 {
        details["out_of_order"] = Value::from(match setting {
            Some(false) => "`out_of_order: false` refuses a pending migration older than the newest applied one, and so would a migrate step with it".to_string(),
            _ => history.tool.out_of_order_fate(&set),
        });
    }
    let order = expectation(
        "refused_out_of_order",
        CompareOp::Eq,
        Value::from(0),
        Value::from(refused),
    );
    let mut expectations = vec![count, order];
    // Judged where the application has migrations in code.
    if !set.code_migrations.is_empty() {
        if let Some(c) = code.first() {
            details["code"] = Value::from(format!(
                "{} is pending: {} runs it from the application's code, and runbook cannot; a migrate step that would pass over it is refused",
                c.label(),
                c.tool
            ));
        }
        expectations.push(expectation(
            "refused_code_migrations",
            CompareOp::Eq,
            Value::from(0),
            Value::from(code.len()),
        ));
    }
    // Flyway's start is judged where the history is Flyway's.
    if history.tool == crate::history::Tool::Flyway {
        if let Some(message) = &start_refused {
            details["refused"] = Value::from(message.clone());
        }
        expectations.push(expectation(
            "refused_non_empty_schema",
            CompareOp::Eq,
            Value::from(0),
            Value::from(u8::from(start_refused.is_some())),
        ));
    }
    Ok((rows, expectations))
}

async fn dirty(
    r: &mut Run<'_>,
    b: &PlanBuiltin,
    details: &mut Value,
) -> Result<(Vec<Row>, Vec<Expectation>), Fail> {
    let (_, history, applied) = history(r, b).await?;
    let rows: Vec<Row> = applied
        .iter()
        .filter(|a| a.dirty)
        .map(|a| {
            let mut row = Map::new();
            row.insert("version".into(), Value::from(a.version.clone()));
            row.insert("name".into(), Value::from(a.name.clone()));
            row.insert("state".into(), Value::from(history.dirty_message(a).0));
            row
        })
        .collect();
    details["history"] = Value::from(history.describe());
    if matches!(
        history.tool,
        crate::history::Tool::Dbmate
            | crate::history::Tool::Goose
            | crate::history::Tool::SqlMigrate
            | crate::history::Tool::Popx
    ) {
        details["note"] = Value::from(format!(
            "{}'s history has no mark for an unfinished migration: this check cannot see one",
            history.tool.name()
        ));
    }
    let e = rows_expectation(&rows, CompareOp::Eq, 0);
    Ok((rows, vec![e]))
}

async fn disk_free(
    r: &mut Run<'_>,
    s: &PlanStep,
    b: &PlanBuiltin,
    def: &Builtin,
    timeout: Option<Duration>,
) -> Result<(Vec<Row>, Vec<Expectation>), Fail> {
    let path = relative(r, &text_arg(r, b, "path")?.unwrap_or_default());
    // The backup directory usually does not exist yet: measure the nearest
    // parent that does, which is the file system it will be created on.
    let measured = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    let stat = nix::sys::statvfs::statvfs(&measured).map_err(|e| {
        fail(
            format!("cannot measure free space at {}: {e}", measured.display()),
            None,
        )
    })?;
    let free = stat.blocks_available() as u64 * stat.fragment_size() as u64;
    let mut rows = query(r, s, def.sql, timeout).await?;
    let db_bytes = column(&rows, "database_bytes").as_u64().unwrap_or(0);
    let margin = b
        .args
        .get("margin")
        .map_or(1.0, |_| number_arg(b, "margin"));
    let needed = (db_bytes as f64 * margin).ceil() as u64;
    if let Some(row) = rows.first_mut() {
        row.insert("path".into(), Value::from(measured.display().to_string()));
        row.insert("free_bytes".into(), Value::from(free));
        row.insert("needed_bytes".into(), Value::from(needed));
    }
    let e = expectation(
        "free_bytes",
        CompareOp::Gte,
        Value::from(needed),
        Value::from(free),
    );
    Ok((rows, vec![e]))
}

/// Refuse to judge sessions this role may not see: a check of
/// `pg_stat_activity` would pass over them as if they were not there.
async fn all_sessions_visible(
    r: &mut Run<'_>,
    s: &PlanStep,
    def: &Builtin,
    timeout: Option<Duration>,
) -> Result<(), Fail> {
    let hidden = query(r, s, &checks::hidden_in_transaction(true), timeout).await?;
    let n = column(&hidden, "count").as_i64().unwrap_or(0);
    if n == 0 {
        return Ok(());
    }
    Err(fail(
        format!(
            "{}: {n} session(s) in a transaction in this database belong to roles whose activity this role may not see (their state, transaction and waits are hidden): the check could not look at them",
            def.name
        ),
        Some(crate::pg::activity::see_all_stats(
            r.db.config().config.get_user(),
        )),
    ))
}

/// PostgreSQL shows no `last_value` for a sequence the role may not read,
/// and the check would pass over it: such sequences are named instead.
async fn all_sequences_readable(
    r: &mut Run<'_>,
    s: &PlanStep,
    timeout: Option<Duration>,
) -> Result<(), Fail> {
    let hidden = query(r, s, checks::UNREADABLE_SEQUENCES, timeout).await?;
    let n = column(&hidden, "count").as_i64().unwrap_or(0);
    if n == 0 {
        return Ok(());
    }
    Err(fail(
        format!(
            "sequence_exhaustion: this role may not read {n} sequence(s) ({}): the check could not look at them",
            column(&hidden, "some").as_str().unwrap_or_default()
        ),
        Some("GRANT SELECT ON ALL SEQUENCES IN SCHEMA <schema> TO the role the run connects as, or run the check as a role that may read them".into()),
    ))
}

/// Lagging replicas and abandoned slots, once it is known that the role
/// can see the replicas' lag: PostgreSQL blanks it for a role without
/// `pg_read_all_stats`, and a blank lag is no lag to the query.
async fn replication_lag(
    r: &mut Run<'_>,
    s: &PlanStep,
    b: &PlanBuiltin,
    def: &Builtin,
    timeout: Option<Duration>,
    details: &mut Value,
) -> Result<(Vec<Row>, Vec<Expectation>), Fail> {
    let seen = query(
        r,
        s,
        "SELECT (SELECT count(*) FROM pg_stat_replication WHERE state IS DISTINCT FROM 'backup') AS replicas,
       (SELECT count(*) FROM pg_stat_replication WHERE state IS NULL) AS hidden,
       (SELECT count(*) FROM pg_replication_slots) AS slots",
        timeout,
    )
    .await?;
    let count = |name: &str| column(&seen, name).as_i64().unwrap_or(0);
    if count("hidden") > 0 {
        return Err(fail(
            format!(
                "replication_lag: {} replica(s) connected, and this role may not see their state or lag: the lag was not measured",
                count("hidden")
            ),
            Some(crate::pg::activity::see_all_stats(
                r.db.config().config.get_user(),
            )),
        ));
    }
    details["replicas"] = Value::from(count("replicas"));
    details["slots"] = Value::from(count("slots"));
    if count("replicas") == 0 && count("slots") == 0 {
        details["note"] = Value::from(
            "no replica is connected and there is no replication slot: no lag was there to measure",
        );
    }
    let sql = fill(def.sql, &[("max", interval(duration_arg(b, "max")))]);
    let rows = query(r, s, &sql, timeout).await?;
    let e = rows_expectation(&rows, CompareOp::Eq, 0);
    Ok((rows, vec![e]))
}

async fn orphans(
    r: &mut Run<'_>,
    s: &PlanStep,
    def: &Builtin,
    timeout: Option<Duration>,
    details: &mut Value,
) -> Result<(Vec<Row>, Vec<Expectation>), Fail> {
    let body = format!(
        "SELECT conname, \"table\", parent, validated, match, cols, pcols FROM ({}) AS f(conname, \"table\", parent, validated, match, cols, pcols)",
        def.sql
    );
    let fks = query(r, s, &body, timeout).await?;
    details["foreign_keys_checked"] = Value::from(fks.len());
    if fks.is_empty() {
        return Ok((Vec::new(), vec![rows_expectation(&[], CompareOp::Eq, 0)]));
    }
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect()
    };
    let mut parts = Vec::new();
    for fk in &fks {
        let (table, parent) = (
            fk["table"].as_str().unwrap_or(""),
            fk["parent"].as_str().unwrap_or(""),
        );
        let (cols, pcols) = (names(&fk["cols"]), names(&fk["pcols"]));
        let join: Vec<String> = cols
            .iter()
            .zip(&pcols)
            .map(|(c, p)| format!("p.{p} = c.{c}"))
            .collect();
        let all_set: Vec<String> = cols.iter().map(|c| format!("c.{c} IS NOT NULL")).collect();
        let missing = format!(
            "({}) AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {})",
            all_set.join(" AND "),
            join.join(" AND ")
        );
        // MATCH FULL: a partly NULL key is a violation too.
        let condition = if fk["match"] == "f" {
            let any_set: Vec<String> = cols.iter().map(|c| format!("c.{c} IS NOT NULL")).collect();
            format!(
                "({missing}) OR (({}) AND NOT ({}))",
                any_set.join(" OR "),
                all_set.join(" AND ")
            )
        } else {
            missing
        };
        parts.push(format!(
            "SELECT {} AS \"constraint\", {} AS \"table\", {} AS \"references\", {} AS validated, count(*) AS orphans FROM {table} c WHERE {condition}",
            crate::pg::quote::literal(fk["conname"].as_str().unwrap_or("")),
            crate::pg::quote::literal(table),
            crate::pg::quote::literal(parent),
            fk["validated"].as_bool().unwrap_or(true)
        ));
    }
    let sql = format!(
        "SELECT * FROM ({}) AS counts WHERE orphans > 0",
        parts.join("\nUNION ALL\n")
    );
    let rows = every_row(r, s, &sql, timeout).await?;
    let e = rows_expectation(&rows, CompareOp::Eq, 0);
    Ok((rows, vec![e]))
}

async fn row_counts(
    r: &mut Run<'_>,
    s: &PlanStep,
    b: &PlanBuiltin,
    def: &Builtin,
    timeout: Option<Duration>,
    output: &mut Map<String, Value>,
) -> Result<(Vec<Row>, Vec<Expectation>), Fail> {
    // Expected counts, by `schema.name` (quoted as format('%I.%I') would).
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    let from = from_step(r, b).map(|(id, out)| (id.to_string(), out.clone()));
    if let Some((id, out)) = &from {
        let Some(tables) = out.get("tables").and_then(Value::as_array) else {
            return Err(fail(
                format!("row_counts: steps.{id} has no table counts"),
                Some(
                    "`from` names a backup step or an earlier row_counts check that succeeded"
                        .into(),
                ),
            ));
        };
        for t in tables {
            let (schema, name) = (
                t["schema"].as_str().unwrap_or(""),
                t["name"].as_str().unwrap_or(""),
            );
            let q = format!("{}.{}", quote_if_needed(schema), quote_if_needed(name));
            expected.insert(q, t["rows"].as_i64().unwrap_or(0));
        }
    }
    let names: Vec<String> = match &b.tables {
        Some(list) => {
            let given: Vec<String> = list
                .iter()
                .map(|t| r.render(t).map(|(raw, _)| raw))
                .collect::<Result<_, _>>()
                .map_err(|e| Fail::new(StepStatus::Failed, e))?;
            let mut out = Vec::new();
            for (given, name) in regclasses(r, s, &given, timeout).await? {
                let Some(n) = name else {
                    return Err(fail(
                        format!("row_counts: table `{given}` does not exist"),
                        None,
                    ));
                };
                out.push(n);
            }
            out
        }
        None if !expected.is_empty() => expected.keys().cloned().collect(),
        None => query(r, s, def.sql, timeout)
            .await?
            .iter()
            .filter_map(|row| row.get("table").and_then(Value::as_str).map(str::to_string))
            // A migration tool's history grows with every migration: not data to judge.
            .filter(|t| !crate::history::is_tool_table(t))
            .collect(),
    };
    let counted = count_rows(r, s, &names, timeout).await?;
    let tolerance = b
        .args
        .get("tolerance")
        .map_or(0.0, |_| number_arg(b, "tolerance"));
    let mut rows = Vec::new();
    let mut off = 0;
    let mut tables = Vec::new();
    for (name, n) in &counted {
        let mut row = Map::new();
        row.insert("table".into(), Value::from(name.clone()));
        row.insert("rows".into(), n.map_or(Value::Null, Value::from));
        if let Some(&want) = expected.get(name) {
            row.insert("expected".into(), Value::from(want));
            // A table that is gone lost its rows: none, when it had none
            // (a migration that drops an empty table loses no data).
            let ok = match n {
                Some(got) => (got - want).abs() as f64 <= tolerance * want as f64,
                None => want == 0,
            };
            match n {
                Some(got) => row.insert("difference".into(), Value::from(got - want)),
                None => row.insert("gone".into(), Value::Bool(true)),
            };
            if !ok {
                off += 1;
            }
            row.insert("ok".into(), Value::Bool(ok));
        } else if n.is_none() {
            off += 1;
            row.insert("ok".into(), Value::Bool(false));
        }
        if let (Some(got), Some((schema, table))) = (n, split_qualified(name)) {
            tables.push(json!({ "schema": schema, "name": table, "rows": got }));
        }
        rows.push(row);
    }
    output.insert("tables".into(), Value::Array(tables));
    let e = expectation(
        "mismatches",
        CompareOp::Eq,
        Value::from(0),
        Value::from(off),
    );
    Ok((rows, vec![e]))
}

/// The exact row count of each table that exists; `None` for a name with
/// no table behind it. One statement counts them all, every row
/// ([`every_row`]). A plain table's own rows (`ONLY`), as a backup counts
/// them, since pg_dump copies each inheritance child on its own: counted
/// with its children, a parent compared with a backup's count differed by
/// their rows, and the check failed with nothing lost. A partitioned
/// table's rows are its partitions'.
async fn count_rows(
    r: &mut Run<'_>,
    s: &PlanStep,
    names: &[String],
    timeout: Option<Duration>,
) -> Result<BTreeMap<String, Option<i64>>, Fail> {
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let present: Vec<(String, String)> = relations(r, s, names, timeout)
        .await?
        .into_iter()
        .filter_map(|(name, found)| found.map(|(_, kind)| (name, kind)))
        .collect();
    let mut counted: BTreeMap<String, Option<i64>> =
        names.iter().map(|n| (n.clone(), None)).collect();
    if !present.is_empty() {
        let sql = present
            .iter()
            .map(|(n, kind)| {
                format!(
                    "SELECT {} AS \"table\", count(*) AS rows FROM {}{n}",
                    crate::pg::quote::literal(n),
                    if kind == "r" { "ONLY " } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join("\nUNION ALL\n");
        for row in every_row(r, s, &sql, timeout).await? {
            if let Some(t) = row["table"].as_str() {
                counted.insert(t.to_string(), row["rows"].as_i64());
            }
        }
    }
    Ok(counted)
}

/// [`query`] over every row of the tables it reads, with row-level
/// security off as pg_dump reads: a table whose policies would hide rows
/// from this role is an error, not a smaller count (or an orphan missed).
async fn every_row(
    r: &mut Run<'_>,
    s: &PlanStep,
    body: &str,
    timeout: Option<Duration>,
) -> Result<Vec<Row>, Fail> {
    query_after(r, s, "SET LOCAL row_security = off;", body, timeout)
        .await
        .map_err(|mut f| {
            if f.error.message.contains("row-level security") {
                f.error.hint = Some("this check reads every row, as pg_dump does: connect as a role that row-level security does not apply to (BYPASSRLS, or the table's owner when it is not FORCE ROW LEVEL SECURITY)".into());
            }
            f
        })
}

/// Each name with the relation `to_regclass` finds for it on the session's
/// search_path (`settings.search_path` included), always schema-qualified
/// and quoted as format('%I.%I') quotes (None: no such relation).
async fn regclasses(
    r: &mut Run<'_>,
    s: &PlanStep,
    names: &[String],
    timeout: Option<Duration>,
) -> Result<Vec<(String, Option<String>)>, Fail> {
    Ok(relations(r, s, names, timeout)
        .await?
        .into_iter()
        .map(|(given, found)| (given, found.map(|(name, _)| name)))
        .collect())
}

/// [`regclasses`], with each relation's `relkind`.
async fn relations(
    r: &mut Run<'_>,
    s: &PlanStep,
    names: &[String],
    timeout: Option<Duration>,
) -> Result<Vec<(String, Option<(String, String)>)>, Fail> {
    let sql = format!(
        "SELECT n AS given, c.name, c.kind \
         FROM unnest(ARRAY[{}]::text[]) AS n \
         LEFT JOIN LATERAL (SELECT format('%I.%I', ns.nspname, c.relname) AS name, c.relkind::text AS kind \
                            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace \
                            WHERE c.oid = to_regclass(n)) c ON true",
        names
            .iter()
            .map(|n| crate::pg::quote::literal(n))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(query(r, s, &sql, timeout)
        .await?
        .iter()
        .map(|row| {
            let found = row["name"].as_str().zip(row["kind"].as_str());
            (
                row["given"].as_str().unwrap_or_default().to_string(),
                found.map(|(name, kind)| (name.to_string(), kind.to_string())),
            )
        })
        .collect())
}

fn quote_if_needed(ident: &str) -> String {
    let plain = !ident.is_empty()
        && ident.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && ident
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        ident.to_string()
    } else {
        crate::pg::quote::ident(ident)
    }
}

/// `schema.name` from a quoted qualified name, unquoted.
fn split_qualified(q: &str) -> Option<(String, String)> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = q.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    match parts.as_slice() {
        [schema, name] => Some((schema.clone(), name.clone())),
        _ => None,
    }
}

async fn schema_matches(
    r: &mut Run<'_>,
    s: &PlanStep,
    b: &PlanBuiltin,
    timeout: Option<Duration>,
    output: &mut Map<String, Value>,
    details: &mut Value,
) -> Result<(Vec<Row>, Vec<Expectation>), Fail> {
    let found = query_after(
        r,
        s,
        crate::snapshot::DEFAULT_SEARCH_PATH_LOCAL,
        &crate::snapshot::full_sql(
            crate::pg::tools::major_of(&r.server_version).map_or(0, |m| m as i32 * 10_000),
        ),
        timeout,
    )
    .await?;
    let snap = crate::snapshot::Snapshot::from_rows(found.into_iter().map(|row| {
        let text = |k: &str| {
            row.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        (text("kind"), text("name"), text("def"))
    }));
    let hashes = snap.object_hashes();
    output.insert("hash".into(), Value::from(snap.hash.clone()));
    output.insert("objects".into(), json!(hashes));
    details["objects"] = Value::from(hashes.len());
    let from = from_step(r, b).map(|(id, out)| (id.to_string(), out.clone()));
    let expected = match (text_arg(r, b, "hash")?, &from) {
        (Some(h), _) => Some(h),
        (None, Some((id, out))) => Some(
            out.get("hash")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    fail(
                        format!("schema_matches: steps.{id} has no schema hash"),
                        Some("`from` names an earlier schema_matches check that succeeded".into()),
                    )
                })?,
        ),
        (None, None) => None,
    };
    let mut rows = Vec::new();
    if let Some((_, out)) = &from
        && let Some(before) = out
            .get("objects")
            .and_then(|o| serde_json::from_value::<BTreeMap<String, String>>(o.clone()).ok())
    {
        for (object, change) in crate::snapshot::diff(&before, &hashes) {
            rows.push(Map::from_iter([
                ("object".to_string(), Value::from(object)),
                ("change".to_string(), Value::from(change)),
            ]));
        }
    }
    let mut expectations = Vec::new();
    if let Some(want) = expected {
        expectations.push(expectation(
            "hash",
            CompareOp::Eq,
            Value::from(want),
            Value::from(snap.hash.clone()),
        ));
    }
    Ok((rows, expectations))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_fill_but_casts_stay() {
        assert_eq!(
            fill(
                "x < now() - :max_age::interval AND a = :ours",
                &[("max_age", "'5 s'".into()), ("ours", "'me'".into())]
            ),
            "x < now() - '5 s'::interval AND a = 'me'"
        );
        assert_eq!(fill("a::text, :unknown", &[]), "a::text, :unknown");
    }

    #[test]
    fn qualified_names_split_and_unquote() {
        assert_eq!(
            split_qualified("public.orders"),
            Some(("public".into(), "orders".into()))
        );
        assert_eq!(
            split_qualified("\"A.b\".\"x\"\"y\""),
            Some(("A.b".into(), "x\"y".into()))
        );
        assert_eq!(quote_if_needed("Orders"), "\"Orders\"");
        assert_eq!(quote_if_needed("orders_1"), "orders_1");
    }
}
