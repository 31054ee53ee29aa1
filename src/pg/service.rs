//! libpq's connection service file: `service=prod` in a connection string
//! (or `PGSERVICE=prod`) names a section of `pg_service.conf` whose
//! settings fill what the string leaves out.
//!
//! Where libpq looks, in order, taking the first file that has the
//! section: `PGSERVICEFILE` (default `~/.pg_service.conf`), then
//! `pg_service.conf` in `PGSYSCONFDIR` (default: Debian's
//! `/etc/postgresql-common`, then `/etc`). Precedence is libpq's: the
//! connection string, then the service, then the environment, then the
//! defaults. A named service that no file defines is an error, as in libpq.

use std::path::PathBuf;

/// The keys a service may set: libpq's names, as runbook's connection
/// strings take them.
const KEYS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "connect_timeout",
    "options",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "sslnegotiation",
    "target_session_attrs",
    "keepalives",
    "keepalives_idle",
    "load_balance_hosts",
    "channel_binding",
    "gssencmode",
    "ssl_min_protocol_version",
];

fn is_url(conn: &str) -> bool {
    conn.starts_with("postgres://") || conn.starts_with("postgresql://")
}

/// The service `conn` names (`service=NAME`), and `conn` without it.
fn take_service(conn: &str) -> (String, Option<String>) {
    if is_url(conn) {
        let Some((base, query)) = conn.split_once('?') else {
            return (conn.to_string(), None);
        };
        let mut service = None;
        let kept: Vec<&str> = query
            .split('&')
            .filter(|p| match p.strip_prefix("service=") {
                Some(s) => {
                    service = Some(s.to_string());
                    false
                }
                None => true,
            })
            .collect();
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (rest, service)
    } else {
        let mut service = None;
        let kept: Vec<&str> = conn
            .split_whitespace()
            .filter(|p| match p.strip_prefix("service=") {
                Some(s) => {
                    service = Some(s.trim_matches('\'').to_string());
                    false
                }
                None => true,
            })
            .collect();
        (kept.join(" "), service)
    }
}

/// The files libpq reads, in order.
fn files() -> Vec<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let mut out = Vec::new();
    match env("PGSERVICEFILE") {
        Some(f) => out.push(PathBuf::from(f)),
        None => {
            if let Some(home) = env("HOME") {
                out.push(PathBuf::from(home).join(".pg_service.conf"));
            }
        }
    }
    match env("PGSYSCONFDIR") {
        Some(d) => out.push(PathBuf::from(d).join("pg_service.conf")),
        None => {
            out.push(PathBuf::from("/etc/postgresql-common/pg_service.conf"));
            out.push(PathBuf::from("/etc/pg_service.conf"));
        }
    }
    out
}

/// The settings of section `name` in `text`, or None when it has none.
/// `file` names the file in errors.
fn section(text: &str, name: &str, file: &str) -> Result<Option<Vec<(String, String)>>, String> {
    let mut inside = false;
    let mut found = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            if found && inside {
                break;
            }
            inside = s.trim() == name;
            found |= inside;
            continue;
        }
        if !inside {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!(
                "{file}:{}: expected `key=value` in service [{name}]",
                i + 1
            ));
        };
        let k = k.trim();
        if k == "service" {
            return Err(format!(
                "{file}:{}: service [{name}] names another service; libpq refuses nested services too",
                i + 1
            ));
        }
        if !KEYS.contains(&k) {
            return Err(format!(
                "{file}:{}: service [{name}] sets `{k}`, which runbook does not support; supported: {}",
                i + 1,
                KEYS.join(", ")
            ));
        }
        out.push((k.to_string(), v.trim().to_string()));
    }
    Ok(found.then_some(out))
}

/// The settings of service `name` from the first file that defines it.
fn lookup(name: &str) -> Result<Vec<(String, String)>, String> {
    let searched = files();
    for f in &searched {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("cannot read {}: {e}", f.display())),
        };
        if let Some(s) = section(&text, name, &f.display().to_string())? {
            return Ok(s);
        }
    }
    Err(format!(
        "service `{name}` is not defined in {}",
        searched
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(" or ")
    ))
}

/// Percent-encoding for a connection URI's parts: everything but
/// unreserved characters and `/` (a socket directory stays readable).
const URI_PART: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

pub(crate) fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, URI_PART).to_string()
}

/// Which of `KEYS` the connection string sets itself.
fn said(conn: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = KEYS
        .iter()
        .copied()
        .filter(|k| {
            if is_url(conn) {
                conn.split_once('?')
                    .is_some_and(|(_, q)| q.split('&').any(|p| p.starts_with(&format!("{k}="))))
            } else {
                conn.split_whitespace()
                    .any(|p| p.starts_with(&format!("{k}=")))
            }
        })
        .collect();
    if is_url(conn) {
        // postgres://user:password@host:port/dbname
        let after = conn.split_once("://").map_or("", |x| x.1);
        let authority = after.split(['/', '?']).next().unwrap_or("");
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if let Some(u) = userinfo {
            out.push("user");
            if u.contains(':') {
                out.push("password");
            }
        }
        if !hostport.is_empty() {
            out.push("host");
            out.push("hostaddr");
        }
        if hostport
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.contains(']'))
        {
            out.push("port");
        }
        let path = after
            .split_once('/')
            .map_or("", |x| x.1)
            .split('?')
            .next()
            .unwrap_or("");
        if !path.is_empty() {
            out.push("dbname");
        }
    }
    out
}

/// `conn` with its service's settings for every key it does not set
/// itself. Without a service (in the string or `PGSERVICE`), `conn` as it
/// is.
pub fn apply(conn: &str) -> Result<String, String> {
    let (rest, named) = take_service(conn);
    let service = named.or_else(|| std::env::var("PGSERVICE").ok().filter(|s| !s.is_empty()));
    let Some(service) = service else {
        return Ok(rest);
    };
    let settings = lookup(&service)?;
    let already = said(&rest);
    let add: Vec<&(String, String)> = settings
        .iter()
        .filter(|(k, _)| !already.contains(&k.as_str()))
        .collect();
    if add.is_empty() {
        return Ok(rest);
    }
    Ok(if is_url(&rest) {
        let pairs: Vec<String> = add
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect();
        let sep = if rest.contains('?') { '&' } else { '?' };
        format!("{rest}{sep}{}", pairs.join("&"))
    } else {
        let pairs: Vec<String> = add
            .iter()
            .map(|(k, v)| {
                if v.is_empty() || v.contains([' ', '\'', '\\']) {
                    format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
                } else {
                    format!("{k}={v}")
                }
            })
            .collect();
        if rest.is_empty() {
            pairs.join(" ")
        } else {
            format!("{rest} {}", pairs.join(" "))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_is_read_until_the_next_and_unknown_keys_are_named() {
        let text = "# comment\n[other]\nhost=x\n\n[prod]\nhost = db.example.com\nport=6432\nsslmode=verify-full\n[after]\nport=1\n";
        let s = section(text, "prod", "f").unwrap().unwrap();
        assert_eq!(
            s,
            [
                ("host".to_string(), "db.example.com".to_string()),
                ("port".into(), "6432".into()),
                ("sslmode".into(), "verify-full".into())
            ]
        );
        assert!(section(text, "missing", "f").unwrap().is_none());
        let e = section("[p]\nkrbsrvname=postgres\n", "p", "f").unwrap_err();
        assert!(e.starts_with("f:2: service [p] sets `krbsrvname`"), "{e}");
    }

    #[test]
    fn the_string_wins_over_the_service() {
        assert_eq!(
            said("postgres://u:pw@h:5/db?sslmode=require"),
            [
                "sslmode", "user", "password", "host", "hostaddr", "port", "dbname"
            ]
        );
        assert_eq!(said("postgres://h/"), ["host", "hostaddr"]);
        assert_eq!(said("host=/tmp port=5 user=x"), ["host", "port", "user"]);
        assert_eq!(
            take_service("postgres://h/db?service=prod&sslmode=require"),
            (
                "postgres://h/db?sslmode=require".to_string(),
                Some("prod".into())
            )
        );
        assert_eq!(
            take_service("service=prod user=x"),
            ("user=x".to_string(), Some("prod".into()))
        );
    }
}
