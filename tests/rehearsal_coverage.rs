//! A rehearsal gives every migration a verdict. After a down or re-up
//! failure it goes on from the state after that migration's first up; only
//! an up that fails stops it, and what it did not reach is `not_rehearsed`,
//! never `ok`. Checked against a reference computed with psql and pg_dump.

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;
use support::{Case, Db, Run};

const HEAD: &str = "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: t, version: 1 }\n";

/// A migration of the generated set: its up and its down (None: no down).
struct Mig {
    name: String,
    up: String,
    down: Option<String>,
}

fn mig(name: &str, up: &str, down: Option<&str>) -> Mig {
    Mig {
        name: name.into(),
        up: up.into(),
        down: down.map(str::to_string),
    }
}

/// 36 migrations with defects spread through them: downs that fail, downs
/// that forget something, ups that cannot run again, a re-up that leaves a
/// different schema (so a later migration would fail if the rehearsal went
/// on from it), a down missing, and a down that fails half-way outside a
/// transaction (recovered on a fresh scratch database).
fn generated_set() -> Vec<Mig> {
    let mut set = Vec::new();
    for i in 1..=36 {
        let t = format!("t{i:02}");
        let good = mig(
            &format!("create_{t}"),
            &format!(
                "CREATE TABLE {t} (id bigint PRIMARY KEY, v text);\nCREATE INDEX {t}_v ON {t} (v);\n"
            ),
            Some(&format!("DROP TABLE {t};\n")),
        );
        set.push(match i {
            // A down that fails: irreversible.
            4 | 19 => mig(&good.name, &good.up, Some("DROP TABLE no_such_table;\n")),
            // A down that forgets the index it should drop: parity mismatch.
            7 | 23 => mig(
                &format!("index_on_{t}"),
                &format!("CREATE TABLE {t} (id bigint PRIMARY KEY);\nCREATE TABLE {t}_x (id bigint);\n"),
                Some(&format!("DROP TABLE {t};\n")),
            ),
            // An up that cannot run again after its down: the down leaves a
            // sequence behind, and the re-up creates it again.
            10 | 28 => mig(
                &good.name,
                &format!("CREATE SEQUENCE {t}_seq;\nCREATE TABLE {t} (id bigint DEFAULT nextval('{t}_seq'));\n"),
                Some(&format!("DROP TABLE {t};\n")),
            ),
            // A re-up that succeeds with a different schema: the down
            // renames instead of dropping. Going on from there, migration
            // 14 (which creates {t}_old) would fail its up.
            13 => mig(
                "renamed_on_down",
                &format!("CREATE TABLE {t} (id bigint);\n"),
                Some(&format!("ALTER TABLE {t} RENAME TO {t}_old;\n")),
            ),
            14 => mig(
                "create_t13_old",
                "CREATE TABLE t13_old (id bigint);\n",
                Some("DROP TABLE t13_old;\n"),
            ),
            // No down.
            16 => mig(&good.name, &good.up, None),
            // Outside a transaction, a down that fails on its second
            // statement: the first one (dropping the index) has committed.
            31 => mig(
                "concurrent_index",
                "-- runbook:no-transaction\nCREATE INDEX CONCURRENTLY t30_v2 ON t30 (v);\n",
                Some("-- runbook:no-transaction\nDROP INDEX CONCURRENTLY t30_v2;\nDROP INDEX CONCURRENTLY no_such_index;\n"),
            ),
            _ => good,
        });
    }
    set
}

fn write_set(set: &[Mig]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (i, m) in set.iter().enumerate() {
        let v = format!("{:03}", i + 1);
        std::fs::write(dir.path().join(format!("{v}_{}.up.sql", m.name)), &m.up).unwrap();
        if let Some(d) = &m.down {
            std::fs::write(dir.path().join(format!("{v}_{}.down.sql", m.name)), d).unwrap();
        }
    }
    dir
}

fn run_psql(url: &str, sql: &str) -> bool {
    Command::new("psql")
        .args([url, "-Xq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .unwrap()
        .status
        .success()
}

/// The schema as pg_dump prints it, comments and settings left out.
fn dump(url: &str) -> String {
    let out = Command::new("pg_dump")
        .args(["-s", "--no-owner", "--no-privileges", url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("--") && !l.starts_with("SET ") && !l.trim().is_empty())
        .filter(|l| !l.starts_with("SELECT pg_catalog.set_config"))
        // pg_dump's per-dump random key.
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The worst verdict psql and pg_dump give each migration, rehearsed alone
/// on a copy of the state after every earlier up: up, down (must restore
/// the schema before up), up again (must restore the schema after up).
fn reference(set: &[Mig]) -> Vec<&'static str> {
    let base = Db::fresh();
    let admin = support::cluster().url("postgres");
    let mut out = Vec::new();
    let mut stopped = false;
    for (i, m) in set.iter().enumerate() {
        if stopped {
            out.push("not_rehearsed");
            continue;
        }
        let copy = format!("{}_ref{i}", base.name);
        assert!(run_psql(
            &admin,
            &format!("CREATE DATABASE {copy} TEMPLATE {}", base.name)
        ));
        let url = support::cluster().url(&copy);
        let before = dump(&url);
        let mut found: Vec<&'static str> = Vec::new();
        if !run_psql(&url, &m.up) {
            found.push("up_failure");
            stopped = true;
        } else {
            let after_up = dump(&url);
            match &m.down {
                None => found.push("irreversible"),
                Some(d) if !run_psql(&url, d) => found.push("irreversible"),
                Some(_) => {
                    if dump(&url) != before {
                        found.push("parity_mismatch");
                    }
                    if !run_psql(&url, &m.up) || dump(&url) != after_up {
                        found.push("reup_failure");
                    }
                }
            }
        }
        // The verdicts' order of severity, as runbook ranks them.
        let rank = [
            "up_failure",
            "irreversible",
            "lossy",
            "parity_mismatch",
            "reup_failure",
        ];
        out.push(
            rank.iter()
                .copied()
                .find(|r| found.contains(r))
                .unwrap_or("ok"),
        );
        assert!(run_psql(&admin, &format!("DROP DATABASE {copy}")));
        assert!(run_psql(&base.url, &m.up) || stopped);
    }
    out
}

fn rehearse(dir: &std::path::Path, extra: &str) -> (Run, Case) {
    let db = Db::fresh();
    let case = Case::new(&format!(
        "{HEAD}phases:\n  - id: verify\n    kind: verify\n    steps:\n      - id: rehearse\n        rehearse:\n          dir: {}\n{extra}",
        dir.display()
    ));
    let junit = case.dir.path().join("junit.xml");
    let run = case.exec(&db.url, &["--junit", junit.to_str().unwrap()]);
    (run, case)
}

fn verdicts(run: &Run) -> Vec<String> {
    run.step("rehearse")["details"]["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["verdict"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_migration_of_a_set_with_many_failures_gets_the_reference_verdict() {
    let set = generated_set();
    let dir = write_set(&set);
    let want = reference(&set);
    let (run, case) = rehearse(dir.path(), "          scratch: true\n");
    assert_eq!(run.code, 3, "{}", run.stderr);
    let got = verdicts(&run);
    let disagree: Vec<String> = got
        .iter()
        .zip(&want)
        .enumerate()
        .filter(|(_, (g, w))| g != w)
        .map(|(i, (g, w))| format!("{:03}: runbook {g}, reference {w}", i + 1))
        .collect();
    assert!(disagree.is_empty(), "{disagree:#?}\n{}", run.stderr);
    assert!(!got.iter().any(|v| v == "not_rehearsed"), "{got:?}");
    // The re-up of 13 left t13_old behind; 14, which creates it, passed
    // because the rehearsal went on from the state after 13's first up.
    let d = &run.step("rehearse")["details"];
    let found13: Vec<&str> = d["migrations"][12]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(found13, ["parity_mismatch", "reup_failure"]);
    assert_eq!(got[13], "ok");
    assert_eq!(d["coverage"]["rehearsed"], 36);
    // 31's down failed half-way outside a transaction: one recovery.
    let rec = d["recoveries"].as_array().unwrap();
    assert_eq!(rec.len(), 1, "{rec:?}");
    assert_eq!(rec[0]["replayed"], 31);
    let counts: BTreeMap<String, usize> = serde_json::from_value(d["verdicts"].clone()).unwrap();
    assert_eq!(counts.values().sum::<usize>(), 36);
    drop(case);
}

#[test]
fn an_up_that_fails_leaves_the_rest_not_rehearsed_never_ok() {
    let set = vec![
        mig("a", "CREATE TABLE a (id int);", Some("DROP TABLE a;")),
        mig(
            "b",
            "CREATE TABLE b (id int REFERENCES nowhere);",
            Some("DROP TABLE b;"),
        ),
        mig("c", "CREATE TABLE c (id int);", Some("DROP TABLE c;")),
        mig("d", "CREATE TABLE d (id int);", Some("DROP TABLE d;")),
    ];
    let dir = write_set(&set);
    let (run, case) = rehearse(dir.path(), "");
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(
        verdicts(&run),
        ["ok", "up_failure", "not_rehearsed", "not_rehearsed"]
    );
    let d = &run.step("rehearse")["details"];
    assert_eq!(
        d["coverage"],
        serde_json::json!({"rehearsed": 2, "total": 4})
    );
    let c = &d["migrations"][2];
    assert!(c["legs"].as_array().unwrap().is_empty());
    assert_eq!(
        c["findings"][0]["message"],
        "not rehearsed: 002 b's up failed, and every later migration starts from the state after it"
    );
    // report.md shows them apart from ok.
    let md = std::fs::read_to_string(run.dir.join("report.md")).unwrap();
    assert!(md.contains("| 003 | c | ⏭️ not_rehearsed |"), "{md}");
    assert!(
        md.contains("**Coverage: 2 of 4 migration(s) rehearsed**"),
        "{md}"
    );
    // JUnit: skipped, never a pass.
    let xml = std::fs::read_to_string(case.dir.path().join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let c_case = doc
        .descendants()
        .find(|n| n.attribute("name") == Some("003_c rehearsal"))
        .expect("a testcase for 003_c");
    assert!(
        c_case.children().any(|n| n.has_tag_name("skipped")),
        "{xml}"
    );
    assert!(
        !doc.descendants().any(
            |n| n.attribute("name").is_some_and(|a| a.starts_with("003_c "))
                && n.attribute("name") != Some("003_c rehearsal")
        ),
        "no passing checks for a migration that was not rehearsed"
    );
}

#[test]
fn without_a_scratch_database_a_half_done_down_stops_the_rehearsal_honestly() {
    let set = vec![
        mig("t", "CREATE TABLE t (v text);", Some("DROP TABLE t;")),
        mig(
            "idx",
            "-- runbook:no-transaction\nCREATE INDEX CONCURRENTLY t_v ON t (v);",
            Some(
                "-- runbook:no-transaction\nDROP INDEX CONCURRENTLY t_v;\nDROP INDEX CONCURRENTLY nope;",
            ),
        ),
        mig(
            "after",
            "CREATE TABLE after (id int);",
            Some("DROP TABLE after;"),
        ),
    ];
    let dir = write_set(&set);
    let (run, _case) = rehearse(dir.path(), "");
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(verdicts(&run), ["ok", "irreversible", "not_rehearsed"]);
    let stopped = run.step("rehearse")["details"]["stopped"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(stopped.contains("scratch: true"), "{stopped}");
}

#[test]
fn whole_set_marks_migrations_whose_down_never_ran_and_can_skip_missing_downs() {
    let set = vec![
        mig("a", "CREATE TABLE a (id int);", Some("DROP TABLE a;")),
        mig("b", "CREATE TABLE b (id int);", Some("DROP TABLE nope;")),
        mig("c", "CREATE TABLE c (id int);", Some("DROP TABLE c;")),
        mig("d", "CREATE TABLE d (id int);", None),
        mig("e", "CREATE TABLE e (id int);", Some("DROP TABLE e;")),
    ];
    let dir = write_set(&set);
    // Stopping at the missing down of d: a, b and c never rolled back.
    let (run, _c1) = rehearse(dir.path(), "          mode: whole_set\n");
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(
        verdicts(&run),
        [
            "not_rehearsed",
            "not_rehearsed",
            "not_rehearsed",
            "irreversible",
            "ok"
        ]
    );
    // Skipping it finds the first down that really fails: b's.
    let (run, _c2) = rehearse(
        dir.path(),
        "          mode: whole_set\n          missing_downs: skip\n",
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(
        verdicts(&run),
        ["not_rehearsed", "irreversible", "ok", "irreversible", "ok"]
    );
    let set_findings = run.step("rehearse")["details"]["set_findings"].to_string();
    assert!(
        set_findings.contains("the first down to fail is 002 b"),
        "{set_findings}"
    );
}

/// The history of the tool whose format the directory is in (here
/// dbmate's `schema_migrations`) is bookkeeping: a set that makes it in
/// its own migrations (a baseline dumped with it) does not differ from
/// itself. Another tool's history table is a table like the rest: one a
/// down leaves behind is left over.
#[test]
fn a_migration_tools_history_table_is_not_a_schema_difference() {
    let set = |table: &str| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("001_baseline.sql"),
            format!(
                "-- migrate:up\nCREATE TABLE IF NOT EXISTS {table} (id serial PRIMARY KEY, name text);\n\
                 CREATE TABLE users (id int);\nINSERT INTO {table} (name) VALUES ('1');\n\
                 -- migrate:down\nDROP TABLE users;\nDELETE FROM {table} WHERE name = '1';\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("002_more.sql"),
            "-- migrate:up\nCREATE TABLE more (id int);\n-- migrate:down\nDROP TABLE more;\n",
        )
        .unwrap();
        dir
    };
    let dir = set("schema_migrations");
    let (run, _case) = rehearse(dir.path(), "          mode: whole_set\n");
    // The first down leaves schema_migrations (created by the set) behind:
    // that is the directory's tool's bookkeeping, not a difference.
    assert_eq!(
        run.code,
        0,
        "{}\n{}",
        run.stderr,
        run.step("rehearse")["details"]["set_findings"]
    );
    let d: &Value = &run.step("rehearse")["details"];
    assert_eq!(d["format"], "dbmate", "{d}");
    assert_eq!(d["set_findings"], serde_json::json!([]), "{d}");

    let dir = set("knex_migrations");
    let (run, _case) = rehearse(dir.path(), "          mode: whole_set\n");
    assert_eq!(run.code, 3, "{}", run.stderr);
    let d: &Value = &run.step("rehearse")["details"];
    assert_eq!(d["set_verdict"], "parity_mismatch", "{d}");
    let message = d["set_findings"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("added table public.knex_migrations"),
        "{message}"
    );
}
