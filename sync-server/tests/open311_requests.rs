//! Open311's request endpoints, as a city's back office or another 311 app uses them:
//! `POST requests` with an API key, `GET requests`, a request, a token, in JSON and in XML, and
//! what they refuse. In process through the router, on the backend under test.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use curbside_server::{app, AppState, Config};
use serde_json::Value;
use tower::ServiceExt;

fn config(dir: &std::path::Path) -> Config {
    Config {
        admin_key: None,
        ..common::config(dir.to_path_buf())
    }
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// The descriptions of an error array.
    fn errors(&self) -> Vec<String> {
        self.json()
            .as_array()
            .unwrap_or_else(|| panic!("an error array: {}", self.body))
            .iter()
            .map(|e| {
                assert_eq!(e["code"].as_u64(), Some(u64::from(self.status.as_u16())));
                e["description"].as_str().unwrap().to_string()
            })
            .collect()
    }
}

async fn call(
    state: &Arc<AppState>,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = app(state.clone())
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .unwrap();
    Answer {
        status,
        content_type,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn get(state: &Arc<AppState>, uri: &str) -> Answer {
    call(state, "GET", uri, &[], Vec::new()).await
}

const FORM: &str = "application/x-www-form-urlencoded";

async fn post(state: &Arc<AppState>, path: &str, form: &str) -> Answer {
    call(
        state,
        "POST",
        path,
        &[("content-type", FORM)],
        form.as_bytes().to_vec(),
    )
    .await
}

fn key(state: &AppState) -> String {
    curbside_server::open311::create_api_key(state, "311 back office")
        .unwrap()
        .1
}

/// A streetlight out (a `realtime` service) at Toronto City Hall, with contact details.
fn streetlight(key: &str) -> String {
    format!(
        "api_key={key}&jurisdiction_id=toronto.ca&service_code=TS-STREETLIGHT-OUT\
         &lat=43.6534&long=-79.3841&address_string=100+Queen+St+W\
         &attribute[PROBLEM]=out&attribute[LIGHTS_OUT]=2\
         &description=Dark+since+Tuesday&email=sam%40example.org&first_name=Sam\
         &last_name=Okafor&phone=416-555-0199&device_id=d-1&account_id=a-1"
    )
}

#[tokio::test]
async fn a_posted_request_is_found_in_json_and_xml_without_its_reporter() {
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(AppState::load(&config(dir.path())).unwrap());
    let key = key(&state);

    let posted = post(&state, "/requests.json", &streetlight(&key)).await;
    assert_eq!(posted.status, StatusCode::OK, "{}", posted.body);
    assert_eq!(posted.content_type, "application/json; charset=utf-8");
    let v = posted.json();
    assert_eq!(v.as_array().unwrap().len(), 1, "a one-element array: {v}");
    let id = v[0]["service_request_id"].as_str().expect("a string id");
    assert!(v[0]["service_notice"]
        .as_str()
        .is_some_and(|n| !n.is_empty()));

    let one = get(&state, &format!("/requests/{id}.json")).await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.body);
    let r = &one.json()[0];
    assert_eq!(r["service_request_id"], id);
    assert_eq!(r["service_code"], "TS-STREETLIGHT-OUT");
    assert_eq!(r["service_name"], "Streetlight out");
    assert_eq!(r["status"], "open");
    assert_eq!(r["description"], "Dark since Tuesday");
    assert_eq!(r["address"], "100 Queen St W");
    assert_eq!(r["lat"].as_f64(), Some(43.6534));
    assert_eq!(r["long"].as_f64(), Some(-79.3841));
    for date in ["requested_datetime", "updated_datetime"] {
        let d = r[date].as_str().unwrap();
        assert!(
            time::OffsetDateTime::parse(d, &time::format_description::well_known::Rfc3339).is_ok(),
            "{date} with its zone: {d}"
        );
    }
    for private in ["Sam", "Okafor", "example.org", "555-0199", "d-1", "a-1"] {
        assert!(
            !one.body.contains(private),
            "{private} leaked: {}",
            one.body
        );
    }

    let xml = get(&state, &format!("/requests/{id}.xml")).await;
    assert_eq!(xml.status, StatusCode::OK);
    assert_eq!(xml.content_type, "text/xml; charset=utf-8");
    assert!(xml
        .body
        .starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>"));
    assert!(
        xml.body.contains("<service_requests><request>"),
        "{}",
        xml.body
    );
    assert!(xml
        .body
        .contains(&format!("<service_request_id>{id}</service_request_id>")));
    assert!(!xml.body.contains("Okafor"));

    // Found by the list, by service and status; not by the other status; an empty answer is
    // an empty list, 200, in both formats.
    let list = get(
        &state,
        "/requests.json?service_code=TS-STREETLIGHT-OUT&status=open",
    )
    .await;
    assert_eq!(list.json().as_array().unwrap().len(), 1, "{}", list.body);
    let none = get(&state, "/requests.json?status=closed").await;
    assert_eq!((none.status, none.body.as_str()), (StatusCode::OK, "[]"));
    let none = get(&state, "/requests.xml?status=closed").await;
    assert_eq!(none.status, StatusCode::OK);
    assert!(none.body.ends_with("<service_requests></service_requests>"));
    // An empty parameter is an absent one.
    let all = get(&state, "/requests.json?status=&service_code=&start_date=").await;
    assert_eq!(all.json().as_array().unwrap().len(), 1, "{}", all.body);
    // A service without questions (no definition) takes a request too.
    let bin = post(
        &state,
        "/requests.json",
        &format!("api_key={key}&service_code=SWLMALB-02&lat=43.6534&long=-79.3841"),
    )
    .await;
    assert_eq!(bin.status, StatusCode::OK, "{}", bin.body);
    // A posted XML answer.
    let posted = post(&state, "/requests.xml", &streetlight(&key)).await;
    assert_eq!(posted.status, StatusCode::OK, "{}", posted.body);
    assert!(
        posted.body.contains("<service_request_id>"),
        "{}",
        posted.body
    );
}

#[tokio::test]
async fn a_batch_service_answers_with_a_token_and_a_retry_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(AppState::load(&config(dir.path())).unwrap());
    let key = key(&state);
    let pothole = format!(
        "api_key={key}&service_code=CSROWR-12&lat=43.6453&long=-79.3806\
         &attribute[SIZE]=large&attribute[HAZARDS][]=cyclists&attribute[HAZARDS][]=water"
    );
    let posted = call(
        &state,
        "POST",
        "/requests.json",
        &[("content-type", FORM), ("idempotency-key", "retry-1")],
        pothole.clone().into_bytes(),
    )
    .await;
    assert_eq!(posted.status, StatusCode::OK, "{}", posted.body);
    let token = posted.json()[0]["token"].as_str().unwrap().to_string();
    assert!(posted.json()[0].get("service_request_id").is_none());

    let t = get(&state, &format!("/tokens/{token}.json")).await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    let id = t.json()[0]["service_request_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(t.json()[0]["token"], token.as_str());
    let t = get(&state, &format!("/tokens/{token}.xml")).await;
    assert!(t
        .body
        .contains(&format!("<service_request_id>{id}</service_request_id>")));
    let r = get(&state, &format!("/requests/{id}.json")).await;
    assert_eq!(r.json()[0]["service_code"], "CSROWR-12");

    // The answer was lost: the client sends the same form under the same key.
    let again = call(
        &state,
        "POST",
        "/requests.json",
        &[("content-type", FORM), ("idempotency-key", "retry-1")],
        pothole.clone().into_bytes(),
    )
    .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()[0]["token"], token.as_str());
    // The same key for another request is a client's bug, not a retry.
    let other = call(
        &state,
        "POST",
        "/requests.json",
        &[("content-type", FORM), ("idempotency-key", "retry-1")],
        pothole.replace("large", "small").into_bytes(),
    )
    .await;
    assert_eq!(other.status, StatusCode::CONFLICT, "{}", other.body);
    assert_eq!(other.errors().len(), 1);
    let all = get(&state, "/requests.json").await;
    assert_eq!(all.json().as_array().unwrap().len(), 1, "{}", all.body);

    for bad in [
        "/tokens/nope.json",
        "/tokens/0000000000000000000000000000000000000000000000000000000000000000.json",
    ] {
        let t = get(&state, bad).await;
        assert_eq!(t.status, StatusCode::NOT_FOUND, "{bad}");
        assert_eq!(t.errors().len(), 1);
    }
}

#[tokio::test]
async fn bad_posts_get_their_error_arrays_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(AppState::load(&config(dir.path())).unwrap());
    let key = key(&state);
    let good = streetlight(&key);

    // The key: none, wrong, revoked.
    let none = post(
        &state,
        "/requests.json",
        &good.replace(&format!("api_key={key}&"), ""),
    )
    .await;
    assert_eq!(none.status, StatusCode::FORBIDDEN, "{}", none.body);
    let wrong = post(&state, "/requests.json", &good.replace(&key, "not-a-key")).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let (revoked_id, revoked) =
        curbside_server::open311::create_api_key(&state, "old app").unwrap();
    assert!(state.storage.revoke_api_key(&revoked_id, 0).unwrap());
    let old = post(&state, "/requests.json", &good.replace(&key, &revoked)).await;
    assert_eq!(old.status, StatusCode::FORBIDDEN);
    assert_eq!(old.errors().len(), 1);

    // What is asked for does not exist here.
    let service = post(
        &state,
        "/requests.json",
        &good.replace("TS-STREETLIGHT-OUT", "NOPE"),
    )
    .await;
    assert_eq!(service.status, StatusCode::NOT_FOUND);
    let place = post(
        &state,
        "/requests.json",
        &good.replace("toronto.ca", "ottawa.ca"),
    )
    .await;
    assert_eq!(place.status, StatusCode::NOT_FOUND);

    // Several problems at once, each naming its field, in the format asked for.
    let long = "x".repeat(4_001);
    let bad = format!(
        "api_key={key}&service_code=TS-STREETLIGHT-OUT&lat=91&long=-79.38\
         &attribute[PROBLEM]=exploded&attribute[LIGHTS_OUT]=many&description={long}"
    );
    let answer = post(&state, "/requests.json", &bad).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    let errors = answer.errors();
    for field in [
        "attribute[PROBLEM]",
        "attribute[LIGHTS_OUT]",
        "description",
        "lat",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(field)),
            "{field} named in {errors:?}"
        );
    }
    let xml = post(&state, "/requests.xml", &bad).await;
    assert_eq!(xml.status, StatusCode::BAD_REQUEST);
    assert!(xml.body.starts_with("<?xml") && xml.body.contains("<errors><error><code>400</code>"));
    assert_eq!(xml.body.matches("<error>").count(), errors.len());

    // Malformed forms.
    for (form, says) in [
        (format!("{good}&service_code=CSROWR-12"), "more than once"),
        (
            format!("{good}&attribute[SAFETY]=yes&attribute[SAFETY][]=no"),
            "both",
        ),
        (format!("{good}&attribute[NOPE]=1"), "attribute[NOPE]"),
        (good.replace("long=-79.3841", "long=west"), "long"),
        (
            good.replace(
                "lat=43.6534&long=-79.3841&address_string=100+Queen+St+W",
                "",
            ),
            "location",
        ),
        (good.replace("description=Dark", "description=%FF"), "UTF-8"),
        (
            good.replace(
                "description=Dark",
                "description=%27%3B+DROP+TABLE+requests%3B--",
            ),
            "",
        ),
    ] {
        let answer = post(&state, "/requests.json", &form).await;
        if says.is_empty() {
            // SQL metacharacters are text like any other.
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
            continue;
        }
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{form}: {}",
            answer.body
        );
        let errors = answer.errors();
        assert!(
            errors.iter().any(|e| e.contains(says)),
            "{says}: {errors:?}"
        );
    }
    // Not a form, and too much of one.
    let json = call(
        &state,
        "POST",
        "/requests.json",
        &[("content-type", "application/json")],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(json.status, StatusCode::BAD_REQUEST);
    let huge = post(
        &state,
        "/requests.json",
        &format!("{good}&x={}", "y".repeat(1 << 20)),
    )
    .await;
    assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE);

    // Only the one with SQL in its description was taken.
    let all = get(&state, "/requests.json").await;
    let all = all.json();
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    assert_eq!(
        all[0]["description"],
        "'; DROP TABLE requests;-- since Tuesday"
    );
}

#[tokio::test]
async fn get_requests_checks_its_parameters_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(AppState::load(&config(dir.path())).unwrap());
    let key = key(&state);
    for i in 0..7 {
        // A line of lights going east from City Hall, about 80 m apart.
        let form = streetlight(&key).replace(
            "long=-79.3841",
            &format!("long={}", -79.3841 + f64::from(i) * 0.001),
        );
        assert_eq!(
            post(&state, "/requests.json", &form).await.status,
            StatusCode::OK
        );
    }
    let ids = |a: &Answer| -> Vec<String> {
        a.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["service_request_id"].as_str().unwrap().to_string())
            .collect()
    };
    let all = ids(&get(&state, "/requests.json").await);
    assert_eq!(all.len(), 7);
    // Newest first, paged.
    let p1 = ids(&get(&state, "/requests.json?page_size=3").await);
    let p3 = ids(&get(&state, "/requests.json?page_size=3&page=3").await);
    assert_eq!((p1.as_slice(), p3.as_slice()), (&all[..3], &all[6..]));
    // By number, a comma list, overriding the rest.
    let two = ids(&get(
        &state,
        &format!(
            "/requests.json?service_request_id={},{}&status=closed",
            all[0], all[5]
        ),
    )
    .await);
    assert_eq!(two.len(), 2);
    // Near a point: within 150 m of City Hall, the first two lights.
    let near = ids(&get(
        &state,
        "/requests.json?lat=43.6534&long=-79.3841&radius=150",
    )
    .await);
    assert_eq!(near.len(), 2, "{near:?}");
    // Updated since yesterday: all of them; updated before a day ago: none. Asked by update
    // alone, the 90 days are of updates; further back is refused.
    let day = |offset: i64| {
        (time::OffsetDateTime::now_utc() + time::Duration::days(offset))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
            .replace(':', "%3A")
            .replace('+', "%2B")
    };
    let since = ids(&get(&state, &format!("/requests.json?updated_after={}", day(-1))).await);
    assert_eq!(since.len(), 7);
    let before = ids(&get(
        &state,
        &format!("/requests.json?updated_before={}", day(-1)),
    )
    .await);
    assert!(before.is_empty());
    let long_ago = get(&state, "/requests.json?updated_after=2020-01-01T00:00:00Z").await;
    assert_eq!(
        long_ago.status,
        StatusCode::BAD_REQUEST,
        "{}",
        long_ago.body
    );
    // SQL in a parameter finds nothing and breaks nothing.
    let sql = get(&state, "/requests.json?service_code=%27%20OR%201%3D1--").await;
    assert_eq!((sql.status, sql.body.as_str()), (StatusCode::OK, "[]"));

    for (query, field) in [
        ("page_size=0", "page_size"),
        ("page_size=1000000", "page_size"),
        ("page=0", "page"),
        ("start_date=2026-12-01", "start_date"),
        ("start_date=2026-12-01T00:00:00", "start_date"),
        (
            "start_date=2026-12-02T00:00:00Z&end_date=2026-12-01T00:00:00Z",
            "end_date",
        ),
        (
            "start_date=2026-01-01T00:00:00Z&end_date=2026-12-01T00:00:00Z",
            "90 days",
        ),
        ("status=pending", "status"),
        ("lat=43.6", "long"),
        ("lat=95&long=-79", "lat"),
        ("lat=43.6&long=-79.4&radius=-5", "radius"),
        ("extensions=maybe", "extensions"),
        ("jurisdiction_id=ottawa.ca", "jurisdiction"),
    ] {
        let answer = get(&state, &format!("/requests.json?{query}")).await;
        let expected = if field == "jurisdiction" {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!(answer.status, expected, "{query}: {}", answer.body);
        assert!(
            answer.errors().iter().any(|e| e.contains(field)),
            "{query}: {}",
            answer.body
        );
        let xml = get(&state, &format!("/requests.xml?{query}")).await;
        assert_eq!(xml.status, expected);
        assert!(xml.body.contains("<errors>"), "{query}: {}", xml.body);
    }
    // Several problems, one error each.
    let many = get(&state, "/requests.json?page_size=0&status=x&start_date=y").await;
    assert_eq!(many.errors().len(), 3, "{}", many.body);
    // A request that does not exist, or an id that is not ours.
    for missing in [
        "/requests/999999999.json",
        "/requests/abc.json",
        "/requests/1.xml",
    ] {
        assert_eq!(
            get(&state, missing).await.status,
            StatusCode::NOT_FOUND,
            "{missing}"
        );
    }
}

#[tokio::test]
async fn likely_duplicates_are_found_on_receipt_and_never_merged() {
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(AppState::load(&config(dir.path())).unwrap());
    let key = key(&state);
    let light = |lat: f64, lon: f64, service: &str| {
        let answers = match service {
            "TS-STREETLIGHT-OUT" => "attribute[PROBLEM]=out",
            _ => "attribute[MATERIAL][]=tires",
        };
        format!("api_key={key}&service_code={service}&lat={lat}&long={lon}&{answers}")
    };
    let number = |a: Answer| {
        a.json()[0]["service_request_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let first = number(
        post(
            &state,
            "/requests.json",
            &light(43.6534, -79.3841, "TS-STREETLIGHT-OUT"),
        )
        .await,
    );
    // 10 m away, the same service: likely the same light.
    let second = number(
        post(
            &state,
            "/requests.json",
            &light(43.65349, -79.3841, "TS-STREETLIGHT-OUT"),
        )
        .await,
    );
    // 300 m away, or another service at the same spot: not.
    let far = number(
        post(
            &state,
            "/requests.json",
            &light(43.6561, -79.3841, "TS-STREETLIGHT-OUT"),
        )
        .await,
    );
    let other = number(
        post(
            &state,
            "/requests.json",
            &light(43.6534, -79.3841, "SWM-ILLEGAL-DUMPING"),
        )
        .await,
    );

    let likely = |n: &str| {
        let n = n.to_string();
        let state = state.clone();
        async move {
            let r = get(&state, &format!("/requests/{n}.json?extensions=true")).await;
            r.json()[0]["extended_attributes"]["likely_duplicates"].clone()
        }
    };
    let found = likely(&second).await;
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found[0]["service_request_id"], first.as_str());
    assert!(
        (found[0]["distance_m"].as_f64().unwrap() - 10.0).abs() < 1.0,
        "{found}"
    );
    for n in [&first, &far, &other] {
        assert_eq!(likely(n).await, serde_json::json!([]), "{n}");
    }
    // Both stay open: the server finds, staff decide.
    let open = get(
        &state,
        "/requests.json?status=open&service_code=TS-STREETLIGHT-OUT",
    )
    .await;
    assert_eq!(open.json().as_array().unwrap().len(), 3);
    let xml = get(&state, &format!("/requests/{second}.xml?extensions=true")).await;
    assert!(
        xml.body.contains(&format!(
            "<likely_duplicates><likely_duplicate><service_request_id>{first}</service_request_id>"
        )),
        "{}",
        xml.body
    );
}

#[tokio::test]
async fn the_openapi_document_names_every_open311_route() {
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(AppState::load(&config(dir.path())).unwrap());
    let doc = get(&state, "/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK);
    let doc = doc.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/discovery.json", "get"),
        ("/services.xml", "get"),
        ("/services/{service_code}.json", "get"),
        ("/requests.json", "get"),
        ("/requests.json", "post"),
        ("/requests.xml", "post"),
        ("/requests/{service_request_id}.xml", "get"),
        ("/tokens/{token}.json", "get"),
        ("/v1/reports/standards", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is documented"
        );
        // Every documented path is served: a 404 here would be the router's, not the data's.
        let concrete = path
            .replace("{service_code}", "CSROWR-12")
            .replace("{service_request_id}", "1")
            .replace("{token}", "x");
        if method == "get" && !concrete.starts_with("/v1") {
            let answer = get(&state, &concrete).await;
            assert!(
                !answer.body.contains("no such resource"),
                "{concrete}: {}",
                answer.body
            );
        }
    }
}
