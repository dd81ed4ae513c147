//! # portcullis-jose
//!
//! Strict, fast JOSE for Portcullis and for anyone who verifies JWTs: JWS compact signing and verification
//! (RFC 7515) for HS256/384/512, RS256/384/512, PS256/384/512, ES256/384/512, EdDSA (Ed25519, RFC 8037)
//! and ML-DSA-44/65/87; JWK and JWK Set import and export (RFC 7517, `AKP` keys for ML-DSA); RFC 7638
//! thumbprints; JWT claims validation (RFC 7519) with the RFC 9068 access-token profile; and the stateless checks
//! of DPoP proofs (RFC 9449, [`dpop`]), shared by the authorization server and resource servers.
//!
//! **Design.** Pure and synchronous: no I/O, no async, no clock (time is passed in as [`UnixTime`]). A key
//! carries the one algorithm it may be used with, so a token cannot choose its algorithm (no `alg: none`, no
//! RS256→HS256 key confusion). Claims are reachable only through a [`jwt::Verified`] token. Limits are on
//! by default: token size, JSON depth, key-set size. All cryptography is aws-lc-rs; the parsing, the JSON
//! scanner and the validation are our own, because strictness and speed there are the point.
//!
//! **Non-goals.** JWE, the JWS JSON serializations for tokens (they are refused where a token is expected),
//! unencoded payloads (`b64: false`), compression, fetching keys (`jku`, `x5u`), X.509 chains.
//!
//! ```
//! use portcullis_jose::{jwt, Algorithm, KeySet, Policy, SigningKey, UnixTime, AT_JWT};
//!
//! let key = SigningKey::generate(Algorithm::ES256)?.with_kid("2026-11");
//! let keys = KeySet::from_jwks(&key.verifying_key().to_jwk()?, &[])?;
//! let signer = jwt::Signer::new(key, Some(AT_JWT));
//! let now = UnixTime::from_secs(1_764_000_000);
//! let token = signer.sign_json(&format!(
//!     r#"{{"iss":"https://auth.example","sub":"alice","aud":"api","client_id":"app",
//!         "iat":{now},"exp":{exp},"jti":"t-1","scope":"read"}}"#,
//!     now = now.as_secs(), exp = now.as_secs() + 300,
//! ))?;
//!
//! let policy = Policy::access_token("https://auth.example", "api")?;
//! let verified = jwt::verify(&token, &keys, &policy, now)?;
//! assert_eq!(verified.claims.sub().as_deref(), Some("alice"));
//! assert!(verified.claims.has_scope("read"));
//! # Ok::<(), portcullis_jose::Error>(())
//! ```

#![forbid(unsafe_code)]

pub mod alg;
pub mod b64;
pub mod claims;
mod der;
pub mod dpop;
pub mod error;
pub mod json;
pub mod jwk;
pub mod jws;
pub mod jwt;
pub mod key;
pub mod keyset;
pub mod policy;
mod roca;
pub mod time;

pub use alg::Algorithm;
pub use claims::Claims;
pub use error::Error;
pub use key::{SigningKey, VerifyingKey};
pub use keyset::KeySet;
pub use policy::{AlgSet, Policy};
pub use time::UnixTime;

/// The `typ` of an RFC 9068 JWT access token.
pub const AT_JWT: &str = "at+jwt";
