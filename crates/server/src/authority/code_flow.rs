//! The authorization code flow with the store in hand: browser sessions, consent, issuing a code for an approved
//! request, and redeeming it at the token endpoint (RFC 6749 §4.1.3, RFC 7636 §4.6, OpenID Connect Core
//! §3.1.3, RFC 9449 §10). A code is single-use: presenting it again revokes what it produced (RFC 6749 §4.1.2).

use zeroize::Zeroizing;

use super::grants::new_id;
use super::{unavailable, Authority, Issued};
use crate::audit;
use crate::model::{Client, GrantType, User};
use crate::oauth::authorize::{pkce_matches, with_oidc, AuthorizeRequest};
use crate::oauth::dpop;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::id_token::{self, IdTokenFacts};
use crate::oauth::scope::Scopes;
use crate::secrets::{BearerSecret, SecretDigest};
use crate::store::{AuthorizationCode, BrowserSession, Redeemed};

/// How long a code may wait before it is redeemed (RFC 6749 §4.1.2 recommends at most ten minutes).
pub const CODE_TTL: i64 = 60;
/// How long a browser session lasts after the user signed in.
pub const BROWSER_SESSION_TTL: i64 = 12 * 3600;

const BAD_CODE: OAuthError = OAuthError::new(ErrorCode::InvalidGrant, "the code is invalid, expired or already used");

fn random_secret() -> Result<BearerSecret, OAuthError> {
    BearerSecret::generate().map_err(|_| OAuthError::new(ErrorCode::ServerError, "random number generator failure"))
}

impl Authority {
    /// A client by id for the authorization endpoint (`None`: unknown or disabled).
    pub async fn authorize_client(&self, client_id: &str) -> Result<Option<Client>, OAuthError> {
        if client_id.len() > 256 {
            return Ok(None);
        }
        let client = self.store.find_client(client_id).await.map_err(unavailable)?;
        Ok(client.filter(|c| !c.disabled))
    }

    /// Signs a user in at the login page: the password check of every login, then a browser session. Returns
    /// the user and the session cookie's value (a random id; the store keeps its SHA-256).
    pub async fn sign_in(
        &self,
        client: &Client,
        username: &str,
        password: Zeroizing<String>,
    ) -> Result<(User, BrowserSession, Zeroizing<String>), OAuthError> {
        let user = self.check_password(client, username, password).await?;
        let now = self.now().as_secs();
        let id = random_secret()?;
        let session =
            BrowserSession { user_id: user.id.clone(), auth_time: now, expires_at: now + BROWSER_SESSION_TTL };
        self.store.insert_browser_session(&id.digest(), &session).await.map_err(unavailable)?;
        let mut event = audit::event(now, "login");
        event.subject = Some(user.id.clone());
        event.client_id = Some(client.id.clone());
        event.detail = serde_json::json!({ "via": "authorize" }).to_string();
        self.audit(event).await?;
        Ok((user, session, Zeroizing::new(id.expose().to_owned())))
    }

    /// The live browser session a cookie names, with its user (still enabled).
    pub async fn browser_session(&self, cookie: &str) -> Result<Option<(User, BrowserSession)>, OAuthError> {
        if cookie.len() > 256 {
            return Ok(None);
        }
        let now = self.now().as_secs();
        let digest = SecretDigest::of(cookie);
        let Some(session) = self.store.find_browser_session(&digest, now).await.map_err(unavailable)? else {
            return Ok(None);
        };
        let user = self.store.find_user(&session.user_id).await.map_err(unavailable)?;
        Ok(user.filter(|u| !u.disabled).map(|u| (u, session)))
    }

    /// Ends the browser session a cookie names (logout).
    pub async fn end_browser_session(&self, cookie: &str) -> Result<(), OAuthError> {
        let now = self.now().as_secs();
        let digest = SecretDigest::of(cookie);
        let session = self.store.find_browser_session(&digest, now).await.map_err(unavailable)?;
        self.store.end_browser_session(&digest).await.map_err(unavailable)?;
        if let Some(session) = session {
            let mut event = audit::event(now, "logout");
            event.subject = Some(session.user_id);
            event.detail = serde_json::json!({ "via": "end_session" }).to_string();
            self.audit(event).await?;
        }
        Ok(())
    }

    /// The subject and client of an ID token we issued, presented as `id_token_hint` at logout (OpenID Connect
    /// RP-Initiated Logout §2): signature, issuer and `typ: JWT` are checked. A hint that expired less than a
    /// browser session ago is still good (logout comes late); it is then judged as of just before it expired.
    pub fn id_token_hint(&self, hint: &str) -> Option<(String, String)> {
        const MAX_BYTES: usize = 16 * 1024;
        let policy = portcullis_jose::Policy::builder()
            .issuer(&self.rules.issuer)
            .danger_accept_any_audience()
            .typ(crate::signing::ID_TOKEN_TYP)
            .algorithms(&portcullis_jose::Algorithm::asymmetric().collect::<Vec<_>>())
            .max_token_bytes(MAX_BYTES)
            .build()
            .ok()?;
        // `exp` read unverified only to pick the instant of judgement; everything is verified below.
        let (_, payload) = portcullis_jose::jws::decode_unverified(hint, MAX_BYTES).ok()?;
        let exp = serde_json::from_slice::<serde_json::Value>(&payload).ok()?.get("exp")?.as_i64()?;
        let now = self.now().as_secs();
        if now.saturating_sub(exp) > BROWSER_SESSION_TTL {
            return None;
        }
        let at = portcullis_jose::UnixTime::from_secs(now.min(exp.saturating_sub(1)));
        let material = self.keys.ring().current();
        let claims = portcullis_jose::jwt::verify(hint, &material.published, &policy, at).ok()?.claims;
        let client = claims.string("azp").or_else(|| claims.aud().into_iter().next())?.into_owned();
        Some((claims.sub()?.into_owned(), client))
    }

    /// The scopes `user` would get: the request's, bounded by the user's roles (OpenID Connect scopes always).
    pub fn scopes_for(&self, request: &AuthorizeRequest, user: &User) -> Scopes {
        with_oidc(&request.scopes.intersect(&user.scopes), &request.scopes)
    }

    /// Whether the user must be asked before `client` gets `scopes`: never for first-party clients; for others,
    /// unless an earlier consent covers them (and `prompt=consent` did not ask again).
    pub async fn needs_consent(
        &self,
        client: &Client,
        user: &User,
        scopes: &Scopes,
        prompt_consent: bool,
    ) -> Result<bool, OAuthError> {
        if client.first_party {
            return Ok(false);
        }
        if prompt_consent {
            return Ok(true);
        }
        let given = self.store.consent(&user.id, &client.id).await.map_err(unavailable)?;
        let given = given.and_then(|g| Scopes::parse(&g).ok()).unwrap_or_default();
        Ok(scopes.intersect(&given) != *scopes)
    }

    /// Records the user's consent to `scopes` for `client`.
    pub async fn record_consent(&self, client: &Client, user: &User, scopes: &Scopes) -> Result<(), OAuthError> {
        let now = self.now().as_secs();
        self.store.grant_consent(&user.id, &client.id, &scopes.to_string(), now).await.map_err(unavailable)?;
        let mut event = audit::event(now, "consent_granted");
        event.subject = Some(user.id.clone());
        event.client_id = Some(client.id.clone());
        event.detail = serde_json::json!({ "scope": scopes.to_string() }).to_string();
        self.audit(event).await
    }

    /// Issues a single-use code for an approved request; returns the code to send to the redirect URI.
    pub async fn issue_code(
        &self,
        request: &AuthorizeRequest,
        user: &User,
        session: &BrowserSession,
        scopes: &Scopes,
    ) -> Result<Zeroizing<String>, OAuthError> {
        let now = self.now().as_secs();
        let code = random_secret()?;
        let record = AuthorizationCode {
            client_id: request.client_id.clone(),
            user_id: user.id.clone(),
            redirect_uri: request.redirect_uri.clone(),
            redirect_uri_given: request.redirect_uri_given,
            scope: scopes.to_string(),
            audience: request.audience.clone(),
            code_challenge: request.code_challenge.clone(),
            nonce: request.nonce.clone(),
            auth_time: session.auth_time,
            session_id: new_id()?,
            dpop_jkt: request.dpop_jkt.clone(),
            created_at: now,
            expires_at: now + CODE_TTL,
        };
        self.store.insert_code(&code.digest(), &record).await.map_err(unavailable)?;
        metrics::counter!("portcullis_authorization_codes_total", "result" => "issued").increment(1);
        Ok(Zeroizing::new(code.expose().to_owned()))
    }

    /// The `authorization_code` grant. The code is spent first, whatever follows: a wrong verifier or redirect
    /// URI costs the presenter the code.
    pub(super) async fn redeem_code(
        &self,
        client: &Client,
        code: &str,
        verifier: &str,
        redirect_uri: Option<&str>,
        jkt: Option<&str>,
    ) -> Result<Issued, OAuthError> {
        if code.len() > 256 {
            return Err(BAD_CODE);
        }
        let now = self.now().as_secs();
        let record = match self.store.redeem_code(&SecretDigest::of(code), now).await.map_err(unavailable)? {
            Redeemed::Fresh(record) => record,
            Redeemed::Reused(record) => return Err(self.code_reused(&record, now).await),
            Redeemed::Unknown => return Err(BAD_CODE),
        };
        let redirect_ok = match redirect_uri {
            Some(given) => given == record.redirect_uri,
            None => !record.redirect_uri_given,
        };
        if record.client_id != client.id || now >= record.expires_at || !redirect_ok {
            return Err(BAD_CODE);
        }
        if !pkce_matches(verifier, &record.code_challenge) {
            return Err(OAuthError::new(ErrorCode::InvalidGrant, "code_verifier does not match the code_challenge"));
        }
        let jkt = dpop::binding(client, jkt, None)?;
        if record.dpop_jkt.is_some() && record.dpop_jkt.as_deref() != jkt {
            return Err(OAuthError::new(ErrorCode::InvalidDpopProof, "the code is bound to another DPoP key"));
        }
        let user = self.store.find_user(&record.user_id).await.map_err(unavailable)?;
        let Some(user) = user.filter(|u| !u.disabled) else { return Err(BAD_CODE) };
        // Roles may have changed since the code was issued: they bound the scopes again now.
        let granted = Scopes::parse(&record.scope).unwrap_or_default();
        let scopes = with_oidc(&granted.intersect(&client.scopes).intersect(&user.scopes), &granted);
        let sid = record.session_id.as_str();
        let family = if client.allows(GrantType::RefreshToken) {
            Some(self.start_family(client, &user.id, &scopes, &record.audience, sid.to_owned(), jkt, now).await?)
        } else {
            None
        };
        let grant = GrantType::AuthorizationCode;
        let minted =
            self.issue(client, &user.id, &record.audience, &scopes, &user.roles, Some(sid), jkt, grant).await?;
        let id_token =
            if scopes.contains("openid") { Some(self.id_token(client, &user, &record, &minted.token)?) } else { None };
        let mut issued = Issued::new(minted, family.map(|(_, s)| s.expose().to_owned()), &scopes);
        issued.id_token = id_token;
        metrics::counter!("portcullis_authorization_codes_total", "result" => "redeemed").increment(1);
        Ok(issued)
    }

    fn id_token(
        &self,
        client: &Client,
        user: &User,
        record: &AuthorizationCode,
        access_token: &str,
    ) -> Result<String, OAuthError> {
        let material = self.keys.ring().current();
        let signer = material
            .id_signer
            .as_ref()
            .ok_or(OAuthError::new(ErrorCode::TemporarilyUnavailable, "no signing key is active; retry shortly"))?;
        let facts = IdTokenFacts {
            issuer: &self.rules.issuer,
            subject: &user.id,
            client_id: &client.id,
            nonce: record.nonce.as_deref(),
            auth_time: record.auth_time,
            access_token,
        };
        id_token::mint(&facts, signer, self.now(), self.rules.access_token_ttl)
            .map_err(|_| OAuthError::new(ErrorCode::ServerError, "the ID token could not be signed"))
    }

    /// A spent code presented again: whoever holds it, the tokens it produced are revoked (RFC 6749 §4.1.2).
    async fn code_reused(&self, record: &AuthorizationCode, now: i64) -> OAuthError {
        metrics::counter!("portcullis_authorization_codes_total", "result" => "reused").increment(1);
        tracing::warn!(sid = %record.session_id, client_id = %record.client_id, user_id = %record.user_id,
            "authorization code reused: its tokens are revoked");
        if let Err(e) = self.revoke_session(&record.session_id, "code_reuse", now).await {
            return e;
        }
        let mut event = audit::event(now, "code_reuse");
        event.subject = Some(record.user_id.clone());
        event.client_id = Some(record.client_id.clone());
        event.detail = serde_json::json!({ "sid": record.session_id }).to_string();
        if let Err(e) = self.audit(event).await {
            return e;
        }
        BAD_CODE
    }
}
