//! How the city keeps its service standards: `GET /v1/reports/standards?from=…&to=…`, per
//! service and ward, in JSON or CSV (`format=csv` or `Accept: text/csv`). For staff (an
//! inspector's token): it counts every request, public or not.
//!
//! A request counts toward "within standard" once its deadline has passed or it was met:
//! acknowledged (staff first acted on it) by its acknowledgement deadline, closed by its
//! resolution deadline. One still open past its deadline counts as late; one not yet due, not
//! at all. Medians are over the requests acknowledged (closed) in the span.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use curbside_core::sync::protocol::Role;
use serde::Serialize;

use crate::auth::Authed;
use crate::open311::dates;
use crate::open311::form::Form;
use crate::storage::open311::StandardRow;
use crate::{blocking, AppState, ServerError};

pub const STANDARDS: &str = "/v1/reports/standards";
/// The longest span one report covers.
const MAX_SPAN_MS: i64 = 366 * 86_400_000;
/// Requests one report reads at most: a year of a city several times Toronto's size.
const MAX_ROWS: usize = 2_000_000;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route(STANDARDS, get(standards))
}

/// One service in one ward.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Group {
    pub service_code: String,
    pub service_name: Option<String>,
    pub ward: Option<String>,
    pub requests: u64,
    pub acknowledged: u64,
    pub acknowledged_within_standard: u64,
    /// Of those whose acknowledgement deadline passed or was met.
    pub acknowledged_within_standard_pct: Option<f64>,
    pub overdue_acknowledgement: u64,
    pub resolved: u64,
    pub resolved_within_standard: u64,
    pub resolved_within_standard_pct: Option<f64>,
    pub overdue_resolution: u64,
    pub median_hours_to_acknowledge: Option<f64>,
    pub median_days_to_resolve: Option<f64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Report {
    pub from: String,
    pub to: String,
    pub generated: String,
    pub groups: Vec<Group>,
}

#[derive(Default)]
struct Tally {
    requests: u64,
    acknowledged: u64,
    ack_on_time: u64,
    ack_late: u64,
    resolved: u64,
    res_on_time: u64,
    res_late: u64,
    ack_hours: Vec<f64>,
    res_days: Vec<f64>,
    overdue_ack: u64,
    overdue_res: u64,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn pct(on_time: u64, late: u64) -> Option<f64> {
    let all = on_time + late;
    (all > 0).then(|| (1000.0 * on_time as f64 / all as f64).round() / 10.0)
}

/// Whether a deadline was met: `Some(true)` met, `Some(false)` missed (or passed undone),
/// `None` not due yet or no deadline.
fn met(due: Option<i64>, done: Option<i64>, now_ms: i64) -> Option<bool> {
    let due = due?;
    match done {
        Some(at) => Some(at <= due),
        None if now_ms > due => Some(false),
        None => None,
    }
}

/// The report of `rows` at `now_ms`, a group per service and ward, in that order.
pub fn tally(
    rows: &[StandardRow],
    now_ms: i64,
    name: impl Fn(&str) -> Option<String>,
) -> Vec<Group> {
    let mut groups: BTreeMap<(String, Option<String>), Tally> = BTreeMap::new();
    for r in rows {
        let key = (r.service_code.clone().unwrap_or_default(), r.ward.clone());
        let t = groups.entry(key).or_default();
        let times = &r.times;
        t.requests += 1;
        if let Some(at) = times.acknowledged_at_ms {
            t.acknowledged += 1;
            t.ack_hours
                .push((at - r.created_at_ms).max(0) as f64 / 3_600_000.0);
        }
        let overdue = |due: Option<i64>, done: Option<i64>| {
            u64::from(done.is_none() && due.is_some_and(|d| now_ms > d))
        };
        t.overdue_ack += overdue(times.acknowledge_due_ms, times.acknowledged_at_ms);
        t.overdue_res += overdue(times.resolve_due_ms, times.closed_at_ms);
        match met(times.acknowledge_due_ms, times.acknowledged_at_ms, now_ms) {
            Some(true) => t.ack_on_time += 1,
            Some(false) => t.ack_late += 1,
            None => {}
        }
        if let Some(at) = times.closed_at_ms {
            t.resolved += 1;
            t.res_days.push(curbside_core::vocab::calendar::days(
                (at - r.created_at_ms).max(0),
            ));
        }
        match met(times.resolve_due_ms, times.closed_at_ms, now_ms) {
            Some(true) => t.res_on_time += 1,
            Some(false) => t.res_late += 1,
            None => {}
        }
    }
    groups
        .into_iter()
        .map(|((service_code, ward), t)| Group {
            service_name: name(&service_code),
            service_code,
            ward,
            requests: t.requests,
            acknowledged: t.acknowledged,
            acknowledged_within_standard: t.ack_on_time,
            acknowledged_within_standard_pct: pct(t.ack_on_time, t.ack_late),
            overdue_acknowledgement: t.overdue_ack,
            resolved: t.resolved,
            resolved_within_standard: t.res_on_time,
            resolved_within_standard_pct: pct(t.res_on_time, t.res_late),
            overdue_resolution: t.overdue_res,
            median_hours_to_acknowledge: median(t.ack_hours).map(|h| (h * 10.0).round() / 10.0),
            median_days_to_resolve: median(t.res_days).map(|d| (d * 100.0).round() / 100.0),
        })
        .collect()
}

/// A CSV field: quoted when it must be, formulas defused (a spreadsheet must not run a
/// service name).
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn csv(groups: &[Group]) -> String {
    let mut out = String::from(
        "service_code,service_name,ward,requests,acknowledged,acknowledged_within_standard,\
         acknowledged_within_standard_pct,overdue_acknowledgement,resolved,\
         resolved_within_standard,resolved_within_standard_pct,overdue_resolution,\
         median_hours_to_acknowledge,median_days_to_resolve\r\n",
    );
    let num = |x: Option<f64>| x.map(|x| x.to_string()).unwrap_or_default();
    for g in groups {
        let fields = [
            csv_field(&g.service_code),
            csv_field(g.service_name.as_deref().unwrap_or_default()),
            csv_field(g.ward.as_deref().unwrap_or_default()),
            g.requests.to_string(),
            g.acknowledged.to_string(),
            g.acknowledged_within_standard.to_string(),
            num(g.acknowledged_within_standard_pct),
            g.overdue_acknowledgement.to_string(),
            g.resolved.to_string(),
            g.resolved_within_standard.to_string(),
            num(g.resolved_within_standard_pct),
            g.overdue_resolution.to_string(),
            num(g.median_hours_to_acknowledge),
            num(g.median_days_to_resolve),
        ];
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

async fn standards(
    State(state): State<Arc<AppState>>,
    Authed(device): Authed,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ServerError> {
    if device.role != Role::Inspector {
        return Err(ServerError::Forbidden(
            "the standards report is for the city's staff".into(),
        ));
    }
    let form = Form::parse(raw.unwrap_or_default().as_bytes())?;
    let mut problems = Vec::new();
    let mut date = |name: &str| match form.get(name) {
        None => {
            problems.push(format!("{name}: required (ISO 8601 with a zone)"));
            None
        }
        Some(v) => dates::parse(name, v).map_err(|e| problems.push(e)).ok(),
    };
    let (from, to) = (date("from"), date("to"));
    let csv_asked = match form.get("format") {
        Some("csv") => true,
        Some("json") => false,
        Some(_) => {
            problems.push("format: json or csv".into());
            false
        }
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/csv")),
    };
    if let (Some(from), Some(to)) = (from, to) {
        if to < from {
            problems.push("to: before from".into());
        } else if to - from > MAX_SPAN_MS {
            problems.push("from/to: at most 366 days apart".into());
        }
    }
    if !problems.is_empty() {
        return Err(ServerError::Invalid(problems));
    }
    let (from, to) = (from.unwrap_or_default(), to.unwrap_or_default());
    let report = blocking(&state, move |s| {
        let rows = s.storage.standard_rows(from, to, MAX_ROWS + 1)?;
        if rows.len() > MAX_ROWS {
            return Err(ServerError::BadRequest(format!(
                "more than {MAX_ROWS} requests in this span: narrow from/to"
            )));
        }
        let now = s.clock.now_ms();
        Ok(Report {
            from: dates::format(from),
            to: dates::format(to),
            generated: dates::format(now),
            groups: tally(&rows, now, |code| {
                s.catalog.service(code).map(|s| s.name.clone())
            }),
        })
    })
    .await?;
    Ok(if csv_asked {
        (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            csv(&report.groups),
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            serde_json::to_string(&report).unwrap_or_default(),
        )
            .into_response()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::open311::StandardTimes;

    const H: i64 = 3_600_000;

    fn row(
        ward: &str,
        ack_due: i64,
        acked: Option<i64>,
        res_due: i64,
        closed: Option<i64>,
    ) -> StandardRow {
        StandardRow {
            service_code: Some("CSROWR-12".into()),
            ward: Some(ward.into()),
            created_at_ms: 0,
            times: StandardTimes {
                acknowledge_due_ms: Some(ack_due),
                resolve_due_ms: Some(res_due),
                acknowledged_at_ms: acked,
                closed_at_ms: closed,
            },
        }
    }

    #[test]
    fn counts_what_was_due_and_medians_what_was_done() {
        let now = 100 * H;
        let rows = [
            row("10", 48 * H, Some(2 * H), 96 * H, Some(50 * H)), // both on time
            row("10", 48 * H, Some(60 * H), 96 * H, None),        // late ack, open, not yet due
            row("10", 48 * H, None, 96 * H, None),                // neither: both overdue now
            row("10", 200 * H, None, 300 * H, None),              // not due yet: not counted
            row("11", 48 * H, Some(4 * H), 72 * H, Some(80 * H)), // resolved late
        ];
        let groups = tally(&rows, now, |_| Some("Pothole".into()));
        assert_eq!(groups.len(), 2);
        let w10 = &groups[0];
        assert_eq!((w10.ward.as_deref(), w10.requests), (Some("10"), 4));
        assert_eq!(w10.acknowledged, 2);
        assert_eq!(w10.acknowledged_within_standard, 1);
        assert_eq!(w10.acknowledged_within_standard_pct, Some(33.3));
        assert_eq!(w10.overdue_acknowledgement, 1);
        assert_eq!(w10.resolved_within_standard_pct, Some(33.3));
        assert_eq!(w10.overdue_resolution, 2);
        assert_eq!(w10.median_hours_to_acknowledge, Some(31.0));
        assert_eq!(w10.median_days_to_resolve, Some(2.08));
        assert_eq!(groups[1].resolved_within_standard_pct, Some(0.0));
        let text = csv(&groups);
        assert_eq!(text.lines().count(), 3);
        assert!(text
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("CSROWR-12,Pothole,10,4,2,1,33.3,1,"));
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("\t=1"), "'\t=1");
    }
}
