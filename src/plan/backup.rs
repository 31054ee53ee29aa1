//! A backup step's plan: pg_dump's options, with every path and name rendered.

use std::fmt::Write as _;

use serde::Serialize;

use super::text::texts;
use super::{Action, Planner, Text};
use crate::model;

#[derive(Debug, Clone, Serialize)]
pub struct PlanBackup {
    pub path: Text,
    pub format: model::BackupFormat,
    /// Parallel jobs; `None` means the machine's cores, at most 4.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jobs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compress: Option<u32>,
    pub schema_only: bool,
    pub data_only: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<Text>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude_tables: Vec<Text>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<Text>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude_schemas: Vec<Text>,
    pub verify: model::Verify,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_for: Option<crate::duration::Duration>,
}

impl PlanBackup {
    /// In one line, for the progress display; `shown` renders a template.
    pub fn describe(&self, shown: &dyn Fn(&Text) -> String) -> String {
        format!("backup ({}) to {}", self.format.name(), shown(&self.path))
    }
}

impl Planner<'_> {
    pub(super) fn backup(&mut self, b: &model::BackupStep) -> Action {
        let mut list =
            |items: &[String]| -> Vec<Text> { items.iter().map(|x| self.text(x)).collect() };
        let tables = list(&b.tables);
        let exclude_tables = list(&b.exclude_tables);
        let schemas = list(&b.schemas);
        let exclude_schemas = list(&b.exclude_schemas);
        Action::Backup(Box::new(PlanBackup {
            path: self.text(&b.path),
            format: b.format,
            jobs: b.jobs,
            compress: b.compress,
            schema_only: b.schema_only,
            data_only: b.data_only,
            tables,
            exclude_tables,
            schemas,
            exclude_schemas,
            verify: b.verify,
            keep: b
                .keep
                .as_deref()
                .and_then(|k| self.count_setting(k, "keep")),
            keep_for: b
                .keep_for
                .as_ref()
                .map(|d| self.duration_setting(Some(d), std::time::Duration::ZERO, "keep_for")),
        }))
    }
}

pub(super) fn write(o: &mut String, b: &PlanBackup, inner: usize) {
    let w = inner + 2;
    let jobs = match (b.format, b.jobs) {
        (model::BackupFormat::Directory, Some(j)) => format!(", {j} jobs"),
        (model::BackupFormat::Directory, None) => ", jobs: cores (at most 4)".to_string(),
        _ => String::new(),
    };
    let _ = writeln!(
        o,
        "{:w$}pg_dump {} format{jobs} -> {}",
        "",
        b.format.name(),
        b.path.text
    );
    let mut what = Vec::new();
    if b.schema_only {
        what.push("schema only".to_string());
    }
    if b.data_only {
        what.push("data only".to_string());
    }
    if let Some(c) = b.compress {
        what.push(format!("compress {c}"));
    }
    for (label, list) in [
        ("tables", &b.tables),
        ("exclude tables", &b.exclude_tables),
        ("schemas", &b.schemas),
        ("exclude schemas", &b.exclude_schemas),
    ] {
        if !list.is_empty() {
            what.push(format!("{label} {}", texts(list)));
        }
    }
    if !what.is_empty() {
        let _ = writeln!(o, "{:w$}{}", "", what.join("; "));
    }
    let verify = match b.verify {
        model::Verify::None => "hashes only, not read back",
        model::Verify::List => "pg_restore --list covers every table",
        model::Verify::Restore => "restore into a scratch database, compare row counts",
    };
    let _ = writeln!(
        o,
        "{:w$}manifest.json: sha256 of every file, row counts in the dump's snapshot",
        ""
    );
    let _ = writeln!(o, "{:w$}verify: {verify}", "");
    if let Some(d) = b.keep_for {
        let _ = writeln!(
            o,
            "{:w$}remove this runbook's backups beside it older than {d}",
            ""
        );
    }
    if let Some(k) = b.keep {
        let _ = writeln!(
            o,
            "{:w$}keep the newest {k} backups of this runbook beside it",
            ""
        );
    }
}
