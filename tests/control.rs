//! Release-time control against a real PostgreSQL: rollback triggers
//! (`abort_when`) that stop a backfill within one batch and stop a run
//! between steps, and sign-offs (`approvers: N`, approval files from
//! `runbook approve`, bound to the runbook's text and params; a risk
//! derived from the steps).

mod support;

use std::process::Command;

use support::{Case, Db};

/// A backfill of 5,000 rows in batches of 500, and a trigger that fails
/// once 1,000 rows are done: it must stop the backfill right after the
/// batch that crossed the line, and the phase must unwind.
#[test]
fn a_trigger_stops_a_backfill_within_one_batch_and_the_phase_unwinds() {
    let db = Db::fresh();
    db.sql(
        "CREATE TABLE items (id int PRIMARY KEY, done boolean NOT NULL DEFAULT false);
         INSERT INTO items (id) SELECT g FROM generate_series(1, 5000) g;",
    );
    let case = Case::new(
        r#"apiVersion: runbook/v1
kind: Runbook
metadata: { name: triggers, version: 1 }
abort_when:
  - id: too_many_done
    check:
      query: SELECT count(*) FILTER (WHERE done) AS done FROM items
      expect: { done: { lt: 1000 } }
    interval: 1ms
phases:
  - id: migrate
    kind: migrate
    steps:
      - id: mark
        backfill:
          table: items
          set: done = true
          batch_size: 500
        rollback:
          id: unmark
          sql: UPDATE items SET done = false;
      - id: after
        sql: CREATE TABLE never_made (id int);
"#,
    );
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 2, "rolled back: {}", run.stderr);
    let step = run.step("mark");
    assert_eq!(step["status"], "failed");
    assert_eq!(step["error"]["class"], "abort_trigger");
    // Two batches reached the line; the trigger ran after the second.
    assert_eq!(step["details"]["rows_updated"], 1000, "{step}");
    let a = &run.report["run"]["aborted_by"];
    assert_eq!(a["trigger"], "too_many_done");
    assert_eq!(a["step"], "mark");
    assert!(a["message"].as_str().unwrap().contains("1000"), "{a}");
    // The compensation undid the committed batches; the next step never ran.
    assert_eq!(db.sql("SELECT count(*) FROM items WHERE done"), "0");
    assert_eq!(db.sql("SELECT to_regclass('never_made') IS NULL"), "t");
    let md = std::fs::read_to_string(case.reports().join("report.md")).unwrap();
    assert!(
        md.contains("Stopped by `abort_when: too_many_done`"),
        "{md}"
    );
}

/// Between steps: a trigger that fails stops the run before the next step
/// starts, even in a phase that says `on_failure: continue`; a trigger
/// whose query cannot run does not fire, and says so.
#[test]
fn a_trigger_stops_the_run_between_steps_even_under_continue() {
    let db = Db::fresh();
    db.sql("CREATE TABLE alarms (id int)");
    let case = Case::new(
        r#"apiVersion: runbook/v1
kind: Runbook
metadata: { name: triggers, version: 1 }
abort_when:
  - id: no_alarms
    check:
      query: SELECT count(*) AS n FROM alarms
      expect: { n: 0 }
  - id: broken
    check:
      query: SELECT count(*) AS n FROM no_such_table
      expect: { n: 0 }
phases:
  - id: expand
    kind: expand
    on_failure: continue
    steps:
      - id: first
        sql: CREATE TABLE first_made (id int);
        rollback:
          id: unmake_first
          sql: DROP TABLE first_made;
      - id: raise_alarm
        sql: INSERT INTO alarms VALUES (1);
      - id: second
        sql: CREATE TABLE second_made (id int);
"#,
    );
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.step("second")["status"], "failed");
    assert_eq!(run.step("second")["error"]["class"], "abort_trigger");
    assert_eq!(run.report["run"]["aborted_by"]["trigger"], "no_alarms");
    assert_eq!(db.sql("SELECT to_regclass('second_made') IS NULL"), "t");
    // `continue` did not apply: the phase unwound.
    assert_eq!(db.sql("SELECT to_regclass('first_made') IS NULL"), "t");
    let warnings = run.report["warnings"].to_string();
    assert!(
        warnings.contains("abort_when `broken` could not run, so it did not fire"),
        "{warnings}"
    );
}

fn gated(approvers: &str) -> String {
    format!(
        r#"apiVersion: runbook/v1
kind: Runbook
metadata: {{ name: signoffs, version: 1 }}
params:
  table: {{ type: string, default: doomed }}
phases:
  - id: setup
    kind: expand
    steps:
      - id: make
        sql: CREATE TABLE IF NOT EXISTS {{{{ params.table | ident }}}} (id int);
  - id: contract
    kind: contract
    approval:
      prompt: "Drop it?"{approvers}
    steps:
      - id: drop
        sql: DROP TABLE {{{{ params.table | ident }}}};
"#
    )
}

/// A DROP TABLE makes the runbook's risk high, so its gate needs two
/// people: one flag is not enough (exit 6, nothing dropped); a file from
/// `runbook approve` by someone else is; the same person twice is one.
#[test]
fn two_approvers_are_required_and_counted_once_per_person() {
    let db = Db::fresh();
    let case = Case::new(&gated(""));
    let plan = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .arg("plan")
        .arg(&case.file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains("risk: high (derived)"), "{text}");
    assert!(text.contains("step `drop`: DROP TABLE"), "{text}");
    assert!(
        text.contains("gate: required approval by 2 people"),
        "{text}"
    );

    let run = case.exec(&db.url, &["--approve", "contract", "--as", "oncall"]);
    assert_eq!(run.code, 6, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("2 different people must approve it, and 1 did"),
        "{}",
        run.stderr
    );
    assert_eq!(db.sql("SELECT to_regclass('doomed') IS NOT NULL"), "t");
    assert_eq!(run.report["phases"][1]["approvers_required"], 2);

    let file = case.dir.path().join("lead.json");
    case.approve(&file, &["--phase", "contract", "--as", "lead"]);
    let f = file.to_str().unwrap();

    // The same person by flag and by file counts once.
    let run = case.exec(
        &db.url,
        &["--approve", "contract", "--as", "lead", "--approval", f],
    );
    assert_eq!(run.code, 6, "{}", run.stderr);
    assert_eq!(db.sql("SELECT to_regclass('doomed') IS NOT NULL"), "t");

    let run = case.exec(
        &db.url,
        &["--approve", "contract", "--as", "oncall", "--approval", f],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.sql("SELECT to_regclass('doomed') IS NULL"), "t");
    let approvals = run.report["phases"][1]["approvals"].as_array().unwrap();
    let who: Vec<(&str, &str)> = approvals
        .iter()
        .map(|a| (a["user"].as_str().unwrap(), a["method"].as_str().unwrap()))
        .collect();
    assert_eq!(who, [("lead", "file"), ("oncall", "flag")]);
    let md = std::fs::read_to_string(case.reports().join("report.md")).unwrap();
    assert!(md.contains("approved by lead on "), "{md}");
    assert!(md.contains(" and oncall on "), "{md}");

    // `approvers: 1` on the gate says one is enough, whatever the risk.
    let db = Db::fresh();
    let case = Case::new(&gated("\n      approvers: 1"));
    let run = case.exec(&db.url, &["--approve", "contract"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// An approval is for the text and params that were reviewed: a file for
/// an edited runbook, or for other params, is refused before anything
/// runs (exit 6), and so is one for a phase without a gate.
#[test]
fn an_approval_file_for_another_text_or_other_params_is_refused() {
    let db = Db::fresh();
    let case = Case::new(&gated(""));
    let file = case.dir.path().join("lead.json");
    let f = file.to_str().unwrap();
    case.approve(&file, &["--phase", "contract", "--as", "lead"]);

    // Other params.
    let run = case.exec(
        &db.url,
        &[
            "--approve",
            "contract",
            "--approval",
            f,
            "--set",
            "table=other",
        ],
    );
    assert_eq!(run.code, 6, "{}", run.stderr);
    assert!(
        run.stderr.contains("approves other params"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("nothing ran"), "{}", run.stderr);

    // The runbook edited after the approval.
    std::fs::write(&case.file, gated("").replace("Drop it?", "Drop it now?")).unwrap();
    let run = case.exec(&db.url, &["--approve", "contract", "--approval", f]);
    assert_eq!(run.code, 6, "{}", run.stderr);
    assert!(
        run.stderr.contains("a different text of this runbook"),
        "{}",
        run.stderr
    );
    // Refused before the run: not even the setup phase ran.
    assert_eq!(db.sql("SELECT to_regclass('doomed') IS NULL"), "t");

    // Nothing to approve on a phase without a gate.
    let out = case.approving(&["--phase", "setup"]).output().unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no approval gate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The decision tree in docs/production-runbook.md is runbook YAML that
/// validates: its triggers and its watch, dropped into a runbook.
#[test]
fn the_documented_decision_tree_validates() {
    let doc = std::fs::read_to_string("docs/production-runbook.md").unwrap();
    let section = &doc[doc.find("### The decision tree").expect("the section")..];
    let blocks: Vec<&str> = section
        .split("```yaml\n")
        .skip(1)
        .map(|b| &b[..b.find("```").unwrap()])
        .take(2)
        .collect();
    assert_eq!(blocks.len(), 2, "the triggers and the watch");
    let yaml = format!(
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata: {{ name: tree, version: 1 }}\n{}phases:\n  - id: release\n    kind: migrate\n    steps:\n      - id: switch\n        sql: SELECT 1;\n{}",
        blocks[0], blocks[1]
    );
    let case = Case::new(&yaml);
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .arg("validate")
        .arg(&case.file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
