//! Fixes as phones report them, and choosing the one to trust.

use serde::Serialize;

use super::{Location, LocationSource};

/// Beyond this (metres, ~68% radius) a fix cannot tell one side of a street from the other.
pub const WEAK_ACCURACY_M: f64 = 100.0;

/// One reading: where, how sure, when, from what.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fix {
    pub location: Location,
    /// Milliseconds since the Unix epoch, as the platform stamped it.
    pub time_ms: i64,
    /// The app holds only approximate-location permission (Android "approximate", iOS
    /// "Precise: Off"): the fix is blurred on purpose, whatever accuracy it claims.
    pub approximate: bool,
}

impl Fix {
    /// A weak fix: the app should ask the person to place a pin on the map.
    pub fn is_weak(&self) -> bool {
        self.approximate || self.location.accuracy_m.is_none_or(|a| a > WEAK_ACCURACY_M)
    }

    /// Metres of doubt: the reported accuracy, grown by how far a walking person may have moved
    /// since (1.5 m/s), so an old precise fix loses to a fresh slightly worse one.
    fn doubt(&self, now_ms: i64) -> f64 {
        let accuracy = self.location.accuracy_m.unwrap_or(WEAK_ACCURACY_M * 2.0);
        let age_s = ((now_ms - self.time_ms).max(0) as f64) / 1000.0;
        let approximate = if self.approximate { 1_000.0 } else { 0.0 };
        accuracy + 1.5 * age_s + approximate
    }
}

/// The fix to use from a stream: least doubt (accuracy grown by age), a map pin over any sensor
/// (a person placed it on purpose), fixes from the future (a wrong clock) treated as fresh.
/// Fixes older than `max_age_ms` are not considered.
pub fn best_fix(fixes: &[Fix], now_ms: i64, max_age_ms: i64) -> Option<Fix> {
    let fresh = fixes.iter().filter(|f| now_ms - f.time_ms <= max_age_ms);
    if let Some(pin) = fresh
        .clone()
        .filter(|f| f.location.source == LocationSource::MapPin)
        .max_by_key(|f| f.time_ms)
    {
        return Some(*pin);
    }
    fresh
        .min_by(|a, b| a.doubt(now_ms).total_cmp(&b.doubt(now_ms)))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix(accuracy: f64, age_s: i64, source: LocationSource) -> Fix {
        Fix {
            location: Location::new(43.65, -79.38, Some(accuracy), source).unwrap(),
            time_ms: 1_000_000 - age_s * 1000,
            approximate: false,
        }
    }

    #[test]
    fn the_best_fix_weighs_accuracy_against_age() {
        let now = 1_000_000;
        let old_precise = fix(4.0, 60, LocationSource::Gps); // 4 + 90 = 94 m of doubt
        let fresh_ok = fix(12.0, 2, LocationSource::Gps); // 12 + 3 = 15
        let network = fix(40.0, 0, LocationSource::Network);
        let best = best_fix(&[old_precise, network, fresh_ok], now, 120_000).unwrap();
        assert_eq!(best, fresh_ok);
        let pin = fix(30.0, 10, LocationSource::MapPin);
        assert_eq!(
            best_fix(&[fresh_ok, pin], now, 120_000).unwrap(),
            pin,
            "a pin is a decision"
        );
        assert_eq!(
            best_fix(&[fix(5.0, 600, LocationSource::Gps)], now, 120_000),
            None,
            "stale"
        );
        assert_eq!(best_fix(&[], now, 120_000), None);
    }

    #[test]
    fn weak_fixes_ask_for_a_pin() {
        assert!(!fix(35.0, 0, LocationSource::Gps).is_weak());
        assert!(fix(150.0, 0, LocationSource::Network).is_weak());
        let mut blurred = fix(20.0, 0, LocationSource::Network);
        blurred.approximate = true;
        assert!(
            blurred.is_weak(),
            "approximate permission is weak whatever it claims"
        );
        let mut unknown = fix(1.0, 0, LocationSource::Gps);
        unknown.location.accuracy_m = None;
        assert!(unknown.is_weak());
    }
}
