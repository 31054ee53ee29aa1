//! Where a database records which migrations it has had: runbook's own
//! table, or the table of the tool the team used before (Prisma, Knex,
//! golang-migrate, Flyway, dbmate, goose, sql-migrate, popx, Diesel, SQLx,
//! Drizzle, tern, node-pg-migrate, Postgrator, sqitch), read and written in that tool's own format so a
//! team can switch to runbook, and back, without losing or re-running
//! anything.
//!
//! Each tool's module knows its table: how to create it, how to read it
//! into [`Applied`] rows, and the SQL for each [`Write`]. A tool's
//! checksum is computed by that tool's rules, so drift is judged on its
//! own terms; tools that keep no checksum cannot show drift, and say so.
//!
//! A script that runs in a transaction writes its history row in that
//! same transaction, so a failure or a kill leaves the row as it was. A
//! script outside one is marked unfinished first, in its own commit, in
//! whatever way the tool has for that (a dirty flag, an unfinished row, a
//! failed row, a held lock); dbmate, goose, sql-migrate, popx, Diesel,
//! Drizzle and tern have none.

mod atlas;
mod drizzle;
mod flyway;
mod golang;
mod knex;
pub mod liquibase;
mod postgrator;
mod prisma;
mod refinery;
mod runbook;
mod simple;
mod sqitch;
mod sqlx;
mod supabase;
mod tern;

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use serde::Serialize;

use crate::events::ErrorInfo;
use crate::migrations::{self, Migration, Set};
use crate::model::Direction;
use crate::pg::db::{self, Db};
use crate::pg::quote;

/// A script the tool would fail ([`Tool::would_fail`]): where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolFails {
    /// The migration's version and name (a repeatable's version is empty).
    pub version: String,
    pub name: String,
    pub file: String,
    pub line: usize,
    pub message: String,
    /// Which of the migration's scripts it is: `up` or `down`.
    pub leg: &'static str,
    pub cause: FailCause,
}

/// Why the tool would fail a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailCause {
    /// The tool runs it in a transaction, where a statement of it cannot run.
    Transaction,
    /// The file starts with a byte-order mark, which the tool sends.
    ByteOrderMark,
}

impl std::fmt::Display for ToolFails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// The tool whose history table a database keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Runbook,
    Prisma,
    Knex,
    GolangMigrate,
    Flyway,
    Dbmate,
    Goose,
    SqlMigrate,
    Popx,
    Diesel,
    Sqlx,
    Drizzle,
    Tern,
    NodePgMigrate,
    Postgrator,
    Refinery,
    Sqitch,
    Supabase,
    Atlas,
    Liquibase,
}

pub const TOOLS: &[&str] = &[
    "runbook",
    "prisma",
    "knex",
    "golang-migrate",
    "flyway",
    "dbmate",
    "goose",
    "sql-migrate",
    "popx",
    "diesel",
    "sqlx",
    "drizzle",
    "tern",
    "node-pg-migrate",
    "postgrator",
    "refinery",
    "sqitch",
    "supabase",
    "atlas",
    "liquibase",
];

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Self::Runbook => "runbook",
            Self::Prisma => "prisma",
            Self::Knex => "knex",
            Self::GolangMigrate => "golang-migrate",
            Self::Flyway => "flyway",
            Self::Dbmate => "dbmate",
            Self::Goose => "goose",
            Self::SqlMigrate => "sql-migrate",
            Self::Popx => "popx",
            Self::Diesel => "diesel",
            Self::Sqlx => "sqlx",
            Self::Drizzle => "drizzle",
            Self::Tern => "tern",
            Self::NodePgMigrate => "node-pg-migrate",
            Self::Postgrator => "postgrator",
            Self::Refinery => "refinery",
            Self::Sqitch => "sqitch",
            Self::Supabase => "supabase",
            Self::Atlas => "atlas",
            Self::Liquibase => "liquibase",
        }
    }

    /// The scripts that runbook runs statement by statement of its own
    /// accord (a statement that cannot run in a transaction, a new enum
    /// value used at once) but that this tool would fail, as it runs them
    /// in a transaction: most tools wrap every script in one unless the
    /// file says otherwise; golang-migrate, Prisma and Postgrator send it
    /// as one query, which PostgreSQL runs as one transaction when it has
    /// more than one statement; Flyway refuses a script that mixes
    /// statements that need a transaction and ones that cannot have one.
    /// A script the tool's own marker takes out of a transaction, or that
    /// manages its own, is not one of them. runbook still runs them: said
    /// as warnings, since a rehearsal that passes them passes what the
    /// tool, deploying the same files, would fail.
    pub fn would_fail(self, set: &Set) -> Vec<ToolFails> {
        set.migrations
            .iter()
            .chain(&set.repeatables)
            .flat_map(|m| self.would_fail_in(m))
            .collect()
    }

    /// [`Tool::would_fail`] for one migration: its up, then its down.
    fn would_fail_in(self, m: &Migration) -> Vec<ToolFails> {
        #[derive(PartialEq)]
        enum Runs {
            Wrapped,
            OneQuery,
            Flyway,
        }
        let runs = match self {
            Self::Runbook | Self::Sqitch | Self::Knex => return Vec::new(),
            Self::GolangMigrate | Self::Prisma | Self::Postgrator => Runs::OneQuery,
            Self::Flyway => Runs::Flyway,
            _ => Runs::Wrapped,
        };
        let scripts = std::iter::once((&m.up, "up")).chain(m.down_script().map(|d| (d, "down")));
        let mut out = Vec::new();
        for (s, leg) in scripts {
            // Flyway (as psql) and Liquibase (checked with 4.28) read a
            // file without its byte-order mark; the other tools here send
            // the mark to PostgreSQL, which reads it as part of the first
            // word. runbook's parser skips it. (Prisma's engine is left
            // out: what it does was not checked.)
            if runs != Runs::Flyway
                && self != Self::Prisma
                && self != Self::Liquibase
                && s.as_written().starts_with('\u{feff}')
            {
                out.push(ToolFails {
                    version: m.version.clone(),
                    name: m.name.clone(),
                    file: s.file.clone(),
                    line: s.first_line,
                    message: format!(
                        "{} would fail this script: it sends the file's byte-order mark to PostgreSQL, which reads it as part of the first word (a syntax error); runbook runs the script without it. Save the file as UTF-8 without a BOM",
                        self.name()
                    ),
                    leg,
                    cause: FailCause::ByteOrderMark,
                });
            }
            if s.no_transaction.is_some() {
                continue;
            }
            let stmts = crate::pg::statements::split(&s.sql);
            if stmts.iter().any(|st| st.transaction_control) {
                continue;
            }
            let (in_tx, why) = migrations::script_mode(s, &stmts);
            let fails = !in_tx
                && match runs {
                    Runs::Wrapped => true,
                    Runs::OneQuery => stmts.len() > 1,
                    Runs::Flyway => stmts.iter().any(|st| st.no_transaction.is_none()),
                };
            if fails {
                let how = match runs {
                    Runs::OneQuery => {
                        "sends it as one query, which PostgreSQL runs as one transaction"
                    }
                    Runs::Flyway => {
                        "refuses a script that mixes statements that need a transaction with ones that cannot have one"
                    }
                    Runs::Wrapped => "runs it in a transaction",
                };
                // At the statement that cannot run in one (or the first).
                let at = stmts
                    .iter()
                    .find(|st| st.no_transaction.is_some())
                    .map_or(0, |st| st.offset);
                out.push(ToolFails {
                    version: m.version.clone(),
                    name: m.name.clone(),
                    file: s.file.clone(),
                    line: s.first_line + s.sql[..at].matches('\n').count(),
                    message: format!(
                        "{} would fail this script, as it {how}: {}; runbook runs it statement by statement, each committing on its own",
                        self.name(),
                        why.unwrap_or_default()
                    ),
                    leg,
                    cause: FailCause::Transaction,
                });
            }
        }
        out
    }

    /// The tool a migration format belongs to, where only one does: not
    /// `pairs` (golang-migrate, SQLx, runbook's own), `plain`, or sqitch
    /// (psql runs its scripts).
    pub fn of_format(format: migrations::Format) -> Option<Tool> {
        use migrations::Format as F;
        Some(match format {
            F::Dbmate => Self::Dbmate,
            F::Goose => Self::Goose,
            F::SqlMigrate => Self::SqlMigrate,
            F::Prisma => Self::Prisma,
            F::Popx => Self::Popx,
            F::Flyway => Self::Flyway,
            F::Diesel => Self::Diesel,
            F::Drizzle => Self::Drizzle,
            F::Tern => Self::Tern,
            F::NodePgMigrate => Self::NodePgMigrate,
            F::Postgrator => Self::Postgrator,
            F::Atlas => Self::Atlas,
            F::Liquibase => Self::Liquibase,
            F::Pairs | F::Plain | F::Sqitch | F::Tool => return None,
        })
    }

    /// The tool a directory's migrations belong to: the Supabase CLI's for
    /// plain files in `supabase/migrations`, the one place the CLI reads
    /// them from; else the one its project's manifest names (SQLx, Refinery
    /// or golang-migrate, [`Set::deployer`]); else its format's
    /// ([`Tool::of_format`]).
    pub fn of_set(set: &Set) -> Option<Tool> {
        let supabase = set.format == migrations::Format::Plain
            && set.dir.file_name().is_some_and(|n| n == "migrations")
            && set
                .dir
                .parent()
                .and_then(|p| p.file_name())
                .is_some_and(|n| n == "supabase");
        if supabase {
            return Some(Self::Supabase);
        }
        if let Some(d) = &set.deployer {
            use migrations::project::Migrator;
            return Some(match d.migrator {
                Migrator::Sqlx => Self::Sqlx,
                Migrator::Refinery => Self::Refinery,
                Migrator::GolangMigrate => Self::GolangMigrate,
            });
        }
        Self::of_format(set.format)
    }

    /// `auto` is `None`: detect it.
    pub fn parse(s: &str) -> Result<Option<Tool>, String> {
        Ok(Some(match s {
            "auto" => return Ok(None),
            "runbook" => Self::Runbook,
            "prisma" => Self::Prisma,
            "knex" => Self::Knex,
            "golang-migrate" => Self::GolangMigrate,
            "flyway" => Self::Flyway,
            "dbmate" => Self::Dbmate,
            "goose" => Self::Goose,
            "sql-migrate" => Self::SqlMigrate,
            "popx" => Self::Popx,
            "diesel" => Self::Diesel,
            "sqlx" => Self::Sqlx,
            "drizzle" => Self::Drizzle,
            "tern" => Self::Tern,
            "node-pg-migrate" => Self::NodePgMigrate,
            "postgrator" => Self::Postgrator,
            "refinery" => Self::Refinery,
            "sqitch" => Self::Sqitch,
            "supabase" => Self::Supabase,
            "atlas" => Self::Atlas,
            "liquibase" => Self::Liquibase,
            other => {
                return Err(format!(
                    "unknown history format `{other}`: expected auto, {}",
                    TOOLS.join(", ")
                ));
            }
        }))
    }

    /// Where the tool keeps its history when nobody says otherwise.
    pub fn default_table(self) -> &'static str {
        match self {
            Self::Runbook => crate::model::DEFAULT_HISTORY_TABLE,
            Self::Prisma => "public._prisma_migrations",
            Self::Knex => "public.knex_migrations",
            Self::GolangMigrate | Self::Dbmate => "public.schema_migrations",
            Self::Flyway => "public.flyway_schema_history",
            Self::Goose => "public.goose_db_version",
            Self::SqlMigrate => "public.gorp_migrations",
            Self::Popx => "public.schema_migration",
            Self::Diesel => "public.__diesel_schema_migrations",
            Self::Sqlx => "public._sqlx_migrations",
            Self::Drizzle => "drizzle.__drizzle_migrations",
            Self::Tern => "public.schema_version",
            Self::NodePgMigrate => "public.pgmigrations",
            Self::Postgrator => "public.schemaversion",
            Self::Refinery => "public.refinery_schema_history",
            Self::Sqitch => "sqitch.changes",
            Self::Supabase => "supabase_migrations.schema_migrations",
            Self::Atlas => "atlas_schema_revisions.atlas_schema_revisions",
            Self::Liquibase => "public.databasechangelog",
        }
    }

    /// Where the tool keeps its history on a database whose URL names
    /// `schema` as application tools name it (Prisma's `schema`, the first
    /// of `search_path`): a table the tool creates unqualified, in the
    /// current schema, is there; one in a schema of its own (Drizzle's,
    /// sqitch's, Supabase's) stays where it is.
    pub fn table_in(self, schema: Option<&str>) -> String {
        let default = self.default_table();
        // Atlas keeps its table in a schema of its own, unless its URL
        // names one: then there.
        if let (Self::Atlas, Some(schema)) = (self, schema) {
            return format!("{schema}.atlas_schema_revisions");
        }
        match (schema, default.strip_prefix("public.")) {
            (Some(schema), Some(table)) => format!("{schema}.{table}"),
            _ => default.to_string(),
        }
    }

    /// Whether a relation (`schema.table` as a snapshot names it, quoted or
    /// not) is this tool's bookkeeping, with its history in `table`
    /// (`schema.table`): that table, Knex's lock table beside it, or any
    /// table in the schema sqitch and Supabase keep for their own. Every
    /// migration writes these, so a rehearsal does not judge them; another
    /// tool's history table is a table like the rest, which a migration
    /// may create, drop or write.
    pub fn keeps(self, table: &str, qname: &str) -> bool {
        let unquote = |p: &str| p.trim_matches('"').to_ascii_lowercase();
        let (schema, name) = match qname.split_once('.') {
            Some((s, t)) => (unquote(s), unquote(t)),
            None => (String::new(), unquote(qname)),
        };
        let own = table.to_ascii_lowercase();
        let (own_schema, own_table) = own.split_once('.').unwrap_or(("public", &own));
        let in_schema = schema.is_empty() || schema == own_schema;
        match self {
            Self::Sqitch | Self::Supabase => schema == own_schema,
            Self::Knex => in_schema && (name == own_table || name == format!("{own_table}_lock")),
            // Liquibase's lock table beside it (by its own name, or one
            // an earlier runbook gave it after the history's).
            Self::Liquibase => {
                in_schema
                    && (name == own_table
                        || name == "databasechangeloglock"
                        || name == format!("{own_table}lock"))
            }
            _ => in_schema && name == own_table,
        }
    }

    /// The checksum the tool records, by name; `None`: it records none.
    pub fn checksum_kind(self) -> Option<&'static str> {
        match self {
            Self::Runbook | Self::Prisma | Self::Drizzle => Some("sha256"),
            Self::Flyway => Some("CRC-32"),
            Self::Sqitch => Some("SHA-1"),
            Self::Sqlx => Some("SHA-384"),
            Self::Postgrator => Some("MD5"),
            Self::Liquibase => Some("Liquibase's MD5"),
            Self::Refinery => Some("SipHash-1-3"),
            Self::Knex
            | Self::GolangMigrate
            | Self::Dbmate
            | Self::Goose
            | Self::SqlMigrate
            | Self::Popx
            | Self::Diesel
            | Self::Tern
            | Self::NodePgMigrate
            | Self::Supabase
            | Self::Atlas => None,
        }
    }

    /// The tool whose own advisory lock `migrate` holds, when it has one.
    pub fn lock_owner(self) -> Option<&'static str> {
        match self {
            Self::Sqlx => Some("SQLx"),
            Self::Tern => Some("tern"),
            Self::NodePgMigrate => Some("node-pg-migrate"),
            Self::Atlas => Some("Atlas"),
            _ => None,
        }
    }

    /// sqitch's history is read, never written: deploys go through sqitch.
    pub fn writable(self) -> bool {
        self != Self::Sqitch
    }

    /// Whether the tool's table can mark a script that runs outside a
    /// transaction as unfinished before it runs, so a run that stops
    /// half-way through one is seen by the next ([`Write::Mark`]).
    pub fn marks_unfinished(self) -> bool {
        matches!(
            self,
            Self::Runbook
                | Self::Prisma
                | Self::Knex
                | Self::GolangMigrate
                | Self::Flyway
                | Self::Sqlx
                | Self::Atlas
        )
    }

    /// Whether the tool refuses, by default, a pending migration older than
    /// the newest applied one (from a branch merged after a newer one was
    /// deployed): Flyway (`outOfOrder` off), the Supabase CLI (without
    /// `--include-all`), goose (without `-allow-missing`), node-pg-migrate
    /// (`checkOrder`) and refinery (`abort_missing`) stop; Drizzle never
    /// runs it. The others apply it.
    pub fn refuses_out_of_order(self) -> bool {
        matches!(
            self,
            Self::Flyway
                | Self::Supabase
                | Self::Goose
                | Self::NodePgMigrate
                | Self::Refinery
                | Self::Drizzle
                | Self::Atlas
        )
    }

    /// Whether a `migrate` step applies a pending migration older than the
    /// newest applied one: as its `out_of_order` key says, or else as this
    /// tool, configured as the project configures it for `set`, would.
    pub fn applies_out_of_order(self, set: &Set, setting: Option<bool>) -> bool {
        setting
            .or(self.configured_out_of_order(set).map(|(v, _)| v))
            .unwrap_or(!self.refuses_out_of_order())
    }

    /// Flyway's `outOfOrder` as the project's configuration for `set` gives
    /// it (a flyway.conf, or the application's `spring.flyway.out-of-order`),
    /// and where; for a Flyway history only.
    pub fn configured_out_of_order(self, set: &Set) -> Option<(bool, &str)> {
        let conf = set.flyway_conf.as_ref().filter(|_| self == Self::Flyway)?;
        conf.out_of_order.as_ref().map(|(v, at)| (*v, at.as_str()))
    }

    /// What becomes of a pending migration older than the newest applied,
    /// under this tool's history (as the project configures it for `set`),
    /// as `migrations status` and a rehearsal say it.
    pub fn out_of_order_fate(self, set: &Set) -> String {
        match self.configured_out_of_order(set) {
            Some((true, at)) => {
                return format!(
                    "{at} sets Flyway's outOfOrder, so Flyway would apply such a migration, and so would a migrate step, with a warning, unless it sets `out_of_order: false`"
                );
            }
            Some((false, at)) => {
                return format!(
                    "{at} turns Flyway's outOfOrder off: Flyway would not apply such a migration, and neither would a migrate step unless it sets `out_of_order: true`"
                );
            }
            None => {}
        }
        if self.refuses_out_of_order() {
            format!(
                "{} would not apply such a migration, and neither would a migrate step unless it sets `out_of_order: true`",
                self.name()
            )
        } else {
            "a migrate step applies such a migration with a warning".into()
        }
    }

    /// Only runbook's own rows say which run applied them (`to: before_run`).
    pub fn records_runs(self) -> bool {
        self == Self::Runbook
    }

    /// Which tool a table's columns say it belongs to. A lone `version`
    /// column is dbmate's (text), or by its name pop's older table, or
    /// tern's (by its name, `schema_version`, or its integer type under any
    /// name): one row, the newest version applied, which read as dbmate's
    /// list would count every older one as pending.
    fn of_columns(t: &Found) -> Option<Tool> {
        let (table, columns) = (t.name.as_str(), t.columns.as_slice());
        let has = |c: &str| columns.iter().any(|x| x == c);
        let relname = table.rsplit('.').next().unwrap_or(table);
        Some(if has("statements_done") && has("run_id") {
            Self::Runbook
        } else if has("version") && has("statements")
            || columns == ["version"] && table == Self::Supabase.default_table()
        {
            // The CLI's first tables had only `version`.
            Self::Supabase
        } else if has("migration_name") && has("rolled_back_at") {
            Self::Prisma
        } else if has("batch") && has("migration_time") {
            Self::Knex
        } else if has("installed_rank") {
            Self::Flyway
        } else if has("partial_hashes") && has("operator_version") {
            Self::Atlas
        } else if has("orderexecuted") && has("exectype") && has("md5sum") {
            Self::Liquibase
        } else if columns == ["version", "name", "applied_on", "checksum"] {
            Self::Refinery
        } else if has("version") && has("md5") && has("run_at")
            || columns == ["version"] && relname == "schemaversion"
        {
            Self::Postgrator
        } else if has("success") && has("checksum") && has("execution_time") && has("description") {
            Self::Sqlx
        } else if has("version_id") && has("is_applied") {
            Self::Goose
        } else if has("change_id") && has("script_hash") {
            Self::Sqitch
        } else if has("version") && has("dirty") {
            Self::GolangMigrate
        } else if has("version") && has("version_self")
            || columns == ["version"] && relname == "schema_migration"
        {
            Self::Popx
        } else if columns == ["id", "applied_at"] {
            Self::SqlMigrate
        } else if columns == ["id", "name", "run_on"] {
            Self::NodePgMigrate
        } else if columns == ["id", "hash", "created_at"] {
            Self::Drizzle
        } else if columns == ["version", "run_on"] {
            Self::Diesel
        } else if columns == ["version"] && (relname == "schema_version" || t.integer_version) {
            Self::Tern
        } else if columns == ["version"] {
            Self::Dbmate
        } else {
            return None;
        })
    }
}

/// What a step or a command says about the history: a tool, a table,
/// either, or neither (detect both).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spec {
    pub tool: Option<Tool>,
    pub table: Option<String>,
}

/// Why the history cannot be opened.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot read the migration history: {}", .0.message)]
    Sql(ErrorInfo),
    #[error("{table} is not a {tool} history table{}", .looks.map(|t| format!(" (its columns are {t}'s)")).unwrap_or_default())]
    NotThat {
        table: String,
        tool: &'static str,
        looks: Option<&'static str>,
    },
    #[error("{0} is not a migration history table runbook knows")]
    Unknown(String),
    #[error("this database has several migration histories: {}", .0.join(", "))]
    Several(Vec<String>),
    #[error(
        "this database has a migration history in another schema or under another name than its tool's default: {}; with no word on it, runbook would start a new one and run every migration again",
        .0.join(", ")
    )]
    Elsewhere(Vec<String>),
    #[error(
        "this database records its migrations in {table} ({tool}), which runbook does not read; \
         with no history of its own, runbook would count every migration as pending and run it again"
    )]
    Foreign { table: String, tool: String },
    #[error(
        "Drizzle's history knows a migration by the `when` its meta/_journal.json gives it, and {0} has no journal"
    )]
    NoJournal(String),
    #[error(
        "Liquibase's history knows a migration by its changeset's file, id and author, and {dir} is in the {format} format, which has no changesets"
    )]
    NoChangesets { dir: String, format: &'static str },
    #[error(
        "{conf} puts Flyway's history in {table}, which this database does not have, and it has one in {found}: \
         with no word on which, runbook would start a new history there and run every migration again"
    )]
    ConfElsewhere {
        conf: String,
        table: String,
        found: String,
    },
    #[error("{file}: {why}, and this database's history is Refinery's")]
    NotRefinery { file: String, why: &'static str },
    #[error("{file}: {why}, and these are the Supabase CLI's migrations")]
    NotSupabase { file: String, why: &'static str },
}

impl HistoryError {
    pub fn hint(&self) -> &'static str {
        match self {
            Self::Sql(_) => "check the role can read the history table",
            Self::NotThat { .. } | Self::Unknown(_) => {
                "name the table and its tool: `history: {format: knex, table: public.knex_migrations}` (or --history-format/--history-table)"
            }
            Self::Several(_) => {
                "say which one this directory's migrations are recorded in: `history: {format: …}` (or --history-format)"
            }
            Self::ConfElsewhere { .. } => {
                "name the table the applied migrations are recorded in: `history: {format: flyway, table: SCHEMA.TABLE}` (or --history-table); if the file is not this database's, that says so too"
            }
            Self::Elsewhere(_) => {
                "name the one this directory's migrations are recorded in: `history: {table: SCHEMA.TABLE}` (or --history-table); if none is, say `history: {format: runbook}`"
            }
            Self::NoChangesets { .. } => {
                "point `dir` at the Liquibase changelog's directory (formatted SQL, `format: liquibase`), or record this directory in its own tool's history"
            }
            Self::NoJournal(_) => {
                "point `dir` at the Drizzle folder that holds meta/_journal.json, with `format: auto` or `format: drizzle`"
            }
            Self::NotSupabase { .. } => {
                "name the file `<timestamp>_name.sql`, with a 14-digit timestamp like its neighbours' (`supabase migration new NAME` names them so)"
            }
            Self::NotRefinery { .. } => {
                "Refinery runs `V<integer>__name.sql` files; its `U` files are migrations without an order, not undos, which runbook does not run"
            }
            Self::Foreign { .. } => {
                "record what the database already has in runbook's history first: `runbook migrations baseline --version NEWEST_APPLIED`; if that table is not this directory's history, say `history: {format: runbook}` (or --history-format runbook)"
            }
        }
    }
}

/// The newest migration the history says is applied, as out-of-order
/// migrations are judged against it: its version, and Drizzle's journal
/// `when` (Drizzle goes by that, not by the version).
pub struct Newest<'a> {
    pub version: Option<&'a str>,
    /// Drizzle's journal `when` of the newest applied migration.
    pub when: Option<i64>,
}

impl<'a> Newest<'a> {
    pub fn of(set: &Set, applied: &'a [Applied]) -> Newest<'a> {
        Newest {
            version: applied
                .iter()
                .map(|a| a.version.as_str())
                .max_by(|a, b| set.cmp(a, b)),
            when: applied
                .iter()
                .filter_map(|a| {
                    set.migrations
                        .iter()
                        .find(|m| m.version == a.version)?
                        .created_ms
                })
                .max(),
        }
    }

    /// Whether a pending migration comes before it: applying it now is
    /// applying it out of order.
    pub fn is_after(&self, set: &Set, x: &Migration) -> bool {
        match (x.created_ms, self.when, self.version) {
            (Some(when), Some(newest), _) => when <= newest,
            (_, _, Some(max)) => set.cmp(&x.version, max).is_lt(),
            _ => false,
        }
    }
}

/// What [`History::ensure`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ensured {
    #[default]
    Existed,
    /// It made the table, and the schema too when `schema`.
    Made { schema: bool },
}

/// One migration the history has, in runbook's terms.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Applied {
    /// The directory's version for it (the tool's own, when no file matches).
    pub version: String,
    pub name: String,
    /// How the tool knows the row: a name, a rank, an id.
    pub key: String,
    /// By the tool's own rule; `None` when the tool records none.
    pub checksum: Option<String>,
    pub applied_at: String,
    pub duration_ms: Option<i64>,
    /// The run that applied it (runbook's own history only).
    pub run_id: String,
    /// Who or what applied it, as the tool records it; empty where the
    /// tool's table keeps no writer (any tool, or runbook, may have).
    pub by: String,
    pub dirty: bool,
    /// For a dirty row: which way the script was going, whether it ran in a
    /// transaction, how far it got and what stopped it.
    pub direction: String,
    pub in_transaction: bool,
    pub statements_done: i32,
    pub statements_total: i32,
    pub error: Option<String>,
    /// Where the tool records the order it applied its migrations in
    /// (Liquibase's `ORDEREXECUTED`, Flyway's `installed_rank`; the row's
    /// serial id in knex's, goose's, node-pg-migrate's and Drizzle's; the
    /// time in runbook's, SQLx's, Atlas's, sql-migrate's and Diesel's):
    /// its place in that order, rows applied together sharing one. A
    /// rollback undoes the last applied first.
    #[serde(skip)]
    pub order: Option<i64>,
}

/// Where a repeatable migration (Flyway's `R__`) stands, by the newest row
/// with its description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeatable {
    /// Never applied: it runs.
    Pending,
    /// Applied with the checksum its file has now: it does not run.
    Applied,
    /// Applied with another checksum: the file changed, and it runs again.
    Outdated,
    /// Its newest run stopped half-way outside a transaction.
    Dirty,
}

impl Repeatable {
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Applied => "applied",
            Self::Outdated => "outdated",
            Self::Dirty => "dirty",
        }
    }

    /// Whether a migration to the newest version runs it.
    pub fn due(self) -> bool {
        matches!(self, Self::Pending | Self::Outdated)
    }
}

/// Why Liquibase runs a changeset it already ran again on an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Again {
    /// It says `runOnChange:true`, and its text changed since it ran.
    Changed,
    /// It says `runAlways:true`.
    Always,
}

impl Again {
    pub fn name(self) -> &'static str {
        match self {
            Self::Changed => "run_on_change",
            Self::Always => "run_always",
        }
    }

    /// Why, for a message.
    pub fn why(self) -> &'static str {
        match self {
            Self::Changed => "it says runOnChange:true, and its text changed since it ran",
            Self::Always => "it says runAlways:true",
        }
    }
}

/// A change to the history around one script.
pub enum Write<'a> {
    /// Before the script runs, in its own commit.
    Mark {
        m: &'a Migration,
        direction: Direction,
        run_id: &'a str,
        in_tx: bool,
        total: usize,
        /// It ran before, and runs again ([`Again`]): its row stays the
        /// earlier run's until it finishes.
        again: bool,
    },
    /// A script outside a transaction finished `done` statements.
    Progress { m: &'a Migration, done: usize },
    /// Statement `at` of a script outside a transaction failed after
    /// earlier ones committed.
    Failed {
        m: &'a Migration,
        at: usize,
        message: &'a str,
    },
    /// The script ran to its end (inside its transaction, when it has one).
    Finish {
        m: &'a Migration,
        direction: Direction,
        duration: Duration,
        total: usize,
        in_tx: bool,
        again: bool,
    },
    /// The script changed nothing: put back what the mark changed.
    Undo {
        m: &'a Migration,
        direction: Direction,
        again: bool,
    },
    /// Record the file's checksum now (an allowed change).
    Checksum { m: &'a Migration },
}

/// A history table of one tool.
#[derive(Debug)]
pub struct History {
    pub tool: Tool,
    /// `schema.table`.
    pub name: String,
    quoted: String,
    schema: String,
    /// The directory's versions, in order, and its format's order of them.
    versions: Vec<String>,
    format: migrations::Format,
    /// Each version's migration name, in the same order.
    names: Vec<String>,
    /// Each version's up file name (its directory left out), in the same order.
    files: Vec<String>,
    /// Each version's journal `when` (Drizzle's), in the same order.
    stamps: Vec<Option<i64>>,
    /// Flyway: the front of the names of another location's files
    /// (`../common/`), which its `script` column leaves out.
    flyway_locations: Vec<String>,
    /// The versions of the application's migrations in code (Flyway's
    /// Java or Kotlin, goose's Go): spelled as the directory spells them,
    /// and counted as applied by Flyway's `BASELINE` row as the scripts'.
    code_versions: Vec<String>,
    /// runbook's own history: the row a directory version is recorded
    /// under when that differs (see [`History::rekey`]). Filled by `read`.
    keys: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// Knex: the batch this step's migrations are recorded under.
    batch: AtomicI64,
    /// How it was chosen, for the log: named, or detected.
    pub detected: bool,
    /// A new runbook table for a directory of a tool whose table was not
    /// made (it cannot mark a script that stops half-way): that tool, for
    /// the log to say its own migrator will not see these migrations.
    pub instead_of: Option<Tool>,
    /// Refinery's: its versions are 64-bit (`int8-versions`), which its
    /// checksum hashes as such.
    wide_versions: bool,
    /// Atlas: each file's entry in atlas.sum (by file name), which its
    /// revision records.
    atlas_hashes: std::collections::HashMap<String, String>,
    /// Atlas: each up's statements and their running hashes, by version,
    /// worked out on its first write (see `atlas::partial`).
    atlas_partials: std::sync::Mutex<std::collections::HashMap<String, Vec<(String, String)>>>,
    /// Liquibase's changesets, each with its directory version (its place):
    /// Liquibase's history knows a changeset by its file, id and author,
    /// and so does runbook's own history of a Liquibase directory (its row
    /// is `FILE::ID::AUTHOR`, [`History::key_of`]), so that a changeset
    /// added before others does not take their places.
    changesets: Vec<(String, migrations::ChangesetId)>,
    /// Liquibase's history: how its rows name the directory's files, where
    /// Liquibase ran from elsewhere (see `liquibase::Renaming`). Found by
    /// `read`.
    liquibase_renaming: std::sync::Mutex<Option<liquibase::Renaming>>,
    /// The scripts the tool deploying these files would fail
    /// ([`History::deployer`], [`Tool::would_fail`]), found when opened.
    pub tool_fails: Vec<ToolFails>,
    /// What the deploying tool does to the session before each migration,
    /// so that what one sets with `SET` or `set_config(..., false)`
    /// (pg_dump's `search_path` of '') does not reach the next: the
    /// Supabase CLI's `RESET ALL` (which keeps a `SET ROLE`), sqitch's new
    /// session (every script runs in a new psql), or Flyway's role and
    /// search path ([`flyway_reset`]).
    pub session_reset: Option<String>,
    /// Liquibase's lock table, in the history's schema: its own name
    /// (`databasechangeloglock`, whatever the history's), or the one the
    /// project's configuration gives.
    pub liquibase_lock: String,
}

/// A baseline recorded as Flyway's `baselineOnMigrate` records it: the
/// schemas already held objects when there was no history yet.
#[derive(Debug, Clone)]
pub struct FlywayBaseline {
    pub version: String,
    pub description: Option<String>,
    /// Where `baselineOnMigrate` is set (`file:line`).
    pub at: String,
    /// The schemas that held objects.
    pub schemas: Vec<String>,
}

/// How Flyway starts on a database ([`History::flyway_start`]).
pub enum FlywayStart {
    /// Its history is there, or the schemas it manages are empty.
    AsUsual,
    /// It refuses to migrate: the message and hint.
    Refused(String, &'static str),
    /// It records this baseline first (`baselineOnMigrate`).
    Baseline(FlywayBaseline),
}

impl History {
    /// `schema.table` or `table` (in `public`).
    pub fn new(tool: Tool, table: &str, set: &Set) -> History {
        let (schema, name) = table.split_once('.').unwrap_or(("public", table));
        History {
            tool,
            name: format!("{schema}.{name}"),
            quoted: format!("{}.{}", quote::ident(schema), quote::ident(name)),
            schema: schema.to_string(),
            versions: set.migrations.iter().map(|m| m.version.clone()).collect(),
            format: set.format,
            names: set.migrations.iter().map(|m| m.name.clone()).collect(),
            files: set
                .migrations
                .iter()
                .map(|m| file_name(&m.up.file).to_string())
                .collect(),
            stamps: set.migrations.iter().map(|m| m.created_ms).collect(),
            flyway_locations: set.flyway_locations().into_iter().map(|(_, p)| p).collect(),
            code_versions: set
                .code_migrations
                .iter()
                .filter(|c| !c.version.is_empty())
                .map(|c| c.version.clone())
                .collect(),
            keys: Default::default(),
            batch: AtomicI64::new(1),
            detected: false,
            instead_of: None,
            wide_versions: false,
            atlas_hashes: if tool == Tool::Atlas {
                migrations::atlas_hashes(set)
            } else {
                Default::default()
            },
            atlas_partials: Default::default(),
            changesets: set
                .migrations
                .iter()
                .chain(&set.unselected)
                .filter_map(|m| Some((m.version.clone(), m.changeset.clone()?)))
                .collect(),
            liquibase_renaming: Default::default(),
            tool_fails: Vec::new(),
            session_reset: None,
            liquibase_lock: set.liquibase_place.lock_name().to_string(),
        }
    }

    /// The history `spec` names, or the one this database has: a named
    /// table is recognised by its columns; with nothing named, runbook's
    /// own table if it exists, else the one other tool's table found, else
    /// a new runbook table (a new Flyway table for a directory with
    /// repeatable migrations, which only Flyway's records). Several tools'
    /// tables and no word on which is an error, not a guess; so is a
    /// history runbook cannot read (another tool's, or a known name with
    /// other columns), since a new runbook table beside it would run every
    /// migration again.
    pub async fn open(db: &Db, spec: &Spec, set: &mut Set) -> Result<History, HistoryError> {
        // Where the URL names a schema as application tools do (Prisma's
        // `schema`, dbmate's first of `search_path`), their tables are
        // looked for there too, not only where they are by default.
        let named = named_schema(db);
        let moved = |tools: &[Tool]| -> Vec<String> {
            tools
                .iter()
                .filter(|t| t.table_in(named) != t.default_table())
                .map(|t| t.table_in(named))
                .collect()
        };
        // Where a Flyway project's configuration file puts Flyway's history
        // (`table`, `defaultSchema`, `schemas`): Flyway's table is there,
        // and a new one is made there.
        let conf_table = set
            .flyway_conf
            .as_ref()
            .filter(|_| set.format == migrations::Format::Flyway)
            .and_then(migrations::flyway_conf::Conf::history_table);
        let flyway_table = |named: Option<&str>| {
            conf_table
                .clone()
                .unwrap_or_else(|| Tool::Flyway.table_in(named))
        };
        // Where a Liquibase project's configuration puts its history
        // (`liquibase-schema`, else `default-schema`, and its table's own
        // name): its table is there too, and a new one is made there.
        let liquibase_conf = set
            .liquibase_place
            .history_table()
            .filter(|_| set.format == migrations::Format::Liquibase);
        let table_for = |tool: Tool, named: Option<&str>| match tool {
            Tool::Flyway => flyway_table(named),
            Tool::Liquibase => liquibase_conf
                .clone()
                .unwrap_or_else(|| tool.table_in(named)),
            _ => tool.table_in(named),
        };
        let candidates: Vec<String> = match (&spec.tool, &spec.table) {
            (_, Some(t)) => vec![t.clone()],
            // Flyway's default place too: a history there, and none where
            // the file says, is a question to ask, not to guess.
            (Some(Tool::Flyway), None) if conf_table.is_some() => [
                vec![
                    flyway_table(named),
                    Tool::Flyway.default_table().to_string(),
                ],
                moved(&[Tool::Flyway]),
            ]
            .concat(),
            (Some(Tool::Liquibase), None) if liquibase_conf.is_some() => [
                vec![table_for(Tool::Liquibase, named)],
                vec![Tool::Liquibase.default_table().to_string()],
                moved(&[Tool::Liquibase]),
            ]
            .concat(),
            (Some(tool), None) => {
                [vec![tool.default_table().to_string()], moved(&[*tool])].concat()
            }
            (None, None) => DETECTED
                .iter()
                .map(|t| t.default_table().to_string())
                .chain(FOREIGN.iter().map(|(table, _)| (*table).to_string()))
                .chain(moved(&DETECTED))
                .chain(conf_table.clone())
                .chain(liquibase_conf.clone())
                .collect(),
        };
        let mut seen = std::collections::HashSet::new();
        let candidates: Vec<String> = candidates
            .into_iter()
            .filter(|c| seen.insert(c.clone()))
            .collect();
        let mut found = tables(db, &candidates).await.map_err(HistoryError::Sql)?;
        // Two names of one table (Atlas's unqualified name on a search path
        // the URL sets, and its name in that schema) are one history.
        let mut resolved = std::collections::HashSet::new();
        found.retain(|t| resolved.insert(t.name.clone()));
        if let Some(conf) = conf_table.as_ref().filter(|_| spec.table.is_none()) {
            let qualified = |t: &str| {
                let t = t.to_ascii_lowercase();
                if t.contains('.') {
                    t
                } else {
                    format!("public.{t}")
                }
            };
            let other = found
                .iter()
                .filter(|t| Tool::of_columns(t) == Some(Tool::Flyway))
                .find(|t| qualified(&t.name) != qualified(conf));
            let there = found.iter().any(|t| qualified(&t.name) == qualified(conf));
            if let (false, Some(other)) = (there, other) {
                return Err(HistoryError::ConfElsewhere {
                    conf: set
                        .flyway_conf
                        .as_ref()
                        .map(|c| c.path.display().to_string())
                        .unwrap_or_default(),
                    table: conf.clone(),
                    found: other.name.clone(),
                });
            }
        }
        let mut history = match (spec.tool, &spec.table) {
            (Some(tool), table) => {
                if table.is_none() && found.len() > 1 {
                    return Err(HistoryError::Several(
                        found
                            .iter()
                            .map(|t| format!("{} ({})", t.name, tool.name()))
                            .collect(),
                    ));
                }
                let table = table
                    .clone()
                    .or_else(|| found.first().map(|t| t.name.clone()))
                    .unwrap_or_else(|| table_for(tool, named));
                if let Some(t) = found.first() {
                    let looks = Tool::of_columns(t);
                    if looks != Some(tool) {
                        return Err(HistoryError::NotThat {
                            table: t.name.clone(),
                            tool: tool.name(),
                            looks: looks.map(Tool::name),
                        });
                    }
                }
                History::new(tool, &table, set)
            }
            (None, Some(table)) => match found.first() {
                None => History::new(Tool::Runbook, table, set),
                Some(t) => {
                    let (tool, name) = (
                        Tool::of_columns(t).ok_or_else(|| HistoryError::Unknown(t.name.clone()))?,
                        &t.name,
                    );
                    History {
                        detected: tool != Tool::Runbook,
                        ..History::new(tool, name, set)
                    }
                }
            },
            (None, None) => {
                let known: Vec<(Tool, &String)> = found
                    .iter()
                    .filter_map(|t| Some((Tool::of_columns(t)?, &t.name)))
                    .collect();
                match known.as_slice() {
                    _ if known.iter().any(|(t, _)| *t == Tool::Runbook) => {
                        let own: Vec<&String> = known
                            .iter()
                            .filter(|(t, _)| *t == Tool::Runbook)
                            .map(|(_, n)| *n)
                            .collect();
                        if let [one] = own[..] {
                            History::new(Tool::Runbook, one, set)
                        } else {
                            return Err(HistoryError::Several(
                                own.iter().map(|n| format!("{n} (runbook)")).collect(),
                            ));
                        }
                    }
                    [] => match unreadable(&found) {
                        Some(e) => return Err(e),
                        None => {
                            let away = elsewhere(db).await.map_err(HistoryError::Sql)?;
                            if !away.is_empty() {
                                return Err(HistoryError::Elsewhere(away));
                            }
                            // A new history is the directory's own tool's
                            // table where that table marks a script that
                            // stops half-way (Prisma's, Flyway's), so the
                            // tool reads what runbook applied; else
                            // runbook's own, which marks every script.
                            // Only Flyway's table records repeatable
                            // migrations.
                            let own = Tool::of_set(set);
                            let tool = match own {
                                Some(t) if t.marks_unfinished() => t,
                                _ if !set.repeatables.is_empty() => Tool::Flyway,
                                _ => Tool::Runbook,
                            };
                            let table = table_for(tool, named);
                            History {
                                instead_of: own.filter(|t| *t != tool && t.writable()),
                                ..History::new(tool, &table, set)
                            }
                        }
                    },
                    [(tool, name)] => History {
                        detected: true,
                        ..History::new(*tool, name, set)
                    },
                    several => {
                        return Err(HistoryError::Several(
                            several
                                .iter()
                                .map(|(t, n)| format!("{n} ({})", t.name()))
                                .collect(),
                        ));
                    }
                }
            }
        };
        // A database another tool deploys is deployed from this directory
        // alone: a Flyway configuration's other locations are Flyway's.
        if !matches!(history.tool, Tool::Flyway | Tool::Runbook)
            && !set.flyway_locations().is_empty()
        {
            set.without_flyway_locations(history.tool.name());
            history = History {
                detected: history.detected,
                instead_of: history.instead_of,
                ..History::new(history.tool, &history.name, set)
            };
        }
        if history.tool == Tool::Refinery {
            history.wide_versions = refinery::wide(db, &history)
                .await
                .map_err(|e| HistoryError::Sql(db::error_info(&e, None)))?;
            if let Some(e) = refinery::refused(set, history.wide_versions) {
                return Err(e);
            }
            // Refinery runs no downs: its migrations are forward-only.
            set.forward_only("Refinery has no down migrations");
        }
        if history.tool == Tool::Supabase {
            set.forward_only("the Supabase CLI has no down migrations");
        }
        if history.tool == Tool::Liquibase && set.format != migrations::Format::Liquibase {
            return Err(HistoryError::NoChangesets {
                dir: set.dir.display().to_string(),
                format: set.format.name(),
            });
        }
        if history.tool == Tool::Drizzle && set.migrations.iter().any(|m| m.created_ms.is_none()) {
            return Err(HistoryError::NoJournal(set.dir.display().to_string()));
        }
        if history.tool == Tool::Knex {
            history.batch = AtomicI64::new(knex::next_batch(db, &history).await?);
        }
        // Refinery runs the same files as they are: no placeholders.
        let mut default_schema = None;
        if set.format == migrations::Format::Flyway && history.tool != Tool::Refinery {
            let values = history.flyway_values(db).await?;
            migrations::fill_flyway(set, &values);
            default_schema = Some(values.default_schema);
        }
        if let Some(tool) = history.deployer(set) {
            // What the CLI would skip or run elsewhere, also in a rehearsal
            // of `supabase/migrations` on a new database.
            if tool == Tool::Supabase
                && let Some(e) = supabase::refused(set)
            {
                return Err(e);
            }
            history.session_reset = match (tool, default_schema) {
                (Tool::Supabase, _) => Some(db::RESET_ALL.to_string()),
                (Tool::Flyway, Some(schema)) => Some(flyway_reset(&schema)),
                (Tool::Liquibase, _) => set
                    .liquibase_place
                    .default
                    .as_ref()
                    .map(|(schema, _)| schema_first(schema)),
                _ => None,
            };
            history.tool_fails = tool.would_fail(set);
            set.warnings
                .extend(history.tool_fails.iter().map(ToString::to_string));
        }
        // sqitch runs each script in a psql of its own: a new session.
        if set.format == migrations::Format::Sqitch {
            history.session_reset = Some(db::RESET_SESSION.to_string());
        }
        Ok(history)
    }

    /// What Flyway's own placeholders are on this database: its default
    /// schema is the one its history table is in (with runbook's history,
    /// the session's current schema, as Flyway would choose).
    async fn flyway_values(&self, db: &Db) -> Result<migrations::FlywayValues, HistoryError> {
        let row = db
            .client
            .query_one(
                "SELECT current_user::text, current_database()::text, current_schema()::text,
                        to_char(now(), 'YYYY-MM-DD HH24:MI:SS')",
                &[],
            )
            .await
            .map_err(|e| HistoryError::Sql(db::error_info(&e, None)))?;
        let flyway = self.tool == Tool::Flyway;
        let table = self.name.rsplit('.').next().unwrap_or(&self.name);
        let current: Option<String> = row.get(2);
        Ok(migrations::FlywayValues {
            default_schema: if flyway {
                self.schema.clone()
            } else {
                current.unwrap_or_else(|| "public".into())
            },
            table: if flyway {
                table
            } else {
                "flyway_schema_history"
            }
            .to_string(),
            user: row.get(0),
            database: row.get(1),
            timestamp: row.get(3),
            working_directory: std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
        })
    }

    /// The tool that deploys these files, by which they are judged
    /// ([`Tool::would_fail`]): the history's, or, with runbook's own
    /// history (a rehearsal's new database), the one the directory's format
    /// belongs to.
    pub fn deployer(&self, set: &Set) -> Option<Tool> {
        match self.tool {
            Tool::Runbook => Tool::of_set(set),
            tool => Some(tool),
        }
    }

    /// The advisory lock a migration holds on this history: SQLx's or
    /// tern's own for theirs, so their migrators and runbook never run
    /// side by side; else runbook's, per database and table.
    pub async fn lock_key(&self, db: &Db, database: &str) -> Result<i64, ErrorInfo> {
        match self.tool {
            Tool::Sqlx => {}
            Tool::Tern => return Ok(tern::LOCK_KEY),
            Tool::NodePgMigrate => return Ok(simple::NODE_PG_MIGRATE_LOCK),
            Tool::Atlas => return Ok(atlas::lock_key()),
            _ => return Ok(db::lock_key(database, &format!("migrations:{}", self.name))),
        }
        let row = db
            .client
            .query_one("SELECT current_database()::text", &[])
            .await
            .map_err(|e| db::error_info(&e, None))?;
        Ok(sqlx::lock_key(row.get(0)))
    }

    /// What to say about it: `knex history in public.knex_migrations (detected)`.
    pub fn describe(&self) -> String {
        format!(
            "{} history in {}{}",
            self.tool.name(),
            self.name,
            if self.detected { " (detected)" } else { "" }
        )
    }

    /// Whether a relation (`schema.table` as a snapshot names it, quoted or
    /// not) is this history's bookkeeping ([`Tool::keeps`]).
    pub fn keeps(&self, qname: &str) -> bool {
        self.tool.keeps(&self.name, qname)
    }

    /// When a new runbook table records a directory of a tool whose own
    /// table was not made ([`History::instead_of`]): that the tool's own
    /// migrator will not see these migrations, and how to keep its table.
    pub fn not_kept(&self) -> Option<String> {
        self.instead_of.map(|t| {
            format!(
                "{t}'s own history table is not made: it cannot mark a script that stops \
                 half-way, and runbook's can. {t}'s own migrator will not see these migrations \
                 as applied (an application that runs it at start-up would run them again); \
                 `history: {{format: {t}}}` keeps {t}'s table instead",
                t = t.name()
            )
        })
    }

    pub async fn exists(&self, db: &Db) -> Result<bool, ErrorInfo> {
        let row = db
            .client
            .query_one(
                &format!(
                    "SELECT to_regclass({}) IS NOT NULL",
                    quote::literal(&self.quoted)
                ),
                &[],
            )
            .await
            .map_err(|e| db::error_info(&e, None))?;
        Ok(row.get(0))
    }

    /// Flyway's start where its history is not there yet. Where a schema it
    /// manages (its `schemas`, else the history's) already holds objects,
    /// Flyway refuses to migrate ("Found non-empty schema(s) ... but no schema
    /// history table"), and so does the step, before anything runs; unless
    /// the project sets `baselineOnMigrate`, with which Flyway records a
    /// baseline at `baselineVersion` (1 by default) and applies only the
    /// migrations after it: the baseline returned, for the step to record.
    pub async fn flyway_start(&self, db: &Db, set: &Set) -> Result<FlywayStart, ErrorInfo> {
        if self.tool != Tool::Flyway || self.exists(db).await? {
            return Ok(FlywayStart::AsUsual);
        }
        let conf = set.flyway_conf.as_ref();
        let schemas = match conf.map(|c| c.schemas.clone()).filter(|s| !s.is_empty()) {
            Some(s) => s,
            None => vec![self.schema.clone()],
        };
        let full = self.not_empty(db, &schemas).await?;
        if full.is_empty() {
            return Ok(FlywayStart::AsUsual);
        }
        Ok(
            match conf.and_then(|c| c.baseline_on_migrate.clone().map(|b| (c, b))) {
                Some((c, (true, at))) => FlywayStart::Baseline(FlywayBaseline {
                    version: c.baseline_version.clone().unwrap_or_else(|| "1".into()),
                    description: c.baseline_description.clone(),
                    at,
                    schemas: full,
                }),
                _ => FlywayStart::Refused(
                    format!(
                        "schema {} already holds objects, and there is no Flyway history ({}): Flyway refuses to migrate such a database, and so does this step",
                        full.join(", "),
                        self.name
                    ),
                    "nothing ran. If the database already has some of these migrations, record them as applied first: `runbook migrations baseline <dir> --version <V>` (as `flyway baseline`). Where the project has Flyway do that itself, it sets `baselineOnMigrate=true` (`spring.flyway.baseline-on-migrate`), which this step follows. If those objects are not these migrations', deploy them to a schema of their own (`flyway.schemas`)",
                ),
            },
        )
    }

    /// The schemas among `schemas` that already hold an object, as Flyway
    /// asks before it makes a new history ([`flyway::NOT_EMPTY`]).
    async fn not_empty(&self, db: &Db, schemas: &[String]) -> Result<Vec<String>, ErrorInfo> {
        let rows = db
            .client
            .query(flyway::NOT_EMPTY, &[&schemas])
            .await
            .map_err(|e| db::error_info(&e, None))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Record Flyway's baseline at `through`, as its `baselineOnMigrate`
    /// does on a schema that already holds objects, in a history just made.
    pub async fn baseline_on_migrate(
        &self,
        db: &Db,
        through: &str,
        description: Option<&str>,
    ) -> Result<(), ErrorInfo> {
        let sql =
            flyway::baseline_on_migrate(self, through, description.unwrap_or(flyway::DESCRIPTION));
        db.client
            .batch_execute(&sql)
            .await
            .map_err(|e| db::error_info(&e, None))
    }

    /// Create the table, in its tool's own format, when it does not exist;
    /// whether it did, and its schema too.
    pub async fn ensure(&self, db: &Db) -> Result<Ensured, ErrorInfo> {
        if !self.tool.writable() || self.exists(db).await? {
            return Ok(Ensured::Existed);
        }
        let create = match self.tool {
            Tool::Runbook => runbook::create(self),
            Tool::Prisma => prisma::create(self),
            Tool::Knex => knex::create(self),
            Tool::GolangMigrate => golang::create(self),
            Tool::Flyway => flyway::create(self),
            Tool::Sqlx => sqlx::create(self),
            Tool::Drizzle => drizzle::create(self),
            Tool::Tern => tern::create(self),
            Tool::Postgrator => postgrator::create(self),
            Tool::Refinery => refinery::create(self),
            Tool::Supabase => supabase::create(self),
            Tool::Atlas => atlas::create(self),
            Tool::Liquibase => liquibase::create(self),
            Tool::Dbmate
            | Tool::Goose
            | Tool::SqlMigrate
            | Tool::Popx
            | Tool::Diesel
            | Tool::NodePgMigrate => simple::create(self),
            Tool::Sqitch => unreachable!("sqitch is not writable"),
        };
        // Only when missing: `IF NOT EXISTS` would leave a notice in the
        // step's report on every first run.
        let has_schema: bool = db
            .client
            .query_one(
                "SELECT to_regnamespace($1) IS NOT NULL",
                &[&quote::ident(&self.schema)],
            )
            .await
            .map_err(|e| db::error_info(&e, None))?
            .get(0);
        let sql = if has_schema {
            create
        } else {
            format!(
                "CREATE SCHEMA IF NOT EXISTS {};\n{create}",
                quote::ident(&self.schema)
            )
        };
        db.client
            .batch_execute(&sql)
            .await
            .map_err(|e| db::error_info(&e, None))?;
        Ok(Ensured::Made {
            schema: !has_schema,
        })
    }

    /// Drop what [`Self::ensure`] made (the table, its tool's lock table,
    /// and with `schema` the schema, if nothing else is in it) when it
    /// records no migration applied (Flyway's rows of an undo say none
    /// is): a run that made it and then rolled back everything it applied
    /// leaves the database as it found it. Whether it dropped it.
    /// runbook's own table is its state, as its journal is, and stays.
    pub async fn drop_made(
        &self,
        db: &Db,
        set: &Set,
        schema: bool,
        baselined: bool,
    ) -> Result<bool, ErrorInfo> {
        if self.tool == Tool::Runbook || !self.exists(db).await? {
            return Ok(false);
        }
        // The Flyway baseline the step recorded as it made the table
        // (`baselineOnMigrate`) is part of its making, not a migration: it
        // reads as the versions it covers, with no row of their own.
        let recorded = self.read(db, set).await?;
        if recorded
            .iter()
            .any(|a| !(baselined && self.tool == Tool::Flyway && a.key.is_empty()))
        {
            return Ok(false);
        }
        let t = &self.quoted;
        // Flyway's repeatable migrations have no undo: one that ran stays.
        if self.tool == Tool::Flyway {
            let repeated: i64 = db
                .client
                .query_one(
                    &format!("SELECT count(*) FROM {t} WHERE version IS NULL AND type <> 'SCHEMA'"),
                    &[],
                )
                .await
                .map_err(|e| db::error_info(&e, None))?
                .get(0);
            if repeated > 0 {
                return Ok(false);
            }
        }
        let mut tables = vec![t.clone()];
        match self.tool {
            Tool::Knex => tables.push(knex::lock(self)),
            Tool::Liquibase => tables.push(liquibase::lock_table(self)),
            _ => {}
        }
        db.client
            .batch_execute(&format!("DROP TABLE IF EXISTS {}", tables.join(", ")))
            .await
            .map_err(|e| db::error_info(&e, None))?;
        if schema {
            // Only an empty schema: RESTRICT refuses one with anything else.
            let _ = db
                .client
                .batch_execute(&format!(
                    "DROP SCHEMA {} RESTRICT",
                    quote::ident(&self.schema)
                ))
                .await;
        }
        Ok(true)
    }

    /// Every migration the history has, by version; empty when the table
    /// does not exist yet.
    pub async fn read(&self, db: &Db, set: &Set) -> Result<Vec<Applied>, ErrorInfo> {
        if !self.exists(db).await? {
            return Ok(Vec::new());
        }
        let mut out = match self.tool {
            Tool::Runbook => runbook::read(self, db).await,
            Tool::Prisma => prisma::read(self, db).await,
            Tool::Knex => knex::read(self, db).await,
            Tool::GolangMigrate => golang::read(self, db).await,
            Tool::Flyway => flyway::read(self, db).await,
            Tool::Sqlx => sqlx::read(self, db).await,
            Tool::Drizzle => drizzle::read(self, db).await,
            Tool::Tern => tern::read(self, db).await,
            Tool::Postgrator => postgrator::read(self, db).await,
            Tool::Refinery => refinery::read(self, db).await,
            Tool::Supabase => supabase::read(self, db).await,
            Tool::Atlas => atlas::read(self, db).await,
            Tool::Liquibase => liquibase::read(self, db).await,
            Tool::Dbmate
            | Tool::Goose
            | Tool::SqlMigrate
            | Tool::Popx
            | Tool::Diesel
            | Tool::NodePgMigrate => simple::read(self, db).await,
            Tool::Sqitch => sqitch::read(self, db, set).await,
        }
        .map_err(|e| db::error_info(&e, None))?;
        if self.tool == Tool::Runbook && !self.changesets.is_empty() {
            self.rekey_changesets(&mut out);
        } else if self.tool != Tool::Liquibase {
            for a in &mut out {
                a.version = self.canonical(&a.version);
            }
            if self.tool == Tool::Runbook {
                self.rekey(&mut out);
            }
        }
        out.sort_by(|a, b| migrations::order(self.format, &a.version, &b.version));
        Ok(out)
    }

    /// Each of the set's repeatable migrations, with where it stands. Only
    /// Flyway's history records them; in any other, none has run.
    pub async fn repeatables<'s>(
        &self,
        db: &Db,
        set: &'s Set,
    ) -> Result<Vec<(&'s Migration, Repeatable)>, ErrorInfo> {
        let rows = if self.tool == Tool::Flyway && self.exists(db).await? {
            flyway::repeatables(self, db)
                .await
                .map_err(|e| db::error_info(&e, None))?
        } else {
            Vec::new()
        };
        Ok(set
            .repeatables
            .iter()
            .map(|m| {
                let row = rows.iter().find(|(d, _, _)| *d == flyway::description(m));
                let state = match row {
                    None => Repeatable::Pending,
                    Some((_, _, false)) => Repeatable::Dirty,
                    Some((_, sum, true))
                        if *sum == Some(migrations::flyway_checksum(m.up.as_written())) =>
                    {
                        Repeatable::Applied
                    }
                    Some(_) => Repeatable::Outdated,
                };
                (m, state)
            })
            .collect())
    }

    /// The directory's spelling of a tool's version (`1` for `0001`), a
    /// migration in code's as a script's.
    fn canonical(&self, v: &str) -> String {
        self.versions
            .iter()
            .chain(&self.code_versions)
            .find(|x| migrations::same_version(x, v))
            .cloned()
            .unwrap_or_else(|| v.to_string())
    }

    /// Rows recorded under another spelling of a shared number. A migration
    /// alone on its number is known by the number (`0002`); once a second
    /// file takes the same number, both are known by their file stems
    /// (`0002_b`, `0002_c`), and the other way round when one goes. The row
    /// `0002` named `b` is then the migration `0002_b`: without this, the
    /// applied migration looked pending and ran a second time. A row is
    /// matched only by its number and its name together, and only to a
    /// version no other row holds; later writes go to the row as it is
    /// keyed.
    fn rekey(&self, rows: &mut [Applied]) {
        let mut held: std::collections::HashSet<String> =
            rows.iter().map(|a| a.version.clone()).collect();
        let number = |version: &str, name: &str| {
            version
                .strip_suffix(name)
                .and_then(|v| v.strip_suffix('_'))
                .unwrap_or(version)
                .to_string()
        };
        let mut keys = self.keys.lock().expect("history keys lock");
        // As of this read: a row deleted since is written under the
        // directory's spelling when it comes back.
        keys.clear();
        for a in rows
            .iter_mut()
            .filter(|a| !self.versions.contains(&a.version))
        {
            let row_number = number(&a.version, &a.name);
            let mut found = self.versions.iter().zip(&self.names).filter(|(v, name)| {
                **name == a.name
                    && !held.contains(*v)
                    && migrations::same_version(&number(v, name), &row_number)
            });
            if let (Some((v, _)), None) = (found.next(), found.next()) {
                let v = v.clone();
                drop(found);
                held.insert(v.clone());
                keys.insert(v.clone(), a.key.clone());
                a.version = v;
            }
        }
    }

    /// runbook's own history of a Liquibase directory: each row is a
    /// changeset by its name (`FILE::ID::AUTHOR`), and its place in the
    /// directory is found from that. A row runbook wrote before it named
    /// them so (by place, `0003`) is the changeset of its name (its id),
    /// where no other row holds that one; its later writes go to that row.
    /// A row that matches none is a changeset the directory no longer
    /// has: its version is its row and name together, which no place is.
    fn rekey_changesets(&self, rows: &mut [Applied]) {
        let mut keys = self.keys.lock().expect("history keys lock");
        keys.clear();
        let mut held = std::collections::HashSet::new();
        for a in rows.iter_mut() {
            if let Some((v, _)) = self.changesets.iter().find(|(_, c)| c.key() == a.key) {
                a.version = v.clone();
                held.insert(v.clone());
            }
        }
        for a in rows.iter_mut() {
            if self.changesets.iter().any(|(_, c)| c.key() == a.key) {
                continue;
            }
            let found = self
                .versions
                .iter()
                .zip(&self.names)
                .find(|(v, name)| **name == a.name && !held.contains(*v));
            match found {
                Some((v, _)) => {
                    held.insert(v.clone());
                    keys.insert(v.clone(), a.key.clone());
                    a.version = v.clone();
                }
                None => a.version = format!("{} ({})", a.key, a.name),
            }
        }
    }

    /// The row a directory version is recorded under in runbook's own
    /// history: its own spelling, unless `read` found it under another; a
    /// Liquibase changeset's name ([`History::rekey_changesets`]).
    fn key_of<'v>(&self, version: &'v str) -> std::borrow::Cow<'v, str> {
        if let Some(k) = self.keys.lock().expect("history keys lock").get(version) {
            return std::borrow::Cow::Owned(k.clone());
        }
        match self.changesets.iter().find(|(v, _)| v == version) {
            Some((_, c)) => std::borrow::Cow::Owned(c.key()),
            None => std::borrow::Cow::Borrowed(version),
        }
    }

    /// What a one-row history (golang-migrate's, tern's) at `at` counts as
    /// applied: every directory version up to it, and `at` itself when the
    /// directory lacks it (applied, with no file), unless it is `none`.
    fn up_to<'a>(&'a self, at: &'a str, none: &str) -> Vec<&'a str> {
        let mut out: Vec<&str> = self
            .versions
            .iter()
            .filter(|v| migrations::version_cmp(v, at).is_le() || migrations::same_version(v, at))
            .map(String::as_str)
            .collect();
        if at != none && !out.iter().any(|v| migrations::same_version(v, at)) {
            out.push(at);
        }
        out
    }

    /// The directory's version just below `v`: what golang-migrate's one
    /// row says after `v` is rolled back.
    fn before(&self, v: &str) -> Option<&str> {
        self.versions
            .iter()
            .filter(|x| migrations::version_cmp(x, v).is_lt())
            .max_by(|a, b| migrations::version_cmp(a, b))
            .map(String::as_str)
    }

    /// Liquibase's history: how its rows name the directory's files, where
    /// that differs from runbook's reading (as found by `read`), for the log.
    pub fn liquibase_renaming(&self) -> Option<String> {
        let renaming = self.liquibase_renaming.lock().expect("renaming lock");
        let (off, on) = renaming.as_ref()?;
        Some(match (off.is_empty(), on.is_empty()) {
            (true, _) => format!(
                "Liquibase's rows name these files with `{on}` in front (Liquibase ran from a directory above); new rows do too"
            ),
            _ => format!(
                "Liquibase's rows name these files without `{off}` in front; new rows do too"
            ),
        })
    }

    /// A migration's checksum by the tool's rule; `None` when it keeps none.
    pub fn checksum_of(&self, m: &Migration) -> Option<String> {
        match self.tool {
            Tool::Runbook | Tool::Prisma | Tool::Drizzle => Some(m.checksum.clone()),
            Tool::Flyway => Some(migrations::flyway_checksum(m.up.as_written()).to_string()),
            Tool::Sqitch => Some(migrations::sqitch_hash(m.up.as_written())),
            Tool::Sqlx => Some(sqlx::checksum(&m.up.sql)),
            Tool::Postgrator => Some(migrations::postgrator_checksum(&m.up.sql)),
            Tool::Refinery => refinery::checksum(m, self.wide_versions),
            Tool::Liquibase => m.changeset.as_ref().map(|c| c.md5sum.clone()),
            _ => None,
        }
    }

    /// Whether an update runs an applied changeset again, as Liquibase
    /// does, and why: on Liquibase's own history, which records a run
    /// again (`EXECTYPE` `RERAN`), and on runbook's, whose row keeps the
    /// run that applied it. A row whose checksum was cleared is not a
    /// change: Liquibase fills it in.
    pub fn runs_again(&self, m: &Migration, a: &Applied) -> Option<Again> {
        let c = m
            .changeset
            .as_ref()
            .filter(|_| matches!(self.tool, Tool::Liquibase | Tool::Runbook))?;
        if a.dirty {
            return None;
        }
        if c.run_always {
            return Some(Again::Always);
        }
        let (was, now) = (a.checksum.as_deref()?, self.checksum_of(m)?);
        (c.run_on_change && was != now).then_some(Again::Changed)
    }

    /// Whether a changeset changed since it ran with `recorded` is still
    /// taken as applied, as Liquibase takes it: its `--validCheckSum`
    /// accepts the change (`ChangesetId::accepts`).
    pub fn change_accepted(m: &Migration, recorded: &str) -> bool {
        m.changeset.as_ref().is_some_and(|c| c.accepts(recorded))
    }

    /// The SQL for one change around a script, if the tool records it.
    pub fn sql(&self, w: &Write<'_>) -> Option<String> {
        match self.tool {
            Tool::Runbook => runbook::write(self, w),
            Tool::Prisma => prisma::write(self, w),
            Tool::Knex => knex::write(self, w),
            Tool::GolangMigrate => golang::write(self, w),
            Tool::Flyway => flyway::write(self, w),
            Tool::Sqlx => sqlx::write(self, w),
            Tool::Drizzle => drizzle::write(self, w),
            Tool::Tern => tern::write(self, w),
            Tool::Postgrator => postgrator::write(self, w),
            Tool::Refinery => refinery::write(self, w),
            Tool::Supabase => supabase::write(self, w),
            Tool::Atlas => atlas::write(self, w),
            Tool::Liquibase => liquibase::write(self, w),
            Tool::Dbmate
            | Tool::Goose
            | Tool::SqlMigrate
            | Tool::Popx
            | Tool::Diesel
            | Tool::NodePgMigrate => simple::write(self, w),
            Tool::Sqitch => None,
        }
    }

    /// Record migrations as applied without running them (`runbook
    /// migrations baseline`), in one transaction; `through` is the newest,
    /// `by` who did it. Returns how many rows were added.
    pub async fn baseline(
        &self,
        db: &Db,
        todo: &[&Migration],
        through: &str,
        by: &str,
    ) -> Result<u64, ErrorInfo> {
        self.ensure(db).await?;
        if todo.is_empty() {
            return Ok(0);
        }
        let sql = match self.tool {
            Tool::Runbook => runbook::baseline(self, todo, by),
            Tool::Prisma => prisma::baseline(self, todo, by),
            Tool::Knex => knex::baseline(self, todo),
            Tool::GolangMigrate => golang::baseline(self, through),
            Tool::Flyway => flyway::baseline(self, through, by),
            Tool::Sqlx => sqlx::baseline(self, todo),
            Tool::Drizzle => drizzle::baseline(self, todo),
            Tool::Tern => tern::baseline(self, through),
            Tool::Postgrator => postgrator::baseline(self, todo),
            Tool::Refinery => refinery::baseline(self, todo),
            Tool::Supabase => supabase::baseline(self, todo),
            Tool::Atlas => atlas::baseline(self, todo),
            Tool::Liquibase => liquibase::baseline(self, todo),
            Tool::Dbmate
            | Tool::Goose
            | Tool::SqlMigrate
            | Tool::Popx
            | Tool::Diesel
            | Tool::NodePgMigrate => simple::baseline(self, todo),
            Tool::Sqitch => unreachable!("refused before: sqitch is not writable"),
        };
        if let Err(e) = db
            .client
            .batch_execute(&format!("BEGIN;\n{sql};\nCOMMIT"))
            .await
        {
            db.rollback().await;
            return Err(db::error_info(&e, None));
        }
        Ok(todo.len() as u64)
    }

    /// Clear an unfinished mark: keep the migration as applied, or as
    /// pending. Returns how many rows changed (1, unless it changed meanwhile).
    pub async fn repair(&self, db: &Db, a: &Applied, applied: bool) -> Result<u64, ErrorInfo> {
        let sql = match self.tool {
            Tool::Runbook => runbook::repair(self, a, applied),
            Tool::Prisma => prisma::repair(self, a, applied),
            Tool::Knex => knex::repair(self, a, applied),
            Tool::GolangMigrate => golang::repair(self, a, applied),
            Tool::Flyway => flyway::repair(self, a, applied),
            Tool::Sqlx => sqlx::repair(self, a, applied),
            Tool::Atlas => atlas::repair(self, a, applied),
            Tool::Dbmate
            | Tool::Goose
            | Tool::SqlMigrate
            | Tool::Popx
            | Tool::Diesel
            | Tool::Drizzle
            | Tool::Tern
            | Tool::NodePgMigrate
            | Tool::Postgrator
            | Tool::Refinery
            | Tool::Supabase
            | Tool::Liquibase
            | Tool::Sqitch => {
                unreachable!("these histories have no unfinished rows")
            }
        };
        db.client
            .execute(&sql, &[])
            .await
            .map_err(|e| db::error_info(&e, None))
    }

    /// What a dirty row means, for people: the state the script left and
    /// how to repair it.
    pub fn dirty_message(&self, a: &Applied) -> (String, String) {
        let repair = format!(
            "check the schema by hand, finish or undo what the script did, then run `runbook migrations repair DIR --version {}` (add `--mark pending` if the migration's changes are not in place)",
            a.version
        );
        if self.tool == Tool::Runbook {
            return (runbook::dirty_message(a, &self.name), repair);
        }
        if a.key.is_empty() {
            // Knex's lock, held with no unfinished row: Knex's own state.
            return (
                format!("{}: {}", a.name, a.error.clone().unwrap_or_default()),
                "check no Knex migration is running and the schema is as the history says, then run `npx knex migrate:unlock`".into(),
            );
        }
        let state = match (&a.error, a.direction.as_str()) {
            (Some(e), _) => format!("it stopped with: {e}"),
            (None, "down") => "its rollback started and did not finish".to_string(),
            (None, _) => "it started and did not finish".to_string(),
        };
        (
            format!(
                "migration {} is unfinished in {} ({} history): {state}",
                migrations::labeled(&a.version, &a.name),
                self.name,
                self.tool.name()
            ),
            repair,
        )
    }
}

/// A table that exists, with its columns in order.
struct Found {
    name: String,
    columns: Vec<String>,
    /// It has a `version` column of an integer type (tern's, not dbmate's).
    integer_version: bool,
}

/// The tables among `names` that exist.
async fn tables(db: &Db, names: &[String]) -> Result<Vec<Found>, ErrorInfo> {
    let rows = db
        .client
        .query(
            "SELECT format('%s.%s', n.nspname, c.relname),
                    array_agg(a.attname::text ORDER BY a.attnum),
                    bool_or(a.attname = 'version' AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype))
             FROM unnest($1::text[]) WITH ORDINALITY AS x(name, i)
             -- A schema the role may not use is one whose tables it cannot
             -- see: to_regclass would fail on it, not say none.
             CROSS JOIN LATERAL (SELECT position('.' IN x.name) = 0
                 OR EXISTS (SELECT 1 FROM pg_namespace s
                            WHERE s.nspname = split_part(x.name, '.', 1)
                              AND has_schema_privilege(s.oid, 'USAGE')) AS usable) u
             JOIN pg_class c ON c.oid = CASE WHEN u.usable THEN to_regclass(x.name) END
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             GROUP BY 1, x.i ORDER BY x.i",
            &[&names],
        )
        .await
        .map_err(|e| db::error_info(&e, None))?;
    Ok(rows
        .iter()
        .map(|r| Found {
            name: r.get(0),
            columns: r.get(1),
            integer_version: r.get(2),
        })
        .collect())
}

/// What Flyway does before each migration: the connection's first role
/// again, and the search path its default schema (the one its history
/// table is in) followed by the connection's own, where that schema exists.
/// So an unqualified name is in that schema, and a `search_path` a script
/// set does not reach the next.
fn flyway_reset(schema: &str) -> String {
    format!(
        "RESET ROLE; SELECT set_config('search_path', format('%I', s.nspname) || ', ' || p.reset_val, false) \
         FROM pg_settings p, pg_namespace s WHERE p.name = 'search_path' AND s.nspname = {}",
        quote::literal(schema)
    )
}

/// What Liquibase given a default schema does before each changeset: the
/// search path that schema followed by the connection's own, where the
/// schema exists. So an unqualified name is made there.
fn schema_first(schema: &str) -> String {
    format!(
        "SELECT set_config('search_path', format('%I', s.nspname) || ', ' || p.reset_val, false) \
         FROM pg_settings p, pg_namespace s WHERE p.name = 'search_path' AND s.nspname = {}",
        quote::literal(schema)
    )
}

/// The timestamp format every reader returns.
const AT: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'";

/// `expr` (a timestamp) as UTC text.
fn utc(expr: &str) -> String {
    format!("to_char(({expr}) AT TIME ZONE 'UTC', {AT})")
}

/// A file's name without its directory: how Knex and sql-migrate know a
/// migration.
fn file_name(file: &str) -> &str {
    file.rsplit('/').next().unwrap_or(file)
}

/// A file's name without its directory and `.up.sql`/`.sql` ending.
fn stem(file: &str) -> &str {
    let name = file_name(file);
    name.strip_suffix(".up.sql")
        .or_else(|| name.strip_suffix(".sql"))
        .unwrap_or(name)
}

/// A baseline of one statement per migration, `row` giving each.
fn joined(todo: &[&Migration], row: impl Fn(&Migration) -> String) -> String {
    todo.iter().map(|m| row(m)).collect::<Vec<_>>().join(";\n")
}

/// The writes of a history with a row per applied version, keyed by its
/// number (Postgrator's, Refinery's): `insert` when an up finishes, the
/// row deleted when its down does, and an allowed change's checksum, `sum`,
/// recorded in `column`.
fn version_rows(
    h: &History,
    w: &Write<'_>,
    insert: impl Fn(&Migration) -> String,
    column: &str,
    sum: impl Fn(&Migration) -> String,
) -> Option<String> {
    let t = &h.quoted;
    Some(match *w {
        Write::Finish {
            m,
            direction: Direction::Up,
            ..
        } => insert(m),
        Write::Finish {
            m,
            direction: Direction::Down,
            ..
        } => format!("DELETE FROM {t} WHERE version = {}", number(&m.version)),
        Write::Checksum { m } => format!(
            "UPDATE {t} SET {column} = {} WHERE version = {}",
            quote::literal(&sum(m)),
            number(&m.version)
        ),
        _ => return None,
    })
}

/// The leading number of a version, for tools that keep numbers.
fn number(version: &str) -> String {
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    match digits.trim_start_matches('0') {
        "" => "0".into(),
        n => n.into(),
    }
}

/// The tools whose default tables detection looks for (dbmate's is
/// golang-migrate's, told apart by its columns).
const DETECTED: [Tool; 19] = [
    Tool::Runbook,
    Tool::Prisma,
    Tool::Knex,
    Tool::GolangMigrate,
    Tool::Flyway,
    Tool::Goose,
    Tool::SqlMigrate,
    Tool::Popx,
    Tool::Diesel,
    Tool::Sqlx,
    Tool::Drizzle,
    Tool::Tern,
    Tool::NodePgMigrate,
    Tool::Postgrator,
    Tool::Refinery,
    Tool::Sqitch,
    Tool::Supabase,
    Tool::Atlas,
    Tool::Liquibase,
];

/// History tables of tools runbook does not read, as `to_regclass` finds
/// them on the search path (where those tools create them), and the tool.
const FOREIGN: &[(&str, &str)] = &[
    ("graphile_migrate.migrations", "graphile-migrate"),
    ("kysely_migration", "Kysely"),
    ("mikro_orm_migrations", "MikroORM"),
    ("phinxlog", "Phinx"),
    ("doctrine_migration_versions", "Doctrine"),
    ("_yoyo_migration", "yoyo"),
    // Atlas's table where its URL names the schema (`search_path=public`);
    // read as Atlas's by its columns.
    ("atlas_schema_revisions", "Atlas"),
    ("alembic_version", "Alembic"),
    ("\"SequelizeMeta\"", "Sequelize"),
    ("django_migrations", "Django"),
    ("\"__EFMigrationsHistory\"", "Entity Framework"),
];

/// The schema the connection URL names as application tools name it, when
/// it is a plain lower-case name other than `public` (one that needs no
/// quotes, as the history tables' names are written and read here).
pub fn named_schema(db: &Db) -> Option<&str> {
    let s = db.config().schema.as_deref()?;
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    (plain && s != "public").then_some(s)
}

/// The tools whose history a table is taken for by its columns alone,
/// under any name: each with the most columns its table has (a wider table
/// with the same key columns is an application's, `drafts (id, version,
/// dirty, body)`). A lone `version` column (dbmate's, tern's), sql-migrate's
/// `(id, applied_at)` and Drizzle's `(id, hash, created_at)` are too common
/// to judge by.
const SHAPES: &[(Tool, usize)] = &[
    (Tool::Runbook, 16),
    (Tool::Supabase, 6),
    (Tool::Prisma, 8),
    (Tool::Knex, 4),
    (Tool::Flyway, 10),
    (Tool::Postgrator, 4),
    (Tool::Sqlx, 6),
    (Tool::Atlas, 12),
    (Tool::Liquibase, 14),
    (Tool::Goose, 4),
    (Tool::GolangMigrate, 2),
    (Tool::Popx, 2),
    (Tool::NodePgMigrate, 3),
    (Tool::Diesel, 2),
];

/// With no history found where the tools keep theirs: a table of a known
/// tool's name in another schema (sql-migrate's `SetSchema("convoy")`
/// keeps `convoy.gorp_migrations`, off the search path), or one whose
/// columns are a tool's under another name ([`SHAPES`]: Flyway's
/// `flyway.table`, Knex's `tableName`, golang-migrate's
/// `x-migrations-table`). Asked only when the defaults found none; only in
/// schemas the role may use; sqitch's `changes` and graphile-migrate's
/// `migrations` are too common a name to judge by alone.
async fn elsewhere(db: &Db) -> Result<Vec<String>, ErrorInfo> {
    let relnames: Vec<String> = DETECTED
        .iter()
        .filter(|t| **t != Tool::Sqitch)
        .map(|t| t.default_table())
        .chain(FOREIGN.iter().map(|(t, _)| *t))
        .map(|t| {
            t.rsplit('.')
                .next()
                .unwrap_or(t)
                .trim_matches('"')
                .to_string()
        })
        .filter(|t| t != "migrations")
        .collect();
    let rows = db
        .client
        .query(
            "SELECT format('%s.%s', n.nspname, c.relname), c.relname = ANY($1),
                    array_agg(a.attname::text ORDER BY a.attnum)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             WHERE c.relkind IN ('r', 'p')
               AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
               AND n.nspname <> 'runbook_journal'
               AND has_schema_privilege(n.oid, 'USAGE')
               AND (c.relname = ANY($1) OR EXISTS (
                   SELECT 1 FROM pg_attribute x
                   WHERE x.attrelid = c.oid AND NOT x.attisdropped
                     AND x.attname IN ('statements_done', 'statements', 'rolled_back_at',
                         'migration_time', 'installed_rank', 'md5', 'execution_time',
                         'is_applied', 'dirty', 'version_self', 'run_on', 'partial_hashes',
                         'orderexecuted')))
             GROUP BY 1, 2 ORDER BY 1",
            &[&relnames],
        )
        .await
        .map_err(|e| db::error_info(&e, None))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let found = Found {
                name: r.get(0),
                columns: r.get(2),
                integer_version: false,
            };
            if r.get(1) {
                return Some(found.name);
            }
            let tool = Tool::of_columns(&found)?;
            let width = SHAPES.iter().find(|(t, _)| *t == tool)?.1;
            (found.columns.len() <= width)
                .then(|| format!("{} ({}'s columns)", found.name, tool.name()))
        })
        .collect())
}

/// With no history runbook reads found: the first table that holds one it
/// cannot, either another tool's or a known name with other columns.
fn unreadable(found: &[Found]) -> Option<HistoryError> {
    let Found {
        name: table,
        columns,
        ..
    } = found.iter().find(|t| Tool::of_columns(t).is_none())?;
    let relname = table.rsplit('.').next().unwrap_or(table);
    // Unqualified names are found on the search path, qualified ones where
    // they say.
    let tool = FOREIGN
        .iter()
        .find(|(t, _)| t.trim_matches('"') == relname || *t == table)
        .map_or_else(
            || {
                format!(
                    "a tool runbook does not know; its columns are {}",
                    columns.join(", ")
                )
            },
            |(_, tool)| (*tool).to_string(),
        );
    Some(HistoryError::Foreign {
        table: table.clone(),
        tool,
    })
}

/// The history tables of the common migration tools (these and others'):
/// they change whenever a migration runs, and are not schema or data a
/// rehearsal or a row count should judge.
const TOOL_TABLES: &[&str] = &[
    "knex_migrations",
    "knex_migrations_lock",
    "_prisma_migrations",
    "schema_migrations",
    "schema_migration",
    "schema_version",
    "schemaversion",
    "goose_db_version",
    "gorp_migrations",
    "flyway_schema_history",
    "__diesel_schema_migrations",
    "_sqlx_migrations",
    "atlas_schema_revisions",
    "alembic_version",
    "sequelizemeta",
    "pgmigrations",
    "django_migrations",
    "ar_internal_metadata",
    "__efmigrationshistory",
    "databasechangelog",
    "databasechangeloglock",
    "typeorm_metadata",
];

/// Whether a qualified relation name (`public.knex_migrations`, quoted or
/// not) is a migration tool's history table, or lives in sqitch's schema.
pub fn is_tool_table(qname: &str) -> bool {
    let unquote = |p: &str| p.trim_matches('"').to_ascii_lowercase();
    // Unqualified when the catalog printed it on the search path.
    let (schema, table) = match qname.split_once('.') {
        Some((s, t)) => (unquote(s), unquote(t)),
        None => (String::new(), unquote(qname)),
    };
    schema == "sqitch"
        || (schema == "drizzle" && table == "__drizzle_migrations")
        || TOOL_TABLES.contains(&table.as_str())
        || FOREIGN.iter().any(|(name, _)| {
            let (s, t) = name.rsplit_once('.').unwrap_or(("", name));
            unquote(t) == table && (s.is_empty() || s == schema)
        })
}

#[cfg(test)]
mod tests {
    use super::is_tool_table;

    #[test]
    fn tool_tables_are_known_by_name_and_schema() {
        assert!(is_tool_table("public.knex_migrations"));
        assert!(is_tool_table("gorp_migrations"));
        assert!(is_tool_table("app.\"SequelizeMeta\""));
        assert!(is_tool_table("drizzle.__drizzle_migrations"));
        assert!(is_tool_table("public.schema_version"));
        assert!(is_tool_table("public._sqlx_migrations"));
        assert!(is_tool_table("sqitch.changes"));
        // A qualified one only in its own schema.
        assert!(!is_tool_table("public.__drizzle_migrations"));
        assert!(!is_tool_table("public.orders"));
    }
}
