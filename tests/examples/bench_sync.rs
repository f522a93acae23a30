//! Sync benchmarks (issue #5), each against a real peer measured in the same run:
//!
//!   cargo run --release -p curbside-e2e --example bench_sync [-- REQUESTS]
//!
//! 1. a client applying 100,000 pulled changes (in pages, as sync does) vs raw rusqlite
//!    inserting the same rows into the same table, one transaction per page (target ≥ 0.5×);
//! 2. CRDT metadata on disk per request vs the request's own data (target ≤ 1×);
//! 3. initial sync of REQUESTS (default 50,000) requests from a real server over loopback to
//!    a fresh inspector's store, in requests/s (target ≥ 50,000/s, issue #10), and the client's peak
//!    memory at a fifth of that and at all of it (flat: pages are streamed).

use std::time::Instant;

use curbside_core::sync::protocol::{RegisterBody, Role, PAGE};
use curbside_core::sync::Change;
use curbside_core::Store;
use curbside_e2e::{
    options, request_changes, seed_requests, start_server, ADMIN, CHANGES_PER_REQUEST,
};

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("client") {
        return client(&args[2], &args[3]);
    }
    let requests: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let dir = tempfile::tempdir().unwrap();
    let base = curbside_core::Clock::now_ms(&curbside_core::SystemClock) as u64 - 86_400_000;

    // 1. Applying 100,000 pulled changes.
    let changes: Vec<Change> = (0..100_000 / CHANGES_PER_REQUEST)
        .flat_map(|i| request_changes(i, "c1a55e5f00d1e5e5", base))
        .collect();
    let store = Store::open(dir.path().join("apply.db")).unwrap();
    let t = Instant::now();
    for page in changes.chunks(PAGE) {
        store.apply_changes(page).unwrap();
    }
    let ours = t.elapsed();
    let mut raw = rusqlite::Connection::open(dir.path().join("raw.db")).unwrap();
    raw.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
        .unwrap();
    raw.execute_batch(curbside_core::sync::schema::LOG_V4)
        .unwrap();
    // The peer knows every number in memory and inserts rows, names and all, directly.
    let t = Instant::now();
    let mut seq = 0i64;
    let mut numbers: [std::collections::HashMap<String, i64>; 3] = Default::default();
    for page in changes.chunks(PAGE) {
        let tx = raw.transaction().unwrap();
        {
            let mut number = |k: usize, table: &str, column: &str, name: &str| -> i64 {
                if let Some(n) = numbers[k].get(name) {
                    return *n;
                }
                tx.prepare_cached(&format!("INSERT INTO {table} ({column}) VALUES (?1)"))
                    .unwrap()
                    .execute([name])
                    .unwrap();
                let n = tx.last_insert_rowid();
                numbers[k].insert(name.to_string(), n);
                n
            };
            let keys: Vec<(i64, i64, i64)> = page
                .iter()
                .map(|c| {
                    (
                        number(0, "sync_requests", "id", &c.request_id.to_string()),
                        number(1, "sync_replicas", "id", c.replica().as_str()),
                        number(2, "sync_fields", "name", &c.field().name()),
                    )
                })
                .collect();
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO sync_changes (request, replica, counter, field, value, hlc, replaced, seq)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .unwrap();
            for (c, (request, replica, field)) in page.iter().zip(keys) {
                seq += 1;
                stmt.execute(rusqlite::params![
                    request,
                    replica,
                    c.id.counter as i64,
                    field,
                    c.value.to_json_text(),
                    c.hlc.0 as i64,
                    c.replaced.map(|h| h.0 as i64),
                    seq
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let plain = t.elapsed();
    println!(
        "apply 100,000 pulled changes: {:.0} ms ({:.0}/s); raw rusqlite inserts {:.0} ms; ratio {:.2}x (target >= 0.5x)",
        ours.as_secs_f64() * 1e3,
        changes.len() as f64 / ours.as_secs_f64(),
        plain.as_secs_f64() * 1e3,
        plain.as_secs_f64() / ours.as_secs_f64()
    );

    // 2. Metadata per request, on disk: every page of the change log's tables and indexes
    // (SQLite's dbstat), less the request's own data (its values, and its id once).
    let conn = rusqlite::Connection::open(dir.path().join("apply.db")).unwrap();
    let disk: i64 = conn
        .query_row(
            "SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'sync_%' OR name LIKE 'sqlite_autoindex_sync_%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let (rows, per_request, values): (i64, i64, i64) = conn
        .query_row(
            "SELECT count(*), (SELECT count(*) FROM sync_requests), sum(length(value)) FROM sync_changes",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let own = values + per_request * 36;
    let metadata = disk - own;
    println!(
        "CRDT metadata on disk: {:.0} bytes per request ({} changes each) vs {:.0} bytes of its own data: ratio {:.2}x (target <= 1x; cr-sqlite up to 3.5x)",
        metadata as f64 / per_request as f64,
        rows / per_request,
        own as f64 / per_request as f64,
        metadata as f64 / own as f64
    );

    // 3. Initial sync from a real server over loopback, in a child process for its memory.
    for n in [requests / 5, requests] {
        let server = start_server(&dir.path().join(format!("server-{n}")), 180);
        // Written directly, as the sync endpoint would have: numbering 50,000 pushes through
        // HTTP would time the seeding, not the pull.
        seed_requests(&server, n, "5eed5eed5eed5eed", base);
        let db = dir.path().join(format!("inspector-{n}.db"));
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["client", &server.url(), db.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut parts = text.split_whitespace();
        let secs: f64 = parts.next().unwrap().parse().unwrap();
        let pulled: u64 = parts.next().unwrap().parse().unwrap();
        let rss: u64 = parts.next().unwrap().parse().unwrap();
        assert_eq!(pulled as usize, n * CHANGES_PER_REQUEST);
        println!(
            "initial sync of {n} requests ({pulled} changes) over loopback: {:.2} s, {:.0} requests/s (target >= 50,000/s, issue #10); client peak RSS {} MB",
            secs,
            n as f64 / secs,
            rss / 1024
        );
    }
}

/// The client side of the initial sync: register as an inspector of ward 10, sync, and print
/// seconds, changes pulled and peak RSS (kB).
fn client(server: &str, db: &str) {
    let store = Store::open(db).unwrap();
    store
        .register(
            server,
            &RegisterBody {
                role: Some(Role::Inspector),
                wards: vec!["10".into()],
                admin_key: Some(ADMIN.into()),
            },
        )
        .unwrap();
    let t = Instant::now();
    let report = store.sync(&options(), &mut |_| {}).unwrap();
    println!(
        "{} {} {}",
        t.elapsed().as_secs_f64(),
        report.pulled,
        peak_rss_kb()
    );
}
