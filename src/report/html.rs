//! `report.html`: one self-contained page (inline CSS and SVG, no script,
//! nothing fetched) drawn from `report.json` alone, so an old run can be
//! drawn again (`runbook report html`). It shows the verdict in plain
//! words, a timeline of every step with retries and compensations marked,
//! lock impact, a backfill's rows over time, rehearsal timings per
//! migration, schema differences as diffs, and the rows each check found.
//! Secrets are already `[REDACTED]` in report.json; nothing else is read.

use std::fmt::Write;

use serde_json::Value;

/// Text made safe inside HTML (and SVG) text and attributes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

/// Milliseconds since the epoch of an RFC 3339 time, when it is one.
fn epoch_ms(v: &Value) -> Option<u128> {
    let t = humantime::parse_rfc3339(v.as_str()?).ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis())
}

fn duration(ms: Option<u64>) -> String {
    match ms {
        None => "—".into(),
        Some(ms) if ms < 1000 => format!("{ms} ms"),
        Some(ms) if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) => format!("{}m {:02}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// What an exit code says of the database (docs/exit-codes.md).
fn meaning(code: Option<u64>) -> &'static str {
    match code {
        Some(0) => "changed and verified",
        Some(1) => "untouched: the run stopped before it changed anything",
        Some(2) => "back where it started: the undo was verified",
        Some(3) => "changed, and verification failed; nothing was undone",
        Some(4) => "unknown or partly undone: a person must act",
        Some(5) => "nothing ran",
        Some(6) => "as the phases before the unapproved gate left it",
        Some(7) => "as the run left it, but its report could not be written",
        Some(130) => "interrupted: see what was undone below",
        _ => "still running",
    }
}

/// The colour class of a status.
fn tone(status: &str) -> &'static str {
    match status {
        "succeeded" | "ok" | "equal" => "ok",
        "failed"
        | "compensation_failed"
        | "timed_out"
        | "rollback_failed"
        | "rollback_unverified"
        | "partly_undone"
        | "not_undone"
        | "verify_failed"
        | "differs" => "bad",
        "rolled_back" | "preflight_failed" | "failed_unchanged" | "interrupted" | "cancelled"
        | "not_approved" | "locked" | "slow" => "warn",
        "running" => "run",
        _ => "skip",
    }
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d232b;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.verdict{padding:16px 18px;border-radius:8px;margin:16px 0;border-left:6px solid}
.verdict p{margin:4px 0}.verdict strong{font-size:17px}
.ok{--c:#1a7f37}.bad{--c:#cf222e}.warn{--c:#bc4c00}.run{--c:#0969da}.skip{--c:#8c959f}
.verdict.ok{background:#dafbe1;border-color:#1a7f37}.verdict.bad{background:#ffebe9;border-color:#cf222e}
.verdict.warn{background:#fff1e5;border-color:#bc4c00}.verdict.run,.verdict.skip{background:#ddf4ff;border-color:#0969da}
.badge{display:inline-block;padding:0 7px;border-radius:10px;font-size:12px;color:#fff;background:var(--c)}
table{border-collapse:collapse;width:100%;background:#fff;margin:6px 0}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e4e7eb;vertical-align:top}
th{font-weight:600;background:#f0f2f4}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.meta{color:#57606a}.slow{background:#fff1e5}.muted{color:#8c959f}
pre{background:#fff;border:1px solid #e4e7eb;padding:8px;overflow:auto;margin:4px 0}
.add{color:#1a7f37}.del{color:#cf222e}
svg{background:#fff;border:1px solid #e4e7eb;display:block;max-width:100%}
svg text{font:11px system-ui,sans-serif;fill:#1d232b}
.legend span{margin-right:14px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;background:var(--c)}
";

/// Every step of the report, in the order it lists them: the phases',
/// then each rollback branch's, then `finally`'s; with where each sits.
fn all_steps(r: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    for p in r["phases"].as_array().into_iter().flatten() {
        for s in p["steps"].as_array().into_iter().flatten() {
            out.push((text(p, "id").to_string(), s));
        }
    }
    for (i, b) in r["branches"].as_array().into_iter().flatten().enumerate() {
        for s in b["steps"].as_array().into_iter().flatten() {
            out.push((format!("rollback {} ({})", i + 1, text(b, "scope")), s));
        }
    }
    for s in r["finally"].as_array().into_iter().flatten() {
        out.push(("finally".to_string(), s));
    }
    out
}

/// The whole page.
pub fn render(r: &Value) -> String {
    let run = &r["run"];
    let rb = &r["runbook"];
    let status = text(run, "status");
    let code = run["exit_code"].as_u64();
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} {} — {}</title><style>{STYLE}</style></head><body><main>\n",
        esc(text(rb, "name")),
        esc(&rb["version"].to_string().replace('"', "")),
        esc(status)
    );
    let _ = write!(
        o,
        "<h1>{} <span class=\"meta\">{}</span></h1>\n<p class=\"meta\">run <code>{}</code> on <code>{}@{}:{}/{}</code>, started {}, took {}</p>\n",
        esc(text(rb, "name")),
        esc(&rb["version"].to_string().replace('"', "")),
        esc(text(run, "id")),
        esc(text(&r["target"], "user")),
        esc(text(&r["target"], "host")),
        r["target"]["port"],
        esc(text(&r["target"], "database")),
        esc(text(run, "started_at")),
        duration(run["duration_ms"].as_u64()),
    );
    let _ = write!(
        o,
        "<section class=\"verdict {}\" id=\"verdict\"><p><strong>{}</strong></p><p>Exit code {}: the database is {}.</p></section>",
        tone(status),
        esc(text(run, "verdict")),
        code.map_or_else(|| "—".to_string(), |c| c.to_string()),
        meaning(code),
    );
    for w in r["warnings"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "<p class=\"warn\">⚠ {}</p>",
            esc(w.as_str().unwrap_or_default())
        );
    }
    timeline(&mut o, r);
    steps_table(&mut o, r);
    lock_impact(&mut o, r);
    backfills(&mut o, r);
    rehearsals(&mut o, r);
    differences(&mut o, r);
    checks(&mut o, r);
    let _ = write!(
        o,
        "<p class=\"meta\">runbook {} · report {} · drawn from report.json</p>\n</main></body></html>\n",
        esc(text(&r["runner"], "version")),
        esc(&r["report_version"].to_string().replace('"', ""))
    );
    o
}

/// Gantt bars: one row per step that ran, placed by its start and length.
fn timeline(o: &mut String, r: &Value) {
    let Some(t0) = epoch_ms(&r["run"]["started_at"]) else {
        return;
    };
    let steps = all_steps(r);
    let ran: Vec<&(String, &Value)> = steps
        .iter()
        .filter(|(_, s)| epoch_ms(&s["started_at"]).is_some())
        .collect();
    if ran.is_empty() {
        return;
    }
    let end = ran
        .iter()
        .filter_map(|(_, s)| {
            Some(epoch_ms(&s["started_at"])? + u128::from(s["duration_ms"].as_u64().unwrap_or(0)))
        })
        .max()
        .unwrap_or(t0)
        .max(t0 + u128::from(r["run"]["duration_ms"].as_u64().unwrap_or(0)))
        .max(t0 + 1);
    let span = (end - t0) as f64;
    let (label_w, chart_w, row_h) = (260.0, 760.0, 22.0);
    let height = row_h * ran.len() as f64 + 34.0;
    let x = |t: u128| label_w + (t.saturating_sub(t0)) as f64 / span * chart_w;
    let _ = write!(
        o,
        "<h2>Timeline</h2>\n<p class=\"legend\"><span class=\"ok\"><i></i>succeeded</span><span class=\"bad\"><i></i>failed</span><span class=\"warn\"><i></i>undone or stopped</span><span class=\"skip\"><i></i>skipped</span> ▮ a retry · ▨ a compensation</p>\n\
         <svg id=\"timeline\" width=\"{}\" height=\"{height}\" viewBox=\"0 0 {} {height}\" role=\"img\" aria-label=\"step timeline\">\n\
         <defs><pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\"><rect width=\"3\" height=\"6\" fill=\"#fff\" fill-opacity=\".55\"/></pattern></defs>\n",
        label_w + chart_w + 20.0,
        label_w + chart_w + 20.0
    );
    for (i, (place, s)) in ran.iter().enumerate() {
        let y = 8.0 + row_h * i as f64;
        let start = epoch_ms(&s["started_at"]).unwrap_or(t0);
        let ms = s["duration_ms"].as_u64().unwrap_or(0);
        let x0 = x(start);
        let w = (ms as f64 / span * chart_w).max(2.0);
        let status = text(s, "status");
        let color = match tone(status) {
            "ok" => "#1a7f37",
            "bad" => "#cf222e",
            "warn" => "#bc4c00",
            "run" => "#0969da",
            _ => "#8c959f",
        };
        let label = format!("{place}.{}", text(s, "id"));
        let short: String = label.chars().take(40).collect();
        let _ = write!(
            o,
            "<g class=\"step\" data-step=\"{}\"><title>{} — {} in {}</title><text x=\"4\" y=\"{}\">{}</text>\
             <rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{}\" rx=\"2\" fill=\"{color}\"/>",
            esc(&label),
            esc(&label),
            esc(status),
            duration(Some(ms)),
            y + 14.0,
            esc(&short),
            row_h - 6.0,
        );
        if text(s, "role") == "compensation" {
            let _ = write!(
                o,
                "<rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{}\" fill=\"url(#hatch)\"/>",
                row_h - 6.0
            );
        }
        for a in s["attempts"].as_array().into_iter().flatten().skip(1) {
            if let Some(at) = epoch_ms(&a["started_at"]) {
                let _ = write!(
                    o,
                    "<rect class=\"retry\" x=\"{:.1}\" y=\"{:.1}\" width=\"3\" height=\"{}\" fill=\"#1d232b\"><title>attempt {}</title></rect>",
                    x(at) - 1.0,
                    y - 2.0,
                    row_h - 2.0,
                    a["attempt"]
                );
            }
        }
        o.push_str("</g>\n");
    }
    let _ = write!(
        o,
        "<text x=\"{label_w}\" y=\"{}\">0</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text></svg>",
        height - 8.0,
        label_w + chart_w,
        height - 8.0,
        duration(Some(span as u64))
    );
}

/// Every step, with its status, time, attempts and error.
fn steps_table(o: &mut String, r: &Value) {
    o.push_str("<h2>Steps</h2>\n<table id=\"steps\"><tr><th>phase</th><th>step</th><th>kind</th><th>status</th><th class=\"num\">time</th><th class=\"num\">attempts</th><th>error</th></tr>\n");
    for (place, s) in all_steps(r) {
        let status = text(s, "status");
        let attempts = s["attempts"].as_array().map_or(0, Vec::len);
        let err = &s["error"];
        let mut error = esc(text(err, "message"));
        for k in ["detail", "hint"] {
            if let Some(t) = err[k].as_str() {
                let _ = write!(error, "<br><span class=\"meta\">{k}: {}</span>", esc(t));
            }
        }
        let _ = writeln!(
            o,
            "<tr class=\"step-row\" data-step=\"{}\"><td>{}</td><td><code>{}</code>{}</td><td>{}</td><td><span class=\"badge {}\">{}</span></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{error}</td></tr>",
            esc(&format!("{place}.{}", text(s, "id"))),
            esc(&place),
            esc(text(s, "id")),
            s["name"]
                .as_str()
                .map(|n| format!(" <span class=\"meta\">{}</span>", esc(n)))
                .unwrap_or_default(),
            esc(text(s, "kind")),
            tone(status),
            esc(status),
            duration(s["duration_ms"].as_u64()),
            attempts,
        );
    }
    o.push_str("</table>\n");
}

/// Who waited on each step's locks, and how long.
fn lock_impact(o: &mut String, r: &Value) {
    let rows: Vec<(String, &Value)> = all_steps(r)
        .into_iter()
        .filter(|(_, s)| s["lock_impact"]["samples"].as_u64().unwrap_or(0) > 0)
        .map(|(p, s)| (format!("{p}.{}", text(s, "id")), &s["lock_impact"]))
        .collect();
    if rows.is_empty() {
        return;
    }
    let worst = rows
        .iter()
        .filter_map(|(_, l)| l["waited_max_ms"].as_u64())
        .max()
        .unwrap_or(0)
        .max(1);
    o.push_str("<h2>Lock impact</h2>\n<table id=\"locks\"><tr><th>step</th><th class=\"num\">sessions waited</th><th class=\"num\">longest wait</th><th></th><th class=\"num\">total waited</th><th class=\"num\">ACCESS EXCLUSIVE held</th></tr>\n");
    for (step, l) in rows {
        let max = l["waited_max_ms"].as_u64().unwrap_or(0);
        let _ = writeln!(
            o,
            "<tr><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td><svg width=\"160\" height=\"12\"><rect width=\"{:.0}\" height=\"12\" fill=\"{}\"/></svg></td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&step),
            l["sessions_waited"].as_u64().unwrap_or(0),
            duration(Some(max)),
            max as f64 / worst as f64 * 160.0,
            if max >= 1000 { "#cf222e" } else { "#bc4c00" },
            duration(l["waited_total_ms"].as_u64()),
            duration(l["access_exclusive_ms"].as_u64()),
        );
    }
    o.push_str("</table>\n");
}

/// How big a backfill's batches were: `500` keys each, or, sized by time,
/// `120–4000 keys (about 200 ms each)`.
fn batch_sizes(d: &Value) -> String {
    match d["batch_time_ms"].as_u64() {
        Some(t) => format!(
            "{}–{} keys (about {t} ms each)",
            d["batch_keys"]["min"], d["batch_keys"]["max"]
        ),
        None => d["batch_size"].to_string(),
    }
}

/// A backfill's rows over time, from its `progress` points.
fn backfills(o: &mut String, r: &Value) {
    for (place, s) in all_steps(r) {
        let d = &s["details"];
        let Some(points) = d["progress"].as_array().filter(|p| !p.is_empty()) else {
            continue;
        };
        let pts: Vec<(f64, f64)> = points
            .iter()
            .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
            .collect();
        let max_t = pts.iter().map(|p| p.0).fold(1.0, f64::max);
        let max_n = pts
            .iter()
            .map(|p| p.1)
            .fold(d["total_estimate"].as_f64().unwrap_or(1.0), f64::max)
            .max(1.0);
        let (w, h, left, bottom) = (700.0, 220.0, 70.0, 24.0);
        let path: Vec<String> = std::iter::once((0.0, 0.0))
            .chain(pts.iter().copied())
            .map(|(t, n)| {
                format!(
                    "{:.1},{:.1}",
                    left + t / max_t * (w - left - 10.0),
                    h - bottom - n / max_n * (h - bottom - 10.0)
                )
            })
            .collect();
        let _ = write!(
            o,
            "<h2>Backfill <code>{}.{}</code></h2>\n<p class=\"meta\">{} rows updated in {} batches of {}, {} rows/s; batch p50 {} ms, p99 {} ms{}</p>\n\
             <svg class=\"backfill\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"backfill progress\">\
             <polyline fill=\"none\" stroke=\"#0969da\" stroke-width=\"2\" points=\"{}\"/>\
             <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#8c959f\"/><line x1=\"{left}\" y1=\"10\" x2=\"{left}\" y2=\"{}\" stroke=\"#8c959f\"/>\
             <text x=\"4\" y=\"16\">{max_n:.0}</text><text x=\"4\" y=\"{}\">0</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text></svg>\n",
            esc(&place),
            esc(text(s, "id")),
            d["rows_updated"],
            d["batches"],
            batch_sizes(d),
            d["rows_per_second"],
            d["batch_ms"]["p50"],
            d["batch_ms"]["p99"],
            if d["throttled_ms"].as_u64().unwrap_or(0) > 0 {
                format!(", throttled {}", duration(d["throttled_ms"].as_u64()))
            } else {
                String::new()
            },
            path.join(" "),
            h - bottom,
            w - 10.0,
            h - bottom,
            h - bottom,
            h - bottom,
            w - 10.0,
            h - 6.0,
            duration(Some(max_t as u64)),
        );
    }
}

/// Findings as `verdict: message` lines, escaped.
fn said(findings: &[&Value]) -> String {
    findings
        .iter()
        .map(|f| format!("{}: {}", esc(text(f, "verdict")), esc(text(f, "message"))))
        .collect::<Vec<_>>()
        .join("<br>")
}

/// Each rehearsed migration: its verdict and the time of each leg, slow
/// ones marked.
fn rehearsals(o: &mut String, r: &Value) {
    for (place, s) in all_steps(r) {
        let Some(migrations) = s["details"]["migrations"].as_array() else {
            continue;
        };
        // A verdict the step counts as an error is red, another finding
        // amber, as report.md marks them ❌ and ⚠️.
        let errors: Vec<&str> = s["details"]["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let tone = |verdict: &str| match verdict {
            "ok" => "ok",
            "not_rehearsed" => "skip",
            v if errors.contains(&v) => "bad",
            _ => "warn",
        };
        let longest = migrations
            .iter()
            .flat_map(|m| m["legs"].as_array().into_iter().flatten())
            .filter_map(|l| l["duration_ms"].as_u64())
            .max()
            .unwrap_or(0)
            .max(1);
        let _ = write!(
            o,
            "<h2>Rehearsal <code>{}.{}</code></h2>\n<table class=\"rehearsal\"><tr><th>version</th><th>name</th><th>verdict</th><th class=\"num\">up</th><th class=\"num\">down</th><th class=\"num\">re-up</th><th>findings</th></tr>\n",
            esc(&place),
            esc(text(s, "id"))
        );
        for m in migrations {
            let verdict = text(m, "verdict");
            let findings: Vec<&Value> = m["findings"].as_array().into_iter().flatten().collect();
            let slow_leg = |leg: &str| {
                findings.iter().any(|f| {
                    text(f, "verdict") == "slow"
                        && text(f, "message").starts_with(&format!("{leg} took"))
                })
            };
            let cell = |leg: &str| {
                let l = m["legs"]
                    .as_array()
                    .and_then(|ls| ls.iter().find(|l| text(l, "leg") == leg));
                match l {
                    None => "<td class=\"num muted\">not run</td>".to_string(),
                    Some(l) => {
                        let ms = l["duration_ms"].as_u64().unwrap_or(0);
                        format!(
                            "<td class=\"num{}\">{}<svg width=\"60\" height=\"8\"><rect width=\"{:.0}\" height=\"8\" fill=\"{}\"/></svg></td>",
                            if slow_leg(leg) { " slow" } else { "" },
                            duration(Some(ms)),
                            ms as f64 / longest as f64 * 60.0,
                            if l["ok"] == false {
                                "#cf222e"
                            } else {
                                "#0969da"
                            }
                        )
                    }
                }
            };
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{}</td><td><span class=\"badge {}\">{}</span></td>{}{}{}<td>{}</td></tr>",
                esc(text(m, "version")),
                esc(text(m, "name")),
                tone(verdict),
                esc(verdict),
                cell("up"),
                cell("down"),
                cell("reup"),
                said(&findings)
            );
        }
        // The set's own findings (whole-set parity, drift, a forward-only
        // set), as report.md's row `*`: counts of ok rows alone would read
        // as a pass when the set failed.
        let set: Vec<&Value> = s["details"]["set_findings"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        if !set.is_empty() {
            let verdict = s["details"]["set_verdict"]
                .as_str()
                .unwrap_or_else(|| text(set[0], "verdict"));
            let _ = writeln!(
                o,
                "<tr><td>*</td><td>the whole set</td><td><span class=\"badge {}\">{}</span></td><td class=\"num muted\"></td><td class=\"num muted\"></td><td class=\"num muted\"></td><td>{}</td></tr>",
                tone(verdict),
                esc(verdict),
                said(&set)
            );
        }
        o.push_str("</table>\n");
    }
}

/// Schema (and data) differences an undo left, as diffs.
fn differences(o: &mut String, r: &Value) {
    let mut any = false;
    for b in r["branches"].as_array().into_iter().flatten() {
        let v = &b["verification"];
        let Some(changes) = v["changes"].as_array().filter(|c| !c.is_empty()) else {
            continue;
        };
        if !any {
            o.push_str("<h2>Differences after the rollback</h2>\n");
            any = true;
        }
        let _ = writeln!(
            o,
            "<p>Against {}: <span class=\"badge {}\">{}</span></p>",
            esc(text(v, "against")).replace('_', " "),
            tone(text(v, "result")),
            esc(text(v, "result"))
        );
        for c in changes {
            let lines: Vec<String> = c["diff"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|l| {
                    let class = if l.starts_with('+') {
                        "add"
                    } else if l.starts_with('-') {
                        "del"
                    } else {
                        ""
                    };
                    format!("<span class=\"{class}\">{}</span>", esc(l))
                })
                .collect();
            let _ = writeln!(
                o,
                "<p><code>{}</code> {}</p><pre class=\"diff\">{}</pre>",
                esc(text(c, "object")),
                esc(text(c, "change")),
                lines.join("\n")
            );
        }
    }
}

/// What each check expected and found.
fn checks(o: &mut String, r: &Value) {
    let rows: Vec<(String, &Value)> = all_steps(r)
        .into_iter()
        .filter(|(_, s)| s["check"].is_object())
        .map(|(p, s)| (format!("{p}.{}", text(s, "id")), s))
        .collect();
    if rows.is_empty() {
        return;
    }
    o.push_str("<h2>Checks</h2>\n<table id=\"checks\"><tr><th>check</th><th class=\"num\">rows</th><th>expected</th><th>found</th><th></th></tr>\n");
    for (step, s) in rows {
        let c = &s["check"];
        let mut first = true;
        let expectations: Vec<&Value> =
            c["expectations"].as_array().into_iter().flatten().collect();
        let assertions: Vec<&Value> = c["assertions"].as_array().into_iter().flatten().collect();
        if expectations.is_empty() && assertions.is_empty() {
            let _ = writeln!(
                o,
                "<tr><td><code>{}</code></td><td class=\"num\">{}</td><td colspan=\"2\" class=\"meta\">no expectation</td><td><span class=\"badge {}\">{}</span></td></tr>",
                esc(&step),
                c["rows"],
                tone(text(s, "status")),
                esc(text(s, "status"))
            );
            continue;
        }
        // The step and its row count head its first line only.
        let lead = |first: bool| {
            if first {
                format!(
                    "<td><code>{}</code></td><td class=\"num\">{}</td>",
                    esc(&step),
                    c["rows"]
                )
            } else {
                "<td></td><td class=\"num\"></td>".to_string()
            }
        };
        for e in expectations {
            let passed = e["passed"] == true;
            let _ = writeln!(
                o,
                "<tr>{}<td><code>{} {} {}</code></td><td><code>{}</code></td><td><span class=\"badge {}\">{}</span></td></tr>",
                lead(first),
                esc(text(e, "target")),
                esc(text(e, "op")),
                esc(&e["expected"].to_string()),
                esc(&e["actual"].to_string()),
                if passed { "ok" } else { "bad" },
                if passed { "passed" } else { "failed" },
            );
            first = false;
        }
        for a in assertions {
            let passed = a["passed"] == true;
            let _ = writeln!(
                o,
                "<tr>{}<td colspan=\"2\"><code>{}</code></td><td><span class=\"badge {}\">{}</span></td></tr>",
                lead(first),
                esc(text(a, "expr")),
                if passed { "ok" } else { "bad" },
                if passed { "passed" } else { "failed" },
            );
            first = false;
        }
        if let Some(note) = s["details"]["note"].as_str() {
            let _ = writeln!(
                o,
                "<tr><td></td><td class=\"num\"></td><td colspan=\"3\" class=\"meta\">note: {}</td></tr>",
                esc(note)
            );
        }
    }
    o.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Value {
        serde_json::json!({
            "report_version": "1",
            "runbook": {"name": "rb", "version": "1.0.0"},
            "runner": {"version": "0.1.0"},
            "run": {"id": "R1", "status": "rolled_back", "exit_code": 2,
                     "verdict": "FAILED at expand.b: rolled back cleanly <script>",
                     "started_at": "2026-11-30T10:00:00.000Z", "duration_ms": 1500},
            "target": {"user": "app", "host": "db", "port": 5432, "database": "shop"},
            "warnings": ["a weak secret"],
            "phases": [{"id": "expand", "steps": [
                {"id": "a", "kind": "sql", "role": "main", "status": "rolled_back",
                 "started_at": "2026-11-30T10:00:00.100Z", "duration_ms": 300,
                 "attempts": [{"attempt": 1, "started_at": "2026-11-30T10:00:00.100Z"},
                              {"attempt": 2, "started_at": "2026-11-30T10:00:00.300Z"}],
                 "lock_impact": {"samples": 3, "sessions_waited": 2, "waited_max_ms": 1200,
                                 "waited_total_ms": 1500, "access_exclusive_ms": 80},
                 "check": {"rows": 1, "expectations": [{"target": "n", "op": "eq", "expected": 1, "actual": 0, "passed": false}], "assertions": []}},
                {"id": "b", "kind": "backfill", "role": "main", "status": "failed",
                 "started_at": "2026-11-30T10:00:00.500Z", "duration_ms": 900,
                 "error": {"message": "duplicate key", "detail": "Key (id)=(1) already exists."},
                 "details": {"rows_updated": 10, "batches": 2, "batch_size": 5, "rows_per_second": 11.1,
                             "batch_ms": {"p50": 1, "p99": 2}, "progress": [[400, 5], [900, 10]]}}
            ]}],
            "branches": [{"scope": "phase", "steps": [
                {"id": "undo_a", "kind": "sql", "role": "compensation", "status": "succeeded",
                 "started_at": "2026-11-30T10:00:01.400Z", "duration_ms": 50}],
                "verification": {"against": "run_start", "result": "differs",
                                 "changes": [{"object": "index i", "change": "added", "diff": ["+ CREATE INDEX i"]}]}}],
            "finally": []
        })
    }

    #[test]
    fn a_checks_note_is_shown_with_it() {
        let mut r = report();
        r["phases"][0]["steps"][0]["details"] =
            serde_json::json!({"note": "no replica is connected <here>"});
        let html = render(&r);
        assert!(
            html.contains("note: no replica is connected &lt;here&gt;"),
            "{html}"
        );
        assert!(!render(&report()).contains("note: "));
    }

    #[test]
    fn batches_sized_by_time_show_their_range_not_the_first_size() {
        let fixed = serde_json::json!({"batch_size": 500});
        assert_eq!(batch_sizes(&fixed), "500");
        let timed = serde_json::json!({"batch_size": 500, "batch_time_ms": 200,
                                       "batch_keys": {"min": 120, "max": 4000}});
        assert_eq!(batch_sizes(&timed), "120–4000 keys (about 200 ms each)");
    }

    #[test]
    fn the_page_shows_every_step_and_escapes_what_it_quotes() {
        let html = render(&report());
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(
            html.contains("rolled back cleanly &lt;script&gt;"),
            "escaped"
        );
        assert!(!html.contains("<script"), "no script at all");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "nothing fetched"
        );
        for step in ["expand.a", "expand.b", "rollback 1 (phase).undo_a"] {
            assert!(html.contains(&format!("data-step=\"{step}\"")), "{step}");
        }
        assert!(html.contains("Exit code 2: the database is back where it started"));
        assert!(html.contains("class=\"retry\""), "a retry is marked");
        assert!(html.contains("url(#hatch)"), "a compensation is marked");
        assert!(html.contains("Lock impact"));
        assert!(html.contains("class=\"backfill\""));
        assert!(html.contains("<span class=\"add\">+ CREATE INDEX i</span>"));
        assert!(html.contains("detail: Key (id)=(1) already exists."));
        assert!(html.contains("<code>n eq 1</code></td><td><code>0</code>"));
    }

    #[test]
    fn a_report_of_a_run_still_going_draws_without_panicking() {
        let mut r = report();
        r["run"]["exit_code"] = Value::Null;
        r["run"]["status"] = "running".into();
        r["phases"][0]["steps"][1]["started_at"] = Value::Null;
        let html = render(&r);
        assert!(html.contains("still running"));
        let empty = render(&serde_json::json!({}));
        assert!(empty.contains("</html>"));
    }

    /// Kratos's whole-set rehearsal: every migration's own legs ran (ok),
    /// the set's downs left objects behind. The page drew the ok rows
    /// only, and failing verdicts in the neutral colour of a skip.
    #[test]
    fn a_rehearsal_draws_the_sets_verdict_and_colours_errors_red() {
        let mut r = report();
        r["phases"][0]["steps"][1] = serde_json::json!({
            "id": "rehearse", "kind": "rehearse", "role": "main", "status": "failed",
            "started_at": "2026-11-30T10:00:00.500Z", "duration_ms": 900,
            "details": {
                "errors": ["irreversible", "parity_mismatch"],
                "migrations": [
                    {"version": "1", "name": "a", "verdict": "ok", "findings": [],
                     "legs": [{"leg": "up", "duration_ms": 3, "ok": true}]},
                    {"version": "2", "name": "b", "verdict": "irreversible",
                     "findings": [{"verdict": "irreversible", "message": "no down"}],
                     "legs": [{"leg": "up", "duration_ms": 3, "ok": true}]},
                    {"version": "3", "name": "c", "verdict": "slow",
                     "findings": [{"verdict": "slow", "message": "up took 9s"}],
                     "legs": [{"leg": "up", "duration_ms": 9000, "ok": true}]}
                ],
                "set_findings": [{"verdict": "parity_mismatch",
                                  "message": "after every down, objects are left over"}],
                "set_verdict": "parity_mismatch"
            }
        });
        let html = render(&r);
        assert!(
            html.contains("<td>*</td><td>the whole set</td><td><span class=\"badge bad\">parity_mismatch</span>"),
            "{html}"
        );
        assert!(html.contains("after every down, objects are left over"));
        assert!(html.contains("<span class=\"badge bad\">irreversible</span>"));
        assert!(html.contains("<span class=\"badge warn\">slow</span>"));
        assert!(html.contains("<span class=\"badge ok\">ok</span>"));
    }
}
