//! The storage interface: one trait, one implementation per backend (`sqlite`, `postgres`), chosen by the
//! database URL ([`open`]). Everything that must hold across a crash or across instances is decided inside one
//! database step: refresh rotation (the token row locked, or SQLite's single writer), failure counters
//! (`failures + 1`), one-time client assertions (insert-or-conflict), key state changes (compare-and-set) and
//! leases for jobs one instance at a time may run. The store knows no HTTP types.

pub mod postgres;
mod rows;
pub mod snapshot;
pub mod sqlite;
#[cfg(test)]
mod suite;

use async_trait::async_trait;

use crate::keys::{KeyRecord, KeyState};
use crate::model::{Client, Role, User};
use crate::oauth::refresh::{Decision, RefreshRules, RefreshState};
use crate::secrets::SecretDigest;

/// Why a store call failed. Callers answer `Unavailable` with 503 and a retry, never with a guess.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("the database holds data this version cannot read: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A signing key as stored: its lifecycle record, algorithm, public JWK and the sealed private JWK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub record: KeyRecord,
    pub alg: String,
    pub public_jwk: String,
    pub sealed_private: Vec<u8>,
}

/// A refresh family: every token rotated from one login shares it. Its id is the `sid` of its access tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshFamily {
    pub id: String,
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    pub audience: String,
    pub created_at: i64,
    /// For a public client that proved a DPoP key at login: the key's thumbprint. Every refresh of the family
    /// must then prove the same key (RFC 9449 §5).
    pub dpop_jkt: Option<String>,
}

/// What a refresh attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The presented token is now used and `successor` is stored in its place.
    Rotated(RefreshFamily),
    /// Refused; for [`Decision::RevokeFamily`] the family (and its access tokens) is now revoked.
    Refused(Decision, Option<RefreshFamily>),
    /// No such token.
    Unknown,
}

/// An authorization code (RFC 6749 §4.1.2) and what it was issued for. The code itself is kept only as its
/// SHA-256, like every bearer secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationCode {
    pub client_id: String,
    pub user_id: String,
    /// The redirect URI the code was sent to; the token request must name it if the authorization request did.
    pub redirect_uri: String,
    pub redirect_uri_given: bool,
    pub scope: String,
    pub audience: String,
    /// The PKCE S256 challenge (RFC 7636 §4.2).
    pub code_challenge: String,
    /// The OpenID Connect `nonce`, echoed in the ID token.
    pub nonce: Option<String>,
    /// When the user last authenticated (OpenID Connect `auth_time`).
    pub auth_time: i64,
    /// The `sid` of the tokens the code yields: reusing the code revokes them by it (RFC 6749 §4.1.2).
    pub session_id: String,
    /// The DPoP key the code is bound to (`dpop_jkt`, RFC 9449 §10).
    pub dpop_jkt: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// What presenting a code did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// The first use: the code is now spent.
    Fresh(AuthorizationCode),
    /// The code was already used: a replay (whatever the caller decides, the code stays spent).
    Reused(AuthorizationCode),
    /// No such code.
    Unknown,
}

/// A user's signed-in browser at the server (OpenID Connect): the cookie holds a random id, the store its
/// SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserSession {
    pub user_id: String,
    pub auth_time: i64,
    pub expires_at: i64,
}

/// What a revocation applies to (shared with the guard).
pub use portcullis_revocation::Kind as RevocationKind;

/// A revocation of access tokens, kept until the tokens it covers would have expired. `seq` orders them
/// for the `/events` feed and for servers that catch up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub seq: i64,
    pub kind: RevocationKind,
    pub value: String,
    pub issued_before: i64,
    pub expires_at: i64,
    pub created_at: i64,
    pub reason: String,
}

/// One audit event: who did what, never a token or a secret (a `jti` is fine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: i64,
    pub kind: &'static str,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub jti: Option<String>,
    /// A small JSON object with the rest (scope, reason, kid...).
    pub detail: String,
}

/// A stored audit event, with its position in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAuditEvent {
    pub seq: i64,
    pub at: i64,
    pub kind: String,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub jti: Option<String>,
    pub detail: String,
}

/// A change another instance made, announced by the store (PostgreSQL `LISTEN/NOTIFY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreChange {
    /// A revocation was committed: sync the revocation set.
    Revocation,
    /// Signing keys changed: reload the key ring.
    Keys,
    /// The notification channel was interrupted and changes may have been missed: sync everything.
    Resync,
}

/// Opens the store a database URL names: `sqlite://PATH` or `postgres://...` (`postgresql://` too).
pub async fn open(url: &str, options: &PoolOptions) -> StoreResult<std::sync::Arc<dyn Store>> {
    if url.starts_with("sqlite://") {
        return Ok(std::sync::Arc::new(sqlite::SqliteStore::open(url).await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(std::sync::Arc::new(postgres::PgStore::open(url, options).await?));
    }
    Err(StoreError::Unavailable("the database URL must start with sqlite:// or postgres://".into()))
}

/// Connection settings for a client-server database (PostgreSQL); SQLite ignores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// Most connections this instance holds.
    pub max_connections: u32,
    /// How long a statement may run before the database cancels it, and how long a request waits for a
    /// connection, in seconds.
    pub statement_timeout: u64,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions { max_connections: 16, statement_timeout: 5 }
    }
}

/// The authorization code flow's part of the store: codes, browser sessions, consents. Its statements are the
/// same on both backends, so one macro (`rows::code_flow_store!`) implements it for both.
#[async_trait]
pub trait CodeFlowStore: Send + Sync {
    async fn insert_code(&self, digest: &SecretDigest, code: &AuthorizationCode) -> StoreResult<()>;
    /// Spends a code in one atomic step: `Fresh` for the first presentation, `Reused` for any later one.
    async fn redeem_code(&self, digest: &SecretDigest, now: i64) -> StoreResult<Redeemed>;
    async fn insert_browser_session(&self, digest: &SecretDigest, session: &BrowserSession) -> StoreResult<()>;
    /// A browser session that has not expired at `now`.
    async fn find_browser_session(&self, digest: &SecretDigest, now: i64) -> StoreResult<Option<BrowserSession>>;
    async fn end_browser_session(&self, digest: &SecretDigest) -> StoreResult<()>;
    /// Ends every browser session of a user (disabled, password changed, "log out everywhere").
    async fn end_user_browser_sessions(&self, user_id: &str) -> StoreResult<u64>;
    /// Records that a user consented to `scope` for a client (replacing an earlier consent).
    async fn grant_consent(&self, user_id: &str, client_id: &str, scope: &str, now: i64) -> StoreResult<()>;
    /// The scopes a user has consented to for a client, if any.
    async fn consent(&self, user_id: &str, client_id: &str) -> StoreResult<Option<String>>;
}

/// Which refresh families [`ListStore::list_sessions`] returns: live ones (not revoked, created after
/// `created_after`), of one user or (`user_id` empty) of all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    pub user_id: String,
    pub created_after: i64,
}

/// Paged listings for the admin API and the CLI: each returns at most `limit` rows whose key (name, id) sorts
/// after `after` (empty: from the start), in key order, so a page is one indexed range scan however large the
/// table. The statements are the same on both backends (`rows::list_store!`).
#[async_trait]
pub trait ListStore: Send + Sync {
    async fn list_roles(&self, after: &str, limit: u32) -> StoreResult<Vec<Role>>;
    async fn list_users(&self, after: &str, limit: u32) -> StoreResult<Vec<User>>;
    async fn list_clients(&self, after: &str, limit: u32) -> StoreResult<Vec<Client>>;
    /// Live refresh families (sessions) by id.
    async fn list_sessions(&self, filter: &SessionFilter, after: &str, limit: u32) -> StoreResult<Vec<RefreshFamily>>;
    /// One live refresh family.
    async fn find_session(&self, filter: &SessionFilter, id: &str) -> StoreResult<Option<RefreshFamily>>;
}

/// A signed tree head of the audit ledger: the tree of the first `tree_size` audit events has `root_hash`,
/// as the server said at `issued_at` in `jws` (signed with its key, `typ: tree-head+jwt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHead {
    pub tree_size: u64,
    pub root_hash: [u8; 32],
    pub issued_at: i64,
    pub jws: String,
}

/// What one step of the audit ledger's growth stores: the nodes it completed (blocks of 16 and up) and the leaf
/// hashes of the blocks it completed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerGrowth {
    pub nodes: Vec<((u8, u64), [u8; 32])>,
    pub leaf_blocks: Vec<(u64, Vec<u8>)>,
}

/// The audit ledger's part of the store: the Merkle tree's stored nodes, its size, and the signed heads. The
/// statements are the same on both backends (`rows::ledger_store!`).
#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// How many audit events (from seq 1) the tree covers.
    async fn ledger_size(&self) -> StoreResult<u64>;
    /// The stored hashes of these nodes (level, index); missing ones are absent from the answer.
    async fn ledger_nodes(&self, ids: &[(u8, u64)]) -> StoreResult<std::collections::HashMap<(u8, u64), [u8; 32]>>;
    /// Grows the tree from `from` to `to` events, storing the nodes completed on the way, in one transaction;
    /// false (and nothing written) if the tree is no longer `from` events (another instance grew it).
    async fn ledger_extend(&self, from: u64, to: u64, growth: &LedgerGrowth) -> StoreResult<bool>;
    /// The recorded leaf hashes of these complete blocks of 16 events (32 bytes per leaf, in order).
    async fn ledger_leaves(&self, blocks: &[u64]) -> StoreResult<std::collections::HashMap<u64, Vec<u8>>>;
    /// Stores a signed head (a second head of the same size is ignored).
    async fn add_head(&self, head: &TreeHead) -> StoreResult<()>;
    /// The head of the largest tree.
    async fn latest_head(&self) -> StoreResult<Option<TreeHead>>;
    /// Heads with `tree_size > after`, smallest first, at most `limit`.
    async fn heads(&self, after: u64, limit: u32) -> StoreResult<Vec<TreeHead>>;
}

/// Risk profiles (one per subject, bytes the risk engine wrote), shared by instances; the latest write wins.
/// The statements are the same on both backends (`rows::risk_store!`).
#[async_trait]
pub trait RiskStore: Send + Sync {
    /// The stored profile of `subject`, if any.
    async fn risk_profile(&self, subject: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Stores these profiles (replacing older ones) in one transaction.
    async fn save_risk_profiles(&self, profiles: &[(String, Vec<u8>)], now: i64) -> StoreResult<()>;
}

/// Every row of a paged listing, page by page (`key` gives a row's cursor); `page` must ask for
/// [`ALL_PAGES_LIMIT`] rows. For the CLI, which prints all.
pub async fn all_pages<T, F, Fut>(mut page: F, key: impl Fn(&T) -> String) -> StoreResult<Vec<T>>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = StoreResult<Vec<T>>>,
{
    let mut all: Vec<T> = Vec::new();
    loop {
        let after = all.last().map(&key).unwrap_or_default();
        let rows = page(after).await?;
        let full = rows.len() == ALL_PAGES_LIMIT as usize;
        all.extend(rows);
        if !full {
            return Ok(all);
        }
    }
}

/// The page size [`all_pages`] asks for.
pub const ALL_PAGES_LIMIT: u32 = 500;

#[async_trait]
pub trait Store: CodeFlowStore + ListStore + LedgerStore + RiskStore + Send + Sync + std::fmt::Debug {
    /// Cheap liveness check of the database (for `/readyz`).
    async fn ping(&self) -> StoreResult<()>;

    // Roles.
    async fn add_role(&self, role: &Role, now: i64) -> StoreResult<()>;
    async fn remove_role(&self, name: &str) -> StoreResult<()>;

    // Users.
    async fn add_user(&self, user: &User) -> StoreResult<()>;
    async fn find_user_by_name(&self, name: &str) -> StoreResult<Option<User>>;
    async fn find_user(&self, id: &str) -> StoreResult<Option<User>>;
    async fn remove_user(&self, name: &str) -> StoreResult<()>;
    async fn set_user_disabled(&self, name: &str, disabled: bool) -> StoreResult<()>;
    async fn set_user_password(&self, name: &str, password_hash: &str) -> StoreResult<()>;
    /// Adds one failed login atomically and returns the new count.
    async fn record_login_failure(&self, user_id: &str, now: i64) -> StoreResult<u32>;
    async fn reset_login_failures(&self, user_id: &str) -> StoreResult<()>;

    // Clients.
    async fn add_client(&self, client: &Client) -> StoreResult<()>;
    async fn find_client(&self, id: &str) -> StoreResult<Option<Client>>;
    async fn remove_client(&self, id: &str) -> StoreResult<()>;
    async fn set_client_disabled(&self, id: &str, disabled: bool) -> StoreResult<()>;
    /// Records a client assertion's `jti` until it expires; false if it was already used (replay).
    async fn use_assertion(&self, client_id: &str, jti: &str, expires_at: i64) -> StoreResult<bool>;

    // Signing keys.
    async fn list_keys(&self) -> StoreResult<Vec<StoredKey>>;
    async fn insert_key(&self, key: &StoredKey) -> StoreResult<()>;
    /// Moves a key from `from` to `to` at `now`; false if it was not in `from` (another actor moved it).
    async fn set_key_state(&self, kid: &str, from: KeyState, to: KeyState, now: i64) -> StoreResult<bool>;
    /// Deletes a key for good (a retired key whose tokens have all expired).
    async fn delete_key(&self, kid: &str) -> StoreResult<()>;

    // Refresh tokens.
    async fn start_family(&self, family: &RefreshFamily, first: &SecretDigest) -> StoreResult<()>;
    /// Judges `presented` with [`crate::oauth::refresh::decide`] and applies the decision in one
    /// transaction: rotate to `successor`, or revoke the family on reuse.
    async fn rotate_refresh(
        &self,
        presented: &SecretDigest,
        successor: &SecretDigest,
        rules: &RefreshRules,
        now: i64,
    ) -> StoreResult<RotateOutcome>;
    /// The family of a refresh token and the token's state, if the token is known (used or not).
    async fn find_refresh(&self, token: &SecretDigest) -> StoreResult<Option<(RefreshFamily, RefreshState)>>;
    /// Revokes a family; true if it was live.
    async fn revoke_family(&self, family_id: &str, reason: &str, now: i64) -> StoreResult<bool>;
    /// Revokes every live family of a user; returns how many.
    async fn revoke_user_families(&self, user_id: &str, reason: &str, now: i64) -> StoreResult<u64>;

    // Access-token revocations and the event feed.
    async fn add_revocation(&self, revocation: &Revocation) -> StoreResult<i64>;
    /// Revocations with `seq > after`, oldest first, at most `limit`, not yet expired at `now`.
    async fn revocations_since(&self, after: i64, now: i64, limit: u32) -> StoreResult<Vec<Revocation>>;

    // Audit.
    async fn append_audit(&self, events: &[AuditEvent]) -> StoreResult<()>;
    /// The same, returning the `seq` each event got (in order), when the backend numbers events as it stores
    /// them (SQLite); `None` when they are numbered later (PostgreSQL). The audit ledger then adds them to the
    /// tree from memory instead of reading them back.
    async fn append_audit_numbered(&self, events: &[AuditEvent]) -> StoreResult<Option<Vec<i64>>> {
        self.append_audit(events).await.map(|()| None)
    }
    async fn audit_since(&self, after: i64, limit: u32) -> StoreResult<Vec<StoredAuditEvent>>;

    /// Deletes what has expired: used assertions, revocations, dead refresh tokens. Returns rows removed.
    async fn purge_expired(&self, now: i64, refresh_rules: &RefreshRules) -> StoreResult<u64>;

    // Leases.
    /// Takes (or renews) the lease `name` for `holder` until `until`, if it is free, expired at `now`, or
    /// already `holder`'s; true if `holder` now holds it. One atomic upsert, so two instances never both win.
    async fn acquire_lease(&self, name: &str, holder: &str, now: i64, until: i64) -> StoreResult<bool>;
    /// Gives the lease up early, if `holder` still holds it.
    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()>;

    /// Everything in the store, read in one consistent transaction (`portcullis export`).
    async fn export(&self) -> StoreResult<snapshot::Snapshot>;
    /// Writes a snapshot into this store in one transaction (`portcullis import`). Refuses, writing nothing,
    /// unless the store has no roles, users, clients or keys yet.
    async fn import(&self, snapshot: &snapshot::Snapshot) -> StoreResult<()>;

    /// Changes made by other instances, as they commit; `None` when the backend cannot announce them (SQLite:
    /// the server polls instead).
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<StoreChange>> {
        None
    }
}
