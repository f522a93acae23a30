//! Hybrid logical clock (Kulkarni et al., 2014): 48 bits of milliseconds and a 16-bit counter
//! in one u64. Stamps follow causality like a Lamport clock and stay close to real time, so a
//! later edit wins a last-writer-wins race even when wall clocks disagree a little.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One stamp. Ordered by time, then counter; ties between replicas are broken by replica id.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Hlc(pub u64);

const COUNTER_BITS: u32 = 16;
const COUNTER_MAX: u64 = (1 << COUNTER_BITS) - 1;
pub const MAX_MS: u64 = (1 << 48) - 1;

impl Hlc {
    pub fn new(ms: u64, counter: u16) -> Hlc {
        Hlc((ms.min(MAX_MS) << COUNTER_BITS) | counter as u64)
    }

    pub fn ms(self) -> u64 {
        self.0 >> COUNTER_BITS
    }

    pub fn counter(self) -> u16 {
        (self.0 & COUNTER_MAX) as u16
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.ms(), self.counter())
    }
}

/// A replica's clock. `last` is persisted, so stamps keep growing across restarts and
/// backwards jumps of the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub last: Hlc,
    /// Added to the wall clock: the server's estimate of how wrong this device's clock is.
    pub offset_ms: i64,
}

impl Clock {
    pub fn new(last: Hlc, offset_ms: i64) -> Clock {
        Clock { last, offset_ms }
    }

    fn wall(&self, wall_ms: i64) -> u64 {
        (wall_ms.saturating_add(self.offset_ms)).clamp(0, MAX_MS as i64) as u64
    }

    /// A stamp for a local event: later than every stamp issued or seen.
    pub fn tick(&mut self, wall_ms: i64) -> Hlc {
        let wall = self.wall(wall_ms);
        self.last = if wall > self.last.ms() {
            Hlc::new(wall, 0)
        } else if self.last.counter() < u16::MAX {
            Hlc::new(self.last.ms(), self.last.counter() + 1)
        } else {
            // Counter exhausted within one millisecond: borrow the next millisecond.
            Hlc::new(self.last.ms() + 1, 0)
        };
        self.last
    }

    /// Takes in a stamp from another replica, so the next local stamp is later than it.
    pub fn observe(&mut self, remote: Hlc, wall_ms: i64) {
        let wall = self.wall(wall_ms);
        let ms = wall.max(self.last.ms()).max(remote.ms());
        let counter = if ms == self.last.ms() && ms == remote.ms() {
            self.last.counter().max(remote.counter())
        } else if ms == self.last.ms() {
            self.last.counter()
        } else if ms == remote.ms() {
            remote.counter()
        } else {
            0
        };
        self.last = self.last.max(Hlc::new(ms, counter));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_grow_even_when_the_wall_clock_goes_back() {
        let mut c = Clock::new(Hlc::default(), 0);
        let a = c.tick(1_000);
        let b = c.tick(1_000);
        let d = c.tick(500); // the user set the clock back
        assert!(a < b && b < d);
        assert_eq!(d.ms(), 1_000);
        let e = c.tick(2_000);
        assert_eq!((e.ms(), e.counter()), (2_000, 0));
    }

    #[test]
    fn observing_a_remote_stamp_orders_later_events_after_it() {
        let mut phone = Clock::new(Hlc::default(), 0);
        let remote = Hlc::new(50_000, 7); // a replica whose clock runs ahead
        phone.observe(remote, 10_000);
        let next = phone.tick(10_001);
        assert!(next > remote);
        assert_eq!(next.ms(), 50_000);
    }

    #[test]
    fn the_offset_corrects_a_clock_that_runs_a_day_ahead() {
        let day = 86_400_000i64;
        let mut phone = Clock::new(Hlc::default(), -day);
        let stamp = phone.tick(1_700_000_000_000 + day);
        assert_eq!(stamp.ms() as i64, 1_700_000_000_000);
    }

    #[test]
    fn a_full_counter_borrows_the_next_millisecond() {
        let mut c = Clock::new(Hlc::new(5, u16::MAX), 0);
        assert_eq!(c.tick(5), Hlc::new(6, 0));
    }
}
