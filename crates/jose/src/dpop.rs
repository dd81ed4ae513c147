//! DPoP proofs (RFC 9449): checking a proof-of-possession JWT, in one place for the authorization server and
//! for resource servers.
//!
//! [`verify_proof`] performs the checks of RFC 9449 §4.3 that need no state:
//! - `typ` is `dpop+jwt`;
//! - the algorithm is asymmetric and in the policy's list, and fits the key;
//! - the header carries a public `jwk` (a private member is refused) and the signature verifies with it;
//! - `htm` is the request's method, and `htu` its URL with query and fragment ignored (both compared after
//!   RFC 3986 normalisation);
//! - `iat` is within the policy's window; `jti` is present;
//! - `ath` is the hash of the access token when one is presented, and `nonce` is the expected one when the
//!   server demands one.
//!
//! What needs state is the caller's: refusing a replayed `jti` (record it only after the proof passed, so that a
//! failed proof cannot burn it), and comparing [`Proof::jkt`] with the access token's `cnf.jkt`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lc_rs::{constant_time, digest, hmac};

use crate::error::Part;
use crate::jws::{check_header, split, HeaderParams, HeaderRules};
use crate::{b64, json, jwk, AlgSet, Algorithm, Error, SigningKey, UnixTime, VerifyingKey};

/// The `typ` of a DPoP proof.
pub const DPOP_JWT: &str = "dpop+jwt";

/// Why a DPoP proof was refused, beyond the JWS and claim errors the rest of the crate reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DpopError {
    /// The header has no `jwk`, or it is not an object.
    MissingKey,
    /// The header's `jwk` carries private key material.
    PrivateKey,
    /// `htm` is not the request's method.
    WrongMethod,
    /// `htu` is not the request's URL (query and fragment aside).
    WrongUrl,
    /// `iat` is older than the window allows.
    Stale,
    /// `iat` is further in the future than the allowed clock skew.
    Future,
    /// An access token was presented but the proof has no `ath`.
    MissingAccessTokenHash,
    /// `ath` is not the hash of the presented access token.
    WrongAccessTokenHash,
    /// The server demands a nonce and the proof has none, or another one.
    WrongNonce,
    /// The proof's `jti` was already used (or the replay cache is full of live proofs).
    Replayed,
}

impl std::fmt::Display for DpopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DpopError {
    /// What failed, in words safe to send back (nothing of the proof itself).
    pub const fn as_str(&self) -> &'static str {
        match self {
            DpopError::MissingKey => "the proof's header has no public jwk",
            DpopError::PrivateKey => "the proof's jwk contains a private key",
            DpopError::WrongMethod => "htm does not match the request method",
            DpopError::WrongUrl => "htu does not match the request URL",
            DpopError::Stale => "the proof is too old",
            DpopError::Future => "the proof was issued in the future",
            DpopError::MissingAccessTokenHash => "the proof has no ath for the access token",
            DpopError::WrongAccessTokenHash => "ath does not match the access token",
            DpopError::WrongNonce => "the proof does not carry the expected nonce",
            DpopError::Replayed => "the proof was already used",
        }
    }
}

/// What is acceptable in a proof, whatever the request.
#[derive(Debug, Clone)]
pub struct ProofPolicy {
    /// Algorithms a proof may use; symmetric ones are never accepted, whatever this says.
    pub algorithms: AlgSet,
    /// How old `iat` may be, in seconds (RFC 9449 §11.1: short; also how long a `jti` must be remembered).
    pub max_age: i64,
    /// How far in the future `iat` may be, for clock skew.
    pub max_skew: i64,
    /// The largest proof accepted, in bytes.
    pub max_bytes: usize,
    /// Parsed proof keys to reuse across requests (see [`ProofKeys`]); `None` parses each proof's key.
    pub keys: Option<Arc<ProofKeys>>,
}

impl Default for ProofPolicy {
    fn default() -> Self {
        ProofPolicy {
            algorithms: AlgSet::of(&Algorithm::asymmetric().collect::<Vec<_>>()),
            max_age: 60,
            max_skew: 5,
            max_bytes: 8 * 1024,
            keys: None,
        }
    }
}

/// The request a proof must be for.
#[derive(Debug, Clone, Copy)]
pub struct ProofRequest<'a> {
    /// The HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// The URL the request was made to, as the client addressed it (scheme, host, port, path).
    pub url: &'a str,
    /// The access token presented with the request, at a resource server (checked against `ath`).
    pub access_token: Option<&'a str>,
    /// The nonce the server demands, if it demands one.
    pub nonce: Option<&'a str>,
}

/// A proof that passed every stateless check.
#[derive(Debug)]
pub struct Proof {
    /// The RFC 7638 thumbprint of the proof's key: what `cnf.jkt` of a bound token must equal.
    pub jkt: String,
    /// The proof's `jti`, for the caller's replay check.
    pub jti: String,
    pub iat: i64,
    /// The proof's `nonce`, for a server whose nonces are not one fixed value (it checks them itself).
    pub nonce: Option<String>,
    /// The proof's public key.
    pub key: Arc<VerifyingKey>,
}

/// The public keys of recent proofs, by the exact text of their `jwk` header, with their thumbprints. A client
/// signs all its proofs with one key, so a resource server that keeps this next to its policy parses each
/// client's key once, not on every request. Bounded: when full it starts over, so a flood of new keys costs no
/// more than parsing each. Entries are only ever the result of parsing their own text, so a cache hit is exactly
/// what a miss would have computed.
#[derive(Debug)]
pub struct ProofKeys {
    capacity: usize,
    keys: Mutex<HashMap<Box<str>, ProofKey>>,
}

/// A parsed proof key and its RFC 7638 thumbprint.
type ProofKey = (Arc<VerifyingKey>, Arc<str>);

impl ProofKeys {
    pub fn new(capacity: usize) -> Self {
        ProofKeys { capacity: capacity.max(1), keys: Mutex::new(HashMap::new()) }
    }

    fn get_or_parse(&self, jwk_text: &str, alg: Algorithm) -> Result<ProofKey, Error> {
        if let Some(hit) = self.keys.lock().unwrap_or_else(|p| p.into_inner()).get(jwk_text) {
            return Ok(hit.clone());
        }
        let parsed = parse_proof_key(jwk_text, alg)?;
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.len() >= self.capacity {
            keys.clear();
        }
        keys.insert(jwk_text.into(), parsed.clone());
        Ok(parsed)
    }
}

/// A proof's `jwk`, which must be public, bound to `alg`, with its thumbprint.
fn parse_proof_key(jwk_text: &str, alg: Algorithm) -> Result<ProofKey, Error> {
    let key = jwk::public_key_for(jwk_text, alg)?.ok_or(Error::Dpop(DpopError::PrivateKey))?;
    let jkt: Arc<str> = key.thumbprint().into();
    Ok((Arc::new(key), jkt))
}

/// Checks a DPoP proof (the value of one `DPoP` header) for `request` at `now`.
pub fn verify_proof(
    proof: &str,
    request: &ProofRequest<'_>,
    policy: &ProofPolicy,
    now: UnixTime,
) -> Result<Proof, Error> {
    let seg = split(proof, policy.max_bytes)?;
    let header_bytes = b64::decode(seg.header.as_bytes()).ok_or(Error::Base64(Part::Header))?;
    let header = String::from_utf8(header_bytes)
        .map_err(|_| Error::Json { part: Part::Header, error: crate::error::JsonError::InvalidUnicode })?;
    let members = json::parse_object(&header, json::DEFAULT_MAX_DEPTH).map_err(Error::json(Part::Header))?;
    let facts = check_header(&members, HeaderRules { allow_jwk: true })?;
    if facts.typ.map(|t| t.to_cow()).as_deref() != Some(DPOP_JWT) {
        return Err(Error::WrongType);
    }
    let alg = facts.alg;
    if alg.is_symmetric() || !policy.algorithms.contains(alg) {
        return Err(Error::AlgorithmNotAllowed(alg.name()));
    }
    let jwk_value = json::find(&members, "jwk").ok_or(Error::Dpop(DpopError::MissingKey))?;
    if !matches!(jwk_value.kind(), json::Kind::Object) {
        return Err(Error::Dpop(DpopError::MissingKey));
    }
    let (key, jkt) = match &policy.keys {
        Some(cache) => cache.get_or_parse(jwk_value.text(), alg)?,
        None => parse_proof_key(jwk_value.text(), alg)?,
    };
    if key.algorithm() != alg {
        return Err(Error::AlgorithmKeyMismatch { token: alg.name(), key: key.algorithm().name() });
    }
    if seg.signature.is_empty() {
        return Err(Error::Malformed);
    }
    let signature = b64::decode(seg.signature.as_bytes()).ok_or(Error::Base64(Part::Signature))?;
    key.verify(seg.signing_input.as_bytes(), &signature)?;

    let payload = b64::decode(seg.payload.as_bytes()).ok_or(Error::Base64(Part::Payload))?;
    let claims = json::parse_object_bytes(&payload, json::DEFAULT_MAX_DEPTH).map_err(Error::json(Part::Payload))?;
    // String claims, borrowed from the payload unless they have escapes.
    let text = |name: &'static str| {
        let value = json::find(&claims, name).ok_or_else(|| Error::MissingClaim(name.into()))?;
        Ok::<_, Error>(value.as_str().ok_or(Error::ClaimType(name))?.to_cow())
    };
    let jti = text("jti")?;
    if jti.is_empty() {
        return Err(Error::MissingClaim("jti".into()));
    }
    if text("htm")? != request.method {
        return Err(Error::Dpop(DpopError::WrongMethod));
    }
    if !same_url(&text("htu")?, request.url) {
        return Err(Error::Dpop(DpopError::WrongUrl));
    }
    let jti = jti.into_owned();
    let iat = json::find(&claims, "iat").ok_or_else(|| Error::MissingClaim("iat".into()))?;
    let iat = iat.as_i64().ok_or(Error::ClaimType("iat"))?;
    if iat > now.as_secs().saturating_add(policy.max_skew) {
        return Err(Error::Dpop(DpopError::Future));
    }
    if iat < now.as_secs().saturating_sub(policy.max_age) {
        return Err(Error::Dpop(DpopError::Stale));
    }
    if let Some(token) = request.access_token {
        match json::find(&claims, "ath").and_then(|v| v.as_str()) {
            None => return Err(Error::Dpop(DpopError::MissingAccessTokenHash)),
            Some(ath) if !ath_matches(&ath.to_cow(), token) => {
                return Err(Error::Dpop(DpopError::WrongAccessTokenHash))
            }
            Some(_) => {}
        }
    }
    let proof_nonce = match json::find(&claims, "nonce") {
        None => None,
        Some(v) => Some(v.as_str().ok_or(Error::ClaimType("nonce"))?.to_cow().into_owned()),
    };
    if let Some(nonce) = request.nonce {
        if proof_nonce.as_deref() != Some(nonce) {
            return Err(Error::Dpop(DpopError::WrongNonce));
        }
    }
    Ok(Proof { jkt: jkt.as_ref().to_owned(), jti, iat, nonce: proof_nonce, key })
}

/// The `jti`s of proofs already accepted, each kept until its proof could no longer pass the `iat` window
/// (`iat + max_age + max_skew`), in bounded memory. Record a `jti` only after the proof passed every other check,
/// so that a forged or failed proof cannot burn a legitimate client's `jti`. One per process; instances that
/// share replay protection do it through their store instead. Size it for the peak rate of proofs times the
/// window (`max_age + max_skew`): when it is full of live entries it refuses rather than evicts, because
/// evicting would let a captured proof be replayed.
#[derive(Debug)]
pub struct JtiCache {
    capacity: usize,
    /// `jti` → until when it matters.
    seen: std::collections::HashMap<String, i64>,
}

impl JtiCache {
    /// A cache holding at most `capacity` live `jti`s.
    pub fn new(capacity: usize) -> Self {
        JtiCache { capacity: capacity.max(1), seen: std::collections::HashMap::new() }
    }

    /// Records `proof`'s `jti`: `Ok` the first time, `Err` for a replay. When the cache is full of live entries,
    /// the proof is refused too (fail closed: a flood of proofs must not push out the `jti`s it would replay).
    pub fn record(&mut self, proof: &Proof, policy: &ProofPolicy, now: UnixTime) -> Result<(), Error> {
        let now = now.as_secs();
        if self.seen.get(&proof.jti).is_some_and(|until| *until >= now) {
            return Err(Error::Dpop(DpopError::Replayed));
        }
        if self.seen.len() >= self.capacity {
            self.seen.retain(|_, until| *until >= now);
            if self.seen.len() >= self.capacity {
                return Err(Error::Dpop(DpopError::Replayed));
            }
        }
        let until = proof.iat.saturating_add(policy.max_age).saturating_add(policy.max_skew);
        self.seen.insert(proof.jti.clone(), until);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// How long one nonce period lasts, in seconds. A nonce is accepted in the period it was issued in and the next,
/// so it lives between one and two periods.
pub const NONCE_PERIOD: i64 = 300;

const NONCE_TAG_LEN: usize = 16;

/// Server nonces (RFC 9449 §8, §9) that need no storage: `base64url(period ‖ tag)`, where `period` is the Unix time
/// divided by [`NONCE_PERIOD`] (8 bytes, big-endian) and `tag` the first 16 bytes of HMAC-SHA256 of it under a
/// secret. Every process with the same secret issues and accepts the same nonces, so instances behind a load
/// balancer need no shared state; each period's nonce differs, so what a client holds expires with its period.
pub struct Nonces {
    key: hmac::Key,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nonces([redacted])")
    }
}

impl Nonces {
    /// Nonces keyed by `secret` (at least 32 random bytes, shared by every instance that must accept them).
    pub fn new(secret: &[u8]) -> Self {
        Nonces { key: hmac::Key::new(hmac::HMAC_SHA256, secret) }
    }

    fn tag(&self, period: i64) -> [u8; NONCE_TAG_LEN] {
        let mac = hmac::sign(&self.key, &[b"dpop-nonce:".as_slice(), &period.to_be_bytes()].concat());
        let mut tag = [0u8; NONCE_TAG_LEN];
        tag.copy_from_slice(&mac.as_ref()[..NONCE_TAG_LEN]);
        tag
    }

    /// The nonce to hand out at `now`.
    pub fn issue(&self, now: UnixTime) -> String {
        let period = now.as_secs().div_euclid(NONCE_PERIOD);
        b64::encode(&[period.to_be_bytes().as_slice(), &self.tag(period)].concat())
    }

    /// Whether `nonce` was issued in this period or the one before (the tag compared in constant time).
    pub fn accepts(&self, nonce: &str, now: UnixTime) -> bool {
        let Some(bytes) = b64::decode_fixed::<{ 8 + NONCE_TAG_LEN }>(nonce.as_bytes()) else { return false };
        let mut period = [0u8; 8];
        period.copy_from_slice(&bytes[..8]);
        let period = i64::from_be_bytes(period);
        let current = now.as_secs().div_euclid(NONCE_PERIOD);
        if period != current && period != current.saturating_sub(1) {
            return false;
        }
        constant_time::verify_slices_are_equal(&self.tag(period), &bytes[8..]).is_ok()
    }
}

/// Whether `ath` is the hash of `access_token`, compared as bytes (the canonical encoding is unique).
fn ath_matches(ath: &str, access_token: &str) -> bool {
    b64::decode_fixed::<32>(ath.as_bytes())
        .is_some_and(|h| h[..] == *digest::digest(&digest::SHA256, access_token.as_bytes()).as_ref())
}

/// The `ath` of a proof sent with `access_token`: base64url of its SHA-256 (RFC 9449 §4.2).
pub fn access_token_hash(access_token: &str) -> String {
    b64::encode(digest::digest(&digest::SHA256, access_token.as_bytes()).as_ref())
}

/// Signs a DPoP proof, as a client makes one: header `typ: dpop+jwt` with the key's public JWK, and `claims`
/// (a JSON object: `jti`, `htm`, `htu`, `iat`, and `ath` or `nonce` where they apply).
pub fn sign_proof(key: &SigningKey, claims: &str) -> Result<String, Error> {
    let public = key.verifying_key().to_jwk()?;
    let params = HeaderParams { typ: Some(DPOP_JWT), cty: None, extra: &[("jwk", public.as_str())] };
    crate::jws::sign(key, &params, claims.as_bytes())
}

/// Whether `htu` names the request URL (RFC 9449 §4.3, step 9). Identical text (query and fragment aside) needs no
/// normalisation: the normal form of equal strings is equal.
fn same_url(htu: &str, url: &str) -> bool {
    let base = |u: &str| -> usize { u.find(['?', '#']).unwrap_or(u.len()) };
    let (a, b) = (&htu[..base(htu)], &url[..base(url)]);
    if a == b {
        return a.starts_with("https://") || a.starts_with("http://") || normalize_url(a).is_some();
    }
    matches!((normalize_url(a), normalize_url(b)), (Some(x), Some(y)) if x == y)
}

/// The form in which `htu` and the request URL are compared (RFC 9449 §4.3, step 9): scheme and host in lower
/// case, the scheme's default port dropped, an empty path as `/`, percent-encoding normalised and dot segments
/// resolved (RFC 3986 §6.2.2–6.2.3), query and fragment removed. `None` for what is not an absolute http(s) URL.
pub fn normalize_url(url: &str) -> Option<String> {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let authority = authority.to_ascii_lowercase();
    // An IPv6 literal keeps its colons inside brackets.
    let (host, port) = match authority.find(']') {
        Some(end) => (&authority[..=end], authority[end + 1..].strip_prefix(':')),
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority.as_str(), None),
        },
    };
    let authority = match port {
        None | Some("") => host.to_owned(),
        Some(p) if p == default_port => host.to_owned(),
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => format!("{host}:{p}"),
        Some(_) => return None,
    };
    let mut segments: Vec<String> = Vec::new();
    let path = if path.is_empty() { "/" } else { path };
    let trailing = path.ends_with('/');
    for segment in path[1..].split('/') {
        match normalize_escapes(segment)?.as_str() {
            "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other.to_owned()),
        }
    }
    let mut out = format!("{scheme}://{authority}");
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if segments.is_empty() || (trailing && !segments.last().is_some_and(|s| s.is_empty())) {
        out.push('/');
    }
    Some(out)
}

/// Decodes percent-escapes of unreserved characters and upper-cases the hex digits of the rest.
fn normalize_escapes(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = String::with_capacity(segment.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            let byte = u8::from_str_radix(hex, 16).ok()?;
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                out.push(char::from(byte));
            } else {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
            }
            i += 3;
        } else {
            out.push(char::from(bytes[i]));
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://rs.example/orders";
    const NOW: i64 = 1_800_000_000;

    fn request<'a>(access_token: Option<&'a str>, nonce: Option<&'a str>) -> ProofRequest<'a> {
        ProofRequest { method: "GET", url: URL, access_token, nonce }
    }

    fn proof(key: &SigningKey, claims: &str) -> String {
        sign_proof(key, claims).unwrap()
    }

    fn check(p: &str, r: &ProofRequest<'_>) -> Result<Proof, Error> {
        verify_proof(p, r, &ProofPolicy::default(), UnixTime::from_secs(NOW))
    }

    #[test]
    fn cached_proof_keys_give_the_same_answers() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        let cache = Arc::new(ProofKeys::new(2));
        let policy = ProofPolicy { keys: Some(Arc::clone(&cache)), ..ProofPolicy::default() };
        let claims = |jti: &str| format!(r#"{{"jti":"{jti}","htm":"GET","htu":"{URL}","iat":{NOW}}}"#);
        let at = UnixTime::from_secs(NOW);
        let first = verify_proof(&proof(&key, &claims("a")), &request(None, None), &policy, at).unwrap();
        let second = verify_proof(&proof(&key, &claims("b")), &request(None, None), &policy, at).unwrap();
        assert_eq!(first.jkt, key.verifying_key().thumbprint());
        assert!(Arc::ptr_eq(&first.key, &second.key), "the second proof reused the parsed key");
        // A forged signature still fails with a cached key; a private jwk is never cached.
        let other = SigningKey::generate(Algorithm::ES256).unwrap();
        let good = proof(&key, &claims("c"));
        let (input, _) = good.rsplit_once('.').unwrap();
        let forged = format!("{input}.{}", b64::encode(&other.sign(input.as_bytes()).unwrap()));
        assert_eq!(verify_proof(&forged, &request(None, None), &policy, at).unwrap_err(), Error::BadSignature);
        // Full: it starts over, and still answers right.
        for k in 0..3 {
            let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
            let p = verify_proof(&proof(&key, &claims(&format!("k{k}"))), &request(None, None), &policy, at).unwrap();
            assert_eq!(p.jkt, key.verifying_key().thumbprint());
        }
        assert!(cache.keys.lock().unwrap().len() <= 2);
    }

    #[test]
    fn nonces_live_one_to_two_periods_and_are_bound_to_the_secret() {
        let n = Nonces::new(&[1; 32]);
        let at = |t: i64| UnixTime::from_secs(t);
        let t = 1_700_000_100;
        let nonce = n.issue(at(t));
        assert!(n.accepts(&nonce, at(t)));
        assert!(n.accepts(&nonce, at(t + NONCE_PERIOD)), "accepted in the next period");
        assert!(!n.accepts(&nonce, at(t + 2 * NONCE_PERIOD)), "expired after that");
        assert!(!n.accepts(&nonce, at(t - NONCE_PERIOD)), "not before it was issued");
        assert!(!Nonces::new(&[2; 32]).accepts(&nonce, at(t)), "another secret");
        assert_eq!(n.issue(at(t)), Nonces::new(&[1; 32]).issue(at(t)), "instances with the same secret agree");
        let mut forged = b64::decode(nonce.as_bytes()).unwrap();
        forged[7] ^= 1;
        assert!(!n.accepts(&b64::encode(&forged), at(t)), "the period is authenticated");
        for junk in ["", "x", &nonce[1..], &format!("{nonce}A")] {
            assert!(!n.accepts(junk, at(t)), "{junk:?}");
        }
        assert_eq!(format!("{n:?}"), "Nonces([redacted])");
    }

    #[test]
    fn a_good_proof_passes_and_names_its_key() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        let ath = b64::encode(digest::digest(&digest::SHA256, b"the.access.token").as_ref());
        let p = proof(
            &key,
            &format!(r#"{{"jti":"j1","htm":"GET","htu":"{URL}?x=1","iat":{NOW},"ath":"{ath}","nonce":"n1"}}"#),
        );
        let ok = check(&p, &request(Some("the.access.token"), Some("n1"))).unwrap();
        assert_eq!(ok.jkt, key.verifying_key().thumbprint());
        assert_eq!((ok.jti.as_str(), ok.iat), ("j1", NOW));
        for alg in [Algorithm::EdDSA, Algorithm::PS256, Algorithm::MlDsa44] {
            let key = SigningKey::generate(alg).unwrap();
            let p = proof(&key, &format!(r#"{{"jti":"j","htm":"GET","htu":"{URL}","iat":{NOW}}}"#));
            assert!(check(&p, &request(None, None)).is_ok(), "{alg:?}");
        }
    }

    #[test]
    fn each_failed_check_has_its_own_error() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        let claims = |extra: &str| format!(r#"{{"jti":"j","htm":"GET","htu":"{URL}","iat":{NOW}{extra}}}"#);
        let cases: Vec<(String, ProofRequest<'_>, Error)> = vec![
            (proof(&key, &claims("").replace("GET", "POST")), request(None, None), Error::Dpop(DpopError::WrongMethod)),
            (
                proof(&key, &claims("").replace("/orders", "/other")),
                request(None, None),
                Error::Dpop(DpopError::WrongUrl),
            ),
            (
                proof(&key, &claims("").replace(&NOW.to_string(), &(NOW - 61).to_string())),
                request(None, None),
                Error::Dpop(DpopError::Stale),
            ),
            (
                proof(&key, &claims("").replace(&NOW.to_string(), &(NOW + 6).to_string())),
                request(None, None),
                Error::Dpop(DpopError::Future),
            ),
            (proof(&key, &claims("")), request(Some("t"), None), Error::Dpop(DpopError::MissingAccessTokenHash)),
            (
                proof(&key, &claims(r#","ath":"AAAA""#)),
                request(Some("t"), None),
                Error::Dpop(DpopError::WrongAccessTokenHash),
            ),
            (proof(&key, &claims("")), request(None, Some("n")), Error::Dpop(DpopError::WrongNonce)),
            (
                proof(&key, &claims("").replace(r#""jti":"j","#, "")),
                request(None, None),
                Error::MissingClaim("jti".into()),
            ),
            (
                proof(&key, &claims("").replace(&NOW.to_string(), &format!("\"{NOW}\""))),
                request(None, None),
                Error::ClaimType("iat"),
            ),
        ];
        for (p, r, expected) in cases {
            assert_eq!(check(&p, &r).unwrap_err(), expected);
        }
    }

    #[test]
    fn the_header_must_be_a_dpop_proof_with_a_public_key() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        let claims = format!(r#"{{"jti":"j","htm":"GET","htu":"{URL}","iat":{NOW}}}"#);
        let with_header = |typ: &str, jwk: &str| {
            let params = HeaderParams { typ: Some(typ), cty: None, extra: &[("jwk", jwk)] };
            crate::jws::sign(&key, &params, claims.as_bytes()).unwrap()
        };
        let public = key.verifying_key().to_jwk().unwrap();
        let private = key.to_jwk().unwrap();
        assert_eq!(check(&with_header("JWT", &public), &request(None, None)).unwrap_err(), Error::WrongType);
        assert_eq!(
            check(&with_header(DPOP_JWT, &private), &request(None, None)).unwrap_err(),
            Error::Dpop(DpopError::PrivateKey)
        );
        let other = SigningKey::generate(Algorithm::ES256).unwrap().verifying_key().to_jwk().unwrap();
        assert_eq!(check(&with_header(DPOP_JWT, &other), &request(None, None)).unwrap_err(), Error::BadSignature);
        let params = HeaderParams { typ: Some(DPOP_JWT), cty: None, extra: &[] };
        let keyless = crate::jws::sign(&key, &params, claims.as_bytes()).unwrap();
        assert_eq!(check(&keyless, &request(None, None)).unwrap_err(), Error::Dpop(DpopError::MissingKey));
        // alg: none, and a symmetric algorithm, whatever the policy says.
        let header = b64::encode(format!(r#"{{"typ":"dpop+jwt","alg":"none","jwk":{public}}}"#).as_bytes());
        let unsigned = format!("{header}.{}.", b64::encode(claims.as_bytes()));
        assert_eq!(check(&unsigned, &request(None, None)).unwrap_err(), Error::AlgNone);
        let hmac = SigningKey::generate(Algorithm::HS256).unwrap();
        let params = HeaderParams { typ: Some(DPOP_JWT), cty: None, extra: &[("jwk", &public)] };
        let symmetric = crate::jws::sign(&hmac, &params, claims.as_bytes()).unwrap();
        let policy = ProofPolicy { algorithms: AlgSet::all(), ..ProofPolicy::default() };
        let refused = verify_proof(&symmetric, &request(None, None), &policy, UnixTime::from_secs(NOW));
        assert_eq!(refused.unwrap_err(), Error::AlgorithmNotAllowed("HS256"));
        // An ES256 header over an Ed25519 key.
        let ed = SigningKey::generate(Algorithm::EdDSA).unwrap().verifying_key().to_jwk().unwrap();
        assert!(check(&with_header(DPOP_JWT, &ed), &request(None, None)).is_err());
    }

    #[test]
    fn a_jti_is_accepted_once_within_its_window_in_bounded_memory() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        let policy = ProofPolicy::default();
        let make = |jti: &str, iat: i64| {
            let p = proof(&key, &format!(r#"{{"jti":"{jti}","htm":"GET","htu":"{URL}","iat":{iat}}}"#));
            verify_proof(&p, &request(None, None), &policy, UnixTime::from_secs(iat)).unwrap()
        };
        let mut cache = JtiCache::new(3);
        let first = make("a", NOW);
        cache.record(&first, &policy, UnixTime::from_secs(NOW)).unwrap();
        assert_eq!(cache.record(&first, &policy, UnixTime::from_secs(NOW + 1)), Err(Error::Dpop(DpopError::Replayed)));
        // A failed proof never reaches the cache, so its jti stays usable: only verified proofs are recorded.
        cache.record(&make("b", NOW), &policy, UnixTime::from_secs(NOW)).unwrap();
        cache.record(&make("c", NOW), &policy, UnixTime::from_secs(NOW)).unwrap();
        assert_eq!(
            cache.record(&make("d", NOW), &policy, UnixTime::from_secs(NOW)),
            Err(Error::Dpop(DpopError::Replayed)),
            "full of live entries: refused, not evicted"
        );
        // Once the window has passed, entries leave and new proofs are recorded.
        let later = NOW + policy.max_age + policy.max_skew + 1;
        cache.record(&make("d", later), &policy, UnixTime::from_secs(later)).unwrap();
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn urls_compare_after_normalisation() {
        let same = [
            ("https://server.example.com/token", "HTTPS://Server.Example.COM:443/token"),
            ("https://server.example.com", "https://server.example.com/"),
            ("http://127.0.0.1:8080/a/./b/../c", "http://127.0.0.1:8080/a/c"),
            ("https://rs.example/%7euser/x?query=1#frag", "https://rs.example/~user/x"),
            ("https://rs.example/a%2fb", "https://rs.example/a%2Fb"),
        ];
        for (a, b) in same {
            assert_eq!(normalize_url(a), normalize_url(b), "{a} ~ {b}");
            assert!(normalize_url(a).is_some());
        }
        let different = [
            ("https://server.example.com/token", "http://server.example.com/token"),
            ("https://server.example.com/token", "https://server.example.com:8443/token"),
            ("https://server.example.com/token", "https://server.example.com/token/"),
            ("https://server.example.com/token", "https://other.example.com/token"),
            ("https://rs.example/a%2fb", "https://rs.example/a/b"),
        ];
        for (a, b) in different {
            assert_ne!(normalize_url(a), normalize_url(b), "{a} vs {b}");
        }
        for bad in ["/token", "ftp://x/y", "https://user@host/x", "https://", "https://host:port/x"] {
            assert_eq!(normalize_url(bad), None, "{bad}");
        }
    }
}
