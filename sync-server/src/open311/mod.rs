//! Open311 GeoReport v2, every endpoint in JSON and XML (the spec requires XML; JSON is its
//! mechanical mapping): discovery, services and their definitions, `POST requests` ([`post`]),
//! `GET requests`, a request, and a token ([`requests`]). Errors are the spec's error arrays.

pub(crate) mod dates;
pub(crate) mod form;
mod post;
mod requests;
mod routes;
mod schema;
mod view;

pub use routes::{router, ApiDoc};
pub use view::Cache;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use curbside_core::{Attribute, Service, ServiceDefinition};
use serde_json::{json, Value};

use crate::{AppState, ServerError};
use view::{Rec, V};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

impl Format {
    /// Splits `name.json` / `name.xml` into the name and its format.
    fn split(file: &str) -> Option<(&str, Format)> {
        if let Some(stem) = file.strip_suffix(".json") {
            Some((stem, Format::Json))
        } else {
            file.strip_suffix(".xml").map(|stem| (stem, Format::Xml))
        }
    }
}

type Params = Query<HashMap<String, String>>;

/// Longest label of an API key.
const MAX_LABEL: usize = 200;

/// Makes an Open311 API key for `label`: returns its id and the key, which is shown once;
/// storage keeps only its hash.
pub fn create_api_key(state: &AppState, label: &str) -> Result<(String, String), ServerError> {
    let label = label.trim();
    if label.is_empty() || label.chars().count() > MAX_LABEL || label.chars().any(char::is_control)
    {
        return Err(ServerError::BadRequest(format!(
            "a key's label: 1 to {MAX_LABEL} characters"
        )));
    }
    let key = crate::sync::new_token();
    let key_id = format!("key-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    state
        .storage
        .add_api_key(&crate::storage::open311::NewApiKey {
            key_hash: crate::auth::token_hash(&key),
            key_id: key_id.clone(),
            label: label.to_string(),
            created_at_ms: state.clock.now_ms(),
        })?;
    Ok((key_id, key))
}

/// An optional parameter sent empty counts as absent (spec); another jurisdiction is a 404.
fn check_jurisdiction(state: &AppState, given: Option<&str>) -> Result<(), ServerError> {
    match given.map(str::trim) {
        Some(j) if !j.is_empty() && !j.eq_ignore_ascii_case(&state.jurisdiction) => {
            Err(ServerError::NotFound(format!(
                "jurisdiction_id {:?} is not served here",
                j.chars().take(60).collect::<String>()
            )))
        }
        _ => Ok(()),
    }
}

/// A list answer: a JSON array of objects, or `<root>` of `<item>`s (empty, 200, when
/// nothing is found).
fn answer(format: Format, root: &'static str, item: &'static str, recs: &[Rec]) -> Response {
    match format {
        Format::Json => {
            let mut out = String::with_capacity(recs.len() * 512 + 2);
            view::json(
                &V::List(item, recs.iter().map(|r| V::Obj(r.clone())).collect()),
                &mut out,
            );
            (
                [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
                out,
            )
                .into_response()
        }
        Format::Xml => {
            let mut x = Xml::new(root);
            for r in recs {
                x.record(item, r);
            }
            x.finish()
        }
    }
}

async fn services(
    State(state): State<Arc<AppState>>,
    Query(params): Params,
    format: Format,
) -> Response {
    if let Err(e) = check_jurisdiction(&state, params.get("jurisdiction_id").map(String::as_str)) {
        return e.respond(format);
    }
    match format {
        Format::Json => json_body(&state.catalog.services_open311()),
        Format::Xml => {
            let mut x = Xml::new("services");
            for s in &state.catalog.services {
                service_xml(&mut x, s);
            }
            x.finish()
        }
    }
}

async fn definition(
    State(state): State<Arc<AppState>>,
    Path(file): Path<String>,
    Query(params): Params,
) -> Response {
    let Some((code, format)) = Format::split(&file) else {
        return ServerError::NotFound(format!("no such resource: /services/{file}"))
            .respond(Format::Json);
    };
    if let Err(e) = check_jurisdiction(&state, params.get("jurisdiction_id").map(String::as_str)) {
        return e.respond(format);
    }
    let Some(_) = state.catalog.service(code) else {
        return ServerError::NotFound(format!("service_code {code:?} not found")).respond(format);
    };
    match format {
        Format::Json => json_body(
            &state
                .catalog
                .definition_open311(code)
                .expect("service exists"),
        ),
        Format::Xml => {
            let empty = ServiceDefinition {
                service_code: code.to_string(),
                attributes: Vec::new(),
            };
            let def = state.catalog.definition(code).unwrap_or(&empty);
            let mut x = Xml::new("service_definition");
            x.leaf("service_code", code);
            x.open("attributes");
            for a in &def.attributes {
                attribute_xml(&mut x, a);
            }
            x.close("attributes");
            x.finish()
        }
    }
}

async fn discovery(State(state): State<Arc<AppState>>, format: Format) -> Response {
    // Configured, never echoed from Host: a forged header must not redirect other clients.
    let url = format!("{}/", state.public_url);
    let changeset = "2026-11-23T00:00:00Z";
    let formats = ["text/xml", "application/json"];
    match format {
        Format::Json => json_body(&json!({
            "changeset": changeset,
            "contact": format!("Open311 endpoint for {}", state.jurisdiction),
            "key_service": format!("Ask the operator of {} for an api_key", state.jurisdiction),
            "endpoints": [{
                "specification": "http://wiki.open311.org/GeoReport_v2",
                "url": url,
                "changeset": changeset,
                "type": "production",
                "formats": formats,
            }],
        })),
        Format::Xml => {
            let mut x = Xml::new("discovery");
            x.leaf("changeset", changeset);
            x.leaf(
                "contact",
                &format!("Open311 endpoint for {}", state.jurisdiction),
            );
            x.leaf(
                "key_service",
                &format!("Ask the operator of {} for an api_key", state.jurisdiction),
            );
            x.open("endpoints");
            x.open("endpoint");
            x.leaf("specification", "http://wiki.open311.org/GeoReport_v2");
            x.leaf("url", &url);
            x.leaf("changeset", changeset);
            x.leaf("type", "production");
            x.open("formats");
            for f in formats {
                x.leaf("format", f);
            }
            x.close("formats");
            x.close("endpoint");
            x.close("endpoints");
            x.finish()
        }
    }
}

/// Anything else: a 404 in the format the path asks for.
pub async fn not_found(uri: Uri) -> Response {
    let format = if uri.path().ends_with(".xml") {
        Format::Xml
    } else {
        Format::Json
    };
    ServerError::NotFound(format!("no such resource: {}", uri.path())).respond(format)
}

/// An Open311 error array, in JSON or XML.
pub fn error_body(format: Format, status: StatusCode, errors: &[Value]) -> Response {
    let body = match format {
        Format::Json => return (status, json_body(&json!(errors))).into_response(),
        Format::Xml => {
            let mut x = Xml::new("errors");
            for error in errors {
                x.open("error");
                x.leaf("code", &status.as_u16().to_string());
                x.leaf("description", error["description"].as_str().unwrap_or(""));
                x.close("error");
            }
            x.finish()
        }
    };
    (status, body).into_response()
}

fn json_body(v: &Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        v.to_string(),
    )
        .into_response()
}

fn service_xml(x: &mut Xml, s: &Service) {
    x.open("service");
    x.leaf("service_code", &s.code);
    x.leaf("service_name", &s.name);
    x.leaf("description", s.description.as_deref().unwrap_or(""));
    x.leaf("metadata", if s.metadata { "true" } else { "false" });
    x.leaf("type", s.kind.as_str());
    x.leaf("keywords", s.keywords.as_deref().unwrap_or(""));
    x.leaf("group", s.group.as_deref().unwrap_or(""));
    let st = &s.standard;
    x.open("service_standard");
    x.leaf(
        "around_the_clock",
        if st.around_the_clock { "true" } else { "false" },
    );
    x.leaf(
        "acknowledge_business_days",
        &st.acknowledge_business_days.to_string(),
    );
    x.leaf("acknowledge_hours", &st.acknowledge_hours.to_string());
    match st.resolve_business_days {
        Some(days) => x.leaf("resolve_business_days", &days.to_string()),
        None => x.out.push_str("<resolve_business_days/>"),
    }
    x.close("service_standard");
    x.close("service");
}

fn attribute_xml(x: &mut Xml, a: &Attribute) {
    x.open("attribute");
    x.leaf("variable", if a.variable { "true" } else { "false" });
    x.leaf("code", &a.code);
    x.leaf("datatype", a.datatype.as_str());
    x.leaf("required", if a.required { "true" } else { "false" });
    x.leaf(
        "datatype_description",
        a.datatype_description.as_deref().unwrap_or(""),
    );
    x.leaf("order", &a.order.to_string());
    x.leaf("description", &a.description);
    if a.datatype.is_list() {
        x.open("values");
        for v in &a.values {
            x.open("value");
            x.leaf("key", &v.key);
            x.leaf("name", &v.name);
            x.close("value");
        }
        x.close("values");
    }
    x.close("attribute");
}

/// A small writer for the flat documents Open311 uses; text is escaped.
struct Xml {
    out: String,
    root: &'static str,
}

impl Xml {
    fn new(root: &'static str) -> Xml {
        let mut out = String::with_capacity(64 << 10);
        out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
        out.push_str(&format!("<{root}>"));
        Xml { out, root }
    }

    fn open(&mut self, tag: &str) {
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push('>');
    }

    fn close(&mut self, tag: &str) {
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
    }

    fn leaf(&mut self, tag: &str, text: &str) {
        self.open(tag);
        // Most text needs no escaping: copied whole, else character by character.
        let plain = |b: u8| b >= 0x20 && !matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'');
        if text.bytes().all(plain) {
            self.out.push_str(text);
        } else {
            for c in text.chars() {
                match c {
                    '&' => self.out.push_str("&amp;"),
                    '<' => self.out.push_str("&lt;"),
                    '>' => self.out.push_str("&gt;"),
                    '"' => self.out.push_str("&quot;"),
                    '\'' => self.out.push_str("&apos;"),
                    // Characters XML 1.0 cannot carry at all.
                    c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
                    c => self.out.push(c),
                }
            }
        }
        self.close(tag);
    }

    /// An object as `<tag>` with one element per field; a list's items tagged as it says, an
    /// absent value an empty element.
    fn record(&mut self, tag: &str, fields: &Rec) {
        self.open(tag);
        for (name, v) in fields {
            self.value(name, v);
        }
        self.close(tag);
    }

    fn value(&mut self, tag: &str, v: &V) {
        match v {
            V::Text(s) => self.leaf(tag, s),
            V::Num(x) => self.leaf(tag, &x.to_string()),
            V::Bool(b) => self.leaf(tag, if *b { "true" } else { "false" }),
            V::Null => {
                self.out.push('<');
                self.out.push_str(tag);
                self.out.push_str("/>");
            }
            V::Obj(fields) => self.record(tag, fields),
            V::List(item, items) => {
                self.open(tag);
                for i in items {
                    self.value(item, i);
                }
                self.close(tag);
            }
        }
    }

    fn finish(mut self) -> Response {
        self.out.push_str(&format!("</{}>", self.root));
        (
            [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
            self.out,
        )
            .into_response()
    }
}
