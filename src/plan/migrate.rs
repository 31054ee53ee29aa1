//! A migrate step's plan: a migration directory, applied up or down.

use std::fmt::Write as _;

use serde::Serialize;

use super::{Action, Planner, Text};
use crate::diag::Diagnostic;
use crate::model;

#[derive(Debug, Clone, Serialize)]
pub struct PlanMigrate {
    pub dir: Text,
    /// `auto` or a format name.
    pub format: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Text>,
    pub direction: model::Direction,
    pub history: PlanHistory,
    pub allow_checksum_change: bool,
    /// Unset: as a Flyway project's `group` says, else false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub single_transaction: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_of_order: Option<bool>,
    #[serde(skip_serializing_if = "PlanSelect::is_empty")]
    pub select: PlanSelect,
}

/// Liquibase's changesets this step runs: its contexts and label filter
/// (templates, rendered when the step runs).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlanSelect {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contexts: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_filter: Option<Text>,
}

impl PlanSelect {
    pub fn is_empty(&self) -> bool {
        self.contexts.is_none() && self.label_filter.is_none()
    }
}

/// Where the migrations are recorded: a tool (`auto`: detected) and a table
/// (none: the tool's own, or detected).
#[derive(Debug, Clone, Serialize)]
pub struct PlanHistory {
    pub format: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
}

impl PlanHistory {
    /// What the step's keys say: `history:` or the older `history_table:`.
    pub fn of(history: Option<&model::HistoryConfig>, table: Option<&String>) -> PlanHistory {
        PlanHistory {
            format: history
                .and_then(|h| h.format.clone())
                .unwrap_or_else(|| "auto".into()),
            table: history
                .and_then(|h| h.table.clone())
                .or_else(|| table.cloned()),
        }
    }

    /// As the history module takes it; the schema has checked the format.
    pub fn spec(&self) -> Result<crate::history::Spec, String> {
        Ok(crate::history::Spec {
            tool: crate::history::Tool::parse(&self.format)?,
            table: self.table.clone(),
        })
    }

    /// For people: `knex in public.knex_migrations`, or how it is found.
    /// A table in `public` moves to the schema a URL names as application
    /// tools name it ([`crate::history::Tool::table_in`]).
    pub fn describe(&self) -> String {
        match (self.format.as_str(), &self.table) {
            ("auto", None) => format!(
                "detected (a known tool's table; else a new one: Prisma's or Flyway's for their \
                 directories, runbook's own {} for any other{IN_URLS})",
                model::DEFAULT_HISTORY_TABLE
            ),
            ("auto", Some(t)) => format!("in {t} (its tool detected)"),
            (f, None) => {
                let tool = crate::history::Tool::parse(f).ok().flatten();
                format!(
                    "{f}'s, in {}{}",
                    tool.map_or("its table", |t| t.default_table()),
                    if tool.is_some_and(|t| t.table_in(Some("s")) != t.default_table()) {
                        IN_URLS
                    } else {
                        ""
                    }
                )
            }
            (f, Some(t)) => format!("{f}'s, in {t}"),
        }
    }
}

impl PlanMigrate {
    /// In one line, for the progress display; `shown` renders a template.
    pub fn describe(&self, shown: &dyn Fn(&Text) -> String) -> String {
        format!(
            "migrate {} {}",
            match self.direction {
                model::Direction::Up => "up",
                model::Direction::Down => "down",
            },
            shown(&self.dir)
        )
    }
}

impl Planner<'_> {
    pub(super) fn migrate(&mut self, m: &model::MigrateStep) -> Action {
        Action::Migrate(Box::new(PlanMigrate {
            dir: self.text(&m.dir),
            format: m.format.clone().unwrap_or_else(|| "auto".into()),
            to: m.to.as_ref().map(|t| self.target(t, m.direction)),
            steps: m.steps.as_ref().map(|t| self.steps_limit(t)),
            direction: m.direction,
            history: PlanHistory::of(m.history.as_ref(), m.history_table.as_ref()),
            allow_checksum_change: m.allow_checksum_change,
            single_transaction: m.single_transaction,
            out_of_order: m.out_of_order,
            select: self.select(m.contexts.as_ref(), m.label_filter.as_ref()),
        }))
    }

    /// `contexts` and `label_filter`, each checked now where its value is
    /// known (not from a step's output): one Liquibase could not read stops
    /// the run before anything changes.
    pub(super) fn select(
        &mut self,
        contexts: Option<&String>,
        label_filter: Option<&String>,
    ) -> PlanSelect {
        let contexts = contexts.map(|c| (c, self.text(c)));
        let label_filter = label_filter.map(|f| (f, self.text(f)));
        let known = |x: &Option<(&String, Text)>| {
            x.as_ref()
                .filter(|(_, t)| t.template.is_none() && t.after.is_empty())
                .map(|(_, t)| t.raw.expose().to_string())
        };
        if let Err((key, e)) = crate::migrations::liquibase_check_select(
            known(&contexts).as_deref(),
            known(&label_filter).as_deref(),
        ) {
            let source = if key == "contexts" {
                &contexts
            } else {
                &label_filter
            };
            let (written, shown) = source
                .as_ref()
                .map(|(w, t)| (w.as_str(), t.text.clone()))
                .unwrap_or_default();
            self.errors.push(
                Diagnostic::new(format!("`{key}` is `{shown}`, which Liquibase cannot read"))
                    .at(self.span_of(written))
                    // The value is quoted in it: a secret param's is not shown.
                    .label(self.redactor.redact(&e).into_owned())
                    .hint("`contexts` is a comma list of names (`prod, eu`); `label_filter` an expression: names joined by `,` or `or`, and `and`, with `!` and parentheses (`v2 and !beta`)"),
            );
        }
        PlanSelect {
            contexts: contexts.map(|(_, t)| t),
            label_filter: label_filter.map(|(_, t)| t),
        }
    }
}

impl Planner<'_> {
    /// `to:` rendered; a value known now (from params) is checked now, so
    /// a bad one stops the run before anything changes.
    fn target(&mut self, to: &str, direction: model::Direction) -> Text {
        self.target_hinted(to, direction, None)
    }

    /// [`Self::target`], with the hint a step that only goes up (a
    /// rehearsal) gives instead of the migrate step's.
    pub(super) fn target_hinted(
        &mut self,
        to: &str,
        direction: model::Direction,
        up_only: Option<&'static str>,
    ) -> Text {
        let t = self.text(to);
        if to.contains("{{")
            && t.template.is_none()
            && let Err((label, hint)) = crate::migrations::check_target(t.raw.expose(), direction)
        {
            let hint = up_only.unwrap_or(hint);
            self.errors.push(
                Diagnostic::new(format!(
                    "`to` renders to `{}`, which is not a version",
                    t.text
                ))
                .at(self.span_of(to))
                .label(label)
                .hint(hint),
            );
        }
        t
    }

    /// `steps:` rendered, and checked now when its value is known now.
    fn steps_limit(&mut self, n: &str) -> Text {
        let t = self.text(n);
        if n.contains("{{")
            && t.template.is_none()
            && let Err(why) = crate::migrations::parse_steps(t.raw.expose())
        {
            self.errors.push(
                Diagnostic::new(format!("`steps` renders to `{}`, which {why}", t.text))
                    .at(self.span_of(n))
                    .label("expected a whole number, 1 or more")
                    .hint("pass a number: `--set NAME=1`"),
            );
        }
        t
    }
}

pub(super) fn write(o: &mut String, m: &PlanMigrate, inner: usize) {
    let pad = inner + 2;
    let to = m.to.as_ref().map(|t| t.text.as_str());
    let n = m
        .steps
        .as_ref()
        .map(|n| format!(", at most {}", n.text))
        .unwrap_or_default();
    let what = match (m.direction, to) {
        (model::Direction::Up, to) => format!(
            "apply pending migrations{}{n}",
            to.filter(|t| *t != "latest")
                .map(|t| format!(" through {t}"))
                .unwrap_or_default(),
        ),
        (model::Direction::Down, Some("before_run")) => {
            format!("roll back the migrations this run applied, the last applied first{n}")
        }
        (model::Direction::Down, to) => format!(
            "roll back applied migrations{}{n}",
            to.map(|t| format!(", down to {t}")).unwrap_or_default(),
        ),
    };
    let _ = writeln!(
        o,
        "{:pad$}{what} from {} ({} format)",
        "", m.dir.text, m.format
    );
    let _ = writeln!(
        o,
        "{:pad$}{}; history {}",
        "",
        match m.single_transaction {
            Some(true) => "all in one transaction: none is applied unless all are",
            Some(false) => "each in its own transaction unless it cannot run in one",
            None =>
                "each in its own transaction unless it cannot run in one (all in one where a Flyway project's `group` says so)",
        },
        m.history.describe()
    );
    let _ = writeln!(
        o,
        "{:pad$}refuses a dirty migration{}",
        "",
        if m.allow_checksum_change {
            "; a changed applied file is accepted and recorded"
        } else {
            " and a changed applied file"
        }
    );
    if m.direction == model::Direction::Down {
        let _ = writeln!(
            o,
            "{:pad$}the last applied first; an applied migration it would keep, applied after one it rolls back: {}",
            "",
            match m.out_of_order {
                Some(true) => "kept, with a warning",
                _ => "refused before anything runs",
            }
        );
    }
    if m.direction == model::Direction::Up {
        let _ = writeln!(
            o,
            "{:pad$}a pending migration older than the newest applied: {}",
            "",
            match m.out_of_order {
                Some(true) => "applied, with a warning",
                Some(false) => "refused before anything runs",
                None =>
                    "refused where the history's tool refuses it (Flyway, Supabase, goose, node-pg-migrate, refinery, Drizzle), else applied with a warning",
            }
        );
    }
}

/// Where a history in `public` goes instead.
const IN_URLS: &str = ", or the same table in a schema the URL names";
