//! The fleet report: one runbook over many targets, as `report.json`
//! (`fleet-report.v1`), `report.md`, JUnit (a testsuite per target) and the
//! GitHub step summary; and `runbook report merge`, which joins the
//! reports of a run's shards into one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::exit;

pub const FLEET_REPORT_SCHEMA: &str = include_str!("../../schemas/fleet-report.v1.schema.json");

/// The value of `schema` in a fleet report.
pub const SCHEMA_ID: &str = "fleet-report.v1";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FleetReport {
    pub schema: String,
    pub fleet: Fleet,
    pub counts: Counts,
    pub targets: Vec<TargetReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Fleet {
    pub id: String,
    pub runbook: RunbookId,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_ms: Option<u64>,
    pub status: FleetStatus,
    /// The exit code `runbook` gave (or gives, once finished).
    pub exit_code: Option<u8>,
    /// `K/N` when this is one shard of a larger run; the shards merged,
    /// when merged.
    pub shards: Vec<String>,
    pub rollout: RolloutUsed,
    /// Why targets were left unstarted, when they were.
    pub stopped: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunbookId {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

/// The rollout settings the run used.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RolloutUsed {
    pub parallel: usize,
    pub canary: usize,
    pub waves: usize,
    pub max_failures: usize,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FleetStatus {
    Running,
    /// Every target succeeded.
    Succeeded,
    /// At least one target failed, or one was left unstarted.
    Failed,
    Interrupted,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counts {
    pub total: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub not_started: usize,
    pub pending: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TargetReport {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    /// Where it points, without a password.
    pub connection: String,
    /// The wave it belongs to, from 1 (the canary, when there is one).
    pub wave: usize,
    pub state: TargetState,
    /// The run's status (`succeeded`, `rolled_back`, `preflight_failed`…),
    /// once it ran.
    pub status: Option<String>,
    pub exit_code: Option<u8>,
    pub run_id: Option<String>,
    pub started_at: Option<String>,
    pub duration_ms: Option<u64>,
    pub failed_step: Option<String>,
    /// The run's verdict, or why it did not start.
    pub reason: Option<String>,
    /// The target's report directory, relative to this report's.
    pub report: Option<String>,
}

/// Where a target stands. Only `succeeded` is success: a target that did
/// not run is never counted as one that did.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    /// Not yet reached (the report of a run still going).
    Pending,
    Running,
    Succeeded,
    Failed,
    /// A stop rule, an interrupt or a refused wave kept it from starting.
    NotStarted,
}

impl TargetState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::NotStarted => "not_started",
        }
    }
}

/// Why targets were left unstarted; its exit code joins the targets'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// A target failed, past what `max_failures` (or the canary) allows:
    /// the failed targets carry the code.
    Failures,
    Interrupted,
    NotApproved,
}

impl StopCause {
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Failures => exit::OK,
            Self::Interrupted => exit::INTERRUPTED,
            Self::NotApproved => exit::NOT_APPROVED,
        }
    }
}

impl FleetReport {
    /// Counts, and the status and exit code once nothing is running.
    pub fn settle(&mut self, stop: Option<StopCause>, finished: bool) {
        let n = |s: TargetState| self.targets.iter().filter(|t| t.state == s).count();
        self.counts = Counts {
            total: self.targets.len(),
            succeeded: n(TargetState::Succeeded),
            failed: n(TargetState::Failed),
            not_started: n(TargetState::NotStarted),
            pending: n(TargetState::Pending) + n(TargetState::Running),
        };
        if !finished {
            return;
        }
        let mut codes: Vec<u8> = self.targets.iter().filter_map(|t| t.exit_code).collect();
        codes.extend(stop.map(StopCause::exit_code));
        let code = exit::worst(codes);
        self.fleet.exit_code = Some(code);
        self.fleet.status = if stop == Some(StopCause::Interrupted) {
            FleetStatus::Interrupted
        } else if code == exit::OK && self.counts.succeeded == self.counts.total {
            FleetStatus::Succeeded
        } else {
            FleetStatus::Failed
        };
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("reports serialize");
        s.push('\n');
        s
    }

    /// The names of the targets that did not succeed: what `--only-failed` retries.
    pub fn not_succeeded(&self) -> Vec<String> {
        self.targets
            .iter()
            .filter(|t| t.state != TargetState::Succeeded)
            .map(|t| t.name.clone())
            .collect()
    }
}

/// Why a fleet report could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("failed to read `{path}`: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("`{path}` is not a fleet report: {why}")]
    NotFleet { path: PathBuf, why: String },
}

/// Read a fleet report: `report.json` in `path`, or the file itself.
pub fn read(path: &Path) -> Result<FleetReport, ReadError> {
    let file = if path.is_dir() {
        path.join("report.json")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).map_err(|error| ReadError::Io {
        path: file.clone(),
        error,
    })?;
    let not = |why: String| ReadError::NotFleet {
        path: file.clone(),
        why,
    };
    let value: Value = serde_json::from_str(&text).map_err(|e| not(e.to_string()))?;
    if value["schema"] != SCHEMA_ID {
        return Err(not(match value["schema"].as_str() {
            Some(s) => format!("its schema is `{s}`, not `{SCHEMA_ID}`"),
            None if value.get("run").is_some() => {
                "it is one run's report; give the fleet's report directory".to_string()
            }
            None => format!("it has no `schema: {SCHEMA_ID}`"),
        }));
    }
    serde_json::from_value(value).map_err(|e| not(e.to_string()))
}

/// Why reports could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("`{a}` and `{b}` are reports of different runbooks ({what})")]
    Different { a: String, b: String, what: String },
    #[error("target `{name}` is in both `{a}` and `{b}`")]
    Twice { name: String, a: String, b: String },
    #[error("`{dir}` is still running: its report is not final")]
    Unfinished { dir: String },
}

impl MergeError {
    pub fn hint(&self) -> &'static str {
        match self {
            Self::Read(_) => "give the report directories of `runbook exec --targets` runs",
            Self::Different { .. } => {
                "merge the shards of one run: the same runbook text, each with its own --shard K/N"
            }
            Self::Twice { .. } => {
                "each target belongs to one shard; were two shards given the same --shard?"
            }
            Self::Unfinished { .. } => {
                "wait for that shard to end, or look at its report on its own"
            }
        }
    }
}

/// Join the reports of a run's shards: their targets, in the order given,
/// with report paths made relative to `out`.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<FleetReport, MergeError> {
    let mut merged: Option<FleetReport> = None;
    let mut from: Vec<(String, String)> = Vec::new();
    for dir in dirs {
        let mut r = read(dir)?;
        let here = dir.display().to_string();
        if r.fleet.exit_code.is_none() {
            return Err(MergeError::Unfinished { dir: here });
        }
        let base = if dir.is_dir() {
            dir.clone()
        } else {
            dir.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        for t in &mut r.targets {
            if let Some(p) = &t.report {
                t.report = Some(crate::fsutil::relative(&base.join(p), out));
            }
        }
        let Some(m) = merged.as_mut() else {
            from.extend(r.targets.iter().map(|t| (t.name.clone(), here.clone())));
            merged = Some(r);
            continue;
        };
        if m.fleet.runbook != r.fleet.runbook {
            return Err(MergeError::Different {
                a: from.first().map(|f| f.1.clone()).unwrap_or_default(),
                b: here,
                what: format!(
                    "{} {} sha256 {} and {} {} sha256 {}",
                    m.fleet.runbook.name,
                    m.fleet.runbook.version,
                    short(&m.fleet.runbook.sha256),
                    r.fleet.runbook.name,
                    r.fleet.runbook.version,
                    short(&r.fleet.runbook.sha256)
                ),
            });
        }
        for t in &r.targets {
            if let Some((_, a)) = from.iter().find(|(n, _)| *n == t.name) {
                return Err(MergeError::Twice {
                    name: t.name.clone(),
                    a: a.clone(),
                    b: here,
                });
            }
            from.push((t.name.clone(), here.clone()));
        }
        m.targets.extend(r.targets);
        m.fleet.shards.extend(r.fleet.shards);
        if m.fleet.started_at > r.fleet.started_at {
            m.fleet.started_at = r.fleet.started_at;
        }
        if r.fleet.finished_at > m.fleet.finished_at {
            m.fleet.finished_at = r.fleet.finished_at;
        }
        m.fleet.duration_ms = m.fleet.duration_ms.max(r.fleet.duration_ms);
        m.fleet.stopped = match (m.fleet.stopped.take(), r.fleet.stopped) {
            (Some(a), Some(b)) if a != b => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
        if r.fleet.status == FleetStatus::Interrupted {
            m.fleet.status = FleetStatus::Interrupted;
        }
        let code = exit::worst([
            m.fleet.exit_code.unwrap_or(0),
            r.fleet.exit_code.unwrap_or(0),
        ]);
        m.fleet.exit_code = Some(code);
    }
    let mut m = merged.ok_or_else(|| {
        MergeError::Read(ReadError::NotFleet {
            path: PathBuf::new(),
            why: "no report given".into(),
        })
    })?;
    let interrupted = m.fleet.status == FleetStatus::Interrupted;
    let code = m.fleet.exit_code;
    m.settle(None, true);
    // The shards' own codes include their stop causes (an interrupt, a
    // refused wave), which the targets alone do not show.
    m.fleet.exit_code = Some(exit::worst(code.into_iter().chain(m.fleet.exit_code)));
    if interrupted {
        m.fleet.status = FleetStatus::Interrupted;
    } else if m.fleet.exit_code != Some(exit::OK) {
        m.fleet.status = FleetStatus::Failed;
    }
    Ok(m)
}

fn short(s: &str) -> &str {
    s.get(..12).unwrap_or(s)
}

fn duration_text(ms: Option<u64>) -> String {
    match ms {
        Some(ms) if ms >= 60_000 => format!("{}m {:02}s", ms / 60_000, (ms % 60_000) / 1000),
        Some(ms) => format!("{:.1} s", ms as f64 / 1000.0),
        None => "—".to_string(),
    }
}

/// Markdown text on one line, at most `max` characters, pipes escaped.
fn cell(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or("");
    let line = if line.chars().count() > max {
        format!("{}…", line.chars().take(max).collect::<String>())
    } else {
        line.to_string()
    };
    line.replace('|', "\\|")
}

/// report.md: the verdict, the counts and a row per target.
pub fn markdown(r: &FleetReport) -> String {
    use std::fmt::Write;
    let f = &r.fleet;
    let mut s = String::new();
    let verdict = match (f.status, f.exit_code) {
        (FleetStatus::Running, _) => "RUNNING".to_string(),
        (FleetStatus::Succeeded, _) => "SUCCEEDED on every target".to_string(),
        (FleetStatus::Interrupted, c) => format!("INTERRUPTED (exit {})", c.unwrap_or(130)),
        (FleetStatus::Failed, c) => format!("FAILED (exit {})", c.unwrap_or(1)),
    };
    let _ = writeln!(
        s,
        "# Fleet: {} {}\n\n**{verdict}**\n",
        f.runbook.name, f.runbook.version
    );
    let c = &r.counts;
    let _ = writeln!(
        s,
        "{} target(s): {} succeeded, {} failed, {} not started{}.\n",
        c.total,
        c.succeeded,
        c.failed,
        c.not_started,
        if c.pending > 0 {
            format!(", {} pending or running", c.pending)
        } else {
            String::new()
        }
    );
    if let Some(why) = &f.stopped {
        let _ = writeln!(s, "Stopped: {why}.\n");
    }
    let _ = writeln!(
        s,
        "- fleet run: `{}`{}\n- started: {}; took {}\n- rollout: parallel {}, canary {}, {} wave(s), max failures {}\n",
        f.id,
        if f.shards.is_empty() {
            String::new()
        } else {
            format!(" (shards {})", f.shards.join(", "))
        },
        f.started_at,
        duration_text(f.duration_ms),
        f.rollout.parallel,
        f.rollout.canary,
        f.rollout.waves,
        f.rollout.max_failures,
    );
    let _ = writeln!(
        s,
        "| target | wave | state | status | duration | failed step | report |\n|---|---:|---|---|---:|---|---|"
    );
    for t in &r.targets {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            cell(&t.name, 100),
            t.wave,
            t.state.name(),
            t.status.as_deref().unwrap_or("—"),
            duration_text(t.duration_ms),
            t.failed_step
                .as_deref()
                .map_or_else(|| "—".to_string(), |st| format!("`{}`", cell(st, 100))),
            t.report
                .as_deref()
                .map_or_else(|| "—".to_string(), |p| format!("[report]({p}/report.md)")),
        );
    }
    let why: Vec<&TargetReport> = r
        .targets
        .iter()
        .filter(|t| t.state != TargetState::Succeeded && t.reason.is_some())
        .collect();
    if !why.is_empty() {
        let _ = writeln!(s, "\n## Why\n");
        for t in why {
            let _ = writeln!(
                s,
                "- **{}** ({}): {}",
                t.name,
                t.status.as_deref().unwrap_or(t.state.name()),
                cell(t.reason.as_deref().unwrap_or_default(), 600)
            );
        }
    }
    s
}

/// JUnit: a testsuite per target, a testcase per step its report lists
/// (or one that says why the target did not run).
pub fn junit(r: &FleetReport, dir: &Path) -> String {
    use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};
    let mut out = quick_junit::Report::new(format!(
        "runbook fleet {} {}",
        r.fleet.runbook.name, r.fleet.id
    ));
    for t in &r.targets {
        let mut suite = TestSuite::new(t.name.clone());
        let steps = t
            .report
            .as_ref()
            .and_then(|p| std::fs::read_to_string(dir.join(p).join("report.json")).ok())
            .and_then(|text| serde_json::from_str::<Value>(&text).ok());
        let class = format!("{}.{}", r.fleet.runbook.name, t.name);
        let fail = |message: &str| {
            let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
            st.set_message(message.to_string());
            st
        };
        for phase in steps
            .as_ref()
            .and_then(|v| v["phases"].as_array())
            .into_iter()
            .flatten()
        {
            for step in phase["steps"].as_array().into_iter().flatten() {
                let status = step["status"].as_str().unwrap_or("not_run");
                let st = match status {
                    "succeeded" => TestCaseStatus::success(),
                    "failed" | "timed_out" | "compensation_failed" | "cancelled" => {
                        fail(step["error"]["message"].as_str().unwrap_or(status))
                    }
                    other => {
                        let mut st = TestCaseStatus::skipped();
                        st.set_message(other.to_string());
                        st
                    }
                };
                let mut tc = TestCase::new(
                    format!(
                        "{}.{}",
                        phase["id"].as_str().unwrap_or_default(),
                        step["id"].as_str().unwrap_or_default()
                    ),
                    st,
                );
                tc.set_classname(class.clone());
                if let Some(ms) = step["duration_ms"].as_u64() {
                    tc.set_time(std::time::Duration::from_millis(ms));
                }
                suite.add_test_case(tc);
            }
        }
        // The run's own verdict, so a target that failed before any step
        // (unreachable, locked) or did not start is a failure, never a pass.
        let verdict = match t.state {
            TargetState::Succeeded => TestCaseStatus::success(),
            TargetState::Failed | TargetState::NotStarted => {
                fail(t.reason.as_deref().unwrap_or(t.state.name()))
            }
            TargetState::Pending | TargetState::Running => {
                let mut st = TestCaseStatus::skipped();
                st.set_message(t.state.name());
                st
            }
        };
        let mut tc = TestCase::new(format!("{} (whole run)", t.name), verdict);
        tc.set_classname(class.clone());
        if let Some(ms) = t.duration_ms {
            tc.set_time(std::time::Duration::from_millis(ms));
        }
        suite.add_test_case(tc);
        out.add_test_suite(suite);
    }
    out.to_string().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn target(name: &str, state: TargetState, code: Option<u8>) -> TargetReport {
        TargetReport {
            name: name.into(),
            labels: Default::default(),
            connection: "postgres://db/x".into(),
            wave: 1,
            state,
            status: code.map(|c| {
                if c == 0 {
                    "succeeded".into()
                } else {
                    "rolled_back".into()
                }
            }),
            exit_code: code,
            run_id: None,
            started_at: None,
            duration_ms: Some(1200),
            failed_step: (code.unwrap_or(0) != 0).then(|| "add_col".into()),
            reason: (state != TargetState::Succeeded)
                .then(|| "step `add_col` failed | badly".into()),
            report: Some(format!("targets/{name}")),
        }
    }

    pub(crate) fn fleet(targets: Vec<TargetReport>) -> FleetReport {
        FleetReport {
            schema: SCHEMA_ID.into(),
            fleet: Fleet {
                id: "F1".into(),
                runbook: RunbookId {
                    name: "rb".into(),
                    version: "1".into(),
                    sha256: "ab".repeat(32),
                },
                started_at: "2026-11-30T10:00:00Z".into(),
                finished_at: None,
                duration_ms: None,
                status: FleetStatus::Running,
                exit_code: None,
                shards: vec![],
                rollout: RolloutUsed {
                    parallel: 2,
                    canary: 0,
                    waves: 1,
                    max_failures: 0,
                },
                stopped: None,
            },
            counts: Counts::default(),
            targets,
        }
    }

    #[test]
    fn a_target_that_did_not_run_never_reads_as_success() {
        let mut r = fleet(vec![
            target("a", TargetState::Succeeded, Some(0)),
            target("b", TargetState::NotStarted, None),
        ]);
        r.settle(Some(StopCause::Failures), true);
        assert_eq!(r.fleet.status, FleetStatus::Failed);
        assert_eq!(r.counts.not_started, 1);
        r.settle(Some(StopCause::NotApproved), true);
        assert_eq!(r.fleet.exit_code, Some(exit::NOT_APPROVED));
        let mut r = fleet(vec![target("a", TargetState::Succeeded, Some(0))]);
        r.settle(None, true);
        assert_eq!(
            (r.fleet.status, r.fleet.exit_code),
            (FleetStatus::Succeeded, Some(0))
        );
    }

    #[test]
    fn the_fleet_exits_with_its_worst_target() {
        let mut r = fleet(vec![
            target("a", TargetState::Failed, Some(exit::ROLLED_BACK)),
            target("b", TargetState::Failed, Some(exit::ROLLBACK_FAILED)),
            target("c", TargetState::Failed, Some(exit::PREFLIGHT_FAILED)),
        ]);
        r.settle(Some(StopCause::Interrupted), true);
        assert_eq!(r.fleet.exit_code, Some(exit::ROLLBACK_FAILED));
        assert_eq!(r.fleet.status, FleetStatus::Interrupted);
    }

    #[test]
    fn markdown_has_a_row_per_target_and_says_why() {
        let mut r = fleet(vec![
            target("a", TargetState::Succeeded, Some(0)),
            target("b", TargetState::Failed, Some(exit::ROLLED_BACK)),
        ]);
        r.settle(None, true);
        let md = markdown(&r);
        assert!(md.contains("**FAILED (exit 2)**"), "{md}");
        assert!(
            md.contains(
                "| a | 1 | succeeded | succeeded | 1.2 s | — | [report](targets/a/report.md) |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| b | 1 | failed | rolled_back | 1.2 s | `add_col` |"),
            "{md}"
        );
        assert!(
            md.contains("- **b** (rolled_back): step `add_col` failed \\| badly"),
            "{md}"
        );
    }

    #[test]
    fn merge_joins_shards_refuses_overlap_and_keeps_the_worst_code() {
        let tmp = tempfile::tempdir().unwrap();
        let write = |name: &str, r: &FleetReport| {
            let d = tmp.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("report.json"), r.to_json()).unwrap();
            d
        };
        let mut one = fleet(vec![target("a", TargetState::Succeeded, Some(0))]);
        one.fleet.shards = vec!["1/2".into()];
        one.settle(None, true);
        let mut two = fleet(vec![target(
            "b",
            TargetState::Failed,
            Some(exit::VERIFY_FAILED),
        )]);
        two.fleet.shards = vec!["2/2".into()];
        two.settle(None, true);
        let (d1, d2) = (write("s1", &one), write("s2", &two));
        let out = tmp.path().join("merged");
        let m = merge(&[d1.clone(), d2.clone()], &out).unwrap();
        assert_eq!(m.targets.len(), 2);
        assert_eq!(m.fleet.shards, ["1/2", "2/2"]);
        assert_eq!(m.fleet.exit_code, Some(exit::VERIFY_FAILED));
        assert_eq!(m.targets[0].report.as_deref(), Some("../s1/targets/a"));
        let e = merge(&[d1.clone(), d1.clone()], &out).unwrap_err();
        assert!(e.to_string().contains("target `a` is in both"), "{e}");
        let mut other = one.clone();
        other.fleet.runbook.sha256 = "cd".repeat(32);
        other.targets[0].name = "z".into();
        let d3 = write("s3", &other);
        let e = merge(&[d1, d3], &out).unwrap_err();
        assert!(e.to_string().contains("different runbooks"), "{e}");
        let mut running = fleet(vec![]);
        running.fleet.exit_code = None;
        let d4 = write("s4", &running);
        assert!(matches!(
            merge(&[d4], &out),
            Err(MergeError::Unfinished { .. })
        ));
    }

    #[test]
    fn the_committed_schema_accepts_a_report() {
        let schema: Value = serde_json::from_str(FLEET_REPORT_SCHEMA).unwrap();
        let v = jsonschema::draft202012::new(&schema).unwrap();
        let mut r = fleet(vec![
            target("a", TargetState::Succeeded, Some(0)),
            target("b", TargetState::NotStarted, None),
        ]);
        r.settle(Some(StopCause::Failures), true);
        let value = serde_json::to_value(&r).unwrap();
        let errors: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
    }
}
