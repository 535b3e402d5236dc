//! Incremental decoder for `Transfer-Encoding: chunked` request bodies (RFC 9112 §7.1).
//!
//! A pure state machine: feed it whatever bytes have arrived, it appends decoded body bytes to
//! an output buffer and says how much input it consumed and whether the body is complete. No
//! I/O, so it is fuzzed and property-tested directly. Chunk extensions are skipped, trailer
//! fields are read and discarded; every length is bounded.

use crate::http::error::ApiError;
use crate::http::status::Status;

/// Longest accepted chunk-size line (size, extensions, CRLF).
const MAX_SIZE_LINE: usize = 4096;
/// Largest accepted trailer section.
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size,
    /// After the size digits: optional whitespace, then `;` extensions or CRLF.
    SizeLine,
    /// Inside a chunk extension (token characters, `=`, whitespace, `;`).
    Ext,
    /// Inside a quoted-string extension value; `true` right after a backslash.
    ExtQuoted(bool),
    /// After the CR ending a size line: expecting LF.
    SizeLf,
    /// Reading chunk data; this many bytes remain.
    Data(u64),
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// Reading trailer lines after the last chunk; `true` when at the start of a line.
    Trailers { line_start: bool },
    /// After a CR in the trailer section: expecting LF; `true` if the line was empty.
    TrailerLf { empty: bool },
    /// The body is complete.
    Done,
}

/// Decoder state for one chunked body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    size_digits: usize,
    line_len: usize,
    trailer_len: usize,
    decoded: u64,
    max_body: u64,
}

/// Progress made by one call to [`ChunkedDecoder::decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes consumed (everything up to the end of the body when `done`).
    pub consumed: usize,
    /// The terminating chunk and trailers have been read.
    pub done: bool,
}

fn bad(message: &'static str) -> ApiError {
    ApiError::fatal(Status::BadRequest, "bad_chunked_body", message)
}

impl ChunkedDecoder {
    /// A decoder that refuses bodies larger than `max_body` decoded bytes (413).
    pub fn new(max_body: u64) -> Self {
        ChunkedDecoder {
            state: State::Size,
            size: 0,
            size_digits: 0,
            line_len: 0,
            trailer_len: 0,
            decoded: 0,
            max_body,
        }
    }

    /// Decoded body bytes so far.
    pub fn decoded(&self) -> u64 {
        self.decoded
    }

    /// Consumes bytes from `input`, appending decoded body bytes to `out`.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Progress, ApiError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size => {
                    if let Some(d) = hex(b) {
                        self.size_digits += 1;
                        if self.size_digits > 16 {
                            return Err(bad("chunk size is too large"));
                        }
                        self.size = (self.size << 4) | u64::from(d);
                        self.line_len += 1;
                        i += 1;
                    } else if self.size_digits == 0 {
                        return Err(bad("chunk size is not a hexadecimal number"));
                    } else {
                        self.state = State::SizeLine;
                    }
                }
                State::SizeLine | State::Ext | State::ExtQuoted(_) => {
                    self.line_len += 1;
                    if self.line_len > MAX_SIZE_LINE {
                        return Err(bad("chunk size line is too long"));
                    }
                    i += 1;
                    self.state = match (self.state, b) {
                        (State::ExtQuoted(true), 0x09 | 0x20..=0x7e | 0x80..=0xff) => {
                            State::ExtQuoted(false)
                        }
                        (State::ExtQuoted(false), b'"') => State::Ext,
                        (State::ExtQuoted(false), b'\\') => State::ExtQuoted(true),
                        (State::ExtQuoted(false), 0x09 | 0x20..=0x7e | 0x80..=0xff) => {
                            State::ExtQuoted(false)
                        }
                        (State::ExtQuoted(_), _) => {
                            return Err(bad("invalid byte in a quoted chunk extension"))
                        }
                        (_, b'\r') => State::SizeLf,
                        (_, b' ' | b'\t') => self.state,
                        (_, b';') => State::Ext,
                        (State::Ext, b'"') => State::ExtQuoted(false),
                        (State::Ext, b'=') => State::Ext,
                        (State::Ext, c) if is_token(c) => State::Ext,
                        _ => return Err(bad("invalid chunk size line")),
                    };
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(bad("chunk size line must end with CRLF"));
                    }
                    i += 1;
                    let size = self.size;
                    self.size = 0;
                    self.size_digits = 0;
                    self.line_len = 0;
                    if size == 0 {
                        self.state = State::Trailers { line_start: true };
                    } else {
                        if self.decoded.saturating_add(size) > self.max_body {
                            return Err(ApiError::fatal(
                                Status::PayloadTooLarge,
                                "payload_too_large",
                                format!(
                                    "chunked body exceeds the limit of {} bytes",
                                    self.max_body
                                ),
                            ));
                        }
                        self.state = State::Data(size);
                    }
                }
                State::Data(remaining) => {
                    let available = (input.len() - i) as u64;
                    let take = remaining.min(available) as usize;
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    self.decoded += take as u64;
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data(left)
                    };
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(bad("chunk data is not followed by CRLF"));
                    }
                    self.state = State::DataLf;
                    i += 1;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(bad("chunk data is not followed by CRLF"));
                    }
                    self.state = State::Size;
                    i += 1;
                }
                State::Trailers { line_start } => {
                    self.trailer_len += 1;
                    if self.trailer_len > MAX_TRAILERS {
                        return Err(ApiError::fatal(
                            Status::HeaderFieldsTooLarge,
                            "header_fields_too_large",
                            "chunked trailer section is too large",
                        ));
                    }
                    i += 1;
                    match b {
                        b'\r' => self.state = State::TrailerLf { empty: line_start },
                        b'\n' => return Err(bad("trailer lines must end with CRLF")),
                        b'\0' => return Err(bad("NUL in chunked trailer")),
                        _ => self.state = State::Trailers { line_start: false },
                    }
                }
                State::TrailerLf { empty } => {
                    if b != b'\n' {
                        return Err(bad("trailer lines must end with CRLF"));
                    }
                    i += 1;
                    if empty {
                        self.state = State::Done;
                        return Ok(Progress {
                            consumed: i,
                            done: true,
                        });
                    }
                    self.state = State::Trailers { line_start: true };
                }
                State::Done => {
                    return Ok(Progress {
                        consumed: i,
                        done: true,
                    })
                }
            }
        }
        Ok(Progress {
            consumed: i,
            done: self.state == State::Done,
        })
    }
}

/// RFC 9110 token characters (chunk extension names and unquoted values).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize), ApiError> {
        let mut d = ChunkedDecoder::new(1 << 20);
        let mut out = Vec::new();
        let p = d.decode(input, &mut out)?;
        assert!(p.done, "not done");
        Ok((out, p.consumed))
    }

    #[test]
    fn decodes_with_extensions_and_trailers() {
        let raw =
            b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (out, consumed) = decode_all(raw).unwrap();
        assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(&raw[consumed..], b"NEXT");
    }

    #[test]
    fn rejects_lenient_framing_that_proxies_read_differently() {
        for raw in [
            &b"5 6\r\nhello\r\n0\r\n\r\n"[..],
            b"5\nhello\r\n0\r\n\r\n",
            b"5\rjunk\nhello\r\n0\r\n\r\n",
            b"5;a=\"x\ny\"\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\r\n0\r\nX: 1\n\r\n",
            b"5\r\nhello\r\n0\r\n\n",
        ] {
            let err = decode_all(raw).unwrap_err();
            assert_eq!(
                err.status,
                Status::BadRequest,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        // Legal: whitespace before extensions, token and quoted values, trailers with CRLF.
        let (out, _) = decode_all(b"5 ;a=b;c=\"q\\\"x\"\r\nhello\r\n0\r\nT: 1\r\n\r\n").unwrap();
        assert_eq!(out, b"hello");
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(decode_all(b"g\r\n").unwrap_err().status, Status::BadRequest);
        assert_eq!(
            decode_all(b"3\r\nabcX").unwrap_err().status,
            Status::BadRequest
        );
        assert_eq!(
            decode_all(b"11111111111111111\r\n").unwrap_err().status,
            Status::BadRequest
        );
        let mut d = ChunkedDecoder::new(10);
        let err = d.decode(b"b\r\n", &mut Vec::new()).unwrap_err();
        assert_eq!(err.status, Status::PayloadTooLarge);
    }

    proptest! {
        /// Any split of a valid encoding into pieces decodes to the same body.
        #[test]
        fn split_anywhere(body in proptest::collection::vec(any::<u8>(), 0..300),
                          chunk in 1usize..40, cuts in proptest::collection::vec(0usize..400, 0..6)) {
            let mut enc = Vec::new();
            for c in body.chunks(chunk) {
                enc.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                enc.extend_from_slice(c);
                enc.extend_from_slice(b"\r\n");
            }
            enc.extend_from_slice(b"0\r\n\r\n");
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(enc.len())).collect();
            cuts.push(enc.len());
            cuts.sort_unstable();
            let mut d = ChunkedDecoder::new(1 << 20);
            let mut out = Vec::new();
            let mut pos = 0;
            let mut done = false;
            for cut in cuts {
                if cut < pos { continue; }
                let p = d.decode(&enc[pos..cut], &mut out).unwrap();
                pos += p.consumed;
                done = p.done;
            }
            prop_assert!(done);
            prop_assert_eq!(pos, enc.len());
            prop_assert_eq!(out, body);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut d = ChunkedDecoder::new(1000);
            let _ = d.decode(&bytes, &mut Vec::new());
        }
    }
}
