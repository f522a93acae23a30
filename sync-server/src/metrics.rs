//! `/metrics` in Prometheus text format: requests by route and status, their latency, sync
//! batch sizes, rate-limited requests, requests in flight and open connections. Labels are
//! route templates (`/v1/media/{sha256}`), never paths or anything a caller sent.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Route {
    pub route: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RouteStatus, Counter>,
    pub latency: Family<Route, Histogram>,
    pub pushed: Histogram,
    pub pulled: Histogram,
    pub rate_limited: Counter,
    pub in_flight: Gauge,
    pub connections: Gauge,
    readers_open: Gauge,
    readers_busy: Gauge,
    readers_max: Gauge,
    commits: Counter,
    commit_writes: Counter,
    /// One scrape at a time carries storage's totals over.
    scrape: std::sync::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("curbside");
        let requests = Family::<RouteStatus, Counter>::default();
        registry.register(
            "http_requests",
            "Requests answered, by route and status",
            requests.clone(),
        );
        let latency = Family::<Route, Histogram>::new_with_constructor(|| {
            // 0.1 ms to ~3 s.
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time to answer, by route",
            latency.clone(),
        );
        let sizes = || Histogram::new(exponential_buckets(1.0, 4.0, 8));
        let (pushed, pulled) = (sizes(), sizes());
        registry.register(
            "sync_pushed_changes",
            "Changes pushed per sync",
            pushed.clone(),
        );
        registry.register(
            "sync_pulled_changes",
            "Changes answered per sync",
            pulled.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "rate_limited_requests",
            "Requests refused with 429 by a rate limit",
            rate_limited.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests being answered",
            in_flight.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "open_connections",
            "Client connections open",
            connections.clone(),
        );
        let (readers_open, readers_busy, readers_max) =
            (Gauge::default(), Gauge::default(), Gauge::default());
        registry.register(
            "storage_readers_open",
            "Storage reader connections open",
            readers_open.clone(),
        );
        registry.register(
            "storage_readers_busy",
            "Storage reader connections in use",
            readers_busy.clone(),
        );
        registry.register(
            "storage_readers_max",
            "Storage reader connections there may be",
            readers_max.clone(),
        );
        let (commits, commit_writes) = (Counter::default(), Counter::default());
        registry.register(
            "storage_group_commits",
            "Group commits of the storage writer",
            commits.clone(),
        );
        registry.register(
            "storage_group_commit_writes",
            "Writes the group commits carried",
            commit_writes.clone(),
        );
        Metrics {
            readers_open,
            readers_busy,
            readers_max,
            commits,
            commit_writes,
            scrape: std::sync::Mutex::new(()),
            registry,
            requests,
            latency,
            pushed,
            pulled,
            rate_limited,
            in_flight,
            connections,
        }
    }

    /// Takes in storage's use of its connections, before an encoding.
    pub fn storage(&self, now: crate::storage::PoolUse) {
        let _one = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.readers_open.set(now.readers_open as i64);
        self.readers_busy.set(now.readers_busy as i64);
        self.readers_max.set(now.readers_max as i64);
        self.commits
            .inc_by(now.commits.saturating_sub(self.commits.get()));
        self.commit_writes
            .inc_by(now.writes.saturating_sub(self.commit_writes.get()));
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}
