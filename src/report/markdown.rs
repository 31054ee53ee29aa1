//! `report.md`: the page a person reads first. The verdict on top, then the
//! steps, failed checks, errors, the rollback, the slowest steps.

use std::fmt::Write;

use super::{Report, StepReport};
use crate::events::ErrorKind;
use crate::events::StepStatus;
use serde_json::Value;

fn mark(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Succeeded => "✅ succeeded",
        StepStatus::Failed => "❌ failed",
        StepStatus::Skipped => "⏭️ skipped",
        StepStatus::RolledBack => "↩️ rolled back",
        StepStatus::CompensationFailed => "🔥 compensation failed",
        StepStatus::TimedOut => "⏱️ timed out",
        StepStatus::Cancelled => "⏹️ cancelled",
        StepStatus::Running => "⚠️ running (interrupted)",
        StepStatus::NotRun => "· not run",
    }
}

pub fn duration(ms: Option<u64>) -> String {
    match ms {
        None => "–".into(),
        Some(ms) if ms < 1_000 => format!("{ms} ms"),
        Some(ms) if ms < 60_000 => format!("{:.2} s", ms as f64 / 1000.0),
        Some(ms) => format!("{}m {:02}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// Text inside a table cell: one line, pipes escaped.
fn cell(s: &str) -> String {
    let one = s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let one = one.replace('|', "\\|");
    if one.chars().count() > 100 {
        format!("{}…", one.chars().take(100).collect::<String>())
    } else {
        one
    }
}

fn show(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn render(r: &Report) -> String {
    let mut o = String::new();
    write_header(&mut o, r);
    write_steps(&mut o, r);
    write_checks(&mut o, r);
    write_errors(&mut o, r);
    write_branches(&mut o, r);
    write_finally_steps(&mut o, r);
    write_data(&mut o, r);
    write_watches(&mut o, r);
    write_migration_steps(&mut o, r);
    write_locks(&mut o, r);
    write_slowest(&mut o, r);
    write_lint(&mut o, r);
    write_warnings(&mut o, r);
    o
}

/// The title, the verdict with its exit code, and where and what ran.
fn write_header(o: &mut String, r: &Report) {
    let _ = writeln!(
        o,
        "# runbook report: {} {}\n",
        r.runbook.name, r.runbook.version
    );
    let code = r
        .run
        .exit_code
        .map_or_else(|| "none yet".to_string(), |c| c.to_string());
    let _ = writeln!(o, "**{}** (exit code {code})\n", r.run.verdict);
    if let Some(a) = &r.run.aborted_by {
        let _ = writeln!(
            o,
            "> **Stopped by `abort_when: {}`**{} at {}: {}\n",
            a.trigger,
            a.step
                .as_ref()
                .map_or(String::new(), |s| format!(" during step `{s}`")),
            a.at,
            cell(&a.message)
        );
    }
    let t = &r.target;
    let server = t
        .server_version
        .as_deref()
        .map_or(String::new(), |v| format!(", PostgreSQL {v}"));
    let _ = writeln!(o, "| | |\n|---|---|");
    let _ = writeln!(o, "| run | `{}` |", r.run.id);
    let _ = writeln!(
        o,
        "| runbook | `{}` (sha256 `{}`) |",
        r.runbook.file, &r.runbook.sha256
    );
    let _ = writeln!(
        o,
        "| target | `{}@{}:{}/{}`{server}{} |",
        t.user,
        t.host,
        t.port,
        t.database,
        if t.ephemeral { " (ephemeral)" } else { "" }
    );
    if let Some(tls) = &t.tls {
        let _ = writeln!(o, "| connection | {} |", cell(tls));
    }
    let _ = writeln!(
        o,
        "| started | {} |",
        r.run.started_at.as_deref().unwrap_or("–")
    );
    let _ = writeln!(o, "| duration | {} |", duration(r.run.duration_ms));
    let _ = writeln!(o, "| runner | runbook {} |\n", r.runner.version);
}

/// Every phase and step with its status, duration and attempts.
fn write_steps(o: &mut String, r: &Report) {
    let _ = writeln!(o, "## Steps\n");
    let _ = writeln!(o, "| phase | step | kind | status | duration | attempts |");
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    for p in &r.phases {
        let by: Vec<String> = p
            .approvals
            .iter()
            .map(|a| {
                format!(
                    "{}{} via {}",
                    a.user,
                    if a.host.is_empty() {
                        String::new()
                    } else {
                        format!(" on {}", a.host)
                    },
                    a.method
                )
            })
            .collect();
        let gate = if by.is_empty() {
            String::new()
        } else {
            format!(" (approved by {})", by.join(" and "))
        };
        let note = p
            .note
            .as_deref()
            .map_or(String::new(), |n| format!(": {}", cell(n)));
        let _ = writeln!(
            o,
            "| **{}** [{}] | | | {}{note}{gate} | {} | |",
            p.id,
            p.kind,
            p.status,
            duration(p.duration_ms)
        );
        for s in &p.steps {
            let _ = writeln!(
                o,
                "| | {} | {} | {} | {} | {} |",
                s.id,
                s.kind,
                mark(s.status),
                duration(s.duration_ms),
                s.attempts.len()
            );
        }
    }
    o.push('\n');
}

/// Every check, passed or failed, with its rows: the evidence of what was checked. Failed ones first.
fn write_checks(o: &mut String, r: &Report) {
    // Every check, passed or failed, with its rows: the evidence of what
    // was checked. Failed ones first.
    let mut checks: Vec<&StepReport> = r
        .all_steps()
        .map(|(_, s)| s)
        .filter(|s| s.check.is_some())
        .collect();
    checks.sort_by_key(|s| {
        s.check.as_ref().is_some_and(|c| {
            c.expectations.iter().all(|e| e.passed) && c.assertions.iter().all(|a| a.passed)
        })
    });
    if !checks.is_empty() {
        let _ = writeln!(o, "## Checks\n");
        for s in checks {
            write_check(o, s);
        }
    }
}

/// "Errors": each failed step's error in full.
fn write_errors(o: &mut String, r: &Report) {
    let errors: Vec<(Option<&str>, &StepReport)> = r
        .all_steps()
        .filter(|(_, s)| {
            s.error.is_some()
                && s.error
                    .as_ref()
                    .is_some_and(|e| e.class != ErrorKind::Check)
        })
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(o, "## Errors\n");
        for (phase, s) in errors {
            let e = s.error.as_ref().expect("filtered on error");
            let code = e
                .sqlstate
                .as_deref()
                .map_or(String::new(), |c| format!(" (SQLSTATE {c})"));
            let at = e
                .location
                .as_deref()
                .map_or(String::new(), |l| format!(" at `{l}`"));
            let _ = writeln!(
                o,
                "- **{}{}** ({}, {}): {}{code}{at}",
                phase.map_or(String::new(), |p| format!("{p}.")),
                s.id,
                s.kind,
                s.status.name(),
                cell(&e.message)
            );
            if let Some(d) = &e.detail {
                let _ = writeln!(o, "  - detail: {}", cell(d));
            }
            if let Some(h) = &e.hint {
                let _ = writeln!(o, "  - hint: {}", cell(h));
            }
            if s.partial {
                let _ = writeln!(
                    o,
                    "  - **failed part-way**: the step is not transactional, so what it did before failing was committed{}",
                    match s.compensation.as_ref().map(|c| c.status.as_str()) {
                        Some("not_run") =>
                            "; its rollback did not run (`rollback_on_partial: false`)",
                        Some("succeeded") => "; its rollback ran",
                        Some("failed") => "; its rollback FAILED",
                        _ => "",
                    }
                );
            }
            if let Some(tail) = s.stderr_tail.as_deref().or(s.stdout_tail.as_deref()) {
                let _ = writeln!(
                    o,
                    "\n  ```\n{}\n  ```",
                    tail.lines()
                        .map(|l| format!("  {l}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
        }
        o.push('\n');
    }
}

/// Each rollback or failure branch: why it ran, and whether it left the database clean.
fn write_branches(o: &mut String, r: &Report) {
    if !r.branches.is_empty() {
        let _ = writeln!(o, "## Rollback\n");
        for b in &r.branches {
            let clean = match b.clean {
                // No compensation ran: nothing was undone, which "cleanly"
                // would read as an undo that happened.
                Some(true) if b.steps.is_empty() => "nothing to undo (no compensation ran)",
                Some(true) => "completed cleanly",
                Some(false) => "**FAILED: a person must act**",
                None => "did not finish",
            };
            use crate::events::RollbackScope as S;
            let scope = match b.scope {
                S::Phase => format!(
                    "compensations of phase `{}`",
                    b.phase.as_deref().unwrap_or("?")
                ),
                S::PhaseBranch => format!(
                    "failure branch of phase `{}`",
                    b.phase.as_deref().unwrap_or("?")
                ),
                S::OnFailure => "runbook `on_failure` branch".to_string(),
                S::Run => "compensations of an earlier run (`runbook rollback`)".to_string(),
                S::Unknown => "unknown".to_string(),
            };
            let _ = writeln!(o, "{scope} ({}): {clean}\n", cell(&b.reason));
            write_undo_check(o, b.verification.as_ref());
            if !b.steps.is_empty() {
                let _ = writeln!(o, "| step | undoes | status | duration |");
                let _ = writeln!(o, "|---|---|---|---|");
                for s in &b.steps {
                    let _ = writeln!(
                        o,
                        "| {} | {} | {} | {} |",
                        s.id,
                        s.for_step.as_deref().unwrap_or("–"),
                        mark(s.status),
                        duration(s.duration_ms)
                    );
                }
                o.push('\n');
            }
        }
    }
}

/// The `finally` steps.
fn write_finally_steps(o: &mut String, r: &Report) {
    if !r.finally_steps.is_empty() {
        let _ = writeln!(o, "## Finally\n");
        for s in &r.finally_steps {
            let _ = writeln!(
                o,
                "- {}: {} ({})",
                s.id,
                mark(s.status),
                duration(s.duration_ms)
            );
        }
        o.push('\n');
    }
}

/// "Backups and restores".
fn write_data(o: &mut String, r: &Report) {
    let data: Vec<&StepReport> = r
        .all_steps()
        .map(|(_, s)| s)
        .filter(|s| s.details.is_some() && (s.kind == "backup" || s.kind == "restore"))
        .collect();
    if !data.is_empty() {
        let _ = writeln!(o, "## Backups and restores\n");
        for s in data {
            write_details(o, s);
        }
        o.push('\n');
    }
}

/// "Watches": each watch step's samples, drawn as a sparkline, with the
/// range and the sample that broke it, if one did.
fn write_watches(o: &mut String, r: &Report) {
    let watches: Vec<&StepReport> = r
        .all_steps()
        .map(|(_, s)| s)
        .filter(|s| s.kind == "watch" && s.details.is_some())
        .collect();
    if watches.is_empty() {
        return;
    }
    let _ = writeln!(o, "## Watches\n");
    for s in watches {
        let Some(d) = &s.details else { continue };
        let samples = d["samples"].as_array().cloned().unwrap_or_default();
        let values: Vec<f64> = samples.iter().filter_map(|x| x["value"].as_f64()).collect();
        let broke = samples.iter().position(|x| x["passed"] == false);
        let _ = write!(
            o,
            "- **{}** {}: {} sample(s) over {}",
            s.id,
            mark(s.status),
            d["samples_total"],
            duration(d["watched_ms"].as_u64())
        );
        if values.len() == samples.len() && !values.is_empty() {
            let (lo, hi) = values
                .iter()
                .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
            let _ = write!(o, " `{}` min {lo}, max {hi}", sparkline(&values));
        }
        match broke {
            Some(i) => {
                let _ = writeln!(
                    o,
                    "; sample {} at {} broke it (value {})",
                    i + 1,
                    duration(samples[i]["at_ms"].as_u64()),
                    samples[i]["value"]
                );
            }
            None => o.push('\n'),
        }
    }
    o.push('\n');
}

/// Numbers as a line of block characters, lowest to highest.
fn sparkline(values: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let (lo, hi) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
    values
        .iter()
        .map(|v| {
            if hi > lo {
                BARS[(((v - lo) / (hi - lo)) * 7.0).round() as usize]
            } else {
                BARS[3]
            }
        })
        .collect()
}

/// "Migrations and schema": migrate, rehearse and snapshot steps.
fn write_migration_steps(o: &mut String, r: &Report) {
    let migrations: Vec<&StepReport> = r
        .all_steps()
        .map(|(_, s)| s)
        .filter(|s| {
            s.details.is_some() && matches!(s.kind.as_str(), "migrate" | "snapshot" | "rehearse")
        })
        .collect();
    if !migrations.is_empty() {
        let _ = writeln!(o, "## Migrations and schema\n");
        for s in migrations {
            write_migrations(o, s);
        }
        o.push('\n');
    }
}

/// "Lock impact": who waited on each step's locks, and how long.
fn write_locks(o: &mut String, r: &Report) {
    let monitored: Vec<(&StepReport, &crate::events::LockImpact)> = r
        .all_steps()
        .filter_map(|(_, s)| s.lock_impact.as_ref().map(|l| (s, l)))
        .collect();
    if !monitored.is_empty() {
        let notable: Vec<_> = monitored
            .iter()
            .filter(|(_, l)| {
                l.sessions_waited > 0 || l.access_exclusive_on.is_some() || l.error.is_some()
            })
            .collect();
        let waited = monitored
            .iter()
            .filter(|(_, l)| l.sessions_waited > 0)
            .count();
        let _ = writeln!(o, "## Lock impact\n");
        let _ = writeln!(
            o,
            "{} step(s) monitored every {}; other sessions waited on the locks of {waited} of them.\n",
            monitored.len(),
            duration(Some(monitored[0].1.interval_ms))
        );
        if !notable.is_empty() {
            let _ = writeln!(
                o,
                "| step | sessions that waited | longest wait | all waits | waiting at worst | longest ACCESS EXCLUSIVE |"
            );
            let _ = writeln!(o, "|---|---|---|---|---|---|");
        }
        for (s, l) in notable {
            let held = match &l.access_exclusive_on {
                Some(rel) => format!(
                    "{} on `{}`",
                    duration(Some(l.access_exclusive_ms)),
                    cell(rel)
                ),
                None => "none".into(),
            };
            let _ = writeln!(
                o,
                "| `{}` | {} | {} | {} | {} | {}{} |",
                s.id,
                l.sessions_waited,
                duration(Some(l.waited_max_ms)),
                duration(Some(l.waited_total_ms)),
                l.waiting_max,
                held,
                l.error
                    .as_ref()
                    .map(|e| format!(" (sampling stopped early: {})", cell(e)))
                    .unwrap_or_default()
            );
        }
        o.push('\n');
    }
}

/// The slowest steps.
fn write_slowest(o: &mut String, r: &Report) {
    let mut slow: Vec<&StepReport> = r
        .all_steps()
        .map(|(_, s)| s)
        .filter(|s| s.duration_ms.is_some())
        .collect();
    slow.sort_by_key(|s| std::cmp::Reverse(s.duration_ms));
    if !slow.is_empty() {
        let _ = writeln!(o, "## Slowest steps\n");
        for s in slow.iter().take(5) {
            let _ = writeln!(o, "1. `{}` ({}): {}", s.id, s.kind, duration(s.duration_ms));
        }
        o.push('\n');
    }
}

/// What `runbook lint` found before the run.
fn write_lint(o: &mut String, r: &Report) {
    if let Some(l) = &r.lint
        && l["findings"].as_array().is_some_and(|f| !f.is_empty())
    {
        let _ = writeln!(
            o,
            "## Lint\n\n{} error(s), {} warning(s) before the run (`settings.lint: {}`):\n",
            l["errors"],
            l["warnings"],
            l["mode"].as_str().unwrap_or_default()
        );
        let findings = l["findings"].as_array().cloned().unwrap_or_default();
        for f in findings.iter().take(50) {
            let _ = writeln!(
                o,
                "- {} `{}` at `{}:{}:{}`: {}",
                f["severity"].as_str().unwrap_or_default(),
                f["rule"].as_str().unwrap_or_default(),
                cell(f["file"].as_str().unwrap_or_default()),
                f["line"],
                f["column"],
                cell(f["message"].as_str().unwrap_or_default())
            );
        }
        if findings.len() > 50 {
            let _ = writeln!(o, "- ... {} more in report.json", findings.len() - 50);
        }
        o.push('\n');
    }
}

/// Warnings of the run.
fn write_warnings(o: &mut String, r: &Report) {
    if !r.warnings.is_empty() {
        let _ = writeln!(o, "## Warnings\n");
        for w in &r.warnings {
            let _ = writeln!(o, "- {}", cell(w));
        }
        o.push('\n');
    }
}

/// One check: what it expected against what it got, and the rows it saw.
fn write_check(o: &mut String, s: &StepReport) {
    let c = s.check.as_ref().expect("callers pass checks");
    let passed = c.expectations.iter().all(|e| e.passed) && c.assertions.iter().all(|a| a.passed);
    let _ = writeln!(
        o,
        "### {} `{}` (severity {}, {} rows)\n",
        if passed { "✅" } else { "❌" },
        s.id,
        c.severity,
        c.rows
    );
    if !c.expectations.is_empty() || !c.assertions.is_empty() {
        let _ = writeln!(o, "| target | comparison | expected | actual | |");
        let _ = writeln!(o, "|---|---|---|---|---|");
    }
    for e in &c.expectations {
        let _ = writeln!(
            o,
            "| {} | {} | `{}` | `{}` | {} |",
            e.target,
            e.op,
            cell(&show(&e.expected)),
            cell(&show(&e.actual)),
            if e.passed { "✅" } else { "❌" }
        );
    }
    for a in &c.assertions {
        let _ = writeln!(
            o,
            "| assert | `{}` | true | {} | {} |",
            cell(&a.expr),
            a.error
                .as_deref()
                .map_or_else(|| a.passed.to_string(), cell),
            if a.passed { "✅" } else { "❌" }
        );
    }
    write_found_rows(o, s);
    // What the check could not see, or had nothing to look at: a pass is
    // only as wide as this says.
    if let Some(note) = s.details.as_ref().and_then(|d| d["note"].as_str()) {
        let _ = writeln!(o, "\nNote: {}", cell(note));
    }
    o.push('\n');
}

/// What a check found: its first rows, one per line, each cut to a length
/// a page can hold.
fn write_found_rows(o: &mut String, s: &StepReport) {
    const SHOWN: usize = 10;
    const WIDTH: usize = 300;
    let Some(d) = &s.details else { return };
    let Some(rows) = d["rows"].as_array().filter(|r| !r.is_empty()) else {
        return;
    };
    let total = d["rows_total"].as_u64().unwrap_or(rows.len() as u64);
    let _ = writeln!(
        o,
        "\n`{}` found {total} row(s){}:\n",
        d["builtin"].as_str().unwrap_or("the query"),
        if total as usize > SHOWN {
            format!(", the first {SHOWN}")
        } else {
            String::new()
        }
    );
    for row in rows.iter().take(SHOWN) {
        let text = row.to_string();
        let shown = match text.char_indices().nth(WIDTH) {
            Some((at, _)) => format!("{}…", &text[..at]),
            None => text,
        };
        let _ = writeln!(o, "- `{}`", cell(&shown));
    }
}

/// Schema changes, as lines: the object, then what differs in it.
fn write_changes(o: &mut String, changes: &Value, indent: &str) {
    const LINES: usize = 20;
    for c in changes.as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "{indent}- {} `{}`",
            c["change"].as_str().unwrap_or_default(),
            cell(c["object"].as_str().unwrap_or_default())
        );
        let diff = c["diff"].as_array().cloned().unwrap_or_default();
        for l in diff.iter().take(LINES) {
            let _ = writeln!(o, "{indent}  - `{}`", cell(l.as_str().unwrap_or_default()));
        }
        if diff.len() > LINES {
            let _ = writeln!(o, "{indent}  - ... {} more", diff.len() - LINES);
        }
    }
}

/// `12 ok, 3 irreversible, 5 not_rehearsed`, ok first.
fn verdict_counts(v: &Value) -> String {
    let Some(m) = v.as_object() else {
        return String::new();
    };
    let mut parts: Vec<String> = m.iter().map(|(k, n)| format!("{n} {k}")).collect();
    parts.sort_by_key(|p| !p.ends_with(" ok"));
    parts.join(", ")
}

/// How an undo was checked against the schema before the changes.
fn write_undo_check(o: &mut String, v: Option<&crate::events::UndoCheck>) {
    let Some(v) = v else { return };
    let against = if v.against == "run_start" {
        "before the run"
    } else {
        "before the phase"
    };
    match v.result.as_str() {
        "equal" => {
            let _ = writeln!(o, "Undo verified: the schema is equal to {against}.\n");
        }
        "differs" => {
            let _ = writeln!(
                o,
                "**Undo NOT verified: {} schema object(s) differ from {against}:**\n",
                v.changes.len()
            );
            write_changes(o, &Value::Array(v.changes.clone()), "");
            o.push('\n');
        }
        _ => {
            let _ = writeln!(
                o,
                "**Undo not verified**: {}\n",
                cell(v.error.as_deref().unwrap_or("unknown"))
            );
        }
    }
}

/// A migrate step's migrations, a snapshot's hash and differences, or a
/// rehearsal's table of verdicts.
fn write_migrations(o: &mut String, s: &StepReport) {
    let Some(d) = &s.details else { return };
    match s.kind.as_str() {
        "migrate" => write_migrate(o, s, d),
        "snapshot" => write_snapshot(o, s, d),
        _ => write_rehearsal(o, s, d),
    }
}

/// The migrations a migrate step applied, and where it failed.
fn write_migrate(o: &mut String, s: &StepReport, d: &Value) {
    let applied = d["applied"].as_array().cloned().unwrap_or_default();
    let list: Vec<String> = applied
        .iter()
        .map(|a| {
            format!(
                "{} ({} ms{})",
                crate::migrations::titled(
                    a["version"].as_str().unwrap_or_default(),
                    a["name"].as_str().unwrap_or_default()
                ),
                a["duration_ms"],
                if a["transaction"] == false {
                    ", no transaction"
                } else {
                    ""
                }
            )
        })
        .collect();
    let _ = writeln!(
        o,
        "- **{}** migrate {} ({} format, history in `{}`): {}",
        s.id,
        d["direction"].as_str().unwrap_or("up"),
        d["format"].as_str().unwrap_or_default(),
        d["history_table"].as_str().unwrap_or_default(),
        if list.is_empty() {
            "nothing to do".to_string()
        } else {
            list.join(", ")
        }
    );
    if let Some(b) = d["baselined"].as_object() {
        let schemas: Vec<&str> = b["schemas_not_empty"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let _ = writeln!(
            o,
            "  - Flyway baseline recorded at version {} ({}): schema {} already held objects, with no history; migrations up to it were taken as applied, not run",
            cell(b["version"].as_str().unwrap_or_default()),
            cell(b["because"].as_str().unwrap_or_default()),
            cell(&schemas.join(", "))
        );
    }
    if let Some(f) = d["failed"].as_object() {
        let _ = writeln!(
            o,
            "  - FAILED at {} after {} statement(s){}",
            crate::migrations::titled(
                f["version"].as_str().unwrap_or_default(),
                f["name"].as_str().unwrap_or_default()
            ),
            f["statements_done"],
            if f["transaction"] == true {
                " (rolled back)"
            } else {
                " (not in a transaction: marked dirty)"
            }
        );
    }
    for c in d["checksum_changes_allowed"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let _ = writeln!(
            o,
            "  - checksum change accepted: {}",
            cell(c.as_str().unwrap_or_default())
        );
    }
    for x in d["repeatables"].as_array().into_iter().flatten() {
        let due = matches!(x["state"].as_str(), Some("pending" | "outdated"));
        if due && x["runs"] == false {
            let _ = writeln!(
                o,
                "  - repeatable {} is {} and was not run: `to` or `steps` may stop before the newest version",
                cell(x["file"].as_str().unwrap_or_default()),
                x["state"].as_str().unwrap_or_default()
            );
        }
    }
    write_set_warnings(o, d, "  ");
}

/// What loading the migration directory warned of (a file ignored, a
/// name that does not pair), one line each: a file that never ran is
/// said where people read, not only in the JSON.
fn write_set_warnings(o: &mut String, d: &Value, indent: &str) {
    for w in d["warnings"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "{indent}- warning: {}",
            cell(w.as_str().unwrap_or_default())
        );
    }
}

/// A snapshot step's hash, and how it differs from what was expected.
fn write_snapshot(o: &mut String, s: &StepReport, d: &Value) {
    let _ = writeln!(
        o,
        "- **{}** snapshot: hash `{}` ({} objects){}",
        s.id,
        d["hash"].as_str().unwrap_or_default(),
        d["objects"],
        d["expected"]
            .as_str()
            .map(|h| format!("; expected `{h}`"))
            .unwrap_or_default()
    );
    write_changes(o, &d["changes"], "  ");
}

/// A rehearsal: one table row per migration, then what stopped it, its
/// coverage, recoveries and schema differences.
fn write_rehearsal(o: &mut String, s: &StepReport, d: &Value) {
    let errors: Vec<&str> = d["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if d["mode"].is_null() {
        // Only the verdicts its events gave: the run ended (killed) before
        // the step did.
        let mut counts = serde_json::Map::new();
        for m in d["migrations"].as_array().into_iter().flatten() {
            let v = m["verdict"].as_str().unwrap_or("?").to_string();
            let n = counts.get(&v).and_then(Value::as_u64).unwrap_or(0);
            counts.insert(v, (n + 1).into());
        }
        let _ = writeln!(
            o,
            "**{}** rehearsal, not finished: {}\n",
            s.id,
            verdict_counts(&Value::Object(counts))
        );
    } else {
        let _ = writeln!(
            o,
            "**{}** rehearsal ({}, {} format{}): {}\n",
            s.id,
            d["mode"].as_str().unwrap_or_default().replace('_', " "),
            d["format"].as_str().unwrap_or_default(),
            if d["scratch"] == true {
                ", on a scratch database"
            } else {
                ""
            },
            match d["set_verdict"].as_str() {
                Some(v) => format!("{}; the whole set: {v}", verdict_counts(&d["verdicts"])),
                None => verdict_counts(&d["verdicts"]),
            }
        );
    }
    let _ = writeln!(
        o,
        "| version | name | verdict | up | down | re-up | findings |"
    );
    let _ = writeln!(o, "|---|---|---|---:|---:|---:|---|");
    let mut rows = d["migrations"].as_array().cloned().unwrap_or_default();
    if d["set_findings"].as_array().is_some_and(|f| !f.is_empty()) {
        let worst = match &d["set_verdict"] {
            Value::Null => d["set_findings"][0]["verdict"].clone(),
            v => v.clone(),
        };
        rows.push(serde_json::json!({
            "version": "*", "name": "the whole set", "verdict": worst,
            "findings": d["set_findings"], "legs": []
        }));
    }
    for m in &rows {
        write_rehearsal_row(o, m, &errors);
    }
    write_rehearsal_notes(o, d, &rows);
}

/// One migration of a rehearsal: its verdict, each leg's time, its findings.
fn write_rehearsal_row(o: &mut String, m: &Value, errors: &[&str]) {
    let verdict = m["verdict"].as_str().unwrap_or_default();
    let mark = if verdict == "ok" {
        "✅"
    } else if verdict == "not_rehearsed" {
        "⏭️"
    } else if m["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|f| f["verdict"].as_str().is_some_and(|v| errors.contains(&v)))
    {
        "❌"
    } else {
        "⚠️"
    };
    let leg = |name: &str| {
        m["legs"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["leg"] == name)
            .map_or_else(
                || "-".to_string(),
                |l| {
                    format!(
                        "{} ms{}",
                        l["duration_ms"],
                        if l["ok"] == false { " ✘" } else { "" }
                    )
                },
            )
    };
    let findings: Vec<String> = m["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| cell(f["message"].as_str().unwrap_or_default()))
        .collect();
    let _ = writeln!(
        o,
        "| {} | {} | {mark} {verdict} | {} | {} | {} | {} |",
        crate::migrations::shown_version(m["version"].as_str().unwrap_or_default()),
        cell(m["name"].as_str().unwrap_or_default()),
        leg("up"),
        leg("down"),
        leg("reup"),
        findings.join("<br>")
    );
}

/// Below a rehearsal's table: why it stopped early, its coverage, the
/// recoveries, the schema differences and the timings file.
fn write_rehearsal_notes(o: &mut String, d: &Value, rows: &[Value]) {
    if let Some(why) = d["stopped"].as_str() {
        let _ = writeln!(o, "\nThe rehearsal stopped early: {}", cell(why));
    }
    let c = &d["coverage"];
    if let (Some(done), Some(total)) = (c["rehearsed"].as_u64(), c["total"].as_u64())
        && done < total
    {
        let _ = writeln!(
            o,
            "\n**Coverage: {done} of {total} migration(s) rehearsed**; the other {} are ⏭️ `not_rehearsed` (never `ok`), each with the reason.",
            total - done
        );
    }
    for rec in d["recoveries"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "\nRecovered after {} ({}): {} up(s) replayed on a fresh scratch database in {} ms.",
            cell(rec["after"].as_str().unwrap_or_default()),
            cell(rec["why"].as_str().unwrap_or_default()),
            rec["replayed"],
            rec["duration_ms"]
        );
    }
    let with_changes: Vec<(&Value, &Value)> = rows
        .iter()
        .flat_map(|m| {
            m["findings"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| f["changes"].is_array())
                .map(move |f| (m, f))
        })
        .collect();
    if !with_changes.is_empty() {
        let _ = writeln!(o, "\nSchema differences:\n");
        for (m, f) in with_changes {
            let _ = writeln!(
                o,
                "- {} {}: {}",
                crate::migrations::shown_version(m["version"].as_str().unwrap_or_default()),
                cell(m["name"].as_str().unwrap_or_default()),
                f["verdict"].as_str().unwrap_or_default()
            );
            write_changes(o, &f["changes"], "  ");
        }
    }
    if d["warnings"].as_array().is_some_and(|w| !w.is_empty()) {
        let _ = writeln!(o, "\nThe directory:\n");
        write_set_warnings(o, d, "");
    }
    if let Some(p) = d["timings_csv"].as_str() {
        let _ = writeln!(o, "\nTimings: `{}`", cell(p));
    }
    o.push('\n');
}

/// A backup's manifest summary or a restore's checks, for people.
fn write_details(o: &mut String, s: &StepReport) {
    let Some(d) = &s.details else { return };
    let text = |k: &str| d[k].as_str().unwrap_or_default().to_string();
    let n = |k: &str| d[k].as_array().map_or(0, Vec::len);
    if s.kind == "backup" {
        let v = &d["verification"];
        let _ = writeln!(
            o,
            "- **{}** backup: `{}` ({}, {} bytes, {} tables, {} files); manifest sha256 `{}`; verify `{}`: {}{}",
            s.id,
            cell(&text("path")),
            text("format"),
            d["bytes"],
            n("tables"),
            d["files"],
            text("sha256"),
            v["method"].as_str().unwrap_or_default(),
            v["status"].as_str().unwrap_or_default(),
            v["detail"]
                .as_str()
                .map_or(String::new(), |x| format!(" ({})", cell(x)))
        );
        for p in d["pruned"].as_array().into_iter().flatten() {
            let _ = writeln!(o, "  - pruned `{}`", cell(p.as_str().unwrap_or_default()));
        }
    } else {
        let _ = writeln!(
            o,
            "- **{}** restore: from `{}` into `{}`{}; {} tables compared with the manifest",
            s.id,
            cell(&text("from")),
            text("target"),
            if d["created"] == true {
                " (created)"
            } else {
                ""
            },
            d["tables_checked"],
        );
        for t in d["terminated"].as_array().into_iter().flatten() {
            let _ = writeln!(o, "  - terminated {}", cell(t.as_str().unwrap_or_default()));
        }
        for m in d["mismatches"].as_array().into_iter().flatten() {
            let _ = writeln!(o, "  - MISMATCH {}", cell(m.as_str().unwrap_or_default()));
        }
    }
}
