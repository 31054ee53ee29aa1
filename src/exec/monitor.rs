//! The lock impact monitor: while a step that changes something runs, a
//! separate session samples `pg_locks` and `pg_stat_activity` every 250 ms
//! and records what our sessions (the run's own and every child that
//! inherited its application_name) did to everyone else.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::events::LockImpact;

pub const INTERVAL: Duration = Duration::from_millis(250);

/// Waits on our locks, and ACCESS EXCLUSIVE locks we hold on existing
/// relations. `pg_blocking_pids` counts a session queued behind ours as
/// blocked by ours too, which is the queue a waiting ALTER builds. A table
/// our own open transaction created is invisible to this session's
/// `pg_class`, so its lock (which blocks nobody) is not counted.
const SAMPLE: &str = "\
WITH ours AS (
    SELECT pid FROM pg_stat_activity
    WHERE left(coalesce(application_name, ''), length($1)) = $1
      AND pid <> pg_backend_pid()
)
SELECT 'wait', a.pid,
       (extract(epoch FROM clock_timestamp() - min(WAITSTART)) * 1000)::bigint,
       min(WAITSTART)::text, NULL::text
FROM pg_stat_activity a
JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted
WHERE a.pid NOT IN (SELECT pid FROM ours)
  AND pg_blocking_pids(a.pid) && ARRAY(SELECT pid FROM ours)
GROUP BY a.pid
UNION ALL
SELECT 'hold', l.pid, NULL, NULL, c.oid::regclass::text
FROM pg_locks l
JOIN pg_class c ON c.oid = l.relation
WHERE l.pid IN (SELECT pid FROM ours)
  AND l.granted AND l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock'";

/// The sampling query for a server: `pg_locks.waitstart` exists from 14 on;
/// before that, the waiting statement's start stands in for it.
pub fn sample_sql(server_version_num: i32) -> String {
    let start = if server_version_num >= 140_000 {
        "coalesce(l.waitstart, a.query_start)"
    } else {
        "a.query_start"
    };
    SAMPLE.replace("WAITSTART", start)
}

#[derive(Default)]
struct Tally {
    samples: u32,
    /// The longest wait seen, per waiting session and wait start.
    waits: HashMap<(i32, String), u64>,
    waiting_max: u32,
    /// First and last sighting of each ACCESS EXCLUSIVE lock we held.
    holds: HashMap<String, (Instant, Instant)>,
    longest_hold: (u64, Option<String>),
}

impl Tally {
    fn add(&mut self, rows: &[tokio_postgres::Row]) {
        let now = Instant::now();
        self.samples += 1;
        let mut waiting = 0;
        let mut held = Vec::new();
        for r in rows {
            let what: &str = r.get(0);
            if what == "wait" {
                waiting += 1;
                let pid: i32 = r.get(1);
                let ms: Option<i64> = r.get(2);
                let since: Option<String> = r.get(3);
                let e = self
                    .waits
                    .entry((pid, since.unwrap_or_default()))
                    .or_default();
                *e = (*e).max(ms.unwrap_or(0).max(0) as u64);
            } else if let Some(rel) = r.get::<_, Option<String>>(4) {
                held.push(rel);
            }
        }
        self.waiting_max = self.waiting_max.max(waiting);
        // A lock not seen in this sample was released: close its interval.
        let gone: Vec<String> = self
            .holds
            .keys()
            .filter(|k| !held.contains(k))
            .cloned()
            .collect();
        for k in gone {
            if let Some((first, last)) = self.holds.remove(&k) {
                self.close(k, first, last);
            }
        }
        for rel in held {
            self.holds.entry(rel).or_insert((now, now)).1 = now;
        }
    }

    fn close(&mut self, rel: String, first: Instant, last: Instant) {
        let ms = super::ms(last - first);
        if ms > self.longest_hold.0 || self.longest_hold.1.is_none() {
            self.longest_hold = (ms, Some(rel));
        }
    }

    fn finish(mut self, error: Option<String>) -> LockImpact {
        for (k, (first, last)) in std::mem::take(&mut self.holds) {
            self.close(k, first, last);
        }
        LockImpact {
            samples: self.samples,
            interval_ms: super::ms(INTERVAL),
            sessions_waited: self.waits.len() as u32,
            waited_max_ms: self.waits.values().copied().max().unwrap_or(0),
            waited_total_ms: self.waits.values().sum(),
            waiting_max: self.waiting_max,
            access_exclusive_ms: self.longest_hold.0,
            access_exclusive_on: self.longest_hold.1,
            error,
        }
    }
}

/// A running monitor; [`Monitor::stop`] returns the figures.
pub struct Monitor {
    stop: oneshot::Sender<()>,
    task: JoinHandle<LockImpact>,
}

impl Monitor {
    /// Start sampling on `client` (a session of its own) for sessions whose
    /// application_name starts with `ours`.
    pub fn start(db: Arc<crate::pg::db::Db>, sql: Arc<str>, ours: String) -> Monitor {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut tally = Tally::default();
            // Parsed once, at the first sample: parsing and planning it for
            // every sample cost the server about 3 ms of each 3.6.
            let mut statement: Option<tokio_postgres::Statement> = None;
            // Sample only while the step runs: a step shorter than one
            // interval costs nothing (its impact is below what sampling sees).
            loop {
                tokio::select! {
                    () = tokio::time::sleep(INTERVAL) => {}
                    _ = &mut stopped => return tally.finish(None),
                }
                let prepared = match &statement {
                    Some(s) => Ok(s.clone()),
                    None => db.client.prepare(&sql).await,
                };
                let sampled = match prepared {
                    Ok(s) => {
                        let rows = db.client.query(&s, &[&ours]).await;
                        statement = Some(s);
                        rows
                    }
                    Err(e) => Err(e),
                };
                match sampled {
                    Ok(rows) => tally.add(&rows),
                    Err(e) => {
                        let why = crate::pg::db::error_info(&e, None).message;
                        return tally.finish(Some(why));
                    }
                }
            }
        });
        Monitor { stop, task }
    }

    pub async fn stop(self) -> LockImpact {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_else(|e| LockImpact {
            error: Some(format!("the lock monitor stopped: {e}")),
            ..LockImpact::default()
        })
    }
}
