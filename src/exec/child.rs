//! Child processes (shell commands, pg_dump, pg_restore): started in a
//! process group of their own, their output read line by line as it comes,
//! the whole group killed on a deadline or an interrupt.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Run;
use crate::events::ErrorKind;
use crate::events::{ErrorInfo, StepStatus};

/// Lines of each stream kept for the report.
const TAIL_LINES: usize = 20;
/// Bytes of stdout kept for later templates (`steps.<id>.stdout`).
const OUTPUT_BYTES: usize = 64 * 1024;

pub(crate) struct Stream {
    tail: VecDeque<String>,
    pub(crate) all: String,
}

impl Stream {
    fn new() -> Self {
        Stream {
            tail: VecDeque::new(),
            all: String::new(),
        }
    }

    fn push(&mut self, line: &str) {
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_string());
        if self.all.len() < OUTPUT_BYTES {
            self.all.push_str(line);
            self.all.push('\n');
        }
    }

    pub(crate) fn tail(&self) -> Option<String> {
        (!self.tail.is_empty()).then(|| self.tail.iter().cloned().collect::<Vec<_>>().join("\n"))
    }
}

fn pump(
    reader: impl Read + Send + 'static,
    stream: &'static str,
    tx: mpsc::UnboundedSender<(&'static str, String)>,
) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\n', '\r'])
                        .to_string();
                    if tx.send((stream, line)).is_err() {
                        break;
                    }
                }
            }
        }
    });
}

/// SIGTERM to the group, then SIGKILL 200 ms later; the runtime goes on
/// meanwhile (no blocking sleep on it).
async fn kill_group(pid: u32) {
    let pgid = Pid::from_raw(pid as i32);
    let _ = killpg(pgid, Signal::SIGTERM);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = killpg(pgid, Signal::SIGKILL);
}

/// How a child ended.
pub(crate) struct Ran {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// Set when runbook ended it: `TimedOut` or `Cancelled`.
    pub ended: Option<StepStatus>,
    pub stdout: Stream,
    pub stderr: Stream,
}

/// Run `argv` in `dir` with `env` added, passing each output line to
/// `on_line` as it arrives, until it exits, `deadline` passes or the run is
/// interrupted. Fails only when the program cannot be started.
pub(crate) async fn run(
    r: &mut Run<'_>,
    argv: &[String],
    env: &[(String, String)],
    dir: &Path,
    deadline: Option<Instant>,
    mut on_line: impl FnMut(&mut Run<'_>, &'static str, &str),
) -> Result<Ran, ErrorInfo> {
    let stop = r.stop_signal();
    run_until(argv, env, dir, deadline, stop, |stream, line| {
        on_line(r, stream, line);
    })
    .await
}

/// [`run`], stopped by `stop` instead of the run's interrupt, for callers
/// that hold parts of a run rather than the run.
pub(crate) async fn run_until(
    argv: &[String],
    env: &[(String, String)],
    dir: &Path,
    deadline: Option<Instant>,
    stop: impl std::future::Future<Output = ()>,
    mut on_line: impl FnMut(&'static str, &str),
) -> Result<Ran, ErrorInfo> {
    let mut expr = duct::cmd(&argv[0], &argv[1..])
        .dir(dir)
        .stdin_null()
        .unchecked();
    // (duct applies the innermost setting last: a variable removed here
    // would stay removed, so only those the run does not set itself.)
    for k in crate::pg::db::CHILD_ENV_UNSET {
        if !env.iter().any(|(e, _)| e == k) {
            expr = expr.env_remove(k);
        }
    }
    for (k, v) in env {
        expr = expr.env(k, v);
    }
    let (out_r, out_w) = std::io::pipe().map_err(|e| io_error(&e))?;
    let (err_r, err_w) = std::io::pipe().map_err(|e| io_error(&e))?;
    let expr = expr
        .stdout_file(out_w)
        .stderr_file(err_w)
        .before_spawn(|cmd| {
            cmd.process_group(0);
            Ok(())
        });
    let handle = match expr.start() {
        Ok(h) => Arc::new(h),
        Err(e) => {
            return Err(ErrorInfo {
                class: ErrorKind::Io,
                message: format!("failed to start `{}`: {e}", argv[0]),
                ..ErrorInfo::default()
            });
        }
    };
    // `expr` still holds the write ends; drop it so the readers see EOF.
    drop(expr);
    let pid = handle.pids().first().copied();
    let (tx, mut rx) = mpsc::unbounded_channel();
    pump(out_r, "stdout", tx.clone());
    pump(err_r, "stderr", tx);
    let waiter = {
        let h = Arc::clone(&handle);
        tokio::task::spawn_blocking(move || h.wait().map(|o| o.status))
    };
    tokio::pin!(waiter);
    let deadline = async {
        match deadline {
            Some(t) => tokio::time::sleep_until(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    tokio::pin!(stop);

    let mut out = Stream::new();
    let mut err = Stream::new();
    let mut ended = None;
    let mut status = None;
    let mut lines_open = true;
    while status.is_none() || lines_open {
        tokio::select! {
            line = rx.recv(), if lines_open => match line {
                Some((stream, line)) => {
                    if stream == "stdout" { out.push(&line) } else { err.push(&line) }
                    on_line(stream, &line);
                }
                None => lines_open = false,
            },
            w = &mut waiter, if status.is_none() => {
                status = Some(w.ok().and_then(Result::ok));
            }
            () = &mut deadline, if ended.is_none() && status.is_none() => {
                if let Some(pid) = pid { kill_group(pid).await }
                ended = Some(StepStatus::TimedOut);
            }
            () = &mut stop, if ended.is_none() && status.is_none() => {
                if let Some(pid) = pid { kill_group(pid).await }
                ended = Some(StepStatus::Cancelled);
            }
        }
    }
    // Children that kept the pipes open are gone with the group.
    if let Some(pid) = pid {
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    Ok(Ran {
        code: status.flatten().and_then(|s| s.code()),
        ended,
        stdout: out,
        stderr: err,
    })
}

pub(crate) fn io_error(e: &std::io::Error) -> ErrorInfo {
    ErrorInfo {
        class: ErrorKind::Io,
        message: e.to_string(),
        ..ErrorInfo::default()
    }
}

/// `pg::tools::find` off the runtime's thread: it runs `NAME --version`.
pub(crate) async fn find_tool(
    name: &str,
    server_version: &str,
    bin_dir: Option<&Path>,
) -> Result<crate::pg::tools::Tool, crate::pg::tools::ToolError> {
    let (name, version) = (name.to_string(), server_version.to_string());
    let bin = bin_dir.map(Path::to_path_buf);
    blocking(move || crate::pg::tools::find(&name, &version, bin.as_deref())).await
}

/// Run blocking work (a file read, a short child process) on tokio's
/// blocking pool, so the runtime's one thread keeps serving the session
/// and signals. A panic in `work` is resumed here.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
