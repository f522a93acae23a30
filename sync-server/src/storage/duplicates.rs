//! Likely duplicates, found as each new request arrives: the open public requests of the same
//! service around it, judged by the core's duplicate rule (the one the phone applies before a
//! report is sent), and recorded beside it for staff and Open311 clients to see. Nothing is
//! merged: deciding that two reports are one problem is staff's call (`duplicate_of`).
//! Written once, over any engine's [`Tx`].

use curbside_core::geo::{nearby_linear, KnownRequest, NearbyParams};
use curbside_core::vocab::{Location, LocationSource, RequestId};

use super::tx::{Tx, R};
use crate::scope;

/// Requests around a new one read at most: the rule keeps at most five within 100 m.
pub const CANDIDATES: usize = 200;

/// A located request, as the rule needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: RequestId,
    pub service_code: String,
    pub lat: f64,
    pub lon: f64,
    pub accuracy_m: Option<f64>,
    pub created_at_ms: i64,
}

/// Finds and records the likely duplicates of the requests `new` (those located).
pub fn on_receipt(tx: &mut dyn Tx, new: &[RequestId], now_ms: i64) -> R<()> {
    if new.is_empty() {
        return Ok(());
    }
    let params = NearbyParams::default();
    let mut found = Vec::new();
    for subject in tx.duplicate_subjects(new)? {
        // The rule reaches no further than its cap: a box that holds that circle, in the few
        // cells it touches.
        let reach = params.cap_m * 1.05;
        let dlat = reach / 110_000.0;
        let dlon = reach / (110_000.0 * subject.lat.to_radians().cos().max(0.01));
        let around = tx.duplicate_candidates(
            &scope::cells_within(subject.lat, subject.lon, reach),
            &subject.service_code,
            (
                (subject.lat - dlat, subject.lat + dlat),
                (subject.lon - dlon, subject.lon + dlon),
            ),
            now_ms.saturating_sub(params.max_age_ms),
            &subject.id,
            CANDIDATES,
        )?;
        let known: Vec<KnownRequest> = around
            .iter()
            .map(|c| KnownRequest {
                id: c.id.to_string(),
                service_code: c.service_code.clone(),
                lat: c.lat,
                lon: c.lon,
                accuracy_m: c.accuracy_m,
                created_at_ms: c.created_at_ms,
                open: true,
            })
            .collect();
        let at = Location {
            lat: subject.lat,
            lon: subject.lon,
            accuracy_m: subject.accuracy_m,
            source: LocationSource::MapPin,
        };
        for hit in nearby_linear(&known, &subject.service_code, &at, now_ms, &params) {
            if let Ok(other) = RequestId::parse(&hit.id) {
                found.push((subject.id, other, hit.distance_m));
            }
        }
    }
    if !found.is_empty() {
        tx.record_duplicates(&found)?;
    }
    Ok(())
}
