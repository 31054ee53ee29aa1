//! `shell` steps: a command run through duct, its output streamed line by
//! line, its whole process group killed on timeout or interrupt.
//!
//! The child gets the run's database in the libpq variables (PGHOST, PGPORT,
//! PGDATABASE, PGUSER, PGPASSWORD), so `psql` in a step reaches the same
//! database, and the password never appears on a command line.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{Attempt, Done, Fail, Run, cancelled_error, timeout_error};
use crate::events::{ErrorInfo, Event, StepStatus, now};
use crate::plan::{Action, PlanStep};

/// Lines of each stream kept for the report.
const TAIL_LINES: usize = 20;
/// Bytes of stdout kept for later templates (`steps.<id>.stdout`).
const OUTPUT_BYTES: usize = 64 * 1024;

struct Stream {
    tail: VecDeque<String>,
    all: String,
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

    fn tail(&self) -> Option<String> {
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

fn kill_group(pid: u32) {
    let pgid = Pid::from_raw(pid as i32);
    let _ = killpg(pgid, Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    let _ = killpg(pgid, Signal::SIGKILL);
}

pub(crate) async fn run(r: &mut Run<'_>, s: &PlanStep, timeout: Option<Duration>) -> Attempt {
    let Action::Shell {
        script,
        argv,
        env,
        cwd,
        expect_exit,
    } = &s.action
    else {
        unreachable!("shell::run is called for shell steps")
    };
    let fail = |e: ErrorInfo| Fail::new(StepStatus::Failed, e);
    let words: Vec<String> = match script {
        Some(t) => vec!["sh".into(), "-c".into(), r.render(t).map_err(fail)?.0],
        None => argv
            .iter()
            .map(|t| r.render(t).map(|(raw, _)| raw))
            .collect::<Result<_, _>>()
            .map_err(fail)?,
    };
    let dir = match cwd {
        Some(t) => r.base_dir.join(r.render(t).map_err(fail)?.0),
        None => r.base_dir.clone(),
    };
    if !Path::new(&dir).is_dir() {
        return Err(fail(ErrorInfo {
            class: "io".into(),
            message: format!("working directory `{}` does not exist", dir.display()),
            ..ErrorInfo::default()
        }));
    }
    let mut expr = duct::cmd(&words[0], &words[1..])
        .dir(&dir)
        .stdin_null()
        .unchecked();
    for (k, v) in &r.pg_env {
        expr = expr.env(k, v);
    }
    for (k, t) in env {
        expr = expr.env(k, r.render(t).map_err(fail)?.0);
    }
    let (out_r, out_w) = std::io::pipe().map_err(|e| fail(io_error(&e)))?;
    let (err_r, err_w) = std::io::pipe().map_err(|e| fail(io_error(&e)))?;
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
            return Err(fail(ErrorInfo {
                class: "io".into(),
                message: format!("failed to start `{}`: {e}", words[0]),
                ..ErrorInfo::default()
            }));
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
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let stop = r.stop_signal();
    tokio::pin!(stop);

    let mut out = Stream::new();
    let mut err = Stream::new();
    let mut ended: Option<Result<StepStatus, ErrorInfo>> = None;
    let mut status = None;
    let mut lines_open = true;
    while status.is_none() || lines_open {
        tokio::select! {
            line = rx.recv(), if lines_open => match line {
                Some((stream, line)) => {
                    if stream == "stdout" { out.push(&line) } else { err.push(&line) }
                    r.bus.emit(Event::StepOutput { at: now(), step: s.id.clone(), stream: stream.into(), line });
                }
                None => lines_open = false,
            },
            w = &mut waiter, if status.is_none() => {
                status = Some(w.ok().and_then(Result::ok));
            }
            () = &mut deadline, if ended.is_none() && status.is_none() => {
                if let Some(pid) = pid { kill_group(pid) }
                ended = Some(Ok(StepStatus::TimedOut));
            }
            () = &mut stop, if ended.is_none() && status.is_none() => {
                if let Some(pid) = pid { kill_group(pid) }
                ended = Some(Ok(StepStatus::Cancelled));
            }
        }
    }
    // Children that kept the pipes open are gone with the group.
    if let Some(pid) = pid {
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }

    let code = status.flatten().and_then(|s| s.code());
    let mut done = Done {
        exit_code: code,
        stdout_tail: out.tail(),
        stderr_tail: err.tail(),
        ..Done::default()
    };
    done.output
        .insert("exit_code".into(), code.map_or(Value::Null, Value::from));
    done.output.insert(
        "stdout".into(),
        Value::String(out.all.trim_end().to_string()),
    );
    done.output.insert(
        "stderr".into(),
        Value::String(err.all.trim_end().to_string()),
    );
    let failure = match ended {
        Some(Ok(StepStatus::TimedOut)) => Some((StepStatus::TimedOut, timeout_error(timeout))),
        Some(_) => Some((StepStatus::Cancelled, cancelled_error())),
        None => match code {
            Some(c) if expect_exit.contains(&c) => None,
            Some(c) => Some((
                StepStatus::Failed,
                ErrorInfo {
                    class: "exit".into(),
                    message: format!(
                        "exited with code {c}, expected {}",
                        expect_exit
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ),
                    ..ErrorInfo::default()
                },
            )),
            None => Some((
                StepStatus::Failed,
                ErrorInfo {
                    class: "exit".into(),
                    message: "killed by a signal".into(),
                    ..ErrorInfo::default()
                },
            )),
        },
    };
    match failure {
        None => Ok(done),
        Some((status, error)) => Err(Fail {
            status,
            error,
            retry_class: None,
            partial: done,
        }),
    }
}

fn io_error(e: &std::io::Error) -> ErrorInfo {
    ErrorInfo {
        class: "io".into(),
        message: e.to_string(),
        ..ErrorInfo::default()
    }
}
