//! Conflict-free replication of service requests (DESIGN.md, "The service request as a
//! replicated document"): a hybrid logical clock per replica, a log of per-field changes, and
//! merge rules under which every replica holding the same changes holds the same request.
//!
//! - set once (`create` at creation, `service_request_id` by the server): never changes;
//! - last-writer-wins registers per field (`description`, `attr:CODE`, `location`, `address`,
//!   `status`, `priority`, `assignee`, `expected_at`, `visibility`, `contact`), by (stamp, replica);
//! - grow-only sets (`note`, `photo`) whose removals (`note_retract`, `photo_remove`) win;
//! - each register write carries the stamp it replaced, so concurrent writes are flagged in the
//!   history for a person, while the merge still picks one deterministically.

pub mod change;
pub mod client;
pub mod clock;
pub mod log;
pub(crate) mod materialize;
pub mod protocol;

pub use change::{Change, ChangeError, Kind};
pub use client::{CancelToken, RetryPolicy};
pub use clock::{Clock, Hlc};
pub use log::{apply, document, local_change, ApplyReport, Document, HistoryItem};
