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

use crate::cursor::LogState;
use crate::scope::RequestScope;
use crate::ServerError;

pub type R<T> = Result<T, ServerError>;

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
}

pub trait Tx {
    /// The devices these replica ids are bound to; an id bound to none is absent.
    fn replica_owners(&mut self, replicas: &[&ReplicaId]) -> R<HashMap<ReplicaId, String>>;
    /// The replica ids bound to `device_id`.
    fn replicas_of(&mut self, device_id: &str) -> R<Vec<ReplicaId>>;
    fn bind_replica(&mut self, replica: &ReplicaId, device_id: &str) -> R<()>;

    /// A numbered request, with the count of its changes if `count`.
    fn known(&mut self, request_id: &RequestId, count: bool) -> R<Option<Known>>;
    /// Numbers a new request created by `device_id`: its row and its public number.
    fn number(&mut self, request_id: &RequestId, device_id: &str, now_ms: i64) -> R<i64>;
    /// Logs a change the server itself makes (a request's public number).
    fn record_own(
        &mut self,
        request_id: &RequestId,
        value: FieldValue,
        now_ms: i64,
    ) -> R<Vec<Arrival>>;
    /// Logs changes from a device (one seen before is a no-op): the arrivals of those new here.
    fn apply(&mut self, changes: &[Change], now_ms: i64) -> R<Vec<Arrival>>;
    /// Adds (or, `present` false, removes) `device_id`'s reference from a request to a photo.
    fn photo_ref(
        &mut self,
        sha256: &str,
        request_id: &RequestId,
        device_id: &str,
        present: bool,
    ) -> R<()>;
    /// A request's changes (of `fields` only, if given), decoded, in merge order.
    fn load(&mut self, request_id: &RequestId, fields: Option<&[Field]>) -> R<Vec<Change>>;
    fn set_scope(&mut self, request_id: &RequestId, scope: &ScopeColumns) -> R<()>;
    /// Moves a request's changes that arrived at or before `up_to` to the end of the arrival
    /// order, in their order, as if they arrived again: their new arrivals.
    fn arrive_again(&mut self, request_id: &RequestId, up_to: u64) -> R<Vec<Arrival>>;
    /// Notes that everything up to the latest arrival had arrived by `now_ms` (compaction
    /// drops only what arrived before its horizon).
    fn mark_arrivals(&mut self, now_ms: i64) -> R<()>;
    /// Files arrivals under feed keys.
    fn file(&mut self, entries: &[(String, u64)]) -> R<()>;

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

    /// The server's id and how far compaction has reached.
    fn log_state(&mut self) -> R<LogState>;
    /// The latest arrival number (0 for an empty log).
    fn last_seq(&mut self) -> R<u64>;
    /// Where a resident reported from, latest first, at most [`crate::scope::MAX_PLACES`].
    fn reported_places(&mut self, device_id: &str) -> R<Vec<(f64, f64)>>;
    fn scope_row(&mut self, request_id: &RequestId) -> R<Option<RequestScope>>;
    /// Where a request is, if it is located.
    fn place(&mut self, request_id: &RequestId) -> R<Option<(f64, f64)>>;
    /// Public, open requests filed in `cell` not created by `not_by`, at most `limit`.
    fn open_in_cell(&mut self, cell: &str, not_by: &str, limit: usize) -> R<Vec<RequestId>>;
    /// The changes filed under any of `keys` that arrived after `after`, each once, in arrival
    /// order, at most `limit`, with their arrival numbers. Reads about `limit` feed rows per key.
    fn feed(&mut self, keys: &[String], after: u64, limit: usize) -> R<Vec<(u64, StoredChange)>>;
}
