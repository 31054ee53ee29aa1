//! The Supabase CLI's `supabase_migrations.schema_migrations`: a row per
//! applied migration, its version as the text of the file's leading digits
//! (`20240101120000`), its name (the rest of the file name) and its
//! statements, as the CLI split the file to send them. The CLI keeps no
//! checksum, no time and no mark for a script that stopped half-way: it
//! sends each file's statements and its row as one batch, which PostgreSQL
//! runs as one transaction. Its files have no downs.

use tokio_postgres::Error;

use super::{Applied, History, HistoryError, Write};
use crate::migrations::{Migration, Set};
use crate::model::Direction;
use crate::pg::db::Db;
use crate::pg::quote::literal;

/// The CLI's own DDL (`CREATE_VERSION_TABLE`, then the two columns it adds).
pub(super) fn create(h: &History) -> String {
    format!(
        "CREATE TABLE {} (version text NOT NULL PRIMARY KEY, statements text[], name text);",
        h.quoted
    )
}

pub(super) async fn read(h: &History, db: &Db) -> Result<Vec<Applied>, Error> {
    let rows = db
        .client
        .query(
            // The CLI's first tables had only `version`.
            &format!(
                "SELECT version, coalesce(to_jsonb(s) ->> 'name', '') FROM {} s ORDER BY version",
                h.quoted
            ),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Applied {
            version: r.get(0),
            name: r.get(1),
            key: r.get(0),
            by: String::new(),
            direction: "up".into(),
            ..Applied::default()
        })
        .collect())
}

/// A script's statements as the CLI records them: the text from the end of
/// one statement to the end of the next, comments before it included,
/// without its trailing `;` and surrounding white space; text after the
/// last statement (a comment) is one more.
pub fn statements(sql: &str) -> Vec<String> {
    let clean = |s: &str| s.trim_end_matches(';').trim().to_string();
    let mut out = Vec::new();
    let mut from = 0;
    for st in crate::pg::statements::split(sql) {
        let end = (st.offset + st.text.len()).min(sql.len());
        out.push(clean(&sql[from..end]));
        from = end;
    }
    let rest = clean(&sql[from..]);
    if !rest.is_empty() {
        out.push(rest);
    }
    out.retain(|s| !s.is_empty());
    out
}

fn insert(h: &History, m: &Migration) -> String {
    let array = statements(&m.up.sql)
        .iter()
        .map(|s| literal(s))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {} (version, name, statements) VALUES ({}, {}, ARRAY[{array}]::text[])",
        h.quoted,
        literal(&m.version),
        literal(&m.name),
    )
}

pub(super) fn write(h: &History, w: &Write<'_>) -> Option<String> {
    match *w {
        Write::Finish {
            m,
            direction: Direction::Up,
            ..
        } => Some(insert(h, m)),
        Write::Finish {
            m,
            direction: Direction::Down,
            ..
        } => Some(format!(
            "DELETE FROM {} WHERE version = {}",
            h.quoted,
            literal(&m.version)
        )),
        _ => None,
    }
}

pub(super) fn baseline(h: &History, todo: &[&Migration]) -> String {
    super::joined(todo, |m| insert(h, m))
}

/// What the CLI would not run as this directory has it: a file whose name
/// is not `<digits>_<name>.sql` (the CLI skips it), or an order that is not
/// the order of the file names (the CLI's).
pub(super) fn refused(set: &Set) -> Option<HistoryError> {
    let file = |m: &Migration| super::file_name(&m.up.file).to_string();
    for m in &set.migrations {
        let name = file(m);
        let stem = name.strip_suffix(".sql").unwrap_or(&name);
        let digits = stem.len() - stem.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 || !name.ends_with(".sql") || stem.as_bytes().get(digits) != Some(&b'_') {
            return Some(HistoryError::NotSupabase {
                file: name,
                why: "the Supabase CLI skips a file whose name is not `<timestamp>_name.sql`",
            });
        }
    }
    // The CLI's older layouts began with a schema dump it now skips.
    if let Some(first) = set.migrations.first().map(file)
        && let Some(stamp) = first.strip_suffix("_init.sql")
        && stamp.len() == 14
        && stamp.parse::<u64>().is_ok_and(|t| t < 20_211_209_000_000)
    {
        return Some(HistoryError::NotSupabase {
            file: first,
            why: "the Supabase CLI skips a first migration named `<timestamp>_init.sql` from before 2021-12-09",
        });
    }
    let names: Vec<String> = set.migrations.iter().map(file).collect();
    let mut sorted = names.clone();
    sorted.sort();
    if let Some((a, _)) = names.iter().zip(&sorted).find(|(a, b)| a != b) {
        return Some(HistoryError::NotSupabase {
            file: a.clone(),
            why: "the Supabase CLI runs files in the order of their names, and runbook would run this one elsewhere (its number has more or fewer digits than its neighbours')",
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::statements;

    #[test]
    fn statements_are_recorded_as_the_cli_splits_them() {
        let sql = "-- the todo list\ncreate table todos (id int);\n\ncreate function f() returns int language sql as $$ select 1; $$;\n-- done\n";
        assert_eq!(
            statements(sql),
            [
                "-- the todo list\ncreate table todos (id int)",
                "create function f() returns int language sql as $$ select 1; $$",
                "-- done",
            ]
        );
        assert!(statements("  \n").is_empty());
    }
}
