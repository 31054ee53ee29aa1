//! The real binary: stdout, stderr and the exit code, checked together.

use std::process::Command;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn runbook(args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

const EVERY: &str = "tests/fixtures/valid/every_key.yml";

#[test]
fn version_prints_and_exits_zero() {
    let o = runbook(&["--version"]);
    assert_eq!(
        (o.code, o.stdout.as_str(), o.stderr.as_str()),
        (0, concat!("runbook ", env!("CARGO_PKG_VERSION"), "\n"), "")
    );
}

#[test]
fn completions_and_the_man_page_cover_every_command() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = runbook(&["completions", shell]);
        assert_eq!(out.code, 0, "{shell}: {}", out.stderr);
        for word in [
            "exec",
            "rollback",
            "migrations",
            "targets",
            "only-failed",
            "history-format",
        ] {
            assert!(out.stdout.contains(word), "{shell} completions lack {word}");
        }
    }
    let man = runbook(&["man"]);
    assert_eq!(man.code, 0, "{}", man.stderr);
    assert!(man.stdout.contains(".TH runbook 1"), "{}", man.stdout);
    for word in ["exec", "resume", "lint", "completions"] {
        assert!(man.stdout.contains(word), "the man page lacks {word}");
    }
    let bad = runbook(&["completions", "pwsh"]);
    assert_eq!(bad.code, 5);
    assert!(bad.stderr.contains("powershell"), "{}", bad.stderr);
}

#[test]
fn bad_flags_exit_5_not_clap_s_2() {
    let o = runbook(&["validate", "--frobnicate", EVERY]);
    assert_eq!(o.code, 5);
    assert_eq!(o.stdout, "");
    assert!(
        o.stderr
            .starts_with("error: unexpected argument '--frobnicate' found"),
        "{}",
        o.stderr
    );

    let o = runbook(&[]);
    assert_eq!(o.code, 5);
    assert!(o.stderr.contains("Usage: runbook"), "{}", o.stderr);

    let o = runbook(&["plan", EVERY, "--format", "yaml"]);
    assert_eq!(o.code, 5);
    assert!(
        o.stderr
            .contains("invalid value 'yaml' for '--format <FORMAT>'"),
        "{}",
        o.stderr
    );
}

#[test]
fn validate_reports_success_on_stdout() {
    let o = runbook(&["validate", EVERY, "tests/fixtures/valid/minimal.yml"]);
    assert_eq!(
        (o.code, o.stdout.as_str(), o.stderr.as_str()),
        (
            0,
            "ok: tests/fixtures/valid/every_key.yml (every-key 2.3.0: 7 phases, 37 steps)\nok: tests/fixtures/valid/minimal.yml (minimal 1: 1 phase, 1 step)\n",
            ""
        )
    );
}

#[test]
fn validate_reports_every_bad_file_and_exits_5() {
    let o = runbook(&[
        "validate",
        "tests/fixtures/invalid/unknown_key_settings.yml",
        "tests/fixtures/valid/minimal.yml",
        "tests/fixtures/invalid/bad_duration.yml",
    ]);
    assert_eq!(o.code, 5);
    assert_eq!(
        o.stdout,
        "ok: tests/fixtures/valid/minimal.yml (minimal 1: 1 phase, 1 step)\n"
    );
    assert!(o.stderr.contains("error: unknown key `statment_timeout` in settings\n --> tests/fixtures/invalid/unknown_key_settings.yml:8:3\n"), "{}", o.stderr);
    assert!(o.stderr.contains("error: invalid duration `5 seconds` for `timeout`\n  --> tests/fixtures/invalid/bad_duration.yml:11:18\n"), "{}", o.stderr);
    assert_eq!(o.stderr.matches("nothing ran").count(), 2);
}

#[test]
fn set_values_are_checked_against_their_declarations() {
    let o = runbook(&[
        "validate",
        EVERY,
        "--set",
        "tabel=orders",
        "--set",
        "batch=0",
        "--set",
        "env=prod",
        "--set",
        "dry_run",
    ]);
    assert_eq!(o.code, 5);
    assert_eq!(o.stdout, "");
    assert_eq!(
        o.stderr,
        "error: missing value for required param `table`
  --> tests/fixtures/valid/every_key.yml:16:3
   |
16 |   table:
   |   ^^^^^ required
   |
   = help: pass `--set table=VALUE` or put `table:` in a --params-file

error: unknown param `tabel`
 --> command line:1:7
  |
1 | --set tabel=orders
  |       ^^^^^ not declared by the runbook
  |
  = help: did you mean `table`?

error: invalid value for param `batch`
 --> command line:1:13
  |
1 | --set batch=0
  |             ^ `0` is below the minimum 1

error: invalid value for param `env`
 --> command line:1:11
  |
1 | --set env=prod
  |           ^^^^ `prod` is not one of `staging`, `production`

error: `--set dry_run` has no value
 --> command line:1:7
  |
1 | --set dry_run
  |       ^^^^^^^ expected name=value
  |
  = help: write `--set dry_run=VALUE`

error: `tests/fixtures/valid/every_key.yml` is invalid (5 errors); nothing ran
"
    );
}

#[test]
fn params_file_errors_point_into_the_params_file() {
    let o = runbook(&[
        "plan",
        EVERY,
        "--params-file",
        "tests/fixtures/params/bad.params.yml",
    ]);
    assert_eq!(o.code, 5);
    assert_eq!(
        o.stderr,
        "error: invalid value for param `batch`
 --> tests/fixtures/params/bad.params.yml:2:8
  |
2 | batch: lots
  |        ^^^^ expected a whole number, found the string `lots`

error: unknown param `colour`
 --> tests/fixtures/params/bad.params.yml:3:1
  |
3 | colour: blue
  | ^^^^^^ not declared by the runbook
  |
  = help: declared params: `table`, `env`, `batch`, `ratio`, `dry_run` or `api_token`

error: `tests/fixtures/valid/every_key.yml` is invalid (2 errors); nothing ran
"
    );
}

#[test]
fn set_beats_the_params_file_which_beats_the_default() {
    let o = runbook(&[
        "plan",
        EVERY,
        "--format",
        "json",
        "--params-file",
        "tests/fixtures/params/every_key.params.yml",
        "--set",
        "batch=42",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let plan: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let p = &plan["params"];
    assert_eq!(
        (&p["batch"]["value"], &p["batch"]["origin"]),
        (&42.into(), &"set".into())
    );
    assert_eq!(
        (&p["env"]["value"], &p["env"]["origin"]),
        (&"production".into(), &"params_file".into())
    );
    assert_eq!(
        (&p["ratio"]["value"], &p["ratio"]["origin"]),
        (&0.5.into(), &"default".into())
    );
}

#[test]
fn plan_needs_every_required_param() {
    let o = runbook(&["plan", EVERY]);
    assert_eq!(o.code, 5);
    assert_eq!(o.stdout, "");
    assert!(
        o.stderr
            .starts_with("error: missing value for required param `table`\n"),
        "{}",
        o.stderr
    );
}

fn redact_sha(text: &str) -> String {
    let re = regex::Regex::new("[0-9a-f]{64}").unwrap();
    re.replace_all(text, "[sha256]").into_owned()
}

#[test]
fn plan_text_snapshot() {
    let o = runbook(&["plan", EVERY, "--set", "table=orders"]);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    insta::assert_snapshot!(redact_sha(&o.stdout));
}

#[test]
fn plan_json_snapshot() {
    let o = runbook(&["plan", EVERY, "--set", "table=orders", "--format", "json"]);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    insta::assert_snapshot!(redact_sha(&o.stdout));
}

#[test]
fn quickstart_plan_snapshot() {
    let o = runbook(&["plan", "examples/quickstart/runbook.yml"]);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    insta::assert_snapshot!(redact_sha(&o.stdout));
}

#[test]
fn secrets_never_reach_plan_output() {
    for format in ["text", "json"] {
        let o = runbook(&[
            "plan",
            EVERY,
            "--set",
            "table=orders",
            "--set",
            "api_token=tok-7f3a9",
            "--format",
            format,
        ]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        for secret in ["tok-7f3a9", "hunter2"] {
            assert!(
                !o.stdout.contains(secret),
                "{format} plan leaks {secret}:\n{}",
                o.stdout
            );
        }
        assert!(o.stdout.contains("[REDACTED]"));
    }
}

#[test]
fn plan_shows_run_time_values_instead_of_dropping_them() {
    let o = runbook(&["plan", EVERY, "--set", "table=orders", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let prompt = &plan["phases"][4]["approval"]["prompt"];
    assert_eq!(
        prompt["text"],
        "Drop the old column of orders (<known after steps.count_before> rows)?"
    );
    assert_eq!(prompt["after"], serde_json::json!(["steps.count_before"]));
}

#[test]
fn schema_prints_the_committed_schema() {
    let o = runbook(&["schema"]);
    assert_eq!(o.code, 0);
    assert_eq!(
        o.stdout,
        std::fs::read_to_string("schemas/runbook.v1.schema.json").unwrap()
    );
}

#[test]
fn the_quickstart_runs_on_a_throwaway_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("ok");
    let o = runbook(&[
        "exec",
        "examples/quickstart/runbook.yml",
        "--ephemeral",
        "--progress",
        "never",
        "--report-dir",
        reports.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("say_done stdout | greetings holds 3 rows"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("SUCCEEDED (exit code 0)"), "{}", o.stderr);

    let reports = dir.path().join("rollback");
    let o = runbook(&[
        "exec",
        "examples/quickstart/rollback.yml",
        "--ephemeral",
        "--progress",
        "never",
        "--report-dir",
        reports.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("FAILED at expand.add_bad_constraint: rolled back cleanly; the schema is verified equal to before the run; rows were not compared (`settings.verify_undo` names no table) (exit code 2)"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("the run ended with status rolled_back"),
        "{}",
        o.stderr
    );
    let md = std::fs::read_to_string(reports.join("report.md")).unwrap();
    assert!(
        md.contains("| drop_column | add_column | ✅ succeeded |"),
        "{md}"
    );
    assert!(
        md.contains("| drop_table | create_table | ✅ succeeded |"),
        "{md}"
    );
}

/// A bad connection string is refused before anything runs, and the
/// message names the part that is wrong.
#[test]
fn a_bad_connection_string_names_the_part_that_is_wrong() {
    let file = std::path::Path::new("examples/quickstart/runbook.yml");
    for (url, want) in [
        ("postgres://u@h:99999/db", "invalid value for option `port`"),
        (
            "postgres://u@h/db?sslmode=verifyfull",
            "sslmode `verifyfull` is not one of disable, allow, prefer, require, verify-ca, verify-full",
        ),
        (
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=/nope.pem",
            "sslrootcert `/nope.pem` is not a readable file",
        ),
        ("postgres://u@h/db?nosuch=1", "unknown option `nosuch`"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
            .arg("exec")
            .arg(file)
            .args(["--database-url", url])
            .env_remove("DATABASE_URL")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{stderr}");
        assert!(stderr.contains(want), "{url}: {stderr}");
    }
}

#[test]
fn init_finds_the_projects_migrations_and_writes_a_runbook_that_lints_and_plans() {
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("services/api/db/migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    for (i, t) in ["accounts", "orders"].iter().enumerate() {
        std::fs::write(
            migrations.join(format!("2024010100000{i}_{t}.sql")),
            format!("-- migrate:up\nCREATE TABLE {t} (id bigint PRIMARY KEY);\n\n-- migrate:down\nDROP TABLE {t};\n"),
        )
        .unwrap();
    }
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
            .args(args)
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    };
    let out = run(&["init", "-o", "ops/release.yml", "--set", "mode=plan"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(
            "from `migrate-safe`; `migrations` is services/api/db/migrations (2 dbmate migrations)"
        ),
        "{}",
        out.stdout
    );
    let text = std::fs::read_to_string(dir.path().join("ops/release.yml")).unwrap();
    assert!(
        text.starts_with("# yaml-language-server: $schema=../.runbook/runbook.v1.schema.json\n"),
        "{text}"
    );
    assert!(
        text.contains("    default: \"../services/api/db/migrations\"\n"),
        "{text}"
    );
    assert!(dir.path().join(".runbook/runbook.v1.schema.json").exists());
    for args in [
        &["validate", "ops/release.yml"][..],
        &["lint", "ops/release.yml"][..],
        &["plan", "ops/release.yml"][..],
    ] {
        let out = run(args);
        assert_eq!(out.code, 0, "{args:?}: {}{}", out.stdout, out.stderr);
    }
    let again = run(&["init", "-o", "ops/release.yml"]);
    assert_eq!(again.code, 5);
    assert!(
        again.stderr.contains("`ops/release.yml` exists"),
        "{}",
        again.stderr
    );
    let typo = run(&["init", "--from", "staging-rehersal", "-o", "x.yml"]);
    assert_eq!(typo.code, 5);
    assert!(
        typo.stderr.contains("did you mean `staging-rehearsal`?"),
        "{}",
        typo.stderr
    );
    let param = run(&[
        "init",
        "--from",
        "add-column",
        "--set",
        "tabel=orders",
        "-o",
        "y.yml",
    ]);
    assert_eq!(param.code, 5);
    assert!(
        param.stderr.contains("did you mean `table`?"),
        "{}",
        param.stderr
    );
    assert!(!dir.path().join("y.yml").exists());
}

/// documenso keeps 163 Prisma migrations at `packages/prisma/migrations`.
/// `init --from ci-rehearsal` wired them in with `forward_only: false`, so
/// the runbook, run as its comment said, failed every migration for the
/// down Prisma never has (exit 3); and the comment said to run
/// `runbooks/ci-rehearsal.yml` with the example's migrations. Now the
/// written runbook says `forward_only: true` (a note says why), its comment
/// runs it with what was wired in, and doing so passes.
#[test]
fn init_on_a_prisma_project_writes_a_rehearsal_that_runs_as_its_comment_says() {
    let dir = tempfile::tempdir().unwrap();
    for (name, sql) in [
        (
            "20240101000000_init",
            "CREATE TABLE \"User\" (id SERIAL PRIMARY KEY);\n",
        ),
        (
            "20240102000000_email",
            "ALTER TABLE \"User\" ADD COLUMN email TEXT;\n",
        ),
    ] {
        let m = dir.path().join("packages/prisma/migrations").join(name);
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(m.join("migration.sql"), sql).unwrap();
    }
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
            .args(args)
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .env_remove("DATABASE_URL")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, out) = run(&["init", "--from", "ci-rehearsal"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("note: forward_only is true: prisma migrations have no downs"),
        "{out}"
    );
    let text = std::fs::read_to_string(dir.path().join("runbook.yml")).unwrap();
    assert!(
        text.contains("  forward_only:\n    type: boolean\n    default: true\n"),
        "{text}"
    );
    // The comment's command, as written there.
    let line = text
        .lines()
        .find(|l| l.contains("runbook exec") && l.contains("--ephemeral"))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(line, "#   runbook exec runbook.yml --ephemeral --yes");
    let args: Vec<&str> = line.trim_start_matches("#   runbook ").split(' ').collect();
    let (code, out) = run(&[&args[..], &["--progress", "never"]].concat());
    assert_eq!(code, 0, "{out}");
    // A guarded migration is refused for its history's lint errors: init
    // says so, and how to lint only what will run.
    let (code, out) = run(&["init", "--from", "migrate-safe", "-o", "safe.yml"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("`settings.lint: error` refuses to run while they stand")
            && out.contains("add `lint: {applied_through: \"20240102000000\"}` to it"),
        "{out}"
    );
    let mut safe = std::fs::read_to_string(dir.path().join("safe.yml")).unwrap();
    safe.push_str("lint: {applied_through: \"20240102000000\"}\n");
    std::fs::write(dir.path().join("safe.yml"), safe).unwrap();
    let (code, out) = run(&["lint", "safe.yml"]);
    assert_eq!(code, 0, "{out}");
    // What the person says wins.
    let (code, out) = run(&[
        "init",
        "--from",
        "ci-rehearsal",
        "--set",
        "forward_only=false",
        "-o",
        "strict.yml",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("note: forward_only"), "{out}");
    let text = std::fs::read_to_string(dir.path().join("strict.yml")).unwrap();
    assert!(
        text.contains("  forward_only:\n    type: boolean\n    default: false\n"),
        "{text}"
    );
}
