//! Registering with a server and syncing: `async`, cancellable, with progress; and the sync
//! status a status line shows (idle, syncing with progress, offline, failed, what waits).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use curbside_core::sync::protocol::{RegisterBody, Role as CoreRole};
use curbside_core::{CancelToken, SyncOptions};

use crate::error::CallbackError;
use crate::types::ms_time;
use crate::{background, ApiError, ApiResult, CurbsideStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Role {
    Resident,
    Inspector,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Registration {
    pub server: String,
    pub device_id: String,
    pub role: Role,
    /// An inspector's wards.
    pub wards: Vec<String>,
}

/// Where a sync is: changes pushed and pulled, photo bytes sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, uniffi::Record)]
pub struct SyncProgress {
    pub pushed_changes: u64,
    pub pending_changes: u64,
    pub pulled_changes: u64,
    pub photo_bytes_sent: u64,
    pub photo_bytes_total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncSummary {
    pub pushed: u64,
    pub pulled: u64,
    pub rounds: u64,
    pub photos_uploaded: u64,
    /// The server had forgotten this device's place: everything was pulled again.
    pub full_resync: bool,
    /// Requests the server refused (they are drafts again, with the reason in their history).
    pub rejected: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum SyncPhase {
    Idle,
    Syncing {
        progress: SyncProgress,
    },
    /// The last sync could not reach the server: nothing is lost, it goes on when online.
    Offline {
        reason: String,
        at: SystemTime,
    },
    /// The last sync failed for another reason (the server refused, the store failed).
    Failed {
        reason: String,
        at: SystemTime,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncStatus {
    pub phase: SyncPhase,
    pub registration: Option<Registration>,
    pub last_success: Option<SystemTime>,
    pub pending_changes: u64,
    /// Requests queued, or sent without the server's answer yet.
    pub pending_requests: u64,
    pub pending_photos: u64,
    pub pending_photo_bytes: u64,
}

/// Told of a sync's progress, on the sync's thread: hand it to the UI thread yourself.
#[uniffi::export(with_foreign)]
pub trait SyncObserver: Send + Sync {
    fn on_progress(&self, progress: SyncProgress) -> Result<(), CallbackError>;
}

/// Stops a sync between calls, photo chunks and retry waits. Cancelling twice, or after the
/// sync ended, does nothing.
#[derive(Debug, Default, uniffi::Object)]
pub struct SyncCancel(CancelToken);

#[uniffi::export]
impl SyncCancel {
    #[uniffi::constructor]
    pub fn new() -> Arc<Self> {
        Arc::new(SyncCancel::default())
    }
    pub fn cancel(&self) {
        self.0.cancel()
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// The running sync, if any, for the status and for `close`.
#[derive(Default)]
pub(crate) struct SyncRuntime {
    running: AtomicBool,
    progress: Mutex<SyncProgress>,
    cancel: Mutex<Option<CancelToken>>,
}

impl SyncRuntime {
    pub(crate) fn cancel_running(&self) {
        if let Some(c) = self
            .cancel
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            c.cancel();
        }
    }
}

/// Clears the running flag however the sync ends, the thread for it failing to start included.
struct Running(Arc<SyncRuntime>);
impl Drop for Running {
    fn drop(&mut self) {
        *self.0.cancel.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.0.running.store(false, Ordering::SeqCst);
    }
}

struct CancelOnDrop(Option<CancelToken>);
impl CancelOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}
impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.cancel();
        }
    }
}

impl From<curbside_core::Registration> for Registration {
    fn from(r: curbside_core::Registration) -> Self {
        Registration {
            server: r.server,
            device_id: r.device_id,
            role: match r.role {
                CoreRole::Inspector => Role::Inspector,
                _ => Role::Resident,
            },
            wards: r.wards,
        }
    }
}

impl From<&curbside_core::Progress> for SyncProgress {
    fn from(p: &curbside_core::Progress) -> Self {
        SyncProgress {
            pushed_changes: p.pushed_changes,
            pending_changes: p.pending_changes,
            pulled_changes: p.pulled_changes,
            photo_bytes_sent: p.photo_bytes_sent,
            photo_bytes_total: p.photo_bytes_total,
        }
    }
}

#[uniffi::export]
impl CurbsideStore {
    /// Registers this install with the server at `server` (`https://…`) as a resident. An
    /// inspector registers with the wards they cover and the server's admin key (the grant).
    /// A new registration starts a new stream of changes; drafts and queued requests stay.
    pub async fn register(
        &self,
        server: String,
        inspector_wards: Vec<String>,
        admin_key: Option<String>,
    ) -> ApiResult<Registration> {
        let store = self.store()?;
        background::run("register", move || {
            let inspector = admin_key.is_some() || !inspector_wards.is_empty();
            let body = RegisterBody {
                role: inspector.then_some(CoreRole::Inspector),
                wards: inspector_wards,
                admin_key,
            };
            store.register(&server, &body)?;
            store
                .registration()?
                .map(Into::into)
                .ok_or_else(|| ApiError::Internal {
                    reason: "registered, but the registration was not kept".into(),
                })
        })
        .await
    }

    pub fn registration(&self) -> ApiResult<Option<Registration>> {
        Ok(self.store()?.registration()?.map(Into::into))
    }

    /// Pushes what waits, pulls what is new, uploads photos. One sync at a time per store
    /// (`Conflict` otherwise). Safe to cancel or to lose the network at any point: the next
    /// sync goes on from the last committed step. `Network` when the server cannot be
    /// reached (after retries with backoff), `Cancelled` when `cancel` was used.
    pub async fn sync(
        &self,
        observer: Option<Arc<dyn SyncObserver>>,
        cancel: Option<Arc<SyncCancel>>,
    ) -> ApiResult<SyncSummary> {
        let store = self.store()?;
        if self.sync.running.swap(true, Ordering::SeqCst) {
            return Err(ApiError::Conflict {
                reason: "a sync is already running".into(),
            });
        }
        let token = cancel.map(|c| c.0.clone()).unwrap_or_default();
        let running = Running(self.sync.clone());
        *running.0.cancel.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
        *running.0.progress.lock().unwrap_or_else(|p| p.into_inner()) = SyncProgress::default();
        // A coroutine or task cancelled while it awaits the sync cancels the sync too.
        let on_drop = CancelOnDrop(Some(token.clone()));
        let result = background::run("sync", move || {
            let options = SyncOptions {
                cancel: token,
                ..SyncOptions::default()
            };
            let report = store.sync(&options, &mut |p| {
                let p = SyncProgress::from(p);
                *running.0.progress.lock().unwrap_or_else(|e| e.into_inner()) = p;
                if let Some(o) = &observer {
                    // An observer that throws is the app's bug: the sync goes on.
                    if let Err(e) = o.on_progress(p) {
                        tracing::warn!(target: "curbside::ffi", "a sync observer failed: {e}");
                    }
                }
            })?;
            Ok(SyncSummary {
                pushed: report.pushed,
                pulled: report.pulled,
                rounds: report.rounds,
                photos_uploaded: report.photos_uploaded,
                full_resync: report.full_resync,
                rejected: report.rejected.into_iter().map(|(id, _)| id).collect(),
            })
        })
        .await;
        on_drop.disarm();
        result
    }

    /// How syncing stands: the phase (a sync running with its progress, or how the last one
    /// ended), what waits to leave the device, and the last success.
    pub fn sync_status(&self) -> ApiResult<SyncStatus> {
        let state = self.store()?.sync_state()?;
        let phase = if self.sync.running.load(Ordering::SeqCst) {
            SyncPhase::Syncing {
                progress: *self.sync.progress.lock().unwrap_or_else(|p| p.into_inner()),
            }
        } else {
            match state.last_failure {
                Some(f) if f.offline => SyncPhase::Offline {
                    reason: f.reason,
                    at: ms_time(f.at_ms),
                },
                Some(f) => SyncPhase::Failed {
                    reason: f.reason,
                    at: ms_time(f.at_ms),
                },
                None => SyncPhase::Idle,
            }
        };
        Ok(SyncStatus {
            phase,
            registration: state.registration.map(Into::into),
            last_success: state.last_success_ms.map(ms_time),
            pending_changes: state.pending_changes,
            pending_requests: state.pending_requests,
            pending_photos: state.pending_photos,
            pending_photo_bytes: state.pending_photo_bytes,
        })
    }
}
