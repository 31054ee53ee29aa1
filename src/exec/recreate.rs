//! `mode: recreate` of a restore: drop the target database and create it
//! anew, as it was. `CREATE DATABASE ... TEMPLATE template0` alone gives
//! back none of what belongs to the database itself rather than to what is
//! in it, and pg_restore into a database does not set it (only `--create`
//! does, which cannot restore under another name or in one transaction):
//! its owner (and with it, from PostgreSQL 15, the owner of `public`), its
//! encoding, locale and locale provider, tablespace and connection limit,
//! its grants (`REVOKE CONNECT ... FROM PUBLIC`), its settings (`ALTER
//! DATABASE ... SET`, and `ALTER ROLE ... IN DATABASE ... SET`) and its
//! comment. They are read before the drop, set again on the new database,
//! and read back to prove it.

use serde_json::Value;

use super::fail::{failed, sql_failure};
use super::{Fail, Run};
use crate::events::ErrorKind;
use crate::pg::db;

/// The database named `$1`, one row if it exists: the options of a `CREATE
/// DATABASE` that gives it back (`options`), the statements that set
/// everything else again once it exists, on the database named `$2`
/// (`after`), and what can be read back to compare (`props`).
///
/// Columns that only some server versions have (the locale provider, from
/// PostgreSQL 15; `datlocale` in 17 for `daticulocale`; ICU rules, 16) are
/// read through `to_jsonb`, so the query runs on every version. A setting
/// whose value is a list of names (`search_path`) is stored quoted, and
/// given again through `set_config` and `FROM CURRENT`, which parse it as
/// the server wrote it; a literal would make it one name.
const DATABASE_SQL: &str = r#"SELECT
    format(' OWNER %s ENCODING %L LC_COLLATE %L LC_CTYPE %L', d.datdba::regrole, pg_encoding_to_char(d.encoding), d.datcollate, d.datctype)
    || CASE j ->> 'datlocprovider'
        WHEN 'c' THEN ' LOCALE_PROVIDER libc'
        WHEN 'i' THEN format(' LOCALE_PROVIDER icu ICU_LOCALE %L', coalesce(j ->> 'datlocale', j ->> 'daticulocale'))
                      || CASE WHEN j ->> 'daticurules' IS NOT NULL THEN format(' ICU_RULES %L', j ->> 'daticurules') ELSE '' END
        WHEN 'b' THEN format(' LOCALE_PROVIDER builtin BUILTIN_LOCALE %L', j ->> 'datlocale')
        ELSE '' END
    || CASE WHEN d.datconnlimit <> -1 THEN format(' CONNECTION LIMIT %s', d.datconnlimit) ELSE '' END
    || CASE WHEN sp.spcname <> 'pg_default' THEN format(' TABLESPACE %I', sp.spcname) ELSE '' END AS options,
    ARRAY(SELECT x.s FROM (
        SELECT 0 AS o, format('COMMENT ON DATABASE %I IS %L', $2::text, shobj_description(d.oid, 'pg_database')) AS s
        WHERE shobj_description(d.oid, 'pg_database') IS NOT NULL
        UNION ALL
        SELECT 1, format('REVOKE ALL ON DATABASE %I FROM PUBLIC, %s', $2::text, d.datdba::regrole)
        WHERE d.datacl IS NOT NULL
        UNION ALL
        SELECT 2, format('GRANT %s ON DATABASE %I TO %s%s', e.privilege_type, $2::text,
                         CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE e.grantee::regrole::text END,
                         CASE WHEN e.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
        FROM aclexplode(d.datacl) e
        UNION ALL
        SELECT 3, CASE WHEN c.name IN ('search_path', 'temp_tablespaces', 'session_preload_libraries', 'local_preload_libraries')
                       THEN format('SELECT set_config(%L, %L, true); ALTER %s SET %I FROM CURRENT', c.name, c.value, c.target, c.name)
                       ELSE format('ALTER %s SET %I = %L', c.target, c.name, c.value) END
        FROM (SELECT split_part(kv, '=', 1) AS name, substr(kv, strpos(kv, '=') + 1) AS value,
                     CASE WHEN rs.setrole = 0 THEN format('DATABASE %I', $2::text)
                          ELSE format('ROLE %s IN DATABASE %I', rs.setrole::regrole, $2::text) END AS target
              FROM pg_db_role_setting rs, unnest(rs.setconfig) kv
              WHERE rs.setdatabase = d.oid) c
    ) x ORDER BY x.o, x.s) AS after,
    jsonb_build_object(
        'owner', d.datdba::regrole::text,
        'encoding', pg_encoding_to_char(d.encoding),
        'collate', d.datcollate,
        'ctype', d.datctype,
        'locale_provider', j ->> 'datlocprovider',
        'locale', coalesce(j ->> 'datlocale', j ->> 'daticulocale'),
        'icu_rules', j ->> 'daticurules',
        'connection_limit', d.datconnlimit,
        'tablespace', sp.spcname,
        'comment', shobj_description(d.oid, 'pg_database'),
        'grants', (SELECT jsonb_agg(DISTINCT format('%s=%s%s', CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE e.grantee::regrole::text END,
                                                    e.privilege_type, CASE WHEN e.is_grantable THEN '*' ELSE '' END))
                   FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) e),
        'settings', (SELECT jsonb_agg(format('%s%s', CASE WHEN rs.setrole = 0 THEN '' ELSE rs.setrole::regrole::text || ' in database: ' END, kv)
                                      ORDER BY rs.setrole, kv)
                     FROM pg_db_role_setting rs, unnest(rs.setconfig) kv WHERE rs.setdatabase = d.oid)
    )::text AS props,
    pg_has_role(current_user, d.datdba, 'MEMBER') AS may_own
FROM pg_database d
JOIN pg_tablespace sp ON sp.oid = d.dattablespace
CROSS JOIN LATERAL (SELECT to_jsonb(d) AS j) jj
WHERE d.datname = $1"#;

/// What a database was, read before it is dropped.
struct Database {
    options: String,
    after: Vec<String>,
    props: Value,
    may_own: bool,
}

async fn read(
    client: &tokio_postgres::Client,
    name: &str,
) -> Result<Option<Database>, tokio_postgres::Error> {
    read_for(client, name, name).await
}

/// [`read`], with the statements of `after` made for the database `target`.
async fn read_for(
    client: &tokio_postgres::Client,
    name: &str,
    target: &str,
) -> Result<Option<Database>, tokio_postgres::Error> {
    let row = client.query_opt(DATABASE_SQL, &[&name, &target]).await?;
    Ok(row.map(|r| Database {
        options: r.get(0),
        after: r.get(1),
        props: serde_json::from_str(r.get::<_, &str>(2)).unwrap_or(Value::Null),
        may_own: r.get(3),
    }))
}

/// A database's properties as they may be shown: its settings by name
/// only, since a setting can hold a secret (`ALTER DATABASE ... SET
/// app.jwt_secret = ...` is a common way to hand one to SQL).
fn shown(props: &Value) -> Value {
    let mut props = props.clone();
    if let Some(list) = props.get_mut("settings").and_then(Value::as_array_mut) {
        for s in list {
            let name = s.as_str().map(|t| t.split_once('=').map_or(t, |(n, _)| n));
            *s = Value::from(name.unwrap_or_default());
        }
    }
    props
}

/// What differs between two reads of a database's properties, one line
/// each (`owner: "app" -> "postgres"`), settings by name only.
fn differences(before: &Value, after: &Value) -> Vec<String> {
    let (Some(b), Some(a)) = (before.as_object(), after.as_object()) else {
        return vec!["the database could not be read back".into()];
    };
    let (sb, sa) = (shown(before), shown(after));
    b.iter()
        .filter(|(k, v)| a.get(*k).unwrap_or(&Value::Null) != *v)
        .map(|(k, _)| match (&sb[k], &sa[k]) {
            (x, y) if x == y => format!("{k}: a value differs"),
            (x, y) => format!("{k}: {x} -> {y}"),
        })
        .collect()
}

/// Give `copy` (a new database: a template copy or a restore of `source`)
/// what belongs to `source` itself and a copy does not get: its settings
/// (`ALTER DATABASE ... SET`, `ALTER ROLE ... IN DATABASE ... SET`), its
/// grants and comment, and its owner where this role may give it (which,
/// from PostgreSQL 15, is also the owner of `public`). Returns what could
/// not be given, one line each; nothing is shown of a setting's value.
pub(crate) async fn like_source(
    client: &tokio_postgres::Client,
    source: &str,
    copy: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let Some(was) = read_for(client, source, copy).await? else {
        return Ok(Vec::new());
    };
    let mut refused = Vec::new();
    let owner = was.props["owner"].as_str().unwrap_or_default().to_string();
    let mut statements = Vec::new();
    // The copy is dropped afterwards, which takes the owner's privileges,
    // not only membership (a member without INHERIT cannot drop it).
    let usage: bool = client
        .query_one(
            "SELECT pg_has_role(current_user, datdba, 'USAGE') FROM pg_database WHERE datname = $1",
            &[&source],
        )
        .await?
        .get(0);
    if was.may_own && usage && !owner.is_empty() {
        statements.push(format!(
            "ALTER DATABASE {} OWNER TO {owner}",
            crate::pg::quote::ident(copy)
        ));
    } else {
        refused.push(format!(
            "owner: not {owner}, as this role does not hold its privileges"
        ));
    }
    statements.extend(was.after);
    for sql in &statements {
        if let Err(e) = client.batch_execute(sql).await {
            refused.push(db::error_info(&e, None).message);
        }
    }
    Ok(refused)
}

/// What became of the database's own properties.
#[derive(Debug, Default)]
pub(super) struct Recreated {
    /// The properties read before the drop, as they may be shown (`null`
    /// for a database that did not exist).
    pub props: Value,
    /// Each that the new database does not have as before, with why.
    pub differences: Vec<String>,
}

/// Drop the target database and create it anew, as it was. When it is the
/// run's own database, the run's session steps over to the maintenance
/// database for this and comes back after the restore.
pub(super) async fn recreate(r: &mut Run<'_>, target: &str) -> Result<Recreated, Fail> {
    r.monitor = None;
    let maint = r.db.connect_maintenance(&r.app_name).await;
    let Some(maint) = maint else {
        return Err(failed(
            ErrorKind::Restore,
            "cannot connect to the `postgres` or `template1` database to recreate the target; nothing was touched".into(),
            Some("`mode: recreate` needs a maintenance database; use `clean: true` to restore in place".into()),
        )
        .unchanged());
    };
    let was = read(&maint.client, target).await.map_err(|e| {
        sql_failure(
            "failed to read the target database's owner and settings",
            &db::error_info(&e, None),
        )
        .unchanged()
    })?;
    if let Some(was) = &was
        && !was.may_own
    {
        return Err(failed(
            ErrorKind::Restore,
            format!(
                "the target is owned by {}, and this role is not a member of it, so it could not create the database again as theirs; nothing was dropped",
                was.props["owner"]
            ),
            Some("run the restore as the database's owner (or a superuser), or use `clean: true` to restore in place".into()),
        )
        .unchanged());
    }
    let q = crate::pg::quote::ident(target);
    let own = target == r.database;
    let other = if own {
        r.db = maint;
        None
    } else {
        Some(maint)
    };
    let client = other.as_ref().map_or(&r.db.client, |m| &m.client);
    let options = was.as_ref().map_or("", |w| w.options.as_str());
    for (sql, what) in [
        (format!("DROP DATABASE IF EXISTS {q} WITH (FORCE)"), "drop"),
        (
            format!("CREATE DATABASE {q} TEMPLATE template0{options}"),
            "create",
        ),
    ] {
        client.batch_execute(&sql).await.map_err(|e| {
            sql_failure(
                &format!("failed to {what} the target database"),
                &db::error_info(&e, None),
            )
        })?;
    }
    let Some(was) = was else {
        return Ok(Recreated::default());
    };
    // Each on its own, so that one the server refuses costs only itself;
    // the read back below names it.
    let mut refused = Vec::new();
    for sql in &was.after {
        if let Err(e) = client.batch_execute(sql).await {
            refused.push(db::error_info(&e, None).message);
        }
    }
    let now = read(client, target).await;
    let mut differences = match now {
        Ok(Some(now)) => differences(&was.props, &now.props),
        Ok(None) => vec!["the database is gone".into()],
        Err(e) => vec![format!(
            "could not be read back: {}",
            db::error_info(&e, None).message
        )],
    };
    if !differences.is_empty() {
        differences.extend(refused.into_iter().map(|m| format!("refused: {m}")));
    }
    Ok(Recreated {
        props: shown(&was.props),
        differences,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn differences_name_each_property_that_changed() {
        let before = json!({"owner": "app", "settings": ["app.key=s3cret"], "comment": null});
        let after = json!({"owner": "postgres", "settings": null, "comment": null});
        assert_eq!(
            differences(&before, &after),
            vec![
                r#"owner: "app" -> "postgres""#.to_string(),
                r#"settings: ["app.key"] -> null"#.to_string(),
            ]
        );
        let other = json!({"owner": "app", "settings": ["app.key=other"], "comment": null});
        assert_eq!(
            differences(&before, &other),
            vec!["settings: a value differs"]
        );
        assert!(differences(&before, &before).is_empty());
        assert_eq!(shown(&before)["settings"], json!(["app.key"]));
    }
}
