//! The connections to PostgreSQL: one writer per instance on its own thread that commits many
//! callers' writes in one transaction (one flush of the WAL for all of them), and a pool of
//! readers. Instances on one database take turns at the log through a
//! row lock each write transaction takes first, so arrival numbers commit in their order: a
//! cursor never passes a number that is still to become visible.
//!
//! A write runs without a savepoint of its own (each would cost a round trip). One that fails
//! after writing, or whose statement failed (PostgreSQL then refuses the rest of the
//! transaction), rolls the batch back, and the batch runs again one write per transaction.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use postgres::{Client, IsolationLevel, NoTls};

use super::tx::{Cache, PgTx};
use crate::ServerError;

/// Writes one commit takes at most: enough to share a flush, few enough that the first
/// caller's answer is not held long.
const MAX_BATCH: usize = 128;
/// Readers open at most, per instance: each is a process on the database's machine.
const READERS: usize = 8;
/// How long a read waits for a free reader before the caller is told to come back.
const READ_WAIT: Duration = Duration::from_secs(10);

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
        let result = catch_unwind(AssertUnwindSafe(|| (self.f)(tx)))
            .unwrap_or_else(|_| Err(ServerError::Internal("a write panicked".into())));
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(&mut self, committed: Result<(), String>) {
        let result = match (self.result.take(), committed) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (_, Err(e)) => Err(ServerError::Internal(format!("database commit: {e}"))),
            (None, Ok(())) => Err(ServerError::Internal("a write was not run".into())),
        };
        let _ = self.reply.send(result);
    }
}

pub(super) struct Writer {
    jobs: Mutex<Option<Sender<Box<dyn Job>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub commits: std::sync::Arc<crate::storage::Commits>,
}

impl Writer {
    /// Starts the writer on `conn` (opened again from `config` if it is lost).
    pub fn start(conn: Conn, config: postgres::Config) -> Writer {
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
        let commits = std::sync::Arc::new(crate::storage::Commits::default());
        let tally = commits.clone();
        let thread = std::thread::Builder::new()
            .name("curbside-pg-writer".into())
            .spawn(move || write_loop(conn, config, queue, &tally))
            .ok();
        Writer {
            jobs: Mutex::new(thread.is_some().then_some(jobs)),
            thread,
            commits,
        }
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
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|jobs| jobs.send(job).is_ok());
        if sent != Some(true) {
            return Err(ServerError::Internal("the writer has stopped".into()));
        }
        answer
            .recv()
            .unwrap_or_else(|_| Err(ServerError::Internal("the writer has stopped".into())))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_loop(
    mut conn: Conn,
    config: postgres::Config,
    queue: Receiver<Box<dyn Job>>,
    tally: &crate::storage::Commits,
) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // A connection lost (the database restarted) is opened again for the next batch.
        if conn.client.is_closed() {
            match Conn::open(&config) {
                Ok(c) => conn = c,
                Err(e) => {
                    tracing::error!(error = %e, "database writer cannot reconnect");
                    for job in &mut batch {
                        job.finish(Err("the database is unreachable".into()));
                    }
                    continue;
                }
            }
        }
        tally.add(batch.len());
        match together(&mut conn, &mut batch) {
            Ok(Some(committed)) => {
                if let Err(e) = &committed {
                    tracing::error!(error = %e, writes = batch.len(), "group commit failed");
                }
                for job in &mut batch {
                    job.finish(committed.clone());
                }
            }
            // One of them failed after writing: each alone, so only it fails.
            Ok(None) | Err(_) => {
                for job in &mut batch {
                    let committed = alone(&mut conn, job.as_mut());
                    job.finish(committed);
                }
            }
        }
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
        let idle = std::mem::take(&mut self.pool().0);
        crate::storage::where_it_may_block(move || drop(idle));
    }
}

/// Readers: a pool of connections for statements that only read.
pub(super) struct Readers {
    config: postgres::Config,
    /// Idle connections, and how many are open in all.
    idle: Mutex<(Vec<Conn>, usize)>,
    freed: Condvar,
}

impl Readers {
    pub fn new(config: postgres::Config) -> Readers {
        Readers {
            config,
            idle: Mutex::new((Vec::new(), 0)),
            freed: Condvar::new(),
        }
    }

    /// Readers open, busy, and the most there may be.
    pub fn use_(&self) -> crate::storage::PoolUse {
        let pool = self.pool();
        crate::storage::PoolUse {
            readers_open: pool.1 as u64,
            readers_busy: pool.1.saturating_sub(pool.0.len()) as u64,
            readers_max: READERS as u64,
            ..Default::default()
        }
    }

    fn pool(&self) -> MutexGuard<'_, (Vec<Conn>, usize)> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle reader, or a new one while fewer than [`READERS`] are open, or the next freed.
    fn take(&self) -> Result<Conn, ServerError> {
        let mut pool = self.pool();
        loop {
            while let Some(conn) = pool.0.pop() {
                if !conn.client.is_closed() {
                    return Ok(conn);
                }
                pool.1 -= 1; // lost with the database: forget it
            }
            if pool.1 < READERS {
                pool.1 += 1;
                drop(pool);
                return Conn::open(&self.config).inspect_err(|_| self.pool().1 -= 1);
            }
            let (next, waited) = self
                .freed
                .wait_timeout(pool, READ_WAIT)
                .unwrap_or_else(|p| p.into_inner());
            pool = next;
            if waited.timed_out() && pool.0.is_empty() && pool.1 >= READERS {
                return Err(ServerError::TooMany {
                    retry_after_s: 1,
                    message: "the server is busy: try again shortly".into(),
                });
            }
        }
    }

    /// Runs `f` on one snapshot.
    pub fn read<T: Send>(
        &self,
        f: impl FnOnce(&mut PgTx) -> Result<T, ServerError> + Send,
    ) -> Result<T, ServerError> {
        crate::storage::where_it_may_block(|| self.read_here(f))
    }

    /// Runs `f` on one snapshot (repeatable read, read only): for a read whose statements must
    /// agree (a pull: compaction may commit between its statements).
    pub fn snapshot<T: Send>(
        &self,
        f: impl FnOnce(&mut PgTx) -> Result<T, ServerError> + Send,
    ) -> Result<T, ServerError> {
        crate::storage::where_it_may_block(|| {
            let mut conn = self.take()?;
            let value = catch_unwind(AssertUnwindSafe(|| {
                let Conn { client, cache } = &mut conn;
                let mut tx = client
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()?;
                let value = f(&mut PgTx::new(&mut tx, cache));
                tx.commit()?;
                value
            }))
            .unwrap_or_else(|_| Err(ServerError::Internal("a read panicked".into())));
            self.pool().0.push(conn);
            self.freed.notify_one();
            value
        })
    }

    fn read_here<T>(
        &self,
        f: impl FnOnce(&mut PgTx) -> Result<T, ServerError>,
    ) -> Result<T, ServerError> {
        let mut conn = self.take()?;
        // Each statement its own snapshot, with no transaction around them (two round trips
        // fewer a read): a pull reads the log's end before its feed, and arrival numbers
        // become visible in their order, so a later snapshot only ever sees more.
        let value = catch_unwind(AssertUnwindSafe(|| {
            let Conn { client, cache } = &mut conn;
            f(&mut PgTx::plain(client, cache))
        }))
        .unwrap_or_else(|_| Err(ServerError::Internal("a read panicked".into())));
        self.pool().0.push(conn);
        self.freed.notify_one();
        value
    }
}
