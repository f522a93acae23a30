//! A point as a phone reports it, and the checks that keep impossible ones out of a request.

use serde::{Deserialize, Serialize};

use super::problem::{Problem, ProblemKind};

/// Accuracy beyond this is not a position but a guess (iOS "approximate" fixes reach ~20 km).
pub const MAX_ACCURACY_M: f64 = 50_000.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocationSource {
    Gps,
    Network,
    MapPin,
    Photo,
}

impl LocationSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LocationSource::Gps => "gps",
            LocationSource::Network => "network",
            LocationSource::MapPin => "map_pin",
            LocationSource::Photo => "photo",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "gps" => Some(LocationSource::Gps),
            "network" => Some(LocationSource::Network),
            "map_pin" | "pin" | "map" => Some(LocationSource::MapPin),
            "photo" | "exif" => Some(LocationSource::Photo),
            _ => None,
        }
    }
}

/// A WGS84 point with its horizontal accuracy (metres, ~68% radius as Android and iOS report it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
    pub accuracy_m: Option<f64>,
    pub source: LocationSource,
}

impl Location {
    /// A checked location: finite, in range, not the (0, 0) that broken GPS code sends, and an
    /// accuracy that is a distance.
    pub fn new(
        lat: f64,
        lon: f64,
        accuracy_m: Option<f64>,
        source: LocationSource,
    ) -> Result<Location, Problem> {
        let location = Location {
            lat,
            lon,
            accuracy_m,
            source,
        };
        match location.problem() {
            Some(p) => Err(p),
            None => Ok(location),
        }
    }

    /// What makes this location unusable, if anything.
    pub fn problem(&self) -> Option<Problem> {
        let bad =
            |message: String| Some(Problem::new("location", ProblemKind::OutOfRange, message));
        if !self.lat.is_finite() || !self.lon.is_finite() {
            return bad("latitude and longitude must be finite numbers".into());
        }
        if !(-90.0..=90.0).contains(&self.lat) {
            return bad(format!("latitude {} is not between -90 and 90", self.lat));
        }
        if !(-180.0..=180.0).contains(&self.lon) {
            return bad(format!(
                "longitude {} is not between -180 and 180",
                self.lon
            ));
        }
        if self.lat.abs() < 1e-7 && self.lon.abs() < 1e-7 {
            return bad("(0, 0) is not a real fix: the phone had no position".into());
        }
        if let Some(a) = self.accuracy_m {
            if !a.is_finite() || a < 0.0 {
                return bad(format!("accuracy {a} m is not a distance"));
            }
            if a > MAX_ACCURACY_M {
                return bad(format!(
                    "accuracy {a} m is too coarse to place a report; drop a pin on the map"
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_points_are_refused_with_a_reason() {
        let gps = LocationSource::Gps;
        for (lat, lon, acc) in [
            (f64::NAN, -79.4, None),
            (43.6, f64::INFINITY, None),
            (91.0, -79.4, None),
            (43.6, -181.0, None),
            (0.0, 0.0, None),
            (43.6, -79.4, Some(-1.0)),
            (43.6, -79.4, Some(f64::NAN)),
            (43.6, -79.4, Some(1e9)),
        ] {
            let p = Location::new(lat, lon, acc, gps).unwrap_err();
            assert_eq!(p.field, "location");
        }
        assert!(Location::new(43.6535, -79.3839, Some(8.0), gps).is_ok());
        assert!(
            Location::new(0.0, -79.3839, None, gps).is_ok(),
            "the equator is real"
        );
    }
}
