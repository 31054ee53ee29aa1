//! Atlas's migration directory, as `atlas migrate diff` writes it:
//! `VERSION_description.sql` files, each one forward migration, run in the
//! order of their names, and `atlas.sum`, the directory's integrity file.
//!
//! Atlas reads what it needs to know of a file from the comments at its
//! very top, when a blank line follows them (its "file directives"):
//! `-- atlas:txmode none` runs the file statement by statement, with no
//! transaction; without it, Atlas runs the whole file in one. runbook reads
//! them as Atlas does, and refuses before anything runs what Atlas would
//! refuse or fail: a statement that cannot run in the file's transaction
//! (`CREATE INDEX CONCURRENTLY` with no `txmode none` Atlas reads), a
//! directive Atlas rejects, and a directory that no longer matches its
//! `atlas.sum` (Atlas refuses to apply it). A checkpoint file and a
//! statement delimiter of the file's own are refused too: runbook does not
//! run them as Atlas does.
//!
//! A file whose directives say `-- atlas:txtar` is an archive of entries,
//! each under a `-- NAME --` line: `migration.sql` is the migration,
//! `down.sql` its down, and `checks.sql` (or `checks/NAME.sql`) its
//! pre-migration checks, statements that must each return true before the
//! migration runs; Atlas does not apply it otherwise, and neither does
//! runbook (a failed check fails the up, and nothing of it runs).
//!
//! `atlas.sum` is checked as Atlas checks it, in the other layouts Atlas
//! writes too (golang-migrate's pairs, goose, dbmate): there the tool that
//! deploys does not read it, so a mismatch is a warning.

use std::path::Path;

use base64::Engine as _;
use regex::Regex;
use sha2::{Digest, Sha256};

use super::{
    Down, Format, LoadError, Script, Set, fails_in_transaction, push_versioned, read, script_by,
};

/// The integrity file of the directory.
pub(super) const SUM: &str = "atlas.sum";

/// Why a file's script runs outside a transaction.
const NO_TRANSACTION: &str = "its `-- atlas:txmode none` directive";

const REHASH: &str = "if the change is meant and no database has applied the file yet, run `atlas migrate hash` and commit atlas.sum; a migration a database has applied must not change: restore it, and make the change in a new migration";

/// Whether the directory holds Atlas's integrity file.
pub(super) fn present(dir: &Path) -> bool {
    dir.join(SUM).is_file()
}

/// A file directive: its line, name and argument (`-- atlas:txmode none`
/// at line 1 is `(1, "txmode", "none")`).
type Directive = (usize, String, String);

fn directive_pattern() -> &'static Regex {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    // Atlas's own pattern (`reDirective`), with `\w` as Go reads it: ASCII.
    RE.get_or_init(|| {
        Regex::new(r"^([ -~]*)atlas:([0-9A-Za-z_]+)(?: +(.+))*").expect("the directive pattern")
    })
}

/// A directive in one line, as Atlas matches it.
fn directive(line: &str) -> Option<(String, String)> {
    let m = directive_pattern().captures(line)?;
    let arg = m.get(3).map_or("", |a| a.as_str());
    Some((m[2].to_string(), arg.to_string()))
}

/// The comment lines (`--` or `#`) at the very top of a file, with their
/// numbers, and whether Atlas reads them as the file's directives: only
/// when a blank line follows them (or nothing does).
fn header(text: &str) -> (Vec<(usize, &str)>, bool) {
    let mut comments = Vec::new();
    let mut rest = text;
    while rest.starts_with('#') || rest.starts_with("--") {
        let line = comments.len() + 1;
        match rest.find('\n') {
            Some(end) => {
                comments.push((line, rest[..end].trim()));
                rest = &rest[end + 1..];
            }
            None => {
                comments.push((line, rest));
                rest = "";
            }
        }
    }
    let read = rest.is_empty() || rest.trim_start_matches([' ', '\t']).starts_with('\n');
    (comments, read)
}

/// The file directives Atlas reads in a file; and the ones it does not
/// read for want of a blank line after them.
fn directives(text: &str) -> (Vec<Directive>, Vec<Directive>) {
    let (comments, read) = header(text);
    let found: Vec<Directive> = comments
        .into_iter()
        .filter_map(|(line, c)| directive(c).map(|(name, arg)| (line, name, arg)))
        .collect();
    if read {
        (found, Vec::new())
    } else {
        (Vec::new(), found)
    }
}

/// The `.sql` files of a directory Atlas reads (`*.sql`, or `*.up.sql` in
/// golang-migrate's layout), in its order: by name, byte by byte.
fn files(dir: &Path, suffix: &str) -> Result<Vec<(String, String)>, LoadError> {
    let mut names: Vec<String> = super::entry_names(dir)?
        .into_iter()
        .filter(|n| n.ends_with(suffix) && dir.join(n).is_file())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| read(dir, &n).map(|text| (n, text)))
        .collect()
}

pub(super) fn load(dir: &Path, set: &mut Set) -> Result<(), LoadError> {
    let files = files(dir, ".sql")?;
    if files.is_empty() {
        return Err(LoadError::Empty(dir.display().to_string()));
    }
    if let Some(e) = sum_mismatch(dir, &files)? {
        set.problem(e)?;
    }
    for (name, text) in files {
        let loaded = migration(&name, text, &mut set.warnings);
        let Some(f) = set.kept_with(loaded)? else {
            continue;
        };
        push_versioned(set, &name, f.version, f.desc, f.up, f.down)?;
        if let Some(m) = set.migrations.last_mut() {
            m.checks = f.checks;
        }
    }
    Ok(())
}

/// What one file gives.
#[derive(Debug)]
struct File {
    version: String,
    desc: String,
    up: Script,
    down: Down,
    checks: Vec<Script>,
}

/// A txtar archive's entries: each `-- NAME --` line's name, the text
/// under it (to the next such line), and that text's first line.
fn entries(text: &str) -> Vec<(String, String, usize)> {
    let mut out: Vec<(String, String, usize)> = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let name = bare
            .strip_prefix("-- ")
            .and_then(|l| l.strip_suffix(" --"))
            .map(str::trim)
            .filter(|n| !n.is_empty());
        match (name, out.last_mut()) {
            (Some(name), _) => out.push((name.to_string(), String::new(), i + 2)),
            (None, Some((_, body, _))) => body.push_str(line),
            // The archive's comment, before its first entry.
            (None, None) => {}
        }
    }
    out
}

fn refused(file: &str, line: usize, what: String, fix: &'static str) -> LoadError {
    LoadError::Atlas {
        file: file.to_string(),
        line,
        what,
        fix,
    }
}

/// One file: its version and description as Atlas reads its name
/// (`20250101120000_add_users.sql`: before and after the first `_`), and
/// its script, in a transaction unless its directives say otherwise.
fn migration(file: &str, text: String, warnings: &mut Vec<String>) -> Result<File, LoadError> {
    let stem = file.strip_suffix(".sql").unwrap_or(file);
    let (version, desc) = stem.split_once('_').unwrap_or((stem, ""));
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refused(
            file,
            1,
            format!(
                "Atlas's version of a file is its name before the first `_` (here `{version}`); runbook orders and records versions that are numbers, as `atlas migrate diff` writes them"
            ),
            "name the file with a number first, as Atlas names new migrations (a timestamp: 20250101120000_add_users.sql), and run `atlas migrate hash`",
        ));
    }
    let (read, unread) = directives(&text);
    if let Some((line, _, arg)) = unread.iter().find(|(_, n, _)| n == "txmode") {
        warnings.push(format!(
            "{file}:{line}: `-- atlas:txmode {arg}` is not followed by a blank line, so Atlas does not read it as the file's directive and runs the file in one transaction; runbook runs it so too"
        ));
    }
    if let Some((line, _, _)) = read.iter().find(|(_, n, _)| n == "checkpoint") {
        return Err(refused(
            file,
            *line,
            "is an Atlas checkpoint (`-- atlas:checkpoint`): Atlas runs it instead of the files before it on a database with no history, and skips it on one with history; runbook does not make that choice".into(),
            "run this directory with `atlas migrate apply` in a `shell` step, or point `dir:` at a copy that holds either the checkpoint and the files after it, or every file but the checkpoint",
        ));
    }
    if let Some((line, _, arg)) = read.iter().find(|(_, n, _)| n == "delimiter") {
        return Err(refused(
            file,
            *line,
            format!(
                "sets a statement delimiter of its own (`-- atlas:delimiter {arg}`); runbook splits statements where PostgreSQL ends them"
            ),
            "end each statement with `;` (a function body in dollar quotes needs no other delimiter), drop the directive, and run `atlas migrate hash`",
        ));
    }
    let modes: Vec<&Directive> = read.iter().filter(|(_, n, _)| n == "txmode").collect();
    let no_transaction = match modes.as_slice() {
        [] => false,
        [(_, _, mode)] if mode == "none" => true,
        [(_, _, mode)] if mode == "file" => false,
        [(line, _, mode)] => {
            let what = if mode == "all" {
                "`-- atlas:txmode all` is not allowed in a file; Atlas refuses it".to_string()
            } else {
                format!(
                    "`-- atlas:txmode {mode}` is no mode Atlas knows (none, file); Atlas refuses the file"
                )
            };
            return Err(refused(
                file,
                *line,
                what,
                "write `-- atlas:txmode none` or `-- atlas:txmode file`, and run `atlas migrate hash`",
            ));
        }
        [_, (line, _, _), ..] => {
            return Err(refused(
                file,
                *line,
                format!(
                    "has {} txmode directives; Atlas refuses a file with more than one",
                    modes.len()
                ),
                "keep one `-- atlas:txmode` line, and run `atlas migrate hash`",
            ));
        }
    };
    let by = || no_transaction.then(|| NO_TRANSACTION.to_string());
    let (up, down, checks) = if read.iter().any(|(_, n, _)| n == "txtar") {
        txtar(file, &text, &by)?
    } else {
        let up = script_by(text, file.to_string(), 1, by());
        (up, Down::Unavailable, Vec::new())
    };
    if let Some(e) = fails_in_transaction(
        &up,
        "Atlas",
        "file",
        "start the file with `-- atlas:txmode none` and a blank line after it (Atlas reads directives only from the comments at the top of a file, with a blank line after them), so that Atlas runs it statement by statement, as runbook does; then run `atlas migrate hash`",
    ) {
        return Err(e);
    }
    Ok(File {
        version: version.to_string(),
        desc: desc.to_string(),
        up,
        down,
        checks,
    })
}

/// A txtar file's migration, down and checks.
fn txtar(
    file: &str,
    text: &str,
    by: &dyn Fn() -> Option<String>,
) -> Result<(Script, Down, Vec<Script>), LoadError> {
    let (mut up, mut down, mut checks) = (None, Down::Unavailable, Vec::new());
    for (name, body, line) in entries(text) {
        let script = script_by(body, file.to_string(), line, by());
        match name.as_str() {
            "migration.sql" => up = Some(script),
            "down.sql" => down = Down::Script(script),
            n if n.ends_with(".sql") && (n == "checks.sql" || n.starts_with("checks/")) => {
                checks.push(script);
            }
            other => {
                return Err(refused(
                    file,
                    line - 1,
                    format!(
                        "`{other}` is an entry of this txtar file that runbook does not read (it reads migration.sql, down.sql and checks)"
                    ),
                    "move what it holds into migration.sql or checks.sql, and run `atlas migrate hash`",
                ));
            }
        }
    }
    let up = up.ok_or_else(|| {
        refused(
            file,
            1,
            "is a txtar file (`-- atlas:txtar`) with no `-- migration.sql --` entry; Atlas has nothing to apply".into(),
            "put the migration's statements under a `-- migration.sql --` line, and run `atlas migrate hash`",
        )
    })?;
    Ok((up, down, checks))
}

/// `atlas.sum`'s lines: each file's name and hash, after the sum of them all.
struct SumFile {
    total: String,
    entries: Vec<(String, String)>,
}

impl SumFile {
    /// As Atlas reads it (`HashFile.UnmarshalText`).
    fn parse(text: &str) -> Result<SumFile, usize> {
        let mut lines = text.lines();
        let total = lines
            .next()
            .unwrap_or("")
            .trim_end_matches('\r')
            .trim_start_matches("h1:")
            .to_string();
        let mut entries = Vec::new();
        for (i, line) in lines.enumerate() {
            let line = line.trim_end_matches('\r');
            let Some((name, hash)) = line.split_once("h1:") else {
                return Err(i + 2);
            };
            entries.push((name.trim().to_string(), hash.to_string()));
        }
        Ok(SumFile { total, entries })
    }

    /// The sum of the entries, as Atlas computes the first line.
    fn sum(entries: &[(String, String)]) -> String {
        let mut h = Sha256::new();
        for (name, hash) in entries {
            h.update(name.as_bytes());
            h.update(hash.as_bytes());
        }
        base64::engine::general_purpose::STANDARD.encode(h.finalize())
    }
}

/// The entries Atlas would write for these files (`NewHashFile`): one
/// running SHA-256 over each name and text in turn, its state after each
/// file that file's hash. A file whose first line is `atlas:sum ignore`
/// adds its name only, and has no entry.
fn computed(files: &[(String, String)]) -> Vec<(String, String)> {
    let mut h = Sha256::new();
    let mut out = Vec::new();
    for (name, text) in files {
        h.update(name.as_bytes());
        let first = text.lines().next().unwrap_or("");
        if directive(first).is_some_and(|(n, arg)| n == "sum" && arg == "ignore") {
            continue;
        }
        h.update(text.as_bytes());
        let hash = base64::engine::general_purpose::STANDARD.encode(h.clone().finalize());
        out.push((name.clone(), hash));
    }
    out
}

/// Where the directory no longer matches its `atlas.sum`, as Atlas's
/// `migrate validate` finds it: the first entry that differs, and why.
fn sum_mismatch(dir: &Path, files: &[(String, String)]) -> Result<Option<LoadError>, LoadError> {
    let text = read(dir, SUM)?;
    let at = |line, what: String| Some(refused(SUM, line, what, REHASH));
    let written = match SumFile::parse(&text) {
        Ok(s) => s,
        Err(line) => {
            return Ok(at(
                line,
                "is not a line of Atlas's sum file (`NAME h1:HASH`); Atlas refuses the directory"
                    .into(),
            ));
        }
    };
    if SumFile::sum(&written.entries) != written.total {
        return Ok(at(
            1,
            "the sum on the first line is not the sum of the lines below it (edited by hand, or merged from two branches); Atlas refuses the directory".into(),
        ));
    }
    let now = computed(files);
    if SumFile::sum(&now) == written.total {
        return Ok(None);
    }
    let refuses = "; Atlas refuses to apply a directory that does not match its sum";
    for (i, entry) in written.entries.iter().enumerate() {
        if now.get(i) == Some(entry) {
            continue;
        }
        let (name, line) = (&entry.0, i + 2);
        let what = match now.iter().position(|(n, _)| n == name) {
            None => format!("{name} is in atlas.sum but not in the directory{refuses}"),
            Some(j) if j == i => {
                format!("{name} differs from the file atlas.sum was written for{refuses}")
            }
            Some(_) => format!(
                "{} is not in atlas.sum: it was added before {name} after the sum was written (a branch merged beside another){refuses}",
                now[i].0
            ),
        };
        return Ok(at(line, what));
    }
    let added = &now[written.entries.len()].0;
    Ok(at(
        written.entries.len() + 2,
        format!("{added} is not in atlas.sum: it was added after the sum was written{refuses}"),
    ))
}

/// Each file's entry in atlas.sum as Atlas computes it for the directory
/// now (by file name): what Atlas records with a file's revision. Of the
/// files Atlas reads in the set's layout (`*.up.sql` in golang-migrate's).
pub fn hashes(set: &Set) -> std::collections::HashMap<String, String> {
    let suffix = if set.format == Format::Pairs {
        ".up.sql"
    } else {
        ".sql"
    };
    files(&set.dir, suffix)
        .map(|f| computed(&f).into_iter().collect())
        .unwrap_or_default()
}

/// In another tool's layout that Atlas writes (golang-migrate's pairs,
/// goose, dbmate) with an `atlas.sum` beside it: where the directory no
/// longer matches it, a warning. The tool that deploys does not read the
/// file; Atlas's `migrate validate` (in CI, say) fails on it.
pub(super) fn sum_warning(dir: &Path, set: &mut Set) -> Result<(), LoadError> {
    let suffix = match set.format {
        Format::Pairs => ".up.sql",
        Format::Goose | Format::Dbmate => ".sql",
        _ => return Ok(()),
    };
    if !present(dir) {
        return Ok(());
    }
    if let Some(e) = sum_mismatch(dir, &files(dir, suffix)?)? {
        set.warnings.push(format!(
            "{e}; `atlas migrate validate` fails on this directory ({} does not read atlas.sum, and runbook runs the files as they are)",
            set.format.name()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }

    /// atlas.sum for the directory's files, as `atlas migrate hash` writes it.
    fn hash(dir: &Path, suffix: &str) {
        let entries = computed(&files(dir, suffix).unwrap());
        let mut text = format!("h1:{}\n", SumFile::sum(&entries));
        for (n, h) in &entries {
            text.push_str(&format!("{n} h1:{h}\n"));
        }
        std::fs::write(dir.join(SUM), text).unwrap();
    }

    #[test]
    fn a_sum_atlas_wrote_matches_and_each_change_is_named() {
        // atlas.sum as `hash` writes it (the_sum_is_the_one_atlas_writes
        // checks that against a sum Atlas wrote); then each change to the
        // directory, named as Atlas's `migrate validate` names it.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(
            dir,
            &[
                ("1_initial.sql", "CREATE TABLE t (id int);\n"),
                ("3_second.sql", "ALTER TABLE t ADD COLUMN c int;\n"),
            ],
        );
        hash(dir, ".sql");
        let set = super::super::load(dir, None).unwrap();
        assert_eq!(set.format, Format::Atlas);
        assert_eq!(set.migrations.len(), 2);
        assert!(matches!(set.migrations[0].down, Down::Unavailable));

        // Edited.
        write(dir, &[("1_initial.sql", "CREATE TABLE t (id bigint);\n")]);
        let e = super::super::load(dir, None).unwrap_err().to_string();
        assert!(e.starts_with("atlas.sum:2: 1_initial.sql differs"), "{e}");
        write(dir, &[("1_initial.sql", "CREATE TABLE t (id int);\n")]);
        // Added at the end, and before another.
        write(dir, &[("4_third.sql", "SELECT 1;\n")]);
        let e = super::super::load(dir, None).unwrap_err().to_string();
        assert!(
            e.starts_with("atlas.sum:4: 4_third.sql is not in atlas.sum"),
            "{e}"
        );
        std::fs::rename(dir.join("4_third.sql"), dir.join("2_third.sql")).unwrap();
        let e = super::super::load(dir, None).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "atlas.sum:3: 2_third.sql is not in atlas.sum: it was added before 3_second.sql"
            ),
            "{e}"
        );
        std::fs::remove_file(dir.join("2_third.sql")).unwrap();
        // Removed.
        std::fs::remove_file(dir.join("3_second.sql")).unwrap();
        let e = super::super::load(dir, None).unwrap_err().to_string();
        assert!(
            e.starts_with("atlas.sum:3: 3_second.sql is in atlas.sum but not"),
            "{e}"
        );
        // A hand-edited sum file.
        write(
            dir,
            &[("3_second.sql", "ALTER TABLE t ADD COLUMN c int;\n")],
        );
        let sum = std::fs::read_to_string(dir.join(SUM)).unwrap();
        write(dir, &[(SUM, &sum.replacen("h1:", "h1:x", 1))]);
        let e = super::super::load(dir, None).unwrap_err().to_string();
        assert!(
            e.starts_with("atlas.sum:1: the sum on the first line"),
            "{e}"
        );
        // lint reads it as a warning, and the files still load.
        let set = super::super::load_tolerant(dir).unwrap();
        assert_eq!(set.migrations.len(), 2);
        assert!(set.warnings[0].contains("the sum on the first line"));
    }

    #[test]
    fn the_sum_is_the_one_atlas_writes() {
        // Atlas's own test directory (ariga/atlas,
        // cmd/atlas/internal/migrate/testdata/fixed): its files, with no
        // newline at the end, and the atlas.sum Atlas wrote for them.
        let files: Vec<(String, String)> = [
            ("1.sql", "CREATE TABLE `users` (`id` int NOT NULL PRIMARY KEY);"),
            ("2.sql", "ALTER TABLE `users` ADD COLUMN `happy` boolean NOT NULL DEFAULT true;"),
            (
                "3.sql",
                "CREATE TABLE `pets` (`id` int NOT NULL PRIMARY KEY);\nALTER TABLE `pets` ADD COLUMN `happy` boolean NULL;",
            ),
        ]
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
        let written = SumFile::parse(
            "h1:oNV0f9HzMMCf2pzF+sA6CmsSHGjdkWYmcTjoc/lWxLs=
1.sql h1:twN+zPVp8JzWEUcPPfNIT6/62Wa08dfxxZhT4gZxBzg=
2.sql h1:KHLlrSPwSjbp4+KrpQHwYZf8zlSIiAR7MS3H2yd1yeE=
3.sql h1:osHrPgu8uNgd6j09XCiyBQWWEh9aAmwjRgzdZZgm68M=
",
        )
        .unwrap();
        assert_eq!(computed(&files), written.entries);
        assert_eq!(SumFile::sum(&written.entries), written.total);
    }

    #[test]
    fn directives_are_read_only_at_the_top_with_a_blank_line_after() {
        let (read, unread) =
            directives("-- atlas:txmode none\n\nCREATE INDEX CONCURRENTLY i ON t (c);\n");
        assert_eq!(read, vec![(1, "txmode".into(), "none".into())]);
        assert!(unread.is_empty());
        let (read, unread) =
            directives("-- atlas:txmode none\nCREATE INDEX CONCURRENTLY i ON t (c);\n");
        assert!(read.is_empty());
        assert_eq!(unread.len(), 1);
        // CRLF: the line after is "\r", which Atlas does not read as blank.
        let (read, _) = directives("-- atlas:txmode none\r\n\r\nSELECT 1;\r\n");
        assert!(read.is_empty());
        // Further down, a directive is a comment.
        let (read, unread) = directives("SELECT 1;\n-- atlas:txmode none\n\n");
        assert!(read.is_empty() && unread.is_empty());
        // A file of comments only.
        let (read, _) = directives("-- note\n-- atlas:txmode none");
        assert_eq!(read.len(), 1);
    }

    #[test]
    fn a_file_runs_as_its_directives_say_or_is_refused_as_atlas_refuses_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let idx = "CREATE INDEX CONCURRENTLY t_c ON t (c);\n";
        write(
            dir,
            &[
                ("20250101000000_init.sql", "CREATE TABLE t (c int);\n"),
                (
                    "20250102000000_idx.sql",
                    &format!("-- atlas:txmode none\n\n-- Create index\n{idx}"),
                ),
            ],
        );
        hash(dir, ".sql");
        let set = super::super::load(dir, None).unwrap();
        assert_eq!(set.migrations[0].version, "20250101000000");
        assert_eq!(set.migrations[0].name, "init");
        assert_eq!(set.migrations[0].up.no_transaction, None);
        assert_eq!(
            set.migrations[1].up.no_transaction.as_deref(),
            Some(NO_TRANSACTION)
        );

        let refusal = |text: &str| {
            write(dir, &[("20250102000000_idx.sql", text)]);
            hash(dir, ".sql");
            super::super::load(dir, None).unwrap_err()
        };
        // No blank line after the directive: Atlas runs it in a transaction.
        let e = refusal(&format!("-- atlas:txmode none\n{idx}"));
        assert!(
            e.to_string().starts_with("20250102000000_idx.sql:2: Atlas runs this file in a transaction; `CREATE INDEX CONCURRENTLY"),
            "{e}"
        );
        assert!(e.hint().unwrap().contains("a blank line after it"));
        let e = refusal(&format!("-- atlas:txmode file\n\n{idx}"));
        assert!(
            e.to_string()
                .contains("Atlas runs this file in a transaction"),
            "{e}"
        );
        let e = refusal("-- atlas:txmode all\n\nSELECT 1;\n").to_string();
        assert!(
            e.contains(":1: `-- atlas:txmode all` is not allowed"),
            "{e}"
        );
        let e = refusal("-- atlas:txmode none\n-- atlas:txmode file\n\nSELECT 1;\n").to_string();
        assert!(e.contains(":2: has 2 txmode directives"), "{e}");
        let e = refusal("-- atlas:checkpoint\n\nCREATE TABLE u (c int);\n").to_string();
        assert!(e.contains(":1: is an Atlas checkpoint"), "{e}");
        let e = refusal("-- atlas:delimiter //\n\nSELECT 1//\n").to_string();
        assert!(e.contains("sets a statement delimiter of its own"), "{e}");
        let e = refusal("ALTER TYPE mood ADD VALUE 'ok';\nSELECT 'ok'::mood;\n").to_string();
        assert!(
            e.contains("Atlas runs this file in a transaction; `ALTER TYPE ... ADD VALUE`"),
            "{e}"
        );

        // A directive Atlas does not read, on a file that runs in a
        // transaction anyway: a warning.
        write(
            dir,
            &[(
                "20250102000000_idx.sql",
                "-- atlas:txmode none\nSELECT 1;\n",
            )],
        );
        hash(dir, ".sql");
        let set = super::super::load(dir, None).unwrap();
        assert!(
            set.warnings[0].contains("is not followed by a blank line"),
            "{:?}",
            set.warnings
        );
        assert_eq!(set.migrations[1].up.no_transaction, None);

        // A version that is not a number.
        std::fs::rename(dir.join("20250102000000_idx.sql"), dir.join("v2_idx.sql")).unwrap();
        hash(dir, ".sql");
        let e = super::super::load(dir, Some(Format::Atlas))
            .unwrap_err()
            .to_string();
        assert!(e.contains("before the first `_` (here `v2`)"), "{e}");
    }

    #[test]
    fn a_txtar_file_is_its_migration_its_down_and_its_checks() {
        let text = "-- atlas:txtar\n-- atlas:txmode none\n\n-- checks.sql --\nSELECT true;\n-- checks/rows.sql --\nSELECT NOT EXISTS (SELECT 1 FROM t);\n\n-- migration.sql --\nDROP INDEX CONCURRENTLY t_c;\n-- down.sql --\nCREATE INDEX CONCURRENTLY t_c ON t (c);\n";
        let f = migration("3_drop.sql", text.into(), &mut Vec::new()).unwrap();
        assert_eq!(f.up.sql, "DROP INDEX CONCURRENTLY t_c;\n");
        assert_eq!(f.up.first_line, 10);
        assert_eq!(f.up.no_transaction.as_deref(), Some(NO_TRANSACTION));
        let Down::Script(down) = &f.down else {
            panic!("no down: {:?}", f.down);
        };
        assert_eq!(down.first_line, 12);
        assert_eq!(f.checks.len(), 2);
        assert_eq!(f.checks[1].locate(0), "3_drop.sql:7");
        // Without `-- migration.sql --`, or with an entry runbook does not
        // read: refused.
        let e = migration(
            "3_drop.sql",
            "-- atlas:txtar\n\n-- checks.sql --\nSELECT true;\n".into(),
            &mut Vec::new(),
        );
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("no `-- migration.sql --` entry")
        );
        let e = migration(
            "3_drop.sql",
            "-- atlas:txtar\n\n-- migration.sql --\nSELECT 1;\n-- seed.csv --\na,b\n".into(),
            &mut Vec::new(),
        );
        assert!(
            e.unwrap_err()
                .to_string()
                .starts_with("3_drop.sql:5: `seed.csv` is an entry")
        );
        // A file that does not say `atlas:txtar` is SQL, markers and all.
        let f = migration(
            "4_x.sql",
            "-- migration.sql --\nSELECT 1;\n".into(),
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(f.up.first_line, 1);
        assert!(f.checks.is_empty());
    }

    #[test]
    fn files_run_in_the_order_of_their_names_as_atlas_runs_them() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(
            dir,
            &[
                ("1_a.sql", "SELECT 1;\n"),
                ("10_b.sql", "SELECT 10;\n"),
                ("2_c.sql", "SELECT 2;\n"),
            ],
        );
        hash(dir, ".sql");
        let set = super::super::load(dir, None).unwrap();
        let order: Vec<&str> = set.migrations.iter().map(|m| m.version.as_str()).collect();
        // By name, byte by byte: `10_b.sql` before `1_a.sql` ('0' < '_').
        assert_eq!(order, ["10", "1", "2"]);
    }

    #[test]
    fn golang_migrate_s_layout_with_a_sum_warns_where_it_differs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(
            dir,
            &[
                ("1_a.up.sql", "CREATE TABLE a (c int);\n"),
                ("1_a.down.sql", "DROP TABLE a;\n"),
            ],
        );
        hash(dir, ".up.sql");
        let set = super::super::load(dir, None).unwrap();
        assert_eq!(set.format, Format::Pairs);
        assert!(set.warnings.is_empty(), "{:?}", set.warnings);
        // The downs are not in the sum.
        write(dir, &[("1_a.down.sql", "DROP TABLE IF EXISTS a;\n")]);
        assert!(super::super::load(dir, None).unwrap().warnings.is_empty());
        write(dir, &[("1_a.up.sql", "CREATE TABLE a (c bigint);\n")]);
        let set = super::super::load(dir, None).unwrap();
        assert!(
            set.warnings[0].contains("1_a.up.sql differs")
                && set.warnings[0].contains("pairs does not read atlas.sum"),
            "{:?}",
            set.warnings
        );
    }
}
