//! The command line: argument parsing and the mapping of outcomes to exit
//! codes. Everything else lives in the library stages.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::exit;
use crate::plan;
use crate::report::progress::Mode;
use crate::run::RunArgs;
use crate::validate::{self, Inputs, ParamCheck};

#[derive(Debug, Parser)]
#[command(
    name = "runbook",
    version,
    about = "Safe, rehearsable PostgreSQL releases from versioned YAML runbooks",
    after_help = "Exit codes: 0 ok, 1 preflight failed, 2 rolled back, 3 verification failed, \
                  4 rollback failed, 5 invalid input, 6 not approved, 130 interrupted \
                  (docs/exit-codes.md)."
)]
struct Cli {
    /// When to color diagnostics.
    #[arg(long, value_enum, default_value_t = Color::Auto, global = true)]
    color: Color,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, Args)]
struct ParamArgs {
    /// Set a param: NAME=VALUE (repeatable). Beats --params-file and defaults.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// A YAML file of param values. Beats the runbook's defaults.
    #[arg(long, value_name = "FILE")]
    params_file: Option<PathBuf>,
}

impl ParamArgs {
    fn inputs(&self) -> Inputs {
        Inputs {
            set: self.set.clone(),
            params_file: self.params_file.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Check runbooks against the schema and the semantic rules. Never connects.
    Validate {
        /// Runbook files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        params: ParamArgs,
    },
    /// Render every template and print the ordered plan. Never connects.
    Plan {
        /// The runbook file.
        file: PathBuf,
        #[command(flatten)]
        params: ParamArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Run a runbook against a database, with rollback, progress and reports.
    Exec(Box<ExecArgs>),
    /// Approve a phase ahead of time: write an approval file bound to this
    /// runbook's text and params, for `exec --approval FILE`. Never connects.
    Approve {
        /// The runbook file.
        file: PathBuf,
        /// The phase whose gate this approves.
        #[arg(long, value_name = "PHASE")]
        phase: String,
        /// Who approves (default: $GITHUB_ACTOR, else the local user).
        #[arg(long = "as", value_name = "NAME")]
        approver: Option<String>,
        /// Where to write it. Default: <runbook-name>.<phase>.<who>.approval.json.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        params: ParamArgs,
    },
    /// Go on with a run whose runner died (killed, or its machine lost), from
    /// the run journal in the database: finished steps are not run again.
    Resume {
        #[command(flatten)]
        args: Box<EarlierArgs>,
        /// What to do with a step the runner died in that is not one
        /// transaction (asked at a terminal when not given).
        #[arg(long, value_enum)]
        partial: Option<PartialArg>,
    },
    /// Undo an earlier run: run the compensations it registered and did not
    /// run, newest first, then check the schema against before that run.
    Rollback(Box<EarlierArgs>),
    /// The run journal: what ran against a database, from any machine.
    Runs {
        #[command(subcommand)]
        command: RunsCmd,
    },
    /// Inspect backups that backup steps took.
    Backups {
        #[command(subcommand)]
        command: BackupsCmd,
    },
    /// Print the JSON Schema of the runbook format (or, with --report, of
    /// report.json); or snapshot and compare database schemas.
    #[command(args_conflicts_with_subcommands = true)]
    Schema {
        /// Print the schema of report.json instead.
        #[arg(long, conflicts_with_all = ["targets", "fleet_report"])]
        report: bool,
        /// Print the schema of a targets file (`exec --targets`) instead.
        #[arg(long, conflicts_with = "fleet_report")]
        targets: bool,
        /// Print the schema of a fleet's report.json instead.
        #[arg(long)]
        fleet_report: bool,
        #[command(subcommand)]
        command: Option<SchemaCmd>,
    },
    /// Lint SQL for dangerous changes (squawk's rules, told what the runner
    /// does): runbooks, migration directories and .sql files. Never connects.
    Lint(LintArgs),
    /// The state of a migration directory in a database, and repairs.
    Migrations {
        #[command(subcommand)]
        command: MigrationsCmd,
    },
    /// The databases of a targets file: which a run takes, and how they
    /// split into shards. Never connects.
    Targets {
        #[command(subcommand)]
        command: TargetsCmd,
    },
    /// Reports: draw a run's report.html again, or merge the fleet reports of a run's shards.
    Report {
        #[command(subcommand)]
        command: ReportCmd,
    },
    /// Print shell completions, such as
    /// `runbook completions bash > ~/.local/share/bash-completion/completions/runbook`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `runbook man > runbook.1; man ./runbook.1`.
    Man,
    /// Write a starting runbook from a ready one, with this project's
    /// migration directory (Prisma, Knex, golang-migrate, dbmate, goose,
    /// sql-migrate, Flyway…) found and wired in. Asks at a terminal.
    Init {
        /// The ready runbook to start from: migrate-safe, ci-rehearsal,
        /// staging-rehearsal, deploy-with-rollback, prod-migration,
        /// zero-downtime, add-column or knex-rehearsal. Default: asked at a
        /// terminal; else migrate-safe when migrations are found, add-column when not.
        #[arg(long, value_name = "NAME")]
        from: Option<String>,
        /// The migration directory, instead of looking in the usual places.
        #[arg(long, value_name = "DIR")]
        migrations: Option<PathBuf>,
        /// Where to write it.
        #[arg(short, long, value_name = "FILE", default_value = "runbook.yml")]
        output: PathBuf,
        /// A param's default in the written runbook: NAME=VALUE (repeatable).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
struct TargetsChoice {
    /// The targets file.
    #[arg(long, value_name = "FILE")]
    targets: PathBuf,
    /// Only the targets whose label KEY is one of the VALUEs (repeatable).
    #[arg(long, value_name = "KEY=VALUE[,VALUE]")]
    select: Vec<crate::fleet::targets::Selector>,
}

#[derive(Debug, Subcommand)]
enum TargetsCmd {
    /// The targets a run takes: name, connection (never a password), labels.
    List {
        #[command(flatten)]
        choice: TargetsChoice,
        /// Only shard K of N.
        #[arg(long, value_name = "K/N")]
        shard: Option<crate::fleet::targets::Shard>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print a GitHub Actions matrix of N shards (`{"include":[{"shard":"1/4",...}]}`),
    /// leaving out shards that hold no target.
    Matrix {
        #[command(flatten)]
        choice: TargetsChoice,
        /// How many shards (jobs).
        #[arg(long, value_name = "N")]
        shards: u32,
    },
}

#[derive(Debug, Subcommand)]
enum ReportCmd {
    /// Draw a run's report.html again from its report.json (a run's
    /// directory or the file): one self-contained page, nothing fetched.
    Html {
        /// The report directory, or its report.json.
        report: PathBuf,
        /// Where to write it. Default: report.html beside the report.json.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Merge the fleet reports of a run's shards (their report directories)
    /// into one. Exits with the merged run's code.
    Merge {
        /// The shards' report directories (or their report.json files).
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// Where the merged report goes.
        #[arg(long, value_name = "DIR", default_value = "runbook-reports/merged")]
        report_dir: PathBuf,
        /// Also write a JUnit XML report here: a testsuite per target.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct LintArgs {
    /// Runbook files, migration directories or .sql files.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Output format: text with carets, JSON, SARIF 2.1.0 (code
    /// scanning) or GitHub Actions annotations.
    #[arg(long, value_enum, default_value_t = LintFormat::Text)]
    format: LintFormat,
    /// Fail (exit 1) when there are more warnings than this.
    #[arg(long, value_name = "N")]
    max_warnings: Option<usize>,
    /// Also say what the runner's context changed (timeout rules silenced, templated SQL).
    #[arg(long)]
    explain: bool,
    /// Turn on a rule that is off by default (repeatable).
    #[arg(long, value_name = "RULE")]
    include: Vec<String>,
    /// Turn off a rule (repeatable).
    #[arg(long, value_name = "RULE")]
    exclude: Vec<String>,
    /// Report a rule as a warning instead of an error (repeatable).
    #[arg(long, value_name = "RULE")]
    warn: Vec<String>,
    /// The lint configuration. Default: the nearest runbook-lint.toml
    /// in the current directory or above it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LintFormat {
    Text,
    Json,
    Sarif,
    Github,
}

#[derive(Debug, Subcommand)]
enum SchemaCmd {
    /// Snapshot a database's schema from the catalog, as JSON.
    Snapshot {
        #[command(flatten)]
        target: TargetArgs,
        /// Write to this file instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Compare two snapshots object by object. Exits 0 when they are the same, 3 when they differ.
    Diff {
        /// The earlier snapshot.
        a: PathBuf,
        /// The later snapshot.
        b: PathBuf,
    },
}

/// The database a command reads (not `exec`, whose flags are its own).
#[derive(Debug, Args)]
struct TargetArgs {
    /// The database. Default: $DATABASE_URL.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// A shell command that prints the password (a short-lived one, such
    /// as an RDS IAM token); it sees the target in PGHOST, PGPORT, PGUSER
    /// and PGDATABASE.
    #[arg(long, value_name = "COMMAND", env = "RUNBOOK_PASSWORD_COMMAND")]
    password_command: Option<String>,
}

impl TargetArgs {
    fn target(&self) -> crate::commands::Target {
        crate::commands::Target {
            database_url: self.database_url.clone(),
            password_command: self.password_command.clone(),
        }
    }
}

#[derive(Debug, Args)]
struct MigrationArgs {
    /// The migration directory.
    dir: PathBuf,
    #[command(flatten)]
    target: TargetArgs,
    /// The directory's layout: auto, pairs, dbmate, sql-migrate, goose, plain, prisma, popx, flyway, sqitch, diesel, drizzle, tern, node-pg-migrate, postgrator, liquibase or atlas.
    #[arg(long, value_name = "FORMAT", default_value = "auto")]
    migration_format: String,
    /// Whose history table records the migrations: auto (detected), runbook, prisma, knex, golang-migrate, flyway, dbmate, goose, sql-migrate, popx, diesel, sqlx, drizzle, tern, node-pg-migrate, postgrator, refinery, supabase, sqitch, atlas or liquibase.
    #[arg(long, value_name = "TOOL", default_value = "auto")]
    history_format: String,
    /// The history table. Default: the tool's own (detected with auto; runbook's public.runbook_migrations when there is none).
    #[arg(long, value_name = "TABLE")]
    history_table: Option<String>,
}

impl MigrationArgs {
    fn commands(&self) -> crate::commands::Migrations<'_> {
        crate::commands::Migrations {
            target: self.target.target(),
            dir: &self.dir,
            format: &self.migration_format,
            history_format: &self.history_format,
            history_table: self.history_table.as_deref(),
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mark {
    /// Keep the migration as applied (its changes are in place).
    Applied,
    /// Remove it from the history, so it runs again (its changes are not in place).
    Pending,
}

#[derive(Debug, Subcommand)]
enum MigrationsCmd {
    /// Each migration: applied, pending, dirty or changed. Exits 3 when one is dirty or changed.
    Status {
        #[command(flatten)]
        m: MigrationArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Liquibase: the contexts the database is deployed with, as
        /// `--contexts` (a comma list): a pending changeset they do not
        /// select is `left out`, not pending.
        #[arg(long, value_name = "LIST")]
        contexts: Option<String>,
        /// Liquibase: the label filter, as `--label-filter`.
        #[arg(long, value_name = "EXPRESSION")]
        label_filter: Option<String>,
    },
    /// Clear a dirty flag after checking the schema by hand. Asks for confirmation.
    Repair {
        #[command(flatten)]
        m: MigrationArgs,
        /// The dirty version.
        #[arg(long)]
        version: String,
        /// What the migration's state is now.
        #[arg(long, value_enum, default_value_t = Mark::Applied)]
        mark: Mark,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
    /// Record every migration up to --version as applied without running
    /// it, on a database that already has them (another tool applied them).
    /// Asks for confirmation.
    Baseline {
        #[command(flatten)]
        m: MigrationArgs,
        /// The newest migration the database already has.
        #[arg(long)]
        version: String,
        /// Who is recording it (default: $GITHUB_ACTOR, else $USER).
        #[arg(long = "as", value_name = "NAME")]
        by: Option<String>,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
enum BackupsCmd {
    /// List the backups under DIR, newest first, with their state.
    List {
        /// A directory of backups, such as `backups/`.
        dir: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Re-hash a backup's files and read its archive. Exits 3 when it cannot be trusted.
    Verify {
        /// The backup's directory (or its manifest.json).
        path: PathBuf,
        /// Where pg_restore is; the only place looked at when given.
        #[arg(long, value_name = "DIR", env = "PG_BIN_DIR")]
        pg_bin_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProgressArg {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Args)]
struct ExecArgs {
    /// The runbook file.
    file: PathBuf,
    #[command(flatten)]
    params: ParamArgs,
    /// Start a throwaway local PostgreSQL, run against it, remove it afterwards.
    #[arg(long, conflicts_with_all = ["database_url", "password_command"])]
    ephemeral: bool,
    /// With --ephemeral: keep the throwaway PostgreSQL running and print its URL.
    #[arg(long, requires = "ephemeral")]
    keep: bool,
    /// With --ephemeral: the throwaway PostgreSQL accepts only TLS, with a
    /// CA of its own, and the run connects with sslmode=verify-full.
    #[arg(long, requires = "ephemeral")]
    tls: bool,
    #[command(flatten)]
    fleet: FleetFlags,
    #[command(flatten)]
    run: RunFlags,
}

fn parse_duration(s: &str) -> Result<crate::duration::Duration, String> {
    crate::duration::Duration::parse(s).map_err(|e| e.to_string())
}

/// `exec --targets FILE`: one runbook over many databases (docs/fleet.md).
#[derive(Debug, Args)]
#[command(next_help_heading = "Many databases (docs/fleet.md)")]
struct FleetFlags {
    /// Run on every database a targets file lists, in waves, with one merged report.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["ephemeral", "database_url"])]
    targets: Option<PathBuf>,
    /// Only the targets whose label KEY is one of the VALUEs (repeatable: all must match).
    #[arg(long, value_name = "KEY=VALUE[,VALUE]", requires = "targets")]
    select: Vec<crate::fleet::targets::Selector>,
    /// Only shard K of N: a stable split of the targets by name, for a CI matrix or an Indexed Job.
    #[arg(long, value_name = "K/N", requires = "targets")]
    shard: Option<crate::fleet::targets::Shard>,
    /// Only the targets that did not succeed in this earlier fleet report (its directory or report.json).
    #[arg(long, value_name = "REPORT", requires = "targets")]
    only_failed: Option<PathBuf>,
    /// How many targets run at once (beats `rollout.parallel`; default 1).
    #[arg(long, value_name = "N", requires = "targets", value_parser = clap::value_parser!(u32).range(1..))]
    parallel: Option<u32>,
    /// The first N targets run alone, first; if one fails, no other starts.
    #[arg(long, value_name = "N", requires = "targets")]
    canary: Option<u32>,
    /// Targets per wave after the canary: a count or a share such as 25%.
    #[arg(long, value_name = "N|P%", requires = "targets")]
    wave_size: Option<crate::model::Amount>,
    /// Failed targets tolerated (a count or a share); one more and no new target starts. Default 0.
    #[arg(long, value_name = "N|P%", requires = "targets")]
    max_failures: Option<crate::model::Amount>,
    /// Wait this long between waves, such as 5min.
    #[arg(long, value_name = "DURATION", requires = "targets", value_parser = parse_duration)]
    pause: Option<crate::duration::Duration>,
    /// A person approves each wave after the first (at a terminal; --yes approves them all).
    #[arg(long, requires = "targets")]
    confirm_waves: bool,
}

impl FleetFlags {
    fn args(self, targets: PathBuf) -> crate::fleet::run::FleetArgs {
        crate::fleet::run::FleetArgs {
            targets,
            select: self.select,
            shard: self.shard,
            only_failed: self.only_failed,
            rollout: crate::fleet::rollout::Flags {
                parallel: self.parallel,
                canary: self.canary,
                wave_size: self.wave_size,
                max_failures: self.max_failures,
                pause: self.pause,
                approve_waves: self.confirm_waves,
            },
        }
    }
}

/// What `exec`, `resume` and `rollback` share.
#[derive(Debug, Args)]
struct RunFlags {
    /// The target database. Beats the runbook's `database.url`, then $DATABASE_URL.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Approve the gate of this phase (repeatable).
    #[arg(long = "approve", value_name = "PHASE")]
    approve: Vec<String>,
    /// Who approves: recorded with each approval (default: $GITHUB_ACTOR,
    /// else the local user).
    #[arg(long = "as", value_name = "NAME")]
    approver: Option<String>,
    /// An approval given ahead of time by `runbook approve` (repeatable):
    /// it must match this runbook's text and params, and counts once per
    /// person at its phase's gate.
    #[arg(long = "approval", value_name = "FILE")]
    approval_files: Vec<PathBuf>,
    /// Approve every gate (for `rollback`: undo without asking).
    #[arg(long)]
    yes: bool,
    /// Where reports go. Default: runbook-reports/<name>-<run-id>/.
    #[arg(long, value_name = "DIR")]
    report_dir: Option<PathBuf>,
    /// Also write a JUnit XML report here.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Progress display: bars on a terminal, timestamped lines otherwise.
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    progress: ProgressArg,
    /// Print only the verdict.
    #[arg(short, long, conflicts_with = "verbose")]
    quiet: bool,
    /// Print the SQL and commands as they run, and every output line.
    #[arg(short, long)]
    verbose: bool,
    /// Where pg_dump and pg_restore are; the only place looked at when given.
    #[arg(long, value_name = "DIR", env = "PG_BIN_DIR")]
    pg_bin_dir: Option<PathBuf>,
    /// A shell command that prints the password, run at each login (the
    /// run's session, pg_dump, pg_restore, a reconnect): for short-lived
    /// passwords such as RDS IAM tokens. It sees the target in PGHOST,
    /// PGPORT, PGUSER and PGDATABASE.
    #[arg(long, value_name = "COMMAND", env = "RUNBOOK_PASSWORD_COMMAND")]
    password_command: Option<String>,
}

#[derive(Debug, Args)]
struct EarlierArgs {
    /// The run's id, as `runbook runs list` shows it.
    run_id: String,
    /// The runbook file. Default: the path the run recorded. It must be
    /// the same file (its sha256 is checked).
    #[arg(long, value_name = "FILE")]
    runbook: Option<PathBuf>,
    #[command(flatten)]
    params: ParamArgs,
    #[command(flatten)]
    run: RunFlags,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PartialArg {
    /// Run the interrupted step again.
    Rerun,
    /// Count it as done: you checked that it finished.
    Skip,
    /// Count it as failed part-way: its phase rolls back.
    Undo,
}

#[derive(Debug, Subcommand)]
enum RunsCmd {
    /// The newest runs recorded in the database's run journal.
    List {
        #[command(flatten)]
        target: TargetArgs,
        /// How many runs.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// One run and its steps, as the journal recorded them.
    Show {
        /// The run's id.
        run_id: String,
        #[command(flatten)]
        target: TargetArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

/// `runbook resume` and `runbook rollback`: a run about an earlier one.
fn earlier_run(a: EarlierArgs, color: bool, action: crate::run::EarlierAction) -> u8 {
    let earlier = crate::run::Earlier {
        run_id: a.run_id,
        action,
    };
    crate::run::exec(run_args(
        a.runbook.unwrap_or_default(),
        &a.params,
        a.run,
        color,
        false,
        false,
        Some(earlier),
    ))
}

fn progress_mode(quiet: bool, p: ProgressArg) -> Mode {
    match (quiet, p) {
        (true, _) => Mode::Quiet,
        (false, ProgressArg::Always) => Mode::Bars,
        (false, ProgressArg::Never) => Mode::Lines,
        (false, ProgressArg::Auto) => {
            if std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() {
                Mode::Bars
            } else {
                Mode::Lines
            }
        }
    }
}

fn run_args(
    file: PathBuf,
    params: &ParamArgs,
    r: RunFlags,
    color: bool,
    ephemeral: bool,
    keep: bool,
    earlier: Option<crate::run::Earlier>,
) -> RunArgs {
    RunArgs {
        file,
        inputs: params.inputs(),
        database_url: r.database_url,
        ephemeral,
        keep,
        approve: r.approve,
        approver: r.approver,
        approval_files: r.approval_files,
        yes: r.yes,
        report_dir: r.report_dir,
        junit: r.junit,
        progress: progress_mode(r.quiet, r.progress),
        verbose: r.verbose,
        color,
        pg_bin_dir: r.pg_bin_dir,
        password_command: r.password_command,
        earlier,
        tls: false,
    }
}

/// Whether `args` (without the program name) is a command line `runbook`
/// accepts, and clap's reason when not; nothing runs. The docs test checks
/// every `runbook …` command the docs show with it.
pub fn check_args<I: IntoIterator<Item = String>>(args: I) -> Result<(), String> {
    let argv = std::iter::once("runbook".to_string()).chain(args);
    match Cli::try_parse_from(argv) {
        Ok(_) => Ok(()),
        Err(e) if !e.use_stderr() => Ok(()),
        Err(e) => Err(e.render().to_string()),
    }
}

/// Run the command line and return the process exit code.
// Long by design: one arm per subcommand, each a call into its module.
pub fn main<I: IntoIterator<Item = OsString>>(args: I) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::INVALID
            } else {
                exit::OK
            };
            let _ = e.print();
            return code;
        }
    };
    let color = match cli.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    match cli.command {
        Cmd::Validate { files, params } => {
            validate_files(&files, &params, color, &mut stdout, &mut stderr)
        }
        Cmd::Plan {
            file,
            params,
            format,
        } => show_plan(&file, &params, format, color, &mut stdout, &mut stderr),
        Cmd::Approve {
            file,
            phase,
            approver,
            output,
            params,
        } => crate::commands::approve(
            &file,
            &params.inputs(),
            &phase,
            approver.as_deref(),
            output,
            &mut stdout,
        )
        .unwrap_or_else(|e| e.print(&mut stderr)),
        Cmd::Exec(args) => {
            drop(stdout);
            drop(stderr);
            let a = *args;
            let mut args = run_args(a.file, &a.params, a.run, color, a.ephemeral, a.keep, None);
            args.tls = a.tls;
            match a.fleet.targets.clone() {
                Some(t) => crate::fleet::run::exec(args, a.fleet.args(t)),
                None => crate::run::exec(args),
            }
        }
        Cmd::Resume { args, partial } => {
            drop(stdout);
            drop(stderr);
            let policy = partial.map(|p| match p {
                PartialArg::Rerun => crate::exec::PartialPolicy::Rerun,
                PartialArg::Skip => crate::exec::PartialPolicy::Skip,
                PartialArg::Undo => crate::exec::PartialPolicy::Undo,
            });
            earlier_run(*args, color, crate::run::EarlierAction::Resume(policy))
        }
        Cmd::Rollback(args) => {
            drop(stdout);
            drop(stderr);
            earlier_run(*args, color, crate::run::EarlierAction::Rollback)
        }
        Cmd::Runs { command } => match command {
            RunsCmd::List {
                target,
                limit,
                format,
            } => crate::commands::runs_list(
                &target.target(),
                limit,
                matches!(format, Format::Json),
                &mut stdout,
            )
            .unwrap_or_else(|e| e.print(&mut stderr)),
            RunsCmd::Show {
                run_id,
                target,
                format,
            } => crate::commands::runs_show(
                &target.target(),
                &run_id,
                matches!(format, Format::Json),
                &mut stdout,
            )
            .unwrap_or_else(|e| e.print(&mut stderr)),
        },
        Cmd::Backups { command } => backups(command, &mut stdout, &mut stderr),
        Cmd::Schema {
            command: Some(SchemaCmd::Snapshot { target, output }),
            ..
        } => crate::commands::schema_snapshot(
            &target.target(),
            output.as_deref(),
            &mut stdout,
            &mut stderr,
        )
        .unwrap_or_else(|e| e.print(&mut stderr)),
        Cmd::Schema {
            command: Some(SchemaCmd::Diff { a, b }),
            ..
        } => crate::commands::schema_diff(&a, &b, &mut stdout)
            .unwrap_or_else(|e| e.print(&mut stderr)),
        Cmd::Lint(args) => lint(args, &mut stdout, &mut stderr),
        Cmd::Migrations {
            command:
                MigrationsCmd::Status {
                    m,
                    format,
                    contexts,
                    label_filter,
                },
        } => crate::commands::migrations_status(
            &m.commands(),
            (contexts.as_deref(), label_filter.as_deref()),
            matches!(format, Format::Json),
            &mut stdout,
        )
        .unwrap_or_else(|e| e.print(&mut stderr)),
        Cmd::Migrations {
            command:
                MigrationsCmd::Repair {
                    m,
                    version,
                    mark,
                    yes,
                },
        } => crate::commands::migrations_repair(
            &m.commands(),
            &version,
            matches!(mark, Mark::Applied),
            yes,
            &mut stdout,
            &mut stderr,
        )
        .unwrap_or_else(|e| e.print(&mut stderr)),
        Cmd::Migrations {
            command:
                MigrationsCmd::Baseline {
                    m,
                    version,
                    by,
                    yes,
                },
        } => crate::commands::migrations_baseline(
            &m.commands(),
            &version,
            by.as_deref(),
            yes,
            &mut stdout,
            &mut stderr,
        )
        .unwrap_or_else(|e| e.print(&mut stderr)),
        Cmd::Targets { command } => match command {
            TargetsCmd::List {
                choice,
                shard,
                format,
            } => crate::fleet::cmd::list(
                &choice.targets,
                &choice.select,
                shard,
                matches!(format, Format::Json),
                color,
                &mut stdout,
                &mut stderr,
            ),
            TargetsCmd::Matrix { choice, shards } => crate::fleet::cmd::matrix(
                &choice.targets,
                &choice.select,
                shards,
                color,
                &mut stdout,
                &mut stderr,
            ),
        },
        Cmd::Report {
            command: ReportCmd::Html { report, output },
        } => crate::commands::report_html(&report, output.as_deref(), &mut stdout)
            .unwrap_or_else(|e| e.print(&mut stderr)),
        Cmd::Report {
            command:
                ReportCmd::Merge {
                    dirs,
                    report_dir,
                    junit,
                },
        } => crate::fleet::cmd::merge(
            &dirs,
            &report_dir,
            junit.as_deref(),
            &mut stdout,
            &mut stderr,
        ),
        // Rendered in memory first: a reader that stops early (`| head`)
        // is not an error worth a panic or a message.
        Cmd::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "runbook", &mut buf);
            let _ = stdout.write_all(&buf);
            exit::OK
        }
        Cmd::Init {
            from,
            migrations,
            output,
            set,
            force,
        } => crate::init::init(crate::init::InitArgs {
            from,
            migrations,
            output,
            set,
            force,
        }),
        Cmd::Man => man(&mut stdout, &mut stderr),
        Cmd::Schema {
            report,
            targets,
            fleet_report,
            command: None,
        } => print_schema(report, targets, fleet_report, &mut stdout),
    }
}

/// `runbook validate`: each file, with its errors or a one-line summary.
fn validate_files(
    files: &[PathBuf],
    params: &ParamArgs,
    color: bool,
    stdout: &mut impl Write,
    stderr: &mut impl Write,
) -> u8 {
    let inputs = params.inputs();
    let check = if inputs.is_empty() {
        ParamCheck::GivenOnly
    } else {
        ParamCheck::RequireAll
    };
    let mut code = exit::OK;
    for file in files {
        match validate::validate_file(file, &inputs, check) {
            Ok(v) => {
                let count =
                    |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
                let _ = writeln!(
                    stdout,
                    "ok: {} ({} {}: {}, {})",
                    file.display(),
                    v.runbook.metadata.name,
                    v.runbook.metadata.version,
                    count(v.runbook.phases.len(), "phase"),
                    count(v.runbook.step_count(), "step"),
                );
            }
            Err(invalid) => {
                let _ = write!(stderr, "{}", invalid.render(color));
                code = exit::INVALID;
            }
        }
    }
    code
}

/// `runbook plan`: the ordered plan, with what `exec` would lint first.
fn show_plan(
    file: &std::path::Path,
    params: &ParamArgs,
    format: Format,
    color: bool,
    stdout: &mut impl Write,
    stderr: &mut impl Write,
) -> u8 {
    let inputs = params.inputs();
    let built = validate::validate_file(file, &inputs, ParamCheck::RequireAll)
        .and_then(|v| plan::build(&v, &plan::RunInfo::default()).map(|p| (v, p)));
    match built {
        Ok((v, p)) => {
            // What `exec` would lint first, unless the runbook turns it off.
            let lint = crate::lint::lint_plan(file, &v, &p, &crate::lint::scopes(file, &v, &p));
            let out = match format {
                Format::Text => {
                    let mut t = p.to_text();
                    match &lint {
                        Some(Ok(found)) => t.push_str(&crate::lint::render_short(found)),
                        Some(Err(e)) => t.push_str(&format!(
                            "\nlint: could not run: {}\n",
                            e.lines().next().unwrap_or_default()
                        )),
                        None => t.push_str("\nlint: off (settings.lint)\n"),
                    }
                    t
                }
                Format::Json => {
                    let mut v: serde_json::Value =
                        serde_json::from_str(&p.to_json()).unwrap_or_default();
                    if let Some(Ok(found)) = &lint {
                        v["lint"] = crate::lint::plan_report_json(found, &p);
                    }
                    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
                    s.push('\n');
                    s
                }
            };
            let _ = stdout.write_all(out.as_bytes());
            exit::OK
        }
        Err(invalid) => {
            let _ = write!(stderr, "{}", invalid.render(color));
            exit::INVALID
        }
    }
}

/// `runbook man`: the man page, rendered in memory first.
fn man(stdout: &mut impl Write, stderr: &mut impl Write) -> u8 {
    let mut buf = Vec::new();
    match clap_mangen::Man::new(Cli::command()).render(&mut buf) {
        Ok(()) => {
            let _ = stdout.write_all(&buf);
            exit::OK
        }
        Err(e) => {
            let _ = writeln!(stderr, "error: failed to render the man page: {e}");
            exit::INVALID
        }
    }
}

/// `runbook schema`: one of the published JSON Schemas.
fn print_schema(report: bool, targets: bool, fleet_report: bool, stdout: &mut impl Write) -> u8 {
    let schema = if report {
        crate::schema::REPORT_SCHEMA
    } else if targets {
        crate::fleet::targets::TARGETS_SCHEMA
    } else if fleet_report {
        crate::fleet::report::FLEET_REPORT_SCHEMA
    } else {
        crate::schema::RUNBOOK_SCHEMA
    };
    let _ = stdout.write_all(schema.as_bytes());
    exit::OK
}

fn lint(args: LintArgs, stdout: &mut impl Write, stderr: &mut impl Write) -> u8 {
    use crate::lint;
    let LintArgs {
        paths,
        format,
        max_warnings,
        explain,
        include,
        exclude,
        warn,
        config: config_file,
    } = args;
    let mut config = lint::Config::default();
    let file = config_file.or_else(|| {
        std::env::current_dir()
            .ok()
            .and_then(|d| lint::find_config(&d))
    });
    let flags = crate::model::LintConfig {
        include,
        exclude,
        severities: warn
            .into_iter()
            .map(|r| (r, crate::model::LintLevel::Warning))
            .collect(),
        ..Default::default()
    };
    let configured = match &file {
        Some(f) => config.read_file(f),
        None => Ok(()),
    }
    .and_then(|()| config.merge(&flags));
    if let Err(e) = configured {
        let _ = writeln!(
            stderr,
            "error: {e}\n  = help: rule names are squawk's (such as require-concurrent-index-creation) or runbook's; docs/lint/README.md lists them"
        );
        return exit::INVALID;
    }
    let report = match lint::lint_paths(&paths, &config) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(stderr, "{}", e.trim_end());
            return exit::INVALID;
        }
    };
    let out = match format {
        LintFormat::Json => {
            let mut s = serde_json::to_string_pretty(&report).expect("lint reports serialize");
            s.push('\n');
            s
        }
        LintFormat::Sarif => lint::render_sarif(&report),
        LintFormat::Github => lint::render_github(&report),
        LintFormat::Text => lint::render_text(&report, explain),
    };
    let _ = stdout.write_all(out.as_bytes());
    let too_many = max_warnings.is_some_and(|m| report.warnings() > m);
    if report.errors() > 0 || too_many {
        exit::LINT_FINDINGS
    } else {
        exit::OK
    }
}

fn size(bytes: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

// Long by design: one arm per `backups` subcommand, each printing its
// listing or its check in text or JSON.
fn backups(cmd: BackupsCmd, stdout: &mut impl Write, stderr: &mut impl Write) -> u8 {
    use crate::backups;
    match cmd {
        BackupsCmd::List { dir, format } => {
            let listed = match backups::list(&dir) {
                Ok(l) => l,
                Err(e) => {
                    let _ = writeln!(
                        stderr,
                        "error: failed to list backups: {e}\n  = help: give the directory your backup steps write under, such as backups/"
                    );
                    return exit::INVALID;
                }
            };
            match format {
                Format::Json => {
                    let mut s = serde_json::to_string_pretty(&listed).expect("listings serialize");
                    s.push('\n');
                    let _ = stdout.write_all(s.as_bytes());
                }
                Format::Text => {
                    if listed.is_empty() {
                        let _ = writeln!(stdout, "no backups under {}", dir.display());
                    }
                    for l in &listed {
                        match &l.manifest {
                            Some(m) => {
                                let _ = writeln!(
                                    stdout,
                                    "{:<20} {}  {} {}  {}  {}  {} tables  verify {} {}",
                                    l.state,
                                    m.created_at,
                                    m.runbook.as_deref().unwrap_or("-"),
                                    m.runbook_version.as_deref().unwrap_or(""),
                                    m.format.name(),
                                    size(m.total_bytes),
                                    m.tables.len(),
                                    serde_json::to_value(m.verification.method)
                                        .ok()
                                        .and_then(|v| v.as_str().map(str::to_string))
                                        .unwrap_or_default(),
                                    m.verification.status,
                                );
                                let _ = writeln!(stdout, "  {}", l.path.display());
                            }
                            None => {
                                let _ = writeln!(
                                    stdout,
                                    "{:<20} {}",
                                    l.state,
                                    l.problem.as_deref().unwrap_or_default()
                                );
                                let _ = writeln!(stdout, "  {}", l.path.display());
                            }
                        }
                    }
                }
            }
            exit::OK
        }
        BackupsCmd::Verify { path, pg_bin_dir } => {
            let dir = if path.file_name().is_some_and(|n| n == backups::MANIFEST) {
                path.parent().map(PathBuf::from).unwrap_or_default()
            } else {
                path.clone()
            };
            if !dir.is_dir() {
                let _ = writeln!(
                    stderr,
                    "error: `{}` is not a directory\n  = help: give the backup's directory, the one holding manifest.json",
                    path.display()
                );
                return exit::INVALID;
            }
            if let Some(b) = &pg_bin_dir
                && !b.is_dir()
            {
                let _ = writeln!(
                    stderr,
                    "error: --pg-bin-dir (or PG_BIN_DIR) `{}` is not a directory\n  = help: point it at the directory holding pg_restore",
                    b.display()
                );
                return exit::INVALID;
            }
            let version = backups::load(&dir)
                .map(|m| m.pg_dump_version)
                .unwrap_or_else(|_| "0".into());
            let tool = match crate::pg::tools::find("pg_restore", &version, pg_bin_dir.as_deref()) {
                Ok(t) => t,
                Err(e) => {
                    let _ = writeln!(stderr, "error: {e}\n  = help: {}", e.hint());
                    return exit::INVALID;
                }
            };
            match backups::verify(&dir, &tool.path) {
                Ok(m) => {
                    let _ = writeln!(
                        stdout,
                        "ok: {}: {} files, {}, every sha256 matches; the archive reads and lists all {} tables\n  taken {} by {} {} from `{}` (PostgreSQL {}, pg_dump {})",
                        dir.display(),
                        m.files.len(),
                        size(m.total_bytes),
                        m.tables.len(),
                        m.created_at,
                        m.runbook.as_deref().unwrap_or("-"),
                        m.runbook_version.as_deref().unwrap_or(""),
                        m.database,
                        m.server_version,
                        m.pg_dump_version,
                    );
                    exit::OK
                }
                Err(e) => {
                    let _ = writeln!(
                        stderr,
                        "error: backup {} cannot be trusted: {e}\n  = help: {}",
                        dir.display(),
                        e.hint()
                    );
                    exit::VERIFY_FAILED
                }
            }
        }
    }
}
