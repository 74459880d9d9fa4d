//! When a device syncs next: the background loop's schedule, sans-IO.
//!
//! A fixed interval keeps devices in step: twenty tablets that lost the relay together
//! (an office router restarted, the relay was upgraded) fail together, wait the same
//! interval and come back as one burst, and a thousand tablets of a municipality do the
//! same to its hub. So every wait is drawn, never fixed:
//! - after a sync that completed, the next starts after the interval times a factor drawn
//!   from `[1 - SPREAD, 1 + SPREAD)`, so devices drift apart instead of staying in step;
//! - after failed runs, the wait grows (doubling from the interval, up to
//!   [`SyncSchedule::max_backoff`]) and is drawn from `[½, 1½)` of that, so devices
//!   that failed at the same moment come back spread over a window as wide as the wait;
//! - the first run after the loop starts waits a draw from `[0, FIRST_SPREAD)`, so
//!   devices started together (a power cut, an app update) do not start together.
//!
//! A sync the user asks for is not scheduled: the driver runs it at once. The draws come
//! from the caller (`unit` in `[0, 1)`), so tests replay a schedule exactly.

use std::time::Duration;

/// How far one wait after a completed sync may stray from the interval (±25 %).
pub const SPREAD: f64 = 0.25;

/// The longest wait before the first run.
pub const FIRST_SPREAD: Duration = Duration::from_secs(3);

/// The default longest base wait after failures (the drawn wait is up to 1.5× this).
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The schedule of one device's background sync.
#[derive(Clone, Debug)]
pub struct SyncSchedule {
    interval: Duration,
    max_backoff: Duration,
    failures: u32,
}

impl SyncSchedule {
    /// A schedule that syncs about every `interval` while syncs complete.
    pub fn new(interval: Duration) -> SyncSchedule {
        SyncSchedule {
            interval,
            max_backoff: DEFAULT_MAX_BACKOFF.max(interval),
            failures: 0,
        }
    }

    /// The same with another ceiling for the base wait after failures (at least the
    /// interval).
    pub fn with_max_backoff(mut self, max_backoff: Duration) -> SyncSchedule {
        self.max_backoff = max_backoff.max(self.interval);
        self
    }

    /// The longest base wait after failures.
    pub fn max_backoff(&self) -> Duration {
        self.max_backoff
    }

    /// Failed runs since the last completed one.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The wait before the first run, for a draw `unit` in `[0, 1)`.
    pub fn first_delay(&self, unit: f64) -> Duration {
        FIRST_SPREAD.min(self.interval).mul_f64(clamp_unit(unit))
    }

    /// Records how a run ended and returns the wait before the next one, for a draw
    /// `unit` in `[0, 1)`.
    pub fn after_run(&mut self, completed: bool, unit: f64) -> Duration {
        let unit = clamp_unit(unit);
        if completed {
            self.failures = 0;
            return self.interval.mul_f64(1.0 - SPREAD + 2.0 * SPREAD * unit);
        }
        self.failures = self.failures.saturating_add(1);
        let doublings = (self.failures - 1).min(16);
        let base = self
            .interval
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff);
        base.mul_f64(0.5 + unit)
    }
}

/// A draw outside `[0, 1)` (or NaN) is taken as its nearest end, so a bad generator cannot
/// produce a negative or huge wait.
fn clamp_unit(unit: f64) -> f64 {
    if unit.is_nan() {
        0.0
    } else {
        unit.clamp(0.0, 1.0 - f64::EPSILON)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const INTERVAL: Duration = Duration::from_secs(30);

    #[test]
    fn waits_stay_within_their_bounds() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut s = SyncSchedule::new(INTERVAL);
        for _ in 0..1000 {
            let d = s.after_run(true, rng.random());
            assert!(
                d >= INTERVAL.mul_f64(0.75) && d < INTERVAL.mul_f64(1.25),
                "{d:?}"
            );
        }
        for n in 1..40u32 {
            let d = s.after_run(false, rng.random());
            assert_eq!(s.failures(), n);
            let base = INTERVAL
                .saturating_mul(1u32 << (n - 1).min(16))
                .min(DEFAULT_MAX_BACKOFF);
            assert!(
                d >= base / 2 && d < base.mul_f64(1.5),
                "after {n} failures: {d:?}"
            );
        }
        // A completed run starts over at the interval.
        let d = s.after_run(true, 0.5);
        assert_eq!((s.failures(), d), (0, INTERVAL));
        // Draws out of range are clamped, never negative or huge.
        assert_eq!(s.first_delay(-3.0), Duration::ZERO);
        assert!(s.first_delay(f64::INFINITY) <= FIRST_SPREAD);
        assert_eq!(s.after_run(true, f64::NAN), INTERVAL.mul_f64(0.75));
    }

    /// The most runs that start within any `window` of `starts` (sorted).
    fn busiest(starts: &[Duration], window: Duration) -> usize {
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..starts.len() {
            while starts[hi] - starts[lo] >= window {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best
    }

    /// A device's wait after each failed run.
    type Waits = Box<dyn FnMut(&mut StdRng) -> Duration>;

    /// 1,000 devices that all lost the relay at the same moment, each waiting as
    /// `device()` says after every failed run, until the relay is back after `outage`:
    /// when each one's first run after that starts (sorted).
    fn returns_after_outage(outage: Duration, device: impl Fn() -> Waits) -> Vec<Duration> {
        let mut rng = StdRng::seed_from_u64(2026);
        let mut starts: Vec<Duration> = (0..1000)
            .map(|_| {
                let mut wait = device();
                let mut t = Duration::ZERO;
                while t < outage {
                    t += wait(&mut rng);
                }
                t
            })
            .collect();
        starts.sort();
        starts
    }

    #[test]
    fn devices_that_failed_together_do_not_come_back_together() {
        let outage = Duration::from_secs(120);
        let window = Duration::from_secs(1);
        let drawn = returns_after_outage(outage, || {
            let mut s = SyncSchedule::new(INTERVAL);
            Box::new(move |rng| s.after_run(false, rng.random()))
        });
        // Spread over the last wait (up to 1.5 × 120 s here): a one-second window sees a
        // few percent of the office, not all of it.
        let peak = busiest(&drawn, window);
        assert!(
            peak <= 30,
            "{peak} of 1,000 devices came back within one second"
        );

        // The same devices on a fixed interval come back as one burst: the bound above is
        // one a fixed schedule fails.
        let fixed = returns_after_outage(outage, || Box::new(|_| INTERVAL));
        assert_eq!(busiest(&fixed, window), 1000);
    }

    #[test]
    fn devices_started_together_drift_apart() {
        let mut rng = StdRng::seed_from_u64(11);
        let mut starts: Vec<Duration> = (0..1000)
            .map(|_| {
                let mut s = SyncSchedule::new(INTERVAL);
                let mut t = s.first_delay(rng.random());
                for _ in 0..20 {
                    t += s.after_run(true, rng.random());
                }
                t
            })
            .collect();
        starts.sort();
        // Twenty runs later the 21st runs of the office are spread over minutes.
        let peak = busiest(&starts, Duration::from_secs(1));
        assert!(peak <= 40, "{peak} of 1,000 devices ran within one second");
    }
}
