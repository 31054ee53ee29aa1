//! The command line: argument parsing and the mapping of outcomes to exit
//! codes. Everything else lives in the library stages.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Print the JSON Schema of the runbook format (or, with --report, of report.json).
    Schema {
        /// Print the schema of report.json instead.
        #[arg(long)]
        report: bool,
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
    /// The target database. Beats the runbook's `database.url`, then $DATABASE_URL.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Start a throwaway local PostgreSQL, run against it, remove it afterwards.
    #[arg(long, conflicts_with = "database_url")]
    ephemeral: bool,
    /// With --ephemeral: keep the throwaway PostgreSQL running and print its URL.
    #[arg(long, requires = "ephemeral")]
    keep: bool,
    /// Approve the gate of this phase (repeatable).
    #[arg(long = "approve", value_name = "PHASE")]
    approve: Vec<String>,
    /// Approve every gate.
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
}

/// Run the command line and return the process exit code.
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
            let inputs = params.inputs();
            let check = if inputs.is_empty() {
                ParamCheck::GivenOnly
            } else {
                ParamCheck::RequireAll
            };
            let mut code = exit::OK;
            for file in &files {
                match validate::validate_file(file, &inputs, check) {
                    Ok(v) => {
                        let steps = v.runbook.all_steps().len();
                        let _ = writeln!(
                            stdout,
                            "ok: {} ({} {}: {} phases, {} steps)",
                            file.display(),
                            v.runbook.metadata.name,
                            v.runbook.metadata.version,
                            v.runbook.phases.len(),
                            steps
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
        Cmd::Plan {
            file,
            params,
            format,
        } => {
            let built = validate::validate_file(&file, &params.inputs(), ParamCheck::RequireAll)
                .and_then(|v| plan::build(&v, &plan::RunInfo::default()));
            match built {
                Ok(p) => {
                    let out = match format {
                        Format::Text => p.to_text(),
                        Format::Json => p.to_json(),
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
        Cmd::Exec(args) => {
            drop(stdout);
            drop(stderr);
            crate::run::exec(RunArgs {
                file: args.file,
                inputs: args.params.inputs(),
                database_url: args.database_url,
                ephemeral: args.ephemeral,
                keep: args.keep,
                approve: args.approve,
                yes: args.yes,
                report_dir: args.report_dir,
                junit: args.junit,
                progress: match (args.quiet, args.progress) {
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
                },
                verbose: args.verbose,
                color,
            })
        }
        Cmd::Schema { report } => {
            let schema = if report {
                crate::schema::REPORT_SCHEMA
            } else {
                crate::schema::RUNBOOK_SCHEMA
            };
            let _ = stdout.write_all(schema.as_bytes());
            exit::OK
        }
    }
}
