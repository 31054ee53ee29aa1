//! The `privileges` built-in check: before anything changes, can the
//! connected role do what the runbook's steps will ask of it? Each need is
//! read from the plan (every step, rollbacks and branches included) and
//! checked in one query; the rows name what is missing, for which step,
//! and the GRANT (or ownership) that gives it.
//!
//! | step | needs |
//! |---|---|
//! | `sql`: ALTER/DROP TABLE, CREATE INDEX, DROP INDEX, CREATE TRIGGER, REINDEX, VACUUM FULL, CLUSTER | ownership of the table or index |
//! | `sql`: INSERT, UPDATE, DELETE, TRUNCATE | that privilege on the table |
//! | `sql`: CREATE TABLE/VIEW/SEQUENCE/TYPE/FUNCTION | CREATE on the schema |
//! | `backfill` | SELECT and UPDATE on the table, USAGE on PL/pgSQL (its batches are DO blocks), and no row-level security policy applying to the role |
//! | `backup` | SELECT on every table it dumps, USAGE on their schemas (or `pg_read_all_data`), and no row-level security policy applying to the role |
//! | `restore` | `pg_signal_backend` with `terminate_connections` |
//!
//! A table that does not exist yet (the runbook creates it) needs nothing:
//! its creator owns it. Row-level security applies to a role that is not a
//! superuser, has no BYPASSRLS, and does not own the table (or does, and
//! the table is FORCE ROW LEVEL SECURITY): pg_dump then refuses the table,
//! and a backfill's batches, which run with row security off, fail.

use crate::pg::quote::literal;
use crate::plan::{Action, Plan, PlanStep};

/// One thing the role must be able to do.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Need {
    /// `owner`, `table`, `schema`, `role`, `language`, `dump`, `rls`.
    kind: &'static str,
    object: String,
    /// For `table`: the privilege.
    privilege: &'static str,
    step: String,
}

fn need(kind: &'static str, object: &str, privilege: &'static str, step: &str) -> Need {
    Need {
        kind,
        object: object.to_string(),
        privilege,
        step: step.to_string(),
    }
}

fn sql_needs(step: &str, sql: &str, out: &mut Vec<Need>) {
    for st in crate::pg::statements::split(sql) {
        let first = st.relations.first().map(String::as_str);
        let table_of_index = st.relations.get(1).map(String::as_str).or(first);
        let kind = st.kind.as_str();
        match kind {
            "ALTER TABLE" | "DROP TABLE" | "CREATE TRIGGER" | "REINDEX" | "CLUSTER"
            | "DROP INDEX" => {
                for r in &st.relations {
                    out.push(need("owner", r, "", step));
                }
            }
            "VACUUM" if st.lock.is_some() => {
                for r in &st.relations {
                    out.push(need("owner", r, "", step));
                }
            }
            "CREATE INDEX" => {
                if let Some(t) = table_of_index {
                    out.push(need("owner", t, "", step));
                }
            }
            "INSERT" if st.relations.is_empty() => {
                // INSERT INTO name ...: the classifier names no relation
                // for it (it takes no lock that blocks others).
                let upper = st.text.to_ascii_uppercase();
                if let Some(at) = upper.find("INTO ") {
                    let name: String = st.text[at + 5..]
                        .trim_start()
                        .chars()
                        .take_while(|c| !c.is_whitespace() && *c != '(')
                        .collect();
                    out.push(need("table", &name, "INSERT", step));
                }
            }
            "INSERT" | "UPDATE" | "DELETE" | "TRUNCATE" => {
                let privilege = match kind {
                    "INSERT" => "INSERT",
                    "UPDATE" => "UPDATE",
                    "DELETE" => "DELETE",
                    _ => "TRUNCATE",
                };
                for r in &st.relations {
                    out.push(need("table", r, privilege, step));
                }
            }
            _ => {}
        }
        if let Some(what) = kind.strip_prefix("CREATE ")
            && matches!(
                what,
                "TABLE" | "VIEW" | "SEQUENCE" | "TYPE" | "FUNCTION" | "MATERIALIZED VIEW"
            )
        {
            // The schema it creates in: the qualified one, else the first
            // of the search path that exists.
            let schema = first
                .and_then(|r| r.rsplit_once('.'))
                .map(|(s, _)| s.to_string())
                .unwrap_or_default();
            out.push(need("schema", &schema, "", step));
        }
    }
}

fn step_needs(s: &PlanStep, out: &mut Vec<Need>) {
    match &s.action {
        Action::Sql { statements, .. } if statements.after.is_empty() => {
            sql_needs(&s.id, statements.raw.expose(), out);
        }
        Action::Backfill(b) if b.table.after.is_empty() => {
            let t = b.table.raw.expose();
            out.push(need("table", t, "SELECT", &s.id));
            out.push(need("table", t, "UPDATE", &s.id));
            out.push(need("language", "plpgsql", "USAGE", &s.id));
            out.push(need("rls", t, "", &s.id));
        }
        Action::Backup(b) => {
            if b.tables.is_empty() {
                out.push(need("dump", "", "", &s.id));
            } else {
                for t in b.tables.iter().filter(|t| t.after.is_empty()) {
                    out.push(need("table", t.raw.expose(), "SELECT", &s.id));
                    out.push(need("rls", t.raw.expose(), "", &s.id));
                }
            }
        }
        Action::Restore(r) if r.terminate_connections => {
            out.push(need("role", "pg_signal_backend", "", &s.id));
        }
        _ => {}
    }
    for rb in &s.rollback {
        step_needs(rb, out);
    }
}

/// Every need of the plan's steps, in order, each once.
fn needs(plan: &Plan) -> Vec<Need> {
    let mut out = Vec::new();
    for p in &plan.phases {
        for s in &p.steps {
            step_needs(s, &mut out);
        }
        if let crate::plan::PlanOnFailure::Steps(b) = &p.on_failure {
            for s in b {
                step_needs(s, &mut out);
            }
        }
    }
    for s in plan.on_failure.iter().chain(&plan.finally_steps) {
        step_needs(s, &mut out);
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|n| seen.insert((n.kind, n.object.clone(), n.privilege)));
    out
}

/// The query that returns one row per need the role does not meet.
pub(crate) fn query(plan: &Plan) -> Option<String> {
    let needs = needs(plan);
    if needs.is_empty() {
        return None;
    }
    let values: Vec<String> = needs
        .iter()
        .map(|n| {
            format!(
                "({}, {}, {}, {})",
                literal(n.kind),
                literal(&n.object),
                literal(n.privilege),
                literal(&n.step)
            )
        })
        .collect();
    Some(format!(
        "WITH need(kind, object, privilege, step) AS (VALUES {values}),
me AS (SELECT rolsuper OR rolbypassrls AS bypass FROM pg_roles WHERE rolname = current_user),
dump AS (
  SELECT n.step, c.oid::regclass::text AS object,
         has_schema_privilege(c.relnamespace, 'USAGE') AS usage,
         c.relkind IN ('r', 'p') AND RLS_APPLIES AS rls
  FROM need n
  CROSS JOIN pg_class c
  JOIN pg_namespace ns ON ns.oid = c.relnamespace
  WHERE n.kind = 'dump' AND c.relkind IN ('r', 'p', 'm', 'S')
    AND ns.nspname NOT IN ('pg_catalog', 'information_schema', 'runbook_journal')
    AND ns.nspname NOT LIKE 'pg_toast%' AND ns.nspname NOT LIKE 'pg_temp%'
)
SELECT 'owner' AS missing, n.object, n.step,
       'be the owner of ' || n.object || ' (or a member of its owner, ' || pg_get_userbyid(c.relowner) || ')' AS fix
FROM need n JOIN pg_class c ON c.oid = to_regclass(NULLIF(n.object, ''))
WHERE n.kind = 'owner' AND NOT pg_has_role(current_user, c.relowner, 'USAGE')
UNION ALL
SELECT n.privilege, n.object, n.step,
       'GRANT ' || n.privilege || ' ON ' || n.object || ' TO ' || quote_ident(current_user)
FROM need n
WHERE n.kind = 'table' AND to_regclass(NULLIF(n.object, '')) IS NOT NULL
  AND NOT has_table_privilege(to_regclass(NULLIF(n.object, '')), n.privilege)
UNION ALL
SELECT 'CREATE', s.nspname, n.step,
       'GRANT CREATE ON SCHEMA ' || quote_ident(s.nspname) || ' TO ' || quote_ident(current_user)
FROM need n
JOIN pg_namespace s ON s.nspname = COALESCE(NULLIF(n.object, ''), current_schema())
WHERE n.kind = 'schema' AND NOT has_schema_privilege(s.oid, 'CREATE')
UNION ALL
SELECT 'MEMBER', n.object, n.step,
       'GRANT ' || n.object || ' TO ' || quote_ident(current_user)
FROM need n
WHERE n.kind = 'role' AND NOT pg_has_role(current_user, n.object, 'MEMBER')
UNION ALL
SELECT 'USAGE', n.object, n.step,
       CASE WHEN l.oid IS NULL THEN 'CREATE EXTENSION ' || n.object
            ELSE 'GRANT USAGE ON LANGUAGE ' || n.object || ' TO ' || quote_ident(current_user) END
FROM need n LEFT JOIN pg_language l ON l.lanname = n.object
WHERE n.kind = 'language' AND (l.oid IS NULL OR NOT has_language_privilege(l.oid, 'USAGE'))
UNION ALL
SELECT CASE WHEN d.usage THEN 'SELECT' ELSE 'USAGE' END, d.object, d.step,
       'GRANT pg_read_all_data TO ' || quote_ident(current_user) || ' (or SELECT on the table and USAGE on its schema)'
FROM dump d
WHERE NOT d.usage OR NOT has_table_privilege(d.object::regclass, 'SELECT')
UNION ALL
SELECT 'BYPASSRLS', d.object, d.step, RLS_FIX
FROM dump d
WHERE d.rls
UNION ALL
SELECT 'BYPASSRLS', c.oid::regclass::text, n.step, RLS_FIX
FROM need n JOIN pg_class c ON c.oid = to_regclass(NULLIF(n.object, ''))
WHERE n.kind = 'rls' AND RLS_APPLIES
ORDER BY 3, 2",
        values = values.join(",\n  ")
    )
    .replace(
        "RLS_APPLIES",
        "c.relrowsecurity AND NOT (SELECT bypass FROM me)
         AND (c.relforcerowsecurity OR NOT pg_has_role(current_user, c.relowner, 'USAGE'))",
    )
    .replace(
        "RLS_FIX",
        "'row-level security applies to ' || quote_ident(current_user) || ' on this table: connect as its owner (unless it is FORCE ROW LEVEL SECURITY), or ALTER ROLE ' || quote_ident(current_user) || ' BYPASSRLS'",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_what_they_need() {
        let mut out = Vec::new();
        sql_needs(
            "s",
            "ALTER TABLE orders ADD COLUMN c int;\nCREATE INDEX CONCURRENTLY i ON public.orders (c);\nUPDATE orders SET c = 1 WHERE id = 2;\nCREATE TABLE app.t (id int);\nCREATE TABLE u (id int);",
            &mut out,
        );
        let got: Vec<(&str, &str, &str)> = out
            .iter()
            .map(|n| (n.kind, n.object.as_str(), n.privilege))
            .collect();
        assert_eq!(
            got,
            [
                ("owner", "orders", ""),
                ("owner", "public.orders", ""),
                ("table", "orders", "UPDATE"),
                ("schema", "app", ""),
                ("schema", "", ""),
            ]
        );
    }
}
