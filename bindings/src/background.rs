//! Blocking work (network, SQLite, pixels) as a future the foreign side awaits: Kotlin gets a
//! `suspend fun`, Swift an `async` method, Python a coroutine. The work runs on a thread of its
//! own, so it is never on the caller's UI thread, and no async runtime is linked into the
//! library (the core is synchronous by design).

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::ApiError;

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

struct Done<T>(Arc<Mutex<Slot<T>>>);

impl<T> Future for Done<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match slot.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Runs `work` on a new thread named `name`; the future completes with its result. A panic in
/// the work is an [`ApiError::Internal`], never an unwind into the host app.
pub(crate) fn run<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> impl Future<Output = Result<T, ApiError>> + Send {
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
    }));
    let theirs = slot.clone();
    let finish = move |value: Result<T, ApiError>| {
        let waker = {
            let mut s = theirs.lock().unwrap_or_else(|p| p.into_inner());
            s.value = Some(value);
            s.waker.take()
        };
        // Woken outside the lock: the foreign side may poll again on this very thread.
        if let Some(w) = waker {
            w.wake();
        }
    };
    let spawned = std::thread::Builder::new()
        .name(format!("curbside-{name}"))
        .spawn({
            let finish = finish.clone();
            move || {
                let value = catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|_| {
                    Err(ApiError::Internal {
                        reason: "the work stopped on an internal error".into(),
                    })
                });
                finish(value);
            }
        });
    if let Err(e) = spawned {
        finish(Err(ApiError::Internal {
            reason: format!("no thread for the work: {e}"),
        }));
    }
    Done(slot)
}
