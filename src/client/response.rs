//! Reading one HTTP/1.1 response from an endpoint, however the bytes arrive: the head parsed
//! by hand with httparse, interim (1xx) answers skipped, the body framed by `Content-Length`,
//! chunked encoding or the end of the connection, limits on head and body size, and whether
//! the connection may be reused. Pure (bytes in, a response out); property-tested.

use super::EndpointError;
use crate::http::chunked::ChunkedDecoder;
use crate::http::parse::parse_decimal;

use bytes::Bytes;

use super::{ClientResponse, MAX_RESPONSE_BYTES};

/// Largest response head accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Where a [`ResponseReader`] is.
#[derive(Debug, Clone)]
enum ReadState {
    /// Collecting the head (interim 1xx responses are skipped).
    Head,
    /// This many body bytes remain.
    Length(usize),
    /// A chunked body.
    Chunked(ChunkedDecoder),
    /// A body delimited by the peer closing.
    UntilClose,
    /// The response is complete.
    Done,
}

/// A sans-I/O reader of one HTTP/1.1 response: feed it bytes as they arrive
/// ([`ResponseReader::push`]) and the end of the stream ([`ResponseReader::eof`]); it
/// enforces the size limits, skips interim `1xx` responses, de-chunks, and says whether the
/// connection can be reused (keep-alive, a self-delimited body, and no byte past its end).
/// The client drives it over a socket; the `batch_response` fuzz target drives it directly.
#[derive(Debug, Clone)]
pub struct ResponseReader {
    state: ReadState,
    /// Received bytes not consumed yet: the head while incomplete, then chunked input.
    pending: Vec<u8>,
    status: u16,
    keep_alive: bool,
    until_close: bool,
    body: Vec<u8>,
    /// Some byte arrived (a failure after that is not safe to retry on a fresh connection).
    started: bool,
    /// Bytes arrived past the end of the response.
    trailing: bool,
}

impl Default for ResponseReader {
    fn default() -> Self {
        ResponseReader::new()
    }
}

impl ResponseReader {
    /// A reader waiting for a response head.
    pub fn new() -> Self {
        ResponseReader {
            state: ReadState::Head,
            pending: Vec::new(),
            status: 0,
            keep_alive: false,
            until_close: false,
            body: Vec::new(),
            started: false,
            trailing: false,
        }
    }

    /// Whether any byte of the response has arrived.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Feeds the next bytes; `Ok(true)` once the response is complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<bool, EndpointError> {
        self.started |= !bytes.is_empty();
        match &mut self.state {
            ReadState::Done => {
                self.trailing |= !bytes.is_empty();
                Ok(true)
            }
            ReadState::Head => {
                self.pending.extend_from_slice(bytes);
                self.head()
            }
            _ => self.body_bytes(bytes),
        }
    }

    /// The peer closed the connection: completes a body delimited by close, fails otherwise.
    pub fn eof(&mut self) -> Result<(), EndpointError> {
        match self.state {
            ReadState::Done => Ok(()),
            ReadState::UntilClose => {
                self.state = ReadState::Done;
                Ok(())
            }
            ReadState::Head => Err(EndpointError::Connect(
                "connection closed before the response".into(),
            )),
            ReadState::Length(_) | ReadState::Chunked(_) => Err(EndpointError::Connect(
                "connection closed inside the body".into(),
            )),
        }
    }

    /// The complete response and whether its connection may be reused; `None` before the
    /// response is complete.
    pub fn finish(self) -> Option<(ClientResponse, bool)> {
        if !matches!(self.state, ReadState::Done) {
            return None;
        }
        let reusable = self.keep_alive && !self.until_close && !self.trailing;
        Some((
            ClientResponse {
                status: self.status,
                body: Bytes::from(self.body),
            },
            reusable,
        ))
    }

    fn head(&mut self) -> Result<bool, EndpointError> {
        loop {
            let Some((status, len, framing, keep_alive)) = parse_response_head(&self.pending)?
            else {
                if self.pending.len() > MAX_HEAD_BYTES {
                    return Err(EndpointError::Protocol("response head too large".into()));
                }
                return Ok(false);
            };
            if len > MAX_HEAD_BYTES {
                return Err(EndpointError::Protocol("response head too large".into()));
            }
            if (100..200).contains(&status) {
                if status == 101 {
                    return Err(EndpointError::Protocol(
                        "unexpected 101 Switching Protocols".into(),
                    ));
                }
                // An interim response (100 Continue, 103 Early Hints): the final one follows.
                self.pending.drain(..len);
                continue;
            }
            self.status = status;
            self.keep_alive = keep_alive;
            self.state = match framing {
                Framing::Length(n) if n > MAX_RESPONSE_BYTES => {
                    return Err(EndpointError::Protocol("response too large".into()));
                }
                Framing::Length(0) => ReadState::Done,
                Framing::Length(n) => ReadState::Length(n),
                Framing::Chunked => {
                    ReadState::Chunked(ChunkedDecoder::new(MAX_RESPONSE_BYTES as u64))
                }
                Framing::UntilClose => {
                    self.until_close = true;
                    ReadState::UntilClose
                }
            };
            let rest = self.pending.split_off(len);
            self.pending.clear();
            if matches!(self.state, ReadState::Done) {
                self.trailing |= !rest.is_empty();
                return Ok(true);
            }
            return self.body_bytes(&rest);
        }
    }

    fn body_bytes(&mut self, bytes: &[u8]) -> Result<bool, EndpointError> {
        match &mut self.state {
            ReadState::Length(remaining) => {
                let take = (*remaining).min(bytes.len());
                self.body.extend_from_slice(&bytes[..take]);
                *remaining -= take;
                self.trailing |= bytes.len() > take;
                if *remaining == 0 {
                    self.state = ReadState::Done;
                }
            }
            ReadState::Chunked(decoder) => {
                self.pending.extend_from_slice(bytes);
                let progress = decoder
                    .decode(&self.pending, &mut self.body)
                    .map_err(|e| EndpointError::Protocol(e.message.into()))?;
                self.pending.drain(..progress.consumed);
                if progress.done {
                    self.trailing |= !self.pending.is_empty();
                    self.pending = Vec::new();
                    self.state = ReadState::Done;
                }
            }
            ReadState::UntilClose => {
                if self.body.len() + bytes.len() > MAX_RESPONSE_BYTES {
                    return Err(EndpointError::Protocol("response too large".into()));
                }
                self.body.extend_from_slice(bytes);
            }
            ReadState::Done => self.trailing |= !bytes.is_empty(),
            ReadState::Head => return Ok(false),
        }
        Ok(matches!(self.state, ReadState::Done))
    }
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
    let mut length: Option<u64> = None;
    let mut coding: Option<bool> = None; // Some(chunked is the final coding)
    let mut keep_alive = response.version == Some(1);
    for h in response.headers.iter() {
        let value = h.value.trim_ascii();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = parse_decimal(value)
                .ok_or_else(|| EndpointError::Protocol("bad Content-Length".into()))?;
            if length.is_some_and(|l| l != n) {
                return Err(EndpointError::Protocol(
                    "conflicting Content-Length values".into(),
                ));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = value
                .rsplit(|&b| b == b',')
                .next()
                .unwrap_or(b"")
                .trim_ascii();
            coding = Some(last.eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length (and a message with both is
    // suspect: its connection is not reused); a final coding other than chunked is read
    // until the peer closes.
    let framing = match (coding, length) {
        _ if status == 204 || status == 304 || (100..200).contains(&status) => Framing::Length(0),
        (Some(chunked), l) => {
            keep_alive &= l.is_none();
            if chunked {
                Framing::Chunked
            } else {
                Framing::UntilClose
            }
        }
        (None, Some(n)) => Framing::Length(usize::try_from(n).unwrap_or(usize::MAX)),
        (None, None) => Framing::UntilClose,
    };
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

    /// Reads `bytes` pushed whole, then EOF if `close`.
    fn read(bytes: &[u8], close: bool) -> Result<Option<(u16, Vec<u8>, bool)>, EndpointError> {
        let mut r = ResponseReader::new();
        if !r.push(bytes)? && close {
            r.eof()?;
        }
        Ok(r.finish()
            .map(|(resp, reusable)| (resp.status, resp.body.to_vec(), reusable)))
    }

    #[test]
    fn reader_frames_bodies_and_decides_reuse() {
        assert_eq!(
            read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false).unwrap(),
            Some((200, b"hello".to_vec(), true))
        );
        assert_eq!(
            read(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                false
            )
            .unwrap(),
            Some((200, b"abc".to_vec(), true))
        );
        assert_eq!(
            read(b"HTTP/1.1 200 OK\r\n\r\nuntil close", true).unwrap(),
            Some((200, b"until close".to_vec(), false))
        );
        assert_eq!(
            read(b"HTTP/1.1 204 No Content\r\n\r\n", false).unwrap(),
            Some((204, Vec::new(), true))
        );
    }

    #[test]
    fn interim_responses_are_skipped() {
        assert_eq!(
            read(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false)
                .unwrap(),
            Some((200, b"ok".to_vec(), true))
        );
        assert!(read(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", false).is_err());
    }

    /// Regression: bytes past the end of a response (a wrong Content-Length, a duplicated
    /// answer) made the connection look reusable when they arrived in a later read, so the
    /// next request on it read them as its answer. Now any byte past the end marks the
    /// connection spent, and a pooled connection with unread bytes is never reused.
    #[test]
    fn bytes_past_the_end_spoil_the_connection() {
        let mut r = ResponseReader::new();
        assert!(r
            .push(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .unwrap());
        assert!(r.push(b"HTTP/1.1 200 OK\r\n").unwrap());
        assert!(!r.finish().unwrap().1);
        assert_eq!(
            read(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
                false
            )
            .unwrap(),
            Some((200, b"ok".to_vec(), false))
        );
    }

    /// Regression: with both headers the later one used to win, so `Transfer-Encoding:
    /// chunked` followed by `Content-Length` read the chunked body as raw bytes.
    #[test]
    fn transfer_encoding_beats_content_length_and_conflicts_fail() {
        assert_eq!(
            read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n1\r\nx\r\n0\r\n\r\n", false)
                .unwrap(),
            Some((200, b"x".to_vec(), false))
        );
        assert!(read(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            false
        )
        .is_err());
    }

    #[test]
    fn limits_and_truncation_fail() {
        let mut big = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        big.resize(MAX_HEAD_BYTES + 10, b'a');
        assert!(read(&big, false).is_err());
        let too_long = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_RESPONSE_BYTES + 1
        );
        assert!(read(too_long.as_bytes(), false).is_err());
        assert!(read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", true).is_err());
        assert!(read(b"HTTP/1.1 200 OK\r\nContent-Le", true).is_err());
        let mut r = ResponseReader::new();
        assert!(!r.started());
        assert!(r.eof().is_err(), "EOF before any byte");
        assert!(!r.started(), "safe to retry on a fresh connection");
    }

    proptest::proptest! {
        /// Any bytes split anywhere read the same as whole (response, reuse, or failure).
        #[test]
        fn split_reads_equal_whole(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            cut in 0usize..300,
        ) {
            let whole = read(&bytes, true).map_err(|e| e.to_string());
            let cut = cut.min(bytes.len());
            let mut r = ResponseReader::new();
            let split = (|| {
                let first = r.push(&bytes[..cut])?;
                if !r.push(&bytes[cut..])? && !first {
                    r.eof()?;
                }
                Ok(r.finish().map(|(resp, reusable)| (resp.status, resp.body.to_vec(), reusable)))
            })()
            .map_err(|e: EndpointError| e.to_string());
            proptest::prop_assert_eq!(split, whole);
        }
    }
}
