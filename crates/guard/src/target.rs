//! The path the gateway judges a request by.
//!
//! A route is chosen by path prefix, so the gateway and whatever serves the request next must read the path
//! alike. They do not when the path has dot segments (`/public/../admin`), empty segments (`//admin`), an
//! encoded separator (`%2F`, `%5C`) or a backslash: nginx normalises `/public/../admin` to `/admin` to pick
//! its `location` but passes the raw form in `X-Original-URI`, and many upstream frameworks resolve dot
//! segments or merge slashes. Judging the raw form would let a token for one route (or none) reach another.
//! Two more are read differently by common servers: a `;` (Tomcat, Jetty and Spring drop `;params` from each
//! segment, so `/admin;x/users` is `/admin/users` to them and no `/admin/` route to a prefix match), and an
//! escaped `%` (`%2561dmin`, which a server that decodes twice reads as `admin`). Spring Security's strict
//! firewall refuses both by default, and so does the gateway, in raw and escaped form (`%3B`, `%25`).
//!
//! So the gateway matches on the RFC 3986 §6.2.2 normal form: percent-encoded unreserved characters decoded
//! (`/%61dmin` is `/admin`), hex digits of other escapes upper-cased, and every target that different readers
//! could resolve differently is refused outright rather than guessed at.

use std::borrow::Cow;

/// The normal form of `path` for route matching, or `None` when the path is ambiguous and must be refused.
/// A path with nothing to decode (the common case) is returned as it is, without a copy.
pub(crate) fn normalize(path: &str) -> Option<Cow<'_, str>> {
    if !path.starts_with('/') {
        return None;
    }
    if !path.bytes().any(|b| b == b'%') {
        return check_segments(path).then_some(Cow::Borrowed(path));
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let hi = hex(*bytes.get(i + 1)?)?;
                let lo = hex(*bytes.get(i + 2)?)?;
                let decoded = hi << 4 | lo;
                if is_unreserved(decoded) {
                    out.push(char::from(decoded));
                } else if matches!(decoded, b'/' | b'\\' | 0 | b';' | b'%') {
                    // An encoded separator or NUL (readers disagree on whether it splits the path), an encoded
                    // `;` (a path parameter to some) or `%` (a second escape to a server that decodes twice).
                    return None;
                } else {
                    out.push('%');
                    out.push(char::from(HEX[usize::from(hi)]));
                    out.push(char::from(HEX[usize::from(lo)]));
                }
                i += 3;
            }
            b'\\' | b';' => return None,
            b if !b.is_ascii_graphic() => return None,
            _ => {
                out.push(char::from(b));
                i += 1;
            }
        }
    }
    check_segments(&out).then_some(Cow::Owned(out))
}

/// True when every byte is a visible ASCII character other than `\` and `;`, and no segment is `.`, `..` or
/// empty (except the last: `/api/` and `/` end in a slash).
fn check_segments(path: &str) -> bool {
    if !path.bytes().all(|b| b.is_ascii_graphic() && b != b'\\' && b != b';') {
        return false;
    }
    let mut segments = path[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if segment == "." || segment == ".." || (segment.is_empty() && !last) {
            return false;
        }
    }
    true
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn plain_paths_are_kept() {
        for p in ["/", "/api/", "/api/orders", "/api/orders/", "/a.b/c..d/.e/f.", "/x%20y", "/%E2%82%AC"] {
            assert_eq!(normalize(p).as_deref(), Some(p), "{p}");
        }
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_upper_cased() {
        assert_eq!(normalize("/%61dmin/x").as_deref(), Some("/admin/x"));
        assert_eq!(normalize("/a%7Eb%2d").as_deref(), Some("/a~b-"));
        assert_eq!(normalize("/x%3fy%e2%82%ac").as_deref(), Some("/x%3Fy%E2%82%AC"));
    }

    #[test]
    fn ambiguous_targets_are_refused() {
        for p in [
            "/public/../admin",
            "/public/./x",
            "/public/..",
            "/public/%2e%2e/admin",
            "/public/.%2E/admin",
            "/public/%2E/admin",
            "//admin/x",
            "/api//x",
            "/public%2Fadmin",
            "/public%2fadmin",
            "/public%5Cadmin",
            "/public\\..\\admin",
            "/admin;x/users",
            "/admin;/users",
            "/public/..;/admin",
            "/admin%3Bx/users",
            "/admin%3bx/users",
            "/%2561dmin/x",
            "/a%25",
            "/a%00b",
            "/a%zz",
            "/a%4",
            "/a%",
            "/caf\u{e9}",
            "/a b",
            "relative/path",
            "",
            "*",
        ] {
            assert_eq!(normalize(p), None, "{p:?}");
        }
    }
}
