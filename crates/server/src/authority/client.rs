//! Client authentication against the store: `client_secret_basic`, `client_secret_post`, `private_key_jwt`
//! (RFC 7523) and `none` for public clients. Every failure is the same `invalid_client`, so a caller cannot
//! tell an unknown client from a wrong secret.

use portcullis_jose::{jws, Algorithm, KeySet};

use super::{unavailable, Authority};
use crate::model::{Client, ClientCredential};
use crate::oauth::client_auth::{verify_assertion, Presented};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::secrets::SecretDigest;

/// A client that proved who it is (or a public client that named itself).
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub client: Client,
    /// The RFC 8414 name of the method used.
    pub method: &'static str,
}

impl Authenticated {
    /// Whether the client proved possession of a credential (not a public client).
    pub fn is_confidential(&self) -> bool {
        self.method != "none"
    }
}

const FAILED: OAuthError = OAuthError::new(ErrorCode::InvalidClient, "client authentication failed");

/// The largest client assertion accepted.
const MAX_ASSERTION_BYTES: usize = 8 * 1024;

impl Authority {
    pub async fn authenticate_client(&self, presented: Presented) -> Result<Authenticated, OAuthError> {
        let (client_id, method) = match &presented {
            Presented::Basic { client_id, .. } => (client_id.clone(), "client_secret_basic"),
            Presented::Post { client_id, .. } => (client_id.clone(), "client_secret_post"),
            Presented::Public { client_id } => (client_id.clone(), "none"),
            Presented::Assertion { client_id, assertion } => {
                let id = match client_id {
                    Some(id) => id.clone(),
                    None => assertion_issuer(assertion).ok_or(FAILED)?,
                };
                (id, "private_key_jwt")
            }
        };
        if client_id.len() > 256 {
            return Err(FAILED);
        }
        let now = self.now().as_secs();
        let client = match self.clients.get(&client_id, now) {
            Some(cached) => cached,
            None => {
                let found = self.store.find_client(&client_id).await.map_err(unavailable)?;
                self.clients.put(&client_id, found.clone(), now);
                found
            }
        };
        let Some(client) = client.filter(|c| !c.disabled) else {
            // Spend the digest a real check would, then fail the same way.
            let _ = SecretDigest::of("").matches(secret_of(&presented).unwrap_or_default());
            return Err(FAILED);
        };
        match (&presented, &client.credential) {
            (Presented::Basic { secret, .. } | Presented::Post { secret, .. }, ClientCredential::Secret(digest))
                if digest.matches(secret) => {}
            (Presented::Public { .. }, ClientCredential::None) => {}
            (Presented::Assertion { assertion, .. }, ClientCredential::Jwks(jwks)) => {
                self.check_assertion(&client, assertion, jwks).await?;
            }
            _ => return Err(FAILED),
        }
        Ok(Authenticated { client, method })
    }

    async fn check_assertion(&self, client: &Client, assertion: &str, jwks: &str) -> Result<(), OAuthError> {
        if assertion.len() > MAX_ASSERTION_BYTES {
            return Err(FAILED);
        }
        let keys = KeySet::from_jwks(jwks, &Algorithm::asymmetric().collect::<Vec<_>>()).map_err(|_| FAILED)?;
        let token_endpoint = self.rules.token_endpoint();
        let audiences = [self.rules.issuer.as_str(), token_endpoint.as_str()];
        let facts = verify_assertion(assertion, &client.id, &keys, &audiences, self.now())?;
        // One use only (RFC 7523 §3, item 7): the jti is remembered until the assertion expires.
        let fresh = self.store.use_assertion(&client.id, &facts.jti, facts.expires_at).await.map_err(unavailable)?;
        if !fresh {
            tracing::warn!(client_id = %client.id, jti = %facts.jti, "client assertion replayed");
            return Err(OAuthError::new(ErrorCode::InvalidClient, "client assertion was already used"));
        }
        Ok(())
    }
}

fn secret_of(p: &Presented) -> Option<&str> {
    match p {
        Presented::Basic { secret, .. } | Presented::Post { secret, .. } => Some(secret),
        _ => None,
    }
}

/// The `iss` of an assertion, read before verification only to find the client whose keys verify it.
fn assertion_issuer(assertion: &str) -> Option<String> {
    let (_, payload) = jws::decode_unverified(assertion, MAX_ASSERTION_BYTES).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    value.get("iss")?.as_str().map(str::to_owned)
}
