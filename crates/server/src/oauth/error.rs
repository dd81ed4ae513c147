//! The errors grants answer with, by their RFC names (RFC 6749 §5.2, RFC 7009 §2.2.1, RFC 9449 §5). Domain code
//! knows no HTTP; [`OAuthError::status`] is the one place that picks the status the HTTP layer sends.

use std::fmt;

/// An RFC 6749 §5.2 error code (and the few later RFCs add).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    /// RFC 8707 §2: the `resource` is not one the client may use.
    InvalidTarget,
    /// RFC 7009 §2.2.1.
    UnsupportedTokenType,
    /// RFC 9449 §5.
    InvalidDpopProof,
    /// RFC 9449 §8.
    UseDpopNonce,
    /// RFC 6749 §4.1.2.1; also used when the store is unreachable.
    TemporarilyUnavailable,
    ServerError,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::UnsupportedTokenType => "unsupported_token_type",
            ErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ErrorCode::UseDpopNonce => "use_dpop_nonce",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::ServerError => "server_error",
        }
    }
}

/// An error answer: the code and a description safe to show (never a token, never whether a user exists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: &'static str,
}

impl OAuthError {
    pub const fn new(code: ErrorCode, description: &'static str) -> Self {
        OAuthError { code, description }
    }

    /// The HTTP status for this error at the token endpoint: 401 for client authentication failures (the
    /// HTTP layer adds `WWW-Authenticate` when the client used the Authorization header, RFC 6749 §5.2),
    /// 503 when the service is unavailable, 500 for server errors, 400 otherwise.
    pub const fn status(&self) -> u16 {
        match self.code {
            ErrorCode::InvalidClient => 401,
            ErrorCode::TemporarilyUnavailable => 503,
            ErrorCode::ServerError => 500,
            _ => 400,
        }
    }

    /// The RFC 6749 §5.2 JSON body.
    pub fn to_json(&self) -> String {
        serde_json::json!({ "error": self.code.as_str(), "error_description": self.description }).to_string()
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.description)
    }
}

impl std::error::Error for OAuthError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_statuses_and_body_follow_rfc_6749() {
        let e = OAuthError::new(ErrorCode::InvalidGrant, "refresh token is invalid or expired");
        assert_eq!(e.status(), 400);
        let body: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(body["error"], "invalid_grant");
        assert_eq!(body["error_description"], "refresh token is invalid or expired");
        assert_eq!(OAuthError::new(ErrorCode::InvalidClient, "x").status(), 401);
        assert_eq!(OAuthError::new(ErrorCode::TemporarilyUnavailable, "x").status(), 503);
        assert_eq!(OAuthError::new(ErrorCode::ServerError, "x").status(), 500);
        assert_eq!(ErrorCode::UseDpopNonce.as_str(), "use_dpop_nonce");
    }
}
