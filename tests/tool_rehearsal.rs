//! Rehearsals of migrations another tool applies, through that tool's own
//! commands, against a real PostgreSQL. The tool is tests/fixtures/fake-tool:
//! a shell script that behaves like a migration CLI (Knex's history table,
//! `list`, `up NAME`, `down NAME`), with a planted parity mismatch (a down
//! that forgets an index) and a planted lossy down (one that resets a
//! column that existed before its migration).

mod support;

use serde_json::Value;
use support::{Case, Db, Run};

const HEAD: &str = "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: t, version: 1 }\n";

fn project() -> tempfile::TempDir {
    support::fake_tool_project()
}

fn rehearse(db: &Db, p: &std::path::Path, tool: &str) -> (Case, Run) {
    let case = Case::new(&format!(
        "{HEAD}phases:\n  - id: verify\n    kind: verify\n    steps:\n      - id: rehearse\n        rehearse:\n          dir: {dir}/migrations\n          scratch: true\n          tool:\n            cwd: {dir}\n{tool}",
        dir = p.display()
    ));
    let run = case.exec(&db.url, &[]);
    (case, run)
}

fn outcome<'r>(run: &'r Run, version: &str) -> &'r Value {
    run.step("rehearse")["details"]["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["version"] == version)
        .unwrap_or_else(|| panic!("no outcome for {version}"))
}

const UP_DOWN: &str = "            up: ./faketool up {{ migration.name }}\n            down: ./faketool down {{ migration.name }}\n";

#[test]
fn a_rehearsal_through_the_tool_finds_a_forgotten_index_and_a_lossy_down() {
    let db = Db::fresh();
    let p = project();
    let (_case, run) = rehearse(&db, p.path(), UP_DOWN);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let base = outcome(&run, "20240101000000");
    assert_eq!(base["verdict"], "ok", "{base}");
    assert_eq!(base["name"], "base");
    let legs: Vec<&str> = base["legs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["leg"].as_str().unwrap())
        .collect();
    assert_eq!(legs, ["up", "down", "reup"]);
    let index = outcome(&run, "20240102000000");
    assert_eq!(index["verdict"], "parity_mismatch", "{index}");
    assert!(
        index["findings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("accounts_email_idx"),
        "{index}"
    );
    let lossy = outcome(&run, "20240103000000");
    assert_eq!(lossy["verdict"], "lossy", "{lossy}");
    // Knex's history table changed in every leg, and is not a difference.
    let all = run.step("rehearse").to_string();
    assert!(!all.contains("knex_migrations"), "{all}");
    // It ran on a scratch copy: the run's database has none of it.
    assert_eq!(
        db.sql("SELECT to_regclass('accounts') IS NULL AND to_regclass('knex_migrations') IS NULL"),
        "t"
    );
    assert_eq!(
        db.sql("SELECT to_regclass('runbook_migrations') IS NULL"),
        "t"
    );
}

#[test]
fn the_tools_list_orders_the_migrations_and_its_history_says_what_is_applied() {
    let db = Db::fresh();
    let p = project();
    // The first migration is already applied, as the tool records it.
    db.sql(&format!(
        "{} CREATE TABLE knex_migrations (id serial PRIMARY KEY, name varchar(255), batch integer, migration_time timestamptz);
         INSERT INTO knex_migrations (name, batch, migration_time) VALUES ('20240101000000_base.ts', 1, now());",
        std::fs::read_to_string(p.path().join("sql/20240101000000_base.up.sql")).unwrap()
    ));
    let (_case, run) = rehearse(
        &db,
        p.path(),
        &format!("            list: ./faketool list\n{UP_DOWN}"),
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    let versions: Vec<&str> = run.step("rehearse")["details"]["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].as_str().unwrap())
        .collect();
    assert_eq!(
        versions,
        ["20240102000000", "20240103000000"],
        "the applied one is not rehearsed"
    );
}

#[test]
fn without_a_down_command_the_tools_migrations_are_forward_only() {
    let db = Db::fresh();
    let p = project();
    let (_case, run) = rehearse(
        &db,
        p.path(),
        "            up: ./faketool up {{ migration.name }}\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let d = &run.step("rehearse")["details"];
    assert_eq!(d["set_findings"][0]["verdict"], "forward_only", "{d}");
    assert!(
        d["set_findings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no `down` command")
    );
    assert_eq!(outcome(&run, "20240103000000")["verdict"], "forward_only");
}

#[test]
fn a_failing_tool_command_is_an_up_failure_with_its_output() {
    let db = Db::fresh();
    let p = project();
    std::fs::write(
        p.path().join("sql/20240102000000_email_index.up.sql"),
        "CREATE INDEX broken ON nowhere (id);\n",
    )
    .unwrap();
    let (_case, run) = rehearse(&db, p.path(), UP_DOWN);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let o = outcome(&run, "20240102000000");
    assert_eq!(o["verdict"], "up_failure", "{o}");
    let message = o["findings"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("`./faketool up 20240102000000_email_index.ts` exited with code 3"),
        "{message}"
    );
    assert!(
        message.contains("relation \"nowhere\" does not exist"),
        "{message}"
    );
    assert_eq!(outcome(&run, "20240103000000")["verdict"], "not_rehearsed");
}
