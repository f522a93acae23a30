//! The app developer's API: a thin UniFFI facade over `curbside-core` for Kotlin, Swift and
//! Python. Methods are synchronous (SQLite work); call them off the UI thread. Types are
//! re-declared here as records so the core stays free of FFI concerns.

mod error;
mod types;

use std::sync::Arc;

pub use error::ApiError;
pub use types::*;

uniffi::setup_scaffolding!();

type ApiResult<T> = Result<T, ApiError>;

/// The device's store: service catalogue and the resident's requests, in one SQLite file.
#[derive(uniffi::Object)]
pub struct CurbsideStore {
    inner: curbside_core::Store,
}

#[uniffi::export]
impl CurbsideStore {
    /// Opens or creates the store at `path` (an app-private file). A new store starts with the
    /// Toronto catalogue.
    #[uniffi::constructor]
    pub fn open(path: String) -> ApiResult<Arc<Self>> {
        Ok(Arc::new(CurbsideStore {
            inner: curbside_core::Store::open(path)?,
        }))
    }

    pub fn services(&self) -> ApiResult<Vec<Service>> {
        Ok(self.inner.services()?.into_iter().map(Into::into).collect())
    }

    pub fn service_definition(&self, service_code: String) -> ApiResult<ServiceDefinition> {
        Ok(self.inner.definition(&service_code)?.into())
    }

    /// Replaces the catalogue with an Open311 service list (array or `{"services":[…]}`,
    /// optionally with `"definitions"`). Returns the number of services.
    pub fn import_catalog_json(&self, json: Vec<u8>) -> ApiResult<u32> {
        let catalog = curbside_core::Catalog::parse(&json)?;
        self.inner.import_catalog(&catalog)?;
        Ok(catalog.services.len() as u32)
    }

    pub fn create_draft(&self, service_code: String, edit: DraftEdit) -> ApiResult<Draft> {
        let id = self.inner.create_draft(&service_code, &edit.into())?;
        Ok(self.inner.draft(&id)?.into())
    }

    pub fn edit_draft(&self, id: String, edit: DraftEdit) -> ApiResult<Draft> {
        self.inner.edit_draft(&id, &edit.into())?;
        Ok(self.inner.draft(&id)?.into())
    }

    pub fn draft(&self, id: String) -> ApiResult<Draft> {
        Ok(self.inner.draft(&id)?.into())
    }

    /// Newest first; `state` filters.
    pub fn drafts(&self, state: Option<RequestState>, limit: u32) -> ApiResult<Vec<DraftSummary>> {
        Ok(self
            .inner
            .drafts(state.map(Into::into), limit)?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// What still stops the draft from being submitted; empty when it is ready.
    pub fn validate_draft(&self, id: String) -> ApiResult<Vec<Problem>> {
        Ok(self
            .inner
            .validate_draft(&id)?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Validates and queues the draft; `ApiError::InvalidInput` lists every problem otherwise.
    pub fn submit_draft(&self, id: String) -> ApiResult<Draft> {
        self.inner.submit_draft(&id)?;
        Ok(self.inner.draft(&id)?.into())
    }

    pub fn withdraw_draft(&self, id: String) -> ApiResult<Draft> {
        self.inner.withdraw_draft(&id)?;
        Ok(self.inner.draft(&id)?.into())
    }

    pub fn delete_draft(&self, id: String) -> ApiResult<()> {
        Ok(self.inner.delete_draft(&id)?)
    }

    /// Processes a photo (upright, long edge ≤ 1,600 px, ≤ 500 KB, no metadata) and attaches it
    /// to a draft, which takes the photo's GPS fix as its location when it has none. Pass JPEG
    /// or PNG bytes; HEIC gets `InvalidInput` (let the platform picker transcode to JPEG).
    pub fn attach_photo(&self, id: String, photo: Vec<u8>) -> ApiResult<AttachedPhoto> {
        Ok(self.inner.attach_photo(&id, &photo)?.into())
    }

    pub fn detach_photo(&self, id: String, sha256: String) -> ApiResult<()> {
        Ok(self.inner.detach_photo(&id, &sha256)?)
    }

    pub fn photos(&self, id: String) -> ApiResult<Vec<PhotoInfo>> {
        Ok(self
            .inner
            .photos(&id)?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// The processed JPEG, to show full screen.
    pub fn photo_jpeg(&self, sha256: String) -> ApiResult<Vec<u8>> {
        Ok(self.inner.photo_jpeg(&sha256)?)
    }

    /// The ward holding a point; `InvalidInput` outside the city (with the distance) or when
    /// latitude and longitude look swapped.
    pub fn ward_at(&self, lat: f64, lon: f64) -> ApiResult<Ward> {
        Ok(self.inner.ward_at(lat, lon)?.into())
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
            .inner
            .nearby(&service_code, &at.into(), exclude.as_deref())?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// The thumbnail (long edge ≤ 320 px), for lists.
    pub fn photo_thumbnail(&self, sha256: String) -> ApiResult<Vec<u8>> {
        Ok(self.inner.photo_thumbnail(&sha256)?)
    }
}
