//! libpq's connection conventions from the command line: a service file
//! (`service=prod`, `PGSERVICE`), and several hosts with
//! `target_session_attrs=read-write`, which must bring the run and its
//! children (psql, pg_dump) to the same, writable server.

mod support;

use std::process::Command;

use runbook::ephemeral::Ephemeral;
use support::{Case, Db, psql};

const HEAD: &str =
    "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: connect, version: 1 }\n";

/// host, port and database of a test URL (`postgres://runbook@HOST:PORT/DB`).
fn parts(url: &str) -> (String, String, String) {
    let after = url.split_once('@').unwrap().1;
    let (hostport, db) = after.split_once('/').unwrap();
    let (h, p) = hostport.rsplit_once(':').unwrap();
    (
        h.to_string(),
        p.to_string(),
        db.split('?').next().unwrap().to_string(),
    )
}

const BODY: &str = r#"phases:
  - id: p
    kind: custom
    steps:
      - id: mark
        sql: CREATE TABLE IF NOT EXISTS reached_here (id bigint PRIMARY KEY);
      - id: child
        timeout: 1min
        shell: psql -XAtc "SELECT current_database() || ' ' || current_setting('transaction_read_only') || ' ' || to_regclass('reached_here')::text"
"#;

#[test]
fn a_service_fills_what_the_string_leaves_out_and_the_string_wins() {
    let db = Db::fresh();
    let (host, port, name) = parts(&db.url);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pg_service.conf");
    std::fs::write(
        &file,
        format!(
            "# two services\n[prod]\nhost={host}\nport={port}\ndbname={name}\nuser=runbook\napplication_name=from-service\n\n[elsewhere]\nhost={host}\nport={port}\ndbname=postgres\nuser=runbook\n"
        ),
    )
    .unwrap();
    let case = Case::new(&format!("{HEAD}{BODY}"));
    // `service=prod` in the string; PGSERVICE names another service, which
    // neither the run nor its child may follow.
    let out = case
        .command("service=prod", &[])
        .env("PGSERVICEFILE", &file)
        .env("PGSERVICE", "elsewhere")
        .output()
        .unwrap();
    let run = support::Run::new(out, &case.reports());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["target"]["database"], name.as_str());
    assert_eq!(
        run.step("child")["stdout_tail"].as_str().unwrap().trim(),
        format!("{name} off reached_here")
    );
    // PGSERVICE alone, with no URL at all.
    db.sql("DROP TABLE reached_here");
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .arg("exec")
        .arg(&case.file)
        .arg("--report-dir")
        .arg(case.reports())
        .args(["--progress", "never"])
        .env_remove("DATABASE_URL")
        .env_remove("PGHOST")
        .env("PGSERVICEFILE", &file)
        .env("PGSERVICE", "prod")
        .output()
        .unwrap();
    let run = support::Run::new(out, &case.reports());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["target"]["database"], name.as_str());
    // What the URL says outranks the service: its database, not `postgres`.
    let url = format!("postgres://runbook@{host}:{port}/{name}?service=elsewhere");
    let out = case
        .command(&url, &[])
        .env("PGSERVICEFILE", &file)
        .output()
        .unwrap();
    let run = support::Run::new(out, &case.reports());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["target"]["database"], name.as_str());
    // A service nobody defines is refused before anything runs, naming
    // where runbook looked.
    let out = case
        .command("service=nope", &[])
        .env("PGSERVICEFILE", &file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains("service `nope` is not defined in") && err.contains(file.to_str().unwrap()),
        "{err}"
    );
    assert!(
        err.contains("help: a service is a [section] of pg_service.conf"),
        "{err}"
    );
    // A key runbook cannot honour is named with its line, and so is a
    // value it cannot honour of a key it takes.
    for (key, says) in [
        ("krbsrvname=postgres", ":3: service [odd] sets `krbsrvname`"),
        (
            "gssencmode=require",
            "gssencmode `require`: runbook's driver has no GSSAPI encryption",
        ),
    ] {
        std::fs::write(&file, format!("[odd]\nhost=localhost\n{key}\n")).unwrap();
        let out = case
            .command("service=odd", &[])
            .env("PGSERVICEFILE", &file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{err}");
        assert!(err.contains(says), "{key}: {err}");
    }
}

/// Two servers: a read-only one listed first, the writable one second.
/// With `target_session_attrs=read-write` the run and its children all
/// reach the writable one; without it, the run starts on the read-only one
/// and its first write fails there.
#[test]
fn several_hosts_with_read_write_reach_the_writable_server_children_too() {
    let db = Db::fresh();
    let (host, port, name) = parts(&db.url);
    let standby = Ephemeral::start().unwrap();
    let admin = standby.url("postgres");
    psql(&admin, &format!("CREATE DATABASE {name}"));
    psql(
        &admin,
        "ALTER SYSTEM SET default_transaction_read_only = on",
    );
    psql(&admin, "SELECT pg_reload_conf()");
    let (shost, sport, _) = parts(&standby.url("postgres"));
    let hosts = format!("postgres://runbook@{shost}:{sport},{host}:{port}/{name}");
    let case = Case::new(&format!(
        "{HEAD}{BODY}      - id: dump\n        backup: {{ path: dump, tables: [reached_here], verify: restore }}\n"
    ));
    let run = case.exec(&format!("{hosts}?target_session_attrs=read-write"), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // The report names the server the run reached, not the first listed.
    assert_eq!(
        run.report["target"]["port"].to_string(),
        port,
        "{}",
        run.report["target"]
    );
    assert_eq!(
        run.step("child")["stdout_tail"].as_str().unwrap().trim(),
        format!("{name} off reached_here"),
        "psql went to the writable server"
    );
    assert_eq!(
        run.step("dump")["status"],
        "succeeded",
        "pg_dump found the table"
    );
    assert_eq!(
        db.sql("SELECT to_regclass('reached_here') IS NOT NULL"),
        "t"
    );
    // Without the attribute, the first host answers; it takes no writes,
    // and the run is refused before its first step.
    db.sql("DROP TABLE reached_here");
    let run = case.exec(&hosts, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "REFUSED: its sessions are read-only (default_transaction_read_only is on, for the database, the role or the connection), and step `p.mark` (sql) writes to it"
        ),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("step mark"), "{}", run.stderr);
    assert_eq!(db.sql("SELECT to_regclass('reached_here') IS NULL"), "t");
}

/// A standby (a reader endpoint, or a name still pointing at the old
/// primary after a failover) is refused before anything runs when the
/// runbook writes: before, the backup ahead of the first write ran, and
/// the run failed at the write. A runbook that only reads runs there, a
/// parallel backup in an exported snapshot included.
#[test]
fn a_runbook_that_writes_is_refused_on_a_standby_before_its_first_step() {
    let primary = Ephemeral::start().unwrap();
    let standby = primary.start_standby(&[]).unwrap();
    let url = standby.url("postgres");
    let backups = tempfile::tempdir().unwrap();
    let writes = Case::new(&format!(
        "{HEAD}phases:
  - id: pre
    kind: backup
    steps:
      - id: dump
        backup: {{ path: {}/dump }}
  - id: expand
    kind: expand
    steps:
      - id: add
        sql: CREATE TABLE orders (id int);
        rollback: {{ id: drop, sql: DROP TABLE orders; }}
",
        backups.path().display()
    ));
    let run = writes.exec(&url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "REFUSED: the server is a standby (in recovery), and step `expand.add` (sql) writes to it. Connect to the primary"
        ),
        "{}",
        run.stderr
    );
    assert!(
        !backups.path().join("dump").exists(),
        "the backup ran: {}",
        run.stderr
    );
    let reads = Case::new(&format!(
        "{HEAD}phases:
  - id: pre
    kind: preflight
    steps:
      - id: recovering
        check:
          query: SELECT pg_is_in_recovery() AS standby
          expect: {{ standby: {{ eq: true }} }}
  - id: copy
    kind: backup
    steps:
      - id: dump
        backup: {{ path: {}/from_standby, format: directory, jobs: 2 }}
",
        backups.path().display()
    ));
    let run = reads.exec(&url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(backups.path().join("from_standby/manifest.json").exists());
}

/// `privileges` names, before anything changes, what a role without
/// rights lacks for the runbook's steps; with them granted it passes.
#[test]
fn the_privileges_check_names_what_the_role_lacks_before_anything_changes() {
    let db = Db::fresh();
    let (host, port, name) = parts(&db.url);
    let role = format!("lim_{name}");
    db.sql(&format!(
        "CREATE TABLE orders (id bigint PRIMARY KEY, v text);
         CREATE TABLE audit (id bigint PRIMARY KEY);
         CREATE ROLE {role} LOGIN;
         GRANT CONNECT ON DATABASE {name} TO {role};
         REVOKE CREATE ON SCHEMA public FROM PUBLIC;"
    ));
    let case = Case::new(&format!(
        "{HEAD}phases:
  - id: preflight
    kind: preflight
    steps:
      - id: can_do_it
        check: {{ builtin: privileges }}
  - id: backup
    kind: backup
    steps:
      - id: copy
        backup: {{ path: dump, tables: [public.orders] }}
  - id: expand
    kind: expand
    steps:
      - id: add
        sql: ALTER TABLE orders ADD COLUMN IF NOT EXISTS c int;
        rollback:
          id: undo_add
          sql: ALTER TABLE orders DROP COLUMN IF EXISTS c;
      - id: fresh
        sql: CREATE TABLE IF NOT EXISTS scratch (id int);
      - id: note
        sql: INSERT INTO audit (id) VALUES (1) ON CONFLICT DO NOTHING;
"
    ));
    let url = format!("postgres://{role}@{host}:{port}/{name}");
    let run = case.exec(&url, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.report["run"]["status"], "preflight_failed",
        "{}",
        run.stderr
    );
    let rows = run.step("can_do_it")["details"]["rows"]
        .as_array()
        .unwrap()
        .clone();
    let missing: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["missing"].as_str().unwrap().to_string(),
                r["object"].as_str().unwrap().to_string(),
                r["step"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        missing.contains(&("owner".into(), "orders".into(), "add".into())),
        "{missing:?}"
    );
    assert!(
        missing.contains(&("SELECT".into(), "public.orders".into(), "copy".into())),
        "{missing:?}"
    );
    assert!(
        missing.contains(&("CREATE".into(), "public".into(), "fresh".into())),
        "{missing:?}"
    );
    assert!(
        missing.contains(&("INSERT".into(), "audit".into(), "note".into())),
        "{missing:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r["fix"] == format!("GRANT INSERT ON audit TO {role}")),
        "{rows:?}"
    );
    // Nothing changed: the check ran first.
    assert_eq!(db.sql("SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'c'"), "0");
    // Granted, the same runbook passes the check and runs.
    db.sql(&format!(
        "ALTER TABLE orders OWNER TO {role};
         GRANT INSERT ON audit TO {role};
         GRANT CREATE ON SCHEMA public TO {role};"
    ));
    let run = case.exec(&url, &[]);
    assert_eq!(
        run.step("can_do_it")["status"],
        "succeeded",
        "{}",
        run.step("can_do_it")
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// A failover mid-run: the server the run reached turns read-only and
/// drops its sessions; the run reconnects to the other host, and the
/// children after that follow it there, not to the server they were first
/// sent to.
#[test]
fn after_a_failover_the_children_follow_the_new_primary() {
    let db = Db::fresh();
    let (host, port, name) = parts(&db.url);
    let first = Ephemeral::start().unwrap();
    let admin = first.url("postgres");
    psql(&admin, &format!("CREATE DATABASE {name}"));
    let on_first = first.url(&name);
    psql(&on_first, "CREATE TABLE on_first (id int)");
    db.sql("CREATE TABLE on_second (id int)");
    let (fhost, fport, _) = parts(&admin);
    let url = format!(
        "postgres://runbook@{fhost}:{fport},{host}:{port}/{name}?target_session_attrs=read-write"
    );
    let case = Case::new(&format!(
        r#"{HEAD}phases:
  - id: p
    kind: custom
    steps:
      - id: before
        timeout: 1min
        shell: psql -XAtc "SELECT to_regclass('on_first') IS NOT NULL"
      - id: wait
        retry: {{ attempts: 3, backoff: {{ initial: 200ms, factor: 1, max: 200ms }}, on: [connection] }}
        sql: SELECT pg_sleep(3);
      - id: after
        timeout: 1min
        shell: psql -XAtc "SELECT to_regclass('on_second') IS NOT NULL"
"#
    ));
    let child = case.spawn(&url, &[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while psql(
        &on_first,
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(3)%' AND state = 'active' AND pid <> pg_backend_pid()",
    ) != "1"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the step never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The failover: the first server turns read-only and drops the run.
    psql(
        &admin,
        "ALTER SYSTEM SET default_transaction_read_only = on",
    );
    psql(&admin, "SELECT pg_reload_conf()");
    psql(
        &admin,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
    );
    let out = child.wait_with_output().unwrap();
    let run = support::Run::new(out, &case.reports());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.step("before")["stdout_tail"].as_str().unwrap().trim(),
        "t"
    );
    assert!(
        run.step("wait")["attempts"].as_array().unwrap().len() >= 2,
        "{}",
        run.step("wait")
    );
    assert_eq!(
        run.step("after")["stdout_tail"].as_str().unwrap().trim(),
        "t",
        "psql followed the run to the new primary"
    );
}

/// libpq variables the children (psql, pg_dump) inherit: the run reads
/// them as libpq does, so a run and its children connect alike; a value
/// libpq would refuse, or one runbook's own session cannot honour, is
/// refused before anything runs. (Before, runbook ignored them: a bad
/// `PGCONNECT_TIMEOUT` or `PGOPTIONS` failed the first pg_dump half-way
/// through the run, and `PGREQUIREAUTH` held the children alone.)
/// A runbook of two steps: `sql` in the run's session (`mark`), then psql
/// running `child_sql` as a child of the run (`child`).
fn sql_then_psql(sql: &str, child_sql: &str) -> Case {
    Case::new(&format!(
        "{HEAD}phases:\n  - id: p\n    kind: custom\n    steps:\n      - id: mark\n        sql: {sql}\n      \
         - id: child\n        timeout: 1min\n        shell: psql -XAtc \"{child_sql}\"\n"
    ))
}

/// A `DATABASE_URL` as application tools write it: Prisma's `?schema=app`
/// (with its own pool's `connection_limit`), and the `?search_path=...` of
/// pgx, lib/pq and dbmate (measure.sh's `?search_path=dbmate,measure`).
/// libpq refuses them, and so did runbook ("unknown option `schema`"). Now
/// the run's session, and psql, which it starts, resolve names in that
/// schema; both at once, or Prisma's `pgbouncer=true`, is refused first.
#[test]
fn a_urls_schema_or_search_path_is_the_search_path_of_the_run_and_its_children() {
    let db = Db::fresh();
    db.sql("CREATE SCHEMA app; CREATE TABLE app.t (id int); INSERT INTO app.t VALUES (1)");
    let case = sql_then_psql(
        "CREATE TABLE made AS SELECT current_schema() AS s, (SELECT count(*) FROM t) AS n",
        "SELECT count(*) FROM t",
    );
    // psql fails the step where `t` is not on its search path.
    for (query, table) in [
        ("?schema=app", "app.made"),
        // As a Prisma app's DATABASE_URL: its own pool's settings go.
        ("?schema=app&connection_limit=5&pool_timeout=10", "app.made"),
        ("?search_path=nothere,app&sslmode=disable", "app.made"),
    ] {
        let run = case.exec(&format!("{}{query}", db.url), &[]);
        assert_eq!(run.code, 0, "{query}: {}", run.stderr);
        assert_eq!(
            db.sql(&format!("SELECT s || ' ' || n FROM {table}")),
            "app 1"
        );
        db.sql(&format!("DROP TABLE {table}"));
    }
    let run = case.exec(&format!("{}?schema=app&search_path=app", db.url), &[]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("the URL names both `schema` (Prisma's) and `search_path`; give one"),
        "{}",
        run.stderr
    );
    // Prisma's word that the URL reaches a transaction-mode pooler.
    let run = case.exec(&format!("{}?schema=app&pgbouncer=true", db.url), &[]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr.contains("(Prisma's `directUrl`"),
        "{}",
        run.stderr
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'made'"),
        "0"
    );
}

#[test]
fn the_libpq_environment_reaches_the_run_and_its_children_alike_or_is_refused_first() {
    let db = Db::fresh();
    let case = sql_then_psql(
        "CREATE TABLE seen AS SELECT current_setting('work_mem') AS work_mem, current_setting('TimeZone') AS tz;",
        "SELECT current_setting('work_mem')",
    );
    let run_with = |url: &str, var: &str, value: &str| {
        let out = case.command(url, &[]).env(var, value).output().unwrap();
        support::Run::new(out, &case.reports())
    };
    for (var, value, said) in [
        (
            "PGCONNECT_TIMEOUT",
            "abc",
            "`abc` is not a whole number of seconds",
        ),
        (
            "PGCHANNELBINDING",
            "maybe",
            "is not one of disable, prefer, require",
        ),
        (
            "PGTARGETSESSIONATTRS",
            "primary",
            "is not one runbook supports",
        ),
        (
            "PGREQUIREAUTH",
            "scram-sha-256",
            "cannot honour it for its own session",
        ),
        (
            "PGSSLMINPROTOCOLVERSION",
            "TLSv1.3",
            "cannot be held to 1.3 alone",
        ),
        (
            "PGHOSTADDR",
            "db.internal",
            "`db.internal` is not an IP address",
        ),
    ] {
        let run = run_with(&db.url, var, value);
        assert_eq!(run.code, 5, "{var}: {}", run.stderr);
        assert!(
            run.stderr.contains(var) && run.stderr.contains(said),
            "{var}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("the environment's libpq settings for")
                && run
                    .stderr
                    .contains("correct or unset the variable named first"),
            "{}",
            run.stderr
        );
    }
    // PGPORT is read where the string names no port, as libpq reads it.
    let (host, _, name) = parts(&db.url);
    let run = run_with(
        &format!("host={host} user=runbook dbname={name}"),
        "PGPORT",
        "5432,x",
    );
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr.contains("is not a port number"),
        "{}",
        run.stderr
    );
    // A value the server refuses: at the run's own connection, before
    // anything changed.
    let run = run_with(&db.url, "PGOPTIONS", "-c statement_timeout=zz");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("\"zz\""), "{}", run.stderr);
    assert_eq!(db.sql("SELECT to_regclass('seen') IS NULL"), "t");
    // A session setting libpq sends for the children: one the server
    // refuses is found before anything runs; a good one stays out of the
    // run's own session, whose evidence must read alike on every run.
    let run = run_with(&db.url, "PGTZ", "Nowhere/Bogus");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.report["run"]["verdict"]
            .as_str()
            .unwrap()
            .starts_with("REFUSED: the environment sets PGTZ=`Nowhere/Bogus`: invalid value"),
        "{}",
        run.report
    );
    assert_eq!(db.sql("SELECT to_regclass('seen') IS NULL"), "t");
    let run = run_with(&db.url, "PGTZ", "America/Lima");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        db.sql("SELECT tz = current_setting('TimeZone') AND tz <> 'America/Lima' FROM seen"),
        "t"
    );
    db.sql("DROP TABLE seen");
    // PGOPTIONS reaches the run's session and the child's alike.
    let run = run_with(&db.url, "PGOPTIONS", "-c work_mem=7MB");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.sql("SELECT work_mem FROM seen"), "7MB");
    assert_eq!(
        run.step("child")["stdout_tail"].as_str().unwrap().trim(),
        "7MB"
    );
    // The string's `options` outrank the variable, for the child too.
    db.sql("DROP TABLE seen");
    let url = format!("{}?options=-c%20work_mem%3D9MB", db.url);
    let run = run_with(&url, "PGOPTIONS", "-c work_mem=7MB");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(db.sql("SELECT work_mem FROM seen"), "9MB");
    assert_eq!(
        run.step("child")["stdout_tail"].as_str().unwrap().trim(),
        "9MB"
    );
}

/// `hostaddr` (in the string, or `PGHOSTADDR`) is the address to connect
/// to, where the host name does not resolve or should not be looked up:
/// the run and its children (pg_dump, psql) connect to it alike. (Before,
/// PGHOSTADDR was ignored and the run failed to resolve the name; with
/// `?hostaddr=` the run connected and its pg_dump failed half-way, on the
/// name it looked up.)
#[test]
fn hostaddr_reaches_the_run_and_its_children_where_the_name_does_not_resolve() {
    let db = Db::fresh();
    let (host, port, name) = parts(&db.url);
    let dumps = tempfile::tempdir().unwrap();
    let body = format!(
        r#"phases:
  - id: p
    kind: custom
    steps:
      - id: mark
        sql: CREATE TABLE IF NOT EXISTS seen (n int);
      - id: child
        timeout: 1min
        shell: psql -XAtc "SELECT 1"
      - id: dump
        backup: {{ path: "{}/{{{{ run.id }}}}", format: custom }}
"#,
        dumps.path().display()
    );
    let case = Case::new(&format!("{HEAD}{body}"));
    // The name is one no resolver knows (RFC 2606).
    let unresolvable = format!("postgres://runbook@db.invalid:{port}/{name}");
    for (url, var) in [
        (format!("{unresolvable}?hostaddr={host}"), None),
        (unresolvable.clone(), Some(host.as_str())),
    ] {
        let mut cmd = case.command(&url, &[]);
        cmd.env_remove("PGHOSTADDR");
        if let Some(addr) = var {
            cmd.env("PGHOSTADDR", addr);
        }
        let run = support::Run::new(cmd.output().unwrap(), &case.reports());
        assert_eq!(run.code, 0, "{url} {var:?}: {}{}", run.stderr, run.report);
        assert_eq!(run.step("dump")["status"], "succeeded");
        assert_eq!(run.report["target"]["host"], "db.invalid");
    }
    // Without an address, the name is looked up, and fails first.
    let mut cmd = case.command(&unresolvable, &[]);
    cmd.env_remove("PGHOSTADDR");
    let run = support::Run::new(cmd.output().unwrap(), &case.reports());
    assert_eq!(run.code, 1, "{}", run.stderr);
}

/// A token service in a directory: `token` holds the password it hands out
/// now (`First-Token-1`, the password of `password_cluster("First-Token-1")`),
/// `next` the one it hands out once `next` is copied over `token`.
fn token_service() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let home = tempfile::tempdir().unwrap();
    let token = home.path().join("token");
    let next = home.path().join("next");
    std::fs::write(&token, "First-Token-1\n").unwrap();
    std::fs::write(&next, "Second-Token-2\n").unwrap();
    (home, token, next)
}

/// A password that stops working mid-run (changed, or a short-lived token
/// such as an RDS IAM one that expired) fails every later login: pg_dump's,
/// and a reconnect's. The failure says that the run's own session logged
/// in with it when the run began, and what to do; never the password.
#[test]
fn a_password_that_stops_working_mid_run_is_named_as_the_cause_of_later_logins_failing() {
    let (pg, url) = support::password_cluster("First-Secret-1");
    let url = url.replacen("rotating@", "rotating:First-Secret-1@", 1);
    let dumps = tempfile::tempdir().unwrap();
    let rotate =
        "      - id: rotate\n        sql: ALTER ROLE rotating PASSWORD 'Second-Secret-2';\n";
    for (then, step) in [
        (
            format!(
                "      - id: later\n        backup: {{ path: \"{}/dump\", format: custom }}\n",
                dumps.path().display()
            ),
            "later",
        ),
        (
            "      - id: later\n        retry: { attempts: 2, on: [connection], backoff: { initial: 100ms } }\n        sql: SELECT pg_terminate_backend(pg_backend_pid());\n".to_string(),
            "later",
        ),
    ] {
        psql(
            &pg.url("postgres"),
            "ALTER ROLE rotating PASSWORD 'First-Secret-1'",
        );
        let case = Case::new(&format!(
            "{HEAD}phases:\n  - id: p\n    kind: custom\n    steps:\n{rotate}{then}"
        ));
        let run = case.exec(&url, &[]);
        assert_ne!(run.code, 0, "{then}: {}", run.stderr);
        let error = &run.step(step)["error"];
        assert!(
            error["hint"]
                .as_str()
                .unwrap_or_default()
                .contains("logged in with these credentials when the run began"),
            "{then}: {error}"
        );
        let all = format!("{}{}{}", run.stderr, run.stdout, run.report);
        assert!(!all.contains("First-Secret-1"), "{all}");
    }
}

/// `--password-command` is asked for a password at each login, so a run
/// outlives a short-lived one (an RDS IAM token): here the password
/// changes mid-run, and the backup after it (its snapshot session and
/// pg_dump) logs in with the new one. Every password it gives is kept out
/// of every output, a child's included. A command that fails, or a
/// connection string with a password of its own, is refused before
/// anything runs.
#[test]
fn a_password_command_gives_each_login_a_password_of_its_own() {
    let (_pg, url) = support::password_cluster("First-Token-1");
    let (home, token, next) = token_service();
    let command = format!("cat {}", token.display());
    // The step changes the password to the next token, which the runbook's
    // text does not hold, and the token service starts handing it out.
    let case = Case::new(&format!(
        "{HEAD}phases:\n  - id: p\n    kind: custom\n    steps:\n      - id: rotate\n        timeout: 1min\n        shell: printf \"ALTER ROLE rotating PASSWORD '%s'\" \"$(cat {next})\" | psql -Xq && cp {next} {token} && cat \"$PGPASSFILE\"\n      - id: dump\n        backup: {{ path: \"{home}/dump\", format: custom }}\n      - id: show\n        shell: cat \"$PGPASSFILE\"\n",
        next = next.display(),
        token = token.display(),
        home = home.path().display()
    ));
    let out = case
        .command(&url, &["--password-command", &command])
        .env_remove("RUNBOOK_PASSWORD_COMMAND")
        .output()
        .unwrap();
    let run = support::Run::new(out, &case.reports());
    assert_eq!(run.code, 0, "{}{}", run.stderr, run.report["run"]);
    assert_eq!(run.step("dump")["status"], "succeeded");
    // The children read the password file; what they printed is redacted.
    assert_eq!(run.step("show")["stdout_tail"], "*:*:*:*:[REDACTED]");
    let events = std::fs::read_to_string(case.reports().join("events.jsonl")).unwrap();
    let all = format!("{}{}{}{events}", run.stderr, run.stdout, run.report);
    for secret in ["First-Token-1", "Second-Token-2"] {
        assert!(!all.contains(secret), "{secret} in {all}");
    }
    assert!(events.contains("*:*:*:*:"), "{events}");
    // The commands that read a database take it too.
    let runs = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_runbook"))
            .args(["runs", "list", "--database-url", &url])
            .args(extra)
            .env_remove("RUNBOOK_PASSWORD_COMMAND")
            .output()
            .unwrap()
    };
    let listed = runs(&["--password-command", &command]);
    let said = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success() && said.contains(run.report["run"]["id"].as_str().unwrap()),
        "{said}{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(!runs(&[]).status.success());

    // Refused before anything runs: no report directory is made.
    for (url, command, said) in [
        (
            url.clone(),
            "echo 'token service down' >&2; exit 3",
            "--password-command: the password command exited with code 3: token service down",
        ),
        (
            url.replacen("rotating@", "rotating:Inline-Pass-9@", 1),
            "echo x",
            "has a password, and --password-command gives one too",
        ),
    ] {
        let case = Case::new(&format!(
            "{HEAD}phases:\n  - id: p\n    kind: custom\n    steps:\n      - id: s\n        sql: SELECT 1;\n"
        ));
        let out = case
            .command(&url, &["--password-command", command])
            .output()
            .unwrap();
        let run = support::Run::new(out, &case.reports());
        assert_eq!(run.code, 5, "{}", run.stderr);
        assert!(run.stderr.contains(said), "{}", run.stderr);
        assert!(!run.stderr.contains("Inline-Pass-9"), "{}", run.stderr);
        assert!(!case.reports().exists());
    }
}

/// A rehearsal through another tool (Knex, Prisma, ...) starts the tool for
/// each leg, and each start logs in anew. With `--password-command`, each
/// leg gets a password of its own, so a long rehearsal outlives a
/// short-lived token: here the first leg changes the password, and the
/// legs after it log in with the new one. What a leg prints of it is
/// redacted.
#[test]
fn a_tool_rehearsal_gives_each_leg_a_password_of_its_own() {
    let (_pg, url) = support::password_cluster("First-Token-1");
    let (_home, token, next) = token_service();
    let p = support::fake_tool_project();
    let case = Case::new(&format!(
        "{HEAD}phases:\n  - id: verify\n    kind: verify\n    steps:\n      - id: rehearse\n        rehearse:\n          dir: {dir}/migrations\n          scratch: true\n          tool:\n            cwd: {dir}\n            up: ./faketool up {{{{ migration.name }}}} && printf \"ALTER ROLE rotating PASSWORD '%s'\" \"$(cat {next})\" | psql -Xq && cp {next} {token}\n            down: ./faketool down {{{{ migration.name }}}} && if [ {{{{ migration.stem }}}} = 20240103000000_nickname ]; then cat \"$PGPASSFILE\" >&2; exit 9; fi\n",
        dir = p.path().display(),
        next = next.display(),
        token = token.display(),
    ));
    let out = case
        .command(
            &url,
            &["--password-command", &format!("cat {}", token.display())],
        )
        .env_remove("RUNBOOK_PASSWORD_COMMAND")
        .output()
        .unwrap();
    let run = support::Run::new(out, &case.reports());
    let migrations = run.step("rehearse")["details"]["migrations"].clone();
    let of = |name: &str| {
        migrations
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {migrations}"))
    };
    // Every leg logged in: base is judged whole, and the planted faults
    // are found as before.
    let base = of("base");
    assert_eq!(base["verdict"], "ok", "{}{base}", run.stderr);
    assert_eq!(base["legs"].as_array().unwrap().len(), 3, "{base}");
    assert_eq!(of("email_index")["verdict"], "parity_mismatch");
    let nickname = of("nickname");
    assert_eq!(nickname["verdict"], "irreversible", "{nickname}");
    assert!(
        nickname.to_string().contains("*:*:*:*:[REDACTED]"),
        "{nickname}"
    );
    let events = std::fs::read_to_string(case.reports().join("events.jsonl")).unwrap();
    let all = format!("{}{}{}{events}", run.stderr, run.stdout, run.report);
    for secret in ["First-Token-1", "Second-Token-2"] {
        assert!(!all.contains(secret), "{secret} in the output");
    }
}
