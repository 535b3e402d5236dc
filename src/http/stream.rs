//! A sans-I/O model of the connection's read side, for property tests and fuzzing: bytes in,
//! in any pieces, requests (head and de-chunked body) or the error that ends the connection
//! out. It composes the same pure pieces the connection loop (`runtime::conn`) drives over its
//! socket — [`HeadScanner`] for heads, `Content-Length` framing, [`ChunkedDecoder`] for
//! chunked bodies — in the same order, and stops where the connection would stop reading
//! (after a request without keep-alive, or at the first error).
//!
//! The property it exists to check: the outcome for a byte stream does not depend on how the
//! stream was split into reads. Compiled for tests and fuzz builds only.

use crate::http::chunked::ChunkedDecoder;
use crate::http::error::ApiError;
use crate::http::parse::{BodyKind, HeadScanner, Limits, Method, Parsed, Version};

/// One request as read off the stream, with owned bytes (comparable across buffers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Method as a closed set.
    pub method: Method,
    /// Method as sent.
    pub method_raw: Vec<u8>,
    /// Path without the query.
    pub path: Vec<u8>,
    /// Query without `?`.
    pub query: Option<Vec<u8>>,
    /// Protocol version.
    pub version: Version,
    /// Keep-alive after this request.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    /// Header fields in order.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// Head length in bytes.
    pub head_len: usize,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// The error that ended the stream: status and code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// HTTP status.
    pub status: u16,
    /// Machine-readable code.
    pub code: &'static str,
}

impl From<&ApiError> for Failure {
    fn from(e: &ApiError) -> Self {
        Failure {
            status: e.status.code(),
            code: e.code,
        }
    }
}

#[derive(Debug, Clone)]
enum State {
    /// Waiting for a head.
    Head,
    /// Reading the body of `message`.
    Length { message: Message, remaining: usize },
    /// Reading a chunked body.
    Chunked {
        message: Message,
        decoder: ChunkedDecoder,
    },
    /// The connection would close: nothing more is read.
    Closed,
}

/// Everything a reader produced, comparable between two ways of splitting one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    /// Requests read, in order.
    pub messages: Vec<Message>,
    /// The error that ended the stream, if any.
    pub failure: Option<Failure>,
    /// Whether reading stopped (error, or a request without keep-alive).
    pub closed: bool,
    /// Unconsumed input bytes at the end (a partial head, or bytes after a close; 0 after an
    /// error).
    pub buffered: usize,
    /// Body bytes of a request still being read at the end.
    pub partial_body: Option<Vec<u8>>,
}

/// Reads requests from bytes pushed in any pieces.
#[derive(Debug, Clone)]
pub struct Reader {
    limits: Limits,
    buf: Vec<u8>,
    scanner: HeadScanner,
    state: State,
    messages: Vec<Message>,
    failure: Option<Failure>,
}

impl Reader {
    /// A reader with these parsing limits.
    pub fn new(limits: Limits) -> Self {
        Reader {
            limits,
            buf: Vec::new(),
            scanner: HeadScanner::new(),
            state: State::Head,
            messages: Vec::new(),
            failure: None,
        }
    }

    /// Feeds the next bytes of the stream and reads everything they complete.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failure.is_some() {
            return;
        }
        self.buf.extend_from_slice(bytes);
        self.run();
    }

    /// What was read so far.
    pub fn transcript(&self) -> Transcript {
        Transcript {
            messages: self.messages.clone(),
            failure: self.failure.clone(),
            closed: matches!(self.state, State::Closed),
            buffered: self.buf.len(),
            partial_body: match &self.state {
                State::Length { message, .. } | State::Chunked { message, .. } => {
                    Some(message.body.clone())
                }
                State::Head | State::Closed => None,
            },
        }
    }

    fn fail(&mut self, e: &ApiError) {
        // Nothing after an error is read; how much of the input the failing step had looked
        // at is not part of the outcome.
        self.buf.clear();
        self.failure = Some(Failure::from(e));
        self.state = State::Closed;
    }

    fn complete(&mut self, message: Message) {
        let keep_alive = message.keep_alive;
        self.messages.push(message);
        self.state = if keep_alive {
            State::Head
        } else {
            State::Closed
        };
    }

    fn run(&mut self) {
        loop {
            match std::mem::replace(&mut self.state, State::Closed) {
                State::Closed => return,
                State::Head => {
                    let head = match self.scanner.poll(&self.buf, &self.limits) {
                        Err(e) => return self.fail(&e),
                        Ok(Parsed::Incomplete) => {
                            self.state = State::Head;
                            return;
                        }
                        Ok(Parsed::Done(head)) => head,
                    };
                    let raw = &self.buf[..head.len];
                    let message = Message {
                        method: head.method,
                        method_raw: raw[head.method_range.clone()].to_vec(),
                        path: raw[head.path.clone()].to_vec(),
                        query: head.query.clone().map(|q| raw[q].to_vec()),
                        version: head.version,
                        keep_alive: head.keep_alive,
                        expect_continue: head.expect_continue,
                        headers: head
                            .headers
                            .iter()
                            .map(|(n, v)| (raw[n.clone()].to_vec(), raw[v.clone()].to_vec()))
                            .collect(),
                        head_len: head.len,
                        body: Vec::new(),
                    };
                    self.buf.drain(..head.len);
                    match head.body {
                        BodyKind::Empty => self.complete(message),
                        BodyKind::Length(n) => match usize::try_from(n) {
                            Ok(remaining) => self.state = State::Length { message, remaining },
                            Err(_) => {
                                return self.fail(&ApiError::fatal(
                                    crate::http::Status::PayloadTooLarge,
                                    "payload_too_large",
                                    "body is too large",
                                ))
                            }
                        },
                        BodyKind::Chunked => {
                            self.state = State::Chunked {
                                message,
                                decoder: ChunkedDecoder::new(self.limits.max_body),
                            }
                        }
                    }
                }
                State::Length {
                    mut message,
                    remaining,
                } => {
                    let take = remaining.min(self.buf.len());
                    message.body.extend(self.buf.drain(..take));
                    if take < remaining {
                        self.state = State::Length {
                            message,
                            remaining: remaining - take,
                        };
                        return;
                    }
                    self.complete(message);
                }
                State::Chunked {
                    mut message,
                    mut decoder,
                } => match decoder.decode(&self.buf, &mut message.body) {
                    Err(e) => return self.fail(&e),
                    Ok(progress) => {
                        self.buf.drain(..progress.consumed);
                        if progress.done {
                            self.complete(message);
                        } else {
                            self.state = State::Chunked { message, decoder };
                            return;
                        }
                    }
                },
            }
        }
    }
}

/// Reads `input` pushed whole.
pub fn read_whole(input: &[u8], limits: Limits) -> Transcript {
    let mut r = Reader::new(limits);
    r.push(input);
    r.transcript()
}

/// Reads `input` pushed in pieces ending at each of `cuts` (sorted or not; clamped to the
/// input), then the rest.
pub fn read_split(input: &[u8], cuts: &[usize], limits: Limits) -> Transcript {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    cuts.sort_unstable();
    let mut r = Reader::new(limits);
    let mut pos = 0;
    for cut in cuts.into_iter().chain([input.len()]) {
        r.push(&input[pos..cut.max(pos)]);
        pos = cut.max(pos);
    }
    r.transcript()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small_limits() -> Limits {
        Limits {
            max_target: 64,
            max_header_bytes: 256,
            max_headers: 8,
            max_body: 512,
        }
    }

    /// One valid request, with its body framed by length or chunked, and the bytes it is
    /// expected to decode to.
    fn request() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
        (
            prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "X-CUSTOM"]),
            "/[a-z0-9/_.-]{0,40}(\\?[a-z0-9=&]{0,20})?",
            prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,15}", "[ -~]{0,30}"), 0..5),
            prop::collection::vec(any::<u8>(), 0..200),
            prop::option::of(prop::collection::vec(1usize..50, 1..6)),
            any::<bool>(),
        )
            .prop_map(|(method, target, headers, body, chunks, close)| {
                let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: t\r\n").into_bytes();
                for (name, value) in headers {
                    let lower = name.to_ascii_lowercase();
                    if matches!(
                        lower.as_str(),
                        "host" | "content-length" | "transfer-encoding" | "connection" | "expect"
                    ) {
                        continue;
                    }
                    raw.extend_from_slice(format!("{name}: {}\r\n", value.trim()).as_bytes());
                }
                if close {
                    raw.extend_from_slice(b"Connection: close\r\n");
                }
                match chunks {
                    None => {
                        raw.extend_from_slice(
                            format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes(),
                        );
                        raw.extend_from_slice(&body);
                    }
                    Some(sizes) => {
                        raw.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                        let mut rest = &body[..];
                        for size in sizes.into_iter().cycle() {
                            if rest.is_empty() {
                                break;
                            }
                            let (c, r) = rest.split_at(size.min(rest.len()));
                            raw.extend_from_slice(format!("{:X};x=\"y\"\r\n", c.len()).as_bytes());
                            raw.extend_from_slice(c);
                            raw.extend_from_slice(b"\r\n");
                            rest = r;
                        }
                        raw.extend_from_slice(b"0\r\nTrailer: t\r\n\r\n");
                    }
                }
                (raw, body)
            })
    }

    #[test]
    fn reads_a_pipeline_and_stops_after_close() {
        let input = b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n\
POST /b?q=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc\
POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
2\r\nxy\r\n0\r\n\r\nGET /never HTTP/1.1\r\n";
        let t = read_whole(input, Limits::default());
        assert_eq!(t.messages.len(), 3);
        assert_eq!(t.messages[1].query.as_deref(), Some(&b"q=1"[..]));
        assert_eq!(t.messages[1].body, b"abc");
        assert_eq!(t.messages[2].body, b"xy");
        assert!(t.closed && t.failure.is_none());
        for cut in 0..=input.len() {
            assert_eq!(read_split(input, &[cut], Limits::default()), t, "cut {cut}");
        }
    }

    #[test]
    fn an_error_ends_the_stream_the_same_way_whatever_the_split() {
        let input =
            b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";
        let t = read_whole(input, Limits::default());
        assert_eq!(t.messages.len(), 1);
        assert_eq!(t.failure.as_ref().map(|f| f.status), Some(400));
        for cut in 0..=input.len() {
            assert_eq!(read_split(input, &[cut], Limits::default()), t, "cut {cut}");
        }
    }

    proptest! {
        // Each case reads its input once per offset: fewer cases than the default 256.
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// Parsing a pipeline of valid requests split at every offset gives the same requests
        /// (heads and de-chunked bodies) as parsing it whole.
        #[test]
        fn valid_requests_split_at_every_offset_read_the_same(
            reqs in prop::collection::vec(request(), 1..4)
        ) {
            let mut input = Vec::new();
            let mut bodies = Vec::new();
            for (raw, body) in &reqs {
                input.extend_from_slice(raw);
                bodies.push(body.clone());
            }
            let whole = read_whole(&input, Limits::default());
            prop_assert!(whole.failure.is_none(), "{:?}", whole.failure);
            // Reading stops after the first `Connection: close`.
            let read: Vec<Vec<u8>> = whole.messages.iter().map(|m| m.body.clone()).collect();
            prop_assert_eq!(&read[..], &bodies[..read.len()]);
            prop_assert!(read.len() == bodies.len() || whole.closed);
            for cut in 0..=input.len() {
                prop_assert_eq!(&read_split(&input, &[cut], Limits::default()), &whole, "cut {}", cut);
            }
        }

        /// Any bytes, split anywhere (several times), give the same outcome as whole, under
        /// small limits so that the 413, 414 and 431 paths are reached too.
        #[test]
        fn any_bytes_split_anywhere_read_the_same(
            input in prop::collection::vec(any::<u8>(), 0..400),
            cuts in prop::collection::vec(0usize..400, 0..4),
        ) {
            for limits in [small_limits(), Limits::default()] {
                let whole = read_whole(&input, limits);
                prop_assert_eq!(read_split(&input, &cuts, limits), whole);
            }
        }

        /// Requests built from valid parts with arbitrary bytes spliced in: same outcome
        /// whole and split at every offset, under small limits.
        #[test]
        fn mangled_requests_split_at_every_offset_read_the_same(
            (raw, _) in request(),
            at in 0usize..400,
            junk in prop::collection::vec(prop::sample::select(b"\r\n :;0aZ\t\"\\,".to_vec()), 0..6),
        ) {
            let mut input = raw.clone();
            let at = at.min(input.len());
            input.splice(at..at, junk);
            input.extend_from_slice(&raw);
            for limits in [small_limits(), Limits::default()] {
                let whole = read_whole(&input, limits);
                for cut in 0..=input.len() {
                    prop_assert_eq!(&read_split(&input, &[cut], limits), &whole, "cut {}", cut);
                }
            }
        }
    }
}
