//! How findings are shown: text with carets (like a compiler), a short
//! listing for `plan`, JSON for report.json, SARIF for code scanning, and
//! GitHub workflow annotations.

use super::{Report, Severity, rules};

/// SARIF 2.1.0, for GitHub code scanning and other SARIF readers.
pub fn render_sarif(report: &Report) -> String {
    use serde_json::json;
    let mut rules: Vec<&str> = report.findings.iter().map(|f| f.rule.as_str()).collect();
    rules.sort_unstable();
    rules.dedup();
    let describe = |rule: &str| -> String {
        rules::RULES
            .iter()
            .find(|(n, _, _)| *n == rule)
            .map_or_else(|| format!("squawk rule {rule}"), |(_, _, d)| d.to_string())
    };
    let results: Vec<serde_json::Value> = report
        .findings
        .iter()
        .map(|f| {
            json!({
                "ruleId": f.rule,
                "level": match f.severity { Severity::Error => "error", Severity::Warning => "warning" },
                "message": { "text": match &f.help {
                    Some(h) => format!("{} ({h})", f.message),
                    None => f.message.clone(),
                } },
                "locations": [{ "physicalLocation": {
                    "artifactLocation": { "uri": f.file.trim_start_matches("./") },
                    "region": {
                        "startLine": f.line, "startColumn": f.column,
                        "endLine": f.end_line, "endColumn": f.end_column,
                    },
                } }],
            })
        })
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "runbook lint",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules.iter().map(|r| json!({
                    "id": r,
                    "shortDescription": { "text": describe(r) },
                    "helpUri": if rules::RULES.iter().any(|(n, _, _)| n == r) {
                        format!("docs/lint/{r}.md")
                    } else {
                        format!("https://squawkhq.com/docs/{r}")
                    },
                })).collect::<Vec<_>>(),
            } },
            "results": results,
        }],
    });
    let mut s = serde_json::to_string_pretty(&doc).expect("SARIF serializes");
    s.push('\n');
    s
}

/// GitHub Actions workflow commands: one annotation per finding.
pub fn render_github(report: &Report) -> String {
    // Workflow command escaping: data escapes %, CR, LF; properties also , and :.
    let data = |s: &str| {
        s.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    };
    let prop = |s: &str| data(s).replace(':', "%3A").replace(',', "%2C");
    let mut o = String::new();
    for f in &report.findings {
        let level = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        o.push_str(&format!(
            "::{level} file={},line={},col={},endLine={},endColumn={},title={}::{}\n",
            prop(&f.file),
            f.line,
            f.column,
            f.end_line,
            f.end_column,
            prop(&f.rule),
            data(&match &f.help {
                Some(h) => format!("{} ({h})", f.message),
                None => f.message.clone(),
            })
        ));
    }
    o
}

/// The lint as it goes into report.json.
pub fn to_report_json(report: &Report, mode: &str) -> serde_json::Value {
    serde_json::json!({
        "mode": mode,
        "errors": report.errors(),
        "warnings": report.warnings(),
        "not_linted": report.not_linted,
        "findings": report.findings,
    })
}

/// A short listing, a line per finding, for `plan`.
pub fn render_short(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut o = format!(
        "\nlint: {} error(s), {} warning(s){}\n",
        report.errors(),
        report.warnings(),
        not_linted(report)
    );
    for f in &report.findings {
        let sev = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(
            o,
            "  {}:{}:{} {sev}[{}] {}",
            f.file, f.line, f.column, f.rule, f.message
        );
    }
    o
}

/// Text output: each finding with its source line and a caret, like a compiler.
pub fn render_text(report: &Report, explain: bool) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    for f in &report.findings {
        let sev = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(o, "{sev}[{}]: {}", f.rule, f.message);
        let _ = writeln!(o, "  --> {}:{}:{}", f.file, f.line, f.column);
        let gutter = f.line.to_string().len();
        let _ = writeln!(o, "{:gutter$} |", "");
        let _ = writeln!(o, "{} | {}", f.line, f.source_line);
        let width = if f.end_line == f.line {
            f.end_column.saturating_sub(f.column).max(1)
        } else {
            f.source_line
                .chars()
                .count()
                .saturating_sub(f.column - 1)
                .max(1)
        };
        let _ = writeln!(
            o,
            "{:gutter$} | {}{}",
            "",
            " ".repeat(f.column - 1),
            "^".repeat(width)
        );
        if let Some(h) = &f.help {
            let _ = writeln!(o, "{:gutter$} = help: {h}", "");
        }
        o.push('\n');
    }
    if explain {
        for n in &report.notes {
            let _ = writeln!(o, "note: {}:{}: {}", n.file, n.line, n.note);
        }
    }
    let _ = writeln!(
        o,
        "{} file(s) linted: {} error(s), {} warning(s){}",
        report.files,
        report.errors(),
        report.warnings(),
        not_linted(report)
    );
    o
}

/// `, 2 not linted (--explain says which and why)`: the SQL steps and
/// migration directories left out, when there are some.
fn not_linted(report: &Report) -> String {
    match report.not_linted {
        0 => String::new(),
        n => format!(", {n} not linted (--explain says which and why)"),
    }
}
