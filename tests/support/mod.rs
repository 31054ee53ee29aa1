//! Test support: one throwaway PostgreSQL per test binary, a fresh database
//! per test, and a way to run the real `runbook` binary against it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use runbook::ephemeral::Ephemeral;

static CLUSTER: OnceLock<Ephemeral> = OnceLock::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

pub fn cluster() -> &'static Ephemeral {
    CLUSTER.get_or_init(|| Ephemeral::start().expect("a throwaway PostgreSQL starts"))
}

/// A new, empty database of its own.
pub struct Db {
    pub name: String,
    pub url: String,
}

impl Db {
    pub fn fresh() -> Db {
        let c = cluster();
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        psql(
            &c.url("postgres"),
            &format!("CREATE DATABASE {name} TEMPLATE template0"),
        );
        Db {
            url: c.url(&name),
            name,
        }
    }

    /// Run SQL and return psql's unaligned, tuples-only output.
    pub fn sql(&self, sql: &str) -> String {
        psql(&self.url, sql)
    }

    /// A new login role, `{prefix}_{database}`, made this database's owner
    /// and given `public`, as a managed database's app role is: its name,
    /// and a URL that connects as it.
    pub fn owned_by_new_role(&self, prefix: &str) -> (String, String) {
        let hostport = self
            .url
            .split_once('@')
            .unwrap()
            .1
            .split_once('/')
            .unwrap()
            .0;
        let role = format!("{prefix}_{}", self.name);
        self.sql(&format!(
            "CREATE ROLE {role} LOGIN; ALTER DATABASE {} OWNER TO {role}; GRANT ALL ON SCHEMA public TO {role};",
            self.name
        ));
        let url = format!("postgres://{role}@{hostport}/{}", self.name);
        (role, url)
    }

    /// The same database, with a password in the URL (trust auth ignores it),
    /// to prove the password never reaches an output.
    pub fn url_with_password(&self, password: &str) -> String {
        self.url
            .replacen("runbook@", &format!("runbook:{password}@"), 1)
    }
}

/// dbmate migration files in `dir` (made if missing): each `(file, up,
/// down)`, with dbmate's `-- migrate:up` and `-- migrate:down` markers.
pub fn dbmate_files(dir: &Path, list: &[(&str, &str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (file, up, down) in list {
        std::fs::write(
            dir.join(file),
            format!("-- migrate:up\n{up}\n-- migrate:down\n{down}\n"),
        )
        .unwrap();
    }
}

/// Another session holds a `mode` lock on `table` for `seconds`; returns
/// once the lock is held.
pub fn hold_lock(db: &Db, table: &str, mode: &str, seconds: u32) -> std::process::Child {
    let holder = Command::new("psql")
        .args([
            &db.url,
            "-Xq",
            "-c",
            &format!(
                "BEGIN; LOCK TABLE {table} IN {mode} MODE; SELECT pg_sleep({seconds}); COMMIT;"
            ),
        ])
        .spawn()
        .unwrap();
    let lock = format!(
        "{}Lock",
        mode.to_lowercase()
            .split(' ')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c).collect::<String>())
                    .unwrap_or_default()
            })
            .collect::<String>()
    );
    wait_until(
        db,
        &format!(
            "SELECT count(*) > 0 FROM pg_locks WHERE relation = '{table}'::regclass AND mode = '{lock}' AND granted"
        ),
    );
    holder
}

/// Another session holds the advisory lock `key` for `seconds`, as a
/// migrator does while it runs; returns once it is held.
pub fn hold_advisory_lock(db: &Db, key: i64, seconds: u32) -> std::process::Child {
    let holder = Command::new("psql")
        .args([&db.url, "-Xq", "-c"])
        .arg(format!(
            "SELECT pg_advisory_lock({key}); SELECT pg_sleep({seconds});"
        ))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        db,
        "SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()",
    );
    holder
}

/// Poll `query` (a boolean) until it is true, for at most 10 s.
pub fn wait_until(db: &Db, query: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while db.sql(query) != "t" {
        assert!(std::time::Instant::now() < deadline, "never true: {query}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A copy of tests/fixtures/fake-tool, a stand-in for a migration CLI such
/// as Knex's (its script stays executable).
pub fn fake_tool_project() -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    let from = format!("{}/tests/fixtures/fake-tool/.", env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("cp")
        .args(["-a", &from, to.path().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    to
}

/// Run `cmd` and require that it succeeds; its stderr says why when not.
pub fn succeeded(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// How a command ended: (exit code, stdout, stderr).
pub fn ended(out: std::process::Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql failed on {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

/// A runbook written to a temp dir, ready to run.
pub struct Case {
    pub dir: tempfile::TempDir,
    pub file: PathBuf,
}

impl Case {
    pub fn new(yaml: &str) -> Case {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("runbook.yml");
        std::fs::write(&file, yaml).unwrap();
        Case { dir, file }
    }

    pub fn reports(&self) -> PathBuf {
        self.dir.path().join("reports")
    }

    pub fn command(&self, url: &str, extra: &[&str]) -> Command {
        self.command_through(&[], url, extra)
    }

    /// [`Case::command`] started in the background, its output captured
    /// (for `wait_with_output` and [`Run::new`]).
    pub fn spawn(&self, url: &str, extra: &[&str]) -> std::process::Child {
        self.command(url, extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// [`Case::command`], started through `launcher`: its program and the
    /// arguments that come before runbook's path (`unshare --pid --fork`).
    pub fn command_through(&self, launcher: &[&str], url: &str, extra: &[&str]) -> Command {
        let runbook = env!("CARGO_BIN_EXE_runbook");
        let mut cmd = match launcher.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(runbook);
                c
            }
            None => Command::new(runbook),
        };
        cmd.arg("exec")
            .arg(&self.file)
            .args(["--database-url", url, "--report-dir"])
            .arg(self.reports())
            .args(["--progress", "never"])
            .args(extra)
            .env_remove("DATABASE_URL")
            .env_remove("GITHUB_STEP_SUMMARY")
            .env("NO_COLOR", "1");
        cmd
    }

    /// `runbook approve` of this case's runbook; asserts that it wrote `out`.
    pub fn approve(&self, out: &Path, extra: &[&str]) {
        let done = self.approving(extra).arg("-o").arg(out).output().unwrap();
        assert!(
            done.status.success(),
            "{}",
            String::from_utf8_lossy(&done.stderr)
        );
    }

    /// The `runbook approve` command for this case's runbook.
    pub fn approving(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
        cmd.arg("approve")
            .arg(&self.file)
            .args(extra)
            .env_remove("GITHUB_ACTOR");
        cmd
    }

    pub fn exec(&self, url: &str, extra: &[&str]) -> Run {
        let out = self.command(url, extra).output().unwrap();
        Run::new(out, &self.reports())
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub report: serde_json::Value,
    pub dir: PathBuf,
}

impl Run {
    pub fn new(out: Output, dir: &Path) -> Run {
        Run {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            ..Run::of(out.status.code().unwrap_or(-1), dir)
        }
    }

    /// A run whose output the test did not keep: its exit code and the
    /// report it left in `dir`.
    pub fn of(code: i32, dir: &Path) -> Run {
        let report = std::fs::read_to_string(dir.join("report.json"))
            .map(|t| serde_json::from_str(&t).expect("report.json is JSON"))
            .unwrap_or(serde_json::Value::Null);
        let run = Run {
            code,
            stdout: String::new(),
            stderr: String::new(),
            report,
            dir: dir.to_path_buf(),
        };
        if !run.report.is_null() {
            check_report_schema(&run.report);
        }
        run
    }

    /// The report entry of a step, wherever it ran.
    pub fn step(&self, id: &str) -> &serde_json::Value {
        let r = &self.report;
        let phases = r["phases"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|p| p["steps"].as_array().into_iter().flatten());
        let branches = r["branches"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|b| b["steps"].as_array().into_iter().flatten());
        let fin = r["finally"].as_array().into_iter().flatten();
        phases
            .chain(branches)
            .chain(fin)
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| {
                panic!(
                    "no step `{id}` in the report:\n{}",
                    serde_json::to_string_pretty(r).unwrap()
                )
            })
    }

    pub fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each event line is JSON"))
            .collect()
    }

    /// The lines a step logged (`step_output` on the `log` stream), of
    /// `step` or of every step.
    pub fn log_lines(&self, step: Option<&str>) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| e["event"] == "step_output" && e["stream"] == "log")
            .filter(|e| step.is_none_or(|s| e["step"] == s))
            .map(|e| e["line"].as_str().unwrap().to_string())
            .collect()
    }
}

/// `step` (a step of a report) failed, with `text` in its error.
pub fn assert_failed_with(step: &serde_json::Value, text: &str) {
    assert_eq!(step["status"], "failed", "{step}");
    assert!(
        step["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains(text),
        "{step}"
    );
}

/// Every report.json must be valid against the committed schema.
pub fn check_report_schema(report: &serde_json::Value) {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("schemas/report.v1.schema.json").unwrap())
            .unwrap();
    let v = jsonschema::draft202012::new(&schema).unwrap();
    let errors: Vec<String> = v
        .iter_errors(report)
        .map(|e| format!("{} at {}", e, e.instance_path().as_str()))
        .collect();
    assert!(
        errors.is_empty(),
        "report.json violates its schema: {errors:#?}"
    );
}

/// What a person at a terminal does, in [`on_a_terminal`].
pub enum AtTheTerminal<'a> {
    /// Once `events` (an events.jsonl) says the step `step` started, the
    /// terminal goes away: an SSH session that drops at 2 a.m. `ignore`:
    /// the command starts with SIGHUP ignored, as under `nohup`.
    HangsUp {
        events: &'a Path,
        step: &'a str,
        ignore: bool,
    },
    /// Once the screen shows `prompt`, `keys` are typed (`\x03` for
    /// Ctrl-C, `\r` for Enter; escapes Python reads).
    Types { prompt: &'a str, keys: &'a str },
}

/// Runs `cmd` (its program, arguments and environment) on a terminal of
/// its own, a pty made by python3, does `what`, and returns the exit code;
/// `-1` when the command had not ended 20 s later (it is then killed).
pub fn on_a_terminal(cmd: &Command, what: AtTheTerminal) -> i32 {
    const PTY: &str = r#"
import os, pty, select, signal, sys, time
events, step, ignore, prompt, keys = sys.argv[1:6]
argv = sys.argv[6:]
pid, fd = pty.fork()
if pid == 0:
    if ignore == "1":
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    os.execv(argv[0], argv)
screen = b""
def read():
    global screen
    if select.select([fd], [], [], 0.05)[0]:
        try:
            screen += os.read(fd, 65536)
        except OSError:
            pass
deadline = time.time() + 20
while time.time() < deadline:
    read()
    if prompt and prompt.encode() in screen:
        break
    if not prompt:
        try:
            text = open(events).read()
        except OSError:
            text = ""
        if '"event":"step_started"' in text and '"step":"%s"' % step in text:
            break
time.sleep(0.3)
if prompt:
    os.write(fd, keys.encode().decode("unicode_escape").encode())
else:
    os.close(fd)
end = time.time() + 20
while time.time() < end:
    if prompt:
        read()
    else:
        time.sleep(0.05)
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        print(os.waitstatus_to_exitcode(status))
        sys.exit(0)
os.kill(pid, signal.SIGKILL)
print(-1)
"#;
    let (events, step, ignore, prompt, keys) = match what {
        AtTheTerminal::HangsUp {
            events,
            step,
            ignore,
        } => (events.to_path_buf(), step, ignore, "", ""),
        AtTheTerminal::Types { prompt, keys } => (PathBuf::new(), "", false, prompt, keys),
    };
    let mut py = Command::new("python3");
    py.args(["-c", PTY])
        .arg(events)
        .arg(step)
        .arg(if ignore { "1" } else { "0" })
        .arg(prompt)
        .arg(keys)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => py.env(k, v),
            None => py.env_remove(k),
        };
    }
    let out = py.output().expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().unwrap_or_else(|_| {
        panic!(
            "no exit code from the pty helper: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A cluster of its own where the role `rotating`, owner of the database
/// `rot`, logs in over TCP with `password` (everyone else is trusted as
/// before), and its URL, without the password.
pub fn password_cluster(password: &str) -> (Ephemeral, String) {
    let pg = Ephemeral::start().unwrap();
    psql(
        &pg.url("postgres"),
        &format!("CREATE ROLE rotating LOGIN PASSWORD '{password}' CREATEDB"),
    );
    psql(&pg.url("postgres"), "CREATE DATABASE rot OWNER rotating");
    std::fs::write(
        pg.dir().join("data/pg_hba.conf"),
        "local all all trust\nhost all rotating 127.0.0.1/32 scram-sha-256\nhost all all 127.0.0.1/32 trust\n",
    )
    .unwrap();
    psql(&pg.url("postgres"), "SELECT pg_reload_conf()");
    let url = pg.url("rot").replacen("runbook@", "rotating@", 1);
    (pg, url)
}
