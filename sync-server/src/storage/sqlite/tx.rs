//! The steps of a push and a pull ([`Tx`]) in SQLite, over curbside-core's change log (the same
//! tables and merge code as every client's) and the server's own tables.

use std::collections::HashMap;

use curbside_core::sql;
use curbside_core::sync::{log, Change, StoredChange};
use curbside_core::vocab::{Field, FieldValue, ReplicaId, RequestId};
use rusqlite::{params, OptionalExtension, Transaction};

use super::{COMPACTED_SEQ, COMPACTIONS, SERVER_ID};
use crate::cursor::LogState;
use crate::scope::{self, RequestScope};
use crate::storage::duplicates::Candidate;
use crate::storage::open311::{
    self, FoundRequest, Param, Post, PriorPost, RequestQuery, StandardTimes,
};
use crate::storage::tx::{
    Arrival, Bbox, Dues, Feed, Known, PhotoEdit, PullContext, ScopeColumns, Tx, R,
};

/// The columns [`candidate`] reads.
const CANDIDATE_COLUMNS: &str = "request_id, service_code, lat, lon, accuracy, created_at";

/// A duplicate candidate from a row of [`CANDIDATE_COLUMNS`] (`None`: an id that is not one).
fn candidate(r: &rusqlite::Row) -> rusqlite::Result<Option<Candidate>> {
    let id: String = r.get(0)?;
    Ok(RequestId::parse(&id).ok().map(|id| Candidate {
        id,
        service_code: r.get(1).unwrap_or_default(),
        lat: r.get(2).unwrap_or_default(),
        lon: r.get(3).unwrap_or_default(),
        accuracy_m: r.get(4).ok().flatten(),
        created_at_ms: r.get(5).unwrap_or_default(),
    }))
}

/// The columns of a [`RequestScope`], in the order [`scope_from_row`] reads them.
pub(super) const SCOPE_COLUMNS: &str = "r.created_by, r.ward, r.lat, r.lon, r.public";

pub(super) fn scope_from_row(r: &rusqlite::Row) -> rusqlite::Result<RequestScope> {
    Ok(RequestScope {
        created_by: r.get(0)?,
        ward: r.get(1)?,
        lat: r.get(2)?,
        lon: r.get(3)?,
        public: r.get(4)?,
    })
}

pub(super) fn log_state(tx: &Transaction) -> R<LogState> {
    Ok(LogState {
        server_id: sql::get(tx, SERVER_ID)?.unwrap_or_default(),
        compacted_seq: sql::get_num(tx, COMPACTED_SEQ, 0)?,
        compactions: sql::get_num(tx, COMPACTIONS, 0)?,
    })
}

pub(super) fn reported_places(tx: &Transaction, device_id: &str) -> R<Vec<(f64, f64)>> {
    Ok(tx
        .prepare_cached(
            "SELECT lat, lon FROM requests WHERE created_by = ?1 AND lat IS NOT NULL
             ORDER BY created_at DESC LIMIT ?2",
        )?
        .query_map(params![device_id, scope::MAX_PLACES as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?)
}

/// A transaction of the server's SQLite file, as a push or a pull sees it.
pub(super) struct SqliteTx<'t>(pub &'t Transaction<'t>);

impl SqliteTx<'_> {
    /// What arrived after `before`: the arrivals of the step just taken.
    fn since(&self, before: u64) -> R<Vec<Arrival>> {
        Ok(log::arrivals_after(self.0, before)?)
    }

    /// Marks the requests of `arrivals` as updated now (Open311's `updated_datetime`): always
    /// later than before, if only by a millisecond, so what a change moved is never taken for
    /// what was cached before it. A new request gets its first time here.
    fn touch(&self, arrivals: &[Arrival], now_ms: i64) -> R<()> {
        let mut update = self.0.prepare_cached(
            "UPDATE requests SET updated_at = CASE WHEN updated_at IS NULL OR updated_at < ?2
                                                   THEN ?2 ELSE updated_at + 1 END
             WHERE request_id = ?1",
        )?;
        let mut done: Vec<&RequestId> = Vec::new();
        for (_, id) in arrivals {
            if !done.contains(&id) {
                update.execute(params![id.to_string(), now_ms])?;
                done.push(id);
            }
        }
        Ok(())
    }
}

impl Tx for SqliteTx<'_> {
    fn replica_owners(&mut self, replicas: &[&ReplicaId]) -> R<HashMap<ReplicaId, String>> {
        let mut stmt = self
            .0
            .prepare_cached("SELECT device_id FROM replicas WHERE replica = ?1")?;
        let mut out = HashMap::new();
        for replica in replicas {
            let owner: Option<String> = stmt
                .query_row([replica.as_str()], |r| r.get(0))
                .optional()?;
            if let Some(owner) = owner {
                out.insert((*replica).clone(), owner);
            }
        }
        Ok(out)
    }

    fn replicas_of(&mut self, device_id: &str) -> R<Vec<ReplicaId>> {
        Ok(self
            .0
            .prepare_cached("SELECT replica FROM replicas WHERE device_id = ?1")?
            .query_map([device_id], |r| r.get::<_, String>(0))?
            .filter_map(|r| r.ok().and_then(|r| ReplicaId::parse(&r)))
            .collect())
    }

    fn bind_replicas(&mut self, replicas: &[&ReplicaId], device_id: &str) -> R<()> {
        let mut insert = self
            .0
            .prepare_cached("INSERT INTO replicas (replica, device_id) VALUES (?1, ?2)")?;
        for replica in replicas {
            insert.execute(params![replica.as_str(), device_id])?;
        }
        Ok(())
    }

    fn known(&mut self, ids: &[RequestId], count: bool) -> R<HashMap<RequestId, Known>> {
        let mut stmt = self.0.prepare_cached(&format!(
            "SELECT {SCOPE_COLUMNS}, r.service_request_id, r.acknowledged_at IS NOT NULL
             FROM requests r WHERE r.request_id = ?1"
        ))?;
        let mut out = HashMap::new();
        for id in ids {
            let found: Option<(RequestScope, i64, bool)> = stmt
                .query_row([id.to_string()], |r| {
                    Ok((scope_from_row(r)?, r.get(5)?, r.get(6)?))
                })
                .optional()?;
            let Some((scope, number, acknowledged)) = found else {
                continue;
            };
            let changes = if count { log::count(self.0, id)? } else { 0 };
            out.insert(
                *id,
                Known {
                    scope,
                    number,
                    changes,
                    acknowledged,
                },
            );
        }
        Ok(out)
    }

    fn number(&mut self, ids: &[(RequestId, Dues)], device_id: &str, now_ms: i64) -> R<Vec<i64>> {
        let first: i64 = self.0.query_row(
            "SELECT COALESCE(MAX(service_request_id), 100000) + 1 FROM requests",
            [],
            |r| r.get(0),
        )?;
        let mut insert = self.0.prepare_cached(
            "INSERT INTO requests
                 (request_id, service_request_id, created_by, created_at,
                  acknowledge_due, resolve_due)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut out = Vec::with_capacity(ids.len());
        for (k, (id, dues)) in ids.iter().enumerate() {
            let number = first + k as i64;
            insert.execute(params![
                id.to_string(),
                number,
                device_id,
                now_ms,
                dues.acknowledge,
                dues.resolve
            ])?;
            out.push(number);
        }
        Ok(out)
    }

    fn record_own(&mut self, values: &[(RequestId, FieldValue)], now_ms: i64) -> R<Vec<Arrival>> {
        let before = log::last_seq(self.0)?;
        // One record of each request's run of values: its numbers and clock read once.
        let mut rest = values;
        while let Some((id, _)) = rest.first() {
            let n = rest.iter().take_while(|(of, _)| of == id).count();
            let run = rest[..n].iter().map(|(_, v)| v.clone()).collect();
            log::record(self.0, *id, run, now_ms, log::Outbox::None)?;
            rest = &rest[n..];
        }
        let arrivals = self.since(before)?;
        self.touch(&arrivals, now_ms)?;
        Ok(arrivals)
    }

    fn apply(&mut self, changes: &[Change], now_ms: i64) -> R<Vec<Arrival>> {
        let before = log::last_seq(self.0)?;
        log::apply(self.0, changes, now_ms)?;
        let arrivals = self.since(before)?;
        self.touch(&arrivals, now_ms)?;
        Ok(arrivals)
    }

    fn photo_refs(&mut self, edits: &[PhotoEdit], device_id: &str) -> R<()> {
        for e in edits {
            let sql = if e.present {
                "INSERT OR IGNORE INTO photo_refs (sha256, request_id, device_id) VALUES (?1, ?2, ?3)"
            } else {
                "DELETE FROM photo_refs WHERE sha256 = ?1 AND request_id = ?2 AND device_id = ?3"
            };
            self.0.prepare_cached(sql)?.execute(params![
                e.sha256,
                e.request_id.to_string(),
                device_id
            ])?;
        }
        Ok(())
    }

    fn load(
        &mut self,
        ids: &[RequestId],
        fields: Option<&[Field]>,
    ) -> R<HashMap<RequestId, Vec<Change>>> {
        let mut out = HashMap::new();
        for id in ids {
            let changes = match fields {
                Some(fields) => log::load_fields(self.0, id, fields)?,
                None => log::load(self.0, id)?,
            };
            out.insert(*id, changes);
        }
        Ok(out)
    }

    fn set_scopes(&mut self, scopes: &[(RequestId, ScopeColumns)], now_ms: i64) -> R<()> {
        let mut update = self.0.prepare_cached(
            "UPDATE requests SET lat = ?2, lon = ?3, ward = ?4, status = ?5, public = ?6,
                                 cell = ?7, service_code = COALESCE(?8, service_code),
                                 accuracy = ?9,
                                 closed_at = CASE WHEN ?5 IN ('completed', 'cancelled')
                                                  THEN COALESCE(closed_at, ?10) END
             WHERE request_id = ?1",
        )?;
        for (id, s) in scopes {
            update.execute(params![
                id.to_string(),
                s.lat,
                s.lon,
                s.ward,
                s.status,
                s.public,
                s.cell,
                s.service_code,
                s.accuracy_m,
                now_ms
            ])?;
        }
        Ok(())
    }

    fn acknowledge(&mut self, ids: &[RequestId], now_ms: i64) -> R<()> {
        let mut update = self.0.prepare_cached(
            "UPDATE requests SET acknowledged_at = ?2
             WHERE request_id = ?1 AND acknowledged_at IS NULL",
        )?;
        for id in ids {
            update.execute(params![id.to_string(), now_ms])?;
        }
        Ok(())
    }

    fn arrive_again(&mut self, request_id: &RequestId, up_to: u64) -> R<Vec<Arrival>> {
        let before = log::last_seq(self.0)?;
        log::arrive_again(self.0, request_id, up_to)?;
        self.since(before)
    }

    fn file(&mut self, entries: &[(String, u64)], now_ms: i64) -> R<()> {
        // A change is filed under a few keys in a row: its key in the log is found once.
        let mut find = self
            .0
            .prepare_cached("SELECT request, replica, counter FROM sync_changes WHERE seq = ?1")?;
        let mut insert = self.0.prepare_cached(
            "INSERT OR IGNORE INTO feed (key, seq, request, replica, counter)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        // The last arrival looked up, and its change's key (none: compacted away).
        type Key = Option<(i64, i64, i64)>;
        let mut last: Option<(u64, Key)> = None;
        for (key, seq) in entries {
            let change = match last {
                Some((s, change)) if s == *seq => change,
                _ => {
                    let change = find
                        .query_row([*seq as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .optional()?;
                    last = Some((*seq, change));
                    change
                }
            };
            if let Some((request, replica, counter)) = change {
                insert.execute(params![key, *seq as i64, request, replica, counter])?;
            }
        }
        self.0
            .prepare_cached(
                "INSERT OR REPLACE INTO arrivals (seq, at_ms) SELECT MAX(seq), ?1 FROM sync_changes",
            )?
            .execute([now_ms])?;
        Ok(())
    }

    fn arrived_by(&mut self, at_ms: i64) -> R<Option<u64>> {
        let seq: Option<i64> = self.0.query_row(
            "SELECT MAX(seq) FROM arrivals WHERE at_ms <= ?1",
            [at_ms],
            |r| r.get(0),
        )?;
        if let Some(seq) = seq {
            self.0
                .execute("DELETE FROM arrivals WHERE seq < ?1", [seq])?;
        }
        Ok(seq.map(|s| s as u64))
    }

    fn requests_after(&mut self, after: Option<&RequestId>, limit: usize) -> R<Vec<RequestId>> {
        let after = after.map(|a| a.to_string()).unwrap_or_default();
        let ids: Vec<String> = self
            .0
            .prepare_cached(
                "SELECT request_id FROM requests WHERE request_id > ?1 ORDER BY request_id LIMIT ?2",
            )?
            .query_map(params![after, limit as i64], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(ids
            .iter()
            .filter_map(|id| RequestId::parse(id).ok())
            .collect())
    }

    fn load_arrived(&mut self, request_id: &RequestId) -> R<Vec<(Change, u64)>> {
        Ok(log::load_arrived(self.0, request_id)?)
    }

    fn forget(&mut self, seqs: &[u64]) -> R<()> {
        log::forget_arrivals(self.0, seqs)?;
        Ok(())
    }

    fn note_compaction(&mut self, reached: u64) -> R<()> {
        let reached = sql::get_num(self.0, COMPACTED_SEQ, 0u64)?.max(reached);
        sql::set(self.0, COMPACTED_SEQ, &reached.to_string())?;
        sql::increment(self.0, COMPACTIONS)?;
        Ok(())
    }

    fn pull_context(&mut self, device_id: &str, places: bool) -> R<PullContext> {
        Ok(PullContext {
            state: log_state(self.0)?,
            end: log::last_seq(self.0)?,
            places: if places {
                reported_places(self.0, device_id)?
            } else {
                Vec::new()
            },
            own: self.replicas_of(device_id)?,
        })
    }

    fn scope_rows(&mut self, ids: &[RequestId]) -> R<HashMap<RequestId, RequestScope>> {
        let mut stmt = self.0.prepare_cached(&format!(
            "SELECT {SCOPE_COLUMNS} FROM requests r WHERE r.request_id = ?1"
        ))?;
        let mut out = HashMap::new();
        for id in ids {
            if let Some(row) = stmt
                .query_row([id.to_string()], scope_from_row)
                .optional()?
            {
                out.insert(*id, row);
            }
        }
        Ok(out)
    }

    fn places(&mut self, ids: &[RequestId]) -> R<HashMap<RequestId, (f64, f64)>> {
        let mut stmt = self.0.prepare_cached(
            "SELECT lat, lon FROM requests WHERE request_id = ?1 AND lat IS NOT NULL",
        )?;
        let mut out = HashMap::new();
        for id in ids {
            if let Some(place) = stmt
                .query_row([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
            {
                out.insert(*id, place);
            }
        }
        Ok(out)
    }

    fn open_near(&mut self, cells: &[String], not_by: &str, limit: usize) -> R<Vec<RequestId>> {
        let mut stmt = self.0.prepare_cached(
            "SELECT request_id FROM requests
             WHERE cell = ?1 AND public AND status NOT IN ('completed', 'cancelled')
               AND created_by <> ?2
             LIMIT ?3",
        )?;
        let mut out = Vec::new();
        for cell in cells {
            let ids: Vec<String> = stmt
                .query_map(params![cell, not_by, limit as i64], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            out.extend(ids.iter().filter_map(|id| RequestId::parse(id).ok()));
            if out.len() >= limit {
                out.truncate(limit);
                break;
            }
        }
        Ok(out)
    }

    /// One stream per key (the feed row joined to its change), merged by arrival number.
    fn duplicate_subjects(&mut self, ids: &[RequestId]) -> R<Vec<Candidate>> {
        let mut stmt = self.0.prepare_cached(&format!(
            "SELECT {CANDIDATE_COLUMNS} FROM requests
             WHERE request_id = ?1 AND lat IS NOT NULL AND service_code IS NOT NULL"
        ))?;
        let mut out = Vec::new();
        for id in ids {
            out.extend(
                stmt.query_row([id.to_string()], candidate)
                    .optional()?
                    .flatten(),
            );
        }
        Ok(out)
    }

    fn duplicate_candidates(
        &mut self,
        cells: &[String],
        service_code: &str,
        ((lat0, lat1), (lon0, lon1)): Bbox,
        since_ms: i64,
        not: &RequestId,
        limit: usize,
    ) -> R<Vec<Candidate>> {
        let mut stmt = self.0.prepare_cached(&format!(
            "SELECT {CANDIDATE_COLUMNS} FROM requests
             WHERE cell = ?1 AND service_code = ?2 AND lat BETWEEN ?6 AND ?7
               AND lon BETWEEN ?8 AND ?9 AND public
               AND status NOT IN ('completed', 'cancelled') AND created_at >= ?3
               AND request_id <> ?4
             LIMIT ?5"
        ))?;
        let mut out = Vec::new();
        for cell in cells {
            let left = limit.saturating_sub(out.len());
            if left == 0 {
                break;
            }
            let rows = stmt.query_map(
                params![
                    cell,
                    service_code,
                    since_ms,
                    not.to_string(),
                    left as i64,
                    lat0,
                    lat1,
                    lon0,
                    lon1
                ],
                candidate,
            )?;
            for row in rows {
                out.extend(row?);
            }
        }
        Ok(out)
    }

    fn record_duplicates(&mut self, found: &[(RequestId, RequestId, f64)]) -> R<()> {
        let mut insert = self.0.prepare_cached(
            "INSERT OR REPLACE INTO likely_duplicates (request_id, other_id, distance_m)
             VALUES (?1, ?2, ?3)",
        )?;
        for (id, other, metres) in found {
            insert.execute(params![id.to_string(), other.to_string(), metres])?;
        }
        Ok(())
    }

    fn likely_duplicates(&mut self, ids: &[RequestId]) -> R<HashMap<RequestId, Vec<(i64, f64)>>> {
        let mut stmt = self.0.prepare_cached(
            "SELECT r.service_request_id, d.distance_m FROM likely_duplicates d
             JOIN requests r ON r.request_id = d.other_id
             WHERE d.request_id = ?1 AND r.public ORDER BY d.distance_m",
        )?;
        let mut out = HashMap::new();
        for id in ids {
            let found: Vec<(i64, f64)> = stmt
                .query_map([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            if !found.is_empty() {
                out.insert(*id, found);
            }
        }
        Ok(out)
    }

    fn prior_post(&mut self, key_id: &str, idempotency_key: &str) -> R<Option<PriorPost>> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT p.fingerprint, r.service_request_id, p.token FROM open311_posts p
                 JOIN requests r ON r.request_id = p.request_id
                 WHERE p.key_id = ?1 AND p.idempotency_key = ?2",
            )?
            .query_row(params![key_id, idempotency_key], |r| {
                Ok(PriorPost {
                    fingerprint: r.get(0)?,
                    service_request_id: r.get(1)?,
                    token: r.get(2)?,
                })
            })
            .optional()?)
    }

    fn save_post(&mut self, p: &Post) -> R<()> {
        self.0
            .prepare_cached(
                "INSERT INTO open311_posts
                     (request_id, key_id, idempotency_key, fingerprint, token, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                p.request_id.to_string(),
                p.key_id,
                p.idempotency_key,
                p.fingerprint,
                p.token,
                p.now_ms
            ])?;
        Ok(())
    }

    fn find_requests(&mut self, q: &RequestQuery) -> R<Vec<FoundRequest>> {
        let (sql, found_params) = open311::query_sql(q, |n| format!("?{n}"));
        let values: Vec<rusqlite::types::Value> = found_params
            .into_iter()
            .map(|p| match p {
                Param::Int(n) => rusqlite::types::Value::Integer(n),
                Param::Real(x) => rusqlite::types::Value::Real(x),
                Param::Text(t) => rusqlite::types::Value::Text(t),
            })
            .collect();
        // Not kept prepared: its shape varies with the filters, and would push out the
        // statements every sync runs.
        let mut stmt = self.0.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(values), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                StandardTimes {
                    acknowledge_due_ms: r.get(5)?,
                    resolve_due_ms: r.get(6)?,
                    acknowledged_at_ms: r.get(7)?,
                    closed_at_ms: r.get(8)?,
                },
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, number, ward, created_at_ms, updated_at_ms, standard) = row?;
            let Ok(request_id) = RequestId::parse(&id) else {
                continue;
            };
            out.push(FoundRequest {
                request_id,
                number,
                ward,
                created_at_ms,
                updated_at_ms,
                standard,
                changes: Vec::new(),
                likely_duplicates: Vec::new(),
                duplicate_of: None,
            });
        }
        Ok(out)
    }

    fn feed(&mut self, keys: &[String], after: u64, limit: usize) -> R<Feed> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        // The log's numbers, not the view's names: a page holds many changes of few
        // requests, and each name is looked up once (`NumberNames`), not joined per row.
        let sql = format!(
            "SELECT {}, f.seq FROM feed f
             JOIN sync_changes c ON (c.request, c.replica, c.counter, c.seq)
                                  = (f.request, f.replica, f.counter, f.seq)
             WHERE f.key = ?1 AND f.seq > ?2 ORDER BY f.seq",
            log::NUMBERED_COLUMNS
        );
        // Each stream its own cached statement (the same text twice would share one).
        let mut statements = Vec::with_capacity(keys.len());
        for i in 0..keys.len() {
            statements.push(self.0.prepare_cached(&format!("{sql} /* stream {i} */"))?);
        }
        let mut streams = Vec::with_capacity(keys.len());
        for (stmt, key) in statements.iter_mut().zip(keys) {
            streams.push(stmt.query(params![key, after as i64])?);
        }
        let conn: &rusqlite::Connection = self.0;
        let mut names = log::NumberNames::default();
        let mut next = |rows: &mut rusqlite::Rows| -> R<Option<(u64, StoredChange)>> {
            Ok(match rows.next()? {
                Some(r) => Some((r.get::<_, i64>(7)? as u64, names.stored(conn, r)?)),
                None => None,
            })
        };
        // The head of each stream, by arrival number; the change waits beside it.
        let mut heads: Vec<Option<StoredChange>> = Vec::with_capacity(keys.len());
        let mut heap = BinaryHeap::new();
        for (i, rows) in streams.iter_mut().enumerate() {
            let head = next(rows)?;
            if let Some((seq, _)) = &head {
                heap.push(Reverse((*seq, i)));
            }
            heads.push(head.map(|(_, c)| c));
        }
        let mut out: Vec<(u64, StoredChange)> = Vec::new();
        let mut exhausted = true;
        while let Some(Reverse((seq, i))) = heap.pop() {
            let change = heads[i].take().expect("a head for each entry");
            if out.last().is_some_and(|(last, _)| *last == seq) {
                // Filed under two of these keys: once is enough. Its stream moves on.
            } else if out.len() == limit {
                exhausted = false;
                break;
            } else {
                out.push((seq, change));
            }
            if let Some((s, c)) = next(&mut streams[i])? {
                heap.push(Reverse((s, i)));
                heads[i] = Some(c);
            }
        }
        Ok(Feed {
            reached: out.last().map_or(after, |(seq, _)| *seq),
            covered: out.len(),
            changes: out,
            exhausted,
        })
    }
}
