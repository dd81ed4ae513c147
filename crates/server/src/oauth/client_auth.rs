//! Client authentication at the token endpoint: what the client presented, parsed strictly, and the checks of a
//! `private_key_jwt` assertion (RFC 7523 §3). Looking the client up and comparing its secret digest happen in
//! the grant code, which has the store.

use base64::Engine as _;
use percent_encoding::percent_decode_str;
use portcullis_jose::{jwt, KeySet, Policy, UnixTime};

use super::error::{ErrorCode, OAuthError};

/// The assertion type RFC 7523 §2.2 defines for `private_key_jwt`.
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The longest lifetime a client assertion may claim (`exp - iat`), in seconds.
pub const MAX_ASSERTION_LIFETIME: i64 = 300;

/// How a client authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    /// `client_secret_basic` (RFC 6749 §2.3.1): the Authorization header.
    Basic { client_id: String, secret: String },
    /// `client_secret_post`: `client_id` and `client_secret` in the form.
    Post { client_id: String, secret: String },
    /// `private_key_jwt` (RFC 7523): a signed assertion.
    Assertion { client_id: Option<String>, assertion: String },
    /// A public client (`none`): only `client_id`.
    Public { client_id: String },
}

fn invalid_client(why: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClient, why)
}

/// Decodes one `application/x-www-form-urlencoded` component (RFC 6749 Appendix B).
fn form_decode(s: &str) -> Option<String> {
    percent_decode_str(&s.replace('+', " ")).decode_utf8().ok().map(|c| c.into_owned())
}

/// Parses an `Authorization: Basic` value into client id and secret (each form-urlencoded, then joined by
/// `:` and base64-encoded, per RFC 6749 §2.3.1).
pub fn parse_basic(header: &str) -> Result<(String, String), OAuthError> {
    let (scheme, encoded) = header.split_once(' ').ok_or(invalid_client("malformed Authorization header"))?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(invalid_client("unsupported authentication scheme"));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| invalid_client("malformed Basic credentials"))?;
    let text = String::from_utf8(decoded).map_err(|_| invalid_client("malformed Basic credentials"))?;
    let (id, secret) = text.split_once(':').ok_or(invalid_client("malformed Basic credentials"))?;
    let id = form_decode(id).ok_or(invalid_client("malformed Basic credentials"))?;
    let secret = form_decode(secret).ok_or(invalid_client("malformed Basic credentials"))?;
    if id.is_empty() {
        return Err(invalid_client("malformed Basic credentials"));
    }
    Ok((id, secret))
}

/// Decides how the client authenticated from the Authorization header and the form parameters. More than one
/// method at once is refused (RFC 6749 §2.3: "MUST NOT use more than one authentication method").
pub fn presented(
    authorization: Option<&str>,
    form_client_id: Option<&str>,
    form_secret: Option<&str>,
    assertion_type: Option<&str>,
    assertion: Option<&str>,
) -> Result<Presented, OAuthError> {
    let methods = [authorization.is_some(), form_secret.is_some(), assertion.is_some() || assertion_type.is_some()];
    if methods.iter().filter(|m| **m).count() > 1 {
        return Err(OAuthError::new(ErrorCode::InvalidRequest, "more than one client authentication method"));
    }
    if let Some(header) = authorization {
        let (client_id, secret) = parse_basic(header)?;
        if form_client_id.is_some_and(|f| f != client_id) {
            return Err(OAuthError::new(ErrorCode::InvalidRequest, "client_id differs from the authenticated client"));
        }
        return Ok(Presented::Basic { client_id, secret });
    }
    if let Some(secret) = form_secret {
        let client_id = form_client_id.ok_or(OAuthError::new(ErrorCode::InvalidRequest, "client_id is missing"))?;
        return Ok(Presented::Post { client_id: client_id.to_owned(), secret: secret.to_owned() });
    }
    if let Some(assertion) = assertion {
        if assertion_type != Some(JWT_BEARER_ASSERTION) {
            return Err(invalid_client("unsupported client_assertion_type"));
        }
        return Ok(Presented::Assertion {
            client_id: form_client_id.map(str::to_owned),
            assertion: assertion.to_owned(),
        });
    }
    if assertion_type.is_some() {
        return Err(OAuthError::new(ErrorCode::InvalidRequest, "client_assertion is missing"));
    }
    match form_client_id {
        Some(id) if !id.is_empty() => Ok(Presented::Public { client_id: id.to_owned() }),
        _ => Err(invalid_client("client authentication is missing")),
    }
}

/// What a valid client assertion leaves for the caller: its `jti` (to refuse a replay until `exp`) and `exp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionFacts {
    pub jti: String,
    pub expires_at: i64,
}

/// Checks a `private_key_jwt` assertion (RFC 7523 §3): signed by one of the client's keys, `iss` and `sub` the
/// client id, `aud` the issuer or the token endpoint, `exp` present, `jti` present, and a lifetime of at most
/// five minutes. The caller stores the `jti` until `exp` to refuse replays.
pub fn verify_assertion(
    assertion: &str,
    client_id: &str,
    client_keys: &KeySet,
    audiences: &[&str],
    now: UnixTime,
) -> Result<AssertionFacts, OAuthError> {
    let mut policy = Policy::builder().issuer(client_id).danger_accept_any_typ().require(["sub", "jti", "exp"]);
    for aud in audiences {
        policy = policy.audience(*aud);
    }
    let policy = policy.build().map_err(|_| OAuthError::new(ErrorCode::ServerError, "assertion policy"))?;
    let verified =
        jwt::verify(assertion, client_keys, &policy, now).map_err(|_| invalid_client("client assertion is invalid"))?;
    let claims = &verified.claims;
    if claims.sub().as_deref() != Some(client_id) {
        return Err(invalid_client("client assertion is invalid"));
    }
    let exp = claims.exp().ok_or(invalid_client("client assertion is invalid"))?;
    let issued = claims.iat().unwrap_or(now.as_secs());
    if exp.saturating_sub(issued) > MAX_ASSERTION_LIFETIME || exp.saturating_sub(now.as_secs()) > MAX_ASSERTION_LIFETIME
    {
        return Err(invalid_client("client assertion lives too long"));
    }
    let jti = claims.jti().ok_or(invalid_client("client assertion is invalid"))?.into_owned();
    Ok(AssertionFacts { jti, expires_at: exp })
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_jose::{jwk, Algorithm, SigningKey};

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        assert_eq!(parse_basic(&basic("my%20app", "s%3Ac+r")).unwrap(), ("my app".into(), "s:c r".into()));
        assert_eq!(parse_basic(&basic("app", "a:b")).unwrap(), ("app".into(), "a:b".into()));
        for bad in ["Bearer x", "Basic", "Basic !!!", &basic(":secret", ""), "Basic bm9jb2xvbg=="] {
            assert_eq!(parse_basic(bad).unwrap_err().code, ErrorCode::InvalidClient, "{bad}");
        }
    }

    #[test]
    fn exactly_one_authentication_method() {
        let b = basic("app", "s");
        assert!(matches!(presented(Some(&b), None, None, None, None), Ok(Presented::Basic { .. })));
        assert!(matches!(presented(None, Some("app"), Some("s"), None, None), Ok(Presented::Post { .. })));
        assert!(matches!(presented(None, Some("app"), None, None, None), Ok(Presented::Public { .. })));
        assert!(matches!(
            presented(None, None, None, Some(JWT_BEARER_ASSERTION), Some("a.b.c")),
            Ok(Presented::Assertion { .. })
        ));
        let two = presented(Some(&b), Some("app"), Some("s"), None, None).unwrap_err();
        assert_eq!(two.code, ErrorCode::InvalidRequest);
        assert_eq!(presented(Some(&b), Some("other"), None, None, None).unwrap_err().code, ErrorCode::InvalidRequest);
        assert_eq!(presented(None, None, None, None, None).unwrap_err().code, ErrorCode::InvalidClient);
        assert_eq!(
            presented(None, None, None, Some("urn:other"), Some("x")).unwrap_err().code,
            ErrorCode::InvalidClient
        );
        assert_eq!(presented(None, None, Some("s"), None, None).unwrap_err().code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn private_key_jwt_assertions_follow_rfc_7523() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap().with_kid("c1");
        let keys = KeySet::single(jwk::verifying_key_from_jwk(&key.verifying_key().to_jwk().unwrap(), &[]).unwrap());
        let signer = jwt::Signer::new(key, None);
        let now = UnixTime::from_secs(1_800_000_000);
        let aud = ["https://auth.example", "https://auth.example/oauth2/token"];
        let make = |iss: &str, sub: &str, aud: &str, exp: i64, jti: bool| {
            let jti = if jti { r#","jti":"j1""# } else { "" };
            signer
                .sign_json(&format!(
                    r#"{{"iss":"{iss}","sub":"{sub}","aud":"{aud}","iat":{},"exp":{exp}{jti}}}"#,
                    now.as_secs()
                ))
                .unwrap()
        };
        let good = make("app", "app", "https://auth.example/oauth2/token", now.as_secs() + 60, true);
        let facts = verify_assertion(&good, "app", &keys, &aud, now).unwrap();
        assert_eq!(facts, AssertionFacts { jti: "j1".into(), expires_at: now.as_secs() + 60 });
        for (token, why) in [
            (make("other", "app", "https://auth.example", now.as_secs() + 60, true), "iss"),
            (make("app", "other", "https://auth.example", now.as_secs() + 60, true), "sub"),
            (make("app", "app", "https://elsewhere", now.as_secs() + 60, true), "aud"),
            (make("app", "app", "https://auth.example", now.as_secs() - 60, true), "expired"),
            (make("app", "app", "https://auth.example", now.as_secs() + 3600, true), "too long"),
            (make("app", "app", "https://auth.example", now.as_secs() + 60, false), "no jti"),
        ] {
            let err = verify_assertion(&token, "app", &keys, &aud, now).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidClient, "{why}");
        }
        let stranger = SigningKey::generate(Algorithm::ES256).unwrap().with_kid("c1");
        let forged = jwt::Signer::new(stranger, None)
            .sign_json(&format!(
                r#"{{"iss":"app","sub":"app","aud":"https://auth.example","exp":{},"jti":"j"}}"#,
                now.as_secs() + 60
            ))
            .unwrap();
        assert!(verify_assertion(&forged, "app", &keys, &aud, now).is_err());
    }
}
