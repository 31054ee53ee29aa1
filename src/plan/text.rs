//! The plan as text (`runbook plan`) and as JSON.

use std::fmt::Write as _;

use serde_json::Value;

use super::*;

impl Plan {
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("plan serializes");
        s.push('\n');
        s
    }

    /// The plan as a person reads it.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let r = &self.runbook;
        let _ = writeln!(o, "plan: {} {} ({})", r.name, r.version, r.file);
        let _ = writeln!(o, "sha256: {}", r.sha256);
        if let Some(d) = &r.description {
            let _ = writeln!(o, "description: {d}");
        }
        match &self.database.url {
            Some(url) => {
                let _ = writeln!(o, "database: {url}");
            }
            None => {
                let _ = writeln!(o, "database: from {}", self.database.source);
            }
        }
        if !self.params.is_empty() {
            let _ = writeln!(o, "params:");
            for (k, p) in &self.params {
                let origin = match p.origin {
                    Origin::Set => "--set",
                    Origin::ParamsFile => "params file",
                    Origin::Default => "default",
                    Origin::Unset => "unset",
                };
                let _ = writeln!(o, "  {k} = {} ({origin})", show(&p.value));
            }
        }
        if !self.vars.is_empty() {
            let _ = writeln!(o, "vars:");
            for (k, v) in &self.vars {
                let _ = writeln!(o, "  {k} = {}", show(v));
            }
        }
        let settings = serde_json::to_value(&self.settings).unwrap_or_default();
        if let Some(map) = settings.as_object().filter(|m| !m.is_empty()) {
            let list: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}={}", show(v)))
                .collect();
            let _ = writeln!(o, "settings: {}", list.join(", "));
        }
        super::risk::write(&mut o, &self.risk, &self.abort_when);
        let total = self.phases.len();
        for (i, ph) in self.phases.iter().enumerate() {
            let _ = writeln!(
                o,
                "\nphase {}/{total} {} [{}]",
                i + 1,
                ph.id,
                ph.kind.name()
            );
            if let Some(d) = &ph.description {
                let _ = writeln!(o, "  {d}");
            }
            if let Some(w) = &ph.when {
                let _ = writeln!(o, "  when: {}", when_text(w));
            }
            if let Some(a) = &ph.approval {
                let who = if a.approvers > 1 {
                    format!(" by {} people", a.approvers)
                } else {
                    String::new()
                };
                let _ = writeln!(
                    o,
                    "  gate: {} approval{who}: {}",
                    if a.required { "required" } else { "optional" },
                    a.prompt.text
                );
            }
            let on_failure = match &ph.on_failure {
                PlanOnFailure::Rollback => {
                    "roll back this phase's started steps, newest first".to_string()
                }
                PlanOnFailure::Abort => "abort without undoing anything".to_string(),
                PlanOnFailure::Continue => "record the failure and continue".to_string(),
                PlanOnFailure::Steps(s) => format!(
                    "run the branch below ({} step{})",
                    s.len(),
                    if s.len() == 1 { "" } else { "s" }
                ),
            };
            let _ = writeln!(o, "  on failure: {on_failure}");
            for (n, s) in ph.steps.iter().enumerate() {
                write_step(&mut o, s, &format!("{}.", n + 1), 2);
            }
            if let PlanOnFailure::Steps(branch) = &ph.on_failure {
                let _ = writeln!(o, "  failure branch:");
                for s in branch {
                    write_step(&mut o, s, "-", 4);
                }
            }
        }
        if !self.on_failure.is_empty() {
            let _ = writeln!(o, "\non failure (runbook):");
            for s in &self.on_failure {
                write_step(&mut o, s, "-", 2);
            }
        }
        if !self.finally_steps.is_empty() {
            let _ = writeln!(o, "\nfinally (always):");
            for s in &self.finally_steps {
                write_step(&mut o, s, "-", 2);
            }
        }
        o
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "(none)".into(),
        other => other.to_string(),
    }
}

fn when_text(w: &PlanWhen) -> String {
    match w.value {
        Some(true) => format!("{} (true: runs)", w.expr),
        Some(false) => format!("{} (false: skipped)", w.expr),
        None => format!("{} (evaluated at run time)", w.expr),
    }
}

pub(super) fn write_block(o: &mut String, text: &str, indent: usize) {
    for line in text.trim_end().lines() {
        let _ = writeln!(o, "{:indent$}{line}", "");
    }
}

/// What the parser says about a sql step: how its statements run, and
/// which take locks that block writes. Known only when the text is.
fn sql_facts(t: &Text, transaction: bool, facts: &mut Vec<String>, lines: &mut Vec<String>) {
    use crate::pg::statements::{Mode, mode};
    if t.template.is_some() {
        facts.push(
            if transaction {
                "in a transaction"
            } else {
                "no transaction"
            }
            .into(),
        );
        lines.push("statements are split when their templates render, at run time".into());
        return;
    }
    let stmts = crate::pg::statements::split(t.raw.expose());
    let n = stmts.len();
    let each = if n == 1 {
        "1 statement".to_string()
    } else {
        format!("{n} statements")
    };
    match mode(&stmts, transaction) {
        Mode::Transaction => facts.push(format!("in a transaction; {each}")),
        Mode::Autocommit if n < 2 => facts.push(format!("no transaction; {each}")),
        Mode::Autocommit => facts.push(format!("no transaction; {each}, each commits on its own")),
        Mode::Forced(i, why) => {
            facts.push(if n < 2 {
                format!("no transaction; {each}")
            } else {
                format!("no transaction; {each}, each commits on its own")
            });
            lines.push(format!(
                "outside a transaction: statement {} ({}): {why}",
                i + 1,
                stmts[i].summary()
            ));
        }
    }
    for (i, st) in stmts.iter().enumerate() {
        if let Some(l) = st.lock {
            lines.push(format!(
                "statement {}: {} takes {} (blocks writes while held or queued)",
                i + 1,
                st.summary(),
                l.name()
            ));
        } else if st.concurrent_index {
            lines.push(format!(
                "statement {}: {} waits for older transactions; a failure leaves an INVALID index, which runbook drops",
                i + 1,
                st.summary()
            ));
        }
        if st.transaction_control && transaction {
            lines.push(format!(
                "statement {}: {} inside runbook's transaction fails the step; set `transaction: false`",
                i + 1,
                st.kind
            ));
        }
    }
}

fn write_step(o: &mut String, s: &PlanStep, marker: &str, indent: usize) {
    let kind = s.action.kind();
    let mut facts = Vec::new();
    let mut lines = Vec::new();
    if let Action::Sql {
        transaction,
        statements,
    } = &s.action
    {
        sql_facts(statements, *transaction, &mut facts, &mut lines);
    }
    if let Action::Wait(_) | Action::Watch(_) = &s.action {
        facts.push("read-only".to_string());
    }
    if let Action::Check(c) = &s.action {
        facts.push("read-only".to_string());
        if c.severity == model::Severity::Warn {
            facts.push("warn only".to_string());
        }
    }
    if let Some(t) = &s.timeout {
        facts.push(format!("timeout {t}"));
    }
    if let Some(own) = &s.settings {
        if let Some(l) = own.lock_timeout {
            facts.push(format!("lock_timeout {l}"));
        }
        if let Some(st) = own.statement_timeout {
            facts.push(format!("statement_timeout {st}"));
        }
        if let Some(w) = own.wait_for_blockers {
            facts.push(format!("wait_for_blockers {w}"));
        }
    }
    if s.retry.attempts > 1 {
        let on: Vec<String> = s
            .retry
            .on
            .iter()
            .map(|c| {
                serde_json::to_value(c)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            })
            .collect();
        facts.push(format!(
            "retry {}x on {} (backoff {} x{} up to {})",
            s.retry.attempts,
            on.join(", "),
            s.retry.initial,
            s.retry.factor,
            s.retry.max
        ));
    }
    let name = s
        .name
        .as_ref()
        .map(|n| format!(" \"{n}\""))
        .unwrap_or_default();
    let facts = if facts.is_empty() {
        String::new()
    } else {
        format!("  ({})", facts.join("; "))
    };
    let _ = writeln!(o, "{:indent$}{marker} {kind} {}{name}{facts}", "", s.id);
    let inner = indent + marker.len() + 1;
    if let Some(w) = &s.when {
        let _ = writeln!(o, "{:inner$}when: {}", "", when_text(w));
    }
    for l in lines {
        let _ = writeln!(o, "{:inner$}{l}", "");
    }
    match &s.action {
        Action::Sql { statements, .. } => write_block(o, &statements.text, inner + 2),
        Action::Check(c) => check::write(o, c, inner),
        Action::Shell(sh) => shell::write(o, sh, inner),
        Action::Sleep { duration } => {
            let _ = writeln!(o, "{:w$}{duration}", "", w = inner + 2);
        }
        Action::Backup(b) => backup::write(o, b, inner),
        Action::Restore(r) => restore::write(o, r, inner),
        Action::Backfill(b) => backfill::write(o, b, inner),
        Action::Migrate(m) => migrate::write(o, m, inner),
        Action::Snapshot(x) => snapshot::write(o, x, inner),
        Action::Rehearse(x) => rehearse::write(o, x, inner),
        Action::Wait(w) => wait::write(o, w, inner),
        Action::Watch(w) => watch::write(o, w, inner),
    }
    if !s.rollback.is_empty() {
        let _ = writeln!(o, "{:inner$}rollback:", "");
        for r in &s.rollback {
            write_step(o, r, "-", inner + 2);
        }
    }
}

pub(super) fn texts(list: &[Text]) -> String {
    list.iter()
        .map(|t| t.text.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
