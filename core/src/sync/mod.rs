//! Conflict-free replication of service requests (DESIGN.md, "The service request as a
//! replicated document"), in layers:
//!
//! - [`clock`]: the hybrid logical clock every change is stamped with;
//! - [`change`]: a typed change and its wire form;
//! - [`merge`]: the merge rules, a pure function of a set of changes;
//! - [`schema`] and [`log`]: the change log's tables and their storage, in a device's store and
//!   in the server's file alike;
//! - [`protocol`] and [`page`], [`transport`], [`engine`]: the sync protocol's messages (a
//!   pull's page in runs of one request and replica), how a server is
//!   reached, and the rounds that push and pull — with no HTTP in them. [`http`] (feature
//!   `client`) is the HTTP transport.

pub mod change;
pub mod clock;
pub mod engine;
#[cfg(feature = "client")]
pub mod http;
pub mod log;
pub mod merge;
pub mod page;
pub mod protocol;
pub mod schema;
pub mod transport;

pub use change::{Change, ChangeError, StoredChange, WireChange};
pub use clock::{Clock, Hlc};
pub use engine::{CancelToken, Progress, RetryPolicy, SyncOptions, SyncReport};
pub use log::{apply, document, ApplyReport};
pub use merge::{Document, HistoryItem};
pub use transport::{Refusal, Transport};
