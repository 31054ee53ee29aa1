//! The commands around migrations and schemas that run outside a runbook:
//! `runbook schema snapshot|diff`, `runbook migrations status|repair|baseline`,
//! `runbook runs list|show` and `runbook approve`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use crate::exec::migrate::{self, History};
use crate::exit;
use crate::migrations::{self, Format};
use crate::pg::db::{self, Db};
use crate::snapshot::{self, File, Snapshot};

/// What every database command needs: the URL (flag, then $DATABASE_URL).
pub struct Target {
    pub database_url: Option<String>,
    /// `--password-command` (exec, resume, rollback), asked at each login.
    pub password_command: Option<String>,
}

/// Why a command could not do its job. Each kind has its exit code; the
/// command line prints it once (`print`), with its hint.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Bad input: a flag, a file, a URL, a version that is not there (5).
    #[error("{message}")]
    Invalid { message: String, hint: String },
    /// The database could not be reached, read or written (1).
    #[error("{message}")]
    Unavailable { message: String, hint: String },
    /// A person's confirmation was needed and not given (6).
    #[error("{message}")]
    NotApproved { message: String, hint: String },
}

impl CommandError {
    fn invalid(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
            hint: hint.into(),
        }
    }

    fn unavailable(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::Unavailable {
            message: message.into(),
            hint: hint.into(),
        }
    }

    fn not_approved(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::NotApproved {
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// The exit code this error ends the command with (docs/exit-codes.md).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Invalid { .. } => exit::INVALID,
            Self::Unavailable { .. } => exit::PREFLIGHT_FAILED,
            Self::NotApproved { .. } => exit::NOT_APPROVED,
        }
    }

    pub fn hint(&self) -> &str {
        match self {
            Self::Invalid { hint, .. }
            | Self::Unavailable { hint, .. }
            | Self::NotApproved { hint, .. } => hint,
        }
    }

    /// Print it (`error: ...`, `= help: ...`) and give its exit code.
    pub fn print(&self, stderr: &mut impl Write) -> u8 {
        let _ = writeln!(stderr, "error: {self}\n  = help: {}", self.hint());
        self.exit_code()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}

/// Connect, or say why not: 5 for a missing or bad URL, 1 for a server that
/// cannot be reached.
async fn connect(t: &Target) -> Result<Db, CommandError> {
    let url = t.database_url.clone().or_else(db::url_from_env);
    let Some(url) = url else {
        return Err(CommandError::invalid(
            "no database given",
            "pass --database-url postgres://user@host/db, or set DATABASE_URL (or libpq's PGHOST, PGPORT, PGUSER, PGDATABASE)",
        ));
    };
    let mut redactor = crate::redact::Redactor::new(crate::migrations::flyway_secret_values());
    redactor.add_url(&url);
    let config = db::parse_url(&url).map_err(|e| {
        let (message, help) = db::url_refusal(&redactor.redact(&url), &e);
        CommandError::invalid(message, help)
    })?;
    let mut config = config;
    config.password_command = t
        .password_command
        .clone()
        .map(crate::pg::password::PasswordCommand::new);
    let target = db::target_of(&config.config, false);
    Db::connect(config, "runbook/cli").await.map_err(|e| {
        CommandError::unavailable(
            format!(
                "cannot connect to {}@{}:{}/{}: {}",
                target.user, target.host, target.port, target.database, e.message
            ),
            e.hint
                .unwrap_or_else(|| "check that the server is up and the URL is right".into()),
        )
    })
}

/// `runbook schema snapshot`: the snapshot as JSON, on stdout or to a file.
pub fn schema_snapshot(
    t: &Target,
    output: Option<&Path>,
    stdout: &mut impl Write,
    stderr: &mut impl Write,
) -> Result<u8, CommandError> {
    runtime().block_on(async {
        let db = connect(t).await?;
        let snap = match snapshot::take(&db.client).await {
            Ok(s) => s,
            Err(e) => {
                return Err(CommandError::unavailable(
                    format!(
                        "the snapshot query failed: {}",
                        db::error_info(&e, None).message
                    ),
                    "the role needs to read the system catalogs",
                ));
            }
        };
        let version = db.server_version().await.unwrap_or_default();
        let database = db
            .config()
            .config
            .get_dbname()
            .unwrap_or_default()
            .to_string();
        let file = File::new(&snap, &database, &version);
        let mut text = serde_json::to_string_pretty(&file).expect("snapshots serialize");
        text.push('\n');
        match output {
            Some(p) => {
                if let Err(e) = crate::fsutil::write_atomic(p, text.as_bytes()) {
                    return Err(CommandError::invalid(
                        format!("cannot write {}: {e}", p.display()),
                        "check the directory exists and is writable",
                    ));
                }
                let _ = writeln!(
                    stderr,
                    "snapshot of {database}: {} objects, hash {}",
                    snap.objects.len(),
                    snap.hash
                );
            }
            None => {
                let _ = stdout.write_all(text.as_bytes());
            }
        }
        Ok(exit::OK)
    })
}

/// `runbook schema diff A B`: 0 when equal, 3 when they differ.
pub fn schema_diff(a: &Path, b: &Path, stdout: &mut impl Write) -> Result<u8, CommandError> {
    let (fa, fb) = match (File::read(a), File::read(b)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => {
            return Err(CommandError::invalid(
                &e,
                "give two files written by `runbook schema snapshot` or a snapshot step's `save:`",
            ));
        }
    };
    // Written by runbooks that read different things: compared on what both read.
    let reads = fa.0.reads.min(fb.0.reads);
    let unread = Snapshot::unread_at(reads);
    if !unread.is_empty() {
        let _ = writeln!(
            stdout,
            "note: {} was written by an older runbook; compared without {}",
            if fa.0.reads == reads {
                a.display()
            } else {
                b.display()
            },
            unread.join(", ")
        );
    }
    let (sa, sb): (Snapshot, Snapshot) = (fa.1.as_read_at(reads), fb.1.as_read_at(reads));
    let changes = snapshot::compare(&sa, &sb);
    if changes.is_empty() {
        let _ = writeln!(
            stdout,
            "same schema: {} objects, hash {}",
            sa.objects.len(),
            sa.hash
        );
        return Ok(exit::OK);
    }
    let _ = writeln!(
        stdout,
        "{} object(s) differ ({} -> {}):",
        changes.len(),
        a.display(),
        b.display()
    );
    for c in &changes {
        let _ = writeln!(stdout, "\n{} {}", c.change, c.object);
        for line in snapshot::describe(c) {
            let _ = writeln!(stdout, "    {line}");
        }
    }
    Ok(exit::VERIFY_FAILED)
}

fn load(dir: &Path, format: &str) -> Result<migrations::Set, CommandError> {
    let format = Format::parse(format).map_err(|e| {
        CommandError::invalid(e.to_string(), "see docs/migrations.md for the formats")
    })?;
    migrations::load(dir, format).map_err(|e| {
        CommandError::invalid(
            e.to_string(),
            e.hint().unwrap_or("give the migration directory; --migration-format names its layout when detection cannot"),
        )
    })
}

/// A migration directory with its history, read from the database.
struct Opened {
    set: migrations::Set,
    db: Db,
    history: History,
    applied: Vec<migrate::Applied>,
}

/// What the migrations commands take: the database, the directory, its
/// format and where its history is (by default, detected).
pub struct Migrations<'a> {
    pub target: Target,
    pub dir: &'a Path,
    pub format: &'a str,
    pub history_format: &'a str,
    pub history_table: Option<&'a str>,
}

async fn open(m: &Migrations<'_>) -> Result<Opened, CommandError> {
    open_history(m, false).await
}

/// [`open`]; with `baseline`, a history runbook cannot read is left as it
/// is and runbook's own is opened beside it: a baseline is how a database
/// another tool migrated starts runbook's history.
async fn open_history(m: &Migrations<'_>, baseline: bool) -> Result<Opened, CommandError> {
    let mut set = load(m.dir, m.format)?;
    let spec = crate::history::Spec {
        tool: crate::history::Tool::parse(m.history_format).map_err(|e| {
            CommandError::invalid(e, "see docs/migrations.md for the history formats")
        })?,
        table: m.history_table.map(str::to_string),
    };
    let db = connect(&m.target).await?;
    let history = match History::open(&db, &spec, &mut set).await {
        Err(crate::history::HistoryError::Foreign { .. }) if baseline => History::new(
            crate::history::Tool::Runbook,
            &crate::history::Tool::Runbook.table_in(crate::history::named_schema(&db)),
            &set,
        ),
        opened => opened.map_err(|e| CommandError::invalid(e.to_string(), e.hint()))?,
    };
    set.warnings.extend(history.not_kept());
    let applied = history.read(&db, &set).await.map_err(|e| {
        CommandError::unavailable(
            format!("cannot read {}: {}", history.name, e.message),
            "check the role can read it",
        )
    })?;
    Ok(Opened {
        set,
        db,
        history,
        applied,
    })
}

/// `runbook migrations status DIR`: every migration with its state. Exits 3
/// when a migration is dirty or changed after it was applied.
pub fn migrations_status(
    m: &Migrations<'_>,
    (contexts, label_filter): (Option<&str>, Option<&str>),
    json: bool,
    stdout: &mut impl Write,
) -> Result<u8, CommandError> {
    const SELECT_HINT: &str = "`--contexts` is a comma list of names (`prod,eu`), `--label-filter` an expression (`v2 and !beta`); both are for Liquibase directories";
    // Read before anything is connected to.
    migrations::liquibase_check_select(contexts, label_filter).map_err(|(key, e)| {
        CommandError::invalid(
            format!(
                "`--{}` cannot be read as Liquibase reads it: {e}",
                key.replace('_', "-")
            ),
            SELECT_HINT,
        )
    })?;
    runtime().block_on(async {
        let mut o = open(m).await?;
        // Liquibase's contexts and label filter, as a migrate step given
        // them selects: the changesets they leave out are not pending.
        if let Err(e) = migrations::liquibase_select(&mut o.set, contexts, label_filter) {
            return Err(CommandError::invalid(e, SELECT_HINT));
        }
        // A migrate step given none of them would be refused: said.
        if (contexts, label_filter) == (None, None)
            && let Some((why, _)) = migrations::liquibase_ungiven(&o.set)
        {
            o.set.warnings.push(format!(
                "{why}; a migrate step without them is refused, and --contexts or --label-filter shows what that deploy runs"
            ));
        }
        // No Flyway history yet, and a schema that holds objects: what a
        // migrate step would do there.
        match o.history.flyway_start(&o.db, &o.set).await {
            Ok(crate::history::FlywayStart::Refused(message, _)) => o.set.warnings.push(format!(
                "{message}; `runbook migrations baseline` records the migrations the database already has"
            )),
            Ok(crate::history::FlywayStart::Baseline(b)) => o.set.warnings.push(format!(
                "schema {} already holds objects, and there is no Flyway history: a migrate step records a baseline at version {} first, as Flyway's baselineOnMigrate ({}) does, and applies only the migrations after it",
                b.schemas.join(", "),
                b.version,
                b.at
            )),
            Ok(crate::history::FlywayStart::AsUsual) => {}
            Err(e) => o.set.warnings.push(format!(
                "whether a schema Flyway manages already holds objects could not be read: {}",
                e.message
            )),
        }
        let (set, history, applied) = (&o.set, &o.history, &o.applied);
        let mut rows = Vec::new();
        let mut bad = false;
        let kind = history.tool.checksum_kind().unwrap_or("checksum");
        let newest = crate::history::Newest::of(set, applied);
        let mut listed: Vec<(&migrations::Migration, bool)> = set
            .migrations
            .iter()
            .map(|m| (m, true))
            .chain(set.unselected.iter().map(|m| (m, false)))
            .collect();
        listed.sort_by(|(a, _), (b, _)| set.cmp(&a.version, &b.version));
        for (m, selected) in listed {
            let a = applied.iter().find(|a| a.version == m.version);
            let sums = a.and_then(|a| Some((a.checksum.clone()?, history.checksum_of(m)?)));
            // A changeset with a context or labels runs only where they
            // select it: said, so that a seed for tests is not read as due.
            let selector = m
                .changeset
                .as_ref()
                .filter(|_| !selected || (contexts, label_filter) == (None, None))
                .map(|c| c.selector())
                .unwrap_or_default();
            let (state, note) = match a {
                None if !selected => (
                    "left out",
                    format!("{selector}: the contexts and label filter given do not select it"),
                ),
                None if newest.is_after(set, m) && !selector.is_empty() => (
                    "pending",
                    format!(
                        "{selector}; older than the newest applied, {}: runs that gave contexts passed it over, and a migrate step without contexts refuses it",
                        newest.version.unwrap_or_default(),
                    ),
                ),
                None if !selector.is_empty() => (
                    "pending",
                    format!("{selector}: runs only where the contexts (or label filter) select it; see --contexts"),
                ),
                None if newest.is_after(set, m) => (
                    "pending",
                    format!(
                        "older than the newest applied, {}: out of order; {}",
                        newest.version.unwrap_or_default(),
                        history.tool.out_of_order_fate(set)
                    ),
                ),
                None => ("pending", String::new()),
                Some(a) if a.dirty => {
                    bad = true;
                    ("dirty", history.dirty_message(a).0)
                }
                // Liquibase runs it again on the next update, as it should.
                Some(a) if selected && let Some(again) = history.runs_again(m, a) => (
                    "runs again",
                    format!("{}: the next update runs it again", again.why()),
                ),
                Some(_)
                    if sums.as_ref().is_some_and(|(was, now)| {
                        was != now && crate::history::History::change_accepted(m, was)
                    }) =>
                {
                    (
                        "applied",
                        "changed since it ran; its --validCheckSum accepts that, as Liquibase does, and it does not run again".to_string(),
                    )
                }
                Some(_) if sums.as_ref().is_some_and(|(was, now)| was != now) => {
                    bad = true;
                    let (was, now) = sums.unwrap_or_default();
                    (
                        "changed",
                        format!("applied with {kind} {was}, the file now hashes to {now}"),
                    )
                }
                Some(a) => ("applied", [a.applied_at.as_str(), &a.by].iter().filter(|x| !x.is_empty()).cloned().collect::<Vec<_>>().join(" by ")),
            };
            rows.push((m.version.clone(), m.name.clone(), state, note, m.down_missing()));
        }
        // The application's Java or Kotlin migrations, in their places.
        for c in set.code_migrations.iter().filter(|c| !c.version.is_empty()) {
            let a = applied.iter().find(|a| a.version == c.version);
            let (state, note) = match a {
                Some(a) if a.dirty => {
                    bad = true;
                    ("dirty", history.dirty_message(a).0)
                }
                Some(_) => ("applied", format!("{}; runbook cannot undo it", c.label())),
                None => (
                    "pending",
                    format!(
                        "{}: {} runs it from the application's code, and runbook cannot; a migrate step that would pass over it is refused",
                        c.label(),
                        c.tool
                    ),
                ),
            };
            let at = rows
                .iter()
                .position(|r| set.cmp(&r.0, &c.version).is_gt())
                .unwrap_or(rows.len());
            rows.insert(at, (c.version.clone(), c.description.clone(), state, note, None));
        }
        // Flyway's repeatable migrations: no version, and each runs again
        // whenever its file changes (`outdated`).
        for (x, state) in history.repeatables(&o.db, set).await.map_err(|e| {
            CommandError::unavailable(
                format!("cannot read {}: {}", history.name, e.message),
                "check the role can read it",
            )
        })? {
            bad |= state == crate::history::Repeatable::Dirty;
            let note = match state {
                crate::history::Repeatable::Outdated => "changed since it was applied: the next migrate runs it again",
                crate::history::Repeatable::Dirty => "its last run stopped half-way",
                _ => "",
            };
            rows.push((String::new(), x.up.file.clone(), state.name(), note.to_string(), None));
        }
        for a in applied.iter().filter(|a| {
            !set.migrations.iter().chain(&set.unselected).any(|m| m.version == a.version)
                && !set.code_migrations.iter().any(|c| c.version == a.version)
        }) {
            if a.dirty {
                bad = true;
            }
            rows.push((
                a.version.clone(),
                a.name.clone(),
                if a.dirty { "dirty" } else { "no file" },
                if a.dirty {
                    history.dirty_message(a).0
                } else {
                    format!("applied {} but not in {}", a.applied_at, m.dir.display())
                },
                None,
            ));
        }
        if json {
            let list: Vec<serde_json::Value> = rows
                .iter()
                .map(|(v, n, s, note, down)| {
                    let mut row = serde_json::json!({"version": v, "name": n, "state": s, "note": note, "down_missing": down});
                    if v.is_empty() {
                        row["version"] = serde_json::Value::Null;
                        row["repeatable"] = true.into();
                    }
                    row
                })
                .collect();
            let doc = serde_json::json!({
                "dir": m.dir.display().to_string(),
                "format": set.format.name(),
                "history_table": history.name,
                "history_format": history.tool.name(),
                "history_detected": history.detected,
                "checksums": history.tool.checksum_kind(),
                "migrations": list,
                "warnings": set.warnings,
            });
            let _ = writeln!(stdout, "{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        } else {
            let _ = writeln!(
                stdout,
                "{} ({} format, {})",
                m.dir.display(),
                set.format.name(),
                history.describe()
            );
            if let Some(note) = set.deployer_note() {
                let _ = writeln!(stdout, "note: {note}");
            }
            // Atlas's directory was checked against its atlas.sum on loading.
            if history.tool.checksum_kind().is_none() && set.format != migrations::Format::Atlas {
                let _ = writeln!(
                    stdout,
                    "note: {} keeps no checksums, so an edited applied migration cannot be told here",
                    history.tool.name()
                );
            }
            // As wide as the longest version: stems of shared numbers run long.
            let width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0).max(14);
            for (v, n, s, note, down) in &rows {
                let v = if v.is_empty() { "repeatable" } else { v };
                let mut line = format!("{v:>width$}  {s:<8} {n}");
                if !note.is_empty() {
                    line.push_str(&format!("  ({note})"));
                }
                if let Some(why) = down {
                    line.push_str(&format!("  [no down: {why}]"));
                }
                let _ = writeln!(stdout, "{line}");
            }
            for w in &set.warnings {
                let _ = writeln!(stdout, "warning: {w}");
            }
        }
        Ok(if bad { exit::VERIFY_FAILED } else { exit::OK })
    })
}

/// `runbook migrations repair DIR --version V`: clear a dirty flag after a
/// person has checked the schema. Asks first (or `--yes`).
pub fn migrations_repair(
    mig: &Migrations<'_>,
    version: &str,
    mark_applied: bool,
    yes: bool,
    stdout: &mut impl Write,
    stderr: &mut impl Write,
) -> Result<u8, CommandError> {
    runtime().block_on(async {
        let o = open(mig).await?;
        let (set, history, applied) = (&o.set, &o.history, &o.applied);
        let Some(row) = applied.iter().find(|a| a.version == version) else {
            return Err(CommandError::invalid(
                format!("version {version} is not in {}", history.name),
                "`runbook migrations status DIR` lists the versions and their states",
            ));
        };
        if !row.dirty {
            return Err(CommandError::invalid(
                format!("version {version} is not dirty; there is nothing to repair"),
                "repair only clears the flag a failed or killed migration left",
            ));
        }
        if !history.tool.writable() {
            return Err(CommandError::invalid(
                format!(
                    "runbook reads the {} history but does not write it",
                    history.tool.name()
                ),
                "repair it with the tool itself",
            ));
        }
        if mark_applied
            && let Some(m) = set.migrations.iter().find(|m| m.version == version)
            && row.checksum.is_some()
            && history.checksum_of(m) != row.checksum
        {
            let _ = writeln!(
                stderr,
                "warning: {} changed since the dirty run started",
                m.up.file
            );
        }
        let (what, _) = history.dirty_message(row);
        let outcome = if mark_applied {
            "recorded as applied"
        } else {
            "removed from the history, so it is pending again"
        };
        let _ = writeln!(stderr, "{what}\nversion {version} will be {outcome}.");
        let question = "Have you checked the schema by hand? Type yes to repair: ";
        if !yes && !confirmed(stderr, question, "repair", "not repaired")? {
            return Ok(exit::NOT_APPROVED);
        }
        match history.repair(&o.db, row, mark_applied).await {
            Ok(1) => {
                let _ = writeln!(stdout, "repaired: version {version} {outcome}");
                Ok(exit::OK)
            }
            Ok(_) => Err(CommandError::invalid(
                "the row changed while we asked",
                "run status again and retry",
            )),
            Err(e) => Err(CommandError::unavailable(
                format!("the repair failed: {}", e.message),
                "check the role can write the history table",
            )),
        }
    })
}

/// `runbook migrations baseline DIR --version V`: on a database whose
/// schema already has them (another tool applied them, or they were run by
/// hand), record every migration up to V as applied without running it.
/// Asks first (or `--yes`); each row names who did it and when.
pub fn migrations_baseline(
    mig: &Migrations<'_>,
    version: &str,
    by: Option<&str>,
    yes: bool,
    stdout: &mut impl Write,
    stderr: &mut impl Write,
) -> Result<u8, CommandError> {
    runtime().block_on(async {
        let o = open_history(mig, true).await?;
        let (set, history, applied) = (&o.set, &o.history, &o.applied);
        if !set.migrations.iter().any(|m| m.version == version) {
            return Err(CommandError::invalid(
                format!("version {version} is not in {}", mig.dir.display()),
                "give the version of the newest migration the database already has (the leading digits of its file name)",
            ));
        }
        if let Some(d) = applied.iter().find(|a| a.dirty) {
            let (what, hint) = history.dirty_message(d);
            return Err(CommandError::invalid(what, hint));
        }
        if !history.tool.writable() {
            return Err(CommandError::invalid(
                format!("runbook reads the {} history but does not write it", history.tool.name()),
                "record a baseline with the tool itself",
            ));
        }
        let todo: Vec<&migrations::Migration> = set
            .migrations
            .iter()
            .filter(|m| set.cmp(&m.version, version).is_le())
            .filter(|m| !applied.iter().any(|a| a.version == m.version))
            .collect();
        if todo.is_empty() {
            let _ = writeln!(
                stdout,
                "nothing to baseline: every migration through {version} is already in {}",
                history.name
            );
            return Ok(exit::OK);
        }
        let who = baseline_by(by);
        let _ = writeln!(
            stderr,
            "{} migration(s) through {version} will be recorded in {} as applied, without running them:",
            todo.len(),
            history.name
        );
        for m in &todo {
            let _ = writeln!(stderr, "  {} {}", m.version, m.name);
        }
        let question = "Does the database already have these changes? Type yes to record them: ";
        if !yes && !confirmed(stderr, question, "baseline", "not recorded")? {
            return Ok(exit::NOT_APPROVED);
        }
        let added = history.baseline(&o.db, &todo, version, &who).await.map_err(|e| {
            CommandError::unavailable(
                format!("the baseline failed: {}", e.message),
                "check the role can create and write the history table",
            )
        })?;
        let _ = writeln!(
            stdout,
            "baselined {added} migration(s) through {version} in {} (run id `{who}`)",
            history.name
        );
        Ok(exit::OK)
    })
}

/// Who ran a baseline, for its rows' run id: `--as`, else the CI's actor,
/// else the local user, with the host.
fn baseline_by(by: Option<&str>) -> String {
    format!(
        "baseline/{}@{}",
        crate::who::person(by),
        crate::who::hostname()
    )
}

/// Ask at a terminal whether to go on. False, after saying `refused`, when
/// the answer is not `yes`; an error when nobody can answer (no terminal,
/// or CI), which `--yes` is for.
fn confirmed(
    stderr: &mut impl Write,
    question: &str,
    command: &str,
    refused: &str,
) -> Result<bool, CommandError> {
    let interactive = std::io::stdin().is_terminal() && std::env::var_os("CI").is_none();
    if !interactive {
        return Err(CommandError::not_approved(
            format!("{command} needs confirmation"),
            "run it at a terminal to be asked, or add --yes once you have checked the schema",
        ));
    }
    let _ = write!(stderr, "{question}");
    let _ = stderr.flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    let yes = answer.trim() == "yes";
    if !yes {
        let _ = writeln!(stderr, "{refused}");
    }
    Ok(yes)
}

/// `runbook runs list`: the newest runs the journal holds.
pub fn runs_list(
    t: &Target,
    limit: i64,
    json: bool,
    stdout: &mut impl Write,
) -> Result<u8, CommandError> {
    runtime().block_on(async {
        let db = connect(t).await?;
        let runs = match crate::exec::journal::list(&db.client, limit).await {
            Ok(r) => r,
            Err(e) => {
                return Err(CommandError::unavailable(
                    format!("failed to read the run journal: {e}"),
                    "check that this user may read schema `runbook_journal`",
                ));
            }
        };
        if json {
            let _ = writeln!(
                stdout,
                "{}",
                serde_json::to_string_pretty(&runs).unwrap_or_default()
            );
            return Ok(exit::OK);
        }
        if runs.is_empty() {
            let _ = writeln!(stdout, "no runs recorded in this database");
            return Ok(exit::OK);
        }
        let _ = writeln!(
            stdout,
            "{:<26} {:<9} {:<24} {:<17} {:<5} {:<24} by",
            "RUN", "KIND", "RUNBOOK", "STATUS", "EXIT", "STARTED"
        );
        for r in &runs {
            let _ = writeln!(
                stdout,
                "{:<26} {:<9} {:<24} {:<17} {:<5} {:<24} {}@{}",
                r.run_id,
                r.kind,
                format!("{} {}", r.runbook, r.version),
                r.status,
                r.exit_code.map_or_else(|| "-".into(), |c| c.to_string()),
                r.started_at,
                r.os_user,
                r.host
            );
        }
        Ok(exit::OK)
    })
}

/// `runbook runs show RUN_ID`: one run and its steps.
pub fn runs_show(
    t: &Target,
    run_id: &str,
    json: bool,
    stdout: &mut impl Write,
) -> Result<u8, CommandError> {
    let run = read_run(t, run_id)?;
    if json {
        let _ = writeln!(
            stdout,
            "{}",
            serde_json::to_string_pretty(&run).unwrap_or_default()
        );
        return Ok(exit::OK);
    }
    let _ = writeln!(
        stdout,
        "run {} ({}{})\n  runbook: {} {} ({}, sha256 {})\n  by: {}@{} pid {}, runbook {}\n  started: {}\n  status: {}{}\n  resumed: {} time(s)",
        run.run_id,
        run.kind,
        run.of_run
            .as_deref()
            .map_or_else(String::new, |o| format!(" of run {o}")),
        run.runbook,
        run.version,
        run.file,
        run.sha256.get(..12).unwrap_or(&run.sha256),
        run.os_user,
        run.host,
        run.pid,
        run.runner_version,
        run.started_at,
        run.status,
        run.exit_code
            .map_or_else(String::new, |c| format!(" (exit {c})")),
        run.resumes
    );
    if let Some(v) = &run.verdict {
        let _ = writeln!(stdout, "  verdict: {v}");
    }
    if run.status == "running" {
        let _ = writeln!(
            stdout,
            "  note: `running` with no live runner means the runner died; `runbook resume {0}` goes on, `runbook rollback {0}` undoes it",
            run.run_id
        );
    }
    let _ = writeln!(
        stdout,
        "\n  {:<4} {:<14} {:<28} {:<13} {:<20} COMPENSATION",
        "SEQ", "PHASE", "STEP", "ROLE", "STATUS"
    );
    for s in &run.steps {
        let r = &s.row;
        let _ = writeln!(
            stdout,
            "  {:<4} {:<14} {:<28} {:<13} {:<20} {}",
            r.seq,
            r.phase.as_deref().unwrap_or("-"),
            match &r.for_step {
                Some(f) => format!("{} (for {f})", r.step),
                None => r.step.clone(),
            },
            r.role,
            format!("{}{}", r.status, if r.partial { ", partial" } else { "" }),
            match (&r.compensated, r.compensations.is_empty()) {
                (Some(c), _) => c.clone(),
                (None, false) => format!("registered: {}", r.compensations.join(", ")),
                (None, true) => "-".into(),
            }
        );
        if let Some(e) = &r.error {
            let _ = writeln!(stdout, "       error: {e}");
        }
    }
    Ok(exit::OK)
}

/// One run from the journal, or why not (5: no such run; 1: no database).
pub fn read_run(t: &Target, run_id: &str) -> Result<crate::exec::journal::RunRecord, CommandError> {
    runtime().block_on(async {
        let db = connect(t).await?;
        match crate::exec::journal::show(&db.client, run_id).await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(CommandError::invalid(
                format!("no run `{run_id}` in this database's run journal"),
                "`runbook runs list` shows the runs it holds; check --database-url",
            )),
            Err(e) => Err(CommandError::unavailable(
                format!("failed to read the run journal: {e}"),
                "check that this user may read schema `runbook_journal`",
            )),
        }
    })
}

/// `runbook approve RUNBOOK --phase P`: write one person's approval of
/// phase P, bound to the runbook's text and the params given, for
/// `exec --approval FILE`. The runbook must validate and plan with those
/// params, and P must have an approval gate.
pub fn approve(
    file: &Path,
    inputs: &crate::validate::Inputs,
    phase: &str,
    by: Option<&str>,
    output: Option<std::path::PathBuf>,
    stdout: &mut impl Write,
) -> Result<u8, CommandError> {
    let built =
        crate::validate::validate_file(file, inputs, crate::validate::ParamCheck::RequireAll)
            .and_then(|v| crate::plan::build(&v, &crate::plan::RunInfo::default()));
    let plan = built.map_err(|invalid| {
        CommandError::invalid(
            invalid.render(false).trim_end().to_string(),
            "an approval is for a runbook that validates, with the params the run will use",
        )
    })?;
    let phases: Vec<&str> = plan.phases.iter().map(|p| p.id.as_str()).collect();
    match plan.phases.iter().find(|p| p.id == phase) {
        None => {
            return Err(CommandError::invalid(
                format!("unknown phase `{phase}`"),
                format!("the runbook's phases are {}", crate::diag::one_of(&phases)),
            ));
        }
        Some(p) if p.approval.is_none() => {
            return Err(CommandError::invalid(
                format!("phase `{phase}` has no approval gate: there is nothing to approve"),
                "add `approval:` to the phase, or approve a gated phase",
            ));
        }
        Some(_) => {}
    }
    let who = crate::who::person(by);
    let approval =
        crate::approval::ApprovalFile::new(&plan, phase, who.clone(), crate::events::now());
    let path = output.unwrap_or_else(|| {
        let safe: String = who
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{}.{phase}.{safe}.approval.json", plan.runbook.name).into()
    });
    let mut text = serde_json::to_string_pretty(&approval).unwrap_or_default();
    text.push('\n');
    crate::fsutil::write_atomic(&path, text.as_bytes()).map_err(|e| {
        CommandError::invalid(
            format!("cannot write {}: {e}", path.display()),
            "pass -o FILE in a directory you can write to",
        )
    })?;
    let _ = writeln!(
        stdout,
        "approved phase `{phase}` of {} (sha256 {}) as {who}: {}\npass it to the run with --approval {}",
        plan.runbook.name,
        plan.runbook.sha256,
        path.display(),
        path.display()
    );
    Ok(exit::OK)
}

/// `runbook report html`: report.html drawn again from a report.json.
pub fn report_html(
    report: &Path,
    output: Option<&Path>,
    out: &mut impl Write,
) -> Result<u8, CommandError> {
    let file = if report.is_dir() {
        report.join("report.json")
    } else {
        report.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).map_err(|e| {
        CommandError::invalid(
            format!("failed to read `{}`: {e}", file.display()),
            "give a run's report directory or its report.json",
        )
    })?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .ok()
        .filter(|v: &serde_json::Value| v["report_version"].is_string() && v["run"].is_object())
        .ok_or_else(|| {
            CommandError::invalid(
                format!("`{}` is not a run's report.json", file.display()),
                "give the report.json a run wrote (a fleet's report links to its targets' reports)",
            )
        })?;
    let to = output.map_or_else(|| file.with_file_name("report.html"), Path::to_path_buf);
    crate::fsutil::write_atomic(&to, crate::report::html::render(&value).as_bytes()).map_err(
        |e| {
            CommandError::invalid(
                format!("failed to write `{}`: {e}", to.display()),
                "choose a writable place with -o FILE",
            )
        },
    )?;
    let _ = writeln!(out, "wrote {}", to.display());
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::CommandError;

    /// The exit codes docs/exit-codes.md gives for a command that could
    /// not do its job, and the printed form (message, then the hint).
    #[test]
    fn each_command_error_has_its_documented_exit_code() {
        for (e, code) in [
            (CommandError::invalid("bad flag", "fix it"), 5),
            (CommandError::unavailable("no server", "start it"), 1),
            (CommandError::not_approved("not confirmed", "add --yes"), 6),
        ] {
            let mut out = Vec::new();
            assert_eq!(e.print(&mut out), code, "{e}");
            let text = String::from_utf8(out).unwrap();
            assert_eq!(text, format!("error: {e}\n  = help: {}\n", e.hint()), "{e}");
        }
    }
}
