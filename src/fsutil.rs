//! File-system helpers every stage may use: writes that never leave half a
//! file behind.

use std::fs::File;
use std::io::Write;
use std::path::Path;

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
