//! The connections: one writer on its own thread that commits many callers' writes in one
//! transaction (group commit: one sync to disk for all of them), and a pool of readers, each
//! read on its own snapshot of the WAL, so reads never wait for writes or for each other.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender};

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::storage::conns::{answer, caught, Pool, Queue};
use crate::ServerError;

/// Readers open at most: more would only share the same cores, and each opening costs a read
/// of the schema. A read waits for a free one.
const READERS: usize = 16;

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
        let result = caught("write", || f(tx));
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(&mut self, committed: Result<(), String>) {
        let _ = self.reply.send(answer(self.result.take(), committed));
    }
}

pub(super) struct Writer(Queue<dyn Job>);

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
                // At most every 50 ms, however often commits come: each checkpoint syncs the
                // database file, and the nudges meanwhile fold into one.
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(wake)
}

impl Writer {
    pub(super) fn start(mut conn: Connection, path: &Path) -> Result<Writer, String> {
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")
            .map_err(|e| e.to_string())?;
        // The operator's tools (device revoke) write to the same file now and then.
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        let nudge = checkpointer(path)?;
        let queue = Queue::start("curbside-writer", move |batch: &mut Vec<Box<dyn Job>>| {
            let committed = commit(&mut conn, batch).map_err(|e| e.to_string());
            if let Err(e) = &committed {
                tracing::error!(error = %e, writes = batch.len(), "group commit failed");
            }
            for job in batch.iter_mut() {
                job.finish(committed.clone());
            }
            let _ = nudge.try_send(());
        })
        .map_err(|e| e.to_string())?;
        Ok(Writer(queue))
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
        self.0.send(job, answer)
    }

    pub(super) fn commits(&self) -> &crate::storage::Commits {
        &self.0.commits
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
    pool: Pool<Connection>,
}

impl Readers {
    pub(super) fn new(path: &Path) -> Readers {
        Readers {
            path: path.to_path_buf(),
            pool: Pool::new(READERS),
        }
    }

    pub(super) fn use_(&self) -> crate::storage::PoolUse {
        self.pool.use_()
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
        self.pool
            .with(|| self.open(), |_| true, |conn| f(&conn.transaction()?))
    }
}
