//! The request target's form, checked against the method (RFC 9112 §3.2), and the `Host` value
//! (RFC 9110 §7.2). httparse only checks that the target is visible characters.

use crate::error::HeadError;

/// Checks that `target` has a form `method` may use: origin-form (`/path?query`) or
/// absolute-form (`scheme://authority/path`) for every method but CONNECT, which takes only
/// authority-form (`host:port`); asterisk-form (`*`) only for OPTIONS.
pub(crate) fn check(method: &str, target: &str) -> Result<(), HeadError> {
    let t = target.as_bytes();
    let ok = if method == "CONNECT" {
        authority_form(t)
    } else if t == b"*" {
        method == "OPTIONS"
    } else {
        t.first() == Some(&b'/') || absolute_form(t)
    };
    if ok {
        Ok(())
    } else {
        Err(HeadError::BadTarget)
    }
}

/// Checks a `Host` field value: `uri-host [ ":" port ]`, or empty.
pub(crate) fn check_host(value: &[u8]) -> Result<(), HeadError> {
    if value.is_empty() || host_port(value).is_some_and(|(host, _)| !host.is_empty()) {
        Ok(())
    } else {
        Err(HeadError::BadHost)
    }
}

/// `uri-host ":" port`, the port not empty.
fn authority_form(t: &[u8]) -> bool {
    matches!(host_port(t), Some((host, Some(port))) if !host.is_empty() && !port.is_empty())
}

/// `scheme "://" authority path-abempty [ "?" query ]`, the host not empty (RFC 9110 §4.2.1).
fn absolute_form(t: &[u8]) -> bool {
    let Some(colon) = t.iter().position(|&b| b == b':') else {
        return false;
    };
    let (scheme, rest) = (&t[..colon], &t[colon + 1..]);
    let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme.iter().all(|&b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    let Some(rest) = rest.strip_prefix(b"//") else {
        return false;
    };
    let end = rest.iter().position(|&b| b"/?#".contains(&b)).unwrap_or(rest.len());
    let authority = &rest[..end];
    let hostport = match authority.iter().rposition(|&b| b == b'@') {
        Some(at) if authority[..at].iter().all(|&b| is_unreserved_or_sub_delim(b) || b == b':' || b == b'%') => {
            &authority[at + 1..]
        }
        Some(_) => return false,
        None => authority,
    };
    scheme_ok && host_port(hostport).is_some_and(|(host, _)| !host.is_empty())
}

/// Splits `host [ ":" port ]`; `None` if either part is malformed.
fn host_port(s: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let (host, after) = if s.first() == Some(&b'[') {
        let close = s.iter().position(|&b| b == b']')?;
        let inner = &s[1..close];
        if inner.is_empty() || !inner.iter().all(|&b| is_unreserved_or_sub_delim(b) || b == b':') {
            return None;
        }
        (&s[..close + 1], &s[close + 1..])
    } else {
        let end = s.iter().position(|&b| b == b':').unwrap_or(s.len());
        let host = &s[..end];
        if !reg_name(host) {
            return None;
        }
        (host, &s[end..])
    };
    match after {
        [] => Some((host, None)),
        [b':', port @ ..] if port.iter().all(u8::is_ascii_digit) => Some((host, Some(port))),
        _ => None,
    }
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )`.
fn reg_name(s: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b == b'%' {
            if !(s.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && s.get(i + 2).is_some_and(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
        } else if is_unreserved_or_sub_delim(b) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

fn is_unreserved_or_sub_delim(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b)
}
