//! The store as an app uses it: opening files good and bad, upgrading old ones, and the draft
//! lifecycle with its validation.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use curbside_core::store::schema;
use curbside_core::{
    Catalog, Contact, DraftEdit, Error, Location, LocationSource, ProblemKind, State, Store,
};
use rusqlite::Connection;

fn pothole_edit() -> DraftEdit {
    DraftEdit {
        description: Some("Deep pothole in the curb lane".into()),
        attributes: vec![
            ("SIZE".into(), vec!["large".into()]),
            ("DEPTH_CM".into(), vec!["12.5".into()]),
            ("HAZARDS".into(), vec!["cyclists".into(), "water".into()]),
            ("NOTICED".into(), vec!["2026-11-20T08:15:00-05:00".into()]),
        ],
        location: Some(Some(
            Location::new(43.6535, -79.3839, Some(6.0), LocationSource::Gps).unwrap(),
        )),
        ..DraftEdit::default()
    }
}

fn open_temp() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("curbside.db")).unwrap();
    (dir, store)
}

/// Everything a schema is made of, in a form that compares equal when two schemas are the same
/// whatever road (fresh or upgraded) built them.
fn schema_of(path: &Path) -> BTreeMap<String, String> {
    let conn = Connection::open(path).unwrap();
    let mut out = BTreeMap::new();
    let objects: Vec<(String, String, String)> = conn
        .prepare("SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (kind, name, table) in objects {
        let rows = |sql: String| -> Vec<String> {
            let mut stmt = conn.prepare(&sql).unwrap();
            let n = stmt.column_count();
            stmt.query_map([], |r| {
                Ok((0..n)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
        };
        let detail = match kind.as_str() {
            "table" => [
                rows(format!("PRAGMA table_info('{name}')")),
                rows(format!("PRAGMA foreign_key_list('{name}')")),
            ]
            .concat(),
            "index" => rows(format!("PRAGMA index_xinfo('{name}')")),
            _ => vec![],
        };
        out.insert(format!("{kind} {name} on {table}"), detail.join("\n"));
    }
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    out.insert("user_version".into(), version.to_string());
    out
}

#[test]
fn a_database_upgraded_from_every_earlier_version_equals_a_fresh_one() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh.db");
    drop(Store::open(&fresh).unwrap());

    let old = dir.path().join("v1.db");
    {
        let conn = Connection::open(&old).unwrap();
        conn.execute_batch(schema::V1).unwrap();
        conn.execute_batch(
            "PRAGMA user_version = 1; PRAGMA application_id = 1129665090;
             INSERT INTO services VALUES ('CSROWR-12','Pothole',NULL,1,'batch',NULL,NULL,0);
             INSERT INTO requests (id, service_code, state, description, created_at, updated_at)
               VALUES ('0190f3a0-0000-7000-8000-000000000001','CSROWR-12','draft','kept',1,1);
             INSERT INTO request_attributes VALUES
               ('0190f3a0-0000-7000-8000-000000000001','HAZARDS',1,'water'),
               ('0190f3a0-0000-7000-8000-000000000001','SIZE',0,'large'),
               ('0190f3a0-0000-7000-8000-000000000001','HAZARDS',0,'cyclists');",
        )
        .unwrap();
    }
    let store = Store::open(&old).unwrap();
    // The old draft survived, with a history that starts at the upgrade.
    let d = store.draft("0190f3a0-0000-7000-8000-000000000001").unwrap();
    assert_eq!(d.description, "kept");
    assert_eq!(d.history.len(), 1);
    assert_eq!(
        d.attributes["HAZARDS"],
        ["cyclists", "water"],
        "answers keep their order"
    );
    assert_eq!(d.attributes["SIZE"], ["large"]);
    drop(store);
    assert_eq!(schema_of(&old), schema_of(&fresh));

    // Version 2 (version 1 and its step): the changes it logged are queued for the server.
    let v2 = dir.path().join("v2.db");
    {
        let mut conn = Connection::open(&v2).unwrap();
        conn.execute_batch(schema::V1).unwrap();
        let tx = conn.transaction().unwrap();
        schema::upgrade_from(&tx, 1).unwrap();
        tx.execute_batch(
            "DROP TABLE sync_outbox;
             PRAGMA user_version = 2; PRAGMA application_id = 1129665090;
             INSERT INTO meta VALUES ('replica_id', 'aaaa');
             INSERT INTO sync_changes VALUES
               ('0190f3a0-0000-7000-8000-000000000002', 'aaaa:1', 'create',
                '{\"service_code\":\"CSROWR-12\"}', 65536, 'aaaa', NULL, 1),
               ('0190f3a0-0000-7000-8000-000000000002', 'bbbb:1', 'status', '\"completed\"',
                65537, 'bbbb', NULL, 2);",
        )
        .unwrap();
        tx.commit().unwrap();
    }
    drop(Store::open(&v2).unwrap());
    assert_eq!(schema_of(&v2), schema_of(&fresh));
    let queued: Vec<String> = Connection::open(&v2)
        .unwrap()
        .prepare(
            "SELECT c.id FROM sync_outbox o JOIN sync_change_rows c
               ON (c.request_n, c.replica_n, c.counter) = (o.request, o.replica, o.counter)
             ORDER BY o.counter",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        queued,
        ["aaaa:1"],
        "only this replica's own changes are queued"
    );
    let kept: i64 = Connection::open(&v2)
        .unwrap()
        .query_row("SELECT count(*) FROM sync_change_rows", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        kept, 2,
        "every logged change survives the move to numbered names"
    );

    // Version 4: lifecycle and city status in one column, a history that repeated what the
    // log says, and drafts' changes in the outbox (the engine looked them up to skip them).
    let v4 = dir.path().join("v4.db");
    {
        let mut conn = Connection::open(&v4).unwrap();
        conn.execute_batch(schema::V1).unwrap();
        let tx = conn.transaction().unwrap();
        for v in 1..4 {
            schema::upgrade_from(&tx, v).unwrap();
        }
        tx.execute_batch(
            "PRAGMA user_version = 4; PRAGMA application_id = 1129665090;
             INSERT INTO meta VALUES ('replica_id', 'aaaa'), ('change_counter', '4');
             INSERT INTO services VALUES ('CSROWR-12','Pothole',NULL,1,'batch',NULL,NULL,0);
             INSERT INTO requests (id, service_code, state, description, created_at, updated_at)
               VALUES ('0190f3a0-0000-7000-8000-000000000011','CSROWR-12','draft','a draft',1000,1000),
                      ('0190f3a0-0000-7000-8000-000000000012','CSROWR-12','completed','fixed',1000,5000),
                      ('0190f3a0-0000-7000-8000-000000000013','CSROWR-12','accepted','old',1000,1000);
             INSERT INTO request_history VALUES
               ('0190f3a0-0000-7000-8000-000000000011', 1, 1000, NULL, 'draft', NULL),
               ('0190f3a0-0000-7000-8000-000000000012', 1, 1000, NULL, 'draft', NULL),
               ('0190f3a0-0000-7000-8000-000000000012', 2, 2000, 'draft', 'queued', NULL),
               ('0190f3a0-0000-7000-8000-000000000012', 3, 3000, 'queued', 'sent', NULL),
               ('0190f3a0-0000-7000-8000-000000000012', 4, 4000, 'sent', 'accepted', NULL),
               ('0190f3a0-0000-7000-8000-000000000012', 5, 5000, 'accepted', 'completed', 'done'),
               ('0190f3a0-0000-7000-8000-000000000013', 1, 1000, NULL, 'accepted',
                'history starts at upgrade');
             INSERT INTO sync_replicas VALUES (1, 'aaaa'), (2, 'bbbb');
             INSERT INTO sync_requests VALUES
               (1, '0190f3a0-0000-7000-8000-000000000011'),
               (2, '0190f3a0-0000-7000-8000-000000000012');
             INSERT INTO sync_fields VALUES (1, 'create'), (2, 'description'), (3, 'status');
             INSERT INTO sync_changes VALUES
               (1, 1, 1, 1, '{\"service_code\":\"CSROWR-12\",\"created_at\":1000}', 65536000, NULL, 1),
               (1, 1, 2, 2, '\"a draft\"', 65536001, NULL, 2),
               (2, 1, 3, 1, '{\"service_code\":\"CSROWR-12\",\"created_at\":1000}', 65536002, NULL, 3),
               (2, 2, 1, 3, '\"completed\"', 327680000, NULL, 4);
             INSERT INTO sync_outbox VALUES (1, 1, 1, 1), (2, 1, 1, 2);",
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let store = Store::open(&v4).unwrap();
    let draft = store.draft("0190f3a0-0000-7000-8000-000000000011").unwrap();
    assert_eq!(draft.state, State::Draft);
    assert_eq!(
        store.pending_changes().unwrap(),
        0,
        "a draft's changes are held back in the outbox"
    );
    let fixed = store.draft("0190f3a0-0000-7000-8000-000000000012").unwrap();
    assert_eq!(fixed.state, State::Completed);
    let steps: Vec<(State, i64)> = fixed
        .history
        .iter()
        .map(|h| (h.to, (h.at.unix_timestamp_nanos() / 1_000_000) as i64))
        .collect();
    assert_eq!(
        steps,
        [
            (State::Draft, 1000),
            (State::Queued, 2000),
            (State::Sent, 3000),
            (State::Accepted, 4000),
            (State::Completed, 5000)
        ],
        "the creation and the city's status come from the log, once"
    );
    let old = store.draft("0190f3a0-0000-7000-8000-000000000013").unwrap();
    assert_eq!(old.state, State::Accepted);
    assert_eq!(
        old.history[0].note.as_deref(),
        Some("history starts at upgrade")
    );
    store.submit_draft(&draft.id).unwrap_err(); // no location: still validated
    drop(store);
    assert_eq!(schema_of(&v4), schema_of(&fresh));

    // Version 5: services without standards (the default: two business days to acknowledge,
    // no resolution target) and requests without the city's expected date.
    let v5 = dir.path().join("v5.db");
    {
        let mut conn = Connection::open(&v5).unwrap();
        conn.execute_batch(schema::V1).unwrap();
        let tx = conn.transaction().unwrap();
        for v in 1..5 {
            schema::upgrade_from(&tx, v).unwrap();
        }
        tx.execute_batch(
            "PRAGMA user_version = 5; PRAGMA application_id = 1129665090;
             INSERT INTO services VALUES ('CSROWR-12','Pothole',NULL,1,'batch',NULL,NULL,0);",
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let store = Store::open(&v5).unwrap();
    let pothole = store.service("CSROWR-12").unwrap();
    assert_eq!(pothole.standard, curbside_core::Standard::default());
    drop(store);
    assert_eq!(schema_of(&v5), schema_of(&fresh));

    // Version 6: a delivered request, with no news kept about it; news arrives after.
    let v6 = dir.path().join("v6.db");
    {
        let mut conn = Connection::open(&v6).unwrap();
        conn.execute_batch(schema::V1).unwrap();
        let tx = conn.transaction().unwrap();
        for v in 1..6 {
            schema::upgrade_from(&tx, v).unwrap();
        }
        tx.execute_batch(
            "PRAGMA user_version = 6; PRAGMA application_id = 1129665090;
             INSERT INTO services VALUES
               ('CSROWR-12','Pothole',NULL,1,'batch',NULL,NULL,0,NULL);
             INSERT INTO requests (id, service_code, lifecycle, status, description,
                                   created_at, updated_at)
               VALUES ('0190f3a0-0000-7000-8000-000000000021','CSROWR-12','delivered',
                       'in_progress','kept',1,1);",
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let store = Store::open(&v6).unwrap();
    assert!(store.unread_updates(10).unwrap().is_empty());
    assert_eq!(
        store
            .draft("0190f3a0-0000-7000-8000-000000000021")
            .unwrap()
            .state,
        State::InProgress
    );
    drop(store);
    assert_eq!(schema_of(&v6), schema_of(&fresh));
    assert_eq!(
        schema::VERSION,
        7,
        "add the new version's snapshot to this test"
    );
}

#[test]
fn files_that_are_not_ours_or_are_newer_or_damaged_are_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();

    let text = dir.path().join("notes.txt");
    fs::write(
        &text,
        "shopping list: milk, eggs, a long enough text to look like a page ".repeat(4),
    )
    .unwrap();
    let before = fs::read(&text).unwrap();
    assert!(matches!(
        Store::open(&text),
        Err(Error::NotADatabase { .. })
    ));
    assert_eq!(fs::read(&text).unwrap(), before);

    let foreign = dir.path().join("other-app.db");
    Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE contacts (name TEXT); INSERT INTO contacts VALUES ('x');")
        .unwrap();
    let before = fs::read(&foreign).unwrap();
    assert!(matches!(
        Store::open(&foreign),
        Err(Error::NotADatabase { .. })
    ));
    assert_eq!(fs::read(&foreign).unwrap(), before);

    let newer = dir.path().join("newer.db");
    drop(Store::open(&newer).unwrap());
    Connection::open(&newer)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99; PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    let before = fs::read(&newer).unwrap();
    match Store::open(&newer) {
        Err(e @ Error::NewerSchema { found: 99, .. }) => {
            assert!(e.to_string().contains("newer"), "{e}")
        }
        other => panic!("expected NewerSchema, got {:?}", other.err()),
    }
    assert_eq!(fs::read(&newer).unwrap(), before);

    let truncated = dir.path().join("truncated.db");
    {
        let store = Store::open(&truncated).unwrap();
        for i in 0..300 {
            let mut e = pothole_edit();
            e.description = Some(format!("report {i} {}", "x".repeat(500)));
            store.create_draft("CSROWR-12", &e).unwrap();
        }
    }
    Connection::open(&truncated)
        .unwrap()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    let full = fs::read(&truncated).unwrap();
    fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let before = fs::read(&truncated).unwrap();
    let err = Store::open(&truncated)
        .err()
        .expect("a truncated file is refused");
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert_eq!(fs::read(&truncated).unwrap(), before);
}

#[test]
fn a_draft_goes_from_offline_draft_to_the_citys_status_with_every_step_in_its_history() {
    let (_dir, store) = open_temp();
    let id = store.create_draft("CSROWR-12", &pothole_edit()).unwrap();
    assert_eq!(uuid_version(&id), 7);

    let d = store.draft(&id).unwrap();
    assert_eq!(d.state, State::Draft);
    assert_eq!(
        d.service_name.as_deref(),
        Some("Report minor pothole damage")
    );
    assert_eq!(d.attributes["HAZARDS"], vec!["cyclists", "water"]);
    assert_eq!(d.location.unwrap().accuracy_m, Some(6.0));

    assert_eq!(d.expected_at, None, "a draft is expected nowhere");
    store.submit_draft(&id).unwrap();
    // Expected by the pothole standard (4 business days), counted from when it was queued,
    // until the city says otherwise.
    let queued = store.draft(&id).unwrap();
    let queued_at = queued.history.last().unwrap().at;
    let expected = curbside_core::vocab::calendar::add_business_days(
        (queued_at.unix_timestamp_nanos() / 1_000_000) as i64,
        4,
    );
    assert_eq!(
        queued
            .expected_at
            .map(|at| (at.unix_timestamp_nanos() / 1_000_000) as i64),
        Some(expected)
    );
    assert!(queued.expected_at.unwrap() - queued_at >= time::Duration::days(4));
    store.mark_sent(&id).unwrap();
    store.mark_accepted(&id, "101005570514").unwrap();
    store
        .apply_server_status(
            &id,
            State::Scheduled,
            Some("In progress - The request has been scheduled."),
        )
        .unwrap();
    store
        .apply_server_status(
            &id,
            State::Completed,
            Some("Completed - The request has been concluded."),
        )
        .unwrap();

    let d = store.draft(&id).unwrap();
    assert_eq!(d.state, State::Completed);
    assert!(!d.state.is_open());
    assert_eq!(d.service_request_id.as_deref(), Some("101005570514"));
    let steps: Vec<State> = d.history.iter().map(|h| h.to).collect();
    assert_eq!(
        steps,
        [
            State::Draft,
            State::Queued,
            State::Sent,
            State::Accepted,
            State::Scheduled,
            State::Completed
        ]
    );
    assert!(d
        .history
        .windows(2)
        .all(|w| w[0].at <= w[1].at && w[1].from == Some(w[0].to)));
    assert_eq!(
        d.status_notes.as_deref(),
        Some("Completed - The request has been concluded.")
    );

    // Sent requests belong to the city: they cannot be edited or deleted here.
    assert!(matches!(
        store.edit_draft(&id, &DraftEdit::default()),
        Err(Error::WrongState { .. })
    ));
    assert!(matches!(
        store.delete_draft(&id),
        Err(Error::WrongState { .. })
    ));
}

#[test]
fn submitting_an_incomplete_draft_lists_every_problem_at_its_field() {
    let (_dir, store) = open_temp();
    let id = store
        .create_draft("ANS-WILDLIFE-INJURED", &DraftEdit::default())
        .unwrap();
    let problems = match store.submit_draft(&id) {
        Err(Error::Invalid(p)) => p,
        other => panic!("expected problems, got {other:?}"),
    };
    let fields: Vec<(&str, ProblemKind)> = problems
        .iter()
        .map(|p| (p.field.as_str(), p.kind))
        .collect();
    for expected in [
        ("attribute[ANIMAL]", ProblemKind::Required),
        ("attribute[CONTAINED]", ProblemKind::Required),
        ("attribute[SEEN_AT]", ProblemKind::Required),
        ("location", ProblemKind::Required),
    ] {
        assert!(
            fields.contains(&expected),
            "{expected:?} missing from {fields:?}"
        );
    }
    assert_eq!(
        fields.len(),
        4,
        "optional attributes are not problems: {fields:?}"
    );
    assert_eq!(
        store.draft(&id).unwrap().state,
        State::Draft,
        "a failed submit changes nothing"
    );

    // An address is enough in place of a location.
    store
        .edit_draft(
            &id,
            &DraftEdit {
                address: Some(Some("100 Queen St W".into())),
                attributes: vec![
                    ("ANIMAL".into(), vec!["raccoon".into()]),
                    ("CONTAINED".into(), vec!["no".into()]),
                    ("SEEN_AT".into(), vec!["2026-11-23T07:05:00Z".into()]),
                ],
                ..DraftEdit::default()
            },
        )
        .unwrap();
    assert!(store.validate_draft(&id).unwrap().is_empty());
    store.submit_draft(&id).unwrap();
    assert_eq!(store.drafts(Some(State::Queued), 10).unwrap()[0].id, id);
    store.withdraw_draft(&id).unwrap();
    assert_eq!(store.draft(&id).unwrap().state, State::Draft);
}

#[test]
fn bad_input_gets_a_typed_error_and_changes_nothing() {
    let (_dir, store) = open_temp();
    let id = store.create_draft("CSROWR-12", &pothole_edit()).unwrap();
    let before = store.draft(&id).unwrap();

    assert!(matches!(
        store.create_draft("NO-SUCH-SERVICE", &DraftEdit::default()),
        Err(Error::UnknownService(code)) if code == "NO-SUCH-SERVICE"
    ));

    let attr = |code: &str, value: &str| DraftEdit {
        description: Some("this must not be saved".into()),
        attributes: vec![(code.into(), vec![value.into()])],
        ..DraftEdit::default()
    };
    assert!(matches!(
        store.edit_draft(&id, &attr("COLOUR", "red")),
        Err(Error::UnknownAttribute { code, .. }) if code == "COLOUR"
    ));
    for (code, value, kind) in [
        ("DEPTH_CM", "deep", ProblemKind::NotANumber),
        ("DEPTH_CM", "NaN", ProblemKind::NotANumber),
        ("NOTICED", "yesterday", ProblemKind::NotADatetime),
        ("NOTICED", "2026-11-20 08:15", ProblemKind::NotADatetime),
        ("SIZE", "enormous", ProblemKind::NotInList),
        ("INFO", "anything", ProblemKind::NotAnInput),
    ] {
        match store.edit_draft(&id, &attr(code, value)) {
            Err(Error::Invalid(p)) => {
                assert_eq!(p[0].kind, kind, "{code}={value}");
                assert_eq!(p[0].field, format!("attribute[{code}]"));
            }
            other => panic!("{code}={value}: expected Invalid, got {other:?}"),
        }
    }
    let two_sizes = DraftEdit {
        attributes: vec![("SIZE".into(), vec!["small".into(), "large".into()])],
        ..DraftEdit::default()
    };
    assert!(
        matches!(store.edit_draft(&id, &two_sizes), Err(Error::Invalid(p)) if p[0].kind == ProblemKind::OneValueOnly)
    );

    let huge = DraftEdit {
        description: Some("a".repeat(10 * 1024 * 1024)),
        ..DraftEdit::default()
    };
    assert!(
        matches!(store.edit_draft(&id, &huge), Err(Error::Invalid(p)) if p[0].kind == ProblemKind::TooLong)
    );
    // 4,000 characters are fine even when each is several bytes.
    let exactly = DraftEdit {
        description: Some("é".repeat(4_000)),
        ..DraftEdit::default()
    };
    store.create_draft("CSROWR-12", &exactly).unwrap();

    for (lat, lon) in [
        (f64::NAN, 1.0),
        (0.0, 0.0),
        (95.0, 1.0),
        (1.0, f64::NEG_INFINITY),
    ] {
        // Location::new refuses these; a hand-built one is refused by the store as well.
        let location = Location {
            lat,
            lon,
            accuracy_m: None,
            source: LocationSource::Gps,
        };
        let edit = DraftEdit {
            location: Some(Some(location)),
            ..DraftEdit::default()
        };
        assert!(
            matches!(store.edit_draft(&id, &edit), Err(Error::Invalid(p)) if p[0].field == "location")
        );
    }
    let contact = DraftEdit {
        contact: Some(Contact {
            email: Some("not an email".into()),
            phone: Some("12".into()),
            ..Contact::default()
        }),
        ..DraftEdit::default()
    };
    assert!(matches!(store.edit_draft(&id, &contact), Err(Error::Invalid(p)) if p.len() == 2));

    assert!(matches!(store.draft("not-a-uuid"), Err(Error::BadId(_))));
    assert!(matches!(
        store.draft("0190f3a0-0000-7000-8000-00000000ffff"),
        Err(Error::NotFound(_))
    ));

    assert_eq!(
        store.draft(&id).unwrap(),
        before,
        "no failed edit changed the draft"
    );
}

#[test]
fn reimporting_a_catalogue_replaces_it_and_keeps_drafts_of_vanished_services() {
    let (_dir, store) = open_temp();
    let wildlife = store
        .create_draft("ANS-WILDLIFE-DEAD", &DraftEdit::default())
        .unwrap();
    let pothole = store.create_draft("CSROWR-12", &pothole_edit()).unwrap();

    let newer = Catalog::parse(
        br#"{"services":[{"service_code":"CSROWR-12","service_name":"Pothole (2027)","metadata":true,"type":"realtime"}],
             "definitions":[{"service_code":"CSROWR-12","attributes":[
               {"code":"SIZE","datatype":"singlevaluelist","required":true,"order":1,"description":"Size",
                "values":[{"key":"large","name":"Large"}]},
               {"code":"DEPTH_CM","datatype":"number","required":false,"order":2,"description":"Depth"},
               {"code":"HAZARDS","datatype":"multivaluelist","required":false,"order":3,"description":"Hazards",
                "values":[{"key":"cyclists","name":"Cyclists"},{"key":"water","name":"Water"}]},
               {"code":"NOTICED","datatype":"datetime","required":false,"order":4,"description":"Noticed"}]}]}"#,
    )
    .unwrap();
    store.import_catalog(&newer).unwrap();
    assert_eq!(store.services().unwrap().len(), 1);

    let gone = store.draft(&wildlife).unwrap();
    assert_eq!(gone.service_code, "ANS-WILDLIFE-DEAD");
    assert_eq!(gone.service_name, None);
    let problems = store.validate_draft(&wildlife).unwrap();
    assert_eq!(problems[0].kind, ProblemKind::ServiceGone);
    assert!(store
        .drafts(None, 10)
        .unwrap()
        .iter()
        .any(|s| s.id == wildlife));

    assert_eq!(
        store.draft(&pothole).unwrap().service_name.as_deref(),
        Some("Pothole (2027)")
    );
    store.submit_draft(&pothole).unwrap();

    // A catalogue that fails to parse never reaches the store.
    assert!(Catalog::parse(b"[{\"service_code\": [1]}]").is_err());
    assert_eq!(store.services().unwrap().len(), 1);
}

#[test]
fn lists_are_newest_first_and_filter_by_state() {
    let (_dir, store) = open_temp();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(store.create_draft("CSROWR-12", &pothole_edit()).unwrap());
    }
    store.submit_draft(&ids[1]).unwrap();
    store.submit_draft(&ids[3]).unwrap();
    let all: Vec<String> = store
        .drafts(None, 100)
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(all, newest_first);
    let queued: Vec<String> = store
        .drafts(Some(State::Queued), 100)
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(queued, vec![ids[3].clone(), ids[1].clone()]);
    store.delete_draft(&ids[0]).unwrap();
    assert!(matches!(store.draft(&ids[0]), Err(Error::NotFound(_))));
    assert_eq!(store.drafts(Some(State::Draft), 100).unwrap().len(), 2);
}

#[test]
fn contact_details_never_appear_in_debug_output() {
    let contact = Contact {
        first_name: Some("Alice".into()),
        email: Some("alice@example.org".into()),
        ..Contact::default()
    };
    let shown = format!("{contact:?}");
    assert!(
        !shown.contains("Alice") && !shown.contains("alice@"),
        "{shown}"
    );
}

fn uuid_version(id: &str) -> u32 {
    id.chars().nth(14).unwrap().to_digit(16).unwrap()
}
