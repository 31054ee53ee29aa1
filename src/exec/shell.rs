//! `shell` steps: a command run through duct, its output streamed line by
//! line, its whole process group killed on timeout or interrupt.
//!
//! The child gets the run's database in the libpq variables (PGHOST, PGPORT,
//! PGDATABASE, PGUSER, PGSSLMODE and the rest of the TLS settings, and
//! PGPASSFILE: a private password file, mode 0600, removed when the run
//! ends), so `psql` in a step reaches the same database in the same TLS
//! mode, and the password is in no command line and no environment.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::{Attempt, Done, Fail, Run, cancelled_error, child, timeout_error};
use crate::events::ErrorKind;
use crate::events::{ErrorInfo, Event, StepStatus, now};
use crate::plan::{PlanShell, PlanStep};

pub(crate) async fn run(
    r: &mut Run<'_>,
    s: &PlanStep,
    sh: &PlanShell,
    timeout: Option<Duration>,
) -> Attempt {
    let PlanShell {
        script,
        argv,
        env,
        cwd,
        expect_exit,
    } = sh;
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
            class: ErrorKind::Io,
            message: format!("working directory `{}` does not exist", dir.display()),
            ..ErrorInfo::default()
        }));
    }
    let mut child_env: Vec<(String, String)> = r.child_env().await.map_err(fail)?;
    for (k, t) in env {
        child_env.push((k.clone(), r.render(t).map_err(fail)?.0));
    }
    let step = s.id.clone();
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let ran = child::run(r, &words, &child_env, &dir, deadline, |r, stream, line| {
        r.bus.emit(Event::StepOutput {
            at: now(),
            step: step.clone(),
            stream: stream.into(),
            line: line.to_string(),
        });
    })
    .await
    .map_err(fail)?;
    let (out, err, ended) = (ran.stdout, ran.stderr, ran.ended);
    let code = ran.code;
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
    let failure = verdict(ended, code, expect_exit, timeout);
    match failure {
        None => Ok(done),
        Some((status, error)) => Err(Fail {
            status,
            error,
            retry_class: None,
            partial: done,
            unchanged: None,
            judged: false,
        }),
    }
}

/// How a command's ending reads: stopped by its timeout or an interrupt,
/// an exit code it was not expected to give, or killed by a signal; `None`
/// when it ended as expected.
fn verdict(
    ended: Option<StepStatus>,
    code: Option<i32>,
    expect_exit: &[i32],
    timeout: Option<Duration>,
) -> Option<(StepStatus, ErrorInfo)> {
    match ended {
        Some(StepStatus::TimedOut) => Some((StepStatus::TimedOut, timeout_error(timeout))),
        Some(_) => Some((StepStatus::Cancelled, cancelled_error())),
        None => match code {
            Some(c) if expect_exit.contains(&c) => None,
            Some(c) => Some((
                StepStatus::Failed,
                ErrorInfo {
                    class: ErrorKind::Exit,
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
                    class: ErrorKind::Exit,
                    message: "killed by a signal".into(),
                    ..ErrorInfo::default()
                },
            )),
        },
    }
}
