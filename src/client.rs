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
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::endpoint::EndpointError;
use crate::http::chunked::ChunkedDecoder;
use crate::http::parse::parse_decimal;

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
            let pooled = self.idle.borrow_mut().pop();
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
        let mut buf = vec![0u8; 16 * 1024];
        let mut filled = 0;
        let (status, head_len, framing, keep_alive) = loop {
            if filled == buf.len() {
                if buf.len() >= 64 * 1024 {
                    return Err(Failure::After(EndpointError::Protocol(
                        "response head too large".into(),
                    )));
                }
                buf.resize(buf.len() * 2, 0);
            }
            let n = stream.read(&mut buf[filled..]).await.map_err(|e| {
                if filled == 0 {
                    Failure::BeforeResponse(io_err(e))
                } else {
                    Failure::After(io_err(e))
                }
            })?;
            if n == 0 {
                let e = EndpointError::Connect("connection closed before the response".into());
                return Err(if filled == 0 {
                    Failure::BeforeResponse(e)
                } else {
                    Failure::After(e)
                });
            }
            filled += n;
            if let Some(head) = parse_response_head(&buf[..filled]).map_err(Failure::After)? {
                break head;
            }
        };
        let mut body = Vec::new();
        let leftover = &buf[head_len..filled];
        let reusable = match framing {
            Framing::Length(len) => {
                if len > MAX_RESPONSE_BYTES {
                    return Err(Failure::After(EndpointError::Protocol(
                        "response too large".into(),
                    )));
                }
                body.reserve(len);
                body.extend_from_slice(&leftover[..leftover.len().min(len)]);
                while body.len() < len {
                    let start = body.len();
                    body.resize(len.min(start + 64 * 1024), 0);
                    let n = stream
                        .read(&mut body[start..])
                        .await
                        .map_err(|e| Failure::After(io_err(e)))?;
                    if n == 0 {
                        return Err(Failure::After(EndpointError::Connect(
                            "connection closed inside the body".into(),
                        )));
                    }
                    body.truncate(start + n);
                }
                leftover.len() <= len
            }
            Framing::Chunked => {
                let mut decoder = ChunkedDecoder::new(MAX_RESPONSE_BYTES as u64);
                let mut pending = leftover.to_vec();
                let mut chunk = vec![0u8; 16 * 1024];
                loop {
                    let progress = decoder
                        .decode(&pending, &mut body)
                        .map_err(|e| Failure::After(EndpointError::Protocol(e.message.into())))?;
                    pending.drain(..progress.consumed);
                    if progress.done {
                        break pending.is_empty();
                    }
                    let n = stream
                        .read(&mut chunk)
                        .await
                        .map_err(|e| Failure::After(io_err(e)))?;
                    if n == 0 {
                        return Err(Failure::After(EndpointError::Connect(
                            "connection closed inside the body".into(),
                        )));
                    }
                    pending.extend_from_slice(&chunk[..n]);
                }
            }
            Framing::UntilClose => {
                body.extend_from_slice(leftover);
                let mut chunk = vec![0u8; 16 * 1024];
                loop {
                    let n = stream
                        .read(&mut chunk)
                        .await
                        .map_err(|e| Failure::After(io_err(e)))?;
                    if n == 0 {
                        break false;
                    }
                    if body.len() + n > MAX_RESPONSE_BYTES {
                        return Err(Failure::After(EndpointError::Protocol(
                            "response too large".into(),
                        )));
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
            }
        };
        if reusable && keep_alive && self.max_idle > 0 {
            let mut idle = self.idle.borrow_mut();
            if idle.len() < self.max_idle {
                idle.push(stream);
            }
        }
        Ok(ClientResponse {
            status,
            body: Bytes::from(body),
        })
    }
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Parses a response head: `None` when incomplete, else (status, head length, framing,
/// keep-alive).
fn parse_response_head(buf: &[u8]) -> Result<Option<(u16, usize, Framing, bool)>, EndpointError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(EndpointError::Protocol(format!("malformed response: {e}"))),
    };
    let status = response.code.unwrap_or(0);
    let mut framing = Framing::UntilClose;
    let mut keep_alive = response.version == Some(1);
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = parse_decimal(h.value.trim_ascii())
                .ok_or_else(|| EndpointError::Protocol("bad Content-Length".into()))?;
            framing = Framing::Length(usize::try_from(n).unwrap_or(usize::MAX));
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if h.value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                framing = Framing::Chunked;
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            if h.value.trim_ascii().eq_ignore_ascii_case(b"close") {
                keep_alive = false;
            } else if h.value.trim_ascii().eq_ignore_ascii_case(b"keep-alive") {
                keep_alive = true;
            }
        }
    }
    if status == 204 || status == 304 || (100..200).contains(&status) {
        framing = Framing::Length(0);
    }
    Ok(Some((status, len, framing, keep_alive)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads() {
        let (s, len, f, ka) =
            parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                .unwrap()
                .unwrap();
        assert_eq!((s, len, f, ka), (200, 38, Framing::Length(5), true));
        let (_, _, f, ka) = parse_response_head(
            b"HTTP/1.1 500 X\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!((f, ka), (Framing::Chunked, false));
        assert!(parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Le")
            .unwrap()
            .is_none());
        assert!(parse_response_head(b"garbage\r\n\r\n").is_err());
        let (_, _, f, ka) = parse_response_head(b"HTTP/1.0 200 OK\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((f, ka), (Framing::UntilClose, false));
    }
}
