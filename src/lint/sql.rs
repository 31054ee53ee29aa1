//! squawk's rules over one script, and what the runner's knowledge changes
//! in what they found: parse errors first, tables known to be empty,
//! timeouts the runner sets. Every step is one pass over the findings.

use squawk_linter::{Linter, Rule, Version};
use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::{SourceFile, SyntaxElement};

use super::facts::{self, Facts};
use super::psql;
use super::{Config, Finding, Note, Place, Report, SYNTAX_ERROR, Severity, SqlContext};
use crate::pg::statements::Statement;

/// Which rule a raw finding is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Squawk(Rule),
    /// The SQL does not parse (squawk's `syntax-error`).
    Syntax,
    /// A line only psql reads (runbook's `psql-meta-command`).
    Psql,
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Code::Squawk(r) => write!(f, "{r}"),
            Code::Syntax => f.write_str(SYNTAX_ERROR),
            Code::Psql => f.write_str(psql::RULE.0),
        }
    }
}

/// A finding before it is located in its file: byte range in the script.
pub struct Raw {
    pub code: Code,
    pub start: usize,
    pub end: usize,
    pub message: String,
    pub help: Option<String>,
}

/// A script read once: its statements with their facts, and what squawk
/// (or the parser) found in it. Plain data: built on any thread.
pub struct Script {
    pub stmts: Vec<(Statement, Facts)>,
    pub raw: Vec<Raw>,
    /// squawk's findings that do not hold, at their byte offsets, each
    /// with why: a note, not a finding.
    pub accepted: Vec<(usize, String)>,
    /// It does not parse: `raw` holds the syntax errors only (as squawk
    /// reports such a file), and the rules did not run.
    pub unparsed: bool,
}

impl Script {
    pub fn read(sql: &str, ctx: SqlContext, config: &Config) -> Self {
        Self::read_in(sql, config, |_| ctx).0
    }

    /// [`Script::read`] when the context depends on the statements (a
    /// migration's transaction mode): parsed once, whatever it needs.
    pub fn read_in(
        sql: &str,
        config: &Config,
        context: impl FnOnce(&[(Statement, Facts)]) -> SqlContext,
    ) -> (Self, SqlContext) {
        let mut parse = SourceFile::parse(sql);
        // psql's lines are findings of their own, and blanked for the
        // parser, so that the rest of the script is linted.
        let meta = if parse.errors().is_empty() {
            Vec::new()
        } else {
            psql::find(sql, &parse.syntax_node())
        };
        let blanked;
        let sql = if meta.is_empty() {
            sql
        } else {
            blanked = psql::blank(sql, &meta);
            parse = SourceFile::parse(&blanked);
            blanked.as_str()
        };
        let mut raw: Vec<Raw> = meta
            .iter()
            .map(|m| Raw {
                code: Code::Psql,
                start: m.start,
                end: m.end,
                message: m.message(),
                help: Some(m.help()),
            })
            .collect();
        let errors = parse.errors();
        let stmts = facts::statement_facts(sql, &parse.tree());
        let ctx = context(&stmts);
        let unparsed = !errors.is_empty();
        let mut accepted = Vec::new();
        raw.extend(if unparsed {
            errors
                .into_iter()
                .map(|e| {
                    let r = e.range();
                    Raw {
                        code: Code::Syntax,
                        start: usize::from(r.start()),
                        end: usize::from(r.end()),
                        message: e.message().to_string(),
                        help: None,
                    }
                })
                .collect::<Vec<_>>()
        } else {
            let mut linter = Linter::with_rules(&config.include, &config.exclude);
            linter.settings.assume_in_transaction = ctx.in_transaction;
            if let Some(v) = config.pg_version {
                linter.settings.pg_version = v;
            }
            // As squawk compares: "11" is not yet a version that keeps a
            // constant default from rewriting the table.
            let eleven: Version = "11".parse().expect("a version");
            let rewrites = linter.settings.pg_version.partial_cmp(&eleven)
                != Some(std::cmp::Ordering::Greater);
            let root = parse.syntax_node();
            linter
                .lint(&parse, sql)
                .into_iter()
                .filter_map(|v| {
                    let (start, end) = (v.text_range.start(), v.text_range.end());
                    let (start, end) = (usize::from(start), usize::from(end));
                    if v.code == Rule::AddingFieldWithDefault
                        && !rewrites
                        && constant_at(&root.covering_element(v.text_range))
                    {
                        accepted.push((
                            start,
                            format!(
                                "adding-field-with-default accepted: the default `{}` is not volatile, \
                                 so PostgreSQL 11 and later evaluate it once and add the column without \
                                 rewriting the table",
                                &sql[start..end]
                            ),
                        ));
                        return None;
                    }
                    Some(Raw {
                        code: Code::Squawk(v.code),
                        start,
                        end,
                        message: v.message,
                        help: v.help,
                    })
                })
                .collect::<Vec<_>>()
        });
        if !unparsed {
            assured(&parse.syntax_node(), &mut raw, &mut accepted);
        }
        (
            Script {
                stmts,
                raw,
                accepted,
                unparsed,
            },
            ctx,
        )
    }

    /// The statement a byte offset falls in (the last one starting at or
    /// before it).
    pub fn statement_at(&self, offset: usize) -> Option<&(Statement, Facts)> {
        let i = self.stmts.partition_point(|(s, _)| s.offset <= offset);
        i.checked_sub(1).map(|i| &self.stmts[i])
    }

    /// Tables this script creates that count as new for what follows: a
    /// plain `CREATE TABLE` (IF NOT EXISTS may find a table full of rows).
    pub fn created_tables(&self) -> impl Iterator<Item = &str> {
        self.stmts
            .iter()
            .filter(|(_, f)| f.creates_table == Some(false))
            .map(|(_, f)| f.table.as_str())
    }
}

/// Built-in functions every overload of which is immutable or stable in
/// `pg_catalog` (tests/lint.rs checks each against a real server's
/// `pg_proc`), among those defaults call: a call of one on values that are
/// not volatile is not volatile. A built-in's name is found in
/// `pg_catalog` first, whatever the search path, unless the name is
/// qualified with another schema.
pub const NON_VOLATILE_CALLS: &[&str] = &[
    "abs",
    "age",
    "array_append",
    "array_cat",
    "array_fill",
    "array_prepend",
    "array_remove",
    "array_to_string",
    "btrim",
    "ceil",
    "concat",
    "concat_ws",
    "current_database",
    "current_setting",
    "date_part",
    "date_trunc",
    "daterange",
    "floor",
    "format",
    "initcap",
    "int4range",
    "int8range",
    "json_build_array",
    "json_build_object",
    "jsonb_build_array",
    "jsonb_build_object",
    "jsonb_set",
    "left",
    "length",
    "lower",
    "lpad",
    "make_date",
    "make_interval",
    "make_time",
    "make_timestamp",
    "make_timestamptz",
    "md5",
    "now",
    "numrange",
    "power",
    "repeat",
    "replace",
    "right",
    "round",
    "rpad",
    "split_part",
    "statement_timestamp",
    "string_to_array",
    "timezone",
    "to_char",
    "to_date",
    "to_json",
    "to_jsonb",
    "to_number",
    "to_timestamp",
    "transaction_timestamp",
    "translate",
    "tsrange",
    "tstzrange",
    "upper",
];

/// Those of [`NON_VOLATILE_CALLS`] that take no arguments.
pub const NO_ARGUMENTS: &[&str] = &[
    "current_database",
    "now",
    "statement_timestamp",
    "transaction_timestamp",
];

/// Whether the expression `at` (the finding's node) is one squawk's
/// `adding-field-with-default` takes for volatile and is not: a signed
/// number (`-1`), a value in parentheses (`(0)`), SQL's value keywords
/// besides `CURRENT_TIMESTAMP` (`CURRENT_DATE`, `LOCALTIMESTAMP`,
/// `CURRENT_USER`...), a call of a built-in of [`NON_VOLATILE_CALLS`]
/// (`to_timestamp(0)`, `date_trunc('day', now())`), and sums of these,
/// cast or not. PostgreSQL 11 and later evaluate such a default once and
/// store it, without rewriting the table.
fn constant_at(at: &SyntaxElement) -> bool {
    use squawk_syntax::SyntaxKind as K;
    /// Stable, not volatile: the same all through the statement.
    const VALUE_KEYWORDS: &[K] = &[
        K::CURRENT_DATE_KW,
        K::CURRENT_TIME_KW,
        K::CURRENT_TIMESTAMP_KW,
        K::LOCALTIME_KW,
        K::LOCALTIMESTAMP_KW,
        K::CURRENT_USER_KW,
        K::SESSION_USER_KW,
        K::USER_KW,
        K::CURRENT_ROLE_KW,
        K::CURRENT_CATALOG_KW,
        K::CURRENT_SCHEMA_KW,
    ];
    fn constant(e: &ast::Expr) -> bool {
        match e {
            ast::Expr::Literal(_) => true,
            ast::Expr::NameRef(n) => n
                .syntax()
                .first_child_or_token()
                .is_some_and(|t| VALUE_KEYWORDS.contains(&t.kind())),
            ast::Expr::BinExpr(b) => {
                b.lhs().is_some_and(|e| constant(&e)) && b.rhs().is_some_and(|e| constant(&e))
            }
            ast::Expr::PrefixExpr(p) => {
                matches!(
                    p.op(),
                    Some(ast::PrefixOp::Minus(_) | ast::PrefixOp::Plus(_))
                ) && p.expr().is_some_and(|e| constant(&e))
            }
            ast::Expr::ParenExpr(p) => p.expr().is_some_and(|e| constant(&e)),
            ast::Expr::CastExpr(c) => c.expr().is_some_and(|e| constant(&e)),
            ast::Expr::CallExpr(c) => {
                let name = match c.expr() {
                    Some(ast::Expr::NameRef(n)) => n.text().to_string(),
                    // `pg_catalog.to_timestamp(0)`.
                    Some(ast::Expr::FieldExpr(f)) => match (f.base(), f.field()) {
                        (Some(ast::Expr::NameRef(schema)), Some(field))
                            if schema.text().eq_ignore_ascii_case("pg_catalog") =>
                        {
                            field.text().to_string()
                        }
                        _ => return false,
                    },
                    _ => return false,
                };
                let name = name.to_ascii_lowercase();
                NON_VOLATILE_CALLS.contains(&name.as_str())
                    && c.arg_list().is_some_and(|args| {
                        // `now(123)` is no call PostgreSQL takes.
                        args.args().next().is_none() || !NO_ARGUMENTS.contains(&name.as_str())
                    })
                    && c.arg_list().is_some_and(|args| {
                        args.args().all(|a| match a.func_arg_expr() {
                            Some(ast::FuncArgExpr::Expr(e)) => constant(&e),
                            // `make_interval(hours => 1)`.
                            Some(ast::FuncArgExpr::NamedArg(n)) => {
                                n.expr().is_some_and(|e| constant(&e))
                            }
                            None => false,
                        })
                    })
            }
            _ => false,
        }
    }
    let range = at.text_range();
    at.ancestors()
        .take_while(|n| n.text_range() == range)
        .filter_map(ast::Expr::cast)
        .last()
        .is_some_and(|e| constant(&e))
}

/// squawk's timeout rules: noise for SQL the runner wraps in timeouts
/// (squawk issue 678).
const TIMEOUT_RULES: &[Rule] = &[
    Rule::RequireLockTimeout,
    Rule::RequireStatementTimeout,
    Rule::RequireTimeoutSettings,
];

/// squawk rules about tables that already hold rows: moot for a table
/// created earlier in the same runbook or migration file, which is empty.
const EXISTING_TABLE_RULES: &[Rule] = &[
    Rule::RequireConcurrentIndexCreation,
    Rule::RequireConcurrentIndexDeletion,
    Rule::ConstraintMissingNotValid,
    Rule::AddingForeignKeyConstraint,
    Rule::AddingFieldWithDefault,
    Rule::AddingNotNullableField,
    Rule::AddingRequiredField,
    Rule::AddingSerialPrimaryKeyField,
    Rule::ChangingColumnType,
    Rule::DisallowedUniqueConstraint,
];

/// What the runner's context decides about one raw finding.
pub enum Verdict {
    Keep,
    /// Kept, with what the runner's context found missing.
    KeepBecause(String),
    /// Not reported; the note says why (`--explain`).
    Accept(String),
}

/// The runner's judgment of one raw finding on its statement.
pub type Judge<'a> = dyn Fn(&Raw, Option<&(Statement, Facts)>) -> Verdict + 'a;

/// `-- safety-assured:start` ... `-- safety-assured:end` (diesel-guard's
/// convention, any case): the team checked the statements between by hand,
/// so squawk's findings there become notes. A block that does not close,
/// an end without a start, or a start inside a block silences nothing
/// more, and says so. Syntax errors and psql's lines are kept: they are
/// not a judgment a person can make safe.
fn assured(root: &squawk_syntax::SyntaxNode, raw: &mut Vec<Raw>, notes: &mut Vec<(usize, String)>) {
    const START: &str = "safety-assured:start";
    const END: &str = "safety-assured:end";
    let mut blocks: Vec<(usize, usize)> = Vec::new();
    let mut open: Option<usize> = None;
    for t in root
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| t.kind() == squawk_syntax::SyntaxKind::COMMENT)
    {
        let text = t.text().to_ascii_lowercase();
        let text = text.strip_prefix("--").unwrap_or_default().trim();
        let (start, end) = (
            usize::from(t.text_range().start()),
            usize::from(t.text_range().end()),
        );
        match (text, open) {
            (START, None) => open = Some(end),
            (START, Some(_)) => notes.push((
                start,
                "`-- safety-assured:start` inside a block that is still open: blocks do not nest, so this one silences nothing".into(),
            )),
            (END, Some(from)) => {
                blocks.push((from, start));
                open = None;
            }
            (END, None) => notes.push((
                start,
                "`-- safety-assured:end` without a start before it: it silences nothing".into(),
            )),
            _ => {}
        }
    }
    if let Some(from) = open {
        notes.push((
            from,
            "`-- safety-assured:start` without an end after it: nothing after it is silenced"
                .into(),
        ));
    }
    raw.retain(|r| {
        let inside = matches!(r.code, Code::Squawk(_))
            && blocks.iter().any(|(from, to)| (*from..*to).contains(&r.start));
        if inside {
            notes.push((
                r.start,
                format!(
                    "{} accepted: in a `-- safety-assured` block, which says someone checked it by hand",
                    r.code
                ),
            ));
        }
        !inside
    });
}

/// Place a script's findings in the report, after the runner's judgments:
/// findings on `new` tables (empty, created earlier in the same set) go,
/// `judge` decides the rest, and the timeout rules go where the runner sets
/// timeouts. Every judgment that hides a finding leaves a note.
pub fn report(
    script: &Script,
    ctx: SqlContext,
    new: &std::collections::BTreeSet<String>,
    judge: &Judge<'_>,
    place: &Place<'_>,
    report: &mut Report,
) {
    let note = |report: &mut Report, offset: usize, note: String| {
        let (line, _, _) = place.line_col(offset);
        report.notes.push(Note {
            file: place.file.to_string(),
            line,
            note,
        });
    };
    if script.unparsed {
        note(
            report,
            0,
            "squawk's rules and runbook's did not run on this SQL: it does not parse".into(),
        );
    }
    for (offset, why) in &script.accepted {
        note(report, *offset, why.clone());
    }
    let mut silenced: Vec<String> = Vec::new();
    for r in &script.raw {
        let stmt = script.statement_at(r.start);
        if let Code::Squawk(rule) = r.code {
            if ctx.timeouts_set && TIMEOUT_RULES.contains(&rule) {
                if !silenced.contains(&rule.to_string()) {
                    silenced.push(rule.to_string());
                }
                continue;
            }
            if EXISTING_TABLE_RULES.contains(&rule)
                && let Some((_, f)) = stmt
                && new.contains(&f.table)
            {
                note(
                    report,
                    r.start,
                    format!(
                        "{rule} not reported: {} is created earlier in this set, so it is empty",
                        f.table
                    ),
                );
                continue;
            }
        }
        let mut message = r.message.clone();
        match judge(r, stmt) {
            Verdict::Keep => {}
            Verdict::KeepBecause(why) => message = format!("{message} ({why})"),
            Verdict::Accept(why) => {
                note(report, r.start, format!("{} accepted: {why}", r.code));
                continue;
            }
        }
        let (line, column, source_line) = place.line_col(r.start);
        let (end_line, end_column, _) = place.line_col_end(r.end.max(r.start + 1));
        report.findings.push(Finding {
            severity: Severity::Error,
            rule: r.code.to_string(),
            source: if r.code == Code::Psql {
                "runbook"
            } else {
                "squawk"
            },
            file: place.file.to_string(),
            line,
            column,
            end_line,
            end_column,
            message,
            help: r.help.clone(),
            source_line,
        });
    }
    if !silenced.is_empty() {
        note(
            report,
            0,
            format!(
                "{} not reported: runbook sets lock_timeout and statement_timeout for this SQL",
                silenced.join(", ")
            ),
        );
    }
}
