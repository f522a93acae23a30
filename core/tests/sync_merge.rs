//! Merge rules under random histories: real SQLite replicas, random edits of every kind of field,
//! random delivery (subsets, duplicates, reordering, loss then retry), random restarts, skewed
//! clocks. After a full exchange every replica must hold the identical request and history.

use std::path::PathBuf;

use curbside_core::sync::log::Outbox;
use curbside_core::sync::{self, Change, Hlc, WireChange};
use curbside_core::{Error, Field, FieldValue, RequestId, Store};
use proptest::prelude::*;
use rusqlite::Connection;
use serde_json::{json, Value};

const REQUESTS: [&str; 3] = [
    "0190f3a0-0000-7000-8000-000000000001",
    "0190f3a0-0000-7000-8000-000000000002",
    "0190f3a0-0000-7000-8000-000000000003",
];
const BASE_MS: i64 = 1_800_000_000_000;

fn id(request: &str) -> RequestId {
    RequestId::parse(request).unwrap()
}

struct Replica {
    _dir: tempfile::TempDir,
    path: PathBuf,
    conn: Connection,
    skew_ms: i64,
    made: Vec<String>,
}

impl Replica {
    fn new(skew_ms: i64) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replica.db");
        drop(Store::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        Replica {
            _dir: dir,
            path,
            conn,
            skew_ms,
            made: Vec::new(),
        }
    }

    fn restart(&mut self) {
        self.conn = Connection::open(&self.path).unwrap();
    }

    fn edit(&mut self, request: &str, field: &str, value: Value, now: i64) -> Change {
        let tx = self.conn.transaction().unwrap();
        let value = FieldValue::decode(field, value).unwrap();
        let c = sync::log::record(
            &tx,
            id(request),
            vec![value],
            now + self.skew_ms,
            Outbox::Queued,
        )
        .unwrap()
        .remove(0);
        tx.commit().unwrap();
        self.made.push(c.id.to_string());
        c
    }

    fn apply(&mut self, changes: &[Change], now: i64) -> sync::ApplyReport {
        let tx = self.conn.transaction().unwrap();
        let report = sync::apply(&tx, changes, now + self.skew_ms).unwrap();
        tx.commit().unwrap();
        report
    }

    fn all(&self) -> Vec<Change> {
        sync::log::all_changes(&self.conn).unwrap()
    }

    fn doc(&self, request: &str) -> sync::Document {
        sync::document(&self.conn, &id(request)).unwrap()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Edit {
        replica: usize,
        request: usize,
        field: usize,
        value: u16,
    },
    Deliver {
        from: usize,
        to: usize,
        mask: u64,
        twice: bool,
        reverse: bool,
    },
    Restart {
        replica: usize,
    },
}

fn op(replicas: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..replicas, 0..REQUESTS.len(), 0..12usize, any::<u16>())
            .prop_map(|(replica, request, field, value)| Op::Edit { replica, request, field, value }),
        3 => (0..replicas, 0..replicas, any::<u64>(), any::<bool>(), any::<bool>())
            .prop_map(|(from, to, mask, twice, reverse)| Op::Deliver { from, to, mask, twice, reverse }),
        1 => (0..replicas).prop_map(|replica| Op::Restart { replica }),
    ]
}

/// An edit of field kind `k` with a value derived from `v`; `None` when it has nothing to act on
/// (retracting a note the replica has never seen).
fn edit_for(r: &Replica, request: &str, k: usize, v: u16) -> Option<(String, Value)> {
    let statuses = [
        "accepted",
        "in_progress",
        "scheduled",
        "completed",
        "cancelled",
    ];
    let priorities = ["low", "normal", "high", "urgent"];
    let sha = |v: u16| format!("{:064x}", v % 8);
    Some(match k {
        0 => ("description".into(), json!(format!("description {v}"))),
        1 => {
            let size = ["small", "medium", "large"][v as usize % 3];
            ("attr:SIZE".into(), json!([size]))
        }
        2 => (
            "location".into(),
            json!({"lat": 43.6 + v as f64 * 1e-5, "lon": -79.4, "accuracy_m": 5.0, "source": "gps"}),
        ),
        3 => (
            "status".into(),
            json!(statuses[v as usize % statuses.len()]),
        ),
        4 => (
            "priority".into(),
            json!(priorities[v as usize % priorities.len()]),
        ),
        5 => (
            "assignee".into(),
            if v.is_multiple_of(4) {
                Value::Null
            } else {
                json!(format!("crew-{}", v % 7))
            },
        ),
        6 => ("address".into(), json!(format!("{} Queen St W", v % 50))),
        7 => (
            "note".into(),
            json!({"id": format!("{}-{v}", r.skew_ms), "author": "inspector", "text": format!("note {v}"), "public": v.is_multiple_of(2)}),
        ),
        8 => {
            let doc = r.doc(request);
            let note = doc.notes.get(v as usize % doc.notes.len().max(1))?;
            ("note_retract".into(), json!({"id": note.id}))
        }
        9 => (
            "photo".into(),
            json!({"sha256": sha(v), "width": 1600, "height": 1200}),
        ),
        10 => ("photo_remove".into(), json!({"sha256": sha(v)})),
        _ => (
            "contact".into(),
            json!({"email": format!("r{v}@example.org")}),
        ),
    })
}

fn run(skews: Vec<i64>, ops: Vec<Op>) {
    let mut replicas: Vec<Replica> = skews.into_iter().map(Replica::new).collect();
    let mut now = BASE_MS;
    for op in ops {
        now += 7;
        match op {
            Op::Edit {
                replica,
                request,
                field,
                value,
            } => {
                let r = &mut replicas[replica];
                if let Some((f, v)) = edit_for(r, REQUESTS[request], field, value) {
                    r.edit(REQUESTS[request], &f, v, now);
                }
            }
            Op::Deliver {
                from,
                to,
                mask,
                twice,
                reverse,
            } => {
                // A lossy, reordering, duplicating network: some changes, in some order.
                let mut batch: Vec<Change> = replicas[from]
                    .all()
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| mask >> (i % 64) & 1 == 1)
                    .map(|(_, c)| c)
                    .collect();
                if reverse {
                    batch.reverse();
                }
                replicas[to].apply(&batch, now);
                if twice {
                    let again = replicas[to].apply(&batch, now);
                    assert_eq!(again.applied, 0, "a replayed batch is a no-op");
                }
            }
            Op::Restart { replica } => replicas[replica].restart(),
        }
    }
    // Full exchange, twice round (retries after the losses above).
    now += 1_000;
    for _ in 0..2 {
        for from in 0..replicas.len() {
            let batch = replicas[from].all();
            for (to, replica) in replicas.iter_mut().enumerate() {
                if to != from {
                    replica.apply(&batch, now);
                }
            }
        }
    }
    let made: Vec<String> = replicas.iter().flat_map(|r| r.made.clone()).collect();
    for request in REQUESTS {
        let first = replicas[0].doc(request);
        for (i, r) in replicas.iter().enumerate().skip(1) {
            assert_eq!(r.doc(request), first, "replica {i} differs on {request}");
        }
    }
    // The merge of changes in memory (materialising a request new to a replica) agrees with
    // the merge read back from the log.
    const FIELDS: [Field; 8] = [
        Field::Create,
        Field::Description,
        Field::Location,
        Field::Status,
        Field::Priority,
        Field::Assignee,
        Field::Address,
        Field::Contact,
    ];
    for r in &replicas {
        let all = r.all();
        for request in REQUESTS {
            let stored = sync::log::current(&r.conn, &id(request), &FIELDS).unwrap();
            let in_memory =
                sync::merge::current(all.iter().filter(|c| c.request_id == id(request)), &FIELDS);
            assert_eq!(in_memory, stored, "{request}");
        }
    }
    for r in &replicas {
        let held: std::collections::HashSet<String> =
            r.all().into_iter().map(|c| c.id.to_string()).collect();
        for id in &made {
            assert!(held.contains(id), "acknowledged change {id} is missing");
        }
    }
    // Idempotent: everything again changes nothing.
    let before: Vec<_> = REQUESTS.iter().map(|q| replicas[0].doc(q)).collect();
    let everything = replicas[1 % replicas.len()].all();
    assert_eq!(replicas[0].apply(&everything, now).applied, 0);
    let after: Vec<_> = REQUESTS.iter().map(|q| replicas[0].doc(q)).collect();
    assert_eq!(before, after);
    // Commutative and associative: a fresh replica fed the union backwards, in chunks, agrees.
    let mut fresh = Replica::new(0);
    let mut all = everything.clone();
    all.reverse();
    for chunk in all.chunks(3) {
        fresh.apply(chunk, now);
    }
    for (q, expected) in REQUESTS.iter().zip(&before) {
        assert_eq!(&fresh.doc(q), expected);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge_whatever_the_delivery(
        skews in prop::collection::vec(-60_000i64..60_000, 2..=6),
        ops in prop::collection::vec(op(6), 1..60),
    ) {
        let n = skews.len();
        let ops = ops.into_iter().map(|o| match o {
            Op::Edit { replica, request, field, value } => Op::Edit { replica: replica % n, request, field, value },
            Op::Deliver { from, to, mask, twice, reverse } => Op::Deliver { from: from % n, to: to % n, mask, twice, reverse },
            Op::Restart { replica } => Op::Restart { replica: replica % n },
        }).collect();
        run(skews, ops);
    }
}

#[test]
fn concurrent_writes_are_both_kept_and_flagged_sequential_ones_are_not() {
    let (mut a, mut b) = (Replica::new(0), Replica::new(0));
    let r = REQUESTS[0];
    let first = a.edit(r, "description", json!("Pothole"), BASE_MS);
    b.apply(&[first], BASE_MS);
    // Both change it without seeing the other's edit.
    let from_a = a.edit(r, "status", json!("in_progress"), BASE_MS + 10);
    let from_b = b.edit(r, "status", json!("completed"), BASE_MS + 20);
    a.apply(std::slice::from_ref(&from_b), BASE_MS + 30);
    b.apply(std::slice::from_ref(&from_a), BASE_MS + 30);
    let (da, db) = (a.doc(r), b.doc(r));
    assert_eq!(da, db);
    assert_eq!(
        da.fields[&Field::Status].to_json(),
        json!("completed"),
        "the later stamp wins"
    );
    let flagged: Vec<(String, bool, bool)> = da
        .history
        .iter()
        .filter(|h| h.change.field() == Field::Status)
        .map(|h| (h.change.value.to_string(), h.current, h.conflict))
        .collect();
    assert_eq!(
        flagged,
        [
            ("\"in_progress\"".to_string(), false, true),
            ("\"completed\"".to_string(), true, true)
        ],
        "both kept, both flagged"
    );
    // B then edits having seen everything: not a conflict.
    let seen = b.edit(r, "description", json!("Pothole, deep"), BASE_MS + 40);
    assert_eq!(seen.replaced, Some(da.history[0].change.hlc));
    a.apply(&[seen], BASE_MS + 50);
    assert!(!a
        .doc(r)
        .history
        .iter()
        .any(|h| h.change.field() == Field::Description && h.conflict));
}

#[test]
fn a_removal_beats_its_add_in_either_order() {
    let (mut a, mut b, mut c) = (Replica::new(0), Replica::new(0), Replica::new(0));
    let r = REQUESTS[1];
    let add = a.edit(
        r,
        "note",
        json!({"id": "n1", "author": "inspector", "text": "Crew sent", "public": true}),
        BASE_MS,
    );
    b.apply(std::slice::from_ref(&add), BASE_MS);
    let retract = b.edit(r, "note_retract", json!({"id": "n1"}), BASE_MS + 5);
    c.apply(std::slice::from_ref(&retract), BASE_MS + 10); // the removal arrives first
    assert!(c.doc(r).notes.is_empty());
    c.apply(&[add], BASE_MS + 20);
    a.apply(&[retract], BASE_MS + 20);
    assert!(a.doc(r).notes.is_empty() && c.doc(r).notes.is_empty());
    assert_eq!(a.doc(r), c.doc(r));
}

#[test]
fn bad_changes_are_refused_whole_and_change_nothing() {
    let mut a = Replica::new(0);
    let r = REQUESTS[2];
    let good = a.edit(r, "description", json!("ok"), BASE_MS);
    let mut b = Replica::new(0);
    let before = b.doc(r);
    let mk = |field: &str, value: Value, hlc: Hlc| WireChange {
        id: format!("x:{}", 100 + field.len()),
        request_id: r.into(),
        field: field.into(),
        value,
        hlc: hlc.0,
        replica: "x".into(),
        replaced: None,
    };
    let now = Hlc::new(BASE_MS as u64, 0);
    // What cannot be a change is refused as it is read, with the reason: a batch holding one
    // is refused whole.
    for (bad, expected) in [
        (mk("colour", json!("red"), now), "unknown field"),
        (mk("description", json!(42), now), "must be a string"),
        (mk("status", json!("lost"), now), "must be accepted"),
        (
            mk(
                "location",
                json!({"lat": f64::MAX, "lon": 0.0, "source": "gps"}),
                now,
            ),
            "latitude",
        ),
        (
            mk(
                "photo",
                json!({"sha256": "nothex", "width": 1, "height": 1}),
                now,
            ),
            "sha256",
        ),
        (
            WireChange {
                id: "x-without-a-counter".into(),
                ..mk("description", json!("x"), now)
            },
            "replica:counter",
        ),
        (
            WireChange {
                request_id: "not-a-uuid".into(),
                ..mk("description", json!("x"), now)
            },
            "UUID",
        ),
    ] {
        let m = Change::try_from(bad.clone()).unwrap_err().to_string();
        assert!(m.contains(expected), "{m} should say {expected:?}");
        let batch = serde_json::to_value([good.to_wire(), bad]).unwrap();
        assert!(serde_json::from_value::<Vec<Change>>(batch).is_err());
    }
    // A well-formed change stamped far ahead is refused when applied, with the whole batch.
    let ahead = Change::try_from(mk(
        "description",
        json!("x"),
        Hlc::new(BASE_MS as u64 + 86_400_000, 0),
    ))
    .unwrap();
    let tx = b.conn.transaction().unwrap();
    match sync::apply(&tx, &[good.clone(), ahead], BASE_MS) {
        Err(Error::Change(e)) => assert!(e.to_string().contains("in the future"), "{e}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    drop(tx);
    assert_eq!(b.doc(r), before, "nothing of the batch was applied");
}

#[test]
fn local_edits_write_their_changes_in_the_same_transaction() {
    use curbside_core::{Contact, DraftEdit, Location, LocationSource};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("local.db");
    let store = Store::open(&path).unwrap();
    let id = store
        .create_draft(
            "CSROWR-12",
            &DraftEdit {
                description: Some("Pothole".into()),
                attributes: vec![("SIZE".into(), vec!["large".into()])],
                location: Some(Some(
                    Location::new(43.65, -79.38, Some(5.0), LocationSource::Gps).unwrap(),
                )),
                contact: Some(Contact {
                    email: Some("me@example.org".into()),
                    ..Contact::default()
                }),
                ..DraftEdit::default()
            },
        )
        .unwrap();
    store
        .edit_draft(
            &id,
            &DraftEdit {
                description: Some("Deep pothole".into()),
                anonymous: Some(true),
                ..DraftEdit::default()
            },
        )
        .unwrap();
    // A refused edit writes no change either.
    assert!(store
        .edit_draft(
            &id,
            &DraftEdit {
                description: Some("x".repeat(5000)),
                ..DraftEdit::default()
            }
        )
        .is_err());
    let conn = Connection::open(&path).unwrap();
    let request = RequestId::parse(&id).unwrap();
    let doc = sync::document(&conn, &request).unwrap();
    let json = |f: Field| doc.fields[&f].to_json();
    assert_eq!(json(Field::Create)["service_code"], "CSROWR-12");
    assert_eq!(json(Field::Description), "Deep pothole");
    assert_eq!(json(Field::Attribute("SIZE".into())), json!(["large"]));
    assert_eq!(json(Field::Location)["lat"], 43.65);
    assert_eq!(
        json(Field::Contact),
        json!({}),
        "an anonymous report replicates no contact"
    );
    assert_eq!(doc.history.len(), 7);
    assert!(
        doc.history.iter().all(|h| !h.conflict),
        "one writer, no conflicts"
    );
    let description_edits: Vec<_> = doc
        .history
        .iter()
        .filter(|h| h.change.field() == Field::Description)
        .collect();
    assert_eq!(
        description_edits[1].change.replaced,
        Some(description_edits[0].change.hlc)
    );
    // The clock survives a restart: later stamps stay later.
    let last = doc.history.last().unwrap().change.hlc;
    drop(store);
    let store = Store::open(&path).unwrap();
    store
        .edit_draft(
            &id,
            &DraftEdit {
                description: Some("Deeper".into()),
                ..DraftEdit::default()
            },
        )
        .unwrap();
    let doc = sync::document(&conn, &request).unwrap();
    assert!(doc.history.last().unwrap().change.hlc > last);
    // A deleted draft takes its changes with it: they never left the device.
    store.delete_draft(&id).unwrap();
    assert!(sync::log::all_changes(&conn).unwrap().is_empty());
}
