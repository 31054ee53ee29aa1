//! PostgreSQL's client programs (`pg_dump`, `pg_restore`, `psql`): where
//! they are and which version each is.
//!
//! A `--pg-bin-dir` (or `PG_BIN_DIR`) is the only place looked at when given.
//! Otherwise `PATH` comes first, then the versioned directories packages
//! install into, newest first; the first program at least as new as the
//! server wins, because pg_dump cannot dump a server newer than itself.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A client program and its version.
#[derive(Debug, Clone)]
pub struct Tool {
    pub path: PathBuf,
    /// As the program prints it, `15.20`.
    pub version: String,
    pub major: u32,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ToolError {
    #[error("{name} not found; looked in {looked}")]
    Missing { name: String, looked: String },
    #[error(
        "{name} is too old for the server: {found}; the server is PostgreSQL {server}, and {name} must be at least version {server_major}"
    )]
    TooOld {
        name: String,
        /// Each program found: `11.22 at /usr/bin/pg_dump`.
        found: String,
        server: String,
        server_major: u32,
    },
}

impl ToolError {
    pub fn hint(&self) -> String {
        match self {
            Self::Missing { name, .. } => format!(
                "install PostgreSQL's client programs (Debian: postgresql-client), or point --pg-bin-dir (or PG_BIN_DIR) at the directory holding {name}"
            ),
            Self::TooOld { server_major, .. } => format!(
                "install the version {server_major} client programs (Debian: postgresql-client-{server_major}), or point --pg-bin-dir at a newer bin directory"
            ),
        }
    }
}

/// The major version of a PostgreSQL version string: `15.20` → 15, `9.6.24` → 9.
pub fn major_of(version: &str) -> Option<u32> {
    version
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|m| m.parse().ok())
}

/// Errors an older server gives SQL written for a newer one, which do not
/// say so themselves: part of the message, the first major version that
/// takes the SQL, and what it is.
const NEWER: &[(&str, u32, &str)] = &[
    (
        "subquery in FROM must have an alias",
        16,
        "a subquery in FROM without an alias",
    ),
    (
        "function gen_random_uuid() does not exist",
        13,
        "gen_random_uuid() without the pgcrypto extension",
    ),
    ("function any_value(", 16, "any_value()"),
    ("function uuidv7(", 18, "uuidv7()"),
    ("function random(integer, integer)", 17, "random(min, max)"),
    (
        "unrecognized parameter \"security_invoker\"",
        15,
        "a view WITH (security_invoker)",
    ),
    (
        "unrecognized configuration parameter \"transaction_timeout\"",
        17,
        "transaction_timeout",
    ),
    ("syntax error at or near \"MERGE\"", 15, "MERGE"),
    (
        "syntax error at or near \"NULLS\"",
        15,
        "UNIQUE NULLS NOT DISTINCT",
    ),
    (
        "role \"pg_read_all_data\" does not exist",
        14,
        "the role pg_read_all_data",
    ),
    (
        "role \"pg_write_all_data\" does not exist",
        14,
        "the role pg_write_all_data",
    ),
    (
        "role \"pg_checkpoint\" does not exist",
        15,
        "the role pg_checkpoint",
    ),
    (
        "role \"pg_create_subscription\" does not exist",
        16,
        "the role pg_create_subscription",
    ),
    (
        "role \"pg_maintain\" does not exist",
        17,
        "the role pg_maintain",
    ),
];

/// When `message` is the error a server of `server_version` gives SQL
/// written for a newer PostgreSQL: what needs which version, to say beside
/// the error (lemmy's `FROM (SELECT ...)` on PostgreSQL 15 read only
/// "subquery in FROM must have an alias").
pub fn needs_newer(message: &str, server_version: &str) -> Option<String> {
    let major = major_of(server_version)?;
    NEWER
        .iter()
        .find(|(error, since, _)| message.contains(error) && major < *since)
        .map(|(_, since, what)| {
            format!(
                "{what} needs PostgreSQL {since} or later, and this server runs {server_version}"
            )
        })
}

/// The version a program prints for `--version`:
/// `pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)` → `15.20`.
pub fn parse_version(out: &str) -> Option<String> {
    let after = out.split_once(") ")?.1;
    let v: String = after
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    (!v.is_empty()).then_some(v)
}

fn version_of(path: &Path) -> Option<String> {
    let out = Command::new(path).arg("--version").output().ok()?;
    if !out.status.success() {
        return None;
    }
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

/// Directories packages install versioned client programs into.
fn versioned_dirs() -> Vec<(u32, PathBuf)> {
    let mut dirs = Vec::new();
    let mut scan = |root: &str, prefix: &str, suffix: &str| {
        let Ok(entries) = std::fs::read_dir(root) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(v) = name
                .to_str()
                .and_then(|n| n.strip_prefix(prefix))
                .and_then(major_of)
            else {
                continue;
            };
            dirs.push((v, e.path().join(suffix)));
        }
    };
    scan("/usr/lib/postgresql", "", "bin");
    scan("/usr", "pgsql-", "bin");
    scan("/opt/homebrew/opt", "postgresql@", "bin");
    scan("/usr/local/opt", "postgresql@", "bin");
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    dirs
}

/// Whether `path` is Debian's `pg_wrapper` (postgresql-common), which
/// `/usr/bin/pg_dump` and its siblings link to.
fn is_debian_wrapper(path: &Path) -> bool {
    std::fs::canonicalize(path).is_ok_and(|p| p.file_name().is_some_and(|n| n == "pg_wrapper"))
}

/// Find `name` at least as new as `server_major` (0: any version).
pub fn find(name: &str, server_version: &str, bin_dir: Option<&Path>) -> Result<Tool, ToolError> {
    let server_major = major_of(server_version).unwrap_or(0);
    let (candidates, looked): (Vec<PathBuf>, String) = match bin_dir {
        Some(dir) => (
            vec![dir.join(name)],
            format!("{} (--pg-bin-dir / PG_BIN_DIR)", dir.display()),
        ),
        None => {
            let (wrappers, mut c): (Vec<PathBuf>, Vec<PathBuf>) = which::which_all(name)
                .map(Iterator::collect::<Vec<_>>)
                .unwrap_or_default()
                .into_iter()
                .partition(|p| is_debian_wrapper(p));
            c.extend(versioned_dirs().into_iter().map(|(_, d)| d.join(name)));
            // Debian's wrapper runs the same binaries as the versioned
            // directories hold, but picks the version by the local clusters,
            // not by the server we are about to talk to, and costs a Perl
            // start-up (about 50 ms) on every call. The binaries it would
            // run come first; it is the last resort.
            c.extend(wrappers);
            (
                c,
                "PATH, /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin, /opt/homebrew/opt/postgresql@*/bin"
                    .to_string(),
            )
        }
    };
    let mut found = Vec::new();
    for path in candidates.into_iter().filter(|p| p.is_file()) {
        let Some(version) = version_of(&path) else {
            continue;
        };
        let major = major_of(&version).unwrap_or(0);
        if major >= server_major {
            return Ok(Tool {
                path,
                version,
                major,
            });
        }
        found.push(format!("{version} at {}", path.display()));
    }
    if found.is_empty() {
        return Err(ToolError::Missing {
            name: name.to_string(),
            looked,
        });
    }
    found.dedup();
    Err(ToolError::TooOld {
        name: name.to_string(),
        found: found.join(", "),
        server: server_version.to_string(),
        server_major,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_for_sql_of_a_newer_server_says_which_version() {
        assert_eq!(
            needs_newer(
                "subquery in FROM must have an alias",
                "15.18 (Debian 15.18-0+deb12u1)"
            )
            .as_deref(),
            Some(
                "a subquery in FROM without an alias needs PostgreSQL 16 or later, and this server runs 15.18 (Debian 15.18-0+deb12u1)"
            )
        );
        // A server new enough gave it for another reason.
        assert_eq!(
            needs_newer("subquery in FROM must have an alias", "16.4"),
            None
        );
        assert_eq!(needs_newer("relation \"t\" does not exist", "12.1"), None);
        assert_eq!(needs_newer("function uuidv7() does not exist", ""), None);
    }

    #[test]
    fn debian_wrapper_is_known_by_its_link_target_and_comes_last() {
        let dir = tempfile::tempdir().unwrap();
        let wrapper = dir.path().join("pg_wrapper");
        std::fs::write(&wrapper, "#!/usr/bin/perl\n").unwrap();
        let link = dir.path().join("pg_dump");
        std::os::unix::fs::symlink(&wrapper, &link).unwrap();
        let plain = dir.path().join("pg_restore");
        std::fs::write(&plain, "").unwrap();
        assert!(is_debian_wrapper(&link));
        assert!(!is_debian_wrapper(&plain));
        assert!(!is_debian_wrapper(&dir.path().join("missing")));
        // On a Debian machine with postgresql-common, the binary found is
        // the one the wrapper would have run, not the wrapper.
        if Path::new("/usr/bin/pg_dump").exists()
            && is_debian_wrapper(Path::new("/usr/bin/pg_dump"))
        {
            let tool = find("pg_dump", "0", None).unwrap();
            assert!(!is_debian_wrapper(&tool.path), "{}", tool.path.display());
        }
    }

    #[test]
    fn versions_parse() {
        for (out, v, m) in [
            (
                "pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n",
                "15.20",
                15,
            ),
            ("pg_restore (PostgreSQL) 17.0\n", "17.0", 17),
            ("pg_dump (PostgreSQL) 9.6.24\n", "9.6.24", 9),
            ("psql (PostgreSQL) 18beta1\n", "18", 18),
        ] {
            assert_eq!(parse_version(out).as_deref(), Some(v));
            assert_eq!(major_of(v), Some(m));
        }
        assert_eq!(parse_version("nonsense"), None);
    }

    #[test]
    fn a_missing_bin_dir_names_where_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        let e = find("pg_dump", "15.2", Some(dir.path())).unwrap_err();
        assert!(matches!(e, ToolError::Missing { .. }));
        assert!(e.to_string().contains(&dir.path().display().to_string()));
    }
}
