//! The docs cannot drift from the tool: every runbook (and targets file)
//! the README and docs/ show in a fenced `yaml` block validates, and every
//! `runbook …` command they show in a shell block is one the command line
//! accepts. A fragment (a few keys of a runbook) is not a runbook and is
//! left alone; a block can opt out with `<!-- not-checked -->` above it,
//! for an example that is wrong on purpose.

use std::path::{Path, PathBuf};
use std::process::Command;

fn docs() -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("README.md")];
    let mut dirs = vec![PathBuf::from("docs")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// (info string, first line number, text, checked) of every fenced block.
fn blocks(text: &str) -> Vec<(String, usize, String, bool)> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        if let Some(info) = line.strip_prefix("```") {
            let opted_out = i > 0 && lines[i - 1].contains("<!-- not-checked -->");
            let start = i + 1;
            let mut end = start;
            while end < lines.len() && !lines[end].trim_start().starts_with("```") {
                end += 1;
            }
            out.push((
                info.trim().to_string(),
                start + 1,
                lines[start..end.min(lines.len())].join("\n"),
                !opted_out,
            ));
            i = end + 1;
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn every_runbook_and_targets_file_in_the_docs_validates() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for doc in docs() {
        let text = std::fs::read_to_string(&doc).unwrap();
        for (info, line, body, on) in blocks(&text) {
            if info != "yaml" || !on {
                continue;
            }
            let Ok(value) = serde_yaml::from_str::<serde_yaml::Value>(&body) else {
                // A fragment with `...` in it is not a runbook; a runbook
                // that is not YAML is wrong.
                if body.contains("apiVersion: runbook/v1") {
                    failures.push(format!("{}:{line}: not YAML", doc.display()));
                }
                continue;
            };
            let mut body = body;
            if value["apiVersion"].as_str() != Some("runbook/v1") {
                // A fragment of top-level keys without templates (which
                // would name params it does not show) is checked inside a
                // minimal runbook.
                let Some(map) = value.as_mapping() else {
                    continue;
                };
                let top = top_level_keys();
                let fragment = !map.is_empty()
                    && map
                        .keys()
                        .all(|k| k.as_str().is_some_and(|k| top.contains(&k.to_string())))
                    && !body.contains("{{")
                    && !body.contains("{%");
                if !fragment {
                    continue;
                }
                let mut wrapped = String::from("apiVersion: runbook/v1\nkind: Runbook\n");
                if map.get("metadata").is_none() {
                    wrapped.push_str("metadata: { name: docs-fragment, version: 1 }\n");
                }
                if map.get("phases").is_none() {
                    wrapped.push_str("phases:\n  - id: p\n    kind: custom\n    steps:\n      - id: s\n        sql: SELECT 1;\n");
                }
                wrapped.push_str(&body);
                body = wrapped;
            }
            let kind = if body.contains("kind: Targets") {
                "Targets"
            } else {
                "Runbook"
            };
            // Beside the page, so paths relative to it resolve as they would.
            let file = std::path::absolute(
                doc.parent()
                    .unwrap_or(Path::new("."))
                    .join(format!(".docs-test-{}-{line}.yml", std::process::id())),
            )
            .unwrap();
            std::fs::write(&file, &body).unwrap();
            let args: Vec<String> = match kind {
                "Runbook" => vec!["validate".into(), file.display().to_string()],
                "Targets" => vec![
                    "targets".into(),
                    "list".into(),
                    "--targets".into(),
                    file.display().to_string(),
                ],
                other => {
                    failures.push(format!("{}:{line}: unknown kind {other}", doc.display()));
                    let _ = std::fs::remove_file(&file);
                    continue;
                }
            };
            let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
                .args(&args)
                .env("NO_COLOR", "1")
                .output()
                .unwrap();
            let _ = std::fs::remove_file(&file);
            checked += 1;
            if !out.status.success() {
                failures.push(format!(
                    "{}:{line}: {kind} is invalid:\n{}",
                    doc.display(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        checked >= 8,
        "only {checked} runbooks and fragments found in the docs"
    );
}

/// `line` with each `$VAR`, `${VAR}` and `$(command)` replaced by a
/// plain word, so a flag's value is never empty for want of a variable.
fn placeholders(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('(') => {
                let mut depth = 0;
                for d in chars.by_ref() {
                    depth += match d {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    if depth == 0 {
                        break;
                    }
                }
                out.push_str("VALUE");
            }
            Some('{') => {
                for d in chars.by_ref() {
                    if d == '}' {
                        break;
                    }
                    if d.is_ascii_alphanumeric() || d == '_' {
                        out.push(d);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The keys a runbook may have at its top level, from the committed schema.
fn top_level_keys() -> Vec<String> {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("schemas/runbook.v1.schema.json").unwrap())
            .unwrap();
    schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// The words of a shell command line, as the shell would split it, with
/// variables as plain words and globs left alone.
fn words(line: &str) -> Vec<String> {
    let line = placeholders(line);
    let out = Command::new("bash")
        .args([
            "-c",
            "set -f; eval \"set -- $1\"; for a in \"$@\"; do printf '%s\\0' \"$a\"; done",
            "_",
            &line,
        ])
        .env_clear()
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split('\0')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_runbook_command_in_the_docs_parses() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for doc in docs() {
        let text = std::fs::read_to_string(&doc).unwrap();
        for (info, line, body, on) in blocks(&text) {
            if !on || !matches!(info.as_str(), "" | "sh" | "bash" | "shell" | "console") {
                continue;
            }
            // Join continued lines, then take each command that runs runbook.
            let joined = body.replace("\\\n", " ");
            for (n, cmd) in joined.lines().enumerate() {
                let cmd = cmd.trim().trim_start_matches("$ ");
                let cmd = cmd.split(" #").next().unwrap_or(cmd);
                let rest = if let Some(r) = cmd.strip_prefix("runbook ") {
                    r
                } else if let Some(r) = cmd.split_once("cargo run --release -- ").map(|x| x.1) {
                    r
                } else {
                    continue;
                };
                // A synopsis (`[--flag VALUE]`) shows a command's shape, not a command.
                if rest.contains("[-") {
                    continue;
                }
                // A pipeline or a chain: only runbook's own part.
                let rest = rest.split(['|', ';']).next().unwrap_or(rest);
                let rest = rest
                    .split("&&")
                    .next()
                    .unwrap_or(rest)
                    .split(" >")
                    .next()
                    .unwrap_or(rest);
                let args = words(rest);
                checked += 1;
                if let Err(e) = runbook::cli::check_args(args.clone()) {
                    failures.push(format!(
                        "{}:{}: `runbook {}`:\n{e}",
                        doc.display(),
                        line + n,
                        args.join(" ")
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(checked >= 10, "only {checked} commands found in the docs");
}
