//! `ApiError`: the one error type that becomes an HTTP response, and the one place
//! (`ApiError::to_response`) where that happens.
//!
//! Every failure a client can cause or see (a malformed request, a missing route, an overloaded
//! shard) is an `ApiError` carrying its status, a stable machine-readable `code`, a human
//! message, and whether the connection can still be trusted afterwards. Must not depend on
//! sockets or on the runtime.

use std::borrow::Cow;

use bytes::Bytes;

use crate::http::response::Response;
use crate::http::status::Status;

/// A failure that turns into an HTTP error response with a JSON body
/// `{"error":{"code":"...","message":"..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status:?} {code}: {message}")]
pub struct ApiError {
    /// The HTTP status sent to the client.
    pub status: Status,
    /// A stable, machine-readable identifier clients can match on (`bad_request`, ...).
    pub code: &'static str,
    /// A human-readable explanation naming what was wrong.
    pub message: Cow<'static, str>,
    /// True when the byte stream can no longer be trusted (framing errors): the server answers
    /// and closes the connection.
    pub close: bool,
    /// For 405: the methods the path accepts, sent as `Allow`.
    pub allow: Option<&'static str>,
}

impl ApiError {
    /// An error that leaves the connection usable.
    pub fn new(status: Status, code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            close: false,
            allow: None,
        }
    }

    /// An error after which the connection is closed (the request stream is unreliable).
    pub fn fatal(
        status: Status,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        ApiError {
            close: true,
            ..ApiError::new(status, code, message)
        }
    }

    /// 404 for a path no route serves.
    pub fn not_found(path: &str) -> Self {
        ApiError::new(
            Status::NotFound,
            "not_found",
            format!("no route for path `{}`", truncate(path, 200)),
        )
    }

    /// 405 for a known path with a method it does not accept.
    pub fn method_not_allowed(method: &str, allow: &'static str) -> Self {
        ApiError {
            allow: Some(allow),
            ..ApiError::new(
                Status::MethodNotAllowed,
                "method_not_allowed",
                format!(
                    "method {} is not allowed here; allowed: {allow}",
                    truncate(method, 32)
                ),
            )
        }
    }

    /// The JSON body of this error.
    pub fn body(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.message.len() + self.code.len() + 40);
        out.extend_from_slice(b"{\"error\":{\"code\":");
        json_string(&mut out, self.code);
        out.extend_from_slice(b",\"message\":");
        json_string(&mut out, &self.message);
        out.extend_from_slice(b"}}");
        Bytes::from(out)
    }

    /// The response for this error: the one place an error becomes HTTP.
    pub fn to_response(&self) -> Response {
        let mut response = Response::json(self.status, self.body());
        if let Some(allow) = self.allow {
            response = response.header("Allow", allow);
        }
        if self.close {
            response = response.close();
        }
        response
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, so client input echoed in error
/// messages stays small.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Appends `s` as a JSON string literal (quoted and escaped) to `out`.
pub fn json_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f | 0x7f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_valid_json_with_escaping() {
        let err = ApiError::new(
            Status::BadRequest,
            "bad_request",
            "quote \" nl \n ctl \u{1}",
        );
        let parsed: serde_json::Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(parsed["error"]["code"], "bad_request");
        assert_eq!(parsed["error"]["message"], "quote \" nl \n ctl \u{1}");
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
