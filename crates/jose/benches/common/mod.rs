//! The cases both benchmarks measure: for each algorithm, verify and sign by ours (full JWT verification:
//! parse, key selection, signature, `typ`, claims and policy), the bare aws-lc-rs primitive on the same bytes
//! (pre-parsed key, signature already decoded), `jsonwebtoken` 11 (aws_lc_rs backend) and `jwt-simple` 0.15
//! (pure-rust backend), each checking the same issuer, audience and expiry. The token is a realistic RFC 9068
//! access token (~350-byte claims).

use std::cell::RefCell;
use std::hint::black_box;
use std::rc::Rc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self as sig, ParsedPublicKey};
use aws_lc_rs::{hmac, rand};
use portcullis_jose::{b64, jwt, Algorithm, KeySet, Policy, SigningKey, UnixTime, AT_JWT};
use serde::{Deserialize, Serialize};

pub const ISS: &str = "https://auth.portcullis.example";
pub const AUD: &str = "https://api.portcullis.example";
pub const ALGS: [Algorithm; 6] =
    [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256, Algorithm::PS256, Algorithm::HS256, Algorithm::MlDsa44];
// Read by the interleaved bench only; each bench binary compiles this module on its own.
#[allow(dead_code)]
pub const IMPLS: [&str; 4] = ["raw", "ours", "jsonwebtoken", "jwt-simple"];

/// One measured operation.
pub type Op = Box<dyn Fn()>;

/// A named operation: (algorithm, implementation, operation).
pub struct Case {
    pub alg: &'static str,
    pub imp: &'static str,
    pub op: Op,
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct AccessClaims {
    iss: String,
    sub: String,
    aud: String,
    exp: i64,
    iat: i64,
    jti: String,
    client_id: String,
    scope: String,
    roles: Vec<String>,
    sid: String,
}

/// The same custom claims, for jwt-simple, which sets the registered ones itself.
#[derive(Debug, Serialize, Deserialize, Clone)]
struct Custom {
    client_id: String,
    scope: String,
    roles: Vec<String>,
    sid: String,
}

fn claims(now: i64) -> AccessClaims {
    AccessClaims {
        iss: ISS.into(),
        sub: "user-7f3c9a2e-5b1d-4c8e-9f20-1a2b3c4d5e6f".into(),
        aud: AUD.into(),
        exp: now + 300,
        iat: now,
        jti: "b1e2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d".into(),
        client_id: "web-frontend-prod".into(),
        scope: "openid profile email read:orders write:orders".into(),
        roles: vec!["customer".into(), "beta-tester".into()],
        sid: "s-9d8c7b6a5f4e3d2c1b0a".into(),
    }
}

fn case(alg: Algorithm, imp: &'static str, op: impl Fn() + 'static) -> Case {
    Case { alg: alg.name(), imp, op: Box::new(op) }
}

/// A JWK member, base64url-decoded.
fn member(jwk: &serde_json::Value, name: &str) -> Vec<u8> {
    b64::decode(jwk[name].as_str().unwrap().as_bytes()).unwrap()
}

pub fn raw_verifier(alg: Algorithm, jwk: &serde_json::Value) -> ParsedPublicKey {
    let m = |n: &str| member(jwk, n);
    match alg {
        Algorithm::ES256 => {
            ParsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, [vec![4], m("x"), m("y")].concat()).unwrap()
        }
        Algorithm::EdDSA => ParsedPublicKey::new(&sig::ED25519, m("x")).unwrap(),
        Algorithm::MlDsa44 => ParsedPublicKey::new(&sig::ML_DSA_44, m("pub")).unwrap(),
        Algorithm::RS256 => aws_lc_rs::rsa::PublicKeyComponents { n: m("n"), e: m("e") }
            .to_parsed_public_key(&sig::RSA_PKCS1_2048_8192_SHA256)
            .unwrap(),
        _ => aws_lc_rs::rsa::PublicKeyComponents { n: m("n"), e: m("e") }
            .to_parsed_public_key(&sig::RSA_PSS_2048_8192_SHA256)
            .unwrap(),
    }
}

pub fn verify_cases() -> Vec<Case> {
    let now = UnixTime::now();
    let claims = claims(now.as_secs());
    let mut cases = Vec::new();
    for alg in ALGS {
        let key = SigningKey::generate(alg).unwrap().with_kid("bench");
        let trusted =
            if alg.is_symmetric() { key.to_jwk().unwrap().to_string() } else { key.verifying_key().to_jwk().unwrap() };
        let jwk: serde_json::Value = serde_json::from_str(&trusted).unwrap();
        let keys = KeySet::from_jwks(&trusted, &[]).unwrap();
        let token = Rc::new(jwt::Signer::new(key, Some(AT_JWT)).sign(&claims).unwrap());
        let policy = Policy::access_token(ISS, AUD).unwrap();
        let (input, signature) = token.rsplit_once('.').unwrap();
        let (input, signature) = (input.as_bytes().to_vec(), b64::decode(signature.as_bytes()).unwrap());

        if alg.is_symmetric() {
            let mac = hmac::Key::new(hmac::HMAC_SHA256, &member(&jwk, "k"));
            cases.push(case(alg, "raw", move || hmac::verify(&mac, black_box(&input), &signature).unwrap()));
        } else {
            let parsed = raw_verifier(alg, &jwk);
            cases.push(case(alg, "raw", move || parsed.verify_sig(black_box(&input), &signature).unwrap()));
        }
        let t = token.clone();
        cases.push(case(alg, "ours", move || {
            black_box(jwt::verify(black_box(&t), &keys, &policy, now).unwrap());
        }));

        if alg != Algorithm::MlDsa44 {
            let decoding = if alg.is_symmetric() {
                jsonwebtoken::DecodingKey::from_secret(&member(&jwk, "k"))
            } else {
                jsonwebtoken::DecodingKey::from_jwk(&serde_json::from_str(&trusted).unwrap()).unwrap()
            };
            let mut validation = jsonwebtoken::Validation::new(alg.name().parse().unwrap());
            validation.set_issuer(&[ISS]);
            validation.set_audience(&[AUD]);
            let t = token.clone();
            cases.push(case(alg, "jsonwebtoken", move || {
                black_box(
                    jsonwebtoken::decode::<AccessClaims>(black_box(t.as_bytes()), &decoding, &validation).unwrap(),
                );
            }));
        }

        use jwt_simple::prelude::*;
        let options = VerificationOptions {
            allowed_issuers: Some(HashSet::from_strings(&[ISS])),
            allowed_audiences: Some(HashSet::from_strings(&[AUD])),
            ..Default::default()
        };
        let m = |n: &str| member(&jwk, n);
        macro_rules! peer {
            ($key:expr) => {{
                let (key, t, o) = ($key, token.clone(), options.clone());
                cases.push(case(alg, "jwt-simple", move || {
                    black_box(key.verify_token::<Custom>(black_box(&t), Some(o.clone())).unwrap());
                }));
            }};
        }
        match alg {
            Algorithm::ES256 => peer!(ES256PublicKey::from_bytes(&[vec![4], m("x"), m("y")].concat()).unwrap()),
            Algorithm::EdDSA => peer!(Ed25519PublicKey::from_bytes(&m("x")).unwrap()),
            Algorithm::RS256 => peer!(RS256PublicKey::from_components(&m("n"), &m("e")).unwrap()),
            Algorithm::PS256 => peer!(PS256PublicKey::from_components(&m("n"), &m("e")).unwrap()),
            Algorithm::HS256 => peer!(HS256Key::from_bytes(&m("k"))),
            _ => peer!(MLDSA44PublicKey::from_bytes(&m("pub")).unwrap()),
        }
    }
    cases
}

/// HS256 part by part, for the interleaved bench: the MAC over the signing input, what signing adds to it
/// (serializing the claims, base64url-encoding them) and what verifying adds (decoding the payload, the strict
/// parse and type check of the claims), each alone, then ours whole. The first element is the MAC.
// Read by the interleaved bench only; each bench binary compiles this module on its own.
#[allow(dead_code)]
pub fn hs256_parts() -> Vec<(&'static str, Op)> {
    let now = UnixTime::now();
    let claims = Rc::new(claims(now.as_secs()));
    let key = SigningKey::generate(Algorithm::HS256).unwrap().with_kid("bench");
    let jwk: serde_json::Value = serde_json::from_str(key.to_jwk().unwrap().as_ref()).unwrap();
    let keys = KeySet::from_jwks(&jwk.to_string(), &[]).unwrap();
    let mac = hmac::Key::new(hmac::HMAC_SHA256, &member(&jwk, "k"));
    let signer = jwt::Signer::new(key, Some(AT_JWT));
    let token = Rc::new(signer.sign(&*claims).unwrap());
    let input = token.rsplit_once('.').unwrap().0.as_bytes().to_vec();
    let segment = input.split(|b| *b == b'.').nth(1).unwrap().to_vec();
    let payload = b64::decode(&segment).unwrap();
    let policy = Policy::access_token(ISS, AUD).unwrap();
    let (c1, c2, s1) = (claims.clone(), claims, segment.clone());
    vec![
        (
            "the MAC over the signing input (aws-lc-rs)",
            Box::new(move || {
                black_box(hmac::sign(&mac, black_box(&input)));
            }),
        ),
        (
            "sign: serialize the claims (serde_json)",
            Box::new(move || {
                let mut out = Vec::with_capacity(512);
                serde_json::to_writer(&mut out, black_box(&*c1)).unwrap();
                black_box(out);
            }),
        ),
        ("sign: base64url-encode them", Box::new(move || drop(black_box(b64::encode(black_box(&payload)))))),
        ("sign: ours, all of it", Box::new(move || drop(black_box(signer.sign(black_box(&*c2)).unwrap())))),
        ("verify: base64url-decode the payload", Box::new(move || drop(black_box(b64::decode(black_box(&s1)))))),
        (
            "verify: decode, then parse and type-check the claims",
            Box::new(move || {
                let payload = b64::decode(black_box(&segment)).unwrap();
                black_box(portcullis_jose::Claims::parse(payload, portcullis_jose::json::DEFAULT_MAX_DEPTH).unwrap());
            }),
        ),
        (
            "verify: ours, all of it",
            Box::new(move || drop(black_box(jwt::verify(black_box(&token), &keys, &policy, now).unwrap()))),
        ),
    ]
}

/// PKCS#1 `RSAPrivateKey` out of the backend's PKCS#8 (the OCTET STRING after the algorithm identifier).
fn pkcs1_from_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
    let pos = pkcs8.windows(2).position(|w| w == [0x04, 0x82]).unwrap();
    pkcs8[pos + 4..].to_vec()
}

pub fn sign_cases() -> Vec<Case> {
    let now = UnixTime::now();
    let claims = Rc::new(claims(now.as_secs()));
    let mut cases = Vec::new();
    for alg in ALGS {
        let signer = jwt::Signer::new(SigningKey::generate(alg).unwrap().with_kid("bench"), Some(AT_JWT));
        let token = signer.sign(&*claims).unwrap();
        let input = Rc::new(token.rsplit_once('.').unwrap().0.as_bytes().to_vec());
        let c = claims.clone();
        cases.push(case(alg, "ours", move || {
            black_box(signer.sign(black_box(&*c)).unwrap());
        }));

        let rng = rand::SystemRandom::new();
        let i = input.clone();
        let encoding_key = match alg {
            Algorithm::ES256 => {
                let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
                let pair =
                    sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
                cases.push(case(alg, "raw", move || {
                    black_box(pair.sign(&rng, black_box(&i)).unwrap());
                }));
                Some(jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()))
            }
            Algorithm::EdDSA => {
                let pkcs8 = sig::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
                let pair = sig::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
                cases.push(case(alg, "raw", move || {
                    black_box(pair.sign(black_box(&i)));
                }));
                Some(jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref()))
            }
            Algorithm::RS256 | Algorithm::PS256 => {
                let pair = sig::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
                let pkcs1 = pkcs1_from_pkcs8(pair.as_der().unwrap().as_ref());
                let encoding: &'static dyn sig::RsaEncoding =
                    if alg == Algorithm::RS256 { &sig::RSA_PKCS1_SHA256 } else { &sig::RSA_PSS_SHA256 };
                let out = RefCell::new(vec![0u8; pair.public_modulus_len()]);
                cases.push(case(alg, "raw", move || {
                    pair.sign(encoding, &rng, black_box(&i), &mut out.borrow_mut()).unwrap();
                }));
                Some(jsonwebtoken::EncodingKey::from_rsa_der(&pkcs1))
            }
            Algorithm::HS256 => {
                let secret = [0x5au8; 32];
                let key = hmac::Key::new(hmac::HMAC_SHA256, &secret);
                cases.push(case(alg, "raw", move || {
                    black_box(hmac::sign(&key, black_box(&i)));
                }));
                Some(jsonwebtoken::EncodingKey::from_secret(&secret))
            }
            _ => {
                let pair = sig::PqdsaKeyPair::generate(&sig::ML_DSA_44_SIGNING).unwrap();
                let out = RefCell::new(vec![0u8; sig::ML_DSA_44_SIGNING.signature_len()]);
                cases.push(case(alg, "raw", move || {
                    pair.sign(black_box(&i), &mut out.borrow_mut()).unwrap();
                }));
                None
            }
        };
        if let Some(key) = encoding_key {
            let mut header = jsonwebtoken::Header::new(alg.name().parse().unwrap());
            header.typ = Some(AT_JWT.into());
            header.kid = Some("bench".into());
            let c = claims.clone();
            cases.push(case(alg, "jsonwebtoken", move || {
                black_box(jsonwebtoken::encode(&header, black_box(&*c), &key).unwrap());
            }));
        }

        use jwt_simple::prelude::*;
        let custom = {
            let c = claims.clone();
            move || {
                let custom = Custom {
                    client_id: c.client_id.clone(),
                    scope: c.scope.clone(),
                    roles: c.roles.clone(),
                    sid: c.sid.clone(),
                };
                Claims::with_custom_claims(custom, Duration::from_mins(5))
                    .with_issuer(ISS)
                    .with_audience(AUD)
                    .with_subject(&c.sub)
                    .with_jwt_id(&c.jti)
            }
        };
        macro_rules! peer {
            ($key:expr, $method:ident) => {{
                let key = $key.with_key_id("bench");
                cases.push(case(alg, "jwt-simple", move || {
                    black_box(key.$method(black_box(custom())).unwrap());
                }));
            }};
        }
        match alg {
            Algorithm::ES256 => peer!(ES256KeyPair::generate(), sign),
            Algorithm::EdDSA => peer!(Ed25519KeyPair::generate(), sign),
            Algorithm::RS256 => peer!(RS256KeyPair::generate(2048).unwrap(), sign),
            Algorithm::PS256 => peer!(PS256KeyPair::generate(2048).unwrap(), sign),
            Algorithm::HS256 => peer!(HS256Key::generate(), authenticate),
            _ => peer!(MLDSA44KeyPair::generate(), sign),
        }
    }
    cases
}
