//! JUnit XML: one testsuite per phase (plus rollback and finally), one
//! testcase per step, so CI dashboards show a run like a test run.

use std::time::Duration;

use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};

use super::{Report, StepReport};
use crate::events::StepStatus;

fn case(s: &StepReport, class: &str) -> TestCase {
    let status = match s.status {
        StepStatus::Succeeded | StepStatus::RolledBack => TestCaseStatus::success(),
        StepStatus::Skipped | StepStatus::NotRun => {
            let mut st = TestCaseStatus::skipped();
            st.set_message(s.status.name());
            st
        }
        _ => {
            let kind = if s.kind == "check" {
                NonSuccessKind::Failure
            } else {
                NonSuccessKind::Error
            };
            let mut st = TestCaseStatus::non_success(kind);
            st.set_type(s.status.name());
            st.set_message(
                s.error
                    .as_ref()
                    .map_or_else(|| s.status.name().to_string(), |e| e.message.clone()),
            );
            if let Some(e) = &s.error {
                let mut d = String::new();
                if let Some(code) = &e.sqlstate {
                    d.push_str(&format!("SQLSTATE {code}\n"));
                }
                if let Some(x) = &e.detail {
                    d.push_str(&format!("detail: {x}\n"));
                }
                if let Some(x) = &e.hint {
                    d.push_str(&format!("hint: {x}\n"));
                }
                if let Some(x) = &e.location {
                    d.push_str(&format!("at: {x}\n"));
                }
                if !d.is_empty() {
                    st.set_description(d);
                }
            }
            st
        }
    };
    let mut tc = TestCase::new(s.id.clone(), status);
    tc.set_classname(class.to_string());
    if let Some(ms) = s.duration_ms {
        tc.set_time(Duration::from_millis(ms));
    }
    if let Some(out) = &s.stdout_tail {
        tc.set_system_out(out.clone());
    }
    if let Some(err) = &s.stderr_tail {
        tc.set_system_err(err.clone());
    }
    tc
}

/// The checks of a rehearsal, each migration's own testcase: which
/// verdicts each check reports.
const CHECKS: &[(&str, &[&str])] = &[
    ("up", &["up_failure", "tool_failure"]),
    ("down", &["irreversible", "tool_failure"]),
    (
        "parity",
        &["parity_mismatch", "column_order", "body_layout"],
    ),
    ("data", &["lossy", "destroys_data"]),
    ("reup", &["reup_failure", "nondeterministic"]),
    ("timing", &["slow"]),
];

/// A rehearsal as a suite: one testcase per migration per check. A finding
/// whose verdict fails the step is a failure; one that does not (a
/// warning) passes with the finding in its output.
fn rehearsal_suite(runbook: &str, s: &StepReport) -> Option<TestSuite> {
    let d = s.details.as_ref()?;
    let errors: Vec<&str> = d["errors"]
        .as_array()?
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let class = format!("{runbook}.{}.rehearsal", s.id);
    let mut suite = TestSuite::new(class.clone());
    set_findings(&mut suite, d, &errors, &class);
    let migrations = d["migrations"].as_array().cloned().unwrap_or_default();
    for m in &migrations {
        let findings = m["findings"].as_array().cloned().unwrap_or_default();
        if m["verdict"] == "not_rehearsed" {
            // Never a passing test: a skipped one, with the reason.
            let why = findings
                .iter()
                .filter_map(|f| f["message"].as_str())
                .collect::<Vec<_>>()
                .join("; ");
            let mut st = TestCaseStatus::skipped();
            st.set_message(why);
            let name = format!(
                "{}_{} rehearsal",
                crate::migrations::shown_version(m["version"].as_str().unwrap_or_default()),
                m["name"].as_str().unwrap_or_default()
            );
            let mut tc = TestCase::new(name, st);
            tc.set_classname(class.clone());
            suite.add_test_case(tc);
            continue;
        }
        for (check, verdicts) in CHECKS {
            let mine: Vec<&serde_json::Value> = findings
                .iter()
                .filter(|f| f["verdict"].as_str().is_some_and(|v| verdicts.contains(&v)))
                // A finding that names its script is the check of that
                // script's leg: a down the tool would fail is "down".
                .filter(|f| {
                    f["leg"]
                        .as_str()
                        .is_none_or(|l| l == *check || !["up", "down"].contains(check))
                })
                .collect();
            let messages: Vec<String> = mine
                .iter()
                .map(|f| {
                    format!(
                        "{}: {}",
                        f["verdict"].as_str().unwrap_or_default(),
                        f["message"].as_str().unwrap_or_default()
                    )
                })
                .collect();
            let failed = mine
                .iter()
                .any(|f| f["verdict"].as_str().is_some_and(|v| errors.contains(&v)));
            let leg = match *check {
                // Forward-only: its data check is about what the up changed.
                "data" if m["forward_only"] == true => Some("up"),
                "up" | "timing" => Some("up"),
                "down" | "parity" | "data" => Some("down"),
                "reup" => Some("reup"),
                _ => None,
            };
            let ran = |leg: &str| {
                m["legs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|l| l["leg"] == leg)
            };
            let status = if mine.is_empty() && leg.is_some_and(|l| !ran(l)) {
                // A check whose leg never ran did not pass: it was not done.
                let mut st = TestCaseStatus::skipped();
                st.set_message(format!(
                    "not checked: the {} leg did not run{}",
                    leg.unwrap_or_default(),
                    if m["verdict"] == "forward_only" {
                        " (forward-only: there is no down)"
                    } else {
                        ""
                    }
                ));
                st
            } else if failed {
                let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
                st.set_type(mine[0]["verdict"].as_str().unwrap_or_default().to_string());
                st.set_message(messages.join("; "));
                st
            } else {
                TestCaseStatus::success()
            };
            let name = format!(
                "{}_{} {check}",
                crate::migrations::shown_version(m["version"].as_str().unwrap_or_default()),
                m["name"].as_str().unwrap_or_default()
            );
            let mut tc = TestCase::new(name, status);
            tc.set_classname(class.clone());
            if let Some(ms) = m["legs"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| Some(l["leg"].as_str().unwrap_or_default()) == leg)
                .and_then(|l| l["duration_ms"].as_u64())
            {
                tc.set_time(Duration::from_millis(ms));
            }
            if !failed && !messages.is_empty() {
                tc.set_system_out(messages.join("\n"));
            }
            suite.add_test_case(tc);
        }
    }
    Some(suite)
}

/// The set's own findings (forward-only, drift): one testcase each.
fn set_findings(suite: &mut TestSuite, d: &serde_json::Value, errors: &[&str], class: &str) {
    for f in d["set_findings"].as_array().into_iter().flatten() {
        let verdict = f["verdict"].as_str().unwrap_or_default();
        let message = f["message"].as_str().unwrap_or_default();
        let status = if errors.contains(&verdict) {
            let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
            st.set_type(verdict.to_string());
            st.set_message(message.to_string());
            st
        } else {
            TestCaseStatus::success()
        };
        let mut tc = TestCase::new(format!("whole set {verdict}"), status);
        tc.set_classname(class.to_string());
        tc.set_system_out(message.to_string());
        suite.add_test_case(tc);
    }
}

pub fn render(r: &Report) -> String {
    let mut report = quick_junit::Report::new(format!("runbook {} {}", r.runbook.name, r.run.id));
    if let Some(ms) = r.run.duration_ms {
        report.set_time(Duration::from_millis(ms));
    }
    for p in &r.phases {
        let mut suite = TestSuite::new(format!("{}.{}", r.runbook.name, p.id));
        suite.add_test_cases(
            p.steps
                .iter()
                .map(|s| case(s, &format!("{}.{}", r.runbook.name, p.id))),
        );
        report.add_test_suite(suite);
    }
    for (i, b) in r.branches.iter().enumerate() {
        let name = format!("{}.rollback.{}.{}", r.runbook.name, i + 1, b.scope.name());
        let mut suite = TestSuite::new(name.clone());
        suite.add_test_cases(b.steps.iter().map(|s| case(s, &name)));
        report.add_test_suite(suite);
    }
    for p in &r.phases {
        for s in p.steps.iter().filter(|s| s.kind == "rehearse") {
            if let Some(suite) = rehearsal_suite(&r.runbook.name, s) {
                report.add_test_suite(suite);
            }
        }
    }
    if !r.finally_steps.is_empty() {
        let name = format!("{}.finally", r.runbook.name);
        let mut suite = TestSuite::new(name.clone());
        suite.add_test_cases(r.finally_steps.iter().map(|s| case(s, &name)));
        report.add_test_suite(suite);
    }
    report.to_string().unwrap_or_default()
}
