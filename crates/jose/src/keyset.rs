//! The trusted keys a verifier chooses from. A token picks a key only by `kid` (or, with no `kid`, when
//! exactly one key has the token's algorithm); nothing in the token can add a key.

use std::sync::OnceLock;

use crate::alg::Algorithm;
use crate::error::{Error, Part};
use crate::json::{self, find};
use crate::jwk;
use crate::jws::Header;
use crate::key::VerifyingKey;

/// A key from a JWK Set that was not imported, and why (for the operator's log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Position in the `keys` array.
    pub index: usize,
    pub kid: Option<String>,
    pub reason: Error,
}

/// An immutable set of verifying keys with unique `kid`s. It also remembers the first few header segments it
/// accepted, so that tokens with the same header skip checking it again (see `known_header`).
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
    skipped: Vec<Skipped>,
    /// Header segments of tokens that verified, with what checking them found; filled in order.
    known: [OnceLock<KnownHeader>; KNOWN_HEADERS],
}

/// How many distinct header segments a set remembers. An issuer writes the same header on every token of a key,
/// so a few cover the overlap of a key rotation; once they are taken, other headers are checked every time.
const KNOWN_HEADERS: usize = 4;

/// A header segment that this set accepted, with its checked header and the key it selected. Checking a header
/// and selecting its key depend on nothing but the segment's bytes and the set, so a token with the same bytes
/// can skip both. Only headers with no nested value are kept: they pass any nesting limit the caller sets.
#[derive(Debug)]
struct KnownHeader {
    segment: Box<str>,
    header: Header,
    key: usize,
}

/// The most keys a JWK Set may hold; a larger set is refused outright.
pub const MAX_KEYS: usize = 64;

impl KeySet {
    /// Builds a set from keys. Duplicate `kid`s, and symmetric keys mixed with asymmetric ones, are refused.
    pub fn new(keys: Vec<VerifyingKey>) -> Result<Self, Error> {
        for (i, key) in keys.iter().enumerate() {
            if let Some(kid) = key.kid() {
                if keys[..i].iter().any(|k| k.kid() == Some(kid)) {
                    return Err(Error::AmbiguousKeySet("duplicate kid"));
                }
            }
        }
        if keys.iter().any(VerifyingKey::is_symmetric) && keys.iter().any(|k| !k.is_symmetric()) {
            return Err(Error::AmbiguousKeySet("symmetric and asymmetric keys mixed"));
        }
        Ok(KeySet { keys, skipped: Vec::new(), known: Default::default() })
    }

    /// A set of one key.
    pub fn single(key: VerifyingKey) -> Self {
        KeySet { keys: vec![key], skipped: Vec::new(), known: Default::default() }
    }

    /// Parses a JWK Set (`{"keys":[...]}`) or a single JWK. Keys that cannot be used for verifying
    /// (unknown `kty` or `alg`, `use: enc`, weak or malformed) are skipped, as RFC 7517 §5 asks, and listed
    /// in [`KeySet::skipped`]. `candidates` binds keys without `alg` (see [`jwk::verifying_key_from_jwk`]).
    pub fn from_jwks(text: &str, candidates: &[Algorithm]) -> Result<Self, Error> {
        let members = json::parse_object(text, json::DEFAULT_MAX_DEPTH).map_err(Error::json(Part::Key))?;
        let Some(keys) = find(&members, "keys") else {
            return Ok(KeySet::single(jwk::verifying_key_from_jwk(text, candidates)?));
        };
        let items = keys.items().ok_or(Error::InvalidKey("keys is not an array"))?;
        if items.len() > MAX_KEYS {
            return Err(Error::InvalidKey("JWK Set holds too many keys"));
        }
        let mut imported = Vec::with_capacity(items.len());
        let mut skipped = Vec::new();
        let mut any_private = false;
        let mut any_public = false;
        let mut kids: Vec<String> = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let inner = item.members().ok_or(Error::InvalidKey("a JWK Set entry is not an object"))?;
            // A kid used twice makes the set ambiguous even if one of the two keys is unusable.
            if let Some(kid) = find(&inner, "kid").and_then(|v| v.as_str()) {
                let kid = kid.to_cow().into_owned();
                if kids.contains(&kid) {
                    return Err(Error::AmbiguousKeySet("duplicate kid"));
                }
                kids.push(kid);
            }
            if jwk::is_private_members(&inner) {
                any_private = true;
            } else {
                any_public = true;
            }
            match jwk::verifying_key_from_jwk(item.text(), candidates) {
                Ok(key) => imported.push(key),
                Err(reason) => {
                    let kid = find(&inner, "kid").and_then(|v| v.as_str()).map(|s| s.to_cow().into_owned());
                    skipped.push(Skipped { index, kid, reason });
                }
            }
        }
        if any_private && any_public {
            return Err(Error::AmbiguousKeySet("public and private keys mixed"));
        }
        let mut set = KeySet::new(imported)?;
        set.skipped = skipped;
        Ok(set)
    }

    pub fn keys(&self) -> &[VerifyingKey] {
        &self.keys
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Keys that [`KeySet::from_jwks`] left out.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.iter().find(|k| k.kid() == Some(kid))
    }

    /// The key for a token: by `kid` if it has one, else the only key of the token's algorithm. The key's
    /// algorithm must be the token's.
    pub fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&VerifyingKey, Error> {
        let key = match kid {
            Some(kid) => self.get(kid).ok_or(Error::UnknownKey)?,
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.algorithm() == alg);
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => key,
                    _ => return Err(Error::UnknownKey),
                }
            }
        };
        if key.algorithm() != alg {
            return Err(Error::AlgorithmKeyMismatch { token: alg.name(), key: key.algorithm().name() });
        }
        Ok(key)
    }

    /// The checked header and the key of a header segment this set accepted before.
    pub(crate) fn known_header(&self, segment: &str) -> Option<(&Header, &VerifyingKey)> {
        for slot in &self.known {
            // Slots fill in order: the first empty one ends the search.
            let known = slot.get()?;
            if *known.segment == *segment {
                return Some((&known.header, self.keys.get(known.key)?));
            }
        }
        None
    }

    /// Remembers a header segment whose token verified with `key` (a key of this set), if a slot is free; called
    /// after `known_header` missed it. Two threads racing for one slot: one wins, the other's segment waits for
    /// its next token (two threads with the same new segment may take two slots: harmless, and rare).
    pub(crate) fn remember_header(&self, segment: &str, header: &Header, key: &VerifyingKey) {
        // Slots fill in order: the first empty one is the one to take, and when none is, nothing more is done.
        let Some(slot) = self.known.iter().find(|slot| slot.get().is_none()) else { return };
        let Some(index) = self.keys.iter().position(|k| std::ptr::eq(k, key)) else { return };
        let _ = slot.set(KnownHeader { segment: segment.into(), header: header.clone(), key: index });
    }

    /// How many header segments this set remembers (for tests and diagnostics).
    pub fn known_headers(&self) -> usize {
        self.known.iter().take_while(|slot| slot.get().is_some()).count()
    }

    /// The public JWK Set of this key set (`{"keys":[...]}`), for publishing. HMAC keys are left out.
    pub fn to_public_jwks(&self) -> String {
        let parts: Vec<String> = self.keys.iter().filter_map(|k| k.to_jwk().ok()).collect();
        format!("{{\"keys\":[{}]}}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::SigningKey;

    #[test]
    fn selection_by_kid_and_alg() {
        let a = SigningKey::generate(Algorithm::ES256).unwrap().with_kid("a");
        let b = SigningKey::generate(Algorithm::EdDSA).unwrap().with_kid("b");
        let jwks =
            format!("{{\"keys\":[{},{}]}}", a.verifying_key().to_jwk().unwrap(), b.verifying_key().to_jwk().unwrap());
        let set = KeySet::from_jwks(&jwks, &[]).unwrap();
        assert_eq!(set.keys().len(), 2);
        assert_eq!(set.select(Some("a"), Algorithm::ES256).unwrap().kid(), Some("a"));
        assert!(matches!(set.select(Some("a"), Algorithm::HS256), Err(Error::AlgorithmKeyMismatch { .. })));
        assert_eq!(set.select(Some("zz"), Algorithm::ES256).unwrap_err(), Error::UnknownKey);
        assert_eq!(set.select(None, Algorithm::EdDSA).unwrap().kid(), Some("b"));
        assert_eq!(KeySet::from_jwks(&set.to_public_jwks(), &[]).unwrap().keys().len(), 2);
    }

    #[test]
    fn ambiguous_sets_are_refused_and_unusable_keys_skipped() {
        let a = SigningKey::generate(Algorithm::ES256).unwrap().with_kid("a");
        let pub_a = a.verifying_key().to_jwk().unwrap();
        let dup = format!("{{\"keys\":[{pub_a},{pub_a}]}}");
        assert_eq!(KeySet::from_jwks(&dup, &[]).unwrap_err(), Error::AmbiguousKeySet("duplicate kid"));
        let enc = pub_a.replace("\"use\":\"sig\"", "\"use\":\"enc\"").replace("\"a\"", "\"e\"");
        let set = KeySet::from_jwks(&format!("{{\"keys\":[{pub_a},{enc},{{\"kty\":\"XYZ\"}}]}}"), &[]).unwrap();
        assert_eq!(set.keys().len(), 1);
        assert_eq!(set.skipped().len(), 2);
        assert_eq!(set.skipped()[0].kid.as_deref(), Some("e"));
        let mixed = KeySet::new(vec![
            VerifyingKey::hmac(Algorithm::HS256, &[1; 32]).unwrap(),
            a.verifying_key().to_jwk().map(|j| jwk::verifying_key_from_jwk(&j, &[]).unwrap()).unwrap(),
        ]);
        assert_eq!(mixed.unwrap_err(), Error::AmbiguousKeySet("symmetric and asymmetric keys mixed"));
    }
}
