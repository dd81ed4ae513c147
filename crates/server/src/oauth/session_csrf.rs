//! CSRF tokens of cookie-mode sessions (`/auth/*` for clients with `--token-delivery cookie`): a token is an HMAC
//! of the session id (`sid`) under a key derived from the master key, so every instance can check it and nothing
//! is stored. A state-changing request that travels on the session's cookies must echo it in `X-CSRF-Token`;
//! another site can make the browser send the cookies, but cannot read the token.

use aws_lc_rs::{constant_time, hmac};
use portcullis_jose::b64;

/// The HKDF label of the key derived from the master key.
pub const KEY_PURPOSE: &str = "portcullis session csrf v1";

/// The request header that carries the token.
pub const HEADER: &str = "x-csrf-token";

/// Issues and checks CSRF tokens bound to sessions.
pub struct SessionCsrf {
    key: hmac::Key,
}

impl std::fmt::Debug for SessionCsrf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionCsrf([redacted])")
    }
}

impl SessionCsrf {
    pub fn new(secret: &[u8]) -> Self {
        SessionCsrf { key: hmac::Key::new(hmac::HMAC_SHA256, secret) }
    }

    /// The token of session `sid`: 128 bits, base64url.
    pub fn token(&self, sid: &str) -> String {
        let mac = hmac::sign(&self.key, &[b"csrf:".as_slice(), sid.as_bytes()].concat());
        b64::encode(&mac.as_ref()[..16])
    }

    /// Whether `presented` is the token of session `sid` (constant time).
    pub fn matches(&self, sid: &str, presented: &str) -> bool {
        constant_time::verify_slices_are_equal(self.token(sid).as_bytes(), presented.as_bytes()).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_per_session_and_per_secret() {
        let csrf = SessionCsrf::new(&[3; 32]);
        let t = csrf.token("s1");
        assert_eq!(t.len(), 22);
        assert!(csrf.matches("s1", &t));
        assert!(!csrf.matches("s2", &t), "another session");
        assert!(!SessionCsrf::new(&[4; 32]).matches("s1", &t), "another deployment");
        assert!(!csrf.matches("s1", ""));
        assert_eq!(format!("{csrf:?}"), "SessionCsrf([redacted])");
    }
}
