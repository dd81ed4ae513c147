//! DPoP at the token endpoint (RFC 9449 §5, §8), the parts free of I/O: the rules, server nonces, and which key
//! a token request binds its tokens to. The proof itself is checked by `portcullis_jose::dpop`, shared with the
//! guard; replayed `jti`s are refused through the store, so that every instance sees every proof.

use portcullis_jose::dpop::{DpopError, Proof, ProofPolicy};
pub use portcullis_jose::dpop::{Nonces, NONCE_PERIOD};
use portcullis_jose::{AlgSet, Algorithm, Error as JoseError};

use super::error::{ErrorCode, OAuthError};
use crate::model::Client;
use crate::store::RefreshFamily;

/// The HKDF label of the nonce key derived from the master key.
pub const NONCE_KEY_PURPOSE: &str = "portcullis dpop nonce v1";

/// The `client_id` under which proof `jti`s are kept in the store's table of used one-time `jti`s. Client ids
/// cannot contain `#` (`admin::valid_name`), so no client's assertions share it.
pub const JTI_NAMESPACE: &str = "#dpop:";

/// The longest proof `jti` the server remembers; longer ones are refused rather than stored.
pub const MAX_JTI_BYTES: usize = 256;

/// The proof algorithms the token endpoint accepts (discovery's `dpop_signing_alg_values_supported`): every
/// asymmetric algorithm of the JOSE core.
pub fn algorithms() -> Vec<Algorithm> {
    Algorithm::asymmetric().collect()
}

/// [`algorithms`] as a `WWW-Authenticate` `algs` value: names separated by spaces.
pub fn algorithm_names() -> String {
    algorithms().iter().map(|a| a.name()).collect::<Vec<_>>().join(" ")
}

/// The server's DPoP settings (`dpop_proof_max_age`, `dpop_require_nonce`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DpopRules {
    /// How old a proof's `iat` may be, in seconds.
    pub max_age: i64,
    /// Whether proofs must carry a server nonce.
    pub require_nonce: bool,
}

impl Default for DpopRules {
    fn default() -> Self {
        DpopRules { max_age: 60, require_nonce: false }
    }
}

impl DpopRules {
    /// The stateless checks every proof at the token endpoint must pass.
    pub fn proof_policy(&self) -> ProofPolicy {
        ProofPolicy { algorithms: AlgSet::of(&algorithms()), max_age: self.max_age, ..ProofPolicy::default() }
    }

    /// Until when a proof's `jti` must be remembered: while a proof with that `iat` could still pass.
    pub fn jti_expiry(&self, proof: &Proof) -> i64 {
        let policy = self.proof_policy();
        proof.iat.saturating_add(policy.max_age).saturating_add(policy.max_skew)
    }
}

/// A proof failure as the token endpoint answers it: `invalid_dpop_proof` (RFC 9449 §5), or `use_dpop_nonce`
/// when only the nonce is missing or stale (§8). Descriptions name the check, never the proof's contents.
pub fn proof_error(error: &JoseError) -> OAuthError {
    let description = match error {
        JoseError::Dpop(DpopError::WrongNonce) => {
            return OAuthError::new(ErrorCode::UseDpopNonce, "a DPoP nonce from this server is required")
        }
        JoseError::Dpop(other) => other.as_str(),
        JoseError::WrongType => "the proof's typ is not dpop+jwt",
        JoseError::AlgorithmNotAllowed(_) | JoseError::AlgNone | JoseError::UnknownAlgorithm => {
            "the proof's algorithm is not accepted"
        }
        JoseError::BadSignature => "the proof's signature does not verify",
        JoseError::MissingClaim(_) | JoseError::ClaimType(_) => "the proof lacks a required claim",
        _ => "the DPoP proof is malformed",
    };
    OAuthError::new(ErrorCode::InvalidDpopProof, description)
}

/// The key a token request's tokens are bound to: the proof's (`jkt`), if one was presented. A client registered with
/// `dpop_bound_access_tokens` must present one (RFC 9449 §5.2); a refresh family bound at login refreshes only
/// with a proof of the same key (§5, refresh tokens of public clients).
pub fn binding<'k>(
    client: &Client,
    jkt: Option<&'k str>,
    family: Option<&RefreshFamily>,
) -> Result<Option<&'k str>, OAuthError> {
    if client.dpop_bound && jkt.is_none() {
        return Err(OAuthError::new(ErrorCode::InvalidDpopProof, "this client must present a DPoP proof"));
    }
    if let Some(bound) = family.and_then(|f| f.dpop_jkt.as_deref()) {
        if jkt != Some(bound) {
            return Err(OAuthError::new(
                ErrorCode::InvalidDpopProof,
                "the refresh token is bound to a DPoP key this request does not prove",
            ));
        }
    }
    Ok(jkt)
}

/// The key a new refresh family is bound to: the proof's, for a public client (a confidential client's refresh
/// tokens are already bound to its credentials, RFC 9449 §5).
pub fn family_binding(client: &Client, jkt: Option<&str>) -> Option<String> {
    jkt.filter(|_| client.is_public()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClientCredential, TokenDelivery};
    use crate::oauth::scope::Scopes;
    use crate::secrets::SecretDigest;

    fn client(public: bool, dpop_bound: bool) -> Client {
        Client {
            id: "app".into(),
            credential: if public { ClientCredential::None } else { ClientCredential::Secret(SecretDigest::of("s")) },
            grants: vec![],
            scopes: Scopes::default(),
            redirect_uris: vec![],
            audiences: vec![],
            first_party: true,
            token_delivery: TokenDelivery::Body,
            dpop_bound,
            disabled: false,
            created_at: 0,
        }
    }

    #[test]
    fn binding_follows_the_client_and_the_family() {
        let (p, q) = ("key-one", "key-two");
        assert_eq!(binding(&client(true, false), None, None), Ok(None), "no proof, no binding");
        assert_eq!(binding(&client(true, false), Some(p), None), Ok(Some(p)));
        let required = binding(&client(false, true), None, None).unwrap_err();
        assert_eq!(required.code, ErrorCode::InvalidDpopProof);
        let family = RefreshFamily {
            id: "f".into(),
            user_id: "u".into(),
            client_id: "app".into(),
            scope: String::new(),
            audience: "api".into(),
            created_at: 0,
            dpop_jkt: Some(p.into()),
        };
        assert_eq!(binding(&client(true, false), Some(p), Some(&family)), Ok(Some(p)));
        for wrong in [None, Some(q)] {
            let e = binding(&client(true, false), wrong, Some(&family)).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidDpopProof, "a bound family needs its own key");
        }
        assert_eq!(family_binding(&client(true, false), Some("k")), Some("k".into()));
        assert_eq!(family_binding(&client(false, false), Some("k")), None, "confidential clients: not bound");
    }

    #[test]
    fn proof_errors_map_to_rfc_9449_codes() {
        assert_eq!(proof_error(&JoseError::Dpop(DpopError::WrongNonce)).code, ErrorCode::UseDpopNonce);
        for e in [JoseError::Dpop(DpopError::Replayed), JoseError::WrongType, JoseError::AlgNone, JoseError::Malformed]
        {
            assert_eq!(proof_error(&e).code, ErrorCode::InvalidDpopProof, "{e:?}");
        }
    }
}
