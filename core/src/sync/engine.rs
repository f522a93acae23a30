//! The sync engine: rounds of push-then-pull and the photo uploads after them, over any
//! [`Transport`], against any [`Replica`] (the store that holds the changes). It holds the
//! protocol's decisions — what to do with a clock refused, a cursor expired, a request refused,
//! when to stop — and neither SQL nor HTTP.
//!
//! Each round is: take a batch from the outbox, one call, then one commit that acknowledges the
//! batch, applies the pulled page and saves the cursor. A crash or a lost answer anywhere
//! repeats the round, which the server and the merge make harmless.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::change::Change;
use super::protocol::{SyncRequest, SyncResponse, MAX_PUSH};
use super::transport::{Chunk, Refusal, Transport};
use crate::error::{Error, Result};
use crate::vocab::{ReplicaId, RequestId};

/// Photo bytes sent per chunk: small enough to resume cheaply on a bad connection.
pub const CHUNK: usize = 256 * 1024;
/// Offsets closer than this to the one in use are measurement noise (half a round trip).
pub const OFFSET_NOISE_MS: i64 = 2_000;

/// Stops a sync between calls, between photo chunks and during backoff waits.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Tries per call, the first included.
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// For one HTTP exchange, connection included.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Full jitter (AWS architecture blog, "Exponential Backoff and Jitter"): uniformly in
    /// [0, min(max, base·2^attempt)], so a fleet of phones coming back online spreads out.
    pub fn delay(&self, attempt: u32) -> Duration {
        let cap = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max_delay);
        cap.mul_f64(fastrand::f64())
    }
}

#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    pub retry: RetryPolicy,
    pub cancel: CancelToken,
}

/// Where a sync is, for a progress bar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub pushed_changes: u64,
    pub pending_changes: u64,
    pub pulled_changes: u64,
    pub photo_bytes_sent: u64,
    pub photo_bytes_total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub pushed: u64,
    pub pulled: u64,
    pub rounds: u64,
    pub photos_uploaded: u64,
    /// Unsent changes moved after the server reported this device's clock was off.
    pub restamped: u64,
    /// The server's retention had passed, or it was another server: everything was pulled again.
    pub full_resync: bool,
    /// Requests the server refused, with its reason; their unsent changes were dropped.
    pub rejected: Vec<(String, String)>,
}

/// What the engine pushes in one round.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    pub changes: Vec<Change>,
    pub cursor: Option<String>,
    /// This replica's id, when it holds every change it made (not during a full resync).
    pub replica: Option<ReplicaId>,
}

/// The replica the engine syncs: the store's side of each step, each one transaction.
pub trait Replica: Sync {
    /// The replica's clock, for the offset estimate.
    fn now_ms(&self) -> i64;
    /// The next batch to push (its requests become sent, its changes pushed), and the cursor to
    /// pull from.
    fn outgoing(&self, limit: usize) -> Result<Outgoing>;
    /// Acknowledges `pushed` and applies the pulled page of `answer`, saving its cursor.
    fn commit(&self, pushed: &[Change], answer: &SyncResponse) -> Result<()>;
    /// Takes the server's estimate of this device's clock error; returns how many unsent
    /// changes moved. `refused_at`: the server's time when it refused a push for its stamps.
    fn set_clock_offset(&self, offset_ms: i64, refused_at: Option<i64>) -> Result<usize>;
    fn clock_offset(&self) -> Result<i64>;
    /// Forgets what the server holds and the cursor, keeping what is unsent: a full resync.
    fn restart_pull(&self) -> Result<()>;
    /// The server refused this request: drop its unsent changes and tell its reporter.
    fn reject(&self, request_id: &RequestId, reason: &str) -> Result<()>;
    fn pending_count(&self) -> Result<u64>;
    /// Photos to upload, with their sizes.
    fn queued_photos(&self) -> Result<Vec<(String, u64)>>;
    fn photo_bytes(&self, sha256: &str) -> Result<Vec<u8>>;
    fn photo_uploaded(&self, sha256: &str) -> Result<()>;
}

/// Runs one call through `transport`, again after a backoff wait while a retry may help.
fn call<T>(
    options: &SyncOptions,
    mut f: impl FnMut() -> std::result::Result<T, Refusal>,
) -> std::result::Result<T, Refusal> {
    let mut attempt = 0;
    loop {
        if options.cancel.is_cancelled() {
            return Err(Refusal::Unavailable("cancelled".into()));
        }
        match f() {
            Err(Refusal::Unavailable(why)) => {
                attempt += 1;
                tracing::warn!(target: "curbside::sync", attempt, "server unavailable: {why}");
                if attempt >= options.retry.attempts {
                    return Err(Refusal::Unavailable(format!(
                        "{why} (after {attempt} attempts)"
                    )));
                }
                wait(options, options.retry.delay(attempt - 1))
                    .map_err(|_| Refusal::Unavailable("cancelled".into()))?;
            }
            other => return other,
        }
    }
}

/// Sleeps, waking early to honour a cancel.
fn wait(options: &SyncOptions, d: Duration) -> Result<()> {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if options.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
    }
    Ok(())
}

/// A refusal after its retries, as the caller sees it: a cancel is a cancel.
fn failed(options: &SyncOptions, r: Refusal) -> Error {
    if options.cancel.is_cancelled() {
        Error::Cancelled
    } else {
        r.into()
    }
}

/// One call of the sync endpoint: what was sent, when, and the server's answer.
struct Round {
    request: SyncRequest,
    sent_at: i64,
    answer: std::result::Result<SyncResponse, Refusal>,
}

fn send(
    replica: &dyn Replica,
    transport: &dyn Transport,
    token: &str,
    options: &SyncOptions,
    mut request: SyncRequest,
) -> Round {
    let sent_at = replica.now_ms();
    request.client_time_ms = Some(sent_at);
    let answer = call(options, || transport.sync(token, &request));
    Round {
        request,
        sent_at,
        answer,
    }
}

/// Pushes everything pending and pulls everything new, in bounded rounds, then uploads photos.
/// Safe to call at any time and to interrupt at any point.
pub fn run(
    replica: &dyn Replica,
    transport: &dyn Transport,
    token: &str,
    options: &SyncOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<SyncReport> {
    let mut report = SyncReport::default();
    let mut p = Progress {
        pending_changes: replica.pending_count()?,
        ..Progress::default()
    };
    progress(&p);
    tracing::debug!(target: "curbside::sync", pending = p.pending_changes, "sync starts");
    let (mut clock_fixes, mut restarts) = (0, 0);
    // The next page, asked for while the last one was being applied.
    let mut prefetched: Option<Round> = None;
    loop {
        if options.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let round = match prefetched.take() {
            Some(round) => round,
            None => {
                let out = replica.outgoing(MAX_PUSH)?;
                let request = SyncRequest {
                    cursor: out.cursor,
                    replica: out.replica,
                    changes: out.changes,
                    client_time_ms: None,
                };
                send(replica, transport, token, options, request)
            }
        };
        let Round {
            request,
            sent_at,
            answer,
        } = round;
        let response = match answer {
            Ok(r) => r,
            Err(Refusal::ClockAhead { server_time_ms }) if clock_fixes < 2 => {
                clock_fixes += 1;
                let received = replica.now_ms();
                let offset = server_time_ms - (sent_at + (received - sent_at) / 2);
                tracing::warn!(target: "curbside::sync", offset_ms = offset,
                    "the server refused this device's clock: changes are stamped again");
                report.restamped += replica.set_clock_offset(offset, Some(server_time_ms))? as u64;
                continue;
            }
            Err(Refusal::CursorExpired | Refusal::CursorForeign) if restarts < 2 => {
                restarts += 1;
                report.full_resync = true;
                tracing::warn!(target: "curbside::sync", "cursor refused: pulling everything again");
                replica.restart_pull()?;
                continue;
            }
            Err(Refusal::Request {
                request_id,
                message,
            }) => match RequestId::parse(&request_id) {
                Ok(id) if request.changes.iter().any(|c| c.request_id == id) => {
                    // The reason may quote what the reporter typed: it goes to them, not here.
                    tracing::warn!(target: "curbside::sync", request = %id, "the server refused a request");
                    replica.reject(&id, &message)?;
                    report.rejected.push((request_id, message));
                    continue;
                }
                _ => {
                    return Err(failed(
                        options,
                        Refusal::Request {
                            request_id,
                            message,
                        },
                    ))
                }
            },
            Err(r) => return Err(failed(options, r)),
        };
        // While this page is applied, the next one travels and is decoded on another thread:
        // the server, the network and this store work at the same time. Only the cursor the
        // server just gave is used; it is saved once the page is applied, so a failure here
        // only wastes the prefetch.
        let next = response.more.then(|| SyncRequest {
            cursor: Some(response.cursor.clone()),
            replica: request.replica.clone(),
            changes: Vec::new(),
            client_time_ms: None,
        });
        let pushed = request.changes;
        let (committed, next) = std::thread::scope(|scope| {
            let next =
                next.map(|next| scope.spawn(|| send(replica, transport, token, options, next)));
            let committed = replica.commit(&pushed, &response);
            let next = next.map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            (committed, next)
        });
        committed?;
        if let Some(offset) = response.clock_offset_ms {
            if (offset - replica.clock_offset()?).abs() > OFFSET_NOISE_MS {
                report.restamped += replica.set_clock_offset(offset, None)? as u64;
            }
        }
        prefetched = next;
        report.rounds += 1;
        report.pushed += pushed.len() as u64;
        report.pulled += response.changes.len() as u64;
        p.pushed_changes = report.pushed;
        p.pulled_changes = report.pulled;
        p.pending_changes = replica.pending_count()?;
        progress(&p);
        if !response.more && p.pending_changes == 0 {
            break;
        }
    }
    report.photos_uploaded = upload_photos(replica, transport, token, options, &mut p, progress)?;
    tracing::info!(
        target: "curbside::sync",
        rounds = report.rounds,
        pushed = report.pushed,
        pulled = report.pulled,
        photos = report.photos_uploaded,
        full_resync = report.full_resync,
        "sync done"
    );
    Ok(report)
}

/// Sends queued photos: asks the server how much it holds, sends the rest in chunks.
fn upload_photos(
    replica: &dyn Replica,
    transport: &dyn Transport,
    token: &str,
    options: &SyncOptions,
    p: &mut Progress,
    progress: &mut dyn FnMut(&Progress),
) -> Result<u64> {
    let queued = replica.queued_photos()?;
    p.photo_bytes_total = queued.iter().map(|(_, n)| *n).sum();
    let mut uploaded = 0;
    for (sha, _) in queued {
        let bytes = replica.photo_bytes(&sha)?;
        let total = bytes.len() as u64;
        let mut moves = 0;
        loop {
            if options.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let offset = call(options, || transport.photo_offset(token, &sha))
                .map_err(|r| failed(options, r))?;
            if offset >= total {
                break;
            }
            let end = (offset as usize + CHUNK).min(bytes.len());
            let chunk = &bytes[offset as usize..end];
            match call(options, || {
                transport.photo_chunk(token, &sha, offset, total, chunk)
            })
            .map_err(|r| failed(options, r))?
            {
                Chunk::Taken(held) => {
                    p.photo_bytes_sent += end as u64 - offset;
                    progress(p);
                    if held >= total {
                        break;
                    }
                }
                // Another attempt got further (or the server restarted): ask again.
                Chunk::Moved if moves < 8 => moves += 1,
                Chunk::Moved => {
                    return Err(Error::Server {
                        status: 409,
                        message: format!("photo {sha}: the server's offset keeps moving"),
                    })
                }
            }
        }
        replica.photo_uploaded(&sha)?;
        uploaded += 1;
    }
    Ok(uploaded)
}
