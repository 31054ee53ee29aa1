//! report.html in a real browser (headless Chromium): a succeeded run, a
//! rolled-back one and a rehearsal, each drawn with no console error and
//! every step of its report.json on the page, and a screenshot taken.
//! `RUNBOOK_SCREENSHOTS=DIR` keeps the screenshots (docs/report-*.png are
//! made that way).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{Case, Db};

fn chromium() -> PathBuf {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            let out = Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        })
        .expect(
            "headless Chromium is installed (Debian: apt-get install chromium; .ci/run does it)",
        )
}

/// Chromium's arguments for a one-shot headless load of `page`.
fn browser(page: &Path, extra: &[&str], profile: &Path) -> Command {
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(format!("file://{}", page.display()));
    cmd
}

/// Load the page; return its rendered DOM and the browser's console lines.
fn load(page: &Path, shot: &Path) -> (String, Vec<String>) {
    let profile = tempfile::tempdir().unwrap();
    let dom = browser(page, &["--dump-dom"], profile.path())
        .output()
        .unwrap();
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let console: Vec<String> = String::from_utf8_lossy(&dom.stderr)
        .lines()
        .filter(|l| l.contains("CONSOLE"))
        .map(str::to_string)
        .collect();
    let out = browser(
        page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1100,1000",
        ],
        profile.path(),
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (String::from_utf8_lossy(&dom.stdout).into_owned(), console)
}

/// Every step id of the report, as the page names them (`phase.step`).
fn steps(report: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in report["phases"].as_array().unwrap() {
        for s in p["steps"].as_array().unwrap() {
            out.push(format!(
                "{}.{}",
                p["id"].as_str().unwrap(),
                s["id"].as_str().unwrap()
            ));
        }
    }
    out
}

fn check(name: &str, dir: &Path) -> String {
    let page = std::fs::canonicalize(dir.join("report.html")).unwrap();
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let shots = std::env::var_os("RUNBOOK_SCREENSHOTS").map(PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    let shot = shots
        .as_deref()
        .unwrap_or(tmp.path())
        .join(format!("report-{name}.png"));
    let (dom, console) = load(&page, &shot);
    assert!(console.is_empty(), "{name}: console said {console:?}");
    for step in steps(&report) {
        assert!(
            dom.contains(&format!("data-step=\"{step}\"")),
            "{name}: step {step} is not on the page"
        );
    }
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: a PNG");
    assert!(
        png.len() > 10_000,
        "{name}: the screenshot has something in it"
    );
    dom
}

#[test]
fn a_succeeded_run_draws_its_verdict_timeline_and_checks() {
    let db = Db::fresh();
    let case = Case::new(&std::fs::read_to_string("examples/quickstart/runbook.yml").unwrap());
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let dom = check("succeeded", &case.reports());
    assert!(dom.contains("Exit code 0: the database is changed and verified"));
    assert!(dom.contains("id=\"timeline\""));
    assert!(dom.contains("id=\"checks\""));
}

#[test]
fn a_rolled_back_run_draws_its_compensations() {
    let db = Db::fresh();
    let case = Case::new(&std::fs::read_to_string("examples/quickstart/rollback.yml").unwrap());
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let dom = check("rolled-back", &case.reports());
    assert!(dom.contains("Exit code 2: the database is back where it started"));
    assert!(dom.contains("url(#hatch)"), "the compensation is marked");
    // Drawn again from report.json alone, the page is the same.
    let again = case.dir.path().join("again.html");
    support::succeeded(
        Command::new(env!("CARGO_BIN_EXE_runbook"))
            .args(["report", "html"])
            .arg(case.reports())
            .arg("-o")
            .arg(&again),
    );
    assert_eq!(
        std::fs::read_to_string(&again).unwrap(),
        std::fs::read_to_string(case.reports().join("report.html")).unwrap()
    );
}

#[test]
fn a_rehearsal_draws_each_migrations_legs() {
    let db = Db::fresh();
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    support::succeeded(
        Command::new(env!("CARGO_BIN_EXE_runbook"))
            .args([
                "exec",
                "runbooks/staging-rehearsal.yml",
                "--database-url",
                &db.url,
            ])
            .args([
                "--set",
                "migrations=../examples/rehearsal/migrations",
                "--yes",
                "-q",
            ])
            .arg("--report-dir")
            .arg(&reports)
            .env_remove("DATABASE_URL"),
    );
    let dom = check("rehearsal", &reports);
    assert!(dom.contains("class=\"rehearsal\""));
    for leg in ["create_customers", "add_orders", "customer_name"] {
        assert!(dom.contains(leg), "{leg}");
    }
}
