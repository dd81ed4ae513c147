//! OpenID Connect ID tokens (Core §2, §3.1.3.6): `iss`, `sub`, `aud` = the client, `azp`, `exp`, `iat`,
//! `auth_time`, `nonce` (echoed) and `at_hash` of the access token issued with it. Signed by the active key with
//! `typ: JWT`, so that no verifier of access tokens (`at+jwt`) accepts one. Pure: the caller passes `now`.

use aws_lc_rs::digest;
use portcullis_jose::{b64, jwt, Algorithm, Error as JoseError, UnixTime};
use serde::Serialize;

/// What an ID token states.
#[derive(Debug, Clone, Copy)]
pub struct IdTokenFacts<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub client_id: &'a str,
    pub nonce: Option<&'a str>,
    /// When the user authenticated.
    pub auth_time: i64,
    /// The access token issued in the same response, for `at_hash`.
    pub access_token: &'a str,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    azp: &'a str,
    exp: i64,
    iat: i64,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    at_hash: String,
}

/// `at_hash` (Core §3.1.3.6): the left half of the hash of the access token's ASCII, base64url. The hash is
/// the one of the signing algorithm: SHA-384 for the …384 algorithms, SHA-512 for the …512 ones and for EdDSA
/// (Ed25519 signs with SHA-512), SHA-256 otherwise.
pub fn at_hash(access_token: &str, alg: Algorithm) -> String {
    let hash = match alg {
        Algorithm::ES384 | Algorithm::RS384 | Algorithm::PS384 | Algorithm::HS384 => &digest::SHA384,
        Algorithm::ES512 | Algorithm::RS512 | Algorithm::PS512 | Algorithm::HS512 | Algorithm::EdDSA => &digest::SHA512,
        _ => &digest::SHA256,
    };
    let full = digest::digest(hash, access_token.as_bytes());
    let bytes = full.as_ref();
    b64::encode(&bytes[..bytes.len() / 2])
}

/// Signs an ID token valid from `now` for `ttl` seconds.
pub fn mint(facts: &IdTokenFacts<'_>, signer: &jwt::Signer, now: UnixTime, ttl: u64) -> Result<String, JoseError> {
    let claims = Claims {
        iss: facts.issuer,
        sub: facts.subject,
        aud: facts.client_id,
        azp: facts.client_id,
        exp: now.as_secs().saturating_add(ttl.min(i64::MAX as u64) as i64),
        iat: now.as_secs(),
        auth_time: facts.auth_time,
        nonce: facts.nonce,
        at_hash: at_hash(facts.access_token, signer.key().algorithm()),
    };
    signer.sign(&claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_jose::{KeySet, Policy, SigningKey};

    #[test]
    fn at_hash_follows_the_openid_connect_examples() {
        // OpenID Connect Core, Appendix A.3 (RS256): this access token has this at_hash.
        assert_eq!(at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y", Algorithm::RS256), "77QmUPtjPfzWtF2AnpK9RQ");
        assert_eq!(at_hash("x", Algorithm::ES384).len(), 32, "24 bytes of SHA-384");
        assert_eq!(at_hash("x", Algorithm::EdDSA).len(), 43, "32 bytes of SHA-512");
    }

    #[test]
    fn an_id_token_names_its_client_and_is_not_an_access_token() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap().with_kid("k");
        let keys = KeySet::single(
            portcullis_jose::jwk::verifying_key_from_jwk(&key.verifying_key().to_jwk().unwrap(), &[]).unwrap(),
        );
        let signer = jwt::Signer::new(key, Some("JWT"));
        let now = UnixTime::from_secs(1_800_000_000);
        let facts = IdTokenFacts {
            issuer: "https://auth.example",
            subject: "u1",
            client_id: "app",
            nonce: Some("n-0S6"),
            auth_time: 1_799_999_000,
            access_token: "the-access-token",
        };
        let token = mint(&facts, &signer, now, 300).unwrap();
        let policy = Policy::builder().issuer("https://auth.example").audience("app").typ("JWT").build().unwrap();
        let claims = jwt::verify(&token, &keys, &policy, now).unwrap().claims;
        assert_eq!(claims.string("nonce").as_deref(), Some("n-0S6"));
        assert_eq!(claims.string("azp").as_deref(), Some("app"));
        assert_eq!(claims.get("auth_time").unwrap().as_i64(), Some(1_799_999_000));
        assert_eq!(claims.string("at_hash"), Some(at_hash("the-access-token", Algorithm::ES256).into()));
        let as_access = Policy::access_token("https://auth.example", "app").unwrap();
        assert!(jwt::verify(&token, &keys, &as_access, now).is_err(), "typ JWT is not at+jwt");
    }
}
