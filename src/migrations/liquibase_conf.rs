//! What a project's own configuration says of how it deploys its Liquibase
//! changelog, read from a Spring Boot application's `application*`
//! files on its classpath (`src/main/resources`, and its `config/`) and
//! from Liquibase's defaults file, `liquibase.properties`, that names the
//! master:
//! - which master changelog runs ([`master`]);
//! - the contexts and label filter it runs with ([`given`]): every
//!   profile's file and every YAML document, and any
//!   `liquibase*.properties` (one per environment, where a team keeps
//!   several). A `migrate` step given no contexts runs every changeset,
//!   as Liquibase given none does; where the project's deploys give some,
//!   such a step would run what they leave out (a test seed, in
//!   production), so it is refused (`liquibase::ungiven`);
//! - where its history and lock are, and the schema its changesets run
//!   in ([`place`]);
//! - the values of its changelog parameters ([`parameters`]).
//!
//! Where a setting is the deploy's own (the master, the schemas, the
//! parameters), only the default profile counts, as it does in an
//! application started without one.

use std::path::{Path, PathBuf};

use regex::Regex;

use super::java_properties::properties;
use super::spring::{Spring, files, relaxed};

/// One place a project gives Liquibase contexts or a label filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given {
    /// `file:line`, for a message.
    pub at: String,
    /// The key as the file spells it.
    pub key: String,
    /// The value as written (a list joined by `,`).
    pub value: String,
    /// A label filter, not contexts.
    pub labels: bool,
}

impl Given {
    /// The value Liquibase is given: each `${NAME:default}` placeholder
    /// as its default. `None` where one has no default (the environment
    /// alone says).
    pub fn resolved(&self) -> Option<String> {
        let mut out = String::new();
        let mut rest = self.value.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}')? + start;
            let (_, default) = rest[start + 2..end].split_once(':')?;
            out.push_str(default);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }
}

/// What a project gives, for the changelog loaded from `dir`: its Spring
/// configuration (every profile's), and its Liquibase defaults files in
/// `dir` and above it (up to the repository's root).
/// `names_master(directory, text)`: whether a defaults file there, of
/// that text, names this master as its `changeLogFile`.
pub fn given(
    spring: &Spring,
    dir: &Path,
    names_master: impl Fn(&Path, &str) -> bool,
) -> Vec<Given> {
    let mut out: Vec<Given> = spring
        .settings
        .iter()
        .filter_map(|x| {
            Some(Given {
                labels: spring_key(&x.key)?,
                at: x.at.clone(),
                // Quarkus's contexts and labels have Spring's names.
                key: match spring.quarkus {
                    true => x.key.replacen(SPRING_PREFIX, "quarkus.liquibase.", 1),
                    false => x.key.clone(),
                },
                value: x.value.clone(),
            })
        })
        .collect();
    for above in dir.ancestors().take(8) {
        for file in files(above, "liquibase", &["properties"]) {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            if names_master(above, &text) {
                out.extend(from_properties(&file, &text, |k| match liquibase_key(k)? {
                    "contexts" | "contextfilter" => Some(false),
                    "labels" | "labelfilter" => Some(true),
                    _ => None,
                }));
            }
        }
        if above.join(".git").exists() {
            break;
        }
    }
    out
}

/// Whether a Spring key gives contexts (`false`) or a label filter (`true`).
fn spring_key(key: &str) -> Option<bool> {
    match relaxed(key).as_str() {
        "spring.liquibase.contexts" => Some(false),
        "spring.liquibase.labelfilter" | "spring.liquibase.labels" => Some(true),
        _ => None,
    }
}

/// A key of Liquibase's defaults file, without `liquibase.command.` or
/// `liquibase.` in front.
fn liquibase_key(key: &str) -> Option<&'static str> {
    let k = relaxed(key);
    let k = k.strip_prefix("liquibase.command.").unwrap_or(&k);
    let k = k.strip_prefix("liquibase.").unwrap_or(k);
    ["contexts", "contextfilter", "labels", "labelfilter"]
        .into_iter()
        .find(|known| *known == k)
}

fn from_properties(file: &Path, text: &str, kind: impl Fn(&str) -> Option<bool>) -> Vec<Given> {
    properties(text)
        .into_iter()
        .filter(|(_, v, _)| !v.is_empty())
        .filter_map(|(key, value, line)| {
            Some(Given {
                labels: kind(&key)?,
                at: format!("{}:{line}", file.display()),
                key,
                value,
            })
        })
        .collect()
}

/// The changelog parameters a project gives Liquibase (`${name}` in a
/// changeset), `(name, value)`, a later one winning: a Spring
/// application's default profile's `spring.liquibase.parameters.*` where
/// `dir` is on its classpath, and `parameter.*` in a `liquibase.properties`
/// that names this master. A `${NAME:default}` value is its default; one
/// only the environment gives is left out.
pub fn parameters(
    spring: &Spring,
    dir: &Path,
    names_master: impl Fn(&Path, &str) -> bool,
) -> Vec<(String, String)> {
    const SPRING: &str = "spring.liquibase.parameters.";
    let mut out = Vec::new();
    let mut push = |name: &str, value: String, at: String| {
        let given = Given {
            at,
            key: name.to_string(),
            value,
            labels: false,
        };
        if let Some(v) = given.resolved() {
            out.push((name.to_string(), v));
        }
    };
    for x in spring.settings.iter().filter(|x| x.default_profile) {
        if relaxed(&x.key).starts_with(SPRING) {
            // The name as written: only the prefix is compared loosely.
            let dots = SPRING.matches('.').count();
            if let Some(name) = x.key.splitn(dots + 1, '.').nth(dots) {
                push(name, x.value.clone(), x.at.clone());
            }
        }
    }
    if let Some((file, text)) = properties_file(dir, names_master) {
        for (key, value, line) in properties(&text) {
            if let Some(name) = key.strip_prefix("parameter.").filter(|n| !n.is_empty()) {
                push(name, value, format!("{}:{line}", file.display()));
            }
        }
    }
    out
}

/// The `liquibase.properties` that Liquibase run in `dir` or a directory
/// above it (up to the repository's root) reads for this master, and its
/// text: the nearest one `names_master` accepts.
fn properties_file(
    dir: &Path,
    names_master: impl Fn(&Path, &str) -> bool,
) -> Option<(PathBuf, String)> {
    for above in dir.ancestors().take(8) {
        let file = above.join("liquibase.properties");
        if let Ok(text) = std::fs::read_to_string(&file)
            && names_master(above, &text)
        {
            return Some((file, text));
        }
        if above.join(".git").exists() {
            break;
        }
    }
    None
}

/// What Liquibase does with a `${name}` that has no value anywhere
/// (`liquibase.missingPropertyMode`, Liquibase 4.8+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Keeps it as written: Liquibase's default.
    Preserve,
    /// Replaces it with nothing.
    Empty,
    /// Refuses the changelog.
    Error,
}

/// The `missingPropertyMode` the project's Liquibase runs with, and where
/// it is said: `LIQUIBASE_MISSING_PROPERTY_MODE` in the environment, else
/// a `liquibase.properties` that names this master
/// (`liquibase.missingPropertyMode` or `missingPropertyMode`), else
/// Liquibase's default, `PRESERVE`.
pub fn missing_property_mode(
    dir: &Path,
    names_master: impl Fn(&Path, &str) -> bool,
) -> (Missing, Option<String>) {
    let parse = |v: &str| match v.trim().to_ascii_uppercase().as_str() {
        "EMPTY" => Some(Missing::Empty),
        "ERROR" => Some(Missing::Error),
        "PRESERVE" => Some(Missing::Preserve),
        _ => None,
    };
    if let Some(m) = std::env::var("LIQUIBASE_MISSING_PROPERTY_MODE")
        .ok()
        .and_then(|v| parse(&v))
    {
        return (m, Some("LIQUIBASE_MISSING_PROPERTY_MODE".into()));
    }
    let (file, text) = properties_file(dir, names_master).unzip();
    properties(&text.unwrap_or_default())
        .into_iter()
        .find_map(|(key, value, line)| {
            let key = key.strip_prefix("liquibase.").unwrap_or(&key);
            let m = parse(&value).filter(|_| key.eq_ignore_ascii_case("missingPropertyMode"))?;
            let at = file.as_ref().map(|f| format!("{}:{line}", f.display()));
            Some((m, at))
        })
        .unwrap_or((Missing::Preserve, None))
}

/// Where a project's Liquibase keeps things, each with where it is said:
/// the default schema (`SET SEARCH_PATH` puts it first before each
/// changeset, so an unqualified name is made there), the schema of its
/// history tables (by default the default schema), and their names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Place {
    pub default: Option<(String, String)>,
    pub history: Option<(String, String)>,
    pub table: Option<(String, String)>,
    pub lock_table: Option<(String, String)>,
}

impl Place {
    /// Where the history is: its own schema, else the default one.
    pub fn history_schema(&self) -> Option<&(String, String)> {
        self.history.as_ref().or(self.default.as_ref())
    }

    /// The history table (`schema.table`), where the project moves or
    /// renames it: in the connection's first schema (`public`) where only
    /// its name is given.
    pub fn history_table(&self) -> Option<String> {
        if self.history_schema().is_none() && self.table.is_none() {
            return None;
        }
        let schema = self.history_schema().map_or("public", |(s, _)| s.as_str());
        let table = self
            .table
            .as_ref()
            .map_or("databasechangelog", |(t, _)| t.as_str());
        Some(format!("{schema}.{table}"))
    }

    /// The lock table's name: Liquibase's `databasechangeloglock` unless
    /// the project names another (whatever the history table's name).
    pub fn lock_name(&self) -> &str {
        self.lock_table
            .as_ref()
            .map_or("databasechangeloglock", |(t, _)| t.as_str())
    }
}

/// [`Place`] as the project gives it: a Spring application's default
/// profile (`spring.liquibase.default-schema`, `liquibase-schema`,
/// `database-change-log-table`, `database-change-log-lock-table`) where
/// `dir` is on its classpath, else a `liquibase.properties` that names
/// this master (`defaultSchemaName`, `liquibaseSchemaName`,
/// `databaseChangeLogTableName`, `databaseChangeLogLockTableName`).
pub fn place(spring: &Spring, dir: &Path, names_master: impl Fn(&Path, &str) -> bool) -> Place {
    let from_spring = Place {
        default: spring.value("spring.liquibase.defaultschema"),
        history: spring.value("spring.liquibase.liquibaseschema"),
        table: spring.value("spring.liquibase.databasechangelogtable"),
        lock_table: spring.value("spring.liquibase.databasechangeloglocktable"),
    };
    if from_spring != Place::default() {
        return from_spring;
    }
    let Some((file, text)) = properties_file(dir, names_master) else {
        return Place::default();
    };
    let value = |key: &str| {
        properties(&text).into_iter().find_map(|(k, v, line)| {
            let k = relaxed(&k);
            let k = k.strip_prefix("liquibase.command.").unwrap_or(&k);
            let k = k.strip_prefix("liquibase.").unwrap_or(k);
            (k == key && !v.is_empty()).then(|| (v, format!("{}:{line}", file.display())))
        })
    };
    Place {
        default: value("defaultschemaname"),
        history: value("liquibaseschemaname"),
        table: value("databasechangelogtablename"),
        lock_table: value("databasechangeloglocktablename"),
    }
}

/// The master changelog Spring Boot runs where its configuration names
/// none, from the classpath's root.
pub const SPRING_MASTER: &str = "db/changelog/db.changelog-master.yaml";

/// The master changelog Quarkus runs where its configuration names none,
/// from the classpath's root.
pub const QUARKUS_MASTER: &str = "db/changeLog.xml";

/// A Quarkus application's `quarkus.liquibase.*` settings, under the
/// names of the `spring.liquibase.*` settings they stand for
/// (`default-schema-name` is `default-schema`, `change-log-parameters.x`
/// is `parameters.x`), read as [`Spring::read_quarkus`] reads them. None
/// where the directory's application is not a Quarkus one (it sets no
/// `quarkus.*` at all).
pub fn quarkus(dir: &Path) -> Option<Spring> {
    if Spring::read_quarkus(dir, "quarkus.").settings.is_empty() {
        return None;
    }
    let mut q = Spring::read_quarkus(dir, "quarkus.liquibase.");
    q.quarkus = true;
    q.settings.retain_mut(|x| {
        let key = match x.key.strip_prefix('%') {
            Some(k) => k.split_once('.').map_or("", |(_, k)| k),
            None => &x.key,
        };
        // The part after the prefix as written: a parameter's name is kept.
        let Some(rest) = key.splitn(3, '.').nth(2) else {
            return false;
        };
        let spring = match relaxed(rest).as_str() {
            "changelog" => "change-log".to_string(),
            "defaultschemaname" => "default-schema".to_string(),
            "liquibaseschemaname" => "liquibase-schema".to_string(),
            "databasechangelogtablename" => "database-change-log-table".to_string(),
            "databasechangeloglocktablename" => "database-change-log-lock-table".to_string(),
            "contexts" => "contexts".to_string(),
            "labels" => "labels".to_string(),
            r if r.starts_with("changelogparameters.") => {
                format!("parameters.{}", rest.split_once('.').map_or("", |(_, n)| n))
            }
            _ => return false,
        };
        x.key = format!("{SPRING_PREFIX}{spring}");
        true
    });
    Some(q)
}

/// Where a key is one of `spring.liquibase.*` ([`Spring::read`]).
pub const SPRING_PREFIX: &str = "spring.liquibase.";

/// The master changelog the application runs, as a name from the
/// classpath's root, and why: its default profile's
/// `spring.liquibase.change-log`. `None` where it names none: Spring Boot
/// then runs [`SPRING_MASTER`].
pub fn master(spring: &Spring) -> Option<(String, String)> {
    spring
        .value("spring.liquibase.changelog")
        .map(|(name, at)| {
            (
                name,
                format!(
                    "as {at} names it in {}.change-log",
                    if spring.quarkus {
                        "quarkus.liquibase"
                    } else {
                        "spring.liquibase"
                    }
                ),
            )
        })
}

/// The changelogs a Gradle build runs with the Liquibase plugin, in the
/// order it runs them (its `runList`, else the order of its
/// `activities`), where the nearest `build.gradle` or `build.gradle.kts`
/// in `dir` or above it (up to the repository's root) names any: the
/// build file, and each activity's name and changelog file.
pub fn gradle_activities(dir: &Path) -> Option<(PathBuf, Vec<(String, PathBuf)>)> {
    let groovy =
        Regex::new(r#"(?s)(\w+)\s*\{[^{}]*?\bchange[lL]og[fF]ile\b\s*[=:(]?\s*["']([^"']+)["']"#)
            .expect("the pattern is valid");
    let kotlin = Regex::new(
        r#"(?s)(?:register|create)\(\s*"(\w+)"\s*\)\s*\{[^{}]*?"change[lL]og[fF]ile"\s*(?:to|,)\s*"([^"]+)""#,
    )
    .expect("the pattern is valid");
    let run_list = Regex::new(r#"runList\s*=?\s*["']([^"']+)["']"#).expect("the pattern is valid");
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    for above in dir.ancestors().take(8) {
        for name in ["build.gradle", "build.gradle.kts"] {
            let path = above.join(name);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let mut found: Vec<(String, PathBuf)> = groovy
                .captures_iter(&text)
                .chain(kotlin.captures_iter(&text))
                .map(|c| (c[1].to_string(), above.join(&c[2])))
                .collect();
            if found.is_empty() {
                continue;
            }
            if let Some(list) = run_list.captures(&text) {
                let order: Vec<&str> = list[1].split(',').map(str::trim).collect();
                found.retain(|(a, _)| order.contains(&a.as_str()));
                found.sort_by_key(|(a, _)| order.iter().position(|o| o == a));
            }
            return Some((path, found));
        }
        if above.join(".git").exists() {
            break;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gradle_build_s_liquibase_activities_are_read_in_the_order_it_runs_them() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("build.gradle"),
            "plugins { id 'org.liquibase.gradle' version '2.2.0' }\nliquibase {\n  activities {\n    init {\n      changeLogFile 'init/db.changelog.init.xml'\n      defaultsFile 'init/liquibase.init.properties'\n    }\n    meta {\n      changeLogFile 'db.changelog.meta.xml'\n    }\n    schema {\n      changelogFile = \"db.changelog.auth.xml\"\n    }\n  }\n  runList = 'schema,meta'\n}\n",
        )
        .unwrap();
        let (at, found) = gradle_activities(d.path()).unwrap();
        assert!(at.ends_with("build.gradle"));
        let names: Vec<String> = found
            .iter()
            .map(|(a, f)| format!("{a}:{}", f.file_name().unwrap().to_string_lossy()))
            .collect();
        assert_eq!(
            names,
            ["schema:db.changelog.auth.xml", "meta:db.changelog.meta.xml"]
        );
        std::fs::write(
            d.path().join("build.gradle"),
            "liquibase {\n  activities.register(\"main\") {\n    arguments = mapOf(\"changelogFile\" to \"src/main/resources/db/master.yaml\")\n  }\n}\n",
        )
        .unwrap();
        std::fs::rename(
            d.path().join("build.gradle"),
            d.path().join("build.gradle.kts"),
        )
        .unwrap();
        let (_, found) = gradle_activities(d.path()).unwrap();
        assert_eq!(found.len(), 1);
        assert!(found[0].1.ends_with("src/main/resources/db/master.yaml"));
    }

    #[test]
    fn spring_and_liquibase_configuration_say_their_contexts_where_they_say_them() {
        let yaml = "server:\n  port: 8080\nspring:\n  liquibase:\n    change-log: classpath:db/changelog/master.yaml\n    contexts: prod, eu\n---\nspring:\n  config:\n    activate:\n      on-profile: test\n  liquibase.label-filter: [v2, beta]\n";
        let under = |k: &str| relaxed(k).starts_with(SPRING_PREFIX);
        let got = super::super::spring::from_yaml(Path::new("application.yml"), yaml, true, &under);
        assert_eq!(
            got.iter()
                .map(|x| (x.at.as_str(), x.value.as_str(), x.default_profile))
                .collect::<Vec<_>>(),
            [
                (
                    "application.yml:5",
                    "classpath:db/changelog/master.yaml",
                    true
                ),
                ("application.yml:6", "prod, eu", true),
                ("application.yml:12", "v2,beta", false)
            ],
            "a document a profile activates is not the default profile's"
        );
        let props = "# comment\nspring.liquibase.enabled=true\nspring.liquibase.contexts = ${LB_CONTEXTS:prod}\nspring.liquibase.labels\n";
        let got = from_properties(Path::new("a.properties"), props, spring_key);
        assert_eq!(got.len(), 1, "an empty value gives nothing: {got:?}");
        assert_eq!(got[0].at, "a.properties:3");
        assert_eq!(got[0].resolved().as_deref(), Some("prod"));
        let from_env = Given {
            value: "${LB_CONTEXTS}".into(),
            ..got[0].clone()
        };
        assert_eq!(from_env.resolved(), None, "the environment alone says");
        assert_eq!(
            liquibase_key("liquibase.command.contexts"),
            Some("contexts")
        );
        assert_eq!(liquibase_key("contextFilter"), Some("contextfilter"));
        assert_eq!(liquibase_key("url"), None);
        assert_eq!(properties("a\\\n  b: c\n")[0], ("ab".into(), "c".into(), 1));
    }
}
