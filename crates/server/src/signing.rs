//! The signing keys at work: the key ring that signs and publishes (held in memory, swapped whole), and the
//! key manager that applies the lifecycle of [`crate::keys`] to the store: creating, activating, retiring,
//! dropping and revoking keys, on a schedule and by command.

use std::sync::{Arc, RwLock};

use portcullis_jose::{jwk, jwt, Algorithm, KeySet, SigningKey, VerifyingKey, AT_JWT};

use crate::keys::{plan, KeyRecord, KeyRules, KeyState, Transition};
use crate::store::{Store, StoreError, StoredKey};
use crate::vault::MasterKey;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("key {0}: {1}")]
    Key(String, String),
    #[error("no key {0}")]
    Unknown(String),
    #[error("a rotation is already under way: key {0} is pending")]
    RotationPending(String),
    #[error("another instance has been changing the signing keys for too long; try again")]
    Busy,
}

/// The lease that lets one instance (or one CLI command) at a time change the signing keys.
const KEYS_LEASE: &str = "signing-keys";
/// How long the lease lasts if its holder dies holding it; a change takes milliseconds.
const LEASE_SECONDS: i64 = 30;
/// How long a command or a start waits for another instance to finish its change.
const LEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub use portcullis_revocation::SET_TYP;

/// The `typ` of ID tokens: plain `JWT`, unlike access tokens (`at+jwt`), so neither passes for the other.
pub const ID_TOKEN_TYP: &str = "JWT";

/// The `typ` of the audit ledger's signed tree heads.
pub const TREE_HEAD_TYP: &str = "tree-head+jwt";

/// What the server signs and publishes with right now.
#[derive(Debug)]
pub struct KeyMaterial {
    /// The active key, ready to sign access tokens (`typ: at+jwt`).
    pub signer: Option<Arc<jwt::Signer>>,
    /// The same key, for Security Event Tokens on the `/events` feed (`typ: secevent+jwt`).
    pub event_signer: Option<Arc<jwt::Signer>>,
    /// The same key, for OpenID Connect ID tokens (`typ: JWT`, so that no verifier takes one for an access
    /// token).
    pub id_signer: Option<Arc<jwt::Signer>>,
    /// The same key, for the audit ledger's signed tree heads (`typ: tree-head+jwt`).
    pub head_signer: Option<Arc<jwt::Signer>>,
    /// Every published key (pending, active, retired): what introspection verifies against.
    pub published: KeySet,
    /// The JWKS document served at `/jwks.json`.
    pub jwks: String,
    /// The records, for `/metrics` (key ages) and `keys list`.
    pub records: Vec<KeyRecord>,
}

impl KeyMaterial {
    fn empty() -> Self {
        KeyMaterial {
            signer: None,
            event_signer: None,
            id_signer: None,
            head_signer: None,
            published: KeySet::default(),
            jwks: r#"{"keys":[]}"#.into(),
            records: vec![],
        }
    }
}

/// The current key material, replaced whole when keys change; readers take a cheap `Arc` snapshot.
#[derive(Debug)]
pub struct KeyRing(RwLock<Arc<KeyMaterial>>);

impl Default for KeyRing {
    fn default() -> Self {
        KeyRing(RwLock::new(Arc::new(KeyMaterial::empty())))
    }
}

impl KeyRing {
    pub fn current(&self) -> Arc<KeyMaterial> {
        match self.0.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn replace(&self, material: KeyMaterial) {
        let material = Arc::new(material);
        match self.0.write() {
            Ok(mut guard) => *guard = material,
            Err(poisoned) => *poisoned.into_inner() = material,
        }
    }
}

/// Applies the key lifecycle to the store and keeps a [`KeyRing`] in step with it.
#[derive(Debug)]
pub struct KeyManager {
    store: Arc<dyn Store>,
    master: MasterKey,
    rules: KeyRules,
    algorithm: Algorithm,
    ring: KeyRing,
    /// Serialises lifecycle changes made by this process (the schedule, a command, a revocation); the store's
    /// lease serialises them across processes.
    busy: tokio::sync::Mutex<()>,
    /// This process's name as a lease holder.
    holder: String,
    /// How long a command or a start waits for the lease.
    lease_wait: std::time::Duration,
}

/// A change the manager made, for the log and the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChange {
    pub kid: String,
    pub change: &'static str,
}

impl KeyManager {
    pub fn new(store: Arc<dyn Store>, master: MasterKey, rules: KeyRules, algorithm: Algorithm) -> Self {
        let holder = format!("{}-{}", std::process::id(), crate::secrets::random_id());
        KeyManager {
            store,
            master,
            rules,
            algorithm,
            ring: KeyRing::default(),
            busy: tokio::sync::Mutex::new(()),
            holder,
            lease_wait: LEASE_WAIT,
        }
    }

    /// Waits this long (instead of 10 s) for another process's key change before giving up.
    pub fn with_lease_wait(mut self, wait: std::time::Duration) -> Self {
        self.lease_wait = wait;
        self
    }

    /// Takes the keys lease; with `wait`, retries until [`LEASE_WAIT`] has passed. The lease is renewed at each
    /// call, and `now` advances with the server's clock while waiting.
    async fn lease(&self, now: i64, wait: bool) -> Result<bool, KeyError> {
        let started = std::time::Instant::now();
        loop {
            let t = now.saturating_add(started.elapsed().as_secs() as i64);
            if self.store.acquire_lease(KEYS_LEASE, &self.holder, t, t.saturating_add(LEASE_SECONDS)).await? {
                return Ok(true);
            }
            if !wait {
                return Ok(false);
            }
            if started.elapsed() >= self.lease_wait {
                return Err(KeyError::Busy);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    async fn release(&self) {
        if let Err(e) = self.store.release_lease(KEYS_LEASE, &self.holder).await {
            tracing::warn!(error = %e, "could not release the signing-keys lease; it lapses by itself");
        }
    }

    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    pub fn rules(&self) -> &KeyRules {
        &self.rules
    }

    /// The algorithm new keys use.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Applies every transition due at `now`, then reloads the ring from the store. When another instance
    /// holds the keys lease, this one only reloads: the holder makes the changes, and announces them.
    pub async fn maintain(&self, now: i64) -> Result<Vec<KeyChange>, KeyError> {
        let _busy = self.busy.lock().await;
        if !self.lease(now, false).await? {
            self.reload().await?;
            return Ok(Vec::new());
        }
        let result = self.maintain_locked(now).await;
        self.release().await;
        result
    }

    /// [`KeyManager::maintain`] at start-up: waits for another instance's change, so the server never starts
    /// without an active key because a peer was creating it. If the lease stays taken (a peer at work, or a
    /// process that died holding it, until it lapses) the server starts on the keys the store has, as long as
    /// one of them can sign.
    pub async fn start(&self, now: i64) -> Result<Vec<KeyChange>, KeyError> {
        let _busy = self.busy.lock().await;
        match self.lease(now, true).await {
            Ok(_) => {}
            Err(KeyError::Busy) => {
                self.reload().await?;
                if self.ring.current().signer.is_some() {
                    tracing::warn!("the signing-keys lease is held elsewhere; starting on the current keys");
                    return Ok(Vec::new());
                }
                return Err(KeyError::Busy);
            }
            Err(e) => return Err(e),
        }
        let result = self.maintain_locked(now).await;
        self.release().await;
        result
    }

    async fn maintain_locked(&self, now: i64) -> Result<Vec<KeyChange>, KeyError> {
        let keys = self.store.list_keys().await?;
        let records: Vec<KeyRecord> = keys.iter().map(|k| k.record.clone()).collect();
        let mut changes = Vec::new();
        for transition in plan(&records, &self.rules, now) {
            let change = match transition {
                Transition::CreateActive => {
                    KeyChange { kid: self.create(KeyState::Active, None, now).await?, change: "created active" }
                }
                Transition::CreatePending => {
                    KeyChange { kid: self.create(KeyState::Pending, None, now).await?, change: "created pending" }
                }
                Transition::Activate(kid) => {
                    self.store.set_key_state(&kid, KeyState::Pending, KeyState::Active, now).await?;
                    KeyChange { kid, change: "activated" }
                }
                Transition::Retire(kid) => {
                    self.store.set_key_state(&kid, KeyState::Active, KeyState::Retired, now).await?;
                    KeyChange { kid, change: "retired" }
                }
                Transition::Drop(kid) => {
                    self.store.delete_key(&kid).await?;
                    KeyChange { kid, change: "dropped" }
                }
            };
            self.audit(&change, now).await?;
            changes.push(change);
        }
        self.reload().await?;
        Ok(changes)
    }

    /// Starts a rotation by command: a new key is published now and signs one JWKS max-age later.
    pub async fn rotate(&self, now: i64) -> Result<String, KeyError> {
        let _busy = self.busy.lock().await;
        self.lease(now, true).await?;
        let result = self.rotate_leased(now).await;
        self.release().await;
        result
    }

    async fn rotate_leased(&self, now: i64) -> Result<String, KeyError> {
        let keys = self.store.list_keys().await?;
        if let Some(pending) = keys.iter().find(|k| k.record.state == KeyState::Pending) {
            return Err(KeyError::RotationPending(pending.record.kid.clone()));
        }
        let activate_at = now.saturating_add(self.rules.jwks_max_age);
        let kid = self.create(KeyState::Pending, Some(activate_at), now).await?;
        self.audit(&KeyChange { kid: kid.clone(), change: "rotation started" }, now).await?;
        self.reload().await?;
        Ok(kid)
    }

    /// Revokes a key at once: it leaves the JWKS, and tokens it signed stop verifying. If it was the active
    /// key, a new one is made active immediately (a compromise leaves no time for pre-publication).
    pub async fn revoke(&self, kid: &str, now: i64) -> Result<(), KeyError> {
        let _busy = self.busy.lock().await;
        self.lease(now, true).await?;
        let result = self.revoke_leased(kid, now).await;
        self.release().await;
        result
    }

    async fn revoke_leased(&self, kid: &str, now: i64) -> Result<(), KeyError> {
        let keys = self.store.list_keys().await?;
        let key = keys.iter().find(|k| k.record.kid == kid).ok_or_else(|| KeyError::Unknown(kid.to_owned()))?;
        if key.record.state != KeyState::Revoked {
            self.store.set_key_state(kid, key.record.state, KeyState::Revoked, now).await?;
            self.audit(&KeyChange { kid: kid.to_owned(), change: "revoked" }, now).await?;
        }
        self.maintain_locked(now).await?;
        Ok(())
    }

    /// Key changes go straight to the audit log (no group commit: they are rare, and the CLI makes them too).
    async fn audit(&self, change: &KeyChange, now: i64) -> Result<(), KeyError> {
        let mut event = crate::audit::event(now, "key_changed");
        event.detail = serde_json::json!({ "kid": change.kid, "change": change.change }).to_string();
        self.store.append_audit(&[event]).await?;
        Ok(())
    }

    async fn create(&self, state: KeyState, activate_at: Option<i64>, now: i64) -> Result<String, KeyError> {
        let fail = |e: portcullis_jose::Error| KeyError::Key("new".into(), e.to_string());
        let key = SigningKey::generate(self.algorithm).map_err(fail)?;
        let kid = key.verifying_key().thumbprint();
        let key = key.with_kid(kid.clone());
        let public_jwk = key.verifying_key().to_jwk().map_err(fail)?;
        let private_jwk = key.to_jwk().map_err(fail)?;
        let sealed_private =
            self.master.seal(&kid, private_jwk.as_bytes()).map_err(|e| KeyError::Key(kid.clone(), e.to_string()))?;
        let record = KeyRecord {
            kid: kid.clone(),
            state,
            created_at: now,
            activate_at,
            activated_at: (state == KeyState::Active).then_some(now),
            retired_at: None,
        };
        let stored = StoredKey { record, alg: self.algorithm.name().to_owned(), public_jwk, sealed_private };
        self.store.insert_key(&stored).await?;
        Ok(kid)
    }

    /// Reads the keys from the store and replaces the ring (the active key is unsealed here).
    pub async fn reload(&self) -> Result<(), KeyError> {
        let keys = self.store.list_keys().await?;
        let unchanged = {
            let current = self.ring.current();
            current.records.len() == keys.len() && current.records.iter().zip(&keys).all(|(a, b)| *a == b.record)
        };
        if unchanged && self.ring.current().signer.is_some() == keys.iter().any(|k| k.record.state == KeyState::Active)
        {
            return Ok(());
        }
        let material = self.material(&keys)?;
        self.ring.replace(material);
        Ok(())
    }

    fn material(&self, keys: &[StoredKey]) -> Result<KeyMaterial, KeyError> {
        let published: Vec<&StoredKey> = keys.iter().filter(|k| k.record.state.is_published()).collect();
        let mut verifying: Vec<VerifyingKey> = Vec::with_capacity(published.len());
        for key in &published {
            let alg =
                Algorithm::from_name(&key.alg).map_err(|e| KeyError::Key(key.record.kid.clone(), e.to_string()))?;
            let vk = jwk::verifying_key_from_jwk(&key.public_jwk, &[alg])
                .map_err(|e| KeyError::Key(key.record.kid.clone(), e.to_string()))?;
            verifying.push(vk);
        }
        let active =
            published.iter().filter(|k| k.record.state == KeyState::Active).max_by_key(|k| k.record.activated_at);
        let (signer, event_signer, id_signer, head_signer) = match active {
            Some(key) => (
                Some(Arc::new(self.unseal(key, AT_JWT)?)),
                Some(Arc::new(self.unseal(key, SET_TYP)?)),
                Some(Arc::new(self.unseal(key, ID_TOKEN_TYP)?)),
                Some(Arc::new(self.unseal(key, TREE_HEAD_TYP)?)),
            ),
            None => (None, None, None, None),
        };
        let published = KeySet::new(verifying).map_err(|e| KeyError::Key("set".into(), e.to_string()))?;
        let jwks = published.to_public_jwks();
        Ok(KeyMaterial {
            signer,
            event_signer,
            id_signer,
            head_signer,
            published,
            jwks,
            records: keys.iter().map(|k| k.record.clone()).collect(),
        })
    }

    fn unseal(&self, key: &StoredKey, typ: &str) -> Result<jwt::Signer, KeyError> {
        let kid = &key.record.kid;
        let fail = |e: String| KeyError::Key(kid.clone(), e);
        let private = self.master.open(kid, &key.sealed_private).map_err(|e| fail(e.to_string()))?;
        let text = std::str::from_utf8(&private).map_err(|_| fail("sealed key is not UTF-8".into()))?;
        let alg = Algorithm::from_name(&key.alg).map_err(|e| fail(e.to_string()))?;
        let signing = jwk::signing_key_from_jwk(text, &[alg]).map_err(|e| fail(e.to_string()))?;
        Ok(jwt::Signer::new(signing, Some(typ)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::sqlite::SqliteStore;

    async fn manager(store: &Arc<dyn Store>, master: &str) -> KeyManager {
        let rules = KeyRules { rotation_interval: 86_400, jwks_max_age: 300, max_token_ttl: 3600 };
        KeyManager::new(Arc::clone(store), MasterKey::parse(master).unwrap(), rules, Algorithm::ES256)
            .with_lease_wait(Duration::from_millis(200))
    }

    /// A process that died holding the keys lease must not stop the next one from starting on the keys there are,
    /// nor let it start with none.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lease_held_elsewhere_delays_changes_but_not_a_start_on_existing_keys() {
        let dir = tempfile::Builder::new().prefix("portcullis-signing-lease-").tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&format!("sqlite://{}/p.db", dir.path().display())).await.unwrap());
        let (_, master) = MasterKey::generate().unwrap();
        assert!(store.acquire_lease(KEYS_LEASE, "crashed", 1000, 1030).await.unwrap());
        let first = manager(&store, &master).await;
        assert!(matches!(first.start(1000).await, Err(KeyError::Busy)), "no key to start on");
        assert!(first.ring().current().signer.is_none());
        // The lease lapses: the next start makes the first key.
        let changes = first.start(1031).await.unwrap();
        assert_eq!(changes.len(), 1, "{changes:?}");
        // Held again by a dead process: a start goes ahead on the existing key; a rotation waits, then refuses.
        assert!(store.acquire_lease(KEYS_LEASE, "crashed", 1040, 1070).await.unwrap());
        let second = manager(&store, &master).await;
        assert_eq!(second.start(1041).await.unwrap(), vec![]);
        assert!(second.ring().current().signer.is_some());
        assert!(matches!(second.rotate(1042).await, Err(KeyError::Busy)));
        assert_eq!(second.maintain(1043).await.unwrap(), vec![], "the schedule leaves the change to the holder");
    }
}
