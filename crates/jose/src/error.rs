//! The one error type of the crate. Every rejection has its own variant, so a caller (and a test) can tell
//! *why* a token failed; no variant carries token bytes, so an error can be logged as it is.

use std::fmt;

/// Which part of a compact JWS an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The protected header (first segment).
    Header,
    /// The payload (second segment).
    Payload,
    /// The signature (third segment).
    Signature,
    /// A member of a JWK.
    Key,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Header => "header",
            Part::Payload => "payload",
            Part::Signature => "signature",
            Part::Key => "key",
        })
    }
}

/// What is wrong with a JSON text. I-JSON (RFC 7493) rules apply on top of RFC 8259.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonError {
    /// Not JSON, or JSON with trailing data.
    Syntax,
    /// The same member name twice in one object.
    DuplicateMember,
    /// Nesting deeper than the limit.
    TooDeep,
    /// A number outside the range of `i64` (integers) or of finite `f64` (other numbers).
    NumberOutOfRange,
    /// Bytes that are not UTF-8, or an escaped lone surrogate.
    InvalidUnicode,
    /// The top level is not an object.
    NotAnObject,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonError::Syntax => "malformed JSON",
            JsonError::DuplicateMember => "duplicate member name",
            JsonError::TooDeep => "JSON nested too deeply",
            JsonError::NumberOutOfRange => "number out of range",
            JsonError::InvalidUnicode => "invalid Unicode",
            JsonError::NotAnObject => "JSON value is not an object",
        })
    }
}

/// Why a signature's bytes were refused before any cryptography ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureDefect {
    /// The length is not the one the algorithm produces (e.g. a DER-encoded ECDSA signature).
    Length,
    /// An ECDSA `r` or `s` is zero (CVE-2022-21449).
    ZeroScalar,
    /// An ECDSA `r` or `s` is not below the group order.
    ScalarOutOfRange,
}

/// A rejected token, key or input. `#[non_exhaustive]`: match the variants you act on and keep a catch-all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is longer than the configured limit; nothing was parsed.
    #[error("token is {len} bytes, over the limit of {limit}")]
    TooLarge { len: usize, limit: usize },
    /// Not three dot-separated segments, or an empty segment where one is required.
    #[error("malformed compact serialization")]
    Malformed,
    /// Five segments: a JWE where a JWS was expected.
    #[error("JWE where a JWS was expected")]
    Jwe,
    /// JSON serialization where the compact serialization was expected.
    #[error("JSON serialization where the compact serialization was expected")]
    JsonSerialization,
    /// A segment that is not canonical unpadded base64url (padding, `+`, `/`, whitespace, stray bits).
    #[error("{0} is not canonical base64url")]
    Base64(Part),
    /// A header, claims set or key that is not strict JSON.
    #[error("{part}: {error}")]
    Json { part: Part, error: JsonError },
    /// `alg` is missing or not a string.
    #[error("header has no alg")]
    MissingAlgorithm,
    /// `alg` is `none`.
    #[error("alg none is never accepted")]
    AlgNone,
    /// `alg` names an algorithm this library does not implement.
    #[error("unknown algorithm")]
    UnknownAlgorithm,
    /// The algorithm is not in the policy's allow-list.
    #[error("algorithm {0} is not allowed by the policy")]
    AlgorithmNotAllowed(&'static str),
    /// The header's algorithm is not the one the selected key is bound to (e.g. RS256 key, HS256 token).
    #[error("algorithm {token} does not match the key's algorithm {key}")]
    AlgorithmKeyMismatch { token: &'static str, key: &'static str },
    /// The header carries `jku`, `x5u`, `jwk` or `x5c`: a key chosen by the token itself is never trusted.
    #[error("header parameter {0} would let the token choose its own key")]
    KeyInHeader(&'static str),
    /// `crit` names an extension this library does not implement, or is malformed.
    #[error("unsupported critical header parameter")]
    UnsupportedCritical,
    /// `b64: false` (RFC 7797 unencoded payload).
    #[error("unencoded payload (b64) is not supported")]
    UnencodedPayload,
    /// `zip` is present (compression before signing is refused).
    #[error("compressed payload (zip) is not supported")]
    Compressed,
    /// A header member has the wrong JSON type (e.g. `kid` not a string).
    #[error("header member {0} has the wrong type")]
    HeaderType(&'static str),
    /// `typ` is not what the policy requires.
    #[error("token type does not match the policy")]
    WrongType,
    /// No trusted key has the token's `kid` (or, without a `kid`, no single key fits).
    #[error("no trusted key matches the token")]
    UnknownKey,
    /// The signature bytes are malformed for the algorithm.
    #[error("malformed signature: {0:?}")]
    MalformedSignature(SignatureDefect),
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// A claim has the wrong JSON type (e.g. `exp` a string, `nbf` not an integer).
    #[error("claim {0} has the wrong type")]
    ClaimType(&'static str),
    /// A time claim is outside the range of a NumericDate (0 ..= 253402300799).
    #[error("claim {0} is out of range")]
    ClaimOutOfRange(&'static str),
    /// A claim the policy requires is absent.
    #[error("required claim {0} is missing")]
    MissingClaim(String),
    /// `exp` is in the past (beyond the leeway).
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token is not yet valid")]
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    #[error("token was issued in the future")]
    IssuedInFuture,
    /// The token is older than the policy's maximum age.
    #[error("token is too old")]
    TooOld,
    /// `iss` is not the expected issuer.
    #[error("issuer does not match")]
    WrongIssuer,
    /// `aud` does not contain the expected audience.
    #[error("audience does not match")]
    WrongAudience,
    /// A key is malformed, unsupported, too weak or inconsistent.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// The key may not be used for this operation (`use`, `key_ops`, or a public key asked to sign).
    #[error("key is not permitted for this operation: {0}")]
    KeyUsage(&'static str),
    /// A key set is ambiguous: duplicate `kid`s, or symmetric and asymmetric keys mixed.
    #[error("ambiguous key set: {0}")]
    AmbiguousKeySet(&'static str),
    /// A policy that cannot be satisfied or was left incomplete.
    #[error("invalid policy: {0}")]
    InvalidPolicy(&'static str),
    /// The cryptographic backend failed (e.g. the system RNG); not caused by the input.
    #[error("cryptographic backend failure")]
    Crypto,
    /// A DPoP proof (RFC 9449) failed a check of its own.
    #[error("DPoP proof: {0}")]
    Dpop(crate::dpop::DpopError),
}

impl Error {
    pub(crate) fn json(part: Part) -> impl Fn(JsonError) -> Error {
        move |error| Error::Json { part, error }
    }
}
