//! Measurements: one `OpStats` per operation per driver thread (no sharing while the run
//! lasts), merged once at the end. Latency histograms are HdrHistogram in microseconds with
//! three significant digits, from 1 µs to one hour.
//!
//! Must not depend on sockets or the report format. Hot path: `record_response` and
//! `record_error` run once per request.

use std::collections::BTreeMap;

use hdrhistogram::{CreationError, Histogram};

use super::http::{CacheState, Head};

/// Why a request got no HTTP response, a closed set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The TCP connection could not be made (refused, unreachable, connect timeout).
    Connect,
    /// No complete response within `--timeout`.
    Timeout,
    /// The connection was reset (ECONNRESET, EPIPE) while sending or waiting.
    Reset,
    /// The server closed the connection before the response was complete.
    Closed,
    /// The reply was not an HTTP/1.x response this client can read.
    Protocol,
}

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::Reset,
        ErrorKind::Closed,
        ErrorKind::Protocol,
    ];

    /// The report name.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Closed => "closed",
            ErrorKind::Protocol => "protocol",
        }
    }
}

/// Lowest and highest latency a histogram records, in microseconds.
const HIST_LOW_US: u64 = 1;
const HIST_HIGH_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds.
fn histogram() -> Result<Histogram<u64>, CreationError> {
    Histogram::new_with_bounds(HIST_LOW_US, HIST_HIGH_US, 3)
}

/// What one operation (or the whole run) measured.
#[derive(Clone, Debug)]
pub struct OpStats {
    /// Latency of every request that got a response, whatever its status. In the open loop
    /// measured from the scheduled send time (coordinated omission corrected).
    pub latency: Histogram<u64>,
    /// Time from the actual send to the response (equal to `latency` in the closed loop; in
    /// the open loop the difference is time spent waiting for a free connection).
    pub service: Histogram<u64>,
    /// Requests that got a response.
    pub responses: u64,
    /// Responses with a 2xx status.
    pub ok: u64,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests without a response, by kind (indexed like `ErrorKind::ALL`).
    pub errors: [u64; 5],
    /// Responses by `X-Atlas-Cache` (indexed like `CacheState::ALL`).
    pub cache: [u64; 5],
    /// Sum and count of `X-Atlas-Batch-Size` over responses computed by a model (size > 0).
    pub batch_sum: u64,
    pub batch_count: u64,
    /// Open loop: requests scheduled but never sent (every connection busy until the end).
    pub unsent: u64,
    /// Bytes of response read, head and body.
    pub bytes_in: u64,
    /// Responses naming both `X-Atlas-Shard` and `X-Atlas-Owner` (Atlas's AI operations).
    pub routed: u64,
    /// Of `routed`, the responses whose owner differs from the accepting shard: the request
    /// hopped across the shard mesh.
    pub hops: u64,
}

impl OpStats {
    /// Empty statistics (fails only if the histogram bounds were invalid).
    pub fn new() -> Result<OpStats, CreationError> {
        Ok(OpStats {
            latency: histogram()?,
            service: histogram()?,
            responses: 0,
            ok: 0,
            statuses: BTreeMap::new(),
            errors: [0; 5],
            cache: [0; 5],
            batch_sum: 0,
            batch_count: 0,
            unsent: 0,
            bytes_in: 0,
            routed: 0,
            hops: 0,
        })
    }

    /// Records a response: `latency_us` from the scheduled start, `service_us` from the send.
    pub fn record_response(&mut self, head: &Head, latency_us: u64, service_us: u64) {
        self.latency.saturating_record(latency_us.max(HIST_LOW_US));
        self.service.saturating_record(service_us.max(HIST_LOW_US));
        self.responses += 1;
        if (200..300).contains(&head.status) {
            self.ok += 1;
        }
        *self.statuses.entry(head.status).or_insert(0) += 1;
        self.cache[cache_index(head.cache)] += 1;
        if let Some(b) = head.batch_size.filter(|&b| b > 0) {
            self.batch_sum += u64::from(b);
            self.batch_count += 1;
        }
        self.bytes_in += head.total_len() as u64;
        if let Some(hopped) = head.hopped() {
            self.routed += 1;
            self.hops += u64::from(hopped);
        }
    }

    /// Records a request that got no response.
    pub fn record_error(&mut self, kind: ErrorKind) {
        self.errors[kind as usize] += 1;
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &OpStats) {
        // Both histograms share the same bounds, so `add` cannot fail; if it did, the
        // saturating fallback keeps the counts.
        if self.latency.add(&other.latency).is_err() {
            for v in other.latency.iter_recorded() {
                self.latency
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
        if self.service.add(&other.service).is_err() {
            for v in other.service.iter_recorded() {
                self.service
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
        self.responses += other.responses;
        self.ok += other.ok;
        for (s, n) in &other.statuses {
            *self.statuses.entry(*s).or_insert(0) += n;
        }
        for i in 0..self.errors.len() {
            self.errors[i] += other.errors[i];
        }
        for i in 0..self.cache.len() {
            self.cache[i] += other.cache[i];
        }
        self.batch_sum += other.batch_sum;
        self.batch_count += other.batch_count;
        self.unsent += other.unsent;
        self.bytes_in += other.bytes_in;
        self.routed += other.routed;
        self.hops += other.hops;
    }

    /// Requests that failed without a response.
    pub fn error_count(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Every request accounted for: answered, failed, or (open loop) never sent.
    pub fn attempted(&self) -> u64 {
        self.responses + self.error_count() + self.unsent
    }

    /// 2xx responses over every request accounted for (1 when there were none).
    pub fn success_rate(&self) -> f64 {
        ratio(self.ok, self.attempted()).unwrap_or(1.0)
    }

    /// `hit` over responses that carried a known `X-Atlas-Cache` value; `None` when none did.
    pub fn hit_rate(&self) -> Option<f64> {
        let labelled: u64 = self.cache[..4].iter().sum();
        ratio(self.cache[cache_index(CacheState::Hit)], labelled)
    }

    /// Hops over responses that named both shards; `None` when none did.
    pub fn hop_share(&self) -> Option<f64> {
        ratio(self.hops, self.routed)
    }

    /// Mean `X-Atlas-Batch-Size` over responses a model computed; `None` when there were none.
    pub fn mean_batch(&self) -> Option<f64> {
        ratio(self.batch_sum, self.batch_count)
    }

    /// Latency at `q` (0..=100) in milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        self.latency.value_at_percentile(q) as f64 / 1000.0
    }
}

fn cache_index(c: CacheState) -> usize {
    c as usize
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// What ended in one second of the run (`--timeline`): latency of the responses, and the
/// requests that failed, by completion time.
#[derive(Clone, Debug)]
pub struct Slot {
    /// Latency of responses, microseconds, two significant digits (a slot per second must
    /// stay small).
    pub latency: Histogram<u64>,
    /// Responses, and of them 2xx.
    pub responses: u64,
    pub ok: u64,
    /// Requests without a response, by kind (indexed like `ErrorKind::ALL`).
    pub errors: [u64; 5],
}

impl Slot {
    fn new() -> Result<Slot, CreationError> {
        Ok(Slot {
            latency: Histogram::new_with_bounds(HIST_LOW_US, HIST_HIGH_US, 2)?,
            responses: 0,
            ok: 0,
            errors: [0; 5],
        })
    }
}

/// Longest timeline kept, in seconds (a day).
const MAX_TIMELINE_S: usize = 86_400;

/// One driver thread's results: statistics per operation, indexed like `Operation::ALL`.
#[derive(Clone, Debug)]
pub struct ThreadStats {
    pub ops: [OpStats; 4],
    /// Connections opened (successful connects), including reconnects.
    pub connects: u64,
    /// `--timeline`: one slot per second of the run, by completion time; `None` when off.
    pub timeline: Option<Vec<Slot>>,
}

impl ThreadStats {
    /// Empty statistics for every operation.
    pub fn new() -> Result<ThreadStats, CreationError> {
        Ok(ThreadStats {
            ops: [
                OpStats::new()?,
                OpStats::new()?,
                OpStats::new()?,
                OpStats::new()?,
            ],
            connects: 0,
            timeline: None,
        })
    }

    /// Keeps a per-second timeline from now on.
    pub fn with_timeline(mut self) -> Self {
        self.timeline = Some(Vec::new());
        self
    }

    /// The timeline slot of `second`, grown on demand (`None` when off or past a day).
    fn slot(&mut self, second: u64) -> Option<&mut Slot> {
        let timeline = self.timeline.as_mut()?;
        let i = usize::try_from(second)
            .ok()
            .filter(|&i| i < MAX_TIMELINE_S)?;
        while timeline.len() <= i {
            timeline.push(Slot::new().ok()?);
        }
        timeline.get_mut(i)
    }

    /// Records a response with `status` and `latency_us` that ended in `second`.
    pub fn timeline_response(&mut self, second: u64, status: u16, latency_us: u64) {
        if let Some(s) = self.slot(second) {
            s.latency.saturating_record(latency_us.max(HIST_LOW_US));
            s.responses += 1;
            s.ok += u64::from((200..300).contains(&status));
        }
    }

    /// Records a request without a response that ended in `second`.
    pub fn timeline_error(&mut self, second: u64, kind: ErrorKind) {
        if let Some(s) = self.slot(second) {
            s.errors[kind as usize] += 1;
        }
    }

    /// Adds another thread's results.
    pub fn merge(&mut self, other: &ThreadStats) {
        for (a, b) in self.ops.iter_mut().zip(other.ops.iter()) {
            a.merge(b);
        }
        self.connects += other.connects;
        if let Some(theirs) = &other.timeline {
            // Merging into empty statistics keeps the timeline the threads kept.
            self.timeline.get_or_insert_with(Vec::new);
            for (second, o) in theirs.iter().enumerate() {
                if let Some(s) = self.slot(second as u64) {
                    if s.latency.add(&o.latency).is_err() {
                        for v in o.latency.iter_recorded() {
                            s.latency
                                .saturating_record_n(v.value_iterated_to(), v.count_at_value());
                        }
                    }
                    s.responses += o.responses;
                    s.ok += o.ok;
                    for i in 0..s.errors.len() {
                        s.errors[i] += o.errors[i];
                    }
                }
            }
        }
    }

    /// Every operation folded into one.
    pub fn overall(&self) -> OpStats {
        let mut all = self.ops[0].clone();
        for op in &self.ops[1..] {
            all.merge(op);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: u16, cache: CacheState, batch: Option<u32>) -> Head {
        Head {
            status,
            head_len: 10,
            body_len: 5,
            cache,
            batch_size: batch,
            shard: None,
            owner: None,
            close: false,
        }
    }

    #[test]
    fn percentiles_of_a_known_uniform_distribution() {
        let mut s = OpStats::new().unwrap();
        // 1..=10_000 ms, one each.
        for ms in 1..=10_000u64 {
            s.record_response(&head(200, CacheState::Hit, None), ms * 1000, ms * 1000);
        }
        for (q, want) in [
            (50.0, 5000.0),
            (90.0, 9000.0),
            (99.0, 9900.0),
            (99.9, 9990.0),
        ] {
            let got = s.latency_ms(q);
            assert!((got - want).abs() / want < 0.002, "p{q}: {got} vs {want}");
        }
        assert!((s.latency.max() as f64 / 1000.0 - 10_000.0).abs() < 10.0);
    }

    #[test]
    fn rates_count_what_they_should() {
        let mut s = OpStats::new().unwrap();
        for _ in 0..7 {
            s.record_response(&head(200, CacheState::Hit, Some(0)), 100, 100);
        }
        s.record_response(&head(200, CacheState::Miss, Some(4)), 100, 100);
        s.record_response(&head(200, CacheState::Miss, Some(2)), 100, 100);
        s.record_response(&head(503, CacheState::None, None), 100, 100);
        s.record_error(ErrorKind::Timeout);
        s.unsent = 1;
        assert_eq!(s.attempted(), 12);
        assert!((s.success_rate() - 9.0 / 12.0).abs() < 1e-12);
        // The 503 carries no cache header and does not dilute the hit rate.
        assert_eq!(s.hit_rate(), Some(7.0 / 9.0));
        assert_eq!(s.mean_batch(), Some(3.0));
        assert_eq!(s.statuses.get(&503), Some(&1));

        let mut t = ThreadStats::new().unwrap();
        t.ops[0] = s.clone();
        t.ops[2] = s;
        let all = t.overall();
        assert_eq!(all.attempted(), 24);
        assert_eq!(all.latency.len(), 20);
        assert_eq!(all.errors[ErrorKind::Timeout as usize], 2);
    }

    #[test]
    fn timelines_merge_by_second() {
        let mut a = ThreadStats::new().unwrap().with_timeline();
        let mut b = ThreadStats::new().unwrap().with_timeline();
        a.timeline_response(0, 200, 1_000);
        a.timeline_response(2, 503, 5_000);
        b.timeline_response(2, 200, 3_000);
        b.timeline_error(3, ErrorKind::Reset);
        // As `measure` does: into statistics that did not ask for a timeline themselves.
        let mut all = ThreadStats::new().unwrap();
        all.merge(&a);
        all.merge(&b);
        let t = all.timeline.unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(
            (t[0].responses, t[1].responses, t[2].responses, t[2].ok),
            (1, 0, 2, 1)
        );
        assert_eq!(t[3].errors[ErrorKind::Reset as usize], 1);
        let mut off = ThreadStats::new().unwrap();
        off.timeline_response(0, 200, 1);
        assert!(off.timeline.is_none());
    }

    #[test]
    fn hop_share_counts_only_responses_naming_both_shards() {
        let routed = |shard, owner| Head {
            shard: Some(shard),
            owner,
            ..head(200, CacheState::Hit, Some(0))
        };
        let mut s = OpStats::new().unwrap();
        assert_eq!(s.hop_share(), None);
        s.record_response(&routed(0, Some(0)), 100, 100);
        s.record_response(&routed(0, Some(1)), 100, 100);
        s.record_response(&routed(1, Some(0)), 100, 100);
        s.record_response(&routed(1, Some(1)), 100, 100);
        // `GET /health` (shard only) and errors without Atlas headers are not counted.
        s.record_response(&routed(1, None), 100, 100);
        s.record_response(&head(503, CacheState::None, None), 100, 100);
        assert_eq!((s.routed, s.hops), (4, 2));
        assert_eq!(s.hop_share(), Some(0.5));
        let mut t = ThreadStats::new().unwrap();
        t.ops[0] = s.clone();
        t.ops[3] = s;
        t.ops[3].record_response(&routed(2, Some(0)), 100, 100);
        let all = t.overall();
        assert_eq!((all.routed, all.hops), (9, 5));
    }
}
