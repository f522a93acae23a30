//! Where things are: locations as phones report them and the checks that keep impossible ones
//! out of a request, choosing the best fix, the jurisdiction's wards, and possible duplicates.

mod fix;
mod nearby;
mod wards;

pub use fix::{best_fix, Fix, WEAK_ACCURACY_M};
pub use nearby::{nearby_linear, KnownRequest, NearbyHit, NearbyIndex, NearbyParams};
pub use wards::{toronto_wards_geojson, BoundaryOptions, Jurisdiction, Ward};

/// Metres in one degree of latitude (and of longitude at the equator), on a sphere of the
/// Earth's mean radius.
pub const METRES_PER_DEGREE: f64 = 6_371_008.8 * std::f64::consts::PI / 180.0;

/// Great-circle distance in metres (haversine).
pub fn distance_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6_371_008.8 * a.sqrt().min(1.0).asin()
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GeoError {
    #[error("ward boundaries: {0}")]
    Boundaries(String),
    #[error("the point is outside the jurisdiction, {distance_m:.0} m from its edge")]
    Outside { distance_m: f64 },
    #[error(
        "({lat}, {lon}) is far outside the jurisdiction, but inside it with latitude and \
         longitude swapped: check their order"
    )]
    Swapped { lat: f64, lon: f64 },
    #[error("{0}")]
    InvalidPoint(String),
}

pub use crate::vocab::location::{Location, LocationSource, MAX_ACCURACY_M};
