//! The sync server under load (issue #10), on this machine, server and load together:
//!
//!   cargo run --release -p curbside-e2e --example bench_server [-- DEVICES SECONDS]
//!
//! 1. the peer: `wrk` on `/healthz` (the HTTP stack with nothing behind it), 64 connections;
//! 2. caught-up devices (DEVICES, default 512, each with its own report) pushing 5 changes a
//!    round and pulling from their cursor, 64 connections: rounds/s, p50 and p99, and the ratio
//!    to the peer (targets: ≥ 3,000 rounds/s, p99 ≤ 50 ms);
//! 3. the same while one token abuses the server: empty syncs as fast as it can on 8
//!    connections, one-byte photo PATCHes, registrations from its address, and 200
//!    connections that never finish their headers (target: honest rounds ≥ 0.8× of 2);
//! 4. a new device against a log of 500,000 changes: round trips and time until caught up
//!    (targets: ≤ 3, ≤ 50 ms).
//!
//! The server runs with its default limits except syncs per device (2,000 a minute: the honest
//! devices here sync far more often than phones do). Honest connections come from 64 loopback
//! addresses (127.0.1.x), the abuser's from 127.0.0.2, so each address has its own budgets.

use std::io::{BufRead, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use curbside_e2e::{request_changes, seed_requests, start_server_with};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One keep-alive HTTP/1.1 connection, enough of a client for JSON posts.
struct Conn {
    stream: BufReader<TcpStream>,
    from: std::net::IpAddr,
}

impl Conn {
    /// A connection from `from` (any 127.x.y.z is this machine): each client address has its
    /// own budgets at the server, as phones on different networks do.
    async fn open(addr: SocketAddr, from: std::net::IpAddr) -> Conn {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        let s = socket.connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        Conn {
            stream: BufReader::new(s),
            from,
        }
    }

    /// One request and its answer; status 0 when the connection broke (the server may close
    /// it after refusing a request whose body it did not read): the caller opens another.
    async fn call(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        match self.try_call(method, path, token, body).await {
            Ok(answer) => answer,
            Err(_) => {
                if let Ok(addr) = self.stream.get_ref().peer_addr() {
                    let socket = tokio::net::TcpSocket::new_v4().unwrap();
                    if socket.bind(SocketAddr::new(self.from, 0)).is_ok() {
                        if let Ok(s) = socket.connect(addr).await {
                            let _ = s.set_nodelay(true);
                            self.stream = BufReader::new(s);
                        }
                    }
                }
                (0, Vec::new())
            }
        }
    }

    async fn try_call(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        head.push_str("\r\n");
        let s = self.stream.get_mut();
        s.write_all(head.as_bytes()).await?;
        s.write_all(body).await?;
        let mut line = String::new();
        if self.stream.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = line.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let mut length = 0usize;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok((status, body))
    }
}

fn blocking_post(addr: SocketAddr, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let body = body.to_string();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut r = std::io::BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line[9..12].parse().unwrap();
    let mut rest = String::new();
    r.read_to_string(&mut rest).unwrap();
    let body = rest.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Where the abuser's connections come from.
const ATTACKER: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

struct Device {
    token: String,
    replica: String,
    request_id: String,
    counter: u64,
    cursor: String,
}

/// The address honest connection `i` comes from.
fn honest(i: usize) -> std::net::IpAddr {
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 1, 1 + (i % 64) as u8))
}

/// Registers `n` residents (from 64 addresses), each with one report pushed and its pull
/// caught up.
async fn devices(addr: SocketAddr, n: usize, base_ms: u64) -> Vec<Device> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut conn = Conn::open(addr, honest(i)).await;
        let (status, reg) = conn.call("POST", "/v1/devices", None, b"{}").await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reg));
        let reg: Value = serde_json::from_slice(&reg).unwrap();
        let token = reg["token"].as_str().expect("registered").to_string();
        let replica = format!("{:016x}", 0xbe9c_0000_0000_0000u64 + i as u64);
        let mut changes: Vec<_> = request_changes(1_000_000 + i, &replica, base_ms)
            .into_iter()
            .take(5)
            .collect();
        // One report every 1.5 km on a grid: each device's neighbourhood is its own, as most
        // residents' are (the heavy case, a street of reports, is the backfill's).
        let (row, col) = ((i / 16) as f64 - 8.0, (i % 16) as f64 - 8.0);
        changes[4].value = curbside_core::FieldValue::Location(Some(
            curbside_core::Location::new(
                43.70 + row * 0.0135,
                -79.40 + col * 0.0187,
                Some(6.0),
                curbside_core::LocationSource::Gps,
            )
            .unwrap(),
        ));
        let request_id = changes[0].request_id.to_string();
        let mut body = json!({ "changes": changes, "replica": replica });
        let cursor = loop {
            let (status, v) = conn
                .call(
                    "POST",
                    "/v1/sync",
                    Some(&token),
                    body.to_string().as_bytes(),
                )
                .await;
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&v));
            let v: Value = serde_json::from_slice(&v).unwrap();
            let cursor = v["cursor"].as_str().unwrap().to_string();
            if v["more"] != true {
                break cursor;
            }
            body = json!({ "cursor": cursor, "replica": replica });
        };
        out.push(Device {
            token,
            replica,
            request_id,
            counter: 1_000,
            cursor,
        });
    }
    out
}

/// One round's body: five description edits, from the device's cursor.
fn round(d: &mut Device, now_ms: u64) -> Vec<u8> {
    let changes: Vec<Value> = (0..5)
        .map(|k| {
            d.counter += 1;
            json!({
                "id": format!("{}:{}", d.replica, d.counter),
                "request_id": d.request_id,
                "field": "description",
                "value": format!("Pothole, edit {}", d.counter),
                "hlc": curbside_core::sync::Hlc::new(now_ms, k).0,
                "replica": d.replica,
            })
        })
        .collect();
    serde_json::to_vec(&json!({ "changes": changes, "cursor": d.cursor, "replica": d.replica }))
        .unwrap()
}

struct Load {
    rounds: u64,
    pulled: u64,
    latencies: Vec<Duration>,
    refused: u64,
}

/// `connections` tasks, each with its share of the devices, pushing rounds for `seconds`.
async fn load(
    addr: SocketAddr,
    devices: Vec<Device>,
    connections: usize,
    seconds: u64,
) -> (Load, Vec<Device>) {
    let mut shares: Vec<Vec<Device>> = (0..connections).map(|_| Vec::new()).collect();
    for (i, d) in devices.into_iter().enumerate() {
        shares[i % connections].push(d);
    }
    let until = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = shares
        .into_iter()
        .enumerate()
        .map(|(k, mut mine)| {
            tokio::spawn(async move {
                let mut conn = Conn::open(addr, honest(k)).await;
                let (mut latencies, mut refused, mut pulled) = (Vec::new(), 0, 0);
                let mut i = 0;
                while Instant::now() < until && !mine.is_empty() {
                    let len = mine.len();
                    let d = &mut mine[i % len];
                    i += 1;
                    let now = curbside_core::Clock::now_ms(&curbside_core::SystemClock) as u64;
                    let body = round(d, now);
                    let t = Instant::now();
                    let (status, answer) =
                        conn.call("POST", "/v1/sync", Some(&d.token), &body).await;
                    latencies.push(t.elapsed());
                    if status == 200 {
                        let v: Value = serde_json::from_slice(&answer).unwrap();
                        d.cursor = v["cursor"].as_str().unwrap().to_string();
                        pulled += v["groups"].as_array().map_or(0, |runs| {
                            runs.iter()
                                .map(|r| r["changes"].as_array().map_or(0, Vec::len))
                                .sum::<usize>()
                        }) as u64;
                    } else {
                        refused += 1;
                    }
                }
                (latencies, refused, pulled, mine)
            })
        })
        .collect();
    let mut total = Load {
        rounds: 0,
        pulled: 0,
        latencies: Vec::new(),
        refused: 0,
    };
    let mut back = Vec::new();
    for t in tasks {
        let (l, r, p, mine) = t.await.unwrap();
        total.pulled += p;
        total.rounds += l.len() as u64 - r;
        total.latencies.extend(l);
        total.refused += r;
        back.extend(mine);
    }
    total.latencies.sort();
    (total, back)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e3
}

/// The abuser: one token's empty syncs on 8 connections, one-byte PATCHes, registrations and
/// slow headers, until `stop`. Returns how many of its requests the server answered.
async fn abuse(addr: SocketAddr, token: String, stop: Arc<AtomicBool>) -> u64 {
    let answered = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    // BENCH_ABUSE=sync,patch,register,slow picks some (all by default), to see each one's cost.
    let kinds = std::env::var("BENCH_ABUSE").unwrap_or_else(|_| "sync,patch,register,slow".into());
    let wanted = |k: usize| match k {
        0..8 => kinds.contains("sync"),
        8 => kinds.contains("patch"),
        _ => kinds.contains("register"),
    };
    for k in (0..10).filter(|k| wanted(*k)) {
        let (token, stop, answered) = (token.clone(), stop.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr, ATTACKER).await;
            let sha = "ab".repeat(32);
            while !stop.load(Ordering::Relaxed) {
                let (path, method, body): (String, &str, &[u8]) = match k {
                    0..8 => ("/v1/sync".into(), "POST", b"{}"),
                    8 => (format!("/v1/media/{sha}"), "PATCH", b"x"),
                    _ => ("/v1/devices".into(), "POST", b"{}"),
                };
                let (status, _) = conn.call(method, &path, Some(&token), body).await;
                if status != 0 {
                    answered.fetch_add(1, Ordering::Relaxed);
                } else {
                    // The server closed the connection (it does after refusing a request whose
                    // body it did not read, and at accept past the address's connection rate).
                    // Spinning on connect() from this same 2-core machine would measure the
                    // attacker's CPU, not the server: a connection flood is the kernel's and the
                    // firewall's to stop.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }));
    }
    // Connections that never finish their headers, opened again as the server closes them.
    let slow_too = kinds.contains("slow");
    let slow = {
        let stop = stop.clone();
        tokio::spawn(async move {
            while slow_too && !stop.load(Ordering::Relaxed) {
                let mut held = Vec::new();
                for _ in 0..200 {
                    let socket = tokio::net::TcpSocket::new_v4().unwrap();
                    let _ = socket.bind(SocketAddr::new(ATTACKER, 0));
                    if let Ok(mut s) = socket.connect(addr).await {
                        let _ = s.write_all(b"POST /v1/sync HTTP/1.1\r\nHost: x\r\n").await;
                        held.push(s);
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    for t in tasks {
        let _ = t.await;
    }
    let _ = slow.await;
    answered.load(Ordering::Relaxed)
}

fn wrk_healthz(addr: SocketAddr, seconds: u64) -> Option<f64> {
    let out = std::process::Command::new("wrk")
        .args([
            "-t2",
            "-c64",
            &format!("-d{seconds}s"),
            &format!("http://{addr}/healthz"),
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("Requests/sec:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Where the benchmark's server keeps its records: with BENCH_DATABASE naming a PostgreSQL
/// server (`postgres://user@host:port/postgres`), a new database there; else SQLite.
fn database() -> String {
    match std::env::var("BENCH_DATABASE") {
        Ok(server) if !server.is_empty() => {
            let name = format!("curbside_bench_{}", std::process::id());
            curbside_server::storage::postgres::create_database(&server, &name).unwrap()
        }
        _ => "sqlite".into(),
    }
}

/// `reports` new reports (5 changes each) from `reports / 5` devices, 5 reports a push, as
/// the pushes' bodies; ids from `first` on, places 1.5 km apart (ingest, not the backfill).
fn new_reports(
    reports: usize,
    first: usize,
    base_ms: u64,
    offset: f64,
) -> Vec<Vec<curbside_core::sync::WireChange>> {
    let per_push = 5;
    (0..reports / per_push)
        .map(|d| {
            let replica = format!("{:016x}", 0x1e9e_0000_0000_0000u64 + (first + d) as u64);
            (0..per_push)
                .flat_map(|k| {
                    let i = d * per_push + k;
                    let mut changes: Vec<_> = request_changes(first + i, &replica, base_ms)
                        .into_iter()
                        .take(5)
                        .collect();
                    let (row, col) = ((i / 45) as f64 - 22.0, (i % 45) as f64 - 22.0);
                    changes[4].value = curbside_core::FieldValue::Location(Some(
                        curbside_core::Location::new(
                            43.70 + row * 0.0135 + offset,
                            -79.40 + col * 0.0187 + offset * 1.4,
                            Some(6.0),
                            curbside_core::LocationSource::Gps,
                        )
                        .unwrap(),
                    ));
                    changes.into_iter().map(|c| c.to_wire()).collect::<Vec<_>>()
                })
                .collect()
        })
        .collect()
}

/// Raw inserts of the pushes' rows into a table of the server's own database, a transaction
/// per push, from `pushers` connections at once: the peer of ingest.
fn raw_inserts(
    server: &curbside_e2e::Server,
    database: &str,
    table: &str,
    pushes: &[Vec<curbside_core::sync::WireChange>],
    pushers: usize,
) -> Duration {
    let shares: Vec<Vec<&Vec<curbside_core::sync::WireChange>>> = (0..pushers)
        .map(|p| pushes.iter().skip(p).step_by(pushers).collect())
        .collect();
    if database == "sqlite" {
        server
            .db()
            .execute_batch(&format!(
                "CREATE TABLE {table} (request_id TEXT, id TEXT, field TEXT, value TEXT,
                                       hlc INTEGER, replica TEXT, PRIMARY KEY (request_id, id))"
            ))
            .unwrap();
        let t = Instant::now();
        std::thread::scope(|s| {
            for share in &shares {
                s.spawn(move || {
                    let mut raw = server.db();
                    raw.busy_timeout(Duration::from_secs(30)).unwrap();
                    raw.execute_batch("PRAGMA synchronous = FULL").unwrap();
                    let sql = format!("INSERT INTO {table} VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
                    for batch in share {
                        let tx = raw
                            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                            .unwrap();
                        {
                            let mut insert = tx.prepare_cached(&sql).unwrap();
                            for c in batch.iter() {
                                insert
                                    .execute(rusqlite::params![
                                        c.request_id,
                                        c.id,
                                        c.field,
                                        c.value.to_string(),
                                        c.hlc as i64,
                                        c.replica
                                    ])
                                    .unwrap();
                            }
                        }
                        tx.commit().unwrap();
                    }
                });
            }
        });
        return t.elapsed();
    }
    let mut admin = postgres::Client::connect(database, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!(
            "CREATE TABLE {table} (request_id TEXT, id TEXT, field TEXT, value TEXT, hlc BIGINT,
                                   replica TEXT, PRIMARY KEY (request_id, id))"
        ))
        .unwrap();
    let t = Instant::now();
    std::thread::scope(|s| {
        for share in &shares {
            s.spawn(move || {
                let mut raw = postgres::Client::connect(database, postgres::NoTls).unwrap();
                // One statement a push, rows as arrays: the fewest round trips there are.
                let insert = raw
                    .prepare(&format!(
                        "INSERT INTO {table} SELECT * FROM unnest($1::text[], $2::text[],
                         $3::text[], $4::text[], $5::int8[], $6::text[])"
                    ))
                    .unwrap();
                for batch in share {
                    let col = |f: fn(&curbside_core::sync::WireChange) -> String| -> Vec<String> {
                        batch.iter().map(f).collect()
                    };
                    let hlcs: Vec<i64> = batch.iter().map(|c| c.hlc as i64).collect();
                    let mut tx = raw.transaction().unwrap();
                    tx.execute(
                        &insert,
                        &[
                            &col(|c| c.request_id.clone()),
                            &col(|c| c.id.clone()),
                            &col(|c| c.field.clone()),
                            &col(|c| c.value.to_string()),
                            &hlcs,
                            &col(|c| c.replica.clone()),
                        ],
                    )
                    .unwrap();
                    tx.commit().unwrap();
                }
            });
        }
    });
    t.elapsed()
}

/// Server ingest: 2,000 new reports (5 changes each), pushed 5 reports a call by their devices
/// through the sync handler's own logic (checks, admission and numbering, merge, scope, feed,
/// and the pull that follows with its backfill), by one device at a time and by 16 at once,
/// against raw inserts of the same change rows into a table of the same database, a
/// transaction per push, from as many connections at once.
fn ingest(server: &curbside_e2e::Server, database: &str, base_ms: u64) {
    use curbside_core::sync::protocol::SyncRequest;
    let reports = 2_000;
    let state = &server.state;
    for (run, pushers) in [1usize, 16].into_iter().enumerate() {
        // Each run's reports 700 m from the last's: neighbours neither of the other.
        let pushes = new_reports(
            reports,
            2_000_000 + run * reports,
            base_ms,
            run as f64 * 0.0045,
        );
        let devices: Vec<_> = pushes
            .iter()
            .map(|_| {
                let r = curbside_server::sync::register(state, Default::default()).unwrap();
                state
                    .storage
                    .device(&curbside_server::auth::token_hash(&r.token))
                    .unwrap()
                    .unwrap()
            })
            .collect();
        let t = Instant::now();
        std::thread::scope(|s| {
            for p in 0..pushers {
                let (devices, pushes) = (&devices, &pushes);
                s.spawn(move || {
                    for (device, changes) in devices.iter().zip(pushes).skip(p).step_by(pushers) {
                        let body = SyncRequest {
                            cursor: None,
                            changes: changes.clone(),
                            replica: None,
                            client_time_ms: None,
                        };
                        curbside_server::sync::sync(state, device, body).unwrap();
                    }
                });
            }
        });
        let ours = t.elapsed();
        let peer = raw_inserts(
            server,
            database,
            &format!("raw_ingest_{pushers}"),
            &pushes,
            pushers,
        );
        println!(
            "server ingest of {reports} new reports ({} changes, 5 reports a push), {pushers} pushing at once: {:.0} ms ({:.0} changes/s); raw inserts of the same rows into the same database, a transaction per push, {pushers} at once: {:.0} ms; ratio {:.2}x (target >= 0.5x)",
            reports * 5,
            ours.as_secs_f64() * 1e3,
            (reports * 5) as f64 / ours.as_secs_f64(),
            peer.as_secs_f64() * 1e3,
            peer.as_secs_f64() / ours.as_secs_f64()
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(512);
    let seconds: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let database = database();
    println!(
        "backend: {}",
        if database == "sqlite" {
            "SQLite"
        } else {
            "PostgreSQL"
        }
    );
    let server = start_server_with(dir.path(), |c| {
        c.limits = curbside_server::config::Limits {
            syncs_per_minute: 2_000,
            ..curbside_server::Config::new(dir.path()).limits
        };
        c.database = database.clone();
    });
    let base = curbside_core::Clock::now_ms(&curbside_core::SystemClock) as u64 - 3_600_000;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // BENCH_ONLY=load,ingest,big runs some parts (all by default).
    let only = std::env::var("BENCH_ONLY").unwrap_or_else(|_| "load,ingest,big".into());
    // Ingest first, on a fresh server: after the load runs its new reports would sit beside
    // the load's devices, and the pull after each push would bring their long histories.
    if only.contains("ingest") {
        ingest(&server, &database, base);
    }
    if only.contains("load") {
        load_runs(&runtime, &server, dir.path(), n, seconds, base);
    }
    // The large log is seeded straight into the SQLite file.
    if only.contains("big") && database == "sqlite" {
        big_log(&server, base);
    }
}

/// The load runs: the peer, caught-up devices clean, abused, and clean again.
fn load_runs(
    runtime: &tokio::runtime::Runtime,
    server: &curbside_e2e::Server,
    dir: &std::path::Path,
    n: usize,
    seconds: u64,
    base: u64,
) {
    let addr = server.addr;
    let devices = runtime.block_on(devices(addr, n, base));

    // The peer runs on a server of its own without address limits: wrk comes from one address.
    let peer = {
        let bare = curbside_e2e::start_server_with(&dir.join("peer"), |c| {
            c.limits.address_per_second = 10_000_000;
        });
        wrk_healthz(bare.addr, seconds)
    };
    let (clean, devices) = runtime.block_on(load(addr, devices, 64, seconds));
    let clean_rate = clean.rounds as f64 / seconds as f64;
    println!(
        "caught-up devices pushing 5 changes, 64 connections, {n} devices: {clean_rate:.0} rounds/s, p50 {:.1} ms, p99 {:.1} ms (targets >= 3,000/s, p99 <= 50 ms); {:.1} changes pulled a round (neighbours' edits); refused {}",
        pct(&clean.latencies, 0.5),
        pct(&clean.latencies, 0.99),
        clean.pulled as f64 / clean.rounds.max(1) as f64,
        clean.refused
    );
    if let Some(peer) = peer {
        println!(
            "  peer: wrk on /healthz (the HTTP stack, nothing behind it), 64 connections: {peer:.0} requests/s; sync rounds at {:.2}x of it",
            clean_rate / peer
        );
    }

    let (_, attacker) = runtime.block_on(async {
        Conn::open(addr, ATTACKER)
            .await
            .call("POST", "/v1/devices", None, b"{}")
            .await
    });
    let attacker: Value = serde_json::from_slice(&attacker).unwrap();
    let token = attacker["token"].as_str().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let abuser = runtime.spawn(abuse(addr, token, stop.clone()));
    let (abused, devices) = runtime.block_on(load(addr, devices, 64, seconds));
    stop.store(true, Ordering::Relaxed);
    let answered = runtime.block_on(abuser).unwrap();
    let abused_rate = abused.rounds as f64 / seconds as f64;
    // Clean again: the log grew meanwhile, so the abused run is held against both clean ones.
    let (after, _) = runtime.block_on(load(addr, devices, 64, seconds));
    let after_rate = after.rounds as f64 / seconds as f64;
    println!(
        "the same while one token abuses (empty syncs x8, 1-byte PATCHes, registrations, 200 slow headers): {abused_rate:.0} rounds/s, p99 {:.1} ms; clean again after: {after_rate:.0} rounds/s; abused at {:.2}x of the clean runs' mean (target >= 0.8x); the abuser got {answered} answers",
        pct(&abused.latencies, 0.99),
        abused_rate / ((clean_rate + after_rate) / 2.0)
    );
}

/// A new device against a large log.
fn big_log(server: &curbside_e2e::Server, base: u64) {
    let addr = server.addr;
    let big = 500_000 / curbside_e2e::CHANGES_PER_REQUEST;
    let t = Instant::now();
    seed_requests(server, big, "5eed5eed5eed5eed", base);
    let seeded = t.elapsed();
    let (_, fresh) = blocking_post(addr, "/v1/devices", None, &json!({}));
    let token = fresh["token"].as_str().unwrap();
    let t = Instant::now();
    let (mut trips, mut cursor) = (0, Value::Null);
    loop {
        let (status, v) =
            blocking_post(addr, "/v1/sync", Some(token), &json!({ "cursor": cursor }));
        assert_eq!(status, 200, "{v}");
        trips += 1;
        cursor = v["cursor"].clone();
        if v["more"] != true {
            break;
        }
    }
    println!(
        "a new device against {} changes (seeded in {:.1} s): {trips} round trips, {:.1} ms until caught up (targets <= 3, <= 50 ms)",
        big * curbside_e2e::CHANGES_PER_REQUEST,
        seeded.as_secs_f64(),
        t.elapsed().as_secs_f64() * 1e3
    );
}
