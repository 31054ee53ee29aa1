//! Every invalid fixture is rejected with exactly the message in its
//! snapshot (tests/fixtures/invalid/*.snap), location included.

use std::path::Path;

use runbook::validate::{Inputs, ParamCheck, validate_file};

fn render_invalid(path: &Path) -> String {
    match validate_file(path, &Inputs::default(), ParamCheck::GivenOnly) {
        Ok(_) => panic!(
            "{} was accepted but is in tests/fixtures/invalid",
            path.display()
        ),
        Err(invalid) => invalid.render(false),
    }
}

#[test]
fn invalid_fixtures_render_their_messages() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("fixtures/invalid");
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| {
        insta::glob!("fixtures/invalid/*.yml", |path| {
            let rel = path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
            insta::assert_snapshot!(render_invalid(rel));
        });
    });
}

#[test]
fn a_huge_file_is_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.yml");
    let line = "# padding padding padding padding padding padding padding padding\n";
    let text = line.repeat((11 * 1024 * 1024) / line.len());
    std::fs::write(&path, text).unwrap();
    let rendered = render_invalid(&path).replace(&path.display().to_string(), "huge.yml");
    assert_eq!(
        rendered,
        "error: file is too large (11.0 MiB); the limit is 10 MiB\n--> huge.yml\n = help: split the runbook, or move long SQL into migration files\n\nerror: `huge.yml` is invalid (1 error); nothing ran\n"
    );
}

#[test]
fn a_large_valid_runbook_is_accepted() {
    let mut text = String::from(
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: big, version: 1 }\nphases:\n  - id: expand\n    kind: expand\n    steps:\n",
    );
    for i in 0..5_000 {
        text.push_str(&format!("      - id: step_{i}\n        sql: SELECT {i};\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yml");
    std::fs::write(&path, text).unwrap();
    let v = validate_file(&path, &Inputs::default(), ParamCheck::GivenOnly).unwrap();
    assert_eq!(v.runbook.all_steps().len(), 5_000);
}

#[test]
fn the_step_count_is_the_length_of_the_step_list() {
    // Branches, compensations (one or a list) and `finally` all count.
    fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, out);
            } else if path.extension().is_some_and(|e| e == "yml") {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    for dir in ["tests/fixtures/valid", "runbooks", "examples"] {
        files(Path::new(dir), &mut paths);
    }
    let mut seen = 0;
    for path in paths {
        let Ok(v) = validate_file(&path, &Inputs::default(), ParamCheck::GivenOnly) else {
            continue;
        };
        assert_eq!(
            v.runbook.step_count(),
            v.runbook.all_steps().len(),
            "{}",
            path.display()
        );
        seen += 1;
    }
    assert!(seen > 5, "only {seen} valid fixtures read");
}

#[test]
fn a_missing_file_and_a_directory_are_named() {
    let missing = render_invalid(Path::new("tests/fixtures/no-such-file.yml"));
    assert_eq!(
        missing,
        "error: failed to read `tests/fixtures/no-such-file.yml`: no such file\n--> tests/fixtures/no-such-file.yml\n = help: check the path; it is relative to the current directory\n\nerror: `tests/fixtures/no-such-file.yml` is invalid (1 error); nothing ran\n"
    );
    let dir = render_invalid(Path::new("tests/fixtures"));
    assert!(
        dir.starts_with("error: `tests/fixtures` is a directory, not a runbook file\n"),
        "{dir}"
    );
}
