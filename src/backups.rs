//! Backups on disk: the manifest a `backup` step writes beside its dump,
//! hashing, reading an archive's table of contents, and the checks that
//! `restore` and `runbook backups verify` run before trusting a backup.
//!
//! A backup is a directory: the dump (`dump/` for the directory format,
//! `dump.pgdump` or `dump.sql` otherwise) and `manifest.json`. The manifest
//! is written last, atomically, so a directory without one is never a
//! backup; while the dump is written, `.incomplete` marks it as such.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{BackupFormat, Verify};

pub const MANIFEST: &str = "manifest.json";
pub const INCOMPLETE: &str = ".incomplete";
pub const MANIFEST_VERSION: &str = "runbook-backup/v1";

/// Where the dump sits inside a backup directory.
pub fn dump_name(format: BackupFormat) -> &'static str {
    match format {
        BackupFormat::Directory => "dump",
        BackupFormat::Custom => "dump.pgdump",
        BackupFormat::Plain => "dump.sql",
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub manifest_version: String,
    pub format: BackupFormat,
    /// The dump, relative to the backup directory.
    pub dump: String,
    pub created_at: String,
    /// From the start of pg_dump to the manifest, verification excluded.
    pub duration_ms: u64,
    pub runbook: Option<String>,
    pub runbook_version: Option<String>,
    pub run_id: Option<String>,
    pub step: Option<String>,
    pub database: String,
    pub server_version: String,
    pub pg_dump_version: String,
    /// The exported snapshot the dump and the row counts were taken in.
    pub snapshot: Option<String>,
    pub options: Options,
    /// Every table whose definition or data the dump holds, with its exact
    /// row count in the dump's snapshot (`None` for a schema-only backup).
    pub tables: Vec<Table>,
    /// Large objects in the dump's snapshot, when the dump includes them.
    pub large_objects: Option<i64>,
    pub total_bytes: u64,
    pub files: Vec<FileHash>,
    pub verification: Verification,
    /// The schema of what the backup covers, from the catalog in the dump's
    /// snapshot: what a restore is compared with. None for a data-only
    /// backup, one with exclusions, or one taken before runbook recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<SchemaRecord>,
}

/// A backup's schema: the objects it covers, and the names of every other
/// object there was, so that a restore can tell what was created after.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SchemaRecord {
    /// `whole` (every object of the database), `tables` (the dumped tables
    /// and what belongs to them) or `schemas` (every object in them).
    pub covers: String,
    /// sha256 over the covered objects, as `runbook schema snapshot` hashes.
    pub hash: String,
    pub objects: std::collections::BTreeMap<String, serde_json::Value>,
    /// The keys of the objects outside the backup, when it was taken.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outside: Vec<String>,
    /// What the runbook that took it read ([`crate::snapshot::READS`]): a
    /// restore compares on that, and clears only what it would have seen.
    #[serde(default)]
    pub reads: u32,
    /// The backed-up database's owner, which `objects` key owners against:
    /// a restore into a database another role owns compares as if this one
    /// owned it. Manifests written before it was recorded compare against
    /// the target's own owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_owner: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Options {
    pub jobs: Option<u32>,
    pub compress: Option<u32>,
    pub schema_only: bool,
    pub data_only: bool,
    pub tables: Vec<String>,
    pub exclude_tables: Vec<String>,
    pub schemas: Vec<String>,
    pub exclude_schemas: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Table {
    /// The table's oid when dumped: how the archive's table of contents names it.
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub rows: Option<i64>,
}

impl Table {
    pub fn qualified(&self) -> String {
        format!(
            "{}.{}",
            crate::pg::quote::ident(&self.schema),
            crate::pg::quote::ident(&self.name)
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileHash {
    /// Relative to the backup directory, `/`-separated.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Verification {
    pub method: Verify,
    /// `passed`, `failed` or `skipped`.
    pub status: String,
    pub detail: Option<String>,
    pub duration_ms: u64,
}

/// Why a backup cannot be trusted.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BackupError {
    #[error("{dir} is not a backup: it has no {MANIFEST}{}", if *.incomplete { " and is marked incomplete (its dump never finished)" } else { "" })]
    NoManifest { dir: String, incomplete: bool },
    #[error("failed to read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path} is missing")]
    MissingFile { path: String },
    #[error("{path} was changed: {what}")]
    Changed { path: String, what: String },
    #[error("{path} is not in the manifest")]
    Unexpected { path: String },
    #[error("the backup failed its verification when it was taken: {detail}")]
    FailedVerification { detail: String },
    #[error("the archive cannot be read: {reason}")]
    BadArchive { reason: String },
    #[error("the archive's table of contents lacks {} table(s) of the manifest: {}", .missing.len(), .missing.join(", "))]
    Uncovered { missing: Vec<String> },
}

impl BackupError {
    pub fn hint(&self) -> &'static str {
        match self {
            Self::NoManifest { .. } => {
                "point at a directory a `backup` step wrote; a directory without manifest.json is a failed or partial backup and must not be restored"
            }
            Self::MissingFile { .. } | Self::Changed { .. } | Self::Unexpected { .. } => {
                "the backup is corrupt or was modified after it was taken; restore from another backup"
            }
            Self::FailedVerification { .. } => "take a new backup",
            Self::BadArchive { .. } | Self::Uncovered { .. } => {
                "the dump is damaged or incomplete; restore from another backup"
            }
            Self::Unreadable { .. } => "check the path and its permissions",
        }
    }
}

fn unreadable(path: &Path, e: &std::io::Error) -> BackupError {
    BackupError::Unreadable {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Read a backup's manifest.
pub fn load(dir: &Path) -> Result<Manifest, BackupError> {
    let path = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !dir.is_dir() {
                return Err(unreadable(dir, &e));
            }
            return Err(BackupError::NoManifest {
                dir: dir.display().to_string(),
                incomplete: dir.join(INCOMPLETE).exists(),
            });
        }
        Err(e) => return Err(unreadable(&path, &e)),
    };
    serde_json::from_str(&text).map_err(|e| BackupError::Unreadable {
        path: path.display().to_string(),
        reason: format!("not a runbook backup manifest: {e}"),
    })
}

/// The files of the dump, relative to `dir`, sorted.
fn dump_files(dir: &Path, dump: &str) -> Result<Vec<String>, BackupError> {
    let root = dir.join(dump);
    let meta = std::fs::metadata(&root).map_err(|_| BackupError::MissingFile {
        path: root.display().to_string(),
    })?;
    if meta.is_file() {
        return Ok(vec![dump.to_string()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| unreadable(&d, &e))? {
            let e = e.map_err(|e| unreadable(&d, &e))?;
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap_or(&p);
                out.push(
                    rel.components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/"),
                );
            }
        }
    }
    out.sort();
    Ok(out)
}

/// sha256 and size of one file.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        h.update(&buf[..n]);
    }
    Ok((bytes, crate::hash::hex(&h.finalize())))
}

/// Hash files on up to four threads (a directory dump has a file per table).
fn hash_all(dir: &Path, files: &[String]) -> Result<Vec<FileHash>, BackupError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 4)
        .min(files.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<FileHash, BackupError>>>> =
        Mutex::new(files.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(rel) = files.get(i) else { break };
                    let path = dir.join(rel);
                    let r = hash_file(&path)
                        .map(|(bytes, sha256)| FileHash {
                            path: rel.clone(),
                            bytes,
                            sha256,
                        })
                        .map_err(|e| unreadable(&path, &e));
                    results.lock().expect("no panics while hashing")[i] = Some(r);
                }
            });
        }
    });
    results
        .into_inner()
        .expect("no panics while hashing")
        .into_iter()
        .map(|r| r.expect("every file hashed"))
        .collect()
}

/// Hash every file of a fresh dump.
pub fn hash_dump(dir: &Path, dump: &str) -> Result<Vec<FileHash>, BackupError> {
    let files = dump_files(dir, dump)?;
    hash_all(dir, &files)
}

/// Re-hash the dump and compare with the manifest: every file present,
/// unchanged, and nothing added.
pub fn check_files(dir: &Path, m: &Manifest) -> Result<(), BackupError> {
    let on_disk = dump_files(dir, &m.dump)?;
    for f in &m.files {
        let path = dir.join(&f.path);
        let Ok(meta) = std::fs::metadata(&path) else {
            return Err(BackupError::MissingFile {
                path: path.display().to_string(),
            });
        };
        if meta.len() != f.bytes {
            return Err(BackupError::Changed {
                path: path.display().to_string(),
                what: format!("{} bytes, the manifest says {}", meta.len(), f.bytes),
            });
        }
    }
    if let Some(extra) = on_disk
        .iter()
        .find(|p| !m.files.iter().any(|f| &f.path == *p))
    {
        return Err(BackupError::Unexpected {
            path: dir.join(extra).display().to_string(),
        });
    }
    let names: Vec<String> = m.files.iter().map(|f| f.path.clone()).collect();
    for (now, f) in hash_all(dir, &names)?.iter().zip(&m.files) {
        if now.sha256 != f.sha256 {
            return Err(BackupError::Changed {
                path: dir.join(&f.path).display().to_string(),
                what: format!("sha256 is {}, the manifest says {}", now.sha256, f.sha256),
            });
        }
    }
    Ok(())
}

/// The sha256 of the manifest file itself (`steps.<id>.sha256`).
pub fn manifest_sha256(dir: &Path) -> std::io::Result<String> {
    hash_file(&dir.join(MANIFEST)).map(|(_, h)| h)
}

/// Write the manifest atomically: a reader sees the whole file or none.
pub fn write_manifest(dir: &Path, m: &Manifest) -> std::io::Result<()> {
    let mut text = serde_json::to_string_pretty(m).expect("manifests serialize");
    text.push('\n');
    crate::fsutil::write_atomic(&dir.join(MANIFEST), text.as_bytes())
}

/// One entry of an archive's table of contents.
#[derive(Debug, Clone, PartialEq)]
pub struct TocEntry {
    /// The entry's dump id: how pg_restore's `--verbose` lines name it
    /// (`finished item 3365 TABLE DATA ...`). None for a plain dump.
    pub id: Option<u32>,
    /// `TABLE`, `TABLE DATA`, `SEQUENCE SET`, `BLOBS`...
    pub desc: String,
    pub oid: Option<u32>,
    pub schema: String,
    pub name: String,
}

impl TocEntry {
    /// Whether this entry is about `t`: by oid where the entry has one,
    /// else by schema and name.
    pub fn is_of(&self, t: &Table) -> bool {
        match self.oid {
            Some(oid) if oid != 0 => oid == t.oid,
            _ => self.schema == t.schema && self.name == t.name,
        }
    }
}

const DESCS: &[&str] = &[
    "TABLE DATA",
    "TABLE",
    "SEQUENCE SET",
    "BLOBS",
    "LARGE OBJECTS",
    "BLOB",
];

/// Parse `pg_restore --list` output:
/// `3348; 0 16385 TABLE DATA public orders owner`.
pub fn parse_toc(list: &str) -> Vec<TocEntry> {
    list.lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| {
            let (id, rest) = l.split_once("; ")?;
            let mut words = rest.splitn(3, ' ');
            let _table_oid = words.next()?;
            let oid = words.next()?.parse().ok();
            let rest = words.next()?;
            let desc = DESCS.iter().find(|d| {
                rest.strip_prefix(*d)
                    .is_some_and(|r| r.is_empty() || r.starts_with(' '))
            })?;
            let mut parts = rest[desc.len()..].trim_start().splitn(3, ' ');
            Some(TocEntry {
                id: id.trim().parse().ok(),
                desc: (*desc).to_string(),
                oid,
                schema: parts.next().unwrap_or_default().to_string(),
                name: parts.next().unwrap_or_default().to_string(),
            })
        })
        .collect()
}

/// The table of contents of a plain dump, from the comment pg_dump writes
/// above each object: `-- Data for Name: orders; Type: TABLE DATA; Schema: public; ...`.
pub fn plain_toc(file: &Path) -> Result<Vec<TocEntry>, BackupError> {
    use std::io::BufRead;
    let f = std::fs::File::open(file).map_err(|e| unreadable(file, &e))?;
    let mut out = Vec::new();
    for line in std::io::BufReader::new(f).split(b'\n') {
        let line = line.map_err(|e| unreadable(file, &e))?;
        let Some(rest) = line
            .strip_prefix(b"-- Data for Name: ")
            .or_else(|| line.strip_prefix(b"-- Name: "))
        else {
            continue;
        };
        let rest = String::from_utf8_lossy(rest);
        let mut name = None;
        let mut desc = None;
        let mut schema = None;
        for (i, part) in rest.split("; ").enumerate() {
            if i == 0 {
                name = Some(part.to_string());
            } else if let Some(t) = part.strip_prefix("Type: ") {
                desc = Some(t.to_string());
            } else if let Some(s) = part.strip_prefix("Schema: ") {
                schema = Some(s.to_string());
            }
        }
        if let (Some(name), Some(desc), Some(schema)) = (name, desc, schema)
            && (desc == "TABLE" || desc == "TABLE DATA")
        {
            out.push(TocEntry {
                id: None,
                desc,
                oid: None,
                schema,
                name,
            });
        }
    }
    Ok(out)
}

/// Run `pg_restore --list` on an archive.
pub fn archive_toc(pg_restore: &Path, dump: &Path) -> Result<Vec<TocEntry>, BackupError> {
    archive_list(pg_restore, dump).map(|list| parse_toc(&list))
}

/// Whether a dump creates the `public` schema. pg_dump does when the
/// schema is chosen with `-n` (`schemas: [public]`), and not in a
/// whole-database dump, which takes it as there. A database made from
/// template0 has it already, empty, and such a restore failed on
/// `schema "public" already exists`. `pg_restore` reads an archive; without
/// it the dump is plain SQL, whose schemas come before any data.
pub fn creates_public(pg_restore: Option<&Path>, dump: &Path) -> Result<bool, BackupError> {
    if let Some(p) = pg_restore {
        // `215; 2615 2200 SCHEMA - public pg_database_owner`
        return Ok(archive_list(p, dump)?.lines().any(|l| {
            l.split_once("; ").is_some_and(|(_, rest)| {
                let words: Vec<&str> = rest.split(' ').collect();
                words.get(2..5) == Some(&["SCHEMA", "-", "public"][..])
            })
        }));
    }
    use std::io::BufRead;
    let f = std::fs::File::open(dump).map_err(|e| unreadable(dump, &e))?;
    for line in std::io::BufReader::new(f).split(b'\n') {
        let line = line.map_err(|e| unreadable(dump, &e))?;
        if line == b"CREATE SCHEMA public;" {
            return Ok(true);
        }
        if line.starts_with(b"-- Data for Name: ") || line.starts_with(b"COPY ") {
            break;
        }
    }
    Ok(false)
}

/// `pg_restore --list` of an archive, as it prints it.
pub fn archive_list(pg_restore: &Path, dump: &Path) -> Result<String, BackupError> {
    let out = Command::new(pg_restore)
        .arg("--list")
        .arg(dump)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| BackupError::BadArchive {
            reason: format!("failed to run {}: {e}", pg_restore.display()),
        })?;
    if !out.status.success() {
        return Err(BackupError::BadArchive {
            reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The table of contents of any backup's dump.
pub fn toc(pg_restore: &Path, dir: &Path, m: &Manifest) -> Result<Vec<TocEntry>, BackupError> {
    let dump = dir.join(&m.dump);
    match m.format {
        BackupFormat::Plain => plain_toc(&dump),
        _ => archive_toc(pg_restore, &dump),
    }
}

/// Tables of the manifest the table of contents does not hold: their data,
/// or their definition for a schema-only backup.
pub fn uncovered(m: &Manifest, toc: &[TocEntry]) -> Vec<String> {
    let desc = if m.options.schema_only {
        "TABLE"
    } else {
        "TABLE DATA"
    };
    m.tables
        .iter()
        .filter(|t| !toc.iter().any(|e| e.desc == desc && e.is_of(t)))
        .map(|t| format!("{}.{}", t.schema, t.name))
        .collect()
}

/// Everything `runbook backups verify` checks: the manifest, every hash,
/// and that the archive reads and covers every table.
pub fn verify(dir: &Path, pg_restore: &Path) -> Result<Manifest, BackupError> {
    let m = load(dir)?;
    if m.verification.status == "failed" {
        return Err(BackupError::FailedVerification {
            detail: m.verification.detail.clone().unwrap_or_default(),
        });
    }
    check_files(dir, &m)?;
    let toc = toc(pg_restore, dir, &m)?;
    let missing = uncovered(&m, &toc);
    if !missing.is_empty() {
        return Err(BackupError::Uncovered { missing });
    }
    Ok(m)
}

/// A backup found by `runbook backups list`.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub path: PathBuf,
    /// `ok`, `failed_verification`, `incomplete` or `unreadable`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Manifest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Backups under `root`, newest first: every directory holding a manifest,
/// a dump or an `.incomplete` marker, up to four levels down.
pub fn list(root: &Path) -> Result<Vec<Listed>, BackupError> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<Listed>) {
        let has_manifest = dir.join(MANIFEST).is_file();
        let has_dump = [
            BackupFormat::Directory,
            BackupFormat::Custom,
            BackupFormat::Plain,
        ]
        .iter()
        .any(|f| dir.join(dump_name(*f)).exists());
        if has_manifest || has_dump || dir.join(INCOMPLETE).exists() {
            let (state, manifest, problem) = match load(dir) {
                Ok(m) if m.verification.status == "failed" => {
                    let p = m.verification.detail.clone();
                    ("failed_verification", Some(m), p)
                }
                Ok(m) => ("ok", Some(m), None),
                Err(e @ BackupError::NoManifest { .. }) => {
                    ("incomplete", None, Some(e.to_string()))
                }
                Err(e) => ("unreadable", None, Some(e.to_string())),
            };
            out.push(Listed {
                path: dir.to_path_buf(),
                state: state.into(),
                manifest,
                problem,
            });
            return;
        }
        if depth == 0 {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut dirs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for d in dirs {
            walk(&d, depth - 1, out);
        }
    }
    if !root.is_dir() {
        return Err(BackupError::Unreadable {
            path: root.display().to_string(),
            reason: "not a directory".into(),
        });
    }
    let mut out = Vec::new();
    walk(root, 4, &mut out);
    out.sort_by(|a, b| {
        let t = |l: &Listed| l.manifest.as_ref().map(|m| m.created_at.clone());
        t(b).cmp(&t(a)).then(a.path.cmp(&b.path))
    });
    Ok(out)
}

/// Backups of `runbook` beside `keep_dir` (in its parent directory) beyond
/// the newest `keep`, oldest first. `keep_dir` itself is never among them.
pub fn prunable(
    keep_dir: &Path,
    runbook: &str,
    keep: Option<usize>,
    keep_for: Option<std::time::Duration>,
) -> Vec<PathBuf> {
    let Some(parent) = keep_dir.parent() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut ours: Vec<(String, PathBuf)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && p != keep_dir)
        .filter_map(|p| {
            let m = load(&p).ok()?;
            (m.runbook.as_deref() == Some(runbook)).then_some((m.created_at, p))
        })
        .collect();
    ours.sort();
    // The new backup counts as one of the kept.
    let excess = keep.map_or(0, |k| ours.len().saturating_sub(k.saturating_sub(1)));
    // Older than `keep_for`: a time that does not parse is never taken as old.
    let cutoff = keep_for.and_then(|d| std::time::SystemTime::now().checked_sub(d));
    let too_old = |created: &str| {
        cutoff.is_some_and(|c| humantime::parse_rfc3339_weak(created).is_ok_and(|t| t < c))
    };
    ours.into_iter()
        .enumerate()
        .filter(|(i, (created, _))| *i < excess || too_old(created))
        .map(|(_, (_, p))| p)
        .collect()
}

/// A psql/pg_dump name pattern (`public.orders`, `*.log_*`, `"Mixed"`) as
/// anchored regular expressions for the schema (when given) and the name,
/// following psql's rules: unquoted letters fold to lower case, `*` and `?`
/// are wildcards, `.` separates schema from name, `$` is literal, and inside
/// double quotes every character is literal.
pub fn pattern_regex(pattern: &str) -> (Option<String>, String) {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        let cur = parts.last_mut().expect("one part at least");
        if c == '"' {
            if quoted && chars.peek() == Some(&'"') {
                chars.next();
                cur.push('"');
            } else {
                quoted = !quoted;
            }
        } else if !quoted && c == '.' {
            parts.push(String::new());
        } else if !quoted && c == '*' {
            cur.push_str(".*");
        } else if !quoted && c == '?' {
            cur.push('.');
        } else if !quoted && c.is_uppercase() {
            cur.extend(c.to_lowercase());
        } else if c == '$' || (quoted && "|*+?()[]{}.^\\".contains(c)) {
            cur.push('\\');
            cur.push(c);
        } else {
            cur.push(c);
        }
    }
    let anchor = |s: &str| format!("^({s})$");
    let name = anchor(parts.last().expect("one part at least"));
    let schema = (parts.len() > 1).then(|| anchor(&parts[parts.len() - 2]));
    (schema, name)
}

/// A backup holds production data: it must not land in a git working tree
/// where `git add .` would commit it. Returns the working tree's root when
/// `dir` is inside one and git does not ignore it. Without git, or outside
/// a working tree, there is nothing to refuse.
pub fn unignored_in_git_tree(dir: &Path) -> Option<PathBuf> {
    let dir = std::path::absolute(dir).ok()?;
    let root = dir
        .ancestors()
        .find(|a| a.join(".git").exists())?
        .to_path_buf();
    let git = which::which("git").ok()?;
    let probe = dir.join("manifest.json");
    let rel = probe.strip_prefix(&root).ok()?;
    let status = std::process::Command::new(git)
        .arg("-C")
        .arg(&root)
        .args(["check-ignore", "-q", "--"])
        .arg(rel)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?;
    // 0: ignored; 1: not ignored; anything else: git could not tell.
    (status.code() == Some(1)).then_some(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_follow_psql() {
        for (p, schema, name) in [
            ("orders", None, "^(orders)$"),
            ("Orders", None, "^(orders)$"),
            ("public.orders", Some("^(public)$"), "^(orders)$"),
            ("*.log_*", Some("^(.*)$"), "^(log_.*)$"),
            ("t?", None, "^(t.)$"),
            ("\"Mixed.Case\"", None, "^(Mixed\\.Case)$"),
            ("\"a\"\"b\"", None, "^(a\"b)$"),
            ("price$", None, "^(price\\$)$"),
            ("db.s.t", Some("^(s)$"), "^(t)$"),
        ] {
            let (s, n) = pattern_regex(p);
            assert_eq!(s.as_deref(), schema, "{p}");
            assert_eq!(n, name, "{p}");
        }
    }

    #[test]
    fn toc_lines_parse() {
        let toc = parse_toc(
            ";\n; Archive created at 2026-11-22\n;\n\
             214; 1259 16385 TABLE public orders runbook\n\
             3348; 0 16385 TABLE DATA public orders runbook\n\
             3360; 0 0 SEQUENCE SET public b_id_seq runbook\n\
             3352; 0 0 BLOBS - BLOBS \n\
             3203; 2606 16391 CONSTRAINT public orders orders_pkey runbook\n",
        );
        assert_eq!(toc.len(), 4);
        assert_eq!(toc[1].desc, "TABLE DATA");
        assert_eq!(toc[1].oid, Some(16385));
        assert_eq!(
            (toc[1].schema.as_str(), toc[1].name.as_str()),
            ("public", "orders")
        );
        assert_eq!(toc[2].desc, "SEQUENCE SET");
    }
}
