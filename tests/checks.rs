//! Every built-in check against a real PostgreSQL, passing on a healthy
//! database and failing on one set up to break it.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::{Case, Db, psql, wait_until};

const HEAD: &str = "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: t, version: 1 }\n";

const HISTORY: &str = "CREATE TABLE runbook_migrations (version text PRIMARY KEY, name text, checksum text,
    applied_at timestamptz DEFAULT now(), duration_ms bigint, run_id text, dirty boolean NOT NULL DEFAULT false)";

fn healthy(db: &Db) {
    db.sql(&format!(
        "CREATE TABLE parent (id serial PRIMARY KEY, v int NOT NULL);
         CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id));
         INSERT INTO parent (v) SELECT g FROM generate_series(1, 10) g;
         INSERT INTO child SELECT g, g FROM generate_series(1, 10) g;
         {HISTORY}; INSERT INTO runbook_migrations (version, name) VALUES ('1', 'init');"
    ));
}

fn checks(steps: &str) -> String {
    format!("{HEAD}phases:\n  - id: checks\n    kind: verify\n    steps:\n{steps}")
}

/// Each step's id with whether its check passed.
fn outcomes(run: &support::Run, ids: &[&str]) -> Vec<(String, bool)> {
    ids.iter()
        .map(|id| {
            let s = run.step(id);
            let passed = s["check"]["expectations"]
                .as_array()
                .is_some_and(|e| !e.is_empty() && e.iter().all(|x| x["passed"] == true));
            (id.to_string(), passed)
        })
        .collect()
}

const ALL: &[&str] = &[
    "long_tx",
    "blocking",
    "active",
    "idle",
    "lag",
    "size",
    "version",
    "pending",
    "dirty",
    "disk",
    "invalid",
    "unvalidated",
    "orphans",
    "nulls",
    "sequences",
    "counts_before",
    "counts_after",
    "schema_before",
    "schema_after",
];

fn every_check(severity: &str, between: &str) -> String {
    let sev = format!("severity: {severity}");
    checks(&format!(
        r#"      - {{ id: long_tx, check: {{ builtin: long_running_transactions, max_age: 1s, {sev} }} }}
      - {{ id: blocking, check: {{ builtin: blocking_locks, {sev} }} }}
      - {{ id: active, check: {{ builtin: active_connections, max: 1, {sev} }} }}
      - {{ id: idle, check: {{ builtin: idle_in_transaction, max_age: 500ms, {sev} }} }}
      - {{ id: lag, check: {{ builtin: replication_lag, max: 10s, {sev} }} }}
      - {{ id: size, check: {{ builtin: database_size, max: {size}, {sev} }} }}
      - {{ id: version, check: {{ builtin: server_version, min: {version}, {sev} }} }}
      - {{ id: pending, check: {{ builtin: pending_migrations, dir: migrations, {sev} }} }}
      - {{ id: dirty, check: {{ builtin: dirty_migrations, {sev} }} }}
      - {{ id: disk, check: {{ builtin: disk_free_for_backup, path: backups/next, margin: {margin}, {sev} }} }}
      - {{ id: invalid, check: {{ builtin: invalid_indexes, {sev} }} }}
      - {{ id: unvalidated, check: {{ builtin: unvalidated_constraints, {sev} }} }}
      - {{ id: orphans, check: {{ builtin: foreign_key_orphans, {sev} }} }}
      - {{ id: nulls, check: {{ builtin: not_null_violations, table: public.parent, column: v, {sev} }} }}
      - {{ id: sequences, check: {{ builtin: sequence_exhaustion, {sev} }} }}
      - {{ id: counts_before, check: {{ builtin: row_counts, tables: [public.parent, child], {sev} }} }}
      - {{ id: schema_before, check: {{ builtin: schema_matches, {sev} }} }}
{between}      - {{ id: counts_after, check: {{ builtin: row_counts, from: steps.counts_before, {sev} }} }}
      - {{ id: schema_after, check: {{ builtin: schema_matches, from: steps.schema_before, {sev} }} }}
"#,
        size = if severity == "error" { "10GB" } else { "1MB" },
        version = if severity == "error" { "12" } else { "99" },
        margin = if severity == "error" {
            "0.5"
        } else {
            "1000000000"
        },
    ))
}

#[test]
fn every_builtin_passes_on_a_healthy_database() {
    let db = Db::fresh();
    healthy(&db);
    let case = Case::new(&every_check("error", ""));
    std::fs::create_dir(case.dir.path().join("migrations")).unwrap();
    std::fs::write(
        case.dir.path().join("migrations/1_init.up.sql"),
        "SELECT 1;",
    )
    .unwrap();
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lag = &run.step("lag")["check"]["expectations"][0];
    assert_eq!(lag["actual"], 0, "no replicas: nothing lags");
    for (id, passed) in outcomes(
        &run,
        &ALL.iter()
            .filter(|i| **i != "counts_before" && **i != "schema_before")
            .copied()
            .collect::<Vec<_>>(),
    ) {
        assert!(passed, "{id}: {}", run.step(&id));
    }
    // Recording steps pass without an expectation, and hand their results on.
    assert_eq!(run.step("counts_before")["status"], "succeeded");
    let counts = &run.step("counts_after")["details"];
    assert_eq!(counts["builtin"], "row_counts");
    let hash = run.step("schema_after")["check"]["expectations"][0]["actual"].clone();
    assert_eq!(hash.as_str().unwrap().len(), 64);
    // Rows of the record step are the tables and their counts.
    let md = std::fs::read_to_string(case.reports().join("report.md")).unwrap();
    assert!(md.contains("counts_after"), "{md}");
}

#[test]
fn every_builtin_but_replication_lag_fails_on_a_broken_database() {
    let db = Db::fresh();
    healthy(&db);
    db.sql(
        "CREATE TABLE busy (n int);
         INSERT INTO runbook_migrations (version, name, dirty) VALUES ('2', 'half', true);
         INSERT INTO parent (v) VALUES (11);
         ALTER TABLE parent ALTER v DROP NOT NULL; UPDATE parent SET v = NULL WHERE id = 1;
         ALTER TABLE parent ADD CONSTRAINT v_positive CHECK (v > 0) NOT VALID;
         CREATE TABLE loose_child (id int, parent_id int);
         INSERT INTO loose_child VALUES (1, 1), (2, 999), (3, NULL);
         ALTER TABLE loose_child ADD CONSTRAINT loose_fk FOREIGN KEY (parent_id) REFERENCES parent (id) NOT VALID;
         SELECT setval('parent_id_seq', 2000000000);
         CREATE TABLE dup (a int); INSERT INTO dup VALUES (1), (1);",
    );
    // An INVALID index, as a failed concurrent build leaves it.
    let out = Command::new("psql")
        .args([
            &db.url,
            "-Xqc",
            "CREATE UNIQUE INDEX CONCURRENTLY dup_a ON dup (a)",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    // A session idle in a transaction, holding a lock on `busy`...
    let mut idle = Command::new("psql")
        .args([&db.url, "-Xq"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    idle.stdin
        .as_mut()
        .unwrap()
        .write_all(b"BEGIN; LOCK TABLE busy IN ACCESS EXCLUSIVE MODE;\n")
        .unwrap();
    wait_until(
        &db,
        "SELECT count(*) > 0 FROM pg_locks WHERE relation = 'busy'::regclass AND granted",
    );
    // ...and two sessions waiting on it.
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            Command::new("psql")
                .args([&db.url, "-Xqc", "SELECT count(*) FROM busy"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    wait_until(
        &db,
        "SELECT count(*) = 2 FROM pg_locks WHERE relation = 'busy'::regclass AND NOT granted",
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));

    let between = "      - id: lose_a_row\n        sql: DELETE FROM child WHERE id = 10;\n      - id: change_schema\n        sql: ALTER TABLE child ADD COLUMN note text;\n";
    let case = Case::new(&every_check("warn", between));
    std::fs::create_dir(case.dir.path().join("migrations")).unwrap();
    for f in ["1_init.up.sql", "2_half.up.sql", "3_next.up.sql"] {
        std::fs::write(case.dir.path().join("migrations").join(f), "SELECT 1;").unwrap();
    }
    let run = case.exec(&db.url, &[]);
    let _ = idle.kill();
    let _ = idle.wait();
    for mut w in waiters {
        let _ = w.wait();
    }
    assert_eq!(
        run.code, 0,
        "warn-only checks do not fail the run: {}",
        run.stderr
    );
    let expect_failed: Vec<&str> = ALL
        .iter()
        .filter(|i| !["lag", "counts_before", "schema_before"].contains(i))
        .copied()
        .collect();
    for (id, passed) in outcomes(&run, &expect_failed) {
        assert!(!passed, "{id} should fail: {}", run.step(&id));
        assert_eq!(run.step(&id)["status"], "failed", "{id}");
    }
    // The rows say what was found.
    let pending = &run.step("pending")["check"];
    assert_eq!(pending["rows"], 2, "2 (dirty) and 3 are pending: {pending}");
    let orphans = run.step("orphans");
    assert_eq!(orphans["check"]["rows"], 1, "{orphans}");
    assert!(run.report.to_string().contains("loose_fk"));
    let counts = run.step("counts_after");
    assert!(
        counts["check"]["expectations"][0]["actual"] == 1,
        "{counts}"
    );
    let schema = run.step("schema_after");
    assert_eq!(schema["check"]["rows"], 1, "{schema}");
    let warnings = run.report["warnings"].to_string();
    assert!(
        warnings.contains("check `schema_after` failed"),
        "{warnings}"
    );
    let events = std::fs::read_to_string(case.reports().join("events.jsonl")).unwrap();
    assert!(
        events.contains("table public.child"),
        "the changed object is named"
    );
    assert!(events.contains("changed"));
}

#[test]
fn builtin_arguments_are_checked_before_anything_runs() {
    let case = Case::new(&checks(
        r#"      - { id: a, check: { builtin: long_running_transactions, max: 3 } }
      - { id: b, check: { builtin: active_connections } }
      - { id: c, check: { builtin: database_size, max: lots } }
      - { id: d, check: { query: SELECT 1, max_age: 5min } }
      - { id: e, check: { builtin: row_counts, from: steps.later } }
      - { id: later, check: { builtin: invalid_indexes } }
"#,
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .arg("validate")
        .arg(&case.file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    for needle in [
        "`long_running_transactions` does not take `max`",
        "`active_connections` needs `max`",
        "`max` of `database_size` must be a size",
        "`max_age` is an argument of built-in checks",
        "steps.later",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

/// `settings.search_path` is the session's for built-ins too: a table on it
/// is counted where it lives, not as `public.X`, and a mixed-case name is
/// quoted.
#[test]
fn row_counts_follow_the_search_path_and_quote_identifiers() {
    let db = Db::fresh();
    db.sql(
        r#"CREATE SCHEMA app; CREATE TABLE app.orders (id int); INSERT INTO app.orders SELECT generate_series(1, 7);
           CREATE TABLE app."Mixed" (id int); INSERT INTO app."Mixed" VALUES (1);"#,
    );
    let yaml = format!(
        "{HEAD}settings: {{ search_path: app }}\nphases:\n  - id: checks\n    kind: verify\n    steps:\n      - id: counts\n        check: {{ builtin: row_counts, tables: [orders, '\"Mixed\"'] }}\n"
    );
    let case = Case::new(&yaml);
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows = &run.step("counts")["details"]["rows"];
    assert_eq!(rows[0]["table"], "app.\"Mixed\"", "{rows}");
    assert_eq!(rows[0]["rows"], 1);
    assert_eq!(rows[1]["table"], "app.orders");
    assert_eq!(rows[1]["rows"], 7);
    // report.md shows what a passing check saw: it is evidence.
    let md = std::fs::read_to_string(run.dir.join("report.md")).unwrap();
    assert!(md.contains("### ✅ `counts`"), "{md}");
    assert!(md.contains("`row_counts` found 2 row(s):"), "{md}");
    assert!(
        md.contains(r#"- `{"table":"app.orders","rows":7}`"#),
        "{md}"
    );
}

/// A table that a migration dropped between two row_counts is gone with
/// its rows: none lost when it held none (a contract migration dropping an
/// empty table, as crates.io's drop_cache_tags_backfills does), and its
/// rows lost when it held some.
#[test]
fn row_counts_pass_a_table_that_is_gone_only_if_it_held_no_rows() {
    let run = |drop: &str| {
        let db = Db::fresh();
        db.sql("CREATE TABLE empty (id int); CREATE TABLE full_ (id int); INSERT INTO full_ VALUES (1), (2);");
        let case = Case::new(&format!(
            "{HEAD}phases:
  - id: contract
    kind: contract
    steps:
      - {{ id: before, check: {{ builtin: row_counts }} }}
      - {{ id: drop, sql: \"DROP TABLE {drop}\" }}
      - {{ id: after, check: {{ builtin: row_counts, from: steps.before }} }}
"
        ));
        let run = case.exec(&db.url, &[]);
        let rows = run.step("after")["details"]["rows"].clone();
        let gone = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["gone"] == true)
            .cloned()
            .unwrap_or_else(|| panic!("no gone table: {rows}"));
        (run.code, gone)
    };
    let (code, gone) = run("empty");
    assert_eq!(code, 0, "{gone}");
    assert_eq!(
        gone,
        serde_json::json!({"table": "public.empty", "rows": null, "expected": 0, "gone": true, "ok": true})
    );
    // The check fails; what the run then does with the drop is the
    // executor's business (here: the phase cannot undo it, exit 4).
    let (code, gone) = run("full_");
    assert_ne!(code, 0, "{gone}");
    assert_eq!(gone["expected"], 2, "{gone}");
    assert_eq!(gone["ok"], false, "{gone}");
}

/// row_counts counts what a backup counts: a plain table's own rows, since
/// pg_dump copies an inheritance child on its own, and a partitioned
/// table's rows in its partitions. Before, `base` was counted with its
/// child's row (3 against the backup's 2), and the check failed after a
/// backup with nothing lost.
#[test]
fn row_counts_count_each_table_as_a_backup_does() {
    let db = Db::fresh();
    db.sql(
        "CREATE TABLE base (id int); INSERT INTO base VALUES (1), (2);
         CREATE TABLE child (note text) INHERITS (base); INSERT INTO child VALUES (3, 'x');
         CREATE TABLE events (id int, at date) PARTITION BY RANGE (at);
         CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
         CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
         INSERT INTO events VALUES (1, '2024-05-01'), (2, '2025-05-01'), (3, '2025-06-01');",
    );
    let case = Case::new(&format!(
        "{HEAD}phases:
  - id: backup
    kind: backup
    steps:
      - id: dump
        backup: {{ path: backups/one }}
  - id: checks
    kind: verify
    steps:
      - {{ id: against_backup, check: {{ builtin: row_counts, from: steps.dump }} }}
      - {{ id: every_table, check: {{ builtin: row_counts }} }}
      - {{ id: named, check: {{ builtin: row_counts, tables: [base, events] }} }}
"
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let counts = |id: &str| -> Vec<(String, i64)> {
        run.step(id)["details"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["table"].as_str().unwrap().to_string(),
                    r["rows"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let own = |list: &[(&str, i64)]| -> Vec<(String, i64)> {
        list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    };
    assert_eq!(
        counts("against_backup"),
        own(&[
            ("public.base", 2),
            ("public.child", 1),
            ("public.events_2024", 1),
            ("public.events_2025", 2),
        ])
    );
    assert_eq!(
        counts("every_table"),
        own(&[
            ("public.base", 2),
            ("public.child", 1),
            ("public.events", 3)
        ])
    );
    assert_eq!(
        counts("named"),
        own(&[("public.base", 2), ("public.events", 3)])
    );
}

/// Without `tables:` or `from:`, row_counts reads no foreign server: a
/// partitioned table with a foreign partition is counted by its other
/// partitions, each on its own. Before, the partitioned table was counted
/// whole, through the foreign partition, and the step failed on its
/// wrapper ("has no handler"; under postgres_fdw it connects).
#[test]
fn row_counts_of_every_table_read_no_foreign_partition() {
    let db = Db::fresh();
    db.sql(
        "CREATE FOREIGN DATA WRAPPER dummy; CREATE SERVER remote FOREIGN DATA WRAPPER dummy;
         CREATE TABLE m (id int, at date) PARTITION BY RANGE (at);
         CREATE TABLE m_2024 PARTITION OF m FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')
           PARTITION BY RANGE (at);
         CREATE TABLE m_2024_h1 PARTITION OF m_2024 FOR VALUES FROM ('2024-01-01') TO ('2024-07-01');
         CREATE FOREIGN TABLE m_2020 PARTITION OF m FOR VALUES FROM ('2020-01-01') TO ('2021-01-01')
           SERVER remote;
         INSERT INTO m_2024_h1 VALUES (1, '2024-02-01'), (2, '2024-03-01');
         CREATE TABLE plain (id int); INSERT INTO plain VALUES (1);",
    );
    let case = Case::new(&checks(
        "      - { id: counts, check: { builtin: row_counts } }\n",
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.step("counts")["details"]["rows"],
        serde_json::json!([
            { "table": "public.m_2024_h1", "rows": 2 },
            { "table": "public.plain", "rows": 1 },
        ])
    );
}

/// A check of the runbook's own query shows its rows in the report,
/// passed or failed.
#[test]
fn a_passing_query_check_shows_its_rows_in_the_report() {
    let db = Db::fresh();
    let yaml = checks(
        "      - id: numbers\n        check:\n          query: SELECT g AS n FROM generate_series(1, 12) g\n          expect: { rows: 12 }\n",
    );
    let case = Case::new(&yaml);
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.step("numbers")["details"]["rows_total"], 12);
    let md = std::fs::read_to_string(run.dir.join("report.md")).unwrap();
    assert!(
        md.contains("`the query` found 12 row(s), the first 10:"),
        "{md}"
    );
    assert!(
        md.contains("- `{\"n\":10}`") && !md.contains("- `{\"n\":11}`"),
        "{md}"
    );
}

/// A check may be a SHOW: it runs on its own (it cannot be a subquery) and
/// its value is compared as text.
#[test]
fn a_show_check_reads_a_setting() {
    let db = Db::fresh();
    let yaml = format!(
        "{HEAD}settings: {{ lock_timeout: 3s }}\nphases:\n  - id: checks\n    kind: verify\n    steps:\n      - id: lt\n        check: {{ query: SHOW lock_timeout, expect: {{ lock_timeout: 3s }} }}\n"
    );
    let case = Case::new(&yaml);
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.step("lt")["details"]["rows"][0]["lock_timeout"], "3s");
}

/// A check and a snapshot can read another database of the server (a
/// scratch restore): the built-in runs there, the snapshot proves the copy
/// has the source's schema, and the run's own session (and lock) comes
/// back after each.
#[test]
fn a_check_and_a_snapshot_can_read_another_database() {
    let db = Db::fresh();
    let copy = Db::fresh();
    for d in [&db, &copy] {
        d.sql(
            "CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (id int, parent_id int);
             ALTER TABLE child ADD CONSTRAINT child_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES parent NOT VALID;",
        );
    }
    copy.sql(
        "ALTER TABLE child DROP CONSTRAINT child_parent_id_fkey; INSERT INTO child VALUES (1, 99);",
    );
    let yaml = format!(
        "{HEAD}params:\n  copy: {{ type: string }}\nphases:\n  - id: verify\n    kind: verify\n    on_failure: continue\n    steps:\n\
         \x20     - id: source\n        snapshot: {{}}\n\
         \x20     - id: copy_schema\n        snapshot: {{ database: \"{{{{ params.copy }}}}\", expect: {{ same_as: steps.source }} }}\n\
         \x20     - id: copy_unvalidated\n        check: {{ builtin: unvalidated_constraints, database: \"{{{{ params.copy }}}}\" }}\n\
         \x20     - id: own_unvalidated\n        check: {{ builtin: unvalidated_constraints }}\n\
         \x20     - id: back_home\n        check: {{ query: \"SELECT current_database() AS db\", expect: {{ db: {} }} }}\n\
         \x20     - id: nowhere\n        check: {{ query: \"SELECT 1\", database: no_such_database_here }}\n",
        db.name
    );
    let case = Case::new(&yaml);
    let run = case.exec(&db.url, &["--set", &format!("copy={}", copy.name)]);
    assert!(run.code != 5, "{}", run.stderr);
    assert_eq!(
        run.step("copy_schema")["status"],
        "failed",
        "the copy lost a constraint: {}",
        run.stderr
    );
    assert!(
        run.step("copy_schema")["error"]["message"]
            .as_str()
            .unwrap()
            .contains("child_parent_id_fkey"),
        "{}",
        run.step("copy_schema")
    );
    assert_eq!(
        run.step("copy_unvalidated")["status"],
        "succeeded",
        "the copy has no NOT VALID constraint left"
    );
    assert_eq!(
        run.step("own_unvalidated")["status"],
        "failed",
        "the run's own database has one"
    );
    assert_eq!(
        run.step("back_home")["status"],
        "succeeded",
        "{}",
        run.step("back_home")
    );
    let nowhere = run.step("nowhere");
    assert_eq!(nowhere["status"], "failed");
    assert!(
        nowhere["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot connect to database `no_such_database_here`"),
        "{nowhere}"
    );
}

/// `replication_lag` against a real streaming replica of a cluster of its
/// own: with none connected it passes and says it measured none; a replica
/// whose replay is paused while the primary writes is found lagging; a role
/// that may not see the replicas' lag gets an error, not a pass; and once
/// the replica is gone, the slot it left behind is found.
#[test]
fn replication_lag_finds_a_lagging_replica_and_an_abandoned_slot() {
    use runbook::ephemeral::Ephemeral;
    let primary = Ephemeral::start().unwrap();
    let url = primary.url("postgres");
    let case = Case::new(&checks(
        "      - { id: lag, check: { builtin: replication_lag, max: 500ms } }\n",
    ));
    let lag = |url: &str| {
        let run = case.exec(url, &[]);
        let step = run.step("lag").clone();
        let md = std::fs::read_to_string(case.reports().join("report.md")).unwrap();
        (run, step, md)
    };

    let (run, step, md) = lag(&url);
    assert_eq!(run.code, 0, "{step}");
    assert_eq!(step["details"]["replicas"], 0, "{step}");
    assert_eq!(step["details"]["slots"], 0, "{step}");
    assert!(
        md.contains("Note: no replica is connected and there is no replication slot"),
        "{md}"
    );

    let standby = primary
        .start_standby(&["wal_receiver_status_interval=1s"])
        .unwrap();
    let on_primary = |sql: &str| psql(&url, sql);
    let streaming = "SELECT count(*) = 1 FROM pg_stat_replication WHERE state = 'streaming'";
    wait(|| on_primary(streaming) == "t");
    let (run, step, md) = lag(&url);
    assert_eq!(run.code, 0, "{step}");
    assert_eq!(step["details"]["replicas"], 1, "{step}");
    assert!(!md.contains("Note:"), "{md}");

    // Replay stops on the replica; the primary goes on writing.
    psql(&standby.url("postgres"), "SELECT pg_wal_replay_pause()");
    on_primary("CREATE TABLE written (n int)");
    wait(|| {
        on_primary("INSERT INTO written VALUES (1)");
        on_primary("SELECT coalesce(bool_or(replay_lag > '1s'), false) FROM pg_stat_replication")
            == "t"
    });
    let (run, step, _) = lag(&url);
    assert_ne!(run.code, 0, "{step}");
    let row = &step["details"]["rows"][0];
    assert_eq!(row["kind"], "replica", "{step}");
    assert_eq!(row["state"], "streaming", "{step}");
    assert!(row["replay_lag_ms"].as_f64().unwrap() > 500.0, "{step}");

    // A role without pg_read_all_stats sees the replica, not its lag.
    on_primary("CREATE ROLE watcher LOGIN");
    let watcher = url.replacen("runbook@", "watcher@", 1);
    let (run, step, _) = lag(&watcher);
    assert_ne!(run.code, 0, "{step}");
    support::assert_failed_with(
        &step,
        "may not see their state or lag: the lag was not measured",
    );
    assert!(
        step["check"].is_null() || step["check"]["rows"] == 0,
        "{step}"
    );
    on_primary("GRANT pg_monitor TO watcher");
    let (_, step, _) = lag(&watcher);
    assert_eq!(step["details"]["rows"][0]["kind"], "replica", "{step}");

    // The replica goes away and leaves its slot: WAL piles up behind it.
    drop(standby);
    on_primary("SELECT pg_create_physical_replication_slot('gone_replica', true)");
    wait(|| on_primary("SELECT count(*) = 0 FROM pg_stat_replication") == "t");
    let (run, step, _) = lag(&url);
    assert_ne!(run.code, 0, "{step}");
    assert_eq!(step["details"]["replicas"], 0, "{step}");
    assert_eq!(step["details"]["slots"], 1, "{step}");
    let row = &step["details"]["rows"][0];
    assert_eq!(row["kind"], "physical slot", "{step}");
    assert_eq!(row["name"], "gone_replica", "{step}");
    assert_eq!(row["state"], "inactive", "{step}");
}

/// Poll `done` for up to 20 s.
fn wait(mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never happened");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A role without `pg_read_all_stats` sees other roles' sessions in
/// `pg_stat_activity` with no state, transaction or wait. The checks that
/// read it used to pass over such a session holding a lock in an open
/// transaction; now each says it could not look, a blocker is found by its
/// locks, and the backfill throttle counts it as active. Idle, it is no
/// concern of theirs, and they pass.
#[test]
fn sessions_the_role_may_not_see_are_said_not_passed_over() {
    use runbook::ephemeral::Ephemeral;
    let pg = Ephemeral::start().unwrap();
    let admin = pg.url("postgres");
    psql(
        &admin,
        "CREATE ROLE app LOGIN; CREATE ROLE migrator LOGIN;
         CREATE TABLE busy (id int PRIMARY KEY, v int); INSERT INTO busy SELECT g, 0 FROM generate_series(1, 10) g;
         ALTER TABLE busy OWNER TO migrator; GRANT ALL ON busy TO app; GRANT CREATE ON SCHEMA public TO migrator;",
    );
    let migrator = admin.replacen("runbook@", "migrator@", 1);
    let mut app = Command::new("psql")
        .args([&admin.replacen("runbook@", "app@", 1), "-Xq"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut say = |sql: &str| {
        let stdin = app.stdin.as_mut().unwrap();
        stdin.write_all(sql.as_bytes()).unwrap();
        stdin.flush().unwrap();
    };
    let app_is = |state: &str| {
        psql(
            &admin,
            &format!(
                "SELECT count(*) = 1 FROM pg_stat_activity WHERE usename = 'app' AND state = '{state}'"
            ),
        ) == "t"
    };
    let checks_case = Case::new(&checks(
        "      - { id: long, check: { builtin: long_running_transactions, max_age: 500ms, severity: warn } }
      - { id: idle, check: { builtin: idle_in_transaction, max_age: 500ms, severity: warn } }
      - { id: active, check: { builtin: active_connections, max: 5, severity: warn } }
      - { id: blocking, check: { builtin: blocking_locks, severity: warn } }
",
    ));
    let statuses = |run: &support::Run| -> Vec<String> {
        ["long", "idle", "active", "blocking"]
            .iter()
            .map(|id| format!("{id}={}", run.step(id)["status"].as_str().unwrap()))
            .collect()
    };

    // The four checks as the migrator, each step's status as `id=status`.
    let judged = |expected: [&str; 4]| {
        let run = checks_case.exec(&migrator, &[]);
        assert_eq!(statuses(&run), expected, "{}", run.stderr);
        run
    };

    // Connected and idle, outside a transaction: nothing to see.
    say("SELECT 1;\n");
    wait(|| app_is("idle"));
    std::thread::sleep(std::time::Duration::from_millis(600));
    judged([
        "long=succeeded",
        "idle=succeeded",
        "active=succeeded",
        "blocking=succeeded",
    ]);

    // In a transaction, holding a lock, idle: hidden from the migrator.
    say("BEGIN; LOCK busy IN ROW EXCLUSIVE MODE;\n");
    wait(|| app_is("idle in transaction"));
    std::thread::sleep(std::time::Duration::from_millis(600));
    let run = judged([
        "long=failed",
        "idle=failed",
        "active=failed",
        "blocking=failed",
    ]);
    for id in ["long", "idle", "active", "blocking"] {
        let error = &run.step(id)["error"];
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("1 session(s) in a transaction in this database belong to roles whose activity this role may not see"),
            "{id}: {error}"
        );
        assert!(
            error["hint"]
                .as_str()
                .unwrap()
                .contains("GRANT pg_monitor (or pg_read_all_stats) TO \"migrator\","),
            "{id}: {error}"
        );
    }

    // A statement that needs the table finds the hidden session by its lock.
    let alter = Case::new(&format!(
        "{HEAD}phases:\n  - id: p\n    kind: migrate\n    steps:\n      - id: alter\n        settings: {{ lock_timeout: 200ms }}\n        sql: ALTER TABLE busy ADD COLUMN w int;\n"
    ));
    let run = alter.exec(&migrator, &[]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    let logs = run.log_lines(None);
    assert!(
        logs.iter().any(|l| l.starts_with("blocker: pid ")
            && l.contains(
                "user app, client hidden from this role, activity hidden from this role"
            )
            && l.contains("holds busy RowExclusiveLock")),
        "{logs:?}"
    );

    // The backfill throttle counts it as active: it may be.
    let fill = Case::new(&format!(
        "{HEAD}phases:\n  - id: p\n    kind: migrate\n    steps:\n      - id: fill\n        timeout: 2s\n        backfill:\n          table: busy\n          set: v = 1\n          max_active_sessions: 0\n"
    ));
    let run = fill.exec(&migrator, &[]);
    assert_eq!(run.step("fill")["status"], "timed_out", "{}", run.stderr);
    assert!(
        run.log_lines(Some("fill"))
            .iter()
            .any(|l| l
                .contains("(1 of them in a transaction this role may not see, counted as active)")),
        "{}",
        run.stderr
    );

    // With pg_monitor the migrator sees it, and the checks judge it.
    psql(&admin, "GRANT pg_monitor TO migrator");
    let run = judged([
        "long=failed",
        "idle=failed",
        "active=succeeded",
        "blocking=succeeded",
    ]);
    assert_eq!(run.step("long")["details"]["rows"][0]["user"], "app");
    assert_eq!(run.step("idle")["details"]["rows"][0]["user"], "app");
    say("COMMIT;\n");
    drop(app.stdin.take());
    app.wait().unwrap();
}

/// What a role may not read is not counted as if it were not there.
/// `pg_sequences` shows no `last_value` for a sequence the role may not
/// read, and sequence_exhaustion used to pass over it, 95 % used: it now
/// names it, and once readable, finds it. row_counts counted a table
/// through its row-level security policy, 2 rows of 5, and
/// foreign_key_orphans and not_null_violations passed over the rows it
/// hid: each now fails with the server's error.
#[test]
fn checks_name_what_the_role_may_not_read() {
    use runbook::ephemeral::Ephemeral;
    let pg = Ephemeral::start().unwrap();
    let admin = pg.url("postgres");
    psql(
        &admin,
        "CREATE ROLE migrator LOGIN; CREATE SEQUENCE nearly_out AS int MAXVALUE 100; SELECT setval('nearly_out', 95);",
    );
    let migrator = admin.replacen("runbook@", "migrator@", 1);
    let case = Case::new(&checks(
        "      - { id: seq, check: { builtin: sequence_exhaustion } }\n",
    ));
    let run = case.exec(&migrator, &[]);
    let step = run.step("seq");
    support::assert_failed_with(
        step,
        "may not read 1 sequence(s) (public.nearly_out): the check could not look at them",
    );
    psql(&admin, "GRANT SELECT ON SEQUENCE nearly_out TO migrator");
    let run = case.exec(&migrator, &[]);
    let step = run.step("seq");
    support::assert_failed_with(step, "expected rows eq 0, got 1");
    assert_eq!(
        step["details"]["rows"][0]["sequence"], "public.nearly_out",
        "{step}"
    );

    psql(
        &admin,
        "CREATE TABLE accounts (id int, tenant text); INSERT INTO accounts VALUES (1, 'a'), (2, 'a'), (3, 'b'), (4, 'b'), (5, 'b');
         ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
         CREATE POLICY mine ON accounts USING (tenant = 'a'); GRANT SELECT ON accounts TO migrator;",
    );
    let case = Case::new(&checks(
        "      - { id: counts, check: { builtin: row_counts, tables: [accounts] } }\n",
    ));
    let run = case.exec(&migrator, &[]);
    let step = run.step("counts");
    support::assert_failed_with(step, "row-level security");
    assert!(
        step["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("BYPASSRLS"),
        "{step}"
    );
    let run = case.exec(&admin, &[]);
    assert_eq!(run.step("counts")["details"]["rows"][0]["rows"], 5);

    // An orphan and a NULL in rows a policy hides were passed over too.
    psql(
        &admin,
        "CREATE TABLE parents (id int PRIMARY KEY); INSERT INTO parents VALUES (1);
         CREATE TABLE kids (id int, parent_id int, tenant text, note text);
         INSERT INTO kids VALUES (1, 1, 'a', 'x'), (2, 99, 'b', NULL);
         ALTER TABLE kids ADD CONSTRAINT kids_fk FOREIGN KEY (parent_id) REFERENCES parents NOT VALID;
         ALTER TABLE kids ENABLE ROW LEVEL SECURITY; CREATE POLICY mine ON kids USING (tenant = 'a');
         GRANT SELECT ON parents, kids TO migrator;",
    );
    let case = Case::new(&checks(
        "      - { id: orphans, check: { builtin: foreign_key_orphans, severity: warn } }
      - { id: nulls, check: { builtin: not_null_violations, table: kids, column: note, severity: warn } }
",
    ));
    let run = case.exec(&migrator, &[]);
    for id in ["orphans", "nulls"] {
        let step = run.step(id);
        support::assert_failed_with(step, "row-level security");
    }
    let run = case.exec(&admin, &[]);
    assert_eq!(run.step("orphans")["details"]["rows"][0]["orphans"], 1);
    assert_eq!(run.step("nulls")["details"]["rows"][0]["nulls"], 1);
}
