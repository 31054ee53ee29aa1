//! Online safety against a real PostgreSQL: statements split by the parser,
//! CONCURRENTLY taken out of the transaction, INVALID indexes cleaned up,
//! blockers named and waited for, and the lock monitor measuring what our
//! locks did to a concurrent writer.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Case, Db, hold_lock, wait_until};

const HEAD: &str = "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: t, version: 1 }\n";

fn one_step(step: &str) -> String {
    format!("{HEAD}phases:\n  - id: expand\n    kind: expand\n    steps:\n{step}")
}

fn log_lines(run: &support::Run, step: &str) -> Vec<String> {
    run.log_lines(Some(step))
}

#[test]
fn statements_run_one_by_one_and_concurrently_leaves_the_transaction() {
    let db = Db::fresh();
    let case = Case::new(&one_step(
        r#"      - id: build
        sql: |
          CREATE TABLE t (a int, note text DEFAULT 'x; y');
          INSERT INTO t (a) SELECT generate_series(1, 10); -- ten; rows
          CREATE INDEX CONCURRENTLY t_a ON t (a);
"#,
    ));
    let plan = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["plan"])
        .arg(&case.file)
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan.contains("outside a transaction: statement 3 (CREATE INDEX CONCURRENTLY on t)"),
        "{plan}"
    );
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let d = &run.step("build")["details"];
    assert_eq!(d["transaction"], false);
    assert_eq!(d["statements"].as_array().unwrap().len(), 3);
    assert_eq!(d["statements"][1]["rows"], 10);
    assert_eq!(run.step("build")["rows_affected"], 10);
    assert_eq!(
        db.sql("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_a'::regclass"),
        "t"
    );
}

#[test]
fn a_failure_in_a_transaction_leaves_nothing_and_points_at_the_statement() {
    let db = Db::fresh();
    let case = Case::new(&one_step(
        "      - id: two\n        sql: |\n          CREATE TABLE kept (a int);\n          SELECT no_such_column FROM kept;\n",
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 1);
    let err = &run.step("two")["error"];
    assert_eq!(err["sqlstate"], "42703");
    // Line 2 of the block is line 11 of the file; the column is in the statement.
    let loc = err["location"].as_str().unwrap();
    assert!(loc.ends_with(":11:18"), "{loc}");
    assert_eq!(run.step("two")["details"]["failed_statement"], 2);
    assert_eq!(db.sql("SELECT to_regclass('kept') IS NULL"), "t");
}

#[test]
fn begin_inside_a_templated_transactional_step_is_refused_before_it_runs() {
    let db = Db::fresh();
    db.sql("CREATE TABLE t (a int)");
    let case = Case::new(&format!(
        "{HEAD}params:\n  word: {{ type: string, default: COMMIT }}\nphases:\n  - id: x\n    kind: custom\n    steps:\n      - id: s\n        sql: \"INSERT INTO t VALUES (1); {{{{ params.word | unsafe_raw }}}};\"\n"
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.step("s")["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`COMMIT` in a step that runs in a transaction")
    );
    assert_eq!(db.sql("SELECT count(*) FROM t"), "0");
}

#[test]
fn a_failed_concurrent_index_is_dropped_before_the_retry() {
    let db = Db::fresh();
    db.sql("CREATE TABLE t (a int); INSERT INTO t SELECT generate_series(1, 1000)");
    // A writer holds ROW EXCLUSIVE for 3 s. CREATE INDEX CONCURRENTLY
    // commits its catalog entry, then waits for writers; at the 1 s lock
    // timeout it fails and leaves an INVALID index behind.
    let mut writer = hold_lock(&db, "t", "ROW EXCLUSIVE", 3);
    let case = Case::new(&one_step(
        r#"      - id: index
        settings: { lock_timeout: 1s }
        retry: { attempts: 6, backoff: { initial: 500ms, factor: 1.5 } }
        sql: CREATE INDEX CONCURRENTLY t_a ON t (a);
"#,
    ));
    let run = case.exec(&db.url, &[]);
    writer.wait().unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let attempts = run.step("index")["attempts"].as_array().unwrap().clone();
    assert!(attempts.len() >= 2, "{attempts:?}");
    assert_eq!(attempts[0]["error"]["sqlstate"], "55P03");
    let warnings = run.report["warnings"].to_string();
    assert!(
        warnings.contains("left the INVALID index t_a; runbook dropped it"),
        "{warnings}"
    );
    let logs = log_lines(&run, "index");
    assert!(
        logs.iter()
            .any(|l| l.starts_with("blocker: pid ") && l.contains("holds t RowExclusiveLock")),
        "{logs:?}"
    );
    assert_eq!(
        db.sql(
            "SELECT string_agg(indisvalid::text, ',') FROM pg_index WHERE indrelid = 't'::regclass"
        ),
        "true"
    );
}

#[test]
fn a_failed_concurrent_index_that_is_not_retried_is_still_dropped() {
    let db = Db::fresh();
    db.sql("CREATE TABLE t (a int); INSERT INTO t VALUES (1), (1)");
    let case = Case::new(&one_step(
        "      - id: unique\n        sql: CREATE UNIQUE INDEX CONCURRENTLY t_a ON t (a);\n",
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 1);
    let s = run.step("unique");
    assert_eq!(s["error"]["sqlstate"], "23505");
    assert_eq!(s["details"]["dropped_invalid_indexes"][0], "t_a");
    assert_eq!(
        db.sql("SELECT count(*) FROM pg_index WHERE indrelid = 't'::regclass"),
        "0"
    );
}

#[test]
fn if_not_exists_over_an_invalid_index_is_a_failure_not_a_success() {
    let db = Db::fresh();
    db.sql("CREATE TABLE t (a int); INSERT INTO t VALUES (1), (1)");
    // Leave an INVALID index the way a crashed build would.
    let out = Command::new("psql")
        .args([
            &db.url,
            "-Xqc",
            "CREATE UNIQUE INDEX CONCURRENTLY t_a ON t (a)",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    db.sql("DELETE FROM t WHERE ctid = (SELECT max(ctid) FROM t)");
    let case = Case::new(&one_step(
        "      - id: again\n        sql: CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_a ON t (a);\n",
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 1);
    let e = &run.step("again")["error"];
    assert!(e["message"].as_str().unwrap().contains("is INVALID"), "{e}");
    assert!(
        e["hint"]
            .as_str()
            .unwrap()
            .contains("DROP INDEX CONCURRENTLY t_a"),
        "{e}"
    );
}

#[test]
fn wait_for_blockers_waits_for_the_lock_holder_instead_of_failing() {
    let db = Db::fresh();
    db.sql("CREATE TABLE busy (n int)");
    let mut holder = hold_lock(&db, "busy", "ACCESS SHARE", 2);
    let case = Case::new(&one_step(
        r#"      - id: alter
        settings: { wait_for_blockers: 20s, lock_timeout: 500ms }
        retry: { attempts: 1 }
        sql: ALTER TABLE busy ADD COLUMN note text;
"#,
    ));
    let run = case.exec(&db.url, &[]);
    holder.wait().unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.step("alter")["attempts"].as_array().unwrap().len(), 1);
    let logs = log_lines(&run, "alter");
    assert!(
        logs.iter()
            .any(|l| l.contains("holds busy AccessShareLock")),
        "{logs:?}"
    );
    assert!(
        logs.iter().any(|l| l.starts_with("waiting up to 20s")),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.starts_with("blocking sessions finished after")),
        "{logs:?}"
    );
    let blockers = &run.step("alter")["details"]["blockers"];
    assert_eq!(blockers[0]["locks"][0], "busy AccessShareLock");
}

#[test]
fn without_wait_for_blockers_the_blocker_is_named_and_the_lock_timeout_decides() {
    let db = Db::fresh();
    db.sql("CREATE TABLE busy (n int)");
    let mut holder = hold_lock(&db, "busy", "ACCESS SHARE", 2);
    let case = Case::new(&one_step(
        "      - id: alter\n        settings: { lock_timeout: 300ms }\n        retry: { attempts: 1 }\n        sql: ALTER TABLE busy ADD COLUMN note text;\n",
    ));
    let run = case.exec(&db.url, &[]);
    holder.wait().unwrap();
    assert_eq!(run.code, 1);
    assert_eq!(run.step("alter")["error"]["class"], "lock_timeout");
    let logs = log_lines(&run, "alter");
    assert!(
        logs.iter().any(|l| l.starts_with("blocker: pid ")),
        "{logs:?}"
    );
}

#[test]
fn the_lock_monitor_records_a_writer_blocked_by_our_alter() {
    let db = Db::fresh();
    db.sql("CREATE TABLE t (n int)");
    let case = Case::new(&one_step(
        "      - id: slow_alter\n        sql: |\n          ALTER TABLE t ADD COLUMN note text;\n          SELECT pg_sleep(2);\n",
    ));
    let mut exec = case.command(&db.url, &[]).spawn().unwrap();
    // Once our ALTER holds its lock, a writer queues behind it.
    wait_until(
        &db,
        "SELECT count(*) > 0 FROM pg_locks WHERE relation = 't'::regclass AND mode = 'AccessExclusiveLock' AND granted",
    );
    // The statement's own time, as psql measures it: not psql's start
    // and connection, which a loaded machine makes slow.
    let timed = Command::new("psql")
        .args([
            &db.url,
            "-Xq",
            "-c",
            "\\timing on",
            "-c",
            "INSERT INTO t (n) VALUES (1)",
        ])
        .output()
        .unwrap();
    assert!(timed.status.success());
    let text = String::from_utf8_lossy(&timed.stdout);
    let ms: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Time: "))
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no timing in {text}"));
    let writer_waited = Duration::from_micros((ms * 1000.0) as u64);
    let status = exec.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let run = support::Run::new(
        std::process::Output {
            status,
            stdout: Vec::new(),
            stderr: Vec::new(),
        },
        &case.reports(),
    );
    assert!(
        writer_waited > Duration::from_millis(1000),
        "{writer_waited:?}"
    );
    let l = &run.step("slow_alter")["lock_impact"];
    assert!(l["sessions_waited"].as_u64().unwrap() >= 1, "{l}");
    assert_eq!(l["waiting_max"], 1, "{l}");
    let waited = l["waited_max_ms"].as_u64().unwrap();
    // Sampled every 250 ms: the monitor sees the wait to within a sample,
    // plus the scheduling slack of a loaded 2-core machine running the
    // whole suite at once (a sample seen 350 ms late in CI).
    assert!(
        waited + 500 >= writer_waited.as_millis() as u64
            && waited <= writer_waited.as_millis() as u64 + 50,
        "monitor {waited} ms, writer {writer_waited:?}"
    );
    assert_eq!(l["access_exclusive_on"], "t", "{l}");
    assert!(l["access_exclusive_ms"].as_u64().unwrap() >= 1500, "{l}");
    let warnings = run.report["warnings"].to_string();
    assert!(
        warnings.contains("step `slow_alter` made 1 other session(s) wait on its locks"),
        "{warnings}"
    );
    let md = std::fs::read_to_string(case.reports().join("report.md")).unwrap();
    assert!(md.contains("| `slow_alter` | 1 |"), "{md}");
}

#[test]
fn a_quiet_step_reports_no_impact() {
    let db = Db::fresh();
    db.sql("CREATE TABLE t (n int)");
    let case = Case::new(&one_step(
        "      - id: add\n        sql: ALTER TABLE t ADD COLUMN note text;\n      - id: unwatched\n        settings: { lock_monitor: false }\n        sql: ALTER TABLE t ADD COLUMN other text;\n",
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.step("unwatched")["lock_impact"].is_null());
    let l = &run.step("add")["lock_impact"];
    assert_eq!(l["sessions_waited"], 0, "{l}");
    assert_eq!(l["waited_total_ms"], 0, "{l}");
    // A step shorter than one interval is not sampled at all.
    assert!(l["samples"].as_u64().is_some(), "{l}");
    assert!(run.report["warnings"].as_array().unwrap().is_empty());
}

#[test]
fn the_production_runbook_stops_at_its_gate_then_finishes_on_a_rerun() {
    let db = Db::fresh();
    let yaml = std::fs::read_to_string("runbooks/prod-migration.yml").unwrap();
    let case = Case::new(&yaml);
    // Without approval: everything up to the contract gate, then exit 6.
    let first = case.exec(&db.url, &["--set", "seed=true"]);
    assert_eq!(first.code, 6, "{}", first.stderr);
    assert_eq!(
        db.sql(
            "SELECT count(*) FROM orders WHERE customer_ref IS DISTINCT FROM legacy_customer_id"
        ),
        "0"
    );
    assert_eq!(
        first.step("backfill_column")["details"]["rows_updated"],
        50000
    );
    assert_eq!(first.step("table_backup")["status"], "succeeded");
    // Dropping a column makes the risk high: one approval is not enough.
    let one = case.exec(
        &db.url,
        &[
            "--approve",
            "contract",
            "--as",
            "oncall",
            "--set",
            "watch_writers=false",
        ],
    );
    assert_eq!(one.code, 6, "{}", one.stderr);
    assert_eq!(one.report["phases"][6]["approvers_required"], 2);
    // A reviewer's approval, made ahead of time for this text and params.
    let review = case.dir.path().join("review.json");
    case.approve(
        &review,
        &[
            "--phase",
            "contract",
            "--as",
            "reviewer",
            "--set",
            "watch_writers=false",
        ],
    );
    // The rerun skips what exists, finds nothing left to backfill, and contracts.
    let second = case.exec(
        &db.url,
        &[
            "--approve",
            "contract",
            "--as",
            "oncall",
            "--approval",
            review.to_str().unwrap(),
            "--set",
            "watch_writers=false",
        ],
    );
    assert_eq!(second.step("writers_keep_flowing")["status"], "skipped");
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(second.step("add_column")["status"], "skipped");
    assert_eq!(second.step("add_foreign_key")["status"], "skipped");
    assert_eq!(second.step("backfill_column")["details"]["rows_updated"], 0);
    assert_eq!(
        db.sql("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'customer_ref'"),
        "t"
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'legacy_customer_id' AND NOT attisdropped"),
        "0"
    );
    assert_eq!(db.sql("SELECT count(*) FROM orders"), "50000");
}

#[test]
fn the_production_runbook_undoes_its_expand_when_the_foreign_key_finds_orphans() {
    let db = Db::fresh();
    db.sql(
        "CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL);
         INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 100) g;
         CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                              legacy_customer_id bigint NOT NULL);
         INSERT INTO orders (legacy_customer_id) SELECT 1 + g % 100 FROM generate_series(1, 1000) g;
         INSERT INTO orders (legacy_customer_id) VALUES (4242);",
    );
    let yaml = std::fs::read_to_string("runbooks/prod-migration.yml").unwrap();
    let case = Case::new(&yaml);
    let run = case.exec(&db.url, &["--set", "watch_writers=false"]);
    // The NOT VALID foreign key already checks new values: the backfill's
    // batch that would copy the orphan fails and rolls back whole.
    assert_eq!(run.code, 4, "{}", run.stderr);
    // No rollback failed: the expand is kept on purpose, and the status
    // says so.
    assert_eq!(run.report["run"]["status"], "partly_undone");
    assert_eq!(run.step("backfill_column")["status"], "failed");
    assert_eq!(run.step("backfill_column")["details"]["rows_updated"], 0);
    let verdict = run.report["run"]["verdict"].as_str().unwrap();
    assert!(
        verdict.contains("the changes of phase(s) `expand` are still in place"),
        "{verdict}"
    );
    assert_eq!(run.step("table_backup")["status"], "succeeded");
    assert_eq!(run.step("validate_foreign_key")["status"], "not_run");
    assert_eq!(run.step("drop_legacy_column")["status"], "not_run");
    // Nothing was lost: the legacy column and every row are as they were.
    assert_eq!(
        db.sql("SELECT count(*), count(customer_ref), sum(legacy_customer_id) FROM orders"),
        format!(
            "1001|0|{}",
            (1..=1000).map(|g| 1 + g % 100).sum::<i64>() + 4242
        )
    );
    // The person's move: undo exactly what the run did, verified.
    let id = run.report["run"]["id"].as_str().unwrap();
    let dir = case.dir.path().join("undo");
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["rollback", id, "--yes", "--progress", "never"])
        .args(["--database-url", &db.url, "--report-dir"])
        .arg(&dir)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let undo = support::Run::new(out, &dir);
    assert_eq!(undo.code, 0, "{}", undo.stderr);
    assert_eq!(
        db.sql(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass \
             AND attname = 'customer_ref' AND NOT attisdropped"
        ),
        "0"
    );
    assert_eq!(db.sql("SELECT count(*) FROM orders"), "1001");
}
