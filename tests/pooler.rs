//! A connection pooler between runbook and PostgreSQL. In transaction mode
//! (PgBouncer's `pool_mode = transaction`) a server session serves other
//! clients between transactions, so the run's advisory lock and session
//! settings would not stay with its statements: the run must refuse before
//! anything changes. In session mode the run is safe and must go ahead.

mod support;

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Case, Db};

/// A PgBouncer in front of the test cluster, stopped on drop.
struct Bouncer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pgbouncer() -> String {
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .map(str::to_string)
        .or_else(|| {
            which::which("pgbouncer")
                .ok()
                .map(|p| p.display().to_string())
        })
        .expect("pgbouncer is installed (.ci/run installs Debian's package)")
}

impl Bouncer {
    fn start(db: &Db, pool_mode: &str) -> Bouncer {
        let server_port = support::cluster().port();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let ini = dir.path().join("pgbouncer.ini");
        std::fs::write(dir.path().join("users.txt"), "\"runbook\" \"\"\n").unwrap();
        std::fs::write(
            &ini,
            format!(
                "[databases]\n{name} = host=127.0.0.1 port={server_port} dbname={name}\n\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {users}\npool_mode = {pool_mode}\n\
                 default_pool_size = 5\nlogfile = {log}\n",
                name = db.name,
                users = dir.path().join("users.txt").display(),
                log = dir.path().join("pgbouncer.log").display(),
            ),
        )
        .unwrap();
        let mut cmd = Command::new(pgbouncer());
        cmd.arg(&ini).stdout(Stdio::null()).stderr(Stdio::null());
        if let Some((uid, gid)) = runbook::ephemeral::unprivileged_user().unwrap() {
            for f in [
                dir.path().to_path_buf(),
                ini.clone(),
                dir.path().join("users.txt"),
            ] {
                nix::unistd::chown(&f, Some(uid), Some(gid)).unwrap();
            }
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        let child = cmd.spawn().unwrap();
        let bouncer = Bouncer {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not listen on {port}: {}",
                std::fs::read_to_string(bouncer._dir.path().join("pgbouncer.log"))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        bouncer
    }

    fn url(&self, db: &Db) -> String {
        format!("postgres://runbook@127.0.0.1:{}/{}", self.port, db.name)
    }
}

const RUNBOOK: &str = r#"apiVersion: runbook/v1
kind: Runbook
metadata: { name: pooled, version: 1 }
phases:
  - id: p
    kind: custom
    steps:
      - id: make
        sql: CREATE TABLE made_here (id bigint PRIMARY KEY);
"#;

#[test]
fn a_transaction_mode_pooler_is_refused_before_anything_changes() {
    let db = Db::fresh();
    let bouncer = Bouncer::start(&db, "transaction");
    let case = Case::new(RUNBOOK);
    let run = case.exec(&bouncer.url(&db), &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.report["run"]["status"], "preflight_failed");
    let verdict = run.report["run"]["verdict"].as_str().unwrap();
    assert!(verdict.contains("pooler in transaction"), "{verdict}");
    assert!(
        verdict.contains("Connect to PostgreSQL directly"),
        "{verdict}"
    );
    assert!(verdict.contains("nothing ran"), "{verdict}");
    // Nothing changed: no table, and no journal either.
    assert_eq!(
        db.sql(
            "SELECT to_regclass('made_here') IS NULL, to_regnamespace('runbook_journal') IS NULL"
        ),
        "t|t"
    );
}

#[test]
fn a_session_mode_pooler_keeps_the_session_and_the_run_goes_ahead() {
    let db = Db::fresh();
    let bouncer = Bouncer::start(&db, "session");
    let case = Case::new(RUNBOOK);
    let run = case.exec(&bouncer.url(&db), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["run"]["status"], "succeeded");
    assert_eq!(db.sql("SELECT to_regclass('made_here') IS NOT NULL"), "t");
}
