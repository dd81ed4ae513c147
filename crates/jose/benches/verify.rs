//! Verify and sign cost per algorithm, in one run: ours (full JWT verification: parse, key selection,
//! signature, claims and policy), the bare aws-lc-rs primitive on the same bytes (pre-parsed key, signature
//! already decoded), `jsonwebtoken` (aws_lc_rs backend) and `jwt-simple` (pure-rust backend), each with the
//! same issuer/audience/expiry checks. The token is a realistic RFC 9068 access token (~350-byte claims).
//!
//! Run: `cargo bench -p portcullis-jose --bench verify`, then `scripts/bench-table` for the table.

// A benchmark binary: setup failures should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use aws_lc_rs::signature::{self as sig, KeyPair as _, ParsedPublicKey};
use aws_lc_rs::{hmac, rand};
use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_jose::{b64, jwt, Algorithm, KeySet, Policy, SigningKey, UnixTime, AT_JWT};
use serde::{Deserialize, Serialize};

const ISS: &str = "https://auth.portcullis.example";
const AUD: &str = "https://api.portcullis.example";

#[derive(Debug, Serialize, Deserialize)]
struct AccessClaims {
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

fn verification_alg(alg: Algorithm) -> &'static dyn sig::VerificationAlgorithm {
    match alg {
        Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
        Algorithm::EdDSA => &sig::ED25519,
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::MlDsa44 => &sig::ML_DSA_44,
        _ => unreachable!(),
    }
}

/// The raw public key bytes aws-lc-rs parses for `alg`, from our public JWK.
fn raw_public(alg: Algorithm, jwk_text: &str) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_str(jwk_text).unwrap();
    let d = |m: &str| b64::decode(v[m].as_str().unwrap().as_bytes()).unwrap();
    match alg {
        Algorithm::ES256 => [vec![4], d("x"), d("y")].concat(),
        Algorithm::EdDSA => d("x"),
        Algorithm::MlDsa44 => d("pub"),
        _ => unreachable!(),
    }
}

fn bench_verify(c: &mut Criterion) {
    let now = UnixTime::now();
    let claims = claims(now.as_secs());
    let mut group = c.benchmark_group("verify");
    for alg in
        [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256, Algorithm::PS256, Algorithm::HS256, Algorithm::MlDsa44]
    {
        let key = SigningKey::generate(alg).unwrap().with_kid("bench");
        let trusted_jwk =
            if alg.is_symmetric() { key.to_jwk().unwrap().to_string() } else { key.verifying_key().to_jwk().unwrap() };
        let keys = KeySet::from_jwks(&trusted_jwk, &[]).unwrap();
        let signer = jwt::Signer::new(key, Some(AT_JWT));
        let token = signer.sign(&claims).unwrap();
        let policy = Policy::access_token(ISS, AUD).unwrap();
        let (input, signature) = token.rsplit_once('.').unwrap();
        let signature = b64::decode(signature.as_bytes()).unwrap();
        let name = alg.name();

        group.bench_function(format!("{name}/ours"), |b| {
            b.iter(|| jwt::verify(black_box(&token), &keys, &policy, now).unwrap())
        });

        let v: serde_json::Value = serde_json::from_str(&trusted_jwk).unwrap();
        if alg.is_symmetric() {
            let secret = b64::decode(v["k"].as_str().unwrap().as_bytes()).unwrap();
            let mac = hmac::Key::new(hmac::HMAC_SHA256, &secret);
            group.bench_function(format!("{name}/raw"), |b| {
                b.iter(|| hmac::verify(&mac, black_box(input.as_bytes()), &signature).unwrap())
            });
        } else {
            let parsed = if matches!(alg, Algorithm::RS256 | Algorithm::PS256) {
                let d = |m: &str| b64::decode(v[m].as_str().unwrap().as_bytes()).unwrap();
                let params = match alg {
                    Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
                    _ => &sig::RSA_PSS_2048_8192_SHA256,
                };
                aws_lc_rs::rsa::PublicKeyComponents { n: d("n"), e: d("e") }.to_parsed_public_key(params).unwrap()
            } else {
                ParsedPublicKey::new(verification_alg(alg), raw_public(alg, &trusted_jwk)).unwrap()
            };
            group.bench_function(format!("{name}/raw"), |b| {
                b.iter(|| parsed.verify_sig(black_box(input.as_bytes()), &signature).unwrap())
            });
        }

        // jsonwebtoken (aws_lc_rs): no ML-DSA.
        if alg != Algorithm::MlDsa44 {
            let jw_alg: jsonwebtoken::Algorithm = name.parse().unwrap();
            let decoding = if alg.is_symmetric() {
                jsonwebtoken::DecodingKey::from_secret(&b64::decode(v["k"].as_str().unwrap().as_bytes()).unwrap())
            } else {
                jsonwebtoken::DecodingKey::from_jwk(&serde_json::from_str(&trusted_jwk).unwrap()).unwrap()
            };
            let mut validation = jsonwebtoken::Validation::new(jw_alg);
            validation.set_issuer(&[ISS]);
            validation.set_audience(&[AUD]);
            group.bench_function(format!("{name}/jsonwebtoken"), |b| {
                b.iter(|| jsonwebtoken::decode::<AccessClaims>(black_box(&token), &decoding, &validation).unwrap())
            });
        }

        // jwt-simple (pure-rust backend).
        {
            use jwt_simple::prelude::*;
            let opts = || VerificationOptions {
                allowed_issuers: Some(HashSet::from_strings(&[ISS])),
                allowed_audiences: Some(HashSet::from_strings(&[AUD])),
                ..Default::default()
            };
            let d = |m: &str| b64::decode(v[m].as_str().unwrap().as_bytes()).unwrap();
            macro_rules! run {
                ($key:expr) => {{
                    let key = $key;
                    let o = opts();
                    group.bench_function(format!("{name}/jwt-simple"), |b| {
                        b.iter(|| key.verify_token::<NoCustomClaims>(black_box(&token), Some(o.clone())).unwrap())
                    });
                }};
            }
            match alg {
                Algorithm::ES256 => run!(ES256PublicKey::from_bytes(&raw_public(alg, &trusted_jwk)).unwrap()),
                Algorithm::EdDSA => run!(Ed25519PublicKey::from_bytes(&d("x")).unwrap()),
                Algorithm::RS256 => run!(RS256PublicKey::from_components(&d("n"), &d("e")).unwrap()),
                Algorithm::PS256 => run!(PS256PublicKey::from_components(&d("n"), &d("e")).unwrap()),
                Algorithm::HS256 => run!(HS256Key::from_bytes(&d("k"))),
                _ => run!(MLDSA44PublicKey::from_bytes(&d("pub")).unwrap()),
            }
        }
    }
    group.finish();
}

/// PKCS#1 `RSAPrivateKey` out of the backend's PKCS#8 (the OCTET STRING after the algorithm identifier).
fn pkcs1_from_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
    let pos = pkcs8.windows(2).position(|w| w == [0x04, 0x82]).unwrap();
    pkcs8[pos + 4..].to_vec()
}

fn bench_sign(c: &mut Criterion) {
    use aws_lc_rs::encoding::AsDer;
    let now = UnixTime::now();
    let claims = claims(now.as_secs());
    let mut group = c.benchmark_group("sign");
    for alg in
        [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256, Algorithm::PS256, Algorithm::HS256, Algorithm::MlDsa44]
    {
        let name = alg.name();
        let signer = jwt::Signer::new(SigningKey::generate(alg).unwrap().with_kid("bench"), Some(AT_JWT));
        let token = signer.sign(&claims).unwrap();
        let (input, _) = token.rsplit_once('.').unwrap();
        let input = input.as_bytes().to_vec();
        group.bench_function(format!("{name}/ours"), |b| b.iter(|| signer.sign(black_box(&claims)).unwrap()));

        let rng = rand::SystemRandom::new();
        let mut jw_key: Option<jsonwebtoken::EncodingKey> = None;
        match alg {
            Algorithm::ES256 => {
                let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
                let pair =
                    sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
                group.bench_function(format!("{name}/raw"), |b| b.iter(|| pair.sign(&rng, black_box(&input)).unwrap()));
                jw_key = Some(jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()));
            }
            Algorithm::EdDSA => {
                let pkcs8 = sig::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
                let pair = sig::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
                group.bench_function(format!("{name}/raw"), |b| b.iter(|| pair.sign(black_box(&input))));
                jw_key = Some(jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref()));
            }
            Algorithm::RS256 | Algorithm::PS256 => {
                let pair = sig::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
                let encoding: &'static dyn sig::RsaEncoding =
                    if alg == Algorithm::RS256 { &sig::RSA_PKCS1_SHA256 } else { &sig::RSA_PSS_SHA256 };
                let mut out = vec![0u8; pair.public_modulus_len()];
                group.bench_function(format!("{name}/raw"), |b| {
                    b.iter(|| pair.sign(encoding, &rng, black_box(&input), &mut out).unwrap())
                });
                let pkcs8 = pair.as_der().unwrap();
                jw_key = Some(jsonwebtoken::EncodingKey::from_rsa_der(&pkcs1_from_pkcs8(pkcs8.as_ref())));
            }
            Algorithm::HS256 => {
                let secret = [0x5au8; 32];
                let key = hmac::Key::new(hmac::HMAC_SHA256, &secret);
                group.bench_function(format!("{name}/raw"), |b| b.iter(|| hmac::sign(&key, black_box(&input))));
                jw_key = Some(jsonwebtoken::EncodingKey::from_secret(&secret));
            }
            _ => {
                let pair = sig::PqdsaKeyPair::generate(&sig::ML_DSA_44_SIGNING).unwrap();
                let mut out = vec![0u8; sig::ML_DSA_44_SIGNING.signature_len()];
                group.bench_function(format!("{name}/raw"), |b| {
                    b.iter(|| pair.sign(black_box(&input), &mut out).unwrap())
                });
                let _ = pair.public_key();
            }
        }
        if let Some(key) = jw_key {
            let mut header = jsonwebtoken::Header::new(name.parse().unwrap());
            header.typ = Some(AT_JWT.into());
            header.kid = Some("bench".into());
            group.bench_function(format!("{name}/jsonwebtoken"), |b| {
                b.iter(|| jsonwebtoken::encode(&header, black_box(&claims), &key).unwrap())
            });
        }
        {
            use jwt_simple::prelude::*;
            let custom = || Claims::with_custom_claims(claims_custom(&claims), Duration::from_mins(5));
            macro_rules! run {
                ($key:expr) => {{
                    let key = $key.with_key_id("bench");
                    group.bench_function(format!("{name}/jwt-simple"), |b| {
                        b.iter(|| key.sign(black_box(custom())).unwrap())
                    });
                }};
            }
            match alg {
                Algorithm::ES256 => run!(ES256KeyPair::generate()),
                Algorithm::EdDSA => run!(Ed25519KeyPair::generate()),
                Algorithm::RS256 => run!(RS256KeyPair::generate(2048).unwrap()),
                Algorithm::PS256 => run!(PS256KeyPair::generate(2048).unwrap()),
                Algorithm::HS256 => {
                    let key = HS256Key::generate().with_key_id("bench");
                    group.bench_function(format!("{name}/jwt-simple"), |b| {
                        b.iter(|| key.authenticate(black_box(custom())).unwrap())
                    });
                }
                _ => run!(MLDSA44KeyPair::generate()),
            }
        }
    }
    group.finish();
}

#[derive(Debug, Serialize, Deserialize, Clone)]
struct Custom {
    client_id: String,
    scope: String,
    roles: Vec<String>,
    sid: String,
}

fn claims_custom(c: &AccessClaims) -> Custom {
    Custom { client_id: c.client_id.clone(), scope: c.scope.clone(), roles: c.roles.clone(), sid: c.sid.clone() }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(700))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40)
}

criterion_group! { name = benches; config = config(); targets = bench_verify, bench_sign }
criterion_main!(benches);
