//! Fair use: rate limits per client address (before anything else is done for a request), per
//! registration address, and per device for sync and photos (right after its token is
//! checked, before the body is read). A refusal is 429 with `Retry-After`; nothing one device
//! does takes from the others' budgets.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config;
use crate::ServerError;

/// What a device is asking for, each with its own budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Sync,
    Media,
    /// Everything else a token is shown for (token rotation): counted as a sync.
    Other,
    /// Requests posted over Open311, per API key.
    Open311,
}

impl Class {
    pub fn of_path(path: &str) -> Class {
        if path.starts_with(curbside_core::sync::protocol::MEDIA) {
            Class::Media
        } else if path == curbside_core::sync::protocol::SYNC {
            Class::Sync
        } else {
            Class::Other
        }
    }
}

pub struct Limits {
    sync: DefaultKeyedRateLimiter<String>,
    media: DefaultKeyedRateLimiter<String>,
    open311: DefaultKeyedRateLimiter<String>,
    register: DefaultKeyedRateLimiter<IpAddr>,
    address: DefaultKeyedRateLimiter<IpAddr>,
    connections: DefaultKeyedRateLimiter<IpAddr>,
    /// Counts refusals, for `/metrics`.
    refused: prometheus_client::metrics::counter::Counter,
}

fn quota(n: u32, per: Duration, burst_divisor: u32) -> Quota {
    let n = NonZeroU32::new(n.max(1)).expect("at least one");
    let burst = NonZeroU32::new((n.get() / burst_divisor).max(1)).expect("at least one");
    Quota::with_period(per / n.get())
        .expect("a period")
        .allow_burst(burst)
}

impl Limits {
    pub fn new(
        c: &config::Limits,
        refused: prometheus_client::metrics::counter::Counter,
    ) -> Limits {
        let minute = Duration::from_secs(60);
        Limits {
            sync: RateLimiter::keyed(quota(c.syncs_per_minute, minute, 5)),
            media: RateLimiter::keyed(quota(c.media_per_minute, minute, 5)),
            open311: RateLimiter::keyed(quota(c.open311_posts_per_minute, minute, 5)),
            register: RateLimiter::keyed(quota(
                c.registrations_per_hour,
                Duration::from_secs(3600),
                3,
            )),
            address: RateLimiter::keyed(quota(c.address_per_second, Duration::from_secs(1), 1)),
            connections: RateLimiter::keyed(quota(c.connections_per_minute, minute, 5)),
            refused,
        }
    }

    fn check<K: Hash + Eq + Clone>(
        &self,
        limiter: &DefaultKeyedRateLimiter<K>,
        key: &K,
        what: &str,
    ) -> Result<(), ServerError> {
        limiter.check_key(key).map_err(|not_until| {
            self.refused.inc();
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ServerError::TooMany {
                retry_after_s: wait.as_secs() + 1,
                message: format!("too many {what}: try again later"),
            }
        })
    }

    /// A device's budget, keyed by the device (a new token is not a new budget). Checked
    /// after one indexed lookup of its token and before anything else storage does for it.
    pub fn device(&self, class: Class, device_id: &str) -> Result<(), ServerError> {
        let key = device_id.to_string();
        match class {
            Class::Media => self.check(&self.media, &key, "photo requests from this device"),
            Class::Open311 => self.check(&self.open311, &key, "requests posted with this api_key"),
            Class::Sync | Class::Other => self.check(&self.sync, &key, "syncs from this device"),
        }
    }

    pub fn address(&self, ip: IpAddr) -> Result<(), ServerError> {
        self.check(&self.address, &ip, "requests from this address")
    }

    /// A new connection from `ip`: checked at accept, before any work is done for it.
    pub fn connection(&self, ip: IpAddr) -> Result<(), ServerError> {
        self.check(&self.connections, &ip, "connections from this address")
    }

    pub fn registration(&self, ip: IpAddr) -> Result<(), ServerError> {
        self.check(&self.register, &ip, "registrations from this address")
    }

    /// Forgets keys whose budgets are full again: memory stays bounded by recent callers.
    pub fn forget_idle(&self) {
        for l in [&self.sync, &self.media, &self.open311] {
            l.retain_recent();
            l.shrink_to_fit();
        }
        for l in [&self.register, &self.address, &self.connections] {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// Turns at a costly step (decoding a photo) that only a few callers may take at once,
/// whichever devices they come from: a burst of uploads queues for the cores instead of
/// multiplying the memory each decode holds.
pub struct Turns {
    free: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
    wait: Duration,
}

/// A turn held: given back when dropped (a panic too).
pub struct Turn<'a>(&'a Turns);

impl Turns {
    pub fn new(at_once: usize, wait: Duration) -> Turns {
        Turns {
            free: std::sync::Mutex::new(at_once.max(1)),
            freed: std::sync::Condvar::new(),
            wait,
        }
    }

    /// Waits for a turn, up to the wait it was made with: then 429, try again shortly.
    pub fn turn(&self) -> Result<Turn<'_>, ServerError> {
        let free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let (mut free, timeout) = self
            .freed
            .wait_timeout_while(free, self.wait, |n| *n == 0)
            .unwrap_or_else(|p| p.into_inner());
        if timeout.timed_out() && *free == 0 {
            return Err(ServerError::TooMany {
                retry_after_s: 5,
                message: "the server is busy with other photos: send the last chunk again".into(),
            });
        }
        *free -= 1;
        Ok(Turn(self))
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// The client's address, when the server was reached over a socket (not in process).
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}
