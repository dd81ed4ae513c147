//! Management of roles, users, clients and keys, on the store directly: the CLI uses it, so it works before
//! the server has ever run and while it runs (the server picks changes up from the store). Every change is
//! audited; changes that take rights away also revoke the tokens that carried them.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::audit;
use crate::authority::revoke_user;
use crate::clock::Clock;
use crate::model::{Client, ClientCredential, GrantType, Role, TokenDelivery, User};
use crate::oauth::scope::Scopes;
use crate::secrets::{hash_password, BearerSecret, PasswordCost};
use crate::signing::{KeyError, KeyManager};
use crate::store::{all_pages, Store, StoreError, ALL_PAGES_LIMIT};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    /// Something on our side failed (a key could not be made); nothing the caller can fix.
    #[error("{0}")]
    Failed(String),
}

/// A client to register.
#[derive(Debug, Clone, Default)]
pub struct NewClient {
    pub id: String,
    /// `None`: a public client; `Some(None)`: generate a secret; `Some(Some(jwks))`: `private_key_jwt`.
    pub credential: ClientKind,
    pub grants: Vec<GrantType>,
    pub scopes: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub audiences: Vec<String>,
    pub first_party: bool,
    pub token_delivery: TokenDelivery,
    /// Every token request must carry a DPoP proof (RFC 9449 §5.2 `dpop_bound_access_tokens`).
    pub dpop_bound: bool,
}

/// How a new client will authenticate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ClientKind {
    #[default]
    Public,
    GenerateSecret,
    Jwks(String),
}

/// Who makes a change, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Actor {
    /// The `portcullis` command on the server's machine.
    #[default]
    Cli,
    /// A caller of the admin API: the client and subject of its access token.
    Api { client_id: String, sub: String },
}

impl Actor {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Actor::Cli => serde_json::json!("cli"),
            Actor::Api { client_id, sub } => serde_json::json!({ "client_id": client_id, "sub": sub }),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Admin {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    actor: Actor,
}

/// A redirect URI the authorization endpoint may send codes to (RFC 9700 §4.1.3, RFC 8252 §7.3): `https`, or
/// `http` whose host is exactly a loopback name; no fragment (RFC 6749 §3.1.2), no whitespace (URIs are stored
/// space-separated), no user info.
fn acceptable_redirect_uri(uri: &str) -> bool {
    if uri.contains('#') || uri.contains(char::is_whitespace) || uri.len() > 2048 {
        return false;
    }
    let (scheme, rest) = match uri.split_once("://") {
        Some(parts) => parts,
        None => return false,
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().map(|h| format!("[{h}]")).unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default().to_owned(),
    };
    match scheme {
        "https" => !host.is_empty(),
        "http" => ["127.0.0.1", "[::1]", "localhost"].contains(&host.as_str()),
        _ => false,
    }
}

fn valid_name(kind: &str, name: &str) -> Result<(), AdminError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(AdminError::Invalid(format!("{kind} {name:?}: use 1-128 characters of A-Z a-z 0-9 - _ . @ :")))
    }
}

fn scopes_from(words: &[String]) -> Result<Scopes, AdminError> {
    let all: Vec<&str> = words.iter().flat_map(|w| w.split(' ')).filter(|w| !w.is_empty()).collect();
    Scopes::of(all).map_err(|e| AdminError::Invalid(format!("scope: {e}")))
}

impl Admin {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Admin {
        Admin { store, clock, actor: Actor::Cli }
    }

    /// The same, recording `actor` as the author of every change.
    pub fn acting_as(mut self, actor: Actor) -> Admin {
        self.actor = actor;
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Every role, user or client, by name or id (the CLI's listings).
    pub async fn all_roles(&self) -> Result<Vec<Role>, AdminError> {
        Ok(all_pages(|after| async move { self.store.list_roles(&after, ALL_PAGES_LIMIT).await }, |r| r.name.clone())
            .await?)
    }

    pub async fn all_users(&self) -> Result<Vec<User>, AdminError> {
        Ok(all_pages(|after| async move { self.store.list_users(&after, ALL_PAGES_LIMIT).await }, |u| u.name.clone())
            .await?)
    }

    pub async fn all_clients(&self) -> Result<Vec<Client>, AdminError> {
        Ok(all_pages(|after| async move { self.store.list_clients(&after, ALL_PAGES_LIMIT).await }, |c| c.id.clone())
            .await?)
    }

    fn now(&self) -> i64 {
        self.clock.now().as_secs()
    }

    async fn audit(&self, kind: &'static str, subject: &str, detail: serde_json::Value) -> Result<(), AdminError> {
        let mut event = audit::event(self.now(), kind);
        event.subject = Some(subject.to_owned());
        event.detail = serde_json::json!({ "by": self.actor.to_json(), "detail": detail }).to_string();
        Ok(self.store.append_audit(&[event]).await?)
    }

    pub async fn add_role(&self, name: &str, scopes: &[String]) -> Result<Role, AdminError> {
        valid_name("role", name)?;
        let role = Role { name: name.to_owned(), scopes: scopes_from(scopes)? };
        self.store.add_role(&role, self.now()).await?;
        self.audit("role_added", name, serde_json::json!({ "scopes": role.scopes.to_string() })).await?;
        Ok(role)
    }

    pub async fn remove_role(&self, name: &str) -> Result<(), AdminError> {
        self.store.remove_role(name).await?;
        self.audit("role_removed", name, serde_json::Value::Null).await
    }

    /// Adds a user and returns it as stored; the password is hashed with Argon2id on a blocking thread.
    pub async fn add_user(
        &self,
        name: &str,
        password: Zeroizing<String>,
        roles: &[String],
    ) -> Result<User, AdminError> {
        valid_name("user", name)?;
        check_password(&password)?;
        let hash = hash_blocking(password).await?;
        let id = BearerSecret::generate().map_err(|e| AdminError::Invalid(e.to_string()))?.expose()[..22].to_owned();
        let mut roles = roles.to_vec();
        roles.sort();
        roles.dedup();
        let user = User {
            id: format!("u_{id}"),
            name: name.to_owned(),
            password_hash: hash,
            disabled: false,
            roles,
            scopes: Scopes::default(),
            failures: 0,
            last_failure_at: 0,
            created_at: self.now(),
        };
        self.store.add_user(&user).await.map_err(|e| match e {
            StoreError::NotFound(what) => AdminError::Invalid(format!("{what} does not exist")),
            other => other.into(),
        })?;
        self.audit("user_added", &user.id, serde_json::json!({ "name": name, "roles": user.roles })).await?;
        // As stored: with the scopes its roles give.
        self.user(name).await
    }

    /// Sets a new password and revokes every token of the user.
    pub async fn set_password(&self, name: &str, password: Zeroizing<String>) -> Result<(), AdminError> {
        check_password(&password)?;
        let user = self.user(name).await?;
        let hash = hash_blocking(password).await?;
        self.store.set_user_password(name, &hash).await?;
        revoke_user(self.store.as_ref(), &user.id, "password_changed", self.now()).await?;
        Ok(())
    }

    pub async fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<(), AdminError> {
        let user = self.user(name).await?;
        self.store.set_user_disabled(name, disabled).await?;
        if disabled {
            revoke_user(self.store.as_ref(), &user.id, "account_disabled", self.now()).await?;
        } else {
            self.audit("user_enabled", &user.id, serde_json::Value::Null).await?;
        }
        Ok(())
    }

    /// Revokes every session and access token of a user ("log out everywhere").
    pub async fn revoke_user(&self, name: &str) -> Result<(), AdminError> {
        let user = self.user(name).await?;
        revoke_user(self.store.as_ref(), &user.id, "revoked_by_admin", self.now()).await?;
        Ok(())
    }

    pub async fn remove_user(&self, name: &str) -> Result<(), AdminError> {
        let user = self.user(name).await?;
        revoke_user(self.store.as_ref(), &user.id, "account_removed", self.now()).await?;
        self.store.remove_user(name).await?;
        Ok(())
    }

    async fn user(&self, name: &str) -> Result<User, AdminError> {
        self.store.find_user_by_name(name).await?.ok_or_else(|| StoreError::NotFound(format!("user {name}")).into())
    }

    /// Registers a client. For `GenerateSecret`, the secret is returned once and only its digest is kept.
    pub async fn add_client(&self, new: NewClient) -> Result<(Client, Option<BearerSecret>), AdminError> {
        valid_name("client", &new.id)?;
        if new.grants.is_empty() {
            return Err(AdminError::Invalid("give at least one --grant".into()));
        }
        let public = new.credential == ClientKind::Public;
        if public && new.grants.contains(&GrantType::ClientCredentials) {
            return Err(AdminError::Invalid("a public client cannot use client_credentials (RFC 6749 §4.4)".into()));
        }
        if new.grants.contains(&GrantType::Password) && !new.first_party {
            return Err(AdminError::Invalid("the password grant is for --first-party clients only".into()));
        }
        for uri in &new.redirect_uris {
            if !acceptable_redirect_uri(uri) {
                return Err(AdminError::Invalid(format!(
                    "redirect URI {uri:?}: an absolute https URI, or http on a loopback host (127.0.0.1, [::1], \
                     localhost); no fragment, no spaces"
                )));
            }
        }
        if new.grants.contains(&GrantType::AuthorizationCode) && new.redirect_uris.is_empty() {
            return Err(AdminError::Invalid("the authorization code flow needs at least one --redirect-uri".into()));
        }
        let (credential, secret) = match &new.credential {
            ClientKind::Public => (ClientCredential::None, None),
            ClientKind::GenerateSecret => {
                let secret = BearerSecret::generate().map_err(|e| AdminError::Invalid(e.to_string()))?;
                (ClientCredential::Secret(secret.digest()), Some(secret))
            }
            ClientKind::Jwks(jwks) => {
                let algs: Vec<_> = portcullis_jose::Algorithm::asymmetric().collect();
                let keys = portcullis_jose::KeySet::from_jwks(jwks, &algs)
                    .map_err(|e| AdminError::Invalid(format!("client JWKS: {e}")))?;
                if keys.is_empty() {
                    return Err(AdminError::Invalid("client JWKS holds no usable public key".into()));
                }
                (ClientCredential::Jwks(jwks.clone()), None)
            }
        };
        let mut grants = new.grants.clone();
        grants.sort();
        grants.dedup();
        let client = Client {
            id: new.id.clone(),
            credential,
            grants,
            scopes: scopes_from(&new.scopes)?,
            redirect_uris: new.redirect_uris,
            audiences: new.audiences,
            first_party: new.first_party,
            token_delivery: new.token_delivery,
            dpop_bound: new.dpop_bound,
            disabled: false,
            created_at: self.now(),
        };
        self.store.add_client(&client).await?;
        let grants: Vec<&str> = client.grants.iter().map(|g| g.as_str()).collect();
        self.audit(
            "client_added",
            &client.id,
            serde_json::json!({ "grants": grants, "scope": client.scopes.to_string(), "dpop_bound": client.dpop_bound }),
        )
        .await?;
        Ok((client, secret))
    }

    /// Starts a signing-key rotation (see [`KeyManager::rotate`]); returns the new key's id.
    pub async fn rotate_key(&self, keys: &KeyManager) -> Result<String, AdminError> {
        let kid = keys.rotate(self.now()).await.map_err(key_error)?;
        self.audit("key_rotation_requested", &kid, serde_json::Value::Null).await?;
        Ok(kid)
    }

    /// Revokes a signing key at once (see [`KeyManager::revoke`]).
    pub async fn revoke_key(&self, keys: &KeyManager, kid: &str) -> Result<(), AdminError> {
        keys.revoke(kid, self.now()).await.map_err(key_error)?;
        self.audit("key_revocation_requested", kid, serde_json::Value::Null).await
    }

    pub async fn remove_client(&self, id: &str) -> Result<(), AdminError> {
        self.store.remove_client(id).await?;
        self.audit("client_removed", id, serde_json::Value::Null).await
    }

    pub async fn set_client_disabled(&self, id: &str, disabled: bool) -> Result<(), AdminError> {
        self.store.set_client_disabled(id, disabled).await?;
        let kind = if disabled { "client_disabled" } else { "client_enabled" };
        self.audit(kind, id, serde_json::Value::Null).await
    }
}

fn key_error(e: KeyError) -> AdminError {
    match e {
        KeyError::Store(e) => AdminError::Store(e),
        KeyError::Unknown(kid) => AdminError::Store(StoreError::NotFound(format!("key {kid}"))),
        KeyError::RotationPending(kid) => AdminError::Store(StoreError::Conflict(format!("a pending key ({kid})"))),
        KeyError::Busy => AdminError::Store(StoreError::Unavailable(e.to_string())),
        KeyError::Key(..) => AdminError::Failed(e.to_string()),
    }
}

fn check_password(password: &str) -> Result<(), AdminError> {
    let chars = password.chars().count();
    if !(8..=1024).contains(&chars) {
        return Err(AdminError::Invalid("a password must be 8 to 1024 characters".into()));
    }
    Ok(())
}

async fn hash_blocking(password: Zeroizing<String>) -> Result<String, AdminError> {
    tokio::task::spawn_blocking(move || hash_password(&password, PasswordCost::OWASP))
        .await
        .map_err(|e| AdminError::Invalid(e.to_string()))?
        .map_err(|e| AdminError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_must_be_https_or_loopback_http() {
        for ok in [
            "https://app.example/cb",
            "https://app.example:8443/cb?x=1",
            "http://127.0.0.1:5000/cb",
            "http://localhost/cb",
            "http://[::1]:9/cb",
        ] {
            assert!(acceptable_redirect_uri(ok), "{ok}");
        }
        for bad in [
            "http://localhost.evil.example/cb",
            "http://127.0.0.1.evil.example/cb",
            "http://app.example/cb",
            "https://app.example/cb#frag",
            "https://app.example/a b",
            "https://user@app.example/cb",
            "javascript:alert(1)",
            "https:///cb",
            "/relative",
        ] {
            assert!(!acceptable_redirect_uri(bad), "{bad}");
        }
    }
}
