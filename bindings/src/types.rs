//! Records and enums as apps see them, with their conversions from and to the core's types.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use curbside_core as core;
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ServiceType {
    Realtime,
    Batch,
    Blackbox,
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Service {
    pub code: String,
    pub name: String,
    pub description: Option<String>,
    pub metadata: bool,
    pub service_type: ServiceType,
    pub keywords: Option<String>,
    pub group: Option<String>,
    /// The city's promise, in words ("The City acknowledges this request within 2 business
    /// days…").
    pub standard: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Datatype {
    String,
    Number,
    Datetime,
    Text,
    SingleValueList,
    MultiValueList,
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ListValue {
    pub key: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Attribute {
    /// False: informational text to show, not a question.
    pub variable: bool,
    pub code: String,
    pub datatype: Datatype,
    pub required: bool,
    pub datatype_description: Option<String>,
    pub order: u32,
    pub description: String,
    pub values: Vec<ListValue>,
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ServiceDefinition {
    pub service_code: String,
    pub attributes: Vec<Attribute>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum LocationSource {
    Gps,
    Network,
    MapPin,
    Photo,
}

#[derive(Debug, Clone, Copy, PartialEq, uniffi::Record)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
    /// Horizontal accuracy in metres, as the platform reports it (~68% radius).
    #[uniffi(default)]
    pub accuracy_m: Option<f64>,
    pub source: LocationSource,
}

/// Private: sent to the city only, never shown publicly.
#[derive(Clone, Default, PartialEq, uniffi::Record)]
pub struct Contact {
    #[uniffi(default)]
    pub first_name: Option<String>,
    #[uniffi(default)]
    pub last_name: Option<String>,
    #[uniffi(default)]
    pub email: Option<String>,
    #[uniffi(default)]
    pub phone: Option<String>,
}

impl std::fmt::Debug for Contact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        core::Contact::from(self.clone()).fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum RequestState {
    Draft,
    Queued,
    Sent,
    Accepted,
    InProgress,
    Scheduled,
    Completed,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct HistoryEntry {
    pub at: SystemTime,
    pub from: Option<RequestState>,
    pub to: RequestState,
    pub note: Option<String>,
}

/// One answer to a service attribute: several values for a multivaluelist, one otherwise.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct AttributeAnswer {
    pub code: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Draft {
    pub id: String,
    pub service_code: String,
    /// Null when the catalogue no longer offers the service.
    pub service_name: Option<String>,
    pub state: RequestState,
    pub description: String,
    pub attributes: HashMap<String, Vec<String>>,
    pub location: Option<Location>,
    pub address: Option<String>,
    pub contact: Contact,
    pub anonymous: bool,
    pub service_request_id: Option<String>,
    pub status_notes: Option<String>,
    /// When the city expects to resolve it ("expected by …"): the date it set, or its service
    /// standard counted from when the request was queued. Null for a draft.
    pub expected_at: Option<SystemTime>,
    /// The request the city found this one repeats, with its status as this device knows it.
    pub duplicate_of: Option<DuplicateOf>,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
    /// The ward, named when the request was queued.
    pub ward: Option<Ward>,
    pub photos: Vec<PhotoInfo>,
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct DuplicateOf {
    pub id: String,
    pub service_request_id: Option<String>,
    pub state: Option<RequestState>,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Ward {
    pub code: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct NearbyRequest {
    pub id: String,
    pub distance_m: f64,
    pub created_at: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PhotoInfo {
    /// SHA-256 of the processed JPEG: the photo's name everywhere.
    pub sha256: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub thumbnail_width: u32,
    pub thumbnail_height: u32,
    pub thumbnail_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct AttachedPhoto {
    pub photo: PhotoInfo,
    pub quality: u8,
    /// The draft had no location and now has the photo's GPS fix.
    pub location_taken: bool,
    /// The same photo was attached before; nothing changed.
    pub already_attached: bool,
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct DraftSummary {
    pub id: String,
    pub service_code: String,
    pub service_name: Option<String>,
    pub state: RequestState,
    pub excerpt: String,
    pub has_location: bool,
    pub address: Option<String>,
    pub service_request_id: Option<String>,
    pub created_at: SystemTime,
}

/// Changes applied together; fields left null are not touched.
#[derive(Debug, Clone, Default, PartialEq, uniffi::Record)]
pub struct DraftEdit {
    #[uniffi(default)]
    pub description: Option<String>,
    /// An answer with no values clears it.
    #[uniffi(default)]
    pub attributes: Vec<AttributeAnswer>,
    #[uniffi(default)]
    pub location: Option<Location>,
    #[uniffi(default)]
    pub clear_location: bool,
    #[uniffi(default)]
    pub address: Option<String>,
    #[uniffi(default)]
    pub clear_address: bool,
    /// Replaces all contact fields.
    #[uniffi(default)]
    pub contact: Option<Contact>,
    #[uniffi(default)]
    pub anonymous: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ProblemKind {
    Required,
    TooLong,
    NotANumber,
    NotADatetime,
    NotInList,
    OneValueOnly,
    UnknownAttribute,
    NotAnInput,
    OutOfRange,
    ServiceGone,
    Malformed,
}

/// A problem to show next to `field` (Open311 names: `description`, `attribute[CODE]`,
/// `location`, `address_string`, `email`, …).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Problem {
    pub field: String,
    pub kind: ProblemKind,
    pub message: String,
}

// ---- conversions ----

/// Milliseconds since 1970 as a platform time (before 1970: 1970).
pub(crate) fn ms_time(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

fn system_time(t: OffsetDateTime) -> SystemTime {
    ms_time((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

impl From<core::ServiceType> for ServiceType {
    fn from(t: core::ServiceType) -> Self {
        match t {
            core::ServiceType::Realtime => ServiceType::Realtime,
            core::ServiceType::Batch => ServiceType::Batch,
            core::ServiceType::Blackbox => ServiceType::Blackbox,
        }
    }
}

impl From<core::Service> for Service {
    fn from(s: core::Service) -> Self {
        Service {
            code: s.code,
            name: s.name,
            description: s.description,
            metadata: s.metadata,
            service_type: s.kind.into(),
            keywords: s.keywords,
            group: s.group,
            standard: s.standard.notice(),
        }
    }
}

impl From<core::Datatype> for Datatype {
    fn from(d: core::Datatype) -> Self {
        match d {
            core::Datatype::String => Datatype::String,
            core::Datatype::Number => Datatype::Number,
            core::Datatype::Datetime => Datatype::Datetime,
            core::Datatype::Text => Datatype::Text,
            core::Datatype::SingleValueList => Datatype::SingleValueList,
            core::Datatype::MultiValueList => Datatype::MultiValueList,
        }
    }
}

impl From<core::ServiceDefinition> for ServiceDefinition {
    fn from(d: core::ServiceDefinition) -> Self {
        ServiceDefinition {
            service_code: d.service_code,
            attributes: d
                .attributes
                .into_iter()
                .map(|a| Attribute {
                    variable: a.variable,
                    code: a.code,
                    datatype: a.datatype.into(),
                    required: a.required,
                    datatype_description: a.datatype_description,
                    order: a.order,
                    description: a.description,
                    values: a
                        .values
                        .into_iter()
                        .map(|v| ListValue {
                            key: v.key,
                            name: v.name,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl From<core::LocationSource> for LocationSource {
    fn from(s: core::LocationSource) -> Self {
        match s {
            core::LocationSource::Gps => LocationSource::Gps,
            core::LocationSource::Network => LocationSource::Network,
            core::LocationSource::MapPin => LocationSource::MapPin,
            core::LocationSource::Photo => LocationSource::Photo,
        }
    }
}

impl From<LocationSource> for core::LocationSource {
    fn from(s: LocationSource) -> Self {
        match s {
            LocationSource::Gps => core::LocationSource::Gps,
            LocationSource::Network => core::LocationSource::Network,
            LocationSource::MapPin => core::LocationSource::MapPin,
            LocationSource::Photo => core::LocationSource::Photo,
        }
    }
}

impl From<core::Location> for Location {
    fn from(l: core::Location) -> Self {
        Location {
            lat: l.lat,
            lon: l.lon,
            accuracy_m: l.accuracy_m,
            source: l.source.into(),
        }
    }
}

// Unchecked on purpose: the store checks every location it is given and reports problems.
impl From<Location> for core::Location {
    fn from(l: Location) -> Self {
        core::Location {
            lat: l.lat,
            lon: l.lon,
            accuracy_m: l.accuracy_m,
            source: l.source.into(),
        }
    }
}

impl From<core::Contact> for Contact {
    fn from(c: core::Contact) -> Self {
        Contact {
            first_name: c.first_name,
            last_name: c.last_name,
            email: c.email,
            phone: c.phone,
        }
    }
}

impl From<Contact> for core::Contact {
    fn from(c: Contact) -> Self {
        core::Contact {
            first_name: c.first_name,
            last_name: c.last_name,
            email: c.email,
            phone: c.phone,
        }
    }
}

impl From<core::State> for RequestState {
    fn from(s: core::State) -> Self {
        match s {
            core::State::Draft => RequestState::Draft,
            core::State::Queued => RequestState::Queued,
            core::State::Sent => RequestState::Sent,
            core::State::Accepted => RequestState::Accepted,
            core::State::InProgress => RequestState::InProgress,
            core::State::Scheduled => RequestState::Scheduled,
            core::State::Completed => RequestState::Completed,
            core::State::Cancelled => RequestState::Cancelled,
        }
    }
}

impl From<RequestState> for core::State {
    fn from(s: RequestState) -> Self {
        match s {
            RequestState::Draft => core::State::Draft,
            RequestState::Queued => core::State::Queued,
            RequestState::Sent => core::State::Sent,
            RequestState::Accepted => core::State::Accepted,
            RequestState::InProgress => core::State::InProgress,
            RequestState::Scheduled => core::State::Scheduled,
            RequestState::Completed => core::State::Completed,
            RequestState::Cancelled => core::State::Cancelled,
        }
    }
}

impl From<core::Draft> for Draft {
    fn from(d: core::Draft) -> Self {
        Draft {
            id: d.id,
            service_code: d.service_code,
            service_name: d.service_name,
            state: d.state.into(),
            description: d.description,
            attributes: d.attributes.into_iter().collect(),
            location: d.location.map(Into::into),
            address: d.address,
            contact: d.contact.into(),
            anonymous: d.anonymous,
            service_request_id: d.service_request_id,
            status_notes: d.status_notes,
            expected_at: d.expected_at.map(system_time),
            duplicate_of: d.duplicate_of.map(|p| DuplicateOf {
                id: p.id,
                service_request_id: p.service_request_id,
                state: p.state.map(Into::into),
            }),
            created_at: system_time(d.created_at),
            updated_at: system_time(d.updated_at),
            ward: d.ward.map(Into::into),
            photos: d.photos.into_iter().map(Into::into).collect(),
            history: d
                .history
                .into_iter()
                .map(|h| HistoryEntry {
                    at: system_time(h.at),
                    from: h.from.map(Into::into),
                    to: h.to.into(),
                    note: h.note,
                })
                .collect(),
        }
    }
}

impl From<core::DraftSummary> for DraftSummary {
    fn from(s: core::DraftSummary) -> Self {
        DraftSummary {
            id: s.id,
            service_code: s.service_code,
            service_name: s.service_name,
            state: s.state.into(),
            excerpt: s.excerpt,
            has_location: s.has_location,
            address: s.address,
            service_request_id: s.service_request_id,
            created_at: system_time(s.created_at),
        }
    }
}

impl From<DraftEdit> for core::DraftEdit {
    fn from(e: DraftEdit) -> Self {
        core::DraftEdit {
            description: e.description,
            attributes: e
                .attributes
                .into_iter()
                .map(|a| (a.code, a.values))
                .collect(),
            location: if e.clear_location {
                Some(None)
            } else {
                e.location.map(|l| Some(l.into()))
            },
            address: if e.clear_address {
                Some(None)
            } else {
                e.address.map(Some)
            },
            contact: e.contact.map(Into::into),
            anonymous: e.anonymous,
        }
    }
}

impl From<core::ProblemKind> for ProblemKind {
    fn from(k: core::ProblemKind) -> Self {
        match k {
            core::ProblemKind::Required => ProblemKind::Required,
            core::ProblemKind::TooLong => ProblemKind::TooLong,
            core::ProblemKind::NotANumber => ProblemKind::NotANumber,
            core::ProblemKind::NotADatetime => ProblemKind::NotADatetime,
            core::ProblemKind::NotInList => ProblemKind::NotInList,
            core::ProblemKind::OneValueOnly => ProblemKind::OneValueOnly,
            core::ProblemKind::UnknownAttribute => ProblemKind::UnknownAttribute,
            core::ProblemKind::NotAnInput => ProblemKind::NotAnInput,
            core::ProblemKind::OutOfRange => ProblemKind::OutOfRange,
            core::ProblemKind::ServiceGone => ProblemKind::ServiceGone,
            core::ProblemKind::Malformed => ProblemKind::Malformed,
        }
    }
}

impl From<core::Problem> for Problem {
    fn from(p: core::Problem) -> Self {
        Problem {
            field: p.field,
            kind: p.kind.into(),
            message: p.message,
        }
    }
}

impl From<core::PhotoInfo> for PhotoInfo {
    fn from(p: core::PhotoInfo) -> Self {
        PhotoInfo {
            sha256: p.sha256,
            width: p.width,
            height: p.height,
            bytes: p.bytes,
            thumbnail_width: p.thumbnail_width,
            thumbnail_height: p.thumbnail_height,
            thumbnail_bytes: p.thumbnail_bytes,
        }
    }
}

impl From<core::AttachedPhoto> for AttachedPhoto {
    fn from(a: core::AttachedPhoto) -> Self {
        AttachedPhoto {
            photo: a.photo.into(),
            quality: a.quality,
            location_taken: a.location_taken,
            already_attached: a.already_attached,
        }
    }
}

impl From<core::geo::Ward> for Ward {
    fn from(w: core::geo::Ward) -> Self {
        Ward {
            code: w.code,
            name: w.name,
        }
    }
}

impl From<core::geo::NearbyHit> for NearbyRequest {
    fn from(h: core::geo::NearbyHit) -> Self {
        NearbyRequest {
            id: h.id,
            distance_m: h.distance_m,
            created_at: SystemTime::UNIX_EPOCH
                + Duration::from_millis(h.created_at_ms.max(0) as u64),
        }
    }
}
