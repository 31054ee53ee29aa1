//! The run's ending: from what happened to the database, its status, exit
//! code and the verdict line. One pure function decides all three, so the
//! exit code always says the state the database was left in
//! (docs/exit-codes.md):
//!
//! | code | database left |
//! |---|---|
//! | 0 | changed and verified |
//! | 1 | untouched |
//! | 2 | back where it started: every change undone, and the undo verified |
//! | 3 | changed, verification failed, nothing undone |
//! | 4 | unknown or partly undone: a person must act |

use crate::events::RunStatus;
use crate::exit;
use crate::model::PhaseKind;

/// How an undo was checked: the schema after it against the schema before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Check {
    /// Equal to the snapshot taken before the changes: the schema, and
    /// the rows of `tables` tables that `settings.verify_undo` names (0:
    /// no rows were compared).
    Equal { tables: usize },
    /// This many objects differ; the report lists them.
    Differs(usize),
    /// The comparison could not be made (why).
    Unknown(String),
}

impl Check {
    pub(crate) fn is_equal(&self) -> bool {
        matches!(self, Check::Equal { .. })
    }
}

/// What an equal check says of the rows: a schema that is back says
/// nothing of the data a compensation could not give back (a column
/// dropped and added again is empty).
fn rows_said(tables: usize) -> String {
    match tables {
        0 => "; rows were not compared (`settings.verify_undo` names no table)".into(),
        n => format!("; so are the rows of the {n} table(s) `settings.verify_undo` names"),
    }
}

/// What the failure left behind, as the executor saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failed {
    /// `phase.step`.
    pub at: String,
    /// The kind of the phase that failed (`Verify` for a rehearsal that
    /// found bad migrations: its work is on a scratch database).
    pub phase_kind: PhaseKind,
    /// The failing step judged what it verifies. False for a rehearsal
    /// that could not rehearse: in a verify phase, that is a verification
    /// failed only where the run changed the database, and said as one
    /// that could not be made.
    pub judged: bool,
    /// `on_failure: abort`: nothing was undone on purpose.
    pub aborted: bool,
    /// The run committed a change to the database at some point.
    pub touched: bool,
    /// Some compensation, branch or `on_failure` step ran.
    pub undo_ran: bool,
    /// A compensation, branch or `on_failure` step failed.
    pub undo_failed: bool,
    /// The check of the undo that decides whether the database is back
    /// where the run started: `None` when no undo reached back that far.
    pub back_to_start: Option<Check>,
    /// The phase whose start the undo is verified to have brought the
    /// schema back to, when that is not the run's start.
    pub back_to_phase: Option<String>,
    /// The phase whose start `back_to_start` was checked against, when
    /// earlier phases' changes stay and so the run's start is not the mark.
    pub checked_since: Option<String>,
    /// Earlier phases whose changes are still in place (not undone).
    pub kept: Vec<String>,
}

/// Everything the ending is decided from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Facts {
    pub interrupted: bool,
    /// The signal that interrupted it (`signals::cause`), when one did.
    pub interrupted_by: Option<&'static str>,
    /// The interrupted step, `phase.step`, if one was running.
    pub interrupted_at: Option<String>,
    /// Whether the undo after an interrupt completed.
    pub undo_clean: bool,
    pub not_approved: Option<String>,
    pub failure: Option<Failed>,
    /// Failures tolerated by `on_failure: continue`.
    pub tolerated: usize,
}

/// The run's status, exit code and verdict line.
pub(crate) fn decide(f: &Facts) -> (RunStatus, u8, String) {
    if f.interrupted {
        // Said only when something was undone: an interrupted step that
        // changed nothing (a check, a rehearsal on a scratch copy) leaves
        // nothing to roll back.
        let undone = f
            .failure
            .as_ref()
            .is_none_or(|x| x.undo_ran || x.undo_failed);
        let by = f
            .interrupted_by
            .map(|c| format!(" by {c}"))
            .unwrap_or_default();
        let verdict = match (&f.interrupted_at, f.undo_clean) {
            (None, _) => format!("INTERRUPTED{by} between steps"),
            (Some(at), true) if !undone => format!("INTERRUPTED{by} at {at}: nothing was undone"),
            (Some(at), true) => format!("INTERRUPTED{by} at {at}: rolled back"),
            (Some(at), false) => {
                format!("INTERRUPTED{by} at {at}: rollback incomplete; a person must act")
            }
        };
        return (RunStatus::Interrupted, exit::INTERRUPTED, verdict);
    }
    let Some(x) = &f.failure else {
        if let Some(why) = &f.not_approved {
            return (
                RunStatus::NotApproved,
                exit::NOT_APPROVED,
                format!("STOPPED: {why}"),
            );
        }
        let verdict = if f.tolerated > 0 {
            format!(
                "SUCCEEDED with {} tolerated failure(s) (on_failure: continue)",
                f.tolerated
            )
        } else {
            "SUCCEEDED".to_string()
        };
        return (RunStatus::Succeeded, exit::OK, verdict);
    };
    failed(x)
}

fn failed(x: &Failed) -> (RunStatus, u8, String) {
    let at = &x.at;
    let must_act = |status: RunStatus, why: String| {
        (
            status,
            exit::ROLLBACK_FAILED,
            format!("FAILED at {at}: {why}; a person must act"),
        )
    };
    if x.undo_failed {
        return must_act(RunStatus::RollbackFailed, "ROLLBACK FAILED".into());
    }
    // A verification that failed, with nothing undone, is exit 3 whether or
    // not this run changed anything: the database is as it was verified.
    // One that could not be made says so; where the run changed nothing,
    // it is a plain failure that changed nothing.
    if x.phase_kind == PhaseKind::Verify && !x.undo_ran && (x.judged || x.touched) {
        let what = if x.judged {
            "verification failed"
        } else {
            "the verification could not be made"
        };
        return (
            RunStatus::VerifyFailed,
            exit::VERIFY_FAILED,
            format!("FAILED at {at}: {what}; nothing was undone"),
        );
    }
    if !x.touched {
        let (status, what) = if x.phase_kind == PhaseKind::Preflight {
            (RunStatus::PreflightFailed, "preflight failed")
        } else {
            (RunStatus::FailedUnchanged, "failed")
        };
        return (
            status,
            exit::PREFLIGHT_FAILED,
            format!("FAILED at {at}: {what}; nothing was changed"),
        );
    }
    let kept = x
        .kept
        .iter()
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if let Some(p) = &x.back_to_phase {
        let rest = if kept.is_empty() {
            "which is not where the run started".to_string()
        } else {
            format!("but the changes of phase(s) {kept} are still in place; keep them or undo them")
        };
        return must_act(
            RunStatus::PartlyUndone,
            format!("the undo brought the schema back to before phase `{p}` (verified), {rest}"),
        );
    }
    let since = x
        .checked_since
        .as_ref()
        .map_or_else(|| "the run".to_string(), |p| format!("phase `{p}`"));
    match &x.back_to_start {
        Some(Check::Equal { tables }) => {
            return (
                RunStatus::RolledBack,
                exit::ROLLED_BACK,
                format!(
                    "FAILED at {at}: rolled back cleanly; the schema is verified equal to before the run{}",
                    rows_said(*tables)
                ),
            );
        }
        Some(Check::Differs(n)) => {
            return must_act(
                RunStatus::RollbackFailed,
                format!(
                    "the rollback ran, but {n} schema object(s) differ from before {since} (listed in the report)"
                ),
            );
        }
        Some(Check::Unknown(why)) => {
            return must_act(
                RunStatus::RollbackUnverified,
                format!("the rollback ran, but it could not be verified ({why})"),
            );
        }
        None => {}
    }
    if x.aborted {
        return must_act(
            RunStatus::NotUndone,
            "aborted without rollback (on_failure: abort); the database may be half-changed".into(),
        );
    }
    if kept.is_empty() {
        must_act(
            RunStatus::NotUndone,
            "the database is partly changed and was not verified undone".into(),
        )
    } else {
        must_act(
            RunStatus::PartlyUndone,
            format!(
                "its phase was rolled back, but the changes of phase(s) {kept} are still in place; keep them or undo them"
            ),
        )
    }
}

/// The ending of `runbook rollback RUN_ID`: the database is back where
/// that run started only when every compensation ran and the check against
/// the schema before that run finds it equal. One whose compensations
/// failed having changed nothing (refused) left it as that run did.
pub(crate) fn decide_rollback(
    check: &Check,
    (clean, changed): (bool, bool),
    of: &str,
    undone: usize,
    unguarded: &str,
) -> (RunStatus, u8, String) {
    match (check, clean) {
        (_, false) if !changed => (
            RunStatus::FailedUnchanged,
            exit::PREFLIGHT_FAILED,
            format!(
                "NOT ROLLED BACK: run {of} stays as it left the database; a compensation failed having changed nothing{unguarded}"
            ),
        ),
        (_, false) => (
            RunStatus::RollbackFailed,
            exit::ROLLBACK_FAILED,
            format!(
                "ROLLBACK FAILED for run {of}: a compensation failed; a person must act{unguarded}"
            ),
        ),
        (Check::Equal { tables }, true) => (
            RunStatus::RolledBack,
            exit::OK,
            format!(
                "ROLLED BACK run {of}: {undone} compensation(s) ran; the schema is verified equal to before that run{}{unguarded}",
                rows_said(*tables)
            ),
        ),
        (Check::Unknown(why), true) => (
            RunStatus::RollbackUnverified,
            exit::ROLLBACK_FAILED,
            format!(
                "UNVERIFIED undo of run {of}: {undone} compensation(s) ran, but the result could not be checked: {why}{unguarded}"
            ),
        ),
        (_, true) => (
            RunStatus::RollbackFailed,
            exit::ROLLBACK_FAILED,
            format!(
                "NOT BACK at the start of run {of}: {undone} compensation(s) ran, and the schema still differs from before that run (see the report's rollback section){unguarded}"
            ),
        ),
    }
}

/// The exit code of a run refused before its first step: nothing changed.
/// A connection refused, or a pooler in the way, is a failed preflight (1);
/// a run lock held by another run is bad timing, said as invalid (5); an
/// interrupt while connecting is 130.
pub(crate) fn refusal_code(status: RunStatus) -> u8 {
    match status {
        RunStatus::Interrupted => exit::INTERRUPTED,
        RunStatus::Locked => exit::INVALID,
        _ => exit::PREFLIGHT_FAILED,
    }
}

/// The backups `who` took, `(step, path)`, as a verdict's last words.
pub(crate) fn restore_from(taken: &[(String, String)], who: &str) -> String {
    let named: Vec<String> = taken
        .iter()
        .map(|(step, path)| format!("{path} (step `{step}`)"))
        .collect();
    match named.as_slice() {
        [] => String::new(),
        [one] => format!("; restore from the backup {who} took: {one}"),
        many => format!("; restore from a backup {who} took: {}", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run refused before its first step changed nothing: its code says
    /// why it did not start.
    #[test]
    fn a_refused_run_exits_by_why_it_did_not_start() {
        assert_eq!(
            refusal_code(RunStatus::PreflightFailed),
            exit::PREFLIGHT_FAILED
        );
        assert_eq!(refusal_code(RunStatus::Locked), exit::INVALID);
        assert_eq!(refusal_code(RunStatus::Interrupted), exit::INTERRUPTED);
    }

    /// `runbook rollback`: back only when every compensation ran and the
    /// schema is verified equal; anything else needs a person (exit 4).
    #[test]
    fn a_rollback_is_back_only_when_clean_and_verified_equal() {
        let cases = [
            (
                Check::Equal { tables: 0 },
                true,
                RunStatus::RolledBack,
                exit::OK,
                "ROLLED BACK",
            ),
            (
                Check::Equal { tables: 0 },
                false,
                RunStatus::RollbackFailed,
                exit::ROLLBACK_FAILED,
                "ROLLBACK FAILED",
            ),
            (
                Check::Differs(3),
                true,
                RunStatus::RollbackFailed,
                exit::ROLLBACK_FAILED,
                "NOT BACK",
            ),
            (
                Check::Unknown("no snapshot".into()),
                true,
                RunStatus::RollbackUnverified,
                exit::ROLLBACK_FAILED,
                "UNVERIFIED",
            ),
        ];
        for (check, clean, status, code, says) in cases {
            let (s, c, v) = decide_rollback(&check, (clean, true), "r1", 2, "");
            assert_eq!((s, c), (status, code), "{check:?} clean={clean}");
            assert!(v.starts_with(says), "{v}");
        }
        // Refused, having changed nothing: the database is as that run
        // left it, exit 1, whatever the check says.
        let (s, c, v) = decide_rollback(&Check::Differs(3), (false, false), "r1", 0, "");
        assert_eq!((s, c), (RunStatus::FailedUnchanged, exit::PREFLIGHT_FAILED));
        assert!(v.starts_with("NOT ROLLED BACK"), "{v}");
    }

    fn failure() -> Failed {
        Failed {
            at: "expand.add".into(),
            phase_kind: PhaseKind::Expand,
            judged: true,
            aborted: false,
            touched: true,
            undo_ran: true,
            undo_failed: false,
            back_to_start: Some(Check::Equal { tables: 0 }),
            back_to_phase: None,
            checked_since: None,
            kept: Vec::new(),
        }
    }

    fn facts(failure: Option<Failed>) -> Facts {
        Facts {
            interrupted: false,
            interrupted_by: None,
            interrupted_at: None,
            undo_clean: true,
            not_approved: None,
            failure,
            tolerated: 0,
        }
    }

    #[test]
    fn an_interrupt_says_rolled_back_only_when_something_was_undone() {
        let interrupted = |undo_ran: bool| {
            decide(&Facts {
                interrupted: true,
                interrupted_at: Some("verify.rehearse".into()),
                ..facts(Some(Failed {
                    undo_ran,
                    ..failure()
                }))
            })
        };
        let (status, code, verdict) = interrupted(false);
        assert_eq!((status, code), (RunStatus::Interrupted, exit::INTERRUPTED));
        assert_eq!(
            verdict,
            "INTERRUPTED at verify.rehearse: nothing was undone"
        );
        assert_eq!(
            interrupted(true).2,
            "INTERRUPTED at verify.rehearse: rolled back"
        );
        // The signal is named when one was seen: the report read the next
        // morning says whether a person, a supervisor or a dropped
        // terminal stopped the run.
        let hung_up = decide(&Facts {
            interrupted: true,
            interrupted_by: Some("SIGHUP (the terminal hung up)"),
            interrupted_at: Some("expand.slow".into()),
            ..facts(Some(Failed {
                undo_ran: true,
                ..failure()
            }))
        });
        assert_eq!(
            hung_up.2,
            "INTERRUPTED by SIGHUP (the terminal hung up) at expand.slow: rolled back"
        );
    }

    fn code(f: Option<Failed>) -> u8 {
        decide(&facts(f)).1
    }

    /// Every combination that matters, with the state the code promises.
    // Long by design: the table of cases.
    #[test]
    fn the_exit_code_is_the_state_the_database_is_left_in() {
        use PhaseKind::*;
        let f = failure;
        let cases: Vec<(&str, Option<Failed>, u8)> = vec![
            ("succeeded", None, 0),
            (
                "a preflight check failed",
                Some(Failed {
                    phase_kind: Preflight,
                    touched: false,
                    undo_ran: false,
                    back_to_start: None,
                    ..f()
                }),
                1,
            ),
            (
                "an expand step's transaction rolled back, nothing before it",
                Some(Failed {
                    touched: false,
                    undo_ran: false,
                    back_to_start: None,
                    ..f()
                }),
                1,
            ),
            ("rolled back and verified equal", Some(f()), 2),
            (
                "abort, then the runbook's on_failure restored it, verified",
                Some(Failed {
                    aborted: true,
                    ..f()
                }),
                2,
            ),
            (
                "verify failed, then a complete verified undo",
                Some(Failed {
                    phase_kind: Verify,
                    ..f()
                }),
                2,
            ),
            (
                "a rehearsal or check failed and nothing was changed",
                Some(Failed {
                    phase_kind: Verify,
                    touched: false,
                    undo_ran: false,
                    back_to_start: None,
                    ..f()
                }),
                3,
            ),
            (
                "a rehearsal that could not rehearse, nothing changed",
                Some(Failed {
                    phase_kind: Verify,
                    judged: false,
                    touched: false,
                    undo_ran: false,
                    back_to_start: None,
                    ..f()
                }),
                1,
            ),
            (
                "a rehearsal that could not rehearse after changes",
                Some(Failed {
                    phase_kind: Verify,
                    judged: false,
                    undo_ran: false,
                    back_to_start: None,
                    kept: vec!["expand".into()],
                    ..f()
                }),
                3,
            ),
            (
                "verify failed, nothing undone",
                Some(Failed {
                    phase_kind: Verify,
                    undo_ran: false,
                    back_to_start: None,
                    kept: vec!["expand".into()],
                    ..f()
                }),
                3,
            ),
            (
                "a compensation failed",
                Some(Failed {
                    undo_failed: true,
                    ..f()
                }),
                4,
            ),
            (
                "the undo left a schema difference",
                Some(Failed {
                    back_to_start: Some(Check::Differs(1)),
                    ..f()
                }),
                4,
            ),
            (
                "the undo could not be checked",
                Some(Failed {
                    back_to_start: Some(Check::Unknown("no snapshot".into())),
                    ..f()
                }),
                4,
            ),
            (
                "abort after a change, no undo",
                Some(Failed {
                    aborted: true,
                    undo_ran: false,
                    back_to_start: None,
                    ..f()
                }),
                4,
            ),
            (
                "the phase rolled back, an earlier phase's changes stay",
                Some(Failed {
                    back_to_start: None,
                    kept: vec!["expand".into()],
                    ..f()
                }),
                4,
            ),
            (
                "a verify failure whose compensation failed",
                Some(Failed {
                    phase_kind: Verify,
                    undo_failed: true,
                    ..f()
                }),
                4,
            ),
            (
                "the undo reached back to the failed phase, an earlier phase's changes stay",
                Some(Failed {
                    back_to_start: Some(Check::Differs(3)),
                    back_to_phase: Some("contract".into()),
                    kept: vec!["seed".into()],
                    ..f()
                }),
                4,
            ),
            (
                "a failure in preflight after an earlier change was undone",
                Some(Failed {
                    phase_kind: Preflight,
                    ..f()
                }),
                2,
            ),
        ];
        for (what, failure, want) in cases {
            assert_eq!(code(failure), want, "{what}");
        }
    }

    /// Exit 4 covers several states. The status names which, so that no
    /// report calls an undo that was never tried, or one that left
    /// earlier phases in place on purpose, a failed rollback.
    #[test]
    fn each_state_that_needs_a_person_has_its_own_status() {
        use RunStatus::*;
        let f = failure;
        let cases = [
            (
                Failed {
                    undo_failed: true,
                    ..f()
                },
                RollbackFailed,
            ),
            (
                Failed {
                    back_to_start: Some(Check::Differs(1)),
                    ..f()
                },
                RollbackFailed,
            ),
            (
                Failed {
                    back_to_start: Some(Check::Unknown("no snapshot".into())),
                    ..f()
                },
                RollbackUnverified,
            ),
            (
                Failed {
                    aborted: true,
                    undo_ran: false,
                    back_to_start: None,
                    ..f()
                },
                NotUndone,
            ),
            (
                Failed {
                    undo_ran: false,
                    back_to_start: None,
                    ..f()
                },
                NotUndone,
            ),
            (
                Failed {
                    back_to_start: None,
                    kept: vec!["expand".into()],
                    ..f()
                },
                PartlyUndone,
            ),
            (
                Failed {
                    back_to_start: Some(Check::Differs(3)),
                    back_to_phase: Some("contract".into()),
                    kept: vec!["seed".into()],
                    ..f()
                },
                PartlyUndone,
            ),
        ];
        for (failure, want) in cases {
            let what = format!("{failure:?}");
            let (status, code, _) = decide(&facts(Some(failure)));
            assert_eq!((status, code), (want, 4), "{what}");
        }
    }

    /// An undo checked against the failed phase's start (earlier phases
    /// stay) says so, not "before the run".
    #[test]
    fn a_difference_names_the_start_it_was_checked_against() {
        let (_, _, v) = decide(&facts(Some(Failed {
            back_to_start: Some(Check::Differs(2)),
            checked_since: Some("migrate".into()),
            kept: vec!["expand".into()],
            ..failure()
        })));
        assert!(
            v.contains("2 schema object(s) differ from before phase `migrate`"),
            "{v}"
        );
    }

    #[test]
    fn verdicts_say_what_state_the_database_is_in() {
        let (s, c, v) = decide(&facts(Some(Failed {
            back_to_start: None,
            kept: vec!["expand".into()],
            ..failure()
        })));
        assert_eq!((s, c), (RunStatus::PartlyUndone, 4));
        assert_eq!(
            v,
            "FAILED at expand.add: its phase was rolled back, but the changes of phase(s) `expand` are still in place; keep them or undo them; a person must act"
        );
        let (_, _, v) = decide(&facts(Some(failure())));
        assert_eq!(
            v,
            "FAILED at expand.add: rolled back cleanly; the schema is verified equal to before the run; rows were not compared (`settings.verify_undo` names no table)"
        );
        let (_, _, v) = decide(&facts(Some(Failed {
            back_to_start: Some(Check::Equal { tables: 2 }),
            ..failure()
        })));
        assert!(
            v.ends_with("; so are the rows of the 2 table(s) `settings.verify_undo` names"),
            "{v}"
        );
        let mut f = facts(None);
        f.tolerated = 2;
        assert_eq!(
            decide(&f).2,
            "SUCCEEDED with 2 tolerated failure(s) (on_failure: continue)"
        );
        f.interrupted = true;
        f.interrupted_at = Some("expand.add".into());
        f.undo_clean = false;
        assert_eq!(decide(&f).1, 130);
        let mut f = facts(None);
        f.not_approved = Some("phase `contract` not approved: refused".into());
        assert_eq!(decide(&f).0, RunStatus::NotApproved);
    }
}
