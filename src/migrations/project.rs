//! The migrator a project applies a directory with, where the files alone
//! do not say. SQLx's files are `pairs` or `plain`, as golang-migrate's are
//! `pairs`, and Refinery's are Flyway's names; each tool keeps its own
//! history table, which an application that migrates at start-up reads.
//! The project's manifest says which: the nearest `Cargo.toml` or `go.mod`
//! in the directory or above it, up to the repository's root (outside a
//! repository, the directory and the one above it).
//!
//! - A `Cargo.toml` whose dependencies (its own, a target's, or its
//!   workspace's) name `sqlx` makes `plain` and `pairs` files SQLx's, and
//!   one naming `refinery` makes Flyway-named files Refinery's.
//! - A `go.mod` that requires `github.com/golang-migrate/migrate` (not as
//!   an indirect dependency) makes `pairs` files golang-migrate's.

use std::path::{Path, PathBuf};

use super::Format;

/// A migrator a project's manifest names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrator {
    Sqlx,
    Refinery,
    GolangMigrate,
}

/// The migrator a directory's project deploys it with, and where that was
/// read, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployer {
    pub migrator: Migrator,
    pub why: String,
}

/// The migrator that deploys `dir`'s files of `format`, where its project's
/// nearest manifest names one that reads that format.
pub fn deployer(dir: &Path, format: Format) -> Option<Deployer> {
    if !matches!(format, Format::Plain | Format::Pairs | Format::Flyway) {
        return None;
    }
    let (path, manifest) = nearest(dir)?;
    let text = std::fs::read_to_string(&path).ok()?;
    let (migrator, named) = match manifest {
        Manifest::Cargo => {
            let found = cargo_dependencies(&text);
            let wanted = match format {
                Format::Flyway => ("refinery", Migrator::Refinery),
                _ => ("sqlx", Migrator::Sqlx),
            };
            found
                .iter()
                .any(|d| d == wanted.0)
                .then_some((wanted.1, wanted.0))?
        }
        Manifest::GoMod if format == Format::Pairs => go_requires(&text)
            .iter()
            .any(|m| m.starts_with("github.com/golang-migrate/migrate"))
            .then_some((Migrator::GolangMigrate, "github.com/golang-migrate/migrate"))?,
        Manifest::GoMod => return None,
    };
    Some(Deployer {
        migrator,
        why: format!("{} depends on {named}", path.display()),
    })
}

#[derive(Clone, Copy)]
enum Manifest {
    Cargo,
    GoMod,
}

/// The manifest nearest to `dir`: a `Cargo.toml` or `go.mod` in it or a
/// directory above it, up to the repository's root.
fn nearest(dir: &Path) -> Option<(PathBuf, Manifest)> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let ancestors: Vec<&Path> = dir.ancestors().collect();
    let root = ancestors.iter().position(|a| a.join(".git").exists());
    let last = root.unwrap_or(1.min(ancestors.len().saturating_sub(1)));
    ancestors[..=last].iter().find_map(|a| {
        [("Cargo.toml", Manifest::Cargo), ("go.mod", Manifest::GoMod)]
            .into_iter()
            .map(|(name, kind)| (a.join(name), kind))
            .find(|(p, _)| p.is_file())
    })
}

/// The crates a `Cargo.toml` depends on, by their package names (a
/// renamed dependency's `package`): its `[dependencies]`, each target's,
/// and its workspace's. Not its dev- or build-dependencies: migrations the
/// application runs are the application's. A manifest that is not TOML
/// names none.
fn cargo_dependencies(text: &str) -> Vec<String> {
    let Ok(doc) = toml::from_str::<toml::Table>(text) else {
        return Vec::new();
    };
    let table = |v: Option<&toml::Value>| v.and_then(toml::Value::as_table).cloned();
    let mut lists: Vec<toml::Table> = Vec::new();
    lists.extend(table(doc.get("dependencies")));
    if let Some(ws) = doc.get("workspace").and_then(toml::Value::as_table) {
        lists.extend(table(ws.get("dependencies")));
    }
    if let Some(targets) = doc.get("target").and_then(toml::Value::as_table) {
        for t in targets.values().filter_map(toml::Value::as_table) {
            lists.extend(table(t.get("dependencies")));
        }
    }
    lists
        .iter()
        .flat_map(|deps| deps.iter())
        .map(|(key, spec)| {
            spec.get("package")
                .and_then(toml::Value::as_str)
                .unwrap_or(key)
                .to_string()
        })
        .collect()
}

/// The module paths a `go.mod` requires directly: its `require` lines and
/// blocks, without those marked `// indirect`.
fn go_requires(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut block = false;
    for line in text.lines() {
        let (code, comment) = line.split_once("//").unwrap_or((line, ""));
        let code = code.trim();
        let words: Vec<&str> = code.split_whitespace().collect();
        let module = match words.as_slice() {
            ["require", "("] => {
                block = true;
                continue;
            }
            [")"] if block => {
                block = false;
                continue;
            }
            ["require", module, _version] => module,
            [module, _version] if block => module,
            _ => continue,
        };
        if comment.trim() != "indirect" {
            out.push(module.trim_matches('"').to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository of `files`.
    fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = super::super::temp_tree(files);
        std::fs::create_dir(d.path().join(".git")).unwrap();
        d
    }

    fn migrator(d: &tempfile::TempDir, dir: &str, format: Format) -> Option<Migrator> {
        deployer(&d.path().join(dir), format).map(|d| d.migrator)
    }

    #[test]
    fn a_crate_s_dependencies_name_its_migrator() {
        let d = project(&[
            (
                "Cargo.toml",
                "[workspace]\nmembers = [\"crates/*\"]\n[workspace.dependencies]\nsqlx = \"0.8\"\n",
            ),
            (
                "crates/db/Cargo.toml",
                "[package]\nname = \"db\"\n[dependencies]\nsqlx = { workspace = true, features = [\"postgres\"] }\n",
            ),
            ("crates/db/migrations/1_a.sql", "SELECT 1;"),
            (
                "crates/renamed/Cargo.toml",
                "[package]\nname = \"r\"\n[target.'cfg(unix)'.dependencies]\ndb = { package = \"sqlx\", version = \"0.8\" }\n",
            ),
            ("crates/renamed/migrations/1_a.sql", "SELECT 1;"),
            (
                "crates/tests_only/Cargo.toml",
                "[package]\nname = \"t\"\n[dev-dependencies]\nsqlx = \"0.8\"\n",
            ),
            ("crates/tests_only/migrations/1_a.sql", "SELECT 1;"),
            (
                "crates/refinery/Cargo.toml",
                "[package]\nname = \"f\"\n[dependencies]\nrefinery = { version = \"0.8\", features = [\"tokio-postgres\"] }\n",
            ),
            ("crates/refinery/migrations/V1__a.sql", "SELECT 1;"),
            ("crates/broken/Cargo.toml", "[package\nsqlx"),
            ("crates/broken/migrations/1_a.sql", "SELECT 1;"),
        ]);
        assert_eq!(
            migrator(&d, "crates/db/migrations", Format::Plain),
            Some(Migrator::Sqlx)
        );
        assert_eq!(
            migrator(&d, "crates/db/migrations", Format::Pairs),
            Some(Migrator::Sqlx)
        );
        assert_eq!(migrator(&d, "crates/db/migrations", Format::Dbmate), None);
        assert_eq!(migrator(&d, "crates/db/migrations", Format::Flyway), None);
        assert_eq!(
            migrator(&d, "crates/renamed/migrations", Format::Plain),
            Some(Migrator::Sqlx)
        );
        assert_eq!(
            migrator(&d, "crates/tests_only/migrations", Format::Plain),
            None
        );
        assert_eq!(
            migrator(&d, "crates/refinery/migrations", Format::Flyway),
            Some(Migrator::Refinery)
        );
        assert_eq!(
            migrator(&d, "crates/refinery/migrations", Format::Plain),
            None
        );
        assert_eq!(
            migrator(&d, "crates/broken/migrations", Format::Plain),
            None
        );
        let why = deployer(&d.path().join("crates/db/migrations"), Format::Plain)
            .unwrap()
            .why;
        assert!(
            why.ends_with("crates/db/Cargo.toml depends on sqlx"),
            "{why}"
        );
    }

    #[test]
    fn a_go_module_that_requires_golang_migrate_deploys_its_pairs() {
        let d = project(&[
            (
                "go.mod",
                "module example.com/app\n\ngo 1.22\n\nrequire (\n\tgithub.com/golang-migrate/migrate/v4 v4.17.0\n\tgithub.com/lib/pq v1.10.9 // indirect\n)\n",
            ),
            ("db/migrations/1_a.up.sql", "SELECT 1;"),
            (
                "tool/go.mod",
                "module example.com/tool\nrequire github.com/golang-migrate/migrate/v4 v4.17.0 // indirect\n",
            ),
            ("tool/migrations/1_a.up.sql", "SELECT 1;"),
            (
                "one/go.mod",
                "module example.com/one\nrequire github.com/golang-migrate/migrate/v4 v4.17.0\n",
            ),
            ("one/migrations/1_a.up.sql", "SELECT 1;"),
        ]);
        assert_eq!(
            migrator(&d, "db/migrations", Format::Pairs),
            Some(Migrator::GolangMigrate)
        );
        assert_eq!(migrator(&d, "db/migrations", Format::Plain), None);
        assert_eq!(migrator(&d, "tool/migrations", Format::Pairs), None);
        assert_eq!(
            migrator(&d, "one/migrations", Format::Pairs),
            Some(Migrator::GolangMigrate)
        );
    }

    #[test]
    fn the_nearest_manifest_decides_and_the_search_stops_at_the_repository() {
        let outer = project(&[("Cargo.toml", "[dependencies]\nsqlx = \"0.8\"\n")]);
        let inner = outer.path().join("inner");
        std::fs::create_dir_all(inner.join(".git")).unwrap();
        std::fs::create_dir_all(inner.join("migrations")).unwrap();
        assert_eq!(deployer(&inner.join("migrations"), Format::Plain), None);
        std::fs::write(inner.join("go.mod"), "module x\n").unwrap();
        std::fs::write(outer.path().join("go.mod"), "module y\n").unwrap();
        assert_eq!(deployer(&inner.join("migrations"), Format::Pairs), None);
    }
}
