//! `exec --targets`: one runbook over many databases of one throwaway
//! cluster, with waves, stop rules, shards, merged reports and Ctrl-C.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use support::{Db, cluster, ended, psql};

/// A runbook that creates `items` (undone on failure), waits `sleep`
/// seconds, and fails where its `fail` param says so.
fn runbook(sleep: f64) -> String {
    format!(
        r#"apiVersion: runbook/v1
kind: Runbook
metadata: {{ name: fleet-test, version: "1" }}
params:
  fail: {{ type: boolean, default: false }}
phases:
  - id: expand
    kind: expand
    steps:
      - id: create
        sql: CREATE TABLE items (id int);
        rollback:
          - id: drop
            sql: DROP TABLE IF EXISTS items;
      - id: hold
        sql: SELECT pg_sleep({sleep});
      - id: maybe_fail
        sql: "SELECT {{% if params.fail %}}1/0{{% else %}}1{{% endif %}};"
"#
    )
}

struct Fleet {
    dir: tempfile::TempDir,
    dbs: Vec<Db>,
}

impl Fleet {
    /// `n` fresh databases, as targets `t01`…, and the runbook; `failing`
    /// (1-based) targets set `fail: true`.
    fn new(n: usize, sleep: f64, failing: &[usize]) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let dbs: Vec<Db> = (0..n).map(|_| Db::fresh()).collect();
        let mut t = format!(
            "apiVersion: runbook/v1\nkind: Targets\ndefaults:\n  url: {}\n  labels: {{ tier: std }}\ntargets:\n",
            cluster().url("postgres")
        );
        for (i, db) in dbs.iter().enumerate() {
            let region = if i % 2 == 0 { "eu" } else { "us" };
            t.push_str(&format!(
                "  - {{ name: t{:02}, database: {}, labels: {{ region: {region} }}{} }}\n",
                i + 1,
                db.name,
                if failing.contains(&(i + 1)) {
                    ", params: { fail: true }"
                } else {
                    ""
                }
            ));
        }
        std::fs::write(dir.path().join("targets.yml"), t).unwrap();
        std::fs::write(dir.path().join("runbook.yml"), runbook(sleep)).unwrap();
        Fleet { dir, dbs }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, report: &str, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
        cmd.arg("exec")
            .arg(self.path("runbook.yml"))
            .arg("--targets")
            .arg(self.path("targets.yml"))
            .arg("--report-dir")
            .arg(self.path(report))
            .args(["--progress", "never"])
            .args(extra)
            .env_remove("DATABASE_URL")
            .env_remove("GITHUB_STEP_SUMMARY")
            .env("NO_COLOR", "1");
        cmd
    }

    fn exec(&self, report: &str, extra: &[&str]) -> (i32, Value, String) {
        let (code, _, stderr) = ended(self.command(report, extra).output().unwrap());
        let r = read_report(&self.path(report));
        (code, r, stderr)
    }

    /// Whether target `i` (1-based) has the table the runbook creates.
    fn has_items(&self, i: usize) -> bool {
        self.dbs[i - 1].sql("SELECT to_regclass('items') IS NOT NULL") == "t"
    }
}

fn read_report(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("report.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let r: Value = serde_json::from_str(&text).unwrap();
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string("schemas/fleet-report.v1.schema.json").unwrap(),
    )
    .unwrap();
    let v = jsonschema::draft202012::new(&schema).unwrap();
    let errors: Vec<String> = v.iter_errors(&r).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "fleet report violates its schema: {errors:?}"
    );
    r
}

fn states(r: &Value) -> Vec<(String, String)> {
    r["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn count(r: &Value, state: &str) -> usize {
    states(r).iter().filter(|(_, s)| s == state).count()
}

#[test]
fn twenty_targets_run_four_at_a_time_each_with_its_own_session_and_report() {
    let f = Fleet::new(20, 0.8, &[]);
    let names: Vec<String> = f.dbs.iter().map(|d| format!("'{}'", d.name)).collect();
    let query = format!(
        "SELECT count(DISTINCT datname) FROM pg_stat_activity WHERE application_name LIKE 'runbook/%' AND datname IN ({})",
        names.join(",")
    );
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (done, peak, url) = (
            Arc::clone(&done),
            Arc::clone(&peak),
            cluster().url("postgres"),
        );
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let n: usize = psql(&url, &query).parse().unwrap();
                peak.fetch_max(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(40));
            }
        })
    };
    let (code, r, stderr) = f.exec("out", &["--parallel", "4"]);
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        peak.load(Ordering::SeqCst),
        4,
        "at most 4 databases had a runbook session at once, and 4 did"
    );
    assert_eq!(r["fleet"]["status"], "succeeded");
    assert_eq!(r["counts"]["succeeded"], 20);
    assert_eq!(r["fleet"]["rollout"]["parallel"], 4);
    for i in 1..=20 {
        assert!(f.has_items(i), "target {i}");
        let t = &r["targets"][i - 1];
        let own: Value = serde_json::from_str(
            &std::fs::read_to_string(
                f.path("out")
                    .join(t["report"].as_str().unwrap())
                    .join("report.json"),
            )
            .unwrap(),
        )
        .unwrap();
        support::check_report_schema(&own);
        assert_eq!(own["run"]["status"], "succeeded");
        assert_eq!(own["run"]["id"], t["run_id"]);
        assert_eq!(own["target"]["database"], f.dbs[i - 1].name);
    }
    // Each target's run is in its own database's journal.
    assert_eq!(
        f.dbs[6].sql("SELECT count(*) FROM runbook_journal.runs"),
        "1"
    );
    let md = std::fs::read_to_string(f.path("out").join("report.md")).unwrap();
    assert!(
        md.contains("20 target(s): 20 succeeded, 0 failed, 0 not started."),
        "{md}"
    );
    assert!(md.contains("| t07 | 1 | succeeded | succeeded |"), "{md}");
}

#[test]
fn a_failed_canary_stops_every_other_target() {
    let f = Fleet::new(6, 0.0, &[1]);
    let (code, r, stderr) = f.exec(
        "out",
        &["--canary", "1", "--parallel", "4", "--max-failures", "3"],
    );
    assert_eq!(code, 2, "rolled back on the canary: {stderr}");
    assert_eq!(r["fleet"]["status"], "failed");
    assert_eq!(r["targets"][0]["state"], "failed");
    assert_eq!(r["targets"][0]["status"], "rolled_back");
    assert_eq!(r["targets"][0]["failed_step"], "expand.maybe_fail");
    assert_eq!(count(&r, "not_started"), 5);
    assert!(
        r["fleet"]["stopped"]
            .as_str()
            .unwrap()
            .contains("the canary failed"),
        "{r}"
    );
    assert_eq!(r["targets"][3]["reason"], r["fleet"]["stopped"]);
    for i in 1..=6 {
        assert!(!f.has_items(i), "target {i} is untouched or rolled back");
    }
    assert!(
        stderr.contains("wave 1/2 (canary): 1 target(s)"),
        "{stderr}"
    );
}

#[test]
fn past_max_failures_no_new_target_starts() {
    let f = Fleet::new(8, 0.0, &[2, 3]);
    let (code, r, stderr) = f.exec("out", &["--max-failures", "1"]);
    assert_eq!(code, 2, "{stderr}");
    let s = states(&r);
    assert_eq!(s[0].1, "succeeded");
    assert_eq!((s[1].1.as_str(), s[2].1.as_str()), ("failed", "failed"));
    assert!(s[3..].iter().all(|(_, st)| st == "not_started"), "{s:?}");
    assert!(
        r["fleet"]["stopped"]
            .as_str()
            .unwrap()
            .contains("2 target(s) failed, more than max_failures (1)"),
        "{r}"
    );
    assert!(f.has_items(1));
    assert!(!f.has_items(4), "a target past the stop rule never started");
    // Retrying just the targets that did not succeed.
    let (code, r, stderr) = f.exec(
        "retry",
        &[
            "--only-failed",
            f.path("out").to_str().unwrap(),
            "--max-failures",
            "50%",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    let names: Vec<String> = states(&r).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["t02", "t03", "t04", "t05", "t06", "t07", "t08"]);
    assert_eq!(count(&r, "succeeded"), 5);
    assert_eq!(count(&r, "failed"), 2);
}

#[test]
fn an_unreachable_target_fails_with_its_reason_and_the_others_go_on() {
    let f = Fleet::new(3, 0.0, &[]);
    let text = std::fs::read_to_string(f.path("targets.yml")).unwrap();
    let text = text.replacen(
        "  - { name: t02,",
        "  - { name: gone, url: 'postgres://runbook@127.0.0.1:1/nowhere' }\n  - { name: t02,",
        1,
    );
    std::fs::write(f.path("targets.yml"), text).unwrap();
    let (code, r, stderr) = f.exec("out", &["--max-failures", "1", "--parallel", "2"]);
    assert_eq!(code, 1, "nothing was changed where it failed: {stderr}");
    let gone = &r["targets"][1];
    assert_eq!(gone["name"], "gone");
    assert_eq!(gone["state"], "failed");
    assert_eq!(gone["status"], "preflight_failed");
    assert!(
        gone["reason"]
            .as_str()
            .unwrap()
            .contains("could not connect"),
        "{gone}"
    );
    assert_eq!(count(&r, "succeeded"), 3);
    assert!(f.has_items(1) && f.has_items(2) && f.has_items(3));
}

#[test]
fn shards_cover_every_target_once_and_merge_into_one_report() {
    let f = Fleet::new(10, 0.0, &[4]);
    let mut seen: Vec<String> = Vec::new();
    let mut dirs = Vec::new();
    for k in 1..=3 {
        let out = format!("shard-{k}");
        let (code, r, stderr) =
            f.exec(&out, &["--shard", &format!("{k}/3"), "--max-failures", "5"]);
        assert!(code == 0 || code == 2, "{stderr}");
        assert_eq!(r["fleet"]["shards"][0], format!("{k}/3"));
        seen.extend(states(&r).into_iter().map(|(n, _)| n));
        dirs.push(f.path(&out));
    }
    seen.sort();
    let all: Vec<String> = (1..=10).map(|i| format!("t{i:02}")).collect();
    assert_eq!(seen, all, "each target in exactly one shard");
    for i in 1..=10 {
        assert_eq!(f.has_items(i), i != 4);
    }
    // The matrix lists the shards that hold targets.
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["targets", "matrix", "--shards", "3", "--targets"])
        .arg(f.path("targets.yml"))
        .output()
        .unwrap();
    let (code, stdout, stderr) = ended(out);
    assert_eq!(code, 0, "{stderr}");
    let m: Value = serde_json::from_str(&stdout).unwrap();
    let total: u64 = m["include"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["targets"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 10);
    // Merge: one report of all ten, the worst code, links that resolve.
    let merged = f.path("merged");
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["report", "merge"])
        .args(&dirs)
        .arg("--report-dir")
        .arg(&merged)
        .arg("--junit")
        .arg(f.path("fleet.xml"))
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .unwrap();
    let (code, stdout, stderr) = ended(out);
    assert_eq!(code, 2, "{stdout}{stderr}");
    let r = read_report(&merged);
    assert_eq!(r["counts"]["total"], 10);
    assert_eq!(r["counts"]["failed"], 1);
    assert_eq!(
        r["fleet"]["shards"],
        serde_json::json!(["1/3", "2/3", "3/3"])
    );
    for t in r["targets"].as_array().unwrap() {
        let rel = t["report"].as_str().unwrap();
        assert!(rel.starts_with("../shard-"), "{rel}");
        assert!(merged.join(rel).join("report.json").exists(), "{rel}");
    }
    let junit = std::fs::read_to_string(f.path("fleet.xml")).unwrap();
    assert_eq!(junit.matches("<testsuite ").count(), 10, "{junit}");
    assert!(junit.contains("division by zero"), "{junit}");
    // The same shard twice is refused.
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["report", "merge"])
        .arg(&dirs[0])
        .arg(&dirs[0])
        .arg("--report-dir")
        .arg(f.path("twice"))
        .output()
        .unwrap();
    let (code, _, stderr) = ended(out);
    assert_eq!(code, 5);
    assert!(stderr.contains("is in both"), "{stderr}");
}

#[test]
fn an_interrupt_mid_wave_unwinds_the_running_targets_and_starts_no_more() {
    let f = Fleet::new(6, 6.0, &[]);
    let child = f
        .command("out", &["--parallel", "2"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Both running targets are inside their long step.
    let names: Vec<String> = f.dbs.iter().map(|d| format!("'{}'", d.name)).collect();
    let query = format!(
        "SELECT count(*) = 2 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(6%' AND datname IN ({})",
        names.join(",")
    );
    let admin = Db {
        name: "postgres".into(),
        url: cluster().url("postgres"),
    };
    support::wait_until(&admin, &query);
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (code, _, stderr) = ended(child.wait_with_output().unwrap());
    assert_eq!(code, 130, "{stderr}");
    let r = read_report(&f.path("out"));
    assert_eq!(r["fleet"]["status"], "interrupted");
    assert_eq!(r["fleet"]["exit_code"], 130);
    let s = states(&r);
    assert_eq!(
        &s[..2],
        [
            ("t01".into(), "failed".into()),
            ("t02".into(), "failed".into())
        ]
    );
    assert!(s[2..].iter().all(|(_, st)| st == "not_started"), "{s:?}");
    for t in &r["targets"].as_array().unwrap()[..2] {
        assert_eq!(t["status"], "interrupted");
        let own = read_own(&f.path("out"), t);
        assert_eq!(own["run"]["status"], "interrupted");
    }
    for i in 1..=6 {
        assert!(
            !f.has_items(i),
            "target {i}: the interrupted ones rolled back"
        );
    }
    let events = std::fs::read_to_string(f.path("out").join("events.jsonl")).unwrap();
    assert!(events.contains("\"event\":\"fleet_finished\""), "{events}");
}

fn read_own(dir: &Path, t: &Value) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(dir.join(t["report"].as_str().unwrap()).join("report.json"))
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn a_wave_that_needs_approval_waits_for_a_person_or_yes() {
    let f = Fleet::new(4, 0.0, &[]);
    let (code, r, stderr) = f.exec("out", &["--wave-size", "50%", "--confirm-waves"]);
    assert_eq!(code, 6, "{stderr}");
    let s: Vec<String> = states(&r).into_iter().map(|(_, st)| st).collect();
    assert_eq!(s, ["succeeded", "succeeded", "not_started", "not_started"]);
    assert!(
        r["targets"][2]["reason"]
            .as_str()
            .unwrap()
            .contains("wave 2 needs approval"),
        "{r}"
    );
    let (code, r, stderr) = f.exec(
        "again",
        &[
            "--wave-size",
            "50%",
            "--confirm-waves",
            "--yes",
            "--only-failed",
            f.path("out").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(count(&r, "succeeded"), 2);
    assert!((1..=4).all(|i| f.has_items(i)));
}

#[test]
fn select_filters_by_label_and_the_step_summary_is_written_once() {
    let f = Fleet::new(4, 0.0, &[]);
    let summary = f.path("summary.md");
    let out = f
        .command("out", &["--select", "region=eu", "--parallel", "2"])
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    let (code, _, stderr) = ended(out);
    assert_eq!(code, 0, "{stderr}");
    let r = read_report(&f.path("out"));
    let names: Vec<String> = states(&r).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["t01", "t03"]);
    assert!(f.has_items(1) && !f.has_items(2));
    let text = std::fs::read_to_string(&summary).unwrap();
    assert_eq!(text.matches("# Fleet: fleet-test 1").count(), 1, "{text}");
    assert!(
        !text.contains("# fleet-test"),
        "no target's own summary: {text}"
    );
}

#[test]
fn bad_targets_are_refused_before_anything_runs() {
    let f = Fleet::new(1, 0.0, &[]);
    let good = std::fs::read_to_string(f.path("targets.yml")).unwrap();
    let cases: Vec<(String, &[&str], &str)> = vec![
        (
            good.replacen(
                "url: postgres://runbook@",
                "url: postgres://runbook:s3cret@",
                1,
            ),
            &[],
            "the URL carries a password",
        ),
        (
            good.replacen(
                "database:",
                "url_env: RUNBOOK_TEST_NO_SUCH_VAR, database:",
                1,
            ),
            &[],
            "`url_env: RUNBOOK_TEST_NO_SUCH_VAR`, and `RUNBOOK_TEST_NO_SUCH_VAR` is not set",
        ),
        (good.clone(), &["--select", "region=mars"], "no target in"),
        (
            good.replacen(
                "labels: { region: eu }",
                "labels: { region: eu }, params: { nope: 1 }",
                1,
            ),
            &[],
            "nope",
        ),
        (
            good.clone(),
            &["--set", "fail=false", "--only-failed", "/nonexistent"],
            "failed to read",
        ),
        (
            format!("{good}  - {{ name: twin, database: {} }}\n", f.dbs[0].name),
            &[],
            "targets `t01` and `twin` are the same database",
        ),
        (
            good.clone(),
            &["--password-command", "echo 'no token' >&2; exit 3"],
            "--password-command: the password command exited with code 3: no token",
        ),
    ];
    for (i, (text, extra, said)) in cases.into_iter().enumerate() {
        std::fs::write(f.path("targets.yml"), &text).unwrap();
        let out = format!("out{i}");
        let (code, _, stderr) = ended(f.command(&out, extra).output().unwrap());
        assert_eq!(code, 5, "case {i}: {stderr}");
        assert!(stderr.contains(said), "case {i}: {stderr}");
        assert!(!stderr.contains("s3cret"), "case {i}: {stderr}");
        assert!(!f.path(&out).exists(), "case {i}: nothing was written");
        assert!(!f.has_items(1));
    }
}

/// Ctrl-C while the wave prompt waits stops the rollout at once (exit
/// 130); the targets left are `not_started`. (Before, the prompt read
/// stdin on the runtime's own thread, and the signal waited for Enter.)
#[test]
fn ctrl_c_at_the_wave_prompt_stops_the_rollout_at_once() {
    let f = Fleet::new(2, 0.0, &[]);
    let mut cmd = f.command("out", &["--wave-size", "1", "--confirm-waves"]);
    cmd.env_remove("CI");
    let code = support::on_a_terminal(
        &cmd,
        support::AtTheTerminal::Types {
            prompt: "Type `yes` to start wave",
            keys: "\\x03",
        },
    );
    assert_eq!(code, 130);
    let r = read_report(&f.path("out"));
    let s: Vec<String> = states(&r).into_iter().map(|(_, st)| st).collect();
    assert_eq!(s, ["succeeded", "not_started"], "{r}");
    assert!(!f.has_items(2));
}
