//! `runbook init`: a starting runbook, copied from one of the ready ones,
//! with the migration directory this project already has wired into it,
//! its params filled in, and a `$schema` modeline that works. Never connects.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::diag::{did_you_mean, one_of};
use crate::exit;
use crate::fsutil::relative;

/// A ready runbook `init` can start from.
pub struct Template {
    pub name: &'static str,
    pub text: &'static str,
    /// What it is for, in a line.
    pub about: &'static str,
    /// The param that takes the migration directory (or project), if any.
    pub dir_param: Option<&'static str>,
}

pub const TEMPLATES: &[Template] = &[
    Template {
        name: "migrate-safe",
        text: include_str!("../runbooks/migrate-safe.yml"),
        about: "a guarded migration: preflight, verified backup, apply, postflight, rollback",
        dir_param: Some("migrations"),
    },
    Template {
        name: "ci-rehearsal",
        text: include_str!("../runbooks/ci-rehearsal.yml"),
        about: "every migration up, down and up again on a scratch copy, with timings (CI)",
        dir_param: Some("migrations"),
    },
    Template {
        name: "staging-rehearsal",
        text: include_str!("../runbooks/staging-rehearsal.yml"),
        about: "rehearse the pending migrations on a copy of staging",
        dir_param: Some("migrations"),
    },
    Template {
        name: "deploy-with-rollback",
        text: include_str!("../runbooks/deploy-with-rollback.yml"),
        about: "back up, migrate, health-check, and restore on failure",
        dir_param: Some("migrations"),
    },
    Template {
        name: "prod-migration",
        text: include_str!("../runbooks/prod-migration.yml"),
        about: "expand, backfill, verify and contract one column change in production",
        dir_param: None,
    },
    Template {
        name: "zero-downtime",
        text: include_str!("../runbooks/zero-downtime.yml"),
        about: "expand, batched backfill, wait, watch, contract behind sign-offs",
        dir_param: None,
    },
    Template {
        name: "add-column",
        text: include_str!("../runbooks/add-column.yml"),
        about: "add a nullable column and index it without blocking writes",
        dir_param: None,
    },
    Template {
        name: "knex-rehearsal",
        text: include_str!("../examples/knex-rehearsal/runbook.yml"),
        about: "rehearse Knex migrations through Knex, one at a time",
        dir_param: Some("project"),
    },
];

/// What `runbook init` was asked.
pub struct InitArgs {
    pub from: Option<String>,
    pub migrations: Option<PathBuf>,
    pub output: PathBuf,
    pub set: Vec<String>,
    pub force: bool,
}

/// A migration directory found in the project.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub dir: PathBuf,
    /// The tool that owns it, as people call it: `dbmate`, `knex`…
    pub tool: String,
    pub count: usize,
    /// Its format has no downs, by design (Prisma's, plain `.sql` files).
    pub forward_only: bool,
    /// The application's migrations in code beside them (goose's Go,
    /// Flyway's Java), which runbook never passes over.
    pub in_code: usize,
}

impl Found {
    /// `28 golang-migrate migrations`, or the tool alone when not counted;
    /// with the migrations in code, and what a deploy does with them.
    fn described(&self) -> String {
        let mut out = match self.count {
            0 => self.tool.clone(),
            n => format!("{n} {} migrations", self.tool),
        };
        if self.in_code > 0 {
            out.push_str(&format!(
                ", and {} in the application's code, which its {} applies: a deploy or rehearsal stops before a pending one (`to`, see docs/migrations.md)",
                self.in_code, self.tool
            ));
        }
        out
    }
}

/// Directory names that hold migrations, by the tools' conventions.
const NAMES: &[&str] = &[
    "migrations",
    "migration",
    "migrate",
    "sql",
    "drizzle",
    // Liquibase's, where Spring Boot looks: `db/changelog`.
    "changelog",
];

/// Directories never worth a look: dependencies, builds, VCS.
const SKIP: &[&str] = &[
    "node_modules",
    "vendor",
    "target",
    "dist",
    "build",
    "out",
    "testdata",
];

/// Directories of another database engine's migrations: a project that
/// keeps `migrations/mysql` and `migrations/postgresql` (Vaultwarden) has
/// runbook's in the second.
const OTHER_ENGINES: &[&str] = &[
    "mysql",
    "mariadb",
    "sqlite",
    "sqlite3",
    "mssql",
    "sqlserver",
    "oracle",
    "clickhouse",
];

/// A directory named for another engine, alone or as a word of its name:
/// `mysql`, Conductor's `mysql-persistence` module, its
/// `migration_scheduler_mysql`.
fn other_engine(name: &str) -> bool {
    name.to_ascii_lowercase()
        .split(['-', '_', '.'])
        .any(|word| OTHER_ENGINES.contains(&word))
}

/// A directory named like one that holds migrations: one of [`NAMES`], or
/// a name that starts with `migration` (Conductor's `migration_postgres`).
fn migrations_name(name: &str) -> bool {
    NAMES.contains(&name) || name.to_ascii_lowercase().starts_with("migration")
}

/// How deep under the project the search goes: real projects keep
/// migrations at `packages/prisma/migrations`,
/// `cmd/app-migrate/migrate/migrations`, or in a module of a Maven build,
/// `api/src/main/resources/marquez/db/migration` (Marquez).
const DEPTH: usize = 7;

/// The project's migration directories under `root`, best first: of the
/// directories named like one (within [`DEPTH`] levels, outside
/// dependencies and builds), or one level inside such a directory
/// (`migrations/postgresql`), that runbook can read, or Knex's, the one
/// with the most migrations, then the shallowest, then by path (so the
/// choice never depends on the order the file system lists them in). A
/// directory runbook cannot run (a goose directory with Go migrations in
/// it, say) is not listed; why is added to `refused`, so that init can say
/// so rather than find nothing.
pub fn detect(root: &Path, refused: &mut Vec<String>) -> Vec<Found> {
    let mut all: Vec<(usize, Found)> = Vec::new();
    let mut queue = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = queue.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if !path.is_dir()
                || name.starts_with('.')
                || SKIP.contains(&name.as_str())
                || other_engine(&name)
            {
                continue;
            }
            if migrations_name(&name) {
                match migration_dir(root, &path, refused) {
                    Some(found) => all.push((depth, found)),
                    // One level in: one directory per engine or kind
                    // (quickwit's `migrations/postgresql` beside
                    // `migrations/postgresql_deferred`), each a candidate.
                    None => {
                        let mut inside: Vec<PathBuf> = std::fs::read_dir(&path)
                            .into_iter()
                            .flatten()
                            .filter_map(Result::ok)
                            .filter(|c| {
                                c.path().is_dir() && !other_engine(&c.file_name().to_string_lossy())
                            })
                            .map(|c| c.path())
                            .collect();
                        inside.sort();
                        for c in inside {
                            if let Some(found) = migration_dir(root, &c, refused) {
                                all.push((depth + 1, found));
                            }
                        }
                    }
                }
            }
            if depth + 1 < DEPTH {
                queue.push((path, depth + 1));
            }
        }
    }
    all.sort_by(|(da, a), (db, b)| {
        b.count
            .cmp(&a.count)
            .then(da.cmp(db))
            .then_with(|| a.dir.cmp(&b.dir))
    });
    // `migrate/migrations` is found from `migrate` and on its own.
    let mut seen = std::collections::BTreeSet::new();
    all.into_iter()
        .map(|(_, f)| f)
        .filter(|f| seen.insert(f.dir.clone()))
        .collect()
}

/// What `dir` holds, if it is a migration directory; why not, in
/// `refused`, when it holds migrations runbook cannot run.
fn migration_dir(root: &Path, dir: &Path, refused: &mut Vec<String>) -> Option<Found> {
    let shown = dir.strip_prefix(root).unwrap_or(dir).to_path_buf();
    if let Some(mut found) = knex(dir) {
        found.dir = shown;
        return Some(found);
    }
    let set = match crate::migrations::load(dir, None) {
        Ok(set) => set,
        Err(crate::migrations::LoadError::Empty(_)) => return None,
        Err(e) => {
            // `migrate/migrations` is seen from `migrate` and on its own.
            let why = format!("{}: {e}", shown.display());
            if !refused.contains(&why) {
                refused.push(why);
            }
            return None;
        }
    };
    // Flyway's repeatable migrations are migrations too.
    let count = set.migrations.len() + set.repeatables.len();
    if count == 0 {
        return None;
    }
    let tool = match (crate::history::Tool::of_set(&set), set.format.name()) {
        (Some(crate::history::Tool::Supabase), _) => "Supabase CLI",
        (Some(crate::history::Tool::Sqlx), _) => "SQLx",
        (Some(crate::history::Tool::Refinery), _) => "Refinery",
        (_, "pairs") => "golang-migrate",
        (_, other) => other,
    };
    Some(Found {
        in_code: set.code_migrations.len(),
        dir: shown,
        tool: tool.to_string(),
        count,
        forward_only: !set.migrations.is_empty()
            && set
                .migrations
                .iter()
                .all(crate::migrations::Migration::forward_only),
    })
}

/// Knex: a knexfile in the directory above (or two above) a directory of
/// .js or .ts migrations.
fn knex(dir: &Path) -> Option<Found> {
    let knexfile = dir.ancestors().skip(1).take(2).any(|up| {
        ["knexfile.js", "knexfile.ts", "knexfile.cjs", "knexfile.mjs"]
            .iter()
            .any(|f| up.join(f).is_file())
    });
    if !knexfile {
        return None;
    }
    let count = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            [".js", ".ts", ".cjs", ".mjs"]
                .iter()
                .any(|x| n.ends_with(x))
        })
        .count();
    (count > 0).then(|| Found {
        dir: dir.to_path_buf(),
        tool: "knex".into(),
        count,
        forward_only: false,
        in_code: 0,
    })
}

/// The template for what was found (or asked).
fn default_template(found: Option<&Found>) -> &'static str {
    match found {
        Some(f) if f.tool == "knex" => "knex-rehearsal",
        Some(_) => "migrate-safe",
        None => "add-column",
    }
}

fn refuse(message: &str, hint: &str) -> u8 {
    crate::say!("error: {message}\n  = help: {hint}\n\nerror: nothing was written");
    exit::INVALID
}

pub fn init(a: InitArgs) -> u8 {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let mut refused = Vec::new();
    // Other migration directories than the one wired in, to name.
    let mut others: Vec<Found> = Vec::new();
    let found = match &a.migrations {
        Some(dir) => {
            if !dir.is_dir() {
                return refuse(
                    &format!("--migrations `{}` is not a directory", dir.display()),
                    "give the directory that holds the migration files",
                );
            }
            let (tool, forward_only) = match crate::migrations::load(dir, None) {
                Ok(s) => (
                    s.format.name().replace("pairs", "golang-migrate"),
                    !s.migrations.is_empty()
                        && s.migrations
                            .iter()
                            .all(crate::migrations::Migration::forward_only),
                ),
                Err(_) if knex(dir).is_some() => ("knex".into(), false),
                Err(e) => {
                    return refuse(
                        &format!(
                            "runbook cannot run the migrations in `{}`: {e}",
                            dir.display()
                        ),
                        e.hint()
                            .unwrap_or("`runbook lint DIR` names each file runbook cannot run"),
                    );
                }
            };
            Some(Found {
                dir: dir.clone(),
                tool,
                count: 0,
                forward_only,
                in_code: 0,
            })
        }
        None => {
            let mut all = detect(&cwd, &mut refused).into_iter();
            let best = all.next();
            others = all.collect();
            best
        }
    };
    let name = match &a.from {
        Some(n) => n.clone(),
        None => ask_template(found.as_ref()),
    };
    let Some(template) = TEMPLATES.iter().find(|t| t.name == name) else {
        let names: Vec<&str> = TEMPLATES.iter().map(|t| t.name).collect();
        let hint = match did_you_mean(&name, names.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("the ready runbooks are {}", one_of(&names)),
        };
        return refuse(&format!("no ready runbook is named `{name}`"), &hint);
    };
    if a.output.exists() && !a.force {
        return refuse(
            &format!("`{}` exists", a.output.display()),
            "choose another file with -o FILE, or pass --force to replace it",
        );
    }
    let out_dir = a
        .output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let mut defaults: Vec<(String, String)> = Vec::new();
    if let (Some(param), Some(f)) = (template.dir_param, &found) {
        let dir = if param == "project" {
            relative(&cwd, &out_dir)
        } else {
            relative(&f.dir, &out_dir)
        };
        defaults.push((param.to_string(), dir));
    }
    // A rehearsal of migrations without downs is a rehearsal of their ups:
    // not one failure per migration for the downs they cannot have.
    let forward_only = found.as_ref().is_some_and(|f| f.forward_only)
        && template.text.contains("\n  forward_only:\n")
        && !a
            .set
            .iter()
            .any(|s| s.trim_start().starts_with("forward_only="));
    if forward_only {
        defaults.push(("forward_only".into(), "true".into()));
    }
    for s in &a.set {
        let Some((k, v)) = s.split_once('=') else {
            return refuse(
                &format!("--set `{s}` is not NAME=VALUE"),
                "such as --set table=orders",
            );
        };
        defaults.retain(|(name, _)| name != k.trim());
        defaults.push((k.trim().to_string(), v.to_string()));
    }
    let text = match render(template, &defaults, &out_dir, &cwd) {
        Ok(t) => usage_of(&t, template.name, &a.output, &defaults),
        Err((message, hint)) => return refuse(&message, &hint),
    };
    if forward_only && let Some(f) = &found {
        crate::say!(
            "note: forward_only is true: {} migrations have no downs, so each up is rehearsed, and its drift and destroyed data reported",
            f.tool
        );
    }
    for why in &refused {
        crate::say!("note: not wired in: {why}");
    }
    if template.dir_param.is_some() {
        const NAMED: usize = 5;
        for f in others.iter().take(NAMED) {
            crate::say!(
                "note: also found {} ({}); to use it: runbook init --migrations {0}",
                f.dir.display(),
                f.described()
            );
        }
        if others.len() > NAMED {
            crate::say!(
                "note: and {} more migration directories with as many migrations or fewer",
                others.len() - NAMED
            );
        }
    }
    write_files(&a.output, &text, &cwd, template, found.as_ref())
}

/// Ask which ready runbook to start from, at a terminal; elsewhere, the default.
fn ask_template(found: Option<&Found>) -> String {
    let default = default_template(found);
    let interactive = std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal()
        && std::env::var_os("CI").is_none();
    if !interactive {
        return default.to_string();
    }
    let mut err = std::io::stderr();
    if let Some(f) = found {
        let _ = writeln!(
            err,
            "Found {} migrations in {} ({}).",
            f.count,
            f.dir.display(),
            f.tool
        );
    }
    let _ = writeln!(err, "Start from which ready runbook?");
    for (i, t) in TEMPLATES.iter().enumerate() {
        let mark = if t.name == default { " (default)" } else { "" };
        let _ = writeln!(err, "  {:>2}. {:<22} {}{mark}", i + 1, t.name, t.about);
    }
    let _ = write!(err, "Number or name [{default}]: ");
    let _ = err.flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    let answer = line.trim();
    match answer.parse::<usize>() {
        Ok(n) if (1..=TEMPLATES.len()).contains(&n) => TEMPLATES[n - 1].name.to_string(),
        _ if answer.is_empty() => default.to_string(),
        _ => answer.to_string(),
    }
}

/// The template with a working modeline and its params' defaults set,
/// checked as a runbook before it is written.
fn render(
    template: &Template,
    defaults: &[(String, String)],
    out_dir: &Path,
    cwd: &Path,
) -> Result<String, (String, String)> {
    let schema = relative(&cwd.join(".runbook/runbook.v1.schema.json"), out_dir);
    let mut text = String::new();
    for (i, line) in template.text.lines().enumerate() {
        if i == 0 && line.starts_with("# yaml-language-server:") {
            text.push_str(&format!("# yaml-language-server: $schema={schema}\n"));
            text.push_str(&format!(
                "#\n# Written by `runbook init` from the ready runbook `{}` (runbook {}).\n",
                template.name,
                env!("CARGO_PKG_VERSION")
            ));
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    let doc = crate::load::load_str(template.name, text.clone()).map_err(|f| {
        (
            f.diagnostic.message,
            "report this: a ready runbook does not load".into(),
        )
    })?;
    for (name, value) in defaults {
        let ty = doc.value["params"][name]["type"].as_str().ok_or_else(|| {
            let names: Vec<String> = doc.value["params"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            (
                format!("`{}` has no param `{name}`", template.name),
                match did_you_mean(name, names.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("its params are {}", one_of(&names)),
                },
            )
        })?;
        let yaml = match ty {
            "integer" | "number" | "boolean" => value.clone(),
            _ => Value::String(value.clone()).to_string(),
        };
        text = set_default(&text, name, &yaml);
    }
    let doc = crate::load::load_str(template.name, text.clone())
        .map_err(|f| (f.diagnostic.message, "check the --set values".into()))?;
    crate::validate::validate_doc(
        doc,
        &crate::validate::Inputs::default(),
        crate::validate::ParamCheck::GivenOnly,
    )
    .map_err(|invalid| {
        (
            invalid
                .render(false)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
            "a --set value does not fit its param's type or constraints".into(),
        )
    })?;
    Ok(text)
}

/// The written runbook's opening comment, which shows how to run the ready
/// one (`runbook exec runbooks/ci-rehearsal.yml --set migrations=...`),
/// made to show how to run this one: its own path, and no `--set` of a
/// param whose default init wrote. A command line left empty by that goes,
/// with the line continuation before it.
fn usage_of(text: &str, template: &str, output: &Path, defaults: &[(String, String)]) -> String {
    let from = [
        format!("runbooks/{template}.yml"),
        format!("examples/{template}/runbook.yml"),
    ];
    let to = output.display().to_string();
    let sets: Vec<regex::Regex> = defaults
        .iter()
        .filter_map(|(name, _)| {
            regex::Regex::new(&format!(
                r#" --set {}=("[^"]*"|'[^']*'|\S+)"#,
                regex::escape(name)
            ))
            .ok()
        })
        .collect();
    let mut out: Vec<String> = Vec::new();
    let mut lines = text.lines();
    for line in lines.by_ref() {
        if !line.starts_with('#') {
            out.push(line.to_string());
            break;
        }
        let mut l = line.replace(&from[0], &to).replace(&from[1], &to);
        for re in &sets {
            l = re.replace_all(&l, "").into_owned();
        }
        let rest = l.trim_start_matches('#').trim();
        if line != l && (rest.is_empty() || rest == "\\") {
            // The command ended on this line: the one before ends it now.
            if rest.is_empty()
                && let Some(prev) = out.last_mut()
                && let Some(cut) = prev.strip_suffix(" \\")
            {
                *prev = cut.to_string();
            }
            continue;
        }
        out.push(l);
    }
    out.extend(lines.map(str::to_string));
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// `text` with param `name`'s default set to `yaml`: its `default:` line
/// replaced, or one added after its `type:` line.
fn set_default(text: &str, name: &str, yaml: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    // Which lines belong to the param: from `  name:` under `params:` to
    // the next line indented two spaces or less.
    let mut in_params = false;
    let mut inside = vec![false; lines.len()];
    let mut in_param = false;
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with(' ') && !line.starts_with('#') && !line.is_empty() {
            in_params = line.starts_with("params:");
            in_param = false;
        } else if in_params && line.starts_with("  ") && !line.starts_with("   ") {
            in_param = line.trim_end() == format!("  {name}:");
            continue;
        }
        inside[i] = in_param;
    }
    let has_default = (0..lines.len()).any(|i| inside[i] && lines[i].starts_with("    default:"));
    let mut out: Vec<String> = Vec::with_capacity(lines.len() + 1);
    for (i, line) in lines.iter().enumerate() {
        if inside[i] && has_default && line.starts_with("    default:") {
            out.push(format!("    default: {yaml}"));
            continue;
        }
        out.push((*line).to_string());
        if inside[i] && !has_default && line.starts_with("    type:") {
            out.push(format!("    default: {yaml}"));
        }
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// The runbook, and the schema its modeline names (written once).
fn write_files(
    output: &Path,
    text: &str,
    cwd: &Path,
    template: &Template,
    found: Option<&Found>,
) -> u8 {
    let schema = cwd.join(".runbook/runbook.v1.schema.json");
    let written = schema
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            crate::fsutil::write_atomic(&schema, crate::schema::RUNBOOK_SCHEMA.as_bytes())
        })
        .and_then(|()| {
            output
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or(Ok(()), std::fs::create_dir_all)
        })
        .and_then(|()| crate::fsutil::write_atomic(output, text.as_bytes()));
    if let Err(e) = written {
        return refuse(
            &format!("failed to write `{}`: {e}", output.display()),
            "choose a writable place with -o FILE",
        );
    }
    let wired = match (template.dir_param, found) {
        (Some(p), Some(f)) => format!("; `{p}` is {} ({})", f.dir.display(), f.described()),
        (Some(p), None) => format!("; no migration directory found: set `{p}` (--set {p}=DIR)"),
        _ => String::new(),
    };
    if let Some(f) = found
        && text.contains("\n  lint: error\n")
    {
        lint_note(output, &cwd.join(&f.dir));
    }
    crate::show!(
        "wrote {} from `{}`{wired}\nnext: runbook lint {0} && runbook plan {0}",
        output.display(),
        template.name
    );
    exit::OK
}

/// When `exec` would refuse the written runbook for its lint errors (a
/// project's long-applied history has them: documenso's 163 migrations,
/// 744), say so now, with the way to lint only what will run.
fn lint_note(output: &Path, dir: &Path) {
    let Ok(config) = crate::lint::config_for(output) else {
        return;
    };
    let mut report = crate::lint::Report::default();
    if crate::lint::lint_runbook(output, &config, &mut report).is_err() || report.errors() == 0 {
        return;
    }
    let newest = crate::migrations::load(dir, None)
        .ok()
        .and_then(|set| set.migrations.last().map(|m| m.version.clone()));
    crate::say!(
        "note: `runbook lint {}` finds {} error(s), and its `settings.lint: error` refuses to run while they stand{}",
        output.display(),
        report.errors(),
        match newest {
            Some(v) => format!(
                "; migrations applied everywhere already will not run again and need no lint: if every one through {v} is, add `lint: {{applied_through: \"{v}\"}}` to it"
            ),
            None => String::new(),
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The opening comment shows how to run the written runbook, not the
    /// ready one: before, `runbook exec runbooks/ci-rehearsal.yml --set
    /// migrations=../examples/rehearsal/migrations` ran the example's
    /// migrations, not the project's.
    #[test]
    fn the_written_runbooks_comment_runs_it_with_what_init_wired_in() {
        for t in TEMPLATES {
            let defaults: Vec<(String, String)> = t
                .dir_param
                .map(|p| vec![(p.to_string(), "db/migrations".to_string())])
                .unwrap_or_default();
            let text = usage_of(t.text, t.name, Path::new("ops/release.yml"), &defaults);
            let head: Vec<&str> = text.lines().take_while(|l| l.starts_with('#')).collect();
            let name = t.name;
            assert!(
                !head
                    .iter()
                    .any(|l| l.contains(&format!("runbooks/{name}.yml"))
                        || l.contains(&format!("examples/{name}/"))),
                "{name}: {head:#?}"
            );
            if t.dir_param.is_some() {
                assert!(
                    head.iter()
                        .any(|l| l.contains("runbook exec ops/release.yml")),
                    "{name}: {head:#?}"
                );
                let set = format!("--set {}=", t.dir_param.unwrap_or_default());
                assert!(!head.iter().any(|l| l.contains(&set)), "{name}: {head:#?}");
            }
            // Every command still ends: no continuation into prose.
            for pair in head.windows(2) {
                if pair[0].ends_with(" \\") {
                    assert!(pair[1].starts_with("#   "), "{name}: {pair:?}");
                }
            }
            // Below the comment, nothing changed.
            let body = |s: &str| {
                s.lines()
                    .skip_while(|l| l.starts_with('#'))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            assert_eq!(body(&text), body(t.text), "{name}");
        }
        let ci = TEMPLATES.iter().find(|t| t.name == "ci-rehearsal").unwrap();
        let text = usage_of(
            ci.text,
            ci.name,
            Path::new("runbook.yml"),
            &[("migrations".into(), "m".into())],
        );
        assert!(
            text.contains("#   runbook exec runbook.yml --ephemeral --yes\n#\n")
                || text.contains("#   runbook exec runbook.yml --ephemeral --yes\napiVersion"),
            "{text}"
        );
        assert!(
            text.contains("#   runbook exec runbook.yml --database-url \"$DATABASE_URL\" \\\n#       --set seed="),
            "{text}"
        );
    }

    /// Conductor's layout: a module per engine, and PostgreSQL's Flyway
    /// scripts in `migration_postgres`. init wired in the MySQL module's
    /// `migration` (10 files), since `migration_postgres` was not a name it
    /// looked for and `mysql-persistence` was not another engine's.
    #[test]
    fn detect_skips_other_engines_modules_and_reads_migration_prefixed_names() {
        let tmp = tempfile::tempdir().unwrap();
        let put = |dir: &str, n: usize| {
            let d = tmp.path().join(dir);
            std::fs::create_dir_all(&d).unwrap();
            for i in 1..=n {
                std::fs::write(d.join(format!("V{i}__m.sql")), "SELECT 1;\n").unwrap();
            }
        };
        put("mysql-persistence/src/main/resources/db/migration", 10);
        put(
            "sqlite-persistence/src/main/resources/db/migration_sqlite",
            9,
        );
        put(
            "scheduler/src/main/resources/db/migration_scheduler_mysql",
            8,
        );
        put(
            "postgres-persistence/src/main/resources/db/migration_postgres",
            3,
        );
        let found = detect(tmp.path(), &mut Vec::new());
        let dirs: Vec<String> = found.iter().map(|f| f.dir.display().to_string()).collect();
        assert_eq!(
            dirs,
            ["postgres-persistence/src/main/resources/db/migration_postgres"]
        );
        assert!(found[0].forward_only, "no undo files");
    }

    #[test]
    fn every_template_is_a_valid_runbook_after_init() {
        let tmp = tempfile::tempdir().unwrap();
        for t in TEMPLATES {
            let defaults: Vec<(String, String)> = t
                .dir_param
                .map(|p| vec![(p.to_string(), "db/migrations".to_string())])
                .unwrap_or_default();
            let text = render(t, &defaults, tmp.path(), tmp.path())
                .unwrap_or_else(|e| panic!("{}: {e:?}", t.name));
            assert!(
                text.starts_with(
                    "# yaml-language-server: $schema=.runbook/runbook.v1.schema.json\n"
                ),
                "{}",
                t.name
            );
            if let Some(p) = t.dir_param {
                assert!(
                    text.contains("    default: \"db/migrations\"\n"),
                    "{}: {p}",
                    t.name
                );
            }
        }
    }

    #[test]
    fn set_default_replaces_or_adds_only_in_that_param() {
        let text = "params:\n  a:\n    type: string\n    default: x\n  b:\n    type: integer\nphases: []\n";
        let t = set_default(text, "a", "\"y\"");
        assert!(
            t.contains("  a:\n    type: string\n    default: \"y\"\n  b:"),
            "{t}"
        );
        let t = set_default(text, "b", "5");
        assert!(
            t.contains("  b:\n    type: integer\n    default: 5\nphases"),
            "{t}"
        );
        assert_eq!(set_default(text, "c", "1"), text);
    }

    #[test]
    fn detect_finds_each_tools_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        assert_eq!(detect(root, &mut Vec::new()), []);
        let d = root.join("db/migrations");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("20240101000000_init.sql"),
            "-- migrate:up\nCREATE TABLE a (id int);\n-- migrate:down\nDROP TABLE a;\n",
        )
        .unwrap();
        let f = detect(root, &mut Vec::new()).remove(0);
        assert_eq!(
            (f.dir.as_path(), f.tool.as_str(), f.count),
            (Path::new("db/migrations"), "dbmate", 1)
        );
        let k = tempfile::tempdir().unwrap();
        std::fs::write(k.path().join("knexfile.js"), "module.exports = {}").unwrap();
        std::fs::create_dir_all(k.path().join("migrations")).unwrap();
        std::fs::write(
            k.path().join("migrations/20240101_init.js"),
            "exports.up = () => {}",
        )
        .unwrap();
        let f = detect(k.path(), &mut Vec::new()).remove(0);
        assert_eq!((f.tool.as_str(), f.count), ("knex", 1));
        assert_eq!(default_template(Some(&f)), "knex-rehearsal");
        // Vaultwarden's layout: one directory per engine; the MySQL one has
        // more migrations, and is not PostgreSQL's.
        let v = tempfile::tempdir().unwrap();
        for (engine, n) in [("mysql", 2), ("postgresql", 1), ("sqlite", 3)] {
            for i in 0..n {
                let m = v
                    .path()
                    .join(format!("migrations/{engine}/2019-09-1{i}-100000_m{i}"));
                std::fs::create_dir_all(&m).unwrap();
                std::fs::write(m.join("up.sql"), "SELECT 1;").unwrap();
            }
        }
        let f = detect(v.path(), &mut Vec::new()).remove(0);
        assert_eq!(
            (f.dir.as_path(), f.tool.as_str(), f.count),
            (Path::new("migrations/postgresql"), "diesel", 1)
        );
        // Marquez's: a Maven module's resources, seven levels down, with a
        // repeatable migration among its Flyway scripts.
        let q = tempfile::tempdir().unwrap();
        let m = q.path().join("api/src/main/resources/marquez/db/migration");
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(m.join("V1__init.sql"), "CREATE TABLE a (id int);").unwrap();
        std::fs::write(
            m.join("R__views.sql"),
            "CREATE OR REPLACE VIEW v AS SELECT 1;",
        )
        .unwrap();
        let f = detect(q.path(), &mut Vec::new()).remove(0);
        assert_eq!(
            (f.dir.as_path(), f.tool.as_str(), f.count),
            (
                Path::new("api/src/main/resources/marquez/db/migration"),
                "flyway",
                2
            )
        );
        // Hatchet's: goose with Go migrations among the SQL ones, kept in
        // their places (a deploy never passes over one): it is chosen.
        let h = tempfile::tempdir().unwrap();
        let m = h.path().join("cmd/hatchet-migrate/migrate/migrations");
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(
            m.join("20240115180414_init.sql"),
            "-- +goose Up\nSELECT 1;\n",
        )
        .unwrap();
        std::fs::write(m.join("20251226153622_v1_0_66.go"), "package migrations\n").unwrap();
        let mut refused = Vec::new();
        let f = detect(h.path(), &mut refused).remove(0);
        assert_eq!(
            (f.dir.as_path(), f.tool.as_str(), f.count, f.in_code),
            (
                Path::new("cmd/hatchet-migrate/migrate/migrations"),
                "goose",
                1,
                1
            )
        );
        assert!(
            f.described().starts_with(
                "1 goose migrations, and 1 in the application's code, which its goose applies"
            ),
            "{}",
            f.described()
        );
        assert!(refused.is_empty(), "{refused:?}");
        // A Supabase project's: plain files, in the one place the CLI
        // reads them from, named as its own.
        let s = tempfile::tempdir().unwrap();
        let m = s.path().join("supabase/migrations");
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(
            m.join("20240101000000_todos.sql"),
            "create table t (id int);",
        )
        .unwrap();
        let f = detect(s.path(), &mut Vec::new()).remove(0);
        assert_eq!(
            (f.dir.as_path(), f.tool.as_str(), f.count),
            (Path::new("supabase/migrations"), "Supabase CLI", 1)
        );
        // A SQLx crate's: plain files that its Cargo.toml says are SQLx's.
        let x = tempfile::tempdir().unwrap();
        std::fs::write(
            x.path().join("Cargo.toml"),
            "[package]\nname = \"app\"\n[dependencies]\nsqlx = \"0.8\"\n",
        )
        .unwrap();
        std::fs::create_dir_all(x.path().join("migrations")).unwrap();
        std::fs::write(
            x.path().join("migrations/20240101000000_init.sql"),
            "SELECT 1;",
        )
        .unwrap();
        let f = detect(x.path(), &mut Vec::new()).remove(0);
        assert_eq!(
            (f.dir.as_path(), f.tool.as_str(), f.count),
            (Path::new("migrations"), "SQLx", 1)
        );
        // A Spring application's Liquibase changelog, where Spring Boot
        // looks for it.
        let l = tempfile::tempdir().unwrap();
        let c = l.path().join("src/main/resources/db/changelog");
        std::fs::create_dir_all(&c).unwrap();
        std::fs::write(
            c.join("db.changelog-master.yaml"),
            "databaseChangeLog:\n  - include:\n      file: db/changelog/1.sql\n",
        )
        .unwrap();
        std::fs::write(
            c.join("1.sql"),
            "--liquibase formatted sql\n--changeset a:1\nCREATE TABLE t (id int);\n--changeset a:2\nCREATE TABLE u (id int);\n",
        )
        .unwrap();
        let f = detect(l.path(), &mut Vec::new()).remove(0);
        assert_eq!(
            (f.dir.as_path(), f.tool.as_str(), f.count),
            (Path::new("src/main/resources/db/changelog"), "liquibase", 2)
        );
    }

    /// quickwit's layout: `migrations/postgresql` (28 pairs) beside
    /// `migrations/postgresql_deferred` (one). Before, the first
    /// subdirectory the file system listed won, and init wired in the
    /// directory of one migration. Now the one with the most is chosen,
    /// whatever the order, and the others are listed after it.
    #[test]
    fn detect_chooses_among_a_directorys_subdirectories_by_their_migrations() {
        let q = tempfile::tempdir().unwrap();
        let pair = |dir: &str, n: usize| {
            let m = q.path().join(dir);
            std::fs::create_dir_all(&m).unwrap();
            for i in 1..=n {
                std::fs::write(m.join(format!("{i}_m.up.sql")), "SELECT 1;").unwrap();
                std::fs::write(m.join(format!("{i}_m.down.sql")), "SELECT 1;").unwrap();
            }
        };
        // Enough small siblings that the big one is rarely listed first.
        for k in 0..12 {
            pair(&format!("migrations/postgresql_deferred_{k:02}"), 1);
        }
        pair("migrations/postgresql", 3);
        let all = detect(q.path(), &mut Vec::new());
        let dirs: Vec<String> = all.iter().map(|f| f.dir.display().to_string()).collect();
        assert_eq!(dirs.len(), 13, "{dirs:?}");
        assert_eq!(dirs[0], "migrations/postgresql", "{dirs:?}");
        assert_eq!(all[0].count, 3);
        assert_eq!(all[0].described(), "3 golang-migrate migrations");
        // The rest: equal counts, by path.
        let mut rest = dirs[1..].to_vec();
        rest.sort();
        assert_eq!(dirs[1..], rest[..]);
    }
}
