//! The two recipes of docs/fleet.md, taken from the page and run as their
//! engines would run them, as far as one machine allows: the GitHub
//! Actions workflow's jobs in order (each matrix entry its own process,
//! artifacts laid out as download-artifact lays them out), and the
//! Kubernetes Indexed Job's command once per completion index.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;
use serde_yaml::Value;
use support::{Db, cluster};

const RUNBOOK: &str = r#"apiVersion: runbook/v1
kind: Runbook
metadata: { name: release-tenants, version: "1" }
phases:
  - id: expand
    kind: expand
    steps:
      - id: create
        sql: CREATE TABLE release_marker (id int);
        rollback:
          - id: drop
            sql: DROP TABLE IF EXISTS release_marker;
"#;

/// The fenced block that follows `marker` in docs/fleet.md.
fn block_after(marker: &str, fence: &str) -> String {
    let doc = std::fs::read_to_string("docs/fleet.md").unwrap();
    let at = doc
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in docs/fleet.md"));
    let rest = &doc[at..];
    let start = rest.find(&format!("```{fence}\n")).unwrap() + fence.len() + 4;
    let end = start + rest[start..].find("\n```").unwrap();
    rest[start..end].to_string()
}

/// `n` databases and a targets file for them, in `dir`.
fn fleet(dir: &Path, n: usize) -> Vec<Db> {
    let dbs: Vec<Db> = (0..n).map(|_| Db::fresh()).collect();
    let mut t = format!(
        "apiVersion: runbook/v1\nkind: Targets\ndefaults: {{ url: '{}' }}\ntargets:\n",
        cluster().url("postgres")
    );
    for (i, db) in dbs.iter().enumerate() {
        t.push_str(&format!(
            "  - {{ name: tenant-{i}, database: {} }}\n",
            db.name
        ));
    }
    std::fs::write(dir.join("targets.yml"), t).unwrap();
    std::fs::write(dir.join("release.yml"), RUNBOOK).unwrap();
    dbs
}

/// PATH with the runbook under test first.
fn path_with_runbook() -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_runbook")).parent().unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn done_everywhere(dbs: &[Db]) -> bool {
    dbs.iter()
        .all(|d| d.sql("SELECT to_regclass('release_marker') IS NOT NULL") == "t")
}

/// `${{ ... }}` expressions, as GitHub would expand them for this job.
fn expand(text: &str, matrix: Option<&Json>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("${{") {
        out.push_str(&rest[..i]);
        let end = i + rest[i..].find("}}").unwrap();
        let expr = rest[i + 3..end].trim();
        let value = match (expr.strip_prefix("matrix."), matrix) {
            (Some(key), Some(m)) => match &m[key] {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            },
            // Secrets and variables are empty here: trust authentication.
            _ if expr.starts_with("secrets.") || expr.starts_with("vars.") => String::new(),
            _ => panic!("unexpected expression {expr}"),
        };
        out.push_str(&value);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Run a job's `run:` steps in `dir`; `uses:` steps are the caller's.
/// Returns each step's name and exit code; `outputs` is $GITHUB_OUTPUT.
fn run_steps(
    job: &Value,
    dir: &Path,
    matrix: Option<&Json>,
    artifacts: &Path,
) -> Vec<(String, i32)> {
    let output = dir.join("github_output");
    let mut codes = Vec::new();
    let mut failed = false;
    for step in job["steps"].as_sequence().unwrap() {
        let always = step["if"].as_str() == Some("always()");
        if failed && !always {
            continue;
        }
        let name = step["name"].as_str().unwrap_or("").to_string();
        if let Some(uses) = step["uses"].as_str() {
            let with = &step["with"];
            if uses.starts_with("actions/upload-artifact") {
                let name = expand(with["name"].as_str().unwrap(), matrix);
                let from = dir.join(expand(with["path"].as_str().unwrap(), matrix));
                copy_dir(&from, &artifacts.join(name));
            } else if uses.starts_with("actions/download-artifact") {
                let pattern = with["pattern"].as_str().unwrap();
                let prefix = pattern.strip_suffix('*').unwrap();
                let to = dir.join(with["path"].as_str().unwrap());
                for e in std::fs::read_dir(artifacts).unwrap() {
                    let e = e.unwrap();
                    let n = e.file_name().into_string().unwrap();
                    if n.starts_with(prefix) {
                        copy_dir(&e.path(), &to.join(&n));
                    }
                }
            }
            continue;
        }
        if name == "Install runbook" {
            // The binary under test is on PATH instead.
            continue;
        }
        let script = expand(step["run"].as_str().unwrap(), matrix);
        let mut cmd = Command::new("bash");
        cmd.args(["-e", "-c", &script])
            .current_dir(dir)
            .env("PATH", path_with_runbook())
            .env("GITHUB_OUTPUT", &output)
            .env_remove("GITHUB_STEP_SUMMARY")
            .env_remove("DATABASE_URL")
            .env("CI", "true");
        if let Some(env) = step["env"].as_mapping() {
            for (k, v) in env {
                cmd.env(k.as_str().unwrap(), expand(v.as_str().unwrap(), matrix));
            }
        }
        let out = cmd.output().unwrap();
        let code = out.status.code().unwrap_or(-1);
        assert!(
            code == 0 || !out.stderr.is_empty(),
            "a failing step says why: {name}"
        );
        failed |= code != 0;
        codes.push((name, code));
    }
    codes
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success(), "cp {} {}", from.display(), to.display());
}

/// A fresh checkout for one job.
fn checkout(root: &Path, job: &str, repo: &Path) -> PathBuf {
    let dir = root.join(job);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["release.yml", "targets.yml"] {
        std::fs::copy(repo.join(f), dir.join(f)).unwrap();
    }
    dir
}

#[test]
fn the_github_actions_recipe_rolls_out_every_shard_and_merges_their_reports() {
    let workflow: Value =
        serde_yaml::from_str(&block_after("<!-- recipe: github-actions -->", "yaml")).unwrap();
    let jobs = &workflow["jobs"];
    assert_eq!(jobs["rollout"]["needs"].as_str(), Some("plan"));
    assert_eq!(
        jobs["rollout"]["strategy"]["fail-fast"].as_bool(),
        Some(false)
    );
    assert_eq!(
        jobs["merge"]["if"].as_str(),
        Some("always()"),
        "the report exists when a shard failed"
    );
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let dbs = fleet(&repo, 9);
    let artifacts = root.path().join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();

    let plan = checkout(root.path(), "plan", &repo);
    let codes = run_steps(&jobs["plan"], &plan, None, &artifacts);
    assert!(codes.iter().all(|(_, c)| *c == 0), "{codes:?}");
    let written = std::fs::read_to_string(plan.join("github_output")).unwrap();
    let matrix: Json =
        serde_json::from_str(written.trim().strip_prefix("matrix=").unwrap()).unwrap();
    let entries = matrix["include"].as_array().unwrap();
    assert!(entries.len() >= 2, "{matrix}");
    for (i, entry) in entries.iter().enumerate() {
        let dir = checkout(root.path(), &format!("rollout-{i}"), &repo);
        let codes = run_steps(&jobs["rollout"], &dir, Some(entry), &artifacts);
        assert!(codes.iter().all(|(_, c)| *c == 0), "{entry}: {codes:?}");
    }
    assert!(done_everywhere(&dbs));
    let merge = checkout(root.path(), "merge", &repo);
    let codes = run_steps(&jobs["merge"], &merge, None, &artifacts);
    assert!(codes.iter().all(|(_, c)| *c == 0), "{codes:?}");
    let report: Json =
        serde_json::from_str(&std::fs::read_to_string(merge.join("merged/report.json")).unwrap())
            .unwrap();
    assert_eq!(report["counts"]["total"], 9);
    assert_eq!(report["counts"]["succeeded"], 9);
    assert_eq!(
        report["fleet"]["shards"].as_array().unwrap().len(),
        entries.len()
    );
    assert!(merge.join("merged/junit.xml").exists());
    assert!(artifacts.join("fleet-report/report.md").exists());
}

#[test]
fn the_kubernetes_recipe_maps_each_completion_index_to_one_shard() {
    let job: Value =
        serde_yaml::from_str(&block_after("<!-- recipe: kubernetes -->", "yaml")).unwrap();
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let completions = spec["completions"].as_u64().unwrap();
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"].as_str(), Some("Never"));
    let container = &pod["containers"][0];
    let shards = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"].as_str() == Some("SHARDS"))
        .and_then(|e| e["value"].as_str())
        .unwrap();
    assert_eq!(
        shards,
        completions.to_string(),
        "completions and SHARDS agree"
    );
    let command: Vec<&str> = container["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(command, ["/bin/sh", "-c"]);
    let root = tempfile::tempdir().unwrap();
    let release = root.path().join("release");
    let reports = root.path().join("reports");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::create_dir_all(&reports).unwrap();
    let dbs = fleet(&release, 7);
    let place = |s: &str| {
        s.replace("/release/", &format!("{}/", release.display()))
            .replace("/reports/", &format!("{}/", reports.display()))
    };
    let script = place(container["args"][0].as_str().unwrap());
    for index in 0..completions {
        let out = Command::new(command[0])
            .args([command[1], &script])
            .env("JOB_COMPLETION_INDEX", index.to_string())
            .env("SHARDS", shards)
            .env("PGPASSFILE", root.path().join("no-pgpass"))
            .env("PATH", path_with_runbook())
            .env("CI", "true")
            .env_remove("DATABASE_URL")
            .env_remove("GITHUB_STEP_SUMMARY")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "index {index}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(done_everywhere(&dbs));
    let merge = place(&block_after("any pod that mounts the volume", "sh"));
    support::succeeded(
        Command::new("sh")
            .args(["-c", &merge])
            .env("PATH", path_with_runbook())
            .env_remove("GITHUB_STEP_SUMMARY"),
    );
    let report: Json =
        serde_json::from_str(&std::fs::read_to_string(reports.join("merged/report.json")).unwrap())
            .unwrap();
    assert_eq!(report["counts"]["succeeded"], 7);
    let mut names: Vec<&str> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 7, "each target ran in exactly one pod");
}

#[test]
fn the_pages_targets_file_and_rollout_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    let targets = dir.path().join("targets.yml");
    std::fs::write(&targets, block_after("## The targets file", "yaml")).unwrap();
    let out = support::succeeded(
        Command::new(env!("CARGO_BIN_EXE_runbook"))
            .args(["targets", "list", "--format", "json", "--targets"])
            .arg(&targets)
            .args(["--select", "region=eu,us"]),
    );
    let listed: Json = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme", "globex", "initech", "hooli"]);
    assert_eq!(listed[1]["labels"]["tier"], "gold");
    assert_eq!(listed[0]["labels"]["tier"], "standard");
    let rollout = block_after("## Waves and stop rules", "yaml");
    let runbook = format!("{RUNBOOK}{rollout}\n");
    let file = dir.path().join("release.yml");
    std::fs::write(&file, runbook).unwrap();
    support::succeeded(
        Command::new(env!("CARGO_BIN_EXE_runbook"))
            .arg("validate")
            .arg(&file),
    );
}
