//! Migration directories: which migrations a directory holds, in which
//! format, with their up and down scripts.
//!
//! A version is the leading digits of a file's name (`001_init.up.sql`,
//! `20240101120000_add.sql`) or of a directory holding `migration.sql`
//! (Prisma's layout). Migrations are ordered by version, numerically.
//!
//! The formats:
//! - `pairs` (golang-migrate): `NNN_name.up.sql` and `NNN_name.down.sql`;
//! - `dbmate`: one file with `-- migrate:up` and `-- migrate:down` sections
//!   (`transaction:false` after a marker runs that section outside a transaction);
//! - `sql-migrate`: `-- +migrate Up` / `-- +migrate Down`, `notransaction`
//!   after a marker;
//! - `goose`: `-- +goose Up` / `-- +goose Down`, `-- +goose NO TRANSACTION`
//!   for the whole file; `StatementBegin`/`StatementEnd` are accepted and
//!   ignored, because runbook's statement splitter is a real parser;
//! - `plain`: forward-only `NNN_name.sql` files;
//! - `prisma`: forward-only `NNN_name/migration.sql`.
//! - `popx` (Ory's pop migrations): `NNN_name[.dialect][.autocommit].up.sql`
//!   and `.down.sql`; a file for `postgres` wins over the dialect-free one of
//!   the same migration, other dialects' files are ignored, `.autocommit.`
//!   runs outside a transaction, and an empty down is a no-op, as pop runs it.
//!
//! Several migrations may share a numeric prefix (sql-migrate orders them
//! by file name; some histories reuse a number): each of them is then known
//! by its file stem (`12_add_users`), ordered by number, then by name.
//!
//! In every format, `-- runbook:no-transaction` in a script runs it
//! statement by statement, outside a transaction.

use std::path::{Path, PathBuf};

use crate::pg::statements::Statement;

mod atlas;
mod drizzle;
mod flyway;
mod flyway_code;
pub mod flyway_conf;
mod java_properties;
mod liquibase;
pub mod liquibase_conf;
pub mod project;
mod spring;
mod sqitch;
mod tern;

pub use atlas::hashes as atlas_hashes;
pub use flyway::checksum as flyway_checksum;
pub use flyway::{
    Values as FlywayValues, fill as fill_flyway, secret_values as flyway_secret_values,
    stand_ins as flyway_stand_ins,
};
pub use flyway_code::{CodeMigration, CodeTool};
pub use liquibase::changelog as liquibase_changelog;
pub use liquibase::{
    ChangesetId, check_select as liquibase_check_select, checksum_v9 as liquibase_checksum,
    expression_holds as liquibase_expression, normalize as liquibase_normalize,
    select as liquibase_select, ungiven as liquibase_ungiven,
};
pub use sqitch::script_hash as sqitch_hash;

/// The marker that runs a script outside a transaction, in any format.
pub const NO_TRANSACTION_MARKER: &str = "-- runbook:no-transaction";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Pairs,
    Dbmate,
    SqlMigrate,
    Goose,
    Plain,
    Prisma,
    Popx,
    /// Flyway's `V1_1__name.sql`, with `U1_1__name.sql` undos.
    Flyway,
    /// A sqitch project: `sqitch.plan`, `deploy/`, `revert/`.
    Sqitch,
    /// Diesel's `VERSION_name/up.sql` and `down.sql`.
    Diesel,
    /// Drizzle Kit's folder: `meta/_journal.json` and the `.sql` files it lists.
    Drizzle,
    /// tern's `1_name.sql`, the down below `---- create above / drop below ----`.
    Tern,
    /// node-pg-migrate's SQL files: `-- Up Migration` and `-- Down Migration`.
    NodePgMigrate,
    /// Postgrator's `001.do.name.sql` and `001.undo.name.sql`.
    Postgrator,
    /// Liquibase's formatted SQL: `--changeset author:id` in `.sql` files,
    /// each with its `--rollback`.
    Liquibase,
    /// Atlas's `VERSION_name.sql` files, forward only, with `atlas.sum`.
    Atlas,
    /// Migrations another tool applies, known by name only ([`tool_set`]).
    Tool,
}

pub const FORMATS: &[&str] = &[
    "pairs",
    "dbmate",
    "sql-migrate",
    "goose",
    "plain",
    "prisma",
    "popx",
    "flyway",
    "sqitch",
    "diesel",
    "drizzle",
    "tern",
    "node-pg-migrate",
    "postgrator",
    "liquibase",
    "atlas",
];

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Self::Pairs => "pairs",
            Self::Dbmate => "dbmate",
            Self::SqlMigrate => "sql-migrate",
            Self::Goose => "goose",
            Self::Plain => "plain",
            Self::Prisma => "prisma",
            Self::Popx => "popx",
            Self::Flyway => "flyway",
            Self::Sqitch => "sqitch",
            Self::Diesel => "diesel",
            Self::Drizzle => "drizzle",
            Self::Tern => "tern",
            Self::NodePgMigrate => "node-pg-migrate",
            Self::Postgrator => "postgrator",
            Self::Liquibase => "liquibase",
            Self::Atlas => "atlas",
            Self::Tool => "tool",
        }
    }

    /// `auto` (or nothing) is `None`: detect.
    pub fn parse(s: &str) -> Result<Option<Format>, LoadError> {
        Ok(Some(match s {
            "auto" => return Ok(None),
            "pairs" | "golang-migrate" => Self::Pairs,
            "dbmate" => Self::Dbmate,
            "sql-migrate" => Self::SqlMigrate,
            "goose" => Self::Goose,
            "plain" => Self::Plain,
            "prisma" => Self::Prisma,
            "popx" => Self::Popx,
            "flyway" => Self::Flyway,
            "sqitch" => Self::Sqitch,
            "diesel" => Self::Diesel,
            "drizzle" => Self::Drizzle,
            "tern" => Self::Tern,
            "node-pg-migrate" => Self::NodePgMigrate,
            "postgrator" => Self::Postgrator,
            "liquibase" => Self::Liquibase,
            "atlas" => Self::Atlas,
            other => return Err(LoadError::UnknownFormat(other.to_string())),
        }))
    }

    /// Whether the format has down scripts at all.
    pub fn has_down(self) -> bool {
        !matches!(
            self,
            Self::Plain | Self::Prisma | Self::Drizzle | Self::Atlas
        )
    }
}

/// Why a migration directory cannot be loaded; in a tolerant load (lint),
/// the per-file ones are warnings instead, and the file is skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("unknown migration format `{0}`: expected auto, {list}", list = FORMATS.join(", "))]
    UnknownFormat(String),
    #[error("cannot read {path}: {why}")]
    Unreadable { path: String, why: String },
    #[error(
        "{0} holds no migrations: expected files named like `001_name.up.sql` or `001_name.sql`, or directories `001_name/migration.sql` or `001_name/up.sql`"
    )]
    Empty(String),
    #[error("{dir} mixes migration formats: {first} is {a}, {second} is {b}")]
    MixedFormats {
        dir: String,
        first: String,
        a: &'static str,
        second: String,
        b: &'static str,
    },
    #[error("{a} and {b} both have {what}; Flyway runs neither while two scripts share it")]
    FlywayTwice { a: String, b: String, what: String },
    #[error("{file} and {other} are the same migration (version {version} `{name}`) twice")]
    Twice {
        file: String,
        other: String,
        version: String,
        name: String,
    },
    #[error("version {version} has more than one down file and no up ({stem}.down.sql)")]
    DownsWithoutUp { version: String, stem: String },
    #[error("{stem}.down.sql is a second down file for version {version}; it pairs with no up")]
    SecondDown { version: String, stem: String },
    #[error("{down} is a down migration with no up for {of}")]
    DownWithoutUp { down: String, of: String },
    #[error("{file} and another PostgreSQL file are both the {which} of {stem}")]
    TwoDialects {
        file: String,
        which: &'static str,
        stem: String,
    },
    #[error("{file}:{line}: a second {section} section")]
    SecondSection {
        file: String,
        line: usize,
        section: &'static str,
        tool: &'static str,
    },
    #[error(
        "{file}:{line}: a Go template (`{{{{ ... }}}}`), which pop renders before it runs the file; runbook runs migration files as written, so render them first (Supabase's auth migrations take `{{{{ index .Options \"Namespace\" }}}}` as the schema, `auth`)"
    )]
    GoTemplate { file: String, line: usize },
    #[error(
        "sqitch.plan:{line}: `{change}` is planned again later with no tag after it here; sqitch reworks a change only after a tag, whose name its earlier scripts carry (`{change}@TAG.sql`)"
    )]
    Reworked { change: String, line: usize },
    #[error(
        "migration `{0}` has characters a shell would read; a tool's migration names are letters, digits and `._-/@+`"
    )]
    UnsafeName(String),
    #[error(
        "{first} and {second} are both {tool}'s version {version}; {tool} keeps one migration per version and would run only one of them, or refuse both"
    )]
    SharedVersion {
        version: String,
        first: String,
        second: String,
        tool: &'static str,
    },
    #[error(
        "{file} is not migration {want}: tern numbers its migrations 1, 2, 3… with no gap or repeat, and records only the number of the last one applied"
    )]
    TernSequence { file: String, want: usize },
    #[error(
        "{file}:{line}: a Go template (`{{{{ ... }}}}`), which tern renders with its config's data before it runs the file; runbook runs migration files as written, so render them first"
    )]
    TernTemplate { file: String, line: usize },
    #[error(
        "{file} holds a down in {tool}'s layout ({marker}), which runbook does not read; as a plain file it would run as an up, undo its own migration, and be recorded as applied"
    )]
    ForeignDown {
        file: String,
        tool: &'static str,
        marker: String,
    },
    #[error(
        "{file} is a {tool} migration in {}, which runbook cannot run; leaving it out would run the SQL ones after it first",
        language(file)
    )]
    CodeMigration { file: String, tool: &'static str },
    #[error(
        "{file}:{line}: goose substitutes environment variables here (`-- +goose ENVSUB ON`), and this line has a `$` it would read; runbook runs migration files as written, so the SQL would differ from goose's"
    )]
    GooseEnvsub { file: String, line: usize },
    #[error(
        "{file}:{line}: `{written}` is a Flyway placeholder with no value here: Flyway fills it from the environment (`FLYWAY_PLACEHOLDERS_{}`, not set) or its configuration (`flyway.placeholders.{name}` in a flyway.conf or flyway.toml in the directory or above it, up to the repository's root, or a Spring application's `spring.flyway.placeholders.{name}`; none gives it)", name.to_ascii_uppercase()
    )]
    FlywayPlaceholder {
        file: String,
        line: usize,
        name: String,
        /// As the script writes it: `${tenant}`, or `$[tenant]`.
        written: String,
    },
    #[error(
        "{file}:{line}: `{written}` takes its value from {conf}, but its name says it is a secret (or the name of the setting it comes from does), and runbook does not take a secret from a file (the environment's `FLYWAY_PLACEHOLDERS_{}` is not set)", name.to_ascii_uppercase()
    )]
    FlywaySecretInFile {
        file: String,
        line: usize,
        name: String,
        written: String,
        conf: String,
    },
    #[error("{file}:{line}: {what}")]
    Liquibase {
        file: String,
        line: usize,
        what: String,
    },
    #[error("{file}: {what}")]
    LiquibaseChangelog { file: String, what: String },
    #[error("{file}:{line}: {what}")]
    Atlas {
        file: String,
        line: usize,
        what: String,
        fix: &'static str,
    },
    #[error(
        "{at}: {tool} runs this {unit} in a transaction; `{statement}` cannot run in one ({why}), so it fails there"
    )]
    InTransaction {
        at: String,
        tool: &'static str,
        unit: &'static str,
        statement: String,
        why: String,
        fix: &'static str,
    },
    #[error("{at}: Flyway's configuration cannot be read: {why}")]
    FlywayConf { at: String, why: String },
    #[error(
        "{at}: {tool} sends this script, marked to run outside a transaction, to PostgreSQL as one query, which runs as one transaction; `{statement}` cannot run in one ({why}), so it fails there"
    )]
    OneQuery {
        at: String,
        tool: &'static str,
        statement: String,
        why: String,
    },
    #[error(
        "{file}:{line}: {what}, which psql reads when sqitch runs the script; runbook sends scripts to the server, which knows no such thing"
    )]
    Psql {
        file: String,
        line: usize,
        what: String,
    },
    #[error(
        "{file}:{line}: {}",
        if *missing {
            "this statement has no `;` at the end of its last line, and goose refuses the file (missing semicolon)"
        } else {
            "goose cuts the statement here, after a line that ends with `;` inside it, and sends PostgreSQL two broken halves"
        }
    )]
    GooseCut {
        file: String,
        line: usize,
        missing: bool,
    },
    #[error("{journal} lists {file}, which is not there; Drizzle stops at it too")]
    JournalFile { file: String, journal: &'static str },
    #[error("{file}: no up section: expected a line `{want}` ({format} format)")]
    NoUp {
        file: String,
        want: &'static str,
        format: &'static str,
    },
}

impl LoadError {
    /// What to do about a problem in the files themselves; `None` for one
    /// with the directory (missing, empty, mixed), whose hint depends on
    /// where it was named (`dir:`, a flag).
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self {
            Self::UnknownFormat(_)
            | Self::Unreadable { .. }
            | Self::Empty(_)
            | Self::MixedFormats { .. } => return None,
            Self::FlywayTwice { .. } | Self::Twice { .. } | Self::SharedVersion { .. } => {
                "give each migration a version of its own"
            }
            Self::DownsWithoutUp { .. }
            | Self::SecondDown { .. }
            | Self::DownWithoutUp { .. }
            | Self::TwoDialects { .. } => "pair each down with its up, and move the stray file out",
            Self::SecondSection { tool: "dbmate", .. } => {
                "split the file, one migration per section: dbmate 2.29+ records the version after the first section, and a second one then fails on it, leaving the file half-applied but counted as applied (amacneil/dbmate#820)"
            }
            Self::SecondSection { .. } => {
                "split the file, one migration per section, as its tool takes one up and one down"
            }
            Self::GoTemplate { .. } | Self::TernTemplate { .. } => {
                "render the templates into plain SQL files, and point `dir:` at those"
            }
            Self::Reworked { .. } => {
                "tag the plan (`sqitch tag`) before `sqitch rework`, as sqitch requires"
            }
            Self::UnsafeName(_) => "rename the migration",
            Self::TernSequence { .. } => "renumber the files 1, 2, 3… as tern requires",
            Self::ForeignDown { .. } => {
                "name the layout with `format:`, or move the down out of the directory"
            }
            Self::CodeMigration { .. } => {
                "rewrite it as a SQL migration, or keep running this directory with its own tool"
            }
            Self::GooseEnvsub { .. } => {
                "write the value into the file; where the `$` is PostgreSQL's own (a dollar-quoted body), put `-- +goose ENVSUB OFF` before it"
            }
            Self::FlywaySecretInFile { .. } => {
                "set it in the environment, from your secret store (as in `FLYWAY_PLACEHOLDERS_DB_PASSWORD=... runbook exec ...`); runbook redacts from every output the value of each such variable whose name says it is a secret. A secret in a file in the repository is anyone's who can read it"
            }
            Self::FlywayConf { .. } => {
                "fix the file, or set what it refers to; runbook reads its placeholders, table, defaultSchema and schemas, as Flyway does"
            }
            Self::FlywayPlaceholder { .. } => {
                "give runbook the value Flyway gets: set the environment variable (as in `FLYWAY_PLACEHOLDERS_TENANT=acme runbook exec ...`), or give it in the project's flyway.conf (`flyway.placeholders.tenant=acme`); if `${...}` is meant as written, set `placeholderReplacement=false` in the script's `.conf`. Writing the value into the script changes its checksum, which Flyway validates where it was applied"
            }
            Self::JournalFile { .. } => {
                "restore the file, or drop the migration with drizzle-kit so the journal agrees"
            }
            Self::NoUp { .. } => "add the marker line before the up's SQL",
            Self::Psql { .. } => {
                "write the value sqitch passes with `--set` into the script, and leave psql's settings to runbook (it stops at the first error)"
            }
            Self::GooseCut { missing: true, .. } => "end the statement with `;`",
            Self::GooseCut { .. } => {
                "wrap the statement (a function body, a DO block) in `-- +goose StatementBegin` and `-- +goose StatementEnd`"
            }
            Self::OneQuery { .. } => {
                "move that statement to a migration of its own, where it is the only statement"
            }
            Self::Liquibase { .. } => {
                "rewrite the changeset in what runbook runs (SQL, and its rollback in `--rollback` lines), or run this changelog with Liquibase in a `shell` step"
            }
            Self::LiquibaseChangelog { .. } => {
                "runbook follows a changelog's `include` and `includeAll` to formatted SQL files; point `dir:` at the master changelog itself (`dir: db/changelog.xml`, as Liquibase's --changelog-file names it), at the directory that holds it, or at one that holds only formatted SQL files, which run in the order of their paths"
            }
            Self::InTransaction { fix, .. } | Self::Atlas { fix, .. } => fix,
        })
    }
}

/// The language of a migration in code, by its extension.
fn language(file: &str) -> &'static str {
    match file.rsplit('.').next() {
        Some("go") => "Go",
        Some("rs") => "Rust",
        Some("ts") => "TypeScript",
        _ => "JavaScript",
    }
}

/// One script: the up or the down of a migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub sql: String,
    /// The file, relative to the migration directory.
    pub file: String,
    /// The file's line where `sql` starts (1-based).
    pub first_line: usize,
    /// Why it runs outside a transaction, when it is marked to: by its
    /// file (its format's marker, or runbook's), or by its tool's metadata.
    pub no_transaction: Option<String>,
    /// A Flyway script with placeholders (`${flyway:user}`, `${tenant}`):
    /// its text as written, which its checksum is of. `sql` gets their
    /// values when the history is opened ([`flyway::fill`]).
    pub written: Option<String>,
}

/// Why a script marked in its file runs outside a transaction.
const FILE_MARK: &str = "the file marks it to run without a transaction";

/// How a migration is named in a message: `3 (add_users)`, or `3` when it
/// has no name (sql-migrate's files are often named by their number alone).
pub fn labeled(version: &str, name: &str) -> String {
    if version.is_empty() {
        format!("repeatable ({name})")
    } else if name.is_empty() {
        version.to_string()
    } else {
        format!("{version} ({name})")
    }
}

/// A version as reports show it: a repeatable migration (Flyway's `R__`)
/// has none, and shows as `repeatable`.
pub fn shown_version(version: &str) -> &str {
    if version.is_empty() {
        "repeatable"
    } else {
        version
    }
}

/// `3 add_users`, or `3`.
pub fn titled(version: &str, name: &str) -> String {
    if version.is_empty() {
        format!("repeatable {name}")
    } else if name.is_empty() {
        version.to_string()
    } else {
        format!("{version} {name}")
    }
}

impl Script {
    /// Where a byte offset of `sql` is in the file: `file:line`.
    pub fn locate(&self, offset: usize) -> String {
        let upto = &self.sql[..offset.min(self.sql.len())];
        format!(
            "{}:{}",
            self.file,
            self.first_line + upto.matches('\n').count()
        )
    }

    /// The text as its file has it, before any placeholder was filled in:
    /// what a tool's checksum is of.
    pub fn as_written(&self) -> &str {
        self.written.as_deref().unwrap_or(&self.sql)
    }

    /// It holds only comments and blank lines: nothing runs.
    pub(crate) fn is_blank(&self) -> bool {
        crate::pg::statements::split(&self.sql).is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Down {
    Script(Script),
    /// The format has downs, but this migration's is absent or holds only
    /// comments: why.
    Missing(String),
    /// A forward-only format.
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: String,
    pub name: String,
    pub up: Script,
    pub down: Down,
    /// sha256 of the up script, hex.
    pub checksum: String,
    /// When the tool's journal says the migration was made, in
    /// milliseconds: Drizzle's `when`, which its history records.
    pub created_ms: Option<i64>,
    /// A script that must succeed after the up (sqitch's `verify/`), run
    /// by a rehearsal after each up and re-up; whatever it does is rolled
    /// back.
    pub verify: Option<Script>,
    /// Assertions that must hold before the up runs (Atlas's pre-migration
    /// checks, `checks.sql` in a txtar file): each statement must return
    /// true, or the up does not run.
    pub checks: Vec<Script>,
    /// A Liquibase changeset's identity, checksum and record: what
    /// Liquibase knows it by, where its version is only its place.
    pub changeset: Option<ChangesetId>,
}

impl Migration {
    pub fn down_script(&self) -> Option<&Script> {
        match &self.down {
            Down::Script(s) => Some(s),
            _ => None,
        }
    }

    /// Why there is no down, when there is none.
    /// The format has no downs at all: nothing is missing, by design.
    pub fn forward_only(&self) -> bool {
        self.down == Down::Unavailable
    }

    pub fn down_missing(&self) -> Option<String> {
        match &self.down {
            Down::Script(_) => None,
            Down::Missing(why) => Some(why.clone()),
            Down::Unavailable => Some("forward-only: it has no down by design".into()),
        }
    }
}

/// A loaded migration directory.
#[derive(Debug, Clone)]
pub struct Set {
    pub dir: PathBuf,
    pub format: Format,
    pub migrations: Vec<Migration>,
    /// Flyway's repeatable migrations (`R__name.sql`), in the order Flyway
    /// runs them (by description): each has no version (an empty one) and
    /// no down, and runs after the versioned ones whenever its checksum
    /// differs from the one it was last applied with.
    pub repeatables: Vec<Migration>,
    /// The application's migrations in code, in version order: a Flyway
    /// application's in Java or Kotlin ([`flyway_code`]), goose's in Go. In
    /// the history's order with the scripts, but not runnable here.
    pub code_migrations: Vec<CodeMigration>,
    /// Things that work but deserve a look (mismatched pair names).
    pub warnings: Vec<String>,
    /// Why every migration is forward-only when its format has downs but
    /// its history's tool has none (Refinery's), set by [`Set::forward_only`].
    pub forward_only_because: Option<&'static str>,
    /// A sqitch project's name (`%project=` in its plan): its rows in
    /// `sqitch.changes` are the ones that count.
    pub project: Option<String>,
    /// A Flyway directory's project configuration file, where one is found:
    /// placeholders, and where the history is.
    pub flyway_conf: Option<flyway_conf::Conf>,
    /// A Liquibase directory: where its changesets' files are named from,
    /// and why ([`liquibase::ChangesetId`]), for the log.
    pub liquibase_names: Option<String>,
    /// Where a Liquibase project's own configuration gives the contexts or
    /// label filter it deploys with ([`liquibase_conf`]); read where some
    /// changeset has a context or labels.
    pub liquibase_given: Vec<liquibase_conf::Given>,
    /// A Liquibase project's default schema and history schema, where its
    /// configuration gives them.
    pub liquibase_place: liquibase_conf::Place,
    /// The Liquibase master changelog named where the directory was
    /// expected (`dir: db/changelog.auth.xml`), as Liquibase's
    /// `--changelog-file` names it: the one that runs, whatever else the
    /// directory holds.
    pub liquibase_master: Option<PathBuf>,
    /// Liquibase's changesets the step's contexts or label filter leave
    /// out ([`liquibase::select`]): not run, but the directory's, so that
    /// a history row of one reads as that changeset.
    pub unselected: Vec<Migration>,
    /// The migrator the project's manifest says deploys these files, where
    /// their format alone does not say ([`project::deployer`]).
    pub deployer: Option<project::Deployer>,
    /// Loaded for lint: a file that cannot take its place in the order
    /// is a warning, and the rest still loads.
    tolerant: bool,
    /// (version, name) of each migration pushed, and its file: finds the
    /// same migration twice without comparing every pair.
    seen: std::collections::HashMap<(String, String), String>,
}

impl Set {
    /// For the log: the Flyway configuration file read, and what it gave.
    pub fn flyway_conf_note(&self) -> Option<String> {
        let c = self.flyway_conf.as_ref()?;
        let mut gave = Vec::new();
        if let Some(t) = c.history_table() {
            gave.push(format!("history in {t}"));
        }
        if !c.placeholders.is_empty() {
            gave.push(format!("{} placeholder(s)", c.placeholders.len()));
        }
        if c.no_replacement {
            gave.push("placeholders left as written".into());
        }
        if !c.suffixes.is_empty() {
            gave.push(format!("scripts ending in {}", c.suffixes.join(", ")));
        }
        if c.naming != flyway_conf::Naming::default() {
            let n = &c.naming;
            gave.push(format!(
                "scripts named {}1{sep}name, {}1{sep}name and {}{sep}name",
                n.versioned,
                n.undo,
                n.repeatable,
                sep = n.separator
            ));
        }
        if c.placeholder != flyway_conf::Delimiters::default() {
            gave.push(format!(
                "placeholders written {}name{}",
                c.placeholder.prefix, c.placeholder.suffix
            ));
        }
        if let Some((v, at)) = &c.out_of_order {
            gave.push(format!("outOfOrder {v} ({at})"));
        }
        if let Some((v, at)) = &c.baseline_on_migrate {
            gave.push(format!("baselineOnMigrate {v} ({at})"));
        }
        let others = self.flyway_locations();
        if !others.is_empty() {
            gave.push(format!(
                "also the migrations of its other location(s) {}",
                others
                    .iter()
                    .map(|(_, p)| p.trim_end_matches('/'))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if gave.is_empty() {
            gave.push("nothing runbook uses".into());
        }
        Some(format!(
            "Flyway configuration: {} ({})",
            c.path.display(),
            gave.join(", ")
        ))
    }

    /// The other locations of a Flyway project whose migrations are read
    /// with the directory's, each with the front of its files' names
    /// (`../common/`).
    pub fn flyway_locations(&self) -> Vec<(PathBuf, String)> {
        let Some(c) = &self.flyway_conf else {
            return Vec::new();
        };
        let here = self.dir.canonicalize().unwrap_or_else(|_| self.dir.clone());
        c.locations
            .iter()
            .map(|l| (l.clone(), format!("{}/", crate::fsutil::relative(l, &here))))
            .collect()
    }

    /// Only the directory's own migrations, not those of the Flyway
    /// configuration's other locations: for a database another tool
    /// deploys (`tool`, whose history it keeps), which reads no Flyway
    /// configuration. Said in a warning, where there were some.
    pub fn without_flyway_locations(&mut self, tool: &str) {
        let prefixes: Vec<String> = self
            .flyway_locations()
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        if prefixes.is_empty() {
            return;
        }
        let theirs = |file: &str| prefixes.iter().any(|p| file.starts_with(p.as_str()));
        let before = self.migrations.len() + self.repeatables.len() + self.code_migrations.len();
        self.migrations.retain(|m| !theirs(&m.up.file));
        self.repeatables.retain(|m| !theirs(&m.up.file));
        self.code_migrations.retain(|c| !theirs(&c.file));
        let left =
            before - self.migrations.len() - self.repeatables.len() - self.code_migrations.len();
        if let Some(c) = &mut self.flyway_conf {
            c.locations.clear();
        }
        self.warnings.push(format!(
            "the history is {tool}'s, which deploys this directory alone: the other locations of the Flyway configuration are Flyway's deploy, and their {left} migration(s) are left out"
        ));
    }

    /// For the log: the migrator the project's manifest names.
    pub fn deployer_note(&self) -> Option<String> {
        self.deployer
            .as_ref()
            .map(|d| format!("the project's migrator: {}", d.why))
    }

    /// For the log: the schemas a Liquibase project's configuration gives.
    pub fn liquibase_conf_note(&self) -> Option<String> {
        let s = &self.liquibase_place;
        let mut said = Vec::new();
        if let Some((schema, at)) = &s.default {
            said.push(format!(
                "default schema {schema} ({at}): each changeset runs with it first on the search path, as Liquibase runs it"
            ));
        }
        if let Some((schema, at)) = &s.history {
            said.push(format!("history in schema {schema} ({at})"));
        }
        (!said.is_empty()).then(|| format!("Liquibase configuration: {}", said.join("; ")))
    }

    /// No migrations: what a history is read against when no directory is named.
    pub fn empty() -> Set {
        Set {
            dir: PathBuf::new(),
            format: Format::Plain,
            migrations: Vec::new(),
            repeatables: Vec::new(),
            code_migrations: Vec::new(),
            warnings: Vec::new(),
            forward_only_because: None,
            project: None,
            flyway_conf: None,
            liquibase_names: None,
            liquibase_given: Vec::new(),
            liquibase_place: liquibase_conf::Place::default(),
            liquibase_master: None,
            unselected: Vec::new(),
            deployer: None,
            tolerant: false,
            seen: std::collections::HashMap::new(),
        }
    }

    /// Every migration forward-only, `why` (its history's tool has no
    /// downs): a rehearsal then says so once, as for a forward-only format,
    /// instead of asking for down files the tool would refuse.
    pub fn forward_only(&mut self, why: &'static str) {
        for m in &mut self.migrations {
            m.down = Down::Unavailable;
        }
        self.forward_only_because = Some(why);
    }

    /// The order this directory's format runs versions in ([`order`]).
    pub fn cmp(&self, a: &str, b: &str) -> std::cmp::Ordering {
        order(self.format, a, b)
    }

    /// A problem with one file: the error, or in a tolerant load a warning
    /// (and the caller skips the file).
    fn problem(&mut self, e: LoadError) -> Result<(), LoadError> {
        if self.tolerant {
            self.warnings.push(e.to_string());
            Ok(())
        } else {
            Err(e)
        }
    }

    /// A file's script, or its [`Set::problem`]: in a tolerant load,
    /// `None`, and the file is skipped.
    fn kept(&mut self, r: Result<Script, LoadError>) -> Result<Option<Script>, LoadError> {
        self.kept_with(r)
    }

    /// [`Set::kept`] for what a file gives besides its script.
    fn kept_with<T>(&mut self, r: Result<T, LoadError>) -> Result<Option<T>, LoadError> {
        match r {
            Ok(s) => Ok(Some(s)),
            Err(e) => self.problem(e).map(|()| None),
        }
    }
}

/// The order a format runs its versions in: Diesel's compares them as
/// text (`202511190914440000` before `20260527120000`), as Diesel sorts
/// them; every other format's is [`version_cmp`].
pub fn order(format: Format, a: &str, b: &str) -> std::cmp::Ordering {
    match format {
        // Atlas runs its files in the order of their names, and compares
        // versions as text.
        Format::Diesel | Format::Atlas => a.cmp(b),
        _ => version_cmp(a, b),
    }
}

/// Numeric order of versions: shorter (after leading zeros) is smaller,
/// and dotted versions (Flyway's `1.10`) compare part by part. A version
/// that is a file stem (`12_add_users`, for a shared number) sorts by its
/// number, then by name, as sql-migrate orders files.
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    version_parts(a)
        .cmp(&version_parts(b))
        .then_with(|| a.cmp(b))
}

/// The numbers a version starts with (`1.10.2` → 1, 10, 2), each as (length
/// without leading zeros, digits), which orders them as numbers of any size.
fn version_parts(v: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut rest = v;
    loop {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let n = rest[..digits].trim_start_matches('0');
        out.push((n.len(), n));
        rest = &rest[digits..];
        match rest.strip_prefix('.') {
            Some(r) if r.starts_with(|c: char| c.is_ascii_digit()) => rest = r,
            _ => return out,
        }
    }
}

/// Whether two versions name the same migration: `0001` and `1` do.
pub fn same_version(a: &str, b: &str) -> bool {
    a == b
        || (version_parts(a) == version_parts(b) && {
            let tail = |v: &str| {
                v.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.')
                    .to_string()
            };
            tail(a) == tail(b)
        })
}

fn version_of(name: &str) -> String {
    name.chars().take_while(char::is_ascii_digit).collect()
}

/// The name after the version and its separator: `001_add_users` → `add_users`.
fn name_of(stem: &str) -> String {
    let rest = stem.trim_start_matches(|c: char| c.is_ascii_digit());
    rest.trim_start_matches(['_', '-', '.']).to_string()
}

struct Found {
    name: String,
    version: String,
    kind: Entry,
}

/// What a directory entry that counts as a migration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    File,
    /// A directory holding `migration.sql` (Prisma).
    Prisma,
    /// A directory holding `up.sql` (Diesel).
    Diesel,
}

fn read_dir(dir: &Path) -> Result<Vec<Found>, LoadError> {
    let read = std::fs::read_dir(dir).map_err(|e| LoadError::Unreadable {
        path: format!("the migration directory {}", dir.display()),
        why: e.to_string(),
    })?;
    let mut out = Vec::new();
    for item in read {
        let item = item.map_err(|e| LoadError::Unreadable {
            path: dir.display().to_string(),
            why: e.to_string(),
        })?;
        let name = item.file_name().to_string_lossy().into_owned();
        let path = item.path();
        let (kind, version) = if !path.is_dir() {
            let counts = name.ends_with(".sql");
            (counts.then_some(Entry::File), version_of(&name))
        } else if path.join("migration.sql").is_file() {
            (Some(Entry::Prisma), version_of(&name))
        } else if path.join("up.sql").is_file() {
            (Some(Entry::Diesel), diesel_version(&name))
        } else {
            (None, String::new())
        };
        if let Some(kind) = kind
            && !version.is_empty()
        {
            out.push(Found {
                name,
                version,
                kind,
            });
        }
    }
    out.sort_by(|a, b| version_cmp(&a.version, &b.version).then(a.name.cmp(&b.name)));
    Ok(out)
}

/// The names of the entries of a migration directory, sorted, so that a
/// refusal names the first file.
fn entry_names(dir: &Path) -> Result<Vec<String>, LoadError> {
    Ok(std::fs::read_dir(dir)
        .map_err(|e| LoadError::Unreadable {
            path: format!("the migration directory {}", dir.display()),
            why: e.to_string(),
        })?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect())
}

fn read(dir: &Path, file: &str) -> Result<String, LoadError> {
    std::fs::read_to_string(dir.join(file)).map_err(|e| LoadError::Unreadable {
        path: dir.join(file).display().to_string(),
        why: e.to_string(),
    })
}

/// The section markers of the single-file formats, found in `text`.
fn marker_format(text: &str) -> Option<Format> {
    text.lines().find_map(|l| {
        let l = l.trim().to_ascii_lowercase();
        if l.starts_with("-- migrate:up") {
            Some(Format::Dbmate)
        } else if l.starts_with("-- +migrate up") {
            Some(Format::SqlMigrate)
        } else if l.starts_with("-- +goose up") {
            Some(Format::Goose)
        } else if l.contains(tern::SEPARATOR) || l == tern::DISABLE_TX {
            Some(Format::Tern)
        } else if node_pg_migrate_marker(&l, true).is_some() {
            Some(Format::NodePgMigrate)
        } else {
            None
        }
    })
}

fn detect(dir: &Path, found: &[Found]) -> Result<Format, LoadError> {
    if found.is_empty() {
        return Err(LoadError::Empty(dir.display().to_string()));
    }
    if found.iter().all(|f| f.kind != Entry::File) {
        let first = |kind| found.iter().find(|f| f.kind == kind);
        return match (first(Entry::Prisma), first(Entry::Diesel)) {
            (Some(p), Some(d)) => Err(LoadError::MixedFormats {
                dir: dir.display().to_string(),
                first: format!("{}/migration.sql", p.name),
                a: Format::Prisma.name(),
                second: format!("{}/up.sql", d.name),
                b: Format::Diesel.name(),
            }),
            (_, Some(_)) => Ok(Format::Diesel),
            _ => Ok(Format::Prisma),
        };
    }
    if found
        .iter()
        .any(|f| popx_parts(&f.name).is_some_and(|p| p.dialect.is_some() || p.autocommit))
    {
        return Ok(Format::Popx);
    }
    if found.iter().any(|f| postgrator_parts(&f.name).is_some()) {
        return Ok(Format::Postgrator);
    }
    if found
        .iter()
        .any(|f| f.name.ends_with(".up.sql") || f.name.ends_with(".down.sql"))
    {
        return Ok(Format::Pairs);
    }
    let mut seen: Vec<(Format, &str)> = Vec::new();
    for f in found.iter().filter(|f| f.kind == Entry::File) {
        if let Some(m) = marker_format(&read(dir, &f.name)?)
            && !seen.iter().any(|(s, _)| *s == m)
        {
            seen.push((m, &f.name));
        }
    }
    match seen.as_slice() {
        [] => Ok(Format::Plain),
        [(one, _)] => Ok(*one),
        [(a, fa), (b, fb), ..] => Err(LoadError::MixedFormats {
            dir: dir.display().to_string(),
            first: fa.to_string(),
            a: a.name(),
            second: fb.to_string(),
            b: b.name(),
        }),
    }
}

/// Load the migrations in `dir`, in version order. `format` `None` detects it.
pub fn load(dir: &Path, format: Option<Format>) -> Result<Set, LoadError> {
    load_with(dir, format, false)
}

/// The migrations of another tool, known by name only: `names` in the
/// tool's order, or (`None`) the entries of `dir` whose names start with a
/// digit, in version order. Each has no SQL of its own; `down` says whether
/// the tool can roll one back. A name is put into a shell script, so one
/// with anything but letters, digits and `._-/@+` is refused.
pub fn tool_set(dir: &Path, names: Option<Vec<String>>, down: bool) -> Result<Set, LoadError> {
    let names = match names {
        Some(n) => n,
        None => {
            let mut found: Vec<String> = entry_names(dir)?
                .into_iter()
                .filter(|n| n.starts_with(|c: char| c.is_ascii_digit()))
                .collect();
            found.sort_by(|a, b| version_cmp(&version_of(a), &version_of(b)).then(a.cmp(b)));
            found
        }
    };
    if names.is_empty() {
        return Err(LoadError::Empty(dir.display().to_string()));
    }
    let numbered = names.iter().all(|n| !version_of(n).is_empty());
    let mut set = Set {
        dir: dir.to_path_buf(),
        format: Format::Tool,
        ..Set::empty()
    };
    for (i, n) in names.into_iter().enumerate() {
        if !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/@+".contains(c))
        {
            return Err(LoadError::UnsafeName(n));
        }
        let stem = n.rsplit_once('.').map_or(n.as_str(), |(s, _)| s);
        let script = Script {
            sql: String::new(),
            file: n.clone(),
            first_line: 1,
            no_transaction: Some("its tool runs it".into()),
            written: None,
        };
        set.migrations.push(Migration {
            version: if numbered {
                version_of(&n)
            } else {
                format!("{:04}", i + 1)
            },
            name: name_of(stem),
            down: if down {
                Down::Script(script.clone())
            } else {
                Down::Unavailable
            },
            up: script,
            checksum: String::new(),
            created_ms: None,
            verify: None,
            checks: Vec::new(),
            changeset: None,
        });
    }
    Ok(set)
}

/// [`load`] for lint: a real history's quirks (a down with no up, the same
/// migration twice, a file with no up section) are warnings in
/// `Set::warnings`, and every other file is still loaded.
pub fn load_tolerant(dir: &Path) -> Result<Set, LoadError> {
    load_with(dir, None, true)
}

fn load_with(dir: &Path, format: Option<Format>, tolerant: bool) -> Result<Set, LoadError> {
    // A Liquibase changelog named in place of its directory: its master.
    let master = liquibase::changelog_file(dir);
    let dir = match &master {
        Some(_) => dir.parent().unwrap_or(Path::new(".")),
        None => dir,
    };
    let format = match format {
        Some(f) if master.is_some() && f != Format::Liquibase => {
            return Err(LoadError::LiquibaseChangelog {
                file: master.as_deref().unwrap_or(dir).display().to_string(),
                what: format!(
                    "is a Liquibase changelog, and the format given is {}",
                    f.name()
                ),
            });
        }
        _ if master.is_some() => Format::Liquibase,
        Some(f) => f,
        None if sqitch::present(dir) => Format::Sqitch,
        None if drizzle::present(dir) => Format::Drizzle,
        None if flyway::present(dir)? => Format::Flyway,
        // Liquibase's files have no layout of their own: looked for only
        // where nothing else was found, so that a long history of another
        // tool's files is not read twice for it.
        None => match detect(dir, &read_dir(dir)?) {
            Ok(Format::Plain) | Err(LoadError::Empty(_)) if atlas::present(dir) => Format::Atlas,
            Ok(Format::Plain) | Err(LoadError::Empty(_)) if liquibase::present(dir) => {
                Format::Liquibase
            }
            found => found?,
        },
    };
    let found = match format {
        Format::Flyway | Format::Sqitch | Format::Drizzle | Format::Liquibase | Format::Atlas => {
            Vec::new()
        }
        _ => read_dir(dir)?,
    };
    let mut set = Set {
        dir: dir.to_path_buf(),
        format,
        tolerant,
        deployer: project::deployer(dir, format),
        liquibase_master: master,
        ..Set::empty()
    };
    match format {
        Format::Tool => return Err(LoadError::UnknownFormat("tool".into())),
        Format::Flyway => flyway::load(dir, &mut set)?,
        Format::Sqitch => sqitch::load(dir, &mut set)?,
        Format::Drizzle => drizzle::load(dir, &mut set)?,
        Format::Liquibase => liquibase::load(dir, &mut set)?,
        Format::Atlas => atlas::load(dir, &mut set)?,
        Format::Pairs => load_pairs(dir, &found, &mut set)?,
        Format::Popx => load_popx(dir, &found, &mut set)?,
        Format::Diesel => load_diesel(dir, &found, &mut set)?,
        Format::Postgrator => {
            code_migrations(dir, &mut set, "Postgrator")?;
            load_postgrator(dir, &found, &mut set)?;
        }
        Format::Tern => tern::load(dir, &found, &mut set)?,
        Format::Prisma => {
            for f in found.iter().filter(|f| f.kind == Entry::Prisma) {
                let file = format!("{}/migration.sql", f.name);
                let up = script(read(dir, &file)?, file, 1, false);
                push(&mut set, &f.name, name_of(&f.name), up, Down::Unavailable)?;
            }
        }
        Format::Plain => {
            for f in found.iter().filter(|f| f.kind == Entry::File) {
                let text = read(dir, &f.name)?;
                if let Some((tool, marker)) = foreign_down(&f.name, &text) {
                    set.problem(LoadError::ForeignDown {
                        file: f.name.clone(),
                        tool,
                        marker,
                    })?;
                    continue;
                }
                let sqlx = sqlx_no_transaction(&text);
                let up = sqlx_one_query(script(text, f.name.clone(), 1, sqlx), sqlx);
                let Some(up) = set.kept(up)? else {
                    continue;
                };
                let name = name_of(f.name.trim_end_matches(".sql"));
                push(&mut set, &f.name, name, up, Down::Unavailable)?;
            }
        }
        Format::NodePgMigrate => {
            code_migrations(dir, &mut set, "node-pg-migrate")?;
            for f in found.iter().filter(|f| f.kind == Entry::File) {
                let text = read(dir, &f.name)?;
                match sections(format, &text, &f.name) {
                    Ok((up, down)) => {
                        let name = name_of(f.name.trim_end_matches(".sql"));
                        push(&mut set, &f.name, name, up, down)?;
                    }
                    Err(e) => set.problem(e)?,
                }
            }
        }
        Format::Dbmate | Format::SqlMigrate | Format::Goose => {
            if format == Format::Goose {
                code_migrations(dir, &mut set, "goose")?;
            }
            for f in found.iter().filter(|f| f.kind == Entry::File) {
                let text = read(dir, &f.name)?;
                match sections(format, &text, &f.name) {
                    Ok((up, down)) => {
                        let name = name_of(f.name.trim_end_matches(".sql"));
                        push(&mut set, &f.name, name, up, down)?;
                    }
                    Err(e) => set.problem(e)?,
                }
            }
        }
    }
    atlas::sum_warning(dir, &mut set)?;
    name_shared_versions(&mut set);
    Ok(set)
}

/// Migrations that share a number are known by their file stems, and
/// ordered by number, then name.
fn name_shared_versions(set: &mut Set) {
    let number = |v: &str| v.trim_start_matches('0').to_string();
    let mut count: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for m in &set.migrations {
        *count.entry(number(&m.version)).or_default() += 1;
    }
    let mut shared: Vec<String> = count
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(v, _)| v)
        .collect();
    if shared.is_empty() {
        return;
    }
    shared.sort_by(|a, b| version_cmp(a, b));
    for m in &mut set.migrations {
        if shared.contains(&number(&m.version)) {
            m.version = format!("{}_{}", m.version, m.name);
        }
    }
    set.migrations
        .sort_by(|a, b| version_cmp(&a.version, &b.version));
    set.warnings.push(format!(
        "version(s) {} are shared by several migrations; each is known by its file name and they run in file-name order",
        shared
            .iter()
            .map(|v| if v.is_empty() { "0" } else { v.as_str() })
            .collect::<Vec<_>>()
            .join(", ")
    ));
}

fn script(sql: String, file: String, first_line: usize, no_transaction: bool) -> Script {
    script_by(
        sql,
        file,
        first_line,
        no_transaction.then(|| FILE_MARK.to_string()),
    )
}

/// A script as psql reads its file: without a byte-order mark at the
/// start, which PostgreSQL would read as part of the first word. `written`
/// keeps the file's text, which the tool's checksum is of.
fn without_bom(mut s: Script) -> Script {
    if let Some(rest) = s.sql.strip_prefix('\u{feff}') {
        let rest = rest.to_string();
        s.written = Some(std::mem::replace(&mut s.sql, rest));
    }
    s
}

/// [`script`], marked outside a transaction for the reason `by` gives
/// (its tool's metadata), or by the file itself.
fn script_by(sql: String, file: String, first_line: usize, by: Option<String>) -> Script {
    let no_transaction = by.or_else(|| marked(&sql).then(|| FILE_MARK.to_string()));
    Script {
        sql,
        file,
        first_line,
        no_transaction,
        written: None,
    }
}

/// The MD5 of a script, as Postgrator records it, hex.
pub fn postgrator_checksum(sql: &str) -> String {
    use md5::{Digest, Md5};
    crate::hash::hex(&Md5::digest(sql.as_bytes()))
}

/// Another tool's down in a directory read as plain files, and how it is
/// marked: run as an up, it would undo its own migration (a down file runs
/// as a migration of its own; a down section runs right after its up), and
/// the history would record it as applied.
fn foreign_down(name: &str, text: &str) -> Option<(&'static str, String)> {
    if name.ends_with(".undo.sql") {
        return Some(("Postgrator", "its name ends in `.undo.sql`".into()));
    }
    if name.ends_with(".rollback.sql") {
        return Some(("yoyo", "its name ends in `.rollback.sql`".into()));
    }
    text.lines().enumerate().find_map(|(i, l)| {
        let t = l.trim().to_ascii_lowercase();
        let marked = |tool| Some((tool, format!("line {} is `{}`", i + 1, l.trim())));
        if t == "-- ==== down ====" {
            return marked("shmig");
        }
        // node-pg-migrate's `-- Down Migration`, under `format: plain`.
        (node_pg_migrate_marker(&t, true) == Some(false)).then(|| marked("node-pg-migrate"))?
    })
}

/// node-pg-migrate's section line, lowercased and trimmed: `-- up
/// migration` (true) or `-- down migration` (false), with the dashes and
/// spaces its pattern allows. Within its files, anything may follow, as
/// its pattern reads them; to tell a directory is node-pg-migrate's (or
/// that a plain file holds its down), the line must be just that, as its
/// template writes it, so that a comment like `-- down migration notes`
/// in another project's file is not taken for one.
fn node_pg_migrate_marker(line: &str, exact: bool) -> Option<bool> {
    let rest = line
        .strip_prefix("--")?
        .trim_start_matches(|c: char| c.is_whitespace() || c == '-');
    let (up, after) = match rest.strip_prefix("up") {
        Some(a) => (true, a),
        None => (false, rest.strip_prefix("down")?),
    };
    let tail = after.trim_start().strip_prefix("migration")?;
    (after.starts_with(char::is_whitespace) && (!exact || tail.trim().is_empty())).then_some(up)
}

/// SQLx's marker, in the layouts SQLx uses (plain files and pairs): a
/// file that starts with `-- no-transaction` runs outside a transaction.
fn sqlx_no_transaction(text: &str) -> bool {
    text.starts_with("-- no-transaction")
}

/// Whether a script holds runbook's no-transaction marker.
fn marked(sql: &str) -> bool {
    sql.lines()
        .any(|l| l.trim().eq_ignore_ascii_case(NO_TRANSACTION_MARKER))
}

fn push(set: &mut Set, file: &str, name: String, up: Script, down: Down) -> Result<(), LoadError> {
    push_versioned(set, file, version_of(file), name, up, down)
}

/// [`push`] for a format whose versions are not a file's leading digits.
fn push_versioned(
    set: &mut Set,
    file: &str,
    version: String,
    name: String,
    up: Script,
    down: Down,
) -> Result<(), LoadError> {
    let key = (version.clone(), name.clone());
    if let Some(other) = set.seen.get(&key).filter(|f| *f != file) {
        let e = LoadError::Twice {
            file: file.to_string(),
            other: other.clone(),
            version,
            name,
        };
        return set.problem(e);
    }
    set.seen.insert(key, file.to_string());
    // A blank down counts as missing, except in popx, which runs it as the
    // no-op it is, and under a blank up: nothing to undo, so the no-op is
    // its exact inverse (a change kept as an empty stub in Sqitch's plan).
    let down = match down {
        Down::Script(s) if s.is_blank() && set.format != Format::Popx && !up.is_blank() => {
            Down::Missing(format!("{} holds only comments", s.file))
        }
        d => d,
    };
    set.migrations.push(Migration {
        checksum: crate::hash::sha256_hex(up.sql.as_bytes()),
        created_ms: None,
        verify: None,
        checks: Vec::new(),
        changeset: None,
        version,
        name,
        up,
        down,
    });
    Ok(())
}

/// The version of a Diesel migration directory, as Diesel records it:
/// its name up to the first `_`, dashes dropped (`2019-09-12-100000_create`
/// is `20190912100000`); empty unless that is numbers joined by dashes.
fn diesel_version(name: &str) -> String {
    let version = name.split('_').next().unwrap_or("");
    let numbers = version
        .split('-')
        .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    if numbers {
        version.replace('-', "")
    } else {
        String::new()
    }
}

/// Whether Diesel runs a migration in a transaction, by its
/// `metadata.toml` as Diesel reads it: with no file, or one that is not
/// TOML, it does; in a file, `run_in_transaction` says, and left out it
/// is false.
fn diesel_in_transaction(dir: &Path, migration: &str, set: &mut Set) -> Result<bool, LoadError> {
    #[derive(serde::Deserialize)]
    struct Metadata {
        #[serde(default)]
        run_in_transaction: bool,
    }
    let file = format!("{migration}/metadata.toml");
    if !dir.join(&file).is_file() {
        return Ok(true);
    }
    match toml::from_str::<Metadata>(&read(dir, &file)?) {
        Ok(m) => Ok(m.run_in_transaction),
        Err(e) => {
            set.warnings.push(format!(
                "{file} is not TOML Diesel can read, so Diesel runs the migration in a transaction, and so does runbook: {}",
                e.message()
            ));
            Ok(true)
        }
    }
}

/// Diesel: `VERSION_name/up.sql`, with `down.sql` beside it when the
/// migration can be reverted, in Diesel's order: its versions compared as
/// text ([`order`]).
fn load_diesel(dir: &Path, found: &[Found], set: &mut Set) -> Result<(), LoadError> {
    let mut dirs: Vec<&Found> = found.iter().filter(|f| f.kind == Entry::Diesel).collect();
    dirs.sort_by(|a, b| a.version.cmp(&b.version).then(a.name.cmp(&b.name)));
    let mut previous: Option<&Found> = None;
    for f in dirs {
        if let Some(p) = previous.filter(|p| p.version == f.version) {
            set.problem(LoadError::SharedVersion {
                version: f.version.clone(),
                first: p.name.clone(),
                second: f.name.clone(),
                tool: "Diesel",
            })?;
            continue;
        }
        previous = Some(f);
        let in_tx = diesel_in_transaction(dir, &f.name, set)?;
        let by =
            (!in_tx).then(|| format!("{}/metadata.toml sets run_in_transaction = false", f.name));
        let file = |part: &str| format!("{}/{part}.sql", f.name);
        // Outside a transaction, Diesel sends the script as one query.
        let diesel = |part: &str| -> Result<Result<Script, LoadError>, LoadError> {
            let s = script_by(read(dir, &file(part))?, file(part), 1, by.clone());
            Ok(if by.is_some() {
                one_query(s, "Diesel")
            } else {
                Ok(s)
            })
        };
        let Some(up) = set.kept(diesel("up")?)? else {
            continue;
        };
        let down = if dir.join(file("down")).is_file() {
            match set.kept(diesel("down")?)? {
                Some(down) => Down::Script(down),
                None => continue,
            }
        } else {
            Down::Missing(format!("there is no {}", file("down")))
        };
        let name = f.name.split_once('_').map_or("", |(_, n)| n).to_string();
        push_versioned(set, &f.name, f.version.clone(), name, up, down)?;
    }
    Ok(())
}

/// Migrations in code beside the SQL ones of a tool that runs both.
/// goose's `NNN_name.go` files register themselves and take their version
/// from their name: each is kept in its place in the version order, as
/// Flyway's Java migrations are ([`Set::code_migrations`]), so that a
/// deploy past an applied one goes on and one that would pass over a
/// pending one is refused. Postgrator's and node-pg-migrate's JavaScript
/// or TypeScript ones are refused: runbook cannot run them, and leaving
/// them out would run later SQL migrations before them. A Go test file is
/// not a migration.
fn code_migrations(dir: &Path, set: &mut Set, tool: &'static str) -> Result<(), LoadError> {
    let extensions: &[&str] = match tool {
        "goose" => &[".go"],
        _ => &[".js", ".cjs", ".mjs", ".ts"],
    };
    for name in entry_names(dir)? {
        let code = extensions.iter().any(|ext| name.ends_with(ext)) && !name.ends_with("_test.go");
        if !code || !name.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        if tool != "goose" {
            set.problem(LoadError::CodeMigration { file: name, tool })?;
            continue;
        }
        set.code_migrations.push(CodeMigration {
            version: version_of(&name),
            description: name_of(name.trim_end_matches(".go")),
            language: "Go",
            found: "registered with goose in the application's code".into(),
            tool: CodeTool::Goose,
            file: name,
        });
    }
    let order = |a: &CodeMigration, b: &CodeMigration| version_cmp(&a.version, &b.version);
    set.code_migrations.sort_by(order);
    Ok(())
}

/// A Postgrator file's name: `VERSION.do[.name].sql` (true) or
/// `VERSION.undo[.name].sql` (false), and its name.
fn postgrator_parts(file: &str) -> Option<(bool, &str)> {
    let rest = file.strip_suffix(".sql")?;
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    let (action, name) = match rest.strip_prefix('.')?.split_once('.') {
        Some((a, n)) => (a, n),
        None => (rest.strip_prefix('.')?, ""),
    };
    match action.to_ascii_lowercase().as_str() {
        "do" => Some((true, name)),
        "undo" => Some((false, name)),
        _ => None,
    }
}

/// Postgrator: each version's `do` file is its up and its `undo` file its
/// down. Postgrator runs a file as it is, with no transaction of its own;
/// runbook runs it in one unless the file has its own `BEGIN`/`COMMIT`.
fn load_postgrator(dir: &Path, found: &[Found], set: &mut Set) -> Result<(), LoadError> {
    let files: Vec<(&Found, bool, &str)> = found
        .iter()
        .filter(|f| f.kind == Entry::File)
        .filter_map(|f| {
            let (is_do, name) = postgrator_parts(&f.name)?;
            Some((f, is_do, name))
        })
        .collect();
    for (i, (f, is_do, _)) in files.iter().enumerate() {
        // Postgrator refuses two files of one version and action.
        if let Some((g, _, _)) = files[..i]
            .iter()
            .find(|(g, d, _)| d == is_do && same_version(&g.version, &f.version))
        {
            set.problem(LoadError::SharedVersion {
                version: f.version.clone(),
                first: g.name.clone(),
                second: f.name.clone(),
                tool: "Postgrator",
            })?;
        }
        let pair = files
            .iter()
            .any(|(g, d, _)| *d != *is_do && same_version(&g.version, &f.version));
        if !is_do && !pair {
            set.problem(LoadError::DownWithoutUp {
                down: f.name.clone(),
                of: format!("version {}", f.version),
            })?;
        }
    }
    for (f, _, name) in files.iter().filter(|(_, d, _)| *d) {
        let up = script(read(dir, &f.name)?, f.name.clone(), 1, false);
        let undo = files
            .iter()
            .find(|(g, d, _)| !*d && same_version(&g.version, &f.version));
        let down = match undo {
            Some((u, _, _)) => Down::Script(script(read(dir, &u.name)?, u.name.clone(), 1, false)),
            None => Down::Missing(format!("there is no {}.undo.sql", f.version)),
        };
        push_versioned(set, &f.name, f.version.clone(), name.to_string(), up, down)?;
    }
    Ok(())
}

fn load_pairs(dir: &Path, found: &[Found], set: &mut Set) -> Result<(), LoadError> {
    let mut ups: Vec<&Found> = Vec::new();
    let mut downs: Vec<&Found> = Vec::new();
    for f in found.iter().filter(|f| f.kind == Entry::File) {
        if f.name.ends_with(".down.sql") {
            downs.push(f);
        } else if f.name.ends_with(".up.sql") {
            ups.push(f);
        } else {
            set.warnings.push(format!(
                "{} is neither `.up.sql` nor `.down.sql`; it is ignored",
                f.name
            ));
        }
    }
    let (pairs, leftovers) = pair(
        &ups.iter()
            .map(|u| (u.version.as_str(), u.name.trim_end_matches(".up.sql")))
            .collect::<Vec<_>>(),
        &downs
            .iter()
            .map(|d| (d.version.as_str(), d.name.trim_end_matches(".down.sql")))
            .collect::<Vec<_>>(),
    );
    for e in leftovers {
        set.problem(e)?;
    }
    for (i, u) in ups.iter().enumerate() {
        let version = u.version.clone();
        let name = name_of(u.name.trim_end_matches(".up.sql"));
        let text = read(dir, &u.name)?;
        let sqlx = sqlx_no_transaction(&text);
        let up = sqlx_one_query(script(text, u.name.clone(), 1, sqlx), sqlx);
        let Some(up) = set.kept(up)? else {
            continue;
        };
        let down = match pairs[i] {
            Some(j) => {
                let d = downs[j];
                let down_name = name_of(d.name.trim_end_matches(".down.sql"));
                if down_name != name {
                    set.warnings.push(format!(
                        "version {version}: the up is `{}` but the down is `{}`; they are paired by version",
                        u.name, d.name
                    ));
                }
                let text = read(dir, &d.name)?;
                let sqlx = sqlx_no_transaction(&text);
                match set.kept(sqlx_one_query(script(text, d.name.clone(), 1, sqlx), sqlx))? {
                    Some(down) => Down::Script(down),
                    None => continue,
                }
            }
            None => Down::Missing(format!("there is no {version}_*.down.sql")),
        };
        push(set, &u.name, name, up, down)?;
    }
    Ok(())
}

/// Pair each up `(version, stem)` with its down: the down of the same stem,
/// else the one down of the same version when the version has one up and
/// one down. A down left over has no up: the second list says which.
fn pair(ups: &[(&str, &str)], downs: &[(&str, &str)]) -> (Vec<Option<usize>>, Vec<LoadError>) {
    let mut taken = vec![false; downs.len()];
    let mut out: Vec<Option<usize>> = ups
        .iter()
        .map(|(_, stem)| {
            let j = downs.iter().position(|(_, d)| d == stem)?;
            taken[j] = true;
            Some(j)
        })
        .collect();
    for (i, (v, _)) in ups.iter().enumerate() {
        if out[i].is_some() {
            continue;
        }
        let free: Vec<usize> = (0..downs.len())
            .filter(|&j| !taken[j] && downs[j].0 == *v)
            .collect();
        let lone_up = ups
            .iter()
            .enumerate()
            .filter(|(k, (w, _))| w == v && out[*k].is_none())
            .count()
            == 1;
        if let [j] = free.as_slice()
            && lone_up
        {
            taken[*j] = true;
            out[i] = Some(*j);
        }
    }
    let leftovers = (0..downs.len())
        .filter(|&j| !taken[j])
        .map(|j| {
            let (v, stem) = downs[j];
            let (version, stem) = (v.to_string(), stem.to_string());
            if downs.iter().filter(|(w, _)| *w == v).count() > 1
                && !ups.iter().any(|(w, _)| *w == v)
            {
                LoadError::DownsWithoutUp { version, stem }
            } else if ups.iter().any(|(w, _)| *w == v) {
                LoadError::SecondDown { version, stem }
            } else {
                LoadError::DownWithoutUp {
                    down: format!("{stem}.down.sql"),
                    of: format!("version {version}"),
                }
            }
        })
        .collect();
    (out, leftovers)
}

/// The parts of a popx file name: `V_name[.dialect][.autocommit].up.sql`.
struct PopxParts<'n> {
    stem: &'n str,
    dialect: Option<&'n str>,
    autocommit: bool,
    up: bool,
}

const POPX_DIALECTS: &[&str] = &[
    "postgres",
    "postgresql",
    "pg",
    "cockroach",
    "crdb",
    "mysql",
    "mariadb",
    "sqlite",
    "sqlite3",
];

fn popx_parts(name: &str) -> Option<PopxParts<'_>> {
    let (rest, up) = if let Some(r) = name.strip_suffix(".up.sql") {
        (r, true)
    } else {
        (name.strip_suffix(".down.sql")?, false)
    };
    let (rest, autocommit) = match rest.strip_suffix(".autocommit") {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let (stem, dialect) = match rest.rsplit_once('.') {
        Some((stem, d)) if POPX_DIALECTS.contains(&d) => (stem, Some(d)),
        _ => (rest, None),
    };
    Some(PopxParts {
        stem,
        dialect,
        autocommit,
        up,
    })
}

/// popx: for each migration (its stem), the PostgreSQL file if there is
/// one, else the dialect-free one.
fn load_popx(dir: &Path, found: &[Found], set: &mut Set) -> Result<(), LoadError> {
    // stem -> (up, down): (file, autocommit, dialect-specific)
    type Pick<'f> = Option<(&'f str, bool, bool)>;
    let mut chosen: std::collections::BTreeMap<&str, (Pick<'_>, Pick<'_>, &str)> =
        std::collections::BTreeMap::new();
    for f in found.iter().filter(|f| f.kind == Entry::File) {
        let Some(p) = popx_parts(&f.name) else {
            set.warnings.push(format!(
                "{} is neither `.up.sql` nor `.down.sql`; it is ignored",
                f.name
            ));
            continue;
        };
        let specific = match p.dialect {
            None => false,
            Some("postgres" | "postgresql" | "pg") => true,
            Some(_) => continue,
        };
        let entry = chosen
            .entry(p.stem)
            .or_insert((None, None, f.version.as_str()));
        let slot = if p.up { &mut entry.0 } else { &mut entry.1 };
        match slot {
            Some((_, _, true)) if specific => {
                let e = LoadError::TwoDialects {
                    file: f.name.clone(),
                    which: if p.up { "up" } else { "down" },
                    stem: p.stem.to_string(),
                };
                set.problem(e)?;
            }
            Some((_, _, true)) => {}
            _ => *slot = Some((f.name.as_str(), p.autocommit, specific)),
        }
    }
    let mut list: Vec<(&str, (Pick<'_>, Pick<'_>, &str))> = chosen.into_iter().collect();
    list.sort_by(|a, b| version_cmp(a.1.2, b.1.2).then(a.0.cmp(b.0)));
    for (stem, (up, down, _)) in list {
        let Some((up_file, up_auto, _)) = up else {
            if let Some((d, _, _)) = down {
                set.problem(LoadError::DownWithoutUp {
                    down: d.to_string(),
                    of: stem.to_string(),
                })?;
            }
            continue;
        };
        let up_script = script(read(dir, up_file)?, up_file.to_string(), 1, up_auto);
        let down = match down {
            Some((d, auto, _)) => Down::Script(script(read(dir, d)?, d.to_string(), 1, auto)),
            None => Down::Missing(format!("there is no {stem}.down.sql")),
        };
        let template = std::iter::once(&up_script)
            .chain(match &down {
                Down::Script(d) => Some(d),
                _ => None,
            })
            .find_map(|s| go_template(s).map(|line| (s.file.clone(), line)));
        if let Some((file, line)) = template {
            set.problem(LoadError::GoTemplate { file, line })?;
            continue;
        }
        push(set, up_file, name_of(stem), up_script, down)?;
    }
    Ok(())
}

/// The line of a `{` that is SQL, not text in a string or a comment: no
/// PostgreSQL statement has one, and pop's Go templates (`{{ .Options }}`)
/// are made of them. Sent as written, the first such file fails only after
/// the migrations before it ran.
fn go_template(s: &Script) -> Option<usize> {
    if !s.sql.contains("{{") {
        return None;
    }
    let tree = squawk_syntax::SourceFile::parse(&s.sql).syntax_node();
    let at = tree
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .find(|t| t.kind() == squawk_syntax::SyntaxKind::L_CURLY)?;
    let offset = usize::from(at.text_range().start());
    Some(s.first_line + s.sql[..offset].matches('\n').count())
}

/// Split a single-file migration into its up and down sections.
///
/// sql-migrate lets a file switch back and forth (`-- +migrate Up`, then
/// `Down`, then `Up` again) and gathers each direction's statements in
/// order, a `notransaction` on any of its sections holding for the whole
/// direction. A later section is joined to the earlier ones with the lines
/// in between left blank, so a location in the script is still its line in
/// the file. goose and dbmate take one section of each.
fn sections(format: Format, text: &str, file: &str) -> Result<(Script, Down), LoadError> {
    #[derive(PartialEq)]
    enum In {
        Before,
        Up,
        Down,
    }
    /// One direction's text, and the file line (0-based) its next line is.
    #[derive(Default)]
    struct Section {
        sql: String,
        first_line: usize,
        next: usize,
        no_tx: bool,
    }
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    impl Section {
        fn started(&self) -> bool {
            self.first_line != 0
        }
        fn start(&mut self, at: usize, no_tx: bool) {
            if !self.started() {
                self.first_line = at + 2;
                self.next = at + 1;
            }
            self.no_tx |= no_tx;
        }
        /// Line `at` of `lines`; the lines skipped since the last one are
        /// blanked to spaces of the same length, so that an offset in the
        /// section is its offset in the file from where the section starts.
        fn push(&mut self, lines: &[&str], at: usize) {
            for skipped in &lines[self.next..at] {
                let body = skipped.strip_suffix('\n');
                self.sql
                    .extend(std::iter::repeat_n(' ', body.unwrap_or(skipped).len()));
                if body.is_some() {
                    self.sql.push('\n');
                }
            }
            self.sql.push_str(lines[at]);
            self.next = at + 1;
        }
    }
    let mut state = In::Before;
    let (mut up, mut down) = (Section::default(), Section::default());
    let mut file_no_tx = false;
    let mut envsub = false;
    let repeats = format == Format::SqlMigrate;
    for (i, line) in lines.iter().enumerate() {
        let lower = line.trim().to_ascii_lowercase();
        let words: Vec<&str> = lower.split_whitespace().collect();
        let marker = match (format, words.as_slice()) {
            (Format::Dbmate, ["--", m, rest @ ..]) if m.starts_with("migrate:") => match *m {
                "migrate:up" | "migrate:down" => {
                    Some((*m == "migrate:up", rest.contains(&"transaction:false")))
                }
                _ => None,
            },
            (Format::SqlMigrate, ["--", "+migrate", dir, rest @ ..])
                if *dir == "up" || *dir == "down" =>
            {
                Some((*dir == "up", rest.contains(&"notransaction")))
            }
            (Format::Goose, ["--", "+goose", dir, ..]) if *dir == "up" || *dir == "down" => {
                Some((*dir == "up", false))
            }
            (Format::Goose, ["--", "+goose", "no", "transaction", ..]) => {
                file_no_tx = true;
                None
            }
            (Format::Goose, ["--", "+goose", "envsub", on]) => {
                envsub = *on == "on";
                None
            }
            (Format::NodePgMigrate, _) => {
                node_pg_migrate_marker(&lower, false).map(|up| (up, false))
            }
            _ => None,
        };
        match marker {
            Some((is_up, no_tx)) => {
                let (section, name) = if is_up {
                    (&mut up, "up")
                } else {
                    (&mut down, "down")
                };
                // goose and dbmate: one up, then one down.
                let out_of_order = is_up && !repeats && state != In::Before;
                if out_of_order || (section.started() && !repeats) {
                    return Err(LoadError::SecondSection {
                        file: file.to_string(),
                        line: i + 1,
                        section: name,
                        tool: format.name(),
                    });
                }
                section.start(i, no_tx);
                state = if is_up { In::Up } else { In::Down };
            }
            // goose reads `$NAME`, `${NAME}` and `${NAME:-default}` on every
            // line it passes on; a comment line changes nothing.
            None if envsub
                && state != In::Before
                && line.contains('$')
                && !line.trim_start().starts_with("--") =>
            {
                return Err(LoadError::GooseEnvsub {
                    file: file.to_string(),
                    line: i + 1,
                });
            }
            None => match state {
                In::Up => up.push(&lines, i),
                In::Down => down.push(&lines, i),
                In::Before => {}
            },
        }
    }
    let (up_line, down_line) = (up.first_line, down.first_line);
    let (up_no_tx, down_no_tx) = (up.no_tx, down.no_tx);
    let (up, down) = (up.sql, down.sql);
    // node-pg-migrate: a file with neither marker is all up.
    if format == Format::NodePgMigrate && up_line == 0 && down_line == 0 {
        let up = script(text.to_string(), file.to_string(), 1, false);
        let down = Down::Missing(format!("{file} has no `-- Down Migration` line"));
        return Ok((up, down));
    }
    if up_line == 0 {
        let want = match format {
            Format::Dbmate => "-- migrate:up",
            Format::SqlMigrate => "-- +migrate Up",
            // Without it, node-pg-migrate runs the whole file, down included, as the up.
            Format::NodePgMigrate => "-- Up Migration",
            _ => "-- +goose Up",
        };
        return Err(LoadError::NoUp {
            file: file.to_string(),
            want,
            format: format.name(),
        });
    }
    let tool = |s: Script| match format {
        Format::Dbmate => one_query(s, "dbmate"),
        Format::Goose => match goose_cut(&s) {
            Some((line, missing)) => Err(LoadError::GooseCut {
                file: file.to_string(),
                line,
                missing,
            }),
            None => Ok(s),
        },
        _ => Ok(s),
    };
    let up = tool(script(
        up,
        file.to_string(),
        up_line,
        up_no_tx || file_no_tx,
    ))?;
    let down = if down_line == 0 {
        Down::Missing(format!("{file} has no down section"))
    } else {
        Down::Script(tool(script(
            down,
            file.to_string(),
            down_line,
            down_no_tx || file_no_tx,
        ))?)
    };
    Ok((up, down))
}

/// [`one_query`] for a script that holds SQLx's `-- no-transaction`.
fn sqlx_one_query(s: Script, sqlx: bool) -> Result<Script, LoadError> {
    if sqlx { one_query(s, "SQLx") } else { Ok(s) }
}

/// Where goose would send PostgreSQL a piece of a statement: goose cuts a
/// section after each line whose last word (before a `--` comment) ends
/// with `;`, except between `-- +goose StatementBegin` and `StatementEnd`,
/// and refuses a section whose last statement has no such line. A cut
/// inside a statement (a `;` at the end of a line of a function body) is
/// a statement goose sends in two broken halves. runbook splits with a
/// parser, so it would run the file that goose fails. The line, and
/// whether it is the missing `;` (else a cut inside a statement).
fn goose_cut(s: &Script) -> Option<(usize, bool)> {
    let stmts = crate::pg::statements::split(&s.sql);
    let line_of = |offset: usize| s.first_line + s.sql[..offset].matches('\n').count();
    let mut in_block = false;
    let mut pending: Option<usize> = None;
    let mut offset = 0;
    for line in s.sql.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let text = line.trim_end_matches(['\n', '\r']);
        let lower = text.trim().to_ascii_lowercase();
        if lower.starts_with("--") && lower.contains("+goose") {
            match lower
                .split_whitespace()
                .skip_while(|w| *w != "+goose")
                .nth(1)
            {
                Some("statementbegin") => in_block = true,
                Some("statementend") => {
                    in_block = false;
                    pending = None;
                }
                _ => {}
            }
            continue;
        }
        if in_block {
            continue;
        }
        if pending.is_none() {
            if lower.is_empty() || lower.starts_with("--") {
                continue;
            }
            pending = Some(start);
        }
        let last = text
            .split_whitespace()
            .take_while(|w| !w.starts_with("--"))
            .last();
        if last.is_some_and(|w| w.ends_with(';')) {
            let cut = start + text.len();
            if stmts
                .iter()
                .any(|st| st.offset < cut && cut < st.offset + st.text.len())
            {
                return Some((line_of(start), false));
            }
            pending = None;
        }
    }
    pending.map(|start| (line_of(start), true))
}

/// dbmate (`transaction:false`), SQLx (`-- no-transaction`) and Diesel
/// (`run_in_transaction = false`) send a script marked to run outside a
/// transaction to PostgreSQL as one query, and PostgreSQL runs a query of
/// several statements as one transaction: all of it, or none of it if one
/// fails. So does runbook, in a transaction; run statement by statement,
/// a failure would leave the database half-changed where the tool leaves
/// it as it was. A statement that cannot run in a transaction fails there
/// under the tool, unless it is the script's only one, and is refused. A
/// script that manages its own transactions (`BEGIN`, `COMMIT`) is left as
/// it is.
fn one_query(mut s: Script, tool: &'static str) -> Result<Script, LoadError> {
    if s.no_transaction.is_none() {
        return Ok(s);
    }
    let stmts = crate::pg::statements::split(&s.sql);
    if stmts.len() < 2 || stmts.iter().any(|st| st.transaction_control) {
        return Ok(s);
    }
    if let Some(st) = stmts.iter().find(|st| st.no_transaction.is_some()) {
        return Err(LoadError::OneQuery {
            at: s.locate(st.offset),
            tool,
            statement: st.summary(),
            why: st.no_transaction.unwrap_or_default().to_string(),
        });
    }
    s.no_transaction = None;
    Ok(s)
}

/// How a script runs, and why when not in one transaction.
pub fn script_mode(script: &Script, stmts: &[Statement]) -> (bool, Option<String>) {
    if let Some(by) = &script.no_transaction {
        return (false, Some(by.clone()));
    }
    if let Some((i, st)) = stmts
        .iter()
        .enumerate()
        .find(|(_, s)| s.no_transaction.is_some())
    {
        return (
            false,
            Some(format!(
                "statement {} ({}): {}",
                i + 1,
                st.summary(),
                st.no_transaction.unwrap_or_default()
            )),
        );
    }
    if let Some(i) = stmts.iter().position(|s| s.transaction_control) {
        return (
            false,
            Some(format!(
                "statement {} ({}): the file manages its own transactions; wrapping it would let its COMMIT end runbook's transaction early",
                i + 1,
                stmts[i].kind
            )),
        );
    }
    if let Some(why) = enum_value_used(stmts) {
        return (false, Some(why));
    }
    (true, None)
}

/// The statement that `tool`, which runs the script in a transaction (as
/// it runs every `unit`), would fail there; `fix` says how the file asks
/// it not to. runbook would run such a script statement by statement of
/// its own accord, so a rehearsal would pass what the tool fails: refused.
fn fails_in_transaction(
    s: &Script,
    tool: &'static str,
    unit: &'static str,
    fix: &'static str,
) -> Option<LoadError> {
    if s.no_transaction.is_some() {
        return None;
    }
    let stmts = crate::pg::statements::split(&s.sql);
    if stmts.iter().any(|st| st.transaction_control) {
        return None;
    }
    let refused = |offset: usize, statement: String, why: String| LoadError::InTransaction {
        at: s.locate(offset),
        tool,
        unit,
        statement,
        why,
        fix,
    };
    if let Some(why) = enum_value_used(&stmts) {
        let alter = stmts
            .iter()
            .find(|st| st.text.to_ascii_uppercase().starts_with("ALTER TYPE"))
            .map_or(0, |st| st.offset);
        return Some(refused(alter, "ALTER TYPE ... ADD VALUE".into(), why));
    }
    let st = stmts.iter().find(|st| st.no_transaction.is_some())?;
    Some(refused(
        st.offset,
        st.summary(),
        st.no_transaction.unwrap_or_default().to_string(),
    ))
}

/// `ALTER TYPE ... ADD VALUE 'v'` followed by a statement that uses `'v'`:
/// a new enum value cannot be used in the transaction that added it.
fn enum_value_used(stmts: &[Statement]) -> Option<String> {
    for (i, st) in stmts.iter().enumerate() {
        let upper = st.text.to_ascii_uppercase();
        if !upper.trim_start().starts_with("ALTER TYPE") {
            continue;
        }
        let Some(at) = upper.find("ADD VALUE") else {
            continue;
        };
        let rest = &st.text[at + "ADD VALUE".len()..];
        let Some(open) = rest.find('\'') else {
            continue;
        };
        let Some(len) = rest[open + 1..].find('\'') else {
            continue;
        };
        let quoted = &rest[open..open + len + 2];
        // Another `ALTER TYPE` naming it (adding it to a second type,
        // `ADD VALUE 'x' AFTER` it, renaming it) does not use the value:
        // Hatchet adds one label to three types in one script.
        let uses = |s: &Statement| {
            !s.text
                .trim_start()
                .to_ascii_uppercase()
                .starts_with("ALTER TYPE")
                && s.text.contains(quoted)
        };
        if let Some(j) = stmts[i + 1..].iter().position(uses) {
            return Some(format!(
                "statement {} adds the enum value {quoted} and statement {} uses it; a new enum value cannot be used in the transaction that adds it",
                i + 1,
                i + j + 2
            ));
        }
    }
    None
}

/// A migrate step's `to:`, as written or rendered: `latest`, a version
/// (the leading digits of a file name), or, going down, `before_run`.
/// The error is a label and a hint.
pub fn check_target(
    to: &str,
    direction: crate::model::Direction,
) -> Result<(), (&'static str, &'static str)> {
    // A number, or Flyway's dotted one (`1.10`).
    let version = to
        .split('.')
        .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()));
    match (to, direction) {
        ("latest", _) => Ok(()),
        ("before_run", crate::model::Direction::Down) => Ok(()),
        ("before_run", crate::model::Direction::Up) => Err((
            "`before_run` undoes, so it goes down",
            "use `direction: down` with `to: before_run`",
        )),
        _ if version => Ok(()),
        _ => Err((
            "expected `latest`, `before_run` (going down) or a version number",
            "a version is the leading digits of a migration's file name (dotted, such as 1.10, for Flyway)",
        )),
    }
}

/// A migrate step's `steps:`, as written or rendered: a whole number, 1 or
/// more. The error says what is wrong with it.
pub fn parse_steps(n: &str) -> Result<u32, &'static str> {
    match n.trim().parse::<u32>() {
        Ok(0) => Err("is zero: it would do nothing"),
        Ok(n) => Ok(n),
        Err(_) => Err("is not a whole number"),
    }
}

/// For tests: `files` (a path, its text) written under a new temporary
/// directory, with the directories they need.
#[cfg(test)]
pub(crate) fn temp_tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = d.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_step_counts_are_what_migrate_accepts() {
        use crate::model::Direction::{Down, Up};
        for (to, dir, ok) in [
            ("latest", Up, true),
            ("0042", Up, true),
            ("0", Down, true),
            ("before_run", Down, true),
            ("before_run", Up, false),
            ("v2", Up, false),
            ("1.10", Down, true),
            ("1.", Down, false),
            ("1..2", Down, false),
            ("", Down, false),
        ] {
            assert_eq!(check_target(to, dir).is_ok(), ok, "{to} {dir:?}");
        }
        assert_eq!(parse_steps(" 3 "), Ok(3));
        assert!(parse_steps("0").is_err());
        assert!(parse_steps("-1").is_err());
        assert!(parse_steps("abc").is_err());
    }

    #[test]
    fn diesel_directories_run_in_diesels_order_with_their_metadata() {
        let no_down = "-- This file should undo anything in `up.sql`\n";
        let d = dir_with(&[
            ("00000000000000_diesel_initial_setup/up.sql", "SELECT 0;"),
            ("00000000000000_diesel_initial_setup/down.sql", "SELECT -0;"),
            ("2026-05-27-120000_later/up.sql", "SELECT 3;"),
            ("2026-05-27-120000_later/down.sql", no_down),
            ("2025-11-19-091444-0000_suffixed/up.sql", "SELECT 2;"),
            ("2025-11-19-091444-0000_suffixed/down.sql", "SELECT -2;"),
            (
                "2025-11-19-091444-0000_suffixed/metadata.toml",
                "run_in_transaction = false\n",
            ),
            ("20140924113530_dumped/up.sql", "SELECT 1;"),
            // A key left out is false, as Diesel's serde default reads it.
            ("20140924113530_dumped/metadata.toml", "# nothing\n"),
            ("2026-06-01-000000_broken_toml/up.sql", "SELECT 4;"),
            (
                "2026-06-01-000000_broken_toml/metadata.toml",
                "run_in_transaction = ",
            ),
            ("README.md", "not a migration"),
        ]);
        let set = load(d.path(), None).unwrap();
        assert_eq!(set.format, Format::Diesel);
        let got: Vec<(&str, &str, bool, bool)> = set
            .migrations
            .iter()
            .map(|m| {
                (
                    m.version.as_str(),
                    m.name.as_str(),
                    m.up.no_transaction.is_some(),
                    m.down_script().is_some(),
                )
            })
            .collect();
        // As text: the 18-digit version comes before the later 14-digit one.
        assert_eq!(
            got,
            [
                ("00000000000000", "diesel_initial_setup", false, true),
                ("20140924113530", "dumped", true, false),
                ("202511190914440000", "suffixed", true, true),
                ("20260527120000", "later", false, false),
                ("20260601000000", "broken_toml", false, false),
            ]
        );
        assert_eq!(
            set.cmp("202511190914440000", "20260527120000"),
            std::cmp::Ordering::Less
        );
        assert!(
            set.migrations[3]
                .down_missing()
                .unwrap()
                .contains("holds only comments"),
            "{:?}",
            set.migrations[3].down
        );
        assert!(
            set.warnings
                .iter()
                .any(|w| w.contains("2026-06-01-000000_broken_toml/metadata.toml")),
            "{:?}",
            set.warnings
        );
        let m = &set.migrations[2];
        let (in_tx, why) = script_mode(&m.up, &crate::pg::statements::split(&m.up.sql));
        assert!(!in_tx);
        assert_eq!(
            why.unwrap(),
            "2025-11-19-091444-0000_suffixed/metadata.toml sets run_in_transaction = false"
        );

        // Two directories of one version: Diesel would run one of them.
        let d = dir_with(&[
            ("2024-01-01-000000_a/up.sql", "SELECT 1;"),
            ("20240101000000_b/up.sql", "SELECT 2;"),
        ]);
        let e = load(d.path(), None).unwrap_err();
        assert!(
            matches!(&e, LoadError::SharedVersion { version, .. } if version == "20240101000000"),
            "{e}"
        );
        assert_eq!(load_tolerant(d.path()).unwrap().migrations.len(), 1);
        // Prisma's directories beside Diesel's: which one is meant?
        let d = dir_with(&[
            ("20240101000000_a/up.sql", "SELECT 1;"),
            ("20240102000000_b/migration.sql", "SELECT 2;"),
        ]);
        assert!(matches!(
            load(d.path(), None),
            Err(LoadError::MixedFormats { .. })
        ));
    }

    #[test]
    fn a_tern_file_is_split_at_its_separator_and_never_runs_its_down_as_up() {
        let d = dir_with(&[
            (
                "001_rooms.sql",
                "CREATE TABLE rooms (id int);\n\n---- create above / drop below ----\n\nDROP TABLE rooms;\n",
            ),
            (
                "002_index.sql",
                "---- tern: disable-tx ----\nCREATE INDEX CONCURRENTLY r ON rooms (id);\n---- create above / drop below ----\nDROP INDEX r;\n",
            ),
            // No separator: tern cannot roll it back.
            ("003_drop.sql", "DROP TABLE rooms;\n"),
        ]);
        let set = load(d.path(), None).unwrap();
        assert_eq!(set.format, Format::Tern);
        let m = &set.migrations[0];
        assert!(!m.up.sql.contains("DROP"), "{}", m.up.sql);
        let down = m.down_script().unwrap();
        assert!(down.sql.contains("DROP TABLE rooms"));
        // The down's statement is found on its own line of the file.
        let at = down.sql.find("DROP").unwrap();
        assert_eq!(down.locate(at), "001_rooms.sql:5");
        let m = &set.migrations[1];
        assert!(m.up.no_transaction.is_some() && m.down_script().unwrap().no_transaction.is_none());
        assert!(
            set.migrations[2]
                .down_missing()
                .unwrap()
                .contains("has no `---- create above / drop below ----` line")
        );

        // A gap, or a template, is refused: tern would refuse it too.
        let d = dir_with(&[
            (
                "1_a.sql",
                "SELECT 1;\n---- create above / drop below ----\n",
            ),
            ("3_c.sql", "SELECT 3;\n"),
        ]);
        let e = load(d.path(), None).unwrap_err();
        assert!(matches!(&e, LoadError::TernSequence { want: 2, .. }), "{e}");
        let d = dir_with(&[(
            "1_a.sql",
            "GRANT SELECT ON t TO {{.app_user}};\n---- create above / drop below ----\n",
        )]);
        let e = load(d.path(), None).unwrap_err();
        assert!(matches!(&e, LoadError::TernTemplate { line: 1, .. }), "{e}");
    }

    #[test]
    fn another_tools_down_is_never_read_as_a_plain_up() {
        for (files, tool) in [
            (
                vec![
                    ("001.do.sql", "CREATE TABLE t (id int);"),
                    ("001.undo.sql", "DROP TABLE t;"),
                ],
                "Postgrator",
            ),
            (
                vec![
                    ("0001.create.sql", "CREATE TABLE t (id int);"),
                    ("0001.create.rollback.sql", "DROP TABLE t;"),
                ],
                "yoyo",
            ),
            (
                vec![(
                    "1700000000000_create.sql",
                    "-- Up Migration\nCREATE TABLE t (id int);\n-- Down Migration\nDROP TABLE t;\n",
                )],
                "node-pg-migrate",
            ),
            (
                vec![(
                    "1_create.sql",
                    "-- ==== UP ====\nCREATE TABLE t (id int);\n-- ==== DOWN ====\nDROP TABLE t;\n",
                )],
                "shmig",
            ),
        ] {
            let d = dir_with(&files);
            // node-pg-migrate's sections and Postgrator's undo files are read
            // as such unless `plain` is said.
            let format = matches!(tool, "node-pg-migrate" | "Postgrator").then_some(Format::Plain);
            let e = load(d.path(), format).unwrap_err();
            assert!(
                matches!(&e, LoadError::ForeignDown { tool: t, .. } if *t == tool),
                "{tool}: {e}"
            );
        }
        // A comment that merely mentions a down migration is not one.
        let d = dir_with(&[(
            "1_a.sql",
            "-- the down migration is in the runbook; this is not a\n-- down migration file.\nSELECT 1;\n-- Up migration notes: none\nSELECT 2;\n",
        )]);
        let set = load(d.path(), None).unwrap();
        assert_eq!(set.format, Format::Plain);
        assert!(set.migrations[0].up.sql.contains("SELECT 1;"));
    }

    #[test]
    fn node_pg_migrate_sql_files_are_read_by_its_section_lines() {
        let d = dir_with(&[
            (
                "1700000000000_users.sql",
                "-- Up Migration\nCREATE TABLE users (id int);\n\n---- down migration\nDROP TABLE users;\n",
            ),
            // Neither line: all up, no down.
            ("1700000000001_seed.sql", "INSERT INTO users VALUES (1);\n"),
        ]);
        let set = load(d.path(), None).unwrap();
        assert_eq!(set.format, Format::NodePgMigrate);
        let m = &set.migrations[0];
        assert!(!m.up.sql.contains("DROP"), "{}", m.up.sql);
        assert!(m.down_script().unwrap().sql.contains("DROP TABLE users"));
        assert!(set.migrations[1].up.sql.contains("INSERT"));
        assert!(
            set.migrations[1]
                .down_missing()
                .unwrap()
                .contains("no `-- Down Migration` line")
        );
        // A down line with no up line: node-pg-migrate would run the whole
        // file, down included, as the up.
        let d = dir_with(&[(
            "1700000000000_users.sql",
            "CREATE TABLE users (id int);\n-- Down Migration\nDROP TABLE users;\n",
        )]);
        assert!(matches!(load(d.path(), None), Err(LoadError::NoUp { .. })));
        // JavaScript migrations beside the SQL ones cannot be run here.
        let d = dir_with(&[
            (
                "1700000000000_users.sql",
                "-- Up Migration\nCREATE TABLE users (id int);\n",
            ),
            ("1700000000001_backfill.js", "exports.up = (pgm) => {};\n"),
        ]);
        let e = load(d.path(), None).unwrap_err();
        assert!(
            matches!(&e, LoadError::CodeMigration { file, .. } if file == "1700000000001_backfill.js"),
            "{e}"
        );
    }

    #[test]
    fn postgrator_files_pair_do_with_undo_and_refuse_what_postgrator_refuses() {
        let d = dir_with(&[
            ("001.do.sql", "CREATE TABLE person (name text);"),
            ("001.undo.sql", "DROP TABLE person;"),
            (
                "002.do.some-description.sql",
                "INSERT INTO person VALUES ('fred');",
            ),
            ("002.undo.some-description.sql", "DELETE FROM person;"),
            ("003.do.sql", "ALTER TABLE person ADD COLUMN age int;"),
            // Not a migration: no version.
            ("create.sql", "this file is never run"),
        ]);
        let set = load(d.path(), None).unwrap();
        assert_eq!(set.format, Format::Postgrator);
        let got: Vec<(&str, &str, bool)> = set
            .migrations
            .iter()
            .map(|m| {
                (
                    m.version.as_str(),
                    m.name.as_str(),
                    m.down_script().is_some(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("001", "", true),
                ("002", "some-description", true),
                ("003", "", false)
            ]
        );
        assert_eq!(
            set.migrations[1].down_script().unwrap().file,
            "002.undo.some-description.sql"
        );
        // Postgrator's checksum is the file's MD5, hex.
        assert_eq!(
            postgrator_checksum("abc"),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        for (files, want) in [
            (
                vec![("002.do.a.sql", "SELECT 1;"), ("002.do.b.sql", "SELECT 2;")],
                "are both Postgrator's version 002",
            ),
            (
                vec![("001.do.sql", "SELECT 1;"), ("002.do.cjs", "x")],
                "002.do.cjs is a Postgrator migration in JavaScript",
            ),
            (
                vec![("001.do.sql", "SELECT 1;"), ("002.undo.sql", "SELECT 2;")],
                "002.undo.sql is a down migration with no up",
            ),
        ] {
            let d = dir_with(&files);
            let e = load(d.path(), None).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn a_drizzle_folder_is_its_journal() {
        let journal = r#"{"entries": [
            {"idx": 0, "when": 1700000000000, "tag": "0000_init"},
            {"idx": 1, "when": 1700000001000, "tag": "0001_add"}
        ]}"#;
        let d = dir_with(&[
            ("meta/_journal.json", journal),
            ("0000_init.sql", "SELECT 0;"),
            ("0001_add.sql", "SELECT 1;"),
            ("0002_stray.sql", "SELECT 2;"),
        ]);
        let set = load(d.path(), None).unwrap();
        assert_eq!(set.format, Format::Drizzle);
        let got: Vec<(&str, &str, Option<i64>, bool)> = set
            .migrations
            .iter()
            .map(|m| {
                (
                    m.version.as_str(),
                    m.name.as_str(),
                    m.created_ms,
                    m.forward_only(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("0000", "init", Some(1700000000000), true),
                ("0001", "add", Some(1700000001000), true)
            ]
        );
        assert!(
            set.warnings[0].contains("0002_stray.sql is not in meta/_journal.json"),
            "{:?}",
            set.warnings
        );
        // A file the journal lists and the folder lacks: Drizzle stops there.
        std::fs::remove_file(d.path().join("0001_add.sql")).unwrap();
        let e = load(d.path(), None).unwrap_err();
        assert!(
            matches!(&e, LoadError::JournalFile { file, .. } if file == "0001_add.sql"),
            "{e}"
        );
        std::fs::write(d.path().join("meta/_journal.json"), "{").unwrap();
        assert!(matches!(
            load(d.path(), None),
            Err(LoadError::Unreadable { .. })
        ));
    }

    #[test]
    fn sqlx_files_that_start_with_its_marker_run_outside_a_transaction() {
        let marked = "-- no-transaction\nUPDATE t SET a = 1;\n";
        let d = dir_with(&[
            ("1_a.sql", marked),
            ("2_b.sql", "-- a comment\n-- no-transaction\nSELECT 1;\n"),
        ]);
        let set = load(d.path(), None).unwrap();
        let modes: Vec<bool> = set
            .migrations
            .iter()
            .map(|m| m.up.no_transaction.is_some())
            .collect();
        // Only as the file's first line, as SQLx reads it.
        assert_eq!(modes, [true, false]);
        let d = dir_with(&[("1_a.up.sql", marked), ("1_a.down.sql", marked)]);
        let set = load(d.path(), None).unwrap();
        let m = &set.migrations[0];
        assert!(m.up.no_transaction.is_some() && m.down_script().unwrap().no_transaction.is_some());
    }

    /// As Flyway scans a location: subdirectories too, each script known
    /// by its path below the directory; a version or a repeatable's
    /// description twice is refused.
    #[test]
    fn flyway_reads_subdirectories_and_refuses_what_flyway_refuses() {
        let d = dir_with(&[
            ("1.0/V1_0__init.sql", "CREATE TABLE a (id int);\n"),
            ("1.1/V1_1__more.sql", "CREATE TABLE b (id int);\n"),
            ("V1_2__top.sql", "CREATE TABLE c (id int);\n"),
            (
                "views/R__views.sql",
                "CREATE OR REPLACE VIEW v AS SELECT 1;\n",
            ),
            ("R__a_function.sql", "SELECT 1;\n"),
            (".git/V9__not_mine.sql", "SELECT 1;\n"),
            ("1.1/v1_3__lower_case.sql", "SELECT 1;\n"),
        ]);
        // A link back up is not followed (it would never end).
        std::os::unix::fs::symlink("..", d.path().join("views/up")).unwrap();
        let set = load(d.path(), None).unwrap();
        assert_eq!(set.format, Format::Flyway);
        assert_eq!(
            versions(&set),
            [("1.0", "init"), ("1.1", "more"), ("1.2", "top")]
        );
        assert_eq!(set.migrations[0].up.file, "1.0/V1_0__init.sql");
        assert_eq!(
            set.repeatables
                .iter()
                .map(|m| (m.name.as_str(), m.up.file.as_str()))
                .collect::<Vec<_>>(),
            [
                ("a function", "R__a_function.sql"),
                ("views", "views/R__views.sql")
            ]
        );
        // Flyway's prefix is case-sensitive: `v` is ignored, and said so.
        assert!(
            set.warnings
                .iter()
                .any(|w| w.contains("1.1/v1_3__lower_case.sql")),
            "{:?}",
            set.warnings
        );

        let d = dir_with(&[
            ("a/V2__x.sql", "SELECT 1;\n"),
            ("b/V2__y.sql", "SELECT 2;\n"),
        ]);
        let e = load(d.path(), None).unwrap_err().to_string();
        assert!(
            e.contains("a/V2__x.sql and b/V2__y.sql both have version 2"),
            "{e}"
        );
        let d = dir_with(&[("V1__x.sql", "SELECT 1;\n"), ("V01__y.sql", "SELECT 2;\n")]);
        assert!(load(d.path(), None).is_err(), "1 and 01 are one version");
        let d = dir_with(&[("a/R__v.sql", "SELECT 1;\n"), ("b/R__v.sql", "SELECT 2;\n")]);
        let e = load(d.path(), None).unwrap_err().to_string();
        assert!(e.contains("the repeatable description `v`"), "{e}");
    }

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (f, text) in files {
            let path = dir.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    fn versions(set: &Set) -> Vec<(&str, &str)> {
        set.migrations
            .iter()
            .map(|m| (m.version.as_str(), m.name.as_str()))
            .collect()
    }

    /// A blank down is missing under an up that does something, and the
    /// exact inverse of a blank up (a stub kept in the history).
    #[test]
    fn a_blank_down_undoes_a_blank_up() {
        let d = dir_with(&[
            ("1_stub.up.sql", "-- moved to 2_seed\n"),
            ("1_stub.down.sql", "-- nothing to undo\n"),
            ("2_seed.up.sql", "INSERT INTO t VALUES (1);"),
            ("2_seed.down.sql", "-- cannot be undone\n"),
        ]);
        let set = load(d.path(), None).unwrap();
        assert!(
            set.migrations[0].down_script().is_some(),
            "{:?}",
            set.migrations[0].down
        );
        assert_eq!(
            set.migrations[1].down,
            Down::Missing("2_seed.down.sql holds only comments".into())
        );
    }

    #[test]
    fn pairs_sort_numerically_and_pair_by_version() {
        let d = dir_with(&[
            ("10_later.up.sql", "SELECT 10;"),
            ("10_other_name.down.sql", "SELECT -10;"),
            ("2_second.up.sql", "SELECT 2;"),
            ("2_second.down.sql", "-- nothing to undo\n"),
            ("001_first.up.sql", "SELECT 1;"),
            ("001_first.down.sql", "SELECT -1;"),
            ("README.md", "not a migration"),
        ]);
        let set = load(d.path(), None).unwrap();
        assert_eq!(set.format, Format::Pairs);
        assert_eq!(
            versions(&set),
            [("001", "first"), ("2", "second"), ("10", "later")]
        );
        assert_eq!(
            set.migrations[1].down,
            Down::Missing("2_second.down.sql holds only comments".into())
        );
        assert!(set.migrations[2].down_script().is_some());
        assert_eq!(set.warnings.len(), 1, "{:?}", set.warnings);
        assert!(set.warnings[0].contains("10_other_name.down.sql"));
        assert_eq!(
            set.migrations[0].checksum,
            crate::hash::sha256_hex(b"SELECT 1;")
        );
    }

    #[test]
    fn a_down_without_its_up_is_refused() {
        let d = dir_with(&[("1_a.up.sql", "SELECT 1;"), ("2_b.down.sql", "SELECT 1;")]);
        let e = load(d.path(), None).unwrap_err();
        assert_eq!(
            e,
            LoadError::DownWithoutUp {
                down: "2_b.down.sql".into(),
                of: "version 2".into()
            }
        );
    }

    #[test]
    fn dbmate_sections_and_transaction_flag() {
        let d = dir_with(&[(
            "20240101_add.sql",
            "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON t (a);\n\n-- migrate:down\nDROP INDEX i;\n",
        )]);
        let set = load(d.path(), None).unwrap();
        assert_eq!(set.format, Format::Dbmate);
        let m = &set.migrations[0];
        assert!(m.up.no_transaction.is_some());
        assert_eq!(m.up.first_line, 2);
        assert_eq!(m.up.sql, "CREATE INDEX CONCURRENTLY i ON t (a);\n\n");
        let down = m.down_script().unwrap();
        assert_eq!(
            (
                down.sql.as_str(),
                down.first_line,
                down.no_transaction.is_some()
            ),
            ("DROP INDEX i;\n", 5, false)
        );
        assert_eq!(down.locate(0), "20240101_add.sql:5");
    }

    #[test]
    fn sql_migrate_and_goose_markers() {
        let d = dir_with(&[(
            "1_a.sql",
            "-- +migrate Up notransaction\nCREATE INDEX CONCURRENTLY i ON t (a);\n-- +migrate Down\nDROP INDEX i;\n",
        )]);
        let set = load(d.path(), None).unwrap();
        assert_eq!(set.format, Format::SqlMigrate);
        assert!(set.migrations[0].up.no_transaction.is_some());
        assert!(
            set.migrations[0]
                .down_script()
                .unwrap()
                .no_transaction
                .is_none()
        );

        let d = dir_with(&[(
            "00001_f.sql",
            "-- +goose NO TRANSACTION\n-- +goose Up\n-- +goose StatementBegin\nCREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;\n-- +goose StatementEnd\n",
        )]);
        let set = load(d.path(), None).unwrap();
        assert_eq!(set.format, Format::Goose);
        let m = &set.migrations[0];
        assert!(m.up.no_transaction.is_some());
        assert_eq!(
            m.down,
            Down::Missing("00001_f.sql has no down section".into())
        );
        assert_eq!(crate::pg::statements::split(&m.up.sql).len(), 1);
    }

    #[test]
    fn goose_cuts_its_sections_as_goose_does() {
        let file = "00003_f.sql";
        let body = "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$\nBEGIN\n  RETURN 1;\nEND\n$$;\n";
        let load_one = |text: &str| load(dir_with(&[(file, text)]).path(), None);
        // A `;` at the end of a line inside a function body: goose sends
        // the halves apart.
        assert_eq!(
            load_one(&format!("-- +goose Up\n{body}")).unwrap_err(),
            LoadError::GooseCut {
                file: file.into(),
                line: 4,
                missing: false
            }
        );
        // Between StatementBegin and StatementEnd it is one statement.
        let wrapped = format!(
            "-- +goose Up\n-- +goose StatementBegin\n{body}-- +goose StatementEnd\nSELECT 1; -- done\n-- +goose Down\nDROP FUNCTION f;\n"
        );
        assert_eq!(load_one(&wrapped).unwrap().migrations.len(), 1);
        // goose refuses a statement with no `;` on its last line.
        let e =
            load_one("-- +goose Up\nCREATE TABLE a (id int)\n\n-- +goose Down\nDROP TABLE a;\n")
                .unwrap_err();
        assert_eq!(
            e,
            LoadError::GooseCut {
                file: file.into(),
                line: 2,
                missing: true
            }
        );
        assert!(e.hint().unwrap().contains("end the statement with `;`"));
    }

    #[test]
    fn goose_go_migrations_keep_their_places_and_substituted_variables_are_refused() {
        // As Hatchet keeps them: Go migrations among the SQL ones, which
        // goose runs in version order with the rest. Each is kept in its
        // place, as Flyway's Java ones are; a helper and a test are not
        // migrations.
        let up = "-- +goose Up\nCREATE TABLE a (id int);\n";
        let d = dir_with(&[
            ("20251216190909_v1_0_61.sql", up),
            ("20251226153622_v1_0_66.go", "package migrations\n"),
            ("20260101000000_v1_0_70.sql", up),
            ("helpers.go", "package migrations\n"),
            ("20251226153622_v1_0_66_test.go", "package migrations\n"),
        ]);
        let set = load(d.path(), None).unwrap();
        assert_eq!(set.migrations.len(), 2);
        let code: Vec<_> = set
            .code_migrations
            .iter()
            .map(|c| (c.file.as_str(), c.version.as_str(), c.language, c.tool))
            .collect();
        assert_eq!(
            code,
            [(
                "20251226153622_v1_0_66.go",
                "20251226153622",
                "Go",
                CodeTool::Goose
            )]
        );
        assert_eq!(set.code_migrations[0].description, "v1_0_66");

        // With ENVSUB ON, goose replaces `$NAME` and `${NAME}` from its
        // environment, before or after the Up line, in either section; a
        // comment line, or a `$` after ENVSUB OFF, changes nothing.
        let file = "00002_owner.sql";
        let text = |body: &str| format!("-- +goose ENVSUB ON\n-- +goose Up\n{body}");
        for (body, line) in [
            (
                "CREATE TABLE c (id int);\nALTER TABLE c OWNER TO $APP_USER;\n",
                4,
            ),
            (
                "CREATE TABLE c (id int);\n-- +goose Down\nDROP TABLE ${PREFIX}c;\n",
                5,
            ),
            (
                "-- +goose StatementBegin\nCREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n-- +goose StatementEnd\n",
                4,
            ),
        ] {
            let d = dir_with(&[(file, &text(body))]);
            assert_eq!(
                load(d.path(), None).unwrap_err(),
                LoadError::GooseEnvsub {
                    file: file.into(),
                    line
                },
                "{body}"
            );
            let set = load_tolerant(d.path()).unwrap();
            assert!(set.migrations.is_empty());
            assert!(set.warnings[0].contains("ENVSUB ON"), "{:?}", set.warnings);
        }
        for body in [
            "-- owned by $APP_USER\nCREATE TABLE c (id int);\n",
            "-- +goose ENVSUB OFF\nCREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n",
        ] {
            let d = dir_with(&[(file, &text(body))]);
            assert_eq!(load(d.path(), None).unwrap().migrations.len(), 1, "{body}");
        }
        let d = dir_with(&[(
            file,
            "-- +goose Up\nCREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n",
        )]);
        assert_eq!(load(d.path(), None).unwrap().migrations.len(), 1);
    }

    #[test]
    fn sql_migrate_gathers_repeated_sections_and_goose_refuses_them() {
        // As Convoy writes them: sections switch back and forth, and one
        // `notransaction` holds for its whole direction.
        let text = "-- +migrate Up\nCREATE TABLE a (id int);\n-- +migrate Down\nDROP TABLE a;\n\
                    -- +migrate Up notransaction\nCREATE INDEX CONCURRENTLY a_id ON a (id);\n\
                    -- +migrate Down\nDROP INDEX CONCURRENTLY a_id;\n";
        let d = dir_with(&[("1677078479.sql", text)]);
        let set = load(d.path(), None).unwrap();
        assert_eq!(set.format, Format::SqlMigrate);
        let m = &set.migrations[0];
        assert!(m.up.no_transaction.is_some());
        assert_eq!(m.up.first_line, 2);
        // The lines between are blanked, not removed: an offset in the
        // section is one in the file, and a location its line.
        let blank = |l: &str| " ".repeat(l.len());
        assert_eq!(
            m.up.sql,
            format!(
                "CREATE TABLE a (id int);\n{}\n{}\n{}\nCREATE INDEX CONCURRENTLY a_id ON a (id);\n",
                blank("-- +migrate Down"),
                blank("DROP TABLE a;"),
                blank("-- +migrate Up notransaction")
            )
        );
        let at = m.up.sql.find("CREATE INDEX").unwrap();
        assert_eq!(m.up.locate(at), "1677078479.sql:6");
        assert_eq!(
            &text[text.find('\n').unwrap() + 1..][at..at + 12],
            "CREATE INDEX"
        );
        let down = m.down_script().unwrap();
        assert!(down.no_transaction.is_none(), "no down section is marked");
        assert!(
            down.sql.starts_with("DROP TABLE a;\n")
                && down.sql.ends_with("\nDROP INDEX CONCURRENTLY a_id;\n")
        );
        assert_eq!(
            down.locate(down.sql.find("DROP INDEX").unwrap()),
            "1677078479.sql:8"
        );

        let d = dir_with(&[(
            "00001_a.sql",
            "-- +goose Up\nSELECT 1;\n-- +goose Down\nSELECT 2;\n-- +goose Up\nSELECT 3;\n",
        )]);
        let err = load(d.path(), None).unwrap_err().to_string();
        assert_eq!(err, "00001_a.sql:5: a second up section");
        // dbmate 2.29+ reads several sections, and loses all but the first.
        let d = dir_with(&[(
            "20250101000000_a.sql",
            "-- migrate:up\nCREATE TABLE t1 (a int);\n-- migrate:down\nDROP TABLE t1;\n-- migrate:up\nCREATE TABLE t2 (b int);\n-- migrate:down\nDROP TABLE t2;\n",
        )]);
        let e = load(d.path(), None).unwrap_err();
        assert_eq!(e.to_string(), "20250101000000_a.sql:5: a second up section");
        assert!(e.hint().unwrap().contains("dbmate#820"), "{:?}", e.hint());
        // Named by its number alone, a migration is shown by it alone.
        assert_eq!(labeled("1677078479", ""), "1677078479");
        assert_eq!(labeled("3", "add_users"), "3 (add_users)");
    }

    #[test]
    fn a_popx_file_with_a_go_template_is_refused_before_anything_runs() {
        let d = dir_with(&[
            (
                "1_a.postgres.up.sql",
                "CREATE TABLE a (note text DEFAULT '{{ not a template }}');",
            ),
            ("1_a.postgres.down.sql", "DROP TABLE a;"),
            (
                "2_b.postgres.up.sql",
                "-- {{ in a comment }}\nCREATE TABLE {{ index .Options \"Namespace\" }}.users (id uuid);",
            ),
        ]);
        let err = load(d.path(), None).unwrap_err().to_string();
        assert!(
            err.starts_with("2_b.postgres.up.sql:2: a Go template"),
            "{err}"
        );
        std::fs::remove_file(d.path().join("2_b.postgres.up.sql")).unwrap();
        let set = load(d.path(), None).unwrap();
        assert_eq!(set.format, Format::Popx);
    }

    #[test]
    fn forward_only_formats_and_the_marker() {
        let d = dir_with(&[
            ("2_b.sql", "-- runbook:no-transaction\nVACUUM t;"),
            ("1_a.sql", "CREATE TABLE t (a int);"),
        ]);
        let set = load(d.path(), None).unwrap();
        assert_eq!(set.format, Format::Plain);
        assert_eq!(versions(&set), [("1", "a"), ("2", "b")]);
        assert!(
            set.migrations[1].up.no_transaction.is_some()
                && set.migrations[0].up.no_transaction.is_none()
        );
        assert_eq!(set.migrations[0].down, Down::Unavailable);

        let d = dir_with(&[("20240101_init/migration.sql", "CREATE TABLE t (a int);")]);
        let set = load(d.path(), None).unwrap();
        assert_eq!(set.format, Format::Prisma);
        assert_eq!(set.migrations[0].up.file, "20240101_init/migration.sql");
    }

    #[test]
    fn shared_numbers_are_known_by_file_name_in_file_name_order() {
        let d = dir_with(&[
            ("1_c.sql", "SELECT 3;"),
            ("01_b.sql", "SELECT 2;"),
            ("1_a.sql", "SELECT 1;"),
            ("2_d.sql", "SELECT 4;"),
        ]);
        let set = load(d.path(), None).unwrap();
        assert_eq!(
            versions(&set),
            [("01_b", "b"), ("1_a", "a"), ("1_c", "c"), ("2", "d")]
        );
        assert!(
            set.warnings[0].contains("version(s) 1 are shared"),
            "{:?}",
            set.warnings
        );
    }

    #[test]
    fn pairs_that_reuse_a_number_pair_by_name() {
        let d = dir_with(&[
            ("000012_a.up.sql", "CREATE TABLE a ();"),
            ("000012_a.down.sql", "DROP TABLE a;"),
            ("000012_b.up.sql", "CREATE TABLE b ();"),
            ("000012_b.down.sql", "DROP TABLE b;"),
            ("000013_c.up.sql", "SELECT 1;"),
        ]);
        let set = load(d.path(), None).unwrap();
        assert_eq!(
            versions(&set),
            [("000012_a", "a"), ("000012_b", "b"), ("000013", "c")]
        );
        assert_eq!(
            set.migrations[1].down_script().unwrap().file,
            "000012_b.down.sql"
        );
        let d = dir_with(&[
            ("1_a.up.sql", "SELECT 1;"),
            ("1_b.down.sql", "SELECT 1;"),
            ("1_c.down.sql", "SELECT 1;"),
        ]);
        let e = load(d.path(), None).unwrap_err();
        assert!(e.to_string().contains("pairs with no up"), "{e}");
    }

    #[test]
    fn popx_picks_the_postgres_file_and_ignores_other_dialects() {
        let d = dir_with(&[
            (
                "20190100000001000000_ids.up.sql",
                "CREATE TABLE generic ();",
            ),
            (
                "20190100000001000000_ids.postgres.up.sql",
                "CREATE TABLE pg ();",
            ),
            (
                "20190100000001000000_ids.sqlite3.up.sql",
                "CREATE TABLE lite ();",
            ),
            ("20190100000001000000_ids.down.sql", ""),
            (
                "20190100000002000000_idx.postgres.autocommit.up.sql",
                "CREATE INDEX CONCURRENTLY i ON pg (x);",
            ),
            (
                "20190100000002000000_idx.mysql.up.sql",
                "CREATE INDEX i ON pg (x);",
            ),
            ("20190100000003000000_only_mysql.mysql.up.sql", "SELECT 1;"),
        ]);
        let set = load(d.path(), None).unwrap();
        assert_eq!(set.format, Format::Popx);
        assert_eq!(
            versions(&set),
            [
                ("20190100000001000000", "ids"),
                ("20190100000002000000", "idx")
            ]
        );
        let ids = &set.migrations[0];
        assert_eq!(ids.up.sql, "CREATE TABLE pg ();");
        // An empty down is a no-op that pop runs, not a missing one.
        assert_eq!(ids.down_script().unwrap().sql, "");
        assert!(set.migrations[1].up.no_transaction.is_some());
        assert!(set.migrations[1].down_script().is_none());
    }

    #[test]
    fn versions_compare_as_numbers_then_names() {
        use std::cmp::Ordering::*;
        assert_eq!(version_cmp("0003", "3"), Less);
        assert_eq!(version_cmp("12_a", "13"), Less);
        assert_eq!(version_cmp("12_a", "12_b"), Less);
        assert_eq!(version_cmp("9", "10"), Less);
    }

    #[test]
    fn mixed_and_duplicate_versions_are_refused() {
        let d = dir_with(&[
            ("1_a.sql", "-- migrate:up\nSELECT 1;"),
            ("2_b.sql", "-- +goose Up\nSELECT 1;"),
        ]);
        assert!(
            load(d.path(), None)
                .unwrap_err()
                .to_string()
                .contains("mixes migration formats")
        );
        let d = dir_with(&[("1_a.sql", "SELECT 1;"), ("1_a.up.sql", "SELECT 1;")]);
        assert!(load(d.path(), Some(Format::Plain)).is_err() || load(d.path(), None).is_ok());
        let d = dir_with(&[("1_a.sql", "SELECT 1;")]);
        assert!(
            load(d.path(), Some(Format::Dbmate))
                .unwrap_err()
                .to_string()
                .contains("no up section")
        );
    }
}
