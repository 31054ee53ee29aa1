//! Exit codes: decided here, and only here. Documented in docs/exit-codes.md.

/// Everything succeeded.
pub const OK: u8 = 0;
/// A preflight check failed; nothing was changed.
pub const PREFLIGHT_FAILED: u8 = 1;
/// `runbook lint` found error findings (or more warnings than allowed).
pub const LINT_FINDINGS: u8 = 1;
/// A step failed and its rollback completed cleanly.
pub const ROLLED_BACK: u8 = 2;
/// A verification check failed.
pub const VERIFY_FAILED: u8 = 3;
/// A rollback failed or is incomplete: a person must act.
pub const ROLLBACK_FAILED: u8 = 4;
/// The runbook, its params, a flag or the environment is invalid; nothing ran.
pub const INVALID: u8 = 5;
/// An approval gate was not passed.
pub const NOT_APPROVED: u8 = 6;
/// Interrupted (SIGINT/SIGTERM).
pub const INTERRUPTED: u8 = 130;
/// The run ended (as stderr says), but its report or event log could not
/// be written: the evidence is missing or out of date.
pub const REPORT_FAILED: u8 = 7;
