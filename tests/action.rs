//! The GitHub Action (.github/actions/runbook): its inputs reach its
//! script, and the script runs runbook as the action would, against the
//! throwaway PostgreSQL; the workflow that exercises it names real files.

mod support;

use std::path::Path;
use std::process::Command;

use serde_yaml::Value;
use support::{Db, ended};

const ACTION: &str = ".github/actions/runbook/action.yml";

fn action() -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(ACTION).unwrap()).unwrap()
}

/// Run the action's script with these inputs; returns (its exit code,
/// $GITHUB_OUTPUT as written, stdout + stderr).
fn run(dir: &Path, inputs: &[(&str, &str)]) -> (i32, String, String) {
    let output = dir.join("github_output");
    let (code, stdout, stderr) = ended(script(dir, inputs).output().unwrap());
    let written = std::fs::read_to_string(&output).unwrap_or_default();
    (code, written, format!("{stdout}{stderr}"))
}

/// The action's script with these inputs, as the step runs it; it writes
/// $GITHUB_OUTPUT to `dir/github_output`.
fn script(dir: &Path, inputs: &[(&str, &str)]) -> Command {
    let output = dir.join("github_output");
    let _ = std::fs::remove_file(&output);
    let bin = Path::new(env!("CARGO_BIN_EXE_runbook")).parent().unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg(std::fs::canonicalize(".github/actions/runbook/run.sh").unwrap())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .env("GITHUB_OUTPUT", &output)
        .env("GITHUB_JOB", "test")
        .env("GITHUB_RUN_ID", "42")
        .env_remove("DATABASE_URL")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env("CI", "true");
    for (k, v) in inputs {
        cmd.env(format!("INPUT_{}", k.to_uppercase().replace('-', "_")), v);
    }
    cmd
}

/// A cancelled job: the runner sends SIGINT to the step's entry process,
/// the action's script, not to runbook. The script passes it on, so
/// runbook rolls back and the reports say so. (Before, runbook ran in the
/// script's foreground and never saw the signal: it ran on, unwatched,
/// until the job's cleanup killed it, with no rollback.)
#[test]
fn a_cancelled_job_reaches_runbook_through_the_script_and_it_rolls_back() {
    let db = Db::fresh();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("slow.yml");
    std::fs::write(
        &file,
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: slow, version: 1 }\nphases:\n  - id: main\n    kind: custom\n    steps:\n      - id: made\n        sql: CREATE TABLE t (n bigint);\n        rollback:\n          id: unmade\n          sql: DROP TABLE IF EXISTS t;\n      - id: slow\n        sql: SELECT pg_sleep(60);\n",
    )
    .unwrap();
    let reports = dir.path().join("reports");
    let child = script(
        dir.path(),
        &[
            ("file", file.to_str().unwrap()),
            ("database-url", &db.url),
            ("report-dir", reports.to_str().unwrap()),
        ],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !std::fs::read_to_string(reports.join("events.jsonl"))
        .unwrap_or_default()
        .contains(r#""step":"slow""#)
    {
        assert!(std::time::Instant::now() < deadline, "slow never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let (code, _, said) = ended(child.wait_with_output().unwrap());
    assert_eq!(code, 0, "{said}");
    let out = std::fs::read_to_string(dir.path().join("github_output")).unwrap();
    assert!(out.contains("exit-code=130\n"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reports.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(
        report["run"]["verdict"],
        "INTERRUPTED by Ctrl-C (SIGINT) at main.slow: rolled back"
    );
    assert_eq!(db.sql("SELECT to_regclass('t') IS NULL"), "t");
}

#[test]
fn every_input_reaches_the_script_and_every_variable_it_reads_is_an_input() {
    let a = action();
    let inputs: Vec<String> = a["inputs"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    let steps = a["runs"]["steps"].as_sequence().unwrap();
    let run = steps
        .iter()
        .find(|s| s["id"].as_str() == Some("run"))
        .unwrap();
    let env = run["env"].as_mapping().unwrap();
    let script = std::fs::read_to_string(".github/actions/runbook/run.sh").unwrap();
    for (k, v) in env {
        let k = k.as_str().unwrap();
        let input = v
            .as_str()
            .unwrap()
            .trim_start_matches("${{ inputs.")
            .trim_end_matches(" }}");
        assert!(
            inputs.iter().any(|i| i == input),
            "{k} reads no input: {input}"
        );
        assert_eq!(
            k,
            format!("INPUT_{}", input.to_uppercase().replace('-', "_")),
            "named after its input"
        );
        assert!(script.contains(k), "run.sh never reads {k}");
    }
    let mut at = 0;
    while let Some(i) = script[at..].find("INPUT_") {
        let start = at + i;
        let end = start
            + script[start..]
                .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
                .unwrap();
        let name = &script[start..end];
        at = end;
        if name == "INPUT_" {
            // `INPUT_*` in a comment.
            continue;
        }
        assert!(
            env.keys().any(|k| k.as_str() == Some(name)),
            "run.sh reads {name}, which action.yml never sets"
        );
    }
}

#[test]
fn the_action_runs_the_quickstart_and_reports_its_exit_code() {
    let db = Db::fresh();
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let (code, out, said) = run(
        dir.path(),
        &[
            ("command", "exec"),
            ("file", "examples/quickstart/runbook.yml"),
            ("database-url", &db.url),
            ("report-dir", reports.to_str().unwrap()),
        ],
    );
    assert_eq!(code, 0, "{said}");
    assert!(out.contains("exit-code=0\n"), "{out}\n{said}");
    assert!(
        out.contains(&format!("report-dir={}", reports.display())),
        "{out}"
    );
    assert!(reports.join("report.json").exists());
    assert!(reports.join("junit.xml").exists());
    assert!(!said.contains(&db.url), "the URL is never echoed: {said}");
    // A failing run: the script still exits 0 (the reports get uploaded
    // first), and says runbook's code for the last step to fail with.
    let (code, out, said) = run(
        dir.path(),
        &[
            ("file", "examples/quickstart/rollback.yml"),
            ("database-url", &db.url),
            ("report-dir", dir.path().join("r2").to_str().unwrap()),
        ],
    );
    assert_eq!(code, 0, "{said}");
    assert!(out.contains("exit-code=2\n"), "{out}\n{said}");
}

/// A short-lived password: the URL has none, and `password-command`
/// gives it at each login. Without the input, the run cannot log in.
#[test]
fn the_password_command_input_gives_each_login_its_password() {
    let (_pg, url) = support::password_cluster("Token-From-Cmd-1");
    let dir = tempfile::tempdir().unwrap();
    let with = |extra: &[(&'static str, &str)], name: &str| {
        let reports = dir.path().join(name);
        let mut inputs = vec![
            ("file", "examples/quickstart/runbook.yml"),
            ("database-url", url.as_str()),
            ("report-dir", reports.to_str().unwrap()),
        ];
        inputs.extend_from_slice(extra);
        run(dir.path(), &inputs)
    };
    let (code, out, said) = with(&[("password-command", "echo Token-From-Cmd-1")], "r1");
    assert_eq!(code, 0, "{said}");
    assert!(out.contains("exit-code=0\n"), "{out}\n{said}");
    assert!(!said.contains("Token-From-Cmd-1"), "{said}");
    let (_, out, said) = with(&[], "r2");
    assert!(out.contains("exit-code=1\n"), "{out}\n{said}");
}

#[test]
fn inputs_are_data_never_shell() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("injected");
    let (_, out, said) = run(
        dir.path(),
        &[
            ("command", "validate"),
            ("file", "examples/quickstart/runbook.yml"),
            (
                "params",
                &format!("table=$(touch {})\n# a comment\n\n", marker.display()),
            ),
        ],
    );
    assert!(!marker.exists(), "a param ran as shell: {said}");
    assert!(
        out.contains("exit-code=5\n"),
        "the bad param value is refused: {out}\n{said}"
    );
    let (_, out, said) = run(dir.path(), &[("command", "deploy"), ("file", "x.yml")]);
    assert!(out.contains("exit-code=5"), "{out}");
    assert!(said.contains("one of validate, lint, plan, exec"), "{said}");
    let (_, out, said) = run(
        dir.path(),
        &[
            ("command", "lint"),
            ("file", "examples/quickstart/runbook.yml\nrunbooks/"),
        ],
    );
    assert!(out.contains("exit-code=0\n"), "{out}\n{said}");
}

#[test]
fn the_workflow_uses_the_action_on_files_that_exist() {
    let w: Value =
        serde_yaml::from_str(&std::fs::read_to_string(".github/workflows/action.yml").unwrap())
            .unwrap();
    let steps = w["jobs"]["quickstart"]["steps"].as_sequence().unwrap();
    let mut used = 0;
    for s in steps {
        if s["uses"].as_str() != Some("./.github/actions/runbook") {
            continue;
        }
        used += 1;
        for f in s["with"]["file"].as_str().unwrap().lines() {
            assert!(Path::new(f.trim()).exists(), "{f}");
        }
        for k in s["with"].as_mapping().unwrap().keys() {
            assert!(
                action()["inputs"].get(k.as_str().unwrap()).is_some(),
                "the workflow gives an input the action does not have: {k:?}"
            );
        }
    }
    assert!(used >= 4, "validate, lint, plan and exec");
    assert!(Path::new("scripts/actionlint.sh").exists());
}

/// docs/ci.md's release flow: each use of the action gives only inputs
/// the action has, names runbooks that exist, with params they declare,
/// and approves phases they have.
#[test]
fn the_release_flow_in_the_docs_uses_real_inputs_runbooks_params_and_phases() {
    let doc = std::fs::read_to_string("docs/ci.md").unwrap();
    let at = doc.find("<!-- recipe: release-flow -->").unwrap();
    let start = at + doc[at..].find("```yaml\n").unwrap() + 8;
    let end = start + doc[start..].find("\n```").unwrap();
    let w: Value = serde_yaml::from_str(&doc[start..end]).unwrap();
    let inputs = action()["inputs"].clone();
    let mut uses = 0;
    for (_, job) in w["jobs"].as_mapping().unwrap() {
        for s in job["steps"].as_sequence().unwrap() {
            if s["uses"].as_str() != Some("OWNER/runbook/.github/actions/runbook@v1") {
                continue;
            }
            uses += 1;
            let with = &s["with"];
            for k in with.as_mapping().unwrap().keys() {
                assert!(inputs.get(k.as_str().unwrap()).is_some(), "{k:?}");
            }
            let files: Vec<&str> = with["file"].as_str().unwrap().lines().collect();
            for f in &files {
                assert!(Path::new(f).exists(), "{f}");
            }
            if with["command"].as_str() == Some("lint") {
                continue;
            }
            let mut args = vec![
                "plan".to_string(),
                files[0].to_string(),
                "--format".into(),
                "json".into(),
            ];
            for p in with["params"].as_str().unwrap_or("").lines() {
                args.extend(["--set".to_string(), p.to_string()]);
            }
            let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
                .args(&args)
                .output()
                .unwrap();
            let (code, stdout, stderr) = ended(out);
            assert_eq!(code, 0, "{args:?}: {stderr}");
            let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            for phase in with["approve"].as_str().unwrap_or("").lines() {
                assert!(
                    plan["phases"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|p| p["id"] == phase),
                    "{} has no phase {phase}",
                    files[0]
                );
            }
        }
    }
    assert_eq!(uses, 4);
}
