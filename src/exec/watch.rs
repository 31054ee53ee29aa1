//! `watch` steps: a check sampled every `interval` for `duration`, which
//! must pass at every sample. The first sample that breaks it fails the
//! step, so its phase's rollback starts then. Every sample lands in the
//! report: the value it saw, and whether it passed.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Attempt, Done, Fail, Run, cancelled_error, check, ms};
use crate::events::{CheckResult, ErrorKind, Event, StepStatus, now};
use crate::plan::{PlanStep, PlanWatch};

/// Samples kept in the report; a longer watch keeps the first and the last
/// ones (the count is always there).
const REPORTED_SAMPLES: usize = 500;

pub(crate) async fn run(
    r: &mut Run<'_>,
    s: &PlanStep,
    w: &PlanWatch,
    timeout: Option<Duration>,
) -> Attempt {
    let started = Instant::now();
    let end = started + w.duration.0;
    let mut series: Vec<Value> = Vec::new();
    loop {
        let left = timeout
            .map(|t| (started + t).saturating_duration_since(Instant::now()))
            .filter(|l| !l.is_zero());
        let sample = check::run(r, s, &w.check, left.or(timeout)).await;
        let at_ms = ms(started.elapsed());
        match sample {
            Ok(done) => {
                let value = value_of(done.check.as_ref());
                series.push(json!({ "at_ms": at_ms, "value": value, "passed": true }));
                let next = Instant::now() + w.interval.0;
                if next > end {
                    return Ok(finished(done, &series, started));
                }
                if let Some(mut f) = r.tripped(&s.id, true).await {
                    f.partial = finished(done, &series, started);
                    return Err(f.unchanged());
                }
                progress(r, s, started, w, &value);
                tokio::select! {
                    () = tokio::time::sleep_until(next.into()) => {}
                    () = r.stop_signal() => {
                        return Err(Fail::new(StepStatus::Cancelled, cancelled_error()).unchanged());
                    }
                }
            }
            Err(mut f) if f.error.class == ErrorKind::Check => {
                let value = value_of(f.partial.check.as_ref());
                series.push(json!({ "at_ms": at_ms, "value": value, "passed": false }));
                f.error.message = format!(
                    "sample {} at {} of {} broke the watch: {}",
                    series.len(),
                    crate::duration::Duration(Duration::from_millis(at_ms)),
                    w.duration,
                    f.error.message
                );
                f.partial = finished(std::mem::take(&mut f.partial), &series, started);
                return Err(f.unchanged());
            }
            Err(f) => return Err(f),
        }
    }
}

/// The value a sample shows: the first expectation's actual value, else
/// the number of rows.
fn value_of(check: Option<&CheckResult>) -> Value {
    match check {
        Some(c) => c
            .expectations
            .first()
            .map_or_else(|| Value::from(c.rows), |e| e.actual.clone()),
        None => Value::Null,
    }
}

/// The last sample's result, with the whole series in its details.
fn finished(mut done: Done, series: &[Value], started: Instant) -> Done {
    let d = done
        .details
        .get_or_insert_with(|| Value::Object(Default::default()));
    d["watched_ms"] = Value::from(ms(started.elapsed()));
    d["samples_total"] = Value::from(series.len());
    let kept: Vec<Value> = if series.len() <= REPORTED_SAMPLES {
        series.to_vec()
    } else {
        let half = REPORTED_SAMPLES / 2;
        series[..half]
            .iter()
            .chain(&series[series.len() - half..])
            .cloned()
            .collect()
    };
    d["samples"] = Value::Array(kept);
    done
}

/// The time watched so far, out of `duration`, and the latest value.
fn progress(r: &mut Run<'_>, s: &PlanStep, started: Instant, w: &PlanWatch, value: &Value) {
    r.bus.emit(Event::StepProgress {
        at: now(),
        step: s.id.clone(),
        done: started.elapsed().as_secs(),
        total: Some(w.duration.0.as_secs()),
        unit: "s".into(),
        item: Some(format!("latest: {value}")),
        per_second: None,
        eta_ms: None,
    });
}
