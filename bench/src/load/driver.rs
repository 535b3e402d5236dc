//! One driver thread: an edge-triggered epoll loop over non-blocking sockets that owns a
//! slice of the connections and its own statistics. Nothing is shared with other threads but
//! two progress counters it stores into.
//!
//! Closed loop: each connection is a virtual user that sends its requests one after another,
//! the next as soon as the previous answer is read. Open loop: requests are scheduled at a
//! constant rate (global sequence `n` at `start + n / rate`, thread `t` of `T` taking
//! `n ≡ t mod T`); a due request goes to the next free connection, and its latency is
//! measured from its scheduled time, so time spent waiting for a connection counts.
//!
//! Hot path: the whole file. Buffers live as long as their connection slot and are reused
//! across reconnects; the only per-request work is formatting the body, one write, usually
//! one read, and one parse.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::http::{parse_head, Head, Parse, MAX_BODY};
use super::stats::{ErrorKind, ThreadStats};
use super::sys::{Epoll, Event};
use super::workload::Workload;

mod conn;
use conn::{Conn, InFlight, ReadOutcome};

/// How requests are issued.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// `users` virtual users, each on its own connection, each sending up to `requests`
    /// (`None`: until the duration ends).
    Closed { users: u64, requests: Option<u64> },
    /// `rate` requests per second over `connections` connections.
    Open { rate: f64, connections: u64 },
}

/// Everything a driver thread needs, shared read-only.
pub struct Plan {
    pub addr: SocketAddr,
    pub workload: Workload,
    pub mode: Mode,
    /// Closed loop: an upper bound. Open loop: how long requests are scheduled.
    pub duration: Option<Duration>,
    /// Per request, connect included.
    pub timeout: Duration,
    pub threads: usize,
    /// Keep a per-second timeline (`--timeline`).
    pub timeline: bool,
}

/// Live counters one thread publishes for the progress line.
#[derive(Default)]
#[repr(align(64))]
pub struct Progress {
    pub responses: AtomicU64,
    pub errors: AtomicU64,
}

/// How often deadlines and retry times are checked.
const TICK: Duration = Duration::from_millis(5);
/// Closed loop: how long a virtual user waits after a failed connect before trying again.
const CONNECT_BACKOFF: Duration = Duration::from_millis(100);
/// Initial read buffer per connection; grows for larger responses, up to `MAX_BODY`.
const READ_BUF: usize = 4096;
/// Events taken per epoll_wait.
const EVENTS: usize = 1024;

/// The driver's state.
struct Driver<'a> {
    plan: &'a Plan,
    thread: usize,
    start: Instant,
    end: Option<Instant>,
    epoll: Epoll,
    conns: Vec<Conn>,
    stats: ThreadStats,
    progress: &'a Progress,
    /// Slots that finished a request (or failed) and need their next step.
    ready: Vec<usize>,
    /// Open loop: free slots, oldest first, so every connection stays in use.
    idle: VecDeque<usize>,
    /// Open loop: this thread's next request index not yet sent, and the first not yet due.
    next_send: u64,
    next_due: u64,
    /// Open loop: requests this thread schedules in total.
    total: u64,
    in_flight: usize,
    /// Closed loop: users not yet done.
    active: usize,
    body: Vec<u8>,
}

/// Runs one driver thread to completion and returns its statistics.
pub fn run(
    plan: &Plan,
    thread: usize,
    start: Instant,
    progress: &Progress,
) -> io::Result<ThreadStats> {
    let stats = ThreadStats::new().map_err(|e| io::Error::other(e.to_string()))?;
    let stats = if plan.timeline {
        stats.with_timeline()
    } else {
        stats
    };
    let threads = plan.threads.max(1);
    let slots: Vec<Conn> = match plan.mode {
        Mode::Closed { users, .. } => (thread as u64..users)
            .step_by(threads)
            .map(Conn::new)
            .collect(),
        Mode::Open { connections, .. } => (thread as u64..connections)
            .step_by(threads)
            .map(Conn::new)
            .collect(),
    };
    let total = match (plan.mode, plan.duration) {
        (Mode::Open { rate, .. }, Some(d)) => {
            let all = (rate * d.as_secs_f64()).round() as u64;
            // Requests thread..all stepping by threads.
            all.saturating_sub(thread as u64).div_ceil(threads as u64)
        }
        _ => 0,
    };
    let mut d = Driver {
        plan,
        thread,
        start,
        end: plan.duration.map(|d| start + d),
        epoll: Epoll::new()?,
        active: slots.len(),
        idle: (0..slots.len()).collect(),
        ready: Vec::new(),
        conns: slots,
        stats,
        progress,
        next_send: 0,
        next_due: 0,
        total,
        in_flight: 0,
        body: Vec::new(),
    };
    d.run_loop()?;
    Ok(d.stats)
}

impl Driver<'_> {
    fn closed(&self) -> bool {
        matches!(self.plan.mode, Mode::Closed { .. })
    }

    fn run_loop(&mut self) -> io::Result<()> {
        let mut raw = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        let mut events: Vec<Event> = Vec::with_capacity(EVENTS);
        if self.closed() {
            self.ready.extend(0..self.conns.len());
            self.active = self.conns.len();
        }
        let mut next_tick = Instant::now() + TICK;
        loop {
            let now = Instant::now();
            if now >= next_tick {
                self.tick(now);
                next_tick = now + TICK;
            }
            self.step(now);
            if self.finished(now) {
                break;
            }
            let mut wait = next_tick.saturating_duration_since(now);
            if let Some(due) = self.next_due_time() {
                wait = wait.min(due.saturating_duration_since(now));
            }
            self.epoll.wait(&mut raw, &mut events, wait)?;
            for ev in &events {
                self.on_event(*ev);
            }
            self.publish();
        }
        self.publish();
        Ok(())
    }

    fn publish(&self) {
        let all = self.stats.ops.iter();
        let (mut r, mut e) = (0, 0);
        for op in all {
            r += op.responses;
            e += op.error_count();
        }
        self.progress.responses.store(r, Ordering::Relaxed);
        self.progress.errors.store(e, Ordering::Relaxed);
    }

    fn finished(&self, now: Instant) -> bool {
        if self.in_flight > 0 || !self.ready.is_empty() {
            return false;
        }
        match self.plan.mode {
            Mode::Closed { .. } => self.active == 0,
            Mode::Open { .. } => self.end.is_none_or(|e| now >= e),
        }
    }

    /// Open loop: the scheduled time of this thread's `i`-th request.
    fn scheduled(&self, i: u64) -> Instant {
        let Mode::Open { rate, .. } = self.plan.mode else {
            return self.start;
        };
        let n = self.thread as u64 + i * self.plan.threads.max(1) as u64;
        self.start + Duration::from_secs_f64(n as f64 / rate)
    }

    fn next_due_time(&self) -> Option<Instant> {
        (!self.closed() && self.next_due < self.total).then(|| self.scheduled(self.next_due))
    }

    /// Deadlines and closed-loop retries.
    fn tick(&mut self, now: Instant) {
        for idx in 0..self.conns.len() {
            let c = &self.conns[idx];
            if c.req.is_some_and(|r| r.deadline <= now) {
                self.fail(idx, ErrorKind::Timeout);
            } else if c.retry_at.is_some_and(|t| t <= now) {
                self.conns[idx].retry_at = None;
                self.ready.push(idx);
            }
        }
    }

    /// Gives every ready slot its next request, and in the open loop sends what is due.
    fn step(&mut self, now: Instant) {
        let past_end = self.end.is_some_and(|e| now >= e);
        let mut ready = std::mem::take(&mut self.ready);
        for idx in ready.drain(..) {
            if self.closed() {
                self.closed_next(idx, now, past_end);
            } else {
                self.idle.push_back(idx);
            }
        }
        // Slots that failed at once while being given a request wait for the next step;
        // the swap keeps the vector's capacity.
        ready.append(&mut self.ready);
        self.ready = ready;
        if self.closed() {
            return;
        }
        while self.next_due < self.total && self.scheduled(self.next_due) <= now {
            self.next_due += 1;
        }
        while self.next_send < self.next_due {
            let Some(idx) = self.idle.pop_front() else {
                break;
            };
            let i = self.next_send;
            self.next_send += 1;
            let n = self.thread as u64 + i * self.plan.threads.max(1) as u64;
            let spec = self.plan.workload.open_request(n);
            let scheduled = self.scheduled(i);
            self.issue(idx, spec, scheduled, now);
        }
        if past_end {
            // Every request was due before the end; what found no free connection by then
            // never went out: count it per operation.
            self.next_due = self.total;
            for i in self.next_send..self.next_due {
                let n = self.thread as u64 + i * self.plan.threads.max(1) as u64;
                let op = self.plan.workload.open_request(n).op;
                self.stats.ops[op.index()].unsent += 1;
            }
            self.next_send = self.next_due;
        }
    }

    /// Closed loop: the next request of the user in slot `idx`, or its end.
    fn closed_next(&mut self, idx: usize, now: Instant, past_end: bool) {
        let Mode::Closed { requests, .. } = self.plan.mode else {
            return;
        };
        let c = &mut self.conns[idx];
        if c.done || c.retry_at.is_some() {
            return;
        }
        if past_end || requests.is_some_and(|r| c.next_seq >= r) {
            c.done = true;
            c.close();
            self.active -= 1;
            return;
        }
        let spec = self.plan.workload.closed_request(c.vuser, c.next_seq);
        c.next_seq += 1;
        self.issue(idx, spec, now, now);
    }

    /// Puts a request on slot `idx`, connecting first when needed.
    fn issue(
        &mut self,
        idx: usize,
        spec: super::workload::RequestSpec,
        scheduled: Instant,
        now: Instant,
    ) {
        let plan = self.plan;
        let c = &mut self.conns[idx];
        plan.workload
            .write_request(&spec, &mut c.wbuf, &mut self.body);
        c.woff = 0;
        c.req = Some(InFlight {
            op: spec.op,
            scheduled,
            sent: now,
            deadline: now + plan.timeout,
        });
        self.in_flight += 1;
        if c.sock.is_none() {
            if let Err(kind) = self.connect(idx) {
                self.fail(idx, kind);
            }
            // The request goes out when the connect completes.
            return;
        }
        if self.conns[idx].connected {
            self.flush(idx);
        }
    }

    fn connect(&mut self, idx: usize) -> Result<(), ErrorKind> {
        let addr = self.plan.addr;
        let sock = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        )
        .map_err(|_| ErrorKind::Connect)?;
        let _ = sock.set_nodelay(true);
        match sock.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(_) => return Err(ErrorKind::Connect),
        }
        let c = &mut self.conns[idx];
        c.generation = c.generation.wrapping_add(1);
        let token = c.token(idx);
        self.epoll
            .add(sock.as_raw_fd(), token)
            .map_err(|_| ErrorKind::Connect)?;
        // Completion (or failure) arrives as a writable or error event, even when the connect
        // finished at once: adding a ready socket to epoll reports it.
        c.sock = Some(sock);
        c.connected = false;
        if c.rbuf.len() < READ_BUF {
            c.rbuf.resize(READ_BUF, 0);
        }
        Ok(())
    }

    fn on_event(&mut self, ev: Event) {
        let idx = (ev.token & 0xFFFF_FFFF) as usize;
        let generation = (ev.token >> 32) as u32;
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        if c.generation != generation {
            return;
        }
        let Some(sock) = c.sock.as_ref() else {
            return;
        };
        if !c.connected {
            let failed = ev.hangup || !matches!(sock.take_error(), Ok(None));
            if failed {
                self.fail(idx, ErrorKind::Connect);
                return;
            }
            if !ev.writable {
                return;
            }
            c.connected = true;
            self.stats.connects += 1;
            if c.woff < c.wbuf.len() {
                self.flush(idx);
            }
            // The write may have failed; fall through only if the socket is still there.
            if self.conns[idx].generation != generation {
                return;
            }
        } else if ev.writable && c.woff < c.wbuf.len() {
            self.flush(idx);
            if self.conns[idx].generation != generation {
                return;
            }
        }
        if ev.readable || ev.hangup {
            match self.read(idx, ev.peer_closed) {
                ReadOutcome::Pending => {}
                ReadOutcome::IdleClosed => self.conns[idx].close(),
                ReadOutcome::Failed(kind) => self.fail(idx, kind),
                ReadOutcome::Response { head, close } => self.complete(idx, head, close),
            }
        }
    }

    fn flush(&mut self, idx: usize) {
        let c = &mut self.conns[idx];
        let Some(sock) = c.sock.as_ref() else {
            return;
        };
        let mut w: &Socket = sock;
        while c.woff < c.wbuf.len() {
            match w.write(&c.wbuf[c.woff..]) {
                Ok(0) => return self.fail(idx, ErrorKind::Closed),
                Ok(n) => c.woff += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(idx, io_kind(&e)),
            }
        }
    }

    /// Reads what the socket has. Edge-triggered, so this reads until the kernel has nothing
    /// more, except after a complete response taken by a short read (the buffer was not
    /// filled, so nothing else was waiting): that saves one `read` per request.
    fn read(&mut self, idx: usize, peer_closed: bool) -> ReadOutcome {
        let c = &mut self.conns[idx];
        let Some(sock) = c.sock.as_ref() else {
            return ReadOutcome::Pending;
        };
        let mut r: &Socket = sock;
        // A complete response whose read filled the buffer: drain before returning it.
        let mut done: Option<Head> = None;
        loop {
            if c.rlen == c.rbuf.len() {
                let want = (c.rbuf.len() * 2).max(READ_BUF);
                if want > MAX_BODY + 64 * 1024 {
                    return ReadOutcome::Failed(ErrorKind::Protocol);
                }
                c.rbuf.resize(want, 0);
            }
            let space = c.rbuf.len() - c.rlen;
            let n = match r.read(&mut c.rbuf[c.rlen..]) {
                Ok(0) if done.is_some() || c.req.is_none() => {
                    return match done {
                        Some(head) => ReadOutcome::Response { head, close: true },
                        None => ReadOutcome::IdleClosed,
                    }
                }
                Ok(0) => return ReadOutcome::Failed(ErrorKind::Closed),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return match done {
                        Some(head) => ReadOutcome::Response {
                            head,
                            close: peer_closed,
                        },
                        None => ReadOutcome::Pending,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) if c.req.is_none() => return ReadOutcome::IdleClosed,
                Err(e) => return ReadOutcome::Failed(io_kind(&e)),
            };
            c.rlen += n;
            if let Some(head) = done {
                // Bytes after a complete response that no request asked for.
                c.rlen = 0;
                return ReadOutcome::Response { head, close: true };
            }
            if c.req.is_none() {
                // Bytes nobody asked for (an unsolicited error, a 408): drop the connection.
                return ReadOutcome::IdleClosed;
            }
            if c.head.is_none() {
                match parse_head(&c.rbuf[..c.rlen]) {
                    Parse::Head(h) => c.head = Some(h),
                    Parse::Incomplete => continue,
                    Parse::Invalid(_) => return ReadOutcome::Failed(ErrorKind::Protocol),
                }
            }
            let Some(head) = c.head else {
                continue;
            };
            let total = head.total_len();
            if c.rlen < total {
                if c.rbuf.len() < total {
                    c.rbuf.resize(total, 0);
                }
                continue;
            }
            let extra = c.rlen > total;
            c.rlen = 0;
            c.head = None;
            if extra || peer_closed {
                return ReadOutcome::Response { head, close: true };
            }
            if n < space {
                return ReadOutcome::Response { head, close: false };
            }
            done = Some(head);
        }
    }

    fn complete(&mut self, idx: usize, head: Head, close: bool) {
        // Read the clock per response: one epoll batch can take a while to work through.
        let now = Instant::now();
        let c = &mut self.conns[idx];
        let Some(req) = c.req.take() else {
            return;
        };
        self.in_flight -= 1;
        let latency = now.saturating_duration_since(req.scheduled).as_micros() as u64;
        let service = now.saturating_duration_since(req.sent).as_micros() as u64;
        self.stats.ops[req.op.index()].record_response(&head, latency, service);
        let second = now.saturating_duration_since(self.start).as_secs();
        self.stats.timeline_response(second, head.status, latency);
        if head.close || close {
            c.close();
        }
        self.ready.push(idx);
    }

    /// Ends the request on slot `idx` (if any) with `kind` and closes its connection.
    /// A slot without a request (open loop: already in `idle`) is only closed.
    fn fail(&mut self, idx: usize, kind: ErrorKind) {
        let closed_loop = self.closed();
        let c = &mut self.conns[idx];
        c.close();
        if let Some(req) = c.req.take() {
            self.in_flight -= 1;
            self.stats.ops[req.op.index()].record_error(kind);
            let second = self.start.elapsed().as_secs();
            self.stats.timeline_error(second, kind);
            if kind == ErrorKind::Connect && closed_loop {
                c.retry_at = Some(Instant::now() + CONNECT_BACKOFF);
                return;
            }
            self.ready.push(idx);
        }
    }
}

/// Maps a socket error during a request to its report kind.
fn io_kind(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::TimedOut => ErrorKind::Timeout,
        io::ErrorKind::UnexpectedEof => ErrorKind::Closed,
        io::ErrorKind::ConnectionRefused => ErrorKind::Connect,
        _ => ErrorKind::Reset,
    }
}
