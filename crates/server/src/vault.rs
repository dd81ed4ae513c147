//! Private signing keys at rest: sealed with AES-256-GCM under the master key (`PORTCULLIS_MASTER_KEY` or a
//! key file), the key id bound in as associated data so a sealed key moved to another row does not open.
//!
//! Other secrets the server needs on every instance (the DPoP nonce key) are derived from the master key with
//! HKDF-SHA256, one `info` label per purpose, so every instance derives the same ones and none is stored.
//!
//! Sealed format: `0x01 ‖ nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)`. Nonces are random; a server seals
//! a handful of keys per rotation, far below the 2^32 messages where random 96-bit nonces become a concern.

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use aws_lc_rs::{hkdf, rand};
use portcullis_jose::b64;
use zeroize::Zeroizing;

use crate::config::MasterKeySource;

const VERSION: u8 = 1;
const TAG_LEN: usize = 16;

/// Why sealing or opening failed. Opening failures say nothing about which part was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    #[error("the master key must be 32 bytes, base64url-encoded")]
    BadMasterKey,
    #[error("a sealed key did not open: wrong master key, or the data was altered or moved")]
    Open,
    #[error("cryptographic backend failure")]
    Crypto,
    #[error("master key file {0}")]
    File(String),
}

/// The master key. `Debug` is redacted; the key material lives inside aws-lc-rs, which clears it on drop.
pub struct MasterKey {
    seal: LessSafeKey,
    /// HKDF's pseudorandom key, from which per-purpose secrets are expanded.
    derive: hkdf::Prk,
}

/// The HKDF salt of derived secrets: fixed, so that every instance derives the same secret.
const DERIVE_SALT: &[u8] = b"portcullis master key derivation v1";

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

fn aad(kid: &str) -> Zeroizing<Vec<u8>> {
    Zeroizing::new([b"portcullis signing key:".as_slice(), kid.as_bytes()].concat())
}

impl MasterKey {
    /// From raw bytes (exactly 32).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VaultError> {
        let unbound = UnboundKey::new(&aead::AES_256_GCM, bytes).map_err(|_| VaultError::BadMasterKey)?;
        let derive = hkdf::Salt::new(hkdf::HKDF_SHA256, DERIVE_SALT).extract(bytes);
        Ok(MasterKey { seal: LessSafeKey::new(unbound), derive })
    }

    /// A 256-bit secret for one purpose (`info`), the same on every instance with this master key.
    pub fn derive_secret(&self, purpose: &str) -> Result<Zeroizing<[u8; 32]>, VaultError> {
        let info = [purpose.as_bytes()];
        let okm = self.derive.expand(&info, hkdf::HKDF_SHA256).map_err(|_| VaultError::Crypto)?;
        let mut secret = Zeroizing::new([0u8; 32]);
        okm.fill(secret.as_mut()).map_err(|_| VaultError::Crypto)?;
        Ok(secret)
    }

    /// From its text form (base64url of 32 bytes, surrounding whitespace ignored), as kept in the environment
    /// or a key file.
    pub fn parse(text: &str) -> Result<Self, VaultError> {
        let bytes = Zeroizing::new(b64::decode(text.trim().as_bytes()).ok_or(VaultError::BadMasterKey)?);
        if bytes.len() != 32 {
            return Err(VaultError::BadMasterKey);
        }
        Self::from_bytes(&bytes)
    }

    /// A new random master key and its text form (to be written to a 0600 key file in development mode).
    pub fn generate() -> Result<(Self, Zeroizing<String>), VaultError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::fill(bytes.as_mut()).map_err(|_| VaultError::Crypto)?;
        let text = Zeroizing::new(b64::encode(bytes.as_ref()));
        Ok((Self::from_bytes(bytes.as_ref())?, text))
    }

    /// Seals `plaintext` (a private JWK) for the key `kid`.
    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce).map_err(|_| VaultError::Crypto)?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        let mut body = Zeroizing::new(plaintext.to_vec());
        self.seal
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad(kid).as_slice()), &mut *body)
            .map_err(|_| VaultError::Crypto)?;
        sealed.extend_from_slice(&body);
        Ok(sealed)
    }

    /// Opens what [`MasterKey::seal`] sealed for the same `kid`.
    pub fn open(&self, kid: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != VERSION {
            return Err(VaultError::Open);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[1..=NONCE_LEN]);
        let mut body = Zeroizing::new(sealed[1 + NONCE_LEN..].to_vec());
        let len = self
            .seal
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad(kid).as_slice()), &mut body)
            .map_err(|_| VaultError::Open)?
            .len();
        body.truncate(len);
        Ok(body)
    }
}

/// Loads the master key from where the configuration says. In development mode (no key configured) the key
/// file in the data dir is created on first start with mode 0600; the second value is then a warning to show.
pub fn load_master_key(source: &MasterKeySource) -> Result<(MasterKey, Option<String>), VaultError> {
    match source {
        MasterKeySource::Inline(text) => Ok((MasterKey::parse(text)?, None)),
        MasterKeySource::File(path) => Ok((read_key_file(path)?, None)),
        MasterKeySource::DevelopmentFile(path) => {
            let warning = format!(
                "no master key configured: using the development key file {} (set PORTCULLIS_MASTER_KEY_FILE in \
                 production)",
                path.display()
            );
            if path.exists() {
                return Ok((read_key_file(path)?, Some(warning)));
            }
            let (key, text) = MasterKey::generate()?;
            write_private_file(path, text.as_bytes())
                .map_err(|e| VaultError::File(format!("{} cannot be created: {e}", path.display())))?;
            Ok((key, Some(warning)))
        }
    }
}

fn read_key_file(path: &Path) -> Result<MasterKey, VaultError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| VaultError::File(format!("{}: {e}", path.display())))?,
    );
    MasterKey::parse(&text)
}

/// Creates `path` (not overwriting) readable by its owner only.
fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_every_tamper_fails() {
        let (key, text) = MasterKey::generate().unwrap();
        let again = MasterKey::parse(&format!("  {}\n", text.as_str())).unwrap();
        let sealed = key.seal("kid-1", b"{\"kty\":\"EC\",\"d\":\"secret\"}").unwrap();
        assert_eq!(again.open("kid-1", &sealed).unwrap().as_slice(), b"{\"kty\":\"EC\",\"d\":\"secret\"}");
        assert!(!sealed.windows(6).any(|w| w == b"secret"), "plaintext visible");
        assert_eq!(key.open("kid-2", &sealed).unwrap_err(), VaultError::Open, "moved to another kid");
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert_eq!(key.open("kid-1", &t).unwrap_err(), VaultError::Open, "byte {i}");
        }
        assert_eq!(key.open("kid-1", &sealed[..sealed.len() - 1]).unwrap_err(), VaultError::Open);
        let (other, _) = MasterKey::generate().unwrap();
        assert_eq!(other.open("kid-1", &sealed).unwrap_err(), VaultError::Open, "wrong master key");
        assert_ne!(key.seal("kid-1", b"x").unwrap(), key.seal("kid-1", b"x").unwrap(), "fresh nonce");
    }

    #[test]
    fn derived_keys_are_per_purpose_and_the_same_for_the_same_master_key() {
        let (key, text) = MasterKey::generate().unwrap();
        let again = MasterKey::parse(&text).unwrap();
        let (other, _) = MasterKey::generate().unwrap();
        let tag = |k: &MasterKey, purpose: &str| *k.derive_secret(purpose).unwrap();
        assert_eq!(tag(&key, "dpop-nonce"), tag(&again, "dpop-nonce"), "every instance derives the same key");
        assert_ne!(tag(&key, "dpop-nonce"), tag(&key, "other"), "one key per purpose");
        assert_ne!(tag(&key, "dpop-nonce"), tag(&other, "dpop-nonce"), "another master key, another secret");
    }

    #[test]
    fn master_keys_must_be_32_bytes() {
        assert_eq!(MasterKey::parse("c2hvcnQ").unwrap_err(), VaultError::BadMasterKey);
        assert_eq!(MasterKey::parse("not base64!").unwrap_err(), VaultError::BadMasterKey);
        assert!(MasterKey::parse(&b64::encode(&[7u8; 32])).is_ok());
        assert!(!format!("{:?}", MasterKey::parse(&b64::encode(&[7u8; 32])).unwrap()).contains('7'));
    }

    #[test]
    fn the_development_key_file_is_created_once_and_private() {
        let dir = tempfile::Builder::new().prefix("portcullis-vault-").tempdir().unwrap();
        let path = dir.path().join("master.key");
        let source = MasterKeySource::DevelopmentFile(path.clone());
        let (first, warning) = load_master_key(&source).unwrap();
        assert!(warning.unwrap().contains("development key file"));
        let sealed = first.seal("k1", b"private").unwrap();
        let (second, _) = load_master_key(&source).unwrap();
        assert_eq!(second.open("k1", &sealed).unwrap().as_slice(), b"private", "the same key on restart");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let (third, none) = load_master_key(&MasterKeySource::File(path.clone())).unwrap();
        assert!(none.is_none());
        assert!(third.open("k1", &sealed).is_ok());
        std::fs::write(&path, "short").unwrap();
        assert!(load_master_key(&MasterKeySource::File(path)).is_err());
        assert!(load_master_key(&MasterKeySource::File(dir.path().join("absent"))).is_err());
    }
}
