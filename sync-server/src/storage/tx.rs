//! What a push and a pull ask of a store, one step per method: each engine implements these in
//! its own SQL (`sqlite/tx.rs`, `postgres/tx.rs`), inside the transaction it runs the call in.
//! The rules built on them — admission, scope columns, filing in the feed, the view, the
//! backfill — are written once ([`super::push`], [`super::pull`]).
//!
//! The methods are shaped for a store across a network as much as for one in process: a push
//! of a caught-up device is a few statements (one read of what admission needs of a request,
//! one insert of its changes that returns their arrival numbers, one insert of their feed rows).

use std::collections::HashMap;

use curbside_core::sync::{Change, StoredChange};
use curbside_core::vocab::{Field, FieldValue, ReplicaId, RequestId};

use super::duplicates::Candidate;
use super::open311::{FoundRequest, Post, PriorPost, RequestQuery};
use crate::cursor::LogState;
use crate::scope::RequestScope;
use crate::ServerError;

pub type R<T> = Result<T, ServerError>;

/// A box of latitudes and longitudes: `((lat0, lat1), (lon0, lon1))`.
pub type Bbox = ((f64, f64), (f64, f64));

/// A change's arrival here: its number in the arrival order (cursors count these) and its
/// request.
pub type Arrival = (u64, RequestId);

/// A request the server has numbered, as admission needs it.
#[derive(Debug, Clone)]
pub struct Known {
    pub scope: RequestScope,
    /// Its public `service_request_id`.
    pub number: i64,
    /// How many changes of it the log holds (counted only when asked).
    pub changes: u64,
    /// Whether staff have acted on it yet (its acknowledgement).
    pub acknowledged: bool,
}

/// When a new request is due to be acknowledged and resolved, by its service's standard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dues {
    pub acknowledge: Option<i64>,
    pub resolve: Option<i64>,
}

/// What the scope rule reads of a request, set from its merged changes.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeColumns {
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub ward: Option<String>,
    pub status: &'static str,
    pub public: bool,
    /// The cell of the public feed it is filed under (located requests).
    pub cell: Option<String>,
    /// Its service (set once, by its creation; `None` keeps what is stored).
    pub service_code: Option<String>,
    /// How far its location may be off, in metres (the duplicate check widens by it).
    pub accuracy_m: Option<f64>,
}

/// A push's edit of the photo references of a request.
#[derive(Debug, Clone)]
pub struct PhotoEdit {
    pub sha256: String,
    pub request_id: RequestId,
    /// Added (or removed).
    pub present: bool,
}

/// A stretch of a device's feed.
#[derive(Debug, Default)]
pub struct Feed {
    /// The changes, in arrival order, with their arrival numbers.
    pub changes: Vec<(u64, StoredChange)>,
    /// Every entry filed under the keys after `after` and up to here was read: it is in
    /// `changes`, or its change is no longer logged (moved on or compacted).
    pub reached: u64,
    /// Feed entries read (at most the limit asked), including those of changes gone.
    pub covered: usize,
    /// Nothing is filed under the keys after `reached`.
    pub exhausted: bool,
}

/// What a pull starts from: the log's state and its latest arrival number (0 for an empty
/// log), and what the pull needs of its device.
#[derive(Debug, Clone)]
pub struct PullContext {
    pub state: LogState,
    pub end: u64,
    /// Where the device reported from, latest first, at most [`crate::scope::MAX_PLACES`].
    pub places: Vec<(f64, f64)>,
    /// The replica ids bound to it.
    pub own: Vec<ReplicaId>,
}

pub trait Tx {
    /// The devices these replica ids are bound to; an id bound to none is absent.
    fn replica_owners(&mut self, replicas: &[&ReplicaId]) -> R<HashMap<ReplicaId, String>>;
    /// The replica ids bound to `device_id`.
    fn replicas_of(&mut self, device_id: &str) -> R<Vec<ReplicaId>>;
    fn bind_replicas(&mut self, replicas: &[&ReplicaId], device_id: &str) -> R<()>;

    /// The numbered requests among `ids`, with the count of their changes if `count`.
    fn known(&mut self, ids: &[RequestId], count: bool) -> R<HashMap<RequestId, Known>>;
    /// Numbers new requests created by `device_id` (with when each is due by its standard):
    /// their rows and public numbers, in order.
    fn number(&mut self, ids: &[(RequestId, Dues)], device_id: &str, now_ms: i64) -> R<Vec<i64>>;
    /// Logs changes the server itself makes (requests' public numbers).
    fn record_own(&mut self, values: &[(RequestId, FieldValue)], now_ms: i64) -> R<Vec<Arrival>>;
    /// Logs changes from a device (one seen before is a no-op): the arrivals of those new here.
    fn apply(&mut self, changes: &[Change], now_ms: i64) -> R<Vec<Arrival>>;
    /// Adds and removes `device_id`'s references from requests to photos.
    fn photo_refs(&mut self, edits: &[PhotoEdit], device_id: &str) -> R<()>;
    /// Requests' changes (of `fields` only, if given), decoded, each request's in merge order.
    fn load(
        &mut self,
        ids: &[RequestId],
        fields: Option<&[Field]>,
    ) -> R<HashMap<RequestId, Vec<Change>>>;
    /// Sets what the scope rule reads of requests; a request whose status closes it is
    /// marked closed at `now_ms` (once), one that opens again is not.
    fn set_scopes(&mut self, scopes: &[(RequestId, ScopeColumns)], now_ms: i64) -> R<()>;
    /// Marks requests acknowledged at `now_ms`: staff acted on them (the first time counts).
    fn acknowledge(&mut self, ids: &[RequestId], now_ms: i64) -> R<()>;
    /// Moves a request's changes that arrived at or before `up_to` to the end of the arrival
    /// order, in their order, as if they arrived again: their new arrivals.
    fn arrive_again(&mut self, request_id: &RequestId, up_to: u64) -> R<Vec<Arrival>>;
    /// Files arrivals under feed keys, and notes that everything up to the latest arrival had
    /// arrived by `now_ms` (compaction drops only what arrived before its horizon).
    fn file(&mut self, entries: &[(String, u64)], now_ms: i64) -> R<()>;
    /// [`Tx::apply`], then [`Tx::file`] of what arrived under its request's `keys`: for a push
    /// that moves no request, whose keys are known before it is logged (one step where the
    /// engine can).
    fn apply_filed(
        &mut self,
        changes: &[Change],
        keys: &[(RequestId, String)],
        now_ms: i64,
    ) -> R<()> {
        let arrivals = self.apply(changes, now_ms)?;
        if arrivals.is_empty() {
            return Ok(());
        }
        let entries: Vec<(String, u64)> = arrivals
            .iter()
            .flat_map(|(seq, id)| {
                keys.iter()
                    .filter(move |(of, _)| of == id)
                    .map(move |(_, k)| (k.clone(), *seq))
            })
            .collect();
        self.file(&entries, now_ms)
    }

    /// The latest arrival number marked as arrived by `at_ms`, forgetting older marks (they say
    /// nothing more).
    fn arrived_by(&mut self, at_ms: i64) -> R<Option<u64>>;
    /// Numbered requests after `after` in id order, at most `limit`.
    fn requests_after(&mut self, after: Option<&RequestId>, limit: usize) -> R<Vec<RequestId>>;
    /// A request's changes with their arrival numbers, decoded.
    fn load_arrived(&mut self, request_id: &RequestId) -> R<Vec<(Change, u64)>>;
    /// Drops the changes that arrived as these numbers.
    fn forget(&mut self, seqs: &[u64]) -> R<()>;
    /// Records that compaction removed changes up to arrival number `reached`: cursors older
    /// than that, given before now, must resync in full.
    fn note_compaction(&mut self, reached: u64) -> R<()>;

    /// What a pull starts from ([`PullContext`]); the places only if `places` (residents).
    fn pull_context(&mut self, device_id: &str, places: bool) -> R<PullContext>;
    /// The scope rows of the numbered requests among `ids`.
    fn scope_rows(&mut self, ids: &[RequestId]) -> R<HashMap<RequestId, RequestScope>>;
    /// Where the located requests among `ids` are.
    fn places(&mut self, ids: &[RequestId]) -> R<HashMap<RequestId, (f64, f64)>>;
    /// Public, open requests filed in any of `cells`, not created by `not_by`, at most `limit`.
    fn open_near(&mut self, cells: &[String], not_by: &str, limit: usize) -> R<Vec<RequestId>>;
    /// The located requests among `ids`, as the duplicate rule reads them.
    fn duplicate_subjects(&mut self, ids: &[RequestId]) -> R<Vec<Candidate>>;
    /// Public, open requests of `service_code` filed in any of `cells` within the box
    /// `((lat0, lat1), (lon0, lon1))`, received since `since_ms`, other than `not`, at most
    /// `limit`.
    fn duplicate_candidates(
        &mut self,
        cells: &[String],
        service_code: &str,
        within: Bbox,
        since_ms: i64,
        not: &RequestId,
        limit: usize,
    ) -> R<Vec<Candidate>>;
    /// Records likely duplicates: (request, the other, metres apart).
    fn record_duplicates(&mut self, found: &[(RequestId, RequestId, f64)]) -> R<()>;
    /// The public requests recorded as likely duplicates of each of `ids`: their public
    /// numbers and how far apart, nearest first.
    fn likely_duplicates(&mut self, ids: &[RequestId]) -> R<HashMap<RequestId, Vec<(i64, f64)>>>;
    /// The post `key_id` made under `idempotency_key`, if it made one.
    fn prior_post(&mut self, key_id: &str, idempotency_key: &str) -> R<Option<PriorPost>>;
    /// Records a post (its key, idempotency key, fingerprint and token).
    fn save_post(&mut self, post: &Post) -> R<()>;
    /// The index rows of the public requests `q` finds, newest first, without their changes.
    fn find_requests(&mut self, q: &RequestQuery) -> R<Vec<FoundRequest>>;

    /// The changes filed under any of `keys` that arrived after `after`, each once, in arrival
    /// order, at most `limit` feed entries' worth, with their arrival numbers ([`Feed`]). Its
    /// work is bounded by `limit` and the number of keys, not by what is filed.
    fn feed(&mut self, keys: &[String], after: u64, limit: usize) -> R<Feed>;
}
