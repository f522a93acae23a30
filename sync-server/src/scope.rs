//! Who may change and see what: the one rule, used by push admission, the pull's view and the
//! photo endpoints alike. Pure: storage supplies the facts (a device, a request's scope row),
//! this says yes or no.
//!
//! - A device may change a request it created, and an inspector the requests of their wards.
//! - A resident may not write what only the city writes (statuses, assignments, priorities,
//!   public numbers, internal notes).
//! - A device sees a request in full if it may change it (a resident without internal notes),
//!   and the public view of a public request within [`NEAR_M`] of a place it reported from.
//! - Nothing a resident receives identifies another device or person ([`shape`]): every other
//!   writer's replica id is a pseudonym (per request, its counters offset, so two reports
//!   cannot be linked to one phone), in the public view a creation carries no creator, and a
//!   note names its author's role only, set from the token ([`may_write`] refuses any other).

use std::collections::HashSet;

use curbside_core::geo::distance_m;
use curbside_core::sync::protocol::Role;
use curbside_core::sync::StoredChange;
use curbside_core::vocab::{ChangeId, ReplicaId};
use curbside_core::{Field, FieldValue};
use sha2::{Digest, Sha256};

/// How near (metres) a request must be to a place a resident reported from to be in their
/// public view: the duplicate check looks at most ~100 m away, and people move a little.
pub const NEAR_M: f64 = 500.0;

/// Places a resident's public view is around: their most recent reports'.
pub const MAX_PLACES: usize = 20;

/// The side of a cell of the public feed in degrees of latitude (~556 m, more than [`NEAR_M`]);
/// a cell's width in longitude is scaled to about the same metres.
const CELL_DEG: f64 = 0.005;

/// The feed keys a request's changes are filed under: its creator, its ward, and (public and
/// located) its cell. A device pulls the keys of its scope ([`feed_keys`]); the view still
/// decides each change exactly, so a key may be wider than the rule, never narrower.
pub fn filed_under(request: &RequestScope) -> Vec<String> {
    let mut keys = vec![format!("c:{}", request.created_by)];
    if let Some(w) = &request.ward {
        keys.push(format!("w:{w}"));
    }
    if let (true, Some(lat), Some(lon)) = (request.public, request.lat, request.lon) {
        keys.push(cell_of(lat, lon));
    }
    keys
}

/// The cell of the public feed (a key) a request at (lat, lon) is filed under.
pub fn cell_of(lat: f64, lon: f64) -> String {
    cell_key(band_of(lat), lat_col(band_of(lat), lon))
}

/// The feed keys of what `device` may see: its own requests, its wards (inspectors), and the
/// cells within [`NEAR_M`] of the places it reported from (residents).
pub fn feed_keys(device: &Device, places: &[(f64, f64)]) -> Vec<String> {
    let mut keys = vec![format!("c:{}", device.id)];
    match device.role {
        Role::Inspector => {
            let mut wards: Vec<&String> = device.wards.iter().collect();
            wards.sort();
            keys.extend(wards.into_iter().map(|w| format!("w:{w}")));
        }
        Role::Resident => {
            for &(lat, lon) in places {
                keys.extend(cells_near(lat, lon));
            }
        }
    }
    let mut seen = HashSet::new();
    keys.retain(|k| seen.insert(k.clone()));
    keys
}

fn band_of(lat: f64) -> i64 {
    (lat / CELL_DEG).floor() as i64
}

fn lat_col(band: i64, lon: f64) -> i64 {
    let k = ((band as f64 + 0.5) * CELL_DEG)
        .to_radians()
        .cos()
        .max(0.01);
    (lon * k / CELL_DEG).floor() as i64
}

fn cell_key(band: i64, col: i64) -> String {
    format!("g:{band}:{col}")
}

/// Every cell that may hold a request within [`NEAR_M`] of (lat, lon).
pub fn cells_near(lat: f64, lon: f64) -> Vec<String> {
    cells_within(lat, lon, NEAR_M)
}

/// Every cell that may hold a request within `metres` of (lat, lon).
pub fn cells_within(lat: f64, lon: f64, metres: f64) -> Vec<String> {
    // Rounded generously: a degree of latitude is ~111 km; longitude shrinks toward the pole.
    let dlat = metres / 110_000.0;
    let dlon = metres / (110_000.0 * (lat.abs() + dlat).min(89.0).to_radians().cos());
    let mut out = Vec::new();
    for band in band_of(lat - dlat)..=band_of(lat + dlat) {
        for col in lat_col(band, lon - dlon)..=lat_col(band, lon + dlon) {
            out.push(cell_key(band, col));
        }
    }
    out
}

/// A registered device, as its token identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: String,
    pub role: Role,
    pub wards: HashSet<String>,
}

/// What the rule needs to know of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestScope {
    pub created_by: String,
    pub ward: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub public: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    None,
    /// Everything the device's role may see.
    Full,
    /// What anyone near the request may see.
    Public,
}

/// May `device` change the request?
pub fn may_change(device: &Device, request: &RequestScope) -> bool {
    request.created_by == device.id
        || (device.role == Role::Inspector
            && request
                .ward
                .as_ref()
                .is_some_and(|w| device.wards.contains(w)))
}

/// May `device` push this value to the request (`None`: the request is new here)? Only the
/// server numbers requests; a creation is its creator's, once; residents do not write what only
/// the city writes.
pub fn may_write(device: &Device, value: &FieldValue, request: Option<&RequestScope>) -> bool {
    match value {
        FieldValue::ServiceRequestId(_) => false,
        FieldValue::Create(_) => request.is_none_or(|r| r.created_by == device.id),
        // A note's author is its writer's role, which the token says, not the client.
        FieldValue::Note(n) if n.author != device.role.as_str() => false,
        v => device.role == Role::Inspector || !v.is_inspector_only(),
    }
}

/// How much of the request `device` sees; `places` are where a resident reported from.
pub fn access(device: &Device, request: &RequestScope, places: &[(f64, f64)]) -> Access {
    if may_change(device, request) {
        return Access::Full;
    }
    if device.role == Role::Inspector || !request.public {
        return Access::None;
    }
    match (request.lat, request.lon) {
        (Some(lat), Some(lon))
            if places
                .iter()
                .any(|&(plat, plon)| distance_m(lat, lon, plat, plon) <= NEAR_M) =>
        {
            Access::Public
        }
        _ => Access::None,
    }
}

/// Does a device with `access` to a request see this change of it?
pub fn sees(device: &Device, access: Access, change: &StoredChange) -> bool {
    match access {
        Access::None => false,
        Access::Full => device.role == Role::Inspector || !change.is_internal_note(),
        Access::Public => change.is_public(),
    }
}

/// The role a note's author names: older clients wrote `role:device`, which must not leave
/// the staff scope.
pub fn author_role(author: &str) -> &'static str {
    match author.split(':').next() {
        Some("inspector") => "inspector",
        Some("city") => "city",
        _ => "resident",
    }
}

/// A stable pseudonym of a change's replica within one request, and an offset for its
/// counters: the same writer keeps one id in a request's history (merge order holds), but
/// neither the ids nor the run of counters link two requests to one phone.
fn pseudonym(key: &str, change: &StoredChange) -> ChangeId {
    let digest = Sha256::new()
        .chain_update(key.as_bytes())
        .chain_update(change.request_id.to_string().as_bytes())
        .chain_update(change.id.replica.as_str().as_bytes())
        .finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let offset = u64::from(u32::from_be_bytes([
        digest[8], digest[9], digest[10], digest[11],
    ]));
    ChangeId {
        replica: ReplicaId::parse(&hex).expect("16 hex digits"),
        counter: change.id.counter.saturating_add(offset),
    }
}

/// The change as `device` receives it, given its `access` to the request; `key` is the
/// server's secret for pseudonyms, `own`: the change was pushed by this device. `None`: a
/// stored value that cannot be read is not sent.
///
/// Staff see changes as stored. A resident sees every other writer's replica (a neighbour's,
/// an inspector's, the server's) as a pseudonym, notes signed by a role, and in the public
/// view a creation without its creator.
pub fn shape(
    device: &Device,
    access: Access,
    change: StoredChange,
    key: &str,
    own: bool,
) -> Option<StoredChange> {
    let public = access == Access::Public;
    let rewrite = match change.field {
        Field::Create => public,
        Field::Note => device.role != Role::Inspector,
        _ => false,
    };
    let mut change = if rewrite {
        let value = match FieldValue::from_json_text(&change.field, change.value.get()).ok()? {
            FieldValue::Create(mut c) => {
                c.created_by = None;
                FieldValue::Create(c)
            }
            FieldValue::Note(mut n) => {
                n.author = author_role(&n.author).to_string();
                FieldValue::Note(n)
            }
            other => other,
        };
        StoredChange {
            value: serde_json::value::RawValue::from_string(value.to_json_text()).ok()?,
            ..change
        }
    } else {
        change
    };
    if device.role != Role::Inspector && !own {
        change.id = pseudonym(key, &change);
    }
    Some(change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use curbside_core::vocab::{Note, Status};

    fn device(id: &str, role: Role, wards: &[&str]) -> Device {
        Device {
            id: id.into(),
            role,
            wards: wards.iter().map(|w| w.to_string()).collect(),
        }
    }

    /// Every request the rule shows a resident is filed under a key the resident pulls.
    #[test]
    fn the_feed_keys_cover_the_public_view() {
        let ben = device("ben", Role::Resident, &[]);
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let (plat, plon) = (43.58 + rng.f64() * 0.3, -79.6 + rng.f64() * 0.4);
            let lat = plat + (rng.f64() - 0.5) * 0.01;
            let lon = plon + (rng.f64() - 0.5) * 0.014;
            let request = RequestScope {
                created_by: "ana".into(),
                ward: None,
                lat: Some(lat),
                lon: Some(lon),
                public: true,
            };
            if access(&ben, &request, &[(plat, plon)]) == Access::Public {
                let keys = feed_keys(&ben, &[(plat, plon)]);
                assert!(
                    filed_under(&request).iter().any(|k| keys.contains(k)),
                    "({lat}, {lon}) near ({plat}, {plon})"
                );
            }
        }
        let inspector = device("i", Role::Inspector, &["10", "3"]);
        assert_eq!(feed_keys(&inspector, &[]), ["c:i", "w:10", "w:3"]);
    }

    #[test]
    fn creators_inspectors_of_the_ward_and_neighbours_see_what_they_should() {
        let request = RequestScope {
            created_by: "ana".into(),
            ward: Some("10".into()),
            lat: Some(43.65),
            lon: Some(-79.38),
            public: true,
        };
        let ana = device("ana", Role::Resident, &[]);
        let ben = device("ben", Role::Resident, &[]);
        let ward10 = device("i10", Role::Inspector, &["10"]);
        let ward11 = device("i11", Role::Inspector, &["11"]);
        assert!(may_change(&ana, &request) && may_change(&ward10, &request));
        assert!(!may_change(&ben, &request) && !may_change(&ward11, &request));
        assert_eq!(access(&ben, &request, &[(43.651, -79.38)]), Access::Public);
        assert_eq!(access(&ben, &request, &[(43.70, -79.38)]), Access::None);
        assert_eq!(access(&ward11, &request, &[]), Access::None);
        let private = RequestScope {
            public: false,
            ..request.clone()
        };
        assert_eq!(access(&ben, &private, &[(43.65, -79.38)]), Access::None);
        let done = FieldValue::Status(Status::Completed);
        assert!(!may_write(&ana, &done, Some(&request)));
        assert!(may_write(&ward10, &done, Some(&request)));
        assert!(!may_write(
            &ana,
            &FieldValue::ExpectedAt(Some(1)),
            Some(&request)
        ));
        let number = FieldValue::ServiceRequestId("1".into());
        assert!(
            !may_write(&ward10, &number, Some(&request)),
            "only the server numbers"
        );
        let create = FieldValue::Create(curbside_core::vocab::Creation {
            service_code: "X".into(),
            created_at: None,
            created_by: None,
            channel: None,
        });
        assert!(may_write(&ben, &create, None), "a new request");
        assert!(
            may_write(&ana, &create, Some(&request)),
            "its creator, again"
        );
        assert!(!may_write(&ward10, &create, Some(&request)), "nobody else");
        let note = |author: &str, public: bool| {
            FieldValue::Note(Note {
                id: "n".into(),
                author: author.into(),
                text: "t".into(),
                public,
                status: None,
            })
        };
        assert!(!may_write(&ana, &note("resident", false), Some(&request)));
        assert!(may_write(&ana, &note("resident", true), Some(&request)));
        assert!(
            !may_write(&ana, &note("inspector", true), Some(&request)),
            "a resident's note cannot read as the city's"
        );
        assert!(!may_write(
            &ana,
            &note("resident:ana", true),
            Some(&request)
        ));
        assert!(may_write(
            &ward10,
            &note("inspector", false),
            Some(&request)
        ));
    }
}
