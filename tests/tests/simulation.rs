//! Deterministic simulation of the sync system, without sockets: residents and inspectors edit
//! offline on skewed clocks and sync through a network that loses answers, duplicates requests
//! and delivers them late and out of order; devices crash between rounds and are cut off in the
//! middle of a sync. Time is a clock the test moves; every random choice comes from the seed.
//!
//! After the network heals and everyone syncs, every seed must converge: each device holds
//! exactly what its scope allows of the server's documents, every submitted request has exactly
//! one public number, no draft left its phone, nothing is pending. A failing seed is printed;
//! `CURBSIDE_SIM_SEED=N cargo test -p curbside-e2e --test simulation` replays it exactly
//! (`CURBSIDE_SIM_SEEDS=N` runs N seeds).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use curbside_core::sync::protocol::{RegisterBody, Role};
use curbside_core::sync::{log, Document, HistoryItem};
use curbside_core::vocab::SeededEntropy;
use curbside_core::{
    Clock, DraftEdit, Error, Lifecycle, Location, LocationSource, ManualClock, Options, RequestId,
    RetryPolicy, State, Status, Store, SyncOptions,
};
use curbside_e2e::in_process::{FaultCount, Faults, InProcess};
use curbside_server::{AppState, Config};

const START_MS: i64 = 1_800_000_000_000;
const DAY_MS: i64 = 86_400_000;
/// Places reports cluster around (ward 10, ward 13, ward 4), so nearby views overlap.
const HOTSPOTS: [(f64, f64); 3] = [
    (43.6450, -79.3950),
    (43.6560, -79.3800),
    (43.6400, -79.4400),
];
const PHOTO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/photos/gps/DSCN0010.jpg"
);

/// A device's clock: the simulated time, off by the device's own error (which a test may
/// change, as a person setting their phone's clock does).
#[derive(Debug)]
struct DeviceClock {
    world: Arc<ManualClock>,
    skew_ms: std::sync::atomic::AtomicI64,
}

impl Clock for DeviceClock {
    fn now_ms(&self) -> i64 {
        self.world.now_ms() + self.skew_ms.load(std::sync::atomic::Ordering::SeqCst)
    }
}

struct Device {
    name: &'static str,
    role: Role,
    path: PathBuf,
    clock: Arc<DeviceClock>,
    seed: u64,
    starts: u64,
    store: Store,
}

impl Device {
    fn open(path: &Path, clock: &Arc<DeviceClock>, seed: u64) -> Store {
        Store::open_with_options(
            path,
            Options {
                clock: clock.clone(),
                entropy: Arc::new(SeededEntropy::new(seed)),
                ..Options::default()
            },
        )
        .unwrap()
    }

    /// The app is killed between rounds and started again: only the file survives.
    fn crash(&mut self) {
        self.starts += 1;
        let seed = self.seed ^ (self.starts << 32);
        self.store = Device::open(&self.path, &self.clock, seed);
    }
}

fn options() -> SyncOptions {
    SyncOptions {
        retry: RetryPolicy {
            attempts: 3,
            base_delay: std::time::Duration::ZERO,
            max_delay: std::time::Duration::ZERO,
            timeout: std::time::Duration::from_secs(5),
        },
        ..SyncOptions::default()
    }
}

/// What a run leaves behind, in a form two runs can be compared by.
#[derive(Debug, PartialEq)]
struct Outcome {
    server: BTreeMap<String, String>,
    devices: Vec<BTreeMap<String, String>>,
    faults: (u64, u64, u64),
    resyncs: usize,
}

struct Sim {
    rng: fastrand::Rng,
    world: Arc<ManualClock>,
    server: Arc<AppState>,
    net: InProcess,
    devices: Vec<Device>,
    photo: Vec<u8>,
    /// Changes the server has compacted away: devices that saw them before keep them.
    compacted: usize,
    /// Full resyncs after a cursor expired.
    resyncs: usize,
    _dir: tempfile::TempDir,
}

impl Sim {
    fn new(seed: u64, photo: &[u8]) -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let world = Arc::new(ManualClock::new(START_MS));
        let mut server = AppState::load_with(
            &Config {
                admin_key: Some("sim".into()),
                retention_days: 180,
                ..Config::new(dir.path().join("server"))
            },
            world.clone(),
            Arc::new(SeededEntropy::new(seed)),
        )
        .unwrap();
        // Small pages, so pulls (full resyncs among them) take many rounds.
        server.page = 25;
        let server = Arc::new(server);
        let net = InProcess::new(server.clone(), seed);
        let mut rng = fastrand::Rng::with_seed(seed);
        let cast: [(&'static str, Role, Vec<&str>); 5] = [
            ("ana", Role::Resident, vec![]),
            ("ben", Role::Resident, vec![]),
            ("cy", Role::Resident, vec![]),
            ("ivy", Role::Inspector, (1..=25).map(|_| "").collect()),
            ("otto", Role::Inspector, vec!["10", "13"]),
        ];
        let mut devices = Vec::new();
        for (i, (name, role, wards)) in cast.into_iter().enumerate() {
            // Phones' clocks are a little off; now and then one is a day ahead.
            let skew_ms = if i == 2 && rng.u8(..4) == 0 {
                DAY_MS
            } else {
                rng.i64(-120_000..120_000)
            };
            let clock = Arc::new(DeviceClock {
                world: world.clone(),
                skew_ms: skew_ms.into(),
            });
            let path = dir.path().join(format!("{name}.db"));
            let dseed = seed.wrapping_mul(31).wrapping_add(i as u64);
            let store = Device::open(&path, &clock, dseed);
            let wards: Vec<String> = if name == "ivy" {
                (1..=25).map(|w| w.to_string()).collect()
            } else {
                wards.iter().map(|w| w.to_string()).collect()
            };
            store
                .register_with(
                    &net,
                    "sim",
                    &RegisterBody {
                        role: Some(role),
                        wards,
                        admin_key: (role == Role::Inspector).then(|| "sim".into()),
                    },
                )
                .unwrap();
            devices.push(Device {
                name,
                role,
                path,
                clock,
                seed: dseed,
                starts: 0,
                store,
            });
        }
        Sim {
            rng,
            world,
            server,
            net,
            devices,
            photo: photo.to_vec(),
            compacted: 0,
            resyncs: 0,
            _dir: dir,
        }
    }

    fn location(&mut self) -> Location {
        let (lat, lon) = HOTSPOTS[self.rng.usize(..HOTSPOTS.len())];
        let jitter = |r: &mut fastrand::Rng| (r.f64() - 0.5) * 0.002;
        Location::new(
            lat + jitter(&mut self.rng),
            lon + jitter(&mut self.rng),
            Some(self.rng.u32(3..40) as f64),
            LocationSource::Gps,
        )
        .unwrap()
    }

    fn sync(&mut self, d: usize, cut: bool) {
        let mut options = options();
        let cancel = options.cancel.clone();
        options.cancel = cancel.clone();
        let result = self.devices[d]
            .store
            .sync_with(&self.net, &options, &mut |p| {
                // The phone goes into a tunnel after its first round.
                if cut && (p.pulled_changes > 0 || p.pushed_changes > 0) {
                    cancel.cancel();
                }
            });
        match result {
            Ok(r) => self.resyncs += r.full_resync as usize,
            Err(Error::Network(_)) | Err(Error::Cancelled) => {}
            Err(e) => panic!("{} could not sync: {e}", self.devices[d].name),
        }
    }

    fn step(&mut self) {
        self.world.advance(self.rng.i64(1..3_000));
        let d = self.rng.usize(..self.devices.len());
        let resident = self.devices[d].role == Role::Resident;
        match self.rng.u8(..100) {
            0..=21 if resident => self.report(d),
            22..=31 if resident => self.touch_draft(d),
            32..=37 if resident => self.resident_note(d),
            0..=45 if !resident => self.inspect(d),
            46..=75 => {
                // Cy and Otto are out of signal most of the time: their cursors age.
                let away = matches!(self.devices[d].name, "cy" | "otto") && self.rng.u8(..6) > 0;
                let cut = self.rng.u8(..6) == 0;
                if !away {
                    self.sync(d, cut);
                }
            }
            76..=80 => self.devices[d].crash(),
            81..=84 => self.world.advance(self.rng.i64(60_000..3_600_000)),
            // The server drops what was overwritten: cursors older than that expire.
            85..=92 => {
                self.compacted += curbside_server::compact(&self.server, 0).unwrap();
            }
            _ => {}
        }
    }

    fn report(&mut self, d: usize) {
        let size = ["small", "medium", "large"][self.rng.usize(..3)];
        let location = self.location();
        let placed = self.rng.u8(..10) > 0;
        let edit = DraftEdit {
            description: Some(format!("Pothole {}", self.rng.u32(..1000))),
            attributes: vec![("SIZE".into(), vec![size.into()])],
            location: Some(placed.then_some(location)),
            ..DraftEdit::default()
        };
        let store = &self.devices[d].store;
        let id = store.create_draft("CSROWR-12", &edit).unwrap();
        if self.rng.u8(..8) == 0 {
            store.attach_photo(&id, &self.photo).unwrap();
        }
        if self.rng.u8(..10) < 7 {
            match store.submit_draft(&id) {
                Ok(()) => {}
                Err(Error::Invalid(_)) if !placed => {}
                Err(e) => panic!("submit: {e}"),
            }
        }
    }

    fn own(&mut self, d: usize, state: Option<State>) -> Option<String> {
        let list = self.devices[d].store.drafts(state, 1000).unwrap();
        (!list.is_empty()).then(|| list[self.rng.usize(..list.len())].id.clone())
    }

    fn touch_draft(&mut self, d: usize) {
        let choice = self.rng.u8(..4);
        let location = self.location();
        let store_state = if choice == 3 {
            State::Queued
        } else {
            State::Draft
        };
        let Some(id) = self.own(d, Some(store_state)) else {
            return;
        };
        let store = &self.devices[d].store;
        match choice {
            0 => store
                .edit_draft(
                    &id,
                    &DraftEdit {
                        description: Some("Edited offline".into()),
                        location: Some(Some(location)),
                        ..DraftEdit::default()
                    },
                )
                .unwrap(),
            1 => store.submit_draft(&id).or_else(ok_if_invalid).unwrap(),
            2 => store.delete_draft(&id).unwrap(),
            _ => store.withdraw_draft(&id).unwrap(),
        }
    }

    fn resident_note(&mut self, d: usize) {
        let Some(id) = self.own(d, None) else { return };
        let store = &self.devices[d].store;
        if store.draft(&id).unwrap().state.lifecycle() == Lifecycle::Delivered {
            store.add_note(&id, "Still there", true).unwrap();
        }
    }

    fn inspect(&mut self, d: usize) {
        let ids = self.devices[d].store.replicated_requests().unwrap();
        if ids.is_empty() {
            return;
        }
        // Mostly the newest few: requests see several edits, concurrent ones among them.
        let id = ids[self.rng.usize(..ids.len().min(4))].clone();
        let status = Status::ALL[self.rng.usize(..Status::ALL.len())];
        let note = ["Crew booked", "Crew booked", "Parts ordered", ""][self.rng.usize(..4)];
        let store = &self.devices[d].store;
        let result = match self.rng.u8(..6) {
            0..=2 => store.set_status(&id, status.into(), Some(note)),
            3 => store
                .add_note(&id, "Checked on site", self.rng.bool())
                .map(|_| ()),
            4 => store.assign(&id, Some(["Crew 4", "Crew 7"][self.rng.usize(..2)])),
            _ => store.set_priority(&id, Some(["high", "low"][self.rng.usize(..2)])),
        };
        result.unwrap();
    }

    /// The network heals; everyone syncs until nothing moves.
    fn quiesce(&mut self) {
        self.net.set_faults(Faults::default());
        self.net.flush();
        self.world.advance(600_000);
        for _ in 0..3 {
            for d in 0..self.devices.len() {
                let name = self.devices[d].name;
                let report = self.devices[d]
                    .store
                    .sync_with(&self.net, &options(), &mut |_| {})
                    .unwrap_or_else(|e| panic!("{name}: final sync: {e}"));
                self.resyncs += report.full_resync as usize;
            }
        }
    }

    fn server_db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.server.data_dir.join("curbside-server.sqlite")).unwrap()
    }

    fn check(&self) -> Outcome {
        let db = self.server_db();
        let truth: BTreeMap<RequestId, Document> = log::request_ids(&db)
            .unwrap()
            .into_iter()
            .map(|id| (id, log::document(&db, &id).unwrap()))
            .collect();
        let wards: BTreeMap<String, Option<String>> = db
            .prepare("SELECT request_id, ward FROM requests")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut numbers = BTreeSet::new();
        let mut submitted = 0i64;
        for dev in &self.devices {
            let store = &dev.store;
            assert_eq!(store.pending_changes().unwrap(), 0, "{}: pending", dev.name);
            for (id, doc) in &truth {
                let ward = wards.get(&id.to_string()).cloned().flatten();
                let mine = store.request(&id.to_string());
                let wanted = match dev.role {
                    Role::Inspector => {
                        let reg = store.registration().unwrap().unwrap();
                        ward.is_some_and(|w| reg.wards.contains(&w))
                    }
                    Role::Resident => store.draft(&id.to_string()).is_ok(),
                };
                if !wanted {
                    continue;
                }
                let mine = mine.unwrap_or_else(|e| panic!("{} lacks {id}: {e}", dev.name));
                assert_eq!(mine.fields, doc.fields, "{}: fields of {id}", dev.name);
                assert_eq!(mine.photos, doc.photos, "{}: photos of {id}", dev.name);
                let notes: Vec<_> = doc
                    .notes
                    .iter()
                    .filter(|n| dev.role == Role::Inspector || n.public)
                    .collect();
                assert_eq!(
                    mine.notes.iter().collect::<Vec<_>>(),
                    notes,
                    "{}: notes",
                    dev.name
                );
                let visible: Vec<_> = doc
                    .history
                    .iter()
                    .filter(|h| dev.role == Role::Inspector || !h.change.value.is_internal_note())
                    .collect();
                let mut held: Vec<_> = mine.history.iter().collect();
                let seen = |h: &[&HistoryItem]| seen_as(dev.role, doc, h);
                if self.compacted > 0 {
                    // The server dropped overwritten values a device may have seen before: the
                    // device keeps them, as history that is no longer in force.
                    let kept_there: Vec<String> =
                        seen(&visible).into_iter().map(|(k, ..)| k).collect();
                    held.retain(|h| {
                        let kept = kept_there.contains(&seen(&[h])[0].0);
                        assert!(
                            kept || !h.current,
                            "{}: {} in force only here",
                            dev.name,
                            h.change.id
                        );
                        kept
                    });
                    let flags = |h: &[&HistoryItem]| -> Vec<(String, bool)> {
                        seen(h)
                            .into_iter()
                            .map(|(k, current, _)| (k, current))
                            .collect()
                    };
                    assert_eq!(
                        flags(&held),
                        flags(&visible),
                        "{}: history of {id}",
                        dev.name
                    );
                    continue;
                }
                assert!(
                    seen(&held) == seen(&visible),
                    "{}: history of {id}:\n  device {:?}\n  server {:?}",
                    dev.name,
                    seen(&held),
                    seen(&visible)
                );
            }
            if dev.role == Role::Resident {
                for summary in store.drafts(None, 10_000).unwrap() {
                    let id = RequestId::parse(&summary.id).unwrap();
                    let draft = store.draft(&summary.id).unwrap();
                    match draft.state {
                        State::Draft => assert!(
                            !truth.contains_key(&id),
                            "{}: draft {id} left the phone",
                            dev.name
                        ),
                        State::Queued | State::Sent => {
                            panic!("{}: {id} still {} after the sync", dev.name, draft.state)
                        }
                        state => {
                            submitted += 1;
                            let doc = &truth[&id];
                            let number = draft.service_request_id.clone().expect("numbered");
                            assert_eq!(Some(number.as_str()), doc.service_request_id());
                            assert!(numbers.insert(number), "{id}: a number given twice");
                            assert_eq!(state, doc.status().unwrap_or(Status::Accepted).into());
                        }
                    }
                }
            }
        }
        let on_server: i64 = db
            .query_row("SELECT count(*) FROM requests", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            on_server, submitted,
            "exactly one server request per report"
        );
        let count: FaultCount = self.net.count();
        Outcome {
            server: truth
                .iter()
                .map(|(id, d)| (id.to_string(), serde_json::to_string(d).unwrap()))
                .collect(),
            devices: self
                .devices
                .iter()
                .map(|dev| {
                    dev.store
                        .replicated_requests()
                        .unwrap()
                        .into_iter()
                        .map(|id| {
                            let doc = dev.store.request(&id).unwrap();
                            (id, serde_json::to_string(&doc).unwrap())
                        })
                        .collect()
                })
                .collect(),
            faults: (count.lost, count.duplicated, count.delayed),
            resyncs: self.resyncs,
        }
    }
}

fn ok_if_invalid(e: Error) -> Result<(), Error> {
    match e {
        Error::Invalid(_) => Ok(()),
        e => Err(e),
    }
}

fn run(seed: u64, photo: &[u8]) -> Outcome {
    let mut sim = Sim::new(seed, photo);
    sim.net.set_faults(Faults {
        lose_answer: 0.15,
        duplicate: 0.1,
        delay: 0.1,
    });
    for _ in 0..60 {
        sim.step();
    }
    sim.quiesce();
    sim.check()
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("CURBSIDE_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let n = std::env::var("CURBSIDE_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    (0..n).collect()
}

#[test]
fn every_seed_converges_with_one_public_id_per_request() {
    let photo = std::fs::read(PHOTO).unwrap();
    let started = std::time::Instant::now();
    let mut failed = Vec::new();
    let (mut lost, mut duplicated, mut delayed, mut resyncs) = (0, 0, 0, 0);
    let seeds = seeds();
    for &seed in &seeds {
        match std::panic::catch_unwind(|| run(seed, &photo)) {
            Ok(o) => {
                lost += o.faults.0;
                duplicated += o.faults.1;
                delayed += o.faults.2;
                resyncs += o.resyncs;
            }
            Err(_) => {
                eprintln!(
                    "simulation seed {seed} failed; replay: CURBSIDE_SIM_SEED={seed} \
                     cargo test -p curbside-e2e --test simulation"
                );
                failed.push(seed);
            }
        }
    }
    eprintln!(
        "{} seeds in {:.1} s: {lost} answers lost, {duplicated} requests duplicated, \
         {delayed} delayed, {resyncs} full resyncs",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
    if seeds.len() > 1 {
        assert!(
            lost > 0 && duplicated > 0 && delayed > 0,
            "the faults struck"
        );
    }
}

#[test]
fn a_seed_replays_exactly() {
    let photo = std::fs::read(PHOTO).unwrap();
    for seed in [7, 1234] {
        assert_eq!(run(seed, &photo), run(seed, &photo), "seed {seed}");
    }
}

/// A push the server applied but whose answer was lost, then a clock correction: what the
/// server holds keeps its stamps on the device too (re-stamping it there would leave the two
/// copies different for good), and what it refused is re-stamped.
#[test]
fn a_push_whose_answer_was_lost_keeps_its_stamps_when_the_clock_is_corrected() {
    let photo = std::fs::read(PHOTO).unwrap();
    let sim = Sim::new(99, &photo);
    let ana = 0;
    sim.devices[ana]
        .clock
        .skew_ms
        .store(0, std::sync::atomic::Ordering::SeqCst);
    let at = Location::new(43.6450, -79.3950, Some(5.0), LocationSource::Gps).unwrap();
    let store = &sim.devices[ana].store;
    let id = store
        .create_draft(
            "CSROWR-12",
            &DraftEdit {
                description: Some("Pothole".into()),
                attributes: vec![("SIZE".into(), vec!["large".into()])],
                location: Some(Some(at)),
                ..DraftEdit::default()
            },
        )
        .unwrap();
    store.submit_draft(&id).unwrap();
    // The push arrives; every answer to it is lost.
    sim.net.set_faults(Faults {
        lose_answer: 1.0,
        ..Faults::default()
    });
    assert!(matches!(
        sim.devices[ana]
            .store
            .sync_with(&sim.net, &options(), &mut |_| {}),
        Err(Error::Network(_))
    ));
    // The phone's clock jumps a day ahead; its next note is stamped there.
    sim.devices[ana]
        .clock
        .skew_ms
        .store(DAY_MS, std::sync::atomic::Ordering::SeqCst);
    sim.devices[ana]
        .store
        .add_note(&id, "Still there", true)
        .unwrap();
    sim.net.set_faults(Faults::default());
    let report = sim.devices[ana]
        .store
        .sync_with(&sim.net, &options(), &mut |_| {})
        .unwrap();
    assert_eq!(report.restamped, 1, "only the refused note: {report:?}");
    let truth = log::document(&sim.server_db(), &RequestId::parse(&id).unwrap()).unwrap();
    let mine = sim.devices[ana].store.request(&id).unwrap();
    let (held, stored): (Vec<_>, Vec<_>) = (
        mine.history.iter().collect(),
        truth.history.iter().collect(),
    );
    assert_eq!(
        seen_as(Role::Resident, &truth, &held),
        seen_as(Role::Resident, &truth, &stored)
    );
    assert!(mine
        .history
        .iter()
        .all(|h| (h.change.hlc.ms() as i64) < sim.world.now_ms() + 60_000));
}

/// A history as a device with `role` sees it, for comparing with the server's: staff see every
/// change as stored; a resident sees the changes of every replica but the reporter's own under
/// pseudonyms (so those ids are left out, and changes stamped alike may sort differently).
fn seen_as(role: Role, truth: &Document, items: &[&HistoryItem]) -> Vec<(String, bool, bool)> {
    let reporter = truth
        .history
        .iter()
        .find(|h| h.change.field() == curbside_core::Field::Create)
        .map(|h| h.change.id.replica.clone());
    let mut out: Vec<(String, bool, bool)> = items
        .iter()
        .map(|h| {
            let id = if role == Role::Inspector || Some(&h.change.id.replica) == reporter.as_ref() {
                h.change.id.to_string()
            } else {
                "another".into()
            };
            (
                format!("{}|{}={}", h.change.hlc, id, h.change.value),
                h.current,
                h.conflict,
            )
        })
        .collect();
    if role == Role::Resident {
        out.sort_by(|a, b| a.0.cmp(&b.0));
    }
    out
}
