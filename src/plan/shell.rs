//! A shell step's plan: `sh -c SCRIPT`, or an argv run directly.

use std::fmt::Write as _;

use indexmap::IndexMap;
use serde::Serialize;

use super::text::write_block;
use super::{Action, Planner, Text};
use crate::model::{self, Command};

/// A shell step: `sh -c SCRIPT` when `script` is set, else `argv` run directly.
#[derive(Debug, Clone, Serialize)]
pub struct PlanShell {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script: Option<Text>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<Text>,
    pub env: IndexMap<String, Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<Text>,
    pub expect_exit: Vec<i32>,
}

impl PlanShell {
    /// In one line, for the progress display; `shown` renders a template.
    pub fn describe(&self, shown: &dyn Fn(&Text) -> String) -> String {
        match &self.script {
            Some(t) => shown(t),
            None => self.argv.iter().map(shown).collect::<Vec<_>>().join(" "),
        }
    }
}

impl Planner<'_> {
    pub(super) fn shell(&mut self, sh: &model::ShellStep) -> Action {
        let (script, argv) = match &sh.command {
            Command::Script(t) => (Some(self.text(t)), Vec::new()),
            Command::Argv(a) => (None, a.iter().map(|x| self.text(x)).collect()),
        };
        Action::Shell(Box::new(PlanShell {
            script,
            argv,
            env: sh
                .env
                .iter()
                .map(|(k, v)| (k.clone(), self.text(v)))
                .collect(),
            cwd: sh.cwd.as_ref().map(|c| self.text(c)),
            expect_exit: sh.expect_exit.clone(),
        }))
    }
}

pub(super) fn write(o: &mut String, sh: &PlanShell, inner: usize) {
    let PlanShell {
        script,
        argv,
        env,
        cwd,
        expect_exit,
    } = sh;
    match script {
        Some(t) => write_block(o, &format!("$ {}", t.text), inner + 2),
        None => {
            let words: Vec<&str> = argv.iter().map(|t| t.text.as_str()).collect();
            let _ = writeln!(o, "{:w$}$ {}", "", words.join(" "), w = inner + 2);
        }
    }
    for (k, v) in env {
        let _ = writeln!(o, "{:inner$}env {k}={}", "", v.text);
    }
    if let Some(c) = cwd {
        let _ = writeln!(o, "{:inner$}cwd {}", "", c.text);
    }
    if expect_exit.as_slice() != [0] {
        let codes: Vec<String> = expect_exit.iter().map(ToString::to_string).collect();
        let _ = writeln!(o, "{:inner$}expect exit {}", "", codes.join(" or "));
    }
}
