//! The layering holds: no import cycle between the files of src/ (a stage
//! uses what is below it, never above it). scripts/import_cycles.py builds
//! the graph and names each cycle.

#[test]
fn the_files_of_src_import_each_other_without_cycles() {
    let out = std::process::Command::new("python3")
        .arg("scripts/import_cycles.py")
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "import cycles in src/:\n{text}");
    assert!(text.contains(" 0 cycle(s)"), "{text}");
}

/// The lower layer (`src/pg/`, `fsutil.rs`, `hash.rs`) may be used by every
/// stage and uses none of them: it names only the shared vocabulary
/// (`model`, `events`, `secret`, ...) and itself.
#[test]
fn the_lower_layer_uses_no_stage() {
    const STAGES: &[&str] = &[
        "load",
        "validate",
        "plan",
        "exec",
        "report",
        "lint",
        "run",
        "commands",
        "cli",
        "schema",
        "backups",
        "migrations",
        "snapshot",
        "checks",
    ];
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir("src/pg")
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.push("src/fsutil.rs".into());
    files.push("src/hash.rs".into());
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            for stage in STAGES {
                if line.contains(&format!("crate::{stage}::"))
                    || line.contains(&format!("crate::{stage};"))
                    || line.contains(&format!("crate::{stage}}}"))
                {
                    found.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "the lower layer imports a stage:\n{}",
        found.join("\n")
    );
}
