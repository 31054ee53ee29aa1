//! The server restarts (a fast shutdown, as `pg_ctl restart -m fast` does)
//! in the middle of a step. A cluster of its own: no other test's sessions
//! are cut. A step that retries on `connection` goes on after a reconnect;
//! one that does not fails, and its phase's compensations run on a new
//! session, with the run lock and the journal taken up again.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runbook::ephemeral::Ephemeral;

const HEAD: &str =
    "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: restart, version: 1 }\n";

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

/// Run `body` and restart the server once its `sleep` statement runs.
fn run_through_a_restart(
    cluster: &mut Ephemeral,
    db: &str,
    body: &str,
) -> (i32, serde_json::Value, String) {
    psql(&cluster.url("postgres"), &format!("CREATE DATABASE {db}"));
    let url = cluster.url(db);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("runbook.yml");
    std::fs::write(&file, format!("{HEAD}{body}")).unwrap();
    let reports = dir.path().join("reports");
    let child = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .arg("exec")
        .arg(&file)
        .args([
            "--database-url",
            &url,
            "--progress",
            "never",
            "--report-dir",
        ])
        .arg(&reports)
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while psql(
        &url,
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(3)%' AND state = 'active' AND pid <> pg_backend_pid()",
    ) != "1"
    {
        assert!(Instant::now() < deadline, "the step never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.restart().unwrap();
    let out = child.wait_with_output().unwrap();
    let report = serde_json::from_str(
        &std::fs::read_to_string(reports.join("report.json")).unwrap_or_default(),
    )
    .unwrap_or(serde_json::Value::Null);
    (
        out.status.code().unwrap_or(-1),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_server_restart_mid_step_is_survived_or_undone_on_a_new_session() {
    let mut cluster = Ephemeral::start().unwrap();

    // Retried on `connection`: the run reconnects and finishes.
    let (code, report, stderr) = run_through_a_restart(
        &mut cluster,
        "retried",
        r#"phases:
  - id: expand
    kind: expand
    steps:
      - id: create
        sql: CREATE TABLE r1 (n int);
        rollback: { id: drop_r1, sql: DROP TABLE IF EXISTS r1; }
      - id: slow
        retry: { attempts: 3, on: [connection], backoff: { initial: 100ms } }
        sql: SELECT pg_sleep(3);
      - id: after
        sql: INSERT INTO r1 VALUES (1);
"#,
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["run"]["status"], "succeeded");
    let url = cluster.url("retried");
    assert_eq!(psql(&url, "SELECT count(*) FROM r1"), "1");
    // The journal was taken up again on a new session: it says how the run ended.
    assert_eq!(
        psql(
            &url,
            "SELECT status || ':' || (SELECT string_agg(step || '=' || status, ',' ORDER BY seq) FROM runbook_journal.run_steps) FROM runbook_journal.runs"
        ),
        "succeeded:create=succeeded,slow=succeeded,after=succeeded"
    );

    // Not retried: the step fails, the compensation runs after a reconnect
    // instead of failing in 0 ms on the dead session, and the undo is
    // verified.
    let (code, report, stderr) = run_through_a_restart(
        &mut cluster,
        "undone",
        r#"phases:
  - id: expand
    kind: expand
    steps:
      - id: create
        sql: CREATE TABLE r2 (n int);
        rollback: { id: drop_r2, sql: DROP TABLE IF EXISTS r2; }
      - id: slow
        sql: SELECT pg_sleep(3);
"#,
    );
    assert_eq!(code, 2, "{stderr}\n{report}");
    assert_eq!(report["run"]["status"], "rolled_back");
    assert!(stderr.contains("reconnect"), "{stderr}");
    let url = cluster.url("undone");
    assert_eq!(psql(&url, "SELECT to_regclass('r2') IS NULL"), "t");
    assert_eq!(
        psql(&url, "SELECT status FROM runbook_journal.runs"),
        "rolled_back"
    );
}
