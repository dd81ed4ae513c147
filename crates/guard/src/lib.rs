//! # portcullis-guard
//!
//! The resource-server side of Portcullis: verify an access token on every API request, offline, from a
//! cached JWKS. This crate is being built issue by issue; today it holds the request-side token extraction
//! and the JWKS cache's timing rules, which the tower layer and the gateway will share.
//!
//! Non-goals: issuing tokens, talking to the server's database.

#![forbid(unsafe_code)]

pub mod jwks_timing;

/// How a request presented its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `Authorization: Bearer` (RFC 6750 §2.1).
    Bearer,
    /// `Authorization: DPoP` (RFC 9449 §7.1).
    Dpop,
}

/// Splits an `Authorization` header value into its scheme and token. The scheme is case-insensitive
/// (RFC 9110 §11.1); the token must be one non-empty `token68` (RFC 9110 §11.2) with nothing after it.
pub fn parse_authorization(value: &str) -> Option<(Scheme, &str)> {
    let (scheme, token) = value.split_once(' ')?;
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return None;
    };
    let token = token.trim_start_matches(' ');
    let is_token68 = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
    if token.is_empty() || !token.bytes().all(is_token68) {
        return None;
    }
    Some((scheme, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_header_parsing() {
        assert_eq!(parse_authorization("Bearer abc.def.ghi"), Some((Scheme::Bearer, "abc.def.ghi")));
        assert_eq!(parse_authorization("bearer  abc"), Some((Scheme::Bearer, "abc")));
        assert_eq!(parse_authorization("DPoP abc"), Some((Scheme::Dpop, "abc")));
        assert_eq!(parse_authorization("Basic abc"), None);
        assert_eq!(parse_authorization("Bearer"), None);
        assert_eq!(parse_authorization("Bearer "), None);
        assert_eq!(parse_authorization("Bearer a b"), None);
        assert_eq!(parse_authorization("Bearer a\"b"), None);
    }
}
