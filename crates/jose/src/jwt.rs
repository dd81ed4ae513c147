//! JSON Web Tokens (RFC 7519) on the JWS layer: verify against a [`Policy`] at a given time, and sign.

use serde::Serialize;

use crate::b64;
use crate::claims::Claims;
use crate::error::{Error, Part};
use crate::json;
use crate::jws::{self, Header, HeaderParams};
use crate::key::SigningKey;
use crate::keyset::KeySet;
use crate::policy::{typ_matches, Policy, TypRule};
use crate::time::UnixTime;

/// A token whose signature, header and claims all passed the policy.
#[derive(Debug, Clone)]
pub struct Verified {
    pub header: Header,
    pub claims: Claims,
}

/// Verifies a JWT: signature with a trusted key, then `typ`, claim types, `exp`/`nbf`/`iat` at `now`,
/// `iss`, `aud` and required claims.
pub fn verify(token: &str, keys: &KeySet, policy: &Policy, now: UnixTime) -> Result<Verified, Error> {
    let jws = jws::verify(token, keys, &policy.jws)?;
    check_typ(&jws.header, &policy.typ)?;
    let claims = Claims::parse(jws.payload, policy.jws.max_depth)?;
    check_claims(&claims, policy, now)?;
    Ok(Verified { header: jws.header, claims })
}

fn check_typ(header: &Header, rule: &TypRule) -> Result<(), Error> {
    let ok = match (rule, header.typ()) {
        (TypRule::Any, _) | (TypRule::JwtOrAbsent, None) => true,
        (TypRule::JwtOrAbsent, Some(t)) => typ_matches(&t, "JWT"),
        (TypRule::Exactly(want), Some(t)) => typ_matches(&t, want),
        (TypRule::Exactly(_), None) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::WrongType)
    }
}

fn check_claims(claims: &Claims, policy: &Policy, now: UnixTime) -> Result<(), Error> {
    for name in &policy.required {
        if !claims.contains(name) {
            return Err(Error::MissingClaim(name.clone()));
        }
    }
    claims.check_times(now, policy.leeway, policy.max_age)?;
    if let Some(issuer) = &policy.issuer {
        match claims.iss() {
            None => return Err(Error::MissingClaim("iss".into())),
            Some(iss) if iss != issuer.as_str() => return Err(Error::WrongIssuer),
            Some(_) => {}
        }
    }
    if let Some(accepted) = &policy.audiences {
        match claims.audience_matches(accepted) {
            None => return Err(Error::MissingClaim("aud".into())),
            Some(false) => return Err(Error::WrongAudience),
            Some(true) => {}
        }
    }
    Ok(())
}

/// Signs JWTs with one key and a fixed header, encoded once.
#[derive(Debug)]
pub struct Signer {
    key: SigningKey,
    header_b64: String,
}

impl Signer {
    /// A signer whose tokens carry `typ` (e.g. [`crate::AT_JWT`]) and the key's `alg` and `kid`.
    pub fn new(key: SigningKey, typ: Option<&str>) -> Self {
        let header = jws::header_json(&key, &HeaderParams { typ, ..Default::default() });
        Signer { header_b64: b64::encode(header.as_bytes()), key }
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Signs claims given as any serializable value (a struct, or a `serde_json` map).
    pub fn sign<C: Serialize + ?Sized>(&self, claims: &C) -> Result<String, Error> {
        // Sized for an access token's claims, so that serializing does not grow the buffer two or three times.
        let mut payload = Vec::with_capacity(512);
        serde_json::to_writer(&mut payload, claims)
            .map_err(|_| Error::Json { part: Part::Payload, error: crate::error::JsonError::Syntax })?;
        jws::sign_with_encoded_header(&self.key, &self.header_b64, &payload)
    }

    /// Signs a claims set given as JSON text; it must pass the same strict rules the verifier applies.
    pub fn sign_json(&self, claims: &str) -> Result<String, Error> {
        json::parse_object(claims, json::DEFAULT_MAX_DEPTH).map_err(Error::json(Part::Payload))?;
        Claims::parse(claims.as_bytes().to_vec(), json::DEFAULT_MAX_DEPTH)?;
        jws::sign_with_encoded_header(&self.key, &self.header_b64, claims.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alg::Algorithm;

    const NOW: UnixTime = UnixTime(1_700_000_000);

    fn setup() -> (Signer, KeySet, Policy) {
        let key = SigningKey::generate(Algorithm::ES256).unwrap().with_kid("k1");
        let set =
            KeySet::single(crate::jwk::verifying_key_from_jwk(&key.verifying_key().to_jwk().unwrap(), &[]).unwrap());
        (Signer::new(key, Some(crate::AT_JWT)), set, Policy::access_token("https://issuer", "api").unwrap())
    }

    fn claims(extra: &str) -> String {
        format!(
            r#"{{"iss":"https://issuer","sub":"u1","aud":"api","exp":{},"iat":{},"jti":"j1","client_id":"c1","scope":"read"{extra}}}"#,
            NOW.0 + 300,
            NOW.0
        )
    }

    #[test]
    fn an_access_token_verifies_and_exposes_its_claims() {
        let (signer, keys, policy) = setup();
        let token = signer.sign_json(&claims("")).unwrap();
        let v = verify(&token, &keys, &policy, NOW).unwrap();
        assert_eq!(v.claims.sub().as_deref(), Some("u1"));
        assert!(v.claims.has_scope("read"));
        assert_eq!(v.header.typ().as_deref(), Some("at+jwt"));
    }

    #[test]
    fn each_policy_failure_has_its_own_error() {
        let (signer, keys, policy) = setup();
        let token = signer.sign_json(&claims("")).unwrap();
        assert_eq!(verify(&token, &keys, &policy, UnixTime(NOW.0 + 400)).unwrap_err(), Error::Expired);
        assert_eq!(verify(&token, &keys, &policy, UnixTime(NOW.0 - 100)).unwrap_err(), Error::IssuedInFuture);
        let other_iss = Policy::access_token("https://other", "api").unwrap();
        assert_eq!(verify(&token, &keys, &other_iss, NOW).unwrap_err(), Error::WrongIssuer);
        let other_aud = Policy::access_token("https://issuer", "billing").unwrap();
        assert_eq!(verify(&token, &keys, &other_aud, NOW).unwrap_err(), Error::WrongAudience);
        let plain = Signer::new(SigningKey::generate(Algorithm::ES256).unwrap(), None);
        let plain_keys = KeySet::single(
            crate::jwk::verifying_key_from_jwk(&plain.key().verifying_key().to_jwk().unwrap(), &[]).unwrap(),
        );
        let id_token = plain.sign_json(&claims("")).unwrap();
        assert_eq!(verify(&id_token, &plain_keys, &policy, NOW).unwrap_err(), Error::WrongType);
        let no_jti = signer.sign_json(&claims("").replace(r#","jti":"j1""#, "")).unwrap();
        assert_eq!(verify(&no_jti, &keys, &policy, NOW).unwrap_err(), Error::MissingClaim("jti".into()));
        let nbf = signer.sign_json(&claims(&format!(r#","nbf":{}"#, NOW.0 + 100))).unwrap();
        assert_eq!(verify(&nbf, &keys, &policy, NOW).unwrap_err(), Error::NotYetValid);
    }

    #[test]
    fn sign_json_refuses_what_verify_would_refuse() {
        let (signer, _, _) = setup();
        assert!(signer.sign_json(r#"{"exp":1,"exp":2}"#).is_err());
        assert!(signer.sign_json(r#"{"exp":"tomorrow"}"#).is_err());
        assert!(signer.sign_json("[1]").is_err());
    }
}
