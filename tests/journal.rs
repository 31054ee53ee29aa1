//! The run journal against a real PostgreSQL: every run and step recorded
//! in the target database as it happens; `runbook runs list|show` read it;
//! `runbook resume` goes on after `kill -9`; `runbook rollback` undoes a
//! finished run days later, exactly what it did.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Case, Db, wait_until};

const HEAD: &str = "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: j, version: 1 }\n";

fn runbook(body: &str) -> String {
    format!("{HEAD}{body}")
}

fn cli(db: &Db, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(args)
        .args(["--database-url", &db.url])
        .env_remove("DATABASE_URL")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    support::ended(out)
}

/// The runbook run again, to succeed, with a report directory of its
/// own: its run id.
fn exec_again(case: &Case, db: &Db, reports: &str) -> String {
    let run = again(
        case,
        db,
        &["exec", &case.file.display().to_string()],
        reports,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.report["run"]["id"].as_str().unwrap().to_string()
}

/// `runbook resume` / `rollback` with a report directory of its own.
fn again(case: &Case, db: &Db, args: &[&str], reports: &str) -> support::Run {
    let dir = case.dir.path().join(reports);
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(args)
        .args([
            "--database-url",
            &db.url,
            "--progress",
            "never",
            "--report-dir",
        ])
        .arg(&dir)
        .env_remove("DATABASE_URL")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    support::Run::new(out, &dir)
}

fn show(db: &Db, run_id: &str) -> serde_json::Value {
    let (code, out, err) = cli(db, &["runs", "show", run_id, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn step<'v>(run: &'v serde_json::Value, id: &str) -> &'v serde_json::Value {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|s| s["step"] == id && s["role"] == "main")
        .unwrap_or_else(|| panic!("no step {id} in {run:#}"))
}

/// Start the run, wait until a statement matching `pattern` is running in
/// its database (not another test's), SIGKILL the runner, and wait until
/// the server has ended the orphaned session (it notices within its 2 s
/// check interval).
/// Returns the run's id, from the journal.
fn kill_9_during(case: &Case, db: &Db, pattern: &str) -> String {
    let mut child = case
        .command(&db.url, &[])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        db,
        &format!(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE '%{pattern}%' AND state = 'active' AND datname = current_database() AND pid <> pg_backend_pid())"
        ),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while db.sql(&format!("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%{pattern}%' AND datname = current_database() AND pid <> pg_backend_pid()")) != "0" {
        assert!(Instant::now() < deadline, "the orphaned backend kept running");
        std::thread::sleep(Duration::from_millis(100));
    }
    db.sql("SELECT run_id FROM runbook_journal.runs")
}

const EXPAND: &str = r#"phases:
  - id: expand
    kind: expand
    steps:
      - id: create
        sql: CREATE TABLE f1 (n int);
        rollback:
          id: drop_f1
          sql: DROP TABLE IF EXISTS f1;
      - id: fill
        sql: INSERT INTO f1 SELECT generate_series(1, 1000);
      - id: add_column
        sql: ALTER TABLE f1 ADD COLUMN note text;
        rollback:
          id: drop_note
          sql: ALTER TABLE f1 DROP COLUMN IF EXISTS note;
"#;

#[test]
fn every_run_and_step_is_recorded_and_runs_list_and_show_read_them() {
    let db = Db::fresh();
    let case = Case::new(&runbook(EXPAND));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let id = run.report["run"]["id"].as_str().unwrap().to_string();

    let (code, out, err) = cli(&db, &["runs", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&id) && out.contains("succeeded"), "{out}");

    let j = show(&db, &id);
    assert_eq!(j["status"], "succeeded");
    assert_eq!(j["exit_code"], 0);
    assert_eq!(j["runbook"], "j");
    assert_eq!(j["sha256"], run.report["runbook"]["sha256"]);
    let ids: Vec<&str> = j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["create", "fill", "add_column"]);
    assert_eq!(
        step(&j, "create")["compensations"],
        serde_json::json!(["drop_f1"])
    );
    assert_eq!(step(&j, "fill")["output"]["rows_affected"], 1000);

    // The runner's role is named `runbook`: its tables still go to public.
    assert_eq!(db.sql("SELECT to_regclass('public.f1') IS NOT NULL"), "t");
    // The journal is not the application's schema: a snapshot leaves it out.
    let (code, out, _) = cli(&db, &["schema", "snapshot"]);
    assert_eq!(code, 0);
    assert!(!out.contains("runbook.run"), "{out}");
}

/// The runner is killed with SIGKILL in the middle of a step; `resume`
/// goes on from the journal: the finished steps are not run again (no
/// "relation f1 already exists", no compensation that drops f1), the
/// interrupted transactional step runs again, and the run ends succeeded.
#[test]
fn kill_9_mid_step_then_resume_finishes_the_run_and_loses_nothing() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        r#"phases:
  - id: expand
    kind: expand
    steps:
      - id: create
        sql: CREATE TABLE f1 (n int);
        rollback:
          id: drop_f1
          sql: DROP TABLE IF EXISTS f1;
      - id: fill
        sql: INSERT INTO f1 SELECT generate_series(1, 1000);
      - id: slow
        sql: |
          INSERT INTO f1 VALUES (-1);
          SELECT pg_sleep(CASE WHEN to_regclass('public.go_on') IS NULL THEN 120 ELSE 0 END);
      - id: index
        sql: CREATE INDEX f1_n ON f1 (n);
"#,
    ));
    let id = kill_9_during(&case, &db, "pg_sleep(CASE");
    // The orphaned backend's transaction, the INSERT of -1 included, rolled back.
    assert_eq!(
        db.sql(&format!(
            "SELECT string_agg(step || ':' || status, ',' ORDER BY seq) FROM runbook_journal.run_steps WHERE run_id = '{id}'"
        )),
        "create:succeeded,fill:succeeded,slow:running"
    );
    assert_eq!(db.sql("SELECT count(*) FROM f1 WHERE n = -1"), "0");
    db.sql("CREATE TABLE go_on ()");

    let run = again(&case, &db, &["resume", &id], "resumed");
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.report);
    assert_eq!(run.report["run"]["id"], id.as_str());
    assert_eq!(db.sql("SELECT count(*) FROM f1 WHERE n > 0"), "1000");
    assert_eq!(db.sql("SELECT count(*) FROM f1 WHERE n = -1"), "1");
    assert_eq!(db.sql("SELECT to_regclass('f1_n') IS NOT NULL"), "t");
    assert_eq!(run.step("create")["status"], "skipped");
    assert!(
        run.step("create")["note"]
            .as_str()
            .unwrap_or_default()
            .contains("succeeded before the run was resumed")
    );
    assert_eq!(run.step("slow")["status"], "succeeded");
    let j = show(&db, &id);
    assert_eq!(j["status"], "succeeded");
    assert_eq!(j["resumes"], 1);
    // A finished run is not resumed twice.
    let run = again(&case, &db, &["resume", &id], "twice");
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(run.stderr.contains("ended `succeeded`"), "{}", run.stderr);
}

/// A step that is not one transaction was running when the runner died:
/// a resume will not guess. Without `--partial` (and no terminal) it is
/// refused before anything runs; `--partial undo` rolls its phase back.
#[test]
fn an_interrupted_non_transactional_step_needs_a_decision() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        r#"phases:
  - id: expand
    kind: expand
    steps:
      - id: create
        sql: CREATE TABLE f2 (n int);
        rollback:
          id: drop_f2
          sql: DROP TABLE IF EXISTS f2;
      - id: half
        sql:
          transaction: false
          statements: |
            INSERT INTO f2 VALUES (1);
            SELECT pg_sleep(120);
        rollback:
          id: undo_half
          sql: DELETE FROM f2 WHERE n = 1;
"#,
    ));
    let id = kill_9_during(&case, &db, "pg_sleep(120)");
    // The first statement committed on its own.
    assert_eq!(db.sql("SELECT count(*) FROM f2"), "1");

    let run = again(&case, &db, &["resume", &id], "undecided");
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(run.stderr.contains("--partial"), "{}", run.stderr);
    assert_eq!(db.sql("SELECT count(*) FROM f2"), "1");

    let run = again(&case, &db, &["resume", &id, "--partial", "undo"], "undo");
    assert_eq!(run.code, 2, "{}\n{}", run.stderr, run.report);
    assert_eq!(run.step("half")["partial"], true);
    assert_eq!(run.step("half")["compensation"]["status"], "succeeded");
    assert_eq!(db.sql("SELECT to_regclass('f2') IS NULL"), "t");
    let j = show(&db, &id);
    assert_eq!(j["status"], "rolled_back");
    assert_eq!(step(&j, "create")["compensated"], "succeeded");
}

/// `runbook rollback RUN_ID` after a successful run: its compensations run
/// newest first, the schema is checked against before the run, and the
/// journal marks them done, so a second rollback has nothing to undo.
#[test]
fn rollback_by_run_id_undoes_exactly_what_the_run_did() {
    let db = Db::fresh();
    db.sql("CREATE TABLE keep (n int); INSERT INTO keep VALUES (1)");
    let case = Case::new(&runbook(EXPAND));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let id = run.report["run"]["id"].as_str().unwrap().to_string();

    // No terminal and no --yes: refused, nothing touched.
    let refused = again(&case, &db, &["rollback", &id], "refused");
    assert_eq!(refused.code, 5, "{}", refused.stderr);
    assert_eq!(db.sql("SELECT to_regclass('f1') IS NOT NULL"), "t");

    let undo = again(&case, &db, &["rollback", &id, "--yes"], "undo");
    assert_eq!(undo.code, 0, "{}\n{}", undo.stderr, undo.report);
    assert_eq!(db.sql("SELECT to_regclass('f1') IS NULL"), "t");
    assert_eq!(db.sql("SELECT count(*) FROM keep"), "1");
    let order: Vec<String> = undo
        .events()
        .iter()
        .filter(|e| e["event"] == "step_started")
        .map(|e| e["step"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(order, ["drop_note", "drop_f1"]);
    assert!(
        undo.report["run"]["verdict"]
            .as_str()
            .unwrap()
            .starts_with("ROLLED BACK run")
    );
    let j = show(&db, &id);
    assert_eq!(step(&j, "create")["compensated"], "succeeded");
    assert_eq!(step(&j, "add_column")["compensated"], "succeeded");
    // The rollback is a run of its own in the journal.
    let (_, list, _) = cli(&db, &["runs", "list", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "rollback" && r["of_run"] == id.as_str())
    );

    let twice = again(&case, &db, &["rollback", &id, "--yes"], "twice");
    assert_eq!(twice.code, 0, "{}", twice.stderr);
    assert!(twice.events().iter().all(|e| e["event"] != "step_started"));
}

/// `runbook rollback` of a run whose migration a later run built on: the
/// later one would stay applied over the undone one's down, so the
/// compensation is refused having changed nothing, and names the run to
/// roll back first; once that is undone, this one is.
#[test]
fn a_rollback_under_a_later_run_s_migration_is_refused_and_names_that_run() {
    let db = Db::fresh();
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path();
    std::fs::write(
        m.join("0001_a.up.sql"),
        "CREATE TABLE a (id bigint PRIMARY KEY);\n",
    )
    .unwrap();
    std::fs::write(m.join("0001_a.down.sql"), "DROP TABLE a;\n").unwrap();
    let case = Case::new(&runbook(&format!(
        "phases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: apply\n        migrate: {{ dir: {0} }}\n        rollback:\n          id: undo\n          migrate: {{ dir: {0}, direction: down, to: before_run }}\n",
        m.display()
    )));
    let first = case.exec(&db.url, &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let first = first.report["run"]["id"].as_str().unwrap().to_string();
    std::fs::write(
        m.join("0002_b.up.sql"),
        "CREATE TABLE b (id bigint REFERENCES a (id));\n",
    )
    .unwrap();
    std::fs::write(m.join("0002_b.down.sql"), "DROP TABLE b;\n").unwrap();
    let second = exec_again(&case, &db, "second");

    let undo = again(&case, &db, &["rollback", &first, "--yes"], "first");
    assert_eq!(undo.code, 1, "{}", undo.stderr);
    assert!(undo.stderr.contains("NOT ROLLED BACK"), "{}", undo.stderr);
    assert!(
        undo.stderr.contains("0002 (b) was applied after 0001 (a)"),
        "{}",
        undo.stderr
    );
    assert!(
        undo.stderr
            .contains(&format!("`runbook rollback {second}`")),
        "{}",
        undo.stderr
    );
    assert_eq!(db.sql("SELECT to_regclass('a') IS NOT NULL"), "t");
    assert_eq!(db.sql("SELECT count(*) FROM runbook_migrations"), "2");

    let undo = again(&case, &db, &["rollback", &second, "--yes"], "second_undo");
    assert_eq!(undo.code, 0, "{}\n{}", undo.stderr, undo.report);
    let undo = again(&case, &db, &["rollback", &first, "--yes"], "first_again");
    assert_eq!(undo.code, 0, "{}", undo.stderr);
    assert_eq!(db.sql("SELECT count(*) FROM runbook_migrations"), "0");
    assert_eq!(db.sql("SELECT to_regclass('a') IS NULL"), "t");
}

/// The same under Liquibase's DATABASECHANGELOG, which records no run:
/// what a run applied is what its step recorded, each changeset by its
/// FILE::ID::AUTHOR, so a changeset added before them since (which moved
/// their places) does not hide them. Once the later run is undone, the
/// first one is, and the tables it made for the history go too.
#[test]
fn a_liquibase_rollback_knows_its_changesets_by_name_after_one_is_added_before_them() {
    let db = Db::fresh();
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path();
    let a = "--liquibase formatted sql\n--changeset x:1\nCREATE TABLE t1 (id int);\n--rollback DROP TABLE t1;\n--changeset x:2\nCREATE TABLE t2 (id int);\n--rollback DROP TABLE t2;\n";
    std::fs::write(
        m.join("master.yaml"),
        "databaseChangeLog:\n  - include:\n      file: a.sql\n      relativeToChangelogFile: true\n  - include:\n      file: b.sql\n      relativeToChangelogFile: true\n",
    )
    .unwrap();
    std::fs::write(m.join("a.sql"), a).unwrap();
    std::fs::write(
        m.join("b.sql"),
        "--liquibase formatted sql\n--changeset y:3\nCREATE TABLE t (id int);\n--rollback DROP TABLE t;\n",
    )
    .unwrap();
    let case = Case::new(&runbook(&format!(
        "phases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: apply\n        migrate: {{ dir: {0}, history: {{ format: liquibase }} }}\n        rollback:\n          id: undo\n          migrate: {{ dir: {0}, history: {{ format: liquibase }}, direction: down, to: before_run }}\n",
        m.display()
    )));
    let first = case.exec(&db.url, &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let first = first.report["run"]["id"].as_str().unwrap().to_string();
    std::fs::write(
        m.join("a.sql"),
        format!("{a}--changeset x:2b\nALTER TABLE t ADD COLUMN c int;\n--rollback ALTER TABLE t DROP COLUMN c;\n"),
    )
    .unwrap();
    let second = exec_again(&case, &db, "second");

    let undo = again(&case, &db, &["rollback", &first, "--yes"], "first");
    assert_eq!(undo.code, 1, "{}", undo.stderr);
    assert!(
        undo.stderr.contains(
            "0003 (2b) was applied after 0004 (3), and would stay applied while this step rolls back 0004, 0002, 0001"
        ),
        "{}",
        undo.stderr
    );
    assert_eq!(db.sql("SELECT count(*) FROM databasechangelog"), "4");

    let undo = again(&case, &db, &["rollback", &second, "--yes"], "second_undo");
    assert_eq!(undo.code, 0, "{}", undo.stderr);
    let undo = again(&case, &db, &["rollback", &first, "--yes"], "first_again");
    assert_eq!(undo.code, 0, "{}\n{}", undo.stderr, undo.report);
    assert_eq!(
        db.sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"),
        "0"
    );
}

/// A first Liquibase deploy killed in its first changeset (which then
/// applied nothing) leaves Liquibase's lock row held by the dead run, and
/// the history tables it made. `runbook rollback` of that run takes the
/// lock over (runbook's own lock on the history says no run is in it),
/// knows the run applied nothing, and drops what it made: ROLLED BACK,
/// verified. Before, it was refused on the lock its own run held; with
/// the lock released by hand, refused again: "no migrate step of the run
/// recorded what it applied".
#[test]
fn a_killed_first_liquibase_deploy_rolls_back_to_nothing() {
    let db = Db::fresh();
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path();
    std::fs::write(
        m.join("master.yaml"),
        "databaseChangeLog:\n  - include:\n      file: a.sql\n      relativeToChangelogFile: true\n",
    )
    .unwrap();
    std::fs::write(
        m.join("a.sql"),
        "--liquibase formatted sql\n--changeset x:1\nSELECT pg_sleep(60);\nCREATE TABLE t1 (id int);\n--rollback DROP TABLE t1;\n",
    )
    .unwrap();
    let case = Case::new(&runbook(&format!(
        "phases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: apply\n        migrate: {{ dir: {0}, history: {{ format: liquibase }} }}\n        rollback:\n          id: undo\n          migrate: {{ dir: {0}, history: {{ format: liquibase }}, direction: down, to: before_run }}\n",
        m.display()
    )));
    let id = kill_9_during(&case, &db, "pg_sleep(60)");
    assert_eq!(
        db.sql("SELECT locked AND lockedby LIKE 'runbook run %' FROM databasechangeloglock"),
        "t"
    );
    let undo = again(&case, &db, &["rollback", &id, "--yes"], "undo");
    assert_eq!(undo.code, 0, "{}", undo.stderr);
    assert!(
        undo.stderr
            .contains("which is not running (this step holds runbook's migration lock on the history): taken over"),
        "{}",
        undo.stderr
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"),
        "0"
    );
}

/// A compensation that failed after changing something is not run again
/// by a later `runbook rollback`, which would undo twice: it says so, and
/// the verdict names it.
#[test]
fn a_compensation_that_failed_after_a_change_is_not_run_twice() {
    let db = Db::fresh();
    db.sql("CREATE TABLE ledger (n int); INSERT INTO ledger VALUES (10)");
    let case = Case::new(&runbook(
        "phases:\n  - id: expand\n    kind: expand\n    steps:\n      - id: credit\n        sql: UPDATE ledger SET n = n + 1;\n        rollback:\n          - id: debit\n            sql: UPDATE ledger SET n = n - 1;\n          - id: fails\n            sql: SELECT 1 / (SELECT count(*) - 1 FROM ledger);\n",
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let id = run.report["run"]["id"].as_str().unwrap().to_string();
    let undo = again(&case, &db, &["rollback", &id, "--yes"], "undo");
    assert_eq!(undo.code, 4, "{}", undo.stderr);
    assert_eq!(db.sql("SELECT n FROM ledger"), "10");
    assert_eq!(step(&show(&db, &id), "credit")["compensated"], "failed");
    let twice = again(&case, &db, &["rollback", &id, "--yes"], "twice");
    assert_eq!(twice.code, 4, "{}", twice.stderr);
    assert_eq!(db.sql("SELECT n FROM ledger"), "10", "debited twice");
    assert!(
        twice.stderr.contains("could undo twice")
            && twice
                .stderr
                .contains("the compensation of expand.credit failed in an earlier undo"),
        "{}",
        twice.stderr
    );
}

/// A rollback or resume with a runbook that changed since the run is
/// refused before anything runs.
#[test]
fn a_changed_runbook_or_param_is_refused() {
    let db = Db::fresh();
    let case = Case::new(&runbook(EXPAND));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let id = run.report["run"]["id"].as_str().unwrap().to_string();
    std::fs::write(&case.file, runbook(&EXPAND.replace("1000", "999"))).unwrap();
    let r = again(&case, &db, &["rollback", &id, "--yes"], "changed");
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("changed since run"), "{}", r.stderr);
    assert_eq!(db.sql("SELECT to_regclass('f1') IS NOT NULL"), "t");
    let (code, _, err) = cli(&db, &["runs", "show", "no-such-run"]);
    assert_eq!(code, 5, "{err}");
}

/// A non-transactional step rerun by a resume has two journal rows; a
/// later `rollback` runs its compensation once, not once per row.
#[test]
fn a_step_rerun_by_a_resume_is_undone_once() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        r#"phases:
  - id: expand
    kind: expand
    steps:
      - id: create
        sql: CREATE TABLE f3 (n int);
        rollback:
          id: drop_f3
          sql: DROP TABLE IF EXISTS f3;
      - id: half
        sql:
          transaction: false
          statements: |
            INSERT INTO f3 VALUES (1);
            SELECT pg_sleep(CASE WHEN to_regclass('public.go_on') IS NULL THEN 120 ELSE 0 END);
        rollback:
          id: undo_half
          sql: CREATE TABLE IF NOT EXISTS undo_log (n int); INSERT INTO undo_log VALUES (1);
"#,
    ));
    let id = kill_9_during(&case, &db, "pg_sleep(CASE");
    db.sql("CREATE TABLE go_on ()");
    let run = again(&case, &db, &["resume", &id, "--partial", "rerun"], "rerun");
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.report);
    assert_eq!(db.sql("SELECT count(*) FROM f3"), "2");
    let undo = again(&case, &db, &["rollback", &id, "--yes"], "undo");
    let ran: Vec<String> = undo
        .events()
        .iter()
        .filter(|e| e["event"] == "step_started")
        .map(|e| e["step"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ran, ["undo_half", "drop_f3"], "{}", undo.stderr);
    assert_eq!(db.sql("SELECT count(*) FROM undo_log"), "1");
}

/// A run that backed up, then made a change whose undo fails (a forward-
/// only migration has none): `runbook rollback RUN_ID` failed and said a
/// person must act, without a word on the backup taken for exactly this.
/// Now its verdict names the backup to restore from; a rollback that
/// brings the database back does not.
/// `to: before_run` was refused with any history but runbook's own, since
/// only runbook's rows record the run that applied them: the undo of a
/// failed release on a dbmate (Knex, Flyway, Prisma...) history always
/// ended "ROLLBACK FAILED". What this run applied is what the migrate step
/// being undone recorded: in the run, and in its journal for `runbook
/// rollback`. A migration an earlier deploy applied stays.
#[test]
fn before_run_undoes_what_the_step_applied_in_a_history_that_records_no_runs() {
    let db = Db::fresh();
    db.sql(
        "CREATE TABLE users (id bigint PRIMARY KEY);
         CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY);
         INSERT INTO schema_migrations VALUES ('1');",
    );
    let body = |third: &str| {
        runbook(&format!(
            r#"phases:
  - id: migrate
    kind: migrate
    steps:
      - id: apply
        migrate: {{ dir: db }}
        rollback:
          id: undo_apply
          migrate: {{ dir: db, direction: down, to: before_run }}
      - id: health
        sql: {third}
"#
        ))
    };
    let case = Case::new(&body("SELECT 1/0"));
    let dir = case.dir.path().join("db");
    support::dbmate_files(
        &dir,
        &[
            (
                "1_init.sql",
                "CREATE TABLE users (id bigint PRIMARY KEY);",
                "DROP TABLE users;",
            ),
            (
                "2_email.sql",
                "ALTER TABLE users ADD COLUMN email text;",
                "ALTER TABLE users DROP COLUMN email;",
            ),
            (
                "3_name.sql",
                "ALTER TABLE users ADD COLUMN name text;",
                "ALTER TABLE users DROP COLUMN name;",
            ),
        ],
    );
    let versions =
        || db.sql("SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations");
    let columns = || {
        db.sql("SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'users'")
    };
    // In the run: the release fails after its migrations, and they go.
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        run.step("undo_apply")["status"],
        "succeeded",
        "{}",
        run.stderr
    );
    assert_eq!((versions(), columns()), ("1".into(), "id".into()));
    // Later, by `runbook rollback RUN_ID`, from the journal.
    let case = Case::new(&body("SELECT 1"));
    std::fs::create_dir(case.dir.path().join("db")).unwrap();
    for f in std::fs::read_dir(&dir).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), case.dir.path().join("db").join(f.file_name())).unwrap();
    }
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(versions(), "1,2,3");
    let id = run.report["run"]["id"].as_str().unwrap().to_string();
    let undo = again(&case, &db, &["rollback", &id, "--yes"], "undo");
    assert_eq!(undo.code, 0, "{}", undo.stderr);
    assert_eq!((versions(), columns()), ("1".into(), "id".into()));
    // Outside a step's rollback there is no record: refused, as before.
    let alone = Case::new(&runbook(&format!(
        "phases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: down\n        migrate: {{ dir: {}, direction: down, to: before_run }}\n",
        dir.display()
    )));
    let run = alone.exec(&db.url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.step("down")["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the dbmate history does not record which run applied each"),
        "{}",
        run.stderr
    );
    assert_eq!(versions(), "1");
}

/// `to: before_run` in the runbook's `on_failure` branch, on a history
/// that records no runs: what every migrate step of the run applied. It
/// was refused there, so the branch failed and the run ended "ROLLBACK
/// FAILED" over one migration it could have undone.
#[test]
fn before_run_in_the_on_failure_branch_undoes_what_the_runs_migrate_steps_applied() {
    let db = Db::fresh();
    db.sql(
        "CREATE TABLE users (id bigint PRIMARY KEY);
         CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY);
         INSERT INTO schema_migrations VALUES ('1');",
    );
    let case = Case::new(&runbook(
        r#"phases:
  - id: migrate
    kind: migrate
    steps:
      - id: apply
        migrate: { dir: db }
  - id: check
    kind: verify
    steps:
      - id: health
        sql: SELECT 1/0
on_failure:
  - id: undo_release
    migrate: { dir: db, direction: down, to: before_run }
"#,
    ));
    support::dbmate_files(
        &case.dir.path().join("db"),
        &[
            (
                "1_init.sql",
                "CREATE TABLE users (id bigint PRIMARY KEY);",
                "DROP TABLE users;",
            ),
            (
                "2_email.sql",
                "ALTER TABLE users ADD COLUMN email text;",
                "ALTER TABLE users DROP COLUMN email;",
            ),
        ],
    );
    let run = case.exec(&db.url, &[]);
    assert_eq!(
        run.step("undo_release")["status"],
        "succeeded",
        "{}",
        run.stderr
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations"),
        "1"
    );
}

/// The runner died in a migrate step after migration 1 committed. The
/// resume said "nothing of it stayed", and the step's report listed only
/// what it applied after the resume; failing there in a transaction, the
/// step would read "nothing was changed". `runbook rollback` of the run,
/// in a history that records no runs, left migration 1. The journal now
/// has each migration as it commits: the resume says they stay and lists
/// them as the step's, and a rollback undoes them, resumed or not.
#[test]
fn a_runner_killed_in_a_migrate_step_leaves_the_migrations_that_committed() {
    let db = Db::fresh();
    db.sql("CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY)");
    let case = Case::new(&runbook(
        r#"phases:
  - id: migrate
    kind: migrate
    steps:
      - id: apply
        migrate: { dir: db }
        rollback:
          id: undo_apply
          migrate: { dir: db, direction: down, to: before_run }
"#,
    ));
    let dir = case.dir.path().join("db");
    support::dbmate_files(
        &dir,
        &[
            ("1_a.sql", "CREATE TABLE a (id int);", "DROP TABLE a;"),
            (
                "2_b.sql",
                "SELECT pg_sleep((CASE WHEN to_regclass('public.go_on') IS NULL THEN 120 ELSE 0 END));\nCREATE TABLE b (id int);",
                "DROP TABLE b;",
            ),
        ],
    );
    let versions = || {
        db.sql(
            "SELECT coalesce(string_agg(version, ',' ORDER BY version), '') FROM schema_migrations",
        )
    };
    // `runbook rollback` of the run undoes every migration it applied.
    let rolled_back = |id: &str, reports: &str| {
        let undo = again(&case, &db, &["rollback", id, "--yes"], reports);
        assert_eq!(
            undo.step("undo_apply")["status"],
            "succeeded",
            "{}",
            undo.stderr
        );
        assert_eq!(versions(), "");
        assert_eq!(db.sql("SELECT to_regclass('a') IS NULL"), "t");
    };
    let id = kill_9_during(&case, &db, "pg_sleep((CASE");
    assert_eq!(versions(), "1");
    db.sql("CREATE TABLE go_on ()");
    let run = again(&case, &db, &["resume", &id], "resumed");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "step `apply` was interrupted when the runner died, after 1 migration(s) committed (1): they stay"
        ),
        "{}",
        run.stderr
    );
    let applied: Vec<&str> = run.step("apply")["details"]["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["version"].as_str().unwrap())
        .collect();
    assert_eq!(applied, ["1", "2"]);
    rolled_back(&id, "undo");
    // Killed again, and rolled back without a resume.
    db.sql("DROP TABLE go_on; DROP TABLE runbook_journal.run_steps, runbook_journal.runs");
    let id = kill_9_during(&case, &db, "pg_sleep((CASE");
    assert_eq!(versions(), "1");
    rolled_back(&id, "undo2");
}

#[test]
fn a_rollback_that_falls_short_names_the_backup_that_run_took() {
    let db = Db::fresh();
    db.sql("CREATE TABLE t (n int); INSERT INTO t VALUES (1)");
    let body = |undo: &str| {
        runbook(&format!(
            r#"phases:
  - id: backup
    kind: backup
    steps:
      - id: before
        backup: {{ path: dumps/one, format: custom }}
  - id: change
    kind: expand
    steps:
      - id: add
        sql: ALTER TABLE t ADD COLUMN m int
        rollback:
          id: undo_add
          sql: {undo}
"#
        ))
    };
    let case = Case::new(&body("SELECT 1/0"));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let id = run.report["run"]["id"].as_str().unwrap().to_string();
    let undo = again(&case, &db, &["rollback", &id, "--yes"], "undo");
    // Its compensation failed in its transaction: nothing changed, and the
    // database is as the run left it.
    assert_eq!(undo.code, 1, "{}", undo.stderr);
    let verdict = undo.report["run"]["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with("NOT ROLLED BACK")
            && verdict.contains("restore from the backup that run took: ")
            && verdict.contains("dumps/one (step `before`)"),
        "{verdict}"
    );
    db.sql("ALTER TABLE t DROP COLUMN m");
    let case = Case::new(&body("ALTER TABLE t DROP COLUMN m"));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let id = run.report["run"]["id"].as_str().unwrap().to_string();
    let undo = again(&case, &db, &["rollback", &id, "--yes"], "undo");
    assert_eq!(undo.code, 0, "{}", undo.stderr);
    let verdict = undo.report["run"]["verdict"].as_str().unwrap();
    assert!(!verdict.contains("restore from"), "{verdict}");
    // In the run itself: a later step fails and the undo falls short.
    let failing = format!(
        "{}      - id: breaks\n        sql: SELECT 1/0\n",
        body("SELECT 1/0")
    );
    let run = Case::new(&failing).exec(&db.url, &[]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    let verdict = run.report["run"]["verdict"].as_str().unwrap();
    assert!(
        verdict.contains("a person must act; restore from the backup this run took: ")
            && verdict.contains("dumps/one (step `before`)"),
        "{verdict}"
    );
}
