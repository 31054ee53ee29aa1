//! The throwaway cluster starts as an unprivileged user, serves, and is removed.

use runbook::ephemeral::Ephemeral;

#[test]
fn starts_serves_and_cleans_up() {
    let pg = Ephemeral::start().expect("cluster starts");
    let dir = pg.dir().to_path_buf();
    let out = std::process::Command::new("psql")
        .args([
            &pg.url("postgres"),
            "-XAtc",
            "SELECT current_user || ' ' || inet_server_addr()::text",
        ])
        .output()
        .expect("psql runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "runbook 127.0.0.1/32",
        "{out:?}"
    );
    if nix::unistd::Uid::effective().is_root() {
        // The server process must not be root.
        let owner = std::fs::metadata(dir.join("data"))
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap();
        assert_ne!(owner, 0, "the data directory belongs to root");
    }
    drop(pg);
    assert!(!dir.exists(), "{} left behind", dir.display());
}

/// The cluster's settings that need a restart are in its configuration
/// file, so a reload (`pg_reload_conf()`, after an `ALTER SYSTEM` on a kept
/// cluster) finds nothing wrong there. Before, `max_connections` was given
/// on the command line (200) while initdb's file said 100: every reload
/// logged "configuration file ... contains errors; unaffected changes were
/// applied", which `pg_file_settings` shows without a reload.
#[test]
fn a_reload_finds_nothing_wrong_in_the_configuration() {
    let pg = Ephemeral::start().expect("cluster starts");
    let out = std::process::Command::new("psql")
        .args([
            &pg.url("postgres"),
            "-XAtc",
            "SELECT current_setting('max_connections') || ' ' || current_setting('shared_buffers')",
            "-c",
            "SELECT name || ': ' || error FROM pg_file_settings WHERE error IS NOT NULL",
        ])
        .output()
        .expect("psql runs");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "200 128MB",
        "{out:?}"
    );
}

/// SIGTERM while `--ephemeral` starts its cluster, after the report
/// directory is made: the signal waits until the run watches for it, then
/// stops the run before its first step, with a report that says so, and
/// the cluster is removed. (Before, it killed runbook where it stood: the
/// report directory held an event log and no report, and the exit code was
/// 143. As PID 1 in a container, the signal was dropped and the run went
/// on.)
#[test]
fn a_sigterm_while_the_cluster_starts_stops_the_run_with_its_report() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let (file, reports, tmp) = (
        home.path().join("noop.yml"),
        home.path().join("reports"),
        home.path().join("tmp"),
    );
    std::fs::write(
        &file,
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: noop, version: 1 }\nphases:\n  - id: p\n    kind: custom\n    steps:\n      - id: s\n        sql: CREATE TABLE made (n int);\n",
    )
    .unwrap();
    std::fs::create_dir(&tmp).unwrap();
    // The cluster's user (not root) must reach its directory in here.
    for d in [home.path(), tmp.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .arg("exec")
        .arg(&file)
        .args([
            "--ephemeral",
            "--yes",
            "--progress",
            "never",
            "--report-dir",
        ])
        .arg(&reports)
        .env("TMPDIR", &tmp)
        .env_remove("DATABASE_URL")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The event log is made before the cluster starts; initdb alone takes
    // far longer than this wait.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !reports.join("events.jsonl").exists() {
        assert!(std::time::Instant::now() < deadline, "no event log");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reports.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["run"]["status"], "interrupted");
    assert_eq!(
        report["run"]["verdict"],
        "INTERRUPTED by SIGTERM before the first step; nothing ran"
    );
    let events = std::fs::read_to_string(reports.join("events.jsonl")).unwrap();
    assert!(!events.contains("step_started"), "{events}");
    assert!(events.contains(r#""event":"run_finished""#), "{events}");
    // The cluster is stopped and its directory removed.
    while std::fs::read_dir(&tmp).unwrap().next().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the cluster's directory was left in {}",
            tmp.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `--keep` prints a command that stops the kept cluster, as it can be
/// pasted. Before, it said "stop it with pg_ctl -D that directory stop",
/// which as root fails ("cannot be run as root") and needs pg_ctl on PATH.
#[test]
fn keep_prints_a_command_that_stops_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("noop.yml");
    std::fs::write(
        &file,
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: noop, version: 1 }\nphases:\n  - id: p\n    kind: verify\n    steps:\n      - id: s\n        sql: SELECT 1\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args([
            "exec",
            file.to_str().unwrap(),
            "--ephemeral",
            "--keep",
            "-q",
        ])
        .args(["--report-dir", dir.path().join("reports").to_str().unwrap()])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("ephemeral PostgreSQL kept running: "))
        .unwrap_or_else(|| panic!("{text}"));
    let url = line
        .trim_start_matches("ephemeral PostgreSQL kept running: ")
        .split(' ')
        .next()
        .unwrap();
    let data = line
        .split("(data in ")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let command = line
        .split_once("stop it with: ")
        .unwrap_or_else(|| panic!("no command: {line}"))
        .1;
    let serves = || {
        std::process::Command::new("psql")
            .args([url, "-XAtc", "SELECT 1"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    assert!(serves(), "the kept cluster serves");
    let stopped = std::process::Command::new("sh")
        .args(["-c", command])
        .output()
        .unwrap();
    let done = stopped.status.success() && !serves();
    if !done {
        // Not left running when the printed command fails.
        let pid = std::fs::read_to_string(format!("{data}/postmaster.pid")).unwrap_or_default();
        if let Some(Ok(pid)) = pid.lines().next().map(str::parse::<i32>) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGQUIT,
            );
        }
    }
    assert!(done, "`{command}` stopped it: {stopped:?}");
    let _ = std::fs::remove_dir_all(std::path::Path::new(data).parent().unwrap());
}
