//! The run's database session: connect, apply settings, run a query with a
//! timeout that cancels on the server, classify errors for retries.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, CancelToken, Client, Config, SimpleQueryMessage};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::events::ErrorKind;
use crate::events::{ErrorInfo, Target};
use crate::model::{ErrorClass, Settings};

/// A connected session, with the server's notices on a channel.
pub struct Db {
    pub client: Client,
    cancel: CancelToken,
    notices: mpsc::UnboundedReceiver<String>,
    config: Conn,
    tls: MakeRustlsConnect,
}

/// Cancels what a session runs, kept apart from the session (whose client
/// may be shared), and sent over the session's own TLS: a proxy that takes
/// only TLS refuses a cancel request without it.
#[derive(Clone)]
pub struct Canceller {
    token: CancelToken,
    tls: MakeRustlsConnect,
}

impl Canceller {
    /// Ask the server to cancel the session's query; it may have ended.
    pub async fn cancel(&self) {
        let _ = self.token.cancel_query(self.tls.clone()).await;
    }
}

/// Where and how to connect: tokio-postgres's config, and the TLS that
/// runbook checks itself (libpq's sslmodes).
#[derive(Debug, Clone)]
pub struct Conn {
    pub config: Config,
    pub tls: crate::pg::tls::Tls,
    /// What a person should hear about how it was completed (a password
    /// file others can read, so ignored).
    pub notes: Vec<String>,
    /// Of several hosts, the one the run's session reached (see
    /// [`Db::reached_host`]): the report names it, and the children are
    /// sent to it alone.
    pub reached: Option<usize>,
    /// `--password-command`: asked for a password at each login.
    pub password_command: Option<crate::pg::password::PasswordCommand>,
    /// The schema the URL names as application tools name it (Prisma's
    /// `schema`, the first of `search_path`): where those tools keep their
    /// history tables.
    pub schema: Option<String>,
}

/// Why a query did not complete.
pub enum QueryFail {
    Db(tokio_postgres::Error),
    /// The step's timeout passed; a cancel request was sent.
    Timeout,
    /// The run was interrupted; a cancel request was sent.
    Interrupted,
}

/// The target the environment names: `DATABASE_URL`, else libpq's own
/// variables (`PGHOST`, with `PGPORT`, `PGUSER`, `PGDATABASE` and the
/// password file), as an empty conninfo that [`parse_url`] completes.
pub fn url_from_env() -> Option<String> {
    let set = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    set("DATABASE_URL").or_else(|| {
        set("PGHOST")
            .or_else(|| set("PGSERVICE"))
            .map(|_| String::new())
    })
}

/// Parse a connection URL (or `key=value` conninfo), refusing what cannot
/// work before anything runs: a bad TLS parameter or file is named.
pub fn parse_url(url: &str) -> Result<Conn, String> {
    // A service's settings come after the string's and before the
    // environment's, as in libpq.
    let url = crate::pg::service::apply(url)?;
    let (url, schema) = crate::pg::tool_url::split(&url)?;
    let (rest, tls) = crate::pg::tls::split(&url)?;
    let mut config: Config = rest.parse().map_err(|e: tokio_postgres::Error| {
        // The parser's reason is in the error's source: `invalid value
        // for option \`port\``.
        let why = match std::error::Error::source(&e) {
            Some(why) => format!("{why}"),
            None => e.to_string(),
        };
        match UNHONOURED
            .iter()
            .find(|(key, _)| why == format!("unknown option `{key}`"))
        {
            Some((key, reason)) => format!("`{key}`: {reason}"),
            None => why,
        }
    })?;
    let notes = crate::pg::pgpass::complete(&mut config)?;
    config.ssl_mode(tls.driver_mode());
    if tls.direct {
        config.ssl_negotiation(tokio_postgres::config::SslNegotiation::Direct);
    }
    // The files are read now, so a missing certificate is refused here.
    tls.client_config()?;
    Ok(Conn {
        config,
        tls,
        notes,
        reached: None,
        password_command: None,
        schema,
    })
}

/// libpq's parameters runbook's driver cannot honour, and why: each asks
/// for a check or a login that a run without it would quietly skip, so it
/// is refused, not dropped.
const UNHONOURED: &[(&str, &str)] = &[
    (
        "require_auth",
        "runbook's driver does not say how the server asked it to log in, so it \
         cannot refuse the methods this rules out; `channel_binding=require` refuses \
         every one but SCRAM bound to the TLS channel",
    ),
    (
        "krbsrvname",
        "runbook's driver has no GSSAPI (Kerberos) login; log in with a password, \
         a client certificate (sslcert) or --password-command",
    ),
    (
        "gsslib",
        "runbook's driver has no GSSAPI (Kerberos) login; log in with a password, \
         a client certificate (sslcert) or --password-command",
    ),
    (
        "requirepeer",
        "runbook's driver cannot ask which user runs the server behind a Unix \
         socket; connect by TCP with sslmode=verify-full to check the server",
    ),
    (
        "sslpassword",
        "runbook reads client keys that are not encrypted; give a decrypted copy \
         (mode 0600) as sslkey",
    ),
];

fn host_name(h: &tokio_postgres::config::Host) -> String {
    match h {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    }
}

/// Host `i` of a config and its port (one port may serve every host);
/// its address, when that is given alone.
fn host_at(config: &Config, i: usize) -> (String, u16) {
    let host = config
        .get_hosts()
        .get(i)
        .map(host_name)
        .or_else(|| config.get_hostaddrs().get(i).map(ToString::to_string))
        .unwrap_or_default();
    let ports = config.get_ports();
    let port = ports
        .get(i)
        .or_else(|| (ports.len() == 1).then(|| &ports[0]))
        .copied()
        .unwrap_or(5432);
    (host, port)
}

/// Whether [`parse_url`] refused a libpq variable (`PGCONNECT_TIMEOUT: ...`)
/// rather than the string.
pub fn env_fault(error: &str) -> bool {
    error
        .split_once(':')
        .is_some_and(|(var, _)| var.starts_with("PG") && !var.contains(' '))
}

/// What to say of a connection string that [`parse_url`] refused (`shown`
/// is the string with its password hidden), and the help line. A libpq
/// variable's fault is said as the variable's, not the string's.
pub fn url_refusal(shown: &str, error: &str) -> (String, &'static str) {
    if env_fault(error) {
        (
            format!("the environment's libpq settings for `{shown}`: {error}"),
            "correct or unset the variable named first; pg_dump and psql, which the run starts, read it too",
        )
    } else if error.contains("service") {
        (
            format!("invalid database URL `{shown}`: {error}"),
            "a service is a [section] of pg_service.conf (PGSERVICEFILE, default ~/.pg_service.conf); docs/exec.md lists the keys runbook takes",
        )
    } else {
        (
            format!("invalid database URL `{shown}`: {error}"),
            "a URL looks like postgres://user@host:5432/database?sslmode=verify-full; the message says which part is wrong",
        )
    }
}

/// Where a connection points, without the password: the host its session
/// reached when that is known, else the first it tries.
pub fn target_of_conn(conn: &Conn, ephemeral: bool) -> Target {
    let mut t = target_of(&conn.config, ephemeral);
    if let Some(i) = conn.reached {
        (t.host, t.port) = host_at(&conn.config, i);
    }
    t
}

/// Where a config points, without the password.
pub fn target_of(config: &Config, ephemeral: bool) -> Target {
    let (host, port) = host_at(config, 0);
    Target {
        host,
        port,
        database: config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or("postgres")
            .to_string(),
        user: config.get_user().unwrap_or_default().to_string(),
        server_version: None,
        ephemeral,
        tls: None,
    }
}

/// libpq environment variables that point a child process (psql, pg_dump)
/// at the run's database. The password travels here, never in argv.
pub fn libpq_env(
    conn: &Conn,
    app: &str,
    passfile: Option<&std::path::Path>,
) -> Vec<(String, String)> {
    let config = &conn.config;
    let t = target_of_conn(conn, false);
    // The server the run reached, alone; when that is not known, every
    // host and port as libpq lists them, with the same
    // target_session_attrs, so a child tries them as the run did.
    let hosts: Vec<String> = config.get_hosts().iter().map(host_name).collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    let addrs: Vec<String> = config
        .get_hostaddrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    let list = conn.reached.is_none() && hosts.len().max(addrs.len()) > 1;
    let mut env = vec![
        (
            "PGHOST".to_string(),
            if list { hosts.join(",") } else { t.host },
        ),
        (
            "PGPORT".to_string(),
            if list && ports.len() > 1 {
                ports.join(",")
            } else {
                t.port.to_string()
            },
        ),
        ("PGDATABASE".to_string(), t.database),
        ("PGAPPNAME".to_string(), app.to_string()),
    ];
    // The addresses the run connected to, as it did: without them, a
    // child would look the name up, and fail where the run had not.
    if !addrs.is_empty() {
        let reached = conn.reached.unwrap_or(0);
        env.push((
            "PGHOSTADDR".into(),
            if list {
                addrs.join(",")
            } else {
                addrs.get(reached).cloned().unwrap_or_default()
            },
        ));
    }
    if list
        && config.get_target_session_attrs()
            == tokio_postgres::config::TargetSessionAttrs::ReadWrite
    {
        env.push(("PGTARGETSESSIONATTRS".into(), "read-write".into()));
    }
    if !t.user.is_empty() {
        env.push(("PGUSER".into(), t.user));
    }
    // The run's own settings, from the string or the environment, so a
    // child connects as the run did.
    if let Some(o) = config.get_options() {
        env.push(("PGOPTIONS".into(), o.to_string()));
    }
    if let Some(t) = config.get_connect_timeout() {
        env.push(("PGCONNECT_TIMEOUT".into(), t.as_secs().to_string()));
    }
    match config.get_channel_binding() {
        tokio_postgres::config::ChannelBinding::Require => {
            env.push(("PGCHANNELBINDING".into(), "require".into()));
        }
        tokio_postgres::config::ChannelBinding::Disable => {
            env.push(("PGCHANNELBINDING".into(), "disable".into()));
        }
        _ => {}
    }
    match (passfile, config.get_password()) {
        (Some(f), _) => env.push(("PGPASSFILE".into(), f.display().to_string())),
        (None, Some(pw)) => env.push((
            "PGPASSWORD".into(),
            String::from_utf8_lossy(pw).into_owned(),
        )),
        (None, None) => {}
    }
    env.extend(conn.tls.libpq_env());
    env
}

/// What a `--password-command` is told of the login it gives a password
/// for: the target, as libpq's variables name it.
pub fn password_target(config: &Config) -> Vec<(&'static str, String)> {
    let t = target_of(config, false);
    vec![
        ("PGHOST", t.host),
        ("PGPORT", t.port.to_string()),
        ("PGUSER", t.user),
        ("PGDATABASE", t.database),
    ]
}

/// A `--password-command` that gave no password, as a login's failure.
pub fn password_failure(e: crate::pg::password::PasswordError) -> ErrorInfo {
    ErrorInfo {
        class: ErrorKind::Connection,
        message: e.to_string(),
        hint: Some("the password command (--password-command) runs at each login, and before each pg_dump, pg_restore or shell step; run it by hand to see why it failed".into()),
        ..ErrorInfo::default()
    }
}

/// Why a login that worked when the run began can be refused later in it
/// (a reconnect, or a pg_dump late in the run), and what to do.
pub const LATER_LOGIN_REFUSED: &str = "the run's own session logged in with these credentials when the run began; a password changed or expired since then fails every later login (an RDS IAM token lasts 15 minutes, a Cloud SQL or Azure AD token an hour): give the run one that lasts it, in the password file (PGPASSFILE)";

/// Inherited libpq variables a child must not see: each could send it
/// elsewhere than the run's server, or with another password
/// (`PGSERVICE`'s settings would outrank the `PGHOST`... given to it).
pub const CHILD_ENV_UNSET: &[&str] = &[
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGPASSWORD",
    "PGHOSTADDR",
    "PGTARGETSESSIONATTRS",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGSSLCRL",
    "PGSSLNEGOTIATION",
    "PGGSSENCMODE",
    "PGSSLMINPROTOCOLVERSION",
    "PGREQUIRESSL",
    "PGOPTIONS",
    "PGCONNECT_TIMEOUT",
    "PGCHANNELBINDING",
];

/// A private password file (mode 0600, removed when dropped) that gives
/// the children (pg_dump, psql in a shell step) the run's password, so it
/// is in no child's argv or environment. None when there is no password.
/// With `--password-command`, it starts empty, and [`refill_passfile`]
/// puts a new password in before each child starts.
pub fn child_passfile(conn: &Conn) -> std::io::Result<Option<tempfile::NamedTempFile>> {
    use std::io::Write;
    let pw = conn.config.get_password();
    if pw.is_none() && conn.password_command.is_none() {
        return Ok(None);
    }
    let mut f = tempfile::Builder::new()
        .prefix("runbook-pgpass-")
        .tempfile()?;
    if let Some(pw) = pw {
        f.write_all(passfile_line(&String::from_utf8_lossy(pw)).as_bytes())?;
        f.flush()?;
    }
    Ok(Some(f))
}

/// The password file's one line: any server, any user, this password.
fn passfile_line(password: &str) -> String {
    let escaped = password.replace('\\', "\\\\").replace(':', "\\:");
    format!("*:*:*:*:{escaped}\n")
}

/// Put `password` in the children's password file, whole or not at all
/// (a child that reads it meanwhile sees the old one or the new one).
pub fn refill_passfile(path: &std::path::Path, password: &str) -> std::io::Result<()> {
    crate::fsutil::write_atomic(path, passfile_line(password).as_bytes())
}

/// What puts a new password from a `--password-command` into the
/// children's password file, before a child that logs in starts.
#[derive(Clone, Debug)]
pub struct Refill {
    pub command: crate::pg::password::PasswordCommand,
    /// The target the command is told of (`PGHOST`, `PGPORT`, ...).
    pub target: Vec<(&'static str, String)>,
    pub passfile: std::path::PathBuf,
}

impl Refill {
    /// A new password, now in the file: the caller makes it a secret.
    pub async fn refill(&self) -> Result<String, ErrorInfo> {
        let password = self
            .command
            .password_async(self.target.clone())
            .await
            .map_err(password_failure)?;
        refill_passfile(&self.passfile, &password).map_err(|e| ErrorInfo {
            class: ErrorKind::Internal,
            message: format!("failed to write the children's password file: {e}"),
            ..ErrorInfo::default()
        })?;
        Ok(password)
    }
}

impl Db {
    /// Of several hosts, the one this session reached: the one whose port
    /// is the server's, and when several share it, the one whose address
    /// is the server's. None with one host, or when it cannot be told
    /// (a proxy in between): the children then get the whole list.
    pub async fn reached_host(&self) -> Option<usize> {
        let config = &self.config.config;
        let n = config.get_hosts().len().max(config.get_hostaddrs().len());
        if n < 2 {
            return None;
        }
        let row = self
            .client
            .query_one(
                "SELECT host(inet_server_addr()), current_setting('port')::int",
                &[],
            )
            .await
            .ok()?;
        let addr: Option<String> = row.get(0);
        let port: i32 = row.get(1);
        let by_port: Vec<usize> = (0..n)
            .filter(|&i| i32::from(host_at(config, i).1) == port)
            .collect();
        if let [one] = by_port.as_slice() {
            return Some(*one);
        }
        let addr: std::net::IpAddr = addr?.parse().ok()?;
        let mut found = Vec::new();
        for i in by_port {
            // An address given is the one connected to: no lookup.
            if let Some(given) = config.get_hostaddrs().get(i) {
                if *given == addr {
                    found.push(i);
                }
                continue;
            }
            let (host, port) = host_at(config, i);
            if let Ok(addrs) = tokio::net::lookup_host((host.as_str(), port)).await
                && addrs.into_iter().any(|a| a.ip() == addr)
            {
                found.push(i);
            }
        }
        match found.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    pub async fn connect(mut conn: Conn, app: &str) -> Result<Db, ErrorInfo> {
        // A password asked for now, for this login: one taken earlier may
        // have expired.
        if let Some(command) = &conn.password_command {
            let password = command
                .password_async(password_target(&conn.config))
                .await
                .map_err(password_failure)?;
            conn.config.password(password);
        }
        let mut config = conn.config.clone();
        config.application_name(app);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let tls =
            MakeRustlsConnect::new(conn.tls.client_config().map_err(|message| ErrorInfo {
                class: ErrorKind::Connection,
                message,
                ..ErrorInfo::default()
            })?);
        // `allow`: without TLS first, with it when the server insists.
        if conn.tls.mode == crate::pg::tls::SslMode::Allow {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        }
        let connected = match config.connect(tls.clone()).await {
            Err(_) if conn.tls.mode == crate::pg::tls::SslMode::Allow => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                config.connect(tls.clone()).await
            }
            other => other,
        };
        let (client, mut connection) = connected.map_err(|e| connect_error(&e, &conn.tls))?;
        let (tx, notices) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notice(n))) => {
                        let _ = tx.send(format!("{}: {}", n.severity(), n.message()));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                }
            }
        });
        // PostgreSQL 14 and later: end this session's query soon after its
        // client is gone, instead of running on (and holding its locks)
        // for up to statement_timeout. Older servers refuse the name.
        let _ = client
            .batch_execute("SET client_connection_check_interval = '2s'")
            .await;
        let cancel = client.cancel_token();
        Ok(Db {
            client,
            cancel,
            notices,
            config: conn,
            tls,
        })
    }

    /// A new session with credentials this run has logged in with before:
    /// a login refused now says why that can happen mid-run.
    pub async fn login_again(conn: Conn, app: &str) -> Result<Db, ErrorInfo> {
        Db::connect(conn, app).await.map_err(|mut e| {
            if e.hint.is_none() && matches!(e.sqlstate.as_deref(), Some("28P01" | "28000")) {
                e.hint = Some(LATER_LOGIN_REFUSED.into());
            }
            e
        })
    }

    /// What this session connected with (password included: never show it).
    pub fn config(&self) -> &Conn {
        &self.config
    }

    /// A new session on the same server, to another database.
    pub async fn connect_to(&self, database: &str, app: &str) -> Result<Db, ErrorInfo> {
        let mut conn = self.config.clone();
        conn.config.dbname(database);
        Db::login_again(conn, app).await
    }

    /// How this session is protected, for the report's header:
    /// `TLSv1.3, certificate and host verified (sslmode=verify-full)`.
    pub async fn tls_summary(&self) -> String {
        let mode = self.config.tls.mode;
        let row = self
            .client
            .query_opt(
                "SELECT version FROM pg_catalog.pg_stat_ssl WHERE pid = pg_catalog.pg_backend_pid() AND ssl",
                &[],
            )
            .await;
        let what = match mode {
            crate::pg::tls::SslMode::VerifyFull => "certificate and host verified",
            crate::pg::tls::SslMode::VerifyCa => "certificate verified, host not compared",
            _ if self.config.tls.verifies_certificate() => {
                "certificate verified, host not compared"
            }
            _ => "certificate not verified",
        };
        match row {
            Ok(Some(r)) => format!(
                "{}, {what} (sslmode={})",
                r.get::<_, Option<String>>(0)
                    .unwrap_or_else(|| "TLS".into()),
                mode.name()
            ),
            Ok(None) => format!("not encrypted (sslmode={})", mode.name()),
            Err(_) => format!("unknown (sslmode={})", mode.name()),
        }
    }

    /// This session's backend pid.
    pub async fn pid(&self) -> Result<i32, ErrorInfo> {
        self.client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .map(|r| r.get(0))
            .map_err(|e| error_info(&e, None))
    }

    /// Evidence that a pooler hands this session's server backend to other
    /// clients between transactions (PgBouncer's `transaction` or
    /// `statement` mode, and poolers like it), or None when none shows.
    /// The run's advisory lock and settings belong to a server session, so
    /// under such a pooler they would stay behind on a backend that others
    /// then use. Two observations that no direct connection can produce:
    /// - a second client session is served by this session's backend;
    /// - this session's backend changes between two of its statements.
    ///
    /// A direct connection, or a pooler in `session` mode (which keeps one
    /// backend per client, all the run needs), shows neither. The second
    /// session gets `wait` to answer: a session-mode pool with no free
    /// backend makes it queue, and that is no evidence of anything.
    ///
    /// Three looks, in the simple protocol: a pooler hands a freed backend
    /// to the next client that asks, but which one it hands out is up to
    /// it, and a prepared statement's two round trips can land on two
    /// backends and fail, which read as "no evidence". One look missed
    /// PgBouncer in transaction mode when the machine was busy.
    pub async fn pooler_evidence(&self, app: &str, wait: Duration) -> Option<String> {
        let mut probe = tokio::time::timeout(wait, Db::connect(self.config.clone(), app))
            .await
            .ok()
            .and_then(Result::ok);
        for _ in 0..3 {
            let first = self.backend_pid().await?;
            let other = match &probe {
                Some(p) => tokio::time::timeout(wait, p.backend_pid()).await.ok(),
                None => None,
            };
            // A probe that had to queue once is not asked again.
            let other = match other {
                Some(pid) => pid,
                None => {
                    probe = None;
                    None
                }
            };
            if other == Some(first) {
                return Some(format!(
                    "a second connection was served by this connection's server process (pid {first})"
                ));
            }
            let again = self.backend_pid().await?;
            if again != first {
                return Some(format!(
                    "this connection's server process changed between two statements (pid {first}, then {again})"
                ));
            }
        }
        None
    }

    /// `pg_backend_pid()` in one simple-protocol message: one transaction,
    /// whatever a pooler between does with transactions.
    async fn backend_pid(&self) -> Option<i32> {
        let messages = self
            .client
            .simple_query("SELECT pg_backend_pid()")
            .await
            .ok()?;
        messages.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0)?.parse().ok(),
            _ => None,
        })
    }

    /// Connect again after a connection error, before a retry.
    /// A new session in place of a lost one. A server that is restarting
    /// answers "shutting down" or "starting up" for a while: connection
    /// errors are tried again with backoff, about 30 s in all.
    pub async fn reconnect(&mut self, app: &str) -> Result<(), ErrorInfo> {
        let mut wait = Duration::from_millis(250);
        let mut waited = Duration::ZERO;
        loop {
            match Db::login_again(self.config.clone(), app).await {
                Ok(db) => {
                    *self = db;
                    return Ok(());
                }
                Err(e) if e.class == ErrorKind::Connection && waited < Duration::from_secs(30) => {
                    tokio::time::sleep(wait).await;
                    waited += wait;
                    wait = (wait * 2).min(Duration::from_secs(4));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A session on the server's maintenance database (`postgres`, else
    /// `template1`), never the one this session is on: for creating and
    /// dropping databases while no session of this run may be connected to
    /// them (a run on `postgres` itself steps over to `template1`).
    pub async fn connect_maintenance(&self, app: &str) -> Option<Db> {
        let own = self
            .config()
            .config
            .get_dbname()
            .unwrap_or_default()
            .to_string();
        for candidate in ["postgres", "template1"].into_iter().filter(|c| *c != own) {
            if let Ok(m) = self.connect_to(candidate, app).await {
                return Some(m);
            }
        }
        None
    }

    /// Whether the session is gone (terminated, or the server went away).
    pub fn is_lost(&self) -> bool {
        self.client.is_closed()
    }

    /// A session setting from the environment that this server refuses
    /// (`PGTZ=Nowhere`), said as `PGTZ=`Nowhere`: invalid value ...`.
    /// libpq sends these when a child (pg_dump, psql) connects, so the
    /// child would fail; the run's own session does not take them, since
    /// its evidence (a snapshot's defaults, a backup's manifest) must read
    /// the same on every run. Each is tried with `set_config(.., true)`,
    /// which its statement's own transaction undoes.
    pub async fn refused_child_setting(&self) -> Option<String> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        for (var, name) in [
            ("PGTZ", "TimeZone"),
            ("PGDATESTYLE", "DateStyle"),
            ("PGGEQO", "geqo"),
        ] {
            let Some(value) = env(var) else { continue };
            if let Err(e) = self
                .client
                .query_one("SELECT set_config($1, $2, true)", &[&name, &value])
                .await
            {
                return Some(format!("{var}=`{value}`: {}", error_info(&e, None).message));
            }
        }
        // An encoding is not tried on the session (the driver reads UTF-8
        // only); the server says whether it knows the name.
        let encoding = env("PGCLIENTENCODING").filter(|e| !e.eq_ignore_ascii_case("auto"))?;
        let known = self
            .client
            .query_one("SELECT pg_char_to_encoding($1) >= 0", &[&encoding])
            .await
            .map(|r| r.get::<_, bool>(0));
        match known {
            Ok(false) => Some(format!(
                "PGCLIENTENCODING=`{encoding}`: not an encoding this server knows"
            )),
            _ => None,
        }
    }

    pub async fn server_version(&self) -> Option<String> {
        let rows = self.client.simple_query("SHOW server_version").await.ok()?;
        rows.into_iter().find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
    }

    /// Notices the server sent since the last call.
    pub fn drain_notices(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(n) = self.notices.try_recv() {
            out.push(n);
        }
        out
    }

    /// What cancels this session's query, to keep once the client is shared.
    pub fn canceller(&self) -> Canceller {
        Canceller {
            token: self.cancel.clone(),
            tls: self.tls.clone(),
        }
    }

    /// Run a simple query. On timeout or interrupt, send a cancel request to
    /// the server and wait for the query to actually stop.
    pub async fn run(
        &self,
        sql: &str,
        timeout: Option<Duration>,
        interrupt: impl std::future::Future<Output = ()>,
    ) -> Result<Vec<SimpleQueryMessage>, QueryFail> {
        self.within(self.client.simple_query(sql), timeout, interrupt)
            .await?
            .map_err(QueryFail::Db)
    }

    /// Work on this session (one query or several) ended by `timeout` or
    /// `interrupt` as a single query is: a cancel request to the server,
    /// then a wait for the work to stop, so that the session is free again
    /// (if it does not stop, the session is lost). The error is then
    /// [`QueryFail::Timeout`] or [`QueryFail::Interrupted`].
    pub async fn within<T>(
        &self,
        work: impl std::future::Future<Output = T>,
        timeout: Option<Duration>,
        interrupt: impl std::future::Future<Output = ()>,
    ) -> Result<T, QueryFail> {
        tokio::pin!(work);
        tokio::pin!(interrupt);
        let deadline = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        let why = tokio::select! {
            r = &mut work => return Ok(r),
            () = &mut deadline => QueryFail::Timeout,
            () = &mut interrupt => QueryFail::Interrupted,
        };
        let _ = self.cancel.cancel_query(self.tls.clone()).await;
        // The server answers the cancelled query with an error; a query
        // sent after it in the same round trip may run on, and is
        // cancelled in its turn.
        let stop = async {
            loop {
                tokio::select! {
                    _ = &mut work => return,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {
                        let _ = self.cancel.cancel_query(self.tls.clone()).await;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), stop).await;
        Err(why)
    }

    /// Leave any open transaction. Errors are ignored: the session may already be idle.
    pub async fn rollback(&self) {
        let _ = self.client.simple_query("ROLLBACK").await;
    }
}

/// The advisory lock key of a runbook on a database: the first 8 bytes of
/// sha256 over both names, so different runbooks never block each other.
pub fn lock_key(database: &str, runbook: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("runbook\0{database}\0{runbook}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// The session that holds a run lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: String,
    pub application_name: String,
    pub since: String,
    pub held_for: String,
    /// pg_stat_activity's state (`active`, `idle`, ...) and for how long.
    pub state: String,
    pub state_for: String,
}

impl Holder {
    /// The run id, when the holder is a runbook session (`…/<run-id>`).
    pub fn run_id(&self) -> &str {
        self.application_name.rsplit('/').next().unwrap_or("")
    }
}

impl Db {
    /// Take the run's session-level advisory lock, polling briefly. On
    /// conflict, name the session that holds it.
    pub async fn try_lock(&self, key: i64) -> Result<Result<(), Option<Holder>>, ErrorInfo> {
        for attempt in 0..5 {
            let rows = self
                .client
                .simple_query(&format!("SELECT pg_try_advisory_lock({key})"))
                .await
                .map_err(|e| error_info(&e, None))?;
            let got = rows
                .iter()
                .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("t")));
            if got {
                return Ok(Ok(()));
            }
            if attempt < 4 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let bits = key as u64;
        let (hi, lo) = (bits >> 32, bits & 0xffff_ffff);
        let rows = self
            .client
            .simple_query(&format!(
                "SELECT a.pid::text, coalesce(a.application_name, ''), \
                        to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                        date_trunc('second', now() - a.backend_start)::text, \
                        coalesce(a.state, ''), \
                        coalesce(date_trunc('second', now() - a.state_change)::text, '') \
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                   AND l.classid = {hi}::oid AND l.objid = {lo}::oid"
            ))
            .await
            .map_err(|e| error_info(&e, None))?;
        let holder = rows.into_iter().find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(Holder {
                pid: r.get(0).unwrap_or_default().to_string(),
                application_name: r.get(1).unwrap_or_default().to_string(),
                since: r.get(2).unwrap_or_default().to_string(),
                held_for: r.get(3).unwrap_or_default().to_string(),
                state: r.get(4).unwrap_or_default().to_string(),
                state_for: r.get(5).unwrap_or_default().to_string(),
            }),
            _ => None,
        });
        Ok(Err(holder))
    }
}

/// The SQL of [`RESET_ALL`], a literal for [`RESET_SESSION`] to extend.
macro_rules! reset_all {
    () => {
        "RESET ALL; SELECT set_config('client_connection_check_interval', '2s', false) WHERE current_setting('server_version_num')::int >= 140000"
    };
}

/// Every session setting back to its default (`RESET ALL`), as the
/// Supabase CLI does before each migration, but for the check for a client
/// that is gone, which [`Db::connect`] sets (on PostgreSQL 14 and later).
/// A `SET ROLE` stays: `RESET ALL` leaves the role alone.
pub const RESET_ALL: &str = reset_all!();

/// The session as a new one starts: the user and the role reset too, then
/// [`RESET_ALL`].
pub const RESET_SESSION: &str = concat!("RESET SESSION AUTHORIZATION; RESET ROLE; ", reset_all!());

/// What pg_dump and pg_restore set in their own sessions, and so runbook
/// in the sessions that read beside them (a backup's row counts in the
/// dump's snapshot, a restore's counts): every row (`row_security` off),
/// and none of the server's timeouts. A role's or a database's
/// `statement_timeout`, a common guard on managed databases, would cancel
/// an exact count beside a dump that goes through, and
/// `idle_in_transaction_session_timeout` or `transaction_timeout`
/// (PostgreSQL 17) would end the snapshot session while pg_dump runs. The
/// step's own timeout still bounds them. Only the names this server knows.
const AS_PG_DUMP: &str = "\
    SELECT pg_catalog.set_config(name, CASE name WHEN 'row_security' THEN 'off' ELSE '0' END, false)
    FROM pg_catalog.pg_settings
    WHERE name IN ('row_security', 'statement_timeout', 'idle_in_transaction_session_timeout', 'transaction_timeout')";

/// The session's settings before [`read_as_pg_dump`], to put back.
#[must_use = "the session keeps pg_dump's settings until they are put back"]
pub struct PutBack(Vec<String>, Vec<String>);

/// Set [`AS_PG_DUMP`] for the rest of a session of runbook's own.
pub async fn as_pg_dump(client: &Client) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(AS_PG_DUMP).await
}

/// Set [`AS_PG_DUMP`] on a session that goes on after (the run's own), and
/// say what to put back.
pub async fn read_as_pg_dump(client: &Client) -> Result<PutBack, tokio_postgres::Error> {
    let sql = AS_PG_DUMP.replacen(
        "SELECT ",
        "SELECT name, pg_catalog.current_setting(name), ",
        1,
    );
    let rows = client.query(&sql, &[]).await?;
    Ok(PutBack(
        rows.iter().map(|r| r.get(0)).collect(),
        rows.iter().map(|r| r.get(1)).collect(),
    ))
}

impl PutBack {
    pub async fn put_back(self, client: &Client) -> Result<(), tokio_postgres::Error> {
        client
            .execute(
                "SELECT pg_catalog.set_config(name, value, false) FROM unnest($1::text[], $2::text[]) AS t(name, value)",
                &[&self.0, &self.1],
            )
            .await
            .map(drop)
    }
}

/// `SELECT set_config(...)` for each setting; `local` scopes them to the transaction.
pub fn settings_sql(settings: &Settings, local: bool) -> Option<String> {
    let mut parts = Vec::new();
    let mut add = |name: &str, value: String| {
        parts.push(format!(
            "set_config('{name}', {}, {local})",
            crate::pg::quote::literal(&value)
        ));
    };
    if let Some(d) = settings.lock_timeout {
        add("lock_timeout", format!("{}ms", d.as_millis()));
    }
    if let Some(d) = settings.statement_timeout {
        add("statement_timeout", format!("{}ms", d.as_millis()));
    }
    if let Some(d) = settings.idle_in_transaction_session_timeout {
        add(
            "idle_in_transaction_session_timeout",
            format!("{}ms", d.as_millis()),
        );
    }
    if let Some(p) = &settings.search_path {
        add("search_path", p.clone());
    }
    (!parts.is_empty()).then(|| format!("SELECT {};", parts.join(", ")))
}

/// The retry class of an error, if it has one.
pub fn classify(e: &tokio_postgres::Error) -> Option<ErrorClass> {
    match e.code() {
        Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE => Some(ErrorClass::LockTimeout),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED => Some(ErrorClass::Deadlock),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE => {
            Some(ErrorClass::SerializationFailure)
        }
        // 08: connection exceptions; 57P01 admin_shutdown (the session was
        // terminated), 57P02 crash_shutdown, 57P03 cannot_connect_now (the
        // server is starting up or shutting down).
        Some(c)
            if c.code().starts_with("08")
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW =>
        {
            Some(ErrorClass::Connection)
        }
        Some(_) => None,
        None if e.is_closed() || e.as_db_error().is_none() => Some(ErrorClass::Connection),
        None => None,
    }
}

/// One table's row of [`table_counts`].
pub struct TableCount {
    pub table: String,
    pub rows: i64,
    pub checksum: Option<String>,
    /// A fourth column, when the parts select one.
    pub more: Option<String>,
}

/// Each table's name, row count, checksum text (and a fourth column, if
/// any), in one query: `parts` are `SELECT name, count(*), checksum[, more]
/// FROM table` queries, joined with UNION ALL. No parts, no query.
pub async fn table_counts(db: &Db, parts: &[String]) -> Result<Vec<TableCount>, ErrorInfo> {
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    // The simple protocol: one round trip, where a prepared query takes two.
    let messages = db
        .client
        .simple_query(&parts.join("\nUNION ALL\n"))
        .await
        .map_err(|e| error_info(&e, None))?;
    let mut out = Vec::new();
    for m in &messages {
        let tokio_postgres::SimpleQueryMessage::Row(r) = m else {
            continue;
        };
        let (Some(table), Some(Ok(rows))) = (r.get(0), r.get(1).map(str::parse::<i64>)) else {
            // Never a made-up count: a row that does not read is an error.
            return Err(ErrorInfo {
                class: ErrorKind::Internal,
                message: format!("a row count did not read as a number: {:?}", r.get(1)),
                ..Default::default()
            });
        };
        out.push(TableCount {
            table: table.to_string(),
            rows,
            checksum: r.get(2).map(str::to_string),
            more: r.try_get(3).ok().flatten().map(str::to_string),
        });
    }
    Ok(out)
}

/// An order-independent checksum of a table's rows, as SQL: the sum of
/// each row's hash (the first 64 bits of md5 of `row`, a row expression).
/// What [`row_checksum_sql`] gives for a table with no rows: a table
/// without a page on disk is known to be empty without reading it.
pub const EMPTY_CHECKSUM: &str = "0";

pub fn row_checksum_sql(row: &str) -> String {
    format!("coalesce(sum(('x' || left(md5({row}), 16))::bit(64)::bigint::numeric), 0)::text")
}

/// The hash of one column's value in a row `x`, as SQL: of its text under
/// the "C" collation, byte by byte (under a case-insensitive collation,
/// `hashtextextended` gives `Ada` and `ada` one hash), a NULL as 1.
pub fn value_hash_sql(column: &str) -> String {
    format!(
        "coalesce(hashtextextended(x.{}::text COLLATE \"C\", 0), 1)",
        crate::pg::quote::ident(column)
    )
}

/// Where rows that differ differ, from each column's sum of its values'
/// hashes before and after (`(name, sum)`, as read beside a checksum): "
/// (in column(s) a, b)", or that each column holds the values it held, in
/// other rows. Empty where either side has no sums (the table was not
/// read column by column, or had no rows).
pub fn where_rows_changed(before: &[(String, String)], after: &[(String, String)]) -> String {
    if before.is_empty() || after.is_empty() {
        return String::new();
    }
    let changed: Vec<&str> = before
        .iter()
        .filter(|(c, sum)| after.iter().any(|(a, other)| a == c && other != sum))
        .map(|(c, _)| c.as_str())
        .collect();
    if changed.is_empty() {
        " (each column holds the values it held, but not in the same rows)".to_string()
    } else {
        format!(" (in column(s) {})", changed.join(", "))
    }
}

/// The server's error in full. `position` is made relative to the user's SQL
/// by subtracting `prefix_chars`, the characters runbook put before it.
pub fn error_info(e: &tokio_postgres::Error, prefix_chars: Option<usize>) -> ErrorInfo {
    let class = classify(e).map_or(ErrorKind::Sql, ErrorKind::from);
    match e.as_db_error() {
        Some(db) => {
            let position = match db.position() {
                Some(tokio_postgres::error::ErrorPosition::Original(p)) => {
                    let p = *p as usize;
                    let shift = prefix_chars.unwrap_or(0);
                    (p > shift).then(|| (p - shift) as u32)
                }
                _ => None,
            };
            ErrorInfo {
                class,
                message: db.message().to_string(),
                sqlstate: Some(db.code().code().to_string()),
                detail: db.detail().map(str::to_string),
                hint: db.hint().map(str::to_string),
                position,
                location: None,
            }
        }
        None => {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                message = format!("{message}: {s}");
                source = s.source();
            }
            ErrorInfo {
                class,
                message,
                ..ErrorInfo::default()
            }
        }
    }
}

/// A connection that failed, said so a person can act: a certificate
/// refused names why and what to do.
fn connect_error(e: &tokio_postgres::Error, tls: &crate::pg::tls::Tls) -> ErrorInfo {
    let mut info = error_info(e, None);
    let text = format!("{e:?}");
    let hint = if text.contains("UnknownIssuer") {
        Some(format!(
            "the server's certificate is not signed by a CA in sslrootcert ({}); give the CA that signed it (sslrootcert=FILE, or system), or a weaker sslmode if you accept the risk",
            match &tls.root_cert {
                Some(crate::pg::tls::RootCert::File(p)) => p.display().to_string(),
                Some(crate::pg::tls::RootCert::System) => "the system's roots".into(),
                None => "~/.postgresql/root.crt".into(),
            }
        ))
    } else if text.contains("NotValidForName") {
        Some("the server's certificate was not issued for this host name: connect with the name it was issued for, or use sslmode=verify-ca to check only the CA".into())
    } else if text.contains("server does not support TLS") || text.contains("TLS required") {
        Some(format!(
            "sslmode={} needs TLS, and the server does not offer it (ssl=off); turn TLS on at the server, or use sslmode=prefer",
            tls.mode.name()
        ))
    } else if text.contains("no encryption") || text.contains("SSL off") {
        Some("the server accepts only encrypted connections here (hostssl in pg_hba.conf): use sslmode=require or stronger".into())
    } else {
        None
    };
    if hint.is_some() {
        if text.contains("UnknownIssuer") {
            info.message = format!(
                "the server's certificate is from an unknown CA: {}",
                info.message
            );
        } else if text.contains("NotValidForName") {
            info.message = format!(
                "the server's certificate is for another host: {}",
                info.message
            );
        }
        info.hint = hint;
    }
    info
}
