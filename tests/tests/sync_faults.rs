//! Sync under the faults real devices bring: a phone whose clock runs a day ahead, a device
//! offline past the server's retention, the server going away mid-sync, and hostile bodies.
//! One test per file section; they share nothing but the helpers (the wrong clock is per
//! process, so these run one after another in one test).

use std::io::Write;
use std::time::Duration;

use curbside_core::sync::protocol::{RegisterBody, Role};
use std::sync::Arc;

use curbside_core::{
    Clock, DraftEdit, Error, Field, FieldValue, Location, LocationSource, Options, RequestId,
    RetryPolicy, SkewedClock, State, Store, SyncOptions, SystemClock,
};
use curbside_e2e::{options, seed_requests, start_server, ADMIN, CHANGES_PER_REQUEST};

const DAY_MS: i64 = 86_400_000;

fn inspector(store: &Store, server: &str) {
    inspector_of(store, server, vec!["10".into()]);
}

fn inspector_of(store: &Store, server: &str, wards: Vec<String>) {
    store
        .register(
            server,
            &RegisterBody {
                role: Some(Role::Inspector),
                wards,
                admin_key: Some(ADMIN.into()),
            },
        )
        .unwrap();
}

/// An inspector of every ward: edits move seeded requests to the ward their location is in.
fn city_wide_inspector(store: &Store, server: &str) {
    inspector_of(store, server, (1..=25).map(|w| w.to_string()).collect());
}

fn pothole(store: &Store) -> String {
    let id = store
        .create_draft(
            "CSROWR-12",
            &DraftEdit {
                description: Some("Pothole in the bike lane".into()),
                attributes: vec![("SIZE".into(), vec!["large".into()])],
                location: Some(Some(
                    Location::new(43.6450, -79.3950, Some(6.0), LocationSource::Gps).unwrap(),
                )),
                ..DraftEdit::default()
            },
        )
        .unwrap();
    store.submit_draft(&id).unwrap();
    id
}

fn sync(store: &Store) -> curbside_core::SyncReport {
    store.sync(&options(), &mut |_| {}).unwrap()
}

#[test]
fn faults() {
    a_phone_a_day_ahead_does_not_win_every_race();
    a_device_offline_past_the_retention_resyncs_in_full();
    a_resync_over_many_pages_brings_back_the_devices_own_changes();
    an_unreachable_server_fails_fast_and_loses_nothing();
    hostile_bodies_get_clear_errors_and_change_nothing();
}

fn a_phone_a_day_ahead_does_not_win_every_race() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), 180);
    let resident = Store::open(dir.path().join("r.db")).unwrap();
    // The fast phone's clock is right until it is not.
    let fast_clock = Arc::new(SkewedClock::new(0));
    let fast = Store::open_with_options(
        dir.path().join("fast.db"),
        Options {
            clock: fast_clock.clone(),
            ..Options::default()
        },
    )
    .unwrap();
    let good = Store::open(dir.path().join("good.db")).unwrap();
    resident
        .register(&server.url(), &RegisterBody::default())
        .unwrap();
    inspector(&fast, &server.url());
    inspector(&good, &server.url());
    let id = pothole(&resident);
    sync(&resident);
    sync(&fast);
    sync(&good);

    // The fast phone closes the request first, in real time, offline, its clock a day ahead.
    fast_clock.set_skew(DAY_MS);
    fast.set_status(&id, State::Completed, Some("filled"))
        .unwrap();
    fast_clock.set_skew(0);
    std::thread::sleep(Duration::from_millis(20));
    // Later, the other inspector reopens it as in progress, and syncs first.
    good.set_status(&id, State::InProgress, Some("crew on the way"))
        .unwrap();
    sync(&good);
    // The fast phone syncs: the server refuses its stamps, it re-stamps and pushes.
    fast_clock.set_skew(DAY_MS);
    let report = sync(&fast);
    fast_clock.set_skew(0);
    assert_eq!(report.restamped, 2, "the status and its note: {report:?}");
    assert_eq!(report.pushed, 2);
    sync(&good);
    sync(&resident);

    // The later edit in real time wins everywhere, and both are flagged for review.
    for store in [&fast, &good] {
        let doc = store.request(&id).unwrap();
        assert_eq!(doc.fields[&Field::Status].to_string(), "\"in_progress\"");
        let statuses: Vec<_> = doc
            .history
            .iter()
            .filter(|h| h.change.field() == Field::Status)
            .collect();
        assert_eq!(statuses.len(), 2);
        assert!(statuses.iter().all(|h| h.conflict), "both flagged");
        // No stamp from the future is left anywhere.
        assert!(doc
            .history
            .iter()
            .all(|h| (h.change.hlc.ms() as i64) < SystemClock.now_ms() + 60_000));
    }
    assert_eq!(resident.draft(&id).unwrap().state, State::InProgress);
    // The fast phone's later stamps are corrected too.
    fast_clock.set_skew(DAY_MS);
    fast.add_note(&id, "checked again", true).unwrap();
    fast_clock.set_skew(0);
    let last = fast
        .request(&id)
        .unwrap()
        .history
        .last()
        .unwrap()
        .change
        .clone();
    assert_eq!(last.field(), Field::Note);
    assert!((last.hlc.ms() as i64 - SystemClock.now_ms()).abs() < 60_000);
    assert_eq!(sync(&fast).pushed, 1);
}

fn a_device_offline_past_the_retention_resyncs_in_full() {
    let dir = tempfile::tempdir().unwrap();
    // Compacted with a retention of zero days: everything overwritten goes at once.
    let server = start_server(dir.path(), 180);
    let resident = Store::open(dir.path().join("r.db")).unwrap();
    let city = Store::open(dir.path().join("city.db")).unwrap();
    resident
        .register(&server.url(), &RegisterBody::default())
        .unwrap();
    inspector(&city, &server.url());
    let id = pothole(&resident);
    sync(&resident);
    sync(&city);
    // While the resident is away, the status changes twice; the first is overwritten.
    city.set_status(&id, State::InProgress, Some("crew booked"))
        .unwrap();
    city.set_status(&id, State::Scheduled, Some("Tuesday"))
        .unwrap();
    city.add_note(&id, "truck 12", false).unwrap();
    sync(&city);
    std::thread::sleep(Duration::from_millis(5));
    let compacted = curbside_server::compact(&server.state, 0).unwrap();
    assert_eq!(compacted, 1, "the overwritten status");

    // A note the resident wrote offline survives the resync and reaches the server.
    resident
        .add_note(&id, "it is getting deeper", true)
        .unwrap();
    let report = sync(&resident);
    assert!(report.full_resync, "{report:?}");
    let draft = resident.draft(&id).unwrap();
    assert_eq!(draft.state, State::Scheduled);
    assert_eq!(draft.status_notes.as_deref(), Some("Tuesday"));
    sync(&city);
    let truth =
        curbside_core::sync::document(&server.db(), &RequestId::parse(&id).unwrap()).unwrap();
    assert_eq!(city.request(&id).unwrap().fields, truth.fields);
    assert_eq!(resident.request(&id).unwrap().fields, truth.fields);
    assert!(truth.notes.iter().any(|n| n.text == "it is getting deeper"));
    // The resident's copy holds no overwritten value and no internal note.
    let theirs = resident.request(&id).unwrap();
    assert!(!theirs.history.iter().any(|h| match &h.change.value {
        FieldValue::Status(s) => *s == curbside_core::Status::InProgress,
        FieldValue::Note(n) => n.text == "truck 12",
        _ => false,
    }));
}

/// More than a page of the log: pages are fetched while the last is applied, and a full
/// resync must not leave out this device's own changes on the pages after the first.
fn a_resync_over_many_pages_brings_back_the_devices_own_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), 180);
    // More than a page's worth of changes (PAGE).
    let seeded = curbside_core::sync::protocol::PAGE / CHANGES_PER_REQUEST + 100;
    let base = SystemClock.now_ms() as u64 - DAY_MS as u64;
    let ids = seed_requests(&server, seeded, "5eed5eed5eed5eed", base);
    let (a, b) = (
        Store::open(dir.path().join("a.db")).unwrap(),
        Store::open(dir.path().join("b.db")).unwrap(),
    );
    city_wide_inspector(&a, &server.url());
    let first = sync(&a);
    assert_eq!(first.pulled as usize, seeded * CHANGES_PER_REQUEST);
    assert!(first.rounds >= 2, "{first:?}");
    // A's own edits land after the seeded changes: on the second page of any full pull.
    for id in &ids[..5] {
        a.set_status(id, State::Completed, Some("filled")).unwrap();
    }
    assert_eq!(sync(&a).pushed, 10);
    // B overwrites a status A has not seen; compacting it expires A's cursor.
    city_wide_inspector(&b, &server.url());
    sync(&b);
    b.set_status(&ids[seeded - 1], State::Scheduled, None)
        .unwrap();
    b.set_status(&ids[seeded - 1], State::InProgress, None)
        .unwrap();
    sync(&b);
    std::thread::sleep(Duration::from_millis(5));
    assert!(curbside_server::compact(&server.state, 0).unwrap() >= 1);

    // The resync is cut off after its first page (the phone goes into a tunnel) and resumed.
    let cancel = curbside_core::CancelToken::new();
    let cut = SyncOptions {
        cancel: cancel.clone(),
        ..options()
    };
    let stopped = a.sync(&cut, &mut |p| {
        if p.pulled_changes > 0 {
            cancel.cancel();
        }
    });
    assert!(matches!(stopped, Err(Error::Cancelled)), "{stopped:?}");
    let report = sync(&a);
    assert!(report.pulled > 0, "{report:?}");
    let server_db = server.db();
    for id in [&ids[0], &ids[4], &ids[seeded - 1]] {
        let truth =
            curbside_core::sync::document(&server_db, &RequestId::parse(id).unwrap()).unwrap();
        let mine = a.request(id).unwrap();
        assert_eq!(mine.fields, truth.fields, "{id}");
        assert_eq!(mine.history, truth.history, "{id}");
    }
    assert_eq!(
        a.request(&ids[0]).unwrap().fields[&Field::Status].to_string(),
        "\"completed\""
    );
}

fn an_unreachable_server_fails_fast_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), 180);
    let phone = Store::open(dir.path().join("p.db")).unwrap();
    phone
        .register(&server.url(), &RegisterBody::default())
        .unwrap();
    drop(server); // the server goes away (the runtime and its listener with it)
    let id = pothole(&phone);
    let started = std::time::Instant::now();
    let options = SyncOptions {
        retry: RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(100),
            timeout: Duration::from_secs(2),
        },
        ..SyncOptions::default()
    };
    let err = phone.sync(&options, &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::Network(_)), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no long loop offline"
    );
    // Cancelled before it starts: returns at once.
    let cancelled = SyncOptions::default();
    cancelled.cancel.cancel();
    assert!(matches!(
        phone.sync(&cancelled, &mut |_| {}),
        Err(Error::Cancelled)
    ));
    // Nothing was lost: the request is still waiting, whole.
    assert_eq!(phone.pending_changes().unwrap(), 4);
    assert_eq!(phone.draft(&id).unwrap().state, State::Sent);
}

fn hostile_bodies_get_clear_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), 180);
    let phone = Store::open(dir.path().join("p.db")).unwrap();
    phone
        .register(&server.url(), &RegisterBody::default())
        .unwrap();
    pothole(&phone);
    sync(&phone);
    let before: i64 = server
        .db()
        .query_row("SELECT count(*) FROM sync_changes", [], |r| r.get(0))
        .unwrap();
    let token: String = rusqlite::Connection::open(dir.path().join("p.db"))
        .unwrap()
        .query_row("SELECT value FROM meta WHERE key = 'sync_token'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let post = |body: Vec<u8>, gzip: bool, token: &str| -> (u16, String) {
        let mut s = std::net::TcpStream::connect(server.addr).unwrap();
        let enc = if gzip {
            "Content-Encoding: gzip\r\n"
        } else {
            ""
        };
        write!(
            s,
            "POST /v1/sync HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\n{enc}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        // The server may answer a huge body before it has read it all, and close: the rest
        // of the write then fails, which is the point.
        let _ = s.write_all(&body);
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut s, &mut out);
        let out = String::from_utf8_lossy(&out).into_owned();
        assert!(out.len() >= 12, "no answer: {out:?}");
        let status = out[9..12].parse().unwrap();
        (status, out)
    };
    let change = |field: &str, value: &str, hlc: u64| {
        format!(
            r#"{{"changes":[{{"id":"x:1","request_id":"0190f3a0-0000-7000-8000-00000000000a","field":"{field}","value":{value},"hlc":{hlc},"replica":"x"}}]}}"#
        )
        .into_bytes()
    };
    let now_hlc = (SystemClock.now_ms() as u64) << 16;
    let gzip = |bytes: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    };
    let whole = gzip(br#"{"changes":[]}"#);
    let truncated_gzip = whole[..whole.len() - 6].to_vec();
    // 64 MB of spaces in about 64 KB: read no further than the sync body's limit.
    let bomb = gzip(&vec![b' '; 64 << 20]);
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes();
    let mut invalid_utf8 = change("description", "\"ok\"", now_hlc);
    let at = invalid_utf8.windows(2).position(|w| w == b"ok").unwrap();
    invalid_utf8[at] = 0xFF;
    // A second device, revoked: its token no longer counts.
    let revoked = {
        let other = Store::open(dir.path().join("revoked.db")).unwrap();
        let r = other
            .register(&server.url(), &RegisterBody::default())
            .unwrap();
        assert!(server.state.storage.revoke_device(&r.device_id, 0).unwrap());
        rusqlite::Connection::open(dir.path().join("revoked.db"))
            .unwrap()
            .query_row("SELECT value FROM meta WHERE key = 'sync_token'", [], |r| {
                r.get::<_, String>(0)
            })
            .unwrap()
    };
    let cases: Vec<(&str, Vec<u8>, bool, &str, u16)> = vec![
        ("truncated gzip", truncated_gzip, true, &token, 400),
        ("a gzip bomb", bomb, true, &token, 413),
        ("deeply nested JSON", deep, false, &token, 400),
        ("invalid UTF-8", invalid_utf8, false, &token, 400),
        (
            "stamped in 1970",
            change("description", "\"x\"", 1 << 16),
            false,
            &token,
            400,
        ),
        ("a revoked token", b"{}".to_vec(), false, &revoked, 401),
        (
            "truncated JSON",
            b"{\"changes\":[{\"id\"".to_vec(),
            false,
            &token,
            400,
        ),
        (
            "corrupt gzip",
            b"\x1f\x8b\x08\x00garbage".to_vec(),
            true,
            &token,
            400,
        ),
        (
            "unknown field",
            change("colour", "\"red\"", now_hlc),
            false,
            &token,
            400,
        ),
        (
            "wrong type",
            change("description", "42", now_hlc),
            false,
            &token,
            400,
        ),
        (
            "a day ahead",
            change("description", "\"x\"", now_hlc + ((DAY_MS as u64) << 16)),
            false,
            &token,
            422,
        ),
        (
            "no create first",
            change("description", "\"x\"", now_hlc),
            false,
            &token,
            404,
        ),
        (
            "another device's token",
            change("description", "\"x\"", now_hlc),
            false,
            "not-a-token",
            401,
        ),
        (
            "a foreign cursor",
            br#"{"cursor":"elsewhere:5"}"#.to_vec(),
            false,
            &token,
            409,
        ),
        (
            "a malformed cursor",
            br#"{"cursor":"nonsense"}"#.to_vec(),
            false,
            &token,
            400,
        ),
    ];
    for (what, body, gzipped, token, expected) in cases {
        let (status, text) = post(body, gzipped, token);
        assert_eq!(status, expected, "{what}: {text}");
        assert!(
            text.contains("\"description\""),
            "{what}: an Open311 error array: {text}"
        );
    }
    let huge = vec![b' '; 20 << 20];
    let (status, _) = post(huge, false, &token);
    assert_eq!(status, 413, "a huge body");
    let after: i64 = server
        .db()
        .query_row("SELECT count(*) FROM sync_changes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(before, after, "nothing was applied");
}
