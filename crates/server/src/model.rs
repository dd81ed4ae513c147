//! What the server keeps: roles, users, clients. Plain data, free of storage and HTTP; the store reads and
//! writes these, the grants judge them.

use std::fmt;
use std::str::FromStr;

use crate::oauth::scope::Scopes;
use crate::secrets::SecretDigest;

/// The grant types a client may be allowed (RFC 6749 §4, DESIGN.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GrantType {
    AuthorizationCode,
    ClientCredentials,
    RefreshToken,
    /// The resource-owner password grant: first-party clients only.
    Password,
}

impl GrantType {
    pub const ALL: [GrantType; 4] =
        [GrantType::AuthorizationCode, GrantType::ClientCredentials, GrantType::RefreshToken, GrantType::Password];

    pub const fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::RefreshToken => "refresh_token",
            GrantType::Password => "password",
        }
    }
}

impl fmt::Display for GrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GrantType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GrantType::ALL.into_iter().find(|g| g.as_str() == s).ok_or_else(|| {
            format!(
                "unknown grant type {s:?} (one of: authorization_code, client_credentials, refresh_token, password)"
            )
        })
    }
}

/// How a first-party client receives its tokens from `/auth/login`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenDelivery {
    /// In the JSON body, like the token endpoint.
    #[default]
    Body,
    /// In `HttpOnly` cookies, for browser clients.
    Cookie,
}

impl TokenDelivery {
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenDelivery::Body => "body",
            TokenDelivery::Cookie => "cookie",
        }
    }
}

impl FromStr for TokenDelivery {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "body" => Ok(TokenDelivery::Body),
            "cookie" => Ok(TokenDelivery::Cookie),
            _ => Err(format!("unknown token delivery {s:?} (body or cookie)")),
        }
    }
}

/// A named set of scopes that users hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub scopes: Scopes,
}

/// A user account. `password_hash` is an Argon2id PHC string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Stable opaque id: the `sub` of the user's tokens.
    pub id: String,
    pub name: String,
    pub password_hash: String,
    pub disabled: bool,
    pub roles: Vec<String>,
    /// The union of the roles' scopes.
    pub scopes: Scopes,
    /// Consecutive failed logins, and when the last one happened (for the lockout).
    pub failures: u32,
    pub last_failure_at: i64,
    pub created_at: i64,
}

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCredential {
    /// A public client: no secret (`token_endpoint_auth_method: none`).
    None,
    /// A server-generated secret, kept as its SHA-256 (`client_secret_basic` / `client_secret_post`).
    Secret(SecretDigest),
    /// A JWK Set of the client's public keys (`private_key_jwt`, RFC 7523).
    Jwks(String),
}

/// An OAuth client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub id: String,
    pub credential: ClientCredential,
    pub grants: Vec<GrantType>,
    /// The scopes the client may be granted (for user grants, the user's roles bound them further).
    pub scopes: Scopes,
    pub redirect_uris: Vec<String>,
    /// The audiences (resource servers) the client's tokens may name. The first is the default `aud`; an
    /// RFC 8707 `resource` parameter picks another. None configured: the client's own id.
    pub audiences: Vec<String>,
    pub first_party: bool,
    pub token_delivery: TokenDelivery,
    /// Every token request must carry a DPoP proof, so every access token is sender-constrained (RFC 9449
    /// §5.2, client metadata `dpop_bound_access_tokens`).
    pub dpop_bound: bool,
    pub disabled: bool,
    pub created_at: i64,
}

impl Client {
    pub fn allows(&self, grant: GrantType) -> bool {
        self.grants.contains(&grant) && (grant != GrantType::Password || self.first_party)
    }

    pub fn is_public(&self) -> bool {
        self.credential == ClientCredential::None
    }

    /// The `aud` for a token: the requested `resource` if the client may name it, else the default.
    pub fn audience_for(&self, resource: Option<&str>) -> Option<String> {
        match resource {
            None => Some(self.audiences.first().cloned().unwrap_or_else(|| self.id.clone())),
            Some(r) if self.audiences.iter().any(|a| a == r) => Some(r.to_owned()),
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_the_password_grant_needs_a_first_party_client() {
        for g in GrantType::ALL {
            assert_eq!(g.as_str().parse::<GrantType>().unwrap(), g);
        }
        assert!("implicit".parse::<GrantType>().is_err(), "the implicit grant is not offered (RFC 9700 §2.1.2)");
        assert_eq!("cookie".parse::<TokenDelivery>().unwrap(), TokenDelivery::Cookie);
        let mut client = Client {
            id: "app".into(),
            credential: ClientCredential::None,
            grants: vec![GrantType::Password, GrantType::RefreshToken],
            scopes: Scopes::default(),
            redirect_uris: vec![],
            audiences: vec![],
            first_party: false,
            token_delivery: TokenDelivery::Body,
            dpop_bound: false,
            disabled: false,
            created_at: 0,
        };
        assert!(!client.allows(GrantType::Password));
        assert!(client.allows(GrantType::RefreshToken));
        assert!(!client.allows(GrantType::ClientCredentials));
        client.first_party = true;
        assert!(client.allows(GrantType::Password));
        assert!(client.is_public());
        assert_eq!(client.audience_for(None).as_deref(), Some("app"));
        assert_eq!(client.audience_for(Some("https://api.example")), None, "only configured audiences");
        client.audiences = vec!["api".into(), "https://api.example".into()];
        assert_eq!(client.audience_for(None).as_deref(), Some("api"));
        assert_eq!(client.audience_for(Some("https://api.example")).as_deref(), Some("https://api.example"));
    }
}
