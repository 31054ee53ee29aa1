//! A seeded mutation fuzzer over every runbook users copy (runbooks/,
//! examples/). Each mutant goes through what `runbook validate` and `runbook
//! plan` do. None may panic or hang, every refusal must point into the file
//! (line and column), and the real binary exits 5 on a sample of them.
//!
//! `RUNBOOK_FUZZ_MUTANTS` (default 10,000) and `RUNBOOK_FUZZ_SEED` choose
//! the run; `scripts/fuzz.sh` runs a long one in release mode. A failure
//! prints the seed and writes the mutant to `target/fuzz-failures/`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use runbook::load::load_str;
use runbook::plan::{RunInfo, build};
use runbook::validate::{Inputs, Invalid, ParamCheck, validate_doc};

/// A mutant that takes longer than this is a hang (debug build, 2 cores).
const LIMIT: Duration = Duration::from_secs(5);

/// What YAML, the schema and templates are sensitive to.
const TOKENS: &[&str] = &[
    "[",
    "]",
    "{",
    "}",
    ":",
    ": ",
    "- ",
    "\n",
    "  ",
    "'",
    "\"",
    "&a ",
    "*a",
    "!!str ",
    "!!binary ",
    "~",
    "{{ ",
    " }}",
    "{%",
    "%}",
    "{{ params.",
    "{{ steps.",
    "{{ vars.x }}",
    "| literal",
    "null",
    "-1",
    "0",
    "1e309",
    "99999999999999999999999",
    "\t",
    "#",
    "|\n",
    ">-\n",
    "? ",
    "<<: *a\n",
    "\u{0}",
    "\u{feff}",
    "é",
    "true",
    "[]",
    "{}",
    "transaction: false",
    "rollback: []",
    "on_failure: rollback",
    "kind: sql",
    "kind: migrate",
    "check: {}",
    "sql: ",
    "shell: ",
    "when: ",
    "timeout: 0s",
    "timeout: -5m",
    "retry: {attempts: 0}",
    "secret: true",
    "type: integer",
    "id: x",
    "id: x\n",
    "phases: []",
    "steps:\n",
    "default: ",
];

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yml" || x == "yaml")
            && std::fs::read_to_string(&p).is_ok_and(|t| t.contains("phases:"))
        {
            out.push(p);
        }
    }
}

fn seeds() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    yaml_files(Path::new("runbooks"), &mut files);
    yaml_files(Path::new("examples"), &mut files);
    files.sort();
    assert!(files.len() >= 5, "too few runbooks found: {files:?}");
    files
        .into_iter()
        .map(|p| {
            let t = std::fs::read_to_string(&p).unwrap();
            (p, t)
        })
        .collect()
}

/// A random position at a char boundary.
fn boundary(rng: &mut fastrand::Rng, s: &str) -> usize {
    let mut i = rng.usize(..=s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// One to three edits of the kinds that break real files: bytes lost or
/// inserted, lines duplicated, swapped or re-indented, a value replaced,
/// the file cut short.
fn mutate(rng: &mut fastrand::Rng, text: &str) -> String {
    let mut s = text.to_string();
    for _ in 0..rng.usize(1..=3) {
        match rng.u8(..9) {
            0 => {
                let a = boundary(rng, &s);
                let mut b = (a + rng.usize(1..24)).min(s.len());
                while !s.is_char_boundary(b) {
                    b -= 1;
                }
                s.replace_range(a..b, "");
            }
            1 | 2 => {
                let a = boundary(rng, &s);
                s.insert_str(a, TOKENS[rng.usize(..TOKENS.len())]);
            }
            3 => {
                let mut lines: Vec<&str> = s.lines().collect();
                if !lines.is_empty() {
                    let i = rng.usize(..lines.len());
                    lines.insert(i, lines[i]);
                }
                s = lines.join("\n");
            }
            4 => {
                let mut lines: Vec<&str> = s.lines().collect();
                if lines.len() > 1 {
                    let (i, j) = (rng.usize(..lines.len()), rng.usize(..lines.len()));
                    lines.swap(i, j);
                }
                s = lines.join("\n");
            }
            5 => {
                let mut lines: Vec<String> = s.lines().map(str::to_string).collect();
                if !lines.is_empty() {
                    let i = rng.usize(..lines.len());
                    if rng.bool() {
                        lines[i].insert_str(0, "  ");
                    } else {
                        lines[i] = lines[i].trim_start().to_string();
                    }
                }
                s = lines.join("\n");
            }
            6 => {
                // Replace the value of a `key: value` line.
                let lines: Vec<&str> = s.lines().collect();
                let keyed: Vec<usize> = (0..lines.len())
                    .filter(|&i| lines[i].contains(": "))
                    .collect();
                if let Some(&i) = keyed.get(rng.usize(..keyed.len().max(1))) {
                    let at = lines[i].find(": ").unwrap_or(0) + 2;
                    let new = format!("{}{}", &lines[i][..at], TOKENS[rng.usize(..TOKENS.len())]);
                    let mut owned: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                    owned[i] = new;
                    s = owned.join("\n");
                }
            }
            7 => {
                let a = boundary(rng, &s);
                let c = char::from(rng.u8(0x20..0x7f));
                let mut b = a + 1;
                while b < s.len() && !s.is_char_boundary(b) {
                    b += 1;
                }
                if a < s.len() {
                    s.replace_range(a..b.min(s.len()), &c.to_string());
                }
            }
            _ => {
                let a = boundary(rng, &s);
                s.truncate(a);
            }
        }
    }
    s
}

/// What went wrong with one mutant, if anything.
fn check(name: &str, text: &str) -> Option<String> {
    let started = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<(), Invalid> {
        let doc = match load_str(name, text) {
            Ok(d) => d,
            Err(f) => {
                return Err(Invalid {
                    file: name.into(),
                    files: vec![runbook::validate::FileDiagnostics {
                        source: f.source,
                        diagnostics: vec![f.diagnostic],
                    }],
                });
            }
        };
        let v = validate_doc(doc.clone(), &Inputs::default(), ParamCheck::GivenOnly)?;
        // What `plan` and `exec` do next, when no param is missing.
        if let Ok(v) = validate_doc(doc, &Inputs::default(), ParamCheck::RequireAll) {
            build(&v, &RunInfo::default())?;
        }
        drop(v);
        Ok(())
    }));
    let took = started.elapsed();
    if took > LIMIT {
        return Some(format!("took {took:?}"));
    }
    match outcome {
        Err(p) => Some(format!(
            "panicked: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
        Ok(Ok(())) => None,
        Ok(Err(invalid)) => {
            if invalid.count() == 0 {
                return Some("refused with no diagnostic".into());
            }
            for f in &invalid.files {
                for d in &f.diagnostics {
                    if f.source.name() == name && d.span.is_none() {
                        return Some(format!("an error without a place: {}", d.message));
                    }
                }
            }
            let shown = invalid.render(false);
            if !shown.contains(&format!("{name}:")) {
                return Some(format!("the rendered error names no line:\n{shown}"));
            }
            None
        }
    }
}

fn keep_failure(seed: u64, i: usize, text: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("seed-{seed}-mutant-{i}.yml"));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn mutated_runbooks_are_refused_cleanly_and_never_panic() {
    let n: usize = std::env::var("RUNBOOK_FUZZ_MUTANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let seed: u64 = std::env::var("RUNBOOK_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_261_130);
    let seeds = seeds();
    // Panics are caught and reported per mutant; keep their default
    // messages off the test's output.
    std::panic::set_hook(Box::new(|_| {}));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let seeds = &seeds;
                scope.spawn(move || {
                    let mut out = Vec::new();
                    let (mut valid, mut refused) = (0usize, 0usize);
                    for i in (t..n).step_by(threads) {
                        let mut rng = fastrand::Rng::with_seed(seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                        let (path, text) = &seeds[rng.usize(..seeds.len())];
                        let mutant = mutate(&mut rng, text);
                        let name = path.display().to_string();
                        match check(&name, &mutant) {
                            Some(why) => {
                                let kept = keep_failure(seed, i, &mutant);
                                out.push(format!(
                                    "mutant {i} of {} (RUNBOOK_FUZZ_SEED={seed}): {why}\n  kept in {}",
                                    path.display(),
                                    kept.display()
                                ));
                            }
                            None if mutant == *text => valid += 1,
                            None => refused += 1,
                        }
                    }
                    (out, valid, refused)
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            let (out, _, _) = h.join().unwrap();
            all.extend(out);
        }
        all
    });
    let _ = std::panic::take_hook();
    assert!(
        failures.is_empty(),
        "{} of {n} mutants failed:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The real binary, on a sample of refused mutants: exit code 5, and the
/// error names the file with its line and column.
#[test]
fn the_binary_exits_5_with_a_located_error_on_refused_mutants() {
    let seeds = seeds();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut tried = 0;
    while tried < 25 {
        let (path, text) = &seeds[rng.usize(..seeds.len())];
        let mutant = mutate(&mut rng, text);
        let file = dir.path().join(path.file_name().unwrap());
        std::fs::write(&file, &mutant).unwrap();
        let name = file.display().to_string();
        let refused = load_str(&name, mutant.as_str())
            .ok()
            .map(|d| validate_doc(d, &Inputs::default(), ParamCheck::GivenOnly).is_err())
            .unwrap_or(true);
        if !refused {
            continue;
        }
        tried += 1;
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
            .args(["validate", "--color", "never"])
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(5),
            "{stderr}\n--- mutant:\n{mutant}"
        );
        let located = regex::Regex::new(&format!(r"{}:\d+:\d+", regex::escape(&name))).unwrap();
        assert!(located.is_match(&stderr), "no file:line:col in:\n{stderr}");
    }
}
