//! The bytes Atlas stores for one cached result outside its own memory (a Redis L2 value; the
//! same record is the unit of a warm-restart snapshot): an rkyv archive of the entry's key,
//! body and metadata, followed by a CRC-32 of the archive and the magic `ATL2`. The trailer
//! is checked, then the archive validated (bytecheck), before anything is read from it.
//!
//! A value written by another program, by a future format version, or truncated is refused
//! with [`RecordError`], never trusted; the key inside must equal the key that was asked for,
//! so a hash collision or a foreign writer cannot serve one user's result to another.
//! Pure functions; no I/O.

use bytes::Bytes;
use rkyv::rancor;
use rkyv::util::AlignedVec;

use atlas_shard::SnapshotEntry;

/// Format version; a record with another version is refused.
pub const VERSION: u32 = 1;
/// The last four bytes of every encoded record.
pub const MAGIC: &[u8; 4] = b"ATL2";
/// Largest record accepted (well above the L1's per-entry limit).
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// One result with its metadata, as archived.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Record {
    /// [`VERSION`].
    pub version: u32,
    /// Canonical cache key bytes.
    pub key: Vec<u8>,
    /// Response body.
    pub body: Vec<u8>,
    /// When the result was computed, milliseconds since the Unix epoch (ages survive across
    /// processes and machines; monotonic clocks do not).
    pub created_unix_ms: u64,
    /// Fresh lifetime, milliseconds.
    pub ttl_ms: u32,
    /// Stale-while-revalidate window, milliseconds.
    pub swr_ms: u32,
    /// Stale-if-error window, milliseconds.
    pub sie_ms: u32,
    /// Model confidence.
    pub confidence: f32,
    /// Volatility hint.
    pub volatility: f32,
    /// Accesses so far (snapshots keep it; L2 writes 0).
    pub hits: u32,
    /// Whether refresh-ahead applies.
    pub refresh_ahead: bool,
    /// Dependency tags.
    pub tags: Vec<String>,
    /// Event symbols.
    pub symbols: Vec<String>,
}

/// Why bytes are not a usable record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The trailer is missing or the checksum does not match (foreign, truncated, corrupt).
    #[error("checksum or magic mismatch")]
    Checksum,
    /// Not an archive of a record.
    #[error("not a valid record: {0}")]
    Invalid(String),
    /// Another format version.
    #[error("record format version {0}, this build reads {VERSION}")]
    Version(u32),
    /// Bigger than [`MAX_RECORD_BYTES`].
    #[error("record of {0} bytes is over the limit")]
    TooLarge(usize),
    /// The key inside is not the key asked for.
    #[error("the record holds another key")]
    WrongKey,
}

impl Record {
    /// The record of a cache entry as seen at `now_unix_ms`.
    pub fn from_entry(e: &SnapshotEntry, now_unix_ms: u64) -> Record {
        Record {
            version: VERSION,
            key: e.key.clone(),
            body: e.body.to_vec(),
            created_unix_ms: now_unix_ms.saturating_sub(e.age_ms),
            ttl_ms: e.ttl_ms,
            swr_ms: e.stale_while_revalidate_ms,
            sie_ms: e.stale_if_error_ms,
            confidence: e.confidence,
            volatility: e.volatility,
            hits: e.hits,
            refresh_ahead: e.refresh_ahead,
            tags: e.tags.clone(),
            symbols: e.symbols.clone(),
        }
    }

    /// The cache entry this record restores at `now_unix_ms` (its age counts the time it
    /// spent outside; a clock that went backwards counts as age 0).
    pub fn into_entry(self, now_unix_ms: u64) -> SnapshotEntry {
        SnapshotEntry {
            key: self.key,
            body: Bytes::from(self.body),
            age_ms: now_unix_ms.saturating_sub(self.created_unix_ms),
            ttl_ms: self.ttl_ms,
            stale_while_revalidate_ms: self.swr_ms,
            stale_if_error_ms: self.sie_ms,
            confidence: self.confidence,
            volatility: self.volatility,
            hits: self.hits,
            refresh_ahead: self.refresh_ahead,
            tags: self.tags,
            symbols: self.symbols,
        }
    }

    /// Milliseconds the record stays useful after `now_unix_ms` (fresh plus the longer stale
    /// window); 0 once past it. A record stamped in the future (another instance's clock
    /// ahead, or a crafted value) counts as created now: it never lives past its retention.
    pub fn remaining_ms(&self, now_unix_ms: u64) -> u64 {
        let retention = u64::from(self.ttl_ms) + u64::from(self.swr_ms.max(self.sie_ms));
        let age = now_unix_ms.saturating_sub(self.created_unix_ms);
        retention.saturating_sub(age)
    }

    /// The encoded bytes: archive, CRC-32 (little endian), magic.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        let archive = rkyv::to_bytes::<rancor::Error>(self)
            .map_err(|e| RecordError::Invalid(e.to_string()))?;
        Ok(seal(&archive, MAGIC))
    }

    /// Validates `bytes` and reads the record; with `expect_key`, refuses any other key.
    pub fn decode(bytes: &[u8], expect_key: Option<&[u8]>) -> Result<Record, RecordError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge(bytes.len()));
        }
        let aligned = unseal(bytes, MAGIC)?;
        let archived = rkyv::access::<ArchivedRecord, rancor::Error>(&aligned)
            .map_err(|e| RecordError::Invalid(e.to_string()))?;
        let version = archived.version.to_native();
        if version != VERSION {
            return Err(RecordError::Version(version));
        }
        if expect_key.is_some_and(|k| archived.key.as_slice() != k) {
            return Err(RecordError::WrongKey);
        }
        rkyv::deserialize::<Record, rancor::Error>(archived)
            .map_err(|e| RecordError::Invalid(e.to_string()))
    }
}

/// `archive` followed by its CRC-32 (little endian) and `magic`.
pub fn seal(archive: &[u8], magic: &[u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(archive.len() + 8);
    out.extend_from_slice(archive);
    out.extend_from_slice(&crc32fast::hash(archive).to_le_bytes());
    out.extend_from_slice(magic);
    out
}

/// Checks the trailer [`seal`] wrote and returns the archive, copied once into an aligned
/// buffer (rkyv reads archives in place and needs them aligned; bytes from a socket or a
/// file are not).
pub fn unseal(bytes: &[u8], magic: &[u8; 4]) -> Result<AlignedVec<16>, RecordError> {
    let Some((archive, trailer)) = bytes.split_at_checked(bytes.len().saturating_sub(8)) else {
        return Err(RecordError::Checksum);
    };
    let (crc, found) = trailer.split_at(4.min(trailer.len()));
    if trailer.len() != 8
        || found != magic
        || crc != crc32fast::hash(archive).to_le_bytes().as_slice()
    {
        return Err(RecordError::Checksum);
    }
    let mut aligned = AlignedVec::<16>::with_capacity(archive.len());
    aligned.extend_from_slice(archive);
    Ok(aligned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Record {
        Record {
            version: VERSION,
            key: b"risk_assessment\x00u-1\x00{}".to_vec(),
            body: br#"{"score":3}"#.to_vec(),
            created_unix_ms: 1_000_000,
            ttl_ms: 60_000,
            swr_ms: 5_000,
            sie_ms: 30_000,
            confidence: 0.9,
            volatility: 0.1,
            hits: 0,
            refresh_ahead: true,
            tags: vec!["market:rates".into()],
            symbols: vec!["AAPL".into()],
        }
    }

    #[test]
    fn round_trips_and_checks_the_key() {
        let r = sample();
        let bytes = r.encode().unwrap();
        assert_eq!(Record::decode(&bytes, Some(&r.key)).unwrap(), r);
        assert_eq!(
            Record::decode(&bytes, Some(b"other")),
            Err(RecordError::WrongKey)
        );
        let v2 = Record {
            version: 2,
            ..sample()
        };
        assert_eq!(
            Record::decode(&v2.encode().unwrap(), None),
            Err(RecordError::Version(2))
        );
    }

    #[test]
    fn ages_and_remaining_time_follow_the_wall_clock() {
        let r = sample();
        assert_eq!(r.remaining_ms(1_000_000), 90_000);
        assert_eq!(r.remaining_ms(1_095_000), 0);
        let e = r.clone().into_entry(1_010_000);
        assert_eq!(e.age_ms, 10_000);
        assert_eq!(Record::from_entry(&e, 1_010_000), r);
        assert_eq!(sample().into_entry(0).age_ms, 0, "a clock behind is age 0");
    }

    #[test]
    fn foreign_and_truncated_bytes_are_refused() {
        let bytes = sample().encode().unwrap();
        for cut in [0, 1, 7, bytes.len() / 2, bytes.len() - 1] {
            assert!(Record::decode(&bytes[..cut], None).is_err(), "cut at {cut}");
        }
        assert!(Record::decode(b"{\"json\":true}", None).is_err());
    }

    /// Regression: `created_unix_ms + retention` overflowed for a record stamped near
    /// `u64::MAX` (a panic in debug builds, a wrapped "expired" in release), and a record from
    /// the future lived longer than its retention.
    #[test]
    fn remaining_time_is_defined_for_any_stamp() {
        let far = Record {
            created_unix_ms: u64::MAX,
            ..sample()
        };
        assert_eq!(
            far.remaining_ms(1_000),
            90_000,
            "from the future: its retention"
        );
        assert_eq!(far.remaining_ms(u64::MAX), 90_000);
        assert_eq!(sample().remaining_ms(u64::MAX), 0);
        assert_eq!(sample().remaining_ms(0), 90_000);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Record::decode(&bytes, None);
        }

        #[test]
        fn any_flipped_bit_is_refused(i in 0usize..400, bit in 0u8..8) {
            let r = sample();
            let mut bytes = r.encode().unwrap();
            let i = i % bytes.len();
            bytes[i] ^= 1 << bit;
            prop_assert!(Record::decode(&bytes, Some(&r.key)).is_err());
        }
    }
}
