//! The fields of a request and a typed value for each: what a change carries. [`Field::name`]
//! and [`FieldValue::to_json`] / [`FieldValue::from_json`] are the one encoding of both, shared
//! by the change log and the wire; nothing else spells a field's name.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::contact::Contact;
use super::ids::RequestId;
use super::limits::{
    too_long, MAX_ADDRESS_CHARS, MAX_ANSWER_BYTES, MAX_ANSWER_VALUES, MAX_ATTRIBUTE_CODE,
    MAX_CONTACT_CHARS, MAX_DESCRIPTION_CHARS, MAX_MEMBER_ID, MAX_NOTE_CHARS,
};
use super::location::Location;
use super::status::Status;

/// A field of a request. `Attribute` is one field per attribute code.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// Set once, at creation: the service and who made it.
    Create,
    /// Set once, by the server: the public number.
    ServiceRequestId,
    Description,
    Attribute(String),
    Location,
    Address,
    Status,
    Priority,
    Assignee,
    ExpectedAt,
    Visibility,
    /// The request this one repeats, as staff marked it.
    DuplicateOf,
    Contact,
    Note,
    NoteRetract,
    Photo,
    PhotoRemove,
}

const ATTRIBUTE_PREFIX: &str = "attr:";

impl Field {
    /// The field's name in the change log and on the wire.
    pub fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Field::Create => "create",
            Field::ServiceRequestId => "service_request_id",
            Field::Description => "description",
            Field::Attribute(code) => return Cow::Owned(format!("{ATTRIBUTE_PREFIX}{code}")),
            Field::Location => "location",
            Field::Address => "address",
            Field::Status => "status",
            Field::Priority => "priority",
            Field::Assignee => "assignee",
            Field::ExpectedAt => "expected_at",
            Field::Visibility => "visibility",
            Field::DuplicateOf => "duplicate_of",
            Field::Contact => "contact",
            Field::Note => "note",
            Field::NoteRetract => "note_retract",
            Field::Photo => "photo",
            Field::PhotoRemove => "photo_remove",
        })
    }

    pub fn parse(name: &str) -> Option<Field> {
        Some(match name {
            "create" => Field::Create,
            "service_request_id" => Field::ServiceRequestId,
            "description" => Field::Description,
            "location" => Field::Location,
            "address" => Field::Address,
            "status" => Field::Status,
            "priority" => Field::Priority,
            "assignee" => Field::Assignee,
            "expected_at" => Field::ExpectedAt,
            "visibility" => Field::Visibility,
            "duplicate_of" => Field::DuplicateOf,
            "contact" => Field::Contact,
            "note" => Field::Note,
            "note_retract" => Field::NoteRetract,
            "photo" => Field::Photo,
            "photo_remove" => Field::PhotoRemove,
            other => {
                let code = other.strip_prefix(ATTRIBUTE_PREFIX)?;
                // Control characters name no attribute, and a database may refuse them (NUL).
                if code.is_empty()
                    || code.len() > MAX_ATTRIBUTE_CODE
                    || code.chars().any(char::is_control)
                {
                    return None;
                }
                Field::Attribute(code.to_string())
            }
        })
    }
}

impl Field {
    /// Whether anyone near a request may see a change of this field: never contact details,
    /// assignees, priorities, expected dates or internal notes. `note_public`: for a note,
    /// whether it is public.
    pub fn is_public(&self, note_public: bool) -> bool {
        match self {
            Field::Create
            | Field::ServiceRequestId
            | Field::Description
            | Field::Location
            | Field::Address
            | Field::Status
            | Field::Visibility
            | Field::DuplicateOf
            | Field::Photo
            | Field::PhotoRemove
            | Field::NoteRetract => true,
            Field::Note => note_public,
            _ => false,
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.name())
    }
}

/// The creation of a request: its service, when, by which replica, through which channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Creation {
    pub service_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// `app` for Curbside apps; other channels (Open311, phone) come with the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }

    pub fn parse(s: &str) -> Option<Priority> {
        serde_json::from_value(Value::String(s.trim().to_ascii_lowercase())).ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Public,
    Private,
}

/// A note on a request: public (the reporter and nearby residents see it) or internal
/// (inspectors only). A note written with a status change carries that status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub id: String,
    pub author: String,
    pub text: String,
    pub public: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

/// A photo of a request, named by the SHA-256 of its processed JPEG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhotoRef {
    pub sha256: String,
    pub width: u32,
    pub height: u32,
}

/// A field with its value: what one change sets, adds or removes.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Create(Creation),
    ServiceRequestId(String),
    Description(String),
    /// An attribute code and its answer; an empty answer clears it.
    Attribute(String, Vec<String>),
    Location(Option<Location>),
    Address(Option<String>),
    Status(Status),
    Priority(Option<Priority>),
    Assignee(Option<String>),
    /// When the city expects to be done, in milliseconds since 1970.
    ExpectedAt(Option<i64>),
    Visibility(Visibility),
    /// The request this one repeats (staff's call; the resident sees that one's status).
    DuplicateOf(Option<RequestId>),
    /// Empty for an anonymous report: no contact details are replicated at all.
    Contact(Contact),
    Note(Note),
    /// The id of the note retracted.
    NoteRetract(String),
    Photo(PhotoRef),
    /// The SHA-256 of the photo removed.
    PhotoRemove(String),
}

/// The one encoding of values, for the log and the wire.
impl Serialize for FieldValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let one = |s: S, key: &str, value: &str| {
            let mut m = s.serialize_map(Some(1))?;
            m.serialize_entry(key, value)?;
            m.end()
        };
        match self {
            FieldValue::Create(c) => c.serialize(s),
            FieldValue::ServiceRequestId(t) | FieldValue::Description(t) => s.serialize_str(t),
            FieldValue::Attribute(_, values) => values.serialize(s),
            FieldValue::Location(l) => l.serialize(s),
            FieldValue::Address(a) | FieldValue::Assignee(a) => a.serialize(s),
            FieldValue::Status(x) => x.serialize(s),
            FieldValue::Priority(p) => p.serialize(s),
            FieldValue::ExpectedAt(t) => t.serialize(s),
            FieldValue::Visibility(v) => v.serialize(s),
            FieldValue::DuplicateOf(p) => p.serialize(s),
            FieldValue::Contact(c) if c.is_empty() => s.serialize_map(Some(0))?.end(),
            FieldValue::Contact(c) => c.serialize(s),
            FieldValue::Note(n) => n.serialize(s),
            FieldValue::NoteRetract(id) => one(s, "id", id),
            FieldValue::Photo(p) => p.serialize(s),
            FieldValue::PhotoRemove(sha) => one(s, "sha256", sha),
        }
    }
}

/// The value as the wire writes it (JSON).
impl fmt::Display for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_json(), f)
    }
}

/// A value that is not one its field can hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("unknown field {0:?}")]
    UnknownField(String),
    #[error("{field} {reason}")]
    Bad { field: String, reason: String },
}

impl FieldValue {
    pub fn field(&self) -> Field {
        match self {
            FieldValue::Create(_) => Field::Create,
            FieldValue::ServiceRequestId(_) => Field::ServiceRequestId,
            FieldValue::Description(_) => Field::Description,
            FieldValue::Attribute(code, _) => Field::Attribute(code.clone()),
            FieldValue::Location(_) => Field::Location,
            FieldValue::Address(_) => Field::Address,
            FieldValue::Status(_) => Field::Status,
            FieldValue::Priority(_) => Field::Priority,
            FieldValue::Assignee(_) => Field::Assignee,
            FieldValue::ExpectedAt(_) => Field::ExpectedAt,
            FieldValue::Visibility(_) => Field::Visibility,
            FieldValue::DuplicateOf(_) => Field::DuplicateOf,
            FieldValue::Contact(_) => Field::Contact,
            FieldValue::Note(_) => Field::Note,
            FieldValue::NoteRetract(_) => Field::NoteRetract,
            FieldValue::Photo(_) => Field::Photo,
            FieldValue::PhotoRemove(_) => Field::PhotoRemove,
        }
    }

    /// The id of the set member this value adds or removes (a note's id, a photo's hash).
    pub fn member(&self) -> Option<&str> {
        match self {
            FieldValue::Note(n) => Some(&n.id),
            FieldValue::NoteRetract(id) => Some(id),
            FieldValue::Photo(p) => Some(&p.sha256),
            FieldValue::PhotoRemove(sha) => Some(sha),
            _ => None,
        }
    }

    /// A note only inspectors see.
    pub fn is_internal_note(&self) -> bool {
        matches!(self, FieldValue::Note(n) if !n.public)
    }

    /// What only the city writes: statuses, assignments, priorities, public numbers, expected
    /// dates and internal notes. A resident's device neither makes nor may push these.
    pub fn is_inspector_only(&self) -> bool {
        matches!(
            self,
            FieldValue::Status(_)
                | FieldValue::Assignee(_)
                | FieldValue::Priority(_)
                | FieldValue::ExpectedAt(_)
                | FieldValue::DuplicateOf(_)
                | FieldValue::ServiceRequestId(_)
        ) || self.is_internal_note()
    }

    /// What anyone near a request may see of it: never contact details, assignees,
    /// priorities, expected dates or internal notes.
    pub fn is_public(&self) -> bool {
        self.field()
            .is_public(matches!(self, FieldValue::Note(n) if n.public))
    }

    /// The value as the change log and the wire carry it.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("values serialise")
    }

    /// [`FieldValue::to_json`] as text, without building the JSON tree: what the log stores.
    pub fn to_json_text(&self) -> String {
        serde_json::to_string(self).expect("values serialise")
    }

    /// Reads and checks a value of `field` (shape and limits): nothing unchecked gets in.
    pub fn from_json(field: &Field, v: Value) -> Result<FieldValue, ValueError> {
        FieldValue::read(field, v)
    }

    /// Reads a value of `field` from the text the log stores.
    pub fn from_json_text(field: &Field, text: &str) -> Result<FieldValue, ValueError> {
        FieldValue::read(field, &mut serde_json::Deserializer::from_str(text))
    }

    /// The one decoder, from any serde source (a JSON tree, log text, a change as it streams off
    /// the wire): the field's type first, then its limits.
    pub fn read<'de, D: Deserializer<'de>>(field: &Field, d: D) -> Result<FieldValue, ValueError> {
        let bad = |reason: &str| ValueError::Bad {
            field: field.name().into_owned(),
            reason: reason.into(),
        };
        macro_rules! read {
            ($t:ty, $reason:expr) => {
                <$t>::deserialize(d).map_err(|_| bad($reason))?
            };
        }
        #[derive(Deserialize)]
        struct Id {
            id: String,
        }
        #[derive(Deserialize)]
        struct Sha {
            sha256: String,
        }
        let text = "must be a string";
        let value = match field {
            Field::Create => FieldValue::Create(read!(Creation, "needs a service_code")),
            Field::ServiceRequestId => {
                FieldValue::ServiceRequestId(read!(String, "must be a string of digits"))
            }
            Field::Description => FieldValue::Description(read!(String, text)),
            Field::Address => FieldValue::Address(read!(Option<String>, text)),
            Field::Assignee => FieldValue::Assignee(read!(Option<String>, text)),
            Field::Priority => FieldValue::Priority(read!(
                Option<Priority>,
                "must be low, normal, high or urgent"
            )),
            Field::Visibility => {
                FieldValue::Visibility(read!(Visibility, "must be public or private"))
            }
            Field::Status => FieldValue::Status(read!(
                Status,
                "must be accepted, in_progress, scheduled, completed or cancelled"
            )),
            Field::DuplicateOf => {
                FieldValue::DuplicateOf(read!(Option<RequestId>, "must be a request id or null"))
            }
            Field::ExpectedAt => FieldValue::ExpectedAt(read!(
                Option<i64>,
                "must be milliseconds since 1970 or null"
            )),
            Field::Location => FieldValue::Location(read!(
                Option<Location>,
                "must be {lat, lon, accuracy_m, source}"
            )),
            Field::Contact => FieldValue::Contact(read!(
                Contact,
                "has only first_name, last_name, email and phone, as strings"
            )),
            Field::Attribute(code) => FieldValue::Attribute(
                code.clone(),
                read!(Vec<String>, "must be a list of strings"),
            ),
            Field::Note => FieldValue::Note(read!(Note, "must be {id, author, text, public}")),
            Field::Photo => FieldValue::Photo(read!(PhotoRef, "must be {sha256, width, height}")),
            Field::NoteRetract => FieldValue::NoteRetract(read!(Id, "must be {id}").id),
            Field::PhotoRemove => FieldValue::PhotoRemove(read!(Sha, "must be {sha256}").sha256),
        };
        value.check().map_err(|reason| bad(&reason))?;
        Ok(value)
    }

    /// The limits a value of the right type must keep.
    fn check(&self) -> Result<(), String> {
        let fail = |ok: bool, reason: &str| if ok { Ok(()) } else { Err(reason.to_string()) };
        let within = |s: &str, max: usize| {
            fail(
                !too_long(s, max),
                &format!("is longer than {max} characters"),
            )
        };
        let member = |s: &str, key: &str| {
            fail(
                !s.is_empty() && s.len() <= MAX_MEMBER_ID,
                &format!("must be {{{key}}}"),
            )
        };
        match self {
            FieldValue::Create(c) => fail(
                !c.service_code.is_empty()
                    && c.service_code.len() <= MAX_ATTRIBUTE_CODE
                    && [&c.created_by, &c.channel]
                        .into_iter()
                        .flatten()
                        .all(|s| s.len() <= MAX_MEMBER_ID),
                "needs a service_code (and at most 128 bytes of creator and channel)",
            ),
            FieldValue::ServiceRequestId(n) => fail(
                (1..=20).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()),
                "must be a string of digits",
            ),
            FieldValue::Description(d) => within(d, MAX_DESCRIPTION_CHARS),
            FieldValue::Address(Some(a)) | FieldValue::Assignee(Some(a)) => {
                within(a, MAX_ADDRESS_CHARS)
            }
            FieldValue::Location(Some(l)) => match l.problem() {
                Some(p) => Err(p.message),
                None => Ok(()),
            },
            FieldValue::Contact(c) => fail(
                ![&c.first_name, &c.last_name, &c.email, &c.phone]
                    .into_iter()
                    .flatten()
                    .any(|s| too_long(s, MAX_CONTACT_CHARS)),
                &format!("has details longer than {MAX_CONTACT_CHARS} characters"),
            ),
            FieldValue::Attribute(_, values) => fail(
                values.len() <= MAX_ANSWER_VALUES
                    && values.iter().all(|v| v.len() <= MAX_ANSWER_BYTES),
                "must be a list of strings",
            ),
            FieldValue::Note(n) => fail(
                !n.id.is_empty()
                    && n.id.len() <= MAX_MEMBER_ID
                    && !n.author.is_empty()
                    && n.author.len() <= MAX_MEMBER_ID
                    && !too_long(&n.text, MAX_NOTE_CHARS),
                "must be {id, author, text, public}",
            ),
            FieldValue::Photo(p) => fail(
                p.sha256.len() == 64 && p.sha256.bytes().all(|b| b.is_ascii_hexdigit()),
                "must be {sha256, width, height}",
            ),
            FieldValue::NoteRetract(id) => member(id, "id"),
            FieldValue::PhotoRemove(sha) => fail(
                sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
                "must be a photo's sha256",
            ),
            _ => Ok(()),
        }
    }

    /// [`FieldValue::from_json`] of a field named as the log and the wire name it.
    pub fn decode(name: &str, v: Value) -> Result<FieldValue, ValueError> {
        let field = Field::parse(name)
            .ok_or_else(|| ValueError::UnknownField(name.chars().take(64).collect()))?;
        FieldValue::from_json(&field, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::location::LocationSource;
    use serde_json::json;

    fn every_kind() -> Vec<FieldValue> {
        vec![
            FieldValue::Create(Creation {
                service_code: "CSROWR-12".into(),
                created_at: Some(1),
                created_by: Some("r1".into()),
                channel: Some("app".into()),
            }),
            FieldValue::ServiceRequestId("100001".into()),
            FieldValue::Description("Deep".into()),
            FieldValue::Attribute("SIZE".into(), vec!["large".into()]),
            FieldValue::Location(Some(
                Location::new(43.6, -79.4, Some(5.0), LocationSource::Gps).unwrap(),
            )),
            FieldValue::Location(None),
            FieldValue::Address(None),
            FieldValue::Status(Status::InProgress),
            FieldValue::Priority(Some(Priority::High)),
            FieldValue::Assignee(Some("Crew 4".into())),
            FieldValue::ExpectedAt(Some(5)),
            FieldValue::DuplicateOf(Some(
                RequestId::parse("0190f3a0-0000-7000-8000-000000000001").unwrap(),
            )),
            FieldValue::DuplicateOf(None),
            FieldValue::Visibility(Visibility::Private),
            FieldValue::Contact(Contact::default()),
            FieldValue::Contact(Contact {
                email: Some("a@b.ca".into()),
                ..Contact::default()
            }),
            FieldValue::Note(Note {
                id: "n1".into(),
                author: "inspector:d".into(),
                text: "Crew booked".into(),
                public: true,
                status: Some(Status::Scheduled),
            }),
            FieldValue::NoteRetract("n1".into()),
            FieldValue::Photo(PhotoRef {
                sha256: "a".repeat(64),
                width: 10,
                height: 20,
            }),
            FieldValue::PhotoRemove("a".repeat(64)),
        ]
    }

    #[test]
    fn every_value_survives_its_encoding() {
        for v in every_kind() {
            let field = v.field();
            assert_eq!(Field::parse(&field.name()), Some(field.clone()));
            let back = FieldValue::decode(&field.name(), v.to_json()).unwrap();
            assert_eq!(back, v);
            let text: Value = serde_json::from_str(&v.to_json_text()).unwrap();
            assert_eq!(text, v.to_json(), "one encoding, as text or tree");
        }
        // What older builds wrote reads the same.
        assert_eq!(
            FieldValue::Contact(Contact::default()).to_json_text(),
            "{}",
            "an anonymous report replicates no contact at all"
        );
        assert_eq!(
            FieldValue::Location(Some(
                Location::new(43.6, -79.4, None, LocationSource::Gps).unwrap()
            ))
            .to_json(),
            json!({"lat": 43.6, "lon": -79.4, "accuracy_m": null, "source": "gps"})
        );
    }

    #[test]
    fn values_of_the_wrong_shape_are_refused_with_their_field() {
        for (name, v) in [
            ("description", json!(5)),
            ("description", json!("x".repeat(4001))),
            ("status", json!("queued")),
            ("priority", json!("soon")),
            (
                "location",
                json!({"lat": 95.0, "lon": 0.0, "accuracy_m": null, "source": "gps"}),
            ),
            ("contact", json!({"ssn": "1"})),
            ("attr:SIZE", json!([1])),
            (
                "note",
                json!({"id": "", "author": "a", "text": "t", "public": true}),
            ),
            ("photo", json!({"sha256": "zz", "width": 1, "height": 1})),
            ("service_request_id", json!("12a")),
        ] {
            let err = FieldValue::decode(name, v).unwrap_err();
            assert!(
                matches!(&err, ValueError::Bad { field, .. } if field == name),
                "{err}"
            );
        }
        assert!(matches!(
            FieldValue::decode("colour", json!(1)),
            Err(ValueError::UnknownField(_))
        ));
        assert!(Field::parse("attr:").is_none());
    }
}
