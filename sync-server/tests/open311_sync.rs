//! One set of requests: what comes in over Open311 reaches the ward's inspectors by sync, what
//! a resident syncs is found over Open311, and what staff do shows in `GET requests` (status,
//! public notes, acknowledgement against the service's standard) and in the standards report,
//! never their internal notes or anyone's contact details. A real server on a loopback port,
//! real stores syncing over HTTP, on the backend under test.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use curbside_core::sync::protocol::{RegisterBody, Role};
use curbside_core::{DraftEdit, Location, LocationSource, RetryPolicy, State, Store, SyncOptions};
use curbside_server::{AppState, Config};
use serde_json::Value;

const ADMIN: &str = "open311-sync-admin";

struct Server {
    addr: SocketAddr,
    state: Arc<AppState>,
    _runtime: tokio::runtime::Runtime,
}

fn start(dir: &std::path::Path) -> Server {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut config: Config = common::config(dir.join("server"));
    config.admin_key = Some(ADMIN.into());
    config.limits.syncs_per_minute = 100_000;
    let state = Arc::new(AppState::load(&config).unwrap());
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let s = state.clone();
    runtime.spawn(async move {
        curbside_server::serve(listener, s, std::future::pending())
            .await
            .unwrap()
    });
    Server {
        addr,
        state,
        _runtime: runtime,
    }
}

/// One HTTP/1.1 exchange, the connection closed after it: (status, body).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    // Bodies here are small and sent whole (no chunked encoding to undo) unless chunked.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut rest = body;
        let mut whole = String::new();
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            whole.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        whole
    } else {
        body.to_string()
    };
    (status, body)
}

fn get_json(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = http(addr, "GET", path, &[], "");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn options() -> SyncOptions {
    SyncOptions {
        retry: RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
            timeout: Duration::from_secs(30),
        },
        ..SyncOptions::default()
    }
}

fn sync(store: &Store) {
    store.sync(&options(), &mut |_| {}).unwrap();
}

#[test]
fn open311_and_sync_are_one_set_of_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let url = format!("http://{}", server.addr);
    let addr = server.addr;

    // A back office posts a streetlight out at City Hall (ward 10), with the caller's contact.
    let (_, key) = curbside_server::open311::create_api_key(&server.state, "back office").unwrap();
    let form = format!(
        "api_key={key}&service_code=TS-STREETLIGHT-OUT&lat=43.6534&long=-79.3841\
         &attribute[PROBLEM]=out&description=Dark+corner&email=caller%40example.org\
         &phone=416-555-0142&first_name=Rita"
    );
    let (status, body) = http(
        addr,
        "POST",
        "/requests.json",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &form,
    );
    assert_eq!(status, 200, "{body}");
    let light: Value = serde_json::from_str(&body).unwrap();
    let light_number = light[0]["service_request_id"].as_str().unwrap().to_string();

    // Ward 10's inspector gets it by sync, with the caller's contact (staff see it).
    let inspector = Store::open(dir.path().join("inspector.db")).unwrap();
    inspector
        .register(
            &url,
            &RegisterBody {
                role: Some(Role::Inspector),
                wards: vec!["10".into()],
                admin_key: Some(ADMIN.into()),
            },
        )
        .unwrap();
    sync(&inspector);
    let theirs = inspector.replicated_requests().unwrap();
    let light_id = theirs
        .iter()
        .find(|id| {
            inspector
                .request(id)
                .unwrap()
                .fields
                .values()
                .any(|v| v.to_string().contains(&format!("\"{light_number}\"")))
        })
        .expect("the posted request reached the ward's inspector")
        .clone();

    // A resident reports a pothole nearby from the app.
    let resident = Store::open(dir.path().join("resident.db")).unwrap();
    resident.register(&url, &RegisterBody::default()).unwrap();
    let pothole = resident
        .create_draft(
            "CSROWR-12",
            &DraftEdit {
                description: Some("Pothole by the bike lane".into()),
                attributes: vec![("SIZE".into(), vec!["large".into()])],
                location: Some(Some(
                    Location::new(43.6530, -79.3835, Some(5.0), LocationSource::Gps).unwrap(),
                )),
                contact: Some(curbside_core::Contact {
                    email: Some("resident@example.org".into()),
                    ..Default::default()
                }),
                ..DraftEdit::default()
            },
        )
        .unwrap();
    resident.submit_draft(&pothole).unwrap();
    let estimated = resident.draft(&pothole).unwrap().expected_at;
    assert!(estimated.is_some(), "an estimate before the city answers");
    sync(&resident);
    let mine = resident.draft(&pothole).unwrap();
    let number = mine.service_request_id.clone().expect("numbered");
    let expected = mine.expected_at.expect("the city's expected date");
    assert!(expected > mine.created_at + time::Duration::days(3));

    // Found over Open311, from the app, with the city's expected date and no contact.
    let found = get_json(addr, &format!("/requests/{number}.json?extensions=true"));
    let r = &found[0];
    assert_eq!(r["service_code"], "CSROWR-12");
    assert_eq!(r["description"], "Pothole by the bike lane");
    assert_eq!(r["extended_attributes"]["channel"], "app");
    assert_eq!(r["extended_attributes"]["ward"], "10");
    let expected_text = r["expected_datetime"].as_str().expect("expected_datetime");
    let parsed = time::OffsetDateTime::parse(
        expected_text,
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(parsed.unix_timestamp(), expected.unix_timestamp());
    assert_eq!(
        r["extended_attributes"]["acknowledged_datetime"],
        Value::Null
    );
    assert_eq!(r["extended_attributes"]["overdue_acknowledgement"], false);
    let everything = get_json(addr, "/requests.json?extensions=true").to_string();
    for private in [
        "resident@example.org",
        "caller@example.org",
        "416-555-0142",
        "Rita",
    ] {
        assert!(!everything.contains(private), "{private} leaked");
    }

    // Staff act: a status with a public note, an internal note; on both requests.
    sync(&inspector);
    inspector
        .set_status(
            &pothole,
            State::InProgress,
            Some("Crew booked for Thursday"),
        )
        .unwrap();
    inspector
        .add_note(&pothole, "Councillor's office asked twice", false)
        .unwrap();
    inspector
        .set_status(&light_id, State::Completed, Some("Bulb replaced"))
        .unwrap();
    sync(&inspector);

    let r = &get_json(addr, &format!("/requests/{number}.json?extensions=true"))[0];
    assert_eq!(r["status"], "open");
    assert_eq!(r["status_notes"], "Crew booked for Thursday");
    let ext = &r["extended_attributes"];
    assert_eq!(ext["detailed_status"], "in_progress");
    assert!(ext["acknowledged_datetime"].is_string(), "{ext}");
    assert_eq!(ext["overdue_acknowledgement"], false);
    let notes = ext["notes"].as_array().unwrap();
    assert!(notes
        .iter()
        .any(|n| n["description"] == "Crew booked for Thursday" && n["role"] == "inspector"));
    let all = get_json(addr, "/requests.json?extensions=true").to_string();
    assert!(!all.contains("Councillor"), "an internal note went public");
    let light = &get_json(
        addr,
        &format!("/requests/{light_number}.json?extensions=true"),
    )[0];
    assert_eq!(light["status"], "closed");
    assert_eq!(light["status_notes"], "Bulb replaced");
    assert!(light["extended_attributes"]["closed_datetime"].is_string());
    let closed = get_json(addr, "/requests.json?status=closed");
    assert_eq!(closed.as_array().unwrap().len(), 1);

    // The resident's app learns of it by sync.
    sync(&resident);
    let mine = resident.draft(&pothole).unwrap();
    assert_eq!(mine.state, State::InProgress);
    assert_eq!(
        mine.status_notes.as_deref(),
        Some("Crew booked for Thursday")
    );

    // A neighbour reports the same pothole, 10 m away: found on receipt as a likely duplicate
    // of the first; the inspector marks it so, and the neighbour's app shows the first one's
    // status.
    let neighbour = Store::open(dir.path().join("neighbour.db")).unwrap();
    neighbour.register(&url, &RegisterBody::default()).unwrap();
    let again = neighbour
        .create_draft(
            "CSROWR-12",
            &DraftEdit {
                description: Some("Big hole near the corner".into()),
                attributes: vec![("SIZE".into(), vec!["medium".into()])],
                location: Some(Some(
                    Location::new(43.65309, -79.38341, Some(8.0), LocationSource::Gps).unwrap(),
                )),
                ..DraftEdit::default()
            },
        )
        .unwrap();
    neighbour.submit_draft(&again).unwrap();
    sync(&neighbour);
    let again_number = neighbour.draft(&again).unwrap().service_request_id.unwrap();
    let r = &get_json(
        addr,
        &format!("/requests/{again_number}.json?extensions=true"),
    )[0];
    let likely = r["extended_attributes"]["likely_duplicates"]
        .as_array()
        .unwrap();
    assert_eq!(likely.len(), 1, "{r}");
    assert_eq!(likely[0]["service_request_id"], number.as_str());
    assert!(likely[0]["distance_m"].as_f64().unwrap() < 20.0);
    assert_eq!(r["status"], "open", "never merged by the server");
    sync(&inspector);
    inspector.mark_duplicate(&again, &pothole, None).unwrap();
    sync(&inspector);
    let r = &get_json(
        addr,
        &format!("/requests/{again_number}.json?extensions=true"),
    )[0];
    assert_eq!(r["status"], "closed");
    assert_eq!(r["extended_attributes"]["detailed_status"], "cancelled");
    assert_eq!(r["extended_attributes"]["duplicate_of"], number.as_str());
    // Asked again (its public side kept by then), the parent is still named.
    let r2 = &get_json(
        addr,
        &format!("/requests/{again_number}.json?extensions=true"),
    )[0];
    assert_eq!(r2["extended_attributes"]["duplicate_of"], number.as_str());
    let plain = &get_json(addr, &format!("/requests/{again_number}.json"))[0];
    assert_eq!(plain["status"], "closed");
    assert!(r["status_notes"].as_str().unwrap().contains(&number), "{r}");
    sync(&neighbour);
    let theirs = neighbour.draft(&again).unwrap();
    assert_eq!(theirs.state, State::Cancelled);
    let parent = theirs.duplicate_of.expect("the parent");
    assert_eq!(parent.service_request_id.as_deref(), Some(number.as_str()));
    assert_eq!(parent.state, Some(State::InProgress));

    // The standards report, for staff only, in JSON and CSV.
    // Devices of the city's staff and of a resident, registered as apps do.
    let register = |body: &str| -> String {
        let (status, answer) = http(
            addr,
            "POST",
            "/v1/devices",
            &[("Content-Type", "application/json")],
            body,
        );
        assert_eq!(status, 200, "{answer}");
        serde_json::from_str::<Value>(&answer).unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let token = register(&format!(
        r#"{{"role":"inspector","wards":["3"],"admin_key":"{ADMIN}"}}"#
    ));
    let now = time::OffsetDateTime::now_utc();
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
            .replace(':', "%3A")
            .replace('+', "%2B")
    };
    let path = format!(
        "/v1/reports/standards?from={}&to={}",
        fmt(now - time::Duration::days(1)),
        fmt(now + time::Duration::days(1))
    );
    let auth = format!("Bearer {token}");
    let (status, body) = http(addr, "GET", &path, &[("Authorization", &auth)], "");
    assert_eq!(status, 200, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    let groups = report["groups"].as_array().unwrap();
    let pothole_group = groups
        .iter()
        .find(|g| g["service_code"] == "CSROWR-12")
        .unwrap();
    assert_eq!(pothole_group["ward"], "10");
    assert_eq!(pothole_group["requests"], 2);
    assert_eq!(pothole_group["acknowledged"], 2);
    assert_eq!(pothole_group["acknowledged_within_standard_pct"], 100.0);
    let light_group = groups
        .iter()
        .find(|g| g["service_code"] == "TS-STREETLIGHT-OUT")
        .unwrap();
    assert_eq!(light_group["resolved_within_standard_pct"], 100.0);
    let (status, body) = http(
        addr,
        "GET",
        &format!("{path}&format=csv"),
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(status, 200);
    assert!(
        body.starts_with("service_code,service_name,ward,requests"),
        "{body}"
    );
    assert_eq!(body.lines().count(), 3, "{body}");
    // Not for residents, not without a token, not for a year and a day.
    let resident_token = register("{}");
    let (status, _) = http(
        addr,
        "GET",
        &path,
        &[("Authorization", &format!("Bearer {resident_token}"))],
        "",
    );
    assert_eq!(status, 403);
    assert_eq!(http(addr, "GET", &path, &[], "").0, 401);
    let (status, body) = http(
        addr,
        "GET",
        "/v1/reports/standards?from=2020-01-01T00%3A00%3A00Z&to=2026-01-01T00%3A00%3A00Z",
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(status, 400, "{body}");
}
