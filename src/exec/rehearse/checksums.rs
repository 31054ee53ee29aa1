//! Data checks of a rehearsal: per-table row counts and checksums before
//! and after each leg, cached by relfilenode so an unchanged table is not
//! read twice.

use std::collections::BTreeMap;

use serde_json::Value;

use super::*;
use crate::events::ErrorInfo;
use crate::model::Verdict;
use crate::pg::db::{self, Db};
use crate::snapshot::Snapshot;

/// Row count and content checksum of one table, over the columns it had
/// before the migration, and a checksum of each of those columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Sum {
    rows: Option<i64>,
    checksum: String,
    missing_columns: Vec<String>,
    /// Each column read, with the sum of its values' hashes: where two
    /// checksums differ, these say in which columns. Empty where the
    /// table was not read (no rows on disk, or gone).
    columns: Vec<(String, String)>,
}

impl Sum {
    /// Where the rows of `self` and `after`, the same number, differ
    /// ([`db::where_rows_changed`]).
    fn where_changed(&self, after: &Sum) -> String {
        db::where_rows_changed(&self.columns, &after.columns)
    }
}

/// What [`sums`] read.
#[derive(Default)]
struct Read {
    /// Per table; a table that is gone has `rows: None`.
    sums: BTreeMap<String, Sum>,
    /// Tables with a foreign table in their tree: not read, without a sum.
    remote: std::collections::BTreeSet<String>,
    /// Tables with partitions or inheritance children, whose count holds
    /// their rows too.
    parents: std::collections::BTreeSet<String>,
}

/// Counts and checksums of `tables` (as the snapshot names them, with the
/// columns they had), in one query.
async fn sums(db: &Db, tables: &[(String, Vec<String>)]) -> Result<Read, ErrorInfo> {
    let mut read = Read::default();
    let out = &mut read.sums;
    if tables.is_empty() {
        return Ok(read);
    }
    // Which of the tables and columns still exist, and the state of each
    // table's tree: itself, its partitions and its inheritance children,
    // all of which a count reads.
    // - `remote`: a foreign table is in it. A count would read it on its
    //   server, which a rehearsal must not reach (see `SumCache::foreign`),
    //   so the table is not read. Its local partitions and children are
    //   tables of their own, checked on their own.
    // - `empty`: every table in it is a plain table with no page on disk,
    //   or partitioned (no storage of its own). It holds no rows and is not
    //   read. Planning the count of a table opens it and its indexes (about
    //   0.16 ms each in a new session: 0.5 s for 3,000 tables), and of a
    //   partitioned table every partition's too (3–4 ms a count in
    //   hatchet's history, whose partitioned tables were counted after
    //   every leg); a size is a file's length.
    // - `rows`: it is counted.
    let names: Vec<String> = tables
        .iter()
        .map(|(t, _)| crate::pg::quote::literal(t))
        .collect();
    let names = format!("ARRAY[{}]", names.join(", "));
    // The trees are walked for all the tables at once, and only from the
    // tables that have (or had) children; the others are their own tree.
    // Walked for each table on its own (a LATERAL recursive query), the
    // query took 4 ms a call in hatchet's history, three times as long.
    let catalog = format!(
        "WITH RECURSIVE t AS MATERIALIZED (
                 SELECT t.name, c.oid, c.relhassubclass AS sub,
                        c.relkind = 'p' OR c.relkind = 'r' AND pg_relation_size(c.oid) = 0 AS empty
                 FROM unnest({names}::text[]) AS t(name)
                 JOIN pg_class c ON c.oid = to_regclass(t.name)
             ), tree(root, oid) AS (
                 SELECT oid, oid FROM t WHERE sub
                 UNION ALL
                 SELECT tree.root, i.inhrelid FROM tree JOIN pg_inherits i ON i.inhparent = tree.oid
             ), s AS (
                 SELECT tree.root,
                        bool_or(k.relkind = 'f') AS remote,
                        bool_and(k.relkind = 'p' OR k.relkind = 'r' AND pg_relation_size(k.oid) = 0) AS empty,
                        count(*) > 1 AS parent
                 FROM tree JOIN pg_class k ON k.oid = tree.oid
                 GROUP BY tree.root
             )
             SELECT t.name, a.attname,
                    CASE WHEN s.remote THEN 'remote' WHEN coalesce(s.empty, t.empty) THEN 'empty' ELSE 'rows' END,
                    coalesce(s.parent, false)::text
             FROM t LEFT JOIN s ON s.root = t.oid
             LEFT JOIN pg_attribute a
               ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped"
    );
    // As a role that may read them ([`as_session`]), each setting changed
    // and put back in the round trips of the two reads.
    let guard = as_session(&names);
    let (session, messages) = tokio::join!(
        db.client.batch_execute(&guard),
        db.client.simple_query(&catalog),
    );
    let error = |e: tokio_postgres::Error| db::error_info(&e, None);
    session.map_err(error)?;
    let messages = messages.map_err(error)?;
    let mut present: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut empty: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for m in &messages {
        // A table with no columns (`CREATE TABLE t ()`) is there all the
        // same, and may hold rows.
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m
            && let Some(table) = r.get(0)
        {
            let columns = present.entry(table.to_string()).or_default();
            if let Some(column) = r.get(1) {
                columns.push(column.to_string());
            }
            match r.get(2) {
                Some("empty") => {
                    empty.insert(table.to_string());
                }
                Some("remote") => {
                    read.remote.insert(table.to_string());
                }
                _ => {}
            }
            if r.get(3) == Some("true") {
                read.parents.insert(table.to_string());
            }
        }
    }
    let mut parts = Vec::new();
    let mut read_columns: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (t, cols) in tables.iter().filter(|(t, _)| !read.remote.contains(t)) {
        let Some(now) = present.get(t) else {
            out.insert(
                t.clone(),
                Sum {
                    rows: None,
                    checksum: String::new(),
                    missing_columns: Vec::new(),
                    columns: Vec::new(),
                },
            );
            continue;
        };
        let kept: Vec<&String> = cols.iter().filter(|c| now.contains(c)).collect();
        let missing: Vec<String> = cols.iter().filter(|c| !now.contains(c)).cloned().collect();
        let nothing = empty.contains(t);
        out.insert(
            t.clone(),
            Sum {
                rows: Some(0),
                checksum: if nothing {
                    db::EMPTY_CHECKSUM.to_string()
                } else {
                    String::new()
                },
                missing_columns: missing,
                columns: Vec::new(),
            },
        );
        if nothing {
            continue;
        }
        parts.push(checksum_query(t, &kept));
        read_columns.insert(t.clone(), kept.into_iter().cloned().collect::<Vec<_>>());
    }
    let (counts, before) = tokio::join!(
        db::table_counts(db, &parts),
        db.client.batch_execute(AS_BEFORE)
    );
    before.map_err(error)?;
    for c in counts.map_err(unreadable)? {
        if let Some(s) = out.get_mut(&c.table) {
            s.rows = Some(c.rows);
            s.checksum = c.checksum.unwrap_or_default();
            let names = read_columns.remove(&c.table).unwrap_or_default();
            let sums = c.more.unwrap_or_default();
            // No rows: each column's sum is NULL, which `concat_ws` leaves out.
            if c.rows > 0 {
                s.columns = names
                    .into_iter()
                    .zip(sums.split(',').map(str::to_string))
                    .collect();
            }
        }
    }
    Ok(read)
}

/// The count and checksums of one table's rows over `columns`, as one
/// SELECT of a UNION ALL: the table's name, its row count, the sum of each
/// row's hash (order-independent), and each column's sum of its values'
/// hashes, joined with commas. A row's hash is of its columns' hashes, so
/// each value is read and hashed once ([`db::value_hash_sql`]).
/// It costs less than the md5 of the whole row's text it replaces
/// (PostgreSQL 15, medians of 5 interleaved runs): 1.07 s against 1.50 s
/// for 1 million rows of 8 columns, 0.29 s against 0.85 s for 2 columns,
/// 0.69 s against 0.73 s for 300,000 rows of 20 columns.
fn checksum_query(table: &str, columns: &[&String]) -> String {
    let hashes: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} AS h{i}", db::value_hash_sql(c)))
        .collect();
    let names: Vec<String> = (0..columns.len()).map(|i| format!("h{i}")).collect();
    let (inner, row, each) = if columns.is_empty() {
        ("1 AS h".to_string(), "''".to_string(), "''".to_string())
    } else {
        (
            hashes.join(", "),
            format!("concat_ws(',', {})", names.join(", ")),
            format!(
                "concat_ws(',', {})",
                names
                    .iter()
                    .map(|h| format!("sum({h})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    };
    format!(
        "SELECT {name}, count(*), coalesce(sum(hashtextextended({row}, 0)), 0)::text, {each} \
         FROM (SELECT {inner} FROM {table} x) s",
        name = crate::pg::quote::literal(table),
    )
}

/// Before the data checks on `tables` (an SQL array of their names): the
/// session's role and `row_security` kept, and row-level security off. A
/// policy, or a table's `FORCE ROW LEVEL SECURITY` for its owner, hides
/// rows from a count without a word: a down that empties such a table read
/// as keeping its rows. With it off the server refuses instead, unless the
/// role may read past policies (a superuser, `BYPASSRLS`). The role a
/// script left (`SET ROLE`) stays when it may read every table; when it
/// may not (a script stepped down to a role with fewer rights), the
/// session's own role reads them (`SET ROLE NONE`). A script that
/// steps up to the tables' owner, from a login that does not inherit its
/// rights, keeps it. No `statement_timeout` either, as in pg_dump's
/// session: a role's, a common guard on managed databases, cancelled the
/// checksum of a large table that an instant `ADD COLUMN` touched and
/// failed the rehearsal. The step's timeout bounds the read instead (see
/// `bounded`); the scripts keep the runbook's.
fn as_session(tables: &str) -> String {
    format!(
        "SELECT set_config('runbook.role', current_setting('role'), false), \
         set_config('runbook.row_security', current_setting('row_security'), false), \
         set_config('runbook.statement_timeout', current_setting('statement_timeout'), false); \
         SELECT set_config('role', 'none', false) \
         WHERE EXISTS (SELECT 1 FROM unnest({tables}::text[]) AS t(name) \
         JOIN pg_class c ON c.oid = to_regclass(t.name) \
         WHERE NOT has_table_privilege(c.oid, 'SELECT')); \
         SET row_security = off; SET statement_timeout = 0"
    )
}

/// After them: the session's role, `row_security` and `statement_timeout`
/// put back, so that the next script runs as the last one left it, as
/// under its tool.
const AS_BEFORE: &str = "SELECT set_config('role', current_setting('runbook.role'), false), \
     set_config('row_security', current_setting('runbook.row_security'), false), \
     set_config('statement_timeout', current_setting('runbook.statement_timeout'), false)";

/// A table the role cannot read in full, named, with what to do.
fn unreadable(mut e: ErrorInfo) -> ErrorInfo {
    if e.sqlstate.as_deref() == Some("42501") {
        e.message = format!("the data checks cannot read a table: {}", e.message);
        e.hint = Some(
            "a rehearsal counts and checksums every row of the tables its migrations touch: \
             rehearse as a role that may read them all, past row-level security too \
             (a superuser, or one with BYPASSRLS)"
                .into(),
        );
    }
    e
}

/// What `after` lost of `before`: one line per table. More rows than
/// before is not a loss (a down may leave rows its up added elsewhere), and
/// an empty table has no data to lose. Where the schema shows columns of a
/// table whose contents changed dropped and added again (`re_added`, by
/// table), the line names them: a checksum says that rows differ, not
/// where.
fn lost(
    before: &BTreeMap<String, Sum>,
    after: &BTreeMap<String, Sum>,
    re_added: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (t, b) in before {
        let Some(a) = after.get(t) else { continue };
        match (b.rows, a.rows) {
            // An empty table loses no data (what its schema lost is parity's to say).
            (Some(0), _) => {}
            (Some(n), None) => out.push(format!("{t}: the table is gone, with its {n} row(s)")),
            (Some(rb), Some(ra)) => {
                let gone: Vec<&String> = a
                    .missing_columns
                    .iter()
                    .filter(|c| !b.missing_columns.contains(c))
                    .collect();
                if !gone.is_empty() {
                    out.push(format!(
                        "{t}: column(s) {} are gone, with their data",
                        gone.iter()
                            .map(|c| c.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                } else if ra < rb {
                    out.push(format!("{t}: {rb} rows before, {ra} after"));
                } else if ra == rb && b.checksum != a.checksum {
                    let why = re_added.get(t).map_or_else(
                        || b.where_changed(a),
                        |cols| {
                            format!(
                                " (column(s) {} were dropped and added again)",
                                cols.join(", ")
                            )
                        },
                    );
                    out.push(format!("{t}: {rb} rows, but their contents changed{why}"));
                }
            }
            _ => {}
        }
    }
    out
}

/// Each table of `before` whose rows in `after` are not the same: another
/// count (more rows too), or other contents. `first` and `second` name the
/// two states.
fn differences(
    before: &BTreeMap<String, Sum>,
    after: &BTreeMap<String, Sum>,
    first: &str,
    second: &str,
) -> Vec<String> {
    before
        .iter()
        .filter_map(|(t, b)| {
            let a = after.get(t)?;
            match (b.rows, a.rows) {
                (Some(rb), Some(ra)) if rb != ra => {
                    Some(format!("{t}: {rb} rows {first}, {ra} {second}"))
                }
                (Some(rb), Some(_)) if b.checksum != a.checksum => Some(format!(
                    "{t}: {rb} rows, but their contents changed{}",
                    b.where_changed(a)
                )),
                _ => None,
            }
        })
        .collect()
}

/// A repeatable migration run again: each table whose rows are not what
/// its first run left (more rows too: a script that adds rows each time it
/// runs adds them each time its file changes), as a `reup_failure` finding.
pub(super) fn changed_again(
    o: &mut Outcome,
    before: &BTreeMap<String, Sum>,
    after: &BTreeMap<String, Sum>,
) {
    tables_finding(
        o,
        Verdict::ReupFailure,
        "applied again, it changed data",
        differences(before, after, "after its first run", "after the second"),
    );
}

/// What the down before an up again left.
pub(super) enum Down {
    /// The schema, and every table that existed before with its rows, as
    /// they were before the up.
    Kept,
    /// Not quite: another schema, or more rows than before (fewer, or
    /// other contents, is a `lossy` down). What it left, for the finding:
    /// `the schema`, and each table with its rows before and after.
    Changed(Vec<String>),
    /// Not judged: in a whole set, some downs did not run.
    NotJudged,
}

impl Down {
    /// After a down whose schema parity held (`kept_schema`), the state
    /// of the tables before the up (`before`) and after the down.
    pub(super) fn of(
        kept_schema: bool,
        before: &BTreeMap<String, Sum>,
        after: &BTreeMap<String, Sum>,
    ) -> Down {
        let mut left = differences(before, after, "before the up", "after the down");
        if !kept_schema {
            left.insert(0, "the schema (see the parity finding)".into());
        }
        if left.is_empty() {
            Down::Kept
        } else {
            Down::Changed(left)
        }
    }
}

/// The up again (`what`), against the first up: each table that existed
/// before whose rows are not what the first up left. Never called after a
/// lossy down: that loss is the finding. After a down that brought
/// everything back ([`Down::Kept`]), the up started from the same state
/// twice and wrote other values: it is not deterministic (`now()`,
/// `random()`, a sequence's next value), which loses nothing, so it is
/// `nondeterministic`, not `lossy`. Otherwise what the down left may be
/// the cause (a seed row it kept, added again): a `reup_failure`.
pub(super) fn written_again(
    o: &mut Outcome,
    first: &BTreeMap<String, Sum>,
    again: &BTreeMap<String, Sum>,
    what: &str,
    down: Down,
) {
    let lines = differences(first, again, "after the first up", "after the up again");
    if lines.is_empty() {
        return;
    }
    let list = lines.join("; ");
    let differs =
        format!("{what} wrote other data than the first up in tables that existed before");
    let f = match down {
        Down::Kept => o.find(
            Verdict::Nondeterministic,
            format!(
                "{differs}: {list}. The down had brought back the schema and their rows, so the up \
                 writes other values each time it runs (now(), random(), a sequence's next value): \
                 nothing was lost, but a deploy after a rollback gives other rows than the first"
            ),
        ),
        Down::Changed(left) => o.find(
            Verdict::ReupFailure,
            format!(
                "{differs}: {list}. The down before it left other than before the up, which the up \
                 may have met: {}",
                left.join("; ")
            ),
        ),
        Down::NotJudged => o.find(Verdict::ReupFailure, format!("{differs}: {list}")),
    };
    f.tables = lines;
}

/// Row counts and checksums, kept while nothing can have changed them. A
/// table is counted again when a leg wrote to it (the transaction's own
/// statistics say so), when a leg ran outside a transaction, when its
/// definition was read again since it was counted, or when it is
/// partitioned or has inheritance children (rows live in them, and a leg
/// that writes them does not name it). Foreign tables, and
/// tables with one below them, are not read at all. A definition is read
/// again whenever the table's catalog rows change, and a rewrite or a
/// TRUNCATE gives the table a new relfilenode, which updates its pg_class
/// row: so the snapshot entry being the same shared one proves neither
/// happened. Without this, every leg would scan every table, and a
/// rehearsal of n migrations would cost n² table scans.
#[derive(Default)]
pub(super) struct SumCache {
    entries: BTreeMap<String, Cached>,
    /// Tables written by a leg since they were counted; `all` after a leg
    /// whose writes are unknown.
    dirty: std::collections::BTreeSet<String>,
    all_dirty: bool,
    /// Tables counted, and tables served from the cache, for the report.
    pub(super) counted: usize,
    pub(super) reused: usize,
    /// Foreign tables, and tables with one among their partitions or
    /// inheritance children, never read: their rows live on another
    /// server, which a rehearsal must not reach (a staging copy's servers
    /// may point at production) and which may not answer.
    pub(super) foreign: std::collections::BTreeSet<String>,
}

struct Cached {
    /// Whether the table has partitions or inheritance children: its
    /// count holds their rows, which a leg may write without naming it.
    parent: bool,
    columns: Vec<String>,
    /// The table's snapshot entry when it was counted.
    def: Option<std::sync::Arc<Value>>,
    sum: Sum,
}

impl SumCache {
    /// Drop every entry (they describe a database that is gone), keeping
    /// the counts for the report.
    pub(super) fn forget(&mut self) {
        *self = SumCache {
            counted: self.counted,
            reused: self.reused,
            foreign: std::mem::take(&mut self.foreign),
            ..SumCache::default()
        };
    }

    /// After a leg: what it wrote, if known.
    pub(super) fn wrote(&mut self, touched: Option<&[String]>) {
        match touched {
            Some(list) => self.dirty.extend(list.iter().cloned()),
            None => self.all_dirty = true,
        }
    }

    /// Counts and checksums of `tables` now; `now` is a snapshot of the
    /// current schema.
    pub(super) async fn get(
        &mut self,
        db: &Db,
        tables: &[(String, Vec<String>)],
        now: &Snapshot,
    ) -> Result<BTreeMap<String, Sum>, ErrorInfo> {
        let kind = |t: &str| {
            now.objects
                .get(format!("table {t}").as_str())
                .and_then(|d| d["kind"].as_str().map(str::to_string))
        };
        let (foreign, tables): (Vec<_>, Vec<_>) = tables
            .iter()
            .partition(|(t, _)| kind(t).as_deref() == Some("f"));
        self.foreign
            .extend(foreign.into_iter().map(|(t, _)| t.clone()));
        let need: Vec<(String, Vec<String>)> = tables
            .iter()
            .copied()
            .filter(|(t, cols)| {
                let def = now.objects.get(format!("table {t}").as_str());
                let plain = def.is_some_and(|d| d["kind"] == "r");
                match self.entries.get(t) {
                    Some(c) => {
                        self.all_dirty
                            || !plain
                            || c.parent
                            || self.dirty.contains(t)
                            || &c.columns != cols
                            || !same(c.def.as_ref(), def)
                    }
                    None => true,
                }
            })
            .cloned()
            .collect();
        let fresh = sums(db, &need).await?;
        self.counted += need.len() - fresh.remote.len();
        self.reused += tables.len() - need.len();
        for t in fresh.remote {
            self.entries.remove(&t);
            self.dirty.remove(&t);
            self.foreign.insert(t);
        }
        for (t, cols) in &need {
            if let Some(sum) = fresh.sums.get(t) {
                self.entries.insert(
                    t.clone(),
                    Cached {
                        parent: fresh.parents.contains(t),
                        columns: cols.clone(),
                        def: now.objects.get(format!("table {t}").as_str()).cloned(),
                        sum: sum.clone(),
                    },
                );
            }
            self.dirty.remove(t);
        }
        if self.all_dirty {
            // Every table asked for was counted; the others are dropped.
            self.entries.retain(|t, _| need.iter().any(|(n, _)| n == t));
            self.all_dirty = false;
            self.dirty.clear();
        }
        Ok(tables
            .iter()
            .filter_map(|(t, _)| self.entries.get(t).map(|c| (t.clone(), c.sum.clone())))
            .collect())
    }
}

/// Whether a table's entry is the very one it was counted with: not read
/// again since, so its catalog rows, relfilenode included, are unchanged.
fn same(a: Option<&std::sync::Arc<Value>>, b: Option<&std::sync::Arc<Value>>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if std::sync::Arc::ptr_eq(a, b))
}

/// A leg that left tables that existed before with less than they held
/// (what it removed, or what the up changed and it did not put back): a
/// `lossy` finding naming them. `what` is the leg (`the down`, `the
/// downs`). Returns whether it found one.
pub(super) fn data(
    o: &mut Outcome,
    before: &BTreeMap<String, Sum>,
    after: &BTreeMap<String, Sum>,
    re_added: &BTreeMap<String, Vec<String>>,
    what: &str,
) -> bool {
    let prefix = format!(
        "after {what}, data that existed before {} is not back",
        what.replace("down", "up")
    );
    tables_finding(o, Verdict::Lossy, &prefix, lost(before, after, re_added))
}

/// A finding that names tables (`lines`, each a table and what became of
/// its rows) after `prefix`, where there are any. Returns whether there
/// were.
fn tables_finding(o: &mut Outcome, verdict: Verdict, prefix: &str, lines: Vec<String>) -> bool {
    if lines.is_empty() {
        return false;
    }
    let f = o.find(verdict, format!("{prefix}: {}", lines.join("; ")));
    f.tables = lines;
    true
}

/// A down (`what`: `the down`, `the downs`) that left tables that existed
/// before holding more rows than before the up: rows the up added and the
/// down kept (a seed whose rollback is empty, or `ON CONFLICT DO NOTHING`,
/// so that the up again adds nothing and nothing else shows it). The
/// database is not back where it was: a `parity_mismatch` finding naming
/// the tables. Returns whether it found one.
pub(super) fn kept_rows(
    o: &mut Outcome,
    before: &BTreeMap<String, Sum>,
    after: &BTreeMap<String, Sum>,
    what: &str,
) -> bool {
    let lines: Vec<String> = before
        .iter()
        .filter_map(|(t, b)| match (b.rows, after.get(t)?.rows) {
            (Some(rb), Some(ra)) if ra > rb => {
                Some(format!("{t}: {rb} rows before the up, {ra} after {what}"))
            }
            _ => None,
        })
        .collect();
    let prefix = format!("after {what}, tables hold rows the up added and {what} left");
    tables_finding(o, Verdict::ParityMismatch, &prefix, lines)
}

/// A forward-only up that changed or removed rows that existed before it:
/// a `destroys_data` finding naming the tables, since no down can bring
/// them back. Not an error unless `errors` names it.
pub(super) fn destroyed(
    o: &mut Outcome,
    before: &BTreeMap<String, Sum>,
    after: &BTreeMap<String, Sum>,
    re_added: &BTreeMap<String, Vec<String>>,
) {
    tables_finding(
        o,
        Verdict::DestroysData,
        "its up changed data that existed before it, and the format has no down to bring it back",
        lost(before, after, re_added),
    );
}
