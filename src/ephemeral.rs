//! A throwaway local PostgreSQL: `runbook exec --ephemeral`, and the test suite.
//!
//! The cluster lives in a temporary directory, listens only on 127.0.0.1 on a
//! free port, trusts local connections, and is removed when dropped. PostgreSQL
//! refuses to run as root, so when runbook is root the server runs as the
//! `postgres` user (or `nobody`). A guardian process removes the cluster even
//! if runbook itself is killed.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Gid, Pid, Uid, User};

/// Why a throwaway cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EphemeralError {
    #[error(
        "PostgreSQL server binaries not found (looked for `{name}` on PATH and in /usr/lib/postgresql/*/bin)"
    )]
    NotInstalled { name: &'static str },
    #[error("failed to create a directory for the cluster: {0}")]
    TempDir(#[source] std::io::Error),
    #[error("failed to write the cluster's configuration: {0}")]
    Configure(#[source] std::io::Error),
    #[error(
        "runbook runs as root and found no unprivileged user (`postgres` or `nobody`) to run PostgreSQL as"
    )]
    NoUser,
    #[error("failed to run `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`initdb` failed:\n{0}")]
    Initdb(String),
    #[error("`pg_basebackup` failed:\n{0}")]
    Basebackup(String),
    #[error("PostgreSQL did not start within {seconds}s; its log ends with:\n{log}")]
    Start { seconds: u64, log: String },
    #[error("failed to make the TLS certificates with openssl: {0}")]
    Certificates(String),
}

/// The directories that hold `initdb`, `pg_ctl`, `postgres` and friends.
pub fn bin_dir() -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Ok(p) = which::which("initdb")
        && let Some(dir) = std::fs::canonicalize(&p)
            .ok()
            .as_deref()
            .and_then(Path::parent)
        && has_server(dir)
    {
        return Some(dir.to_path_buf());
    }
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, d)| d)
}

/// A running throwaway cluster.
#[derive(Debug)]
pub struct Ephemeral {
    dir: PathBuf,
    port: u16,
    postmaster: Option<Child>,
    guardian: Option<Child>,
    keep: bool,
    /// Started with `ssl=on`, TLS-only over TCP, with a CA of its own.
    tls: bool,
    /// More `-c` settings for the server, `name=value`.
    settings: Vec<String>,
}

const SUPERUSER: &str = "runbook";

/// Appended to initdb's postgresql.conf: the settings the server reads only
/// when it starts. Later lines of the file win over initdb's.
const RESTART_SETTINGS: &str =
    "\n# runbook's throwaway cluster\nmax_connections = 200\nshared_buffers = 128MB\n";

impl Ephemeral {
    /// Create, configure and start a cluster; wait until it accepts connections.
    pub fn start() -> Result<Self, EphemeralError> {
        Self::start_with(false)
    }

    /// A cluster that accepts only TLS over TCP, with a certificate for
    /// `127.0.0.1` and `localhost` from a CA of its own ([`Ephemeral::ca`]).
    pub fn start_tls() -> Result<Self, EphemeralError> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Result<Self, EphemeralError> {
        let bin = bin_dir().ok_or(EphemeralError::NotInstalled { name: "initdb" })?;
        let run_as = unprivileged_user()?;
        let mut cluster = Self::empty(run_as, tls, Vec::new())?;
        let dir = cluster.dir.clone();
        let data = dir.join("data");
        run_to_end(
            as_user(Command::new(bin.join("initdb")), run_as)
                .args(["-D"])
                .arg(&data)
                .args([
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]),
            "initdb",
            EphemeralError::Initdb,
        )?;
        // What can change only with a restart goes in the configuration
        // file, after initdb's own values, not on the command line: a
        // reload reads the file again, and a value there that differs from
        // the running one is logged as an error ("configuration file ...
        // contains errors") though nothing is wrong.
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(RESTART_SETTINGS.as_bytes()))
            .map_err(EphemeralError::Configure)?;

        if tls {
            make_certificates(&dir, run_as)?;
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
            )
            .map_err(EphemeralError::Configure)?;
        }
        let mut last_log = String::new();
        for _ in 0..3 {
            let port = free_port();
            cluster.spawn_postmaster(&bin, run_as, port)?;
            if cluster.wait_ready(Duration::from_secs(30)) {
                return Ok(cluster);
            }
            cluster.stop_server();
            last_log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
        }
        let tail: Vec<&str> = last_log.lines().rev().take(10).collect();
        Err(EphemeralError::Start {
            seconds: 30,
            log: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        })
    }

    /// A streaming replica of this cluster, from `pg_basebackup -R`, its
    /// server started with `settings` too (`name=value`). For tests of what
    /// a run sees of replicas.
    pub fn start_standby(&self, settings: &[&str]) -> Result<Self, EphemeralError> {
        let bin = bin_dir().ok_or(EphemeralError::NotInstalled {
            name: "pg_basebackup",
        })?;
        let run_as = unprivileged_user()?;
        let settings = settings.iter().map(|s| (*s).to_string()).collect();
        let mut standby = Self::empty(run_as, false, settings)?;
        run_to_end(
            as_user(Command::new(bin.join("pg_basebackup")), run_as)
                .arg("-D")
                .arg(standby.dir.join("data"))
                .args(["-R", "-X", "stream", "--no-sync", "-U", SUPERUSER, "-h"])
                .arg(&self.dir)
                .args(["-p", &self.port.to_string()]),
            "pg_basebackup",
            EphemeralError::Basebackup,
        )?;
        standby.spawn_postmaster(&bin, run_as, free_port())?;
        standby.ready()?;
        Ok(standby)
    }

    /// A cluster with nothing in its directory yet (owned by the user the
    /// server runs as), and no server. Its guardian removes the directory
    /// once this process is gone, even after a SIGKILL; dropping the
    /// cluster normally stops the server first.
    fn empty(
        run_as: Option<(Uid, Gid)>,
        tls: bool,
        settings: Vec<String>,
    ) -> Result<Self, EphemeralError> {
        let dir = tempfile::Builder::new()
            .prefix("runbook-pg-")
            .tempdir()
            .map_err(EphemeralError::TempDir)?
            .keep();
        if let Some((uid, gid)) = run_as {
            nix::unistd::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| EphemeralError::TempDir(std::io::Error::from(e)))?;
        }
        Ok(Ephemeral {
            guardian: spawn_guardian(&dir).ok(),
            dir,
            port: 0,
            postmaster: None,
            keep: false,
            tls,
            settings,
        })
    }

    /// Wait until the server takes connections; if it does not within 30
    /// s, why, from its log.
    fn ready(&mut self) -> Result<(), EphemeralError> {
        if self.wait_ready(Duration::from_secs(30)) {
            return Ok(());
        }
        Err(EphemeralError::Start {
            seconds: 30,
            log: std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default(),
        })
    }

    /// Start the server on `port`, its log in the cluster's directory.
    fn spawn_postmaster(
        &mut self,
        bin: &Path,
        run_as: Option<(Uid, Gid)>,
        port: u16,
    ) -> Result<(), EphemeralError> {
        let dir = self.dir.clone();
        let log = dir.join("postgres.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(EphemeralError::TempDir)?;
        if let Some((uid, gid)) = run_as {
            let _ = nix::unistd::chown(&log, Some(uid), Some(gid));
        }
        let child = as_user(Command::new(bin.join("postgres")), run_as)
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.display()))
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ])
            .args(self.settings.iter().flat_map(|s| ["-c", s]))
            .args(if self.tls {
                vec![
                    "-c".to_string(),
                    "ssl=on".into(),
                    "-c".into(),
                    format!("ssl_cert_file={}", dir.join("server.crt").display()),
                    "-c".into(),
                    format!("ssl_key_file={}", dir.join("server.key").display()),
                ]
            } else {
                Vec::new()
            })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .process_group(0)
            .spawn()
            .map_err(|source| EphemeralError::Spawn {
                program: "postgres".into(),
                source,
            })?;
        self.postmaster = Some(child);
        self.port = port;
        Ok(())
    }

    /// Restart the server on the same port, as `pg_ctl restart -m fast`
    /// does: sessions are terminated, and for a moment connections are
    /// refused. For tests of what a run does when that happens.
    pub fn restart(&mut self) -> Result<(), EphemeralError> {
        let bin = bin_dir().ok_or(EphemeralError::NotInstalled { name: "postgres" })?;
        let run_as = unprivileged_user()?;
        let port = self.port;
        self.stop_server();
        self.spawn_postmaster(&bin, run_as, port)?;
        self.ready()
    }

    fn wait_ready(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let socket = self.dir.join(format!(".s.PGSQL.{}", self.port));
        while Instant::now() < deadline {
            if let Some(child) = self.postmaster.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                return false;
            }
            // The server opens its Unix socket once it accepts connections,
            // and removes the startup lock; probe TCP to be sure.
            if socket.exists() && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                let ready = std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
                    .map(|pid| {
                        // A standby says `standby` once it takes connections.
                        pid.lines()
                            .nth(7)
                            .is_some_and(|l| matches!(l.trim(), "ready" | "standby"))
                    })
                    .unwrap_or(false);
                if ready {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for database `db` on this cluster (trust auth: no password);
    /// for a TLS cluster, with `sslmode=verify-full` and its CA.
    pub fn url(&self, db: &str) -> String {
        let base = format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port);
        if self.tls {
            format!(
                "{base}?sslmode=verify-full&sslrootcert={}",
                self.ca().display()
            )
        } else {
            base
        }
    }

    /// The CA that signed a TLS cluster's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// Keep the cluster running after this value is dropped (`--keep`).
    pub fn keep(&mut self) {
        self.keep = true;
        if let Some(mut g) = self.guardian.take() {
            let _ = g.kill();
            let _ = g.wait();
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A shell command that stops a kept cluster, as it can be pasted: the
    /// pg_ctl this cluster's server came with, run as the user the server
    /// runs as when that is not the caller (root cannot stop it: pg_ctl
    /// says "cannot be run as root").
    pub fn stop_command(&self) -> String {
        let pg_ctl = bin_dir().map_or_else(|| PathBuf::from("pg_ctl"), |b| b.join("pg_ctl"));
        let command = format!(
            "{} -D {} stop -m fast",
            word(&pg_ctl.display().to_string()),
            word(&self.dir.join("data").display().to_string())
        );
        let user = unprivileged_user()
            .ok()
            .flatten()
            .and_then(|(uid, _)| User::from_uid(uid).ok().flatten());
        match user {
            Some(u) => format!("su -s /bin/sh {} -c {}", word(&u.name), word(&command)),
            None => command,
        }
    }

    fn stop_server(&mut self) {
        if let Some(mut child) = self.postmaster.take() {
            let pid = Pid::from_raw(child.id() as i32);
            // SIGINT: fast shutdown. SIGKILL if it takes too long.
            let _ = kill(pid, Signal::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = nix::sys::signal::killpg(pid, Signal::SIGKILL);
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }
}

impl Drop for Ephemeral {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        self.stop_server();
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(mut g) = self.guardian.take() {
            let _ = g.kill();
            let _ = g.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(54329)
}

/// The user to run a server as (PostgreSQL, or a test's PgBouncer; both
/// refuse root): `None` when runbook is not root.
pub fn unprivileged_user() -> Result<Option<(Uid, Gid)>, EphemeralError> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Ok(Some(u)) = User::from_name(name) {
            return Ok(Some((u.uid, u.gid)));
        }
    }
    Err(EphemeralError::NoUser)
}

/// `text` as one shell word, in quotes only when it needs them.
fn word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-=:@%+,".contains(c);
    match !text.is_empty() && text.chars().all(plain) {
        true => text.to_string(),
        false => crate::template::shell_word(text),
    }
}

fn as_user(mut cmd: Command, run_as: Option<(Uid, Gid)>) -> Command {
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid.as_raw()).gid(gid.as_raw()).env("HOME", "/tmp");
    }
    cmd
}

/// Run a client program (initdb, pg_basebackup) to its end; when it fails,
/// its stderr goes into the error `fail` makes.
fn run_to_end(
    cmd: &mut Command,
    program: &str,
    fail: fn(String) -> EphemeralError,
) -> Result<(), EphemeralError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| EphemeralError::Spawn {
            program: program.into(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fail(String::from_utf8_lossy(&out.stderr).into_owned()))
    }
}

/// A small `sh` loop that outlives this process: once the parent is gone it
/// stops the server (immediate shutdown) and removes the directory.
fn spawn_guardian(dir: &Path) -> std::io::Result<Child> {
    let script = r#"
parent=$1; dir=$2
while kill -0 "$parent" 2>/dev/null; do sleep 1; done
if [ -f "$dir/data/postmaster.pid" ]; then
  pid=$(head -n 1 "$dir/data/postmaster.pid")
  kill -QUIT "$pid" 2>/dev/null
  for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL "$pid" 2>/dev/null
fi
rm -rf "$dir"
"#;
    Command::new("sh")
        .args(["-c", script, "runbook-guardian"])
        .arg(std::process::id().to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
}

/// A CA, and a server certificate it signs for 127.0.0.1 and localhost,
/// made with the openssl command; the server's files belong to the user
/// PostgreSQL runs as (it refuses a key others can read).
fn make_certificates(dir: &Path, run_as: Option<(Uid, Gid)>) -> Result<(), EphemeralError> {
    let openssl = |args: &[&str]| -> Result<(), EphemeralError> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| EphemeralError::Certificates(format!("openssl: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(EphemeralError::Certificates(
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ))
        }
    };
    std::fs::write(
        dir.join("san.cnf"),
        "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .map_err(EphemeralError::Configure)?;
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-nodes",
        "-newkey",
        "rsa:2048",
        "-days",
        "2",
        "-subj",
        "/CN=runbook throwaway CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ])?;
    openssl(&[
        "req",
        "-new",
        "-nodes",
        "-newkey",
        "rsa:2048",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ])?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.cnf",
        "-out",
        "server.crt",
    ])?;
    let key = dir.join("server.key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(EphemeralError::Configure)?;
    if let Some((uid, gid)) = run_as {
        for f in ["server.key", "server.crt", "ca.crt"] {
            let _ = nix::unistd::chown(&dir.join(f), Some(uid), Some(gid));
        }
    }
    Ok(())
}
