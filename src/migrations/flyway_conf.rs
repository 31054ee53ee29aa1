//! Flyway's configuration file, where a Flyway project keeps it: what it
//! says of placeholders, the history table and its schema.
//!
//! Flyway reads `flyway.conf` (Java properties, `flyway.table=...`) or
//! `flyway.toml` (`[flyway]`, `[flyway.placeholders]`,
//! `[environments.default]`) from the directory it runs in, and in its
//! Docker image from `conf/` beside the `sql/` it runs. So the file is
//! looked for in the migration directory and each directory above it, up
//! to the repository's root (outside one, the directory above it), each
//! with its `conf/`; the first found is read. One whose `locations` name
//! other directories is not this directory's, and is passed over.
//!
//! A Spring Boot application's `spring.flyway.*` settings (or a Quarkus
//! application's `quarkus.flyway.*`) come first, where the directory is on
//! its classpath and one of its locations: they configure the Flyway the
//! application runs at start-up, which reads no flyway.conf ([`spring`]).
//!
//! Read: `placeholders.*`, `placeholderReplacement`, `table`,
//! `defaultSchema` and `schemas` (the history is in the default schema,
//! else the first of `schemas`), `sqlMigrationSuffixes` (the endings
//! of script files), the scripts' prefixes and separator
//! (`sqlMigrationPrefix`, `undoSqlMigrationPrefix`,
//! `repeatableSqlMigrationPrefix`, `sqlMigrationSeparator`), the
//! placeholders' (`placeholderPrefix`, `placeholderSuffix`), `group`, `outOfOrder`, `baselineOnMigrate`, `baselineVersion`
//! and `baselineDescription`, and `locations`: the other locations
//! found beside the directory, whose migrations Flyway reads with its
//! own. The connection (`url`, `user`,
//! `password`) is runbook's own, and is never read. A value `${NAME}` (or
//! `${env.NAME}`) is the environment variable's, as Flyway expands it.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::LoadError;
use super::java_properties::properties;
use super::spring::{Spring, module_classpaths, relaxed};

/// What a Flyway configuration file says that runbook uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conf {
    /// The file, as found.
    pub path: PathBuf,
    /// Placeholder values, by name lowercased (Flyway matches them so).
    pub placeholders: BTreeMap<String, String>,
    /// `placeholderReplacement=false`: no script's placeholders are filled.
    pub no_replacement: bool,
    pub table: Option<String>,
    /// The default schema, else the first of `schemas`.
    pub schema: Option<String>,
    /// `sqlMigrationSuffixes`: the endings of script files (`.sql`, the
    /// default, when empty).
    pub suffixes: Vec<String>,
    /// How scripts are named, where the configuration says otherwise
    /// than Flyway's `V`, `U`, `R` and `__`.
    pub naming: Naming,
    /// How a placeholder is written in a script: `${` and `}` unless the
    /// configuration says otherwise (`$[` and `]`).
    pub placeholder: Delimiters,
    /// `outOfOrder`: whether Flyway applies a pending migration older than
    /// the newest applied one, and where that is set (`file:line`).
    pub out_of_order: Option<(bool, String)>,
    /// `schemas`, all of them: where Flyway looks for objects before it
    /// makes a new history (the default schema where none are given).
    pub schemas: Vec<String>,
    /// `group`: whether Flyway applies all pending migrations in one
    /// transaction, and where that is set (`file:line`).
    pub group: Option<(bool, String)>,
    /// `baselineOnMigrate`, and where it is set (`file:line`).
    pub baseline_on_migrate: Option<(bool, String)>,
    /// `baselineVersion` (Flyway's default is 1).
    pub baseline_version: Option<String>,
    /// `baselineDescription` (Flyway's default is `<< Flyway Baseline >>`).
    pub baseline_description: Option<String>,
    /// The other `locations` besides the directory, found here: Flyway
    /// reads their migrations into the same history.
    pub locations: Vec<PathBuf>,
    /// Other `locations` as written, where they are not found here.
    pub not_found: Vec<String>,
}

/// The prefixes and separator of Flyway's script names
/// (`V1__add_users.sql`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    pub versioned: String,
    pub undo: String,
    pub repeatable: String,
    pub separator: String,
}

impl Default for Naming {
    fn default() -> Naming {
        Naming {
            versioned: "V".into(),
            undo: "U".into(),
            repeatable: "R".into(),
            separator: "__".into(),
        }
    }
}

/// The prefix and suffix of Flyway's placeholders in scripts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delimiters {
    pub prefix: String,
    pub suffix: String,
}

impl Default for Delimiters {
    fn default() -> Delimiters {
        Delimiters {
            prefix: "${".into(),
            suffix: "}".into(),
        }
    }
}

impl Conf {
    /// With the other locations [`locate`] found, and the ones it did not.
    fn at(mut self, others: Vec<Result<PathBuf, String>>) -> Conf {
        for o in others {
            match o {
                Ok(p) => self.locations.push(p),
                Err(l) => self.not_found.push(l),
            }
        }
        self
    }

    /// The history table it names, `schema.table`, when it names either.
    pub fn history_table(&self) -> Option<String> {
        if self.table.is_none() && self.schema.is_none() {
            return None;
        }
        let table = self.table.as_deref().unwrap_or("flyway_schema_history");
        Some(match &self.schema {
            Some(s) => format!("{s}.{table}"),
            None => table.to_string(),
        })
    }
}

/// The configuration file of the Flyway project `dir` belongs to, if one
/// is found (see the module's documentation): a Spring Boot or Quarkus
/// application's settings where `dir` is a location it migrates, else a
/// `flyway.toml` or `flyway.conf`.
pub fn find(dir: &Path) -> Result<Option<Conf>, LoadError> {
    find_noting(dir).map(|(conf, _)| conf)
}

/// [`find`], with a warning for each profile of the application whose
/// settings put Flyway's history elsewhere than its default profile's, or
/// where several applications' settings leave it unknown.
pub fn find_noting(dir: &Path) -> Result<(Option<Conf>, Vec<String>), LoadError> {
    spring(dir, || file_conf(dir))
}

/// A `flyway.toml` or `flyway.conf` for `dir`.
fn file_conf(dir: &Path) -> Result<Option<Conf>, LoadError> {
    for place in places(dir) {
        for name in ["flyway.toml", "flyway.conf"] {
            let path = place.join(name);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let raw = if name.ends_with(".toml") {
                toml_keys(&text, &path)?
            } else {
                properties(&text)
            };
            let Some(others) = locate(&raw, &path, dir) else {
                continue;
            };
            return read(&raw, &path).map(|c| Some(c.at(others)));
        }
    }
    Ok(None)
}

/// A Spring Boot application's Flyway settings, in its default profile,
/// where `dir` is on its classpath and is one of its `locations` (by
/// default `classpath:db/migration`), brought to Flyway's own names
/// (`spring.flyway.default-schema` is `flyway.defaultSchema`). Spring
/// configures the Flyway the application runs at start-up from these, and
/// not from a `flyway.conf`. None where it sets none of them, or
/// `spring.flyway.enabled` is false (the application does not migrate).
/// A `${NAME:default}` value is the environment variable's, else its
/// default, as Spring resolves it; one with no default and no such
/// variable is refused.
///
/// A profile's own `schemas`, `default-schema` or `table` is not the
/// deploy's, but an application started with that profile keeps its
/// history there: each that differs is a warning, with the `history:`
/// that deploys to that environment.
///
/// Where the application's settings are not this directory's, or give
/// none of these, the configuration is `otherwise`'s (a flyway.conf).
fn spring(
    dir: &Path,
    otherwise: impl FnOnce() -> Result<Option<Conf>, LoadError>,
) -> Result<(Option<Conf>, Vec<String>), LoadError> {
    let spring = Spring::read(dir, "spring.flyway.");
    let spring = if spring.settings.is_empty() && spring.several.is_empty() {
        Spring::read_quarkus(dir, "quarkus.flyway.")
    } else {
        spring
    };
    if let Some(note) = spring.several_note(
        "Flyway",
        "where the one that deploys these files keeps its history elsewhere than public.flyway_schema_history, say `history: {format: flyway, table: ...}`",
    ) {
        return Ok((otherwise()?, vec![note]));
    }
    // What a `${name}` in a value refers to: read where one does.
    let properties = std::cell::OnceCell::new();
    // A placeholder that takes its value from a setting or variable whose
    // name says it is a secret is kept as a secret-named placeholder is
    // ([`SECRET_IN_FILE`]): its value comes only from
    // `FLYWAY_PLACEHOLDERS_*`, which every output redacts. From the file,
    // it would be a secret in the repository; from another variable, one
    // no output knows to redact.
    let secret_ref = std::cell::Cell::new(false);
    let lookup = |name: &str| {
        if secret_name(name.rsplit('.').next().unwrap_or(name)) {
            secret_ref.set(true);
        }
        properties
            .get_or_init(|| super::spring::Properties::read(dir))
            .lookup(name)
    };
    let mut raw: Raw = Vec::new();
    let mut file: Option<PathBuf> = None;
    let mut enabled = true;
    let mut profiles: Vec<(String, &str, &str, &str)> = Vec::new();
    // Where a boolean is set, as a warning or refusal names it.
    let mut at_of: Vec<(String, String)> = Vec::new();
    for x in &spring.settings {
        let Some((key, rest)) = flyway_key(&x.key) else {
            continue;
        };
        let (at_file, line) = match x.at.rsplit_once(':') {
            Some((f, l)) => (PathBuf::from(f), l.parse().unwrap_or(1)),
            None => (PathBuf::from(&x.at), 1),
        };
        if !x.default_profile {
            if ["schemas", "defaultschema", "table"].contains(&relaxed(rest).as_str()) {
                profiles.push((key, &x.value, &x.at, &x.key));
            }
            continue;
        }
        secret_ref.set(false);
        let mut value = expand_with(&x.value, &at_file, line, Some(&lookup))?;
        if secret_ref.get() && key.starts_with("flyway.placeholders.") {
            value = SECRET_IN_FILE.to_string();
        }
        if key == "flyway.enabled" {
            enabled = !value.eq_ignore_ascii_case("false");
            continue;
        }
        if [
            "flyway.outOfOrder",
            "flyway.baselineOnMigrate",
            "flyway.group",
        ]
        .contains(&key.as_str())
        {
            // Spring's and Quarkus's other spellings of a boolean.
            value = match value.to_ascii_lowercase().as_str() {
                "on" | "yes" | "1" => "true".into(),
                "off" | "no" | "0" => "false".into(),
                _ => value,
            };
            at_of.push((key.clone(), x.at.clone()));
        }
        file.get_or_insert(at_file);
        raw.push((key, value, line));
    }
    if !enabled {
        return Ok((otherwise()?, Vec::new()));
    }
    if !raw.iter().any(|(k, _, _)| k == "flyway.locations") {
        raw.push((
            "flyway.locations".into(),
            "classpath:db/migration".into(),
            1,
        ));
    }
    for (k, v, _) in &mut raw {
        if k == "flyway.locations" {
            *v = v.replace("{vendor}", "postgresql");
        }
    }
    let here = file.clone().unwrap_or_else(|| dir.to_path_buf());
    let Some(others) = locate(&raw, &here, dir) else {
        return Ok((otherwise()?, Vec::new()));
    };
    let conf = match &file {
        Some(f) => {
            let mut c = read(&raw, f)?.at(others);
            // Where the application's settings span several files.
            for (key, x) in at_of {
                let setting = match key.as_str() {
                    "flyway.outOfOrder" => &mut c.out_of_order,
                    "flyway.group" => &mut c.group,
                    _ => &mut c.baseline_on_migrate,
                };
                if let Some((_, at)) = setting {
                    *at = x;
                }
            }
            Some(c)
        }
        None => otherwise()?,
    };
    let history = |c: Option<&Conf>| {
        c.and_then(Conf::history_table)
            .unwrap_or_else(|| "flyway_schema_history".into())
    };
    let deploys = history(conf.as_ref());
    let mut notes = Vec::new();
    for (key, value, at, written) in profiles {
        let mut theirs = raw.clone();
        theirs.push((key, value.to_string(), 1));
        let Ok(c) = read(&theirs, &here) else {
            continue;
        };
        let table = history(Some(&c));
        if table != deploys && !value.contains("${") {
            notes.push(format!(
                "{at}: a profile's `{written}` is `{value}`: an application started with that profile keeps Flyway's history in {table}, where this step uses {deploys}. Deploying to that environment, say `history: {{format: flyway, table: {table}}}`"
            ));
        }
    }
    Ok((conf, notes))
}

/// A `spring.flyway.*` or `quarkus.flyway.*` key (after a Quarkus
/// profile's `%name.`) as Flyway's own (`flyway.defaultSchema`), and the
/// part after the prefix as written (a placeholder's name is kept as it
/// is; only the prefix is compared loosely).
fn flyway_key(key: &str) -> Option<(String, &str)> {
    let key = match key.strip_prefix('%') {
        Some(k) => k.split_once('.')?.1,
        None => key,
    };
    let rest = key.splitn(3, '.').nth(2)?;
    let own = match relaxed(rest).as_str() {
        "enabled" | "active" => "flyway.enabled".to_string(),
        "defaultschema" => "flyway.defaultSchema".to_string(),
        "schemas" => "flyway.schemas".to_string(),
        "table" => "flyway.table".to_string(),
        "placeholderreplacement" => "flyway.placeholderReplacement".to_string(),
        "sqlmigrationsuffixes" => "flyway.sqlMigrationSuffixes".to_string(),
        "sqlmigrationprefix" => "flyway.sqlMigrationPrefix".to_string(),
        "undosqlmigrationprefix" => "flyway.undoSqlMigrationPrefix".to_string(),
        "repeatablesqlmigrationprefix" => "flyway.repeatableSqlMigrationPrefix".to_string(),
        "sqlmigrationseparator" => "flyway.sqlMigrationSeparator".to_string(),
        "placeholderprefix" => "flyway.placeholderPrefix".to_string(),
        "placeholdersuffix" => "flyway.placeholderSuffix".to_string(),
        "outoforder" => "flyway.outOfOrder".to_string(),
        "group" => "flyway.group".to_string(),
        "baselineonmigrate" => "flyway.baselineOnMigrate".to_string(),
        "baselineversion" => "flyway.baselineVersion".to_string(),
        "baselinedescription" => "flyway.baselineDescription".to_string(),
        "locations" => "flyway.locations".to_string(),
        r if r.starts_with("placeholders.") => {
            format!("flyway.placeholders.{}", &rest["placeholders.".len()..])
        }
        _ => return None,
    };
    Some((own, rest))
}

/// Where a configuration file is looked for, in order: `dir`, then each
/// directory above it up to the repository's root (the one holding
/// `.git`), each with its `conf/`. Outside a repository, `dir` and the
/// directory above it.
fn places(dir: &Path) -> Vec<PathBuf> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let ancestors: Vec<&Path> = dir.ancestors().collect();
    let root = ancestors.iter().position(|a| a.join(".git").exists());
    let last = root.unwrap_or(1.min(ancestors.len().saturating_sub(1)));
    ancestors[..=last]
        .iter()
        .flat_map(|a| [a.to_path_buf(), a.join("conf")])
        .collect()
}

/// A key as Flyway's properties name it (`flyway.table`), with its value
/// and line; TOML keys are brought to the same names.
type Raw = Vec<(String, String, usize)>;

fn refused(path: &Path, line: usize, why: String) -> LoadError {
    LoadError::FlywayConf {
        at: format!("{}:{line}", path.display()),
        why,
    }
}

/// `flyway.toml`: `[flyway]`'s keys as `flyway.<key>`, its placeholders as
/// `flyway.placeholders.<name>`, and the chosen environment's `schemas`
/// (`[flyway] environment`, else `default`) as `flyway.schemas` where
/// `[flyway]` gives none.
fn toml_keys(text: &str, path: &Path) -> Result<Raw, LoadError> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| {
            1 + text[..s.start.min(text.len())].matches('\n').count()
        });
        refused(path, line, format!("not TOML: {}", e.message()))
    })?;
    let line_of = |key: &str| {
        text.lines()
            .position(|l| l.trim_start().starts_with(key))
            .map_or(1, |i| i + 1)
    };
    let scalar = |v: &toml::Value| match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Array(a) => Some(
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect::<Vec<_>>()
                .join(","),
        ),
        _ => None,
    };
    let mut out = Vec::new();
    let flyway = doc.get("flyway").and_then(toml::Value::as_table);
    if let Some(f) = flyway {
        for (k, v) in f {
            if k == "placeholders" {
                for (name, value) in v.as_table().into_iter().flatten() {
                    if let Some(value) = scalar(value) {
                        out.push((format!("flyway.placeholders.{name}"), value, line_of(name)));
                    }
                }
            } else if let Some(value) = scalar(v) {
                out.push((format!("flyway.{k}"), value, line_of(k)));
            }
        }
    }
    let env = flyway
        .and_then(|f| f.get("environment"))
        .and_then(toml::Value::as_str)
        .unwrap_or("default");
    let schemas = doc
        .get("environments")
        .and_then(|e| e.get(env))
        .and_then(|e| e.get("schemas"))
        .and_then(scalar);
    if let Some(s) = schemas
        && !out.iter().any(|(k, _, _)| k == "flyway.schemas")
    {
        out.push(("flyway.schemas".into(), s, line_of("schemas")));
    }
    Ok(out)
}

/// `${NAME}` and `${env.NAME}` replaced with the environment's values, as
/// Flyway expands them in its configuration.
fn expand(value: &str, path: &Path, line: usize) -> Result<String, LoadError> {
    expand_with(value, path, line, None)
}

/// How deep one placeholder's value may hold another.
const NESTED: usize = 8;

/// An application's setting by name ([`super::spring::Properties::lookup`]).
type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// [`expand`], or, given an application's `properties`, as Spring and
/// Quarkus resolve its settings: `${name}` is the environment's, else the
/// application's own setting of that name (`${app.db.schema}`), else the
/// default after `:`. One none of them gives is refused.
fn expand_with(
    value: &str,
    path: &Path,
    line: usize,
    properties: Option<Lookup<'_>>,
) -> Result<String, LoadError> {
    expand_nested(value, path, line, properties, 0)
}

fn expand_nested(
    value: &str,
    path: &Path,
    line: usize,
    properties: Option<Lookup<'_>>,
    depth: usize,
) -> Result<String, LoadError> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find("${") {
        let Some(len) = rest[at + 2..].find('}') else {
            break;
        };
        let name = &rest[at + 2..at + 2 + len];
        let (var, default) = match name.split_once(':').filter(|_| properties.is_some()) {
            Some((n, d)) => (n, Some(d)),
            None => (name.strip_prefix("env.").unwrap_or(name), None),
        };
        let found = match properties {
            Some(lookup) if depth < NESTED => lookup(var)
                .map(|v| expand_nested(&v, path, line, properties, depth + 1))
                .transpose()?,
            _ => std::env::var(var).ok(),
        };
        let v = match (found, default) {
            (Some(v), _) => v,
            (None, Some(d)) => d.to_string(),
            (None, None) => {
                let whose = match properties {
                    Some(_) => ", nor a setting of the application's",
                    None => "",
                };
                return Err(refused(
                    path,
                    line,
                    format!(
                        "`${{{name}}}` is the environment variable {var}, which is not set{whose}"
                    ),
                ));
            }
        };
        out.push_str(&rest[..at]);
        out.push_str(&v);
        rest = &rest[at + 2 + len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn read(raw: &Raw, path: &Path) -> Result<Conf, LoadError> {
    let mut conf = Conf {
        path: path.to_path_buf(),
        ..Conf::default()
    };
    let mut schemas = None;
    for (key, value, line) in raw {
        let Some(key) = key.strip_prefix("flyway.") else {
            continue;
        };
        if let Some(name) = key.strip_prefix("placeholders.") {
            let value = expand(value, path, *line)?;
            if secret_name(name) {
                // Kept for the check where it would be used: a value
                // given in the environment never needs it.
                conf.placeholders
                    .insert(name.to_ascii_lowercase(), SECRET_IN_FILE.to_string());
            } else {
                conf.placeholders.insert(name.to_ascii_lowercase(), value);
            }
            continue;
        }
        match key {
            "placeholderReplacement" => {
                conf.no_replacement = expand(value, path, *line)?.eq_ignore_ascii_case("false");
            }
            "table" => conf.table = Some(expand(value, path, *line)?),
            // `sqlMigrationSuffix` is Flyway's older, single one.
            "sqlMigrationSuffixes" | "sqlMigrationSuffix" => {
                conf.suffixes = expand(value, path, *line)?
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            "defaultSchema" => conf.schema = Some(expand(value, path, *line)?),
            "sqlMigrationPrefix"
            | "undoSqlMigrationPrefix"
            | "repeatableSqlMigrationPrefix"
            | "sqlMigrationSeparator"
            | "placeholderPrefix"
            | "placeholderSuffix" => {
                // Taken as written: a placeholder prefix is often `${`'s
                // look-alike, which is not expanded.
                let v = value.trim().to_string();
                let (field, may_be_empty) = match key {
                    "sqlMigrationPrefix" => (&mut conf.naming.versioned, true),
                    "undoSqlMigrationPrefix" => (&mut conf.naming.undo, false),
                    "repeatableSqlMigrationPrefix" => (&mut conf.naming.repeatable, false),
                    "sqlMigrationSeparator" => (&mut conf.naming.separator, false),
                    "placeholderPrefix" => (&mut conf.placeholder.prefix, false),
                    _ => (&mut conf.placeholder.suffix, false),
                };
                if v.is_empty() && !may_be_empty {
                    return Err(refused(
                        path,
                        *line,
                        format!("`{key}` is empty: Flyway could not tell a script's parts apart"),
                    ));
                }
                *field = v;
            }
            "outOfOrder" => conf.out_of_order = Some(boolean(key, value, path, *line)?),
            "group" => conf.group = Some(boolean(key, value, path, *line)?),
            "baselineOnMigrate" => {
                conf.baseline_on_migrate = Some(boolean(key, value, path, *line)?);
            }
            "baselineVersion" => {
                // Written as a script's version is (`1.1` or `1_1`).
                let v = expand(value, path, *line)?.trim().replace('_', ".");
                if v.split('.')
                    .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
                {
                    return Err(refused(
                        path,
                        *line,
                        format!("`baselineVersion` is `{v}`: expected a version such as 1 or 2.1"),
                    ));
                }
                conf.baseline_version = Some(v);
            }
            "baselineDescription" => {
                conf.baseline_description = Some(expand(value, path, *line)?);
            }
            "schemas" => {
                conf.schemas = expand(value, path, *line)?
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                schemas = conf.schemas.first().cloned();
            }
            _ => {}
        }
    }
    if conf.schema.is_none() {
        conf.schema = schemas;
    }
    Ok(conf)
}

/// A boolean setting, with where it is set (`file:line`); another value
/// is refused.
fn boolean(key: &str, value: &str, path: &Path, line: usize) -> Result<(bool, String), LoadError> {
    let at = format!("{}:{line}", path.display());
    match expand(value, path, line)?.as_str() {
        v if v.eq_ignore_ascii_case("true") => Ok((true, at)),
        v if v.eq_ignore_ascii_case("false") => Ok((false, at)),
        v => Err(refused(
            path,
            line,
            format!("`{key}` is `{v}`: expected true or false"),
        )),
    }
}

/// Whether a placeholder's name says that it is a secret.
pub(super) fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    [
        "PASSWORD",
        "PASSWD",
        "PWD",
        "SECRET",
        "TOKEN",
        "KEY",
        "CREDENTIAL",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// What a placeholder whose name says it is a secret stands for in
/// [`Conf::placeholders`]: its value is not taken from a file.
pub const SECRET_IN_FILE: &str = "\u{0}secret in a file";

/// The other locations of a configuration that is about `dir`, each found
/// here (`Ok`) or not (`Err`, as written); None where the file is not
/// about `dir`. It is where it names no `locations`, or one of them is
/// `dir`: a `filesystem:` path, relative to the file's directory, or one
/// `dir`'s path ends with; or the `classpath:` path `dir` ends with.
///
/// Another location is found as a `filesystem:` path, or as a
/// `classpath:` path under the classpath root `dir` is found in, else in
/// the one other module of the repository whose `src/main/resources` has
/// it (a shared module, on the application's classpath as a jar). One
/// that holds `dir`, or is within it, is left out: `dir`'s files are read
/// with their subdirectories.
fn locate(raw: &Raw, path: &Path, dir: &Path) -> Option<Vec<Result<PathBuf, String>>> {
    let Some((_, locations, _)) = raw.iter().find(|(k, _, _)| k == "flyway.locations") else {
        return Some(Vec::new());
    };
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let base = path.parent().unwrap_or(Path::new("."));
    // A path where it is, else, for a file written for a container that
    // the repository is copied into (`/app/supabase/migrations` for the
    // repository's `supabase/migrations`), the same path's end beside the
    // file.
    let filesystem = |fs: &str| {
        let p = Path::new(fs);
        let here = if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        };
        here.canonicalize().ok().or_else(|| {
            let parts: Vec<_> = p
                .components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .collect();
            (1..parts.len()).find_map(|skip| {
                let tail: PathBuf = parts[skip..].iter().collect();
                let there = base.join(tail);
                there.is_dir().then(|| there.canonicalize().ok()).flatten()
            })
        })
    };
    // From the classpath's root, with or without a leading `/`.
    let classpath = |l: &str| {
        l.strip_prefix("classpath:")
            .unwrap_or(l)
            .trim_start_matches('/')
            .trim_end_matches('/')
            .to_string()
    };
    let locations: Vec<&str> = locations
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let names_dir = |l: &str| match l.strip_prefix("filesystem:") {
        // Or the same path at its end: the file was written for where
        // the directory is mounted (`/flyway/sql` in Flyway's image).
        Some(fs) => {
            let tail = fs.trim_start_matches('/');
            filesystem(fs).is_some_and(|p| p == dir) || (!tail.is_empty() && dir.ends_with(tail))
        }
        None => {
            let cp = classpath(l);
            !cp.is_empty() && dir.ends_with(&cp)
        }
    };
    if !locations.iter().any(|l| names_dir(l)) {
        return None;
    }
    // The classpath's root, where a `classpath:` location names `dir`.
    let root = locations
        .iter()
        .filter(|l| !l.starts_with("filesystem:") && names_dir(l))
        .find_map(|l| {
            dir.ancestors()
                .nth(Path::new(&classpath(l)).components().count())
        });
    let mut modules: Option<Vec<PathBuf>> = None;
    let mut others = Vec::new();
    for l in locations.into_iter().filter(|l| !names_dir(l)) {
        let found = match l.strip_prefix("filesystem:") {
            Some(fs) => filesystem(fs),
            None => {
                let cp = classpath(l);
                let own = root.as_ref().and_then(|r| r.join(&cp).canonicalize().ok());
                own.or_else(|| {
                    let modules = modules.get_or_insert_with(|| module_classpaths(&dir));
                    let mut there = modules
                        .iter()
                        .filter_map(|m| m.join(&cp).canonicalize().ok())
                        .filter(|p| p.is_dir());
                    match (there.next(), there.next()) {
                        (Some(p), None) => Some(p),
                        _ => None,
                    }
                })
            }
        };
        match found {
            Some(p) if p.starts_with(&dir) || dir.starts_with(&p) => {}
            Some(p) if p.is_dir() => {
                if !others.contains(&Ok(p.clone())) {
                    others.push(Ok(p));
                }
            }
            _ => others.push(Err(l.to_string())),
        }
    }
    Some(others)
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::temp_tree as write;

    #[test]
    fn properties_and_toml_say_the_same() {
        let d = write(&[
            (
                "flyway.conf",
                "# the project\nflyway.url=jdbc:postgresql://db/app\nflyway.password=hunter2\n\
                 flyway.locations=filesystem:sql\nflyway.schemas=app,audit\nflyway.table=schema_version\n\
                 flyway.placeholders.Tenant=acme\nflyway.placeholders.long=a\\\n  b\n",
            ),
            ("sql/V1__a.sql", "SELECT 1;"),
        ]);
        let conf = find(&d.path().join("sql")).unwrap().unwrap();
        assert_eq!(conf.history_table().as_deref(), Some("app.schema_version"));
        assert_eq!(conf.placeholders["tenant"], "acme");
        assert_eq!(conf.placeholders["long"], "ab");
        assert!(!conf.no_replacement);

        let d = write(&[
            (
                "flyway.toml",
                "[environments.default]\nurl = \"jdbc:postgresql://db/app\"\nschemas = [\"app\"]\n\n\
                 [flyway]\nlocations = [\"filesystem:sql\"]\nplaceholderReplacement = false\n\n\
                 [flyway.placeholders]\ntenant = \"acme\"\n",
            ),
            ("sql/V1__a.sql", "SELECT 1;"),
        ]);
        let conf = find(&d.path().join("sql")).unwrap().unwrap();
        assert_eq!(
            conf.history_table().as_deref(),
            Some("app.flyway_schema_history")
        );
        assert_eq!(conf.placeholders["tenant"], "acme");
        assert!(conf.no_replacement);
    }

    /// `outOfOrder` and `baselineOnMigrate`, and where each is set: in a flyway.conf or flyway.toml,
    /// or as an application's setting in any of Spring's spellings of a
    /// boolean, in whichever of its files says it. Another value is
    /// refused, naming the line.
    #[test]
    fn out_of_order_is_read_with_where_it_is_set() {
        let d = write(&[("flyway.conf", "flyway.table=t\nflyway.outOfOrder=TRUE\n")]);
        let conf = find(d.path()).unwrap().unwrap();
        let at = format!("{}:2", d.path().join("flyway.conf").display());
        assert_eq!(conf.out_of_order, Some((true, at)));
        let d = write(&[("flyway.toml", "[flyway]\noutOfOrder = false\n")]);
        let conf = find(d.path()).unwrap().unwrap();
        assert_eq!(conf.out_of_order.map(|(v, _)| v), Some(false));
        let d = write(&[("flyway.conf", "flyway.baselineVersion=1_1\n")]);
        let conf = find(d.path()).unwrap().unwrap();
        assert_eq!(conf.baseline_version.as_deref(), Some("1.1"));
        let d = write(&[("flyway.conf", "flyway.baselineVersion=latest\n")]);
        let e = find(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("flyway.conf:1") && e.contains("`baselineVersion` is `latest`"),
            "{e}"
        );
        let d = write(&[("flyway.conf", "flyway.outOfOrder=sometimes\n")]);
        let e = find(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("flyway.conf:1")
                && e.contains("`outOfOrder` is `sometimes`: expected true or false"),
            "{e}"
        );

        let d = write(&[
            (".git/HEAD", "ref: refs/heads/main\n"),
            (
                "src/main/resources/application.yml",
                "spring:\n  flyway:\n    table: t\n    baseline-version: 0\n",
            ),
            (
                "src/main/resources/application.properties",
                "spring.flyway.out-of-order=yes\nspring.flyway.baselineOnMigrate=on\nspring.flyway.group=1\n",
            ),
            ("src/main/resources/db/migration/V1__a.sql", "SELECT 1;"),
        ]);
        let conf = find(&d.path().join("src/main/resources/db/migration"))
            .unwrap()
            .unwrap();
        let (on, at) = conf.out_of_order.clone().unwrap();
        assert!(on);
        assert!(at.ends_with("application.properties:1"), "{at}");
        assert!(conf.path.ends_with("application.yml"), "{conf:?}");
        // So is `baselineOnMigrate`, with its version from the other file.
        let (on, at) = conf.baseline_on_migrate.clone().unwrap();
        assert!(on && at.ends_with("application.properties:2"), "{at}");
        assert_eq!(conf.baseline_version.as_deref(), Some("0"));
        // And `group`.
        let (on, at) = conf.group.clone().unwrap();
        assert!(on && at.ends_with("application.properties:3"), "{at}");
    }

    /// The other locations a configuration names besides the directory:
    /// `filesystem:` ones from the file, `classpath:` ones under the root
    /// the directory is found in; one holding the directory, or within it,
    /// is its own; one not here is kept as written.
    #[test]
    fn other_locations_are_found_beside_the_directory() {
        let d = write(&[
            (".git/HEAD", "ref: refs/heads/main\n"),
            (
                "flyway.conf",
                "flyway.locations=filesystem:sql/ddl,filesystem:sql/data,filesystem:sql/ddl/sub,filesystem:sql,filesystem:/flyway/extra\n",
            ),
            ("sql/ddl/V1__a.sql", "SELECT 1;"),
            ("sql/ddl/sub/V2__b.sql", "SELECT 1;"),
            ("sql/data/V3__c.sql", "SELECT 1;"),
        ]);
        let conf = find(&d.path().join("sql/ddl")).unwrap().unwrap();
        let data = d.path().join("sql/data").canonicalize().unwrap();
        assert_eq!(conf.locations, [data]);
        assert_eq!(conf.not_found, ["filesystem:/flyway/extra"]);

        let d = write(&[
            (".git/HEAD", "ref: refs/heads/main\n"),
            (
                "src/main/resources/application.properties",
                "spring.flyway.locations=classpath:/db/common/,classpath:db/{vendor}\n",
            ),
            ("src/main/resources/db/common/V1__a.sql", "SELECT 1;"),
            ("src/main/resources/db/postgresql/V2__b.sql", "SELECT 1;"),
        ]);
        let res = d.path().join("src/main/resources");
        let conf = find(&res.join("db/postgresql")).unwrap().unwrap();
        assert_eq!(
            conf.locations,
            [res.join("db/common").canonicalize().unwrap()]
        );
        assert!(conf.not_found.is_empty(), "{conf:?}");

        // A location that only a shared module of the repository has: the
        // application has that module's jar on its classpath.
        let d = write(&[
            (".git/HEAD", "ref: refs/heads/main\n"),
            (
                "app/src/main/resources/application.properties",
                "spring.flyway.locations=classpath:db/migration/app,classpath:db/migration/common,classpath:db/none\n",
            ),
            (
                "app/src/main/resources/db/migration/app/V2__b.sql",
                "SELECT 1;",
            ),
            (
                "shared/src/main/resources/db/migration/common/V1__a.sql",
                "SELECT 1;",
            ),
        ]);
        let conf = find(&d.path().join("app/src/main/resources/db/migration/app"))
            .unwrap()
            .unwrap();
        let common = d
            .path()
            .join("shared/src/main/resources/db/migration/common");
        assert_eq!(conf.locations, [common.canonicalize().unwrap()]);
        assert_eq!(conf.not_found, ["classpath:db/none"]);
    }

    /// A Spring application's `spring.flyway.*`, in its default profile,
    /// for the locations it migrates; over a flyway.conf, which the
    /// application does not read.
    #[test]
    fn a_spring_application_s_settings_are_its_flyway_s() {
        let migrations = "src/main/resources/db/migration";
        let d = write(&[
            (".git/HEAD", "ref: refs/heads/main\n"),
            ("flyway.conf", "flyway.table=from_the_cli\n"),
            (
                "src/main/resources/application.properties",
                "spring.flyway.schemas=${SVC_SCHEMA_SURELY_UNSET:svc}\nspring.flyway.table=svc_history\n\
                 spring.flyway.placeholders.Region=eu\nspring.flyway.placeholder-replacement=true\n",
            ),
            (
                "src/main/resources/application-test.properties",
                "spring.flyway.schemas=test\n",
            ),
            ("src/main/resources/db/migration/V1__a.sql", "SELECT 1;"),
        ]);
        let (conf, profiles) = find_noting(&d.path().join(migrations)).unwrap();
        let conf = conf.unwrap();
        assert_eq!(conf.history_table().as_deref(), Some("svc.svc_history"));
        assert_eq!(conf.placeholders["region"], "eu");
        // The test profile's schema is where that application keeps it.
        assert_eq!(profiles.len(), 1, "{profiles:?}");
        assert!(
            profiles[0].contains(
                "application-test.properties:1: a profile's `spring.flyway.schemas` is `test`"
            ) && profiles[0].ends_with("say `history: {format: flyway, table: test.svc_history}`"),
            "{profiles:?}"
        );
        assert!(conf.path.ends_with("application.properties"), "{conf:?}");
        // `{vendor}` is PostgreSQL's directory; a leading `/` is the
        // classpath's root all the same.
        std::fs::write(
            d.path().join("src/main/resources/application.properties"),
            "spring.flyway.locations=classpath:/db/migration/{vendor}\nspring.flyway.table=t\n",
        )
        .unwrap();
        let vendor = d.path().join(migrations).join("postgresql");
        std::fs::create_dir_all(&vendor).unwrap();
        assert_eq!(
            find(&vendor).unwrap().unwrap().history_table().as_deref(),
            Some("t")
        );
        // Turned off, or for another location: the flyway.conf is read.
        for props in [
            "spring.flyway.enabled=false\nspring.flyway.table=t\n",
            "spring.flyway.locations=classpath:db/other\nspring.flyway.table=t\n",
        ] {
            std::fs::write(
                d.path().join("src/main/resources/application.properties"),
                props,
            )
            .unwrap();
            let conf = find(&d.path().join(migrations)).unwrap().unwrap();
            assert_eq!(
                conf.history_table().as_deref(),
                Some("from_the_cli"),
                "{props}"
            );
        }
        // No default-profile settings: the flyway.conf is read, and a
        // profile's own place is said against it.
        std::fs::write(
            d.path().join("src/main/resources/application.properties"),
            "server.port=8080\n",
        )
        .unwrap();
        let (conf, profiles) = find_noting(&d.path().join(migrations)).unwrap();
        assert_eq!(
            conf.unwrap().history_table().as_deref(),
            Some("from_the_cli")
        );
        assert!(
            profiles.len() == 1
                && profiles[0].contains(
                    "keeps Flyway's history in test.flyway_schema_history, where this step uses from_the_cli"
                ),
            "{profiles:?}"
        );
        // A value only the environment gives, and it does not: refused,
        // with the file and line.
        std::fs::write(
            d.path().join("src/main/resources/application.properties"),
            "spring.flyway.table=t\nspring.flyway.schemas=${SVC_SCHEMA_SURELY_UNSET}\n",
        )
        .unwrap();
        let e = find(&d.path().join(migrations)).unwrap_err().to_string();
        assert!(
            e.contains("application.properties:2")
                && e.contains(
                    "SVC_SCHEMA_SURELY_UNSET, which is not set, nor a setting of the application's"
                ),
            "{e}"
        );
        // A value that names another setting of the application (as
        // hiero-mirror-node's `${hiero.mirror.importer.db.schema}` does):
        // that setting's, in YAML, itself through one more, unless the
        // environment gives it in Spring's spelling.
        std::fs::remove_file(d.path().join("src/main/resources/application.properties")).unwrap();
        std::fs::write(
            d.path().join("src/main/resources/application.yml"),
            "svc:\n  db:\n    schema: ${svc.db.owner-schema}\n    owner-schema: ledger\n    password: hunter2\n\
             spring:\n  flyway:\n    schemas: ${svc.db.schema}\n    placeholders:\n      \
             gone: ${svc.db.surely-unset:none}\n      home: ${home:none}\n      conn: ${svc.db.password}\n",
        )
        .unwrap();
        let conf = find(&d.path().join(migrations)).unwrap().unwrap();
        assert_eq!(conf.schemas, ["ledger"]);
        assert_eq!(conf.placeholders["gone"], "none");
        // A secret-named setting's value is not taken, though the
        // placeholder's own name says nothing.
        assert_eq!(conf.placeholders["conn"], SECRET_IN_FILE);
        // `${home}` is the environment's HOME, in Spring's spelling.
        assert_eq!(
            conf.placeholders["home"],
            std::env::var("HOME").unwrap_or_else(|_| "none".into())
        );
    }

    /// How a project names its scripts and writes its placeholders, from
    /// a flyway.conf or a Spring application's settings.
    #[test]
    fn script_names_and_placeholders_are_read_as_written() {
        let d = write(&[
            (".git/HEAD", "ref: refs/heads/main\n"),
            (
                "src/main/resources/application.properties",
                "spring.flyway.sql-migration-prefix=M\nspring.flyway.sqlMigrationSeparator=--\n\
                 spring.flyway.placeholder-prefix=#(\nspring.flyway.placeholder-suffix=)\n",
            ),
            ("src/main/resources/db/migration/M1--a.sql", "SELECT 1;"),
        ]);
        let conf = find(&d.path().join("src/main/resources/db/migration"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                conf.naming.versioned.as_str(),
                conf.naming.separator.as_str()
            ),
            ("M", "--")
        );
        assert_eq!(conf.naming.repeatable, "R");
        assert_eq!(
            (
                conf.placeholder.prefix.as_str(),
                conf.placeholder.suffix.as_str()
            ),
            ("#(", ")")
        );
        // A flyway.conf's `${`-like prefix is taken as written.
        let d = write(&[
            (
                "flyway.conf",
                "flyway.placeholderPrefix=flyway${\nflyway.sqlMigrationPrefix=\n",
            ),
            ("1__a.sql", "SELECT 1;"),
        ]);
        let conf = find(d.path()).unwrap().unwrap();
        assert_eq!(conf.placeholder.prefix, "flyway${");
        assert_eq!(conf.naming.versioned, "");
    }

    /// A Quarkus application's `quarkus.flyway.*`, with `%prod.` winning
    /// (the profile a packaged application runs with) and `%dev.` a
    /// profile's own.
    #[test]
    fn a_quarkus_application_s_settings_are_its_flyway_s() {
        let d = write(&[
            (".git/HEAD", "ref: refs/heads/main\n"),
            (
                "src/main/resources/application.properties",
                "quarkus.flyway.migrate-at-start=true\nquarkus.flyway.schemas=inventory\n\
                 %prod.quarkus.flyway.table=inventory_history\n%dev.quarkus.flyway.schemas=dev\n",
            ),
            ("src/main/resources/db/migration/V1__a.sql", "SELECT 1;"),
        ]);
        let (conf, profiles) =
            find_noting(&d.path().join("src/main/resources/db/migration")).unwrap();
        assert_eq!(
            conf.unwrap().history_table().as_deref(),
            Some("inventory.inventory_history")
        );
        assert_eq!(profiles.len(), 1, "{profiles:?}");
        assert!(
            profiles[0].contains("a profile's `%dev.quarkus.flyway.schemas` is `dev`"),
            "{profiles:?}"
        );
        // YAML (quarkus-config-yaml), nested.
        std::fs::remove_file(d.path().join("src/main/resources/application.properties")).unwrap();
        std::fs::write(
            d.path().join("src/main/resources/application.yaml"),
            "quarkus:\n  flyway:\n    schemas: inventory\n\"%prod\":\n  quarkus:\n    flyway:\n      active: false\n",
        )
        .unwrap();
        assert_eq!(
            find(&d.path().join("src/main/resources/db/migration")).unwrap(),
            None,
            "Flyway is off in the prod profile"
        );
    }

    #[test]
    fn a_file_about_other_locations_is_passed_over_and_docker_layout_is_found() {
        let d = write(&[
            (
                "flyway.conf",
                "flyway.locations=filesystem:other\nflyway.table=x\n",
            ),
            ("sql/V1__a.sql", "SELECT 1;"),
        ]);
        assert_eq!(find(&d.path().join("sql")).unwrap(), None);
        // Flyway's Docker image: /flyway/conf/flyway.conf beside /flyway/sql.
        let d = write(&[
            (
                "conf/flyway.conf",
                "flyway.locations=filesystem:/flyway/sql\nflyway.defaultSchema=app\n",
            ),
            ("flyway/sql/V1__a.sql", "SELECT 1;"),
        ]);
        assert_eq!(find(&d.path().join("flyway/sql")).unwrap(), None);
        let d = write(&[
            (
                "flyway/conf/flyway.conf",
                "flyway.locations=filesystem:/flyway/sql\nflyway.defaultSchema=app\n",
            ),
            ("flyway/sql/V1__a.sql", "SELECT 1;"),
        ]);
        let conf = find(&d.path().join("flyway/sql")).unwrap().unwrap();
        assert_eq!(
            conf.history_table().as_deref(),
            Some("app.flyway_schema_history")
        );
        // In a repository, up to its root; a classpath location names the
        // resources directory it ends with.
        let d = write(&[
            (".git/HEAD", "ref: refs/heads/main\n"),
            (
                "flyway.conf",
                "flyway.locations=classpath:db/migration\nflyway.table=t\n",
            ),
            ("src/main/resources/db/migration/V1__a.sql", "SELECT 1;"),
        ]);
        let conf = find(&d.path().join("src/main/resources/db/migration"))
            .unwrap()
            .unwrap();
        assert_eq!(conf.history_table().as_deref(), Some("t"));
        // Helicone's all-in-one image: the repository copied into /app,
        // its flyway.conf naming both directories there.
        let d = write(&[
            (".git/HEAD", "ref: refs/heads/main\n"),
            (
                "flyway.conf",
                "flyway.locations=filesystem:/app/supabase/migrations,filesystem:/app/supabase/migrations_without_supabase\n\
                 flyway.sqlMigrationPrefix=\nflyway.sqlMigrationSeparator=_\n",
            ),
            (
                "supabase/migrations/20221230000000_request.sql",
                "SELECT 1;",
            ),
            (
                "supabase/migrations_without_supabase/20221130000500_roles.sql",
                "SELECT 1;",
            ),
        ]);
        let conf = find(&d.path().join("supabase/migrations"))
            .unwrap()
            .unwrap();
        assert_eq!(
            conf.locations,
            [d.path()
                .join("supabase/migrations_without_supabase")
                .canonicalize()
                .unwrap()]
        );
        assert_eq!(
            (
                conf.naming.versioned.as_str(),
                conf.naming.separator.as_str()
            ),
            ("", "_")
        );
    }

    /// AbsaOSS/EventGate's layout: `flyway.toml` at the repository's root,
    /// its scripts in `database/migrations` ending in `.ddl`.
    #[test]
    fn scripts_with_the_endings_the_file_names_are_a_flyway_directory() {
        let d = write(&[
            (".git/HEAD", "ref: refs/heads/main\n"),
            (
                "flyway.toml",
                "[flyway]\nlocations = [\"filesystem:database/migrations\"]\n\
                 sqlMigrationSuffixes = [\".ddl\", \".sql\"]\n",
            ),
            ("database/migrations/00_databases.ddl", "SELECT 1;"),
            (
                "database/migrations/V1.4.0.1__create_roles.ddl",
                "SELECT 1;",
            ),
            (
                "database/migrations/V1.4.0.2__initial_schema.ddl",
                "SELECT 2;",
            ),
        ]);
        let set = crate::migrations::load(&d.path().join("database/migrations"), None).unwrap();
        assert_eq!(set.format, crate::migrations::Format::Flyway);
        let versions: Vec<&str> = set.migrations.iter().map(|m| m.version.as_str()).collect();
        assert_eq!(versions, ["1.4.0.1", "1.4.0.2"]);
        assert!(
            set.warnings[0].contains("00_databases.ddl is not named like a Flyway migration"),
            "{:?}",
            set.warnings
        );
    }

    #[test]
    fn values_from_the_environment_and_secrets_are_not_taken_from_a_file() {
        let d = write(&[(
            "flyway.conf",
            "flyway.placeholders.app_password=hunter2\nflyway.placeholders.home=${HOME}\n\
             flyway.placeholders.gone=${env.RUNBOOK_TEST_SURELY_UNSET}\n",
        )]);
        let e = find(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("RUNBOOK_TEST_SURELY_UNSET, which is not set"),
            "{e}"
        );
        assert!(e.contains("flyway.conf:3"), "{e}");
        let d = write(&[(
            "flyway.conf",
            "flyway.placeholders.app_password=hunter2\nflyway.placeholders.home=${HOME}\n",
        )]);
        let conf = find(d.path()).unwrap().unwrap();
        assert_eq!(conf.placeholders["home"], std::env::var("HOME").unwrap());
        assert_eq!(conf.placeholders["app_password"], SECRET_IN_FILE);
        let d = write(&[("flyway.toml", "[flyway\n")]);
        let e = find(d.path()).unwrap_err().to_string();
        assert!(e.contains("not TOML"), "{e}");
    }
}
