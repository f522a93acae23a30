//! Curbside's core: everything a 311 app does on the device, with no FFI and no async.
//!
//! [`Store`] is the entry point: one SQLite file holding the service catalogue (Open311
//! vocabulary) and the resident's requests, from offline draft through the queue to the city's
//! statuses. Nothing a person typed is lost: every write is one transaction.

pub mod catalog;
pub mod clock;
pub mod draft;
pub mod error;
pub mod geo;
pub mod known;
pub mod photo;
pub mod store;
pub mod sync;

pub use catalog::{
    Attribute, Catalog, Datatype, ListValue, Service, ServiceDefinition, ServiceType,
};
pub use draft::{
    Contact, Draft, DraftEdit, DraftSummary, HistoryEntry, Problem, ProblemKind, State,
};
pub use error::{Error, Result};
pub use geo::{GeoError, Jurisdiction, Location, LocationSource};
pub use photo::{PhotoError, PhotoOptions};
pub use store::{Durability, Progress, Registration, Store, SyncOptions, SyncReport};
pub use sync::{CancelToken, RetryPolicy};
