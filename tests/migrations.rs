//! `migrate`, `snapshot` and `rehearse` against a real PostgreSQL, over the
//! migration sets in tests/fixtures/migrations, each with a known defect.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Case, Db, Run};

const HEAD: &str = "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: t, version: 1 }\n";

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/migrations/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn one_step(phase: &str, id: &str, body: &str) -> String {
    format!(
        "{HEAD}phases:\n  - id: {phase}\n    kind: {phase}\n    steps:\n      - id: {id}\n{body}"
    )
}

/// A finished rehearsal, with its runbook's directory (and reports) kept.
struct Rehearsal {
    run: Run,
    /// Kept so its directory (reports, junit.xml) lives as long as the run.
    _case: Case,
}

impl std::ops::Deref for Rehearsal {
    type Target = Run;
    fn deref(&self) -> &Run {
        &self.run
    }
}

fn rehearse(dir: &str, extra: &str) -> Rehearsal {
    rehearse_on(&Db::fresh(), dir, extra)
}

/// A rehearsal of `dir` on `db`, with `extra` in its step.
fn rehearse_on(db: &Db, dir: &str, extra: &str) -> Rehearsal {
    let case = Case::new(&one_step(
        "verify",
        "rehearse",
        &format!("        rehearse:\n          dir: {dir}\n{extra}"),
    ));
    let junit = case.dir.path().join("junit.xml");
    Rehearsal {
        run: case.exec(&db.url, &["--junit", junit.to_str().unwrap()]),
        _case: case,
    }
}

/// The rehearsal's outcome for a version.
fn outcome<'r>(run: &'r Run, version: &str) -> &'r Value {
    run.step("rehearse")["details"]["migrations"]
        .as_array()
        .expect("a rehearse step reports its migrations")
        .iter()
        .find(|m| m["version"] == version)
        .unwrap_or_else(|| panic!("no outcome for {version}: {}", run.stderr))
}

/// Rehearse `files`, whose migration `002` must be `lossy` alone: its
/// finding.
fn lossy_002(files: &[(&str, &str)]) -> Value {
    let (_dir, run) = rehearse_files(files, "");
    assert_eq!(run.code, 3, "{}", run.stderr);
    let o = outcome(&run, "002");
    assert_eq!(verdicts(o), ["lossy"], "{o}");
    o["findings"][0].clone()
}

fn verdicts(o: &Value) -> Vec<&str> {
    o["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["verdict"].as_str().unwrap())
        .collect()
}

fn changes(f: &Value) -> Vec<(String, String)> {
    f["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["change"].as_str().unwrap().to_string(),
                c["object"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_down_that_forgets_an_index_is_a_parity_mismatch_naming_it() {
    let run = rehearse(&fixture("down_forgets_index"), "");
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(outcome(&run, "001")["verdict"], "ok");
    let o = outcome(&run, "002");
    assert_eq!(o["verdict"], "parity_mismatch");
    assert_eq!(verdicts(o), ["parity_mismatch"]);
    let f = &o["findings"][0];
    assert_eq!(
        changes(f),
        [(
            "added".to_string(),
            "index public.accounts_email_idx".to_string()
        )]
    );
    let diff = f["changes"][0]["diff"].as_array().unwrap();
    assert!(
        diff.iter().any(|l| l.as_str().unwrap().contains(
            "+ definition: CREATE INDEX accounts_email_idx ON public.accounts USING btree (email)"
        )),
        "{diff:?}"
    );
    let md = std::fs::read_to_string(run.dir.join("report.md")).unwrap();
    assert!(
        md.contains("| 002 | email_index | ❌ parity_mismatch |"),
        "{md}"
    );
    assert!(
        run.stderr
            .contains("1 migration(s) failed the rehearsal: 002 email_index (parity_mismatch)"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_down_that_destroys_a_pre_existing_columns_data_is_lossy() {
    let run = rehearse(&fixture("down_drops_data"), "");
    assert_eq!(run.code, 3, "{}", run.stderr);
    let o = outcome(&run, "002");
    assert_eq!(o["verdict"], "lossy");
    // The column came back in its place, so the schema alone looks fine.
    assert_eq!(verdicts(o), ["lossy"]);
    assert_eq!(
        o["findings"][0]["tables"],
        serde_json::json!([
            "public.accounts: 3 rows, but their contents changed (in column(s) name)"
        ])
    );
}

/// A down that adds a dropped column back, empty: the column stands last,
/// and the lossy finding names it as dropped and added again (a checksum
/// alone says only that the rows differ). As crates.io's
/// drop_gh_access_token does on a table with rows.
#[test]
fn a_column_dropped_and_added_again_is_named_where_rows_changed() {
    let (_dir, run) = rehearse_files(
        &[
            (
                "001_t.up.sql",
                "CREATE TABLE users (id int PRIMARY KEY, token text, login text);\nINSERT INTO users VALUES (1, 'a', 'x'), (2, 'b', 'y');\n",
            ),
            ("001_t.down.sql", "DROP TABLE users;\n"),
            ("002_drop.up.sql", "ALTER TABLE users DROP COLUMN token;\n"),
            (
                "002_drop.down.sql",
                "ALTER TABLE users ADD COLUMN token text;\n",
            ),
        ],
        "",
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    let o = outcome(&run, "002");
    assert_eq!(o["verdict"], "lossy", "{o}");
    let lossy = o["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["verdict"] == "lossy")
        .unwrap();
    assert_eq!(
        lossy["tables"],
        serde_json::json!([
            "public.users: 2 rows, but their contents changed (column(s) token were dropped and added again)"
        ])
    );
    let order = o["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["verdict"] == "column_order")
        .unwrap();
    assert_eq!(
        order["changes"][0]["diff"]
            .as_array()
            .unwrap()
            .last()
            .unwrap(),
        "+ column token: dropped and added again (it is now last): it holds only what was written since"
    );
}

/// popx runs a down of only comments (Hydra's generated "Down migrations
/// from Hydra 2.x to 1.x are not available" stubs) as the no-op it is: the
/// up's objects stay, and the finding says why, naming the file.
#[test]
fn a_popx_down_of_only_comments_is_named_as_what_undid_nothing() {
    let (_dir, run) = rehearse_files(
        &[
            (
                "20200101000000_t.postgres.up.sql",
                "CREATE TABLE t (id int);\n",
            ),
            (
                "20200101000000_t.down.sql",
                "-- Down migrations are not available.\n",
            ),
        ],
        "",
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    let o = outcome(&run, "20200101000000");
    assert_eq!(o["verdict"], "parity_mismatch", "{o}");
    assert_eq!(
        o["findings"][0]["message"],
        "after down (20200101000000_t.down.sql holds only comments: it ran and undid nothing), the schema is not what it was before up: 1 object(s) differ: added table public.t",
        "{o}"
    );
}

/// Values that moved between rows change no column's values, only the
/// rows': the finding says so, where it cannot name a column.
#[test]
fn values_moved_between_rows_are_told_from_values_that_changed() {
    let f = lossy_002(&[
        (
            "001_t.up.sql",
            "CREATE TABLE t (id int PRIMARY KEY, v text);\nINSERT INTO t VALUES (1, 'a'), (2, 'b');\n",
        ),
        ("001_t.down.sql", "DROP TABLE t;\n"),
        (
            "002_swap.up.sql",
            "UPDATE t SET v = CASE id WHEN 1 THEN 'b' ELSE 'a' END;\n",
        ),
        ("002_swap.down.sql", "SELECT 1;\n"),
    ]);
    assert_eq!(
        f["tables"],
        serde_json::json!([
            "public.t: 2 rows, but their contents changed (each column holds the values it held, but not in the same rows)"
        ]),
        "{f}"
    );
}

/// Values are compared byte by byte: under a case-insensitive collation,
/// `Ada` and `ada` are equal, but a down that leaves one for the other has
/// not put back what was there.
#[test]
fn a_case_change_under_a_case_insensitive_collation_is_a_change() {
    let f = lossy_002(&[
        (
            "001_t.up.sql",
            "CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);\n\
                 CREATE TABLE t (id int PRIMARY KEY, name text COLLATE ci);\n\
                 INSERT INTO t VALUES (1, 'Ada');\n",
        ),
        ("001_t.down.sql", "DROP TABLE t;\nDROP COLLATION ci;\n"),
        ("002_lower.up.sql", "UPDATE t SET name = lower(name);\n"),
        ("002_lower.down.sql", "SELECT 1;\n"),
    ]);
    assert_eq!(
        f["tables"],
        serde_json::json!(["public.t: 1 rows, but their contents changed (in column(s) name)"]),
        "{f}"
    );
}

/// Roles are the cluster's: a migration that creates one, or grants one
/// to a role that was there, leaves that after the rehearsal, which does
/// not undo it. The rehearsal says so. Before, nothing did: AbsaOSS's
/// EventGate rehearsal left three login roles, with their passwords, in
/// the cluster.
#[test]
fn roles_a_rehearsal_leaves_in_the_cluster_are_named() {
    let db = Db::fresh();
    let tag = db.url.rsplit('/').next().unwrap().to_string();
    let (made, there) = (format!("{tag}_made"), format!("{tag}_there"));
    db.sql(&format!("CREATE ROLE {there}"));
    let up = format!(
        "CREATE TABLE t (id int);\n\
         DO $$ BEGIN IF to_regrole('{made}') IS NULL THEN CREATE ROLE {made}; END IF; END $$;\n\
         GRANT {made} TO {there};\n"
    );
    let (_dir, run) = rehearse_files_on(
        &db,
        &[
            ("001_t.up.sql", up.as_str()),
            ("001_t.down.sql", "DROP TABLE t;\n"),
        ],
        "",
    );
    db.sql(&format!(
        "DROP ROLE IF EXISTS {made}; DROP ROLE IF EXISTS {there}"
    ));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let warnings = run.step("rehearse")["details"]["warnings"].to_string();
    assert!(
        warnings.contains(&format!(
            "the cluster's roles changed while the rehearsal ran (by its migrations, unless another session changed them meanwhile): created {made}; changed {there} (member of [] → [{made}])"
        )),
        "{warnings}"
    );
    assert!(
        run.stderr.contains("warning: the cluster's roles changed"),
        "{}",
        run.stderr
    );
}

/// Only the history the legs record in is bookkeeping. Another tool's
/// history table is a table like the rest: crates.io's
/// `drop_schema_migrations` (a Diesel history) drops an old
/// `schema_migrations`, and its down makes one the database never had.
/// Before, every tool's history table was left out, and both read `ok`.
#[test]
fn another_tools_history_table_is_judged_as_any_table() {
    let (_dir, run) = rehearse_files(
        &[
            (
                "2017-05-02-181306_drop_schema_migrations/up.sql",
                "DROP TABLE IF EXISTS schema_migrations;\n",
            ),
            (
                "2017-05-02-181306_drop_schema_migrations/down.sql",
                "CREATE TABLE IF NOT EXISTS schema_migrations (\n    id SERIAL PRIMARY KEY,\n    version INT8 NOT NULL UNIQUE\n);\n",
            ),
        ],
        "",
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(run.step("rehearse")["details"]["format"], "diesel");
    let o = outcome(&run, "20170502181306");
    assert_eq!(verdicts(o), ["parity_mismatch"], "{o}");
    let message = o["findings"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("added table public.schema_migrations"),
        "{message}"
    );

    // Rows: a migration that deletes sql-migrate's record of another
    // migration, and does not put it back, lost it.
    let f = lossy_002(&[
        (
            "001_old.up.sql",
            "CREATE TABLE gorp_migrations (id text PRIMARY KEY, applied_at timestamptz);\n\
                 INSERT INTO gorp_migrations VALUES ('1_init.sql', '2020-01-01'), ('2_old.sql', '2020-01-02');\n",
        ),
        ("001_old.down.sql", "DROP TABLE gorp_migrations;\n"),
        (
            "002_forget.up.sql",
            "DELETE FROM gorp_migrations WHERE id = '2_old.sql';\n",
        ),
        ("002_forget.down.sql", "SELECT 1;\n"),
    ]);
    assert_eq!(
        f["message"],
        "after the down, data that existed before the up is not back: public.gorp_migrations: 2 rows before, 1 after",
        "{f}"
    );
}

/// The down changed nothing, but what the up overwrote is not back: that
/// is as lost as rows a down deletes, and the finding says so without
/// blaming the down for a change it did not make.
#[test]
fn an_update_the_down_does_not_undo_is_lossy() {
    let f = lossy_002(&[
        (
            "001_t.up.sql",
            "CREATE TABLE t (id int PRIMARY KEY, v text);\nINSERT INTO t VALUES (1, 'a');\n",
        ),
        ("001_t.down.sql", "DROP TABLE t;\n"),
        ("002_upd.up.sql", "UPDATE t SET v = 'z';\n"),
        ("002_upd.down.sql", "SELECT 1;\n"),
    ]);
    assert_eq!(
        f["message"],
        "after the down, data that existed before the up is not back: public.t: 1 rows, but their contents changed (in column(s) v)",
        "{f}"
    );
}

#[test]
fn a_migration_that_moves_a_column_is_an_order_only_difference() {
    let run = rehearse(&fixture("column_order"), "");
    // column_order is a warning by default: the step passes.
    assert_eq!(run.code, 0, "{}", run.stderr);
    let o = outcome(&run, "002");
    assert_eq!(o["verdict"], "column_order");
    assert_eq!(
        changes(&o["findings"][0]),
        [("column_order".to_string(), "table public.tags".to_string())]
    );
    // Made an error, it fails the step.
    let run = rehearse(
        &fixture("column_order"),
        "          errors: [column_order]\n",
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
}

#[test]
fn a_down_that_lays_a_function_body_out_otherwise_is_told_apart_from_one_that_changes_it() {
    let f = |name: &str, body: &str| {
        format!(
            "CREATE OR REPLACE FUNCTION {name}() RETURNS text LANGUAGE plpgsql AS $$\n{body}$$;\n"
        )
    };
    let (_dir, run) = rehearse_files(
        &[
            (
                "001_fns.up.sql",
                &[
                    f(
                        "laid_out",
                        "BEGIN\n    -- the greeting\n    RETURN 'a' || 'b';\nEND;\n",
                    ),
                    f("spaced", "BEGIN\n    RETURN 'a b';\nEND;\n"),
                ]
                .concat(),
            ),
            (
                "001_fns.down.sql",
                "DROP FUNCTION laid_out(); DROP FUNCTION spaced();\n",
            ),
            // Its down puts the body back indented otherwise, on other
            // lines, without the comment: the function does the same.
            (
                "002_layout.up.sql",
                &f("laid_out", "BEGIN RETURN 'c'; END;"),
            ),
            (
                "002_layout.down.sql",
                &f(
                    "laid_out",
                    "  BEGIN\n\tRETURN 'a'||'b' ;  /* none */\n  END;",
                ),
            ),
            // Its down puts a space back inside a string: what it returns
            // changed.
            ("003_string.up.sql", &f("spaced", "BEGIN RETURN 'c'; END;")),
            (
                "003_string.down.sql",
                &f("spaced", "BEGIN\n    RETURN 'a  b';\nEND;\n"),
            ),
        ],
        "",
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    let o = outcome(&run, "002");
    assert_eq!(o["verdict"], "body_layout", "{o}");
    let finding = &o["findings"][0];
    assert_eq!(
        changes(finding),
        [(
            "body_layout".to_string(),
            "function public.laid_out()".to_string()
        )]
    );
    assert!(
        finding["changes"][0]["diff"][0]
            .as_str()
            .unwrap()
            .contains("differs only in whitespace or comments, from line 5 (`BEGIN`)"),
        "{finding}"
    );
    let o = outcome(&run, "003");
    assert_eq!(o["verdict"], "parity_mismatch", "{o}");
    assert_eq!(
        changes(&o["findings"][0]),
        [(
            "changed".to_string(),
            "function public.spaced()".to_string()
        )]
    );
    // Not an error by default; named in `errors`, it fails the step.
    let (_dir, run) = rehearse_files(
        &[
            ("001_f.up.sql", &f("g", "BEGIN\n    RETURN 'x';\nEND;\n")),
            ("001_f.down.sql", "DROP FUNCTION g();\n"),
            ("002_g.up.sql", &f("g", "BEGIN RETURN 'y'; END;")),
            ("002_g.down.sql", &f("g", "BEGIN RETURN 'x'; END;")),
        ],
        "          errors: [body_layout]\n",
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(outcome(&run, "002")["verdict"], "body_layout");
}

#[test]
fn a_failing_down_is_irreversible_with_the_servers_error_and_the_rehearsal_goes_on() {
    let run = rehearse(&fixture("down_fails"), "");
    assert_eq!(run.code, 3, "{}", run.stderr);
    let o = outcome(&run, "002");
    assert_eq!(o["verdict"], "irreversible");
    let msg = o["findings"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("table \"audit_log\" does not exist") && msg.contains("002_audit.down.sql:1"),
        "{msg}"
    );
    // The next migration was still rehearsed, from the state after 002's up.
    assert_eq!(outcome(&run, "003")["verdict"], "ok");
    let legs: Vec<&str> = outcome(&run, "003")["legs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["leg"].as_str().unwrap())
        .collect();
    assert_eq!(legs, ["up", "down", "reup"]);
    let csv = std::fs::read_to_string(run.dir.join("migration-timings.csv")).unwrap();
    assert!(
        csv.starts_with("migration,direction,duration_seconds\n001_base,up,"),
        "{csv}"
    );
    assert!(csv.contains("\n002_audit,down,"), "{csv}");
    assert_eq!(csv.lines().count(), 1 + 3 + 2 + 3, "{csv}");
}

#[test]
fn missing_and_comment_only_downs_are_irreversible() {
    let run = rehearse(&fixture("missing_down"), "");
    assert_eq!(run.code, 3, "{}", run.stderr);
    let no_down = outcome(&run, "002");
    assert_eq!(no_down["verdict"], "irreversible");
    assert_eq!(
        no_down["findings"][0]["message"],
        "no down: there is no 002_*.down.sql"
    );
    let empty = outcome(&run, "003");
    assert_eq!(empty["verdict"], "irreversible");
    assert_eq!(
        empty["findings"][0]["message"],
        "no down: 003_empty_down.down.sql holds only comments"
    );
    // Irreversible made a warning, the same rehearsal passes.
    let run = rehearse(
        &fixture("missing_down"),
        "          errors: [lossy, parity_mismatch]\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn concurrent_index_migrations_run_outside_a_transaction_and_pass() {
    let run = rehearse(&fixture("concurrently"), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let o = outcome(&run, "002");
    assert_eq!(o["verdict"], "ok");
    for leg in o["legs"].as_array().unwrap() {
        assert_eq!(leg["transaction"], false, "{leg}");
        assert_eq!(leg["ok"], true, "{leg}");
    }
    assert_eq!(outcome(&run, "001")["legs"][0]["transaction"], true);
}

/// A concurrent unique index whose build fails on duplicates leaves an
/// INVALID index. runbook drops it, so the failure changed nothing and
/// says how; before, the report said "nothing was changed" over the
/// INVALID index the failure left.
#[test]
fn a_failed_concurrent_index_migration_leaves_no_invalid_index_and_says_so() {
    let db = Db::fresh();
    db.sql("CREATE TABLE t (id int, v int); INSERT INTO t VALUES (1, 1), (2, 1);");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("001_u.up.sql"),
        "CREATE UNIQUE INDEX CONCURRENTLY t_v ON t (v);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("001_u.down.sql"),
        "DROP INDEX CONCURRENTLY IF EXISTS t_v;\n",
    )
    .unwrap();
    let case = Case::new(&one_step(
        "migrate",
        "apply",
        &format!(
            "        migrate: {{ dir: {} }}\n        rollback:\n          id: undo\n          migrate: {{ dir: {}, direction: down, to: before_run }}\n",
            dir.path().display(),
            dir.path().display()
        ),
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let step = run.step("apply");
    assert_eq!(
        step["details"]["failed"]["dropped_invalid_indexes"],
        serde_json::json!(["t_v"]),
        "{step}"
    );
    assert!(
        step["error"]["hint"]
            .as_str()
            .unwrap()
            .starts_with("runbook dropped the INVALID index t_v"),
        "{step}"
    );
    assert_eq!(
        step["note"],
        "not run: the step removed what it had made when it failed, so it changed nothing"
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM pg_index WHERE indrelid = 't'::regclass"),
        "0",
        "no INVALID index is left"
    );
    assert_eq!(db.sql("SELECT count(*) FROM runbook_migrations"), "0");
}

#[test]
fn dollar_quoted_bodies_and_semicolons_in_strings_stay_whole() {
    let db = Db::fresh();
    let case = Case::new(&one_step(
        "migrate",
        "apply",
        &format!(
            "        migrate:\n          dir: {}\n",
            fixture("dollar_quotes")
        ),
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT normalize_email('  Ann@X.org ')"),
        "ann@x.org"
    );
    assert_eq!(db.sql("SELECT tagged('a')"), "tag;a");
    assert_eq!(
        db.sql("SELECT label || '|' || color FROM tags WHERE id = 10"),
        "semi;colon|it's; red"
    );
    let applied = &run.step("apply")["details"]["applied"];
    assert_eq!(applied[0]["version"], "001");
    assert_eq!(applied[1]["name"], "function");
    assert_eq!(applied[1]["statements"], 3);
    assert_eq!(
        db.sql("SELECT string_agg(version || ':' || dirty || ':' || length(checksum), ',' ORDER BY version) FROM runbook_migrations"),
        "001:false:64,002:false:64"
    );
    // And the rehearsal of the same set is clean.
    let run = rehearse(&fixture("dollar_quotes"), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(outcome(&run, "002")["verdict"], "ok");
}

fn copy_fixture(name: &str) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(fixture(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.path().join(e.file_name())).unwrap();
    }
    to
}

fn migrations_cmd(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .arg("migrations")
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[test]
fn a_changed_applied_migration_is_refused_with_both_hashes() {
    let db = Db::fresh();
    let dir = copy_fixture("down_fails");
    let dir_s = dir.path().display().to_string();
    let case = Case::new(&one_step(
        "migrate",
        "apply",
        &format!("        migrate:\n          dir: {dir_s}\n"),
    ));
    assert_eq!(case.exec(&db.url, &[]).code, 0);
    let was = db.sql("SELECT checksum FROM runbook_migrations WHERE version = '002'");
    std::fs::write(
        dir.path().join("002_audit.up.sql"),
        "CREATE TABLE audit (id bigint);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("004_more.up.sql"),
        "CREATE TABLE more (id int);\n",
    )
    .unwrap();
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let err = run.step("apply")["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        err.contains("002_audit.up.sql (version 002): applied with sha256 ") && err.contains(&was),
        "{err}"
    );
    assert!(
        err.contains(&runbook::hash::sha256_hex(
            b"CREATE TABLE audit (id bigint);\n"
        )),
        "{err}"
    );
    assert_eq!(
        db.sql("SELECT to_regclass('more') IS NULL"),
        "t",
        "nothing ran"
    );

    let status = migrations_cmd(&["status", &dir_s, "--database-url", &db.url]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("002") && text.contains("changed"), "{text}");
    assert!(text.contains("004") && text.contains("pending"), "{text}");
    assert_eq!(status.status.code(), Some(3), "{text}");

    // The override applies and records what it accepted.
    let case = Case::new(&one_step(
        "migrate",
        "apply",
        &format!(
            "        migrate:\n          dir: {dir_s}\n          allow_checksum_change: true\n"
        ),
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let accepted = &run.step("apply")["details"]["checksum_changes_allowed"];
    assert!(
        accepted[0].as_str().unwrap().contains("002_audit.up.sql"),
        "{accepted}"
    );
    assert_eq!(db.sql("SELECT to_regclass('more') IS NOT NULL"), "t");
}

#[test]
fn a_migration_killed_mid_way_is_left_dirty_and_blocks_until_repaired() {
    let db = Db::fresh();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("001_slow.up.sql"),
        "-- runbook:no-transaction\nCREATE TABLE first (id int);\nSELECT pg_sleep(30);\nCREATE TABLE second (id int);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("001_slow.down.sql"),
        "DROP TABLE second;\nDROP TABLE first;\n",
    )
    .unwrap();
    let dir_s = dir.path().display().to_string();
    let case = Case::new(&one_step(
        "migrate",
        "apply",
        &format!("        migrate:\n          dir: {dir_s}\n"),
    ));
    let mut child = case
        .command(&db.url, &[])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.sql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%'")
        != "1"
    {
        assert!(
            Instant::now() < deadline,
            "the migration never reached its sleep"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The orphaned server session still holds the run's locks; end it as an
    // operator would.
    db.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'runbook/%' AND datname = current_database()");
    support::wait_until(
        &db,
        "SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name LIKE 'runbook/%' AND datname = current_database()",
    );
    assert_eq!(
        db.sql("SELECT dirty || ':' || statements_done || '/' || statements_total || ':' || in_transaction FROM runbook_migrations"),
        "true:1/3:false"
    );

    let status = migrations_cmd(&["status", &dir_s, "--database-url", &db.url]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("dirty") && text.contains("1 of 3 statements completed"),
        "{text}"
    );
    assert_eq!(status.status.code(), Some(3));

    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let e = &run.step("apply")["error"];
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("migration 001 (slow) is dirty"),
        "{e}"
    );
    assert!(
        e["hint"]
            .as_str()
            .unwrap()
            .contains("runbook migrations repair"),
        "{e}"
    );

    // Repair needs a yes; the person finished the script by hand.
    let refused = migrations_cmd(&[
        "repair",
        &dir_s,
        "--version",
        "001",
        "--database-url",
        &db.url,
    ]);
    assert_eq!(
        refused.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    db.sql("CREATE TABLE second (id int)");
    let repaired = migrations_cmd(&[
        "repair",
        &dir_s,
        "--version",
        "001",
        "--database-url",
        &db.url,
        "--yes",
    ]);
    assert_eq!(
        repaired.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&repaired.stderr)
    );
    assert_eq!(db.sql("SELECT dirty FROM runbook_migrations"), "f");
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.step("apply")["details"]["applied"],
        serde_json::json!([])
    );
}

#[test]
fn down_rolls_back_newest_first_and_refuses_what_cannot_be_undone() {
    let db = Db::fresh();
    let up = Case::new(&one_step(
        "migrate",
        "apply",
        &format!(
            "        migrate:\n          dir: {}\n",
            fixture("missing_down")
        ),
    ));
    assert_eq!(up.exec(&db.url, &[]).code, 0);
    let down = Case::new(&one_step(
        "migrate",
        "undo",
        &format!(
            "        migrate:\n          dir: {}\n          direction: down\n          steps: 1\n",
            fixture("missing_down")
        ),
    ));
    let run = down.exec(&db.url, &[]);
    assert_ne!(run.code, 0);
    let msg = run.step("undo")["error"]["message"].as_str().unwrap();
    assert!(msg.contains("migration 003 (empty_down) cannot be rolled back: 003_empty_down.down.sql holds only comments"), "{msg}");
    assert_eq!(db.sql("SELECT count(*) FROM runbook_migrations"), "3");

    let db = Db::fresh();
    let dir = fixture("down_forgets_index");
    let up = Case::new(&one_step(
        "migrate",
        "apply",
        &format!("        migrate:\n          dir: {dir}\n          to: 1\n"),
    ));
    let run = up.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT string_agg(version, ',') FROM runbook_migrations"),
        "001"
    );
    let up = Case::new(&one_step(
        "migrate",
        "apply",
        &format!("        migrate:\n          dir: {dir}\n"),
    ));
    assert_eq!(up.exec(&db.url, &[]).code, 0);
    let down = Case::new(&one_step(
        "migrate",
        "undo",
        &format!(
            "        migrate:\n          dir: {dir}\n          direction: down\n          to: 0\n"
        ),
    ));
    let run = down.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let order: Vec<&str> = run.step("undo")["details"]["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["version"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["002", "001"]);
    assert_eq!(db.sql("SELECT count(*) FROM runbook_migrations"), "0");
    assert_eq!(db.sql("SELECT to_regclass('accounts') IS NULL"), "t");
}

#[test]
fn snapshot_hashes_are_stable_ignore_data_and_see_schema_changes() {
    let db = Db::fresh();
    db.sql("CREATE TABLE t (id int PRIMARY KEY, v text DEFAULT 'x'); CREATE INDEX t_v ON t (v);");
    let snap = |db: &Db| -> Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
            .args(["schema", "snapshot", "--database-url", &db.url])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let a = snap(&db);
    let b = snap(&db);
    assert_eq!(a["hash"], b["hash"], "stable across runs");
    db.sql("INSERT INTO t VALUES (1, 'a'), (2, 'b'); ANALYZE t;");
    let c = snap(&db);
    assert_eq!(a["hash"], c["hash"], "data does not change the schema");
    db.sql("DROP INDEX t_v; CREATE INDEX t_v ON t (v) WHERE v IS NOT NULL;");
    let d = snap(&db);
    assert_ne!(a["hash"], d["hash"]);

    let files = tempfile::tempdir().unwrap();
    let (fa, fd) = (files.path().join("a.json"), files.path().join("d.json"));
    std::fs::write(&fa, serde_json::to_string(&a).unwrap()).unwrap();
    std::fs::write(&fd, serde_json::to_string(&d).unwrap()).unwrap();
    let diff = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["schema", "diff"])
        .args([&fa, &fd])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&diff.stdout);
    assert_eq!(diff.status.code(), Some(3), "{text}");
    assert!(text.contains("changed index public.t_v"), "{text}");
    assert!(
        text.contains(
            "+ definition: CREATE INDEX t_v ON public.t USING btree (v) WHERE (v IS NOT NULL)"
        ),
        "{text}"
    );
    let same = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["schema", "diff"])
        .args([&fa, &fa])
        .output()
        .unwrap();
    assert_eq!(same.status.code(), Some(0));

    // A file an older runbook wrote, which read no publications: compared
    // on what it read, with a note, so the publication is no difference.
    db.sql("CREATE PUBLICATION feed FOR TABLE t");
    let mut e = snap(&db);
    assert_eq!(e["reads"], runbook::snapshot::READS);
    let mut old = e.clone();
    old.as_object_mut().unwrap().remove("reads");
    old["objects"]
        .as_object_mut()
        .unwrap()
        .remove("publication feed");
    let old_objects: std::collections::BTreeMap<String, Value> =
        serde_json::from_value(old["objects"].clone()).unwrap();
    old["hash"] = runbook::snapshot::Snapshot::from_objects(old_objects)
        .hash
        .into();
    let (fo, fe) = (files.path().join("old.json"), files.path().join("e.json"));
    std::fs::write(&fo, serde_json::to_string(&old).unwrap()).unwrap();
    e["taken_at"] = "later".into();
    std::fs::write(&fe, serde_json::to_string(&e).unwrap()).unwrap();
    let across = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["schema", "diff"])
        .args([&fo, &fe])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&across.stdout);
    assert_eq!(across.status.code(), Some(0), "{text}");
    assert!(
        text.contains("was written by an older runbook; compared without ")
            && text.contains(" publication, "),
        "{text}"
    );
}

#[test]
fn snapshot_steps_compare_with_an_earlier_snapshot() {
    let db = Db::fresh();
    db.sql("CREATE TABLE t (id int PRIMARY KEY)");
    let yaml = format!(
        "{HEAD}phases:\n  - id: verify\n    kind: verify\n    steps:\n      - id: before\n        snapshot: {{ save: before.json }}\n      - id: change\n        sql: ALTER TABLE t ADD COLUMN note text\n      - id: after\n        snapshot:\n          expect: {{ same_as: steps.before }}\n"
    );
    let case = Case::new(&yaml);
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let after = run.step("after");
    assert!(
        after["error"]["message"].as_str().unwrap().contains(
            "the schema differs from steps.before: 1 object(s) differ: changed table public.t"
        ),
        "{after}"
    );
    assert_eq!(
        after["details"]["changes"][0]["diff"][0],
        r#"+ column note: {"type":"text","not_null":false}"#
    );
    let saved: Value = serde_json::from_str(
        &std::fs::read_to_string(case.dir.path().join("before.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(saved["hash"], run.step("before")["details"]["hash"]);
    assert_eq!(saved["format"], "runbook-schema-snapshot/v1");
}

#[test]
fn whole_set_mode_names_the_first_down_that_fails() {
    let run = rehearse(&fixture("down_fails"), "          mode: whole_set\n");
    assert_eq!(run.code, 3, "{}", run.stderr);
    let set = &run.step("rehearse")["details"]["set_findings"];
    assert!(
        set[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("the first down to fail is 002 audit"),
        "{set}"
    );
    assert_eq!(outcome(&run, "003")["verdict"], "ok");
    assert_eq!(outcome(&run, "002")["verdict"], "irreversible");
}

/// Every pair ran, so each migration is `ok`; the set's downs leave a
/// sequence behind. The counts must not read as a pass: the set's verdict
/// stands beside them in the report, the output and the error.
#[test]
fn a_whole_set_that_fails_parity_says_so_beside_its_ok_migrations() {
    let (_d, run) = rehearse_files(
        &[
            (
                "001_a.up.sql",
                "CREATE TABLE a (id int);\nCREATE SEQUENCE IF NOT EXISTS a_seq;",
            ),
            ("001_a.down.sql", "DROP TABLE a;"),
            ("002_b.up.sql", "CREATE TABLE b (id int);"),
            ("002_b.down.sql", "DROP TABLE b;"),
        ],
        "          mode: whole_set\n",
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    let step = run.step("rehearse");
    assert_eq!(
        step["details"]["verdicts"],
        serde_json::json!({"ok": 2}),
        "{step}"
    );
    assert_eq!(step["details"]["set_verdict"], "parity_mismatch", "{step}");
    assert_eq!(
        step["error"]["message"],
        "the whole set failed the rehearsal (parity_mismatch)"
    );
    let md = std::fs::read_to_string(run.dir.join("report.md")).unwrap();
    assert!(
        md.contains("(whole set, pairs format): 2 ok; the whole set: parity_mismatch"),
        "{md}"
    );
    assert!(
        md.contains("| * | the whole set | ❌ parity_mismatch |"),
        "{md}"
    );
}

/// Two quick migrations, then one whose up sleeps for a minute: a
/// rehearsal to cut short while it is in the third.
const SLOW_THIRD: [(&str, &str); 6] = [
    ("001_a.up.sql", "CREATE TABLE a (id int);"),
    ("001_a.down.sql", "DROP TABLE a;"),
    ("002_b.up.sql", "CREATE TABLE b (id int);"),
    ("002_b.down.sql", "DROP TABLE b;"),
    (
        "003_c.up.sql",
        "SELECT pg_sleep(60);\nCREATE TABLE c (id int);",
    ),
    ("003_c.down.sql", "DROP TABLE c;"),
];

/// A rehearsal that ends early (here its step's timeout, as an interrupt
/// would) keeps the verdicts it reached: the report of a rehearsal cut
/// short had no table at all. The migration it was in, and every one after
/// it, is `not_rehearsed` with the reason, never `ok`; a whole set's own
/// verdict says it was not judged.
#[test]
fn a_rehearsal_that_ends_early_keeps_its_verdicts_and_judges_nothing_it_did_not_finish() {
    let files = [
        &SLOW_THIRD[..],
        &[
            ("004_d.up.sql", "CREATE TABLE d (id int);"),
            ("004_d.down.sql", "DROP TABLE d;"),
        ],
    ]
    .concat();
    for mode in ["per_migration", "whole_set"] {
        let (_d, run) = rehearse_files(
            &files,
            &format!("          mode: {mode}\n        timeout: 3s\n"),
        );
        let step = run.step("rehearse");
        assert_eq!(step["status"], "timed_out", "{mode}: {step}");
        let d = &step["details"];
        let ok = if mode == "per_migration" { 2 } else { 0 };
        let mut want = serde_json::json!({"not_rehearsed": 4 - ok});
        if ok > 0 {
            want["ok"] = ok.into();
        }
        assert_eq!(d["verdicts"], want, "{mode}: {d}");
        let during = outcome(&run, "003")["findings"][0]["message"]
            .as_str()
            .unwrap();
        assert!(
            during.starts_with("not rehearsed: the rehearsal ended during it: "),
            "{mode}: {during}"
        );
        let before = outcome(&run, "004")["findings"][0]["message"]
            .as_str()
            .unwrap();
        assert!(
            before.starts_with("not rehearsed: the rehearsal ended before it: "),
            "{mode}: {before}"
        );
        if mode == "whole_set" {
            assert_eq!(d["set_verdict"], "not_rehearsed", "{d}");
        }
        assert_eq!(d["coverage"]["rehearsed"], ok, "{mode}: {d}");
        let md = std::fs::read_to_string(run.dir.join("report.md")).unwrap();
        assert!(
            md.contains("| 003 | c | ⏭️ not_rehearsed |"),
            "{mode}: {md}"
        );
        // No compensation ran: the rollback section says nothing was
        // undone, not that an undo "completed cleanly".
        assert!(
            md.contains("(step `rehearse` timed_out): nothing to undo (no compensation ran)"),
            "{mode}: {md}"
        );
    }
}

/// A rehearsal killed half-way (SIGKILL: nothing of runbook runs after it)
/// leaves a report with the verdicts it reached, from their events: the
/// report written a second before the kill had no table at all.
#[test]
fn a_killed_rehearsal_leaves_a_report_with_the_verdicts_it_reached() {
    let db = Db::fresh();
    let (_dir, case) = rehearsal_of(&SLOW_THIRD);
    let mut child = case
        .command(&db.url, &[])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep(60)%'")
        != "1"
    {
        assert!(Instant::now() < deadline, "the rehearsal never reached 003");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The report is rewritten at most once a second.
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(case.reports().join("report.json")).unwrap())
            .unwrap();
    let step = &report["phases"][0]["steps"][0];
    assert_eq!(step["status"], "running", "{step}");
    let rows: Vec<(&str, &str)> = step["details"]["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["version"].as_str().unwrap(),
                m["verdict"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [("001", "ok"), ("002", "ok")], "{step}");
    let md = std::fs::read_to_string(case.reports().join("report.md")).unwrap();
    assert!(
        md.contains("**rehearse** rehearsal, not finished: 2 ok"),
        "{md}"
    );
    assert!(md.contains("before the rehearsal did"), "{md}");
    db.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep(60)%'");
}

/// A whole set whose seed fails after a later up: the ups before it went
/// up, but their downs never ran. They read `ok`.
#[test]
fn a_whole_set_whose_seed_fails_rehearses_none_of_its_downs() {
    let (_d, run) = rehearse_files(
        &[
            ("001_a.up.sql", "CREATE TABLE a (id int);"),
            ("001_a.down.sql", "DROP TABLE a;"),
            ("002_b.up.sql", "CREATE TABLE b (id int);"),
            ("002_b.down.sql", "DROP TABLE b;"),
            (
                "seed.sql.txt",
                "DO $$ BEGIN IF to_regclass('b') IS NOT NULL THEN RAISE EXCEPTION 'no seed for b'; END IF; END $$;",
            ),
        ],
        "          mode: whole_set\n          seed: DIR/seed.sql.txt\n",
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    let d = &run.step("rehearse")["details"];
    assert_eq!(
        d["verdicts"],
        serde_json::json!({"not_rehearsed": 1, "up_failure": 1}),
        "{d}"
    );
    assert_eq!(verdicts(outcome(&run, "001")), ["not_rehearsed"]);
}

/// A whole set whose down fails half-way outside a transaction stops
/// there: the newer migrations went down but never up again. They read
/// `ok`.
#[test]
fn a_whole_set_stopped_by_a_half_done_down_rehearses_no_re_up() {
    let (_d, run) = rehearse_files(
        &[
            (
                "001_a.up.sql",
                "CREATE TABLE a (id int);\nCREATE INDEX a_idx ON a (id);",
            ),
            (
                "001_a.down.sql",
                "DROP INDEX CONCURRENTLY a_idx;\nDROP TABLE nope;",
            ),
            ("002_b.up.sql", "CREATE TABLE b (id int);"),
            ("002_b.down.sql", "DROP TABLE b;"),
        ],
        "          mode: whole_set\n",
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(verdicts(outcome(&run, "001")), ["irreversible"]);
    assert_eq!(verdicts(outcome(&run, "002")), ["not_rehearsed"]);
    let why = outcome(&run, "002")["findings"][0]["message"]
        .as_str()
        .unwrap();
    assert!(why.contains("its re-up did not run"), "{why}");
}

/// With `missing_downs: skip`, the set's parity is not judged (the
/// skipped migrations' objects stay). That finding read `ok`; a check that
/// did not run is not a pass, even where `irreversible` is not an error.
#[test]
fn a_whole_set_whose_parity_was_not_judged_is_not_ok() {
    let (_d, run) = rehearse_files(
        &[
            ("001_a.up.sql", "CREATE TABLE a (id int);"),
            ("002_b.up.sql", "CREATE TABLE b (id int);"),
            ("002_b.down.sql", "DROP TABLE b;"),
        ],
        "          mode: whole_set\n          missing_downs: skip\n          errors: [parity_mismatch]\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let d = &run.step("rehearse")["details"];
    assert_eq!(d["set_verdict"], "irreversible", "{d}");
    assert!(
        d["set_findings"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("whole-set parity not judged"),
        "{d}"
    );
}

/// A role without CREATEDB cannot make the scratch copy: the rehearsal
/// judged nothing, so in a verify phase of a run that changed nothing it
/// is a failure that changed nothing (exit 1), not a failed verification
/// (exit 3), and the hint gives the `ALTER ROLE`.
#[test]
fn a_rehearsal_that_cannot_make_its_scratch_copy_is_not_a_failed_verification() {
    let db = Db::fresh();
    let (role, url) = db.owned_by_new_role("nocreatedb");
    let case = Case::new(&one_step(
        "verify",
        "rehearse",
        &format!(
            "        rehearse:\n          dir: {}\n          scratch: true\n",
            fixture("concurrently")
        ),
    ));
    let run = case.exec(&url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("failed; nothing was changed"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(&format!("`ALTER ROLE \"{role}\" CREATEDB`")),
        "{}",
        run.stderr
    );
    assert_eq!(run.report["run"]["status"], "failed_unchanged");
}

/// A scratch copy is named for its source (`runbook_rehearse_<oid>_...`)
/// and dropped. One that an earlier rehearsal left (killed before its
/// cleanup) is named in a warning, not dropped: no session uses it, but
/// it holds a full copy of the data.
#[test]
fn a_scratch_rehearsal_leaves_the_database_untouched() {
    let db = Db::fresh();
    let oid = db.sql("SELECT oid FROM pg_database WHERE datname = current_database()");
    let left = format!("runbook_rehearse_{oid}_deadbeef");
    db.sql(&format!("CREATE DATABASE {left}"));
    let case = Case::new(&one_step(
        "verify",
        "rehearse",
        &format!(
            "        rehearse:\n          dir: {}\n          scratch: true\n",
            fixture("concurrently")
        ),
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let d = &run.step("rehearse")["details"];
    assert!(
        d["database"]
            .as_str()
            .unwrap()
            .starts_with(&format!("runbook_rehearse_{oid}_")),
        "{d}"
    );
    let warnings = run.report["warnings"].to_string();
    assert!(
        warnings.contains(&format!(
            "left by a rehearsal that did not end (killed, or its connection lost): {left}"
        )),
        "{warnings}"
    );
    assert_eq!(
        db.sql(
            "SELECT to_regclass('runbook_migrations') IS NULL AND to_regclass('accounts') IS NULL"
        ),
        "t"
    );
    assert_eq!(
        db.sql(&format!(
            "SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE 'runbook\\_rehearse\\_{oid}\\_%'"
        )),
        left,
        "the scratch database is dropped, and the one left before is not"
    );
    db.sql(&format!("DROP DATABASE {left}"));
}

#[test]
fn the_staging_rehearsal_runbook_passes_good_migrations_and_fails_bad_ones_with_code_3() {
    let yaml = std::fs::read_to_string("runbooks/staging-rehearsal.yml").unwrap();
    let good = format!(
        "{}/examples/rehearsal/migrations",
        env!("CARGO_MANIFEST_DIR")
    );
    let db = Db::fresh();
    let case = Case::new(&yaml);
    let run = case.exec(&db.url, &["--set", &format!("migrations={good}")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let d = &run.step("rehearse")["details"];
    assert_eq!(d["verdicts"], serde_json::json!({"ok": 3}));
    assert_eq!(d["scratch"], true);
    assert_eq!(run.step("database_untouched")["status"], "succeeded");
    assert!(
        !case
            .dir
            .path()
            .join("backups/staging-rehearsal")
            .read_dir()
            .unwrap()
            .any(|_| true),
        "the copy of the database is removed"
    );
    // `to`: the deploy's, where it stops short of the newest.
    let db = Db::fresh();
    let run = case.exec(
        &db.url,
        &["--set", &format!("migrations={good}"), "--set", "to=002"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.step("rehearse")["details"]["verdicts"],
        serde_json::json!({"ok": 2})
    );

    let db = Db::fresh();
    let run = case.exec(
        &db.url,
        &[
            "--set",
            &format!("migrations={}", fixture("down_drops_data")),
        ],
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(outcome(&run, "002")["verdict"], "lossy");
    // The database the run pointed at never saw a migration.
    assert_eq!(
        db.sql(
            "SELECT to_regclass('accounts') IS NULL AND to_regclass('runbook_migrations') IS NULL"
        ),
        "t"
    );
}

#[test]
fn the_knex_example_rehearses_each_migration_through_the_tool() {
    // tests/fixtures/fake-tool stands in for `npx knex` (it answers
    // `migrate:up NAME` and `migrate:down NAME` the same way, with Knex's
    // history table); its second migration's down forgets an index and its
    // third's loses a column's data.
    let project = support::fake_tool_project();
    let yaml = std::fs::read_to_string("examples/knex-rehearsal/runbook.yml").unwrap();
    let db = Db::fresh();
    let case = Case::new(&yaml);
    let junit = case.dir.path().join("junit.xml");
    let run = case.exec(
        &db.url,
        &[
            "--set",
            &format!("project={}", project.path().display()),
            "--set",
            "knex=./faketool",
            "--junit",
            junit.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    let verdicts: Vec<(String, String)> = run.step("knex")["details"]["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["version"].as_str().unwrap().into(),
                m["verdict"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("20240101000000".to_string(), "ok".to_string()),
            ("20240102000000".into(), "parity_mismatch".into()),
            ("20240103000000".into(), "lossy".into()),
        ]
    );
    let junit = std::fs::read_to_string(junit).unwrap();
    assert!(
        junit.contains("20240102000000") && junit.contains("<failure"),
        "{junit}"
    );
    let csv = std::fs::read_to_string(case.reports().join("migration-timings.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 3 * 3, "{csv}");
}

#[test]
fn the_liquibase_example_rehearses_its_changelog_in_the_masters_order() {
    let yaml = std::fs::read_to_string("examples/liquibase-rehearsal/runbook.yml").unwrap();
    let project = format!(
        "{}/examples/liquibase-rehearsal",
        env!("CARGO_MANIFEST_DIR")
    );
    let db = Db::fresh();
    let case = Case::new(&yaml);
    let run = case.exec(&db.url, &["--set", &format!("project={project}")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let got: Vec<(String, String)> = run.step("rehearse")["details"]["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().into(),
                m["verdict"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want = [
        "accounts",
        "account-email",
        "account-email-index",
        "plans",
        "plans-seed",
        "account-plan",
    ];
    assert_eq!(
        got,
        want.map(|n| (n.to_string(), "ok".to_string())),
        "{}",
        run.stderr
    );
}

#[test]
fn the_atlas_example_rehearses_then_applies_its_directory_into_atlas_s_table() {
    let yaml = std::fs::read_to_string("examples/atlas-migrations/runbook.yml").unwrap();
    let migrations = format!(
        "{}/examples/atlas-migrations/migrations",
        env!("CARGO_MANIFEST_DIR")
    );
    let db = Db::fresh();
    let case = Case::new(&yaml);
    let run = case.exec(&db.url, &["--set", &format!("migrations={migrations}")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let verdicts: Vec<String> = run.step("rehearse")["details"]["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["verdict"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        verdicts,
        ["forward_only", "forward_only", "ok"],
        "{}",
        run.stderr
    );
    assert_eq!(
        db.sql("SELECT string_agg(version || ' ' || applied || '/' || total, ', ' ORDER BY version) FROM atlas_schema_revisions.atlas_schema_revisions"),
        "20250101120000 2/2, 20250102120000 1/1, 20250103120000 1/1"
    );
    assert_eq!(db.sql("SELECT to_regclass('legacy_sessions') IS NULL"), "t");
}

fn rehearse_files(files: &[(&str, &str)], extra: &str) -> (tempfile::TempDir, Rehearsal) {
    rehearse_files_on(&Db::fresh(), files, extra)
}

fn rehearse_files_on(
    db: &Db,
    files: &[(&str, &str)],
    extra: &str,
) -> (tempfile::TempDir, Rehearsal) {
    let dir = tempfile::tempdir().unwrap();
    for (f, text) in files {
        let path = dir.path().join(f);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let extra = extra.replace("DIR", &dir.path().display().to_string());
    let run = rehearse_on(db, &dir.path().display().to_string(), &extra);
    (dir, run)
}

/// A runbook whose one step rehearses `files`, written to a directory of
/// their own, for a test that runs it its own way.
fn rehearsal_of(files: &[(&str, &str)]) -> (tempfile::TempDir, Case) {
    let dir = tempfile::tempdir().unwrap();
    for (f, text) in files {
        std::fs::write(dir.path().join(f), text).unwrap();
    }
    let case = Case::new(&one_step(
        "verify",
        "rehearse",
        &format!(
            "        rehearse:\n          dir: {}\n",
            dir.path().display()
        ),
    ));
    (dir, case)
}

#[test]
fn single_file_formats_run_their_sections_with_their_transaction_markers() {
    let goose = "-- +goose Up\nCREATE TABLE t (id int PRIMARY KEY, v text);\n-- +goose Down\nDROP TABLE t;\n";
    let goose_cic = "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY t_v ON t (v);\n-- +goose Down\nDROP INDEX CONCURRENTLY t_v;\n";
    let (_d, run) = rehearse_files(&[("00001_t.sql", goose), ("00002_idx.sql", goose_cic)], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.step("rehearse")["details"]["format"], "goose");
    assert_eq!(outcome(&run, "00002")["legs"][0]["transaction"], false);
    assert_eq!(outcome(&run, "00001")["legs"][0]["transaction"], true);

    let dbmate = "-- migrate:up\nCREATE TABLE t (id int PRIMARY KEY, v text);\n\n-- migrate:down\nDROP TABLE t;\n";
    let dbmate_cic = "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY t_v ON t (v);\n-- migrate:down\nDROP INDEX t_v;\n";
    let (_d, run) = rehearse_files(
        &[
            ("20240101000000_t.sql", dbmate),
            ("20240102000000_idx.sql", dbmate_cic),
        ],
        "",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.step("rehearse")["details"]["format"], "dbmate");
    let legs = &outcome(&run, "20240102000000")["legs"];
    assert_eq!(
        (
            legs[0]["transaction"].clone(),
            legs[1]["transaction"].clone()
        ),
        (false.into(), true.into())
    );

    let sql_migrate = "-- +migrate Up\nCREATE TABLE t (id int);\n-- +migrate Down\nDROP TABLE t;\n";
    let (_d, run) = rehearse_files(&[("1_t.sql", sql_migrate)], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.step("rehearse")["details"]["format"], "sql-migrate");

    // A forward-only folder (Prisma): the ups are rehearsed, each
    // `forward_only`, and the set says once that reversibility cannot be
    // tested. With the default errors, that is not a failure.
    for mode in ["per_migration", "whole_set"] {
        let (_d, run) = rehearse_files(
            &[
                ("20240101_init/migration.sql", "CREATE TABLE t (id int);\n"),
                (
                    "20240102_more/migration.sql",
                    "ALTER TABLE t ADD COLUMN v text;\n",
                ),
            ],
            &format!("          mode: {mode}\n"),
        );
        assert_eq!(run.code, 0, "{mode}: {}", run.stderr);
        let d = &run.step("rehearse")["details"];
        assert_eq!(d["format"], "prisma");
        for v in ["20240101", "20240102"] {
            let o = outcome(&run, v);
            assert_eq!(o["verdict"], "forward_only", "{mode}: {o}");
            assert_eq!(
                o["findings"],
                serde_json::json!([]),
                "{mode}: said once, not per migration"
            );
            assert!(
                o["legs"][0]["duration_ms"].is_u64(),
                "{mode}: the up was timed: {o}"
            );
        }
        let set = d["set_findings"].as_array().unwrap();
        assert_eq!(set.len(), 1, "{mode}: {set:?}");
        assert_eq!(set[0]["verdict"], "forward_only");
        assert!(
            set[0]["message"]
                .as_str()
                .unwrap()
                .contains("reversibility cannot be tested"),
            "{set:?}"
        );
    }
    // A team that wants a down for everything says so in `errors`.
    let (_d, run) = rehearse_files(
        &[("20240101_init/migration.sql", "CREATE TABLE t (id int);\n")],
        "          errors: [forward_only]\n",
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
}

/// An up that writes `now()` or a sequence's next value into a table that
/// existed before, with a down that deletes those rows: the up again
/// writes other values. Nothing was lost, so it is `nondeterministic` (not
/// an error by default), not `lossy` as before (svix's seed of event types
/// with `CURRENT_TIMESTAMP` read as lossy). A down that leaves its up's
/// rows, so the up again adds them twice, is a `reup_failure`.
#[test]
fn a_down_that_keeps_the_rows_its_up_added_is_a_parity_mismatch() {
    // The seed's up adds nothing the second time (ON CONFLICT DO NOTHING),
    // so only the state after its down shows that its rollback is empty.
    let (_dir, run) = rehearse_files(
        &[
            (
                "001_roles.up.sql",
                "CREATE TABLE roles (id int PRIMARY KEY, name text);\nINSERT INTO roles VALUES (1, 'admin');\n",
            ),
            ("001_roles.down.sql", "DROP TABLE roles;\n"),
            (
                "002_seed.up.sql",
                "INSERT INTO roles VALUES (2, 'user') ON CONFLICT DO NOTHING;\n",
            ),
            ("002_seed.down.sql", "SELECT 1;\n"),
            (
                "003_seed.up.sql",
                "INSERT INTO roles VALUES (3, 'guest') ON CONFLICT DO NOTHING;\n",
            ),
            ("003_seed.down.sql", "DELETE FROM roles WHERE id = 3;\n"),
        ],
        "",
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    let o = outcome(&run, "002");
    assert_eq!(verdicts(o), ["parity_mismatch"], "{o}");
    assert_eq!(
        o["findings"][0]["tables"],
        serde_json::json!(["public.roles: 1 rows before the up, 2 after the down"]),
        "{o}"
    );
    let o = outcome(&run, "003");
    assert_eq!(o["verdict"], "ok", "{o}");
}

#[test]
fn an_up_that_writes_other_values_each_run_is_nondeterministic_not_lossy() {
    let (_dir, run) = rehearse_files(
        &[
            (
                "001_base.up.sql",
                "CREATE TABLE events (id text PRIMARY KEY, at timestamptz);\n\
                 CREATE TABLE kinds (name text, at timestamptz);\n\
                 CREATE SEQUENCE ids;\n",
            ),
            (
                "001_base.down.sql",
                "DROP SEQUENCE ids;\nDROP TABLE kinds;\nDROP TABLE events;\n",
            ),
            (
                "002_seed.up.sql",
                "INSERT INTO events VALUES ('created', CURRENT_TIMESTAMP);\n",
            ),
            (
                "002_seed.down.sql",
                "DELETE FROM events WHERE id = 'created';\n",
            ),
            (
                "003_kinds.up.sql",
                "INSERT INTO kinds VALUES ('a', '2024-01-01');\n",
            ),
            ("003_kinds.down.sql", "SELECT 1;\n"),
            (
                "004_numbered.up.sql",
                "INSERT INTO events VALUES ('n' || nextval('ids'), NULL);\n",
            ),
            (
                "004_numbered.down.sql",
                "DELETE FROM events WHERE id LIKE 'n%';\n",
            ),
        ],
        "",
    );
    let step = run.step("rehearse");
    assert_eq!(
        step["details"]["verdicts"],
        serde_json::json!({"ok": 1, "nondeterministic": 2, "parity_mismatch": 1}),
        "{step}"
    );
    // Each names the column whose values differ.
    for (version, rows, column) in [("002", 1, "at"), ("004", 2, "id")] {
        let o = outcome(&run, version);
        assert_eq!(verdicts(o), ["nondeterministic"], "{o}");
        assert_eq!(
            o["findings"][0]["tables"],
            serde_json::json!([format!(
                "public.events: {rows} rows, but their contents changed (in column(s) {column})"
            )]),
            "{o}"
        );
        assert!(
            o["findings"][0]["message"]
                .as_str()
                .unwrap()
                .contains("nothing was lost"),
            "{o}"
        );
    }
    // The down kept the row its up added: the database is not back where
    // it was, and the up again added the row a second time.
    let o = outcome(&run, "003");
    assert_eq!(verdicts(o), ["parity_mismatch", "reup_failure"], "{o}");
    assert_eq!(
        o["findings"][0]["tables"],
        serde_json::json!(["public.kinds: 0 rows before the up, 1 after the down"]),
        "{o}"
    );
    assert_eq!(
        o["findings"][1]["tables"],
        serde_json::json!(["public.kinds: 1 rows after the first up, 2 after the up again"]),
        "{o}"
    );
    // It names what the down left, which the up again met.
    assert!(
        o["findings"][1]["message"]
            .as_str()
            .unwrap()
            .ends_with("the up may have met: public.kinds: 0 rows before the up, 1 after the down"),
        "{o}"
    );
    // Only that migration fails the step.
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        step["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("1 migration(s) failed the rehearsal: 003 kinds (parity_mismatch)"),
        "{step}"
    );
}

/// A whole set's ups again, after downs that brought everything back,
/// are judged as one migration's: `nondeterministic`, and the step passes.
/// A set whose rollback stopped at a migration with no down did not go
/// back to where it started: what that migration's up did is still there,
/// and is not data the downs lost. Before, it read as `lossy` ("the downs
/// changed data").
#[test]
fn a_whole_sets_downs_are_judged_on_data_only_when_every_down_ran() {
    let db = || {
        let db = Db::fresh();
        db.sql(
            "CREATE TABLE kinds (name text, at timestamptz);\n\
             CREATE TABLE people (id int);\n\
             INSERT INTO people VALUES (1), (2);",
        );
        db
    };
    let b = [
        ("002_b.up.sql", "CREATE TABLE b (id int);\n"),
        ("002_b.down.sql", "DROP TABLE b;\n"),
    ];
    let whole_set = "          mode: whole_set\n";
    let a = [
        ("001_a.up.sql", "INSERT INTO kinds VALUES ('a', now());\n"),
        ("001_a.down.sql", "DELETE FROM kinds WHERE name = 'a';\n"),
    ];
    let (_dir, run) = rehearse_files_on(&db(), &[&a[..], &b[..]].concat(), whole_set);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let d = &run.step("rehearse")["details"];
    assert_eq!(d["set_verdict"], "nondeterministic", "{d}");
    assert_eq!(
        d["set_findings"][0]["tables"],
        serde_json::json!(["public.kinds: 1 rows, but their contents changed (in column(s) at)"]),
        "{d}"
    );
    // 001 has no down: the rollback stops at it, with its row gone.
    let prune = ("001_prune.up.sql", "DELETE FROM people WHERE id = 2;\n");
    let (_dir, run) = rehearse_files_on(&db(), &[&[prune][..], &b[..]].concat(), whole_set);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let d = &run.step("rehearse")["details"];
    let set: Vec<&str> = d["set_findings"]
        .as_array()
        .unwrap_or_else(|| panic!("{d}"))
        .iter()
        .map(|f| f["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(set, ["irreversible"], "{d}");
}

/// A rehearsal of `001_base` (the table `people`) and a second migration
/// (`name`, its up and down), with `seed` run after each up.
fn people_then(name: &str, up: &str, down: &str, seed: &str) -> (tempfile::TempDir, Rehearsal) {
    rehearse_files(
        &[
            (
                "001_base.up.sql",
                "CREATE TABLE people (id int PRIMARY KEY, name text);\n",
            ),
            ("001_base.down.sql", "DROP TABLE people;\n"),
            (&format!("002_{name}.up.sql"), up),
            (&format!("002_{name}.down.sql"), down),
            ("seed.sql.txt", seed),
        ],
        "          seed: DIR/seed.sql.txt\n",
    )
}

/// The second migration's outcome must be lossy, naming `tables`.
fn second_is_lossy(run: &Run, tables: &[&str]) {
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(outcome(run, "001")["verdict"], "ok");
    let second = outcome(run, "002");
    assert_eq!(second["verdict"], "lossy", "{second}");
    assert_eq!(second["findings"][0]["tables"], serde_json::json!(tables));
}

#[test]
fn a_seed_runs_after_each_up_and_its_rows_count_as_data() {
    // The seed fills the new table; the down drops the table with them, which
    // is the down's own data and not a loss. A down that deletes rows from
    // a table that existed before is.
    let (_dir, run) = people_then(
        "pets",
        "CREATE TABLE pets (id int PRIMARY KEY, owner int REFERENCES people (id));\n",
        "DROP TABLE pets;\nDELETE FROM people WHERE id > 1;\n",
        "INSERT INTO people VALUES (1, 'a'), (2, 'b') ON CONFLICT DO NOTHING;\nDO $$ BEGIN IF to_regclass('pets') IS NOT NULL THEN INSERT INTO pets VALUES (1, 1) ON CONFLICT DO NOTHING; END IF; END $$;\n",
    );
    second_is_lossy(&run, &["public.people: 2 rows before, 1 after"]);
}

/// An empty plain table is taken as empty from its size on disk, without
/// reading it: the checksum that stands for it must be the one the count
/// query gives an empty table, or the same table would compare changed.
#[test]
fn the_checksum_taken_for_an_empty_table_is_the_one_its_count_gives() {
    let db = Db::fresh();
    db.sql("CREATE TABLE e (id int, v text)");
    let sum = runbook::pg::db::row_checksum_sql("ROW(x.id, x.v)::text");
    assert_eq!(
        db.sql(&format!("SELECT count(*) || '|' || {sum} FROM e x")),
        format!("0|{}", runbook::pg::db::EMPTY_CHECKSUM)
    );
}

/// A table with no columns holds rows all the same: a down that deletes
/// them is lossy. Before, such a table read as gone, and the loss passed.
#[test]
fn a_table_without_columns_is_checked_like_any_other() {
    let (_dir, run) = rehearse_files(
        &[
            ("001_bare.up.sql", "CREATE TABLE bare ();\n"),
            ("001_bare.down.sql", "DROP TABLE bare;\n"),
            ("002_empty_it.up.sql", "CREATE TABLE other (id int);\n"),
            (
                "002_empty_it.down.sql",
                "DROP TABLE other;\nDELETE FROM bare;\n",
            ),
            (
                "seed.sql.txt",
                "INSERT INTO bare DEFAULT VALUES;\nINSERT INTO bare DEFAULT VALUES;\n",
            ),
        ],
        "          seed: DIR/seed.sql.txt\n",
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    let second = outcome(&run, "002");
    assert_eq!(second["verdict"], "lossy", "{second}");
    assert_eq!(
        second["findings"][0]["tables"],
        serde_json::json!(["public.bare: 2 rows before, 0 after"])
    );
}

/// A table is taken as empty, without a count, only when every table of
/// its tree (partitions and inheritance children too, which its count
/// reads) is a plain table with no page on disk, or partitioned. The rows
/// of `events` live two levels down, in a partition of a partition, and
/// those of `base` in its inheritance child: a down that deletes them is
/// lossy at each level, as their counts say. A partitioned table left
/// empty (`archive`, whose partition has no rows) loses nothing. Before,
/// `base`, with no page of its own, was taken as empty.
#[test]
fn rows_in_a_partition_of_a_partition_or_a_child_are_counted() {
    let (_dir, run) = made_then_note(
        "CREATE TABLE events (id int, at date, kind text) PARTITION BY RANGE (at);\n\
         CREATE TABLE events_2024 PARTITION OF events\n\
           FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') PARTITION BY LIST (kind);\n\
         CREATE TABLE events_2024_a PARTITION OF events_2024 FOR VALUES IN ('a');\n\
         CREATE TABLE events_2024_b PARTITION OF events_2024 FOR VALUES IN ('b');\n\
         CREATE TABLE archive (id int, at date) PARTITION BY RANGE (at);\n\
         CREATE TABLE archive_2023 PARTITION OF archive\n\
           FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');\n\
         CREATE TABLE base (id int);\n\
         CREATE TABLE derived () INHERITS (base);\n",
        "DROP TABLE events, archive;\nDROP TABLE base CASCADE;\n",
        "DELETE FROM events WHERE kind = 'a';\nDELETE FROM derived;\n",
        "INSERT INTO events SELECT 1, '2024-03-01', 'a' WHERE NOT EXISTS (SELECT FROM events);\n\
         INSERT INTO derived SELECT 1 WHERE NOT EXISTS (SELECT FROM derived);\n",
    );
    second_is_lossy(
        &run,
        &[
            "public.base: 1 rows before, 0 after",
            "public.derived: 1 rows before, 0 after",
            "public.events: 1 rows before, 0 after",
            "public.events_2024: 1 rows before, 0 after",
            "public.events_2024_a: 1 rows before, 0 after",
        ],
    );
}

/// A rehearsal of `001_made` (`up`, `down`) and `002_note`, whose down
/// also runs `loses`, with `seed` run after each up.
fn made_then_note(up: &str, down: &str, loses: &str, seed: &str) -> (tempfile::TempDir, Rehearsal) {
    let note_down = format!("DROP TABLE note;\n{loses}");
    rehearse_files(
        &[
            ("001_made.up.sql", up),
            ("001_made.down.sql", down),
            ("002_note.up.sql", "CREATE TABLE note (id int);\n"),
            ("002_note.down.sql", &note_down),
            ("seed.sql.txt", seed),
        ],
        "          seed: DIR/seed.sql.txt\n",
    )
}

/// A table with a foreign table below it, as a partition or an
/// inheritance child, is not read either: a count of it reads the foreign
/// table, whose server a rehearsal must not reach (here its wrapper has no
/// handler, and the count fails; under postgres_fdw it connects). Its
/// local partition is still checked on its own. Before, the counts of
/// `m` and `par` went to the foreign tables, and the rehearsal failed.
#[test]
fn a_table_with_a_foreign_partition_or_child_is_not_read() {
    let (_dir, run) = made_then_note(
        "CREATE FOREIGN DATA WRAPPER dummy;\n\
         CREATE SERVER remote FOREIGN DATA WRAPPER dummy;\n\
         CREATE TABLE m (id int, at date) PARTITION BY RANGE (at);\n\
         CREATE TABLE m_local PARTITION OF m FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');\n\
         CREATE FOREIGN TABLE m_remote PARTITION OF m\n\
           FOR VALUES FROM ('2020-01-01') TO ('2021-01-01') SERVER remote;\n\
         CREATE TABLE par (id int);\n\
         CREATE FOREIGN TABLE kid () INHERITS (par) SERVER remote;\n",
        "DROP TABLE m, par CASCADE;\nDROP SERVER remote;\nDROP FOREIGN DATA WRAPPER dummy;\n",
        "DELETE FROM m_local;\n",
        "INSERT INTO m_local SELECT 1, '2024-03-01' WHERE NOT EXISTS (SELECT FROM m_local);\n",
    );
    second_is_lossy(&run, &["public.m_local: 1 rows before, 0 after"]);
    assert_eq!(
        run.step("rehearse")["details"]["table_checksums"]["foreign_not_read"],
        serde_json::json!(["public.kid", "public.m", "public.m_remote", "public.par"])
    );
}

/// A migration's `DEALLOCATE ALL`, or `DISCARD ALL` outside a transaction,
/// drops the session's prepared statements, the rehearsal's snapshot
/// queries among them. They are prepared again and every verdict stands.
/// Before, the rehearsal ended at the next snapshot: "prepared statement
/// "s17" does not exist", and the rest were not rehearsed.
#[test]
fn a_migration_that_deallocates_prepared_statements_is_rehearsed() {
    let (_dir, run) = rehearse_files(
        &[
            ("001_a.up.sql", "CREATE TABLE a (id int);\n"),
            ("001_a.down.sql", "DROP TABLE a;\n"),
            (
                "002_b.up.sql",
                "DEALLOCATE ALL;\nCREATE TABLE b (id int);\n",
            ),
            ("002_b.down.sql", "DEALLOCATE ALL;\nDROP TABLE b;\n"),
            (
                "003_c.up.sql",
                "-- runbook:no-transaction\nDISCARD ALL;\nCREATE TABLE c (id int);\n",
            ),
            (
                "003_c.down.sql",
                "-- runbook:no-transaction\nDROP TABLE c;\n",
            ),
            ("004_d.up.sql", "ALTER TABLE a ADD COLUMN note text;\n"),
            ("004_d.down.sql", "SELECT 1;\n"),
        ],
        "",
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    for version in ["001", "002", "003"] {
        assert_eq!(
            outcome(&run, version)["verdict"],
            "ok",
            "{}",
            outcome(&run, version)
        );
    }
    // Still judged: a down that leaves the column its up added.
    assert_eq!(outcome(&run, "004")["verdict"], "parity_mismatch");
}

/// A migration that sets the session's search_path, as pg_dump's output
/// does, leaves every verdict alone. Before, every object read again after
/// it was named qualified (a default's `'public.t_id_seq'::regclass`) and
/// the ones read before it were not, so the next migration that touched
/// such an object failed parity.
#[test]
fn a_migration_that_sets_the_search_path_keeps_parity() {
    let (_dir, run) = rehearse_files(
        &[
            (
                "001_base.up.sql",
                "CREATE TABLE t (id serial PRIMARY KEY);\nCREATE VIEW v AS SELECT id FROM t;\n",
            ),
            ("001_base.down.sql", "DROP VIEW v;\nDROP TABLE t;\n"),
            (
                "002_dump.up.sql",
                "SELECT pg_catalog.set_config('search_path', '', false);\nCREATE TABLE public.u (id int);\n",
            ),
            ("002_dump.down.sql", "DROP TABLE public.u;\n"),
            (
                "003_note.up.sql",
                "ALTER TABLE public.t ADD COLUMN note text;\n",
            ),
            (
                "003_note.down.sql",
                "ALTER TABLE public.t DROP COLUMN note;\n",
            ),
        ],
        "",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    for version in ["001", "002", "003"] {
        assert_eq!(outcome(&run, version)["verdict"], "ok", "{version}");
    }
}

/// TRUNCATE empties a table without counting a deleted row in the
/// transaction's statistics; the rehearsal still sees the rows are gone.
#[test]
fn a_down_that_truncates_a_table_that_existed_before_is_lossy() {
    let (_dir, run) = people_then(
        "note",
        "CREATE TABLE note (id int);\n",
        "DROP TABLE note;\nTRUNCATE people;\n",
        "INSERT INTO people VALUES (1, 'a'), (2, 'b') ON CONFLICT DO NOTHING;\n",
    );
    second_is_lossy(&run, &["public.people: 2 rows before, 0 after"]);
}

/// A column's own grant is part of the schema: a down that leaves the
/// grant its up gave (here to a secret column) breaks parity. Before,
/// snapshots held only a table's grants, and this passed as `ok`.
/// Row-level security cannot hide rows from the data checks. As the
/// table's owner (no superuser, no BYPASSRLS), a table with
/// `FORCE ROW LEVEL SECURITY` and no policy showed 0 rows before and after
/// a down that truncates it: `ok`. The checks now read with
/// `row_security = off`, so the server refuses instead; the rehearsal says
/// which table and what to do, and judges nothing it could not check (the
/// first migration made the table, so it had no rows to lose).
#[test]
fn row_level_security_cannot_hide_a_lossy_down_from_the_data_checks() {
    let db = Db::fresh();
    let (_owner, url) = db.owned_by_new_role("rls");
    let (_dir, case) = rehearsal_of(&[
        (
            "001_t.up.sql",
            "CREATE TABLE t (id int PRIMARY KEY);\nINSERT INTO t SELECT generate_series(1, 3);\n\
             ALTER TABLE t ENABLE ROW LEVEL SECURITY;\nALTER TABLE t FORCE ROW LEVEL SECURITY;\n",
        ),
        ("001_t.down.sql", "DROP TABLE t;\n"),
        ("002_i.up.sql", "CREATE INDEX t_i ON t (id);\n"),
        ("002_i.down.sql", "DROP INDEX t_i;\nTRUNCATE t;\n"),
    ]);
    let run = case.exec(&url, &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let step = run.step("rehearse");
    assert!(
        step["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("the data checks cannot read a table: query would be affected by row-level security policy for table \"t\""),
        "{step}"
    );
    assert!(
        step["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("BYPASSRLS"),
        "{step}"
    );
    assert_eq!(
        step["details"]["verdicts"],
        serde_json::json!({"ok": 1, "not_rehearsed": 1}),
        "{step}"
    );
}

/// Migrations that step up to the tables' owner (`SET ROLE app`), run by a
/// login that does not inherit the owner's rights: the data checks read as
/// the role the script left, which may read the tables, not as the login,
/// which may not.
#[test]
fn the_data_checks_keep_a_role_the_scripts_stepped_up_to() {
    let db = Db::fresh();
    let (hostport, name) = db.url.split_once('@').unwrap().1.split_once('/').unwrap();
    let name = name.split('?').next().unwrap();
    let (login, app) = (format!("login_{name}"), format!("app_{name}"));
    db.sql(&format!(
        "CREATE ROLE {login} LOGIN NOINHERIT; CREATE ROLE {app}; GRANT {app} TO {login};
         ALTER DATABASE {name} OWNER TO {login}; GRANT ALL ON SCHEMA public TO {login}, {app};
         ALTER DEFAULT PRIVILEGES FOR ROLE {login} IN SCHEMA public GRANT ALL ON TABLES TO {app};"
    ));
    let up1 = format!("SET ROLE {app};\nCREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\n");
    let down1 = format!("SET ROLE {app};\nDROP TABLE t;\n");
    let up2 = format!("SET ROLE {app};\nCREATE INDEX t_i ON t (id);\n");
    let down2 = format!("SET ROLE {app};\nDROP INDEX t_i;\n");
    let (_dir, case) = rehearsal_of(&[
        ("001_t.up.sql", &up1),
        ("001_t.down.sql", &down1),
        ("002_i.up.sql", &up2),
        ("002_i.down.sql", &down2),
    ]);
    let run = case.exec(&format!("postgres://{login}@{hostport}/{name}"), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.step("rehearse")["details"]["verdicts"],
        serde_json::json!({"ok": 2})
    );
}

/// A role's `statement_timeout`, a common guard on managed databases, does
/// not cut the data checks: it cancelled the checksum of a table that an
/// instant index touched, and the rehearsal failed on its own evidence. The
/// scripts still run under the runbook's `statement_timeout` (here the
/// default, 15min): the re-up records the one it saw.
#[test]
fn a_roles_statement_timeout_cuts_the_scripts_not_the_data_checks() {
    let db = Db::fresh();
    let (app, url) = db.owned_by_new_role("guarded");
    db.sql(&format!(
        "CREATE TABLE big (id int, v text);
         INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 400000) g;
         ALTER TABLE big OWNER TO {app};
         ALTER ROLE {app} SET statement_timeout = '150ms';"
    ));
    let (_dir, case) = rehearsal_of(&[
        (
            "001_i.up.sql",
            "CREATE INDEX big_id ON big (id) WHERE id < 10;
             DROP TABLE IF EXISTS seen;
             CREATE TABLE seen AS SELECT current_setting('statement_timeout') AS v;
",
        ),
        (
            "001_i.down.sql",
            "DROP INDEX big_id;
DROP TABLE seen;
",
        ),
    ]);
    let run = case.exec(&url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.step("rehearse")["details"]["verdicts"],
        serde_json::json!({"ok": 1})
    );
    assert_eq!(db.sql("SELECT v FROM seen"), "15min");
}

/// The step's timeout ends a data check as it ends a leg. A session held
/// a lock on a table the migration touches: the count waited behind it
/// for as long as the lock was held, past the step's timeout (and an
/// interrupt waited too). It is now cancelled at the timeout.
#[test]
fn the_steps_timeout_ends_a_data_check_waiting_on_a_lock() {
    let db = Db::fresh();
    db.sql("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100);");
    let mut holder = support::hold_lock(&db, "t", "ACCESS EXCLUSIVE", 60);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("001_i.up.sql"),
        "CREATE INDEX t_i ON t (id);\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("001_i.down.sql"), "DROP INDEX t_i;\n").unwrap();
    let case = Case::new(&one_step(
        "verify",
        "rehearse",
        &format!(
            "        timeout: 2s\n        rehearse:\n          dir: {}\n",
            dir.path().display()
        ),
    ));
    let started = Instant::now();
    let run = case.exec(&db.url, &[]);
    let took = started.elapsed();
    let _ = holder.kill();
    let _ = holder.wait();
    let step = run.step("rehearse");
    assert_eq!(step["status"], "timed_out", "{step}");
    assert_eq!(step["error"]["message"], "timed out after 2s", "{step}");
    assert!(
        took < Duration::from_secs(30),
        "ended at the step's timeout, not when the lock was let go: {took:?}"
    );
    assert_eq!(
        step["details"]["verdicts"],
        serde_json::json!({"not_rehearsed": 1}),
        "{step}"
    );
}

#[test]
fn a_down_that_keeps_a_column_grant_breaks_parity() {
    let (_dir, run) = people_then(
        "grant",
        "GRANT SELECT (name), UPDATE (name) ON people TO PUBLIC;\n",
        "REVOKE UPDATE (name) ON people FROM PUBLIC;\n",
        "SELECT 1;\n",
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(outcome(&run, "001")["verdict"], "ok");
    let second = outcome(&run, "002");
    assert_eq!(second["verdict"], "parity_mismatch", "{second}");
    assert!(
        second.to_string().contains("PUBLIC=SELECT"),
        "the finding shows the grant left behind: {second}"
    );
}

/// Each of `cases` (version, what it left) is a parity mismatch naming it.
fn breaks_parity_naming(run: &Rehearsal, cases: &[(&str, &str)]) {
    for (version, left) in cases {
        let o = outcome(run, version);
        assert_eq!(o["verdict"], "parity_mismatch", "{version}: {o}");
        assert!(
            o.to_string().contains(left),
            "{version} names `{left}`: {o}"
        );
    }
}

/// Row-level security, a table's storage settings, schemas (`public`'s
/// grants too), domains, composite types, a function's grants, aggregates
/// and extended statistics are part of the schema: downs that leave them
/// behind break parity. Before, snapshots did not read them, and each of
/// these passed as `ok`.
#[test]
fn downs_that_leave_security_storage_schemas_types_or_statistics_break_parity() {
    let (_dir, run) = rehearse_files(
        &[
            (
                "001_base.up.sql",
                "CREATE TABLE people (id int PRIMARY KEY, name text);\n",
            ),
            ("001_base.down.sql", "DROP TABLE people;\n"),
            (
                "002_rls.up.sql",
                "ALTER TABLE people ENABLE ROW LEVEL SECURITY;\nCREATE POLICY mine ON people USING (id > 0);\n",
            ),
            ("002_rls.down.sql", "DROP POLICY mine ON people;\n"),
            (
                "003_policy.up.sql",
                "CREATE POLICY theirs ON people FOR SELECT USING (true);\n",
            ),
            ("003_policy.down.sql", "SELECT 1;\n"),
            (
                "004_storage.up.sql",
                "ALTER TABLE people SET UNLOGGED;\nALTER TABLE people SET (fillfactor = 70);\n",
            ),
            (
                "004_storage.down.sql",
                "ALTER TABLE people RESET (fillfactor);\n",
            ),
            ("005_schema.up.sql", "CREATE SCHEMA audit;\n"),
            ("005_schema.down.sql", "SELECT 1;\n"),
            (
                "006_domain.up.sql",
                "CREATE DOMAIN positive AS int CHECK (VALUE > 0);\n",
            ),
            ("006_domain.down.sql", "SELECT 1;\n"),
            (
                "007_public.up.sql",
                "REVOKE USAGE ON SCHEMA public FROM PUBLIC;\n",
            ),
            ("007_public.down.sql", "SELECT 1;\n"),
            (
                "008_composite.up.sql",
                "CREATE TYPE pair AS (a int, b text);\n",
            ),
            ("008_composite.down.sql", "SELECT 1;\n"),
            (
                "009_function.up.sql",
                "CREATE FUNCTION add1(int) RETURNS int LANGUAGE sql AS 'SELECT $1 + 1';\n",
            ),
            ("009_function.down.sql", "DROP FUNCTION add1(int);\n"),
            (
                "010_revoke.up.sql",
                "REVOKE EXECUTE ON FUNCTION add1(int) FROM PUBLIC;\n",
            ),
            ("010_revoke.down.sql", "SELECT 1;\n"),
            (
                "011_aggregate.up.sql",
                "CREATE AGGREGATE total(int) (sfunc = int4pl, stype = int, initcond = '0');\n",
            ),
            ("011_aggregate.down.sql", "SELECT 1;\n"),
            (
                "012_statistics.up.sql",
                "CREATE STATISTICS people_dep ON id, name FROM people;\n",
            ),
            ("012_statistics.down.sql", "SELECT 1;\n"),
        ],
        "",
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(outcome(&run, "001")["verdict"], "ok");
    assert_eq!(outcome(&run, "009")["verdict"], "ok");
    breaks_parity_naming(
        &run,
        &[
            ("002", "row_security"),
            ("003", "theirs"),
            ("004", "unlogged"),
            ("005", "schema audit"),
            ("006", "type public.positive"),
            ("007", "schema public"),
            ("008", "type public.pair"),
            ("010", "function public.add1(integer)"),
            ("011", "aggregate public.total(integer)"),
            ("012", "statistics public.people_dep"),
        ],
    );
}

/// Column storage, range types, collations, operators, casts, publications
/// (their tables, column lists and row filters), default privileges, event
/// triggers, text search configurations, plain table inheritance, rules and
/// a view's options are part of the schema too: downs that leave them
/// behind break parity. Before, snapshots did not read them, and each passed as `ok`.
#[test]
fn downs_that_leave_publications_privileges_collations_or_casts_break_parity() {
    let (_dir, run) = rehearse_files(
        &[
            (
                "001_base.up.sql",
                "CREATE TABLE people (id int PRIMARY KEY, name text);\n",
            ),
            ("001_base.down.sql", "DROP TABLE people;\n"),
            (
                "002_storage.up.sql",
                "ALTER TABLE people ALTER COLUMN name SET STORAGE external;\n",
            ),
            ("002_storage.down.sql", "SELECT 1;\n"),
            (
                "003_range.up.sql",
                "CREATE TYPE span AS RANGE (subtype = float8);\n",
            ),
            (
                "003_range.down.sql",
                "DROP TYPE span;\nCREATE TYPE span AS RANGE (subtype = float8, subtype_diff = float8mi);\n",
            ),
            (
                "004_collation.up.sql",
                "CREATE COLLATION nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);\n",
            ),
            ("004_collation.down.sql", "SELECT 1;\n"),
            (
                "005_operator.up.sql",
                "CREATE FUNCTION same_abs(int, int) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT abs($1) = abs($2)';\n\
                 CREATE OPERATOR === (leftarg = int, rightarg = int, function = same_abs);\n",
            ),
            (
                "005_operator.down.sql",
                "DROP OPERATOR ===(int, int);\n\
                 CREATE OPERATOR === (leftarg = int, rightarg = int, function = same_abs, commutator = ===);\n\
                 DROP FUNCTION same_abs(int, int) CASCADE;\n\
                 CREATE FUNCTION same_abs(int, int) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT abs($1) = abs($2)';\n\
                 CREATE OPERATOR === (leftarg = int, rightarg = int, function = same_abs, commutator = ===);\n\
                 DROP FUNCTION same_abs(int, int) CASCADE;\n\
                 CREATE OPERATOR === (leftarg = int, rightarg = int, function = int4eq);\n",
            ),
            (
                "006_cast.up.sql",
                "CREATE TYPE tag AS ENUM ('a');\nCREATE CAST (tag AS int) WITH INOUT AS ASSIGNMENT;\n",
            ),
            ("006_cast.down.sql", "DROP CAST (tag AS int);\n"),
            (
                "007_publication.up.sql",
                "CREATE PUBLICATION feed FOR TABLE people;\n",
            ),
            ("007_publication.down.sql", "SELECT 1;\n"),
            (
                "008_filter.up.sql",
                "ALTER PUBLICATION feed SET TABLE people (id) WHERE (id > 0);\n",
            ),
            (
                "008_filter.down.sql",
                "ALTER PUBLICATION feed SET TABLE people WHERE (id > 0);\n",
            ),
            (
                "009_defaults.up.sql",
                "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC;\n",
            ),
            ("009_defaults.down.sql", "SELECT 1;\n"),
            (
                "010_event.up.sql",
                "CREATE FUNCTION on_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$;\n\
                 CREATE EVENT TRIGGER watch ON ddl_command_end EXECUTE FUNCTION on_ddl();\n",
            ),
            ("010_event.down.sql", "ALTER EVENT TRIGGER watch DISABLE;\n"),
            (
                "011_search.up.sql",
                "CREATE TEXT SEARCH CONFIGURATION plain (COPY = simple);\n",
            ),
            (
                "011_search.down.sql",
                "ALTER TEXT SEARCH CONFIGURATION plain DROP MAPPING FOR email;\n",
            ),
            (
                "012_kid.up.sql",
                "CREATE TABLE kid (id int NOT NULL, name text);\nCREATE TABLE foster (id int, name text);\n",
            ),
            ("012_kid.down.sql", "DROP TABLE kid;\nDROP TABLE foster;\n"),
            (
                "014_rule.up.sql",
                "CREATE RULE keep_people AS ON DELETE TO people DO INSTEAD NOTHING;\n",
            ),
            ("014_rule.down.sql", "SELECT 1;\n"),
            (
                "015_view.up.sql",
                "CREATE VIEW people_v AS SELECT id FROM people;\n",
            ),
            ("015_view.down.sql", "DROP VIEW people_v;\n"),
            (
                "016_invoker.up.sql",
                "ALTER VIEW people_v SET (security_invoker = true);\n",
            ),
            ("016_invoker.down.sql", "SELECT 1;\n"),
            ("013_inherit.up.sql", "ALTER TABLE kid INHERIT people;\n"),
            (
                "013_inherit.down.sql",
                "ALTER TABLE kid NO INHERIT people;\nALTER TABLE kid INHERIT foster;\n",
            ),
        ],
        "",
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(outcome(&run, "001")["verdict"], "ok");
    breaks_parity_naming(
        &run,
        &[
            ("002", "external"),
            ("003", "subtype_diff"),
            ("004", "collation public.nocase"),
            ("005", "operator public.===(integer, integer)"),
            ("006", "type public.tag"),
            ("007", "publication feed"),
            ("008", "(id > 0)"),
            ("009", "default privileges for"),
            ("010", "event trigger watch"),
            ("011", "text search configuration public.plain"),
            ("013", "inherits"),
            ("014", "rule public.people.keep_people"),
            ("016", "security_invoker"),
        ],
    );
}

/// Owners (where an object's is not its schema's, or a schema's not the
/// database's), a column's compression, statistics target and options,
/// `CLUSTER ON`, foreign data wrappers, servers, user mappings, a foreign
/// table's options, and operator families and classes are part of the
/// schema too: downs that leave
/// them behind break parity, and a down that drops what it made with its
/// owner keeps it. A user mapping's password never reaches the report.
/// Before, snapshots did not read them, and each passed as `ok`.
#[test]
fn downs_that_leave_owners_compression_statistics_or_cluster_break_parity() {
    let space = in_place_tablespace();
    let (space_up, index_space_up) = (
        format!("ALTER TABLE people SET TABLESPACE {space};\n"),
        format!("ALTER INDEX people_name SET TABLESPACE {space};\n"),
    );
    let (_dir, run) = rehearse_files(
        &[
            (
                "001_base.up.sql",
                "DO $$ BEGIN CREATE ROLE rb_parity_owner; EXCEPTION WHEN duplicate_object THEN NULL; END $$;\n\
                 CREATE TABLE people (id int PRIMARY KEY, name text, bio text);\n\
                 CREATE INDEX people_name ON people (name);\n",
            ),
            ("001_base.down.sql", "DROP TABLE people;\n"),
            (
                "002_owner.up.sql",
                "ALTER TABLE people OWNER TO rb_parity_owner;\n",
            ),
            ("002_owner.down.sql", "SELECT 1;\n"),
            (
                "003_compression.up.sql",
                "ALTER TABLE people ALTER COLUMN bio SET COMPRESSION pglz;\n",
            ),
            ("003_compression.down.sql", "SELECT 1;\n"),
            (
                "004_statistics.up.sql",
                "ALTER TABLE people ALTER COLUMN name SET STATISTICS 1000;\n",
            ),
            ("004_statistics.down.sql", "SELECT 1;\n"),
            (
                "005_options.up.sql",
                "ALTER TABLE people ALTER COLUMN name SET (n_distinct = -1);\n",
            ),
            ("005_options.down.sql", "SELECT 1;\n"),
            (
                "006_cluster.up.sql",
                "ALTER TABLE people CLUSTER ON people_name;\n",
            ),
            ("006_cluster.down.sql", "SELECT 1;\n"),
            (
                "007_function.up.sql",
                "CREATE FUNCTION greet() RETURNS int LANGUAGE sql AS 'SELECT 1';\n",
            ),
            ("007_function.down.sql", "DROP FUNCTION greet();\n"),
            (
                "008_function_owner.up.sql",
                "ALTER FUNCTION greet() OWNER TO rb_parity_owner;\n",
            ),
            ("008_function_owner.down.sql", "SELECT 1;\n"),
            ("009_schema.up.sql", "CREATE SCHEMA side;\n"),
            ("009_schema.down.sql", "DROP SCHEMA side;\n"),
            (
                "010_schema_owner.up.sql",
                "ALTER SCHEMA side OWNER TO rb_parity_owner;\n",
            ),
            ("010_schema_owner.down.sql", "SELECT 1;\n"),
            ("011_type.up.sql", "CREATE TYPE mood AS ENUM ('ok');\n"),
            ("011_type.down.sql", "DROP TYPE mood;\n"),
            (
                "012_type_owner.up.sql",
                "ALTER TYPE mood OWNER TO rb_parity_owner;\n",
            ),
            ("012_type_owner.down.sql", "SELECT 1;\n"),
            (
                "013_owned_view.up.sql",
                "CREATE VIEW one AS SELECT 1 AS one;\nALTER VIEW one OWNER TO rb_parity_owner;\n",
            ),
            ("013_owned_view.down.sql", "DROP VIEW one;\n"),
            (
                "014_wrapper.up.sql",
                "DO $$ BEGIN CREATE FOREIGN DATA WRAPPER dummy; EXCEPTION WHEN duplicate_object THEN NULL; END $$;\n\
                 CREATE SERVER remote FOREIGN DATA WRAPPER dummy OPTIONS (host 'a', api_key 'sk_live_zzz');\n",
            ),
            ("014_wrapper.down.sql", "DROP SERVER remote;\n"),
            (
                "015_server_options.up.sql",
                "ALTER SERVER remote OPTIONS (SET host 'b');\n",
            ),
            ("015_server_options.down.sql", "SELECT 1;\n"),
            (
                "016_mapping.up.sql",
                "CREATE USER MAPPING FOR PUBLIC SERVER remote OPTIONS (password 'hush-hush');\n",
            ),
            ("016_mapping.down.sql", "SELECT 1;\n"),
            (
                "017_foreign_table.up.sql",
                "CREATE FOREIGN TABLE ext (id int) SERVER remote OPTIONS (table_name 'x');\n",
            ),
            ("017_foreign_table.down.sql", "DROP FOREIGN TABLE ext;\n"),
            (
                "018_table_options.up.sql",
                "ALTER FOREIGN TABLE ext OPTIONS (SET table_name 'y');\n",
            ),
            ("018_table_options.down.sql", "SELECT 1;\n"),
            (
                "019_column_options.up.sql",
                "ALTER FOREIGN TABLE ext ALTER COLUMN id OPTIONS (column_name 'ident');\n",
            ),
            ("019_column_options.down.sql", "SELECT 1;\n"),
            (
                "020_opclass.up.sql",
                "CREATE OPERATOR CLASS int_ops2 FOR TYPE int USING btree AS\n\
                 OPERATOR 1 <, OPERATOR 3 =, FUNCTION 1 btint4cmp(int, int);\n",
            ),
            (
                "020_opclass.down.sql",
                "DROP OPERATOR CLASS int_ops2 USING btree;\n",
            ),
            (
                "021_opfamily.up.sql",
                "ALTER OPERATOR FAMILY int_ops2 USING btree ADD OPERATOR 5 > (int, int);\n",
            ),
            ("021_opfamily.down.sql", "SELECT 1;\n"),
            ("022_space.up.sql", &space_up),
            ("022_space.down.sql", "SELECT 1;\n"),
            ("023_index_space.up.sql", &index_space_up),
            ("023_index_space.down.sql", "SELECT 1;\n"),
            (
                "024_access_method.up.sql",
                "DO $$ BEGIN CREATE ACCESS METHOD heap2 TYPE TABLE HANDLER heap_tableam_handler; \
                 EXCEPTION WHEN duplicate_object THEN NULL; END $$;\n\
                 ALTER TABLE people SET ACCESS METHOD heap2;\n",
            ),
            ("024_access_method.down.sql", "SELECT 1;\n"),
        ],
        "",
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    for ok in ["001", "007", "009", "011", "013", "017"] {
        assert_eq!(outcome(&run, ok)["verdict"], "ok", "{ok}");
    }
    breaks_parity_naming(
        &run,
        &[
            ("002", "rb_parity_owner"),
            ("003", "pglz"),
            ("004", "statistics"),
            ("005", "n_distinct"),
            ("006", "clustered"),
            ("008", "function public.greet()"),
            ("010", "schema side"),
            ("012", "type public.mood"),
            ("014", "foreign data wrapper dummy"),
            ("015", "host=b"),
            ("016", "user mapping for PUBLIC server remote"),
            ("018", "table_name=y"),
            ("019", "column_name=ident"),
            ("020", "operator family public.int_ops2 using btree"),
            ("021", "5 >(integer,integer)"),
            ("022", "tablespace"),
            ("023", "index public.people_name"),
            ("024", "heap2"),
        ],
    );
    // A foreign table is not read: its server is not there to answer.
    assert_eq!(
        run.step("rehearse")["details"]["table_checksums"]["foreign_not_read"],
        serde_json::json!(["public.ext"])
    );
    // A user mapping's options are named, never shown; nor is the value
    // of a server's option whose name says it is a secret.
    assert!(outcome(&run, "016").to_string().contains("password"));
    assert!(
        outcome(&run, "015")
            .to_string()
            .contains("api_key=(not read)")
    );
    for f in ["report.json", "report.md", "events.jsonl"] {
        let text = std::fs::read_to_string(run.dir.join(f)).expect(f);
        assert!(
            !text.contains("hush-hush") && !text.contains("sk_live"),
            "{f}"
        );
    }
}

/// Access methods, text search parsers and templates, and an index's
/// statistics targets are part of the schema too: downs that leave them
/// behind break parity, and downs that take them away keep it. Before,
/// snapshots did not read them, and each passed as `ok`.
#[test]
fn downs_that_leave_access_methods_parsers_templates_or_index_statistics_break_parity() {
    let (_dir, run) = rehearse_files(
        &[
            (
                "001_base.up.sql",
                "CREATE TABLE people (id int PRIMARY KEY, name text);\n\
                 CREATE INDEX people_lower ON people (lower(name));\n\
                 CREATE TEXT SEARCH TEMPLATE plain (INIT = dsimple_init, LEXIZE = dsimple_lexize);\n",
            ),
            (
                "001_base.down.sql",
                "DROP TABLE people;\nDROP TEXT SEARCH TEMPLATE plain;\n",
            ),
            (
                "002_index_statistics.up.sql",
                "ALTER INDEX people_lower ALTER COLUMN 1 SET STATISTICS 500;\n",
            ),
            ("002_index_statistics.down.sql", "SELECT 1;\n"),
            (
                "003_access_method.up.sql",
                "CREATE ACCESS METHOD bt2 TYPE INDEX HANDLER bthandler;\n",
            ),
            ("003_access_method.down.sql", "SELECT 1;\n"),
            (
                "004_parser.up.sql",
                "CREATE TEXT SEARCH PARSER words (START = prsd_start, GETTOKEN = prsd_nexttoken, \
                 END = prsd_end, LEXTYPES = prsd_lextype);\n",
            ),
            ("004_parser.down.sql", "SELECT 1;\n"),
            (
                "005_template.up.sql",
                "DROP TEXT SEARCH TEMPLATE plain;\n\
                 CREATE TEXT SEARCH TEMPLATE plain (INIT = dsimple_init, LEXIZE = dsimple_lexize);\n",
            ),
            (
                "005_template.down.sql",
                "DROP TEXT SEARCH TEMPLATE plain;\n\
                 CREATE TEXT SEARCH TEMPLATE plain (LEXIZE = dsimple_lexize);\n",
            ),
            (
                "006_dropped.up.sql",
                "CREATE ACCESS METHOD bt3 TYPE INDEX HANDLER bthandler;\n\
                 CREATE TEXT SEARCH TEMPLATE plain2 (LEXIZE = dsimple_lexize);\n\
                 ALTER INDEX people_lower ALTER COLUMN 1 SET STATISTICS 50;\n",
            ),
            (
                "006_dropped.down.sql",
                "DROP ACCESS METHOD bt3;\nDROP TEXT SEARCH TEMPLATE plain2;\n\
                 ALTER INDEX people_lower ALTER COLUMN 1 SET STATISTICS 500;\n",
            ),
        ],
        "",
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    for ok in ["001", "006"] {
        assert_eq!(outcome(&run, ok)["verdict"], "ok", "{ok}");
    }
    breaks_parity_naming(
        &run,
        &[
            ("002", "index public.people_lower"),
            ("003", "access method bt2"),
            ("004", "text search parser public.words"),
            // Made again without its init function.
            ("005", "dsimple_init"),
        ],
    );
}

/// A tablespace of this test process's own, in the cluster's data directory
/// (`allow_in_place_tablespaces`), made once: tablespaces belong to the
/// cluster, and `CREATE TABLESPACE` has no `IF NOT EXISTS`.
fn in_place_tablespace() -> String {
    static SPACE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SPACE
        .get_or_init(|| {
            let name = format!("rb_space_{}", std::process::id());
            let made = std::process::Command::new("psql")
                .env("PGOPTIONS", "-c allow_in_place_tablespaces=on")
                .args([
                    support::cluster().url("postgres").as_str(),
                    "-XAtq",
                    "-c",
                    &format!("CREATE TABLESPACE {name} LOCATION ''"),
                ])
                .output()
                .unwrap();
            assert!(
                made.status.success(),
                "{}",
                String::from_utf8_lossy(&made.stderr)
            );
            name
        })
        .clone()
}

/// The rehearsal's snapshots rebuild only the objects whose catalog rows (or
/// the rows of what they depend on) changed. After every kind of change,
/// that must give exactly what a full read gives.
#[test]
fn incremental_snapshots_equal_full_ones_after_every_kind_of_change() {
    use runbook::snapshot::Snapshotter;
    let db = Db::fresh();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        // The session's own plan setting, which the snapshots must leave as
        // it is (they switch to generic plans only around their own queries).
        client
            .batch_execute("SET plan_cache_mode = force_custom_plan")
            .await
            .unwrap();
        let s = Snapshotter::new(&client).await.unwrap();
        let mut tracked = s.full(&client).await.unwrap();
        let space = in_place_tablespace();
        let space_moves = [
            format!("ALTER TABLE c SET TABLESPACE {space}"),
            format!("ALTER INDEX c_pkey SET TABLESPACE {space}"),
        ];
        let changes: Vec<&str> = vec![
            "CREATE SEQUENCE ids",
            "CREATE TYPE mood AS ENUM ('ok', 'sad')",
            "CREATE TABLE a (id int PRIMARY KEY DEFAULT nextval('ids'), v text, m mood)",
            "CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a (id), n numeric(10, 2) CHECK (n > 0))",
            "CREATE INDEX b_a ON b (a_id) WHERE n > 1",
            "CREATE VIEW av AS SELECT id, v FROM a",
            "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
            "CREATE TRIGGER a_touch BEFORE UPDATE ON a FOR EACH ROW EXECUTE FUNCTION touch()",
            "INSERT INTO a (v) VALUES ('x'); ANALYZE a",
            "ALTER TABLE a RENAME TO a2",
            "ALTER TABLE a2 RENAME COLUMN v TO value",
            "ALTER SEQUENCE ids RENAME TO ids2",
            "ALTER TYPE mood ADD VALUE 'glad'",
            "ALTER TYPE mood RENAME TO feeling",
            "ALTER FUNCTION touch() RENAME TO touch2",
            "COMMENT ON COLUMN a2.value IS 'the value'",
            "COMMENT ON INDEX b_a IS 'by a'",
            "GRANT SELECT ON a2 TO PUBLIC",
            "GRANT UPDATE (value) ON a2 TO PUBLIC",
            "REVOKE UPDATE (value) ON a2 FROM PUBLIC",
            "ALTER TABLE b ALTER COLUMN n TYPE numeric(12, 2)",
            "ALTER TABLE b ADD CONSTRAINT b_n_small CHECK (n < 1000) NOT VALID",
            "ALTER TABLE b VALIDATE CONSTRAINT b_n_small",
            "ALTER TABLE a2 ALTER COLUMN value SET DEFAULT 'none'",
            "ALTER TABLE a2 ALTER COLUMN value DROP DEFAULT",
            "DROP VIEW av",
            "ALTER TABLE b DROP COLUMN n",
            "CREATE SCHEMA other; ALTER TABLE b SET SCHEMA other",
            "ALTER SCHEMA other RENAME TO elsewhere",
            "TRUNCATE a2 CASCADE",
            "DROP TABLE elsewhere.b",
            "COMMENT ON TABLE a2 IS 'runbook state: hidden'",
            // Removals that leave the object they belong to in place.
            "CREATE TABLE c (id int PRIMARY KEY, v int CHECK (v > 0), w int DEFAULT 1)",
            "COMMENT ON COLUMN c.v IS 'v'",
            "COMMENT ON COLUMN c.v IS NULL",
            "ALTER TABLE c DROP CONSTRAINT c_v_check",
            "ALTER TABLE c ALTER COLUMN w DROP DEFAULT",
            "CREATE TRIGGER c_touch BEFORE UPDATE ON c FOR EACH ROW EXECUTE FUNCTION touch2()",
            "DROP TRIGGER c_touch ON c",
            "CREATE TABLE d () INHERITS (c)",
            "ALTER TABLE d NO INHERIT c",
            "CREATE RULE c_nothing AS ON DELETE TO c DO INSTEAD NOTHING",
            "DROP RULE c_nothing ON c",
            "DROP FUNCTION touch2() CASCADE",
            "DROP TYPE feeling CASCADE",
            "CREATE FUNCTION touch3() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
            "CREATE TABLE p (id int, at date) PARTITION BY RANGE (at)",
            "CREATE TABLE p1 PARTITION OF p FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
            "ALTER TABLE p DETACH PARTITION p1",
            "DROP TABLE d, p1",
            // Access, durability and replication settings of a table, its
            // row-level security policies, and schemas of their own.
            "ALTER TABLE c ENABLE ROW LEVEL SECURITY",
            "CREATE POLICY c_mine ON c FOR SELECT TO PUBLIC USING (v > 0)",
            "ALTER POLICY c_mine ON c USING (v > 1)",
            "ALTER TABLE c FORCE ROW LEVEL SECURITY",
            "DROP POLICY c_mine ON c",
            "ALTER TABLE c NO FORCE ROW LEVEL SECURITY; ALTER TABLE c DISABLE ROW LEVEL SECURITY",
            "ALTER TABLE c SET UNLOGGED",
            "ALTER TABLE c SET (fillfactor = 70)",
            "ALTER TABLE c REPLICA IDENTITY USING INDEX c_pkey",
            "ALTER TABLE c REPLICA IDENTITY DEFAULT; ALTER TABLE c RESET (fillfactor); ALTER TABLE c SET LOGGED",
            "CREATE SCHEMA audit",
            "COMMENT ON SCHEMA audit IS 'who did what'",
            "GRANT USAGE ON SCHEMA audit TO PUBLIC",
            "DROP SCHEMA audit",
            "REVOKE USAGE ON SCHEMA public FROM PUBLIC",
            "GRANT USAGE ON SCHEMA public TO PUBLIC",
            "COMMENT ON SCHEMA public IS 'ours'",
            "COMMENT ON SCHEMA public IS 'standard public schema'",
            // Domains, their constraints, and composite types.
            "CREATE DOMAIN positive AS int CHECK (VALUE > 0)",
            "ALTER DOMAIN positive ADD CONSTRAINT positive_small CHECK (VALUE < 100) NOT VALID",
            "ALTER DOMAIN positive VALIDATE CONSTRAINT positive_small",
            "ALTER DOMAIN positive SET DEFAULT 1; ALTER DOMAIN positive SET NOT NULL",
            "COMMENT ON DOMAIN positive IS 'above zero'",
            "ALTER DOMAIN positive DROP CONSTRAINT positive_small",
            "CREATE TYPE pair AS (a int, b text)",
            "ALTER TYPE pair ADD ATTRIBUTE c positive",
            "ALTER TYPE pair RENAME ATTRIBUTE b TO label",
            "COMMENT ON COLUMN pair.a IS 'first'",
            "ALTER TYPE pair RENAME TO couple",
            "DROP TYPE couple; DROP DOMAIN positive",
            // Function grants, aggregates and extended statistics.
            "CREATE FUNCTION add1(int) RETURNS int LANGUAGE sql AS 'SELECT $1 + 1'",
            "REVOKE EXECUTE ON FUNCTION add1(int) FROM PUBLIC",
            "GRANT EXECUTE ON FUNCTION add1(int) TO PUBLIC",
            "CREATE AGGREGATE total(int) (sfunc = int4pl, stype = int, initcond = '0')",
            "COMMENT ON AGGREGATE total(int) IS 'sum'",
            "ALTER AGGREGATE total(int) RENAME TO grand_total",
            "CREATE STATISTICS c_dep (dependencies) ON id, v FROM c",
            "ALTER TABLE c RENAME COLUMN v TO value",
            "ALTER STATISTICS c_dep RENAME TO c_deps",
            "COMMENT ON STATISTICS c_deps IS 'id and value'",
            "ALTER TABLE c RENAME COLUMN value TO v",
            "DROP STATISTICS c_deps; DROP AGGREGATE grand_total(int); DROP FUNCTION add1(int)",
            // Column storage, range types, collations, operators, casts,
            // publications, default privileges and event triggers.
            "ALTER TABLE c ADD COLUMN note text; ALTER TABLE c ALTER COLUMN note SET STORAGE external",
            "ALTER TABLE c ALTER COLUMN note SET STORAGE extended; ALTER TABLE c DROP COLUMN note",
            "CREATE TYPE span AS RANGE (subtype = float8, subtype_diff = float8mi)",
            "COMMENT ON TYPE span IS 'a span'",
            "CREATE COLLATION nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false)",
            "CREATE TABLE h (id int, name text COLLATE nocase)",
            "ALTER COLLATION nocase RENAME TO caseless",
            "COMMENT ON COLLATION caseless IS 'ignores case'",
            "CREATE FUNCTION same_abs(int, int) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT abs($1) = abs($2)'",
            "CREATE OPERATOR === (leftarg = int, rightarg = int, function = same_abs, commutator = ===)",
            "ALTER FUNCTION same_abs(int, int) RENAME TO same_size",
            "ALTER OPERATOR ===(int, int) SET (restrict = eqsel)",
            "CREATE FUNCTION pair_text(int) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT $1::text'",
            "CREATE TYPE tag AS ENUM ('a'); CREATE CAST (tag AS int) WITH INOUT AS ASSIGNMENT",
            "COMMENT ON CAST (tag AS int) IS 'by text'",
            "DROP CAST (tag AS int); DROP TYPE tag",
            "CREATE PUBLICATION feed FOR TABLE c, h",
            "ALTER PUBLICATION feed SET (publish = 'insert, update')",
            "ALTER TABLE h RENAME TO h2",
            "ALTER PUBLICATION feed DROP TABLE c",
            "CREATE SCHEMA pubs; ALTER PUBLICATION feed ADD TABLES IN SCHEMA pubs",
            "CREATE TABLE pubs.q (id int)",
            "ALTER PUBLICATION feed DROP TABLES IN SCHEMA pubs; DROP SCHEMA pubs CASCADE",
            "ALTER PUBLICATION feed ADD TABLE c (id, v) WHERE (v > 0)",
            "DROP TABLE h2",
            "COMMENT ON PUBLICATION feed IS 'to the warehouse'",
            "ALTER PUBLICATION feed RENAME TO stream",
            "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC",
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO PUBLIC",
            "ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC",
            "ALTER DEFAULT PRIVILEGES REVOKE SELECT ON TABLES FROM PUBLIC",
            "CREATE FUNCTION on_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$",
            "CREATE EVENT TRIGGER watch ON ddl_command_end WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION on_ddl()",
            "ALTER EVENT TRIGGER watch DISABLE",
            "ALTER FUNCTION on_ddl() RENAME TO on_ddl2",
            "DROP EVENT TRIGGER watch; DROP FUNCTION on_ddl2()",
            "CREATE TEXT SEARCH DICTIONARY plain_simple (TEMPLATE = simple, STOPWORDS = english)",
            "CREATE TEXT SEARCH CONFIGURATION plain (COPY = simple)",
            "ALTER TEXT SEARCH CONFIGURATION plain ALTER MAPPING FOR asciiword WITH plain_simple, simple",
            "ALTER TEXT SEARCH DICTIONARY plain_simple (ACCEPT = false)",
            "ALTER TEXT SEARCH DICTIONARY plain_simple RENAME TO plainer",
            "ALTER TEXT SEARCH CONFIGURATION plain DROP MAPPING FOR email",
            "COMMENT ON TEXT SEARCH CONFIGURATION plain IS 'no stemming'",
            "DROP TEXT SEARCH CONFIGURATION plain; DROP TEXT SEARCH DICTIONARY plainer",
            // Rules other than a view's own, and a view's options.
            "CREATE RULE c_keep AS ON DELETE TO c DO INSTEAD NOTHING",
            "ALTER TABLE c DISABLE RULE c_keep",
            "COMMENT ON RULE c_keep ON c IS 'deletes do nothing'",
            "ALTER RULE c_keep ON c RENAME TO c_hold",
            "DROP RULE c_hold ON c",
            "CREATE VIEW cv AS SELECT id FROM c",
            "ALTER VIEW cv SET (security_invoker = true)",
            "ALTER VIEW cv RESET (security_invoker)",
            "DROP VIEW cv",
            // The last of the rare kinds goes: reads leave their branches out again.
            "ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO PUBLIC",
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE USAGE ON SEQUENCES FROM PUBLIC",
            "DROP PUBLICATION stream; DROP OPERATOR ===(int, int); DROP TYPE span; DROP COLLATION caseless",
            // Owners, a column's statistics target, options and
            // compression, and `CLUSTER ON`.
            "DO $$ BEGIN CREATE ROLE rb_incr_owner; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
            "CREATE INDEX c_w ON c (w); ALTER TABLE c CLUSTER ON c_w",
            "ALTER TABLE c SET WITHOUT CLUSTER",
            "ALTER TABLE c ALTER COLUMN w SET STATISTICS 500",
            "ALTER TABLE c ALTER COLUMN w SET (n_distinct = 10)",
            "ALTER TABLE c ALTER COLUMN w SET STATISTICS -1; ALTER TABLE c ALTER COLUMN w RESET (n_distinct)",
            "ALTER TABLE c ADD COLUMN doc text COMPRESSION pglz",
            "ALTER TABLE c ALTER COLUMN doc SET COMPRESSION default",
            "ALTER TABLE c OWNER TO rb_incr_owner",
            "ALTER FUNCTION touch3() OWNER TO rb_incr_owner",
            "CREATE SCHEMA owned; CREATE TABLE owned.t (id int); ALTER SCHEMA owned OWNER TO rb_incr_owner",
            "ALTER SCHEMA owned OWNER TO CURRENT_USER",
            // `public` belongs to pg_database_owner: its objects' owners are
            // read against the database's.
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I OWNER TO rb_incr_owner', current_database()); END $$",
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I OWNER TO CURRENT_USER', current_database()); END $$",
            "DROP SCHEMA owned CASCADE; ALTER TABLE c OWNER TO CURRENT_USER; ALTER FUNCTION touch3() OWNER TO CURRENT_USER",
            // Foreign data wrappers, servers, user mappings and foreign
            // tables' options.
            "CREATE FOREIGN DATA WRAPPER dummy",
            "CREATE SERVER remote FOREIGN DATA WRAPPER dummy OPTIONS (host 'a', api_key 'k')",
            "CREATE USER MAPPING FOR PUBLIC SERVER remote OPTIONS (password 'p')",
            "CREATE FOREIGN TABLE ext (id int, v text) SERVER remote OPTIONS (table_name 'x')",
            "ALTER SERVER remote OPTIONS (SET host 'b', DROP api_key)",
            "ALTER USER MAPPING FOR PUBLIC SERVER remote OPTIONS (ADD user 'u')",
            "ALTER FOREIGN TABLE ext OPTIONS (SET table_name 'y')",
            "ALTER FOREIGN TABLE ext ALTER COLUMN v OPTIONS (column_name 'value')",
            "ALTER SERVER remote RENAME TO distant",
            "ALTER FOREIGN DATA WRAPPER dummy OPTIONS (debug 'true')",
            "DROP USER MAPPING FOR PUBLIC SERVER distant",
            "DROP FOREIGN DATA WRAPPER dummy CASCADE",
            // Tablespaces and table access methods.
            &space_moves[0],
            &space_moves[1],
            "DO $$ BEGIN CREATE ACCESS METHOD heap2 TYPE TABLE HANDLER heap_tableam_handler; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
            "ALTER TABLE c SET ACCESS METHOD heap2",
            "ALTER TABLE c SET ACCESS METHOD heap",
            "ALTER TABLE c SET TABLESPACE pg_default; ALTER INDEX c_pkey SET TABLESPACE pg_default",
            // Access methods themselves, text search parsers and templates,
            // and an index's statistics targets.
            "COMMENT ON ACCESS METHOD heap2 IS 'a copy of heap'",
            "CREATE ACCESS METHOD bt2 TYPE INDEX HANDLER bthandler",
            "DROP ACCESS METHOD bt2",
            "CREATE TEXT SEARCH PARSER prs (START = prsd_start, GETTOKEN = prsd_nexttoken, END = prsd_end, LEXTYPES = prsd_lextype)",
            "CREATE TEXT SEARCH TEMPLATE tmpl (INIT = dsimple_init, LEXIZE = dsimple_lexize)",
            "CREATE TEXT SEARCH CONFIGURATION by_prs (PARSER = prs)",
            "CREATE TEXT SEARCH DICTIONARY by_tmpl (TEMPLATE = tmpl)",
            "ALTER TEXT SEARCH PARSER prs RENAME TO prs2",
            "ALTER TEXT SEARCH TEMPLATE tmpl RENAME TO tmpl2",
            "COMMENT ON TEXT SEARCH PARSER prs2 IS 'the default, again'",
            "DROP TEXT SEARCH PARSER prs2 CASCADE; DROP TEXT SEARCH TEMPLATE tmpl2 CASCADE",
            "CREATE INDEX c_next ON c ((w + 1))",
            "ALTER INDEX c_next ALTER COLUMN 1 SET STATISTICS 300",
            "ALTER INDEX c_next ALTER COLUMN 1 SET STATISTICS -1",
            "ALTER INDEX c_next ALTER COLUMN 1 SET STATISTICS 0",
            "DROP INDEX c_next",
            // Operator families and classes, an extension's left out.
            "CREATE EXTENSION btree_gist",
            "CREATE OPERATOR CLASS int_ops2 FOR TYPE int USING btree AS OPERATOR 1 <, OPERATOR 3 =, FUNCTION 1 btint4cmp(int, int)",
            "ALTER OPERATOR FAMILY int_ops2 USING btree ADD OPERATOR 5 > (int, int)",
            "ALTER OPERATOR FAMILY int_ops2 USING btree ADD OPERATOR 1 < (int, bigint)",
            "ALTER OPERATOR FAMILY int_ops2 USING btree DROP OPERATOR 1 (int, bigint)",
            "ALTER OPERATOR CLASS int_ops2 USING btree RENAME TO int_ops3",
            "COMMENT ON OPERATOR FAMILY int_ops2 USING btree IS 'fam'",
            "DROP OPERATOR FAMILY int_ops2 USING btree; DROP EXTENSION btree_gist",
            // Drops that take what depends on them along: read with no query.
            "CREATE TABLE e (id int PRIMARY KEY); CREATE TABLE f (id int, e_id int REFERENCES e (id))",
            "COMMENT ON TABLE e IS 'e'; CREATE INDEX f_e ON f (e_id)",
            "DROP TABLE e CASCADE",
            "DROP INDEX f_e",
            // Out of the schemas read, not dropped: what depends on it goes
            // from the snapshot too (its trigger here).
            "CREATE TABLE g (id int); CREATE TRIGGER g_touch BEFORE UPDATE ON g FOR EACH ROW EXECUTE FUNCTION touch3()",
            "ALTER TABLE g SET SCHEMA information_schema",
            "DROP TABLE information_schema.g",
        ];
        for change in changes {
            client.batch_execute(change).await.unwrap();
            let next = s.next(&client, tracked.clone()).await.unwrap();
            let full = s.full(&client).await.unwrap();
            assert_eq!(
                next.snapshot.objects, full.snapshot.objects,
                "after `{change}`"
            );
            assert_eq!(next.snapshot.hash, full.snapshot.hash);
            tracked = next;
        }
        // Nothing changed: nothing is rebuilt.
        let same = s.next(&client, tracked.clone()).await.unwrap();
        assert_eq!(same.rebuilt, 0);
        assert_eq!(same.snapshot.hash, tracked.snapshot.hash);

        // Inside one transaction, as a rehearsal runs a down and its re-up:
        // rows written after a read by the same transaction are seen; after
        // the rollback, the state kept from before it is right again.
        let before = same;
        client.batch_execute("BEGIN").await.unwrap();
        let mut inside = before.clone();
        for change in [
            "CREATE TABLE t (id int PRIMARY KEY)",
            "ALTER TABLE t ADD COLUMN v int",
            "DROP TABLE t",
            "CREATE TABLE t (id int PRIMARY KEY, w text)",
            "ALTER TABLE c ADD COLUMN x int",
        ] {
            client.batch_execute(change).await.unwrap();
            inside = s.next(&client, inside).await.unwrap();
            let full = s.full(&client).await.unwrap();
            assert_eq!(inside.snapshot.objects, full.snapshot.objects, "in a transaction, after `{change}`");
        }
        client.batch_execute("ROLLBACK").await.unwrap();
        client.batch_execute("ALTER TABLE c ADD COLUMN y int").await.unwrap();
        let after = s.next(&client, before).await.unwrap();
        let full = s.full(&client).await.unwrap();
        assert_eq!(after.snapshot.objects, full.snapshot.objects, "after the rollback");

        // An index flipped valid in place, without a new row version: a
        // concurrent build that failed leaves it invalid.
        client.batch_execute("INSERT INTO c VALUES (1, 1), (2, 1)").await.unwrap();
        let before = s.next(&client, after).await.unwrap();
        assert!(
            client
                .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY c_v ON c (v)")
                .await
                .is_err()
        );
        let invalid = s.next(&client, before).await.unwrap();
        let full = s.full(&client).await.unwrap();
        assert_eq!(invalid.snapshot.objects, full.snapshot.objects);
        assert_eq!(invalid.snapshot.objects["index public.c_v"]["valid"], false);
        client.batch_execute("DELETE FROM c WHERE id = 2").await.unwrap();
        client.batch_execute("REINDEX INDEX CONCURRENTLY c_v").await.unwrap();
        let valid = s.next(&client, invalid).await.unwrap();
        let full = s.full(&client).await.unwrap();
        assert_eq!(valid.snapshot.objects, full.snapshot.objects);
        assert_eq!(valid.snapshot.objects["index public.c_v"]["valid"], true);
        let mode: String = client
            .query_one("SHOW plan_cache_mode", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(mode, "force_custom_plan", "the session's setting is put back");
    });
}

/// `to: before_run` undoes exactly what this run applied: a failed release
/// rolls back its own migration and keeps the one an earlier run applied.
/// `to` and `steps` come from params, checked once rendered.
#[test]
fn a_rollback_to_before_the_run_keeps_what_earlier_runs_applied() {
    let db = Db::fresh();
    let dir = fixture("dollar_quotes");
    let first = Case::new(&one_step(
        "migrate",
        "apply",
        &format!("        migrate:\n          dir: {dir}\n          to: 1\n"),
    ));
    assert_eq!(first.exec(&db.url, &[]).code, 0);
    let release = Case::new(&format!(
        r#"{HEAD}params:
  upto: {{ type: string, default: latest }}
phases:
  - id: migrate
    kind: migrate
    steps:
      - id: apply
        migrate:
          dir: {dir}
          to: "{{{{ params.upto }}}}"
        rollback:
          id: undo_ours
          migrate:
            dir: {dir}
            direction: down
            to: before_run
      - id: broken
        sql: SELECT 1 / 0;
"#
    ));
    let run = release.exec(&db.url, &[]);
    assert_eq!(run.code, 2, "rolled back: {}", run.stderr);
    let undone: Vec<&str> = run.step("undo_ours")["details"]["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["version"].as_str().unwrap())
        .collect();
    assert_eq!(undone, ["002"], "only this run's migration");
    assert_eq!(
        db.sql("SELECT string_agg(version, ',') FROM runbook_migrations"),
        "001",
        "the earlier run's migration stays"
    );
}

#[test]
fn steps_and_to_from_params_are_checked_once_rendered() {
    let db = Db::fresh();
    let dir = fixture("down_forgets_index");
    let yaml = format!(
        r#"{HEAD}params:
  n: {{ type: string }}
  target: {{ type: string }}
phases:
  - id: migrate
    kind: migrate
    steps:
      - id: undo
        migrate:
          dir: {dir}
          direction: down
          to: "{{{{ params.target }}}}"
          steps: "{{{{ params.n }}}}"
"#
    );
    let case = Case::new(&yaml);
    // Refused before anything runs: nothing is created.
    let run = case.exec(&db.url, &["--set", "n=abc", "--set", "target=0"]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("`steps` renders to `abc`, which is not a whole number"),
        "{}",
        run.stderr
    );
    let run = case.exec(&db.url, &["--set", "n=1", "--set", "target=someday"]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr.contains("`to` renders to `someday`"),
        "{}",
        run.stderr
    );
    assert_eq!(
        db.sql("SELECT to_regclass('runbook_migrations') IS NULL"),
        "t"
    );
    // Good values run: apply both, then roll back one by params.
    let up = Case::new(&one_step(
        "migrate",
        "apply",
        &format!("        migrate:\n          dir: {dir}\n"),
    ));
    assert_eq!(up.exec(&db.url, &[]).code, 0);
    let run = case.exec(&db.url, &["--set", "n=1", "--set", "target=0"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT string_agg(version, ',') FROM runbook_migrations"),
        "001"
    );
}

/// A database that already has the first migration (another tool, or a
/// person, applied it) adopts the directory: `baseline` records it without
/// running it, after a confirmation, and `migrate` then applies only what
/// is new. Without the baseline, migrate would run 001 again and fail.
#[test]
fn a_baseline_adopts_an_existing_database_without_running_anything() {
    let db = Db::fresh();
    let dir = fixture("dollar_quotes");
    db.sql(&std::fs::read_to_string(format!("{dir}/001_base.up.sql")).unwrap());
    let migrate = Case::new(&one_step(
        "migrate",
        "apply",
        &format!("        migrate:\n          dir: {dir}\n"),
    ));
    let url = db.url.as_str();
    // Unknown version, and no confirmation: refused, nothing written.
    let out = migrations_cmd(&["baseline", &dir, "--database-url", url, "--version", "009"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = migrations_cmd(&["baseline", &dir, "--database-url", url, "--version", "001"]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("001 base"));
    assert_eq!(
        db.sql("SELECT to_regclass('runbook_migrations') IS NULL"),
        "t"
    );
    let out = migrations_cmd(&[
        "baseline",
        &dir,
        "--database-url",
        url,
        "--version",
        "001",
        "--as",
        "release-bot",
        "--yes",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("baselined 1 migration(s) through 001"));
    assert_eq!(
        db.sql("SELECT version || ' ' || (run_id LIKE 'baseline/release-bot@%') || ' ' || dirty FROM runbook_migrations"),
        "001 true false"
    );
    // The data 001 inserted was not inserted twice: it did not run.
    assert_eq!(db.sql("SELECT count(*) FROM accounts"), "3");
    let run = migrate.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let applied: Vec<&str> = run.step("apply")["details"]["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["version"].as_str().unwrap())
        .collect();
    assert_eq!(applied, ["002"]);
    // A second baseline finds nothing to do.
    let out = migrations_cmd(&[
        "baseline",
        &dir,
        "--database-url",
        url,
        "--version",
        "002",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to baseline"));
}

/// lemmy's views compare with `'now'::timestamp - '1 mon'`, which
/// PostgreSQL evaluates once, when the view is made, and stores: the same
/// SQL made again gives another definition. Rehearsed, up, down and up
/// again differed only in that moment, and the verdict was reup_failure
/// (an error), or parity_mismatch for the down that made the view again.
/// It is `nondeterministic`, which says why; a date a person wrote that a
/// down gets wrong is still `parity_mismatch`.
#[test]
fn a_definition_that_froze_the_time_it_was_made_is_nondeterministic() {
    let (_dir, run) = rehearse_files(
        &[
            (
                "001_posts.up.sql",
                "CREATE TABLE post (id int, published timestamp, d date);\n\
                 CREATE VIEW recent AS SELECT * FROM post WHERE published > ('now'::timestamp - '1 mon'::interval);\n\
                 CREATE VIEW dated AS SELECT * FROM post WHERE d > '2020-01-01';\n",
            ),
            (
                "001_posts.down.sql",
                "DROP VIEW dated, recent;\nDROP TABLE post;\n",
            ),
            (
                "002_recent.up.sql",
                "CREATE OR REPLACE VIEW recent AS SELECT * FROM post WHERE published > ('now'::timestamp - '2 mon'::interval);\n",
            ),
            (
                "002_recent.down.sql",
                "CREATE OR REPLACE VIEW recent AS SELECT * FROM post WHERE published > ('now'::timestamp - '1 mon'::interval);\n",
            ),
            (
                "003_dated.up.sql",
                "CREATE OR REPLACE VIEW dated AS SELECT * FROM post WHERE d > '2021-01-01';\n",
            ),
            (
                "003_dated.down.sql",
                "CREATE OR REPLACE VIEW dated AS SELECT * FROM post WHERE d > '2019-01-01';\n",
            ),
        ],
        "",
    );
    let step = run.step("rehearse");
    assert_eq!(
        step["details"]["verdicts"],
        serde_json::json!({"nondeterministic": 2, "parity_mismatch": 1}),
        "{step}"
    );
    // After the down that made the view again, and after the up again.
    let o = outcome(&run, "002");
    assert_eq!(verdicts(o), ["nondeterministic", "nondeterministic"], "{o}");
    assert!(
        o["findings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("only in the times their definitions froze when they were made"),
        "{o}"
    );
    assert_eq!(verdicts(outcome(&run, "003")), ["parity_mismatch"]);
}

/// Conductor keeps 18 Flyway migrations and no undo (`U`) file: undo is a
/// Flyway Teams feature, and most teams have none. Each was rehearsed as
/// `irreversible` (no `U1__*.sql`), so `runbook init`'s CI rehearsal failed
/// all 18. A directory with no undo at all is forward-only, said once for
/// the set; with one undo, a migration without its own is irreversible.
#[test]
fn a_flyway_directory_without_undo_files_is_forward_only() {
    let ups = [
        ("V1__init.sql", "CREATE TABLE a (id int);\n"),
        ("V2__more.sql", "ALTER TABLE a ADD COLUMN b int;\n"),
    ];
    let (_dir, run) = rehearse_files(&ups, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let step = run.step("rehearse");
    assert_eq!(
        step["details"]["verdicts"],
        serde_json::json!({"forward_only": 2}),
        "{step}"
    );
    assert!(
        step["details"]["set_findings"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("the directory has no undo (`U`) migrations, which Flyway Community does not run, so its migrations are forward-only"),
        "{step}"
    );
    let with_undo = [&ups[..], &[("U1__init.sql", "DROP TABLE a;\n")][..]].concat();
    let (_dir, run) = rehearse_files(&with_undo, "");
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(verdicts(outcome(&run, "2")), ["irreversible"]);
}

/// A migrate step retried on a lock timeout: its first attempt applied
/// migration 1 and timed out on 2. The next attempt, failing on 2 again,
/// had applied nothing itself, so the step read "failed; nothing was
/// changed" (exit 1), its rollback did not run, and migration 1 stayed.
/// Retried until it passed, its report listed only migration 2. What an
/// earlier attempt applied is the step's: listed, counted as a change, and
/// undone.
#[test]
fn what_an_earlier_attempt_applied_is_the_steps_own() {
    let db = Db::fresh();
    db.sql("CREATE TABLE b (id int)");
    let case = Case::new(&format!(
        "{HEAD}settings: {{ lock_timeout: 200ms }}\nphases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: apply\n        migrate: {{ dir: db }}\n        retry: {{ attempts: ATTEMPTS, on: [lock_timeout] }}\n        rollback:\n          id: undo\n          migrate: {{ dir: db, direction: down, to: before_run }}\n"
    ));
    let dir = case.dir.path().join("db");
    support::dbmate_files(
        &dir,
        &[
            ("1_a.sql", "CREATE TABLE a (id int);", "DROP TABLE a;"),
            (
                "2_b.sql",
                "ALTER TABLE b ADD COLUMN x int;",
                "ALTER TABLE b DROP COLUMN x;",
            ),
        ],
    );
    let runbook = case.dir.path().join("runbook.yml");
    let text = std::fs::read_to_string(&runbook).unwrap();
    // Every attempt times out on 2.
    std::fs::write(&runbook, text.replace("ATTEMPTS", "2")).unwrap();
    let mut holder = support::hold_lock(&db, "b", "ACCESS EXCLUSIVE", 60);
    let run = case.exec(&db.url, &[]);
    let terminate = "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE relation = 'b'::regclass \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
    db.sql(terminate);
    holder.wait().unwrap();
    assert_eq!(run.code, 2, "{}", run.stderr);
    let apply = run.step("apply");
    assert_eq!(apply["details"]["applied"][0]["version"], "1", "{apply}");
    assert_eq!(run.step("undo")["status"], "succeeded", "{}", run.stderr);
    assert_eq!(db.sql("SELECT to_regclass('a') IS NULL"), "t");
    assert_eq!(db.sql("SELECT count(*) FROM runbook_migrations"), "0");
    // The lock goes once the first attempt timed out on 2: a later attempt
    // applies 2, and the step applied both.
    std::fs::write(&runbook, text.replace("ATTEMPTS", "5")).unwrap();
    let mut holder = support::hold_lock(&db, "b", "ACCESS EXCLUSIVE", 60);
    let running = case.spawn(&db.url, &[]);
    let waiting = "SELECT count(*) FILTER (WHERE wait_event_type = 'Lock') FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()";
    support::wait_until(&db, &format!("SELECT ({waiting}) > 0"));
    support::wait_until(&db, &format!("SELECT ({waiting}) = 0"));
    db.sql(terminate);
    holder.wait().unwrap();
    let run = Run::new(running.wait_with_output().unwrap(), &case.reports());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let apply = run.step("apply");
    let applied: Vec<&str> = apply["details"]["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["version"].as_str().unwrap())
        .collect();
    assert_eq!(applied, ["1", "2"], "{apply}");
    assert!(
        run.stderr.contains(
            "1 migration(s) applied earlier in this step (before a retry or a resume): 1"
        ),
        "{}",
        run.stderr
    );
}

/// A proxy to the test server for one run: it forwards every connection,
/// and closes the first one whose client sends a message holding `marker`
/// and `COMMIT`, before the server's answer reaches the client. The server
/// has the whole message, and commits.
fn cut_at_commit(db: &Db, marker: &'static str) -> String {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let at = db.url.split_once('@').unwrap().1;
    let (upstream, database) = at.split_once('/').unwrap();
    let upstream = upstream.to_string();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let once = Arc::new(AtomicBool::new(false));
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let mut server = TcpStream::connect(&upstream).unwrap();
            let (mut to_client, mut from_server) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let cut = Arc::new(AtomicBool::new(false));
            let dropped = cut.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n @ 1..) = from_server.read(&mut buf) {
                    if dropped.load(Ordering::SeqCst) || to_client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
            let once = once.clone();
            std::thread::spawn(move || {
                let has =
                    |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
                let mut buf = [0u8; 65536];
                while let Ok(n @ 1..) = client.read(&mut buf) {
                    let chunk = &buf[..n];
                    let hit = has(chunk, marker.as_bytes())
                        && has(chunk, b"COMMIT")
                        && !once.swap(true, Ordering::SeqCst);
                    if hit {
                        cut.store(true, Ordering::SeqCst);
                    }
                    if server.write_all(chunk).is_err() {
                        break;
                    }
                    if hit {
                        std::thread::sleep(std::time::Duration::from_millis(500));
                        break;
                    }
                }
                // The client's end, or the cut: the server's session ends too.
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
            });
        }
    });
    format!("postgres://runbook@127.0.0.1:{port}/{database}?sslmode=disable")
}

/// The connection closed as a migration's COMMIT went out: the server
/// committed it, with its history row, and the step read "failed; nothing
/// was changed" (exit 1), so its rollback did not run. A COMMIT whose
/// answer never came may have committed: the step says so, counts as a
/// change, and its rollback runs.
#[test]
fn a_commit_whose_answer_was_lost_may_have_committed() {
    let db = Db::fresh();
    let case = Case::new(&format!(
        "{HEAD}phases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: apply\n        migrate: {{ dir: db }}\n        rollback:\n          id: undo\n          migrate: {{ dir: db, direction: down, to: before_run }}\n"
    ));
    let dir = case.dir.path().join("db");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("7_a.up.sql"), "CREATE TABLE a (id int);\n").unwrap();
    std::fs::write(dir.join("7_a.down.sql"), "DROP TABLE a;\n").unwrap();
    let url = cut_at_commit(&db, "version = '7'");
    let run = case.exec(&url, &[]);
    let error = &run.step("apply")["error"];
    assert!(
        error["hint"]
            .as_str()
            .unwrap_or_default()
            .contains("it may have committed"),
        "{}",
        run.stderr
    );
    let verdict = run.report["run"]["verdict"].as_str().unwrap();
    assert!(!verdict.contains("nothing was changed"), "{verdict}");
    assert_eq!(run.step("undo")["status"], "succeeded", "{}", run.stderr);
    assert_eq!(db.sql("SELECT to_regclass('a') IS NULL"), "t");
    assert_eq!(db.sql("SELECT count(*) FROM runbook_migrations"), "0");
    // Retried on `connection`: the next attempt finds it committed, and it
    // is the step's (it was in no attempt's `applied`).
    let runbook = case.dir.path().join("runbook.yml");
    let text = std::fs::read_to_string(&runbook).unwrap().replace(
        "        migrate: { dir: db }\n",
        "        migrate: { dir: db }\n        retry: { attempts: 2, on: [connection] }\n",
    );
    std::fs::write(&runbook, text).unwrap();
    let run = case.exec(&cut_at_commit(&db, "version = '7'"), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let applied = &run.step("apply")["details"]["applied"];
    assert_eq!(applied[0]["version"], "7", "{applied}");
    assert!(
        applied[0]["note"]
            .as_str()
            .unwrap_or_default()
            .contains("the history says it committed"),
        "{applied}"
    );
}
