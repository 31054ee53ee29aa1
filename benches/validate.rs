//! Where `runbook validate` spends its time, in process, beside its floor:
//! parsing the same file with serde_yaml alone. scripts/bench/validate.py
//! writes the runbook (1,000 steps by default) and runs this on it:
//!
//!   cargo bench --bench validate -- FILE [ROUNDS]
//!
//! Each figure is the median of ROUNDS (default 30) calls. The JSON Schema
//! is compiled once per process; its compile time is shown apart, since
//! the whole-process figure pays it once.

// A benchmark that prints its figures; the run-time rule against the std
// print macros (src/term.rs) is for the tool, not for this.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::hint::black_box;
use std::time::{Duration, Instant};

fn median(rounds: usize, mut f: impl FnMut()) -> Duration {
    let mut v: Vec<Duration> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; everything else is ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    // `--parse-once FILE`: read and parse the file once with serde_yaml,
    // then exit. Timed as a whole process, this is validate's floor on
    // the same terms: process start, the read and the parse.
    if args.first().map(String::as_str) == Some("--parse-once") {
        let text = std::fs::read_to_string(&args[1]).expect("the runbook file is readable");
        black_box(serde_yaml::from_str::<serde_yaml::Value>(&text).expect("the file is YAML"));
        return;
    }
    let Some(path) = args.first() else {
        eprintln!("usage: cargo bench --bench validate -- FILE [ROUNDS] | --parse-once FILE");
        std::process::exit(2);
    };
    let rounds: usize = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(30);
    let text = std::fs::read_to_string(path).expect("the runbook file is readable");
    let schema: serde_json::Value =
        serde_json::from_str(runbook::schema::RUNBOOK_SCHEMA).expect("schema is JSON");
    let inputs = runbook::validate::Inputs::default();
    let file = std::path::Path::new(path);
    // The first call compiles the schema; every later one reuses it.
    runbook::validate::validate_file(file, &inputs, runbook::validate::ParamCheck::GivenOnly)
        .expect("the benchmark runbook is valid");

    let rows = [
        (
            "serde_yaml::from_str (the floor)",
            median(rounds, || {
                black_box(serde_yaml::from_str::<serde_yaml::Value>(&text).unwrap());
            }),
        ),
        (
            "load (YAML to a JSON value)",
            median(rounds, || {
                black_box(runbook::load::load_str(path.as_str(), text.as_str()).unwrap());
            }),
        ),
        (
            "compile the JSON Schema (once per process)",
            median(rounds, || {
                black_box(jsonschema::draft202012::new(&schema).unwrap());
            }),
        ),
        (
            "validate_file, schema compiled",
            median(rounds, || {
                black_box(
                    runbook::validate::validate_file(
                        file,
                        &inputs,
                        runbook::validate::ParamCheck::GivenOnly,
                    )
                    .unwrap(),
                );
            }),
        ),
    ];
    let floor = rows[0].1;
    println!("{} ({} bytes), median of {rounds}", path, text.len());
    for (name, d) in rows {
        println!(
            "  {name:<44} {:>8.2} ms  {:>5.1}x the floor",
            d.as_secs_f64() * 1e3,
            d.as_secs_f64() / floor.as_secs_f64()
        );
    }
}
