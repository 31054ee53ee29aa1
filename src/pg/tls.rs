//! TLS for database connections, with libpq's `sslmode`s and parameters,
//! over rustls (tokio-postgres-rustls).
//!
//! | sslmode | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | never | - |
//! | `allow` | only if the server insists | no |
//! | `prefer` (default, as in libpq) | when the server offers it | no (yes, as `verify-ca`, when a root certificate is given) |
//! | `require` | always | no (yes, as `verify-ca`, when a root certificate is given) |
//! | `verify-ca` | always | signed by a trusted CA |
//! | `verify-full` | always | signed by a trusted CA, and issued for the host |
//!
//! `sslrootcert` is a PEM file, or `system` for the operating system's
//! roots (as libpq 16). `sslcert` and `sslkey` give a client certificate;
//! without them, libpq's `~/.postgresql/postgresql.crt` and `.key` are
//! sent when they are there. `sslcrl` (default `~/.postgresql/root.crl`,
//! when it is there) revokes server certificates, as in libpq.
//! `sslnegotiation=direct` starts TLS without PostgreSQL's request first
//! (PostgreSQL 17+).
//!
//! What other clients write in a URL is read as they read it: node-postgres'
//! `sslmode=no-verify` is `require`, and its (and pgjdbc's) `ssl=true`,
//! with no `sslmode`, checks the certificate and the host against the
//! operating system's roots (`verify-full`, `sslrootcert=system`).
//! `gssencmode` is taken as `disable` or `prefer`: runbook's driver has no
//! GSSAPI encryption, so it never uses one, and its children are told
//! `disable` so that they reach the server as its session did; `require`
//! is refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// libpq's sslmodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    Allow,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }
}

/// Where trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    File(PathBuf),
    /// The operating system's store (`sslrootcert=system`).
    System,
}

/// The TLS part of a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    pub mode: SslMode,
    pub root_cert: Option<RootCert>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// A PEM file of certificate revocation lists (`sslcrl`).
    pub crl: Option<PathBuf>,
    /// `sslnegotiation=direct`.
    pub direct: bool,
    /// `ssl_min_protocol_version=TLSv1.3` (rustls speaks 1.2 and 1.3 only,
    /// so any lower minimum is kept as it is).
    pub tls13_only: bool,
}

/// node-postgres' and pgjdbc's `ssl=true` (or `1`), with no `sslmode`:
/// TLS with the certificate and host checked against the system's roots,
/// as those clients check them against theirs; `false` (`0`): no TLS.
fn ssl_flag(tls: &mut Tls, value: &str) -> Result<(), String> {
    match value {
        "true" | "1" => {
            tls.mode = SslMode::VerifyFull;
            tls.root_cert.get_or_insert(RootCert::System);
        }
        "false" | "0" => tls.mode = SslMode::Disable,
        _ => return Err(format!("ssl `{value}` is not one of true, false")),
    }
    Ok(())
}

/// Prisma's `sslaccept`, which makes the URL Prisma's: its `sslcert` is the
/// CA to check the server against (libpq's `sslrootcert`), not a client
/// certificate. `strict` checks the certificate and the host, against that
/// CA or the system's roots (`verify-full`); `accept_invalid_certs`, as
/// Prisma does by default, checks nothing.
fn prisma_accept(tls: &mut Tls, accept: &str) -> Result<(), String> {
    let ca = tls.cert.take();
    if let Some(ca) = &ca
        && ca.is_relative()
    {
        return Err(format!(
            "`sslcert={}` with `sslaccept` is Prisma's CA file, which Prisma finds from its \
             schema file's directory; runbook cannot tell which: give its absolute path",
            ca.display()
        ));
    }
    match accept {
        "strict" => {
            if tls.mode != SslMode::Disable {
                tls.mode = SslMode::VerifyFull;
            }
            tls.root_cert = Some(ca.map_or(RootCert::System, RootCert::File));
        }
        "accept_invalid_certs" => {}
        other => {
            return Err(format!(
                "sslaccept `{other}` (Prisma's) is not one of strict, accept_invalid_certs"
            ));
        }
    }
    Ok(())
}

/// Prisma's `sslidentity`: a PKCS#12 client identity.
const PRISMA_IDENTITY: &str = "`sslidentity` (Prisma's PKCS#12 client identity) is not \
    read: runbook takes a client certificate and key as PEM files; convert it (`openssl pkcs12 \
    -in identity.p12 -nodes`) and give them as libpq's `sslcert` and `sslkey`, with Prisma's \
    CA as `sslrootcert`";

/// The TLS parameters a connection string may hold, which tokio-postgres
/// does not read itself (it knows only disable, prefer and require).
pub const PARAMS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "sslnegotiation",
    "gssencmode",
    "ssl_min_protocol_version",
];

impl Tls {
    /// Set one parameter; Err says what is wrong with it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            // node-postgres' name for `require`.
            "sslmode" if value == "no-verify" => self.mode = SslMode::Require,
            "sslmode" => {
                self.mode = SslMode::parse(value).ok_or_else(|| {
                    format!(
                        "sslmode `{value}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
                    )
                })?;
            }
            "sslrootcert" => {
                self.root_cert = Some(if value == "system" {
                    RootCert::System
                } else {
                    RootCert::File(PathBuf::from(value))
                });
            }
            "sslcert" => self.cert = Some(PathBuf::from(value)),
            "sslkey" => self.key = Some(PathBuf::from(value)),
            "sslcrl" => self.crl = Some(PathBuf::from(value)),
            "sslnegotiation" => match value {
                "direct" => self.direct = true,
                "postgres" => self.direct = false,
                _ => {
                    return Err(format!(
                        "sslnegotiation `{value}` is not one of postgres, direct"
                    ));
                }
            },
            "ssl_min_protocol_version" => match value {
                "TLSv1" | "TLSv1.1" | "TLSv1.2" => self.tls13_only = false,
                "TLSv1.3" => self.tls13_only = true,
                _ => {
                    return Err(format!(
                        "ssl_min_protocol_version `{value}` is not one of TLSv1, TLSv1.1, TLSv1.2, TLSv1.3"
                    ));
                }
            },
            "gssencmode" => match value {
                "disable" | "prefer" => {}
                "require" => {
                    return Err("gssencmode `require`: runbook's driver has no GSSAPI \
                         encryption, so it cannot honour it; encrypt with TLS instead \
                         (sslmode=verify-full)"
                        .into());
                }
                _ => {
                    return Err(format!(
                        "gssencmode `{value}` is not one of disable, prefer, require"
                    ));
                }
            },
            _ => return Err(format!("`{key}` is not a TLS parameter")),
        }
        Ok(())
    }

    /// The mode tokio-postgres is told; the checking is ours.
    pub fn driver_mode(&self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as D;
        match self.mode {
            SslMode::Disable => D::Disable,
            SslMode::Allow | SslMode::Prefer => D::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => D::Require,
        }
    }

    /// How the certificate is checked: as `verify-full`, as `verify-ca`, or
    /// not at all. A root certificate with `require`, `prefer` or `allow`
    /// makes them check as `verify-ca`, as libpq does: one given, or
    /// libpq's default file, `~/.postgresql/root.crt`, when it is there.
    fn check(&self) -> Check {
        self.check_with(default_root_cert().is_some())
    }

    fn check_with(&self, default_root: bool) -> Check {
        let root = self.root_cert.is_some() || default_root;
        match (self.mode, root) {
            (SslMode::VerifyFull, _) => Check::Full,
            (SslMode::VerifyCa, _) => Check::Ca,
            (SslMode::Require | SslMode::Prefer | SslMode::Allow, true) => Check::Ca,
            _ => Check::None,
        }
    }

    /// Whether the server's certificate is checked against a CA.
    pub fn verifies_certificate(&self) -> bool {
        self.check() != Check::None
    }

    /// The environment variables that give a child (psql, pg_dump) the
    /// same TLS: libpq reads them.
    pub fn libpq_env(&self) -> Vec<(String, String)> {
        let mut env = vec![("PGSSLMODE".to_string(), self.mode.name().to_string())];
        match &self.root_cert {
            Some(RootCert::File(p)) => env.push(("PGSSLROOTCERT".into(), p.display().to_string())),
            Some(RootCert::System) => env.push(("PGSSLROOTCERT".into(), "system".into())),
            None => {}
        }
        if let Some(p) = &self.cert {
            env.push(("PGSSLCERT".into(), p.display().to_string()));
        }
        if let Some(p) = &self.key {
            env.push(("PGSSLKEY".into(), p.display().to_string()));
        }
        if let Some(p) = &self.crl {
            env.push(("PGSSLCRL".into(), p.display().to_string()));
        }
        if self.direct {
            env.push(("PGSSLNEGOTIATION".into(), "direct".into()));
        }
        if self.tls13_only {
            env.push(("PGSSLMINPROTOCOLVERSION".into(), "TLSv1.3".into()));
        }
        // The run's session never uses GSSAPI encryption: nor do they.
        env.push(("PGGSSENCMODE".into(), "disable".into()));
        env
    }

    /// The rustls configuration for this mode. Err names the file or
    /// setting that is wrong.
    pub fn client_config(&self) -> Result<ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if self.tls13_only {
            &[&rustls::version::TLS13]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| format!("TLS setup failed: {e}"))?;
        let check = self.check();
        let builder = if check == Check::None {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoCheck(provider)))
        } else {
            let roots = Arc::new(self.roots()?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .with_crls(self.crls()?)
                .build()
                .map_err(|e| format!("TLS setup failed: {e}"))?;
            if check == Check::Full {
                builder.with_webpki_verifier(webpki)
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(CaOnly(webpki)))
            }
        };
        let mut config = match self.client_pair()? {
            Some((cert, key)) => {
                let certs = read_certs(&cert, "sslcert")?;
                let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| {
                    format!(
                        "sslkey `{}` holds no readable private key: {e}",
                        key.display()
                    )
                })?;
                builder.with_client_auth_cert(certs, key).map_err(|e| {
                    format!("sslcert and sslkey do not make a client certificate: {e}")
                })?
            }
            None => builder.with_no_client_auth(),
        };
        if self.direct {
            config.alpn_protocols = vec![b"postgresql".to_vec()];
        }
        Ok(config)
    }

    fn roots(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        match &self.root_cert {
            Some(RootCert::File(p)) => {
                for c in read_certs(p, "sslrootcert")? {
                    roots
                        .add(c)
                        .map_err(|e| format!("sslrootcert `{}`: {e}", p.display()))?;
                }
            }
            Some(RootCert::System) => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err("sslrootcert=system: the operating system has no root certificates (Debian: apt-get install ca-certificates)".into());
                }
            }
            None => match default_root_cert() {
                Some(p) => {
                    for c in read_certs(&p, "sslrootcert")? {
                        let _ = roots.add(c);
                    }
                }
                None => {
                    return Err(format!(
                        "sslmode={} checks the server's certificate, and no root certificate was given",
                        self.mode.name()
                    ));
                }
            },
        }
        Ok(roots)
    }
}

impl Tls {
    /// The revocation lists the server's certificate is checked against:
    /// `sslcrl`'s, else libpq's default `~/.postgresql/root.crl` when it is
    /// there. Every certificate of the chain must be covered, as libpq
    /// has OpenSSL check them (`X509_V_FLAG_CRL_CHECK_ALL`).
    fn crls(&self) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
        let path = match &self.crl {
            Some(p) => p.clone(),
            None => {
                let default = std::env::var_os("HOME")
                    .map(|h| PathBuf::from(h).join(".postgresql/root.crl"))
                    .filter(|p| p.is_file());
                match default {
                    Some(p) => p,
                    None => return Ok(Vec::new()),
                }
            }
        };
        if !path.is_file() {
            return Err(format!(
                "sslcrl `{}` is not a readable file",
                path.display()
            ));
        }
        let crls: Vec<CertificateRevocationListDer<'static>> =
            CertificateRevocationListDer::pem_file_iter(&path)
                .map_err(|e| format!("sslcrl `{}`: {e}", path.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    format!(
                        "sslcrl `{}` is not PEM revocation lists: {e}",
                        path.display()
                    )
                })?;
        if crls.is_empty() {
            return Err(format!(
                "sslcrl `{}` holds no revocation list",
                path.display()
            ));
        }
        Ok(crls)
    }

    /// The client certificate and its key: those given, else libpq's
    /// defaults, `~/.postgresql/postgresql.crt` and `postgresql.key`, when
    /// that certificate is there (libpq sends it, so pg_dump and psql
    /// would; and `PGSSLCERTMODE=disable` sends none, as in libpq).
    fn client_pair(&self) -> Result<Option<(PathBuf, PathBuf)>, String> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => return Ok(Some((cert.clone(), key.clone()))),
            (Some(_), None) | (None, Some(_)) => {
                return Err("a client certificate needs both sslcert and sslkey".into());
            }
            (None, None) => {}
        }
        if self.mode == SslMode::Disable
            || std::env::var("PGSSLCERTMODE").is_ok_and(|m| m == "disable")
        {
            return Ok(None);
        }
        let Some(dir) = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".postgresql"))
        else {
            return Ok(None);
        };
        let (cert, key) = (dir.join("postgresql.crt"), dir.join("postgresql.key"));
        if !cert.is_file() {
            return Ok(None);
        }
        if !key.is_file() {
            return Err(format!(
                "the client certificate `{}` is there, where libpq looks by default, but its key `{}` is not (libpq refuses that too)",
                cert.display(),
                key.display()
            ));
        }
        Ok(Some((cert, key)))
    }
}

/// libpq's default root certificate file, when it is there.
fn default_root_cert() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".postgresql/root.crt"))
        .filter(|p| p.is_file())
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    if !path.is_file() {
        return Err(format!(
            "{what} `{}` is not a readable file",
            path.display()
        ));
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{what} `{}`: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what} `{}` is not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{what} `{}` holds no certificate", path.display()));
    }
    Ok(certs)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    None,
    Ca,
    Full,
}

/// `require`, `prefer`, `allow` without a root certificate: encrypt, check
/// nothing (libpq does the same). The handshake's signatures are still
/// verified, so the session is bound to the certificate the server sent.
#[derive(Debug)]
struct NoCheck(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the host name is not
/// compared.
#[derive(Debug)]
struct CaOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for CaOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Split the TLS parameters out of a connection string (a URL's query, or
/// `key=value` conninfo), for [`Tls`]; the rest goes to tokio-postgres.
/// Environment variables (`PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`,
/// `PGSSLKEY`) fill what the string does not say.
pub fn split(conn: &str) -> Result<(String, Tls), String> {
    let mut tls = Tls::default();
    let mut said = std::collections::HashSet::new();
    let rest = if conn.starts_with("postgres://") || conn.starts_with("postgresql://") {
        match conn.split_once('?') {
            None => conn.to_string(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                let (mut ssl, mut accept) = (None, None);
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if PARAMS.contains(&k) {
                        tls.set(k, &percent_decode(v))?;
                        said.insert(k.to_string());
                    } else if k == "ssl" {
                        ssl = Some(percent_decode(v).to_ascii_lowercase());
                    } else if k == "sslaccept" {
                        accept = Some(percent_decode(v));
                    } else if k == "sslidentity" {
                        return Err(PRISMA_IDENTITY.into());
                    } else {
                        kept.push(pair);
                    }
                }
                if let Some(accept) = accept {
                    prisma_accept(&mut tls, &accept)?;
                }
                // Those clients, too, take `sslmode` over it.
                if let Some(v) = ssl
                    && !said.contains("sslmode")
                {
                    ssl_flag(&mut tls, &v)?;
                    said.insert("sslmode".into());
                }
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for part in conn.split_whitespace() {
            match part.split_once('=') {
                Some((k, v)) if PARAMS.contains(&k) => {
                    tls.set(k, v.trim_matches('\''))?;
                    said.insert(k.to_string());
                }
                _ => kept.push(part),
            }
        }
        kept.join(" ")
    };
    for (var, key) in [
        ("PGSSLMODE", "sslmode"),
        ("PGSSLROOTCERT", "sslrootcert"),
        ("PGSSLCERT", "sslcert"),
        ("PGSSLKEY", "sslkey"),
        ("PGSSLCRL", "sslcrl"),
        ("PGSSLNEGOTIATION", "sslnegotiation"),
        ("PGGSSENCMODE", "gssencmode"),
        ("PGSSLMINPROTOCOLVERSION", "ssl_min_protocol_version"),
    ] {
        if !said.contains(key)
            && let Ok(v) = std::env::var(var)
            && !v.is_empty()
        {
            tls.set(key, &v).map_err(|e| format!("{var}: {e}"))?;
        }
    }
    Ok((rest, tls))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_split_out_of_urls_and_conninfo() {
        let (rest, tls) =
            split("postgres://u@h:5432/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&application_name=x")
                .unwrap();
        assert_eq!(rest, "postgres://u@h:5432/db?application_name=x");
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert, Some(RootCert::File("/tmp/ca.pem".into())));
        let (rest, tls) = split("host=h dbname=d sslmode=require").unwrap();
        assert_eq!(rest, "host=h dbname=d");
        assert_eq!(tls.mode, SslMode::Require);
        let e = split("postgres://h/db?sslmode=verify").unwrap_err();
        assert!(e.contains("sslmode `verify` is not one of"), "{e}");
    }

    #[test]
    fn a_root_certificate_makes_require_check_the_ca() {
        let mut t = Tls {
            mode: SslMode::Require,
            ..Tls::default()
        };
        assert_eq!(t.check_with(false), Check::None);
        // libpq's ~/.postgresql/root.crt, when it is there, as if given.
        assert_eq!(t.check_with(true), Check::Ca);
        t.mode = SslMode::Prefer;
        assert_eq!(t.check_with(true), Check::Ca);
        t.mode = SslMode::Require;
        t.root_cert = Some(RootCert::System);
        assert_eq!(t.check_with(false), Check::Ca);
        t.mode = SslMode::VerifyFull;
        assert_eq!(t.check_with(false), Check::Full);
    }
}
