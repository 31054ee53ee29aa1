//! File sinks: `events.jsonl` (appended and flushed per event) and the
//! report files (`report.json`, `report.md`, `report.html`, JUnit, `$GITHUB_STEP_SUMMARY`),
//! rewritten atomically during the run so a killed run still leaves them.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::{Builder, html, junit, markdown};
use crate::events::{Event, Sink};

/// Appends each event as one JSON line, written and flushed as it happens.
pub struct EventLog {
    file: File,
    failures: WriteFailures,
}

impl EventLog {
    pub fn create(path: &Path, failures: WriteFailures) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(EventLog { file, failures })
    }
}

impl Sink for EventLog {
    fn event(&mut self, e: &Event) {
        let mut line = serde_json::to_string(e).expect("events serialize");
        line.push('\n');
        // One write per line: a killed run leaves whole lines only.
        if let Err(err) = self
            .file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
        {
            self.failures.note(&format!("events.jsonl: {err}"));
        }
    }
}

/// The first failure to write a report file or the event log, shared by
/// the sinks and read by the command once the run is over: a run whose
/// evidence was not written must not look like one whose evidence was.
#[derive(Debug, Clone, Default)]
pub struct WriteFailures(Arc<Mutex<Option<String>>>);

impl WriteFailures {
    pub fn note(&self, what: &str) {
        let mut first = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(what.to_string());
        }
    }

    /// The first failure, if any.
    pub fn first(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Builds the report from events and writes it: at the run's boundaries,
/// and from a writer thread at most once a second while anything changed,
/// so a long step or a killed run still leaves a current report.
pub struct ReportFiles {
    shared: Arc<Shared>,
    writer: Option<std::thread::JoinHandle<()>>,
    junit: Option<PathBuf>,
    /// Append report.md to `$GITHUB_STEP_SUMMARY` at the end (not for a
    /// fleet's targets: the fleet writes one summary of them all).
    step_summary: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    dir: PathBuf,
    failures: WriteFailures,
}

struct State {
    builder: Builder,
    dirty: bool,
    done: bool,
}

/// How often the report is rewritten while the run goes on.
const CHECKPOINT: Duration = Duration::from_secs(1);

impl Shared {
    /// Both reports; a failure keeps the last good file (the write goes to
    /// a temporary file first) and is noted.
    fn write(&self, builder: &Builder) {
        let r = builder.report();
        let value = serde_json::to_value(r).unwrap_or_default();
        for (name, bytes) in [
            ("report.json", r.to_json().into_bytes()),
            ("report.md", markdown::render(r).into_bytes()),
            ("report.html", html::render(&value).into_bytes()),
        ] {
            if let Err(e) = crate::fsutil::write_atomic(&self.dir.join(name), &bytes) {
                self.failures.note(&format!("{name}: {e}"));
            }
        }
    }
}

impl ReportFiles {
    pub fn new(
        builder: Builder,
        dir: &Path,
        junit: Option<PathBuf>,
        failures: WriteFailures,
    ) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                builder,
                dirty: false,
                done: false,
            }),
            wake: Condvar::new(),
            dir: dir.to_path_buf(),
            failures,
        });
        let writer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("runbook-report".into())
                .spawn(move || {
                    let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                    loop {
                        if state.done {
                            return;
                        }
                        if state.dirty {
                            state.dirty = false;
                            let snapshot = state.builder.clone();
                            drop(state);
                            shared.write(&snapshot);
                            // At most one write a second; `finish` ends the wait.
                            let until = std::time::Instant::now() + CHECKPOINT;
                            state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                            while !state.done {
                                let left =
                                    until.saturating_duration_since(std::time::Instant::now());
                                if left.is_zero() {
                                    break;
                                }
                                state = shared
                                    .wake
                                    .wait_timeout(state, left)
                                    .unwrap_or_else(|e| e.into_inner())
                                    .0;
                            }
                        } else {
                            state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                        }
                    }
                })
                .ok()
        };
        ReportFiles {
            shared,
            writer,
            junit,
            step_summary: true,
        }
    }

    /// Leave `$GITHUB_STEP_SUMMARY` alone.
    pub fn without_step_summary(mut self) -> Self {
        self.step_summary = false;
        self
    }
}

impl Sink for ReportFiles {
    fn event(&mut self, e: &Event) {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        state.builder.apply(e);
        if matches!(e, Event::RunStarted { .. }) {
            // The first report exists before the first step runs.
            self.shared.write(&state.builder);
        } else {
            state.dirty = true;
            self.shared.wake.notify_one();
        }
    }

    fn finish(&mut self) {
        {
            let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            state.done = true;
            self.shared.wake.notify_one();
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        let state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        self.shared.write(&state.builder);
        let r = state.builder.report();
        if let Some(path) = &self.junit
            && let Err(e) = crate::fsutil::write_atomic(path, junit::render(r).as_bytes())
        {
            self.shared
                .failures
                .note(&format!("{}: {e}", path.display()));
        }
        if self.step_summary
            && let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY")
            && let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(summary)
        {
            let _ = f.write_all(markdown::render(r).as_bytes());
        }
    }
}
