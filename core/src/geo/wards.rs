//! The jurisdiction as ward polygons, and which ward a point falls in.
//!
//! A lookup asks an R-tree for the polygons whose box holds the point (one to three of the 25
//! in Toronto), then tests each with a strip index: the polygon's height is cut into bands and
//! each band keeps only the edges crossing it, so a ray cast touches ~10 edges, not ~1,000.

use std::cmp::Ordering;
use std::collections::HashMap;

use geo::{Coord, LineString, Polygon, Validation};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::RTree;
use serde::Serialize;
use serde_json::Value;

use super::GeoError;

/// Toronto's 25 wards (2018 model), WGS84, gzipped by the build script. Contains information
/// licensed under the Open Government Licence – Toronto.
const TORONTO_WARDS_GZ: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/toronto-wards-25.geojson.gz"));

/// Toronto's ward boundaries as GeoJSON (shipped gzipped; inflated here, a few milliseconds).
pub fn toronto_wards_geojson() -> Vec<u8> {
    use std::io::Read;
    let mut json = Vec::with_capacity(TORONTO_WARDS_GZ.len() * 4);
    flate2::read::GzDecoder::new(TORONTO_WARDS_GZ)
        .read_to_end(&mut json)
        .expect("the shipped ward boundaries inflate");
    json
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ward {
    pub code: String,
    pub name: String,
}

/// Which GeoJSON properties name a ward, and whether to check polygons for self-intersection
/// (thorough, and slow on large files: done for boundaries from outside, not the shipped ones).
#[derive(Debug, Clone)]
pub struct BoundaryOptions {
    pub code_property: String,
    pub name_property: String,
    pub validate: bool,
}

impl BoundaryOptions {
    pub fn new(code_property: &str, name_property: &str) -> Self {
        BoundaryOptions {
            code_property: code_property.into(),
            name_property: name_property.into(),
            validate: true,
        }
    }
}

#[derive(Clone, Copy)]
struct Edge {
    x1: f64,
    y1: f64,
    x2: f64,
    y2: f64,
}

enum Position {
    Inside,
    Boundary,
    Outside,
}

/// One polygon (exterior and holes) of a ward, ready for point tests.
struct Part {
    ward: usize,
    min_y: f64,
    band: f64,
    bands: Vec<Vec<Edge>>,
    rings: Vec<Vec<[f64; 2]>>,
}

impl Part {
    fn new(ward: usize, rings: Vec<Vec<[f64; 2]>>) -> Part {
        let edges: Vec<Edge> = rings
            .iter()
            .flat_map(|r| {
                r.windows(2).map(|w| Edge {
                    x1: w[0][0],
                    y1: w[0][1],
                    x2: w[1][0],
                    y2: w[1][1],
                })
            })
            .collect();
        let min_y = edges
            .iter()
            .map(|e| e.y1.min(e.y2))
            .fold(f64::INFINITY, f64::min);
        let max_y = edges
            .iter()
            .map(|e| e.y1.max(e.y2))
            .fold(f64::NEG_INFINITY, f64::max);
        let n = (edges.len() / 8).clamp(1, 4096);
        let band = ((max_y - min_y) / n as f64).max(f64::MIN_POSITIVE);
        let mut bands = vec![Vec::new(); n];
        let index = |y: f64| (((y - min_y) / band) as usize).min(n - 1);
        for e in edges {
            for b in &mut bands[index(e.y1.min(e.y2))..=index(e.y1.max(e.y2))] {
                b.push(e);
            }
        }
        Part {
            ward,
            min_y,
            band,
            bands,
            rings,
        }
    }

    fn locate(&self, x: f64, y: f64) -> Position {
        let i = (y - self.min_y) / self.band;
        if i < 0.0 || i as usize > self.bands.len() {
            return Position::Outside;
        }
        let mut inside = false;
        for e in &self.bands[(i as usize).min(self.bands.len() - 1)] {
            let (lo, hi) = if e.y1 < e.y2 {
                (e.y1, e.y2)
            } else {
                (e.y2, e.y1)
            };
            if y < lo || y > hi {
                continue;
            }
            // On the edge itself (within float noise): a shared boundary, decided by the caller.
            let cross = (e.x2 - e.x1) * (y - e.y1) - (e.y2 - e.y1) * (x - e.x1);
            let len = (e.x2 - e.x1).abs() + (e.y2 - e.y1).abs();
            if cross.abs() <= 1e-12 * len.max(1e-12) && x >= e.x1.min(e.x2) && x <= e.x1.max(e.x2) {
                return Position::Boundary;
            }
            if (e.y1 > y) != (e.y2 > y) {
                let xi = e.x1 + (y - e.y1) * (e.x2 - e.x1) / (e.y2 - e.y1);
                if xi > x {
                    inside = !inside;
                }
            }
        }
        if inside {
            Position::Inside
        } else {
            Position::Outside
        }
    }

    /// Metres from the point to this polygon's nearest edge.
    fn distance_m(&self, lat: f64, lon: f64) -> f64 {
        let mut best = f64::INFINITY;
        for ring in &self.rings {
            for w in ring.windows(2) {
                best = best.min(segment_distance_m(lat, lon, w[0], w[1]));
            }
        }
        best
    }
}

/// Metres from a point to a segment, in a plane tangent at the point (exact enough within a city).
fn segment_distance_m(lat: f64, lon: f64, a: [f64; 2], b: [f64; 2]) -> f64 {
    let k = lat.to_radians().cos();
    let (ax, ay) = ((a[0] - lon) * k, a[1] - lat);
    let (bx, by) = ((b[0] - lon) * k, b[1] - lat);
    let (dx, dy) = (bx - ax, by - ay);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (-(ax * dx + ay * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (px, py) = (ax + t * dx, ay + t * dy);
    (px * px + py * py).sqrt() * super::METRES_PER_DEGREE
}

/// A city's wards, loaded once and shared.
pub struct Jurisdiction {
    wards: Vec<Ward>,
    parts: Vec<Part>,
    tree: RTree<GeomWithData<Rectangle<[f64; 2]>, usize>>,
}

impl Jurisdiction {
    /// Toronto's 25 wards, shipped in the crate (validated by a test, so not again here).
    pub fn toronto() -> Jurisdiction {
        let options = BoundaryOptions {
            validate: false,
            ..BoundaryOptions::new("AREA_S_CD", "AREA_NAME")
        };
        Jurisdiction::from_geojson(&toronto_wards_geojson(), &options)
            .expect("the shipped ward boundaries load")
    }

    /// Toronto's wards, parsed once per process and shared: a server, or a test holding many
    /// stores, does not parse 700 KB of GeoJSON for each.
    pub fn toronto_shared() -> std::sync::Arc<Jurisdiction> {
        static SHARED: std::sync::OnceLock<std::sync::Arc<Jurisdiction>> =
            std::sync::OnceLock::new();
        SHARED
            .get_or_init(|| std::sync::Arc::new(Jurisdiction::toronto()))
            .clone()
    }

    /// Loads a GeoJSON FeatureCollection of Polygon and MultiPolygon features (holes allowed),
    /// one ward per distinct `code_property`.
    pub fn from_geojson(bytes: &[u8], options: &BoundaryOptions) -> Result<Jurisdiction, GeoError> {
        let bad = |m: String| GeoError::Boundaries(m);
        let root: Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let features = match (
            root.get("type").and_then(Value::as_str),
            root.get("features"),
        ) {
            (Some("FeatureCollection"), Some(Value::Array(f))) => f,
            _ => {
                return Err(bad(
                    "expected a GeoJSON FeatureCollection with \"features\"".into(),
                ))
            }
        };
        let mut wards: Vec<Ward> = Vec::new();
        let mut ward_index: HashMap<String, usize> = HashMap::new();
        let mut parts = Vec::new();
        for (i, feature) in features.iter().enumerate() {
            let prop = |key: &str| -> Result<String, GeoError> {
                match feature.get("properties").and_then(|p| p.get(key)) {
                    Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                    Some(Value::Number(n)) => Ok(n.to_string()),
                    _ => Err(bad(format!("feature {i} has no property {key:?}"))),
                }
            };
            let code = prop(&options.code_property)?;
            let name = prop(&options.name_property)?;
            let ward = *ward_index.entry(code.clone()).or_insert_with(|| {
                wards.push(Ward {
                    code: code.clone(),
                    name,
                });
                wards.len() - 1
            });
            let geometry = feature
                .get("geometry")
                .ok_or_else(|| bad(format!("feature {i} has no geometry")))?;
            let coordinates = geometry.get("coordinates");
            let polygons: Vec<&Value> =
                match (geometry.get("type").and_then(Value::as_str), coordinates) {
                    (Some("Polygon"), Some(c)) => vec![c],
                    (Some("MultiPolygon"), Some(Value::Array(ps))) => ps.iter().collect(),
                    (t, _) => {
                        return Err(bad(format!(
                            "feature {i} ({code}): geometry {t:?} is not a Polygon or MultiPolygon"
                        )))
                    }
                };
            if polygons.is_empty() {
                return Err(bad(format!("feature {i} ({code}): empty MultiPolygon")));
            }
            for polygon in polygons {
                let rings =
                    parse_rings(polygon).map_err(|m| bad(format!("feature {i} ({code}): {m}")))?;
                if options.validate {
                    let geo_polygon = Polygon::new(
                        LineString::from(
                            rings[0]
                                .iter()
                                .map(|p| Coord { x: p[0], y: p[1] })
                                .collect::<Vec<_>>(),
                        ),
                        rings[1..]
                            .iter()
                            .map(|r| {
                                LineString::from(
                                    r.iter()
                                        .map(|p| Coord { x: p[0], y: p[1] })
                                        .collect::<Vec<_>>(),
                                )
                            })
                            .collect(),
                    );
                    if let Err(e) = geo_polygon.check_validation() {
                        return Err(bad(format!("feature {i} ({code}): invalid polygon: {e}")));
                    }
                }
                parts.push(Part::new(ward, rings));
            }
        }
        if parts.is_empty() {
            return Err(bad("no polygons".into()));
        }
        let tree = RTree::bulk_load(
            parts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
                    for point in &p.rings[0] {
                        for d in 0..2 {
                            lo[d] = lo[d].min(point[d]);
                            hi[d] = hi[d].max(point[d]);
                        }
                    }
                    GeomWithData::new(Rectangle::from_corners(lo, hi), i)
                })
                .collect(),
        );
        Ok(Jurisdiction { wards, parts, tree })
    }

    pub fn wards(&self) -> &[Ward] {
        &self.wards
    }

    /// The box around the whole jurisdiction: (min lon, min lat), (max lon, max lat).
    pub fn bounds(&self) -> ([f64; 2], [f64; 2]) {
        let env = self.tree.root().envelope();
        (env.lower(), env.upper())
    }

    /// The ward holding the point. A point exactly on the edge between two wards belongs to the
    /// one with the lower code, every time. Outside: the distance to the jurisdiction's edge,
    /// or a hint that latitude and longitude were swapped.
    pub fn ward_at(&self, lat: f64, lon: f64) -> Result<&Ward, GeoError> {
        if !lat.is_finite() || !lon.is_finite() || lat.abs() > 90.0 || lon.abs() > 180.0 {
            return Err(GeoError::InvalidPoint(format!(
                "({lat}, {lon}) is not a latitude and longitude"
            )));
        }
        if let Some(w) = self.lookup(lat, lon) {
            return Ok(&self.wards[w]);
        }
        if lon.abs() <= 90.0 && self.lookup(lon, lat).is_some() {
            return Err(GeoError::Swapped { lat, lon });
        }
        let distance_m = self
            .parts
            .iter()
            .map(|p| p.distance_m(lat, lon))
            .fold(f64::INFINITY, f64::min);
        Err(GeoError::Outside { distance_m })
    }

    /// The ward holding the point, or `None`: the fast path of [`Jurisdiction::ward_at`], without
    /// its diagnosis of points outside.
    pub fn ward_of(&self, lat: f64, lon: f64) -> Option<&Ward> {
        self.lookup(lat, lon).map(|w| &self.wards[w])
    }

    fn lookup(&self, lat: f64, lon: f64) -> Option<usize> {
        let mut inside: Option<usize> = None;
        let mut boundary: Option<usize> = None;
        for candidate in self.tree.locate_all_at_point(&[lon, lat]) {
            let part = &self.parts[candidate.data];
            let slot = match part.locate(lon, lat) {
                Position::Inside => &mut inside,
                Position::Boundary => &mut boundary,
                Position::Outside => continue,
            };
            if slot.is_none_or(|w| self.code_order(part.ward, w) == Ordering::Less) {
                *slot = Some(part.ward);
            }
        }
        inside.or(boundary)
    }

    /// Codes compare as numbers when both are numbers ("3" before "25"), else as text.
    fn code_order(&self, a: usize, b: usize) -> Ordering {
        let (a, b) = (&self.wards[a].code, &self.wards[b].code);
        match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => a.cmp(b),
        }
    }

    /// Metres from a point to the nearest edge of a ward (0 inside it); `None` for an unknown code.
    pub fn distance_to_ward_m(&self, code: &str, lat: f64, lon: f64) -> Option<f64> {
        let w = self.wards.iter().position(|w| w.code == code)?;
        if self.lookup(lat, lon) == Some(w) {
            return Some(0.0);
        }
        self.parts
            .iter()
            .filter(|p| p.ward == w)
            .map(|p| p.distance_m(lat, lon))
            .reduce(f64::min)
    }

    /// The simple way, for comparison: every polygon, every edge, with `geo`'s own test.
    pub fn ward_at_naive(&self, lat: f64, lon: f64) -> Option<&Ward> {
        use geo::Intersects;
        let point = geo::Point::new(lon, lat);
        self.parts.iter().find_map(|p| {
            let ring = |r: &Vec<[f64; 2]>| {
                LineString::from(
                    r.iter()
                        .map(|c| Coord { x: c[0], y: c[1] })
                        .collect::<Vec<_>>(),
                )
            };
            let polygon = Polygon::new(ring(&p.rings[0]), p.rings[1..].iter().map(ring).collect());
            polygon.intersects(&point).then(|| &self.wards[p.ward])
        })
    }

    /// The naive loop over prebuilt `geo` polygons (what a first implementation would keep).
    pub fn geo_polygons(&self) -> Vec<(usize, Polygon)> {
        let ring = |r: &Vec<[f64; 2]>| {
            LineString::from(
                r.iter()
                    .map(|c| Coord { x: c[0], y: c[1] })
                    .collect::<Vec<_>>(),
            )
        };
        self.parts
            .iter()
            .map(|p| {
                (
                    p.ward,
                    Polygon::new(ring(&p.rings[0]), p.rings[1..].iter().map(ring).collect()),
                )
            })
            .collect()
    }
}

/// Rings of one GeoJSON polygon: arrays of [longitude, latitude] positions, closed.
fn parse_rings(polygon: &Value) -> Result<Vec<Vec<[f64; 2]>>, String> {
    let rings = polygon
        .as_array()
        .ok_or("polygon coordinates are not an array")?;
    if rings.is_empty() {
        return Err("empty polygon (no rings)".into());
    }
    let mut out = Vec::with_capacity(rings.len());
    for (r, ring) in rings.iter().enumerate() {
        let positions = ring.as_array().ok_or(format!("ring {r} is not an array"))?;
        let mut points = Vec::with_capacity(positions.len() + 1);
        for p in positions {
            let (x, y) = match p.as_array().map(|a| a.as_slice()) {
                Some([x, y, ..]) => (x.as_f64(), y.as_f64()),
                _ => (None, None),
            };
            let (Some(x), Some(y)) = (x, y) else {
                return Err(format!(
                    "ring {r}: {p} is not a [longitude, latitude] position"
                ));
            };
            if !x.is_finite() || !y.is_finite() || x.abs() > 180.0 || y.abs() > 90.0 {
                let hint = if y.abs() > 90.0 && x.abs() <= 90.0 {
                    " (are latitude and longitude swapped?)"
                } else {
                    ""
                };
                return Err(format!(
                    "ring {r}: [{x}, {y}] is not a [longitude, latitude] position{hint}"
                ));
            }
            points.push([x, y]);
        }
        if points.first() != points.last() {
            if let Some(&first) = points.first() {
                points.push(first); // GeoJSON requires closed rings; close an open one.
            }
        }
        let mut distinct = points.clone();
        distinct.dedup();
        if distinct.len() < 4 {
            return Err(format!(
                "ring {r} has fewer than 3 distinct points (an empty polygon)"
            ));
        }
        out.push(points);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(code: &str, x0: f64, y0: f64, size: f64) -> String {
        format!(
            r#"{{"type":"Feature","properties":{{"c":"{code}","n":"Ward {code}"}},"geometry":{{"type":"Polygon",
            "coordinates":[[[{x0},{y0}],[{x1},{y0}],[{x1},{y1}],[{x0},{y1}],[{x0},{y0}]]]}}}}"#,
            x1 = x0 + size,
            y1 = y0 + size
        )
    }

    fn load(features: &[String]) -> Result<Jurisdiction, GeoError> {
        let json = format!(
            r#"{{"type":"FeatureCollection","features":[{}]}}"#,
            features.join(",")
        );
        Jurisdiction::from_geojson(json.as_bytes(), &BoundaryOptions::new("c", "n"))
    }

    #[test]
    fn a_point_on_a_shared_edge_always_resolves_to_the_lower_code() {
        // Ward 10 on the left, ward 9 on the right, sharing x = 1.
        let j = load(&[square("10", 0.0, 0.0, 1.0), square("9", 1.0, 0.0, 1.0)]).unwrap();
        assert_eq!(j.ward_at(0.5, 0.5).unwrap().code, "10");
        assert_eq!(j.ward_at(0.5, 1.5).unwrap().code, "9");
        for _ in 0..3 {
            assert_eq!(
                j.ward_at(0.5, 1.0).unwrap().code,
                "9",
                "on the shared edge: 9 < 10"
            );
            assert_eq!(
                j.ward_at(1.0, 1.0).unwrap().code,
                "9",
                "on the shared corner"
            );
        }
        match j.ward_at(0.5, 2.01) {
            Err(GeoError::Outside { distance_m }) => {
                assert!((distance_m - 1113.0).abs() < 20.0, "{distance_m}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn holes_and_multipolygons_are_honoured() {
        let donut = r#"{"type":"Feature","properties":{"c":"1","n":"Donut"},"geometry":{"type":"MultiPolygon",
            "coordinates":[[[[0,0],[4,0],[4,4],[0,4],[0,0]],[[1,1],[3,1],[3,3],[1,3],[1,1]]],
                           [[[10,10],[11,10],[11,11],[10,11],[10,10]]]]}}"#;
        let j = load(&[donut.to_string(), square("2", 1.5, 1.5, 1.0)]).unwrap();
        assert_eq!(j.ward_at(0.5, 0.5).unwrap().code, "1");
        assert_eq!(
            j.ward_at(2.0, 2.0).unwrap().code,
            "2",
            "inside the hole is the other ward"
        );
        assert!(
            matches!(j.ward_at(1.2, 1.2), Err(GeoError::Outside { .. })),
            "hole, outside ward 2"
        );
        assert_eq!(
            j.ward_at(10.5, 10.5).unwrap().code,
            "1",
            "second polygon of the MultiPolygon"
        );
    }

    #[test]
    fn bad_boundaries_get_errors_that_name_the_feature() {
        let bowtie = r#"{"type":"Feature","properties":{"c":"7","n":"Bowtie"},"geometry":{"type":"Polygon",
            "coordinates":[[[0,0],[1,1],[1,0],[0,1],[0,0]]]}}"#;
        let cases: Vec<(Vec<String>, &str)> = vec![
            (vec![bowtie.to_string()], "invalid polygon"),
            (vec![r#"{"type":"Feature","properties":{"c":"1","n":"x"},"geometry":{"type":"Polygon","coordinates":[]}}"#.into()], "empty polygon"),
            (vec![r#"{"type":"Feature","properties":{"c":"1","n":"x"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,1],[0,0]]]}}"#.into()], "fewer than 3"),
            (vec![r#"{"type":"Feature","properties":{"c":"1","n":"x"},"geometry":{"type":"Point","coordinates":[0,0]}}"#.into()], "not a Polygon"),
            (vec![r#"{"type":"Feature","properties":{"n":"x"},"geometry":{"type":"Polygon","coordinates":[]}}"#.into()], "no property \"c\""),
            (vec![r#"{"type":"Feature","properties":{"c":"1","n":"x"},"geometry":{"type":"Polygon","coordinates":[[[43.6,-79.4],[43.7,-79.4],[43.7,-79.3],[43.6,-79.4]]]}}"#.into()], ""),
            (vec![r#"{"type":"Feature","properties":{"c":"1","n":"x"},"geometry":{"type":"Polygon","coordinates":[[[-79.4,143.6],[1,2],[3,4]]]}}"#.into()], "not a [longitude, latitude]"),
            (vec![r#"{"type":"Feature","properties":{"c":"1","n":"x"},"geometry":{"type":"Polygon","coordinates":[[[1e999,0],[1,2],[3,4]]]}}"#.into()], "not valid JSON"),
            (vec![], "no polygons"),
        ];
        for (features, expected) in cases {
            match load(&features) {
                Err(e) => assert!(
                    e.to_string().contains(expected),
                    "{e} should say {expected:?}"
                ),
                Ok(_) => assert!(expected.is_empty(), "{features:?} loaded"),
            }
        }
        assert!(Jurisdiction::from_geojson(
            b"{\"type\":\"Feature\"}",
            &BoundaryOptions::new("c", "n")
        )
        .is_err());
        assert!(Jurisdiction::from_geojson(b"\xff\xfe", &BoundaryOptions::new("c", "n")).is_err());
    }
}
