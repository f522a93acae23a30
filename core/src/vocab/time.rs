//! Time as the system keeps it: milliseconds since the Unix epoch, UTC, read from a [`Clock`]
//! that the store and the server are given. Nothing reads the wall clock behind their back, so a
//! test can run a phone a day ahead, or a whole simulation on a clock it moves itself.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
    }
}

/// The system clock set some milliseconds off, as a phone's clock set a day ahead is; the
/// error can be changed while it runs (the person fixes the clock, or breaks it).
#[derive(Debug, Default)]
pub struct SkewedClock(AtomicI64);

impl SkewedClock {
    pub fn new(skew_ms: i64) -> SkewedClock {
        SkewedClock(AtomicI64::new(skew_ms))
    }

    pub fn set_skew(&self, skew_ms: i64) {
        self.0.store(skew_ms, Ordering::SeqCst);
    }
}

impl Clock for SkewedClock {
    fn now_ms(&self) -> i64 {
        SystemClock
            .now_ms()
            .saturating_add(self.0.load(Ordering::SeqCst))
    }
}

/// A clock that moves only when told to: for simulations and tests that must replay exactly.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(ms: i64) -> ManualClock {
        ManualClock(AtomicI64::new(ms))
    }

    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// RFC 3339 to the second, in UTC: what people and Open311 read.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
