//! Responses: a status, a few headers and body bytes, serialised into the connection's write
//! buffer as one contiguous block so that a response (or a run of pipelined responses) goes out
//! in one write.
//!
//! Hot path. Must not depend on sockets or on the runtime.

use std::borrow::Cow;
use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::http::status::Status;

/// A response ready to be written.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code and line.
    pub status: Status,
    /// `Content-Type` of the body.
    pub content_type: &'static str,
    /// Extra headers (name, value), written in order after the standard ones.
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
    /// The body bytes, sent as they are (a cached body is shared, not copied, until written).
    pub body: Bytes,
    /// Close the connection after this response.
    pub close: bool,
}

impl Response {
    /// A response with a JSON body.
    pub fn json(status: Status, body: impl Into<Bytes>) -> Self {
        Response {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: body.into(),
            close: false,
        }
    }

    /// A response with a plain-text body.
    pub fn text(status: Status, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
            close: false,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Marks the connection to be closed after this response.
    pub fn close(mut self) -> Self {
        self.close = true;
        self
    }
}

/// How a response is framed for the particular request it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// The request was `HEAD`: send headers (with the body's length) but no body.
    pub head_only: bool,
    /// The connection closes after this response (`Connection: close` is sent).
    pub close: bool,
    /// The request was HTTP/1.0 with keep-alive: `Connection: keep-alive` must be sent.
    pub http10_keep_alive: bool,
}

/// Appends the serialised response to `out`. `shard` is sent as `X-Atlas-Shard`.
pub fn write_response(out: &mut Vec<u8>, response: &Response, framing: Framing, shard: usize) {
    let body_len = if response.status.allows_body() {
        response.body.len()
    } else {
        0
    };
    out.reserve(160 + response.headers.len() * 48 + body_len);
    out.extend_from_slice(response.status.line());
    out.extend_from_slice(b"Server: atlas\r\nDate: ");
    with_date(|d| out.extend_from_slice(d));
    out.extend_from_slice(b"\r\nX-Atlas-Shard: ");
    push_decimal(out, shard as u64);
    if response.status.allows_body() {
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(response.content_type.as_bytes());
        out.extend_from_slice(b"\r\nContent-Length: ");
        push_decimal(out, body_len as u64);
    }
    out.extend_from_slice(b"\r\n");
    for (name, value) in &response.headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if framing.close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if framing.http10_keep_alive {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !framing.head_only && body_len > 0 {
        out.extend_from_slice(&response.body);
    }
}

/// The interim `100 Continue` response.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Appends the decimal digits of `n`.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

thread_local! {
    /// The `Date` value, re-formatted at most once a second per thread.
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [b' '; 29])) };
}

/// Calls `f` with the current IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn with_date(f: impl FnOnce(&[u8])) {
    let now = SystemTime::now();
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let text = httpdate::fmt_http_date(now);
            let bytes = text.as_bytes();
            if bytes.len() == 29 {
                cached.1.copy_from_slice(bytes);
                cached.0 = secs;
            }
        }
        f(&cached.1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(response: &Response, framing: Framing) -> String {
        let mut out = Vec::new();
        write_response(&mut out, response, framing, 3);
        String::from_utf8(out).unwrap()
    }

    const PLAIN: Framing = Framing {
        head_only: false,
        close: false,
        http10_keep_alive: false,
    };

    #[test]
    fn serialises_status_headers_and_body() {
        let r = Response::json(Status::Ok, "{}").header("X-A", "b");
        let text = render(&r, PLAIN);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nServer: atlas\r\nDate: "));
        assert!(text.contains("\r\nX-Atlas-Shard: 3\r\n"));
        assert!(text.contains("\r\nContent-Length: 2\r\n"));
        assert!(text.contains("\r\nX-A: b\r\n"));
        assert!(text.ends_with("\r\n\r\n{}"));
        assert!(!text.contains("Connection"));
    }

    #[test]
    fn head_keeps_length_but_drops_body() {
        let r = Response::json(Status::Ok, "{\"a\":1}");
        let text = render(
            &r,
            Framing {
                head_only: true,
                close: true,
                http10_keep_alive: false,
            },
        );
        assert!(text.contains("Content-Length: 7\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn decimal_digits() {
        let mut out = Vec::new();
        push_decimal(&mut out, 0);
        push_decimal(&mut out, 18_446_744_073_709_551_615);
        assert_eq!(out, b"018446744073709551615");
    }

    #[test]
    fn date_is_imf_fixdate() {
        let mut got = Vec::new();
        with_date(|d| got.extend_from_slice(d));
        let text = String::from_utf8(got).unwrap();
        assert!(httpdate::parse_http_date(&text).is_ok(), "{text}");
    }
}
