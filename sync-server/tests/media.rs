//! Photos as an attacker with a free token would try them: other people's photos, other
//! people's uploads, racing chunks, hoarded parts, and a JPEG with a GPS-tagged JPEG after it.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use curbside_core::sync::{Change, Hlc};
use curbside_core::vocab::{ChangeId, FieldValue, PhotoRef};
use curbside_core::{Clock, DraftEdit, Location, LocationSource, Store, SystemClock};
use curbside_server::{app, AppState, Config};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

fn state(dir: &std::path::Path) -> Arc<AppState> {
    Arc::new(
        AppState::load(&Config {
            admin_key: None,
            retention_days: 180,
            ..common::config(dir.to_path_buf())
        })
        .unwrap(),
    )
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

async fn call(
    state: &Arc<AppState>,
    method: Method,
    uri: &str,
    token: Option<&str>,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let response = app(state.clone())
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: axum::body::to_bytes(body, 16 << 20).await.unwrap().to_vec(),
    }
}

async fn register(state: &Arc<AppState>) -> String {
    let headers = [("content-type", "application/json".to_string())];
    let a = call(
        state,
        Method::POST,
        "/v1/devices",
        None,
        &headers,
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    serde_json::from_slice::<Value>(&a.body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn push(state: &Arc<AppState>, token: &str, changes: &[Change]) -> StatusCode {
    let body = json!({ "changes": changes }).to_string().into_bytes();
    let headers = [("content-type", "application/json".to_string())];
    call(state, Method::POST, "/v1/sync", Some(token), &headers, body)
        .await
        .status
}

/// A real store's report at (lat, lon) with a real phone photo; its changes and the photo.
fn report_with_photo(
    dir: &std::path::Path,
    lat: f64,
    lon: f64,
    photo: &str,
) -> (Vec<Change>, Vec<u8>, String) {
    std::fs::create_dir_all(dir).unwrap();
    let store = Store::open(dir.join("phone.db")).unwrap();
    let id = store
        .create_draft(
            "CSROWR-12",
            &DraftEdit {
                description: Some("Pothole".into()),
                attributes: vec![("SIZE".into(), vec!["large".into()])],
                location: Some(Some(
                    Location::new(lat, lon, Some(5.0), LocationSource::Gps).unwrap(),
                )),
                ..DraftEdit::default()
            },
        )
        .unwrap();
    let photo = std::fs::read(format!(
        "{}/../../shared/data/photos/gps/{photo}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let attached = store.attach_photo(&id, &photo).unwrap();
    store.submit_draft(&id).unwrap();
    let sha = attached.photo.sha256.clone();
    let jpeg = store.photo_jpeg(&sha).unwrap();
    let conn = rusqlite::Connection::open(dir.join("phone.db")).unwrap();
    (
        curbside_core::sync::log::all_changes(&conn).unwrap(),
        jpeg,
        sha,
    )
}

/// A photo reference to `sha` on the request of `like`, as the same replica's next change.
fn photo_ref(like: &Change, counter: u64, sha: &str) -> Change {
    Change {
        id: ChangeId {
            replica: like.id.replica.clone(),
            counter,
        },
        value: FieldValue::Photo(PhotoRef {
            sha256: sha.into(),
            width: 10,
            height: 10,
        }),
        hlc: Hlc::new(SystemClock.now_ms() as u64, counter as u16),
        replaced: None,
        ..like.clone()
    }
}

fn chunk_headers(offset: usize, total: usize) -> Vec<(&'static str, String)> {
    vec![
        ("upload-offset", offset.to_string()),
        ("upload-length", total.to_string()),
    ]
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn photos_are_private_to_those_who_may_see_them_and_uploads_to_their_device() {
    let dir = tempfile::tempdir().unwrap();
    let server = state(&dir.path().join("server"));
    let ana = register(&server).await;
    let ben = register(&server).await;
    let far = register(&server).await;
    let (changes, jpeg, sha) =
        report_with_photo(&dir.path().join("ana"), 43.6534, -79.3841, "DSCN0010.jpg");
    assert_eq!(push(&server, &ana, &changes).await, StatusCode::OK);
    let uri = format!("/v1/media/{sha}");
    let half = jpeg.len() / 2;

    // Ben has no request referring to the photo: he can neither start nor join Ana's upload.
    let first = call(
        &server,
        Method::PATCH,
        &uri,
        Some(&ana),
        &chunk_headers(0, jpeg.len()),
        jpeg[..half].to_vec(),
    )
    .await;
    assert_eq!(first.status, StatusCode::NO_CONTENT);
    for offset in [0, half] {
        let theirs = call(
            &server,
            Method::PATCH,
            &uri,
            Some(&ben),
            &chunk_headers(offset, jpeg.len()),
            jpeg[offset..].to_vec(),
        )
        .await;
        assert_eq!(theirs.status, StatusCode::FORBIDDEN, "offset {offset}");
    }
    // Nobody learns the size of an upload that is not theirs.
    for token in [None, Some(ben.as_str())] {
        let head = call(&server, Method::HEAD, &uri, token, &[], vec![]).await;
        assert!(
            matches!(
                head.status,
                StatusCode::NOT_FOUND | StatusCode::UNAUTHORIZED
            ),
            "{token:?}"
        );
    }
    let head = call(&server, Method::HEAD, &uri, Some(&ana), &[], vec![]).await;
    assert_eq!(head.headers["upload-offset"], half.to_string().as_str());

    // Two chunks raced at one offset: one appends, the other is told where the upload is.
    let rest = jpeg[half..].to_vec();
    let headers = chunk_headers(half, jpeg.len());
    let (a, b) = tokio::join!(
        call(
            &server,
            Method::PATCH,
            &uri,
            Some(&ana),
            &headers,
            rest.clone()
        ),
        call(
            &server,
            Method::PATCH,
            &uri,
            Some(&ana),
            &headers,
            rest.clone()
        ),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT]);
    let head = call(&server, Method::HEAD, &uri, Some(&ana), &[], vec![]).await;
    assert_eq!(
        head.headers["upload-offset"],
        jpeg.len().to_string().as_str()
    );

    // Served to Ana, to a neighbour once he reports nearby, never without a token or far away.
    assert_eq!(
        call(&server, Method::GET, &uri, None, &[], vec![])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let served = call(&server, Method::GET, &uri, Some(&ana), &[], vec![]).await;
    assert_eq!(served.status, StatusCode::OK);
    assert!(served.body.starts_with(&[0xFF, 0xD8]) && served.body.ends_with(&[0xFF, 0xD9]));
    assert_eq!(
        call(&server, Method::GET, &uri, Some(&ben), &[], vec![])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let (near, _, _) =
        report_with_photo(&dir.path().join("ben"), 43.6538, -79.3841, "DSCN0012.jpg");
    assert_eq!(push(&server, &ben, &near).await, StatusCode::OK);
    assert_eq!(
        call(&server, Method::GET, &uri, Some(&ben), &[], vec![])
            .await
            .status,
        StatusCode::OK
    );
    let (away, _, _) =
        report_with_photo(&dir.path().join("far"), 43.7700, -79.2000, "DSCN0021.jpg");
    assert_eq!(push(&server, &far, &away).await, StatusCode::OK);
    assert_eq!(
        call(&server, Method::GET, &uri, Some(&far), &[], vec![])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_second_jpeg_after_the_first_and_its_gps_never_reach_anyone() {
    let dir = tempfile::tempdir().unwrap();
    let server = state(&dir.path().join("server"));
    let ana = register(&server).await;
    let (changes, clean, _) =
        report_with_photo(&dir.path().join("ana"), 43.6534, -79.3841, "DSCN0010.jpg");
    // A clean JPEG, then the original camera file with its GPS tags glued after its end.
    let gps = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/photos/gps/DSCN0010.jpg"
    ))
    .unwrap();
    assert!(gps.windows(4).any(|w| w == b"Exif"));
    let mut hostile = clean.clone();
    hostile.extend_from_slice(&gps);
    let sha = hex(&hostile);
    let mut all = changes.clone();
    all.push(photo_ref(&changes[0], 9_000, &sha));
    assert_eq!(push(&server, &ana, &all).await, StatusCode::OK);
    let uri = format!("/v1/media/{sha}");
    let mut offset = 0;
    while offset < hostile.len() {
        let end = (offset + (1 << 20)).min(hostile.len());
        let a = call(
            &server,
            Method::PATCH,
            &uri,
            Some(&ana),
            &chunk_headers(offset, hostile.len()),
            hostile[offset..end].to_vec(),
        )
        .await;
        assert!(a.status.is_success(), "{:?}", a.status);
        offset = end;
    }
    let served = call(&server, Method::GET, &uri, Some(&ana), &[], vec![]).await;
    assert_eq!(served.status, StatusCode::OK);
    assert!(
        !served.body.windows(4).any(|w| w == b"Exif"),
        "no EXIF in any served byte"
    );
    assert_eq!(
        served
            .body
            .windows(2)
            .filter(|w| w == &[0xFF, 0xD8])
            .count(),
        1,
        "one image, nothing after it"
    );
    assert!(served.body.len() < clean.len() * 2);
    // A chunk past the length it declared, and bytes that do not hash to their name.
    let named = hex(b"these are other bytes");
    assert_eq!(
        push(&server, &ana, &[photo_ref(&changes[0], 9_002, &named)]).await,
        StatusCode::OK
    );
    let uri = format!("/v1/media/{named}");
    let a = call(
        &server,
        Method::PATCH,
        &uri,
        Some(&ana),
        &chunk_headers(0, 4),
        b"12345".to_vec(),
    )
    .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    let a = call(
        &server,
        Method::PATCH,
        &uri,
        Some(&ana),
        &chunk_headers(0, 5),
        b"12345".to_vec(),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&a.body).contains("do not hash"));
    assert_eq!(
        call(&server, Method::HEAD, &uri, Some(&ana), &[], vec![])
            .await
            .status,
        StatusCode::NOT_FOUND,
        "nothing kept"
    );
    // And a photo that is not a photo is refused whole, nothing kept.
    let text = b"not a photo at all".to_vec();
    let sha = hex(&text);
    assert_eq!(
        push(&server, &ana, &[photo_ref(&changes[0], 9_001, &sha)]).await,
        StatusCode::OK
    );
    let uri = format!("/v1/media/{sha}");
    let a = call(
        &server,
        Method::PATCH,
        &uri,
        Some(&ana),
        &chunk_headers(0, text.len()),
        text.clone(),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        call(&server, Method::HEAD, &uri, Some(&ana), &[], vec![])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn one_device_cannot_hoard_unfinished_uploads_and_stale_ones_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let server = state(&dir.path().join("server"));
    let ana = register(&server).await;
    let (changes, _, _) =
        report_with_photo(&dir.path().join("ana"), 43.6534, -79.3841, "DSCN0010.jpg");
    assert_eq!(push(&server, &ana, &changes).await, StatusCode::OK);
    let shas: Vec<String> = (0..20)
        .map(|i| hex(format!("photo {i}").as_bytes()))
        .collect();
    let refs: Vec<Change> = shas
        .iter()
        .enumerate()
        .map(|(i, sha)| photo_ref(&changes[0], 9_000 + i as u64, sha))
        .collect();
    assert_eq!(push(&server, &ana, &refs).await, StatusCode::OK);
    let mut refused = None;
    for (i, sha) in shas.iter().enumerate() {
        let a = call(
            &server,
            Method::PATCH,
            &format!("/v1/media/{sha}"),
            Some(&ana),
            &chunk_headers(0, 1_000_000),
            vec![0; 10],
        )
        .await;
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(a.headers.contains_key("retry-after"));
            refused = Some(i);
            break;
        }
        assert_eq!(a.status, StatusCode::NO_CONTENT);
    }
    assert_eq!(refused, Some(curbside_server::media::MAX_PARTS));
    let swept = curbside_server::media::sweep_parts(
        &server,
        std::time::SystemTime::now() + std::time::Duration::from_secs(1),
    );
    assert_eq!(swept, curbside_server::media::MAX_PARTS);
    let head = call(
        &server,
        Method::HEAD,
        &format!("/v1/media/{}", shas[0]),
        Some(&ana),
        &[],
        vec![],
    )
    .await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
    let a = call(
        &server,
        Method::PATCH,
        &format!("/v1/media/{}", shas[19]),
        Some(&ana),
        &chunk_headers(0, 1_000_000),
        vec![0; 10],
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "room again");
}

/// Sends `bytes` whole as `token`'s upload of the photo named by their hash; the last status.
async fn upload(state: &Arc<AppState>, token: &str, bytes: &[u8]) -> StatusCode {
    let uri = format!("/v1/media/{}", hex(bytes));
    call(
        state,
        Method::PATCH,
        &uri,
        Some(token),
        &chunk_headers(0, bytes.len()),
        bytes.to_vec(),
    )
    .await
    .status
}

/// A photo's hash travels in the public view; knowing it must open nothing. A device that
/// refers to someone else's photo from its own request sees it only once it has sent the bytes
/// itself, and a photo its reporter removed is shown to no one through her request.
#[tokio::test]
async fn a_known_hash_opens_nothing_and_a_removed_photo_closes() {
    let dir = tempfile::tempdir().unwrap();
    let server = state(&dir.path().join("server"));
    let (ana, ben, carl) = (
        register(&server).await,
        register(&server).await,
        register(&server).await,
    );
    let (anas, jpeg, sha) =
        report_with_photo(&dir.path().join("ana"), 43.6534, -79.3841, "DSCN0010.jpg");
    assert_eq!(push(&server, &ana, &anas).await, StatusCode::OK);
    assert_eq!(upload(&server, &ana, &jpeg).await, StatusCode::CREATED);
    let uri = format!("/v1/media/{sha}");

    // Ben, far away, refers to her photo from his own request: still nothing to see.
    let (bens, _, _) =
        report_with_photo(&dir.path().join("ben"), 43.7700, -79.2000, "DSCN0012.jpg");
    let mut claim = bens.clone();
    claim.push(photo_ref(&bens[0], 9_000, &sha));
    assert_eq!(push(&server, &ben, &claim).await, StatusCode::OK);
    for method in [Method::GET, Method::HEAD] {
        let a = call(&server, method.clone(), &uri, Some(&ben), &[], vec![]).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{method}");
    }
    // "Done already" is not an answer he gets without the bytes.
    let mut wrong = jpeg.clone();
    wrong[100] ^= 0xFF;
    let a = call(
        &server,
        Method::PATCH,
        &uri,
        Some(&ben),
        &chunk_headers(0, wrong.len()),
        wrong,
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        call(&server, Method::GET, &uri, Some(&ben), &[], vec![])
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Carl reports beside Ana and sees her photo; once she removes it, he no longer does.
    let (carls, _, _) =
        report_with_photo(&dir.path().join("carl"), 43.6536, -79.3841, "DSCN0021.jpg");
    assert_eq!(push(&server, &carl, &carls).await, StatusCode::OK);
    assert_eq!(
        call(&server, Method::GET, &uri, Some(&carl), &[], vec![])
            .await
            .status,
        StatusCode::OK
    );
    let removed = Change {
        value: FieldValue::PhotoRemove(sha.clone()),
        ..photo_ref(&anas[0], 9_001, &sha)
    };
    assert_eq!(push(&server, &ana, &[removed]).await, StatusCode::OK);
    assert_eq!(
        call(&server, Method::GET, &uri, Some(&carl), &[], vec![])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

/// A small JPEG whose header claims 20,000 × 20,000 pixels is refused before it is decoded:
/// the server never allocates for what a file claims beyond its limits.
#[tokio::test]
async fn a_photo_that_claims_to_be_huge_is_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let server = state(&dir.path().join("server"));
    let ana = register(&server).await;
    let (anas, jpeg, _) =
        report_with_photo(&dir.path().join("ana"), 43.6534, -79.3841, "DSCN0010.jpg");
    // The frame header (SOF0 or SOF2): marker, length, precision, then height and width.
    let mut bomb = jpeg.clone();
    let sof = bomb
        .windows(2)
        .position(|w| w == [0xFF, 0xC0] || w == [0xFF, 0xC2])
        .expect("a frame header");
    bomb[sof + 5..sof + 9].copy_from_slice(&[0x4E, 0x20, 0x4E, 0x20]);
    let mut all = anas.clone();
    all.push(photo_ref(&anas[0], 9_000, &hex(&bomb)));
    assert_eq!(push(&server, &ana, &all).await, StatusCode::OK);
    let uri = format!("/v1/media/{}", hex(&bomb));
    let a = call(
        &server,
        Method::PATCH,
        &uri,
        Some(&ana),
        &chunk_headers(0, bomb.len()),
        bomb,
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let text = String::from_utf8_lossy(&a.body);
    assert!(text.contains("MP"), "{text}");
    assert_eq!(
        call(&server, Method::GET, &uri, Some(&ana), &[], vec![])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}
