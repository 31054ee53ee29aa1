//! The terminal display: indicatif bars on a terminal, one timestamped line
//! per event otherwise (CI logs stay readable), or only the verdict (`-q`).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::markdown::duration;
use crate::events::{Event, Role, Sink, StepStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bars,
    Lines,
    Quiet,
}

pub struct Progress {
    mode: Mode,
    verbose: bool,
    multi: MultiProgress,
    overall: Option<ProgressBar>,
    current: Option<ProgressBar>,
    current_role: Role,
}

fn status_mark(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Succeeded => "✔",
        StepStatus::Failed | StepStatus::CompensationFailed => "✘",
        StepStatus::TimedOut => "⏱",
        StepStatus::Cancelled => "■",
        StepStatus::Skipped => "↷",
        StepStatus::RolledBack => "↩",
        StepStatus::Running | StepStatus::NotRun => "·",
    }
}

impl Progress {
    /// `multi` is shared with the approval prompt, which hides the bars while it asks.
    pub fn new(mode: Mode, verbose: bool, multi: MultiProgress) -> Self {
        // Bars drawn where there is no terminal would be dropped, and every
        // line with them: lines it is (`--progress always` into a pipe).
        let mode = if mode == Mode::Bars && !std::io::stderr().is_terminal() {
            Mode::Lines
        } else {
            mode
        };
        if mode != Mode::Bars {
            multi.set_draw_target(ProgressDrawTarget::hidden());
        }
        Progress {
            mode,
            verbose,
            multi,
            overall: None,
            current: None,
            current_role: Role::Main,
        }
    }

    fn line(&self, at: &str, text: &str) {
        match self.mode {
            Mode::Bars => {
                let _ = self.multi.println(text);
            }
            Mode::Lines => crate::say!("{at} {text}"),
            Mode::Quiet => {}
        }
    }

    /// The one-line summary of an event, or `None` for events not shown.
    // Long by design: one arm per event kind, each a line of text.
    fn describe(&self, e: &Event) -> Option<String> {
        Some(match e {
            Event::RunStarted {
                run_id,
                runbook,
                version,
                target,
                ..
            } => format!(
                "run {run_id}: {runbook} {version} on {}@{}:{}/{}{}",
                target.user,
                target.host,
                target.port,
                target.database,
                target
                    .server_version
                    .as_deref()
                    .map_or(String::new(), |v| format!(" (PostgreSQL {v})"))
            ),
            Event::PhaseStarted { phase, kind, .. } => format!("phase {phase} [{kind}] started"),
            Event::PhaseSkipped { phase, reason, .. } => {
                format!("phase {phase} skipped ({reason})")
            }
            Event::ApprovalGiven {
                phase, approval, ..
            } => {
                format!(
                    "phase {phase} approved by {} ({})",
                    approval.user, approval.method
                )
            }
            Event::ApprovalRefused { phase, reason, .. } => {
                format!("phase {phase} NOT APPROVED: {reason}")
            }
            Event::AbortTriggered {
                trigger,
                step,
                message,
                ..
            } => format!(
                "ABORT: abort_when `{trigger}` fired{}: {message}",
                step.as_ref()
                    .map_or(String::new(), |s| format!(" at step {s}"))
            ),
            Event::PhaseFinished {
                phase,
                status,
                duration_ms,
                ..
            } => format!("phase {phase} {status} in {}", duration(Some(*duration_ms))),
            Event::CompensationRegistered { .. } => return None,
            Event::StepStarted {
                step,
                kind,
                role,
                for_step,
                attempt,
                action,
                ..
            } => {
                let who = match (role, for_step) {
                    (Role::Compensation, Some(f)) => format!("rollback step {step} (undoes {f})"),
                    (Role::PhaseBranch | Role::OnFailure, _) => {
                        format!("failure branch step {step}")
                    }
                    (Role::Finally, _) => format!("finally step {step}"),
                    _ => format!("step {step}"),
                };
                let again = if *attempt > 1 {
                    format!(", attempt {attempt}")
                } else {
                    String::new()
                };
                let mut s = format!("{who} ({kind}{again}) started");
                if self.verbose {
                    for l in action.lines() {
                        s.push_str("\n    ");
                        s.push_str(l);
                    }
                }
                s
            }
            Event::StepOutput {
                step, stream, line, ..
            } => format!("  {step} {stream} | {line}"),
            // The step's log line says the same.
            Event::RehearsalVerdict { .. } => return None,
            Event::StepProgress {
                step,
                done,
                total,
                unit,
                item,
                per_second,
                eta_ms,
                ..
            } => format!(
                "  {step} {done}{} {unit}{}{}",
                total.map_or(String::new(), |t| format!("/{t}")),
                rate_text(*per_second, *eta_ms, unit),
                item.as_deref().map_or(String::new(), |i| format!(" ({i})"))
            ),
            Event::StepRetry {
                step,
                attempt,
                error,
                wait_ms,
                ..
            } => format!(
                "step {step} attempt {attempt} failed ({}): {}; retrying in {}",
                error.class,
                error.message,
                duration(Some(*wait_ms))
            ),
            Event::StepSkipped { step, reason, .. } => format!(
                "{} step {step} skipped ({reason})",
                status_mark(StepStatus::Skipped)
            ),
            Event::StepFinished {
                step,
                status,
                duration_ms,
                error,
                rows_affected,
                ..
            } => {
                let rows = match rows_affected {
                    None => String::new(),
                    Some(1) => ", 1 row".to_string(),
                    Some(n) => format!(", {n} rows"),
                };
                let mut s = format!(
                    "{} step {step} {} in {}{rows}",
                    status_mark(*status),
                    status.name(),
                    duration(Some(*duration_ms))
                );
                if let Some(e) = error {
                    s.push_str(&format!("\n    {}", e.message));
                    if let Some(l) = &e.location {
                        s.push_str(&format!(" (at {l})"));
                    }
                    // The server's DETAIL says which row or key; its HINT, what to do.
                    for (label, text) in [("detail", &e.detail), ("hint", &e.hint)] {
                        if let Some(t) = text {
                            s.push_str(&format!("\n    {label}: {t}"));
                        }
                    }
                }
                s
            }
            Event::StepCompensated { step, status, .. } => {
                format!("{} step {step} {}", status_mark(*status), status.name())
            }
            Event::RollbackStarted { scope, reason, .. } => {
                format!("rollback ({scope}) started: {reason}")
            }
            Event::RollbackFinished {
                scope,
                clean,
                verification,
                ..
            } => {
                let checked = verification.as_ref().map_or_else(String::new, |v| {
                    let against = if v.against == "run_start" {
                        "before the run"
                    } else {
                        "before the phase"
                    };
                    match v.result.as_str() {
                        "equal" => format!("; schema verified equal to {against}"),
                        "differs" => format!(
                            "; schema DIFFERS from {against}: {} object(s)",
                            v.changes.len()
                        ),
                        _ => format!(
                            "; schema not verified: {}",
                            v.error.as_deref().unwrap_or("unknown")
                        ),
                    }
                });
                format!(
                    "rollback ({scope}) {}{checked}",
                    if *clean { "completed" } else { "FAILED" }
                )
            }
            Event::CompensationSkipped { step, reason, .. } => {
                format!("compensation of step {step} not run: {reason}")
            }
            Event::Warning { message, .. } => format!("warning: {message}"),
            Event::RunFinished {
                verdict,
                exit_code,
                duration_ms,
                ..
            } => format!(
                "{verdict} (exit code {exit_code}) in {}",
                duration(Some(*duration_ms))
            ),
        })
    }
}

fn at(e: &Event) -> &str {
    match e {
        Event::RunStarted { at, .. }
        | Event::PhaseStarted { at, .. }
        | Event::PhaseSkipped { at, .. }
        | Event::ApprovalGiven { at, .. }
        | Event::ApprovalRefused { at, .. }
        | Event::AbortTriggered { at, .. }
        | Event::PhaseFinished { at, .. }
        | Event::CompensationRegistered { at, .. }
        | Event::StepStarted { at, .. }
        | Event::StepOutput { at, .. }
        | Event::StepProgress { at, .. }
        | Event::RehearsalVerdict { at, .. }
        | Event::StepRetry { at, .. }
        | Event::StepSkipped { at, .. }
        | Event::StepFinished { at, .. }
        | Event::StepCompensated { at, .. }
        | Event::CompensationSkipped { at, .. }
        | Event::RollbackStarted { at, .. }
        | Event::RollbackFinished { at, .. }
        | Event::Warning { at, .. }
        | Event::RunFinished { at, .. } => at,
    }
}

impl Sink for Progress {
    // Long by design: one arm per event kind that moves a progress bar.
    fn event(&mut self, e: &Event) {
        if self.mode == Mode::Quiet {
            if let Event::RunFinished { .. } = e
                && let Some(text) = self.describe(e)
            {
                crate::say!("{text}");
            }
            return;
        }
        if self.mode == Mode::Bars {
            match e {
                Event::RunStarted { total_steps, .. } => {
                    let bar = self.multi.add(ProgressBar::new(*total_steps as u64));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix:>12.bold} [{bar:30}] {pos}/{len} steps {elapsed}",
                        )
                        .expect("static template")
                        .progress_chars("=> "),
                    );
                    self.overall = Some(bar);
                }
                Event::PhaseStarted { phase, .. } => {
                    if let Some(b) = &self.overall {
                        b.set_prefix(phase.clone());
                    }
                }
                Event::StepStarted { step, role, .. } => {
                    self.current_role = *role;
                    let sp = self.multi.add(ProgressBar::new_spinner());
                    sp.set_style(
                        ProgressStyle::with_template("  {spinner} {prefix} {elapsed} {wide_msg}")
                            .expect("static template"),
                    );
                    sp.set_prefix(step.clone());
                    sp.enable_steady_tick(Duration::from_millis(100));
                    if let Some(old) = self.current.replace(sp) {
                        old.finish_and_clear();
                    }
                }
                Event::StepProgress {
                    done,
                    total,
                    unit,
                    item,
                    per_second,
                    eta_ms,
                    ..
                } => {
                    if let Some(sp) = &self.current {
                        if let Some(t) = total {
                            sp.set_style(
                                ProgressStyle::with_template(
                                    "  {spinner} {prefix} {elapsed} [{bar:30}] {pos}/{len} {wide_msg}",
                                )
                                .expect("static template")
                                .progress_chars("=> "),
                            );
                            sp.set_length(*t);
                        }
                        sp.set_position(*done);
                        sp.set_message(format!(
                            "{unit}{}{}",
                            rate_text(*per_second, *eta_ms, unit),
                            item.as_deref().map_or(String::new(), |i| format!(": {i}"))
                        ));
                    }
                    // One line per table on a terminal would bury the bars.
                    return;
                }
                Event::StepOutput { line, .. } => {
                    if let Some(sp) = &self.current {
                        sp.set_message(line.clone());
                    }
                    if !self.verbose {
                        return;
                    }
                }
                Event::StepFinished { .. } | Event::StepSkipped { .. } => {
                    if let Some(sp) = self.current.take() {
                        sp.finish_and_clear();
                    }
                }
                Event::RunFinished { .. } => {
                    if let Some(b) = self.overall.take() {
                        b.finish_and_clear();
                    }
                }
                _ => {}
            }
            let main_done = match e {
                Event::StepFinished { .. } => self.current_role == Role::Main,
                Event::StepSkipped { role, .. } => *role == Role::Main,
                _ => false,
            };
            if main_done
                && let Some(b) = &self.overall
                && b.position() < b.length().unwrap_or(0)
            {
                b.inc(1);
            }
        }
        // On a terminal the spinner already says which step runs.
        if self.mode == Mode::Bars && !self.verbose && matches!(e, Event::StepStarted { .. }) {
            return;
        }
        if let Some(text) = self.describe(e) {
            self.line(at(e), &text);
        }
    }

    fn finish(&mut self) {
        if let Some(sp) = self.current.take() {
            sp.finish_and_clear();
        }
        if let Some(b) = self.overall.take() {
            b.finish_and_clear();
        }
    }
}

/// `, 5210/s, ETA 38s` when the rate is known.
fn rate_text(per_second: Option<f64>, eta_ms: Option<u64>, unit: &str) -> String {
    let Some(rate) = per_second else {
        return String::new();
    };
    let eta = eta_ms.map_or(String::new(), |ms| {
        format!(
            ", ETA {}",
            crate::duration::Duration(Duration::from_millis(ms.div_ceil(1000) * 1000))
        )
    });
    format!(", {rate:.0} {unit}/s{eta}")
}
