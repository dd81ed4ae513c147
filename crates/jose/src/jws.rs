//! JWS compact serialization (RFC 7515 §3.1, §5.1, §5.2) over arbitrary payload bytes.
//!
//! Verification follows one order, cheapest check first, and stops at the first failure: size limit (before
//! any parsing), shape (JSON serialization, JWE, segment count), base64url, header JSON, header rules
//! (`alg`, `crit`, `b64`, `zip`, key-bearing parameters), key selection by `kid` from the trusted set, the
//! key's algorithm, the policy's algorithm list, and last the signature.

use std::borrow::Cow;

use crate::alg::Algorithm;
use crate::b64;
use crate::error::{Error, Part};
use crate::json::{self, find, JsonStr, Kind, Member, RawValue};
use crate::key::SigningKey;
use crate::keyset::KeySet;
use crate::policy::AlgSet;

/// The default largest token accepted, in bytes. Large enough for an ML-DSA-87 signature.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Header parameters that would let a token name its own key. Refused unless a caller (DPoP) asks for `jwk`.
const KEY_BEARING: [&str; 4] = ["jku", "x5u", "jwk", "x5c"];

/// A string inside an owned buffer, by position.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    start: u32,
    end: u32,
    escaped: bool,
}

impl Span {
    pub(crate) fn of(base: &str, s: JsonStr<'_>) -> Span {
        let start = (s.raw().as_ptr() as usize).saturating_sub(base.as_ptr() as usize);
        let end = start + s.raw().len();
        Span { start: start as u32, end: end as u32, escaped: s.is_escaped() }
    }

    pub(crate) fn get<'a>(&self, base: &'a str) -> Cow<'a, str> {
        let raw = base.get(self.start as usize..self.end as usize).unwrap_or_default();
        JsonStr::from_raw(raw, self.escaped).to_cow()
    }
}

/// A verified JOSE header.
#[derive(Debug, Clone)]
pub struct Header {
    json: String,
    alg: Algorithm,
    kid: Option<Span>,
    typ: Option<Span>,
    cty: Option<Span>,
}

impl Header {
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }
    pub fn kid(&self) -> Option<Cow<'_, str>> {
        self.kid.map(|s| s.get(&self.json))
    }
    pub fn typ(&self) -> Option<Cow<'_, str>> {
        self.typ.map(|s| s.get(&self.json))
    }
    pub fn cty(&self) -> Option<Cow<'_, str>> {
        self.cty.map(|s| s.get(&self.json))
    }
    /// The header's JSON text.
    pub fn json(&self) -> &str {
        &self.json
    }
    /// A header member's value, by name.
    pub fn get(&self, name: &str) -> Option<json::RawValue<'_>> {
        let members = json::parse_object(&self.json, json::DEFAULT_MAX_DEPTH).ok()?;
        find(&members, name).copied()
    }
}

/// The rules a header must follow; `allow_jwk` is for DPoP proofs, whose key travels in the header.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HeaderRules {
    pub allow_jwk: bool,
}

/// What the header rules extracted.
pub(crate) struct HeaderFacts<'a> {
    pub alg: Algorithm,
    pub kid: Option<JsonStr<'a>>,
    pub typ: Option<JsonStr<'a>>,
    pub cty: Option<JsonStr<'a>>,
    /// No member's value is an object or an array.
    pub flat: bool,
}

pub(crate) fn check_header<'a>(members: &[Member<'a>], rules: HeaderRules) -> Result<HeaderFacts<'a>, Error> {
    let mut scan = HeaderScan::new(rules);
    for m in members {
        scan.see(&m.key, &m.value);
    }
    scan.verdict()
}

/// The header rules applied one member at a time (so a header can be checked while it is parsed): `see`
/// records what is there, and `verdict` judges it in a fixed order, whatever the member order.
pub(crate) struct HeaderScan<'a> {
    rules: HeaderRules,
    alg: Option<JsonStr<'a>>,
    kid: Option<JsonStr<'a>>,
    typ: Option<JsonStr<'a>>,
    cty: Option<JsonStr<'a>>,
    alg_not_str: bool,
    key_in_header: Option<&'static str>,
    crit: bool,
    unencoded: bool,
    zip: bool,
    bad_type: Option<&'static str>,
    nested: bool,
}

impl<'a> HeaderScan<'a> {
    pub(crate) fn new(rules: HeaderRules) -> Self {
        HeaderScan {
            rules,
            alg: None,
            kid: None,
            typ: None,
            cty: None,
            alg_not_str: false,
            key_in_header: None,
            crit: false,
            unencoded: false,
            zip: false,
            bad_type: None,
            nested: false,
        }
    }

    pub(crate) fn see(&mut self, key: &JsonStr<'a>, value: &RawValue<'a>) {
        let name = key.to_cow();
        self.nested |= matches!(value.kind(), Kind::Object | Kind::Array);
        let bad_type = &mut self.bad_type;
        let mut string = |slot: &mut Option<JsonStr<'a>>, label: &'static str| match value.as_str() {
            Some(v) => *slot = Some(v),
            None => *bad_type = bad_type.or(Some(label)),
        };
        match name.as_bytes() {
            b"alg" => match value.as_str() {
                Some(v) => self.alg = Some(v),
                None => self.alg_not_str = true,
            },
            b"kid" => string(&mut self.kid, "kid"),
            b"typ" => string(&mut self.typ, "typ"),
            b"cty" => string(&mut self.cty, "cty"),
            b"jwk" if self.rules.allow_jwk => {}
            n @ (b"jku" | b"x5u" | b"jwk" | b"x5c") => {
                self.key_in_header = self.key_in_header.or(KEY_BEARING.iter().find(|k| k.as_bytes() == n).copied());
            }
            b"crit" => self.crit = true,
            b"b64" => self.unencoded |= value.as_bool() != Some(true),
            b"zip" => self.zip = true,
            _ => {}
        }
    }

    pub(crate) fn verdict(self) -> Result<HeaderFacts<'a>, Error> {
        let alg = match self.alg {
            Some(alg) if !self.alg_not_str => Algorithm::from_name(&alg.to_cow())?,
            _ => return Err(Error::MissingAlgorithm),
        };
        if let Some(name) = self.key_in_header {
            return Err(Error::KeyInHeader(name));
        }
        // No extension is implemented, so any `crit` (RFC 7515 §4.1.11) names one we do not understand.
        if self.crit {
            return Err(Error::UnsupportedCritical);
        }
        if self.unencoded {
            return Err(Error::UnencodedPayload);
        }
        if self.zip {
            return Err(Error::Compressed);
        }
        if let Some(label) = self.bad_type {
            return Err(Error::HeaderType(label));
        }
        Ok(HeaderFacts { alg, kid: self.kid, typ: self.typ, cty: self.cty, flat: !self.nested })
    }
}

/// The three segments of a compact JWS, split and size-checked but not yet decoded.
pub(crate) struct Segments<'t> {
    pub header: &'t str,
    pub payload: &'t str,
    pub signature: &'t str,
    pub signing_input: &'t str,
}

pub(crate) fn split(token: &str, max_bytes: usize) -> Result<Segments<'_>, Error> {
    if token.len() > max_bytes {
        return Err(Error::TooLarge { len: token.len(), limit: max_bytes });
    }
    if token.trim_start().starts_with('{') {
        return Err(Error::JsonSerialization);
    }
    let bytes = token.as_bytes();
    let dot_after = |from: usize| memchr::memchr(b'.', bytes.get(from..)?).map(|i| from + i);
    let first = dot_after(0).ok_or(Error::Malformed)?;
    let second = dot_after(first + 1).ok_or(Error::Malformed)?;
    if dot_after(second + 1).is_some() {
        // A JWE compact serialization has five segments.
        let more = memchr::memchr_iter(b'.', &bytes[second + 1..]).count();
        return Err(if more == 2 { Error::Jwe } else { Error::Malformed });
    }
    let header = &token[..first];
    if header.is_empty() {
        return Err(Error::Malformed);
    }
    Ok(Segments {
        header,
        payload: &token[first + 1..second],
        signature: &token[second + 1..],
        signing_input: &token[..second],
    })
}

/// Limits and algorithm allow-list for the JWS layer.
#[derive(Debug, Clone)]
pub struct JwsOptions {
    pub max_token_bytes: usize,
    pub max_depth: usize,
    pub algorithms: AlgSet,
}

impl Default for JwsOptions {
    fn default() -> Self {
        JwsOptions {
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            max_depth: json::DEFAULT_MAX_DEPTH,
            algorithms: AlgSet::all(),
        }
    }
}

/// A JWS whose signature verified.
#[derive(Debug, Clone)]
pub struct VerifiedJws {
    pub header: Header,
    pub payload: Vec<u8>,
}

/// Verifies a compact JWS against the trusted keys and returns its header and payload.
pub fn verify(token: &str, keys: &KeySet, options: &JwsOptions) -> Result<VerifiedJws, Error> {
    let seg = split(token, options.max_token_bytes)?;
    // A header segment the set accepted before needs no decoding, parsing or key selection: those depend on
    // its bytes alone. Remembered headers are flat, so they pass any nesting limit but zero.
    if let Some((header, key)) = keys.known_header(seg.header).filter(|_| options.max_depth > 0) {
        let payload = verify_signed(&seg, header.alg, key, options)?;
        return Ok(VerifiedJws { header: header.clone(), payload });
    }
    let header_bytes = b64::decode(seg.header.as_bytes()).ok_or(Error::Base64(Part::Header))?;
    let header_json = String::from_utf8(header_bytes)
        .map_err(|_| Error::Json { part: Part::Header, error: crate::error::JsonError::InvalidUnicode })?;
    let mut scan = HeaderScan::new(HeaderRules::default());
    json::visit_object(&header_json, options.max_depth, &mut |k, v| scan.see(k, v))
        .map_err(Error::json(Part::Header))?;
    let facts = scan.verdict()?;
    let kid = facts.kid.map(|k| k.to_cow());
    let key = keys.select(kid.as_deref(), facts.alg)?;
    let payload = verify_signed(&seg, facts.alg, key, options)?;
    let flat = facts.flat;
    let header = Header {
        alg: facts.alg,
        kid: facts.kid.map(|s| Span::of(&header_json, s)),
        typ: facts.typ.map(|s| Span::of(&header_json, s)),
        cty: facts.cty.map(|s| Span::of(&header_json, s)),
        json: header_json,
    };
    if flat {
        keys.remember_header(seg.header, &header, key);
    }
    Ok(VerifiedJws { header, payload })
}

/// The checks after the header: the policy's algorithm list, then the signature; returns the decoded payload.
fn verify_signed(
    seg: &Segments<'_>,
    alg: Algorithm,
    key: &crate::key::VerifyingKey,
    options: &JwsOptions,
) -> Result<Vec<u8>, Error> {
    if !options.algorithms.contains(alg) {
        return Err(Error::AlgorithmNotAllowed(alg.name()));
    }
    if seg.signature.is_empty() {
        return Err(Error::Malformed);
    }
    // Signatures up to RSA-4096's are decoded on the stack; ML-DSA's (2.4-4.6 KB) on the heap.
    let mut stack = [std::mem::MaybeUninit::uninit(); 512];
    let heap;
    let signature = match b64::decode_to_slice(seg.signature.as_bytes(), &mut stack) {
        Some(signature) => signature,
        None => {
            heap = b64::decode(seg.signature.as_bytes()).ok_or(Error::Base64(Part::Signature))?;
            &heap[..]
        }
    };
    let payload = b64::decode(seg.payload.as_bytes()).ok_or(Error::Base64(Part::Payload))?;
    key.verify(seg.signing_input.as_bytes(), signature)?;
    Ok(payload)
}

/// Header parameters for signing, besides `alg` and `kid` (which come from the key).
#[derive(Debug, Clone, Default)]
pub struct HeaderParams<'a> {
    pub typ: Option<&'a str>,
    pub cty: Option<&'a str>,
    /// Further members as (name, JSON text), e.g. `("jwk", "{...}")` for a DPoP proof.
    pub extra: &'a [(&'a str, &'a str)],
}

/// The JSON text of a protected header: `alg`, then `kid`, `typ`, `cty`, then the extra members.
pub fn header_json(key: &SigningKey, params: &HeaderParams<'_>) -> String {
    let mut out = String::with_capacity(64);
    out.push_str("{\"alg\":");
    json::write_str(&mut out, key.algorithm().name());
    for (name, value) in [("kid", key.kid()), ("typ", params.typ), ("cty", params.cty)] {
        if let Some(value) = value {
            out.push_str(",\"");
            out.push_str(name);
            out.push_str("\":");
            json::write_str(&mut out, value);
        }
    }
    for (name, value) in params.extra {
        out.push(',');
        json::write_str(&mut out, name);
        out.push(':');
        out.push_str(value);
    }
    out.push('}');
    out
}

/// Signs `payload` as a compact JWS whose header is already base64url-encoded.
pub(crate) fn sign_with_encoded_header(key: &SigningKey, header_b64: &str, payload: &[u8]) -> Result<String, Error> {
    let sig_len = key.verifying_key().algorithm().fixed_signature_len().unwrap_or(512);
    let mut token = String::with_capacity(header_b64.len() + 2 + (payload.len() + sig_len) * 4 / 3 + 4);
    token.push_str(header_b64);
    token.push('.');
    b64::encode_into(payload, &mut token);
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    b64::encode_into(&signature, &mut token);
    Ok(token)
}

/// Signs `payload` as a compact JWS.
pub fn sign(key: &SigningKey, params: &HeaderParams<'_>, payload: &[u8]) -> Result<String, Error> {
    sign_with_encoded_header(key, &b64::encode(header_json(key, params).as_bytes()), payload)
}

/// Decodes a compact JWS without verifying it, for display only. The result must never be trusted.
pub fn decode_unverified(token: &str, max_bytes: usize) -> Result<(String, Vec<u8>), Error> {
    let seg = split(token, max_bytes)?;
    let header = b64::decode(seg.header.as_bytes()).ok_or(Error::Base64(Part::Header))?;
    let header = String::from_utf8(header)
        .map_err(|_| Error::Json { part: Part::Header, error: crate::error::JsonError::InvalidUnicode })?;
    json::parse_object(&header, json::DEFAULT_MAX_DEPTH).map_err(Error::json(Part::Header))?;
    let payload = b64::decode(seg.payload.as_bytes()).ok_or(Error::Base64(Part::Payload))?;
    Ok((header, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::JsonError;

    fn setup() -> (SigningKey, KeySet) {
        let key = SigningKey::generate(Algorithm::ES256).unwrap().with_kid("k");
        let set =
            KeySet::single(crate::jwk::verifying_key_from_jwk(&key.verifying_key().to_jwk().unwrap(), &[]).unwrap());
        (key, set)
    }

    fn forge(key: &SigningKey, header: &str, payload: &[u8]) -> String {
        sign_with_encoded_header(key, &b64::encode(header.as_bytes()), payload).unwrap()
    }

    #[test]
    fn round_trip_and_header_access() {
        let (key, set) = setup();
        let token = sign(&key, &HeaderParams { typ: Some("JWT"), ..Default::default() }, b"hello").unwrap();
        let v = verify(&token, &set, &JwsOptions::default()).unwrap();
        assert_eq!(v.payload, b"hello");
        assert_eq!(v.header.kid().as_deref(), Some("k"));
        assert_eq!(v.header.typ().as_deref(), Some("JWT"));
        assert_eq!(v.header.algorithm(), Algorithm::ES256);
    }

    #[test]
    fn a_remembered_header_gives_the_same_result_and_every_later_check_still_runs() {
        let (key, set) = setup();
        let opts = JwsOptions::default();
        let header = r#"{"alg":"ES256","kid":"k","typ":"at+jwt"}"#;
        let token = forge(&key, header, b"hello");
        let first = verify(&token, &set, &opts).unwrap();
        assert_eq!(set.known_headers(), 1);
        let second = verify(&token, &set, &opts).unwrap();
        assert_eq!((second.header.json(), second.header.typ()), (first.header.json(), first.header.typ()));
        assert_eq!((second.header.kid(), second.header.algorithm()), (Some("k".into()), Algorithm::ES256));
        assert_eq!(second.payload, b"hello");
        // Same header bytes: the signature, the payload's encoding and the caller's algorithms are still checked.
        let (input, _) = token.rsplit_once('.').unwrap();
        let other = forge(&key, header, b"other");
        let spliced = format!("{input}.{}", other.rsplit_once('.').unwrap().1);
        assert_eq!(verify(&spliced, &set, &opts).unwrap_err(), Error::BadSignature);
        let (head, rest) = token.split_once('.').unwrap();
        assert_eq!(verify(&format!("{head}.+{rest}"), &set, &opts).unwrap_err(), Error::Base64(Part::Payload));
        let only_eddsa = JwsOptions { algorithms: AlgSet::of(&[Algorithm::EdDSA]), ..JwsOptions::default() };
        assert_eq!(verify(&token, &set, &only_eddsa).unwrap_err(), Error::AlgorithmNotAllowed("ES256"));
        let flat_only = JwsOptions { max_depth: 0, ..JwsOptions::default() };
        assert_eq!(verify(&token, &set, &flat_only).unwrap_err(), Error::json(Part::Header)(JsonError::TooDeep));
        // A key of another set is not trusted through a header this set remembers.
        let (_, other_set) = setup();
        assert_eq!(verify(&token, &other_set, &opts).unwrap_err(), Error::BadSignature);
        assert_eq!(set.known_headers(), 1);
    }

    #[test]
    fn only_flat_headers_of_verified_tokens_are_remembered_and_only_a_few() {
        let (key, set) = setup();
        let opts = JwsOptions::default();
        let nested = forge(&key, r#"{"alg":"ES256","kid":"k","x":{"y":[1]}}"#, b"p");
        verify(&nested, &set, &opts).unwrap();
        let fresh = forge(&key, r#"{"alg":"ES256","kid":"k","n":0}"#, b"p");
        let forged = format!("{}.{}", fresh.rsplit_once('.').unwrap().0, nested.rsplit_once('.').unwrap().1);
        assert_eq!(verify(&forged, &set, &opts).unwrap_err(), Error::BadSignature);
        assert_eq!(set.known_headers(), 0, "a nested header or a bad signature is not remembered");
        for n in 1..=6 {
            let token = forge(&key, &format!(r#"{{"alg":"ES256","kid":"k","n":{n}}}"#), b"p");
            verify(&token, &set, &opts).unwrap();
            verify(&token, &set, &opts).unwrap();
        }
        assert_eq!(set.known_headers(), 4);
    }

    #[test]
    fn shape_errors_are_distinct() {
        let (key, set) = setup();
        let opts = JwsOptions::default();
        let token = sign(&key, &HeaderParams::default(), b"x").unwrap();
        assert_eq!(verify(&format!("{token}.a.b"), &set, &opts).unwrap_err(), Error::Jwe);
        assert_eq!(verify(&format!("{token}.a"), &set, &opts).unwrap_err(), Error::Malformed);
        assert_eq!(verify("{\"payload\":\"\"}", &set, &opts).unwrap_err(), Error::JsonSerialization);
        assert_eq!(verify("abc", &set, &opts).unwrap_err(), Error::Malformed);
        let huge = "a".repeat(DEFAULT_MAX_TOKEN_BYTES + 1);
        assert!(matches!(verify(&huge, &set, &opts), Err(Error::TooLarge { .. })));
        let padded = token.replacen('.', "=.", 1);
        assert_eq!(verify(&padded, &set, &opts).unwrap_err(), Error::Base64(Part::Header));
        let mut parts: Vec<&str> = token.split('.').collect();
        let sig_with_plus = parts[2].replace('-', "+").replace('_', "/") + "+";
        parts[2] = &sig_with_plus;
        assert_eq!(verify(&parts.join("."), &set, &opts).unwrap_err(), Error::Base64(Part::Signature));
    }

    #[test]
    fn header_rules_are_enforced_with_distinct_errors() {
        let (key, set) = setup();
        let opts = JwsOptions::default();
        let cases: [(&str, Error); 11] = [
            (r#"{"alg":"none","kid":"k"}"#, Error::AlgNone),
            (r#"{"alg":"XS256","kid":"k"}"#, Error::UnknownAlgorithm),
            (r#"{"kid":"k"}"#, Error::MissingAlgorithm),
            (r#"{"alg":"ES256","kid":"k","jku":"https://evil"}"#, Error::KeyInHeader("jku")),
            (r#"{"alg":"ES256","kid":"k","x5u":"https://evil"}"#, Error::KeyInHeader("x5u")),
            (r#"{"alg":"ES256","kid":"k","jwk":{}}"#, Error::KeyInHeader("jwk")),
            (r#"{"alg":"ES256","kid":"k","x5c":[]}"#, Error::KeyInHeader("x5c")),
            (r#"{"alg":"ES256","kid":"k","crit":["exp"],"exp":1}"#, Error::UnsupportedCritical),
            (r#"{"alg":"ES256","kid":"k","b64":false,"crit":["b64"]}"#, Error::UnsupportedCritical),
            (r#"{"alg":"ES256","kid":"k","zip":"DEF"}"#, Error::Compressed),
            (r#"{"alg":"ES256","kid":7}"#, Error::HeaderType("kid")),
        ];
        for (header, expected) in cases {
            assert_eq!(verify(&forge(&key, header, b"p"), &set, &opts).unwrap_err(), expected, "{header}");
        }
        let b64_false = forge(&key, r#"{"alg":"ES256","kid":"k","b64":false}"#, b"p");
        assert_eq!(verify(&b64_false, &set, &opts).unwrap_err(), Error::UnencodedPayload);
        let dup = forge(&key, r#"{"alg":"ES256","kid":"k","kid":"k"}"#, b"p");
        assert_eq!(
            verify(&dup, &set, &opts).unwrap_err(),
            Error::Json { part: Part::Header, error: JsonError::DuplicateMember }
        );
    }

    #[test]
    fn errors_never_echo_the_token() {
        let (key, set) = setup();
        let token = sign(&key, &HeaderParams::default(), b"secret-payload").unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let bad = [
            format!("{}.{}.{}A", parts[0], parts[1], parts[2]),
            format!("{}x.{}.{}", parts[0], parts[1], parts[2]),
            format!("{}.{}.{}", parts[0], parts[1], parts[0]),
            format!("{token}.{token}"),
        ];
        for t in &bad {
            let shown = verify(t, &set, &JwsOptions::default()).unwrap_err();
            let text = format!("{shown} {shown:?}");
            assert!(parts.iter().all(|p| !text.contains(&p[..12.min(p.len())])), "{text}");
        }
    }

    #[test]
    fn algorithm_confusion_is_refused() {
        let (_, set) = setup();
        // An attacker signs HS256 with the public key's bytes as the secret.
        let public = set.keys()[0].to_jwk().unwrap();
        let mac_key = SigningKey::hmac(Algorithm::HS256, public.as_bytes()).unwrap();
        let token = forge(&mac_key, r#"{"alg":"HS256","kid":"k"}"#, b"p");
        assert!(matches!(verify(&token, &set, &JwsOptions::default()), Err(Error::AlgorithmKeyMismatch { .. })));
    }

    #[test]
    fn policy_algorithm_list_applies() {
        let (key, set) = setup();
        let token = sign(&key, &HeaderParams::default(), b"p").unwrap();
        let opts = JwsOptions { algorithms: AlgSet::of(&[Algorithm::EdDSA]), ..Default::default() };
        assert_eq!(verify(&token, &set, &opts).unwrap_err(), Error::AlgorithmNotAllowed("ES256"));
    }
}
