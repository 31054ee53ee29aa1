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
