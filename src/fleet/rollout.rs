//! Waves and stop rules: the runbook's `rollout:` under the command line's
//! flags, and the waves they cut a list of targets into. Pure.

use std::ops::Range;
use std::time::Duration;

use crate::model::{Amount, Rollout};

/// `--parallel`, `--canary`, `--wave-size`, `--max-failures`, `--pause`:
/// each beats the runbook's `rollout:` key of the same name.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub parallel: Option<u32>,
    pub canary: Option<u32>,
    pub wave_size: Option<Amount>,
    pub max_failures: Option<Amount>,
    pub pause: Option<crate::duration::Duration>,
    pub approve_waves: bool,
}

/// The rules a fleet run follows, settled for its number of targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub parallel: usize,
    pub canary: usize,
    /// Where each wave starts and ends in the target list.
    pub waves: Vec<Range<usize>>,
    /// Failed targets tolerated; one more stops new starts.
    pub max_failures: usize,
    /// Before each wave after the first: wait this long.
    pub pause: Option<Duration>,
    /// Before each wave after the first: a person approves.
    pub approve_waves: bool,
}

impl Rules {
    pub fn new(runbook: &Rollout, flags: &Flags, targets: usize) -> Self {
        let parallel = flags.parallel.or(runbook.parallel).unwrap_or(1).max(1) as usize;
        let canary = (flags.canary.or(runbook.canary).unwrap_or(0) as usize).min(targets);
        let wave_size = flags.wave_size.or(runbook.wave_size);
        let max_failures = flags
            .max_failures
            .or(runbook.max_failures)
            .map_or(0, |a| a.of(targets));
        Rules {
            parallel,
            canary,
            waves: waves(targets, canary, wave_size),
            max_failures,
            pause: flags
                .pause
                .or(runbook.pause.duration)
                .map(|d| d.0)
                .filter(|d| !d.is_zero()),
            approve_waves: flags.approve_waves || runbook.pause.approve,
        }
    }

    /// How many run at once in wave `i`: the canary runs alone.
    pub fn parallel_in(&self, i: usize) -> usize {
        if i == 0 && self.canary > 0 {
            self.parallel.min(self.canary)
        } else {
            self.parallel
        }
    }

    /// The wave (from 0) a target index belongs to.
    pub fn wave_of(&self, target: usize) -> usize {
        self.waves
            .iter()
            .position(|w| w.contains(&target))
            .unwrap_or(0)
    }
}

/// The canary first (when asked), then waves of `size` (the last takes
/// what is left), or one wave of all the rest.
pub fn waves(total: usize, canary: usize, size: Option<Amount>) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let canary = canary.min(total);
    if canary > 0 {
        out.push(0..canary);
    }
    let step = size.map_or(total, |s| s.of(total)).max(1);
    let mut at = canary;
    while at < total {
        let end = (at + step).min(total);
        out.push(at..end);
        at = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[expect(clippy::single_range_in_vec_init, reason = "a list of one wave")]
    fn waves_start_with_the_canary_and_cover_every_target_once() {
        assert_eq!(waves(10, 0, None), [0..10]);
        assert_eq!(waves(10, 1, None), [0..1, 1..10]);
        assert_eq!(
            waves(10, 2, Some(Amount::Count(3))),
            [0..2, 2..5, 5..8, 8..10]
        );
        assert_eq!(
            waves(20, 0, Some(Amount::Percent(25.0))),
            [0..5, 5..10, 10..15, 15..20]
        );
        // A share of a few targets is at least one target.
        assert_eq!(waves(3, 0, Some(Amount::Percent(10.0))), [0..1, 1..2, 2..3]);
        assert_eq!(waves(2, 5, None), [0..2]);
        assert!(waves(0, 1, None).is_empty());
    }

    #[test]
    #[expect(clippy::single_range_in_vec_init, reason = "a list of one wave")]
    fn flags_beat_the_runbook_and_the_canary_runs_alone() {
        let rb = Rollout {
            parallel: Some(8),
            canary: Some(2),
            wave_size: Some(Amount::Percent(50.0)),
            max_failures: Some(Amount::Percent(10.0)),
            pause: crate::model::Pause {
                duration: Some(crate::duration::Duration::from_millis(5000)),
                approve: true,
            },
        };
        let r = Rules::new(&rb, &Flags::default(), 20);
        assert_eq!(r.parallel, 8);
        assert_eq!(r.parallel_in(0), 2);
        assert_eq!(r.parallel_in(1), 8);
        assert_eq!(r.max_failures, 2);
        assert_eq!(r.waves, [0..2, 2..12, 12..20]);
        assert_eq!(r.wave_of(13), 2);
        assert_eq!(r.pause, Some(Duration::from_secs(5)));
        assert!(r.approve_waves);
        let flags = Flags {
            parallel: Some(3),
            canary: Some(0),
            max_failures: Some(Amount::Count(1)),
            ..Flags::default()
        };
        let r = Rules::new(&rb, &flags, 20);
        assert_eq!((r.parallel, r.canary, r.max_failures), (3, 0, 1));
        assert_eq!(r.waves, [0..10, 10..20]);
        let none = Rules::new(&Rollout::default(), &Flags::default(), 4);
        assert_eq!(
            (none.parallel, none.canary, none.max_failures, none.waves),
            (1, 0, 0, vec![0..4])
        );
    }
}
