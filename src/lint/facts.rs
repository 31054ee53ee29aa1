//! What each statement does, as plain data the rules can judge in order:
//! the objects it creates and drops, the rows it writes, the keys and
//! indexes it adds. Read from squawk's syntax tree once per statement.

use squawk_syntax::ast::AstNode;
use squawk_syntax::{SourceFile, SyntaxKind as K, SyntaxNode};

use crate::pg::statements::{self, Statement};

/// A schema object a statement creates or drops, by normalized name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Obj {
    /// A table, view, index or sequence: they share one namespace.
    Relation(String),
    Column(String, String),
    Constraint(String, String),
    NotNull(String, String),
    Default(String, String),
    /// Anything else by its kind (`type`, `function`, `trigger`, ...).
    Named(&'static str, String),
}

impl Obj {
    /// The table whose data the object belongs to, when it is table data.
    pub fn table(&self) -> Option<&str> {
        match self {
            Obj::Relation(t)
            | Obj::Column(t, _)
            | Obj::Constraint(t, _)
            | Obj::NotNull(t, _)
            | Obj::Default(t, _) => Some(t),
            Obj::Named(..) => None,
        }
    }

    /// Whether `creator` (something a step created) brought this object
    /// into being: the object itself, or the table it lives in.
    pub fn made_by(&self, creator: &Obj) -> bool {
        self == creator
            || matches!(
                (self, creator),
                (Obj::Column(t, _) | Obj::Constraint(t, _) | Obj::NotNull(t, _) | Obj::Default(t, _),
                 Obj::Relation(c)) if t == c
            )
            // A column added NOT NULL or with a default also made those.
            || matches!((self, creator),
                (Obj::NotNull(t, c) | Obj::Default(t, c), Obj::Column(t2, c2)) if t == t2 && c == c2)
    }
}

impl std::fmt::Display for Obj {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Obj::Relation(t) => write!(f, "{t}"),
            Obj::Column(t, c) => write!(f, "column {t}.{c}"),
            Obj::Constraint(t, c) => write!(f, "constraint {c} on {t}"),
            Obj::NotNull(t, c) => write!(f, "NOT NULL on {t}.{c}"),
            Obj::Default(t, c) => write!(f, "the default of {t}.{c}"),
            Obj::Named(k, n) => write!(f, "{k} {n}"),
        }
    }
}

/// A CHECK (col IS NOT NULL) a statement adds.
#[derive(Debug, Clone, Default)]
pub struct NotNullCheck {
    pub name: Option<String>,
    pub column: String,
    pub not_valid: bool,
}

/// The CHECK (col IS NOT NULL) constraints seen so far: validated ones
/// (added without NOT VALID, or validated by name later) and pending ones.
/// `SET NOT NULL` skips its full scan only after a validated one.
#[derive(Debug, Clone, Default)]
pub struct NotNullChecks {
    validated: std::collections::BTreeSet<(String, String)>,
    /// (table, constraint name, column) added NOT VALID.
    pending: Vec<(String, String, String)>,
}

impl NotNullChecks {
    pub fn see(&mut self, f: &Facts) {
        for c in &f.not_null_checks {
            match (&c.name, c.not_valid) {
                (_, false) => {
                    self.validated.insert((f.table.clone(), c.column.clone()));
                }
                (Some(name), true) => {
                    self.pending
                        .push((f.table.clone(), name.clone(), c.column.clone()))
                }
                // NOT VALID with no name: nothing can validate it by name.
                (None, true) => {}
            }
        }
        for name in &f.validates {
            let validated = &mut self.validated;
            self.pending.retain(|(t, n, col)| {
                let hit = *t == f.table && n == name;
                if hit {
                    validated.insert((t.clone(), col.clone()));
                }
                !hit
            });
        }
    }

    pub fn validated(&self, table: &str, column: &str) -> bool {
        self.validated
            .contains(&(table.to_string(), column.to_string()))
    }

    /// A check on the column was added NOT VALID and not validated (yet).
    pub fn pending(&self, table: &str, column: &str) -> bool {
        self.pending
            .iter()
            .any(|(t, _, c)| t == table && c == column)
    }
}

/// What a statement does that the rules care about.
#[derive(Debug, Default)]
pub struct Facts {
    /// The statement's table (its first relation), normalized.
    pub table: String,
    /// Data it destroys: a description and the table, one per table.
    pub destructive: Vec<(String, String)>,
    /// UPDATE or DELETE of a table (with or without WHERE).
    pub writes_rows: bool,
    /// The write's WHERE pins rows by equality with constants (`id = 1`,
    /// `key IN ('a', 'b')`): a handful of rows, not a backfill.
    pub pinned_write: bool,
    /// `CREATE TABLE`: whether it said IF NOT EXISTS.
    pub creates_table: Option<bool>,
    /// Foreign keys it adds: (table, columns).
    pub foreign_keys: Vec<(String, Vec<String>)>,
    /// Indexes it adds, by columns: (table, columns).
    pub indexes: Vec<(String, Vec<String>)>,
    /// Columns added NOT NULL without a default.
    pub not_null_no_default: Vec<String>,
    /// `ALTER COLUMN c SET NOT NULL`.
    pub set_not_null: Vec<String>,
    pub not_null_checks: Vec<NotNullCheck>,
    /// `VALIDATE CONSTRAINT name`.
    pub validates: Vec<String>,
    pub creates: Vec<Obj>,
    pub drops: Vec<Obj>,
}

/// A name as PostgreSQL resolves it: unquoted parts folded to lower case,
/// quotes removed, `public.` dropped.
pub fn bare(name: &str) -> String {
    let parts: Vec<String> = name
        .split('.')
        .map(|p| {
            let p = p.trim();
            match p.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
                Some(q) => q.replace("\"\"", "\""),
                None => p.to_ascii_lowercase(),
            }
        })
        .collect();
    let joined = parts.join(".");
    joined
        .strip_prefix("public.")
        .map(str::to_string)
        .unwrap_or(joined)
}

fn text(node: &SyntaxNode) -> String {
    // Names never hold comments or line breaks worth keeping.
    let t = node.text().to_string();
    bare(&t.split_whitespace().collect::<Vec<_>>().join(""))
}

fn child(node: &SyntaxNode, kinds: &[K]) -> Option<SyntaxNode> {
    node.children().find(|c| kinds.contains(&c.kind()))
}

fn children(node: &SyntaxNode, kinds: &[K]) -> Vec<SyntaxNode> {
    node.children()
        .filter(|c| kinds.contains(&c.kind()))
        .collect()
}

fn has(node: &SyntaxNode, kind: K) -> bool {
    node.children_with_tokens().any(|c| c.kind() == kind)
}

fn descendant(node: &SyntaxNode, kind: K) -> Option<SyntaxNode> {
    node.descendants().find(|d| d.kind() == kind)
}

/// The column names of a list node (`(a, b)`).
fn columns(list: Option<SyntaxNode>) -> Vec<String> {
    list.map(|l| {
        l.descendants()
            .filter(|d| matches!(d.kind(), K::COLUMN_NAME_REF | K::NAME_REF | K::COLUMN_NAME))
            .map(|d| text(&d))
            .collect()
    })
    .unwrap_or_default()
}

/// The constraint's own name (`CONSTRAINT name ...`).
fn constraint_name(c: &SyntaxNode) -> Option<String> {
    child(c, &[K::CONSTRAINT_NAME_CLAUSE])
        .and_then(|n| child(&n, &[K::CONSTRAINT_NAME]))
        .map(|n| text(&n))
}

/// A table-level or column-level constraint: what it adds.
fn constraint(c: &SyntaxNode, table: &str, column: Option<&str>, f: &mut Facts) {
    let name = constraint_name(c);
    if let Some(n) = &name {
        f.creates.push(Obj::Constraint(table.into(), n.clone()));
    }
    let own = || column.map(|c| vec![c.to_string()]).unwrap_or_default();
    match c.kind() {
        K::FOREIGN_KEY_CONSTRAINT => {
            let cols = columns(child(c, &[K::FOREIGN_KEY_COLUMN_LIST]));
            f.foreign_keys.push((table.into(), cols));
        }
        K::REFERENCES_CONSTRAINT => f.foreign_keys.push((table.into(), own())),
        K::PRIMARY_KEY_CONSTRAINT | K::UNIQUE_CONSTRAINT => {
            let cols = columns(descendant(c, K::CONSTRAINT_COLUMN_REF_LIST));
            f.indexes
                .push((table.into(), if cols.is_empty() { own() } else { cols }));
        }
        K::NOT_NULL_CONSTRAINT => {
            if let Some(col) = column {
                f.creates.push(Obj::NotNull(table.into(), col.into()));
            }
        }
        K::DEFAULT_CONSTRAINT => {
            if let Some(col) = column {
                f.creates.push(Obj::Default(table.into(), col.into()));
            }
        }
        K::CHECK_CONSTRAINT => {
            // CHECK (col IS NOT NULL)
            if let Some(e) = child(c, &[K::BIN_EXPR])
                && has(&e, K::IS_NOT)
                && e.children()
                    .any(|x| x.kind() == K::LITERAL && x.text() == "NULL")
                && let Some(col) = child(&e, &[K::NAME_REF])
            {
                f.not_null_checks.push(NotNullCheck {
                    name,
                    column: text(&col),
                    not_valid: has(c, K::NOT_VALID),
                });
            }
        }
        _ => {}
    }
}

const CONSTRAINTS: &[K] = &[
    K::FOREIGN_KEY_CONSTRAINT,
    K::REFERENCES_CONSTRAINT,
    K::PRIMARY_KEY_CONSTRAINT,
    K::UNIQUE_CONSTRAINT,
    K::NOT_NULL_CONSTRAINT,
    K::DEFAULT_CONSTRAINT,
    K::CHECK_CONSTRAINT,
    K::EXCLUDE_CONSTRAINT,
];

/// A column definition (in CREATE TABLE or ADD COLUMN).
fn column_def(col: &SyntaxNode, table: &str, f: &mut Facts) -> Option<String> {
    let name = child(col, &[K::COLUMN_NAME]).map(|n| text(&n))?;
    f.creates.push(Obj::Column(table.into(), name.clone()));
    for c in children(col, CONSTRAINTS) {
        constraint(&c, table, Some(&name), f);
    }
    Some(name)
}

fn alter_table(node: &SyntaxNode, table: &str, f: &mut Facts) {
    let t = table.to_string();
    for action in node.children() {
        let col_ref = || child(&action, &[K::COLUMN_NAME_REF]).map(|n| text(&n));
        match action.kind() {
            K::ADD_COLUMN => {
                let generated = action
                    .descendants()
                    .any(|d| matches!(d.kind(), K::GENERATED_CONSTRAINT | K::DEFAULT_CONSTRAINT));
                let not_null = has_child_kind(&action, K::NOT_NULL_CONSTRAINT)
                    || has_child_kind(&action, K::PRIMARY_KEY_CONSTRAINT);
                if let Some(name) = column_def(&action, &t, f)
                    && not_null
                    && !generated
                {
                    f.not_null_no_default.push(name);
                }
            }
            K::DROP_COLUMN => {
                if let Some(c) = col_ref() {
                    f.destructive
                        .push((format!("{t}: DROP COLUMN {c}"), t.clone()));
                    f.drops.push(Obj::Column(t.clone(), c));
                }
            }
            K::ADD_CONSTRAINT => {
                for c in children(&action, CONSTRAINTS) {
                    constraint(&c, &t, None, f);
                }
            }
            K::DROP_CONSTRAINT => {
                if let Some(n) = child(&action, &[K::CONSTRAINT_NAME_REF]) {
                    f.drops.push(Obj::Constraint(t.clone(), text(&n)));
                }
            }
            K::VALIDATE_CONSTRAINT => {
                if let Some(n) = child(&action, &[K::CONSTRAINT_NAME_REF]) {
                    f.validates.push(text(&n));
                }
            }
            K::ALTER_COLUMN => {
                let Some(c) = col_ref() else { continue };
                for opt in action.children() {
                    match opt.kind() {
                        K::SET_NOT_NULL => {
                            f.set_not_null.push(c.clone());
                            f.creates.push(Obj::NotNull(t.clone(), c.clone()));
                        }
                        K::DROP_NOT_NULL => f.drops.push(Obj::NotNull(t.clone(), c.clone())),
                        K::SET_DEFAULT => f.creates.push(Obj::Default(t.clone(), c.clone())),
                        K::DROP_DEFAULT => f.drops.push(Obj::Default(t.clone(), c.clone())),
                        _ => {}
                    }
                }
            }
            K::RENAME_COLUMN => {
                if let (Some(from), Some(to)) = (col_ref(), child(&action, &[K::COLUMN_NAME])) {
                    f.drops.push(Obj::Column(t.clone(), from));
                    f.creates.push(Obj::Column(t.clone(), text(&to)));
                }
            }
            K::RENAME_CONSTRAINT => {
                let from = child(&action, &[K::CONSTRAINT_NAME_REF, K::NAME_REF]);
                let to = child(&action, &[K::CONSTRAINT_NAME]);
                if let (Some(from), Some(to)) = (from, to) {
                    f.drops.push(Obj::Constraint(t.clone(), text(&from)));
                    f.creates.push(Obj::Constraint(t.clone(), text(&to)));
                }
            }
            K::TABLE_RENAME_TO => {
                if let Some(to) = child(&action, &[K::TABLE_NAME]) {
                    f.drops.push(Obj::Relation(t.clone()));
                    f.creates.push(Obj::Relation(text(&to)));
                }
            }
            _ => {}
        }
    }
}

fn has_child_kind(node: &SyntaxNode, kind: K) -> bool {
    node.children().any(|c| c.kind() == kind)
}

/// `WHERE` conjuncts that pin rows: `col = constant`, `col IN (constants)`.
fn pins_rows(where_clause: &SyntaxNode) -> bool {
    fn constant(e: &SyntaxNode) -> bool {
        match e.kind() {
            K::LITERAL => true,
            K::PREFIX_EXPR | K::PAREN_EXPR | K::CAST_EXPR => e.children().all(|c| constant(&c)),
            K::TUPLE_EXPR => e.children().all(|c| constant(&c)),
            _ => false,
        }
    }
    fn pinned(e: &SyntaxNode) -> bool {
        if e.kind() == K::PAREN_EXPR {
            return e.children().any(|c| pinned(&c));
        }
        if e.kind() != K::BIN_EXPR {
            return false;
        }
        if has(e, K::AND_KW) {
            return e.children().any(|c| pinned(&c));
        }
        let parts: Vec<SyntaxNode> = e.children().collect();
        let [lhs, rhs] = parts.as_slice() else {
            return false;
        };
        let is_eq = has(e, K::EQ) || has(e, K::IN_KW);
        let is_col = |n: &SyntaxNode| matches!(n.kind(), K::NAME_REF | K::FIELD_EXPR);
        is_eq && ((is_col(lhs) && constant(rhs)) || (is_col(rhs) && constant(lhs)))
    }
    where_clause.children().any(|c| pinned(&c))
}

/// Generic CREATE/DROP of a named object, by its statement kind.
fn object_kind(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "TABLE" | "VIEW" | "INDEX" | "SEQUENCE" | "MATERIALIZED VIEW" | "TABLE AS" => "relation",
        "TYPE" => "type",
        "FUNCTION" => "function",
        "PROCEDURE" => "procedure",
        "TRIGGER" => "trigger",
        "SCHEMA" => "schema",
        "EXTENSION" => "extension",
        "DOMAIN" => "domain",
        "POLICY" => "policy",
        _ => return None,
    })
}

fn named(kind: &'static str, name: String) -> Obj {
    if kind == "relation" {
        Obj::Relation(name)
    } else {
        Obj::Named(kind, name)
    }
}

/// The name nodes a CREATE or DROP statement names, before any `(`.
fn object_names(node: &SyntaxNode, create: bool) -> Vec<String> {
    let skip = [
        K::IF_EXISTS,
        K::IF_NOT_EXISTS,
        K::OR_REPLACE,
        K::CASCADE,
        K::RESTRICT,
    ];
    let names = node
        .children()
        .filter(|c| !skip.contains(&c.kind()))
        .map(|c| {
            let t = c.text().to_string();
            let t = t.split('(').next().unwrap_or("").to_string();
            bare(&t.split_whitespace().collect::<Vec<_>>().join(""))
        })
        .filter(|t| !t.is_empty());
    // `DROP TRIGGER t ON tbl`, `CREATE INDEX i ON t`: only the first name is
    // the object; so is any CREATE's.
    if create || has(node, K::ON_KW) {
        names.take(1).collect()
    } else {
        names.collect()
    }
}

/// The tables a statement acts on, its own first (not the ones it
/// references): every table of `DROP TABLE a, b` and `TRUNCATE a, b`.
fn own_tables(node: &SyntaxNode) -> Vec<String> {
    match node.kind() {
        K::DROP_TABLE => children(node, &[K::TABLE_NAME_REF])
            .iter()
            .map(text)
            .collect(),
        K::TRUNCATE => child(node, &[K::TABLE_LIST])
            .map(|l| {
                children(&l, &[K::TABLE_RELATION_NAME])
                    .iter()
                    .map(text)
                    .collect()
            })
            .unwrap_or_default(),
        _ => node
            .children()
            .find(|c| {
                matches!(
                    c.kind(),
                    K::TABLE_RELATION_NAME | K::TABLE_NAME | K::RELATION_NAME | K::TABLE_NAME_REF
                )
            })
            .map(|c| vec![text(&c)])
            .unwrap_or_default(),
    }
}

fn facts(st: &Statement, node: Option<&SyntaxNode>) -> Facts {
    let mut f = Facts::default();
    let Some(node) = node else {
        return f;
    };
    let own = own_tables(node);
    f.table = own
        .first()
        .cloned()
        .or_else(|| st.relations.first().map(|t| bare(t)))
        .unwrap_or_default();
    let table = f.table.clone();
    let tables = || own.clone();
    match node.kind() {
        K::DROP_TABLE => {
            for t in tables() {
                f.destructive.push((format!("DROP TABLE {t}"), t.clone()));
                f.drops.push(Obj::Relation(t));
            }
        }
        K::TRUNCATE => {
            for t in tables() {
                f.destructive.push((format!("TRUNCATE {t}"), t));
            }
        }
        K::DELETE | K::UPDATE => {
            f.writes_rows = true;
            let verb = if node.kind() == K::DELETE {
                "DELETE FROM"
            } else {
                "UPDATE"
            };
            match child(node, &[K::WHERE_CLAUSE, K::WHERE_CURRENT_OF]) {
                None => f
                    .destructive
                    .push((format!("{verb} {table} without WHERE"), table.clone())),
                Some(w) => f.pinned_write = pins_rows(&w),
            }
        }
        K::CREATE_TABLE => {
            f.creates_table = Some(has(node, K::IF_NOT_EXISTS));
            f.creates.push(Obj::Relation(table.clone()));
            if let Some(args) = child(node, &[K::TABLE_ARG_LIST]) {
                for a in args.children() {
                    if a.kind() == K::COLUMN {
                        column_def(&a, &table, &mut f);
                    } else if CONSTRAINTS.contains(&a.kind()) {
                        constraint(&a, &table, None, &mut f);
                    }
                }
            }
        }
        K::CREATE_INDEX => {
            let target = child(node, &[K::TABLE_RELATION_NAME])
                .map(|t| text(&t))
                .unwrap_or(table);
            let cols = child(node, &[K::PARTITION_ITEM_LIST])
                .map(|l| l.children().map(|i| text(&i)).collect::<Vec<_>>())
                .unwrap_or_default();
            f.indexes.push((target, cols));
            if let Some(i) = child(node, &[K::INDEX]) {
                f.creates.push(Obj::Relation(text(&i)));
            }
        }
        K::ALTER_TABLE => alter_table(node, &table, &mut f),
        _ => {
            let kind = st.kind.as_str();
            if let Some(what) = kind.strip_prefix("CREATE ").and_then(object_kind) {
                for n in object_names(node, true) {
                    f.creates.push(named(what, n));
                }
            } else if let Some(what) = kind.strip_prefix("DROP ").and_then(object_kind) {
                for n in object_names(node, false) {
                    f.drops.push(named(what, n));
                }
            }
        }
    }
    f
}

/// Each statement of a parsed script with its facts: plain data, so files
/// can be read in parallel and judged in order. Statements and syntax
/// nodes come in the same order: one pass pairs them.
pub fn statement_facts(sql: &str, tree: &SourceFile) -> Vec<(Statement, Facts)> {
    let root = tree.syntax();
    let nodes: Vec<SyntaxNode> = root
        .children()
        .filter(|n| squawk_syntax::ast::Stmt::can_cast(n.kind()))
        .collect();
    let mut next = 0;
    statements::split_tree(sql, root)
        .into_iter()
        .map(|st| {
            while next < nodes.len() && usize::from(nodes[next].text_range().end()) <= st.offset {
                next += 1;
            }
            let node = nodes
                .get(next)
                .filter(|n| usize::from(n.text_range().start()) <= st.offset);
            let f = facts(&st, node);
            (st, f)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(sql: &str) -> Vec<Facts> {
        let parse = SourceFile::parse(sql);
        statement_facts(sql, &parse.tree())
            .into_iter()
            .map(|(_, f)| f)
            .collect()
    }

    #[test]
    fn create_table_declares_its_keys_and_indexes() {
        let f = &of(
            "CREATE TABLE IF NOT EXISTS s.x (id bigint PRIMARY KEY, p bigint REFERENCES y, q int, FOREIGN KEY (q) REFERENCES z (id));",
        )[0];
        assert_eq!(f.creates_table, Some(true));
        assert_eq!(
            f.foreign_keys,
            [
                ("s.x".to_string(), vec!["p".to_string()]),
                ("s.x".to_string(), vec!["q".to_string()])
            ]
        );
        assert_eq!(f.indexes, [("s.x".to_string(), vec!["id".to_string()])]);
    }

    #[test]
    fn alter_table_actions_create_and_drop_objects() {
        let f = &of(
            "ALTER TABLE t ADD COLUMN c bigint NOT NULL REFERENCES p (id), DROP COLUMN d, ADD CONSTRAINT k CHECK (c IS NOT NULL) NOT VALID, ALTER COLUMN e DROP NOT NULL, ALTER COLUMN f SET NOT NULL, RENAME COLUMN g TO h, VALIDATE CONSTRAINT k, DROP CONSTRAINT IF EXISTS z;",
        )[0];
        assert_eq!(f.not_null_no_default, ["c"]);
        assert_eq!(f.foreign_keys, [("t".to_string(), vec!["c".to_string()])]);
        assert_eq!(f.set_not_null, ["f"]);
        assert_eq!(f.validates, ["k"]);
        assert_eq!(f.not_null_checks.len(), 1);
        assert!(f.not_null_checks[0].not_valid);
        assert_eq!(
            f.drops,
            [
                Obj::Column("t".into(), "d".into()),
                Obj::NotNull("t".into(), "e".into()),
                Obj::Column("t".into(), "g".into()),
                Obj::Constraint("t".into(), "z".into()),
            ]
        );
        assert!(f.creates.contains(&Obj::Constraint("t".into(), "k".into())));
        assert!(f.creates.contains(&Obj::Column("t".into(), "h".into())));
    }

    #[test]
    fn every_table_of_a_truncate_or_drop_is_destroyed() {
        let f = of("TRUNCATE a, b;\nDROP TABLE IF EXISTS c, public.\"D\";");
        let tables = |f: &Facts| {
            f.destructive
                .iter()
                .map(|d| d.1.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(tables(&f[0]), ["a", "b"]);
        assert_eq!(tables(&f[1]), ["c", "D"]);
    }

    #[test]
    fn writes_pinned_by_key_equality_are_told_apart() {
        let f = of(
            "UPDATE settings SET v = 1 WHERE id = 1;\nUPDATE t SET v = 1 WHERE k IN ('a', 'b') AND x > 0;\nUPDATE t SET v = 1 WHERE created_at < now();\nDELETE FROM t WHERE v IS NULL;",
        );
        assert_eq!(
            f.iter().map(|f| f.pinned_write).collect::<Vec<_>>(),
            [true, true, false, false]
        );
    }

    #[test]
    fn other_objects_are_named_by_kind() {
        let f = of(
            "CREATE TYPE mood AS ENUM ('a');\nDROP TYPE IF EXISTS mood;\nDROP INDEX CONCURRENTLY IF EXISTS a, b;\nCREATE VIEW v AS SELECT 1;",
        );
        assert_eq!(f[0].creates, [Obj::Named("type", "mood".into())]);
        assert_eq!(f[1].drops, [Obj::Named("type", "mood".into())]);
        assert_eq!(
            f[2].drops,
            [Obj::Relation("a".into()), Obj::Relation("b".into())]
        );
        assert_eq!(f[3].creates, [Obj::Relation("v".into())]);
    }
}
