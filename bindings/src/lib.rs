//! The app developer's API: a thin UniFFI facade over `curbside-core` for Kotlin, Swift and
//! Python. Network work (register, sync) is `async` (a Kotlin `suspend fun`, a Swift `async`
//! method) and runs on a thread of its own; the other methods are short SQLite or pixel work
//! and block: call them off the UI thread (docs/embedding.md). Types are re-declared here as
//! records so the core stays free of FFI concerns.

#[cfg(target_os = "android")]
mod android;
mod background;
mod error;
mod logging;
mod requests;
mod sync;
mod types;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

pub use error::{ApiError, CallbackError};
pub use logging::*;
pub use requests::*;
pub use sync::*;
pub use types::*;

uniffi::setup_scaffolding!();

type ApiResult<T> = Result<T, ApiError>;

/// The device's store: service catalogue, the resident's requests and what sync brings, in one
/// SQLite file. Open one per file and share it: a second open of the same file in the same
/// process is refused, so every listener hears every write.
#[derive(uniffi::Object)]
pub struct CurbsideStore {
    inner: RwLock<Option<Arc<Open>>>,
    sync: Arc<sync::SyncRuntime>,
    listeners: Mutex<Vec<(u64, curbside_core::ListenerId)>>,
}

/// An open file. Work in flight (a sync, a photo) holds it too: the file counts as open until
/// the last of them ends, even after `shutdown`, so it is never open twice.
pub(crate) struct Open {
    store: curbside_core::Store,
    /// The file's name as the open-files set holds it.
    key: PathBuf,
}

impl std::ops::Deref for Open {
    type Target = curbside_core::Store;
    fn deref(&self) -> &curbside_core::Store {
        &self.store
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        open_files().remove(&self.key);
    }
}

/// Files open in this process.
fn open_files() -> std::sync::MutexGuard<'static, HashSet<PathBuf>> {
    static OPEN: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    OPEN.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// One name per file, whether or not it exists yet and however the app spelled its path.
fn file_key(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_os_string());
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match (dir.canonicalize(), name) {
        (Ok(d), Some(n)) => d.join(n),
        _ => path.to_path_buf(),
    }
}

impl CurbsideStore {
    /// The open store, or `Closed`.
    pub(crate) fn store(&self) -> ApiResult<Arc<Open>> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| ApiError::Closed {
                reason: "the store is closed".into(),
            })
    }
}

#[uniffi::export]
impl CurbsideStore {
    /// Opens or creates the store at `path` (an app-private file). A new store starts with the
    /// Toronto catalogue. `Conflict` when this process has the file open already.
    #[uniffi::constructor]
    pub fn open(path: String) -> ApiResult<Arc<Self>> {
        let key = file_key(Path::new(&path));
        if !open_files().insert(key.clone()) {
            return Err(ApiError::Conflict {
                reason: "this store is open already: share the one instance".into(),
            });
        }
        match curbside_core::Store::open(&path) {
            Ok(store) => Ok(Arc::new(CurbsideStore {
                inner: RwLock::new(Some(Arc::new(Open { store, key }))),
                sync: Arc::default(),
                listeners: Mutex::new(Vec::new()),
            })),
            Err(e) => {
                open_files().remove(&key);
                Err(e.into())
            }
        }
    }

    /// Closes the store's file: later calls get `Closed`; closing twice does nothing. A sync in
    /// progress is cancelled and finishes its current step; the file may be opened again once
    /// it has. (Not `close`: Kotlin's `AutoCloseable.close` frees the object itself.)
    pub fn shutdown(&self) {
        self.sync.cancel_running();
        let store = self.inner.write().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(store) = store {
            for (_, id) in self
                .listeners
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain(..)
            {
                store.unlisten(id);
            }
        }
    }

    pub fn services(&self) -> ApiResult<Vec<Service>> {
        Ok(self
            .store()?
            .services()?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    pub fn service_definition(&self, service_code: String) -> ApiResult<ServiceDefinition> {
        Ok(self.store()?.definition(&service_code)?.into())
    }

    /// Replaces the catalogue with an Open311 service list (array or `{"services":[…]}`,
    /// optionally with `"definitions"`). Returns the number of services.
    pub fn import_catalog_json(&self, json: Vec<u8>) -> ApiResult<u32> {
        let store = self.store()?;
        let catalog = curbside_core::Catalog::parse(&json)?;
        store.import_catalog(&catalog)?;
        Ok(catalog.services.len() as u32)
    }

    pub fn create_draft(&self, service_code: String, edit: DraftEdit) -> ApiResult<Draft> {
        let store = self.store()?;
        let id = store.create_draft(&service_code, &edit.into())?;
        Ok(store.draft(&id)?.into())
    }

    pub fn edit_draft(&self, id: String, edit: DraftEdit) -> ApiResult<Draft> {
        let store = self.store()?;
        store.edit_draft(&id, &edit.into())?;
        Ok(store.draft(&id)?.into())
    }

    pub fn draft(&self, id: String) -> ApiResult<Draft> {
        Ok(self.store()?.draft(&id)?.into())
    }

    /// Newest first; `state` filters.
    pub fn drafts(&self, state: Option<RequestState>, limit: u32) -> ApiResult<Vec<DraftSummary>> {
        Ok(self
            .store()?
            .drafts(state.map(Into::into), limit)?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// What still stops the draft from being submitted; empty when it is ready.
    pub fn validate_draft(&self, id: String) -> ApiResult<Vec<Problem>> {
        Ok(self
            .store()?
            .validate_draft(&id)?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Validates and queues the draft; `ApiError::InvalidInput` lists every problem otherwise.
    pub fn submit_draft(&self, id: String) -> ApiResult<Draft> {
        let store = self.store()?;
        store.submit_draft(&id)?;
        Ok(store.draft(&id)?.into())
    }

    pub fn withdraw_draft(&self, id: String) -> ApiResult<Draft> {
        let store = self.store()?;
        store.withdraw_draft(&id)?;
        Ok(store.draft(&id)?.into())
    }

    pub fn delete_draft(&self, id: String) -> ApiResult<()> {
        Ok(self.store()?.delete_draft(&id)?)
    }

    /// Processes a photo (upright, long edge ≤ 1,600 px, ≤ 500 KB, no metadata) and attaches it
    /// to a draft, which takes the photo's GPS fix as its location when it has none. JPEG, PNG,
    /// WebP, GIF, BMP or TIFF bytes; HEIC gets `InvalidInput` (let the platform picker
    /// transcode to JPEG). Tens to hundreds of milliseconds of pixel work: `async`, on a
    /// thread of its own.
    pub async fn attach_photo(&self, id: String, photo: Vec<u8>) -> ApiResult<AttachedPhoto> {
        let store = self.store()?;
        background::run("photo", move || Ok(store.attach_photo(&id, &photo)?.into())).await
    }

    pub fn detach_photo(&self, id: String, sha256: String) -> ApiResult<()> {
        Ok(self.store()?.detach_photo(&id, &sha256)?)
    }

    pub fn photos(&self, id: String) -> ApiResult<Vec<PhotoInfo>> {
        Ok(self
            .store()?
            .photos(&id)?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// The processed JPEG, to show full screen.
    pub fn photo_jpeg(&self, sha256: String) -> ApiResult<Vec<u8>> {
        Ok(self.store()?.photo_jpeg(&sha256)?)
    }

    /// The ward holding a point; `InvalidInput` outside the city (with the distance) or when
    /// latitude and longitude look swapped.
    pub fn ward_at(&self, lat: f64, lon: f64) -> ApiResult<Ward> {
        Ok(self.store()?.ward_at(lat, lon)?.into())
    }

    /// Open requests of the same service near `at` that may be the same problem, nearest first
    /// (at most 5): offer "follow this one" before a new report. `exclude` is the draft itself.
    pub fn nearby(
        &self,
        service_code: String,
        at: Location,
        exclude: Option<String>,
    ) -> ApiResult<Vec<NearbyRequest>> {
        Ok(self
            .store()?
            .nearby(&service_code, &at.into(), exclude.as_deref())?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// The thumbnail (long edge ≤ 320 px), for lists.
    pub fn photo_thumbnail(&self, sha256: String) -> ApiResult<Vec<u8>> {
        Ok(self.store()?.photo_thumbnail(&sha256)?)
    }
}
