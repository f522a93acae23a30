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
    /// The last request looked at; the next step starts after it.
    pub after: Option<RequestId>,
    pub deleted: usize,
    pub done: bool,
}

/// One step of compaction from `progress`: up to [`STEP`] requests in request id order. Drops
/// what [`merge::obsolete`] names among changes that arrived by `arrived_by` (an arrival
/// number) and records how far that reached, so older cursors resync in full.
pub fn step(tx: &mut dyn Tx, horizon: Hlc, arrived_by: u64, progress: &mut Progress) -> R<()> {
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
    Ok(())
}
