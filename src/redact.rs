//! Redaction: secrets never reach any output.
//!
//! Two ways, on every output path:
//! - by position, always: the password inside any connection URL and after
//!   any `password=` keyword, whatever its value;
//! - by value: every secret param value and every URL password of at least
//!   [`MIN_SECRET_LEN`] characters, wherever it appears (an echoed
//!   `$PGPASSWORD`, an error message quoting it). A shorter secret, or a
//!   password that is also the URL's user, host or database name, would
//!   blank ordinary words (`postgres` everywhere): it is redacted by
//!   position only, and a warning says so.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

pub const REDACTED: &str = "[REDACTED]";

/// The shortest secret redacted by value wherever it appears.
pub const MIN_SECRET_LEN: usize = 8;

/// Replaces known secret values and URL passwords.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
    /// Secrets redacted by position only, described (never shown).
    weak: Vec<String>,
}

/// Whether text holds a password where its position marks it: a
/// connection URL's `user:password@`, or `password=`.
pub fn holds_password(text: &str) -> bool {
    url_password().is_match(text)
}

fn url_password() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"(?i)([a-z][a-z0-9+.-]*://[^:/@\s]*:)([^@\s]+)(@)|(\b(?:ssl)?password\s*=\s*)('[^']*'|[^\s]+)",
        )
        .expect("static regex")
    })
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut r = Self::default();
        for s in secrets {
            r.add(s);
        }
        r
    }

    /// Add a secret value, redacted wherever it appears when it is long
    /// enough to mean something; a shorter one is noted for a warning.
    pub fn add(&mut self, secret: impl Into<String>) {
        let secret = secret.into();
        if secret.is_empty() || self.secrets.contains(&secret) {
            return;
        }
        let n = secret.chars().count();
        if n < MIN_SECRET_LEN {
            self.weak.push(format!(
                "a secret value of {n} character(s) is redacted only where its position marks it (a connection URL's password, `password=`), not wherever it appears: text that short would blank ordinary words; use a secret of at least {MIN_SECRET_LEN} characters"
            ));
            return;
        }
        self.secrets.push(secret);
        // Longest first, so a secret that contains another is replaced whole.
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Add the password of a connection URL, if it has one.
    pub fn add_url(&mut self, url: &str) {
        if let Some(c) = url_password().captures(url)
            && let Some(pw) = c.get(2)
        {
            // A malformed escape stays as written, as libpq leaves it.
            let decoded = percent_encoding::percent_decode_str(pw.as_str())
                .decode_utf8()
                .map_or_else(|_| pw.as_str().to_string(), |d| d.into_owned());
            // A password that is also a name the output shows (the user,
            // host or database) cannot be told apart from that name.
            let without = format!("{}{}", &url[..pw.start()], &url[pw.end()..]);
            let names: Vec<String> = without
                .split(['/', ':', '@', '?', '&', '='])
                .filter(|part| !part.is_empty())
                .map(str::to_lowercase)
                .collect();
            if names.contains(&decoded.to_lowercase()) {
                self.weak.push(
                    "the database URL's password is also the name of its user, host or database: it is redacted in URLs and after `password=` only; use a real password"
                        .into(),
                );
                return;
            }
            self.add(pw.as_str());
            if decoded != pw.as_str() {
                self.add(decoded);
            }
        }
    }

    /// Why some secrets are redacted by position only: one warning each.
    pub fn weak(&self) -> &[String] {
        &self.weak
    }

    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = Cow::Owned(out.replace(s.as_str(), REDACTED));
            }
        }
        match url_password().replace_all(&out, |c: &regex::Captures<'_>| {
            if let Some(prefix) = c.get(1) {
                format!("{}{REDACTED}@", prefix.as_str())
            } else {
                format!("{}{REDACTED}", &c[4])
            }
        }) {
            Cow::Borrowed(_) => out,
            Cow::Owned(s) => Cow::Owned(s),
        }
    }

    /// Redact every string inside a JSON value.
    pub fn redact_json(&self, v: &mut Value) {
        self.redact_json_except(v, &[]);
    }

    /// Redact every string inside a JSON value, except the values of
    /// `keep` keys: those hold fixed vocabularies (an event's tag, a
    /// status), never user text, and must keep their exact spelling.
    pub fn redact_json_except(&self, v: &mut Value, keep: &[&str]) {
        match v {
            Value::String(s) => {
                if let Cow::Owned(r) = self.redact(s) {
                    *s = r;
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| self.redact_json_except(x, keep)),
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if !(keep.contains(&k.as_str()) && x.is_string()) {
                        self.redact_json_except(x, keep);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_secret_values_everywhere() {
        let r = Redactor::new(["hunter2-long".to_string(), "hunter-long".to_string()]);
        assert_eq!(
            r.redact("pw=hunter2-long and hunter-long"),
            "pw=[REDACTED] and [REDACTED]"
        );
        assert!(matches!(r.redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn redacts_url_passwords_even_when_unknown() {
        let r = Redactor::default();
        assert_eq!(
            r.redact("connect postgres://app:s3cr%40t@db:5432/x now"),
            "connect postgres://app:[REDACTED]@db:5432/x now"
        );
        assert_eq!(
            r.redact("host=db password='a b' user=x"),
            "host=db password=[REDACTED] user=x"
        );
        assert_eq!(r.redact("postgres://app@db/x"), "postgres://app@db/x");
        // A client key's passphrase, in a URL's query or a conninfo.
        assert_eq!(
            r.redact("postgres://app@db/x?sslpassword=keypass&sslkey=k"),
            "postgres://app@db/x?sslpassword=[REDACTED]"
        );
        assert_eq!(
            r.redact("host=db sslpassword=keypass user=x"),
            "host=db sslpassword=[REDACTED] user=x"
        );
    }

    #[test]
    fn short_secrets_and_name_like_passwords_are_redacted_by_position_only() {
        let mut r = Redactor::new(["ab".to_string()]);
        r.add_url("postgres://postgres:postgres@localhost:5432/postgres");
        // The target stays readable; the URL's password is still hidden.
        assert_eq!(
            r.redact("target postgres@localhost/postgres, grab it"),
            "target postgres@localhost/postgres, grab it"
        );
        assert_eq!(
            r.redact("postgres://postgres:postgres@localhost/postgres"),
            "postgres://postgres:[REDACTED]@localhost/postgres"
        );
        assert_eq!(r.weak().len(), 2, "{:?}", r.weak());
        assert!(
            r.weak()
                .iter()
                .all(|w| !w.contains("ab ") && !w.contains("postgres@"))
        );
        // Long enough: by value, everywhere.
        let mut r = Redactor::default();
        r.add_url("postgres://app:Long-Secret-1@db/x");
        assert_eq!(
            r.redact("PGPASSWORD=Long-Secret-1"),
            "PGPASSWORD=[REDACTED]"
        );
        assert!(r.weak().is_empty());
    }

    #[test]
    fn url_passwords_are_learned_decoded_too() {
        let mut r = Redactor::default();
        r.add_url("postgres://app:s3cr%40t-long@db/x");
        assert_eq!(r.redact("echo s3cr@t-long"), "echo [REDACTED]");
    }
}
