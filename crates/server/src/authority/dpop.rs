//! The DPoP proof of a token request (RFC 9449 §4.3, §5, §8): the stateless checks of the JOSE core against the
//! token endpoint, the server nonce, and the `jti` recorded once through the store, so that a proof accepted by
//! one instance is refused as a replay by every other.

use portcullis_jose::dpop::{verify_proof, DpopError, Proof, ProofRequest};
use portcullis_jose::Error as JoseError;

use super::{unavailable, Authority};
use crate::oauth::dpop::{proof_error, JTI_NAMESPACE, MAX_JTI_BYTES};
use crate::oauth::error::{ErrorCode, OAuthError};

fn refused(result: &'static str, error: OAuthError) -> OAuthError {
    metrics::counter!("portcullis_dpop_proofs_total", "result" => result).increment(1);
    error
}

impl Authority {
    /// Checks the proof of a token request, if there is one. The `jti` is recorded only after every other
    /// check passed, so a forged or failed proof cannot burn a legitimate client's `jti`.
    pub(super) async fn token_proof(&self, proof: Option<&str>) -> Result<Option<Proof>, OAuthError> {
        let Some(proof) = proof else { return Ok(None) };
        let endpoint = self.rules.token_endpoint();
        self.checked_proof(proof, "POST", &endpoint, None, self.rules.dpop.require_nonce).await.map(Some)
    }

    /// Checks a proof for a request to one of our own endpoints (`method` and absolute `url`), with the hash of
    /// the access token it accompanies, if any; demands the server nonce when `nonce_required`.
    pub(super) async fn checked_proof(
        &self,
        proof: &str,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        nonce_required: bool,
    ) -> Result<Proof, OAuthError> {
        let now = self.now();
        let request = ProofRequest { method, url, access_token, nonce: None };
        let rules = &self.rules.dpop;
        let checked = verify_proof(proof, &request, &rules.proof_policy(), now).map_err(|e| {
            refused(if e == JoseError::Dpop(DpopError::WrongNonce) { "nonce" } else { "invalid" }, proof_error(&e))
        })?;
        if nonce_required && !checked.nonce.as_deref().is_some_and(|n| self.nonces.accepts(n, now)) {
            return Err(refused("nonce", proof_error(&JoseError::Dpop(DpopError::WrongNonce))));
        }
        if checked.jti.len() > MAX_JTI_BYTES {
            return Err(refused(
                "invalid",
                OAuthError::new(ErrorCode::InvalidDpopProof, "the proof's jti is too long"),
            ));
        }
        let namespace = format!("{JTI_NAMESPACE}{}", checked.jkt);
        let fresh = self
            .store
            .use_assertion(&namespace, &checked.jti, rules.jti_expiry(&checked))
            .await
            .map_err(unavailable)?;
        if !fresh {
            tracing::warn!(jkt = %checked.jkt, jti = %checked.jti, url, "DPoP proof replayed");
            return Err(refused("replayed", proof_error(&JoseError::Dpop(DpopError::Replayed))));
        }
        metrics::counter!("portcullis_dpop_proofs_total", "result" => "accepted").increment(1);
        Ok(checked)
    }
}
