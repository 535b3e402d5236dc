//! The workload: which operation, input, user and priority each request carries, and the
//! request bytes. Everything is a pure function of the seed and a request's coordinates
//! (virtual user and sequence number in the closed loop, global sequence number in the open
//! loop), so two runs with the same flags send the same requests whatever the thread count.
//!
//! Must not depend on sockets or clocks. Hot path: `Workload::write_request` runs once per
//! request into a reused buffer (no allocation once the buffer has grown).

use std::fmt;
use std::io::Write;

/// The four AI operations, a closed set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    PortfolioAnalysis,
    BudgetOptimization,
    RiskAssessment,
    CashflowForecast,
}

impl Operation {
    /// Every operation, in report order.
    pub const ALL: [Operation; 4] = [
        Operation::PortfolioAnalysis,
        Operation::BudgetOptimization,
        Operation::RiskAssessment,
        Operation::CashflowForecast,
    ];

    /// The path segment and report name.
    pub fn name(self) -> &'static str {
        match self {
            Operation::PortfolioAnalysis => "portfolio_analysis",
            Operation::BudgetOptimization => "budget_optimization",
            Operation::RiskAssessment => "risk_assessment",
            Operation::CashflowForecast => "cashflow_forecast",
        }
    }

    /// Position in `ALL`, used to index per-operation statistics.
    pub fn index(self) -> usize {
        self as usize
    }

    fn parse(s: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.name() == s)
    }
}

/// Request priority, sent in the body's `priority` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    High,
    Normal,
    Low,
}

impl Priority {
    const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    fn name(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

/// A bad `--operations` or `--priority-mix` value.
#[derive(Debug, PartialEq, Eq)]
pub struct MixError(pub String);

impl fmt::Display for MixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A weighted choice among a few items (`name=weight,...`), drawn with one random number.
#[derive(Clone, Debug)]
pub struct Mix<T> {
    /// Items with weight > 0 and their cumulative weights, for one comparison scan per draw.
    items: Vec<(T, u64)>,
    /// Sum of all weights.
    total: u64,
}

impl<T: Copy> Mix<T> {
    fn parse(
        spec: &str,
        what: &str,
        lookup: impl Fn(&str) -> Option<T>,
        known: &[&str],
    ) -> Result<Mix<T>, MixError> {
        let mut items = Vec::new();
        let mut total = 0u64;
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = match part.split_once('=') {
                Some((n, w)) => {
                    let w = w.trim().parse::<u32>().map_err(|_| {
                        MixError(format!("{what}: weight of `{n}` must be a whole number"))
                    })?;
                    (n.trim(), w)
                }
                None => (part, 1),
            };
            let item = lookup(name).ok_or_else(|| {
                MixError(format!(
                    "{what}: unknown `{name}` (known: {})",
                    known.join(", ")
                ))
            })?;
            if weight > 0 {
                total += u64::from(weight);
                items.push((item, total));
            }
        }
        if total == 0 {
            return Err(MixError(format!("{what}: no item has a weight above 0")));
        }
        Ok(Mix { items, total })
    }

    /// Draws one item; `r` is a uniform 64-bit random number.
    pub fn pick(&self, r: u64) -> T {
        let x = r % self.total;
        for &(item, cum) in &self.items {
            if x < cum {
                return item;
            }
        }
        // Unreachable: the last cumulative weight is `total` > x. Fall back to the first item.
        self.items[0].0
    }

    /// Each item with its share of the weight, for the report.
    pub fn shares(&self) -> Vec<(T, f64)> {
        let mut prev = 0;
        self.items
            .iter()
            .map(|&(item, cum)| {
                let w = cum - prev;
                prev = cum;
                (item, w as f64 / self.total as f64)
            })
            .collect()
    }
}

/// Parses `--operations` (`portfolio_analysis=2,risk_assessment=1`; a bare name weighs 1).
pub fn parse_operations(spec: &str) -> Result<Mix<Operation>, MixError> {
    let known: Vec<&str> = Operation::ALL.iter().map(|o| o.name()).collect();
    Mix::parse(spec, "--operations", Operation::parse, &known)
}

/// Parses `--priority-mix` (`high=1,normal=8,low=1`).
pub fn parse_priorities(spec: &str) -> Result<Mix<Priority>, MixError> {
    Mix::parse(
        spec,
        "--priority-mix",
        |s| Priority::ALL.into_iter().find(|p| p.name() == s),
        &["high", "normal", "low"],
    )
}

/// SplitMix64: a tiny, fast generator with good statistical quality, seeded per request.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose stream depends on every one of `parts`.
    pub fn from_parts(parts: &[u64]) -> Rng {
        let mut r = Rng(0x9E37_79B9_7F4A_7C15);
        for &p in parts {
            r.0 ^= p;
            r.0 = r.next_u64();
        }
        r
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `0..n` (n > 0; the modulo bias is below 2^-40 for our ranges).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A uniform number in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Draws an input index in `0..n` with probability proportional to `1 / (k + 1)^s`.
#[derive(Clone, Debug)]
pub struct Zipf {
    /// Number of distinct inputs.
    n: u64,
    /// Cumulative, unnormalised weights; empty when `s == 0` (uniform, no table needed).
    cdf: Vec<f64>,
}

/// Largest keyspace for which a skewed table is built (8 bytes per entry: 80 MB).
pub const MAX_ZIPF_KEYSPACE: u64 = 10_000_000;

impl Zipf {
    /// A sampler over `n` inputs with exponent `s` (0 = uniform).
    pub fn new(n: u64, s: f64) -> Zipf {
        let n = n.max(1);
        if s == 0.0 {
            return Zipf { n, cdf: Vec::new() };
        }
        let mut acc = 0.0;
        let cdf = (0..n)
            .map(|k| {
                acc += 1.0 / ((k + 1) as f64).powf(s);
                acc
            })
            .collect();
        Zipf { n, cdf }
    }

    /// One draw.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        match self.cdf.last() {
            None => rng.below(self.n),
            Some(&total) => {
                let u = rng.unit() * total;
                (self.cdf.partition_point(|&c| c <= u) as u64).min(self.n - 1)
            }
        }
    }
}

/// The coordinates of one request: everything its bytes are built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestSpec {
    pub op: Operation,
    /// Input index within the operation's keyspace.
    pub input: u64,
    /// User id index (the body carries `u-{user}`).
    pub user: u64,
    pub priority: Priority,
    /// `--miss-share`: this request carries a user id no other request has (`m-{a}-{b}`
    /// from its coordinates), so its key is new and it is a cache miss.
    pub fresh: Option<(u64, u64)>,
}

/// The whole workload definition, shared read-only by every driver thread.
#[derive(Clone, Debug)]
pub struct Workload {
    pub seed: u64,
    pub operations: Mix<Operation>,
    pub priorities: Mix<Priority>,
    pub keys: Zipf,
    /// Number of distinct user ids.
    pub user_ids: u64,
    /// `Host` header value.
    pub host: String,
    /// `--path`: send `GET` to this path without a body instead of the AI operations (the
    /// draws still happen, so statistics land in the drawn operation's slot).
    pub get_path: Option<String>,
    /// `--miss-share`: fraction of requests sent with a never-repeated user id.
    pub miss_share: f64,
    /// How users repeat themselves: `None` with `--distinct` (every request draws its
    /// operation and input anew).
    pub repeat: Option<Repeat>,
}

/// The default workload, modelled on the brief's users: each user keeps asking about a few
/// things of their own (their set: [`Repeat::inputs`] pairs of operation and input, fixed by
/// the seed and the user), the first of them most often, and now and then about something
/// new.
#[derive(Clone, Debug)]
pub struct Repeat {
    /// Size of each user's set (`--user-inputs`).
    pub inputs: u64,
    /// Which of the set a request asks about: Zipf(1) over it, the first most often.
    pub choice: Zipf,
    /// Fraction of requests that ask about a new input instead (`--new-input-share`).
    pub new_share: f64,
}

impl Repeat {
    /// A set of `inputs` per user, `new_share` of requests outside it.
    pub fn new(inputs: u64, new_share: f64) -> Repeat {
        Repeat {
            inputs,
            choice: Zipf::new(inputs, 1.0),
            new_share,
        }
    }
}

impl Workload {
    /// The request a closed-loop virtual user sends as its `seq`-th request: the user id is
    /// fixed per virtual user, the rest is drawn.
    pub fn closed_request(&self, vuser: u64, seq: u64) -> RequestSpec {
        let mut rng = Rng::from_parts(&[self.seed, 1, vuser, seq]);
        let mut spec = self.draw(&mut rng, vuser % self.user_ids.max(1));
        spec.fresh = self.fresh(&mut rng, (vuser, seq));
        spec
    }

    /// The open-loop request with global sequence number `seq`; its user id is drawn too.
    pub fn open_request(&self, seq: u64) -> RequestSpec {
        let mut rng = Rng::from_parts(&[self.seed, 2, seq]);
        let user = rng.below(self.user_ids);
        let mut spec = self.draw(&mut rng, user);
        spec.fresh = self.fresh(&mut rng, (u64::MAX, seq));
        spec
    }

    /// With probability `--miss-share`, the unique coordinates that make the user id new.
    fn fresh(&self, rng: &mut Rng, coordinates: (u64, u64)) -> Option<(u64, u64)> {
        (self.miss_share > 0.0 && rng.unit() < self.miss_share).then_some(coordinates)
    }

    fn draw(&self, rng: &mut Rng, user: u64) -> RequestSpec {
        let op = self.operations.pick(rng.next_u64());
        let priority = self.priorities.pick(rng.next_u64());
        let input = self.keys.sample(rng);
        // The draws above are a new input (and all of `--distinct`); a repeating user mostly
        // asks about its own set instead.
        let (op, input) = match &self.repeat {
            Some(r) if rng.unit() >= r.new_share => self.user_input(user, r.choice.sample(rng)),
            _ => (op, input),
        };
        RequestSpec {
            op,
            input,
            user,
            priority,
            fresh: None,
        }
    }

    /// The `j`-th pair of `user`'s set: a pure function of the seed, the user and `j`.
    fn user_input(&self, user: u64, j: u64) -> (Operation, u64) {
        let mut rng = Rng::from_parts(&[self.seed, 3, user, j]);
        let op = self.operations.pick(rng.next_u64());
        (op, self.keys.sample(&mut rng))
    }

    /// One line naming the workload, for the goals assessment.
    pub fn describe(&self) -> String {
        match &self.repeat {
            None => "distinct: every request draws its operation and input anew".into(),
            Some(r) => format!(
                "users: each user asks about {} inputs of its own (the first most often), {:.0} % of requests about a new one",
                r.inputs,
                r.new_share * 100.0
            ),
        }
    }

    /// Writes the full HTTP request for `spec` into `out` (cleared first). `body` is a
    /// scratch buffer reused between calls.
    pub fn write_request(&self, spec: &RequestSpec, out: &mut Vec<u8>, body: &mut Vec<u8>) {
        if let Some(path) = &self.get_path {
            out.clear();
            let _ = write!(out, "GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
            return;
        }
        body.clear();
        // Writes into a Vec cannot fail.
        let _ = match spec.fresh {
            None => write!(body, "{{\"user_id\":\"u-{}\"", spec.user),
            Some((a, b)) => write!(body, "{{\"user_id\":\"m-{}-{a}-{b}\"", self.seed),
        };
        let _ = write!(
            body,
            ",\"priority\":\"{}\",\"input\":",
            spec.priority.name()
        );
        write_input(self.seed, spec.op, spec.input, body);
        body.push(b'}');
        out.clear();
        let _ = write!(
            out,
            "POST /ai/{} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            spec.op.name(),
            self.host,
            body.len()
        );
        out.extend_from_slice(body);
    }
}

/// Writes `cents` as a decimal with two places (`12345` → `123.45`), exactly.
fn money(out: &mut Vec<u8>, cents: u64) {
    let _ = write!(out, "{}.{:02}", cents / 100, cents % 100);
}

/// Writes the `input` object for input index `k` of `op`. Distinct `k` give distinct inputs
/// (one field encodes `k` exactly); the rest is drawn from a generator seeded by
/// `(seed, op, k)`, so the same `k` always gives the same bytes. All values are in the
/// ranges the operations accept.
pub fn write_input(seed: u64, op: Operation, k: u64, out: &mut Vec<u8>) {
    let mut rng = Rng::from_parts(&[seed, 3, op.index() as u64, k]);
    match op {
        Operation::PortfolioAnalysis => {
            let holdings = 2 + rng.below(3);
            let len = 8 + rng.below(9);
            out.extend_from_slice(b"{\"holdings\":[");
            // Atlas rejects a portfolio naming a symbol twice: a drawn symbol already used
            // moves to the next free one (inputs without a collision are unchanged).
            let mut used = [u64::MAX; 4];
            for h in 0..holdings {
                if h > 0 {
                    out.push(b',');
                }
                let mut symbol = rng.below(500);
                while used.contains(&symbol) {
                    symbol = (symbol + 1) % 500;
                }
                used[h as usize] = symbol;
                let _ = write!(
                    out,
                    "{{\"symbol\":\"S{symbol}\",\"weight\":{},\"prices\":[",
                    1 + rng.below(9)
                );
                // The first close of the first holding encodes k exactly.
                let mut cents = if h == 0 {
                    10_000 + k
                } else {
                    5_000 + rng.below(20_000)
                };
                for t in 0..len {
                    if t > 0 {
                        out.push(b',');
                        // A step of -2 % .. +2 %, never below one dollar.
                        let step = rng.below(401) as i64 - 200;
                        let next = cents as i64 + cents as i64 * step / 10_000;
                        cents = next.max(100) as u64;
                    }
                    money(out, cents);
                }
                out.extend_from_slice(b"]}");
            }
            out.extend_from_slice(b"]}");
        }
        Operation::BudgetOptimization => {
            out.extend_from_slice(b"{\"monthly_income\":");
            money(out, 300_000 + k);
            out.extend_from_slice(b",\"expenses\":[{\"category\":\"rent\",\"amount\":");
            money(out, 80_000 + rng.below(80_000));
            out.extend_from_slice(b",\"essential\":true},{\"category\":\"groceries\",\"amount\":");
            money(out, 20_000 + rng.below(40_000));
            out.extend_from_slice(b",\"essential\":true},{\"category\":\"dining\",\"amount\":");
            money(out, 5_000 + rng.below(50_000));
            out.extend_from_slice(
                b",\"essential\":false}],\"debts\":[{\"name\":\"card\",\"balance\":",
            );
            money(out, 50_000 + rng.below(1_000_000));
            let _ = write!(
                out,
                ",\"apr\":0.{:03},\"min_payment\":",
                50 + rng.below(200)
            );
            money(out, 5_000 + rng.below(10_000));
            out.extend_from_slice(b"}],\"goals\":[{\"name\":\"emergency\",\"target\":");
            money(out, 300_000 + rng.below(1_000_000));
            out.extend_from_slice(b",\"current\":");
            money(out, rng.below(200_000));
            let _ = write!(out, ",\"months\":{}}}]}}", 6 + rng.below(55));
        }
        Operation::RiskAssessment => {
            // Mixed radix over (horizon in hundredths, age, three answers): 128 million
            // distinct inputs, starting at a seed-dependent offset.
            let capacity: u64 = 10_001 * 103 * 125;
            let mut x = (k + Rng::from_parts(&[seed, 4]).below(capacity)) % capacity;
            let horizon = x % 10_001;
            x /= 10_001;
            let age = 18 + x % 103;
            x /= 103;
            let (a, b, c) = (1 + x % 5, 1 + (x / 5) % 5, 1 + (x / 25) % 5);
            out.extend_from_slice(b"{\"age\":");
            let _ = write!(out, "{age},\"horizon_years\":");
            money(out, horizon);
            let _ = write!(
                out,
                ",\"income_stability\":{a},\"loss_tolerance\":{b},\"experience\":{c}}}"
            );
        }
        Operation::CashflowForecast => {
            let len = 8 + rng.below(17);
            out.extend_from_slice(b"{\"history\":[");
            money(out, 100_000 + k);
            let mut level = 100_000 + rng.below(400_000);
            for _ in 1..len {
                out.push(b',');
                level = (level + rng.below(20_001)).saturating_sub(10_000).max(1);
                money(out, level);
            }
            let _ = write!(out, "],\"horizon\":{}}}", 1 + rng.below(12));
        }
    }
}

#[cfg(test)]
mod tests;
