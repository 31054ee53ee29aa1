//! Migration directories: which migrations a directory holds, by version.
//!
//! A version is the leading digits of a file's name (`001_init.up.sql`,
//! `20240101120000_add.sql`) or of a directory holding `migration.sql`
//! (Prisma's layout). Up and down files of one version count once.

use std::path::Path;

/// One migration: its version and the file (or directory) that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub version: String,
    pub file: String,
}

/// The migrations in `dir`, ordered by version (numerically).
pub fn list(dir: &Path) -> Result<Vec<Entry>, String> {
    let read = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read the migration directory {}: {e}", dir.display()))?;
    let mut out: Vec<Entry> = Vec::new();
    for item in read {
        let item = item.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let name = item.file_name().to_string_lossy().into_owned();
        let path = item.path();
        let counts = if path.is_dir() {
            path.join("migration.sql").is_file()
        } else {
            name.ends_with(".sql")
        };
        let version: String = name.chars().take_while(char::is_ascii_digit).collect();
        if !counts || version.is_empty() {
            continue;
        }
        match out.iter_mut().find(|e| e.version == version) {
            // Prefer the up file's name when both halves of a pair are seen.
            Some(e) if name.contains(".up.") => e.file = name,
            Some(_) => {}
            None => out.push(Entry {
                version,
                file: name,
            }),
        }
    }
    out.sort_by(|a, b| {
        let n = |v: &str| v.trim_start_matches('0').len();
        (n(&a.version), a.version.trim_start_matches('0'))
            .cmp(&(n(&b.version), b.version.trim_start_matches('0')))
            .then_with(|| a.version.cmp(&b.version))
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_pair_up_and_sort_numerically() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "10_later.up.sql",
            "10_later.down.sql",
            "2_second.sql",
            "001_first.up.sql",
            "README.md",
            "notes.sql",
        ] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        std::fs::create_dir(dir.path().join("3_prisma")).unwrap();
        std::fs::write(dir.path().join("3_prisma/migration.sql"), "").unwrap();
        let got = list(dir.path()).unwrap();
        let v: Vec<(&str, &str)> = got
            .iter()
            .map(|e| (e.version.as_str(), e.file.as_str()))
            .collect();
        assert_eq!(
            v,
            [
                ("001", "001_first.up.sql"),
                ("2", "2_second.sql"),
                ("3", "3_prisma"),
                ("10", "10_later.up.sql")
            ]
        );
    }
}
