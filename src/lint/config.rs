//! Which rules run and how loud each is: squawk's defaults, then a
//! runbook-lint.toml, then a runbook's own `lint:` section, then flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use squawk_linter::Rule;

use super::{Finding, Severity, rules};
use crate::model::{LintConfig, LintLevel};

/// The file at the project root that configures lint for every input.
pub const CONFIG_FILE: &str = "runbook-lint.toml";

/// Rule choices: what to add to squawk's defaults, what to remove, each
/// rule's level, the PostgreSQL version the SQL targets, and how far back
/// a migration history was applied to an empty database.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub include: Vec<Rule>,
    pub exclude: Vec<Rule>,
    pub levels: BTreeMap<String, LintLevel>,
    pub pg_version: Option<squawk_linter::Version>,
    pub assume_empty_before: Option<String>,
    pub applied_through: Option<String>,
}

/// Every rule name lint knows: runbook's own, squawk's, and `syntax-error`.
fn rule_names() -> impl Iterator<Item = String> {
    rules::RULES
        .iter()
        .map(|(n, _, _)| n.to_string())
        .chain(std::iter::once(super::SYNTAX_ERROR.to_string()))
        .chain(enum_iterator::all::<Rule>().map(|r| r.to_string()))
}

fn known_rule(name: &str) -> Result<(), String> {
    if rule_names().any(|n| n == name) {
        return Ok(());
    }
    let names: Vec<String> = rule_names().collect();
    Err(format!(
        "unknown lint rule `{name}`{}",
        crate::diag::did_you_mean(name, names.iter().map(String::as_str))
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default()
    ))
}

impl Config {
    /// Apply a `lint:` section (or a runbook-lint.toml) on top of this one.
    pub fn merge(&mut self, c: &LintConfig) -> Result<(), String> {
        for name in c
            .include
            .iter()
            .chain(&c.exclude)
            .chain(c.severities.keys())
        {
            known_rule(name)?;
        }
        for name in &c.include {
            if let Ok(r) = name.parse::<Rule>() {
                self.include.push(r);
            }
            self.levels.remove(name);
        }
        for name in &c.exclude {
            if let Ok(r) = name.parse::<Rule>() {
                self.exclude.push(r);
            }
            self.levels.insert(name.clone(), LintLevel::Off);
        }
        for (name, level) in &c.severities {
            self.levels.insert(name.clone(), *level);
        }
        if let Some(v) = &c.pg_version {
            self.pg_version = Some(
                v.parse()
                    .map_err(|e| format!("lint pg_version `{v}`: {e}"))?,
            );
        }
        if let Some(v) = &c.assume_empty_before {
            self.assume_empty_before = Some(v.clone());
        }
        if let Some(v) = &c.applied_through {
            self.applied_through = Some(v.clone());
        }
        Ok(())
    }

    /// Read a runbook-lint.toml (same keys as a runbook's `lint:` section).
    pub fn read_file(&mut self, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let c: LintConfig = toml::from_str(&text)
            .map_err(|e| format!("{}: {}", path.display(), e.to_string().trim_end()))?;
        self.merge(&c)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Levels: drop findings of rules turned off, set the others' severity.
    /// One pass, whatever the number of findings.
    pub(super) fn apply(&self, findings: &mut Vec<Finding>, from: usize) {
        if self.levels.is_empty() {
            return;
        }
        let mut i = 0;
        findings.retain_mut(|f| {
            i += 1;
            if i <= from {
                return true;
            }
            match self.levels.get(&f.rule) {
                Some(LintLevel::Off) => return false,
                Some(LintLevel::Warning) => f.severity = Severity::Warning,
                Some(LintLevel::Error) => f.severity = Severity::Error,
                None => {}
            }
            true
        });
    }
}

/// The nearest runbook-lint.toml in `dir` or a directory above it.
pub fn find_config(dir: &Path) -> Option<PathBuf> {
    let mut at = Some(dir);
    while let Some(d) = at {
        let candidate = d.join(CONFIG_FILE);
        if candidate.is_file() {
            return Some(candidate);
        }
        at = d.parent();
    }
    None
}

/// The project's configuration for a runbook: the nearest
/// runbook-lint.toml from the runbook's directory up.
pub fn config_for(runbook: &Path) -> Result<Config, String> {
    let mut c = Config::default();
    let dir = std::path::absolute(runbook.parent().unwrap_or(Path::new(".")))
        .unwrap_or_else(|_| PathBuf::from("."));
    if let Some(f) = find_config(&dir) {
        c.read_file(&f)?;
    }
    Ok(c)
}
