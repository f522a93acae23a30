//! Location benchmark, as ratios to the simple way measured in the same run.
//!
//!   cargo run --release -p curbside-core --example bench_geo
//!
//! 1. Ward lookups on Toronto's 25 real wards (25,434 vertices), random points in the city's
//!    bounding box, one core: `Jurisdiction::ward_of` vs a loop over all polygons with `geo`'s
//!    `Intersects`.
//! 2. Duplicate candidates over 100,000 and 1,000,000 cached requests spread over the city
//!    (12 services, 70% open, up to 60 days old, accuracy 3–60 m): index build time, p50/p99
//!    latency of `NearbyIndex::query`, and the mean against a linear scan.
//!
//! Targets (issue #4): ≥ 1,000,000 ward lookups/s; nearby p99 ≤ 10 µs at 100k, ≤ 50 µs at 1M.

use std::hint::black_box;
use std::time::{Duration, Instant};

use curbside_core::geo::{nearby_linear, Jurisdiction, KnownRequest, NearbyIndex, NearbyParams};
use curbside_core::{Location, LocationSource};
use geo::Intersects;

struct Rng(u64);
impl Rng {
    fn f(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

const SERVICES: [&str; 12] = [
    "CSROWR-12",
    "CSROWC-05",
    "CSROWBM-03",
    "CSROSC-14",
    "30102",
    "SWLMALB-02",
    "SWM-BIN-LID",
    "ANS-WILDLIFE-INJURED",
    "ANS-WILDLIFE-DEAD",
    "MLS-PROPERTY-STANDARDS",
    "TS-STREETLIGHT-OUT",
    "SWM-ILLEGAL-DUMPING",
];

fn main() {
    let toronto = Jurisdiction::toronto();
    let (lo, hi) = toronto.bounds();
    let mut rng = Rng(42);
    let point = |rng: &mut Rng| {
        (
            lo[1] + rng.f() * (hi[1] - lo[1]),
            lo[0] + rng.f() * (hi[0] - lo[0]),
        )
    };

    // 1. Ward lookups.
    let points: Vec<(f64, f64)> = (0..1_000_000).map(|_| point(&mut rng)).collect();
    let mut best = Duration::MAX;
    let mut inside = 0;
    for _ in 0..3 {
        let t = Instant::now();
        inside = points
            .iter()
            .filter(|&&(lat, lon)| black_box(toronto.ward_of(lat, lon)).is_some())
            .count();
        best = best.min(t.elapsed());
    }
    let ours = points.len() as f64 / best.as_secs_f64();
    let polygons = toronto.geo_polygons();
    let sample = &points[..20_000];
    let t = Instant::now();
    let naive_inside = sample
        .iter()
        .filter(|&&(lat, lon)| {
            let p = geo::Point::new(lon, lat);
            black_box(polygons.iter().find(|(_, poly)| poly.intersects(&p))).is_some()
        })
        .count();
    let naive = sample.len() as f64 / t.elapsed().as_secs_f64();
    let ours_sample = sample
        .iter()
        .filter(|&&(lat, lon)| toronto.ward_of(lat, lon).is_some())
        .count();
    assert_eq!(
        ours_sample, naive_inside,
        "both ways agree on which points are in a ward"
    );
    println!(
        "ward lookups, Toronto's 25 wards, random points in the city's box ({:.0}% inside a ward):",
        inside as f64 / 1e4
    );
    println!("  curbside {:>12.0}/s   naive loop over geo polygons {:>9.0}/s   {:.0}× faster (target ≥ 1,000,000/s)",
        ours, naive, ours / naive);

    // 2. Nearby.
    let now = 1_800_000_000_000i64;
    let params = NearbyParams::default();
    let mut ok = ours >= 1_000_000.0;
    for (n, target_us) in [(100_000usize, 10.0), (1_000_000, 50.0)] {
        let requests: Vec<KnownRequest> = (0..n)
            .map(|i| {
                let (lat, lon) = point(&mut rng);
                let service = if rng.f() < 0.4 {
                    SERVICES[0]
                } else {
                    SERVICES[1 + (rng.f() * 11.0) as usize % 11]
                };
                KnownRequest {
                    id: format!("r{i}"),
                    service_code: service.into(),
                    lat,
                    lon,
                    accuracy_m: Some(3.0 + rng.f() * 57.0),
                    created_at_ms: now - (rng.f() * 60.0 * 86_400_000.0) as i64,
                    open: rng.f() < 0.7,
                }
            })
            .collect();
        let t = Instant::now();
        let index = NearbyIndex::build(43.7, requests.iter().cloned());
        let build = t.elapsed();
        let queries: Vec<Location> = (0..20_000)
            .map(|_| {
                let (lat, lon) = point(&mut rng);
                Location::new(lat, lon, Some(3.0 + rng.f() * 27.0), LocationSource::Gps).unwrap()
            })
            .collect();
        let mut latencies: Vec<f64> = Vec::with_capacity(queries.len());
        let mut found = 0;
        for q in &queries {
            let t = Instant::now();
            let hits = black_box(index.query(SERVICES[0], q, now, &params, None));
            latencies.push(t.elapsed().as_secs_f64() * 1e6);
            found += hits.len();
        }
        latencies.sort_by(f64::total_cmp);
        let p50 = latencies[latencies.len() / 2];
        let p99 = latencies[latencies.len() * 99 / 100];
        let mean = latencies.iter().sum::<f64>() / latencies.len() as f64;
        let linear_n = 50;
        let t = Instant::now();
        for q in &queries[..linear_n] {
            let expected = nearby_linear(&requests, SERVICES[0], q, now, &params);
            assert_eq!(
                black_box(index.query(SERVICES[0], q, now, &params, None)),
                expected
            );
        }
        let linear_us = t.elapsed().as_secs_f64() * 1e6 / linear_n as f64;
        println!(
            "nearby over {n} cached requests ({:.2} candidates per query):",
            found as f64 / queries.len() as f64
        );
        println!("  build {:>7.1} ms   p50 {p50:>6.2} µs   p99 {p99:>6.2} µs (target ≤ {target_us} µs)   linear scan {linear_us:>9.1} µs   {:.0}× faster",
            build.as_secs_f64() * 1e3, linear_us / mean);
        ok &= p99 <= target_us;
    }
    println!("targets: {}", if ok { "met" } else { "MISSED" });
    if !ok {
        std::process::exit(1);
    }
}
