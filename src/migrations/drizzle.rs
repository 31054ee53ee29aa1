//! A Drizzle Kit migration folder: `meta/_journal.json` lists the
//! migrations in order, each by its tag (`0003_brave_thor`, the file
//! `0003_brave_thor.sql`) and its `when`, the milliseconds Drizzle records
//! in its history as `created_at` and knows it by. Only the journal's
//! migrations exist for Drizzle: another `.sql` file beside them is never
//! run, and a warning says so. Drizzle has no downs.

use std::path::Path;

use super::{Down, LoadError, Set, entry_names, push_versioned, read, script};

pub(super) fn present(dir: &Path) -> bool {
    dir.join(JOURNAL).is_file()
}

const JOURNAL: &str = "meta/_journal.json";

#[derive(serde::Deserialize)]
struct Journal {
    entries: Vec<Entry>,
}

#[derive(serde::Deserialize)]
struct Entry {
    when: i64,
    tag: String,
}

pub(super) fn load(dir: &Path, set: &mut Set) -> Result<(), LoadError> {
    let journal: Journal =
        serde_json::from_str(&read(dir, JOURNAL)?).map_err(|e| LoadError::Unreadable {
            path: dir.join(JOURNAL).display().to_string(),
            why: format!("not a Drizzle journal: {e}"),
        })?;
    let listed: std::collections::HashSet<String> = journal
        .entries
        .iter()
        .map(|e| format!("{}.sql", e.tag))
        .collect();
    let mut unlisted: Vec<String> = entry_names(dir)?
        .into_iter()
        .filter(|n| n.ends_with(".sql") && !listed.contains(n))
        .collect();
    unlisted.sort();
    for n in unlisted {
        set.warnings.push(format!(
            "{n} is not in {JOURNAL}, so Drizzle never runs it; runbook leaves it out too"
        ));
    }
    for (i, e) in journal.entries.iter().enumerate() {
        let file = format!("{}.sql", e.tag);
        if !dir.join(&file).is_file() {
            set.problem(LoadError::JournalFile {
                file,
                journal: JOURNAL,
            })?;
            continue;
        }
        let digits: String = e.tag.chars().take_while(char::is_ascii_digit).collect();
        let (version, name) = if digits.is_empty() {
            (format!("{:04}", i), e.tag.clone())
        } else {
            let name = e.tag[digits.len()..].trim_start_matches('_').to_string();
            (digits, name)
        };
        let up = script(read(dir, &file)?, file.clone(), 1, false);
        let before = set.migrations.len();
        push_versioned(set, &file, version, name, up, Down::Unavailable)?;
        if set.migrations.len() > before
            && let Some(m) = set.migrations.last_mut()
        {
            m.created_ms = Some(e.when);
        }
    }
    Ok(())
}
