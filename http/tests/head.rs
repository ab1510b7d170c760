//! Request heads: every RFC 9112 rule and every limit, each with the exact refusal.

use bodypipe_http::{parse_head, Body, Head, HeadError, HeadLimits, Parsed};

fn limits() -> HeadLimits {
    HeadLimits::default()
}

/// The head of `req`, which must be complete and accepted.
fn head(req: &[u8]) -> Head<'_> {
    match parse_head(req, &limits()) {
        Ok(Parsed::Complete(h)) => h,
        other => panic!("{:?}: expected a complete head, got {other:?}", String::from_utf8_lossy(req)),
    }
}

/// The refusal of `req`.
fn refusal(req: &[u8]) -> HeadError {
    refusal_with(req, &limits())
}

fn refusal_with(req: &[u8], limits: &HeadLimits) -> HeadError {
    match parse_head(req, limits) {
        Err(e) => e,
        other => panic!("{:?}: expected a refusal, got {other:?}", String::from_utf8_lossy(req)),
    }
}

/// A GET of `/` in HTTP/1.1 with these header lines.
fn with_fields(fields: &str) -> Vec<u8> {
    format!("POST / HTTP/1.1\r\nHost: example.com\r\n{fields}\r\n").into_bytes()
}

fn body_of(fields: &str) -> Result<Body, HeadError> {
    let req = with_fields(fields);
    match parse_head(&req, &limits()) {
        Ok(Parsed::Complete(h)) => Ok(h.body),
        Ok(Parsed::Partial) => panic!("partial"),
        Err(e) => Err(e),
    }
}

#[test]
fn a_simple_head_with_its_rest() {
    let req = b"POST /up?x=1 HTTP/1.1\r\nHost: a\r\nX-Thing:  spaced value \t\r\nContent-Length: 5\r\n\r\nhelloGET";
    let h = head(req);
    assert_eq!((h.method, h.target, h.minor_version), ("POST", "/up?x=1", 1));
    assert_eq!(h.fields.len(), 3);
    assert_eq!((h.fields[1].name, h.fields[1].value), ("X-Thing", &b"spaced value"[..]));
    assert_eq!(h.body, Body::Length(5));
    assert!(h.keep_alive && !h.expect_continue);
    assert_eq!(&req[h.len..], b"helloGET");
}

#[test]
fn every_proper_prefix_is_partial() {
    let req = b"\r\nPOST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    for n in 0..req.len() {
        assert_eq!(parse_head(&req[..n], &limits()), Ok(Parsed::Partial), "prefix of {n} bytes");
    }
    assert_eq!(head(req).len, req.len());
}

#[test]
fn leading_empty_lines_are_skipped() {
    let req = b"\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    assert_eq!(head(req).len, req.len());
}

#[test]
fn content_length_forms() {
    assert_eq!(body_of("Content-Length: 5\r\n"), Ok(Body::Length(5)));
    assert_eq!(body_of("Content-Length: 0\r\n"), Ok(Body::Length(0)));
    assert_eq!(body_of("Content-Length: 007\r\n"), Ok(Body::Length(7)));
    assert_eq!(body_of("Content-Length:\t5 \r\n"), Ok(Body::Length(5)));
    assert_eq!(body_of("Content-Length: 18446744073709551615\r\n"), Ok(Body::Length(u64::MAX)));
    for bad in [
        "+3",
        "-0",
        "-1",
        "0, 5",
        "0 5",
        "5,",
        ",5",
        "5,,5",
        "",
        "abc",
        "1_0",
        "0x10",
        "5.0",
        "1e3",
        "18446744073709551616",
        "99999999999999999999999",
    ] {
        assert_eq!(body_of(&format!("Content-Length: {bad}\r\n")), Err(HeadError::BadContentLength), "{bad:?}");
    }
}

#[test]
fn content_length_identical_repeats_are_one_length() {
    assert_eq!(body_of("Content-Length: 5, 5\r\n"), Ok(Body::Length(5)));
    assert_eq!(body_of("Content-Length: 5\r\ncontent-length: 5\r\n"), Ok(Body::Length(5)));
    assert_eq!(body_of("Content-Length: 5\r\nContent-Length: 6\r\n"), Err(HeadError::BadContentLength));
    assert_eq!(body_of("Content-Length: 5, 6\r\n"), Err(HeadError::BadContentLength));
    // Same number, different spelling: not identical.
    assert_eq!(body_of("Content-Length: 5\r\nContent-Length: 05\r\n"), Err(HeadError::BadContentLength));
}

#[test]
fn content_length_with_transfer_encoding_is_refused() {
    let e = HeadError::ContentLengthWithTransferEncoding;
    assert_eq!(body_of("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n"), Err(e));
    assert_eq!(body_of("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n"), Err(e));
    assert_eq!(body_of("Transfer-Encoding: gzip\r\nContent-Length: 0\r\n"), Err(e));
    assert_eq!(e.status(), 400);
}

#[test]
fn transfer_codings() {
    for ok in ["chunked", "Chunked", "CHUNKED", " chunked ", ", chunked", "chunked,"] {
        assert_eq!(body_of(&format!("Transfer-Encoding: {ok}\r\n")), Ok(Body::Chunked), "{ok:?}");
    }
    let cases = [
        ("gzip, chunked", HeadError::UnsupportedTransferEncoding),
        ("GZIP, Chunked", HeadError::UnsupportedTransferEncoding),
        ("identity, chunked", HeadError::UnsupportedTransferEncoding),
        ("x-custom;p=1, chunked", HeadError::UnsupportedTransferEncoding),
        ("chunked, gzip", HeadError::ChunkedNotFinal),
        ("gzip", HeadError::ChunkedNotFinal),
        ("identity", HeadError::ChunkedNotFinal),
        ("chunked, chunked", HeadError::BadTransferEncoding),
        ("identity, chunked, identity, chunked", HeadError::BadTransferEncoding),
        ("chunked;q=1", HeadError::BadTransferEncoding),
        ("", HeadError::BadTransferEncoding),
        (" , ", HeadError::BadTransferEncoding),
        ("chun ked", HeadError::BadTransferEncoding),
        ("\"chunked\"", HeadError::BadTransferEncoding),
    ];
    for (value, e) in cases {
        assert_eq!(body_of(&format!("Transfer-Encoding: {value}\r\n")), Err(e), "{value:?}");
    }
    assert_eq!(HeadError::UnsupportedTransferEncoding.status(), 501);
}

#[test]
fn transfer_encoding_fields_are_one_list() {
    assert_eq!(
        body_of("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"),
        Err(HeadError::UnsupportedTransferEncoding)
    );
    assert_eq!(body_of("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"), Err(HeadError::ChunkedNotFinal));
    assert_eq!(
        body_of("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
        Err(HeadError::BadTransferEncoding)
    );
}

#[test]
fn transfer_encoding_in_http10_is_refused() {
    let req = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(refusal(req), HeadError::TransferEncodingInHttp10);
}

#[test]
fn no_framing_field_means_no_body() {
    assert_eq!(body_of(""), Ok(Body::None));
    assert_eq!(body_of("Transfer_Encoding: chunked\r\n"), Ok(Body::None));
}

#[test]
fn obs_fold_is_refused() {
    assert_eq!(refusal(b"GET / HTTP/1.1\r\nLong: one\r\n two\r\n\r\n"), HeadError::ObsFold);
    assert_eq!(refusal(b"GET / HTTP/1.1\r\nLong: one\r\n\ttwo\r\n\r\n"), HeadError::ObsFold);
    assert_eq!(refusal(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"), HeadError::ObsFold);
}

#[test]
fn control_characters_in_fields_are_refused() {
    for ctl in (0u8..0x20).filter(|&b| b != b'\t' && b != b'\r' && b != b'\n').chain([0x7F]) {
        let mut req = b"GET / HTTP/1.1\r\nX: a".to_vec();
        req.push(ctl);
        req.extend_from_slice(b"b\r\n\r\n");
        assert_eq!(refusal(&req), HeadError::BadHeaderValue, "value with {ctl:#x}");
        let mut req = b"GET / HTTP/1.1\r\nX".to_vec();
        req.push(ctl);
        req.extend_from_slice(b"y: a\r\n\r\n");
        assert_eq!(refusal(&req), HeadError::BadHeaderName, "name with {ctl:#x}");
    }
    assert_eq!(refusal(b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"), HeadError::BadHeaderValue);
    // HTAB and obs-text are allowed in values.
    let h = head(b"GET / HTTP/1.1\r\nX: caf\xc3\xa9\tand \x80\xff\r\n\r\n");
    assert_eq!(h.fields[0].value, b"caf\xc3\xa9\tand \x80\xff");
}

#[test]
fn header_names_are_tokens_ending_at_the_colon() {
    assert_eq!(refusal(b"GET / HTTP/1.1\r\nContent-Length : 3\r\n\r\n"), HeadError::BadHeaderName);
    assert_eq!(refusal(b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n"), HeadError::BadHeaderName);
    assert_eq!(refusal(b"GET / HTTP/1.1\r\n: empty name\r\n\r\n"), HeadError::BadHeaderName);
    assert_eq!(refusal(b"GET / HTTP/1.1\r\nContent-Length\xc3\x9f: 3\r\n\r\n"), HeadError::BadHeaderName);
    assert_eq!(head(b"GET / HTTP/1.1\r\nX.Custom|Pipe~!: ok\r\n\r\n").fields[0].name, "X.Custom|Pipe~!");
}

#[test]
fn lines_must_end_in_crlf() {
    assert_eq!(refusal(b"GET / HTTP/1.1\nHost: a\r\n\r\n"), HeadError::BadLineEnding);
    assert_eq!(refusal(b"GET / HTTP/1.1\r\nHost: a\n\r\n"), HeadError::BadLineEnding);
    assert_eq!(refusal(b"GET / HTTP/1.1\r\nHost: a\r\n\n"), HeadError::BadLineEnding);
    assert_eq!(refusal(b"\nGET / HTTP/1.1\r\n\r\n"), HeadError::BadLineEnding);
    // A value holding a bare LF would otherwise smuggle a field line in.
    let req = b"GET / HTTP/1.1\r\nHost: x\r\nNewline: a\nContent-Length: 26\r\n\r\n";
    assert_eq!(refusal(req), HeadError::BadLineEnding);
    // Also before the head is complete.
    assert_eq!(refusal(b"GET / HTTP/1.1\r\nA: b\nC"), HeadError::BadLineEnding);
}

#[test]
fn versions() {
    assert_eq!(head(b"GET / HTTP/1.0\r\n\r\n").minor_version, 0);
    assert_eq!(head(b"GET / HTTP/1.1\r\n\r\n").minor_version, 1);
    for v in ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.0"] {
        let e = refusal(format!("GET / {v}\r\n\r\n").as_bytes());
        assert_eq!((e, e.status()), (HeadError::UnsupportedVersion, 505), "{v}");
    }
    for v in ["HTTP/1.1x", "HTTP/11", "HTTP/111", "http/1.1", "HTTP/1", "HTTP/0.99", "FTP/1.1", "HTTP/1.1 ", "HTTP/a.b"]
    {
        let e = refusal(format!("GET / {v}\r\n\r\n").as_bytes());
        assert!(matches!(e, HeadError::BadVersion | HeadError::BadRequestLine), "{v}: {e:?}");
        assert_eq!(e.status(), 400, "{v}");
    }
    // What came of a version so far can still become a well-formed one.
    for prefix in ["GET / HTTP/2", "GET / HTTP/2.", "GET / HTTP/2.0", "GET / HTTP/2.0\r"] {
        assert_eq!(parse_head(prefix.as_bytes(), &limits()), Ok(Parsed::Partial), "{prefix:?}");
    }
    assert_eq!(refusal(b"GET / HTTP/2x"), HeadError::BadVersion);
}

#[test]
fn malformed_request_lines() {
    for line in [
        "GET  / HTTP/1.1",
        "GET /  HTTP/1.1",
        "GET HTTP/1.1",
        " GET / HTTP/1.1",
        "GET\t/ HTTP/1.1",
        "G(T / HTTP/1.1",
        "bla:rgh /foo HTTP/1.1",
        "GET\0 /foo HTTP/1.1",
        "GET / x HTTP/1.1",
        "GET /a b HTTP/1.1",
    ] {
        let e = refusal(format!("{line}\r\n\r\n").as_bytes());
        assert_eq!(e.status(), 400, "{line:?}: {e:?}");
    }
}

#[test]
fn target_forms() {
    assert_eq!(head(b"OPTIONS * HTTP/1.1\r\n\r\n").target, "*");
    assert_eq!(head(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n").target, "example.com:443");
    assert_eq!(head(b"CONNECT [::1]:443 HTTP/1.1\r\n\r\n").target, "[::1]:443");
    assert_eq!(head(b"GET http://user:pw@example.com:8080/a?q=1 HTTP/1.1\r\n\r\n").method, "GET");
    assert_eq!(head(b"GET https://[::1]:8080/foo HTTP/1.1\r\n\r\n").method, "GET");
    assert_eq!(head(b"GET http://example.com HTTP/1.1\r\n\r\n").method, "GET");
    assert_eq!(head(b"GET ///keeping_slashes HTTP/1.1\r\n\r\n").target, "///keeping_slashes");
    assert_eq!(head("GET /\u{e0}%20k HTTP/1.0\r\n\r\n".as_bytes()).target, "/\u{e0}%20k");
    for (method, target) in [
        ("GET", "*"),
        ("GET", "example.com:443"),
        ("GET", "foo/bar"),
        ("CONNECT", "/x"),
        ("CONNECT", "example.com"),
        ("CONNECT", "example.com:"),
        ("PUT", "s://]ufd/:"),
        ("GET", "http:///x"),
        ("GET", "http:x"),
        ("GET", "1http://a/"),
        ("GET", "http://a b/"),
        ("OPTIONS", "**"),
    ] {
        let e = refusal(format!("{method} {target} HTTP/1.1\r\n\r\n").as_bytes());
        assert_eq!(e.status(), 400, "{method} {target}: {e:?}");
    }
}

#[test]
fn host_fields() {
    assert_eq!(head(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n").fields.len(), 1);
    assert_eq!(head(b"GET / HTTP/1.1\r\nHost: 0.0.0.0=5000\r\n\r\n").fields.len(), 1);
    assert_eq!(head(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").fields.len(), 1);
    // A missing Host is accepted (many clients and test corpora omit it).
    assert_eq!(head(b"GET / HTTP/1.1\r\n\r\n").fields.len(), 0);
    assert_eq!(refusal(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), HeadError::BadHost);
    assert_eq!(refusal(b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"), HeadError::BadHost);
    for bad in ["a b", "a:b", "a/b", "[::1", "user@host", ":80"] {
        assert_eq!(refusal(format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n").as_bytes()), HeadError::BadHost, "{bad}");
    }
}

#[test]
fn singleton_content_type() {
    let req = with_fields("Content-Type: a/b\r\nContent-Type: c/d\r\n");
    assert_eq!(refusal(&req), HeadError::DuplicateField);
}

#[test]
fn expect() {
    assert!(head(b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n").expect_continue);
    assert!(head(b"PUT / HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n").expect_continue);
    // Ignored in HTTP/1.0 (RFC 9110 §10.1.1).
    assert!(!head(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue);
    for bad in ["foo", "100-continue, foo", "200-ok", "100-continue;x=1"] {
        let e = refusal(format!("PUT / HTTP/1.1\r\nExpect: {bad}\r\n\r\n").as_bytes());
        assert_eq!((e, e.status()), (HeadError::ExpectationFailed, 417), "{bad}");
    }
}

#[test]
fn keep_alive() {
    let ka = |req: &[u8]| head(req).keep_alive;
    assert!(ka(b"GET / HTTP/1.1\r\n\r\n"));
    assert!(!ka(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
    assert!(!ka(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n"));
    assert!(!ka(b"GET / HTTP/1.1\r\nConnection: upgrade, close\r\n\r\n"));
    assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
    assert!(ka(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    assert!(!ka(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"));
}

#[test]
fn request_line_limit() {
    let l = HeadLimits { max_request_line: 64, ..limits() };
    let line = |n: usize| format!("GET /{} HTTP/1.1", "a".repeat(n - 14));
    let ok = format!("{}\r\n\r\n", line(64));
    assert!(matches!(parse_head(ok.as_bytes(), &l), Ok(Parsed::Complete(_))));
    let long = format!("{}\r\n\r\n", line(65));
    let e = refusal_with(long.as_bytes(), &l);
    assert_eq!((e, e.status()), (HeadError::RequestLineTooLong, 414));
    // Also before the line is complete: as soon as it is longer than the limit.
    let partial = format!("GET /{}", "a".repeat(59));
    assert_eq!(parse_head(partial.as_bytes(), &l), Ok(Parsed::Partial));
    let partial = format!("GET /{}", "a".repeat(60));
    assert_eq!(refusal_with(partial.as_bytes(), &l), HeadError::RequestLineTooLong);
}

#[test]
fn header_line_limit() {
    let l = HeadLimits { max_header_line: 32, ..limits() };
    let field = |n: usize| format!("X: {}", "v".repeat(n - 3));
    let ok = format!("GET / HTTP/1.1\r\n{}\r\n\r\n", field(32));
    assert!(matches!(parse_head(ok.as_bytes(), &l), Ok(Parsed::Complete(_))));
    let long = format!("GET / HTTP/1.1\r\n{}\r\n\r\n", field(33));
    let e = refusal_with(long.as_bytes(), &l);
    assert_eq!((e, e.status()), (HeadError::HeaderLineTooLong, 431));
    let partial = format!("GET / HTTP/1.1\r\n{}", field(33));
    assert_eq!(refusal_with(partial.as_bytes(), &l), HeadError::HeaderLineTooLong);
}

#[test]
fn header_count_limit() {
    let l = HeadLimits { max_headers: 5, ..limits() };
    let req = |n: usize| {
        let mut r = String::from("GET / HTTP/1.1\r\n");
        for i in 0..n {
            r.push_str(&format!("X-{i}: {i}\r\n"));
        }
        r
    };
    assert!(matches!(parse_head(format!("{}\r\n", req(5)).as_bytes(), &l), Ok(Parsed::Complete(_))));
    let e = refusal_with(format!("{}\r\n", req(6)).as_bytes(), &l);
    assert_eq!((e, e.status()), (HeadError::TooManyHeaders, 431));
    assert_eq!(refusal_with(req(7).as_bytes(), &l), HeadError::TooManyHeaders);
    assert_eq!(refusal(format!("{}\r\n", req(101)).as_bytes()), HeadError::TooManyHeaders);
}

#[test]
fn head_size_limit() {
    let l = HeadLimits { max_head_size: 100, ..limits() };
    let base = "GET / HTTP/1.1\r\nX: ";
    let req = |total: usize| format!("{base}{}\r\n\r\n", "v".repeat(total - base.len() - 4));
    let ok = req(100);
    assert!(matches!(parse_head(ok.as_bytes(), &l), Ok(Parsed::Complete(h)) if h.len == 100));
    let e = refusal_with(req(101).as_bytes(), &l);
    assert_eq!((e, e.status()), (HeadError::HeadTooLarge, 431));
    // Incomplete: refused once more than the limit has arrived without the end of the head.
    let partial = format!("{base}{}", "v".repeat(100 - base.len()));
    assert_eq!(parse_head(partial.as_bytes(), &l), Ok(Parsed::Partial));
    let partial = format!("{base}{}", "v".repeat(101 - base.len()));
    assert_eq!(refusal_with(partial.as_bytes(), &l), HeadError::HeadTooLarge);
    // Many short lines: the default limit holds too.
    let mut endless = b"GET / HTTP/1.1\r\n".to_vec();
    while endless.len() <= 65536 {
        endless.extend_from_slice(b"X: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n");
    }
    let e = refusal_with(&endless, &HeadLimits { max_headers: 10_000, ..limits() });
    assert_eq!(e, HeadError::HeadTooLarge);
}

#[test]
fn a_huge_input_is_looked_at_only_up_to_the_head_limit() {
    let mut req = b"POST / HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n".to_vec();
    let head_len = req.len();
    req.resize(head_len + 10_000_000, b'\n');
    let h = head(&req);
    assert_eq!((h.len, h.body), (head_len, Body::Length(10_000_000)));
    // No end of head in the first 64 KiB + 1: refused as too large, whatever follows (here a
    // bare LF, which would be refused differently if it were looked at).
    let mut endless = b"GET / HTTP/1.1\r\n".to_vec();
    while endless.len() <= 65537 {
        endless.extend_from_slice(b"X: 0123456789012345678901234567890123456789\r\n");
    }
    endless.extend_from_slice(b"bare\nLF");
    let many = HeadLimits { max_headers: 10_000, ..limits() };
    assert_eq!(refusal_with(&endless, &many), HeadError::HeadTooLarge);
    assert_eq!(refusal_with(&endless, &HeadLimits { max_head_size: 1 << 20, ..many }).status(), 400);
}

#[test]
fn every_refusal_has_a_4xx_or_5xx_status_and_a_name() {
    let all = [
        HeadError::BadRequestLine,
        HeadError::BadTarget,
        HeadError::RequestLineTooLong,
        HeadError::BadVersion,
        HeadError::UnsupportedVersion,
        HeadError::BadLineEnding,
        HeadError::BadHeaderName,
        HeadError::BadHeaderValue,
        HeadError::ObsFold,
        HeadError::HeaderLineTooLong,
        HeadError::TooManyHeaders,
        HeadError::HeadTooLarge,
        HeadError::BadContentLength,
        HeadError::ContentLengthWithTransferEncoding,
        HeadError::BadTransferEncoding,
        HeadError::ChunkedNotFinal,
        HeadError::UnsupportedTransferEncoding,
        HeadError::TransferEncodingInHttp10,
        HeadError::BadHost,
        HeadError::DuplicateField,
        HeadError::ExpectationFailed,
        HeadError::OutOfMemory,
    ];
    let mut names: Vec<&str> = all.iter().map(|e| e.reason()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all.len(), "reasons are distinct");
    for e in all {
        assert!((400..600).contains(&e.status()), "{e:?}");
        assert!(e.reason().bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()));
        assert!(!e.to_string().is_empty());
    }
}
