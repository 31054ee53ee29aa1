//! The cluster's roles, before and after a rehearsal. Roles belong to the
//! cluster, not to a database: a migration that creates one on a scratch
//! database leaves it behind when that database is dropped, and one that
//! alters a role alters it for every database of the cluster. A rehearsal
//! does not undo either (another session may have made the same change
//! meanwhile, and dropping its role would destroy its work); it says what
//! changed in the roles its scripts name, so that a person can.

use std::collections::BTreeMap;

use crate::pg::db::Db;

/// Each role (but the server's own `pg_*`): its attributes, the roles it
/// is a member of, and its settings for every database.
pub(super) type Roles = BTreeMap<String, Role>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Role {
    attributes: String,
    member_of: Vec<String>,
    settings: Vec<String>,
}

/// What `pg_roles` shows to any role: never a password.
const READ: &str = "SELECT r.rolname::text,
        concat_ws(' ',
            CASE WHEN r.rolsuper THEN 'SUPERUSER' END,
            CASE WHEN r.rolcreatedb THEN 'CREATEDB' END,
            CASE WHEN r.rolcreaterole THEN 'CREATEROLE' END,
            CASE WHEN NOT r.rolinherit THEN 'NOINHERIT' END,
            CASE WHEN r.rolcanlogin THEN 'LOGIN' END,
            CASE WHEN r.rolreplication THEN 'REPLICATION' END,
            CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END,
            CASE WHEN r.rolconnlimit <> -1 THEN 'CONNECTION LIMIT ' || r.rolconnlimit END,
            CASE WHEN r.rolvaliduntil IS NOT NULL THEN 'VALID UNTIL ' || r.rolvaliduntil END),
        ARRAY(SELECT g.rolname::text FROM pg_catalog.pg_auth_members m
              JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
              WHERE m.member = r.oid ORDER BY 1),
        ARRAY(SELECT unnest(s.setconfig) FROM pg_catalog.pg_db_role_setting s
              WHERE s.setrole = r.oid AND s.setdatabase = 0 ORDER BY 1)
    FROM pg_catalog.pg_roles r
    WHERE r.rolname !~ '^pg_'";

/// The roles now; `None` when they cannot be read (the rehearsal goes on,
/// without this check).
pub(super) async fn read(db: &Db) -> Option<Roles> {
    let rows = db.client.query(READ, &[]).await.ok()?;
    Some(
        rows.iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    Role {
                        attributes: r.get(1),
                        member_of: r.get(2),
                        settings: r.get(3),
                    },
                )
            })
            .collect(),
    )
}

/// What changed between `before` and `after` to the roles the scripts
/// name (`scripts`: every script's text, lowercased), as one warning;
/// `None` when nothing did. A role the scripts do not name was changed by
/// another session (a role made by a name the script computes is missed).
pub(super) fn changed(before: &Roles, after: &Roles, scripts: &str) -> Option<String> {
    let named = |n: &&String| scripts.contains(&n.to_lowercase());
    let created: Vec<&str> = after
        .keys()
        .filter(|n| !before.contains_key(*n))
        .filter(named)
        .map(String::as_str)
        .collect();
    let dropped: Vec<&str> = before
        .keys()
        .filter(|n| !after.contains_key(*n))
        .filter(named)
        .map(String::as_str)
        .collect();
    let mut altered = Vec::new();
    for (name, b) in before.iter().filter(|(n, _)| named(n)) {
        let Some(a) = after.get(name) else { continue };
        let mut what = Vec::new();
        if a.attributes != b.attributes {
            what.push(format!(
                "attributes `{}` → `{}`",
                b.attributes, a.attributes
            ));
        }
        if a.member_of != b.member_of {
            what.push(format!(
                "member of [{}] → [{}]",
                b.member_of.join(", "),
                a.member_of.join(", ")
            ));
        }
        if a.settings != b.settings {
            what.push(format!(
                "settings [{}] → [{}]",
                b.settings.join(", "),
                a.settings.join(", ")
            ));
        }
        if !what.is_empty() {
            altered.push(format!("{name} ({})", what.join("; ")));
        }
    }
    let mut parts = Vec::new();
    if !created.is_empty() {
        parts.push(format!("created {}", created.join(", ")));
    }
    if !altered.is_empty() {
        parts.push(format!("changed {}", altered.join(", ")));
    }
    if !dropped.is_empty() {
        parts.push(format!("dropped {}", dropped.join(", ")));
    }
    (!parts.is_empty()).then(|| {
        format!(
            "the cluster's roles changed while the rehearsal ran (by its migrations, unless another \
             session changed them meanwhile): {}. Roles belong to the cluster, not to a database: \
             dropping a scratch database, or a down that does not undo them, leaves them so. \
             runbook does not undo them; where nothing else uses them, drop or put them back by hand",
            parts.join("; ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(attributes: &str, member_of: &[&str], settings: &[&str]) -> Role {
        Role {
            attributes: attributes.into(),
            member_of: member_of.iter().map(|s| s.to_string()).collect(),
            settings: settings.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn created_changed_and_dropped_roles_are_named() {
        let before: Roles = [
            ("app".to_string(), role("LOGIN", &[], &[])),
            ("old".to_string(), role("", &[], &[])),
        ]
        .into();
        let scripts = "create role reader; grant reader to app; drop role old; -- and others";
        assert_eq!(changed(&before, &before, scripts), None);
        let after: Roles = [
            (
                "app".to_string(),
                role("LOGIN", &["reader"], &["search_path=app"]),
            ),
            ("reader".to_string(), role("", &[], &[])),
        ]
        .into();
        let w = changed(&before, &after, scripts).unwrap();
        assert!(
            w.contains(
                "created reader; changed app (member of [] → [reader]; settings [] → [search_path=app]); dropped old"
            ),
            "{w}"
        );
        // Roles the scripts do not name: another session's.
        let mut other = after.clone();
        other.insert("someone_elses".to_string(), role("", &[], &[]));
        assert_eq!(changed(&after, &other, scripts), None);
    }
}
