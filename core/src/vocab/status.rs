//! Where a request is in its life, as two facts of different kinds:
//!
//! - [`Lifecycle`]: the device's own steps before the city holds the request (draft, queued,
//!   sent, delivered). Never replicated: another device has no use for them.
//! - [`Status`]: the city's status, a replicated field every replica agrees on.
//!
//! [`State`] is what a person sees: the lifecycle until the request is delivered, the city's
//! status after.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The city's status of a request it holds (Toronto's lifecycle), projected onto Open311's
/// `open`/`closed` by [`Status::is_open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The city holds it and gave it a public `service_request_id`.
    Accepted,
    InProgress,
    Scheduled,
    Completed,
    /// Cancelled: a duplicate, work already scheduled, or no work required.
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Accepted,
        Status::InProgress,
        Status::Scheduled,
        Status::Completed,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        State::from(self).as_str()
    }

    pub fn parse(s: &str) -> Option<Status> {
        State::parse(s).and_then(State::status)
    }

    /// Open311's projection: everything but completed and cancelled is `open`.
    pub fn is_open(self) -> bool {
        !matches!(self, Status::Completed | Status::Cancelled)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The device's steps with one of its own requests, until the city holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lifecycle {
    /// Being written; editable.
    Draft,
    /// Validated and waiting for a connection.
    Queued,
    /// Handed to the server; no answer yet.
    Sent,
    /// The server holds it and numbered it: from here the city's [`Status`] tells.
    Delivered,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Draft => "draft",
            Lifecycle::Queued => "queued",
            Lifecycle::Sent => "sent",
            Lifecycle::Delivered => "delivered",
        }
    }

    pub fn parse(s: &str) -> Option<Lifecycle> {
        [
            Lifecycle::Draft,
            Lifecycle::Queued,
            Lifecycle::Sent,
            Lifecycle::Delivered,
        ]
        .into_iter()
        .find(|l| l.as_str() == s)
    }
}

/// Where a request is, as a person sees it: the first three are the device's, the rest the
/// city's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Draft,
    Queued,
    Sent,
    Accepted,
    InProgress,
    Scheduled,
    Completed,
    Cancelled,
}

impl State {
    pub const ALL: [State; 8] = [
        State::Draft,
        State::Queued,
        State::Sent,
        State::Accepted,
        State::InProgress,
        State::Scheduled,
        State::Completed,
        State::Cancelled,
    ];

    /// What a person sees of a request at `lifecycle` whose city status is `status`.
    pub fn of(lifecycle: Lifecycle, status: Option<Status>) -> State {
        match lifecycle {
            Lifecycle::Draft => State::Draft,
            Lifecycle::Queued => State::Queued,
            Lifecycle::Sent => State::Sent,
            Lifecycle::Delivered => status.unwrap_or(Status::Accepted).into(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Draft => "draft",
            State::Queued => "queued",
            State::Sent => "sent",
            State::Accepted => "accepted",
            State::InProgress => "in_progress",
            State::Scheduled => "scheduled",
            State::Completed => "completed",
            State::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        let s = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The city's status this state is, if it is one.
    pub fn status(self) -> Option<Status> {
        Some(match self {
            State::Draft | State::Queued | State::Sent => return None,
            State::Accepted => Status::Accepted,
            State::InProgress => Status::InProgress,
            State::Scheduled => Status::Scheduled,
            State::Completed => Status::Completed,
            State::Cancelled => Status::Cancelled,
        })
    }

    /// The device's lifecycle step at this state.
    pub fn lifecycle(self) -> Lifecycle {
        match self {
            State::Draft => Lifecycle::Draft,
            State::Queued => Lifecycle::Queued,
            State::Sent => Lifecycle::Sent,
            _ => Lifecycle::Delivered,
        }
    }

    /// Open311's projection: everything but completed and cancelled is `open`.
    pub fn is_open(self) -> bool {
        self.status().is_none_or(Status::is_open)
    }

    /// A status the city's server may report for a request it has accepted.
    pub fn is_server_status(self) -> bool {
        self.status().is_some()
    }
}

impl From<Status> for State {
    fn from(s: Status) -> State {
        match s {
            Status::Accepted => State::Accepted,
            Status::InProgress => State::InProgress,
            Status::Scheduled => State::Scheduled,
            Status::Completed => State::Completed,
            Status::Cancelled => State::Cancelled,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_a_lifecycle_step_or_a_city_status_never_both() {
        for s in State::ALL {
            let back = State::of(s.lifecycle(), s.status());
            assert_eq!(back, s);
            assert_eq!(s.status().is_some(), s.lifecycle() == Lifecycle::Delivered);
        }
        assert_eq!(State::of(Lifecycle::Delivered, None), State::Accepted);
        assert_eq!(Status::parse("In-Progress"), Some(Status::InProgress));
        assert_eq!(Status::parse("queued"), None);
    }
}
