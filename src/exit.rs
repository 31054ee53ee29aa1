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

/// From the worst to the least bad: what a code says of the database
/// state, for joining many runs into one code (a fleet, its shards). A
/// person must act (4) before a change that did not verify (3), before an
/// interrupted run (its verdict varies), before an undone change (2),
/// before missing evidence (7), a refused gate (6), an untouched database
/// (1) and a run refused before it started (5).
const SEVERITY: &[u8] = &[
    ROLLBACK_FAILED,
    VERIFY_FAILED,
    INTERRUPTED,
    ROLLED_BACK,
    REPORT_FAILED,
    NOT_APPROVED,
    PREFLIGHT_FAILED,
    INVALID,
    OK,
];

/// The worst of several runs' codes (0 for none).
pub fn worst(codes: impl IntoIterator<Item = u8>) -> u8 {
    // An unknown code ranks before every known one: it is never hidden.
    let rank = |c: u8| SEVERITY.iter().position(|s| *s == c).map_or(0, |i| i + 1);
    codes.into_iter().min_by_key(|c| rank(*c)).unwrap_or(OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_code_is_the_one_that_asks_most_of_a_person() {
        assert_eq!(worst([]), OK);
        assert_eq!(worst([OK, PREFLIGHT_FAILED, OK]), PREFLIGHT_FAILED);
        assert_eq!(worst([ROLLED_BACK, INTERRUPTED]), INTERRUPTED);
        assert_eq!(worst([INVALID, NOT_APPROVED]), NOT_APPROVED);
        assert_eq!(
            worst([VERIFY_FAILED, ROLLBACK_FAILED, ROLLED_BACK]),
            ROLLBACK_FAILED
        );
        assert_eq!(worst([ROLLBACK_FAILED, 99]), 99);
    }
}
