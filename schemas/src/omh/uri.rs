//! RFC 3986 absolute URIs, for the one `format: uri` of the schemas (`omh:schema-id:1.1` `url`), which the official
//! test data expects to be asserted (`shouldFail/invalid-url.json`).

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(b: u8) -> bool {
    matches!(b, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=')
}

/// Every byte is allowed by `extra` or is part of a `%XX` escape.
fn all_chars(text: &[u8], allowed: impl Fn(u8) -> bool) -> bool {
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'%' {
            if !(text.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && text.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
        } else if allowed(text[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

fn is_pchar(b: u8) -> bool {
    is_unreserved(b) || is_sub_delim(b) || matches!(b, b':' | b'@')
}

fn is_host(host: &[u8]) -> bool {
    match host {
        [b'[', literal @ .., b']'] => match literal {
            [b'v' | b'V', rest @ ..] => {
                let Some(dot) = rest.iter().position(|&b| b == b'.') else { return false };
                dot > 0
                    && rest[..dot].iter().all(u8::is_ascii_hexdigit)
                    && dot + 1 < rest.len()
                    && rest[dot + 1..].iter().all(|&b| is_unreserved(b) || is_sub_delim(b) || b == b':')
            }
            _ => std::str::from_utf8(literal).is_ok_and(|text| text.parse::<std::net::Ipv6Addr>().is_ok()),
        },
        _ => all_chars(host, |b| is_unreserved(b) || is_sub_delim(b)),
    }
}

fn is_authority(authority: &[u8]) -> bool {
    let (userinfo, host_port) = match authority.iter().rposition(|&b| b == b'@') {
        Some(at) => (&authority[..at], &authority[at + 1..]),
        None => (&authority[..0], authority),
    };
    if !all_chars(userinfo, |b| is_unreserved(b) || is_sub_delim(b) || b == b':') {
        return false;
    }
    // the port follows the last ':' after any IP literal
    let literal_end = host_port.iter().rposition(|&b| b == b']').map_or(0, |end| end + 1);
    let (host, port) = match host_port[literal_end..].iter().rposition(|&b| b == b':') {
        Some(colon) => (&host_port[..literal_end + colon], &host_port[literal_end + colon + 1..]),
        None => (host_port, &host_port[..0]),
    };
    port.iter().all(u8::is_ascii_digit) && is_host(host)
}

/// `scheme ":" hier-part [ "?" query ] [ "#" fragment ]`
pub(crate) fn is_uri(text: &str) -> bool {
    let bytes = text.as_bytes();
    let Some(colon) = bytes.iter().position(|&b| b == b':') else { return false };
    let scheme = &bytes[..colon];
    if !scheme.first().is_some_and(u8::is_ascii_alphabetic)
        || !scheme.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return false;
    }
    let rest = &bytes[colon + 1..];
    let (rest, fragment) = match rest.iter().position(|&b| b == b'#') {
        Some(hash) => (&rest[..hash], Some(&rest[hash + 1..])),
        None => (rest, None),
    };
    let (hier, query) = match rest.iter().position(|&b| b == b'?') {
        Some(question) => (&rest[..question], Some(&rest[question + 1..])),
        None => (rest, None),
    };
    let query_ok =
        |part: Option<&[u8]>| part.is_none_or(|part| all_chars(part, |b| is_pchar(b) || b == b'/' || b == b'?'));
    if !query_ok(query) || !query_ok(fragment) {
        return false;
    }
    match hier.strip_prefix(b"//") {
        Some(after) => {
            let end = after.iter().position(|&b| b == b'/').unwrap_or(after.len());
            is_authority(&after[..end]) && all_chars(&after[end..], |b| is_pchar(b) || b == b'/')
        }
        None => all_chars(hier, |b| is_pchar(b) || b == b'/'),
    }
}

#[cfg(test)]
mod tests {
    use super::is_uri;

    #[test]
    fn absolute_uris_only() {
        for good in [
            "https://w3id.org/openmhealth/schemas/omh/calories-burned-1.0.json",
            "urn:isbn:0451450523",
            "mailto:a@example.org",
            "http://user:pw@[::1]:8080/a%20b?q=1#top",
            "http://[v1.fe]/",
            "file:///tmp/x",
        ] {
            assert!(is_uri(good), "{good}");
        }
        for bad in [
            "://w3id.org/x",
            "w3id.org/x",
            "",
            "http://exa mple.org",
            "http://a/%zz",
            "1http://a",
            "http://[::g]/",
            "http://a:80x/",
            "http://ü.org/",
        ] {
            assert!(!is_uri(bad), "{bad}");
        }
    }
}
