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

/// One row per object: kind, name, definition (JSON text), and the catalog
/// object it is built from (`pg_class:16384`). `ONLY_KIND(column)` marks
/// where [`sql`] restricts it to some objects.
const SQL: &str = r#"WITH ns AS (
    SELECT oid, nspname FROM pg_namespace
    WHERE nspname NOT IN ('pg_catalog', 'information_schema')
      AND nspname NOT LIKE 'pg_toast%' AND nspname NOT LIKE 'pg_temp%'
      AND NOT (nspname = 'runbook_journal' AND obj_description(oid, 'pg_namespace') = 'runbook run journal')
), rels AS NOT MATERIALIZED (
    SELECT c.oid, c.relkind, c.relacl, c.relowner, c.relpartbound, c.relispartition,
           format('%I.%I', ns.nspname, c.relname) AS qname, d.description AS comment
    FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
    LEFT JOIN pg_description d
      ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
    WHERE coalesce(d.description, '') NOT LIKE 'runbook state:%'
      AND NOT EXISTS (SELECT 1 FROM pg_depend m
                      WHERE m.classid = 'pg_class'::regclass AND m.objid = c.oid AND m.deptype = 'e')
), grants AS NOT MATERIALIZED (
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
), cols AS NOT MATERIALIZED (
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
      AND ONLY_CLASS(r.oid)
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
)::text AS def, 'pg_class:' || r.oid AS obj
FROM rels r
LEFT JOIN cols c ON c.attrelid = r.oid
LEFT JOIN grants g ON g.oid = r.oid
WHERE r.relkind IN ('r', 'p', 'f') AND ONLY_CLASS(r.oid)
UNION ALL
SELECT 'constraint', format('%s.%I', r.qname, co.conname), json_build_object(
    'definition', pg_get_constraintdef(co.oid),
    'validated', co.convalidated,
    'comment', d.description
)::text, 'pg_constraint:' || co.oid
FROM pg_constraint co JOIN rels r ON r.oid = co.conrelid
LEFT JOIN pg_description d
  ON d.objoid = co.oid AND d.classoid = 'pg_constraint'::regclass AND d.objsubid = 0
WHERE ONLY_CON(co.oid)
UNION ALL
SELECT 'index', r.qname, json_build_object(
    'definition', pg_get_indexdef(r.oid),
    'valid', i.indisvalid,
    'comment', r.comment
)::text, 'pg_class:' || r.oid
FROM rels r
JOIN pg_index i ON i.indexrelid = r.oid
JOIN rels t ON t.oid = i.indrelid
WHERE r.relkind IN ('i', 'I') AND ONLY_CLASS(r.oid)
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
)::text, 'pg_class:' || r.oid
FROM rels r JOIN pg_sequence s ON s.seqrelid = r.oid
LEFT JOIN grants g ON g.oid = r.oid
WHERE ONLY_CLASS(r.oid)
UNION ALL
SELECT CASE r.relkind WHEN 'v' THEN 'view' ELSE 'materialized view' END, r.qname, json_build_object(
    'definition', pg_get_viewdef(r.oid),
    'comment', r.comment,
    'grants', g.list
)::text, 'pg_class:' || r.oid
FROM rels r LEFT JOIN grants g ON g.oid = r.oid
WHERE r.relkind IN ('v', 'm') AND ONLY_CLASS(r.oid)
UNION ALL
SELECT 'function', format('%I.%I(%s)', ns.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
    json_build_object(
        'definition', pg_get_functiondef(p.oid),
        'comment', d.description
    )::text, 'pg_proc:' || p.oid
FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
LEFT JOIN pg_description d
  ON d.objoid = p.oid AND d.classoid = 'pg_proc'::regclass AND d.objsubid = 0
WHERE p.prokind IN ('f', 'p', 'w')
  AND NOT EXISTS (SELECT 1 FROM pg_depend m WHERE m.classid = 'pg_proc'::regclass AND m.objid = p.oid AND m.deptype = 'e')
  AND ONLY_PROC(p.oid)
UNION ALL
SELECT 'trigger', format('%s.%I', r.qname, tg.tgname), json_build_object(
    'definition', pg_get_triggerdef(tg.oid),
    'enabled', tg.tgenabled::text
)::text, 'pg_trigger:' || tg.oid
FROM pg_trigger tg JOIN rels r ON r.oid = tg.tgrelid
WHERE NOT tg.tgisinternal AND ONLY_TRIG(tg.oid)
UNION ALL
SELECT 'type', format('%I.%I', ns.nspname, t.typname), json_build_object(
    'enum', (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid),
    'comment', d.description
)::text, 'pg_type:' || t.oid
FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
LEFT JOIN pg_description d
  ON d.objoid = t.oid AND d.classoid = 'pg_type'::regclass AND d.objsubid = 0
WHERE t.typtype = 'e'
  AND NOT EXISTS (SELECT 1 FROM pg_depend m WHERE m.classid = 'pg_type'::regclass AND m.objid = t.oid AND m.deptype = 'e')
  AND ONLY_TYPE(t.oid)
UNION ALL
SELECT 'extension', e.extname, json_build_object(
    'version', e.extversion,
    'schema', e.extnamespace::regnamespace::text
)::text, 'pg_extension:' || e.oid
FROM pg_extension e
WHERE e.extname <> 'plpgsql' AND ONLY_EXT(e.oid)
ORDER BY 1, 2"#;

/// A schema snapshot: every object's definition, and the hash of them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub hash: String,
    /// `kind name` → the definition, as the catalog query built it.
    pub objects: BTreeMap<String, Value>,
}

fn sha256(bytes: &[u8]) -> String {
    crate::hash::sha256_hex(bytes)
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

/// The snapshot query: over every object, or (`only`) over the objects
/// whose oids are given as $1 (pg_class), $2 (pg_constraint), $3 (pg_proc),
/// $4 (pg_trigger) and $5 (pg_type).
fn sql(only: bool) -> String {
    let mut out = String::new();
    let mut rest = SQL;
    while let Some(at) = rest.find("ONLY_") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + "ONLY_".len()..];
        let open = tail.find('(').expect("ONLY_KIND(");
        let close = tail.find(')').expect("ONLY_KIND(column)");
        let (kind, column) = (&tail[..open], &tail[open + 1..close]);
        let param = match kind {
            "CLASS" => "$1",
            "CON" => "$2",
            "PROC" => "$3",
            "TRIG" => "$4",
            "TYPE" => "$5",
            _ => "",
        };
        out.push_str(&match (only, param) {
            (false, _) => "true".to_string(),
            (true, "") => "false".to_string(),
            (true, p) => format!("{column} = ANY({p}::oid[])"),
        });
        rest = &tail[close + 1..];
    }
    out.push_str(rest);
    if !only {
        // Over everything, computing each CTE once is cheaper; over a few
        // objects, inlining lets the oid filters reach the catalog indexes.
        out = out.replace("AS NOT MATERIALIZED", "AS MATERIALIZED");
    }
    out
}

/// The snapshot query over every object: for simple queries and the docs.
pub fn full_sql() -> String {
    sql(false)
}

/// Take a snapshot of the database `client` is connected to.
pub async fn take(client: &tokio_postgres::Client) -> Result<Snapshot, tokio_postgres::Error> {
    let rows = client.query(&full_sql(), &[]).await?;
    Ok(Snapshot::from_rows(rows.iter().map(|r| {
        (
            r.get::<_, String>(0),
            r.get::<_, String>(1),
            r.get::<_, String>(2),
        )
    })))
}

/// One token per catalog row group an object's definition is built from:
/// the row versions (xmin and ctid) of its rows. Any change to a row gives
/// it a new version, so an unchanged token means an unchanged row. Groups
/// of rows (a table's columns) are summarised as their count and the sum of
/// their xmins: a changed row gets an xmin newer than every xmin there was,
/// so the sum moves, and a removed one changes the count. Index validity is
/// also read as a value: PostgreSQL flips it in place.
const TOKENS_SQL: &str = r#"WITH ns AS (
    SELECT oid FROM pg_namespace
    WHERE nspname NOT IN ('pg_catalog', 'information_schema')
      AND nspname NOT LIKE 'pg_toast%' AND nspname NOT LIKE 'pg_temp%'
      AND NOT (nspname = 'runbook_journal' AND obj_description(oid, 'pg_namespace') = 'runbook run journal')
), rels AS (
    SELECT c.oid, c.xmin, c.ctid FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
)
SELECT 'n:' || n.oid, n.xmin::text || n.ctid::text || n.nspname FROM pg_namespace n JOIN ns ON ns.oid = n.oid
UNION ALL SELECT 'r:' || oid, xmin::text || ctid::text FROM rels
UNION ALL SELECT 'a:' || a.attrelid, count(*) || ':' || sum(a.xmin::text::bigint)
    FROM pg_attribute a JOIN rels r ON r.oid = a.attrelid GROUP BY a.attrelid
UNION ALL SELECT 'd:' || ad.adrelid, count(*) || ':' || sum(ad.xmin::text::bigint)
    FROM pg_attrdef ad JOIN rels r ON r.oid = ad.adrelid GROUP BY ad.adrelid
UNION ALL SELECT 'i:' || i.indexrelid, i.xmin::text || i.ctid::text || i.indisvalid::text || i.indisready::text FROM pg_index i JOIN rels r ON r.oid = i.indexrelid
UNION ALL SELECT 'h:' || h.inhrelid, count(*) || ':' || sum(h.xmin::text::bigint) FROM pg_inherits h JOIN rels r ON r.oid = h.inhrelid GROUP BY h.inhrelid
UNION ALL SELECT 'w:' || w.ev_class, count(*) || ':' || sum(w.xmin::text::bigint) FROM pg_rewrite w JOIN rels r ON r.oid = w.ev_class GROUP BY w.ev_class
UNION ALL SELECT 'c:' || co.oid, co.xmin::text || co.ctid::text FROM pg_constraint co JOIN ns ON ns.oid = co.connamespace
UNION ALL SELECT 's:' || q.seqrelid, q.xmin::text || q.ctid::text FROM pg_sequence q JOIN rels r ON r.oid = q.seqrelid
UNION ALL SELECT 'p:' || p.oid, p.xmin::text || p.ctid::text FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
UNION ALL SELECT 't:' || t.oid, t.xmin::text || t.ctid::text FROM pg_trigger t JOIN rels r ON r.oid = t.tgrelid
UNION ALL SELECT 'y:' || t.oid, t.xmin::text || t.ctid::text FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
UNION ALL SELECT 'e:' || e.enumtypid, count(*) || ':' || sum(e.xmin::text::bigint)
    FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid JOIN ns ON ns.oid = t.typnamespace GROUP BY e.enumtypid
UNION ALL SELECT 'm:' || d.classoid::regclass || ':' || d.objoid, count(*) || ':' || sum(d.xmin::text::bigint)
    FROM pg_description d WHERE d.objoid >= 16384 GROUP BY d.classoid, d.objoid
UNION ALL SELECT 'x:' || x.oid, x.xmin::text || x.ctid::text FROM pg_extension x
UNION ALL SELECT 'x:members', coalesce(string_agg(d.classid || '/' || d.objid, ',' ORDER BY d.classid, d.objid), '')
    FROM pg_depend d WHERE d.deptype = 'e' AND d.objid >= 16384"#;

/// Every object that depends, directly or not, on the given ones
/// (`catalog:oid`), themselves included, named by the object a snapshot
/// entry is built from (a default belongs to its table, a rule to its view).
const CLOSURE_SQL: &str = r#"WITH RECURSIVE roots AS (
    SELECT split_part(k, ':', 1)::regclass::oid AS classid, split_part(k, ':', 2)::oid AS objid
    FROM unnest($1::text[]) AS k
), dep(classid, objid) AS (
    SELECT classid, objid FROM roots
    UNION
    SELECT d.classid, d.objid FROM pg_depend d JOIN dep ON d.refclassid = dep.classid AND d.refobjid = dep.objid
)
SELECT CASE dep.classid
    WHEN 'pg_attrdef'::regclass THEN (SELECT 'pg_class:' || adrelid FROM pg_attrdef WHERE oid = dep.objid)
    WHEN 'pg_rewrite'::regclass THEN (SELECT 'pg_class:' || ev_class FROM pg_rewrite WHERE oid = dep.objid)
    ELSE dep.classid::regclass::text || ':' || dep.objid END
FROM dep"#;

/// A snapshot with what it takes to update it without reading everything
/// again: which catalog object each entry was built from, and the catalog
/// row versions it was built at.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub snapshot: Snapshot,
    owners: BTreeMap<String, String>,
    tokens: std::collections::HashMap<String, String>,
    /// How many entries the last update built again (all, for a full one).
    pub rebuilt: usize,
}

impl Tracked {
    /// Entries kept from before plus the rows read now.
    fn assemble(
        mut objects: BTreeMap<String, Value>,
        mut owners: BTreeMap<String, String>,
        rows: Vec<(String, String, Value)>,
        tokens: std::collections::HashMap<String, String>,
    ) -> Tracked {
        let rebuilt = rows.len();
        for (key, owner, def) in rows {
            owners.insert(key.clone(), owner);
            objects.insert(key, def);
        }
        Tracked {
            snapshot: Snapshot::from_objects(objects),
            owners,
            tokens,
            rebuilt,
        }
    }
}

/// The snapshot queries, prepared once on a session.
pub struct Snapshotter {
    deparse: tokio_postgres::Statement,
    deparse_only: tokio_postgres::Statement,
    tokens: tokio_postgres::Statement,
    closure: tokio_postgres::Statement,
}

impl Snapshotter {
    pub async fn new(client: &tokio_postgres::Client) -> Result<Self, tokio_postgres::Error> {
        Ok(Snapshotter {
            deparse: client.prepare(&sql(false)).await?,
            deparse_only: client.prepare(&sql(true)).await?,
            tokens: client.prepare(TOKENS_SQL).await?,
            closure: client.prepare(CLOSURE_SQL).await?,
        })
    }

    async fn tokens(
        &self,
        client: &tokio_postgres::Client,
    ) -> Result<std::collections::HashMap<String, String>, tokio_postgres::Error> {
        Ok(client
            .query(&self.tokens, &[])
            .await?
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect())
    }

    async fn deparse(
        &self,
        client: &tokio_postgres::Client,
        only: Option<&std::collections::HashSet<String>>,
    ) -> Result<Vec<(String, String, Value)>, tokio_postgres::Error> {
        let rows = match only {
            None => client.query(&self.deparse, &[]).await?,
            Some(set) => {
                let oids = |catalog: &str| -> Vec<u32> {
                    set.iter()
                        .filter_map(|k| k.strip_prefix(catalog)?.strip_prefix(':')?.parse().ok())
                        .collect()
                };
                let (a, b, c, d, e) = (
                    oids("pg_class"),
                    oids("pg_constraint"),
                    oids("pg_proc"),
                    oids("pg_trigger"),
                    oids("pg_type"),
                );
                client
                    .query(&self.deparse_only, &[&a, &b, &c, &d, &e])
                    .await?
            }
        };
        Ok(rows
            .iter()
            .map(|r| {
                let def: String = r.get(2);
                (
                    format!("{} {}", r.get::<_, String>(0), r.get::<_, String>(1)),
                    r.get::<_, String>(3),
                    serde_json::from_str(&def).unwrap_or(Value::String(def)),
                )
            })
            .collect())
    }

    /// Every object, read from the catalog.
    pub async fn full(
        &self,
        client: &tokio_postgres::Client,
    ) -> Result<Tracked, tokio_postgres::Error> {
        // Row versions first: a change that lands between the two reads
        // shows as a changed token next time, never as a stale definition.
        let tokens = self.tokens(client).await?;
        let rows = self.deparse(client, None).await?;
        Ok(Tracked::assemble(
            BTreeMap::new(),
            BTreeMap::new(),
            rows,
            tokens,
        ))
    }

    /// The schema now, building again only the entries whose catalog rows,
    /// or the rows of anything they depend on (by pg_depend, transitively),
    /// changed since `prev`. A change to a schema or an extension reads
    /// everything again.
    pub async fn next(
        &self,
        client: &tokio_postgres::Client,
        prev: &Tracked,
    ) -> Result<Tracked, tokio_postgres::Error> {
        let tokens = self.tokens(client).await?;
        let mut changed: Vec<&String> = tokens
            .iter()
            .filter(|(k, v)| prev.tokens.get(*k) != Some(*v))
            .map(|(k, _)| k)
            .collect();
        changed.extend(prev.tokens.keys().filter(|k| !tokens.contains_key(*k)));
        if changed.is_empty() {
            return Ok(Tracked {
                tokens,
                rebuilt: 0,
                ..prev.clone()
            });
        }
        if changed
            .iter()
            .any(|k| k.starts_with("n:") || k.starts_with("x:"))
        {
            return self.full(client).await;
        }
        let roots: Vec<String> = changed
            .iter()
            .filter_map(|k| {
                let (tag, rest) = k.split_once(':')?;
                Some(match tag {
                    "r" | "a" | "d" | "h" | "w" | "i" | "s" => format!("pg_class:{rest}"),
                    "c" => format!("pg_constraint:{rest}"),
                    "p" => format!("pg_proc:{rest}"),
                    "t" => format!("pg_trigger:{rest}"),
                    "y" | "e" => format!("pg_type:{rest}"),
                    "m" => rest.to_string(),
                    _ => return None,
                })
            })
            .collect();
        let redo: std::collections::HashSet<String> = client
            .query(&self.closure, &[&roots])
            .await?
            .iter()
            .filter_map(|r| r.get::<_, Option<String>>(0))
            .collect();
        let rows = self.deparse(client, Some(&redo)).await?;
        let mut objects = prev.snapshot.objects.clone();
        let mut owners = prev.owners.clone();
        let stale: Vec<String> = owners
            .iter()
            .filter(|(_, o)| redo.contains(*o))
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            objects.remove(&k);
            owners.remove(&k);
        }
        Ok(Tracked::assemble(objects, owners, rows, tokens))
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

/// The snapshot keys of tables and what belongs to them (their
/// constraints, indexes, owned sequences and triggers), found by oid, so
/// that a backup of some tables is compared with exactly those. `$1` and
/// `$2` are the tables' schemas and names, unquoted.
const COVERED_KEYS_SQL: &str = r#"
WITH t AS (
    SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS qname
    FROM unnest($1::text[], $2::text[]) AS x(s, name)
    JOIN pg_catalog.pg_namespace n ON n.nspname = x.s
    JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = x.name
)
SELECT 'table ' || t.qname FROM t
UNION ALL
SELECT 'constraint ' || format('%s.%I', t.qname, co.conname)
FROM t JOIN pg_catalog.pg_constraint co ON co.conrelid = t.oid
UNION ALL
SELECT 'index ' || format('%I.%I', n.nspname, ic.relname)
FROM t JOIN pg_catalog.pg_index i ON i.indrelid = t.oid
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
JOIN pg_catalog.pg_namespace n ON n.oid = ic.relnamespace
UNION ALL
SELECT 'sequence ' || format('%I.%I', n.nspname, sc.relname)
FROM t JOIN pg_catalog.pg_depend d
  ON d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = t.oid
 AND d.classid = 'pg_catalog.pg_class'::regclass AND d.deptype IN ('a', 'i')
JOIN pg_catalog.pg_class sc ON sc.oid = d.objid AND sc.relkind = 'S'
JOIN pg_catalog.pg_namespace n ON n.oid = sc.relnamespace
UNION ALL
SELECT 'trigger ' || format('%s.%I', t.qname, tg.tgname)
FROM t JOIN pg_catalog.pg_trigger tg ON tg.tgrelid = t.oid AND NOT tg.tgisinternal
"#;

/// The keys of `tables` (schema, name) and of what belongs to them.
pub async fn covered_keys(
    client: &tokio_postgres::Client,
    tables: &[(String, String)],
) -> Result<std::collections::BTreeSet<String>, tokio_postgres::Error> {
    let schemas: Vec<&str> = tables.iter().map(|(s, _)| s.as_str()).collect();
    let names: Vec<&str> = tables.iter().map(|(_, n)| n.as_str()).collect();
    Ok(client
        .query(COVERED_KEYS_SQL, &[&schemas, &names])
        .await?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect())
}

impl Snapshot {
    /// The objects whose keys pass `keep`, with their own hash.
    pub fn subset(&self, keep: impl Fn(&str) -> bool) -> Snapshot {
        Snapshot::from_objects(
            self.objects
                .iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }
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
