//! The words every other module speaks: ids, fields and their typed values, statuses, problems,
//! limits, locations, contact details, time (and Toronto's business days) and randomness.
//! Depends on nothing else in the crate, so anything may use it.

pub mod calendar;
pub mod contact;
pub mod field;
pub mod ids;
pub mod limits;
pub mod location;
pub mod problem;
pub mod status;
pub mod time;

pub use contact::Contact;
pub use field::{Creation, Field, FieldValue, Note, PhotoRef, Priority, Visibility};
pub use ids::{BadId, ChangeId, Entropy, IdSource, OsEntropy, ReplicaId, RequestId, SeededEntropy};
pub use location::{Location, LocationSource};
pub use problem::{Problem, ProblemKind};
pub use status::{Lifecycle, State, Status};
pub use time::{Clock, ManualClock, SkewedClock, SystemClock};
