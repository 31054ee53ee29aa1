//! Liquibase's formatted SQL: `.sql` files whose first line is
//! `--liquibase formatted sql`, each holding changesets
//! (`--changeset author:id attribute:value ...`), each changeset's
//! rollback in `--rollback` lines or a `/* liquibase rollback ... */`
//! block. Where the directory holds a master changelog (XML, YAML or
//! JSON), its `include`s and `includeAll`s give the files and their order,
//! as Liquibase follows them; else the directory runs as `includeAll` runs
//! it: its `.sql` files, in its subdirectories too, in the order of their
//! paths. Each file's changesets run in file order. A `.sql` file without
//! the header is one changeset with no rollback, as Liquibase takes it.
//!
//! Changesets have ids, not numbers, so each is known by its place in the
//! directory (`0001`, `0002`, …) and its id. What Liquibase does with a
//! changeset and runbook cannot do the same way is refused with its line,
//! before anything runs: a precondition, a `runWith` other than JDBC, an
//! `endDelimiter` other than `;`, a rollback that names another changeset,
//! a changelog property with no value in the files, a statement that cannot
//! run in the transaction the changeset runs in. Changesets for another
//! database (`dbms:`) or marked `ignore:true` are left out, as Liquibase
//! leaves them out. Contexts and labels select nothing: Liquibase run with
//! none given runs every changeset, and so does runbook (a warning names
//! them).

use super::spring::Spring;
use std::path::{Path, PathBuf};

use regex::Regex;

use super::{Down, LoadError, Script, Set, push_versioned, without_bom};

/// A changeset as Liquibase knows it in `DATABASECHANGELOG`: by its file
/// (named as Liquibase names it, [`normalize`]), its id and its author;
/// with the checksum Liquibase computes for it and what else its row
/// records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChangesetId {
    pub file: String,
    pub id: String,
    pub author: String,
    /// Liquibase's `MD5SUM` ([`checksum_v9`]).
    pub md5sum: String,
    /// Its `--comment:`.
    pub comments: String,
    pub contexts: String,
    /// Its `LABELS`: its includes' labels, then its own, with `,`.
    pub labels: String,
    /// Each level's labels (its includes', then its own), which a label
    /// filter must match one by one, as Liquibase matches them.
    pub label_levels: Vec<String>,
    /// It says `runOnChange:true`: Liquibase runs it again when it changes.
    pub run_on_change: bool,
    /// It says `runAlways:true`: Liquibase runs it again on every update.
    pub run_always: bool,
    /// Its `--validCheckSum:` values: checksums it is valid with, besides
    /// its own ([`ChangesetId::accepts`]).
    pub valid_checksums: Vec<String>,
}

impl ChangesetId {
    /// `FILE::ID::AUTHOR`, as Liquibase names a changeset.
    pub fn key(&self) -> String {
        format!("{}::{}::{}", self.file, self.id, self.author)
    }

    /// Whether Liquibase takes it as applied with `recorded`, where that is
    /// not its checksum now: a `--validCheckSum` says `ANY` (`ALL`, `*`),
    /// or names its checksum now or the one recorded. It then neither
    /// runs again nor fails validation, and the row keeps its checksum.
    pub fn accepts(&self, recorded: &str) -> bool {
        self.valid_checksums.iter().any(|v| {
            let bare = v.strip_prefix("1:").unwrap_or(v);
            ["any", "all", "*"]
                .iter()
                .any(|w| bare.eq_ignore_ascii_case(w))
                || v.eq_ignore_ascii_case(&self.md5sum)
                || v.eq_ignore_ascii_case(recorded)
        })
    }

    /// Whether it runs only where contexts or a label filter select it.
    pub fn is_selective(&self) -> bool {
        !self.contexts.trim().is_empty() || !self.labels.trim().is_empty()
    }

    /// Its context and labels, for a message: ``context `test`, labels `v2` ``.
    pub fn selector(&self) -> String {
        [("context", &self.contexts), ("labels", &self.labels)]
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| format!("{k} `{v}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Liquibase's checksum (its version 9) of a changeset of SQL: the MD5 of
/// the SQL with every space, tab and line break left out is the change's;
/// the changeset's is the MD5 of the change's, written `9:hex`, and `:`.
pub fn checksum_v9(sql: &str) -> String {
    use md5::{Digest, Md5};
    let squeezed: String = sql
        .chars()
        .filter(|c| !matches!(c, ' ' | '\t' | '\n' | '\r'))
        .collect();
    let change = format!("9:{}", crate::hash::hex(&Md5::digest(squeezed.as_bytes())));
    format!(
        "9:{}",
        crate::hash::hex(&Md5::digest(format!("{change}:").as_bytes()))
    )
}

/// The warning that changesets have contexts or labels and every one runs.
const RUNS_EVERY: &str = "changeset(s) have a context or labels";

/// Whether a Liquibase expression holds (a changeset's context, against
/// the contexts given; a label filter, against the changeset's labels),
/// where `has` says whether a name is given: `,` and `or`, `and`, `!` and
/// `not`, parentheses; names compared without case, an `@` in front
/// (Liquibase's mandatory mark) left out.
pub fn expression_holds(expr: &str, has: &dyn Fn(&str) -> bool) -> Result<bool, String> {
    let mut tokens: Vec<String> = Vec::new();
    let mut word = String::new();
    for c in expr.chars() {
        if c.is_whitespace() || matches!(c, '(' | ')' | ',' | '!') {
            if !word.is_empty() {
                tokens.push(std::mem::take(&mut word));
            }
            if !c.is_whitespace() {
                tokens.push(c.to_string());
            }
        } else {
            word.push(c);
        }
    }
    if !word.is_empty() {
        tokens.push(word);
    }
    struct Parser<'t> {
        tokens: &'t [String],
        at: usize,
        has: &'t dyn Fn(&str) -> bool,
    }
    impl Parser<'_> {
        fn peek(&self) -> Option<String> {
            self.tokens.get(self.at).map(|t| t.to_ascii_lowercase())
        }
        fn any(&mut self) -> Result<bool, String> {
            let mut v = self.all()?;
            while matches!(self.peek().as_deref(), Some("or" | ",")) {
                self.at += 1;
                v |= self.all()?;
            }
            Ok(v)
        }
        fn all(&mut self) -> Result<bool, String> {
            let mut v = self.one()?;
            while self.peek().as_deref() == Some("and") {
                self.at += 1;
                v &= self.one()?;
            }
            Ok(v)
        }
        fn one(&mut self) -> Result<bool, String> {
            let t = self.peek().ok_or("it ends where a name is expected")?;
            self.at += 1;
            match t.as_str() {
                "!" | "not" => Ok(!self.one()?),
                "(" => {
                    let v = self.any()?;
                    if self.peek().as_deref() != Some(")") {
                        return Err("a `(` is not closed".into());
                    }
                    self.at += 1;
                    Ok(v)
                }
                ")" | "," | "and" | "or" => Err(format!("`{t}` where a name is expected")),
                name => Ok((self.has)(name.trim_start_matches('@'))),
            }
        }
    }
    let mut p = Parser {
        tokens: &tokens,
        at: 0,
        has,
    };
    let v = p.any()?;
    match p.peek() {
        None => Ok(v),
        Some(t) => Err(format!("`{t}` after a whole expression")),
    }
}

/// Whether Liquibase could read them: `contexts` a comma list of names,
/// `label_filter` an expression. The key at fault, and why.
pub fn check_select(
    contexts: Option<&str>,
    label_filter: Option<&str>,
) -> Result<(), (&'static str, String)> {
    if let Some(c) = contexts {
        if c.trim().is_empty() {
            return Err(("contexts", "it is empty".into()));
        }
        if let Some(bad) = c.split(',').map(str::trim).find(|n| {
            n.is_empty() || n.contains(|ch: char| ch.is_whitespace() || "()!".contains(ch))
        }) {
            return Err((
                "contexts",
                format!(
                    "`{bad}` is not a context's name; the contexts to run with are names, with `,` between them"
                ),
            ));
        }
    }
    if let Some(f) = label_filter {
        expression_holds(f, &|_| true).map_err(|e| ("label_filter", e))?;
    }
    Ok(())
}

/// The names of a comma list, lower case.
fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect()
}

/// Whether a changeset runs under these contexts and this label filter, as
/// Liquibase selects it: any, where none are given or the changeset has
/// none.
pub fn selected(
    c: &ChangesetId,
    contexts: Option<&str>,
    label_filter: Option<&str>,
) -> Result<bool, String> {
    let given = contexts.map(list).unwrap_or_default();
    let by_context = given.is_empty()
        || c.contexts.trim().is_empty()
        || expression_holds(&c.contexts, &|n| {
            given.iter().any(|g| g.eq_ignore_ascii_case(n))
        })
        .map_err(|e| {
            format!(
                "changeset {}::{}::{}'s context `{}`: {e}",
                c.file, c.id, c.author, c.contexts
            )
        })?;
    // Each level (an include's labels, the changeset's own) on its own: a
    // level without labels passes.
    let mut by_label = true;
    if let Some(f) = label_filter.map(str::trim).filter(|f| !f.is_empty()) {
        for level in &c.label_levels {
            let labels = list(level);
            if !labels.is_empty()
                && !expression_holds(f, &|n| labels.iter().any(|l| l.eq_ignore_ascii_case(n)))
                    .map_err(|e| format!("the label filter `{f}`: {e}"))?
            {
                by_label = false;
            }
        }
    }
    Ok(by_context && by_label)
}

/// Keep the changesets these contexts and this label filter select, as
/// Liquibase run with them does; the others are left out. What the log
/// says of it.
pub fn select(
    set: &mut Set,
    contexts: Option<&str>,
    label_filter: Option<&str>,
) -> Result<Option<String>, String> {
    if contexts.is_none() && label_filter.is_none() {
        return Ok(None);
    }
    check_select(contexts, label_filter)
        .map_err(|(key, e)| format!("`{key}` cannot be read as Liquibase reads it: {e}"))?;
    if set.format != super::Format::Liquibase {
        return Err(format!(
            "`contexts` and `label_filter` select Liquibase changesets, and {} is in the {} format",
            set.dir.display(),
            set.format.name()
        ));
    }
    let mut left: Vec<String> = Vec::new();
    let mut keep = Vec::with_capacity(set.migrations.len());
    for m in std::mem::take(&mut set.migrations) {
        let runs = match &m.changeset {
            Some(c) => selected(c, contexts, label_filter)?,
            None => true,
        };
        if runs {
            keep.push(m);
        } else {
            left.push(format!("{} {}", m.version, m.name));
            set.unselected.push(m);
        }
    }
    set.migrations = keep;
    set.warnings.retain(|w| !w.contains(RUNS_EVERY));
    let with = [
        contexts.map(|c| format!("contexts `{c}`")),
        label_filter.map(|f| format!("label filter `{f}`")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" and ");
    Ok(Some(if left.is_empty() {
        format!("{with}: every changeset runs")
    } else {
        format!(
            "{with}: {} changeset(s) left out, as Liquibase leaves them out ({}{})",
            left.len(),
            left[0],
            if left.len() > 1 { ", …" } else { "" }
        )
    }))
}

/// For a step that gives no contexts and no label filter (and so runs
/// every changeset): where the project's own configuration gives some
/// that leave out changesets the step would run, why it is refused, and
/// what to give. A value only the environment gives (`${NAME}`, no
/// default) may leave out any changeset with a context or labels.
pub fn ungiven(set: &Set) -> Option<(String, String)> {
    let leaves_out = |g: &super::liquibase_conf::Given, c: &ChangesetId| match g.resolved() {
        None => c.is_selective(),
        Some(v) => {
            let (contexts, filter) = if g.labels {
                (None, Some(v.as_str()))
            } else {
                (Some(v.as_str()), None)
            };
            !selected(c, contexts, filter).unwrap_or(false)
        }
    };
    let left: Vec<&super::Migration> = set
        .migrations
        .iter()
        .filter(|m| {
            m.changeset
                .as_ref()
                .is_some_and(|c| set.liquibase_given.iter().any(|g| leaves_out(g, c)))
        })
        .collect();
    let first = left.first()?;
    let c = first.changeset.as_ref()?;
    let said: Vec<String> = set
        .liquibase_given
        .iter()
        .map(|g| {
            format!(
                "{} `{}` ({}, {})",
                if g.labels { "label filter" } else { "contexts" },
                g.value,
                g.at,
                g.key
            )
        })
        .collect();
    let example = set
        .liquibase_given
        .iter()
        .find_map(|g| {
            Some(format!(
                "{}: {}",
                if g.labels { "label_filter" } else { "contexts" },
                g.resolved()?
            ))
        })
        .unwrap_or_else(|| "contexts: prod".into());
    Some((
        format!(
            "the project deploys this changelog with Liquibase {}; without `contexts` or `label_filter`, {} changeset(s) those leave out would run here ({} {}: {}{})",
            said.join(", "),
            left.len(),
            first.version,
            first.name,
            c.selector(),
            if left.len() > 1 { ", …" } else { "" }
        ),
        format!(
            "give the step what the deploy it stands for gives, as Liquibase's --contexts and --label-filter (`{example}`); to run every changeset, name every context the changelog uses"
        ),
    ))
}

/// Why a changeset's script runs outside a transaction.
const NO_TRANSACTION: &str = "its changeset says runInTransaction:false";

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("a Liquibase pattern")
}

struct Patterns {
    header: Regex,
    changeset: Regex,
    changeset_like: Regex,
    rollback: Regex,
    rollback_start: Regex,
    rollback_end: Regex,
    precondition: Regex,
    property: Regex,
    ignore_lines: Regex,
    include: Regex,
    reference: Regex,
    attribute: Regex,
    property_name: Regex,
    property_value: Regex,
    property_dbms: Regex,
    placeholder: Regex,
}

fn patterns() -> &'static Patterns {
    static P: std::sync::OnceLock<Patterns> = std::sync::OnceLock::new();
    P.get_or_init(|| Patterns {
        header: re(r"(?i)^\s*--\s*liquibase\s*formatted"),
        changeset: re(r#"(?i)^\s*--\s*changeset\s+("[^"]+"|[^:]+):\s*("[^"]+"|\S+)(.*)$"#),
        changeset_like: re(r"(?i)^\s*-+\s*changeset(\s|$)"),
        rollback: re(r"(?i)^\s*--\s*rollback (.*)$"),
        rollback_start: re(r"(?i)^\s*/\*\s*liquibase\s*rollback\s*$"),
        rollback_end: re(r"\*/\s*$"),
        precondition: re(r"(?i)^\s*--\s*precondition(s\b|-)"),
        property: re(r"(?i)^\s*--\s*property\s"),
        ignore_lines: re(r"(?i)^\s*--\s*ignoreLines:(\w+)"),
        include: re(r"(?i)^\s*--\s*include(all)?[\s:]"),
        reference: re(r"(?i)changesetid\s*:"),
        attribute: re(r#"\b([A-Za-z]+):("[^"]*"|\S*)"#),
        property_name: re(r"(?i)\bname:\s*(\S+)"),
        property_value: re(r"(?i)\bvalue:\s*(\S+)"),
        property_dbms: re(r"(?i)\bdbms:\s*(\S+)"),
        placeholder: re(r"\$\{([^}\s]+)\}"),
    })
}

/// Whether `text` is a formatted SQL file: its first line that is not
/// blank says so, as Liquibase looks.
fn formatted(text: &str) -> bool {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| patterns().header.is_match(l))
}

/// Whether a file is one of Liquibase's XML, YAML or JSON changelogs.
pub fn changelog(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    ["xml", "yaml", "yml", "json"].contains(&ext.to_ascii_lowercase().as_str())
        && std::fs::read_to_string(path).is_ok_and(|t| t.contains("databaseChangeLog"))
}

/// The start of a file, enough for its first line: detection reads every
/// `.sql` file of a directory, and a long history's files are not read
/// whole for it.
fn head(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut buf = Vec::with_capacity(4096);
    std::fs::File::open(path)
        .ok()?
        .take(4096)
        .read_to_end(&mut buf)
        .ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// A directory of Liquibase's: a file in it is formatted SQL or a changelog.
pub(super) fn present(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.filter_map(Result::ok).any(|e| {
        let path = e.path();
        path.is_file()
            && if path
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("sql"))
            {
                head(&path).is_some_and(|t| formatted(&t))
            } else {
                changelog(&path)
            }
    })
}

/// The directory's `.sql` files and changelogs, relative, `/`-separated,
/// in the order of their paths, as `includeAll` takes them.
fn files(dir: &Path) -> Result<Vec<String>, LoadError> {
    fn walk(root: &Path, rel: &str, out: &mut Vec<String>) -> Result<(), LoadError> {
        let here = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let entries = std::fs::read_dir(&here).map_err(|e| LoadError::Unreadable {
            path: format!("the migration directory {}", here.display()),
            why: e.to_string(),
        })?;
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let full = root.join(&path);
            if full.is_dir() {
                if !name.starts_with('.') {
                    walk(root, &path, out)?;
                }
            } else if name.to_ascii_lowercase().ends_with(".sql") || changelog(&full) {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    out.sort();
    Ok(out)
}

/// Changelog properties, `(name, value)`, in the order given: a later one wins.
type Properties = Vec<(String, String)>;

/// One changeset as its file has it.
struct Changeset {
    author: String,
    id: String,
    /// The `--changeset` line (1-based).
    line: usize,
    attributes: String,
    /// The lines after it, up to the next one; what is not SQL blanked.
    body: Vec<String>,
    /// The lines that are SQL, for the checksum.
    sql_lines: Vec<String>,
    /// Its `--comment:` lines' text.
    comments: Vec<String>,
    /// Its `--validCheckSum:` lines' values.
    valid_checksums: Vec<String>,
    /// (line, text) of each rollback line.
    rollback: Vec<(usize, String)>,
}

impl Changeset {
    /// An attribute's value: the last `name:value` on the changeset line,
    /// as Liquibase's patterns find it.
    fn attribute(&self, name: &str) -> Option<String> {
        patterns()
            .attribute
            .captures_iter(&self.attributes)
            .filter(|c| c[1].eq_ignore_ascii_case(name))
            .last()
            .map(|c| c[2].trim_matches('"').to_string())
    }

    fn flag(&self, name: &str, default: bool) -> bool {
        self.attribute(name)
            .map_or(default, |v| v.eq_ignore_ascii_case("true"))
    }

    /// Whether it has a context or labels, which select changesets only
    /// where Liquibase is given some.
    fn selects(&self) -> bool {
        ["context", "contextFilter", "labels"]
            .iter()
            .any(|a| self.attribute(a).is_some())
    }

    /// What it says that Liquibase would run otherwise than runbook: a
    /// warning for each.
    fn runs_otherwise(&self, file: &str) -> Vec<String> {
        let said = [(
            !self.flag("failOnError", true),
            "failOnError:false; runbook stops at its error, where Liquibase goes on and records it as run",
        )];
        said.iter()
            .filter(|(says, _)| *says)
            .map(|(_, what)| {
                format!(
                    "{file}:{}: changeset {}:{} says {what}",
                    self.line, self.author, self.id
                )
            })
            .collect()
    }

    /// Whether its `dbms:` takes PostgreSQL.
    fn for_postgres(&self) -> bool {
        self.attribute("dbms")
            .is_none_or(|list| for_postgres(&list))
    }
}

/// Whether a `dbms` list (`postgresql,h2`, `!mssql`, `all`, `none`) takes
/// PostgreSQL, as Liquibase matches it: a changeset's, or a property's.
fn for_postgres(list: &str) -> bool {
    let items: Vec<String> = list
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() || items.iter().any(|i| i == "all") {
        return true;
    }
    if items.iter().any(|i| i == "none" || i == "!postgresql") {
        return false;
    }
    let wanted: Vec<&String> = items.iter().filter(|i| !i.starts_with('!')).collect();
    wanted.is_empty() || wanted.iter().any(|i| *i == "postgresql")
}

/// A problem at a line of a file.
fn at(file: &str, line: usize, what: impl Into<String>) -> LoadError {
    LoadError::Liquibase {
        file: file.to_string(),
        line,
        what: what.into(),
    }
}

/// The changesets of one formatted SQL file, with the file's properties.
fn changesets(file: &str, text: &str) -> Result<(Vec<Changeset>, Properties), LoadError> {
    let p = patterns();
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out: Vec<Changeset> = Vec::new();
    let mut properties: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i];
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let n = i + 1;
        i += 1;
        if p.property.is_match(line) {
            let get = |key: &Regex| key.captures(line).map(|c| c[1].to_string());
            match (get(&p.property_name), get(&p.property_value)) {
                // Another database's value is not PostgreSQL's.
                _ if !get(&p.property_dbms).is_none_or(|d| for_postgres(&d)) => {}
                (Some(name), Some(value)) => properties.push((name, value)),
                _ => return Err(at(file, n, "a property needs `name:` and `value:`")),
            }
            blank_last(&mut out, raw);
            continue;
        }
        if let Some(c) = p.ignore_lines.captures(line) {
            let what = c[1].to_ascii_lowercase();
            let skip = if what == "start" {
                let end = lines[i..]
                    .iter()
                    .position(|l| {
                        p.ignore_lines
                            .captures(l)
                            .is_some_and(|c| c[1].eq_ignore_ascii_case("end"))
                    })
                    .ok_or_else(|| {
                        at(file, n, "`--ignoreLines:start` has no `--ignoreLines:end`")
                    })?;
                end + 1
            } else {
                what.parse::<usize>().map_err(|_| {
                    at(
                        file,
                        n,
                        format!("`--ignoreLines:{what}`: expected a count, or start"),
                    )
                })?
            };
            blank_last(&mut out, raw);
            for l in lines.iter().skip(i).take(skip) {
                blank_last(&mut out, l);
            }
            i += skip;
            continue;
        }
        if let Some(c) = p.changeset.captures(line) {
            let unquote = |s: &str| s.trim().trim_matches('"').to_string();
            let (author, id) = (unquote(&c[1]), unquote(&c[2]));
            if id.replace([':', ' '], "").is_empty() {
                return Err(at(file, n, "a changeset's id cannot be empty"));
            }
            if let Some(first) = out.iter().find(|s| s.author == author && s.id == id) {
                return Err(at(
                    file,
                    n,
                    format!(
                        "changeset {author}:{id} is also at line {}; Liquibase refuses the same changeset twice",
                        first.line
                    ),
                ));
            }
            out.push(Changeset {
                author,
                id,
                line: n,
                attributes: c[3].to_string(),
                body: Vec::new(),
                sql_lines: Vec::new(),
                comments: Vec::new(),
                valid_checksums: Vec::new(),
                rollback: Vec::new(),
            });
            continue;
        }
        if p.changeset_like.is_match(line) {
            return Err(at(file, n, "expected `--changeset author:id`"));
        }
        let Some(current) = out.last_mut() else {
            // Before the first changeset: Liquibase reads past it, except
            // what would bring in other files.
            if p.include.is_match(line) {
                return Err(at(
                    file,
                    n,
                    "an include of other changelogs, which runbook does not follow",
                ));
            }
            continue;
        };
        if p.precondition.is_match(line) {
            return Err(at(
                file,
                n,
                "a precondition, which Liquibase checks before the changeset and runbook does not",
            ));
        }
        if let Some(c) = p.rollback.captures(line) {
            current.rollback.push((n, c[1].to_string()));
            current.body.push(line.to_string());
            continue;
        }
        if p.rollback_start.is_match(line) {
            // Liquibase joins the block's lines with nothing between them
            // (`DROP TABLE` and `users;` on two lines are `DROP TABLEusers;`,
            // and a `--` comment runs to the block's end): the rehearsal runs
            // the rollback Liquibase runs, on the block's first line.
            current.body.push(line.to_string());
            let mut joined = String::new();
            loop {
                let Some(raw) = lines.get(i) else {
                    return Err(at(file, n, "this rollback comment is not closed (`*/`)"));
                };
                let l = raw.strip_suffix('\r').unwrap_or(raw);
                i += 1;
                current.body.push(l.to_string());
                if p.rollback_end.is_match(l) {
                    let before = p.rollback_end.replace(l, "");
                    if !before.trim().is_empty() {
                        joined.push_str(&before);
                    }
                    break;
                }
                joined.push_str(l);
            }
            if !joined.trim().is_empty() {
                current.rollback.push((n + 1, joined));
            }
            continue;
        }
        current.body.push(line.to_string());
        let lower = line.trim_start().to_ascii_lowercase();
        let meta = ["--comment", "--validchecksum"]
            .iter()
            .any(|m| lower.replace(' ', "").starts_with(m));
        if !meta {
            current.sql_lines.push(line.to_string());
        } else {
            let text = line.trim_start().trim_start_matches('-').trim_start();
            let (name, list) = if lower.replace(' ', "").starts_with("--comment") {
                ("comment", &mut current.comments)
            } else {
                ("validCheckSum", &mut current.valid_checksums)
            };
            let text = text.get(name.len()..).unwrap_or("");
            list.push(text.trim_start().trim_start_matches(':').trim().to_string());
        }
    }
    Ok((out, properties))
}

/// An ignored line, in the changeset it falls in: kept for the line
/// count, with nothing left that runs.
fn blank_last(out: &mut [Changeset], raw: &str) {
    if let Some(c) = out.last_mut() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        c.body.push(" ".repeat(line.len()));
    }
}

/// `${name}` filled from the file's `--property` lines and the changelogs'
/// `property` entries; one with no value there is refused, as its value is
/// in Liquibase's own configuration.
fn fill(
    file: &str,
    first_line: usize,
    sql: &str,
    properties: &[(String, String)],
) -> Result<String, LoadError> {
    // The first property that cannot be filled: its line, its name, and
    // whether it has a value (one whose name says it is a secret is not
    // taken from a file).
    let mut refused: Option<(usize, String, bool)> = None;
    let filled = patterns()
        .placeholder
        .replace_all(sql, |c: &regex::Captures| {
            let value = properties.iter().rev().find(|(k, _)| *k == c[1]);
            match value {
                Some((_, v)) if !super::flyway_conf::secret_name(&c[1]) => v.clone(),
                _ => {
                    if refused.is_none() {
                        let offset = c.get(0).map_or(0, |m| m.start());
                        refused = Some((
                            first_line + sql[..offset].matches('\n').count(),
                            c[1].to_string(),
                            value.is_some(),
                        ));
                    }
                    c[0].to_string()
                }
            }
        });
    match refused {
        Some((line, name, false)) => Err(at(
            file,
            line,
            format!(
                "`${{{name}}}` is a changelog property with no value in this file, its changelogs, the project's `spring.liquibase.parameters`, a `liquibase.properties`' `parameter.*` or the environment, and the project's missingPropertyMode is ERROR, or its name says it is a secret"
            ),
        )),
        Some((line, name, true)) => Err(at(
            file,
            line,
            format!(
                "`${{{name}}}` takes its value from a changelog, but its name says it is a secret, and runbook does not take a secret from a file: it would reach the run's logs and reports"
            ),
        )),
        None => Ok(filled.into_owned()),
    }
}

/// The `${name}`s of a file that nothing the project gives fills, as
/// Liquibase fills them: from the environment (Liquibase reads every
/// variable as a property), else as `missingPropertyMode` says. Returns
/// the names kept as written (once each) and the values to add. A name
/// that says it is a secret is left to [`fill`], which refuses it; so is
/// a variable whose value holds a password (a URL's `user:password@`),
/// which would reach the run's logs and reports.
fn unset_properties(
    file: &str,
    text: &str,
    properties: &[(String, String)],
    mode: super::liquibase_conf::Missing,
) -> Result<(Vec<String>, Properties), LoadError> {
    use super::liquibase_conf::Missing;
    let mut kept: Vec<String> = Vec::new();
    let mut given: Properties = Vec::new();
    for c in patterns().placeholder.captures_iter(text) {
        let name = &c[1];
        let known = |list: &[(String, String)]| list.iter().any(|(k, _)| k == name);
        if known(properties) || known(&given) || super::flyway_conf::secret_name(name) {
            continue;
        }
        match (std::env::var(name), mode) {
            (Ok(v), _) if crate::redact::holds_password(&v) => {
                let offset = c.get(0).map_or(0, |m| m.start());
                return Err(at(
                    file,
                    1 + text[..offset].matches('\n').count(),
                    format!(
                        "`${{{name}}}` takes its value from the environment, as Liquibase does, and the value holds a password, which would reach the run's logs and reports"
                    ),
                ));
            }
            (Ok(v), _) => given.push((name.to_string(), v)),
            (Err(_), Missing::Preserve) => {
                kept.push(name.to_string());
                given.push((name.to_string(), c[0].to_string()));
            }
            (Err(_), Missing::Empty) => given.push((name.to_string(), String::new())),
            (Err(_), Missing::Error) => {}
        }
    }
    Ok((kept, given))
}

/// The statement Liquibase would fail to run in the changeset's
/// transaction, where it runs in one.
fn in_transaction(s: &Script) -> Option<LoadError> {
    super::fails_in_transaction(
        s,
        "Liquibase",
        "changeset",
        "add runInTransaction:false to the changeset's line, so that it runs statement by statement, as runbook runs it",
    )
}

/// The SQL files a directory's changelogs run, in order: where the
/// directory holds a changelog (XML, YAML or JSON) that no other one there
/// includes, what it includes; else its `.sql` files, as `includeAll` takes
/// them. With the properties the changelogs give.
struct Plan {
    files: Vec<PlanFile>,
    properties: Vec<(String, String)>,
    seen: std::collections::HashSet<PathBuf>,
    /// The directory's `.sql` files that no changelog includes.
    left_out: Option<String>,
    /// Where the changesets' files are named from, and why, for the log.
    names: Option<String>,
    /// The master changelog, where there is one.
    master: Option<PathBuf>,
}

/// What the log says of how Liquibase names the files.
fn names_note(root: &Path, why: &str) -> String {
    format!(
        "Liquibase names these changesets' files from {} ({why})",
        root.display()
    )
}

/// A formatted SQL file a changelog runs.
struct PlanFile {
    path: PathBuf,
    /// Its name relative to the directory.
    label: String,
    /// Its name as Liquibase records it ([`logical`]).
    logical: String,
    /// The contexts of the includes that reached it, outermost first.
    contexts: Vec<String>,
    /// Their labels, the same way.
    labels: Vec<String>,
}

/// What a changelog lists, in order.
enum Item {
    /// With the include's own context (`context:`, `contextFilter:`),
    /// which Liquibase puts before every changeset's of the file.
    Include {
        file: String,
        relative: bool,
        context: Option<String>,
        labels: Option<String>,
    },
    IncludeAll {
        path: String,
        relative: bool,
        context: Option<String>,
        labels: Option<String>,
    },
    Property {
        name: String,
        value: String,
    },
}

fn changelog_error(file: &str, what: impl Into<String>) -> LoadError {
    LoadError::LiquibaseChangelog {
        file: file.to_string(),
        what: what.into(),
    }
}

/// The items of an XML, YAML or JSON changelog.
fn items(path: &Path, label: &str) -> Result<Vec<Item>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::Unreadable {
        path: path.display().to_string(),
        why: e.to_string(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let xml = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("xml"));
    if xml {
        xml_items(label, text)
    } else {
        yaml_items(label, text)
    }
}

fn xml_items(label: &str, text: &str) -> Result<Vec<Item>, LoadError> {
    let doc = roxmltree::Document::parse(text)
        .map_err(|e| changelog_error(label, format!("cannot be read as XML: {e}")))?;
    let mut out = Vec::new();
    for node in doc.root_element().children().filter(|n| n.is_element()) {
        let line = doc.text_pos_at(node.range().start).row;
        let attr = |name: &str| node.attribute(name).map(str::to_string);
        let relative =
            attr("relativeToChangelogFile").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let missing = |what: &str| {
            changelog_error(
                &format!("{label}:{line}"),
                format!("`<{}>` has no `{what}`", node.tag_name().name()),
            )
        };
        out.push(match node.tag_name().name() {
            "include" => Item::Include {
                file: attr("file").ok_or_else(|| missing("file"))?,
                relative,
                context: attr("contextFilter").or_else(|| attr("context")),
                labels: attr("labels"),
            },
            "includeAll" => Item::IncludeAll {
                path: attr("path").ok_or_else(|| missing("path"))?,
                relative,
                context: attr("contextFilter").or_else(|| attr("context")),
                labels: attr("labels"),
            },
            "property" => match (attr("name"), attr("value")) {
                _ if !attr("dbms").is_none_or(|d| for_postgres(&d)) => continue,
                (Some(name), Some(value)) => Item::Property { name, value },
                _ => continue,
            },
            other => return Err(unread(&format!("{label}:{line}"), other)),
        });
    }
    Ok(out)
}

/// A changelog entry runbook does not run.
fn unread(at: &str, kind: &str) -> LoadError {
    changelog_error(
        at,
        match kind {
            "changeSet" => "a changeset written in the changelog itself, which runbook does not run; it runs changesets in formatted SQL files".to_string(),
            other => format!("`{other}`, which runbook does not read"),
        },
    )
}

fn yaml_items(label: &str, text: &str) -> Result<Vec<Item>, LoadError> {
    use serde_yaml::Value;
    let doc: Value = serde_yaml::from_str(text)
        .map_err(|e| changelog_error(label, format!("cannot be read: {e}")))?;
    let Some(list) = doc.get("databaseChangeLog").and_then(Value::as_sequence) else {
        return Err(changelog_error(label, "has no `databaseChangeLog` list"));
    };
    let text_of = |v: &Value, key: &str| -> Option<String> {
        match v.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let mut out = Vec::new();
    for entry in list {
        let Some((key, body)) = entry.as_mapping().and_then(|m| m.iter().next()) else {
            return Err(changelog_error(label, "an entry that is not `kind: {...}`"));
        };
        let key = key.as_str().unwrap_or_default();
        let relative = text_of(body, "relativeToChangelogFile")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let missing = |what: &str| changelog_error(label, format!("`{key}` has no `{what}`"));
        out.push(match key {
            "include" => Item::Include {
                file: text_of(body, "file").ok_or_else(|| missing("file"))?,
                relative,
                context: text_of(body, "contextFilter").or_else(|| text_of(body, "context")),
                labels: text_of(body, "labels"),
            },
            "includeAll" => Item::IncludeAll {
                path: text_of(body, "path").ok_or_else(|| missing("path"))?,
                relative,
                context: text_of(body, "contextFilter").or_else(|| text_of(body, "context")),
                labels: text_of(body, "labels"),
            },
            "property" => match (text_of(body, "name"), text_of(body, "value")) {
                _ if !text_of(body, "dbms").is_none_or(|d| for_postgres(&d)) => continue,
                (Some(name), Some(value)) => Item::Property { name, value },
                _ => continue,
            },
            other => return Err(unread(label, other)),
        });
    }
    Ok(out)
}

/// Where an include points: relative to the changelog, or (as on
/// Liquibase's search path, a Spring application's classpath) from the
/// changelog's directory or one above it, up to the repository's root.
fn resolve(changelog_dir: &Path, target: &str, relative: bool) -> Option<PathBuf> {
    let t = target
        .trim_start_matches("classpath*:")
        .trim_start_matches("classpath:")
        .trim_start_matches('/');
    if relative {
        let p = changelog_dir.join(t);
        return p.exists().then_some(p);
    }
    for above in changelog_dir.ancestors().take(8) {
        let p = above.join(t);
        if p.exists() {
            return Some(p);
        }
        if above.join(".git").exists() {
            break;
        }
    }
    None
}

/// A file's path as the same file is known however it was reached
/// (`db/changelog/../changelog/x.sql`, a symbolic link).
fn same_file(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

/// A path as Liquibase compares and records it: `classpath:` and a
/// leading `/` left out, `\\` as `/`, `.` and `..` worked out.
pub fn normalize(path: &str) -> String {
    let path = path
        .trim_start_matches("classpath*:")
        .trim_start_matches("classpath:")
        .replace('\\', "/");
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// The directory Liquibase's names are relative to (its search path's
/// root), and why: a Maven or Gradle project's `src/main/resources` (the
/// classpath a Spring application reads its changelog from) that holds the
/// directory; else the directory from which a `liquibase.properties` (in
/// the directory or one above it, up to the repository's root) names this
/// master as its `changeLogFile`; else the directory from which the master
/// changelog's first include that is not relative to it is found; else the
/// migration directory itself, as when Liquibase runs there
/// (`--changelog-file master.xml`).
fn root(dir: &Path, master: Option<&Path>) -> (PathBuf, String) {
    let classpath = dir.ancestors().find(|a| {
        a.file_name().is_some_and(|n| n == "resources")
            && a.parent()
                .is_some_and(|p| p.file_name().is_some_and(|n| n == "main" || n == "test"))
    });
    if let Some(c) = classpath {
        return (c.to_path_buf(), "the classpath's root".into());
    }
    if let Some(found) = master.and_then(|m| properties_root(dir, m)) {
        return found;
    }
    let from_include = master.and_then(|m| {
        let here = m.parent()?;
        let target = items(m, "").ok()?.into_iter().find_map(|i| match i {
            Item::Include {
                file,
                relative: false,
                ..
            } => Some(file),
            Item::IncludeAll {
                path,
                relative: false,
                ..
            } => Some(path),
            _ => None,
        })?;
        let t = normalize(&target);
        let at = here.ancestors().take(8).find(|a| a.join(&t).exists())?;
        Some((
            at.to_path_buf(),
            format!("where the master's include of {target} is found"),
        ))
    });
    from_include.unwrap_or_else(|| {
        (
            dir.to_path_buf(),
            "the migration directory, as when Liquibase runs there".into(),
        )
    })
}

/// Where a `liquibase.properties` in `dir` or above it (up to the
/// repository's root) names `master` as its changelog: from its
/// `searchPath` entries, or from its own directory.
fn properties_root(dir: &Path, master: &Path) -> Option<(PathBuf, String)> {
    let master = same_file(master);
    for above in dir.ancestors().take(8) {
        let file = above.join("liquibase.properties");
        if let Ok(text) = std::fs::read_to_string(&file)
            && let Some((base, changelog)) = base_naming(above, &text, &master)
        {
            let why = format!("{} names the master {changelog}", file.display());
            return Some((base, why));
        }
        if above.join(".git").exists() {
            break;
        }
    }
    None
}

/// Where a defaults file in `above`, of this text, names `master` (as
/// [`same_file`] gives it) as its `changeLogFile`: the base it is found
/// from (one of its `searchPath` entries, or `above`), and the name.
fn base_naming(above: &Path, text: &str, master: &Path) -> Option<(PathBuf, String)> {
    let entries = super::java_properties::properties(text);
    let value = |keys: &[&str]| {
        entries.iter().find_map(|(k, v, _)| {
            let k = k.to_ascii_lowercase().replace('-', "");
            let k = k.strip_prefix("liquibase.command.").unwrap_or(&k);
            let k = k.strip_prefix("liquibase.").unwrap_or(k);
            keys.contains(&k).then(|| v.clone())
        })
    };
    let changelog = value(&["changelogfile"])?;
    let bases: Vec<PathBuf> = match value(&["searchpath"]) {
        Some(list) => list.split(',').map(|b| above.join(b.trim())).collect(),
        None => vec![above.to_path_buf()],
    };
    let name = normalize(&changelog);
    let base = bases
        .into_iter()
        .find(|b| same_file(&b.join(&name)) == master)?;
    Some((base, changelog))
}

/// A file's name relative to [`root`], as Liquibase records it.
fn logical(root: &Path, path: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(rel) => normalize(&rel.to_string_lossy()),
        Err(_) => normalize(&path.to_string_lossy()),
    }
}

impl Plan {
    fn label(dir: &Path, path: &Path) -> String {
        match path.strip_prefix(dir) {
            Ok(rel) => rel.to_string_lossy().replace('\\', "/"),
            Err(_) => path.display().to_string(),
        }
    }

    fn add(
        &mut self,
        dir: &Path,
        path: &Path,
        logical: String,
        (contexts, labels): (&[String], &[String]),
    ) -> Result<(), LoadError> {
        if !self.seen.insert(same_file(path)) {
            // Liquibase runs a changeset once, however often it is included.
            return Ok(());
        }
        let sql = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("sql"));
        if sql {
            self.files.push(PlanFile {
                path: path.to_path_buf(),
                label: Self::label(dir, path),
                logical,
                contexts: contexts.to_vec(),
                labels: labels.to_vec(),
            });
            Ok(())
        } else {
            self.follow(dir, path, &logical, (contexts, labels))
        }
    }

    /// What the changelog at `path` includes, in order.
    fn follow(
        &mut self,
        dir: &Path,
        path: &Path,
        logical: &str,
        (contexts, labels): (&[String], &[String]),
    ) -> Result<(), LoadError> {
        let label = Self::label(dir, path);
        let here = path.parent().unwrap_or(dir);
        // Where Liquibase takes a relative include from: the changelog's
        // own name's directory.
        let beside = |name: &str| match logical.rsplit_once('/') {
            Some((d, _)) => normalize(&format!("{d}/{name}")),
            None => normalize(name),
        };
        let under = |outer: &[String], own: &Option<String>| {
            let mut all = outer.to_vec();
            all.extend(own.clone().filter(|c| !c.trim().is_empty()));
            all
        };
        for item in items(path, &label)? {
            match item {
                Item::Property { name, value } => self.properties.push((name, value)),
                Item::Include {
                    file,
                    relative,
                    context,
                    labels: own_labels,
                } => {
                    let Some(p) = resolve(here, &file, relative) else {
                        return Err(changelog_error(
                            &label,
                            format!("includes {file}, which is not there"),
                        ));
                    };
                    let name = if relative {
                        beside(&file)
                    } else {
                        normalize(&file)
                    };
                    let (c, l) = (under(contexts, &context), under(labels, &own_labels));
                    self.add(dir, &p, name, (&c, &l))?;
                }
                Item::IncludeAll {
                    path: all,
                    relative,
                    context,
                    labels: own_labels,
                } => {
                    let Some(p) = resolve(here, &all, relative).filter(|p| p.is_dir()) else {
                        return Err(changelog_error(
                            &label,
                            format!("includes all of {all}, which is not a directory there"),
                        ));
                    };
                    let base = if relative {
                        beside(&all)
                    } else {
                        normalize(&all)
                    };
                    for f in files(&p)? {
                        let name = normalize(&format!("{base}/{f}"));
                        let (c, l) = (under(contexts, &context), under(labels, &own_labels));
                        self.add(dir, &p.join(f), name, (&c, &l))?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A Liquibase changelog named where its directory was expected.
pub fn changelog_file(path: &Path) -> Option<PathBuf> {
    (path.is_file() && changelog(path)).then(|| path.to_path_buf())
}

/// The plan of `dir`: the master changelog named (`named`), else its one
/// top-level changelog that no other there includes, or all its `.sql`
/// files.
fn plan(dir: &Path, spring: &Spring, named: Option<&Path>) -> Result<Plan, LoadError> {
    let mut plan = Plan {
        files: Vec::new(),
        properties: Vec::new(),
        seen: std::collections::HashSet::new(),
        left_out: None,
        names: None,
        master: None,
    };
    if let Some(master) = named {
        let (root, why) = root(dir, Some(master));
        plan.names = Some(format!(
            "{}; the master changelog is {} (named)",
            names_note(&root, &why),
            Plan::label(dir, master)
        ));
        plan.add(dir, master, logical(&root, master), (&[], &[]))?;
        plan.master = Some(master.to_path_buf());
        return Ok(plan);
    }
    let all = files(dir)?;
    let top: Vec<PathBuf> = all
        .iter()
        .filter(|f| !f.contains('/') && !f.to_ascii_lowercase().ends_with(".sql"))
        .map(|f| dir.join(f))
        .collect();
    if top.is_empty() {
        let (root, why) = root(dir, None);
        plan.names = Some(names_note(&root, &why));
        for f in &all {
            let p = dir.join(f);
            plan.add(dir, &p, logical(&root, &p), (&[], &[]))?;
        }
        return Ok(plan);
    }
    // The master the project's own configuration names, where it is
    // here: a changelog that includes it (and test data) is not run.
    if let Some((master, why)) = configured_master(dir, &top, spring) {
        let (root, names_why) = root(dir, Some(&master));
        plan.names = Some(format!(
            "{}; the master changelog is {} ({why})",
            names_note(&root, &names_why),
            Plan::label(dir, &master)
        ));
        plan.add(dir, &master, logical(&root, &master), (&[], &[]))?;
        plan.master = Some(master);
        return Ok(plan.with_left_out(dir, &all));
    }
    // The master: the changelog no other one includes.
    let mut included = std::collections::HashSet::new();
    for c in &top {
        let here = c.parent().unwrap_or(dir);
        for item in items(c, &Plan::label(dir, c))? {
            if let Item::Include { file, relative, .. } = item
                && let Some(p) = resolve(here, &file, relative)
            {
                included.insert(same_file(&p));
            }
        }
    }
    let masters: Vec<&PathBuf> = top
        .iter()
        .filter(|c| !included.contains(&same_file(c)))
        .collect();
    match masters.as_slice() {
        [master] => {
            let (root, why) = root(dir, Some(master));
            plan.names = Some(names_note(&root, &why));
            plan.master = Some(master.to_path_buf());
            plan.add(dir, master, logical(&root, master), (&[], &[]))?;
        }
        _ => {
            // Several masters, each run with its own `--changelog-file`:
            // where the Gradle build runs them, in its order.
            let here = same_file(dir);
            let shown = |p: &Path| {
                p.strip_prefix(&here)
                    .map(|r| r.display().to_string())
                    .unwrap_or_else(|_| p.display().to_string())
            };
            let gradle = super::liquibase_conf::gradle_activities(dir).and_then(|(at, found)| {
                let ran: Vec<String> = found
                    .iter()
                    .filter(|(_, f)| top.iter().any(|t| same_file(t) == same_file(f)))
                    .map(|(a, f)| format!("{} ({a})", shown(f)))
                    .collect();
                (!ran.is_empty()).then(|| {
                    format!(
                        "; {} runs {} with Liquibase's Gradle plugin: give each a migrate step of its own, in that order, whose `dir:` names it",
                        shown(&at),
                        ran.join(", then ")
                    )
                })
            });
            return Err(changelog_error(
                &top.iter()
                    .map(|c| Plan::label(dir, c))
                    .collect::<Vec<_>>()
                    .join(", "),
                format!(
                    "are changelogs, and none of them includes the others, so which one is the master is not known{}",
                    gradle.unwrap_or_default()
                ),
            ));
        }
    }
    Ok(plan.with_left_out(dir, &all))
}

/// The master changelog among `top` that the project's configuration
/// names, and why: a Spring application's ([`super::liquibase_conf::master`]),
/// else the `changeLogFile` of a `liquibase.properties` in the directory
/// or above it (up to the repository's root), as Liquibase run there
/// reads it.
fn configured_master(dir: &Path, top: &[PathBuf], spring: &Spring) -> Option<(PathBuf, String)> {
    let here = |name: &str| {
        let named = same_file(&spring.classpath()?.join(normalize(name)));
        top.iter().find(|t| same_file(t) == named).cloned()
    };
    if let Some((name, why)) = super::liquibase_conf::master(spring) {
        return Some((here(&name)?, why));
    }
    for above in dir.ancestors().take(8) {
        let file = above.join("liquibase.properties");
        if let Ok(text) = std::fs::read_to_string(&file)
            && let Some(m) = top
                .iter()
                .find(|t| base_naming(above, &text, &same_file(t)).is_some())
        {
            return Some((m.clone(), format!("{} names it", file.display())));
        }
        if above.join(".git").exists() {
            break;
        }
    }
    let (default, who) = if spring.quarkus {
        (super::liquibase_conf::QUARKUS_MASTER, "Quarkus")
    } else {
        (super::liquibase_conf::SPRING_MASTER, "Spring Boot")
    };
    Some((
        here(default)?,
        format!(
            "{default} on the classpath, the master {who} runs where its configuration names none"
        ),
    ))
}

impl Plan {
    /// With the directory's `.sql` files that no changelog reached named.
    fn with_left_out(mut self, dir: &Path, all: &[String]) -> Plan {
        let left: Vec<&String> = all
            .iter()
            .filter(|f| f.to_ascii_lowercase().ends_with(".sql"))
            .filter(|f| !self.seen.contains(&same_file(&dir.join(f))))
            .collect();
        if let Some(first) = left.first() {
            self.left_out = Some(format!(
                "{} .sql file(s) in the directory are in no changelog, and do not run ({first}{})",
                left.len(),
                if left.len() > 1 { ", …" } else { "" }
            ));
        }
        self
    }
}

pub(super) fn load(dir: &Path, set: &mut Set) -> Result<(), LoadError> {
    // The application's configuration, read once: Spring's, else a
    // Quarkus application's under Spring's names.
    let spring = Spring::read(dir, super::liquibase_conf::SPRING_PREFIX);
    let spring = match spring.settings.is_empty() && spring.several.is_empty() {
        true => super::liquibase_conf::quarkus(dir).unwrap_or(spring),
        false => spring,
    };
    let plan = match plan(dir, &spring, set.liquibase_master.clone().as_deref()) {
        Ok(p) => p,
        Err(e) => return set.problem(e),
    };
    set.warnings.extend(plan.left_out.clone());
    set.warnings.extend(spring.several_note(
        "Liquibase",
        "its master, contexts, schemas and parameters are Liquibase's defaults here, or what the step says",
    ));
    set.liquibase_names = plan.names.clone();
    let master = plan.master.as_deref().map(same_file);
    let names_master = |above: &Path, text: &str| {
        master
            .as_deref()
            .is_some_and(|m| base_naming(above, text, m).is_some())
    };
    set.liquibase_place = super::liquibase_conf::place(&spring, dir, names_master);
    // Liquibase defines these before reading the changelogs: they win.
    let project_parameters = super::liquibase_conf::parameters(&spring, dir, names_master);
    let missing = super::liquibase_conf::missing_property_mode(dir, names_master);
    let mut place = 0;
    let mut selected: Vec<String> = Vec::new();
    for PlanFile {
        path,
        label: file,
        logical,
        contexts: inherited,
        labels: inherited_labels,
    } in &plan.files
    {
        let file = file.clone();
        let text = std::fs::read_to_string(path).map_err(|e| LoadError::Unreadable {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        if !formatted(&text) {
            // Liquibase takes it as one changeset of raw SQL, with no rollback.
            place += 1;
            let up = without_bom(Script {
                sql: text,
                file: file.clone(),
                first_line: 1,
                no_transaction: None,
                written: None,
            });
            if let Some(e) = in_transaction(&up) {
                set.problem(e)?;
                continue;
            }
            let stem = file.rsplit('/').next().unwrap_or(&file);
            let name = stem.strip_suffix(".sql").unwrap_or(stem).to_string();
            let down = Down::Missing(format!(
                "{file} is not formatted SQL, so Liquibase has no rollback for it"
            ));
            let md5sum = checksum_v9(&up.sql);
            push_versioned(set, &file, format!("{place:04}"), name, up, down)?;
            // Liquibase names such a file's one changeset `raw`, by
            // `includeAll`.
            identify(
                set,
                &file,
                ChangesetId {
                    file: logical.clone(),
                    id: "raw".into(),
                    author: "includeAll".into(),
                    md5sum,
                    contexts: full_context(inherited, None),
                    labels: inherited_labels.join(","),
                    label_levels: inherited_labels.clone(),
                    ..ChangesetId::default()
                },
            );
            continue;
        }
        let (found, mut properties) = match changesets(&file, &text) {
            Ok(f) => f,
            Err(e) => {
                set.problem(e)?;
                continue;
            }
        };
        // The changelogs' properties first: a file's own come later and win.
        properties.splice(0..0, plan.properties.iter().cloned());
        properties.extend(project_parameters.iter().cloned());
        let (kept, given) = match unset_properties(&file, &text, &properties, missing.0) {
            Ok(found) => found,
            Err(e) => {
                set.problem(e)?;
                continue;
            }
        };
        properties.extend(given);
        if let Some(first) = kept.first() {
            set.warnings.push(format!(
                "{file}: {} {} no value in the files, the project's configuration or the environment, and Liquibase keeps it as written ({}); so does runbook. A deploy that gives Liquibase a value for one (`-D{first}=...` on its command line) runs other SQL: give runbook the same as an environment variable of its name (`{first}=... runbook exec ...`), which Liquibase reads too",
                kept.iter().map(|k| format!("`${{{k}}}`")).collect::<Vec<_>>().join(", "),
                if kept.len() == 1 { "has" } else { "have" },
                match &missing.1 {
                    Some(at) => format!("missingPropertyMode PRESERVE, {at}"),
                    None => "missingPropertyMode PRESERVE, its default".to_string(),
                },
            ));
        }
        // A file with its header and nothing else that runs has no
        // changesets, as Liquibase reads it; SQL with no changeset is not.
        let nothing = text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with("--"));
        if found.is_empty() && !nothing {
            set.problem(at(&file, 1, "no `--changeset author:id` line"))?;
            continue;
        }
        for c in found {
            if !c.for_postgres() || c.flag("ignore", false) {
                continue;
            }
            place += 1;
            match changeset_migration(&file, &c, &properties) {
                Ok((up, down, checksum)) => {
                    if c.selects() {
                        selected.push(format!("{file}:{} ({}:{})", c.line, c.author, c.id));
                    }
                    set.warnings.extend(c.runs_otherwise(&file));
                    let sql = c.sql_lines.join("\n");
                    let label_levels: Vec<String> = inherited_labels
                        .iter()
                        .cloned()
                        .chain(c.attribute("labels").filter(|l| !l.is_empty()))
                        .collect();
                    let id = ChangesetId {
                        file: logical.clone(),
                        id: c.id.clone(),
                        author: c.author.clone(),
                        md5sum: checksum_v9(&fill(&file, c.line, &sql, &properties).unwrap_or(sql)),
                        comments: c.comments.join(" "),
                        contexts: full_context(
                            inherited,
                            c.attribute("contextFilter")
                                .or_else(|| c.attribute("context")),
                        ),
                        labels: label_levels.join(","),
                        label_levels,
                        run_on_change: c.flag("runOnChange", false),
                        run_always: c.flag("runAlways", false),
                        valid_checksums: c.valid_checksums.clone(),
                    };
                    push_versioned(set, &file, format!("{place:04}"), c.id.clone(), up, down)?;
                    if let Some(m) = set.migrations.last_mut().filter(|m| m.up.file == file) {
                        m.checksum = checksum;
                    }
                    identify(set, &file, id);
                }
                Err(e) => set.problem(e)?,
            }
        }
    }
    if !selected.is_empty() {
        // What the project's own deploys give, for a step that gives none.
        set.liquibase_given = super::liquibase_conf::given(&spring, dir, names_master);
        // Where they leave some out, a step given none is refused instead
        // ([`ungiven`]).
        if ungiven(set).is_none() {
            set.warnings.push(format!(
            "{} {RUNS_EVERY} ({}{}); runbook runs every changeset, as Liquibase does when it is given no contexts or labels (the step's `contexts` and `label_filter` give them, as Liquibase's --contexts and --label-filter do)",
            selected.len(),
            selected[0],
            if selected.len() > 1 { ", …" } else { "" }
        ));
        }
    }
    if set.migrations.is_empty() && !set.tolerant {
        return Err(LoadError::Empty(dir.display().to_string()));
    }
    name_shared_ids(set);
    Ok(())
}

/// A changeset's whole context, as Liquibase writes it in `CONTEXTS`: its
/// includes' contexts, then its own, joined by ` AND `, each in
/// parentheses where it is more than a name.
fn full_context(inherited: &[String], own: Option<String>) -> String {
    inherited
        .iter()
        .cloned()
        .chain(own.filter(|c| !c.trim().is_empty()))
        .map(|c| {
            if c.contains([',', ' ']) {
                format!("({c})")
            } else {
                c
            }
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The migration just pushed for `file` is this changeset.
fn identify(set: &mut Set, file: &str, id: ChangesetId) {
    if let Some(m) = set.migrations.last_mut().filter(|m| m.up.file == file) {
        m.changeset = Some(id);
    }
}

/// Changesets are known by their ids; where two files use the same id
/// (many number their changesets 1, 2, … in each file), each of those is
/// known by its file too: `db.changelog-1.0:1`.
fn name_shared_ids(set: &mut Set) {
    let mut count: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for m in &set.migrations {
        *count.entry(m.name.clone()).or_default() += 1;
    }
    for m in &mut set.migrations {
        if count[&m.name] > 1 {
            let stem = m.up.file.strip_suffix(".sql").unwrap_or(&m.up.file);
            m.name = format!("{stem}:{}", m.name);
        }
    }
}

/// A changeset's up, its down, and the checksum of its SQL (its rollback
/// and comments left out, so that editing them does not make an applied
/// changeset read as changed).
fn changeset_migration(
    file: &str,
    c: &Changeset,
    properties: &[(String, String)],
) -> Result<(Script, Down, String), LoadError> {
    if let Some(with) = c.attribute("runWith")
        && !with.eq_ignore_ascii_case("jdbc")
    {
        return Err(at(
            file,
            c.line,
            format!("runWith:{with} runs the changeset in another program, which runbook does not"),
        ));
    }
    for key in ["endDelimiter", "rollbackEndDelimiter"] {
        if let Some(d) = c.attribute(key)
            && !(d.is_empty() || d == ";")
        {
            return Err(at(
                file,
                c.line,
                format!(
                    "{key}:{d}: runbook splits statements with PostgreSQL's parser, at `;`, and would not cut at `{d}`"
                ),
            ));
        }
    }
    let no_transaction = (!c.flag("runInTransaction", true)).then(|| NO_TRANSACTION.to_string());
    let body = c.body.join("\n");
    if crate::pg::statements::split(&body).is_empty()
        && c.sql_lines.iter().all(|l| l.trim().is_empty())
    {
        return Err(at(
            file,
            c.line,
            format!(
                "changeset {}:{} has no SQL; Liquibase refuses it",
                c.author, c.id
            ),
        ));
    }
    let up = Script {
        sql: fill(file, c.line + 1, &body, properties)?,
        file: file.to_string(),
        first_line: c.line + 1,
        no_transaction: no_transaction.clone(),
        written: None,
    };
    if let Some(e) = in_transaction(&up) {
        return Err(e);
    }
    let down = match c.rollback.first() {
        None => Down::Missing(format!(
            "{file}:{}: changeset {}:{} has no --rollback",
            c.line, c.author, c.id
        )),
        Some((first, _)) => {
            let joined: String = c
                .rollback
                .iter()
                .map(|(_, t)| t.as_str())
                .collect::<Vec<_>>()
                .join("\n");
            let lower = joined.trim().to_ascii_lowercase();
            if lower.starts_with("not required") || lower.starts_with("empty") {
                Down::Missing(format!(
                    "{file}:{first}: changeset {}:{}'s rollback is `{}`",
                    c.author,
                    c.id,
                    joined.trim()
                ))
            } else if p_reference(&joined) {
                return Err(at(
                    file,
                    *first,
                    "a rollback that runs another changeset's changes, which runbook does not look up",
                ));
            } else {
                // Each rollback line on its own line of the file, so that
                // an error names the right one.
                let mut text = String::new();
                let mut line = *first;
                for (n, t) in &c.rollback {
                    while line < *n {
                        text.push('\n');
                        line += 1;
                    }
                    text.push_str(t);
                }
                let down = Script {
                    sql: fill(file, *first, &text, properties)?,
                    file: file.to_string(),
                    first_line: *first,
                    no_transaction,
                    written: None,
                };
                if let Some(e) = in_transaction(&down) {
                    return Err(e);
                }
                Down::Script(down)
            }
        }
    };
    let checksum = crate::hash::sha256_hex(c.sql_lines.join("\n").trim().as_bytes());
    Ok((up, down, checksum))
}

fn p_reference(rollback: &str) -> bool {
    patterns().reference.is_match(rollback)
}

#[cfg(test)]
mod tests {
    use super::super::{Format, load, load_tolerant};
    use super::*;

    use super::super::temp_tree as dir;

    fn names(set: &Set) -> Vec<(String, String)> {
        set.migrations
            .iter()
            .map(|m| (m.version.clone(), m.name.clone()))
            .collect()
    }

    const TWO: &str = "--liquibase formatted sql\n\n--changeset ann:users\nCREATE TABLE users (id int);\n--rollback DROP TABLE users;\n\n--changeset \"Ann Lee\":email splitStatements:true\n--comment: the address\nALTER TABLE users ADD COLUMN email text;\n/* liquibase rollback\nALTER TABLE users\n  DROP COLUMN email;\n*/\n";

    #[test]
    fn contexts_and_labels_select_as_liquibase_selects() {
        let holds = |expr: &str, given: &[&str]| {
            expression_holds(expr, &|n| given.iter().any(|g| g.eq_ignore_ascii_case(n)))
        };
        assert_eq!(holds("dev, QA", &["qa"]), Ok(true));
        assert_eq!(holds("!test", &["prod"]), Ok(true));
        assert_eq!(holds("!test", &["test"]), Ok(false));
        assert_eq!(holds("prod and !eu", &["prod", "eu"]), Ok(false));
        assert_eq!(holds("(dev or qa) and not eu", &["qa"]), Ok(true));
        assert_eq!(holds("@prod", &["prod"]), Ok(true));
        assert!(holds("prod and", &["prod"]).is_err());
        assert!(holds("(prod", &["prod"]).is_err());
        assert!(holds("prod eu", &["prod"]).is_err());

        let c = |contexts: &str, labels: &str| ChangesetId {
            contexts: contexts.into(),
            labels: labels.into(),
            label_levels: vec![labels.into()],
            ..ChangesetId::default()
        };
        // Nothing given, or nothing on the changeset: it runs.
        assert_eq!(selected(&c("test", "v1"), None, None), Ok(true));
        assert_eq!(selected(&c("", ""), Some("prod"), Some("v2")), Ok(true));
        assert_eq!(selected(&c("test", ""), Some("prod"), None), Ok(false));
        assert_eq!(selected(&c("test,prod", ""), Some("prod"), None), Ok(true));
        assert_eq!(
            selected(&c("", "v1, beta"), None, Some("v1 and !beta")),
            Ok(false)
        );
        assert_eq!(selected(&c("", "v1"), None, Some("v1 and !beta")), Ok(true));
    }

    #[test]
    fn an_include_s_context_comes_before_each_changeset_s_as_liquibase_writes_it() {
        // CONTEXTS as Liquibase 4.28 wrote them for these changesets.
        let d = dir(&[
            (
                "master.yaml",
                "databaseChangeLog:\n  - include:\n      file: base.sql\n      relativeToChangelogFile: true\n  - include:\n      file: seed.sql\n      relativeToChangelogFile: true\n      context: \"test or dev\"\n",
            ),
            (
                "base.sql",
                "--liquibase formatted sql\n--changeset a:base\nCREATE TABLE base (id int);\n",
            ),
            (
                "seed.sql",
                "--liquibase formatted sql\n--changeset a:seed\nSELECT 1;\n--changeset a:seed2 context:eu\nSELECT 2;\n--changeset a:seed3 context:eu,us\nSELECT 3;\n--changeset a:seed4 context:\"eu and !us\"\nSELECT 4;\n",
            ),
        ]);
        let mut set = load(d.path(), None).unwrap();
        let contexts: Vec<&str> = set
            .migrations
            .iter()
            .map(|m| m.changeset.as_ref().unwrap().contexts.as_str())
            .collect();
        assert_eq!(
            contexts,
            [
                "",
                "(test or dev)",
                "(test or dev) AND eu",
                "(test or dev) AND (eu,us)",
                "(test or dev) AND (eu and !us)"
            ]
        );
        // `--contexts test`: what Liquibase ran, base and seed.
        select(&mut set, Some("test"), None).unwrap();
        assert_eq!(
            names(&set),
            [
                ("0001".into(), "base".into()),
                ("0002".into(), "seed".into())
            ]
        );

        // An include's labels: a level of their own, which the label filter
        // must match as it must match the changeset's (Liquibase 4.28:
        // `v3` ran l1 alone, `v2` and `v3 and v2` ran nothing).
        let d = dir(&[
            (
                "master.yaml",
                "databaseChangeLog:\n  - include:\n      file: l.sql\n      relativeToChangelogFile: true\n      labels: v3\n",
            ),
            (
                "l.sql",
                "--liquibase formatted sql\n--changeset a:l1\nSELECT 1;\n--changeset a:l2 labels:v2\nSELECT 2;\n",
            ),
        ]);
        let set = load(d.path(), None).unwrap();
        let labels: Vec<&str> = set
            .migrations
            .iter()
            .map(|m| m.changeset.as_ref().unwrap().labels.as_str())
            .collect();
        assert_eq!(labels, ["v3", "v3,v2"]);
        for (filter, ran) in [("v3", vec!["l1"]), ("v2", vec![]), ("v3 and v2", vec![])] {
            let mut set = load(d.path(), None).unwrap();
            select(&mut set, None, Some(filter)).unwrap();
            let names: Vec<&str> = set.migrations.iter().map(|m| m.name.as_str()).collect();
            assert_eq!(names, ran, "{filter}");
        }
    }

    /// Each changeset as Liquibase names it: `FILE::ID::AUTHOR`.
    fn keys(set: &Set) -> Vec<String> {
        set.migrations
            .iter()
            .map(|m| m.changeset.as_ref().expect("a changeset").key())
            .collect()
    }

    #[test]
    fn changesets_are_named_by_their_files_as_liquibase_names_them() {
        assert_eq!(
            normalize("classpath:/db/./x/../changelog\\a.sql"),
            "db/changelog/a.sql"
        );
        // A Spring application: from the classpath's root, whatever the
        // include says (`classpath:`, beside the master, all of a folder).
        let d = dir(&[
            (
                "src/main/resources/db/changelog/master.yaml",
                "databaseChangeLog:\n  - include:\n      file: classpath:db/changelog/a.sql\n  - include:\n      file: b.sql\n      relativeToChangelogFile: true\n  - includeAll:\n      path: more/\n      relativeToChangelogFile: true\n",
            ),
            ("src/main/resources/db/changelog/a.sql", TWO),
            (
                "src/main/resources/db/changelog/b.sql",
                "CREATE TABLE b (id int);\n",
            ),
            (
                "src/main/resources/db/changelog/more/c.sql",
                "--liquibase formatted sql\n--changeset cy:c context:prod labels:l1\n--comment: see\nSELECT ${x};\n--property name:x value:1\n",
            ),
        ]);
        let set = load(&d.path().join("src/main/resources/db/changelog"), None).unwrap();
        assert_eq!(
            keys(&set),
            [
                "db/changelog/a.sql::users::ann",
                "db/changelog/a.sql::email::Ann Lee",
                "db/changelog/b.sql::raw::includeAll",
                "db/changelog/more/c.sql::c::cy",
            ]
        );
        let c = set.migrations[3].changeset.as_ref().unwrap();
        assert_eq!(
            (c.comments.as_str(), c.contexts.as_str(), c.labels.as_str()),
            ("see", "prod", "l1")
        );
        // The checksum of the SQL with its property filled, as Liquibase
        // computes it; the comment line is not SQL.
        assert_eq!(c.md5sum, checksum_v9("SELECT 1;"));
        let email = set.migrations[1].changeset.as_ref().unwrap();
        assert_eq!(email.comments, "the address");
        assert_eq!(
            email.md5sum,
            checksum_v9("ALTER TABLE users ADD COLUMN email text;")
        );

        // Liquibase run from a project's root: the master's include from
        // there says where that is.
        let d = dir(&[
            (
                "db/changelog/master.xml",
                "<databaseChangeLog>\n  <include file=\"db/changelog/a.sql\"/>\n  <include file=\"b.sql\" relativeToChangelogFile=\"true\"/>\n</databaseChangeLog>\n",
            ),
            ("db/changelog/a.sql", TWO),
            ("db/changelog/b.sql", "CREATE TABLE b (id int);\n"),
        ]);
        let set = load(&d.path().join("db/changelog"), None).unwrap();
        assert_eq!(
            keys(&set)[2..],
            ["db/changelog/b.sql::raw::includeAll".to_string()]
        );
        // Relative includes only: from the directory runbook reads.
        let d = dir(&[
            (
                "master.yaml",
                "databaseChangeLog:\n  - include:\n      file: sub/a.sql\n      relativeToChangelogFile: true\n",
            ),
            ("sub/a.sql", TWO),
        ]);
        let set = load(d.path(), None).unwrap();
        assert_eq!(keys(&set)[0], "sub/a.sql::users::ann");
        assert!(
            set.liquibase_names.as_deref().is_some_and(
                |n| n.ends_with("(the migration directory, as when Liquibase runs there)")
            ),
            "{:?}",
            set.liquibase_names
        );

        // A team's liquibase.properties names the master as Liquibase is
        // given it: from there (or from its search path).
        for (properties, master) in [
            (
                "changeLogFile=db/changelog/master.yaml\n",
                "db/changelog/master.yaml",
            ),
            (
                "liquibase.command.changelogFile: changelog/master.yaml\nsearch-path: db, other\n",
                "changelog/master.yaml",
            ),
        ] {
            let d = dir(&[
                ("liquibase.properties", properties),
                (
                    "db/changelog/master.yaml",
                    "databaseChangeLog:\n  - include:\n      file: a.sql\n      relativeToChangelogFile: true\n",
                ),
                ("db/changelog/a.sql", TWO),
            ]);
            let set = load(&d.path().join("db/changelog"), None).unwrap();
            let folder = master.rsplit_once('/').unwrap().0;
            assert_eq!(keys(&set)[0], format!("{folder}/a.sql::users::ann"));
            assert!(
                set.liquibase_names
                    .as_deref()
                    .is_some_and(|n| n.contains(&format!("names the master {master}"))),
                "{:?}",
                set.liquibase_names
            );
        }
    }

    #[test]
    fn changesets_run_in_file_order_with_their_rollbacks() {
        let d = dir(&[("001.sql", TWO)]);
        let set = load(d.path(), None).unwrap();
        assert_eq!(set.format, Format::Liquibase);
        assert_eq!(
            names(&set),
            [
                ("0001".to_string(), "users".to_string()),
                ("0002".to_string(), "email".to_string())
            ]
        );
        let users = &set.migrations[0];
        assert_eq!(users.up.first_line, 4);
        assert!(users.up.sql.starts_with("CREATE TABLE users (id int);\n"));
        let down = users.down_script().unwrap();
        assert_eq!(
            (down.sql.as_str(), down.first_line),
            ("DROP TABLE users;", 5)
        );
        // The block's lines, joined as Liquibase joins them: with nothing
        // between them.
        let down = set.migrations[1].down_script().unwrap();
        assert_eq!(down.first_line, 11);
        assert_eq!(down.sql, "ALTER TABLE users  DROP COLUMN email;");
        // Its checksum is of its SQL: editing the rollback or the comment
        // does not make it another changeset.
        let edited = TWO
            .replace("the address", "e-mail")
            .replace("DROP TABLE users;", "DROP TABLE IF EXISTS users;");
        let d2 = dir(&[("001.sql", &edited)]);
        let again = load(d2.path(), None).unwrap();
        assert_eq!(set.migrations[0].checksum, again.migrations[0].checksum);
        assert_eq!(set.migrations[1].checksum, again.migrations[1].checksum);
    }

    #[test]
    fn a_rollback_blocks_lines_are_joined_as_liquibase_joins_them() {
        // What Liquibase runs breaks here, and so must the rehearsal's down.
        let d = dir(&[(
            "a.sql",
            "--liquibase formatted sql\n--changeset a:1\nCREATE TABLE users (id int);\n/* liquibase rollback\nDROP TABLE\nusers; -- gone\nSELECT 1;\n*/\n--rollback SELECT 2;\n",
        )]);
        let set = load(d.path(), None).unwrap();
        let down = set.migrations[0].down_script().unwrap();
        assert_eq!(
            (down.sql.as_str(), down.first_line),
            ("DROP TABLEusers; -- goneSELECT 1;\n\n\n\nSELECT 2;", 5)
        );
        assert_eq!(down.locate(down.sql.find("SELECT 2").unwrap()), "a.sql:9");
    }

    #[test]
    fn a_changelog_orders_its_includes_and_a_directory_without_one_runs_in_path_order() {
        let one = |id: &str| {
            format!(
                "--liquibase formatted sql\n--changeset a:{id}\nSELECT 1;\n--rollback SELECT 1;\n"
            )
        };
        let (a, b, c) = (one("a"), one("b"), one("c"));
        // As a Spring application has it: paths from the classpath's root.
        let spring = dir(&[
            (
                "resources/db/changelog/db.changelog-master.yaml",
                "databaseChangeLog:\n  - include:\n      file: db/changelog/db.changelog-2.2.sql\n  - include:\n      file: classpath:db/changelog/db.changelog-2.2.1.sql\n  - includeAll:\n      path: later/\n      relativeToChangelogFile: true\n",
            ),
            ("resources/db/changelog/db.changelog-2.2.1.sql", &b),
            ("resources/db/changelog/db.changelog-2.2.sql", &a),
            ("resources/db/changelog/later/x.sql", &c),
            ("resources/db/changelog/stray.sql", &c),
        ]);
        let set = load(&spring.path().join("resources/db/changelog"), None).unwrap();
        let files: Vec<&str> = set.migrations.iter().map(|m| m.up.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "db.changelog-2.2.sql",
                "db.changelog-2.2.1.sql",
                "later/x.sql"
            ]
        );
        assert!(
            set.warnings
                .iter()
                .any(|w| w.contains("stray.sql") && w.contains("do not run")),
            "{:?}",
            set.warnings
        );
        // XML, with a sub-changelog beside the master.
        let xml = dir(&[
            (
                "master.xml",
                "<?xml version=\"1.0\"?>\n<databaseChangeLog xmlns=\"http://www.liquibase.org/xml/ns/dbchangelog\">\n  <!-- <include file=\"c.sql\"/> -->\n  <include file=\"sub.xml\" relativeToChangelogFile=\"true\"/>\n  <include file=\"a.sql\" relativeToChangelogFile=\"true\"/>\n</databaseChangeLog>\n",
            ),
            (
                "sub.xml",
                "<databaseChangeLog>\n  <include file=\"b.sql\" relativeToChangelogFile=\"true\"/>\n</databaseChangeLog>\n",
            ),
            ("a.sql", &a),
            ("b.sql", &b),
        ]);
        let set = load(xml.path(), None).unwrap();
        let files: Vec<&str> = set.migrations.iter().map(|m| m.up.file.as_str()).collect();
        assert_eq!(files, ["b.sql", "a.sql"]);
        // No changelog: as includeAll, by path; 2.2.1 sorts before 2.2.
        let plain = dir(&[("2.2.sql", &a), ("2.2.1.sql", &b)]);
        let set = load(plain.path(), None).unwrap();
        let files: Vec<&str> = set.migrations.iter().map(|m| m.up.file.as_str()).collect();
        assert_eq!(files, ["2.2.1.sql", "2.2.sql"]);
    }

    /// A library module's changelog in a repository of two applications
    /// that configure Liquibase: which one deploys it is not known, so
    /// neither is read, and the load says so.
    #[test]
    fn a_changelog_several_applications_may_deploy_reads_neither_and_says_so() {
        let repo = dir(&[
            (".git/HEAD", "ref: refs/heads/main\n"),
            (
                "orders/src/main/resources/application.yml",
                "spring:\n  liquibase:\n    contexts: prod\n",
            ),
            (
                "billing/src/main/resources/application.properties",
                "spring.liquibase.default-schema=billing\n",
            ),
            (
                "schema/src/main/resources/db/changelog/changes.sql",
                "--liquibase formatted sql\n--changeset a:1 context:test\nSELECT 1;\n",
            ),
        ]);
        let set = load(
            &repo.path().join("schema/src/main/resources/db/changelog"),
            None,
        )
        .unwrap();
        assert!(
            set.warnings.iter().any(|w| w.starts_with(
                "several modules of this repository configure an application's Liquibase ("
            )),
            "{:?}",
            set.warnings
        );
        assert!(set.liquibase_given.is_empty() && set.liquibase_place.default.is_none());
    }

    #[test]
    fn ids_that_several_files_use_are_known_with_their_file() {
        let one =
            "--liquibase formatted sql\n--changeset a:1\nSELECT 1;\n--changeset a:2\nSELECT 2;\n";
        let two = "--liquibase formatted sql\n--changeset a:1\nSELECT 3;\n";
        let d = dir(&[
            ("v1.sql", one),
            ("v2.sql", two),
            ("v3.sql", "CREATE TABLE raw (id int);\n"),
        ]);
        let set = load(d.path(), None).unwrap();
        let got: Vec<String> = set.migrations.iter().map(|m| m.name.clone()).collect();
        assert_eq!(got, ["v1:1", "2", "v2:1", "v3"]);
        // A file without the header is one changeset with no rollback.
        assert!(
            set.migrations[3]
                .down_missing()
                .unwrap()
                .contains("not formatted SQL")
        );
        assert!(
            set.migrations[1]
                .down_missing()
                .unwrap()
                .contains("has no --rollback")
        );
    }

    #[test]
    fn what_liquibase_leaves_out_is_left_out_and_what_it_runs_otherwise_is_said() {
        let text = "--liquibase formatted sql\n--changeset a:h2 dbms:h2,hsqldb\n-- precondition: none, a person's comment\nSELECT 1;\n--changeset a:pg dbms:postgresql,h2\nSELECT 2;\n--changeset a:not-h2 dbms:!h2\nSELECT 3;\n--changeset a:off ignore:true\nSELECT 4;\n--changeset a:test context:test labels:seed\nSELECT 5;\n--rollback not required\n--changeset a:always runAlways:true runInTransaction:false\nSELECT 6;\n--rollback SELECT 6;\n";
        let d = dir(&[("x.sql", text)]);
        let set = load(d.path(), None).unwrap();
        let got: Vec<String> = set.migrations.iter().map(|m| m.name.clone()).collect();
        assert_eq!(got, ["pg", "not-h2", "test", "always"]);
        assert!(
            set.migrations[2]
                .down_missing()
                .unwrap()
                .contains("not required")
        );
        let always = &set.migrations[3];
        assert_eq!(always.up.no_transaction.as_deref(), Some(NO_TRANSACTION));
        assert_eq!(
            always.down_script().unwrap().no_transaction.as_deref(),
            Some(NO_TRANSACTION)
        );
        let warnings = set.warnings.join("\n");
        assert!(
            warnings.contains("x.sql:11 (a:test)") && warnings.contains("no contexts"),
            "{warnings}"
        );
        assert!(set.migrations[3].changeset.as_ref().unwrap().run_always);
        assert!(!warnings.contains("runAlways"), "{warnings}");
    }

    #[test]
    fn properties_are_filled_from_the_file_and_the_changelog_and_one_with_no_value_is_kept_as_liquibase_keeps_it()
     {
        let d = dir(&[
            (
                "master.yaml",
                "databaseChangeLog:\n  - property:\n      name: schema\n      value: app\n  - include:\n      file: a.sql\n      relativeToChangelogFile: true\n",
            ),
            (
                "a.sql",
                "--liquibase formatted sql\n--property name:owner value:ops\n--changeset a:1\nCREATE TABLE ${schema}.t (id int);\nALTER TABLE ${schema}.t OWNER TO ${owner};\n--rollback DROP TABLE ${schema}.t;\n",
            ),
        ]);
        let set = load(d.path(), None).unwrap();
        let m = &set.migrations[0];
        assert!(
            m.up.sql.contains("CREATE TABLE app.t") && m.up.sql.contains("OWNER TO ops"),
            "{}",
            m.up.sql
        );
        assert_eq!(m.down_script().unwrap().sql, "DROP TABLE app.t;");
        // A value for each database: PostgreSQL's is the one that counts.
        let d = dir(&[
            (
                "master.xml",
                "<databaseChangeLog>\n  <property name=\"uuid\" value=\"uuid\" dbms=\"postgresql\"/>\n  <property name=\"uuid\" value=\"RAW(32)\" dbms=\"oracle\"/>\n  <include file=\"a.sql\" relativeToChangelogFile=\"true\"/>\n</databaseChangeLog>\n",
            ),
            (
                "a.sql",
                "--liquibase formatted sql\n--property name:kind value:text dbms:postgresql\n--property name:kind value:clob dbms:h2\n--changeset a:1\nCREATE TABLE t (id ${uuid}, k ${kind});\n",
            ),
        ]);
        let set = load(d.path(), None).unwrap();
        assert_eq!(
            set.migrations[0].up.sql.trim(),
            "CREATE TABLE t (id uuid, k text);"
        );
        let d = dir(&[(
            "a.sql",
            "--liquibase formatted sql\n--changeset a:1\nSELECT 1;\n\nSELECT '${tenant}';\n",
        )]);
        // No value anywhere: kept as written, as Liquibase keeps it by
        // default, with a warning; one that names a secret is refused.
        let set = load(d.path(), None).unwrap();
        assert!(set.migrations[0].up.sql.contains("SELECT '${tenant}';"));
        let warnings = set.warnings.join("\n");
        assert!(
            warnings.contains("a.sql: `${tenant}` has no value")
                && warnings.contains("missingPropertyMode PRESERVE, its default"),
            "{warnings}"
        );
        let d = dir(&[(
            "a.sql",
            "--liquibase formatted sql\n--changeset a:1\nSELECT 1;\n\nSELECT '${tenant_db_password}';\n",
        )]);
        let e = load(d.path(), None).unwrap_err().to_string();
        assert!(
            e.starts_with("a.sql:5: `${tenant_db_password}` is a changelog property"),
            "{e}"
        );
        let d = dir(&[(
            "a.sql",
            "--liquibase formatted sql\n--property name:app_password value:hunter2\n--changeset a:1\nCREATE ROLE app LOGIN PASSWORD '${app_password}';\n",
        )]);
        let e = load(d.path(), None).unwrap_err().to_string();
        assert!(
            e.starts_with("a.sql:4: `${app_password}` takes its value from a changelog, but its name says it is a secret"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn what_runbook_cannot_run_as_liquibase_does_is_refused_with_its_line() {
        let refused = |body: &str| -> String {
            let d = dir(&[("a.sql", &format!("--liquibase formatted sql\n{body}"))]);
            load(d.path(), None).unwrap_err().to_string()
        };
        let cases = [
            (
                "--changeset a:1\n--preconditions onFail:MARK_RAN\n--precondition-sql-check expectedResult:0 SELECT count(*) FROM t\nSELECT 1;\n",
                "a.sql:3: a precondition",
            ),
            (
                "--changeset a:1 endDelimiter:/\nSELECT 1\n/\n",
                "a.sql:2: endDelimiter:/",
            ),
            (
                "--changeset a:1 runWith:psql\n\\set x 1\n",
                "a.sql:2: runWith:psql",
            ),
            (
                "--changeset a:1\nSELECT 1;\n--rollback changesetId:0 changesetAuthor:a\n",
                "a.sql:4: a rollback that runs another changeset's changes",
            ),
            (
                "--changeset nobody\nSELECT 1;\n",
                "a.sql:2: expected `--changeset author:id`",
            ),
            (
                "--changeset a:1\nSELECT 1;\n--changeset a:1\nSELECT 2;\n",
                "a.sql:4: changeset a:1 is also at line 2",
            ),
            (
                "--changeset a:1\n--comment: nothing\n",
                "a.sql:2: changeset a:1 has no SQL",
            ),
            (
                "--changeset a:1\nSELECT 1;\n/* liquibase rollback\nSELECT 2;\n",
                "a.sql:4: this rollback comment is not closed",
            ),
            (
                "--changeset a:1\nCREATE TABLE t (id int);\nCREATE INDEX CONCURRENTLY i ON t (id);\n",
                "a.sql:4: Liquibase runs this changeset in a transaction; `CREATE INDEX",
            ),
        ];
        let cases = cases.into_iter().chain([(
            "--changeset a:1\nCREATE TYPE mood AS ENUM ('ok');\nALTER TYPE mood ADD VALUE 'sad';\nSELECT 'sad'::mood;\n",
            "a.sql:4: Liquibase runs this changeset in a transaction; `ALTER TYPE ... ADD VALUE` cannot run in one (statement 2 adds",
        )]);
        for (body, want) in cases {
            let got = refused(body);
            assert!(got.starts_with(want), "{body:?}: {got}");
        }
        // A changeset inside a changelog, and two changelogs that do not
        // say which is the master.
        let d = dir(&[(
            "m.xml",
            "<databaseChangeLog>\n  <changeSet id=\"1\" author=\"a\"><sql>SELECT 1</sql></changeSet>\n</databaseChangeLog>\n",
        )]);
        let e = load(d.path(), None).unwrap_err().to_string();
        assert!(
            e.starts_with("m.xml:2: a changeset written in the changelog itself"),
            "{e}"
        );
        let d = dir(&[
            (
                "a.yaml",
                "databaseChangeLog:\n  - include:\n      file: x.sql\n      relativeToChangelogFile: true\n",
            ),
            ("b.yaml", "databaseChangeLog: []\n"),
            (
                "x.sql",
                "--liquibase formatted sql\n--changeset a:1\nSELECT 1;\n",
            ),
        ]);
        let e = load(d.path(), None).unwrap_err().to_string();
        assert!(e.contains("a.yaml, b.yaml: are changelogs"), "{e}");
        // For lint, a refused file is a warning and the rest loads.
        let d = dir(&[
            (
                "a.sql",
                "--liquibase formatted sql\n--changeset a:1 endDelimiter:GO\nSELECT 1\nGO\n",
            ),
            (
                "b.sql",
                "--liquibase formatted sql\n--changeset a:2\nSELECT 2;\n",
            ),
        ]);
        let set = load_tolerant(d.path()).unwrap();
        assert_eq!(set.migrations.len(), 1);
        assert!(
            set.warnings[0].starts_with("a.sql:2: endDelimiter:GO"),
            "{:?}",
            set.warnings
        );
    }

    #[test]
    fn detection_needs_the_header_or_a_changelog() {
        assert!(formatted(
            "\u{feff}\n  -- Liquibase Formatted SQL\n--changeset a:1\n"
        ));
        assert!(!formatted("-- a plain script\n--liquibase formatted sql\n"));
        let d = dir(&[("001_init.sql", "CREATE TABLE t (id int);\n")]);
        assert!(!present(d.path()));
        let d = dir(&[(
            "db.changelog-master.yaml",
            "databaseChangeLog:\n  - includeAll:\n      path: changes/\n",
        )]);
        assert!(present(d.path()));
    }
}
