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
use sha2::{Digest, Sha256};

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
           format('%I.%I', ns.nspname, c.relname) AS qname
    FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
    WHERE coalesce(obj_description(c.oid, 'pg_class'), '') NOT LIKE 'runbook state:%'
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
)
SELECT 'table' AS kind, r.qname AS name, json_build_object(
    'kind', r.relkind::text,
    'columns', (
        SELECT json_agg(json_build_object(
            'name', a.attname,
            'type', format_type(a.atttypid, a.atttypmod),
            'not_null', a.attnotnull,
            'default', pg_get_expr(ad.adbin, ad.adrelid),
            'identity', nullif(a.attidentity::text, ''),
            'generated', nullif(a.attgenerated::text, ''),
            'collation', CASE WHEN a.attcollation <> t.typcollation
                              THEN (SELECT collname FROM pg_collation WHERE oid = a.attcollation) END,
            'comment', col_description(a.attrelid, a.attnum)
        ) ORDER BY a.attnum)
        FROM pg_attribute a
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
        WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped),
    'partition_key', CASE WHEN r.relkind = 'p' THEN pg_get_partkeydef(r.oid) END,
    'partition_of', CASE WHEN r.relispartition THEN
        (SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = r.oid) || ' ' ||
        pg_get_expr(r.relpartbound, r.oid) END,
    'comment', obj_description(r.oid, 'pg_class'),
    'grants', (SELECT list FROM grants g WHERE g.oid = r.oid)
)::text AS def
FROM rels r WHERE r.relkind IN ('r', 'p', 'f')
UNION ALL
SELECT 'constraint', format('%s.%I', r.qname, co.conname), json_build_object(
    'definition', pg_get_constraintdef(co.oid),
    'validated', co.convalidated,
    'comment', obj_description(co.oid, 'pg_constraint')
)::text
FROM pg_constraint co JOIN rels r ON r.oid = co.conrelid
UNION ALL
SELECT 'index', r.qname, json_build_object(
    'definition', pg_get_indexdef(r.oid),
    'valid', i.indisvalid,
    'comment', obj_description(r.oid, 'pg_class')
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
    'grants', (SELECT list FROM grants g WHERE g.oid = r.oid)
)::text
FROM rels r JOIN pg_sequence s ON s.seqrelid = r.oid
UNION ALL
SELECT CASE r.relkind WHEN 'v' THEN 'view' ELSE 'materialized view' END, r.qname, json_build_object(
    'definition', pg_get_viewdef(r.oid),
    'comment', obj_description(r.oid, 'pg_class'),
    'grants', (SELECT list FROM grants g WHERE g.oid = r.oid)
)::text
FROM rels r WHERE r.relkind IN ('v', 'm')
UNION ALL
SELECT 'function', format('%I.%I(%s)', ns.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
    json_build_object(
        'definition', pg_get_functiondef(p.oid),
        'comment', obj_description(p.oid, 'pg_proc')
    )::text
FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
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
    'comment', obj_description(t.oid, 'pg_type')
)::text
FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
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
    /// `kind name` → the definition (canonical JSON text).
    pub objects: BTreeMap<String, String>,
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Snapshot {
    /// Build from `(kind, name, definition)` rows.
    pub fn from_rows(rows: impl IntoIterator<Item = (String, String, String)>) -> Snapshot {
        let objects: BTreeMap<String, String> = rows
            .into_iter()
            .map(|(kind, name, def)| (format!("{kind} {name}"), def))
            .collect();
        let mut all = String::new();
        for (k, v) in &objects {
            all.push_str(k);
            all.push('\0');
            all.push_str(v);
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
            .map(|(k, v)| (k.clone(), sha256(v.as_bytes())))
            .collect()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(k: &str, n: &str, d: &str) -> (String, String, String) {
        (k.into(), n.into(), d.into())
    }

    #[test]
    fn the_hash_ignores_row_order_and_sees_every_change() {
        let a = Snapshot::from_rows([
            row("table", "public.a", "{}"),
            row("index", "public.i", "x"),
        ]);
        let b = Snapshot::from_rows([
            row("index", "public.i", "x"),
            row("table", "public.a", "{}"),
        ]);
        assert_eq!(a.hash, b.hash);
        let c = Snapshot::from_rows([
            row("index", "public.i", "y"),
            row("table", "public.a", "{}"),
        ]);
        assert_ne!(a.hash, c.hash);
        let d = Snapshot::from_rows([
            row("table", "public.a", "{}"),
            row("table", "public.b", "{}"),
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
}
