//! A real server on 127.0.0.1:0 and three real client stores (two residents, one inspector),
//! each editing offline and syncing in random orders, one of them through a proxy that drops
//! the server's answer to a push. At the end every client and the server hold the same
//! requests, statuses, notes and histories (a resident without internal notes), and the server
//! holds exactly one request per request a client made.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use curbside_core::sync::protocol::{RegisterBody, Role};
use curbside_core::sync::{Change, Document};
use curbside_core::vocab::ReplicaId;
use curbside_core::{DraftEdit, Location, LocationSource, State, Store, SyncReport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use curbside_e2e::{options, start_server, Server, ADMIN};

/// A TCP proxy in front of the server that, when armed, lets one `POST /v1/sync` reach the
/// server and then cuts the connection instead of passing the answer back.
struct Proxy {
    addr: SocketAddr,
    armed: Arc<AtomicBool>,
    dropped: Arc<AtomicUsize>,
}

fn start_proxy(server: &Server) -> Proxy {
    let listener = server
        .runtime
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (armed, dropped) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (a, d, upstream) = (armed.clone(), dropped.clone(), server.addr);
    server.runtime.spawn(async move {
        loop {
            let (client, _) = listener.accept().await.unwrap();
            let (a, d) = (a.clone(), d.clone());
            tokio::spawn(async move {
                let server = TcpStream::connect(upstream).await.unwrap();
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let saw_sync = Arc::new(AtomicBool::new(false));
                let seen = saw_sync.clone();
                let up = tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 << 10];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if buf[..n].windows(13).any(|w| w == b"POST /v1/sync") {
                            seen.store(true, Ordering::SeqCst);
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = match sr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if saw_sync.swap(false, Ordering::SeqCst) && a.swap(false, Ordering::SeqCst) {
                        // The server has committed the push; its answer never arrives.
                        d.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                up.abort();
            });
        }
    });
    Proxy {
        addr,
        armed,
        dropped,
    }
}

fn sync(store: &Store) -> SyncReport {
    store.sync(&options(), &mut |_| {}).unwrap()
}

fn report(store: &Store, lat: f64, lon: f64, text: &str) -> String {
    let id = store
        .create_draft(
            "CSROWR-12",
            &DraftEdit {
                description: Some(text.into()),
                attributes: vec![("SIZE".into(), vec!["large".into()])],
                location: Some(Some(
                    Location::new(lat, lon, Some(8.0), LocationSource::Gps).unwrap(),
                )),
                ..DraftEdit::default()
            },
        )
        .unwrap();
    store.submit_draft(&id).unwrap();
    id
}

/// The server's own view of a request, read from its SQLite file with the core's merge code.
fn server_doc(server: &Server, id: &str) -> Document {
    let conn = rusqlite::Connection::open(server.data.join("curbside-server.sqlite")).unwrap();
    curbside_core::sync::document(&conn, &curbside_core::RequestId::parse(id).unwrap()).unwrap()
}

fn changes(doc: &Document) -> Vec<Change> {
    doc.history.iter().map(|h| h.change.clone()).collect()
}

/// Changes as a resident receives them: every other writer's replica id is a pseudonym, so
/// only the resident's own ids can be compared with the server's.
fn as_resident(changes: &[Change], own: &ReplicaId) -> Vec<String> {
    changes
        .iter()
        .map(|c| {
            let id = if &c.id.replica == own {
                c.id.to_string()
            } else {
                "another".into()
            };
            format!("{id} {:?} {:?} {:?}", c.hlc, c.value, c.replaced)
        })
        .collect()
}

/// The reporter's replica: the one that made the creation.
fn reporter(doc: &Document) -> ReplicaId {
    doc.history
        .iter()
        .find(|h| h.change.field() == curbside_core::Field::Create)
        .map(|h| h.change.id.replica.clone())
        .expect("a creation")
}

fn internal(c: &Change) -> bool {
    c.value.is_internal_note()
}

#[test]
fn three_clients_converge_through_random_orders_and_a_dropped_answer() {
    for seed in [0x5EED_0311, 7, 2026] {
        scenario(seed);
    }
}

fn scenario(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), 180);
    let proxy = start_proxy(&server);
    let direct = format!("http://{}", server.addr);
    let via_proxy = format!("http://{}", proxy.addr);

    // Spadina-Fort York (ward 10): both residents report around King and Spadina.
    let ward = "10";
    let ana = Store::open(dir.path().join("ana.db")).unwrap();
    let ben = Store::open(dir.path().join("ben.db")).unwrap();
    let ivy = Store::open(dir.path().join("ivy.db")).unwrap();
    ana.register(&via_proxy, &RegisterBody::default()).unwrap();
    ben.register(&direct, &RegisterBody::default()).unwrap();
    let r = ivy
        .register(
            &direct,
            &RegisterBody {
                role: Some(Role::Inspector),
                wards: vec![ward.into()],
                admin_key: Some(ADMIN.into()),
            },
        )
        .unwrap();
    assert_eq!(r.role, Role::Inspector);

    // Offline: residents write reports; one has a photo.
    let mut mine: Vec<(String, &Store)> = Vec::new();
    for i in 0..3 {
        let id = report(
            &ana,
            43.6450 + i as f64 * 0.0004,
            -79.3950,
            &format!("ana #{i}"),
        );
        mine.push((id, &ana));
    }
    let photo = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/photos/gps/DSCN0021.jpg"
    ))
    .unwrap();
    let with_photo = ana
        .create_draft(
            "CSROWR-12",
            &DraftEdit {
                description: Some("ana with photo".into()),
                attributes: vec![("SIZE".into(), vec!["medium".into()])],
                location: Some(Some(
                    Location::new(43.6452, -79.3952, Some(5.0), LocationSource::Gps).unwrap(),
                )),
                ..DraftEdit::default()
            },
        )
        .unwrap();
    let attached = ana.attach_photo(&with_photo, &photo).unwrap();
    ana.submit_draft(&with_photo).unwrap();
    mine.push((with_photo.clone(), &ana));
    for i in 0..2 {
        let id = report(
            &ben,
            43.6451 + i as f64 * 0.0003,
            -79.3949,
            &format!("ben #{i}"),
        );
        mine.push((id, &ben));
    }
    // A draft that is never submitted must never leave Ben's phone.
    let private_draft = ben
        .create_draft(
            "CSROWR-12",
            &DraftEdit {
                description: Some("not sent".into()),
                ..DraftEdit::default()
            },
        )
        .unwrap();

    // Ana's first push is committed by the server and its answer dropped; she retries.
    proxy.armed.store(true, Ordering::SeqCst);
    let first = sync(&ana);
    assert_eq!(
        proxy.dropped.load(Ordering::SeqCst),
        1,
        "the answer was dropped"
    );
    assert_eq!(first.photos_uploaded, 1);
    assert_eq!(ana.pending_changes().unwrap(), 0);

    fastrand::seed(seed);
    let clients = [&ana, &ben, &ivy];
    for round in 0..4 {
        // Random order of syncs, with offline edits in between.
        let mut order = clients.to_vec();
        fastrand::shuffle(&mut order);
        for c in order {
            sync(c);
            if std::ptr::eq(c, &ivy) {
                for id in ivy.replicated_requests().unwrap() {
                    if fastrand::bool() {
                        let status = [State::InProgress, State::Scheduled, State::Completed]
                            [fastrand::usize(0..3)];
                        ivy.set_status(&id, status, Some(&format!("round {round}: {status}")))
                            .unwrap();
                    }
                    if fastrand::u8(0..4) == 0 {
                        ivy.add_note(&id, &format!("crew note {round}"), false)
                            .unwrap();
                        ivy.assign(&id, Some("Roads crew 4")).unwrap();
                        ivy.set_priority(&id, Some("high")).unwrap();
                    }
                }
            } else {
                let own: Vec<&String> = mine
                    .iter()
                    .filter(|(_, s)| std::ptr::eq(*s, c))
                    .map(|(id, _)| id)
                    .collect();
                let id = own[fastrand::usize(0..own.len())];
                c.add_note(id, &format!("still there, round {round}"), true)
                    .unwrap();
            }
        }
        if round == 1 {
            // A second dropped answer, this time on a pull-only round trip.
            proxy.armed.store(true, Ordering::SeqCst);
        }
    }
    // Full exchange: everyone syncs until nothing moves.
    for _ in 0..2 {
        for c in clients {
            sync(c);
        }
    }
    assert_eq!(proxy.dropped.load(Ordering::SeqCst), 2);

    // Exactly one server request per client request, and the draft never left.
    let conn = rusqlite::Connection::open(server.data.join("curbside-server.sqlite")).unwrap();
    let on_server: i64 = conn
        .query_row("SELECT count(*) FROM requests", [], |r| r.get(0))
        .unwrap();
    assert_eq!(on_server as usize, mine.len());
    let leaked: i64 = conn
        .query_row(
            "SELECT count(*) FROM sync_change_rows WHERE request_id = ?1",
            [&private_draft],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(leaked, 0, "a draft never leaves the device");

    for (id, owner) in &mine {
        let truth = server_doc(&server, id);
        // The inspector holds everything the server holds.
        assert_eq!(ivy.request(id).unwrap(), truth, "inspector's copy of {id}");
        // The reporter holds the same, without internal notes.
        let theirs = owner.request(id).unwrap();
        let public: Vec<Change> = changes(&truth)
            .into_iter()
            .filter(|c| !internal(c))
            .collect();
        assert_eq!(
            as_resident(&changes(&theirs), &reporter(&truth)),
            as_resident(&public, &reporter(&truth)),
            "reporter's history of {id}"
        );
        assert_eq!(theirs.fields, truth.fields, "reporter's fields of {id}");
        // And the reporter's app shows the city's number, status and note.
        let draft = owner.draft(id).unwrap();
        assert_eq!(
            draft.service_request_id.as_deref(),
            truth.service_request_id()
        );
        let status = truth.status().unwrap_or(curbside_core::Status::Accepted);
        assert_eq!(draft.state, status.into(), "state of {id}");
        if status != curbside_core::Status::Accepted {
            let note = truth
                .notes
                .iter()
                .rev()
                .find(|n| n.status == Some(status))
                .map(|n| n.text.as_str());
            assert_eq!(draft.status_notes.as_deref(), note);
        }
    }
    // Numbers are distinct.
    let mut numbers: Vec<String> = mine
        .iter()
        .map(|(id, s)| s.draft(id).unwrap().service_request_id.unwrap())
        .collect();
    numbers.sort();
    numbers.dedup();
    assert_eq!(numbers.len(), mine.len());

    // Ben sees Ana's open reports nearby (public view) for duplicate detection, and none of
    // their private parts.
    let near = Location::new(43.6450, -79.3950, Some(5.0), LocationSource::Gps).unwrap();
    let hits = ben.nearby("CSROWR-12", &near, None).unwrap();
    let ana_ids: Vec<&String> = mine
        .iter()
        .filter(|(_, s)| std::ptr::eq(*s, &ana))
        .map(|(id, _)| id)
        .collect();
    let open_ana = ana_ids
        .iter()
        .filter(|id| ana.draft(id).unwrap().state.is_open())
        .count();
    assert!(
        hits.iter().filter(|h| ana_ids.contains(&&h.id)).count() >= open_ana.min(1),
        "Ben's duplicate check sees Ana's open reports: {hits:?}"
    );
    for id in &ana_ids {
        if let Ok(doc) = ben.request(id) {
            assert!(doc.history.iter().all(|h| !matches!(
                h.change.field(),
                curbside_core::Field::Contact
                    | curbside_core::Field::Assignee
                    | curbside_core::Field::Priority
            ) && !internal(&h.change)));
        }
    }

    // The photo reached the server once, and is kept as the server encoded it again from its
    // pixels: no metadata, the phone's size.
    let media = server
        .data
        .join("media")
        .join(format!("{}.jpg", attached.photo.sha256));
    let stored = std::fs::read(media).unwrap();
    assert!(stored.starts_with(&[0xFF, 0xD8]) && !stored.windows(4).any(|w| w == b"Exif"));
    let sent = ana.photo_jpeg(&attached.photo.sha256).unwrap();
    assert!(
        stored.len() < sent.len() * 2,
        "{} vs {}",
        stored.len(),
        sent.len()
    );
}
