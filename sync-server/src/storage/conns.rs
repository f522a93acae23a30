//! What both engines' connections share: a writer thread fed through a queue, which takes the
//! writes waiting as one batch (group commit), each write answered on its own channel once its
//! batch has committed; and a bounded pool of reader connections.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::{Commits, PoolUse};
use crate::ServerError;

/// Writes one commit takes at most: enough to share a sync to disk, few enough that the first
/// caller's answer is not held long.
const MAX_BATCH: usize = 128;
/// How long a read waits for a free reader before the caller is told to come back.
const READ_WAIT: Duration = Duration::from_secs(10);

/// Runs `f`, a panic becoming an internal error (a write or read must not take its thread).
pub(super) fn caught<T>(
    what: &str,
    f: impl FnOnce() -> Result<T, ServerError>,
) -> Result<T, ServerError> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(ServerError::Internal(format!("a {what} panicked"))))
}

/// A write's answer: its own result if it failed, else the commit's.
pub(super) fn answer<T>(
    result: Option<Result<T, ServerError>>,
    committed: Result<(), String>,
) -> Result<T, ServerError> {
    match (result, committed) {
        (Some(Err(e)), _) => Err(e),
        (Some(Ok(v)), Ok(())) => Ok(v),
        (_, Err(e)) => Err(ServerError::Internal(format!("database commit: {e}"))),
        (None, Ok(())) => Err(ServerError::Internal("a write was not run".into())),
    }
}

/// The writer's thread and the queue to it.
pub(super) struct Queue<J: ?Sized> {
    jobs: Mutex<Option<Sender<Box<J>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub commits: Arc<Commits>,
}

impl<J: ?Sized + Send + 'static> Queue<J> {
    /// Starts thread `name`, which hands each batch of waiting writes to `commit` until the
    /// queue is dropped.
    pub fn start(
        name: &str,
        mut commit: impl FnMut(&mut Vec<Box<J>>) + Send + 'static,
    ) -> std::io::Result<Queue<J>> {
        let (jobs, queue) = mpsc::channel::<Box<J>>();
        let commits = Arc::new(Commits::default());
        let tally = commits.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match queue.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    tally.add(batch.len());
                    commit(&mut batch);
                }
            })?;
        Ok(Queue {
            jobs: Mutex::new(Some(jobs)),
            thread: Some(thread),
            commits,
        })
    }

    /// Queues `job` and waits for its answer on `answer`.
    pub fn send<T>(
        &self,
        job: Box<J>,
        answer: Receiver<Result<T, ServerError>>,
    ) -> Result<T, ServerError> {
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

impl<J: ?Sized> Drop for Queue<J> {
    fn drop(&mut self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reader connections: idle ones, and how many are open in all, at most `max`. A read waits
/// for a free one.
pub(super) struct Pool<C> {
    idle: Mutex<(Vec<C>, usize)>,
    freed: Condvar,
    max: usize,
}

impl<C> Pool<C> {
    pub fn new(max: usize) -> Pool<C> {
        Pool {
            idle: Mutex::new((Vec::new(), 0)),
            freed: Condvar::new(),
            max,
        }
    }

    fn pool(&self) -> MutexGuard<'_, (Vec<C>, usize)> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Readers open, busy, and the most there may be.
    pub fn use_(&self) -> PoolUse {
        let pool = self.pool();
        PoolUse {
            readers_open: pool.1 as u64,
            readers_busy: pool.1.saturating_sub(pool.0.len()) as u64,
            readers_max: self.max as u64,
            ..Default::default()
        }
    }

    /// The idle connections, taken out (to close them somewhere safe).
    pub fn drain(&self) -> Vec<C> {
        std::mem::take(&mut self.pool().0)
    }

    /// An idle connection that is `alive` (the others are forgotten), or a new one from
    /// `open` while fewer than the most are open, or the next one freed.
    fn take(
        &self,
        open: impl FnOnce() -> Result<C, ServerError>,
        alive: impl Fn(&C) -> bool,
    ) -> Result<C, ServerError> {
        let mut pool = self.pool();
        loop {
            while let Some(c) = pool.0.pop() {
                if alive(&c) {
                    return Ok(c);
                }
                pool.1 -= 1;
            }
            if pool.1 < self.max {
                pool.1 += 1;
                drop(pool);
                return open().inspect_err(|_| self.pool().1 -= 1);
            }
            let (next, waited) = self
                .freed
                .wait_timeout(pool, READ_WAIT)
                .unwrap_or_else(|p| p.into_inner());
            pool = next;
            if waited.timed_out() && pool.0.is_empty() && pool.1 >= self.max {
                return Err(ServerError::TooMany {
                    retry_after_s: 1,
                    message: "the server is busy: try again shortly".into(),
                });
            }
        }
    }

    /// Runs `f` on a connection (taken as [`Pool::take`] does), given back afterwards.
    pub fn with<T>(
        &self,
        open: impl FnOnce() -> Result<C, ServerError>,
        alive: impl Fn(&C) -> bool,
        f: impl FnOnce(&mut C) -> Result<T, ServerError>,
    ) -> Result<T, ServerError> {
        let mut conn = self.take(open, alive)?;
        let value = caught("read", || f(&mut conn));
        self.pool().0.push(conn);
        self.freed.notify_one();
        value
    }
}
