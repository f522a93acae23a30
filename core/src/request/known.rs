//! Requests the device knows but did not write: synced in from the server, or imported from an
//! Open311 `requests.json`. Duplicate detection looks at them beside the user's own.

use rusqlite::{params, Connection, Transaction};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::geo::KnownRequest;
use crate::vocab::{Location, LocationSource};

/// Requests read from an Open311 `requests.json`, whose ids are the city's numbers.
pub(crate) fn upsert(tx: &Transaction, requests: &[KnownRequest], now_ms: i64) -> Result<()> {
    for r in requests {
        upsert_one(tx, r, Some(&r.id), now_ms)?;
    }
    Ok(())
}

/// Adds or updates one request, with its public number when known.
pub(crate) fn upsert_one(
    tx: &Transaction,
    r: &KnownRequest,
    service_request_id: Option<&str>,
    now_ms: i64,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO known_requests (id, service_request_id, service_code, open, lat, lon, accuracy,
             created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (id) DO UPDATE SET
             service_request_id = COALESCE(excluded.service_request_id, service_request_id),
             service_code = excluded.service_code, open = excluded.open, lat = excluded.lat,
             lon = excluded.lon, accuracy = excluded.accuracy,
             created_at = excluded.created_at, updated_at = excluded.updated_at",
    )?
    .execute(params![
        r.id,
        service_request_id,
        r.service_code,
        r.open,
        r.lat,
        r.lon,
        r.accuracy_m,
        r.created_at_ms,
        now_ms
    ])?;
    Ok(())
}

pub(crate) fn all(conn: &Connection) -> Result<Vec<KnownRequest>> {
    let mut stmt = conn.prepare(
        "SELECT id, service_code, open, lat, lon, accuracy, created_at FROM known_requests WHERE open",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(KnownRequest {
            id: r.get(0)?,
            service_code: r.get(1)?,
            open: r.get(2)?,
            lat: r.get(3)?,
            lon: r.get(4)?,
            accuracy_m: r.get(5)?,
            created_at_ms: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Reads an Open311 GeoReport v2 `requests.json` (a top-level array or Toronto's
/// `{"service_requests":[…]}`; integer or string ids and codes; nulls). Requests without a
/// usable location are skipped: duplicate detection cannot place them.
pub fn parse_open311_requests(bytes: &[u8]) -> Result<Vec<KnownRequest>> {
    let bad = Error::Requests;
    let root: Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let items = match &root {
        Value::Array(a) => a,
        Value::Object(o) => match o.get("service_requests").or_else(|| o.get("requests")) {
            Some(Value::Array(a)) => a,
            _ => return Err(bad("expected an array or {\"service_requests\":[…]}".into())),
        },
        _ => return Err(bad("expected an array or {\"service_requests\":[…]}".into())),
    };
    let text = |v: &Value| match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let id = text(&item["service_request_id"]).or_else(|| text(&item["token"]));
        let (Some(id), Some(code)) = (id, text(&item["service_code"])) else {
            return Err(bad(format!(
                "request {i} has no service_request_id or service_code"
            )));
        };
        let (Some(lat), Some(lon)) = (item["lat"].as_f64(), item["long"].as_f64()) else {
            continue;
        };
        if Location::new(lat, lon, None, LocationSource::Network).is_err() {
            continue;
        }
        let created = item["requested_datetime"]
            .as_str()
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
            .ok_or_else(|| bad(format!("request {id}: requested_datetime is not RFC 3339")))?;
        out.push(KnownRequest {
            id,
            service_code: code,
            lat,
            lon,
            accuracy_m: None,
            created_at_ms: (created.unix_timestamp_nanos() / 1_000_000) as i64,
            open: item["status"]
                .as_str()
                .is_none_or(|s| !s.eq_ignore_ascii_case("closed")),
        });
    }
    Ok(out)
}
