//! What application tools put in a `DATABASE_URL` that libpq does not
//! take, so that a team's URL works here as it is.
//!
//! - The schema: Prisma's `?schema=app`, and the `?search_path=dbmate,app`
//!   that pgx, lib/pq and dbmate send the server. runbook gives the session
//!   that search path through the startup `options` (what libpq's own
//!   `?options=-c search_path=...` sets), so the run, its checks and the
//!   tools it starts (they get the same `PGOPTIONS`) resolve names as the
//!   application does.
//! - Prisma's settings of its own client pool (`connection_limit`,
//!   `pool_timeout`, `socket_timeout`, `statement_cache_size`): runbook
//!   opens its own few sessions, so they are dropped.
//! - Prisma's `pgbouncer=true`, which says the URL reaches a pooler in
//!   transaction mode: refused, naming the direct URL to use instead.

use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// The URL without the tools' parameters, its `options` (or, where it has
/// none, `PGOPTIONS`'s) carrying the search path it names after what they
/// held; and the schema the tools keep their history tables in, when the
/// URL names one: Prisma's `schema`, or the first of `search_path`, as
/// dbmate takes it. A `key=value` conninfo, or a URL that names none of
/// them, is returned as it is.
pub fn split(conn: &str) -> Result<(String, Option<String>), String> {
    if !(conn.starts_with("postgres://") || conn.starts_with("postgresql://")) {
        return Ok((conn.to_string(), None));
    }
    let Some((base, query)) = conn.split_once('?') else {
        return Ok((conn.to_string(), None));
    };
    let decode = |v: &str| percent_decode_str(v).decode_utf8_lossy().into_owned();
    let (mut schema, mut search_path, mut options) = (None, None, None);
    let mut dropped = false;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("schema", v) => schema = Some(decode(v)),
            ("search_path", v) => search_path = Some(decode(v)),
            ("options", v) => options = Some(decode(v)),
            (k, _) if PRISMA_POOL.contains(&k) => dropped = true,
            ("pgbouncer", v) if decode(v).eq_ignore_ascii_case("false") => dropped = true,
            ("pgbouncer", _) => {
                return Err(
                    "`pgbouncer=true` (Prisma's) says this URL reaches a pooler in \
                     transaction mode, through which runbook cannot hold its session \
                     (its lock, its transactions); give the direct URL instead \
                     (Prisma's `directUrl`, often DIRECT_URL)"
                        .into(),
                );
            }
            _ => kept.push(pair.to_string()),
        }
    }
    let rebuilt = |kept: &[String]| match kept.is_empty() {
        true => base.to_string(),
        false => format!("{base}?{}", kept.join("&")),
    };
    let first = match (&schema, &search_path) {
        (Some(s), None) => Some(s.trim().to_string()),
        (None, Some(p)) => first_schema(p),
        _ => None,
    };
    let path = match (schema, search_path) {
        (None, None) if !dropped => return Ok((conn.to_string(), None)),
        (None, None) => {
            if let Some(o) = options {
                kept.push(format!(
                    "options={}",
                    utf8_percent_encode(&o, NON_ALPHANUMERIC)
                ));
            }
            return Ok((rebuilt(&kept), None));
        }
        (Some(_), Some(_)) => {
            return Err(
                "the URL names both `schema` (Prisma's) and `search_path`; give one".into(),
            );
        }
        // Prisma quotes its schema: `MyApp` keeps its case.
        (Some(s), None) => match s.trim() {
            "" => return Err("the URL's `schema` is empty; name a schema".into()),
            s => crate::pg::quote::ident(s),
        },
        // As the server reads a search_path: names, comma-separated.
        (None, Some(p)) => match p.trim() {
            "" => return Err("the URL's `search_path` is empty; name a schema".into()),
            p => p.to_string(),
        },
    };
    let option = format!("-c search_path={}", escaped(&path));
    // The options the session would have had: the string's (a service's
    // are in it by now), else the environment's, as libpq takes them.
    let options = options.or_else(|| std::env::var("PGOPTIONS").ok());
    let options = match options.filter(|o| !o.trim().is_empty()) {
        Some(o) => format!("{o} {option}"),
        None => option,
    };
    kept.push(format!(
        "options={}",
        utf8_percent_encode(&options, NON_ALPHANUMERIC)
    ));
    Ok((rebuilt(&kept), first))
}

/// The first schema of a search path as the server reads its names: a
/// quoted one as written, another folded to lower case. `$user` names no
/// one schema: None.
fn first_schema(path: &str) -> Option<String> {
    let first = path.trim();
    let name = if let Some(rest) = first.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, chars.peek()) {
                ('"', Some('"')) => {
                    out.push('"');
                    chars.next();
                }
                ('"', _) => break,
                (c, _) => out.push(c),
            }
        }
        out
    } else {
        first.split(',').next()?.trim().to_lowercase()
    };
    (!name.is_empty() && name != "$user").then_some(name)
}

/// Prisma's settings of its own client pool and statement cache.
const PRISMA_POOL: &[&str] = &[
    "connection_limit",
    "pool_timeout",
    "socket_timeout",
    "statement_cache_size",
];

/// A value as the server splits startup options: on whitespace, with a
/// backslash keeping the next character.
fn escaped(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c == '\\' || c.is_whitespace() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str) -> String {
        let (rest, _) = split(url).unwrap();
        let config: tokio_postgres::Config = rest.parse().unwrap();
        config.get_options().unwrap_or_default().to_string()
    }

    #[test]
    fn a_schema_or_search_path_becomes_the_sessions_search_path() {
        let url = "postgresql://u:p@h:5432/db?schema=app&sslmode=disable";
        let (rest, path) = split(url).unwrap();
        assert!(
            rest.starts_with("postgresql://u:p@h:5432/db?sslmode=disable&options="),
            "{rest}"
        );
        assert_eq!(path.as_deref(), Some("app"));
        assert_eq!(options(url), "-c search_path=\"app\"");
        assert_eq!(
            options("postgres://h/measure?search_path=dbmate,measure"),
            "-c search_path=dbmate,measure"
        );
        // Prisma's schema keeps its case, and a space survives the split.
        assert_eq!(
            options("postgres://h/db?schema=My%20App"),
            r#"-c search_path="My\ App""#
        );
        // The URL's own options are kept, and come first.
        assert_eq!(
            options("postgres://h/db?options=-c%20statement_timeout%3D5s&schema=app"),
            "-c statement_timeout=5s -c search_path=\"app\""
        );
    }

    #[test]
    fn prismas_pool_settings_are_dropped_and_its_pooler_refused() {
        let (rest, path) = split(
            "postgresql://u@h/db?connection_limit=5&pool_timeout=10&sslmode=require&statement_cache_size=0&socket_timeout=3&pgbouncer=false",
        )
        .unwrap();
        assert_eq!(
            (rest.as_str(), path),
            ("postgresql://u@h/db?sslmode=require", None)
        );
        let (rest, _) = split("postgresql://u@h/db?connection_limit=1").unwrap();
        assert_eq!(rest, "postgresql://u@h/db");
        let e = split("postgresql://u@h:6543/db?pgbouncer=true&connection_limit=1").unwrap_err();
        assert!(e.contains("directUrl"), "{e}");
    }

    #[test]
    fn the_history_schema_is_prismas_or_the_first_of_the_search_path() {
        let first = |url: &str| split(url).unwrap().1;
        assert_eq!(
            first("postgres://h/db?schema=MyApp").as_deref(),
            Some("MyApp")
        );
        assert_eq!(
            first("postgres://h/db?search_path=dbmate,measure").as_deref(),
            Some("dbmate")
        );
        assert_eq!(
            first("postgres://h/db?search_path=App").as_deref(),
            Some("app")
        );
        assert_eq!(
            first("postgres://h/db?search_path=%22My%22%22App%22,x").as_deref(),
            Some("My\"App")
        );
        assert_eq!(first("postgres://h/db?search_path=$user,public"), None);
    }

    #[test]
    fn a_url_without_them_or_conninfo_is_left_alone() {
        for s in [
            "postgres://h/db",
            "postgres://h/db?sslmode=require",
            "host=h dbname=db schema=app",
        ] {
            assert_eq!(split(s).unwrap(), (s.to_string(), None));
        }
    }

    #[test]
    fn both_or_an_empty_one_is_refused() {
        assert!(
            split("postgres://h/db?schema=a&search_path=b")
                .unwrap_err()
                .contains("both")
        );
        assert!(
            split("postgres://h/db?schema=")
                .unwrap_err()
                .contains("empty")
        );
        assert!(
            split("postgres://h/db?search_path=%20")
                .unwrap_err()
                .contains("empty")
        );
    }
}
