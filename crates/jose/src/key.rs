//! Keys bound to one algorithm each. A key is parsed and checked once, when it is made; verifying and
//! signing then reuse the parsed form. Weak or inconsistent keys are refused here, so no later step can use
//! one: RSA below 2048 bits, a public exponent below 65537 or even, a modulus with the ROCA fingerprint,
//! an HMAC secret shorter than the hash, an EC point off its curve.

use std::fmt;

use aws_lc_rs::encoding::AsBigEndian;
use aws_lc_rs::rsa::{KeyPairComponents, PublicKeyComponents};
use aws_lc_rs::signature::{self, KeyPair as _, ParsedPublicKey};
use aws_lc_rs::{hmac, rand};
use zeroize::Zeroizing;

use crate::alg::{Algorithm, Family};
use crate::error::{Error, SignatureDefect};
use crate::{der, roca};

/// Secret bytes: zeroized on drop, redacted in `Debug`, and never compared except in constant time.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(Zeroizing::new(bytes))
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret([redacted; {} bytes])", self.0.len())
    }
}

/// The public half of a key, as JWK members need it (big-endian bytes, no base64).
#[derive(Debug, Clone)]
pub(crate) enum PublicParams {
    Oct(Secret),
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ec { x: Vec<u8>, y: Vec<u8> },
    Okp { x: Vec<u8> },
    Akp { public: Vec<u8> },
}

enum Verifier {
    // Boxed: an HMAC key holds both precomputed hash states (over 1 KiB).
    Hmac(Box<hmac::Key>),
    Public(ParsedPublicKey),
}

/// A key that verifies signatures (or MACs) of exactly one algorithm.
pub struct VerifyingKey {
    alg: Algorithm,
    kid: Option<String>,
    verifier: Verifier,
    pub(crate) params: PublicParams,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey").field("alg", &self.alg).field("kid", &self.kid).finish_non_exhaustive()
    }
}

fn hmac_alg(alg: Algorithm) -> hmac::Algorithm {
    match alg {
        Algorithm::HS384 => hmac::HMAC_SHA384,
        Algorithm::HS512 => hmac::HMAC_SHA512,
        _ => hmac::HMAC_SHA256,
    }
}

fn verification_alg(alg: Algorithm) -> &'static dyn signature::VerificationAlgorithm {
    match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
        Algorithm::ES512 => &signature::ECDSA_P521_SHA512_FIXED,
        Algorithm::EdDSA => &signature::ED25519,
        Algorithm::MlDsa44 => &signature::ML_DSA_44,
        Algorithm::MlDsa65 => &signature::ML_DSA_65,
        // HMAC algorithms never reach here; ML-DSA-87 is the remaining case.
        _ => &signature::ML_DSA_87,
    }
}

fn rsa_params(alg: Algorithm) -> &'static signature::RsaParameters {
    match alg {
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => &signature::RSA_PKCS1_2048_8192_SHA256,
    }
}

/// Coordinate (and scalar) length in bytes of an ECDSA curve.
fn ec_field_len(alg: Algorithm) -> usize {
    match alg {
        Algorithm::ES384 => 48,
        Algorithm::ES512 => 66,
        _ => 32,
    }
}

/// The group order of the ECDSA curve, big-endian, padded to the scalar length.
fn ec_order(alg: Algorithm) -> &'static [u8] {
    const P256: [u8; 32] = hex32("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
    const P384: [u8; 48] =
        hex48("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973");
    const P521: [u8; 66] = hex66(
        "01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\
         fa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409",
    );
    match alg {
        Algorithm::ES384 => &P384,
        Algorithm::ES512 => &P521,
        _ => &P256,
    }
}

const fn hex_nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => 0,
    }
}

macro_rules! hex_fn {
    ($name:ident, $n:expr) => {
        const fn $name(s: &str) -> [u8; $n] {
            let b = s.as_bytes();
            let mut out = [0u8; $n];
            let (mut i, mut j) = (0, 0);
            while i < $n {
                out[i] = hex_nibble(b[j]) << 4 | hex_nibble(b[j + 1]);
                i += 1;
                j += 2;
            }
            out
        }
    };
}
hex_fn!(hex32, 32);
hex_fn!(hex48, 48);
hex_fn!(hex66, 66);

/// Refuses ECDSA signatures whose encoding is wrong before the backend sees them: DER instead of `r‖s`,
/// and `r` or `s` that is zero or not below the group order (CVE-2022-21449).
fn check_ecdsa_signature(alg: Algorithm, sig: &[u8]) -> Result<(), Error> {
    let len = ec_field_len(alg);
    if sig.len() != 2 * len {
        return Err(Error::MalformedSignature(SignatureDefect::Length));
    }
    let order = ec_order(alg);
    for scalar in [&sig[..len], &sig[len..]] {
        if scalar.iter().all(|&b| b == 0) {
            return Err(Error::MalformedSignature(SignatureDefect::ZeroScalar));
        }
        if scalar >= order {
            return Err(Error::MalformedSignature(SignatureDefect::ScalarOutOfRange));
        }
    }
    Ok(())
}

fn rejected(what: &'static str) -> impl Fn(aws_lc_rs::error::KeyRejected) -> Error {
    move |_| Error::InvalidKey(what)
}

impl VerifyingKey {
    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Sets the key id.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    pub fn is_symmetric(&self) -> bool {
        self.alg.is_symmetric()
    }

    /// Verifies `signature` over `message` (for a JWS, the ASCII signing input `header.payload`).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), Error> {
        if let Some(len) = self.alg.fixed_signature_len() {
            if signature.len() != len {
                return Err(Error::MalformedSignature(SignatureDefect::Length));
            }
        }
        match &self.verifier {
            // Constant-time comparison of the MAC.
            Verifier::Hmac(key) => hmac::verify(key, message, signature).map_err(|_| Error::BadSignature),
            Verifier::Public(key) => {
                if self.alg.family() == Family::Ecdsa {
                    check_ecdsa_signature(self.alg, signature)?;
                }
                key.verify_sig(message, signature).map_err(|_| Error::BadSignature)
            }
        }
    }

    /// An HMAC key. The secret must be at least as long as the hash output (RFC 7518 §3.2).
    pub fn hmac(alg: Algorithm, secret: &[u8]) -> Result<Self, Error> {
        if !alg.is_symmetric() {
            return Err(Error::InvalidKey("not an HMAC algorithm"));
        }
        let min = hmac_alg(alg).digest_algorithm().output_len();
        if secret.len() < min {
            return Err(Error::InvalidKey("HMAC secret shorter than the hash output"));
        }
        Ok(VerifyingKey {
            alg,
            kid: None,
            verifier: Verifier::Hmac(Box::new(hmac::Key::new(hmac_alg(alg), secret))),
            params: PublicParams::Oct(Secret::new(secret.to_vec())),
        })
    }

    /// An RSA public key from its modulus and exponent (big-endian, no leading zeros).
    pub fn rsa(alg: Algorithm, n: &[u8], e: &[u8]) -> Result<Self, Error> {
        if !matches!(alg.family(), Family::RsaPkcs1 | Family::RsaPss) {
            return Err(Error::InvalidKey("not an RSA algorithm"));
        }
        check_rsa_public(n, e)?;
        let parsed = PublicKeyComponents { n, e }
            .to_parsed_public_key(rsa_params(alg))
            .map_err(rejected("RSA public key rejected"))?;
        Ok(Self::public(alg, parsed, PublicParams::Rsa { n: n.to_vec(), e: e.to_vec() }))
    }

    /// An ECDSA public key from its affine coordinates (each exactly the field length).
    pub fn ec(alg: Algorithm, x: &[u8], y: &[u8]) -> Result<Self, Error> {
        if alg.family() != Family::Ecdsa {
            return Err(Error::InvalidKey("not an ECDSA algorithm"));
        }
        let len = ec_field_len(alg);
        if x.len() != len || y.len() != len {
            return Err(Error::InvalidKey("EC coordinate has the wrong length for the curve"));
        }
        let mut point = Vec::with_capacity(1 + 2 * len);
        point.push(0x04);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        let parsed =
            ParsedPublicKey::new(verification_alg(alg), &point).map_err(rejected("EC point is not on the curve"))?;
        Ok(Self::public(alg, parsed, PublicParams::Ec { x: x.to_vec(), y: y.to_vec() }))
    }

    /// An Ed25519 public key (32 bytes).
    pub fn ed25519(x: &[u8]) -> Result<Self, Error> {
        if x.len() != 32 {
            return Err(Error::InvalidKey("Ed25519 public key must be 32 bytes"));
        }
        let parsed = ParsedPublicKey::new(&signature::ED25519, x).map_err(rejected("Ed25519 public key rejected"))?;
        Ok(Self::public(Algorithm::EdDSA, parsed, PublicParams::Okp { x: x.to_vec() }))
    }

    /// An ML-DSA public key (the raw FIPS 204 encoding).
    pub fn ml_dsa(alg: Algorithm, public: &[u8]) -> Result<Self, Error> {
        let expected = match alg {
            Algorithm::MlDsa44 => 1312,
            Algorithm::MlDsa65 => 1952,
            Algorithm::MlDsa87 => 2592,
            _ => return Err(Error::InvalidKey("not an ML-DSA algorithm")),
        };
        if public.len() != expected {
            return Err(Error::InvalidKey("ML-DSA public key has the wrong length"));
        }
        let parsed =
            ParsedPublicKey::new(verification_alg(alg), public).map_err(rejected("ML-DSA public key rejected"))?;
        Ok(Self::public(alg, parsed, PublicParams::Akp { public: public.to_vec() }))
    }

    fn public(alg: Algorithm, parsed: ParsedPublicKey, params: PublicParams) -> Self {
        VerifyingKey { alg, kid: None, verifier: Verifier::Public(parsed), params }
    }
}

fn check_rsa_public(n: &[u8], e: &[u8]) -> Result<(), Error> {
    if n.first() == Some(&0) || e.first() == Some(&0) {
        return Err(Error::InvalidKey("RSA parameter has a leading zero"));
    }
    if n.len() < 256 {
        return Err(Error::InvalidKey("RSA modulus shorter than 2048 bits"));
    }
    if n.len() > 1024 {
        return Err(Error::InvalidKey("RSA modulus longer than 8192 bits"));
    }
    // e >= 65537 (as ring requires), odd, at most 33 bits.
    let e_value = e.iter().try_fold(0u64, |v, &b| if v >> 40 == 0 { Some(v << 8 | u64::from(b)) } else { None });
    match e_value {
        Some(v) if v >= 65537 && v % 2 == 1 && v < (1 << 33) => {}
        _ => return Err(Error::InvalidKey("RSA public exponent must be odd and at least 65537")),
    }
    if roca::is_vulnerable(n) {
        return Err(Error::InvalidKey("RSA modulus has the ROCA fingerprint (CVE-2017-15361)"));
    }
    Ok(())
}

enum Signer {
    Hmac(Box<hmac::Key>),
    Rsa(signature::RsaKeyPair, &'static dyn signature::RsaEncoding),
    Ecdsa(signature::EcdsaKeyPair),
    Ed25519(signature::Ed25519KeyPair),
    MlDsa(signature::PqdsaKeyPair, Secret),
}

/// A private key (or HMAC secret) bound to one algorithm, with its public half.
pub struct SigningKey {
    signer: Signer,
    public: VerifyingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.public.alg)
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

fn ecdsa_signing(alg: Algorithm) -> &'static signature::EcdsaSigningAlgorithm {
    match alg {
        Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        Algorithm::ES512 => &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
        _ => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
    }
}

fn rsa_encoding(alg: Algorithm) -> &'static dyn signature::RsaEncoding {
    match alg {
        Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_SHA512,
        _ => &signature::RSA_PKCS1_SHA256,
    }
}

fn ml_dsa_signing(alg: Algorithm) -> &'static signature::PqdsaSigningAlgorithm {
    match alg {
        Algorithm::MlDsa65 => &signature::ML_DSA_65_SIGNING,
        Algorithm::MlDsa87 => &signature::ML_DSA_87_SIGNING,
        _ => &signature::ML_DSA_44_SIGNING,
    }
}

/// RSA private components, big-endian.
#[derive(Debug)]
pub struct RsaPrivateParts<'a> {
    pub n: &'a [u8],
    pub e: &'a [u8],
    pub d: &'a [u8],
    pub p: &'a [u8],
    pub q: &'a [u8],
    pub dp: &'a [u8],
    pub dq: &'a [u8],
    pub qi: &'a [u8],
}

/// Private material for JWK export; every field is zeroized on drop.
#[derive(Debug)]
pub(crate) enum PrivateParams {
    Oct(Secret),
    Rsa { d: Secret, p: Secret, q: Secret, dp: Secret, dq: Secret, qi: Secret },
    Ec { d: Secret },
    Okp { d: Secret },
    Akp { seed: Secret },
}

fn backend(_: aws_lc_rs::error::Unspecified) -> Error {
    Error::Crypto
}

impl SigningKey {
    /// Generates a fresh key from the OS CSPRNG: 2048-bit RSA, the algorithm's curve, a 32-byte ML-DSA seed,
    /// or an HMAC secret as long as the hash.
    pub fn generate(alg: Algorithm) -> Result<Self, Error> {
        match alg.family() {
            Family::Hmac => {
                let mut secret = Zeroizing::new(vec![0u8; hmac_alg(alg).digest_algorithm().output_len()]);
                rand::fill(&mut secret).map_err(backend)?;
                Self::hmac(alg, &secret)
            }
            Family::RsaPkcs1 | Family::RsaPss => {
                let pair = signature::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(backend)?;
                Self::from_rsa_pair(alg, pair)
            }
            Family::Ecdsa => {
                let pair = signature::EcdsaKeyPair::generate(ecdsa_signing(alg)).map_err(backend)?;
                Self::from_ecdsa_pair(alg, pair)
            }
            Family::Ed25519 => {
                let pair = signature::Ed25519KeyPair::generate().map_err(backend)?;
                let x = pair.public_key().as_ref().to_vec();
                Ok(SigningKey { signer: Signer::Ed25519(pair), public: VerifyingKey::ed25519(&x)? })
            }
            Family::MlDsa => {
                let mut seed = Zeroizing::new(vec![0u8; 32]);
                rand::fill(&mut seed).map_err(backend)?;
                Self::ml_dsa(alg, &seed)
            }
        }
    }

    /// An HMAC signing key (also its own verifying key).
    pub fn hmac(alg: Algorithm, secret: &[u8]) -> Result<Self, Error> {
        let public = VerifyingKey::hmac(alg, secret)?;
        Ok(SigningKey { signer: Signer::Hmac(Box::new(hmac::Key::new(hmac_alg(alg), secret))), public })
    }

    /// An RSA private key from all of its components; they are checked for consistency.
    pub fn rsa(alg: Algorithm, parts: &RsaPrivateParts<'_>) -> Result<Self, Error> {
        if !matches!(alg.family(), Family::RsaPkcs1 | Family::RsaPss) {
            return Err(Error::InvalidKey("not an RSA algorithm"));
        }
        check_rsa_public(parts.n, parts.e)?;
        let components = KeyPairComponents {
            public_key: PublicKeyComponents { n: parts.n, e: parts.e },
            d: parts.d,
            p: parts.p,
            q: parts.q,
            dP: parts.dp,
            dQ: parts.dq,
            qInv: parts.qi,
        };
        let pair =
            signature::RsaKeyPair::from_components(&components).map_err(rejected("inconsistent RSA private key"))?;
        Self::from_rsa_pair(alg, pair)
    }

    fn from_rsa_pair(alg: Algorithm, pair: signature::RsaKeyPair) -> Result<Self, Error> {
        let public = pair.public_key();
        let n = public.modulus().big_endian_without_leading_zero().to_vec();
        let e = public.exponent().big_endian_without_leading_zero().to_vec();
        let public = VerifyingKey::rsa(alg, &n, &e)?;
        Ok(SigningKey { signer: Signer::Rsa(pair, rsa_encoding(alg)), public })
    }

    /// An ECDSA private key from `d` and the public point's coordinates; they must match.
    pub fn ec(alg: Algorithm, d: &[u8], x: &[u8], y: &[u8]) -> Result<Self, Error> {
        if alg.family() != Family::Ecdsa {
            return Err(Error::InvalidKey("not an ECDSA algorithm"));
        }
        let len = ec_field_len(alg);
        if d.len() != len || x.len() != len || y.len() != len {
            return Err(Error::InvalidKey("EC parameter has the wrong length for the curve"));
        }
        let mut point = Vec::with_capacity(1 + 2 * len);
        point.push(0x04);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        let pair = signature::EcdsaKeyPair::from_private_key_and_public_key(ecdsa_signing(alg), d, &point)
            .map_err(rejected("EC private key does not match its public point"))?;
        Self::from_ecdsa_pair(alg, pair)
    }

    fn from_ecdsa_pair(alg: Algorithm, pair: signature::EcdsaKeyPair) -> Result<Self, Error> {
        let point = pair.public_key().as_ref();
        let len = ec_field_len(alg);
        if point.len() != 1 + 2 * len {
            return Err(Error::Crypto);
        }
        let public = VerifyingKey::ec(alg, &point[1..=len], &point[1 + len..])?;
        Ok(SigningKey { signer: Signer::Ecdsa(pair), public })
    }

    /// An Ed25519 private key from its 32-byte seed `d` and public key `x`; they must match.
    pub fn ed25519(d: &[u8], x: &[u8]) -> Result<Self, Error> {
        let pair = signature::Ed25519KeyPair::from_seed_and_public_key(d, x)
            .map_err(rejected("Ed25519 private key does not match its public key"))?;
        Ok(SigningKey { signer: Signer::Ed25519(pair), public: VerifyingKey::ed25519(x)? })
    }

    /// An ML-DSA private key from its 32-byte seed (the `priv` member of an `AKP` JWK).
    pub fn ml_dsa(alg: Algorithm, seed: &[u8]) -> Result<Self, Error> {
        if alg.family() != Family::MlDsa {
            return Err(Error::InvalidKey("not an ML-DSA algorithm"));
        }
        let pair = signature::PqdsaKeyPair::from_seed(ml_dsa_signing(alg), seed)
            .map_err(rejected("ML-DSA seed must be 32 bytes"))?;
        let public = VerifyingKey::ml_dsa(alg, pair.public_key().as_ref())?;
        Ok(SigningKey { signer: Signer::MlDsa(pair, Secret::new(seed.to_vec())), public })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.public.alg
    }

    pub fn kid(&self) -> Option<&str> {
        self.public.kid()
    }

    /// Sets the key id (of this key and of its public half).
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.public.kid = Some(kid.into());
        self
    }

    /// The public half (for an HMAC key, the same secret).
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    /// Signs `message` (for a JWS, the ASCII signing input).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        match &self.signer {
            Signer::Hmac(key) => Ok(hmac::sign(key, message).as_ref().to_vec()),
            Signer::Rsa(pair, encoding) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(*encoding, &rand::SystemRandom::new(), message, &mut sig).map_err(backend)?;
                Ok(sig)
            }
            Signer::Ecdsa(pair) => {
                pair.sign(&rand::SystemRandom::new(), message).map(|s| s.as_ref().to_vec()).map_err(backend)
            }
            Signer::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            Signer::MlDsa(pair, _) => {
                let mut sig = vec![0u8; pair.algorithm().signature_len()];
                let n = pair.sign(message, &mut sig).map_err(backend)?;
                sig.truncate(n);
                Ok(sig)
            }
        }
    }

    /// The private members for a private JWK.
    pub(crate) fn private_params(&self) -> Result<PrivateParams, Error> {
        Ok(match &self.signer {
            Signer::Hmac(_) => match &self.public.params {
                PublicParams::Oct(secret) => PrivateParams::Oct(secret.clone()),
                _ => return Err(Error::Crypto),
            },
            Signer::Rsa(pair, _) => {
                use aws_lc_rs::encoding::AsDer;
                let pkcs8 = Zeroizing::new(pair.as_der().map_err(backend)?.as_ref().to_vec());
                let parts = der::rsa_private_from_pkcs8(&pkcs8).ok_or(Error::Crypto)?;
                let [d, p, q, dp, dq, qi] = parts.map(|b| Secret::new(b.to_vec()));
                PrivateParams::Rsa { d, p, q, dp, dq, qi }
            }
            Signer::Ecdsa(pair) => {
                let d = pair.private_key().as_be_bytes().map_err(backend)?;
                PrivateParams::Ec { d: Secret::new(d.as_ref().to_vec()) }
            }
            Signer::Ed25519(pair) => {
                let seed = pair.seed().map_err(backend)?.as_be_bytes().map_err(backend)?;
                PrivateParams::Okp { d: Secret::new(seed.as_ref().to_vec()) }
            }
            Signer::MlDsa(_, seed) => PrivateParams::Akp { seed: seed.clone() },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_generates_signs_and_verifies() {
        for alg in Algorithm::ALL {
            let key = SigningKey::generate(alg).unwrap();
            let sig = key.sign(b"message").unwrap();
            key.verifying_key().verify(b"message", &sig).unwrap();
            assert_eq!(key.verifying_key().verify(b"messagf", &sig), Err(Error::BadSignature), "{alg}");
        }
    }

    #[test]
    fn ecdsa_scalars_are_range_checked() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        let vk = key.verifying_key();
        let order = ec_order(Algorithm::ES256);
        let mut sig = [1u8; 64];
        sig[..32].copy_from_slice(order);
        assert_eq!(vk.verify(b"m", &sig), Err(Error::MalformedSignature(SignatureDefect::ScalarOutOfRange)));
        assert_eq!(vk.verify(b"m", &[0u8; 64]), Err(Error::MalformedSignature(SignatureDefect::ZeroScalar)));
        assert_eq!(vk.verify(b"m", &[1u8; 70]), Err(Error::MalformedSignature(SignatureDefect::Length)));
        // The P-521 order's constant must round-trip its hex (guards the line continuation).
        assert_eq!(ec_order(Algorithm::ES512)[0], 0x01);
        assert_eq!(ec_order(Algorithm::ES512)[65], 0x09);
    }

    #[test]
    fn weak_keys_are_refused() {
        assert!(VerifyingKey::hmac(Algorithm::HS256, &[7u8; 31]).is_err());
        assert!(VerifyingKey::hmac(Algorithm::HS256, &[7u8; 32]).is_ok());
        assert!(VerifyingKey::hmac(Algorithm::ES256, &[7u8; 32]).is_err());
        let n = [0xC5u8; 256];
        assert!(VerifyingKey::rsa(Algorithm::RS256, &n, &[3]).is_err(), "small exponent");
        assert!(VerifyingKey::rsa(Algorithm::RS256, &n[..128], &[1, 0, 1]).is_err(), "1024-bit modulus");
        assert!(VerifyingKey::ec(Algorithm::ES256, &[1u8; 32], &[2u8; 32]).is_err(), "point off the curve");
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let key = SigningKey::hmac(Algorithm::HS256, &[0x41u8; 32]).unwrap();
        let shown = format!("{key:?} {:?} {:?}", key.verifying_key(), key.private_params().unwrap());
        assert!(!shown.contains("65, 65") && !shown.contains("AAAA"), "{shown}");
    }
}
