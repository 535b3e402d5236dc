//! A minimal HTTP/1.1 client on glommio for calling model endpoints: one per endpoint per
//! shard, with a keep-alive connection pool, a deadline on every exchange, a bounded response
//! size, and responses parsed by hand with httparse (bodies by `Content-Length`, chunked, or
//! until close).
//!
//! Shard-local (`Rc`, `RefCell`), no locks. The address is resolved before the executors start
//! (no DNS on a shard thread). A request that fails on a reused keep-alive connection before
//! any byte of the answer arrived is retried once on a fresh connection (the peer may have
//! closed it while idle); batch inference is idempotent, so that retry is safe.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

mod error;
pub use error::EndpointError;

mod response;
pub use response::ResponseReader;

/// Largest response accepted from an endpoint.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// A response: status and body.
#[derive(Debug, Clone)]
pub struct ClientResponse {
    /// HTTP status code.
    pub status: u16,
    /// Body bytes (de-chunked).
    pub body: Bytes,
}

/// Calls one HTTP origin (`http://host:port`).
pub struct HttpClient {
    addr: SocketAddr,
    host: String,
    idle: RefCell<Vec<TcpStream>>,
    max_idle: usize,
    connect_timeout: Duration,
}

enum Failure {
    /// Nothing of the answer arrived: safe to retry on a fresh connection.
    BeforeResponse(EndpointError),
    /// Failed after part of the answer arrived.
    After(EndpointError),
}

impl HttpClient {
    /// A client for `addr`, sending `host` as the `Host` header, keeping up to `max_idle`
    /// idle connections (0: no pooling).
    pub fn new(addr: SocketAddr, host: String, max_idle: usize, connect_timeout: Duration) -> Self {
        HttpClient {
            addr,
            host,
            idle: RefCell::new(Vec::new()),
            max_idle,
            connect_timeout,
        }
    }

    /// `POST path` with a JSON body, answered within `timeout`.
    pub async fn post_json(
        &self,
        path: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<ClientResponse, EndpointError> {
        let mut head = Vec::with_capacity(128 + body.len());
        head.extend_from_slice(b"POST ");
        head.extend_from_slice(path.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        head.extend_from_slice(self.host.as_bytes());
        head.extend_from_slice(b"\r\nContent-Type: application/json\r\nContent-Length: ");
        head.extend_from_slice(body.len().to_string().as_bytes());
        head.extend_from_slice(b"\r\n\r\n");
        head.extend_from_slice(body);
        self.send(&head, timeout).await
    }

    /// `GET path`, answered within `timeout`.
    pub async fn get(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<ClientResponse, EndpointError> {
        let head = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.send(head.as_bytes(), timeout).await
    }

    async fn send(
        &self,
        request: &[u8],
        timeout: Duration,
    ) -> Result<ClientResponse, EndpointError> {
        let deadline = Instant::now() + timeout;
        let exchange = async {
            let pooled = self.take_idle();
            if let Some(stream) = pooled {
                match self.exchange(stream, request).await {
                    Err(Failure::BeforeResponse(_)) => {}
                    Err(Failure::After(e)) => return Err(e),
                    Ok(r) => return Ok(r),
                }
            }
            let stream = self.connect(deadline).await?;
            self.exchange(stream, request).await.map_err(|f| match f {
                Failure::BeforeResponse(e) | Failure::After(e) => e,
            })
        };
        futures_lite::future::or(exchange, async {
            glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
            Err(EndpointError::Timeout)
        })
        .await
    }

    /// The most recently used idle connection that is still clean (see [`idle_is_clean`]);
    /// the others are dropped.
    fn take_idle(&self) -> Option<TcpStream> {
        let mut idle = self.idle.borrow_mut();
        while let Some(stream) = idle.pop() {
            if idle_is_clean(&stream) {
                return Some(stream);
            }
        }
        None
    }

    async fn connect(&self, deadline: Instant) -> Result<TcpStream, EndpointError> {
        let limit = self
            .connect_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        if limit.is_zero() {
            return Err(EndpointError::Timeout);
        }
        let stream = TcpStream::connect_timeout(self.addr, limit)
            .await
            .map_err(|e| EndpointError::Connect(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// One request/response on `stream`; returns the stream to the pool when it stays open.
    async fn exchange(
        &self,
        mut stream: TcpStream,
        request: &[u8],
    ) -> Result<ClientResponse, Failure> {
        let io_err = |e: io::Error| EndpointError::Connect(e.to_string());
        stream
            .write_all(request)
            .await
            .map_err(|e| Failure::BeforeResponse(io_err(e)))?;
        let mut reader = ResponseReader::new();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let read = stream.read(&mut chunk).await.map_err(io_err);
            let done = read.and_then(|n| match n {
                0 => reader.eof().map(|()| true),
                n => reader.push(&chunk[..n]),
            });
            match done {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) if reader.started() => return Err(Failure::After(e)),
                Err(e) => return Err(Failure::BeforeResponse(e)),
            }
        }
        let Some((response, reusable)) = reader.finish() else {
            return Err(Failure::After(EndpointError::Protocol(
                "response incomplete".into(),
            )));
        };
        if reusable && self.max_idle > 0 {
            let mut idle = self.idle.borrow_mut();
            if idle.len() < self.max_idle {
                idle.push(stream);
            }
        }
        Ok(response)
    }
}

/// Whether an idle pooled connection can carry a new request: the peer has neither closed it
/// nor sent bytes nobody asked for (a late or duplicated answer, which would otherwise be read
/// as the answer to the next request). One non-blocking `recv(MSG_PEEK)`.
fn idle_is_clean(stream: &TcpStream) -> bool {
    let mut byte = 0u8;
    // SAFETY: `recv` on a descriptor the stream owns and keeps open for this call, into one
    // byte we own; MSG_PEEK consumes nothing, MSG_DONTWAIT never blocks.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
}
