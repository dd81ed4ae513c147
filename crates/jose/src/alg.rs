//! The signature and MAC algorithms (RFC 7518 §3, RFC 8037, and ML-DSA per the IETF JOSE/COSE ML-DSA draft).
//! `none` is not an algorithm here: it cannot be named, so it cannot be allowed.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A JWS algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Algorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
    /// Ed25519 (RFC 8037).
    EdDSA,
    /// ML-DSA-44 (FIPS 204), JOSE name `ML-DSA-44`.
    MlDsa44,
    /// ML-DSA-65 (FIPS 204), JOSE name `ML-DSA-65`.
    MlDsa65,
    /// ML-DSA-87 (FIPS 204), JOSE name `ML-DSA-87`.
    MlDsa87,
}

/// The key type an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Hmac,
    RsaPkcs1,
    RsaPss,
    Ecdsa,
    Ed25519,
    MlDsa,
}

impl Algorithm {
    /// Every algorithm, in a stable order.
    pub const ALL: [Algorithm; 16] = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
        Algorithm::MlDsa44,
        Algorithm::MlDsa65,
        Algorithm::MlDsa87,
    ];

    /// The asymmetric algorithms: the ones an authorization server may sign with.
    pub fn asymmetric() -> impl Iterator<Item = Algorithm> {
        Self::ALL.into_iter().filter(|a| a.family() != Family::Hmac)
    }

    /// The JOSE name (`alg` value).
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::ES512 => "ES512",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::MlDsa44 => "ML-DSA-44",
            Algorithm::MlDsa65 => "ML-DSA-65",
            Algorithm::MlDsa87 => "ML-DSA-87",
        }
    }

    /// Looks an `alg` value up. `none` and unknown names are errors of their own.
    pub fn from_name(name: &str) -> Result<Algorithm, Error> {
        if name == "none" {
            return Err(Error::AlgNone);
        }
        Self::ALL.into_iter().find(|a| a.name() == name).ok_or(Error::UnknownAlgorithm)
    }

    pub const fn family(self) -> Family {
        match self {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Family::Hmac,
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => Family::RsaPkcs1,
            Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512 => Family::RsaPss,
            Algorithm::ES256 | Algorithm::ES384 | Algorithm::ES512 => Family::Ecdsa,
            Algorithm::EdDSA => Family::Ed25519,
            Algorithm::MlDsa44 | Algorithm::MlDsa65 | Algorithm::MlDsa87 => Family::MlDsa,
        }
    }

    /// True for the MAC algorithms, which need a shared secret.
    pub const fn is_symmetric(self) -> bool {
        matches!(self.family(), Family::Hmac)
    }

    /// The signature length in bytes, where it is fixed by the algorithm (not for RSA).
    pub const fn fixed_signature_len(self) -> Option<usize> {
        match self {
            Algorithm::HS256 => Some(32),
            Algorithm::HS384 => Some(48),
            Algorithm::HS512 => Some(64),
            Algorithm::ES256 => Some(64),
            Algorithm::ES384 => Some(96),
            Algorithm::ES512 => Some(132),
            Algorithm::EdDSA => Some(64),
            Algorithm::MlDsa44 => Some(2420),
            Algorithm::MlDsa65 => Some(3309),
            Algorithm::MlDsa87 => Some(4627),
            _ => None,
        }
    }

    /// The EC curve name (`crv`) for ECDSA and EdDSA.
    pub const fn curve(self) -> Option<&'static str> {
        match self {
            Algorithm::ES256 => Some("P-256"),
            Algorithm::ES384 => Some("P-384"),
            Algorithm::ES512 => Some("P-521"),
            Algorithm::EdDSA => Some("Ed25519"),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Algorithm::from_name(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_none_is_refused() {
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(alg.name()), Ok(alg));
        }
        assert_eq!(Algorithm::from_name("none"), Err(Error::AlgNone));
        assert_eq!(Algorithm::from_name("NONE"), Err(Error::UnknownAlgorithm));
        assert_eq!(Algorithm::from_name("ES521"), Err(Error::UnknownAlgorithm));
        assert_eq!(Algorithm::asymmetric().count(), 13);
    }
}
