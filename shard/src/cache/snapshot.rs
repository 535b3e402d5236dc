//! A cache as plain data and back: the live entries for a snapshot or the L2, one entry by
//! key, and restoring entries (with their remaining TTL) after a restart or an L2 hit.

use super::*;

impl<C: Clock> Cache<C> {
    /// Every live entry (not past its TTL plus stale windows) as plain data, for a snapshot.
    pub fn snapshot(&self) -> impl Iterator<Item = SnapshotEntry> + '_ {
        let now_ms = self.clock.now().as_millis();
        (0..self.slots.len()).filter_map(move |slot| self.export_slot(slot as u32, now_ms))
    }

    /// The live entry under `key` as plain data (what [`Cache::snapshot`] gives for it), without
    /// counting an access.
    pub fn export(&self, key: &CacheKey) -> Option<SnapshotEntry> {
        let slot = self.slot_of(key)?;
        self.export_slot(slot, self.clock.now().as_millis())
    }

    /// The entry in `slot` as plain data, if live at `now_ms`.
    fn export_slot(&self, slot: u32, now_ms: u64) -> Option<SnapshotEntry> {
        let e = self.slots.get(slot as usize)?.as_ref()?;
        let age_ms = now_ms.saturating_sub(e.created_ms);
        if age_ms >= e.retention_ms() {
            return None;
        }
        Some(SnapshotEntry {
            key: e.key().to_vec(),
            body: e.buf.slice(e.key_len as usize..),
            age_ms,
            ttl_ms: e.ttl_ms,
            stale_while_revalidate_ms: e.swr_ms,
            stale_if_error_ms: e.sie_ms,
            confidence: f32::from(e.confidence) / 255.0,
            volatility: f32::from(e.volatility) / 255.0,
            hits: e.hits,
            refresh_ahead: e.flags & WARM != 0,
            tags: self.index.deps_of(slot, DepKind::Tag),
            symbols: self.index.deps_of(slot, DepKind::Symbol),
        })
    }

    /// Inserts snapshot entries (ages kept relative to this cache's clock), skipping those with
    /// invalid keys, already past their windows, or too large. Returns how many were stored.
    /// Entries past the budget evict earlier ones, as with any insert.
    pub fn restore(&mut self, entries: impl IntoIterator<Item = SnapshotEntry>) -> usize {
        let now_ms = self.clock.now().as_millis();
        let mut stored = 0;
        for s in entries {
            let Ok(key) = CacheKey::from_bytes(s.key) else {
                continue;
            };
            let retention = u64::from(s.ttl_ms)
                + u64::from(s.stale_while_revalidate_ms.max(s.stale_if_error_ms));
            if s.age_ms >= retention || parse(key.bytes()).is_err() {
                continue;
            }
            let meta = EntryMeta {
                ttl: Duration::from_millis(u64::from(s.ttl_ms)),
                stale_while_revalidate: Duration::from_millis(u64::from(
                    s.stale_while_revalidate_ms,
                )),
                stale_if_error: Duration::from_millis(u64::from(s.stale_if_error_ms)),
                confidence: s.confidence,
                volatility: s.volatility,
                refresh_ahead: s.refresh_ahead,
                tags: s.tags,
                symbols: s.symbols,
            };
            let created = now_ms.saturating_sub(s.age_ms);
            if self
                .insert_at(&key, &s.body, &meta, created, s.hits, 0)
                .is_ok()
            {
                stored += 1;
            }
        }
        stored
    }

    /// Checks every internal invariant; for tests.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let live: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&s| self.slots[s as usize].is_some())
            .collect();
        assert_eq!(live.len(), self.map.len(), "map and slots disagree");
        assert_eq!(self.policy.len(), live.len(), "policy and slots disagree");
        let used: usize = live
            .iter()
            .filter_map(|&s| self.slots[s as usize].as_ref())
            .map(|e| e.charge as usize)
            .sum();
        assert_eq!(used, self.used, "accounting drift");
        assert!(self.used <= self.opts.max_bytes, "budget exceeded");
        for (&h, &s) in &self.map {
            let e = self.slots[s as usize]
                .as_ref()
                .expect("map points at a free slot");
            assert_eq!(hash_key_bytes(e.key()), h);
        }
        for s in self.index.all_indexed_slots() {
            assert!(
                self.slots[s as usize].is_some(),
                "index points at removed slot {s}"
            );
        }
    }
}
