//! File-system helpers every stage may use: writes that never leave half a
//! file behind.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Write via a temporary file and a rename, so readers never see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_data()
    });
    if let Err(e) = written {
        // The last good file stays; half a new one does not.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)
}

/// `path` as seen from `from` (both made absolute): `../shard-1/targets/a`.
pub fn relative(path: &Path, from: &Path) -> String {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (path, from) = (abs(path), abs(from));
    let a: Vec<_> = path.components().collect();
    let b: Vec<_> = from.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &a[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        ".".into()
    } else {
        out.display().to_string()
    }
}
