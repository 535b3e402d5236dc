//! Request-head parsing: bytes in, a validated [`Head`] (or "read more", or a typed error) out.
//!
//! Pure functions over byte slices, no I/O, so they can be fuzzed (`fuzz/`) and property-tested.
//! Like mini-redis's frame parser, "incomplete, read more" ([`Parsed::Incomplete`]) is kept
//! apart from "invalid" (`Err(ApiError)`). Every error here is fatal for the connection: once
//! the framing of one request is in doubt, nothing after it can be trusted.
//!
//! Hot path: runs once per request. It allocates one `Vec` for header offsets.

use std::mem::MaybeUninit;
use std::ops::Range;

use crate::http::error::ApiError;
use crate::http::status::Status;

/// Parsing limits, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest accepted request target (path and query), in bytes. Longer → 414.
    pub max_target: usize,
    /// Largest accepted header section (everything after the request line), in bytes. → 431.
    pub max_header_bytes: usize,
    /// Most header fields accepted. More → 431.
    pub max_headers: usize,
    /// Largest accepted body. Larger → 413, without reading it.
    pub max_body: u64,
}

impl Limits {
    /// The longest head these limits can accept: the request-line allowance (method, target,
    /// version) plus the header section. A buffer longer than this without a complete head is
    /// parsed regardless, to produce its 414 or 431.
    pub fn max_head(&self) -> usize {
        self.max_target + LINE_OVERHEAD + self.max_header_bytes + 2
    }
}

/// Allowance on the request line beyond the target: method (≤ 16), two spaces, `HTTP/1.1`,
/// CRLF, with room to spare.
const LINE_OVERHEAD: usize = 32;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_target: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: MAX_HEADERS,
            max_body: 1024 * 1024,
        }
    }
}

/// Upper bound on header fields; the parser's stack array has this many slots.
pub const MAX_HEADERS: usize = 100;

/// The request methods Atlas routes on; anything else is kept as `Other` so it can be named in
/// a 405 response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Other,
}

impl Method {
    fn from_bytes(m: &str) -> Method {
        match m {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }
}

/// HTTP protocol version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body (no `Content-Length`, no `Transfer-Encoding`, or `Content-Length: 0`).
    Empty,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed and validated request head. Offsets index the buffer the head was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The method, as a closed set.
    pub method: Method,
    /// The method exactly as sent (for 405 messages).
    pub method_range: Range<usize>,
    /// The path part of the target (no query), as offsets into the buffer.
    pub path: Range<usize>,
    /// The query string without `?`, if any.
    pub query: Option<Range<usize>>,
    /// Protocol version.
    pub version: Version,
    /// Whether the connection stays open after this request's response.
    pub keep_alive: bool,
    /// Body framing.
    pub body: BodyKind,
    /// The client sent `Expect: 100-continue`.
    pub expect_continue: bool,
    /// Header (name, value) offsets, in the order sent.
    pub headers: Vec<(Range<usize>, Range<usize>)>,
    /// Length of the head in bytes, including the blank line.
    pub len: usize,
}

impl Head {
    /// The value of the first header named `name` (ASCII case-insensitive).
    pub fn header<'b>(&self, buf: &'b [u8], name: &str) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|(n, _)| buf[n.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| &buf[v.clone()])
    }

    /// The path as text (httparse guarantees visible ASCII).
    pub fn path<'b>(&self, buf: &'b [u8]) -> &'b str {
        std::str::from_utf8(&buf[self.path.clone()]).unwrap_or("")
    }

    /// The method as sent.
    pub fn method_str<'b>(&self, buf: &'b [u8]) -> &'b str {
        std::str::from_utf8(&buf[self.method_range.clone()]).unwrap_or("")
    }
}

/// The outcome of feeding bytes to the head parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// The head is not complete yet: read more bytes and call again.
    Incomplete,
    /// A complete, valid head.
    Done(T),
}

fn bad(message: impl Into<std::borrow::Cow<'static, str>>) -> ApiError {
    ApiError::fatal(Status::BadRequest, "bad_request", message)
}

fn offset_of(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

/// Checks the size limits on a head that is still incomplete, so a client cannot make the
/// server buffer without bound while it waits for the end of the head.
fn check_incomplete(buf: &[u8], limits: &Limits) -> Result<(), ApiError> {
    let line_allowance = limits.max_target + LINE_OVERHEAD;
    match memchr(b'\n', buf) {
        None if buf.len() > line_allowance => Err(too_long_target(limits)),
        None => Ok(()),
        Some(line_end) if line_end > line_allowance => Err(too_long_target(limits)),
        Some(line_end) if buf.len() - line_end > limits.max_header_bytes + 2 => {
            Err(too_large_headers(limits))
        }
        Some(_) => Ok(()),
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

fn too_long_target(limits: &Limits) -> ApiError {
    ApiError::fatal(
        Status::UriTooLong,
        "uri_too_long",
        format!("request target is longer than {} bytes", limits.max_target),
    )
}

fn too_large_headers(limits: &Limits) -> ApiError {
    ApiError::fatal(
        Status::HeaderFieldsTooLarge,
        "header_fields_too_large",
        format!(
            "header section is larger than {} bytes or has more than {} fields",
            limits.max_header_bytes, limits.max_headers
        ),
    )
}

/// Parses a request head from the start of `buf`.
///
/// Returns `Incomplete` when more bytes are needed, a `Head` when the head is complete and
/// valid, or a fatal `ApiError` (400, 413, 414, 417, 431, 501, 505) otherwise. Leading empty
/// lines (allowed by RFC 9112 §2.2) are skipped and counted in `Head::len`.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Parsed<Head>, ApiError> {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let max = limits.max_headers.min(MAX_HEADERS);
    let mut req = httparse::Request::new(&mut []);
    let status = req.parse_with_uninit_headers(buf, &mut headers[..max]);
    let len = match status {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            check_incomplete(buf, limits)?;
            return Ok(Parsed::Incomplete);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(too_large_headers(limits)),
        Err(httparse::Error::Version) => {
            return Err(ApiError::fatal(
                Status::VersionNotSupported,
                "http_version_not_supported",
                "only HTTP/1.0 and HTTP/1.1 are supported",
            ))
        }
        Err(e) => return Err(bad(format!("malformed request: {}", describe(e)))),
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(bad("malformed request line"));
    };
    if target.len() > limits.max_target {
        return Err(too_long_target(limits));
    }
    let line_end = memchr(b'\n', buf).unwrap_or(0);
    if len.saturating_sub(line_end) > limits.max_header_bytes + 2 {
        return Err(too_large_headers(limits));
    }
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };

    let method_range = offset_of(buf, method.as_bytes());
    let target_range = offset_of(buf, target.as_bytes());
    let (path, query) = split_target(buf, target_range)?;

    let mut framing = Framing::default();
    let mut header_ranges = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        header_ranges.push((offset_of(buf, h.name.as_bytes()), offset_of(buf, h.value)));
        framing.observe(h.name, h.value, version)?;
    }
    if version == Version::Http11 && framing.host_count != 1 {
        return Err(bad(if framing.host_count == 0 {
            "HTTP/1.1 request without a Host header"
        } else {
            "more than one Host header"
        }));
    }
    let body = framing.body_kind(version, limits)?;
    let keep_alive = match version {
        Version::Http11 => !framing.close,
        Version::Http10 => framing.keep_alive && !framing.close,
    };
    Ok(Parsed::Done(Head {
        method: Method::from_bytes(method),
        method_range,
        path,
        query,
        version,
        keep_alive,
        body,
        expect_continue: framing.expect_continue,
        headers: header_ranges,
        len,
    }))
}

/// Incremental head parsing over a growing buffer, as the connection loop does it: the parser
/// runs only once the buffer may hold a complete head (it contains the blank line that ends
/// one) or has outgrown [`Limits::max_head`], and the search for the blank line resumes where
/// the previous call stopped, so a head arriving a byte at a time is not re-scanned from the
/// start on every read.
///
/// The outcome for a byte stream does not depend on how it was split into reads (checked by
/// the property tests in `http::stream` and by the `http_request` fuzz target).
#[derive(Debug, Clone, Default)]
pub struct HeadScanner {
    /// Bytes of the current buffer already searched for the end of the head.
    scanned: usize,
}

impl HeadScanner {
    /// A scanner at the start of a head.
    pub fn new() -> Self {
        HeadScanner::default()
    }

    /// Parses the head at the start of `buf` (the whole unconsumed input, which only grows
    /// between calls until a head is returned). After `Done`, the caller consumes `head.len`
    /// bytes and the scanner starts over.
    pub fn poll(&mut self, buf: &[u8], limits: &Limits) -> Result<Parsed<Head>, ApiError> {
        // No valid head is longer than `max_head`, and parsing never looks further: so the
        // outcome depends on the same bytes however the buffer grew (a parse forced by size
        // sees exactly the bytes a parse of the whole input would).
        let window = &buf[..buf.len().min(limits.max_head() + 1)];
        let parsed = if buf.len() > limits.max_head() || head_may_be_complete(window, self.scanned)
        {
            parse_head(window, limits)?
        } else {
            Parsed::Incomplete
        };
        self.scanned = match parsed {
            Parsed::Incomplete => buf.len(),
            Parsed::Done(_) => 0,
        };
        Ok(parsed)
    }
}

/// Whether `buf` may hold a complete head: after the empty lines a client may send before a
/// request (RFC 9112 §2.2, skipped by the parser too), it contains the blank line (`\n\r\n`
/// or `\n\n`) that ends one, searching from just before `scanned` (bytes already searched).
pub fn head_may_be_complete(buf: &[u8], scanned: usize) -> bool {
    let from = scanned.saturating_sub(2).max(leading_empty_lines(buf));
    buf.get(from..).is_some_and(|tail| {
        tail.windows(2).enumerate().any(|(i, w)| {
            w[0] == b'\n' && (w[1] == b'\n' || (w[1] == b'\r' && tail.get(i + 2) == Some(&b'\n')))
        })
    })
}

/// Length of the empty lines (`\r\n` or `\n`) at the start of `buf`.
fn leading_empty_lines(buf: &[u8]) -> usize {
    let mut i = 0;
    loop {
        match buf.get(i..i + 2) {
            Some(b"\r\n") => i += 2,
            _ if buf.get(i) == Some(&b'\n') => i += 1,
            _ => return i,
        }
    }
}

fn describe(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name (obsolete line folding is rejected)",
        httparse::Error::HeaderValue => "invalid byte in a header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token in the request line",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

/// Splits an origin-form (`/p?q`) or absolute-form (`http://h/p?q`) target into path and query.
fn split_target(
    buf: &[u8],
    target: Range<usize>,
) -> Result<(Range<usize>, Option<Range<usize>>), ApiError> {
    let t = &buf[target.clone()];
    let path_start = if t.first() == Some(&b'/') {
        target.start
    } else if t == b"*" {
        return Ok((target, None));
    } else {
        let scheme_len = if t.starts_with(b"http://") {
            7
        } else if t.starts_with(b"https://") {
            8
        } else {
            return Err(bad("request target must be an absolute path"));
        };
        match memchr(b'/', &t[scheme_len..]) {
            Some(i) => target.start + scheme_len + i,
            // `http://host` with no path means `/`: point at an empty range, routed as "/".
            None => return Ok((target.end..target.end, None)),
        }
    };
    match memchr(b'?', &buf[path_start..target.end]) {
        Some(q) => Ok((
            path_start..path_start + q,
            Some(path_start + q + 1..target.end),
        )),
        None => Ok((path_start..target.end, None)),
    }
}

/// What the framing-relevant headers said, collected while walking the header list.
#[derive(Default)]
struct Framing {
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked_last: bool,
    other_coding: bool,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
    host_count: usize,
}

impl Framing {
    fn observe(&mut self, name: &str, value: &[u8], version: Version) -> Result<(), ApiError> {
        if name.eq_ignore_ascii_case("content-length") {
            for part in value.split(|&b| b == b',') {
                let n = parse_decimal(trim(part))
                    .ok_or_else(|| bad("Content-Length is not a non-negative integer"))?;
                match self.content_length {
                    Some(prev) if prev != n => {
                        return Err(bad("conflicting Content-Length values"));
                    }
                    _ => self.content_length = Some(n),
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            self.transfer_encoding = true;
            for coding in value.split(|&b| b == b',').map(trim) {
                if coding.is_empty() {
                    continue;
                }
                if coding.eq_ignore_ascii_case(b"chunked") {
                    if self.chunked_last {
                        return Err(bad("chunked applied more than once"));
                    }
                    self.chunked_last = true;
                } else {
                    if self.chunked_last {
                        return Err(bad("chunked must be the final transfer coding"));
                    }
                    self.other_coding = true;
                }
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            // HTTP/1.0 has no 100 Continue: its clients' expectations are ignored.
            if version == Version::Http10 {
                return Ok(());
            }
            if trim(value).eq_ignore_ascii_case(b"100-continue") {
                self.expect_continue = true;
            } else {
                return Err(ApiError::fatal(
                    Status::ExpectationFailed,
                    "expectation_failed",
                    "only `Expect: 100-continue` is supported",
                ));
            }
        } else if name.eq_ignore_ascii_case("host") {
            self.host_count += 1;
        }
        Ok(())
    }

    fn body_kind(&self, version: Version, limits: &Limits) -> Result<BodyKind, ApiError> {
        if self.transfer_encoding {
            if self.content_length.is_some() {
                return Err(bad(
                    "both Content-Length and Transfer-Encoding are present (request smuggling guard)",
                ));
            }
            if version == Version::Http10 {
                return Err(bad("Transfer-Encoding is not allowed in HTTP/1.0"));
            }
            if !self.chunked_last {
                return Err(bad(
                    "Transfer-Encoding without a final `chunked` coding has no length",
                ));
            }
            if self.other_coding {
                return Err(ApiError::fatal(
                    Status::NotImplemented,
                    "unsupported_transfer_encoding",
                    "only the `chunked` transfer coding is supported",
                ));
            }
            return Ok(BodyKind::Chunked);
        }
        match self.content_length {
            None | Some(0) => Ok(BodyKind::Empty),
            Some(n) if n > limits.max_body => Err(ApiError::fatal(
                Status::PayloadTooLarge,
                "payload_too_large",
                format!(
                    "body of {n} bytes exceeds the limit of {} bytes",
                    limits.max_body
                ),
            )),
            Some(n) => Ok(BodyKind::Length(n)),
        }
    }
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end]
}

/// Parses 1–19 ASCII digits (no sign, no whitespace), refusing overflow.
pub fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests;
