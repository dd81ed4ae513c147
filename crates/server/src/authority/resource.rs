//! The server's own protected resources (`/events`, `/userinfo`): the access token of a request, checked as the
//! guard checks one (RFC 6750, RFC 9449 §7): one of our live, unrevoked access tokens; a DPoP-bound one only with
//! `Authorization: DPoP` and exactly one valid proof of its key for this request, never as a bearer token.

use std::sync::Arc;

use super::cache::AccessFacts;
use super::Authority;
use crate::oauth::error::ErrorCode;
use crate::revocation::TokenFacts;

/// What a request to one of our resources presents.
#[derive(Debug, Clone, Copy)]
pub struct ResourceRequest<'a> {
    pub authorization: Option<&'a str>,
    /// The values of its `DPoP` headers.
    pub dpop: &'a [&'a str],
    pub method: &'a str,
    /// The absolute URL of the resource (`{issuer}/userinfo`), which a proof's `htu` must name.
    pub url: &'a str,
}

/// Why a resource request was refused (RFC 6750 §3.1, RFC 9449 §7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceError {
    /// No credentials: 401 with a bare challenge.
    Missing,
    /// 400 `invalid_request`.
    Malformed,
    /// 401 `invalid_token`.
    Invalid(&'static str),
    /// 401 `invalid_dpop_proof`.
    InvalidProof(&'static str),
    /// 403 `insufficient_scope`.
    InsufficientScope,
    /// 503: the store could not be reached.
    Unavailable,
}

impl ResourceError {
    pub fn status(&self) -> u16 {
        match self {
            ResourceError::Malformed => 400,
            ResourceError::InsufficientScope => 403,
            ResourceError::Unavailable => 503,
            _ => 401,
        }
    }

    /// The `WWW-Authenticate` value, under the scheme the request used (`DPoP` naming the proof algorithms).
    pub fn challenge(&self, dpop: bool, scope: &str) -> Option<String> {
        let scheme = if dpop { "DPoP" } else { "Bearer" };
        let algs = if dpop { format!(", algs=\"{}\"", crate::oauth::dpop::algorithm_names()) } else { String::new() };
        let (error, detail) = match self {
            ResourceError::Missing => return Some(format!("{scheme} realm=\"portcullis\"{algs}")),
            ResourceError::Unavailable => return None,
            ResourceError::Malformed => ("invalid_request", String::new()),
            ResourceError::Invalid(why) => ("invalid_token", format!(", error_description=\"{why}\"")),
            ResourceError::InvalidProof(why) => ("invalid_dpop_proof", format!(", error_description=\"{why}\"")),
            ResourceError::InsufficientScope => ("insufficient_scope", format!(", scope=\"{scope}\"")),
        };
        Some(format!("{scheme} realm=\"portcullis\", error=\"{error}\"{detail}{algs}"))
    }
}

/// The scheme and token of an `Authorization` header: `Bearer` or `DPoP` (case-insensitive), one token.
pub fn parse_authorization(value: &str) -> Option<(bool, &str)> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    if token.is_empty() || token.contains(' ') {
        return None;
    }
    match scheme {
        s if s.eq_ignore_ascii_case("bearer") => Some((false, token)),
        s if s.eq_ignore_ascii_case("dpop") => Some((true, token)),
        _ => None,
    }
}

impl Authority {
    /// Checks the access token of a request to one of our resources; `scope` must be among its scopes.
    pub async fn resource_token(
        &self,
        request: &ResourceRequest<'_>,
        scope: &str,
    ) -> Result<Arc<AccessFacts>, ResourceError> {
        let Some(value) = request.authorization else { return Err(ResourceError::Missing) };
        let (dpop, token) = parse_authorization(value).ok_or(ResourceError::Malformed)?;
        let facts = self.verify_access(token, 0).ok_or(ResourceError::Invalid("the token is invalid or expired"))?;
        let revocable = TokenFacts { jti: &facts.jti, sid: facts.sid.as_deref(), sub: &facts.sub, iat: facts.iat };
        if self.revocations.is_revoked(&revocable) {
            return Err(ResourceError::Invalid("the token was revoked"));
        }
        match (dpop, facts.dpop_jkt.as_deref()) {
            (false, None) => {}
            (false, Some(_)) => return Err(ResourceError::Invalid("a DPoP-bound token was sent as a bearer token")),
            (true, None) => return Err(ResourceError::Invalid("the token is not bound to a DPoP key")),
            (true, Some(bound)) => {
                let [proof] = request.dpop else {
                    return Err(ResourceError::InvalidProof("exactly one DPoP header is required"));
                };
                let checked = self
                    .checked_proof(proof, request.method, request.url, Some(token), false)
                    .await
                    .map_err(|e| match e.code {
                        ErrorCode::TemporarilyUnavailable => ResourceError::Unavailable,
                        _ => ResourceError::InvalidProof(e.description),
                    })?;
                if checked.jkt != bound {
                    return Err(ResourceError::InvalidProof("the proof's key is not the token's key"));
                }
            }
        }
        if !facts.scope.split(' ').any(|s| s == scope) {
            return Err(ResourceError::InsufficientScope);
        }
        Ok(facts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_headers_and_challenges() {
        assert_eq!(parse_authorization("Bearer abc"), Some((false, "abc")));
        assert_eq!(parse_authorization("dpop abc"), Some((true, "abc")));
        for bad in ["Basic abc", "Bearer", "Bearer a b", "Bearer "] {
            assert_eq!(parse_authorization(bad), None, "{bad}");
        }
        let c = ResourceError::InsufficientScope.challenge(false, "openid").unwrap();
        assert_eq!(c, "Bearer realm=\"portcullis\", error=\"insufficient_scope\", scope=\"openid\"");
        let c = ResourceError::InvalidProof("replayed").challenge(true, "openid").unwrap();
        assert!(c.starts_with("DPoP realm=\"portcullis\", error=\"invalid_dpop_proof\""), "{c}");
        let algs = c.split("algs=\"").nth(1).unwrap_or_default();
        assert!(algs.contains("ES256") && algs.contains("EdDSA") && !algs.contains("HS256"), "{c}");
        assert_eq!(ResourceError::Unavailable.challenge(false, "x"), None);
    }
}
