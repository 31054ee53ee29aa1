//! A sqitch project: `sqitch.plan` lists the changes in order; each has
//! `deploy/<change>.sql` and, as its down, `revert/<change>.sql`, where
//! `sqitch.conf`'s `[core]` `top_dir`, `plan_file`, `deploy_dir` and
//! `revert_dir` say, if it says. Changes
//! have names, not numbers, so each is known by its place in the plan
//! (`0001`, `0002`, …) and its name. Pragmas are read past. A change
//! planned again later (reworked) runs, where it was first planned, the
//! scripts `sqitch rework` kept for it: `deploy/<change>@<tag>.sql`, the
//! tag being the first one planned after it; its latest place runs
//! `deploy/<change>.sql`.

use std::path::Path;

use super::{Down, LoadError, Script, Set, push_versioned, read, script, without_bom};

pub(super) fn present(dir: &Path) -> bool {
    dir.join("sqitch.plan").is_file() || dir.join("sqitch.conf").is_file()
}

/// Where the plan and the scripts are, relative to the project directory.
struct Layout {
    plan: String,
    deploy: String,
    revert: String,
    verify: String,
}

/// `sqitch.conf`'s `[core]` paths (a git-style config file), else sqitch's defaults.
fn layout(dir: &Path) -> Layout {
    let conf = std::fs::read_to_string(dir.join("sqitch.conf")).unwrap_or_default();
    let mut core = std::collections::HashMap::new();
    let mut section = String::new();
    for line in conf.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).trim().to_string();
        } else if section == "core"
            && !line.starts_with(['#', ';'])
            && let Some((k, v)) = line.split_once('=')
        {
            core.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
        }
    }
    let top = core
        .get("top_dir")
        .map_or(".", String::as_str)
        .trim_end_matches('/')
        .to_string();
    let under = |name: &str| {
        let path = format!("{top}/{name}");
        path.strip_prefix("./").unwrap_or(&path).to_string()
    };
    let plan = core
        .get("plan_file")
        .cloned()
        .unwrap_or_else(|| under("sqitch.plan"));
    Layout {
        // Projects that moved their scripts under top_dir often keep the plan at the root.
        plan: if dir.join(&plan).is_file() {
            plan
        } else {
            "sqitch.plan".into()
        },
        deploy: core
            .get("deploy_dir")
            .cloned()
            .unwrap_or_else(|| under("deploy")),
        revert: core
            .get("revert_dir")
            .cloned()
            .unwrap_or_else(|| under("revert")),
        verify: core
            .get("verify_dir")
            .cloned()
            .unwrap_or_else(|| under("verify")),
    }
}

pub(super) fn load(dir: &Path, set: &mut Set) -> Result<(), LoadError> {
    let layout = layout(dir);
    let plan = read(dir, &layout.plan)?;
    // The plan's changes (line, name) and tags (line, name), in order.
    let mut changes: Vec<(usize, String)> = Vec::new();
    let mut tags: Vec<(usize, String)> = Vec::new();
    for (i, line) in plan.lines().enumerate() {
        let line = line.trim();
        if let Some(project) = line.strip_prefix("%project=") {
            set.project = Some(project.trim().to_string());
            continue;
        }
        let word = |l: &str| -> String {
            l.chars()
                .take_while(|c| !c.is_whitespace() && *c != '[')
                .collect()
        };
        if let Some(tag) = line.strip_prefix('@') {
            tags.push((i, word(tag)));
        } else if !line.is_empty() && !line.starts_with(['#', '%']) {
            changes.push((i, word(line)));
        }
    }
    let mut seen: Vec<String> = Vec::new();
    for (n, (i, change)) in changes.iter().enumerate() {
        let rework = changes[n + 1..].iter().find(|(_, c)| c == change);
        let file = if let Some((next, _)) = rework {
            // As sqitch finds them: of the tags between this place and the
            // rework, the first whose copy of the scripts exists.
            let between: Vec<String> = tags
                .iter()
                .filter(|(t, _)| t > i && t < next)
                .map(|(_, tag)| format!("{change}@{tag}"))
                .collect();
            let kept = between
                .iter()
                .find(|f| dir.join(format!("{}/{f}.sql", layout.deploy)).is_file())
                .or(between.first());
            match kept {
                Some(f) => f.clone(),
                None => {
                    set.problem(LoadError::Reworked {
                        change: change.clone(),
                        line: i + 1,
                    })?;
                    continue;
                }
            }
        } else {
            change.clone()
        };
        seen.push(change.clone());
        let deploy = format!("{}/{file}.sql", layout.deploy);
        let revert = format!("{}/{file}.sql", layout.revert);
        // psql runs them, and reads a file without its byte-order mark.
        let up = without_bom(script(read(dir, &deploy)?, deploy.clone(), 1, false));
        let down = if dir.join(&revert).is_file() {
            Down::Script(without_bom(script(read(dir, &revert)?, revert, 1, false)))
        } else {
            Down::Missing(format!("there is no {revert}"))
        };
        let revert_script = match &down {
            Down::Script(s) => Some(s),
            _ => None,
        };
        let psql = std::iter::once(&up)
            .chain(revert_script)
            .find_map(|s| psql_only(s).map(|(line, what)| (s.file.clone(), line, what)));
        if let Some((file, line, what)) = psql {
            set.problem(LoadError::Psql { file, line, what })?;
            continue;
        }
        let version = format!("{:04}", n + 1);
        let verify_file = format!("{}/{file}.sql", layout.verify);
        let verify = if dir.join(&verify_file).is_file() {
            let s = without_bom(script(read(dir, &verify_file)?, verify_file, 1, false));
            match psql_only(&s) {
                Some((line, what)) => {
                    set.warnings.push(format!(
                        "{}:{line} has {what}, which only psql reads: a rehearsal does not run this verify script",
                        s.file
                    ));
                    None
                }
                None => Some(s),
            }
        } else {
            None
        };
        push_versioned(set, &deploy, version, change.clone(), up, down)?;
        if let Some(m) = set.migrations.last_mut().filter(|m| m.name == *change) {
            m.verify = verify;
        }
    }
    if seen.is_empty() {
        return Err(LoadError::Empty(
            dir.join("sqitch.plan").display().to_string(),
        ));
    }
    Ok(())
}

/// sqitch's `script_hash`: the SHA-1 of the deploy script's bytes, hex.
pub fn script_hash(text: &str) -> String {
    use sha1::Digest;
    let digest = sha1::Sha1::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_plan_orders_the_changes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("deploy")).unwrap();
        std::fs::create_dir_all(d.path().join("revert")).unwrap();
        std::fs::write(
            d.path().join("sqitch.plan"),
            "%syntax-version=1.0.0\n%project=flipr\n\nusers 2024-01-01T00:00:00Z Ann <a@x> # users\nflips [users] 2024-01-02T00:00:00Z Ann <a@x>\n@v1.0 2024-01-03T00:00:00Z Ann <a@x>\n",
        )
        .unwrap();
        for c in ["users", "flips"] {
            std::fs::write(
                d.path().join(format!("deploy/{c}.sql")),
                format!("CREATE TABLE {c} ();"),
            )
            .unwrap();
        }
        std::fs::write(d.path().join("revert/users.sql"), "DROP TABLE users;").unwrap();
        let set = super::super::load(d.path(), None).unwrap();
        assert_eq!(set.format, super::super::Format::Sqitch);
        assert_eq!(set.project.as_deref(), Some("flipr"));
        let got: Vec<(&str, &str)> = set
            .migrations
            .iter()
            .map(|m| (m.version.as_str(), m.name.as_str()))
            .collect();
        assert_eq!(got, [("0001", "users"), ("0002", "flips")]);
        assert!(set.migrations[0].down_script().is_some());
        assert_eq!(
            set.migrations[1].down_missing().unwrap(),
            "there is no revert/flips.sql"
        );
        // sha1("abc")
        assert_eq!(
            super::script_hash("abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }
}

#[cfg(test)]
mod psql_tests {
    use super::super::{LoadError, script};
    use super::psql_only;

    #[test]
    fn what_only_psql_reads_is_found_and_sql_is_not() {
        let at = |sql: &str| psql_only(&script(sql.to_string(), "deploy/x.sql".into(), 1, false));
        assert_eq!(
            at("BEGIN;\nCREATE SCHEMA :\"schema\";\nCOMMIT;\n"),
            Some((2, "a psql variable (`:\"schema\"`)".into()))
        );
        assert_eq!(
            at("SELECT 1;\nINSERT INTO t VALUES (:'owner');"),
            Some((2, "a psql variable (`:'owner'`)".into()))
        );
        assert_eq!(
            at("GRANT SELECT ON t TO :role;"),
            Some((1, "a psql variable (`:role`)".into()))
        );
        assert_eq!(
            at("\\set ON_ERROR_STOP on\nSELECT 1;"),
            Some((1, "a psql meta-command (`\\set`)".into()))
        );
        assert_eq!(
            at("SELECT 1;\n  \\i deploy/other.sql\n"),
            Some((2, "a psql meta-command (`\\i`)".into()))
        );
        // Casts, slices, strings, comments and function bodies are SQL.
        for sql in [
            "SELECT 'a'::\"Status\", b::int, c[1:2], c[lo:hi] FROM t;",
            "SELECT ':\"x\"', E'\\\\n'; -- :'y' and \\set\n/* :z */",
            "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ DECLARE n int; BEGIN n := 1; RETURN n; END $$;",
        ] {
            assert_eq!(at(sql), None, "{sql}");
        }

        // Refused before anything runs; in lint, a warning.
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir_all(p.join("deploy")).unwrap();
        std::fs::write(
            p.join("sqitch.plan"),
            "%project=app\n\nschema 2024-01-01T00:00:00Z A <a@x>\nusers 2024-01-02T00:00:00Z A <a@x>\n",
        )
        .unwrap();
        std::fs::write(p.join("deploy/schema.sql"), "CREATE SCHEMA app;").unwrap();
        std::fs::write(
            p.join("deploy/users.sql"),
            "BEGIN;\nCREATE TABLE :\"schema\".users ();\nCOMMIT;\n",
        )
        .unwrap();
        assert_eq!(
            super::super::load(p, None).unwrap_err(),
            LoadError::Psql {
                file: "deploy/users.sql".into(),
                line: 2,
                what: "a psql variable (`:\"schema\"`)".into()
            }
        );
        let set = super::super::load_tolerant(p).unwrap();
        assert_eq!(set.migrations.len(), 1);
        assert!(
            set.warnings[0].contains("which psql reads"),
            "{:?}",
            set.warnings
        );
    }
}

#[cfg(test)]
mod layout_tests {
    #[test]
    fn sqitch_conf_moves_the_plan_and_scripts_under_top_dir() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir_all(p.join("sql/deploy")).unwrap();
        std::fs::write(
            p.join("sqitch.conf"),
            "[core]\n\tengine = pg\n\t# plan_file = sqitch.plan\n\t top_dir = ./sql\n[deploy]\n\tverify = true\n",
        )
        .unwrap();
        std::fs::write(
            p.join("sql/sqitch.plan"),
            "%project=registry\n\nusers 2024-05-13T17:21:58Z A <a@x> # users\n",
        )
        .unwrap();
        std::fs::write(p.join("sql/deploy/users.sql"), "CREATE TABLE users ();").unwrap();
        let set = super::super::load(p, None).unwrap();
        assert_eq!(set.migrations[0].up.file, "sql/deploy/users.sql");
        assert_eq!(
            set.migrations[0].down_missing().unwrap(),
            "there is no sql/revert/users.sql"
        );
    }
}

/// What in a script only psql understands, which sqitch runs its scripts
/// with: a meta-command (`\\set`, `\\i`) at the start of a line, or a
/// variable (`:'name'`, `:"name"`, `:name` outside an array's brackets)
/// that sqitch's `--set` fills in. The server knows neither; sent as
/// written, the first such script fails only after the changes before it
/// were deployed. Its line, and what it is.
fn psql_only(s: &Script) -> Option<(usize, String)> {
    use squawk_syntax::SyntaxKind as K;
    if !s.sql.contains([':', '\\']) {
        return None;
    }
    let tree = squawk_syntax::SourceFile::parse(&s.sql).syntax_node();
    let tokens: Vec<_> = tree
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .collect();
    let mut brackets = 0usize;
    for (i, t) in tokens.iter().enumerate() {
        let at = usize::from(t.text_range().start());
        let line_start = s.sql[..at].rfind('\n').map_or(0, |n| n + 1);
        let what = match t.kind() {
            K::L_BRACK => {
                brackets += 1;
                None
            }
            K::R_BRACK => {
                brackets = brackets.saturating_sub(1);
                None
            }
            K::ERROR if t.text() == "\\" && s.sql[line_start..at].trim().is_empty() => {
                let line = &s.sql[at..];
                let end = line.find(char::is_whitespace).unwrap_or(line.len());
                Some(format!("a psql meta-command (`{}`)", &line[..end]))
            }
            K::COLON => {
                let before = i.checked_sub(1).map(|j| tokens[j].kind());
                let next = tokens.get(i + 1);
                let variable = before != Some(K::COLON)
                    && next.is_some_and(|n| {
                        usize::from(n.text_range().start()) == at + 1
                            && (n.kind() == K::STRING
                                || n.text().starts_with('"')
                                // A word (an identifier, or a keyword such as
                                // `role`), but not an array slice's bound.
                                || (brackets == 0
                                    && n.text().starts_with(|c: char| c.is_alphabetic() || c == '_')))
                    });
                variable.then(|| {
                    format!(
                        "a psql variable (`:{}`)",
                        next.map(|n| n.text().to_string()).unwrap_or_default()
                    )
                })
            }
            _ => None,
        };
        if let Some(what) = what {
            return Some((s.first_line + s.sql[..at].matches('\n').count(), what));
        }
    }
    None
}
