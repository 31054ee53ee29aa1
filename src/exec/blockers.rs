//! Who is in the way of a statement that takes a write-blocking lock:
//! sessions holding locks on its tables, and long transactions. Found before
//! the statement runs, named in the step's log and details, and optionally
//! waited for (`wait_for_blockers`).

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_postgres::Client;

use crate::events::ErrorInfo;
use crate::pg::db;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Blocker {
    pub pid: i32,
    pub application_name: String,
    pub user: String,
    pub client: String,
    pub state: String,
    /// How long its transaction has been open, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_ms: Option<i64>,
    /// `public.orders RowExclusiveLock`, for each lock it holds on a target.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locks: Vec<String>,
}

impl Blocker {
    /// Holds a lock on one of the tables, so the statement would queue behind it.
    pub fn holds_lock(&self) -> bool {
        !self.locks.is_empty()
    }

    pub fn describe(&self) -> String {
        let mut s = format!(
            "pid {} ({}user {}, {}, {}",
            self.pid,
            if self.application_name.is_empty() {
                String::new()
            } else {
                format!("{}, ", self.application_name)
            },
            self.user,
            self.client,
            self.state
        );
        if let Some(ms) = self.transaction_ms {
            s.push_str(&format!(
                ", transaction open {}",
                crate::duration::Duration(Duration::from_millis(ms.max(0) as u64))
            ));
        }
        s.push(')');
        if self.locks.is_empty() {
            s.push_str(" has a long transaction open");
        } else {
            s.push_str(&format!(" holds {}", self.locks.join(", ")));
        }
        s
    }
}

/// Sessions other than ours (`ours` is an application_name prefix) that hold
/// any lock on `relations` (an index counts with its table), or whose
/// transaction is older than `long_after`. A session of a role whose
/// activity this role may not see is found by its locks; its transaction's
/// age is hidden.
const FIND: &str = "\
WITH named AS (
    SELECT to_regclass(n) AS oid FROM unnest($1::text[]) AS n
), targets AS (
    SELECT oid FROM named WHERE oid IS NOT NULL
    UNION
    SELECT i.indrelid FROM pg_index i JOIN named ON i.indexrelid = named.oid
)
SELECT a.pid,
       coalesce(a.application_name, ''),
       coalesce(a.usename::text, ''),
       CASE WHEN HIDDEN THEN 'client hidden from this role'
            ELSE coalesce(host(a.client_addr), 'local socket') END,
       coalesce(a.state, 'activity hidden from this role'),
       (extract(epoch FROM clock_timestamp() - a.xact_start) * 1000)::bigint,
       coalesce(array_agg(DISTINCT l.relation::regclass::text || ' ' || l.mode)
                FILTER (WHERE l.relation IS NOT NULL), '{}')
FROM pg_stat_activity a
LEFT JOIN pg_locks l
       ON l.pid = a.pid AND l.granted AND l.locktype = 'relation'
      AND l.relation IN (SELECT oid FROM targets)
WHERE a.pid <> pg_backend_pid()
  AND a.datname = current_database()
  AND (a.backend_type = 'client backend' OR HIDDEN)
  AND left(coalesce(a.application_name, ''), length($2)) <> $2
GROUP BY a.pid, a.application_name, a.usename, a.client_addr, a.state, a.query, a.xact_start
HAVING count(l.relation) > 0
    OR a.xact_start < clock_timestamp() - make_interval(secs => $3::float8 / 1000)
ORDER BY a.xact_start NULLS LAST, a.pid";

pub async fn find(
    client: &Client,
    relations: &[String],
    ours: &str,
    long_after: Duration,
) -> Result<Vec<Blocker>, ErrorInfo> {
    let sql = FIND.replace("HIDDEN", crate::pg::activity::HIDDEN);
    let rows = client
        .query(&sql, &[&relations, &ours, &(long_after.as_millis() as f64)])
        .await
        .map_err(|e| db::error_info(&e, None))?;
    Ok(rows
        .iter()
        .map(|r| Blocker {
            pid: r.get(0),
            application_name: r.get(1),
            user: r.get(2),
            client: r.get(3),
            state: r.get(4),
            transaction_ms: r.get(5),
            locks: r.get(6),
        })
        .collect())
}

/// Whether a blocker is one to wait for: a lock holder always; a long
/// transaction only before `CREATE INDEX CONCURRENTLY`, which waits for
/// every transaction older than itself.
pub fn in_the_way(b: &Blocker, concurrent_index: bool) -> bool {
    b.holds_lock() || concurrent_index
}

/// Poll until nothing is in the way or `limit` passes. Returns the blockers
/// still there at the end (empty when they all finished), and how long it waited.
pub async fn wait(
    client: &Client,
    relations: &[String],
    ours: &str,
    long_after: Duration,
    concurrent_index: bool,
    limit: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(Vec<Blocker>, Duration), ErrorInfo> {
    let started = Instant::now();
    tokio::pin!(stop);
    loop {
        let left: Vec<Blocker> = find(client, relations, ours, long_after)
            .await?
            .into_iter()
            .filter(|b| in_the_way(b, concurrent_index))
            .collect();
        if left.is_empty() || started.elapsed() >= limit {
            return Ok((left, started.elapsed()));
        }
        let nap = Duration::from_millis(250).min(limit.saturating_sub(started.elapsed()));
        tokio::select! {
            () = tokio::time::sleep(nap) => {}
            () = &mut stop => return Err(super::cancelled_error()),
        }
    }
}
