//! What the admin API reads and writes: request bodies, the views of stored records (never a password hash, a
//! secret digest or a private key) and pages of them. The OpenAPI schemas are derived from these types.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::keys::KeyRecord;
use crate::model::{Client, ClientCredential, GrantType, Role, TokenDelivery, User};
use crate::store::{RefreshFamily, Revocation, StoredAuditEvent, StoredKey};

/// The most items one page holds, and how many when the request does not say.
pub const MAX_LIMIT: u32 = 200;
pub const DEFAULT_LIMIT: u32 = 50;

/// An RFC 7807 problem: every error of the admin API.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// `about:blank`: the status and title say what kind of problem it is (RFC 7807 §4.2).
    #[serde(rename = "type")]
    pub kind: String,
    /// The status's reason phrase.
    pub title: String,
    pub status: u16,
    /// What was wrong with this request, in words.
    pub detail: String,
}

/// Which page of a listing: at most `limit` items after the cursor `after`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// How many items at most (1-200; 50 when absent).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page; absent for the first page.
    #[param(max_length = 256)]
    pub after: Option<String>,
}

/// Which page of the live sessions, optionally of one user.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SessionQuery {
    /// How many items at most (1-200; 50 when absent).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page; absent for the first page.
    #[param(max_length = 256)]
    pub after: Option<String>,
    /// Only this user's sessions (the user's `id`).
    #[param(max_length = 256)]
    pub user_id: Option<String>,
}

macro_rules! page_of {
    ($name:ident, $item:ty) => {
        /// One page of a listing: `next` is the cursor of the following page, absent on the last.
        #[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
        pub struct $name {
            pub items: Vec<$item>,
            pub next: Option<String>,
        }
    };
}
page_of!(UserPage, UserView);
page_of!(RolePage, RoleView);
page_of!(ClientPage, ClientView);
page_of!(KeyPage, KeyView);
page_of!(SessionPage, SessionView);
page_of!(RevocationPage, RevocationView);
page_of!(AuditPage, AuditEventView);
page_of!(HeadPage, TreeHeadView);

/// A user account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    /// The stable id: the `sub` of the user's tokens.
    pub id: String,
    /// The login name.
    pub name: String,
    pub roles: Vec<String>,
    /// The union of the roles' scopes.
    pub scopes: Vec<String>,
    pub disabled: bool,
    /// Failed logins since the last success (lockout counts these).
    pub failed_logins: u32,
    pub created_at: i64,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            id: u.id.clone(),
            name: u.name.clone(),
            roles: u.roles.clone(),
            scopes: u.scopes.iter().map(str::to_owned).collect(),
            disabled: u.disabled,
            failed_logins: u.failures,
            created_at: u.created_at,
        }
    }
}

/// A new user.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    #[schema(pattern = "^[A-Za-z0-9_.@:-]{1,128}$")]
    pub name: String,
    /// 8 to 1024 characters; stored only as an Argon2id hash.
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// A new password for a user; every token of the user is revoked.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
}

/// A role: a named set of scopes users are given.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleView {
    #[schema(pattern = "^[A-Za-z0-9_.@:-]{1,128}$")]
    pub name: String,
    pub scopes: Vec<String>,
}

impl From<&Role> for RoleView {
    fn from(r: &Role) -> Self {
        RoleView { name: r.name.clone(), scopes: r.scopes.iter().map(str::to_owned).collect() }
    }
}

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A public client (PKCE, no credential).
    None,
    /// A generated secret, returned once at registration.
    ClientSecret,
    /// Assertions signed with a key of the client's JWKS (RFC 7523).
    PrivateKeyJwt,
}

/// A grant type (RFC 6749).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    AuthorizationCode,
    ClientCredentials,
    RefreshToken,
    Password,
}

impl From<Grant> for GrantType {
    fn from(g: Grant) -> Self {
        match g {
            Grant::AuthorizationCode => GrantType::AuthorizationCode,
            Grant::ClientCredentials => GrantType::ClientCredentials,
            Grant::RefreshToken => GrantType::RefreshToken,
            Grant::Password => GrantType::Password,
        }
    }
}

impl From<GrantType> for Grant {
    fn from(g: GrantType) -> Self {
        match g {
            GrantType::AuthorizationCode => Grant::AuthorizationCode,
            GrantType::ClientCredentials => Grant::ClientCredentials,
            GrantType::RefreshToken => Grant::RefreshToken,
            GrantType::Password => Grant::Password,
        }
    }
}

/// Where a first-party browser client gets its tokens: the response body, or HttpOnly cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    #[default]
    Body,
    Cookie,
}

/// A registered client.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClientView {
    pub id: String,
    pub auth_method: AuthMethod,
    pub grants: Vec<Grant>,
    pub scopes: Vec<String>,
    pub redirect_uris: Vec<String>,
    /// The audiences its tokens may carry; the first is the default.
    pub audiences: Vec<String>,
    pub first_party: bool,
    pub token_delivery: Delivery,
    /// Every token request must carry a DPoP proof.
    pub require_dpop: bool,
    pub disabled: bool,
    pub created_at: i64,
}

impl From<&Client> for ClientView {
    fn from(c: &Client) -> Self {
        ClientView {
            id: c.id.clone(),
            auth_method: match c.credential {
                ClientCredential::None => AuthMethod::None,
                ClientCredential::Secret(_) => AuthMethod::ClientSecret,
                ClientCredential::Jwks(_) => AuthMethod::PrivateKeyJwt,
            },
            grants: c.grants.iter().map(|g| Grant::from(*g)).collect(),
            scopes: c.scopes.iter().map(str::to_owned).collect(),
            redirect_uris: c.redirect_uris.clone(),
            audiences: c.audiences.clone(),
            first_party: c.first_party,
            token_delivery: match c.token_delivery {
                TokenDelivery::Body => Delivery::Body,
                TokenDelivery::Cookie => Delivery::Cookie,
            },
            require_dpop: c.dpop_bound,
            disabled: c.disabled,
            created_at: c.created_at,
        }
    }
}

/// A client to register.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClientRequest {
    #[schema(pattern = "^[A-Za-z0-9_.@:-]{1,128}$")]
    pub id: String,
    pub auth_method: AuthMethod,
    /// For `private_key_jwt`: the client's public keys, a JWK Set (RFC 7517 §5).
    #[schema(value_type = Option<Object>)]
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    #[schema(min_items = 1)]
    pub grants: Vec<Grant>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Exact redirect URIs: https, or http on a loopback host.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub first_party: bool,
    #[serde(default)]
    pub token_delivery: Delivery,
    #[serde(default)]
    pub require_dpop: bool,
}

/// A registered client, and for `client_secret` its secret: shown this once, stored only as a hash.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedClient {
    pub client: ClientView,
    pub client_secret: Option<String>,
}

/// A signing key's public half and lifecycle.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    pub kid: String,
    pub alg: String,
    /// `pending` (published, not yet signing), `active`, `retired` (published, no longer signing) or `revoked`.
    pub state: String,
    pub created_at: i64,
    pub activate_at: Option<i64>,
    pub activated_at: Option<i64>,
    pub retired_at: Option<i64>,
    /// The public JWK.
    #[schema(value_type = Object)]
    pub public_jwk: serde_json::Value,
}

impl From<&StoredKey> for KeyView {
    fn from(k: &StoredKey) -> Self {
        let KeyRecord { kid, state, created_at, activate_at, activated_at, retired_at } = &k.record;
        KeyView {
            kid: kid.clone(),
            alg: k.alg.clone(),
            state: state.as_str().to_owned(),
            created_at: *created_at,
            activate_at: *activate_at,
            activated_at: *activated_at,
            retired_at: *retired_at,
            public_jwk: serde_json::from_str(&k.public_jwk).unwrap_or_else(|_| serde_json::json!({})),
        }
    }
}

/// A rotation under way: the new key is published now and signs from `activate_at`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Rotation {
    pub kid: String,
    pub activate_at: i64,
}

/// A live session: a refresh-token family, whose id is the `sid` of its access tokens.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    pub audience: String,
    pub created_at: i64,
    /// The thumbprint of the DPoP key the session is bound to.
    pub dpop_jkt: Option<String>,
}

impl From<&RefreshFamily> for SessionView {
    fn from(f: &RefreshFamily) -> Self {
        SessionView {
            id: f.id.clone(),
            user_id: f.user_id.clone(),
            client_id: f.client_id.clone(),
            scope: f.scope.clone(),
            audience: f.audience.clone(),
            created_at: f.created_at,
            dpop_jkt: f.dpop_jkt.clone(),
        }
    }
}

/// What a revocation covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum RevocationKindView {
    /// One access token, by its `jti`.
    #[serde(rename = "jti")]
    Jti,
    /// A session (`sid`): its refresh tokens and every access token that carries it.
    #[serde(rename = "sid")]
    Sid,
    /// Every token of a subject (`sub`) issued until now, and the user's sessions.
    #[serde(rename = "sub")]
    Sub,
}

/// A revocation in force, as guards receive it from the `/events` feed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RevocationView {
    pub seq: i64,
    pub kind: RevocationKindView,
    pub value: String,
    /// Tokens issued at or before this time are refused.
    pub issued_before: i64,
    /// When the revocation is dropped (every token it covers has expired by then).
    pub expires_at: i64,
    pub created_at: i64,
    pub reason: String,
}

impl From<&Revocation> for RevocationView {
    fn from(r: &Revocation) -> Self {
        use portcullis_revocation::Kind;
        RevocationView {
            seq: r.seq,
            kind: match r.kind {
                Kind::Token => RevocationKindView::Jti,
                Kind::Session => RevocationKindView::Sid,
                Kind::Subject => RevocationKindView::Sub,
            },
            value: r.value.clone(),
            issued_before: r.issued_before,
            expires_at: r.expires_at,
            created_at: r.created_at,
            reason: r.reason.clone(),
        }
    }
}

/// A revocation to make.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRevocation {
    pub kind: RevocationKindView,
    #[schema(min_length = 1, max_length = 256)]
    pub value: String,
    /// Why, for the audit log and the feed (default `revoked_by_admin`).
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub reason: Option<String>,
}

/// One entry of the audit log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEventView {
    /// Its position in the log: one sequence, no gaps.
    pub seq: i64,
    pub at: i64,
    pub kind: String,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub jti: Option<String>,
    /// The rest of what happened (never a token, a secret or a password): a JSON object as recorded.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<&StoredAuditEvent> for AuditEventView {
    fn from(e: &StoredAuditEvent) -> Self {
        // Exactly what the ledger hashes, so that a reader can recompute the leaf (see `ledger::leaf_data_of`).
        let detail = crate::ledger::detail_value(&e.detail);
        AuditEventView {
            seq: e.seq,
            at: e.at,
            kind: e.kind.clone(),
            subject: e.subject.clone(),
            client_id: e.client_id.clone(),
            jti: e.jti.clone(),
            detail,
        }
    }
}

/// A signed tree head of the audit ledger: the first `tree_size` audit events form a Merkle tree (RFC 9162) with
/// root `root_hash`; `jws` is the server's signed statement of it (`typ: tree-head+jwt`, claims `iss`, `iat`,
/// `tree_size`, `root_hash`), verifiable with the server's JWKS.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TreeHeadView {
    pub tree_size: u64,
    /// base64url SHA-256.
    pub root_hash: String,
    pub issued_at: i64,
    pub jws: String,
}

impl From<&crate::store::TreeHead> for TreeHeadView {
    fn from(h: &crate::store::TreeHead) -> Self {
        TreeHeadView {
            tree_size: h.tree_size,
            root_hash: portcullis_jose::b64::encode(&h.root_hash),
            issued_at: h.issued_at,
            jws: h.jws.clone(),
        }
    }
}

/// Which inclusion proof: of event `seq` in the tree of `tree_size` events (the whole ledger when absent).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InclusionQuery {
    #[param(minimum = 1)]
    pub seq: u64,
    #[param(minimum = 1)]
    pub tree_size: Option<u64>,
}

/// An audit event's inclusion proof (RFC 9162 §2.1.3): with `leaf_hash`, the hashes lead to the root of the
/// tree of `tree_size` events.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InclusionProof {
    pub seq: u64,
    pub tree_size: u64,
    /// base64url SHA-256 of `0x00 ||` the event's canonical JSON.
    pub leaf_hash: String,
    /// base64url hashes, leaf to root.
    pub proof: Vec<String>,
}

/// Which consistency proof: between the trees of `first` and `second` events (the whole ledger when absent).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    #[param(minimum = 1)]
    pub first: u64,
    #[param(minimum = 1)]
    pub second: Option<u64>,
}

/// A consistency proof (RFC 9162 §2.1.4): the tree of `first` events is a prefix of the tree of `second`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConsistencyProof {
    pub first: u64,
    pub second: u64,
    /// base64url hashes.
    pub proof: Vec<String>,
}
