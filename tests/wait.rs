//! `wait` and `watch` steps against a real PostgreSQL. A wait that passes
//! once a blocking session ends, one that gives up with the evidence of its
//! last try, one whose query fails at once instead of being waited on; a
//! watch that holds, one that trips and rolls its phase back, and one that
//! could never finish within its step timeout.

mod support;

use support::{Case, Db};

fn runbook(wait: &str) -> String {
    format!(
        r#"apiVersion: runbook/v1
kind: Runbook
metadata: {{ name: waits, version: 1 }}
phases:
  - id: preflight
    kind: preflight
    steps:
      - id: drained
        wait:
{wait}
  - id: expand
    kind: expand
    steps:
      - id: after
        sql: CREATE TABLE after_the_wait (id int);
"#
    )
}

#[test]
fn a_wait_passes_once_the_blocking_session_is_gone() {
    let db = Db::fresh();
    db.sql("CREATE TABLE items (id int)");
    let holder = support::hold_lock(&db, "items", "SHARE", 2);
    let case = Case::new(&runbook(
        r#"          check:
            query: >
              SELECT count(*) AS n FROM pg_locks
              WHERE relation = 'items'::regclass AND granted AND pid <> pg_backend_pid()
            expect: { n: 0 }
          interval: 200ms
          timeout: 1min"#,
    ));
    let run = case.exec(&db.url, &[]);
    let mut holder = holder;
    let _ = holder.wait();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let step = run.step("drained");
    assert_eq!(step["status"], "succeeded");
    let tries = step["details"]["tries"].as_u64().unwrap();
    assert!(tries > 1, "it waited: {step}");
    assert_eq!(
        db.sql("SELECT to_regclass('after_the_wait') IS NOT NULL"),
        "t"
    );
}

#[test]
fn a_wait_that_never_passes_fails_with_its_last_rows_and_nothing_after_it_runs() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        r#"          check:
            query: SELECT 7 AS n
            expect: { n: 0 }
          interval: 200ms
          timeout: 1s"#,
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.report["run"]["status"], "preflight_failed");
    let step = run.step("drained");
    assert_eq!(step["status"], "failed");
    let message = step["error"]["message"].as_str().unwrap();
    assert!(message.contains("never passed"), "{message}");
    assert!(message.contains("expected n eq 0, got 7"), "{message}");
    assert_eq!(step["details"]["rows"], serde_json::json!([{ "n": 7 }]));
    assert!(step["details"]["tries"].as_u64().unwrap() >= 2, "{step}");
    assert_eq!(db.sql("SELECT to_regclass('after_the_wait') IS NULL"), "t");
}

#[test]
fn a_query_that_fails_is_not_waited_on() {
    let db = Db::fresh();
    let case = Case::new(&runbook(
        r#"          check:
            query: SELECT 1 / 0 AS n
            expect: { n: 1 }
          interval: 200ms
          timeout: 10min"#,
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let step = run.step("drained");
    assert_eq!(step["status"], "failed");
    let message = step["error"]["message"].as_str().unwrap();
    assert!(message.contains("division by zero"), "{message}");
    // It did not wait out its ten minutes: one try.
    assert!(step["duration_ms"].as_u64().unwrap() < 60_000, "{step}");
}

fn watch_runbook(watch: &str) -> String {
    format!(
        r#"apiVersion: runbook/v1
kind: Runbook
metadata: {{ name: watches, version: 1 }}
phases:
  - id: switch
    kind: expand
    steps:
      - id: build
        sql: CREATE TABLE built_here (id int);
        rollback:
          id: unbuild
          sql: DROP TABLE IF EXISTS built_here;
      - id: baseline
        check: SELECT 50 AS top
      - id: steady
        watch:
{watch}
"#
    )
}

#[test]
fn a_watch_that_holds_passes_with_every_sample_in_the_report() {
    let db = Db::fresh();
    db.sql("CREATE TABLE signal (v int); INSERT INTO signal VALUES (30)");
    let case = Case::new(&watch_runbook(
        r#"          check:
            query: SELECT v FROM signal
            expect: { v: { lt: "{{ steps.baseline.row.top * 2 }}" } }
          interval: 200ms
          duration: 1s"#,
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let d = &run.step("steady")["details"];
    let samples = d["samples"].as_array().unwrap();
    assert!(samples.len() >= 3, "{d}");
    assert!(
        samples
            .iter()
            .all(|x| x["value"] == 30 && x["passed"] == true),
        "{d}"
    );
    // The limit came from the baseline step's output: 50 * 2, compared as
    // a number (as text, "30" < "100" would be false).
    let step = run.step("steady");
    assert_eq!(
        step["check"]["expectations"][0]["expected"], "100",
        "{step}"
    );
    assert_eq!(d["samples_total"].as_u64().unwrap() as usize, samples.len());
    let md = std::fs::read_to_string(case.reports().join("report.md")).unwrap();
    assert!(md.contains("## Watches"), "{md}");
    assert!(md.contains("`▄▄▄"), "a flat sparkline: {md}");
    assert_eq!(db.sql("SELECT to_regclass('built_here') IS NOT NULL"), "t");
}

#[test]
fn a_watch_that_trips_fails_at_that_sample_and_its_phase_rolls_back() {
    let db = Db::fresh();
    db.sql("CREATE TABLE signal (v int); INSERT INTO signal VALUES (1)");
    // Another session raises the signal a second into the watch.
    let url = db.url.clone();
    let raiser = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        support::psql(&url, "UPDATE signal SET v = 99");
    });
    let case = Case::new(&watch_runbook(
        r#"          check:
            query: SELECT v FROM signal
            expect: { v: { lt: 10 } }
          interval: 200ms
          duration: 1min"#,
    ));
    let run = case.exec(&db.url, &[]);
    raiser.join().unwrap();
    assert_eq!(run.code, 2, "rolled back: {}", run.stderr);
    assert_eq!(run.report["run"]["status"], "rolled_back");
    let step = run.step("steady");
    assert_eq!(step["status"], "failed");
    let message = step["error"]["message"].as_str().unwrap();
    assert!(message.contains("broke the watch"), "{message}");
    assert!(message.contains("expected v lt 10, got 99"), "{message}");
    let samples = step["details"]["samples"].as_array().unwrap();
    let last = samples.last().unwrap();
    assert_eq!(last["passed"], false);
    assert_eq!(last["value"], 99);
    assert!(
        samples[..samples.len() - 1]
            .iter()
            .all(|x| x["passed"] == true)
    );
    // It did not hold for its minute: it stopped at the broken sample.
    assert!(step["duration_ms"].as_u64().unwrap() < 30_000, "{step}");
    // The phase's rollback undid what the phase built.
    assert_eq!(db.sql("SELECT to_regclass('built_here') IS NULL"), "t");
    let md = std::fs::read_to_string(case.reports().join("report.md")).unwrap();
    assert!(md.contains("broke it (value 99)"), "{md}");
}

#[test]
fn a_watch_longer_than_its_step_timeout_is_refused_before_anything_runs() {
    let db = Db::fresh();
    let yaml = watch_runbook(
        r#"          check: SELECT 1
          duration: 20min"#,
    )
    .replace(
        "      - id: steady\n",
        "      - id: steady\n        timeout: 10min\n",
    );
    let case = Case::new(&yaml);
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("holds for 20min, but its step times out after 10min"),
        "{}",
        run.stderr
    );
    assert_eq!(db.sql("SELECT to_regclass('built_here') IS NULL"), "t");
}

#[test]
fn a_wait_timeout_and_a_watch_duration_may_come_from_params() {
    let yaml = r#"apiVersion: runbook/v1
kind: Runbook
metadata: { name: timed, version: 1 }
params:
  hold: { type: string, default: 1s }
phases:
  - id: verify
    kind: verify
    steps:
      - id: ready
        wait:
          check: { query: "SELECT 1 AS one", expect: { one: 1 } }
          timeout: "{{ params.hold }}"
      - id: steady
        timeout: 1min
        watch:
          check: { query: "SELECT 1 AS one", expect: { one: 1 } }
          interval: 200ms
          duration: "{{ params.hold }}"
"#;
    let db = Db::fresh();
    let case = Case::new(yaml);
    let run = case.exec(&db.url, &["--set", "hold=600ms"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let samples = run.step("steady")["details"]["samples"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(
        (3..=5).contains(&samples),
        "600ms at 200ms intervals: {samples} samples"
    );
    // A value that is not a duration, or longer than the step may run, is
    // refused before anything runs, at the template.
    for (hold, says, at) in [
        ("soon", "invalid duration `soon`", "runbook.yml:13:20"),
        ("2min", "it could never finish", "runbook.yml:19:21"),
    ] {
        let run = case.exec(&db.url, &["--set", &format!("hold={hold}")]);
        assert_eq!(run.code, 5, "{hold}: {}", run.stderr);
        assert!(
            run.stderr.contains(says) && run.stderr.contains(at),
            "{hold}: {}",
            run.stderr
        );
    }
}
