//! `runbook targets list|matrix` and `runbook report merge`: the commands
//! around a fleet that never connect.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::exit;
use crate::fleet::report;
use crate::fleet::targets::{self, Choice, Selector, Shard};

/// Read the targets file, or print why not (exit 5).
fn load(path: &Path, color: bool, stderr: &mut impl Write) -> Result<targets::Targets, u8> {
    targets::load(path).map_err(|invalid| {
        let _ = write!(stderr, "{}", invalid.render(color));
        exit::INVALID
    })
}

/// `runbook targets list`: the targets a run with these choices takes,
/// with their shard of `--shards`, labels and connection (no password).
pub fn list(
    path: &Path,
    select: &[Selector],
    shard: Option<Shard>,
    json: bool,
    color: bool,
    stdout: &mut impl Write,
    stderr: &mut impl Write,
) -> u8 {
    let file = match load(path, color, stderr) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let chosen = Choice {
        select,
        shard,
        only: None,
    }
    .apply(&file.list);
    if json {
        let rows: Vec<serde_json::Value> = chosen
            .iter()
            .map(|t| {
                serde_json::json!({
                    "name": t.name,
                    "connection": t.describe(),
                    "labels": t.labels,
                    "params": t.params,
                })
            })
            .collect();
        let _ = writeln!(
            stdout,
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    } else {
        for t in &chosen {
            let labels: Vec<String> = t.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(stdout, "{}\t{}\t{}", t.name, t.describe(), labels.join(","));
        }
        let _ = writeln!(
            stderr,
            "{} of {} target(s){}",
            chosen.len(),
            file.list.len(),
            shard.map(|s| format!(" in shard {s}")).unwrap_or_default()
        );
    }
    exit::OK
}

/// `runbook targets matrix --shards N`: a GitHub Actions matrix, one
/// entry per shard that holds a target, for `fromJSON(...)`.
pub fn matrix(
    path: &Path,
    select: &[Selector],
    shards: u32,
    color: bool,
    stdout: &mut impl Write,
    stderr: &mut impl Write,
) -> u8 {
    if shards == 0 {
        let _ = writeln!(
            stderr,
            "error: --shards must be at least 1\n  = help: give the number of jobs to split the targets over"
        );
        return exit::INVALID;
    }
    let file = match load(path, color, stderr) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let chosen = Choice {
        select,
        shard: None,
        only: None,
    }
    .apply(&file.list);
    let include: Vec<serde_json::Value> = (1..=shards)
        .filter_map(|k| {
            let n = chosen
                .iter()
                .filter(|t| targets::shard_of(&t.name, shards) == k)
                .count();
            (n > 0).then(
                || serde_json::json!({"shard": format!("{k}/{shards}"), "index": k, "targets": n}),
            )
        })
        .collect();
    let _ = writeln!(stdout, "{}", serde_json::json!({ "include": include }));
    exit::OK
}

/// `runbook report merge DIR...`: one fleet report from its shards'.
/// Exits with the merged run's code, so a merge job fails as the fleet did.
pub fn merge(
    dirs: &[PathBuf],
    out: &Path,
    junit: Option<&Path>,
    stdout: &mut impl Write,
    stderr: &mut impl Write,
) -> u8 {
    let merged = match report::merge(dirs, out) {
        Ok(m) => m,
        Err(e) => {
            let _ = writeln!(
                stderr,
                "error: failed to merge the reports: {e}\n  = help: {}",
                e.hint()
            );
            return exit::INVALID;
        }
    };
    if let Err(e) = write_merged(&merged, out, junit) {
        // `{:#}`: the failure with each context that led to it.
        let _ = writeln!(
            stderr,
            "error: {e:#}\n  = help: choose a writable place with --report-dir DIR"
        );
        return exit::REPORT_FAILED;
    }
    if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY")
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(summary)
    {
        let _ = f.write_all(report::markdown(&merged).as_bytes());
    }
    let c = &merged.counts;
    let code = merged.fleet.exit_code.unwrap_or(exit::OK);
    let _ = writeln!(
        stdout,
        "merged {} report(s): {} target(s), {} succeeded, {} failed, {} not started (exit {code})\nreport: {}",
        dirs.len(),
        c.total,
        c.succeeded,
        c.failed,
        c.not_started,
        out.join("report.md").display()
    );
    code
}

/// The merged report's files. Nothing matches on why a write failed: it is
/// said, with what was being written, and the command exits 7.
fn write_merged(
    merged: &report::FleetReport,
    out: &Path,
    junit: Option<&Path>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(out)
        .with_context(|| format!("failed to create the report directory `{}`", out.display()))?;
    for (name, text) in [
        ("report.json", merged.to_json()),
        ("report.md", report::markdown(merged)),
    ] {
        let path = out.join(name);
        crate::fsutil::write_atomic(&path, text.as_bytes())
            .with_context(|| format!("failed to write the merged report `{}`", path.display()))?;
    }
    if let Some(j) = junit {
        crate::fsutil::write_atomic(j, report::junit(merged, out).as_bytes())
            .with_context(|| format!("failed to write the JUnit report `{}`", j.display()))?;
    }
    Ok(())
}
