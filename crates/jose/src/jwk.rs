//! JSON Web Keys (RFC 7517, RFC 7518 §6, RFC 8037, and `AKP` keys for ML-DSA) and RFC 7638 thumbprints.
//!
//! A JWK becomes a key bound to one algorithm: its `alg` member, or the curve's only algorithm (EC, OKP),
//! or the algorithm the caller names. `use` other than `sig`, `key_ops` without the needed operation, an
//! unknown `alg`, and multi-prime RSA are refused.

use aws_lc_rs::digest;
use zeroize::Zeroizing;

use crate::alg::{Algorithm, Family};
use crate::b64;
use crate::error::{Error, Part};
use crate::json::{self, find, JsonStr, Member};
use crate::key::{PrivateParams, PublicParams, RsaPrivateParts, SigningKey, VerifyingKey};

/// The operation a key is imported for, checked against `key_ops`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Verify,
    Sign,
}

/// A parsed JWK whose members have not yet been turned into a key.
struct Fields<'a> {
    members: Vec<Member<'a>>,
    kty: JsonStr<'a>,
    kid: Option<String>,
}

impl<'a> Fields<'a> {
    fn parse(text: &'a str) -> Result<Self, Error> {
        let members = json::parse_object(text, json::DEFAULT_MAX_DEPTH).map_err(Error::json(Part::Key))?;
        let kty = find(&members, "kty").and_then(|v| v.as_str()).ok_or(Error::InvalidKey("kty is missing"))?;
        let kid = match find(&members, "kid") {
            None => None,
            Some(v) => Some(v.as_str().ok_or(Error::InvalidKey("kid is not a string"))?.to_cow().into_owned()),
        };
        Ok(Fields { members, kty, kid })
    }

    fn str(&self, name: &'static str) -> Result<Option<JsonStr<'a>>, Error> {
        match find(&self.members, name) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or(Error::InvalidKey("JWK member is not a string")),
        }
    }

    fn bytes(&self, name: &'static str) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
        match self.str(name)? {
            None => Ok(None),
            Some(s) => b64::decode(s.raw().as_bytes()).map(|b| Some(Zeroizing::new(b))).ok_or(Error::Base64(Part::Key)),
        }
    }

    fn need(&self, name: &'static str) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.bytes(name)?.ok_or(Error::InvalidKey("a required JWK member is missing"))
    }

    fn has(&self, name: &str) -> bool {
        find(&self.members, name).is_some()
    }

    fn check_usage(&self, op: Op) -> Result<(), Error> {
        if let Some(u) = self.str("use")? {
            if !u.is("sig") {
                return Err(Error::KeyUsage("use is not sig"));
            }
        }
        if let Some(ops) = find(&self.members, "key_ops") {
            let items = ops.items().ok_or(Error::InvalidKey("key_ops is not an array"))?;
            let mut names = Vec::with_capacity(items.len());
            for item in items {
                let name = item.as_str().ok_or(Error::InvalidKey("key_ops holds a non-string"))?.to_cow();
                if names.contains(&name) {
                    return Err(Error::InvalidKey("key_ops repeats a value"));
                }
                names.push(name);
            }
            let wanted = if op == Op::Sign { "sign" } else { "verify" };
            if !names.iter().any(|n| n == wanted) {
                return Err(Error::KeyUsage("key_ops does not permit this operation"));
            }
        }
        Ok(())
    }

    /// The algorithm this key is bound to.
    fn algorithm(&self, candidates: &[Algorithm]) -> Result<Algorithm, Error> {
        let declared = match self.str("alg")? {
            None => None,
            Some(name) => Some(Algorithm::from_name(&name.to_cow()).map_err(|_| Error::InvalidKey("unknown alg"))?),
        };
        let kty = self.kty.to_cow();
        let crv = self.str("crv")?.map(|c| c.to_cow());
        let fits = |alg: Algorithm| match (kty.as_ref(), alg.family()) {
            ("oct", Family::Hmac) | ("RSA", Family::RsaPkcs1 | Family::RsaPss) | ("AKP", Family::MlDsa) => true,
            ("EC", Family::Ecdsa) | ("OKP", Family::Ed25519) => crv.as_deref() == alg.curve(),
            _ => false,
        };
        if let Some(alg) = declared {
            if !fits(alg) {
                return Err(Error::InvalidKey("alg does not fit the key type or curve"));
            }
            return Ok(alg);
        }
        match kty.as_ref() {
            "EC" | "OKP" => Algorithm::ALL.into_iter().find(|a| fits(*a)).ok_or(Error::InvalidKey("unsupported curve")),
            "oct" | "RSA" => {
                let mut fitting = candidates.iter().copied().filter(|a| fits(*a));
                match (fitting.next(), fitting.next()) {
                    (Some(alg), None) => Ok(alg),
                    _ => Err(Error::InvalidKey("the key has no alg and the algorithm to bind is not unique")),
                }
            }
            "AKP" => Err(Error::InvalidKey("an AKP key must name its alg")),
            _ => Err(Error::InvalidKey("unsupported kty")),
        }
    }

    fn verifying_key(&self, alg: Algorithm) -> Result<VerifyingKey, Error> {
        let key = match alg.family() {
            Family::Hmac => VerifyingKey::hmac(alg, &self.need("k")?)?,
            Family::RsaPkcs1 | Family::RsaPss => {
                if self.has("oth") {
                    return Err(Error::InvalidKey("multi-prime RSA is not supported"));
                }
                VerifyingKey::rsa(alg, &self.need("n")?, &self.need("e")?)?
            }
            Family::Ecdsa => VerifyingKey::ec(alg, &self.need("x")?, &self.need("y")?)?,
            Family::Ed25519 => VerifyingKey::ed25519(&self.need("x")?)?,
            Family::MlDsa => VerifyingKey::ml_dsa(alg, &self.need("pub")?)?,
        };
        Ok(match &self.kid {
            Some(kid) => key.with_kid(kid.clone()),
            None => key,
        })
    }

    fn signing_key(&self, alg: Algorithm) -> Result<SigningKey, Error> {
        let key = match alg.family() {
            Family::Hmac => SigningKey::hmac(alg, &self.need("k")?)?,
            Family::RsaPkcs1 | Family::RsaPss => {
                if self.has("oth") {
                    return Err(Error::InvalidKey("multi-prime RSA is not supported"));
                }
                let (n, e, d) = (self.need("n")?, self.need("e")?, self.need("d")?);
                let (p, q, dp, dq, qi) =
                    (self.need("p")?, self.need("q")?, self.need("dp")?, self.need("dq")?, self.need("qi")?);
                SigningKey::rsa(alg, &RsaPrivateParts { n: &n, e: &e, d: &d, p: &p, q: &q, dp: &dp, dq: &dq, qi: &qi })?
            }
            Family::Ecdsa => SigningKey::ec(alg, &self.need("d")?, &self.need("x")?, &self.need("y")?)?,
            Family::Ed25519 => SigningKey::ed25519(&self.need("d")?, &self.need("x")?)?,
            Family::MlDsa => {
                let key = SigningKey::ml_dsa(alg, &self.need("priv")?)?;
                if let Some(public) = self.bytes("pub")? {
                    if !matches!(&key.verifying_key().params, PublicParams::Akp { public: p } if p[..] == public[..]) {
                        return Err(Error::InvalidKey("ML-DSA pub does not match priv"));
                    }
                }
                key
            }
        };
        Ok(match &self.kid {
            Some(kid) => key.with_kid(kid.clone()),
            None => key,
        })
    }

    fn is_private(&self) -> bool {
        ["d", "priv", "k"].iter().any(|m| self.has(m))
    }
}

/// Imports a JWK (public or private; a private one yields its public half) as a verifying key.
/// `candidates` names the algorithm(s) a key without `alg` may be bound to (used for `RSA` and `oct`).
pub fn verifying_key_from_jwk(text: &str, candidates: &[Algorithm]) -> Result<VerifyingKey, Error> {
    let fields = Fields::parse(text)?;
    fields.check_usage(Op::Verify)?;
    let alg = fields.algorithm(candidates)?;
    fields.verifying_key(alg)
}

/// Imports a private JWK as a signing key.
pub fn signing_key_from_jwk(text: &str, candidates: &[Algorithm]) -> Result<SigningKey, Error> {
    let fields = Fields::parse(text)?;
    fields.check_usage(Op::Sign)?;
    let alg = fields.algorithm(candidates)?;
    fields.signing_key(alg)
}

/// The RFC 7638 thumbprint (SHA-256, base64url) of any JWK, public or private, whatever its `use`: the
/// required members of its `kty`, sorted, without whitespace. `AKP` keys add `alg`, as the ML-DSA draft says.
pub fn thumbprint(text: &str) -> Result<String, Error> {
    let fields = Fields::parse(text)?;
    let required: &[&'static str] = match fields.kty.to_cow().as_ref() {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "oct" => &["k", "kty"],
        "OKP" => &["crv", "kty", "x"],
        "AKP" => &["alg", "kty", "pub"],
        _ => return Err(Error::InvalidKey("unsupported kty")),
    };
    let mut members = Vec::with_capacity(required.len());
    for &name in required {
        let value = fields.str(name)?.ok_or(Error::InvalidKey("a required JWK member is missing"))?;
        members.push((name, value.to_cow().into_owned()));
    }
    Ok(b64::encode(digest::digest(&digest::SHA256, write_object(&members).as_bytes()).as_ref()))
}

/// True when the JWK carries private (or secret) material.
pub fn jwk_is_private(text: &str) -> Result<bool, Error> {
    Ok(Fields::parse(text)?.is_private())
}

pub(crate) fn is_private_members(members: &[Member<'_>]) -> bool {
    ["d", "priv", "k"].iter().any(|m| find(members, m).is_some())
}

/// The members that only a private (or symmetric) JWK has.
const PRIVATE_MEMBERS: [&str; 9] = ["d", "p", "q", "dp", "dq", "qi", "oth", "priv", "k"];

/// Imports a JWK that must be public (a DPoP proof's `jwk` header), bound to `alg`, parsing it once. `Ok(None)`
/// when it carries any private member.
pub(crate) fn public_key_for(text: &str, alg: Algorithm) -> Result<Option<VerifyingKey>, Error> {
    let fields = Fields::parse(text)?;
    if PRIVATE_MEMBERS.iter().any(|m| fields.has(m)) {
        return Ok(None);
    }
    fields.check_usage(Op::Verify)?;
    let alg = fields.algorithm(&[alg])?;
    fields.verifying_key(alg).map(Some)
}

/// JWK members as (name, value) pairs, values already base64url-encoded where they are bytes.
fn public_members(key: &VerifyingKey) -> Result<Vec<(&'static str, String)>, Error> {
    let alg = key.algorithm();
    Ok(match &key.params {
        PublicParams::Oct(_) => return Err(Error::KeyUsage("a symmetric key has no public form")),
        PublicParams::Rsa { n, e } => vec![("kty", "RSA".into()), ("n", b64::encode(n)), ("e", b64::encode(e))],
        PublicParams::Ec { x, y } => vec![
            ("kty", "EC".into()),
            ("crv", alg.curve().unwrap_or_default().into()),
            ("x", b64::encode(x)),
            ("y", b64::encode(y)),
        ],
        PublicParams::Okp { x } => vec![("kty", "OKP".into()), ("crv", "Ed25519".into()), ("x", b64::encode(x))],
        PublicParams::Akp { public } => vec![("kty", "AKP".into()), ("pub", b64::encode(public))],
    })
}

fn write_object(members: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(members.iter().map(|(k, v)| k.len() + v.len() + 6).sum::<usize>() + 2);
    out.push('{');
    for (i, (name, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json::write_str(&mut out, name);
        out.push(':');
        json::write_str(&mut out, value);
    }
    out.push('}');
    out
}

fn with_metadata(mut members: Vec<(&'static str, String)>, key: &VerifyingKey) -> Vec<(&'static str, String)> {
    if let Some(kid) = key.kid() {
        members.push(("kid", kid.to_owned()));
    }
    members.push(("use", "sig".into()));
    members.push(("alg", key.algorithm().name().into()));
    members
}

impl VerifyingKey {
    /// The public JWK, with `kid`, `use: sig` and `alg`. Refused for HMAC keys, which have no public form.
    pub fn to_jwk(&self) -> Result<String, Error> {
        Ok(write_object(&with_metadata(public_members(self)?, self)))
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url). For `AKP` keys the required members are
    /// `alg`, `kty`, `pub`, as the ML-DSA JOSE draft defines; for `oct`, `k` and `kty`.
    pub fn thumbprint(&self) -> String {
        let mut members: Vec<(&str, String)> = match &self.params {
            PublicParams::Oct(secret) => vec![("k", b64::encode(secret.expose())), ("kty", "oct".into())],
            PublicParams::Akp { public } => {
                vec![("alg", self.algorithm().name().into()), ("kty", "AKP".into()), ("pub", b64::encode(public))]
            }
            _ => public_members(self).unwrap_or_default(),
        };
        members.sort_by(|a, b| a.0.cmp(b.0));
        b64::encode(digest::digest(&digest::SHA256, write_object(&members).as_bytes()).as_ref())
    }
}

impl SigningKey {
    /// The private JWK, with `kid`, `use: sig` and `alg`. Zeroized on drop; never log it.
    pub fn to_jwk(&self) -> Result<Zeroizing<String>, Error> {
        let public = self.verifying_key();
        let mut members = match public.params {
            PublicParams::Oct(_) => vec![("kty", "oct".to_owned())],
            _ => public_members(public)?,
        };
        let secret = |s: &crate::key::Secret| b64::encode(s.expose());
        match self.private_params()? {
            PrivateParams::Oct(k) => members.push(("k", secret(&k))),
            PrivateParams::Rsa { d, p, q, dp, dq, qi } => {
                for (name, value) in [("d", d), ("p", p), ("q", q), ("dp", dp), ("dq", dq), ("qi", qi)] {
                    members.push((name, secret(&value)));
                }
            }
            PrivateParams::Ec { d } | PrivateParams::Okp { d } => members.push(("d", secret(&d))),
            PrivateParams::Akp { seed } => members.push(("priv", secret(&seed))),
        }
        let mut members = with_metadata(members, public);
        let out = Zeroizing::new(write_object(&members));
        for (_, value) in &mut members {
            zeroize::Zeroize::zeroize(value);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_round_trips_through_private_and_public_jwk() {
        for alg in Algorithm::ALL {
            let key = SigningKey::generate(alg).unwrap().with_kid("k1");
            let private = key.to_jwk().unwrap();
            let again = signing_key_from_jwk(&private, &[]).unwrap();
            assert_eq!(again.algorithm(), alg);
            assert_eq!(again.kid(), Some("k1"));
            let sig = again.sign(b"m").unwrap();
            key.verifying_key().verify(b"m", &sig).unwrap();
            if alg.is_symmetric() {
                assert!(key.verifying_key().to_jwk().is_err());
                continue;
            }
            let public = key.verifying_key().to_jwk().unwrap();
            // Member names, not a substring search: a long base64url value can contain "priv" by chance.
            let members: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&public).unwrap();
            assert!(!members.contains_key("d") && !members.contains_key("priv"), "{public}");
            let vk = verifying_key_from_jwk(&public, &[]).unwrap();
            vk.verify(b"m", &sig).unwrap();
            assert_eq!(vk.thumbprint(), key.verifying_key().thumbprint());
            assert_eq!(thumbprint(&public).unwrap(), vk.thumbprint());
            assert_eq!(thumbprint(&private).unwrap(), vk.thumbprint());
        }
    }

    #[test]
    fn usage_and_alg_are_enforced() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        let jwk = key.verifying_key().to_jwk().unwrap();
        let enc = jwk.replace("\"use\":\"sig\"", "\"use\":\"enc\"");
        assert_eq!(verifying_key_from_jwk(&enc, &[]).unwrap_err(), Error::KeyUsage("use is not sig"));
        let ops = jwk.replace("\"use\":\"sig\"", "\"key_ops\":[\"encrypt\"]");
        assert!(matches!(verifying_key_from_jwk(&ops, &[]), Err(Error::KeyUsage(_))));
        let ops = jwk.replace("\"use\":\"sig\"", "\"key_ops\":[\"verify\"]");
        assert!(verifying_key_from_jwk(&ops, &[]).is_ok());
        let wrong = jwk.replace("ES256", "ES384");
        assert!(matches!(verifying_key_from_jwk(&wrong, &[]), Err(Error::InvalidKey(_))));
        let unknown = jwk.replace("ES256", "ES521");
        assert_eq!(verifying_key_from_jwk(&unknown, &[]).unwrap_err(), Error::InvalidKey("unknown alg"));
        // Without alg, the curve decides for EC; an oct key needs a unique candidate.
        let no_alg = jwk.replace(",\"alg\":\"ES256\"", "");
        assert_eq!(verifying_key_from_jwk(&no_alg, &[]).unwrap().algorithm(), Algorithm::ES256);
        let oct = r#"{"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}"#;
        assert!(verifying_key_from_jwk(oct, &[]).is_err());
        assert!(verifying_key_from_jwk(oct, &[Algorithm::HS256, Algorithm::HS512]).is_err());
        assert_eq!(
            verifying_key_from_jwk(oct, &[Algorithm::HS256, Algorithm::ES256]).unwrap().algorithm(),
            Algorithm::HS256
        );
    }

    #[test]
    fn private_jwk_must_be_consistent() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        let other = SigningKey::generate(Algorithm::ES256).unwrap();
        let jwk = key.to_jwk().unwrap();
        let other_public = other.verifying_key().to_jwk().unwrap();
        let x_of = |s: &str| s.split("\"x\":\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
        let mixed = jwk.replace(&x_of(&jwk), &x_of(&other_public));
        assert!(signing_key_from_jwk(&mixed, &[]).is_err());
    }
}
