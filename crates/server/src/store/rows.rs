//! Reading stored rows into the domain types, once for every backend: each backend's row type implements
//! [`Cols`], and the mapping functions here do the rest. Errors from `sqlx` are classified here too.

use sqlx::Row;

use super::*;
use crate::model::{ClientCredential, GrantType};
use crate::oauth::refresh::{RefreshRules, RefreshState};
use crate::oauth::scope::Scopes;

/// Typed column access, the same for every backend's row type.
pub(super) trait Cols {
    fn text(&self, column: &str) -> StoreResult<String>;
    fn opt_text(&self, column: &str) -> StoreResult<Option<String>>;
    fn int(&self, column: &str) -> StoreResult<i64>;
    fn opt_int(&self, column: &str) -> StoreResult<Option<i64>>;
    fn flag(&self, column: &str) -> StoreResult<bool>;
    fn bytes(&self, column: &str) -> StoreResult<Vec<u8>>;
    fn opt_bytes(&self, column: &str) -> StoreResult<Option<Vec<u8>>>;
}

macro_rules! cols_for {
    ($row:ty) => {
        impl Cols for $row {
            fn text(&self, column: &str) -> StoreResult<String> {
                self.try_get(column).map_err(db_error)
            }
            fn opt_text(&self, column: &str) -> StoreResult<Option<String>> {
                self.try_get(column).map_err(db_error)
            }
            fn int(&self, column: &str) -> StoreResult<i64> {
                self.try_get(column).map_err(db_error)
            }
            fn opt_int(&self, column: &str) -> StoreResult<Option<i64>> {
                self.try_get(column).map_err(db_error)
            }
            fn flag(&self, column: &str) -> StoreResult<bool> {
                self.try_get(column).map_err(db_error)
            }
            fn bytes(&self, column: &str) -> StoreResult<Vec<u8>> {
                self.try_get(column).map_err(db_error)
            }
            fn opt_bytes(&self, column: &str) -> StoreResult<Option<Vec<u8>>> {
                self.try_get(column).map_err(db_error)
            }
        }
    };
}
cols_for!(sqlx::sqlite::SqliteRow);
cols_for!(sqlx::postgres::PgRow);

/// Classifies a database error: a unique violation is a conflict, undecodable data is corruption, and
/// everything else (connection refused, pool timeout, statement timeout, server restarting) is unavailability.
pub(super) fn db_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict("the record".into()),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::ColumnNotFound(_) => {
            StoreError::Corrupt(e.to_string())
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

/// [`db_error`], naming `what` when it is a conflict.
pub(super) fn conflict(what: &str) -> impl Fn(sqlx::Error) -> StoreError + '_ {
    move |e| match db_error(e) {
        StoreError::Conflict(_) => StoreError::Conflict(what.to_owned()),
        other => other,
    }
}

pub(super) fn found(rows: u64, what: &str) -> StoreResult<()> {
    if rows == 0 {
        Err(StoreError::NotFound(what.to_owned()))
    } else {
        Ok(())
    }
}

pub(super) fn split_words(s: &str) -> Vec<String> {
    s.split(' ').filter(|w| !w.is_empty()).map(str::to_owned).collect()
}

fn scopes_of(text: &str) -> StoreResult<Scopes> {
    Scopes::parse(text).map_err(|e| StoreError::Corrupt(format!("stored scope: {e}")))
}

pub(super) fn role_of(row: &impl Cols) -> StoreResult<Role> {
    Ok(Role { name: row.text("name")?, scopes: scopes_of(&row.text("scopes")?)? })
}

/// How a client's credential is stored: method, secret digest, JWKS.
pub(super) fn credential_columns(credential: &ClientCredential) -> (&'static str, Option<Vec<u8>>, Option<String>) {
    match credential {
        ClientCredential::None => ("none", None, None),
        ClientCredential::Secret(d) => ("secret", Some(d.as_bytes().to_vec()), None),
        ClientCredential::Jwks(j) => ("jwks", None, Some(j.clone())),
    }
}

pub(super) fn client_of(row: &impl Cols) -> StoreResult<Client> {
    let credential = match row.text("auth_method")?.as_str() {
        "none" => ClientCredential::None,
        "secret" => {
            let digest: [u8; 32] = row
                .bytes("secret_digest")?
                .try_into()
                .map_err(|_| StoreError::Corrupt("client secret digest length".into()))?;
            ClientCredential::Secret(SecretDigest::from_bytes(digest))
        }
        "jwks" => ClientCredential::Jwks(row.text("jwks")?),
        other => return Err(StoreError::Corrupt(format!("client auth method {other:?}"))),
    };
    let grants = split_words(&row.text("grants")?)
        .iter()
        .map(|g| g.parse::<GrantType>().map_err(StoreError::Corrupt))
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Client {
        id: row.text("id")?,
        credential,
        grants,
        scopes: scopes_of(&row.text("scopes")?)?,
        redirect_uris: split_words(&row.text("redirect_uris")?),
        audiences: split_words(&row.text("audiences")?),
        first_party: row.flag("first_party")?,
        token_delivery: row.text("token_delivery")?.parse().map_err(StoreError::Corrupt)?,
        dpop_bound: row.flag("dpop_bound")?,
        disabled: row.flag("disabled")?,
        created_at: row.int("created_at")?,
    })
}

pub(super) fn key_of(row: &impl Cols) -> StoreResult<StoredKey> {
    let state = row.text("state")?;
    Ok(StoredKey {
        record: KeyRecord {
            kid: row.text("kid")?,
            state: KeyState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("key state {state:?}")))?,
            created_at: row.int("created_at")?,
            activate_at: row.opt_int("activate_at")?,
            activated_at: row.opt_int("activated_at")?,
            retired_at: row.opt_int("retired_at")?,
        },
        alg: row.text("alg")?,
        public_jwk: row.text("public_jwk")?,
        sealed_private: row.bytes("sealed_private")?,
    })
}

pub(super) fn family_of(row: &impl Cols) -> StoreResult<RefreshFamily> {
    Ok(RefreshFamily {
        id: row.text("id")?,
        user_id: row.text("user_id")?,
        client_id: row.text("client_id")?,
        scope: row.text("scope")?,
        audience: row.text("audience")?,
        created_at: row.int("created_at")?,
        dpop_jkt: row.opt_text("dpop_jkt")?,
    })
}

/// The `INSERT` of a client, in [`Client`] field order (`$n` parameters: both backends take them).
pub(super) const CLIENT_INSERT: &str = "INSERT INTO clients (id, auth_method, secret_digest, jwks, grants, scopes, \
     redirect_uris, audiences, first_party, token_delivery, dpop_bound, disabled, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

/// [`CLIENT_INSERT`] with a client's columns bound, for either backend.
macro_rules! client_insert {
    ($client:expr) => {{
        let client = $client;
        let (method, digest, jwks) = credential_columns(&client.credential);
        let grants: Vec<&str> = client.grants.iter().map(|g| g.as_str()).collect();
        sqlx::query(CLIENT_INSERT)
            .bind(&client.id)
            .bind(method)
            .bind(digest)
            .bind(jwks)
            .bind(grants.join(" "))
            .bind(client.scopes.to_string())
            .bind(client.redirect_uris.join(" "))
            .bind(client.audiences.join(" "))
            .bind(client.first_party)
            .bind(client.token_delivery.as_str())
            .bind(client.dpop_bound)
            .bind(client.disabled)
            .bind(client.created_at)
    }};
}
pub(super) use client_insert;

/// The `INSERT` of a refresh family, in [`RefreshFamily`] field order.
pub(super) const FAMILY_INSERT: &str = "INSERT INTO refresh_families \
     (id, user_id, client_id, scope, audience, created_at, dpop_jkt) VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// [`FAMILY_INSERT`] with a family's columns bound, for either backend.
macro_rules! family_insert {
    ($family:expr) => {
        sqlx::query(FAMILY_INSERT)
            .bind(&$family.id)
            .bind(&$family.user_id)
            .bind(&$family.client_id)
            .bind(&$family.scope)
            .bind(&$family.audience)
            .bind($family.created_at)
            .bind(&$family.dpop_jkt)
    };
}
pub(super) use family_insert;

/// The columns [`refresh_of`] reads; `WHERE t.digest = ...` follows.
pub(super) const REFRESH_SELECT: &str = "SELECT f.id, f.user_id, f.client_id, f.scope, f.audience, f.created_at, \
     f.dpop_jkt, f.revoked_at, t.issued_at AS token_issued_at, t.used_at FROM refresh_tokens t \
     JOIN refresh_families f ON f.id = t.family_id";

pub(super) fn refresh_of(row: &impl Cols) -> StoreResult<(RefreshFamily, RefreshState)> {
    let family = family_of(row)?;
    let state = RefreshState {
        family_created_at: family.created_at,
        issued_at: row.int("token_issued_at")?,
        used_at: row.opt_int("used_at")?,
        family_revoked: row.opt_int("revoked_at")?.is_some(),
    };
    Ok((family, state))
}

pub(super) fn revocation_of(row: &impl Cols) -> StoreResult<Revocation> {
    let kind = row.text("kind")?;
    Ok(Revocation {
        seq: row.int("seq")?,
        kind: RevocationKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("revocation kind {kind:?}")))?,
        value: row.text("value")?,
        issued_before: row.int("issued_before")?,
        expires_at: row.int("expires_at")?,
        created_at: row.int("created_at")?,
        reason: row.text("reason")?,
    })
}

/// A user row with `roles` and `scopes` aggregated into space-separated text (`group_concat` in SQLite,
/// `string_agg` in PostgreSQL).
pub(super) fn user_of(row: &impl Cols) -> StoreResult<User> {
    let mut roles = split_words(row.opt_text("roles")?.as_deref().unwrap_or_default());
    roles.sort();
    let scopes = row.opt_text("scopes")?;
    Ok(User {
        id: row.text("id")?,
        name: row.text("name")?,
        password_hash: row.text("password_hash")?,
        disabled: row.flag("disabled")?,
        roles,
        scopes: Scopes::of(split_words(scopes.as_deref().unwrap_or_default()))
            .map_err(|e| StoreError::Corrupt(format!("stored scope: {e}")))?,
        failures: u32::try_from(row.int("failures")?).unwrap_or(u32::MAX),
        last_failure_at: row.int("last_failure_at")?,
        created_at: row.int("created_at")?,
    })
}

pub(super) fn audit_of(row: &impl Cols) -> StoreResult<StoredAuditEvent> {
    Ok(StoredAuditEvent {
        seq: row.int("seq")?,
        at: row.int("at")?,
        kind: row.text("kind")?,
        subject: row.opt_text("subject")?,
        client_id: row.opt_text("client_id")?,
        jti: row.opt_text("jti")?,
        detail: row.text("detail")?,
    })
}

/// The statements of the authorization code flow, the same for both backends (`$n` in order of appearance,
/// which SQLite binds by position too).
pub(super) const CODE_INSERT: &str = "INSERT INTO authorization_codes (digest, client_id, user_id, redirect_uri, \
     redirect_uri_given, scope, audience, code_challenge, nonce, auth_time, session_id, dpop_jkt, created_at, \
     expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";
/// Spends a code if it is unspent, in one statement: two concurrent presentations cannot both see it fresh.
pub(super) const CODE_REDEEM: &str =
    "UPDATE authorization_codes SET used_at = $1 WHERE digest = $2 AND used_at IS NULL RETURNING *";
pub(super) const CODE_SELECT: &str = "SELECT * FROM authorization_codes WHERE digest = $1";
pub(super) const SESSION_INSERT: &str =
    "INSERT INTO browser_sessions (digest, user_id, auth_time, expires_at) VALUES ($1, $2, $3, $4)";
pub(super) const SESSION_SELECT: &str = "SELECT * FROM browser_sessions WHERE digest = $1 AND expires_at > $2";
pub(super) const SESSION_DELETE: &str = "DELETE FROM browser_sessions WHERE digest = $1";
pub(super) const USER_SESSIONS_DELETE: &str = "DELETE FROM browser_sessions WHERE user_id = $1";
pub(super) const CONSENT_UPSERT: &str = "INSERT INTO consents (user_id, client_id, scope, granted_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, client_id) DO UPDATE SET scope = excluded.scope, \
     granted_at = excluded.granted_at";
pub(super) const CONSENT_SELECT: &str = "SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2";

/// [`CODE_INSERT`] with its parameters bound, for either backend.
macro_rules! code_insert {
    ($digest:expr, $code:expr) => {
        sqlx::query(CODE_INSERT)
            .bind($digest.as_bytes().as_slice())
            .bind(&$code.client_id)
            .bind(&$code.user_id)
            .bind(&$code.redirect_uri)
            .bind($code.redirect_uri_given)
            .bind(&$code.scope)
            .bind(&$code.audience)
            .bind(&$code.code_challenge)
            .bind(&$code.nonce)
            .bind($code.auth_time)
            .bind(&$code.session_id)
            .bind(&$code.dpop_jkt)
            .bind($code.created_at)
            .bind($code.expires_at)
    };
}
pub(super) use code_insert;

/// Implements [`CodeFlowStore`] for a backend whose pools are the fields `$write` and `$read`: the statements and
/// the decoding are the same for both backends.
macro_rules! code_flow_store {
    ($store:ty, $write:ident, $read:ident) => {
        #[async_trait::async_trait]
        impl CodeFlowStore for $store {
            async fn insert_code(&self, digest: &SecretDigest, code: &AuthorizationCode) -> StoreResult<()> {
                code_insert!(digest, code).execute(&self.$write).await.map_err(conflict("authorization code"))?;
                Ok(())
            }

            async fn redeem_code(&self, digest: &SecretDigest, now: i64) -> StoreResult<Redeemed> {
                let digest = digest.as_bytes().as_slice();
                let spent = sqlx::query(CODE_REDEEM).bind(now).bind(digest).fetch_optional(&self.$write).await;
                if let Some(row) = spent.map_err(db_error)? {
                    return Ok(Redeemed::Fresh(code_of(&row)?));
                }
                let row = sqlx::query(CODE_SELECT).bind(digest).fetch_optional(&self.$write).await.map_err(db_error)?;
                row.map_or(Ok(Redeemed::Unknown), |r| Ok(Redeemed::Reused(code_of(&r)?)))
            }

            async fn insert_browser_session(&self, digest: &SecretDigest, session: &BrowserSession) -> StoreResult<()> {
                sqlx::query(SESSION_INSERT)
                    .bind(digest.as_bytes().as_slice())
                    .bind(&session.user_id)
                    .bind(session.auth_time)
                    .bind(session.expires_at)
                    .execute(&self.$write)
                    .await
                    .map_err(conflict("browser session"))?;
                Ok(())
            }

            async fn find_browser_session(
                &self,
                digest: &SecretDigest,
                now: i64,
            ) -> StoreResult<Option<BrowserSession>> {
                let query = sqlx::query(SESSION_SELECT).bind(digest.as_bytes().as_slice()).bind(now);
                let row = query.fetch_optional(&self.$read).await.map_err(db_error)?;
                row.as_ref().map(browser_session_of).transpose()
            }

            async fn end_browser_session(&self, digest: &SecretDigest) -> StoreResult<()> {
                let query = sqlx::query(SESSION_DELETE).bind(digest.as_bytes().as_slice());
                query.execute(&self.$write).await.map_err(db_error)?;
                Ok(())
            }

            async fn end_user_browser_sessions(&self, user_id: &str) -> StoreResult<u64> {
                let done =
                    sqlx::query(USER_SESSIONS_DELETE).bind(user_id).execute(&self.$write).await.map_err(db_error)?;
                Ok(done.rows_affected())
            }

            async fn grant_consent(&self, user_id: &str, client_id: &str, scope: &str, now: i64) -> StoreResult<()> {
                let query = sqlx::query(CONSENT_UPSERT).bind(user_id).bind(client_id).bind(scope).bind(now);
                query.execute(&self.$write).await.map_err(db_error)?;
                Ok(())
            }

            async fn consent(&self, user_id: &str, client_id: &str) -> StoreResult<Option<String>> {
                let query = sqlx::query(CONSENT_SELECT).bind(user_id).bind(client_id);
                let row = query.fetch_optional(&self.$read).await.map_err(db_error)?;
                row.map(|r| r.text("scope")).transpose()
            }
        }
    };
}
pub(super) use code_flow_store;

pub(super) const ROLES_PAGE: &str = "SELECT name, scopes FROM roles WHERE name > $1 ORDER BY name LIMIT $2";
pub(super) const CLIENTS_PAGE: &str = "SELECT * FROM clients WHERE id > $1 ORDER BY id LIMIT $2";
const LIVE_FAMILY: &str = "revoked_at IS NULL AND created_at > $1 AND ($2 = '' OR user_id = $2)";
pub(super) fn sessions_page() -> String {
    format!("SELECT * FROM refresh_families WHERE {LIVE_FAMILY} AND id > $3 ORDER BY id LIMIT $4")
}
pub(super) fn session_select() -> String {
    format!("SELECT * FROM refresh_families WHERE {LIVE_FAMILY} AND id = $3")
}

/// Implements [`ListStore`] for a backend whose read pool is the field `$read`; `$user_columns` is the
/// backend's select list for a user with its roles (the aggregate function differs).
macro_rules! list_store {
    ($store:ty, $read:ident, $user_columns:expr) => {
        #[async_trait::async_trait]
        impl ListStore for $store {
            async fn list_roles(&self, after: &str, limit: u32) -> StoreResult<Vec<Role>> {
                let query = sqlx::query(ROLES_PAGE).bind(after).bind(i64::from(limit));
                let rows = query.fetch_all(&self.$read).await.map_err(db_error)?;
                rows.iter().map(role_of).collect()
            }

            async fn list_users(&self, after: &str, limit: u32) -> StoreResult<Vec<User>> {
                let sql = format!("SELECT {} FROM users u WHERE u.name > $1 ORDER BY u.name LIMIT $2", $user_columns);
                let rows = sqlx::query(&sql)
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&self.$read)
                    .await
                    .map_err(db_error)?;
                rows.iter().map(user_of).collect()
            }

            async fn list_clients(&self, after: &str, limit: u32) -> StoreResult<Vec<Client>> {
                let query = sqlx::query(CLIENTS_PAGE).bind(after).bind(i64::from(limit));
                let rows = query.fetch_all(&self.$read).await.map_err(db_error)?;
                rows.iter().map(client_of).collect()
            }

            async fn list_sessions(
                &self,
                filter: &SessionFilter,
                after: &str,
                limit: u32,
            ) -> StoreResult<Vec<RefreshFamily>> {
                let sql = sessions_page();
                let query = sqlx::query(&sql).bind(filter.created_after).bind(&filter.user_id);
                let rows = query.bind(after).bind(i64::from(limit)).fetch_all(&self.$read).await.map_err(db_error)?;
                rows.iter().map(family_of).collect()
            }

            async fn find_session(&self, filter: &SessionFilter, id: &str) -> StoreResult<Option<RefreshFamily>> {
                let sql = session_select();
                let query = sqlx::query(&sql).bind(filter.created_after).bind(&filter.user_id).bind(id);
                let row = query.fetch_optional(&self.$read).await.map_err(db_error)?;
                row.as_ref().map(family_of).transpose()
            }
        }
    };
}
pub(super) use list_store;

pub(super) fn code_of(row: &impl Cols) -> StoreResult<AuthorizationCode> {
    Ok(AuthorizationCode {
        client_id: row.text("client_id")?,
        user_id: row.text("user_id")?,
        redirect_uri: row.text("redirect_uri")?,
        redirect_uri_given: row.flag("redirect_uri_given")?,
        scope: row.text("scope")?,
        audience: row.text("audience")?,
        code_challenge: row.text("code_challenge")?,
        nonce: row.opt_text("nonce")?,
        auth_time: row.int("auth_time")?,
        session_id: row.text("session_id")?,
        dpop_jkt: row.opt_text("dpop_jkt")?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
    })
}

pub(super) fn browser_session_of(row: &impl Cols) -> StoreResult<BrowserSession> {
    Ok(BrowserSession {
        user_id: row.text("user_id")?,
        auth_time: row.int("auth_time")?,
        expires_at: row.int("expires_at")?,
    })
}

/// What `purge_expired` deletes, and from which cut-off (`$1`), in both backends.
#[derive(Debug, Clone, Copy)]
pub(super) enum PurgeAt {
    Now,
    /// `now` minus the refresh family's absolute lifetime.
    FamilyEnd,
    /// `now` minus the idle lifetime (or the reuse grace, if longer).
    IdleEnd,
    /// An hour ago: used codes are kept that long after they expire, so a late replay is still recognised.
    CodeEnd,
}

pub(super) const PURGES: [(&str, PurgeAt); 7] = [
    ("DELETE FROM used_assertions WHERE expires_at <= $1", PurgeAt::Now),
    ("DELETE FROM revocations WHERE expires_at <= $1", PurgeAt::Now),
    // A family past its absolute lifetime can no longer be used or reused.
    ("DELETE FROM refresh_families WHERE created_at <= $1", PurgeAt::FamilyEnd),
    // Unused tokens past the idle lifetime are dead; used ones stay while their family lives, so a late replay
    // is still recognised as reuse.
    ("DELETE FROM refresh_tokens WHERE used_at IS NULL AND issued_at <= $1", PurgeAt::IdleEnd),
    ("DELETE FROM leases WHERE until <= $1", PurgeAt::Now),
    ("DELETE FROM authorization_codes WHERE expires_at <= $1", PurgeAt::CodeEnd),
    ("DELETE FROM browser_sessions WHERE expires_at <= $1", PurgeAt::Now),
];

impl PurgeAt {
    pub(super) fn at(self, now: i64, rules: &RefreshRules) -> i64 {
        match self {
            PurgeAt::Now => now,
            PurgeAt::FamilyEnd => now.saturating_sub(rules.absolute_ttl),
            PurgeAt::IdleEnd => now.saturating_sub(rules.idle_ttl.max(rules.reuse_grace)),
            PurgeAt::CodeEnd => now.saturating_sub(3600),
        }
    }
}

pub(super) const LEDGER_SIZE: &str = "SELECT size FROM audit_ledger WHERE id = 1";
pub(super) const LEDGER_GROW: &str = "UPDATE audit_ledger SET size = $1 WHERE id = 1 AND size = $2";
/// Ledger rows (nodes or leaf blocks) per `INSERT` statement (three parameters at most each; well under both
/// backends' parameter limits): one statement per row made growth several times slower.
pub(super) const ROWS_PER_INSERT: usize = 500;

/// Placeholders for `count` rows of `width` parameters: `($1, $2), ($3, $4)` when `numbered` (PostgreSQL), else
/// `(?, ?), (?, ?)`. SQLite takes `$n` too, but sqlx then looks every parameter's name up among all of them, which
/// costs the square of their number; plain `?` is bound by position.
pub(super) fn placeholders(count: usize, width: usize, numbered: bool) -> String {
    let row = |i: usize| {
        let params: Vec<String> =
            (1..=width).map(|k| if numbered { format!("${}", i * width + k) } else { "?".into() }).collect();
        format!("({})", params.join(", "))
    };
    (0..count).map(row).collect::<Vec<_>>().join(", ")
}

/// `INSERT` of `count` leaf blocks in one statement.
pub(super) fn leaves_insert_sql(count: usize, numbered: bool) -> String {
    format!("INSERT INTO audit_leaves (block, hashes) VALUES {}", placeholders(count, 2, numbered))
}

/// `SELECT` of the leaf blocks `blocks`.
pub(super) fn leaves_select_sql(count: usize, numbered: bool) -> String {
    format!("SELECT block, hashes FROM audit_leaves WHERE block IN ({})", placeholders(count, 1, numbered))
}

/// `INSERT` of `count` nodes in one statement.
pub(super) fn ledger_insert_sql(count: usize, numbered: bool) -> String {
    format!("INSERT INTO audit_nodes (level, idx, hash) VALUES {}", placeholders(count, 3, numbered))
}
pub(super) const HEAD_INSERT: &str =
    "INSERT INTO audit_heads (tree_size, root_hash, issued_at, jws) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
pub(super) const HEAD_LATEST: &str = "SELECT * FROM audit_heads ORDER BY tree_size DESC LIMIT 1";
pub(super) const HEADS_PAGE: &str = "SELECT * FROM audit_heads WHERE tree_size > $1 ORDER BY tree_size LIMIT $2";

/// `SELECT` of the nodes `ids`: `(level, idx) IN ((?, ?), ...)`.
pub(super) fn ledger_nodes_sql(count: usize, numbered: bool) -> String {
    format!("SELECT level, idx, hash FROM audit_nodes WHERE (level, idx) IN ({})", placeholders(count, 2, numbered))
}

fn u64_of(value: i64, what: &str) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value}")))
}

fn hash_of(bytes: Vec<u8>, what: &str) -> StoreResult<[u8; 32]> {
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| StoreError::Corrupt(format!("{what}: not a SHA-256 hash")))
}

pub(super) fn head_of(row: &impl Cols) -> StoreResult<TreeHead> {
    Ok(TreeHead {
        tree_size: u64_of(row.int("tree_size")?, "tree size")?,
        root_hash: hash_of(row.bytes("root_hash")?, "root hash")?,
        issued_at: row.int("issued_at")?,
        jws: row.text("jws")?,
    })
}

pub(super) fn node_of(row: &impl Cols) -> StoreResult<((u8, u64), [u8; 32])> {
    let level = u8::try_from(row.int("level")?).map_err(|_| StoreError::Corrupt("node level".into()))?;
    Ok(((level, u64_of(row.int("idx")?, "node index")?), hash_of(row.bytes("hash")?, "node")?))
}

/// The most node ids one `SELECT` names (the proofs of a tree of 2^64 leaves need fewer).
pub(super) const MAX_NODE_QUERY: usize = 256;

/// Implements [`LedgerStore`] for a backend with `begin()` (its write transaction) and the read pool `$read`;
/// `$numbered`: whether its placeholders are `$n` (see [`placeholders`]).
macro_rules! ledger_store {
    ($store:ty, $read:ident, $numbered:expr) => {
        #[async_trait::async_trait]
        impl LedgerStore for $store {
            async fn ledger_size(&self) -> StoreResult<u64> {
                let row = sqlx::query(LEDGER_SIZE).fetch_one(&self.$read).await.map_err(db_error)?;
                u64::try_from(row.int("size")?).map_err(|_| StoreError::Corrupt("ledger size".into()))
            }

            async fn ledger_nodes(
                &self,
                ids: &[(u8, u64)],
            ) -> StoreResult<std::collections::HashMap<(u8, u64), [u8; 32]>> {
                let mut found = std::collections::HashMap::with_capacity(ids.len());
                for chunk in ids.chunks(MAX_NODE_QUERY) {
                    let sql = ledger_nodes_sql(chunk.len(), $numbered);
                    let mut query = sqlx::query(&sql);
                    for (level, idx) in chunk {
                        let idx = i64::try_from(*idx).map_err(|_| StoreError::NotFound("node".into()))?;
                        query = query.bind(i64::from(*level)).bind(idx);
                    }
                    for row in query.fetch_all(&self.$read).await.map_err(db_error)? {
                        let (id, hash) = node_of(&row)?;
                        found.insert(id, hash);
                    }
                }
                Ok(found)
            }

            async fn ledger_extend(&self, from: u64, to: u64, growth: &LedgerGrowth) -> StoreResult<bool> {
                let size = |n: u64| i64::try_from(n).map_err(|_| StoreError::Corrupt("ledger size".into()));
                let mut tx = self.begin().await?;
                let grown = sqlx::query(LEDGER_GROW).bind(size(to)?).bind(size(from)?).execute(&mut *tx).await;
                if grown.map_err(db_error)?.rows_affected() != 1 {
                    return Ok(false);
                }
                // Many rows per statement: a statement per block held the one write connection long enough, once
                // a second, to stall the audit writer's group commits behind it.
                for chunk in growth.leaf_blocks.chunks(ROWS_PER_INSERT) {
                    let sql = leaves_insert_sql(chunk.len(), $numbered);
                    let mut query = sqlx::query(&sql);
                    for (block, hashes) in chunk {
                        query = query.bind(size(*block)?).bind(hashes.as_slice());
                    }
                    query.execute(&mut *tx).await.map_err(conflict("ledger leaves"))?;
                }
                for chunk in growth.nodes.chunks(ROWS_PER_INSERT) {
                    let sql = ledger_insert_sql(chunk.len(), $numbered);
                    let mut query = sqlx::query(&sql);
                    for ((level, idx), hash) in chunk {
                        query = query.bind(i64::from(*level)).bind(size(*idx)?).bind(hash.as_slice());
                    }
                    query.execute(&mut *tx).await.map_err(conflict("ledger node"))?;
                }
                tx.commit().await.map_err(db_error)?;
                Ok(true)
            }

            async fn ledger_leaves(&self, blocks: &[u64]) -> StoreResult<std::collections::HashMap<u64, Vec<u8>>> {
                let mut found = std::collections::HashMap::with_capacity(blocks.len());
                for chunk in blocks.chunks(MAX_NODE_QUERY) {
                    let sql = leaves_select_sql(chunk.len(), $numbered);
                    let mut query = sqlx::query(&sql);
                    for block in chunk {
                        query = query.bind(i64::try_from(*block).map_err(|_| StoreError::NotFound("block".into()))?);
                    }
                    for row in query.fetch_all(&self.$read).await.map_err(db_error)? {
                        let block =
                            u64::try_from(row.int("block")?).map_err(|_| StoreError::Corrupt("block".into()))?;
                        found.insert(block, row.bytes("hashes")?);
                    }
                }
                Ok(found)
            }

            async fn add_head(&self, head: &TreeHead) -> StoreResult<()> {
                let size = i64::try_from(head.tree_size).map_err(|_| StoreError::Corrupt("tree size".into()))?;
                let mut tx = self.begin().await?;
                sqlx::query(HEAD_INSERT)
                    .bind(size)
                    .bind(head.root_hash.as_slice())
                    .bind(head.issued_at)
                    .bind(&head.jws)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                tx.commit().await.map_err(db_error)
            }

            async fn latest_head(&self) -> StoreResult<Option<TreeHead>> {
                let row = sqlx::query(HEAD_LATEST).fetch_optional(&self.$read).await.map_err(db_error)?;
                row.as_ref().map(head_of).transpose()
            }

            async fn heads(&self, after: u64, limit: u32) -> StoreResult<Vec<TreeHead>> {
                let after = i64::try_from(after).unwrap_or(i64::MAX);
                let query = sqlx::query(HEADS_PAGE).bind(after).bind(i64::from(limit));
                let rows = query.fetch_all(&self.$read).await.map_err(db_error)?;
                rows.iter().map(head_of).collect()
            }
        }
    };
}
pub(super) use ledger_store;

pub(super) const RISK_PROFILE: &str = "SELECT profile FROM risk_profiles WHERE subject = $1";
pub(super) const RISK_PROFILE_UPSERT: &str =
    "INSERT INTO risk_profiles (subject, profile, updated_at) VALUES ($1, $2, $3) \
     ON CONFLICT (subject) DO UPDATE SET profile = excluded.profile, updated_at = excluded.updated_at";

/// Implements [`RiskStore`] for a backend with `begin()` (its write transaction) and the read pool `$read`.
macro_rules! risk_store {
    ($store:ty, $read:ident) => {
        #[async_trait::async_trait]
        impl RiskStore for $store {
            async fn risk_profile(&self, subject: &str) -> StoreResult<Option<Vec<u8>>> {
                let row =
                    sqlx::query(RISK_PROFILE).bind(subject).fetch_optional(&self.$read).await.map_err(db_error)?;
                row.map(|r| r.bytes("profile")).transpose()
            }

            async fn save_risk_profiles(&self, profiles: &[(String, Vec<u8>)], now: i64) -> StoreResult<()> {
                if profiles.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin().await?;
                for (subject, profile) in profiles {
                    let query = sqlx::query(RISK_PROFILE_UPSERT).bind(subject).bind(profile.as_slice()).bind(now);
                    query.execute(&mut *tx).await.map_err(db_error)?;
                }
                tx.commit().await.map_err(db_error)
            }
        }
    };
}
pub(super) use risk_store;
