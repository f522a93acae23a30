//! The connections: one writer on its own thread that commits many callers' writes in one
//! transaction (group commit: one sync to disk for all of them), and a pool of readers, each
//! read on its own snapshot of the WAL, so reads never wait for writes or for each other.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Condvar, Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::ServerError;

/// Writes one commit takes at most: enough to share a sync to disk, few enough that the first
/// caller's answer is not held long.
const MAX_BATCH: usize = 128;
/// Readers open at most: more would only share the same cores, and each opening costs a read
/// of the schema. A read waits for a free one.
const READERS: usize = 16;
/// How long a read waits for a free reader before the caller is told to come back.
const READ_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A write waiting for the writer: run in its own savepoint (its failure undoes only itself),
/// answered once the batch it is in has committed.
trait Job: Send {
    fn run(&mut self, tx: &Transaction) -> bool;
    fn finish(&mut self, committed: Result<(), String>);
}

struct Pending<T, F> {
    f: Option<F>,
    result: Option<Result<T, ServerError>>,
    reply: SyncSender<Result<T, ServerError>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send,
    F: FnOnce(&Transaction) -> Result<T, ServerError> + Send,
{
    fn run(&mut self, tx: &Transaction) -> bool {
        let f = self.f.take().expect("run once");
        let result = catch_unwind(AssertUnwindSafe(|| f(tx)))
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

/// Copies the WAL back into the database on its own thread and connection after commits, so
/// no commit waits for a checkpoint (SQLite's automatic one runs in the committing writer).
/// Passive: it never blocks readers or the writer.
fn checkpointer(path: &Path) -> Result<SyncSender<()>, String> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| e.to_string())?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let (wake, woken) = mpsc::sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("curbside-checkpoint".into())
        .spawn(move || {
            while woken.recv().is_ok() {
                // A busy database only means the next commit's nudge tries again.
                let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(wake)
}

impl Writer {
    pub(super) fn start(conn: Connection, path: &Path) -> Result<Writer, String> {
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")
            .map_err(|e| e.to_string())?;
        // The operator's tools (device revoke) write to the same file now and then.
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        let nudge = checkpointer(path)?;
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
        let commits = std::sync::Arc::new(crate::storage::Commits::default());
        let tally = commits.clone();
        let thread = std::thread::Builder::new()
            .name("curbside-writer".into())
            .spawn(move || write_loop(conn, queue, nudge, &tally))
            .map_err(|e| e.to_string())?;
        Ok(Writer {
            jobs: Mutex::new(Some(jobs)),
            thread: Some(thread),
            commits,
        })
    }

    /// Runs `f` in the next group commit and returns its result once that has committed.
    pub(super) fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction) -> Result<T, ServerError> + Send + 'static,
    ) -> Result<T, ServerError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let job = Box::new(Pending {
            f: Some(f),
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
    mut conn: Connection,
    queue: Receiver<Box<dyn Job>>,
    nudge: SyncSender<()>,
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
        let committed = commit(&mut conn, &mut batch).map_err(|e| e.to_string());
        tally.add(batch.len());
        if let Err(e) = &committed {
            tracing::error!(error = %e, writes = batch.len(), "group commit failed");
        }
        for job in &mut batch {
            job.finish(committed.clone());
        }
        let _ = nudge.try_send(());
    }
}

fn commit(conn: &mut Connection, batch: &mut [Box<dyn Job>]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for job in batch.iter_mut() {
        tx.execute_batch("SAVEPOINT job")?;
        if job.run(&tx) {
            tx.execute_batch("RELEASE job")?;
        } else {
            tx.execute_batch("ROLLBACK TO job; RELEASE job")?;
        }
    }
    tx.commit()
}

pub(super) struct Readers {
    path: PathBuf,
    /// Idle connections, and how many are open in all.
    idle: Mutex<(Vec<Connection>, usize)>,
    freed: Condvar,
}

impl Readers {
    pub(super) fn new(path: &Path) -> Readers {
        Readers {
            path: path.to_path_buf(),
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

    fn pool(&self) -> MutexGuard<'_, (Vec<Connection>, usize)> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle reader, or a new one while fewer than [`READERS`] are open, or the next freed.
    fn take(&self) -> Result<Connection, ServerError> {
        let mut pool = self.pool();
        loop {
            if let Some(c) = pool.0.pop() {
                return Ok(c);
            }
            if pool.1 < READERS {
                pool.1 += 1;
                drop(pool);
                return self.open().inspect_err(|_| self.pool().1 -= 1);
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

    fn open(&self) -> Result<Connection, ServerError> {
        let c = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(std::time::Duration::from_secs(5))?;
        // Pulls read long runs of the log: a larger cache and the file mapped.
        c.execute_batch("PRAGMA cache_size = -16384; PRAGMA mmap_size = 268435456;")?;
        curbside_core::sql::keep_statements_prepared(&c)?;
        c.set_prepared_statement_cache_capacity(128);
        Ok(c)
    }

    /// Runs `f` on one snapshot of the database.
    pub(super) fn read<T>(
        &self,
        f: impl FnOnce(&Transaction) -> Result<T, ServerError>,
    ) -> Result<T, ServerError> {
        let mut conn = self.take()?;
        let value = catch_unwind(AssertUnwindSafe(|| match conn.transaction() {
            Ok(snapshot) => f(&snapshot),
            Err(e) => Err(e.into()),
        }))
        .unwrap_or_else(|_| Err(ServerError::Internal("a read panicked".into())));
        self.pool().0.push(conn);
        self.freed.notify_one();
        value
    }
}
