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
    support::ended(out)
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
    for (rule, _, _) in runbook::lint::rules::RULES {
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

/// The ready runbooks name their migration directory with a template
/// (`dir: "{{ params.migrations }}"`), and lint skipped every such
/// directory: a runbook over 193 findings' worth of migrations (Convoy's)
/// linted clean. It is linted as its params render it, and one that cannot
/// be is counted in the summary as not linted.
#[test]
fn a_templated_migration_directory_is_linted_as_it_renders_or_said_to_be_left_out() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("db")).unwrap();
    std::fs::write(
        dir.path().join("db/1_a.up.sql"),
        "CREATE INDEX i ON t (a);\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("db/1_a.down.sql"), "DROP INDEX i;\n").unwrap();
    let book = |default: &str| {
        let path = dir.path().join("runbook.yml");
        std::fs::write(
            &path,
            format!(
                "apiVersion: runbook/v1\nkind: Runbook\nmetadata: {{ name: t, version: 1 }}\n\
                 params:\n  migrations: {{ type: string{default} }}\n\
                 phases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: apply\n        \
                 migrate: {{ dir: \"{{{{ params.migrations }}}}\" }}\n        \
                 rollback:\n          id: undo\n          \
                 migrate: {{ dir: \"{{{{ params.migrations }}}}\", direction: down, to: before_run }}\n"
            ),
        )
        .unwrap();
        path
    };
    let path = book(", default: db");
    let (code, out, _) = lint(&[path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error[require-concurrent-index-creation]"),
        "{out}"
    );
    assert!(out.contains("db/1_a.up.sql:1:1"), "{out}");

    let path = book("");
    let (code, out, _) = lint(&[path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.ends_with("1 file(s) linted: 0 error(s), 0 warning(s), 1 not linted (--explain says which and why)\n"),
        "{out}"
    );
    let (_, out, _) = lint(&[path.to_str().unwrap(), "--explain"]);
    assert!(
        out.contains(
            "step `apply`: its migration directory is not linted: its templates cannot be rendered"
        ),
        "{out}"
    );
    let path = book(", default: nowhere");
    let (_, out, _) = lint(&[path.to_str().unwrap(), "--explain"]);
    assert!(
        out.contains("`nowhere` (as its params render it) is not a directory here"),
        "{out}"
    );
    // A path that holds a secret is not printed, so not linted.
    std::fs::rename(dir.path().join("db"), dir.path().join("db-s3cret-dir")).unwrap();
    let path = book(", default: db-s3cret-dir, secret: true");
    let (code, out, _) = lint(&[path.to_str().unwrap(), "--explain"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("its path holds a secret param, which lint never prints"),
        "{out}"
    );
    assert!(!out.contains("1_a.up.sql"), "{out}");
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
    let shipped = books.iter().filter(|b| b.starts_with("runbooks")).count();
    assert!(
        out.contains(&format!("{shipped} file(s) linted")),
        "{shipped}: {out}"
    );
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
        runbook::lint::rules::RULES
            .iter()
            .filter(|(n, _, _)| !doc.contains(&format!("| [{n}]({n}.md) |")))
            .map(|(n, _, _)| n.to_string()),
    );
    assert!(
        missing.is_empty(),
        "not in docs/lint/README.md: {missing:?}"
    );
}

/// Lint a runbook written in the test: findings as `rule@line`, and the
/// text (with --explain notes).
fn lint_book(yaml: &str) -> (Vec<String>, String) {
    let case = support::Case::new(yaml);
    let (_, out, err) = lint(&[case.file.to_str().unwrap(), "--explain"]);
    let mut found = Vec::new();
    let mut rule = String::new();
    for l in out.lines() {
        if let Some(r) = l.split_once('[').and_then(|(_, r)| r.split_once(']'))
            && (l.starts_with("error[") || l.starts_with("warning["))
        {
            rule = r.0.to_string();
        }
        if let Some(at) = l.strip_prefix("  --> ") {
            let line = at.rsplit(':').nth(1).unwrap();
            found.push(format!("{rule}@{line}"));
        }
    }
    (found, format!("{out}{err}"))
}

const CONTRACT: &str = r#"apiVersion: runbook/v1
kind: Runbook
metadata: { name: t, version: 1 }
phases:
  - id: backup
    kind: backup
    steps:
      - id: orders_backup
        backup: { tables: [public.orders] }
  - id: expand
    kind: expand
    steps:
      - id: add_ref
        sql: ALTER TABLE orders ADD COLUMN IF NOT EXISTS ref bigint;
        rollback:
          id: drop_ref
          sql: ALTER TABLE orders DROP COLUMN IF EXISTS ref;
      - id: add_other
        sql: ALTER TABLE orders ADD COLUMN IF NOT EXISTS other bigint;
        rollback:
          id: drop_wrong
          sql: ALTER TABLE orders DROP COLUMN IF EXISTS legacy;
  - id: contract
    kind: contract
    approval: { prompt: sure? }
    steps:
      - id: drop_legacy
        sql: ALTER TABLE orders DROP COLUMN legacy;
        rollback:
          id: put_back
          restore: { from: steps.orders_backup, target: orders_before }
"#;

#[test]
fn destructive_statements_are_accepted_only_in_their_context() {
    // Everything in place: the contract drop and the compensation that
    // drops its own column are notes; the compensation that drops a column
    // its step did not add is reported, and says so.
    let (found, out) = lint_book(CONTRACT);
    assert_eq!(found, ["ban-drop-column@22"], "{out}");
    assert!(out.contains("`drop_wrong` undoes `add_other`, but drops column orders.legacy, which that step did not create"), "{out}");
    assert!(
        out.contains("note: ")
            && out.contains(
                "ban-drop-column accepted: step `drop_ref` is the compensation of `add_ref`"
            ),
        "{out}"
    );
    assert!(out.contains("ban-drop-column accepted: step `drop_legacy`: contract phase `contract`, behind its approval gate, backup `orders_backup` covers orders, rollback `put_back`"), "{out}");
    let fixed = CONTRACT.replace(
        "DROP COLUMN IF EXISTS legacy;",
        "DROP COLUMN IF EXISTS other;",
    );
    assert!(lint_book(&fixed).0.is_empty());
    // Take away one condition at a time: the finding comes back, naming it.
    let cases = [
        (
            "    approval: { prompt: sure? }\n",
            "",
            "phase `contract` has no approval gate",
        ),
        (
            "backup: { tables: [public.orders] }",
            "backup: { tables: [public.orders], schema_only: true }",
            "no earlier backup holds the data of orders (`orders_backup` is schema_only)",
        ),
        (
            "backup: { tables: [public.orders] }",
            "backup: { tables: [public.customers] }",
            "no earlier backup covers orders",
        ),
        (
            "        rollback:\n          id: put_back\n          restore: { from: steps.orders_backup, target: orders_before }\n",
            "",
            "step `drop_legacy` has no rollback",
        ),
        (
            "    kind: contract\n",
            "    kind: migrate\n",
            "it is in the migrate phase `contract`, not a contract phase",
        ),
    ];
    for (from, to, why) in cases {
        let yaml = fixed.replace(from, to);
        assert_ne!(yaml, fixed, "{from}");
        let (found, out) = lint_book(&yaml);
        assert!(
            found.iter().any(|f| f.starts_with("ban-drop-column@")),
            "{why}: {out}"
        );
        assert!(out.contains(why), "{why}: {out}");
    }
}

/// Each miss and false alarm of the runbook rules that issue 17 lists.
#[test]
fn the_runbook_rules_catch_their_documented_cases() {
    let head = "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: t, version: 1 }\n";
    // destructive-without-backup: every table of a TRUNCATE; a schema_only
    // backup holds no data; a when-gated IF NOT EXISTS creates nothing new.
    let (found, out) = lint_book(&format!(
        "{head}phases:
  - id: backup
    kind: backup
    steps:
      - id: b
        backup: {{ tables: [a], schema_only: true }}
  - id: seed
    kind: custom
    steps:
      - id: maybe
        when: false
        sql: CREATE TABLE IF NOT EXISTS c (id bigint PRIMARY KEY);
  - id: contract
    kind: contract
    approval: {{ prompt: sure? }}
    on_failure:
      - id: undo
        sql: SELECT 1;
    steps:
      - id: clear
        sql: TRUNCATE a, b;
      - id: clear_c
        sql: TRUNCATE c;
"
    ));
    let backups: Vec<&String> = found
        .iter()
        .filter(|f| f.starts_with("destructive-without-backup"))
        .collect();
    assert_eq!(backups.len(), 3, "{out}");
    assert!(
        out.contains(
            "destroys data in a: no earlier backup holds the data of a (`b` is schema_only)"
        ),
        "{out}"
    );
    assert!(
        out.contains("destroys data in b: no earlier backup covers b"),
        "{out}"
    );
    assert!(out.contains("destroys data in c"), "{out}");

    // foreign-key-without-index: inline REFERENCES, table-level FOREIGN
    // KEY, ADD COLUMN ... REFERENCES.
    let (found, out) = lint_book(&format!("{head}phases:
  - id: expand
    kind: expand
    steps:
      - id: tables
        sql: |
          CREATE TABLE parent (id bigint PRIMARY KEY);
          CREATE TABLE child (id bigint PRIMARY KEY, parent_id bigint REFERENCES parent, other_id bigint, FOREIGN KEY (other_id) REFERENCES parent (id));
          ALTER TABLE orders ADD COLUMN IF NOT EXISTS parent_id bigint REFERENCES parent (id);
          CREATE INDEX IF NOT EXISTS child_parent ON child (parent_id);
"));
    let fks: Vec<&String> = found
        .iter()
        .filter(|f| f.starts_with("foreign-key-without-index"))
        .collect();
    assert_eq!(fks.len(), 2, "{out}");
    assert!(
        out.contains("the foreign key on child(other_id)")
            && out.contains("the foreign key on orders(parent_id)"),
        "{out}"
    );

    // not-null-without-default: SET NOT NULL after a NOT VALID check that
    // was never validated; and after one that was, nothing.
    let steps = |validate: &str| {
        format!(
            "{head}phases:
  - id: contract
    kind: contract
    approval: {{ prompt: sure? }}
    steps:
      - id: check
        sql: ALTER TABLE orders ADD CONSTRAINT ref_nn CHECK (ref IS NOT NULL) NOT VALID;
{validate}      - id: set
        sql: ALTER TABLE orders ALTER COLUMN ref SET NOT NULL;
"
        )
    };
    let (found, out) = lint_book(&steps(""));
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("not-null-without-default")),
        "{out}"
    );
    assert!(
        out.contains("after a CHECK added NOT VALID and never validated"),
        "{out}"
    );
    let (found, out) = lint_book(&steps(
        "      - id: validate\n        sql: ALTER TABLE orders VALIDATE CONSTRAINT ref_nn;\n",
    ));
    assert!(found.is_empty(), "{out}");

    // secret-in-command: a var built from a secret, and env('DATABASE_URL').
    let (found, out) = lint_book(&format!(
        "{head}params:
  token: {{ type: string, secret: true, default: x }}
vars:
  header: \"Bearer {{{{ params.token }}}}\"
  auth: \"-H '{{{{ vars.header }}}}'\"
phases:
  - id: migrate
    kind: migrate
    steps:
      - id: call
        timeout: 1min
        shell: {{ command: [curl, \"{{{{ vars.auth }}}}\", https://example.com] }}
      - id: dump
        timeout: 1min
        shell: {{ command: [pg_dump, \"{{{{ env('DATABASE_URL') }}}}\"] }}
"
    ));
    assert_eq!(
        found
            .iter()
            .filter(|f| f.starts_with("secret-in-command"))
            .count(),
        2,
        "{out}"
    );
    assert!(
        out.contains("`vars.auth`, which is built from a secret param"),
        "{out}"
    );
    assert!(out.contains("`env('DATABASE_URL')`"), "{out}");

    // missing-timeout: on_failure and finally shell steps too.
    let (found, out) = lint_book(&format!(
        "{head}phases:
  - id: verify
    kind: verify
    steps:
      - id: look
        shell: 'true'
    on_failure:
      - id: page
        shell: ./page-someone.sh
finally:
  - id: tell
    shell: echo done
"
    ));
    assert_eq!(
        found
            .iter()
            .filter(|f| f.starts_with("missing-timeout"))
            .count(),
        2,
        "{out}"
    );
    assert!(
        out.contains("`page` has no timeout in an on_failure branch")
            && out.contains("`tell` has no timeout in `finally`"),
        "{out}"
    );

    // destructive-without-rollback: not on a table this runbook created;
    // unbatched-update: not on a write pinned to one key.
    let (found, out) = lint_book(&format!(
        "{head}phases:
  - id: migrate
    kind: migrate
    steps:
      - id: create
        sql: CREATE TABLE scratch (id bigint PRIMARY KEY, v text);
      - id: fill
        sql: UPDATE scratch SET v = 'x';
      - id: setting
        sql: UPDATE settings SET value = 'on' WHERE id = 1;
      - id: bulk
        sql: UPDATE orders SET v = 'x' WHERE v IS NULL;
"
    ));
    assert!(
        !found.iter().any(|f| f.starts_with("destructive-without")),
        "{out}"
    );
    assert_eq!(found, ["unbatched-update@15"], "{out}");
}

/// squawk's `adding-field-with-default` reads an unsigned literal, a cast,
/// `CURRENT_TIMESTAMP` and a few calls as not volatile, but not `-1`, `(0)`
/// or `CURRENT_DATE`: svix's `ADD COLUMN attempt_number SMALLINT NOT NULL
/// DEFAULT -1` and measure's `DEFAULT CURRENT_DATE` were errors, though
/// PostgreSQL 11 and later add them without a rewrite. Such a finding is
/// now a note; a volatile default, under a sign or in a sum too, is still an
/// error, and every default is one on a server older than 11, as squawk has it.
#[test]
fn a_signed_parenthesized_or_keyword_default_is_not_a_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m.sql");
    std::fs::write(
        &f,
        "ALTER TABLE t ADD COLUMN a smallint NOT NULL DEFAULT -1;\n\
         ALTER TABLE t ADD COLUMN b int DEFAULT (0);\n\
         ALTER TABLE t ADD COLUMN c numeric DEFAULT -1.5::numeric;\n\
         ALTER TABLE t ADD COLUMN d uuid DEFAULT gen_random_uuid();\n\
         ALTER TABLE t ADD COLUMN e int DEFAULT -random()::int;\n\
         ALTER TABLE t ADD COLUMN f int DEFAULT 7;\n\
         ALTER TABLE t ADD COLUMN g date NOT NULL DEFAULT CURRENT_DATE;\n\
         ALTER TABLE t ADD COLUMN h date DEFAULT (CURRENT_DATE - 1);\n\
         ALTER TABLE t ADD COLUMN i date DEFAULT CURRENT_DATE - random()::int;\n\
         ALTER TABLE t ADD COLUMN j timestamptz NOT NULL DEFAULT TO_TIMESTAMP(0);\n\
         ALTER TABLE t ADD COLUMN k timestamptz DEFAULT date_trunc('day', now()) + make_interval(hours => 1);\n\
         ALTER TABLE t ADD COLUMN l jsonb DEFAULT pg_catalog.jsonb_build_object('a', -1);\n\
         ALTER TABLE t ADD COLUMN m timestamptz DEFAULT to_timestamp(random());\n\
         ALTER TABLE t ADD COLUMN n timestamptz DEFAULT app.to_timestamp(0);\n\
         ALTER TABLE t ADD COLUMN o timestamptz DEFAULT clock_timestamp();\n",
    )
    .unwrap();
    let lines = |extra: &[&str]| {
        let args = [
            &[f.to_str().unwrap(), "--format", "json"][..],
            &["--include", "adding-field-with-default"][..],
            extra,
        ]
        .concat();
        let (_, out, _) = lint(&args);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["rule"] == "adding-field-with-default")
            .map(|f| f["line"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(lines(&[]), [4, 5, 9, 13, 14, 15]);
    let (_, out, _) = lint(&[f.to_str().unwrap(), "--explain"]);
    assert!(
        out.contains(":1: adding-field-with-default accepted: the default `-1` is not volatile"),
        "{out}"
    );
    let old = dir.path().join("runbook-lint.toml");
    std::fs::write(&old, "pg_version = \"10\"\n").unwrap();
    assert_eq!(
        lines(&["--config", old.to_str().unwrap()]),
        (1..=15).collect::<Vec<u64>>()
    );
}

/// Each built-in lint takes for not volatile in a default is so on a real
/// server: every overload of it in `pg_catalog` is immutable or stable.
#[test]
fn the_built_ins_lint_calls_not_volatile_are_not_volatile_on_the_server() {
    let db = support::Db::fresh();
    let names = runbook::lint::NON_VOLATILE_CALLS
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(",");
    let q = |want: &str| {
        db.sql(&format!(
            "SELECT coalesce(string_agg(DISTINCT proname, ',' ORDER BY proname), '') FROM pg_proc \
             WHERE pronamespace = 'pg_catalog'::regnamespace AND proname IN ({names}) AND {want}"
        ))
    };
    assert_eq!(q("provolatile = 'v'"), "", "volatile overloads");
    assert_eq!(
        q("true").split(',').count(),
        runbook::lint::NON_VOLATILE_CALLS.len(),
        "each is a built-in"
    );
    assert_eq!(
        db.sql(&format!(
            "SELECT string_agg(proname, ',' ORDER BY proname) FROM (SELECT proname FROM pg_proc \
             WHERE pronamespace = 'pg_catalog'::regnamespace AND proname IN ({names}) \
             GROUP BY proname HAVING bool_and(pronargs = 0)) n"
        )),
        runbook::lint::NO_ARGUMENTS.join(","),
        "those that take no arguments"
    );
}

/// squawk's own rule cases (the SQL in squawk-linter's rule tests, read
/// from the crate's source as cargo fetched it) give the same findings
/// through `runbook lint FILE.sql` as through squawk: same rule, line and
/// column, for every shared rule, with syntax errors reported as squawk's
/// CLI reports them (alone, when the file does not parse).
#[test]
fn a_sql_file_gets_exactly_squawks_findings_on_squawks_own_cases() {
    // The version Cargo.lock pins, in cargo's registry sources.
    let lock = std::fs::read_to_string("Cargo.lock").unwrap();
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"squawk-linter\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .expect("squawk-linter is in Cargo.lock")
        .trim_matches('"')
        .to_string();
    let home = std::env::var("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo")
        });
    let rules_dir = std::fs::read_dir(home.join("registry/src"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .join(format!("squawk-linter-{version}/src/rules"))
        })
        .find(|p| p.is_dir())
        .expect("cargo has squawk-linter's source");
    let raw = regex::Regex::new(r##"(?s)let sql = r#"(.*?)"#;"##).unwrap();
    let plain = regex::Regex::new(r#"let sql = "((?:[^"\\]|\\.)*)";"#).unwrap();
    let mut cases: Vec<(String, String)> = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&rules_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let stem = f.file_stem().unwrap().to_string_lossy().to_string();
        for c in raw.captures_iter(&text) {
            cases.push((stem.clone(), c[1].to_string()));
        }
        for c in plain.captures_iter(&text) {
            let sql = c[1]
                .replace("\\n", "\n")
                .replace("\\\"", "\"")
                .replace("\\\\", "\\");
            cases.push((stem.clone(), sql));
        }
    }
    assert!(
        cases.len() > 200,
        "only {} cases found in {}",
        cases.len(),
        rules_dir.display()
    );

    // squawk's side: its parser and its linter with default rules.
    let squawk = |sql: &str| -> Vec<(String, usize, usize)> {
        let parse = squawk_syntax::SourceFile::parse(sql);
        let at = |o: usize| {
            let before = &sql[..o.min(sql.len())];
            let line = before.matches('\n').count() + 1;
            let col = before[before.rfind('\n').map_or(0, |i| i + 1)..]
                .chars()
                .count()
                + 1;
            (line, col)
        };
        let errors = parse.errors();
        let mut out: Vec<(String, usize, usize)> = if errors.is_empty() {
            squawk_linter::Linter::with_rules(&[], &[])
                .lint(&parse, sql)
                .into_iter()
                .map(|v| {
                    let (l, c) = at(usize::from(v.text_range.start()));
                    (v.code.to_string(), l, c)
                })
                .collect()
        } else {
            errors
                .iter()
                .map(|e| {
                    let (l, c) = at(usize::from(e.range().start()));
                    ("syntax-error".to_string(), l, c)
                })
                .collect()
        };
        out.sort();
        out
    };
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (i, (_, sql)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("case{i:04}.sql"));
        std::fs::write(&p, sql).unwrap();
        paths.push(p.to_str().unwrap().to_string());
    }
    let mut args: Vec<&str> = paths.iter().map(String::as_str).collect();
    args.extend(["--format", "json"]);
    let (_, out, err) = lint(&args);
    let report: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {err}"));
    let mut ours: std::collections::BTreeMap<String, Vec<(String, usize, usize)>> =
        Default::default();
    for f in report["findings"].as_array().unwrap() {
        ours.entry(f["file"].as_str().unwrap().to_string())
            .or_default()
            .push((
                f["rule"].as_str().unwrap().to_string(),
                f["line"].as_u64().unwrap() as usize,
                f["column"].as_u64().unwrap() as usize,
            ));
    }
    let mut differ = Vec::new();
    let mut total = 0;
    for (i, (rule, sql)) in cases.iter().enumerate() {
        let theirs = squawk(sql);
        total += theirs.len();
        let mut mine = ours.remove(&paths[i]).unwrap_or_default();
        mine.sort();
        if mine != theirs {
            differ.push(format!(
                "{rule} case {i}:\n{sql}\n  squawk: {theirs:?}\n  runbook: {mine:?}"
            ));
        }
    }
    assert!(total > 300, "squawk found only {total} findings");
    assert!(
        differ.is_empty(),
        "{} of {} cases differ:\n{}",
        differ.len(),
        cases.len(),
        differ.join("\n")
    );
}

/// A project's history is applied everywhere long ago; `settings.lint:
/// error` refused to deploy anything while its old files had findings
/// (documenso's 163 Prisma migrations have 744). `applied_through`
/// says which will not run again: they are not linted, and are counted as
/// not linted; what they made still counts for the files after them (an
/// index an old file made covers a new foreign key).
#[test]
fn migrations_applied_everywhere_already_are_not_linted() {
    let db = support::Db::fresh();
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("migrations");
    std::fs::create_dir_all(&m).unwrap();
    for (name, up) in [
        (
            "20240101000000_a",
            "CREATE TABLE a (id bigint PRIMARY KEY);\nCREATE TABLE b (id bigint PRIMARY KEY, a_id bigint);\nCREATE INDEX b_a ON b (a_id);\n",
        ),
        (
            "20240102000000_b",
            "ALTER TABLE b ADD COLUMN n int NOT NULL;\n",
        ),
        (
            "20240103000000_c",
            "ALTER TABLE b ADD CONSTRAINT b_a_fk FOREIGN KEY (a_id) REFERENCES a (id) NOT VALID;\nCREATE INDEX b_n ON b (n);\n",
        ),
    ] {
        std::fs::write(m.join(format!("{name}.up.sql")), up).unwrap();
        std::fs::write(m.join(format!("{name}.down.sql")), "SELECT 1;\n").unwrap();
    }
    let findings = |extra: &[&str]| {
        let (_, out, err) = lint(&[&[m.to_str().unwrap(), "--format", "json"][..], extra].concat());
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}{err}"));
        let files: Vec<String> = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let file = std::path::Path::new(f["file"].as_str().unwrap());
                let name = file.file_name().unwrap().to_string_lossy();
                format!("{} {}", &name[..14], f["rule"].as_str().unwrap())
            })
            .collect();
        (files, v["not_linted"].as_u64().unwrap())
    };
    let (all, skipped) = findings(&[]);
    assert!(
        all.iter().any(|f| f.starts_with("20240102000000 ")),
        "{all:?}"
    );
    assert_eq!(skipped, 0);
    let toml = dir.path().join("lint.toml");
    std::fs::write(&toml, "applied_through = \"20240102000000\"\n").unwrap();
    let (new, skipped) = findings(&["--config", toml.to_str().unwrap()]);
    assert_eq!(skipped, 2);
    assert!(!new.is_empty(), "the new file is still linted");
    assert!(
        new.iter().all(|f| f.starts_with("20240103000000 ")),
        "{new:?}"
    );
    assert!(
        !new.iter().any(|f| f.ends_with("foreign-key-without-index")),
        "the old file's index counts: {new:?}"
    );
    let (_, out, _) = lint(&[
        m.to_str().unwrap(),
        "--config",
        toml.to_str().unwrap(),
        "--explain",
    ]);
    assert!(
        out.contains("20240102000000_b.up.sql:1: 2 migration(s) through 20240102000000 are applied everywhere already")
            && out.contains("1 file(s) linted: ")
            && out.contains(", 2 not linted"),
        "{out}"
    );
    // exec: refused while the old files' errors stand, with what to do;
    // run once the runbook says which are applied.
    db.sql("CREATE TABLE a (id bigint PRIMARY KEY); CREATE TABLE b (id bigint PRIMARY KEY, a_id bigint, n int NOT NULL DEFAULT 0); CREATE INDEX b_a ON b (a_id)");
    let body = |lint: &str| {
        format!(
            "apiVersion: runbook/v1\nkind: Runbook\nmetadata: {{ name: l, version: 1 }}\nsettings: {{ lint: error }}\n{lint}phases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: apply\n        migrate: {{ dir: {}, history: {{ format: runbook }} }}\n",
            m.display()
        )
    };
    let run = support::Case::new(&body("")).exec(&db.url, &[]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(run.stderr.contains("applied_through"), "{}", run.stderr);
    // The new file's own findings are errors too: turned to warnings here.
    let lint = "lint: { applied_through: \"20240102000000\", severities: { require-concurrent-index-creation: warning, constraint-missing-not-valid: warning, adding-foreign-key-constraint: warning } }\n";
    let run = support::Case::new(&body(lint)).exec(&db.url, &[]);
    assert_ne!(run.code, 5, "{}", run.stderr);
    assert_eq!(
        run.report["lint"]["errors"].as_u64(),
        Some(0),
        "{}",
        run.report["lint"]
    );
}

/// `exec` lints what its params run: a step whose `when` is false with
/// them is not linted, nor are the ups of a step that runs the downs, and
/// a backup that does not run covers nothing. `runbook lint`, with the
/// defaults, still lints every step.
#[test]
fn exec_lints_the_steps_its_params_run() {
    let dir = support::Case::new("");
    let m = dir.dir.path().join("m");
    std::fs::create_dir(&m).unwrap();
    let w = |f: &str, t: &str| std::fs::write(m.join(f), t).unwrap();
    w(
        "001_t.up.sql",
        "CREATE TABLE t (id bigint PRIMARY KEY, v text);\n",
    );
    w("001_t.down.sql", "DROP TABLE t;\n");
    // An index on a table an earlier file made: it holds data by now.
    w("002_i.up.sql", "CREATE INDEX t_v ON t (v);\n");
    w("002_i.down.sql", "DROP INDEX t_v;\n");
    let book = format!(
        r#"apiVersion: runbook/v1
kind: Runbook
metadata: {{ name: modes, version: 1 }}
params:
  mode: {{ type: string, default: plan, enum: [plan, apply, rollback] }}
  to: {{ type: string, default: latest }}
settings: {{ lint: error }}
phases:
  - id: plan
    kind: preflight
    when: params.mode == "plan"
    steps:
      - id: pending
        check: {{ builtin: pending_migrations, dir: {m}, max: 100 }}
  - id: apply
    kind: migrate
    when: params.mode == "apply"
    steps:
      - id: up
        migrate: {{ dir: {m}, to: "{{{{ params.to }}}}" }}
  - id: rollback
    kind: migrate
    when: params.mode == "rollback"
    steps:
      - id: down
        migrate: {{ dir: {m}, direction: down, to: "0" }}
"#,
        m = m.display()
    );
    let case = support::Case::new(&book);
    let (code, out, _) = lint(&[case.file.to_str().unwrap()]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("error[require-concurrent-index-creation]"),
        "{out}"
    );
    let db = support::Db::fresh();
    for mode in ["plan", "rollback"] {
        let run = case.exec(&db.url, &["--set", &format!("mode={mode}")]);
        assert_eq!(run.code, 0, "{mode}: {}", run.stderr);
        assert_eq!(
            (
                run.report["lint"]["errors"].as_u64(),
                run.report["lint"]["not_linted"].as_u64()
            ),
            (Some(0), Some(1)),
            "{mode}: {}",
            run.report["lint"]
        );
    }
    let (_, out, _) = lint(&[case.file.to_str().unwrap(), "--explain"]);
    assert!(
        !out.contains("runs the downs"),
        "another step lints the directory: {out}"
    );
    // Without the up step, nothing runs an up: the directory is noted, not
    // linted.
    let up = format!(
        "  - id: apply\n    kind: migrate\n    when: params.mode == \"apply\"\n    steps:\n      - id: up\n        migrate: {{ dir: {}, to: \"{{{{ params.to }}}}\" }}\n",
        m.display()
    );
    let down_only = support::Case::new(&book.replace(&up, ""));
    let (code, out, _) = lint(&[down_only.file.to_str().unwrap(), "--explain"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("step `down`: its migration directory is not linted: the step runs the downs, and lint reads the ups"),
        "{out}"
    );
    // exec lints what it runs on the database: a `to` that stops before
    // 002 leaves it out.
    let run = case.exec(&db.url, &["--set", "mode=apply", "--set", "to=001"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.report["lint"]["not_linted"], 1,
        "{}",
        run.report["lint"]
    );
    // 001 is applied there, and t holds rows: 002's index would block its
    // writers, and the run is refused before anything runs.
    db.sql("INSERT INTO t VALUES (1, 'a')");
    let run = case.exec(&db.url, &["--set", "mode=apply"]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("error[require-concurrent-index-creation]")
            && !run.stderr.contains("001_t.up.sql"),
        "{}",
        run.stderr
    );
    assert_eq!(
        db.sql("SELECT to_regclass('t_v') IS NULL"),
        "t",
        "nothing ran"
    );
    // On a new database the run creates t, empty, before 002 indexes it.
    let fresh = support::Db::fresh();
    let run = case.exec(&fresh.url, &["--set", "mode=apply"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(fresh.sql("SELECT to_regclass('t_v') IS NOT NULL"), "t");
    // And on a throwaway cluster, which starts empty.
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .arg("exec")
        .arg(&case.file)
        .args([
            "--ephemeral",
            "--progress",
            "never",
            "--set",
            "mode=apply",
            "--report-dir",
        ])
        .arg(case.dir.path().join("ephemeral"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let (code, _, err) = support::ended(out);
    assert_eq!(code, 0, "{err}");

    // A backup the params leave out covers nothing.
    let fixed = CONTRACT
        .replace("DROP COLUMN IF EXISTS legacy;", "DROP COLUMN IF EXISTS other;")
        .replace(
            "metadata: { name: t, version: 1 }\n",
            "metadata: { name: t, version: 1 }\nparams:\n  backup: { type: boolean, default: true }\nsettings: { lint: error }\n",
        )
        .replace("    kind: backup\n", "    kind: backup\n    when: params.backup\n");
    let case = support::Case::new(&fixed);
    let plan = |backup: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
            .args(["plan", case.file.to_str().unwrap(), "--set", backup])
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        support::ended(out).1
    };
    let out = plan("backup=true");
    assert!(out.contains("lint: 0 error(s)"), "{out}");
    let out = plan("backup=false");
    assert!(
        out.contains("error[ban-drop-column]") && out.contains("no earlier backup covers orders"),
        "{out}"
    );
}
