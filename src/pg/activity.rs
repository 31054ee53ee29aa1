//! What `pg_stat_activity` shows the connected role of other roles'
//! sessions. A role without the privileges of `pg_read_all_stats` (which
//! `pg_monitor` has), or of a session's own role, sees that session's pid,
//! database, user and application name, and nothing of what it is doing:
//! no state, transaction, wait, client or backend type, and
//! `<insufficient privilege>` for its query. Its locks in `pg_locks` stay
//! visible. A query that filters on state or backend type passes over such
//! a session as if it were not there; these conditions find it.

/// A condition on `pg_stat_activity a`: a session whose activity the role
/// may not see. A VACUUM or ANALYZE (autovacuum's) is left out, as the
/// queries that use this leave out everything but client backends.
pub const HIDDEN: &str = "(a.state IS NULL AND a.query = '<insufficient privilege>' \
    AND a.pid NOT IN (SELECT pid FROM pg_stat_progress_vacuum UNION ALL SELECT pid FROM pg_stat_progress_analyze))";

/// A condition on `pg_stat_activity a`: the session is in a transaction.
/// Every transaction holds its own `virtualxid` lock, which any role sees;
/// a session without one is idle.
pub const IN_TRANSACTION: &str = "EXISTS (SELECT 1 FROM pg_locks l \
    WHERE l.pid = a.pid AND l.locktype = 'virtualxid' AND l.granted)";

/// How to let `role` (the one the run logs in as, when known) see what
/// other roles' sessions are doing.
pub fn see_all_stats(role: Option<&str>) -> String {
    let to = role.map_or_else(
        || "the role the run connects as".to_string(),
        crate::pg::quote::ident,
    );
    format!(
        "PostgreSQL shows other roles' activity to roles with the privileges of pg_read_all_stats: GRANT pg_monitor (or pg_read_all_stats) TO {to}, or connect as one that has it"
    )
}
