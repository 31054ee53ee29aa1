//! `wait` steps: a check repeated every `interval` until it passes. Once
//! the wait's `timeout` has passed the step fails, with the rows and the
//! expectations of its last try as the evidence. A wait only reads, so it
//! changes nothing and has nothing to undo.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Attempt, Fail, Run, cancelled_error, check, ms, timeout_error};
use crate::events::{ErrorKind, Event, StepStatus, now};
use crate::plan::{PlanStep, PlanWait};

pub(crate) async fn run(
    r: &mut Run<'_>,
    s: &PlanStep,
    w: &PlanWait,
    timeout: Option<Duration>,
) -> Attempt {
    let started = Instant::now();
    let own_end = started + w.timeout.0;
    // The step's own `timeout`, when shorter, ends it as timed out.
    let step_end = timeout.map(|t| started + t);
    let end = step_end.map_or(own_end, |e| e.min(own_end));
    // The last try comes just before the end, whatever the interval, so a
    // wait looks for its whole timeout and leaves its query time to answer.
    let guard = (end.saturating_duration_since(started) / 4).min(Duration::from_millis(500));
    let last_try_at = end - guard;
    let mut tries = 0u32;
    loop {
        tries += 1;
        let left = end.saturating_duration_since(Instant::now());
        let last = match check::run(r, s, &w.check, Some(left.max(Duration::from_millis(1)))).await
        {
            Ok(mut done) => {
                record(&mut done.details, started, tries);
                return Ok(done);
            }
            // Not yet: the check ran and its expectations did not hold.
            Err(f) if f.error.class == ErrorKind::Check => f,
            // The query itself failed: that is no answer to wait on.
            Err(f) => return Err(f),
        };
        let now = Instant::now();
        if now >= last_try_at {
            return Err(gave_up(
                last,
                started,
                tries,
                w,
                step_end.is_some_and(|e| e <= own_end),
                timeout,
            ));
        }
        if let Some(f) = r.tripped(&s.id, true).await {
            return Err(f.unchanged());
        }
        progress(r, s, started, w, &last.error.message);
        let next = (now + w.interval.0).min(last_try_at);
        tokio::select! {
            () = tokio::time::sleep_until(next.into()) => {}
            () = r.stop_signal() => {
                return Err(Fail::new(StepStatus::Cancelled, cancelled_error()).unchanged());
            }
        }
    }
}

/// How long the wait took and how many tries, in the step's details.
fn record(details: &mut Option<Value>, started: Instant, tries: u32) {
    let d = details.get_or_insert_with(|| Value::Object(Default::default()));
    d["waited_ms"] = Value::from(ms(started.elapsed()));
    d["tries"] = Value::from(tries);
}

/// The last try's failure, said as a wait that gave up.
fn gave_up(
    mut last: Fail,
    started: Instant,
    tries: u32,
    w: &PlanWait,
    step_timeout: bool,
    timeout: Option<Duration>,
) -> Fail {
    record(&mut last.partial.details, started, tries);
    if step_timeout {
        let mut e = timeout_error(timeout);
        e.message = format!(
            "{}; the check had not passed: {}",
            e.message, last.error.message
        );
        last.status = StepStatus::TimedOut;
        last.error = e;
    } else {
        // To the second, past ten seconds.
        let took = ms(started.elapsed());
        let took = if took >= 10_000 {
            took / 1000 * 1000
        } else {
            took
        };
        let waited = crate::duration::Duration::from_millis(took);
        last.error.message = format!(
            "waited {waited} of {} ({tries} tries, every {}) and the check never passed; last try: {}",
            w.timeout, w.interval, last.error.message
        );
        last.error.hint = Some(
            "the rows of the last try are in the step's details; raise `timeout` if the condition needs longer"
                .into(),
        );
    }
    last.unchanged()
}

/// The time waited so far, out of the most it may take, and why not yet.
fn progress(r: &mut Run<'_>, s: &PlanStep, started: Instant, w: &PlanWait, why: &str) {
    r.bus.emit(Event::StepProgress {
        at: now(),
        step: s.id.clone(),
        done: started.elapsed().as_secs(),
        total: Some(w.timeout.0.as_secs()),
        unit: "s".into(),
        item: Some(why.chars().take(120).collect()),
        per_second: None,
        eta_ms: None,
    });
}
