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

    /// Refuses a stamp older than `horizon_ms` (the server's retention horizon).
    pub fn check_not_before(&self, horizon_ms: i64) -> Result<(), ChangeError> {
        if (self.hlc.ms() as i64) < horizon_ms {
            return Err(ChangeError::BeforeRetention {
                id: self.id.to_string(),
                horizon_ms,
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

/// A change as a log stores it and a server sends it on: the value kept as the JSON text it was
/// checked and stored as, decoded only as far as deciding who may see it needs (a note's
/// `public`). A server's pages are mostly this: decoding each value to encode it again would
/// cost more than the rest of a page.
#[derive(Debug, Clone)]
pub struct StoredChange {
    pub id: ChangeId,
    pub request_id: RequestId,
    pub field: Field,
    pub value: Box<serde_json::value::RawValue>,
    pub hlc: Hlc,
    pub replaced: Option<Hlc>,
}

impl StoredChange {
    /// For a note, whether it is public (an unreadable note counts as internal).
    pub fn note_public(&self) -> bool {
        #[derive(Deserialize)]
        struct Public {
            public: bool,
        }
        self.field == Field::Note
            && serde_json::from_str::<Public>(self.value.get()).is_ok_and(|n| n.public)
    }

    pub fn is_public(&self) -> bool {
        self.field.is_public(self.note_public())
    }

    pub fn is_internal_note(&self) -> bool {
        self.field == Field::Note && !self.note_public()
    }

    pub fn replica(&self) -> &ReplicaId {
        &self.id.replica
    }
}

impl From<&Change> for StoredChange {
    fn from(c: &Change) -> StoredChange {
        StoredChange {
            id: c.id.clone(),
            request_id: c.request_id,
            field: c.field(),
            value: serde_json::value::RawValue::from_string(c.value.to_json_text())
                .expect("values encode to JSON"),
            hlc: c.hlc,
            replaced: c.replaced,
        }
    }
}

/// A change as a log's columns hold it, its value the JSON text stored: what every store of a
/// log reads back (SQLite here, PostgreSQL on a server), decoded in one place. What a log holds
/// was checked on the way in, so a failure here means a damaged or hand-edited store.
#[derive(Debug, Clone, Copy)]
pub struct Columns<'a> {
    pub request_id: &'a str,
    pub replica: &'a str,
    pub counter: i64,
    pub field: &'a str,
    pub value: &'a str,
    pub hlc: i64,
    pub replaced: Option<i64>,
}

/// Why a row of a log could not be read back.
fn damaged(detail: impl ToString) -> crate::error::Error {
    crate::error::Error::Stored {
        what: "a logged change",
        detail: detail.to_string(),
    }
}

impl Columns<'_> {
    fn head(&self) -> crate::error::Result<(RequestId, ChangeId, Field)> {
        Ok((
            RequestId::parse(self.request_id).map_err(damaged)?,
            ChangeId {
                replica: ReplicaId::parse(self.replica).ok_or_else(|| damaged("replica id"))?,
                counter: self.counter as u64,
            },
            Field::parse(self.field).ok_or_else(|| damaged(format!("field {:?}", self.field)))?,
        ))
    }

    /// The change, its value decoded.
    pub fn change(&self) -> crate::error::Result<Change> {
        let (request_id, id, field) = self.head()?;
        Ok(Change {
            request_id,
            id,
            value: FieldValue::from_json_text(&field, self.value).map_err(damaged)?,
            hlc: Hlc(self.hlc as u64),
            replaced: self.replaced.map(|h| Hlc(h as u64)),
        })
    }

    /// The change as stored: its value is not decoded.
    pub fn stored(&self) -> crate::error::Result<StoredChange> {
        let (request_id, id, field) = self.head()?;
        Ok(StoredChange {
            request_id,
            id,
            field,
            value: serde_json::value::RawValue::from_string(self.value.to_string())
                .map_err(damaged)?,
            hlc: Hlc(self.hlc as u64),
            replaced: self.replaced.map(|h| Hlc(h as u64)),
        })
    }
}

/// The same wire form as [`Change`]'s, the value written as stored.
impl Serialize for StoredChange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        wire(
            s,
            &self.id,
            &self.request_id,
            &self.field,
            &self.value,
            self.hlc,
            self.replaced,
        )
    }
}

/// Writes a change's wire form: `{id, request_id, field, value, hlc, replica, replaced?}`.
fn wire<S: Serializer>(
    s: S,
    id: &ChangeId,
    request_id: &RequestId,
    field: &Field,
    value: &impl Serialize,
    hlc: Hlc,
    replaced: Option<Hlc>,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut st = s.serialize_struct("Change", 7)?;
    st.serialize_field("id", id)?;
    st.serialize_field("request_id", request_id)?;
    st.serialize_field("field", &*field.name())?;
    st.serialize_field("value", value)?;
    st.serialize_field("hlc", &hlc.0)?;
    st.serialize_field("replica", id.replica.as_str())?;
    if let Some(r) = replaced {
        st.serialize_field("replaced", &r.0)?;
    }
    st.end()
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
        let field = w.field;
        let value = w.value;
        build(w.id, &w.request_id, &w.replica, w.hlc, w.replaced, |id| {
            FieldValue::decode(&field, value).map_err(|e| refused(id, e))
        })
    }
}

fn refused(id: &str, e: ValueError) -> ChangeError {
    match e {
        ValueError::UnknownField(field) => ChangeError::UnknownField {
            id: id.to_string(),
            field,
        },
        ValueError::Bad { field, reason } => ChangeError::BadValue {
            id: id.to_string(),
            field,
            reason,
        },
    }
}

/// A change from its parts, checked: ids well formed, and the value `value` reads.
fn build(
    id: String,
    request_id: &str,
    replica: &str,
    hlc: u64,
    replaced: Option<u64>,
    value: impl FnOnce(&str) -> Result<FieldValue, ChangeError>,
) -> Result<Change, ChangeError> {
    // Quoted in errors, shortened; made only for an error.
    let id_text = || -> String { id.chars().take(80).collect() };
    let malformed = |reason: &str| ChangeError::Malformed {
        id: id_text(),
        reason: reason.into(),
    };
    if id.is_empty() || id.len() > 128 {
        return Err(malformed(
            "id and replica must be 1–128 and 1–64 characters",
        ));
    }
    let replica = ReplicaId::parse(replica)
        .ok_or_else(|| malformed("id and replica must be 1–128 and 1–64 characters"))?;
    let change_id =
        ChangeId::parse(&id, &replica).ok_or_else(|| malformed("id must be replica:counter"))?;
    let request_id =
        RequestId::parse(request_id).map_err(|_| malformed("request_id is not a UUID"))?;
    Ok(Change {
        id: change_id,
        request_id,
        value: value(&id)?,
        hlc: Hlc(hlc),
        replaced: replaced.map(Hlc),
    })
}

/// The wire form, written straight from the typed change.
impl Serialize for Change {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let field = self.field();
        wire(
            s,
            &self.id,
            &self.request_id,
            &field,
            &self.value,
            self.hlc,
            self.replaced,
        )
    }
}

/// Read as it streams: when `field` comes before `value`, as every Curbside writer puts it, the
/// value is decoded straight into its type; otherwise it is held as JSON until the end.
impl<'de> Deserialize<'de> for Change {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error as _, IgnoredAny, MapAccess, Visitor};

        enum Read {
            Typed(FieldValue),
            Held(Value),
        }

        struct Seed<'a>(&'a Field);
        impl<'de> serde::de::DeserializeSeed<'de> for Seed<'_> {
            type Value = FieldValue;
            fn deserialize<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<FieldValue, D::Error> {
                FieldValue::read(self.0, d).map_err(D::Error::custom)
            }
        }

        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Change;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a change")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Change, A::Error> {
                let (mut id, mut request_id, mut replica) = (None, None, None);
                let (mut field, mut value, mut hlc, mut replaced) = (None, None, None, None);
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match &*key {
                        "id" => id = Some(map.next_value::<String>()?),
                        "request_id" => request_id = Some(map.next_value::<String>()?),
                        "replica" => replica = Some(map.next_value::<String>()?),
                        "field" => {
                            let name = map.next_value::<std::borrow::Cow<'de, str>>()?;
                            field = Some(Field::parse(&name).ok_or_else(|| {
                                A::Error::custom(format!("unknown field {name:?}"))
                            })?);
                        }
                        "value" => {
                            value = Some(match &field {
                                Some(f) => Read::Typed(map.next_value_seed(Seed(f))?),
                                None => Read::Held(map.next_value::<Value>()?),
                            })
                        }
                        "hlc" => hlc = Some(map.next_value::<u64>()?),
                        "replaced" => replaced = map.next_value::<Option<u64>>()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let missing = |what: &'static str| A::Error::missing_field(what);
                let field = field.ok_or_else(|| missing("field"))?;
                let value = match value.ok_or_else(|| missing("value"))? {
                    Read::Typed(v) => Ok(v),
                    Read::Held(v) => FieldValue::from_json(&field, v),
                };
                build(
                    id.ok_or_else(|| missing("id"))?,
                    &request_id.ok_or_else(|| missing("request_id"))?,
                    &replica.ok_or_else(|| missing("replica"))?,
                    hlc.ok_or_else(|| missing("hlc"))?,
                    replaced,
                    |id| value.map_err(|e| refused(id, e)),
                )
                .map_err(A::Error::custom)
            }
        }
        d.deserialize_map(V)
    }
}
