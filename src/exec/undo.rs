//! Verifying an undo: the state before a phase that may change the
//! database (a schema snapshot from the catalog, and the row counts, or
//! content checksums, of the tables `settings.verify_undo` names), taken
//! again after a rollback and compared. Only an equal state earns "rolled
//! back cleanly".

use std::collections::BTreeMap;

use super::{snapshot, verdict};
use crate::events::UndoCheck;
use crate::model::VerifyUndo;
use crate::pg::db::{self, Db};
use crate::snapshot::Snapshot;

/// A table's row count, and its content checksum when asked for, with a
/// sum of each column's values' hashes to say where rows that differ
/// differ. A baseline recorded before those sums were read has none, and
/// its checksums still compare: they are of the same thing.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct TableData {
    rows: i64,
    checksum: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    columns: Vec<(String, String)>,
}

impl TableData {
    /// The same rows: count and checksum. The column sums only say where
    /// they differ.
    fn same(a: Option<&TableData>, b: Option<&TableData>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => a.rows == b.rows && a.checksum == b.checksum,
            (a, b) => a.is_none() && b.is_none(),
        }
    }
}

/// What an undo is checked against.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Baseline {
    schema: Result<Snapshot, String>,
    /// By the table's name as written in `verify_undo`; None: no such table.
    data: Result<BTreeMap<String, Option<TableData>>, String>,
}

impl Baseline {
    /// The state now.
    pub(crate) async fn take(db: &Db, verify: Option<&VerifyUndo>) -> Baseline {
        let schema = schema_now(db).await;
        let data = match verify {
            Some(v) if !v.tables.is_empty() => table_data(db, v).await,
            _ => Ok(BTreeMap::new()),
        };
        Baseline { schema, data }
    }

    /// This baseline (taken before the changes) against `after` (taken
    /// after the undo): the verdict's check, and the report's record.
    pub(crate) fn compare(&self, after: &Baseline, against: &str) -> (verdict::Check, UndoCheck) {
        let unknown = |e: String| {
            (
                verdict::Check::Unknown(e.clone()),
                UndoCheck {
                    against: against.into(),
                    result: "unknown".into(),
                    changes: Vec::new(),
                    error: Some(e),
                },
            )
        };
        let (before, now) = match (&self.schema, &after.schema) {
            (Ok(b), Ok(a)) => (b, a),
            (Err(e), _) => return unknown(format!("no schema snapshot before the changes: {e}")),
            (_, Err(e)) => return unknown(format!("no schema snapshot after the undo: {e}")),
        };
        let (data_before, data_now) = match (&self.data, &after.data) {
            (Ok(b), Ok(a)) => (b, a),
            (Err(e), _) | (_, Err(e)) => {
                return unknown(format!("the tables in verify_undo could not be read: {e}"));
            }
        };
        let changes = crate::snapshot::compare(before, now);
        let mut list = snapshot::changes_json(&changes)
            .as_array()
            .cloned()
            .unwrap_or_default();
        for (table, b) in data_before {
            let a = data_now.get(table).cloned().flatten();
            if TableData::same(b.as_ref(), a.as_ref()) {
                continue;
            }
            let place = match (b, &a) {
                (Some(b), Some(a)) if b.rows == a.rows => {
                    db::where_rows_changed(&b.columns, &a.columns)
                }
                _ => String::new(),
            };
            let say = |d: &Option<TableData>| match d {
                None => "no such table".to_string(),
                Some(d) => format!(
                    "{} rows{}",
                    d.rows,
                    d.checksum
                        .as_ref()
                        .map(|c| format!(", checksum {c}"))
                        .unwrap_or_default()
                ),
            };
            list.push(serde_json::json!({
                "object": format!("data {table}"),
                "change": "changed",
                "diff": [format!("- {}", say(b)), format!("+ {}{place}", say(&a))],
            }));
        }
        let check = if list.is_empty() {
            verdict::Check::Equal {
                tables: data_before.len(),
            }
        } else {
            verdict::Check::Differs(list.len())
        };
        (
            check,
            UndoCheck {
                against: against.into(),
                result: if list.is_empty() { "equal" } else { "differs" }.into(),
                changes: list,
                error: None,
            },
        )
    }
}

/// Why the tables `verify_undo` names cannot be read in full as the run
/// reads them (see [`table_data`]), if they cannot: asked before the run
/// changes anything, since every undo would otherwise end unverified. A
/// table that does not exist yet is no reason. Nothing is counted: each
/// table is opened for a read that returns no row, which the server checks
/// for privileges and row-level security all the same.
pub(crate) async fn unreadable(db: &Db, v: &VerifyUndo) -> Option<String> {
    if v.tables.is_empty() {
        return None;
    }
    let reads: Vec<String> = match existing(db, v).await {
        Ok(found) => found
            .into_iter()
            .filter_map(|t| t.qualified.map(|q| format!("SELECT FROM {q} WHERE false;")))
            .collect(),
        Err(e) => return Some(e),
    };
    if reads.is_empty() {
        return None;
    }
    let sql = format!(
        "BEGIN READ ONLY; SET LOCAL row_security = off; {} ROLLBACK",
        reads.join(" ")
    );
    let e = db.client.batch_execute(&sql).await.err()?;
    db.rollback().await;
    Some(db::error_info(&e, None).message)
}

/// A table `verify_undo` names: as written, its qualified name when it
/// exists, and its columns.
struct Named {
    given: String,
    qualified: Option<String>,
    columns: Vec<String>,
}

/// Each table `verify_undo` names.
async fn existing(db: &Db, v: &VerifyUndo) -> Result<Vec<Named>, String> {
    let names: Vec<&str> = v.tables.iter().map(String::as_str).collect();
    let found = db
        .client
        .query(
            "SELECT n, (SELECT format('%I.%I', ns.nspname, c.relname) FROM pg_catalog.pg_class c
                        JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace
                        WHERE c.oid = to_regclass(n)),
                    ARRAY(SELECT attname::text FROM pg_catalog.pg_attribute
                          WHERE attrelid = to_regclass(n) AND attnum > 0 AND NOT attisdropped
                          ORDER BY attnum)
               FROM unnest($1::text[]) AS n",
            &[&names],
        )
        .await
        .map_err(|e| db::error_info(&e, None).message)?;
    Ok(found
        .iter()
        .map(|r| Named {
            given: r.get(0),
            qualified: r.get(1),
            columns: r.get(2),
        })
        .collect())
}

/// The schema now, read as pg_dump reads it: a role's statement_timeout
/// cancelled the snapshot on a busy server as it cancelled the counts, and
/// a clean undo then read as unverified.
async fn schema_now(db: &Db) -> Result<Snapshot, String> {
    let err = |e: tokio_postgres::Error| db::error_info(&e, None).message;
    let put_back = db::read_as_pg_dump(&db.client).await.map_err(err)?;
    let schema = crate::snapshot::take(&db.client).await.map_err(err);
    put_back.put_back(&db.client).await.map_err(err)?;
    schema
}

/// Row counts (and checksums) of the tables `verify_undo` names, in one
/// query. A table that does not exist is `None`. They are read as pg_dump
/// reads ([`db::read_as_pg_dump`]): every row, past row-level security
/// (a count that policies filter cannot say the data is back), and without
/// the server's timeouts (a role's `statement_timeout` cancelled the count
/// of a large table after a clean rollback, which then read as unverified:
/// exit 4, "a person must act"). The session's settings are put back.
async fn table_data(
    db: &Db,
    v: &VerifyUndo,
) -> Result<BTreeMap<String, Option<TableData>>, String> {
    let err = |e: tokio_postgres::Error| db::error_info(&e, None).message;
    let mut out = BTreeMap::new();
    let mut parts = Vec::new();
    let mut columns = BTreeMap::new();
    for t in existing(db, v).await? {
        out.insert(t.given.clone(), None);
        if let Some(q) = t.qualified {
            // The checksum is of the row's text, as every runbook before
            // this one took it: a baseline a run recorded with an older
            // one still compares. Each column's sum is read beside it.
            let (checksum, sums) = if v.checksums && !t.columns.is_empty() {
                let each: Vec<String> = t
                    .columns
                    .iter()
                    .map(|c| format!("sum({})", db::value_hash_sql(c)))
                    .collect();
                (
                    db::row_checksum_sql("x::text"),
                    format!("concat_ws(',', {})", each.join(", ")),
                )
            } else if v.checksums {
                (db::row_checksum_sql("x::text"), "NULL::text".into())
            } else {
                ("NULL::text".into(), "NULL::text".into())
            };
            let lit = crate::pg::quote::literal(&t.given);
            parts.push(format!(
                "SELECT {lit}, count(*), {checksum}, {sums} FROM {q} x"
            ));
            columns.insert(t.given, t.columns);
        }
    }
    let put_back = db::read_as_pg_dump(&db.client).await.map_err(err)?;
    let counts = db::table_counts(db, &parts).await;
    put_back.put_back(&db.client).await.map_err(err)?;
    for c in counts.map_err(|e| e.message)? {
        let names = columns.remove(&c.table).unwrap_or_default();
        // No rows: each column's sum is NULL, which `concat_ws` leaves out.
        let sums: Vec<(String, String)> = match c.more {
            Some(more) if c.rows > 0 && v.checksums => names
                .into_iter()
                .zip(more.split(',').map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        out.insert(
            c.table,
            Some(TableData {
                rows: c.rows,
                checksum: c.checksum,
                columns: sums,
            }),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::TableData;

    /// A baseline an older runbook recorded (in a run's journal, for a later
    /// `runbook rollback`) has no column sums: it still reads, and its rows
    /// compare on their count and checksum alone.
    #[test]
    fn a_baseline_without_column_sums_still_compares() {
        let old: TableData = serde_json::from_str(r#"{"rows": 3, "checksum": "42"}"#).unwrap();
        let now = TableData {
            rows: 3,
            checksum: Some("42".into()),
            columns: vec![("v".into(), "7".into())],
        };
        assert!(TableData::same(Some(&old), Some(&now)));
        let other = TableData {
            checksum: Some("43".into()),
            ..now.clone()
        };
        assert!(!TableData::same(Some(&old), Some(&other)));
        assert!(!TableData::same(Some(&old), None));
        assert!(TableData::same(None, None));
        // Not written when there are none, so a newer baseline reads in an
        // older runbook too.
        assert_eq!(
            serde_json::to_string(&old).unwrap(),
            r#"{"rows":3,"checksum":"42"}"#
        );
    }
}
