//! Schema snapshots: a canonical description of the schema, read from the
//! catalog in one query (not by running pg_dump), and its hash.
//!
//! Each object (table, constraint, index, sequence, view, materialized view,
//! function, aggregate, operator, operator family and class, cast, trigger,
//! rule, event trigger, enum, range type, domain, standalone composite
//! type, collation, text search configuration, dictionary, parser and
//! template, access method, extended statistics, publication, default
//! privileges, foreign data wrapper, server and user mapping, extension,
//! schema) becomes one entry keyed by `kind name`, with a JSON definition
//! built by the server's own `pg_get_*def` functions where there is one. A
//! table's entry holds its columns, its row-level security and policies,
//! and its storage settings where set. An owner is a key only where it is
//! not the schema's (or the database's); grants (a table's, a column's, a
//! function's, a schema's) are kept without the owner's own. runbook's own
//! state tables (commented `runbook state: ...`) and objects that belong to
//! extensions are left out.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The marker runbook puts in the comment of its own state tables.
pub const STATE_COMMENT: &str = "runbook state:";

/// One row per object: kind, name, definition (JSON text), and the catalog
/// object it is built from (`pg_class:16384`). `ONLY_KIND(column)` marks
/// where [`sql`] restricts it to some objects.
const SQL: &str = r#"WITH db AS (
    SELECT datdba AS owner FROM pg_database WHERE datname = current_database()
), ns AS (
    -- Each schema with the owner its objects are taken to have unless
    -- they say otherwise: its own, or for one owned by pg_database_owner
    -- (and `public` as initdb makes it before PostgreSQL 15) the database's.
    SELECT n.oid, n.nspname,
           CASE WHEN n.nspowner = to_regrole('pg_database_owner') OR (n.nspname = 'public' AND n.nspowner = 10)
                THEN (SELECT owner FROM db) ELSE n.nspowner END AS owner
    FROM pg_namespace n
    WHERE nspname NOT IN ('pg_catalog', 'information_schema')
      AND nspname NOT LIKE 'pg_toast%' AND nspname NOT LIKE 'pg_temp%'
      AND NOT (nspname = 'runbook_journal' AND EXISTS (
          SELECT FROM pg_description d WHERE d.objoid = n.oid AND d.classoid = 'pg_namespace'::regclass
                                         AND d.objsubid = 0 AND d.description = 'runbook run journal'))
), rels AS MATERIALIZED (
    SELECT c.oid, c.relkind, c.relacl, c.relowner, c.relpartbound, c.relispartition,
           c.relpersistence, c.reloptions, c.relrowsecurity, c.relforcerowsecurity, c.relreplident,
           -- Where not the database's default, and not heap: keys where set.
           CASE WHEN c.reltablespace <> 0 THEN ', "tablespace" : '
               || to_json((SELECT spcname FROM pg_tablespace WHERE oid = c.reltablespace))::text ELSE '' END AS space_key,
           CASE WHEN c.relkind IN ('r', 'm') AND c.relam <> 0 AND c.relam <> (SELECT oid FROM pg_am WHERE amname = 'heap')
                THEN ', "access_method" : ' || to_json((SELECT amname FROM pg_am WHERE oid = c.relam))::text ELSE '' END AS am_key,
           format('%I.%I', ns.nspname, c.relname) AS qname, d.description AS comment, ns.owner AS nspowner
    FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
    LEFT JOIN pg_description d
      ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
    WHERE coalesce(d.description, '') NOT LIKE 'runbook state:%'
      AND ONLY_RELS(c.oid)
      AND NOT EXISTS (SELECT 1 FROM pg_depend m
                      WHERE m.classid = 'pg_class'::regclass AND m.objid = c.oid AND m.deptype = 'e')
), grants AS MATERIALIZED (
    SELECT r.oid, json_agg(g.entry ORDER BY g.entry) AS list
    FROM rels r
    CROSS JOIN LATERAL (ACL_ENTRIES(r.relacl, r.relowner)) g
    GROUP BY r.oid
), cols AS MATERIALIZED (
    -- Every column of every table at once: a correlated subquery per table
    -- costs ten times as much. A column's own grants (`GRANT SELECT (c)`)
    -- are a key of it only where it has some, so a column without any
    -- reads as it did before they were taken in.
    -- So are its storage (`SET STORAGE`), where not its type's, its
    -- compression, statistics target and options (`n_distinct`), where set.
    -- Its options leave out `pg_attver=N`, which Debian's PostgreSQL 15.20
    -- gives every new column by itself (a user's `SET (pg_attver=...)` does
    -- not change it, and pg_dump leaves it out): a column made again gets
    -- another, and the same schema would read as changed.
    SELECT a.attrelid, json_agg(CASE WHEN a.attacl IS NULL AND a.attstorage = t.typstorage AND ao.opts IS NULL
                                          AND coalesce(a.attstattarget, -1) < 0 AND ATTCOMPRESSION = ''
                                          AND a.attfdwoptions IS NULL
                                     THEN c.def ELSE (
            left(c.def::text, -1)
            || CASE WHEN a.attstorage <> t.typstorage THEN ', "storage" : ' || to_json(CASE a.attstorage
                   WHEN 'p' THEN 'plain' WHEN 'e' THEN 'external' WHEN 'm' THEN 'main' ELSE 'extended' END)::text
               ELSE '' END
            || CASE WHEN ATTCOMPRESSION <> '' THEN ', "compression" : ' || to_json(CASE ATTCOMPRESSION
                   WHEN 'p' THEN 'pglz' WHEN 'l' THEN 'lz4' ELSE ATTCOMPRESSION END)::text ELSE '' END
            || CASE WHEN a.attstattarget >= 0 THEN ', "statistics" : ' || a.attstattarget ELSE '' END
            || CASE WHEN ao.opts IS NOT NULL THEN ', "options" : ' || to_json(ao.opts)::text ELSE '' END
            || CASE WHEN a.attfdwoptions IS NOT NULL THEN ', "fdw_options" : ' || FDW_OPTIONS(a.attfdwoptions, o)::text ELSE '' END
            || CASE WHEN a.attacl IS NOT NULL THEN ', "grants" : ' || coalesce(GRANTS(a.attacl, r.relowner)::text, '[]') ELSE '' END || '}')::json END ORDER BY a.attnum) AS list
    FROM rels r
    JOIN pg_attribute a ON a.attrelid = r.oid
    JOIN pg_type t ON t.oid = a.atttypid
    CROSS JOIN LATERAL (SELECT CASE WHEN a.attoptions IS NOT NULL THEN
            (SELECT array_agg(o) FROM unnest(a.attoptions) o WHERE o NOT LIKE 'pg\_attver=%') END AS opts) ao
    LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
    LEFT JOIN pg_description cd
      ON cd.objoid = a.attrelid AND cd.classoid = 'pg_class'::regclass AND cd.objsubid = a.attnum
    CROSS JOIN LATERAL (SELECT json_build_object(
            'name', a.attname,
            'type', format_type(a.atttypid, a.atttypmod),
            'not_null', a.attnotnull,
            'default', pg_get_expr(ad.adbin, ad.adrelid),
            'identity', nullif(a.attidentity::text, ''),
            'generated', nullif(a.attgenerated::text, ''),
            'collation', CASE WHEN a.attcollation <> t.typcollation
                              THEN (SELECT collname FROM pg_collation WHERE oid = a.attcollation) END,
            'comment', cd.description
        ) AS def) c
    WHERE r.relkind IN ('r', 'p', 'f') AND a.attnum > 0 AND NOT a.attisdropped
      AND ONLY_CLASS(r.oid)
    GROUP BY a.attrelid
), policies AS MATERIALIZED (
    SELECT po.polrelid, json_agg(json_build_object(
            'name', po.polname,
            'command', po.polcmd::text,
            'permissive', po.polpermissive,
            'roles', (SELECT json_agg(x.name ORDER BY x.name) FROM (
                          SELECT CASE WHEN o = 0 THEN 'PUBLIC' ELSE o::regrole::text END AS name
                          FROM unnest(po.polroles) o) x),
            'using', pg_get_expr(po.polqual, po.polrelid),
            'with_check', pg_get_expr(po.polwithcheck, po.polrelid)
        ) ORDER BY po.polname) AS list
    FROM pg_policy po JOIN rels r ON r.oid = po.polrelid
    WHERE ONLY_CLASS(po.polrelid)
    GROUP BY po.polrelid
)
SELECT 'table' AS kind, r.qname AS name, (SELECT CASE WHEN x.extra IS NULL THEN t ELSE left(t, -1) || x.extra || '}' END FROM (SELECT json_build_object(
    'kind', r.relkind::text,
    'columns', c.list,
    'partition_key', CASE WHEN r.relkind = 'p' THEN pg_get_partkeydef(r.oid) END,
    'partition_of', CASE WHEN r.relispartition THEN
        (SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = r.oid) || ' ' ||
        pg_get_expr(r.relpartbound, r.oid) END,
    'comment', r.comment,
    'grants', g.list
)::text AS t) tt) AS def, 'pg_class:' || r.oid AS obj
FROM rels r
LEFT JOIN cols c ON c.attrelid = r.oid
LEFT JOIN grants g ON g.oid = r.oid
LEFT JOIN policies p ON p.polrelid = r.oid
-- Storage and access settings are keys only where they differ from a new
-- table's, so a table with none reads as it did before they were taken in.
CROSS JOIN LATERAL (SELECT nullif(concat(
    CASE WHEN r.relpersistence = 'u' THEN ', "unlogged" : true' END,
    r.space_key, r.am_key,
    CASE WHEN r.reloptions IS NOT NULL THEN ', "options" : ' || to_json(r.reloptions)::text END,
    CASE WHEN r.relrowsecurity OR r.relforcerowsecurity THEN ', "row_security" : '
        || json_build_object('enabled', r.relrowsecurity, 'forced', r.relforcerowsecurity)::text END,
    CASE WHEN r.relreplident <> 'd' THEN ', "replica_identity" : ' || to_json(CASE r.relreplident
        WHEN 'n' THEN 'nothing' WHEN 'f' THEN 'full'
        ELSE 'index ' || coalesce((SELECT quote_ident(ic.relname) FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                                   WHERE i.indrelid = r.oid AND i.indisreplident), '?') END)::text END,
    CASE WHEN p.list IS NOT NULL THEN ', "policies" : ' || p.list::text END,
    OWNER_KEY(r.relowner, r.nspowner),
    -- A foreign table's server and options.
    CASE WHEN r.relkind = 'f' THEN (
        SELECT ', "foreign" : ' || json_build_object('server', quote_ident(fs.srvname), 'options', FDW_OPTIONS(ft.ftoptions, o))::text
        FROM pg_foreign_table ft JOIN pg_foreign_server fs ON fs.oid = ft.ftserver WHERE ft.ftrelid = r.oid) END,
    -- Plain inheritance (`INHERITS`, `ALTER TABLE ... INHERIT`); a
    -- partition's parent is its `partition_of`.
    CASE WHEN NOT r.relispartition THEN (
        SELECT ', "inherits" : ' || json_agg(i.inhparent::regclass::text ORDER BY i.inhseqno)::text
        FROM pg_inherits i WHERE i.inhrelid = r.oid) END
), '') AS extra) x
WHERE r.relkind IN ('r', 'p', 'f') AND ONLY_CLASS(r.oid)
UNION ALL
SELECT 'constraint', format('%s.%I', r.qname, co.conname), json_build_object(
    'definition', pg_get_constraintdef(co.oid),
    'validated', co.convalidated,
    'comment', d.description
)::text, 'pg_constraint:' || co.oid
FROM pg_constraint co JOIN rels r ON r.oid = co.conrelid
COMMENT_JOIN(pg_constraint, co.oid)
WHERE ONLY_CON(co.oid)
UNION ALL
-- `CLUSTER ON` marks one index of a table, its tablespace, and the
-- statistics targets of its columns (`ALTER INDEX ... ALTER COLUMN 1 SET
-- STATISTICS`, by column number): keys only where set.
SELECT 'index', r.qname, (SELECT left(x.t, -1) || CASE WHEN i.indisclustered THEN ', "clustered" : true' ELSE '' END
                                || r.space_key
                                || coalesce((SELECT ', "statistics" : ' || json_object_agg(a.attnum, a.attstattarget ORDER BY a.attnum)::text
                                             FROM pg_attribute a WHERE a.attrelid = r.oid AND a.attstattarget >= 0), '')
                                || '}'
    FROM (SELECT json_build_object(
        'definition', pg_get_indexdef(r.oid),
        'valid', i.indisvalid,
        'comment', r.comment
    )::text AS t) x), 'pg_class:' || r.oid
FROM rels r
JOIN pg_index i ON i.indexrelid = r.oid
JOIN rels t ON t.oid = i.indrelid
WHERE r.relkind IN ('i', 'I') AND ONLY_CLASS(r.oid)
UNION ALL
SELECT 'sequence', r.qname, left(json_build_object(
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
)::text, -1) || OWNER_KEY(r.relowner, r.nspowner) || '}', 'pg_class:' || r.oid
FROM rels r JOIN pg_sequence s ON s.seqrelid = r.oid
LEFT JOIN grants g ON g.oid = r.oid
WHERE ONLY_CLASS(r.oid)
UNION ALL
-- A view's options (`security_invoker`, `security_barrier`, a materialized
-- view's storage) are a key only where set.
SELECT CASE r.relkind WHEN 'v' THEN 'view' ELSE 'materialized view' END, r.qname,
    (SELECT left(v.t, -1) || CASE WHEN r.reloptions IS NULL THEN '' ELSE ', "options" : ' || to_json(r.reloptions)::text END
                          || r.space_key || r.am_key || OWNER_KEY(r.relowner, r.nspowner) || '}'
     FROM (SELECT json_build_object(
        'definition', pg_get_viewdef(r.oid),
        'comment', r.comment,
        'grants', g.list
     )::text AS t) v), 'pg_class:' || r.oid
FROM rels r LEFT JOIN grants g ON g.oid = r.oid
WHERE r.relkind IN ('v', 'm') AND ONLY_CLASS(r.oid)
UNION ALL
-- A function's grants (`REVOKE EXECUTE ... FROM PUBLIC`) are a key only
-- where they are not the default, so a function with none reads as before.
SELECT 'function', format('%I.%I(%s)', ns.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
    left(f.def, -1) || CASE WHEN p.proacl IS NULL THEN '' ELSE ', "grants" : ' || coalesce(GRANTS(p.proacl, p.proowner)::text, '[]') END || OWNER_KEY(p.proowner, ns.owner) || '}', 'pg_proc:' || p.oid
FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
COMMENT_JOIN(pg_proc, p.oid)
CROSS JOIN LATERAL (SELECT json_build_object(
        'definition', pg_get_functiondef(p.oid),
        'comment', d.description
    )::text AS def) f
WHERE p.oid >= 16384 AND p.prokind IN ('f', 'p', 'w')
  AND NOT_MEMBER(pg_proc, p.oid)
  AND ONLY_PROC(p.oid)
UNION ALL
-- pg_get_functiondef cannot write an aggregate: its parts, from pg_aggregate.
SELECT 'aggregate', format('%I.%I(%s)', ns.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
    left(json_build_object(
        'kind', a.aggkind::text,
        'sfunc', a.aggtransfn::text,
        'stype', format_type(a.aggtranstype, NULL),
        'finalfunc', nullif(a.aggfinalfn::oid, 0)::regproc::text,
        'combinefunc', nullif(a.aggcombinefn::oid, 0)::regproc::text,
        'initcond', a.agginitval,
        'sortop', nullif(a.aggsortop, 0)::regoperator::text,
        'parallel', p.proparallel::text,
        'comment', d.description,
        'grants', GRANTS(p.proacl, p.proowner)
    )::text, -1) || OWNER_KEY(p.proowner, ns.owner) || '}', 'pg_proc:' || p.oid
FROM pg_proc p JOIN pg_aggregate a ON a.aggfnoid = p.oid JOIN ns ON ns.oid = p.pronamespace
COMMENT_JOIN(pg_proc, p.oid)
WHERE p.oid >= 16384 AND p.prokind = 'a'
  AND NOT_MEMBER(pg_proc, p.oid)
  AND ONLY_PROC(p.oid)
UNION ALL
SELECT 'statistics', format('%I.%I', ns.nspname, st.stxname), left(json_build_object(
    'definition', pg_get_statisticsobjdef(st.oid),
    'comment', d.description
)::text, -1) || OWNER_KEY(st.stxowner, ns.owner) || '}', 'pg_statistic_ext:' || st.oid
FROM pg_statistic_ext st JOIN ns ON ns.oid = st.stxnamespace
COMMENT_JOIN(pg_statistic_ext, st.oid)
WHERE ONLY_STAT(st.oid)
UNION ALL
SELECT 'trigger', format('%s.%I', r.qname, tg.tgname), json_build_object(
    'definition', pg_get_triggerdef(tg.oid),
    'enabled', tg.tgenabled::text
)::text, 'pg_trigger:' || tg.oid
FROM pg_trigger tg JOIN rels r ON r.oid = tg.tgrelid
WHERE NOT tg.tgisinternal AND ONLY_TRIG(tg.oid)
UNION ALL
-- Rules, but a view's own (`_RETURN`): `DO INSTEAD NOTHING` changes what a
-- statement does. Each is built from its relation, as a view is.
SELECT 'rule', format('%s.%I', r.qname, w.rulename), json_build_object(
    'definition', pg_get_ruledef(w.oid),
    'enabled', w.ev_enabled::text,
    'comment', d.description
)::text, 'pg_class:' || w.ev_class
FROM pg_rewrite w JOIN rels r ON r.oid = w.ev_class
COMMENT_JOIN(pg_rewrite, w.oid)
WHERE w.rulename <> '_RETURN' AND ONLY_CLASS(w.ev_class)
UNION ALL
-- Enums, domains (their constraints are constraints of their own) and
-- standalone composite types; a composite type's attributes are rows of its
-- pg_class entry, which its snapshot entry is built from.
SELECT 'type', format('%I.%I', ns.nspname, t.typname), left((CASE t.typtype
    WHEN 'e' THEN json_build_object(
        'enum', (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid),
        'comment', d.description)
    WHEN 'd' THEN json_build_object(
        'domain', format_type(t.typbasetype, t.typtypmod),
        'not_null', t.typnotnull,
        'default', pg_get_expr(t.typdefaultbin, 0),
        'collation', CASE WHEN t.typcollation <> (SELECT b.typcollation FROM pg_type b WHERE b.oid = t.typbasetype)
                          THEN (SELECT collname FROM pg_collation WHERE oid = t.typcollation) END,
        'comment', d.description)
    WHEN 'r' THEN (SELECT json_build_object(
        'range', format_type(rg.rngsubtype, NULL),
        'opclass', (SELECT format('%I.%I', opn.nspname, opc.opcname) FROM pg_opclass opc
                    JOIN pg_namespace opn ON opn.oid = opc.opcnamespace WHERE opc.oid = rg.rngsubopc),
        'collation', (SELECT collname FROM pg_collation WHERE oid = rg.rngcollation),
        'canonical', nullif(rg.rngcanonical::oid, 0)::regproc::text,
        'subtype_diff', nullif(rg.rngsubdiff::oid, 0)::regproc::text,
        'comment', d.description) FROM pg_range rg WHERE rg.rngtypid = t.oid)
    ELSE json_build_object(
        'composite', (SELECT json_agg(json_build_object(
                'name', a.attname,
                'type', format_type(a.atttypid, a.atttypmod),
                'collation', CASE WHEN a.attcollation <> (SELECT b.typcollation FROM pg_type b WHERE b.oid = a.atttypid)
                                  THEN (SELECT collname FROM pg_collation WHERE oid = a.attcollation) END,
                'comment', (SELECT ad.description FROM pg_description ad WHERE ad.objoid = t.typrelid
                            AND ad.classoid = 'pg_class'::regclass AND ad.objsubid = a.attnum)
            ) ORDER BY a.attnum)
            FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped),
        'comment', d.description)
    END)::text, -1) || OWNER_KEY(t.typowner, ns.owner) || '}',
    CASE WHEN t.typtype = 'c' THEN 'pg_class:' || t.typrelid ELSE 'pg_type:' || t.oid END
FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
COMMENT_JOIN(pg_type, t.oid)
WHERE t.oid >= 16384
  AND (t.typtype IN ('e', 'd', 'r')
       OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c'))
  AND NOT_MEMBER(pg_type, t.oid)
  AND ONLY_TYPEREL(t.oid)
UNION ALL
SELECT 'constraint', format('%I.%I.%I', ns.nspname, t.typname, co.conname), json_build_object(
    'definition', pg_get_constraintdef(co.oid),
    'validated', co.convalidated,
    'comment', d.description
)::text, 'pg_constraint:' || co.oid
FROM pg_constraint co JOIN pg_type t ON t.oid = co.contypid JOIN ns ON ns.oid = t.typnamespace
COMMENT_JOIN(pg_constraint, co.oid)
WHERE co.contypid <> 0
  AND NOT_MEMBER(pg_type, t.oid)
  AND ONLY_CON(co.oid)
UNION ALL
SELECT 'schema', format('%I', ns.nspname), left(json_build_object(
    'comment', d.description,
    'grants', g.list
)::text, -1) || OWNER_KEY(n.nspowner, o.base) || '}', 'pg_namespace:' || ns.oid
FROM ns JOIN pg_namespace n ON n.oid = ns.oid
COMMENT_JOIN(pg_namespace, ns.oid)
CROSS JOIN LATERAL (SELECT json_agg(g.entry ORDER BY g.entry) AS list FROM (ACL_ENTRIES(n.nspacl, n.nspowner)) g) g
-- A schema's owner is a key where it is not the database's (`public`'s,
-- where it is not the one initdb gives it).
CROSS JOIN LATERAL (SELECT CASE
    WHEN ns.nspname <> 'public' THEN (SELECT owner FROM db)
    WHEN current_setting('server_version_num')::int >= 150000 THEN to_regrole('pg_database_owner')::oid
    ELSE 10 END AS base) o
-- `public` is in every database: only where its comment or grants are not
-- the ones initdb gives it (which differ from PostgreSQL 15 on), so that a
-- `REVOKE CREATE ON SCHEMA public FROM PUBLIC` shows, and every snapshot
-- taken before schemas were read still compares equal.
WHERE (ns.nspname <> 'public'
       OR d.description IS DISTINCT FROM 'standard public schema'
       OR g.list::text IS DISTINCT FROM CASE WHEN current_setting('server_version_num')::int >= 150000
                                             THEN '["PUBLIC=USAGE"]' ELSE '["PUBLIC=CREATE,USAGE"]' END
       OR n.nspowner <> o.base)
  AND ONLY_NSP(ns.oid)
UNION ALL
RARE_KINDS
SELECT 'extension', e.extname, json_build_object(
    'version', e.extversion,
    'schema', e.extnamespace::regnamespace::text
)::text, 'pg_extension:' || e.oid
FROM pg_extension e
WHERE e.extname <> 'plpgsql' AND ONLY_EXT(e.oid)
ORDER BY 1, 2"#;

/// The branches of [`SQL`] (at `RARE_KINDS`) over catalogs that most
/// databases hold no row of: collations, operators, casts, publications,
/// default privileges, event triggers, and text search configurations and
/// dictionaries. An incremental read leaves them out while those catalogs
/// are empty (the tokens' key sets say so): the branches return nothing
/// then, and starting a plan that holds them cost a quarter more per read
/// (0.81 -> 1.02 ms on a 200-table schema).
const RARE_SQL: &str = r#"SELECT 'collation', format('%I.%I', ns.nspname, co.collname),
    -- Its catalog row as it is: the locale columns differ between server
    -- versions, and two snapshots compared come from one server.
    (to_jsonb(co) - 'oid' - 'collname' - 'collnamespace' - 'collowner' - 'collversion'
     || jsonb_build_object('comment', d.description)
     || CASE WHEN co.collowner <> ns.owner THEN jsonb_build_object('owner', co.collowner::regrole::text) ELSE '{}' END
    )::text, 'pg_collation:' || co.oid
FROM pg_collation co JOIN ns ON ns.oid = co.collnamespace
COMMENT_JOIN(pg_collation, co.oid)
WHERE co.oid >= 16384
  AND NOT_MEMBER(pg_collation, co.oid)
  AND ONLY_COLL(co.oid)
UNION ALL
SELECT 'operator', format('%I.%s(%s, %s)', ns.nspname, o.oprname,
        coalesce(format_type(nullif(o.oprleft, 0), NULL), 'NONE'), format_type(o.oprright, NULL)),
    left(json_build_object(
        'result', format_type(o.oprresult, NULL),
        'function', o.oprcode::regprocedure::text,
        'commutator', nullif(o.oprcom, 0)::regoperator::text,
        'negator', nullif(o.oprnegate, 0)::regoperator::text,
        'restrict', nullif(o.oprrest::oid, 0)::regproc::text,
        'join', nullif(o.oprjoin::oid, 0)::regproc::text,
        'hashes', o.oprcanhash,
        'merges', o.oprcanmerge,
        'comment', d.description
    )::text, -1) || OWNER_KEY(o.oprowner, ns.owner) || '}', 'pg_operator:' || o.oid
FROM pg_operator o JOIN ns ON ns.oid = o.oprnamespace
COMMENT_JOIN(pg_operator, o.oid)
WHERE o.oid >= 16384
  AND NOT_MEMBER(pg_operator, o.oid)
  AND ONLY_OPER(o.oid)
UNION ALL
SELECT 'cast', format('%s AS %s', format_type(k.castsource, NULL), format_type(k.casttarget, NULL)), json_build_object(
    'function', nullif(k.castfunc, 0)::regprocedure::text,
    'context', CASE k.castcontext WHEN 'e' THEN 'explicit' WHEN 'a' THEN 'assignment' ELSE 'implicit' END,
    'method', CASE k.castmethod WHEN 'f' THEN 'function' WHEN 'i' THEN 'inout' ELSE 'binary' END,
    'comment', d.description
)::text, 'pg_cast:' || k.oid
FROM pg_cast k
COMMENT_JOIN(pg_cast, k.oid)
WHERE k.oid >= 16384
  -- A range type's casts to its multirange come and go with it.
  AND NOT EXISTS (SELECT 1 FROM pg_depend m WHERE m.classid = 'pg_cast'::regclass AND m.objid = k.oid AND m.deptype IN ('e', 'i'))
  AND ONLY_CAST(k.oid)
UNION ALL
-- A publication, with the tables it names (their column lists and row
-- filters where it sets them) and its schemas (`FOR TABLES IN SCHEMA`,
-- PostgreSQL 15 on: found through pg_depend, so that the query runs on
-- older servers too).
SELECT 'publication', format('%I', pb.pubname), left(json_build_object(
    'all_tables', pb.puballtables,
    'publish', concat_ws(', ', CASE WHEN pb.pubinsert THEN 'insert' END, CASE WHEN pb.pubupdate THEN 'update' END,
                         CASE WHEN pb.pubdelete THEN 'delete' END, CASE WHEN pb.pubtruncate THEN 'truncate' END),
    'via_root', pb.pubviaroot,
    'tables', (SELECT json_agg(json_build_object(
            'table', x.qname,
            'columns', CASE WHEN to_jsonb(x.pr) ->> 'prattrs' IS NOT NULL THEN to_jsonb(pt) -> 'attnames' END,
            'where', to_jsonb(pt) ->> 'rowfilter'
        ) ORDER BY x.qname)
        FROM (SELECT pr, format('%I.%I', n.nspname, c.relname) AS qname, n.nspname, c.relname
              FROM pg_publication_rel pr JOIN pg_class c ON c.oid = pr.prrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE pr.prpubid = pb.oid) x
        LEFT JOIN pg_publication_tables pt
          ON pt.pubname = pb.pubname AND pt.schemaname = x.nspname AND pt.tablename = x.relname),
    'schemas', (SELECT json_agg(s.refobjid::regnamespace::text ORDER BY s.refobjid::regnamespace::text)
                FROM pg_depend p JOIN pg_depend s
                  ON s.classid = p.classid AND s.objid = p.objid AND s.refclassid = 'pg_namespace'::regclass
                WHERE p.classid = to_regclass('pg_catalog.pg_publication_namespace')
                  AND p.refclassid = 'pg_publication'::regclass AND p.refobjid = pb.oid),
    'comment', d.description
)::text, -1) || OWNER_KEY(pb.pubowner, db.owner) || '}', 'pg_publication:' || pb.oid
FROM pg_publication pb CROSS JOIN db
COMMENT_JOIN(pg_publication, pb.oid)
WHERE ONLY_PUB(pb.oid)
UNION ALL
-- `ALTER DEFAULT PRIVILEGES`: the grants a role's new objects get, in a
-- schema or in every one; named by the role, since that is what they are of.
SELECT 'default privileges', format('for %s%s on %s', da.defaclrole::regrole,
        coalesce(' in schema ' || quote_ident(ns.nspname), ''),
        CASE da.defaclobjtype WHEN 'r' THEN 'tables' WHEN 'S' THEN 'sequences' WHEN 'f' THEN 'functions'
                              WHEN 'T' THEN 'types' WHEN 'n' THEN 'schemas' ELSE da.defaclobjtype::text END),
    json_build_object(
        'grants', GRANTS(da.defaclacl, da.defaclrole)
    )::text, 'pg_default_acl:' || da.oid
FROM pg_default_acl da LEFT JOIN ns ON ns.oid = da.defaclnamespace
WHERE (da.defaclnamespace = 0 OR ns.oid IS NOT NULL) AND ONLY_DACL(da.oid)
UNION ALL
SELECT 'event trigger', format('%I', et.evtname), left(json_build_object(
    'event', et.evtevent,
    'function', et.evtfoid::regprocedure::text,
    'enabled', et.evtenabled::text,
    'tags', et.evttags,
    'comment', d.description
)::text, -1) || OWNER_KEY(et.evtowner, db.owner) || '}', 'pg_event_trigger:' || et.oid
FROM pg_event_trigger et CROSS JOIN db
COMMENT_JOIN(pg_event_trigger, et.oid)
WHERE NOT_MEMBER(pg_event_trigger, et.oid)
  AND ONLY_EVT(et.oid)
UNION ALL
SELECT 'text search configuration', format('%I.%I', ns.nspname, cf.cfgname), left(json_build_object(
    'parser', (SELECT format('%I.%I', pn.nspname, pp.prsname) FROM pg_ts_parser pp
               JOIN pg_namespace pn ON pn.oid = pp.prsnamespace WHERE pp.oid = cf.cfgparser),
    'mappings', (SELECT json_agg(json_build_object('token', x.alias, 'dictionaries', x.dictionaries) ORDER BY x.alias)
                 FROM (SELECT tt.alias, json_agg(format('%I.%I', dn.nspname, dc.dictname) ORDER BY mp.mapseqno) AS dictionaries
                       FROM pg_ts_config_map mp
                       JOIN ts_token_type(cf.cfgparser) tt ON tt.tokid = mp.maptokentype
                       JOIN pg_ts_dict dc ON dc.oid = mp.mapdict
                       JOIN pg_namespace dn ON dn.oid = dc.dictnamespace
                       WHERE mp.mapcfg = cf.oid
                       GROUP BY tt.alias) x),
    'comment', d.description
)::text, -1) || OWNER_KEY(cf.cfgowner, ns.owner) || '}', 'pg_ts_config:' || cf.oid
FROM pg_ts_config cf JOIN ns ON ns.oid = cf.cfgnamespace
COMMENT_JOIN(pg_ts_config, cf.oid)
WHERE cf.oid >= 16384
  AND NOT_MEMBER(pg_ts_config, cf.oid)
  AND ONLY_TSC(cf.oid)
UNION ALL
SELECT 'text search dictionary', format('%I.%I', ns.nspname, dc.dictname), left(json_build_object(
    'template', (SELECT format('%I.%I', tn.nspname, tp.tmplname) FROM pg_ts_template tp
                 JOIN pg_namespace tn ON tn.oid = tp.tmplnamespace WHERE tp.oid = dc.dicttemplate),
    'options', dc.dictinitoption,
    'comment', d.description
)::text, -1) || OWNER_KEY(dc.dictowner, ns.owner) || '}', 'pg_ts_dict:' || dc.oid
FROM pg_ts_dict dc JOIN ns ON ns.oid = dc.dictnamespace
COMMENT_JOIN(pg_ts_dict, dc.oid)
WHERE dc.oid >= 16384
  AND NOT_MEMBER(pg_ts_dict, dc.oid)
  AND ONLY_TSD(dc.oid)
UNION ALL
-- Foreign data wrappers (but an extension's, as postgres_fdw's), servers
-- and user mappings. A user mapping's options are named, never shown: it
-- is where credentials live.
SELECT 'foreign data wrapper', format('%I', w.fdwname), left(json_build_object(
    'handler', nullif(w.fdwhandler, 0)::regproc::text,
    'validator', nullif(w.fdwvalidator, 0)::regproc::text,
    'options', FDW_OPTIONS(w.fdwoptions, o),
    'grants', GRANTS(w.fdwacl, w.fdwowner),
    'comment', d.description
)::text, -1) || OWNER_KEY(w.fdwowner, db.owner) || '}', 'pg_foreign_data_wrapper:' || w.oid
FROM pg_foreign_data_wrapper w CROSS JOIN db
COMMENT_JOIN(pg_foreign_data_wrapper, w.oid)
WHERE NOT_MEMBER(pg_foreign_data_wrapper, w.oid)
  AND ONLY_FDW(w.oid)
UNION ALL
SELECT 'foreign server', format('%I', sv.srvname), left(json_build_object(
    'wrapper', (SELECT quote_ident(w.fdwname) FROM pg_foreign_data_wrapper w WHERE w.oid = sv.srvfdw),
    'type', sv.srvtype,
    'version', sv.srvversion,
    'options', FDW_OPTIONS(sv.srvoptions, o),
    'grants', GRANTS(sv.srvacl, sv.srvowner),
    'comment', d.description
)::text, -1) || OWNER_KEY(sv.srvowner, db.owner) || '}', 'pg_foreign_server:' || sv.oid
FROM pg_foreign_server sv CROSS JOIN db
COMMENT_JOIN(pg_foreign_server, sv.oid)
WHERE NOT_MEMBER(pg_foreign_server, sv.oid)
  AND ONLY_SRV(sv.oid)
UNION ALL
SELECT 'user mapping', format('for %s server %I', u.name, um.srvname), json_build_object(
    'user', u.name,
    'server', quote_ident(um.srvname),
    'options', (SELECT json_agg(split_part(o, '=', 1) ORDER BY o) FROM unnest(um.umoptions) o)
)::text, 'pg_user_mapping:' || um.umid
FROM pg_user_mappings um
CROSS JOIN LATERAL (SELECT CASE WHEN um.umuser = 0 THEN 'PUBLIC' ELSE um.umuser::regrole::text END AS name) u
WHERE ONLY_UM(um.umid)
UNION ALL
-- Operator families (with their operators and support functions) and
-- classes, but an extension's (btree_gist's), named with their index method.
SELECT 'operator family', format('%I.%I using %I', ns.nspname, f.opfname, am.amname), left(json_build_object(
    'operators', (SELECT json_agg(o.amopstrategy || ' ' || o.amopopr::regoperator::text
                                  || CASE WHEN o.amoppurpose = 'o' THEN ' for order by ' || (
                                         SELECT format('%I.%I', sn.nspname, sf.opfname) FROM pg_opfamily sf
                                         JOIN pg_namespace sn ON sn.oid = sf.opfnamespace WHERE sf.oid = o.amopsortfamily)
                                     ELSE '' END
                                  ORDER BY o.amopstrategy, o.amoplefttype, o.amoprighttype)
                  FROM pg_amop o WHERE o.amopfamily = f.oid),
    'functions', (SELECT json_agg(p.amprocnum || ' (' || format_type(p.amproclefttype, NULL) || ', '
                                  || format_type(p.amprocrighttype, NULL) || ') ' || p.amproc::regprocedure::text
                                  ORDER BY p.amprocnum, p.amproclefttype, p.amprocrighttype)
                  FROM pg_amproc p WHERE p.amprocfamily = f.oid),
    'comment', d.description
)::text, -1) || OWNER_KEY(f.opfowner, ns.owner) || '}', 'pg_opfamily:' || f.oid
FROM pg_opfamily f JOIN ns ON ns.oid = f.opfnamespace JOIN pg_am am ON am.oid = f.opfmethod
COMMENT_JOIN(pg_opfamily, f.oid)
WHERE f.oid >= 16384
  AND NOT_MEMBER(pg_opfamily, f.oid)
  AND ONLY_OPF(f.oid)
UNION ALL
SELECT 'operator class', format('%I.%I using %I', ns.nspname, c.opcname, am.amname), left(json_build_object(
    'type', format_type(c.opcintype, NULL),
    'default', c.opcdefault,
    'family', (SELECT format('%I.%I', fn.nspname, f.opfname) FROM pg_opfamily f
               JOIN pg_namespace fn ON fn.oid = f.opfnamespace WHERE f.oid = c.opcfamily),
    'storage', nullif(c.opckeytype, 0)::regtype::text,
    'comment', d.description
)::text, -1) || OWNER_KEY(c.opcowner, ns.owner) || '}', 'pg_opclass:' || c.oid
FROM pg_opclass c JOIN ns ON ns.oid = c.opcnamespace JOIN pg_am am ON am.oid = c.opcmethod
COMMENT_JOIN(pg_opclass, c.oid)
WHERE c.oid >= 16384
  AND NOT_MEMBER(pg_opclass, c.oid)
  AND ONLY_OPC(c.oid)
UNION ALL
-- Access methods, text search parsers and templates: made of C functions,
-- so by superusers, and with no owner.
SELECT 'access method', format('%I', am.amname), json_build_object(
    'type', CASE am.amtype WHEN 't' THEN 'table' WHEN 'i' THEN 'index' ELSE am.amtype::text END,
    'handler', am.amhandler::regproc::text,
    'comment', d.description
)::text, 'pg_am:' || am.oid
FROM pg_am am
COMMENT_JOIN(pg_am, am.oid)
WHERE am.oid >= 16384
  AND NOT_MEMBER(pg_am, am.oid)
  AND ONLY_AM(am.oid)
UNION ALL
SELECT 'text search parser', format('%I.%I', ns.nspname, pp.prsname), json_build_object(
    'start', pp.prsstart::regproc::text,
    'gettoken', pp.prstoken::regproc::text,
    'end', pp.prsend::regproc::text,
    'headline', nullif(pp.prsheadline, 0)::regproc::text,
    'lextypes', pp.prslextype::regproc::text,
    'comment', d.description
)::text, 'pg_ts_parser:' || pp.oid
FROM pg_ts_parser pp JOIN ns ON ns.oid = pp.prsnamespace
COMMENT_JOIN(pg_ts_parser, pp.oid)
WHERE pp.oid >= 16384
  AND NOT_MEMBER(pg_ts_parser, pp.oid)
  AND ONLY_TSP(pp.oid)
UNION ALL
SELECT 'text search template', format('%I.%I', ns.nspname, tp.tmplname), json_build_object(
    'init', nullif(tp.tmplinit, 0)::regproc::text,
    'lexize', tp.tmpllexize::regproc::text,
    'comment', d.description
)::text, 'pg_ts_template:' || tp.oid
FROM pg_ts_template tp JOIN ns ON ns.oid = tp.tmplnamespace
COMMENT_JOIN(pg_ts_template, tp.oid)
WHERE tp.oid >= 16384
  AND NOT_MEMBER(pg_ts_template, tp.oid)
  AND ONLY_TST(tp.oid)
UNION ALL
"#;

/// Whether any of the catalogs [`RARE_SQL`] reads had a row, by the key
/// sets of the read that gave `keys`.
fn has_rare(keys: &HashMap<String, Keys>) -> bool {
    RARE_SETS
        .iter()
        .any(|set| keys.get(*set).is_some_and(|k| !k.is_empty()))
}

/// The key sets (see [`TOKENS_SQL`]) of the catalogs [`RARE_SQL`] reads.
const RARE_SETS: [&str; 16] = [
    "l", "q", "k", "u", "g", "v", "C", "D", "W", "S", "U", "O", "F", "J", "N", "T",
];

/// A schema snapshot: every object's definition, and the hash of them all.
/// Definitions are shared: a snapshot built from an earlier one by reading
/// again only what changed holds the same unchanged definitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub hash: String,
    /// `kind name` → the definition, as the catalog query built it. Keys
    /// are shared too, so that a snapshot updated from an earlier one
    /// copies no text.
    pub objects: BTreeMap<Arc<str>, Arc<Value>>,
}

fn sha256(bytes: &[u8]) -> String {
    crate::hash::sha256_hex(bytes)
}

/// The hash of a snapshot, object by object: the sha256 of every
/// `key NUL canonical-definition LF`, in key order.
#[derive(Default)]
struct Hasher(sha2::Sha256);

impl Hasher {
    fn add(&mut self, key: &str, canonical: &str) {
        use sha2::Digest;
        self.0.update(key.as_bytes());
        self.0.update(b"\0");
        self.0.update(canonical.as_bytes());
        self.0.update(b"\n");
    }

    fn finish(self) -> String {
        use sha2::Digest;
        crate::hash::hex(&self.0.finalize())
    }
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
        Snapshot::from_shared(
            objects
                .into_iter()
                .map(|(k, v)| (Arc::from(k), Arc::new(v)))
                .collect(),
        )
    }

    /// Build from shared definitions, computing the hash.
    pub fn from_shared(objects: BTreeMap<Arc<str>, Arc<Value>>) -> Snapshot {
        let mut hasher = Hasher::default();
        for (k, v) in &objects {
            hasher.add(k, &canonical(v));
        }
        Snapshot {
            hash: hasher.finish(),
            objects,
        }
    }

    /// Each object's own hash: enough to say later which objects changed.
    pub fn object_hashes(&self) -> BTreeMap<String, String> {
        self.objects
            .iter()
            .map(|(k, v)| (k.to_string(), sha256(canonical(v).as_bytes())))
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

/// The kinds of entry whose names are more than one word.
const MULTI_WORD_KINDS: [&str; 13] = [
    "materialized view",
    "operator family",
    "operator class",
    "foreign data wrapper",
    "foreign server",
    "user mapping",
    "event trigger",
    "default privileges",
    "text search configuration",
    "text search dictionary",
    "text search parser",
    "text search template",
    "access method",
];

/// An entry's key (`kind name`) split into its kind and its name.
pub fn kind_and_name(key: &str) -> Option<(&str, &str)> {
    MULTI_WORD_KINDS
        .iter()
        .find_map(|kind| Some((*kind, key.strip_prefix(kind)?.strip_prefix(' ')?)))
        .or_else(|| key.split_once(' '))
}

/// The schema an entry (`kind name`) lives in, by its key: `None` for the
/// kinds that live in none (publications, casts, event triggers,
/// extensions, foreign data wrappers, servers and user mappings, access
/// methods, default privileges for every schema).
pub fn schema_of(key: &str) -> Option<&str> {
    let (kind, name) = kind_and_name(key)?;
    match kind {
        "publication"
        | "cast"
        | "event trigger"
        | "extension"
        | "foreign data wrapper"
        | "foreign server"
        | "user mapping"
        | "access method" => None,
        "schema" => Some(name),
        // `for ROLE in schema SCHEMA on tables`
        "default privileges" => name
            .split_once(" in schema ")
            .and_then(|(_, rest)| rest.rsplit_once(" on "))
            .map(|(schema, _)| schema),
        _ => name.split('.').next(),
    }
}

/// What snapshots read, as a level kept with saved snapshots and backups'
/// schema records. Level 0 is every one written before the level was kept:
/// runbook read no collations, operators, casts, publications, default
/// privileges, event triggers, text search configurations and
/// dictionaries, rules, range types, column storage, plain table
/// inheritance or view options then. Level 1 read no owners, column
/// compression, statistics targets or options, no `CLUSTER ON`, no
/// foreign data wrappers, servers, user mappings or foreign tables' options,
/// and no operator families or classes. Level 2 read no access methods,
/// text search parsers or templates, and no index statistics targets.
pub const READS: u32 = 3;

/// The kinds first read at level 3.
const KINDS_SINCE_3: [&str; 3] = [
    "access method",
    "text search parser",
    "text search template",
];

/// The kinds first read at level 2.
const KINDS_SINCE_2: [&str; 5] = [
    "foreign data wrapper",
    "foreign server",
    "user mapping",
    "operator family",
    "operator class",
];

/// The kinds first read at level 1.
const KINDS_SINCE_1: [&str; 9] = [
    "rule",
    "collation",
    "operator",
    "cast",
    "publication",
    "default privileges",
    "event trigger",
    "text search configuration",
    "text search dictionary",
];

/// What each level added to entries of kinds read before it: keys of the
/// entry itself, and keys of each of its columns.
struct Added {
    level: u32,
    top: &'static [&'static str],
    column: &'static [&'static str],
    /// What a comparison at an older level leaves out, as said.
    said: &'static [&'static str],
}

const ADDED: [Added; 3] = [
    Added {
        level: 1,
        top: &["inherits", "options"],
        column: &["storage"],
        said: &[
            "range type",
            "column storage",
            "table inheritance",
            "view options",
        ],
    },
    Added {
        level: 2,
        top: &[
            "owner",
            "clustered",
            "foreign",
            "tablespace",
            "access_method",
        ],
        column: &["compression", "statistics", "options", "fdw_options"],
        said: &[
            "foreign data wrapper",
            "foreign server",
            "user mapping",
            "operator family",
            "operator class",
            "foreign table options",
            "owners",
            "column compression",
            "column statistics targets and options",
            "CLUSTER ON",
            "tablespaces",
            "table access methods",
        ],
    },
    Added {
        level: 3,
        top: &["statistics"],
        column: &[],
        said: &[
            "access method",
            "text search parser",
            "text search template",
            "index statistics targets",
        ],
    },
];

impl Snapshot {
    /// This snapshot as runbook read schemas at level `reads` (see
    /// [`READS`]): what was not read then left out, so that a snapshot
    /// written by an older runbook compares with this one on what both
    /// hold, and nothing it never saw reads as created since.
    pub fn as_read_at(&self, reads: u32) -> Snapshot {
        if reads >= READS {
            return self.clone();
        }
        Snapshot::from_shared(
            self.objects
                .iter()
                .filter(|(k, v)| {
                    kind_and_name(k).is_some_and(|(kind, _)| {
                        let range = kind == "type" && v.get("range").is_some();
                        (reads >= 1 || !(KINDS_SINCE_1.contains(&kind) || range))
                            && (reads >= 2 || !KINDS_SINCE_2.contains(&kind))
                            && (reads >= 3 || !KINDS_SINCE_3.contains(&kind))
                    })
                })
                .map(|(k, v)| (k.clone(), without_keys_since(reads, k, v)))
                .collect(),
        )
    }

    /// The same snapshot without owners: to compare a database with one
    /// that another role built.
    pub fn without_owners(&self) -> Snapshot {
        Snapshot::from_shared(
            self.objects
                .iter()
                .map(|(k, v)| (k.clone(), without(v, &["owner"], &[])))
                .collect(),
        )
    }

    /// What [`Snapshot::as_read_at`] leaves out at `reads`, to say what a
    /// comparison did not cover.
    pub fn unread_at(reads: u32) -> Vec<&'static str> {
        let mut out = Vec::new();
        if reads < 1 {
            out.extend(KINDS_SINCE_1);
        }
        for a in ADDED.iter().filter(|a| a.level > reads) {
            out.extend(a.said);
        }
        out
    }
}

/// Entry `key` without the keys that levels above `reads` added to it. A
/// view's `options` are level 1's, a table's `options` (storage settings)
/// are older.
fn without_keys_since(reads: u32, key: &str, v: &Arc<Value>) -> Arc<Value> {
    let kind = kind_and_name(key).map_or("", |(kind, _)| kind);
    let mut top = Vec::new();
    let mut column = Vec::new();
    for a in ADDED.iter().filter(|a| a.level > reads) {
        top.extend(a.top.iter().copied().filter(|k| match (*k, a.level) {
            ("inherits", 1) => kind == "table",
            ("options", 1) => kind == "view" || kind == "materialized view",
            ("statistics", 3) => kind == "index",
            _ => true,
        }));
        column.extend(a.column.iter().copied());
    }
    without(v, &top, &column)
}

/// `v` without the keys `top`, and without the keys `column` of each of
/// its columns; `v` itself when it has none of them.
fn without(v: &Arc<Value>, top: &[&str], column: &[&str]) -> Arc<Value> {
    let has = |v: &Value| {
        top.iter().any(|k| v.get(k).is_some())
            || v["columns"].as_array().is_some_and(|cols| {
                cols.iter()
                    .any(|c| column.iter().any(|k| c.get(k).is_some()))
            })
    };
    if !has(v) {
        return v.clone();
    }
    let mut v = Value::clone(v);
    if let Some(v) = v.as_object_mut() {
        for k in top {
            v.remove(*k);
        }
    }
    if let Some(cols) = v.get_mut("columns").and_then(Value::as_array_mut) {
        for c in cols {
            if let Some(c) = c.as_object_mut() {
                for k in column {
                    c.remove(*k);
                }
            }
        }
    }
    Arc::new(v)
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
    /// What the runbook that wrote it read (see [`READS`]); 0 before it
    /// was kept.
    #[serde(default)]
    pub reads: u32,
    pub objects: BTreeMap<String, Value>,
}

impl File {
    pub fn new(s: &Snapshot, database: &str, server_version: &str) -> File {
        File {
            format: FILE_FORMAT.into(),
            reads: READS,
            taken_at: crate::events::now(),
            database: database.into(),
            server_version: server_version.into(),
            hash: s.hash.clone(),
            objects: s
                .objects
                .iter()
                .map(|(k, v)| (k.to_string(), Value::clone(v)))
                .collect(),
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

/// The fragments [`SQL`] writes more than once, each as `NAME(a, b)`: the
/// template with `{0}` and `{1}` put in.
///
/// - `GRANTS(acl, owner)`: the `ACL_ENTRIES` as a sorted JSON array
///   (null for none); expanded first, since it holds `ACL_ENTRIES`.
/// - `ACL_ENTRIES(acl, owner)`: one row per grantee of an ACL, `entry` =
///   `grantee=PRIV,PRIV` (`*` marks a grantable one), the owner's own left
///   out: the grants of a table, a column, a schema or a function.
/// - `COMMENT_JOIN(catalog, oid)`: the object's comment, as `d`.
/// - `NOT_MEMBER(catalog, oid)`: the object is not part of an extension.
/// - `FDW_OPTIONS(options, alias)`: a foreign data wrapper's, server's,
///   foreign table's or column's options (`name=value`) as a JSON array,
///   the value of one whose name says it may hold a secret (`password`,
///   `api_key`, `token`...) not read.
/// - `OWNER_KEY(owner, base)`: `, "owner" : "role"` to add to an object's
///   JSON where its owner is not `base` (its schema's, or the database's),
///   else nothing: an object owned as its schema is reads as it did before
///   owners were read.
const FRAGMENTS: [(&str, &str); 6] = [
    (
        "GRANTS",
        "(SELECT json_agg(g.entry ORDER BY g.entry) FROM (ACL_ENTRIES({0}, {1})) g)",
    ),
    (
        "ACL_ENTRIES",
        "SELECT format('%s=%s', CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE e.grantee::regrole::text END, \
         string_agg(e.privilege_type || CASE WHEN e.is_grantable THEN '*' ELSE '' END, ',' ORDER BY e.privilege_type)) AS entry \
         FROM aclexplode({0}) e WHERE e.grantee <> {1} GROUP BY e.grantee",
    ),
    (
        "COMMENT_JOIN",
        "LEFT JOIN pg_description d\n  ON d.objoid = {1} AND d.classoid = '{0}'::regclass AND d.objsubid = 0",
    ),
    (
        "OWNER_KEY",
        "CASE WHEN {0} <> {1} THEN ', \"owner\" : ' || to_json({0}::regrole::text)::text ELSE '' END",
    ),
    (
        "FDW_OPTIONS",
        "(SELECT json_agg(CASE WHEN split_part({1}, '=', 1) ~* '(pass|secret|key|token|credential|auth)' \
         THEN split_part({1}, '=', 1) || '=(not read)' ELSE {1} END ORDER BY {1}) FROM unnest({0}) {1})",
    ),
    (
        "NOT_MEMBER",
        "NOT EXISTS (SELECT 1 FROM pg_depend m WHERE m.classid = '{0}'::regclass AND m.objid = {1} AND m.deptype = 'e')",
    ),
];

/// `sql` with each of [`FRAGMENTS`] written out.
fn fragments(sql: &str) -> String {
    let mut sql = sql.to_string();
    for (name, template) in FRAGMENTS {
        let call = format!("{name}(");
        let mut out = String::new();
        let mut rest = sql.as_str();
        while let Some(at) = rest.find(&call) {
            out.push_str(&rest[..at]);
            let tail = &rest[at + call.len()..];
            let close = tail.find(')').expect("NAME(a, b)");
            let (a, b) = tail[..close].split_once(", ").expect("NAME(a, b)");
            out.push_str(&template.replace("{0}", a).replace("{1}", b));
            rest = &tail[close + 1..];
        }
        out.push_str(rest);
        sql = out;
    }
    sql
}

/// The snapshot query: over every object, or (`only`) over the objects
/// that depend, directly or not, on the catalog objects `$1` names
/// (`pg_class:16384`), themselves included. The `only` query also returns
/// each of those as a row of kind `~`, named by the object its snapshot
/// entry is built from, so that entries built from an object that is gone
/// are dropped too. Without `rare`, [`RARE_SQL`]'s branches are left out.
/// `version` is the server's `server_version_num`: a column's compression
/// is read from PostgreSQL 14 on, which has it.
fn sql(only: bool, rare: bool, version: i32) -> String {
    let of = |catalog: &str| format!("ARRAY(SELECT oid FROM redo_oids WHERE cat = '{catalog}')");
    let compression = if version >= 140_000 {
        "a.attcompression::text"
    } else {
        "''"
    };
    let expanded = fragments(
        &SQL.replace("RARE_KINDS\n", if rare { RARE_SQL } else { "" })
            .replace("ATTCOMPRESSION", compression),
    );
    let mut out = String::new();
    let mut rest = expanded.as_str();
    while let Some(at) = rest.find("ONLY_") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + "ONLY_".len()..];
        let open = tail.find('(').expect("ONLY_KIND(");
        let close = tail.find(')').expect("ONLY_KIND(column)");
        let (kind, column) = (&tail[..open], &tail[open + 1..close]);
        let catalog = match kind {
            "CLASS" => "pg_class",
            "NSP" => "pg_namespace",
            "CON" => "pg_constraint",
            "PROC" => "pg_proc",
            "TRIG" => "pg_trigger",
            "TYPE" => "pg_type",
            "STAT" => "pg_statistic_ext",
            "COLL" => "pg_collation",
            "OPER" => "pg_operator",
            "CAST" => "pg_cast",
            "PUB" => "pg_publication",
            "DACL" => "pg_default_acl",
            "EVT" => "pg_event_trigger",
            "TSC" => "pg_ts_config",
            "TSD" => "pg_ts_dict",
            "FDW" => "pg_foreign_data_wrapper",
            "SRV" => "pg_foreign_server",
            "UM" => "pg_user_mapping",
            "OPF" => "pg_opfamily",
            "OPC" => "pg_opclass",
            "AM" => "pg_am",
            "TSP" => "pg_ts_parser",
            "TST" => "pg_ts_template",
            _ => "",
        };
        out.push_str(&match (only, kind, catalog) {
            (false, _, _) => "true".to_string(),
            // The relations read: the ones asked for, and those the asked-for
            // constraints, indexes and triggers belong to. Filtering here,
            // not after the joins, keeps the query to the rows it needs.
            (true, "RELS", _) => format!(
                "{column} = ANY({class} \
                 || ARRAY(SELECT conrelid FROM pg_constraint WHERE oid = ANY({con})) \
                 || ARRAY(SELECT indrelid FROM pg_index WHERE indexrelid = ANY({class})) \
                 || ARRAY(SELECT tgrelid FROM pg_trigger WHERE oid = ANY({trig})))",
                class = of("pg_class"),
                con = of("pg_constraint"),
                trig = of("pg_trigger"),
            ),
            // A type asked for, or the row type of a relation asked for (a
            // composite type's attributes are its relation's): one list, so
            // that the type's oid index serves it.
            (true, "TYPEREL", _) => format!(
                "{column} = ANY({types} || ARRAY(SELECT reltype FROM pg_class WHERE oid = ANY({class})))",
                types = of("pg_type"),
                class = of("pg_class"),
            ),
            (true, _, "") => "false".to_string(),
            (true, _, c) => format!("{column} = ANY({})", of(c)),
        });
        rest = &tail[close + 1..];
    }
    out.push_str(rest);
    // Each CTE is computed once: over a few objects the relations are
    // filtered inside `rels` (ONLY_RELS), so there is nothing to inline,
    // and a plan that repeats them costs more to start than to run.
    if only {
        let body = out
            .strip_prefix("WITH ")
            .expect("the query starts with WITH");
        let (head, order) = body
            .rsplit_once("ORDER BY")
            .expect("the query ends with ORDER BY");
        out = format!(
            "WITH {CLOSURE_CTES},\n{head}UNION ALL\nSELECT '~', k, NULL, NULL FROM redo WHERE k IS NOT NULL\nORDER BY{order}"
        );
    }
    out
}

/// The objects that depend, directly or not, on the catalog objects `$1`
/// names, themselves included (`redo`), each named by the object a snapshot
/// entry is built from (a default belongs to its table, a rule to its
/// view), and split into catalog and oid (`redo_oids`). Each step of the
/// recursion looks its dependents up in pg_depend's index (`OFFSET 0`
/// keeps the lateral subquery from being flattened into a join): the
/// generic plan otherwise hashed all of pg_depend at every step, 4.9 of the
/// query's 7.4 ms on a 200-table schema, and growing with it.
const CLOSURE_CTES: &str = r#"RECURSIVE roots AS (
    SELECT split_part(k, ':', 1)::regclass::oid AS classid, split_part(k, ':', 2)::oid AS objid
    FROM unnest($1::text[]) AS k
), dep(classid, objid) AS (
    SELECT classid, objid FROM roots
    UNION
    SELECT d.classid, d.objid FROM dep, LATERAL (
        SELECT d.classid, d.objid FROM pg_depend d
        WHERE d.refclassid = dep.classid AND d.refobjid = dep.objid OFFSET 0
    ) d
), redo AS MATERIALIZED (
    SELECT CASE dep.classid
        WHEN 'pg_attrdef'::regclass THEN (SELECT 'pg_class:' || adrelid FROM pg_attrdef WHERE oid = dep.objid)
        WHEN 'pg_rewrite'::regclass THEN (SELECT 'pg_class:' || ev_class FROM pg_rewrite WHERE oid = dep.objid)
        WHEN 'pg_publication_rel'::regclass THEN (SELECT 'pg_publication:' || prpubid FROM pg_publication_rel WHERE oid = dep.objid)
        ELSE dep.classid::regclass::text || ':' || dep.objid END AS k
    FROM dep
), redo_oids AS MATERIALIZED (
    SELECT split_part(k, ':', 1) AS cat, split_part(k, ':', 2)::oid AS oid FROM redo WHERE k IS NOT NULL
)"#;

/// The snapshot query over every object, for a server of `version`
/// (`server_version_num`): for simple queries and the docs.
pub fn full_sql(version: i32) -> String {
    sql(false, true, version)
}

/// The server's `server_version_num`.
async fn version_num(client: &tokio_postgres::Client) -> Result<i32, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await?
        .get(0))
}

/// Run before a snapshot query: the session's search_path saved, and set
/// to its default (what `RESET` gives: the role's, the database's or the
/// server's). The server writes a name qualified or not by the search_path
/// (`pg_get_viewdef`, a default's `'t_id_seq'::regclass`...), and a script
/// may have set it in the session (pg_dump's output sets it to ''): a
/// snapshot taken after would differ from one taken before in every name.
pub const PIN_SEARCH_PATH: &str = "SELECT set_config('runbook.search_path', current_setting('search_path'), false); RESET search_path";

/// Run after it: the session's search_path put back, at session level. A
/// `SET LOCAL` of a transaction that then commits would outlive it, so no
/// snapshot is taken in one (a rehearsal's down and re-up are rolled back).
pub const UNPIN_SEARCH_PATH: &str =
    "SELECT set_config('search_path', current_setting('runbook.search_path'), false)";

/// [`PIN_SEARCH_PATH`] for a transaction of runbook's own, which puts it
/// back when it ends.
pub const DEFAULT_SEARCH_PATH_LOCAL: &str = "SELECT set_config('search_path', reset_val, true) FROM pg_settings WHERE name = 'search_path';";

/// Take a snapshot of the database `client` is connected to.
pub async fn take(client: &tokio_postgres::Client) -> Result<Snapshot, tokio_postgres::Error> {
    take_with(client, None).await
}

/// Where [`SQL`] reads the database's owner, which the owners of its
/// schemas and objects are keyed against.
const DATABASE_OWNER: &str =
    "SELECT datdba AS owner FROM pg_database WHERE datname = current_database()";

/// [`take`], with owners keyed against `owner` (a role's name as `regrole`
/// writes it) as if it owned the database: for comparing with a snapshot
/// of another database, which that role owns. A restore into a database
/// the restoring role created is owned by that role, not by the source's
/// owner, and every object owned by either would otherwise differ. The
/// database's own owner where the server has no such role.
pub async fn take_as_if_owned_by(
    client: &tokio_postgres::Client,
    owner: &str,
) -> Result<Snapshot, tokio_postgres::Error> {
    take_with(client, Some(owner)).await
}

async fn take_with(
    client: &tokio_postgres::Client,
    owner: Option<&str>,
) -> Result<Snapshot, tokio_postgres::Error> {
    let mut sql = full_sql(version_num(client).await?);
    if let Some(owner) = owner {
        sql = sql.replacen(
            DATABASE_OWNER,
            &format!(
                "SELECT coalesce(to_regrole({}), datdba) AS owner FROM pg_database WHERE datname = current_database()",
                crate::pg::quote::literal(owner)
            ),
            1,
        );
    }
    let statement = client.prepare(&sql).await?;
    let (_, rows, _) = tokio::try_join!(
        client.batch_execute(PIN_SEARCH_PATH),
        client.query(&statement, &[]),
        client.batch_execute(UNPIN_SEARCH_PATH),
    )?;
    Ok(Snapshot::from_rows(rows.iter().map(|r| {
        (
            r.get::<_, String>(0),
            r.get::<_, String>(1),
            r.get::<_, String>(2),
        )
    })))
}

/// The catalog rows an object's definition is built from, as tokens:
/// `tag:key` → the row's version (xmin and ctid). Any change to a row gives
/// it a new version, so an unchanged token means an unchanged row.
///
/// With `$1`, the xid horizon of the previous read, only the rows written
/// since are returned: every transaction older than the horizon had ended
/// when the previous read was taken, so its rows were seen then. Rows of
/// transactions still running then (this session's own among them) come
/// again, and compare equal when unchanged. Rows that were removed are
/// found from the key sets (`#tag`), returned in full each time but as one
/// row each. Some removals need no key set: a pg_attribute row goes only
/// with its relation; removing a default, a parent or a partition updates
/// the columns or the relation (`a:`, `r:`); an enum value goes only with
/// its type. A key set may hold keys that have no token (objects outside
/// the namespaces read): their removal rebuilds nothing. Namespaces (with
/// their comments: `public`'s oid is below the `m:` rows' bound) and
/// extensions are always read whole, and so is index validity
/// (`!i`): PostgreSQL flips it in place, without a new row version. `#R`
/// holds every relation created after initdb, in any schema, to tell one
/// that was dropped (nothing to read again) from one that left the schemas
/// read. A publication's schemas (`B:`) are read from pg_depend, since
/// their catalog is PostgreSQL 15's. `H` is the horizon to pass next time.
///
/// Column rows are filtered by version before they meet the relations
/// (`OFFSET 0` keeps the subquery apart): the generic plan otherwise
/// merge-joined every column row with the relations, 6.4 of the query's
/// 20 ms on a 3,000-table schema. System columns (`attnum < 0`) are left
/// out: their rows come and go with the relation and never change.
const TOKENS_SQL: &str = r#"WITH ns AS (
    SELECT oid FROM pg_namespace n
    WHERE nspname NOT IN ('pg_catalog', 'information_schema')
      AND nspname NOT LIKE 'pg_toast%' AND nspname NOT LIKE 'pg_temp%'
      AND NOT (nspname = 'runbook_journal' AND EXISTS (
          SELECT FROM pg_description d WHERE d.objoid = n.oid AND d.classoid = 'pg_namespace'::regclass
                                         AND d.objsubid = 0 AND d.description = 'runbook run journal'))
), h AS MATERIALIZED (
    SELECT age($1::text::xid) AS a
), rels AS MATERIALIZED (
    SELECT c.oid, c.xmin, c.ctid FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
)
SELECT 'H', (txid_snapshot_xmin(txid_current_snapshot()) % 4294967296)::text, NULL::oid[]
UNION ALL SELECT 'n:' || n.oid, n.xmin::text || n.ctid::text || n.nspname
                                 || coalesce(':' || obj_description(n.oid, 'pg_namespace'), ''), NULL
    FROM pg_namespace n JOIN ns ON ns.oid = n.oid
UNION ALL SELECT 'x:' || x.oid, x.xmin::text || x.ctid::text, NULL FROM pg_extension x
UNION ALL SELECT 'x:owner', datdba::text, NULL FROM pg_database WHERE datname = current_database()
UNION ALL SELECT 'x:members', coalesce(string_agg(d.classid || '/' || d.objid, ',' ORDER BY d.classid, d.objid), ''), NULL
    FROM pg_depend d
    WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' AND d.objid >= 16384
UNION ALL SELECT 'r:' || oid, xmin::text || ctid::text, NULL FROM rels
    WHERE $1::text IS NULL OR age(xmin) <= (SELECT a FROM h)
UNION ALL SELECT '#r', NULL, array_agg(oid) FROM rels
UNION ALL SELECT '#R', NULL, array_agg(oid) FROM pg_class WHERE oid >= 16384
UNION ALL SELECT 'a:' || a.attrelid || '.' || a.attnum, a.xmin::text || a.ctid::text, NULL
    FROM (SELECT attrelid, attnum, xmin, ctid FROM pg_attribute
          WHERE attrelid >= 16384 AND attnum > 0 AND ($1::text IS NULL OR age(xmin) <= (SELECT a FROM h))
          OFFSET 0) a
    WHERE a.attrelid IN (SELECT oid FROM rels)
UNION ALL SELECT 'd:' || ad.adrelid || '.' || ad.adnum, ad.xmin::text || ad.ctid::text, NULL
    FROM pg_attrdef ad JOIN rels r ON r.oid = ad.adrelid
    WHERE $1::text IS NULL OR age(ad.xmin) <= (SELECT a FROM h)
UNION ALL SELECT 'i:' || i.indexrelid, i.xmin::text || i.ctid::text, NULL
    FROM pg_index i JOIN rels r ON r.oid = i.indexrelid
    WHERE $1::text IS NULL OR age(i.xmin) <= (SELECT a FROM h)
UNION ALL SELECT '!i', coalesce(string_agg(i.indexrelid || CASE WHEN i.indisvalid THEN '' ELSE 'v' END
                                 || CASE WHEN i.indisready THEN '' ELSE 'r' END, ',' ORDER BY i.indexrelid), ''), NULL
    FROM pg_index i WHERE i.indexrelid >= 16384 AND NOT (i.indisvalid AND i.indisready)
UNION ALL SELECT 'h:' || h.inhrelid || '.' || h.inhparent, h.xmin::text || h.ctid::text, NULL
    FROM pg_inherits h JOIN rels r ON r.oid = h.inhrelid
    WHERE $1::text IS NULL OR age(h.xmin) <= (SELECT a FROM h)
UNION ALL SELECT 'w:' || w.ev_class || '.' || w.oid, w.xmin::text || w.ctid::text, NULL
    FROM pg_rewrite w JOIN rels r ON r.oid = w.ev_class
    WHERE $1::text IS NULL OR age(w.xmin) <= (SELECT a FROM h)
UNION ALL SELECT '#w', string_agg(w.ev_class || '.' || w.oid, ',' ORDER BY w.ev_class, w.oid), NULL
    FROM pg_rewrite w WHERE w.ev_class >= 16384
UNION ALL SELECT 'o:' || o.polrelid || '.' || o.oid, o.xmin::text || o.ctid::text, NULL
    FROM pg_policy o JOIN rels r ON r.oid = o.polrelid
    WHERE $1::text IS NULL OR age(o.xmin) <= (SELECT a FROM h)
UNION ALL SELECT '#o', string_agg(o.polrelid || '.' || o.oid, ',' ORDER BY o.polrelid, o.oid), NULL
    FROM pg_policy o WHERE o.polrelid >= 16384
UNION ALL SELECT 'c:' || co.oid, co.xmin::text || co.ctid::text, NULL
    FROM pg_constraint co JOIN ns ON ns.oid = co.connamespace
    WHERE $1::text IS NULL OR age(co.xmin) <= (SELECT a FROM h)
UNION ALL SELECT '#c', NULL, array_agg(co.oid) FROM pg_constraint co WHERE co.oid >= 16384
UNION ALL SELECT 's:' || q.seqrelid, q.xmin::text || q.ctid::text, NULL
    FROM pg_sequence q JOIN rels r ON r.oid = q.seqrelid
    WHERE $1::text IS NULL OR age(q.xmin) <= (SELECT a FROM h)
UNION ALL SELECT 'p:' || p.oid, p.xmin::text || p.ctid::text, NULL
    FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
    WHERE p.oid >= 16384 AND ($1::text IS NULL OR age(p.xmin) <= (SELECT a FROM h))
UNION ALL SELECT '#p', NULL, array_agg(p.oid) FROM pg_proc p WHERE p.oid >= 16384
UNION ALL SELECT 'z:' || z.oid, z.xmin::text || z.ctid::text, NULL
    FROM pg_statistic_ext z JOIN ns ON ns.oid = z.stxnamespace
    WHERE $1::text IS NULL OR age(z.xmin) <= (SELECT a FROM h)
UNION ALL SELECT '#z', NULL, array_agg(z.oid) FROM pg_statistic_ext z WHERE z.oid >= 16384
UNION ALL SELECT 't:' || t.oid, t.xmin::text || t.ctid::text, NULL
    FROM pg_trigger t JOIN rels r ON r.oid = t.tgrelid
    WHERE $1::text IS NULL OR age(t.xmin) <= (SELECT a FROM h)
UNION ALL SELECT '#t', NULL, array_agg(t.oid) FROM pg_trigger t WHERE t.oid >= 16384
UNION ALL SELECT 'y:' || t.oid, t.xmin::text || t.ctid::text, NULL
    FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
    WHERE t.oid >= 16384 AND ($1::text IS NULL OR age(t.xmin) <= (SELECT a FROM h))
UNION ALL SELECT '#y', NULL, array_agg(t.oid) FROM pg_type t WHERE t.oid >= 16384
UNION ALL SELECT 'e:' || e.enumtypid || '.' || e.oid, e.xmin::text || e.ctid::text, NULL
    FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid JOIN ns ON ns.oid = t.typnamespace
    WHERE e.enumtypid >= 16384 AND ($1::text IS NULL OR age(e.xmin) <= (SELECT a FROM h))
UNION ALL SELECT 'm:' || d.classoid::regclass || ':' || d.objoid || '.' || d.objsubid, d.xmin::text || d.ctid::text, NULL
    FROM pg_description d
    WHERE d.objoid >= 16384 AND ($1::text IS NULL OR age(d.xmin) <= (SELECT a FROM h))
UNION ALL SELECT '#m', string_agg(d.classoid::regclass || ':' || d.objoid || '.' || d.objsubid, ','
                                  ORDER BY d.classoid, d.objoid, d.objsubid), NULL
    FROM pg_description d WHERE d.objoid >= 16384"#;

/// The branches of [`TOKENS_SQL`] over the catalogs [`RARE_SQL`] reads, and
/// foreign tables': with no row in any of them (most databases), a read
/// leaves them out, which costs a sixth less (2.35 -> 1.95 ms on a
/// 200-table schema), and asks only whether any has a row now
/// ([`RARE_PRESENT`]).
const TOKENS_RARE_SQL: &str = r#"
UNION ALL SELECT 'l:' || l.oid, l.xmin::text || l.ctid::text, NULL
    FROM pg_collation l JOIN ns ON ns.oid = l.collnamespace
    WHERE l.oid >= 16384 AND ($1::text IS NULL OR age(l.xmin) <= (SELECT a FROM h))
UNION ALL SELECT '#l', NULL, array_agg(l.oid) FROM pg_collation l WHERE l.oid >= 16384
UNION ALL SELECT 'q:' || q.oid, q.xmin::text || q.ctid::text, NULL
    FROM pg_operator q JOIN ns ON ns.oid = q.oprnamespace
    WHERE q.oid >= 16384 AND ($1::text IS NULL OR age(q.xmin) <= (SELECT a FROM h))
UNION ALL SELECT '#q', NULL, array_agg(q.oid) FROM pg_operator q WHERE q.oid >= 16384
UNION ALL SELECT 'k:' || k.oid, k.xmin::text || k.ctid::text, NULL
    FROM pg_cast k WHERE k.oid >= 16384 AND ($1::text IS NULL OR age(k.xmin) <= (SELECT a FROM h))
UNION ALL SELECT '#k', NULL, array_agg(k.oid) FROM pg_cast k WHERE k.oid >= 16384
UNION ALL SELECT 'u:' || u.oid, u.xmin::text || u.ctid::text, NULL
    FROM pg_publication u WHERE $1::text IS NULL OR age(u.xmin) <= (SELECT a FROM h)
UNION ALL SELECT '#u', NULL, array_agg(u.oid) FROM pg_publication u
UNION ALL SELECT 'b:' || b.prpubid || '.' || b.oid, b.xmin::text || b.ctid::text, NULL
    FROM pg_publication_rel b WHERE $1::text IS NULL OR age(b.xmin) <= (SELECT a FROM h)
UNION ALL SELECT '#b', string_agg(b.prpubid || '.' || b.oid, ',' ORDER BY b.prpubid, b.oid), NULL
    FROM pg_publication_rel b
UNION ALL SELECT 'B:' || d.refobjid || '.' || d.objid, d.xmin::text || d.ctid::text, NULL
    FROM pg_depend d
    WHERE d.classid = to_regclass('pg_catalog.pg_publication_namespace') AND d.refclassid = 'pg_publication'::regclass
      AND ($1::text IS NULL OR age(d.xmin) <= (SELECT a FROM h))
UNION ALL SELECT '#B', string_agg(d.refobjid || '.' || d.objid, ',' ORDER BY d.refobjid, d.objid), NULL
    FROM pg_depend d
    WHERE d.classid = to_regclass('pg_catalog.pg_publication_namespace') AND d.refclassid = 'pg_publication'::regclass
UNION ALL SELECT 'g:' || g.oid, g.xmin::text || g.ctid::text, NULL
    FROM pg_default_acl g WHERE $1::text IS NULL OR age(g.xmin) <= (SELECT a FROM h)
UNION ALL SELECT '#g', NULL, array_agg(g.oid) FROM pg_default_acl g
UNION ALL SELECT 'v:' || v.oid, v.xmin::text || v.ctid::text, NULL
    FROM pg_event_trigger v WHERE $1::text IS NULL OR age(v.xmin) <= (SELECT a FROM h)
UNION ALL SELECT '#v', NULL, array_agg(v.oid) FROM pg_event_trigger v
UNION ALL SELECT 'C:' || f.oid, f.xmin::text || f.ctid::text, NULL
    FROM pg_ts_config f JOIN ns ON ns.oid = f.cfgnamespace
    WHERE f.oid >= 16384 AND ($1::text IS NULL OR age(f.xmin) <= (SELECT a FROM h))
UNION ALL SELECT '#C', NULL, array_agg(f.oid) FROM pg_ts_config f WHERE f.oid >= 16384
UNION ALL SELECT 'M:' || f.mapcfg || '.' || f.maptokentype || '.' || f.mapseqno, f.xmin::text || f.ctid::text, NULL
    FROM pg_ts_config_map f WHERE f.mapcfg >= 16384 AND ($1::text IS NULL OR age(f.xmin) <= (SELECT a FROM h))
UNION ALL SELECT '#M', string_agg(f.mapcfg || '.' || f.maptokentype || '.' || f.mapseqno, ','), NULL
    FROM pg_ts_config_map f WHERE f.mapcfg >= 16384
UNION ALL SELECT 'D:' || f.oid, f.xmin::text || f.ctid::text, NULL
    FROM pg_ts_dict f JOIN ns ON ns.oid = f.dictnamespace
    WHERE f.oid >= 16384 AND ($1::text IS NULL OR age(f.xmin) <= (SELECT a FROM h))
UNION ALL SELECT '#D', NULL, array_agg(f.oid) FROM pg_ts_dict f WHERE f.oid >= 16384
UNION ALL SELECT 'f:' || f.ftrelid, f.xmin::text || f.ctid::text, NULL
    FROM pg_foreign_table f JOIN rels r ON r.oid = f.ftrelid
    WHERE $1::text IS NULL OR age(f.xmin) <= (SELECT a FROM h)
UNION ALL SELECT 'W:' || w.oid, w.xmin::text || w.ctid::text, NULL
    FROM pg_foreign_data_wrapper w WHERE $1::text IS NULL OR age(w.xmin) <= (SELECT a FROM h)
UNION ALL SELECT '#W', NULL, array_agg(w.oid) FROM pg_foreign_data_wrapper w
UNION ALL SELECT 'S:' || sv.oid, sv.xmin::text || sv.ctid::text, NULL
    FROM pg_foreign_server sv WHERE $1::text IS NULL OR age(sv.xmin) <= (SELECT a FROM h)
UNION ALL SELECT '#S', NULL, array_agg(sv.oid) FROM pg_foreign_server sv
UNION ALL SELECT 'U:' || um.umid, um.umuser || '/' || um.srvid || '/'
                                  || coalesce((SELECT string_agg(split_part(o, '=', 1), ',' ORDER BY o) FROM unnest(um.umoptions) o), ''), NULL
    FROM pg_user_mappings um
UNION ALL SELECT '#U', NULL, array_agg(um.umid) FROM pg_user_mappings um
UNION ALL SELECT 'F:' || f.oid, f.xmin::text || f.ctid::text, NULL
    FROM pg_opfamily f JOIN ns ON ns.oid = f.opfnamespace
    WHERE f.oid >= 16384 AND ($1::text IS NULL OR age(f.xmin) <= (SELECT a FROM h))
UNION ALL SELECT '#F', NULL, array_agg(f.oid) FROM pg_opfamily f WHERE f.oid >= 16384
UNION ALL SELECT 'O:' || c.oid, c.xmin::text || c.ctid::text, NULL
    FROM pg_opclass c JOIN ns ON ns.oid = c.opcnamespace
    WHERE c.oid >= 16384 AND ($1::text IS NULL OR age(c.xmin) <= (SELECT a FROM h))
UNION ALL SELECT '#O', NULL, array_agg(c.oid) FROM pg_opclass c WHERE c.oid >= 16384
UNION ALL SELECT 'A:' || o.amopfamily || '.' || o.oid, o.xmin::text || o.ctid::text, NULL
    FROM pg_amop o WHERE o.amopfamily >= 16384 AND ($1::text IS NULL OR age(o.xmin) <= (SELECT a FROM h))
UNION ALL SELECT '#A', string_agg(o.amopfamily || '.' || o.oid, ','), NULL
    FROM pg_amop o WHERE o.amopfamily >= 16384
UNION ALL SELECT 'P:' || p.amprocfamily || '.' || p.oid, p.xmin::text || p.ctid::text, NULL
    FROM pg_amproc p WHERE p.amprocfamily >= 16384 AND ($1::text IS NULL OR age(p.xmin) <= (SELECT a FROM h))
UNION ALL SELECT '#P', string_agg(p.amprocfamily || '.' || p.oid, ','), NULL
    FROM pg_amproc p WHERE p.amprocfamily >= 16384
UNION ALL SELECT 'J:' || j.oid, j.xmin::text || j.ctid::text, NULL
    FROM pg_am j WHERE j.oid >= 16384 AND ($1::text IS NULL OR age(j.xmin) <= (SELECT a FROM h))
UNION ALL SELECT '#J', NULL, array_agg(j.oid) FROM pg_am j WHERE j.oid >= 16384
UNION ALL SELECT 'N:' || f.oid, f.xmin::text || f.ctid::text, NULL
    FROM pg_ts_parser f JOIN ns ON ns.oid = f.prsnamespace
    WHERE f.oid >= 16384 AND ($1::text IS NULL OR age(f.xmin) <= (SELECT a FROM h))
UNION ALL SELECT '#N', NULL, array_agg(f.oid) FROM pg_ts_parser f WHERE f.oid >= 16384
UNION ALL SELECT 'T:' || f.oid, f.xmin::text || f.ctid::text, NULL
    FROM pg_ts_template f JOIN ns ON ns.oid = f.tmplnamespace
    WHERE f.oid >= 16384 AND ($1::text IS NULL OR age(f.xmin) <= (SELECT a FROM h))
UNION ALL SELECT '#T', NULL, array_agg(f.oid) FROM pg_ts_template f WHERE f.oid >= 16384"#;

/// Whether any of the catalogs [`TOKENS_RARE_SQL`] reads has a row: a row
/// `?` when one does, so that the read is made again with them.
const RARE_PRESENT: &str = r#"
UNION ALL SELECT '?', NULL, NULL
    WHERE EXISTS (SELECT 1 FROM pg_collation WHERE oid >= 16384) OR EXISTS (SELECT 1 FROM pg_operator WHERE oid >= 16384)
       OR EXISTS (SELECT 1 FROM pg_cast WHERE oid >= 16384) OR EXISTS (SELECT 1 FROM pg_publication)
       OR EXISTS (SELECT 1 FROM pg_default_acl) OR EXISTS (SELECT 1 FROM pg_event_trigger)
       OR EXISTS (SELECT 1 FROM pg_ts_config WHERE oid >= 16384) OR EXISTS (SELECT 1 FROM pg_ts_dict WHERE oid >= 16384)
       OR EXISTS (SELECT 1 FROM pg_foreign_data_wrapper) OR EXISTS (SELECT 1 FROM pg_foreign_server)
       OR EXISTS (SELECT 1 FROM pg_foreign_table)
       OR EXISTS (SELECT 1 FROM pg_opfamily WHERE oid >= 16384) OR EXISTS (SELECT 1 FROM pg_opclass WHERE oid >= 16384)
       OR EXISTS (SELECT 1 FROM pg_am WHERE oid >= 16384)
       OR EXISTS (SELECT 1 FROM pg_ts_parser WHERE oid >= 16384) OR EXISTS (SELECT 1 FROM pg_ts_template WHERE oid >= 16384)"#;

/// The keys of one catalog's rows, to find the ones removed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Keys {
    /// In ascending order: sorted as they are read.
    Oids(Vec<u32>),
    /// Comma-separated.
    Text(String),
}

impl Keys {
    fn text_list(t: &str) -> impl Iterator<Item = &str> {
        t.split(',').filter(|k| !k.is_empty())
    }

    fn is_empty(&self) -> bool {
        match self {
            Keys::Oids(oids) => oids.is_empty(),
            Keys::Text(t) => Keys::text_list(t).next().is_none(),
        }
    }

    /// The keys in `self` and not in `other`.
    fn missing_from(&self, other: Option<&Keys>) -> Vec<String> {
        match (self, other) {
            (Keys::Oids(a), Some(Keys::Oids(b))) => {
                // Both sorted: one walk, no set.
                let mut out = Vec::new();
                let mut j = 0;
                for &x in a {
                    while j < b.len() && b[j] < x {
                        j += 1;
                    }
                    if b.get(j) != Some(&x) {
                        out.push(x.to_string());
                    }
                }
                out
            }
            (Keys::Oids(a), _) => a.iter().map(u32::to_string).collect(),
            (Keys::Text(a), Some(Keys::Text(b))) => {
                let b: HashSet<&str> = Keys::text_list(b).collect();
                Keys::text_list(a)
                    .filter(|k| !b.contains(k))
                    .map(str::to_string)
                    .collect()
            }
            (Keys::Text(a), _) => Keys::text_list(a).map(str::to_string).collect(),
        }
    }
}

/// One read of the tokens.
struct Read {
    horizon: Option<String>,
    tokens: Vec<(String, String)>,
    keys: HashMap<String, Keys>,
}

/// What it takes to hash a snapshot entry again without serialising it,
/// its canonical text, and the catalog object it is built from.
#[derive(Debug, Clone)]
struct Entry {
    canonical: Arc<str>,
    owner: Arc<str>,
}

/// Catalog row versions: those of one read, shared by every snapshot
/// updated from it, and what changed since. A rehearsal keeps the state
/// after each up to come back to after the down and the re-up, so each
/// update would otherwise copy every row version of the catalog.
#[derive(Debug, Clone, Default)]
struct Tokens {
    /// In key order, so that the rows of one relation (`a:16384.1`,
    /// `a:16384.2`, …) are a range to remove, not a scan of every row.
    base: Arc<BTreeMap<String, String>>,
    /// Since `base`: a row's new version, or `None` for a row removed.
    changes: BTreeMap<String, Option<String>>,
}

impl Tokens {
    fn get(&self, k: &str) -> Option<&str> {
        match self.changes.get(k) {
            Some(v) => v.as_deref(),
            None => self.base.get(k).map(String::as_str),
        }
    }

    fn set(&mut self, k: String, v: String) {
        self.changes.insert(k, Some(v));
    }

    fn remove(&mut self, k: &str) {
        if self.base.contains_key(k) {
            self.changes.insert(k.to_string(), None);
        } else {
            self.changes.remove(k);
        }
    }

    /// Remove every token whose key starts with `prefix`.
    fn remove_prefix(&mut self, prefix: &str) {
        fn starting<'m, V>(
            map: &'m BTreeMap<String, V>,
            prefix: &'m str,
        ) -> impl Iterator<Item = &'m String> {
            map.range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .map(|(k, _)| k)
            .take_while(move |k| k.starts_with(prefix))
        }
        let doomed: Vec<String> = starting(&self.base, prefix)
            .chain(starting(&self.changes, prefix))
            .cloned()
            .collect();
        for k in doomed {
            self.remove(&k);
        }
    }

    /// Fold the changes into a new base once copying them costs more than
    /// a fraction of the base.
    fn settle(&mut self) {
        if self.changes.len() <= 64 + self.base.len() / 16 {
            return;
        }
        let base = Arc::make_mut(&mut self.base);
        for (k, v) in std::mem::take(&mut self.changes) {
            match v {
                Some(v) => base.insert(k, v),
                None => base.remove(&k),
            };
        }
    }
}

/// A snapshot with what it takes to update it without reading everything
/// again: which catalog object each entry was built from, and the catalog
/// row versions it was built at. Cloning one is cheap: its parts are
/// shared until an update changes them.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub snapshot: Arc<Snapshot>,
    entries: Arc<BTreeMap<Arc<str>, Entry>>,
    tokens: Tokens,
    /// The tokens read whole every time (see [`whole`]).
    whole: BTreeMap<String, String>,
    keys: Arc<HashMap<String, Keys>>,
    /// The xid horizon of the read this was built at.
    horizon: Option<String>,
    /// How many entries the last update built again (all, for a full one).
    pub rebuilt: usize,
}

/// The catalog object a token's row belongs to (`pg_class:16384`).
fn root_of(token: &str) -> Option<String> {
    let (tag, rest) = token.split_once(':')?;
    let head = rest.split('.').next().unwrap_or(rest);
    Some(match tag {
        "r" | "i" | "s" | "a" | "d" | "h" | "w" | "o" => format!("pg_class:{head}"),
        "c" => format!("pg_constraint:{rest}"),
        "p" => format!("pg_proc:{rest}"),
        "t" => format!("pg_trigger:{rest}"),
        "z" => format!("pg_statistic_ext:{rest}"),
        "l" => format!("pg_collation:{rest}"),
        "q" => format!("pg_operator:{rest}"),
        "k" => format!("pg_cast:{rest}"),
        "g" => format!("pg_default_acl:{rest}"),
        "v" => format!("pg_event_trigger:{rest}"),
        // A text search configuration, and its mappings.
        "C" | "M" => format!("pg_ts_config:{head}"),
        "D" => format!("pg_ts_dict:{rest}"),
        "W" => format!("pg_foreign_data_wrapper:{rest}"),
        "S" => format!("pg_foreign_server:{rest}"),
        "U" => format!("pg_user_mapping:{rest}"),
        // An operator family, and its operators and support functions.
        "F" | "A" | "P" => format!("pg_opfamily:{head}"),
        "O" => format!("pg_opclass:{rest}"),
        "J" => format!("pg_am:{rest}"),
        "N" => format!("pg_ts_parser:{rest}"),
        "T" => format!("pg_ts_template:{rest}"),
        // A foreign table's server and options.
        "f" => format!("pg_class:{rest}"),
        // A publication, and the tables and schemas it names.
        "u" | "b" | "B" => format!("pg_publication:{head}"),
        "y" | "e" => format!("pg_type:{head}"),
        // `m:pg_class:16384.0`: the described object.
        "m" => rest.rsplit_once('.').map_or(rest, |(o, _)| o).to_string(),
        _ => return None,
    })
}

/// Whether the catalog object `root` (`pg_class:16384`) is missing from
/// the key set of its catalog, as last read. Only catalogs with an oid key
/// set over every schema can tell (`#R` for relations: `#r` holds only
/// those in the schemas read, and a relation moved out of them is not gone,
/// nor is what depends on it); any other object is taken as still there.
fn is_gone(keys: &HashMap<String, Keys>, root: &str) -> bool {
    let Some((catalog, oid)) = root.split_once(':') else {
        return false;
    };
    let set = match catalog {
        "pg_class" => "R",
        "pg_constraint" => "c",
        "pg_proc" => "p",
        "pg_trigger" => "t",
        "pg_type" => "y",
        "pg_statistic_ext" => "z",
        "pg_collation" => "l",
        "pg_operator" => "q",
        "pg_cast" => "k",
        "pg_publication" => "u",
        "pg_default_acl" => "g",
        "pg_event_trigger" => "v",
        "pg_ts_config" => "C",
        "pg_ts_dict" => "D",
        "pg_foreign_data_wrapper" => "W",
        "pg_foreign_server" => "S",
        "pg_user_mapping" => "U",
        "pg_opfamily" => "F",
        "pg_opclass" => "O",
        "pg_am" => "J",
        "pg_ts_parser" => "N",
        "pg_ts_template" => "T",
        _ => return false,
    };
    match (keys.get(set), oid.parse::<u32>()) {
        (Some(Keys::Oids(oids)), Ok(oid)) => oids.binary_search(&oid).is_err(),
        _ => false,
    }
}

/// Whether a token is read whole every time, and a change to it means
/// reading everything again.
fn whole(token: &str) -> bool {
    token.starts_with("n:") || token.starts_with("x:")
}

/// The snapshot queries, prepared once on a session.
pub struct Snapshotter {
    deparse: tokio_postgres::Statement,
    deparse_only: tokio_postgres::Statement,
    /// With [`RARE_SQL`]'s branches: prepared the first time a read needs it.
    deparse_only_rare: tokio::sync::OnceCell<tokio_postgres::Statement>,
    /// [`TOKENS_SQL`], and whether any of the rare catalogs has a row.
    tokens: tokio_postgres::Statement,
    /// With [`TOKENS_RARE_SQL`]'s branches: prepared the first time a read needs it.
    tokens_rare: tokio::sync::OnceCell<tokio_postgres::Statement>,
    /// The server's `server_version_num`.
    version: i32,
    /// Sets `plan_cache_mode` back to the session's own after a query run
    /// with a generic plan; `None` on a server without the setting.
    restore_plan: Option<String>,
}

impl Snapshotter {
    pub async fn new(client: &tokio_postgres::Client) -> Result<Self, tokio_postgres::Error> {
        let row = client
            .query_one(
                "SELECT current_setting('plan_cache_mode', true), current_setting('server_version_num')::int",
                &[],
            )
            .await?;
        let (mode, version): (Option<String>, i32) = (row.get(0), row.get(1));
        Ok(Snapshotter {
            deparse: client.prepare(&sql(false, true, version)).await?,
            deparse_only: client.prepare(&sql(true, false, version)).await?,
            deparse_only_rare: tokio::sync::OnceCell::new(),
            tokens: client
                .prepare(&format!("{TOKENS_SQL}{RARE_PRESENT}"))
                .await?,
            tokens_rare: tokio::sync::OnceCell::new(),
            version,
            restore_plan: mode
                .filter(|m| !m.is_empty())
                .map(|m| format!("SET plan_cache_mode = {}", crate::pg::quote::literal(&m))),
        })
    }

    /// Run a prepared statement with parameters on its generic plan (the
    /// server would otherwise plan these large queries again for every set
    /// of parameters, which costs more than running them), and, with
    /// `pin`, on the session's default search_path ([`PIN_SEARCH_PATH`]).
    /// The settings are changed and put back in the same round trip, so
    /// nothing else on the session runs with them.
    async fn run(
        &self,
        client: &tokio_postgres::Client,
        statement: &tokio_postgres::Statement,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        generic: bool,
        pin: bool,
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        let (mut before, mut after) = (Vec::new(), Vec::new());
        if let Some(restore) = self.restore_plan.as_deref().filter(|_| generic) {
            before.push("SET plan_cache_mode = force_generic_plan");
            after.push(restore);
        }
        if pin {
            before.push(PIN_SEARCH_PATH);
            after.push(UNPIN_SEARCH_PATH);
        }
        if before.is_empty() {
            return client.query(statement, params).await;
        }
        let (before, after) = (before.join("; "), after.join("; "));
        let (_, rows, _) = tokio::try_join!(
            client.batch_execute(&before),
            client.query(statement, params),
            client.batch_execute(&after),
        )?;
        Ok(rows)
    }

    /// The row versions written since `horizon` (all, without one), and
    /// the key sets. With `rare`, or when the read finds a row in one of
    /// the rare catalogs, their branches are read too.
    async fn read(
        &self,
        client: &tokio_postgres::Client,
        horizon: Option<&str>,
        rare: bool,
    ) -> Result<Read, tokio_postgres::Error> {
        let mut read = Read {
            horizon: None,
            tokens: Vec::new(),
            keys: HashMap::new(),
        };
        let mut rows = Vec::new();
        if !rare {
            rows = self
                .run(client, &self.tokens, &[&horizon], true, false)
                .await?;
        }
        if rare || rows.iter().any(|r| r.get::<_, &str>(0) == "?") {
            let statement = self
                .tokens_rare
                .get_or_try_init(|| async {
                    client
                        .prepare(&format!("{TOKENS_SQL}{TOKENS_RARE_SQL}"))
                        .await
                })
                .await?;
            rows = self
                .run(client, statement, &[&horizon], true, false)
                .await?;
        }
        for r in rows {
            let key: String = r.get(0);
            let text: Option<String> = r.get(1);
            if key == "H" {
                read.horizon = text;
            } else if let Some(set) = key.strip_prefix('#') {
                let keys = match r.get::<_, Option<Vec<u32>>>(2) {
                    Some(mut oids) => {
                        // Sorted here: the server's sort of every oid cost
                        // more than its aggregate (1.6 of 4.3 ms for 18,000
                        // relations), and a seq scan comes nearly in order.
                        oids.sort_unstable();
                        Keys::Oids(oids)
                    }
                    None => Keys::Text(text.unwrap_or_default()),
                };
                read.keys.insert(set.to_string(), keys);
            } else if key == "!i" {
                read.keys.insert(key, Keys::Text(text.unwrap_or_default()));
            } else {
                read.tokens.push((key, text.unwrap_or_default()));
            }
        }
        Ok(read)
    }

    /// Every definition (`changed: None`), or those of the objects that
    /// depend on the `changed` ones, with the set of catalog objects they
    /// were read for.
    async fn deparse(
        &self,
        client: &tokio_postgres::Client,
        changed: Option<(&[String], bool)>,
    ) -> Result<(HashSet<String>, Vec<(String, String, Value)>), tokio_postgres::Error> {
        let rows = match changed {
            None => self.run(client, &self.deparse, &[], false, true).await?,
            Some((roots, false)) => {
                self.run(client, &self.deparse_only, &[&roots], true, true)
                    .await?
            }
            Some((roots, true)) => {
                let statement = self
                    .deparse_only_rare
                    .get_or_try_init(|| async {
                        client.prepare(&sql(true, true, self.version)).await
                    })
                    .await?;
                self.run(client, statement, &[&roots], true, true).await?
            }
        };
        let mut redo = HashSet::new();
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let kind: String = r.get(0);
            let name: String = r.get(1);
            if kind == "~" {
                redo.insert(name);
                continue;
            }
            let def: String = r.get(2);
            out.push((
                format!("{kind} {name}"),
                r.get::<_, String>(3),
                serde_json::from_str(&def).unwrap_or(Value::String(def)),
            ));
        }
        Ok((redo, out))
    }

    /// Every object, read from the catalog.
    pub async fn full(
        &self,
        client: &tokio_postgres::Client,
    ) -> Result<Tracked, tokio_postgres::Error> {
        // Row versions first: a change that lands between the two reads
        // shows as a changed token next time, never as a stale definition.
        let read = self.read(client, None, false).await?;
        let (_, rows) = self.deparse(client, None).await?;
        let (whole_tokens, tokens): (Vec<_>, Vec<_>) =
            read.tokens.into_iter().partition(|(k, _)| whole(k));
        let mut t = Tracked {
            snapshot: Arc::new(Snapshot::from_shared(BTreeMap::new())),
            entries: Arc::default(),
            tokens: Tokens {
                base: Arc::new(tokens.into_iter().collect()),
                changes: BTreeMap::new(),
            },
            whole: whole_tokens.into_iter().collect(),
            keys: Arc::new(read.keys),
            horizon: read.horizon,
            rebuilt: 0,
        };
        t.rebuild(&HashSet::new(), rows);
        Ok(t)
    }

    /// The schema now, building again only the entries whose catalog rows,
    /// or the rows of anything they depend on (by pg_depend, transitively),
    /// changed since `prev`. A change to a schema or an extension reads
    /// everything again.
    pub async fn next(
        &self,
        client: &tokio_postgres::Client,
        prev: Tracked,
    ) -> Result<Tracked, tokio_postgres::Error> {
        let read = self
            .read(client, prev.horizon.as_deref(), has_rare(&prev.keys))
            .await?;
        let (whole_tokens, tokens): (Vec<_>, Vec<_>) =
            read.tokens.into_iter().partition(|(k, _)| whole(k));
        if whole_tokens.into_iter().collect::<BTreeMap<_, _>>() != prev.whole {
            return self.full(client).await;
        }
        let mut t = prev;
        let mut changed: Vec<String> = Vec::new();
        for (k, v) in tokens {
            if t.tokens.get(&k) != Some(v.as_str()) {
                changed.push(k.clone());
                t.tokens.set(k, v);
            }
        }
        // Rows removed since: the keys that were there and are not now. A
        // read without the rare catalogs has none of their key sets: they
        // were empty, and are still.
        let mut gone_rels: HashSet<String> = HashSet::new();
        if read
            .keys
            .iter()
            .any(|(set, now)| t.keys.get(set) != Some(now))
        {
            let keys = Arc::make_mut(&mut t.keys);
            for (set, now) in read.keys {
                let before = keys.get(&set);
                if before == Some(&now) {
                    continue;
                }
                if set == "R" {
                    // Every relation, in any schema: only to tell a
                    // relation dropped from one moved out of those read.
                } else if set == "!i" {
                    // An index whose validity flipped, either way.
                    let flipped = now.missing_from(before).into_iter().chain(
                        before
                            .map(|b| b.missing_from(Some(&now)))
                            .unwrap_or_default(),
                    );
                    for k in flipped {
                        changed.push(format!("i:{}", k.trim_end_matches(['v', 'r'])));
                    }
                } else if let Some(before) = before {
                    for k in before.missing_from(Some(&now)) {
                        let token = format!("{set}:{k}");
                        t.tokens.remove(&token);
                        changed.push(token);
                        if set == "r" {
                            gone_rels.insert(k);
                        }
                    }
                }
                keys.insert(set, now);
            }
        }
        // A relation's columns, index and sequence rows go with it.
        for oid in &gone_rels {
            t.tokens.remove_prefix(&format!("a:{oid}."));
            t.tokens.remove(&format!("i:{oid}"));
            t.tokens.remove(&format!("s:{oid}"));
        }
        t.tokens.settle();
        t.horizon = read.horizon;
        t.rebuilt = 0;
        if changed.is_empty() {
            return Ok(t);
        }
        // An object that is gone has nothing left to read, and nothing
        // depends on it any more (PostgreSQL drops or refuses to drop what
        // does): its entries go, with no query.
        let (gone, roots): (Vec<String>, Vec<String>) = changed
            .iter()
            .filter_map(|k| root_of(k))
            .partition(|root| is_gone(&t.keys, root));
        let (mut redo, rows) = if roots.is_empty() {
            (HashSet::new(), Vec::new())
        } else {
            // Objects of the rare kinds exist only while their catalogs
            // have rows: with none, there is nothing of them to read.
            self.deparse(client, Some((&roots, has_rare(&t.keys))))
                .await?
        };
        redo.extend(gone);
        t.rebuild(&redo, rows);
        Ok(t)
    }
}

impl Tracked {
    /// Drop the entries built from the objects in `redo` and add `rows`.
    fn rebuild(&mut self, redo: &HashSet<String>, rows: Vec<(String, String, Value)>) {
        let entries = Arc::make_mut(&mut self.entries);
        let mut objects = self.snapshot.objects.clone();
        if !redo.is_empty() {
            // Every entry's owner is looked up: a binary search of the few
            // objects to redo costs less than hashing each owner (SipHash
            // was 3.6% of a rehearsal's client time).
            let mut redo: Vec<&str> = redo.iter().map(String::as_str).collect();
            redo.sort_unstable();
            entries.retain(|k, e| {
                let keep = redo.binary_search(&&*e.owner).is_err();
                if !keep {
                    objects.remove(k);
                }
                keep
            });
        }
        self.rebuilt = rows.len();
        for (key, owner, def) in rows {
            let key: Arc<str> = key.into();
            let def = Arc::new(def);
            let canonical: Arc<str> = canonical(&def).into();
            objects.insert(key.clone(), def);
            entries.insert(
                key,
                Entry {
                    canonical,
                    owner: owner.into(),
                },
            );
        }
        let mut hasher = Hasher::default();
        for (k, e) in entries.iter() {
            hasher.add(k, &e.canonical);
        }
        self.snapshot = Arc::new(Snapshot {
            hash: hasher.finish(),
            objects,
        });
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
        Snapshot::from_shared(
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
    /// `added`, `removed`, `changed`, `column_order` when a table's
    /// columns are the same but in another order, or `body_layout` when a
    /// function's PL/pgSQL or SQL body differs only in whitespace and
    /// comments.
    pub change: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// Whether a `changed` object differs only in the date and time literals
/// its definition holds: what a definition froze when it was made (a view
/// over `'now'::timestamp - '1 mon'`, stored as the moment of its CREATE),
/// so that the same SQL made at two moments gives two definitions.
pub fn only_times_differ(c: &Change) -> bool {
    static TIME: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let time = TIME.get_or_init(|| {
        regex::Regex::new(
            r"'\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:[+-]\d{2}(?::\d{2})?)?)?'",
        )
        .expect("static regex")
    });
    let (Some(before), Some(after)) = (&c.before, &c.after) else {
        return false;
    };
    let (before, after) = (before.to_string(), after.to_string());
    if c.change != "changed"
        || before == after
        || time.replace_all(&before, "'T'") != time.replace_all(&after, "'T'")
    {
        return false;
    }
    // Each literal that differs is of these days (UTC, a day either side
    // for the server's zone): a time the rehearsal froze, not one a person
    // wrote (`CHECK (d > '2020-01-01')` made other by a down is a fault).
    let (now, day) = (
        std::time::SystemTime::now(),
        std::time::Duration::from_secs(86_400),
    );
    let days: Vec<String> = [now - day, now, now + day]
        .into_iter()
        .map(|at| humantime::format_rfc3339(at).to_string()[..10].to_string())
        .collect();
    let recent = |m: &str| days.iter().any(|d| m.get(1..11) == Some(d.as_str()));
    time.find_iter(&before)
        .zip(time.find_iter(&after))
        .all(|(a, b)| a.as_str() == b.as_str() || (recent(a.as_str()) && recent(b.as_str())))
}

/// Whether two definitions of a function (or procedure) differ only in the
/// layout of a PL/pgSQL or SQL body: whitespace and comments, which those
/// languages read as one separator. Its other keys (comment, grants, owner)
/// must be equal.
fn same_but_layout(a: &Value, b: &Value) -> bool {
    let (Value::Object(a), Value::Object(b)) = (a, b) else {
        return false;
    };
    let rest = |m: &serde_json::Map<String, Value>| {
        m.iter()
            .filter(|(k, _)| *k != "definition")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    let (Some(x), Some(y)) = (a["definition"].as_str(), b["definition"].as_str()) else {
        return false;
    };
    x != y && rest(a) == rest(b) && layout_free(x).is_some_and(|t| Some(t) == layout_free(y))
}

/// A function's definition as the server reads it, without the layout of
/// its body: None unless its language is PL/pgSQL or SQL, whose scanner
/// takes any run of whitespace and comments as one separator. Tokens are
/// compared as written; a separator is kept only between two operator
/// characters (`< =` is not `<=`) or two string literals (`'a'` and `'b'`
/// on two lines are one string), where it changes what the tokens mean.
fn layout_free(definition: &str) -> Option<Vec<String>> {
    use squawk_lexer::{LiteralKind, TokenKind};
    let tokens = |text: &str| {
        let mut at = 0;
        squawk_lexer::tokenize(text)
            .map(|t| {
                let piece = &text[at..at + t.len as usize];
                at += t.len as usize;
                (t.kind, piece.to_string())
            })
            .collect::<Vec<_>>()
    };
    let header = tokens(definition);
    let words: Vec<&str> = header
        .iter()
        .filter(|(k, _)| *k == TokenKind::Ident)
        .map(|(_, t)| t.as_str())
        .collect();
    let language = words
        .windows(2)
        .find(|w| w[0].eq_ignore_ascii_case("language"))
        .map(|w| w[1].to_ascii_lowercase())?;
    if language != "plpgsql" && language != "sql" {
        return None;
    }
    let operator = |k: &TokenKind| {
        use TokenKind::*;
        matches!(
            k,
            Slash
                | Minus
                | Colon
                | Dot
                | DotDot
                | Eq
                | Gt
                | And
                | Lt
                | Bang
                | Plus
                | Tilde
                | Pound
                | Question
                | Or
                | Percent
                | Caret
                | Star
                | Backtick
                | At
        )
    };
    let string = |k: &TokenKind| {
        matches!(
            k,
            TokenKind::Literal {
                kind: LiteralKind::Str { .. }
            }
        )
    };
    let mut out = Vec::new();
    for (kind, text) in header {
        let body = matches!(
            kind,
            TokenKind::Literal {
                kind: LiteralKind::DollarQuotedString { terminated: true }
            }
        );
        if !body {
            out.push(text);
            continue;
        }
        // `$tag$ ... $tag$`: the body between its two tags, read as code.
        let tag = &text[..=text[1..].find('$')? + 1];
        let inner = &text[tag.len()..text.len() - tag.len()];
        out.push(tag.to_string());
        let mut last: Option<TokenKind> = None;
        let mut gap: Option<bool> = None;
        for (k, t) in tokens(inner) {
            if matches!(
                k,
                TokenKind::Whitespace | TokenKind::LineComment | TokenKind::BlockComment { .. }
            ) {
                let newline =
                    gap.unwrap_or(false) || t.contains('\n') || k == TokenKind::LineComment;
                gap = Some(newline);
                continue;
            }
            if let (Some(newline), Some(prev)) = (gap.take(), last) {
                if operator(&prev) && operator(&k) {
                    out.push(" ".into());
                } else if string(&prev) && string(&k) {
                    out.push(if newline { "\n" } else { " " }.into());
                }
            }
            last = Some(k);
            out.push(t);
        }
        out.push(tag.to_string());
    }
    Some(out)
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
                object: k.to_string(),
                change: "removed",
                before: Some(Value::clone(v)),
                after: None,
            }),
            Some(w) if !Arc::ptr_eq(v, w) && w != v => out.push(Change {
                object: k.to_string(),
                change: if k.starts_with("table ") && columns_sorted(v) == columns_sorted(w) {
                    "column_order"
                } else if k.starts_with("function ") && same_but_layout(v, w) {
                    "body_layout"
                } else {
                    "changed"
                },
                before: Some(Value::clone(v)),
                after: Some(Value::clone(w)),
            }),
            Some(_) => {}
        }
    }
    for (k, w) in &after.objects {
        if !before.objects.contains_key(k) {
            out.push(Change {
                object: k.to_string(),
                change: "added",
                before: None,
                after: Some(Value::clone(w)),
            });
        }
    }
    out.sort_by(|a, b| a.object.cmp(&b.object));
    out
}

/// A table's columns that differ, for people, as `(gone, new)` lines keyed
/// by the column's name: a column on one side only whole (without its null
/// fields), one on both sides by the fields that differ (`column v:
/// {"not_null":true}` gone, `{"not_null":false}` new), and the order of
/// the columns both sides have, where it differs.
fn column_lines(a: Option<&Value>, b: Option<&Value>) -> (Vec<String>, Vec<String>) {
    let cols = |v: Option<&Value>| {
        v.and_then(|v| v["columns"].as_array())
            .cloned()
            .unwrap_or_default()
    };
    let (a, b) = (cols(a), cols(b));
    let name = |c: &Value| c["name"].as_str().unwrap_or_default().to_string();
    let find = |list: &[Value], n: &str| list.iter().find(|c| name(c) == n).cloned();
    let fields = |c: &Value, keep: &dyn Fn(&str, &Value) -> bool| {
        let m: serde_json::Map<String, Value> = c
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| *k != "name" && keep(k, v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        canonical(&Value::Object(m))
    };
    let whole = |c: &Value| format!("column {}: {}", name(c), fields(c, &|_, v| !v.is_null()));
    let (mut gone, mut new) = (Vec::new(), Vec::new());
    for c in &a {
        match find(&b, &name(c)) {
            None => gone.push(whole(c)),
            Some(d) if d != *c => {
                let differs = |k: &str, _: &Value| c.get(k) != d.get(k);
                gone.push(format!("column {}: {}", name(c), fields(c, &differs)));
                new.push(format!("column {}: {}", name(c), fields(&d, &differs)));
            }
            Some(_) => {}
        }
    }
    new.extend(b.iter().filter(|d| find(&a, &name(d)).is_none()).map(whole));
    let shared = |x: &[Value], y: &[Value]| -> Vec<String> {
        x.iter()
            .map(name)
            .filter(|n| find(y, n).is_some())
            .collect()
    };
    let (was, now) = (shared(&a, &b), shared(&b, &a));
    if was != now {
        gone.push(format!("column order: {}", was.join(", ")));
        new.push(format!("column order: {}", now.join(", ")));
        for m in re_added(&was, &now) {
            new.push(format!(
                "column {m}: dropped and added again (it is now last): it holds only what was written since"
            ));
        }
    }
    (gone, new)
}

/// Columns that left the order of the columns both sides have and now
/// stand last: dropped and added again (PostgreSQL adds a column at the
/// end), so they hold what was written into them since, not what they
/// kept. `was` and `now` are the shared columns' names in order.
fn re_added(was: &[String], now: &[String]) -> Vec<String> {
    let kept = in_order(was, now);
    let moved: Vec<String> = now.iter().filter(|n| !kept.contains(n)).cloned().collect();
    let last = &now[now.len() - moved.len()..];
    if moved.iter().zip(last).all(|(m, l)| m == l) {
        moved
    } else {
        Vec::new()
    }
}

/// By table (`schema.name`), the columns a change of that table shows
/// dropped and added again ([`re_added`]).
pub fn re_added_columns(changes: &[Change]) -> BTreeMap<String, Vec<String>> {
    let names = |v: &Option<Value>| -> Vec<String> {
        v.as_ref()
            .and_then(|v| v["columns"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    };
    changes
        .iter()
        .filter_map(|c| {
            let table = c.object.strip_prefix("table ")?;
            let (a, b) = (names(&c.before), names(&c.after));
            let was: Vec<String> = a.iter().filter(|n| b.contains(n)).cloned().collect();
            let now: Vec<String> = b.iter().filter(|n| a.contains(n)).cloned().collect();
            let cols = re_added(&was, &now);
            (!cols.is_empty()).then(|| (table.to_string(), cols))
        })
        .collect()
}

/// The longest run of `a`'s names that `b` keeps in the same order (a
/// longest common subsequence): the columns that did not move.
fn in_order<'n>(a: &'n [String], b: &[String]) -> Vec<&'n String> {
    let mut len = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            len[i][j] = if a[i] == b[j] {
                len[i + 1][j + 1] + 1
            } else {
                len[i + 1][j].max(len[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push(&a[i]);
            i += 1;
            j += 1;
        } else if len[i + 1][j] >= len[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// The lines of a definition that differ, for people: `- old` / `+ new`
/// per top-level key, and per column of a table ([`column_lines`]).
pub fn describe(c: &Change) -> Vec<String> {
    fn flat(v: &Value) -> Vec<String> {
        match v {
            Value::Object(m) => m
                .iter()
                .flat_map(|(k, x)| match (k.as_str(), x) {
                    ("columns", Value::Array(_)) | (_, Value::Null) => Vec::new(),
                    (_, Value::String(s)) => vec![format!("{k}: {}", s.trim())],
                    _ => vec![format!("{k}: {}", canonical(x))],
                })
                .collect(),
            other => vec![canonical(other)],
        }
    }
    if c.change == "body_layout" {
        // Both definitions are long and read alike once report.md folds
        // their whitespace: say where they part, not the two texts.
        let text = |v: &Option<Value>| {
            v.as_ref()
                .and_then(|v| v["definition"].as_str())
                .unwrap_or_default()
                .to_string()
        };
        let (a, b) = (text(&c.before), text(&c.after));
        let line = a
            .lines()
            .zip(b.lines())
            .position(|(x, y)| x != y)
            .unwrap_or_else(|| a.lines().count().min(b.lines().count()));
        return vec![format!(
            "= definition: its body differs only in whitespace or comments, from line {} (`{}`)",
            line + 1,
            a.lines().nth(line).unwrap_or_default().trim()
        )];
    }
    let a = c.before.as_ref().map(flat).unwrap_or_default();
    let b = c.after.as_ref().map(flat).unwrap_or_default();
    let (columns_gone, columns_new) = column_lines(c.before.as_ref(), c.after.as_ref());
    let gone: Vec<&String> = a
        .iter()
        .filter(|l| !b.contains(l))
        .chain(&columns_gone)
        .collect();
    let new: Vec<&String> = b
        .iter()
        .filter(|l| !a.contains(l))
        .chain(&columns_new)
        .collect();
    // A long value that changed is shown from a little before where it
    // starts to differ: a view whose one timestamp literal changed would
    // otherwise show the same first hundred characters twice.
    let key = |l: &str| l.split_once(": ").map(|(k, _)| k.to_string());
    let pair = |l: &String, others: &[&String]| {
        others
            .iter()
            .find(|o| key(o) == key(l) && key(l).is_some())
            .map(|o| from_difference(l, o))
            .unwrap_or_else(|| l.to_string())
    };
    let mut out: Vec<String> = gone
        .iter()
        .map(|l| format!("- {}", pair(l, &new)))
        .collect();
    out.extend(new.iter().map(|l| format!("+ {}", pair(l, &gone))));
    out
}

/// `line` (`key: value`) from a little before the first character where it
/// differs from `other`, when the line is longer than a report shows of it
/// (report.md cuts a line at 100 characters) and the difference is far in;
/// else as it is.
fn from_difference(line: &str, other: &str) -> String {
    const BEFORE: usize = 30;
    const SHOWN: usize = 100;
    if line.chars().count() <= SHOWN {
        return line.to_string();
    }
    let at = line
        .chars()
        .zip(other.chars())
        .take_while(|(x, y)| x == y)
        .count();
    let Some((k, _)) = line.split_once(": ") else {
        return line.to_string();
    };
    let skip = at.saturating_sub(BEFORE);
    if at + BEFORE < SHOWN || skip <= k.chars().count() + 2 {
        return line.to_string();
    }
    format!("{k}: …{}", line.chars().skip(skip).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(k: &str, n: &str, d: &str) -> (String, String, String) {
        (k.into(), n.into(), d.into())
    }

    #[test]
    fn a_body_laid_out_otherwise_is_told_from_one_that_reads_otherwise() {
        let def = |lang: &str, body: &str| {
            format!(
                "CREATE OR REPLACE FUNCTION public.f()\n RETURNS text\n LANGUAGE {lang}\nAS $function$\n{body}$function$\n"
            )
        };
        let same = |lang: &str, a: &str, b: &str| {
            same_but_layout(
                &serde_json::json!({"definition": def(lang, a), "comment": null}),
                &serde_json::json!({"definition": def(lang, b), "comment": null}),
            )
        };
        let body = "BEGIN\n  -- why\n  RETURN 'a' || $q$ b $q$;\nEND;\n";
        assert!(same(
            "plpgsql",
            body,
            "BEGIN RETURN 'a'||$q$ b $q$; /* x */ END;"
        ));
        assert!(same("sql", "SELECT 1 ,\n 2", "SELECT 1, 2"));
        // Inside a string, a nested dollar quote, or between two operator
        // characters, a space is not layout.
        assert!(!same("plpgsql", body, "BEGIN RETURN 'a' || $q$ b$q$; END;"));
        assert!(!same(
            "plpgsql",
            "BEGIN RETURN 'a  b'; END;",
            "BEGIN RETURN 'a b'; END;"
        ));
        assert!(!same("sql", "SELECT 1 <= 2", "SELECT 1 < = 2"));
        // Two strings on two lines are one string; on one line, two.
        assert!(!same("sql", "SELECT 'a'\n'b'", "SELECT 'a' 'b'"));
        assert!(same("sql", "SELECT 'a'\n'b'", "SELECT 'a'  \n  'b'"));
        // Another language's body is its own: Python's indentation counts.
        assert!(!same("plpython3u", "return 1\n", "  return 1\n"));
        // Equal definitions, or other keys that differ, are not layout.
        assert!(!same("sql", "SELECT 1", "SELECT 1"));
        assert!(!same_but_layout(
            &serde_json::json!({"definition": def("sql", "SELECT 1"), "comment": "a"}),
            &serde_json::json!({"definition": def("sql", " SELECT 1"), "comment": "b"}),
        ));
    }

    #[test]
    fn the_database_owner_is_read_in_one_place_that_take_as_if_owned_by_replaces() {
        assert_eq!(full_sql(170_000).matches(DATABASE_OWNER).count(), 1);
    }

    #[test]
    fn a_snapshot_as_an_older_runbook_read_it_leaves_out_what_that_did_not_read() {
        let objects: BTreeMap<String, Value> = [
            (
                "table public.t",
                serde_json::json!({"columns": [
                {"name": "a", "type": "text", "storage": "external", "compression": "lz4"},
                {"name": "b", "type": "int", "statistics": 1000, "options": ["n_distinct=-1"]}],
                "inherits": ["base"], "options": ["fillfactor=70"], "owner": "app"}),
            ),
            (
                "index public.t_a",
                serde_json::json!({"definition": "CREATE INDEX", "clustered": true, "statistics": {"1": 300}}),
            ),
            (
                "access method heap2",
                serde_json::json!({"type": "table"}),
            ),
            ("text search parser public.p", serde_json::json!({})),
            ("type public.mood", serde_json::json!({"enum": ["ok"]})),
            (
                "view public.v",
                serde_json::json!({"definition": "SELECT 1;", "options": ["security_invoker=true"]}),
            ),
            ("rule public.t.keep", serde_json::json!({"enabled": "O"})),
            (
                "type public.span",
                serde_json::json!({"range": "double precision"}),
            ),
            ("collation public.nocase", serde_json::json!({})),
            ("publication feed", serde_json::json!({})),
            (
                "default privileges for app on tables",
                serde_json::json!({}),
            ),
            ("event trigger watch", serde_json::json!({})),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let now = Snapshot::from_objects(objects);
        assert_eq!(now.as_read_at(READS), now);
        // Level 2 read no access methods, text search parsers or
        // templates, and no index statistics targets.
        let two = now.as_read_at(2);
        assert_eq!(two.objects.len(), now.objects.len() - 2);
        assert_eq!(
            *two.objects["index public.t_a"],
            serde_json::json!({"definition": "CREATE INDEX", "clustered": true})
        );
        assert_eq!(two.objects["table public.t"], now.objects["table public.t"]);
        assert!(Snapshot::unread_at(2).contains(&"text search template"));
        // Level 1 read no owners, compression, statistics targets,
        // column options or CLUSTER ON, and a table's storage options.
        let one = now.as_read_at(1);
        assert_eq!(one.objects.len(), two.objects.len());
        assert_eq!(
            *one.objects["table public.t"],
            serde_json::json!({"columns": [
                {"name": "a", "type": "text", "storage": "external"},
                {"name": "b", "type": "int"}], "inherits": ["base"], "options": ["fillfactor=70"]})
        );
        assert_eq!(
            *one.objects["index public.t_a"],
            serde_json::json!({"definition": "CREATE INDEX"})
        );
        assert!(one.objects["view public.v"].get("options").is_some());
        let unread = Snapshot::unread_at(1);
        assert!(unread.contains(&"owners") && !unread.contains(&"publication"));
        let old = now.as_read_at(0);
        assert_eq!(
            old.objects.keys().map(|k| &**k).collect::<Vec<_>>(),
            [
                "index public.t_a",
                "table public.t",
                "type public.mood",
                "view public.v"
            ]
        );
        assert_eq!(
            *old.objects["view public.v"],
            serde_json::json!({"definition": "SELECT 1;"})
        );
        assert_eq!(
            *old.objects["table public.t"],
            serde_json::json!({"columns": [{"name": "a", "type": "text"}, {"name": "b", "type": "int"}],
                               "options": ["fillfactor=70"]})
        );
        // What an older runbook wrote compares equal to it.
        let written = Snapshot::from_objects(
            old.objects
                .iter()
                .map(|(k, v)| (k.to_string(), Value::clone(v)))
                .collect(),
        );
        assert_eq!(written.as_read_at(0).hash, old.hash);
        assert!(Snapshot::unread_at(0).contains(&"publication"));
        assert!(Snapshot::unread_at(READS).is_empty());
    }

    #[test]
    fn an_entrys_kind_may_be_two_words_and_its_schema_none() {
        assert_eq!(
            kind_and_name("materialized view public.totals"),
            Some(("materialized view", "public.totals"))
        );
        assert_eq!(kind_and_name("table s.t"), Some(("table", "s.t")));
        assert_eq!(schema_of("materialized view app.totals"), Some("app"));
        assert_eq!(schema_of("schema audit"), Some("audit"));
        assert_eq!(schema_of("operator app.===(integer, integer)"), Some("app"));
        assert_eq!(schema_of("publication feed"), None);
        assert_eq!(schema_of("event trigger watch"), None);
        assert_eq!(schema_of("cast tag AS integer"), None);
        assert_eq!(
            schema_of("default privileges for owner in schema app on tables"),
            Some("app")
        );
        assert_eq!(schema_of("default privileges for owner on tables"), None);
    }

    #[test]
    fn an_object_is_gone_only_when_its_catalogs_oid_set_lacks_it() {
        let keys: HashMap<String, Keys> = [
            ("R".to_string(), Keys::Oids(vec![16384, 16390])),
            // Relations in the schemas read only: not what tells.
            ("r".to_string(), Keys::Oids(vec![16384])),
            ("c".to_string(), Keys::Oids(vec![16400])),
            ("t".to_string(), Keys::Text(String::new())),
        ]
        .into();
        assert!(!is_gone(&keys, "pg_class:16390"));
        assert!(is_gone(&keys, "pg_class:16385"));
        assert!(is_gone(&keys, "pg_constraint:16390"));
        assert!(!is_gone(&keys, "pg_constraint:16400"));
        // No oid set read, or a catalog without one: taken as still there.
        assert!(!is_gone(&keys, "pg_trigger:16500"));
        assert!(!is_gone(&keys, "pg_proc:16500"));
        assert!(!is_gone(&keys, "pg_namespace:2200"));
        assert!(!is_gone(&keys, "pg_class:x"));
    }

    #[test]
    fn removed_keys_are_found_in_sorted_oids_and_in_text_sets() {
        let before = Keys::Oids(vec![3, 5, 9, 12]);
        let now = Keys::Oids(vec![1, 5, 12, 20]);
        assert_eq!(before.missing_from(Some(&now)), ["3", "9"]);
        assert_eq!(now.missing_from(Some(&before)), ["1", "20"]);
        assert_eq!(before.missing_from(None), ["3", "5", "9", "12"]);
        let before = Keys::Text("16384.1,16390.2,".into());
        let now = Keys::Text("16390.2,16400.1".into());
        assert_eq!(before.missing_from(Some(&now)), ["16384.1"]);
        assert_eq!(now.missing_from(Some(&before)), ["16400.1"]);
    }

    #[test]
    fn tokens_changed_after_a_shared_base_leave_the_base_and_its_other_users_alone() {
        let a = Tokens {
            base: Arc::new(
                (0..10)
                    .map(|i| (format!("r:{i}"), "v1".into()))
                    .chain(["a:3.1", "a:3.2", "a:30.1"].map(|k| (k.into(), "v1".into())))
                    .collect(),
            ),
            changes: BTreeMap::new(),
        };
        let mut b = a.clone();
        b.set("r:1".into(), "v2".into());
        b.remove("r:2");
        b.set("r:99".into(), "new".into());
        b.remove("r:99");
        // A prefix takes the rows of the base and those changed since.
        b.set("a:3.3".into(), "new".into());
        b.set("a:3.1".into(), "v2".into());
        b.remove_prefix("a:3.");
        assert_eq!(b.get("r:1"), Some("v2"));
        for gone in ["r:2", "r:99", "a:3.1", "a:3.2", "a:3.3"] {
            assert_eq!(b.get(gone), None, "{gone}");
        }
        assert_eq!(b.get("a:30.1"), Some("v1"));
        assert_eq!(b.get("r:5"), Some("v1"));
        // The one b was cloned from is as it was.
        for i in 0..10 {
            assert_eq!(a.get(&format!("r:{i}")), Some("v1"));
        }
        // Folding the changes in keeps what they say.
        for i in 100..300 {
            b.set(format!("r:{i}"), "x".into());
        }
        b.settle();
        assert!(b.changes.is_empty());
        assert_eq!(b.get("r:1"), Some("v2"));
        assert_eq!(b.get("r:2"), None);
        assert_eq!(b.get("r:150"), Some("x"));
        assert_eq!(a.get("r:150"), None);
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
    fn a_long_definition_is_shown_from_where_it_differs() {
        let view = |at: &str| {
            row(
                "view",
                "public.v",
                &serde_json::json!({
                    "definition": format!(
                        " SELECT p.id, p.name, p.url, p.body, p.creator_id, p.community_id, p.removed, p.locked FROM post p WHERE p.published < ('{at}'::timestamp without time zone - '1 mon'::interval)"
                    )
                })
                .to_string(),
            )
        };
        let a = Snapshot::from_rows([view("2026-12-01 18:10:17.067156")]);
        let b = Snapshot::from_rows([view("2026-12-01 18:10:17.166799")]);
        let lines = describe(&compare(&a, &b)[0]);
        assert_eq!(lines.len(), 2, "{lines:?}");
        // Both show the literals that differ within their first 100 characters.
        assert!(lines[0].starts_with("- definition: …"), "{lines:?}");
        let shown: String = lines[0].chars().take(100).collect();
        assert!(shown.contains("18:10:17.067156"), "{shown}");
        let shown: String = lines[1].chars().take(100).collect();
        assert!(shown.contains("18:10:17.166799"), "{shown}");
        // A short one is shown whole.
        let c = Snapshot::from_rows([row("view", "public.w", r#"{"definition":"SELECT 1"}"#)]);
        let d = Snapshot::from_rows([row("view", "public.w", r#"{"definition":"SELECT 2"}"#)]);
        assert_eq!(
            describe(&compare(&c, &d)[0]),
            ["- definition: SELECT 1", "+ definition: SELECT 2"]
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
        assert_eq!(describe(gone), [r#"- column b: {}"#]);
        // b moved before a: which one is "re-added" is not told apart from
        // a moved last, so a, now last, is named.
        assert_eq!(
            describe(&compare(&a, &b)[0]),
            [
                "- column order: a, b",
                "+ column order: b, a",
                "+ column a: dropped and added again (it is now last): it holds only what was written since",
            ]
        );
        // A column from the middle now last is named; a column that moved
        // elsewhere is not called re-added.
        let order = |names: &[&str]| {
            let cols: Vec<String> = names
                .iter()
                .map(|n| format!("{{\"name\":\"{n}\"}}"))
                .collect();
            Snapshot::from_rows([t(&cols.join(","))])
        };
        let readded = describe(
            &compare(
                &order(&["id", "x", "y", "z"]),
                &order(&["id", "y", "z", "x"]),
            )[0],
        );
        assert_eq!(
            readded.last().unwrap(),
            "+ column x: dropped and added again (it is now last): it holds only what was written since"
        );
        let elsewhere = describe(
            &compare(
                &order(&["id", "x", "y", "z"]),
                &order(&["id", "y", "x", "z"]),
            )[0],
        );
        assert!(
            !elsewhere.iter().any(|l| l.contains("now last")),
            "{elsewhere:?}"
        );
        // A column on both sides by what differs in it; one on one side
        // whole, without its nulls.
        let t = |cols: &str| {
            row(
                "table",
                "public.t",
                &format!("{{\"kind\":\"r\",\"columns\":[{cols}]}}"),
            )
        };
        let before = Snapshot::from_rows([t(
            r#"{"name":"id","type":"int"},{"name":"v","type":"int","not_null":true,"default":null},{"name":"w","type":"text","comment":null}"#,
        )]);
        let after = Snapshot::from_rows([t(
            r#"{"name":"id","type":"int"},{"name":"v","type":"int","not_null":false,"default":null},{"name":"x","type":"text"}"#,
        )]);
        assert_eq!(
            describe(&compare(&before, &after)[0]),
            [
                r#"- column v: {"not_null":true}"#,
                r#"- column w: {"type":"text"}"#,
                r#"+ column v: {"not_null":false}"#,
                r#"+ column x: {"type":"text"}"#,
            ]
        );
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
