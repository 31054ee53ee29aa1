//! `runbook exec` against a real PostgreSQL, a fresh database per test:
//! every step kind on its success and failure paths, rollback order and
//! branches, retries on real lock timeouts, server-side cancellation,
//! approvals, secrets, interruption, and the reports.

mod support;

use std::time::{Duration, Instant};

use support::{Case, Db, hold_lock};

const HEAD: &str = "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: t, version: 1 }\n";

fn runbook(body: &str) -> String {
    format!("{HEAD}{body}")
}

#[test]
fn every_step_kind_succeeds_and_later_steps_read_outputs() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        r#"phases:
  - id: main
    kind: custom
    steps:
      - id: make
        sql: CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 5);
      - id: count
        check:
          query: SELECT count(*) AS n, max(n) AS top, true AS ok, NULL::text AS nothing FROM t
          expect: { rows: 1, n: { eq: 5 }, top: { between: [1, 5] }, ok: true, nothing: null }
          assert: ["row.n == 5", "rows | length == 1"]
      - id: echo
        shell: echo "n={{ steps.count.row.n }}"
      - id: argv
        shell:
          command: ["sh", "-c", "echo $GREETING from $PGDATABASE; echo oops >&2; exit 3"]
          env: { GREETING: hello }
          expect_exit: [3]
      - id: nap
        sleep: 50ms
      - id: use_shell_output
        sql: INSERT INTO t VALUES ({{ steps.echo.stdout | replace("n=", "") }} * 10);
"#,
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.sql("SELECT max(n) FROM t"), "50");
    assert_eq!(run.step("make")["rows_affected"], 5);
    assert_eq!(
        run.step("count")["check"]["expectations"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert_eq!(run.step("echo")["stdout_tail"], "n=5");
    assert_eq!(
        run.step("argv")["stdout_tail"],
        format!("hello from {}", db.name)
    );
    assert_eq!(run.step("argv")["stderr_tail"], "oops");
    assert_eq!(run.step("argv")["exit_code"], 3);
    assert_eq!(run.report["run"]["status"], "succeeded");
    assert_eq!(run.report["run"]["verdict"], "SUCCEEDED");
}

#[test]
fn a_failing_sql_step_reports_the_server_error_in_full_and_rolls_back() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        r#"phases:
  - id: expand
    kind: expand
    steps:
      - id: create
        sql: CREATE TABLE t (n int);
        rollback:
          id: drop
          sql: DROP TABLE IF EXISTS t;
      - id: broken
        sql: |
          INSERT INTO t VALUES (1);
          INSERT INTO t VALUES ('x');
"#,
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    // The failed step's transaction left nothing, and the rollback dropped the table.
    assert_eq!(db.sql("SELECT to_regclass('t') IS NULL"), "t");
    let e = &run.step("broken")["error"];
    assert_eq!(e["sqlstate"], "22P02");
    assert_eq!(e["message"], "invalid input syntax for type integer: \"x\"");
    // The position maps back to the runbook: line 13, on the 'x'.
    // Line 16 of the file, column 33: the 'x'.
    assert_eq!(e["position"], 49);
    let file = case.file.display().to_string();
    assert_eq!(e["location"], format!("{file}:16:33"));
    assert_eq!(run.step("create")["status"], "rolled_back");
    assert_eq!(run.step("drop")["status"], "succeeded");
    assert_eq!(
        run.report["run"]["verdict"],
        "FAILED at expand.broken: rolled back cleanly; the schema is verified equal to before the run; rows were not compared (`settings.verify_undo` names no table)"
    );
    assert!(
        run.stderr.contains("invalid input syntax for type integer"),
        "{}",
        run.stderr
    );
}

/// A step that sets the session's search_path (as pg_dump's output does)
/// does not make the schema look changed: the server writes names
/// qualified by the search_path, and before, the snapshot after the
/// rollback qualified every name the one before the run did not, so a
/// clean rollback was reported as not verified (exit 4). The schema check
/// of a `check` step reads it the same way.
#[test]
fn a_step_that_sets_the_search_path_does_not_make_the_schema_differ() {
    let db = Db::fresh();
    db.sql("CREATE TABLE t (id serial PRIMARY KEY); CREATE VIEW v AS SELECT id FROM t;");
    let case = Case::new(&runbook(
        r#"phases:
  - id: expand
    kind: expand
    steps:
      - id: schema_before
        check: { builtin: schema_matches }
      - id: path
        sql: SELECT pg_catalog.set_config('search_path', '', false);
      - id: snapshot_after
        snapshot: { save: after.json }
      - id: schema_after
        check: { builtin: schema_matches, from: steps.schema_before }
      - id: add
        sql: CREATE TABLE public.t2 (id int);
        rollback:
          id: drop
          sql: DROP TABLE public.t2;
      - id: broken
        sql: SELECT 1/0;
"#,
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        run.step("schema_after")["status"],
        "succeeded",
        "{}",
        run.stderr
    );
    let saved = std::fs::read_to_string(case.dir.path().join("after.json")).unwrap();
    assert!(
        saved.contains("SELECT t.id") && saved.contains("FROM t;"),
        "names as the session's default search_path writes them: {saved}"
    );
    assert_eq!(
        run.report["run"]["verdict"],
        "FAILED at expand.broken: rolled back cleanly; the schema is verified equal to before the run; rows were not compared (`settings.verify_undo` names no table)"
    );
}

#[test]
fn a_failed_check_records_expected_against_actual() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        r#"phases:
  - id: verify
    kind: verify
    steps:
      - id: soft
        check:
          query: SELECT 3 AS n
          expect: { n: 4 }
          severity: warn
      - id: hard
        check:
          query: SELECT 3 AS n, 'b' AS s
          expect: { n: { gte: 10 }, s: { in: [a, b] }, rows: 1 }
          assert: ["row.n > 5"]
"#,
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(run.step("soft")["status"], "failed");
    let hard = run.step("hard");
    assert_eq!(
        hard["error"]["message"],
        "expected n gte 10, got 3; assert `row.n > 5` was false"
    );
    let exp = &hard["check"]["expectations"];
    assert_eq!(exp[0]["expected"], 10);
    assert_eq!(exp[0]["actual"], 3);
    assert_eq!(exp[0]["passed"], false);
    assert_eq!(exp[1]["passed"], true);
    assert!(
        run.report["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("check `soft` failed (severity warn)")
    );
    let md = std::fs::read_to_string(run.dir.join("report.md")).unwrap();
    assert!(md.contains("| n | gte | `10` | `3` | ❌ |"), "{md}");
}

#[test]
fn a_preflight_failure_exits_1_and_changes_nothing() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        r#"phases:
  - id: preflight
    kind: preflight
    steps:
      - id: empty_db
        check:
          query: SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public'
          expect: { n: 1 }
  - id: expand
    kind: expand
    steps:
      - id: create
        sql: CREATE TABLE t (n int);
"#,
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(db.sql("SELECT to_regclass('t') IS NULL"), "t");
    assert_eq!(run.step("create")["status"], "not_run");
    assert_eq!(run.report["phases"][1]["status"], "not_run");
}

#[test]
fn a_failing_shell_step_keeps_its_output_tail() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        r#"phases:
  - id: main
    kind: custom
    steps:
      - id: fails
        shell: "for i in 1 2 3; do echo line $i; done; echo bad thing >&2; exit 7"
"#,
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    let s = run.step("fails");
    assert_eq!(s["exit_code"], 7);
    assert_eq!(s["error"]["message"], "exited with code 7, expected 0");
    assert_eq!(s["stdout_tail"], "line 1\nline 2\nline 3");
    assert_eq!(s["stderr_tail"], "bad thing");
}

#[test]
fn a_shell_timeout_kills_the_whole_process_group() {
    let db = Db::fresh();
    let marker = tempfile::tempdir().unwrap();
    let file = marker.path().join("child-survived");
    let case = Case::new(&runbook(&format!(
        r#"phases:
  - id: main
    kind: custom
    steps:
      - id: slow
        timeout: 500ms
        shell: "(sleep 2; touch {}) & sleep 30"
"#,
        file.display()
    )));
    let started = Instant::now();
    let run = case.exec(&db.url, &[]);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(run.step("slow")["status"], "timed_out");
    std::thread::sleep(Duration::from_secs(3));
    assert!(!file.exists(), "a child of the timed-out step kept running");
}

#[test]
fn a_sleep_longer_than_its_timeout_times_out() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        "phases:\n  - id: main\n    kind: custom\n    steps:\n      - id: nap\n        timeout: 100ms\n        sleep: 10s\n",
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 1);
    assert_eq!(run.step("nap")["status"], "timed_out");
    assert_eq!(run.step("nap")["error"]["message"], "timed out after 100ms");
}

/// Three steps, each logging its undo into a table; the fourth fails.
/// A database with the `log` table that [`logged_steps`] writes to, made
/// before the run, so that an undo of the run can be verified complete.
fn log_db() -> Db {
    let db = Db::fresh();
    db.sql("CREATE TABLE log (n serial, what text)");
    db
}

fn logged_steps(on_failure: &str, fourth: &str) -> String {
    let mut s = String::from("phases:\n");
    s.push_str(&format!(
        "  - id: expand\n    kind: expand\n    on_failure: {on_failure}\n    steps:\n"
    ));
    for i in 1..=3 {
        s.push_str(&format!(
            "      - id: s{i}\n        sql: INSERT INTO log (what) VALUES ('do {i}');\n        rollback:\n          id: undo_{i}\n          sql: INSERT INTO log (what) VALUES ('undo {i}');\n"
        ));
    }
    s.push_str(fourth);
    s.push_str("      - id: s5\n        sql: INSERT INTO log (what) VALUES ('do 5');\n");
    runbook(&s)
}

const FAILING_FOURTH: &str = "      - id: s4\n        sql: SELECT 1/0;\n";

#[test]
fn rollback_runs_compensations_newest_first() {
    let db = log_db();
    let run = Case::new(&logged_steps("rollback", FAILING_FOURTH)).exec(&db.url, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT string_agg(what, ',' ORDER BY n) FROM log"),
        "do 1,do 2,do 3,undo 3,undo 2,undo 1"
    );
    for i in 1..=3 {
        assert_eq!(run.step(&format!("s{i}"))["status"], "rolled_back");
        assert_eq!(
            run.step(&format!("s{i}"))["compensation"]["status"],
            "succeeded"
        );
    }
    assert_eq!(run.step("s4")["status"], "failed");
    assert_eq!(run.step("s5")["status"], "not_run");
    assert_eq!(run.report["branches"][0]["scope"], "phase");
    assert_eq!(run.report["branches"][0]["clean"], true);
}

#[test]
fn abort_undoes_nothing_and_says_a_person_must_look() {
    let db = log_db();
    let run = Case::new(&logged_steps("abort", FAILING_FOURTH)).exec(&db.url, &[]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(run.report["run"]["status"], "not_undone");
    assert_eq!(
        db.sql("SELECT string_agg(what, ',' ORDER BY n) FROM log"),
        "do 1,do 2,do 3"
    );
    assert!(
        run.report["run"]["verdict"]
            .as_str()
            .unwrap()
            .contains("aborted without rollback")
    );
}

#[test]
fn continue_records_the_failure_and_goes_on() {
    let db = log_db();
    let run = Case::new(&logged_steps("continue", FAILING_FOURTH)).exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT string_agg(what, ',' ORDER BY n) FROM log"),
        "do 1,do 2,do 3,do 5"
    );
    assert_eq!(run.step("s4")["status"], "failed");
    assert_eq!(run.report["phases"][0]["status"], "failed");
    assert!(
        run.report["run"]["verdict"]
            .as_str()
            .unwrap()
            .contains("1 tolerated failure")
    );
}

#[test]
fn a_branch_runs_instead_of_compensations() {
    let db = log_db();
    let branch = "\n      - id: branch_a\n        sql: INSERT INTO log (what) VALUES ('branch a');\n      - id: branch_b\n        sql: INSERT INTO log (what) VALUES ('branch b');";
    let run = Case::new(&logged_steps(branch, FAILING_FOURTH)).exec(&db.url, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT string_agg(what, ',' ORDER BY n) FROM log"),
        "do 1,do 2,do 3,branch a,branch b"
    );
    assert_eq!(run.report["branches"][0]["scope"], "phase_branch");
    assert_eq!(run.step("branch_b")["role"], "phase_branch");
}

#[test]
fn a_failing_compensation_does_not_stop_the_others_and_exits_4() {
    let db = log_db();
    let yaml = logged_steps("rollback", FAILING_FOURTH).replace(
        "sql: INSERT INTO log (what) VALUES ('undo 2');",
        "sql: INSERT INTO no_such_table VALUES (1);",
    );
    let run = Case::new(&yaml).exec(&db.url, &[]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT string_agg(what, ',' ORDER BY n) FROM log"),
        "do 1,do 2,do 3,undo 3,undo 1"
    );
    assert_eq!(run.step("s2")["status"], "compensation_failed");
    assert_eq!(run.report["run"]["status"], "rollback_failed");
    assert!(
        run.report["run"]["verdict"]
            .as_str()
            .unwrap()
            .contains("ROLLBACK FAILED; a person must act")
    );
}

#[test]
fn runbook_on_failure_and_finally_run_and_see_the_outcome() {
    let db = log_db();
    let mut yaml = logged_steps("rollback", FAILING_FOURTH);
    yaml.push_str(
        r#"on_failure:
  - id: page
    sql: INSERT INTO log (what) VALUES ('page oncall');
finally:
  - id: record
    sql: INSERT INTO log (what) VALUES ('finally {{ run.status }} at {{ run.failed_step }}');
"#,
    );
    let run = Case::new(&yaml).exec(&db.url, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT string_agg(what, ',' ORDER BY n) FROM log WHERE n > 6"),
        "page oncall,finally rolled_back at expand.s4"
    );
    assert_eq!(run.report["branches"][1]["scope"], "on_failure");
    assert_eq!(run.report["finally"][0]["status"], "succeeded");

    // On success, on_failure stays silent and finally still runs.
    let db = log_db();
    let ok = yaml.replace("SELECT 1/0;", "SELECT 1;");
    let run = Case::new(&ok).exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT string_agg(what, ',' ORDER BY n) FROM log WHERE what NOT LIKE 'do %'"),
        "finally succeeded at"
    );
}

#[test]
fn a_lock_timeout_is_retried_until_the_lock_is_released() {
    let db = Db::fresh();
    db.sql("CREATE TABLE busy (n int)");
    // Another session holds the table for about two seconds.
    let holder = hold_lock(&db, "busy", "ACCESS EXCLUSIVE", 2);
    let case = Case::new(&runbook(
        r#"settings: { lock_timeout: 200ms }
phases:
  - id: expand
    kind: expand
    steps:
      - id: alter
        retry: { attempts: 20, backoff: { initial: 200ms, factor: 1, max: 200ms }, on: [lock_timeout] }
        sql: ALTER TABLE busy ADD COLUMN note text;
"#,
    ));
    let run = case.exec(&db.url, &[]);
    let mut holder = holder;
    holder.wait().unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let attempts = run.step("alter")["attempts"].as_array().unwrap().clone();
    assert!(attempts.len() >= 2, "{attempts:?}");
    for a in &attempts[..attempts.len() - 1] {
        assert_eq!(a["error"]["sqlstate"], "55P03");
        assert_eq!(a["error"]["class"], "lock_timeout");
    }
    assert!(attempts.last().unwrap()["error"].is_null());
    assert_eq!(db.sql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'busy' AND column_name = 'note'"), "1");
    assert!(run.events().iter().any(|e| e["event"] == "step_retry"));
}

#[test]
fn errors_not_listed_in_retry_on_are_not_retried() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        "phases:\n  - id: main\n    kind: custom\n    steps:\n      - id: bad\n        retry: { attempts: 5, on: [lock_timeout] }\n        sql: SELECT 1/0;\n",
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 1);
    assert_eq!(run.step("bad")["attempts"].as_array().unwrap().len(), 1);
}

#[test]
fn a_timed_out_statement_is_cancelled_on_the_server() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        r#"phases:
  - id: main
    kind: custom
    steps:
      - id: slow
        timeout: 500ms
        sql: SELECT pg_sleep(60) AS marker_for_test;
"#,
    ));
    let started = Instant::now();
    let run = case.exec(&db.url, &[]);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.step("slow")["status"], "timed_out");
    // A dropped connection would leave pg_sleep running on the server.
    assert_eq!(
        db.sql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%marker_for_test%' AND pid <> pg_backend_pid()"),
        "0"
    );
}

#[test]
fn a_check_cannot_write() {
    let db = Db::fresh();
    db.sql("CREATE SEQUENCE s; CREATE TABLE t (n int)");
    let case = Case::new(&runbook(
        r#"phases:
  - id: verify
    kind: verify
    steps:
      - id: sneaky
        check: SELECT nextval('s') AS n
"#,
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let e = &run.step("sneaky")["error"];
    assert_eq!(e["sqlstate"], "25006");
    assert_eq!(
        e["message"],
        "cannot execute nextval() in a read-only transaction"
    );
    assert_eq!(db.sql("SELECT last_value FROM s"), "1");
    assert_eq!(db.sql("SELECT is_called FROM s"), "f");
}

fn gated() -> String {
    runbook(
        r#"phases:
  - id: expand
    kind: expand
    steps:
      - id: create
        sql: CREATE TABLE t (n int);
  - id: contract
    kind: contract
    # One person: the DROP makes the risk high, which would ask for two
    # (tests/control.rs tests that).
    approval: { prompt: "Drop it?", approvers: 1 }
    steps:
      - id: drop
        sql: DROP TABLE t;
finally:
  - id: note
    shell: "true"
"#,
    )
}

#[test]
fn an_approval_not_given_exits_6_before_the_phase() {
    let db = Db::fresh();
    let case = Case::new(&gated());
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 6, "{}", run.stderr);
    assert_eq!(db.sql("SELECT to_regclass('t') IS NOT NULL"), "t");
    assert!(
        !run.events()
            .iter()
            .any(|e| e["event"] == "step_started" && e["step"] == "drop"),
        "the compensation ran"
    );
    assert_eq!(run.report["phases"][1]["status"], "not_approved");
    assert_eq!(run.report["finally"][0]["status"], "succeeded");
    assert!(
        run.stderr.contains(
            "phase contract NOT APPROVED: no terminal to ask; pass --approve contract or --yes"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn an_approval_given_by_flag_is_recorded() {
    let db = Db::fresh();
    let case = Case::new(&gated());
    let run = case.exec(&db.url, &["--approve", "contract"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.sql("SELECT to_regclass('t') IS NULL"), "t");
    let a = &run.report["phases"][1]["approval"];
    assert_eq!(a["method"], "flag");
    assert!(!a["user"].as_str().unwrap().is_empty());
    assert!(!a["host"].as_str().unwrap().is_empty(), "{a}");

    // `--as` names who approves; the CI's actor is only the fallback.
    let out = case
        .command(&db.url, &["--approve", "contract", "--as", "ana"])
        .env("GITHUB_ACTOR", "ci-bot")
        .output()
        .unwrap();
    let run = support::Run::new(out, &case.reports());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["phases"][1]["approval"]["user"], "ana");
    let md = std::fs::read_to_string(case.reports().join("report.md")).unwrap();
    assert!(md.contains("approved by ana on "), "{md}");
    let out = case
        .command(&db.url, &["--approve", "contract"])
        .env("GITHUB_ACTOR", "ci-bot")
        .output()
        .unwrap();
    let run = support::Run::new(out, &case.reports());
    assert_eq!(run.report["phases"][1]["approval"]["user"], "ci-bot");

    let run = case.exec(&db.url, &["--approve", "contrac"]);
    assert_eq!(run.code, 5);
    assert!(
        run.stderr.contains("unknown phase `contrac`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("did you mean `contract`?"),
        "{}",
        run.stderr
    );
}

#[test]
fn secrets_never_reach_any_output() {
    let db = Db::fresh();
    let password = "pw-9c1f-very-secret";
    let token = "tok-77aa-secret";
    let case = Case::new(&runbook(
        r#"params:
  token: { type: string, secret: true }
phases:
  - id: main
    kind: custom
    steps:
      - id: echo_env
        shell:
          command: 'echo "token=$TOKEN password=$(cut -d: -f5 "$PGPASSFILE")"'
          env: { TOKEN: "{{ params.token }}" }
      - id: in_sql
        sql: SELECT 1 -- {{ params.token | literal }}
      - id: fails_with_it
        sql: SELECT {{ params.token | literal }}::int;
"#,
    ));
    let junit = case.dir.path().join("junit.xml");
    let run = case.exec(
        &db.url_with_password(password),
        &[
            "--set",
            &format!("token={token}"),
            "--junit",
            junit.to_str().unwrap(),
            "-v",
        ],
    );
    assert_eq!(run.code, 4, "{}", run.stderr);
    // The shell step really got them, and its output was redacted.
    assert_eq!(
        run.step("echo_env")["stdout_tail"],
        "token=[REDACTED] password=[REDACTED]"
    );
    let mut outputs = vec![
        ("stdout".to_string(), run.stdout.clone()),
        ("stderr".to_string(), run.stderr.clone()),
    ];
    for entry in std::fs::read_dir(&run.dir).unwrap() {
        let p = entry.unwrap().path();
        outputs.push((
            p.display().to_string(),
            std::fs::read_to_string(&p).unwrap(),
        ));
    }
    outputs.push(("junit".into(), std::fs::read_to_string(&junit).unwrap()));
    assert!(outputs.len() >= 6);
    for (name, text) in outputs {
        assert!(
            !text.contains(token),
            "{name} leaks the secret param:\n{text}"
        );
        assert!(
            !text.contains(password),
            "{name} leaks the URL password:\n{text}"
        );
    }
}

/// A table made (with its undo), then a slow step.
const MADE_THEN_SLOW: &str = r#"phases:
  - id: main
    kind: custom
    steps:
      - id: made
        sql: CREATE TABLE t (n int);
        rollback:
          id: unmade
          sql: DROP TABLE IF EXISTS t;
      - id: slow
        sql: SELECT pg_sleep(SECONDS);
"#;

#[test]
fn a_report_is_written_after_sigint() {
    let db = Db::fresh();
    let case = Case::new(&runbook(&MADE_THEN_SLOW.replace("SECONDS", "60")));
    let child = case
        .command(&db.url, &[])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let events = case.reports().join("events.jsonl");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        if text.contains(r#""event":"step_started","at":"#) && text.contains(r#""step":"slow""#) {
            break;
        }
        assert!(Instant::now() < deadline, "the slow step never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let run = support::Run::new(out, &case.reports());
    stopped_and_undone(&run, &db, "Ctrl-C (SIGINT)");
    assert!(run.dir.join("report.md").exists());
}

/// A run of [`MADE_THEN_SLOW`] that `by` interrupted in `slow`: the
/// step cancelled, `made` undone, the verdict and the step's error naming
/// the signal, and the event log complete.
fn stopped_and_undone(run: &support::Run, db: &Db, by: &str) {
    assert_eq!(run.code, 130, "{}{}", run.stderr, run.report);
    assert_eq!(run.report["run"]["status"], "interrupted");
    assert_eq!(
        run.report["run"]["verdict"],
        format!("INTERRUPTED by {by} at main.slow: rolled back").as_str()
    );
    assert_eq!(run.step("slow")["status"], "cancelled");
    assert_eq!(
        run.step("slow")["error"]["message"],
        format!("interrupted by {by}").as_str()
    );
    assert_eq!(run.step("made")["status"], "rolled_back");
    assert_eq!(db.sql("SELECT to_regclass('t') IS NULL"), "t");
    assert_eq!(run.events().last().unwrap()["event"], "run_finished");
}

/// `runbook exec` of `case` on a terminal of its own, where `what`
/// happens; its exit code (`-1`: it had not ended 20 s later).
fn on_a_terminal(case: &Case, url: &str, what: support::AtTheTerminal) -> i32 {
    let mut cmd = case.command(url, &["--yes"]);
    if let support::AtTheTerminal::Types { .. } = what {
        // A gate's prompt is asked only without --yes.
        cmd = case.command(url, &[]);
    }
    cmd.env_remove("CI");
    support::on_a_terminal(&cmd, what)
}

/// The terminal hangs up mid-run: runbook gets SIGHUP. It stops the step
/// and rolls back as after Ctrl-C, and the report says that the terminal
/// hung up. (Before, SIGHUP killed it where it stood: the committed step
/// stayed, no undo ran, and the report said "running".) With SIGHUP
/// ignored (`nohup`), the run goes on to the end, and writing its progress
/// to the terminal that is gone does not stop it.
#[test]
fn a_terminal_that_hangs_up_interrupts_the_run_unless_sighup_is_ignored() {
    // A run of MADE_THEN_SLOW whose terminal hangs up during `slow`.
    let hung_up = |seconds: &str, ignore: bool| {
        let db = Db::fresh();
        let case = Case::new(&runbook(&MADE_THEN_SLOW.replace("SECONDS", seconds)));
        let events = case.reports().join("events.jsonl");
        let code = on_a_terminal(
            &case,
            &db.url,
            support::AtTheTerminal::HangsUp {
                events: &events,
                step: "slow",
                ignore,
            },
        );
        let run = support::Run::of(code, &case.reports());
        // The case too: its directory holds the event log.
        (db, case, run)
    };
    let (db, _case, run) = hung_up("60", false);
    stopped_and_undone(&run, &db, "SIGHUP (the terminal hung up)");

    let (db, _case, run) = hung_up("1", true);
    assert_eq!(run.code, 0, "{}", run.report);
    assert_eq!(run.report["run"]["status"], "succeeded");
    assert_eq!(db.sql("SELECT to_regclass('t') IS NOT NULL"), "t");
}

/// Ctrl-C while an approval prompt waits stops the run at once, as an
/// interrupt (exit 130), and the refusal says so. (Before, the prompt read
/// stdin on the runtime's own thread: the signal waited for Enter, and
/// the run then ended "not approved", exit 6.) A plain "no" is still a
/// refusal.
#[test]
fn ctrl_c_at_an_approval_prompt_interrupts_at_once() {
    let db = Db::fresh();
    let body = r#"phases:
  - id: expand
    kind: expand
    steps:
      - id: made
        sql: CREATE TABLE t (n bigint);
  - id: contract
    kind: contract
    approval: { required: true }
    steps:
      - id: after
        sql: SELECT 1;
"#;
    // A run whose person types `keys` at the gate's prompt; the case
    // too, whose directory holds the event log.
    let typed = |keys: &'static str| {
        let case = Case::new(&runbook(body));
        let code = on_a_terminal(
            &case,
            &db.url,
            support::AtTheTerminal::Types {
                prompt: "Type `yes`",
                keys,
            },
        );
        let run = support::Run::of(code, &case.reports());
        (case, run)
    };
    let (_case, run) = typed("\\x03");
    assert_eq!(run.code, 130, "{}", run.report);
    assert_eq!(
        run.report["run"]["verdict"],
        "INTERRUPTED by Ctrl-C (SIGINT) between steps"
    );
    let refused: Vec<_> = run
        .events()
        .into_iter()
        .filter(|e| e["event"] == "approval_refused")
        .collect();
    assert_eq!(
        refused[0]["reason"], "interrupted at the prompt",
        "{refused:?}"
    );
    db.sql("DROP TABLE t");
    let (_case, run) = typed("no\\r");
    assert_eq!(run.code, 6, "{}", run.report);
}

/// The reader of runbook's output goes away mid-run (`| head`, a `tee`
/// that was killed). Writing a progress line then fails; before, that
/// failure panicked: the run stopped right after a committed step, with no
/// undo and a report that said "running". Now the line is dropped and the
/// run goes on: the report and the event log say everything.
#[test]
fn a_closed_pipe_on_stderr_does_not_stop_a_run_half_way() {
    use std::io::BufRead;
    let db = Db::fresh();
    let case = Case::new(&runbook(&MADE_THEN_SLOW.replace("SECONDS", "1")));
    let mut child = case
        .command(&db.url, &[])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then close the pipe: the lines after the slow step
    // can only fail.
    let mut first = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty());
    let code = child.wait().unwrap().code().unwrap_or(-1);
    let run = support::Run::of(code, &case.reports());
    assert_eq!(run.code, 0, "{}", run.report);
    assert_eq!(run.report["run"]["status"], "succeeded");
    assert_eq!(run.step("slow")["status"], "succeeded");
    assert_eq!(db.sql("SELECT to_regclass('t') IS NOT NULL"), "t");
}

#[test]
fn junit_parses_with_a_testcase_per_step() {
    let db = log_db();
    let case = Case::new(&logged_steps("rollback", FAILING_FOURTH));
    let junit = case.dir.path().join("junit.xml");
    let run = case.exec(&db.url, &["--junit", junit.to_str().unwrap()]);
    assert_eq!(run.code, 2);
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("JUnit XML parses");
    let suites: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    let names: Vec<&str> = suites.iter().filter_map(|s| s.attribute("name")).collect();
    assert_eq!(names, ["t.expand", "t.rollback.1.phase"]);
    let cases = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .count();
    assert_eq!(cases, 5 + 3);
    let errors = doc
        .descendants()
        .filter(|n| n.has_tag_name("error"))
        .count();
    assert_eq!(errors, 1);
}

#[test]
fn no_database_is_refused_before_anything_runs() {
    let case = Case::new(&gated());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["exec", case.file.to_str().unwrap(), "--report-dir"])
        .arg(case.reports())
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: no database to run against\n"),
        "{stderr}"
    );
    assert!(
        !case.reports().exists(),
        "a refused run must not create reports"
    );
}

#[test]
fn an_unreachable_database_fails_with_a_report() {
    let case = Case::new(&gated());
    let run = case.exec("postgres://runbook:pw-unreach@127.0.0.1:1/none", &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.report["run"]["verdict"]
            .as_str()
            .unwrap()
            .starts_with("FAILED before the first step: could not connect to 127.0.0.1:1/none")
    );
    assert!(!run.stderr.contains("pw-unreach"));
}

#[test]
fn report_md_snapshot() {
    let db = log_db();
    let mut yaml = logged_steps("rollback", FAILING_FOURTH);
    yaml.push_str("finally:\n  - id: done\n    shell: echo done\n");
    let case = Case::new(&yaml);
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 2);
    let md = std::fs::read_to_string(run.dir.join("report.md")).unwrap();
    let redactions = [
        (r"\d+(\.\d+)? (ms|s)\b", "[duration]"),
        (r"\d+m \d\ds", "[duration]"),
        (r"\d{4}-\d\d-\d\dT[0-9:.]+Z", "[time]"),
        (r"\d{8}T\d{6}Z-[0-9a-f]{8}", "[run-id]"),
        (r"`[^`]*runbook\.yml`", "`[file]`"),
        (r"[0-9a-f]{64}", "[sha256]"),
        (r"127\.0\.0\.1:\d+/t\d+_\d+", "127.0.0.1:[port]/[db]"),
        (r"PostgreSQL [0-9.]+[^|]*\|", "PostgreSQL [version] |"),
        (r"runbook \d+\.\d+\.\d+", "runbook [version]"),
    ];
    // The order of the slowest steps depends on timing: check it apart.
    let (md, slowest) = md.split_once("## Slowest steps\n").unwrap();
    assert_eq!(slowest.lines().filter(|l| l.starts_with("1. `")).count(), 5);
    let mut text = md.to_string();
    for (re, with) in redactions {
        text = regex::Regex::new(re)
            .unwrap()
            .replace_all(&text, with)
            .into_owned();
    }
    insta::assert_snapshot!(text);
}

#[test]
fn the_markdown_report_is_appended_to_the_github_step_summary() {
    let db = Db::fresh();
    let case = Case::new(&gated());
    let summary = case.dir.path().join("summary.md");
    std::fs::write(&summary, "earlier content\n").unwrap();
    let out = case
        .command(&db.url, &["--yes"])
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(
        text.starts_with("earlier content\n# runbook report: t 1\n\n**SUCCEEDED** (exit code 0)"),
        "{text}"
    );
    let approval = &support::Run::new(out, &case.reports()).report["phases"][1]["approval"];
    assert_eq!(approval["method"], "yes");
}

#[test]
fn a_killed_run_leaves_its_event_log_and_a_report_that_says_running() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        r#"phases:
  - id: main
    kind: custom
    steps:
      - id: first
        sql: CREATE TABLE t (n int);
      - id: slow
        sql: SELECT pg_sleep(60);
"#,
    ));
    let mut child = case
        .command(&db.url, &[])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let events = case.reports().join("events.jsonl");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&events)
        .unwrap_or_default()
        .contains(r#""step":"slow""#)
    {
        assert!(Instant::now() < deadline, "the slow step never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Give the writer its second: a long step must not leave a stale report.
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(case.reports().join("report.json")).unwrap())
            .unwrap();
    support::check_report_schema(&report);
    assert_eq!(report["run"]["status"], "running");
    assert_eq!(
        report["run"]["verdict"],
        "RUNNING (or killed before it could finish)"
    );
    assert!(
        std::fs::read_to_string(case.reports().join("report.md"))
            .unwrap()
            .contains("RUNNING")
    );
    let steps = &report["phases"][0]["steps"];
    assert_eq!(
        (steps[0]["status"].as_str(), steps[1]["status"].as_str()),
        (Some("succeeded"), Some("running"))
    );
    let lines = std::fs::read_to_string(&events).unwrap();
    let last: serde_json::Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    assert_eq!(
        (last["event"].as_str(), last["step"].as_str()),
        (Some("step_started"), Some("slow"))
    );
}

#[test]
fn a_secret_that_looks_like_a_keyword_does_not_break_the_run() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        r#"params:
  word: { type: string, secret: true }
phases:
  - id: main
    kind: custom
    steps:
      - id: uses_it
        shell:
          command: echo "the word is $WORD"
          env: { WORD: "{{ params.word }}" }
"#,
    ));
    // Long enough to redact by value: redacted, and the report's own words
    // (a status, an event name) keep their spelling.
    for word in ["succeeded", "step_started", "compensation"] {
        let run = case.exec(&db.url, &["--set", &format!("word={word}")]);
        assert_eq!(run.code, 0, "secret `{word}`: {}", run.stderr);
        assert_eq!(run.step("uses_it")["stdout_tail"], "the word is [REDACTED]");
        assert_eq!(run.step("uses_it")["role"], "main");
        assert_eq!(run.step("uses_it")["status"], "succeeded");
    }
    // Too short to redact by value without blanking ordinary words: the run
    // says so, instead of mangling every `main` in its output.
    for word in ["main", "sql"] {
        let run = case.exec(&db.url, &["--set", &format!("word={word}")]);
        assert_eq!(run.code, 0, "secret `{word}`: {}", run.stderr);
        assert_eq!(run.step("uses_it")["role"], "main");
        let warnings = run.report["warnings"].to_string();
        assert!(
            warnings.contains("is redacted only where its position marks it"),
            "{warnings}"
        );
    }
}

#[test]
fn a_lost_connection_is_retried_on_a_new_session_when_asked() {
    let db = Db::fresh();
    db.sql("CREATE TABLE hits (n int)");
    let case = Case::new(&runbook(
        r#"phases:
  - id: main
    kind: custom
    steps:
      - id: flaky
        retry: { attempts: 3, backoff: { initial: 100ms }, on: [connection] }
        sql: INSERT INTO hits SELECT 1 FROM pg_sleep(1);
"#,
    ));
    let child = case
        .command(&db.url, &[])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Terminate the runner's session while its first attempt sleeps.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let killed = db.sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name LIKE 'runbook/%' AND query LIKE '%pg_sleep(1)%' AND state = 'active'",
        );
        if killed == "1" {
            break;
        }
        assert!(Instant::now() < deadline, "the step never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let run = support::Run::new(child.wait_with_output().unwrap(), &case.reports());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let attempts = run.step("flaky")["attempts"].as_array().unwrap().clone();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0]["error"]["class"], "connection");
    assert_eq!(db.sql("SELECT count(*) FROM hits"), "1");
}

#[test]
fn a_second_run_on_the_same_database_fails_fast_and_names_the_holder() {
    let db = Db::fresh();
    let slow = Case::new(&runbook(
        "phases:\n  - id: main\n    kind: custom\n    steps:\n      - id: hold\n        sql: SELECT pg_sleep(3);\n",
    ));
    let first = slow
        .command(&db.url, &[])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let events = slow.reports().join("events.jsonl");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&events)
        .unwrap_or_default()
        .contains(r#""step":"hold""#)
    {
        assert!(
            Instant::now() < deadline,
            "the first run never started its step"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let first_id = std::fs::read_to_string(&events).unwrap();
    let first_id: serde_json::Value =
        serde_json::from_str(first_id.lines().next().unwrap()).unwrap();
    let first_id = first_id["run_id"].as_str().unwrap().to_string();

    // The same runbook again: refused at once, with exit 5, naming the holder.
    let second = Case::new(&std::fs::read_to_string(&slow.file).unwrap());
    let started = Instant::now();
    let run = second.exec(&db.url, &[]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "it waited {:?}",
        started.elapsed()
    );
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert_eq!(run.report["run"]["status"], "locked");
    let verdict = run.report["run"]["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with("REFUSED: another run of `t` holds database"),
        "{verdict}"
    );
    assert!(
        verdict.contains(&format!(
            "application_name `runbook/{first_id}`, run {first_id}"
        )),
        "{verdict}"
    );
    assert!(verdict.contains("pid "), "{verdict}");
    // It says what the holder is doing, and how to end it.
    assert!(verdict.contains(", active for "), "{verdict}");
    assert!(
        verdict.contains("to end it now: SELECT pg_terminate_backend("),
        "{verdict}"
    );
    assert_eq!(run.step("hold")["status"], "not_run");

    // A different runbook on the same database is not blocked.
    let other = Case::new(&runbook("phases:\n  - id: main\n    kind: custom\n    steps:\n      - id: quick\n        sql: SELECT 1;\n").replace("name: t,", "name: other,"));
    assert_eq!(other.exec(&db.url, &[]).code, 0);

    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn without_settings_a_blocked_statement_times_out_at_2s_and_is_retried() {
    let db = Db::fresh();
    db.sql("CREATE TABLE busy (n int)");
    // Held for 6 s: the run's first attempt must start while it is held
    // (under a loaded CI, runbook took over 3 s to reach its step, and the
    // first attempt found the lock gone), and the 5 default attempts (2 s
    // of lock wait each, backoff between) outlast it.
    let mut holder = hold_lock(&db, "busy", "ACCESS EXCLUSIVE", 6);
    let case = Case::new(&runbook(
        "phases:\n  - id: expand\n    kind: expand\n    steps:\n      - id: alter\n        sql: ALTER TABLE busy ADD COLUMN note text;\n",
    ));
    let run = case.exec(&db.url, &[]);
    holder.wait().unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let attempts = run.step("alter")["attempts"].as_array().unwrap().clone();
    assert!(attempts.len() >= 2, "{attempts:?}");
    for a in &attempts[..attempts.len() - 1] {
        assert_eq!(a["error"]["sqlstate"], "55P03");
        assert_eq!(
            a["error"]["message"],
            "canceling statement due to lock timeout"
        );
    }
    assert!(attempts.last().unwrap()["error"].is_null());
}

#[test]
fn a_step_setting_overrides_the_runbook_setting() {
    let db = Db::fresh();
    db.sql("CREATE TABLE busy (n int)");
    let mut holder = hold_lock(&db, "busy", "ACCESS EXCLUSIVE", 3);
    let case = Case::new(&runbook(
        r#"settings: { lock_timeout: 10s }
phases:
  - id: expand
    kind: expand
    steps:
      - id: alter
        settings: { lock_timeout: 100ms }
        retry: { attempts: 1 }
        sql: ALTER TABLE busy ADD COLUMN note text;
"#,
    ));
    let started = Instant::now();
    let run = case.exec(&db.url, &[]);
    let took = started.elapsed();
    holder.wait().unwrap();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        took < Duration::from_secs(2),
        "the step waited {took:?}, not 100ms"
    );
    assert_eq!(run.step("alter")["error"]["sqlstate"], "55P03");
}

/// SQL for a newer PostgreSQL fails with an error that does not say so
/// (`function uuidv7() does not exist`); the step's error adds which
/// version it needs, in a `sql` step and in a migration alike.
#[test]
fn an_error_for_sql_of_a_newer_server_says_which_version_it_needs() {
    let db = Db::fresh();
    let major: u32 = db.sql("SHOW server_version_num").parse::<u32>().unwrap() / 10_000;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("001_id.up.sql"), "SELECT uuidv7();\n").unwrap();
    std::fs::write(dir.path().join("001_id.down.sql"), "SELECT 1;\n").unwrap();
    let bodies = [
        "sql: SELECT uuidv7();".to_string(),
        format!("migrate: {{ dir: {} }}", dir.path().display()),
    ];
    for body in bodies {
        let case = Case::new(&runbook(&format!(
            "phases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: s\n        {body}\n"
        )));
        let run = case.exec(&db.url, &[]);
        if major >= 18 {
            assert_eq!(run.code, 0, "{}", run.stderr);
            continue;
        }
        assert_eq!(run.code, 1, "{}", run.stderr);
        let message = run.step("s")["error"]["message"].to_string();
        assert!(
            message.contains("function uuidv7() does not exist; uuidv7() needs PostgreSQL 18 or later, and this server runs 1"),
            "{body}: {message}"
        );
    }
}

/// A rerun after a crash: the table step 1 creates is already there, filled
/// by the first run. Step 1 fails inside its transaction, so it changed
/// nothing, and its `DROP TABLE IF EXISTS` compensation must not run: it
/// would destroy the first run's rows.
#[test]
fn a_failed_transactional_step_does_not_run_its_compensation() {
    let db = Db::fresh();
    db.sql("CREATE TABLE f1 (n int); INSERT INTO f1 SELECT generate_series(1, 1000)");
    let case = Case::new(&runbook(
        r#"phases:
  - id: expand
    kind: expand
    steps:
      - id: create
        sql: CREATE TABLE f1 (n int);
        rollback:
          id: drop
          sql: DROP TABLE IF EXISTS f1;
      - id: fill
        sql: INSERT INTO f1 SELECT generate_series(1, 1000);
"#,
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(db.sql("SELECT count(*) FROM f1"), "1000");
    assert_eq!(run.step("create")["status"], "failed");
    assert_eq!(run.step("create")["compensation"]["status"], "not_needed");
    assert_eq!(
        run.step("create")["note"],
        "not run: the step failed inside a transaction that rolled back, so it changed nothing"
    );
    assert!(
        !run.events()
            .iter()
            .any(|e| e["event"] == "step_started" && e["step"] == "drop"),
        "the compensation ran"
    );
    assert_eq!(
        run.report["run"]["verdict"],
        "FAILED at expand.create: failed; nothing was changed"
    );
    assert_eq!(run.report["run"]["status"], "failed_unchanged");

    // Outside a transaction: the first run built the index, and the
    // rerun's concurrent build fails at once ("already exists"). It left no
    // INVALID index, so it changed nothing, and its compensation must not
    // drop the first run's index. The note says why, not "rolled back".
    db.sql("CREATE INDEX f1_n ON f1 (n)");
    let case = Case::new(&runbook(
        r#"phases:
  - id: expand
    kind: expand
    steps:
      - id: index
        sql: CREATE INDEX CONCURRENTLY f1_n ON f1 (n);
        rollback:
          id: drop_index
          sql: DROP INDEX CONCURRENTLY IF EXISTS f1_n;
"#,
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.step("index")["error"]["sqlstate"], "42P07");
    assert_eq!(run.step("index")["compensation"]["status"], "not_needed");
    assert_eq!(
        run.step("index")["note"],
        "not run: the step failed before anything it ran took effect, so it changed nothing"
    );
    assert_eq!(db.sql("SELECT to_regclass('f1_n') IS NOT NULL"), "t");
}

/// A step with no compensation changed the database, and a later one
/// failed: the phase's rollback cannot undo it, so the run must not say
/// "rolled back".
#[test]
fn a_change_that_nothing_undoes_is_exit_4_not_rolled_back() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        r#"phases:
  - id: expand
    kind: expand
    steps:
      - id: create
        sql: CREATE TABLE kept (n int);
      - id: broken
        sql: SELECT 1/0;
"#,
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(
        run.report["run"]["verdict"],
        "FAILED at expand.broken: the database is partly changed and was not verified undone; a person must act"
    );
}

/// An undo that leaves something behind is found by comparing the schema
/// with the one before the run, and listed object by object.
#[test]
fn an_undo_that_leaves_an_object_behind_is_exit_4_with_the_difference() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        r#"phases:
  - id: expand
    kind: expand
    steps:
      - id: create
        sql: CREATE TABLE t (n int); CREATE INDEX t_n ON t (n);
        rollback:
          id: undo
          sql: DROP INDEX t_n;
      - id: broken
        sql: SELECT 1/0;
"#,
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    let b = &run.report["branches"][0];
    assert_eq!(b["clean"], true);
    assert_eq!(b["verification"]["against"], "run_start");
    assert_eq!(b["verification"]["result"], "differs");
    assert_eq!(b["verification"]["changes"][0]["object"], "table public.t");
    assert_eq!(b["verification"]["changes"][0]["change"], "added");
    assert!(
        run.report["run"]["verdict"]
            .as_str()
            .unwrap()
            .contains("1 schema object(s) differ from before the run"),
        "{}",
        run.report["run"]["verdict"]
    );
    let md = std::fs::read_to_string(run.dir.join("report.md")).unwrap();
    assert!(
        md.contains("Undo NOT verified: 1 schema object(s) differ from before the run"),
        "{md}"
    );
}

/// The runbook's `on_failure` undoes the last completed phase but not the
/// first: the verdict names only the phase whose changes stay.
#[test]
fn a_runbook_undo_that_reaches_back_one_phase_names_only_what_stays() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        r#"phases:
  - id: first
    kind: expand
    steps:
      - id: a
        sql: CREATE TABLE a (n int);
  - id: second
    kind: expand
    steps:
      - id: b
        sql: CREATE TABLE b (n int);
  - id: third
    kind: migrate
    on_failure: abort
    steps:
      - id: broken
        sql: SELECT 1/0;
on_failure:
  - id: undo_second
    sql: DROP TABLE b;
"#,
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(run.report["run"]["status"], "partly_undone");
    let verdict = run.report["run"]["verdict"].as_str().unwrap();
    assert!(
        verdict.contains(
            "back to before phase `second` (verified), but the changes of phase(s) `first` are still in place"
        ),
        "{verdict}"
    );
    assert_eq!(
        db.sql("SELECT to_regclass('a') IS NOT NULL AND to_regclass('b') IS NULL"),
        "t"
    );
}

/// `on_failure: abort`, then the runbook's own `on_failure` undoes the
/// change: the database is back where it started, and the code says so.
#[test]
fn abort_then_a_complete_runbook_undo_is_exit_2() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        r#"phases:
  - id: expand
    kind: expand
    on_failure: abort
    steps:
      - id: create
        sql: CREATE TABLE t (n int);
      - id: broken
        sql: SELECT 1/0;
on_failure:
  - id: undo
    sql: DROP TABLE IF EXISTS t;
"#,
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.report["run"]["status"], "rolled_back");
    assert_eq!(run.report["branches"][0]["verification"]["result"], "equal");
}

/// `settings.verify_undo` checks the data of the tables it names: a
/// compensation that undoes the schema but not the rows is not clean.
#[test]
fn verify_undo_finds_rows_a_rollback_did_not_put_back() {
    for (checksums, undo, code) in [
        (false, "DELETE FROM accounts WHERE id > 3", 2),
        (false, "DELETE FROM accounts WHERE id > 2", 4),
        (
            true,
            "DELETE FROM accounts WHERE id > 3; UPDATE accounts SET v = 'changed' WHERE id = 1",
            4,
        ),
    ] {
        let db = Db::fresh();
        db.sql("CREATE TABLE accounts (id int PRIMARY KEY, v text); INSERT INTO accounts VALUES (1, 'a'), (2, 'b'), (3, 'c')");
        let case = Case::new(&runbook(&format!(
            r#"settings: {{ verify_undo: {{ tables: [accounts], checksums: {checksums} }} }}
phases:
  - id: migrate
    kind: migrate
    steps:
      - id: add
        sql: INSERT INTO accounts VALUES (4, 'd'), (5, 'e');
        rollback:
          id: remove
          sql: {undo};
      - id: broken
        sql: SELECT 1/0;
"#
        )));
        let run = case.exec(&db.url, &[]);
        assert_eq!(run.code, code, "{undo}: {}", run.stderr);
        let v = &run.report["branches"][0]["verification"];
        if code == 4 {
            assert_eq!(v["result"], "differs", "{v}");
            assert_eq!(v["changes"][0]["object"], "data accounts", "{v}");
            // With checksums, the same count of other rows names the
            // column whose values differ.
            if checksums {
                let now = v["changes"][0]["diff"][1].as_str().unwrap();
                assert!(now.ends_with(" (in column(s) v)"), "{v}");
            }
        } else {
            assert_eq!(v["result"], "equal", "{v}");
            assert!(
                run.report["run"]["verdict"]
                    .as_str()
                    .unwrap()
                    .ends_with("; so are the rows of the 1 table(s) `settings.verify_undo` names"),
                "{}",
                run.report["run"]["verdict"]
            );
        }
    }
}

/// The run as a role whose `statement_timeout` is short, as managed
/// databases set: verify_undo's counts and checksums are runbook's own
/// reads, made as pg_dump makes them. Before, the role's timeout cancelled
/// them, and a clean rollback read as unverified: exit 4, "a person must
/// act".
#[test]
fn verify_undo_reads_past_a_roles_statement_timeout() {
    let db = Db::fresh();
    let (app, url) = db.owned_by_new_role("guarded");
    db.sql(&format!(
        "CREATE TABLE accounts (id int PRIMARY KEY, v text);
         INSERT INTO accounts SELECT g, md5(g::text) FROM generate_series(1, 300000) g;
         ALTER TABLE accounts OWNER TO {app};
         ALTER ROLE {app} SET statement_timeout = '100ms';"
    ));
    let case = Case::new(&runbook(
        r#"settings: { verify_undo: { tables: [accounts], checksums: true } }
phases:
  - id: migrate
    kind: migrate
    steps:
      - id: add
        sql: INSERT INTO accounts VALUES (0, 'new');
        rollback:
          id: remove
          sql: DELETE FROM accounts WHERE id = 0;
      - id: broken
        sql: SELECT 1/0;
"#,
    ));
    let run = case.exec(&url, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let v = &run.report["branches"][0]["verification"];
    assert_eq!(v["result"], "equal", "{v}");
}

/// A table verify_undo names that the role cannot read in full (no
/// privilege, or row-level security that would filter the count) refuses
/// the run before it changes anything. Before, the first case ran the
/// steps and ended unverified (exit 4); the second counted only the rows
/// the policy let through, and called the undo verified.
#[test]
fn a_verify_undo_table_the_role_cannot_read_in_full_refuses_the_run() {
    for (setup, says) in [
        ("REVOKE ALL ON accounts FROM {app}", "permission denied for table accounts"),
        (
            "ALTER TABLE accounts ENABLE ROW LEVEL SECURITY; ALTER TABLE accounts FORCE ROW LEVEL SECURITY;
             CREATE POLICY mine ON accounts USING (id < 3)",
            "row-level security",
        ),
    ] {
        let db = Db::fresh();
        let (hostport, name) = db.url.split_once('@').unwrap().1.split_once('/').unwrap();
        let name = name.split('?').next().unwrap();
        let app = format!("app_{name}");
        db.sql(&format!(
            "CREATE ROLE {app} LOGIN; GRANT ALL ON SCHEMA public TO {app};
             CREATE TABLE accounts (id int PRIMARY KEY, v text);
             INSERT INTO accounts VALUES (1, 'a'), (2, 'b'), (3, 'c');
             ALTER TABLE accounts OWNER TO {app};"
        ));
        db.sql(&setup.replace("{app}", &app));
        let case = Case::new(&runbook(
            r#"settings: { verify_undo: { tables: [accounts, not_made_yet] } }
phases:
  - id: migrate
    kind: migrate
    steps:
      - id: made
        sql: CREATE TABLE made (id int);
        rollback:
          id: unmade
          sql: DROP TABLE made;
"#,
        ));
        let run = case.exec(&format!("postgres://{app}@{hostport}/{name}"), &[]);
        assert_eq!(run.code, 1, "{setup}: {}", run.stderr);
        assert_eq!(run.report["run"]["status"], "preflight_failed", "{setup}");
        let verdict = run.report["run"]["verdict"].as_str().unwrap_or_default().to_string();
        assert!(
            verdict.starts_with("REFUSED: settings.verify_undo names a table")
                && verdict.contains(says),
            "{setup}: {verdict}"
        );
        assert_eq!(db.sql("SELECT to_regclass('made') IS NULL"), "t", "{setup}");
    }
}

/// The runner's session is terminated during a step: the compensations
/// must not run on the dead session. runbook reconnects, takes the run
/// lock again, and undoes what was done.
#[test]
fn a_terminated_session_is_replaced_before_the_compensations_run() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        r#"phases:
  - id: expand
    kind: expand
    steps:
      - id: create
        sql: CREATE TABLE t (n int);
        rollback:
          id: drop
          sql: DROP TABLE IF EXISTS t;
      - id: slow
        sql: SELECT pg_sleep(30);
"#,
    ));
    let url = db.url.clone();
    let name = db.name.clone();
    let killer = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let find = format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid() AND query LIKE 'SELECT pg_sleep(30)%'"
        );
        while Instant::now() < deadline {
            if support::psql(&url, &find) == "1" {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    });
    let run = case.exec(&db.url, &[]);
    assert!(killer.join().unwrap(), "the step's session was never seen");
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(db.sql("SELECT to_regclass('t') IS NULL"), "t");
    assert_eq!(run.step("drop")["status"], "succeeded");
    let warnings = run.report["warnings"].to_string();
    assert!(
        warnings.contains("the database session was lost; reconnecting before step `drop`"),
        "{warnings}"
    );
    assert_eq!(run.step("slow")["error"]["class"], "connection");
}

/// `kill -9` of the runner during a long statement: the server notices
/// the client is gone (client_connection_check_interval) and ends the
/// session within seconds, instead of running on with the run lock.
#[test]
fn an_orphaned_session_is_ended_by_the_server_within_seconds() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        "phases:\n  - id: main\n    kind: custom\n    steps:\n      - id: long\n        sql: SELECT pg_sleep(120);\n",
    ));
    let mut child = case.command(&db.url, &[]).spawn().unwrap();
    let running = format!(
        "SELECT count(*) = 1 FROM pg_stat_activity WHERE datname = '{}' AND query LIKE 'SELECT pg_sleep(120)%'",
        db.name
    );
    support::wait_until(&db, &running);
    child.kill().unwrap();
    child.wait().unwrap();
    let gone = format!(
        "SELECT count(*) = 0 FROM pg_stat_activity WHERE datname = '{}' AND query LIKE 'SELECT pg_sleep(120)%'",
        db.name
    );
    let killed = Instant::now();
    while db.sql(&gone) != "t" {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "the orphaned session still runs after {:?}",
            killed.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `shell_quote` makes a param one shell word: `$(...)` in it is text.
#[test]
fn a_shell_quoted_param_cannot_run_commands() {
    let db = Db::fresh();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let case = Case::new(&runbook(
        "params:\n  v: { type: string }\nphases:\n  - id: main\n    kind: custom\n    steps:\n      - id: say\n        shell: echo {{ params.v | shell_quote }}\n",
    ));
    let value = format!("$(touch {}); it's", marker.display());
    let run = case.exec(&db.url, &["--set", &format!("v={value}")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!marker.exists(), "the param ran a command");
    assert_eq!(run.step("say")["stdout_tail"], value);
}

/// A password that is also the user's name cannot be redacted by value
/// without blanking the target: it is hidden in URLs only, and the run
/// warns about it, and about a password on the command line.
#[test]
fn a_name_like_password_keeps_the_target_readable_and_is_warned_about() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        "phases:\n  - id: main\n    kind: custom\n    steps:\n      - id: one\n        sql: SELECT 1;\n",
    ));
    let run = case.exec(&db.url_with_password("runbook"), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.report["target"]["user"], "runbook",
        "{}",
        run.report["target"]
    );
    assert!(run.stderr.contains("runbook@127.0.0.1"), "{}", run.stderr);
    let warnings = run.report["warnings"].to_string();
    assert!(
        warnings.contains("--database-url carries a password"),
        "{warnings}"
    );
    assert!(
        warnings.contains("is also the name of its user, host or database"),
        "{warnings}"
    );
}

/// A reused --report-dir: the earlier run's files move aside whole, so
/// events.jsonl never holds two runs and nothing is overwritten.
#[test]
fn a_reused_report_dir_keeps_each_run_whole() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        "phases:\n  - id: main\n    kind: custom\n    steps:\n      - id: one\n        sql: SELECT 1;\n",
    ));
    let first = case.exec(&db.url, &[]);
    let second = case.exec(&db.url, &[]);
    assert_eq!((first.code, second.code), (0, 0));
    let first_id = first.report["run"]["id"].as_str().unwrap().to_string();
    let starts = second
        .events()
        .iter()
        .filter(|e| e["event"] == "run_started")
        .count();
    assert_eq!(starts, 1, "events.jsonl mixes runs");
    let kept = case.reports().join("previous").join(&first_id);
    let old: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(kept.join("report.json")).unwrap()).unwrap();
    assert_eq!(old["run"]["id"], first_id.as_str());
    assert!(kept.join("events.jsonl").exists() && kept.join("report.md").exists());
    assert!(
        second.report["warnings"]
            .to_string()
            .contains("were moved to"),
        "{}",
        second.report["warnings"]
    );
}

/// A report that cannot be written is loud: stderr says so, and a run that
/// succeeded exits 7, not 0. The file-size limit fails the writes (EFBIG)
/// as a full disk would (ENOSPC).
#[test]
fn a_report_that_cannot_be_written_is_not_a_success() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        "phases:\n  - id: main\n    kind: custom\n    steps:\n      - id: one\n        sql: SELECT 1;\n",
    ));
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 1; exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_runbook"))
        .args(case.command(&db.url, &[]).get_args())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(
        stderr.contains(
            "error: the run ended succeeded (exit code 0), but its report could not be written"
        ),
        "{stderr}"
    );
    // No half-written report is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(case.reports())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A non-transactional step that fails on its second statement has
/// committed its first. The report says it failed part-way, and the
/// runbook chooses whether its rollback runs.
#[test]
fn a_step_that_failed_part_way_is_marked_partial_and_rollback_on_partial_decides() {
    let yaml = |keep: bool| {
        runbook(&format!(
            r#"phases:
  - id: expand
    kind: expand
    steps:
      - id: two
        sql:
          transaction: false
          statements: |
            CREATE TABLE p1 (n int);
            INSERT INTO p1 VALUES ('not a number');
        rollback_on_partial: {}
        rollback:
          id: drop
          sql: DROP TABLE IF EXISTS p1;
"#,
            !keep
        ))
    };

    let db = Db::fresh();
    let case = Case::new(&yaml(false));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.step("two")["partial"], true);
    assert_eq!(run.step("two")["compensation"]["status"], "succeeded");
    assert_eq!(db.sql("SELECT to_regclass('p1') IS NULL"), "t");

    let db = Db::fresh();
    let case = Case::new(&yaml(true));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(run.step("two")["partial"], true);
    assert_eq!(run.step("two")["compensation"]["status"], "not_run");
    // What the step did is kept, and the report says the undo is not complete.
    assert_eq!(db.sql("SELECT to_regclass('p1') IS NOT NULL"), "t");
    let md = std::fs::read_to_string(run.dir.join("report.md")).unwrap_or_default();
    assert!(md.contains("failed part-way"), "{md}");
}

/// A typo the parser stops at must not cut the statement short: `DELETE
/// FROM orders WEHRE id = 5` sent up to `WEHRE` deletes every row, and
/// outside a transaction nothing would bring them back. The statement goes
/// to the server whole, as psql sends it, and the server rejects it.
#[test]
fn a_typo_that_stops_the_parser_is_sent_whole_and_deletes_nothing() {
    let db = Db::fresh();
    db.sql("CREATE TABLE orders (id int); INSERT INTO orders SELECT generate_series(1, 100)");
    let case = Case::new(&runbook(
        r#"phases:
  - id: migrate
    kind: migrate
    steps:
      - id: typo
        sql:
          transaction: false
          statements: |
            UPDATE orders SET id = id WHERE id = 1;
            DELETE FROM orders WEHRE id = 5;
            TRUNCATE orders WHERE id = 6;
"#,
    ));
    let run = case.exec(&db.url, &[]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.sql("SELECT count(*) FROM orders"), "100");
    let step = run.step("typo");
    let message = step["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(r#"syntax error at or near "id""#),
        "{message}"
    );
    assert_eq!(step["details"]["failed_statement"], 2, "{step}");
}

/// libpq's environment names the target when no URL does (PGHOST, PGPORT,
/// PGUSER, PGDATABASE), and a password file others can read is ignored
/// with a warning, as libpq does.
#[test]
fn libpq_environment_variables_name_the_target_and_a_loose_passfile_is_refused() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        r#"phases:
  - id: p
    kind: custom
    steps:
      - id: one
        sql: CREATE TABLE via_env (n int);
"#,
    ));
    let passfile = case.dir.path().join("pgpass");
    std::fs::write(&passfile, "*:*:*:*:not-a-real-password\n").unwrap();
    std::fs::set_permissions(
        &passfile,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let url = url_parts(&db.url);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .arg("exec")
        .arg(&case.file)
        .args(["--progress", "never", "--report-dir"])
        .arg(case.reports())
        .env_remove("DATABASE_URL")
        .env("PGHOST", &url.0)
        .env("PGPORT", &url.1)
        .env("PGUSER", "runbook")
        .env("PGDATABASE", &db.name)
        .env("PGPASSFILE", &passfile)
        .output()
        .unwrap();
    let run = support::Run::new(out, &case.reports());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.sql("SELECT to_regclass('via_env') IS NOT NULL"), "t");
    let warnings = run.report["warnings"].to_string();
    assert!(
        warnings.contains("is readable by others, so it is ignored"),
        "{warnings}"
    );
    assert!(
        !run.stderr.contains("not-a-real-password") && !warnings.contains("not-a-real-password")
    );
}

/// (host, port) of a test database URL.
fn url_parts(url: &str) -> (String, String) {
    let after = url.split('@').nth(1).unwrap();
    let hostport = after.split('/').next().unwrap();
    let (h, p) = hostport.split_once(':').unwrap();
    (h.to_string(), p.to_string())
}

/// A child (psql in a shell step, pg_dump) gets the run's password in a
/// private file (PGPASSFILE, mode 0600), not in its environment or argv;
/// the file is gone when the run ends.
#[test]
fn children_get_the_password_in_a_private_file_removed_after_the_run() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        r#"phases:
  - id: p
    kind: custom
    steps:
      - id: look
        shell: 'echo "pw-env=[${PGPASSWORD:-}] mode=$(stat -c %a "$PGPASSFILE") file=$PGPASSFILE"; psql -XAtc "SELECT 42"'
"#,
    ));
    let run = case.exec(&db.url_with_password("Child-Secret-Word"), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = run.step("look")["stdout_tail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(out.contains("pw-env=[] mode=600 file="), "{out}");
    assert!(out.ends_with("42"), "{out}");
    let file = out
        .split("file=")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim();
    assert!(
        !std::path::Path::new(file).exists(),
        "{file} outlived the run"
    );
}

/// A step outside a transaction whose second statement hits a lock
/// timeout: the retry goes on from that statement, so the first, which
/// committed, is not run again (its row is inserted once, not per attempt).
#[test]
fn a_retry_outside_a_transaction_goes_on_after_what_committed() {
    let db = Db::fresh();
    db.sql("CREATE TABLE log (n int); CREATE TABLE held (id int);");
    let case = Case::new(&runbook(
        r#"settings: { lock_timeout: 200ms }
phases:
  - id: expand
    kind: expand
    steps:
      - id: two
        retry:
          attempts: 10
          backoff: { initial: 500ms, factor: 1, max: 500ms }
          on: [lock_timeout]
        sql:
          transaction: false
          statements: |
            INSERT INTO log VALUES (1);
            ALTER TABLE held ADD COLUMN x int;
"#,
    ));
    let mut holder = support::hold_lock(&db, "held", "ACCESS SHARE", 2);
    let run = case.exec(&db.url, &[]);
    let _ = holder.wait();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let step = run.step("two");
    assert!(
        step["attempts"].as_array().unwrap().len() > 1,
        "it retried: {step}"
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM log"),
        "1",
        "the first statement ran once"
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'held' AND column_name = 'x'"),
        "1"
    );
    let said = run.events().iter().any(|e| {
        e["line"]
            .as_str()
            .is_some_and(|l| l.contains("going on from statement 2"))
    });
    assert!(said, "the retry says where it goes on");
}

/// A failed step is announced once on the terminal, whichever progress
/// mode draws the run, with the database's own detail under it.
#[test]
fn a_failed_step_is_announced_once_in_every_progress_mode() {
    let db = Db::fresh();
    db.sql("CREATE TABLE once (id int PRIMARY KEY); INSERT INTO once VALUES (1);");
    let case = Case::new(
        "apiVersion: runbook/v1
kind: Runbook
metadata: { name: once, version: 1 }
phases:
  - id: expand
    kind: expand
    steps:
      - id: add
        sql: ALTER TABLE once ADD COLUMN note text;
        rollback: { id: drop_note, sql: ALTER TABLE once DROP COLUMN note; }
      - id: boom
        sql: INSERT INTO once VALUES (1);
",
    );
    for mode in ["never", "always", "auto"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
            .arg("exec")
            .arg(&case.file)
            .args([
                "--database-url",
                &db.url,
                "--progress",
                mode,
                "--report-dir",
            ])
            .arg(case.dir.path().join(mode))
            .env_remove("DATABASE_URL")
            .env_remove("GITHUB_STEP_SUMMARY")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let (code, _, err) = support::ended(out);
        assert_eq!(code, 2, "{mode}: {err}");
        assert_eq!(err.matches("✘ step boom").count(), 1, "{mode}:\n{err}");
        assert!(
            err.contains("Key (id)=(1) already exists."),
            "{mode}:\n{err}"
        );
    }
}

/// A `--junit` path that cannot be written is refused before anything
/// runs, and before an earlier run's reports are moved aside. (Before, a
/// directory given as `--junit` ran the whole runbook, then exited 7 with
/// a hint about the report directory.)
#[test]
fn a_junit_path_that_cannot_be_written_is_refused_before_anything() {
    let db = Db::fresh();
    let case = Case::new(&runbook(&MADE_THEN_SLOW.replace("SECONDS", "0")));
    // In the report directory, which the run creates: accepted (the
    // action writes it there).
    let inside = case.reports().join("junit.xml");
    let run = case.exec(&db.url, &["--junit", inside.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(inside.exists());
    db.sql("DROP TABLE t");
    let dir = case.dir.path().to_str().unwrap().to_string();
    let missing = format!("{dir}/nowhere/junit.xml");
    for (junit, said) in [
        (dir.as_str(), "is a directory"),
        (missing.as_str(), "does not exist"),
    ] {
        let run = case.exec(&db.url, &["--junit", junit]);
        assert_eq!(run.code, 5, "{}", run.stderr);
        assert!(run.stderr.contains(said), "{}", run.stderr);
        assert_eq!(db.sql("SELECT to_regclass('t') IS NULL"), "t");
        assert!(
            !case.reports().join("previous").exists(),
            "the earlier run's reports stay where they are"
        );
    }
}

/// A transaction of runbook's whose runner goes silent is ended by the
/// server: `idle_in_transaction_session_timeout` is 30s unless the runbook
/// says otherwise, in transactional steps and the others alike.
#[test]
fn a_silent_runners_transaction_is_ended_by_the_server_by_default() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        r#"phases:
  - id: main
    kind: custom
    steps:
      - id: in_a_transaction
        sql: CREATE TABLE seen AS SELECT current_setting('idle_in_transaction_session_timeout') AS v;
      - id: on_its_own
        sql:
          statements: INSERT INTO seen SELECT current_setting('idle_in_transaction_session_timeout');
          transaction: false
"#,
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.sql("SELECT string_agg(v, ',') FROM seen"), "30s,30s");
}

/// A process can start with SIGTERM blocked, and one already pending: the
/// signal mask is inherited from whatever started it (a supervisor, a
/// language runtime that blocks signals in its threads). runbook unblocks
/// the stopping signals once its handlers are in place, so that SIGTERM
/// still stops the run, here before its first step, with its report.
/// (Before, it stayed blocked: the run went on to the end, exit 0.)
#[test]
fn a_sigterm_blocked_and_pending_at_start_stops_the_run_before_its_first_step() {
    let db = Db::fresh();
    let case = Case::new(&runbook(&MADE_THEN_SLOW.replace("SECONDS", "0")));
    let launch = "import os, signal, sys\n\
                  signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})\n\
                  os.kill(os.getpid(), signal.SIGTERM)\n\
                  os.execv(sys.argv[1], sys.argv[1:])\n";
    let out = case
        .command_through(&["python3", "-c", launch], &db.url, &[])
        .output()
        .unwrap();
    let run = support::Run::new(out, &case.reports());
    assert_eq!(run.code, 130, "{}{}", run.stderr, run.report);
    assert_eq!(run.report["run"]["status"], "interrupted");
    assert_eq!(
        run.report["run"]["verdict"],
        "INTERRUPTED by SIGTERM before the first step; nothing ran"
    );
    assert_eq!(run.step("made")["status"], "not_run");
    assert_eq!(db.sql("SELECT to_regclass('t') IS NULL"), "t");
}

/// As PID 1 (a container's entry point, or a Kubernetes pod that `exec`s
/// runbook), a signal with no handler is dropped, not fatal. There runbook
/// holds the stopping signals from its start: already while a resume
/// reads its earlier run (here from a server that never answers), and
/// still while the runbook is read. A SIGTERM sent then is counted once
/// the run begins, and the run ends before its first step. (Before, it
/// was dropped and the run went on to the end, exit 0.) Needs a PID
/// namespace (`unshare`, as root); where none can be made, this says so
/// and checks nothing.
#[test]
// The skip is said on stderr, where cargo test shows it.
#[allow(clippy::print_stderr)]
fn as_pid_1_a_sigterm_while_the_runbook_is_read_stops_the_run() {
    let can = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !can {
        eprintln!("skipped: no PID namespace can be made here (unshare --pid, as root)");
        return;
    }
    let pid1 = ["unshare", "--pid", "--fork"];
    // runbook is unshare's child, PID 1 in the new namespace.
    let inner = |child: &std::process::Child| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let children =
                std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))
                    .unwrap_or_default();
            if let Some(p) = children.split_whitespace().next() {
                break p.parse::<i32>().unwrap();
            }
            assert!(Instant::now() < deadline, "runbook never started");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    // Whether `pid` holds SIGTERM: bit 14 of its SigBlk.
    let holds = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .is_some_and(|m| m & (1 << 14) != 0)
    };

    // A resume reads its earlier run before the runbook: from a server
    // that takes the connection and never answers, so it waits there.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "postgres://runbook@127.0.0.1:{}/db",
        silent.local_addr().unwrap().port()
    );
    let mut child = std::process::Command::new(pid1[0])
        .args(&pid1[1..])
        .arg(env!("CARGO_BIN_EXE_runbook"))
        .args([
            "resume",
            "20261202T000000Z-00000000",
            "--database-url",
            &url,
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = inner(&child);
    silent.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let waiting = loop {
        if let Ok((conn, _)) = silent.accept() {
            break conn;
        }
        assert!(
            Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "the resume never connected"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let held_while_reading = holds(pid);
    drop(waiting);
    drop(silent);
    let _ = child.wait();
    assert!(
        held_while_reading,
        "as PID 1, runbook did not hold SIGTERM before it read anything"
    );

    // Held, the signal is counted when the run begins.
    let db = Db::fresh();
    let case = Case::new(&runbook(&MADE_THEN_SLOW.replace("SECONDS", "0")));
    let mut child = case
        .command_through(&pid1, &db.url, &[])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = inner(&child);
    // unshare forks with SIGTERM blocked and unblocks it in the child
    // before it execs runbook: a hold seen before the exec is unshare's,
    // and a signal sent then is dropped once unblocked. Only runbook's
    // own hold counts.
    let is_runbook = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "runbook")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(is_runbook(pid) && holds(pid)) {
        assert!(Instant::now() < deadline, "runbook never held SIGTERM");
        std::thread::sleep(Duration::from_millis(2));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let run = support::Run::of(status.code().unwrap_or(-1), &case.reports());
    assert_eq!(run.code, 130, "{}", run.report["run"]);
    assert_eq!(
        run.report["run"]["verdict"],
        "INTERRUPTED by SIGTERM before the first step; nothing ran"
    );
    assert_eq!(db.sql("SELECT to_regclass('t') IS NULL"), "t");
}
