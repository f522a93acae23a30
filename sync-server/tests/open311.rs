//! The Open311 surface, in-process through the router and for real through the binary.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use curbside_server::{app, AppState, Config};
use serde_json::Value;
use tower::ServiceExt;

fn config(dir: &std::path::Path) -> Config {
    Config {
        admin_key: None,
        retention_days: 180,
        ..common::config(dir.to_path_buf())
    }
}

async fn get(state: &Arc<AppState>, uri: &str) -> (StatusCode, String, String) {
    let response = app(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn the_service_list_and_definitions_use_the_spec_field_names() {
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(AppState::load(&config(dir.path())).unwrap());

    let (status, ct, body) = get(&state, "/services.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.starts_with("application/json"));
    let services: Value = serde_json::from_str(&body).unwrap();
    let first = &services[0];
    for field in [
        "service_code",
        "service_name",
        "description",
        "metadata",
        "type",
        "keywords",
        "group",
    ] {
        assert!(first.get(field).is_some(), "{field} missing from {first}");
    }
    assert!(services
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["service_code"] == "30102"));

    let (status, _, body) = get(
        &state,
        "/services/CSROWR-12.json?jurisdiction_id=toronto.ca",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let def: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(def["service_code"], "CSROWR-12");
    let size = def["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["code"] == "SIZE")
        .unwrap();
    for field in [
        "variable",
        "code",
        "datatype",
        "required",
        "datatype_description",
        "order",
        "description",
        "values",
    ] {
        assert!(size.get(field).is_some(), "{field} missing from {size}");
    }
    assert_eq!(size["values"][0]["key"], "small");

    let (status, ct, body) = get(&state, "/services/CSROWR-12.xml").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.starts_with("text/xml"));
    assert!(
        body.contains("<service_definition><service_code>CSROWR-12</service_code>"),
        "{body}"
    );

    // A service without metadata has an empty definition, not an error.
    let (status, _, body) = get(&state, "/services/SWLMALB-02.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["attributes"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn errors_are_open311_error_arrays() {
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(AppState::load(&config(dir.path())).unwrap());
    for uri in [
        "/services/NOPE.json",
        "/services.json?jurisdiction_id=nyc.gov",
        "/requests/1.json",
        "/services/CSROWR-12",
    ] {
        let (status, _, body) = get(&state, uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        let errors: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(errors[0]["code"], 404, "{uri}: {body}");
        assert!(errors[0]["description"].as_str().unwrap().len() > 5);
    }
    let (_, _, body) = get(&state, "/services/NOPE.xml").await;
    assert!(body.contains("<errors><error><code>404</code>"), "{body}");
    // An empty jurisdiction_id counts as absent.
    assert_eq!(
        get(&state, "/services.json?jurisdiction_id=").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_imported_catalogue_is_kept_in_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.catalog = Some(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/data/toronto/open311-services.json"
        )
        .into(),
    );
    drop(AppState::load(&cfg).unwrap());
    cfg.catalog = None;
    let state = Arc::new(AppState::load(&cfg).unwrap());
    let (_, _, body) = get(&state, "/services.json").await;
    assert_eq!(
        serde_json::from_str::<Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        6
    );

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"services\": 3}").unwrap();
    cfg.catalog = Some(bad);
    let err = AppState::load(&cfg)
        .err()
        .expect("a bad catalogue stops startup")
        .to_string();
    assert!(
        err.contains("bad.json") && err.contains("must be an array"),
        "{err}"
    );
}

#[test]
fn the_binary_serves_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_curbside-server"))
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("CURBSIDE_DATABASE", common::database())
        .env("CURBSIDE_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(
            log.read_line(&mut line).unwrap() > 0,
            "server exited before listening"
        );
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let mut stream = TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("{\"status\":\"ok\"}"), "{response}");
    if !common::on_postgres() {
        assert!(dir.path().join("curbside-server.sqlite").exists());
    }

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful shutdown exits 0: {status}");
    let mut rest = String::new();
    log.read_to_string(&mut rest).unwrap();
    assert!(
        rest.contains("SIGTERM") && rest.contains("stopped"),
        "{rest}"
    );
}
