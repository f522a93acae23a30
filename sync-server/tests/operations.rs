//! The server as an operator runs it and an attacker meets it: rate limits, slow clients,
//! shutdown, devices revoked and tokens rotated, metrics and readiness, the admin key, and logs
//! that carry nothing personal.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use curbside_core::sync::Change;
use curbside_core::{Contact, DraftEdit, Location, LocationSource, Store};
use curbside_server::{app, AppState};
use serde_json::{json, Value};
use tower::ServiceExt;

async fn post(
    state: &Arc<AppState>,
    uri: &str,
    token: Option<&str>,
    body: &str,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut req = Request::post(uri).header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let response = app(state.clone())
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 16 << 20).await.unwrap();
    (
        parts.status,
        parts.headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn get_text(state: &Arc<AppState>, uri: &str) -> (StatusCode, String) {
    let response = app(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// A resident's report with contact details, as its phone would push it.
fn report(dir: &std::path::Path, email: &str, phone: &str, text: &str) -> Vec<Change> {
    std::fs::create_dir_all(dir).unwrap();
    let store = Store::open(dir.join("phone.db")).unwrap();
    let id = store
        .create_draft(
            "CSROWR-12",
            &DraftEdit {
                description: Some(text.into()),
                attributes: vec![("SIZE".into(), vec!["large".into()])],
                location: Some(Some(
                    Location::new(43.6534, -79.3841, Some(5.0), LocationSource::Gps).unwrap(),
                )),
                contact: Some(Contact {
                    first_name: Some("Amaranta".into()),
                    last_name: Some("Quispe".into()),
                    email: Some(email.into()),
                    phone: Some(phone.into()),
                }),
                ..DraftEdit::default()
            },
        )
        .unwrap();
    store.submit_draft(&id).unwrap();
    let conn = rusqlite::Connection::open(dir.join("phone.db")).unwrap();
    curbside_core::sync::log::all_changes(&conn).unwrap()
}

#[tokio::test]
async fn each_device_has_its_own_budget_and_is_told_when_to_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.limits.syncs_per_minute = 10; // a burst of 2, then one each 6 s
    let state = Arc::new(AppState::load(&config).unwrap());
    let (_, _, a) = post(&state, "/v1/devices", None, "{}").await;
    let (_, _, b) = post(&state, "/v1/devices", None, "{}").await;
    let (a, b) = (a["token"].as_str().unwrap(), b["token"].as_str().unwrap());
    for _ in 0..2 {
        assert_eq!(
            post(&state, "/v1/sync", Some(a), "{}").await.0,
            StatusCode::OK
        );
    }
    let (status, headers, v) = post(&state, "/v1/sync", Some(a), "{}").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=7).contains(&retry), "{retry}");
    assert!(v[0]["description"].as_str().unwrap().contains("too many"));
    // Refused before the body is read: a huge body from the same device costs nothing.
    let huge = format!("{{\"changes\": [{}]}}", "1,".repeat(4 << 20));
    assert_eq!(
        post(&state, "/v1/sync", Some(a), &huge).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The other device is untouched.
    assert_eq!(
        post(&state, "/v1/sync", Some(b), "{}").await.0,
        StatusCode::OK
    );
    let (_, metrics) = get_text(&state, "/metrics").await;
    assert!(
        metrics.contains("curbside_rate_limited_requests_total 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn tokens_rotate_and_metrics_and_readiness_say_nothing_personal() {
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(AppState::load(&common::config(dir.path())).unwrap());
    let (_, _, first) = post(&state, "/v1/devices", None, "{}").await;
    let old = first["token"].as_str().unwrap().to_string();
    let (status, _, rotated) = post(&state, "/v1/devices/token", Some(&old), "").await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["device_id"], first["device_id"]);
    let new = rotated["token"].as_str().unwrap();
    assert_ne!(new, old);
    assert_eq!(
        post(&state, "/v1/sync", Some(&old), "{}").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(&state, "/v1/sync", Some(new), "{}").await.0,
        StatusCode::OK
    );

    assert_eq!(get_text(&state, "/readyz").await.0, StatusCode::OK);
    let sha = "ab".repeat(32);
    get_text(&state, &format!("/v1/media/{sha}")).await;
    let (status, metrics) = get_text(&state, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for expected in [
        "curbside_http_requests_total{route=\"/v1/sync\",status=\"200\"} 1",
        "curbside_http_requests_total{route=\"/v1/sync\",status=\"401\"} 1",
        "curbside_http_requests_total{route=\"/v1/media/{sha256}\",status=\"401\"} 1",
        "curbside_http_request_duration_seconds_bucket{le=",
        "curbside_sync_pushed_changes_count 1",
        "curbside_requests_in_flight",
        "curbside_open_connections",
        "curbside_storage_readers_busy 0",
    ] {
        assert!(metrics.contains(expected), "{expected}: {metrics}");
    }
    // The pool's use: readers were opened, and the writes (registration, rotation, the push)
    // went through group commits.
    let number = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name}: {metrics}"))
    };
    assert!(number("curbside_storage_readers_open") >= 1);
    assert!(number("curbside_storage_readers_max") >= number("curbside_storage_readers_open"));
    let (commits, writes) = (
        number("curbside_storage_group_commits_total"),
        number("curbside_storage_group_commit_writes_total"),
    );
    assert!(
        commits >= 1 && writes >= 3 && writes >= commits,
        "{commits} {writes}"
    );
    for secret in [old.as_str(), new, &sha] {
        assert!(!metrics.contains(secret));
    }
}

struct Server {
    child: Child,
    addr: String,
    /// The backend it runs on (`sqlite`, or its PostgreSQL database).
    database: String,
    log: std::sync::mpsc::Receiver<String>,
}

impl Server {
    fn start(dir: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> Server {
        let database = common::database();
        let mut command = Command::new(env!("CARGO_BIN_EXE_curbside-server"));
        command
            .args(["--addr", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(args)
            .env("CURBSIDE_DATABASE", &database)
            .env("CURBSIDE_LOG", "debug");
        for (k, v) in envs {
            command.env(k, v);
        }
        let (child, addr, rx) = common::listening(&mut command);
        Server {
            child,
            addr,
            database,
            log: rx,
        }
    }

    /// One request on its own connection: the status line's code and the body.
    fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let code = response[9..12].parse().unwrap();
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (code, body)
    }

    fn json(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let (code, text) = self.call("POST", path, &headers, &body.to_string());
        (code, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn terminate(&mut self) -> (std::process::ExitStatus, Duration, String) {
        let started = Instant::now();
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = self.child.wait().unwrap();
        let took = started.elapsed();
        let mut log = String::new();
        while let Ok(line) = self.log.recv_timeout(Duration::from_secs(2)) {
            log.push_str(&line);
            log.push('\n');
        }
        (status, took, log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[test]
fn slow_clients_are_shed_and_sigterm_drains_within_its_grace() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        dir.path(),
        &[
            "--header-timeout",
            "1",
            "--max-connections",
            "50",
            "--shutdown-grace",
            "2",
            "--registrations-per-hour",
            "3",
            "--connections-per-minute",
            "100000",
        ],
        &[],
    );
    // 120 connections that never finish their headers: more than the server will hold.
    let slow: Vec<TcpStream> = (0..120)
        .map(|_| {
            let mut s = TcpStream::connect(&server.addr).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    let (code, body) = server.call("GET", "/healthz", &[], "");
    assert_eq!(code, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "healthz waited {:?} behind slow clients",
        started.elapsed()
    );
    drop(slow);

    // Registrations from one address: a burst of one, then one every 20 minutes.
    let (code, _) = server.json("/v1/devices", None, &json!({}));
    assert_eq!(code, 200);
    let (code, v) = server.json("/v1/devices", None, &json!({}));
    assert_eq!(code, 429, "{v}");

    // A request half sent when SIGTERM arrives: the server still exits within its grace.
    let mut half = TcpStream::connect(&server.addr).unwrap();
    half.write_all(b"POST /v1/sync HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (status, took, log) = server.terminate();
    assert!(status.success(), "{status}: {log}");
    assert!(took < Duration::from_secs(6), "took {took:?}: {log}");
    assert!(log.contains("SIGTERM") && log.contains("stopped"), "{log}");
}

#[test]
fn devices_are_revoked_from_the_command_line_and_secrets_stay_out_of_ps_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("admin.key");
    let key = "correct-horse-battery-staple-31337";
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(
        &data,
        &[
            "--admin-key-file",
            key_file.to_str().unwrap(),
            "--public-url",
            "https://311.example.ca",
        ],
        &[],
    );
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", server.child.id())).unwrap();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(key),
        "the key is not in ps"
    );

    let (code, inspector) = server.json(
        "/v1/devices",
        None,
        &json!({"role": "inspector", "wards": ["10"], "admin_key": key}),
    );
    assert_eq!(code, 200, "{inspector}");
    let (code, _) = server.json(
        "/v1/devices",
        None,
        &json!({"role": "inspector", "wards": ["10"], "admin_key": "correct-horse"}),
    );
    assert_eq!(code, 403);
    // Discovery names the configured URL, whatever Host says.
    let (_, discovery) = server.call(
        "GET",
        "/discovery.json",
        &[("X-Forwarded-Host", "evil.example")],
        "",
    );
    assert!(
        discovery.contains("https://311.example.ca/") && !discovery.contains("evil"),
        "{discovery}"
    );

    // A resident reports with contact details; the inspector pulls it.
    let (_, resident) = server.json("/v1/devices", None, &json!({}));
    let token = resident["token"].as_str().unwrap().to_string();
    let (email, phone, text) = (
        "amaranta.q@example.org",
        "+1-416-555-0199",
        "Sinkhole beside the school gate",
    );
    let changes = report(&dir.path().join("phone"), email, phone, text);
    let (code, v) = server.json("/v1/sync", Some(&token), &json!({ "changes": changes }));
    assert_eq!(code, 200, "{v}");
    let itoken = inspector["token"].as_str().unwrap();
    let (code, pulled) = server.json("/v1/sync", Some(itoken), &json!({}));
    assert_eq!(code, 200);
    assert!(
        pulled.to_string().contains(email),
        "the inspector sees the contact"
    );

    // Revoked from the command line while the server runs: the next sync is refused.
    let device_id = resident["device_id"].as_str().unwrap();
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_curbside-server"))
            .arg("--data-dir")
            .arg(&data)
            .env("CURBSIDE_DATABASE", &server.database)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let listed = cli(&["device", "list"]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(listed.contains(device_id) && listed.contains("\"revoked_at_ms\":null"));
    assert!(cli(&["device", "revoke", device_id]).contains("revoked"));
    assert!(cli(&["device", "list"])
        .lines()
        .any(|l| l.contains(device_id) && !l.contains("\"revoked_at_ms\":null")));
    let (code, _) = server.json("/v1/sync", Some(&token), &json!({}));
    assert_eq!(code, 401);

    // Nothing personal or secret reached the log, even at debug level.
    let (status, _, log) = server.terminate();
    assert!(status.success());
    assert!(log.contains("request"), "the log has its lines: {log}");
    for secret in [
        email, phone, text, "Amaranta", "Quispe", &token, itoken, key,
    ] {
        assert!(!log.contains(secret), "the log carries {secret:?}:\n{log}");
    }
}
