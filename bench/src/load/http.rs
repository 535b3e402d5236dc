//! The HTTP/1.1 response parser: status line and headers by httparse, body by
//! `Content-Length`. Like mini-redis's frame parser it separates "incomplete, read more"
//! from "invalid", and it extracts only what the report needs (status, `X-Atlas-Cache`,
//! `X-Atlas-Batch-Size`, `X-Atlas-Shard` and `X-Atlas-Owner`, whether the server closes the
//! connection).
//!
//! Must not depend on sockets. Hot path: called after every read of a response.

/// Most header fields a response may carry before it is called invalid.
const MAX_HEADERS: usize = 48;

/// What `X-Atlas-Cache` said, a closed set plus "absent or unknown".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheState {
    Hit,
    Miss,
    Stale,
    Bypass,
    /// Header absent or an unknown value (errors, non-Atlas servers).
    None,
}

impl CacheState {
    /// Every state, in report order.
    pub const ALL: [CacheState; 5] = [
        CacheState::Hit,
        CacheState::Miss,
        CacheState::Stale,
        CacheState::Bypass,
        CacheState::None,
    ];

    /// The report name.
    pub fn name(self) -> &'static str {
        match self {
            CacheState::Hit => "hit",
            CacheState::Miss => "miss",
            CacheState::Stale => "stale",
            CacheState::Bypass => "bypass",
            CacheState::None => "none",
        }
    }

    fn parse(v: &[u8]) -> CacheState {
        match v {
            b"hit" => CacheState::Hit,
            b"miss" => CacheState::Miss,
            b"stale" => CacheState::Stale,
            b"bypass" => CacheState::Bypass,
            _ => CacheState::None,
        }
    }
}

/// A parsed response head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Bytes of status line and headers, including the final CRLF CRLF.
    pub head_len: usize,
    /// Body bytes that follow the head.
    pub body_len: usize,
    pub cache: CacheState,
    /// `X-Atlas-Batch-Size`, when present and numeric.
    pub batch_size: Option<u32>,
    /// `X-Atlas-Shard`: the shard that accepted the connection, when present and numeric.
    pub shard: Option<u32>,
    /// `X-Atlas-Owner`: the shard that owns the request's cache key, when present and numeric.
    pub owner: Option<u32>,
    /// The server will close the connection after this response.
    pub close: bool,
}

impl Head {
    /// Bytes of the whole response.
    pub fn total_len(&self) -> usize {
        self.head_len + self.body_len
    }

    /// Whether the request hopped from the accepting shard to another owner shard; `None`
    /// unless the response names both shards.
    pub fn hopped(&self) -> Option<bool> {
        Some(self.shard? != self.owner?)
    }
}

/// A header value as a number (surrounding whitespace allowed), `None` when it is not one.
fn number<T: std::str::FromStr>(v: &[u8]) -> Option<T> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// The outcome of parsing the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    /// The head is complete (the body may not be: compare `total_len` with what was read).
    Head(Head),
    /// More bytes are needed to finish the head.
    Incomplete,
    /// Not an HTTP/1.x response this client can read; the reason is for the report.
    Invalid(&'static str),
}

/// Largest response body accepted (a guard against a bogus `Content-Length`).
pub const MAX_BODY: usize = 64 << 20;

/// Parses a response head from the start of `buf`.
pub fn parse_head(buf: &[u8]) -> Parse {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parse::Incomplete,
        Err(httparse::Error::TooManyHeaders) => return Parse::Invalid("too many headers"),
        Err(_) => return Parse::Invalid("malformed response head"),
    };
    let Some(status) = resp.code else {
        return Parse::Invalid("no status code");
    };
    let http10 = resp.version == Some(0);
    let mut body_len = None;
    let mut cache = CacheState::None;
    let mut batch_size = None;
    let mut shard = None;
    let mut owner = None;
    let mut close = http10;
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let Some(n) = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
            else {
                return Parse::Invalid("bad Content-Length");
            };
            if body_len.is_some_and(|b| b != n) {
                return Parse::Invalid("conflicting Content-Length");
            }
            body_len = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Parse::Invalid("Transfer-Encoding responses are not supported");
        } else if name.eq_ignore_ascii_case(b"x-atlas-cache") {
            cache = CacheState::parse(h.value.trim_ascii());
        } else if name.eq_ignore_ascii_case(b"x-atlas-batch-size") {
            batch_size = number(h.value);
        } else if name.eq_ignore_ascii_case(b"x-atlas-shard") {
            shard = number(h.value);
        } else if name.eq_ignore_ascii_case(b"x-atlas-owner") {
            owner = number(h.value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            let v = h.value.trim_ascii();
            if v.eq_ignore_ascii_case(b"close") {
                close = true;
            } else if v.eq_ignore_ascii_case(b"keep-alive") {
                close = false;
            }
        }
    }
    let body_len = match body_len {
        Some(n) if n > MAX_BODY => return Parse::Invalid("body too large"),
        Some(n) => n,
        // Responses that never have a body.
        None if status < 200 || status == 204 || status == 304 => 0,
        None => return Parse::Invalid("no Content-Length"),
    };
    if status < 200 {
        // 100 Continue and friends: this client never asks for them.
        return Parse::Invalid("unexpected 1xx response");
    }
    Parse::Head(Head {
        status,
        head_len,
        body_len,
        cache,
        batch_size,
        shard,
        owner,
        close,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HIT: &[u8] = b"HTTP/1.1 200 OK\r\nServer: atlas\r\nContent-Length: 2\r\nX-Atlas-Cache: hit\r\nX-Atlas-Batch-Size: 0\r\n\r\n{}";

    fn head(buf: &[u8]) -> Head {
        match parse_head(buf) {
            Parse::Head(h) => h,
            other => panic!("expected a head, got {other:?}"),
        }
    }

    #[test]
    fn a_complete_atlas_response_yields_status_cache_batch_and_length() {
        let h = head(HIT);
        assert_eq!(h.status, 200);
        assert_eq!(h.cache, CacheState::Hit);
        assert_eq!(h.batch_size, Some(0));
        assert_eq!(h.body_len, 2);
        assert_eq!(h.total_len(), HIT.len());
        assert!(!h.close);
    }

    #[test]
    fn every_prefix_of_the_head_is_incomplete_and_never_invalid() {
        let head_end = HIT.len() - 2;
        for cut in 0..head_end {
            assert_eq!(parse_head(&HIT[..cut]), Parse::Incomplete, "cut at {cut}");
        }
        // The head alone is enough; the body length tells the caller how much is missing.
        assert_eq!(head(&HIT[..head_end]).total_len(), HIT.len());
    }

    #[test]
    fn header_names_and_values_are_matched_case_insensitively() {
        let h = head(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nx-atlas-cache: miss\r\nx-atlas-batch-size: 12\r\nconnection: Close\r\n\r\n");
        assert_eq!(h.status, 503);
        assert_eq!(h.cache, CacheState::Miss);
        assert_eq!(h.batch_size, Some(12));
        assert!(h.close);
        assert_eq!(h.body_len, 0);
    }

    #[test]
    fn shard_and_owner_tell_whether_a_request_hopped() {
        let local = head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Atlas-Shard: 1\r\nX-Atlas-Owner: 1\r\n\r\n",
        );
        assert_eq!(
            (local.shard, local.owner, local.hopped()),
            (Some(1), Some(1), Some(false))
        );
        let hop = head(b"HTTP/1.1 200 OK\r\nx-atlas-owner:  3 \r\nContent-Length: 0\r\nX-ATLAS-SHARD: 0\r\n\r\n");
        assert_eq!(
            (hop.shard, hop.owner, hop.hopped()),
            (Some(0), Some(3), Some(true))
        );
        // `GET /health` names only the accepting shard; a non-Atlas server names neither; a
        // value that is not a number counts as absent.
        for only in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Atlas-Shard: 2\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Atlas-Shard: 2\r\nX-Atlas-Owner: two\r\n\r\n",
        ] {
            assert_eq!(head(only).hopped(), None, "{}", String::from_utf8_lossy(only));
        }
    }

    #[test]
    fn http10_closes_unless_it_says_keep_alive() {
        assert!(head(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").close);
        assert!(
            !head(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n").close
        );
    }

    #[test]
    fn garbage_and_unsupported_framing_are_invalid() {
        for bad in [
            &b"SSH-2.0-OpenSSH_9.6\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
        ] {
            assert!(
                matches!(parse_head(bad), Parse::Invalid(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // A 204 needs no length.
        assert_eq!(
            head(b"HTTP/1.1 204 No Content\r\n\r\n").body_len,
            0,
            "204 without Content-Length"
        );
    }

    #[test]
    fn unknown_cache_values_and_missing_headers_read_as_none() {
        let h =
            head(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nX-Atlas-Cache: maybe\r\n\r\n");
        assert_eq!(h.cache, CacheState::None);
        assert_eq!(h.batch_size, None);
    }
}
