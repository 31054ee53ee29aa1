//! TLS against a real PostgreSQL that accepts only TLS over TCP, with a
//! CA of its own (made with openssl): each sslmode, the refusals (unknown
//! CA, wrong host, no TLS, a missing file), and pg_dump reaching the same
//! server in the same mode.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use runbook::ephemeral::Ephemeral;

mod support;

static CLUSTER: OnceLock<Ephemeral> = OnceLock::new();

fn cluster() -> &'static Ephemeral {
    CLUSTER.get_or_init(|| Ephemeral::start_tls().expect("a TLS cluster starts"))
}

const RUNBOOK: &str = "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: tls, version: 1 }\nphases:\n  - id: p\n    kind: custom\n    steps:\n      - id: one\n        sql: SELECT 1;\n";

fn base() -> String {
    format!("postgres://runbook@127.0.0.1:{}/postgres", cluster().port())
}

/// `runbook exec` with this URL: (exit code, report, stderr).
fn exec(url: &str, body: &str) -> (i32, serde_json::Value, String) {
    exec_at_home(url, body, None)
}

/// [`exec`] with `HOME` there (libpq's defaults are under it); else an
/// empty directory.
fn exec_at_home(url: &str, body: &str, home: Option<&Path>) -> (i32, serde_json::Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("runbook.yml");
    std::fs::write(&file, body).unwrap();
    let reports = dir.path().join("reports");
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .arg("exec")
        .arg(&file)
        .args(["--database-url", url, "--progress", "never", "--report-dir"])
        .arg(&reports)
        .env_remove("DATABASE_URL")
        .env_remove("PGSSLMODE")
        .env_remove("PGSSLROOTCERT")
        .env_remove("PGSSLCERT")
        .env_remove("PGSSLKEY")
        .env_remove("PGSSLCERTMODE")
        .env("HOME", home.unwrap_or(dir.path()))
        .output()
        .unwrap();
    let report = std::fs::read_to_string(reports.join("report.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    (
        out.status.code().unwrap_or(-1),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ca() -> String {
    cluster().ca().display().to_string()
}

#[test]
fn verify_full_with_the_ca_connects_and_the_report_says_how() {
    let (code, report, stderr) = exec(&cluster().url("postgres"), RUNBOOK);
    assert_eq!(code, 0, "{stderr}");
    let tls = report["target"]["tls"].as_str().unwrap();
    assert!(tls.starts_with("TLSv1."), "{tls}");
    assert!(
        tls.ends_with("certificate and host verified (sslmode=verify-full)"),
        "{tls}"
    );
}

#[test]
fn require_and_prefer_encrypt_without_checking_and_verify_ca_ignores_the_host() {
    for (mode, want) in [
        ("require", "certificate not verified (sslmode=require)"),
        ("prefer", "certificate not verified (sslmode=prefer)"),
    ] {
        let (code, report, stderr) = exec(&format!("{}?sslmode={mode}", base()), RUNBOOK);
        assert_eq!(code, 0, "{mode}: {stderr}");
        assert!(
            report["target"]["tls"].as_str().unwrap().ends_with(want),
            "{report}"
        );
    }
    // A host name the certificate was not issued for: verify-ca does not
    // compare it; verify-full refuses, and says why.
    let other = format!(
        "postgres://runbook@not-the-host.invalid:{}/postgres?hostaddr=127.0.0.1&sslrootcert={}",
        cluster().port(),
        ca()
    );
    let (code, _, stderr) = exec(&format!("{other}&sslmode=verify-ca"), RUNBOOK);
    assert_eq!(code, 0, "{stderr}");
    let (code, report, stderr) = exec(&format!("{other}&sslmode=verify-full"), RUNBOOK);
    assert_eq!(code, 1, "{stderr}");
    let verdict = report["run"]["verdict"].as_str().unwrap_or_default();
    assert!(
        verdict.contains("certificate is for another host"),
        "{verdict}\n{stderr}"
    );
}

#[test]
fn an_unknown_ca_no_tls_and_a_missing_file_are_refused_with_what_to_do() {
    // A CA that did not sign the server's certificate.
    let dir = tempfile::tempdir().unwrap();
    let other_ca = dir.path().join("other.crt");
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-days", "1",
        ])
        .args(["-subj", "/CN=someone else", "-keyout"])
        .arg(dir.path().join("other.key"))
        .arg("-out")
        .arg(&other_ca)
        .output()
        .unwrap();
    assert!(made.status.success());
    let (code, report, stderr) = exec(
        &format!(
            "{}?sslmode=verify-full&sslrootcert={}",
            base(),
            other_ca.display()
        ),
        RUNBOOK,
    );
    assert_eq!(code, 1, "{stderr}");
    let verdict = report["run"]["verdict"].as_str().unwrap_or_default();
    assert!(verdict.contains("unknown CA"), "{verdict}");

    // The server takes only TLS over TCP.
    let (code, report, stderr) = exec(&format!("{}?sslmode=disable", base()), RUNBOOK);
    assert_eq!(code, 1, "{stderr}");
    let verdict = report["run"]["verdict"].as_str().unwrap_or_default();
    assert!(verdict.contains("no encryption"), "{verdict}");
    assert!(
        verdict.contains("use sslmode=require or stronger"),
        "{verdict}"
    );

    // A root certificate file that is not there: refused before anything runs.
    let (code, report, stderr) = exec(
        &format!(
            "{}?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            base()
        ),
        RUNBOOK,
    );
    assert_eq!(code, 5, "{stderr}");
    assert!(report.is_null());
    assert!(
        stderr.contains("sslrootcert `/nonexistent/ca.pem` is not a readable file"),
        "{stderr}"
    );

    // verify-full with no root certificate anywhere (HOME has none).
    let (code, _, stderr) = exec(&format!("{}?sslmode=verify-full", base()), RUNBOOK);
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains("no root certificate was given"), "{stderr}");
}

/// A runbook whose one step is a backup: pg_dump connects as a child.
const DUMP: &str = r#"apiVersion: runbook/v1
kind: Runbook
metadata: { name: tlsdump, version: 1 }
phases:
  - id: b
    kind: backup
    steps:
      - id: dump
        backup: { path: dump, format: custom }
"#;

/// `openssl ARGS` in `at`; it must succeed.
fn openssl(args: &[&str], at: &Path) {
    support::succeeded(Command::new("openssl").args(args).current_dir(at));
}

/// pg_dump gets the same TLS through libpq's environment variables, and
/// reaches the TLS-only server.
#[test]
fn pg_dump_reaches_the_tls_only_server_in_the_same_mode() {
    let (code, report, stderr) = exec(&cluster().url("postgres"), DUMP);
    assert_eq!(code, 0, "{stderr}\n{report}");
}

/// A server that takes only client certificates (`cert` in pg_hba.conf):
/// with none given, runbook sends libpq's default one,
/// `~/.postgresql/postgresql.crt` and `.key`, as psql and pg_dump do, so
/// the run and its pg_dump both get in. (Before, runbook sent none, and
/// was refused where psql was let in.) A default certificate without its
/// key is refused before anything runs, as libpq refuses it.
#[test]
fn libpqs_default_client_certificate_is_sent_when_it_is_there() {
    let c = Ephemeral::start_tls().expect("a TLS cluster starts");
    let dir = c.dir();
    let home = tempfile::tempdir().unwrap();
    let pg = home.path().join(".postgresql");
    std::fs::create_dir(&pg).unwrap();
    openssl(
        &[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-subj",
            "/CN=runbook",
            "-keyout",
            "postgresql.key",
            "-out",
            "client.csr",
        ],
        &pg,
    );
    let ca = dir.join("ca.crt");
    let ca_key = dir.join("ca.key");
    // Extensions make it X.509 v3, which rustls requires.
    std::fs::write(
        pg.join("client.cnf"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            ca.to_str().unwrap(),
            "-CAkey",
            ca_key.to_str().unwrap(),
            "-CAcreateserial",
            "-CAserial",
            pg.join("ca.srl").to_str().unwrap(),
            "-days",
            "2",
            "-extfile",
            "client.cnf",
            "-out",
            "postgresql.crt",
        ],
        &pg,
    );
    std::fs::set_permissions(
        pg.join("postgresql.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    // Only client certificates from now on (the socket stays trusted, for
    // the set-up).
    let url = c.url("postgres");
    let hba = dir.join("data/pg_hba.conf");
    std::fs::write(
        &hba,
        "local all all trust\nhostssl all all 127.0.0.1/32 cert\n",
    )
    .unwrap();
    support::succeeded(
        Command::new("psql")
            .args(["-XAtq", &url, "-c"])
            .arg(format!("ALTER SYSTEM SET ssl_ca_file = '{}'", ca.display()))
            .args(["-c", "SELECT pg_reload_conf()"])
            .env("HOME", home.path()),
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (code, report, stderr) = exec_at_home(&url, DUMP, Some(home.path()));
    assert_eq!(code, 0, "{stderr}\n{report}");
    assert_eq!(report["run"]["status"], "succeeded");
    // No certificate: the server refuses the run's own session.
    let (code, report, stderr) = exec(&url, DUMP);
    assert_eq!(code, 1, "{stderr}\n{report}");
    assert!(
        report["run"]["verdict"]
            .as_str()
            .unwrap()
            .contains("could not connect"),
        "{report}"
    );
    // A default certificate without its key.
    std::fs::remove_file(pg.join("postgresql.key")).unwrap();
    let (code, _, stderr) = exec_at_home(&url, DUMP, Some(home.path()));
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains("but its key"), "{stderr}");
}

/// Certificate revocation lists, as libpq reads them: `sslcrl` (or
/// `PGSSLCRL`), else `~/.postgresql/root.crl` when it is there. A server
/// certificate the list revokes is refused; one it does not is let in.
/// (Before, runbook read no list, and connected where psql refused.)
#[test]
fn a_server_certificate_the_revocation_list_revokes_is_refused() {
    let c = Ephemeral::start_tls().expect("a TLS cluster starts");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::write(
        w.join("ca.cnf"),
        "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 2\n",
    )
    .unwrap();
    std::fs::write(w.join("index.txt"), "").unwrap();
    std::fs::write(w.join("crlnumber"), "01\n").unwrap();
    let (ca, ca_key) = (c.dir().join("ca.crt"), c.dir().join("ca.key"));
    let ca_args = |more: &[&str]| {
        let mut a = vec![
            "ca",
            "-config",
            "ca.cnf",
            "-cert",
            ca.to_str().unwrap(),
            "-keyfile",
            ca_key.to_str().unwrap(),
        ];
        a.extend_from_slice(more);
        openssl(&a, w);
    };
    ca_args(&["-gencrl", "-out", "none-revoked.crl"]);
    let server = c.dir().join("server.crt");
    ca_args(&["-revoke", server.to_str().unwrap()]);
    ca_args(&["-gencrl", "-out", "revoked.crl"]);

    let url = c.url("postgres");
    let with = |crl: &str| format!("{url}&sslcrl={}", w.join(crl).display());
    let (code, _, stderr) = exec(&with("none-revoked.crl"), RUNBOOK);
    assert_eq!(code, 0, "{stderr}");
    let (code, report, stderr) = exec(&with("revoked.crl"), RUNBOOK);
    assert_eq!(code, 1, "{stderr}");
    let verdict = report["run"]["verdict"].as_str().unwrap();
    assert!(
        verdict.contains("could not connect") && verdict.contains("evoked"),
        "{verdict}"
    );
    // libpq's default place.
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".postgresql")).unwrap();
    std::fs::copy(
        w.join("revoked.crl"),
        home.path().join(".postgresql/root.crl"),
    )
    .unwrap();
    let (code, _, stderr) = exec_at_home(&url, RUNBOOK, Some(home.path()));
    assert_eq!(code, 1, "{stderr}");
}

/// libpq's default root file, `~/.postgresql/root.crt`, checks the
/// server's certificate when it is there, also under `sslmode=require`
/// (libpq's rule): a certificate from another CA is refused, and the
/// report says the certificate was verified. (Before, runbook read that
/// file only for verify-ca and verify-full, and under `require` connected
/// unchecked where psql refused.)
#[test]
fn the_default_root_certificate_checks_the_server_under_require_as_in_libpq() {
    let url = format!(
        "postgres://runbook@127.0.0.1:{}/postgres?sslmode=require",
        cluster().port()
    );
    let home = tempfile::tempdir().unwrap();
    let pg = home.path().join(".postgresql");
    std::fs::create_dir(&pg).unwrap();
    // Another CA than the server's.
    openssl(
        &[
            "req",
            "-x509",
            "-new",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-days",
            "2",
            "-subj",
            "/CN=another CA",
            "-keyout",
            "other.key",
            "-out",
            "root.crt",
        ],
        &pg,
    );
    let (code, report, stderr) = exec_at_home(&url, RUNBOOK, Some(home.path()));
    assert_eq!(code, 1, "{stderr}\n{report}");
    // The server's own CA there: let in, and said to be verified.
    std::fs::copy(ca(), pg.join("root.crt")).unwrap();
    let (code, report, stderr) = exec_at_home(&url, RUNBOOK, Some(home.path()));
    assert_eq!(code, 0, "{stderr}");
    let tls = report["target"]["tls"].as_str().unwrap();
    assert!(
        tls.contains("certificate verified, host not compared (sslmode=require)"),
        "{tls}"
    );
    // No file: encrypted, unchecked, as before.
    let (code, report, stderr) = exec(&url, RUNBOOK);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        report["target"]["tls"]
            .as_str()
            .unwrap()
            .contains("certificate not verified")
    );
}

/// A runbook whose shell step sees what its children are told.
const CHILD: &str = "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: tlschild, version: 1 }\nphases:\n  - id: p\n    kind: custom\n    steps:\n      - id: child\n        shell: test \"$PGGSSENCMODE\" = disable && test \"$PGSSLMODE\" = require && psql -XAtc 'SELECT 1'\n";

/// What other clients write in a `DATABASE_URL` is read as they read it:
/// node-postgres' `sslmode=no-verify` is `require`; its and pgjdbc's
/// `ssl=true` checks the certificate and host against the system's roots
/// unless an `sslmode` says otherwise; libpq's `gssencmode=disable` (which
/// macOS users add) is honoured, and told to the children. Each was
/// refused before ("unknown option `ssl`", "sslmode `no-verify` is not
/// one of ..."). What runbook cannot honour is refused with why.
#[test]
fn other_clients_tls_settings_are_read_as_those_clients_read_them() {
    let tls = |query: &str| {
        let (code, report, stderr) = exec(&format!("{}?{query}", base()), RUNBOOK);
        assert_eq!(code, 0, "{query}: {stderr}");
        report["target"]["tls"].as_str().unwrap().to_string()
    };
    assert!(
        tls("sslmode=no-verify").ends_with("certificate not verified (sslmode=require)"),
        "no-verify"
    );
    assert!(
        tls(&format!("ssl=true&sslrootcert={}", ca()))
            .ends_with("certificate and host verified (sslmode=verify-full)"),
        "ssl=true"
    );
    assert!(
        tls("ssl=true&sslmode=require").ends_with("(sslmode=require)"),
        "sslmode over ssl"
    );
    // Prisma's: `sslcert` with `sslaccept` is the CA; `strict` checks the
    // host too, `accept_invalid_certs` (Prisma's default) nothing.
    assert!(
        tls(&format!(
            "sslmode=require&sslaccept=strict&sslcert={}",
            ca()
        ))
        .ends_with("certificate and host verified (sslmode=verify-full)"),
        "sslaccept=strict"
    );
    assert!(
        tls(&format!(
            "sslmode=require&sslcert={}&sslaccept=accept_invalid_certs",
            ca()
        ))
        .ends_with("certificate not verified (sslmode=require)"),
        "accept_invalid_certs"
    );
    let t = tls("sslmode=require&ssl_min_protocol_version=TLSv1.3");
    assert!(t.starts_with("TLSv1.3,"), "{t}");
    // `ssl=true` alone: the system's roots do not hold this cluster's CA.
    let (code, report, stderr) = exec(&format!("{}?ssl=true", base()), RUNBOOK);
    let verdict = report["run"]["verdict"].as_str().unwrap_or_default();
    assert!(
        (code == 1 && verdict.contains("unknown CA"))
            || (code == 5 && stderr.contains("the operating system has no root certificates")),
        "{code}: {verdict}\n{stderr}"
    );
    // `ssl=false`: no TLS, which this server refuses.
    let (code, report, stderr) = exec(&format!("{}?ssl=false", base()), RUNBOOK);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        report["run"]["verdict"]
            .as_str()
            .unwrap_or_default()
            .contains("no encryption"),
        "{report}"
    );
    // gssencmode=disable: the run and psql, told the same, get in.
    let (code, report, stderr) = exec(
        &format!("{}?sslmode=no-verify&gssencmode=disable", base()),
        CHILD,
    );
    assert_eq!(code, 0, "{stderr}\n{report}");
    for (query, says) in [
        (
            "gssencmode=require",
            "runbook's driver has no GSSAPI encryption",
        ),
        (
            "require_auth=scram-sha-256",
            "`channel_binding=require` refuses every one but SCRAM",
        ),
        ("krbsrvname=postgres", "no GSSAPI (Kerberos) login"),
        ("sslaccept=strict&sslcert=ca.pem", "give its absolute path"),
        (
            "sslidentity=id.p12&sslpassword=x",
            "Prisma's PKCS#12 client identity",
        ),
        (
            "sslaccept=lax",
            "is not one of strict, accept_invalid_certs",
        ),
        (
            "ssl_min_protocol_version=TLSv2",
            "is not one of TLSv1, TLSv1.1, TLSv1.2, TLSv1.3",
        ),
    ] {
        let (code, report, stderr) = exec(&format!("{}?{query}", base()), RUNBOOK);
        assert_eq!(code, 5, "{query}: {stderr}");
        assert!(report.is_null(), "{query}: nothing ran");
        assert!(stderr.contains(says), "{query}: {stderr}");
    }
}
