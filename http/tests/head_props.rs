//! Property tests of head parsing: whatever the bytes, no panic; an accepted head never holds
//! a control character, a bare line ending or an ambiguous framing field; every proper prefix of
//! an accepted head is `Partial`, and extra bytes after it change nothing.

use bodypipe_http::{parse_head, Body, HeadLimits, Parsed};
use proptest::prelude::*;

fn field() -> impl Strategy<Value = String> {
    let name = proptest::string::string_regex("[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}").unwrap();
    let value = proptest::string::string_regex("[ -~\t]{0,20}").unwrap();
    (name, value).prop_filter_map("no framing fields", |(n, v)| {
        let lower = n.to_ascii_lowercase();
        let framing = ["content-length", "transfer-encoding", "host", "expect", "content-type", "connection"];
        (!framing.contains(&lower.as_str())).then(|| format!("{n}: {}", v.trim_matches([' ', '\t'])))
    })
}

fn valid_head() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("PATCH"), Just("X-CUSTOM")];
    let path = proptest::string::string_regex("/[A-Za-z0-9._~%!$&'()*+,;=:@/?-]{0,30}").unwrap();
    let framing = prop_oneof![
        Just(String::new()),
        (0u64..1 << 40).prop_map(|n| format!("Content-Length: {n}\r\n")),
        Just("Transfer-Encoding: chunked\r\n".to_string()),
    ];
    (method, path, any::<bool>(), proptest::collection::vec(field(), 0..12), framing, 0usize..3).prop_map(
        |(m, p, v11, fields, framing, empty_lines)| {
            let mut s = "\r\n".repeat(empty_lines);
            s += &format!("{m} {p} HTTP/1.{}\r\nHost: example.com\r\n", u8::from(v11 || framing.starts_with('T')));
            for f in fields {
                s += &f;
                s += "\r\n";
            }
            s += &framing;
            s += "\r\n";
            s.into_bytes()
        },
    )
}

fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![3 => proptest::sample::select(b"\r\n \t:;,\0\x01\x7f\x80\xffHT/1.0-+".to_vec()), 1 => any::<u8>()]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn prefixes_are_partial_and_suffixes_are_ignored(head in valid_head(), suffix in proptest::collection::vec(any::<u8>(), 0..64)) {
        let limits = HeadLimits::default();
        let Ok(Parsed::Complete(h)) = parse_head(&head, &limits) else {
            return Err(TestCaseError::fail(format!("refused {:?}", String::from_utf8_lossy(&head))));
        };
        prop_assert_eq!(h.len, head.len());
        for n in 0..head.len() {
            prop_assert_eq!(parse_head(&head[..n], &limits), Ok(Parsed::Partial));
        }
        let mut more = head.clone();
        more.extend_from_slice(&suffix);
        prop_assert_eq!(parse_head(&more, &limits), Ok(Parsed::Complete(h)));
    }

    /// Corrupt a valid head anywhere: if it is still accepted, what it says is clean.
    #[test]
    fn accepted_heads_are_clean(head in valid_head(), edits in proptest::collection::vec((any::<usize>(), byte(), 0u8..3), 1..4)) {
        let mut b = head;
        for (i, c, op) in edits {
            let i = i % (b.len() + 1);
            match op {
                0 if i < b.len() => b[i] = c,
                1 => b.insert(i, c),
                _ if i < b.len() => { b.remove(i); }
                _ => {}
            }
        }
        check_clean(&b)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(byte(), 0..200)) {
        check_clean(&b)?;
    }
}

fn check_clean(b: &[u8]) -> Result<(), TestCaseError> {
    let Ok(Parsed::Complete(h)) = parse_head(b, &HeadLimits::default()) else {
        return Ok(());
    };
    let head = &b[..h.len];
    // Every LF of the head is part of a CRLF, and the head ends with an empty line.
    for (i, &c) in head.iter().enumerate() {
        if c == b'\n' {
            prop_assert!(i > 0 && head[i - 1] == b'\r', "bare LF in {:?}", String::from_utf8_lossy(head));
        }
        if c == b'\r' {
            prop_assert_eq!(head.get(i + 1), Some(&b'\n'));
        }
    }
    prop_assert!(head.ends_with(b"\r\n\r\n") || head == b"\r\n");
    prop_assert!(h.method.bytes().all(|c| c.is_ascii_graphic()));
    prop_assert!(h.target.bytes().all(|c| c > b' ' && c != 0x7F));
    for f in &h.fields {
        prop_assert!(!f.name.is_empty() && f.name.bytes().all(|c| c.is_ascii_graphic() && c != b':'));
        prop_assert!(f.value.iter().all(|&c| c == b'\t' || (c >= b' ' && c != 0x7F)), "{:?}", f);
        prop_assert!(f.value.first().is_none_or(|c| *c != b' ' && *c != b'\t'));
    }
    // Framing is never ambiguous: at most one length, never with chunked.
    let te = h.fields.iter().any(|f| f.name.eq_ignore_ascii_case("transfer-encoding"));
    let cl: Vec<&[u8]> =
        h.fields.iter().filter(|f| f.name.eq_ignore_ascii_case("content-length")).map(|f| f.value).collect();
    prop_assert!(!te || cl.is_empty());
    match h.body {
        Body::Chunked => prop_assert!(te && h.minor_version == 1),
        Body::Length(n) => {
            for v in cl {
                for e in v.split(|&c| c == b',') {
                    let e = std::str::from_utf8(e).unwrap().trim_matches([' ', '\t']);
                    prop_assert_eq!(e.parse::<u64>().ok(), Some(n));
                }
            }
        }
        Body::None => prop_assert!(!te && cl.is_empty()),
    }
    Ok(())
}
