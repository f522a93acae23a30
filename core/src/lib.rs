//! Curbside's core: everything a 311 app does on the device, with no FFI and no async.
//!
//! [`Store`] is the entry point: one SQLite file holding the service catalogue (Open311
//! vocabulary), the resident's requests from offline draft through the queue to the city's
//! statuses, and the change log that replicates them. Nothing a person typed is lost: every
//! write is one transaction. Layers, bottom up (ARCHITECTURE.md): `vocab` and `sql`; `geo`,
//! `photo`, `catalog`; `sync`; `request`; `store`.

pub mod catalog;
pub mod error;
pub mod geo;
pub mod photo;
pub mod request;
pub mod sql;
pub mod store;
pub mod sync;
pub mod vocab;

pub use catalog::{
    Attribute, Catalog, Datatype, ListValue, Service, ServiceDefinition, ServiceType, Standard,
};
pub use error::{Error, Forbidden, Missing, Result};
pub use geo::{GeoError, Jurisdiction};
pub use photo::{PhotoError, PhotoOptions};
pub use request::{
    known, AttachedPhoto, Draft, DraftEdit, DraftSummary, Duplicate, HistoryEntry, PhotoInfo,
    Update,
};
pub use store::{
    ChangeKind, Durability, Listener, ListenerId, Options, Origin, Registration, RequestEvent,
    Store, SyncFailure, SyncState,
};
pub use sync::engine::{CancelToken, Progress, RetryPolicy, SyncOptions, SyncReport};
pub use vocab::time as clock;
pub use vocab::{
    Clock, Contact, Field, FieldValue, Lifecycle, Location, LocationSource, ManualClock, Problem,
    ProblemKind, RequestId, SkewedClock, State, Status, SystemClock,
};
