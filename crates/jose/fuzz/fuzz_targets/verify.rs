//! Feeds arbitrary bytes to every parser that sees untrusted input: the compact JWS/JWT verifier (against
//! fixed HMAC and ES256 key sets), the JWK Set importer, the thumbprint, the claims reader, and the JSON scanner
//! (both ways of parsing an object, which must agree). Any panic, hang or out-of-bounds access is a finding;
//! errors are the expected outcome.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis_jose::jws::{self, JwsOptions};
use portcullis_jose::{json, jwk, jwt, Algorithm, Claims, KeySet, Policy, SigningKey, UnixTime, VerifyingKey};

struct Fixture {
    mac: KeySet,
    ec: KeySet,
    policy: Policy,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mac = VerifyingKey::hmac(Algorithm::HS256, &[7u8; 32]).expect("key").with_kid("mac");
        let ec = SigningKey::generate(Algorithm::ES256).expect("key").with_kid("ec");
        let ec = jwk::verifying_key_from_jwk(&ec.verifying_key().to_jwk().expect("jwk"), &[]).expect("import");
        let policy = Policy::builder().danger_accept_any_issuer().danger_accept_any_audience().build().expect("policy");
        Fixture { mac: KeySet::single(mac), ec: KeySet::single(ec), policy }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = jws::verify(text, &f.mac, &JwsOptions::default());
        let _ = jwt::verify(text, &f.mac, &f.policy, UnixTime(1_700_000_000));
        let _ = jwt::verify(text, &f.ec, &f.policy, UnixTime(1_700_000_000));
        let _ = jws::decode_unverified(text, 1 << 16);
        let _ = KeySet::from_jwks(text, &[Algorithm::RS256]);
        let _ = jwk::thumbprint(text);
        // The claims reader, which a fuzzer cannot reach through a signature it cannot forge.
        let _ = Claims::parse(data.to_vec(), json::DEFAULT_MAX_DEPTH);
        let listed = json::parse_object(text, json::DEFAULT_MAX_DEPTH);
        // The visiting parser must see exactly the members the listing parser returns, or fail the same way.
        let mut visited = Vec::new();
        let walked = json::visit_object(text, json::DEFAULT_MAX_DEPTH, &mut |k, v| visited.push((k.raw(), v.text())));
        match (&listed, walked) {
            (Ok(members), Ok(())) => {
                let names: Vec<_> = members.iter().map(|m| (m.key.raw(), m.value.text())).collect();
                assert_eq!(names, visited);
            }
            (Err(a), Err(b)) => assert_eq!(*a, b),
            (a, b) => panic!("parse_object {a:?} but visit_object {b:?}"),
        }
        if let Ok(members) = listed {
            for m in members {
                let _ = m.key.to_cow();
                let _ = m.value.items();
                let _ = m.value.members();
            }
        }
    }
});
