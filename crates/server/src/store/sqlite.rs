//! The embedded store: SQLite in WAL mode through `sqlx`. Reads use a small pool; every write goes through
//! one connection with `BEGIN IMMEDIATE`, so SQLite's single writer is taken up front and a read-then-write
//! step (refresh rotation) can never be interleaved with another writer.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::rows::*;
use super::*;
use crate::oauth::refresh::decide;

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The SQLite store. Cloning shares the pools.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
    rotations: mpsc::Sender<RotateJob>,
}

/// One refresh rotation waiting for the next group commit.
#[derive(Debug)]
struct RotateJob {
    presented: SecretDigest,
    successor: SecretDigest,
    rules: RefreshRules,
    now: i64,
    reply: oneshot::Sender<StoreResult<RotateOutcome>>,
}

/// The most rotations one transaction takes.
const MAX_ROTATION_BATCH: usize = 128;

impl SqliteStore {
    /// Opens (creating if missing) the database at a `sqlite://PATH` URL and runs the embedded migrations.
    pub async fn open(url: &str) -> StoreResult<SqliteStore> {
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL loses no committed transaction on a process crash, only on power loss;
            // FULL closes that gap too, at a cost the group-committed writer absorbs.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(db_error)?;
        MIGRATIONS.run(&write).await.map_err(|e| StoreError::Unavailable(format!("migrations failed: {e}")))?;
        let read = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.read_only(true))
            .await
            .map_err(db_error)?;
        let (rotations, jobs) = mpsc::channel(4 * MAX_ROTATION_BATCH);
        tokio::spawn(rotation_writer(write.clone(), jobs));
        Ok(SqliteStore { read, write, rotations })
    }

    /// Closes both pools, waiting for running statements (graceful shutdown).
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }

    async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)
    }

    async fn exec(&self, sql: &str, what: &str, binds: &[Bind<'_>]) -> StoreResult<u64> {
        let mut q = sqlx::query(sql);
        for b in binds {
            q = match b {
                Bind::Text(t) => q.bind(*t),
                Bind::Int(i) => q.bind(*i),
            };
        }
        Ok(q.execute(&self.write).await.map_err(conflict(what))?.rows_affected())
    }
}

enum Bind<'a> {
    Text(&'a str),
    Int(i64),
}

/// Group commit for refresh rotations: every rotation waiting when a transaction starts shares it (and its
/// fsync). Each is still judged and applied in order inside the one transaction, so two rotations of the same
/// token in one batch yield one `Rotated` and one refusal, exactly as in two transactions.
async fn rotation_writer(pool: SqlitePool, mut jobs: mpsc::Receiver<RotateJob>) {
    let mut batch = Vec::with_capacity(MAX_ROTATION_BATCH);
    while jobs.recv_many(&mut batch, MAX_ROTATION_BATCH).await > 0 {
        let result = rotate_batch(&pool, &batch).await;
        match result {
            Ok(outcomes) => {
                for (job, outcome) in batch.drain(..).zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                let why = e.to_string();
                tracing::error!(error = %why, rotations = batch.len(), "refresh rotations failed; none applied");
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(StoreError::Unavailable(why.clone())));
                }
            }
        }
    }
}

async fn rotate_batch(pool: &SqlitePool, batch: &[RotateJob]) -> StoreResult<Vec<RotateOutcome>> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        outcomes.push(rotate_one(&mut tx, job).await?);
    }
    tx.commit().await.map_err(db_error)?;
    Ok(outcomes)
}

async fn rotate_one(conn: &mut SqliteConnection, job: &RotateJob) -> StoreResult<RotateOutcome> {
    let row = sqlx::query(&format!("{REFRESH_SELECT} WHERE t.digest = ?"))
        .bind(job.presented.as_bytes().as_slice())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?;
    let Some(row) = row else { return Ok(RotateOutcome::Unknown) };
    let (family, state) = refresh_of(&row)?;
    let decision = decide(&state, &job.rules, job.now);
    match decision {
        Decision::Rotate => {
            sqlx::query("UPDATE refresh_tokens SET used_at = ? WHERE digest = ? AND used_at IS NULL")
                .bind(job.now)
                .bind(job.presented.as_bytes().as_slice())
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
            sqlx::query("INSERT INTO refresh_tokens (digest, family_id, issued_at) VALUES (?, ?, ?)")
                .bind(job.successor.as_bytes().as_slice())
                .bind(&family.id)
                .bind(job.now)
                .execute(&mut *conn)
                .await
                .map_err(conflict("refresh token"))?;
            Ok(RotateOutcome::Rotated(family))
        }
        Decision::RevokeFamily => {
            sqlx::query(
                "UPDATE refresh_families SET revoked_at = ?, revoked_reason = 'reuse' WHERE id = ? AND revoked_at IS NULL",
            )
            .bind(job.now)
            .bind(&family.id)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
            Ok(RotateOutcome::Refused(decision, Some(family)))
        }
        _ => Ok(RotateOutcome::Refused(decision, Some(family))),
    }
}

const USER_COLUMNS: &str = "u.id, u.name, u.password_hash, u.disabled, u.failures, u.last_failure_at, u.created_at, \
     (SELECT group_concat(ur.role, ' ') FROM user_roles ur WHERE ur.user_id = u.id) AS roles, \
     (SELECT group_concat(r.scopes, ' ') FROM user_roles ur JOIN roles r ON r.name = ur.role \
      WHERE ur.user_id = u.id) AS scopes";

code_flow_store!(SqliteStore, write, read);
ledger_store!(SqliteStore, read, false);
risk_store!(SqliteStore, read);
list_store!(SqliteStore, read, USER_COLUMNS);

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.read).await.map_err(db_error)?;
        Ok(())
    }

    async fn add_role(&self, role: &Role, now: i64) -> StoreResult<()> {
        let scopes = role.scopes.to_string();
        let binds = [Bind::Text(&role.name), Bind::Text(&scopes), Bind::Int(now)];
        let what = format!("role {}", role.name);
        self.exec("INSERT INTO roles (name, scopes, created_at) VALUES (?, ?, ?)", &what, &binds).await?;
        Ok(())
    }

    async fn remove_role(&self, name: &str) -> StoreResult<()> {
        let n = self.exec("DELETE FROM roles WHERE name = ?", name, &[Bind::Text(name)]).await?;
        found(n, &format!("role {name}"))
    }

    async fn add_user(&self, user: &User) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO users (id, name, password_hash, disabled, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(&user.id)
            .bind(&user.name)
            .bind(&user.password_hash)
            .bind(user.disabled)
            .bind(user.created_at)
            .execute(&mut *tx)
            .await
            .map_err(conflict(&format!("user {}", user.name)))?;
        for role in &user.roles {
            let exists = sqlx::query("SELECT 1 FROM roles WHERE name = ?")
                .bind(role)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
            if exists.is_none() {
                return Err(StoreError::NotFound(format!("role {role}")));
            }
            sqlx::query("INSERT OR IGNORE INTO user_roles (user_id, role) VALUES (?, ?)")
                .bind(&user.id)
                .bind(role)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn find_user_by_name(&self, name: &str) -> StoreResult<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.name = ?");
        let row = sqlx::query(&sql).bind(name).fetch_optional(&self.read).await.map_err(db_error)?;
        row.as_ref().map(user_of).transpose()
    }

    async fn find_user(&self, id: &str) -> StoreResult<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = ?");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.read).await.map_err(db_error)?;
        row.as_ref().map(user_of).transpose()
    }

    async fn remove_user(&self, name: &str) -> StoreResult<()> {
        let n = self.exec("DELETE FROM users WHERE name = ?", name, &[Bind::Text(name)]).await?;
        found(n, &format!("user {name}"))
    }

    async fn set_user_disabled(&self, name: &str, disabled: bool) -> StoreResult<()> {
        let binds = [Bind::Int(i64::from(disabled)), Bind::Text(name)];
        let n = self.exec("UPDATE users SET disabled = ? WHERE name = ?", name, &binds).await?;
        found(n, &format!("user {name}"))
    }

    async fn set_user_password(&self, name: &str, password_hash: &str) -> StoreResult<()> {
        let binds = [Bind::Text(password_hash), Bind::Text(name)];
        let sql = "UPDATE users SET password_hash = ?, failures = 0 WHERE name = ?";
        let n = self.exec(sql, name, &binds).await?;
        found(n, &format!("user {name}"))
    }

    async fn record_login_failure(&self, user_id: &str, now: i64) -> StoreResult<u32> {
        let row = sqlx::query(
            "UPDATE users SET failures = failures + 1, last_failure_at = ? WHERE id = ? RETURNING failures",
        )
        .bind(now)
        .bind(user_id)
        .fetch_optional(&self.write)
        .await
        .map_err(db_error)?
        .ok_or_else(|| StoreError::NotFound(format!("user {user_id}")))?;
        let failures: i64 = row.try_get(0).map_err(db_error)?;
        Ok(u32::try_from(failures).unwrap_or(u32::MAX))
    }

    async fn reset_login_failures(&self, user_id: &str) -> StoreResult<()> {
        let sql = "UPDATE users SET failures = 0 WHERE id = ? AND failures <> 0";
        self.exec(sql, user_id, &[Bind::Text(user_id)]).await?;
        Ok(())
    }

    async fn add_client(&self, client: &Client) -> StoreResult<()> {
        client_insert!(client).execute(&self.write).await.map_err(conflict(&format!("client {}", client.id)))?;
        Ok(())
    }

    async fn find_client(&self, id: &str) -> StoreResult<Option<Client>> {
        let row = sqlx::query("SELECT * FROM clients WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)?;
        row.as_ref().map(client_of).transpose()
    }

    async fn remove_client(&self, id: &str) -> StoreResult<()> {
        let n = self.exec("DELETE FROM clients WHERE id = ?", id, &[Bind::Text(id)]).await?;
        found(n, &format!("client {id}"))
    }

    async fn set_client_disabled(&self, id: &str, disabled: bool) -> StoreResult<()> {
        let binds = [Bind::Int(i64::from(disabled)), Bind::Text(id)];
        let n = self.exec("UPDATE clients SET disabled = ? WHERE id = ?", id, &binds).await?;
        found(n, &format!("client {id}"))
    }

    async fn use_assertion(&self, client_id: &str, jti: &str, expires_at: i64) -> StoreResult<bool> {
        let sql = "INSERT INTO used_assertions (client_id, jti, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING";
        let binds = [Bind::Text(client_id), Bind::Text(jti), Bind::Int(expires_at)];
        Ok(self.exec(sql, "assertion", &binds).await? == 1)
    }

    async fn list_keys(&self) -> StoreResult<Vec<StoredKey>> {
        let rows = sqlx::query("SELECT * FROM signing_keys ORDER BY created_at, kid")
            .fetch_all(&self.read)
            .await
            .map_err(db_error)?;
        rows.iter().map(key_of).collect()
    }

    async fn insert_key(&self, key: &StoredKey) -> StoreResult<()> {
        let r = &key.record;
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, state, created_at, activate_at, activated_at, retired_at, \
             public_jwk, sealed_private) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .execute(&self.write)
        .await
        .map_err(conflict(&format!("key {}", r.kid)))?;
        Ok(())
    }

    async fn set_key_state(&self, kid: &str, from: KeyState, to: KeyState, now: i64) -> StoreResult<bool> {
        let column = match to {
            KeyState::Active => "activated_at",
            KeyState::Retired => "retired_at",
            KeyState::Revoked => "revoked_at",
            KeyState::Pending => "created_at",
        };
        let sql = format!("UPDATE signing_keys SET state = ?, {column} = ? WHERE kid = ? AND state = ?");
        let binds = [Bind::Text(to.as_str()), Bind::Int(now), Bind::Text(kid), Bind::Text(from.as_str())];
        Ok(self.exec(&sql, kid, &binds).await? == 1)
    }

    async fn delete_key(&self, kid: &str) -> StoreResult<()> {
        self.exec("DELETE FROM signing_keys WHERE kid = ?", kid, &[Bind::Text(kid)]).await?;
        Ok(())
    }

    async fn start_family(&self, family: &RefreshFamily, first: &SecretDigest) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        family_insert!(family).execute(&mut *tx).await.map_err(conflict("refresh family"))?;
        sqlx::query("INSERT INTO refresh_tokens (digest, family_id, issued_at) VALUES (?, ?, ?)")
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
        let (reply, answer) = oneshot::channel();
        let job = RotateJob { presented: *presented, successor: *successor, rules: *rules, now, reply };
        let stopped = || StoreError::Unavailable("the rotation writer stopped".into());
        self.rotations.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn find_refresh(&self, token: &SecretDigest) -> StoreResult<Option<(RefreshFamily, RefreshState)>> {
        let row = sqlx::query(&format!("{REFRESH_SELECT} WHERE t.digest = ?"))
            .bind(token.as_bytes().as_slice())
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)?;
        row.as_ref().map(refresh_of).transpose()
    }

    async fn revoke_family(&self, family_id: &str, reason: &str, now: i64) -> StoreResult<bool> {
        let sql = "UPDATE refresh_families SET revoked_at = ?, revoked_reason = ? WHERE id = ? AND revoked_at IS NULL";
        let binds = [Bind::Int(now), Bind::Text(reason), Bind::Text(family_id)];
        Ok(self.exec(sql, family_id, &binds).await? == 1)
    }

    async fn revoke_user_families(&self, user_id: &str, reason: &str, now: i64) -> StoreResult<u64> {
        let sql = "UPDATE refresh_families SET revoked_at = ?, revoked_reason = ? \
                   WHERE user_id = ? AND revoked_at IS NULL";
        self.exec(sql, user_id, &[Bind::Int(now), Bind::Text(reason), Bind::Text(user_id)]).await
    }

    async fn add_revocation(&self, r: &Revocation) -> StoreResult<i64> {
        let row = sqlx::query(
            "INSERT INTO revocations (kind, value, issued_before, expires_at, created_at, reason) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING seq",
        )
        .bind(r.kind.as_str())
        .bind(&r.value)
        .bind(r.issued_before)
        .bind(r.expires_at)
        .bind(r.created_at)
        .bind(&r.reason)
        .fetch_one(&self.write)
        .await
        .map_err(db_error)?;
        row.try_get(0).map_err(db_error)
    }

    async fn revocations_since(&self, after: i64, now: i64, limit: u32) -> StoreResult<Vec<Revocation>> {
        let rows = sqlx::query("SELECT * FROM revocations WHERE seq > ? AND expires_at > ? ORDER BY seq LIMIT ?")
            .bind(after)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(db_error)?;
        rows.iter().map(revocation_of).collect()
    }

    async fn append_audit(&self, events: &[AuditEvent]) -> StoreResult<()> {
        self.append_audit_numbered(events).await.map(|_| ())
    }

    async fn append_audit_numbered(&self, events: &[AuditEvent]) -> StoreResult<Option<Vec<i64>>> {
        // Many rows per statement (in the order given, which becomes their seq order): one statement per event
        // made the writer's group commits several times slower.
        let mut tx = self.begin().await?;
        let mut seqs = Vec::with_capacity(events.len());
        for chunk in events.chunks(500) {
            let rows = placeholders(chunk.len(), 6, false);
            let sql = format!(
                "INSERT INTO audit_events (at, kind, subject, client_id, jti, detail) VALUES {rows} RETURNING seq"
            );
            let mut query = sqlx::query(&sql);
            for e in chunk {
                query = query.bind(e.at).bind(e.kind).bind(&e.subject).bind(&e.client_id).bind(&e.jti).bind(&e.detail);
            }
            let mut numbered: Vec<i64> = query
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error)?
                .iter()
                .map(|r| r.int("seq"))
                .collect::<StoreResult<_>>()?;
            // RETURNING gives no order; the one writer hands out consecutive numbers in VALUES order.
            numbered.sort_unstable();
            seqs.extend(numbered);
        }
        tx.commit().await.map_err(db_error)?;
        let consecutive = seqs.windows(2).all(|w| w[1] == w[0] + 1) && seqs.len() == events.len();
        Ok(consecutive.then_some(seqs))
    }

    async fn audit_since(&self, after: i64, limit: u32) -> StoreResult<Vec<StoredAuditEvent>> {
        let rows = sqlx::query("SELECT * FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
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
        let binds = [Bind::Text(name), Bind::Text(holder), Bind::Int(until), Bind::Int(now)];
        Ok(self.exec(LEASE_UPSERT, name, &binds).await? == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        self.exec("DELETE FROM leases WHERE name = ? AND holder = ?", name, &[Bind::Text(name), Bind::Text(holder)])
            .await?;
        Ok(())
    }

    async fn export(&self) -> StoreResult<snapshot::Snapshot> {
        // One read transaction: WAL gives every SELECT in it the same snapshot.
        let mut tx = self.read.begin().await.map_err(db_error)?;
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
        tx.commit().await.map_err(db_error)
    }
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

fn bind_value<'q>(q: SqliteQuery<'q>, value: &'q snapshot::Bound) -> SqliteQuery<'q> {
    use snapshot::Bound;
    match value {
        Bound::Text(t) => q.bind(t.as_deref()),
        Bound::Int(i) => q.bind(*i),
        Bound::Flag(b) => q.bind(*b),
        Bound::Bytes(b) => q.bind(b.as_deref()),
    }
}

/// Takes a lease that is free, expired or already the holder's, in one statement.
const LEASE_UPSERT: &str = "INSERT INTO leases (name, holder, until) VALUES (?1, ?2, ?3) \
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
     WHERE leases.until <= ?4 OR leases.holder = excluded.holder";

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::suite;
    use super::*;

    /// A store on a new file, and its directory, which is removed when the test lets go of it.
    async fn fresh(name: &str) -> (Arc<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::Builder::new().prefix(&format!("portcullis-store-{name}-")).tempdir().unwrap();
        let store = SqliteStore::open(&format!("sqlite://{}/p.db", dir.path().display())).await.unwrap();
        (Arc::new(store), dir)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn accounts_and_clients() {
        let (store, _dir) = fresh("accounts").await;
        suite::accounts_and_clients(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counters_are_atomic() {
        let (store, _dir) = fresh("counters").await;
        suite::counters_are_atomic(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refresh_rotation() {
        let (store, _dir) = fresh("refresh").await;
        suite::refresh_rotation(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_revocations_and_audit() {
        let (store, _dir) = fresh("keys").await;
        suite::keys_revocations_and_audit(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leases() {
        let (store, _dir) = fresh("leases").await;
        suite::leases(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn revocations_are_read_in_commit_order() {
        let (store, _dir) = fresh("order").await;
        suite::revocations_are_read_in_commit_order(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn audit_sequence_has_no_gaps() {
        let (store, _dir) = fresh("audit").await;
        suite::audit_sequence_has_no_gaps(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn authorization_code_flow() {
        let (store, _dir) = fresh("codes").await;
        suite::authorization_code_flow(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ledger_grows_once_under_concurrency() {
        let (store, _dir) = fresh("ledger").await;
        suite::ledger_grows_once_under_concurrency(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ledger_follows_the_writer() {
        let (store, _dir) = fresh("follow").await;
        let events = [crate::audit::event(1, "login"), crate::audit::event(2, "login")];
        assert_eq!(
            store.append_audit_numbered(&events).await.unwrap(),
            Some(vec![1, 2]),
            "SQLite numbers as it stores"
        );
        let (store, _dir) = fresh("follow2").await;
        suite::ledger_follows_the_writer(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn risk_profiles() {
        let (store, _dir) = fresh("risk").await;
        suite::risk_profiles(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn snapshot_round_trip() {
        let ((from, _from_dir), (to, _to_dir)) = (fresh("export").await, fresh("import").await);
        suite::snapshot_round_trip(from, to).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_corrupt_database_file_is_refused_clearly() {
        let dir = tempfile::Builder::new().prefix("portcullis-store-corrupt-").tempdir().unwrap();
        std::fs::write(dir.path().join("p.db"), b"this is not a database").unwrap();
        let err = SqliteStore::open(&format!("sqlite://{}/p.db", dir.path().display())).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    }
}
