//! A Spring Boot (or Quarkus) application's own configuration, as it
//! configures the migrator it runs at start-up (`spring.liquibase.*`,
//! `spring.flyway.*`, `quarkus.flyway.*`, `quarkus.liquibase.*`):
//! every `application*.properties`, `.yml` and `.yaml` on the classpath
//! that holds a migration directory (`src/main/resources`) and in its
//! `config/`, in the order Spring reads them, so that a later one wins
//! (`config/` after the root; in one place, `.properties` after YAML).
//! Where that classpath has no application configuration at all (a
//! library module's), another module's of the same repository, where
//! exactly one has such settings ([`Spring::read`]).
//! Keys are compared as Spring's relaxed binding compares them
//! (`default-schema`, `defaultSchema` and `default_schema` are one).
//!
//! Where a setting is the deploy's own (where the history is, which
//! master runs), only the default profile counts, as it does in an
//! application started without one: `application.*`, not
//! `application-NAME.*`, and not a YAML document that a profile
//! activates.

use std::path::{Path, PathBuf};

use super::java_properties::properties;

/// One setting of a Spring application's configuration, under the
/// prefix it was read for.
#[derive(Debug, Clone)]
pub struct Setting {
    /// The key as the file spells it (nested keys joined by `.`).
    pub key: String,
    /// The value as written (a YAML list joined by `,`).
    pub value: String,
    /// `file:line` (a YAML file's line found by the key's last part).
    pub at: String,
    /// In the default profile.
    pub default_profile: bool,
}

/// The settings under one prefix (`spring.flyway.`) of a Spring
/// application, read once. Empty where no application's configuration
/// is found for the directory.
#[derive(Default)]
pub struct Spring {
    classpath: Option<PathBuf>,
    pub settings: Vec<Setting>,
    /// Where no configuration is on the directory's own classpath and
    /// several other modules of the repository have one: their classpaths,
    /// none of which is read.
    pub several: Vec<PathBuf>,
    /// The settings are a Quarkus application's, brought to Spring's
    /// names ([`super::liquibase_conf::quarkus`]).
    pub quarkus: bool,
}

impl Spring {
    /// The settings under `prefix` (relaxed: `spring.liquibase.`) of the
    /// application whose classpath holds `dir`. Where that classpath has
    /// no application configuration at all (it is a library module), the
    /// one other module of the repository whose `src/main/resources` has
    /// them: a multi-module project keeps its migrations in one module and
    /// the application's configuration in another, and both are on the
    /// application's classpath when it runs. Names from the classpath's
    /// root are still `dir`'s own.
    pub fn read(dir: &Path, prefix: &str) -> Spring {
        // A directory on no classpath is no module's resources: no
        // application reads it from there.
        let Some(own) = classpath(dir).map(Path::to_path_buf) else {
            return Spring::default();
        };
        let settings = settings_at(&own, prefix);
        // A module with an application configuration of its own is an
        // application: what it leaves unset is its migrator's default,
        // whatever another application in the repository sets.
        let configured = [own.clone(), own.join("config")]
            .iter()
            .any(|p| !files(p, "application", &["properties", "yml", "yaml"]).is_empty());
        if !settings.is_empty() || configured {
            return Spring {
                classpath: Some(own),
                settings,
                several: Vec::new(),
                quarkus: false,
            };
        }
        let mine = own.canonicalize().unwrap_or_else(|_| own.clone());
        let mut others: Vec<(PathBuf, Vec<Setting>)> = module_classpaths(dir)
            .into_iter()
            .filter(|cp| *cp != mine)
            .map(|cp| {
                let settings = settings_at(&cp, prefix);
                (cp, settings)
            })
            .filter(|(_, settings)| !settings.is_empty())
            .collect();
        match others.len() {
            1 => Spring {
                classpath: Some(own),
                settings: others.remove(0).1,
                several: Vec::new(),
                quarkus: false,
            },
            _ => Spring {
                classpath: Some(own),
                settings: Vec::new(),
                several: others.into_iter().map(|(cp, _)| cp).collect(),
                quarkus: false,
            },
        }
    }

    /// A Quarkus application's settings under `prefix`
    /// (`quarkus.flyway.`), as [`Spring::read`] reads an application's:
    /// the unprefixed ones, then `%prod.`'s, which win (the profile a
    /// packaged Quarkus application runs with); another profile's
    /// (`%dev.`, `%test.`) are not the default profile's. A profile's key
    /// keeps its `%name.` in front.
    pub fn read_quarkus(dir: &Path, prefix: &str) -> Spring {
        let mut q = Spring::read(dir, prefix);
        for x in Spring::read(dir, "%").settings {
            let Some((profile, rest)) = x.key[1..].split_once('.') else {
                continue;
            };
            if relaxed(rest).starts_with(prefix) {
                q.settings.push(Setting {
                    default_profile: x.default_profile && profile == "prod",
                    ..x
                });
            }
        }
        q
    }

    /// The value the default profile gives the key (compared as Spring's
    /// relaxed binding compares), and where.
    pub fn value(&self, wanted: &str) -> Option<(String, String)> {
        self.settings
            .iter()
            .rfind(|x| x.default_profile && relaxed(&x.key) == wanted)
            .map(|x| (x.value.clone(), x.at.clone()))
    }

    /// Where [`Spring::several`] left the settings unread: a warning that
    /// names those modules, for `tool`, and what that means (`then`).
    pub fn several_note(&self, tool: &str, then: &str) -> Option<String> {
        let places: Vec<String> = self
            .several
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        (!places.is_empty()).then(|| {
            format!(
                "several modules of this repository configure an application's {tool} ({}), and none is on this directory's classpath, so none is read; {then}",
                places.join(", ")
            )
        })
    }

    /// The classpath's root that names from it start at: `dir`'s own.
    pub fn classpath(&self) -> Option<&Path> {
        self.classpath.as_deref()
    }
}

/// Every setting of an application's default profile, which a `${name}`
/// in one of its values refers to.
pub struct Properties(Spring);

impl Properties {
    /// The application's whose classpath holds `dir` ([`Spring::read`]).
    pub fn read(dir: &Path) -> Properties {
        Properties(Spring::read(dir, ""))
    }

    /// The value `${name}` stands for, as Spring looks it up: an
    /// environment variable of that name, or of Spring's spelling of it
    /// in the environment (`HIERO_MIRROR_DB_NAME` for `hiero.mirror.db.name`:
    /// upper case, `_` for `.`, without `-`), before the application's own
    /// setting of it. The setting's value as written: it may hold
    /// placeholders of its own.
    pub fn lookup(&self, name: &str) -> Option<String> {
        let env = name.replace('.', "_").replace('-', "").to_uppercase();
        std::env::var(name)
            .or_else(|_| std::env::var(&env))
            .ok()
            .or_else(|| self.0.value(&relaxed(name)).map(|(v, _)| v))
    }
}

/// The settings under `prefix` in the `application*` files of one
/// classpath's root and its `config/`, in the order Spring reads them.
fn settings_at(classpath: &Path, prefix: &str) -> Vec<Setting> {
    let under = |k: &str| relaxed(k).starts_with(prefix);
    let mut settings = Vec::new();
    for place in [classpath.to_path_buf(), classpath.join("config")] {
        let mut found = files(&place, "application", &["properties", "yml", "yaml"]);
        let rank = |p: &PathBuf| p.extension().is_some_and(|e| e == "properties");
        found.sort_by_key(rank);
        for file in found {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            let default_file = file.file_stem().is_some_and(|s| s == "application");
            if rank(&file) {
                settings.extend(
                    properties(&text)
                        .into_iter()
                        .filter(|(k, v, _)| under(k) && !v.is_empty())
                        .map(|(key, value, line)| Setting {
                            key,
                            value,
                            at: format!("{}:{line}", file.display()),
                            default_profile: default_file,
                        }),
                );
            } else {
                settings.extend(from_yaml(&file, &text, default_file, &under));
            }
        }
    }
    settings
}

/// Every module's classpath root (`…/src/main/resources`) in the
/// repository that holds `dir`, found within a few levels of its root;
/// build output, dependencies and hidden directories are passed over.
/// None outside a repository.
pub(super) fn module_classpaths(dir: &Path) -> Vec<PathBuf> {
    const SKIP: [&str; 6] = ["target", "build", "node_modules", "out", "bin", "dist"];
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let Some(root) = dir.ancestors().find(|a| a.join(".git").exists()) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut level = vec![root.to_path_buf()];
    for _ in 0..6 {
        let mut next = Vec::new();
        for d in level {
            let resources = d.join("src/main/resources");
            if resources.is_dir() {
                found.push(resources);
            }
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.filter_map(Result::ok) {
                let name = e.file_name().to_string_lossy().into_owned();
                if e.file_type().is_ok_and(|t| t.is_dir())
                    && !name.starts_with('.')
                    && name != "src"
                    && !SKIP.contains(&name.as_str())
                {
                    next.push(e.path());
                }
            }
        }
        level = next;
    }
    found.sort();
    found
}

/// `stem.EXT` and `stem-*.EXT` in `dir`, by name.
pub(super) fn files(dir: &Path, stem: &str, exts: &[&str]) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                return false;
            };
            let Some((base, ext)) = name.rsplit_once('.') else {
                return false;
            };
            exts.contains(&ext)
                && (base == stem || base.strip_prefix(stem).is_some_and(|r| r.starts_with('-')))
        })
        .collect();
    out.sort();
    out
}

/// A key as Spring's relaxed binding compares it: lower case, without
/// `-` and `_`.
pub(super) fn relaxed(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The values (not maps) of the keys `wanted` takes, nested or with dots
/// in them, under `spring.`: `(key, value)`, a list joined by `,`.
fn walk(
    v: &serde_yaml::Value,
    prefix: &str,
    wanted: &dyn Fn(&str) -> bool,
    found: &mut Vec<(String, String)>,
) {
    let serde_yaml::Value::Mapping(map) = v else {
        return;
    };
    for (k, v) in map {
        let Some(k) = k.as_str() else { continue };
        let key = if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        };
        if v.is_mapping() {
            // A map's keys are settings of their own (`parameters:`).
            walk(v, &key, wanted, found);
        } else if wanted(&key) {
            let value = match v {
                serde_yaml::Value::Sequence(items) => items
                    .iter()
                    .filter_map(scalar)
                    .collect::<Vec<_>>()
                    .join(","),
                other => scalar(other).unwrap_or_default(),
            };
            found.push((key, value));
        }
    }
}

/// Every document of a Spring YAML file: the keys `under` takes, nested
/// or with dots in its keys; each document that a profile activates
/// (`spring.config.activate.on-profile`, or `spring.profiles` naming one)
/// is not the default profile's.
pub(super) fn from_yaml(
    file: &Path,
    text: &str,
    default_file: bool,
    under: &dyn Fn(&str) -> bool,
) -> Vec<Setting> {
    use serde::Deserialize;
    let mut found: Vec<(String, String, bool)> = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let Ok(v) = serde_yaml::Value::deserialize(doc) else {
            // Not ours to judge: the application reads it.
            return Vec::new();
        };
        let mut profile = Vec::new();
        walk(
            &v,
            "",
            &|k| {
                let k = relaxed(k);
                k == "spring.config.activate.onprofile" || k == "spring.profiles"
            },
            &mut profile,
        );
        let default_doc = default_file && !profile.iter().any(|(_, v)| !v.trim().is_empty());
        let mut here = Vec::new();
        walk(&v, "", under, &mut here);
        found.extend(
            here.into_iter()
                .filter(|(_, v)| !v.trim().is_empty())
                .map(|(k, v)| (k, v, default_doc)),
        );
    }
    // The line of each, in order: the next line whose key is the last
    // part of the one found.
    let mut from = 0;
    let lines: Vec<&str> = text.lines().collect();
    found
        .into_iter()
        .map(|(key, value, default_profile)| {
            let leaf = relaxed(key.rsplit('.').next().unwrap_or(&key));
            let line = (from..lines.len()).find(|&i| {
                lines[i]
                    .trim_start()
                    .split_once(':')
                    .is_some_and(|(k, _)| relaxed(k.trim_matches(['"', '\''])).ends_with(&leaf))
            });
            if let Some(i) = line {
                from = i + 1;
            }
            Setting {
                at: match line {
                    Some(i) => format!("{}:{}", file.display(), i + 1),
                    None => file.display().to_string(),
                },
                key,
                value,
                default_profile,
            }
        })
        .collect()
}

/// The classpath's root (`src/main/resources`) that holds `dir`.
pub(super) fn classpath(dir: &Path) -> Option<&Path> {
    dir.ancestors().find(|a| {
        a.file_name().is_some_and(|n| n == "resources")
            && a.parent()
                .is_some_and(|p| p.file_name().is_some_and(|n| n == "main"))
    })
}

fn scalar(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository of `files`.
    fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = super::super::temp_tree(files);
        std::fs::create_dir(d.path().join(".git")).unwrap();
        d
    }

    /// A multi-module project: the migrations in one module, the
    /// application's configuration in another.
    #[test]
    fn another_module_s_configuration_is_read_where_it_is_the_only_one() {
        let d = repo(&[
            (
                "app-core/src/main/resources/application.properties",
                "spring.flyway.schemas=delivery\nspring.jpa.show-sql=true\n",
            ),
            (
                "infra-database/src/main/resources/db/migration/V1__a.sql",
                "SELECT 1;",
            ),
            (
                "infra-database/target/classes/application.properties",
                "spring.flyway.schemas=stale\n",
            ),
            (
                "web/src/main/resources/application.properties",
                "server.port=80\n",
            ),
        ]);
        let dir = d
            .path()
            .join("infra-database/src/main/resources/db/migration");
        let spring = Spring::read(&dir, "spring.flyway.");
        assert_eq!(
            spring
                .value("spring.flyway.schemas")
                .map(|(v, _)| v)
                .as_deref(),
            Some("delivery")
        );
        assert!(
            spring
                .classpath()
                .unwrap()
                .starts_with(d.path().join("infra-database"))
        );
        assert!(spring.several.is_empty());
        // Nothing of Liquibase's anywhere: nothing read.
        assert!(Spring::read(&dir, "spring.liquibase.").settings.is_empty());

        // A second application that configures Flyway: which one deploys
        // these files is not known, so neither is read.
        std::fs::create_dir_all(d.path().join("admin/src/main/resources")).unwrap();
        std::fs::write(
            d.path().join("admin/src/main/resources/application.yml"),
            "spring:\n  flyway:\n    schemas: admin\n",
        )
        .unwrap();
        let spring = Spring::read(&dir, "spring.flyway.");
        assert!(spring.settings.is_empty());
        assert_eq!(spring.several.len(), 2, "{:?}", spring.several);

        // The directory's own module's configuration wins.
        std::fs::write(
            d.path()
                .join("infra-database/src/main/resources/application.properties"),
            "spring.flyway.table=own\n",
        )
        .unwrap();
        let spring = Spring::read(&dir, "spring.flyway.");
        assert_eq!(spring.settings.len(), 1);
        assert_eq!(spring.settings[0].value, "own");
        // A module that is an application of its own, setting nothing of
        // Flyway's, runs Flyway's defaults, whatever another application
        // in the repository sets (xParadize/digital-wallet-platform: one
        // service turns Liquibase off, the others set nothing).
        std::fs::write(
            d.path()
                .join("infra-database/src/main/resources/application.properties"),
            "server.port=8081\n",
        )
        .unwrap();
        std::fs::remove_dir_all(d.path().join("admin")).unwrap();
        let spring = Spring::read(&dir, "spring.flyway.");
        assert!(spring.settings.is_empty() && spring.several.is_empty());
    }
}
