//! Flyway's migrations in code: Java or Kotlin classes named as its scripts
//! are (`V3__Backfill_owners.java`), which Flyway runs from the
//! application's classes in the same version order as the SQL ones.
//! runbook cannot run them. It finds them, so that a deploy that would pass
//! over one is refused instead of reported done.
//!
//! Flyway finds such a class where it is in a location's package
//! (`classpath:db/migration` scans `db.migration` and the packages below
//! it), and Spring Boot and Micronaut hand it every such class that is a
//! bean (`@Component`, `@Named`, `@Singleton`). Both are read from the
//! sources of the module whose `src/main/resources` holds a location.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A migration Flyway runs from the application's code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeMigration {
    /// Its source file, named from the migration directory.
    pub file: String,
    /// Its version, as a script's is read (`V1_2__x` is 1.2); empty for a
    /// repeatable one (`R__x`).
    pub version: String,
    pub description: String,
    /// `Java` or `Kotlin` (Flyway's), `Go` (goose's).
    pub language: &'static str,
    /// How its tool finds it, for a message.
    pub found: String,
    /// The tool that runs it.
    pub tool: CodeTool,
}

/// The tools whose migrations in code runbook keeps in their places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeTool {
    /// Java or Kotlin classes ([`find`]).
    Flyway,
    /// Go files that register themselves (`NNN_name.go`).
    Goose,
}

impl std::fmt::Display for CodeTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Flyway => "Flyway",
            Self::Goose => "goose",
        })
    }
}

impl CodeMigration {
    /// How a message names it: `V3__Backfill.java (a Java migration, in
    /// the location's package db.migration)`.
    pub fn label(&self) -> String {
        format!(
            "{} (a {} migration, {})",
            self.file, self.language, self.found
        )
    }

    /// Why a deploy that applies newer migrations without it is not the
    /// tool's: what the tool then does with it.
    pub fn left_behind(&self) -> &'static str {
        match self.tool {
            CodeTool::Goose => {
                "the application's goose would then apply it after newer ones, or refuse it (goose up does not apply a migration older than the newest applied without -allow-missing)"
            }
            CodeTool::Flyway => {
                "the application's Flyway would then apply it after newer ones, or refuse to start (it does not apply a migration older than the newest applied unless outOfOrder is set)"
            }
        }
    }

    /// Where the application's tool applies it, for a hint.
    pub fn applied_by(&self) -> &'static str {
        match self.tool {
            CodeTool::Goose => {
                "the application's goose apply it (its own migrate command, built with its Go migrations)"
            }
            CodeTool::Flyway => {
                "the application's Flyway apply it (at the application's start-up, or `flyway migrate` with its classes)"
            }
        }
    }

    /// When the application's tool applies one that a deploy left out.
    pub fn applied_when(&self) -> &'static str {
        match self.tool {
            CodeTool::Goose => "the next time its migrate command runs",
            CodeTool::Flyway => "at its start-up",
        }
    }
}

/// What [`find`] found: the migrations, and warnings for the classes whose
/// place in the order cannot be read from their sources.
#[derive(Debug, Default)]
pub struct Found {
    pub migrations: Vec<CodeMigration>,
    pub warnings: Vec<String>,
}

/// A class name read as Flyway reads a script's: its kind (`V`, `U`,
/// `R`), version and description.
pub type ReadName<'a> = &'a dyn Fn(&str) -> Option<(char, String, String)>;

/// The Java and Kotlin migrations of the application whose locations are
/// `dir` and `others`, each named from `dir`; a class's name read by
/// `read_name`.
pub fn find(dir: &Path, others: &[PathBuf], read_name: ReadName<'_>) -> Found {
    let mut modules: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    for loc in std::iter::once(dir).chain(others.iter().map(PathBuf::as_path)) {
        if let Some((module, package)) = classpath_of(loc) {
            modules.entry(module).or_default().insert(package);
        }
    }
    let mut found = Found::default();
    let mut coded: Vec<String> = Vec::new();
    for (module, packages) in &modules {
        let sources = sources(module);
        // The sources a migration class can be in, or built on: a class
        // that names neither Flyway's types nor a migration's does not
        // read as one.
        let texts: BTreeMap<&str, String> = sources
            .iter()
            .filter_map(|(stem, (path, _))| {
                let text = std::fs::read_to_string(path).ok()?;
                (text.contains("Migration") || read_name(stem).is_some())
                    .then(|| (stem.as_str(), without_comments(&text)))
            })
            .collect();
        let mut known = BTreeMap::new();
        for (stem, text) in &texts {
            let (path, language) = &sources[*stem];
            let Some(class) = Class::read(text, stem) else {
                continue;
            };
            if class.is_abstract {
                continue;
            }
            let Some(sets_version) = flyway_type(stem, &texts, &mut known) else {
                continue;
            };
            let file = crate::fsutil::relative(path, dir);
            let package = package_of(text);
            let found_by = if let Some(p) = packages
                .iter()
                .find(|p| package == **p || package.starts_with(&format!("{p}.")))
            {
                format!("in the location's package {p}")
            } else if let Some(a) = class.bean {
                format!("a bean (@{a}), which the application hands to Flyway")
            } else {
                // Neither scanned nor handed over: Flyway does not see it.
                continue;
            };
            // Flyway takes the version from the name unless the code gives
            // one; a class named otherwise must give one.
            match read_name(stem).filter(|_| !sets_version) {
                Some(('U', ..)) => {}
                Some((kind, version, description)) => found.migrations.push(CodeMigration {
                    file,
                    version: if kind == 'R' { String::new() } else { version },
                    description,
                    language,
                    found: found_by,
                    tool: CodeTool::Flyway,
                }),
                None => coded.push(file),
            }
        }
    }
    if !coded.is_empty() {
        let shown = coded.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
        found.warnings.push(format!(
            "{} of the application's Flyway migrations in code ({shown}{}) take their versions from their code (getVersion), not their names: runbook cannot place them among the scripts, nor run them. Flyway runs each where its version falls, or as a repeatable; a deploy here leaves them to the application",
            coded.len(),
            if coded.len() > 3 { ", ..." } else { "" }
        ));
    }
    found
        .migrations
        .sort_by(|a, b| super::version_cmp(&a.version, &b.version));
    found
}

/// The module whose `src/main/resources` holds `loc`, and the package a
/// class there is in to be found by the location's scan (`db.migration`).
fn classpath_of(loc: &Path) -> Option<(PathBuf, String)> {
    let abs = std::path::absolute(loc).ok()?;
    let resources = abs
        .ancestors()
        .find(|a| a.ends_with("src/main/resources"))?;
    let module = resources.parent()?.parent()?.parent()?.to_path_buf();
    let package = abs
        .strip_prefix(resources)
        .ok()?
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(".");
    Some((module, package))
}

/// Every Java and Kotlin source of a module's main code, by its file's
/// stem (a class's name); the first of a name where several share it.
fn sources(module: &Path) -> BTreeMap<String, (PathBuf, &'static str)> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, (PathBuf, &'static str)>) {
        let Ok(read) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = read.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if !name.starts_with('.') {
                    walk(&path, out);
                }
                continue;
            }
            let (stem, language) = match name.rsplit_once('.') {
                Some((stem, "java")) => (stem, "Java"),
                Some((stem, "kt")) => (stem, "Kotlin"),
                _ => continue,
            };
            out.entry(stem.to_string()).or_insert((path, language));
        }
    }
    let mut out = BTreeMap::new();
    for root in ["src/main/java", "src/main/kotlin"] {
        walk(&module.join(root), &mut out);
    }
    out
}

/// A class's declaration, as far as Flyway cares.
struct Class {
    /// The names after it (`extends`, `implements`, Kotlin's `:`) up to its
    /// body: its supertypes among them.
    supers: Vec<String>,
    is_abstract: bool,
    /// The annotation that makes it a bean, where one does.
    bean: Option<&'static str>,
    /// It overrides `getVersion`: its version is not its name's.
    sets_version: bool,
}

impl Class {
    fn read(text: &str, name: &str) -> Option<Class> {
        let mut last = "";
        let at = words_at(text).find(|&(_, w)| {
            let here = w == name && last == "class";
            last = w;
            here
        })?;
        let decl_start = text[..at.0].rfind(['\n', ';', '}']).map_or(0, |i| i + 1);
        let rest = &text[at.0 + name.len()..];
        let header = &rest[..rest.find('{').unwrap_or(rest.len())];
        let before = &text[..at.0];
        const BEANS: [&str; 5] = [
            "Component",
            "Named",
            "Service",
            "Singleton",
            "Configuration",
        ];
        Some(Class {
            supers: words(header).map(str::to_string).collect(),
            is_abstract: words(&text[decl_start..at.0]).any(|w| w == "abstract"),
            bean: BEANS.into_iter().find(|b| {
                before
                    .match_indices(&format!("@{b}"))
                    .any(|(i, _)| !is_word(before[i + b.len() + 1..].chars().next()))
            }),
            sets_version: {
                // `MigrationVersion getVersion(`, Kotlin's `fun getVersion(`:
                // declared, not called.
                let mut last = "";
                words(text).any(|w| {
                    let here = w == "getVersion" && matches!(last, "MigrationVersion" | "fun");
                    last = w;
                    here
                })
            },
        })
    }
}

/// Whether the class `stem` is one of Flyway's migrations (extends
/// `BaseJavaMigration`, implements `JavaMigration`, or is built on a class
/// of the module that does), and if so, whether its code, or the code of
/// a class it is built on, sets its version (`getVersion`). Remembered in
/// `known`, where a class being read is not one until found to be.
fn flyway_type(
    stem: &str,
    texts: &BTreeMap<&str, String>,
    known: &mut BTreeMap<String, Option<bool>>,
) -> Option<bool> {
    if let Some(k) = known.get(stem) {
        return *k;
    }
    known.insert(stem.to_string(), None);
    let text = texts.get(stem)?;
    let class = Class::read(text, stem)?;
    let found = class.supers.iter().find_map(|s| {
        if s == "BaseJavaMigration" || s == "JavaMigration" {
            Some(false)
        } else if s == stem {
            None
        } else {
            flyway_type(s, texts, known)
        }
    });
    let found = found.map(|inherited| inherited || class.sets_version);
    known.insert(stem.to_string(), found);
    found
}

fn is_word(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$')
}

/// The words of `text` (identifiers and keywords), with where each starts.
fn words_at(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut start = None;
    text.char_indices()
        .chain(std::iter::once((text.len(), ' ')))
        .filter_map(move |(i, c)| match (start, is_word(Some(c))) {
            (None, true) => {
                start = Some(i);
                None
            }
            (Some(s), false) => {
                start = None;
                Some((s, &text[s..i]))
            }
            _ => None,
        })
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    words_at(text).map(|(_, w)| w)
}

/// The file's package (`package db.migration;`, Kotlin's without `;`).
fn package_of(text: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("package "))
        .map(|p| p.trim().trim_end_matches(';').trim().to_string())
        .unwrap_or_default()
}

/// The source without its comments, and with every string literal empty:
/// a commented-out class, or a word in a string, is not code.
fn without_comments(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            i += rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
        } else if rest.starts_with(b"/*") {
            i += text[i + 2..].find("*/").map_or(rest.len(), |e| e + 4);
            out.push(b' ');
        } else if rest.starts_with(b"\"\"\"") {
            i += text[i + 3..].find("\"\"\"").map_or(rest.len(), |e| e + 6);
            out.extend_from_slice(b"\"\"");
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' && rest[j] != b'\n' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            i += (j + 1).min(rest.len());
            out.extend_from_slice(b"\"\"");
        } else {
            out.push(rest[0]);
            i += 1;
        }
    }
    // Only whole ASCII-delimited runs were taken out.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, path: &str, text: &str) {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn classes_flyway_finds_are_read_with_their_versions() {
        let t = tempfile::tempdir().unwrap();
        let m = t.path().join("app");
        write(
            &m,
            "src/main/resources/db/migration/V1__init.sql",
            "SELECT 1;",
        );
        // In the location's package, Kotlin's way.
        write(
            &m,
            "src/main/kotlin/db/migration/V2__seed.kt",
            "package db.migration\n\nclass V2__seed : BaseJavaMigration() {\n  override fun migrate(context: Context) {}\n}\n",
        );
        // A bean elsewhere, through the project's own base class.
        write(
            &m,
            "src/main/java/com/x/migration/V3_1__Admin_user.java",
            "package com.x.migration;\nimport org.springframework.stereotype.Component;\n@Component\npublic class V3_1__Admin_user extends Base {\n}\n",
        );
        write(
            &m,
            "src/main/java/com/x/migration/Base.java",
            "package com.x.migration;\npublic abstract class Base extends BaseJavaMigration {}\n",
        );
        // Neither scanned nor a bean; commented out; abstract; named so
        // but not a migration; its version set in code.
        write(
            &m,
            "src/main/java/com/x/V4__loose.java",
            "package com.x;\npublic class V4__loose extends BaseJavaMigration {}\n",
        );
        write(
            &m,
            "src/main/java/db/migration/V5__old.java",
            "/*\npackage db.migration;\npublic class V5__old extends BaseJavaMigration {}\n*/\n",
        );
        write(
            &m,
            "src/main/java/db/migration/V6__base.java",
            "package db.migration;\npublic abstract class V6__base extends BaseJavaMigration {}\n",
        );
        write(
            &m,
            "src/main/java/db/migration/V7__dto.java",
            "package db.migration;\n// extends BaseJavaMigration\npublic class V7__dto { String s = \"extends BaseJavaMigration\"; }\n",
        );
        write(
            &m,
            "src/main/java/db/migration/sub/V8__coded.java",
            "package db.migration.sub;\npublic class V8__coded implements JavaMigration {\n public MigrationVersion getVersion() { return null; }\n}\n",
        );
        write(
            &m,
            "src/main/java/db/migration/R__refresh.java",
            "package db.migration;\npublic class R__refresh extends BaseJavaMigration {}\n",
        );
        // Hedera's way: named otherwise, its version from its base's code.
        write(
            &m,
            "src/main/java/com/x/migration/BackfillMigration.java",
            "package com.x.migration;\n@Named\npublic class BackfillMigration extends Versioned {}\n",
        );
        write(
            &m,
            "src/main/java/com/x/migration/Versioned.java",
            "package com.x.migration;\nabstract class Versioned implements JavaMigration {\n  @Override\n  public MigrationVersion getVersion() { return null; }\n}\n",
        );
        // One that asks for a version, and declares none.
        write(
            &m,
            "src/main/java/db/migration/V9__asks.java",
            "package db.migration;\npublic class V9__asks extends BaseJavaMigration {\n  void f(Context c) { c.getConfiguration().getTarget().getVersion(); }\n}\n",
        );
        let dir = m.join("src/main/resources/db/migration");
        let read_name = |stem: &str| {
            let kind = stem.chars().next().filter(|k| "VUR".contains(*k))?;
            let (v, d) = stem[1..].split_once("__")?;
            Some((kind, v.replace('_', "."), d.replace('_', " ")))
        };
        let found = find(&dir, &[], &read_name);
        let got: Vec<_> = found
            .migrations
            .iter()
            .map(|c| (c.version.as_str(), c.language, c.file.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("", "Java", "../../../java/db/migration/R__refresh.java"),
                ("2", "Kotlin", "../../../kotlin/db/migration/V2__seed.kt"),
                (
                    "3.1",
                    "Java",
                    "../../../java/com/x/migration/V3_1__Admin_user.java"
                ),
                ("9", "Java", "../../../java/db/migration/V9__asks.java"),
            ]
        );
        assert_eq!(
            found.migrations[1].found,
            "in the location's package db.migration"
        );
        assert!(found.migrations[2].found.contains("@Component"));
        assert_eq!(found.warnings.len(), 1, "{:?}", found.warnings);
        assert!(
            found.warnings[0].starts_with("2 of the application's Flyway migrations in code (../../../java/com/x/migration/BackfillMigration.java, ../../../java/db/migration/sub/V8__coded.java) take their versions from their code"),
            "{}",
            found.warnings[0]
        );
        // A directory outside a module's resources has none.
        assert!(find(t.path(), &[], &read_name).migrations.is_empty());
    }
}
