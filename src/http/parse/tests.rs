//! Unit tests of the parent module.

use super::*;
use proptest::prelude::*;

fn parse(s: &str) -> Result<Parsed<Head>, ApiError> {
    parse_head(s.as_bytes(), &Limits::default())
}

fn done(s: &str) -> Head {
    match parse(s) {
        Ok(Parsed::Done(h)) => h,
        other => panic!("expected a head, got {other:?}"),
    }
}

fn status(s: &str) -> u16 {
    parse(s).unwrap_err().status.code()
}

#[test]
fn simple_get() {
    let raw = "GET /health?x=1 HTTP/1.1\r\nHost: a\r\n\r\n";
    let h = done(raw);
    assert_eq!(h.method, Method::Get);
    assert_eq!(h.path(raw.as_bytes()), "/health");
    assert_eq!(&raw.as_bytes()[h.query.clone().unwrap()], b"x=1");
    assert!(h.keep_alive);
    assert_eq!(h.body, BodyKind::Empty);
    assert_eq!(h.len, raw.len());
    assert_eq!(h.header(raw.as_bytes(), "HOST"), Some(&b"a"[..]));
}

#[test]
fn incomplete_then_complete() {
    assert_eq!(parse("GET / HTTP/1.1\r\nHo").unwrap(), Parsed::Incomplete);
    assert_eq!(parse("").unwrap(), Parsed::Incomplete);
}

#[test]
fn keep_alive_rules() {
    assert!(!done("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").keep_alive);
    assert!(!done("GET / HTTP/1.0\r\n\r\n").keep_alive);
    assert!(done("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
    assert!(!done("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
}

#[test]
fn absolute_form_target() {
    let raw = "GET http://example.com/health?q HTTP/1.1\r\nHost: example.com\r\n\r\n";
    let h = done(raw);
    assert_eq!(h.path(raw.as_bytes()), "/health");
}

#[test]
fn body_framing() {
    assert_eq!(
        done("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n").body,
        BodyKind::Length(5)
    );
    assert_eq!(
        done("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n").body,
        BodyKind::Length(5)
    );
    assert_eq!(
        done("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n").body,
        BodyKind::Chunked
    );
}

#[test]
fn smuggling_and_bad_lengths_are_400() {
    assert_eq!(
        status(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
        400
    );
    assert_eq!(
        status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
        400
    );
    assert_eq!(
        status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"),
        400
    );
    assert_eq!(
        status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n"),
        400
    );
    assert_eq!(
        status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n"),
        400
    );
    assert_eq!(
        status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
        400
    );
    assert_eq!(
        status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
        501
    );
    assert_eq!(
        status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        400
    );
}

#[test]
fn nul_and_obs_fold_are_400() {
    assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"), 400);
    assert_eq!(
        status("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n  folded\r\n\r\n"),
        400
    );
    assert_eq!(status("GET / HTTP/1.1\r\nHo st: a\r\n\r\n"), 400);
}

#[test]
fn host_is_required_once_on_http11() {
    assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
}

#[test]
fn limits() {
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
    assert_eq!(status(&long_target), 414);
    let partial_long_target = format!("GET /{}", "a".repeat(9000));
    assert_eq!(status(&partial_long_target), 414);
    let many = format!(
        "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
        "X-A: b\r\n".repeat(100)
    );
    assert_eq!(status(&many), 431);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n",
        "b".repeat(17_000)
    );
    assert_eq!(status(&big), 431);
    assert_eq!(
        status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n"),
        413
    );
    assert_eq!(status("GET / HTTP/2.0\r\n\r\n"), 505);
    assert_eq!(
        status("GET / HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\n\r\n"),
        417
    );
}

#[test]
fn exactly_at_limits_is_accepted() {
    let target = format!("/{}", "a".repeat(8 * 1024 - 1));
    let raw = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(done(&raw).path(raw.as_bytes()).len(), 8 * 1024);
    let headers = format!(
        "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
        "X-A: b\r\n".repeat(99)
    );
    assert_eq!(done(&headers).headers.len(), 100);
}

#[test]
fn decimal() {
    assert_eq!(parse_decimal(b"0"), Some(0));
    assert_eq!(parse_decimal(b"18446744073709551615"), None);
    assert_eq!(
        parse_decimal(b"1844674407370955161"),
        Some(1_844_674_407_370_955_161)
    );
    assert_eq!(parse_decimal(b""), None);
    assert_eq!(parse_decimal(b"1a"), None);
}

/// Regression (fuzz: http_request): the empty lines a client may send before a request
/// were taken for the blank line that ends a head, so a buffer that arrived whole was
/// parsed (and refused) at once while the same bytes arriving in pieces waited for more.
#[test]
fn leading_empty_lines_do_not_end_a_head() {
    assert!(!head_may_be_complete(
        b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n",
        0
    ));
    assert!(!head_may_be_complete(b"\n\n\r\nGET /", 0));
    assert!(head_may_be_complete(
        b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        0
    ));
    assert!(head_may_be_complete(b"GET / HTTP/1.0\n\n", 0));
    assert_eq!(leading_empty_lines(b"\r\n\n\r\rx"), 3);
    let input = b"\r\n\r\nT /a HTTP/1.1\r\nHost: a\r\n@\x80\r\nPO /b HTTP/1.1\r\n";
    let (mut whole, mut split) = (HeadScanner::new(), HeadScanner::new());
    assert_eq!(
        whole.poll(input, &Limits::default()),
        Ok(Parsed::Incomplete)
    );
    for end in 1..=input.len() {
        assert_eq!(
            split.poll(&input[..end], &Limits::default()),
            Ok(Parsed::Incomplete)
        );
    }
}

/// A head too long to be valid is judged on its first `max_head + 1` bytes, however it
/// arrived: a bad byte past them (here a NUL) does not turn the 431 into a 400 when the
/// whole buffer arrives at once.
#[test]
fn an_oversized_head_is_judged_on_the_same_bytes_whole_or_split() {
    let limits = Limits::default();
    let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
    raw.resize(limits.max_head() + 500, b'a');
    raw.extend_from_slice(b"\0\r\n\r\n");
    let whole = HeadScanner::new().poll(&raw, &limits).unwrap_err();
    let mut split = HeadScanner::new();
    let mut err = None;
    for end in (1000..raw.len()).step_by(1000).chain([raw.len()]) {
        if let Err(e) = split.poll(&raw[..end], &limits) {
            err = Some(e);
            break;
        }
    }
    assert_eq!(Some(whole.clone()), err);
    assert_eq!(whole.status, Status::HeaderFieldsTooLarge);
}

proptest! {
    #[test]
    fn never_panics_and_len_is_in_bounds(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(Parsed::Done(h)) = parse_head(&bytes, &Limits::default()) {
            prop_assert!(h.len <= bytes.len());
            prop_assert!(h.path.end <= h.len);
        }
    }

    #[test]
    fn every_prefix_of_a_valid_head_is_incomplete(cut in 0usize..60) {
        let raw = b"POST /ai/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
        let cut = cut.min(raw.len() - 1);
        prop_assert_eq!(parse_head(&raw[..cut], &Limits::default()).unwrap(), Parsed::Incomplete);
    }
}
