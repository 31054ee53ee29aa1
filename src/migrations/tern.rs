//! tern (jackc/tern, the pgx project's migrator): `1_name.sql`, `2_name.sql`,
//! ... numbered from 1 with no gap or repeat, since tern's history is the
//! number of the last migration applied. A file's up is what comes before
//! `---- create above / drop below ----` and its down what comes after; a
//! file without that line cannot be rolled back. A section with the line
//! `---- tern: disable-tx ----` runs outside a transaction. tern renders
//! every file as a Go template first; runbook runs files as written, so a
//! file with `{{` is refused.

use std::path::Path;

use super::{Down, Entry, Found, LoadError, Set, name_of, push, read, script};

/// The line between a tern migration's up and its down.
pub(super) const SEPARATOR: &str = "---- create above / drop below ----";

/// The line that runs a section outside a transaction.
pub(super) const DISABLE_TX: &str = "---- tern: disable-tx ----";

fn disables_tx(section: &str) -> bool {
    section
        .lines()
        .any(|l| l.strip_suffix('\r').unwrap_or(l) == DISABLE_TX)
}

pub(super) fn load(dir: &Path, found: &[Found], set: &mut Set) -> Result<(), LoadError> {
    let files = found.iter().filter(|f| f.kind == Entry::File);
    for (i, f) in files.enumerate() {
        let want = i + 1;
        if f.version.parse::<usize>().ok() != Some(want) {
            set.problem(LoadError::TernSequence {
                file: f.name.clone(),
                want,
            })?;
            continue;
        }
        let text = read(dir, &f.name)?;
        if let Some(at) = text.find("{{") {
            set.problem(LoadError::TernTemplate {
                file: f.name.clone(),
                line: 1 + text[..at].matches('\n').count(),
            })?;
            continue;
        }
        let (up, down) = match text.find(SEPARATOR) {
            Some(at) => {
                let below = &text[at + SEPARATOR.len()..];
                let line = 1 + text[..at].matches('\n').count();
                let down = script(below.to_string(), f.name.clone(), line, disables_tx(below));
                (&text[..at], Down::Script(down))
            }
            None => (
                text.as_str(),
                Down::Missing(format!("{} has no `{SEPARATOR}` line", f.name)),
            ),
        };
        let up = script(up.to_string(), f.name.clone(), 1, disables_tx(up));
        let name = name_of(f.name.trim_end_matches(".sql"));
        push(set, &f.name, name, up, down)?;
    }
    Ok(())
}
