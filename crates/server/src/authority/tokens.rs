//! Revocation (RFC 7009), introspection (RFC 7662), logout, and "revoke everything for this user".
//! Access tokens are revoked by `jti` (or by session or subject) and the revocation is kept until the
//! tokens it covers would have expired; refresh tokens by revoking their family.

use std::sync::Arc;

use portcullis_jose::{jwt, Algorithm, Policy, AT_JWT};
use serde::Serialize;

use super::cache::{token_digest, AccessFacts};
use super::client::Authenticated;
use super::{unavailable, Authority};
use crate::audit;
use crate::config::MAX_ACCESS_TOKEN_TTL;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::refresh::{decide, Decision};
use crate::revocation::TokenFacts;
use crate::secrets::SecretDigest;
use crate::store::{Revocation, RevocationKind};

/// The largest token introspection or revocation looks at.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// An RFC 7662 answer. Inactive tokens say nothing else.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    /// The key a DPoP-bound token is bound to (RFC 9449 §6.2): `{"jkt": ...}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// The confirmation of a sender-constrained token.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Confirmation {
    pub jkt: String,
}

impl Authority {
    fn access_policy(&self, leeway: i64) -> Result<Policy, OAuthError> {
        Policy::builder()
            .issuer(&self.rules.issuer)
            .danger_accept_any_audience()
            .typ(AT_JWT)
            .algorithms(&Algorithm::asymmetric().collect::<Vec<_>>())
            .require(["jti", "sub", "client_id", "iat"])
            .leeway(leeway)
            .max_token_bytes(MAX_TOKEN_BYTES)
            .build()
            .map_err(|_| OAuthError::new(ErrorCode::ServerError, "verification policy"))
    }

    /// Verifies one of our access tokens (signature by a published key, issuer, type, lifetime). A token
    /// verified before under the same keys skips the signature check; its lifetime is judged again.
    pub(super) fn verify_access(&self, token: &str, leeway: i64) -> Option<Arc<AccessFacts>> {
        let material = self.keys.ring().current();
        let digest = token_digest(token);
        let now = self.now().as_secs();
        if let Some(facts) = self.verified.get(&material, &digest) {
            return (now < facts.exp.saturating_add(leeway)).then_some(facts);
        }
        let policy = self.access_policy(leeway).ok()?;
        let claims = jwt::verify(token, &material.published, &policy, self.now()).ok()?.claims;
        let facts = Arc::new(AccessFacts {
            jti: claims.jti()?.into_owned(),
            sid: claims.string("sid").map(|s| s.into_owned()),
            sub: claims.sub()?.into_owned(),
            client_id: claims.client_id()?.into_owned(),
            iat: claims.iat()?,
            exp: claims.exp()?,
            aud: claims.aud().first().map(|a| a.clone().into_owned()).unwrap_or_default(),
            scope: claims.scope().map(|s| s.into_owned()).unwrap_or_default(),
            dpop_jkt: claims.confirmation_jkt().ok()?,
        });
        // Only tokens already valid (not before their `iat`/`nbf`) are remembered.
        if facts.iat <= now && !claims.contains("nbf") {
            self.verified.put(&material, digest, Arc::clone(&facts));
        }
        Some(facts)
    }

    /// RFC 7662. Access tokens may be introspected by any confidential client (resource servers); refresh
    /// tokens only by the client they were issued to. Revoked, expired and unknown tokens are inactive.
    pub async fn introspect(&self, caller: &Authenticated, token: &str) -> Result<Introspection, OAuthError> {
        if !caller.is_confidential() {
            return Err(OAuthError::new(ErrorCode::InvalidClient, "introspection needs an authenticated client"));
        }
        metrics::counter!("portcullis_introspections_total").increment(1);
        if token.len() > MAX_TOKEN_BYTES {
            return Ok(Introspection::default());
        }
        if let Some(f) = self.verify_access(token, 0) {
            let facts = TokenFacts { jti: &f.jti, sid: f.sid.as_deref(), sub: &f.sub, iat: f.iat };
            if self.revocations.is_revoked(&facts) {
                return Ok(Introspection::default());
            }
            return Ok(Introspection {
                active: true,
                scope: Some(f.scope.clone()),
                client_id: Some(f.client_id.clone()),
                sub: Some(f.sub.clone()),
                aud: Some(f.aud.clone()),
                iss: Some(self.rules.issuer.clone()),
                exp: Some(f.exp),
                iat: Some(f.iat),
                jti: Some(f.jti.clone()),
                sid: f.sid.clone(),
                token_type: Some(if f.dpop_jkt.is_some() { "DPoP" } else { "Bearer" }),
                cnf: f.dpop_jkt.clone().map(|jkt| Confirmation { jkt }),
            });
        }
        let found = self.store.find_refresh(&SecretDigest::of(token)).await.map_err(unavailable)?;
        let now = self.now().as_secs();
        match found {
            Some((family, state))
                if family.client_id == caller.client.id
                    && decide(&state, &self.rules.refresh, now) == Decision::Rotate =>
            {
                Ok(Introspection {
                    active: true,
                    scope: Some(family.scope),
                    client_id: Some(family.client_id),
                    sub: Some(family.user_id),
                    aud: Some(family.audience),
                    iss: Some(self.rules.issuer.clone()),
                    exp: Some(
                        (family.created_at + self.rules.refresh.absolute_ttl)
                            .min(state.issued_at + self.rules.refresh.idle_ttl),
                    ),
                    iat: Some(state.issued_at),
                    sid: Some(family.id),
                    token_type: Some("refresh_token"),
                    cnf: family.dpop_jkt.map(|jkt| Confirmation { jkt }),
                    ..Introspection::default()
                })
            }
            _ => Ok(Introspection::default()),
        }
    }

    /// RFC 7009. A client may revoke only its own tokens; anything else (unknown, invalid, someone else's)
    /// is answered with success and changes nothing (§2.2).
    pub async fn revoke(&self, caller: &Authenticated, token: &str, hint: Option<&str>) -> Result<(), OAuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Ok(());
        }
        let now = self.now().as_secs();
        let access_first = hint != Some("refresh_token");
        if access_first && self.revoke_access(caller, token, now).await? {
            return Ok(());
        }
        if let Some((family, _)) = self.store.find_refresh(&SecretDigest::of(token)).await.map_err(unavailable)? {
            if family.client_id == caller.client.id {
                self.revoke_session(&family.id, "revoked", now).await?;
                self.audit_revocation(Some(&family.user_id), &caller.client.id, None, &family.id, now).await?;
            }
            return Ok(());
        }
        if !access_first {
            self.revoke_access(caller, token, now).await?;
        }
        Ok(())
    }

    async fn revoke_access(&self, caller: &Authenticated, token: &str, now: i64) -> Result<bool, OAuthError> {
        // Expired tokens need no revocation; the leeway covers verifiers whose clocks run behind.
        let Some(f) = self.verify_access(token, 60) else { return Ok(false) };
        if f.client_id != caller.client.id {
            return Ok(true);
        }
        let revocation = Revocation {
            seq: 0,
            kind: RevocationKind::Token,
            value: f.jti.clone(),
            issued_before: now,
            expires_at: f.exp.saturating_add(60),
            created_at: now,
            reason: "revoked".into(),
        };
        self.add_revocation(revocation).await?;
        self.audit_revocation(Some(&f.sub), &caller.client.id, Some(&f.jti), "", now).await?;
        Ok(true)
    }

    async fn audit_revocation(
        &self,
        subject: Option<&str>,
        client_id: &str,
        jti: Option<&str>,
        sid: &str,
        now: i64,
    ) -> Result<(), OAuthError> {
        let mut event = audit::event(now, "token_revoked");
        event.subject = subject.map(str::to_owned);
        event.client_id = Some(client_id.to_owned());
        event.jti = jti.map(str::to_owned);
        if !sid.is_empty() {
            event.detail = serde_json::json!({ "sid": sid }).to_string();
        }
        self.audit(event).await
    }

    /// Stores a revocation, applies it here at once, and counts it.
    async fn add_revocation(&self, mut r: Revocation) -> Result<Revocation, OAuthError> {
        r.seq = self.store.add_revocation(&r).await.map_err(unavailable)?;
        self.revocations.apply_own(&r, self.store.as_ref(), r.created_at).await;
        metrics::counter!("portcullis_revocations_total", "kind" => r.kind.as_str()).increment(1);
        Ok(r)
    }

    /// An administrator's revocation: one access token by `jti`; a session by `sid` (its refresh family too);
    /// or everything of a subject (see [`revoke_user`]). Applied here at once; other instances and guards see
    /// it through the store and the `/events` feed. Audited with `by`, the administrator.
    pub async fn revoke_by_admin(
        &self,
        kind: RevocationKind,
        value: &str,
        reason: &str,
        by: serde_json::Value,
    ) -> Result<Revocation, OAuthError> {
        let now = self.now().as_secs();
        let revocation = match kind {
            RevocationKind::Subject => {
                let r = revoke_user(self.store.as_ref(), value, reason, now).await.map_err(unavailable)?;
                self.revocations.apply_own(&r, self.store.as_ref(), now).await;
                metrics::counter!("portcullis_revocations_total", "kind" => r.kind.as_str()).increment(1);
                r
            }
            RevocationKind::Session => self.revoke_session(value, reason, now).await?,
            RevocationKind::Token => {
                self.add_revocation(Revocation {
                    seq: 0,
                    kind,
                    value: value.to_owned(),
                    issued_before: now,
                    expires_at: now.saturating_add(MAX_ACCESS_TOKEN_TTL as i64 + 60),
                    created_at: now,
                    reason: reason.to_owned(),
                })
                .await?
            }
        };
        let mut event = audit::event(now, "revoked_by_admin");
        event.detail =
            serde_json::json!({ "kind": kind.as_str(), "value": value, "reason": reason, "by": by }).to_string();
        self.audit(event).await?;
        Ok(revocation)
    }

    /// Ends a session: its refresh family, and every access token that carries its `sid`.
    pub async fn revoke_session(&self, family_id: &str, reason: &str, now: i64) -> Result<Revocation, OAuthError> {
        self.store.revoke_family(family_id, reason, now).await.map_err(unavailable)?;
        self.add_revocation(Revocation {
            seq: 0,
            kind: RevocationKind::Session,
            value: family_id.to_owned(),
            issued_before: now,
            expires_at: now.saturating_add(MAX_ACCESS_TOKEN_TTL as i64 + 60),
            created_at: now,
            reason: reason.to_owned(),
        })
        .await
    }

    /// The session (`sid`) of a refresh token of `client_id`, used or not; `None` when it is unknown or another
    /// client's.
    pub async fn session_of_refresh(&self, client_id: &str, refresh_token: &str) -> Result<Option<String>, OAuthError> {
        if refresh_token.len() > 256 {
            return Ok(None);
        }
        let found = self.store.find_refresh(&SecretDigest::of(refresh_token)).await.map_err(unavailable)?;
        Ok(found.filter(|(f, _)| f.client_id == client_id).map(|(f, _)| f.id))
    }

    /// Logout: ends the session of the presented refresh token, if it belongs to the client.
    pub async fn logout(&self, client_id: &str, refresh_token: &str) -> Result<(), OAuthError> {
        if refresh_token.len() > 256 {
            return Ok(());
        }
        let now = self.now().as_secs();
        if let Some((family, _)) =
            self.store.find_refresh(&SecretDigest::of(refresh_token)).await.map_err(unavailable)?
        {
            if family.client_id == client_id {
                self.revoke_session(&family.id, "logout", now).await?;
                let mut event = audit::event(now, "logout");
                event.subject = Some(family.user_id.clone());
                event.client_id = Some(client_id.to_owned());
                event.detail = serde_json::json!({ "sid": family.id }).to_string();
                self.audit(event).await?;
            }
        }
        Ok(())
    }
}

/// Revokes everything of a user: every refresh family, every browser session at the server (so the next
/// authorization request asks for the password again), and every access token issued until now. Used on
/// "log out everywhere", password change and account disable, by the server and the CLI alike.
pub async fn revoke_user(
    store: &dyn crate::store::Store,
    user_id: &str,
    reason: &str,
    now: i64,
) -> crate::store::StoreResult<Revocation> {
    store.revoke_user_families(user_id, reason, now).await?;
    store.end_user_browser_sessions(user_id).await?;
    let mut r = Revocation {
        seq: 0,
        kind: RevocationKind::Subject,
        value: user_id.to_owned(),
        issued_before: now,
        expires_at: now.saturating_add(MAX_ACCESS_TOKEN_TTL as i64 + 60),
        created_at: now,
        reason: reason.to_owned(),
    };
    r.seq = store.add_revocation(&r).await?;
    let mut event = audit::event(now, "user_revoked");
    event.subject = Some(user_id.to_owned());
    event.detail = serde_json::json!({ "reason": reason }).to_string();
    store.append_audit(&[event]).await?;
    Ok(r)
}
