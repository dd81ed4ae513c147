//! Minting RFC 9068 access tokens (DESIGN.md §3): `typ: at+jwt`, claims `iss`, `sub`, `aud`, `exp`, `iat`,
//! `jti`, `client_id`, `scope`, plus `roles` and `sid` where they apply, and `cnf.jkt` for a token bound to a
//! DPoP key (RFC 9449 §6.1). Pure: the caller passes `now`, the
//! signer and the facts.

use portcullis_jose::{jwt, Error as JoseError, UnixTime};
use serde::Serialize;

use super::scope::Scopes;
use crate::config::MAX_ACCESS_TOKEN_TTL;
use crate::secrets::{BearerSecret, SecretError};

/// What an access token is issued for.
#[derive(Debug, Clone)]
pub struct Grant<'a> {
    pub issuer: &'a str,
    /// The user, or for `client_credentials` the client itself (RFC 9068 §2.2).
    pub subject: &'a str,
    pub client_id: &'a str,
    pub audience: &'a str,
    pub scopes: &'a Scopes,
    pub roles: &'a [String],
    /// The login session, where there is one.
    pub session_id: Option<&'a str>,
    /// The RFC 7638 thumbprint of the DPoP key the token is bound to, if any.
    pub dpop_jkt: Option<&'a str>,
}

/// A minted token and the facts the caller logs or stores (never the token itself in logs).
#[derive(Debug)]
pub struct Minted {
    pub token: String,
    pub jti: String,
    pub expires_at: i64,
    pub expires_in: u64,
    /// Bound to a DPoP key: its `token_type` is `DPoP` (RFC 9449 §5).
    pub dpop_bound: bool,
    /// The session (`sid`) the token belongs to, if any.
    pub session_id: Option<String>,
}

/// The confirmation claim of a DPoP-bound token.
#[derive(Serialize)]
struct Confirmation<'a> {
    jkt: &'a str,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    jti: &'a str,
    client_id: &'a str,
    scope: String,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    roles: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cnf: Option<Confirmation<'a>>,
}

/// Why minting failed.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error(transparent)]
    Random(#[from] SecretError),
    #[error("signing failed: {0}")]
    Signing(#[from] JoseError),
}

/// Signs an access token valid from `now` for `ttl` seconds (capped at one hour).
pub fn mint(grant: &Grant<'_>, signer: &jwt::Signer, now: UnixTime, ttl: u64) -> Result<Minted, MintError> {
    let ttl = ttl.clamp(1, MAX_ACCESS_TOKEN_TTL);
    let jti = BearerSecret::generate()?.expose()[..22].to_owned();
    let expires_at = now.as_secs().saturating_add(ttl as i64);
    let claims = Claims {
        iss: grant.issuer,
        sub: grant.subject,
        aud: grant.audience,
        exp: expires_at,
        iat: now.as_secs(),
        jti: &jti,
        client_id: grant.client_id,
        scope: grant.scopes.to_string(),
        roles: grant.roles,
        sid: grant.session_id,
        cnf: grant.dpop_jkt.map(|jkt| Confirmation { jkt }),
    };
    let token = signer.sign(&claims)?;
    let session_id = grant.session_id.map(str::to_owned);
    Ok(Minted { token, jti, expires_at, expires_in: ttl, dpop_bound: grant.dpop_jkt.is_some(), session_id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_jose::{Algorithm, KeySet, Policy, SigningKey, AT_JWT};

    #[test]
    fn minted_tokens_pass_the_rfc_9068_profile() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap().with_kid("k1");
        let keys = KeySet::single(
            portcullis_jose::jwk::verifying_key_from_jwk(&key.verifying_key().to_jwk().unwrap(), &[]).unwrap(),
        );
        let signer = jwt::Signer::new(key, Some(AT_JWT));
        let scopes = Scopes::parse("write read").unwrap();
        let roles = vec!["admin".to_owned()];
        let grant = Grant {
            issuer: "https://auth.example",
            subject: "user-1",
            client_id: "app",
            audience: "api",
            scopes: &scopes,
            roles: &roles,
            session_id: Some("s1"),
            dpop_jkt: None,
        };
        let now = UnixTime::from_secs(1_800_000_000);
        let minted = mint(&grant, &signer, now, 300).unwrap();
        let policy = Policy::access_token("https://auth.example", "api").unwrap();
        let verified = jwt::verify(&minted.token, &keys, &policy, now).unwrap();
        assert_eq!(verified.claims.scope().as_deref(), Some("read write"));
        assert_eq!(verified.claims.jti().as_deref(), Some(minted.jti.as_str()));
        assert_eq!(verified.claims.exp(), Some(1_800_000_300));
        assert_eq!(verified.claims.string("sid").as_deref(), Some("s1"));
        assert_eq!(verified.claims.get("roles").unwrap().text(), r#"["admin"]"#);
        assert_eq!(minted.jti.len(), 22);
        // The lifetime is capped at one hour, whatever is asked.
        let long = mint(&grant, &signer, now, 86_400).unwrap();
        assert_eq!(long.expires_in, 3600);
        // Without roles or a session, those claims are absent.
        let bare = Grant { roles: &[], session_id: None, ..grant.clone() };
        let token = mint(&bare, &signer, now, 60).unwrap().token;
        let claims = jwt::verify(&token, &keys, &policy, now).unwrap().claims;
        assert!(!claims.contains("roles") && !claims.contains("sid") && !claims.contains("cnf"));
        // A DPoP-bound token confirms its key.
        let bound = mint(&Grant { dpop_jkt: Some("thumb"), ..grant.clone() }, &signer, now, 60).unwrap();
        assert!(bound.dpop_bound && !minted.dpop_bound);
        let claims = jwt::verify(&bound.token, &keys, &policy, now).unwrap().claims;
        assert_eq!(claims.confirmation_jkt(), Ok(Some("thumb".into())));
        assert_ne!(mint(&bare, &signer, now, 60).unwrap().jti, mint(&bare, &signer, now, 60).unwrap().jti);
    }
}
