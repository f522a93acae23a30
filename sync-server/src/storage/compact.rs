//! Compaction, a bounded step at a time: what no replica needs once the retention has passed
//! ([`merge::obsolete`]) goes, among the changes that also arrived before the horizon, so no
//! device can expire the others' cursors with changes it back-dates. A step reads a bounded
//! run of requests, so the writer is never held for work proportional to the log.

use curbside_core::sync::{merge, Hlc};
use curbside_core::vocab::RequestId;

use super::tx::{Tx, R};

/// Requests one step of compaction reads.
pub const STEP: usize = 256;

/// Where a compaction has reached.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// The latest arrival number compaction may drop, found by the first step.
    pub arrived_by: Option<u64>,
    /// The last request looked at; the next step starts after it.
    pub after: Option<RequestId>,
    pub deleted: usize,
    pub done: bool,
}

/// A whole compaction: `write` runs [`step`] in a write transaction of its own until done.
/// Returns how many changes went.
pub fn run(mut write: impl FnMut(Progress) -> R<Progress>) -> R<usize> {
    let mut progress = Progress::default();
    while !progress.done {
        progress = write(progress)?;
    }
    Ok(progress.deleted)
}

/// One step of compaction from `progress`: up to [`STEP`] requests in request id order. Drops
/// what [`merge::obsolete`] names among changes that also arrived by `arrived_by_ms`, and
/// records how far that reached, so older cursors resync in full.
pub fn step(tx: &mut dyn Tx, horizon: Hlc, arrived_by_ms: i64, progress: &Progress) -> R<Progress> {
    let mut progress = progress.clone();
    let arrived_by = match progress.arrived_by {
        Some(seq) => seq,
        None => match tx.arrived_by(arrived_by_ms)? {
            Some(seq) => *progress.arrived_by.insert(seq),
            None => {
                progress.done = true; // nothing arrived that long ago
                return Ok(progress);
            }
        },
    };
    let requests = tx.requests_after(progress.after.as_ref(), STEP)?;
    progress.done = requests.len() < STEP;
    let (mut gone, mut reached) = (Vec::new(), 0u64);
    for id in &requests {
        let logged = tx.load_arrived(id)?;
        if !logged.iter().any(|(c, _)| c.hlc < horizon) {
            continue;
        }
        let changes: Vec<_> = logged.iter().map(|(c, _)| c.clone()).collect();
        for i in merge::obsolete(&changes, horizon) {
            let seq = logged[i].1;
            if seq <= arrived_by {
                gone.push(seq);
                reached = reached.max(seq);
            }
        }
    }
    progress.after = requests.last().copied().or(progress.after);
    if !gone.is_empty() {
        tx.forget(&gone)?;
        tx.note_compaction(reached)?;
        progress.deleted += gone.len();
    }
    Ok(progress)
}
