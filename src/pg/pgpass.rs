//! libpq's connection conventions beyond the URL: the `PG*` environment
//! variables fill what the URL leaves out, and a password file
//! (`PGPASSFILE`, default `~/.pgpass`) gives the password, matched as libpq
//! matches it (`host:port:database:user:password`, `*` for any, `\:` and
//! `\\` escaped) and ignored, with a warning, when others may read it.
//! Precedence is libpq's: what the URL says, then the environment, then
//! the defaults (the operating system's user name).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio_postgres::Config;
use tokio_postgres::config::Host;

/// Fill `config` from the environment and the password file. Returns what
/// a person should hear (a password file others can read), or a variable
/// whose value libpq would refuse: the children (pg_dump, psql) inherit
/// it, and would fail half-way through the run where this session did not.
pub fn complete(config: &mut Config) -> Result<Vec<String>, String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    // The addresses to connect to, skipping the name lookup; the host
    // names still serve TLS and the password file.
    let addrs_from_env = config.get_hostaddrs().is_empty();
    if addrs_from_env && let Some(a) = env("PGHOSTADDR") {
        let addrs = a
            .split(',')
            .map(|one| one.trim().parse::<std::net::IpAddr>().ok())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                format!("PGHOSTADDR: `{a}` is not an IP address (or a list of them, one per host)")
            })?;
        for addr in addrs {
            config.hostaddr(addr);
        }
    }
    // With addresses alone, libpq connects to them; no socket is implied.
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        match env("PGHOST") {
            Some(h) => {
                for host in h.split(',') {
                    config.host(host);
                }
            }
            None => {
                config.host("/var/run/postgresql");
            }
        }
    }
    let (hosts, addrs) = (config.get_hosts().len(), config.get_hostaddrs().len());
    if hosts > 0 && addrs > 0 && hosts != addrs {
        return Err(format!(
            "{}: {addrs} address(es) for {hosts} host(s); give one address per host, as libpq requires",
            if addrs_from_env {
                "PGHOSTADDR"
            } else {
                "hostaddr"
            }
        ));
    }
    // Each variable is read, and checked, only where the string leaves
    // its setting out, as libpq reads it.
    if config.get_ports().is_empty()
        && let Some(p) = env("PGPORT")
    {
        // One port, or one per host.
        let ports = p
            .split(',')
            .map(|one| one.trim().parse::<u16>().ok().filter(|n| *n > 0))
            .collect::<Option<Vec<u16>>>()
            .ok_or_else(|| {
                format!("PGPORT: `{p}` is not a port number (or a list of them, one per host)")
            })?;
        for port in ports {
            config.port(port);
        }
    }
    if config.get_user().is_none() {
        let user = env("PGUSER").unwrap_or_else(os_user);
        config.user(&user);
    }
    if config.get_dbname().is_none()
        && let Some(d) = env("PGDATABASE")
    {
        config.dbname(&d);
    }
    if config.get_application_name().is_none()
        && let Some(a) = env("PGAPPNAME")
    {
        config.application_name(&a);
    }
    if config.get_connect_timeout().is_none()
        && let Some(t) = env("PGCONNECT_TIMEOUT")
    {
        // Whole seconds, 2 at least; 0 or less is no limit.
        let seconds: i64 = t
            .trim()
            .parse()
            .map_err(|_| format!("PGCONNECT_TIMEOUT: `{t}` is not a whole number of seconds"))?;
        if seconds > 0 {
            config.connect_timeout(std::time::Duration::from_secs(
                seconds.max(2).unsigned_abs(),
            ));
        }
    }
    if config.get_options().is_none()
        && let Some(o) = env("PGOPTIONS")
    {
        // A bad one is then refused by the server when this session
        // connects, before anything runs, as it would refuse pg_dump's.
        config.options(o);
    }
    if let Some(a) = env("PGTARGETSESSIONATTRS")
        && config.get_target_session_attrs() == tokio_postgres::config::TargetSessionAttrs::Any
    {
        use tokio_postgres::config::TargetSessionAttrs;
        config.target_session_attrs(match a.as_str() {
            "any" => TargetSessionAttrs::Any,
            "read-write" => TargetSessionAttrs::ReadWrite,
            _ => {
                return Err(format!(
                    "PGTARGETSESSIONATTRS: `{a}` is not one runbook supports: any, read-write"
                ));
            }
        });
    }
    if let Some(u) = UNHONOURED
        .iter()
        .find(|u| env(u.var).is_some_and(|v| (u.refused)(&v)))
    {
        return Err(format!(
            "{}: runbook cannot honour it for its own session: {}",
            u.var, u.why
        ));
    }
    if let Some(c) = env("PGCHANNELBINDING") {
        use tokio_postgres::config::ChannelBinding;
        let binding = match c.as_str() {
            "disable" => ChannelBinding::Disable,
            "prefer" => ChannelBinding::Prefer,
            "require" => ChannelBinding::Require,
            _ => {
                return Err(format!(
                    "PGCHANNELBINDING: `{c}` is not one of disable, prefer, require"
                ));
            }
        };
        // The string's own setting comes first; `prefer` cannot be told
        // from the default, so the variable beats a string that says it.
        if config.get_channel_binding() == ChannelBinding::Prefer {
            config.channel_binding(binding);
        }
    }
    let mut notes = Vec::new();
    if config.get_password().is_none() {
        if let Some(pw) = env("PGPASSWORD") {
            config.password(pw);
        } else if let Some(file) = passfile() {
            match lookup(&file, config) {
                Ok(Some(pw)) => {
                    config.password(pw);
                }
                Ok(None) => {}
                Err(note) => notes.push(note),
            }
        }
    }
    Ok(notes)
}

/// A libpq variable that makes a connection stricter in a way runbook's
/// own session cannot follow. The children (pg_dump, psql) would follow
/// it and runbook would not; so a run with one set (to a value `refused`
/// says it cannot follow) is refused, rather than run with less than was
/// asked for.
struct Unhonoured {
    var: &'static str,
    refused: fn(&str) -> bool,
    why: &'static str,
}

const UNHONOURED: &[Unhonoured] = &[
    Unhonoured {
        var: "PGREQUIREAUTH",
        refused: |_| true,
        why: "its driver cannot tell which authentication the server asked for, so it cannot refuse the methods the variable leaves out",
    },
    Unhonoured {
        var: "PGSSLCRLDIR",
        refused: |_| true,
        why: "it reads revocation lists from a file (`sslcrl`, `PGSSLCRL`), not from a directory of hashed names",
    },
    Unhonoured {
        var: "PGSSLMINPROTOCOLVERSION",
        refused: |v| !matches!(v, "TLSv1" | "TLSv1.1" | "TLSv1.2"),
        why: "its TLS accepts TLS 1.2 and 1.3, and cannot be held to 1.3 alone",
    },
    Unhonoured {
        var: "PGREQUIREPEER",
        refused: |_| true,
        why: "it does not check which operating-system user runs the server behind a socket",
    },
    Unhonoured {
        var: "PGSSLCERTMODE",
        refused: |v| v == "require",
        why: "it cannot tell whether the server asked for its certificate",
    },
    Unhonoured {
        var: "PGGSSENCMODE",
        refused: |v| v == "require",
        why: "it cannot encrypt with GSSAPI",
    },
];

fn os_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::effective())
        .ok()
        .flatten()
        .map_or_else(|| "postgres".into(), |u| u.name)
}

fn passfile() -> Option<PathBuf> {
    match std::env::var_os("PGPASSFILE") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgpass")),
    }
}

/// The password for `config` in `file`. Err: the file is ignored, and why.
fn lookup(file: &Path, config: &Config) -> Result<Option<String>, String> {
    let Ok(meta) = std::fs::metadata(file) else {
        return Ok(None);
    };
    if !meta.is_file() {
        return Ok(None);
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "password file `{}` is readable by others, so it is ignored (libpq does the same); chmod 0600 it",
            file.display()
        ));
    }
    let Ok(text) = std::fs::read_to_string(file) else {
        return Ok(None);
    };
    let host = match (config.get_hosts().first(), config.get_hostaddrs().first()) {
        (Some(Host::Tcp(h)), _) => h.clone(),
        // An address given alone is matched as the host, as in libpq.
        (None, Some(a)) => a.to_string(),
        // A Unix socket matches `localhost`, as in libpq.
        (Some(Host::Unix(_)), _) | (None, None) => "localhost".to_string(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or_default()
        .to_string();
    let user = config.get_user().unwrap_or_default().to_string();
    let want = [host.as_str(), port.as_str(), db.as_str(), user.as_str()];
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_fields(line);
        if fields.len() < 5 {
            continue;
        }
        if fields[..4]
            .iter()
            .zip(want)
            .all(|(f, w)| f == "*" || f == w)
        {
            return Ok(Some(fields[4..].join(":")));
        }
    }
    Ok(None)
}

/// A passfile line's fields: `:` separates, `\` escapes the next character.
fn split_fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.last_mut().expect("one field").push(n);
                }
            }
            ':' if out.len() < 5 => out.push(String::new()),
            _ => out.last_mut().expect("one field").push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passfile_lines_match_as_libpq_matches_them() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pgpass");
        std::fs::write(
            &f,
            "# comment\nother:5432:*:*:nope\ndb.example:*:app:deploy:s3cr\\:et\\\\x\n*:*:*:*:fallback\n",
        )
        .unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut c: Config = "postgres://deploy@db.example:6432/app".parse().unwrap();
        assert_eq!(lookup(&f, &c).unwrap().as_deref(), Some("s3cr:et\\x"));
        c.dbname("elsewhere");
        assert_eq!(lookup(&f, &c).unwrap().as_deref(), Some("fallback"));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = lookup(&f, &c).unwrap_err();
        assert!(e.contains("readable by others"), "{e}");
    }
}
