//! A transport that calls the server's own handler logic in process, through the wire format
//! (every request and answer goes through JSON, as over HTTP), with faults a network brings:
//! answers lost after the server committed, requests delivered twice, and requests held back
//! and delivered later, after others. Its randomness is seeded, so a run replays exactly.

use std::sync::{Arc, Mutex};

use curbside_core::sync::protocol::{RegisterBody, Registered, SyncRequest, SyncResponse};
use curbside_core::sync::transport::{Chunk, Refusal, Transport};
use curbside_core::sync::StoredChange;
use curbside_server::media::{self, Chunk as ServerChunk};
use curbside_server::{auth, sync, AppState, ServerError};

/// How often each fault strikes a sync call, from 0 to 1.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// The server commits; its answer never arrives.
    pub lose_answer: f64,
    /// The request arrives twice.
    pub duplicate: f64,
    /// The request is held back (the caller sees a failure) and delivered after a later one.
    pub delay: f64,
}

/// What the faults did, for a test to show they happened.
#[derive(Debug, Clone, Copy, Default)]
pub struct FaultCount {
    pub calls: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub delayed: u64,
}

pub struct InProcess {
    state: Arc<AppState>,
    faults: Mutex<Faults>,
    rng: Mutex<fastrand::Rng>,
    held: Mutex<Vec<(String, Vec<u8>)>>,
    count: Mutex<FaultCount>,
}

/// A server's refusal as its HTTP answer would carry it, read back as a client reads it.
fn refusal(e: ServerError) -> Refusal {
    let body = serde_json::to_vec(&serde_json::json!([e.error_object()])).unwrap_or_default();
    Refusal::from_answer(e.status().as_u16(), &body)
}

impl InProcess {
    pub fn new(state: Arc<AppState>, seed: u64) -> InProcess {
        InProcess {
            state,
            faults: Mutex::new(Faults::default()),
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            held: Mutex::new(Vec::new()),
            count: Mutex::new(FaultCount::default()),
        }
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap() = faults;
    }

    pub fn count(&self) -> FaultCount {
        *self.count.lock().unwrap()
    }

    fn strikes(&self, p: f64) -> bool {
        p > 0.0 && self.rng.lock().unwrap().f64() < p
    }

    /// Delivers one sync request as the server would receive it.
    fn deliver(&self, token: &str, json: &[u8]) -> Result<SyncResponse<StoredChange>, ServerError> {
        let device = auth::authenticate(&self.state, token)?;
        let body = serde_json::from_slice(json)
            .map_err(|e| ServerError::BadRequest(format!("body: {e}")))?;
        sync::sync(&self.state, &device, body)
    }

    /// Delivers every request still held back, oldest first: the network drains.
    pub fn flush(&self) {
        let held = std::mem::take(&mut *self.held.lock().unwrap());
        for (token, json) in held {
            let _ = self.deliver(&token, &json);
        }
    }
}

impl Transport for InProcess {
    fn register(&self, body: &RegisterBody) -> Result<Registered, Refusal> {
        sync::register(&self.state, body.clone()).map_err(refusal)
    }

    fn sync(&self, token: &str, body: &SyncRequest) -> Result<SyncResponse, Refusal> {
        let json = serde_json::to_vec(body).map_err(|e| Refusal::Unreadable(e.to_string()))?;
        let faults = *self.faults.lock().unwrap();
        self.count.lock().unwrap().calls += 1;
        // A request held back earlier arrives first.
        let late = {
            let mut held = self.held.lock().unwrap();
            if !held.is_empty() && self.strikes(0.5) {
                let i = self.rng.lock().unwrap().usize(..held.len());
                Some(held.remove(i))
            } else {
                None
            }
        };
        if let Some((t, j)) = late {
            let _ = self.deliver(&t, &j);
        }
        if self.strikes(faults.delay) {
            self.count.lock().unwrap().delayed += 1;
            self.held.lock().unwrap().push((token.to_string(), json));
            return Err(Refusal::Unavailable("held up in the network".into()));
        }
        let mut answer = self.deliver(token, &json);
        if self.strikes(faults.duplicate) {
            self.count.lock().unwrap().duplicated += 1;
            answer = self.deliver(token, &json);
        }
        if self.strikes(faults.lose_answer) {
            self.count.lock().unwrap().lost += 1;
            return Err(Refusal::Unavailable("the answer was lost".into()));
        }
        let answer = answer.map_err(refusal)?;
        let bytes = serde_json::to_vec(&answer).map_err(|e| Refusal::Unreadable(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| Refusal::Unreadable(e.to_string()))
    }

    fn photo_offset(&self, token: &str, sha256: &str) -> Result<u64, Refusal> {
        let device = auth::authenticate(&self.state, token).map_err(refusal)?;
        Ok(media::photo_offset(&self.state, &device, sha256)
            .map_err(refusal)?
            .unwrap_or(0))
    }

    fn photo_chunk(
        &self,
        token: &str,
        sha256: &str,
        offset: u64,
        total: u64,
        chunk: &[u8],
    ) -> Result<Chunk, Refusal> {
        let device = auth::authenticate(&self.state, token).map_err(refusal)?;
        match media::photo_chunk(&self.state, &device, sha256, offset, total, chunk)
            .map_err(refusal)?
        {
            ServerChunk::Taken { held, .. } => Ok(Chunk::Taken(held)),
            ServerChunk::Moved { .. } => Ok(Chunk::Moved),
        }
    }
}
