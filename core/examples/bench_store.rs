//! Store benchmark, as a ratio to plain rusqlite doing the equivalent work on an equivalent
//! table in the same run (absolute times on a shared machine mean little).
//!
//!   cargo run --release -p curbside-core --example bench_store [-- DRAFTS]
//!
//! 1. list the 50 newest queued requests out of DRAFTS (default 10,000): `Store::drafts` vs one
//!    SELECT on a plain table with the same index;
//! 2. create + validate + queue a draft (description, three attributes, location; two
//!    transactions, the first logging the draft's changes) vs one plain INSERT of the same
//!    fields per transaction.
//!
//! Targets (issues #2 and #9): list ≤ 2× plain; create+validate+queue ≥ 2,000/s and ≥ 0.4× plain.

use std::time::{Duration, Instant};

use curbside_core::{DraftEdit, Location, LocationSource, State, Store};
use rusqlite::{params, Connection};

fn edit(i: usize) -> DraftEdit {
    DraftEdit {
        description: Some(format!(
            "Pothole number {i} in the curb lane, about a tire wide"
        )),
        attributes: vec![
            ("SIZE".into(), vec!["medium".into()]),
            ("DEPTH_CM".into(), vec![format!("{}", 5 + i % 20)]),
            ("HAZARDS".into(), vec!["cyclists".into()]),
        ],
        location: Some(Some(
            Location::new(
                43.65 + (i % 100) as f64 * 1e-4,
                -79.38,
                Some(5.0),
                LocationSource::Gps,
            )
            .unwrap(),
        )),
        ..DraftEdit::default()
    }
}

const PLAIN_SCHEMA: &str = "
    PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;
    CREATE TABLE requests (
        id TEXT PRIMARY KEY, service_code TEXT NOT NULL, state TEXT NOT NULL,
        description TEXT NOT NULL, lat REAL, lon REAL, accuracy REAL, location_source TEXT,
        address TEXT, service_request_id TEXT, created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL);
    CREATE INDEX requests_by_state ON requests (state, created_at DESC, id DESC);";

fn plain_insert(conn: &Connection, i: usize, state: &str) {
    conn.prepare_cached(
        "INSERT INTO requests (id, service_code, state, description, lat, lon, accuracy,
             location_source, created_at, updated_at)
         VALUES (?1, 'CSROWR-12', ?2, ?3, ?4, -79.38, 5.0, 'gps', ?5, ?5)",
    )
    .unwrap()
    .execute(params![
        uuid_like(i),
        state,
        format!("Pothole number {i} in the curb lane, about a tire wide"),
        43.65 + (i % 100) as f64 * 1e-4,
        1_700_000_000_000i64 + i as i64
    ])
    .unwrap();
}

/// What the plain query reads: the same columns as `DraftSummary`.
#[allow(dead_code)] // read only by black_box: the rows are built, as an app's would be
struct PlainSummary {
    id: String,
    service_code: String,
    state: String,
    excerpt: String,
    has_location: bool,
    address: Option<String>,
    service_request_id: Option<String>,
    created_at: i64,
}

fn uuid_like(i: usize) -> String {
    format!("0190f3a0-0000-7000-8000-{i:012x}")
}

fn per_op(total: Duration, n: usize) -> f64 {
    total.as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let drafts: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("bench.db")).unwrap();
    let plain = Connection::open(dir.path().join("plain.db")).unwrap();
    plain.execute_batch(PLAIN_SCHEMA).unwrap();

    // Fill both: every other request queued, the rest drafts.
    let fill = Instant::now();
    for i in 0..drafts {
        let id = store.create_draft("CSROWR-12", &edit(i)).unwrap();
        if i % 2 == 0 {
            store.submit_draft(&id).unwrap();
        }
    }
    let fill = fill.elapsed();
    for i in 0..drafts {
        plain_insert(&plain, i, if i % 2 == 0 { "queued" } else { "draft" });
    }

    // 1. List the 50 newest queued.
    let rounds = 2_000;
    let mut ours = Duration::MAX;
    let mut theirs = Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..rounds {
            let list = store.drafts(Some(State::Queued), 50).unwrap();
            assert_eq!(list.len(), 50);
        }
        ours = ours.min(t.elapsed());
        let t = Instant::now();
        for _ in 0..rounds {
            let mut stmt = plain
                .prepare_cached(
                    "SELECT id, service_code, state, substr(description, 1, 140), lat IS NOT NULL,
                            address, service_request_id, created_at
                     FROM requests WHERE state = ?1 ORDER BY created_at DESC, id DESC LIMIT 50",
                )
                .unwrap();
            let rows: Vec<PlainSummary> = stmt
                .query_map(["queued"], |r| {
                    Ok(PlainSummary {
                        id: r.get(0)?,
                        service_code: r.get(1)?,
                        state: r.get(2)?,
                        excerpt: r.get(3)?,
                        has_location: r.get(4)?,
                        address: r.get(5)?,
                        service_request_id: r.get(6)?,
                        created_at: r.get(7)?,
                    })
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            std::hint::black_box(&rows);
            assert_eq!(rows.len(), 50);
        }
        theirs = theirs.min(t.elapsed());
    }
    let list_ratio = ours.as_secs_f64() / theirs.as_secs_f64();
    println!("list 50 newest queued of {drafts}:");
    println!(
        "  curbside {:>8.1} µs   plain rusqlite {:>8.1} µs   ratio {list_ratio:.2}× (target ≤ 2×)",
        per_op(ours, rounds),
        per_op(theirs, rounds)
    );

    // 2. Create + validate + queue.
    let n = 3_000;
    let mut ours = Duration::MAX;
    let mut theirs = Duration::MAX;
    for round in 0..3 {
        let t = Instant::now();
        for i in 0..n {
            let id = store.create_draft("CSROWR-12", &edit(i)).unwrap();
            store.submit_draft(&id).unwrap();
        }
        ours = ours.min(t.elapsed());
        let t = Instant::now();
        for i in 0..n {
            plain_insert(&plain, drafts + (round + 1) * n + i, "queued");
        }
        theirs = theirs.min(t.elapsed());
    }
    let ours_rate = n as f64 / ours.as_secs_f64();
    let plain_rate = n as f64 / theirs.as_secs_f64();
    let ratio = ours_rate / plain_rate;
    println!("create + validate + queue:");
    println!("  curbside {ours_rate:>8.0}/s   plain insert {plain_rate:>8.0}/s   ratio {ratio:.2}× (targets ≥ 2,000/s and ≥ 0.4×)");
    println!(
        "  (filling {drafts} drafts took {:.2} s)",
        fill.as_secs_f64()
    );

    let ok = list_ratio <= 2.0 && ours_rate >= 2_000.0 && ratio >= 0.4;
    println!("targets: {}", if ok { "met" } else { "MISSED" });
    if !ok {
        std::process::exit(1);
    }
}
