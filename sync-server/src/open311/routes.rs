//! Open311's routes, each a handler of its own in each format, and the OpenAPI document made
//! from them (`GET /openapi.json`): the paths, parameters and answers below are what the
//! document says, so it cannot drift from the router.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use utoipa::OpenApi;

use super::schema::{self, Jurisdiction, ReportQuery, RequestQuery, RequestsQuery};
use super::{discovery, post, requests, services, Format};
use crate::AppState;

type S = State<Arc<AppState>>;
type Params = Query<HashMap<String, String>>;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/discovery.json", get(discovery_json))
        .route("/discovery.xml", get(discovery_xml))
        .route("/services.json", get(services_json))
        .route("/services.xml", get(services_xml))
        .route("/services/{file}", get(super::definition))
        .route("/requests.json", get(requests_json).post(post_json))
        .route("/requests.xml", get(requests_xml).post(post_xml))
        .route("/requests/{file}", get(requests::get_request))
        .route("/tokens/{file}", get(requests::get_token))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Curbside Open311 GeoReport v2",
        description = "Open311 GeoReport v2 (http://wiki.open311.org/GeoReport_v2) in JSON and \
                       XML, with the page, update, place and extension parameters in wide \
                       use, and Curbside's service standards report. Errors are Open311 error \
                       arrays in the format asked for."
    ),
    paths(
        discovery_json,
        discovery_xml,
        services_json,
        services_xml,
        definition_json,
        definition_xml,
        requests_json,
        requests_xml,
        post_json,
        post_xml,
        request_json,
        request_xml,
        token_json,
        token_xml,
        standards_report,
    ),
    components(schemas(
        schema::Error,
        schema::Discovery,
        schema::Service,
        schema::ServiceDefinition,
        schema::ServiceRequest,
        schema::Posted,
        schema::TokenAnswer,
        schema::PostForm,
        crate::reports::Report,
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_default()
            .add_security_scheme(
                "device_token",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        ApiDoc::openapi().to_json().unwrap_or_default(),
    )
        .into_response()
}

const JSON: &str = "application/json";
const XML: &str = "text/xml";

/// The endpoint and the formats it speaks.
#[utoipa::path(get, path = "/discovery.json", tag = "Open311",
    responses((status = 200, body = schema::Discovery, content_type = JSON)))]
async fn discovery_json(s: S) -> Response {
    discovery(s, Format::Json).await
}

#[utoipa::path(get, path = "/discovery.xml", tag = "Open311",
    responses((status = 200, body = String, content_type = XML)))]
async fn discovery_xml(s: S) -> Response {
    discovery(s, Format::Xml).await
}

/// The services a request may be for.
#[utoipa::path(get, path = "/services.json", tag = "Open311", params(Jurisdiction),
    responses(
        (status = 200, body = Vec<schema::Service>, content_type = JSON),
        (status = 400, body = Vec<schema::Error>, content_type = JSON),
        (status = 404, body = Vec<schema::Error>, content_type = JSON)))]
async fn services_json(s: S, q: Params) -> Response {
    services(s, q, Format::Json).await
}

#[utoipa::path(get, path = "/services.xml", tag = "Open311", params(Jurisdiction),
    responses(
        (status = 200, body = String, content_type = XML),
        (status = 400, body = String, content_type = XML),
        (status = 404, body = String, content_type = XML)))]
async fn services_xml(s: S, q: Params) -> Response {
    services(s, q, Format::Xml).await
}

/// A service's questions (its attributes).
#[utoipa::path(get, path = "/services/{service_code}.json", tag = "Open311",
    params(("service_code" = String, Path), Jurisdiction),
    responses(
        (status = 200, body = schema::ServiceDefinition, content_type = JSON),
        (status = 400, body = Vec<schema::Error>, content_type = JSON),
        (status = 404, body = Vec<schema::Error>, content_type = JSON)))]
#[allow(dead_code)]
fn definition_json() {}

#[utoipa::path(get, path = "/services/{service_code}.xml", tag = "Open311",
    params(("service_code" = String, Path), Jurisdiction),
    responses(
        (status = 200, body = String, content_type = XML),
        (status = 400, body = String, content_type = XML),
        (status = 404, body = String, content_type = XML)))]
#[allow(dead_code)]
fn definition_xml() {}

/// Public requests, newest first.
#[utoipa::path(get, path = "/requests.json", tag = "Open311", params(RequestsQuery),
    responses(
        (status = 200, body = Vec<schema::ServiceRequest>, content_type = JSON),
        (status = 400, body = Vec<schema::Error>, content_type = JSON),
        (status = 404, body = Vec<schema::Error>, content_type = JSON)))]
async fn requests_json(s: S, q: RawQuery) -> Response {
    requests::get_requests(s, q, Format::Json).await
}

#[utoipa::path(get, path = "/requests.xml", tag = "Open311", params(RequestsQuery),
    responses(
        (status = 200, body = String, content_type = XML),
        (status = 400, body = String, content_type = XML),
        (status = 404, body = String, content_type = XML)))]
async fn requests_xml(s: S, q: RawQuery) -> Response {
    requests::get_requests(s, q, Format::Xml).await
}

/// A new request, with an API key. An `Idempotency-Key` makes a retry answer as the first
/// time did and create nothing.
#[utoipa::path(post, path = "/requests.json", tag = "Open311",
    params(("Idempotency-Key" = Option<String>, Header)),
    request_body(content = schema::PostForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = Vec<schema::Posted>, content_type = JSON),
        (status = 400, body = Vec<schema::Error>, content_type = JSON),
        (status = 403, body = Vec<schema::Error>, content_type = JSON),
        (status = 404, body = Vec<schema::Error>, content_type = JSON),
        (status = 409, body = Vec<schema::Error>, content_type = JSON),
        (status = 413, body = Vec<schema::Error>, content_type = JSON),
        (status = 429, body = Vec<schema::Error>, content_type = JSON)))]
async fn post_json(s: S, h: HeaderMap, b: Body) -> Response {
    post::post_requests(s, h, b, Format::Json).await
}

#[utoipa::path(post, path = "/requests.xml", tag = "Open311",
    params(("Idempotency-Key" = Option<String>, Header)),
    request_body(content = schema::PostForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = String, content_type = XML),
        (status = 400, body = String, content_type = XML),
        (status = 403, body = String, content_type = XML),
        (status = 404, body = String, content_type = XML),
        (status = 409, body = String, content_type = XML),
        (status = 413, body = String, content_type = XML),
        (status = 429, body = String, content_type = XML)))]
async fn post_xml(s: S, h: HeaderMap, b: Body) -> Response {
    post::post_requests(s, h, b, Format::Xml).await
}

/// One public request (a one-element list).
#[utoipa::path(get, path = "/requests/{service_request_id}.json", tag = "Open311",
    params(("service_request_id" = String, Path), RequestQuery),
    responses(
        (status = 200, body = Vec<schema::ServiceRequest>, content_type = JSON),
        (status = 400, body = Vec<schema::Error>, content_type = JSON),
        (status = 404, body = Vec<schema::Error>, content_type = JSON)))]
#[allow(dead_code)]
fn request_json() {}

#[utoipa::path(get, path = "/requests/{service_request_id}.xml", tag = "Open311",
    params(("service_request_id" = String, Path), RequestQuery),
    responses(
        (status = 200, body = String, content_type = XML),
        (status = 400, body = String, content_type = XML),
        (status = 404, body = String, content_type = XML)))]
#[allow(dead_code)]
fn request_xml() {}

/// The request a `batch` service's token stands for.
#[utoipa::path(get, path = "/tokens/{token}.json", tag = "Open311",
    params(("token" = String, Path), Jurisdiction),
    responses(
        (status = 200, body = Vec<schema::TokenAnswer>, content_type = JSON),
        (status = 400, body = Vec<schema::Error>, content_type = JSON),
        (status = 404, body = Vec<schema::Error>, content_type = JSON)))]
#[allow(dead_code)]
fn token_json() {}

#[utoipa::path(get, path = "/tokens/{token}.xml", tag = "Open311",
    params(("token" = String, Path), Jurisdiction),
    responses(
        (status = 200, body = String, content_type = XML),
        (status = 400, body = String, content_type = XML),
        (status = 404, body = String, content_type = XML)))]
#[allow(dead_code)]
fn token_xml() {}

/// How the city keeps its service standards, per service and ward (staff tokens).
#[utoipa::path(get, path = "/v1/reports/standards", tag = "Reports", params(ReportQuery),
    security(("device_token" = [])),
    responses(
        (status = 200, body = crate::reports::Report, content_type = JSON),
        (status = 200, body = String, content_type = "text/csv"),
        (status = 400, body = Vec<schema::Error>, content_type = JSON),
        (status = 401, body = Vec<schema::Error>, content_type = JSON),
        (status = 403, body = Vec<schema::Error>, content_type = JSON),
        (status = 429, body = Vec<schema::Error>, content_type = JSON)))]
#[allow(dead_code)]
fn standards_report() {}
