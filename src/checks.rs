//! The built-in checks: `check: { builtin: NAME, ...args }`.
//!
//! This catalog is the single source for validation (which arguments each
//! takes), for the executor (the SQL it runs and when it passes) and for
//! `docs/checks.md`, which a test keeps in step with it. Placeholders such as
//! `:max_age` are replaced by quoted literals at run time; `:ours` is the
//! run's application_name, so runbook's own sessions never count.

/// The hint for a `to` of `pending_migrations` that is not a version.
pub const PENDING_TO_HINT: &str = "pending_migrations counts as far as a migrate step going up runs: give a version (the leading digits of a migration's file name, dotted for Flyway), or `latest`";

/// What an argument holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// `5min`, `500ms`.
    Duration,
    /// A whole number, 0 or more.
    Count,
    /// A number from 0 to 1.
    Fraction,
    /// A size: `500MB`, `2GB`, or bytes.
    Size,
    /// A PostgreSQL version: `14`, `15.4`.
    Version,
    /// A string (a template).
    Text,
    /// A list of table names.
    Tables,
    /// `steps.<id>`: an earlier step's results.
    StepRef,
    /// `true` or `false`.
    Bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Arg {
    pub name: &'static str,
    pub kind: ArgKind,
    pub required: bool,
    /// The default, as it would be written.
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

const fn arg(name: &'static str, kind: ArgKind, doc: &'static str) -> Arg {
    Arg {
        name,
        kind,
        required: false,
        default: None,
        doc,
    }
}

const fn required(name: &'static str, kind: ArgKind, doc: &'static str) -> Arg {
    Arg {
        name,
        kind,
        required: true,
        default: None,
        doc,
    }
}

const fn default(name: &'static str, kind: ArgKind, value: &'static str, doc: &'static str) -> Arg {
    Arg {
        name,
        kind,
        required: false,
        default: Some(value),
        doc,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Preflight,
    Postflight,
}

/// Which built-in a catalog entry is: what `exec` dispatches on, so every
/// entry has a runner (the match is exhaustive) and no name is matched as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    LongRunningTransactions,
    BlockingLocks,
    ActiveConnections,
    IdleInTransaction,
    ReplicationLag,
    DatabaseSize,
    ServerVersion,
    PendingMigrations,
    DirtyMigrations,
    DiskFreeForBackup,
    Privileges,
    InvalidIndexes,
    UnvalidatedConstraints,
    ForeignKeyOrphans,
    NotNullViolations,
    SequenceExhaustion,
    RowCounts,
    SchemaMatches,
}

#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    pub name: &'static str,
    pub kind: Kind,
    pub when: When,
    /// One sentence: what it finds.
    pub summary: &'static str,
    /// Why it matters before or after a release.
    pub why: &'static str,
    /// When it passes.
    pub passes: &'static str,
    pub args: &'static [Arg],
    /// The SQL it runs. Some checks build more at run time; `how` says so.
    pub sql: &'static str,
    /// What happens beyond the SQL, if anything.
    pub how: Option<&'static str>,
}

impl Builtin {
    pub fn arg(&self, name: &str) -> Option<&Arg> {
        self.args.iter().find(|a| a.name == name)
    }
}

pub fn find(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

pub fn names() -> Vec<&'static str> {
    BUILTINS.iter().map(|b| b.name).collect()
}

/// What the history checks show for their SQL: they read the history as
/// `migrate` does, in its tool's own format.
const HISTORY_READ: &str =
    "-- see src/history: the history table is read in its tool's own format, as `migrate` reads it";

/// How many sessions whose activity the connected role may not see are in
/// a transaction ([`crate::pg::activity`]), in this database or in every
/// one. Those outside a transaction are idle: neither active nor holding
/// anything.
pub fn hidden_in_transaction(this_database: bool) -> String {
    use crate::pg::activity::{HIDDEN, IN_TRANSACTION};
    let database = if this_database {
        "a.datname = current_database()"
    } else {
        "a.datname IS NOT NULL"
    };
    format!(
        "SELECT count(*) FROM pg_stat_activity a WHERE {database} AND {HIDDEN} AND {IN_TRANSACTION}"
    )
}

/// The sequences the connected role may not read (`pg_sequences` shows no
/// `last_value` for them), counted, and the first five named.
pub const UNREADABLE_SEQUENCES: &str = "SELECT count(*) AS count,
       array_to_string((array_agg(name ORDER BY name))[1:5], ', ') AS some
FROM (SELECT format('%I.%I', schemaname, sequencename) AS name FROM pg_sequences) s
WHERE NOT has_sequence_privilege(name, 'USAGE, SELECT')";

/// What `how` says of the checks that read `pg_stat_activity`.
const SEES_SESSIONS: &str = "A session of a role whose activity the connected role may not see (it needs the privileges of `pg_read_all_stats`, which `pg_monitor` has, or of the session's own role) shows no state, transaction or wait; its locks still show. One query first counts such sessions in this database that are in a transaction (they hold their own `virtualxid` lock), VACUUM and ANALYZE left out. When there is any, the step fails with an error that counts them: the check could not look at them, and a pass would say more than it saw. Such sessions outside a transaction are idle, and cannot be what this check looks for.";

pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "long_running_transactions",
        kind: Kind::LongRunningTransactions,
        when: When::Preflight,
        summary: "Sessions in this database whose transaction has been open longer than `max_age`.",
        why: "DDL queues behind any transaction that touched its table, and every later query on that table queues behind the DDL. `CREATE INDEX CONCURRENTLY` waits for every older transaction.",
        passes: "no such session",
        args: &[default("max_age", ArgKind::Duration, "5min", "how old a transaction may be")],
        sql: "SELECT pid, usename AS \"user\", application_name, coalesce(host(client_addr), 'local') AS client, state,
       round(extract(epoch FROM clock_timestamp() - xact_start)::numeric, 1) AS transaction_seconds
FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend'
  AND pid <> pg_backend_pid() AND left(coalesce(application_name, ''), length(:ours)) <> :ours
  AND xact_start < clock_timestamp() - :max_age::interval
ORDER BY xact_start",
        how: Some(SEES_SESSIONS),
    },
    Builtin {
        name: "blocking_locks",
        kind: Kind::BlockingLocks,
        when: When::Preflight,
        summary: "Sessions in this database waiting on a lock, with the sessions blocking them.",
        why: "Lock queues already forming mean the database is contended; a migration's ACCESS EXCLUSIVE request would join the queue and make it worse.",
        passes: "no session has waited on a lock for `min_wait` or longer",
        args: &[default("min_wait", ArgKind::Duration, "0s", "ignore waits shorter than this")],
        sql: "SELECT a.pid AS waiting_pid, a.usename AS \"user\", a.application_name,
       round(extract(epoch FROM clock_timestamp() - a.query_start)::numeric, 1) AS waiting_seconds,
       pg_blocking_pids(a.pid) AS blocked_by
FROM pg_stat_activity a
WHERE a.datname = current_database() AND a.wait_event_type = 'Lock'
  AND cardinality(pg_blocking_pids(a.pid)) > 0
  AND clock_timestamp() - a.query_start >= :min_wait::interval
ORDER BY a.query_start",
        how: Some(SEES_SESSIONS),
    },
    Builtin {
        name: "active_connections",
        kind: Kind::ActiveConnections,
        when: When::Preflight,
        summary: "How many other sessions are running a query in this database right now.",
        why: "A release during peak load turns a short lock into a long queue; this keeps migrations for quiet moments.",
        passes: "`active` is at most `max`",
        args: &[required("max", ArgKind::Count, "the most active sessions allowed")],
        sql: "SELECT count(*) FILTER (WHERE state = 'active') AS active,
       count(*) AS connections,
       current_setting('max_connections')::int AS max_connections
FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()
  AND left(coalesce(application_name, ''), length(:ours)) <> :ours",
        how: Some(SEES_SESSIONS),
    },
    Builtin {
        name: "idle_in_transaction",
        kind: Kind::IdleInTransaction,
        when: When::Preflight,
        summary: "Sessions in this database idle inside an open transaction for longer than `max_age`.",
        why: "An idle transaction keeps every lock it took. It is the classic reason an ALTER waits forever: nothing is running, yet nothing can proceed.",
        passes: "no such session",
        args: &[default("max_age", ArgKind::Duration, "10s", "how long a session may sit idle in a transaction")],
        sql: "SELECT pid, usename AS \"user\", application_name, coalesce(host(client_addr), 'local') AS client, state,
       round(extract(epoch FROM clock_timestamp() - state_change)::numeric, 1) AS idle_seconds,
       round(extract(epoch FROM clock_timestamp() - xact_start)::numeric, 1) AS transaction_seconds
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND state IN ('idle in transaction', 'idle in transaction (aborted)')
  AND state_change < clock_timestamp() - :max_age::interval
ORDER BY state_change",
        how: Some(SEES_SESSIONS),
    },
    Builtin {
        name: "replication_lag",
        kind: Kind::ReplicationLag,
        when: When::Preflight,
        summary: "Replicas whose replay lag is above `max`, or that are still catching up (from `pg_stat_replication` on the primary); and replication slots no one is reading, which keep WAL on the primary.",
        why: "A migration or backfill writes WAL that replicas must replay; starting while they are already behind can push read traffic onto stale data or trigger failover alarms. A replica that went away is not in `pg_stat_replication` at all: its slot is what is left, holding every byte of WAL the release writes until the primary's disk fills.",
        passes: "no replica lags more than `max` or is catching up, and no replication slot is inactive or lost. With no replica connected and no slot there is nothing to lag: the check passes, and its details say that it measured none (`replicas: 0`, `slots: 0`)",
        args: &[required("max", ArgKind::Duration, "the most replay lag allowed")],
        sql: "WITH here AS (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END AS lsn)
SELECT 'replica' AS kind, application_name AS name, coalesce(host(client_addr), 'local') AS client, state, sync_state,
       round(extract(epoch FROM replay_lag)::numeric * 1000) AS replay_lag_ms,
       pg_wal_lsn_diff(here.lsn, replay_lsn) AS lag_bytes
FROM pg_stat_replication, here
WHERE state IN ('startup', 'catchup') OR replay_lag > :max::interval
UNION ALL
SELECT slot_type || ' slot', slot_name, NULL, CASE WHEN wal_status = 'lost' THEN 'lost' ELSE 'inactive' END, NULL,
       NULL, pg_wal_lsn_diff(here.lsn, restart_lsn)
FROM pg_replication_slots, here
WHERE NOT active OR wal_status = 'lost'
ORDER BY lag_bytes DESC NULLS LAST",
        how: Some("One more query counts what was looked at: the replicas connected (`pg_stat_replication`, base backups left out) and the replication slots; the details give both (`replicas`, `slots`). A slot's `lag_bytes` is the WAL it keeps (from its `restart_lsn`). PostgreSQL shows a replica's state and lag only to a role with the privileges of `pg_read_all_stats` (`pg_monitor` has them): for any other, the step fails with an error saying so, since it could not measure the lag. A replica that streamed without a slot and has gone away leaves no trace on the primary, and no check run there can see it."),
    },
    Builtin {
        name: "database_size",
        kind: Kind::DatabaseSize,
        when: When::Preflight,
        summary: "The size of the current database.",
        why: "Backups, restores and rewrites scale with size; a runbook rehearsed on 5 GB should stop and ask before running on 500 GB.",
        passes: "`bytes` is at most `max`",
        args: &[required("max", ArgKind::Size, "the largest size allowed: `50GB`, `500MB` or bytes")],
        sql: "SELECT pg_database_size(current_database()) AS bytes,
       pg_size_pretty(pg_database_size(current_database())) AS size",
        how: None,
    },
    Builtin {
        name: "server_version",
        kind: Kind::ServerVersion,
        when: When::Preflight,
        summary: "The server's version.",
        why: "SQL written for one major version can fail or lock differently on another (for example, `ADD COLUMN ... DEFAULT` rewrites the table before PostgreSQL 11).",
        passes: "`version_num` is at least `min`",
        args: &[required("min", ArgKind::Version, "the oldest version allowed: `14` or `15.4`")],
        sql: "SELECT current_setting('server_version_num')::int AS version_num,
       current_setting('server_version') AS version",
        how: None,
    },
    Builtin {
        name: "pending_migrations",
        kind: Kind::PendingMigrations,
        when: When::Preflight,
        summary: "Migrations in `dir` not yet applied according to the history: runbook's own, or the one Prisma, Knex, golang-migrate, Flyway, dbmate, goose, sql-migrate, popx, Diesel, SQLx, Drizzle, tern, node-pg-migrate, Postgrator, Refinery, the Supabase CLI, sqitch, Atlas or Liquibase keeps.",
        why: "Knowing what will run before it runs: after a deploy, pending migrations mean the schema is behind the code.",
        passes: "at most `max` migrations are pending, and none of them is one a `migrate` step would refuse as out of order, or an application's migration in code (Flyway's in Java or Kotlin, goose's in Go), which it refuses to pass over; under a Flyway history not made yet, no schema it manages already holds objects, which a `migrate` step refuses as Flyway does (with the project's `baselineOnMigrate`, the migrations up to the baseline are not counted, and `details.baseline` says so)",
        args: &[
            required("dir", ArgKind::Text, "the migration directory, relative to the runbook"),
            arg("history_format", ArgKind::Text, "whose history table: auto (detected), runbook, prisma, knex, golang-migrate, flyway, dbmate, goose, sql-migrate, popx, diesel, sqlx, drizzle, tern, node-pg-migrate, postgrator, refinery, supabase, sqitch, atlas or liquibase"),
            arg("history_table", ArgKind::Text, "the history table; default: the tool's own, or detected"),
            default("max", ArgKind::Count, "0", "how many may be pending"),
            arg("out_of_order", ArgKind::Bool, "whether a pending migration older than the newest applied one may run, as the `migrate` step's key says it; default: as the history's tool would"),
            arg("to", ArgKind::Text, "the newest version to count, as the `migrate` step's `to` says it: migrations after it are not counted (`details.after_to` says how many), and neither are Flyway's repeatables; default: `latest`, all"),
            arg("contexts", ArgKind::Text, "Liquibase: the contexts a `migrate` step runs with, as its `contexts` says them: a changeset they leave out is not counted; default: none, every changeset counts (refused where the project's configuration gives contexts that leave one out, as the step is)"),
            arg("label_filter", ArgKind::Text, "Liquibase: the label filter, as the `migrate` step's `label_filter` says it"),
        ],
        sql: HISTORY_READ,
        how: Some("runbook lists the directory's migrations and reads the history as `migrate` does (docs/migrations.md, \"The history\"): the table detected, or the one named, in its tool's own format. A migration the history does not record as finished is pending, and each row names it (`version`, `file`), with `out_of_order` true when it is older than the newest applied one. The check fails on such a row where a `migrate` step would refuse it (`refused_out_of_order`): under Flyway's, the Supabase CLI's, goose's, node-pg-migrate's, refinery's or Drizzle's history unless `out_of_order: true`, and under any history with `out_of_order: false` (docs/migrations.md); and, given no `contexts` or `label_filter`, a Liquibase changeset with a context or labels that is older than applied ones, which the runs before passed over (`details.passed_over`). In a preflight, it stops the run before its backup rather than at the `migrate` step. When the history table does not exist yet, every migration is pending. So is a Flyway repeatable migration (`R__`, `version` null) never applied, changed since, or whose last run stopped half-way, and, on Liquibase's history or runbook's, a `runOnChange:true` changeset whose text changed, which Liquibase runs again, its row with `again` (`run_on_change`). A `runAlways:true` changeset runs on every update and is never behind: it is not counted, and `details.run_always` names it. An application's migration in code, Flyway's in Java or Kotlin or goose's in Go (docs/migrations.md), is pending in its place, its row with `code` (`Java`, `Kotlin`, `Go`), and the check fails on it (`refused_code_migrations`), as a `migrate` step refuses to pass over one."),
    },
    Builtin {
        name: "dirty_migrations",
        kind: Kind::DirtyMigrations,
        when: When::Preflight,
        summary: "Migrations the history marks as started and never finished: runbook's dirty rows, golang-migrate's dirty flag, Prisma's failed migrations, Flyway's failed rows, Knex's held lock.",
        why: "A dirty migration left the schema in an unknown state. Running more migrations on top of it compounds the damage; a person must look first.",
        passes: "no migration is dirty",
        args: &[
            arg("dir", ArgKind::Text, "the migration directory, relative to the runbook: names the migrations (golang-migrate's history holds only a number)"),
            arg("history_format", ArgKind::Text, "whose history table: auto (detected), runbook, prisma, knex, golang-migrate, flyway, dbmate, goose, sql-migrate, popx, diesel, sqlx, drizzle, tern, node-pg-migrate, postgrator, refinery, supabase, sqitch, atlas or liquibase"),
            arg("history_table", ArgKind::Text, "the history table; default: the tool's own, or detected"),
        ],
        sql: HISTORY_READ,
        how: Some("Each row is one unfinished migration: `version`, `name`, `state` (what the history says about it, and how to repair it). When the history table does not exist, nothing is dirty. dbmate's and goose's histories have no such mark: with them this check always passes, and says so in its details."),
    },
    Builtin {
        name: "disk_free_for_backup",
        kind: Kind::DiskFreeForBackup,
        when: When::Preflight,
        summary: "Free space where a backup will be written, against the database's size.",
        why: "A backup that fills the disk fails hours in, and can take the runner's host (or the database's, if they share it) down with it.",
        passes: "`free_bytes` is at least `needed_bytes` (the database size times `margin`)",
        args: &[
            required("path", ArgKind::Text, "where the backup will go, relative to the runbook; the nearest existing parent is measured"),
            default("margin", ArgKind::Fraction, "1", "the share of the database size that must be free (a dump is usually smaller: indexes are not dumped)"),
        ],
        sql: "SELECT pg_database_size(current_database()) AS database_bytes",
        how: Some("runbook measures free space with statvfs on the machine it runs on, where pg_dump writes."),
    },
    Builtin {
        name: "privileges",
        kind: Kind::Privileges,
        when: When::Preflight,
        summary: "What the connected role lacks for the runbook's own steps: ownership of the tables they alter, the privileges their writes need, CREATE on the schemas they create in, SELECT for what a backup dumps, `pg_signal_backend` for `terminate_connections`.",
        why: "A release that fails on `must be owner of table orders` at its contract phase has already changed the rest. Checking first turns a half-done release into one that never started.",
        passes: "every need is met (no rows); each row names what is missing, the step that needs it, and the GRANT that gives it",
        args: &[],
        sql: "-- built from the plan at run time; see `how`",
        how: Some("The needs are read from the plan, every step with its rollbacks and branches: `sql` steps' statements (ALTER/DROP TABLE, CREATE/DROP INDEX, CREATE TRIGGER, REINDEX, CLUSTER, VACUUM FULL need ownership; INSERT, UPDATE, DELETE and TRUNCATE need that privilege; CREATE TABLE/VIEW/SEQUENCE/TYPE/FUNCTION need CREATE on the schema), `backfill` (SELECT and UPDATE, and USAGE on PL/pgSQL, in which its batches run), `backup` (SELECT on each table it dumps and USAGE on its schema, or `pg_read_all_data`); for both, no row-level security policy that applies to the role (it is not a superuser, has no BYPASSRLS, and does not own the table, or the table is FORCE ROW LEVEL SECURITY: pg_dump refuses such a table, and a backfill's batches fail on it), `restore` with `terminate_connections` (`pg_signal_backend`). One query checks them all with `pg_has_role`, `has_table_privilege`, `has_schema_privilege` and `has_language_privilege`. A table that does not exist yet needs nothing: the runbook creates it, and owns it. SQL known only at run time (`steps.*`) is not read."),
    },
    Builtin {
        name: "invalid_indexes",
        kind: Kind::InvalidIndexes,
        when: When::Postflight,
        summary: "Indexes marked INVALID: left by a failed `CREATE INDEX CONCURRENTLY` or `REINDEX CONCURRENTLY`.",
        why: "An INVALID index is still maintained on every write but never used by queries: all cost, no benefit, and a sign a migration did not finish.",
        passes: "no invalid index",
        args: &[],
        sql: "SELECT i.indexrelid::regclass::text AS index, i.indrelid::regclass::text AS \"table\",
       pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT i.indisvalid
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
ORDER BY 1",
        how: None,
    },
    Builtin {
        name: "unvalidated_constraints",
        kind: Kind::UnvalidatedConstraints,
        when: When::Postflight,
        summary: "Constraints added `NOT VALID` and never validated.",
        why: "A NOT VALID constraint checks new rows only; old rows may break it. The expand/contract pattern adds them NOT VALID and validates later; this catches the forgotten second half.",
        passes: "no unvalidated constraint",
        args: &[],
        sql: "SELECT c.conrelid::regclass::text AS \"table\", c.conname AS \"constraint\",
       CASE c.contype WHEN 'f' THEN 'foreign key' WHEN 'c' THEN 'check' ELSE c.contype::text END AS type,
       pg_get_constraintdef(c.oid) AS definition
FROM pg_constraint c
JOIN pg_namespace n ON n.oid = c.connamespace
WHERE NOT c.convalidated AND c.conrelid <> 0
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1, 2",
        how: None,
    },
    Builtin {
        name: "foreign_key_orphans",
        kind: Kind::ForeignKeyOrphans,
        when: When::Postflight,
        summary: "For every foreign key, validated or NOT VALID, the rows whose reference has no parent.",
        why: "Orphans make `VALIDATE CONSTRAINT` fail, and they are data a rollback or backfill lost. Counting them proves referential integrity instead of assuming it.",
        passes: "no foreign key has orphans",
        args: &[],
        sql: "SELECT c.conname, c.conrelid::regclass::text, c.confrelid::regclass::text, c.convalidated, c.confmatchtype::text,
       array(SELECT quote_ident(a.attname) FROM unnest(c.conkey) WITH ORDINALITY k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.n),
       array(SELECT quote_ident(a.attname) FROM unnest(c.confkey) WITH ORDINALITY k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum ORDER BY k.n)
FROM pg_constraint c
JOIN pg_namespace n ON n.oid = c.connamespace
WHERE c.contype = 'f' AND c.conparentid = 0
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'runbook_journal')
ORDER BY 1",
        how: Some("For each foreign key found (runbook's own run journal's left out), runbook counts orphans with `SELECT count(*) FROM <table> c WHERE <every key column IS NOT NULL> AND NOT EXISTS (SELECT 1 FROM <referenced> p WHERE p.<col> = c.<col> AND ...)`. For MATCH FULL keys, rows with some but not all key columns NULL count as orphans too. The counts run with `row_security = off`, as pg_dump reads: a table whose row-level security policies would hide rows from the connected role fails the step with the server's error, rather than hide an orphan."),
    },
    Builtin {
        name: "not_null_violations",
        kind: Kind::NotNullViolations,
        when: When::Postflight,
        summary: "Rows where `column` of `table` is NULL: run it before `SET NOT NULL`.",
        why: "`ALTER COLUMN ... SET NOT NULL` scans the whole table under ACCESS EXCLUSIVE and fails at the end if one NULL remains; checking first (or adding a NOT VALID check constraint) avoids both.",
        passes: "`nulls` is 0",
        args: &[
            required("table", ArgKind::Text, "the table, optionally schema-qualified"),
            required("column", ArgKind::Text, "the column"),
        ],
        sql: "SELECT count(*) AS nulls FROM :table WHERE :column IS NULL",
        how: Some("The table is resolved with to_regclass and the column quoted as an identifier before the query runs. It runs with `row_security = off`: a table whose row-level security policies would hide rows from the connected role fails the step with the server's error, rather than hide a NULL."),
    },
    Builtin {
        name: "sequence_exhaustion",
        kind: Kind::SequenceExhaustion,
        when: When::Postflight,
        summary: "Sequences that have used more than `threshold` of their range, or of the range of the integer column they feed.",
        why: "An `integer` primary key fed by a sequence stops accepting inserts at 2,147,483,647. It happens on a busy day, and fixing it means rewriting the table.",
        passes: "no sequence is past the threshold",
        args: &[default("threshold", ArgKind::Fraction, "0.8", "the share of the range that may be used")],
        sql: "SELECT format('%I.%I', s.schemaname, s.sequencename) AS sequence, col.name AS \"column\",
       s.last_value, least(s.max_value, col.type_max) AS max_value,
       round(s.last_value::numeric / least(s.max_value, col.type_max), 4) AS used
FROM pg_sequences s
LEFT JOIN LATERAL (
    SELECT format('%s.%I', d.refobjid::regclass, a.attname) AS name,
           CASE a.atttypid WHEN 'int2'::regtype THEN 32767 WHEN 'int4'::regtype THEN 2147483647 END::bigint AS type_max
    FROM pg_depend d
    JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
    WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
      AND d.objid = format('%I.%I', s.schemaname, s.sequencename)::regclass
      AND d.deptype IN ('a', 'i')
    LIMIT 1
) col ON true
WHERE s.last_value IS NOT NULL AND s.increment_by > 0
  AND s.last_value::numeric / least(s.max_value, col.type_max) >= :threshold::numeric
ORDER BY used DESC",
        how: Some("A sequence never used has no `last_value`, and nothing used. Neither has one the connected role may not read (it needs USAGE or SELECT on it): one query first counts those, and when there is any, the step fails with an error that names them, since the check could not look at them."),
    },
    Builtin {
        name: "row_counts",
        kind: Kind::RowCounts,
        when: When::Postflight,
        summary: "Exact row counts of tables, compared with an earlier step's counts.",
        why: "The simplest proof that a migration or a rollback lost no data: the same tables hold the same number of rows as before.",
        passes: "every table's count is within `tolerance` of the earlier count (always, when there is nothing to compare with); a table that is gone since (`gone: true`) passes only if it held no rows",
        args: &[
            arg("from", ArgKind::StepRef, "`steps.<id>`: a backup step or an earlier row_counts check; without it, counts are recorded for later"),
            arg("tables", ArgKind::Tables, "the tables to count; default: the earlier step's tables, or every user table but runbook's own (its run journal, its history and backfill state) and migration tools' history tables (`knex_migrations`, `flyway_schema_history`, ...); a partitioned table is counted whole, unless a foreign table is among its partitions: then its other partitions are counted, each on its own, and no foreign server is read"),
            default("tolerance", ArgKind::Fraction, "0", "the share by which a count may differ"),
        ],
        sql: "SELECT format('%I.%I', n.nspname, c.relname) AS \"table\"
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  -- A partition tree with a foreign table in it: its plain partitions, not
  -- its partitioned tables, whose counts would read the foreign one on its server.
  AND CASE WHEN EXISTS (SELECT FROM pg_partition_tree(pg_partition_root(c.oid)) p
                        JOIN pg_class l ON l.oid = p.relid WHERE l.relkind = 'f')
           THEN c.relkind = 'r'
           ELSE NOT c.relispartition END
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
  AND NOT (n.nspname = 'runbook_journal' AND obj_description(n.oid, 'pg_namespace') = 'runbook run journal')
  AND coalesce(obj_description(c.oid, 'pg_class'), '') NOT LIKE 'runbook state:%'
ORDER BY 1",
        how: Some("runbook then counts each table exactly, in one READ ONLY transaction with `row_security = off`, as pg_dump reads: `SELECT count(*) FROM ONLY <table>` for a plain table (its own rows, as a backup counts them: pg_dump copies each inheritance child on its own), and `SELECT count(*) FROM <table>` for a partitioned one (the rows of its partitions). A table whose row-level security policies would hide rows from the connected role fails the step with the server's error, rather than give a smaller count. Its output `steps.<id>.tables` has the same shape as a backup's, so a later row_counts can compare with it."),
    },
    Builtin {
        name: "schema_matches",
        kind: Kind::SchemaMatches,
        when: When::Postflight,
        summary: "A canonical snapshot of the schema from the catalog, and its hash, compared with an expected hash.",
        why: "After a rollback, the schema must be exactly what it was: parity, proven by hash, with the objects that differ named.",
        passes: "the hash equals `hash` or the hash of the `from` step (always, when there is nothing to compare with)",
        args: &[
            arg("hash", ArgKind::Text, "the expected sha256"),
            arg("from", ArgKind::StepRef, "`steps.<id>`: an earlier schema_matches check"),
        ],
        sql: "-- see docs/checks.md: the snapshot queries of src/snapshot.rs",
        how: Some("runbook reads tables and columns (types, defaults, nullability, order, storage, compression, statistics targets and options), row-level security and its policies, `UNLOGGED`, storage options, replica identity, inheritance, tablespace and access method, constraints, indexes (definition, validity, `CLUSTER ON`, tablespace), sequences, views and materialized views (and their options), functions (and their grants), aggregates, operators, operator families and classes, casts, triggers, rules, event triggers, enum and range types, domains and their constraints, standalone composite types, collations, text search configurations and dictionaries, extended statistics, foreign data wrappers, servers and user mappings (secret-looking option values and a user mapping's values not read), publications (tables, column lists, row filters, schemas), default privileges, extensions, schemas (`public` where its comment or grants are not initdb's), comments, grants (a table's, a column's and a schema's own) and owners (where not the schema's, or for a schema the database's) from the catalog, outside pg_catalog, information_schema and runbook's own state tables. The hash is sha256 over the canonical JSON. With `from`, objects that differ are listed."),
    },
];

/// `docs/checks.md`, rendered from this catalog (a test keeps the file in
/// step; `UPDATE_DOCS=1 cargo test --lib checks` rewrites it).
pub fn markdown() -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    o.push_str("# Built-in checks\n\n");
    o.push_str(
        "Write a built-in check as `check: { builtin: NAME, ...arguments }`. Like any check it runs in a \
READ ONLY transaction under the step's settings, may also take `expect`, `assert` and `severity`, \
and fails the step when its condition does not hold. What it found goes into the report: the rows \
(up to 100) in the step's `details.rows`, the pass condition in `check.expectations`, and, for a \
failed check, the first rows in report.md. Later steps read the rows as `steps.<id>.rows`.\n\n",
    );
    o.push_str(
        "Placeholders such as `:max_age` are replaced by quoted literals before the query runs. \
`:ours` is the run's application_name: runbook's own sessions never count against a check.\n\n",
    );
    for (title, when) in [
        ("Preflight", When::Preflight),
        ("Postflight", When::Postflight),
    ] {
        let _ = writeln!(o, "## {title}\n");
        for b in BUILTINS.iter().filter(|b| b.when == when) {
            let _ = writeln!(o, "- [`{}`](#{})", b.name, b.name);
        }
        o.push('\n');
    }
    for b in BUILTINS {
        let _ = writeln!(o, "## {}\n", b.name);
        let _ = writeln!(o, "{}\n", b.summary);
        let _ = writeln!(o, "**Why:** {}\n", b.why);
        let _ = writeln!(o, "**Passes when:** {}.\n", b.passes);
        if b.args.is_empty() {
            o.push_str("**Arguments:** none.\n\n");
        } else {
            o.push_str("| argument | required | default | meaning |\n|---|---|---|---|\n");
            for a in b.args {
                let _ = writeln!(
                    o,
                    "| `{}` | {} | {} | {} |",
                    a.name,
                    if a.required { "yes" } else { "no" },
                    a.default.map_or("–".to_string(), |d| format!("`{d}`")),
                    a.doc
                );
            }
            o.push('\n');
        }
        let example: Vec<String> = b
            .args
            .iter()
            .filter(|a| a.required)
            .map(|a| format!(", {}: {}", a.name, example_value(a)))
            .collect();
        let _ = writeln!(
            o,
            "```yaml\n- id: {}\n  check: {{ builtin: {}{} }}\n```\n",
            b.name,
            b.name,
            example.concat()
        );
        if b.kind == Kind::SchemaMatches {
            let _ = writeln!(
                o,
                "The snapshot query:\n\n```sql\n{}\n```\n",
                crate::snapshot::full_sql(140_000)
            );
        } else {
            let _ = writeln!(o, "```sql\n{}\n```\n", b.sql);
        }
        if let Some(how) = b.how {
            let _ = writeln!(o, "{how}\n");
        }
    }
    o.trim_end().to_string() + "\n"
}

fn example_value(a: &Arg) -> &'static str {
    match (a.name, a.kind) {
        ("max", ArgKind::Count) => "200",
        ("max", ArgKind::Duration) => "10s",
        ("max", ArgKind::Size) => "50GB",
        ("min", _) => "14",
        ("dir", _) => "migrations",
        ("path", _) => "backups/next",
        ("table", _) => "public.orders",
        ("column", _) => "customer_ref",
        _ => "...",
    }
}

/// Bytes in a size like `500MB`, `2GB`, `1.5TB` or `1024` (units of 1024).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "K" | "KIB" => 1 << 10,
        "MB" | "M" | "MIB" => 1 << 20,
        "GB" | "G" | "GIB" => 1 << 30,
        "TB" | "T" | "TIB" => 1 << 40,
        _ => return None,
    };
    (n >= 0.0).then_some((n * mult as f64) as u64)
}

/// `server_version_num` for a version like `14`, `15.4` or `9.6.2`.
pub fn parse_version(s: &str) -> Option<i64> {
    let parts: Vec<i64> = s
        .trim()
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [major] if *major >= 10 => Some(major * 10000),
        [major, minor] if *major >= 10 => Some(major * 10000 + minor),
        [9, minor] => Some(90000 + minor * 100),
        [9, minor, patch] => Some(90000 + minor * 100 + patch),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_versions_parse() {
        assert_eq!(parse_size("500MB"), Some(500 << 20));
        assert_eq!(parse_size("1.5 GB"), Some(3 << 29));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("5 parsecs"), None);
        assert_eq!(parse_version("14"), Some(140000));
        assert_eq!(parse_version("15.4"), Some(150004));
        assert_eq!(parse_version("9.6"), Some(90600));
        assert_eq!(parse_version("x"), None);
    }

    #[test]
    fn docs_checks_md_is_rendered_from_the_catalog() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/checks.md");
        let want = markdown();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "docs/checks.md is stale: run `UPDATE_DOCS=1 cargo test --lib checks`"
        );
    }

    #[test]
    fn the_schema_names_every_builtin() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schemas/runbook.v1.schema.json"
        );
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let listed: Vec<&str> = schema["$defs"]["check"]["then"]["properties"]["builtin"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(listed, names());
        // Every argument of every check is a property of the check object.
        let props = &schema["$defs"]["check"]["then"]["properties"];
        for b in BUILTINS {
            for a in b.args {
                assert!(
                    props.get(a.name).is_some(),
                    "{}: `{}` is not in the schema",
                    b.name,
                    a.name
                );
            }
        }
    }

    #[test]
    fn names_are_unique_and_placeholders_are_arguments() {
        let mut names = names();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), BUILTINS.len());
        let re = regex::Regex::new(r":([a-z_]+)").unwrap();
        for b in BUILTINS {
            for cap in re.captures_iter(b.sql) {
                let p = &cap[1];
                let known = b.arg(p).is_some() || ["ours", "versions", "files"].contains(&p);
                // `::interval` casts match too; only bare names count.
                let cast = b.sql[..cap.get(0).unwrap().start()].ends_with(':');
                assert!(known || cast, "{}: unknown placeholder :{p}", b.name);
            }
        }
    }
}
