//! The shapes of Open311's answers and questions, for the OpenAPI document ([`super::routes`]).
//! The answers themselves are written by [`super::view`] and its kin; the test command checks
//! that every answer of a live server fits these (schemathesis).

#![allow(dead_code)]

use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

/// One error; answers carry a list of them.
#[derive(Serialize, ToSchema)]
pub struct Error {
    /// The HTTP status.
    pub code: u16,
    pub description: String,
}

#[derive(Serialize, ToSchema)]
pub struct Endpoint {
    pub specification: String,
    pub url: String,
    pub changeset: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub formats: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Discovery {
    pub changeset: String,
    pub contact: String,
    pub key_service: String,
    pub endpoints: Vec<Endpoint>,
}

/// A service's promise (an extension of the service list).
#[derive(Serialize, ToSchema)]
pub struct ServiceStandard {
    pub around_the_clock: bool,
    pub acknowledge_business_days: u32,
    pub acknowledge_hours: u32,
    pub resolve_business_days: Option<u32>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Service)]
pub struct Service {
    pub service_code: String,
    pub service_name: String,
    pub description: Option<String>,
    pub metadata: bool,
    #[serde(rename = "type")]
    #[schema(pattern = "^(realtime|batch|blackbox)$")]
    pub kind: String,
    pub keywords: Option<String>,
    pub group: Option<String>,
    pub service_standard: ServiceStandard,
}

#[derive(Serialize, ToSchema)]
pub struct ListValue {
    pub key: String,
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct Attribute {
    pub variable: bool,
    pub code: String,
    #[schema(pattern = "^(string|number|datetime|text|singlevaluelist|multivaluelist)$")]
    pub datatype: String,
    pub required: bool,
    pub datatype_description: Option<String>,
    pub order: u32,
    pub description: String,
    #[schema(nullable = false)]
    pub values: Option<Vec<ListValue>>,
}

#[derive(Serialize, ToSchema)]
pub struct ServiceDefinition {
    pub service_code: String,
    pub attributes: Vec<Attribute>,
}

/// A public note of a request's timeline.
#[derive(Serialize, ToSchema)]
pub struct Note {
    pub datetime: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    /// Who wrote it: resident, inspector or city (never which device or person).
    pub role: String,
    pub description: String,
    pub status: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LikelyDuplicate {
    pub service_request_id: String,
    pub distance_m: f64,
}

/// `extensions=true`: what Curbside adds to a request.
#[derive(Serialize, ToSchema)]
pub struct Extended {
    /// How it came in: app, open311.
    pub channel: String,
    pub ward: Option<String>,
    pub detailed_status: String,
    pub notes: Vec<Note>,
    pub acknowledge_by: Option<String>,
    pub acknowledged_datetime: Option<String>,
    pub overdue_acknowledgement: Option<bool>,
    pub resolve_by: Option<String>,
    pub closed_datetime: Option<String>,
    pub overdue_resolution: Option<bool>,
    /// Its photos on this server (served to those who may see the request, with a token).
    pub media_urls: Vec<String>,
    pub likely_duplicates: Vec<LikelyDuplicate>,
    pub duplicate_of: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ServiceRequest {
    pub service_request_id: String,
    #[schema(pattern = "^(open|closed)$")]
    pub status: String,
    pub status_notes: Option<String>,
    pub service_name: Option<String>,
    pub service_code: String,
    pub description: Option<String>,
    pub agency_responsible: Option<String>,
    pub service_notice: Option<String>,
    /// ISO 8601 with the zone.
    pub requested_datetime: String,
    pub updated_datetime: String,
    pub expected_datetime: Option<String>,
    pub address: Option<String>,
    pub address_id: Option<String>,
    pub zipcode: Option<String>,
    pub lat: Option<f64>,
    pub long: Option<f64>,
    pub media_url: Option<String>,
    #[schema(nullable = false)]
    pub extended_attributes: Option<Extended>,
}

/// What `POST requests` answers: an id (`realtime`), a token (`batch`) or only the notice
/// (`blackbox`).
#[derive(Serialize, ToSchema)]
pub struct Posted {
    #[schema(nullable = false)]
    pub service_request_id: Option<String>,
    #[schema(nullable = false)]
    pub token: Option<String>,
    pub service_notice: String,
    pub account_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TokenAnswer {
    pub service_request_id: String,
    pub token: String,
}

/// `POST requests`, form-encoded. Answers go in `attribute[CODE]` (one value) or
/// `attribute[CODE][]` (each value of a multivaluelist).
#[derive(Serialize, ToSchema)]
pub struct PostForm {
    pub api_key: String,
    pub jurisdiction_id: Option<String>,
    pub service_code: String,
    pub lat: Option<f64>,
    pub long: Option<f64>,
    pub address_string: Option<String>,
    pub address_id: Option<String>,
    pub email: Option<String>,
    pub device_id: Option<String>,
    pub account_id: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    /// At most 4,000 characters.
    pub description: Option<String>,
    pub media_url: Option<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Jurisdiction {
    /// Given, it must be this server's (e.g. `toronto.ca`).
    pub jurisdiction_id: Option<String>,
}

/// `GET requests`: an empty parameter is an absent one.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestsQuery {
    pub jurisdiction_id: Option<String>,
    /// Comma-separated public numbers: overrides every other filter.
    pub service_request_id: Option<String>,
    /// Comma-separated service codes.
    pub service_code: Option<String>,
    /// Received at or after (ISO 8601 with a zone); default 90 days before `end_date`.
    pub start_date: Option<String>,
    /// Received at or before; at most 90 days after `start_date`; default now.
    pub end_date: Option<String>,
    /// `open`, `closed`, or both.
    pub status: Option<String>,
    /// From 1.
    pub page: Option<u64>,
    /// 1 to 1,000; default 50.
    pub page_size: Option<u64>,
    pub updated_after: Option<String>,
    pub updated_before: Option<String>,
    pub lat: Option<f64>,
    pub long: Option<f64>,
    /// Metres (1 to 50,000) around `lat`/`long`; default 500.
    pub radius: Option<f64>,
    /// `true`: Curbside's extended attributes too.
    pub extensions: Option<bool>,
}

/// One request.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestQuery {
    pub jurisdiction_id: Option<String>,
    pub extensions: Option<bool>,
}

/// The standards report's span.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// ISO 8601 with a zone.
    pub from: String,
    /// At most 366 days after `from`.
    pub to: String,
    /// `json` (the default) or `csv`.
    pub format: Option<String>,
}
