//! The targets file (`--targets FILE`): the databases one runbook runs on,
//! checked against `schemas/targets.v1.schema.json`, and the choices made
//! from it: `--select`, `--shard K/N` and `--only-failed`. Nothing here
//! connects or reads the environment; [`Target::conninfo`] does, later.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use indexmap::IndexMap;
use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use crate::diag::{Diagnostic, did_you_mean, one_of};
use crate::load::Document;
use crate::validate::{FileDiagnostics, Invalid};

/// The targets file's schema, as committed.
pub const TARGETS_SCHEMA: &str = include_str!("../../schemas/targets.v1.schema.json");

/// The targets a file names, in its order.
#[derive(Debug, Clone)]
pub struct Targets {
    /// The file, as named by the user.
    pub file: String,
    pub list: Vec<Target>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub name: String,
    pub connection: Connection,
    /// The database name, over the one the connection names.
    pub database: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub params: IndexMap<String, Value>,
}

/// How a target is reached. None holds a password from the file.
#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    /// A URL or conninfo without a password.
    Url(String),
    /// The environment variable holding the URL.
    UrlEnv(String),
    /// A pg_service.conf section.
    Service(String),
    /// Nothing said: `DATABASE_URL`, else libpq's `PG*` variables.
    Environment,
}

impl Target {
    /// The connection string to run with, read from the environment where
    /// the file says so; a problem is said in the target's terms.
    pub fn conninfo(&self) -> Result<String, String> {
        match &self.connection {
            Connection::Url(u) => Ok(u.clone()),
            Connection::UrlEnv(var) => std::env::var(var)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("`url_env: {var}`, and `{var}` is not set")),
            Connection::Service(s) => Ok(format!("service={s}")),
            Connection::Environment => crate::pg::db::url_from_env().ok_or_else(|| {
                "no connection (`url`, `url_env` or `service`) here or in `defaults`, and neither DATABASE_URL nor PGHOST is set".to_string()
            }),
        }
    }

    /// Where the target points, for people: never a password.
    pub fn describe(&self) -> String {
        let conn = match &self.connection {
            Connection::Url(u) => u.clone(),
            Connection::UrlEnv(var) => format!("${var}"),
            Connection::Service(s) => format!("service {s}"),
            Connection::Environment => "the environment".to_string(),
        };
        match &self.database {
            Some(db) => format!("{conn} (database {db})"),
            None => conn,
        }
    }
}

fn validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let schema: Value = serde_json::from_str(TARGETS_SCHEMA).expect("committed schema is JSON");
        jsonschema::draft202012::new(&schema).expect("committed schema compiles")
    })
}

/// Read and check a targets file. Every problem is located in it.
pub fn load(path: &Path) -> Result<Targets, Invalid> {
    let file = path.display().to_string();
    let invalid = |source, diagnostics| Invalid {
        file: file.clone(),
        files: vec![FileDiagnostics {
            source,
            diagnostics,
        }],
    };
    let doc = crate::load::load_file(path).map_err(|f| invalid(f.source, vec![f.diagnostic]))?;
    let diags = check(&doc);
    if !diags.is_empty() {
        return Err(invalid(masked(&doc), diags));
    }
    let list = read(&doc.value);
    Ok(Targets { file, list })
}

/// Every problem in the document: the schema's, then names and connections.
fn check(doc: &Document) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = validator()
        .iter_errors(&doc.value)
        .map(|e| explain(doc, &e))
        .collect();
    if !out.is_empty() {
        out.sort_by_key(|d| d.span.as_ref().map_or(0, |s| s.start));
        out.dedup();
        return out;
    }
    let spans = doc.spans();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let entries = doc.value["targets"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    for (i, t) in entries.iter().enumerate() {
        let name = t["name"].as_str().unwrap_or_default();
        if let Some(first) = seen.insert(name, i) {
            out.push(
                Diagnostic::new(format!("two targets are named `{name}`"))
                    .at(spans.value(&format!("/targets/{i}/name")))
                    .label(format!("target {} has this name too", first + 1))
                    .hint(
                        "a name is the target's report directory and its shard: give each its own",
                    ),
            );
        }
    }
    let mut holders = vec!["/defaults".to_string()];
    holders.extend((0..entries.len()).map(|i| format!("/targets/{i}")));
    for at in holders {
        let Some(obj) = doc.value.pointer(&at).and_then(Value::as_object) else {
            continue;
        };
        let given: Vec<&str> = ["url", "url_env", "service"]
            .into_iter()
            .filter(|k| obj.contains_key(*k))
            .collect();
        if given.len() > 1 {
            out.push(
                Diagnostic::new(format!(
                    "{} are given together",
                    one_of(&given).replace(" or ", " and ")
                ))
                .at(spans.key_or_value(&format!("{at}/{}", given[1])))
                .label("one connection per target")
                .hint("keep one of them"),
            );
        }
        if let Some(url) = obj.get("url").and_then(Value::as_str) {
            out.extend(url_problem(url).map(|(message, hint)| {
                Diagnostic::new(message)
                    .at(spans.value(&format!("{at}/url")))
                    .label("here")
                    .hint(hint)
            }));
        }
    }
    out.sort_by_key(|d| d.span.as_ref().map_or(0, |s| s.start));
    out
}

/// The file's text with every password in a `url` starred out, byte for
/// byte, so a diagnostic can show the line without showing the secret.
fn masked(doc: &Document) -> crate::source::Source {
    let mut text = doc.source.text().to_string();
    let mut holders = vec!["/defaults".to_string()];
    let n = doc.value["targets"].as_array().map_or(0, Vec::len);
    holders.extend((0..n).map(|i| format!("/targets/{i}")));
    for at in holders {
        let pointer = format!("{at}/url");
        let Some(url) = doc.value.pointer(&pointer).and_then(Value::as_str) else {
            continue;
        };
        // The password as the driver reads it; none when the string does
        // not parse, which is when the diagnostic shows it, so the text is
        // searched for one all the same.
        let pw = crate::pg::tool_url::split(url)
            .ok()
            .and_then(|(url, _)| crate::pg::tls::split(&url).ok())
            .and_then(|(rest, _)| rest.parse::<tokio_postgres::Config>().ok())
            .and_then(|c| c.get_password().map(<[u8]>::to_vec))
            .map(|pw| String::from_utf8_lossy(&pw).into_owned());
        let Some(span) = doc.spans().node(&pointer).map(|n| n.value.clone()) else {
            continue;
        };
        let Some(field) = text.get(span.clone()) else {
            continue;
        };
        // As written: percent-encoded in a URL, plain in conninfo.
        let written: Vec<String> = pw
            .iter()
            .flat_map(|pw| {
                [
                    pw.clone(),
                    percent_encoding::utf8_percent_encode(pw, percent_encoding::NON_ALPHANUMERIC)
                        .to_string(),
                ]
            })
            .collect();
        // What a URL's userinfo holds after `user:`, however encoded.
        let userinfo = || {
            let after = field.find("://")? + 3;
            let at_sign = after + field[after..].find('@')?;
            let colon = after + field[after..at_sign].find(':')? + 1;
            Some((colon, at_sign - colon))
        };
        // Every `password=` (and `sslpassword=`) value, in a conninfo up
        // to the next space, in a URL's query up to the next `&`.
        let keyed = field.match_indices("password=").filter_map(|(i, key)| {
            let at = i + key.len();
            let len = field[at..]
                .find(|c: char| c.is_whitespace() || c == '&')
                .unwrap_or(field.len() - at);
            (len > 0).then_some((at, len))
        });
        let spans: Vec<(usize, usize)> = written
            .iter()
            .filter_map(|w| field.find(w.as_str()).map(|i| (i, w.len())))
            .chain(userinfo())
            .chain(keyed)
            .collect();
        for (at, len) in spans {
            let start = span.start + at;
            text.replace_range(start..start + len, &"*".repeat(len));
        }
    }
    crate::source::Source::new(doc.source.name(), text)
}

/// A literal URL that cannot be used: it carries a password, or does not parse.
fn url_problem(url: &str) -> Option<(String, &'static str)> {
    let help = "a URL looks like postgres://user@host:5432/database?sslmode=verify-full";
    // TLS settings are runbook's (libpq's sslmodes), and so is a schema the
    // URL names as Prisma or pgx do; the rest is the driver's.
    let url = match crate::pg::tool_url::split(url) {
        Ok((url, _)) => url,
        Err(e) => return Some((format!("invalid connection URL: {e}"), help)),
    };
    let rest = match crate::pg::tls::split(&url) {
        Ok((rest, _)) => rest,
        Err(e) => return Some((format!("invalid connection URL: {e}"), help)),
    };
    match rest.parse::<tokio_postgres::Config>() {
        Ok(c) if c.get_password().is_some() => Some((
            "the URL carries a password, and a targets file is never the place for one".to_string(),
            "keep the password in ~/.pgpass (PGPASSFILE) or a service, or put the whole URL in an environment variable and name it with `url_env`",
        )),
        Ok(_) => None,
        Err(e) => Some((
            format!(
                "invalid connection URL: {}",
                std::error::Error::source(&e).map_or_else(|| e.to_string(), |w| w.to_string())
            ),
            help,
        )),
    }
}

/// One schema violation, in the targets file's own terms.
fn explain(doc: &Document, err: &jsonschema::ValidationError<'_>) -> Diagnostic {
    let pointer = err.instance_path().as_str();
    let spans = doc.spans();
    let here = if pointer.is_empty() {
        "at the top level".to_string()
    } else if let Some(rest) = pointer.strip_prefix("/targets/") {
        let i: usize = rest
            .split('/')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        match doc.value["targets"][i]["name"].as_str() {
            Some(n) => format!("in target `{n}`"),
            None => format!("in target {}", i + 1),
        }
    } else {
        format!("in `{}`", pointer.trim_start_matches('/'))
    };
    let keys = |at: &str| -> Vec<&'static str> {
        if at.is_empty() {
            vec!["apiVersion", "kind", "defaults", "targets"]
        } else if at == "/defaults" {
            vec!["url", "url_env", "service", "database", "labels", "params"]
        } else {
            vec![
                "name", "url", "url_env", "service", "database", "labels", "params",
            ]
        }
    };
    match err.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            let key = unexpected.first().cloned().unwrap_or_default();
            let allowed = keys(pointer);
            let at = format!("{pointer}/{}", crate::load::pointer_segment(&key));
            Diagnostic::new(format!("unknown key `{key}` {here}"))
                .at(spans.key_or_value(&at))
                .label("not a key here")
                .hint(match did_you_mean(&key, allowed.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("the keys here are {}", one_of(&allowed)),
                })
        }
        ValidationErrorKind::Required { property } => {
            let key = property.as_str().unwrap_or_default();
            let hint = match key {
                "apiVersion" | "kind" => {
                    "a targets file starts with `apiVersion: runbook/v1` and `kind: Targets`"
                }
                "name" => "every target has a unique `name`",
                _ => "a targets file lists its databases under `targets:`",
            };
            Diagnostic::new(format!("missing `{key}` {here}"))
                .at(spans.key_or_value(pointer))
                .label(format!("`{key}` is required"))
                .hint(hint)
        }
        ValidationErrorKind::Pattern { .. } => Diagnostic::new(format!(
            "`{}` is not a target name",
            err.instance().as_str().unwrap_or_default()
        ))
        .at(spans.value(pointer))
        .label("letters, digits, `.`, `_` and `-`, starting with a letter or digit")
        .hint("a name becomes a directory name; use something like `tenant-eu-1`"),
        ValidationErrorKind::Constant { expected_value } => Diagnostic::new(format!(
            "{} is not allowed {here}",
            crate::schema::found_words(err.instance())
        ))
        .at(spans.value(pointer))
        .label(format!(
            "expected `{}`",
            expected_value.as_str().unwrap_or_default()
        ))
        .hint("a targets file starts with `apiVersion: runbook/v1` and `kind: Targets`"),
        ValidationErrorKind::Type { kind } => Diagnostic::new(format!(
            "expected {} {here}, found {}",
            crate::schema::type_words(kind),
            crate::schema::found_words(err.instance())
        ))
        .at(spans.value(pointer))
        .label("wrong type")
        .hint("docs/fleet.md shows a complete targets file"),
        ValidationErrorKind::MinItems { .. } => Diagnostic::new("the list of targets is empty")
            .at(spans.value(pointer))
            .label("no target")
            .hint("list at least one database under `targets:`"),
        _ => Diagnostic::new(format!("{err} {here}"))
            .at(spans.value(pointer))
            .label("here")
            .hint("docs/fleet.md shows a complete targets file"),
    }
}

/// The typed targets of a document the schema accepted: each over `defaults`.
fn read(doc: &Value) -> Vec<Target> {
    let defaults = &doc["defaults"];
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out = Vec::new();
    for t in doc["targets"].as_array().into_iter().flatten() {
        let pick = |k: &str| t.get(k).or_else(|| defaults.get(k)).and_then(Value::as_str);
        let own_conn = ["url", "url_env", "service"]
            .iter()
            .any(|k| t.get(*k).is_some());
        let from = if own_conn { t } else { defaults };
        let connection = match (
            from.get("url").and_then(Value::as_str),
            from.get("url_env").and_then(Value::as_str),
            from.get("service").and_then(Value::as_str),
        ) {
            (Some(u), _, _) => Connection::Url(u.to_string()),
            (_, Some(e), _) => Connection::UrlEnv(e.to_string()),
            (_, _, Some(s)) => Connection::Service(s.to_string()),
            _ => Connection::Environment,
        };
        let mut labels = BTreeMap::new();
        let mut params = IndexMap::new();
        for layer in [defaults, t] {
            for (k, v) in layer["labels"].as_object().into_iter().flatten() {
                labels.insert(k.clone(), text(v));
            }
            for (k, v) in layer["params"].as_object().into_iter().flatten() {
                params.insert(k.clone(), v.clone());
            }
        }
        out.push(Target {
            name: t["name"].as_str().unwrap_or_default().to_string(),
            connection,
            database: pick("database").map(str::to_string),
            labels,
            params,
        });
    }
    out
}

/// `--select key=value[,value…]`: a target matches when its label `key`
/// is one of the values. Several selectors must all match.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    pub key: String,
    pub values: Vec<String>,
}

impl std::str::FromStr for Selector {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (key, values) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
        let values: Vec<String> = values
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect();
        if key.trim().is_empty() || values.is_empty() {
            return Err(format!("`{s}` is not KEY=VALUE"));
        }
        Ok(Selector {
            key: key.trim().to_string(),
            values,
        })
    }
}

impl Selector {
    pub fn matches(&self, t: &Target) -> bool {
        t.labels
            .get(&self.key)
            .is_some_and(|v| self.values.contains(v))
    }
}

/// `--shard K/N`: shard K (from 1) of N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not K/N (such as 2/4)"))?;
        let (Ok(index), Ok(count)) = (k.trim().parse::<u32>(), n.trim().parse::<u32>()) else {
            return Err(format!("`{s}` is not K/N (such as 2/4)"));
        };
        if count == 0 || index == 0 || index > count {
            return Err(format!(
                "shard `{s}` does not exist: K runs from 1 to N, and N is at least 1"
            ));
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard (from 1) of `count` that owns a target, by its name alone:
/// rendezvous hashing, so adding a target moves no other, and going from
/// N to N+1 shards moves only about 1/(N+1) of them.
pub fn shard_of(name: &str, count: u32) -> u32 {
    (1..=count.max(1))
        .max_by_key(|k| {
            let h = crate::hash::sha256_bytes(format!("{k}\u{0}{name}").as_bytes());
            u64::from_be_bytes(h[..8].try_into().expect("8 bytes"))
        })
        .unwrap_or(1)
}

/// The targets a run takes, in the file's order.
#[derive(Debug, Default)]
pub struct Choice<'a> {
    pub select: &'a [Selector],
    pub shard: Option<Shard>,
    /// `--only-failed`: the names to retry.
    pub only: Option<&'a [String]>,
}

impl Choice<'_> {
    pub fn apply(&self, all: &[Target]) -> Vec<Target> {
        all.iter()
            .filter(|t| self.select.iter().all(|s| s.matches(t)))
            .filter(|t| {
                self.shard
                    .is_none_or(|s| shard_of(&t.name, s.count) == s.index)
            })
            .filter(|t| self.only.is_none_or(|names| names.contains(&t.name)))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Result<Targets, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("targets.yml");
        std::fs::write(&p, text).unwrap();
        load(&p).map_err(|e| {
            e.render(false)
                .replace(&dir.path().display().to_string(), "DIR")
        })
    }

    const HEAD: &str = "apiVersion: runbook/v1\nkind: Targets\n";

    #[test]
    fn targets_inherit_defaults_and_merge_labels_and_params() {
        let t = doc(&format!(
            "{HEAD}defaults:\n  url: postgres://app@db.internal/postgres\n  labels: {{tier: std}}\n  params: {{batch: 100}}\n\
             targets:\n  - {{name: a, database: tenant_a, labels: {{region: eu}}}}\n  - {{name: b, url_env: B_URL, labels: {{tier: gold}}, params: {{batch: 5}}}}\n"
        ))
        .unwrap();
        let [a, b] = &t.list[..] else { panic!() };
        assert_eq!(
            a.connection,
            Connection::Url("postgres://app@db.internal/postgres".into())
        );
        assert_eq!(a.database.as_deref(), Some("tenant_a"));
        assert_eq!(a.labels["tier"], "std");
        assert_eq!(a.labels["region"], "eu");
        assert_eq!(a.params["batch"], 100);
        assert_eq!(b.connection, Connection::UrlEnv("B_URL".into()));
        assert_eq!(b.labels["tier"], "gold");
        assert_eq!(b.params["batch"], 5);
        assert_eq!(b.describe(), "$B_URL");
    }

    #[test]
    fn a_password_in_the_file_is_refused_where_it_is() {
        let e = doc(&format!(
            "{HEAD}targets:\n  - name: a\n    url: postgres://app:hunter2@db/x\n"
        ))
        .unwrap_err();
        assert!(e.contains("DIR/targets.yml:5:10"), "{e}");
        assert!(e.contains("the URL carries a password"), "{e}");
        assert!(e.contains("postgres://app:*******@db/x"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("url_env"), "{e}");
        let e = doc(&format!(
            "{HEAD}targets:\n  - name: a\n    url: host=db password=hunter2\n  - name: b\n    url: postgres://u:p%40ss@db/x\n"
        ))
        .unwrap_err();
        assert!(e.contains("carries a password"), "{e}");
        assert!(!e.contains("hunter2") && !e.contains("p%40ss"), "{e}");
    }

    /// A URL that does not parse is shown in its diagnostic: its password
    /// was shown too, since it was looked for only in a URL that parses.
    #[test]
    fn a_password_in_a_url_that_does_not_parse_is_starred_out_too() {
        for (url, secret) in [
            ("postgres://app:hunter2@db/x?foo=1", "hunter2"),
            ("postgres://app:p%40ss@db:99999/x", "p%40ss"),
            ("host=db password=hunter2 foo=1", "hunter2"),
            // `sslpassword=` first: the password after it is starred too.
            (
                "host=db sslpassword=keypass password=hunter2 foo=1",
                "hunter2",
            ),
            (
                "host=db sslpassword=keypass password=hunter2 foo=1",
                "keypass",
            ),
            ("postgres://app@db/x?sslpassword=keypass&foo=1", "keypass"),
        ] {
            let e = doc(&format!("{HEAD}targets:\n  - name: a\n    url: {url}\n")).unwrap_err();
            assert!(e.contains("DIR/targets.yml:5:10"), "{e}");
            assert!(!e.contains(secret), "{e}");
            assert!(e.contains(&"*".repeat(secret.len())), "{e}");
        }
        // A schema as Prisma names it is no fault.
        let t = doc(&format!(
            "{HEAD}targets:\n  - name: a\n    url: postgres://app@db/x?schema=app\n"
        ));
        assert!(t.is_ok(), "{:?}", t.err());
    }

    #[test]
    fn schema_and_name_errors_are_located_with_a_hint() {
        let e = doc(&format!(
            "{HEAD}targets:\n  - name: a\n    urll: postgres://db/x\n  - name: a\n  - name: 'bad name'\n"
        ))
        .unwrap_err();
        assert!(e.contains("unknown key `urll` in target `a`"), "{e}");
        assert!(e.contains("did you mean `url`?"), "{e}");
        assert!(e.contains("`bad name` is not a target name"), "{e}");
        let e = doc(&format!("{HEAD}targets:\n  - name: a\n  - name: a\n")).unwrap_err();
        assert!(e.contains("DIR/targets.yml:5:11"), "{e}");
        assert!(e.contains("two targets are named `a`"), "{e}");
        let e = doc(&format!(
            "{HEAD}targets:\n  - {{name: a, url: 'postgres://db/x', service: s}}\n"
        ))
        .unwrap_err();
        assert!(e.contains("`url` and `service` are given together"), "{e}");
        let e = doc("kind: Targets\ntargets: []\n").unwrap_err();
        assert!(e.contains("missing `apiVersion`"), "{e}");
        assert!(e.contains("the list of targets is empty"), "{e}");
    }

    #[test]
    fn selectors_and_shards_parse_or_say_why_not() {
        let s: Selector = "region=eu,us".parse().unwrap();
        assert_eq!(s.values, ["eu", "us"]);
        assert!("region".parse::<Selector>().is_err());
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard { index: 2, count: 4 }));
        for bad in ["0/4", "5/4", "1/0", "x/2", "3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn shards_cover_every_target_once_and_adding_one_moves_none() {
        let names: Vec<String> = (0..200).map(|i| format!("tenant-{i}")).collect();
        for n in [1, 2, 3, 7] {
            let mut counts = vec![0; n as usize];
            for name in &names {
                let k = shard_of(name, n);
                assert!((1..=n).contains(&k));
                counts[(k - 1) as usize] += 1;
            }
            assert_eq!(counts.iter().sum::<i32>(), 200);
            // Balanced enough that no shard is idle or doubled.
            let even = 200 / n as i32;
            assert!(
                counts.iter().all(|c| *c > even / 2 && *c < even * 2),
                "{counts:?}"
            );
        }
        // From 4 shards to 5, only the targets the new shard takes move.
        let moved = names
            .iter()
            .filter(|t| shard_of(t, 4) != shard_of(t, 5))
            .count();
        assert!(
            names
                .iter()
                .all(|t| shard_of(t, 4) == shard_of(t, 5) || shard_of(t, 5) == 5)
        );
        assert!(moved < 70, "{moved} of 200 moved");
    }

    #[test]
    fn a_choice_filters_by_labels_shard_and_names_in_file_order() {
        let t = |name: &str, region: &str| Target {
            name: name.into(),
            connection: Connection::Environment,
            database: None,
            labels: BTreeMap::from([("region".to_string(), region.to_string())]),
            params: IndexMap::new(),
        };
        let all = vec![t("a", "eu"), t("b", "us"), t("c", "eu"), t("d", "ap")];
        let eu: Selector = "region=eu".parse().unwrap();
        let names = |v: Vec<Target>| v.into_iter().map(|t| t.name).collect::<Vec<_>>();
        let select = [eu];
        let c = Choice {
            select: &select,
            ..Choice::default()
        };
        assert_eq!(names(c.apply(&all)), ["a", "c"]);
        let only = vec!["d".to_string(), "b".to_string()];
        let c = Choice {
            only: Some(&only),
            ..Choice::default()
        };
        assert_eq!(names(c.apply(&all)), ["b", "d"]);
        let mut seen = Vec::new();
        for k in 1..=3 {
            let c = Choice {
                shard: Some(Shard { index: k, count: 3 }),
                ..Choice::default()
            };
            seen.extend(names(c.apply(&all)));
        }
        seen.sort();
        assert_eq!(seen, ["a", "b", "c", "d"]);
    }
}
