//! Flyway's layout: `V<version>__<description>.sql` migrations, with
//! `U<version>__<description>.sql` undos (Flyway Teams) as their downs. A
//! version's parts are separated by `_` or `.` (`V1_1__x.sql` is 1.1), and
//! the description's underscores are spaces. A `<file>.conf` beside a
//! script with `executeInTransaction=false` runs it outside a transaction,
//! as Flyway would. Repeatable migrations (`R__<description>.sql`) go to
//! [`Set::repeatables`], in the order of their descriptions. As Flyway
//! scans a location, subdirectories are read too: a script is known by its
//! path below the directory (`1.0/V1_1__x.sql`), which is what Flyway
//! records as its `script`. The configuration's other locations are read
//! too, into the same list ([`Set::flyway_locations`]): their files are
//! named from the directory (`../common/V1__a.sql`), and recorded by their
//! path within their location. A version, or a repeatable description,
//! found twice is refused, as Flyway refuses it.
//!
//! Flyway fills in placeholders (`${name}`) before it runs a script. Its
//! own (`${flyway:defaultSchema}`, `${flyway:user}`…) are filled in here
//! with the values Flyway would give them, once the database is known
//! ([`fill`]). A team's own takes its value where Flyway's command line
//! takes it from the environment, `FLYWAY_PLACEHOLDERS_<NAME>` ([`value`]),
//! else from the project's configuration file (`flyway.placeholders.<name>`,
//! [`super::flyway_conf`]), where one whose name says it is a secret is not
//! taken. A placeholder with neither is refused, unless the script's
//! `.conf`, or the project's file, sets `placeholderReplacement=false`. The
//! checksum stays that of the text as written, as Flyway's is.

use std::ops::Range;
use std::path::Path;

use super::flyway_conf::{Conf, Delimiters, Naming};
use super::{Down, LoadError, Migration, Script, Set, push_versioned, read, script, version_cmp};

/// A Flyway script name: its kind (`V`, `U` or `R`), version and description.
pub(super) struct Name {
    pub kind: char,
    pub version: String,
    pub description: String,
}

/// How Flyway names its scripts here: the endings it reads as scripts
/// (`.sql`, or the configuration's `sqlMigrationSuffixes`), and the
/// prefixes and separator (`V`, `U`, `R`, `__`, or the configuration's).
pub(super) struct Names {
    pub suffixes: Vec<String>,
    pub naming: Naming,
}

impl Names {
    pub fn of(conf: Option<&Conf>) -> Names {
        Names {
            suffixes: match conf {
                Some(c) if !c.suffixes.is_empty() => c.suffixes.clone(),
                _ => vec![".sql".to_string()],
            },
            naming: conf.map(|c| c.naming.clone()).unwrap_or_default(),
        }
    }
}

/// A script's name, as Flyway reads it with `names`.
pub(super) fn parse(file: &str, names: &Names) -> Option<Name> {
    let stem = names
        .suffixes
        .iter()
        .find_map(|s| file.strip_suffix(s.as_str()))?;
    let n = &names.naming;
    // The longest prefix first: a project's own (`CORE_V`) may start with
    // another's letter.
    let mut kinds = [('V', &n.versioned), ('U', &n.undo), ('R', &n.repeatable)];
    kinds.sort_by_key(|(_, prefix)| std::cmp::Reverse(prefix.len()));
    kinds.into_iter().find_map(|(kind, prefix)| {
        let (version, description) = stem
            .strip_prefix(prefix.as_str())?
            .split_once(n.separator.as_str())?;
        let ok = if kind == 'R' {
            version.is_empty()
        } else {
            version.starts_with(|c: char| c.is_ascii_digit())
                && version
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '_' || c == '.')
        };
        ok.then(|| Name {
            kind,
            version: version.replace('_', "."),
            description: description.replace('_', " "),
        })
    })
}

/// Whether `dir` holds Flyway scripts.
pub(super) fn present(dir: &Path) -> Result<bool, LoadError> {
    // A file that cannot be read says nothing here: a directory of another
    // format must not fail on it. A Flyway directory's load reports it.
    let conf = super::flyway_conf::find(dir).ok().flatten();
    let names = Names::of(conf.as_ref());
    Ok(files(dir)?
        .iter()
        .any(|f| parse(file_name(f), &names).is_some()))
}

/// A script's file name, without the directories below the location.
fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Every file below `dir`, as a path relative to it (`/`-separated), in
/// order; hidden directories (`.git`) and links to directories left out.
fn files(dir: &Path) -> Result<Vec<String>, LoadError> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<(), LoadError> {
        let read = std::fs::read_dir(dir).map_err(|e| LoadError::Unreadable {
            path: format!("the migration directory {}", dir.display()),
            why: e.to_string(),
        })?;
        for e in read.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            // A link to a directory is not followed: it may lead back up.
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if !name.starts_with('.') {
                    walk(&path, &format!("{prefix}{name}/"), out)?;
                }
            } else if path.is_file() {
                out.push(format!("{prefix}{name}"));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    out.sort();
    Ok(out)
}

/// Whether a file is one of Refinery's Rust migrations (`V1__name.rs`).
fn refinery_code(file: &str) -> bool {
    file.strip_suffix(".rs")
        .and_then(|stem| stem.strip_prefix(['V', 'U']))
        .and_then(|rest| rest.split_once("__"))
        .is_some_and(|(v, name)| {
            !v.is_empty()
                && v.chars().all(|c| c.is_ascii_digit())
                && !name.is_empty()
                && name.chars().all(|c| c.is_alphanumeric() || c == '_')
        })
}

/// Whether the script's `.conf` file sets `key` to false
/// (`executeInTransaction`, `placeholderReplacement`).
fn conf_false(dir: &Path, file: &str, key: &str) -> bool {
    std::fs::read_to_string(dir.join(format!("{file}.conf"))).is_ok_and(|conf| {
        conf.lines().any(|l| {
            l.split_once('=')
                .is_some_and(|(k, v)| k.trim() == key && v.trim().eq_ignore_ascii_case("false"))
        })
    })
}

/// A script as Flyway reads it: without its byte-order mark, outside a
/// transaction when its `.conf` says so, and with its placeholders checked
/// (`None`, in a tolerant load, when one has no value).
fn read_script(dir: &Path, file: &str, set: &mut Set) -> Result<Option<Script>, LoadError> {
    let text = read(dir, file)?;
    // Refinery, whose files these also are, keeps the mark: its checksum
    // is of the text with it (see `Script::as_written`).
    let bom = text.starts_with('\u{feff}').then(|| text.clone());
    let mut s = script(
        strip_bom(text),
        file.to_string(),
        1,
        conf_false(dir, file, "executeInTransaction"),
    );
    let no_replacement = set.flyway_conf.as_ref().is_some_and(|c| c.no_replacement);
    if no_replacement || conf_false(dir, file, "placeholderReplacement") {
        // Flyway's own setting: left as it is, and never filled in.
        return Ok(Some(s));
    }
    s.written = bom;
    let mut any = false;
    let delimiters = set
        .flyway_conf
        .as_ref()
        .map(|c| c.placeholder.clone())
        .unwrap_or_default();
    for (at, name) in placeholders(&s.sql, &delimiters) {
        let line = 1 + s.sql[..at.start].matches('\n').count();
        let known = builtin(name).is_some();
        match value_in(set.flyway_conf.as_ref(), name) {
            _ if known => {}
            Ok(Some(_)) => {}
            Ok(None) => {
                set.problem(LoadError::FlywayPlaceholder {
                    file: file.to_string(),
                    line,
                    name: name.to_string(),
                    written: s.sql[at.clone()].to_string(),
                })?;
                return Ok(None);
            }
            Err(()) => {
                let conf = set
                    .flyway_conf
                    .as_ref()
                    .map(|c| c.path.display().to_string());
                set.problem(LoadError::FlywaySecretInFile {
                    file: file.to_string(),
                    line,
                    name: name.to_string(),
                    written: s.sql[at.clone()].to_string(),
                    conf: conf.unwrap_or_default(),
                })?;
                return Ok(None);
            }
        }
        any = true;
    }
    if any && s.written.is_none() {
        s.written = Some(s.sql.clone());
    }
    Ok(Some(s))
}

/// Flyway's placeholders in a script: `${name}` (or as the configuration
/// writes them, `$[name]`), on one line, with where each is.
fn placeholders<'t>(text: &'t str, d: &Delimiters) -> Vec<(Range<usize>, &'t str)> {
    let (open, close) = (d.prefix.as_str(), d.suffix.as_str());
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find(open) {
        let start = from + i;
        let rest = &text[start + open.len()..];
        let line = &rest[..rest.find('\n').unwrap_or(rest.len())];
        match line.find(close) {
            Some(len) if len > 0 => {
                let end = start + open.len() + len + close.len();
                out.push((start..end, &rest[..len]));
                from = end;
            }
            _ => from = start + open.len(),
        }
    }
    out
}

/// The environment variables Flyway reads a placeholder's value from.
const ENV_PREFIX: &str = "FLYWAY_PLACEHOLDERS_";

/// The `FLYWAY_PLACEHOLDERS_*` variables, by the name after the prefix.
/// `vars_os`: a variable that is not UTF-8 (any, not only these) would make
/// `std::env::vars` panic; such a one is passed over.
fn placeholder_vars() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(k, v)| {
        let name = k.to_str()?.strip_prefix(ENV_PREFIX)?.to_string();
        Some((name, v.into_string().ok()?))
    })
}

/// The value of a team's own placeholder, from `FLYWAY_PLACEHOLDERS_NAME`
/// as Flyway reads it: the name after the prefix, matched without regard
/// to case (Flyway lowercases the keys it reads, and matches placeholders
/// so).
pub fn value(name: &str) -> Option<String> {
    placeholder_vars().find_map(|(n, v)| n.eq_ignore_ascii_case(name).then_some(v))
}

/// The placeholder values in the environment that name a secret
/// (`FLYWAY_PLACEHOLDERS_APP_PASSWORD`): a filled-in script carries them
/// into an error or a log line, so they are redacted as secret params are.
pub fn secret_values() -> Vec<String> {
    placeholder_vars()
        .filter(|(n, _)| super::flyway_conf::secret_name(n))
        .map(|(_, v)| v)
        .collect()
}

/// A placeholder's value: from the environment as Flyway's command line
/// reads it ([`value`]), else from the project's configuration file.
/// `Err`: the file has it, but its name says it is a secret, which is not
/// taken from a file.
fn value_in(conf: Option<&Conf>, name: &str) -> Result<Option<String>, ()> {
    if let Some(v) = value(name) {
        return Ok(Some(v));
    }
    match conf.and_then(|c| c.placeholders.get(&name.to_ascii_lowercase())) {
        Some(v) if v == super::flyway_conf::SECRET_IN_FILE => Err(()),
        v => Ok(v.cloned()),
    }
}

/// Flyway's own placeholders, by the name after `flyway:`, lowercased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Builtin {
    DefaultSchema,
    User,
    Database,
    Timestamp,
    Filename,
    WorkingDirectory,
    Table,
    Environment,
}

fn builtin(name: &str) -> Option<Builtin> {
    let (prefix, rest) = name.split_once(':')?;
    if !prefix.eq_ignore_ascii_case("flyway") {
        return None;
    }
    Some(match rest.to_ascii_lowercase().as_str() {
        "defaultschema" => Builtin::DefaultSchema,
        "user" => Builtin::User,
        "database" => Builtin::Database,
        "timestamp" => Builtin::Timestamp,
        "filename" => Builtin::Filename,
        "workingdirectory" => Builtin::WorkingDirectory,
        "table" => Builtin::Table,
        "environment" => Builtin::Environment,
        _ => return None,
    })
}

/// The values Flyway gives its own placeholders, for one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Values {
    /// The schema of Flyway's history table (Flyway keeps it in its
    /// default schema), or the session's current schema.
    pub default_schema: String,
    /// The history table's name, without its schema.
    pub table: String,
    pub user: String,
    pub database: String,
    /// When the run started, `yyyy-MM-dd HH:mm:ss`.
    pub timestamp: String,
    pub working_directory: String,
}

/// Fill in Flyway's own placeholders in every script of `set` that has
/// them; `written` keeps the text as its file has it.
pub fn fill(set: &mut Set, values: &Values) {
    let conf = set.flyway_conf.clone();
    let delimiters = conf
        .as_ref()
        .map(|c| c.placeholder.clone())
        .unwrap_or_default();
    let scripts = set.migrations.iter_mut().chain(&mut set.repeatables);
    for m in scripts {
        let down = match &mut m.down {
            Down::Script(d) => Some(d),
            _ => None,
        };
        for s in std::iter::once(&mut m.up).chain(down) {
            let Some(text) = &s.written else { continue };
            let text = text.strip_prefix('\u{feff}').unwrap_or(text);
            let filename = s.file.rsplit('/').next().unwrap_or(&s.file);
            let mut out = String::with_capacity(text.len());
            let mut last = 0;
            for (at, name) in placeholders(text, &delimiters) {
                let own;
                let value = match builtin(name) {
                    Some(Builtin::DefaultSchema) => &values.default_schema,
                    Some(Builtin::User) => &values.user,
                    Some(Builtin::Database) => &values.database,
                    Some(Builtin::Timestamp) => &values.timestamp,
                    Some(Builtin::Filename) => filename,
                    Some(Builtin::WorkingDirectory) => &values.working_directory,
                    Some(Builtin::Table) => &values.table,
                    // Flyway's environment when none is chosen.
                    Some(Builtin::Environment) => "default",
                    None => match value_in(conf.as_ref(), name) {
                        Ok(Some(v)) => {
                            own = v;
                            own.as_str()
                        }
                        _ => continue,
                    },
                };
                out.push_str(&text[last..at.start]);
                out.push_str(value);
                last = at.end;
            }
            out.push_str(&text[last..]);
            s.sql = out;
        }
    }
}

/// A script with each Flyway placeholder replaced by as many `_`s, so that
/// it parses (for lint) and every offset stays where it is in the file;
/// written as `conf` says placeholders are.
pub fn stand_ins<'t>(text: &'t str, conf: Option<&Conf>) -> std::borrow::Cow<'t, str> {
    let found = placeholders(
        text,
        &conf.map(|c| c.placeholder.clone()).unwrap_or_default(),
    );
    if found.is_empty() {
        return text.into();
    }
    let mut out = text.to_string();
    for (at, _) in found {
        out.replace_range(at.clone(), &"_".repeat(at.len()));
    }
    out.into()
}

pub(super) fn load(dir: &Path, set: &mut Set) -> Result<(), LoadError> {
    let (conf, profiles) = super::flyway_conf::find_noting(dir)?;
    set.flyway_conf = conf;
    set.warnings.extend(profiles);
    let names = Names::of(set.flyway_conf.as_ref());
    let suffixes = &names.suffixes;
    let mut ups: Vec<(String, Name)> = Vec::new();
    let mut undos: Vec<(String, Name)> = Vec::new();
    // Flyway reads every location into one list; a file of another one is
    // named from `dir` (`../common/V2__b.sql`).
    let mut all = files(dir)?;
    for (loc, prefix) in set.flyway_locations() {
        all.extend(files(&loc)?.into_iter().map(|f| format!("{prefix}{f}")));
    }
    if let Some(c) = &set.flyway_conf {
        for l in &c.not_found {
            set.warnings.push(format!(
                "{}: Flyway's location `{l}` is not found here, and its migrations are not read. Flyway keeps them in the same history: one applied reads as applied with no file, and one pending is not deployed by this step",
                c.path.display()
            ));
        }
    }
    for file in all {
        match parse(file_name(&file), &names) {
            Some(n) if n.kind == 'V' => ups.push((file, n)),
            Some(n) if n.kind == 'U' => undos.push((file, n)),
            Some(n) => {
                let Some(up) = read_script(dir, &file, set)? else {
                    continue;
                };
                set.repeatables.push(Migration {
                    version: String::new(),
                    name: n.description,
                    checksum: crate::hash::sha256_hex(up.as_written().as_bytes()),
                    up,
                    down: Down::Unavailable,
                    created_ms: None,
                    verify: None,
                    checks: Vec::new(),
                    changeset: None,
                });
            }
            // Refinery's migrations in Rust, beside its SQL ones.
            None if refinery_code(file_name(&file)) => set.problem(LoadError::CodeMigration {
                file,
                tool: "Refinery",
            })?,
            None if let Some(event) = callback(file_name(&file), suffixes) => {
                set.warnings.push(format!(
                    "{file} is a Flyway callback, which Flyway runs at its `{event}` event; runbook does not run callbacks. Where a deploy needs it, run it in a `sql` step of its own (`sql: {{file: ...}}`) where Flyway would"
                ))
            }
            None if suffixes.iter().any(|s| file.ends_with(s.as_str())) => {
                set.warnings.push(format!(
                    "{file} is not named like a Flyway migration (`{}1{}name{}`); it is ignored",
                    names.naming.versioned, names.naming.separator, suffixes[0]
                ))
            }
            None => {}
        }
    }
    // The application's migrations in Java or Kotlin, which Flyway runs in
    // the same order.
    let locations: Vec<_> = set.flyway_locations().into_iter().map(|(l, _)| l).collect();
    // Flyway reads a class's name as a script's, with its fixed prefixes.
    let class_names = Names {
        suffixes: vec![".class".to_string()],
        naming: Naming::default(),
    };
    let read_name = |stem: &str| {
        parse(&format!("{stem}.class"), &class_names).map(|n| (n.kind, n.version, n.description))
    };
    let code = super::flyway_code::find(dir, &locations, &read_name);
    set.warnings.extend(code.warnings);
    set.code_migrations = code.migrations;
    ups.sort_by(|a, b| version_cmp(&a.1.version, &b.1.version));
    set.repeatables.sort_by(|a, b| a.name.cmp(&b.name));
    // Flyway refuses a version, or a repeatable's description, twice.
    let mut twice: Vec<LoadError> = Vec::new();
    for pair in ups.windows(2) {
        if super::same_version(&pair[0].1.version, &pair[1].1.version) {
            twice.push(LoadError::FlywayTwice {
                a: pair[0].0.clone(),
                b: pair[1].0.clone(),
                what: format!("version {}", pair[1].1.version),
            });
        }
    }
    for pair in set.repeatables.windows(2) {
        if pair[0].name == pair[1].name {
            twice.push(LoadError::FlywayTwice {
                a: pair[0].up.file.clone(),
                b: pair[1].up.file.clone(),
                what: format!("the repeatable description `{}`", pair[1].name),
            });
        }
    }
    for c in &set.code_migrations {
        let same = |v: &str| !c.version.is_empty() && super::same_version(v, &c.version);
        let (found, what) = match ups.iter().find(|(_, n)| same(&n.version)) {
            Some((file, _)) => (Some(file), format!("version {}", c.version)),
            None => (
                set.repeatables
                    .iter()
                    .find(|r| c.version.is_empty() && r.name == c.description)
                    .map(|r| &r.up.file),
                format!("the repeatable description `{}`", c.description),
            ),
        };
        if let Some(file) = found {
            twice.push(LoadError::FlywayTwice {
                a: file.clone(),
                b: c.file.clone(),
                what,
            });
        }
    }
    for e in twice {
        set.problem(e)?;
    }
    for (file, n) in &undos {
        if !ups
            .iter()
            .any(|(_, u)| super::same_version(&u.version, &n.version))
        {
            set.problem(LoadError::DownWithoutUp {
                down: file.clone(),
                of: format!("version {}", n.version),
            })?;
        }
    }
    for (file, n) in ups {
        let Some(up) = read_script(dir, &file, set)? else {
            continue;
        };
        let down = match undos
            .iter()
            .find(|(_, u)| super::same_version(&u.version, &n.version))
        {
            Some((f, _)) => match read_script(dir, f, set)? {
                Some(s) => Down::Script(s),
                None => continue,
            },
            None => Down::Missing(format!("there is no U{}__*.sql", n.version)),
        };
        push_versioned(set, &file, n.version, n.description, up, down)?;
    }
    // Undo migrations are a Flyway Teams feature: a directory with none
    // (Conductor's, and most) is forward-only by its team's practice, not
    // missing a down in each migration. One undo makes the others missing.
    if undos.is_empty() && !set.migrations.is_empty() {
        set.forward_only(
            "the directory has no undo (`U`) migrations, which Flyway Community does not run",
        );
    }
    Ok(())
}

/// The event a Flyway SQL callback is for, where the file is one:
/// `afterMigrate.sql`, `beforeEachMigrate__grants.sql` (the event, then
/// `__` and a description, with a script suffix). Flyway matches the
/// event's name as written.
fn callback<'a>(name: &'a str, suffixes: &[String]) -> Option<&'a str> {
    let stem = suffixes
        .iter()
        .find_map(|s| name.strip_suffix(s.as_str()))?;
    let event = stem.split_once("__").map_or(stem, |(e, _)| e);
    let known = event.len() > 6
        && (event.starts_with("before") || event.starts_with("after"))
        && event.chars().all(|c| c.is_ascii_alphabetic())
        && event
            .trim_start_matches("before")
            .trim_start_matches("after")
            .starts_with(|c: char| c.is_ascii_uppercase());
    known.then_some(event)
}

/// Flyway reads scripts without their byte-order mark.
fn strip_bom(text: String) -> String {
    match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    }
}

/// Flyway's checksum of a script: CRC-32 over the UTF-8 bytes of each line
/// without its line ending (so CRLF and LF files agree), as a signed
/// 32-bit number, the way `flyway_schema_history.checksum` stores it.
pub fn checksum(text: &str) -> i32 {
    let mut crc = crc32fast::Hasher::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find(['\n', '\r']).unwrap_or(rest.len());
        crc.update(&rest.as_bytes()[..end]);
        rest = &rest[end..];
        rest = rest
            .strip_prefix("\r\n")
            .or_else(|| rest.strip_prefix('\n'))
            .or_else(|| rest.strip_prefix('\r'))
            .unwrap_or(rest);
    }
    crc.finalize() as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_versions_and_descriptions() {
        let sql = Names::of(None);
        let parse_sql = |f: &str| parse(f, &sql);
        let n = parse_sql("V1_1__Add_users.sql").unwrap();
        assert_eq!(
            (n.kind, n.version.as_str(), n.description.as_str()),
            ('V', "1.1", "Add users")
        );
        assert_eq!(parse_sql("U2__drop.sql").unwrap().version, "2");
        assert_eq!(parse_sql("R__views.sql").unwrap().kind, 'R');
        assert!(
            parse_sql("V__x.sql").is_none()
                && parse_sql("V1_x.sql").is_none()
                && parse_sql("001_x.sql").is_none()
        );
    }

    /// The configuration's `sqlMigrationSuffixes` (AbsaOSS/EventGate's
    /// `.ddl` scripts).
    #[test]
    fn callbacks_are_known_by_their_event() {
        let sql = [".sql".to_string()];
        assert_eq!(callback("afterMigrate.sql", &sql), Some("afterMigrate"));
        assert_eq!(
            callback("beforeEachMigrate__grants.sql", &sql),
            Some("beforeEachMigrate")
        );
        assert_eq!(callback("after.sql", &sql), None);
        assert_eq!(callback("aftermath.sql", &sql), None);
        assert_eq!(callback("afterMigrate.txt", &sql), None);
        assert_eq!(callback("seed.sql", &sql), None);
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("V1__a.sql"), "SELECT 1;").unwrap();
        std::fs::write(d.path().join("afterMigrate.sql"), "SELECT 2;").unwrap();
        std::fs::write(d.path().join("notes.sql"), "SELECT 3;").unwrap();
        let set = crate::migrations::load(d.path(), None).unwrap();
        assert!(
            set.warnings.iter().any(|w| w.starts_with(
                "afterMigrate.sql is a Flyway callback, which Flyway runs at its `afterMigrate` event; runbook does not run callbacks"
            )),
            "{:?}",
            set.warnings
        );
        assert!(
            set.warnings
                .iter()
                .any(|w| w.starts_with("notes.sql is not named like a Flyway migration")),
            "{:?}",
            set.warnings
        );
    }

    #[test]
    fn other_endings_are_scripts_where_the_configuration_says() {
        let ends = Names {
            suffixes: vec![".ddl".to_string(), ".sql".to_string()],
            naming: Naming::default(),
        };
        assert_eq!(
            parse("V1.4.0.1__create_roles.ddl", &ends).unwrap().version,
            "1.4.0.1"
        );
        assert!(parse("V1__x.sql", &ends).is_some());
        assert!(parse("V1__x.ddl", &Names::of(None)).is_none());
        assert!(parse("00_databases.ddl", &ends).is_none());
    }

    #[test]
    fn the_checksum_ignores_line_endings_and_the_bom() {
        // CRC-32 of "CREATE TABLE t (a int);" followed by "SELECT 1;", no newline between.
        let lf = checksum("CREATE TABLE t (a int);\nSELECT 1;\n");
        assert_eq!(lf, checksum("\u{feff}CREATE TABLE t (a int);\r\nSELECT 1;"));
        let mut crc = crc32fast::Hasher::new();
        crc.update(b"CREATE TABLE t (a int);SELECT 1;");
        assert_eq!(lf, crc.finalize() as i32);
        assert_ne!(lf, checksum("CREATE TABLE t (b int);\nSELECT 1;\n"));
    }

    #[test]
    fn placeholders_are_found_filled_and_stood_in_for() {
        let text = "CREATE TABLE ${flyway:defaultSchema}.t (a int);\n\
                    -- ${} and ${ not closed\nSELECT '${FLYWAY:USER}', '${flyway:filename}', '$x';\n";
        let found: Vec<&str> = placeholders(text, &Delimiters::default())
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        assert_eq!(
            found,
            ["flyway:defaultSchema", "FLYWAY:USER", "flyway:filename"]
        );
        assert_eq!(builtin("FLYWAY:USER"), Some(Builtin::User));
        assert_eq!(builtin("flyway:nope"), None);
        assert_eq!(builtin("tenant"), None);
        // Stand-ins keep every offset, and parse as an identifier.
        let stood = stand_ins(text, None);
        assert_eq!(stood.len(), text.len());
        assert!(stood.starts_with("CREATE TABLE _______________________.t (a int);"));
        assert_eq!(stand_ins("SELECT 1;", None), "SELECT 1;");

        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("1.0")).unwrap();
        std::fs::write(d.path().join("1.0/V1__t.sql"), text).unwrap();
        let mut set = super::super::load(d.path(), None).unwrap();
        let up = &set.migrations[0].up;
        assert_eq!(up.written.as_deref(), Some(text));
        let values = Values {
            default_schema: "app".into(),
            table: "flyway_schema_history".into(),
            user: "deploy".into(),
            database: "shop".into(),
            timestamp: "2026-12-01 22:00:00".into(),
            working_directory: "/srv".into(),
        };
        fill(&mut set, &values);
        let up = &set.migrations[0].up;
        assert_eq!(
            up.sql,
            "CREATE TABLE app.t (a int);\n-- ${} and ${ not closed\nSELECT 'deploy', 'V1__t.sql', '$x';\n"
        );
        assert_eq!(up.as_written(), text);

        // One of the team's own: refused, or in lint a warning and the
        // script left out.
        std::fs::write(
            d.path().join("V2__u.sql"),
            "SELECT 1;\nSELECT '${tenant}';\n",
        )
        .unwrap();
        let e = super::super::load(d.path(), None).unwrap_err();
        assert_eq!(
            e,
            LoadError::FlywayPlaceholder {
                file: "V2__u.sql".into(),
                line: 2,
                name: "tenant".into(),
                written: "${tenant}".into(),
            }
        );
        let set = super::super::load_tolerant(d.path()).unwrap();
        assert_eq!(set.migrations.len(), 1);
        assert!(
            set.warnings[0].contains("`${tenant}`"),
            "{:?}",
            set.warnings
        );
    }
}
