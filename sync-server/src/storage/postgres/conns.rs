//! The connections to PostgreSQL: one writer per instance on its own thread that commits many
//! callers' writes in one transaction (one flush of the WAL for all of them), and a pool of
//! readers. Instances on one database take turns at the log through a
//! row lock each write transaction takes first, so arrival numbers commit in their order: a
//! cursor never passes a number that is still to become visible.
//!
//! A write runs without a savepoint of its own (each would cost a round trip). One that fails
//! after writing, or whose statement failed (PostgreSQL then refuses the rest of the
//! transaction), rolls the batch back, and the batch runs again one write per transaction.

use std::sync::mpsc::{self, SyncSender};

use postgres::{Client, IsolationLevel, NoTls};

use super::tx::{Cache, PgTx};
use crate::storage::conns::{answer, caught, Pool, Queue};
use crate::ServerError;

/// Readers open at most, per instance: each is a process on the database's machine.
const READERS: usize = 8;

/// A connection and what it keeps between transactions.
pub(super) struct Conn {
    pub client: Client,
    pub cache: Cache,
}

impl Conn {
    pub fn open(config: &postgres::Config) -> Result<Conn, ServerError> {
        let client = config
            .connect(NoTls)
            .map_err(|e| ServerError::Internal(format!("database connection: {e}")))?;
        Ok(Conn {
            client,
            cache: Cache::default(),
        })
    }
}

/// A write waiting for the writer, answered once the batch it is in has committed.
trait Job: Send {
    /// Runs the write; false if it failed.
    fn run(&mut self, tx: &mut PgTx) -> bool;
    fn finish(&mut self, committed: Result<(), String>);
}

struct Pending<T, F> {
    f: F,
    result: Option<Result<T, ServerError>>,
    reply: SyncSender<Result<T, ServerError>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send,
    F: Fn(&mut PgTx) -> Result<T, ServerError> + Send,
{
    fn run(&mut self, tx: &mut PgTx) -> bool {
        let result = caught("write", || (self.f)(tx));
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(&mut self, committed: Result<(), String>) {
        let _ = self.reply.send(answer(self.result.take(), committed));
    }
}

pub(super) struct Writer(Queue<dyn Job>);

impl Writer {
    /// Starts the writer on `conn` (opened again from `config` if it is lost).
    pub fn start(mut conn: Conn, config: postgres::Config) -> Result<Writer, ServerError> {
        let queue = Queue::start("curbside-pg-writer", move |batch: &mut Vec<Box<dyn Job>>| {
            // A connection lost (the database restarted) is opened again for the next batch.
            if conn.client.is_closed() {
                match Conn::open(&config) {
                    Ok(c) => conn = c,
                    Err(e) => {
                        tracing::error!(error = %e, "database writer cannot reconnect");
                        for job in batch.iter_mut() {
                            job.finish(Err("the database is unreachable".into()));
                        }
                        return;
                    }
                }
            }
            match together(&mut conn, batch) {
                Ok(Some(committed)) => {
                    if let Err(e) = &committed {
                        tracing::error!(error = %e, writes = batch.len(), "group commit failed");
                    }
                    for job in batch.iter_mut() {
                        job.finish(committed.clone());
                    }
                }
                // One of them failed after writing: each alone, so only it fails.
                Ok(None) | Err(_) => {
                    for job in batch.iter_mut() {
                        let committed = alone(&mut conn, job.as_mut());
                        job.finish(committed);
                    }
                }
            }
        })
        .map_err(|e| ServerError::Startup(format!("writer thread: {e}")))?;
        Ok(Writer(queue))
    }

    /// Runs `f` in the next group commit and returns its result once that has committed. `f`
    /// may run twice (the second time in a transaction of its own), so it only writes
    /// through the transaction it is given.
    pub fn write<T: Send + 'static>(
        &self,
        f: impl Fn(&mut PgTx) -> Result<T, ServerError> + Send + 'static,
    ) -> Result<T, ServerError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let job = Box::new(Pending {
            f,
            result: None,
            reply,
        });
        self.0.send(job, answer)
    }

    pub fn commits(&self) -> &crate::storage::Commits {
        &self.0.commits
    }
}

/// Takes the log's turn: instances write one transaction at a time, so arrival numbers are
/// visible in their order.
const TURN: &str = "SELECT 1 FROM log_lock WHERE id = 1 FOR UPDATE";

/// Runs the batch in one transaction. `Some(outcome)` of the commit when every write either
/// succeeded or failed before writing anything; `None` (rolled back) otherwise.
fn together(
    conn: &mut Conn,
    batch: &mut [Box<dyn Job>],
) -> Result<Option<Result<(), String>>, postgres::Error> {
    let Conn { client, cache } = conn;
    let mut tx = write_transaction(client)?;
    tx.batch_execute(TURN)?;
    for job in batch.iter_mut() {
        let mut pg = PgTx::new(&mut tx, cache);
        let ok = job.run(&mut pg);
        // A failed statement aborts the whole transaction, even under a write that went on.
        if pg.broke() || (!ok && pg.wrote()) {
            cache.rolled_back();
            tx.rollback()?;
            return Ok(None);
        }
    }
    let committed = tx.commit().map_err(said);
    match committed {
        Ok(()) => cache.committed(),
        Err(_) => cache.rolled_back(),
    }
    Ok(Some(committed))
}

/// Runs one write in a transaction of its own.
fn alone(conn: &mut Conn, job: &mut dyn Job) -> Result<(), String> {
    let Conn { client, cache } = conn;
    let outcome = (|| {
        let mut tx = write_transaction(client).map_err(said)?;
        tx.batch_execute(TURN).map_err(said)?;
        if job.run(&mut PgTx::new(&mut tx, cache)) {
            tx.commit().map_err(said)?;
            Ok(true)
        } else {
            tx.rollback().map_err(said)?;
            Ok(false)
        }
    })();
    match outcome {
        Ok(true) => cache.committed(),
        _ => cache.rolled_back(),
    }
    outcome.map(|_| ())
}

/// A write transaction, read committed whatever the database's default: after the log's turn
/// each statement must see what the last holder committed.
pub(super) fn write_transaction(
    client: &mut Client,
) -> Result<postgres::Transaction<'_>, postgres::Error> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
}

/// A database error as it may be logged: its message and code, never its detail.
fn said(e: postgres::Error) -> String {
    ServerError::from(e).to_string()
}

impl Drop for Readers {
    /// Closing a connection blocks on the client's runtime too: not on an executor's thread.
    fn drop(&mut self) {
        let idle = self.pool.drain();
        crate::storage::where_it_may_block(move || drop(idle));
    }
}

/// Readers: a pool of connections for statements that only read.
pub(super) struct Readers {
    config: postgres::Config,
    pool: Pool<Conn>,
}

impl Readers {
    pub fn new(config: postgres::Config) -> Readers {
        Readers {
            config,
            pool: Pool::new(READERS),
        }
    }

    pub fn use_(&self) -> crate::storage::PoolUse {
        self.pool.use_()
    }

    /// Runs `f` on a connection of the pool (one lost with the database is opened again).
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, ServerError>,
    ) -> Result<T, ServerError> {
        self.pool
            .with(|| Conn::open(&self.config), |c| !c.client.is_closed(), f)
    }

    /// Runs `f`'s statements each on a snapshot of its own, with no transaction around them
    /// (two round trips fewer a read). For reads of one statement, or whose statements need
    /// not agree.
    pub fn read<T: Send>(
        &self,
        f: impl FnOnce(&mut PgTx) -> Result<T, ServerError> + Send,
    ) -> Result<T, ServerError> {
        crate::storage::where_it_may_block(|| {
            self.with(|Conn { client, cache }| f(&mut PgTx::plain(client, cache)))
        })
    }

    /// Runs `f` on one snapshot (repeatable read, read only): for a read whose statements must
    /// agree (a pull: compaction may commit between its statements).
    pub fn snapshot<T: Send>(
        &self,
        f: impl FnOnce(&mut PgTx) -> Result<T, ServerError> + Send,
    ) -> Result<T, ServerError> {
        crate::storage::where_it_may_block(|| {
            self.with(|Conn { client, cache }| {
                let mut tx = client
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()?;
                let value = f(&mut PgTx::new(&mut tx, cache));
                tx.commit()?;
                value
            })
        })
    }
}
