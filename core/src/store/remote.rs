//! The store's side of sync: registration, the push-then-pull loop, photo uploads, and the
//! operations inspectors and residents perform on requests that have left the device.
//!
//! Each round is: read a batch from the outbox (one short transaction), one HTTP call, then
//! one transaction that acknowledges the batch, applies and materialises the pulled page and
//! saves the cursor. A crash or a lost answer anywhere repeats the round, which the server
//! and the merge make harmless.

use std::collections::BTreeSet;

use rusqlite::{params, Connection, Transaction};
use serde::Serialize;
use serde_json::json;

use super::Store;
use crate::clock::now_ms;
use crate::draft::{self, State};
use crate::error::{Error, Result};
use crate::sync::change::inspector_only;
use crate::sync::client::{CancelToken, Http, Refusal, RetryPolicy};
use crate::sync::log::{self, meta, set_meta};
use crate::sync::materialize::{materialize, NewRequests, Touched};
use crate::sync::protocol::{self, RegisterBody, Registered, Role, SyncRequest};
use crate::sync::{Change, Document};

/// Photo bytes sent per PATCH: small enough to resume cheaply on a bad connection.
const CHUNK: usize = 256 * 1024;
/// Offsets closer than this to the one in use are measurement noise (half a round trip).
const OFFSET_NOISE_MS: i64 = 2_000;

/// Who this device is on its server. The token is not part of it: it stays in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registration {
    pub server: String,
    pub device_id: String,
    pub role: Role,
    pub wards: Vec<String>,
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

/// One call of the sync endpoint: what was sent, when, and the server's answer.
struct Round {
    request: SyncRequest,
    sent_at: i64,
    answer: std::result::Result<protocol::SyncResponse, Refusal>,
}

impl Round {
    fn send(http: &Http, mut request: SyncRequest) -> Round {
        let sent_at = now_ms();
        request.client_time_ms = Some(sent_at);
        let answer = http.sync(&request);
        Round {
            request,
            sent_at,
            answer,
        }
    }
}

fn registration(conn: &Connection) -> Result<Option<(Registration, String)>> {
    let get = |k: &str| meta(conn, k);
    let (Some(server), Some(token), Some(device_id)) = (
        get("sync_server")?,
        get("sync_token")?,
        get("sync_device_id")?,
    ) else {
        return Ok(None);
    };
    let role = if get("sync_role")?.as_deref() == Some("inspector") {
        Role::Inspector
    } else {
        Role::Resident
    };
    let wards = get("sync_wards")?
        .and_then(|w| serde_json::from_str(&w).ok())
        .unwrap_or_default();
    Ok(Some((
        Registration {
            server,
            device_id,
            role,
            wards,
        },
        token,
    )))
}

/// The next changes to push, oldest first: queued by this replica, not acknowledged, and not
/// of a draft (a draft stays on the device until it is submitted).
fn pending(conn: &Connection, limit: usize) -> Result<Vec<Change>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM (
             SELECT c.*, o.seq AS queued FROM sync_outbox o
             JOIN sync_change_rows c
               ON c.request_n = o.request AND c.replica_n = o.replica AND c.counter = o.counter)
         WHERE NOT EXISTS (SELECT 1 FROM requests r WHERE r.id = request_id AND r.state = 'draft')
         ORDER BY queued LIMIT ?1",
        log::CHANGE_COLUMNS
    ))?;
    let rows = stmt.query_map([limit as i64], log::change_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn pending_count(conn: &Connection) -> Result<u64> {
    Ok(conn.query_row(
        "SELECT count(*) FROM sync_outbox o JOIN sync_requests q ON q.n = o.request
         WHERE NOT EXISTS (SELECT 1 FROM requests r WHERE r.id = q.id AND r.state = 'draft')",
        [],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

/// The server refused one request: its unacknowledged changes leave the log (the server never
/// held them), and if it is the user's own it goes back to being a draft with the reason, its
/// whole content queued again for when it is resubmitted.
fn reject(tx: &Transaction, request_id: &str, reason: &str) -> Result<()> {
    log::drop_unsent(tx, request_id)?;
    if matches!(
        draft::state_of(tx, request_id)?,
        Some(State::Queued | State::Sent)
    ) {
        draft::transition(
            tx,
            request_id,
            &[State::Queued, State::Sent],
            State::Draft,
            Some(reason),
            "reject",
        )?;
        if !log::holds(tx, request_id, Some("create"))? {
            draft::relog(tx, request_id)?;
        }
    }
    Ok(())
}

impl Store {
    /// Registers this install with `server` and keeps the token in the store.
    pub fn register(&self, server: &str, body: &RegisterBody) -> Result<Registered> {
        let http = Http::new(server, None, RetryPolicy::default(), CancelToken::new())?;
        let registered = http.register(body)?;
        self.write(|tx| {
            set_meta(tx, "sync_server", server.trim().trim_end_matches('/'))?;
            set_meta(tx, "sync_token", &registered.token)?;
            set_meta(tx, "sync_device_id", &registered.device_id)?;
            set_meta(tx, "sync_role", registered.role.as_str())?;
            set_meta(
                tx,
                "sync_wards",
                &serde_json::json!(registered.wards).to_string(),
            )?;
            // A new registration starts a new stream of changes.
            tx.execute("DELETE FROM meta WHERE key = 'sync_cursor'", [])?;
            Ok(())
        })?;
        Ok(registered)
    }

    pub fn registration(&self) -> Result<Option<Registration>> {
        Ok(self.read(registration)?.map(|(r, _)| r))
    }

    /// Changes waiting to be pushed (drafts' excluded).
    pub fn pending_changes(&self) -> Result<u64> {
        self.read(pending_count)
    }

    /// Pushes everything pending and pulls everything new, in bounded rounds, then uploads
    /// photos. Safe to call at any time and to interrupt at any point.
    pub fn sync(
        &self,
        options: &SyncOptions,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<SyncReport> {
        let (reg, token) = self.read(registration)?.ok_or(Error::NotRegistered)?;
        let http = Http::new(
            &reg.server,
            Some(token),
            options.retry.clone(),
            options.cancel.clone(),
        )?;
        let mut report = SyncReport::default();
        let mut p = Progress {
            pending_changes: self.pending_changes()?,
            ..Progress::default()
        };
        progress(&p);
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
                    let (batch, cursor, replica) = self.write(|tx| {
                        let batch = pending(tx, protocol::MAX_PUSH)?;
                        let ids: BTreeSet<&str> =
                            batch.iter().map(|c| c.request_id.as_str()).collect();
                        for id in ids {
                            if draft::state_of(tx, id)? == Some(State::Queued) {
                                draft::transition(
                                    tx,
                                    id,
                                    &[State::Queued],
                                    State::Sent,
                                    None,
                                    "send",
                                )?;
                            }
                        }
                        let cursor = meta(tx, "sync_cursor")?;
                        // Until a full pull has ended, this device lacks some of its own
                        // sent changes: the server must not leave them out.
                        let replica = match (&cursor, meta(tx, "sync_full_pull")?) {
                            (Some(_), None) => Some(log::replica_id(tx)?),
                            _ => None,
                        };
                        Ok((batch, cursor, replica))
                    })?;
                    Round::send(
                        &http,
                        SyncRequest {
                            cursor,
                            replica,
                            changes: batch,
                            client_time_ms: None,
                        },
                    )
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
                    let received = now_ms();
                    let offset = server_time_ms - (sent_at + (received - sent_at) / 2);
                    report.restamped += self.write(|tx| log::set_clock_offset(tx, offset))? as u64;
                    continue;
                }
                Err(Refusal::CursorExpired | Refusal::CursorForeign) if restarts < 2 => {
                    restarts += 1;
                    report.full_resync = true;
                    self.write(|tx| {
                        // Only what the server holds is dropped; unsent changes stay queued.
                        log::drop_sent(tx)?;
                        tx.execute_batch("DELETE FROM meta WHERE key = 'sync_cursor';")?;
                        set_meta(tx, "sync_full_pull", "1")?;
                        Ok(())
                    })?;
                    continue;
                }
                Err(Refusal::Request {
                    request_id,
                    message,
                }) if request.changes.iter().any(|c| c.request_id == request_id) => {
                    self.write(|tx| reject(tx, &request_id, &message))?;
                    self.reindex(&request_id)?;
                    report.rejected.push((request_id, message));
                    continue;
                }
                Err(r) => return Err(r.into()),
            };
            // While this page is applied, the next one travels and is decoded on another
            // thread: the server, the network and this store work at the same time. Only
            // the cursor the server just gave is used; it is saved once the page is applied,
            // so a failure here only wastes the prefetch.
            let next = response.more.then(|| SyncRequest {
                cursor: Some(response.cursor.clone()),
                replica: request.replica.clone(),
                changes: Vec::new(),
                client_time_ms: None,
            });
            let pushed = request.changes;
            let (touched, next) = std::thread::scope(|scope| {
                let next = next.map(|next| scope.spawn(|| Round::send(&http, next)));
                let touched = self.write(|tx| {
                    let acked: Vec<(String, String)> = pushed
                        .iter()
                        .map(|c| (c.request_id.clone(), c.id.clone()))
                        .collect();
                    log::acknowledge(tx, &acked)?;
                    for c in pushed.iter().filter(|c| c.field == "photo") {
                        tx.prepare_cached(
                            "INSERT INTO photo_uploads (sha256, queued_at)
                             SELECT sha256, ?2 FROM photos WHERE sha256 = ?1
                             ON CONFLICT (sha256) DO NOTHING",
                        )?
                        .execute(params![c.value["sha256"].as_str(), now_ms()])?;
                    }
                    let (_, new) = log::apply_noting_new(tx, &response.changes, now_ms())?;
                    let mut ids: BTreeSet<&str> = response
                        .changes
                        .iter()
                        .map(|c| c.request_id.as_str())
                        .collect();
                    for a in &response.assigned {
                        if matches!(
                            draft::state_of(tx, &a.request_id)?,
                            Some(State::Queued | State::Sent)
                        ) {
                            draft::accept(tx, &a.request_id, &a.service_request_id)?;
                        }
                        ids.insert(a.request_id.as_str());
                    }
                    let touched = materialize(tx, ids, &NewRequests::new(&response.changes, &new))?;
                    set_meta(tx, "sync_cursor", &response.cursor)?;
                    if !response.more {
                        tx.execute_batch("DELETE FROM meta WHERE key = 'sync_full_pull';")?;
                    }
                    if let Some(offset) = response.clock_offset_ms {
                        let current = log::clock(tx)?.offset_ms;
                        if (offset - current).abs() > OFFSET_NOISE_MS {
                            report.restamped += log::set_clock_offset(tx, offset)? as u64;
                        }
                    }
                    Ok(touched)
                });
                let next = next.map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
                (touched, next)
            });
            self.reindex_touched(touched?)?;
            prefetched = next;
            report.rounds += 1;
            report.pushed += pushed.len() as u64;
            report.pulled += response.changes.len() as u64;
            p.pushed_changes = report.pushed;
            p.pulled_changes = report.pulled;
            p.pending_changes = self.pending_changes()?;
            progress(&p);
            if !response.more && p.pending_changes == 0 {
                break;
            }
        }
        report.photos_uploaded = self.upload_photos(&http, &mut p, progress)?;
        Ok(report)
    }

    fn reindex_touched(&self, touched: Touched) -> Result<()> {
        for id in &touched.own {
            self.reindex(id)?;
        }
        if let Some(index) = self.nearby_index().as_mut() {
            for k in touched.known {
                if k.open {
                    index.upsert(k);
                } else {
                    index.remove(&k.id);
                }
            }
        }
        Ok(())
    }

    /// Sends queued photos: asks the server how much it holds, sends the rest in chunks.
    fn upload_photos(
        &self,
        http: &Http,
        p: &mut Progress,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<u64> {
        let queued: Vec<(String, i64)> = self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT u.sha256, length(p.jpeg) FROM photo_uploads u
                 JOIN photos p ON p.sha256 = u.sha256 ORDER BY u.queued_at",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        // Photos whose bytes are gone (detached and cleaned) have nothing to send.
        self.write(|tx| {
            tx.execute(
                "DELETE FROM photo_uploads WHERE sha256 NOT IN (SELECT sha256 FROM photos)",
                [],
            )?;
            Ok(())
        })?;
        p.photo_bytes_total = queued.iter().map(|(_, n)| *n as u64).sum();
        let mut uploaded = 0;
        for (sha, _) in queued {
            let bytes = self.photo_jpeg(&sha)?;
            let url = http.url(&format!("{}/{sha}", protocol::MEDIA));
            let mut rounds = 0;
            loop {
                rounds += 1;
                let head = http.send(|c| c.head(&url))?;
                let offset = match head.status().as_u16() {
                    404 => 0,
                    200 | 204 => header_u64(&head, protocol::UPLOAD_OFFSET).unwrap_or(0),
                    s => {
                        return Err(Error::Server {
                            status: s,
                            message: format!("photo {sha}: HEAD answered {s}"),
                        })
                    }
                } as usize;
                if offset >= bytes.len() {
                    break;
                }
                let end = (offset + CHUNK).min(bytes.len());
                let chunk = bytes[offset..end].to_vec();
                let patch = http.send(|c| {
                    c.patch(&url)
                        .header(protocol::UPLOAD_OFFSET, offset.to_string())
                        .header(protocol::UPLOAD_LENGTH, bytes.len().to_string())
                        .header(
                            reqwest::header::CONTENT_TYPE,
                            "application/offset+octet-stream",
                        )
                        .body(chunk.clone())
                })?;
                match patch.status().as_u16() {
                    200 | 201 | 204 => {
                        p.photo_bytes_sent += (end - offset) as u64;
                        progress(p);
                    }
                    // Another attempt got further (or the server restarted): ask again.
                    409 if rounds < 8 => continue,
                    s => {
                        let message = patch.text().unwrap_or_default();
                        return Err(Error::Server {
                            status: s,
                            message: format!(
                                "photo {sha}: {}",
                                message.chars().take(200).collect::<String>()
                            ),
                        });
                    }
                }
                if end == bytes.len() {
                    break;
                }
            }
            self.write(|tx| {
                tx.execute("DELETE FROM photo_uploads WHERE sha256 = ?1", [&sha])?;
                Ok(())
            })?;
            uploaded += 1;
        }
        Ok(uploaded)
    }

    /// Applies changes that came another way than [`Store::sync`] (a nearby device, a bulk
    /// import): all or nothing, with the app's tables brought up to date in the same
    /// transaction.
    pub fn apply_changes(&self, changes: &[Change]) -> Result<log::ApplyReport> {
        let (report, touched) = self.write(|tx| {
            let (report, new) = log::apply_noting_new(tx, changes, now_ms())?;
            let ids: BTreeSet<&str> = changes.iter().map(|c| c.request_id.as_str()).collect();
            Ok((
                report,
                materialize(tx, ids, &NewRequests::new(changes, &new))?,
            ))
        })?;
        self.reindex_touched(touched)?;
        Ok(report)
    }

    // ---- operations on requests that have left the device ----

    fn role(&self) -> Result<Role> {
        Ok(self
            .read(registration)?
            .map(|(r, _)| r.role)
            .unwrap_or(Role::Resident))
    }

    /// Logs edits of a shared request and brings the app's tables up to date, in one
    /// transaction. Inspector-only fields need the inspector role.
    fn edit_shared(&self, id: &str, edits: Vec<(String, serde_json::Value)>) -> Result<()> {
        let id = draft::parse_id(id)?;
        let inspector = self.role()? == Role::Inspector;
        let touched = self.write(|tx| {
            let known = log::holds(tx, &id, None)?;
            let state = draft::state_of(tx, &id)?;
            if !known && state.is_none() {
                return Err(Error::NotFound(id.clone()));
            }
            if let Some(s) = state {
                if s == State::Draft {
                    return Err(Error::WrongState {
                        id: id.clone(),
                        state: s,
                        action: "act on (submit it first)",
                    });
                }
            }
            if !inspector && edits.iter().any(|(f, v)| inspector_only(f, v)) {
                return Err(Error::Server {
                    status: 403,
                    message:
                        "statuses, assignments, priorities and internal notes are for inspectors"
                            .into(),
                });
            }
            if !inspector && state.is_none() {
                return Err(Error::Server {
                    status: 403,
                    message: "a resident may add notes to their own requests only".into(),
                });
            }
            log::local_changes(tx, &id, edits, now_ms())?;
            materialize(tx, [id.as_str()], &NewRequests::default())
        })?;
        self.reindex_touched(touched)
    }

    fn author(&self) -> Result<String> {
        Ok(match self.read(registration)? {
            Some((r, _)) => format!("{}:{}", r.role.as_str(), r.device_id),
            None => "device".into(),
        })
    }

    /// Sets the city's status of a request, with the note that explains it (Open311
    /// `status_notes`; public).
    pub fn set_status(&self, id: &str, status: State, note: Option<&str>) -> Result<()> {
        if !status.is_server_status() {
            return Err(Error::invalid(draft::Problem::new(
                "status",
                draft::ProblemKind::OutOfRange,
                format!("{status} is not a city status (accepted, in_progress, scheduled, completed, cancelled)"),
            )));
        }
        let mut edits = vec![("status".to_string(), json!(status.as_str()))];
        if let Some(note) = note.map(str::trim).filter(|n| !n.is_empty()) {
            edits.push((
                "note".into(),
                json!({"id": uuid::Uuid::now_v7().to_string(), "author": self.author()?,
                       "text": note, "public": true, "status": status.as_str()}),
            ));
        }
        self.edit_shared(id, edits)
    }

    /// Adds a note; internal notes are seen by inspectors only. Returns the note's id.
    pub fn add_note(&self, id: &str, text: &str, public: bool) -> Result<String> {
        let text = text.trim();
        if text.is_empty() || text.chars().count() > 4000 {
            return Err(Error::invalid(draft::Problem::new(
                "note",
                draft::ProblemKind::TooLong,
                "a note has 1 to 4000 characters",
            )));
        }
        let note_id = uuid::Uuid::now_v7().to_string();
        self.edit_shared(
            id,
            vec![(
                "note".into(),
                json!({"id": note_id, "author": self.author()?, "text": text, "public": public}),
            )],
        )?;
        Ok(note_id)
    }

    pub fn assign(&self, id: &str, assignee: Option<&str>) -> Result<()> {
        let assignee = assignee.map(str::trim).filter(|a| !a.is_empty());
        self.edit_shared(id, vec![("assignee".into(), json!(assignee))])
    }

    /// `low`, `normal`, `high` or `urgent`; `None` clears it.
    pub fn set_priority(&self, id: &str, priority: Option<&str>) -> Result<()> {
        self.edit_shared(
            id,
            vec![("priority".into(), json!(priority.map(str::trim)))],
        )
    }

    /// A request as replicated: merged fields, notes and photos in force, and the whole
    /// history with conflict flags.
    pub fn request(&self, id: &str) -> Result<Document> {
        let id = draft::parse_id(id)?;
        let doc = self.read(|c| log::document(c, &id))?;
        if doc.history.is_empty() {
            return Err(Error::NotFound(id));
        }
        Ok(doc)
    }

    /// Ids of the requests this device holds replicated state for (its own sent ones, an
    /// inspector's wards, reports near a resident), newest first.
    pub fn replicated_requests(&self) -> Result<Vec<String>> {
        let mut ids = self.read(log::request_ids)?;
        ids.reverse();
        Ok(ids)
    }
}

fn header_u64(r: &reqwest::blocking::Response, name: &str) -> Option<u64> {
    r.headers().get(name)?.to_str().ok()?.trim().parse().ok()
}
