//! Open311's rules over any engine's [`Tx`]: a request posted with an API key (its
//! idempotency, numbering, logging as the server's own changes, scope and feed, in one
//! transaction), and the index query `GET requests` pages through. The handlers in
//! `crate::open311` have checked the input already.

use curbside_core::sync::{merge, Change};
use curbside_core::vocab::{Field, FieldValue, RequestId};
use curbside_core::Jurisdiction;

use super::tx::{Dues, ScopeColumns, Tx, R};
use crate::scope::{self, RequestScope};
use crate::ServerError;

/// A key being created: only its hash is kept.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub key_hash: String,
    pub key_id: String,
    /// Who it is for, as the operator wrote it.
    pub label: String,
    pub created_at_ms: i64,
}

/// An API key, for operators.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApiKeyRecord {
    pub key_id: String,
    pub label: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// The device id a key's requests are created by: no device's (device ids are UUIDs).
pub fn key_creator(key_id: &str) -> String {
    format!("key:{key_id}")
}

/// A request posted over Open311, checked already.
#[derive(Debug, Clone)]
pub struct Post {
    pub key_id: String,
    pub idempotency_key: Option<String>,
    /// A digest of the form as posted: a retry under the same idempotency key must carry the
    /// same request.
    pub fingerprint: String,
    pub request_id: RequestId,
    /// Its changes (the creation first), without its public number, which storage assigns.
    pub values: Vec<FieldValue>,
    /// For a `batch` service: the token the answer carries.
    pub token: Option<String>,
    /// When it is due, by its service's standard.
    pub dues: Dues,
    pub now_ms: i64,
}

/// What a post did, or did the first time (a replay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub service_request_id: String,
    pub token: Option<String>,
    pub replayed: bool,
}

/// A post as the idempotency check finds it.
#[derive(Debug, Clone)]
pub struct PriorPost {
    pub fingerprint: String,
    pub service_request_id: i64,
    pub token: Option<String>,
}

/// Logs a post as the server's own changes, numbers and files it, all or nothing; a retry
/// under the same idempotency key answers as the first time did and writes nothing.
pub fn post(tx: &mut dyn Tx, wards: &Jurisdiction, p: &Post) -> R<Posted> {
    if let Some(key) = &p.idempotency_key {
        if let Some(prior) = tx.prior_post(&p.key_id, key)? {
            if prior.fingerprint != p.fingerprint {
                return Err(ServerError::Conflict(
                    "this Idempotency-Key was used for another request: make a new key for \
                     each new request"
                        .into(),
                ));
            }
            return Ok(Posted {
                service_request_id: prior.service_request_id.to_string(),
                token: prior.token,
                replayed: true,
            });
        }
    }
    let creator = key_creator(&p.key_id);
    let number = tx
        .number(&[(p.request_id, p.dues)], &creator, p.now_ms)?
        .first()
        .copied()
        .ok_or_else(|| ServerError::Internal("no number assigned".into()))?;
    let mut values: Vec<(RequestId, FieldValue)> =
        p.values.iter().map(|v| (p.request_id, v.clone())).collect();
    values.push((
        p.request_id,
        FieldValue::ServiceRequestId(number.to_string()),
    ));
    if let Some(at) = p.dues.resolve {
        values.push((p.request_id, FieldValue::ExpectedAt(Some(at))));
    }
    let arrivals = tx.record_own(&values, p.now_ms)?;
    let located = p.values.iter().find_map(|v| match v {
        FieldValue::Location(Some(l)) => Some((l.lat, l.lon)),
        _ => None,
    });
    let service_code = p.values.iter().find_map(|v| match v {
        FieldValue::Create(c) => Some(c.service_code.clone()),
        _ => None,
    });
    let ward = located.and_then(|(lat, lon)| wards.ward_of(lat, lon).map(|w| w.code.clone()));
    tx.set_scopes(
        &[(
            p.request_id,
            ScopeColumns {
                lat: located.map(|l| l.0),
                lon: located.map(|l| l.1),
                ward: ward.clone(),
                status: "accepted",
                public: true,
                cell: located.map(|(lat, lon)| scope::cell_of(lat, lon)),
                service_code,
                accuracy_m: None,
            },
        )],
        p.now_ms,
    )?;
    super::duplicates::on_receipt(tx, &[p.request_id], p.now_ms)?;
    let creator_key = format!("c:{creator}");
    let mut keys = scope::filed_under(&RequestScope {
        created_by: creator,
        ward,
        lat: located.map(|l| l.0),
        lon: located.map(|l| l.1),
        public: true,
    });
    // No device pulls an API key's requests: they reach staff by ward, neighbours by cell.
    keys.retain(|k| *k != creator_key);
    let entries: Vec<(String, u64)> = arrivals
        .iter()
        .flat_map(|(seq, _)| keys.iter().map(move |k| (k.clone(), *seq)))
        .collect();
    tx.file(&entries, p.now_ms)?;
    tx.save_post(p)?;
    Ok(Posted {
        service_request_id: number.to_string(),
        token: p.token.clone(),
        replayed: false,
    })
}

/// Where `GET requests` looks, checked already. Only public requests are ever found.
#[derive(Debug, Clone, Default)]
pub struct RequestQuery {
    /// Public numbers asked for by name: when given, the other filters are ignored (spec).
    pub numbers: Vec<i64>,
    pub service_codes: Vec<String>,
    /// Received within (milliseconds, both ends included), or with `by_update`, updated
    /// within.
    pub from_ms: i64,
    pub to_ms: i64,
    /// The span is of updates, not receipt (newest update first).
    pub by_update: bool,
    /// `Some(true)`: open only; `Some(false)`: closed only.
    pub open: Option<bool>,
    pub updated_after_ms: Option<i64>,
    pub updated_before_ms: Option<i64>,
    /// Within `radius_m` of (lat, lon).
    pub near: Option<(f64, f64, f64)>,
    pub offset: u64,
    pub limit: u64,
    /// Also read what the extensions show (likely duplicates, a duplicate's parent).
    pub extensions: bool,
}

/// A request `GET requests` found: its index row and its changes.
#[derive(Debug, Clone)]
pub struct FoundRequest {
    pub request_id: RequestId,
    pub number: i64,
    pub ward: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Its service standard's deadlines, and when staff first acted on it and it closed.
    pub standard: StandardTimes,
    /// Its changes, in merge order.
    pub changes: Vec<Change>,
    /// With the extensions: the public requests found near it on receipt (public numbers,
    /// metres apart), and the public number of the request staff marked it a duplicate of.
    pub likely_duplicates: Vec<(i64, f64)>,
    pub duplicate_of: Option<i64>,
}

/// A request as the standards report counts it.
#[derive(Debug, Clone, PartialEq)]
pub struct StandardRow {
    pub service_code: Option<String>,
    pub ward: Option<String>,
    pub created_at_ms: i64,
    pub times: StandardTimes,
}

/// The columns a [`StandardRow`] is read from, in its order.
pub const STANDARD_COLUMNS: &str = "service_code, ward, created_at, acknowledge_due, resolve_due, \
                                    acknowledged_at, closed_at";

/// A request's times against its service's standard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StandardTimes {
    pub acknowledge_due_ms: Option<i64>,
    pub resolve_due_ms: Option<i64>,
    pub acknowledged_at_ms: Option<i64>,
    pub closed_at_ms: Option<i64>,
}

/// A parameter of the index query.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Int(i64),
    Real(f64),
    Text(String),
}

/// The columns the index query selects, in the order [`FoundRequest`]'s row is read.
pub const FOUND_COLUMNS: &str = "r.request_id, r.service_request_id, r.ward, r.created_at, \
                                 COALESCE(r.updated_at, r.created_at), r.acknowledge_due, \
                                 r.resolve_due, r.acknowledged_at, r.closed_at";

/// The index query for `q` and its parameters, with `mark(n)` writing the n-th placeholder
/// (`?n` or `$n`). Every filter is on an indexed column or on the rows those bound; the page
/// is `LIMIT`ed, so the work is the page's, not the log's.
pub fn query_sql(q: &RequestQuery, mark: impl Fn(usize) -> String) -> (String, Vec<Param>) {
    let mut params: Vec<Param> = Vec::new();
    let push = |p: Param, params: &mut Vec<Param>| {
        params.push(p);
        mark(params.len())
    };
    let mut sql = format!("SELECT {FOUND_COLUMNS} FROM requests r WHERE r.public");
    if !q.numbers.is_empty() {
        let marks: Vec<String> = q
            .numbers
            .iter()
            .map(|n| push(Param::Int(*n), &mut params))
            .collect();
        sql.push_str(&format!(
            " AND r.service_request_id IN ({})",
            marks.join(", ")
        ));
    } else {
        let from = push(Param::Int(q.from_ms), &mut params);
        let to = push(Param::Int(q.to_ms), &mut params);
        let at = if q.by_update {
            "r.updated_at"
        } else {
            "r.created_at"
        };
        sql.push_str(&format!(" AND {at} >= {from} AND {at} <= {to}"));
        if !q.service_codes.is_empty() {
            let marks: Vec<String> = q
                .service_codes
                .iter()
                .map(|c| push(Param::Text(c.clone()), &mut params))
                .collect();
            sql.push_str(&format!(" AND r.service_code IN ({})", marks.join(", ")));
        }
        match q.open {
            Some(true) => sql.push_str(" AND r.status NOT IN ('completed', 'cancelled')"),
            Some(false) => sql.push_str(" AND r.status IN ('completed', 'cancelled')"),
            None => {}
        }
        if let Some(after) = q.updated_after_ms {
            let m = push(Param::Int(after), &mut params);
            sql.push_str(&format!(" AND r.updated_at > {m}"));
        }
        if let Some(before) = q.updated_before_ms {
            let m = push(Param::Int(before), &mut params);
            sql.push_str(&format!(" AND r.updated_at < {m}"));
        }
        if let Some((lat, lon, radius_m)) = q.near {
            // A box the index can use, then the circle on the box's rows: metres on a plane
            // tangent at the centre (exact enough within a city).
            let dlat = radius_m / M_PER_DEG_LAT;
            let m_per_deg_lon = M_PER_DEG_LAT * lat.to_radians().cos().max(1e-6);
            let dlon = radius_m / m_per_deg_lon;
            let lat0 = push(Param::Real(lat - dlat), &mut params);
            let lat1 = push(Param::Real(lat + dlat), &mut params);
            let lon0 = push(Param::Real(lon - dlon), &mut params);
            let lon1 = push(Param::Real(lon + dlon), &mut params);
            let clat = push(Param::Real(lat), &mut params);
            let clon = push(Param::Real(lon), &mut params);
            let kx = push(Param::Real(m_per_deg_lon), &mut params);
            let r2 = push(Param::Real(radius_m * radius_m), &mut params);
            let real = |m: &str| format!("CAST({m} AS DOUBLE PRECISION)");
            sql.push_str(&format!(
                " AND r.lat BETWEEN {} AND {} AND r.lon BETWEEN {} AND {} \
                 AND ((r.lat - {c_lat}) * {M_PER_DEG_LAT}) * ((r.lat - {c_lat}) * {M_PER_DEG_LAT}) \
                   + ((r.lon - {c_lon}) * {kx}) * ((r.lon - {c_lon}) * {kx}) <= {r2}",
                real(&lat0),
                real(&lat1),
                real(&lon0),
                real(&lon1),
                c_lat = real(&clat),
                c_lon = real(&clon),
                kx = real(&kx),
                r2 = real(&r2),
            ));
        }
    }
    let limit = push(Param::Int(q.limit as i64), &mut params);
    let offset = push(Param::Int(q.offset as i64), &mut params);
    sql.push_str(&format!(
        " ORDER BY {} DESC, r.service_request_id DESC LIMIT {limit} OFFSET {offset}",
        if q.by_update {
            "r.updated_at"
        } else {
            "r.created_at"
        }
    ));
    (sql, params)
}

/// Metres in a degree of latitude (mean).
const M_PER_DEG_LAT: f64 = 111_195.0;

/// Whether the caller holds a request's public side as it was at an update time: its changes
/// are not loaded again.
pub type Known<'a> = dyn Fn(&RequestId, i64) -> bool + Sync + 'a;

/// The requests `q` finds, each with its changes (none for those `known`): the index query,
/// then one load of the page.
pub fn find(tx: &mut dyn Tx, q: &RequestQuery, known: &Known<'_>) -> R<Vec<FoundRequest>> {
    let mut rows = tx.find_requests(q)?;
    let ids: Vec<RequestId> = rows.iter().map(|r| r.request_id).collect();
    let unknown: Vec<RequestId> = rows
        .iter()
        .filter(|r| !known(&r.request_id, r.updated_at_ms))
        .map(|r| r.request_id)
        .collect();
    let mut changes = if unknown.is_empty() {
        Default::default()
    } else {
        tx.load(&unknown, None)?
    };
    for r in &mut rows {
        r.changes = changes.remove(&r.request_id).unwrap_or_default();
    }
    if !q.extensions || rows.is_empty() {
        return Ok(rows);
    }
    let mut likely = tx.likely_duplicates(&ids)?;
    let parents: Vec<(usize, RequestId)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            match merge::current(&r.changes, &[Field::DuplicateOf]).remove(&Field::DuplicateOf) {
                Some(FieldValue::DuplicateOf(Some(parent))) => Some((i, parent)),
                _ => None,
            }
        })
        .collect();
    let numbers = if parents.is_empty() {
        Default::default()
    } else {
        let ids: Vec<RequestId> = parents.iter().map(|(_, p)| *p).collect();
        tx.known(&ids, false)?
    };
    for (i, parent) in parents {
        // A private parent is named to nobody outside the city.
        rows[i].duplicate_of = numbers
            .get(&parent)
            .filter(|k| k.scope.public)
            .map(|k| k.number);
    }
    for r in &mut rows {
        r.likely_duplicates = likely.remove(&r.request_id).unwrap_or_default();
    }
    Ok(rows)
}
