//! What every server test shares: its configuration on the backend under test. The suite runs
//! on SQLite (a file in the test's directory) and, when CURBSIDE_TEST_DATABASE names a
//! PostgreSQL server (`postgres://user@host:port/postgres`), on PostgreSQL, each test in a
//! database of its own. `scripts/test.sh` runs it both ways.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use curbside_server::Config;

/// The defaults for a server in `dir`, on the backend under test.
pub fn config(dir: impl Into<PathBuf>) -> Config {
    // CURBSIDE_TEST_LOG=debug shows the server's log of a failing test.
    if let Ok(level) = std::env::var("CURBSIDE_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(level))
            .with_test_writer()
            .try_init();
    }
    let mut config = Config::new(dir);
    config.database = database();
    config
}

/// The backend under test: `sqlite`, or a new PostgreSQL database.
pub fn database() -> String {
    match std::env::var("CURBSIDE_TEST_DATABASE") {
        Ok(server) if !server.is_empty() => fresh_database(&server),
        _ => "sqlite".into(),
    }
}

/// Whether the suite runs on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("CURBSIDE_TEST_DATABASE").is_ok_and(|s| !s.is_empty())
}

/// Creates a database of its own on the PostgreSQL server at `server` and returns its URL.
fn fresh_database(server: &str) -> String {
    let name = format!(
        "curbside_test_{}",
        uuid::Uuid::new_v4().simple().to_string().get(..16).unwrap()
    );
    curbside_server::storage::postgres::create_database(server, &name)
        .unwrap_or_else(|e| panic!("CURBSIDE_TEST_DATABASE {server}: {e}"))
}

/// Starts a server process from `command` (its stderr piped and read on a thread of its own)
/// and waits until it listens: the process, its address, and its log lines as they come.
pub fn listening(command: &mut Command) -> (Child, String, Receiver<String>) {
    let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Read to the end even when nobody listens: a server whose log pipe closes dies.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server starts listening");
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    (child, addr, rx)
}
