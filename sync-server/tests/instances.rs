//! Two server processes on one PostgreSQL database, as behind a load balancer that sends each
//! request anywhere: residents and an inspector sync through one and then the other, all at
//! once. They converge, every public id is unique, and nothing is lost. (PostgreSQL only: on
//! SQLite one process owns the file.)

mod common;

use std::process::{Child, Command};
use std::time::Duration;

use curbside_core::sync::http::HttpTransport;
use curbside_core::sync::protocol::{RegisterBody, Role};
use curbside_core::{DraftEdit, Location, LocationSource, RetryPolicy, State, Store, SyncOptions};

const ADMIN: &str = "two-instances-admin";

/// A server process; killed when dropped.
struct Instance {
    child: Child,
    url: String,
}

impl Instance {
    fn start(data_dir: &std::path::Path, database: &str) -> Instance {
        let (child, addr, _log) = common::listening(
            Command::new(env!("CARGO_BIN_EXE_curbside-server"))
                .args(["--addr", "127.0.0.1:0", "--data-dir"])
                .arg(data_dir)
                .args([
                    "--syncs-per-minute",
                    "1000000",
                    "--media-per-minute",
                    "1000000",
                ])
                .args(["--registrations-per-hour", "1000000"])
                .args(["--connections-per-minute", "1000000"])
                .env("CURBSIDE_DATABASE", database)
                .env("CURBSIDE_ADMIN_KEY", ADMIN)
                .env("CURBSIDE_LOG", "info"),
        );
        Instance {
            child,
            url: format!("http://{addr}"),
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn options() -> SyncOptions {
    SyncOptions {
        retry: RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            timeout: Duration::from_secs(30),
        },
        ..SyncOptions::default()
    }
}

/// One sync of `store` through the instance at `url`.
fn sync_via(store: &Store, url: &str) {
    let transport = HttpTransport::new(url, Duration::from_secs(30)).unwrap();
    store
        .sync_with(&transport, &options(), &mut |_| {})
        .unwrap_or_else(|e| panic!("sync through {url}: {e}"));
}

fn report(store: &Store, lat: f64, lon: f64, text: &str) -> String {
    let id = store
        .create_draft(
            "CSROWR-12",
            &DraftEdit {
                description: Some(text.into()),
                attributes: vec![("SIZE".into(), vec!["large".into()])],
                location: Some(Some(
                    Location::new(lat, lon, Some(6.0), LocationSource::Gps).unwrap(),
                )),
                ..DraftEdit::default()
            },
        )
        .unwrap();
    store.submit_draft(&id).unwrap();
    id
}

#[test]
fn clients_syncing_through_two_instances_of_one_database_converge() {
    if !common::on_postgres() {
        eprintln!("skipped: two instances share a PostgreSQL database (CURBSIDE_TEST_DATABASE)");
        return;
    }
    let database = common::database();
    let dir = tempfile::tempdir().unwrap();
    // One media directory for both, as a shared volume would be.
    let shared = dir.path().join("shared");
    let instances = [
        Instance::start(&shared, &database),
        Instance::start(&shared, &database),
    ];
    let urls: Vec<String> = instances.iter().map(|i| i.url.clone()).collect();

    // Six residents around King and Spadina (ward 10), an inspector of the ward.
    const RESIDENTS: usize = 6;
    const ROUNDS: usize = 10;
    let residents: Vec<Store> = (0..RESIDENTS)
        .map(|i| {
            let s = Store::open(dir.path().join(format!("resident-{i}.db"))).unwrap();
            s.register(&urls[i % 2], &RegisterBody::default()).unwrap();
            s
        })
        .collect();
    let inspector = Store::open(dir.path().join("inspector.db")).unwrap();
    inspector
        .register(
            &urls[1],
            &RegisterBody {
                role: Some(Role::Inspector),
                wards: vec!["10".into()],
                admin_key: Some(ADMIN.into()),
            },
        )
        .unwrap();

    // Everyone at once, each sync through the other instance than the last.
    let reported: Vec<Vec<String>> = std::thread::scope(|s| {
        let urls = &urls;
        let inspector = &inspector;
        s.spawn(move || {
            for round in 0..ROUNDS * 2 {
                sync_via(inspector, &urls[round % 2]);
                for (k, id) in inspector.replicated_requests().unwrap().iter().enumerate() {
                    if (k + round) % 3 == 0 {
                        let status = [State::InProgress, State::Scheduled, State::Completed]
                            [(k + round) % 3];
                        inspector
                            .set_status(id, status, Some(&format!("round {round}: {status}")))
                            .unwrap();
                    }
                }
            }
        });
        let workers: Vec<_> = residents
            .iter()
            .enumerate()
            .map(|(i, store)| {
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for round in 0..ROUNDS {
                        let lat = 43.6450 + (i * ROUNDS + round) as f64 * 0.0001;
                        mine.push(report(store, lat, -79.3950, &format!("{i} #{round}")));
                        sync_via(store, &urls[(i + round) % 2]);
                    }
                    mine
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });

    // Settle: everyone syncs through each instance in turn until nothing moves.
    for round in 0..3 {
        sync_via(&inspector, &urls[round % 2]);
        for (i, r) in residents.iter().enumerate() {
            sync_via(r, &urls[(i + round) % 2]);
        }
    }

    let all: Vec<&String> = reported.iter().flatten().collect();
    assert_eq!(all.len(), RESIDENTS * ROUNDS);
    // Nothing lost: nothing waits anywhere, and the inspector holds every report.
    for store in residents.iter().chain([&inspector]) {
        assert_eq!(store.pending_changes().unwrap(), 0);
    }
    let held = inspector.replicated_requests().unwrap();
    let mut numbers = Vec::new();
    for (store, ids) in residents.iter().zip(&reported) {
        for id in ids {
            assert!(held.contains(id), "the inspector holds {id}");
            let truth = inspector.request(id).unwrap();
            let theirs = store.request(id).unwrap();
            // The same request on both sides, whichever instance each change went through.
            assert_eq!(theirs.fields, truth.fields, "fields of {id}");
            assert_eq!(theirs.notes, truth.notes, "notes of {id}");
            let draft = store.draft(id).unwrap();
            let number = draft.service_request_id.expect("a public id");
            assert_eq!(Some(number.as_str()), truth.service_request_id());
            numbers.push(number);
        }
    }
    // Every public id unique, though two instances handed them out.
    let mut unique = numbers.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), numbers.len(), "public ids: {numbers:?}");
}
