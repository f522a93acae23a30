//! POST /v1/devices and /v1/sync, driven with real changes written by real client stores.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use curbside_core::sync::Change;
use curbside_core::vocab::{ChangeId, ReplicaId};
use curbside_core::{Clock, SystemClock};
use curbside_core::{DraftEdit, Location, LocationSource, Store};
use curbside_server::{app, AppState, Config};
use serde_json::{json, Value};
use tower::ServiceExt;

fn state(dir: &std::path::Path) -> Arc<AppState> {
    Arc::new(
        AppState::load(&Config {
            admin_key: Some("city-admin".into()),
            retention_days: 180,
            ..common::config(dir.to_path_buf())
        })
        .unwrap(),
    )
}

async fn post(
    state: &Arc<AppState>,
    uri: &str,
    token: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut req = Request::post(uri).header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let response = app(state.clone())
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .unwrap();
    (
        status,
        with_flat_changes(serde_json::from_slice(&bytes).unwrap_or(Value::Null)),
    )
}

/// A pull's page read back as a client reads it (its runs decoded by the core), and its
/// changes put under `changes` in the flat form a push writes, for the tests to look into.
fn with_flat_changes(mut v: Value) -> Value {
    if let Some(groups) = v.get("groups") {
        let changes: Vec<curbside_core::sync::Change> =
            curbside_core::sync::page::deserialize(groups).expect("a page the client can read");
        v["changes"] = serde_json::to_value(&changes).unwrap();
    }
    v
}

async fn register(state: &Arc<AppState>, body: Value) -> String {
    let (status, v) = post(state, "/v1/devices", None, &body.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["token"].as_str().unwrap().to_string()
}

/// The token of an inspector of ward 10 (Spadina-Fort York, where the tests' reports are).
async fn inspector_of_ward_10(state: &Arc<AppState>) -> String {
    register(
        state,
        json!({"role": "inspector", "wards": ["10"], "admin_key": "city-admin"}),
    )
    .await
}

/// A sync body pushing `changes`.
fn push(changes: Vec<Change>) -> String {
    json!({ "changes": changes }).to_string()
}

/// A resident's phone: a real store with a submitted pothole report; returns its changes.
fn phone_report(dir: &std::path::Path, lat: f64, lon: f64) -> (String, Vec<Change>) {
    let path = dir.join("phone.db");
    let store = Store::open(&path).unwrap();
    let id = store
        .create_draft(
            "CSROWR-12",
            &DraftEdit {
                description: Some("Pothole at the streetcar stop".into()),
                attributes: vec![("SIZE".into(), vec!["large".into()])],
                location: Some(Some(
                    Location::new(lat, lon, Some(5.0), LocationSource::Gps).unwrap(),
                )),
                ..DraftEdit::default()
            },
        )
        .unwrap();
    store.submit_draft(&id).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    (id, curbside_core::sync::log::all_changes(&conn).unwrap())
}

/// The same edit, as if another replica had made it.
fn by(replica: &str, counter: u64, c: &Change) -> Change {
    Change {
        id: ChangeId {
            replica: ReplicaId::parse(replica).unwrap(),
            counter,
        },
        ..c.clone()
    }
}

#[tokio::test]
async fn a_pushed_report_gets_one_public_id_however_often_it_is_resent() {
    let dir = tempfile::tempdir().unwrap();
    let server = state(&dir.path().join("server"));
    let resident = register(&server, json!({})).await;
    let (id, changes) = phone_report(dir.path(), 43.6534, -79.3841);
    let push = json!({"changes": changes, "client_time_ms": SystemClock.now_ms() - 86_400_000})
        .to_string();

    let (status, first) = post(&server, "/v1/sync", Some(&resident), &push).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["accepted"].as_array().unwrap().len(), changes.len());
    let number = first["assigned"][0]["service_request_id"].clone();
    assert_eq!(first["assigned"][0]["request_id"], id.as_str());
    let offset = first["clock_offset_ms"].as_i64().unwrap();
    assert!(
        (offset - 86_400_000).abs() < 60_000,
        "a phone a day behind is told so: {offset}"
    );
    // The pull brings the resident's own request back with the number the server gave it and
    // the date the city expects to resolve it (changes of its own, so they arrive even if this
    // answer is lost), and a cursor.
    let pulled = first["changes"].as_array().unwrap();
    assert_eq!(pulled.len(), changes.len() + 2);
    assert!(pulled.iter().any(|c| c["field"] == "expected_at"));
    assert!(pulled
        .iter()
        .any(|c| c["field"] == "service_request_id" && c["value"] == number));

    // The response was lost: the phone sends the same batch again.
    let (status, again) = post(&server, "/v1/sync", Some(&resident), &push).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        again["assigned"][0]["service_request_id"], number,
        "no second request"
    );
    let cursor = again["cursor"].as_str().unwrap().to_string();
    let (_, later) = post(
        &server,
        "/v1/sync",
        Some(&resident),
        &json!({"cursor": cursor}).to_string(),
    )
    .await;
    assert!(
        later["changes"].as_array().unwrap().is_empty(),
        "nothing new since the cursor"
    );
    assert_eq!(later["more"], false);
}

#[tokio::test]
async fn scope_tokens_and_bad_input_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let server = state(&dir.path().join("server"));
    let resident = register(&server, json!({"role": "resident"})).await;
    let other = register(&server, json!({})).await;
    let (status, _) = post(
        &server,
        "/v1/devices",
        None,
        &json!({"role": "inspector", "wards": ["10"]}).to_string(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "inspectors need the admin key"
    );
    let inspector = inspector_of_ward_10(&server).await;
    let far_inspector = register(
        &server,
        json!({"role": "inspector", "wards": ["23"], "admin_key": "city-admin"}),
    )
    .await;

    // City Hall is in ward 10.
    let (id, changes) = phone_report(dir.path(), 43.6534, -79.3841);
    let (status, _) = post(
        &server,
        "/v1/sync",
        Some(&resident),
        &json!({"changes": changes}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let (_, seen) = post(&server, "/v1/sync", Some(&inspector), "{}").await;
    assert_eq!(
        seen["changes"].as_array().unwrap().len(),
        changes.len() + 2,
        "ward 10's inspector sees it, with its number"
    );
    for token in [&far_inspector, &other] {
        let (_, v) = post(&server, "/v1/sync", Some(token), "{}").await;
        assert!(
            v["changes"].as_array().unwrap().is_empty(),
            "not in this device's scope"
        );
    }

    // Another resident may not change it; the ward's inspector may.
    let edit = by("someone", 1, &changes[1]);
    let body = json!({"changes": [edit]}).to_string();
    assert_eq!(
        post(&server, "/v1/sync", Some(&other), &body).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(&server, "/v1/sync", Some(&inspector), &body).await.0,
        StatusCode::OK
    );

    let now_hlc = curbside_core::sync::Hlc::new(SystemClock.now_ms() as u64, 0).0;
    for (token, body, expected) in [
        (None, "{}".to_string(), StatusCode::UNAUTHORIZED),
        (Some("not-a-token"), "{}".to_string(), StatusCode::UNAUTHORIZED),
        (Some(resident.as_str()), "{\"changes\": [".to_string(), StatusCode::BAD_REQUEST),
        (Some(resident.as_str()), json!({"cursor": "another-server:12"}).to_string(), StatusCode::CONFLICT),
        (Some(resident.as_str()), json!({"changes": [{"id": "x:1", "request_id": id, "field": "colour", "value": "red", "hlc": 1, "replica": "x"}]}).to_string(), StatusCode::BAD_REQUEST),
        (Some(resident.as_str()), json!({"changes": [{"id": "x:2", "request_id": "0190f3a0-0000-7000-8000-000000000009", "field": "description", "value": "orphan", "hlc": now_hlc, "replica": "x"}]}).to_string(), StatusCode::NOT_FOUND),
        // Control characters (a NUL a database would refuse midway) in a replica id, an
        // attribute's code; a removed photo that names no photo.
        (Some(resident.as_str()), json!({"changes": [{"id": "x\u{0}:3", "request_id": id, "field": "description", "value": "nul", "hlc": now_hlc, "replica": "x\u{0}"}]}).to_string(), StatusCode::BAD_REQUEST),
        (Some(resident.as_str()), json!({"changes": [{"id": "x:4", "request_id": id, "field": "attr:SIZE\u{0}", "value": ["large"], "hlc": now_hlc, "replica": "x"}]}).to_string(), StatusCode::BAD_REQUEST),
        (Some(resident.as_str()), json!({"changes": [{"id": "x:5", "request_id": id, "field": "photo_remove", "value": "../../etc/passwd", "hlc": now_hlc, "replica": "x"}]}).to_string(), StatusCode::BAD_REQUEST),
    ] {
        let (status, v) = post(&server, "/v1/sync", token, &body).await;
        assert_eq!(status, expected, "{body}: {v}");
        assert!(v[0]["description"].as_str().is_some_and(|d| !d.is_empty()), "an Open311 error array: {v}");
    }
    // A far-future stamp in a batch: refused whole, the good change in it included.
    let mut future = by("phone", 99, &changes[1]);
    future.hlc = curbside_core::sync::Hlc::new((SystemClock.now_ms() + 86_400_000) as u64, 0);
    let good = by("phone", 98, &changes[1]);
    let (status, v) = post(
        &server,
        "/v1/sync",
        Some(&resident),
        &json!({"changes": [good, future]}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v[0]["server_time_ms"].is_i64(),
        "the server's time, to correct the clock: {v}"
    );
    let (_, pulled) = post(&server, "/v1/sync", Some(&resident), "{}").await;
    assert!(
        !pulled["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == "phone:98"),
        "no partial apply"
    );
}

/// One phone must not be able to write the past: a change stamped in 1970 would be compacted at
/// once and expire every other device's cursor. Old stamps are refused; changes stamped just
/// inside the retention are kept until they have been here for the retention too.
#[tokio::test]
async fn no_device_can_expire_the_others_cursors_with_back_dated_changes() {
    use curbside_core::sync::Hlc;
    use curbside_core::vocab::{FieldValue, OsEntropy};
    const DAY: i64 = 86_400_000;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(curbside_core::vocab::ManualClock::new(SystemClock.now_ms()));
    let server = Arc::new(
        AppState::load_with(
            &Config {
                admin_key: Some("city-admin".into()),
                retention_days: 180,
                ..common::config(dir.path().join("server"))
            },
            clock.clone(),
            Arc::new(OsEntropy),
        )
        .unwrap(),
    );
    let resident = register(&server, json!({})).await;
    let inspector = inspector_of_ward_10(&server).await;
    let (_, changes) = phone_report(dir.path(), 43.6534, -79.3841);
    assert_eq!(
        post(&server, "/v1/sync", Some(&resident), &push(changes.clone()))
            .await
            .0,
        StatusCode::OK
    );
    let (_, seen) = post(&server, "/v1/sync", Some(&inspector), "{}").await;
    let cursor = seen["cursor"].as_str().unwrap().to_string();

    let description = changes
        .iter()
        .find(|c| matches!(c.value, FieldValue::Description(_)))
        .unwrap();
    let dated = |counter: u64, ms: i64, text: &str| Change {
        hlc: Hlc::new(ms as u64, 0),
        value: FieldValue::Description(text.into()),
        ..by(description.replica().as_str(), counter, description)
    };
    let now = clock.now_ms();
    let (status, v) = post(
        &server,
        "/v1/sync",
        Some(&resident),
        &push(vec![dated(900, 0, "1970")]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v[0]["description"].as_str().unwrap().contains("older than"),
        "{v}"
    );

    // Just inside the retention, one overwriting the other: accepted.
    let (status, v) = post(
        &server,
        "/v1/sync",
        Some(&resident),
        &push(vec![
            dated(901, now - 179 * DAY, "first"),
            dated(902, now - 179 * DAY + 1, "second"),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // Two days on, both stamps are past the horizon but arrived inside it: nothing goes.
    clock.advance(2 * DAY);
    assert_eq!(curbside_server::compact(&server, 180).unwrap(), 0);
    let (status, v) = post(
        &server,
        "/v1/sync",
        Some(&inspector),
        &json!({ "cursor": cursor }).to_string(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the inspector's cursor still holds: {v}"
    );
    // Once they have been here for the retention as well, the overwritten one goes.
    clock.advance(180 * DAY);
    assert!(curbside_server::compact(&server, 180).unwrap() >= 1);
}

/// What a neighbour receives identifies nobody: no replica or device id of the reporter, no
/// note author beyond a role, and nothing of the city's internal notes, retractions included.
#[tokio::test]
async fn a_neighbour_learns_nothing_of_who_reported_or_of_internal_notes() {
    use curbside_core::sync::Hlc;
    use curbside_core::vocab::{FieldValue, Note};
    let dir = tempfile::tempdir().unwrap();
    let server = state(&dir.path().join("server"));
    let (ana, ana_id) = {
        let (_, v) = post(&server, "/v1/devices", None, "{}").await;
        (
            v["token"].as_str().unwrap().to_string(),
            v["device_id"].as_str().unwrap().to_string(),
        )
    };
    let ben = register(&server, json!({})).await;
    let inspector = inspector_of_ward_10(&server).await;
    let a_dir = dir.path().join("a");
    std::fs::create_dir_all(&a_dir).unwrap();
    let (_, changes) = phone_report(&a_dir, 43.6534, -79.3841);
    let replica = changes[0].replica().to_string();
    assert_eq!(
        post(&server, "/v1/sync", Some(&ana), &push(changes.clone()))
            .await
            .0,
        StatusCode::OK
    );
    let note = |counter: u64, author: &str, public: bool, id: &str| Change {
        hlc: Hlc::new(SystemClock.now_ms() as u64, counter as u16),
        value: FieldValue::Note(Note {
            id: id.into(),
            author: author.into(),
            text: format!("note {id}"),
            public,
            status: None,
        }),
        replaced: None,
        ..by("c17y0000c17y0000", counter, &changes[0])
    };
    // A resident may not sign a note as the city.
    let forged = by(&replica, 500, &note(1, "inspector", true, "forged"));
    assert_eq!(
        post(&server, "/v1/sync", Some(&ana), &push(vec![forged]))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    // The city writes a public note and an internal one, then retracts the internal one.
    let retract = Change {
        value: FieldValue::NoteRetract("internal".into()),
        ..note(3, "inspector", false, "x")
    };
    let (status, v) = post(
        &server,
        "/v1/sync",
        Some(&inspector),
        &push(vec![
            note(1, "inspector", true, "public"),
            note(2, "inspector", false, "internal"),
            retract,
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");

    // Ben reports 60 m away: the backfill brings Ana's open request to him, and so does a pull.
    let b_dir = dir.path().join("b");
    std::fs::create_dir_all(&b_dir).unwrap();
    let (_, his) = phone_report(&b_dir, 43.6539, -79.3841);
    let (status, first) = post(&server, "/v1/sync", Some(&ben), &push(his)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (_, again) = post(&server, "/v1/sync", Some(&ben), "{}").await;
    let (_, anas) = post(&server, "/v1/sync", Some(&ana), "{}").await;
    for (who, v) in [("backfill", &first), ("pull", &again)] {
        let text = v["changes"].to_string();
        assert!(
            text.contains("note public"),
            "{who}: the public note arrives: {text}"
        );
        for secret in [
            replica.as_str(),
            ana_id.as_str(),
            "c17y0000c17y0000",
            "internal",
        ] {
            assert!(!text.contains(secret), "{who} carries {secret}: {text}");
        }
        assert!(
            v["changes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["field"] == "note")
                .all(|c| c["value"]["author"] == "inspector"),
            "{who}: {text}"
        );
    }
    // The reporter sees the city's public note, but neither the internal one nor its
    // retraction, nor which of the city's devices wrote it.
    let text = anas["changes"].to_string();
    assert!(
        text.contains("note public") && !text.contains("internal"),
        "{text}"
    );
    assert!(!text.contains("c17y0000c17y0000"), "{text}");
    assert!(text.contains(&replica), "her own changes as she made them");
}

/// The same change, made later by its replica with a new value.
fn edited(c: &Change, counter: u64, value: curbside_core::vocab::FieldValue) -> Change {
    Change {
        id: ChangeId {
            replica: c.id.replica.clone(),
            counter,
        },
        hlc: curbside_core::sync::Hlc::new(SystemClock.now_ms() as u64, (counter % 1000) as u16),
        replaced: None,
        value,
        ..c.clone()
    }
}

fn field<'c>(changes: &'c [Change], name: &str) -> &'c Change {
    changes
        .iter()
        .find(|c| c.field().name() == name)
        .unwrap_or_else(|| panic!("no {name} change"))
}

fn ids_in(v: &Value) -> Vec<String> {
    v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["request_id"].as_str().unwrap().to_string())
        .collect()
}

/// A change id is its replica's: a device that pushes ids of another's replica (to make that
/// replica's next changes look like duplicates, or to hide them from its own pulls) is refused,
/// and the other's changes arrive as ever.
#[tokio::test]
async fn no_device_can_push_under_another_devices_replica() {
    use curbside_core::vocab::FieldValue;
    let dir = tempfile::tempdir().unwrap();
    let server = state(&dir.path().join("server"));
    let ana = register(&server, json!({})).await;
    let ben = register(&server, json!({})).await;
    let inspector = inspector_of_ward_10(&server).await;
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let (ana_request, anas) = phone_report(&a_dir, 43.6534, -79.3841);
    let (_, bens) = phone_report(&b_dir, 43.6539, -79.3841);
    assert_eq!(
        post(&server, "/v1/sync", Some(&ana), &push(anas.clone()))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        post(&server, "/v1/sync", Some(&ben), &push(bens.clone()))
            .await
            .0,
        StatusCode::OK
    );
    let replica = anas[0].replica().to_string();
    let next = anas.iter().map(|c| c.id.counter).max().unwrap() + 1;

    // Ben writes Ana's next counters on his own request.
    let claim: Vec<Change> = (next..next + 5)
        .map(|n| {
            edited(
                field(&bens, "description"),
                n,
                FieldValue::Description("mine".into()),
            )
        })
        .map(|c| by(&replica, c.id.counter, &c))
        .collect();
    let (status, v) = post(&server, "/v1/sync", Some(&ben), &push(claim)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");

    // Ana's next change, with that very id, reaches the ward's inspector.
    let deeper = edited(
        field(&anas, "description"),
        next,
        FieldValue::Description("Deeper every day".into()),
    );
    let (status, v) = post(&server, "/v1/sync", Some(&ana), &push(vec![deeper])).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["accepted"].as_array().unwrap().len(), 1, "{v}");
    let (_, city) = post(&server, "/v1/sync", Some(&inspector), "{}").await;
    assert!(
        city["changes"].to_string().contains("Deeper every day"),
        "{city}"
    );

    // Claiming her replica in a pull hides nothing of hers from Ben.
    let (_, his) = post(
        &server,
        "/v1/sync",
        Some(&ben),
        &json!({ "replica": replica }).to_string(),
    )
    .await;
    assert!(ids_in(&his).contains(&ana_request), "{his}");
    assert!(his["changes"].to_string().contains("Deeper every day"));
}

/// A request that comes into someone's sight later (moved next to them) reaches them whole,
/// not only the changes after it moved; and a neighbourhood lost with an answer comes again.
#[tokio::test]
async fn a_request_that_moves_into_sight_arrives_whole() {
    use curbside_core::vocab::FieldValue;
    use curbside_core::{Location, LocationSource};
    let dir = tempfile::tempdir().unwrap();
    let server = state(&dir.path().join("server"));
    let ana = register(&server, json!({})).await;
    let ben = register(&server, json!({})).await;
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    // Ana reports in Scarborough, Ben at City Hall: nothing of hers is in his sight.
    let (ana_request, anas) = phone_report(&a_dir, 43.7700, -79.2000);
    let (_, bens) = phone_report(&b_dir, 43.6539, -79.3841);
    assert_eq!(
        post(&server, "/v1/sync", Some(&ana), &push(anas.clone()))
            .await
            .0,
        StatusCode::OK
    );
    let (_, first) = post(&server, "/v1/sync", Some(&ben), &push(bens.clone())).await;
    assert!(!ids_in(&first).contains(&ana_request));
    let cursor = first["cursor"].as_str().unwrap().to_string();

    // She corrects the pin: the pothole is at City Hall after all.
    let next = anas.iter().map(|c| c.id.counter).max().unwrap() + 1;
    let moved = edited(
        field(&anas, "location"),
        next,
        FieldValue::Location(Some(
            Location::new(43.6534, -79.3841, Some(5.0), LocationSource::MapPin).unwrap(),
        )),
    );
    assert_eq!(
        post(&server, "/v1/sync", Some(&ana), &push(vec![moved]))
            .await
            .0,
        StatusCode::OK
    );
    let (_, later) = post(
        &server,
        "/v1/sync",
        Some(&ben),
        &json!({ "cursor": cursor }).to_string(),
    )
    .await;
    let fields: Vec<&str> = later["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["request_id"] == ana_request.as_str())
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    for f in ["create", "description", "location", "service_request_id"] {
        assert!(fields.contains(&f), "{f} missing: {fields:?}");
    }

    // Carl reports beside them and loses the answer: sending the same push again brings the
    // open requests around him again.
    let carl = register(&server, json!({})).await;
    let c_dir = dir.path().join("c");
    std::fs::create_dir_all(&c_dir).unwrap();
    let (_, carls) = phone_report(&c_dir, 43.6536, -79.3841);
    let (_, lost) = post(&server, "/v1/sync", Some(&carl), &push(carls.clone())).await;
    let (_, again) = post(&server, "/v1/sync", Some(&carl), &push(carls)).await;
    for v in [&lost, &again] {
        assert!(ids_in(v).contains(&ana_request), "{v}");
    }
}

/// A resident cannot grow one request without bound (every later reader of it pays): past
/// its limit the push of that request is refused, and the city still writes to it.
#[tokio::test]
async fn a_resident_cannot_grow_a_request_without_bound() {
    use curbside_core::vocab::{FieldValue, Note, Status};
    let dir = tempfile::tempdir().unwrap();
    let server = state(&dir.path().join("server"));
    let ana = register(&server, json!({})).await;
    let inspector = inspector_of_ward_10(&server).await;
    let (request, anas) = phone_report(dir.path(), 43.6534, -79.3841);
    assert_eq!(
        post(&server, "/v1/sync", Some(&ana), &push(anas.clone()))
            .await
            .0,
        StatusCode::OK
    );
    let next = anas.iter().map(|c| c.id.counter).max().unwrap() + 1;
    let notes = |from: u64, n: u64| -> Vec<Change> {
        (from..from + n)
            .map(|i| {
                edited(
                    &anas[0],
                    i,
                    FieldValue::Note(Note {
                        id: format!("n{i}"),
                        author: "resident".into(),
                        text: "still there".into(),
                        public: true,
                        status: None,
                    }),
                )
            })
            .collect()
    };
    // The server's own changes (its number, its expected date) count too.
    let room = 1_000 - anas.len() as u64 - 2;
    let (status, v) = post(&server, "/v1/sync", Some(&ana), &push(notes(next, room))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = post(
        &server,
        "/v1/sync",
        Some(&ana),
        &push(notes(next + room, 2)),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v[0]["request_id"], request.as_str(), "{v}");
    let closed = Change {
        value: FieldValue::Status(Status::Completed),
        ..by(
            "c17y0000c17y0000",
            1,
            &edited(&anas[0], 1, FieldValue::Status(Status::Completed)),
        )
    };
    let (status, v) = post(&server, "/v1/sync", Some(&inspector), &push(vec![closed])).await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

/// A pull costs what the device may see, not the size of the log: a new device far from
/// everything is caught up in one call, whatever came before it.
#[tokio::test]
async fn a_device_that_sees_nothing_is_caught_up_in_one_call() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        admin_key: Some("city-admin".into()),
        ..common::config(dir.path().join("server"))
    };
    config.limits.syncs_per_minute = 100_000;
    let mut state = AppState::load(&config).unwrap();
    state.page = 25;
    let server = Arc::new(state);
    // 40 reports at City Hall (ward 10) from 40 phones, several changes each: many pages of
    // the log.
    let mut pushed = 0;
    for i in 0..40 {
        let ana = register(&server, json!({})).await;
        let phone = dir.path().join(format!("phone-{i}"));
        std::fs::create_dir_all(&phone).unwrap();
        let (_, changes) = phone_report(&phone, 43.6534, -79.3841);
        pushed += changes.len() + 2;
        let (status, v) = post(
            &server,
            "/v1/sync",
            Some(&ana),
            &json!({ "changes": changes }).to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    let far = register(&server, json!({})).await;
    let elsewhere = register(
        &server,
        json!({"role": "inspector", "wards": ["23"], "admin_key": "city-admin"}),
    )
    .await;
    for token in [&far, &elsewhere] {
        let (_, v) = post(&server, "/v1/sync", Some(token), "{}").await;
        assert!(v["changes"].as_array().unwrap().is_empty(), "{v}");
        assert_eq!(v["more"], false, "one call: {v}");
    }
    // The ward's inspector pages through all of it, in order, and nothing else.
    let inspector = inspector_of_ward_10(&server).await;
    let (mut cursor, mut seen, mut rounds) = (None::<String>, 0, 0);
    loop {
        let (_, v) = post(
            &server,
            "/v1/sync",
            Some(&inspector),
            &json!({ "cursor": cursor }).to_string(),
        )
        .await;
        let page = v["changes"].as_array().unwrap();
        assert!(page.len() <= 25);
        seen += page.len();
        rounds += 1;
        cursor = v["cursor"].as_str().map(str::to_string);
        if v["more"] == false {
            break;
        }
    }
    assert_eq!(seen, pushed, "every change, number and expected date, once");
    assert!(rounds <= pushed / 25 + 2, "{rounds} rounds");
}
