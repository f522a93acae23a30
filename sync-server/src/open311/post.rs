//! `POST requests`: a request from any Open311 client, checked as the phone checks its drafts
//! (the same core validation: required attributes, list keys, datatypes, lengths, location),
//! then taken in as the server's own changes, so inspectors get it by sync like any other.
//!
//! Checks run in the order of their cost: jurisdiction, the form's encoding, the API key and
//! its rate limit, then the request itself; nothing is written before all pass.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use curbside_core::request::validate;
use curbside_core::vocab::{Creation, FieldValue, Location, LocationSource, Note, RequestId};
use curbside_core::{Contact, Draft, ServiceType, State as Lifecycle};
use sha2::{Digest, Sha256};

use super::form::Form;
use super::view::{Rec, V};
use super::{answer, check_jurisdiction, Format};
use crate::auth::token_hash;
use crate::limits::Class;
use crate::storage::open311::{Post, Posted};
use crate::{blocking, AppState, ServerError};

/// Largest form accepted: a 4,000-character description and every attribute, many times over.
pub const MAX_FORM: usize = 64 << 10;
/// Longest `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY: usize = 255;
/// Longest `device_id`, `account_id` and `media_url`.
const MAX_ID: usize = 255;
const MAX_URL: usize = 2_000;

pub async fn post_requests(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
    format: Format,
) -> Response {
    match post(&state, &headers, body).await {
        Ok((posted, kind, notice)) => answer(
            format,
            "service_requests",
            "request",
            &[posted_rec(&posted, kind, notice)],
        ),
        Err(e) => e.respond(format),
    }
}

/// The answer the spec gives each service type: its id at once (`realtime`), a token to
/// exchange for it later (`batch`), or neither (`blackbox`).
fn posted_rec(posted: &Posted, kind: ServiceType, notice: String) -> Rec {
    if kind == ServiceType::Blackbox {
        return vec![("service_notice", V::Text(notice))];
    }
    match &posted.token {
        Some(token) => vec![
            ("token", V::Text(token.clone())),
            ("service_notice", V::Text(notice)),
        ],
        None => vec![
            (
                "service_request_id",
                V::Text(posted.service_request_id.clone()),
            ),
            ("service_notice", V::Text(notice)),
            ("account_id", V::Null),
        ],
    }
}

async fn post(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Posted, ServiceType, String), ServerError> {
    if let Some(kind) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        let kind = kind.split(';').next().unwrap_or("").trim();
        if !kind.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(ServerError::BadRequest(format!(
                "send the request form-encoded (application/x-www-form-urlencoded), not {}",
                kind.chars().take(60).collect::<String>()
            )));
        }
    }
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
                .ok_or_else(|| {
                    ServerError::BadRequest(format!(
                        "Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
                    ))
                })?;
            Some(key.to_string())
        }
    };
    let raw = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
        ServerError::PayloadTooLarge(format!(
            "a request's form is at most {} KiB",
            MAX_FORM >> 10
        ))
    })?;
    let form = Form::parse(&raw)?;
    check_jurisdiction(state, form.get("jurisdiction_id"))?;
    let key = form
        .get("api_key")
        .ok_or_else(|| ServerError::Forbidden("api_key is required to post a request".into()))?;
    let hash = token_hash(key);
    let state2 = state.clone();
    let key_id = blocking(state, move |_| state2.storage.api_key(&hash))
        .await?
        .ok_or_else(|| ServerError::Forbidden("api_key is not valid here".into()))?;
    state.limits.device(Class::Open311, &key_id)?;
    let (values, service) = checked(state, &form)?;
    let token = (service == ServiceType::Batch).then(crate::sync::new_token);
    let now_ms = state.clock.now_ms();
    let service_code = form.get("service_code");
    let post = Post {
        dues: crate::storage::dues(&state.standards, service_code, now_ms),
        key_id,
        idempotency_key,
        fingerprint: fingerprint(&form),
        request_id: RequestId::new(state.clock.now_ms(), &*state.entropy),
        values,
        token,
        now_ms,
    };
    let posted = blocking(state, move |s| s.storage.post_request(post)).await?;
    if !posted.replayed {
        tracing::info!(service_request_id = %posted.service_request_id, "open311 request taken");
    }
    let notice = state
        .catalog
        .service(service_code.unwrap_or_default())
        .map(|s| s.standard.notice())
        .unwrap_or_default();
    Ok((posted, service, notice))
}

/// A digest of what was asked, the key left out: a retry must ask the same.
fn fingerprint(form: &Form) -> String {
    let mut pairs: Vec<&(String, String)> = form
        .pairs()
        .iter()
        .filter(|(n, _)| n != "api_key")
        .collect();
    pairs.sort();
    let mut h = Sha256::new();
    for (n, v) in pairs {
        h.update(n.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    format!("{:x}", h.finalize())
}

/// The attributes a form answers: `attribute[CODE]` (one value) and `attribute[CODE][]`
/// (each value of a list), never both for one code.
fn attributes(form: &Form, problems: &mut Vec<String>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut single: Vec<String> = Vec::new();
    let mut listed: Vec<String> = Vec::new();
    for (name, value) in form.pairs() {
        let Some(rest) = name.strip_prefix("attribute[") else {
            continue;
        };
        let (code, list) = match rest.strip_suffix("][]") {
            Some(code) => (code, true),
            None => match rest.strip_suffix(']') {
                Some(code) => (code, false),
                None => {
                    problems.push("attribute: write attribute[CODE] or attribute[CODE][]".into());
                    continue;
                }
            },
        };
        if code.is_empty() || code.contains(['[', ']']) {
            problems.push("attribute: write attribute[CODE] or attribute[CODE][]".into());
            continue;
        }
        let (mine, other) = if list {
            (&mut listed, &single)
        } else {
            (&mut single, &listed)
        };
        if other.iter().any(|c| c == code) && !mine.iter().any(|c| c == code) {
            problems.push(format!(
                "attribute[{code}]: given both as one value and as a list"
            ));
        }
        if !mine.iter().any(|c| c == code) {
            mine.push(code.to_string());
        }
        let value = value.trim();
        let values = out.entry(code.to_string()).or_default();
        if !value.is_empty() {
            values.push(value.to_string());
        }
    }
    out.retain(|_, v| !v.is_empty());
    out
}

fn number(form: &Form, name: &str, problems: &mut Vec<String>) -> Option<f64> {
    let v = form.get(name)?;
    match v.parse::<f64>() {
        Ok(x) if x.is_finite() => Some(x),
        _ => {
            problems.push(format!("{name}: not a number"));
            None
        }
    }
}

/// The request's changes and its service's type, or every problem with the form at once (or
/// 404 for a service the catalogue does not offer).
fn checked(state: &AppState, form: &Form) -> Result<(Vec<FieldValue>, ServiceType), ServerError> {
    let Some(code) = form.get("service_code") else {
        return Err(ServerError::Invalid(vec![
            "service_code: required (GET services for the list)".into(),
        ]));
    };
    let Some(service) = state.catalog.service(code) else {
        return Err(ServerError::NotFound(format!(
            "service_code {:?} not found",
            code.chars().take(40).collect::<String>()
        )));
    };
    let mut problems = Vec::new();
    let attributes = attributes(form, &mut problems);
    let lat = number(form, "lat", &mut problems);
    let lon = number(form, "long", &mut problems);
    let location = match (lat, lon) {
        (Some(lat), Some(lon)) => Some(Location {
            lat,
            lon,
            accuracy_m: None,
            source: LocationSource::MapPin,
        }),
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
    let address = form
        .get("address_string")
        .or(form.get("address_id"))
        .map(str::to_string);
    let contact = Contact {
        first_name: form.get("first_name").map(str::to_string),
        last_name: form.get("last_name").map(str::to_string),
        email: form.get("email").map(str::to_string),
        phone: form.get("phone").map(str::to_string),
    };
    for name in ["device_id", "account_id"] {
        if form.get(name).is_some_and(|v| v.chars().count() > MAX_ID) {
            problems.push(format!("{name}: at most {MAX_ID} characters"));
        }
    }
    let media_url = form.get("media_url");
    if let Some(url) = media_url {
        if url.len() > MAX_URL || !(url.starts_with("https://") || url.starts_with("http://")) {
            problems.push(format!(
                "media_url: an http(s) URL of at most {MAX_URL} characters"
            ));
        }
    }
    let draft = Draft {
        id: String::new(),
        service_code: code.to_string(),
        service_name: Some(service.name.clone()),
        state: Lifecycle::Draft,
        description: form.get("description").unwrap_or_default().to_string(),
        attributes,
        location,
        address,
        contact,
        anonymous: false,
        service_request_id: None,
        status_notes: None,
        expected_at: None,
        duplicate_of: None,
        created_at: time::OffsetDateTime::UNIX_EPOCH,
        updated_at: time::OffsetDateTime::UNIX_EPOCH,
        ward: None,
        photos: Vec::new(),
        history: Vec::new(),
    };
    let location_given = lat.is_some() || lon.is_some();
    // A service without questions has an empty definition, not none (which means withdrawn).
    let empty = curbside_core::ServiceDefinition {
        service_code: code.to_string(),
        attributes: Vec::new(),
    };
    let definition = state.catalog.definition(code).unwrap_or(&empty);
    for p in validate(&draft, Some(definition)) {
        // A bad coordinate is said once, at the parameter that was given.
        if p.field == "location" && location_given && draft.location.is_none() {
            continue;
        }
        let field = match p.field.as_str() {
            "location" if location_given => "lat/long",
            "location" => "lat/long, address_string or address_id",
            f => f,
        };
        problems.push(format!("{field}: {}", p.message));
    }
    if !problems.is_empty() {
        return Err(ServerError::Invalid(problems));
    }
    let now = state.clock.now_ms();
    let mut values = vec![FieldValue::Create(Creation {
        service_code: code.to_string(),
        created_at: Some(now),
        created_by: None,
        channel: Some("open311".into()),
    })];
    if !draft.description.is_empty() {
        values.push(FieldValue::Description(draft.description.clone()));
    }
    if let Some(l) = draft.location {
        values.push(FieldValue::Location(Some(l)));
    }
    if let Some(a) = draft.address {
        values.push(FieldValue::Address(Some(a)));
    }
    for (code, answer) in draft.attributes {
        values.push(FieldValue::Attribute(code, answer));
    }
    if !draft.contact.is_empty() {
        values.push(FieldValue::Contact(draft.contact));
    }
    if let Some(url) = media_url {
        // Staff only: a link someone else hosts may say more about the reporter than the
        // photo they meant; Curbside's own photos come re-encoded through sync.
        values.push(FieldValue::Note(Note {
            id: uuid::Uuid::new_v4().to_string(),
            author: "city".into(),
            text: format!("Photo given with the report over Open311: {url}"),
            public: false,
            status: None,
        }));
    }
    Ok((values, service.kind))
}
