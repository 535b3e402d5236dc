//! Filling the cache on a miss: the L2 lookup, the computation through the batch queues,
//! and the store into L1 and L2 with the result's dependency tags. Methods of [`Engine`],
//! kept apart from the lookup path in `mod.rs`.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use atlas_shard::{CacheKey, EntryMeta, PushError, QueueKey, Timestamp};

use super::*;

impl Engine {
    /// A fresh copy of `job`'s result from L2 (within its `max_age`), stored into L1 too.
    pub(super) async fn l2_lookup(&self, job: &Job) -> Option<Served> {
        let l2 = self.l2.as_ref()?;
        if !job.spec.mode.stores() {
            return None;
        }
        let entry = l2.get(&job.spec.key).await?;
        let age = Duration::from_millis(entry.age_ms);
        let fresh = entry.age_ms < u64::from(entry.ttl_ms);
        if !fresh || job.spec.max_age.is_some_and(|max| age > max) {
            return None;
        }
        let created = crate::wallclock::unix_ms_now().saturating_sub(entry.age_ms);
        if self
            .horizon
            .borrow()
            .refuses(created, &job.spec.key, &entry.tags, &entry.symbols)
        {
            // Written by a store that raced an invalidation applied here: a miss; the
            // recomputed result overwrites it.
            l2.count_stale();
            return None;
        }
        let body = entry.body.clone();
        self.cache.borrow_mut().restore(std::iter::once(entry));
        let mut served = served_from_cache(body, CacheStatus::Hit);
        served.from_l2 = true;
        Some(served)
    }

    /// Queues the job for the model, waits for its result, stores it (unless `no_store`).
    pub(super) async fn compute_and_store(self: &Rc<Self>, job: Job) -> Outcome {
        let op = job.spec.key.operation();
        let mark = self.recent.borrow().mark();
        let started = Instant::now();
        let (tx, rx) = oneshot::channel();
        let deadline = self.timestamp(job.deadline);
        let pending = Pending {
            input: job.spec.input.clone(),
            reply: tx,
        };
        let pushed = self.queues.borrow_mut().push(
            QueueKey { op, class: 0 },
            job.priority,
            Some(deadline),
            pending,
        );
        match pushed {
            Ok(p) => {
                if let Some(shed) = p.shed {
                    shed.request
                        .payload
                        .reply
                        .send(Err(overloaded("shed to admit a higher-priority request")));
                }
            }
            Err(PushError::Overloaded(_)) => {
                return Err(overloaded("the batch queue for this operation is full"))
            }
            Err(PushError::Expired(_)) => return Err(timeout()),
        }
        self.wake.notify();
        let computed = rx
            .await
            .unwrap_or_else(|| Err(internal("the batch was dropped")))?;
        if job.spec.mode.stores() {
            let from = Stamp { mark, started };
            self.store(
                &job.spec.key,
                op,
                &computed,
                job.spec.max_age,
                job.spec.tags.clone(),
                from,
            );
        }
        Ok(Served {
            body: computed.body,
            cache: CacheStatus::Miss,
            queue_ms: computed.queue_ms,
            processing_ms: computed.processing_ms,
            batch_size: computed.batch_size,
            endpoint: Cow::Owned(computed.endpoint),
            from_l2: false,
        })
    }

    /// Keeps the dependency tags a request declared on the entry that served it (see
    /// [`Engine::store`] for the rule). With Redis, an entry that gained tags is written there
    /// again, so that the copy in Redis is listed under them too: otherwise an invalidation of
    /// a gained tag would leave it there, and the next L1 miss would serve it.
    pub(super) fn keep_tags(&self, key: &CacheKey, tags: &[String]) {
        if tags.is_empty() {
            return;
        }
        let added = self.cache.borrow_mut().add_tags(key, tags);
        if let (true, Some(l2)) = (added > 0, &self.l2) {
            if let Some(entry) = self.cache.borrow().export(key) {
                let (l2, key) = (Rc::clone(l2), key.clone());
                glommio::spawn_local(async move { l2.store(&key, &entry) }).detach();
            }
        }
    }

    /// Stores a computed result. Dependency tags are kept per entry, not per request: the
    /// entry carries the union of the tags declared by the request that computed it, by every
    /// follower that waited on that computation, by every request it has served since
    /// (`keep_tags`), and by the entry it replaces under the same key (a refresh keeps what
    /// the earlier result's requests declared), plus the model's own dependencies. An
    /// invalidation of any of them removes the result for everyone; an entry loses its tags
    /// only by leaving the cache.
    ///
    /// A result that an invalidation applied since `from.mark` (taken when its computation
    /// started) selects is not stored: the invalidation ran while it was being computed. The
    /// copy written to Redis is aged from `from.started`, so that its creation time is when its
    /// input was read (what [`super::horizon`] compares invalidations with).
    fn store(
        &self,
        key: &CacheKey,
        op: Operation,
        computed: &Computed,
        max_age: Option<Duration>,
        mut tags: Vec<String>,
        from: Stamp,
    ) {
        let out = &computed.output;
        tags.extend(out.dependencies.iter().cloned());
        if let Some(leading) = self.leaders.borrow().get(key.bytes()) {
            tags.extend(leading.follower_tags.iter().cloned());
        }
        tags.extend(self.cache.borrow().tags_of(key));
        tags.sort_unstable();
        tags.dedup();
        if self
            .recent
            .borrow()
            .selects_since(from.mark, key, &tags, &out.symbols)
        {
            return;
        }
        let mut meta = EntryMeta::from_config(
            self.configs.borrow().get(op),
            out.confidence as f32,
            out.volatility.min(1.0) as f32,
        )
        .with_tags(tags)
        .with_symbols(out.symbols.iter().cloned());
        if let Some(max) = max_age {
            meta.ttl = meta.ttl.min(max);
        }
        // A result too large for the cache is still served; it is just not kept.
        let stored = self
            .cache
            .borrow_mut()
            .insert(key, computed.body.clone(), &meta)
            .is_ok();
        if let (true, Some(l2)) = (stored, &self.l2) {
            // Write-behind: queued after this task yields, never awaited by the client.
            let mut entry = l2_entry(key, &computed.body, meta);
            // Rounded up: the record's creation time is never after the input was read.
            entry.age_ms = from.started.elapsed().as_millis() as u64 + 1;
            let (l2, key) = (Rc::clone(l2), key.clone());
            glommio::spawn_local(async move { l2.store(&key, &entry) }).detach();
        }
    }

    fn timestamp(&self, at: Instant) -> Timestamp {
        let nanos = at.saturating_duration_since(self.origin).as_nanos();
        Timestamp(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// When a computation started: the invalidation mark and the instant.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    mark: u64,
    started: Instant,
}

/// A just-computed entry in the form L2 stores.
fn l2_entry(key: &CacheKey, body: &Bytes, meta: EntryMeta) -> atlas_shard::SnapshotEntry {
    let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
    atlas_shard::SnapshotEntry {
        key: key.bytes().to_vec(),
        body: body.clone(),
        age_ms: 0,
        ttl_ms: ms(meta.ttl),
        stale_while_revalidate_ms: ms(meta.stale_while_revalidate),
        stale_if_error_ms: ms(meta.stale_if_error),
        confidence: meta.confidence,
        volatility: meta.volatility,
        hits: 0,
        refresh_ahead: meta.refresh_ahead,
        tags: meta.tags,
        symbols: meta.symbols,
    }
}
