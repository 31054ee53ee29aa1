//! Splitting SQL into statements with squawk's PostgreSQL parser, and what
//! each statement means for locks and transactions.
//!
//! The parser decides where a statement ends, so a semicolon inside a string,
//! a comment, a dollar-quoted body or a `BEGIN ATOMIC ... END` body never
//! splits one. Nothing is dropped: text the parser could not make sense of is
//! kept and sent as written, so the server reports the real syntax error.

use squawk_syntax::ast::AstNode;
use squawk_syntax::{SourceFile, SyntaxKind, SyntaxNode};

/// Locks that conflict with `ROW EXCLUSIVE`: while one is held or waited
/// for, every write to the table queues behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lock {
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

impl Lock {
    pub fn name(self) -> &'static str {
        match self {
            Lock::Share => "SHARE",
            Lock::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            Lock::Exclusive => "EXCLUSIVE",
            Lock::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }
}

/// One statement as it will be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// From its first token to its end, semicolon included.
    pub text: String,
    /// Byte offset of `text` in the source.
    pub offset: usize,
    /// `CREATE INDEX`, `ALTER TABLE`, ...; `unparsed` for text the parser rejected.
    pub kind: String,
    /// Why it cannot run inside a transaction block.
    pub no_transaction: Option<&'static str>,
    /// The strongest write-blocking lock it takes, if any.
    pub lock: Option<Lock>,
    /// Relations it names, as written (`public."Orders"`).
    pub relations: Vec<String>,
    /// `CREATE INDEX CONCURRENTLY`: it waits for every older transaction,
    /// and a failure leaves an INVALID index behind.
    pub concurrent_index: bool,
    /// `BEGIN`, `COMMIT`, `ROLLBACK` and the like.
    pub transaction_control: bool,
    /// The index a `CREATE INDEX` names, as written; None when PostgreSQL picks the name.
    pub index: Option<String>,
    /// What data it destroys, when it destroys some: `DROP TABLE`,
    /// `TRUNCATE`, `DROP SCHEMA`, `DROP COLUMN`, or a `DELETE` with no
    /// `WHERE`.
    pub destroys: Option<&'static str>,
}

impl Statement {
    /// A one-line summary: `CREATE INDEX CONCURRENTLY on orders`.
    pub fn summary(&self) -> String {
        let mut s = self.kind.clone();
        if self.concurrent_index {
            s.push_str(" CONCURRENTLY");
        }
        if !self.relations.is_empty() {
            s.push_str(" on ");
            s.push_str(&self.relations.join(", "));
        }
        s
    }
}

/// Split `sql` into statements. Pieces holding only comments are skipped.
pub fn split(sql: &str) -> Vec<Statement> {
    split_tree(sql, &SourceFile::parse(sql).syntax_node())
}

/// [`split`] over an already parsed `sql`, for callers that parse once and
/// use the tree for more (the linter).
///
/// A statement ends at its semicolon, as in psql. When the parser gives up
/// inside a statement (a typo, a template it cannot read, syntax it does
/// not know), it ends the statement node early and leaves the rest as loose
/// tokens: `DELETE FROM orders WEHRE id = 5;` would become `DELETE FROM
/// orders WEHRE`, which deletes every row, and `id = 5`. So a piece that
/// does not end in a semicolon is never sent alone: it is joined with what
/// follows, up to the next semicolon, and the server sees the statement as
/// written and rejects it (or runs it, when it is syntax the parser does
/// not know).
pub fn split_tree(sql: &str, root: &SyntaxNode) -> Vec<Statement> {
    let mut out = Vec::new();
    // Pieces since the last semicolon: statements the parser ended early,
    // and non-trivia text that belongs to no statement (parse errors).
    let mut open: Vec<Statement> = Vec::new();
    let mut loose: Option<(usize, usize)> = None;
    let flush = |loose: &mut Option<(usize, usize)>, open: &mut Vec<Statement>| {
        if let Some((start, end)) = loose.take() {
            open.push(unparsed(sql, start, end));
        }
    };
    for child in root.children_with_tokens() {
        let range = child.text_range();
        let (start, end) = (usize::from(range.start()), usize::from(range.end()));
        if let Some(node) = child.as_node().filter(|n| is_statement(n)) {
            flush(&mut loose, &mut open);
            open.push(classify(node, sql, start, end));
            if ends_in_semicolon(node) {
                out.push(joined(sql, std::mem::take(&mut open)));
            }
        } else if matches!(child.kind(), SyntaxKind::WHITESPACE | SyntaxKind::COMMENT) {
            if let Some(l) = &mut loose {
                l.1 = end;
            }
        } else {
            let l = loose.get_or_insert((start, end));
            l.1 = end;
        }
    }
    flush(&mut loose, &mut open);
    if !open.is_empty() {
        out.push(joined(sql, open));
    }
    out
}

fn ends_in_semicolon(node: &SyntaxNode) -> bool {
    std::iter::successors(node.last_token(), |t| t.prev_token())
        .find(|t| !t.kind().is_trivia())
        .is_some_and(|t| t.kind() == SyntaxKind::SEMICOLON)
}

/// One piece from the pieces up to a semicolon. A lone piece stays as it
/// was classified. Several are one statement the parser could not read:
/// `unparsed`, sent whole, keeping the first piece's cautions (its lock,
/// that it cannot run in a transaction, what it may destroy), since the
/// server may still run it.
fn joined(sql: &str, mut pieces: Vec<Statement>) -> Statement {
    if pieces.len() == 1 {
        return pieces.remove(0);
    }
    let first = pieces.remove(0);
    let last = pieces.last().map_or(&first, |l| l);
    let end = last.offset + last.text.len();
    Statement {
        text: sql[first.offset..end].to_string(),
        kind: "unparsed".into(),
        index: None,
        ..first
    }
}

fn is_statement(node: &SyntaxNode) -> bool {
    squawk_syntax::ast::Stmt::can_cast(node.kind())
}

fn unparsed(sql: &str, start: usize, end: usize) -> Statement {
    Statement {
        text: sql[start..end].trim_end().to_string(),
        offset: start,
        kind: "unparsed".into(),
        no_transaction: None,
        lock: None,
        relations: Vec::new(),
        concurrent_index: false,
        transaction_control: false,
        index: None,
        destroys: None,
    }
}

fn has_token(node: &SyntaxNode, kind: SyntaxKind) -> bool {
    node.children_with_tokens().any(|c| c.kind() == kind)
}

fn has_descendant(node: &SyntaxNode, kind: SyntaxKind) -> bool {
    node.descendants_with_tokens().any(|c| c.kind() == kind)
}

/// The relations a statement names: tables, indexes, views.
fn relations(node: &SyntaxNode) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in node.descendants() {
        if matches!(
            d.kind(),
            SyntaxKind::TABLE_NAME_REF
                | SyntaxKind::TABLE_NAME
                | SyntaxKind::RELATION_NAME_REF
                | SyntaxKind::INDEX_REF
                | SyntaxKind::VIEW_REF
        ) {
            let name = d.text().to_string();
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

fn kind_name(kind: SyntaxKind) -> String {
    let k = format!("{kind:?}");
    match k.as_str() {
        "COMMIT_TRANSACTION" => "COMMIT".into(),
        "ROLLBACK_TRANSACTION" => "ROLLBACK".into(),
        "LOCK" => "LOCK TABLE".into(),
        "REFRESH" => "REFRESH MATERIALIZED VIEW".into(),
        _ => k.replace('_', " "),
    }
}

// Long by design: one arm per statement kind, with the lock it takes.
fn classify(node: &SyntaxNode, sql: &str, start: usize, end: usize) -> Statement {
    use SyntaxKind as K;
    let kind = node.kind();
    let concurrently = has_token(node, K::CONCURRENTLY_KW);
    let mut concurrent_index = false;
    let mut no_transaction = None;
    let lock = match kind {
        K::CREATE_INDEX if concurrently => {
            concurrent_index = true;
            no_transaction =
                Some("CREATE INDEX CONCURRENTLY cannot run inside a transaction block");
            None
        }
        K::CREATE_INDEX => Some(Lock::Share),
        K::DROP_INDEX if concurrently => {
            no_transaction = Some("DROP INDEX CONCURRENTLY cannot run inside a transaction block");
            None
        }
        K::REINDEX if has_descendant(node, K::CONCURRENTLY_KW) => {
            no_transaction = Some("REINDEX CONCURRENTLY cannot run inside a transaction block");
            None
        }
        K::REINDEX | K::CREATE_TRIGGER => Some(if kind == K::REINDEX {
            Lock::Share
        } else {
            Lock::ShareRowExclusive
        }),
        K::ALTER_TABLE => alter_table_lock(node, &mut no_transaction),
        K::VACUUM => {
            no_transaction = Some("VACUUM cannot run inside a transaction block");
            let full = node
                .descendants()
                .any(|d| d.kind() == K::VACUUM_OPTION_NAME && d.text() == "FULL")
                || has_token(node, K::FULL_KW);
            full.then_some(Lock::AccessExclusive)
        }
        K::REFRESH if concurrently => Some(Lock::Exclusive),
        K::LOCK => lock_mode(node),
        K::CLUSTER => {
            if !has_descendant(node, K::TABLE_NAME_REF) {
                no_transaction =
                    Some("CLUSTER without a table cannot run inside a transaction block");
            }
            Some(Lock::AccessExclusive)
        }
        K::DROP_TABLE
        | K::TRUNCATE
        | K::DROP_VIEW
        | K::DROP_MATERIALIZED_VIEW
        | K::ALTER_INDEX
        | K::ALTER_VIEW
        | K::ALTER_MATERIALIZED_VIEW
        | K::DROP_TRIGGER
        | K::CREATE_RULE
        | K::DROP_RULE
        | K::CREATE_POLICY
        | K::ALTER_POLICY
        | K::DROP_POLICY
        | K::REFRESH
        | K::DROP_INDEX => Some(Lock::AccessExclusive),
        K::CREATE_DATABASE | K::DROP_DATABASE => {
            no_transaction = Some("CREATE and DROP DATABASE cannot run inside a transaction block");
            None
        }
        K::ALTER_SYSTEM => {
            no_transaction = Some("ALTER SYSTEM cannot run inside a transaction block");
            None
        }
        K::CREATE_TABLESPACE | K::DROP_TABLESPACE => {
            no_transaction =
                Some("CREATE and DROP TABLESPACE cannot run inside a transaction block");
            None
        }
        K::CREATE_SUBSCRIPTION | K::DROP_SUBSCRIPTION => {
            no_transaction = Some(
                "a subscription that manages a replication slot cannot be changed inside a transaction block",
            );
            None
        }
        _ => None,
    };
    let transaction_control = matches!(
        kind,
        K::BEGIN
            | K::COMMIT_TRANSACTION
            | K::ROLLBACK_TRANSACTION
            | K::PREPARE_TRANSACTION
            | K::COMMIT_PREPARED
            | K::ROLLBACK_PREPARED
    );
    // Relations of lock-taking statements (for blockers), and of the row
    // writes and table creations the linter's set-wide rules follow.
    let named = lock.is_some()
        || concurrent_index
        || concurrently
        || matches!(kind, K::UPDATE | K::DELETE | K::CREATE_TABLE);
    let destroys = match kind {
        K::DROP_TABLE => Some("DROP TABLE"),
        K::TRUNCATE => Some("TRUNCATE"),
        K::DROP_SCHEMA => Some("DROP SCHEMA"),
        K::ALTER_TABLE if node.children().any(|a| a.kind() == K::DROP_COLUMN) => {
            Some("DROP COLUMN")
        }
        K::DELETE if !has_descendant(node, K::WHERE_CLAUSE) => Some("DELETE without WHERE"),
        _ => None,
    };
    Statement {
        destroys,
        text: sql[start..end].to_string(),
        offset: start,
        kind: kind_name(kind),
        no_transaction,
        lock,
        relations: if named { relations(node) } else { Vec::new() },
        concurrent_index,
        transaction_control,
        index: (kind == K::CREATE_INDEX)
            .then(|| node.children().find(|c| c.kind() == K::INDEX))
            .flatten()
            .map(|n| n.text().to_string().trim().to_string()),
    }
}

/// ALTER TABLE takes ACCESS EXCLUSIVE unless every action is one of the
/// few that take less (PostgreSQL docs, "ALTER TABLE", Notes).
fn alter_table_lock(node: &SyntaxNode, no_transaction: &mut Option<&'static str>) -> Option<Lock> {
    use SyntaxKind as K;
    let mut strongest: Option<Lock> = None;
    let mut any = false;
    for action in node.children() {
        let lock = match action.kind() {
            K::TABLE_RELATION_NAME => continue,
            K::VALIDATE_CONSTRAINT => None,
            K::DETACH_PARTITION if has_descendant(&action, K::DETACH_CONCURRENTLY) => {
                *no_transaction =
                    Some("DETACH PARTITION CONCURRENTLY cannot run inside a transaction block");
                None
            }
            K::ADD_CONSTRAINT if has_descendant(&action, K::FOREIGN_KEY_CONSTRAINT) => {
                Some(Lock::ShareRowExclusive)
            }
            _ => Some(Lock::AccessExclusive),
        };
        any = true;
        strongest = strongest.max(lock);
    }
    if any {
        strongest
    } else {
        Some(Lock::AccessExclusive)
    }
}

fn lock_mode(node: &SyntaxNode) -> Option<Lock> {
    let Some(clause) = node
        .children()
        .find(|c| c.kind() == SyntaxKind::LOCK_MODE_CLAUSE)
    else {
        return Some(Lock::AccessExclusive);
    };
    let mode = clause
        .text()
        .to_string()
        .split_whitespace()
        .map(str::to_ascii_uppercase)
        .collect::<Vec<_>>()
        .join(" ");
    let mode = mode.trim_start_matches("IN ").trim_end_matches(" MODE");
    match mode {
        "SHARE" => Some(Lock::Share),
        "SHARE ROW EXCLUSIVE" => Some(Lock::ShareRowExclusive),
        "EXCLUSIVE" => Some(Lock::Exclusive),
        "ACCESS EXCLUSIVE" => Some(Lock::AccessExclusive),
        _ => None,
    }
}

/// How a step's statements run, decided from the statements themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// One transaction around all of them.
    Transaction,
    /// Each commits on its own, because the step asked for it.
    Autocommit,
    /// Each commits on its own, because this statement cannot run in a
    /// transaction block (index into the statements, and why).
    Forced(usize, &'static str),
}

pub fn mode(stmts: &[Statement], transaction: bool) -> Mode {
    match stmts.iter().position(|s| s.no_transaction.is_some()) {
        Some(i) if transaction => Mode::Forced(i, stmts[i].no_transaction.unwrap_or_default()),
        _ if transaction => Mode::Transaction,
        _ => Mode::Autocommit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str) -> Vec<String> {
        split(sql).into_iter().map(|s| s.kind).collect()
    }

    #[test]
    fn semicolons_inside_strings_comments_and_bodies_do_not_split() {
        let sql = "-- a; comment\nSELECT 'it''s; fine';\n/* b; */ DO $x$ BEGIN RAISE NOTICE 'a;b'; END $x$;\n\
                   CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;\n\
                   SELECT E'\\';' -- trailing;\n";
        let s = split(sql);
        assert_eq!(kinds(sql), ["SELECT", "DO", "CREATE FUNCTION", "SELECT"]);
        assert_eq!(s[0].text, "SELECT 'it''s; fine';");
        assert_eq!(&sql[s[1].offset..s[1].offset + 2], "DO");
        assert!(s[2].text.ends_with("END;"));
    }

    /// What destroys data, and what only looks like it.
    #[test]
    fn statements_that_destroy_data_say_what() {
        let d = |sql: &str| split(sql)[0].destroys;
        assert_eq!(d("DROP TABLE t;"), Some("DROP TABLE"));
        assert_eq!(d("TRUNCATE t;"), Some("TRUNCATE"));
        assert_eq!(d("DROP SCHEMA s CASCADE;"), Some("DROP SCHEMA"));
        assert_eq!(
            d("ALTER TABLE t ADD COLUMN a int, DROP COLUMN b;"),
            Some("DROP COLUMN")
        );
        assert_eq!(d("DELETE FROM t;"), Some("DELETE without WHERE"));
        assert_eq!(d("DELETE FROM t WHERE id = 1;"), None);
        assert_eq!(d("ALTER TABLE t ADD COLUMN a int;"), None);
        assert_eq!(d("DROP INDEX i;"), None);
    }

    #[test]
    fn comment_only_pieces_are_skipped() {
        assert!(split("-- nothing\n/* at all; */\n").is_empty());
        assert_eq!(kinds("SELECT 1;\n-- done;\n"), ["SELECT"]);
    }

    #[test]
    fn concurrently_runs_outside_a_transaction() {
        let s = &split("CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON public.t (a);")[0];
        assert!(s.concurrent_index);
        assert!(s.no_transaction.is_some());
        assert_eq!(s.lock, None);
        assert_eq!(s.relations, ["public.t"]);
        assert_eq!(s.index.as_deref(), Some("i"));
        // The word in a comment or string is not the keyword.
        let s = &split("CREATE INDEX /* CONCURRENTLY */ i ON t (a);")[0];
        assert!(!s.concurrent_index);
        assert_eq!(s.lock, Some(Lock::Share));
        for sql in [
            "DROP INDEX CONCURRENTLY i;",
            "REINDEX TABLE CONCURRENTLY t;",
            "VACUUM t;",
            "ALTER TABLE t DETACH PARTITION p CONCURRENTLY;",
            "CREATE DATABASE x;",
        ] {
            assert!(split(sql)[0].no_transaction.is_some(), "{sql}");
        }
    }

    #[test]
    fn strong_locks_and_their_relations() {
        let lock = |sql: &str| split(sql)[0].lock;
        assert_eq!(
            lock("ALTER TABLE t ADD COLUMN c int;"),
            Some(Lock::AccessExclusive)
        );
        assert_eq!(lock("ALTER TABLE t VALIDATE CONSTRAINT c;"), None);
        assert_eq!(
            lock("ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES u (id) NOT VALID;"),
            Some(Lock::ShareRowExclusive)
        );
        assert_eq!(lock("LOCK TABLE t IN SHARE MODE;"), Some(Lock::Share));
        assert_eq!(lock("LOCK TABLE t IN ROW SHARE MODE;"), None);
        assert_eq!(lock("LOCK t;"), Some(Lock::AccessExclusive));
        assert_eq!(lock("VACUUM (FULL) t;"), Some(Lock::AccessExclusive));
        assert_eq!(lock("UPDATE t SET a = 1;"), None);
        assert_eq!(lock("DROP TABLE a, s.b;"), Some(Lock::AccessExclusive));
        assert_eq!(split("DROP TABLE a, s.b;")[0].relations, ["a", "s.b"]);
        assert_eq!(
            split("ALTER TABLE \"Ord\".x ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES u (id);")[0]
                .relations,
            ["\"Ord\".x", "u"]
        );
    }

    #[test]
    fn transaction_control_is_recognised() {
        let s = split("BEGIN; UPDATE t SET a = 1; COMMIT;");
        assert_eq!(
            kinds("BEGIN; UPDATE t SET a = 1; COMMIT;"),
            ["BEGIN", "UPDATE", "COMMIT"]
        );
        assert!(s[0].transaction_control && s[2].transaction_control);
        assert!(!s[1].transaction_control);
        // Every way to open one is one kind.
        assert_eq!(
            kinds("START TRANSACTION; BEGIN WORK; BEGIN ISOLATION LEVEL SERIALIZABLE;"),
            ["BEGIN", "BEGIN", "BEGIN"]
        );
    }

    #[test]
    fn a_statement_the_parser_ended_early_is_sent_whole_up_to_its_semicolon() {
        // Each first piece alone is a valid statement that does far more
        // than what was written; psql sends the whole line and the server
        // rejects it.
        for (sql, whole) in [
            (
                "DELETE FROM orders WEHRE id = 5; SELECT 2;",
                "DELETE FROM orders WEHRE id = 5;",
            ),
            (
                "TRUNCATE orders WHERE id = 5;",
                "TRUNCATE orders WHERE id = 5;",
            ),
            (
                "DELETE FROM orders {{ w }}; SELECT 2;",
                "DELETE FROM orders {{ w }};",
            ),
            (
                "DELETE FROM t WHERE id = 5 RETURNIN id;",
                "DELETE FROM t WHERE id = 5 RETURNIN id;",
            ),
            (
                "DROP TABLE a, b CASCADE RESTRICT;",
                "DROP TABLE a, b CASCADE RESTRICT;",
            ),
            (
                "DELETE FROM orders\nSELECT 1;",
                "DELETE FROM orders\nSELECT 1;",
            ),
        ] {
            let s = split(sql);
            assert_eq!(s[0].text, whole, "{sql}: {s:#?}");
            assert_eq!(s[0].kind, "unparsed", "{sql}");
            assert_eq!(
                s.len(),
                if sql.ends_with("SELECT 2;") { 2 } else { 1 },
                "{sql}: {s:#?}"
            );
        }
        // The joined piece keeps the first piece's cautions.
        let s = split("CREATE INDEX CONCURRENTLY i ON t (a) WTIH (fillfactor = 70);");
        assert_eq!(s.len(), 1, "{s:#?}");
        assert!(s[0].no_transaction.is_some());
        // What parses is untouched.
        assert_eq!(
            kinds("SELECT 1; DELETE FROM t WHERE id = 1;"),
            ["SELECT", "DELETE"]
        );
        assert_eq!(split("SELECT 1")[0].text, "SELECT 1");
    }

    #[test]
    fn unparsable_text_is_kept_not_dropped() {
        let sql = "SELECT 1; SELEC oops; SELECT 2;";
        let s = split(sql);
        let all: String = s
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(all.contains("oops"), "{s:?}");
        assert!(all.contains("SELECT 2"), "{s:?}");
    }
}
