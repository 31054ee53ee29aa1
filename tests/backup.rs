//! `backup` and `restore` steps and `runbook backups` against a real
//! PostgreSQL: round trips that prove equality, and every fault the backup
//! issue lists (missing or old pg_dump, unwritable path, full disk,
//! corruption, missing manifest, connected sessions, a killed pg_dump).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Case, Db};

const HEAD: &str = "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: bk, version: 1 }\n";

fn runbook(body: &str) -> String {
    format!("{HEAD}{body}")
}

/// Tables with text, bytea, a sequence and a large object.
fn seed(db: &Db) {
    db.sql(
        "CREATE TABLE items (id bigserial PRIMARY KEY, name text NOT NULL, payload bytea);
         INSERT INTO items (name, payload)
           SELECT 'item ' || g, decode(md5(g::text), 'hex') FROM generate_series(1, 2000) g;
         CREATE TABLE notes (id int PRIMARY KEY, body text);
         INSERT INTO notes SELECT g, repeat('n', g % 50) FROM generate_series(1, 300) g;
         CREATE SEQUENCE counter;
         SELECT setval('counter', 4242);
         SELECT lo_from_bytea(0, 'a large object''s bytes');",
    );
}

/// Row counts, sequence values and a checksum of every table's contents.
fn fingerprint(db: &Db) -> String {
    db.sql(
        "SELECT concat_ws(' ',
           (SELECT count(*) FROM items), (SELECT md5(string_agg(i::text, '|' ORDER BY id)) FROM items i),
           (SELECT count(*) FROM notes), (SELECT md5(string_agg(n::text, '|' ORDER BY id)) FROM notes n),
           (SELECT last_value FROM counter), (SELECT last_value FROM items_id_seq),
           (SELECT string_agg(encode(lo_get(oid), 'escape'), ',') FROM pg_largeobject_metadata))",
    )
}

/// The error message of a step in a run's report.
fn error_of(run: &support::Run, step: &str) -> String {
    run.step(step)["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("step `{step}` has no error"))
        .to_string()
}

fn backup_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

fn runbook_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runbook"));
    c.env("NO_COLOR", "1").env_remove("PG_BIN_DIR");
    c
}

#[test]
fn a_round_trip_restores_rows_sequences_large_objects_and_contents() {
    let db = Db::fresh();
    seed(&db);
    let before = fingerprint(&db);
    let case = Case::new(&runbook(
        r#"phases:
  - id: backup
    kind: backup
    steps:
      - id: pre
        backup:
          path: "backups/{{ run.id }}"
          verify: restore
  - id: contract
    kind: contract
    steps:
      - id: destroy
        sql: |
          DROP TABLE items;
          TRUNCATE notes;
          SELECT setval('counter', 1);
          SELECT lo_unlink(oid) FROM pg_largeobject_metadata;
      - id: boom
        sql: SELECT 1/0
on_failure:
  - id: put_back
    restore:
      from: steps.pre
      clean: true
"#,
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        fingerprint(&db),
        before,
        "the restore gave back every row, value and byte"
    );

    let pre = run.step("pre");
    assert_eq!(pre["status"], "succeeded");
    let d = &pre["details"];
    assert_eq!(d["verification"]["status"], "passed", "{d}");
    assert_eq!(d["large_objects"], 1);
    let tables: Vec<(String, i64)> = d["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["rows"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tables,
        [("items".to_string(), 2000), ("notes".to_string(), 300)]
    );

    let dir = PathBuf::from(d["path"].as_str().unwrap());
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["format"], "directory");
    assert!(manifest["snapshot"].is_string());
    assert_eq!(manifest["total_bytes"], d["bytes"]);
    let summed: u64 = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(manifest["total_bytes"].as_u64(), Some(summed));
    assert!(!dir.join(".incomplete").exists());

    let restore = run.step("put_back");
    assert_eq!(restore["status"], "succeeded", "{restore}");
    assert_eq!(restore["details"]["mismatches"], serde_json::json!([]));
    assert_eq!(restore["details"]["tables_checked"], 2);

    // Progress counted tables as pg_dump dumped them.
    let progress: Vec<u64> = run
        .events()
        .iter()
        .filter(|e| e["event"] == "step_progress" && e["step"] == "pre")
        .map(|e| e["done"].as_u64().unwrap())
        .collect();
    assert!(progress.starts_with(&[1, 2]), "{progress:?}");
}

#[test]
fn row_counts_are_taken_in_the_dumps_snapshot() {
    // A writer inserts while the dump runs; the manifest's count must be
    // the dump's count, which a restore proves.
    let db = Db::fresh();
    db.sql("CREATE TABLE busy (id bigserial PRIMARY KEY, v int); INSERT INTO busy (v) SELECT g FROM generate_series(1, 50000) g;");
    let writer = Command::new("psql")
        .args([
            &db.url,
            "-Xq",
            "-c",
            "DO $$ BEGIN FOR i IN 1..400 LOOP INSERT INTO busy (v) SELECT g FROM generate_series(1, 50) g; COMMIT; PERFORM pg_sleep(0.005); END LOOP; END $$;",
        ])
        .spawn()
        .unwrap();
    let case = Case::new(&runbook(
        r#"phases:
  - id: backup
    kind: backup
    steps:
      - id: pre
        backup:
          path: "backups/one"
          format: custom
          verify: restore
"#,
    ));
    let run = case.exec(&db.url, &[]);
    let mut writer = writer;
    writer.wait().unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.step("pre")["details"]["verification"]["status"],
        "passed"
    );
}

/// A transaction that rewrites `table` with `rewrite`, open for `seconds`,
/// its lock already held when this returns.
fn rewriting(db: &Db, table: &str, rewrite: &str, seconds: u32) -> std::process::Child {
    let child = Command::new("psql")
        .args([
            &db.url,
            "-Xq",
            "-c",
            &format!("BEGIN; {rewrite}; SELECT pg_sleep({seconds}); COMMIT;"),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    support::wait_until(
        db,
        &format!(
            "SELECT count(*) > 0 FROM pg_locks WHERE relation = '{table}'::regclass AND mode = 'AccessExclusiveLock' AND granted"
        ),
    );
    child
}

/// Rewrites every row as the transaction's own: none is in an older snapshot.
const RETYPE: &str = "ALTER TABLE zz ALTER COLUMN id TYPE bigint";

const REWRITTEN: &str = r#"settings: { lock_timeout: 1min }
phases:
  - id: backup
    kind: backup
    steps:
      - id: pre
        backup:
          path: bk
          TARGET
          verify: restore
"#;

/// A transaction that rewrites a table, begun before the backup and
/// committed while pg_dump waits for its lock: in a snapshot taken before
/// the commit, the table reads as empty. Before, pg_dump dumped no rows,
/// the count said 0, the restore matched, and the backup passed without
/// the table's 1,000 rows (bare `pg_dump -t` does the same). The tables are
/// now locked before the snapshot is taken, so it is taken after the
/// commit.
#[test]
fn a_table_rewritten_by_a_transaction_open_when_the_backup_began_keeps_its_rows() {
    let db = Db::fresh();
    db.sql("CREATE TABLE zz (id int, v text); INSERT INTO zz SELECT g, 'v' FROM generate_series(1, 1000) g;");
    let mut rewrite = rewriting(&db, "zz", RETYPE, 2);
    let case = Case::new(&runbook(
        &REWRITTEN.replace("TARGET", "tables: [public.zz]"),
    ));
    let run = case.exec(&db.url, &[]);
    rewrite.wait().unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let step = run.step("pre");
    assert_eq!(step["details"]["tables"][0]["rows"], 1000, "{step}");
    assert_eq!(
        step["details"]["verification"]["status"], "passed",
        "{step}"
    );
}

/// The same with more tables than the server's lock table allows a
/// transaction on average (`max_locks_per_transaction`), which runbook
/// does not lock beside pg_dump: the rewrite is found, and the backup
/// fails instead of passing without the rows. A CLUSTER, which moves the
/// rows but keeps them in older snapshots, is counted and passes.
#[test]
fn beyond_the_lock_budget_a_table_rewritten_meanwhile_fails_the_backup() {
    for (rewrite, fails) in [(RETYPE, true), ("CLUSTER zz USING zz_pkey", false)] {
        let db = Db::fresh();
        let budget: usize = db.sql("SHOW max_locks_per_transaction").parse().unwrap();
        // An index for CLUSTER; ALTER ... TYPE would make a new one, which
        // pg_dump, reading the catalog in the old snapshot, fails to find.
        let key = if fails { "" } else { " PRIMARY KEY" };
        db.sql(&format!(
            "CREATE TABLE zz (id int{key}, v text); INSERT INTO zz SELECT g, 'v' FROM generate_series(1, 1000) g;
             DO $$ BEGIN FOR i IN 1..{budget} LOOP EXECUTE format('CREATE TABLE t%s (id int)', i); END LOOP; END $$;"
        ));
        let mut held = rewriting(&db, "zz", rewrite, 2);
        let case = Case::new(&runbook(
            &REWRITTEN
                .replace("TARGET", "schemas: [public]")
                .replace("verify: restore", "verify: list"),
        ));
        let run = case.exec(&db.url, &[]);
        held.wait().unwrap();
        if fails {
            assert_eq!(run.code, 1, "{rewrite}: {}", run.stderr);
            let error = error_of(&run, "pre");
            assert!(
                error.starts_with("another session rewrote or emptied public.zz "),
                "{error}"
            );
        } else {
            assert_eq!(run.code, 0, "{rewrite}: {}", run.stderr);
            let tables = &run.step("pre")["details"]["tables"];
            let zz = tables
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == "zz")
                .unwrap();
            assert_eq!(zz["rows"], 1000, "{rewrite}: {zz}");
        }
    }
}

/// `schemas: [public]`, in each format: pg_dump `-n public` creates the
/// schema, which a new database (from template0) already has. Before, the
/// test restore and a restore into a new database both failed on
/// `schema "public" already exists`. The new database's empty `public` now
/// gives way to the dump's.
#[test]
fn a_backup_of_the_public_schema_verifies_and_restores_into_a_new_database() {
    for (format, hardened) in [
        ("directory", false),
        ("custom", false),
        ("plain", false),
        ("directory", true),
    ] {
        let db = Db::fresh();
        seed(&db);
        db.sql("COMMENT ON SCHEMA public IS 'the app''s tables'");
        if hardened {
            db.sql("REVOKE ALL ON SCHEMA public FROM PUBLIC");
        }
        let target = format!("{}_copy", db.name);
        // And a rehearsal on a scratch database restored from it.
        let migrations = tempfile::tempdir().unwrap();
        std::fs::write(
            migrations.path().join("001_i.up.sql"),
            "CREATE INDEX notes_body ON notes (body);\n",
        )
        .unwrap();
        std::fs::write(
            migrations.path().join("001_i.down.sql"),
            "DROP INDEX notes_body;\n",
        )
        .unwrap();
        let case = Case::new(&runbook(&format!(
            r#"phases:
  - id: backup
    kind: backup
    steps:
      - id: pub
        backup:
          path: backups/public
          format: {format}
          schemas: [public]
          verify: restore
      - id: copy
        restore:
          from: steps.pub
          target: {target}
  - id: verify
    kind: verify
    steps:
      - id: rehearse
        rehearse:
          dir: {}
          scratch: {{ from: steps.pub }}
"#,
            migrations.path().display()
        )));
        let run = case.exec(&db.url, &[]);
        assert_eq!(run.code, 0, "{format}: {}", run.stderr);
        assert_eq!(
            run.step("pub")["details"]["verification"]["status"],
            "passed",
            "{format}"
        );
        let copy = run.step("copy");
        assert_eq!(copy["details"]["created"], true, "{format}: {copy}");
        assert_eq!(
            run.step("rehearse")["details"]["verdicts"],
            serde_json::json!({"ok": 1}),
            "{format}"
        );
        let copy_url = db
            .url
            .replace(&format!("/{}", db.name), &format!("/{target}"));
        assert_eq!(
            support::psql(
                &copy_url,
                "SELECT (SELECT count(*) FROM notes) || ' ' || obj_description('public'::regnamespace)"
            ),
            "300 the app's tables",
            "{format}"
        );
        // The grants on `public` came back as they were: a dump leaves
        // out the ones a new database makes it with.
        let acl = "SELECT nspacl::text FROM pg_namespace WHERE nspname = 'public'";
        assert_eq!(
            support::psql(&copy_url, acl),
            db.sql(acl),
            "{format}, hardened: {hardened}"
        );
    }
}

#[test]
fn a_targeted_plain_backup_restores_into_a_new_database() {
    let db = Db::fresh();
    seed(&db);
    let target = format!("{}_copy", db.name);
    let case = Case::new(&runbook(&format!(
        r#"phases:
  - id: backup
    kind: backup
    steps:
      - id: only_notes
        backup:
          path: backups/notes
          format: plain
          tables: [public.notes]
      - id: copy
        restore:
          from: steps.only_notes
          target: {target}
"#
    )));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let tables = &run.step("only_notes")["details"]["tables"];
    assert_eq!(tables.as_array().unwrap().len(), 1, "{tables}");
    assert_eq!(tables[0]["name"], "notes");
    let copy = run.step("copy");
    assert_eq!(copy["details"]["created"], true);
    let copy_url = db
        .url
        .replace(&format!("/{}", db.name), &format!("/{target}"));
    assert_eq!(
        support::psql(&copy_url, "SELECT count(*) FROM notes"),
        "300"
    );
    assert_eq!(
        support::psql(
            &copy_url,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'items'"
        ),
        "0"
    );
}

#[test]
fn a_table_pattern_that_matches_nothing_fails_instead_of_backing_up_nothing() {
    let db = Db::fresh();
    seed(&db);
    let case = Case::new(&runbook(
        "phases:\n  - id: b\n    kind: backup\n    steps:\n      - id: pre\n        backup:\n          path: backups/x\n          tables: [public.itemz]\n",
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let err = error_of(&run, "pre");
    assert!(
        err.contains("pg_dump failed") && err.contains("itemz"),
        "{err}"
    );
    assert!(
        !case.dir.path().join("backups/x").exists(),
        "the failed backup was removed"
    );
}

#[test]
fn a_missing_pg_dump_is_named_with_where_runbook_looked() {
    let db = Db::fresh();
    let empty = tempfile::tempdir().unwrap();
    let case = Case::new(&runbook(
        "phases:\n  - id: b\n    kind: backup\n    steps:\n      - id: pre\n        backup:\n          path: backups/x\n",
    ));
    let run = case.exec(&db.url, &["--pg-bin-dir", empty.path().to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let e = &run.step("pre")["error"];
    let msg = e["message"].as_str().unwrap();
    assert!(msg.starts_with("pg_dump not found; looked in "), "{msg}");
    assert!(msg.contains(&empty.path().display().to_string()), "{msg}");
    assert!(e["hint"].as_str().unwrap().contains("--pg-bin-dir"));
    assert!(!case.dir.path().join("backups/x").exists());

    // A bin dir that does not exist is bad input: refused before anything.
    let run = case.exec(&db.url, &["--pg-bin-dir", "/no/such/dir"]);
    assert_eq!(run.code, 5);
    assert!(run.stderr.contains("is not a directory"), "{}", run.stderr);
}

#[test]
fn a_pg_dump_older_than_the_server_is_refused_with_both_versions() {
    let db = Db::fresh();
    let bin = tempfile::tempdir().unwrap();
    let fake = bin.path().join("pg_dump");
    std::fs::write(&fake, "#!/bin/sh\necho 'pg_dump (PostgreSQL) 11.22'\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let case = Case::new(&runbook(
        "phases:\n  - id: b\n    kind: backup\n    steps:\n      - id: pre\n        backup:\n          path: backups/x\n",
    ));
    let run = case.exec(&db.url, &["--pg-bin-dir", bin.path().to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let msg = error_of(&run, "pre");
    let server = db.sql("SHOW server_version");
    let major = server.split('.').next().unwrap();
    assert!(
        msg.contains("11.22 at ") && msg.contains(&fake.display().to_string()),
        "{msg}"
    );
    assert!(msg.contains(&format!("at least version {major}")), "{msg}");
    assert!(msg.contains(&server), "{msg}");
}

#[test]
fn an_unwritable_path_fails_before_pg_dump_runs() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        "phases:\n  - id: b\n    kind: backup\n    steps:\n      - id: pre\n        backup:\n          path: a_file/backup\n",
    ));
    std::fs::write(case.dir.path().join("a_file"), "not a directory").unwrap();
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let e = &run.step("pre")["error"];
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("failed to create "),
        "{e}"
    );
    assert_eq!(e["class"], "io");

    // A path that already holds files is never written over.
    std::fs::create_dir_all(case.dir.path().join("used")).unwrap();
    std::fs::write(case.dir.path().join("used/keep.txt"), "mine").unwrap();
    let case2 = Case::new(&runbook(&format!(
        "phases:\n  - id: b\n    kind: backup\n    steps:\n      - id: pre\n        backup:\n          path: {}\n",
        case.dir.path().join("used").display()
    )));
    let run = case2.exec(&db.url, &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.step("pre")["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already exists and is not empty")
    );
    assert_eq!(
        std::fs::read_to_string(case.dir.path().join("used/keep.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn a_full_disk_leaves_no_backup_that_looks_valid() {
    // The file size limit makes pg_dump's writes fail with EFBIG, as a
    // full disk makes them fail with ENOSPC; SIGXFSZ is ignored so the
    // write error, not the signal, is what pg_dump sees.
    let db = Db::fresh();
    db.sql("CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g + 1)::text) AS t FROM generate_series(1, 60000) g");
    let case = Case::new(&runbook(
        "phases:\n  - id: b\n    kind: backup\n    steps:\n      - id: pre\n        backup:\n          path: backups/full\n          format: custom\n          compress: 0\n",
    ));
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("trap '' XFSZ; ulimit -f 1024; exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_runbook"))
        .args(case.command(&db.url, &[]).get_args());
    cmd.env("NO_COLOR", "1").env_remove("DATABASE_URL");
    let out = cmd.output().unwrap();
    let run = support::Run::new(out, &case.reports());
    assert_eq!(run.code, 1, "{}", run.stderr);
    let msg = error_of(&run, "pre");
    assert!(
        msg.contains("pg_dump failed") && msg.contains("File too large"),
        "{msg}"
    );
    assert!(
        !case.dir.path().join("backups/full").exists(),
        "the partial backup was removed"
    );
}

/// Take a backup in its own run; return the backup's directory.
fn take_backup(db: &Db, case_dir: &Path) -> PathBuf {
    let case = Case::new(&runbook(&format!(
        "phases:\n  - id: b\n    kind: backup\n    steps:\n      - id: pre\n        backup:\n          path: {}\n",
        case_dir.join("backup").display()
    )));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    case_dir.join("backup")
}

fn restore_case(from: &Path, extra: &str) -> Case {
    Case::new(&runbook(&format!(
        "phases:\n  - id: r\n    kind: custom\n    steps:\n      - id: back\n        restore:\n          from: {}\n          clean: true\n{extra}",
        from.display()
    )))
}

/// A parallel restore counts each table as pg_restore finishes its data,
/// while the rest still loads; partitions (which a dump loading through
/// the partition root could still route rows into) are counted after it.
/// A count that differs from the manifest is still caught.
#[test]
fn a_parallel_restore_counts_tables_as_their_data_lands_and_partitions_after() {
    let db = Db::fresh();
    seed(&db);
    db.sql(
        "CREATE TABLE events (id int, at date) PARTITION BY RANGE (at);
         CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
         CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
         INSERT INTO events SELECT g, date '2025-06-01' + (g % 400) FROM generate_series(1, 1000) g;",
    );
    let dir = tempfile::tempdir().unwrap();
    let backup = take_backup(&db, dir.path());
    let restore = |target: &str| {
        Case::new(&runbook(&format!(
            "phases:\n  - id: r\n    kind: custom\n    steps:\n      - id: back\n        restore:\n          from: {}\n          target: {target}\n          jobs: 2\n",
            backup.display()
        )))
        .exec(&db.url, &[])
    };

    let run = restore(&format!("{}_par", db.name));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let d = &run.step("back")["details"];
    assert_eq!(d["mismatches"], serde_json::json!([]), "{d}");
    assert_eq!(d["tables_checked"], 4, "{d}");
    assert_eq!(d["counted_during_restore"], 2, "items and notes: {d}");

    // The manifest says one row fewer than the dump holds.
    let path = backup.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for t in m["tables"].as_array_mut().unwrap() {
        if t["name"] == "items" {
            t["rows"] = serde_json::json!(1999);
        }
    }
    std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    let run = restore(&format!("{}_short", db.name));
    assert_ne!(run.code, 0, "{}", run.stderr);
    let d = &run.step("back")["details"];
    assert_eq!(d["counted_during_restore"], 2, "{d}");
    assert!(
        error_of(&run, "back").contains("public.items: 2000 rows, the manifest says 1999"),
        "{}",
        error_of(&run, "back")
    );
}

#[test]
fn one_corrupted_byte_is_refused_before_the_database_is_touched() {
    let db = Db::fresh();
    seed(&db);
    let keep = tempfile::tempdir().unwrap();
    let dir = take_backup(&db, keep.path());
    let verify = runbook_bin()
        .args(["backups", "verify"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(String::from_utf8_lossy(&verify.stdout).starts_with("ok: "));

    db.sql("INSERT INTO notes VALUES (100000, 'after the backup')");
    // Flip one byte in the middle of the largest data file.
    let data = std::fs::read_dir(dir.join("dump"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "gz"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&data, bytes).unwrap();

    let run = restore_case(&dir, "").exec(&db.url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let msg = error_of(&run, "back");
    assert!(msg.starts_with("refusing to restore from "), "{msg}");
    assert!(
        msg.contains("sha256 is") && msg.contains("nothing was touched"),
        "{msg}"
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM notes"),
        "301",
        "the database was not touched"
    );

    let verify = runbook_bin()
        .args(["backups", "verify"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(3));
    let err = String::from_utf8_lossy(&verify.stderr);
    assert!(
        err.contains("cannot be trusted") && err.contains("was changed"),
        "{err}"
    );
}

#[test]
fn a_missing_manifest_or_file_is_refused() {
    let db = Db::fresh();
    seed(&db);
    let keep = tempfile::tempdir().unwrap();
    let dir = take_backup(&db, keep.path());
    std::fs::remove_file(dir.join("dump/toc.dat")).unwrap();
    let verify = runbook_bin()
        .args(["backups", "verify"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&verify.stderr).contains("toc.dat is missing"));

    std::fs::remove_file(dir.join("manifest.json")).unwrap();
    let run = restore_case(&dir, "").exec(&db.url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let msg = error_of(&run, "back");
    assert!(
        msg.contains("is not a backup: it has no manifest.json"),
        "{msg}"
    );
    let verify = runbook_bin()
        .args(["backups", "verify"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(3));

    let list = runbook_bin()
        .args(["backups", "list"])
        .arg(keep.path())
        .output()
        .unwrap();
    assert_eq!(list.status.code(), Some(0));
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.starts_with("incomplete "),
        "a dump without a manifest is listed as incomplete: {listed}"
    );
}

fn connect_idle(url: &str) -> std::process::Child {
    Command::new("psql")
        .args([url, "-Xq", "-c", "SELECT pg_sleep(60)"])
        .spawn()
        .unwrap()
}

fn wait_for_sessions(db: &Db, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while db.sql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
        db.name
    )) != n.to_string()
    {
        assert!(Instant::now() < deadline, "the session never connected");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A session of a role whose activity the restoring role may not see
/// (without `pg_read_all_stats`) shows no backend type: the restore used
/// to pass over it and restore under it. It is refused like any other.
#[test]
fn a_session_the_role_may_not_see_is_refused_too() {
    let pg = runbook::ephemeral::Ephemeral::start().unwrap();
    support::psql(
        &pg.url("postgres"),
        "CREATE ROLE app LOGIN; CREATE ROLE migrator LOGIN CREATEDB",
    );
    support::psql(&pg.url("postgres"), "CREATE DATABASE shop OWNER migrator");
    let db = Db {
        name: "shop".into(),
        url: pg.url("shop").replacen("runbook@", "migrator@", 1),
    };
    db.sql(
        "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'one')",
    );
    let keep = tempfile::tempdir().unwrap();
    let dir = take_backup(&db, keep.path());
    let mut idle = connect_idle(&pg.url("shop").replacen("runbook@", "app@", 1));
    let admin = Db {
        name: "shop".into(),
        url: pg.url("postgres"),
    };
    wait_for_sessions(&admin, 1);
    let pid = admin.sql("SELECT pid FROM pg_stat_activity WHERE datname = 'shop'");

    let run = restore_case(&dir, "").exec(&db.url, &[]);
    let _ = idle.kill();
    let _ = idle.wait();
    assert_eq!(run.code, 1, "{}", run.stderr);
    let msg = error_of(&run, "back");
    assert!(
        msg.contains(&format!(
            "pid {pid} (psql, user app, from a client hidden from this role, activity hidden"
        )),
        "{msg}"
    );
}

#[test]
fn other_sessions_are_refused_unless_terminate_connections() {
    let db = Db::fresh();
    seed(&db);
    let keep = tempfile::tempdir().unwrap();
    let dir = take_backup(&db, keep.path());
    let mut idle = connect_idle(&db.url);
    wait_for_sessions(&db, 1);
    let pid = db.sql(&format!(
        "SELECT pid FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
        db.name
    ));

    let run = restore_case(&dir, "").exec(&db.url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let msg = error_of(&run, "back");
    assert!(
        msg.contains("other session(s) are connected") && msg.contains(&format!("pid {pid}")),
        "{msg}"
    );
    assert!(
        idle.try_wait().unwrap().is_none(),
        "the other session is untouched"
    );

    let run = restore_case(&dir, "          terminate_connections: true\n").exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let terminated = run.step("back")["details"]["terminated"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(terminated.len(), 1);
    assert!(
        terminated[0]
            .as_str()
            .unwrap()
            .starts_with(&format!("pid {pid} "))
    );
    assert!(
        run.report["warnings"]
            .to_string()
            .contains("terminated 1 session")
    );
    let status = idle.wait().unwrap();
    assert!(!status.success(), "the other session was disconnected");
}

fn find_pg_dump(marker: &str) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("pg_dump") && cmdline.contains(marker) {
            return Some(pid);
        }
    }
    None
}

#[test]
fn a_killed_pg_dump_fails_the_step_and_no_secret_reaches_its_argv() {
    let db = Db::fresh();
    seed(&db);
    // Hold a lock pg_dump must wait for, so it is alive long enough to look
    // at: on a partitioned table, which pg_dump locks and runbook's reads
    // beside it do not (its rows are in its partitions).
    db.sql("CREATE TABLE parted (id int) PARTITION BY RANGE (id)");
    let mut holder = support::hold_lock(&db, "parted", "ACCESS EXCLUSIVE", 30);
    let case = Case::new(&runbook(
        "phases:\n  - id: b\n    kind: backup\n    steps:\n      - id: pre\n        settings: { lock_timeout: 60s }\n        backup:\n          path: backups/killed\n",
    ));
    let secret = "pw-7f3a-never-shown";
    let child = case.spawn(&db.url_with_password(secret), &[]);
    let marker = case.dir.path().join("backups/killed").display().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    let pid = loop {
        if let Some(pid) = find_pg_dump(&marker) {
            break pid;
        }
        assert!(Instant::now() < deadline, "pg_dump never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(
        !cmdline.contains(secret),
        "the password is not on pg_dump's command line: {cmdline}"
    );
    assert!(cmdline.contains("--lock-wait-timeout=60000"), "{cmdline}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    let run = support::Run::new(out, &case.reports());
    assert_eq!(run.code, 1, "{}", run.stderr);
    let msg = error_of(&run, "pre");
    assert!(msg.contains("pg_dump was killed by a signal"), "{msg}");
    assert!(
        !case.dir.path().join("backups/killed").exists(),
        "the partial backup was removed"
    );
    for text in [
        run.stderr.clone(),
        run.report.to_string(),
        std::fs::read_to_string(run.dir.join("events.jsonl")).unwrap(),
        std::fs::read_to_string(run.dir.join("report.md")).unwrap(),
    ] {
        assert!(!text.contains(secret));
    }
}

#[test]
fn keep_prunes_older_backups_of_the_runbook_but_never_the_new_one() {
    let db = Db::fresh();
    db.sql("CREATE TABLE t (n int); INSERT INTO t VALUES (1);");
    // `keep` and `keep_for` come from params here.
    let case = Case::new(&runbook(
        "params:\n  keep: { type: integer, default: 2 }\n  age: { type: string, default: 720h }\nphases:\n  - id: b\n    kind: backup\n    steps:\n      - id: pre\n        backup:\n          path: \"backups/{{ run.id }}\"\n          format: custom\n          verify: none\n          keep: \"{{ params.keep }}\"\n          keep_for: \"{{ params.age }}\"\n",
    ));
    // A value that is not one is refused before anything runs.
    for (set, says) in [
        ("keep=0", "`keep` renders to `0`, which is zero"),
        ("age=soon", "`keep_for` renders to `soon`"),
    ] {
        let run = case.exec(&db.url, &["--set", set]);
        assert_eq!(run.code, 5, "{}", run.stderr);
        assert!(run.stderr.contains(says), "{}", run.stderr);
        assert!(!case.dir.path().join("backups").exists());
    }
    // Another runbook's backup in the same directory is not ours to prune.
    let foreign = case.dir.path().join("backups/other");
    std::fs::create_dir_all(&foreign).unwrap();
    let mut names = Vec::new();
    for _ in 0..3 {
        let run = case.exec(&db.url, &[]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        names.push(PathBuf::from(
            run.step("pre")["details"]["path"].as_str().unwrap(),
        ));
    }
    let left = backup_dirs(&case.dir.path().join("backups"));
    assert!(
        left.contains(&names[2]) && left.contains(&names[1]),
        "{left:?}"
    );
    assert!(!left.contains(&names[0]), "{left:?}");
    assert!(left.contains(&foreign));

    let list = runbook_bin()
        .args(["backups", "list", "--format", "json"])
        .arg(case.dir.path().join("backups"))
        .output()
        .unwrap();
    assert_eq!(list.status.code(), Some(0));
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let states: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["ok", "ok"],
        "newest first, the empty foreign dir is not a backup"
    );
    assert_eq!(PathBuf::from(listed[0]["path"].as_str().unwrap()), names[2]);
}

#[test]
fn the_example_backs_up_drops_and_restores_on_failure() {
    // With `seed=true` the table is created by the run itself, so an undo
    // back to the backup leaves the run's own seed in place: exit 4 says
    // so. Seeded before the run, the same undo is complete: exit 2.
    for (seed, fail, code) in [(true, false, 0), (true, true, 4), (false, true, 2)] {
        let db = Db::fresh();
        if !seed {
            db.sql(
                "CREATE TABLE orders (id bigserial PRIMARY KEY, customer_ref bigint,
                   legacy_customer_id bigint, placed_at timestamptz NOT NULL DEFAULT now());
                 INSERT INTO orders (customer_ref, legacy_customer_id)
                 SELECT g, g FROM generate_series(1, 10000) AS g;",
            );
        }
        let work = tempfile::tempdir().unwrap();
        let file = work.path().join("runbook.yml");
        std::fs::copy("examples/backup-then-contract/runbook.yml", &file).unwrap();
        let out = runbook_bin()
            .arg("exec")
            .arg(&file)
            .args([
                "--database-url",
                &db.url,
                "--yes",
                "--progress",
                "never",
                "--set",
                &format!("seed={seed}"),
            ])
            .args(["--set", &format!("fail_on_purpose={fail}")])
            .arg("--report-dir")
            .arg(work.path().join("reports"))
            .output()
            .unwrap();
        let run = support::Run::new(out, &work.path().join("reports"));
        assert_eq!(run.code, code, "{}", run.stderr);
        let columns = db.sql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'legacy_customer_id'");
        if fail {
            let rows = db.sql("SELECT count(*), sum(legacy_customer_id) FROM orders");
            assert_eq!(columns, "1", "the restore put the column back");
            assert_eq!(rows, "10000|50005000");
            assert_eq!(run.step("restore_orders")["status"], "succeeded");
            let verdict = run.report["run"]["verdict"].as_str().unwrap();
            if seed {
                assert!(
                    verdict.contains("back to before phase `contract` (verified), but the changes of phase(s) `seed` are still in place"),
                    "{verdict}"
                );
                assert_eq!(run.report["run"]["status"], "partly_undone");
            } else {
                assert!(
                    verdict.contains("verified equal to before the run"),
                    "{verdict}"
                );
            }
        } else {
            assert_eq!(columns, "0");
            assert_eq!(
                run.report["branches"],
                serde_json::json!([]),
                "no failure branch ran"
            );
        }
        assert_eq!(backup_dirs(&work.path().join("backups")).len(), 1);
    }
}

#[test]
fn a_backup_of_one_table_with_a_foreign_key_out_of_it_verifies_by_restore() {
    let db = Db::fresh();
    db.sql(
        "CREATE TABLE parent (id int PRIMARY KEY);
         CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id));
         INSERT INTO parent SELECT generate_series(1, 10);
         INSERT INTO child SELECT g, g FROM generate_series(1, 10) g;",
    );
    verified_by_restore(&db, "public.child");
}

/// Back up one table with `verify: restore`; the run succeeds and the
/// verification passed.
fn verified_by_restore(db: &Db, table: &str) -> support::Run {
    let case = Case::new(&runbook(&format!(
        "phases:\n  - id: b\n    kind: backup\n    steps:\n      - id: bk\n        backup: {{ path: out, tables: [{table}], verify: restore }}\n"
    )));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.step("bk")["details"]["verification"]["status"],
        "passed"
    );
    run
}

/// pg_dump `-t` leaves out what a table uses from elsewhere: its column's
/// enum, its trigger's function, its default's sequence. The test restore
/// into an empty database gets them from the source first, and passes.
#[test]
fn a_backup_of_one_table_using_a_type_a_function_and_a_sequence_from_outside_verifies_by_restore() {
    let db = Db::fresh();
    db.sql(
        "CREATE TYPE mood AS ENUM ('ok', 'bad');
         CREATE SEQUENCE shared_ids;
         CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql
           AS $$BEGIN NEW.n := NEW.n + 1; RETURN NEW; END$$;
         CREATE TABLE t (id bigint PRIMARY KEY DEFAULT nextval('shared_ids'), n int, m mood);
         CREATE TRIGGER t_bump BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION bump();
         INSERT INTO t (n, m) SELECT g, 'ok' FROM generate_series(1, 10) g;",
    );
    let run = verified_by_restore(&db, "public.t");
    assert!(
        run.stderr
            .contains("object(s) the tables use from outside the backup (types, functions, sequences, schemas, extensions), read from the source database: loaded\n"),
        "{}",
        run.stderr
    );
}

/// A contract phase fails after it created a table that references the
/// table the backup holds. The restore drops that table (it was created
/// after the backup), restores the backed-up table, proves the schema
/// equals the backup's snapshot, and the run is back where it started.
#[test]
fn a_restore_rollback_removes_what_the_failed_phase_built_on_the_restored_table() {
    let db = Db::fresh();
    db.sql(
        "CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL, legacy text);
         INSERT INTO users (email, legacy) SELECT 'u' || g, 'l' || g FROM generate_series(1, 500) g;
         CREATE TABLE audit (id int PRIMARY KEY, user_id bigint REFERENCES users (id));
         INSERT INTO audit VALUES (1, 1);",
    );
    let case = Case::new(&runbook(
        r#"phases:
  - id: backup
    kind: backup
    steps:
      - id: users_backup
        backup: { path: bk, tables: [public.users], verify: list }
  - id: contract
    kind: contract
    steps:
      - id: later
        sql: CREATE TABLE later (id int PRIMARY KEY, user_id bigint REFERENCES users (id));
      - id: drop_legacy
        sql: ALTER TABLE users DROP COLUMN legacy;
      - id: broken
        sql: SELECT 1/0;
on_failure:
  - id: restore_users
    restore: { from: steps.users_backup, clean: true }
"#,
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(db.sql("SELECT to_regclass('later') IS NULL"), "t");
    assert_eq!(
        db.sql("SELECT count(*), count(legacy) FROM users"),
        "500|500"
    );
    // The foreign key of `audit`, which existed before, is back.
    assert_eq!(
        db.sql("SELECT count(*) FROM pg_constraint WHERE conrelid = 'audit'::regclass AND contype = 'f'"),
        "1"
    );
    let d = &run.step("restore_users")["details"];
    assert_eq!(d["schema"]["covers"], "tables");
    assert_eq!(d["schema"]["differences"], serde_json::json!([]));
    assert_eq!(
        d["dropped_created_after_backup"],
        serde_json::json!(["table public.later"])
    );
    assert_eq!(
        d["foreign_keys_added_back"],
        serde_json::json!(["public.audit.audit_user_id_fkey"])
    );
    assert_eq!(run.report["branches"][1]["verification"]["result"], "equal");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(case.dir.path().join("bk/manifest.json")).unwrap(),
    )
    .unwrap();
    assert!(
        manifest["schema"]["objects"]["table public.users"].is_object(),
        "{manifest}"
    );
    assert!(manifest["schema"]["objects"]["sequence public.users_id_seq"].is_object());
}

/// A whole-database backup restored with `clean: true` leaves nothing of
/// what was created after it, and `mode: recreate` builds the database anew.
#[test]
fn a_whole_database_restore_leaves_nothing_created_after_the_backup() {
    for mode in ["in_place", "recreate"] {
        let db = Db::fresh();
        seed(&db);
        db.sql("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON SEQUENCES TO PUBLIC");
        let before = fingerprint(&db);
        let case = Case::new(&runbook(&format!(
            r#"phases:
  - id: backup
    kind: backup
    steps:
      - id: all
        backup: {{ path: bk, verify: list }}
  - id: expand
    kind: expand
    steps:
      - id: new_things
        sql: |
          CREATE TABLE extra (id int);
          CREATE VIEW extra_v AS SELECT * FROM extra;
          CREATE FUNCTION extra_f() RETURNS int LANGUAGE sql AS 'SELECT 1';
          CREATE AGGREGATE extra_a(int) (sfunc = int4pl, stype = int);
          CREATE SCHEMA extra_s;
          CREATE TABLE extra_s.t (id int);
          ALTER TABLE items ADD COLUMN added int;
          CREATE STATISTICS extra_st ON id, added FROM items;
          CREATE RULE extra_rule AS ON DELETE TO items DO INSTEAD NOTHING;
          CREATE MATERIALIZED VIEW extra_mv AS SELECT 1 AS one;
          CREATE TABLE extra_id (id int GENERATED ALWAYS AS IDENTITY);
          CREATE COLLATION extra_c (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
          CREATE FUNCTION extra_eq(int, int) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT $1 = $2';
          CREATE OPERATOR === (leftarg = int, rightarg = int, function = extra_eq);
          CREATE TYPE extra_span AS RANGE (subtype = float8);
          CREATE TYPE extra_tag AS ENUM ('a');
          CREATE CAST (extra_tag AS int) WITH INOUT AS ASSIGNMENT;
          CREATE PUBLICATION extra_pub FOR TABLE items;
          ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC;
          ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
          ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT UPDATE ON SEQUENCES TO PUBLIC;
          CREATE FUNCTION extra_evt() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$;
          CREATE EVENT TRIGGER extra_watch ON ddl_command_end EXECUTE FUNCTION extra_evt();
          CREATE TEXT SEARCH DICTIONARY extra_dict (TEMPLATE = simple);
          CREATE TEXT SEARCH CONFIGURATION extra_search (COPY = simple);
          ALTER TEXT SEARCH CONFIGURATION extra_search ALTER MAPPING FOR asciiword WITH extra_dict;
          CREATE FOREIGN DATA WRAPPER extra_fdw;
          CREATE SERVER extra_srv FOREIGN DATA WRAPPER extra_fdw;
          CREATE USER MAPPING FOR PUBLIC SERVER extra_srv OPTIONS (password 'p');
          CREATE FOREIGN TABLE extra_ft (id int) SERVER extra_srv;
          CREATE OPERATOR CLASS extra_ops FOR TYPE int USING btree AS OPERATOR 1 <, OPERATOR 3 =, FUNCTION 1 btint4cmp(int, int);
          CREATE ACCESS METHOD extra_am TYPE INDEX HANDLER bthandler;
          CREATE TEXT SEARCH PARSER extra_prs (START = prsd_start, GETTOKEN = prsd_nexttoken, END = prsd_end, LEXTYPES = prsd_lextype);
          CREATE TEXT SEARCH TEMPLATE extra_tmpl (LEXIZE = dsimple_lexize);
      - id: broken
        sql: SELECT 1/0;
on_failure:
  - id: back
    restore: {{ from: steps.all, clean: true, mode: {mode}, terminate_connections: true }}
"#
        )));
        let run = case.exec(&db.url, &[]);
        assert_eq!(run.code, 2, "{mode}: {}", run.stderr);
        assert_eq!(fingerprint(&db), before, "{mode}");
        assert_eq!(
            db.sql("SELECT to_regclass('extra') IS NULL AND to_regprocedure('extra_f()') IS NULL"),
            "t"
        );
        assert_eq!(
            db.sql("SELECT to_regprocedure('extra_a(int)') IS NULL AND to_regnamespace('extra_s') IS NULL"),
            "t",
            "{mode}"
        );
        assert_eq!(
            db.sql(
                "SELECT (SELECT count(*) FROM pg_publication) || ' ' || (SELECT count(*) FROM pg_event_trigger) \
                 || ' ' || (SELECT count(*) FROM pg_collation WHERE collname = 'extra_c') \
                 || ' ' || (SELECT count(*) FROM pg_operator WHERE oprname = '===') \
                 || ' ' || (SELECT count(*) FROM pg_cast WHERE oid >= 16384) \
                 || ' ' || (SELECT count(*) FROM pg_ts_config WHERE oid >= 16384) \
                 || ' ' || (SELECT count(*) FROM pg_ts_dict WHERE oid >= 16384) \
                 || ' ' || (to_regclass('extra_mv') IS NULL) || ' ' || (to_regtype('extra_span') IS NULL) \
                 || ' ' || (SELECT count(*) FROM pg_rewrite WHERE rulename = 'extra_rule') \
                 || ' ' || (SELECT string_agg(defaclobjtype::text || ':' || defaclacl::text, ',') FROM pg_default_acl) \
                 || ' ' || (SELECT count(*) FROM pg_foreign_data_wrapper) || ' ' || (SELECT count(*) FROM pg_foreign_server) \
                 || ' ' || (SELECT count(*) FROM pg_user_mappings) || ' ' || (to_regclass('extra_ft') IS NULL) \
                 || ' ' || (SELECT count(*) FROM pg_opclass WHERE oid >= 16384) || ' ' || (SELECT count(*) FROM pg_opfamily WHERE oid >= 16384) \
                 || ' ' || (SELECT count(*) FROM pg_am WHERE oid >= 16384) \
                 || ' ' || (SELECT count(*) FROM pg_ts_parser WHERE oid >= 16384) || ' ' || (SELECT count(*) FROM pg_ts_template WHERE oid >= 16384)"
            ),
            "0 0 0 0 0 0 0 true true 0 S:{=r/runbook} 0 0 0 true 0 0 0 0 0",
            "{mode}: what was created after the backup is gone, and the default privileges are the backup's"
        );
        let d = &run.step("back")["details"];
        assert_eq!(d["mode"], mode);
        assert_eq!(d["schema"]["covers"], "whole");
        assert_eq!(
            d["schema"]["differences"],
            serde_json::json!([]),
            "{mode}: {d}"
        );
        // The run journal outlives the restore: `recreate` dropped the
        // database with the journal in it, and the journal is written
        // again, whole, and says how the run ended.
        assert_eq!(
            db.sql(
                "SELECT status || ':' || (SELECT string_agg(step || '=' || status, ',' ORDER BY seq) FROM runbook_journal.run_steps) FROM runbook_journal.runs"
            ),
            "rolled_back:all=succeeded,new_things=succeeded,broken=failed,back=succeeded",
            "{mode}"
        );
    }
}

/// What belongs to the database itself, not to what is in it: `mode:
/// recreate` creates it again with its owner, locale, connection limit,
/// grants, settings (the database's and a role's in it, a quoted
/// `search_path` among them) and comment. Before, the new database had
/// the restoring role as its owner, the cluster's locale, and none of the
/// rest, and the restore said it was verified.
#[test]
fn a_recreated_database_keeps_its_owner_locale_grants_and_settings() {
    let db = Db::fresh();
    let maint = support::cluster().url("postgres");
    let (name, owner, reader) = (
        db.name.clone(),
        format!("{}_owner", db.name),
        format!("{}_reader", db.name),
    );
    support::psql(&maint, &format!("DROP DATABASE {name}"));
    support::psql(&maint, &format!("CREATE ROLE {owner}"));
    support::psql(&maint, &format!("CREATE ROLE {reader}"));
    support::psql(
        &maint,
        &format!(
            "CREATE DATABASE {name} OWNER {owner} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'de' \
             LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' CONNECTION LIMIT 40"
        ),
    );
    for sql in [
        format!("ALTER DATABASE {name} SET statement_timeout = '5s'"),
        format!("ALTER DATABASE {name} SET search_path = \"$user\", public, \"Odd, name\""),
        format!("ALTER DATABASE {name} SET app.jwt_secret = 'hush-hush'"),
        format!("ALTER ROLE {reader} IN DATABASE {name} SET work_mem = '8MB'"),
        format!("REVOKE CONNECT, TEMPORARY ON DATABASE {name} FROM PUBLIC"),
        format!("GRANT CONNECT ON DATABASE {name} TO {reader} WITH GRANT OPTION"),
        format!("COMMENT ON DATABASE {name} IS 'the shop''s'"),
    ] {
        support::psql(&maint, &sql);
    }
    seed(&db);
    let props = |db: &Db| {
        support::psql(
            &maint,
            &format!(
                "SELECT concat_ws(' | ', d.datdba::regrole, d.datcollate, d.datctype, d.datlocprovider, d.daticulocale,
                        d.datconnlimit, d.datacl, shobj_description(d.oid, 'pg_database'),
                        (SELECT string_agg(coalesce(s.setrole::regrole::text, '-') || ':' || (SELECT string_agg(x, ';' ORDER BY x) FROM unnest(s.setconfig) x), ' ' ORDER BY s.setrole)
                         FROM pg_db_role_setting s WHERE s.setdatabase = d.oid))
                 FROM pg_database d WHERE d.datname = '{}'",
                db.name
            ),
        )
    };
    let before = (props(&db), fingerprint(&db));
    assert!(before.0.contains("Odd, name"), "{}", before.0);
    let case = Case::new(&runbook(
        r#"phases:
  - id: backup
    kind: backup
    steps:
      - id: all
        backup: { path: bk, verify: list }
  - id: expand
    kind: expand
    steps:
      - id: broken
        sql: SELECT 1/0;
on_failure:
  - id: back
    restore: { from: steps.all, mode: recreate, terminate_connections: true }
"#,
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let d = &run.step("back")["details"];
    assert_eq!(run.step("back")["status"], "succeeded", "{d}");
    assert_eq!(d["database"]["differences"], serde_json::json!([]), "{d}");
    assert_eq!(d["database"]["kept"]["owner"], owner.as_str(), "{d}");
    // A setting can hold a secret: named, never shown.
    assert!(
        d["database"]["kept"]["settings"]
            .as_array()
            .is_some_and(|s| s.contains(&serde_json::json!("app.jwt_secret"))),
        "{d}"
    );
    for f in ["report.json", "report.md", "events.jsonl"] {
        let text = std::fs::read_to_string(case.reports().join(f)).expect(f);
        assert!(!text.contains("hush-hush"), "{f}");
    }
    assert_eq!((props(&db), fingerprint(&db)), before);
}

/// `mode: recreate` by a role that could not create the database again as
/// its owner's is refused before anything is dropped, and says why.
#[test]
fn a_recreate_that_could_not_give_the_owner_back_drops_nothing() {
    let db = Db::fresh();
    db.sql("CREATE TABLE kept (id bigint PRIMARY KEY); INSERT INTO kept VALUES (1)");
    let first = Case::new(&runbook(
        "phases:\n  - id: backup\n    kind: backup\n    steps:\n      - id: all\n        backup: { path: bk, verify: list }\n",
    ));
    let run = first.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let role = format!("{}_restorer", db.name);
    support::psql(
        &support::cluster().url("postgres"),
        &format!("CREATE ROLE {role} LOGIN CREATEDB"),
    );
    let second = Case::new(&runbook(&format!(
        "phases:\n  - id: back\n    kind: migrate\n    steps:\n      - id: back\n        \
         restore: {{ from: {}, pick: newest, mode: recreate, terminate_connections: true }}\n",
        first.dir.path().join("bk").display()
    )));
    let run = second.exec(&db.url.replacen("runbook@", &format!("{role}@"), 1), &[]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    let message = error_of(&run, "back");
    assert!(
        message.contains("is owned by") && message.contains("nothing was dropped"),
        "{message}"
    );
    assert_eq!(db.sql("SELECT count(*) FROM kept"), "1");
}

/// A runbook that backs up schema `app`, runs `sql` and fails, and restores
/// the backup with `clean: true`.
fn app_backup_then_failing(sql: &str) -> Case {
    let sql = sql.replace('\n', "\n  ");
    Case::new(&runbook(&format!(
        "phases:
  - id: backup
    kind: backup
    steps:
      - id: app
        backup: {{ path: bk, schemas: [app], verify: list }}
  - id: expand
    kind: expand
    steps:
      - id: change
        sql: |
          {sql}
      - id: broken
        sql: SELECT 1/0;
on_failure:
  - id: back
    restore: {{ from: steps.app, clean: true, terminate_connections: true }}
"
    )))
}

/// A backup of one schema, restored with `clean: true`: what the failed
/// phase created in that schema goes (a materialized view and a table with
/// an identity column among it, which a publication outside had been given),
/// its default privileges are the backup's again, and what lives in other
/// schemas stays. Before, the backup's
/// record left the schema's materialized views out, and the restore could
/// not drop an identity column's sequence.
#[test]
fn a_schema_restore_clears_that_schema_and_leaves_the_others() {
    let db = Db::fresh();
    db.sql(
        "CREATE SCHEMA app;
         CREATE TABLE app.orders (id int PRIMARY KEY, total int);
         INSERT INTO app.orders SELECT g, g * 10 FROM generate_series(1, 50) g;
         CREATE MATERIALIZED VIEW app.totals AS SELECT sum(total) AS total FROM app.orders;
         ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT SELECT ON TABLES TO PUBLIC;
         CREATE PUBLICATION feed;",
    );
    let case = app_backup_then_failing(
        "CREATE TABLE app.lines (id int GENERATED ALWAYS AS IDENTITY, order_id int);
         ALTER PUBLICATION feed ADD TABLE app.lines;
         CREATE MATERIALIZED VIEW app.counts AS SELECT count(*) AS n FROM app.orders;
         ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT INSERT ON TABLES TO PUBLIC;
         DELETE FROM app.orders WHERE id > 10;
         CREATE TABLE public.elsewhere (id int);",
    );
    let run = case.exec(&db.url, &[]);
    // The table made in `public` is outside the backup, and stays: the run
    // says the schema is not what it was before it.
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr.contains("1 schema object(s) differ"),
        "{}",
        run.stderr
    );
    assert_eq!(run.step("back")["status"], "succeeded");
    let d = &run.step("back")["details"];
    assert_eq!(d["schema"]["covers"], "schemas", "{d}");
    assert_eq!(d["schema"]["differences"], serde_json::json!([]), "{d}");
    assert_eq!(
        d["dropped_created_after_backup"],
        serde_json::json!([
            "materialized view app.counts",
            "sequence app.lines_id_seq",
            "table app.lines"
        ]),
        "{d}"
    );
    assert_eq!(
        db.sql(
            "SELECT (SELECT count(*) FROM app.orders) || ' ' || (SELECT total FROM app.totals) \
             || ' ' || (to_regclass('app.lines') IS NULL) || ' ' || (to_regclass('app.counts') IS NULL) \
             || ' ' || (to_regclass('public.elsewhere') IS NOT NULL) \
             || ' ' || (SELECT defaclacl::text FROM pg_default_acl)"
        ),
        "50 12750 true true true {=r/runbook}"
    );
}

/// A schema backup's restore never drops what lies outside the schema and
/// was there when the backup was taken. Here the failed phase changed a
/// column outside to a type it created inside: dropping that type with
/// CASCADE drops the column and its data, which pg_restore of the schema
/// does not bring back. The restore stops, and nothing is dropped.
#[test]
fn a_schema_restore_never_drops_a_column_outside_the_schema() {
    let db = Db::fresh();
    db.sql(
        "CREATE SCHEMA app;
         CREATE TABLE app.orders (id int PRIMARY KEY);
         CREATE TABLE public.people (id int, status text);
         INSERT INTO people VALUES (1, 'ok');",
    );
    let case = app_backup_then_failing(
        "CREATE TYPE app.mood AS ENUM ('ok', 'sad');
         ALTER TABLE public.people ALTER COLUMN status TYPE app.mood USING status::app.mood;",
    );
    let run = case.exec(&db.url, &[]);
    assert_eq!(
        db.sql("SELECT status::text FROM people"),
        "ok",
        "{}",
        run.stderr
    );
    assert_eq!(db.sql("SELECT to_regtype('app.mood') IS NOT NULL"), "t");
    assert_eq!(run.code, 4, "{}", run.stderr);
    let msg = error_of(&run, "back");
    assert!(
        msg.contains("outside the backup and was there when it was taken: table public.people; nothing was dropped"),
        "{msg}"
    );
}

/// The restore's schema check can fail: a restored table that does not
/// match the backup's snapshot is a failed step, and the run says so.
#[test]
fn a_restored_schema_that_differs_from_the_backups_snapshot_fails_the_restore() {
    let db = Db::fresh();
    seed(&db);
    let keep = tempfile::tempdir().unwrap();
    let dir = take_backup(&db, keep.path());
    // The snapshot says `notes` had one more column than the dump holds.
    let path = dir.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cols = m["schema"]["objects"]["table public.notes"]["columns"]
        .as_array_mut()
        .expect("the manifest holds the schema");
    let mut extra = cols[0].clone();
    extra["name"] = "ghost".into();
    cols.push(extra);
    std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    let case = restore_case(&dir, "");
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    let msg = error_of(&run, "back");
    assert!(
        msg.contains(
            "1 schema object(s) differ from the backup's snapshot: changed table public.notes"
        ),
        "{msg}"
    );
}

/// A backup's manifest as a runbook that read no collations, publications
/// (and the other kinds of level 1) wrote it: no level, and none of them.
fn as_an_older_runbook_wrote_it(dir: &Path) {
    let path = dir.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        m["schema"]["reads"],
        runbook::snapshot::READS,
        "{}",
        m["schema"]
    );
    let schema = m["schema"].as_object_mut().unwrap();
    schema.remove("reads");
    schema["objects"]
        .as_object_mut()
        .unwrap()
        .retain(|k, _| !k.starts_with("collation ") && !k.starts_with("publication "));
    std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
}

/// A backup whose schema record an older runbook wrote: the restore clears
/// and compares only what that runbook read. Here a collation older than
/// the backup, which the record does not hold, is used by a column outside
/// the backup. Taken as created since, it was dropped with CASCADE before
/// pg_restore ran, and the column and its data went with it; now it is
/// left, and pg_restore's own `--clean` refuses to drop it, so the restore
/// fails with the data whole.
#[test]
fn a_backup_recorded_by_an_older_runbook_never_drops_what_that_runbook_did_not_read() {
    let db = Db::fresh();
    db.sql(
        "CREATE SCHEMA app;
         CREATE COLLATION app.nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
         CREATE TABLE app.orders (id int PRIMARY KEY);
         CREATE TABLE public.people (id int, name text COLLATE app.nocase);
         INSERT INTO people VALUES (1, 'Ada');",
    );
    let keep = tempfile::tempdir().unwrap();
    let dir = keep.path().join("backup");
    let case = Case::new(&runbook(&format!(
        "phases:\n  - id: b\n    kind: backup\n    steps:\n      - id: pre\n        backup: {{ path: {}, schemas: [app] }}\n",
        dir.display()
    )));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    as_an_older_runbook_wrote_it(&dir);
    let run = restore_case(&dir, "").exec(&db.url, &[]);
    assert_eq!(
        db.sql("SELECT string_agg(attname, ',') FROM pg_attribute WHERE attrelid = 'people'::regclass AND attnum > 0 AND NOT attisdropped"),
        "id,name",
        "{}",
        run.stderr
    );
    assert_eq!(db.sql("SELECT name FROM people"), "Ada");
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        error_of(&run, "back").contains("pg_restore"),
        "{}",
        run.stderr
    );
}

/// A whole-database backup whose record an older runbook wrote restores,
/// and compares equal on what that runbook read; the step says what it did
/// not compare. A publication older than the backup is not taken as
/// created since, nor as a difference.
#[test]
fn a_backup_recorded_by_an_older_runbook_is_compared_on_what_it_read() {
    let db = Db::fresh();
    seed(&db);
    db.sql("CREATE PUBLICATION feed FOR TABLE items");
    let keep = tempfile::tempdir().unwrap();
    let dir = take_backup(&db, keep.path());
    as_an_older_runbook_wrote_it(&dir);
    let run = restore_case(&dir, "").exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let d = &run.step("back")["details"];
    assert_eq!(d["schema"]["differences"], serde_json::json!([]), "{d}");
    assert!(
        d["schema"]["not_compared"]
            .as_array()
            .is_some_and(|kinds| kinds.contains(&"publication".into())),
        "the step says what it did not compare: {d}"
    );
    assert_eq!(
        db.sql("SELECT string_agg(pubname, ',') FROM pg_publication"),
        "feed"
    );
}

/// A backup holds the database's data: inside a git working tree it is
/// refused unless git ignores its directory, so `git add .` cannot commit
/// it.
#[test]
fn a_backup_inside_a_git_working_tree_must_be_ignored_there() {
    let db = Db::fresh();
    seed(&db);
    let case = Case::new(&runbook(
        "phases:\n  - id: b\n    kind: backup\n    steps:\n      - id: pre\n        backup: { path: data/bk, verify: list }\n",
    ));
    let git = |args: &[&str]| {
        assert!(
            Command::new("git")
                .arg("-C")
                .arg(case.dir.path())
                .args(args)
                .status()
                .unwrap()
                .success()
        );
    };
    git(&["init", "-q"]);
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let msg = error_of(&run, "pre");
    assert!(msg.contains("inside the git working tree"), "{msg}");
    assert!(!case.dir.path().join("data/bk").exists());
    std::fs::write(case.dir.path().join(".gitignore"), "data/\n").unwrap();
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// The manifest a restore is judged against must be the one this run's
/// backup step wrote: an edited manifest is refused before anything is
/// touched.
#[test]
fn a_manifest_changed_after_the_backup_step_is_refused() {
    let db = Db::fresh();
    seed(&db);
    let case = Case::new(&runbook(
        r#"phases:
  - id: b
    kind: backup
    steps:
      - id: bk
        backup: { path: bk, verify: list }
  - id: tamper
    kind: verify
    steps:
      - id: edit
        shell: [sh, -c, "printf ' ' >> bk/manifest.json"]
  - id: r
    kind: custom
    steps:
      - id: back
        restore: { from: steps.bk, clean: true }
"#,
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let msg = error_of(&run, "back");
    assert!(
        msg.contains("its manifest.json changed after steps.bk wrote it"),
        "{msg}"
    );
}

/// `mode: recreate` refuses a backup of part of the database before it
/// touches anything: it creates no target database and ends no session, so
/// its "nothing was touched" is true.
#[test]
fn a_recreate_of_a_partial_backup_is_refused_before_the_target_is_touched() {
    let db = Db::fresh();
    seed(&db);
    let target = format!("{}_copy", db.name);
    let case = Case::new(&runbook(&format!(
        r#"phases:
  - id: backup
    kind: backup
    steps:
      - id: some
        backup: {{ path: bk, tables: [items], verify: list }}
      - id: back
        restore: {{ from: steps.some, target: {target}, mode: recreate }}
"#
    )));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let msg = error_of(&run, "back");
    assert!(
        msg.contains("is not a whole-database backup; nothing was touched"),
        "{msg}"
    );
    assert_eq!(
        support::psql(
            &support::cluster().url("postgres"),
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{target}'")
        ),
        "0",
        "the target database was created before the refusal"
    );
}

/// A table under FORCE ROW LEVEL SECURITY, backed up by a superuser and
/// restored by its owner: the policy hides its rows from the owner. The
/// restore's count turns row-level security off, as pg_dump does, so it
/// is refused rather than filtered, and the report says the table was not
/// counted. (Before, it said `0 rows, the manifest says 3`: a restore that
/// had lost the data, when every row was there.) A role that may read
/// every row counts them, and the restore verifies.
#[test]
fn a_table_whose_rows_a_policy_hides_is_not_counted_rather_than_found_empty() {
    let db = Db::fresh();
    let owner = format!("{}_owner", db.name);
    db.sql(&format!(
        "CREATE ROLE {owner} LOGIN CREATEDB;
         CREATE TABLE secrets (n int);
         INSERT INTO secrets SELECT generate_series(1, 3);
         CREATE POLICY none_seen ON secrets USING (false);
         ALTER TABLE secrets ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
         ALTER TABLE secrets OWNER TO {owner};"
    ));
    let dir = tempfile::tempdir().unwrap();
    let backup = take_backup(&db, dir.path());
    let restore = |url: &str, target: &str| {
        Case::new(&runbook(&format!(
            "phases:\n  - id: r\n    kind: custom\n    steps:\n      - id: back\n        restore:\n          from: {}\n          target: {target}\n",
            backup.display()
        )))
        .exec(url, &[])
    };
    let as_owner = db.url.replacen("runbook@", &format!("{owner}@"), 1);
    let run = restore(&as_owner, &format!("{}_by_owner", db.name));
    assert_ne!(run.code, 0, "{}", run.stderr);
    let said = error_of(&run, "back");
    assert!(
        said.contains("public.secrets: not counted: query would be affected by row-level security policy for table \"secrets\"; the manifest says 3 rows"),
        "{said}"
    );
    assert!(!said.contains("0 rows"), "{said}");
    // The rows are all there.
    let restored = db.url.replacen(
        &format!("/{}", db.name),
        &format!("/{}_by_owner", db.name),
        1,
    );
    assert_eq!(
        support::psql(&restored, "SELECT count(*) FROM secrets"),
        "3"
    );

    let run = restore(&db.url, &format!("{}_by_superuser", db.name));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.step("back")["details"]["mismatches"],
        serde_json::json!([])
    );
}

/// A database whose sessions end when idle in a transaction (a common
/// guard on managed databases) still backs up: runbook's snapshot session
/// waits idle while pg_dump copies, and reads the tables' schema after, as
/// pg_dump's own session turns that timeout off.
#[test]
fn a_database_timeout_for_idle_transactions_does_not_end_the_dumps_snapshot_session() {
    let db = Db::fresh();
    db.sql(&format!(
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS t FROM generate_series(1, 300000) g;
         ALTER DATABASE {} SET idle_in_transaction_session_timeout = '200ms';",
        db.name
    ));
    let case = Case::new(&runbook(
        r#"phases:
  - id: backup
    kind: backup
    steps:
      - id: pre
        backup:
          path: backups/big
          format: custom
          tables: [public.big]
"#,
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let tables = &run.step("pre")["details"]["tables"];
    assert_eq!(tables[0]["rows"], 300000, "{tables}");
}

/// A restore drill as the app's migration role, as on a managed database:
/// the database belongs to the administrator, the tables to the app's
/// role, and the drill restores into a database that role creates (and so
/// owns). The schema compares equal: each table has the owner it had.
#[test]
fn a_restore_into_a_database_another_role_owns_compares_owners_as_they_were() {
    let db = Db::fresh();
    let app = format!("{}_app", db.name);
    db.sql(&format!(
        "CREATE ROLE {app} LOGIN CREATEDB;
         GRANT CREATE ON SCHEMA public TO {app};
         SET ROLE {app};
         CREATE TABLE orders (id int PRIMARY KEY, note text);
         INSERT INTO orders SELECT g, 'n' FROM generate_series(1, 50) g;"
    ));
    let target = format!("{}_drill", db.name);
    let case = Case::new(&runbook(&format!(
        r#"phases:
  - id: drill
    kind: backup
    steps:
      - id: pre
        backup:
          path: backups/drill
          format: custom
      - id: back
        restore:
          from: steps.pre
          target: {target}
"#
    )));
    let run = case.exec(&db.url.replacen("runbook@", &format!("{app}@"), 1), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let schema = &run.step("back")["details"]["schema"];
    assert_eq!(schema["differences"], serde_json::json!([]), "{schema}");
    let copy = db
        .url
        .replacen(&format!("/{}", db.name), &format!("/{target}"), 1);
    assert_eq!(
        support::psql(
            &copy,
            "SELECT tableowner || ' ' || (SELECT datdba::regrole::text FROM pg_database WHERE datname = current_database()) FROM pg_tables WHERE tablename = 'orders'"
        ),
        format!("{app} {app}")
    );
}

/// A restore into a database this step created, that fails part-way,
/// drops that database: nothing was changed, and the step can run again.
#[test]
fn a_failed_restore_drops_the_database_it_created() {
    let db = Db::fresh();
    let app = format!("{}_restorer", db.name);
    db.sql(&format!(
        "CREATE ROLE {app} LOGIN CREATEDB;
         GRANT pg_read_all_data TO {app};
         CREATE TABLE ledger (id int PRIMARY KEY);
         INSERT INTO ledger SELECT generate_series(1, 10);"
    ));
    let dir = tempfile::tempdir().unwrap();
    let backup = take_backup(&db, dir.path());
    let target = format!("{}_copy", db.name);
    // The role may not give the table to its owner, so pg_restore fails.
    let run = Case::new(&runbook(&format!(
        "phases:\n  - id: r\n    kind: custom\n    steps:\n      - id: back\n        restore:\n          from: {}\n          target: {target}\n",
        backup.display()
    )))
    .exec(&db.url.replacen("runbook@", &format!("{app}@"), 1), &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("nothing was changed"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("dropped `{target}`, which this step had created")),
        "{}",
        run.stderr
    );
    assert_eq!(
        db.sql(&format!(
            "SELECT count(*) FROM pg_database WHERE datname = '{target}'"
        )),
        "0"
    );
}
