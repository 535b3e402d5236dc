//! Warm restart: on shutdown each shard writes its live L1 entries to
//! `ATLAS_STATE_DIR/shard-N.snap`; on start the main thread reads every snapshot there, hands
//! each entry to the shard that owns its key under the *current* shard count, and removes the
//! files it read.
//!
//! Format: one rkyv archive (`SnapshotFile`: version, shard, creation time, the entries as
//! [`Record`]s) followed by a CRC-32 and the magic `ATSN` (the trailer of
//! [`crate::l2::record`]). Reading checks the trailer, validates the archive in place
//! (bytecheck) and copies each entry's bytes once, into the cache; nothing is deserialised
//! into an intermediate copy. A file that fails any check is logged and ignored whole: the
//! shard starts cold rather than half-warm from a damaged file.
//!
//! Durability: written to `shard-N.snap.tmp`, fsynced, renamed over `shard-N.snap`, and the
//! directory fsynced, so a crash (even SIGKILL mid-write) leaves either the previous
//! complete file or none; `*.tmp` files are never read. Files are removed once loaded, so
//! a crash after a start never brings back entries older than the last clean shutdown.
//!
//! Entries come back with the age they had plus the downtime (wall-clock), so expired ones
//! are dropped. Invalidations published while the instance was down are not seen: a restored
//! entry lives at most its remaining TTL.
//!
//! Blocking file I/O: the main thread at start (before the shards run), the executors'
//! blocking threads at shutdown; never a shard thread.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use rkyv::rancor;

use atlas_shard::{CacheKey, SnapshotEntry};

use crate::l2::record::{self, ArchivedRecord, Record, RecordError};

/// Snapshot format version.
pub const VERSION: u32 = 1;
/// The last four bytes of a snapshot file.
pub const MAGIC: &[u8; 4] = b"ATSN";

/// A shard's entries as archived.
#[derive(Debug, rkyv::Archive, rkyv::Serialize)]
pub struct SnapshotFile {
    /// [`VERSION`].
    pub version: u32,
    /// The shard that wrote it.
    pub shard: u32,
    /// When, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// The entries.
    pub records: Vec<Record>,
}

/// `dir/shard-N.snap`.
pub fn path(dir: &Path, shard: usize) -> PathBuf {
    dir.join(format!("shard-{shard}.snap"))
}

/// The file bytes of `entries` taken at `now_unix_ms`.
pub fn encode(shard: usize, entries: &[SnapshotEntry], now_unix_ms: u64) -> io::Result<Vec<u8>> {
    let file = SnapshotFile {
        version: VERSION,
        shard: u32::try_from(shard).unwrap_or(u32::MAX),
        created_unix_ms: now_unix_ms,
        records: entries
            .iter()
            .map(|e| Record::from_entry(e, now_unix_ms))
            .collect(),
    };
    let archive = rkyv::to_bytes::<rancor::Error>(&file).map_err(io::Error::other)?;
    Ok(record::seal(&archive, MAGIC))
}

/// Validates a snapshot's bytes and appends its entries (aged to `now_unix_ms`) to `out`.
/// Nothing is appended unless the whole file is valid.
pub fn decode_into(
    bytes: &[u8],
    now_unix_ms: u64,
    out: &mut Vec<SnapshotEntry>,
) -> Result<usize, RecordError> {
    let aligned = record::unseal(bytes, MAGIC)?;
    let file = rkyv::access::<ArchivedSnapshotFile, rancor::Error>(&aligned)
        .map_err(|e| RecordError::Invalid(e.to_string()))?;
    let version = file.version.to_native();
    if version != VERSION {
        return Err(RecordError::Version(version));
    }
    if file
        .records
        .iter()
        .any(|r| r.version.to_native() != record::VERSION)
    {
        return Err(RecordError::Invalid("an entry of another version".into()));
    }
    out.reserve(file.records.len());
    out.extend(file.records.iter().map(|r| entry(r, now_unix_ms)));
    Ok(file.records.len())
}

/// A cache entry from an archived record (its bytes copied once).
fn entry(r: &ArchivedRecord, now_unix_ms: u64) -> SnapshotEntry {
    SnapshotEntry {
        key: r.key.as_slice().to_vec(),
        body: Bytes::copy_from_slice(r.body.as_slice()),
        age_ms: now_unix_ms.saturating_sub(r.created_unix_ms.to_native()),
        ttl_ms: r.ttl_ms.to_native(),
        stale_while_revalidate_ms: r.swr_ms.to_native(),
        stale_if_error_ms: r.sie_ms.to_native(),
        confidence: r.confidence.to_native(),
        volatility: r.volatility.to_native(),
        hits: r.hits.to_native(),
        refresh_ahead: r.refresh_ahead,
        tags: r.tags.iter().map(|t| t.as_str().to_string()).collect(),
        symbols: r.symbols.iter().map(|t| t.as_str().to_string()).collect(),
    }
}

/// Writes shard `shard`'s snapshot durably (temporary file, fsync, rename, directory fsync).
/// Returns the bytes written. On failure the temporary file is removed.
pub fn write(
    dir: &Path,
    shard: usize,
    entries: &[SnapshotEntry],
    now_unix_ms: u64,
) -> io::Result<u64> {
    let bytes = encode(shard, entries, now_unix_ms)?;
    let target = path(dir, shard);
    let tmp = target.with_extension("snap.tmp");
    let written = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        // A full disk: give back what the partial file took (it is never read anyway).
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, &target)?;
    fs::File::open(dir)?.sync_all()?;
    Ok(bytes.len() as u64)
}

/// Reads every `shard-*.snap` in `dir`, returns their valid entries grouped by the shard
/// that owns each key among `shards`, and removes the files read (valid or not: a damaged
/// file is renamed `*.corrupt` for inspection). A valid file that cannot be removed is not
/// used. Problems are logged; the result may be empty.
pub fn load_all(dir: &Path, shards: usize, now_unix_ms: u64) -> Vec<Vec<SnapshotEntry>> {
    load_all_with(dir, shards, now_unix_ms, |p| fs::remove_file(p))
}

/// [`load_all`] with the removal of a loaded file through `remove` (tests make it fail).
fn load_all_with(
    dir: &Path,
    shards: usize,
    now_unix_ms: u64,
    remove: impl Fn(&Path) -> io::Result<()>,
) -> Vec<Vec<SnapshotEntry>> {
    let mut by_shard: Vec<Vec<SnapshotEntry>> = (0..shards.max(1)).map(|_| Vec::new()).collect();
    let files = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("shard-") && n.ends_with(".snap"))
            })
            .collect::<Vec<_>>(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return by_shard,
        Err(e) => {
            log::warn!(
                "snapshot: cannot read {}: {e}; starting cold",
                dir.display()
            );
            return by_shard;
        }
    };
    let mut entries = Vec::new();
    for file in files {
        let bytes = match fs::read(&file) {
            Ok(b) => b,
            Err(e) => {
                log::warn!("snapshot: ignoring {}: {e}", file.display());
                continue;
            }
        };
        // A file is used only once it is gone from the directory: one that cannot be removed
        // (a read-only directory) would be loaded again at every start, bringing back entries
        // older than the last clean shutdown, even ones invalidated since.
        let mut trial = Vec::new();
        match decode_into(&bytes, now_unix_ms, &mut trial) {
            Ok(n) => match remove(&file) {
                Ok(()) => {
                    log::info!("snapshot: read {n} entries from {}", file.display());
                    entries.append(&mut trial);
                }
                Err(e) => log::warn!(
                    "snapshot: not using {} ({n} entries): it cannot be removed ({e}), so a \
                     later start would load it again; starting cold",
                    file.display()
                ),
            },
            Err(e) => {
                log::warn!("snapshot: ignoring {}: {e}", file.display());
                let _ = fs::rename(&file, file.with_extension("snap.corrupt"));
            }
        }
    }
    for e in entries {
        if let Ok(key) = CacheKey::from_bytes(e.key.clone()) {
            if let Some(list) = by_shard.get_mut(key.shard(shards.max(1))) {
                list.push(e);
            }
        }
    }
    by_shard
}

#[cfg(test)]
mod tests {
    use super::*;
    use atlas_shard::Operation;

    fn entry(user: &str, age_ms: u64) -> SnapshotEntry {
        let key = CacheKey::new(Operation::RiskAssessment, Some(user), b"{}").unwrap();
        SnapshotEntry {
            key: key.bytes().to_vec(),
            body: Bytes::from_static(b"{\"score\":1}"),
            age_ms,
            ttl_ms: 60_000,
            stale_while_revalidate_ms: 0,
            stale_if_error_ms: 0,
            confidence: 0.5,
            volatility: 0.25,
            hits: 3,
            refresh_ahead: false,
            tags: vec!["t".into()],
            symbols: Vec::new(),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("atlas-snap-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn round_trip_ages_entries_by_the_downtime() {
        let entries = vec![entry("a", 1_000), entry("b", 0)];
        let bytes = encode(0, &entries, 10_000).unwrap();
        let mut out = Vec::new();
        assert_eq!(decode_into(&bytes, 15_000, &mut out), Ok(2));
        assert_eq!(out[0].age_ms, 6_000);
        assert_eq!(out[1].age_ms, 5_000);
        assert_eq!(out[0].body, entries[0].body);
        assert_eq!(out[0].tags, entries[0].tags);
        assert_eq!((out[0].hits, out[0].confidence), (3, 0.5));
    }

    #[test]
    fn a_damaged_file_yields_nothing() {
        let bytes = encode(0, &[entry("a", 0), entry("b", 0)], 10_000).unwrap();
        for cut in [0, 8, bytes.len() / 2, bytes.len() - 1] {
            let mut out = Vec::new();
            assert!(decode_into(&bytes[..cut], 10_000, &mut out).is_err());
            assert!(out.is_empty());
        }
        let mut flipped = bytes.clone();
        flipped[bytes.len() / 3] ^= 0x10;
        assert!(decode_into(&flipped, 10_000, &mut Vec::new()).is_err());
        // A single L2 record is not a snapshot.
        let one = Record::from_entry(&entry("a", 0), 1).encode().unwrap();
        assert!(decode_into(&one, 1, &mut Vec::new()).is_err());
    }

    #[test]
    fn load_all_regroups_by_owner_removes_files_and_skips_temporaries() {
        let dir = temp_dir("load");
        let entries: Vec<SnapshotEntry> = (0..40).map(|i| entry(&format!("u{i}"), 0)).collect();
        write(&dir, 0, &entries[..20], 1_000).unwrap();
        write(&dir, 1, &entries[20..], 1_000).unwrap();
        fs::write(dir.join("shard-2.snap.tmp"), b"torn").unwrap();
        fs::write(dir.join("shard-3.snap"), b"garbage").unwrap();
        let groups = load_all(&dir, 3, 2_000);
        assert_eq!(groups.len(), 3);
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), 40);
        for (shard, group) in groups.iter().enumerate() {
            for e in group {
                assert_eq!(CacheKey::from_bytes(e.key.clone()).unwrap().shard(3), shard);
            }
        }
        assert!(
            !path(&dir, 0).exists() && !path(&dir, 1).exists(),
            "loaded files removed"
        );
        assert!(
            dir.join("shard-3.snap.corrupt").exists(),
            "the bad one kept aside"
        );
        assert!(
            dir.join("shard-2.snap.tmp").exists(),
            "temporaries are never read"
        );
        assert!(load_all(&dir, 3, 2_000).iter().all(Vec::is_empty));
        let _ = fs::remove_dir_all(&dir);
    }

    /// Regression: a snapshot in a directory where it cannot be removed (read-only) was
    /// loaded anyway, so every later start loaded it again: entries older than the last clean
    /// shutdown, including ones invalidated since, came back. Now such a file is not used.
    #[test]
    fn a_snapshot_that_cannot_be_removed_is_not_used() {
        let dir = temp_dir("sticky");
        write(&dir, 0, &[entry("a", 0)], 1_000).unwrap();
        let read_only = |_: &Path| Err(io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(load_all_with(&dir, 1, 2_000, read_only)[0].is_empty());
        assert!(path(&dir, 0).exists(), "left where it was");
        assert_eq!(load_all(&dir, 1, 2_000)[0].len(), 1, "used once removable");
        assert!(!path(&dir, 0).exists());
        let _ = fs::remove_dir_all(&dir);
    }

    /// A failed write leaves no temporary file behind (a full disk gets its space back).
    #[test]
    fn a_failed_write_removes_its_temporary_file() {
        let dir = temp_dir("full");
        // Writes to /dev/full fail with ENOSPC, as on a full disk.
        std::os::unix::fs::symlink("/dev/full", dir.join("shard-0.snap.tmp")).unwrap();
        let err = write(&dir, 0, &[entry("a", 0)], 1_000).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert!(!dir.join("shard-0.snap.tmp").exists());
        assert!(!path(&dir, 0).exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
