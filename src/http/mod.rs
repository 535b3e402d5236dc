//! The HTTP/1.1 layer: pure parsing ([`parse`], [`chunked`]), response serialisation
//! ([`response`]) and the request type handed to routes ([`Request`]).
//!
//! Nothing here does I/O; the connection loop (`runtime::conn`) drives these functions with bytes
//! read through glommio. That split lets the parsers be fuzzed and property-tested.

pub mod chunked;
pub mod error;
pub mod parse;
pub mod response;
pub mod status;
#[cfg(any(test, fuzzing))]
pub mod stream;

use bytes::Bytes;

pub use parse::{BodyKind, Head, Limits, Method, Parsed, Version};
pub use response::Response;
pub use status::Status;

/// A complete request as routes see it: the parsed head, the bytes it indexes, and the body.
#[derive(Debug, Clone)]
pub struct Request {
    /// Parsed head; its offsets index `raw`.
    pub head: Head,
    /// The raw head bytes.
    pub raw: Bytes,
    /// The body, de-chunked.
    pub body: Bytes,
}

impl Request {
    /// The method.
    pub fn method(&self) -> Method {
        self.head.method
    }

    /// The method as sent.
    pub fn method_str(&self) -> &str {
        self.head.method_str(&self.raw)
    }

    /// The path without the query string.
    pub fn path(&self) -> &str {
        let path = self.head.path(&self.raw);
        if path.is_empty() {
            "/"
        } else {
            path
        }
    }

    /// The raw query string, if any.
    pub fn query(&self) -> Option<&[u8]> {
        self.head.query.clone().map(|q| &self.raw[q])
    }

    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.head.header(&self.raw, name)
    }
}
