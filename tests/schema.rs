//! The committed JSON Schema and the Rust model agree: every shipped and
//! valid runbook passes both, and the schema itself is valid draft 2020-12.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use runbook::load::load_file;
use runbook::validate::{Inputs, ParamCheck, validate_file};
use serde_json::Value;

fn committed_schema() -> Value {
    let text = std::fs::read_to_string("schemas/runbook.v1.schema.json").unwrap();
    serde_json::from_str(&text).unwrap()
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let path = e.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "yml" || x == "yaml")
            && !path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("params")
            // A Liquibase project's master changelog, which an example rehearses.
            && !runbook::migrations::liquibase_changelog(&path)
        {
            out.push(path);
        }
    }
}

/// Every runbook users copy (runbooks/, examples/) and every valid fixture.
fn shipped_runbooks() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["runbooks", "examples", "tests/fixtures/valid"] {
        yaml_files(Path::new(dir), &mut files);
    }
    files.sort();
    files
}

#[test]
fn the_schema_is_valid_draft_2020_12() {
    let schema = committed_schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    jsonschema::meta::validate(&schema).unwrap();
}

/// What `runbook schema` prints is the committed file, byte for byte: the
/// published schema editors and CI point at (`--report`: report.json's).
#[test]
fn runbook_schema_prints_the_committed_files() {
    for (args, file) in [
        (&["schema"][..], "schemas/runbook.v1.schema.json"),
        (&["schema", "--report"][..], "schemas/report.v1.schema.json"),
        (
            &["schema", "--targets"][..],
            "schemas/targets.v1.schema.json",
        ),
        (
            &["schema", "--fleet-report"][..],
            "schemas/fleet-report.v1.schema.json",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
        let committed: Value =
            serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        assert_eq!(printed, committed, "runbook {args:?} is not {file}");
    }
}

#[test]
fn shipped_runbooks_pass_the_schema_and_the_model() {
    let validator = jsonschema::draft202012::new(&committed_schema()).unwrap();
    let files = shipped_runbooks();
    assert!(files.len() >= 3, "found only {files:?}");
    for path in files {
        let doc = load_file(&path)
            .unwrap_or_else(|f| panic!("{}: {}", path.display(), f.diagnostic.message));
        let errors: Vec<String> = validator
            .iter_errors(&doc.value)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{} fails the schema: {errors:?}",
            path.display()
        );
        if let Err(invalid) = validate_file(&path, &Inputs::default(), ParamCheck::GivenOnly) {
            panic!(
                "{} fails validation:\n{}",
                path.display(),
                invalid.render(false)
            );
        }
    }
}

#[test]
fn invalid_fixtures_are_all_rejected() {
    let mut files = Vec::new();
    yaml_files(Path::new("tests/fixtures/invalid"), &mut files);
    assert!(files.len() >= 25, "only {} invalid fixtures", files.len());
    for path in files {
        assert!(
            validate_file(&path, &Inputs::default(), ParamCheck::GivenOnly).is_err(),
            "{} was accepted",
            path.display()
        );
    }
}

fn keys(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                out.insert(k.clone());
                keys(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| keys(x, out)),
        _ => {}
    }
}

fn schema_properties(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(props)) = m.get("properties") {
                out.extend(props.keys().cloned());
            }
            m.values().for_each(|x| schema_properties(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| schema_properties(x, out)),
        _ => {}
    }
}

#[test]
fn the_every_key_fixture_uses_every_schema_property() {
    let doc = load_file(Path::new("tests/fixtures/valid/every_key.yml")).unwrap();
    let mut used = BTreeSet::new();
    keys(&doc.value, &mut used);
    let mut declared = BTreeSet::new();
    schema_properties(&committed_schema(), &mut declared);
    let missing: Vec<&String> = declared.difference(&used).collect();
    assert!(
        missing.is_empty(),
        "every_key.yml does not use: {missing:?}"
    );
}

#[test]
fn the_readme_example_is_a_valid_runbook() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let start = readme.find("```yaml\n").expect("README has a yaml example") + 8;
    let end = start + readme[start..].find("```").unwrap();
    let doc = runbook::load::load_str("README.md example", &readme[start..end]).unwrap();
    if let Err(invalid) =
        runbook::validate::validate_doc(doc, &Inputs::default(), ParamCheck::RequireAll)
    {
        panic!("{}", invalid.render(false));
    }
}

#[test]
fn the_report_schema_is_valid_draft_2020_12() {
    let text = std::fs::read_to_string("schemas/report.v1.schema.json").unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::meta::validate(&schema).unwrap();
}
