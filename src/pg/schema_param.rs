//! The schema a connection URL names the way application tools name it:
//! Prisma's `?schema=app`, and the `?search_path=dbmate,app` that pgx,
//! lib/pq and dbmate send the server. libpq refuses both, so a team's
//! `DATABASE_URL` did not work here as it is. runbook gives the session
//! that search path through the startup `options` (what libpq's own
//! `?options=-c search_path=...` sets), so the run, its checks and the
//! tools it starts (they get the same `PGOPTIONS`) resolve names as the
//! application does.

use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// The search path a URL's query names, and the URL without those
/// parameters: its `options` (or, where it has none, `PGOPTIONS`'s) carry
/// the search path instead, after what they held. A `key=value` conninfo,
/// or a URL that names none, is returned as it is.
pub fn split(conn: &str) -> Result<(String, Option<String>), String> {
    if !(conn.starts_with("postgres://") || conn.starts_with("postgresql://")) {
        return Ok((conn.to_string(), None));
    }
    let Some((base, query)) = conn.split_once('?') else {
        return Ok((conn.to_string(), None));
    };
    let decode = |v: &str| percent_decode_str(v).decode_utf8_lossy().into_owned();
    let (mut schema, mut search_path, mut options) = (None, None, None);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("schema", v) => schema = Some(decode(v)),
            ("search_path", v) => search_path = Some(decode(v)),
            ("options", v) => options = Some(decode(v)),
            _ => kept.push(pair.to_string()),
        }
    }
    let path = match (schema, search_path) {
        (None, None) => return Ok((conn.to_string(), None)),
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
    Ok((format!("{base}?{}", kept.join("&")), Some(path)))
}

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
        assert_eq!(path.as_deref(), Some("\"app\""));
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
