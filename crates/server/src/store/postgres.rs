//! The PostgreSQL store, for several server instances on one database. Every decision that must hold across
//! instances is made inside one transaction: a refresh rotation locks the token's row (`FOR UPDATE`), so two
//! instances rotating one token serialise and the second sees it used; counters are `failures + 1`; key state
//! changes are compare-and-set; leases are one upsert. Revocations are appended under a transaction-level
//! advisory lock, so their sequence order is their commit order (a reader following `seq` never skips a row that
//! committed late). Audit events are appended without a lock (every issuance writes one, on every instance) and
//! numbered afterwards, under a lock, into one sequence without gaps ([`PgStore::number_audit_events`]).
//!
//! Revocations and key changes are announced with `NOTIFY portcullis` in the transaction that makes them, so
//! other instances hear of them as they commit; [`PgStore::changes`] delivers them.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::PgConnection;
use tokio::sync::broadcast;

use super::rows::*;
use super::*;
use crate::oauth::refresh::decide;

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The `LISTEN/NOTIFY` channel.
const CHANNEL: &str = "portcullis";
/// Advisory lock ids (arbitrary, fixed): one per append-only sequence.
const REVOCATIONS_LOCK: i64 = 0x706f_7274_0001;
const AUDIT_LOCK: i64 = 0x706f_7274_0002;

/// The PostgreSQL store. Cloning shares the pool and the change stream.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    changes: broadcast::Sender<StoreChange>,
}

impl PgStore {
    /// Connects to a `postgres://` URL and runs the embedded migrations (under sqlx's migration lock, so
    /// instances starting together migrate once).
    pub async fn open(url: &str, options: &PoolOptions) -> StoreResult<PgStore> {
        let timeout = Duration::from_secs(options.statement_timeout.max(1));
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad database URL: {e}")))?
            .application_name("portcullis")
            .options([("statement_timeout", format!("{}ms", timeout.as_millis()))]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .acquire_timeout(timeout)
            .connect_with(connect)
            .await
            .map_err(db_error)?;
        MIGRATIONS.run(&pool).await.map_err(|e| StoreError::Unavailable(format!("migrations failed: {e}")))?;
        let (changes, _) = broadcast::channel(256);
        tokio::spawn(listen(pool.clone(), changes.clone()));
        Ok(PgStore { pool, changes })
    }

    /// Gives the committed audit events that have no sequence number yet the next numbers, in the order they
    /// were appended, under a lock so that two instances never hand out the same number. A row whose transaction
    /// commits later is numbered by a later call, after everything numbered before it: no gaps, no duplicates,
    /// and nothing skipped. Returns how many were numbered.
    pub async fn number_audit_events(&self) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(AUDIT_LOCK).execute(&mut *tx).await.map_err(db_error)?;
        let numbered = sqlx::query(
            "WITH last AS (SELECT COALESCE(MAX(seq), 0) AS m FROM audit_events), \
             pending AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM audit_events \
                         WHERE seq IS NULL ORDER BY id LIMIT 100000) \
             UPDATE audit_events a SET seq = last.m + pending.n FROM last, pending WHERE a.id = pending.id",
        )
        .execute(&mut *tx)
        .await
        .map_err(db_error)?
        .rows_affected();
        tx.commit().await.map_err(db_error)?;
        Ok(numbered)
    }

    /// Closes the pool, waiting for running statements (graceful shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Creates an empty database `name` (dropping one of that name first) on the server of `url`, and returns
    /// its URL. For tests and benchmarks, which each need a database of their own on a shared server.
    pub async fn scratch_database(url: &str, name: &str) -> StoreResult<String> {
        use sqlx::{Connection, Executor};
        if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return Err(StoreError::Unavailable(format!("{name:?} is not a plain database name")));
        }
        let mut admin = PgConnection::connect(url).await.map_err(db_error)?;
        admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await.map_err(db_error)?;
        admin.execute(format!("CREATE DATABASE {name}").as_str()).await.map_err(db_error)?;
        let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
        let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
        Ok(match query {
            Some(q) => format!("{server}/{name}?{q}"),
            None => format!("{server}/{name}"),
        })
    }

    async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.pool.begin().await.map_err(db_error)
    }

    async fn exec(&self, sql: &str, what: &str, binds: &[Bind<'_>]) -> StoreResult<u64> {
        Ok(bind_all(sqlx::query(sql), binds).execute(&self.pool).await.map_err(conflict(what))?.rows_affected())
    }

    /// Runs one statement and announces `change` in the same transaction (delivered when it commits).
    async fn exec_announced(&self, sql: &str, what: &str, binds: &[Bind<'_>], change: &str) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let n = bind_all(sqlx::query(sql), binds).execute(&mut *tx).await.map_err(conflict(what))?.rows_affected();
        if n > 0 {
            announce(&mut tx, change).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(n)
    }
}

enum Bind<'a> {
    Text(&'a str),
    Int(i64),
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    binds: &[Bind<'q>],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    for b in binds {
        q = match b {
            Bind::Text(t) => q.bind(*t),
            Bind::Int(i) => q.bind(*i),
        };
    }
    q
}

fn bind_value<'q>(
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    value: &'q snapshot::Bound,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    use snapshot::Bound;
    match value {
        Bound::Text(t) => q.bind(t.as_deref()),
        Bound::Int(i) => q.bind(*i),
        Bound::Flag(b) => q.bind(*b),
        Bound::Bytes(b) => q.bind(b.as_deref()),
    }
}

async fn announce(conn: &mut PgConnection, change: &str) -> StoreResult<()> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(change).execute(conn).await.map_err(db_error)?;
    Ok(())
}

/// Follows `NOTIFY portcullis` on a dedicated connection and forwards each change. When the connection drops,
/// notifications sent meanwhile are lost, so a `Resync` is sent once it is back; while the database is down the
/// listener retries every second.
async fn listen(pool: PgPool, changes: broadcast::Sender<StoreChange>) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "change listener cannot connect; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                if pool.is_closed() {
                    return;
                }
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::debug!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let _ = changes.send(StoreChange::Resync);
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => {
                    let change = match n.payload() {
                        "revocation" => StoreChange::Revocation,
                        "keys" => StoreChange::Keys,
                        _ => StoreChange::Resync,
                    };
                    let _ = changes.send(change);
                }
                // The connection was lost; the next try_recv reconnects, and a resync covers the gap.
                Ok(None) => {
                    tracing::warn!("lost the database notification connection; resyncing when it returns");
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "change listener failed; reconnecting");
                    break;
                }
            }
        }
        if pool.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const USER_COLUMNS: &str = "u.id, u.name, u.password_hash, u.disabled, u.failures, u.last_failure_at, u.created_at, \
     (SELECT string_agg(ur.role, ' ') FROM user_roles ur WHERE ur.user_id = u.id) AS roles, \
     (SELECT string_agg(r.scopes, ' ') FROM user_roles ur JOIN roles r ON r.name = ur.role \
      WHERE ur.user_id = u.id) AS scopes";

async fn rotate(
    tx: &mut PgConnection,
    presented: &SecretDigest,
    successor: &SecretDigest,
    rules: &RefreshRules,
    now: i64,
) -> StoreResult<RotateOutcome> {
    // The row lock makes concurrent rotations of one token, on any instance, take turns.
    let row = sqlx::query(&format!("{REFRESH_SELECT} WHERE t.digest = $1 FOR UPDATE OF t"))
        .bind(presented.as_bytes().as_slice())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
    let Some(row) = row else { return Ok(RotateOutcome::Unknown) };
    let (family, state) = refresh_of(&row)?;
    let decision = decide(&state, rules, now);
    match decision {
        Decision::Rotate => {
            sqlx::query("UPDATE refresh_tokens SET used_at = $1 WHERE digest = $2 AND used_at IS NULL")
                .bind(now)
                .bind(presented.as_bytes().as_slice())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            sqlx::query("INSERT INTO refresh_tokens (digest, family_id, issued_at) VALUES ($1, $2, $3)")
                .bind(successor.as_bytes().as_slice())
                .bind(&family.id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(conflict("refresh token"))?;
            Ok(RotateOutcome::Rotated(family))
        }
        Decision::RevokeFamily => {
            sqlx::query(
                "UPDATE refresh_families SET revoked_at = $1, revoked_reason = 'reuse' \
                 WHERE id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(&family.id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            Ok(RotateOutcome::Refused(decision, Some(family)))
        }
        _ => Ok(RotateOutcome::Refused(decision, Some(family))),
    }
}

code_flow_store!(PgStore, pool, pool);
ledger_store!(PgStore, pool, true);
risk_store!(PgStore, pool);
list_store!(PgStore, pool, USER_COLUMNS);

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db_error)?;
        Ok(())
    }

    async fn add_role(&self, role: &Role, now: i64) -> StoreResult<()> {
        let scopes = role.scopes.to_string();
        let binds = [Bind::Text(&role.name), Bind::Text(&scopes), Bind::Int(now)];
        let what = format!("role {}", role.name);
        self.exec("INSERT INTO roles (name, scopes, created_at) VALUES ($1, $2, $3)", &what, &binds).await?;
        Ok(())
    }

    async fn remove_role(&self, name: &str) -> StoreResult<()> {
        let n = self.exec("DELETE FROM roles WHERE name = $1", name, &[Bind::Text(name)]).await?;
        found(n, &format!("role {name}"))
    }

    async fn add_user(&self, user: &User) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO users (id, name, password_hash, disabled, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&user.id)
            .bind(&user.name)
            .bind(&user.password_hash)
            .bind(user.disabled)
            .bind(user.created_at)
            .execute(&mut *tx)
            .await
            .map_err(conflict(&format!("user {}", user.name)))?;
        for role in &user.roles {
            let exists = sqlx::query("SELECT 1 FROM roles WHERE name = $1")
                .bind(role)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
            if exists.is_none() {
                return Err(StoreError::NotFound(format!("role {role}")));
            }
            sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(&user.id)
                .bind(role)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn find_user_by_name(&self, name: &str) -> StoreResult<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.name = $1");
        let row = sqlx::query(&sql).bind(name).fetch_optional(&self.pool).await.map_err(db_error)?;
        row.as_ref().map(user_of).transpose()
    }

    async fn find_user(&self, id: &str) -> StoreResult<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await.map_err(db_error)?;
        row.as_ref().map(user_of).transpose()
    }

    async fn remove_user(&self, name: &str) -> StoreResult<()> {
        let n = self.exec("DELETE FROM users WHERE name = $1", name, &[Bind::Text(name)]).await?;
        found(n, &format!("user {name}"))
    }

    async fn set_user_disabled(&self, name: &str, disabled: bool) -> StoreResult<()> {
        let n = sqlx::query("UPDATE users SET disabled = $1 WHERE name = $2")
            .bind(disabled)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(db_error)?
            .rows_affected();
        found(n, &format!("user {name}"))
    }

    async fn set_user_password(&self, name: &str, password_hash: &str) -> StoreResult<()> {
        let binds = [Bind::Text(password_hash), Bind::Text(name)];
        let sql = "UPDATE users SET password_hash = $1, failures = 0 WHERE name = $2";
        let n = self.exec(sql, name, &binds).await?;
        found(n, &format!("user {name}"))
    }

    async fn record_login_failure(&self, user_id: &str, now: i64) -> StoreResult<u32> {
        let row = sqlx::query(
            "UPDATE users SET failures = failures + 1, last_failure_at = $1 WHERE id = $2 RETURNING failures",
        )
        .bind(now)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .ok_or_else(|| StoreError::NotFound(format!("user {user_id}")))?;
        Ok(u32::try_from(row.int("failures")?).unwrap_or(u32::MAX))
    }

    async fn reset_login_failures(&self, user_id: &str) -> StoreResult<()> {
        let sql = "UPDATE users SET failures = 0 WHERE id = $1 AND failures <> 0";
        self.exec(sql, user_id, &[Bind::Text(user_id)]).await?;
        Ok(())
    }

    async fn add_client(&self, client: &Client) -> StoreResult<()> {
        client_insert!(client).execute(&self.pool).await.map_err(conflict(&format!("client {}", client.id)))?;
        Ok(())
    }

    async fn find_client(&self, id: &str) -> StoreResult<Option<Client>> {
        let row = sqlx::query("SELECT * FROM clients WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.as_ref().map(client_of).transpose()
    }

    async fn remove_client(&self, id: &str) -> StoreResult<()> {
        let n = self.exec("DELETE FROM clients WHERE id = $1", id, &[Bind::Text(id)]).await?;
        found(n, &format!("client {id}"))
    }

    async fn set_client_disabled(&self, id: &str, disabled: bool) -> StoreResult<()> {
        let n = sqlx::query("UPDATE clients SET disabled = $1 WHERE id = $2")
            .bind(disabled)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_error)?
            .rows_affected();
        found(n, &format!("client {id}"))
    }

    async fn use_assertion(&self, client_id: &str, jti: &str, expires_at: i64) -> StoreResult<bool> {
        let sql = "INSERT INTO used_assertions (client_id, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
        let binds = [Bind::Text(client_id), Bind::Text(jti), Bind::Int(expires_at)];
        Ok(self.exec(sql, "assertion", &binds).await? == 1)
    }

    async fn list_keys(&self) -> StoreResult<Vec<StoredKey>> {
        let rows = sqlx::query("SELECT * FROM signing_keys ORDER BY created_at, kid")
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(key_of).collect()
    }

    async fn insert_key(&self, key: &StoredKey) -> StoreResult<()> {
        let r = &key.record;
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, state, created_at, activate_at, activated_at, retired_at, \
             public_jwk, sealed_private) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&r.kid)
        .bind(&key.alg)
        .bind(r.state.as_str())
        .bind(r.created_at)
        .bind(r.activate_at)
        .bind(r.activated_at)
        .bind(r.retired_at)
        .bind(&key.public_jwk)
        .bind(&key.sealed_private)
        .execute(&mut *tx)
        .await
        .map_err(conflict(&format!("key {}", r.kid)))?;
        announce(&mut tx, "keys").await?;
        tx.commit().await.map_err(db_error)
    }

    async fn set_key_state(&self, kid: &str, from: KeyState, to: KeyState, now: i64) -> StoreResult<bool> {
        let column = match to {
            KeyState::Active => "activated_at",
            KeyState::Retired => "retired_at",
            KeyState::Revoked => "revoked_at",
            KeyState::Pending => "created_at",
        };
        let sql = format!("UPDATE signing_keys SET state = $1, {column} = $2 WHERE kid = $3 AND state = $4");
        let binds = [Bind::Text(to.as_str()), Bind::Int(now), Bind::Text(kid), Bind::Text(from.as_str())];
        Ok(self.exec_announced(&sql, kid, &binds, "keys").await? == 1)
    }

    async fn delete_key(&self, kid: &str) -> StoreResult<()> {
        self.exec_announced("DELETE FROM signing_keys WHERE kid = $1", kid, &[Bind::Text(kid)], "keys").await?;
        Ok(())
    }

    async fn start_family(&self, family: &RefreshFamily, first: &SecretDigest) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        family_insert!(family).execute(&mut *tx).await.map_err(conflict("refresh family"))?;
        sqlx::query("INSERT INTO refresh_tokens (digest, family_id, issued_at) VALUES ($1, $2, $3)")
            .bind(first.as_bytes().as_slice())
            .bind(&family.id)
            .bind(family.created_at)
            .execute(&mut *tx)
            .await
            .map_err(conflict("refresh token"))?;
        tx.commit().await.map_err(db_error)
    }

    async fn rotate_refresh(
        &self,
        presented: &SecretDigest,
        successor: &SecretDigest,
        rules: &RefreshRules,
        now: i64,
    ) -> StoreResult<RotateOutcome> {
        let mut tx = self.begin().await?;
        let outcome = rotate(&mut tx, presented, successor, rules, now).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(outcome)
    }

    async fn find_refresh(&self, token: &SecretDigest) -> StoreResult<Option<(RefreshFamily, RefreshState)>> {
        let row = sqlx::query(&format!("{REFRESH_SELECT} WHERE t.digest = $1"))
            .bind(token.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.as_ref().map(refresh_of).transpose()
    }

    async fn revoke_family(&self, family_id: &str, reason: &str, now: i64) -> StoreResult<bool> {
        let sql =
            "UPDATE refresh_families SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL";
        let binds = [Bind::Int(now), Bind::Text(reason), Bind::Text(family_id)];
        Ok(self.exec(sql, family_id, &binds).await? == 1)
    }

    async fn revoke_user_families(&self, user_id: &str, reason: &str, now: i64) -> StoreResult<u64> {
        let sql = "UPDATE refresh_families SET revoked_at = $1, revoked_reason = $2 \
                   WHERE user_id = $3 AND revoked_at IS NULL";
        self.exec(sql, user_id, &[Bind::Int(now), Bind::Text(reason), Bind::Text(user_id)]).await
    }

    async fn add_revocation(&self, r: &Revocation) -> StoreResult<i64> {
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(REVOCATIONS_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let row = sqlx::query(
            "INSERT INTO revocations (kind, value, issued_before, expires_at, created_at, reason) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq",
        )
        .bind(r.kind.as_str())
        .bind(&r.value)
        .bind(r.issued_before)
        .bind(r.expires_at)
        .bind(r.created_at)
        .bind(&r.reason)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        let seq = row.int("seq")?;
        announce(&mut tx, "revocation").await?;
        tx.commit().await.map_err(db_error)?;
        Ok(seq)
    }

    async fn revocations_since(&self, after: i64, now: i64, limit: u32) -> StoreResult<Vec<Revocation>> {
        let rows = sqlx::query("SELECT * FROM revocations WHERE seq > $1 AND expires_at > $2 ORDER BY seq LIMIT $3")
            .bind(after)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(revocation_of).collect()
    }

    async fn append_audit(&self, events: &[AuditEvent]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut ats = Vec::with_capacity(events.len());
        let mut kinds = Vec::with_capacity(events.len());
        let mut subjects = Vec::with_capacity(events.len());
        let mut clients = Vec::with_capacity(events.len());
        let mut jtis = Vec::with_capacity(events.len());
        let mut details = Vec::with_capacity(events.len());
        for e in events {
            ats.push(e.at);
            kinds.push(e.kind);
            subjects.push(e.subject.as_deref());
            clients.push(e.client_id.as_deref());
            jtis.push(e.jti.as_deref());
            details.push(e.detail.as_str());
        }
        // One statement, one implicit transaction: the batch commits whole, in order of id.
        sqlx::query(
            "INSERT INTO audit_events (at, kind, subject, client_id, jti, detail) \
             SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[])",
        )
        .bind(&ats)
        .bind(&kinds)
        .bind(&subjects)
        .bind(&clients)
        .bind(&jtis)
        .bind(&details)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn audit_since(&self, after: i64, limit: u32) -> StoreResult<Vec<StoredAuditEvent>> {
        self.number_audit_events().await?;
        let rows = sqlx::query("SELECT * FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(audit_of).collect()
    }

    async fn purge_expired(&self, now: i64, rules: &RefreshRules) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let mut removed = 0;
        for (sql, at) in PURGES {
            let at = at.at(now, rules);
            removed += sqlx::query(sql).bind(at).execute(&mut *tx).await.map_err(db_error)?.rows_affected();
        }
        tx.commit().await.map_err(db_error)?;
        Ok(removed)
    }

    async fn acquire_lease(&self, name: &str, holder: &str, now: i64, until: i64) -> StoreResult<bool> {
        let sql = "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
             WHERE leases.until <= $4 OR leases.holder = excluded.holder";
        let binds = [Bind::Text(name), Bind::Text(holder), Bind::Int(until), Bind::Int(now)];
        Ok(self.exec(sql, name, &binds).await? == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        let binds = [Bind::Text(name), Bind::Text(holder)];
        self.exec("DELETE FROM leases WHERE name = $1 AND holder = $2", name, &binds).await?;
        Ok(())
    }

    async fn export(&self) -> StoreResult<snapshot::Snapshot> {
        self.number_audit_events().await?;
        let mut tx = self.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let mut tables = Vec::new();
        for i in 0..snapshot::table_count() {
            let rows = sqlx::query(&snapshot::select_sql(i)).fetch_all(&mut *tx).await.map_err(db_error)?;
            let values = rows.iter().map(|row| snapshot::row_values(i, row)).collect::<StoreResult<_>>()?;
            tables.push(snapshot::table_of(i, values));
        }
        tx.commit().await.map_err(db_error)?;
        Ok(snapshot::Snapshot { format: snapshot::FORMAT, tables })
    }

    async fn import(&self, data: &snapshot::Snapshot) -> StoreResult<()> {
        let tables = snapshot::bound_rows(data)?;
        let mut tx = self.begin().await?;
        // Nobody else writes these tables while the snapshot goes in.
        sqlx::query("LOCK TABLE roles, users, clients, signing_keys, revocations, audit_events IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        for table in snapshot::MUST_BE_EMPTY {
            let row = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
            if row.int("n")? > 0 {
                return Err(StoreError::Conflict(format!("data in this store ({table} is not empty)")));
            }
        }
        for (i, rows) in &tables {
            let sql = snapshot::insert_sql(*i);
            for row in rows {
                let q = row.iter().fold(sqlx::query(&sql), bind_value);
                q.execute(&mut *tx).await.map_err(conflict("a snapshot row"))?;
            }
        }
        // Revocations keep their numbers; the next one must come after them.
        sqlx::query(
            "SELECT setval(pg_get_serial_sequence('revocations', 'seq'), \
             GREATEST((SELECT MAX(seq) FROM revocations), 1), (SELECT MAX(seq) FROM revocations) IS NOT NULL)",
        )
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        announce(&mut tx, "resync").await?;
        tx.commit().await.map_err(db_error)
    }

    fn changes(&self) -> Option<broadcast::Receiver<StoreChange>> {
        Some(self.changes.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::suite;
    use super::*;

    /// The environment variable naming the PostgreSQL server for tests (`.ci/run` sets it).
    pub const TEST_URL_VAR: &str = "PORTCULLIS_TEST_POSTGRES_URL";

    async fn fresh(name: &str) -> Option<Arc<dyn Store>> {
        let Ok(url) = std::env::var(TEST_URL_VAR) else {
            eprintln!("SKIPPED: {TEST_URL_VAR} is not set; the PostgreSQL store test {name} did not run");
            return None;
        };
        let db = format!("portcullis_store_{name}_{}", std::process::id());
        let url = PgStore::scratch_database(&url, &db).await.unwrap();
        Some(Arc::new(PgStore::open(&url, &PoolOptions::default()).await.unwrap()))
    }

    macro_rules! on_postgres {
        ($($name:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some(store) = fresh(stringify!($name)).await {
                    suite::$name(store).await;
                }
            }
        )*};
    }

    on_postgres!(
        accounts_and_clients,
        counters_are_atomic,
        refresh_rotation,
        keys_revocations_and_audit,
        leases,
        revocations_are_read_in_commit_order,
        audit_sequence_has_no_gaps,
        authorization_code_flow,
        ledger_grows_once_under_concurrency,
        ledger_follows_the_writer,
        risk_profiles,
    );

    /// The migration path: a SQLite deployment moved into PostgreSQL.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn snapshot_from_sqlite_round_trip() {
        let Some(to) = fresh("import").await else { return };
        let dir = tempfile::Builder::new().prefix("portcullis-store-pgexport-").tempdir().unwrap();
        let from =
            super::super::sqlite::SqliteStore::open(&format!("sqlite://{}/p.db", dir.path().display())).await.unwrap();
        suite::snapshot_round_trip(Arc::new(from), to).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changes_are_announced_to_other_instances() {
        let Ok(url) = std::env::var(TEST_URL_VAR) else {
            eprintln!("SKIPPED: {TEST_URL_VAR} is not set; the PostgreSQL notification test did not run");
            return;
        };
        let url =
            PgStore::scratch_database(&url, &format!("portcullis_store_notify_{}", std::process::id())).await.unwrap();
        let a = PgStore::open(&url, &PoolOptions::default()).await.unwrap();
        let b = PgStore::open(&url, &PoolOptions::default()).await.unwrap();
        let mut heard = b.changes().unwrap();
        // The listener connects in the background and says Resync once it listens.
        let first = tokio::time::timeout(Duration::from_secs(10), heard.recv()).await.unwrap().unwrap();
        assert_eq!(first, StoreChange::Resync);
        let r = Revocation {
            seq: 0,
            kind: RevocationKind::Session,
            value: "s".into(),
            issued_before: 1,
            expires_at: 100,
            created_at: 1,
            reason: "test".into(),
        };
        a.add_revocation(&r).await.unwrap();
        let change = tokio::time::timeout(Duration::from_secs(2), heard.recv()).await.unwrap().unwrap();
        assert_eq!(change, StoreChange::Revocation);
        assert!(!a.set_key_state("none", KeyState::Active, KeyState::Retired, 1).await.unwrap());
        a.delete_key("none").await.unwrap();
        assert!(heard.try_recv().is_err(), "a change that changed nothing is not announced");
    }
}
