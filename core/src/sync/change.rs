//! A change: one edit of one field of one request, stamped, and carrying the stamp of the value
//! its writer saw. Changes are the only thing replicas exchange.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::clock::Hlc;
use crate::draft::{State, MAX_DESCRIPTION_CHARS};
use crate::geo::{Location, LocationSource};

/// How a field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Set at creation, never changed: the lowest stamp wins if two ever disagree.
    Once,
    /// Last writer wins, by (stamp, replica).
    Register,
    /// Grow-only set of members identified by an id inside the value.
    Add,
    /// Removal of a member; beats its addition whatever the order.
    Remove,
}

/// The fields of a request and how each merges. `attr:CODE` is one register per attribute.
pub fn kind_of(field: &str) -> Option<Kind> {
    match field {
        // The public number is given once, by the server.
        "create" | "service_request_id" => Some(Kind::Once),
        "description" | "location" | "address" | "status" | "priority" | "assignee"
        | "expected_at" | "visibility" | "contact" => Some(Kind::Register),
        f if f
            .strip_prefix("attr:")
            .is_some_and(|c| !c.is_empty() && c.len() <= 64) =>
        {
            Some(Kind::Register)
        }
        "note" | "photo" => Some(Kind::Add),
        "note_retract" | "photo_remove" => Some(Kind::Remove),
        _ => None,
    }
}

/// A note only inspectors see.
pub fn is_internal_note(field: &str, value: &Value) -> bool {
    field == "note" && value["public"] != Value::Bool(true)
}

/// What only the city writes: statuses, assignments, priorities, public numbers and internal
/// notes. A resident's device neither makes nor may push these.
pub fn inspector_only(field: &str, value: &Value) -> bool {
    matches!(
        field,
        "status" | "assignee" | "priority" | "service_request_id"
    ) || is_internal_note(field, value)
}

/// The set a member field belongs to, for `Add` and `Remove` fields.
pub fn set_of(field: &str) -> Option<&'static str> {
    match field {
        "note" | "note_retract" => Some("note"),
        "photo" | "photo_remove" => Some("photo"),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Unique everywhere: `{replica}:{counter}`.
    pub id: String,
    pub request_id: String,
    pub field: String,
    pub value: Value,
    pub hlc: Hlc,
    pub replica: String,
    /// For registers: the stamp of the value the writer replaced (none if it saw no value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<Hlc>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("change {id}: unknown field {field:?}")]
    UnknownField { id: String, field: String },
    #[error("change {id}: {field} {reason}")]
    BadValue {
        id: String,
        field: String,
        reason: String,
    },
    #[error("change {id}: {reason}")]
    Malformed { id: String, reason: String },
    #[error("change {id} is stamped {ahead_ms} ms in the future; the device's clock is wrong")]
    FromTheFuture { id: String, ahead_ms: u64 },
}

impl Change {
    /// Checks the change before it touches any state: field known, value of the right shape,
    /// stamp not too far ahead of `now_ms`.
    pub fn check(&self, now_ms: i64, max_ahead_ms: u64) -> Result<Kind, ChangeError> {
        let malformed = |reason: &str| ChangeError::Malformed {
            id: self.id.chars().take(80).collect(),
            reason: reason.into(),
        };
        if self.id.is_empty()
            || self.id.len() > 128
            || self.replica.is_empty()
            || self.replica.len() > 64
        {
            return Err(malformed(
                "id and replica must be 1–128 and 1–64 characters",
            ));
        }
        if self.counter().is_none() {
            return Err(malformed("id must be replica:counter"));
        }
        if uuid::Uuid::parse_str(&self.request_id).is_err() {
            return Err(malformed("request_id is not a UUID"));
        }
        let kind = kind_of(&self.field).ok_or_else(|| ChangeError::UnknownField {
            id: self.id.clone(),
            field: self.field.chars().take(64).collect(),
        })?;
        let ahead = self.hlc.ms().saturating_sub(now_ms.max(0) as u64);
        if ahead > max_ahead_ms {
            return Err(ChangeError::FromTheFuture {
                id: self.id.clone(),
                ahead_ms: ahead,
            });
        }
        let bad = |reason: &str| ChangeError::BadValue {
            id: self.id.clone(),
            field: self.field.clone(),
            reason: reason.into(),
        };
        let v = &self.value;
        let text = |max: usize| -> Result<(), ChangeError> {
            match v.as_str() {
                Some(s) if s.chars().count() <= max => Ok(()),
                Some(_) => Err(bad(&format!("is longer than {max} characters"))),
                None => Err(bad("must be a string")),
            }
        };
        let nullable_text = |max: usize| if v.is_null() { Ok(()) } else { text(max) };
        match self.field.as_str() {
            "create" => {
                if !v.get("service_code").is_some_and(Value::is_string) {
                    return Err(bad("needs a service_code"));
                }
            }
            "service_request_id" => {
                if !v.as_str().is_some_and(|s| {
                    (1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
                }) {
                    return Err(bad("must be a string of digits"));
                }
            }
            "description" => text(MAX_DESCRIPTION_CHARS)?,
            "address" | "assignee" => nullable_text(200)?,
            "priority" => {
                if !(v.is_null()
                    || matches!(v.as_str(), Some("low" | "normal" | "high" | "urgent")))
                {
                    return Err(bad("must be low, normal, high or urgent"));
                }
            }
            "visibility" => {
                if !matches!(v.as_str(), Some("public" | "private")) {
                    return Err(bad("must be public or private"));
                }
            }
            "status" => {
                if !v
                    .as_str()
                    .and_then(State::parse)
                    .is_some_and(State::is_server_status)
                {
                    return Err(bad(
                        "must be accepted, in_progress, scheduled, completed or cancelled",
                    ));
                }
            }
            "expected_at" => {
                if !(v.is_null() || v.as_i64().is_some()) {
                    return Err(bad("must be milliseconds since 1970 or null"));
                }
            }
            "location" => {
                if !v.is_null() {
                    let l = Location::deserialize(v)
                        .map_err(|_| bad("must be {lat, lon, accuracy_m, source}"))?;
                    if let Some(p) = l.problem() {
                        return Err(bad(&p.message));
                    }
                }
            }
            "contact" => {
                let c = v.as_object().ok_or_else(|| bad("must be an object"))?;
                for (k, x) in c {
                    if !matches!(k.as_str(), "first_name" | "last_name" | "email" | "phone")
                        || !(x.is_null() || x.is_string())
                    {
                        return Err(bad(
                            "has only first_name, last_name, email and phone, as strings",
                        ));
                    }
                }
            }
            f if f.starts_with("attr:") => {
                let ok = v.as_array().is_some_and(|a| {
                    a.len() <= 32
                        && a.iter()
                            .all(|x| x.as_str().is_some_and(|s| s.len() <= 4000))
                });
                if !ok {
                    return Err(bad("must be a list of strings"));
                }
            }
            "note" => {
                let ok = v["id"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty() && s.len() <= 128)
                    && v["text"]
                        .as_str()
                        .is_some_and(|s| s.chars().count() <= 4000)
                    && v["author"].is_string()
                    && v["public"].is_boolean();
                if !ok {
                    return Err(bad("must be {id, author, text, public}"));
                }
            }
            "photo" => {
                let ok = v["sha256"]
                    .as_str()
                    .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
                    && v["width"].as_u64().is_some()
                    && v["height"].as_u64().is_some();
                if !ok {
                    return Err(bad("must be {sha256, width, height}"));
                }
            }
            "note_retract" | "photo_remove" => {
                let key = if self.field == "note_retract" {
                    "id"
                } else {
                    "sha256"
                };
                if !v[key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty() && s.len() <= 128)
                {
                    return Err(bad(&format!("must be {{{key}}}")));
                }
            }
            _ => unreachable!("kind_of knows the field"),
        }
        Ok(kind)
    }

    /// The counter of the id `{replica}:{counter}` every change has.
    pub fn counter(&self) -> Option<u64> {
        self.id
            .strip_prefix(self.replica.as_str())?
            .strip_prefix(':')?
            .parse()
            .ok()
    }

    /// The id of the set member this change adds or removes.
    pub fn member(&self) -> Option<String> {
        match self.field.as_str() {
            "note" | "note_retract" => self.value["id"].as_str().map(str::to_string),
            "photo" | "photo_remove" => self.value["sha256"].as_str().map(str::to_string),
            _ => None,
        }
    }
}

/// A location as a change value.
pub fn location_value(l: Option<&Location>) -> Value {
    match l {
        None => Value::Null,
        Some(l) => serde_json::json!({
            "lat": l.lat, "lon": l.lon, "accuracy_m": l.accuracy_m,
            "source": serde_json::to_value(l.source).unwrap_or(Value::String(LocationSource::MapPin.as_str().into())),
        }),
    }
}
