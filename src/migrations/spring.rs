//! A Spring Boot application's own configuration, as it configures the
//! migrator it runs at start-up (`spring.liquibase.*`, `spring.flyway.*`):
//! every `application*.properties`, `.yml` and `.yaml` on the classpath
//! that holds a migration directory (`src/main/resources`) and in its
//! `config/`, in the order Spring reads them, so that a later one wins
//! (`config/` after the root; in one place, `.properties` after YAML).
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
/// application, read once. Empty where the directory is on no classpath.
#[derive(Default)]
pub struct Spring {
    classpath: Option<PathBuf>,
    pub settings: Vec<Setting>,
}

impl Spring {
    /// The settings under `prefix` (relaxed: `spring.liquibase.`) of the
    /// application whose classpath holds `dir`.
    pub fn read(dir: &Path, prefix: &str) -> Spring {
        let Some(classpath) = classpath(dir) else {
            return Spring::default();
        };
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
        Spring {
            classpath: Some(classpath.to_path_buf()),
            settings,
        }
    }

    /// The value the default profile gives the key (compared as Spring's
    /// relaxed binding compares), and where.
    pub fn value(&self, wanted: &str) -> Option<(String, String)> {
        self.settings
            .iter()
            .rfind(|x| x.default_profile && relaxed(&x.key) == wanted)
            .map(|x| (x.value.clone(), x.at.clone()))
    }

    /// The classpath's root the settings are read from.
    pub fn classpath(&self) -> Option<&Path> {
        self.classpath.as_deref()
    }
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
        let under_spring = relaxed(&key) == "spring" || relaxed(&key).starts_with("spring.");
        if v.is_mapping() {
            // A map's keys are settings of their own (`parameters:`).
            if under_spring {
                walk(v, &key, wanted, found);
            }
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
