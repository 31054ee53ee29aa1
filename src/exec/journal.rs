//! The run journal: every run and every step, written to the target
//! database as it happens, in `runbook_journal.runs` and `runbook_journal.run_steps`.
//!
//! A step's row is written before the step starts and updated when it ends,
//! so a runner that is killed leaves a row that says `running`: `runbook
//! resume` and `runbook rollback` read from here, on any machine, what the
//! run did and which compensations it registered. The journal has its own
//! session: a step's `SET ROLE` or a dropped connection of the main session
//! does not stop it, and it is written outside the step's transaction, so a
//! rolled-back step still leaves its record.
//!
//! The schema is `runbook_journal`, not `runbook`: a role named `runbook`
//! (a common name for a tool's role) has `"$user"` first in its default
//! search_path, and every unqualified `CREATE TABLE` of its runbooks would
//! land in the journal's schema.
//!
//! The journal's schema is created on first use (docs/exec.md shows the
//! SQL). It is left out of schema snapshots, undo checks and backups: it
//! records runs, it is not the application's schema. A schema named
//! `runbook` that is not the journal is never touched: the journal is then
//! off, with a warning.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::undo::Baseline;
use crate::events::ErrorInfo;
use crate::pg::db::{self, Db};

/// The comment that marks the `runbook` schema as the journal's.
pub const COMMENT: &str = "runbook run journal";

/// What creates the journal: idempotent, serialised between runners.
pub const CREATE_SQL: &str = r#"SELECT pg_advisory_xact_lock(7226483614113521431);
CREATE SCHEMA IF NOT EXISTS runbook_journal;
COMMENT ON SCHEMA runbook_journal IS 'runbook run journal';
CREATE TABLE IF NOT EXISTS runbook_journal.runs (
    run_id text PRIMARY KEY,
    kind text NOT NULL DEFAULT 'exec',
    of_run text,
    runbook text NOT NULL,
    version text NOT NULL,
    file text NOT NULL,
    sha256 text NOT NULL,
    runner_version text NOT NULL,
    os_user text NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    params jsonb NOT NULL DEFAULT '{}',
    status text NOT NULL,
    exit_code integer,
    verdict text,
    failed_step text,
    resumes integer NOT NULL DEFAULT 0,
    baselines jsonb NOT NULL DEFAULT '[]',
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE TABLE IF NOT EXISTS runbook_journal.run_steps (
    run_id text NOT NULL REFERENCES runbook_journal.runs ON DELETE CASCADE,
    seq integer NOT NULL,
    phase text,
    step text NOT NULL,
    role text NOT NULL,
    for_step text,
    kind text NOT NULL,
    status text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    changed_nothing boolean NOT NULL DEFAULT false,
    partial boolean NOT NULL DEFAULT false,
    compensations jsonb NOT NULL DEFAULT '[]',
    compensated text,
    output jsonb NOT NULL DEFAULT '{}',
    error text,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (run_id, seq)
);"#;

/// The run row, as written at the start.
#[derive(Debug, Clone)]
pub(crate) struct RunRow {
    pub run_id: String,
    /// `exec` or `rollback`.
    pub kind: &'static str,
    pub of_run: Option<String>,
    pub runbook: String,
    pub version: String,
    pub file: String,
    pub sha256: String,
    /// Name to `{value, secret, origin}`, secrets redacted.
    pub params: Value,
}

/// One step's row, kept in memory too: a database recreated by a restore
/// gets the whole journal of this run written again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepRow {
    pub seq: i32,
    pub phase: Option<String>,
    pub step: String,
    pub role: String,
    pub for_step: Option<String>,
    pub kind: String,
    pub status: String,
    pub attempts: i32,
    pub changed_nothing: bool,
    pub partial: bool,
    pub compensations: Vec<String>,
    pub compensated: Option<String>,
    pub output: Value,
    pub error: Option<String>,
}

pub(crate) struct Journal {
    /// None: off (turned off, or it could not be written).
    db: Option<Db>,
    app: String,
    run: Option<RunRow>,
    steps: Vec<StepRow>,
    /// The last status, verdict and baselines written, to write again.
    status: (String, Option<i32>, Option<String>, Option<String>),
    baselines: Value,
    resumes: bool,
    /// Set while stepped away: how to come back.
    away: Option<crate::pg::db::Conn>,
}

/// Why the journal could not be read or written. A run says it in a
/// warning and goes on without its journal; `runbook runs` fails with it.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("could not connect: {}", .0.message)]
    Connect(ErrorInfo),
    #[error("could not connect again: {}", .0.message)]
    Reconnect(ErrorInfo),
    #[error("lost its session and could not reconnect: {}", .0.message)]
    SessionLost(ErrorInfo),
    #[error(
        "a schema named `runbook_journal` exists and is not runbook's journal; it is left alone"
    )]
    NotOurs,
    #[error("could not create it: {}", info(.0).message)]
    Create(#[source] tokio_postgres::Error),
    #[error("{}", info(.0).message)]
    Sql(#[source] tokio_postgres::Error),
}

fn info(e: &tokio_postgres::Error) -> ErrorInfo {
    db::error_info(e, None)
}

/// Whether the journal's tables are gone (a restore recreated the database).
fn missing(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == tokio_postgres::error::SqlState::UNDEFINED_TABLE
            || *c == tokio_postgres::error::SqlState::INVALID_SCHEMA_NAME
    })
}

impl Journal {
    /// No journal.
    pub(crate) fn off() -> Journal {
        Journal {
            db: None,
            app: String::new(),
            run: None,
            steps: Vec::new(),
            status: ("running".into(), None, None, None),
            baselines: json!([]),
            resumes: false,
            away: None,
        }
    }

    /// Open the journal on its own session and create it if needed.
    /// Err: why it is off (for a warning).
    pub(crate) async fn open(
        main: &Db,
        database: &str,
        app: &str,
    ) -> Result<Journal, JournalError> {
        let db = main
            .connect_to(database, app)
            .await
            .map_err(JournalError::Connect)?;
        ensure(&db).await?;
        let mut j = Journal::off();
        j.db = Some(db);
        j.app = app.to_string();
        Ok(j)
    }

    pub(crate) fn is_on(&self) -> bool {
        self.db.is_some()
    }

    /// Continue an earlier run's journal: its rows are kept, new ones follow.
    pub(crate) fn continue_from(&mut self, prior: &[StepRow]) {
        self.steps = prior.to_vec();
        self.resumes = true;
    }

    /// Run `sql` with text params; on a lost session reconnect once, on
    /// missing tables create them and write this run's rows again.
    async fn write(&mut self, sql: &str, params: &[Option<String>]) -> Result<(), JournalError> {
        let Some(db) = &self.db else { return Ok(()) };
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        match db.client.execute(sql, &refs).await {
            Ok(_) => Ok(()),
            Err(e) if missing(&e) => {
                ensure(db).await?;
                self.rewrite().await?;
                self.retry(sql, params).await
            }
            Err(e)
                if e.is_closed()
                    || db::classify(&e) == Some(crate::model::ErrorClass::Connection) =>
            {
                let app = self.app.clone();
                let db = self.db.as_mut().expect("checked above");
                db.reconnect(&app)
                    .await
                    .map_err(JournalError::SessionLost)?;
                ensure(db).await?;
                self.rewrite().await?;
                self.retry(sql, params).await
            }
            Err(e) => Err(JournalError::Sql(e)),
        }
    }

    async fn retry(&self, sql: &str, params: &[Option<String>]) -> Result<(), JournalError> {
        let Some(db) = &self.db else { return Ok(()) };
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        db.client
            .execute(sql, &refs)
            .await
            .map(|_| ())
            .map_err(JournalError::Sql)
    }

    /// Write the run row and every step row again (upserts).
    async fn rewrite(&self) -> Result<(), JournalError> {
        if let Some(r) = &self.run {
            self.retry(INSERT_RUN, &run_params(r)).await?;
            let (status, code, verdict, failed) = &self.status;
            self.retry(
                UPDATE_RUN,
                &[
                    Some(r.run_id.clone()),
                    Some(status.clone()),
                    code.map(|c| c.to_string()),
                    verdict.clone(),
                    failed.clone(),
                    Some(self.baselines.to_string()),
                ],
            )
            .await?;
            for s in &self.steps {
                self.retry(UPSERT_STEP, &step_params(&r.run_id, s)).await?;
            }
        }
        Ok(())
    }

    /// The run starts (or, resumed, starts again).
    pub(crate) async fn run_started(&mut self, row: RunRow) -> Result<(), JournalError> {
        let resumed = self.resumes;
        let id = row.run_id.clone();
        self.run = Some(row.clone());
        if resumed {
            self.write(
                RESUME_RUN,
                &[
                    Some(id),
                    Some(whoami()),
                    Some(hostname()),
                    Some(std::process::id().to_string()),
                ],
            )
            .await
        } else {
            self.write(INSERT_RUN, &run_params(&row)).await
        }
    }

    /// A step starts: its row says `running` until it ends. Returns its seq.
    pub(crate) async fn step_started(
        &mut self,
        mut row: StepRow,
    ) -> (i32, Result<(), JournalError>) {
        row.seq = self.steps.last().map_or(1, |s| s.seq + 1);
        let seq = row.seq;
        self.steps.push(row.clone());
        let Some(r) = &self.run else {
            return (seq, Ok(()));
        };
        let params = step_params(&r.run_id, &row);
        (seq, self.write(UPSERT_STEP, &params).await)
    }

    /// A step ended.
    pub(crate) async fn step_finished(
        &mut self,
        seq: i32,
        update: impl FnOnce(&mut StepRow),
    ) -> Result<(), JournalError> {
        let Some(row) = self.steps.iter_mut().find(|s| s.seq == seq) else {
            return Ok(());
        };
        update(row);
        let row = row.clone();
        let Some(r) = &self.run else { return Ok(()) };
        let params = step_params(&r.run_id, &row);
        self.write(UPSERT_STEP, &params).await
    }

    /// A main step's compensation ran (or was skipped): `status` says how.
    pub(crate) async fn compensated(
        &mut self,
        step: &str,
        status: &str,
    ) -> Result<(), JournalError> {
        let Some(seq) = self
            .steps
            .iter()
            .rev()
            .find(|s| s.step == step && s.role == "main")
            .map(|s| s.seq)
        else {
            return Ok(());
        };
        self.step_finished(seq, |r| r.compensated = Some(status.to_string()))
            .await
    }

    /// Mark a step of another run compensated (`runbook rollback`).
    pub(crate) async fn compensated_in(
        &mut self,
        run_id: &str,
        seq: i32,
        status: &str,
    ) -> Result<(), JournalError> {
        self.write(
            "UPDATE runbook_journal.run_steps SET compensated = $3 WHERE run_id = $1 AND seq = $2::text::int",
            &[Some(run_id.into()), Some(seq.to_string()), Some(status.into())],
        )
        .await
    }

    /// The states undo checks compare against, by phase.
    pub(crate) async fn baselines(&mut self, b: &[(String, Baseline)]) -> Result<(), JournalError> {
        self.baselines = serde_json::to_value(b).unwrap_or_else(|_| json!([]));
        self.update_run().await
    }

    /// The run ended.
    pub(crate) async fn run_finished(
        &mut self,
        status: &str,
        exit_code: u8,
        verdict: &str,
        failed_step: Option<&str>,
    ) -> Result<(), JournalError> {
        self.status = (
            status.into(),
            Some(i32::from(exit_code)),
            Some(verdict.into()),
            failed_step.map(str::to_string),
        );
        self.update_run().await
    }

    async fn update_run(&mut self) -> Result<(), JournalError> {
        let Some(r) = &self.run else { return Ok(()) };
        let (status, code, verdict, failed) = self.status.clone();
        let params = [
            Some(r.run_id.clone()),
            Some(status),
            code.map(|c| c.to_string()),
            verdict,
            failed,
            Some(self.baselines.to_string()),
        ];
        self.write(UPDATE_RUN, &params).await
    }

    /// Stop writing (after a failure was reported).
    pub(crate) fn turn_off(&mut self) {
        self.db = None;
    }

    /// Leave the database for a moment: `CREATE DATABASE ... TEMPLATE`
    /// needs its source to have no sessions at all.
    pub(crate) fn step_away(&mut self) {
        if let Some(db) = self.db.take() {
            self.away = Some(db.config().clone());
        }
    }

    /// Come back after [`Journal::step_away`].
    pub(crate) async fn come_back(&mut self) -> Result<(), JournalError> {
        let Some(config) = self.away.take() else {
            return Ok(());
        };
        let db = Db::login_again(config, &self.app)
            .await
            .map_err(JournalError::Reconnect)?;
        self.db = Some(db);
        Ok(())
    }

    /// The journal session's application_name, which other sessions on the
    /// database are told apart from.
    pub(crate) fn app(&self) -> &str {
        &self.app
    }
}

const INSERT_RUN: &str = "INSERT INTO runbook_journal.runs (run_id, kind, of_run, runbook, version, file, sha256, runner_version, os_user, host, pid, params, status)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::text::int, $12::text::jsonb, 'running')
ON CONFLICT (run_id) DO NOTHING";

const RESUME_RUN: &str = "UPDATE runbook_journal.runs SET status = 'running', resumes = resumes + 1, os_user = $2, host = $3,
    pid = $4::text::int, exit_code = NULL, verdict = NULL, finished_at = NULL, updated_at = now()
WHERE run_id = $1";

const UPDATE_RUN: &str = "UPDATE runbook_journal.runs SET status = $2, exit_code = $3::text::int, verdict = $4, failed_step = $5,
    baselines = $6::text::jsonb, updated_at = now(),
    finished_at = CASE WHEN $2 = 'running' THEN NULL ELSE now() END
WHERE run_id = $1";

const UPSERT_STEP: &str = "INSERT INTO runbook_journal.run_steps (run_id, seq, phase, step, role, for_step, kind, status, attempts,
    changed_nothing, partial, compensations, compensated, output, error, finished_at)
VALUES ($1, $2::text::int, $3, $4, $5, $6, $7, $8, $9::text::int, $10::text::bool, $11::text::bool,
    $12::text::jsonb, $13, $14::text::jsonb, $15, CASE WHEN $8 = 'running' THEN NULL ELSE now() END)
ON CONFLICT (run_id, seq) DO UPDATE SET status = excluded.status, attempts = excluded.attempts,
    changed_nothing = excluded.changed_nothing, partial = excluded.partial,
    compensated = excluded.compensated, output = excluded.output, error = excluded.error,
    finished_at = excluded.finished_at";

fn run_params(r: &RunRow) -> Vec<Option<String>> {
    vec![
        Some(r.run_id.clone()),
        Some(r.kind.to_string()),
        r.of_run.clone(),
        Some(r.runbook.clone()),
        Some(r.version.clone()),
        Some(r.file.clone()),
        Some(r.sha256.clone()),
        Some(env!("CARGO_PKG_VERSION").to_string()),
        Some(whoami()),
        Some(hostname()),
        Some(std::process::id().to_string()),
        Some(r.params.to_string()),
    ]
}

fn step_params(run_id: &str, s: &StepRow) -> Vec<Option<String>> {
    vec![
        Some(run_id.to_string()),
        Some(s.seq.to_string()),
        s.phase.clone(),
        Some(s.step.clone()),
        Some(s.role.clone()),
        s.for_step.clone(),
        Some(s.kind.clone()),
        Some(s.status.clone()),
        Some(s.attempts.to_string()),
        Some(s.changed_nothing.to_string()),
        Some(s.partial.to_string()),
        Some(json!(s.compensations).to_string()),
        s.compensated.clone(),
        Some(s.output.to_string()),
        s.error.clone(),
    ]
}

/// Create the journal if it is not there. A `runbook` schema that is not
/// the journal's is refused.
async fn ensure(db: &Db) -> Result<(), JournalError> {
    let row = db
        .client
        .query_opt(
            "SELECT coalesce(obj_description(oid, 'pg_namespace'), '') FROM pg_catalog.pg_namespace WHERE nspname = 'runbook_journal'",
            &[],
        )
        .await
        .map_err(JournalError::Sql)?;
    if let Some(r) = row {
        let comment: String = r.get(0);
        if comment != COMMENT {
            return Err(JournalError::NotOurs);
        }
        let tables: i64 = db
            .client
            .query_one(
                "SELECT count(*) FROM pg_catalog.pg_class WHERE oid IN (to_regclass('runbook_journal.runs'), to_regclass('runbook_journal.run_steps'))",
                &[],
            )
            .await
            .map_err(JournalError::Sql)?
            .get(0);
        if tables == 2 {
            return Ok(());
        }
    }
    if let Err(e) = db
        .client
        .batch_execute(&format!("BEGIN; {CREATE_SQL} COMMIT;"))
        .await
    {
        // The failed block left the session in an aborted transaction.
        let _ = db.client.batch_execute("ROLLBACK").await;
        return Err(JournalError::Create(e));
    }
    Ok(())
}

/// Who runs this: `$USER`, `$LOGNAME`, else the effective user's name.
pub(crate) use crate::who::{hostname, whoami};

/// A run as the journal has it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub run_id: String,
    pub kind: String,
    pub of_run: Option<String>,
    pub runbook: String,
    pub version: String,
    pub file: String,
    pub sha256: String,
    pub runner_version: String,
    pub os_user: String,
    pub host: String,
    pub pid: i32,
    pub params: Value,
    pub status: String,
    pub exit_code: Option<i32>,
    pub verdict: Option<String>,
    pub failed_step: Option<String>,
    pub resumes: i32,
    pub started_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
    #[serde(skip)]
    pub baselines: Value,
    pub steps: Vec<StepRecord>,
}

/// A step as the journal has it.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    #[serde(flatten)]
    pub row: StepRow,
    pub started_at: String,
    pub finished_at: Option<String>,
}

const RUN_COLUMNS: &str =
    "run_id, kind, of_run, runbook, version, file, sha256, runner_version, os_user, host, pid,
    params::text, status, exit_code, verdict, failed_step, resumes,
    to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
    to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
    to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), baselines::text";

fn run_record(r: &tokio_postgres::Row) -> RunRecord {
    let json =
        |i: usize| serde_json::from_str::<Value>(&r.get::<_, String>(i)).unwrap_or(Value::Null);
    RunRecord {
        run_id: r.get(0),
        kind: r.get(1),
        of_run: r.get(2),
        runbook: r.get(3),
        version: r.get(4),
        file: r.get(5),
        sha256: r.get(6),
        runner_version: r.get(7),
        os_user: r.get(8),
        host: r.get(9),
        pid: r.get(10),
        params: json(11),
        status: r.get(12),
        exit_code: r.get(13),
        verdict: r.get(14),
        failed_step: r.get(15),
        resumes: r.get(16),
        started_at: r.get(17),
        updated_at: r.get(18),
        finished_at: r.get(19),
        baselines: json(20),
        steps: Vec::new(),
    }
}

/// Whether the journal exists in the database `client` is connected to.
async fn exists(client: &tokio_postgres::Client) -> Result<bool, JournalError> {
    client
        .query_one(
            "SELECT to_regclass('runbook_journal.runs') IS NOT NULL AND to_regclass('runbook_journal.run_steps') IS NOT NULL",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .map_err(JournalError::Sql)
}

/// The newest runs, newest first.
pub async fn list(
    client: &tokio_postgres::Client,
    limit: i64,
) -> Result<Vec<RunRecord>, JournalError> {
    if !exists(client).await? {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            &format!("SELECT {RUN_COLUMNS} FROM runbook_journal.runs ORDER BY started_at DESC, run_id DESC LIMIT $1"),
            &[&limit],
        )
        .await
        .map_err(JournalError::Sql)?;
    Ok(rows.iter().map(run_record).collect())
}

/// One run with its steps, in the order they started.
pub async fn show(
    client: &tokio_postgres::Client,
    run_id: &str,
) -> Result<Option<RunRecord>, JournalError> {
    if !exists(client).await? {
        return Ok(None);
    }
    let Some(row) = client
        .query_opt(
            &format!("SELECT {RUN_COLUMNS} FROM runbook_journal.runs WHERE run_id = $1"),
            &[&run_id],
        )
        .await
        .map_err(JournalError::Sql)?
    else {
        return Ok(None);
    };
    let mut run = run_record(&row);
    let steps = client
        .query(
            "SELECT seq, phase, step, role, for_step, kind, status, attempts, changed_nothing, partial,
                compensations::text, compensated, output::text, error,
                to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
             FROM runbook_journal.run_steps WHERE run_id = $1 ORDER BY seq",
            &[&run_id],
        )
        .await
        .map_err(JournalError::Sql)?;
    run.steps = steps
        .iter()
        .map(|r| StepRecord {
            row: StepRow {
                seq: r.get(0),
                phase: r.get(1),
                step: r.get(2),
                role: r.get(3),
                for_step: r.get(4),
                kind: r.get(5),
                status: r.get(6),
                attempts: r.get(7),
                changed_nothing: r.get(8),
                partial: r.get(9),
                compensations: serde_json::from_str(&r.get::<_, String>(10)).unwrap_or_default(),
                compensated: r.get(11),
                output: serde_json::from_str(&r.get::<_, String>(12)).unwrap_or(Value::Null),
                error: r.get(13),
            },
            started_at: r.get(14),
            finished_at: r.get(15),
        })
        .collect();
    Ok(Some(run))
}

/// The baselines a run recorded, by phase.
pub(crate) fn baselines_of(run: &RunRecord) -> Vec<(String, Baseline)> {
    serde_json::from_value(run.baselines.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    /// Snapshots, undo checks and backups leave the journal out by this
    /// comment, written into their SQL.
    #[test]
    fn the_comment_that_marks_the_journal_is_the_one_snapshots_skip() {
        assert!(super::CREATE_SQL.contains(&format!("'{}'", super::COMMENT)));
        assert!(crate::snapshot::full_sql(150_000).contains(&format!("'{}'", super::COMMENT)));
    }
}
