//! A change: one typed edit of one field of one request, stamped, and carrying the stamp of the
//! value its writer saw. Changes are the only thing replicas exchange. On the wire a change is
//! `{id, request_id, field, value, hlc, replica, replaced?}`, read through [`WireChange`] so a
//! bad one is refused with the request it belongs to.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::clock::Hlc;
pub use crate::error::ChangeError;
use crate::vocab::field::ValueError;
use crate::vocab::{ChangeId, Field, FieldValue, ReplicaId, RequestId};

#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Unique everywhere: the replica that made it and its counter there.
    pub id: ChangeId,
    pub request_id: RequestId,
    pub value: FieldValue,
    pub hlc: Hlc,
    /// For registers: the stamp of the value the writer replaced (none if it saw no value).
    pub replaced: Option<Hlc>,
}

impl Change {
    pub fn field(&self) -> Field {
        self.value.field()
    }

    pub fn replica(&self) -> &ReplicaId {
        &self.id.replica
    }

    /// Refuses a stamp further than `max_ahead_ms` ahead of `now_ms`: a device whose clock runs
    /// days ahead must not win every race.
    pub fn check_stamp(&self, now_ms: i64, max_ahead_ms: u64) -> Result<(), ChangeError> {
        let ahead = self.hlc.ms().saturating_sub(now_ms.max(0) as u64);
        if ahead > max_ahead_ms {
            return Err(ChangeError::FromTheFuture {
                id: self.id.to_string(),
                ahead_ms: ahead,
            });
        }
        Ok(())
    }

    pub fn to_wire(&self) -> WireChange {
        WireChange {
            id: self.id.to_string(),
            request_id: self.request_id.to_string(),
            field: self.field().name().into_owned(),
            value: self.value.to_json(),
            hlc: self.hlc.0,
            replica: self.id.replica.to_string(),
            replaced: self.replaced.map(|h| h.0),
        }
    }
}

/// A change as the wire and the log's readers see it: names and JSON, not yet checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireChange {
    pub id: String,
    pub request_id: String,
    pub field: String,
    pub value: Value,
    pub hlc: u64,
    pub replica: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<u64>,
}

impl TryFrom<WireChange> for Change {
    type Error = ChangeError;

    /// Checks everything but the stamp's distance from now: ids, the field, the value's shape.
    fn try_from(w: WireChange) -> Result<Change, ChangeError> {
        let id_text: String = w.id.chars().take(80).collect();
        let malformed = |reason: &str| ChangeError::Malformed {
            id: id_text.clone(),
            reason: reason.into(),
        };
        if w.id.is_empty() || w.id.len() > 128 {
            return Err(malformed(
                "id and replica must be 1–128 and 1–64 characters",
            ));
        }
        let replica = ReplicaId::parse(&w.replica)
            .ok_or_else(|| malformed("id and replica must be 1–128 and 1–64 characters"))?;
        let id = ChangeId::parse(&w.id, &replica)
            .ok_or_else(|| malformed("id must be replica:counter"))?;
        let request_id =
            RequestId::parse(&w.request_id).map_err(|_| malformed("request_id is not a UUID"))?;
        let value = FieldValue::decode(&w.field, w.value).map_err(|e| match e {
            ValueError::UnknownField(field) => ChangeError::UnknownField {
                id: id_text.clone(),
                field,
            },
            ValueError::Bad { field, reason } => ChangeError::BadValue {
                id: id_text.clone(),
                field,
                reason,
            },
        })?;
        Ok(Change {
            id,
            request_id,
            value,
            hlc: Hlc(w.hlc),
            replaced: w.replaced.map(Hlc),
        })
    }
}

impl Serialize for Change {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_wire().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Change {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Change::try_from(WireChange::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}
