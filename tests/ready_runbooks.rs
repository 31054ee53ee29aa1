//! The ready runbooks in runbooks/ that replace teams' deploy scripts, each
//! run end to end against a real PostgreSQL: the success path, and a forced
//! failure with the exit code and what the database holds afterwards.

mod support;

use support::{Case, Db};

fn runbook(name: &str) -> String {
    std::fs::read_to_string(format!("{}/runbooks/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn migrations(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (f, text) in files {
        std::fs::write(d.path().join(f), text).unwrap();
    }
    d
}

const WIDGETS: &[(&str, &str)] = &[
    (
        "001_widgets.up.sql",
        "CREATE TABLE widgets (id bigint PRIMARY KEY, name text);\n",
    ),
    ("001_widgets.down.sql", "DROP TABLE widgets;\n"),
];

#[test]
fn deploy_with_rollback_deploys_when_healthy_and_restores_when_not() {
    let dir = migrations(WIDGETS);
    let set = format!("migrations={}", dir.path().display());
    let case = Case::new(&runbook("deploy-with-rollback.yml"));

    let db = Db::fresh();
    db.sql("CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders SELECT generate_series(1, 100);");
    let run = case.exec(&db.url, &["--set", &set]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.sql("SELECT to_regclass('widgets') IS NOT NULL"), "t");
    assert_eq!(run.step("before_deploy")["status"], "succeeded");

    // `to` stops short of the newest.
    let two = migrations(&[
        WIDGETS[0],
        WIDGETS[1],
        ("002_gadgets.up.sql", "CREATE TABLE gadgets (id bigint);\n"),
        ("002_gadgets.down.sql", "DROP TABLE gadgets;\n"),
    ]);
    let db = Db::fresh();
    let run = case.exec(
        &db.url,
        &[
            "--set",
            &format!("migrations={}", two.path().display()),
            "--set",
            "to=001",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT to_regclass('widgets') IS NOT NULL AND to_regclass('gadgets') IS NULL"),
        "t"
    );

    // The health check fails after the migration: the backup comes back,
    // the migration's table goes with the recreated database, exit 2.
    let db = Db::fresh();
    db.sql("CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders SELECT generate_series(1, 100);");
    let run = case.exec(&db.url, &["--set", &set, "--set", "health_check=exit 7"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.step("application_is_healthy")["status"], "failed");
    assert_eq!(run.step("restore_before_deploy")["status"], "succeeded");
    assert_eq!(
        db.sql("SELECT to_regclass('widgets') IS NULL"),
        "t",
        "the migration is undone"
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM orders"),
        "100",
        "the data is back"
    );

    // A migration that fails in its transaction changed nothing: nothing is
    // restored (no connection terminated, no database recreated), exit 1.
    let bad = migrations(&[
        (
            "001_bad.up.sql",
            "CREATE TABLE w (id bigint);\nSELECT 1/0;\n",
        ),
        ("001_bad.down.sql", "DROP TABLE w;\n"),
    ]);
    let db = Db::fresh();
    db.sql("CREATE TABLE orders (id int PRIMARY KEY);");
    let run = case.exec(
        &db.url,
        &["--set", &format!("migrations={}", bad.path().display())],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.step("restore_before_deploy")["status"], "skipped");
    assert_eq!(
        db.sql("SELECT to_regclass('w') IS NULL AND to_regclass('orders') IS NOT NULL"),
        "t"
    );
}

fn verdicts(run: &support::Run, step: &str) -> serde_json::Value {
    run.step(step)["details"]["verdicts"].clone()
}

#[test]
fn ci_rehearsal_passes_good_migrations_and_fails_bad_or_forward_only_ones() {
    let case = Case::new(&runbook("ci-rehearsal.yml"));
    let good = format!(
        "migrations={}/examples/rehearsal/migrations",
        env!("CARGO_MANIFEST_DIR")
    );
    let junit = case.dir.path().join("junit.xml");
    let junit_arg = junit.to_str().unwrap().to_string();

    let db = Db::fresh();
    let run = case.exec(&db.url, &["--set", &good, "--junit", &junit_arg]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(verdicts(&run, "rehearse"), serde_json::json!({"ok": 3}));
    assert_eq!(run.step("rehearse_seeded")["status"], "skipped");
    let csv = std::fs::read_to_string(case.reports().join("migration-timings.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 3 * 3, "{csv}");
    assert!(
        std::fs::read_to_string(&junit)
            .unwrap()
            .contains("001_create_customers up")
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"),
        "0",
        "on a scratch copy"
    );

    // Everything is slow under a 0ms threshold: reported, not failed.
    let db = Db::fresh();
    let run = case.exec(&db.url, &["--set", &good, "--set", "slow_threshold=0ms"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(verdicts(&run, "rehearse"), serde_json::json!({"slow": 3}));

    // A down that loses data, found with the seed's rows: exit 3.
    let bad = tempfile::tempdir().unwrap();
    let w = |f: &str, t: &str| std::fs::write(bad.path().join(f), t).unwrap();
    w(
        "001_people.up.sql",
        "CREATE TABLE people (id int PRIMARY KEY, name text);\n",
    );
    w("001_people.down.sql", "DROP TABLE people;\n");
    w(
        "002_nick.up.sql",
        "ALTER TABLE people ADD COLUMN nick text;\n",
    );
    w(
        "002_nick.down.sql",
        "ALTER TABLE people DROP COLUMN nick;\nALTER TABLE people DROP COLUMN name;\nALTER TABLE people ADD COLUMN name text;\n",
    );
    w(
        "seed.sql",
        "INSERT INTO people (id, name) VALUES (1, 'ann') ON CONFLICT DO NOTHING;\n",
    );
    let db = Db::fresh();
    let run = case.exec(
        &db.url,
        &[
            "--set",
            &format!("migrations={}", bad.path().display()),
            "--set",
            &format!("seed={}/seed.sql", bad.path().display()),
        ],
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(
        verdicts(&run, "rehearse_seeded"),
        serde_json::json!({"lossy": 1, "ok": 1})
    );

    // A forward-only folder fails unless the run accepts it.
    let prisma = tempfile::tempdir().unwrap();
    std::fs::create_dir(prisma.path().join("20240101_init")).unwrap();
    std::fs::write(
        prisma.path().join("20240101_init/migration.sql"),
        "CREATE TABLE t (id int);\n",
    )
    .unwrap();
    let set = format!("migrations={}", prisma.path().display());
    let db = Db::fresh();
    let run = case.exec(&db.url, &["--set", &set]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let run = case.exec(&db.url, &["--set", &set, "--set", "forward_only=true"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        verdicts(&run, "rehearse"),
        serde_json::json!({"forward_only": 1})
    );
}

#[test]
fn migrate_safe_plans_applies_checks_and_rolls_back_by_mode() {
    let case = Case::new(&runbook("migrate-safe.yml"));
    let good = format!(
        "migrations={}/examples/rehearsal/migrations",
        env!("CARGO_MANIFEST_DIR")
    );
    let mode = |m: &str| format!("mode={m}");
    let db = Db::fresh();
    db.sql("CREATE TABLE keep_me (id int); INSERT INTO keep_me VALUES (1), (2);");

    // plan: lists what would run, changes nothing.
    let run = case.exec(&db.url, &["--set", &good, "--set", &mode("plan")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.step("would_run")["details"]["rows"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"),
        "1"
    );

    // apply: preflight, a backup proven to restore, the migrations, postflight.
    let run = case.exec(&db.url, &["--set", &good, "--set", &mode("apply")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.step("before_migrating")["status"], "succeeded");
    assert_eq!(
        run.step("apply")["details"]["applied"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        run.step("apply")["notices"],
        serde_json::json!([]),
        "no noise from creating the history"
    );
    assert_eq!(
        run.step("counts_after")["status"],
        "succeeded",
        "runbook's own tables are not counted"
    );
    assert_eq!(db.sql("SELECT to_regclass('orders') IS NOT NULL"), "t");

    // postflight alone.
    let run = case.exec(&db.url, &["--set", &good, "--set", &mode("postflight")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.step("apply")["status"], "skipped");

    // rollback to version 001: 003 and 002 go, 001 and the other data stay.
    let run = case.exec(
        &db.url,
        &[
            "--set",
            &good,
            "--set",
            &mode("rollback"),
            "--set",
            "to=001",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT to_regclass('orders') IS NULL AND to_regclass('customers') IS NOT NULL"),
        "t"
    );
    assert_eq!(db.sql("SELECT count(*) FROM keep_me"), "2");

    // A migration left dirty stops the preflight: nothing changes, exit 1.
    db.sql("UPDATE runbook_migrations SET dirty = true WHERE version = '001'");
    let run = case.exec(&db.url, &["--set", &good, "--set", &mode("apply")]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.step("nothing_dirty")["status"], "failed");
    assert_eq!(run.step("before_migrating")["status"], "not_run");
    assert_eq!(db.sql("SELECT to_regclass('orders') IS NULL"), "t");
}

#[test]
fn migrate_safe_stops_before_its_backup_on_a_migration_its_tool_would_refuse_as_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let w = |f: &str, t: &str| std::fs::write(dir.path().join(f), t).unwrap();
    w("V1__a.sql", "CREATE TABLE a (id bigint);\n");
    w("V3__c.sql", "CREATE TABLE c (id bigint);\n");
    let case = Case::new(&runbook("migrate-safe.yml"));
    let set = format!("migrations={}", dir.path().display());
    let db = Db::fresh();
    let run = case.exec(&db.url, &["--set", &set, "--set", "mode=apply"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let backups = || {
        std::fs::read_dir(case.dir.path().join("backups/migrate-safe"))
            .unwrap()
            .count()
    };
    assert_eq!(backups(), 1);
    // A branch merged after 3 was deployed brings 2: Flyway would refuse it.
    w("V2__b.sql", "CREATE TABLE b (id bigint);\n");
    let run = case.exec(&db.url, &["--set", &set, "--set", "mode=apply"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.step("pending")["status"], "failed");
    assert_eq!(
        run.step("pending")["details"]["out_of_order"],
        "flyway would not apply such a migration, and neither would a migrate step unless it sets `out_of_order: true`"
    );
    assert_eq!(run.step("before_migrating")["status"], "not_run");
    assert_eq!(backups(), 1, "no backup was taken");
    assert_eq!(db.sql("SELECT to_regclass('b') IS NULL"), "t");
    // The plan says so too, as a warning.
    let run = case.exec(&db.url, &["--set", &set]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.step("would_run")["check"]["expectations"][1]["actual"],
        1
    );
}

#[test]
fn migrate_safe_undoes_exactly_what_it_applied_when_a_migration_fails() {
    let dir = tempfile::tempdir().unwrap();
    let w = |f: &str, t: &str| std::fs::write(dir.path().join(f), t).unwrap();
    w("001_a.up.sql", "CREATE TABLE a (id bigint);\n");
    w("001_a.down.sql", "DROP TABLE a;\n");
    w("002_b.up.sql", "CREATE TABLE b (id bigint);\n");
    w("002_b.down.sql", "DROP TABLE b;\n");
    w("003_c.up.sql", "CREATE TABLE c (id bigint);\n");
    w("003_c.down.sql", "DROP TABLE c;\n");
    let case = Case::new(&runbook("migrate-safe.yml"));
    let set = format!("migrations={}", dir.path().display());
    let db = Db::fresh();
    // 001 was applied by an earlier release.
    let run = case.exec(
        &db.url,
        &["--set", &set, "--set", "mode=apply", "--set", "to=001"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    // This release brings 002 and a 003 that fails half-way.
    w("003_c.up.sql", "CREATE TABLE c (id bigint);\nSELECT 1/0;\n");
    let run = case.exec(&db.url, &["--set", &set, "--set", "mode=apply"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT (to_regclass('a') IS NOT NULL) || ' ' || (to_regclass('b') IS NULL) || ' ' || (to_regclass('c') IS NULL)"),
        "true true true",
        "the earlier release's 001 stays; this run's 002 is undone; 003 never landed"
    );
}

#[test]
fn zero_downtime_renames_a_column_and_stops_before_the_contract_while_the_old_release_is_connected()
{
    let case = Case::new(&runbook("zero-downtime.yml"));
    let review = case.dir.path().join("review.json");
    let common = ["--set", "seed=true", "--set", "watch_for=1s"];
    case.approve(
        &review,
        &[
            &["--phase", "contract", "--as", "reviewer"][..],
            &common[..],
        ]
        .concat(),
    );
    let approval = review.to_str().unwrap();

    let db = Db::fresh();
    // The reviewer's file and the operator (--yes): the two a high risk needs.
    let run = case.exec(
        &db.url,
        &[&common[..], &["--approval", approval, "--yes"]].concat(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT (SELECT count(*) FROM orders WHERE customer_id IS NULL) || ' ' || (SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'cust_id' AND NOT attisdropped) || ' ' || (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND NOT tgisinternal)"),
        "0 0 0",
        "every row has the new column, the old one and the trigger are gone"
    );

    // The old release is still connected: the wait times out, the contract
    // never runs, and both columns stay in step for the writers of both.
    let db = Db::fresh();
    let mut old_release = std::process::Command::new("psql")
        .args([&db.url, "-Xq", "-c", "SELECT pg_sleep(20)"])
        .env("PGAPPNAME", "shop-v41")
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while db.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'shop-v41'") == "0"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the old release never connected"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let params = [
        &common[..],
        &[
            "--set",
            "old_application=shop-v41",
            "--set",
            "readers_timeout=1s",
        ],
    ]
    .concat();
    // An approval is bound to the params: the reviewer signs these ones.
    case.approve(
        &review,
        &[
            &["--phase", "contract", "--as", "reviewer"][..],
            &params[..],
        ]
        .concat(),
    );
    let run = case.exec(
        &db.url,
        &[&params[..], &["--approval", approval, "--yes"]].concat(),
    );
    let _ = old_release.kill();
    let _ = old_release.wait();
    assert_eq!(run.code, 3, "{}", run.stderr);
    let wait = run.step("old_release_gone");
    assert_eq!(wait["status"], "failed", "{wait}");
    // Its 10s interval is longer than its 1s timeout: it still looked again
    // just before the end, and says how long it really waited.
    assert_eq!(wait["details"]["tries"], 2, "{wait}");
    assert!(
        wait["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ms of 1s (2 tries"),
        "{wait}"
    );
    assert_eq!(run.step("drop_old_column")["status"], "not_run");
    db.sql("INSERT INTO orders (cust_id) VALUES (4242)");
    assert_eq!(
        db.sql("SELECT customer_id FROM orders WHERE cust_id = 4242"),
        "4242",
        "the old release's writes reach the new column"
    );
}

/// The newest backup directory under `dir`, by its manifest's time (two
/// run ids of one second do not sort by time).
fn newest_backup(dir: &std::path::Path) -> std::path::PathBuf {
    let mut all: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let m: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(p.join("manifest.json")).ok()?)
                    .ok()?;
            Some((m["created_at"].as_str()?.to_string(), p))
        })
        .collect();
    all.sort();
    all.pop().expect("a backup").1
}

#[test]
fn restore_drill_proves_a_backup_restores_and_fails_on_a_corrupt_backup_or_a_bad_copy() {
    let case = Case::new(&runbook("restore-drill.yml"));
    let backups = case.dir.path().join("backups/restore-drill");
    let notified = case.dir.path().join("notified");
    let notify = format!("notify=echo \"$RUN_STATUS\" >> {}", notified.display());
    let scratch_left =
        |db: &Db| db.sql("SELECT count(*) FROM pg_database WHERE datname LIKE 'restore_drill_%'");

    // A backup is taken, restored into a scratch copy that checks out, and
    // the copy is dropped.
    let db = Db::fresh();
    let run = case.exec(&db.url, &["--set", "seed=true", "--set", &notify]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for step in ["take", "restore_copy", "copy_schema", "copy_has_no_orphans"] {
        assert_eq!(run.step(step)["status"], "succeeded", "{step}");
    }
    assert_eq!(
        run.step("restore_copy")["details"]["from"],
        newest_backup(&backups).display().to_string()
    );
    assert_eq!(scratch_left(&db), "0", "the copy is dropped");
    assert_eq!(
        db.sql("SELECT count(*) FROM orders"),
        "2000",
        "the source is untouched"
    );

    // Backups older than keep_for go after the next backup succeeds.
    let old = backups.join("20200101T000000Z-old0");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(newest_backup(&backups))
        .arg(&old)
        .status()
        .unwrap();
    assert!(status.success());
    let manifest = std::fs::read_to_string(old.join("manifest.json")).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    m["created_at"] = "2020-01-01T00:00:00Z".into();
    std::fs::write(old.join("manifest.json"), m.to_string()).unwrap();
    // A retention that is not a number is refused before anything runs.
    let run = case.exec(&db.url, &["--set", &notify, "--set", "keep_for=a month"]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr.contains("`keep_for` renders to `a month`"),
        "{}",
        run.stderr
    );
    assert!(old.exists());
    let run = case.exec(&db.url, &["--set", &notify]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!old.exists(), "a backup older than keep_for is pruned");
    assert_eq!(
        std::fs::read_dir(&backups).unwrap().count(),
        2,
        "both of this drill's backups are kept"
    );

    // The newest backup is corrupt: the drill restores nothing and fails.
    let newest = newest_backup(&backups);
    let dump = newest.join("dump.pgdump");
    let mut bytes = std::fs::read(&dump).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&dump, bytes).unwrap();
    let run = case.exec(&db.url, &["--set", "take=false", "--set", &notify]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let err = &run.step("restore_copy")["error"]["message"];
    assert!(err.as_str().unwrap().contains("sha256"), "{err}");
    assert_eq!(scratch_left(&db), "0");

    // A source whose data breaks a NOT VALID foreign key: the backup
    // restores, and the checks on the copy say what is wrong with it.
    let db = Db::fresh();
    db.sql(
        "CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (id int PRIMARY KEY, parent_id int);
         INSERT INTO child VALUES (1, 42);
         ALTER TABLE child ADD CONSTRAINT child_parent_fk FOREIGN KEY (parent_id) REFERENCES parent NOT VALID;",
    );
    let run = case.exec(&db.url, &["--set", &notify]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(run.step("restore_copy")["status"], "succeeded");
    assert_eq!(run.step("copy_constraints_validated")["status"], "failed");
    assert_eq!(scratch_left(&db), "0");
    assert_eq!(
        db.sql("SELECT count(*) FROM child"),
        "1",
        "the source is untouched"
    );
    assert_eq!(
        std::fs::read_to_string(&notified).unwrap(),
        "succeeded\nsucceeded\nverify_failed\nverify_failed\n",
        "the hook hears every outcome"
    );
}

#[test]
fn add_column_adds_and_indexes_a_column_and_undoes_it_when_the_index_cannot_be_built() {
    let case = Case::new(&runbook("add-column.yml"));
    let set = |kv: &[&str]| -> Vec<String> {
        let mut args = vec![
            "--set".to_string(),
            "table=orders".to_string(),
            "--set".to_string(),
            "column=note".to_string(),
        ];
        for s in kv {
            args.push("--set".into());
            args.push((*s).into());
        }
        args
    };
    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    let db = Db::fresh();
    db.sql("CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders SELECT generate_series(1, 100);");
    let ok = set(&[]);
    let run = case.exec(&db.url, &args(&ok));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relname = 'orders_note_idx'"
        ),
        "t"
    );
    assert_eq!(run.step("index_valid")["status"], "succeeded");

    // Run again: the column is there, the preflight says so, exit 1, and
    // the column (with its data) is left alone.
    db.sql("UPDATE orders SET note = 'kept'");
    let again = case.exec(&db.url, &args(&ok));
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert_eq!(again.step("column_absent")["status"], "failed");
    assert_eq!(again.step("add_column")["status"], "not_run");
    assert_eq!(
        db.sql("SELECT count(*) FROM orders WHERE note = 'kept'"),
        "100"
    );

    // A type btree cannot index: the column went in, the index fails, and
    // the column this run added is dropped again, exit 2.
    let db = Db::fresh();
    db.sql("CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders SELECT generate_series(1, 100);");
    let json = set(&["type=json"]);
    let run = case.exec(&db.url, &args(&json));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.step("add_index")["status"], "failed");
    assert_eq!(run.step("add_column")["status"], "rolled_back");
    assert_eq!(
        db.sql(
            "SELECT count(*) FROM information_schema.columns \
             WHERE table_name = 'orders' AND column_name = 'note'"
        ),
        "0",
        "the column this run added is gone"
    );
    assert_eq!(db.sql("SELECT count(*) FROM orders"), "100");
}
