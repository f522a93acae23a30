//! `GET requests`, `GET requests/{id}` and `GET tokens/{token}`: public requests found in the
//! index (by number, service, time, status, update, place), paged, each merged from its
//! changes. Parameters are checked before any lookup; an empty one counts as absent.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use curbside_core::vocab::RequestId;

use super::form::Form;
use super::view::{self, Rec, V};
use super::{answer, check_jurisdiction, dates, Format};
use crate::storage::open311::RequestQuery;
use crate::{blocking, AppState, ServerError};

/// The span `GET requests` covers by default, and at most (spec: 90 days).
const SPAN_MS: i64 = 90 * 86_400_000;
const PAGE_SIZE: u64 = 50;
const MAX_PAGE_SIZE: u64 = 1_000;
/// How deep paging may go: past it, narrow the dates. A page's cost grows with its depth (the
/// index is walked to it), so the depth is bounded like everything else a request asks for.
const MAX_OFFSET: u64 = 10_000;
/// Public numbers or services one query may name.
const MAX_LISTED: usize = 1_000;
const DEFAULT_RADIUS_M: f64 = 500.0;
const MAX_RADIUS_M: f64 = 50_000.0;

fn query_form(raw: Option<String>) -> Result<Form, ServerError> {
    Form::parse(raw.unwrap_or_default().as_bytes())
}

fn list<'f>(form: &'f Form, name: &str, problems: &mut Vec<String>) -> Vec<&'f str> {
    let items: Vec<&str> = form
        .get(name)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if items.len() > MAX_LISTED {
        problems.push(format!("{name}: at most {MAX_LISTED} at once"));
    }
    items
}

fn whole(form: &Form, name: &str, min: u64, max: u64, problems: &mut Vec<String>) -> Option<u64> {
    let v = form.get(name)?;
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Some(n),
        _ => {
            problems.push(format!("{name}: a whole number from {min} to {max}"));
            None
        }
    }
}

fn real(form: &Form, name: &str, range: (f64, f64), problems: &mut Vec<String>) -> Option<f64> {
    let v = form.get(name)?;
    match v.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= range.0 && x <= range.1 => Some(x),
        _ => {
            problems.push(format!("{name}: a number from {} to {}", range.0, range.1));
            None
        }
    }
}

fn date(form: &Form, name: &str, problems: &mut Vec<String>) -> Option<i64> {
    match dates::parse(name, form.get(name)?) {
        Ok(ms) => Some(ms),
        Err(e) => {
            problems.push(e);
            None
        }
    }
}

/// The query a `GET requests` asks, and whether it wants the extensions; every problem at once.
pub fn query(form: &Form, now_ms: i64) -> Result<(RequestQuery, bool), ServerError> {
    let mut problems = Vec::new();
    // Ids are strings to clients; ours are numbers, so anything else names no request.
    let numbers: Vec<i64> = list(form, "service_request_id", &mut problems)
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    let by_number = form.get("service_request_id").is_some();
    let service_codes: Vec<String> = list(form, "service_code", &mut problems)
        .iter()
        .map(|s| s.to_string())
        .collect();
    let start = date(form, "start_date", &mut problems);
    let end = date(form, "end_date", &mut problems);
    let updated_after_ms = date(form, "updated_after", &mut problems);
    let updated_before_ms = date(form, "updated_before", &mut problems);
    // Asked by update alone (a client polling for what changed), the 90 days are of updates:
    // a request received long ago and closed today is found.
    let by_update = start.is_none()
        && end.is_none()
        && (updated_after_ms.is_some() || updated_before_ms.is_some());
    let (from_ms, to_ms) = if by_update {
        match (updated_after_ms, updated_before_ms) {
            (Some(a), Some(b)) => (a, b),
            (Some(a), None) => (a, now_ms.max(a)),
            (None, Some(b)) => (b.saturating_sub(SPAN_MS), b),
            (None, None) => (now_ms - SPAN_MS, now_ms),
        }
    } else {
        match (start, end) {
            (Some(s), Some(e)) => (s, e),
            (Some(s), None) => (s, s.saturating_add(SPAN_MS).min(now_ms.max(s))),
            (None, Some(e)) => (e.saturating_sub(SPAN_MS), e),
            (None, None) => (now_ms - SPAN_MS, now_ms),
        }
    };
    let (first, second) = if by_update {
        ("updated_after", "updated_before")
    } else {
        ("start_date", "end_date")
    };
    if to_ms < from_ms {
        problems.push(format!("{second}: before {first}"));
    } else if to_ms - from_ms > SPAN_MS {
        problems.push(format!(
            "{first}/{second}: at most 90 days apart (page through shorter spans)"
        ));
    }
    let open = match form.get("status") {
        None => None,
        Some(s) => {
            let mut open = false;
            let mut closed = false;
            for part in s.split(',').map(str::trim) {
                match part.to_ascii_lowercase().as_str() {
                    "open" => open = true,
                    "closed" => closed = true,
                    _ => {
                        problems.push("status: open, closed, or both (open,closed)".into());
                        break;
                    }
                }
            }
            match (open, closed) {
                (true, false) => Some(true),
                (false, true) => Some(false),
                _ => None,
            }
        }
    };
    let page = whole(form, "page", 1, u64::MAX / 2, &mut problems).unwrap_or(1);
    let page_size = whole(form, "page_size", 1, MAX_PAGE_SIZE, &mut problems).unwrap_or(PAGE_SIZE);
    let offset = (page - 1).saturating_mul(page_size);
    if offset > MAX_OFFSET {
        problems.push(format!(
            "page: at most {MAX_OFFSET} requests deep; narrow start_date/end_date"
        ));
    }
    let lat = real(form, "lat", (-90.0, 90.0), &mut problems);
    let lon = real(form, "long", (-180.0, 180.0), &mut problems);
    let radius = real(form, "radius", (1.0, MAX_RADIUS_M), &mut problems);
    let near = match (lat, lon) {
        (Some(lat), Some(lon)) => Some((lat, lon, radius.unwrap_or(DEFAULT_RADIUS_M))),
        (None, None) if radius.is_some() => {
            problems.push("radius: needs lat and long".into());
            None
        }
        (Some(_), None) if form.get("long").is_none() => {
            problems.push("long: required with lat".into());
            None
        }
        (None, Some(_)) if form.get("lat").is_none() => {
            problems.push("lat: required with long".into());
            None
        }
        _ => None,
    };
    let extensions = match form.get("extensions") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => {
            problems.push("extensions: true or false".into());
            false
        }
    };
    if !problems.is_empty() {
        return Err(ServerError::Invalid(problems));
    }
    // Named ids that are none of ours find nothing, not everything.
    let numbers = if by_number && numbers.is_empty() {
        vec![-1]
    } else {
        numbers
    };
    Ok((
        RequestQuery {
            limit: if numbers.is_empty() {
                page_size
            } else {
                numbers.len() as u64
            },
            offset: if numbers.is_empty() { offset } else { 0 },
            numbers,
            service_codes,
            from_ms,
            to_ms,
            open,
            updated_after_ms,
            updated_before_ms,
            by_update,
            near,
            extensions,
        },
        extensions,
    ))
}

async fn found(
    state: &Arc<AppState>,
    q: RequestQuery,
    extensions: bool,
) -> Result<Vec<Rec>, ServerError> {
    blocking(state, move |s| {
        let cache = &s.open311_cache;
        // What the cache held when storage asked is kept here, so an entry the cache lets go
        // meanwhile is still at hand. The extensions read a duplicate's parent from the changes:
        // those are always loaded.
        let held: std::sync::Mutex<HashMap<RequestId, Arc<view::Public>>> = Default::default();
        let known = |id: &RequestId, updated: i64| -> bool {
            if extensions {
                return false;
            }
            match cache.get(id, updated) {
                Some(p) => {
                    held.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(*id, p);
                    true
                }
                None => false,
            }
        };
        let found = s.storage.find_requests(&q, &known)?;
        let mut held = held.into_inner().unwrap_or_else(|e| e.into_inner());
        let now_ms = s.clock.now_ms();
        Ok(found
            .into_iter()
            .map(|mut f| {
                let public = match held.remove(&f.request_id) {
                    Some(p) if f.changes.is_empty() => p,
                    _ => {
                        let changes = std::mem::take(&mut f.changes);
                        let p = Arc::new(view::public(f.request_id, changes));
                        cache.put(f.request_id, f.updated_at_ms, p.clone());
                        p
                    }
                };
                view::request(&f, &public, &s.catalog, extensions, now_ms, &s.public_url)
            })
            .collect())
    })
    .await
}

pub async fn get_requests(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
    format: Format,
) -> Response {
    let result = async {
        let form = query_form(raw)?;
        check_jurisdiction(&state, form.get("jurisdiction_id"))?;
        let (q, extensions) = query(&form, state.clock.now_ms())?;
        found(&state, q, extensions).await
    }
    .await;
    match result {
        Ok(recs) => answer(format, "service_requests", "request", &recs),
        Err(e) => e.respond(format),
    }
}

pub async fn get_request(
    State(state): State<Arc<AppState>>,
    Path(file): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some((id, format)) = Format::split(&file) else {
        return ServerError::NotFound(format!("no such resource: /requests/{file}"))
            .respond(Format::Json);
    };
    let result = async {
        let form = query_form(raw)?;
        check_jurisdiction(&state, form.get("jurisdiction_id"))?;
        let extensions = form
            .get("extensions")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let number: i64 = id
            .parse()
            .map_err(|_| ServerError::NotFound(format!("no public request {id:?}")))?;
        let q = RequestQuery {
            numbers: vec![number],
            limit: 1,
            extensions,
            ..RequestQuery::default()
        };
        let recs = found(&state, q, extensions).await?;
        if recs.is_empty() {
            return Err(ServerError::NotFound(format!("no public request {number}")));
        }
        Ok(recs)
    }
    .await;
    match result {
        Ok(recs) => answer(format, "service_requests", "request", &recs),
        Err(e) => e.respond(format),
    }
}

pub async fn get_token(
    State(state): State<Arc<AppState>>,
    Path(file): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some((token, format)) = Format::split(&file) else {
        return ServerError::NotFound(format!("no such resource: /tokens/{file}"))
            .respond(Format::Json);
    };
    let token = token.to_string();
    let result = async {
        let form = query_form(raw)?;
        check_jurisdiction(&state, form.get("jurisdiction_id"))?;
        // Tokens are ours: 64 hex digits. Anything else is looked up nowhere.
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ServerError::NotFound("no such token".into()));
        }
        let t = token.clone();
        let number = blocking(&state, move |s| s.storage.token_request(&t))
            .await?
            .ok_or_else(|| ServerError::NotFound("no such token".into()))?;
        Ok(vec![vec![
            ("service_request_id", V::Text(number)),
            ("token", V::Text(token)),
        ]])
    }
    .await;
    match result {
        Ok(recs) => answer(format, "service_requests", "request", &recs),
        Err(e) => e.respond(format),
    }
}
