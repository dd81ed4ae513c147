//! The grants of the token endpoint (`client_credentials`, `password`, `refresh_token`) and the first-party
//! login that shares the password path. Scopes granted = requested ∩ client-allowed ∩ role-granted.

use std::fmt;

use portcullis_risk::{Action, Kind};
use serde::Serialize;
use zeroize::Zeroizing;

use super::client::Authenticated;
use super::{unavailable, Authority};
use crate::audit;
use crate::model::{Client, GrantType, User};
use crate::oauth::access_token::{mint, Grant, Minted};
use crate::oauth::authorize::with_oidc;
use crate::oauth::dpop;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::refresh::Decision;
use crate::oauth::scope::Scopes;
use crate::secrets::{BearerSecret, SecretDigest};
use crate::store::{RefreshFamily, RotateOutcome};

/// The parameters of a token request, whatever the grant (RFC 6749 §4, RFC 8707).
#[derive(Default)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub scope: Option<String>,
    pub resource: Option<String>,
    pub refresh_token: Option<Zeroizing<String>>,
    pub username: Option<String>,
    pub password: Option<Zeroizing<String>>,
    /// The value of the request's one `DPoP` header (RFC 9449 §4.1), if it had one.
    pub dpop: Option<String>,
    /// The `authorization_code` grant: the code, the PKCE verifier, and the redirect URI it was sent to.
    pub code: Option<Zeroizing<String>>,
    pub code_verifier: Option<Zeroizing<String>>,
    pub redirect_uri: Option<String>,
}

impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRequest")
            .field("grant_type", &self.grant_type)
            .field("scope", &self.scope)
            .field("resource", &self.resource)
            .field("dpop", &self.dpop.is_some())
            .finish_non_exhaustive()
    }
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Serialize)]
pub struct Issued {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
    /// The OpenID Connect ID token, when `openid` was granted (authorization code flow).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// For logs and audit only.
    #[serde(skip)]
    pub jti: String,
    /// The session (`sid`) of the tokens, for cookie mode's CSRF token; not part of the response.
    #[serde(skip)]
    pub session_id: Option<String>,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued").field("jti", &self.jti).field("scope", &self.scope).finish_non_exhaustive()
    }
}

pub(super) const BAD_LOGIN: OAuthError = OAuthError::new(ErrorCode::InvalidGrant, "invalid username or password");
const BAD_REFRESH: OAuthError = OAuthError::new(ErrorCode::InvalidGrant, "refresh token is invalid or expired");
const MAX_USERNAME: usize = 256;
const MAX_PASSWORD: usize = 1024;

fn requested_scopes(scope: Option<&str>) -> Result<Option<Scopes>, OAuthError> {
    scope.map(Scopes::parse).transpose().map_err(|_| OAuthError::new(ErrorCode::InvalidScope, "scope is malformed"))
}

fn audience(client: &Client, resource: Option<&str>) -> Result<String, OAuthError> {
    client
        .audience_for(resource)
        .ok_or(OAuthError::new(ErrorCode::InvalidTarget, "the resource is not one this client may use"))
}

/// A requested scope set that came out empty is refused rather than silently widened or emptied.
fn check_granted(requested: Option<&Scopes>, granted: &Scopes) -> Result<(), OAuthError> {
    if requested.is_some_and(|r| !r.is_empty()) && granted.is_empty() {
        return Err(OAuthError::new(ErrorCode::InvalidScope, "none of the requested scopes may be granted"));
    }
    Ok(())
}

pub(super) fn new_id() -> Result<String, OAuthError> {
    BearerSecret::generate()
        .map(|s| s.expose()[..22].to_owned())
        .map_err(|_| OAuthError::new(ErrorCode::ServerError, "random number generator failure"))
}

impl Authority {
    /// The token endpoint: dispatches on `grant_type` once the client is authenticated.
    pub async fn token(&self, client: &Authenticated, req: TokenRequest) -> Result<Issued, OAuthError> {
        let grant: GrantType = match req.grant_type.as_deref() {
            None => return Err(OAuthError::new(ErrorCode::InvalidRequest, "grant_type is missing")),
            Some(name) => name
                .parse()
                .map_err(|_| OAuthError::new(ErrorCode::UnsupportedGrantType, "this grant type is not supported"))?,
        };
        if !client.client.allows(grant) {
            return Err(OAuthError::new(ErrorCode::UnauthorizedClient, "the client may not use this grant type"));
        }
        let proof = self.token_proof(req.dpop.as_deref()).await?;
        let jkt = proof.as_ref().map(|p| p.jkt.as_str());
        match grant {
            GrantType::ClientCredentials => self.client_credentials(client, &req, jkt).await,
            GrantType::Password => {
                let (Some(username), Some(password)) = (req.username.as_deref(), req.password) else {
                    return Err(OAuthError::new(ErrorCode::InvalidRequest, "username and password are required"));
                };
                let (scope, resource) = (req.scope.as_deref(), req.resource.as_deref());
                self.password_login(&client.client, username, password, scope, resource, jkt).await
            }
            GrantType::RefreshToken => {
                let Some(token) = req.refresh_token else {
                    return Err(OAuthError::new(ErrorCode::InvalidRequest, "refresh_token is missing"));
                };
                self.refresh(&client.client, &token, req.scope.as_deref(), jkt).await
            }
            GrantType::AuthorizationCode => {
                let (Some(code), Some(verifier)) = (req.code.as_deref(), req.code_verifier.as_deref()) else {
                    return Err(OAuthError::new(ErrorCode::InvalidRequest, "code and code_verifier are required"));
                };
                self.redeem_code(&client.client, code, verifier, req.redirect_uri.as_deref(), jkt).await
            }
        }
    }

    async fn client_credentials(
        &self,
        client: &Authenticated,
        req: &TokenRequest,
        jkt: Option<&str>,
    ) -> Result<Issued, OAuthError> {
        // RFC 6749 §4.4: confidential clients only.
        if !client.is_confidential() {
            return Err(OAuthError::new(ErrorCode::UnauthorizedClient, "public clients cannot use client_credentials"));
        }
        let requested = requested_scopes(req.scope.as_deref())?;
        let client = &client.client;
        let jkt = dpop::binding(client, jkt, None)?;
        let scopes = Scopes::grant(requested.as_ref(), &client.scopes, &client.scopes);
        check_granted(requested.as_ref(), &scopes)?;
        let aud = audience(client, req.resource.as_deref())?;
        let grant = GrantType::ClientCredentials;
        let minted = self.issue(client, &client.id, &aud, &scopes, &[], None, jkt, grant).await?;
        Ok(Issued::new(minted, None, &scopes))
    }

    /// The password path, shared by the `password` grant and `POST /auth/login`. Unknown users, wrong
    /// passwords, disabled and locked accounts all cost one Argon2id check and get the same answer.
    pub async fn password_login(
        &self,
        client: &Client,
        username: &str,
        password: Zeroizing<String>,
        scope: Option<&str>,
        resource: Option<&str>,
        jkt: Option<&str>,
    ) -> Result<Issued, OAuthError> {
        let jkt = dpop::binding(client, jkt, None)?;
        let requested = requested_scopes(scope)?;
        let aud = audience(client, resource)?;
        let now = self.now().as_secs();
        let user = self.check_password(client, username, password).await?;
        let scopes = Scopes::grant(requested.as_ref(), &client.scopes, &user.scopes);
        check_granted(requested.as_ref(), &scopes)?;
        let family = if client.allows(GrantType::RefreshToken) {
            Some(self.start_family(client, &user.id, &scopes, &aud, new_id()?, jkt, now).await?)
        } else {
            None
        };
        let sid = family.as_ref().map(|(f, _)| f.id.as_str());
        let grant = GrantType::Password;
        let minted = self.issue(client, &user.id, &aud, &scopes, &user.roles, sid, jkt, grant).await?;
        Ok(Issued::new(minted, family.map(|(_, s)| s.expose().to_owned()), &scopes))
    }

    /// A refresh family for a user's new session (`sid` = `id`), with its first refresh token.
    #[allow(clippy::too_many_arguments)] // the facts of one session; a struct would only rename them
    pub(super) async fn start_family(
        &self,
        client: &Client,
        user_id: &str,
        scopes: &Scopes,
        audience: &str,
        id: String,
        jkt: Option<&str>,
        now: i64,
    ) -> Result<(RefreshFamily, BearerSecret), OAuthError> {
        let family = RefreshFamily {
            id,
            user_id: user_id.to_owned(),
            client_id: client.id.clone(),
            scope: scopes.to_string(),
            audience: audience.to_owned(),
            created_at: now,
            dpop_jkt: dpop::family_binding(client, jkt),
        };
        let secret = BearerSecret::generate()
            .map_err(|_| OAuthError::new(ErrorCode::ServerError, "random number generator failure"))?;
        self.store.start_family(&family, &secret.digest()).await.map_err(unavailable)?;
        Ok((family, secret))
    }

    /// Checks a user's password for `client`, with the lockout and the audit of failures: the one password
    /// check of the `password` grant, `/auth/login` and the login page.
    pub async fn check_password(
        &self,
        client: &Client,
        username: &str,
        password: Zeroizing<String>,
    ) -> Result<User, OAuthError> {
        let now = self.now().as_secs();
        let user = if username.len() <= MAX_USERNAME && !username.is_empty() {
            self.store.find_user_by_name(username).await.map_err(unavailable)?
        } else {
            None
        };
        let locked = user.as_ref().is_some_and(|u| self.rules.lockout.is_locked(u.failures, u.last_failure_at, now));
        let stored = user.as_ref().filter(|_| !locked).map(|u| u.password_hash.clone());
        let password = if password.len() > MAX_PASSWORD { Zeroizing::new(String::new()) } else { password };
        let matched = self.passwords.verify(password, stored).await.map_err(|_| {
            metrics::counter!("portcullis_password_pool_busy_total").increment(1);
            OAuthError::new(ErrorCode::TemporarilyUnavailable, "too many logins at once; retry shortly")
        })?;
        let user = match user {
            Some(user) if matched && !user.disabled && !locked => user,
            other => return Err(self.login_failed(other.as_ref(), username, client, matched, locked, now).await),
        };
        // The risk engine sees the login before the failure counter is reset (a run of failures is evidence).
        if let Some(verdict) = self.risk(Kind::Login, &user.id, &client.id, None, now).await {
            if verdict.action >= Action::Deny {
                // The same answer as a wrong password: a refusal must not confirm that the password was right.
                metrics::counter!("portcullis_logins_total", "result" => "risk_denied").increment(1);
                return Err(BAD_LOGIN);
            }
        }
        if user.failures > 0 {
            self.store.reset_login_failures(&user.id).await.map_err(unavailable)?;
        }
        metrics::counter!("portcullis_logins_total", "result" => "success").increment(1);
        Ok(user)
    }

    async fn login_failed(
        &self,
        user: Option<&User>,
        username: &str,
        client: &Client,
        matched: bool,
        locked: bool,
        now: i64,
    ) -> OAuthError {
        let reason = match user {
            None => "unknown_user",
            Some(_) if locked => "locked",
            Some(u) if u.disabled && matched => "disabled",
            Some(_) => "wrong_password",
        };
        metrics::counter!("portcullis_logins_total", "result" => "failure").increment(1);
        let mut event = audit::event(now, "login_failed");
        event.subject = user.map(|u| u.id.clone());
        event.client_id = Some(client.id.clone());
        event.detail = serde_json::json!({ "reason": reason }).to_string();
        let mut events = vec![event];
        if let Some(u) = user.filter(|_| reason == "wrong_password") {
            match self.store.record_login_failure(&u.id, now).await {
                Ok(failures) => {
                    let lock = self.rules.lockout.lock_seconds(failures);
                    if lock > 0 {
                        metrics::counter!("portcullis_lockouts_total").increment(1);
                        tracing::warn!(user_id = %u.id, failures, lock_seconds = lock, "account locked after failed logins");
                        let mut event = audit::event(now, "lockout");
                        event.subject = Some(u.id.clone());
                        event.detail = serde_json::json!({ "failures": failures, "seconds": lock }).to_string();
                        events.push(event);
                    }
                }
                Err(e) => return unavailable(e),
            }
        }
        for event in events {
            if let Err(e) = self.audit.record(event).await {
                return unavailable(e);
            }
        }
        // The name tried stands for the subject when there is no such user (bounded by MAX_USERNAME).
        let subject = user.map_or(username, |u| u.id.as_str());
        if !subject.is_empty() && subject.len() <= MAX_USERNAME {
            self.risk(Kind::LoginFailure, subject, &client.id, None, now).await;
        }
        BAD_LOGIN
    }

    /// The `refresh_token` grant: one atomic rotation in the store; reuse after the grace period burns the
    /// family and its access tokens.
    pub async fn refresh(
        &self,
        client: &Client,
        token: &str,
        scope: Option<&str>,
        jkt: Option<&str>,
    ) -> Result<Issued, OAuthError> {
        let requested = requested_scopes(scope)?;
        if token.len() > 256 {
            return Err(BAD_REFRESH);
        }
        let presented = SecretDigest::of(token);
        // The token must belong to this client before anything is changed (RFC 6749 §6).
        let found = self.store.find_refresh(&presented).await.map_err(unavailable)?;
        let Some((family, _)) = found.filter(|(f, _)| f.client_id == client.id) else {
            return Err(BAD_REFRESH);
        };
        // Checked before rotating: a request that cannot prove the family's key leaves the token usable.
        let jkt = dpop::binding(client, jkt, Some(&family))?;
        let family_scopes = Scopes::parse(&family.scope).unwrap_or_default();
        if requested.as_ref().is_some_and(|r| r.intersect(&family_scopes) != *r) {
            return Err(OAuthError::new(ErrorCode::InvalidScope, "scope exceeds what was originally granted"));
        }
        let successor = BearerSecret::generate()
            .map_err(|_| OAuthError::new(ErrorCode::ServerError, "random number generator failure"))?;
        let now = self.now().as_secs();
        let outcome = self
            .store
            .rotate_refresh(&presented, &successor.digest(), &self.rules.refresh, now)
            .await
            .map_err(unavailable)?;
        let family = match outcome {
            RotateOutcome::Rotated(family) => family,
            RotateOutcome::Refused(Decision::RevokeFamily, Some(family)) => {
                return Err(self.reuse_detected(&family, now).await);
            }
            RotateOutcome::Refused(Decision::RefuseDuplicate, _) => {
                metrics::counter!("portcullis_refresh_duplicates_total").increment(1);
                return Err(OAuthError::new(ErrorCode::InvalidGrant, "refresh token was already used"));
            }
            RotateOutcome::Refused(..) | RotateOutcome::Unknown => return Err(BAD_REFRESH),
        };
        let user = self.store.find_user(&family.user_id).await.map_err(unavailable)?;
        let Some(user) = user.filter(|u| !u.disabled) else {
            self.revoke_session(&family.id, "account_disabled", now).await?;
            return Err(BAD_REFRESH);
        };
        if let Some(verdict) = self.risk(Kind::Refresh, &user.id, &client.id, Some(&family.id), now).await {
            if verdict.action == Action::Revoke {
                self.revoke_session(&family.id, "risk", now).await?;
            }
            if verdict.action >= Action::Deny {
                return Err(BAD_REFRESH);
            }
        }
        // The user's current roles still bound the family's scopes: a role taken away is gone at refresh.
        let narrowed = requested.map_or(family_scopes.clone(), |r| r.intersect(&family_scopes));
        let scopes = with_oidc(&narrowed.intersect(&client.scopes).intersect(&user.scopes), &narrowed);
        let sid = Some(family.id.as_str());
        let grant = GrantType::RefreshToken;
        let minted = self.issue(client, &user.id, &family.audience, &scopes, &user.roles, sid, jkt, grant).await?;
        Ok(Issued::new(minted, Some(successor.expose().to_owned()), &scopes))
    }

    async fn reuse_detected(&self, family: &RefreshFamily, now: i64) -> OAuthError {
        metrics::counter!("portcullis_refresh_reuse_total").increment(1);
        tracing::warn!(sid = %family.id, user_id = %family.user_id, client_id = %family.client_id,
            "refresh token reused after rotation: family revoked");
        let mut event = audit::event(now, "refresh_reuse");
        event.subject = Some(family.user_id.clone());
        event.client_id = Some(family.client_id.clone());
        event.detail = serde_json::json!({ "sid": family.id }).to_string();
        if let Err(e) = self.revoke_session(&family.id, "reuse", now).await {
            return e;
        }
        if let Err(e) = self.audit.record(event).await {
            return unavailable(e);
        }
        self.risk(Kind::RefreshReuse, &family.user_id, &family.client_id, Some(&family.id), now).await;
        BAD_REFRESH
    }

    /// Signs an access token with the active key and records its issuance.
    #[allow(clippy::too_many_arguments)] // the facts of one token; a struct would only rename them
    pub(super) async fn issue(
        &self,
        client: &Client,
        subject: &str,
        audience: &str,
        scopes: &Scopes,
        roles: &[String],
        sid: Option<&str>,
        dpop_jkt: Option<&str>,
        grant: GrantType,
    ) -> Result<Minted, OAuthError> {
        let material = self.keys.ring().current();
        let Some(signer) = material.signer.as_ref() else {
            tracing::error!("no active signing key: tokens cannot be issued");
            return Err(OAuthError::new(ErrorCode::TemporarilyUnavailable, "no signing key is active; retry shortly"));
        };
        let g = Grant {
            issuer: &self.rules.issuer,
            subject,
            client_id: &client.id,
            audience,
            scopes,
            roles,
            session_id: sid,
            dpop_jkt,
        };
        let now = self.now();
        let minted = mint(&g, signer, now, self.rules.access_token_ttl)
            .map_err(|_| OAuthError::new(ErrorCode::ServerError, "the token could not be signed"))?;
        let mut event = audit::event(now.as_secs(), "token_issued");
        event.subject = Some(subject.to_owned());
        event.client_id = Some(client.id.clone());
        event.jti = Some(minted.jti.clone());
        event.detail =
            serde_json::json!({ "grant": grant.as_str(), "scope": scopes.to_string(), "aud": audience, "sid": sid,
                "jkt": dpop_jkt })
            .to_string();
        self.audit(event).await?;
        metrics::counter!("portcullis_tokens_issued_total", "grant" => grant.as_str()).increment(1);
        tracing::debug!(jti = %minted.jti, client_id = %client.id, grant = grant.as_str(), "access token issued");
        Ok(minted)
    }
}

impl Issued {
    pub(super) fn new(minted: Minted, refresh_token: Option<String>, scopes: &Scopes) -> Issued {
        Issued {
            token_type: if minted.dpop_bound { "DPoP" } else { "Bearer" },
            access_token: minted.token,
            expires_in: minted.expires_in,
            refresh_token,
            scope: scopes.to_string(),
            id_token: None,
            jti: minted.jti,
            session_id: minted.session_id,
        }
    }
}
