//! File sinks: `events.jsonl` (appended and flushed per event) and the
//! report files (`report.json`, `report.md`, JUnit, `$GITHUB_STEP_SUMMARY`),
//! rewritten atomically during the run so a killed run still leaves them.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Builder, junit, markdown};
use crate::events::{Event, Sink};

/// Appends each event as one JSON line, written and flushed as it happens.
pub struct EventLog {
    file: File,
}

impl EventLog {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(EventLog { file })
    }
}

impl Sink for EventLog {
    fn event(&mut self, e: &Event) {
        let mut line = serde_json::to_string(e).expect("events serialize");
        line.push('\n');
        // One write per line: a killed run leaves whole lines only.
        let _ = self.file.write_all(line.as_bytes());
        let _ = self.file.flush();
    }
}

/// Builds the report from events and writes it.
pub struct ReportFiles {
    builder: Builder,
    dir: PathBuf,
    junit: Option<PathBuf>,
    last_write: Option<Instant>,
}

/// How often the report is rewritten while the run goes on.
const CHECKPOINT: Duration = Duration::from_secs(1);

impl ReportFiles {
    pub fn new(builder: Builder, dir: &Path, junit: Option<PathBuf>) -> Self {
        ReportFiles {
            builder,
            dir: dir.to_path_buf(),
            junit,
            last_write: None,
        }
    }

    fn write(&mut self) {
        let r = self.builder.report();
        let _ = write_atomic(&self.dir.join("report.json"), r.to_json().as_bytes());
        let _ = write_atomic(&self.dir.join("report.md"), markdown::render(r).as_bytes());
        self.last_write = Some(Instant::now());
    }
}

/// Write via a temporary file and a rename, so readers never see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)
}

impl Sink for ReportFiles {
    fn event(&mut self, e: &Event) {
        self.builder.apply(e);
        let due = self.last_write.is_none_or(|t| t.elapsed() >= CHECKPOINT);
        let boundary = matches!(
            e,
            Event::RunStarted { .. } | Event::PhaseFinished { .. } | Event::RollbackStarted { .. }
        );
        if boundary || (due && matches!(e, Event::StepFinished { .. })) {
            self.write();
        }
    }

    fn finish(&mut self) {
        self.write();
        let r = self.builder.report();
        if let Some(path) = &self.junit {
            let _ = write_atomic(path, junit::render(r).as_bytes());
        }
        if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY")
            && let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(summary)
        {
            let _ = f.write_all(markdown::render(r).as_bytes());
        }
    }
}
