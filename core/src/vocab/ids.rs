//! Ids: of requests (UUIDs, v7 when made here, so their order is their creation order), of
//! replicas (each store and server that writes changes), and of changes (`replica:counter`).
//! Randomness comes from an [`Entropy`] the store is given, so a simulation replays exactly.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use super::limits::MAX_REPLICA_CHARS;

/// A source of random bits for new ids.
pub trait Entropy: Send + Sync + fmt::Debug {
    fn next_u64(&self) -> u64;
}

/// Randomness seeded from the operating system once per thread (wyrand, by fastrand): ids need
/// to be unique, not secret, and a system call per id would cost more than the id's write.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn next_u64(&self) -> u64 {
        fastrand::u64(..)
    }
}

/// Deterministic bits from a seed (splitmix64): the same seed gives the same ids.
#[derive(Debug, Default)]
pub struct SeededEntropy(AtomicU64);

impl SeededEntropy {
    pub fn new(seed: u64) -> SeededEntropy {
        SeededEntropy(AtomicU64::new(seed))
    }
}

impl Entropy for SeededEntropy {
    fn next_u64(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A UUIDv7: the time in its first 48 bits, random bits after.
pub fn uuid_v7(now_ms: i64, entropy: &dyn Entropy) -> Uuid {
    let (a, b) = (entropy.next_u64(), entropy.next_u64());
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&a.to_le_bytes());
    random[8..].copy_from_slice(&b.to_le_bytes()[..2]);
    uuid::Builder::from_unix_timestamp_millis(now_ms.max(0) as u64, &random).into_uuid()
}

/// New UUIDv7s from an [`Entropy`], strictly increasing even within one millisecond, so that
/// ordering requests by id is ordering them by creation.
#[derive(Debug)]
pub struct IdSource {
    entropy: Arc<dyn Entropy>,
    last: Mutex<u128>,
}

impl IdSource {
    pub fn new(entropy: Arc<dyn Entropy>) -> IdSource {
        IdSource {
            entropy,
            last: Mutex::new(0),
        }
    }

    pub fn entropy(&self) -> &dyn Entropy {
        &*self.entropy
    }

    /// A UUIDv7 later than every one this source gave before.
    pub fn uuid(&self, now_ms: i64) -> Uuid {
        let fresh = uuid_v7(now_ms, &*self.entropy).as_u128();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        // Same millisecond (or a clock that went back): one more than the last, in the random
        // bits, which keeps the version and variant.
        let next = if fresh > *last { fresh } else { *last + 1 };
        *last = next;
        Uuid::from_u128(next)
    }

    pub fn request_id(&self, now_ms: i64) -> RequestId {
        RequestId(self.uuid(now_ms))
    }
}

/// What is not an id, quoted back (shortened) so a person can see why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a request id (expected a UUID)")]
pub struct BadId(pub String);

/// A request's id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(Uuid);

impl RequestId {
    /// A new id, ordered by creation time.
    pub fn new(now_ms: i64, entropy: &dyn Entropy) -> RequestId {
        RequestId(uuid_v7(now_ms, entropy))
    }

    pub fn parse(s: &str) -> Result<RequestId, BadId> {
        Uuid::parse_str(s.trim())
            .map(RequestId)
            .map_err(|_| BadId(s.chars().take(64).collect()))
    }

    pub fn from_uuid(u: Uuid) -> RequestId {
        RequestId(u)
    }

    pub fn uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = Uuid::encode_buffer();
        f.pad(self.0.hyphenated().encode_lower(&mut buf))
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for RequestId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        RequestId::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl rusqlite::ToSql for RequestId {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::from(self.to_string()))
    }
}

impl rusqlite::types::FromSql for RequestId {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        RequestId::parse(v.as_str()?).map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
    }
}

/// The id of a replica: a store on a device, or a server. 1 to 64 characters. Shared, not
/// copied: every change id holds its replica's.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaId(Arc<str>);

impl ReplicaId {
    /// A new replica id: 64 random bits, enough to never meet another replica.
    pub fn random(entropy: &dyn Entropy) -> ReplicaId {
        ReplicaId(format!("{:016x}", entropy.next_u64()).into())
    }

    /// 1 to 64 characters, none of them a control character (a database may refuse NUL).
    pub fn parse(s: &str) -> Option<ReplicaId> {
        (!s.is_empty() && s.len() <= MAX_REPLICA_CHARS && !s.chars().any(char::is_control))
            .then(|| ReplicaId(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl fmt::Debug for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ReplicaId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ReplicaId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ReplicaId::parse(&s)
            .ok_or_else(|| serde::de::Error::custom("a replica id has 1 to 64 characters"))
    }
}

/// A change's id, unique everywhere: the replica that made it and its counter there.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangeId {
    pub replica: ReplicaId,
    pub counter: u64,
}

impl ChangeId {
    /// Reads `replica:counter`, given the replica it must belong to.
    pub fn parse(id: &str, replica: &ReplicaId) -> Option<ChangeId> {
        let counter = id
            .strip_prefix(replica.as_str())?
            .strip_prefix(':')?
            .parse()
            .ok()?;
        Some(ChangeId {
            replica: replica.clone(),
            counter,
        })
    }
}

impl fmt::Display for ChangeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.replica, self.counter)
    }
}

impl fmt::Debug for ChangeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for ChangeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_ids_replay_and_order_by_time() {
        let (a, b) = (SeededEntropy::new(7), SeededEntropy::new(7));
        let x = RequestId::new(1_800_000_000_000, &a);
        assert_eq!(x, RequestId::new(1_800_000_000_000, &b));
        assert_eq!(x.uuid().get_version_num(), 7);
        assert!(RequestId::new(1_800_000_000_001, &a) > x);
        assert_eq!(RequestId::parse(&x.to_string()).unwrap(), x);
        assert!(RequestId::parse("nope").is_err());
        let ids = IdSource::new(Arc::new(SeededEntropy::new(1)));
        let made: Vec<RequestId> = (0..100).map(|_| ids.request_id(5)).collect();
        assert!(
            made.windows(2).all(|w| w[0] < w[1]),
            "increasing within one millisecond"
        );
        assert!(made.iter().all(|id| id.uuid().get_version_num() == 7));
    }

    #[test]
    fn a_change_id_belongs_to_its_replica() {
        let r = ReplicaId::parse("ab:c").unwrap();
        let id = ChangeId::parse("ab:c:42", &r).unwrap();
        assert_eq!((id.counter, id.to_string().as_str()), (42, "ab:c:42"));
        assert!(ChangeId::parse("other:42", &r).is_none());
        assert!(ReplicaId::parse("").is_none());
        assert!(ReplicaId::parse(&"x".repeat(65)).is_none());
    }
}
