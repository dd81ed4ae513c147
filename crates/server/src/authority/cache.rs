//! Two small caches on the hot paths, each bounded and each safe to be wrong only in the safe direction:
//! - clients by id, within one second of the server's clock, so a burst of token requests does not read the same row thousands of
//!   times (a disabled or removed client is refused at most one second later);
//! - access tokens that passed full verification (signature, issuer, type), keyed by the token's SHA-256 and
//!   tied to the key material that verified them, so introspection of a token seen before costs a hash. Expiry
//!   and revocation are still judged on every call; a key change empties the cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lc_rs::digest;

use crate::model::Client;
use crate::signing::KeyMaterial;

const MAX_ENTRIES: usize = 100_000;

/// The claims of one of our access tokens that passed verification.
#[derive(Debug, Clone)]
pub struct AccessFacts {
    pub jti: String,
    pub sid: Option<String>,
    pub sub: String,
    pub client_id: String,
    pub iat: i64,
    pub exp: i64,
    pub aud: String,
    pub scope: String,
    /// `cnf.jkt` of a DPoP-bound token.
    pub dpop_jkt: Option<String>,
}

#[derive(Debug, Default)]
struct Verified {
    material: Option<Arc<KeyMaterial>>,
    tokens: HashMap<[u8; 32], Arc<AccessFacts>>,
}

#[derive(Debug, Default)]
pub struct VerifiedTokens(Mutex<Verified>);

pub fn token_digest(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
    out
}

impl VerifiedTokens {
    pub fn get(&self, material: &Arc<KeyMaterial>, token: &[u8; 32]) -> Option<Arc<AccessFacts>> {
        let v = self.0.lock().ok()?;
        match &v.material {
            Some(m) if Arc::ptr_eq(m, material) => v.tokens.get(token).cloned(),
            _ => None,
        }
    }

    pub fn put(&self, material: &Arc<KeyMaterial>, token: [u8; 32], facts: Arc<AccessFacts>) {
        let Ok(mut v) = self.0.lock() else { return };
        let same = v.material.as_ref().is_some_and(|m| Arc::ptr_eq(m, material));
        if !same || v.tokens.len() >= MAX_ENTRIES {
            v.tokens.clear();
            v.material = Some(Arc::clone(material));
        }
        v.tokens.insert(token, facts);
    }
}

/// Clients read within the current second (of the server's clock).
#[derive(Debug, Default)]
pub struct Clients {
    map: Mutex<HashMap<String, (i64, Option<Client>)>>,
}

impl Clients {
    /// The cached answer for `id` if it was read this second: `Some(None)` means "known not to exist".
    pub fn get(&self, id: &str, now: i64) -> Option<Option<Client>> {
        let map = self.map.lock().ok()?;
        let (at, client) = map.get(id)?;
        (*at == now).then(|| client.clone())
    }

    pub fn put(&self, id: &str, client: Option<Client>, now: i64) {
        let Ok(mut map) = self.map.lock() else { return };
        if map.len() >= MAX_ENTRIES / 10 {
            map.retain(|_, (at, _)| *at == now);
        }
        map.insert(id.to_owned(), (now, client));
    }
}
