//! Our verify path against Wycheproof's signature vectors for every curve and RSA size we support, property
//! tests (round trips, mutations), and an ML-DSA cross-check with an independent implementation (jwt-simple,
//! whose ML-DSA is RustCrypto's `ml-dsa`).

// A test binary: a failed unwrap or panic is a failed test, which is what these helpers are for.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use portcullis_jose::jws::{self, HeaderParams, JwsOptions};
use portcullis_jose::{jwk, jwt, Algorithm, Error, KeySet, Policy, SigningKey, UnixTime, VerifyingKey};
use proptest::prelude::*;
use wycheproof::TestResult;

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len().saturating_sub(1));
    &b[first..]
}

/// Checks one Wycheproof outcome (`acceptable` cases may go either way) and counts it.
fn check(expected: &TestResult, outcome: Result<(), Error>, what: &str, total: &mut usize) {
    match expected {
        TestResult::Valid => assert!(outcome.is_ok(), "{what}: valid vector refused: {outcome:?}"),
        TestResult::Invalid => assert!(outcome.is_err(), "{what}: invalid vector accepted"),
        _ => {}
    }
    *total += 1;
}

#[test]
fn wycheproof_ecdsa_p1363() {
    use wycheproof::ecdsa::{TestName, TestSet};
    let mut total = 0;
    for (name, alg) in [
        (TestName::EcdsaSecp256r1Sha256P1363, Algorithm::ES256),
        (TestName::EcdsaSecp384r1Sha384P1363, Algorithm::ES384),
        (TestName::EcdsaSecp521r1Sha512P1363, Algorithm::ES512),
    ] {
        let set = TestSet::load(name).unwrap();
        let len = set.test_groups[0].key.key.len() / 2;
        for group in set.test_groups {
            let point = &group.key.key[..];
            let key = VerifyingKey::ec(alg, &point[1..=len], &point[1 + len..]).unwrap();
            for t in group.tests {
                let what = format!("{alg} tcId {} {}", t.tc_id, t.comment);
                check(&t.result, key.verify(&t.msg, &t.sig), &what, &mut total);
            }
        }
    }
    assert!(total > 700, "{total}");
}

#[test]
fn wycheproof_ed25519() {
    use wycheproof::eddsa::{TestName, TestSet};
    let set = TestSet::load(TestName::Ed25519).unwrap();
    let mut total = 0;
    for group in set.test_groups {
        let key = VerifyingKey::ed25519(&group.key.pk).unwrap();
        for t in group.tests {
            check(&t.result, key.verify(&t.msg, &t.sig), &format!("Ed25519 tcId {}", t.tc_id), &mut total);
        }
    }
    assert!(total > 100, "{total}");
}

#[test]
fn wycheproof_rsa_pkcs1_and_pss() {
    let mut total = 0;
    let mut skipped_groups = 0;
    {
        use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
        for (name, alg) in [
            (TestName::Rsa2048Sha256, Algorithm::RS256),
            (TestName::Rsa2048Sha384, Algorithm::RS384),
            (TestName::Rsa2048Sha512, Algorithm::RS512),
            (TestName::Rsa3072Sha256, Algorithm::RS256),
            (TestName::Rsa3072Sha384, Algorithm::RS384),
            (TestName::Rsa3072Sha512, Algorithm::RS512),
            (TestName::Rsa4096Sha256, Algorithm::RS256),
            (TestName::Rsa4096Sha384, Algorithm::RS384),
            (TestName::Rsa4096Sha512, Algorithm::RS512),
            (TestName::Rsa8192Sha256, Algorithm::RS256),
        ] {
            for group in TestSet::load(name).unwrap().test_groups {
                let Some(key) = rsa_key(alg, &group.key.n, &group.key.e, &mut skipped_groups) else { continue };
                for t in group.tests {
                    let what = format!("{alg} {name:?} tcId {} {}", t.tc_id, t.comment);
                    check(&t.result, key.verify(&t.msg, &t.sig), &what, &mut total);
                }
            }
        }
    }
    {
        use wycheproof::rsa_pss_verify::{TestName, TestSet};
        for (name, alg) in [
            (TestName::RsaPss2048Sha256Mgf1SaltLen32, Algorithm::PS256),
            (TestName::RsaPss2048Sha384Mgf1SaltLen48, Algorithm::PS384),
            (TestName::RsaPss3072Sha256Mgf1SaltLen32, Algorithm::PS256),
            (TestName::RsaPss4096Sha256Mgf1SaltLen32, Algorithm::PS256),
            (TestName::RsaPss4096Sha512Mgf1SaltLen64, Algorithm::PS512),
        ] {
            for group in TestSet::load(name).unwrap().test_groups {
                let Some(key) = rsa_key(alg, &group.key.n, &group.key.e, &mut skipped_groups) else { continue };
                for t in group.tests {
                    let what = format!("{alg} {name:?} tcId {} {}", t.tc_id, t.comment);
                    check(&t.result, key.verify(&t.msg, &t.sig), &what, &mut total);
                }
            }
        }
    }
    assert!(total > 1000, "{total}");
    // Only the groups whose key has e = 3 are left out (our key policy refuses e < 65537).
    assert!(skipped_groups <= 20, "{skipped_groups}");
}

/// Imports a Wycheproof RSA key; a key our policy refuses for its small exponent skips its group.
fn rsa_key(alg: Algorithm, n: &[u8], e: &[u8], skipped: &mut usize) -> Option<VerifyingKey> {
    match VerifyingKey::rsa(alg, strip_zeros(n), strip_zeros(e)) {
        Ok(key) => Some(key),
        Err(Error::InvalidKey(_)) if strip_zeros(e) == [3] => {
            *skipped += 1;
            None
        }
        Err(other) => panic!("{alg}: {other}"),
    }
}

#[test]
fn wycheproof_ml_dsa_verify() {
    use wycheproof::mldsa_verify::{TestName, TestSet};
    let mut total = 0;
    for (name, alg) in [
        (TestName::MlDsa44Verify, Algorithm::MlDsa44),
        (TestName::MlDsa65Verify, Algorithm::MlDsa65),
        (TestName::MlDsa87Verify, Algorithm::MlDsa87),
    ] {
        for group in TestSet::load(name).unwrap().test_groups {
            let key = VerifyingKey::ml_dsa(alg, &group.pubkey);
            for t in group.tests {
                // JOSE signs with the empty context; vectors with another context do not apply.
                if t.ctx.as_ref().is_some_and(|c| !c.is_empty()) {
                    continue;
                }
                let what = format!("{alg} tcId {} {}", t.tc_id, t.comment);
                let outcome = match &key {
                    Ok(key) => key.verify(&t.msg, &t.sig),
                    Err(e) => Err(e.clone()),
                };
                check(&t.result, outcome, &what, &mut total);
            }
        }
    }
    assert!(total > 50, "{total}");
}

/// The key set a verifier of `key`'s tokens holds: the public JWK, or for HMAC the shared secret.
fn trusted(key: &SigningKey) -> KeySet {
    let text = if key.algorithm().is_symmetric() {
        key.to_jwk().unwrap().to_string()
    } else {
        key.verifying_key().to_jwk().unwrap()
    };
    KeySet::single(jwk::verifying_key_from_jwk(&text, &[]).unwrap())
}

#[test]
fn ml_dsa_interoperates_with_an_independent_implementation() {
    use jwt_simple::prelude::{
        Claims, Duration, MLDSA44KeyPair, MLDSA44PublicKey, MLDSAKeyPairLike, MLDSAPublicKeyLike, NoCustomClaims,
    };
    let now = UnixTime::now();
    let policy = Policy::builder().danger_accept_any_issuer().danger_accept_any_audience().build().unwrap();

    // Theirs signs, ours verifies; their private JWK (the 32-byte seed) imports into ours with the same key.
    let theirs = MLDSA44KeyPair::generate().with_key_id("theirs");
    let token = theirs.sign(Claims::create(Duration::from_mins(5)).with_subject("s1")).unwrap();
    let keys = KeySet::from_jwks(&theirs.public_key().to_jwk(), &[]).unwrap();
    let verified = jwt::verify(&token, &keys, &policy, now).unwrap();
    assert_eq!(verified.claims.sub().as_deref(), Some("s1"));
    let imported = jwk::signing_key_from_jwk(&theirs.to_jwk(), &[]).unwrap();
    assert_eq!(imported.verifying_key().thumbprint(), theirs.public_key().jwk_thumbprint());

    // Ours signs (a fresh key, and the imported one), theirs verifies.
    for ours in [SigningKey::generate(Algorithm::MlDsa44).unwrap().with_kid("ours"), imported] {
        let public_jwk = ours.verifying_key().to_jwk().unwrap();
        let claims = format!(r#"{{"sub":"s2","iat":{},"exp":{}}}"#, now.as_secs(), now.as_secs() + 300);
        let token = jwt::Signer::new(ours, None).sign_json(&claims).unwrap();
        let their_view = MLDSA44PublicKey::from_jwk(&public_jwk).unwrap();
        let claims = their_view.verify_token::<NoCustomClaims>(&token, None).unwrap();
        assert_eq!(claims.subject.as_deref(), Some("s2"));
        // A token of ours, altered, is refused by them too.
        let altered = token.replacen(".ey", ".ez", 1);
        assert!(their_view.verify_token::<NoCustomClaims>(&altered, None).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn sign_verify_round_trips_and_any_mutation_is_refused(
        alg_index in 0usize..Algorithm::ALL.len(),
        payload in proptest::collection::vec(any::<u8>(), 0..200),
        position in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let alg = Algorithm::ALL[alg_index];
        let key = SigningKey::generate(alg).unwrap().with_kid("p");
        let keys = trusted(&key);
        let token = jws::sign(&key, &HeaderParams::default(), &payload).unwrap();
        let verified = jws::verify(&token, &keys, &JwsOptions::default()).unwrap();
        prop_assert_eq!(&verified.payload, &payload);

        let mut bytes = token.clone().into_bytes();
        let i = position.index(bytes.len());
        bytes[i] ^= 1 << bit;
        if let Ok(mutated) = String::from_utf8(bytes) {
            prop_assert!(jws::verify(&mutated, &keys, &JwsOptions::default()).is_err(), "{} mutated at {}", alg, i);
        }
    }
}

/// The two HMAC keys of the header-memo property: `mac` signs, `other` is a second key of the same algorithm
/// that a header without a `kid` makes ambiguous.
fn memo_keys() -> KeySet {
    KeySet::new(vec![
        VerifyingKey::hmac(Algorithm::HS256, &[7u8; 32]).unwrap().with_kid("mac"),
        VerifyingKey::hmac(Algorithm::HS256, &[9u8; 32]).unwrap().with_kid("other"),
    ])
    .unwrap()
}

/// A set kept across the cases, so that its four remembered headers are taken by early cases and hit by later ones.
fn warm_memo_keys() -> &'static KeySet {
    static WARM: std::sync::OnceLock<KeySet> = std::sync::OnceLock::new();
    WARM.get_or_init(memo_keys)
}

/// Header members, valid and hostile: the generator joins a few of them into an object.
const HEADER_MEMBERS: [&str; 16] = [
    r#""alg":"HS256""#,
    r#""alg":"HS384""#,
    r#""alg":"none""#,
    r#""alg":"HS\u0032\u0035\u0036""#,
    r#""kid":"mac""#,
    r#""kid":"m\u0061c""#,
    r#""kid":"other""#,
    r#""kid":"nobody""#,
    r#""typ":"at+jwt""#,
    r#""typ":"JWT""#,
    r#""crit":["exp"]"#,
    r#""b64":false"#,
    r#""zip":"DEF""#,
    r#""jwk":{"kty":"oct"}"#,
    r#""x-ext":{"a":[1,{"b":null}]}"#,
    r#""jku":"https://attacker.example/jwks""#,
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A key set that remembers a header it accepted answers every token exactly as a set that never saw it:
    /// same header, payload and error, whatever the header holds (escapes, nesting, forbidden parameters), the
    /// payload, a tampered signature, the caller's algorithm list and nesting limit.
    #[test]
    fn a_remembered_header_changes_no_outcome(
        members in proptest::collection::vec(0usize..HEADER_MEMBERS.len(), 1..5),
        spaced in any::<bool>(),
        payload in prop_oneof![
            Just(br#"{"sub":"a","exp":2000000000}"#.to_vec()),
            Just(br#"{"sub":"a","sub":"b"}"#.to_vec()),
            proptest::collection::vec(any::<u8>(), 0..40),
        ],
        signer in prop_oneof![Just([7u8; 32]), Just([9u8; 32])],
        tamper in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let sep = if spaced { ", " } else { "," };
        let header = format!("{{{}}}", members.iter().map(|&i| HEADER_MEMBERS[i]).collect::<Vec<_>>().join(sep));
        let input = format!("{}.{}", portcullis_jose::b64::encode(header.as_bytes()), portcullis_jose::b64::encode(&payload));
        let mac = SigningKey::hmac(Algorithm::HS256, &signer).unwrap();
        let mut signature = mac.sign(input.as_bytes()).unwrap();
        if let Some(at) = tamper {
            let i = at.index(signature.len());
            signature[i] ^= 1;
        }
        let token = format!("{input}.{}", portcullis_jose::b64::encode(&signature));
        let option_sets = [
            JwsOptions::default(),
            JwsOptions { algorithms: portcullis_jose::AlgSet::of(&[Algorithm::HS384]), ..JwsOptions::default() },
            JwsOptions { max_depth: 0, ..JwsOptions::default() },
            JwsOptions { max_depth: 1, ..JwsOptions::default() },
        ];
        let seen = memo_keys();
        // The first verification may remember the header; every later one may use what it remembered.
        let _ = jws::verify(&token, &seen, &JwsOptions::default());
        for options in &option_sets {
            let expected = format!("{:?}", jws::verify(&token, &memo_keys(), options));
            prop_assert_eq!(&format!("{:?}", jws::verify(&token, &seen, options)), &expected, "{}", header);
            prop_assert_eq!(&format!("{:?}", jws::verify(&token, warm_memo_keys(), options)), &expected, "{}", header);
        }
    }
}
