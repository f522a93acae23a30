//! End-to-end tests of Curbside: real processes, real files, real faults. The helpers here are
//! the programs the tests drive and kill, and a real sync server on a loopback port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use curbside_core::{RetryPolicy, SyncOptions};
use curbside_server::{AppState, Config};
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
        rusqlite::Connection::open(self.data.join("curbside-server.sqlite")).unwrap()
    }
}

pub fn start_server(dir: &Path, retention_days: u32) -> Server {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let data = dir.join("server");
    let state = Arc::new(
        AppState::load(&Config {
            addr: "127.0.0.1:0".parse().unwrap(),
            data_dir: data.clone(),
            catalog: None,
            admin_key: Some(ADMIN.into()),
            jurisdiction: "toronto.ca".into(),
            retention_days,
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
