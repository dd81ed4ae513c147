//! Secrets the server hands out or checks: client secrets and refresh tokens (256 random bits, stored only as
//! their SHA-256, compared in constant time) and user passwords (Argon2id, OWASP parameters or stronger).
//!
//! Unknown users are checked against a dummy hash with the same parameters, so a login answer takes as long
//! whether or not the account exists (DESIGN.md §2, "never reveal whether a username exists").

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use aws_lc_rs::{constant_time, digest, rand};
use portcullis_jose::b64;
use zeroize::{Zeroize, Zeroizing};

/// Why a secret operation failed; never carries the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The system RNG failed.
    #[error("random number generator failure")]
    Rng,
    /// The stored hash is not one this server can read.
    #[error("stored password hash is malformed")]
    MalformedHash,
    /// Hashing failed (parameters rejected by the implementation).
    #[error("password hashing failed")]
    Hashing,
}

/// A bearer secret given to a client once: a client secret or a refresh token (256 bits, base64url).
/// Zeroized on drop; `Debug` is redacted.
pub struct BearerSecret(Zeroizing<String>);

impl BearerSecret {
    /// 256 bits from the OS CSPRNG.
    pub fn generate() -> Result<Self, SecretError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::fill(bytes.as_mut()).map_err(|_| SecretError::Rng)?;
        Ok(BearerSecret(Zeroizing::new(b64::encode(bytes.as_ref()))))
    }

    /// The text to give to the client, once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the store keeps.
    pub fn digest(&self) -> SecretDigest {
        SecretDigest::of(self.expose())
    }
}

/// A random 16-character id (96 bits) for names that must not collide: request ids, lease holders. Empty
/// only if the OS generator fails, which callers treat as "no id".
pub fn random_id() -> String {
    BearerSecret::generate().map(|s| s.expose()[..16].to_owned()).unwrap_or_default()
}

impl fmt::Debug for BearerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerSecret([redacted])")
    }
}

/// The SHA-256 of a bearer secret, as stored. High-entropy secrets need no slow hash (DESIGN.md §3).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    /// The digest of a presented secret (from a request).
    pub fn of(presented: &str) -> Self {
        let mut out = [0u8; 32];
        out.copy_from_slice(digest::digest(&digest::SHA256, presented.as_bytes()).as_ref());
        SecretDigest(out)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretDigest(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Hex, for display in logs and tables (a digest reveals nothing usable).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Compares a presented secret with this stored digest in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        let candidate = SecretDigest::of(presented);
        constant_time::verify_slices_are_equal(&self.0, &candidate.0).is_ok()
    }
}

impl fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretDigest({}…)", &self.to_hex()[..8])
    }
}

/// Argon2id cost. The floor is OWASP's recommendation (19 MiB, t = 2, p = 1); stronger settings are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl PasswordCost {
    pub const OWASP: PasswordCost = PasswordCost { memory_kib: 19 * 1024, iterations: 2, parallelism: 1 };

    /// Refuses settings weaker than the OWASP floor on either axis.
    pub fn checked(self) -> Result<Self, &'static str> {
        if self.memory_kib < Self::OWASP.memory_kib || self.iterations < Self::OWASP.iterations || self.parallelism == 0
        {
            return Err("password hashing cost is below the OWASP minimum (19 MiB, t=2, p=1)");
        }
        Ok(self)
    }

    fn hasher(self) -> Result<Argon2<'static>, SecretError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|_| SecretError::Hashing)?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

impl Default for PasswordCost {
    fn default() -> Self {
        Self::OWASP
    }
}

/// Hashes a password as a PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`). CPU-heavy: call it from
/// a bounded blocking pool, never on an async worker.
pub fn hash_password(password: &str, cost: PasswordCost) -> Result<String, SecretError> {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt).map_err(|_| SecretError::Rng)?;
    let hash = cost.hasher()?.hash_password_with_salt(password.as_bytes(), &salt).map_err(|_| SecretError::Hashing)?;
    salt.zeroize();
    Ok(hash.to_string())
}

/// Checks a password against a stored PHC hash (whose own parameters apply).
pub fn verify_password(password: &str, stored: &str) -> Result<bool, SecretError> {
    let parsed = argon2::password_hash::phc::PasswordHash::new(stored).map_err(|_| SecretError::MalformedHash)?;
    Ok(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// Checks a password for an account that may not exist. With `None` it hashes against a dummy of the same
/// cost and answers `false`, so the time taken does not tell whether the account exists.
pub fn verify_login(password: &str, stored: Option<&str>, cost: PasswordCost) -> bool {
    match stored {
        Some(stored) => verify_password(password, stored).unwrap_or(false),
        None => {
            let _ = verify_password(password, &dummy_hash(cost));
            false
        }
    }
}

/// A hash of a random password with the given cost, made once per process (a server runs with one cost; a
/// different cost gets a fresh dummy, correct but slower).
fn dummy_hash(cost: PasswordCost) -> Cow<'static, str> {
    static DUMMY: OnceLock<(PasswordCost, String)> = OnceLock::new();
    let make = |cost| {
        let random = BearerSecret::generate().map(|s| s.expose().to_owned()).unwrap_or_default();
        hash_password(&random, cost).unwrap_or_default()
    };
    let (made_for, hash) = DUMMY.get_or_init(|| (cost, make(cost)));
    if *made_for == cost {
        Cow::Borrowed(hash.as_str())
    } else {
        Cow::Owned(make(cost))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_secrets_are_256_bits_unique_and_compared_by_digest() {
        let a = BearerSecret::generate().unwrap();
        let b = BearerSecret::generate().unwrap();
        assert_eq!(b64::decode(a.expose().as_bytes()).unwrap().len(), 32);
        assert_ne!(a.expose(), b.expose());
        let stored = a.digest();
        assert!(stored.matches(a.expose()));
        assert!(!stored.matches(b.expose()));
        assert!(!stored.matches(""));
        assert!(!format!("{a:?} {stored:?}").contains(a.expose()));
        assert_eq!(stored.to_hex().len(), 64);
    }

    #[test]
    fn passwords_hash_with_argon2id_at_the_owasp_floor() {
        let hash = hash_password("correct horse", PasswordCost::OWASP).unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(verify_password("correct horse", &hash).unwrap());
        assert!(!verify_password("correct horsf", &hash).unwrap());
        assert_ne!(hash, hash_password("correct horse", PasswordCost::OWASP).unwrap(), "salted");
        assert_eq!(verify_password("x", "$md5$nope"), Err(SecretError::MalformedHash));
    }

    #[test]
    fn unknown_accounts_are_refused_after_the_same_work() {
        let hash = hash_password("pw", PasswordCost::OWASP).unwrap();
        assert!(verify_login("pw", Some(&hash), PasswordCost::OWASP));
        assert!(!verify_login("pw", None, PasswordCost::OWASP));
        assert!(!verify_login("pw", Some("garbage"), PasswordCost::OWASP));
        assert!(dummy_hash(PasswordCost::OWASP).starts_with("$argon2id$"));
    }

    #[test]
    fn weak_costs_are_refused() {
        assert!(PasswordCost { memory_kib: 4096, ..PasswordCost::OWASP }.checked().is_err());
        assert!(PasswordCost { iterations: 1, ..PasswordCost::OWASP }.checked().is_err());
        assert!(PasswordCost { memory_kib: 64 * 1024, iterations: 3, parallelism: 2 }.checked().is_ok());
    }
}
