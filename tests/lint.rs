//! `runbook lint` from the command line: squawk's findings located in the
//! files the SQL came from, changed by what the runner knows.

mod support;

use std::process::Command;

fn lint(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .arg("lint")
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_sql_file_gets_squawks_findings_with_carets() {
    let (code, out, _) = lint(&["tests/fixtures/lint/add_index.sql"]);
    assert_eq!(code, 1);
    insta::assert_snapshot!(out);
}

#[test]
fn runbook_sql_is_located_in_the_yaml_and_timeout_rules_are_off() {
    let (code, out, err) = lint(&["tests/fixtures/lint/runbook.yml", "--explain"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        out.contains("error[require-concurrent-index-creation]")
            && out.contains("  --> tests/fixtures/lint/runbook.yml:11:11\n"),
        "{out}"
    );
    assert!(
        !out.contains("timeout]"),
        "runbook sets the timeouts: {out}"
    );
    assert!(out.contains("note: tests/fixtures/lint/runbook.yml:10: require-lock-timeout, require-statement-timeout not reported"), "{out}");
    // The CONCURRENTLY step runs outside a transaction (runbook takes it
    // out), so squawk's in-transaction rule has nothing to say.
    assert!(
        !out.contains("ban-concurrent-index-creation-in-transaction"),
        "{out}"
    );
    assert!(
        out.ends_with("1 file(s) linted: 1 error(s), 0 warning(s)\n"),
        "{out}"
    );
}

#[test]
fn json_output_carries_every_field() {
    let (code, out, _) = lint(&["tests/fixtures/lint/add_index.sql", "--format", "json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let f = &v["findings"][0];
    assert_eq!(f["file"], "tests/fixtures/lint/add_index.sql");
    assert_eq!(f["source"], "squawk");
    assert!(f["line"].as_u64().is_some() && f["rule"].is_string() && f["severity"] == "error");
}

#[test]
fn warnings_pass_unless_there_are_more_than_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m.sql");
    std::fs::write(&f, "CREATE INDEX IF NOT EXISTS i ON t (a);\n").unwrap();
    let f = f.to_str().unwrap();
    let base = [
        "--exclude",
        "require-lock-timeout",
        "--exclude",
        "require-statement-timeout",
    ];
    let (code, out, _) = lint(&[&[f][..], &base[..]].concat());
    assert_eq!(code, 1, "{out}");
    let warn = [
        &[f][..],
        &base[..],
        &["--warn", "require-concurrent-index-creation"][..],
    ]
    .concat();
    let (code, out, _) = lint(&warn);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning[require-concurrent-index-creation]"),
        "{out}"
    );
    let (code, _, _) = lint(&[&warn[..], &["--max-warnings", "0"][..]].concat());
    assert_eq!(code, 1);
    let (code, out, _) = lint(&[
        f,
        "--exclude",
        "require-concurrent-index-creation",
        "--exclude",
        "require-lock-timeout",
        "--exclude",
        "require-statement-timeout",
    ]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn unreadable_inputs_and_unknown_rules_exit_5() {
    assert_eq!(lint(&["no/such/file.sql"]).0, 5);
    assert_eq!(
        lint(&[
            "tests/fixtures/lint/add_index.sql",
            "--exclude",
            "no-such-rule"
        ])
        .0,
        5
    );
    assert_eq!(lint(&["tests/fixtures/invalid/duplicate_id.yml"]).0, 5);
}

#[test]
fn migration_directories_are_linted_in_the_mode_migrate_runs_them() {
    // A marked file runs outside a transaction, so a CONCURRENTLY after
    // another statement is fine there, and reported when it is not marked.
    let dir = tempfile::tempdir().unwrap();
    let body = "ALTER TABLE IF EXISTS t ADD COLUMN IF NOT EXISTS b bigint;\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (b);\n";
    std::fs::write(
        dir.path().join("1_a.up.sql"),
        format!("-- runbook:no-transaction\n{body}"),
    )
    .unwrap();
    std::fs::write(dir.path().join("1_a.down.sql"), "DROP INDEX IF EXISTS i;\n").unwrap();
    let d = dir.path().to_str().unwrap();
    let args = [
        d,
        "--exclude",
        "require-lock-timeout",
        "--exclude",
        "require-statement-timeout",
    ];
    let (code, out, _) = lint(&args);
    assert_eq!(code, 0, "{out}");
    // The same statements in a transaction-wrapped file of a format with no
    // marker: migrate would still take it out (CONCURRENTLY), so still clean.
    std::fs::write(dir.path().join("1_a.up.sql"), body).unwrap();
    let (code, out, _) = lint(&args);
    assert_eq!(code, 0, "{out}");
}

/// Every runbook rule has a failing and a passing fixture, and a page.
#[test]
fn every_runbook_rule_fires_on_its_bad_fixture_and_not_on_its_good_one() {
    for (rule, _, _) in runbook::lint::runbook::RULES {
        let dir = std::path::Path::new("tests/fixtures/lint/rules").join(rule);
        let pick = |stem: &str| -> String {
            let yml = dir.join(format!("{stem}.yml"));
            if yml.exists() { yml } else { dir.join(stem) }
                .display()
                .to_string()
        };
        let tag = format!("[{rule}]");
        let (_, bad, err) = lint(&[&pick("bad")]);
        assert!(
            bad.contains(&tag),
            "{rule}: the bad fixture is not reported:\n{bad}{err}"
        );
        let (_, good, err) = lint(&[&pick("good")]);
        assert!(
            !good.contains(&tag),
            "{rule}: the good fixture is reported:\n{good}{err}"
        );
        assert!(
            std::path::Path::new("docs/lint")
                .join(format!("{rule}.md"))
                .exists(),
            "{rule} has no page in docs/lint/"
        );
    }
}

#[test]
fn sarif_and_github_outputs_are_stable() {
    let (code, sarif, _) = lint(&[
        "tests/fixtures/lint/rules/secret-in-command/bad.yml",
        "tests/fixtures/lint/add_index.sql",
        "--format",
        "sarif",
    ]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&sarif).unwrap();
    assert_eq!(v["version"], "2.1.0");
    insta::assert_snapshot!("sarif", sarif);
    let (_, github, _) = lint(&[
        "tests/fixtures/lint/rules/secret-in-command/bad.yml",
        "--format",
        "github",
    ]);
    insta::assert_snapshot!("github", github);
}

#[test]
fn configuration_comes_from_the_runbook_and_runbook_lint_toml() {
    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("r.yml");
    let body = "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: r, version: 1 }\nphases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: fill\n        sql: UPDATE orders SET status = 'new' WHERE status IS NULL;\n      - id: deploy\n        shell: ./deploy.sh\n";
    std::fs::write(&rb, body).unwrap();
    let rb_s = rb.to_str().unwrap();
    let (code, out, _) = lint(&[rb_s]);
    assert_eq!(code, 0, "both are warnings by default: {out}");
    assert!(
        out.contains("warning[unbatched-update]") && out.contains("warning[missing-timeout]"),
        "{out}"
    );

    // A runbook-lint.toml makes one an error and turns the other off.
    let toml = dir.path().join("runbook-lint.toml");
    std::fs::write(
        &toml,
        "exclude = [\"missing-timeout\"]\n\n[severities]\nunbatched-update = \"error\"\n",
    )
    .unwrap();
    let (code, out, _) = lint(&[rb_s, "--config", toml.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error[unbatched-update]") && !out.contains("missing-timeout"),
        "{out}"
    );

    // The runbook's own `lint:` section has the last word.
    std::fs::write(
        &rb,
        format!("{body}lint:\n  severities: {{ unbatched-update: off }}\n"),
    )
    .unwrap();
    let (code, out, _) = lint(&[rb_s, "--config", toml.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("unbatched-update"), "{out}");

    // A misspelt rule is refused, with a suggestion.
    std::fs::write(&toml, "exclude = [\"missing-timout\"]\n").unwrap();
    let (code, _, err) = lint(&[rb_s, "--config", toml.to_str().unwrap()]);
    assert_eq!(code, 5);
    assert!(
        err.contains("unknown lint rule `missing-timout`; did you mean `missing-timeout`?"),
        "{err}"
    );
}

#[test]
fn exec_lints_first_and_settings_lint_decides() {
    let body = |mode: &str| {
        format!(
            "apiVersion: runbook/v1\nkind: Runbook\nmetadata: {{ name: l, version: 1 }}\nsettings: {{ lint: {mode} }}\nphases:\n  - id: expand\n    kind: expand\n    steps:\n      - id: add\n        sql: CREATE INDEX IF NOT EXISTS t_v ON t (v);\n"
        )
    };
    let db = support::Db::fresh();
    db.sql("CREATE TABLE t (id bigint PRIMARY KEY, v text)");
    // error: nothing runs, exit 5, the findings on stderr.
    let case = support::Case::new(&body("error"));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("error[require-concurrent-index-creation]"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("lint found 1 error(s) and `settings.lint` is `error`"),
        "{}",
        run.stderr
    );
    assert_eq!(
        db.sql("SELECT to_regclass('t_v') IS NULL"),
        "t",
        "nothing ran"
    );
    // warn (the default): it runs, and the report carries the findings.
    let case = support::Case::new(&body("warn"));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lint = &run.report["lint"];
    assert_eq!(
        (lint["mode"].as_str(), lint["errors"].as_u64()),
        (Some("warn"), Some(1))
    );
    assert_eq!(
        lint["findings"][0]["rule"],
        "require-concurrent-index-creation"
    );
    let md = std::fs::read_to_string(run.dir.join("report.md")).unwrap();
    assert!(
        md.contains("## Lint") && md.contains("`require-concurrent-index-creation` at `"),
        "{md}"
    );
    // off: no lint at all.
    let case = support::Case::new(&body("off"));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.report.get("lint").is_none());
}

/// A table is new (empty) only in the file that creates it, never through
/// IF NOT EXISTS, and across files only before `assume_empty_before`.
#[test]
fn a_table_is_new_only_in_the_file_that_creates_it() {
    let dir = tempfile::tempdir().unwrap();
    let w = |f: &str, t: &str| std::fs::write(dir.path().join(f), t).unwrap();
    w(
        "001_t.up.sql",
        "CREATE TABLE fresh (id bigint PRIMARY KEY, v text);\nCREATE INDEX fresh_id_v ON fresh (id, v);\n",
    );
    w("001_t.down.sql", "DROP TABLE IF EXISTS fresh;\n");
    w(
        "002_i.up.sql",
        "CREATE INDEX IF NOT EXISTS fresh_v ON fresh (v);\n",
    );
    w("002_i.down.sql", "DROP INDEX IF EXISTS fresh_v;\n");
    let d = dir.path().to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            d,
            "--explain",
            "--exclude",
            "require-lock-timeout",
            "--exclude",
            "require-statement-timeout",
        ];
        args.extend_from_slice(extra);
        let (_, out, _) = lint(&args);
        let at: Vec<String> = out
            .lines()
            .filter_map(|l| l.strip_prefix("  --> "))
            .map(|l| l.rsplit('/').next().unwrap().to_string())
            .collect();
        (at, out)
    };
    // Within 001 squawk's own judgment stands (it counts both tables as
    // created there); by 002, `fresh` is an old table that holds rows.
    let (at, out) = run(&[]);
    assert_eq!(at, ["002_i.up.sql:1:1"], "{out}");
    // Opt in: the files before 003 ran together on an empty database.
    let cfg = dir.path().join("runbook-lint.toml");
    std::fs::write(&cfg, "assume_empty_before = \"003\"\n").unwrap();
    let (at, out) = run(&["--config", cfg.to_str().unwrap()]);
    assert!(at.is_empty(), "{out}");
    assert!(
        out.contains(
            "require-concurrent-index-creation not reported: fresh is created earlier in this set"
        ),
        "{out}"
    );
    std::fs::write(&cfg, "assume_empty_before = \"002\"\n").unwrap();
    let (at, out) = run(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(at, ["002_i.up.sql:1:1"], "{out}");
}

#[test]
fn sql_that_does_not_parse_is_a_syntax_error_finding() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.sql");
    std::fs::write(&bad, "SELECT 1 FROM ;\nSELEC * FROM x;\n").unwrap();
    let (code, out, err) = lint(&[bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("error[syntax-error]: expected from item"),
        "{out}"
    );
    assert!(out.contains(":1:14\n") && out.contains(":2:1\n"), "{out}");
    // The rule name is known to every option that takes one.
    let (code, out, err) = lint(&[bad.to_str().unwrap(), "--warn", "syntax-error"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = lint(&[bad.to_str().unwrap(), "--include", "syntax-error"]);
    assert_eq!(code, 1, "{err}");
    // In a runbook step and in a migration directory too.
    let book = support::Case::new(
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: t, version: 1 }\nphases:\n  - id: expand\n    kind: expand\n    steps:\n      - id: broken\n        sql: ALTER TABLE t ADD COLUM c int;\n",
    );
    let (code, out, _) = lint(&[book.file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error[syntax-error]") && out.contains(":9:"),
        "{out}"
    );
    let migs = dir.path().join("m");
    std::fs::create_dir(&migs).unwrap();
    std::fs::write(migs.join("001_a.up.sql"), "CREATE TABLE (;\n").unwrap();
    std::fs::write(migs.join("001_a.down.sql"), "SELECT 1;\n").unwrap();
    let (code, out, _) = lint(&[migs.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error[syntax-error]") && out.contains("001_a.up.sql:1:"),
        "{out}"
    );
}

/// Real histories: a version two migrations share (sql-migrate orders them
/// by name), an extra down file; a warning each, and the rest linted.
#[test]
fn directory_mode_warns_about_layout_and_lints_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let w = |f: &str, t: &str| std::fs::write(dir.path().join(f), t).unwrap();
    w(
        "1_a.sql",
        "-- +migrate Up\nCREATE TABLE IF NOT EXISTS a (id bigint PRIMARY KEY);\n-- +migrate Down\nDROP TABLE IF EXISTS a;\n",
    );
    w(
        "1_b.sql",
        "-- +migrate Up\nCREATE INDEX IF NOT EXISTS a_id ON a (id);\n-- +migrate Down\nDROP INDEX IF EXISTS a_id;\n",
    );
    w("2_c.sql", "-- no markers at all\nSELECT 1;\n");
    let d = dir.path().to_str().unwrap();
    let (code, out, err) = lint(&[
        d,
        "--exclude",
        "require-lock-timeout",
        "--exclude",
        "require-statement-timeout",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(out.matches("warning[migration-layout]").count(), 2, "{out}");
    assert!(out.contains("are shared by several migrations"), "{out}");
    assert!(out.contains("2_c.sql: no up section"), "{out}");
    assert!(
        out.contains("error[require-concurrent-index-creation]") && out.contains("1_b.sql:2:1"),
        "{out}"
    );

    let pairs = tempfile::tempdir().unwrap();
    let w = |f: &str, t: &str| std::fs::write(pairs.path().join(f), t).unwrap();
    w(
        "003_x.up.sql",
        "CREATE TABLE IF NOT EXISTS x (id bigint PRIMARY KEY);\n",
    );
    w("003_x.down.sql", "DROP TABLE IF EXISTS x;\n");
    w("004_y.down.sql", "DROP TABLE IF EXISTS y;\n");
    w("004_z.down.sql", "DROP TABLE IF EXISTS z;\n");
    let (code, out, err) = lint(&[
        pairs.path().to_str().unwrap(),
        "--exclude",
        "require-lock-timeout",
        "--exclude",
        "require-statement-timeout",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("version 004 has more than one down file and no up"),
        "{out}"
    );
}

/// Every runbook the project ships lints clean under `settings.lint: error`.
#[test]
fn every_shipped_runbook_sets_lint_error_and_lints_clean() {
    let mut books = Vec::new();
    for root in ["runbooks", "examples"] {
        let mut stack = vec![std::path::PathBuf::from(root)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|e| e == "yml") {
                    books.push(p);
                }
            }
        }
    }
    assert!(books.len() >= 7, "{books:?}");
    for b in &books {
        let text = std::fs::read_to_string(b).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(
            doc["settings"]["lint"].as_str(),
            Some("error"),
            "{} does not set settings.lint: error",
            b.display()
        );
        let (code, out, err) = lint(&[b.to_str().unwrap()]);
        assert_eq!(code, 0, "{}:\n{out}{err}", b.display());
        assert!(out.contains(": 0 error(s)"), "{out}");
    }
    // A directory of runbooks lints each of them.
    let (code, out, err) = lint(&["runbooks"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("3 file(s) linted"), "{out}");
}

/// docs/lint/README.md describes every rule: each of squawk's (as the
/// linked version of squawk-linter has them) and each of runbook's.
#[test]
fn the_rule_reference_lists_every_rule() {
    let doc = std::fs::read_to_string("docs/lint/README.md").unwrap();
    let mut missing: Vec<String> = enum_iterator::all::<squawk_linter::Rule>()
        .map(|r| r.to_string())
        .filter(|name| !doc.contains(&format!("### {name}\n")))
        .collect();
    missing.extend(
        runbook::lint::runbook::RULES
            .iter()
            .filter(|(n, _, _)| !doc.contains(&format!("| [{n}]({n}.md) |")))
            .map(|(n, _, _)| n.to_string()),
    );
    assert!(
        missing.is_empty(),
        "not in docs/lint/README.md: {missing:?}"
    );
}
