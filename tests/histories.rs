//! Other tools' history tables, against a real PostgreSQL: for each tool, a
//! database whose history was written exactly as that tool writes it (its
//! table's DDL and rows, from the tool's source or documentation), then
//! `runbook migrations status` reads it, `migrate` continues it in the
//! tool's own format, a checksum catches an edited file where the tool
//! keeps checksums, and `baseline` records in the tool's terms.

mod support;

use support::{Case, Db, Run};

const HEAD: &str = "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: t, version: 1 }\n";

fn files(list: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in list {
        let path = d.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    d
}

/// A project the Liquibase CLI runs from its own directory: a
/// `liquibase.properties` (`changeLogFile: master.yaml`, then `settings`),
/// the master, and the `changes.sql` it includes.
fn liquibase_cli(settings: &str, changes: &str) -> tempfile::TempDir {
    files(&[
        (
            "liquibase.properties",
            &format!("changeLogFile: master.yaml\n{settings}"),
        ),
        (
            "master.yaml",
            "databaseChangeLog:\n  - include:\n      file: changes.sql\n      relativeToChangelogFile: true\n",
        ),
        ("changes.sql", changes),
    ])
}

/// A Liquibase master that includes `a.sql`, then `b.sql`, beside it.
fn a_then_b(a: &str, b: &str) -> tempfile::TempDir {
    files(&[
        (
            "master.yaml",
            "databaseChangeLog:\n  - include:\n      file: a.sql\n      relativeToChangelogFile: true\n  - include:\n      file: b.sql\n      relativeToChangelogFile: true\n",
        ),
        ("a.sql", a),
        ("b.sql", b),
    ])
}

/// [`files`] from owned texts.
fn owned(list: &[(&str, String)]) -> tempfile::TempDir {
    files(
        &list
            .iter()
            .map(|(f, t)| (*f, t.as_str()))
            .collect::<Vec<_>>(),
    )
}

/// `runbook migrations ARGS DIR --database-url URL`: (exit code, stdout, stderr).
fn migrations(args: &[&str], dir: &std::path::Path, url: &str) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .arg("migrations")
        .arg(args[0])
        .arg(dir)
        .args(["--database-url", url])
        .args(&args[1..])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    support::ended(out)
}

/// `runbook migrations repair DIR --version V --mark M --yes`.
fn repair(dir: &std::path::Path, url: &str, version: &str, mark: &str) -> (i32, String, String) {
    migrations(
        &["repair", "--version", version, "--mark", mark, "--yes"],
        dir,
        url,
    )
}

/// A runbook with one migrate step over `dir`, and what it did.
fn migrate(db: &Db, dir: &std::path::Path, extra: &str) -> (Case, Run) {
    let case = Case::new(&format!(
        "{HEAD}phases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: apply\n        migrate:\n          dir: {}\n{extra}",
        dir.display()
    ));
    let run = case.exec(&db.url, &[]);
    (case, run)
}

fn applied(run: &Run) -> Vec<String> {
    run.step("apply")["details"]["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["version"].as_str().unwrap().to_string())
        .collect()
}

/// Two fields of each object in a JSON list, as `a b`.
fn pairs(list: &serde_json::Value, a: &str, b: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{} {}", m[a].as_str().unwrap(), m[b].as_str().unwrap()))
        .collect()
}

/// The status lines, one per migration: `version state`.
fn states(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("note:") && !l.starts_with("warning:"))
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect()
}

const INIT: &str = "CREATE TABLE users (id bigint PRIMARY KEY);\n";
const ADD: &str = "ALTER TABLE users ADD COLUMN email text;\n";
const DROP_ADD: &str = "ALTER TABLE users DROP COLUMN email;\n";

#[test]
fn prisma_history_is_read_continued_and_checked_by_its_sha256() {
    let db = Db::fresh();
    let dir = files(&[
        ("20240101000000_init/migration.sql", INIT),
        ("20240102000000_add/migration.sql", ADD),
    ]);
    // As Prisma creates its table and records a finished migration.
    db.sql(&format!(
        "{INIT}
         CREATE TABLE \"_prisma_migrations\" (
             \"id\" VARCHAR(36) PRIMARY KEY NOT NULL, \"checksum\" VARCHAR(64) NOT NULL,
             \"finished_at\" TIMESTAMPTZ, \"migration_name\" VARCHAR(255) NOT NULL, \"logs\" TEXT,
             \"rolled_back_at\" TIMESTAMPTZ, \"started_at\" TIMESTAMPTZ NOT NULL DEFAULT now(),
             \"applied_steps_count\" INTEGER NOT NULL DEFAULT 0);
         INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, applied_steps_count)
         VALUES ('7c1e4f36-2d52-4f6b-9a57-9f0a3b0f1c11', '{}', now(), '20240101000000_init', 1);",
        runbook::hash::sha256_hex(INIT.as_bytes())
    ));
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("prisma history in public._prisma_migrations (detected)"),
        "{out}"
    );
    assert_eq!(
        states(&out),
        ["20240101000000 applied", "20240102000000 pending"]
    );

    let (case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["20240102000000"]);
    assert_eq!(run.step("apply")["details"]["history_format"], "prisma");
    assert_eq!(
        db.sql("SELECT migration_name || ' ' || (finished_at IS NOT NULL) || ' ' || applied_steps_count || ' ' || checksum FROM _prisma_migrations WHERE migration_name LIKE '%add'"),
        format!("20240102000000_add true 1 {}", runbook::hash::sha256_hex(ADD.as_bytes()))
    );
    // Its id is a version-4 UUID, as Prisma's own are.
    assert_eq!(
        db.sql("SELECT id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' FROM _prisma_migrations WHERE migration_name LIKE '%add'"),
        "t"
    );
    assert_eq!(
        db.sql("SELECT to_regclass('runbook_migrations') IS NULL"),
        "t"
    );
    // An edited applied migration: the sha256 Prisma recorded no longer matches.
    std::fs::write(
        dir.path().join("20240101000000_init/migration.sql"),
        "CREATE TABLE users (id int PRIMARY KEY);\n",
    )
    .unwrap();
    let (code, out, _) = migrations(&["status", "--format", "json"], dir.path(), &db.url);
    assert_eq!(code, 3, "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["migrations"][0]["state"], "changed");
    assert!(
        doc["migrations"][0]["note"]
            .as_str()
            .unwrap()
            .contains("applied with sha256")
    );
    let again = case.exec(&db.url, &[]);
    assert_eq!(again.code, 1, "an edited applied migration is refused");
}

#[test]
fn a_failed_prisma_migration_blocks_until_repaired_as_prisma_resolve_would() {
    let db = Db::fresh();
    let dir = files(&[
        ("20240101000000_init/migration.sql", INIT),
        (
            "20240102000000_idx/migration.sql",
            "CREATE INDEX CONCURRENTLY users_id ON users (id);\nCREATE INDEX CONCURRENTLY broken ON nowhere (id);\n",
        ),
    ]);
    let (_case, run) = migrate(&db, dir.path(), "          history: { format: prisma }\n");
    assert_eq!(run.code, 4, "partly changed: {}", run.stderr);
    assert_eq!(run.report["run"]["status"], "not_undone");
    // The first index committed; Prisma's row says the migration failed.
    assert_eq!(
        db.sql("SELECT (finished_at IS NULL) || ' ' || (logs LIKE 'statement 2 failed%') FROM _prisma_migrations WHERE migration_name = '20240102000000_idx'"),
        "true true"
    );
    let (code, out, _) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("20240102000000  dirty"), "{out}");
    // The preflight built-ins read Prisma's table too: one unfinished, one pending.
    let checks = Case::new(&format!(
        "{HEAD}phases:\n  - id: preflight\n    kind: preflight\n    steps:\n      - id: dirty\n        check: {{ builtin: dirty_migrations, dir: {d}, severity: warn }}\n      - id: pending\n        check: {{ builtin: pending_migrations, dir: {d}, severity: warn }}\n",
        d = dir.path().display()
    ));
    let run = checks.exec(&db.url, &[]);
    let dirty = run.step("dirty");
    assert_eq!(
        dirty["check"]["expectations"][0]["passed"], false,
        "{dirty}"
    );
    let rows = &dirty["details"]["rows"];
    assert_eq!(rows[0]["version"], "20240102000000", "{dirty}");
    assert!(
        rows[0]["state"]
            .as_str()
            .unwrap()
            .contains("prisma history"),
        "{dirty}"
    );
    assert_eq!(
        dirty["details"]["history"],
        "prisma history in public._prisma_migrations (detected)"
    );
    let pending = run.step("pending");
    assert_eq!(
        pending["details"]["rows"][0]["version"], "20240102000000",
        "{pending}"
    );
    // Pending: rolled back, as `prisma migrate resolve --rolled-back` records it.
    let (code, out, err) = repair(dir.path(), &db.url, "20240102000000", "pending");
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        db.sql("SELECT count(*) FILTER (WHERE rolled_back_at IS NOT NULL) || ' ' || count(*) FROM _prisma_migrations"),
        "1 2"
    );
    let (_, out, _) = migrations(&["status"], dir.path(), &db.url);
    assert!(out.contains("20240102000000  pending"), "{out}");
}

fn knex_tables(db: &Db) {
    // As knex's migrator creates them (`increments`, `string`, `integer`, `timestamp`).
    db.sql(
        "CREATE TABLE knex_migrations (id serial PRIMARY KEY, name varchar(255), batch integer, migration_time timestamptz);
         CREATE TABLE knex_migrations_lock (index serial PRIMARY KEY, is_locked integer);
         INSERT INTO knex_migrations_lock (is_locked) VALUES (0);",
    );
}

#[test]
fn knex_history_is_continued_in_one_new_batch_and_its_lock_is_respected() {
    let db = Db::fresh();
    let dir = files(&[
        ("20240101000000_init.up.sql", INIT),
        ("20240101000000_init.down.sql", "DROP TABLE users;\n"),
        ("20240102000000_add.up.sql", ADD),
        ("20240102000000_add.down.sql", DROP_ADD),
        (
            "20240103000000_more.up.sql",
            "CREATE TABLE more (id int);\n",
        ),
        ("20240103000000_more.down.sql", "DROP TABLE more;\n"),
    ]);
    knex_tables(&db);
    db.sql(&format!("{INIT} INSERT INTO knex_migrations (name, batch, migration_time) VALUES ('20240101000000_init.ts', 1, now());"));
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("knex history in public.knex_migrations (detected)"),
        "{out}"
    );
    assert!(out.contains("keeps no checksums"), "{out}");
    assert_eq!(
        states(&out),
        [
            "20240101000000 applied",
            "20240102000000 pending",
            "20240103000000 pending"
        ]
    );

    // Knex's lock is held: another migrator is at work, so nothing runs.
    db.sql("UPDATE knex_migrations_lock SET is_locked = 1");
    let (case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.step("apply")["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("knex migrate:unlock")
    );
    db.sql("UPDATE knex_migrations_lock SET is_locked = 0");

    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["20240102000000", "20240103000000"]);
    assert_eq!(
        db.sql("SELECT string_agg(name || ':' || batch, ',' ORDER BY id) FROM knex_migrations"),
        "20240101000000_init.ts:1,20240102000000_add.up.sql:2,20240103000000_more.up.sql:2"
    );
    // Down one: its row goes, as `knex migrate:down` would.
    let (_c, run) = migrate(
        &db,
        dir.path(),
        "          direction: down\n          steps: 1\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.sql("SELECT count(*) FROM knex_migrations"), "2");
    assert_eq!(db.sql("SELECT to_regclass('more') IS NULL"), "t");
    assert_eq!(db.sql("SELECT is_locked FROM knex_migrations_lock"), "0");
}

#[test]
fn golang_migrate_keeps_one_row_and_its_dirty_flag() {
    let db = Db::fresh();
    let dir = files(&[
        ("000001_init.up.sql", INIT),
        ("000001_init.down.sql", "DROP TABLE users;\n"),
        ("000002_add.up.sql", ADD),
        ("000002_add.down.sql", DROP_ADD),
        (
            "000003_idx.up.sql",
            "CREATE INDEX CONCURRENTLY a ON users (id);\nCREATE INDEX CONCURRENTLY b ON nowhere (id);\n",
        ),
        ("000003_idx.down.sql", "DROP INDEX a;\n"),
    ]);
    // As golang-migrate's postgres driver creates and sets it.
    db.sql(&format!("{INIT} CREATE TABLE IF NOT EXISTS schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL); INSERT INTO schema_migrations (version, dirty) VALUES (1, false);"));
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("golang-migrate history in public.schema_migrations (detected)"),
        "{out}"
    );
    assert_eq!(
        states(&out),
        ["000001 applied", "000002 pending", "000003 pending"]
    );

    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(
        run.code, 4,
        "000003's second statement fails after its first committed: {}",
        run.stderr
    );
    assert_eq!(applied(&run), ["000002"]);
    // Statement 1 of 000003 committed: golang-migrate's row says 3, dirty.
    assert_eq!(
        db.sql("SELECT version || ' ' || dirty FROM schema_migrations"),
        "3 true"
    );
    let (code, out, _) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("000003  dirty"), "{out}");
    // `force 2`: pending again.
    let (code, out, err) = repair(dir.path(), &db.url, "000003", "pending");
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        db.sql("SELECT version || ' ' || dirty FROM schema_migrations"),
        "2 false"
    );
    // Down everything: the row goes.
    let (_c, run) = migrate(
        &db,
        dir.path(),
        "          direction: down\n          to: 0\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.sql("SELECT count(*) FROM schema_migrations"), "0");
    assert_eq!(db.sql("SELECT to_regclass('users') IS NULL"), "t");
}

fn flyway_table(db: &Db) {
    // Flyway's createMetaDataTable.sql for PostgreSQL.
    db.sql(
        "CREATE TABLE \"public\".\"flyway_schema_history\" (
             \"installed_rank\" INT NOT NULL, \"version\" VARCHAR(50), \"description\" VARCHAR(200) NOT NULL,
             \"type\" VARCHAR(20) NOT NULL, \"script\" VARCHAR(1000) NOT NULL, \"checksum\" INTEGER,
             \"installed_by\" VARCHAR(100) NOT NULL, \"installed_on\" TIMESTAMP NOT NULL DEFAULT now(),
             \"execution_time\" INTEGER NOT NULL, \"success\" BOOLEAN NOT NULL);
         ALTER TABLE \"public\".\"flyway_schema_history\" ADD CONSTRAINT \"flyway_schema_history_pk\" PRIMARY KEY (\"installed_rank\");
         CREATE INDEX \"flyway_schema_history_s_idx\" ON \"public\".\"flyway_schema_history\" (\"success\");",
    );
}

#[test]
fn flyway_history_orders_dotted_versions_and_checks_its_crc32() {
    let db = Db::fresh();
    let dir = files(&[
        ("V1__init.sql", INIT),
        ("V1_1__add_email.sql", ADD),
        ("U1_1__add_email.sql", DROP_ADD),
        ("V1_10__more.sql", "CREATE TABLE more (id int);\n"),
        ("V1_2__less.sql", "CREATE TABLE less (id int);\n"),
    ]);
    flyway_table(&db);
    db.sql(&format!(
        "{INIT} INSERT INTO flyway_schema_history VALUES (1, '1', 'init', 'SQL', 'V1__init.sql', {}, 'postgres', now(), 14, true);",
        runbook::migrations::flyway_checksum(INIT)
    ));
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("flyway history in public.flyway_schema_history (detected)"),
        "{out}"
    );
    assert_eq!(
        states(&out),
        ["1 applied", "1.1 pending", "1.2 pending", "1.10 pending"]
    );

    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["1.1", "1.2", "1.10"]);
    assert_eq!(
        db.sql("SELECT string_agg(installed_rank || ' ' || version || ' ' || description || ' ' || type || ' ' || script || ' ' || success, ',' ORDER BY installed_rank) FROM flyway_schema_history"),
        "1 1 init SQL V1__init.sql true,2 1.1 add email SQL V1_1__add_email.sql true,3 1.2 less SQL V1_2__less.sql true,4 1.10 more SQL V1_10__more.sql true"
    );
    // Undo 1.10 and 1.2 cannot go (no U files); 1.1's undo is recorded as Flyway Teams records one.
    let (_c, run) = migrate(
        &db,
        dir.path(),
        "          direction: down\n          to: '1.1'\n",
    );
    assert_eq!(run.code, 1, "1.10 has no undo: {}", run.stderr);
    assert_eq!(
        db.sql("SELECT count(*) FROM flyway_schema_history"),
        "4",
        "nothing was undone"
    );
    std::fs::write(dir.path().join("U1_10__more.sql"), "DROP TABLE more;\n").unwrap();
    let (_c, run) = migrate(
        &db,
        dir.path(),
        "          direction: down\n          steps: 1\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT type || ' ' || script FROM flyway_schema_history ORDER BY installed_rank DESC LIMIT 1"),
        "UNDO_SQL U1_10__more.sql"
    );
    let (_, out, _) = migrations(&["status"], dir.path(), &db.url);
    assert!(out.contains("1.10  pending"), "{out}");
    // An edited applied script: Flyway's checksum no longer matches.
    std::fs::write(
        dir.path().join("V1__init.sql"),
        "CREATE TABLE users (id int PRIMARY KEY);\n",
    )
    .unwrap();
    let (code, out, _) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("applied with CRC-32"), "{out}");
    // Line endings alone do not change it, as in Flyway.
    std::fs::write(dir.path().join("V1__init.sql"), INIT.replace('\n', "\r\n")).unwrap();
    let (code, out, _) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}");
}

/// Flyway's repeatable migrations (`R__`) run after the versioned ones, in
/// the order of their descriptions, each recorded as Flyway records one
/// (no version, its CRC-32), and again only when its file changes. Only
/// Flyway's history records them: with runbook's own, nothing runs. A `to:`
/// that may stop short of the newest version leaves them for later.
/// Before, a directory with one was refused.
#[test]
fn flyway_repeatables_run_after_the_versioned_and_again_only_when_changed() {
    const VIEW: &str = "CREATE OR REPLACE VIEW users_v AS SELECT id FROM users;\n";
    const COUNT: &str = "CREATE OR REPLACE FUNCTION user_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM users';\n";
    let db = Db::fresh();
    let dir = files(&[
        ("V1__init.sql", INIT),
        ("V2__add_email.sql", ADD),
        // Flyway scans below its location too, and records the path.
        ("views/R__users_view.sql", VIEW),
        ("R__a_count.sql", COUNT),
    ]);
    let ran = |run: &Run| -> Vec<String> {
        run.step("apply")["details"]["applied"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| match a["version"].as_str() {
                Some(v) => v.to_string(),
                None => format!("R {}", a["name"].as_str().unwrap()),
            })
            .collect()
    };
    let (_c, run) = migrate(&db, dir.path(), "          history: { format: runbook }\n");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("only Flyway's history records them"),
        "{}",
        run.stderr
    );
    assert_eq!(
        db.sql("SELECT to_regclass('users') IS NULL AND to_regclass('runbook_migrations') IS NULL"),
        "t",
        "refused before anything was made"
    );

    // Nothing named on a new database: Flyway's table, which records them.
    let flyway = "";
    let (_c, run) = migrate(&db, dir.path(), &format!("{flyway}          to: '1'\n"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(ran(&run), ["1"]);
    assert_eq!(
        run.step("apply")["details"]["repeatables"][0],
        serde_json::json!({"name": "a count", "file": "R__a_count.sql", "state": "pending", "runs": false})
    );
    let report = std::fs::read_to_string(run.dir.join("report.md")).unwrap();
    assert!(
        report.contains("repeatable R__a_count.sql is pending and was not run"),
        "{report}"
    );
    let (_c, run) = migrate(&db, dir.path(), flyway);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(ran(&run), ["2", "R a count", "R users view"]);
    assert_eq!(
        db.sql("SELECT string_agg(installed_rank || ' ' || coalesce(version, '-') || ' ' || description || ' ' || script || ' ' || checksum, ',' ORDER BY installed_rank) FROM flyway_schema_history"),
        format!(
            "1 1 init V1__init.sql {},2 2 add email V2__add_email.sql {},3 - a count R__a_count.sql {},4 - users view views/R__users_view.sql {}",
            runbook::migrations::flyway_checksum(INIT),
            runbook::migrations::flyway_checksum(ADD),
            runbook::migrations::flyway_checksum(COUNT),
            runbook::migrations::flyway_checksum(VIEW),
        )
    );
    let (code, out, err) = migrations(
        &["status", "--history-format", "flyway"],
        dir.path(),
        &db.url,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        states(&out),
        [
            "1 applied",
            "2 applied",
            "repeatable applied",
            "repeatable applied"
        ]
    );
    // Nothing changed: nothing runs (and `to: latest` is the newest).
    let (_c, run) = migrate(&db, dir.path(), "          to: latest\n");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(ran(&run).is_empty());
    // The view's file changed: it is outdated, and it alone runs again.
    std::fs::write(
        dir.path().join("views/R__users_view.sql"),
        "CREATE OR REPLACE VIEW users_v AS SELECT id, email FROM users;\n",
    )
    .unwrap();
    let (code, out, _) = migrations(
        &["status", "--history-format", "flyway"],
        dir.path(),
        &db.url,
    );
    assert_eq!(code, 0, "an outdated repeatable is not an error: {out}");
    assert!(
        out.contains("repeatable  outdated views/R__users_view.sql"),
        "{out}"
    );
    let (_c, run) = migrate(&db, dir.path(), "          to: latest\n");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(ran(&run), ["R users view"]);
    assert_eq!(
        db.sql("SELECT installed_rank || ' ' || (version IS NULL) || ' ' || description FROM flyway_schema_history ORDER BY installed_rank DESC LIMIT 1"),
        "5 true users view"
    );
    assert_eq!(
        db.sql("SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'users_v'::regclass"),
        "id,email"
    );
}

#[test]
fn flyway_placeholders_get_flyways_values_and_the_checksum_of_the_text_as_written() {
    let db = Db::fresh();
    // Flyway keeps its history in its default schema: here `app`.
    db.sql("CREATE SCHEMA app");
    const V1: &str = "CREATE TABLE ${flyway:defaultSchema}.accounts (id bigint PRIMARY KEY);\n\
        COMMENT ON TABLE ${flyway:defaultSchema}.accounts IS\n  \
        'by ${flyway:user} in ${flyway:database} from ${flyway:filename} (${flyway:table})';\n";
    const R: &str = "CREATE OR REPLACE VIEW ${flyway:defaultSchema}.accounts_v AS SELECT id FROM ${flyway:defaultSchema}.accounts;\n";
    let dir = files(&[("sql/V1__accounts.sql", V1), ("R__view.sql", R)]);
    let history = "          history: { format: flyway, table: app.flyway_schema_history }\n";
    let (_c, run) = migrate(&db, dir.path(), history);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let who = db.sql("SELECT current_user || ' in ' || current_database()");
    assert_eq!(
        db.sql("SELECT obj_description('app.accounts'::regclass)"),
        format!("by {who} from V1__accounts.sql (flyway_schema_history)")
    );
    assert_eq!(
        db.sql("SELECT to_regclass('app.accounts_v') IS NOT NULL"),
        "t"
    );
    // Flyway's checksum is of the script as written, not as filled in.
    assert_eq!(
        db.sql("SELECT string_agg(coalesce(version, 'R') || ' ' || checksum, ',' ORDER BY installed_rank) FROM app.flyway_schema_history"),
        format!(
            "1 {},R {}",
            runbook::migrations::flyway_checksum(V1),
            runbook::migrations::flyway_checksum(R)
        )
    );
    // So nothing is outdated on the next run.
    let (_c, run) = migrate(&db, dir.path(), history);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.step("apply")["details"]["applied"],
        serde_json::json!([])
    );

    // A placeholder of the team's own needs Flyway's configuration:
    // refused before anything runs, unless the script's .conf turns
    // replacement off, when it runs as written.
    const V2: &str = "CREATE TABLE ${flyway:defaultSchema}.notes (id int);\nCOMMENT ON TABLE ${flyway:defaultSchema}.notes IS '${tenant}';\n";
    let more = files(&[("V1__accounts.sql", V1), ("V2__notes.sql", V2)]);
    let (_c, run) = migrate(&db, more.path(), history);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("V2__notes.sql:2: `${tenant}` is a Flyway placeholder with no value here")
            && run.stderr.contains("flyway.placeholders.tenant")
            && run.stderr.contains("FLYWAY_PLACEHOLDERS_TENANT")
            && run
                .stderr
                .contains("help: give runbook the value Flyway gets")
            && run.stderr.contains("changes its checksum"),
        "{}",
        run.stderr
    );
    assert_eq!(db.sql("SELECT to_regclass('app.notes') IS NULL"), "t");
    std::fs::write(
        more.path().join("V2__notes.sql"),
        "CREATE TABLE app.notes (id int);\nCOMMENT ON TABLE app.notes IS '${tenant}';\n",
    )
    .unwrap();
    std::fs::write(
        more.path().join("V2__notes.sql.conf"),
        "placeholderReplacement=false\n",
    )
    .unwrap();
    let (_c, run) = migrate(&db, more.path(), history);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT obj_description('app.notes'::regclass)"),
        "${tenant}"
    );
}

/// A Flyway project's configuration file, at the repository's root with
/// its migrations in `sql/` (Flyway runs there): its placeholders fill the
/// scripts, and its `schemas` and `table` say where the history is, and so
/// where unqualified names go, as Flyway would have it. The environment
/// wins over the file; a secret is not taken from the file. Before, the
/// file was not read: the placeholder was refused, and the history (and
/// the tables) went to `public.flyway_schema_history`, which the team's
/// Flyway would not read.
#[test]
fn a_flyway_projects_configuration_file_gives_placeholders_and_the_historys_place() {
    let db = Db::fresh();
    let repo = files(&[
        (".git/HEAD", "ref: refs/heads/main\n"),
        (
            "flyway.conf",
            "flyway.url=jdbc:postgresql://localhost/app\nflyway.password=not-read\n\
             flyway.locations=filesystem:sql\nflyway.schemas=app\nflyway.table=schema_version\n\
             flyway.placeholders.tenant=acme\nflyway.placeholders.region=eu\n",
        ),
        (
            "sql/V1__notes.sql",
            "CREATE TABLE notes (id int);\nCOMMENT ON TABLE notes IS '${tenant} in ${region}';\n",
        ),
    ]);
    let dir = repo.path().join("sql");
    let case = Case::new(&format!(
        "{HEAD}phases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: apply\n        migrate:\n          dir: {}\n          history: {{ format: flyway }}\n",
        dir.display()
    ));
    let run = |case: &Case, env: &[(&str, &str)]| {
        let mut c = case.command(&db.url, &[]);
        for (k, v) in env {
            c.env(k, v);
        }
        Run::new(c.output().unwrap(), &case.reports())
    };
    let first = run(&case, &[("FLYWAY_PLACEHOLDERS_REGION", "us")]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        first.stderr.contains("Flyway configuration: ")
            && first
                .stderr
                .contains("flyway.conf (history in app.schema_version, 2 placeholder(s))"),
        "{}",
        first.stderr
    );
    assert_eq!(
        db.sql("SELECT obj_description('app.notes'::regclass)"),
        "acme in us"
    );
    assert_eq!(
        db.sql("SELECT string_agg(version, ',') FROM app.schema_version"),
        "1"
    );
    assert_eq!(
        db.sql("SELECT to_regclass('public.flyway_schema_history') IS NULL"),
        "t"
    );

    // A secret in the file is refused before anything runs; from the
    // environment it is taken, and redacted.
    std::fs::write(
        repo.path().join("flyway.conf"),
        "flyway.locations=filesystem:sql\nflyway.schemas=app\nflyway.table=schema_version\n\
         flyway.placeholders.tenant=acme\nflyway.placeholders.region=eu\n\
         flyway.placeholders.api_token=in-the-file\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("V2__token.sql"),
        "CREATE TABLE tokens (t text DEFAULT '${api_token}');\n",
    )
    .unwrap();
    let refused = run(&case, &[]);
    assert_eq!(refused.code, 5, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("V2__token.sql:1: `${api_token}` takes its value from")
            && refused.stderr.contains("its name says it is a secret")
            && !refused.stderr.contains("in-the-file"),
        "{}",
        refused.stderr
    );
    assert_eq!(db.sql("SELECT to_regclass('app.tokens') IS NULL"), "t");
    let taken = run(&case, &[("FLYWAY_PLACEHOLDERS_API_TOKEN", "from-the-env")]);
    assert_eq!(taken.code, 0, "{}", taken.stderr);
    assert_eq!(
        db.sql("SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'app.tokens'::regclass"),
        "'from-the-env'::text"
    );

    // A database whose Flyway history is in Flyway's default place, not
    // where the file says: refused, not a new history that would run
    // every migration again.
    let other = Db::fresh();
    flyway_table(&other);
    let out = case
        .command(&other.url, &[])
        .env("FLYWAY_PLACEHOLDERS_API_TOKEN", "from-the-env")
        .output()
        .unwrap();
    let refused = Run::new(out, &case.reports());
    // The step's refusal: it changed nothing.
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains(
            "puts Flyway's history in app.schema_version, which this database does not have, and it has one in public.flyway_schema_history"
        ),
        "{}",
        refused.stderr
    );
    assert_eq!(
        other.sql("SELECT to_regclass('app.schema_version') IS NULL"),
        "t"
    );
}

/// A Spring Boot application configures the Flyway it runs at start-up
/// from `spring.flyway.*`, not from a flyway.conf. With
/// `spring.flyway.schemas: delivery` (one schema per service, as many
/// projects have it), runbook made `public.flyway_schema_history` and the
/// tables in `public`: the application, starting, would find no history in
/// `delivery`, and run every migration again there, into empty tables.
/// A database whose schema already holds objects, with no Flyway history
/// yet: Flyway refuses to migrate it, and so does the step, having made
/// nothing. With the project's `baselineOnMigrate`, the step records
/// Flyway's baseline and applies what comes after it, as the application
/// would at start-up; a step that then fails with nothing applied takes
/// the history and its baseline away again. Objects an extension owns do
/// not count.
#[test]
fn a_schema_that_already_holds_objects_gets_flyway_s_start() {
    let db = Db::fresh();
    db.sql("CREATE EXTENSION btree_gist");
    let dir = files(&[("V1__init.sql", INIT), ("V2__add.sql", ADD)]);
    // An extension's objects alone: Flyway's history is made as usual.
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["1", "2"]);

    let db = Db::fresh();
    db.sql(INIT);
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    let error = &run.step("apply")["error"];
    assert_eq!(
        error["message"],
        "schema public already holds objects, and there is no Flyway history (public.flyway_schema_history): Flyway refuses to migrate such a database, and so does this step",
        "{error}"
    );
    assert!(
        error["hint"]
            .as_str()
            .unwrap()
            .contains("runbook migrations baseline"),
        "{error}"
    );
    assert_eq!(
        db.sql("SELECT to_regclass('flyway_schema_history') IS NULL"),
        "t"
    );
    let (_, out, _) = migrations(&["status"], dir.path(), &db.url);
    assert!(
        out.contains(
            "warning: schema public already holds objects, and there is no Flyway history"
        ),
        "{out}"
    );

    // A preflight fails on it, as the step refuses it.
    let check = |db: &Db| {
        let run = Case::new(&format!(
            "{HEAD}phases:\n  - id: preflight\n    kind: preflight\n    steps:\n      - id: pending\n        check: {{ builtin: pending_migrations, dir: {}, max: 5 }}\n",
            dir.path().display()
        ))
        .exec(&db.url, &[]);
        let step = run.step("pending").clone();
        (run.code, step)
    };
    let (code, step) = check(&db);
    assert_eq!(code, 1, "{step}");
    assert!(
        step["check"]["expectations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["target"] == "refused_non_empty_schema" && e["actual"] == 1),
        "{step}"
    );
    // A rehearsal on a copy is refused as the deploy is.
    let (_case, rehearsal) = rehearse_scratch(&db, dir.path(), "");
    assert_eq!(rehearsal.code, 1, "{}", rehearsal.stderr);
    assert!(
        rehearsal.step("rehearse")["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with("Flyway refuses to migrate such a database, and so does this step; the deploy would be refused too"),
        "{}",
        rehearsal.step("rehearse")
    );
    std::fs::write(
        dir.path().join("flyway.conf"),
        "flyway.baselineOnMigrate=true\n",
    )
    .unwrap();
    // The preflight counts what the step will run: after the baseline.
    let (code, step) = check(&db);
    assert_eq!(code, 0, "{step}");
    assert_eq!(
        step["details"]["rows"],
        serde_json::json!([{"version": "2", "file": "V2__add.sql", "out_of_order": false}]),
        "{step}"
    );
    assert!(
        step["details"]["baseline"]
            .as_str()
            .unwrap()
            .contains("at version 1 first"),
        "{step}"
    );
    // And starts where the deploy starts: after the baseline.
    let (_case, rehearsal) = rehearse_scratch(&db, dir.path(), "");
    assert_eq!(rehearsal.code, 0, "{}", rehearsal.stderr);
    let details = &rehearsal.step("rehearse")["details"];
    assert!(
        details["warnings"]
            .to_string()
            .contains("the rehearsal starts, as the deploy does, from a baseline at version 1"),
        "{details}"
    );
    assert_eq!(
        details["migrations"].as_array().map(Vec::len),
        Some(1),
        "{details}"
    );
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["2"]);
    let conf = dir.path().join("flyway.conf").canonicalize().unwrap();
    assert_eq!(
        run.step("apply")["details"]["baselined"],
        serde_json::json!({
            "version": "1",
            "because": format!("baselineOnMigrate ({}:1)", conf.display()),
            "schemas_not_empty": ["public"],
        })
    );
    assert!(
        run.stderr.contains("recorded a baseline at version 1 in public.flyway_schema_history, as Flyway's baselineOnMigrate"),
        "{}",
        run.stderr
    );
    assert_eq!(
        db.sql("SELECT string_agg(type || ' ' || version || ' ' || script, ', ' ORDER BY installed_rank) FROM flyway_schema_history"),
        "BASELINE 1 << Flyway Baseline >>, SQL 2 V2__add.sql"
    );
    // The report says it where people read.
    let report = std::fs::read_to_string(run.dir.join("report.md")).unwrap();
    assert!(
        report.contains("  - Flyway baseline recorded at version 1 (baselineOnMigrate ("),
        "{report}"
    );

    // The first after the baseline fails on what is there: nothing of it
    // stays, the history and its baseline neither.
    let db = Db::fresh();
    db.sql(&format!("{INIT}{ADD}"));
    std::fs::write(
        &conf,
        "flyway.baselineOnMigrate=true\nflyway.baselineVersion=1\nflyway.baselineDescription=adopted\n",
    )
    .unwrap();
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("nothing was changed"), "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT to_regclass('flyway_schema_history') IS NULL"),
        "t"
    );
}

/// An application whose Flyway reads several locations into one history
/// (`common` and `{vendor}`, a layout many Spring services use): a step
/// on one of them deploys every location's migrations in one version
/// order, as Flyway does, and the history names each script within its
/// location, as Flyway names it. A location not found here is said.
#[test]
fn every_location_of_an_application_s_flyway_is_deployed_together() {
    let db = Db::fresh();
    let repo = files(&[
        (".git/HEAD", "ref: refs/heads/main\n"),
        (
            "src/main/resources/application.properties",
            "spring.flyway.locations=classpath:db/migration/common, classpath:db/migration/{vendor},classpath:db/seed\n",
        ),
        ("src/main/resources/db/migration/common/V1__users.sql", INIT),
        (
            "src/main/resources/db/migration/common/V3__orders.sql",
            "CREATE TABLE orders (id int, user_id int);\n",
        ),
        (
            "src/main/resources/db/migration/postgresql/pg/V2__users_brin.sql",
            "CREATE INDEX users_brin ON users USING brin (id);\n",
        ),
    ]);
    let dir = repo.path().join("src/main/resources/db/migration/common");
    let (_case, run) = migrate(&db, &dir, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["1", "2", "3"]);
    assert!(
        run.stderr
            .contains("(also the migrations of its other location(s) ../postgresql)"),
        "{}",
        run.stderr
    );
    assert!(
        run.step("apply")["details"]["warnings"].to_string().contains(
            "Flyway's location `classpath:db/seed` is not found here, and its migrations are not read"
        ),
        "{}",
        run.step("apply")["details"]
    );
    assert_eq!(
        db.sql("SELECT string_agg(version || ' ' || script, ', ' ORDER BY installed_rank) FROM flyway_schema_history"),
        "1 V1__users.sql, 2 pg/V2__users_brin.sql, 3 V3__orders.sql"
    );
    // The other location's directory reads the same: nothing is pending.
    let (code, out, err) = migrations(
        &["status"],
        &repo
            .path()
            .join("src/main/resources/db/migration/postgresql"),
        &db.url,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.matches("  applied  ").count(), 3, "{out}");
}

#[test]
fn a_spring_application_s_flyway_settings_place_the_history_and_fill_placeholders() {
    let db = Db::fresh();
    let repo = files(&[
        (".git/HEAD", "ref: refs/heads/main\n"),
        (
            "src/main/resources/application.yml",
            "spring:\n  application:\n    name: delivery\n  flyway:\n    schemas: delivery\n    \
             default-schema: ${DELIVERY_SCHEMA:delivery}\n    placeholders:\n      tenant: acme\n\
             ---\nspring:\n  config:\n    activate:\n      on-profile: test\n  flyway:\n    \
             default-schema: test_only\n",
        ),
        (
            "src/main/resources/db/migration/V1__notes.sql",
            "CREATE TABLE notes (id int);\nCOMMENT ON TABLE notes IS '${tenant}';\n",
        ),
    ]);
    let dir = repo.path().join("src/main/resources/db/migration");
    let (code, out, err) = migrations(&["status"], &dir, &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("flyway history in delivery.flyway_schema_history"),
        "{out}"
    );
    let (_case, run) = migrate(&db, &dir, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "application.yml (history in delivery.flyway_schema_history, 1 placeholder(s))"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(
        db.sql("SELECT obj_description('delivery.notes'::regclass)"),
        "acme"
    );
    // The test profile's own schema is said, with what deploys there.
    assert!(
        run.step("apply")["details"]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("a profile's `spring.flyway.default-schema` is `test_only`: an application started with that profile keeps Flyway's history in test_only.flyway_schema_history, where this step uses delivery.flyway_schema_history"),
        "{}",
        run.step("apply")["details"]
    );
    assert_eq!(
        db.sql("SELECT string_agg(version, ',') FROM delivery.flyway_schema_history"),
        "1"
    );
    assert_eq!(
        db.sql("SELECT to_regclass('public.notes') IS NULL AND to_regclass('public.flyway_schema_history') IS NULL"),
        "t"
    );

    // Settings for another location, or with Flyway turned off, are not
    // this directory's: it migrates as before, in `public`.
    std::fs::write(dir.join("V1__notes.sql"), "CREATE TABLE notes (id int);\n").unwrap();
    for settings in [
        "spring.flyway.locations=classpath:db/other\nspring.flyway.schemas=elsewhere\n",
        "spring.flyway.enabled=false\nspring.flyway.schemas=elsewhere\n",
    ] {
        let db = Db::fresh();
        std::fs::write(
            repo.path()
                .join("src/main/resources/application.properties"),
            settings,
        )
        .unwrap();
        std::fs::remove_file(repo.path().join("src/main/resources/application.yml")).ok();
        let (_case, run) = migrate(&db, &dir, "");
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(
            db.sql("SELECT to_regclass('public.flyway_schema_history') IS NOT NULL"),
            "t",
            "{settings}"
        );
    }

    // A multi-module project: the migrations in one module, the
    // application's configuration in another (both on its classpath when
    // it runs).
    let db = Db::fresh();
    let repo = files(&[
        (".git/HEAD", "ref: refs/heads/main\n"),
        (
            "app-core/src/main/resources/application.properties",
            "spring.flyway.schemas=delivery\n",
        ),
        (
            "infra-database/src/main/resources/db/migration/V1__notes.sql",
            "CREATE TABLE notes (id int);\n",
        ),
    ]);
    let dir = repo
        .path()
        .join("infra-database/src/main/resources/db/migration");
    let (_case, run) = migrate(&db, &dir, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT to_regclass('delivery.notes') IS NOT NULL AND to_regclass('delivery.flyway_schema_history') IS NOT NULL"),
        "t"
    );
    // Two applications that configure Flyway: neither is read, and the
    // step says so.
    let db = Db::fresh();
    std::fs::create_dir_all(repo.path().join("admin/src/main/resources")).unwrap();
    std::fs::write(
        repo.path()
            .join("admin/src/main/resources/application.properties"),
        "spring.flyway.schemas=admin\n",
    )
    .unwrap();
    let (_case, run) = migrate(&db, &dir, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.step("apply")["details"]["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("several modules of this repository configure an application's Flyway"),
        "{}",
        run.step("apply")["details"]
    );
    assert_eq!(
        db.sql("SELECT to_regclass('public.notes') IS NOT NULL"),
        "t"
    );
}

/// A placeholder of the team's own takes its value from
/// `FLYWAY_PLACEHOLDERS_<NAME>`, where Flyway's command line takes it,
/// whatever the case of the name; the checksum stays that of the text as
/// written. A value whose name says it is a secret is redacted wherever a
/// filled-in script carries it.
#[test]
fn a_teams_own_flyway_placeholder_takes_its_value_from_the_environment_as_flyway_does() {
    let db = Db::fresh();
    const V1: &str = "CREATE TABLE notes (id int);\nCOMMENT ON TABLE notes IS '${tenant}';\n";
    const V2: &str = "SELECT '${appPassword}'::int;\n";
    let dir = files(&[("V1__notes.sql", V1)]);
    let case = Case::new(&format!(
        "{HEAD}phases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: apply\n        migrate:\n          dir: {}\n          history: {{ format: flyway }}\n",
        dir.path().display()
    ));
    let with_env = |case: &Case| {
        let out = case
            .command(&db.url, &[])
            .env("FLYWAY_PLACEHOLDERS_TENANT", "acme")
            .env(
                "FLYWAY_PLACEHOLDERS_APPPASSWORD",
                "s3cret-placeholder-value",
            )
            // A variable that is not UTF-8 is passed over, not a panic.
            .env(
                "FLYWAY_PLACEHOLDERS_BYTES",
                <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"\xff"),
            )
            .output()
            .unwrap();
        Run::new(out, &case.reports())
    };
    let run = with_env(&case);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.sql("SELECT obj_description('notes'::regclass)"), "acme");
    assert_eq!(
        db.sql("SELECT checksum FROM flyway_schema_history WHERE version = '1'"),
        runbook::migrations::flyway_checksum(V1).to_string()
    );
    // The server's error quotes the filled-in value: redacted.
    std::fs::write(dir.path().join("V2__check.sql"), V2).unwrap();
    let run = with_env(&case);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report = std::fs::read_to_string(case.reports().join("report.json")).unwrap();
    for out in [&run.stderr, &run.stdout, &report] {
        assert!(!out.contains("s3cret-placeholder-value"), "{out}");
    }
    assert!(
        run.step("apply")["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[REDACTED]"),
        "{}",
        run.step("apply")["error"]
    );
}

/// A rehearsal runs each repeatable migration after the versioned ones,
/// then again, as Flyway does whenever its file changes: one that cannot
/// run twice, or that adds rows each time, fails; one that can is
/// `forward_only` (it has no down), never `ok`.
#[test]
fn a_rehearsal_runs_each_flyway_repeatable_twice() {
    let db = Db::fresh();
    let dir = files(&[
        (
            "V1__init.sql",
            "CREATE TABLE users (id bigint PRIMARY KEY);\nCREATE TABLE tags (name text);\n",
        ),
        ("U1__init.sql", "DROP TABLE users, tags;\n"),
        (
            "R__good.sql",
            "CREATE OR REPLACE VIEW users_v AS SELECT id FROM users;\n",
        ),
        (
            "R__not_again.sql",
            "CREATE VIEW tags_v AS SELECT name FROM tags;\n",
        ),
        ("R__seeds.sql", "INSERT INTO tags (name) VALUES ('new');\n"),
        // Flyway's prefix is case-sensitive: ignored, and report.md says so.
        ("v2__lower_case.sql", "DROP TABLE users;\n"),
    ]);
    let (_c, run) = rehearse_scratch(&db, dir.path(), "          history: { format: runbook }\n");
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("only Flyway's history records them"),
        "refused before anything ran: {}",
        run.stderr
    );
    let (_c, run) = rehearse_scratch(&db, dir.path(), "");
    assert_eq!(run.code, 3, "{}", run.stderr);
    let list = run.step("rehearse")["details"]["migrations"].clone();
    let verdicts = pairs(&list, "name", "verdict");
    assert_eq!(
        verdicts,
        [
            "init ok",
            "good forward_only",
            "not again reup_failure",
            "seeds reup_failure"
        ]
    );
    assert!(
        list[2].to_string().contains("applied again, it failed"),
        "{list}"
    );
    assert!(
        list[3]
            .to_string()
            .contains("public.tags: 1 rows after its first run, 2 after the second"),
        "{list}"
    );
    let report = std::fs::read_to_string(run.dir.join("report.md")).unwrap();
    assert!(report.contains("| repeatable | good |"), "{report}");
    assert!(
        report.contains("- warning: v2__lower_case.sql is not named like a Flyway migration"),
        "{report}"
    );
}

#[test]
fn a_flyway_baseline_counts_every_version_up_to_it() {
    let db = Db::fresh();
    let dir = files(&[
        ("V1__init.sql", INIT),
        ("V2__add.sql", ADD),
        ("V3__more.sql", "CREATE TABLE more (id int);\n"),
    ]);
    db.sql(&format!("{INIT}{ADD}"));
    let (code, out, err) = migrations(
        &[
            "baseline",
            "--version",
            "2",
            "--history-format",
            "flyway",
            "--as",
            "dba",
            "--yes",
        ],
        dir.path(),
        &db.url,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        db.sql("SELECT version || ' ' || type || ' ' || description || ' ' || (installed_by LIKE 'baseline/dba@%') FROM flyway_schema_history"),
        "2 BASELINE << Flyway Baseline >> true"
    );
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["3"]);
}

#[test]
fn a_no_transaction_script_of_several_statements_is_all_or_nothing_as_its_tool_sends_it() {
    // dbmate sends a `transaction:false` section as one query, which
    // PostgreSQL runs as one transaction: when its second statement fails,
    // the first is undone and no row is written.
    let db = Db::fresh();
    db.sql(&format!(
        "{INIT} CREATE TABLE IF NOT EXISTS schema_migrations (version varchar(128) PRIMARY KEY);"
    ));
    let dbmate = files(&[(
        "20240101000000_add.sql",
        "-- migrate:up transaction:false\nALTER TABLE users ADD COLUMN nick text;\nSELECT 1 / 0;\n-- migrate:down\nALTER TABLE users DROP COLUMN nick;\n",
    )]);
    let (_case, run) = migrate(&db, dbmate.path(), "");
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("division by zero"), "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'nick'"),
        "0",
        "the failed script changed nothing, as under dbmate"
    );
    assert_eq!(db.sql("SELECT count(*) FROM schema_migrations"), "0");

    // A statement that cannot run in a transaction fails in that one
    // query, unless it is alone: refused before anything runs.
    let diesel = files(&[
        ("2024-01-01-000000_init/up.sql", INIT),
        ("2024-01-01-000000_init/down.sql", "DROP TABLE users;\n"),
        (
            "2024-01-02-000000_index/up.sql",
            "ALTER TABLE users ADD COLUMN nick text;\nCREATE INDEX CONCURRENTLY users_nick ON users (nick);\n",
        ),
        (
            "2024-01-02-000000_index/down.sql",
            "DROP INDEX users_nick;\n",
        ),
        (
            "2024-01-02-000000_index/metadata.toml",
            "run_in_transaction = false\n",
        ),
    ]);
    let db = Db::fresh();
    let (_case, run) = migrate(&db, diesel.path(), "");
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("2024-01-02-000000_index/up.sql:2: Diesel sends this script")
            && run.stderr.contains("`CREATE INDEX CONCURRENTLY on users`")
            && run
                .stderr
                .contains("help: move that statement to a migration of its own"),
        "{}",
        run.stderr
    );
    assert_eq!(db.sql("SELECT to_regclass('users') IS NULL"), "t");
    // Alone, it runs outside a transaction, as Diesel runs it.
    std::fs::write(
        diesel.path().join("2024-01-02-000000_index/up.sql"),
        "CREATE INDEX CONCURRENTLY users_name ON users (id);\n",
    )
    .unwrap();
    let (_case, run) = migrate(&db, diesel.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.sql("SELECT to_regclass('users_name') IS NOT NULL"), "t");
}

#[test]
fn a_script_the_history_tool_would_run_in_a_transaction_and_fail_is_warned_of() {
    // goose wraps a script in a transaction unless it says NO TRANSACTION,
    // and CONCURRENTLY fails there; runbook runs it statement by
    // statement, and says that goose would not.
    let goose_history = "CREATE TABLE goose_db_version (id serial NOT NULL, version_id bigint NOT NULL, is_applied boolean NOT NULL, tstamp timestamp NULL default now(), PRIMARY KEY(id));
         INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true);";
    let index = "CREATE INDEX CONCURRENTLY users_id ON users (id);\n";
    let dir = owned(&[
        (
            "00001_init.sql",
            format!("-- +goose Up\n{INIT}-- +goose Down\nDROP TABLE users;\n"),
        ),
        (
            "00002_index.sql",
            format!("-- +goose Up\n{ADD}{index}-- +goose Down\nDROP INDEX users_id;\n{DROP_ADD}"),
        ),
    ]);
    let db = Db::fresh();
    db.sql(goose_history);
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let warnings = run.step("apply")["details"]["warnings"].clone();
    assert_eq!(
        warnings,
        serde_json::json!([
            "00002_index.sql:3: goose would fail this script, as it runs it in a transaction: statement 2 (CREATE INDEX CONCURRENTLY on users): CREATE INDEX CONCURRENTLY cannot run inside a transaction block; runbook runs it statement by statement, each committing on its own"
        ]),
    );
    let report = std::fs::read_to_string(run.dir.join("report.md")).unwrap();
    assert!(report.contains("goose would fail this script"), "{report}");
    // On a new database (runbook's own history, as a CI rehearsal has it),
    // the files are goose's all the same.
    let db = Db::fresh();
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let new = &run.step("apply")["details"]["warnings"];
    assert_eq!(new[0], warnings[0], "{new}");
    assert!(
        new[1]
            .as_str()
            .unwrap()
            .starts_with("goose's own history table is not made"),
        "{new}"
    );
    // A rehearsal of them fails that migration: `tool_failure`, an error
    // by default, rather than an `ok` for what goose would not deploy.
    let db = Db::fresh();
    let (_case, run) = rehearse_scratch(&db, dir.path(), "");
    assert_eq!(run.code, 3, "{}", run.stderr);
    let details = &run.step("rehearse")["details"];
    let verdicts = verdict_list(details);
    assert_eq!(verdicts, ["ok", "tool_failure"], "{details}");
    assert!(
        details["migrations"][1]["findings"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("00002_index.sql:3: goose would fail this script"),
        "{details}"
    );
    assert_eq!(
        details["warnings"],
        serde_json::json!([]),
        "said once, as the verdict"
    );

    // Marked as goose marks it: goose runs it statement by statement too.
    let marked = owned(&[
        (
            "00001_init.sql",
            format!("-- +goose Up\n{INIT}-- +goose Down\nDROP TABLE users;\n"),
        ),
        (
            "00002_index.sql",
            format!(
                "-- +goose NO TRANSACTION\n-- +goose Up\n{ADD}{index}-- +goose Down\nDROP INDEX users_id;\n"
            ),
        ),
    ]);
    let db = Db::fresh();
    db.sql(goose_history);
    let (_case, run) = migrate(&db, marked.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.step("apply")["details"]["warnings"].is_null(),
        "{}",
        run.step("apply")["details"]
    );

    // golang-migrate sends the file as one query: CONCURRENTLY alone runs,
    // beside another statement it fails. With runbook's own history,
    // runbook is the one that runs them: nothing to warn of.
    let pairs = owned(&[
        ("1_init.up.sql", INIT.to_string()),
        ("1_init.down.sql", "DROP TABLE users;\n".into()),
        ("2_alone.up.sql", index.into()),
        ("2_alone.down.sql", "DROP INDEX users_id;\n".into()),
        (
            "3_beside.up.sql",
            format!("{ADD}CREATE INDEX CONCURRENTLY users_email ON users (email);\n"),
        ),
        (
            "3_beside.down.sql",
            format!("DROP INDEX users_email;\n{DROP_ADD}"),
        ),
    ]);
    let db = Db::fresh();
    let (_case, run) = migrate(
        &db,
        pairs.path(),
        "          history: { format: golang-migrate }\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let warnings = run.step("apply")["details"]["warnings"].to_string();
    assert!(
        warnings.contains(
            "3_beside.up.sql:2: golang-migrate would fail this script, as it sends it as one query"
        ) && !warnings.contains("2_alone"),
        "{warnings}"
    );
    let db = Db::fresh();
    let (_case, run) = migrate(&db, pairs.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.step("apply")["details"]["warnings"].is_null());
}

#[test]
fn a_down_the_tool_would_fail_is_the_down_checks_failure_in_junit() {
    // The up is fine under goose; the down is not (CONCURRENTLY without
    // NO TRANSACTION). JUnit files it under the migration's "down" check,
    // and the up check passes, since goose deploys the up.
    let dir = owned(&[
        (
            "00001_init.sql",
            format!("-- +goose Up\n{INIT}-- +goose Down\nDROP TABLE users;\n"),
        ),
        (
            "00002_index.sql",
            "-- +goose Up\nCREATE INDEX users_id ON users (id);\n-- +goose Down\nDROP INDEX CONCURRENTLY users_id;\n".into(),
        ),
    ]);
    let db = Db::fresh();
    let case = Case::new(&format!(
        "{HEAD}phases:\n  - id: verify\n    kind: verify\n    steps:\n      - id: rehearse\n        rehearse:\n          dir: {}\n          scratch: true\n",
        dir.path().display()
    ));
    let junit = case.dir.path().join("junit.xml");
    let run = case.exec(&db.url, &["--junit", junit.to_str().unwrap()]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let details = &run.step("rehearse")["details"];
    let finding = &details["migrations"][1]["findings"][0];
    assert_eq!(finding["verdict"], "tool_failure", "{details}");
    assert_eq!(finding["leg"], "down", "{details}");
    let xml = std::fs::read_to_string(junit).unwrap();
    let case_of = |name: &str| {
        let at = xml
            .find(&format!("name=\"00002_index {name}\""))
            .unwrap_or_else(|| panic!("{xml}"));
        let rest = &xml[at..];
        // To the end of the case, or of its first element inside.
        let end = ["</testcase>", "/>"]
            .iter()
            .filter_map(|e| rest.find(e))
            .min()
            .unwrap();
        rest[..end].to_string()
    };
    assert!(!case_of("up").contains("<failure"), "{xml}");
    assert!(
        case_of("down").contains("<failure") && case_of("down").contains("type=\"tool_failure\""),
        "{xml}"
    );
}

#[test]
fn single_transaction_applies_all_of_the_migrations_or_none() {
    let db = Db::fresh();
    let dir = files(&[
        ("1_init.up.sql", INIT),
        ("1_init.down.sql", "DROP TABLE users;\n"),
        ("2_add.up.sql", ADD),
        ("2_add.down.sql", DROP_ADD),
        (
            "3_seed.up.sql",
            "INSERT INTO users (id, email) VALUES (1, 'a'), (1, 'b');\n",
        ),
        ("3_seed.down.sql", "DELETE FROM users;\n"),
    ]);
    let single = "          single_transaction: true\n";
    let (_case, run) = migrate(&db, dir.path(), single);
    // Nothing was changed, so nothing is rolled back: 1, not 2.
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("failed; nothing was changed"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("migration 3 (seed): duplicate key value")
            && run.stderr.contains("nothing was applied: the step's one transaction was rolled back, with the 2 migration(s) before this one"),
        "{}",
        run.stderr
    );
    let details = &run.step("apply")["details"];
    assert_eq!(details["applied"], serde_json::json!([]));
    assert_eq!(details["rolled_back"].as_array().unwrap().len(), 2);
    assert_eq!(
        db.sql(
            "SELECT to_regclass('users') IS NULL AND (SELECT count(*) FROM runbook_migrations) = 0"
        ),
        "t",
        "none of the three is applied, nor recorded"
    );
    // The step changed nothing, so no down runs for the first two.
    assert!(!run.stderr.contains("rolling back 2"), "{}", run.stderr);

    std::fs::write(
        dir.path().join("3_seed.up.sql"),
        "INSERT INTO users (id, email) VALUES (1, 'a'), (2, 'b');\n",
    )
    .unwrap();
    let (_case, run) = migrate(&db, dir.path(), single);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["1", "2", "3"]);
    assert_eq!(db.sql("SELECT count(*) FROM users"), "2");
    assert_eq!(db.sql("SELECT count(*) FROM runbook_migrations"), "3");

    // A script that cannot run in a transaction is refused before anything runs.
    std::fs::write(
        dir.path().join("4_index.up.sql"),
        "CREATE INDEX CONCURRENTLY users_email ON users (email);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("4_index.down.sql"),
        "DROP INDEX users_email;\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("5_more.up.sql"),
        "CREATE TABLE more (id int);\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("5_more.down.sql"), "DROP TABLE more;\n").unwrap();
    let (_case, run) = migrate(&db, dir.path(), single);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("migration 4 (index) cannot run in a transaction (statement 1 (CREATE INDEX CONCURRENTLY on users)"),
        "{}",
        run.stderr
    );
    assert_eq!(
        db.sql("SELECT to_regclass('more') IS NULL AND to_regclass('users_email') IS NULL"),
        "t"
    );
}

#[test]
fn dbmate_and_goose_histories_list_versions() {
    let db = Db::fresh();
    let dbmate = files(&[
        (
            "20240101000000_init.sql",
            &format!("-- migrate:up\n{INIT}\n-- migrate:down\nDROP TABLE users;\n"),
        ),
        (
            "20240102000000_add.sql",
            &format!("-- migrate:up\n{ADD}\n-- migrate:down\n{DROP_ADD}"),
        ),
    ]);
    // dbmate's postgres driver.
    db.sql(&format!("{INIT} CREATE TABLE IF NOT EXISTS schema_migrations (version varchar(128) PRIMARY KEY); INSERT INTO schema_migrations (version) VALUES ('20240101000000');"));
    let (code, out, err) = migrations(&["status"], dbmate.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("dbmate history in public.schema_migrations (detected)"),
        "{out}"
    );
    let (_case, run) = migrate(&db, dbmate.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["20240102000000"]);
    assert_eq!(
        db.sql("SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations"),
        "20240101000000,20240102000000"
    );

    let db = Db::fresh();
    let goose = files(&[
        (
            "00001_init.sql",
            &format!("-- +goose Up\n{INIT}\n-- +goose Down\nDROP TABLE users;\n"),
        ),
        (
            "00002_add.sql",
            &format!("-- +goose Up\n{ADD}\n-- +goose Down\n{DROP_ADD}"),
        ),
    ]);
    // goose's table, with its own version-0 row, then an up and (older goose) a down and an up again.
    db.sql(&format!(
        "{INIT} CREATE TABLE goose_db_version (id serial NOT NULL, version_id bigint NOT NULL, is_applied boolean NOT NULL, tstamp timestamp NULL default now(), PRIMARY KEY(id));
         INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true), (1, true), (1, false), (1, true);"
    ));
    let (code, out, err) = migrations(&["status"], goose.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(states(&out), ["00001 applied", "00002 pending"]);
    let (_case, run) = migrate(&db, goose.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["00002"]);
    let (_c, run) = migrate(
        &db,
        goose.path(),
        "          direction: down\n          to: 0\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT string_agg(version_id::text, ',' ORDER BY id) FROM goose_db_version"),
        "0"
    );
}

/// The registry tables sqitch's pg engine creates (the ones read here),
/// and project `flipr`.
const SQITCH_REGISTRY: &str = "CREATE SCHEMA IF NOT EXISTS sqitch;
    CREATE TABLE IF NOT EXISTS sqitch.projects (project TEXT PRIMARY KEY, uri TEXT NULL UNIQUE, created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(), creator_name TEXT NOT NULL, creator_email TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS sqitch.changes (change_id TEXT PRIMARY KEY, script_hash TEXT NULL, change TEXT NOT NULL, project TEXT NOT NULL REFERENCES sqitch.projects(project) ON UPDATE CASCADE, note TEXT NOT NULL DEFAULT '', committed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(), committer_name TEXT NOT NULL, committer_email TEXT NOT NULL, planned_at TIMESTAMPTZ NOT NULL, planner_name TEXT NOT NULL, planner_email TEXT NOT NULL, UNIQUE(project, script_hash));
    INSERT INTO sqitch.projects (project, creator_name, creator_email) VALUES ('flipr', 'Ann', 'ann@example.com') ON CONFLICT DO NOTHING;";

#[test]
fn sqitch_registry_is_read_and_its_script_hash_checked_but_never_written() {
    let db = Db::fresh();
    let deploy = "BEGIN;\nCREATE TABLE flips (id bigint);\nCOMMIT;\n";
    let dir = files(&[
        (
            "sqitch.plan",
            "%syntax-version=1.0.0\n%project=flipr\n\nusers 2024-01-01T00:00:00Z Ann <ann@example.com> # users\nflips [users] 2024-01-02T00:00:00Z Ann <ann@example.com>\n",
        ),
        ("deploy/users.sql", INIT),
        ("revert/users.sql", "DROP TABLE users;\n"),
        ("deploy/flips.sql", deploy),
        ("revert/flips.sql", "DROP TABLE flips;\n"),
    ]);
    db.sql(&format!(
        "{INIT} {SQITCH_REGISTRY}
         INSERT INTO sqitch.changes (change_id, script_hash, change, project, committer_name, committer_email, planned_at, planner_name, planner_email)
         VALUES ('0f1a', '{}', 'users', 'flipr', 'Ann', 'ann@example.com', '2024-01-01', 'Ann', 'ann@example.com');",
        runbook::migrations::sqitch_hash(INIT)
    ));
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("(sqitch format, sqitch history in sqitch.changes (detected))"),
        "{out}"
    );
    assert_eq!(states(&out), ["0001 applied", "0002 pending"]);
    // Deploying stays with sqitch.
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.step("apply")["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not write it")
    );
    assert_eq!(db.sql("SELECT to_regclass('flips') IS NULL"), "t");
    std::fs::write(
        dir.path().join("deploy/users.sql"),
        "CREATE TABLE users (id int);\n",
    )
    .unwrap();
    let (code, out, _) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("applied with SHA-1"), "{out}");

    // A script saved with a byte-order mark: psql, which sqitch runs it
    // with, reads it without the mark, and sqitch hashes the file as it is.
    // Before, runbook sent the mark and PostgreSQL failed on it.
    let marked = format!("\u{feff}{INIT}");
    std::fs::write(dir.path().join("deploy/users.sql"), &marked).unwrap();
    db.sql(&format!(
        "UPDATE sqitch.changes SET script_hash = '{}'",
        runbook::migrations::sqitch_hash(&marked)
    ));
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(states(&out), ["0001 applied", "0002 pending"]);
    let (_case, run) = rehearse_scratch(&Db::fresh(), dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.step("rehearse")["details"]["verdicts"],
        serde_json::json!({"ok": 2})
    );
}

#[test]
fn two_tools_histories_and_no_word_on_which_is_refused() {
    let db = Db::fresh();
    let dir = files(&[("20240101000000_init.up.sql", INIT)]);
    knex_tables(&db);
    flyway_table(&db);
    let (case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    let error = &run.step("apply")["error"];
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("several migration histories"),
        "{error}"
    );
    assert_eq!(
        db.sql("SELECT to_regclass('users') IS NULL"),
        "t",
        "nothing ran"
    );
    drop(case);
    let (_case, run) = migrate(&db, dir.path(), "          history: { format: knex }\n");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.sql("SELECT count(*) FROM knex_migrations"), "1");
    // A table named as another tool's is refused before anything runs.
    let (_case, run) = migrate(
        &db,
        dir.path(),
        "          history: { format: goose, table: public.knex_migrations }\n",
    );
    assert_eq!(run.code, 1);
    assert!(
        run.step("apply")["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is not a goose history table (its columns are knex's)")
    );
    // `before_run` needs a history that records runs.
    let (_case, run) = migrate(
        &db,
        dir.path(),
        "          history: { format: knex }\n          direction: down\n          to: before_run\n",
    );
    assert_eq!(run.code, 1);
    assert!(
        run.step("apply")["error"]["message"]
            .as_str()
            .unwrap()
            .contains("before_run")
    );
    assert_eq!(db.sql("SELECT to_regclass('users') IS NOT NULL"), "t");
}

/// A database migrated by a tool whose history runbook does not read
/// (Alembic's alembic_version) already has its migration. Detection found
/// nothing, so runbook started its own history and ran the migration
/// again: its INSERT doubled the rows. Now that is refused before anything
/// runs, with the table named, until a baseline records what the database
/// has or the runbook says its own history is meant.
#[test]
fn a_history_runbook_cannot_read_is_refused_not_run_again() {
    let db = Db::fresh();
    db.sql(
        "CREATE TABLE a (id int); INSERT INTO a VALUES (1);\
         CREATE TABLE alembic_version (version_num varchar(32) NOT NULL PRIMARY KEY);\
         INSERT INTO alembic_version VALUES ('3f2a')",
    );
    let dir = files(&[(
        "001_a.up.sql",
        "CREATE TABLE IF NOT EXISTS a (id int);\nINSERT INTO a VALUES (1);\n",
    )]);
    let (case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    let error = &run.step("apply")["error"];
    assert!(
        error["message"].as_str().unwrap().contains(
            "records its migrations in public.alembic_version (Alembic), which runbook does not read"
        ),
        "{error}"
    );
    assert!(
        error["hint"]
            .as_str()
            .unwrap()
            .contains("runbook migrations baseline"),
        "{error}"
    );
    assert_eq!(db.sql("SELECT count(*) FROM a"), "1", "nothing ran");
    assert_eq!(
        db.sql("SELECT to_regclass('runbook_migrations') IS NULL"),
        "t"
    );
    drop(case);
    let (code, _, stderr) = migrations(&["status"], dir.path(), &db.url);
    assert_ne!(code, 0);
    assert!(stderr.contains("alembic_version (Alembic)"), "{stderr}");

    // A baseline records the migration in runbook's history; then migrate
    // has nothing to run.
    let (code, _, stderr) = migrations(
        &["baseline", "--version", "001", "--yes"],
        dir.path(),
        &db.url,
    );
    assert_eq!(code, 0, "{stderr}");
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.sql("SELECT count(*) FROM a"), "1");

    // A known table name with columns no tool runbook reads has (Ecto's
    // schema_migrations) is refused the same way.
    let db = Db::fresh();
    db.sql("CREATE TABLE schema_migrations (version bigint PRIMARY KEY, inserted_at timestamp)");
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.step("apply")["error"]["message"]
            .as_str()
            .unwrap()
            .contains("public.schema_migrations (a tool runbook does not know; its columns are version, inserted_at)"),
        "{}",
        run.step("apply")["error"]
    );
    // Saying which history is meant goes on with runbook's own.
    let (_case, run) = migrate(&db, dir.path(), "          history: { format: runbook }\n");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.sql("SELECT count(*) FROM a"), "1");

    // tern keeps one row, the newest version: it is read as tern's (every
    // migration up to it is applied), not as dbmate's list of versions,
    // which would run every older migration again.
    let db = Db::fresh();
    db.sql("CREATE TABLE a (id int); INSERT INTO a VALUES (1);\
            CREATE TABLE schema_version (version int4 NOT NULL); INSERT INTO schema_version VALUES (1)");
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.step("apply")["details"]["history_format"], "tern");
    assert_eq!(applied(&run), Vec::<String>::new());
    assert_eq!(db.sql("SELECT count(*) FROM a"), "1", "nothing ran again");
    // Refinery's history is read for Refinery's files (`V1__name.sql`)
    // only: these, Refinery would never have run.
    let db = Db::fresh();
    db.sql("CREATE TABLE refinery_schema_history (version int4 PRIMARY KEY, name varchar(255), applied_on varchar(255), checksum varchar(255))");
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.step("apply")["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Refinery runs only files named `V<integer>__name.sql`, and this database's history is Refinery's"),
        "{}",
        run.step("apply")["error"]
    );
    assert_eq!(
        db.sql("SELECT to_regclass('a') IS NULL"),
        "t",
        "nothing ran"
    );
    // Flyway 4 and older kept its history under that name: read as Flyway's.
    let db = Db::fresh();
    db.sql(
        "CREATE TABLE schema_version (installed_rank int NOT NULL PRIMARY KEY, version varchar(50), description varchar(200) NOT NULL, type varchar(20) NOT NULL, script varchar(1000) NOT NULL, checksum int, installed_by varchar(100) NOT NULL, installed_on timestamp NOT NULL DEFAULT now(), execution_time int NOT NULL, success boolean NOT NULL)",
    );
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("flyway history in public.schema_version (detected)"),
        "{out}"
    );
}

/// Diesel's table, from its `setup_migration_table.sql`.
const DIESEL_TABLE: &str = "CREATE TABLE IF NOT EXISTS __diesel_schema_migrations (
       version VARCHAR(50) PRIMARY KEY NOT NULL,
       run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);";

#[test]
fn a_diesel_history_is_read_and_continued_in_diesels_order() {
    let db = Db::fresh();
    let dir = files(&[
        ("2019-01-01-000000_init/up.sql", INIT),
        ("2019-01-01-000000_init/down.sql", "DROP TABLE users;\n"),
        // Later as a number, earlier as Diesel's text: it runs second.
        (
            "2026-01-01-000000_index/up.sql",
            "CREATE INDEX CONCURRENTLY users_email ON users (email);\n",
        ),
        (
            "2026-01-01-000000_index/down.sql",
            "DROP INDEX CONCURRENTLY users_email;\n",
        ),
        (
            "2026-01-01-000000_index/metadata.toml",
            "run_in_transaction = false\n",
        ),
        ("2025-11-19-091444-0000_add/up.sql", ADD),
        ("2025-11-19-091444-0000_add/down.sql", DROP_ADD),
    ]);
    db.sql(&format!(
        "{INIT} {DIESEL_TABLE} INSERT INTO __diesel_schema_migrations (version) VALUES ('20190101000000');"
    ));
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            "(diesel format, diesel history in public.__diesel_schema_migrations (detected))"
        ),
        "{out}"
    );
    assert_eq!(
        states(&out),
        [
            "20190101000000 applied",
            "202511190914440000 pending",
            "20260101000000 pending"
        ]
    );
    // `to:` as Diesel orders: the shorter version comes after it.
    let (_case, run) = migrate(&db, dir.path(), "          to: \"202511190914440000\"\n");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["202511190914440000"]);
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["20260101000000"]);
    assert_eq!(
        run.step("apply")["details"]["applied"][0]["transaction"],
        false,
        "{}",
        run.step("apply")
    );
    assert_eq!(
        db.sql("SELECT string_agg(version, ',' ORDER BY version) FROM __diesel_schema_migrations"),
        "20190101000000,202511190914440000,20260101000000"
    );
    let (_case, run) = migrate(
        &db,
        dir.path(),
        "          direction: down\n          steps: 1\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["20260101000000"]);
    assert_eq!(
        db.sql("SELECT string_agg(version, ',' ORDER BY version) || ' ' || (to_regclass('users_email') IS NULL) FROM __diesel_schema_migrations"),
        "20190101000000,202511190914440000 true"
    );
}

/// SQLx's table, from its PostgreSQL migrator.
const SQLX_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
    success BOOLEAN NOT NULL,
    checksum BYTEA NOT NULL,
    execution_time BIGINT NOT NULL
);";

#[test]
fn a_sqlx_history_is_read_continued_checked_and_its_lock_respected() {
    let db = Db::fresh();
    let index = "-- no-transaction\nCREATE INDEX CONCURRENTLY users_email ON users (email);\n";
    let dir = files(&[
        ("0001_create_users.up.sql", INIT),
        ("0001_create_users.down.sql", "DROP TABLE users;\n"),
        ("0002_add_email.up.sql", ADD),
        ("0002_add_email.down.sql", DROP_ADD),
        ("0003_index_email.up.sql", index),
        (
            "0003_index_email.down.sql",
            "-- no-transaction\nDROP INDEX CONCURRENTLY users_email;\n",
        ),
    ]);
    // As SQLx records a migration: its number, a description from the file
    // name, and the SHA-384 of the file.
    db.sql(&format!(
        "{INIT} {SQLX_TABLE} INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (1, 'create users', true, sha384(convert_to(E{INIT:?}, 'UTF8')), 1500000);"
    ).replace('"', "'"));
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("sqlx history in public._sqlx_migrations (detected)"),
        "{out}"
    );
    assert_eq!(
        states(&out),
        ["0001 applied", "0002 pending", "0003 pending"]
    );

    // An application migrating at start-up holds SQLx's advisory lock:
    // runbook does not start beside it.
    let key = 0x3d32_ad9e_i64 * i64::from(crc32fast::hash(db.name.as_bytes()));
    let mut holder = support::hold_advisory_lock(&db, key, 4);
    let (_case, run) = migrate(&db, dir.path(), "");
    // Refused before anything ran: nothing changed, and the verdict says
    // so (it read "partly changed", exit 4).
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stderr.contains("nothing was changed"), "{}", run.stderr);
    assert!(
        run.stderr.contains("SQLx's migration lock is held"),
        "{}",
        run.stderr
    );
    assert_eq!(db.sql("SELECT count(*) FROM _sqlx_migrations"), "1");
    holder.wait().unwrap();

    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["0002", "0003"]);
    assert_eq!(
        run.step("apply")["details"]["applied"][1]["transaction"],
        false
    );
    assert_eq!(
        db.sql(&format!(
            "SELECT string_agg(version || ':' || description || ':' || success || ':' || (execution_time > 0), ',' ORDER BY version)
             || ' ' || bool_and(checksum = CASE version WHEN 3 THEN sha384(convert_to(E{index:?}, 'UTF8')) ELSE checksum END)
             FROM _sqlx_migrations"
        ).replace('"', "'")),
        "1:create users:true:true,2:add email:true:true,3:index email:true:true true"
    );
    // An edited applied file is caught by SQLx's checksum.
    std::fs::write(
        dir.path().join("0002_add_email.up.sql"),
        "ALTER TABLE users ADD COLUMN email varchar;\n",
    )
    .unwrap();
    let (code, out, _) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 3, "{out}");
    assert!(states(&out).contains(&"0002 changed".to_string()), "{out}");
    std::fs::write(dir.path().join("0002_add_email.up.sql"), ADD).unwrap();

    let (_case, run) = migrate(
        &db,
        dir.path(),
        "          direction: down\n          steps: 1\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT string_agg(version::text, ',' ORDER BY version) || ' ' || (to_regclass('users_email') IS NULL) FROM _sqlx_migrations"),
        "1,2 true"
    );
    // A script SQLx left unfinished: its row with `success = false`.
    db.sql("UPDATE _sqlx_migrations SET success = false WHERE version = 2");
    let (code, out, _) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 3, "{out}");
    assert!(states(&out).contains(&"0002 dirty".to_string()), "{out}");
    let (code, out, err) = repair(dir.path(), &db.url, "0002", "pending");
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        db.sql("SELECT string_agg(version::text, ',') FROM _sqlx_migrations"),
        "1"
    );
}

#[test]
fn a_drizzle_history_is_read_by_its_journal_and_continued() {
    let db = Db::fresh();
    let journal = r#"{"version": "7", "dialect": "postgresql", "entries": [
        {"idx": 0, "version": "7", "when": 1700000000000, "tag": "0000_init", "breakpoints": true},
        {"idx": 1, "version": "7", "when": 1700000001000, "tag": "0001_add_email", "breakpoints": true},
        {"idx": 2, "version": "7", "when": 1700000002000, "tag": "0002_index", "breakpoints": true}
    ]}"#;
    let add = "ALTER TABLE users ADD COLUMN email text;--> statement-breakpoint\nALTER TABLE users ADD COLUMN name text;\n";
    let dir = files(&[
        ("meta/_journal.json", journal),
        ("0000_init.sql", INIT),
        ("0001_add_email.sql", add),
        (
            "0002_index.sql",
            "CREATE INDEX users_email ON users (email);\n",
        ),
        // Not in the journal: Drizzle never runs it.
        ("0003_stray.sql", "DROP TABLE users;\n"),
    ]);
    db.sql(&format!(
        "{INIT} CREATE SCHEMA drizzle;
         CREATE TABLE drizzle.__drizzle_migrations (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint);
         INSERT INTO drizzle.__drizzle_migrations (hash, created_at)
         VALUES (encode(sha256(convert_to(E{INIT:?}, 'UTF8')), 'hex'), 1700000000000);"
    ).replace('"', "'"));
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            "(drizzle format, drizzle history in drizzle.__drizzle_migrations (detected))"
        ),
        "{out}"
    );
    assert_eq!(
        states(&out),
        ["0000 applied", "0001 pending", "0002 pending"]
    );
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["0001", "0002"]);
    assert!(
        run.step("apply")["details"]["warnings"]
            .to_string()
            .contains("0003_stray.sql is not in meta/_journal.json"),
        "{}",
        run.step("apply")
    );
    assert_eq!(
        db.sql(&format!(
            "SELECT string_agg(created_at::text, ',' ORDER BY id) || ' '
                    || bool_and(hash = CASE created_at WHEN 1700000001000 THEN encode(sha256(convert_to(E{add:?}, 'UTF8')), 'hex') ELSE hash END)
                    || ' ' || (to_regclass('users') IS NOT NULL)
             FROM drizzle.__drizzle_migrations"
        ).replace('"', "'")),
        "1700000000000,1700000001000,1700000002000 true true"
    );
    // An applied file edited afterwards is caught by the hash Drizzle recorded.
    std::fs::write(
        dir.path().join("0001_add_email.sql"),
        "ALTER TABLE users ADD COLUMN email varchar;\n",
    )
    .unwrap();
    let (code, out, _) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 3, "{out}");
    assert!(states(&out).contains(&"0001 changed".to_string()), "{out}");
    std::fs::write(dir.path().join("0001_add_email.sql"), add).unwrap();
    // Merged later with an older `when`: Drizzle would skip it for good,
    // so the step refuses it; with `out_of_order: true` it applies it, and
    // says it is out of order.
    std::fs::write(
        dir.path().join("meta/_journal.json"),
        journal.replace(
            "\"0002_index\", \"breakpoints\": true}",
            "\"0002_index\", \"breakpoints\": true},\n{\"idx\": 3, \"when\": 1600000000000, \"tag\": \"0003_late\"}",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0003_late.sql"),
        "CREATE TABLE late (id int);\n",
    )
    .unwrap();
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.step("apply")["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("1 pending migration(s) are older than the newest applied (0002): 0003 (late); drizzle would not apply"),
        "{}",
        run.step("apply")
    );
    assert_eq!(db.sql("SELECT to_regclass('late') IS NULL"), "t");
    let (_case, run) = migrate(&db, dir.path(), "          out_of_order: true\n");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["0003"]);
    assert!(
        format!("{}{}", run.stdout, run.stderr).contains("0003's journal `when` is older than that of the newest applied migration; Drizzle would never run it"),
        "{}",
        run.stderr
    );
}

/// A pending_migrations check reads the history its `history_format`
/// names, not the one detection finds, shows the arguments it read, and
/// counts as far as its `to`, as a `migrate` step with that `to` would run.
#[test]
fn pending_migrations_reads_the_history_it_names_and_counts_to_its_to() {
    let db = Db::fresh();
    let dir = files(&[
        ("V1__init.sql", INIT),
        ("V2__add.sql", ADD),
        ("V3__more.sql", "CREATE TABLE more (id int);\n"),
    ]);
    let (_case, run) = migrate(&db, dir.path(), "          to: \"1\"\n");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let check = |args: &str| {
        let case = Case::new(&format!(
            "{HEAD}phases:\n  - id: preflight\n    kind: preflight\n    steps:\n      - id: pending\n        check: {{ builtin: pending_migrations, dir: {}, max: 5{args} }}\n",
            dir.path().display()
        ));
        let run = case.exec(&db.url, &[]);
        (run.code, run.step("pending").clone())
    };
    let versions = |step: &serde_json::Value| -> Vec<String> {
        step["details"]["rows"]
            .as_array()
            .unwrap_or_else(|| panic!("{step}"))
            .iter()
            .map(|r| r["version"].as_str().unwrap().to_string())
            .collect()
    };
    // Detected: Flyway's, where V1 is applied.
    let (code, step) = check("");
    assert_eq!(code, 0, "{step}");
    assert_eq!(versions(&step), ["2", "3"]);
    // Named: runbook's own, which has no table yet, so all three are pending.
    let (code, step) = check(", history_format: runbook");
    assert_eq!(code, 0, "{step}");
    assert_eq!(versions(&step), ["1", "2", "3"]);
    assert_eq!(
        step["details"]["args"]["history_format"], "runbook",
        "{step}"
    );
    // As far as `to`.
    let (code, step) = check(", to: \"2\"");
    assert_eq!(code, 0, "{step}");
    assert_eq!(versions(&step), ["2"]);
    assert_eq!(step["details"]["after_to"], 1, "{step}");
    let (code, step) = check(", to: latest");
    assert_eq!(
        (code, versions(&step)),
        (0, vec!["2".to_string(), "3".to_string()])
    );
    // A `to` that is not a version going up is refused before anything
    // runs, written in the runbook or rendered from a param.
    for (to, args) in [
        ("before_run", vec![]),
        ("\"{{ params.to }}\"", vec!["--set", "to=abc"]),
    ] {
        let case = Case::new(&format!(
            "{HEAD}params:\n  to: {{ type: string, default: latest }}\nphases:\n  - id: preflight\n    kind: preflight\n    steps:\n      - id: pending\n        check: {{ builtin: pending_migrations, dir: {}, to: {to} }}\n",
            dir.path().display()
        ));
        let run = case.exec(&db.url, &args);
        assert_eq!(run.code, 5, "{}", run.stderr);
        assert!(
            run.stderr.contains("is not a version")
                && run
                    .stderr
                    .contains("pending_migrations counts as far as a migrate step going up runs"),
            "{}",
            run.stderr
        );
    }
}

/// A migration merged after a newer one was deployed. Flyway (with
/// `outOfOrder` off, its default) refuses it, and so does the step, before
/// anything runs; `out_of_order: true` applies it, with a warning. Under a
/// history whose tool applies it (runbook's own here), it is applied with
/// a warning, and `out_of_order: false` refuses it.
#[test]
fn a_migration_older_than_the_newest_applied_runs_only_where_its_tool_would() {
    let late = "CREATE TABLE late (id int);\n";
    let db = Db::fresh();
    let dir = files(&[("V1__init.sql", INIT), ("V3__add.sql", ADD)]);
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    std::fs::write(dir.path().join("V2__late.sql"), late).unwrap();
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("pending  late  (older than the newest applied, 3: out of order; flyway would not apply such a migration, and neither would a migrate step unless it sets `out_of_order: true`)"),
        "{out}"
    );
    let checks = Case::new(&format!(
        "{HEAD}phases:\n  - id: preflight\n    kind: preflight\n    steps:\n      - id: pending\n        check: {{ builtin: pending_migrations, dir: {}, severity: warn }}\n",
        dir.path().display()
    ));
    let pending = checks.exec(&db.url, &[]);
    assert_eq!(
        pending.step("pending")["details"]["rows"],
        serde_json::json!([{"version": "2", "file": "V2__late.sql", "out_of_order": true}]),
        "{}",
        pending.step("pending")
    );
    // The check fails on it as the step would refuse it, unless told the
    // step may apply it.
    let refused = |run: &support::Run| {
        let step = run.step("pending");
        (
            step["status"].as_str().unwrap().to_string(),
            step["check"]["expectations"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["target"] == "refused_out_of_order")
                .map(|e| e["actual"].clone()),
        )
    };
    assert_eq!(
        refused(&pending),
        ("failed".to_string(), Some(serde_json::json!(1))),
        "{}",
        pending.step("pending")
    );
    let allowed = Case::new(&format!(
        "{HEAD}phases:\n  - id: preflight\n    kind: preflight\n    steps:\n      - id: pending\n        check: {{ builtin: pending_migrations, dir: {}, max: 5, out_of_order: true }}\n",
        dir.path().display()
    ))
    .exec(&db.url, &[]);
    assert_eq!(allowed.code, 0, "{}", allowed.stderr);
    assert_eq!(
        refused(&allowed),
        ("succeeded".to_string(), Some(serde_json::json!(0)))
    );
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    let error = &run.step("apply")["error"];
    assert_eq!(
        error["message"],
        "1 pending migration(s) are older than the newest applied (3): 2 (late); flyway would not apply a migration out of order, and neither does this step",
        "{error}"
    );
    assert!(
        error["hint"]
            .as_str()
            .unwrap()
            .contains("`out_of_order: true`"),
        "{error}"
    );
    assert_eq!(db.sql("SELECT to_regclass('late') IS NULL"), "t");
    // A rehearsal on a copy says what the deploy would make of it.
    let (_case, rehearsal) = rehearse_scratch(&db, dir.path(), "");
    assert!(
        rehearsal.step("rehearse")["details"]["warnings"].to_string().contains(
            "1 pending migration(s) are older than the newest applied on this database: 2 (late); flyway would not apply such a migration"
        ),
        "{}",
        rehearsal.step("rehearse")
    );
    let (_case, run) = migrate(&db, dir.path(), "          out_of_order: true\n");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["2"]);
    assert!(
        run.stderr.contains(
            "warning: 2 is older than the newest applied migration (3); applying it out of order"
        ),
        "{}",
        run.stderr
    );

    let db = Db::fresh();
    let dir = files(&[
        ("001_init.up.sql", INIT),
        ("001_init.down.sql", "DROP TABLE users;\n"),
        ("003_add.up.sql", ADD),
        ("003_add.down.sql", DROP_ADD),
    ]);
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    std::fs::write(dir.path().join("002_late.up.sql"), late).unwrap();
    std::fs::write(dir.path().join("002_late.down.sql"), "DROP TABLE late;\n").unwrap();
    let (_, out, _) = migrations(&["status"], dir.path(), &db.url);
    assert!(
        out.contains("(older than the newest applied, 003: out of order; a migrate step applies such a migration with a warning)"),
        "{out}"
    );
    let (_case, run) = migrate(&db, dir.path(), "          out_of_order: false\n");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.step("apply")["error"]["message"],
        "1 pending migration(s) are older than the newest applied (003): 002 (late); `out_of_order: false` refuses it"
    );
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["002"]);
    assert!(
        run.stderr
            .contains("warning: 002 is older than the newest applied migration (003); applying it out of order"),
        "{}",
        run.stderr
    );
}

/// A Flyway project that turns `outOfOrder` on deploys a late migration as
/// Flyway would there: the step applies it, saying which file let it, and
/// the preflight check and `migrations status` agree. The step's own
/// `out_of_order: false` still refuses it.
#[test]
fn a_flyway_project_s_out_of_order_setting_is_the_step_s_default() {
    let db = Db::fresh();
    let dir = files(&[
        ("V1__init.sql", INIT),
        ("V3__add.sql", ADD),
        ("flyway.conf", "flyway.outOfOrder=true\n"),
    ]);
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    std::fs::write(
        dir.path().join("V2__late.sql"),
        "CREATE TABLE late (id int);\n",
    )
    .unwrap();
    let conf = dir.path().join("flyway.conf").canonicalize().unwrap();
    let at = format!("{}:1", conf.display());
    let (_, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert!(
        out.contains(&format!("out of order; {at} sets Flyway's outOfOrder, so Flyway would apply such a migration, and so would a migrate step")),
        "{out}{err}"
    );
    let check = Case::new(&format!(
        "{HEAD}phases:\n  - id: preflight\n    kind: preflight\n    steps:\n      - id: pending\n        check: {{ builtin: pending_migrations, dir: {}, max: 5 }}\n",
        dir.path().display()
    ))
    .exec(&db.url, &[]);
    assert_eq!(check.code, 0, "{}", check.stderr);
    let (_case, run) = migrate(&db, dir.path(), "          out_of_order: false\n");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(db.sql("SELECT to_regclass('late') IS NULL"), "t");
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["2"]);
    assert!(
        run.stderr.contains(&format!(
            "warning: 2 is older than the newest applied migration (3); applying it out of order, as {at} sets Flyway's outOfOrder"
        )),
        "{}",
        run.stderr
    );
    // Turned off in the file, it is refused, and the message says where.
    std::fs::write(&conf, "flyway.outOfOrder=false\n").unwrap();
    std::fs::write(
        dir.path().join("V2_1__later.sql"),
        "CREATE TABLE later (id int);\n",
    )
    .unwrap();
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.step("apply")["error"]["message"],
        format!(
            "1 pending migration(s) are older than the newest applied (3): 2.1 (later); {at} turns Flyway's outOfOrder off, and so this step refuses it"
        )
    );
}

#[test]
fn a_tern_history_is_one_number_continued_and_its_lock_respected() {
    let db = Db::fresh();
    let sep = "---- create above / drop below ----";
    let dir = owned(&[
        (
            "001_init.sql",
            format!("{INIT}\n{sep}\n\nDROP TABLE users;\n"),
        ),
        ("002_add.sql", format!("{ADD}\n{sep}\n{DROP_ADD}")),
        (
            "003_more.sql",
            format!("CREATE TABLE more (id int);\n{sep}\nDROP TABLE more;\n"),
        ),
    ]);
    // tern's table, as it creates it, after migration 1.
    db.sql(&format!(
        "{INIT} CREATE TABLE schema_version (version int4 NOT NULL PRIMARY KEY); INSERT INTO schema_version VALUES (1);"
    ));
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("(tern format, tern history in public.schema_version (detected))"),
        "{out}"
    );
    assert_eq!(states(&out), ["001 applied", "002 pending", "003 pending"]);

    // tern migrating at the same time holds its advisory lock.
    let mut holder = support::hold_advisory_lock(&db, 9_628_173_550_095_224, 4);
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr.contains("tern's migration lock is held"),
        "{}",
        run.stderr
    );
    assert_eq!(db.sql("SELECT version FROM schema_version"), "1");
    holder.wait().unwrap();

    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["002", "003"]);
    // The downs below the separator did not run with the ups.
    assert_eq!(
        db.sql("SELECT (SELECT string_agg(version::text, ',') FROM schema_version) || ' ' || (to_regclass('more') IS NOT NULL) || ' ' || (SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'email')"),
        "3 true 1"
    );
    let (_case, run) = migrate(
        &db,
        dir.path(),
        "          direction: down\n          steps: 2\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["003", "002"]);
    assert_eq!(
        db.sql("SELECT version::text || ' ' || (to_regclass('more') IS NULL) FROM schema_version"),
        "1 true"
    );
    // tern.conf's version_table under another name: its integer `version`
    // says tern's one number, not dbmate's list of versions (which would
    // count 001 as pending and run it again).
    db.sql("ALTER TABLE schema_version RENAME TO app_version");
    let (_case, run) = migrate(
        &db,
        dir.path(),
        "          history: { table: public.app_version }\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.step("apply")["details"]["history_format"], "tern");
    assert_eq!(applied(&run), ["002", "003"]);
    assert_eq!(db.sql("SELECT version FROM app_version"), "3");
}

#[test]
fn a_node_pg_migrate_history_is_read_by_name_and_continued() {
    let db = Db::fresh();
    let dir = owned(&[
        (
            "1700000000000_init.sql",
            format!("-- Up Migration\n{INIT}-- Down Migration\nDROP TABLE users;\n"),
        ),
        (
            "1700000000001_add.sql",
            format!("-- Up Migration\n{ADD}-- Down Migration\n{DROP_ADD}"),
        ),
    ]);
    // As node-pg-migrate creates its table and records a migration.
    db.sql(&format!(
        "{INIT} CREATE TABLE pgmigrations (id SERIAL PRIMARY KEY, name varchar(255) NOT NULL, run_on timestamp NOT NULL);
         INSERT INTO pgmigrations (name, run_on) VALUES ('1700000000000_init', NOW());"
    ));
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            "(node-pg-migrate format, node-pg-migrate history in public.pgmigrations (detected))"
        ),
        "{out}"
    );
    assert_eq!(
        states(&out),
        ["1700000000000 applied", "1700000000001 pending"]
    );
    let mut holder = support::hold_advisory_lock(&db, 7_241_865_325_823_964, 4);
    let (_case, run) = migrate(&db, dir.path(), "");
    assert!(
        run.stderr
            .contains("node-pg-migrate's migration lock is held"),
        "{}",
        run.stderr
    );
    holder.wait().unwrap();
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["1700000000001"]);
    assert_eq!(
        db.sql("SELECT string_agg(name, ',' ORDER BY id) FROM pgmigrations"),
        "1700000000000_init,1700000000001_add"
    );
    let (_case, run) = migrate(
        &db,
        dir.path(),
        "          direction: down\n          steps: 2\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT count(*) || ' ' || (to_regclass('users') IS NULL) FROM pgmigrations"),
        "0 true"
    );
}

#[test]
fn a_postgrator_history_is_read_up_to_its_highest_version_and_continued() {
    let db = Db::fresh();
    let dir = files(&[
        ("001.do.init.sql", INIT),
        ("001.undo.init.sql", "DROP TABLE users;\n"),
        ("002.do.add.sql", ADD),
        ("002.undo.add.sql", DROP_ADD),
        ("003.do.sql", "CREATE TABLE more (id int);\n"),
        ("003.undo.sql", "DROP TABLE more;\n"),
    ]);
    // As Postgrator's ensureTable leaves its table, after migration 1.
    db.sql(&format!(
        "{INIT} CREATE TABLE schemaversion (version BIGINT PRIMARY KEY, name TEXT, md5 TEXT, run_at TIMESTAMP WITH TIME ZONE);
         INSERT INTO schemaversion (version) VALUES (0);
         INSERT INTO schemaversion (version, name, md5, run_at) VALUES (1, 'init', md5(E{INIT:?}), now());"
    ).replace('"', "'"));
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("(postgrator format, postgrator history in public.schemaversion (detected))"),
        "{out}"
    );
    assert_eq!(states(&out), ["001 applied", "002 pending", "003 pending"]);
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["002", "003"]);
    assert_eq!(
        db.sql(&format!(
            "SELECT string_agg(version || ':' || coalesce(name, '') || ':' || (md5 IS NOT NULL), ',' ORDER BY version)
                    || ' ' || bool_and(md5 = md5(E{ADD:?})) FILTER (WHERE version = 2)
             FROM schemaversion"
        ).replace('"', "'")),
        "0::false,1:init:true,2:add:true,3::true true"
    );
    // An edited applied file shows by the MD5 Postgrator recorded.
    std::fs::write(
        dir.path().join("002.do.add.sql"),
        "ALTER TABLE users ADD COLUMN email varchar;\n",
    )
    .unwrap();
    let (code, out, _) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 3, "{out}");
    assert!(states(&out).contains(&"002 changed".to_string()), "{out}");
    std::fs::write(dir.path().join("002.do.add.sql"), ADD).unwrap();
    let (_case, run) = migrate(
        &db,
        dir.path(),
        "          direction: down\n          steps: 2\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["003", "002"]);
    assert_eq!(
        db.sql("SELECT string_agg(version::text, ',' ORDER BY version) || ' ' || (to_regclass('more') IS NULL) FROM schemaversion"),
        "0,1 true"
    );
}

/// Refinery's checksum of a migration, as Refinery first computed it:
/// with std's `DefaultHasher` (SipHash-1-3, keys 0), over the name, the
/// version as an `i32` and the SQL. runbook computes it with the siphasher
/// crate, as Refinery does now; the two must agree.
fn refinery_checksum(name: &str, version: impl std::hash::Hash, sql: &str) -> String {
    use std::hash::{Hash, Hasher};
    #[allow(deprecated)]
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    version.hash(&mut h);
    sql.hash(&mut h);
    h.finish().to_string()
}

/// A scratch copy (CREATE DATABASE ... TEMPLATE) gets none of what
/// belongs to the database itself; runbook gives it the source's settings,
/// so that the migrations run as they would on the database they are
/// rehearsed for. Supabase, for one, finds its extensions through the
/// database's `search_path`. Before, the up failed on the copy: "function
/// answer() does not exist".
#[test]
fn a_scratch_copy_has_the_databases_own_settings() {
    let db = Db::fresh();
    let name = db.sql("SELECT current_database()");
    db.sql(&format!(
        "CREATE SCHEMA extensions;
         CREATE FUNCTION extensions.answer() RETURNS int LANGUAGE sql AS 'SELECT 42';
         ALTER DATABASE {name} SET search_path = \"$user\", public, extensions;
         ALTER DATABASE {name} SET app.region = 'eu';"
    ));
    let dir = files(&[
        (
            "1_defaults.up.sql",
            "CREATE TABLE t (a int DEFAULT answer(), region text DEFAULT current_setting('app.region'));\nINSERT INTO t DEFAULT VALUES;\n",
        ),
        ("1_defaults.down.sql", "DROP TABLE t;\n"),
    ]);
    let (_case, run) = rehearse_scratch(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.step("rehearse")["details"]["verdicts"],
        serde_json::json!({"ok": 1})
    );
    // A scratch database restored from a backup step gets them too.
    let backup = tempfile::tempdir().unwrap();
    let case = Case::new(&format!(
        "{HEAD}phases:\n  - id: copy\n    kind: backup\n    steps:\n      - id: copy\n        backup:\n          path: {}\n          format: custom\n  - id: verify\n    kind: verify\n    steps:\n      - id: rehearse\n        rehearse:\n          dir: {}\n          scratch: {{ from: steps.copy }}\n",
        backup.path().join("copy").display(),
        dir.path().display()
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.step("rehearse")["details"]["verdicts"],
        serde_json::json!({"ok": 1})
    );
}

/// A migrate step's ups, then its downs back to nothing, in one run.
fn up_then_down_to_zero(db: &Db, dir: &std::path::Path) -> Run {
    let case = Case::new(&format!(
        "{HEAD}phases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: up\n        migrate:\n          dir: {d}\n      - id: down\n        migrate:\n          dir: {d}\n          direction: down\n          to: 0\n",
        d = dir.display()
    ));
    case.exec(&db.url, &[])
}

/// An up that sets the session's search path to '' (as pg_dump's output
/// does) does not reach its down: every tool runs a down later, in a new
/// run with a new session, and so does a rehearsal now (the re-up too).
/// Before, the rehearsal judged such a migration `irreversible`: its
/// unqualified `DROP TABLE a` found no table, where `migrate down` drops it.
#[test]
fn a_down_runs_from_a_clean_session_as_a_new_run_of_its_tool() {
    let dir = files(&[
        (
            "1_a.up.sql",
            "SELECT pg_catalog.set_config('search_path', '', false);\nCREATE TABLE public.a (id int);\n",
        ),
        ("1_a.down.sql", "DROP TABLE a;\n"),
        ("2_b.up.sql", "CREATE TABLE public.b (id int);\n"),
        ("2_b.down.sql", "DROP TABLE b;\n"),
    ]);
    let (_case, run) = rehearse_scratch(&Db::fresh(), dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.step("rehearse")["details"]["verdicts"],
        serde_json::json!({"ok": 2})
    );
    // And a migrate step's downs, in the same run as the ups.
    let db = Db::fresh();
    let run = up_then_down_to_zero(&db, dir.path());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT count(*) FROM pg_class WHERE relname IN ('a', 'b')"),
        "0"
    );
    // sqitch runs every script in a psql of its own: the up after it too
    // starts clean.
    let sqitch = files(&[
        (
            "sqitch.plan",
            "%syntax-version=1.0.0\n%project=p\n\na 2024-01-01T00:00:00Z Ann <ann@example.com>\nb 2024-01-02T00:00:00Z Ann <ann@example.com>\n",
        ),
        (
            "deploy/a.sql",
            "SELECT pg_catalog.set_config('search_path', '', false);\nCREATE TABLE public.a (id int);\n",
        ),
        ("revert/a.sql", "DROP TABLE a;\n"),
        ("deploy/b.sql", "CREATE TABLE b (id int);\n"),
        ("revert/b.sql", "DROP TABLE b;\n"),
    ]);
    let (_case, run) = rehearse_scratch(&Db::fresh(), sqitch.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.step("rehearse")["details"]["verdicts"],
        serde_json::json!({"ok": 2})
    );
}

/// An up that ends with `SET ROLE` (a role that may not read what the up
/// made): `RESET ALL` leaves a role in place, so its down ran as that role
/// ("must be owner of table a": `irreversible`), and the rehearsal's data
/// checks read as it too ("permission denied for table a" ended the
/// rehearsal). A down starts as the session's own role, as in a new run of
/// its tool, and the checks read as the session, whatever the scripts set.
#[test]
fn an_ups_set_role_reaches_neither_its_down_nor_the_rehearsals_checks() {
    let db = Db::fresh();
    let name = db
        .url
        .rsplit_once('/')
        .unwrap()
        .1
        .split('?')
        .next()
        .unwrap();
    let role = format!("lim_{name}");
    db.sql(&format!("CREATE ROLE {role} NOLOGIN"));
    let dir = files(&[
        (
            "1_a.up.sql",
            "CREATE TABLE a (id int);\nINSERT INTO a VALUES (1);\n",
        ),
        ("1_a.down.sql", "DROP TABLE a;\n"),
        (
            "2_r.up.sql",
            &format!(
                "GRANT USAGE ON SCHEMA public TO {role};\n\
                 GRANT ALL ON runbook_migrations TO {role};\n\
                 CREATE INDEX a_id ON a (id);\nSET ROLE {role};\n"
            ),
        ),
        (
            "2_r.down.sql",
            &format!(
                "DROP INDEX a_id;\nREVOKE ALL ON runbook_migrations FROM {role};\n\
                 REVOKE USAGE ON SCHEMA public FROM {role};\n"
            ),
        ),
    ]);
    let (_case, run) = rehearse_scratch(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.step("rehearse")["details"]["verdicts"],
        serde_json::json!({"ok": 2})
    );
    // And a migrate step's downs, in the same run as the ups.
    let run = up_then_down_to_zero(&db, dir.path());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT count(*) FROM pg_class WHERE relname = 'a'"),
        "0"
    );
}

/// Flyway, before each migration, sets the role back and the search path
/// to its default schema (the one its history table is in) ahead of the
/// connection's own; runbook does the same for Flyway's files. Before, a
/// service whose Flyway schema is `app` got its unqualified tables in
/// `public`, and a script that set `search_path` to '' (as pg_dump's
/// output does) broke every migration after it.
#[test]
fn flyway_migrations_run_in_flyways_default_schema_each_from_a_clean_search_path() {
    let db = Db::fresh();
    db.sql("CREATE SCHEMA app");
    let dir = files(&[
        ("V1__t.sql", "CREATE TABLE t (id int PRIMARY KEY);\n"),
        (
            "V2__y.sql",
            "SELECT pg_catalog.set_config('search_path', '', false);\nCREATE TABLE app.y (id int);\n",
        ),
        ("V3__z.sql", "CREATE TABLE z (id int REFERENCES t);\n"),
        ("U1__t.sql", "DROP TABLE t;\n"),
        ("U2__y.sql", "DROP TABLE app.y;\n"),
        ("U3__z.sql", "DROP TABLE z;\n"),
    ]);
    let history = "          history: { format: flyway, table: app.flyway_schema_history }\n";
    let (_case, run) = migrate(&db, dir.path(), history);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql(
            "SELECT string_agg(c.oid::regclass::text, ' ' ORDER BY c.relname) FROM pg_class c WHERE c.relname IN ('t', 'y', 'z')"
        ),
        "app.t app.y app.z"
    );
    // A rehearsal runs them the same way, downs and re-ups included.
    let fresh = Db::fresh();
    fresh.sql("CREATE SCHEMA app");
    let (_case, run) = rehearse_scratch(&fresh, dir.path(), history);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.step("rehearse")["details"]["verdicts"],
        serde_json::json!({"ok": 3})
    );
}

/// The Supabase CLI's history, `supabase_migrations.schema_migrations`
/// (outside the search path), is detected by its columns, read, and
/// continued as the CLI writes it: the version as text, the name, and the
/// statements. A file the CLI would fail (CONCURRENTLY in its one-batch
/// transaction) is warned of, and a rehearsal on a new database judges
/// `supabase/migrations` the same way. Before, such a database stopped
/// every run: "a migration history outside the search path", and naming
/// the table got "not a migration history table runbook knows".
#[test]
fn the_supabase_cli_history_is_read_and_continued_and_its_files_judged_as_it_runs_them() {
    let todos = "-- the list\ncreate table public.todos (id bigint primary key, task text);\n";
    // As `supabase db pull` writes a migration (pg_dump's header): the CLI
    // resets the session before the next one, so its empty search_path
    // does not reach it.
    let done = "SELECT pg_catalog.set_config('search_path', '', false);\nalter table public.todos add column done boolean default false;\ncomment on column public.todos.done is 'set; once';\n";
    let index = "create index concurrently todos_task on todos (task);\n";
    let root = files(&[
        ("supabase/migrations/20240101000000_todos.sql", todos),
        ("supabase/migrations/20240102000000_done.sql", done),
        ("supabase/migrations/20240103000000_task_index.sql", index),
    ]);
    let dir = root.path().join("supabase/migrations");
    let db = Db::fresh();
    // As the CLI leaves a database after `supabase db push` of the first.
    db.sql(&format!(
        "{todos}
         CREATE SCHEMA supabase_migrations;
         CREATE TABLE supabase_migrations.schema_migrations (version text NOT NULL PRIMARY KEY);
         ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS statements text[];
         ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS name text;
         INSERT INTO supabase_migrations.schema_migrations VALUES ('20240101000000', ARRAY['-- the list\ncreate table public.todos (id bigint primary key, task text)'], 'todos');"
    ));
    let (code, out, err) = migrations(&["status"], &dir, &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("supabase history in supabase_migrations.schema_migrations (detected)"),
        "{out}"
    );
    assert_eq!(
        states(&out),
        [
            "20240101000000 applied",
            "20240102000000 pending",
            "20240103000000 pending"
        ]
    );
    let (_case, run) = migrate(&db, &dir, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["20240102000000", "20240103000000"]);
    assert_eq!(
        db.sql(
            "SELECT string_agg(version || ' ' || name || ' ' || array_to_json(statements)::text, E'\\n' ORDER BY version) FROM supabase_migrations.schema_migrations"
        ),
        [
            r#"20240101000000 todos ["-- the list\ncreate table public.todos (id bigint primary key, task text)"]"#,
            r#"20240102000000 done ["SELECT pg_catalog.set_config('search_path', '', false)","alter table public.todos add column done boolean default false","comment on column public.todos.done is 'set; once'"]"#,
            r#"20240103000000 task_index ["create index concurrently todos_task on todos (task)"]"#,
        ]
        .join("\n")
    );
    let warnings = run.step("apply")["details"]["warnings"].to_string();
    assert!(
        warnings.contains("20240103000000_task_index.sql:1: supabase would fail this script, as it runs it in a transaction"),
        "{warnings}"
    );

    // On a new database, a rehearsal of supabase/migrations judges the
    // files as the CLI runs them.
    let (_case, run) = rehearse_scratch(&Db::fresh(), &dir, "");
    assert_eq!(run.code, 3, "{}", run.stderr);
    let d = &run.step("rehearse")["details"];
    let verdicts: Vec<&str> = d["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(
        verdicts,
        ["forward_only", "forward_only", "tool_failure"],
        "{d}"
    );

    // A file the CLI would skip is refused, and nothing runs.
    std::fs::write(
        dir.join("20240104000000-skipped.sql"),
        "create table skipped (id int);\n",
    )
    .unwrap();
    let (_case, run) = migrate(&db, &dir, "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.step("apply")["error"]["message"]
            .as_str()
            .unwrap()
            .contains("20240104000000-skipped.sql: the Supabase CLI skips a file whose name is not `<timestamp>_name.sql`"),
        "{}",
        run.step("apply")
    );
    assert_eq!(db.sql("SELECT to_regclass('skipped') IS NULL"), "t");
    // So is it in a rehearsal of supabase/migrations on a new database,
    // with runbook's own history.
    let (_case, run) = rehearse_scratch(&Db::fresh(), &dir, "");
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.step("rehearse")["error"]["message"]
            .as_str()
            .unwrap()
            .contains("20240104000000-skipped.sql: the Supabase CLI skips"),
        "{}",
        run.step("rehearse")
    );
}

/// Refinery runs its files as they are: no Flyway placeholders filled in,
/// and a byte-order mark sent along (which PostgreSQL fails on). Its
/// checksum is of that text. Before, runbook filled `${flyway:user}` and
/// dropped the mark, as Flyway does, so it ran what Refinery would not
/// and recorded a checksum Refinery would call divergent.
#[test]
fn refinery_runs_its_files_as_they_are_and_a_byte_order_mark_fails_where_the_tool_sends_it() {
    let db = Db::fresh();
    let notes = "CREATE TABLE notes (t text);\nINSERT INTO notes VALUES ('${flyway:user}');\n";
    let bom = "\u{feff}CREATE TABLE marked (id int);\n";
    let dir = files(&[("V1__notes.sql", notes), ("V2__marked.sql", bom)]);
    db.sql("CREATE TABLE refinery_schema_history(version int4 PRIMARY KEY, name VARCHAR(255), applied_on VARCHAR(255), checksum VARCHAR(255))");
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.sql("SELECT t FROM notes"), "${flyway:user}");
    assert_eq!(
        db.sql("SELECT string_agg(checksum, ',' ORDER BY version) FROM refinery_schema_history"),
        format!(
            "{},{}",
            refinery_checksum("notes", 1, notes),
            refinery_checksum("marked", 2, bom)
        )
    );
    // The mark: runbook ran the file without it, and says Refinery would not.
    let warnings = run.step("apply")["details"]["warnings"].to_string();
    assert!(
        warnings.contains("V2__marked.sql:1: refinery would fail this script")
            && !warnings.contains("V1__notes"),
        "{warnings}"
    );
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(states(&out), ["1 applied", "2 applied"]);
    // Under runbook's own history the same files are Flyway's, placeholders
    // and all.
    let db = Db::fresh();
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.sql("SELECT t FROM notes"), db.sql("SELECT current_user"));

    // golang-migrate sends the mark too (golang-migrate/migrate#1136); a
    // rehearsal under its history fails that migration, down included.
    let pairs = files(&[
        ("1_init.up.sql", INIT),
        ("1_init.down.sql", "DROP TABLE users;\n"),
        ("2_marked.up.sql", bom),
        ("2_marked.down.sql", "\u{feff}DROP TABLE marked;\n"),
    ]);
    let db = Db::fresh();
    let (_case, run) = rehearse_scratch(
        &db,
        pairs.path(),
        "          history: { format: golang-migrate }\n",
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    let d = &run.step("rehearse")["details"];
    let m = &d["migrations"][1];
    assert_eq!(m["verdict"], "tool_failure", "{d}");
    let legs: Vec<&str> = m["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["leg"].as_str().unwrap())
        .collect();
    assert_eq!(legs, ["up", "down"], "{d}");
    assert!(
        m["findings"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("2_marked.up.sql:1: golang-migrate would fail this script: it sends the file's byte-order mark"),
        "{d}"
    );
    assert_eq!(d["migrations"][0]["verdict"], "ok", "{d}");
}

/// Refinery's refinery_schema_history (its DDL; a row per version, with
/// its name, RFC 3339 time and SipHash checksum) is read, checked and
/// continued as Refinery would write it, so Refinery itself goes on from
/// it. What Refinery would not run (a `U` file, a dotted version) or
/// runbook cannot (a Rust migration) is refused before anything runs.
/// Before, a database with this table was refused.
#[test]
fn a_refinery_history_is_read_checked_and_continued_with_its_checksums() {
    let db = Db::fresh();
    let dir = files(&[
        ("V1__initial.sql", INIT),
        ("sub/V2__add_email.sql", ADD),
        ("V3__more_tables.sql", "CREATE TABLE more (id int);\n"),
    ]);
    // As Refinery leaves its table after migration 1.
    db.sql(&format!(
        "{INIT} CREATE TABLE refinery_schema_history(version int4 PRIMARY KEY, name VARCHAR(255), applied_on VARCHAR(255), checksum VARCHAR(255));
         INSERT INTO refinery_schema_history VALUES (1, 'initial', '2024-05-01T10:00:00.123456789Z', '{}');",
        refinery_checksum("initial", 1, INIT)
    ));
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("refinery history in public.refinery_schema_history (detected)"),
        "{out}"
    );
    assert_eq!(states(&out), ["1 applied", "2 pending", "3 pending"]);
    // Refinery has no downs: not a `U` file to write (Refinery would refuse it).
    assert!(
        out.contains("[no down: forward-only: it has no down by design]") && !out.contains("U1__"),
        "{out}"
    );
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["2", "3"]);
    assert_eq!(
        db.sql(
            "SELECT string_agg(version || ' ' || name || ' ' || checksum || ' ' || (applied_on ~ '^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d+Z$'), ',' ORDER BY version) FROM refinery_schema_history"
        ),
        format!(
            "1 initial {} true,2 add_email {} true,3 more_tables {} true",
            refinery_checksum("initial", 1, INIT),
            refinery_checksum("add_email", 2, ADD),
            refinery_checksum("more_tables", 3, "CREATE TABLE more (id int);\n"),
        )
    );
    // An edited applied file: Refinery would abort on it, and so does status.
    std::fs::write(
        dir.path().join("V1__initial.sql"),
        "CREATE TABLE users (id int);\n",
    )
    .unwrap();
    let (code, out, _) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("applied with SipHash-1-3"), "{out}");
    std::fs::write(dir.path().join("V1__initial.sql"), INIT).unwrap();

    // What Refinery would not run is refused, and nothing runs.
    for (file, text, says) in [
        (
            "U4__seed.sql",
            "INSERT INTO users VALUES (1);\n",
            "a `U` file is Refinery's unversioned migration",
        ),
        (
            "V4_1__x.sql",
            "SELECT 1;\n",
            "Refinery's versions are integers",
        ),
        (
            "V4__code.rs",
            "fn migration() -> String { String::new() }\n",
            "is a Refinery migration in Rust, which runbook cannot run",
        ),
    ] {
        let extra = dir.path().join(file);
        std::fs::write(&extra, text).unwrap();
        if file.starts_with('U') {
            std::fs::write(dir.path().join("V4__seed.sql"), "SELECT 1;\n").unwrap();
        }
        let (_case, run) = migrate(&db, dir.path(), "");
        assert_ne!(run.code, 0, "{file}");
        assert!(run.stderr.contains(says), "{file}: {}", run.stderr);
        assert_eq!(
            db.sql("SELECT count(*) FROM refinery_schema_history"),
            "3",
            "{file}"
        );
        std::fs::remove_file(extra).unwrap();
        let _ = std::fs::remove_file(dir.path().join("V4__seed.sql"));
    }

    // A rehearsal judges Refinery's migrations forward-only, as Prisma's,
    // not irreversible for want of `U` files.
    let fresh = Db::fresh();
    fresh.sql("CREATE TABLE refinery_schema_history(version int4 PRIMARY KEY, name VARCHAR(255), applied_on VARCHAR(255), checksum VARCHAR(255))");
    let (_case, run) = rehearse_scratch(&fresh, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let d = &run.step("rehearse")["details"];
    assert_eq!(d["verdicts"], serde_json::json!({"forward_only": 3}), "{d}");
    assert!(
        d["set_findings"]
            .to_string()
            .contains("Refinery has no down migrations, so its migrations are forward-only"),
        "{d}"
    );

    // A baseline writes Refinery's table and row as Refinery would.
    let db = Db::fresh();
    db.sql(INIT);
    let dir = files(&[("V1__initial.sql", INIT), ("V2__add_email.sql", ADD)]);
    let (code, out, err) = migrations(
        &[
            "baseline",
            "--version",
            "1",
            "--history-format",
            "refinery",
            "--yes",
        ],
        dir.path(),
        &db.url,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        db.sql("SELECT version || ' ' || name || ' ' || checksum FROM refinery_schema_history"),
        format!("1 initial {}", refinery_checksum("initial", 1, INIT))
    );
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["2"]);

    // Refinery's `int8-versions`: 64-bit versions, hashed as such.
    let db = Db::fresh();
    let dir = files(&[
        ("V20240101000000__initial.sql", INIT),
        ("V20240201000000__add_email.sql", ADD),
    ]);
    db.sql(&format!(
        "{INIT} CREATE TABLE refinery_schema_history(version int8 PRIMARY KEY, name VARCHAR(255), applied_on VARCHAR(255), checksum VARCHAR(255));
         INSERT INTO refinery_schema_history VALUES (20240101000000, 'initial', '2024-05-01T10:00:00Z', '{}');",
        refinery_checksum("initial", 20240101000000_i64, INIT)
    ));
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        states(&out),
        ["20240101000000 applied", "20240201000000 pending"]
    );
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT checksum FROM refinery_schema_history WHERE version = 20240201000000"),
        refinery_checksum("add_email", 20240201000000_i64, ADD)
    );
}

/// sql-migrate's gorp_migrations (as sql-migrate creates it, a row per
/// applied file by its file name) and popx's schema_migration (popx's DDL;
/// a row per version, and pop's older row of 14 digits that counts every
/// version starting with them) are read, continued and rolled back in
/// their own terms.
#[test]
fn sql_migrate_and_popx_histories_are_read_and_continued() {
    let db = Db::fresh();
    let dir = files(&[
        (
            "1_init.sql",
            &format!("-- +migrate Up\n{INIT}-- +migrate Down\nDROP TABLE users;\n"),
        ),
        (
            "2_add.sql",
            &format!("-- +migrate Up\n{ADD}-- +migrate Down\n{DROP_ADD}"),
        ),
    ]);
    db.sql(&format!(
        "{INIT} CREATE TABLE gorp_migrations (id varchar(255) NOT NULL PRIMARY KEY, applied_at timestamp with time zone);
         INSERT INTO gorp_migrations VALUES ('1_init.sql', '2024-01-01 00:00:00+00');"
    ));
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("sql-migrate history in public.gorp_migrations (detected)"),
        "{out}"
    );
    assert_eq!(states(&out), ["1 applied", "2 pending"]);
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["2"]);
    assert_eq!(
        db.sql("SELECT string_agg(id, ',' ORDER BY id) || ' ' || bool_and(applied_at IS NOT NULL) FROM gorp_migrations"),
        "1_init.sql,2_add.sql true"
    );
    let (_case, run) = migrate(
        &db,
        dir.path(),
        "          direction: down\n          steps: 1\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT string_agg(id, ',') FROM gorp_migrations"),
        "1_init.sql"
    );

    let db = Db::fresh();
    let dir = files(&[
        ("20191100000001000000_init.postgres.up.sql", INIT),
        (
            "20191100000001000000_init.postgres.down.sql",
            "DROP TABLE users;\n",
        ),
        (
            "20191100000001000001_init.postgres.up.sql",
            "CREATE INDEX users_id ON users (id);\n",
        ),
        (
            "20191100000001000001_init.postgres.down.sql",
            "DROP INDEX users_id;\n",
        ),
        ("20200101000000000000_add.postgres.up.sql", ADD),
        ("20200101000000000000_add.postgres.down.sql", DROP_ADD),
        (
            "20210101000000000000_more.postgres.up.sql",
            "CREATE TABLE more (id int);\n",
        ),
        (
            "20210101000000000000_more.postgres.down.sql",
            "DROP TABLE more;\n",
        ),
    ]);
    db.sql(&format!(
        "{INIT} CREATE INDEX users_id ON users (id); {ADD}
         CREATE TABLE schema_migration (version VARCHAR (48) NOT NULL, version_self INT NOT NULL DEFAULT 0);
         CREATE UNIQUE INDEX schema_migration_version_idx ON schema_migration (version);
         CREATE INDEX schema_migration_version_self_idx ON schema_migration (version_self);
         INSERT INTO schema_migration (version) VALUES ('20191100000001'), ('20200101000000000000');"
    ));
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("popx history in public.schema_migration (detected)"),
        "{out}"
    );
    assert_eq!(
        states(&out),
        [
            "20191100000001000000 applied",
            "20191100000001000001 applied",
            "20200101000000000000 applied",
            "20210101000000000000 pending"
        ]
    );
    assert!(
        !out.contains("no file"),
        "a legacy row is not a migration of its own: {out}"
    );
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["20210101000000000000"]);
    assert_eq!(
        db.sql("SELECT string_agg(version, ',' ORDER BY version) FROM schema_migration"),
        "20191100000001,20200101000000000000,20210101000000000000"
    );
    // Rolling back a version the older row covers turns that row into
    // rows of the versions it still covers: left, it would still count the
    // rolled-back version as applied, and a second down would run again.
    let (_case, run) = migrate(
        &db,
        dir.path(),
        "          direction: down\n          to: \"20191100000001000000\"\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT string_agg(version, ',' ORDER BY version) FROM schema_migration"),
        "20191100000001000000"
    );
    let (_, out, _) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(
        states(&out),
        [
            "20191100000001000000 applied",
            "20191100000001000001 pending",
            "20200101000000000000 pending",
            "20210101000000000000 pending"
        ]
    );
    assert_eq!(db.sql("SELECT to_regclass('users_id') IS NULL"), "t");

    // A fresh database gets popx's own table.
    let db = Db::fresh();
    let (_case, run) = migrate(&db, dir.path(), "          history: { format: popx }\n");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'schema_migration'"),
        "schema_migration_version_idx,schema_migration_version_self_idx"
    );
    assert_eq!(db.sql("SELECT count(*) FROM schema_migration"), "4");
}

/// sqitch's own tutorial reworks changes: the plan names `users` twice,
/// its first place runs the scripts `sqitch rework` kept under the tag
/// (`deploy/users@v1.sql`), and the registry has a row for each place, in
/// the order deployed. runbook refused such a plan; read by name alone, the
/// second row would have been taken for the first place.
#[test]
fn a_reworked_sqitch_change_runs_its_tags_scripts_and_each_row_is_its_own_place() {
    let db = Db::fresh();
    let dir = files(&[
        (
            "sqitch.plan",
            "%syntax-version=1.0.0\n%project=flipr\n\nusers 2024-01-01T00:00:00Z Ann <ann@example.com> # users\n@v1 2024-01-02T00:00:00Z Ann <ann@example.com>\n\nusers [users@v1] 2024-01-03T00:00:00Z Ann <ann@example.com> # email\n",
        ),
        ("deploy/users@v1.sql", INIT),
        ("revert/users@v1.sql", "DROP TABLE users;\n"),
        ("deploy/users.sql", ADD),
        ("revert/users.sql", DROP_ADD),
    ]);
    let registry = |rows: &str| {
        format!(
            "{SQITCH_REGISTRY}
             INSERT INTO sqitch.changes (change_id, script_hash, change, project, committer_name, committer_email, planned_at, planner_name, planner_email) VALUES {rows};"
        )
    };
    let row = |id: &str, script: &str| {
        format!(
            "('{id}', '{}', 'users', 'flipr', 'Ann', 'ann@example.com', '2024-01-01', 'Ann', 'ann@example.com')",
            runbook::migrations::sqitch_hash(script)
        )
    };
    db.sql(&format!("{INIT}{}", registry(&row("0f1a", INIT))));
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(states(&out), ["0001 applied", "0002 pending"]);
    db.sql(&format!("{ADD}{}", registry(&row("9b2c", ADD))));
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(states(&out), ["0001 applied", "0002 applied"]);

    // Each place rehearses its own scripts: the first creates the table,
    // the rework adds the column, and each down undoes its own.
    let db = Db::fresh();
    let (_case, run) = rehearse_scratch(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let d = &run.step("rehearse")["details"];
    assert_eq!(d["verdicts"], serde_json::json!({"ok": 2}), "{d}");
}

/// Another tool's schema the role may not use (sqitch's, Drizzle's) is one
/// whose history it cannot see: detection goes on without it, where asking
/// for a table in it failed with "permission denied for schema".
#[test]
fn a_schema_the_role_may_not_use_does_not_stop_detection() {
    let db = Db::fresh();
    let after = db.url.split_once('@').unwrap().1;
    let (hostport, name) = after.split_once('/').unwrap();
    let name = name.split('?').next().unwrap();
    let role = format!("nouse_{name}");
    db.sql(&format!(
        "CREATE SCHEMA sqitch; CREATE SCHEMA drizzle; CREATE SCHEMA graphile_migrate;
         CREATE ROLE {role} LOGIN; GRANT CONNECT ON DATABASE {name} TO {role};"
    ));
    let dir = files(&[("001_a.up.sql", INIT)]);
    let url = format!("postgres://{role}@{hostport}/{name}");
    let (code, out, err) = migrations(&["status"], dir.path(), &url);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(states(&out), ["001 pending"]);
}

/// A history the role may not read stops the step before anything runs,
/// and the verdict says nothing changed (it read "partly changed and was
/// not verified undone; a person must act", exit 4).
#[test]
fn a_history_the_role_cannot_read_stops_the_step_having_changed_nothing() {
    let db = Db::fresh();
    let dir = files(&[("001_a.up.sql", INIT), ("002_b.up.sql", ADD)]);
    std::fs::remove_file(dir.path().join("002_b.up.sql")).unwrap();
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    std::fs::write(dir.path().join("002_b.up.sql"), ADD).unwrap();
    // The database's owner, as an application's role is, but not the
    // history table's.
    let (_role, url) = db.owned_by_new_role("app");
    let case = Case::new(&format!(
        "{HEAD}phases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: apply\n        migrate:\n          dir: {}\n",
        dir.path().display()
    ));
    let run = case.exec(&url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("permission denied"), "{}", run.stderr);
    assert!(run.stderr.contains("nothing was changed"), "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'users'"),
        "1"
    );
}

/// measure.sh runs dbmate with `?search_path=dbmate,measure` in its URL, so
/// dbmate keeps its history in `dbmate.schema_migrations`. Given that URL,
/// runbook finds it there, as dbmate does, and continues it; Prisma's
/// `?schema=app` finds `app._prisma_migrations` the same way. Without the
/// URL's word the table is refused as before, named, never run again.
#[test]
fn a_history_in_the_schema_the_url_names_is_found_there() {
    let db = Db::fresh();
    let dir = files(&[
        (
            "20240101000000_init.sql",
            "-- migrate:up\nCREATE TABLE measure.users (id bigint PRIMARY KEY);\n-- migrate:down\nDROP TABLE measure.users;\n",
        ),
        (
            "20240102000000_add.sql",
            "-- migrate:up\nALTER TABLE measure.users ADD COLUMN email text;\n-- migrate:down\nALTER TABLE measure.users DROP COLUMN email;\n",
        ),
    ]);
    db.sql(
        "CREATE SCHEMA measure; CREATE SCHEMA dbmate;\n\
         CREATE TABLE measure.users (id bigint PRIMARY KEY);\n\
         CREATE TABLE dbmate.schema_migrations (version varchar(128) PRIMARY KEY);\n\
         INSERT INTO dbmate.schema_migrations VALUES ('20240101000000');",
    );
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 5, "{out}{err}");
    assert!(
        err.contains("in another schema or under another name than its tool's default: dbmate.schema_migrations"),
        "{err}"
    );
    let url = format!("{}?search_path=dbmate,measure", db.url);
    let (code, out, err) = migrations(&["status"], dir.path(), &url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("dbmate history in dbmate.schema_migrations (detected)"),
        "{out}"
    );
    let case = Case::new(&format!(
        "{HEAD}phases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: apply\n        migrate:\n          dir: {}\n",
        dir.path().display()
    ));
    let run = case.exec(&url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["20240102000000"]);
    assert_eq!(
        db.sql("SELECT string_agg(version, ',' ORDER BY version) FROM dbmate.schema_migrations"),
        "20240101000000,20240102000000"
    );
    assert_eq!(
        db.sql("SELECT to_regclass('public.schema_migrations') IS NULL"),
        "t"
    );
    // The same tool's table in public too: two histories, not a guess,
    // whether the format is detected or said.
    db.sql("CREATE TABLE public.schema_migrations (LIKE dbmate.schema_migrations)");
    for extra in [&[][..], &["--history-format", "dbmate"][..]] {
        let args = [&["status"][..], extra].concat();
        let (code, out, err) = migrations(&args, dir.path(), &url);
        assert_ne!(code, 0, "{extra:?}: {out}{err}");
        assert!(
            err.contains("several migration histories")
                && err.contains("public.schema_migrations")
                && err.contains("dbmate.schema_migrations"),
            "{extra:?}: {err}"
        );
    }
    // So is runbook's own table in both places.
    db.sql(
        "DROP TABLE public.schema_migrations, dbmate.schema_migrations;\n\
         CREATE TABLE public.runbook_migrations (version text, name text, checksum text, \
           applied_at timestamptz, statements_done int, run_id text);\n\
         CREATE TABLE dbmate.runbook_migrations (LIKE public.runbook_migrations);",
    );
    let (code, out, err) = migrations(&["status"], dir.path(), &url);
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("public.runbook_migrations (runbook), dbmate.runbook_migrations (runbook)"),
        "{err}"
    );
    db.sql("DROP TABLE public.runbook_migrations, dbmate.runbook_migrations");
    // Prisma's table in the schema its URL names.
    let prisma = files(&[("20240101000000_init/migration.sql", "SELECT 1;\n")]);
    db.sql(
        "CREATE SCHEMA app; CREATE TABLE app._prisma_migrations (\
           id varchar(36) PRIMARY KEY, checksum varchar(64) NOT NULL, finished_at timestamptz,\
           migration_name varchar(255) NOT NULL, logs text, rolled_back_at timestamptz,\
           started_at timestamptz NOT NULL DEFAULT now(), applied_steps_count integer NOT NULL DEFAULT 0);",
    );
    let (code, out, err) = migrations(
        &["status"],
        prisma.path(),
        &format!("{}?schema=app", db.url),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("prisma history in app._prisma_migrations (detected)"),
        "{out}"
    );
}

/// On a database with no history, a Prisma directory's migrations were
/// recorded in a new runbook table, which `prisma migrate deploy` does not
/// read: an application that runs it at start-up (documenso's image does)
/// ran them all again, and stopped at the first `CREATE TABLE`. A new
/// history is now the directory's tool's own table where that table marks
/// a script that stops half-way, as Prisma's does. dbmate's cannot, so a
/// dbmate directory keeps runbook's own, and the step says what that means.
#[test]
fn a_new_history_is_the_directorys_tools_where_it_marks_a_script_that_stopped() {
    let db = Db::fresh();
    let dir = files(&[
        ("20240101000000_init/migration.sql", INIT),
        ("20240102000000_add/migration.sql", ADD),
    ]);
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["20240101000000", "20240102000000"]);
    let details = &run.step("apply")["details"];
    assert_eq!(details["history_format"], "prisma", "{details}");
    assert_eq!(details["warnings"], serde_json::Value::Null, "{details}");
    assert_eq!(
        db.sql(&format!(
            "SELECT string_agg(migration_name || ' ' || (finished_at IS NOT NULL) || ' ' \
             || (checksum = encode(sha256(convert_to(E'{}', 'UTF8')), 'hex')), ',' ORDER BY migration_name) \
             FROM _prisma_migrations",
            INIT.replace('\n', "\\n")
        )),
        "20240101000000_init true true,20240102000000_add true false"
    );
    assert_eq!(
        db.sql("SELECT to_regclass('public.runbook_migrations') IS NULL"),
        "t"
    );
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("prisma history in public._prisma_migrations (detected)"),
        "{out}"
    );
    assert_eq!(
        states(&out),
        ["20240101000000 applied", "20240102000000 applied"]
    );
    // runbook wrote these rows, and Prisma's table keeps no writer: the
    // status names none rather than say Prisma applied them.
    assert!(!out.contains("by prisma"), "{out}");

    let db = Db::fresh();
    let dir = files(&[(
        "20240101000000_init.sql",
        "-- migrate:up\nCREATE TABLE users (id bigint PRIMARY KEY);\n-- migrate:down\nDROP TABLE users;\n",
    )]);
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("warning: dbmate's own history table is not made"),
        "{out}"
    );
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["20240101000000"]);
    let details = &run.step("apply")["details"];
    assert_eq!(details["history_format"], "runbook", "{details}");
    assert_eq!(
        details["warnings"][0],
        "dbmate's own history table is not made: it cannot mark a script that stops half-way, \
         and runbook's can. dbmate's own migrator will not see these migrations as applied (an \
         application that runs it at start-up would run them again); `history: {format: dbmate}` \
         keeps dbmate's table instead",
        "{details}"
    );
    assert_eq!(db.sql("SELECT count(*) FROM runbook_migrations"), "1");
    // Said when the table is made, not on every run after it.
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.step("apply")["details"]["warnings"],
        serde_json::Value::Null
    );
}

/// SQLx's files are `plain` or `pairs`, as golang-migrate's are `pairs`,
/// and Refinery's have Flyway's names: the files alone do not say which
/// tool deploys them. On a new database, a SQLx crate's directory got
/// runbook's own table, so the application's `sqlx::migrate!()` ran every
/// migration again at start-up and failed ("relation already exists"),
/// after a run that SUCCEEDED; a Refinery crate's got Flyway's table. The
/// project's manifest says which migrator it is.
#[test]
fn a_new_history_is_the_one_the_project_s_migrator_keeps() {
    let db = Db::fresh();
    let project = files(&[
        (
            "Cargo.toml",
            "[package]\nname = \"app\"\n[dependencies]\nsqlx = { version = \"0.8\", features = [\"postgres\"] }\n",
        ),
        ("migrations/20240101000000_init.sql", INIT),
        ("migrations/20240102000000_add_email.sql", ADD),
        (
            "migrations/20240103000000_email_index.sql",
            "CREATE INDEX CONCURRENTLY users_email ON users (email);\n",
        ),
    ]);
    let dir = project.path().join("migrations");
    let (code, out, err) = migrations(&["status"], &dir, &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("sqlx history in public._sqlx_migrations"),
        "{out}"
    );
    assert!(
        out.contains("note: the project's migrator: ")
            && out.contains("Cargo.toml depends on sqlx"),
        "{out}"
    );
    let (_case, run) = migrate(&db, &dir, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        applied(&run),
        ["20240101000000", "20240102000000", "20240103000000"]
    );
    let details = &run.step("apply")["details"];
    assert_eq!(details["history_format"], "sqlx");
    // And the files are judged as SQLx runs them: in a transaction, unless
    // the first line is `-- no-transaction`.
    assert!(
        details["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("20240103000000_email_index.sql:1: sqlx would fail this script"),
        "{details}"
    );
    assert!(
        run.stderr.contains("Cargo.toml depends on sqlx"),
        "{}",
        run.stderr
    );
    assert_eq!(
        db.sql(&format!(
            "SELECT string_agg(version || ' ' || description || ' ' || success || ' ' \
             || (checksum = sha384(convert_to(E'{}', 'UTF8'))), ',' ORDER BY version) \
             FROM _sqlx_migrations",
            INIT.replace('\n', "\\n")
        )),
        "20240101000000 init true true,20240102000000 add email true false,\
         20240103000000 email index true false"
    );
    assert_eq!(
        db.sql("SELECT to_regclass('public.runbook_migrations') IS NULL"),
        "t"
    );

    let db = Db::fresh();
    let project = files(&[
        (
            "go.mod",
            "module example.com/app\n\ngo 1.22\n\nrequire (\n\tgithub.com/golang-migrate/migrate/v4 v4.17.0\n\tgithub.com/lib/pq v1.10.9 // indirect\n)\n",
        ),
        // In a repository, the manifest at its root is found from below.
        (".git/HEAD", "ref: refs/heads/main\n"),
        ("db/migrations/1_init.up.sql", INIT),
        ("db/migrations/1_init.down.sql", "DROP TABLE users;\n"),
        ("db/migrations/2_add.up.sql", ADD),
        ("db/migrations/2_add.down.sql", DROP_ADD),
    ]);
    let (_case, run) = migrate(&db, &project.path().join("db/migrations"), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.step("apply")["details"]["history_format"],
        "golang-migrate"
    );
    assert_eq!(
        db.sql("SELECT version || ' ' || dirty FROM schema_migrations"),
        "2 false"
    );

    let db = Db::fresh();
    let project = files(&[
        (
            "Cargo.toml",
            "[package]\nname = \"app\"\n[dependencies]\nrefinery = \"0.8\"\n",
        ),
        ("migrations/V1__init.sql", INIT),
    ]);
    let (_case, run) = migrate(&db, &project.path().join("migrations"), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let details = &run.step("apply")["details"];
    assert_eq!(details["history_format"], "runbook", "{details}");
    assert!(
        details["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("refinery's own history table is not made"),
        "{details}"
    );
    assert_eq!(
        db.sql("SELECT to_regclass('public.flyway_schema_history') IS NULL"),
        "t"
    );

    // Without a manifest that names one, the files' format decides, as before.
    let db = Db::fresh();
    let dir = files(&[("20240101000000_init.sql", INIT)]);
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.step("apply")["details"]["history_format"], "runbook");
}

/// A new history goes where the tool itself would make it given the same
/// URL: dbmate makes its table in the first schema of `search_path`
/// (creating that schema), Prisma in its `schema`, and the other tools in
/// the current schema. It was made in `public`, where the tool would not
/// look: its next deploy would run every migration again, and a role
/// allowed only its own schema could not make it at all.
#[test]
fn a_new_history_is_made_in_the_schema_the_url_names() {
    let db = Db::fresh();
    db.sql("CREATE SCHEMA measure");
    let dir = files(&[(
        "20240101000000_init.sql",
        "-- migrate:up\nCREATE TABLE measure.users (id bigint PRIMARY KEY);\n-- migrate:down\nDROP TABLE measure.users;\n",
    )]);
    let case = Case::new(&format!(
        "{HEAD}phases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: apply\n        migrate:\n          dir: {}\n          history: {{format: dbmate}}\n",
        dir.path().display()
    ));
    let run = case.exec(&format!("{}?search_path=dbmate,measure", db.url), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["20240101000000"]);
    assert_eq!(
        db.sql("SELECT string_agg(version, ',') FROM dbmate.schema_migrations"),
        "20240101000000"
    );
    assert_eq!(
        db.sql("SELECT to_regclass('public.schema_migrations') IS NULL"),
        "t"
    );
    // runbook's own history, with nothing to detect, in Prisma's schema.
    let db = Db::fresh();
    db.sql("CREATE SCHEMA measure; CREATE SCHEMA app");
    let case = Case::new(&format!(
        "{HEAD}phases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: apply\n        migrate:\n          dir: {}\n",
        dir.path().display()
    ));
    let url = format!("{}?schema=app", db.url);
    let run = case.exec(&url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["20240101000000"]);
    assert_eq!(db.sql("SELECT count(*) FROM app.runbook_migrations"), "1");
    assert_eq!(
        db.sql("SELECT to_regclass('public.runbook_migrations') IS NULL"),
        "t"
    );
    let (code, out, err) = migrations(&["status"], dir.path(), &url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("app.runbook_migrations"), "{out}");
}

/// Convoy calls sql-migrate's `SetSchema("convoy")`, so its history is
/// `convoy.gorp_migrations`, off the search path where detection looked:
/// runbook found nothing, started its own history, and ran every migration
/// again. It is refused with the table named; naming it goes on in
/// sql-migrate's terms.
#[test]
fn a_history_outside_the_search_path_is_named_not_run_again() {
    let db = Db::fresh();
    db.sql(
        "CREATE TABLE a (id int); INSERT INTO a VALUES (1);
         CREATE SCHEMA convoy;
         CREATE TABLE convoy.gorp_migrations (id varchar(255) NOT NULL PRIMARY KEY, applied_at timestamptz);
         INSERT INTO convoy.gorp_migrations VALUES ('1_a.sql', now());",
    );
    let dir = files(&[(
        "1_a.sql",
        "-- +migrate Up\nCREATE TABLE IF NOT EXISTS a (id int);\nINSERT INTO a VALUES (1);\n-- +migrate Down\nDROP TABLE a;\n",
    )]);
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    let error = &run.step("apply")["error"];
    assert!(
        error["message"].as_str().unwrap().contains(
            "a migration history in another schema or under another name than its tool's default: convoy.gorp_migrations"
        ),
        "{error}"
    );
    assert!(
        error["hint"]
            .as_str()
            .unwrap()
            .contains("history: {table: SCHEMA.TABLE}"),
        "{error}"
    );
    assert_eq!(db.sql("SELECT count(*) FROM a"), "1", "nothing ran");
    let (_case, run) = migrate(
        &db,
        dir.path(),
        "          history: { table: convoy.gorp_migrations }\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), Vec::<String>::new());
    assert_eq!(db.sql("SELECT count(*) FROM a"), "1");
}

/// Flyway's `flyway.table` (Knex's `tableName`, golang-migrate's
/// `x-migrations-table`...) keeps the history under another name, where
/// detection did not look: runbook started a new history, and ran V1
/// again over the table V1 had made. A table with a tool's columns, under
/// any name, now stops it the same way, named; naming it goes on in
/// Flyway's terms. An application's table that only shares a key column
/// (`dirty`) does not.
#[test]
fn a_history_under_another_name_is_named_not_run_again() {
    let db = Db::fresh();
    flyway_table(&db);
    db.sql(
        "ALTER TABLE flyway_schema_history RENAME TO deploy_history;
         CREATE TABLE users (id bigint PRIMARY KEY);
         INSERT INTO deploy_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
         VALUES (1, '1', 'init', 'SQL', 'V1__init.sql', 1812668543, 'ci', 5, true);",
    );
    let dir = files(&[("V1__init.sql", INIT), ("V2__add.sql", ADD)]);
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    let error = &run.step("apply")["error"];
    assert!(
        error["message"].as_str().unwrap().contains(
            "under another name than its tool's default: public.deploy_history (flyway's columns)"
        ),
        "{error}"
    );
    assert_eq!(
        db.sql("SELECT to_regclass('flyway_schema_history') IS NULL"),
        "t"
    );
    let (_case, run) = migrate(
        &db,
        dir.path(),
        "          history: { table: public.deploy_history }\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["2"]);
    assert_eq!(
        db.sql("SELECT count(*) FROM deploy_history WHERE success"),
        "2"
    );
    // An application's table with a `dirty` column is not golang-migrate's.
    let db = Db::fresh();
    db.sql("CREATE TABLE drafts (id bigint, version bigint, dirty boolean, body text)");
    let dir = files(&[
        ("1_init.up.sql", INIT),
        ("1_init.down.sql", "DROP TABLE users;\n"),
    ]);
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["1"]);
}

/// A rehearsal of `dir` on a scratch copy of `db`.
/// Each migration's verdict in a rehearsal's details, in order.
fn verdict_list(details: &serde_json::Value) -> Vec<&str> {
    details["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["verdict"].as_str().unwrap())
        .collect()
}

fn rehearse_scratch(db: &Db, dir: &std::path::Path, extra: &str) -> (Case, Run) {
    let case = Case::new(&format!(
        "{HEAD}phases:\n  - id: verify\n    kind: verify\n    steps:\n      - id: rehearse\n        rehearse:\n          dir: {}\n          scratch: true\n{extra}",
        dir.display()
    ));
    let run = case.exec(&db.url, &[]);
    (case, run)
}

#[test]
fn a_forward_only_rehearsal_checks_drift_against_a_fresh_apply_and_names_destroyed_data() {
    let db = Db::fresh();
    let dir = files(&[
        (
            "20240101000000_init/migration.sql",
            "CREATE TABLE users (id bigint PRIMARY KEY, legacy text);\nINSERT INTO users VALUES (1, 'a'), (2, 'b');\n",
        ),
        (
            "20240102000000_drop_legacy/migration.sql",
            "ALTER TABLE users DROP COLUMN legacy;\n",
        ),
    ]);
    // The first migration is applied, as Prisma records it.
    let (_case, run) = migrate(
        &db,
        dir.path(),
        "          to: 20240101000000\n          history: { format: prisma }\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.sql("SELECT count(*) FROM _prisma_migrations"), "1");

    let (_case, run) = rehearse_scratch(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let d = &run.step("rehearse")["details"];
    let set: Vec<(String, String)> = d["set_findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["verdict"].as_str().unwrap().into(),
                f["message"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(set.len(), 2, "{set:?}");
    assert_eq!(set[0].0, "forward_only");
    assert_eq!(set[1].0, "ok");
    assert!(
        set[1].1.contains("no drift") && set[1].1.contains("1 applied migration(s)"),
        "{set:?}"
    );
    let o = &d["migrations"][0];
    assert_eq!(o["version"], "20240102000000");
    assert_eq!(o["verdict"], "destroys_data", "{o}");
    assert_eq!(
        o["findings"][0]["tables"][0],
        "public.users: column(s) legacy are gone, with their data"
    );

    // Someone adds an index by hand: the schema drifted from the migrations.
    db.sql("CREATE INDEX users_legacy ON users (legacy)");
    let (_case, run) = rehearse_scratch(&db, dir.path(), "");
    assert_eq!(
        run.code, 3,
        "drift fails the rehearsal by default: {}",
        run.stderr
    );
    let d = &run.step("rehearse")["details"];
    let drift = &d["set_findings"][1];
    assert_eq!(drift["verdict"], "drift", "{d}");
    assert!(
        drift["message"].as_str().unwrap().contains("users_legacy"),
        "{drift}"
    );
    // A team that wants destroyed data to fail says so.
    db.sql("DROP INDEX users_legacy");
    let (_case, run) = rehearse_scratch(&db, dir.path(), "          errors: [destroys_data]\n");
    assert_eq!(run.code, 3, "{}", run.stderr);
}

#[test]
fn a_baseline_is_written_in_each_tools_own_terms_and_migrate_goes_on_from_it() {
    let pairs = [
        ("20240101000000_init.up.sql", INIT),
        ("20240101000000_init.down.sql", "DROP TABLE users;\n"),
        ("20240102000000_add.up.sql", ADD),
        ("20240102000000_add.down.sql", DROP_ADD),
        (
            "20240103000000_more.up.sql",
            "CREATE TABLE more (id int);\n",
        ),
        ("20240103000000_more.down.sql", "DROP TABLE more;\n"),
    ];
    let dbmate = [
        (
            "20240101000000_init.sql",
            format!("-- migrate:up\n{INIT}-- migrate:down\nDROP TABLE users;\n"),
        ),
        (
            "20240102000000_add.sql",
            format!("-- migrate:up\n{ADD}-- migrate:down\n{DROP_ADD}"),
        ),
        (
            "20240103000000_more.sql",
            "-- migrate:up\nCREATE TABLE more (id int);\n-- migrate:down\nDROP TABLE more;\n"
                .to_string(),
        ),
    ];
    let goose: Vec<(&str, String)> = dbmate
        .iter()
        .map(|(f, t)| {
            let t = t.replace("-- migrate:up", "-- +goose Up");
            (*f, t.replace("-- migrate:down", "-- +goose Down"))
        })
        .collect();
    let prisma = [
        ("20240101000000_init/migration.sql", INIT),
        ("20240102000000_add/migration.sql", ADD),
        (
            "20240103000000_more/migration.sql",
            "CREATE TABLE more (id int);\n",
        ),
    ];
    let diesel = [
        ("2024-01-01-000000_init/up.sql", INIT),
        ("2024-01-01-000000_init/down.sql", "DROP TABLE users;\n"),
        ("2024-01-02-000000_add/up.sql", ADD),
        ("2024-01-02-000000_add/down.sql", DROP_ADD),
        (
            "2024-01-03-000000_more/up.sql",
            "CREATE TABLE more (id int);\n",
        ),
        ("2024-01-03-000000_more/down.sql", "DROP TABLE more;\n"),
    ];
    let drizzle = [
        (
            "meta/_journal.json",
            r#"{"entries": [{"idx": 0, "when": 1704067200000, "tag": "20240101000000_init"},
                {"idx": 1, "when": 1704153600000, "tag": "20240102000000_add"},
                {"idx": 2, "when": 1704240000000, "tag": "20240103000000_more"}]}"#,
        ),
        ("20240101000000_init.sql", INIT),
        ("20240102000000_add.sql", ADD),
        ("20240103000000_more.sql", "CREATE TABLE more (id int);\n"),
    ];
    // (tool, its files, what its table says after a baseline through 20240102000000)
    let cases: Vec<(&str, tempfile::TempDir, &str, String)> = vec![
        (
            "sqlx",
            files(&pairs),
            "SELECT string_agg(version || ' ' || description || ' ' || success || ' ' || (checksum = sha384(convert_to(CASE version WHEN 20240101000000 THEN $$CREATE TABLE users (id bigint PRIMARY KEY);$$ ELSE $$ALTER TABLE users ADD COLUMN email text;$$ END || chr(10), 'UTF8'))), ',' ORDER BY version) FROM _sqlx_migrations",
            "20240101000000 init true true,20240102000000 add true true".into(),
        ),
        (
            "diesel",
            files(&diesel),
            "SELECT string_agg(version, ',' ORDER BY version) FROM __diesel_schema_migrations",
            "20240101000000,20240102000000".into(),
        ),
        (
            "drizzle",
            files(&drizzle),
            "SELECT string_agg(created_at::text || ' ' || (hash = encode(sha256(convert_to(CASE created_at WHEN 1704067200000 THEN $$CREATE TABLE users (id bigint PRIMARY KEY);$$ ELSE $$ALTER TABLE users ADD COLUMN email text;$$ END || chr(10), 'UTF8')), 'hex')), ',' ORDER BY id) FROM drizzle.__drizzle_migrations",
            "1704067200000 true,1704153600000 true".into(),
        ),
        (
            "prisma",
            files(&prisma),
            "SELECT string_agg(migration_name || ' ' || (finished_at IS NOT NULL) || ' ' || (logs LIKE 'runbook: baselined by baseline/dba@%') || ' ' || (checksum = encode(sha256(convert_to(CASE WHEN migration_name LIKE '%init' THEN $$CREATE TABLE users (id bigint PRIMARY KEY);$$ ELSE $$ALTER TABLE users ADD COLUMN email text;$$ END || chr(10), 'UTF8')), 'hex')), ',' ORDER BY migration_name) FROM _prisma_migrations",
            "20240101000000_init true true true,20240102000000_add true true true".into(),
        ),
        (
            "knex",
            files(&pairs),
            "SELECT string_agg(name || ':' || batch, ',' ORDER BY id) FROM knex_migrations",
            "20240101000000_init.up.sql:1,20240102000000_add.up.sql:1".into(),
        ),
        (
            "golang-migrate",
            files(&pairs),
            "SELECT version || ' ' || dirty FROM schema_migrations",
            "20240102000000 false".into(),
        ),
        (
            "dbmate",
            owned(&dbmate),
            "SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations",
            "20240101000000,20240102000000".into(),
        ),
        (
            "goose",
            owned(&goose),
            "SELECT string_agg(version_id::text, ',' ORDER BY id) FROM goose_db_version",
            "0,20240101000000,20240102000000".into(),
        ),
    ];
    for (tool, dir, query, want) in cases {
        let db = Db::fresh();
        db.sql(&format!("{INIT}{ADD}"));
        let (code, out, err) = migrations(
            &[
                "baseline",
                "--version",
                "20240102000000",
                "--history-format",
                tool,
                "--as",
                "dba",
                "--yes",
            ],
            dir.path(),
            &db.url,
        );
        assert_eq!(code, 0, "{tool}: {out}{err}");
        assert_eq!(db.sql(query), want, "{tool}");
        // `migrate` detects the table and runs only what the baseline left.
        let (_case, run) = migrate(&db, dir.path(), "");
        assert_eq!(run.code, 0, "{tool}: {}", run.stderr);
        assert_eq!(applied(&run), ["20240103000000"], "{tool}");
        assert_eq!(run.step("apply")["details"]["history_format"], tool);
    }
}

/// A migration alone on its number is recorded as `0002`; once another
/// file takes the number, both are known by their file stems. The applied
/// one stays applied under its old row (it once looked pending and ran a
/// second time, inserting its rows twice), a rollback deletes that row,
/// and the same holds the other way round when the second file goes.
#[test]
fn a_number_that_becomes_shared_keeps_its_applied_migration_applied() {
    let db = Db::fresh();
    let mut list = vec![
        ("0001_a.up.sql", "CREATE TABLE a (id int);\n"),
        ("0001_a.down.sql", "DROP TABLE a;\n"),
        ("0002_b.up.sql", "INSERT INTO a VALUES (1);\n"),
        ("0002_b.down.sql", "DELETE FROM a WHERE id = 1;\n"),
    ];
    let dir = files(&list);
    let (_c, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["0001", "0002"]);

    list.push(("0002_c.up.sql", "INSERT INTO a VALUES (2);\n"));
    list.push(("0002_c.down.sql", "DELETE FROM a WHERE id = 2;\n"));
    let dir = files(&list);
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        states(&out),
        ["0001 applied", "0002_b applied", "0002_c pending"],
        "{out}"
    );
    let (_c, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["0002_c"]);
    assert_eq!(
        db.sql("SELECT string_agg(id::text, ',' ORDER BY id) FROM a"),
        "1,2"
    );

    // Rolled back past both: the row under the old key goes too.
    let (_c, run) = migrate(
        &db,
        dir.path(),
        "          direction: down\n          to: '1'\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.sql("SELECT count(*) FROM a"), "0");
    assert_eq!(
        db.sql("SELECT string_agg(version, ',' ORDER BY version) FROM runbook_migrations"),
        "0001"
    );

    // Applied while shared, then `0002_c` goes: `0002_b` is `0002` now.
    let (_c, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    list.truncate(4);
    let dir = files(&list);
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(states(&out)[..2], ["0001 applied", "0002 applied"], "{out}");
    let (_c, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(applied(&run).is_empty(), "{:?}", applied(&run));
    assert_eq!(
        db.sql("SELECT string_agg(id::text, ',' ORDER BY id) FROM a"),
        "1,2"
    );
}

/// nakama's sql-migrate files end sql-migrate's transaction themselves to
/// build an index CONCURRENTLY, then open a new one for sql-migrate to
/// commit: `COMMIT; CREATE INDEX CONCURRENTLY ...; BEGIN; UPDATE ...`.
/// runbook runs such a file outside a transaction, so the file's last
/// BEGIN was left open: the history row and the UPDATE went into it, and
/// the session's end rolled them back. The run said the migration was
/// applied; its history said it was not, with its index built. Now what
/// the file left open is committed with its row, as sql-migrate's own
/// COMMIT does; and a failure inside it rolls it back, leaving the session
/// usable.
#[test]
fn a_file_that_ends_in_a_transaction_it_opened_is_committed_with_its_row() {
    let db = Db::fresh();
    let up = "CREATE TABLE a (id int, seen bool DEFAULT false);\nINSERT INTO a VALUES (1);\nCOMMIT;\n-- Concurrent index creation cannot be done inside a transaction.\nCREATE INDEX CONCURRENTLY a_id ON a (id);\nBEGIN;\nUPDATE a SET seen = true;\n";
    let dir = files(&[(
        "20240101000000-a.sql",
        &format!("-- +migrate Up\n{up}\n-- +migrate Down\nDROP TABLE a;\n"),
    )]);
    let (_case, run) = migrate(
        &db,
        dir.path(),
        "          history: { format: sql-migrate }\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["20240101000000"]);
    assert_eq!(
        db.sql("SELECT string_agg(id, ',') FROM gorp_migrations"),
        "20240101000000-a.sql"
    );
    assert_eq!(db.sql("SELECT bool_and(seen)::text FROM a"), "true");
    assert!(
        run.stderr
            .contains("it ended inside a transaction it opened"),
        "{}",
        run.stderr
    );
    // A failure after the file's BEGIN: what followed it is undone, the
    // step fails part-way, and the run goes on to its report and rollback
    // on a session that still works.
    let db = Db::fresh();
    let bad = files(&[(
        "20240101000000-a.sql",
        &format!(
            "-- +migrate Up\n{}SELECT 1/0;\n-- +migrate Down\nDROP TABLE a;\n",
            up
        ),
    )]);
    let (_case, run) = migrate(
        &db,
        bad.path(),
        "          history: { format: sql-migrate }\n        rollback:\n          - id: after\n            sql: CREATE TABLE after_failure (id int)\n",
    );
    // Its table and index stay: the rollback ran, and says they differ.
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("4 statement(s) of it committed before the failure"),
        "{}",
        run.stderr
    );
    assert_eq!(db.sql("SELECT bool_or(seen)::text FROM a"), "false");
    assert_eq!(db.sql("SELECT count(*) FROM gorp_migrations"), "0");
    assert_eq!(
        db.sql("SELECT to_regclass('after_failure') IS NOT NULL"),
        "t",
        "{}",
        run.stderr
    );
}

/// A Flyway step that also ran a repeatable migration: its `applied` holds
/// an entry without a version, and `to: before_run` read that as "nothing
/// recorded" and was refused. The versioned ones it applied are undone;
/// a repeatable has no down.
#[test]
fn before_run_undoes_the_versioned_migrations_of_a_step_that_ran_a_repeatable() {
    let db = Db::fresh();
    let dir = files(&[
        ("V1__init.sql", INIT),
        ("U1__init.sql", "DROP TABLE users;\n"),
        (
            "R__one.sql",
            "CREATE OR REPLACE VIEW one AS SELECT 1 AS n;\n",
        ),
    ]);
    let (_case, run) = migrate(
        &db,
        dir.path(),
        &format!(
            "        rollback:\n          id: undo\n          migrate: {{ dir: {}, direction: down, to: before_run }}\n      - id: breaks\n        sql: SELECT 1/0\n",
            dir.path().display()
        ),
    );
    assert_eq!(run.step("apply")["details"]["history_format"], "flyway");
    assert_eq!(run.step("undo")["status"], "succeeded", "{}", run.stderr);
    assert_eq!(db.sql("SELECT to_regclass('users') IS NULL"), "t");
}

/// sqitch's verify scripts (`verify/`) run after each up and re-up in a
/// rehearsal: one that fails is the up's failure, as `sqitch deploy
/// --verify` would revert the change; what a verify script does is rolled
/// back, its own BEGIN and ROLLBACK aside. One that only psql can read is
/// not run, and the rehearsal says so.
#[test]
fn a_rehearsal_runs_sqitchs_verify_scripts_after_each_up() {
    let plan = "%syntax-version=1.0.0\n%project=p\n\nusers 2024-01-01T00:00:00Z Ann <ann@example.com>\norders 2024-01-02T00:00:00Z Ann <ann@example.com>\nnotes 2024-01-03T00:00:00Z Ann <ann@example.com>\ntags 2024-01-04T00:00:00Z Ann <ann@example.com>\n";
    let sqitch = files(&[
        ("sqitch.plan", plan),
        (
            "deploy/users.sql",
            "BEGIN;\nCREATE TABLE users (id int);\nCOMMIT;\n",
        ),
        ("revert/users.sql", "BEGIN;\nDROP TABLE users;\nCOMMIT;\n"),
        // The deploy forgot the column its verify script checks.
        (
            "verify/users.sql",
            "BEGIN;\nSELECT id, name FROM users WHERE false;\nROLLBACK;\n",
        ),
        (
            "deploy/orders.sql",
            "BEGIN;\nCREATE TABLE orders (id int);\nCOMMIT;\n",
        ),
        ("revert/orders.sql", "BEGIN;\nDROP TABLE orders;\nCOMMIT;\n"),
        // It writes, and what it writes must not stay: a table it left
        // would stay after the down (`parity_mismatch`).
        (
            "verify/orders.sql",
            "BEGIN;\nCREATE TABLE verify_left (x int);\nINSERT INTO orders VALUES (1);\nSELECT 1/count(*) FROM orders;\nROLLBACK;\n",
        ),
        ("deploy/notes.sql", "CREATE TABLE notes (id int);\n"),
        ("revert/notes.sql", "DROP TABLE notes;\n"),
        (
            "verify/notes.sql",
            "\\set ON_ERROR_STOP 1\nSELECT id FROM notes;\n",
        ),
        // In runbook's transaction: its down and re-up run in one, rolled
        // back after, and the verify script in a savepoint of it.
        ("deploy/tags.sql", "CREATE TABLE tags (id int);\n"),
        ("revert/tags.sql", "DROP TABLE tags;\n"),
        (
            "verify/tags.sql",
            "BEGIN;\nCREATE TABLE verify_left_too (x int);\nSELECT id FROM tags;\nROLLBACK;\n",
        ),
    ]);
    let (_case, run) = rehearse_scratch(&Db::fresh(), sqitch.path(), "");
    assert_eq!(run.code, 3, "{}", run.stderr);
    let details = &run.step("rehearse")["details"];
    let verdicts = verdict_list(details);
    assert_eq!(verdicts, ["up_failure", "ok", "ok", "ok"], "{details}");
    let legs = |i: usize| -> Vec<(String, bool)> {
        details["migrations"][i]["legs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| (l["leg"].as_str().unwrap().to_string(), l["ok"] == true))
            .collect()
    };
    let down = details["migrations"][3]["legs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["leg"] == "down")
        .unwrap();
    assert_eq!(down["transaction"], true, "{details}");
    // Each verify script that ran is a leg of its own, with how it went;
    // one that did not run is not.
    let named = |list: &[(&str, bool)]| -> Vec<(String, bool)> {
        list.iter().map(|(l, ok)| (l.to_string(), *ok)).collect()
    };
    assert_eq!(
        legs(0),
        named(&[
            ("up", true),
            ("verify", false),
            ("down", true),
            ("reup", true),
            ("verify", false)
        ]),
        "{details}"
    );
    assert_eq!(
        legs(1),
        named(&[
            ("up", true),
            ("verify", true),
            ("down", true),
            ("reup", true),
            ("verify", true)
        ]),
        "{details}"
    );
    assert_eq!(
        legs(2),
        named(&[("up", true), ("down", true), ("reup", true)]),
        "{details}"
    );
    let messages: Vec<&str> = details["migrations"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    assert!(
        messages.contains(&"its verify script (verify/users.sql) failed after the up: column \"name\" does not exist"),
        "{details}"
    );
    assert!(
        messages.contains(&"its verify script (verify/users.sql) failed after the up again: column \"name\" does not exist"),
        "{details}"
    );
    assert!(
        details["warnings"]
            .to_string()
            .contains("verify/notes.sql:1 has")
            && details["warnings"]
                .to_string()
                .contains("a rehearsal does not run this verify script"),
        "{details}"
    );
    // The whole set at once: after each up, and each up again.
    let (_case, run) = rehearse_scratch(&Db::fresh(), sqitch.path(), "          mode: whole_set\n");
    assert_eq!(run.code, 3, "{}", run.stderr);
    let details = &run.step("rehearse")["details"];
    let findings = details["migrations"][0]["findings"].to_string();
    assert!(
        findings.contains("failed after the up:")
            && findings.contains("failed after the up again:"),
        "{details}"
    );
    assert_eq!(details["migrations"][1]["verdict"], "ok", "{details}");
}

#[test]
fn a_liquibase_changelog_runs_its_changesets_in_its_order_and_rehearses_their_rollbacks() {
    // A Spring application's layout: the master names files from the
    // classpath's root, and 2.2 before 2.2.1, which sorts first by path.
    let project = files(&[
        (
            "resources/db/changelog/db.changelog-master.yaml",
            "databaseChangeLog:\n  - include:\n      file: db/changelog/db.changelog-2.2.sql\n  - include:\n      file: db/changelog/db.changelog-2.2.1.sql\n  - includeAll:\n      path: later/\n      relativeToChangelogFile: true\n",
        ),
        (
            "resources/db/changelog/db.changelog-2.2.sql",
            "--liquibase formatted sql\n\n--changeset ann:users\nCREATE TABLE users (id bigint PRIMARY KEY);\n--rollback DROP TABLE users;\n\n--changeset ann:email\nALTER TABLE users ADD COLUMN email text;\n/* liquibase rollback\nALTER TABLE users\n  DROP COLUMN email;\n*/\n\n--changeset ann:h2-only dbms:h2\nCREATE TABLE h2_only (id int);\n",
        ),
        (
            "resources/db/changelog/db.changelog-2.2.1.sql",
            "--liquibase formatted sql\n\n--changeset ann:email-index runInTransaction:false\nCREATE INDEX CONCURRENTLY users_email ON users (email);\n--rollback DROP INDEX CONCURRENTLY users_email;\n\n--changeset ann:audit\nCREATE TABLE audit (id int);\n--rollback not required\n",
        ),
        (
            "resources/db/changelog/later/a.sql",
            "--liquibase formatted sql\n--changeset bob:seed context:test\nINSERT INTO users VALUES (1, 'a@example.com');\n--rollback DELETE FROM users WHERE id = 1;\n",
        ),
        (
            "resources/db/changelog/later/b.sql",
            "CREATE TABLE raw_made (id int);\n",
        ),
    ]);
    let dir = project.path().join("resources/db/changelog");
    let (_case, run) = rehearse_scratch(&Db::fresh(), &dir, "");
    assert_eq!(run.code, 3, "{}", run.stderr);
    let details = &run.step("rehearse")["details"];
    let named: Vec<(&str, &str)> = details["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), m["verdict"].as_str().unwrap()))
        .collect();
    assert_eq!(
        named,
        [
            ("users", "ok"),
            ("email", "ok"),
            ("email-index", "ok"),
            ("audit", "irreversible"),
            ("seed", "ok"),
            ("b", "irreversible")
        ],
        "{details}"
    );
    assert!(
        details["warnings"]
            .to_string()
            .contains("context or labels (later/a.sql:2 (bob:seed))"),
        "{details}"
    );
    // And the step's log says it, as a migrate step's does.
    assert!(
        run.log_lines(Some("rehearse"))
            .iter()
            .any(|l| l.contains("warning: 1 changeset(s) have a context or labels")),
        "{}",
        run.stderr
    );

    // Applied for real: recorded in runbook's own history, and the step
    // says Liquibase will not see it.
    let db = Db::fresh();
    let (_case, run) = migrate(&db, &dir, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        applied(&run),
        ["0001", "0002", "0003", "0004", "0005", "0006"]
    );
    assert!(
        run.stderr
            .contains("liquibase's own history table is not made"),
        "{}",
        run.stderr
    );
    let rows = db.sql("SELECT count(*) FROM users");
    assert_eq!(rows, "1");
    // Each row is the changeset's name, its file from the classpath's root.
    assert_eq!(
        db.sql("SELECT version FROM runbook_migrations ORDER BY applied_at, version LIMIT 1"),
        "db/changelog/db.changelog-2.2.sql::users::ann"
    );
}

/// The formatted SQL of `liquibase_s_databasechangelog_is_read_and_written_as_liquibase_keeps_it`
/// and the MD5SUMs Liquibase 4.28 wrote for its changesets.
const LB_INIT: &str = "--liquibase formatted sql\n\n--changeset alice:1\nCREATE TABLE a (id int primary key, name text);\nINSERT INTO a VALUES (1, 'one');\n--rollback DROP TABLE a;\n\n--changeset alice:2 runInTransaction:false\nCREATE INDEX CONCURRENTLY a_name ON a (name);\n";
const LB_MORE: &str = "--liquibase formatted sql\n--changeset bob:3 labels:x context:prod\n-- comment: adds b\nALTER TABLE a ADD COLUMN b int;\n--rollback ALTER TABLE a DROP COLUMN b;\n";
const LB_SUMS: [&str; 3] = [
    "9:5b1e2434e817debdac552ff11189a7b9",
    "9:758ed93bc1966770d3911342d8807db1",
    "9:0c485e197a6c83d07c5ae56bae48fb41",
];

/// A database where Liquibase 4.28 ran changesets 1 and 2 of [`LB_INIT`],
/// with its tables and rows as it wrote them, its files named by `prefix`.
fn liquibase_ran(db: &Db, prefix: &str) {
    db.sql("CREATE TABLE databasechangelog (id VARCHAR(255) NOT NULL, author VARCHAR(255) NOT NULL, filename VARCHAR(255) NOT NULL, dateexecuted TIMESTAMP WITHOUT TIME ZONE NOT NULL, orderexecuted INTEGER NOT NULL, exectype VARCHAR(10) NOT NULL, md5sum VARCHAR(35), description VARCHAR(255), comments VARCHAR(255), tag VARCHAR(255), liquibase VARCHAR(20), contexts VARCHAR(255), labels VARCHAR(255), deployment_id VARCHAR(10))");
    db.sql("CREATE TABLE databasechangeloglock (id INTEGER NOT NULL, locked BOOLEAN NOT NULL, lockgranted TIMESTAMP WITHOUT TIME ZONE, lockedby VARCHAR(255), CONSTRAINT databasechangeloglock_pkey PRIMARY KEY (id))");
    db.sql("INSERT INTO databasechangeloglock (id, locked) VALUES (1, false)");
    db.sql(&format!(
        "INSERT INTO databasechangelog VALUES
         ('1', 'alice', '{prefix}001-init.sql', '2026-12-04 04:21:09.734468', 1, 'EXECUTED', '{}', 'sql', '', NULL, '4.28.0', NULL, NULL, '6358069703'),
         ('2', 'alice', '{prefix}001-init.sql', '2026-12-04 04:21:09.743265', 2, 'EXECUTED', '{}', 'sql', '', NULL, '4.28.0', NULL, NULL, '6358069703')",
        LB_SUMS[0], LB_SUMS[1]
    ));
    db.sql("CREATE TABLE a (id int primary key, name text); INSERT INTO a VALUES (1, 'one'); CREATE INDEX a_name ON a (name)");
}

#[test]
fn liquibase_s_databasechangelog_is_read_and_written_as_liquibase_keeps_it() {
    // As a project runs Liquibase from its root: `liquibase update
    // --changelog-file db/changelog/master.yaml`, the master naming a file
    // from there and one beside itself.
    let project = files(&[
        (
            "db/changelog/master.yaml",
            "databaseChangeLog:\n  - include:\n      file: db/changelog/001-init.sql\n  - include:\n      file: changes/002-more.sql\n      relativeToChangelogFile: true\n",
        ),
        ("db/changelog/001-init.sql", LB_INIT),
        ("db/changelog/changes/002-more.sql", LB_MORE),
    ]);
    let dir = project.path().join("db/changelog");
    let db = Db::fresh();
    liquibase_ran(&db, "db/changelog/");
    let (code, out, err) = migrations(&["status"], &dir, &db.url);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("liquibase history in public.databasechangelog (detected)"),
        "{out}"
    );
    assert_eq!(
        states(&out),
        ["0001 applied", "0002 applied", "0003 pending"],
        "{out}"
    );

    // The pending one runs, and its row is Liquibase's: its file as
    // Liquibase names it, its checksum as Liquibase computes it, next in
    // order. Liquibase's lock was taken and let go.
    let (_case, run) = migrate(&db, &dir, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["0003"]);
    assert_eq!(
        db.sql("SELECT concat_ws('|', id, author, filename, orderexecuted, exectype, md5sum, description, comments, contexts, labels, length(deployment_id)) FROM databasechangelog WHERE id = '3'"),
        format!("3|bob|db/changelog/changes/002-more.sql|3|EXECUTED|{}|sql|adds b|prod|x|10", LB_SUMS[2])
    );
    assert_eq!(db.sql("SELECT locked FROM databasechangeloglock"), "f");
    assert_eq!(db.sql("SELECT count(*) FROM a WHERE b IS NULL"), "1");

    // An applied changeset edited: Liquibase fails its validation, and
    // runbook refuses it, by Liquibase's checksum.
    std::fs::write(
        dir.join("001-init.sql"),
        LB_INIT.replace("name text", "name varchar(10)"),
    )
    .unwrap();
    let (_case, run) = migrate(&db, &dir, "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("applied with Liquibase's MD5 {}", LB_SUMS[0])),
        "{}",
        run.stderr
    );
    std::fs::write(dir.join("001-init.sql"), LB_INIT).unwrap();

    // Liquibase's lock held (an application migrating at start-up): refused.
    db.sql("UPDATE databasechangeloglock SET locked = true, lockgranted = now(), lockedby = 'app-1 (10.0.0.5)'");
    let (_case, run) = migrate(
        &db,
        &dir,
        "          to: \"0002\"\n          direction: down\n",
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("nothing was changed"), "{}", run.stderr);
    assert!(
        run.stderr.contains("held by app-1 (10.0.0.5)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("liquibase release-locks"),
        "{}",
        run.stderr
    );
    assert_eq!(db.sql("SELECT count(*) FROM databasechangelog"), "3");
    db.sql("UPDATE databasechangeloglock SET locked = false, lockgranted = NULL, lockedby = NULL");

    // Rolled back: its row goes, as Liquibase's rollback deletes it.
    let (_case, run) = migrate(
        &db,
        &dir,
        "          to: \"0002\"\n          direction: down\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT string_agg(id, ',' ORDER BY orderexecuted) FROM databasechangelog"),
        "1,2"
    );

    // Liquibase run from the project's root, and runbook pointed at the
    // changelog's directory with only relative includes: the rows name the
    // files from further up, and runbook reads and writes them so.
    let project = files(&[
        (
            "master.yaml",
            "databaseChangeLog:\n  - include:\n      file: 001-init.sql\n      relativeToChangelogFile: true\n  - include:\n      file: changes/002-more.sql\n      relativeToChangelogFile: true\n  - include:\n      file: changes/003-raw.sql\n      relativeToChangelogFile: true\n",
        ),
        ("001-init.sql", LB_INIT),
        ("changes/002-more.sql", LB_MORE),
        // Saved with a byte-order mark, which Liquibase (4.28, checked)
        // reads past: no tool fails it, and its checksum is Liquibase's,
        // which leaves the mark out.
        (
            "changes/003-raw.sql",
            "\u{feff}CREATE TABLE bom2 (id int);\n",
        ),
    ]);
    let db = Db::fresh();
    liquibase_ran(&db, "db/changelog/");
    let (_case, run) = migrate(&db, project.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["0003", "0004"]);
    assert!(!run.stderr.contains("byte-order mark"), "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT concat_ws('|', id, author, filename, md5sum) FROM databasechangelog WHERE orderexecuted = 4"),
        "raw|includeAll|db/changelog/changes/003-raw.sql|9:5ac966004d42f9dcb494ce3b3966c6b6"
    );
    assert_eq!(
        db.sql("SELECT filename FROM databasechangelog WHERE id = '3'"),
        "db/changelog/changes/002-more.sql"
    );

    // A new database, with Liquibase's history asked for: both its tables,
    // and `baseline` marks a changeset run without running it.
    let db = Db::fresh();
    let (code, _, err) = migrations(
        &[
            "baseline",
            "--version",
            "0001",
            "--history-format",
            "liquibase",
            "--yes",
        ],
        project.path(),
        &db.url,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        db.sql("SELECT concat_ws('|', id, filename, exectype, md5sum) FROM databasechangelog"),
        format!("1|001-init.sql|MARK_RAN|{}", LB_SUMS[0])
    );
    assert_eq!(db.sql("SELECT count(*) FROM databasechangeloglock"), "1");

    // Liquibase's history for a directory of another tool's files, which
    // have no changesets to record: refused, before anything runs.
    let pairs = files(&[
        ("0001_users.up.sql", INIT),
        ("0001_users.down.sql", "DROP TABLE users;\n"),
    ]);
    let db = Db::fresh();
    let (_case, run) = migrate(
        &db,
        pairs.path(),
        "          history: { format: liquibase }\n",
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("which has no changesets"),
        "{}",
        run.stderr
    );
    assert_eq!(db.sql("SELECT to_regclass('users') IS NULL"), "t");
}

/// A Quarkus application's Liquibase: its master is `db/changeLog.xml`
/// where `quarkus.liquibase.change-log` names none, and its
/// `quarkus.liquibase.*` settings (default schema, change-log parameters;
/// `%prod.` over the unprefixed, `%dev.` not the deploy's) place and fill
/// the changesets as Spring's do.
#[test]
fn a_quarkus_application_s_liquibase_settings_are_read_as_spring_s() {
    const MASTER: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<databaseChangeLog xmlns=\"http://www.liquibase.org/xml/ns/dbchangelog\">\n  <include file=\"db/changes/001.sql\"/>\n</databaseChangeLog>\n";
    const CHANGES: &str = "--liquibase formatted sql\n--changeset team:1\nCREATE TABLE accounts (id int PRIMARY KEY);\nCOMMENT ON TABLE accounts IS '${owner}';\n--rollback DROP TABLE accounts;\n";
    let project = files(&[
        (".git/HEAD", "ref: refs/heads/main\n"),
        ("src/main/resources/db/changeLog.xml", MASTER),
        ("src/main/resources/db/changes/001.sql", CHANGES),
        (
            "src/main/resources/application.properties",
            "quarkus.datasource.db-kind=postgresql\nquarkus.liquibase.migrate-at-start=true\n\
             quarkus.liquibase.default-schema-name=public\n%prod.quarkus.liquibase.default-schema-name=app\n\
             %dev.quarkus.liquibase.default-schema-name=dev_only\nquarkus.liquibase.change-log-parameters.owner=acme\n",
        ),
    ]);
    let dir = project.path().join("src/main/resources/db");
    let db = Db::fresh();
    db.sql("CREATE SCHEMA app");
    let (_case, run) = migrate(&db, &dir, "          history: { format: liquibase }\n");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("db/changeLog.xml on the classpath, the master Quarkus runs where its configuration names none"),
        "{}",
        run.stderr
    );
    assert_eq!(
        db.sql("SELECT obj_description('app.accounts'::regclass) || ' ' || (to_regclass('app.databasechangelog') IS NOT NULL)"),
        "acme true"
    );
}

/// Liquibase given a default schema (Spring's
/// `spring.liquibase.default-schema`, the CLI's `defaultSchemaName`) puts
/// it first on the search path before each changeset, and keeps its
/// history there. Before, runbook made the tables in `public`, where the
/// application does not look, and the run SUCCEEDED; a database that
/// Liquibase had deployed was refused (its history "in another schema").
/// The steps after the migrate step get the session's search path back.
#[test]
fn liquibase_s_default_schema_is_where_its_changesets_and_history_go() {
    const MASTER: &str = "databaseChangeLog:\n  - include:\n      file: db/changelog/001.sql\n";
    const CHANGES: &str = "--liquibase formatted sql\n--changeset team:1\nCREATE TABLE accounts (id int PRIMARY KEY, name text);\n--rollback DROP TABLE accounts;\n--changeset team:2\nCREATE INDEX accounts_name ON accounts (name);\n--rollback DROP INDEX accounts_name;\n";
    let project = files(&[
        (
            "src/main/resources/db/changelog/db.changelog-master.yaml",
            MASTER,
        ),
        ("src/main/resources/db/changelog/001.sql", CHANGES),
        (
            "src/main/resources/application.yml",
            "spring:\n  liquibase:\n    default-schema: app\n",
        ),
    ]);
    let dir = project.path().join("src/main/resources/db/changelog");
    let tables = |db: &Db| {
        db.sql("SELECT string_agg(schemaname || '.' || tablename, ' ' ORDER BY (schemaname || '.' || tablename) COLLATE \"C\") FROM pg_tables WHERE schemaname IN ('app', 'public')")
    };
    let db = Db::fresh();
    db.sql("CREATE SCHEMA app");
    let case = Case::new(&format!(
        "{HEAD}phases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: apply\n        migrate:\n          dir: {}\n          history: {{ format: liquibase }}\n      - id: after\n        sql: CREATE TABLE later (id int)\n",
        dir.display()
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        tables(&db),
        "app.accounts app.databasechangelog app.databasechangeloglock public.later"
    );
    assert!(
        run.stderr
            .contains("Liquibase configuration: default schema app (")
            && run
                .stderr
                .contains("history: liquibase history in app.databasechangelog"),
        "{}",
        run.stderr
    );
    // Read where Liquibase keeps it, with no word from the step.
    let (code, out, err) = migrations(&["status"], &dir, &db.url);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("liquibase history in app.databasechangelog (detected)"),
        "{out}"
    );
    // A rollback runs there too.
    let (_case, run) = migrate(&db, &dir, "          direction: down\n          steps: 1\n");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT to_regclass('app.accounts_name') IS NULL"),
        "t"
    );

    // The CLI's defaults file says the same.
    let cli = liquibase_cli("liquibase.command.defaultSchemaName: app\n", CHANGES);
    let db = Db::fresh();
    db.sql("CREATE SCHEMA app");
    let (_case, run) = migrate(
        &db,
        cli.path(),
        "          history: { format: liquibase }\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        tables(&db),
        "app.accounts app.databasechangelog app.databasechangeloglock"
    );
}

/// A changeset's `${name}` takes the value the project gives Liquibase:
/// Spring's `spring.liquibase.parameters.*` (default profile), the CLI's
/// `parameter.*` in `liquibase.properties`. Before, it was refused ("Liquibase
/// fills it from its own configuration"). The MD5SUM is the one Liquibase
/// 4.28 recorded for this changeset with `parameter.tbl: widgets`. With
/// none, the environment's, then kept as written as Liquibase keeps it
/// (`missingPropertyMode`).
#[test]
fn a_changelog_parameter_takes_the_value_the_project_gives_liquibase() {
    let changes = "--liquibase formatted sql\n--changeset ann:t\nCREATE TABLE ${tbl} (id int);\n--rollback DROP TABLE ${tbl};\n";
    let master = "databaseChangeLog:\n  - include:\n      file: db/changelog/changes.sql\n";
    let spring = files(&[
        (
            "src/main/resources/db/changelog/db.changelog-master.yaml",
            master,
        ),
        ("src/main/resources/db/changelog/changes.sql", changes),
        (
            "src/main/resources/application.yml",
            "spring:\n  liquibase:\n    parameters:\n      tbl: widgets\n---\nspring:\n  config:\n    activate:\n      on-profile: dev\n  liquibase:\n    parameters:\n      tbl: dev_widgets\n",
        ),
    ]);
    let db = Db::fresh();
    let dir = spring.path().join("src/main/resources/db/changelog");
    let (_case, run) = migrate(&db, &dir, "          history: { format: liquibase }\n");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT to_regclass('widgets') IS NOT NULL AND to_regclass('dev_widgets') IS NULL"),
        "t"
    );
    let cli = liquibase_cli("parameter.tbl: widgets\n", changes);
    let db = Db::fresh();
    let (_case, run) = migrate(
        &db,
        cli.path(),
        "          history: { format: liquibase }\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT md5sum FROM databasechangelog"),
        "9:48651fd2ef84e1769c545452d94eb632"
    );
    // Without it, Liquibase keeps `${tbl}` as written (its default
    // missingPropertyMode, PRESERVE): so does runbook, with a warning, and
    // here the statement fails, having changed nothing. Where the project
    // says ERROR, refused before anything runs.
    std::fs::write(
        cli.path().join("liquibase.properties"),
        "changeLogFile: master.yaml\n",
    )
    .unwrap();
    let db = Db::fresh();
    let (_case, run) = migrate(&db, cli.path(), "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("`${tbl}` has no value")
            && run.stderr.contains(
                "Liquibase keeps it as written (missingPropertyMode PRESERVE, its default)"
            )
            && run
                .stderr
                .contains("an environment variable of its name (`tbl=... runbook exec ...`)"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("nothing was changed"), "{}", run.stderr);
    // An environment variable of its name gives it, as Liquibase reads
    // every variable as a property; one that holds a password is refused.
    let case = Case::new(&format!(
        "{HEAD}phases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: apply\n        migrate:\n          dir: {}\n",
        cli.path().display()
    ));
    let out = case
        .command(&db.url, &[])
        .env("tbl", "from_env")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(db.sql("SELECT to_regclass('from_env') IS NOT NULL"), "t");
    let out = case
        .command(&db.url, &[])
        .env("tbl", "postgres://app:hunter2-long@db/x")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains("takes its value from the environment, as Liquibase does, and the value holds a password")
            && !err.contains("hunter2"),
        "{err}"
    );
    std::fs::write(
        cli.path().join("liquibase.properties"),
        "changeLogFile: master.yaml\nliquibase.missingPropertyMode: ERROR\n",
    )
    .unwrap();
    let (_case, run) = migrate(&db, cli.path(), "");
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("`${tbl}` is a changelog property with no value")
            && run.stderr.contains("missingPropertyMode is ERROR"),
        "{}",
        run.stderr
    );
}

/// A project that renames Liquibase's history (`databaseChangeLogTableName`)
/// keeps Liquibase's lock in `databasechangeloglock` all the same. Before,
/// runbook refused the database (a history "under another name"), and
/// told the table, locked `my_changeloglock`, which no Liquibase reads: an
/// application migrating at start-up would not have waited for it.
#[test]
fn a_renamed_liquibase_history_is_read_and_locked_as_liquibase_keeps_it() {
    let users = "--liquibase formatted sql\n--changeset ann:users\nCREATE TABLE users (id int);\n--rollback DROP TABLE users;\n";
    let project = liquibase_cli("databaseChangeLogTableName: my_changelog\n", users);
    let db = Db::fresh();
    let (_case, run) = migrate(
        &db,
        project.path(),
        "          history: { format: liquibase }\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT string_agg(tablename, ' ' ORDER BY tablename COLLATE \"C\") FROM pg_tables WHERE schemaname = 'public'"),
        "databasechangeloglock my_changelog users"
    );
    let (code, out, err) = migrations(&["status"], project.path(), &db.url);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("liquibase history in public.my_changelog (detected)"),
        "{out}"
    );
    // An application's Liquibase holds the lock: the step waits its turn.
    db.sql(
        "UPDATE databasechangeloglock SET locked = true, lockedby = 'app-7', lockgranted = now()",
    );
    std::fs::write(
        project.path().join("changes.sql"),
        format!("{users}--changeset ann:orders\nCREATE TABLE orders (id int);\n--rollback DROP TABLE orders;\n"),
    )
    .unwrap();
    let (_case, run) = migrate(&db, project.path(), "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "Liquibase's lock (the row of public.databasechangeloglock) is held by app-7"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(db.sql("SELECT to_regclass('orders') IS NULL"), "t");
}

/// A Spring application runs the master its configuration names, else
/// `db/changelog/db.changelog-master.yaml`. A changelog beside it that
/// includes it and a file of dev data is not the master, although no
/// other changelog includes it: before, runbook ran it, dev data and all.
#[test]
fn the_master_changelog_is_the_one_the_project_runs() {
    let project = files(&[
        (
            "src/main/resources/db/changelog/db.changelog-master.yaml",
            "databaseChangeLog:\n  - include:\n      file: db/changelog/schema.sql\n",
        ),
        (
            "src/main/resources/db/changelog/db.changelog-dev.yaml",
            "databaseChangeLog:\n  - include:\n      file: db/changelog/db.changelog-master.yaml\n  - include:\n      file: db/changelog/dev-data.sql\n",
        ),
        (
            "src/main/resources/db/changelog/schema.sql",
            "--liquibase formatted sql\n--changeset ann:users\nCREATE TABLE users (id int);\n--rollback DROP TABLE users;\n",
        ),
        (
            "src/main/resources/db/changelog/dev-data.sql",
            "--liquibase formatted sql\n--changeset ann:dev-data\nINSERT INTO users VALUES (1);\n--rollback DELETE FROM users;\n",
        ),
    ]);
    let dir = project.path().join("src/main/resources/db/changelog");
    let db = Db::fresh();
    let (_case, run) = migrate(&db, &dir, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["0001"]);
    assert_eq!(db.sql("SELECT count(*) FROM users"), "0");
    assert!(
        run.stderr.contains("the master changelog is db.changelog-master.yaml (db/changelog/db.changelog-master.yaml on the classpath, the master Spring Boot runs")
            && run.stderr.contains("in no changelog, and do not run (dev-data.sql)"),
        "{}",
        run.stderr
    );
    // The dev profile names the other; the default profile does not.
    std::fs::write(
        project.path().join("src/main/resources/application.yml"),
        "spring:\n  application:\n    name: app\n  profiles:\n    active: prod\n---\nspring:\n  config:\n    activate:\n      on-profile: dev\n  liquibase:\n    change-log: classpath:db/changelog/db.changelog-dev.yaml\n",
    )
    .unwrap();
    let (code, out, err) = migrations(&["status"], &dir, &db.url);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("dev-data  "), "{out}");
    // Where the default profile names it, it is the master.
    std::fs::write(
        project
            .path()
            .join("src/main/resources/application.properties"),
        "spring.liquibase.change-log=classpath:/db/changelog/db.changelog-dev.yaml\n",
    )
    .unwrap();
    let (_case, run) = migrate(&db, &dir, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["0002"]);
    assert!(
        run.stderr
            .contains("the master changelog is db.changelog-dev.yaml (as ")
            && run
                .stderr
                .contains("application.properties:1 names it in spring.liquibase.change-log)"),
        "{}",
        run.stderr
    );
}

/// A Spring application deploys its changelog with the contexts its
/// `application*.yml` (or `.properties`) gives, and the Liquibase CLI with
/// those of its `liquibase.properties`. A step given none would run, on a
/// new database, the `context:test` seed those deploys never run: refused
/// before anything changes, naming the file and line, as the preflight
/// check is. Given the deploy's contexts, the seed is left out. Where the
/// project's contexts leave nothing out, nothing is refused.
#[test]
fn a_step_without_the_contexts_the_project_deploys_with_is_refused() {
    const CHANGES: &str = "--liquibase formatted sql\n--changeset ann:users\nCREATE TABLE users (id int);\n--rollback DROP TABLE users;\n--changeset ann:seed context:test\nINSERT INTO users VALUES (1);\n--rollback DELETE FROM users;\n";
    const MASTER: &str = "databaseChangeLog:\n  - include:\n      file: db/changelog/changes.sql\n";
    let spring = |config: (&str, &str)| {
        files(&[
            config,
            (
                "src/main/resources/db/changelog/db.changelog-master.yaml",
                MASTER,
            ),
            ("src/main/resources/db/changelog/changes.sql", CHANGES),
        ])
    };
    let changelog = "src/main/resources/db/changelog";
    let project = spring((
        "src/main/resources/application.yml",
        "spring:\n  datasource:\n    url: jdbc:postgresql://db/app\n  liquibase:\n    change-log: classpath:db/changelog/db.changelog-master.yaml\n    contexts: prod\n",
    ));
    let dir = project.path().join(changelog);
    let db = Db::fresh();
    let (_case, run) = migrate(&db, &dir, "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("the project deploys this changelog with Liquibase contexts `prod` (")
            && run.stderr.contains("application.yml:6, spring.liquibase.contexts); without `contexts` or `label_filter`, 1 changeset(s) those leave out would run here (0002 seed: context `test`)")
            && run.stderr.contains("`contexts: prod`"),
        "{}",
        run.stderr
    );
    assert_eq!(
        db.sql("SELECT to_regclass('users') IS NULL AND to_regclass('databasechangelog') IS NULL"),
        "t",
        "nothing was changed"
    );
    // The preflight check counts as the step would run: it fails the same.
    let case = Case::new(&format!(
        "{HEAD}phases:\n  - id: preflight\n    kind: preflight\n    steps:\n      - id: pending\n        check: {{ builtin: pending_migrations, dir: {} }}\n",
        dir.display()
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("application.yml:6"), "{}", run.stderr);
    // So does `migrations status`, as a warning.
    let (code, out, err) = migrations(&["status"], &dir, &db.url);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("a migrate step without them is refused")
            && !out.contains("runbook runs every changeset"),
        "{out}"
    );
    // Given the deploy's contexts: the seed is left out, as there.
    let (_case, run) = migrate(&db, &dir, "          contexts: prod\n");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["0001"]);
    assert_eq!(db.sql("SELECT count(*) FROM users"), "0");

    // A profile's file, with a placeholder's default, says the same.
    let project = spring((
        "src/main/resources/config/application-prod.properties",
        "spring.liquibase.contexts=${LIQUIBASE_CONTEXTS:prod}\n",
    ));
    let db = Db::fresh();
    let (_case, run) = migrate(&db, &project.path().join(changelog), "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("contexts `${LIQUIBASE_CONTEXTS:prod}` (")
            && run.stderr.contains("application-prod.properties:1"),
        "{}",
        run.stderr
    );

    // Liquibase's own defaults file, for its master: the same.
    let cli = liquibase_cli("liquibase.command.contexts: prod\n", CHANGES);
    let db = Db::fresh();
    let (_case, run) = migrate(&db, cli.path(), "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("liquibase.properties:2, liquibase.command.contexts)"),
        "{}",
        run.stderr
    );

    // Contexts that select every changeset leave nothing out: every
    // changeset runs, with the warning that says so.
    let project = spring((
        "src/main/resources/application.properties",
        "spring.liquibase.contexts=test\n",
    ));
    let db = Db::fresh();
    let (_case, run) = migrate(&db, &project.path().join(changelog), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["0001", "0002"]);
    assert!(
        run.stderr.contains("runbook runs every changeset"),
        "{}",
        run.stderr
    );
}

/// A database Liquibase deploys with `--contexts prod` never ran the
/// changelog's `context:test` seed; a migrate step told the same contexts
/// leaves it out too, and says so. Without them every changeset runs, as
/// Liquibase given none runs them, with a warning.
#[test]
fn liquibase_contexts_and_labels_leave_out_what_liquibase_leaves_out() {
    let project = files(&[(
        "changes.sql",
        "--liquibase formatted sql\n--changeset ann:users\nCREATE TABLE users (id int);\n--rollback DROP TABLE users;\n--changeset ann:seed context:test\nINSERT INTO users VALUES (1);\n--rollback DELETE FROM users;\n--changeset ann:audit context:prod labels:v2\nCREATE TABLE audit (id int);\n--rollback DROP TABLE audit;\n--changeset ann:beta labels:v2,beta\nCREATE TABLE beta (id int);\n--rollback DROP TABLE beta;\n",
    )]);
    let db = Db::fresh();
    let (_case, run) = migrate(
        &db,
        project.path(),
        "          contexts: prod\n          label_filter: \"v2 and !beta\"\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["0001", "0003"]);
    assert_eq!(db.sql("SELECT count(*) FROM users"), "0");
    assert!(
        run.stderr.contains(
            "contexts `prod` and label filter `v2 and !beta`: 2 changeset(s) left out, as Liquibase leaves them out (0002 seed, …)"
        ),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("runbook runs every changeset"),
        "{}",
        run.stderr
    );
    // pending_migrations counts as a migrate step with the same runs.
    // Without contexts, it also counts the seed the prod run passed over
    // as one a step would refuse, as a step does.
    for (args, code, refused) in [
        (", contexts: prod, label_filter: \"v2 and !beta\"", 0, 0),
        (", contexts: prod", 1, 0),
        (", max: 5", 1, 1),
    ] {
        let case = Case::new(&format!(
            "{HEAD}phases:\n  - id: preflight\n    kind: preflight\n    steps:\n      - id: pending\n        check: {{ builtin: pending_migrations, dir: {}{args} }}\n",
            project.path().display()
        ));
        let run = case.exec(&db.url, &[]);
        assert_eq!(run.code, code, "{args}: {}", run.stderr);
        let check = &run.step("pending")["check"];
        assert_eq!(
            check["expectations"][1]["actual"], refused,
            "{args}: {check}"
        );
    }
    // No contexts on that database: the seed the prod run passed over,
    // older than what it applied, is not run; the step says why.
    let (_case, run) = migrate(&db, project.path(), "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("1 pending changeset(s) with a context or labels are older than applied ones, which the runs before passed over (0002 seed: context `test`"),
        "{}",
        run.stderr
    );
    assert_eq!(db.sql("SELECT count(*) FROM users"), "0");
    // `migrations status` says the same: pending, with why a step without
    // contexts refuses it; given the contexts, left out.
    let (code, out, err) = migrations(&["status"], project.path(), &db.url);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines().any(|l| l
            .contains("0002  pending  seed  (context `test`; older than the newest applied")
            && l.contains("a migrate step without contexts refuses it")),
        "{out}"
    );
    let (code, out, err) = migrations(
        &["status", "--contexts", "prod", "--format", "json"],
        project.path(),
        &db.url,
    );
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    let states = pairs(&status["migrations"], "version", "state");
    assert_eq!(
        states,
        [
            "0001 applied",
            "0002 left out",
            "0003 applied",
            "0004 pending"
        ],
        "{out}"
    );
    let (code, _, err) = migrations(
        &["status", "--contexts", "prod and"],
        project.path(),
        &db.url,
    );
    assert_eq!(code, 5, "{err}");
    // Other contexts on the same database: what they select runs; an
    // applied changeset they leave out is still the directory's.
    let (_case, run) = migrate(&db, project.path(), "          contexts: test\n");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["0002", "0004"]);
    assert!(!run.stderr.contains("have no file"), "{}", run.stderr);
    // A rehearsal told the same rehearses what would run.
    let (_case, run) = rehearse_scratch(&Db::fresh(), project.path(), "          contexts: prod\n");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let names: Vec<&str> = run.step("rehearse")["details"]["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["users", "audit", "beta"]);

    // Without them, every changeset runs, with a warning.
    let db = Db::fresh();
    let (_case, run) = migrate(&db, project.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.sql("SELECT count(*) FROM users"), "1");
    assert!(
        run.stderr.contains("runbook runs every changeset"),
        "{}",
        run.stderr
    );

    // An expression Liquibase cannot read stops the run before it starts;
    // contexts for another tool's files change nothing.
    let db = Db::fresh();
    let (_case, run) = migrate(&db, project.path(), "          contexts: \"prod and\"\n");
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr.contains("which Liquibase cannot read"),
        "{}",
        run.stderr
    );
    // From a secret param, the value is not shown.
    let case = Case::new(&format!(
        "{HEAD}params:\n  ctx: {{ type: string, secret: true }}\nphases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: apply\n        migrate:\n          dir: {}\n          contexts: \"{{{{ params.ctx }}}}\"\n",
        project.path().display()
    ));
    let run = case.exec(&db.url, &["--set", "ctx=s3cret-context and"]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr.contains("which Liquibase cannot read"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("s3cret-context"), "{}", run.stderr);
    // A template (a param gives each environment's contexts), rendered
    // when the step runs: not the literal text.
    let (_case, run) = migrate(
        &db,
        project.path(),
        "          contexts: \"{{ 'pr' ~ 'od' }}\"\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["0001", "0003", "0004"]);
    db.sql("DROP TABLE users, audit, beta, runbook_migrations");
    let pairs = files(&[("0001_users.up.sql", INIT)]);
    let (_case, run) = migrate(&db, pairs.path(), "          contexts: prod\n");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("select Liquibase changesets"),
        "{}",
        run.stderr
    );
    assert_eq!(db.sql("SELECT to_regclass('users') IS NULL"), "t");
}

/// Liquibase runs a `runOnChange:true` changeset again when its text
/// changed, and a `runAlways:true` one on every update, each in its place:
/// so does runbook on Liquibase's history, updating the row as Liquibase
/// does (`RERAN`), and on runbook's own, whose row keeps the run that
/// applied it. A `to: before_run` undo leaves them as they are: their
/// rollbacks would drop what the earlier runs built. A new text that fails
/// changes nothing, the row included.
#[test]
fn a_changeset_liquibase_runs_again_runs_again_in_its_place_and_no_undo_destroys_it() {
    let text = |n: u8, more: &str| {
        format!(
            "--liquibase formatted sql\n--changeset ann:t\nCREATE TABLE t (id int);\n--rollback DROP TABLE t;\n--changeset ann:v runOnChange:true\nCREATE OR REPLACE VIEW v AS SELECT {n} AS n;\n--rollback DROP VIEW v;\n--changeset ann:stamp runAlways:true\nCREATE OR REPLACE FUNCTION stamp() RETURNS int LANGUAGE sql AS 'SELECT 1';\n--rollback DROP FUNCTION stamp();\n{more}"
        )
    };
    let u = "--changeset ann:u\nCREATE TABLE u (id int);\n--rollback DROP TABLE u;\n";
    let project = owned(&[("f.sql", text(1, ""))]);
    let dir = project.path();
    let history = "          history: { format: liquibase }\n";
    let db = Db::fresh();
    let (_case, run) = migrate(&db, dir, history);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["0001", "0002", "0003"]);
    let rows = "SELECT string_agg(concat_ws(':', id, exectype), ',' ORDER BY orderexecuted) FROM databasechangelog";
    assert_eq!(db.sql(rows), "t:EXECUTED,v:EXECUTED,stamp:EXECUTED");
    // Nothing changed: only the runAlways one runs again.
    let (_case, run) = migrate(&db, dir, history);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["0003"]);
    assert_eq!(
        run.step("apply")["details"]["applied"][0]["again"],
        "run_always"
    );
    assert!(
        run.stderr
            .contains("running 0003 stamp again, as Liquibase does: it says runAlways:true"),
        "{}",
        run.stderr
    );
    assert_eq!(db.sql(rows), "t:EXECUTED,v:EXECUTED,stamp:RERAN");
    // The view changed, and a changeset came after it.
    db.sql("UPDATE databasechangelog SET tag = 'v1' WHERE id = 'v'");
    let first_sum = db.sql("SELECT md5sum FROM databasechangelog WHERE id = 'v'");
    std::fs::write(dir.join("f.sql"), text(2, u)).unwrap();
    let (code, out, err) = migrations(
        &[
            "status",
            "--history-format",
            "liquibase",
            "--format",
            "json",
        ],
        dir,
        &db.url,
    );
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        pairs(&status["migrations"], "version", "state"),
        [
            "0001 applied",
            "0002 runs again",
            "0003 runs again",
            "0004 pending"
        ],
        "{out}"
    );
    let check = Case::new(&format!(
        "{HEAD}phases:\n  - id: preflight\n    kind: preflight\n    steps:\n      - id: pending\n        check: {{ builtin: pending_migrations, dir: {}, history_format: liquibase, max: 5 }}\n",
        dir.display()
    ));
    let run = check.exec(&db.url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // The changed view is behind, and counts; the runAlways one runs on
    // every update, is never behind, and is named apart.
    let rows_seen = pairs(&run.step("pending")["details"]["rows"], "version", "file");
    assert_eq!(rows_seen, ["0002 f.sql", "0004 f.sql"]);
    assert_eq!(
        run.step("pending")["details"]["run_always"],
        serde_json::json!(["f.sql"])
    );
    assert_eq!(
        run.step("pending")["details"]["rows"][0]["again"],
        "run_on_change"
    );
    assert_eq!(
        run.step("pending")["details"]["rows"][0]["out_of_order"],
        false
    );
    // Deployed, then the run fails and its undo goes back to before it:
    // the new changeset goes; the view stays as re-run, and the function
    // stays, where their rollbacks would have dropped them. The view's
    // text is not what it was before the run: a person must act (4).
    let (_case, run) = migrate(
        &db,
        dir,
        &format!(
            "{history}        rollback:\n          id: undo\n          migrate: {{ dir: {}, history: {{ format: liquibase }}, direction: down, to: before_run }}\n      - id: breaks\n        sql: SELECT 1/0\n",
            dir.display()
        ),
    );
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("schema DIFFERS from before the run: 1 object(s)"),
        "{}",
        run.stderr
    );
    assert_eq!(applied(&run), ["0002", "0003", "0004"], "{}", run.stderr);
    assert!(
        run.stderr.contains("running 0002 v again, as Liquibase does: it says runOnChange:true, and its text changed since it ran"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("out of order"), "{}", run.stderr);
    assert_eq!(run.step("undo")["status"], "succeeded", "{}", run.stderr);
    assert_eq!(
        run.step("undo")["details"]["ran_again_kept"],
        serde_json::json!(["0002 v (run_on_change)", "0003 stamp (run_always)"]),
        "{}",
        run.stderr
    );
    assert_eq!(db.sql("SELECT n FROM v"), "2");
    assert_eq!(db.sql("SELECT stamp()"), "1");
    assert_eq!(db.sql("SELECT to_regclass('u') IS NULL"), "t");
    // Its row says it ran again, with the new text's checksum; its tag kept.
    let sum = db.sql("SELECT md5sum FROM databasechangelog WHERE id = 'v'");
    assert!(sum.starts_with("9:") && sum != first_sum, "{sum}");
    assert_eq!(
        db.sql("SELECT concat_ws(':', exectype, tag) FROM databasechangelog WHERE id = 'v'"),
        "RERAN:v1"
    );
    assert_eq!(db.sql("SELECT count(*) FROM databasechangelog"), "3");
    // A rehearsal of the next change runs it twice and never rolls it back.
    std::fs::write(dir.join("f.sql"), text(3, u)).unwrap();
    let (_case, run) = rehearse_scratch(&db, dir, history);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let verdicts = pairs(
        &run.step("rehearse")["details"]["migrations"],
        "version",
        "verdict",
    );
    assert_eq!(
        verdicts,
        ["0002 forward_only", "0003 forward_only", "0004 ok"],
        "{}",
        run.stderr
    );
    assert_eq!(db.sql("SELECT n FROM v"), "2");
    let (_case, run) = rehearse_scratch(&db, dir, &format!("{history}          mode: whole_set\n"));
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("mode: per_migration"), "{}", run.stderr);

    // runbook's own history: the row keeps the run that applied it, and
    // takes the new checksum once the new text ran.
    std::fs::write(dir.join("f.sql"), text(1, "")).unwrap();
    let db = Db::fresh();
    let (_case, run) = migrate(&db, dir, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let row = "SELECT concat_ws('|', checksum, run_id, dirty, applied_at) FROM runbook_migrations WHERE name = 'v'";
    let first = db.sql(row);
    let first_run = db.sql("SELECT run_id FROM runbook_migrations WHERE name = 'v'");
    let (_case, run) = migrate(&db, dir, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["0003"], "{}", run.stderr);
    assert_eq!(db.sql(row), first);
    // A text that fails changes nothing: the row is the earlier run's.
    std::fs::write(
        dir.join("f.sql"),
        text(1, "").replace("SELECT 1 AS n", "SELECT nope AS n FROM t"),
    )
    .unwrap();
    let (_case, run) = migrate(&db, dir, "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("nothing was changed"), "{}", run.stderr);
    assert_eq!(db.sql(row), first);
    assert_eq!(db.sql("SELECT n FROM v"), "1");
    // The new text runs; a later run's undo leaves it, and the function.
    std::fs::write(dir.join("f.sql"), text(2, u)).unwrap();
    let (_case, run) = migrate(
        &db,
        dir,
        &format!(
            "        rollback:\n          id: undo\n          migrate: {{ dir: {}, direction: down, to: before_run }}\n      - id: breaks\n        sql: SELECT 1/0\n",
            dir.display()
        ),
    );
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(applied(&run), ["0002", "0003", "0004"], "{}", run.stderr);
    assert_eq!(db.sql("SELECT n FROM v"), "2");
    assert_eq!(db.sql("SELECT stamp()"), "1");
    assert_eq!(db.sql("SELECT to_regclass('u') IS NULL"), "t");
    assert_eq!(
        db.sql("SELECT run_id FROM runbook_migrations WHERE name = 'v'"),
        first_run
    );
    assert_ne!(db.sql(row), first);
    // Run again, it is applied.
    let (code, out, err) = migrations(&["status", "--format", "json"], dir, &db.url);
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        pairs(&status["migrations"], "version", "state"),
        [
            "0001 applied",
            "0002 applied",
            "0003 runs again",
            "0004 pending"
        ],
        "{out}"
    );
}

/// A changeset edited after it ran, with a `--validCheckSum` that accepts
/// the edit (the checksum recorded, its own now, or `ANY`), is applied as
/// Liquibase takes it: not refused, not run again, its row untouched.
/// Without one, the edit is refused.
#[test]
fn a_valid_checksum_accepts_an_edited_changeset_as_liquibase_does() {
    let text = |valid: &str, sql: &str| {
        format!(
            "--liquibase formatted sql\n--changeset ann:t\n{valid}{sql}\n--rollback DROP TABLE t;\n"
        )
    };
    let project = owned(&[("t.sql", text("", "CREATE TABLE t (id int);"))]);
    let dir = project.path();
    for history in ["          history: { format: liquibase }\n", ""] {
        std::fs::write(dir.join("t.sql"), text("", "CREATE TABLE t (id int);")).unwrap();
        let db = Db::fresh();
        let (_case, run) = migrate(&db, dir, history);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let rows = if history.is_empty() {
            "SELECT string_agg(checksum, ',') FROM runbook_migrations"
        } else {
            "SELECT string_agg(concat_ws(':', exectype, md5sum), ',') FROM databasechangelog"
        };
        let recorded = db.sql(rows);
        let edited = "CREATE TABLE IF NOT EXISTS t (id int);";
        std::fs::write(dir.join("t.sql"), text("", edited)).unwrap();
        let (_case, run) = migrate(&db, dir, history);
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(
            run.stderr.contains("changed since they were applied"),
            "{}",
            run.stderr
        );
        let valids: Vec<String> = if history.is_empty() {
            vec!["ANY".into()]
        } else {
            vec![db.sql("SELECT md5sum FROM databasechangelog"), "any".into()]
        };
        for valid in valids {
            let line = format!("--validCheckSum: {valid}\n");
            std::fs::write(dir.join("t.sql"), text(&line, edited)).unwrap();
            let (_case, run) = migrate(&db, dir, history);
            assert_eq!(run.code, 0, "{valid}: {}", run.stderr);
            assert!(
                run.stderr
                    .contains("nothing to do: no migration is pending"),
                "{}",
                run.stderr
            );
            assert_eq!(db.sql(rows), recorded);
        }
        let (code, out, err) = migrations(&["status", "--format", "json"], dir, &db.url);
        assert_eq!(code, 0, "{err}");
        let status: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(status["migrations"][0]["state"], "applied", "{out}");
        assert!(
            status["migrations"][0]["note"]
                .as_str()
                .is_some_and(|n| n.contains("validCheckSum accepts")),
            "{out}"
        );
    }
}

/// A project that runs two master changelogs on one database (Liquibase
/// run once with each `--changelog-file`, as a Gradle plugin's activities
/// do): `dir:` names the master, and each step runs its own, on the one
/// history. A file with the header and no changeset is no changeset, as
/// Liquibase reads it; two masters and no name are refused.
#[test]
fn dir_may_name_the_master_changelog_that_runs() {
    let include = |f: &str| {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<databaseChangeLog xmlns=\"http://www.liquibase.org/xml/ns/dbchangelog\">\n  <include file=\"{f}\" relativeToChangelogFile=\"true\"/>\n  <include file=\"empty.sql\" relativeToChangelogFile=\"true\"/>\n</databaseChangeLog>\n"
        )
    };
    let project = owned(&[
        ("db.changelog.meta.xml", include("meta.sql")),
        ("db.changelog.schema.xml", include("schema.sql")),
        ("empty.sql", "--liquibase formatted sql\n\n".to_string()),
        (
            "build.gradle",
            "liquibase {\n  activities {\n    meta {\n      changeLogFile 'db.changelog.meta.xml'\n    }\n    schema {\n      changeLogFile 'db.changelog.schema.xml'\n    }\n  }\n  runList = 'meta,schema'\n}\n".to_string(),
        ),
        (
            "meta.sql",
            "--liquibase formatted sql\n--changeset a:meta\nCREATE TABLE meta (id int);\n--rollback DROP TABLE meta;\n".to_string(),
        ),
        (
            "schema.sql",
            "--liquibase formatted sql\n--changeset a:schema\nCREATE TABLE app (id int);\n--rollback DROP TABLE app;\n".to_string(),
        ),
    ]);
    let dir = project.path();
    let db = Db::fresh();
    let (_case, run) = migrate(&db, dir, "");
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr.contains("none of them includes the others")
            && run.stderr.contains("dir: db/changelog.xml")
            && run.stderr.contains("build.gradle runs db.changelog.meta.xml (meta), then db.changelog.schema.xml (schema) with Liquibase's Gradle plugin"),
        "{}",
        run.stderr
    );
    for (master, table) in [
        ("db.changelog.meta.xml", "meta"),
        ("db.changelog.schema.xml", "app"),
    ] {
        let case = Case::new(&format!(
            "{HEAD}phases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: apply\n        migrate: {{ dir: {}, history: {{ format: liquibase }} }}\n",
            dir.join(master).display()
        ));
        let run = case.exec(&db.url, &[]);
        assert_eq!(run.code, 0, "{master}: {}", run.stderr);
        assert_eq!(applied(&run), ["0001"], "{}", run.stderr);
        assert_eq!(
            run.step("apply")["details"]["dir"],
            dir.join(master).display().to_string()
        );
        assert_eq!(
            db.sql(&format!("SELECT to_regclass('{table}') IS NOT NULL")),
            "t"
        );
    }
    assert_eq!(
        db.sql("SELECT string_agg(concat_ws(':', id, filename), ',' ORDER BY orderexecuted) FROM databasechangelog"),
        "meta:meta.sql,schema:schema.sql"
    );
    // A file that is not a changelog, or another format, is refused.
    let case = Case::new(&format!(
        "{HEAD}phases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: apply\n        migrate: {{ dir: {}, format: flyway }}\n",
        dir.join("db.changelog.meta.xml").display()
    ));
    let run = case.exec(&db.url, &[]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("is a Liquibase changelog, and the format given is flyway"),
        "{}",
        run.stderr
    );
}

/// A changeset added to a file before others (Liquibase knows changesets by
/// their file, id and author, not their places) runs, and the others do not
/// run again: in runbook's own history too, where rows written before
/// runbook named changesets so are read by their ids.
#[test]
fn a_changeset_added_before_others_runs_and_theirs_do_not_run_again() {
    let a = "--liquibase formatted sql\n--changeset x:1\nCREATE TABLE t1 (id int);\n--rollback DROP TABLE t1;\n--changeset x:2\nCREATE TABLE t2 (id int);\n--rollback DROP TABLE t2;\n";
    let added =
        format!("{a}--changeset x:2b\nCREATE TABLE t3 (id int);\n--rollback DROP TABLE t3;\n");
    let project = a_then_b(
        a,
        "--liquibase formatted sql\n--changeset y:3\nINSERT INTO t1 VALUES (1);\n--rollback DELETE FROM t1;\n",
    );
    let dir = project.path();
    for before in [false, true] {
        std::fs::write(dir.join("a.sql"), a).unwrap();
        let db = Db::fresh();
        let (_case, run) = migrate(&db, dir, "");
        assert_eq!(run.code, 0, "{}", run.stderr);
        if before {
            // As runbook wrote them before: by place.
            db.sql("UPDATE runbook_migrations SET version = CASE name WHEN '1' THEN '0001' WHEN '2' THEN '0002' ELSE '0003' END");
        }
        std::fs::write(dir.join("a.sql"), &added).unwrap();
        let (_case, run) = migrate(&db, dir, "");
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(applied(&run), ["0003"], "{}", run.stderr);
        assert_eq!(db.sql("SELECT count(*) FROM t1"), "1");
        assert_eq!(db.sql("SELECT to_regclass('t3') IS NOT NULL"), "t");
        let (code, out, err) = migrations(&["status"], dir, &db.url);
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            states(&out),
            [
                "0001 applied",
                "0002 applied",
                "0003 applied",
                "0004 applied"
            ],
            "{out}"
        );
        // Rolled back to 0002: 2b and the insert go, in the directory's order.
        let (_case, run) = migrate(
            &db,
            dir,
            "          to: \"0002\"\n          direction: down\n",
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(db.sql("SELECT count(*) FROM t1"), "0");
        assert_eq!(db.sql("SELECT to_regclass('t3') IS NULL"), "t");
        assert_eq!(db.sql("SELECT count(*) FROM runbook_migrations"), "2");
    }
    // A baseline records each changeset by its name too.
    let db = Db::fresh();
    let (code, _, err) = migrations(&["baseline", "--version", "0002", "--yes"], dir, &db.url);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        db.sql("SELECT string_agg(version, ',' ORDER BY version) FROM runbook_migrations"),
        "a.sql::1::x,a.sql::2::x"
    );
}

/// A rollback undoes the last applied first. A changeset added to an
/// earlier file (Liquibase) or a migration applied out of order ran after
/// newer ones: `steps: 1` undoes it, not the newest in the directory, whose
/// down would drop what it built on. A rollback that would keep it applied
/// while undoing one it was applied after is refused, having changed
/// nothing, unless `out_of_order: true`.
#[test]
fn a_rollback_undoes_the_last_applied_first_and_keeps_nothing_applied_after_what_it_undoes() {
    let a = "--liquibase formatted sql\n--changeset x:1\nCREATE TABLE t1 (id int);\n--rollback DROP TABLE t1;\n--changeset x:2\nCREATE TABLE t2 (id int);\n--rollback DROP TABLE t2;\n";
    let added = format!(
        "{a}--changeset x:2b\nALTER TABLE t ADD COLUMN c text DEFAULT 'kept';\n--rollback ALTER TABLE t DROP COLUMN c;\n"
    );
    let project = a_then_b(
        a,
        "--liquibase formatted sql\n--changeset y:3\nCREATE TABLE t (id int);\nINSERT INTO t VALUES (1), (2);\n--rollback DROP TABLE t;\n",
    );
    let dir = project.path();
    for history in ["", "          history: { format: liquibase }\n"] {
        std::fs::write(dir.join("a.sql"), a).unwrap();
        let db = Db::fresh();
        assert_eq!(migrate(&db, dir, history).1.code, 0);
        std::fs::write(dir.join("a.sql"), &added).unwrap();
        let (_case, run) = migrate(&db, dir, history);
        assert_eq!(applied(&run), ["0003"], "{}", run.stderr);

        // 2b (0003) ran last: one step back undoes it, and `t` keeps its rows.
        let down = |extra: &str| {
            migrate(
                &db,
                dir,
                &format!("{history}          direction: down\n{extra}"),
            )
            .1
        };
        let run = down("          steps: 1\n");
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(applied(&run), ["0003"], "{}", run.stderr);
        assert_eq!(db.sql("SELECT count(*) FROM t"), "2");
        assert_eq!(
            db.sql("SELECT count(*) FROM information_schema.columns WHERE table_name = 't'"),
            "1"
        );
        assert_eq!(migrate(&db, dir, history).1.code, 0);

        // Down to 0003 would undo 0004 alone and keep 2b, applied after it.
        let run = down("          to: \"0003\"\n");
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(
            run.stderr
                .contains("0003 (2b) was applied after 0004 (3), and would stay applied"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("nothing was changed"), "{}", run.stderr);
        assert_eq!(db.sql("SELECT count(*) FROM t"), "2");
        // Down to 0002 undoes both, the last applied first.
        let run = down("          to: \"0002\"\n");
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(applied(&run), ["0003", "0004"], "{}", run.stderr);
        assert_eq!(db.sql("SELECT to_regclass('t') IS NULL"), "t");
    }

    // runbook's own history, a migration applied out of order: it is the
    // last applied, and the first rolled back.
    let plain = files(&[
        ("0001_users.up.sql", INIT),
        ("0001_users.down.sql", "DROP TABLE users;\n"),
        (
            "0003_orders.up.sql",
            "CREATE TABLE orders (id int);\nINSERT INTO orders VALUES (1);\n",
        ),
        ("0003_orders.down.sql", "DROP TABLE orders;\n"),
    ]);
    let db = Db::fresh();
    assert_eq!(migrate(&db, plain.path(), "").1.code, 0);
    std::fs::write(plain.path().join("0002_email.up.sql"), ADD).unwrap();
    std::fs::write(plain.path().join("0002_email.down.sql"), DROP_ADD).unwrap();
    let (_case, run) = migrate(&db, plain.path(), "");
    assert_eq!(applied(&run), ["0002"], "{}", run.stderr);
    let (_case, run) = migrate(
        &db,
        plain.path(),
        "          direction: down\n          steps: 1\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["0002"], "{}", run.stderr);
    assert_eq!(db.sql("SELECT count(*) FROM orders"), "1");
    // Applied again, and rolled back to 0002 with `out_of_order: true`:
    // 0003 goes, 0002 stays, and the step says so.
    assert_eq!(migrate(&db, plain.path(), "").1.code, 0);
    let (_case, run) = migrate(
        &db,
        plain.path(),
        "          direction: down\n          to: \"0002\"\n",
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let (_case, run) = migrate(
        &db,
        plain.path(),
        "          direction: down\n          to: \"0002\"\n          out_of_order: true\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["0003"], "{}", run.stderr);
    assert_eq!(
        run.step("apply")["details"]["kept_applied_later"],
        serde_json::json!(["0002"])
    );
    assert!(
        run.stderr.contains("warning: 0002 (email) stay applied"),
        "{}",
        run.stderr
    );

    // goose's table: its rows' ids say the order, as goose reads it.
    let goose = |v: u32| {
        format!("-- +goose Up\nCREATE TABLE g{v} (id bigint);\n-- +goose Down\nDROP TABLE g{v};\n")
    };
    let dir = owned(&[("00001_a.sql", goose(1)), ("00003_c.sql", goose(3))]);
    let db = Db::fresh();
    let with = "          history: { format: goose }\n          out_of_order: true\n";
    assert_eq!(migrate(&db, dir.path(), with).1.code, 0);
    std::fs::write(dir.path().join("00002_b.sql"), goose(2)).unwrap();
    assert_eq!(applied(&migrate(&db, dir.path(), with).1), ["00002"]);
    let (_case, run) = migrate(
        &db,
        dir.path(),
        "          history: { format: goose }\n          direction: down\n          steps: 1\n",
    );
    assert_eq!(applied(&run), ["00002"], "{}", run.stderr);
    assert_eq!(db.sql("SELECT to_regclass('g3') IS NOT NULL"), "t");
}

/// A deploy to a new database makes the tool's history table. When it
/// fails and every migration it applied is rolled back, the table goes
/// too: the schema is verified equal to before the run (exit 2), not
/// "4 objects differ" (exit 4). One that fails on its first migration
/// changed nothing, and leaves no table either. Flyway's table, whose
/// undo adds rows, and Liquibase's two tables.
#[test]
fn a_failed_first_deploy_rolled_back_leaves_no_history_table_behind() {
    let flyway = files(&[
        ("V1__a.sql", "CREATE TABLE a (id bigint);\n"),
        ("U1__a.sql", "DROP TABLE a;\n"),
        ("V2__b.sql", "CREATE TABLE b (id bigint);\nSELECT 1 / 0;\n"),
        ("U2__b.sql", "DROP TABLE b;\n"),
    ]);
    let liquibase = files(&[(
        "changes.sql",
        "--liquibase formatted sql\n--changeset x:1\nCREATE TABLE a (id bigint);\n--rollback DROP TABLE a;\n--changeset x:2\nCREATE TABLE b (id bigint);\nSELECT 1 / 0;\n--rollback DROP TABLE b;\n",
    )]);
    for (dir, history, tables) in [
        (flyway.path(), "", "flyway_schema_history"),
        (
            liquibase.path(),
            ", history: { format: liquibase }",
            "databasechangelog,databasechangeloglock",
        ),
    ] {
        let case = Case::new(&format!(
            "{HEAD}phases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: apply\n        migrate: {{ dir: {0}{history} }}\n        rollback:\n          id: undo\n          migrate: {{ dir: {0}{history}, direction: down, to: before_run }}\n",
            dir.display()
        ));
        let db = Db::fresh();
        let run = case.exec(&db.url, &[]);
        assert_eq!(run.code, 2, "{tables}: {}", run.stderr);
        assert!(
            run.stderr
                .contains("which this run made and which records no migration now"),
            "{}",
            run.stderr
        );
        let left = "SELECT coalesce(string_agg(tablename, ',' ORDER BY tablename), '') FROM pg_tables WHERE schemaname = 'public'";
        assert_eq!(db.sql(left), "");
        // The first migration fails: the step changed nothing, and the
        // table it made before it is gone.
        let db = Db::fresh();
        db.sql("CREATE TABLE a (id bigint)");
        let run = case.exec(&db.url, &[]);
        assert_eq!(run.code, 1, "{tables}: {}", run.stderr);
        assert_eq!(db.sql(left), "a", "{tables}: {}", run.stderr);
        // Going down where there is no history: nothing, and no table
        // (nor Liquibase's lock table) made for it.
        let db = Db::fresh();
        let (_case, run) = migrate(
            &db,
            dir,
            &format!(
                "          direction: down\n          steps: 1\n{}",
                history.replace(", ", "          ")
            ),
        );
        assert_eq!(run.code, 0, "{tables}: {}", run.stderr);
        assert!(
            run.stderr
                .contains("nothing to do: no migration it would roll back is applied"),
            "{}",
            run.stderr
        );
        assert_eq!(db.sql(left), "", "{tables}: {}", run.stderr);
    }
}

/// atlas.sum for these files, as `atlas migrate hash` writes it: one
/// running SHA-256 over each file's name and text in turn, each file's
/// entry the state after it, and the first line the sum of the entries.
fn atlas_sum(files: &[(&str, &str)]) -> String {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut running = Sha256::new();
    let mut entries = Vec::new();
    for (name, text) in files {
        running.update(name.as_bytes());
        running.update(text.as_bytes());
        entries.push((*name, b64(&running.clone().finalize())));
    }
    let mut total = Sha256::new();
    for (name, hash) in &entries {
        total.update(name.as_bytes());
        total.update(hash.as_bytes());
    }
    let mut out = format!("h1:{}\n", b64(&total.finalize()));
    for (name, hash) in entries {
        out.push_str(&format!("{name} h1:{hash}\n"));
    }
    out
}

#[test]
fn an_atlas_directory_runs_as_atlas_runs_it_and_is_refused_when_its_sum_differs() {
    let init = (
        "20250101000000_init.sql",
        "-- Create \"users\" table\nCREATE TABLE \"users\" (\"id\" bigint NOT NULL, \"email\" text NULL, PRIMARY KEY (\"id\"));\n",
    );
    let index = (
        "20250102000000_email_index.sql",
        "-- atlas:txmode none\n\n-- Create index \"users_email\" to table: \"users\"\nCREATE INDEX CONCURRENTLY \"users_email\" ON \"users\" (\"email\");\n",
    );
    let sum = atlas_sum(&[init, index]);
    let project = files(&[
        (&format!("migrations/{}", init.0), init.1),
        (&format!("migrations/{}", index.0), index.1),
        ("migrations/atlas.sum", &sum),
    ]);
    let dir = project.path().join("migrations");
    let (_case, run) = rehearse_scratch(&Db::fresh(), &dir, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let details = &run.step("rehearse")["details"];
    assert_eq!(details["format"], "atlas", "{details}");
    let migrations = details["migrations"].as_array().unwrap();
    let verdicts: Vec<&str> = migrations
        .iter()
        .map(|m| m["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["forward_only", "forward_only"], "{details}");
    // Its directive: statement by statement, as Atlas runs it.
    assert_eq!(migrations[1]["legs"][0]["transaction"], false, "{details}");

    // Applied for real.
    let db = Db::fresh();
    let (_case, run) = migrate(&db, &dir, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["20250101000000", "20250102000000"]);
    assert_eq!(
        db.sql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'users_email'::regclass"),
        "t"
    );

    // A file edited after atlas.sum was written: Atlas refuses the
    // directory, and so does runbook, before anything runs.
    std::fs::write(
        dir.join(init.0),
        init.1.replace("\"email\" text", "\"email\" varchar(320)"),
    )
    .unwrap();
    let db = Db::fresh();
    let (_case, run) = migrate(&db, &dir, "");
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "atlas.sum:2: 20250101000000_init.sql differs from the file atlas.sum was written for"
        ),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("atlas migrate hash"), "{}", run.stderr);
    assert_eq!(db.sql("SELECT to_regclass('users') IS NULL"), "t");
}

/// Atlas's revisions table, as `atlas migrate apply` makes it.
const ATLAS_TABLE: &str = "CREATE SCHEMA atlas_schema_revisions; CREATE TABLE atlas_schema_revisions.atlas_schema_revisions (\"version\" character varying NOT NULL, \"description\" character varying NOT NULL, \"type\" bigint NOT NULL DEFAULT 2, \"applied\" bigint NOT NULL DEFAULT 0, \"total\" bigint NOT NULL DEFAULT 0, \"executed_at\" timestamptz NOT NULL, \"execution_time\" bigint NOT NULL, \"error\" text NULL, \"error_stmt\" text NULL, \"hash\" character varying NOT NULL, \"partial_hashes\" jsonb NULL, \"operator_version\" character varying NOT NULL, PRIMARY KEY (\"version\"))";

#[test]
fn atlas_s_revisions_are_read_and_written_as_atlas_keeps_them() {
    let list = [
        (
            "1_users.sql",
            "CREATE TABLE users (id bigint PRIMARY KEY, email text);\n",
        ),
        (
            "2_seed.sql",
            "INSERT INTO users VALUES (1, 'a@example.com');\n",
        ),
        (
            "3_indexes.sql",
            "-- atlas:txmode none\n\nCREATE INDEX CONCURRENTLY users_email ON users (email);\nCREATE INDEX CONCURRENTLY missing_a ON missing (a);\n",
        ),
        ("4_audit.sql", "CREATE TABLE audit (id int);\n"),
    ];
    let sum = atlas_sum(&list);
    let mut with_sum: Vec<(&str, &str)> = list.to_vec();
    with_sum.push(("atlas.sum", &sum));
    let project = files(&with_sum);
    let dir = project.path();
    let entry = |file: &str| {
        sum.lines()
            .find_map(|l| l.strip_prefix(&format!("{file} h1:")))
            .unwrap()
            .to_string()
    };
    let rows = "SELECT string_agg(format('%s %s %s %s/%s', version, description, type, applied, total), ', ' ORDER BY version) FROM atlas_schema_revisions.atlas_schema_revisions";

    // A new database: Atlas's table, made where Atlas makes it, so that
    // Atlas reads what runbook applied. The file outside a transaction
    // fails at its second statement: its row says it did not finish.
    let db = Db::fresh();
    let (_case, run) = migrate(&db, dir, "");
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(applied(&run), ["1", "2"]);
    assert_eq!(db.sql(rows), "1 users 2 1/1, 2 seed 2 1/1, 3 indexes 2 1/2");
    // The statement that committed, by its running hash, as Atlas checks it
    // before it goes on from the second; and the one that failed.
    let first = {
        use base64::Engine as _;
        use sha2::{Digest, Sha256};
        let sum = Sha256::digest(b"CREATE INDEX CONCURRENTLY users_email ON users (email);");
        format!(
            "[\"h1:{}\"] | CREATE INDEX CONCURRENTLY missing_a ON missing (a);",
            base64::engine::general_purpose::STANDARD.encode(sum)
        )
    };
    assert_eq!(
        db.sql("SELECT partial_hashes::text || ' | ' || error_stmt FROM atlas_schema_revisions.atlas_schema_revisions WHERE version = '3'"),
        first
    );
    assert_eq!(
        db.sql(
            "SELECT hash FROM atlas_schema_revisions.atlas_schema_revisions WHERE version = '2'"
        ),
        entry("2_seed.sql"),
        "the revision records the file's entry in atlas.sum"
    );
    assert!(
        db.sql(
            "SELECT error FROM atlas_schema_revisions.atlas_schema_revisions WHERE version = '3'"
        )
        .contains("relation \"missing\" does not exist"),
    );
    // Atlas would stop there, and so does runbook.
    let (code, out, _) = migrations(&["status", "--format", "json"], dir, &db.url);
    assert_eq!(code, 3, "{out}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["history_format"], "atlas", "{status}");
    assert_eq!(status["migrations"][2]["state"], "dirty", "{status}");
    let (_case, run) = migrate(&db, dir, "");
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("migration 3 (indexes) is unfinished in atlas_schema_revisions"),
        "{}",
        run.stderr
    );
    // Resolved as `atlas migrate set` resolves it; the rest then runs.
    db.sql("CREATE TABLE missing (a int)");
    db.sql("CREATE INDEX CONCURRENTLY missing_a ON missing (a)");
    let (code, _, err) = repair(dir, &db.url, "3", "applied");
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        db.sql(
            "SELECT type FROM atlas_schema_revisions.atlas_schema_revisions WHERE version = '3'"
        ),
        "6"
    );
    let (_case, run) = migrate(&db, dir, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["4"]);
    assert_eq!(
        db.sql("SELECT operator_version LIKE 'runbook %' FROM atlas_schema_revisions.atlas_schema_revisions WHERE version = '4'"),
        "t"
    );

    // A database Atlas set up from a baseline at 2: nothing older than its
    // first revision runs, as Atlas runs nothing older.
    let db = Db::fresh();
    db.sql("CREATE TABLE users (id bigint PRIMARY KEY, email text); CREATE TABLE missing (a int)");
    db.sql(ATLAS_TABLE);
    db.sql("INSERT INTO atlas_schema_revisions.atlas_schema_revisions VALUES ('2', 'seed', 1, 0, 0, now(), 0, NULL, NULL, '', NULL, 'Atlas CLI v0.31.0')");
    let (_case, run) = migrate(&db, dir, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["3", "4"]);
    assert_eq!(db.sql("SELECT count(*) FROM users"), "0");

    // A URL that names a schema: Atlas keeps its table there, and runbook
    // reads it as one history (it is found by both its names).
    let db = Db::fresh();
    db.sql("CREATE SCHEMA app");
    let url = format!("{}?search_path=app", db.url);
    let (code, out, err) = migrations(&["baseline", "--version", "2", "--yes"], dir, &url);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        db.sql("SELECT string_agg(version || ' ' || type, ', ' ORDER BY version) FROM app.atlas_schema_revisions"),
        "1 4, 2 4"
    );
    let (code, out, err) = migrations(&["status"], dir, &url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("atlas history in app.atlas_schema_revisions"),
        "{out}"
    );
    assert_eq!(states(&out)[..2], ["1 applied", "2 applied"], "{out}");
}

#[test]
fn an_atlas_txtar_file_runs_its_checks_first_and_has_its_down() {
    // As gram's migrations write it (speakeasy-api/gram): a check that the
    // table to drop is empty, then the migration; here with a down too.
    let list = [
        ("1_old.sql", "CREATE TABLE old (id int);\n"),
        (
            "2_drop-old.sql",
            "-- atlas:txtar\n\n-- checks/destructive.sql --\n-- atlas:assert DS102\nSELECT NOT EXISTS (SELECT 1 FROM old) AS old_empty;\n\n-- migration.sql --\nDROP TABLE old;\n\n-- down.sql --\nCREATE TABLE old (id int);\n",
        ),
    ];
    let sum = atlas_sum(&list);
    let mut with_sum: Vec<(&str, &str)> = list.to_vec();
    with_sum.push(("atlas.sum", &sum));
    let project = files(&with_sum);
    let dir = project.path();

    // On a new database the check holds: the table is empty.
    let db = Db::fresh();
    let (_case, run) = migrate(&db, dir, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["1", "2"]);
    // The table holds rows: Atlas would not drop it, and runbook does not.
    let db = Db::fresh();
    db.sql("CREATE TABLE old (id int); INSERT INTO old VALUES (1)");
    db.sql(ATLAS_TABLE);
    db.sql("INSERT INTO atlas_schema_revisions.atlas_schema_revisions VALUES ('1', 'old', 2, 1, 1, now(), 0, NULL, NULL, '', NULL, 'Atlas CLI v0.31.0')");
    let (_case, run) = migrate(&db, dir, "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "migration 2 (drop-old): its pre-migration check at 2_drop-old.sql:5 returned `f`, not true"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(db.sql("SELECT count(*) FROM old"), "1");
    assert_eq!(
        db.sql("SELECT count(*) FROM atlas_schema_revisions.atlas_schema_revisions"),
        "1"
    );
    // Rehearsed on a copy of that database: the check does not hold, so
    // the up does not run, and the report says that, not that it failed.
    let (_case, run) = rehearse_scratch(&db, dir, "");
    assert_eq!(run.code, 3, "{}", run.stderr);
    let m = &run.step("rehearse")["details"]["migrations"][0];
    assert_eq!(m["version"], "2", "{m}");
    assert_eq!(m["verdict"], "up_failure", "{m}");
    assert!(
        m["findings"][0]["message"].as_str().unwrap().starts_with(
            "up did not run: its pre-migration check at 2_drop-old.sql:5 returned `f`"
        ),
        "{m}"
    );
    assert_eq!(m["legs"].as_array().unwrap().len(), 1, "{m}");
    assert_eq!(m["legs"][0]["leg"], "checks", "{m}");
    assert_eq!(m["legs"][0]["ok"], false, "{m}");
    // Emptied, it runs; the check's SELECT is not part of the migration.
    db.sql("DELETE FROM old");
    let (_case, run) = migrate(&db, dir, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["2"]);
    let entry = &run.step("apply")["details"]["applied"][0];
    assert_eq!(entry["statements"], 1, "{entry}");
    assert_eq!(entry["checks_held"], 1, "{entry}");
    assert_eq!(db.sql("SELECT to_regclass('old') IS NULL"), "t");

    // Rehearsed with its down.
    let (_case, run) = rehearse_scratch(&Db::fresh(), dir, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let details = &run.step("rehearse")["details"];
    assert_eq!(details["migrations"][1]["verdict"], "ok", "{details}");
    // The checks ran before the up, and before the up again: legs of their
    // own, so a reader sees that they did.
    let legs: Vec<&str> = details["migrations"][1]["legs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["leg"].as_str().unwrap())
        .collect();
    assert_eq!(
        legs,
        ["checks", "up", "down", "checks", "reup"],
        "{details}"
    );
}

/// A Flyway application's migrations in Java or Kotlin take their places
/// among its scripts, and runbook, which cannot run them, never passes over
/// one: a deploy that would leave one out is refused before anything runs,
/// as are its rehearsal and its preflight. Applied by the application's
/// Flyway, it reads as applied, and a rollback past it is refused.
#[test]
fn an_application_s_migrations_in_code_are_never_passed_over() {
    let db = Db::fresh();
    let repo = files(&[
        (".git/HEAD", "ref: refs/heads/main\n"),
        ("src/main/resources/db/migration/V1__users.sql", INIT),
        (
            "src/main/resources/db/migration/U1__users.sql",
            "DROP TABLE users;\n",
        ),
        (
            "src/main/resources/db/migration/V3__orders.sql",
            "CREATE TABLE orders (id int, user_id int);\n",
        ),
        (
            "src/main/resources/db/migration/U3__orders.sql",
            "DROP TABLE orders;\n",
        ),
        (
            "src/main/java/com/acme/migration/V2__Seed_admin.java",
            "package com.acme.migration;\n\nimport org.flywaydb.core.api.migration.BaseJavaMigration;\nimport org.springframework.stereotype.Component;\n\n@Component\npublic class V2__Seed_admin extends BaseJavaMigration {\n    @Override\n    public void migrate(Context context) throws Exception {}\n}\n",
        ),
    ]);
    let dir = repo.path().join("src/main/resources/db/migration");
    let (code, out, err) = migrations(&["status"], &dir, &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        states(&out),
        ["1 pending", "2 pending", "3 pending"],
        "{out}"
    );
    assert!(
        out.contains("Seed admin  (../../../java/com/acme/migration/V2__Seed_admin.java (a Java migration, a bean (@Component), which the application hands to Flyway): Flyway runs it from the application's code, and runbook cannot"),
        "{out}"
    );
    // The preflight counts it in its place, and fails as the step refuses.
    let check = Case::new(&format!(
        "{HEAD}phases:\n  - id: preflight\n    kind: preflight\n    steps:\n      - id: pending\n        check: {{ builtin: pending_migrations, dir: {}, max: 5 }}\n",
        dir.display()
    ))
    .exec(&db.url, &[]);
    let step = check.step("pending");
    assert_eq!(check.code, 1, "{step}");
    assert_eq!(
        step["details"]["rows"][1],
        serde_json::json!({"version": "2", "file": "../../../java/com/acme/migration/V2__Seed_admin.java", "out_of_order": false, "code": "Java"}),
        "{step}"
    );
    assert!(
        step["check"]["expectations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["target"] == "refused_code_migrations" && e["actual"] == 1),
        "{step}"
    );
    // The deploy is refused, having changed nothing.
    let (_case, run) = migrate(&db, &dir, "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    let error = &run.step("apply")["error"];
    assert!(
        error["message"].as_str().unwrap().starts_with(
            "../../../java/com/acme/migration/V2__Seed_admin.java (a Java migration, a bean (@Component), which the application hands to Flyway), version 2 is pending: Flyway runs it from the application's code"
        ) && error["message"].as_str().unwrap().contains("This step would apply the scripts after it and leave it out"),
        "{error}"
    );
    assert!(
        error["hint"].as_str().unwrap().contains("(`to: \"1\"`)"),
        "{error}"
    );
    assert_eq!(
        db.sql(
            "SELECT to_regclass('flyway_schema_history') IS NULL AND to_regclass('users') IS NULL"
        ),
        "t"
    );
    // So is a rehearsal of it.
    let (_case, rehearsal) = rehearse_scratch(&db, &dir, "");
    assert_eq!(rehearsal.code, 1, "{}", rehearsal.stderr);
    assert!(
        rehearsal.step("rehearse")["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the deploy would be refused too"),
        "{}",
        rehearsal.step("rehearse")
    );
    // Up to the script before it, the deploy is whole.
    let (_case, run) = migrate(&db, &dir, "          to: \"1\"\n");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["1"]);
    // The application's Flyway applies it, as Flyway records one.
    db.sql("INSERT INTO flyway_schema_history VALUES (2, '2', 'Seed admin', 'JDBC', 'com.acme.migration.V2__Seed_admin', NULL, 'app', now(), 3, true)");
    let (_case, run) = migrate(&db, &dir, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["3"]);
    assert!(
        run.step("apply")["details"]["applied_without_file"].is_null(),
        "{}",
        run.step("apply")["details"]
    );
    let (_, out, _) = migrations(&["status"], &dir, &db.url);
    assert_eq!(
        states(&out),
        ["1 applied", "2 applied", "3 applied"],
        "{out}"
    );
    // Undoing what a run applied (3) passes over nothing.
    let (_case, run) = migrate(
        &db,
        &dir,
        "          direction: down\n          to: \"2\"\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let both = Case::new(&format!(
        "{HEAD}phases:\n  - id: migrate\n    kind: migrate\n    steps:\n      - id: apply\n        migrate:\n          dir: {d}\n      - id: undo\n        migrate:\n          dir: {d}\n          direction: down\n          to: before_run\n",
        d = dir.display()
    ))
    .exec(&db.url, &[]);
    assert_eq!(both.code, 0, "{}", both.stderr);
    assert_eq!(db.sql("SELECT to_regclass('orders') IS NULL"), "t");
    let (_case, run) = migrate(&db, &dir, "");
    assert_eq!(applied(&run), ["3"]);
    // Rolling back past it is refused; down to it, the scripts after it go.
    let down = |to: &str| {
        migrate(
            &db,
            &dir,
            &format!("          direction: down\n          to: \"{to}\"\n"),
        )
        .1
    };
    let rows = db.sql("SELECT count(*) FROM flyway_schema_history");
    let run = down("0");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.step("apply")["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with(
                "this rollback would pass over ../../../java/com/acme/migration/V2__Seed_admin.java"
            ),
        "{}",
        run.step("apply")["error"]
    );
    assert_eq!(db.sql("SELECT count(*) FROM flyway_schema_history"), rows);
    assert_eq!(db.sql("SELECT to_regclass('users') IS NOT NULL"), "t");
    let run = down("2");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.sql("SELECT to_regclass('orders') IS NULL"), "t");

    // A script and a class of one version: Flyway runs neither.
    std::fs::write(dir.join("V2__seed.sql"), "SELECT 1;\n").unwrap();
    let (code, out, err) = migrations(&["status"], &dir, &db.url);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("V2__seed.sql and ../../../java/com/acme/migration/V2__Seed_admin.java both have version 2"),
        "{err}"
    );
}

/// A Flyway project that names its scripts, or writes its placeholders,
/// otherwise than Flyway's defaults (`sqlMigrationPrefix`,
/// `sqlMigrationSeparator`, `placeholderPrefix`, ...) is read as its
/// Flyway reads it: its scripts are found, and only its own placeholders
/// are filled, so a `${...}` it keeps as text stays as written.
#[test]
fn a_flyway_project_s_own_script_names_and_placeholders_are_read_as_flyway_reads_them() {
    let db = Db::fresh();
    let dir = files(&[
        (
            "flyway.conf",
            "flyway.sqlMigrationPrefix=CORE_V\nflyway.sqlMigrationSeparator=-\n\
             flyway.repeatableSqlMigrationPrefix=CORE_R\nflyway.placeholderPrefix=$[\n\
             flyway.placeholderSuffix=]\nflyway.placeholders.tenant=acme\n",
        ),
        (
            "CORE_V1-users.sql",
            "CREATE TABLE users (id int);\nCOMMENT ON TABLE users IS '$[tenant] keeps ${HOME} as text';\n",
        ),
        ("CORE_V1_1-users_email.sql", ADD),
        (
            "CORE_R-users_view.sql",
            "CREATE OR REPLACE VIEW users_v AS SELECT id FROM users;\n",
        ),
        // Flyway's default names are not this project's scripts.
        ("V2__ignored.sql", "CREATE TABLE ignored (id int);\n"),
    ]);
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let names: Vec<&str> = run.step("apply")["details"]["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["users", "users email", "users view"]);
    assert!(
        run.step("apply")["details"]["warnings"]
            .to_string()
            .contains("V2__ignored.sql is not named like a Flyway migration (`CORE_V1-name.sql`)"),
        "{}",
        run.step("apply")["details"]
    );
    assert!(
        run.stderr
            .contains("scripts named CORE_V1-name, U1-name and CORE_R-name")
            && run.stderr.contains("placeholders written $[name]"),
        "{}",
        run.stderr
    );
    assert_eq!(
        db.sql("SELECT obj_description('users'::regclass)"),
        "acme keeps ${HOME} as text"
    );
    assert_eq!(
        db.sql("SELECT string_agg(coalesce(version, '-') || ' ' || description || ' ' || script, ', ' ORDER BY installed_rank) FROM flyway_schema_history"),
        "1 users CORE_V1-users.sql, 1.1 users email CORE_V1_1-users_email.sql, - users view CORE_R-users_view.sql"
    );
    assert_eq!(
        db.sql("SELECT to_regclass('users_v') IS NOT NULL AND to_regclass('ignored') IS NULL"),
        "t"
    );
    // The checksum is of the script as written, as Flyway's is.
    assert_eq!(
        db.sql("SELECT checksum FROM flyway_schema_history WHERE version = '1'"),
        runbook::migrations::flyway_checksum(
            "CREATE TABLE users (id int);\nCOMMENT ON TABLE users IS '$[tenant] keeps ${HOME} as text';\n"
        )
        .to_string()
    );
    // A placeholder of its own with no value is named as it is written.
    std::fs::write(
        dir.path().join("CORE_V2-orders.sql"),
        "CREATE TABLE orders (id int);\nCOMMENT ON TABLE orders IS '$[region]';\n",
    )
    .unwrap();
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains(
            "CORE_V2-orders.sql:2: `$[region]` is a Flyway placeholder with no value here"
        ),
        "{err}"
    );
    // An empty separator is refused, with the file and line.
    std::fs::write(
        dir.path().join("flyway.conf"),
        "flyway.sqlMigrationSeparator=\n",
    )
    .unwrap();
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("flyway.conf:1") && err.contains("`sqlMigrationSeparator` is empty"),
        "{err}"
    );
}

/// A Flyway project's `group=true` has its Flyway apply every pending
/// migration in one transaction: so does the step, unless it says
/// `single_transaction: false`. A failure in the last leaves none
/// applied, as the project meant.
#[test]
fn a_flyway_project_s_group_deploys_all_or_nothing() {
    let db = Db::fresh();
    let dir = files(&[
        ("flyway.conf", "flyway.group=true\n"),
        ("V1__users.sql", INIT),
        ("V2__email.sql", ADD),
        ("V3__broken.sql", "ALTER TABLE nope ADD COLUMN x int;\n"),
    ]);
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "3 migration(s) in one transaction: none is applied unless all are (the project's Flyway `group`, "
        ),
        "{}",
        run.stderr
    );
    let details = &run.step("apply")["details"];
    assert_eq!(details["applied"], serde_json::json!([]), "{details}");
    assert_eq!(db.sql("SELECT to_regclass('users') IS NULL"), "t");
    // The step's own word wins.
    let (_case, run) = migrate(&db, dir.path(), "          single_transaction: false\n");
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(applied(&run), ["1", "2"]);
    assert_eq!(db.sql("SELECT to_regclass('users') IS NOT NULL"), "t");

    // A script that cannot run in a transaction is refused before
    // anything runs, naming the setting.
    let db = Db::fresh();
    std::fs::write(
        dir.path().join("V3__broken.sql"),
        "CREATE INDEX CONCURRENTLY users_id ON users (id);\n",
    )
    .unwrap();
    let (_case, run) = migrate(&db, dir.path(), "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    let error = &run.step("apply")["error"];
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("cannot run in a transaction")
            && error["message"]
                .as_str()
                .unwrap()
                .contains("the project's Flyway `group` ("),
        "{error}"
    );
    assert_eq!(db.sql("SELECT to_regclass('users') IS NULL"), "t");
}

/// Helicone's layout: its self-hosted image deploys `supabase/migrations`
/// and `supabase/migrations_without_supabase` with Flyway (a flyway.conf
/// at the root, written for the image's `/app`, with an empty script
/// prefix and `_`), while the Supabase CLI deploys `supabase/migrations`
/// alone to Supabase. A new database gets Flyway's deploy; one whose
/// history is the Supabase CLI's gets the directory alone.
#[test]
fn a_flyway_configuration_s_other_locations_are_flyway_s_deploy_only() {
    let repo = files(&[
        (".git/HEAD", "ref: refs/heads/main\n"),
        (
            "flyway.conf",
            "flyway.locations=filesystem:/app/supabase/migrations,filesystem:/app/supabase/migrations_without_supabase\n\
             flyway.sqlMigrationPrefix=\nflyway.sqlMigrationSeparator=_\nflyway.sqlMigrationSuffixes=.sql\n",
        ),
        ("supabase/config.toml", "project_id = \"x\"\n"),
        (
            "supabase/migrations_without_supabase/20221130000500_create-roles.sql",
            "CREATE TABLE roles_stub (id int);\n",
        ),
        (
            "supabase/migrations/20221230000000_request.sql",
            "CREATE TABLE request (id int);\n",
        ),
        (
            "supabase/migrations/20230101000000_body.sql",
            "ALTER TABLE request ADD COLUMN body jsonb;\n",
        ),
    ]);
    let dir = repo.path().join("supabase/migrations");
    let db = Db::fresh();
    let (_case, run) = migrate(&db, &dir, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        applied(&run),
        ["20221130000500", "20221230000000", "20230101000000"]
    );
    assert_eq!(
        db.sql("SELECT string_agg(version || ' ' || description, ', ' ORDER BY installed_rank) FROM flyway_schema_history"),
        "20221130000500 create-roles, 20221230000000 request, 20230101000000 body"
    );

    let db = Db::fresh();
    db.sql(
        "CREATE SCHEMA supabase_migrations; \
         CREATE TABLE supabase_migrations.schema_migrations (version text PRIMARY KEY, statements text[], name text); \
         INSERT INTO supabase_migrations.schema_migrations VALUES ('20221230000000', ARRAY['CREATE TABLE request (id int)'], 'request'); \
         CREATE TABLE request (id int)",
    );
    let (code, out, err) = migrations(&["status"], &dir, &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        states(&out),
        ["20221230000000 applied", "20230101000000 pending"],
        "{out}"
    );
    assert!(
        out.contains("the history is supabase's, which deploys this directory alone: the other locations of the Flyway configuration are Flyway's deploy, and their 1 migration(s) are left out"),
        "{out}"
    );
    let (_case, run) = migrate(&db, &dir, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["20230101000000"]);
    assert_eq!(db.sql("SELECT to_regclass('roles_stub') IS NULL"), "t");
}

#[test]
fn a_goose_migration_in_go_keeps_its_place_and_is_never_passed_over() {
    // As Hatchet keeps them: a Go migration between SQL ones, which goose
    // runs in version order with them. runbook cannot run it; it applies
    // up to it, goes on once the application's goose has applied it, and
    // refuses to pass over it.
    let db = Db::fresh();
    let dir = files(&[
        (
            "00001_init.sql",
            &format!("-- +goose Up\n{INIT}-- +goose Down\nDROP TABLE users;\n"),
        ),
        ("00002_backfill.go", "package migrations\n"),
        (
            "00003_add.sql",
            &format!("-- +goose Up\n{ADD}-- +goose Down\n{DROP_ADD}"),
        ),
        ("helpers.go", "package migrations\n"),
    ]);
    let goose = "          history: { format: goose }\n";
    let (_case, run) = migrate(&db, dir.path(), goose);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let err = run.step("apply")["error"]["message"].to_string();
    assert!(
        err.contains("00002_backfill.go (a Go migration, registered with goose in the application's code), version 00002 is pending: goose runs it"),
        "{err}"
    );
    assert!(
        err.contains("goose up does not apply a migration older"),
        "{err}"
    );
    assert!(
        run.step("apply")["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("`to: \"00001\"`"),
        "{}",
        run.step("apply")
    );
    assert_eq!(
        db.sql("SELECT to_regclass('users') IS NULL"),
        "t",
        "nothing ran"
    );
    // The rehearsal refuses it too, and rehearses what the deploy through
    // `to` deploys.
    let (_case, run) = rehearse_scratch(&db, dir.path(), goose);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.step("rehearse")["error"]["hint"]
            .as_str()
            .unwrap()
            .starts_with("nothing ran. Rehearse and deploy up to the script before it (`to: \"00001\"` on both steps)"),
        "{}",
        run.step("rehearse")
    );
    assert!(
        run.step("rehearse")["error"]["message"]
            .as_str()
            .unwrap()
            .contains("00002_backfill.go (a Go migration"),
        "{}",
        run.step("rehearse")
    );
    let (_case, run) = rehearse_scratch(
        &db,
        dir.path(),
        &format!("{goose}          to: \"00001\"\n"),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let d = &run.step("rehearse")["details"];
    assert_eq!(d["migrations"].as_array().unwrap().len(), 1, "{d}");
    assert_eq!(d["migrations"][0]["version"], "00001");
    assert_eq!(d["migrations"][0]["verdict"], "ok");
    // A rehearsal goes up only: `to` is refused before anything runs.
    let (_case, run) = rehearse_scratch(
        &db,
        dir.path(),
        &format!("{goose}          to: before_run\n"),
    );
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr.contains("help: a rehearsal goes up"),
        "{}",
        run.stderr
    );

    let (_case, run) = migrate(
        &db,
        dir.path(),
        &format!("{goose}          to: \"00001\"\n"),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["00001"]);

    // The application's goose applies its Go migration, and records it.
    db.sql(
        "CREATE TABLE audit (id int);
         INSERT INTO goose_db_version (version_id, is_applied) VALUES (2, true);",
    );
    let (code, out, err) = migrations(&["status"], dir.path(), &db.url);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        states(&out),
        ["00001 applied", "00002 applied", "00003 pending"],
        "{out}"
    );
    let (_case, run) = migrate(&db, dir.path(), goose);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(applied(&run), ["00003"]);
    assert_eq!(
        db.sql("SELECT string_agg(version_id::text, ',' ORDER BY id) FROM goose_db_version"),
        "0,1,2,3"
    );
}

#[test]
fn drift_is_not_claimed_where_an_applied_migration_is_in_code() {
    // A forward-only Flyway set on a scratch copy, whose Java migration the
    // application's Flyway applied: the scripts alone on an empty database
    // cannot give its schema (its `audit` table). That is said, and the
    // check counts as not run; it is not called drift.
    let db = Db::fresh();
    let repo = files(&[
        (".git/HEAD", "ref: refs/heads/main\n"),
        ("src/main/resources/db/migration/V1__users.sql", INIT),
        ("src/main/resources/db/migration/V3__add.sql", ADD),
        (
            "src/main/java/com/acme/migration/V2__Audit.java",
            "package com.acme.migration;\n\nimport org.flywaydb.core.api.migration.BaseJavaMigration;\nimport org.springframework.stereotype.Component;\n\n@Component\npublic class V2__Audit extends BaseJavaMigration {\n    @Override\n    public void migrate(Context context) throws Exception {}\n}\n",
        ),
    ]);
    let dir = repo.path().join("src/main/resources/db/migration");
    let flyway = "          history: { format: flyway }\n";
    let (_case, run) = migrate(&db, &dir, &format!("{flyway}          to: \"1\"\n"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    db.sql(
        "CREATE TABLE audit (id int);
         INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
         VALUES (2, '2', 'Audit', 'SPRING_JDBC', 'com.acme.migration.V2__Audit', NULL, 'app', 5, true);",
    );
    let (_case, run) = rehearse_scratch(&db, &dir, flyway);
    let d = &run.step("rehearse")["details"];
    let set: Vec<(String, String)> = d["set_findings"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|f| {
            (
                f["verdict"].as_str().unwrap().into(),
                f["message"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(set.len(), 2, "{set:?} {}", run.stderr);
    assert_eq!(set[0].0, "forward_only");
    assert_eq!(set[1].0, "not_rehearsed", "{set:?}");
    assert!(
        set[1].1.starts_with("drift was not checked: ../../../java/com/acme/migration/V2__Audit.java (a Java migration"),
        "{set:?}"
    );
    assert_eq!(d["migrations"][0]["version"], "3");
    assert_eq!(d["migrations"][0]["verdict"], "forward_only");
    // Not an error by default, as drift is; never `ok`.
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(d["set_verdict"], "not_rehearsed", "{d}");
}
