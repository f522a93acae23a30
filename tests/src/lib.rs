//! End-to-end tests of Curbside: real processes, real files, real faults. The helpers here are
//! the programs the tests drive and kill, a real sync server on a loopback port, and a
//! transport that reaches the server's handler logic in process, for the simulation.

pub mod in_process;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use curbside_core::sync::{Change, WireChange};
use curbside_core::{RetryPolicy, SyncOptions};
use curbside_server::{AppState, Config};
use serde_json::json;
use tokio::net::TcpListener;

/// The admin key the test servers grant inspectors with.
pub const ADMIN: &str = "e2e-admin";

/// A real server on 127.0.0.1:0, on its own runtime, with its data in a directory.
pub struct Server {
    pub addr: SocketAddr,
    pub data: PathBuf,
    pub state: Arc<AppState>,
    pub runtime: tokio::runtime::Runtime,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's SQLite file, for checking what it holds.
    pub fn db(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.data.join("curbside-server.sqlite")).unwrap();
        // The server's writer and checkpointer share the file: wait for them, do not fail.
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn
    }
}

pub fn start_server(dir: &Path, retention_days: u32) -> Server {
    start_server_with(dir, |c| c.retention_days = retention_days)
}

/// [`start_server`], with its configuration adjusted first.
pub fn start_server_with(dir: &Path, adjust: impl FnOnce(&mut Config)) -> Server {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let data = dir.join("server");
    let state = Arc::new(
        AppState::load(&{
            let mut config = Config {
                admin_key: Some(ADMIN.into()),
                // These tests sync far faster than any phone: limits have tests of their own.
                limits: curbside_server::config::Limits {
                    syncs_per_minute: 1_000_000,
                    media_per_minute: 1_000_000,
                    registrations_per_hour: 1_000_000,
                    connections_per_minute: 1_000_000,
                    ..Config::new(&data).limits
                },
                ..Config::new(data.clone())
            };
            adjust(&mut config);
            config
        })
        .unwrap(),
    );
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let s = state.clone();
    runtime.spawn(async move {
        curbside_server::serve(listener, s, std::future::pending())
            .await
            .unwrap()
    });
    Server {
        addr,
        data,
        state,
        runtime,
    }
}

/// Quick retries: the faults in these tests are injected, not waited out.
pub fn options() -> SyncOptions {
    SyncOptions {
        retry: RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            timeout: Duration::from_secs(20),
        },
        ..SyncOptions::default()
    }
}

pub const CHANGES_PER_REQUEST: usize = 8;

/// A realistic request as the changes a phone and the city write: creation, description,
/// two answers, location, contact, the city's number, a status and its note.
pub fn request_changes(i: usize, replica: &str, base_ms: u64) -> Vec<Change> {
    let id = uuid::Uuid::from_u128(0x0190_f3a0_0000_7000_8000_0000_0000_0000 | i as u128)
        .hyphenated()
        .to_string();
    let (lat, lon) = (
        43.64 + (i % 997) as f64 * 1.1e-4,
        -79.40 + (i % 991) as f64 * 1.3e-4,
    );
    let values = [
        (
            "create",
            json!({"service_code": "CSROWR-12", "created_at": base_ms, "created_by": replica, "channel": "app"}),
        ),
        (
            "description",
            json!(format!(
                "Pothole {i} in the curb lane, about a tire wide and getting deeper"
            )),
        ),
        ("attr:SIZE", json!(["medium"])),
        ("attr:HAZARDS", json!(["cyclists"])),
        (
            "location",
            json!({"lat": lat, "lon": lon, "accuracy_m": 6.0, "source": "gps"}),
        ),
        (
            "contact",
            json!({"first_name": "Sam", "last_name": null, "email": "sam@example.org", "phone": null}),
        ),
        ("service_request_id", json!(format!("{}", 100_001 + i))),
        ("status", json!("in_progress")),
    ];
    values
        .into_iter()
        .enumerate()
        .map(|(k, (field, value))| {
            Change::try_from(WireChange {
                id: format!("{replica}:{}", i * CHANGES_PER_REQUEST + k + 1),
                request_id: id.clone(),
                field: field.into(),
                value,
                hlc: curbside_core::sync::Hlc::new(base_ms + i as u64, k as u16).0,
                replica: replica.into(),
                replaced: None,
            })
            .expect("a well-formed change")
        })
        .collect()
}

/// Writes `n` requests of replica `replica` (ward 10, in progress) into the server's store as
/// its sync endpoint would have, numbered after the highest it holds: pushing them over HTTP would time or
/// test the seeding, not what follows. Returns their ids.
pub fn seed_requests(server: &Server, n: usize, replica: &str, base_ms: u64) -> Vec<String> {
    let mut db = server.db();
    let tx = db.transaction().unwrap();
    let first: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(service_request_id), 100000) + 1 FROM requests",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let cs = request_changes(i, replica, base_ms);
        curbside_core::sync::log::apply(&tx, &cs, server.state.clock.now_ms()).unwrap();
        tx.execute(
            "INSERT INTO requests (request_id, service_request_id, created_by, ward, created_at, lat, lon, status)
             VALUES (?1, ?2, 'seed', '10', ?3, ?4, ?5, 'in_progress')",
            rusqlite::params![
                cs[0].request_id,
                first + i as i64,
                base_ms as i64,
                cs[4].value.to_json()["lat"].as_f64(),
                cs[4].value.to_json()["lon"].as_f64()
            ],
        )
        .unwrap();
        ids.push(cs[0].request_id.to_string());
    }
    curbside_server::storage::sqlite::fill_feed(&tx).unwrap();
    tx.commit().unwrap();
    ids
}
