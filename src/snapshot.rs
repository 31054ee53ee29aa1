//! Schema snapshots: a canonical description of the schema, read from the
//! catalog in one query (not by running pg_dump), and its hash.
//!
//! Each object (table, constraint, index, sequence, view, materialized view,
//! function, trigger, enum type, extension) becomes one entry keyed by
//! `kind name`, with a JSON definition built by the server's own
//! `pg_get_*def` functions. Owners are left out; grants are kept without
//! them. runbook's own state tables (commented `runbook state: ...`) and
//! objects that belong to extensions are left out too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The marker runbook puts in the comment of its own state tables.
pub const STATE_COMMENT: &str = "runbook state:";

/// One row per object: kind, name, definition (JSON text).
pub const SQL: &str = r#"WITH ns AS (
    SELECT oid, nspname FROM pg_namespace
    WHERE nspname NOT IN ('pg_catalog', 'information_schema')
      AND nspname NOT LIKE 'pg_toast%' AND nspname NOT LIKE 'pg_temp%'
), members AS (
    SELECT classid, objid FROM pg_depend WHERE deptype = 'e'
), rels AS (
    SELECT c.oid, c.relkind, c.relacl, c.relowner, c.relpartbound, c.relispartition,
           format('%I.%I', ns.nspname, c.relname) AS qname, d.description AS comment
    FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
    LEFT JOIN pg_description d
      ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
    WHERE coalesce(d.description, '') NOT LIKE 'runbook state:%'
      AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_class'::regclass AND m.objid = c.oid)
), grants AS (
    SELECT r.oid, json_agg(g.entry ORDER BY g.entry) AS list
    FROM rels r
    CROSS JOIN LATERAL (
        SELECT format('%s=%s', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
                      string_agg(a.privilege_type || CASE WHEN a.is_grantable THEN '*' ELSE '' END, ',' ORDER BY a.privilege_type)) AS entry
        FROM aclexplode(r.relacl) a
        WHERE a.grantee <> r.relowner
        GROUP BY a.grantee
    ) g
    GROUP BY r.oid
), cols AS (
    -- Every column of every table at once: a correlated subquery per table
    -- costs ten times as much.
    SELECT a.attrelid, json_agg(json_build_object(
            'name', a.attname,
            'type', format_type(a.atttypid, a.atttypmod),
            'not_null', a.attnotnull,
            'default', pg_get_expr(ad.adbin, ad.adrelid),
            'identity', nullif(a.attidentity::text, ''),
            'generated', nullif(a.attgenerated::text, ''),
            'collation', CASE WHEN a.attcollation <> t.typcollation
                              THEN (SELECT collname FROM pg_collation WHERE oid = a.attcollation) END,
            'comment', cd.description
        ) ORDER BY a.attnum) AS list
    FROM rels r
    JOIN pg_attribute a ON a.attrelid = r.oid
    JOIN pg_type t ON t.oid = a.atttypid
    LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
    LEFT JOIN pg_description cd
      ON cd.objoid = a.attrelid AND cd.classoid = 'pg_class'::regclass AND cd.objsubid = a.attnum
    WHERE r.relkind IN ('r', 'p', 'f') AND a.attnum > 0 AND NOT a.attisdropped
    GROUP BY a.attrelid
)
SELECT 'table' AS kind, r.qname AS name, json_build_object(
    'kind', r.relkind::text,
    'columns', c.list,
    'partition_key', CASE WHEN r.relkind = 'p' THEN pg_get_partkeydef(r.oid) END,
    'partition_of', CASE WHEN r.relispartition THEN
        (SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = r.oid) || ' ' ||
        pg_get_expr(r.relpartbound, r.oid) END,
    'comment', r.comment,
    'grants', g.list
)::text AS def
FROM rels r
LEFT JOIN cols c ON c.attrelid = r.oid
LEFT JOIN grants g ON g.oid = r.oid
WHERE r.relkind IN ('r', 'p', 'f')
UNION ALL
SELECT 'constraint', format('%s.%I', r.qname, co.conname), json_build_object(
    'definition', pg_get_constraintdef(co.oid),
    'validated', co.convalidated,
    'comment', d.description
)::text
FROM pg_constraint co JOIN rels r ON r.oid = co.conrelid
LEFT JOIN pg_description d
  ON d.objoid = co.oid AND d.classoid = 'pg_constraint'::regclass AND d.objsubid = 0
UNION ALL
SELECT 'index', r.qname, json_build_object(
    'definition', pg_get_indexdef(r.oid),
    'valid', i.indisvalid,
    'comment', r.comment
)::text
FROM rels r
JOIN pg_index i ON i.indexrelid = r.oid
JOIN rels t ON t.oid = i.indrelid
WHERE r.relkind IN ('i', 'I')
UNION ALL
SELECT 'sequence', r.qname, json_build_object(
    'type', format_type(s.seqtypid, NULL),
    'start', s.seqstart, 'increment', s.seqincrement, 'min', s.seqmin, 'max', s.seqmax,
    'cache', s.seqcache, 'cycle', s.seqcycle,
    'owned_by', (SELECT format('%s.%I', d.refobjid::regclass, a.attname)
                 FROM pg_depend d
                 JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                 WHERE d.classid = 'pg_class'::regclass AND d.objid = r.oid
                   AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
                 LIMIT 1),
    'grants', g.list
)::text
FROM rels r JOIN pg_sequence s ON s.seqrelid = r.oid
LEFT JOIN grants g ON g.oid = r.oid
UNION ALL
SELECT CASE r.relkind WHEN 'v' THEN 'view' ELSE 'materialized view' END, r.qname, json_build_object(
    'definition', pg_get_viewdef(r.oid),
    'comment', r.comment,
    'grants', g.list
)::text
FROM rels r LEFT JOIN grants g ON g.oid = r.oid
WHERE r.relkind IN ('v', 'm')
UNION ALL
SELECT 'function', format('%I.%I(%s)', ns.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
    json_build_object(
        'definition', pg_get_functiondef(p.oid),
        'comment', d.description
    )::text
FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
LEFT JOIN pg_description d
  ON d.objoid = p.oid AND d.classoid = 'pg_proc'::regclass AND d.objsubid = 0
WHERE p.prokind IN ('f', 'p', 'w')
  AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_proc'::regclass AND m.objid = p.oid)
UNION ALL
SELECT 'trigger', format('%s.%I', r.qname, tg.tgname), json_build_object(
    'definition', pg_get_triggerdef(tg.oid),
    'enabled', tg.tgenabled::text
)::text
FROM pg_trigger tg JOIN rels r ON r.oid = tg.tgrelid
WHERE NOT tg.tgisinternal
UNION ALL
SELECT 'type', format('%I.%I', ns.nspname, t.typname), json_build_object(
    'enum', (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid),
    'comment', d.description
)::text
FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
LEFT JOIN pg_description d
  ON d.objoid = t.oid AND d.classoid = 'pg_type'::regclass AND d.objsubid = 0
WHERE t.typtype = 'e'
  AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_type'::regclass AND m.objid = t.oid)
UNION ALL
SELECT 'extension', e.extname, json_build_object(
    'version', e.extversion,
    'schema', e.extnamespace::regnamespace::text
)::text
FROM pg_extension e
WHERE e.extname <> 'plpgsql'
ORDER BY 1, 2"#;

/// A schema snapshot: every object's definition, and the hash of them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub hash: String,
    /// `kind name` → the definition, as the catalog query built it.
    pub objects: BTreeMap<String, Value>,
}

fn sha256(bytes: &[u8]) -> String {
    crate::migrations::sha256_hex(bytes)
}

/// The canonical text of a definition: compact JSON, keys in the order the
/// catalog query wrote them.
fn canonical(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

impl Snapshot {
    /// Build from `(kind, name, definition)` rows; a definition is JSON text.
    pub fn from_rows(rows: impl IntoIterator<Item = (String, String, String)>) -> Snapshot {
        Snapshot::from_objects(
            rows.into_iter()
                .map(|(kind, name, def)| {
                    let v = serde_json::from_str(&def).unwrap_or(Value::String(def));
                    (format!("{kind} {name}"), v)
                })
                .collect(),
        )
    }

    /// Build from objects, computing the hash.
    pub fn from_objects(objects: BTreeMap<String, Value>) -> Snapshot {
        let mut all = String::new();
        for (k, v) in &objects {
            all.push_str(k);
            all.push('\0');
            all.push_str(&canonical(v));
            all.push('\n');
        }
        Snapshot {
            hash: sha256(all.as_bytes()),
            objects,
        }
    }

    /// Each object's own hash: enough to say later which objects changed.
    pub fn object_hashes(&self) -> BTreeMap<String, String> {
        self.objects
            .iter()
            .map(|(k, v)| (k.clone(), sha256(canonical(v).as_bytes())))
            .collect()
    }

    /// The tables, with their column names in order.
    pub fn tables(&self) -> Vec<(String, Vec<String>)> {
        self.objects
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix("table ")?;
                let cols = v["columns"]
                    .as_array()
                    .map(|c| {
                        c.iter()
                            .filter_map(|c| c["name"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                Some((name.to_string(), cols))
            })
            .collect()
    }
}

/// The format of a saved snapshot.
pub const FILE_FORMAT: &str = "runbook-schema-snapshot/v1";

/// A snapshot as saved to a file (`runbook schema snapshot`, `snapshot: {save:}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct File {
    pub format: String,
    pub taken_at: String,
    pub database: String,
    pub server_version: String,
    pub hash: String,
    pub objects: BTreeMap<String, Value>,
}

impl File {
    pub fn new(s: &Snapshot, database: &str, server_version: &str) -> File {
        File {
            format: FILE_FORMAT.into(),
            taken_at: crate::events::now(),
            database: database.into(),
            server_version: server_version.into(),
            hash: s.hash.clone(),
            objects: s.objects.clone(),
        }
    }

    /// Read a saved snapshot, refusing one whose objects no longer match its hash.
    pub fn read(path: &std::path::Path) -> Result<(File, Snapshot), String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let f: File = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}:{}:{}: not a schema snapshot: {e}",
                path.display(),
                e.line(),
                e.column()
            )
        })?;
        if f.format != FILE_FORMAT {
            return Err(format!(
                "{}: format `{}`, expected `{FILE_FORMAT}`",
                path.display(),
                f.format
            ));
        }
        let snap = Snapshot::from_objects(f.objects.clone());
        if snap.hash != f.hash {
            return Err(format!(
                "{}: its objects hash to {}, not the recorded {}: the file was edited",
                path.display(),
                snap.hash,
                f.hash
            ));
        }
        Ok((f, snap))
    }
}

/// Take a snapshot of the database `client` is connected to.
pub async fn take(client: &tokio_postgres::Client) -> Result<Snapshot, tokio_postgres::Error> {
    let statement = client.prepare(SQL).await?;
    take_prepared(client, &statement).await
}

/// Take a snapshot with [`SQL`] already prepared: the query is large, and
/// planning it costs as much as running it on a small schema, so callers
/// that take many snapshots (a rehearsal) prepare it once.
pub async fn take_prepared(
    client: &tokio_postgres::Client,
    statement: &tokio_postgres::Statement,
) -> Result<Snapshot, tokio_postgres::Error> {
    let rows = client.query(statement, &[]).await?;
    Ok(Snapshot::from_rows(rows.iter().map(|r| {
        (
            r.get::<_, String>(0),
            r.get::<_, String>(1),
            r.get::<_, String>(2),
        )
    })))
}

/// What changed from `before` to `after`, both object → hash maps:
/// `(object, "added" | "removed" | "changed")`, in name order.
pub fn diff(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => out.push((k.clone(), "removed")),
            Some(w) if w != v => out.push((k.clone(), "changed")),
            Some(_) => {}
        }
    }
    for k in after.keys() {
        if !before.contains_key(k) {
            out.push((k.clone(), "added"));
        }
    }
    out.sort();
    out
}

/// One object that differs between two snapshots.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub object: String,
    /// `added`, `removed`, `changed`, or `column_order` when a table's
    /// columns are the same but in another order.
    pub change: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// A table's definition with its columns sorted by name.
fn columns_sorted(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(cols) = v.get_mut("columns").and_then(Value::as_array_mut) {
        cols.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    }
    v
}

/// Object by object, what changed from `before` to `after`, with both
/// definitions. Column-order-only changes of a table are `column_order`.
pub fn compare(before: &Snapshot, after: &Snapshot) -> Vec<Change> {
    if before.hash == after.hash {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (k, v) in &before.objects {
        match after.objects.get(k) {
            None => out.push(Change {
                object: k.clone(),
                change: "removed",
                before: Some(v.clone()),
                after: None,
            }),
            Some(w) if w != v => out.push(Change {
                object: k.clone(),
                change: if k.starts_with("table ") && columns_sorted(v) == columns_sorted(w) {
                    "column_order"
                } else {
                    "changed"
                },
                before: Some(v.clone()),
                after: Some(w.clone()),
            }),
            Some(_) => {}
        }
    }
    for (k, w) in &after.objects {
        if !before.objects.contains_key(k) {
            out.push(Change {
                object: k.clone(),
                change: "added",
                before: None,
                after: Some(w.clone()),
            });
        }
    }
    out.sort_by(|a, b| a.object.cmp(&b.object));
    out
}

/// The lines of a definition that differ, for people: `- old` / `+ new`
/// per top-level key (and per column of a table).
pub fn describe(c: &Change) -> Vec<String> {
    fn flat(v: &Value) -> Vec<String> {
        match v {
            Value::Object(m) => m
                .iter()
                .flat_map(|(k, x)| match (k.as_str(), x) {
                    ("columns", Value::Array(cols)) => cols
                        .iter()
                        .enumerate()
                        .map(|(i, c)| format!("column {}: {}", i + 1, canonical(c)))
                        .collect::<Vec<_>>(),
                    (_, Value::Null) => Vec::new(),
                    (_, Value::String(s)) => vec![format!("{k}: {}", s.trim())],
                    _ => vec![format!("{k}: {}", canonical(x))],
                })
                .collect(),
            other => vec![canonical(other)],
        }
    }
    let a = c.before.as_ref().map(flat).unwrap_or_default();
    let b = c.after.as_ref().map(flat).unwrap_or_default();
    let mut out: Vec<String> = a
        .iter()
        .filter(|l| !b.contains(l))
        .map(|l| format!("- {l}"))
        .collect();
    out.extend(
        b.iter()
            .filter(|l| !a.contains(l))
            .map(|l| format!("+ {l}")),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(k: &str, n: &str, d: &str) -> (String, String, String) {
        (k.into(), n.into(), d.into())
    }

    #[test]
    fn the_hash_ignores_row_order_and_sees_every_change() {
        let a = Snapshot::from_rows([
            row("table", "public.a", "{\"x\":1}"),
            row("index", "public.i", "{\"d\":\"x\"}"),
        ]);
        let b = Snapshot::from_rows([
            row("index", "public.i", "{\"d\":\"x\"}"),
            row("table", "public.a", "{\"x\":1}"),
        ]);
        assert_eq!(a.hash, b.hash);
        let c = Snapshot::from_rows([
            row("index", "public.i", "{\"d\":\"y\"}"),
            row("table", "public.a", "{\"x\":1}"),
        ]);
        assert_ne!(a.hash, c.hash);
        let d = Snapshot::from_rows([
            row("table", "public.a", "{\"x\":1}"),
            row("table", "public.b", "{\"x\":1}"),
        ]);
        assert_eq!(
            diff(&a.object_hashes(), &d.object_hashes()),
            [
                ("index public.i".to_string(), "removed"),
                ("table public.b".to_string(), "added")
            ]
        );
        assert_eq!(
            diff(&a.object_hashes(), &c.object_hashes()),
            [("index public.i".to_string(), "changed")]
        );
    }

    #[test]
    fn column_order_is_told_apart_from_a_change() {
        let t = |cols: &str| row("table", "public.t", &format!("{{\"columns\":[{cols}]}}"));
        let a = Snapshot::from_rows([t(r#"{"name":"a"},{"name":"b"}"#)]);
        let b = Snapshot::from_rows([t(r#"{"name":"b"},{"name":"a"}"#)]);
        let c = Snapshot::from_rows([t(r#"{"name":"a"}"#)]);
        assert_eq!(compare(&a, &b)[0].change, "column_order");
        let gone = &compare(&a, &c)[0];
        assert_eq!(gone.change, "changed");
        assert_eq!(describe(gone), [r#"- column 2: {"name":"b"}"#]);
        assert!(compare(&a, &a.clone()).is_empty());
        // JSON text with other spacing is the same definition.
        let spaced = Snapshot::from_rows([row(
            "table",
            "public.t",
            r#"{"columns" : [{"name" : "a"}, {"name" : "b"}]}"#,
        )]);
        assert_eq!(spaced.hash, a.hash);
    }
}
