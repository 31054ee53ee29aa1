//! The `backfill` step against a real PostgreSQL: batches by primary key
//! (composite and text keys too), a checkpoint that survives a kill so the
//! re-run updates every row exactly once, throttling, and the dry run.

mod support;

use std::time::{Duration, Instant};

use support::{Case, Db};

const HEAD: &str = "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: t, version: 1 }\n";

fn backfill(body: &str) -> String {
    format!(
        "{HEAD}phases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: fill\n        backfill:\n{body}"
    )
}

/// A fresh database with `orders`: `rows` rows whose `ref` is to be filled
/// from `legacy`, and `touched` counting each row's updates.
fn orders(rows: u32) -> Db {
    let db = Db::fresh();
    db.sql(&format!(
        "CREATE TABLE orders (id bigint PRIMARY KEY, legacy int, ref int, touched int NOT NULL DEFAULT 0);
         INSERT INTO orders (id, legacy) SELECT g, g % 1000 FROM generate_series(1, {rows}) g;
         ANALYZE orders;"
    ));
    db
}

#[test]
fn a_killed_backfill_resumes_and_updates_every_row_exactly_once() {
    let db = orders(200000);
    let case = Case::new(&backfill(
        "          table: orders\n          set: ref = legacy, touched = touched + 1\n          where: ref IS NULL\n          batch_size: 2000\n          pause: 30ms\n",
    ));
    let mut first = case.command(&db.url, &[]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = db.sql("SELECT count(*) FROM orders WHERE touched = 1");
        if done.parse::<i64>().unwrap_or(0) >= 20000 {
            break;
        }
        assert!(Instant::now() < deadline, "the backfill never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let after_kill: i64 = db
        .sql("SELECT count(*) FROM orders WHERE touched = 1")
        .parse()
        .unwrap();
    assert!(after_kill > 0 && after_kill < 200000, "{after_kill}");
    let ck: i64 = db
        .sql("SELECT rows_updated FROM runbook_backfill_state")
        .parse()
        .unwrap();
    // The checkpoint commits with its batch: it never runs ahead or behind.
    assert_eq!(ck, after_kill);

    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT count(*) FROM orders WHERE touched <> 1"),
        "0"
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM orders WHERE ref IS DISTINCT FROM legacy"),
        "0"
    );
    let d = &run.step("fill")["details"];
    assert_eq!(d["resumed"], true, "{d}");
    assert_eq!(
        d["rows_updated"].as_i64().unwrap() + after_kill,
        200000,
        "{d}"
    );
    assert_eq!(d["all_runs"]["rows_updated"], 200000, "{d}");
    assert!(d["batch_ms"]["p50"].as_f64().unwrap() > 0.0, "{d}");
    assert!(d["batch_ms"]["p99"].as_f64().unwrap() >= d["batch_ms"]["p50"].as_f64().unwrap());
    assert_eq!(run.step("fill")["rows_affected"], d["rows_updated"]);
    assert_eq!(
        db.sql("SELECT finished_at IS NOT NULL FROM runbook_backfill_state"),
        "t"
    );
    // Progress went out in rows against the estimate, with a rate.
    let progress: Vec<serde_json::Value> = run
        .events()
        .into_iter()
        .filter(|e| e["event"] == "step_progress")
        .collect();
    let last = progress.last().unwrap();
    assert_eq!(last["unit"], "rows");
    assert_eq!(last["done"], 200000);
    assert!(last["per_second"].as_f64().unwrap() > 0.0);

    // A finished backfill run again starts a new pass, which the WHERE
    // makes a no-op.
    let again = case.exec(&db.url, &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.step("fill")["details"]["resumed"], false);
    assert_eq!(again.step("fill")["details"]["rows_updated"], 0);
    assert_eq!(
        db.sql("SELECT count(*) FROM orders WHERE touched <> 1"),
        "0"
    );
}

#[test]
fn composite_and_text_keys_page_without_skipping_or_repeating() {
    let db = Db::fresh();
    db.sql(
        "CREATE TABLE events (tenant int, code text, n int NOT NULL DEFAULT 0, kind text,
                              PRIMARY KEY (tenant, code));
         INSERT INTO events (tenant, code, kind)
           SELECT t, 'c-' || c || CASE WHEN c % 7 = 0 THEN ' \"q,{x}' ELSE '' END,
                  CASE WHEN c % 3 = 0 THEN 'old' ELSE 'new' END
           FROM generate_series(1, 13) t, generate_series(1, 500) c;",
    );
    let case = Case::new(&backfill(
        "          table: public.events\n          set: n = n + 1\n          where: kind = 'old'\n          batch_size: 777\n          exact_count: true\n          max_replica_lag: 10s\n          max_active_sessions: 100\n",
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT count(*) FROM events WHERE kind = 'old' AND n <> 1"),
        "0"
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM events WHERE kind = 'new' AND n <> 0"),
        "0"
    );
    let d = &run.step("fill")["details"];
    let old: i64 = db
        .sql("SELECT count(*) FROM events WHERE kind = 'old'")
        .parse()
        .unwrap();
    assert_eq!(d["rows_updated"], old);
    assert_eq!(d["rows_visited"], 13 * 500);
    assert_eq!(d["total_estimate"], 13 * 500);
    assert_eq!(d["batches"], (13 * 500 + 776) / 777);
    assert_eq!(d["throttled_ms"], 0);
}

#[test]
fn a_table_without_a_key_is_refused_with_a_hint_and_key_must_be_unique() {
    let db = Db::fresh();
    db.sql("CREATE TABLE loose (a int, b int); CREATE UNIQUE INDEX ON loose (b); INSERT INTO loose VALUES (1, 1)");
    let run =
        Case::new(&backfill("          table: loose\n          set: a = 2\n")).exec(&db.url, &[]);
    assert_eq!(run.code, 1);
    let e = &run.step("fill")["error"];
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("has no primary key"),
        "{e}"
    );
    assert!(e["hint"].as_str().unwrap().contains("key:"), "{e}");
    // b is unique but nullable: paging by it could skip rows.
    let run = Case::new(&backfill(
        "          table: loose\n          set: a = 2\n          key: [b]\n",
    ))
    .exec(&db.url, &[]);
    assert_eq!(run.code, 1);
    db.sql("ALTER TABLE loose ALTER b SET NOT NULL");
    let run = Case::new(&backfill(
        "          table: loose\n          set: a = 2\n          key: [b]\n",
    ))
    .exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.sql("SELECT a FROM loose"), "2");
    let run =
        Case::new(&backfill("          table: nope\n          set: a = 2\n")).exec(&db.url, &[]);
    assert!(
        run.step("fill")["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
}

/// Each batch is PL/pgSQL with its own variables, which columns of the
/// same names must not shadow, and the SET and WHERE go into it as text:
/// quotes and dollar quotes in them run as written. The batches run as a
/// temporary function, or, for a role that may not create temporary
/// objects, as a DO block each: both ways give the same result.
#[test]
fn columns_named_like_the_batch_variables_and_quotes_in_set_run_as_written() {
    let db = Db::fresh();
    let (role, as_role) = db.owned_by_new_role("notemp");
    db.sql(&format!(
        "CREATE TABLE t (k1 int, seen text, updated int, note text, PRIMARY KEY (k1, seen));
         ALTER TABLE t OWNER TO {role};
         REVOKE TEMP ON DATABASE {name} FROM PUBLIC, {role};",
        name = db.name
    ));
    assert_eq!(
        support::psql(
            &as_role,
            "SELECT has_database_privilege(current_database(), 'TEMP')"
        ),
        "f"
    );
    let case = Case::new(&backfill(
        "          table: t\n          set: \"updated = k1, note = 'it''s $runbook$ $$ done'\"\n          where: \"seen <> 's0' AND note IS DISTINCT FROM 'x''$runbook1$'\"\n          batch_size: 400\n",
    ));
    for url in [&db.url, &as_role] {
        db.sql(
            "TRUNCATE t; INSERT INTO t (k1, seen) SELECT g, 's' || (g % 3) FROM generate_series(1, 2500) g;
             DROP TABLE IF EXISTS runbook_backfill_state;",
        );
        let run = case.exec(url, &[]);
        assert_eq!(run.code, 0, "{url}: {}", run.stderr);
        assert_eq!(
            db.sql("SELECT count(*) FROM t WHERE seen <> 's0' AND updated = k1 AND note = 'it''s $runbook$ $$ done'"),
            "1667",
            "{url}"
        );
        assert_eq!(
            db.sql("SELECT count(*) FROM t WHERE seen = 's0' AND updated IS NULL AND note IS NULL"),
            "833",
            "{url}"
        );
        let d = &run.step("fill")["details"];
        assert_eq!(d["rows_updated"], 1667, "{url}");
        assert_eq!(d["rows_visited"], 2500, "{url}");
        assert_eq!(d["batches"], 7, "{url}");
    }
}

/// Each batch is PL/pgSQL. Without it the step says so before its
/// first batch, and the privileges check sees it before anything runs.
#[test]
fn a_backfill_without_plpgsql_says_so_before_any_batch() {
    let db = orders(100);
    db.sql("DROP EXTENSION plpgsql");
    let fill = "      - id: fill\n        backfill:\n          table: orders\n          set: ref = legacy\n";
    let run = Case::new(&backfill(
        "          table: orders\n          set: ref = legacy\n",
    ))
    .exec(&db.url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let step = run.step("fill");
    support::assert_failed_with(step, "PL/pgSQL");
    assert!(
        step["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("CREATE EXTENSION plpgsql"),
        "{step}"
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM orders WHERE ref IS NOT NULL"),
        "0"
    );
    let run = Case::new(&format!(
        "{HEAD}phases:\n  - id: pre\n    kind: preflight\n    steps:\n      - id: can\n        check: {{ builtin: privileges }}\n  - id: migrate\n    kind: migrate\n    steps:\n{fill}"
    ))
    .exec(&db.url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let rows = run.step("can")["details"]["rows"].to_string();
    assert!(
        rows.contains("plpgsql") && rows.contains("CREATE EXTENSION plpgsql"),
        "{rows}"
    );
    assert_eq!(run.step("fill")["status"], "not_run", "{}", run.report);
}

#[test]
fn a_dry_run_changes_nothing_and_projects_the_time() {
    let db = Db::fresh();
    db.sql(
        "CREATE TABLE t (id int PRIMARY KEY, v int);
         INSERT INTO t SELECT g, NULL FROM generate_series(1, 10000) g; ANALYZE t;",
    );
    let run = Case::new(&backfill(
        "          table: t\n          set: v = id\n          batch_size: 1000\n          dry_run: true\n",
    ))
    .exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.sql("SELECT count(v) FROM t"), "0");
    assert_eq!(
        db.sql("SELECT to_regclass('runbook_backfill_state') IS NULL"),
        "t"
    );
    let d = &run.step("fill")["details"];
    assert_eq!(d["dry_run"], true);
    assert_eq!(d["batch_would_update"], 1000);
    assert_eq!(d["remaining_batches"], 10);
    assert!(d["projected_ms"].as_u64().is_some(), "{d}");

    // Sized by time, the projection uses the size the batch implies: 1,000
    // keys take far less than a second, so fewer, larger batches remain.
    let run = Case::new(&backfill(
        "          table: t\n          set: v = id\n          batch_size: 1000\n          batch_time: 1s\n          dry_run: true\n",
    ))
    .exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.sql("SELECT count(v) FROM t"), "0");
    let d = &run.step("fill")["details"];
    assert_eq!(d["batch_rows"], 1000, "{d}");
    assert!(d["remaining_batches"].as_u64().unwrap() < 10, "{d}");
}

#[test]
fn too_many_active_sessions_throttle_the_backfill_and_it_says_so() {
    let db = Db::fresh();
    db.sql("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT g, 0 FROM generate_series(1, 100) g;");
    let busy = std::process::Command::new("psql")
        .args([&db.url, "-Xqc", "SELECT pg_sleep(1.5)"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    support::wait_until(
        &db,
        "SELECT count(*) > 0 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(1.5)' AND state = 'active'",
    );
    let case = Case::new(&backfill(
        "          table: t\n          set: v = 1\n          max_active_sessions: 0\n",
    ));
    let run = case.exec(&db.url, &[]);
    let mut busy = busy;
    busy.wait().unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let logs = run.log_lines(None);
    assert!(
        logs.iter()
            .any(|l| l.starts_with("throttled: ") && l.contains("other active sessions > 0")),
        "{logs:?} {}",
        run.stderr
    );
    assert!(
        logs.iter().any(|l| l.starts_with("throttle lifted after")),
        "{logs:?}"
    );
    assert!(
        run.step("fill")["details"]["throttled_ms"]
            .as_u64()
            .unwrap()
            >= 500
    );
    assert_eq!(db.sql("SELECT count(*) FROM t WHERE v = 1"), "100");
}

/// A table `t` of 5,000 rows, and another session holding row locks on
/// its last 10 (for 60 s, or until it is terminated); returns once they
/// are held.
fn last_rows_held() -> (Db, std::process::Child) {
    let db = Db::fresh();
    db.sql("CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL DEFAULT 0); INSERT INTO t (id) SELECT generate_series(1, 5000);");
    let holder = std::process::Command::new("psql")
        .args([
            &db.url,
            "-Xqc",
            "BEGIN; SELECT * FROM t WHERE id > 4990 FOR UPDATE; SELECT pg_sleep(60); COMMIT;",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Asleep means past the FOR UPDATE: the row locks are held. (The whole
    // string is one query, so its text shows before the locks are taken.)
    support::wait_until(
        &db,
        "SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE '%FOR UPDATE%' AND wait_event = 'PgSleep' AND datname = current_database() AND pid <> pg_backend_pid()",
    );
    (db, holder)
}

#[test]
fn a_lock_timeout_in_a_batch_is_retried_and_resumes_from_the_checkpoint() {
    // Another session holds row locks on the last rows until it is ended
    // below: how long the backfill takes to get there does not matter.
    let (db, mut holder) = last_rows_held();
    let case = Case::new(&format!(
        "{HEAD}phases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: fill\n        settings: {{ lock_timeout: 300ms }}\n        backfill:\n          table: t\n          set: v = v + 1\n          batch_size: 1000\n"
    ));
    let running = case.spawn(&db.url, &[]);
    // A batch waits on the held rows, and its lock_timeout ends the wait;
    // only then do the locks go.
    let waiting = "SELECT count(*) FILTER (WHERE wait_event_type = 'Lock') FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()";
    support::wait_until(&db, &format!("SELECT ({waiting}) > 0"));
    support::wait_until(&db, &format!("SELECT ({waiting}) = 0"));
    db.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE '%FOR UPDATE%' AND datname = current_database() AND pid <> pg_backend_pid()");
    let run = support::Run::new(running.wait_with_output().unwrap(), &case.reports());
    let _ = holder.wait();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let s = run.step("fill");
    let attempts = s["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 2, "{s}");
    assert_eq!(attempts[0]["error"]["class"], "lock_timeout");
    // Every row of the step is its own, over all its attempts; none came
    // from an earlier run.
    assert_eq!(s["details"]["rows_updated"], 5000, "{s}");
    assert_eq!(s["details"]["all_runs"]["rows_updated"], 5000, "{s}");
    assert_eq!(s["details"]["resumed"], false, "{s}");
    assert_eq!(db.sql("SELECT count(*) FROM t WHERE v <> 1"), "0");
}

#[test]
fn batches_sized_by_time_grow_from_a_small_start_and_stay_under_the_cap() {
    let db = orders(100000);
    let case = Case::new(&backfill(
        "          table: orders\n          set: ref = legacy, touched = touched + 1\n          where: ref IS NULL\n          batch_size: 10\n          batch_time: 100ms\n          max_batch_size: 20000\n",
    ));
    let plan = support::succeeded(
        std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
            .arg("plan")
            .arg(&case.file),
    );
    let plan = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan.contains(
            "batches of about 100ms (the first 10 keys, at most 20000) by the primary key"
        ),
        "{plan}"
    );
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT count(*) FROM orders WHERE touched <> 1 OR ref IS DISTINCT FROM legacy"),
        "0"
    );
    let d = &run.step("fill")["details"];
    assert_eq!(d["rows_updated"], 100000, "{d}");
    assert_eq!(d["batch_time_ms"], 100, "{d}");
    assert_eq!(d["max_batch_size"], 20000, "{d}");
    // Ten keys in far less than 100 ms: the batches after grew (at most
    // 2x each), up to the cap but never past it.
    let (min, max) = (
        d["batch_keys"]["min"].as_i64().unwrap(),
        d["batch_keys"]["max"].as_i64().unwrap(),
    );
    assert!(min <= 10, "{d}");
    assert!(max > 1000 && max <= 20000, "{d}");
    // 100,000 keys at 10 per batch would be 10,000 batches.
    assert!(d["batches"].as_i64().unwrap() < 200, "{d}");
}

#[test]
fn batches_sized_by_time_shrink_when_each_row_is_slow() {
    let db = Db::fresh();
    db.sql(
        "CREATE TABLE orders (id bigint PRIMARY KEY, ref int);
         INSERT INTO orders (id) SELECT g FROM generate_series(1, 1200) g;
         ANALYZE orders;",
    );
    // pg_sleep is volatile, so it runs once per updated row: 2 ms a row.
    let run = Case::new(&backfill(
        "          table: orders\n          set: ref = id + length(pg_sleep(0.002)::text)\n          batch_size: 400\n          batch_time: 50ms\n",
    ))
    .exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT count(*) FROM orders WHERE ref IS DISTINCT FROM id"),
        "0"
    );
    let d = &run.step("fill")["details"];
    // The first batch took about 800 ms for 400 keys; the next ones
    // shrank toward the 25 keys that take 50 ms.
    assert_eq!(d["batch_keys"]["max"], 400, "{d}");
    assert!(d["batch_keys"]["min"].as_i64().unwrap() <= 60, "{d}");
    assert!(d["batch_ms"]["p50"].as_f64().unwrap() < 400.0, "{d}");
}

/// An UPDATE through a row-level security policy skips the rows the policy
/// hides: the backfill reported success with 3 rows of 5 never filled. It
/// now runs with row_security off, as pg_dump reads, so a policy that
/// applies to the role fails the first batch, which changes nothing (the
/// run used to say the database was partly changed, exit 4).
#[test]
fn a_backfill_under_a_row_level_security_policy_fails_rather_than_skip_rows() {
    let pg = runbook::ephemeral::Ephemeral::start().unwrap();
    let admin = pg.url("postgres");
    support::psql(
        &admin,
        "CREATE ROLE migrator LOGIN; GRANT CREATE ON SCHEMA public TO migrator;
         CREATE TABLE accounts (id int PRIMARY KEY, tenant text, v int);
         INSERT INTO accounts SELECT g, CASE WHEN g < 3 THEN 'a' ELSE 'b' END, 0 FROM generate_series(1, 5) g;
         ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
         CREATE POLICY mine ON accounts USING (tenant = 'a');
         GRANT SELECT, UPDATE ON accounts TO migrator;",
    );
    let case = Case::new(&backfill(
        "          table: accounts\n          set: v = 1\n",
    ));
    let run = case.exec(&admin.replacen("runbook@", "migrator@", 1), &[]);
    let step = run.step("fill");
    support::assert_failed_with(step, "row-level security");
    assert_eq!(
        support::psql(&admin, "SELECT count(*) FROM accounts WHERE v = 1"),
        "0"
    );
    // Its one batch was rolled back: nothing changed, and the run says so.
    assert_eq!(run.code, 1, "{}", run.report["run"]);
    assert!(
        run.report["run"]["verdict"]
            .as_str()
            .unwrap()
            .ends_with("nothing was changed"),
        "{}",
        run.report["run"]
    );
    // The privileges preflight sees it coming, for a backup of the whole
    // database (pg_dump refuses the table too) and the backfill, before
    // anything runs.
    let keep = tempfile::tempdir().unwrap();
    let preflight = Case::new(&format!(
        "{HEAD}phases:\n  - id: pre\n    kind: preflight\n    steps:\n      - id: can\n        check: {{ builtin: privileges }}\n  - id: save\n    kind: backup\n    steps:\n      - id: dump\n        backup: {{ path: {} }}\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: fill\n        backfill:\n          table: accounts\n          set: v = 1\n",
        keep.path().join("dump").display()
    ));
    let run = preflight.exec(&admin.replacen("runbook@", "migrator@", 1), &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let rows = run.step("can")["details"]["rows"].clone();
    let missing: Vec<(String, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["missing"].to_string(), r["step"].to_string()))
        .collect();
    assert_eq!(
        missing,
        [
            ("\"BYPASSRLS\"".to_string(), "\"dump\"".to_string()),
            ("\"BYPASSRLS\"".to_string(), "\"fill\"".to_string())
        ],
        "{rows}"
    );
    assert!(
        rows[0]["fix"]
            .as_str()
            .unwrap()
            .contains("ALTER ROLE migrator BYPASSRLS"),
        "{rows}"
    );
    assert_eq!(run.step("fill")["status"], "not_run");
    // The table's owner, to whom the policy does not apply, fills every row.
    let run = case.exec(&admin, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        support::psql(&admin, "SELECT count(*) FROM accounts WHERE v = 1"),
        "5"
    );
}

/// The batches an attempt committed stay when a later attempt fails before
/// committing one: every attempt after the first stopped at the same held
/// rows, and the step read "failed; nothing was changed" (exit 1) over
/// 4,000 updated rows.
#[test]
fn a_retry_that_commits_nothing_does_not_make_the_backfill_unchanged() {
    let (db, mut holder) = last_rows_held();
    let case = Case::new(&format!(
        "{HEAD}phases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: fill\n        settings: {{ lock_timeout: 300ms }}\n        retry: {{ attempts: 2, on: [lock_timeout] }}\n        backfill:\n          table: t\n          set: v = v + 1\n          batch_size: 1000\n"
    ));
    let run = case.exec(&db.url, &[]);
    db.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE '%FOR UPDATE%' AND datname = current_database() AND pid <> pg_backend_pid()");
    let _ = holder.wait();
    assert_eq!(db.sql("SELECT count(*) FROM t WHERE v = 1"), "4000");
    let verdict = run.report["run"]["verdict"].as_str().unwrap();
    assert!(!verdict.contains("nothing was changed"), "{verdict}");
    assert_eq!(run.code, 4, "{}", run.stderr);
    // The step's report counts its rows over both attempts, not the last
    // attempt's none.
    let s = run.step("fill");
    assert_eq!(s["details"]["rows_updated"], 4000, "{s}");
    assert_eq!(s["details"]["batches"], 4, "{s}");
    assert_eq!(s["rows_affected"], 4000, "{s}");
}
