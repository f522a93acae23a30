//! Possible duplicates: open requests of the same service, recent, within a distance that grows
//! with how unsure both locations are. One R-tree per service, kept up to date as requests are
//! added, synced in or closed. Pure data in, answers out, so the server runs the same check.

use std::collections::HashMap;

use rstar::primitives::GeomWithData;
use rstar::RTree;
use serde::Serialize;

use super::{distance_m, Location, METRES_PER_DEGREE};

/// A request the device knows: its own, or one synced in from the server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KnownRequest {
    pub id: String,
    pub service_code: String,
    pub lat: f64,
    pub lon: f64,
    pub accuracy_m: Option<f64>,
    pub created_at_ms: i64,
    pub open: bool,
}

/// The duplicate rule: distance ≤ base + factor·√(a₁² + a₂²), capped; created within
/// `max_age_ms`; at most `limit` answers, nearest first.
#[derive(Debug, Clone, PartialEq)]
pub struct NearbyParams {
    pub base_m: f64,
    pub accuracy_factor: f64,
    pub cap_m: f64,
    pub max_age_ms: i64,
    pub limit: usize,
}

impl Default for NearbyParams {
    fn default() -> Self {
        NearbyParams {
            base_m: 25.0,
            // 1.6 turns a ~68% radius into ~95% for a circular Gaussian error.
            accuracy_factor: 1.6,
            cap_m: 100.0,
            max_age_ms: 30 * 24 * 3600 * 1000,
            limit: 5,
        }
    }
}

impl NearbyParams {
    pub fn radius_m(&self, a1: Option<f64>, a2: Option<f64>) -> f64 {
        let (a1, a2) = (a1.unwrap_or(0.0), a2.unwrap_or(0.0));
        (self.base_m + self.accuracy_factor * (a1 * a1 + a2 * a2).sqrt()).min(self.cap_m)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NearbyHit {
    pub id: String,
    pub distance_m: f64,
    /// The radius this pair was judged by.
    pub radius_m: f64,
    pub created_at_ms: i64,
}

struct Entry {
    id: String,
    service_code: String,
    lat: f64,
    lon: f64,
    accuracy_m: Option<f64>,
    created_at_ms: i64,
    point: [f64; 2],
}

type Tree = RTree<GeomWithData<[f64; 2], u32>>;

/// Open requests with a location, by service, in a plane of metres around `origin_lat`.
pub struct NearbyIndex {
    scale_x: f64,
    origin_cos: f64,
    trees: HashMap<String, Tree>,
    entries: Vec<Option<Entry>>,
    slots: HashMap<String, u32>,
    free: Vec<u32>,
}

impl NearbyIndex {
    /// An empty index projected around `origin_lat` (the jurisdiction's latitude).
    pub fn new(origin_lat: f64) -> NearbyIndex {
        let origin_cos = origin_lat.to_radians().cos().max(0.01);
        NearbyIndex {
            scale_x: origin_cos * METRES_PER_DEGREE,
            origin_cos,
            trees: HashMap::new(),
            entries: Vec::new(),
            slots: HashMap::new(),
            free: Vec::new(),
        }
    }

    /// Builds the index in one pass (R-tree bulk loading), skipping closed requests.
    pub fn build(origin_lat: f64, requests: impl IntoIterator<Item = KnownRequest>) -> NearbyIndex {
        let mut index = NearbyIndex::new(origin_lat);
        let mut points: HashMap<String, Vec<GeomWithData<[f64; 2], u32>>> = HashMap::new();
        for r in requests.into_iter().filter(|r| r.open) {
            if index.slots.contains_key(&r.id) {
                continue;
            }
            let slot = index.entries.len() as u32;
            let point = index.project(r.lat, r.lon);
            points
                .entry(r.service_code.clone())
                .or_default()
                .push(GeomWithData::new(point, slot));
            index.slots.insert(r.id.clone(), slot);
            index.entries.push(Some(index.entry(r, point)));
        }
        index.trees = points
            .into_iter()
            .map(|(k, v)| (k, RTree::bulk_load(v)))
            .collect();
        index
    }

    fn project(&self, lat: f64, lon: f64) -> [f64; 2] {
        [lon * self.scale_x, lat * METRES_PER_DEGREE]
    }

    fn entry(&self, r: KnownRequest, point: [f64; 2]) -> Entry {
        Entry {
            id: r.id,
            service_code: r.service_code,
            lat: r.lat,
            lon: r.lon,
            accuracy_m: r.accuracy_m,
            created_at_ms: r.created_at_ms,
            point,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Adds or replaces a request; a closed one is removed.
    pub fn upsert(&mut self, request: KnownRequest) {
        self.remove(&request.id);
        if !request.open || !request.lat.is_finite() || !request.lon.is_finite() {
            return;
        }
        let point = self.project(request.lat, request.lon);
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.entries.push(None);
                (self.entries.len() - 1) as u32
            }
        };
        self.trees
            .entry(request.service_code.clone())
            .or_default()
            .insert(GeomWithData::new(point, slot));
        self.slots.insert(request.id.clone(), slot);
        self.entries[slot as usize] = Some(self.entry(request, point));
    }

    pub fn remove(&mut self, id: &str) {
        let Some(slot) = self.slots.remove(id) else {
            return;
        };
        if let Some(e) = self.entries[slot as usize].take() {
            if let Some(tree) = self.trees.get_mut(&e.service_code) {
                tree.remove(&GeomWithData::new(e.point, slot));
            }
        }
        self.free.push(slot);
    }

    /// Open requests of `service_code` that may be the same problem as a report at `at`,
    /// nearest first. `exclude` leaves out the report itself.
    pub fn query(
        &self,
        service_code: &str,
        at: &Location,
        now_ms: i64,
        params: &NearbyParams,
        exclude: Option<&str>,
    ) -> Vec<NearbyHit> {
        let Some(tree) = self.trees.get(service_code) else {
            return Vec::new();
        };
        // The plane's x scale is right at the origin's latitude; search a little wider so a
        // report far north or south of it misses nothing, then judge by the true distance.
        let stretch = (self.origin_cos / at.lat.to_radians().cos().max(0.01)).max(1.0) * 1.05;
        let reach = params.cap_m * stretch;
        let q = self.project(at.lat, at.lon);
        let mut hits: Vec<NearbyHit> = tree
            .locate_within_distance(q, reach * reach)
            .filter_map(|g| {
                let e = self.entries[g.data as usize].as_ref()?;
                if now_ms - e.created_at_ms > params.max_age_ms || exclude == Some(e.id.as_str()) {
                    return None;
                }
                judge(
                    at,
                    &e.id,
                    e.lat,
                    e.lon,
                    e.accuracy_m,
                    e.created_at_ms,
                    params,
                )
            })
            .collect();
        nearest_first(&mut hits, params);
        hits
    }
}

/// The same rule by looking at every request: the reference the index must agree with.
pub fn nearby_linear<'a>(
    requests: impl IntoIterator<Item = &'a KnownRequest>,
    service_code: &str,
    at: &Location,
    now_ms: i64,
    params: &NearbyParams,
) -> Vec<NearbyHit> {
    let mut hits: Vec<NearbyHit> = requests
        .into_iter()
        .filter(|r| {
            r.open
                && r.service_code == service_code
                && now_ms - r.created_at_ms <= params.max_age_ms
        })
        .filter_map(|r| {
            judge(
                at,
                &r.id,
                r.lat,
                r.lon,
                r.accuracy_m,
                r.created_at_ms,
                params,
            )
        })
        .collect();
    nearest_first(&mut hits, params);
    hits
}

/// The rule itself: a hit when the true distance is within the pair's radius.
fn judge(
    at: &Location,
    id: &str,
    lat: f64,
    lon: f64,
    accuracy_m: Option<f64>,
    created_at_ms: i64,
    params: &NearbyParams,
) -> Option<NearbyHit> {
    let d = distance_m(at.lat, at.lon, lat, lon);
    let radius = params.radius_m(at.accuracy_m, accuracy_m);
    (d <= radius).then(|| NearbyHit {
        id: id.to_string(),
        distance_m: d,
        radius_m: radius,
        created_at_ms,
    })
}

fn nearest_first(hits: &mut Vec<NearbyHit>, params: &NearbyParams) {
    hits.sort_by(|a, b| {
        a.distance_m
            .total_cmp(&b.distance_m)
            .then_with(|| a.id.cmp(&b.id))
    });
    hits.truncate(params.limit);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::LocationSource;

    const DAY: i64 = 24 * 3600 * 1000;
    const NOW: i64 = 1_800_000_000_000;

    fn req(
        id: &str,
        service: &str,
        north_m: f64,
        accuracy: f64,
        age_days: i64,
        open: bool,
    ) -> KnownRequest {
        KnownRequest {
            id: id.into(),
            service_code: service.into(),
            lat: 43.65 + north_m / METRES_PER_DEGREE,
            lon: -79.38,
            accuracy_m: Some(accuracy),
            created_at_ms: NOW - age_days * DAY,
            open,
        }
    }

    fn here(accuracy: f64) -> Location {
        Location::new(43.65, -79.38, Some(accuracy), LocationSource::Gps).unwrap()
    }

    #[test]
    fn only_open_recent_same_service_requests_within_the_radius_count() {
        let requests = vec![
            req("near", "POTHOLE", 10.0, 5.0, 1, true),
            req("edge", "POTHOLE", 30.0, 5.0, 1, true), // radius 25 + 1.6·√50 ≈ 36.3 m
            req("far", "POTHOLE", 40.0, 5.0, 1, true),
            req("closed", "POTHOLE", 5.0, 5.0, 1, false),
            req("old", "POTHOLE", 5.0, 5.0, 31, true),
            req("other", "GRAFFITI", 5.0, 5.0, 1, true),
            req("vague", "POTHOLE", 90.0, 200.0, 1, true), // radius capped at 100 m
        ];
        let index = NearbyIndex::build(43.7, requests.clone());
        let params = NearbyParams::default();
        let hits = index.query("POTHOLE", &here(5.0), NOW, &params, None);
        let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, ["near", "edge", "vague"]);
        assert_eq!(
            hits,
            nearby_linear(&requests, "POTHOLE", &here(5.0), NOW, &params)
        );
        assert!((hits[2].radius_m - 100.0).abs() < 1e-9);
    }

    #[test]
    fn the_index_follows_additions_closures_and_moves() {
        let mut index = NearbyIndex::new(43.7);
        let params = NearbyParams::default();
        index.upsert(req("a", "POTHOLE", 10.0, 5.0, 0, true));
        assert_eq!(
            index.query("POTHOLE", &here(5.0), NOW, &params, None).len(),
            1
        );
        assert!(
            index
                .query("POTHOLE", &here(5.0), NOW, &params, Some("a"))
                .is_empty(),
            "not itself"
        );
        index.upsert(req("a", "POTHOLE", 500.0, 5.0, 0, true)); // moved away
        assert!(index
            .query("POTHOLE", &here(5.0), NOW, &params, None)
            .is_empty());
        index.upsert(req("a", "POTHOLE", 1.0, 5.0, 0, true));
        index.upsert(req("a", "POTHOLE", 1.0, 5.0, 0, false)); // closed
        assert!(index
            .query("POTHOLE", &here(5.0), NOW, &params, None)
            .is_empty());
        assert_eq!(index.len(), 0);
        for i in 0..10 {
            index.upsert(req(&format!("r{i}"), "POTHOLE", i as f64, 3.0, 0, true));
        }
        assert_eq!(
            index.query("POTHOLE", &here(3.0), NOW, &params, None).len(),
            5,
            "at most 5"
        );
    }
}
