//! Wall-clock time as the store keeps it: milliseconds since the Unix epoch, UTC.

use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

static SKEW_MS: AtomicI64 = AtomicI64::new(0);

/// The device's wall clock (which may be wrong: see [`simulate_wrong_clock`]).
pub fn now_ms() -> i64 {
    system_ms() + SKEW_MS.load(Ordering::Relaxed)
}

/// The system clock, never simulated: what a server, the reference clock, reads.
pub fn system_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Makes this process's wall clock run `skew_ms` off, as a phone's clock set a day ahead does:
/// for fault tests and demos of the clock correction. Zero restores the real clock.
pub fn simulate_wrong_clock(skew_ms: i64) {
    SKEW_MS.store(skew_ms, Ordering::Relaxed);
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
