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
        let name = format!("{}.rollback.{}.{}", r.runbook.name, i + 1, b.scope);
        let mut suite = TestSuite::new(name.clone());
        suite.add_test_cases(b.steps.iter().map(|s| case(s, &name)));
        report.add_test_suite(suite);
    }
    if !r.finally_steps.is_empty() {
        let name = format!("{}.finally", r.runbook.name);
        let mut suite = TestSuite::new(name.clone());
        suite.add_test_cases(r.finally_steps.iter().map(|s| case(s, &name)));
        report.add_test_suite(suite);
    }
    report.to_string().unwrap_or_default()
}
