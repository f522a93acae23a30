//! What an app shows besides the requests themselves, against a real server: listeners hear
//! every commit (the user's edits and what sync brings) with what changed; the city's news
//! about a resident's request waits as unread until seen, and an internal note never becomes
//! news; the sync state tells what is waiting and how the last sync ended, offline included.

use std::sync::{Arc, Mutex};

use curbside_core::sync::protocol::{RegisterBody, Role};
use curbside_core::{
    ChangeKind, DraftEdit, Listener, Location, LocationSource, Origin, RequestEvent, RetryPolicy,
    State, Store, SyncOptions,
};
use curbside_e2e::{options, start_server, Server, ADMIN};

#[derive(Default)]
struct Heard(Mutex<Vec<RequestEvent>>);

impl Listener for Heard {
    fn changed(&self, events: &[RequestEvent]) {
        self.0.lock().unwrap().extend_from_slice(events);
    }
}

impl Heard {
    fn take(&self) -> Vec<RequestEvent> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
    fn kinds_of(&self, id: &str, origin: Origin) -> Vec<ChangeKind> {
        let mut kinds: Vec<ChangeKind> = self
            .take()
            .into_iter()
            .filter(|e| e.request_id == id && e.origin == origin)
            .flat_map(|e| e.kinds)
            .collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }
}

/// A listener written badly: it panics on every call.
struct Panics;
impl Listener for Panics {
    fn changed(&self, _: &[RequestEvent]) {
        panic!("the app's listener failed");
    }
}

fn inspector_of_ward_10(server: &Server, path: &std::path::Path) -> Store {
    let store = Store::open(path).unwrap();
    store
        .register(
            &server.url(),
            &RegisterBody {
                role: Some(Role::Inspector),
                wards: vec!["10".into()],
                admin_key: Some(ADMIN.into()),
            },
        )
        .unwrap();
    store
}

#[test]
fn listeners_unread_news_and_sync_state_follow_a_request_through_the_city() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), 180);
    let ana = Store::open(dir.path().join("ana.db")).unwrap();
    let ivy = inspector_of_ward_10(&server, &dir.path().join("ivy.db"));
    ana.register(&server.url(), &RegisterBody::default())
        .unwrap();
    let heard = Arc::new(Heard::default());
    ana.listen(Arc::new(Panics));
    let listening = ana.listen(heard.clone());

    // Offline: each step of the draft is heard as the resident's own.
    let id = ana
        .create_draft(
            "CSROWR-12",
            &DraftEdit {
                description: Some("Pothole by the streetcar stop".into()),
                attributes: vec![("SIZE".into(), vec!["large".into()])],
                ..DraftEdit::default()
            },
        )
        .unwrap();
    ana.edit_draft(
        &id,
        &DraftEdit {
            location: Some(Some(
                Location::new(43.6450, -79.3950, Some(8.0), LocationSource::Gps).unwrap(),
            )),
            ..DraftEdit::default()
        },
    )
    .unwrap();
    ana.submit_draft(&id).unwrap();
    assert_eq!(
        heard.kinds_of(&id, Origin::Local),
        [
            ChangeKind::Created,
            ChangeKind::Edited,
            ChangeKind::Submitted
        ]
    );
    let waiting = ana.sync_state().unwrap();
    assert_eq!(waiting.pending_requests, 1);
    assert!(waiting.pending_changes > 0);
    assert_eq!(waiting.last_success_ms, None);

    // Sync: sent, then numbered by the city.
    ana.sync(&options(), &mut |_| {}).unwrap();
    let synced = heard.kinds_of(&id, Origin::Sync);
    assert!(synced.contains(&ChangeKind::Sent), "{synced:?}");
    assert!(synced.contains(&ChangeKind::Accepted), "{synced:?}");
    let state = ana.sync_state().unwrap();
    assert_eq!((state.pending_requests, state.pending_changes), (0, 0));
    assert!(state.last_success_ms.is_some() && state.last_failure.is_none());
    assert!(ana.unread_updates(50).unwrap().is_empty());

    // The inspector of ward 10 acts on it: a public status note and an internal note.
    ivy.sync(&options(), &mut |_| {}).unwrap();
    ivy.set_status(&id, State::InProgress, Some("A crew is booked for Tuesday"))
        .unwrap();
    ivy.add_note(&id, "Reporter sounded upset on the phone", false)
        .unwrap();
    ivy.sync(&options(), &mut |_| {}).unwrap();

    ana.sync(&options(), &mut |_| {}).unwrap();
    let kinds = heard.kinds_of(&id, Origin::Sync);
    assert!(kinds.contains(&ChangeKind::Status), "{kinds:?}");
    assert!(kinds.contains(&ChangeKind::Note), "{kinds:?}");
    let news = ana.unread_updates(50).unwrap();
    assert_eq!(news.len(), 2, "{news:?}");
    assert_eq!(news.iter().find_map(|u| u.status), Some(State::InProgress));
    let notes: Vec<&str> = news.iter().filter_map(|u| u.note.as_deref()).collect();
    assert_eq!(notes, ["A crew is booked for Tuesday"]);
    assert!(news
        .iter()
        .all(|u| u.request_id == id && u.service_request_id.is_some()));
    assert_eq!(ana.draft(&id).unwrap().state, State::InProgress);

    // Seen once, gone (and heard, for badges); a repeated sync brings no news twice.
    heard.take();
    assert_eq!(ana.mark_seen(&id).unwrap(), 2);
    assert_eq!(heard.kinds_of(&id, Origin::Local), [ChangeKind::Seen]);
    assert_eq!(ana.mark_seen(&id).unwrap(), 0);
    ana.sync(&options(), &mut |_| {}).unwrap();
    assert!(ana.unread_updates(50).unwrap().is_empty());

    // The inspector's own status is not news to the inspector.
    assert!(ivy.unread_updates(50).unwrap().is_empty());

    // Two inspectors: Ivy schedules it offline; Oli completes it later and syncs first. The
    // resident hears "completed"; Ivy's older status arriving after is not news.
    let oli = inspector_of_ward_10(&server, &dir.path().join("oli.db"));
    oli.sync(&options(), &mut |_| {}).unwrap();
    ivy.set_status(&id, State::Scheduled, None).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    oli.set_status(&id, State::Completed, Some("Filled"))
        .unwrap();
    oli.sync(&options(), &mut |_| {}).unwrap();
    ana.sync(&options(), &mut |_| {}).unwrap();
    ivy.sync(&options(), &mut |_| {}).unwrap();
    ana.sync(&options(), &mut |_| {}).unwrap();
    let statuses: Vec<State> = ana
        .unread_updates(50)
        .unwrap()
        .into_iter()
        .filter_map(|u| u.status)
        .collect();
    assert_eq!(statuses, [State::Completed]);
    assert_eq!(ana.draft(&id).unwrap().state, State::Completed);
    ana.mark_seen(&id).unwrap();
    heard.take();

    // No network: the sync fails as offline, is recorded, and nothing waiting is lost.
    let note_id = ana.add_note(&id, "It is getting deeper", true).unwrap();
    assert!(!note_id.is_empty());
    assert_eq!(heard.kinds_of(&id, Origin::Local), [ChangeKind::Note]);
    drop(server);
    let quick = SyncOptions {
        retry: RetryPolicy {
            attempts: 2,
            base_delay: std::time::Duration::from_millis(10),
            max_delay: std::time::Duration::from_millis(20),
            timeout: std::time::Duration::from_secs(2),
        },
        ..SyncOptions::default()
    };
    assert!(ana.sync(&quick, &mut |_| {}).is_err());
    let state = ana.sync_state().unwrap();
    let failure = state.last_failure.expect("the failure is kept");
    assert!(failure.offline, "{failure:?}");
    assert!(state.last_success_ms.is_some());
    assert_eq!(state.pending_changes, 1);

    // Unlistening stops the calls; doing it twice is harmless.
    assert!(ana.unlisten(listening));
    assert!(!ana.unlisten(listening));
    ana.add_note(&id, "Still there", true).unwrap();
    assert!(heard.take().is_empty());
}
