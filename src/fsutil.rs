//! File-system helpers every stage may use: writes that never leave half a
//! file behind.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Write via a temporary file and a rename, so readers never see half a file.
///
/// The temporary file has a name of its own beside the target, so two
/// writes into one directory never share it. A symlink is followed: the
/// file it names is replaced and the link stays. A target that is not a
/// regular file (`-o /dev/null`, a pipe) is written to in place: renaming
/// over it would replace the device itself. A path under `/dev/` or
/// `/proc/` (`-o /dev/stdout`, `/dev/fd/3`) is an open descriptor's, and
/// it is appended to: it may name a log the shell opened with `>>`, which
/// a rename would replace and a plain write would overwrite from its start.
/// An existing file keeps its permissions.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let given = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if given.starts_with("/dev") || given.starts_with("/proc") {
        return std::fs::OpenOptions::new()
            .append(true)
            .open(&given)
            .and_then(|mut f| f.write_all(bytes));
    }
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let existing = std::fs::metadata(&target).ok();
    if let Some(m) = &existing
        && !m.is_file()
    {
        return std::fs::OpenOptions::new()
            .write(true)
            .open(&target)
            .and_then(|mut f| f.write_all(bytes));
    }
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Dropped on any error below, so half a new file never stays behind.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)?;
    if let Some(m) = &existing {
        tmp.as_file().set_permissions(m.permissions())?;
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_data()?;
    tmp.persist(&target).map_err(|e| e.error)?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::write_atomic;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    use std::path::Path;

    #[test]
    fn replaces_a_file_keeping_its_permissions_and_leaves_nothing_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        // A file the old scheme (`report.tmp`) would have overwritten.
        std::fs::write(dir.path().join("report.tmp"), "the user's").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("report.tmp")).unwrap(),
            "the user's"
        );
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["report.json", "report.tmp"]);
    }

    #[test]
    fn follows_a_symlink_and_keeps_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        let link = dir.path().join("link.json");
        std::fs::write(&real, "old").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
    }

    /// `-o /dev/null` as root once replaced the device with a regular file.
    /// A pipe stands in for the device: writing goes through it, and it is
    /// still a pipe afterwards.
    #[test]
    fn writes_into_a_pipe_in_place_instead_of_replacing_it() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("out");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        write_atomic(&fifo, b"through the pipe").unwrap();
        let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        assert!(kind.is_fifo(), "the pipe was replaced: {kind:?}");
        assert_eq!(reader.join().unwrap(), b"through the pipe");
    }

    /// `-o /dev/stdout >> log`: the log keeps what it had, and gets the
    /// text after it.
    #[test]
    fn a_descriptor_path_is_appended_to_not_replaced() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        std::fs::write(&log, "earlier\n").unwrap();
        let open = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        let path = format!("/dev/fd/{}", open.as_raw_fd());
        write_atomic(Path::new(&path), b"snapshot\n").unwrap();
        drop(open);
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "earlier\nsnapshot\n"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_directory_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write_atomic(dir.path(), b"x").is_err());
        assert!(dir.path().is_dir());
    }
}
