//! One client connection: read bytes through glommio, parse requests, hand them to the app
//! (`App::route`, then `App::handle`), write responses. Keep-alive, pipelining (answers in order, written together), `HEAD`,
//! `Expect: 100-continue`, bodies by length or chunked, timeouts, and drain on shutdown.
//!
//! Hot path. The connection code never touches cache or queues: it asks the shard's app for a
//! route and hands it the request (`runtime::App`). Part of the runtime: names no app type.

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::error::ApiError;
use crate::http::chunked::ChunkedDecoder;
use crate::http::parse::{BodyKind, Head, HeadScanner, Parsed, Version};
use crate::http::response::{write_response, Framing, CONTINUE};
use crate::http::{Request, Response, Status};
use crate::runtime::{App, Core};

/// Initial read buffer size; grows up to the head limit as needed.
const READ_CHUNK: usize = 8 * 1024;
/// Write buffer size past which pipelined responses are flushed without waiting for the end of
/// the pipeline.
const FLUSH_AT: usize = 256 * 1024;

/// Serves one accepted connection until it closes.
pub async fn serve<A: App>(shard: Rc<A>, stream: TcpStream) {
    let shard_core = Rc::clone(shard.core());
    let _open = shard_core.open_connection();
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(shard_core.config.keepalive_timeout));
    let peer = stream.peer_addr().ok().map(|a| a.ip());
    let mut conn = Conn {
        peer,
        core: shard_core,
        shard,
        stream,
        rbuf: ReadBuf::new(),
        wbuf: Vec::with_capacity(READ_CHUNK),
    };
    if let Err(e) = conn.run().await {
        log::debug!("connection ended: {e}");
    }
}

/// Why the request loop stopped.
enum Stop {
    /// The peer closed or the connection failed; nothing more can be sent.
    Io(io::Error),
    /// Send this error response, then close.
    Respond(ApiError),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Self {
        Stop::Io(e)
    }
}

/// What a wait for more bytes produced.
enum ReadOutcome {
    Data,
    Eof,
    TimedOut,
    Shutdown,
}

struct Conn<A: App> {
    /// The app that answers requests.
    shard: Rc<A>,
    /// The runtime's part of the shard (counters, limits, configuration, shutdown).
    core: Rc<Core<A::Call, A::Reply>>,
    /// The client's address (security events, per-address failure counts).
    peer: Option<std::net::IpAddr>,
    stream: TcpStream,
    rbuf: ReadBuf,
    wbuf: Vec<u8>,
}

impl<A: App> Conn<A> {
    async fn run(&mut self) -> io::Result<()> {
        match self.request_loop().await {
            Ok(()) => self.flush().await,
            Err(Stop::Io(e)) => Err(e),
            Err(Stop::Respond(err)) => {
                let framing = Framing {
                    head_only: false,
                    close: true,
                    http10_keep_alive: false,
                };
                write_response(&mut self.wbuf, &err.to_response(), framing, self.core.id);
                self.flush().await?;
                self.linger().await;
                Ok(())
            }
        }
    }

    /// Closes gracefully after an error response: stop sending, then read and discard what
    /// the client is still sending for a short while, so the kernel does not answer its data
    /// with a reset that could destroy the response before the client reads it (what nginx
    /// calls a lingering close).
    async fn linger(&mut self) {
        const LINGER: Duration = Duration::from_secs(2);
        const LINGER_BYTES: usize = 256 * 1024;
        let _ = self.stream.shutdown(std::net::Shutdown::Write).await;
        let deadline = Instant::now() + LINGER;
        let mut drained = 0;
        let mut sink = [0u8; 4096];
        while drained < LINGER_BYTES {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                return;
            }
            match self.stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    }

    /// Handles requests until the connection should close. `Ok` means close quietly after
    /// flushing; `Stop::Respond` means send that error first.
    async fn request_loop(&mut self) -> Result<(), Stop> {
        let mut head_started: Option<Instant> = None;
        // The first request of a connection gets the header timeout, not the keep-alive one:
        // a client that connects and sends nothing is held no longer than a slow one.
        let mut first = true;
        // Parses a head only once its end may have arrived (see `HeadScanner`).
        let mut scanner = HeadScanner::new();
        loop {
            let data = self.rbuf.data();
            let head = match scanner.poll(data, &self.core.limits) {
                Err(e) => return Err(Stop::Respond(e)),
                Ok(Parsed::Done(head)) => head,
                Ok(Parsed::Incomplete) => {
                    let idle = data.is_empty() && !first;
                    if data.is_empty() && self.core.is_draining() {
                        return Ok(());
                    }
                    self.flush().await?;
                    let timeout = if idle {
                        head_started = None;
                        self.core.config.keepalive_timeout
                    } else {
                        let started = *head_started.get_or_insert_with(Instant::now);
                        let spent = started.elapsed();
                        match self.core.config.header_timeout.checked_sub(spent) {
                            Some(left) if !left.is_zero() => left,
                            _ => return Err(Stop::Respond(header_timeout())),
                        }
                    };
                    let waiting_for_first_byte = self.rbuf.data().is_empty();
                    match self.fill(timeout, waiting_for_first_byte).await? {
                        ReadOutcome::Data => {
                            head_started.get_or_insert_with(Instant::now);
                            continue;
                        }
                        ReadOutcome::Eof | ReadOutcome::Shutdown => return Ok(()),
                        ReadOutcome::TimedOut if waiting_for_first_byte => return Ok(()),
                        ReadOutcome::TimedOut => return Err(Stop::Respond(header_timeout())),
                    }
                }
            };
            head_started = None;
            first = false;
            let raw = Bytes::copy_from_slice(&self.rbuf.data()[..head.len]);
            self.rbuf.consume(head.len);
            let close = self.handle(head, raw).await?;
            if close {
                return Ok(());
            }
            if self.wbuf.len() >= FLUSH_AT {
                self.flush().await?;
            }
        }
    }

    /// Reads the body, routes the request and queues the response. Returns whether the
    /// connection must close after it.
    async fn handle(&mut self, head: Head, raw: Bytes) -> Result<bool, Stop> {
        let route = match self
            .shard
            .route(head.method, head.path(&raw), head.method_str(&raw))
        {
            Ok(route) => route,
            // With `Expect: 100-continue` the body has not been sent: refuse it unread.
            Err(e) if head.expect_continue && head.body != BodyKind::Empty => {
                return Err(Stop::Respond(ApiError { close: true, ..e }));
            }
            Err(e) => {
                self.read_body(&head).await?;
                return Ok(self.queue(&head, &e.to_response()));
            }
        };
        if !self.wbuf.is_empty() && (A::is_slow(route) || !self.body_buffered(&head)) {
            // Answers to earlier pipelined requests must not wait for this one's body or
            // computation.
            self.flush().await?;
        }
        let body = self.read_body(&head).await?;
        let request = Request { head, raw, body };
        let response = self.shard.handle(route, &request, self.peer).await;
        Ok(self.queue(&request.head, &response))
    }

    /// Serialises `response` into the write buffer; returns whether the connection closes
    /// after it (the client asked, the response demands it, or the shard is draining).
    fn queue(&mut self, head: &Head, response: &Response) -> bool {
        let close = response.close || !head.keep_alive || self.core.is_draining();
        let framing = Framing {
            head_only: head.method == crate::http::Method::Head,
            close,
            http10_keep_alive: head.version == Version::Http10 && !close,
        };
        write_response(&mut self.wbuf, response, framing, self.core.id);
        self.core.count_request();
        close
    }

    /// Whether the whole body of `head` is already in the read buffer.
    fn body_buffered(&self, head: &Head) -> bool {
        match head.body {
            BodyKind::Empty => true,
            BodyKind::Length(n) => self.rbuf.data().len() as u64 >= n,
            BodyKind::Chunked => false,
        }
    }

    /// Reads the body. The whole body must arrive within `ATLAS_HEADER_TIMEOUT_MS` of its
    /// start (an overall deadline, not a per-read one: a client trickling a byte at a time
    /// cannot hold the connection).
    async fn read_body(&mut self, head: &Head) -> Result<Bytes, Stop> {
        let deadline = Instant::now() + self.core.config.header_timeout;
        let left = || {
            let d = deadline.saturating_duration_since(Instant::now());
            if d.is_zero() {
                Err(Stop::Respond(body_timeout()))
            } else {
                Ok(d)
            }
        };
        match head.body {
            BodyKind::Empty => Ok(Bytes::new()),
            BodyKind::Length(n) => {
                let n = usize::try_from(n).map_err(|_| Stop::Respond(too_large()))?;
                let buffered = self.rbuf.data().len().min(n);
                if buffered < n && head.expect_continue {
                    self.send_continue().await?;
                }
                let mut body = vec![0u8; n];
                body[..buffered].copy_from_slice(&self.rbuf.data()[..buffered]);
                self.rbuf.consume(buffered);
                let mut filled = buffered;
                while filled < n {
                    self.stream
                        .set_read_timeout(Some(left()?))
                        .map_err(|e| Stop::Io(io::Error::other(e.to_string())))?;
                    match self.stream.read(&mut body[filled..]).await {
                        Ok(0) => return Err(Stop::Io(io::ErrorKind::UnexpectedEof.into())),
                        Ok(k) => filled += k,
                        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                            return Err(Stop::Respond(body_timeout()))
                        }
                        Err(e) => return Err(Stop::Io(e)),
                    }
                }
                Ok(Bytes::from(body))
            }
            BodyKind::Chunked => {
                if head.expect_continue && self.rbuf.data().is_empty() {
                    self.send_continue().await?;
                }
                let mut decoder = ChunkedDecoder::new(self.core.config.max_body_bytes);
                let mut body = Vec::new();
                loop {
                    let progress = decoder
                        .decode(self.rbuf.data(), &mut body)
                        .map_err(Stop::Respond)?;
                    self.rbuf.consume(progress.consumed);
                    if progress.done {
                        return Ok(Bytes::from(body));
                    }
                    match self.fill(left()?, false).await? {
                        ReadOutcome::Data => {}
                        ReadOutcome::TimedOut => return Err(Stop::Respond(body_timeout())),
                        ReadOutcome::Eof | ReadOutcome::Shutdown => {
                            return Err(Stop::Io(io::ErrorKind::UnexpectedEof.into()))
                        }
                    }
                }
            }
        }
    }

    async fn send_continue(&mut self) -> io::Result<()> {
        self.flush().await?;
        self.stream.write_all(CONTINUE).await
    }

    /// Reads more bytes into the read buffer. When `idle` (between requests), also returns on
    /// shutdown so idle keep-alive connections close at once.
    async fn fill(&mut self, timeout: Duration, idle: bool) -> io::Result<ReadOutcome> {
        self.stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| io::Error::other(e.to_string()))?;
        let spare = self.rbuf.spare();
        let read = if idle {
            let core = Rc::clone(&self.core);
            futures_lite::future::or(async { Some(self.stream.read(spare).await) }, async move {
                core.shutdown_started().await;
                None
            })
            .await
        } else {
            Some(self.stream.read(spare).await)
        };
        match read {
            None => Ok(ReadOutcome::Shutdown),
            Some(Ok(0)) => Ok(ReadOutcome::Eof),
            Some(Ok(n)) => {
                self.rbuf.filled(n);
                Ok(ReadOutcome::Data)
            }
            Some(Err(e)) if e.kind() == io::ErrorKind::TimedOut => Ok(ReadOutcome::TimedOut),
            Some(Err(e)) => Err(e),
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let result = self.stream.write_all(&self.wbuf).await;
        self.wbuf.clear();
        if self.wbuf.capacity() > 4 * FLUSH_AT {
            self.wbuf.shrink_to(READ_CHUNK);
        }
        result
    }
}

fn header_timeout() -> ApiError {
    ApiError::fatal(
        Status::RequestTimeout,
        "request_timeout",
        "the request head did not arrive in time",
    )
}

fn body_timeout() -> ApiError {
    ApiError::fatal(
        Status::RequestTimeout,
        "request_timeout",
        "the request body did not arrive in time",
    )
}

fn too_large() -> ApiError {
    ApiError::fatal(
        Status::PayloadTooLarge,
        "payload_too_large",
        "body is too large",
    )
}

/// A read buffer: bytes in `buf[start..end]` are unparsed input.
struct ReadBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    fn new() -> Self {
        ReadBuf {
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
        }
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Free space to read into: compacts, and grows when less than a quarter chunk is free.
    /// The head parser's limits stop growth long before memory matters.
    fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 && self.buf.len() - self.end < READ_CHUNK / 4 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < READ_CHUNK / 4 {
            let len = self.buf.len();
            self.buf.resize(len + READ_CHUNK, 0);
        }
        &mut self.buf[self.end..]
    }

    fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }
}
