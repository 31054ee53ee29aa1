//! The signals that stop a run, counted: the first stops the step and
//! rolls back, the second stops the rollback. SIGINT (Ctrl-C), SIGTERM
//! (a supervisor, a pod being evicted) and SIGHUP (the terminal went away:
//! an SSH session that dropped) are counted alike; the first one's name is
//! kept, so that the report says what stopped the run. What is said on
//! the terminal goes through `crate::say!`, which a terminal that hung up
//! cannot make panic.

use std::sync::OnceLock;

use nix::sys::signal::{SigSet, Signal as Sig};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;

/// What the first signal was, in the words the report uses.
static CAUSE: OnceLock<&'static str> = OnceLock::new();

/// What stopped this process's run, once a signal has: `SIGTERM`,
/// `Ctrl-C (SIGINT)`, `SIGHUP (the terminal hung up)`.
pub fn cause() -> Option<&'static str> {
    CAUSE.get().copied()
}

/// The stopping signals, held back from just before a run first changes
/// something (its report directory, a throwaway cluster) until `watch`
/// counts them. Without this, a SIGTERM in that window killed the process
/// where it stood, and the report directory held no report; as PID 1 in a
/// container, the signal was dropped and the run went on. One that arrives
/// while held is delivered when `watch` takes over, or when this is
/// dropped on a path that runs nothing, where it does what it does by
/// default.
pub struct Held(SigSet);

/// Hold the stopping signals on this thread (and the threads it starts
/// meanwhile) until the returned value is given to `watch` or dropped.
pub fn hold() -> Held {
    let mut set = SigSet::empty();
    set.add(Sig::SIGINT);
    set.add(Sig::SIGTERM);
    if hangup_is_default() {
        set.add(Sig::SIGHUP);
    }
    let _ = set.thread_block();
    Held(set)
}

impl Drop for Held {
    /// Unblocked, not put back as they were: a process started with them
    /// blocked (a mask inherited from whatever started it) would otherwise
    /// never hear them, and ran on through a SIGTERM.
    fn drop(&mut self) {
        let _ = self.0.thread_unblock();
    }
}

/// Count the signals that stop a run; `first` is said on the first. Call
/// it inside the runtime. The handlers are in place before `held` is let
/// go, so that a signal held back until now is counted, not fatal.
pub fn watch(first: &'static str, held: Held) -> watch::Receiver<u32> {
    let (tx, rx) = watch::channel(0u32);
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return rx;
    };
    let mut hup = hangup_is_default()
        .then(|| signal(SignalKind::hangup()).ok())
        .flatten();
    drop(held);
    tokio::spawn(async move {
        loop {
            let cause = tokio::select! {
                _ = int.recv() => "Ctrl-C (SIGINT)",
                _ = term.recv() => "SIGTERM",
                () = hung_up(&mut hup) => "SIGHUP (the terminal hung up)",
            };
            let _ = CAUSE.set(cause);
            let n = *tx.borrow() + 1;
            if n == 1 {
                crate::say!("{first}");
            } else {
                crate::say!("runbook: interrupted again; stopping the rollback");
            }
            let _ = tx.send(n);
        }
    });
    rx
}

async fn hung_up(hup: &mut Option<Signal>) {
    if let Some(s) = hup
        && s.recv().await.is_some()
    {
        return;
    }
    std::future::pending().await
}

/// Whether SIGHUP still does what it does by default. `nohup` and a
/// shell's `trap '' HUP` ignore it so that a run outlives its terminal;
/// a handler would undo that, so none is set then. Linux says what is
/// ignored in /proc/self/status (`SigIgn`, SIGHUP being bit 0); where it
/// cannot be read, SIGHUP is left as it is.
fn hangup_is_default() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(ignored_mask)
        .is_some_and(|mask| mask & 1 == 0)
}

fn ignored_mask(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sighup_is_bit_0_of_the_ignored_mask() {
        let status = "Name:\trunbook\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000001001\n";
        assert_eq!(ignored_mask(status), Some(0x1001));
        assert_eq!(ignored_mask("Name:\tx\n"), None);
    }
}
