//! `backfill` steps: an UPDATE of a large table in keyset-paginated batches.
//!
//! Each batch is its own short transaction, one round trip of PL/pgSQL
//! (see [`batch_code`]): it takes the next `batch_size` keys after the
//! last one (or, with `batch_time`, as many as the batches before it
//! visited in that time: see [`Sizer`]), updates the rows among them that match
//! `where` with a plain UPDATE (its ROW_COUNT says how many), and writes
//! the checkpoint (the last key) to the state table before COMMIT, so the
//! batch and its checkpoint commit together or not at all. A re-run after
//! a failure, a kill or an interrupt continues after the last committed
//! key: every row is updated exactly once.
//!
//! Progress counts keys visited against the table's estimated rows
//! (`reltuples`, or an exact count), because that is what a batch advances.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_postgres::SimpleQueryMessage;

use super::fail::{failed, sql_failure};
use super::sql::log;
use super::{Attempt, Done, Fail, Run};
use crate::events::ErrorKind;
use crate::events::{Event, StepStatus, now};
use crate::pg::db::{self, QueryFail};
use crate::pg::quote::ident as quote_ident;
use crate::plan::{PlanBackfill, PlanStep};

/// How often progress events go out, at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// How often a throttled backfill looks again.
const THROTTLE_NAP: Duration = Duration::from_millis(500);

struct Table {
    oid: u32,
    /// `schema.name`, quoted.
    qualified: String,
    /// Quoted key columns with their types, in index order.
    key: Vec<(String, String)>,
    reltuples: i64,
    /// Whether the role may create temporary objects here (the batches
    /// then run as a temporary function).
    temp: bool,
}

struct Checkpoint {
    last_key: Option<Vec<String>>,
    rows_done: i64,
    rows_updated: i64,
    batches: i64,
}

/// How each batch of one run of the step is sent.
struct Batches<'a> {
    table: &'a Table,
    /// `BEGIN` and the step's session settings.
    prefix: &'a str,
    code: Code,
    dry_run: bool,
}

/// The batch's PL/pgSQL ([`batch_code`]), made into a function once per
/// run of the step in this session's temporary schema, or, where the role
/// may not create temporary objects, sent as a DO block with every batch
/// (compiled each time: about 0.4 ms more per batch).
enum Code {
    /// `pg_temp.runbook_backfill_<hash>`.
    Function(String),
    Block {
        declare: String,
        body: String,
    },
}

/// Why a batch stopped.
enum BatchFail {
    Query(QueryFail),
    /// The batch's reply did not say what it did. It ended (committed,
    /// unless this is a dry run) with its checkpoint, but this run cannot
    /// count it: the step stops rather than guess.
    Unsaid,
}

impl From<QueryFail> for BatchFail {
    fn from(f: QueryFail) -> Self {
        BatchFail::Query(f)
    }
}

/// One batch in one round trip: [`batch_code`] finds where the batch
/// ends, updates the rows in its range that match WHERE and writes the
/// checkpoint, all in one transaction; what it did is read back before
/// COMMIT (ROLLBACK in a dry run). None when no keys are left.
///
/// A batch used to take three round trips (its end; BEGIN and the UPDATE;
/// the checkpoint and COMMIT), each a wait for the network and for both
/// processes to be scheduled again.
async fn one_batch(
    r: &mut Run<'_>,
    x: &Batches<'_>,
    ck: &Checkpoint,
    size: u32,
    deadline: Option<Instant>,
) -> Result<Option<(Vec<String>, i64, i64)>, BatchFail> {
    let end = if x.dry_run { "ROLLBACK" } else { "COMMIT" };
    let args = batch_args(x.table, ck, size);
    let call = match &x.code {
        Code::Function(name) => format!("SELECT {name}({});", args.join(", ")),
        Code::Block { declare, body } => {
            let values: String = batch_inputs(x.table)
                .iter()
                .zip(&args)
                .map(|((var, _), v)| format!("    {var} := {v};\n"))
                .collect();
            let block = format!(
                "\nDECLARE\n{declare}BEGIN\n{values}{body}    PERFORM set_config('{DONE_SETTING}', said, true);\nEND\n"
            );
            let tag = crate::pg::quote::dollar_tag(&block);
            format!("DO {tag}{block}{tag};\nSELECT current_setting('{DONE_SETTING}', true);")
        }
    };
    let sql = format!("{}{call}\n{end};", x.prefix);
    let messages = match run_within(r, &sql, deadline).await {
        Ok(m) => m,
        Err(fail) => {
            r.db.rollback().await;
            return Err(fail.into());
        }
    };
    // The last row: the step's settings before it come back as a row too.
    let said = messages.into_iter().rev().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_string)),
        _ => None,
    });
    match said.flatten().as_deref().map(batch_said) {
        Some(Some(done)) => Ok(done),
        _ => Err(BatchFail::Unsaid),
    }
}

/// How many keys the next batch takes: `batch_size` every time, or, with
/// `batch_time`, the keys per second the batches so far visited (half the
/// last batch's, half the ones before) times `batch_time`, so one odd
/// batch (one that waited on a lock) about halves the size, and a run of
/// slow ones shrinks it fast. One batch moves the size at most 2x up (a
/// fast one grows it with care) or 4x down, and it stays between 1 and
/// the cap.
struct Sizer {
    size: u32,
    target: Option<Duration>,
    max: u32,
    /// Keys per second, smoothed.
    rate: Option<f64>,
}

impl Sizer {
    fn new(b: &PlanBackfill) -> Self {
        Sizer::with(b.batch_size, b.batch_time.map(|t| t.0), b.max_batch())
    }

    fn with(first: u32, target: Option<Duration>, max: u32) -> Self {
        Sizer {
            size: first.clamp(1, max),
            target,
            max,
            rate: None,
        }
    }

    /// After a batch that visited `seen` keys in `took`.
    fn after(&mut self, seen: i64, took: Duration) {
        let Some(target) = self.target else {
            return;
        };
        if seen <= 0 || took.is_zero() {
            return;
        }
        let now = seen as f64 / took.as_secs_f64();
        let rate = self.rate.map_or(now, |before| (before + now) / 2.0);
        self.rate = Some(rate);
        let current = f64::from(self.size);
        let next = (rate * target.as_secs_f64())
            .clamp(current / 4.0, current * 2.0)
            .clamp(1.0, f64::from(self.max));
        self.size = next.round() as u32;
    }
}

/// Run `sql` on the run's session, cancelled at the step's deadline.
async fn run_within(
    r: &Run<'_>,
    sql: &str,
    deadline: Option<Instant>,
) -> Result<Vec<SimpleQueryMessage>, QueryFail> {
    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    if left.is_some_and(|l| l.is_zero()) {
        return Err(QueryFail::Timeout);
    }
    r.db.run(sql, left, r.stop_signal()).await
}

/// A dry run ends after its first batch (rolled back): what it visited and
/// would update, and how long the whole backfill would take at that pace.
fn dry_run_result(
    r: &mut Run<'_>,
    (s, b): (&PlanStep, &PlanBackfill),
    table: &Table,
    (total, rows_done): (i64, i64),
    (seen, updated, elapsed): (i64, i64, Duration),
) -> Done {
    let batch_ms = elapsed.as_secs_f64() * 1000.0;
    let remaining = (total - rows_done).max(seen);
    // Batches sized by time would take about what this one visited in
    // `batch_time`; fixed ones take `batch_size` keys in this one's time.
    let (per_batch, ms_per_batch) = match b.batch_time {
        Some(t) if seen > 0 && batch_ms > 0.0 => {
            let keys = (seen as f64 * t.0.as_secs_f64() * 1000.0 / batch_ms)
                .clamp(1.0, f64::from(b.max_batch()));
            (keys, keys * batch_ms / seen as f64)
        }
        _ => (f64::from(b.batch_size), batch_ms),
    };
    let batches = (remaining as f64 / per_batch).ceil();
    let pause_ms = b.pause.map_or(0.0, |p| p.0.as_secs_f64() * 1000.0);
    let projected = batches * (ms_per_batch + pause_ms);
    log(
        r,
        &s.id,
        format!(
            "dry run: one batch visited {seen} rows and would update {updated} in {batch_ms:.1} ms (rolled back); about {batches} batches remain, projected {}",
            crate::duration::Duration(Duration::from_millis(projected as u64))
        ),
    );
    let mut done = Done {
        rows_affected: Some(0),
        details: Some(json!({
            "dry_run": true,
            "table": table.qualified,
            "batch_rows": seen,
            "batch_would_update": updated,
            "batch_ms": round(batch_ms),
            "total_estimate": total,
            "remaining_batches": batches as u64,
            "projected_ms": projected as u64,
        })),
        ..Done::default()
    };
    done.output
        .insert("projected_ms".into(), Value::from(projected as u64));
    done.output.insert("rows_updated".into(), Value::from(0));
    done
}

/// A backfill step: resolve the table and the checkpoint to resume from,
/// then run batches until one comes back short.
pub(crate) async fn run(
    r: &mut Run<'_>,
    s: &PlanStep,
    b: &PlanBackfill,
    timeout: Option<Duration>,
) -> Attempt {
    let started = Instant::now();
    let deadline = timeout.map(|t| started + t);
    // Nothing is written before the table is resolved: a failure up to
    // here changed nothing.
    let job = prepare(r, s, b).await.map_err(Fail::unchanged)?;
    let mut tally = Tally::start(r, s, b, &job).await?;
    let result = batches(r, s, b, &job, &mut tally, deadline, timeout).await;
    // A retry reports the step as a whole: its rows and batches include
    // the batches this attempt (or one before it) committed.
    if result.is_err() && !b.dry_run && !tally.times.is_empty() {
        r.backfill_resume = Some((s.id.clone(), Box::new(tally)));
    }
    result
}

/// The batches of one attempt, until one comes back short.
async fn batches(
    r: &mut Run<'_>,
    s: &PlanStep,
    b: &PlanBackfill,
    job: &Job,
    tally: &mut Tally,
    deadline: Option<Instant>,
    timeout: Option<Duration>,
) -> Attempt {
    let mut last_progress: Option<(Instant, i64)> = None;
    let mut sizer = Sizer::new(b);
    let batches = Batches {
        table: &job.table,
        prefix: &job.prefix,
        code: batch_sender(r, s, b, job).await.map_err(Fail::unchanged)?,
        dry_run: b.dry_run,
    };
    // A failure before this run committed a batch changed nothing: each
    // batch is one transaction, rolled back when it fails.
    let nothing_yet = |f: Fail, tally: &Tally| {
        if tally.times.is_empty() {
            f.unchanged()
        } else {
            f
        }
    };
    loop {
        tally.throttled += throttle(r, &s.id, b, deadline, timeout)
            .await
            .map_err(|f| nothing_yet(f, tally))?;
        let t0 = Instant::now();
        let size = sizer.size;
        let (upto, seen, updated) = match one_batch(r, &batches, &tally.ck, size, deadline).await {
            Ok(Some(done)) => done,
            Ok(None) => break,
            Err(fail) => {
                // A batch that ran but went uncounted may have changed rows.
                let ran = matches!(fail, BatchFail::Unsaid);
                let mut f = to_fail(fail, tally.ck.batches + 1, timeout);
                f.partial.rows_affected = (!ran).then_some(tally.updated_now as u64);
                f.partial.details = Some(tally.summary(b).0);
                return Err(if ran { f } else { nothing_yet(f, tally) });
            }
        };
        let elapsed = t0.elapsed();
        tally.times.push(elapsed.as_secs_f64() * 1000.0);
        tally.batch_keys = Some(
            tally
                .batch_keys
                .map_or((seen, seen), |(lo, hi)| (lo.min(seen), hi.max(seen))),
        );
        tally.seen_now += seen;
        tally.updated_now += updated;
        tally.curve.push((
            super::ms(tally.started.elapsed()),
            u64::try_from(tally.updated_now).unwrap_or(0),
        ));
        if b.dry_run {
            return Ok(dry_run_result(
                r,
                (s, b),
                &job.table,
                (tally.total, tally.ck.rows_done),
                (seen, updated, elapsed),
            ));
        }
        let ck = &mut tally.ck;
        ck.rows_done += seen;
        ck.rows_updated += updated;
        ck.batches += 1;
        ck.last_key = Some(upto);

        let finished_batch = seen < i64::from(size);
        if finished_batch || last_progress.is_none_or(|(t, _)| t.elapsed() >= PROGRESS_EVERY) {
            last_progress = Some((Instant::now(), tally.ck.rows_done));
            tally.progress(r, &s.id);
        }
        if finished_batch {
            break;
        }
        // A rollback trigger stops the backfill between two batches; the
        // committed ones stay, with their checkpoint.
        if let Some(mut f) = r.tripped(&s.id, true).await {
            f.partial.rows_affected = Some(tally.updated_now as u64);
            f.partial.details = Some(tally.summary(b).0);
            return Err(f);
        }
        sizer.after(seen, elapsed);
        pace(r, b, tally.updated_now, tally.started, deadline, timeout).await?;
    }

    if !b.dry_run {
        mark_finished(r, &job.state, &job.runbook, &s.id).await?;
    }
    if last_progress.is_none_or(|(_, done)| done != tally.ck.rows_done) {
        tally.progress(r, &s.id);
    }
    let (details, output) = tally.summary(b);
    let mut done = Done {
        rows_affected: Some(tally.updated_now as u64),
        details: Some(details),
        output,
        ..Done::default()
    };
    done.output
        .insert("rows_affected".into(), Value::from(tally.updated_now));
    Ok(done)
}

/// What every batch of one backfill is built from, known before the first.
struct Job {
    table: Table,
    set: String,
    where_: Option<String>,
    /// BEGIN and the step's settings, before each batch.
    prefix: String,
    /// The state table, quoted.
    state: String,
    runbook: String,
    fingerprint: String,
}

/// Render the step's texts and resolve its table and key; nothing is
/// written yet.
async fn prepare(r: &mut Run<'_>, s: &PlanStep, b: &PlanBackfill) -> Result<Job, Fail> {
    let render = |t| {
        r.render(t)
            .map(|(raw, _)| raw)
            .map_err(|e| Fail::new(StepStatus::Failed, e))
    };
    let table_name = render(&b.table)?;
    let set = render(&b.set)?;
    let where_ = b.where_.as_ref().map(render).transpose()?;
    let table = resolve(r, &table_name, &b.key).await?;
    let settings = s.settings.as_ref().unwrap_or(&r.plan.settings);
    // Row-level security off: an UPDATE through a policy skips the rows it
    // hides, and the backfill would report done with rows never touched.
    // Where a policy applies to this role, the first batch fails instead.
    let prefix = match db::settings_sql(settings, true) {
        Some(s) => format!("BEGIN;\nSET LOCAL row_security = off;\n{s}\n"),
        None => "BEGIN;\nSET LOCAL row_security = off;\n".into(),
    };
    Ok(Job {
        fingerprint: fingerprint(&table, &set, where_.as_deref()),
        state: state_table(&b.state_table)?,
        runbook: r.plan.runbook.name.clone(),
        table,
        set,
        where_,
        prefix,
    })
}

/// What this run of a backfill has done so far, over all its attempts, for
/// its progress events and its report; `ck` counts every run's work, the
/// rest only this one's.
pub(crate) struct Tally {
    ck: Checkpoint,
    seen_now: i64,
    updated_now: i64,
    /// Each batch's time, in ms.
    times: Vec<f64>,
    /// The fewest and the most keys a batch visited.
    batch_keys: Option<(i64, i64)>,
    /// After each batch: (ms since this run's start, rows updated so far),
    /// for the report's progress chart.
    curve: Vec<(u64, u64)>,
    throttled: Duration,
    started: Instant,
    resumed: bool,
    resumed_from: Option<Vec<String>>,
    total: i64,
}

impl Tally {
    /// The checkpoint an earlier run left (read, and logged, unless this
    /// is a dry run), and the rows to expect.
    async fn start(
        r: &mut Run<'_>,
        s: &PlanStep,
        b: &PlanBackfill,
        job: &Job,
    ) -> Result<Tally, Fail> {
        let mut ck = Checkpoint {
            last_key: None,
            rows_done: 0,
            rows_updated: 0,
            batches: 0,
        };
        let mut resumed = false;
        if !b.dry_run {
            ensure_state_table(r, &job.state).await?;
            if let Some(prior) =
                load_checkpoint(r, &job.state, &job.runbook, &s.id, &job.fingerprint).await?
            {
                resumed = prior.last_key.is_some();
                ck = prior;
            }
        }
        let total = if b.exact_count || job.table.reltuples < 0 {
            count(r, &job.table).await?
        } else {
            job.table.reltuples
        };
        // A retry: the step's earlier attempts in this run, and the
        // checkpoint they left.
        if let Some((_, mut before)) = r.backfill_resume.take_if(|(id, _)| *id == s.id) {
            log(
                r,
                &s.id,
                format!(
                    "going on after key ({}): {} rows updated in {} batches before the retry",
                    ck.last_key.as_deref().unwrap_or_default().join(", "),
                    before.updated_now,
                    before.times.len()
                ),
            );
            before.ck = ck;
            before.total = total;
            return Ok(*before);
        }
        if resumed {
            log(
                r,
                &s.id,
                format!(
                    "resuming after key ({}) from an earlier run: {} rows visited, {} updated, {} batches",
                    ck.last_key.as_deref().unwrap_or_default().join(", "),
                    ck.rows_done,
                    ck.rows_updated,
                    ck.batches
                ),
            );
        }
        Ok(Tally {
            resumed_from: ck.last_key.clone(),
            ck,
            seen_now: 0,
            updated_now: 0,
            times: Vec::new(),
            batch_keys: None,
            curve: Vec::new(),
            throttled: Duration::ZERO,
            started: Instant::now(),
            resumed,
            total,
        })
    }

    fn progress(&self, r: &mut Run<'_>, step: &str) {
        progress(
            r,
            step,
            &self.ck,
            self.total,
            self.seen_now,
            self.started,
            None,
        );
    }

    /// The step's details and outputs: this run's batches and rates (and
    /// rows over time, thinned to [`PROGRESS_POINTS`]), and
    /// every run's totals.
    fn summary(&self, b: &PlanBackfill) -> (Value, serde_json::Map<String, Value>) {
        let mut sorted = self.times.clone();
        sorted.sort_by(f64::total_cmp);
        let secs = self.started.elapsed().as_secs_f64();
        let batch_ms = json!({
            "p50": round(percentile(&sorted, 50.0)),
            "p99": round(percentile(&sorted, 99.0)),
            "max": round(sorted.last().copied().unwrap_or(0.0)),
        });
        let rate = if secs > 0.0 {
            round(self.updated_now as f64 / secs)
        } else {
            0.0
        };
        let (fewest, most) = self.batch_keys.unwrap_or((0, 0));
        let mut details = json!({
            "rows_updated": self.updated_now,
            "rows_visited": self.seen_now,
            "batches": self.times.len(),
            "batch_size": b.batch_size,
            "batch_keys": {
                "min": fewest,
                "max": most,
            },
            "batch_ms": batch_ms,
            "rows_per_second": rate,
            "throttled_ms": super::ms(self.throttled),
            "resumed": self.resumed,
            "resumed_after_key": self.resumed_from,
            "total_estimate": self.total,
            "all_runs": {
                "rows_visited": self.ck.rows_done,
                "rows_updated": self.ck.rows_updated,
                "batches": self.ck.batches,
            },
            "progress": thin(&self.curve, PROGRESS_POINTS),
        });
        if let Some(t) = b.batch_time {
            details["batch_time_ms"] = Value::from(super::ms(t.0));
            details["max_batch_size"] = Value::from(b.max_batch());
        }
        let mut out = serde_json::Map::new();
        for k in [
            "rows_updated",
            "batches",
            "batch_ms",
            "rows_per_second",
            "resumed",
        ] {
            out.insert(k.into(), details[k].clone());
        }
        (details, out)
    }
}

/// The table, and the key to page by: the primary key, or `key` when it is
/// the column list of a unique, non-partial index over NOT NULL columns
/// (anything less could skip rows or visit them twice).
async fn resolve(r: &Run<'_>, name: &str, key: &[String]) -> Result<Table, Fail> {
    let row = r
        .db
        .client
        .query_opt(
            "SELECT c.oid, format('%I.%I', n.nspname, c.relname), c.reltuples::bigint, c.relkind::text,
                    (SELECT has_language_privilege(l.oid, 'USAGE') FROM pg_language l WHERE l.lanname = 'plpgsql'),
                    has_database_privilege(current_database(), 'TEMP')
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.oid = to_regclass($1)",
            &[&name],
        )
        .await
        .map_err(|e| sql_failure("looking up the table", &db::error_info(&e, None)))?;
    let Some(row) = row else {
        return Err(failed(
            ErrorKind::Backfill,
            format!("table `{name}` does not exist"),
            Some("check `table:` (schema-qualify it if it is not on the search_path)".into()),
        ));
    };
    let kind: String = row.get(3);
    if kind != "r" && kind != "p" {
        return Err(failed(
            ErrorKind::Backfill,
            format!("`{name}` is not a table"),
            Some("a backfill updates a table or a partitioned table".into()),
        ));
    }
    // Each batch runs in PL/pgSQL.
    let plpgsql: Option<bool> = row.get(4);
    if plpgsql != Some(true) {
        return Err(failed(
            ErrorKind::Backfill,
            match plpgsql {
                None => {
                    "a backfill runs its batches in PL/pgSQL, and this database does not have it"
                        .into()
                }
                Some(_) => {
                    "a backfill runs its batches in PL/pgSQL, and this role may not use it".into()
                }
            },
            Some(match plpgsql {
                None => {
                    "`CREATE EXTENSION plpgsql` in this database (it is there by default)".into()
                }
                Some(_) => {
                    "`GRANT USAGE ON LANGUAGE plpgsql TO` this role (PUBLIC has it by default)"
                        .into()
                }
            }),
        ));
    }
    let oid: u32 = row.get(0);
    let qualified: String = row.get(1);
    // Every unique, non-partial, plain-column index, primary key first.
    let rows =
        r.db.client
            .query(
                "SELECT i.indisprimary,
                    array_agg(a.attname::text ORDER BY k.ord),
                    array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.ord),
                    bool_and(a.attnotnull)
               FROM pg_index i
               CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indpred IS NULL
                AND i.indexprs IS NULL AND k.ord <= i.indnkeyatts
              GROUP BY i.indexrelid, i.indisprimary
              ORDER BY i.indisprimary DESC",
                &[&oid],
            )
            .await
            .map_err(|e| sql_failure("looking up the table's keys", &db::error_info(&e, None)))?;
    let candidates: Vec<(bool, Vec<String>, Vec<String>, bool)> = rows
        .iter()
        .map(|x| (x.get(0), x.get(1), x.get(2), x.get(3)))
        .collect();
    let chosen = if key.is_empty() {
        candidates.iter().find(|c| c.0)
    } else {
        candidates
            .iter()
            .find(|c| c.3 && c.1.len() == key.len() && key.iter().all(|k| c.1.contains(k)))
    };
    let Some((_, cols, types, _)) = chosen else {
        return Err(if key.is_empty() {
            failed(
                ErrorKind::Backfill,
                format!("{qualified} has no primary key to page by"),
                Some("name a unique NOT NULL column set with `key: [...]`".into()),
            )
        } else {
            failed(
                ErrorKind::Backfill,
                format!(
                    "`key: [{}]` is not the column list of a unique index over NOT NULL columns of {qualified}",
                    key.join(", ")
                ),
                Some("paging by anything less could skip rows or visit them twice; use the primary key or a unique NOT NULL index".into()),
            )
        });
    };
    // Page in the order of `key` as written, or the index's own order.
    let order: Vec<String> = if key.is_empty() {
        cols.clone()
    } else {
        key.to_vec()
    };
    let key = order
        .iter()
        .map(|c| {
            let i = cols.iter().position(|x| x == c).unwrap_or(0);
            (quote_ident(c), types[i].clone())
        })
        .collect();
    Ok(Table {
        oid,
        qualified,
        key,
        reltuples: row.get(2),
        temp: row.get(5),
    })
}

/// `public.runbook_backfill_state` as a quoted name; refused if it is not
/// one or two plain identifiers.
fn state_table(name: &str) -> Result<String, Fail> {
    let parts: Vec<&str> = name.split('.').collect();
    let ok = (1..=2).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
    if !ok {
        return Err(failed(
            ErrorKind::Backfill,
            format!("`state_table: {name}` is not a table name"),
            Some("use lowercase `schema.table`, such as public.runbook_backfill_state".into()),
        ));
    }
    Ok(parts
        .iter()
        .map(|p| quote_ident(p))
        .collect::<Vec<_>>()
        .join("."))
}

/// What a checkpoint is valid for: the same table (by oid), key, SET and
/// WHERE. A changed backfill starts over instead of resuming someone else's.
fn fingerprint(t: &Table, set: &str, where_: Option<&str>) -> String {
    let key: Vec<&str> = t.key.iter().map(|(c, _)| c.as_str()).collect();
    let text = format!(
        "{}\0{}\0{}\0{set}\0{}",
        t.oid,
        t.qualified,
        key.join(","),
        where_.unwrap_or("")
    );
    crate::hash::sha256_hex(text.as_bytes())
}

async fn ensure_state_table(r: &Run<'_>, state: &str) -> Result<(), Fail> {
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {state} (
            runbook text NOT NULL,
            step text NOT NULL,
            fingerprint text NOT NULL,
            last_key text[],
            rows_done bigint NOT NULL DEFAULT 0,
            rows_updated bigint NOT NULL DEFAULT 0,
            batches bigint NOT NULL DEFAULT 0,
            run_id text NOT NULL,
            started_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz,
            PRIMARY KEY (runbook, step)
        );
        COMMENT ON TABLE {state} IS '{comment} backfill checkpoints'",
        comment = crate::snapshot::STATE_COMMENT
    );
    // Created (and marked, so schema snapshots leave it out) only when
    // missing: commenting needs ownership of a table someone else made.
    let present =
        r.db.client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&state])
            .await
            .map(|row| row.get::<_, bool>(0))
            .unwrap_or(false);
    if present {
        return Ok(());
    }
    r.db.client.batch_execute(&sql).await.map_err(|e| {
        let info = db::error_info(&e, None);
        let mut f = sql_failure(&format!("creating the backfill state table {state}"), &info);
        f.error.hint = Some(
            "runbook keeps backfill checkpoints in the target database; grant CREATE on the schema, or set `state_table` to a schema you can write".into(),
        );
        f
    })
}

/// The unfinished checkpoint of this step with the same fingerprint, if any.
async fn load_checkpoint(
    r: &mut Run<'_>,
    state: &str,
    runbook: &str,
    step: &str,
    fingerprint: &str,
) -> Result<Option<Checkpoint>, Fail> {
    let row = r
        .db
        .client
        .query_opt(
            &format!(
                "SELECT fingerprint, last_key, rows_done, rows_updated, batches, finished_at IS NOT NULL
                   FROM {state} WHERE runbook = $1 AND step = $2"
            ),
            &[&runbook, &step],
        )
        .await
        .map_err(|e| sql_failure("reading the backfill checkpoint", &db::error_info(&e, None)))?;
    let Some(row) = row else { return Ok(None) };
    let (fp, finished): (String, bool) = (row.get(0), row.get(5));
    if finished {
        return Ok(None);
    }
    if fp != fingerprint {
        log(
            r,
            step,
            "an unfinished checkpoint exists for a different backfill (table, key, SET or WHERE changed); starting from the beginning".into(),
        );
        return Ok(None);
    }
    Ok(Some(Checkpoint {
        last_key: row.get(1),
        rows_done: row.get(2),
        rows_updated: row.get(3),
        batches: row.get(4),
    }))
}

async fn count(r: &Run<'_>, t: &Table) -> Result<i64, Fail> {
    r.db.client
        .query_one(&format!("SELECT count(*) FROM {}", t.qualified), &[])
        .await
        .map(|row| row.get(0))
        .map_err(|e| sql_failure("counting the table", &db::error_info(&e, None)))
}

/// What a batch writes besides the update: its checkpoint, in the same
/// transaction, so both commit together. Not written in a dry run.
struct Write<'a> {
    state: &'a str,
    runbook: &'a str,
    step: &'a str,
    fingerprint: &'a str,
    run_id: &'a str,
}

fn key_list(t: &Table) -> String {
    each_key(t, str::to_string)
}

/// The key's columns, each written by `column`, comma-separated.
fn each_key(t: &Table, column: impl Fn(&str) -> String) -> String {
    t.key
        .iter()
        .map(|(c, _)| column(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The transaction-local setting a batch sent as a DO block leaves what
/// it did in.
const DONE_SETTING: &str = "runbook.backfill_batch";

/// `$from, $from+1, ...`: `n` query parameters.
fn params(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A batch's queries, after the key in `$1..$n` or (`after` false) from
/// the start of the table: where the batch ends (the key `$next - 1`
/// keys on), the rest of the table when fewer keys are left (how many,
/// and the last), and the UPDATE up to the batch's end (`$next..`).
///
/// The key is read outside the subquery that skips to it: the select list
/// of a query with OFFSET is computed for every row it skips.
fn batch_queries(t: &Table, set: &str, where_: Option<&str>, after: bool) -> [String; 3] {
    let n = t.key.len();
    let keys = key_list(t);
    let (filter, lower, next) = if after {
        let a = params(1, n);
        (
            format!(" WHERE ({keys}) > ({a})"),
            format!("({keys}) > ({a}) AND "),
            n + 1,
        )
    } else {
        (String::new(), String::new(), 1)
    };
    let table = &t.qualified;
    let skip_to = format!(
        "SELECT {k} FROM (SELECT {keys} FROM {table}{filter} ORDER BY {keys} LIMIT 1 OFFSET ${next}) AS k",
        k = each_key(t, |c| format!("k.{c}")),
    );
    let rest = format!(
        "SELECT r.n, {l} FROM (SELECT count(*) AS n FROM (SELECT 1 FROM {table}{filter} LIMIT ${next}) AS rest) AS r
           LEFT JOIN (SELECT {keys} FROM {table}{filter} ORDER BY {desc} LIMIT 1) AS l ON true",
        l = each_key(t, |c| format!("l.{c}")),
        desc = each_key(t, |c| format!("{c} DESC")),
    );
    let filter = where_.map_or(String::new(), |w| format!(" AND ({w})"));
    let update = format!(
        "UPDATE {table} SET {set}\nWHERE {lower}({keys}) <= ({upto}){filter}",
        upto = params(next, n),
    );
    [skip_to, rest, update]
}

/// One batch in PL/pgSQL, in the step's transaction: its declarations and
/// its body. It reads the last key `a1..an` (NULL before the first batch),
/// `size`, and the checkpoint so far (`done`, `upd`, `batches`):
/// - where the batch ends: the `size`-th key after the last one, read
///   from the key's index; at the end of the table, the last key and how
///   many remain;
/// - the UPDATE of the rows in that range that match WHERE, its count from
///   `ROW_COUNT`;
/// - the checkpoint, unless this is a dry run;
/// - what it did, in `said`: empty when no keys were left, else
///   `seen updated {last,key}`.
///
/// Every statement that names a table runs with EXECUTE, so it is planned
/// with this batch's values, as a literal query would be, and no column
/// can be mistaken for one of the block's variables.
fn batch_code(
    t: &Table,
    set: &str,
    where_: Option<&str>,
    write: Option<&Write<'_>>,
) -> (String, String) {
    let lit = |q: &str| crate::pg::quote::literal(q);
    let n = t.key.len();
    let name = |v: &str| {
        (1..=n)
            .map(|i| format!("{v}{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (k, a) = (name("k"), name("a"));
    let declare: String = t
        .key
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| format!("    k{} {ty};\n", i + 1))
        .chain(
            ["seen bigint", "updated bigint", "upto text[]", "said text"]
                .iter()
                .map(|v| format!("    {v};\n")),
        )
        .collect();
    let [skip0, rest0, update0] = batch_queries(t, set, where_, false);
    let [skip1, rest1, update1] = batch_queries(t, set, where_, true);
    let upto = (1..=n)
        .map(|i| format!("k{i}::text"))
        .collect::<Vec<_>>()
        .join(", ");
    let checkpoint = write.map_or(String::new(), |w| {
        format!(
            "        EXECUTE {} USING seen, updated, upto, done, upd, batches;\n",
            lit(&checkpoint_sql(w))
        )
    });
    let body = format!(
        "    seen := size;
    IF a1 IS NULL THEN
        EXECUTE {skip0} INTO {k} USING size - 1;
    ELSE
        EXECUTE {skip1} INTO {k} USING {a}, size - 1;
    END IF;
    IF k1 IS NULL THEN
        IF a1 IS NULL THEN
            EXECUTE {rest0} INTO seen, {k} USING size;
        ELSE
            EXECUTE {rest1} INTO seen, {k} USING {a}, size;
        END IF;
    END IF;
    IF seen = 0 THEN
        said := '';
    ELSE
        IF a1 IS NULL THEN
            EXECUTE {update0} USING {k};
        ELSE
            EXECUTE {update1} USING {a}, {k};
        END IF;
        GET DIAGNOSTICS updated = ROW_COUNT;
        upto := ARRAY[{upto}];
{checkpoint}        said := seen || ' ' || updated || ' ' || upto::text;
    END IF;
",
        skip0 = lit(&skip0),
        skip1 = lit(&skip1),
        rest0 = lit(&rest0),
        rest1 = lit(&rest1),
        update0 = lit(&update0),
        update1 = lit(&update1),
    );
    (declare, body)
}

/// What [`batch_code`] reads, with its types: the last key (`a1..an`),
/// `size`, and the checkpoint so far.
fn batch_inputs(t: &Table) -> Vec<(String, &str)> {
    let mut out: Vec<(String, &str)> = t
        .key
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| (format!("a{}", i + 1), ty.as_str()))
        .collect();
    for (name, ty) in [
        ("size", "int"),
        ("done", "bigint"),
        ("upd", "bigint"),
        ("batches", "bigint"),
    ] {
        out.push((name.into(), ty));
    }
    out
}

/// The values of [`batch_inputs`] for the next batch: the last key
/// (typed literals, or NULL before the first batch), `size`, and the
/// checkpoint so far.
fn batch_args(t: &Table, ck: &Checkpoint, size: u32) -> Vec<String> {
    let mut out: Vec<String> = t
        .key
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| {
            let v = ck.last_key.as_ref().and_then(|k| k.get(i));
            let value = v.map_or("NULL".into(), |v| crate::pg::quote::literal(v));
            format!("{value}::{ty}")
        })
        .collect();
    out.extend([i64::from(size), ck.rows_done, ck.rows_updated, ck.batches].map(|v| v.to_string()));
    out
}

/// How this run of the step sends its batches: a temporary function where
/// the role may create one (made here), else a DO block.
async fn batch_sender(
    r: &Run<'_>,
    s: &PlanStep,
    b: &PlanBackfill,
    job: &Job,
) -> Result<Code, Fail> {
    let write = (!b.dry_run).then(|| Write {
        state: &job.state,
        runbook: &job.runbook,
        step: &s.id,
        fingerprint: &job.fingerprint,
        run_id: &r.run_id,
    });
    let t = &job.table;
    let (mut declare, body) = batch_code(t, &job.set, job.where_.as_deref(), write.as_ref());
    let inputs = batch_inputs(t);
    if !t.temp {
        for (name, ty) in &inputs {
            declare.push_str(&format!("    {name} {ty};\n"));
        }
        return Ok(Code::Block { declare, body });
    }
    let args: Vec<String> = inputs.iter().map(|(n, ty)| format!("{n} {ty}")).collect();
    let code = format!("\nDECLARE\n{declare}BEGIN\n{body}    RETURN said;\nEND\n");
    let tag = crate::pg::quote::dollar_tag(&code);
    let signature = format!("({}) RETURNS text", args.join(", "));
    let hash = crate::hash::sha256_hex(format!("{signature}{code}").as_bytes());
    let name = format!("pg_temp.runbook_backfill_{}", &hash[..16]);
    let create = format!(
        "CREATE OR REPLACE FUNCTION {name}{signature} LANGUAGE plpgsql AS {tag}{code}{tag}"
    );
    r.db.client.batch_execute(&create).await.map_err(|e| {
        sql_failure(
            "making the backfill's batch function",
            &db::error_info(&e, None),
        )
    })?;
    Ok(Code::Function(name))
}

/// What a batch said it did: the keys it visited, the rows it updated and
/// the last key, or None when no keys were left.
fn batch_said(said: &str) -> Option<Option<(Vec<String>, i64, i64)>> {
    if said.is_empty() {
        return Some(None);
    }
    let mut parts = said.splitn(3, ' ');
    let seen = parts.next()?.parse().ok()?;
    let updated = parts.next()?.parse().ok()?;
    let upto = parse_text_array(parts.next()?);
    Some(Some((upto, seen, updated)))
}

/// The checkpoint after a batch, written in the batch's transaction: $1
/// keys visited, $2 rows updated, $3 the last key as text, then the
/// checkpoint before it: $4 keys visited, $5 rows updated, $6 batches.
fn checkpoint_sql(w: &Write<'_>) -> String {
    format!(
        "INSERT INTO {state} (runbook, step, fingerprint, last_key, rows_done, rows_updated, batches, run_id)
VALUES ({rb}, {st}, {fp}, $3, $4 + $1, $5 + $2, $6 + 1, {run})
ON CONFLICT (runbook, step) DO UPDATE SET
    fingerprint = EXCLUDED.fingerprint, last_key = EXCLUDED.last_key,
    rows_done = EXCLUDED.rows_done, rows_updated = EXCLUDED.rows_updated,
    batches = EXCLUDED.batches, run_id = EXCLUDED.run_id,
    updated_at = now(), finished_at = NULL",
        state = w.state,
        rb = crate::pg::quote::literal(w.runbook),
        st = crate::pg::quote::literal(w.step),
        fp = crate::pg::quote::literal(w.fingerprint),
        run = crate::pg::quote::literal(w.run_id),
    )
}

fn to_fail(fail: BatchFail, batch: i64, timeout: Option<Duration>) -> Fail {
    let fail = match fail {
        BatchFail::Query(q) => q,
        BatchFail::Unsaid => {
            return failed(
                ErrorKind::Internal,
                format!(
                    "batch {batch} of the backfill ended, but the server's reply did not say what it did"
                ),
                Some(
                    "its checkpoint committed with it: run the step again to continue after it"
                        .into(),
                ),
            );
        }
    };
    match fail {
        QueryFail::Db(e) => {
            let info = db::error_info(&e, None);
            let mut f = sql_failure(&format!("batch {batch} of the backfill failed"), &info);
            f.retry_class = db::classify(&e);
            f
        }
        QueryFail::Timeout => Fail::new(StepStatus::TimedOut, super::timeout_error(timeout)),
        QueryFail::Interrupted => Fail::new(StepStatus::Cancelled, super::cancelled_error()),
    }
}

/// PostgreSQL's text form of a `text[]`: `{1,"a b","x\"y",NULL}`.
fn parse_text_array(s: &str) -> Vec<String> {
    let inner = s
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(s);
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = inner.chars();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ',' if !quoted => {
                out.push(std::mem::take(&mut cur));
                was_quoted = false;
            }
            c => cur.push(c),
        }
    }
    if !inner.is_empty() || was_quoted {
        out.push(cur);
    }
    out
}

/// Wait while the server is too busy: replica lag or active sessions above
/// their limits. Says so when it starts and stops waiting. Returns the time
/// spent throttled.
async fn throttle(
    r: &mut Run<'_>,
    step: &str,
    b: &PlanBackfill,
    deadline: Option<Instant>,
    timeout: Option<Duration>,
) -> Result<Duration, Fail> {
    if b.max_replica_lag.is_none() && b.max_active_sessions.is_none() {
        return Ok(Duration::ZERO);
    }
    let started = Instant::now();
    let mut announced = false;
    loop {
        let mut why = Vec::new();
        if let Some(max) = b.max_replica_lag {
            // A replica's lag is blank to a role without pg_read_all_stats,
            // and a blank lag would never throttle.
            let (lag_ms, hidden): (i64, i64) =
                r.db.client
                    .query_one(
                        "SELECT coalesce(max(extract(epoch FROM replay_lag) * 1000), 0)::bigint,
                            count(*) FILTER (WHERE state IS NULL)
                       FROM pg_stat_replication",
                        &[],
                    )
                    .await
                    .map(|row| (row.get(0), row.get(1)))
                    .map_err(|e| sql_failure("reading replica lag", &db::error_info(&e, None)))?;
            if hidden > 0 {
                return Err(failed(
                    ErrorKind::Sql,
                    format!(
                        "max_replica_lag: this role may not see the lag of {hidden} replica(s), so the backfill could not be throttled on it"
                    ),
                    Some(crate::pg::activity::see_all_stats(
                        r.db.config().config.get_user(),
                    )),
                ));
            }
            if lag_ms as u128 > max.0.as_millis() {
                why.push(format!("replica lag {lag_ms} ms > {max}"));
            }
        }
        if let Some(max) = b.max_active_sessions {
            // A session this role may not see is counted as active when it
            // is in a transaction: it may be.
            let (active, hidden): (i64, i64) = r
                .db
                .client
                .query_one(
                    &format!(
                        "SELECT (SELECT count(*) FROM pg_stat_activity
                                  WHERE state = 'active' AND backend_type = 'client backend'
                                    AND pid <> pg_backend_pid()
                                    AND left(coalesce(application_name, ''), length($1)) <> $1),
                                ({})",
                        crate::checks::hidden_in_transaction(false)
                    ),
                    &[&r.app_name],
                )
                .await
                .map(|row| (row.get(0), row.get(1)))
                .map_err(|e| sql_failure("counting active sessions", &db::error_info(&e, None)))?;
            if active + hidden > i64::from(max) {
                why.push(if hidden > 0 {
                    format!(
                        "{} other active sessions > {max} ({hidden} of them in a transaction this role may not see, counted as active)",
                        active + hidden
                    )
                } else {
                    format!("{active} other active sessions > {max}")
                });
            }
        }
        if why.is_empty() {
            if !announced {
                return Ok(Duration::ZERO);
            }
            log(
                r,
                step,
                format!(
                    "throttle lifted after {}",
                    crate::duration::Duration(started.elapsed())
                ),
            );
            return Ok(started.elapsed());
        }
        if !announced {
            log(r, step, format!("throttled: {}", why.join("; ")));
            announced = true;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Fail::new(
                StepStatus::TimedOut,
                super::timeout_error(timeout),
            ));
        }
        tokio::select! {
            () = tokio::time::sleep(THROTTLE_NAP) => {}
            () = r.stop_signal() => return Err(Fail::new(StepStatus::Cancelled, super::cancelled_error())),
        }
    }
}

/// Between batches: the fixed pause, then whatever keeps the write rate
/// (rows updated in this run) under `max_rows_per_second`.
async fn pace(
    r: &Run<'_>,
    b: &PlanBackfill,
    updated: i64,
    since: Instant,
    deadline: Option<Instant>,
    timeout: Option<Duration>,
) -> Result<(), Fail> {
    let mut nap = b.pause.map_or(Duration::ZERO, |p| p.0);
    if let Some(rate) = b.max_rows_per_second.filter(|r| *r > 0) {
        let due = Duration::from_secs_f64(updated as f64 / f64::from(rate));
        nap = nap.max(due.saturating_sub(since.elapsed()));
    }
    if nap.is_zero() {
        return Ok(());
    }
    if deadline.is_some_and(|d| Instant::now() + nap >= d) {
        return Err(Fail::new(
            StepStatus::TimedOut,
            super::timeout_error(timeout),
        ));
    }
    tokio::select! {
        () = tokio::time::sleep(nap) => Ok(()),
        () = r.stop_signal() => Err(Fail::new(StepStatus::Cancelled, super::cancelled_error())),
    }
}

async fn mark_finished(r: &Run<'_>, state: &str, runbook: &str, step: &str) -> Result<(), Fail> {
    r.db.client
        .execute(
            &format!(
                "UPDATE {state} SET finished_at = now(), updated_at = now() WHERE runbook = $1 AND step = $2"
            ),
            &[&runbook, &step],
        )
        .await
        .map(|_| ())
        .map_err(|e| sql_failure("marking the backfill finished", &db::error_info(&e, None)))
}

fn progress(
    r: &mut Run<'_>,
    step: &str,
    ck: &Checkpoint,
    total: i64,
    seen_now: i64,
    since: Instant,
    item: Option<String>,
) {
    let secs = since.elapsed().as_secs_f64();
    let rate = (secs > 0.0).then(|| seen_now as f64 / secs);
    let total = total.max(ck.rows_done);
    let eta_ms = rate
        .filter(|r| *r > 0.0)
        .map(|r| ((total - ck.rows_done) as f64 / r * 1000.0) as u64);
    r.bus.emit(Event::StepProgress {
        at: now(),
        step: step.to_string(),
        done: ck.rows_done as u64,
        total: Some(total as u64),
        unit: "rows".into(),
        item,
        per_second: rate.map(round),
        eta_ms,
    });
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Nearest-rank percentile of batch times in ms.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// At most this many (ms, rows) points of a backfill's progress go into
/// its report: enough for a chart, never a report the size of the table.
const PROGRESS_POINTS: usize = 120;

/// `points` thinned to at most `max`, evenly, always keeping the last.
fn thin(points: &[(u64, u64)], max: usize) -> Vec<[u64; 2]> {
    if points.len() <= max {
        return points.iter().map(|(t, n)| [*t, *n]).collect();
    }
    let step = points.len() as f64 / max as f64;
    let mut out: Vec<[u64; 2]> = (0..max - 1)
        .map(|i| points[(i as f64 * step) as usize])
        .map(|(t, n)| [t, n])
        .collect();
    let (t, n) = points[points.len() - 1];
    out.push([t, n]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_batches_keep_their_size() {
        let mut s = Sizer::with(1000, None, 1000);
        s.after(1000, Duration::from_millis(1));
        s.after(1000, Duration::from_secs(10));
        assert_eq!(s.size, 1000);
    }

    #[test]
    fn batches_sized_by_time_move_at_most_2x_up_and_4x_down_and_settle() {
        let ms = Duration::from_millis;
        let mut s = Sizer::with(100, Some(ms(200)), 50_000);
        // 100 keys in 2 ms: 10,000 would take 200 ms, but one step is 2x.
        s.after(100, ms(2));
        assert_eq!(s.size, 200);
        // At a steady 50 keys/ms the size settles at the 10,000 that take
        // 200 ms, climbing by doubling.
        let mut sizes = vec![];
        for _ in 0..12 {
            let n = s.size;
            s.after(
                i64::from(n),
                Duration::from_secs_f64(f64::from(n) / 50_000.0),
            );
            sizes.push(s.size);
        }
        assert!(sizes.windows(2).all(|w| w[1] <= w[0] * 2), "{sizes:?}");
        assert!((9_000..=11_000).contains(&s.size), "{sizes:?}");
        // A batch that waited 8 s on a lock: half the rate is the steady
        // one, so the next batch is about half, not the 1/40 that the
        // blocked batch alone would say; the next blocked one halves again.
        let n = s.size;
        s.after(i64::from(n), Duration::from_secs(8));
        assert!(
            (n / 2..n / 2 + n / 20).contains(&s.size),
            "{n} then {}",
            s.size
        );
        let m = s.size;
        s.after(i64::from(m), Duration::from_secs(8));
        assert!(s.size < m * 6 / 10, "{m} then {}", s.size);
        // Never above the cap, never below one key.
        let mut capped = Sizer::with(40_000, Some(ms(200)), 50_000);
        capped.after(40_000, ms(1));
        assert_eq!(capped.size, 50_000);
        let mut tiny = Sizer::with(2, Some(ms(10)), 50_000);
        for _ in 0..5 {
            tiny.after(1, Duration::from_secs(5));
        }
        assert_eq!(tiny.size, 1);
        // A first size over the cap starts at the cap.
        assert_eq!(Sizer::with(90_000, Some(ms(200)), 50_000).size, 50_000);
    }

    #[test]
    fn progress_is_thinned_evenly_and_keeps_the_last_point() {
        let points: Vec<(u64, u64)> = (0..1000).map(|i| (i, i * 10)).collect();
        let t = thin(&points, 120);
        assert_eq!(t.len(), 120);
        assert_eq!(t[0], [0, 0]);
        assert_eq!(t[119], [999, 9990]);
        assert!(t.windows(2).all(|w| w[0][0] < w[1][0]));
        assert_eq!(thin(&points[..3], 120), vec![[0, 0], [1, 10], [2, 20]]);
    }

    #[test]
    fn a_batch_says_what_it_did_or_that_no_keys_were_left() {
        assert_eq!(batch_said(""), Some(None));
        assert_eq!(
            batch_said(r#"7 3 {5,"a b"}"#),
            Some(Some((vec!["5".to_string(), "a b".to_string()], 7, 3)))
        );
        assert_eq!(batch_said("7"), None);
        assert_eq!(batch_said("x 3 {5}"), None);
    }

    #[test]
    fn text_arrays_parse_with_quotes_and_escapes() {
        assert_eq!(parse_text_array("{1,2}"), ["1", "2"]);
        assert_eq!(
            parse_text_array(r#"{"a b","x\"y",c}"#),
            ["a b", "x\"y", "c"]
        );
        assert_eq!(parse_text_array(r#"{"a,b"}"#), ["a,b"]);
        assert_eq!(parse_text_array(r#"{""}"#), [""]);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
    }
}
