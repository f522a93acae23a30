//! The steps of a push and a pull ([`Tx`]) in PostgreSQL. Each step is one statement where it
//! can be (rows go in as arrays, arrivals come back from the insert), since every statement is
//! a round trip to the database.

use std::collections::HashMap;

use curbside_core::sync::change::Columns;
use curbside_core::sync::{merge, Change, Hlc, StoredChange};
use curbside_core::vocab::{Field, FieldValue, ReplicaId, RequestId};
use postgres::types::ToSql;
use postgres::{Row, Statement, Transaction};

use crate::cursor::LogState;
use crate::scope::{self, RequestScope};
use crate::storage::tx::{Arrival, Known, ScopeColumns, Tx, R};
use crate::ServerError;

/// A transaction on one connection, with that connection's prepared statements. It remembers
/// whether anything was written and whether a statement failed: the writer then knows what
/// a failed write left behind.
pub struct PgTx<'t, 'c> {
    tx: &'t mut Transaction<'c>,
    statements: &'t mut HashMap<&'static str, Statement>,
    wrote: bool,
    broke: bool,
}

impl From<postgres::Error> for ServerError {
    /// The database's message and code, never its detail (which quotes the values concerned).
    fn from(e: postgres::Error) -> Self {
        ServerError::Internal(match e.as_db_error() {
            Some(db) => format!("database: {} ({})", db.message(), db.code().code()),
            None => format!("database: {e}"),
        })
    }
}

/// A change's columns from a row that holds `request_id, replica, counter, field, value, hlc,
/// replaced` from `at` on.
fn columns(r: &Row, at: usize) -> Columns<'_> {
    Columns {
        request_id: r.get(at),
        replica: r.get(at + 1),
        counter: r.get(at + 2),
        field: r.get(at + 3),
        value: r.get(at + 4),
        hlc: r.get(at + 5),
        replaced: r.get(at + 6),
    }
}

fn stored(e: curbside_core::Error) -> ServerError {
    ServerError::Internal(format!("stored change: {e}"))
}

fn arrivals(rows: Vec<Row>) -> R<Vec<Arrival>> {
    let mut out = rows
        .iter()
        .map(|r| {
            let id: &str = r.get(1);
            RequestId::parse(id)
                .map(|id| (r.get::<_, i64>(0) as u64, id))
                .map_err(|e| ServerError::Internal(format!("stored request id: {e}")))
        })
        .collect::<R<Vec<_>>>()?;
    out.sort_unstable_by_key(|(seq, _)| *seq);
    Ok(out)
}

fn scope_of(r: &Row) -> RequestScope {
    RequestScope {
        created_by: r.get(0),
        ward: r.get(1),
        lat: r.get(2),
        lon: r.get(3),
        public: r.get(4),
    }
}

impl<'t, 'c> PgTx<'t, 'c> {
    pub fn new(
        tx: &'t mut Transaction<'c>,
        statements: &'t mut HashMap<&'static str, Statement>,
    ) -> Self {
        PgTx {
            tx,
            statements,
            wrote: false,
            broke: false,
        }
    }

    /// Whether a write statement ran.
    pub fn wrote(&self) -> bool {
        self.wrote
    }

    /// Whether a statement failed: PostgreSQL refuses the rest of the transaction.
    pub fn broke(&self) -> bool {
        self.broke
    }

    fn failed(&mut self, e: postgres::Error) -> ServerError {
        self.broke = true;
        e.into()
    }

    fn statement(&mut self, sql: &'static str) -> R<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.tx.prepare(sql).map_err(|e| self.failed(e))?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    /// Runs a statement that reads.
    pub fn query(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> R<Vec<Row>> {
        let s = self.statement(sql)?;
        self.tx.query(&s, params).map_err(|e| self.failed(e))
    }

    pub fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> R<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Runs a statement that writes (and may return rows).
    pub fn write(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> R<Vec<Row>> {
        self.wrote = true;
        self.query(sql, params)
    }

    /// A value of the `meta` table.
    pub fn meta(&mut self, key: &str) -> R<Option<String>> {
        Ok(self
            .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])?
            .map(|r| r.get(0)))
    }

    pub fn set_meta(&mut self, key: &str, value: &str) -> R<()> {
        self.write(
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )?;
        Ok(())
    }
}

impl Tx for PgTx<'_, '_> {
    fn replica_owners(&mut self, replicas: &[&ReplicaId]) -> R<HashMap<ReplicaId, String>> {
        let ids: Vec<&str> = replicas.iter().map(|r| r.as_str()).collect();
        let rows = self.query(
            "SELECT replica, device_id FROM replicas WHERE replica = ANY($1)",
            &[&ids],
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((ReplicaId::parse(r.get(0))?, r.get(1))))
            .collect())
    }

    fn replicas_of(&mut self, device_id: &str) -> R<Vec<ReplicaId>> {
        let rows = self.query(
            "SELECT replica FROM replicas WHERE device_id = $1",
            &[&device_id],
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| ReplicaId::parse(r.get(0)))
            .collect())
    }

    fn bind_replica(&mut self, replica: &ReplicaId, device_id: &str) -> R<()> {
        self.write(
            "INSERT INTO replicas (replica, device_id) VALUES ($1, $2)",
            &[&replica.as_str(), &device_id],
        )?;
        Ok(())
    }

    fn known(&mut self, request_id: &RequestId, count: bool) -> R<Option<Known>> {
        let row = self.query_opt(
            "SELECT r.created_by, r.ward, r.lat, r.lon, r.public, r.service_request_id,
                    CASE WHEN $2 THEN (SELECT count(*) FROM sync_changes c
                                       WHERE c.request_id = r.request_id)
                         ELSE 0 END
             FROM requests r WHERE r.request_id = $1",
            &[&request_id.to_string(), &count],
        )?;
        Ok(row.map(|r| Known {
            scope: scope_of(&r),
            number: r.get(5),
            changes: r.get::<_, i64>(6) as u64,
        }))
    }

    fn number(&mut self, request_id: &RequestId, device_id: &str, now_ms: i64) -> R<i64> {
        let rows = self.write(
            "INSERT INTO requests (request_id, service_request_id, created_by, created_at)
             VALUES ($1, nextval('request_numbers'), $2, $3) RETURNING service_request_id",
            &[&request_id.to_string(), &device_id, &now_ms],
        )?;
        Ok(rows.first().map(|r| r.get(0)).unwrap_or_default())
    }

    fn record_own(
        &mut self,
        request_id: &RequestId,
        value: FieldValue,
        now_ms: i64,
    ) -> R<Vec<Arrival>> {
        // The server's replica is every instance's: its counter is a sequence they share.
        let rows = self.write(
            "INSERT INTO sync_changes (seq, request_id, replica, counter, field, value, hlc)
             SELECT nextval('arrival_numbers'), $1, m.value, nextval('own_counter'), $2, $3, $4
             FROM meta m WHERE m.key = 'replica_id'
             RETURNING seq, request_id",
            &[
                &request_id.to_string(),
                &value.field().name().as_ref(),
                &value.to_json_text(),
                &(Hlc::new(now_ms.max(0) as u64, 0).0 as i64),
            ],
        )?;
        arrivals(rows)
    }

    fn apply(&mut self, changes: &[Change], _now_ms: i64) -> R<Vec<Arrival>> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let mut requests = Vec::with_capacity(changes.len());
        let mut replicas = Vec::with_capacity(changes.len());
        let mut counters = Vec::with_capacity(changes.len());
        let mut fields = Vec::with_capacity(changes.len());
        let mut values = Vec::with_capacity(changes.len());
        let mut hlcs = Vec::with_capacity(changes.len());
        let mut replaced = Vec::with_capacity(changes.len());
        for c in changes {
            requests.push(c.request_id.to_string());
            replicas.push(c.id.replica.as_str());
            counters.push(c.id.counter as i64);
            fields.push(c.field().name().into_owned());
            values.push(c.value.to_json_text());
            hlcs.push(c.hlc.0 as i64);
            replaced.push(c.replaced.map(|h| h.0 as i64));
        }
        let rows = self.write(
            "INSERT INTO sync_changes (seq, request_id, replica, counter, field, value, hlc, replaced)
             SELECT nextval('arrival_numbers'), c.request_id, c.replica, c.counter, c.field,
                    c.value, c.hlc, c.replaced
             FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::int8[],
                         $7::int8[]) WITH ORDINALITY
                  AS c(request_id, replica, counter, field, value, hlc, replaced, n)
             ORDER BY c.n
             ON CONFLICT (request_id, replica, counter) DO NOTHING
             RETURNING seq, request_id",
            &[
                &requests, &replicas, &counters, &fields, &values, &hlcs, &replaced,
            ],
        )?;
        arrivals(rows)
    }

    fn photo_ref(
        &mut self,
        sha256: &str,
        request_id: &RequestId,
        device_id: &str,
        present: bool,
    ) -> R<()> {
        let sql = if present {
            "INSERT INTO photo_refs (sha256, request_id, device_id) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM photo_refs WHERE sha256 = $1 AND request_id = $2 AND device_id = $3"
        };
        self.write(sql, &[&sha256, &request_id.to_string(), &device_id])?;
        Ok(())
    }

    fn load(&mut self, request_id: &RequestId, fields: Option<&[Field]>) -> R<Vec<Change>> {
        let id = request_id.to_string();
        let rows = match fields {
            Some(fields) => {
                let names: Vec<String> = fields.iter().map(|f| f.name().into_owned()).collect();
                self.query(
                    "SELECT request_id, replica, counter, field, value, hlc, replaced
                     FROM sync_changes WHERE request_id = $1 AND field = ANY($2)",
                    &[&id, &names],
                )?
            }
            None => self.query(
                "SELECT request_id, replica, counter, field, value, hlc, replaced
                 FROM sync_changes WHERE request_id = $1",
                &[&id],
            )?,
        };
        let mut out = rows
            .iter()
            .map(|r| columns(r, 0).change().map_err(stored))
            .collect::<R<Vec<_>>>()?;
        merge::sort(&mut out);
        Ok(out)
    }

    fn set_scope(&mut self, request_id: &RequestId, s: &ScopeColumns) -> R<()> {
        self.write(
            "UPDATE requests SET lat = $2, lon = $3, ward = $4, status = $5, public = $6, cell = $7
             WHERE request_id = $1",
            &[
                &request_id.to_string(),
                &s.lat,
                &s.lon,
                &s.ward,
                &s.status,
                &s.public,
                &s.cell,
            ],
        )?;
        Ok(())
    }

    fn arrive_again(&mut self, request_id: &RequestId, up_to: u64) -> R<Vec<Arrival>> {
        let old: Vec<i64> = self
            .query(
                "SELECT seq FROM sync_changes WHERE request_id = $1 AND seq <= $2 ORDER BY seq",
                &[&request_id.to_string(), &(up_to as i64)],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if old.is_empty() {
            return Ok(Vec::new());
        }
        // A run of new numbers, in the old order. Only one writer holds the log's turn, so
        // nobody else draws from the sequence meanwhile.
        let first: i64 = self
            .write("SELECT nextval('arrival_numbers')", &[])?
            .first()
            .map(|r| r.get(0))
            .unwrap_or_default();
        let last = first + old.len() as i64 - 1;
        self.write("SELECT setval('arrival_numbers', $1)", &[&last])?;
        let new: Vec<i64> = (first..=last).collect();
        let rows = self.write(
            "UPDATE sync_changes c SET seq = m.new
             FROM unnest($1::int8[], $2::int8[]) AS m(old, new)
             WHERE c.seq = m.old
             RETURNING c.seq, c.request_id",
            &[&old, &new],
        )?;
        arrivals(rows)
    }

    fn mark_arrivals(&mut self, now_ms: i64) -> R<()> {
        self.write(
            "INSERT INTO arrivals (seq, at_ms) SELECT max(seq), $1 FROM sync_changes
             HAVING max(seq) IS NOT NULL
             ON CONFLICT (seq) DO UPDATE SET at_ms = excluded.at_ms",
            &[&now_ms],
        )?;
        Ok(())
    }

    fn file(&mut self, entries: &[(String, u64)]) -> R<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        let seqs: Vec<i64> = entries.iter().map(|(_, s)| *s as i64).collect();
        self.write(
            "INSERT INTO feed (key, seq) SELECT * FROM unnest($1::text[], $2::int8[])
             ON CONFLICT DO NOTHING",
            &[&keys, &seqs],
        )?;
        Ok(())
    }

    fn arrived_by(&mut self, at_ms: i64) -> R<Option<u64>> {
        let seq: Option<i64> = self
            .query_opt("SELECT max(seq) FROM arrivals WHERE at_ms <= $1", &[&at_ms])?
            .and_then(|r| r.get(0));
        if let Some(seq) = seq {
            self.write("DELETE FROM arrivals WHERE seq < $1", &[&seq])?;
        }
        Ok(seq.map(|s| s as u64))
    }

    fn requests_after(&mut self, after: Option<&RequestId>, limit: usize) -> R<Vec<RequestId>> {
        let after = after.map(|a| a.to_string()).unwrap_or_default();
        let rows = self.query(
            "SELECT request_id FROM requests WHERE request_id > $1 ORDER BY request_id LIMIT $2",
            &[&after, &(limit as i64)],
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| RequestId::parse(r.get(0)).ok())
            .collect())
    }

    fn load_arrived(&mut self, request_id: &RequestId) -> R<Vec<(Change, u64)>> {
        let rows = self.query(
            "SELECT request_id, replica, counter, field, value, hlc, replaced, seq
             FROM sync_changes WHERE request_id = $1",
            &[&request_id.to_string()],
        )?;
        rows.iter()
            .map(|r| {
                Ok((
                    columns(r, 0).change().map_err(stored)?,
                    r.get::<_, i64>(7) as u64,
                ))
            })
            .collect()
    }

    fn forget(&mut self, seqs: &[u64]) -> R<()> {
        let seqs: Vec<i64> = seqs.iter().map(|s| *s as i64).collect();
        self.write("DELETE FROM sync_changes WHERE seq = ANY($1)", &[&seqs])?;
        Ok(())
    }

    fn note_compaction(&mut self, reached: u64) -> R<()> {
        self.write(
            "INSERT INTO meta (key, value) VALUES ('compacted_seq', $1::int8::text)
             ON CONFLICT (key) DO UPDATE
             SET value = greatest(meta.value::int8, excluded.value::int8)::text",
            &[&(reached as i64)],
        )?;
        self.write(
            "INSERT INTO meta (key, value) VALUES ('compactions', '1')
             ON CONFLICT (key) DO UPDATE SET value = (meta.value::int8 + 1)::text",
            &[],
        )?;
        Ok(())
    }

    fn log_state(&mut self) -> R<LogState> {
        let rows = self.query(
            "SELECT key, value FROM meta
             WHERE key IN ('server_id', 'compacted_seq', 'compactions')",
            &[],
        )?;
        let mut state = LogState {
            server_id: String::new(),
            compacted_seq: 0,
            compactions: 0,
        };
        for r in rows {
            let value: &str = r.get(1);
            match r.get::<_, &str>(0) {
                "server_id" => state.server_id = value.to_string(),
                "compacted_seq" => state.compacted_seq = value.parse().unwrap_or(0),
                _ => state.compactions = value.parse().unwrap_or(0),
            }
        }
        Ok(state)
    }

    fn last_seq(&mut self) -> R<u64> {
        let row = self.query_opt("SELECT COALESCE(max(seq), 0) FROM sync_changes", &[])?;
        Ok(row.map(|r| r.get::<_, i64>(0) as u64).unwrap_or(0))
    }

    fn reported_places(&mut self, device_id: &str) -> R<Vec<(f64, f64)>> {
        let rows = self.query(
            "SELECT lat, lon FROM requests WHERE created_by = $1 AND lat IS NOT NULL
             ORDER BY created_at DESC LIMIT $2",
            &[&device_id, &(scope::MAX_PLACES as i64)],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn scope_row(&mut self, request_id: &RequestId) -> R<Option<RequestScope>> {
        Ok(self
            .query_opt(
                "SELECT created_by, ward, lat, lon, public FROM requests WHERE request_id = $1",
                &[&request_id.to_string()],
            )?
            .map(|r| scope_of(&r)))
    }

    fn place(&mut self, request_id: &RequestId) -> R<Option<(f64, f64)>> {
        Ok(self
            .query_opt(
                "SELECT lat, lon FROM requests WHERE request_id = $1 AND lat IS NOT NULL",
                &[&request_id.to_string()],
            )?
            .map(|r| (r.get(0), r.get(1))))
    }

    fn open_in_cell(&mut self, cell: &str, not_by: &str, limit: usize) -> R<Vec<RequestId>> {
        let rows = self.query(
            "SELECT request_id FROM requests
             WHERE cell = $1 AND public AND status NOT IN ('completed', 'cancelled')
               AND created_by <> $2
             LIMIT $3",
            &[&cell, &not_by, &(limit as i64)],
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| RequestId::parse(r.get(0)).ok())
            .collect())
    }

    /// Each key's feed read from its index up to `limit` rows (those whose change is still
    /// logged), the union taken once per arrival and cut to `limit`.
    fn feed(&mut self, keys: &[String], after: u64, limit: usize) -> R<Vec<(u64, StoredChange)>> {
        let rows = self.query(
            "SELECT f.seq, c.request_id, c.replica, c.counter, c.field, c.value, c.hlc, c.replaced
             FROM (SELECT DISTINCT s.seq FROM unnest($1::text[]) AS k(key)
                   CROSS JOIN LATERAL (
                       SELECT f.seq FROM feed f JOIN sync_changes c ON c.seq = f.seq
                       WHERE f.key = k.key AND f.seq > $2 ORDER BY f.seq LIMIT $3) s
                   ORDER BY s.seq LIMIT $3) f
             JOIN sync_changes c ON c.seq = f.seq
             ORDER BY f.seq",
            &[&keys, &(after as i64), &(limit as i64)],
        )?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.get::<_, i64>(0) as u64,
                    columns(r, 1).stored().map_err(stored)?,
                ))
            })
            .collect()
    }
}
