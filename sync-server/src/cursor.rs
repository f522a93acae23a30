//! Where a device's pull has reached: `server:seq:compactions`. It names the server that gave it
//! (another server's cursor means start over), the arrival number reached, and how many
//! compactions had run when it was given: a cursor older than a compaction's reach expires,
//! unless it was given after that compaction (a full resync still paging through).

use crate::ServerError;

/// What a server knows about its own log, to judge a cursor by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogState {
    pub server_id: String,
    /// The highest arrival number compaction has removed a change at.
    pub compacted_seq: u64,
    /// How many compactions removed something.
    pub compactions: u64,
}

impl LogState {
    /// The arrival number a pull starts after, or why the cursor cannot be used.
    pub fn position(&self, cursor: Option<&str>) -> Result<u64, ServerError> {
        let Some(c) = cursor.filter(|c| !c.is_empty()) else {
            return Ok(0);
        };
        let malformed = || ServerError::BadRequest(format!("cursor {c:?} is malformed"));
        let mut parts = c.split(':');
        let (id, seq, given_at) = (parts.next(), parts.next(), parts.next());
        if parts.next().is_some() {
            return Err(malformed());
        }
        let seq: u64 = match (id, seq) {
            (Some(id), Some(seq)) if id == self.server_id => {
                seq.parse().map_err(|_| malformed())?
            }
            (Some(_), Some(_)) => return Err(ServerError::CursorForeign),
            _ => return Err(malformed()),
        };
        // Cursors from before compactions were counted carry no count.
        let given_at: u64 = match given_at {
            Some(g) => g.parse().map_err(|_| malformed())?,
            None => 0,
        };
        if seq < self.compacted_seq && given_at < self.compactions {
            return Err(ServerError::CursorExpired);
        }
        Ok(seq)
    }

    pub fn cursor(&self, seq: u64) -> String {
        format!("{}:{seq}:{}", self.server_id, self.compactions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_expire_only_when_compaction_passed_them_before_they_were_given() {
        let log = LogState {
            server_id: "s".into(),
            compacted_seq: 50,
            compactions: 2,
        };
        assert_eq!(log.position(None).unwrap(), 0);
        assert_eq!(log.position(Some(&log.cursor(60))).unwrap(), 60);
        assert_eq!(
            log.position(Some("s:40:2")).unwrap(),
            40,
            "given after compaction"
        );
        assert!(matches!(
            log.position(Some("s:40:1")),
            Err(ServerError::CursorExpired)
        ));
        assert!(matches!(
            log.position(Some("s:40")),
            Err(ServerError::CursorExpired)
        ));
        assert!(matches!(
            log.position(Some("t:40:2")),
            Err(ServerError::CursorForeign)
        ));
        assert!(matches!(
            log.position(Some("nonsense")),
            Err(ServerError::BadRequest(_))
        ));
        assert!(matches!(
            log.position(Some("s:x:2")),
            Err(ServerError::BadRequest(_))
        ));
    }
}
