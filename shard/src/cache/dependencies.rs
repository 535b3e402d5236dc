//! A cache's dependencies: the tags an entry depends on, and invalidation by key, tag,
//! symbol, user, operation or everything (through the reverse indexes of `crate::index`).

use super::*;

impl<C: Clock> Cache<C> {
    /// Adds to the entry under `key` every tag of `tags` it does not declare yet, so that a
    /// request served a result that was stored for another request keeps its own declared
    /// dependencies: invalidating any of them later removes the entry.
    ///
    /// The entry keeps its body, age, hits and place in the eviction order; it is charged for
    /// the new tags like an insert would be, and other entries may be evicted to keep the
    /// budget. An entry that would grow past the per-entry limit is removed instead (counted
    /// as too large), because serving it without the dependency would be wrong. Returns how
    /// many tags were added (0 without an entry under `key`).
    pub fn add_tags<S: AsRef<str>>(&mut self, key: &CacheKey, tags: &[S]) -> usize {
        let Some(slot) = self.slot_of(key) else {
            return 0;
        };
        let (mut added, mut extra) = (0, 0);
        for tag in tags {
            let tag = tag.as_ref();
            if self.index.add_member(slot, DepKind::Tag, tag) {
                added += 1;
                extra += 2 * tag.len() + Index::BYTES_PER_DEP;
            }
        }
        if added == 0 {
            return 0;
        }
        let max = self
            .opts
            .max_entry_bytes
            .min(self.opts.max_bytes)
            .min(u32::MAX as usize);
        let Some(e) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return 0;
        };
        let charge = e.charge as usize + extra;
        if charge > max {
            // `remove_slot` releases the old charge and every index membership, new ones too.
            self.remove_slot(slot);
            self.counters.too_large += 1;
            return 0;
        }
        e.charge = charge as u32;
        self.used += extra;
        // Make room for what was just charged (this entry may itself be the victim).
        self.evict_for(0);
        added
    }

    /// The dependency tags the entry under `key` declares (empty without one).
    pub fn tags_of(&self, key: &CacheKey) -> Vec<String> {
        self.slot_of(key)
            .map_or_else(Vec::new, |slot| self.index.deps_of(slot, DepKind::Tag))
    }

    /// Removes every slot in `self.scratch`; returns how many were live.
    fn remove_scratch(&mut self) -> usize {
        let slots = std::mem::take(&mut self.scratch);
        let mut n = 0;
        for &s in &slots {
            if self.remove_slot(s) {
                n += 1;
            }
        }
        self.scratch = slots;
        self.scratch.clear();
        self.counters.invalidations += n as u64;
        n
    }

    /// Removes the entry under `key`, if any.
    pub fn invalidate_key(&mut self, key: &CacheKey) -> bool {
        let Some(slot) = self.slot_of(key) else {
            return false;
        };
        if self.remove_slot(slot) {
            self.counters.invalidations += 1;
            return true;
        }
        false
    }

    /// Removes every entry that declared dependency tag `tag`. Returns how many.
    pub fn invalidate_tag(&mut self, tag: &str) -> usize {
        self.index.slots_with(DepKind::Tag, tag, &mut self.scratch);
        self.remove_scratch()
    }

    /// Removes every entry that declared any of `symbols` (a `market_data_update` event).
    pub fn invalidate_symbols<S: AsRef<str>>(&mut self, symbols: &[S]) -> usize {
        for s in symbols {
            self.index
                .slots_with(DepKind::Symbol, s.as_ref(), &mut self.scratch);
        }
        self.remove_scratch()
    }

    /// Removes every entry of `user`'s scope.
    pub fn invalidate_user(&mut self, user: &str) -> usize {
        self.index.slots_of_user(user, &mut self.scratch);
        self.remove_scratch()
    }

    /// Removes every entry of `op`.
    pub fn invalidate_operation(&mut self, op: Operation) -> usize {
        self.index.slots_of_op(op, &mut self.scratch);
        self.remove_scratch()
    }

    /// Removes everything.
    pub fn clear(&mut self) -> usize {
        let n = self.map.len();
        self.map.clear();
        self.slots.clear();
        self.free.clear();
        self.policy.clear();
        self.index.clear();
        self.used = 0;
        self.sweep_cursor = 0;
        self.counters.invalidations += n as u64;
        n
    }
}
