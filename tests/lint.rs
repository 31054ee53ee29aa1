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

#[test]
fn tables_created_earlier_in_the_set_are_new_and_need_no_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let w = |f: &str, t: &str| std::fs::write(dir.path().join(f), t).unwrap();
    w(
        "001_t.up.sql",
        "CREATE TABLE IF NOT EXISTS fresh (id bigint PRIMARY KEY, v text);\n",
    );
    w("001_t.down.sql", "DROP TABLE IF EXISTS fresh;\n");
    w(
        "002_i.up.sql",
        "CREATE INDEX IF NOT EXISTS fresh_v ON fresh (v);\nCREATE INDEX IF NOT EXISTS old_v ON old (v);\n",
    );
    w(
        "002_i.down.sql",
        "DROP INDEX IF EXISTS fresh_v;\nDROP INDEX IF EXISTS old_v;\n",
    );
    let d = dir.path().to_str().unwrap();
    let (_, out, _) = lint(&[
        d,
        "--explain",
        "--exclude",
        "require-lock-timeout",
        "--exclude",
        "require-statement-timeout",
    ]);
    let reported: Vec<&str> = out.lines().filter(|l| l.starts_with("  --> ")).collect();
    assert_eq!(reported.len(), 1, "{out}");
    assert!(reported[0].ends_with("002_i.up.sql:2:1"), "{out}");
    assert!(
        out.contains(
            "require-concurrent-index-creation not reported: fresh is created earlier in this set"
        ),
        "{out}"
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
