//! Feeds arbitrary bytes to every parser that sees untrusted input: the compact JWS/JWT verifier (against
//! fixed HMAC and ES256 key sets), the JWK Set importer, the thumbprint, the claims reader, and the JSON scanner
//! (both ways of parsing an object, which must agree). Any panic, hang or out-of-bounds access is a finding;
//! errors are the expected outcome.
//!
//! The input also becomes a token signed with the fixture's HMAC key (first byte: the options and whether to
//! spoil the signature; then the header's bytes, a NUL, the payload's), which reaches what a forged token
//! cannot: a key set that remembers the headers it accepted must answer exactly as a fresh one.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis_jose::jws::{self, JwsOptions};
use portcullis_jose::{b64, json, jwk, jwt, AlgSet, Algorithm, Claims, KeySet, Policy, SigningKey, UnixTime, VerifyingKey};

const MAC_SECRET: [u8; 32] = [7u8; 32];

struct Fixture {
    mac: KeySet,
    mac_signer: SigningKey,
    ec: KeySet,
    policy: Policy,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mac = VerifyingKey::hmac(Algorithm::HS256, &MAC_SECRET).expect("key").with_kid("mac");
        let mac_signer = SigningKey::hmac(Algorithm::HS256, &MAC_SECRET).expect("key");
        let ec = SigningKey::generate(Algorithm::ES256).expect("key").with_kid("ec");
        let ec = jwk::verifying_key_from_jwk(&ec.verifying_key().to_jwk().expect("jwk"), &[]).expect("import");
        let policy = Policy::builder().danger_accept_any_issuer().danger_accept_any_audience().build().expect("policy");
        Fixture { mac: KeySet::single(mac), mac_signer, ec: KeySet::single(ec), policy }
    })
}

/// Signs the input's header and payload (see the module's text) and checks the header memo against a fresh set.
fn remembered_headers_change_nothing(f: &Fixture, data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let (header, payload) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let input = format!("{}.{}", b64::encode(header), b64::encode(payload));
    let mut signature = f.mac_signer.sign(input.as_bytes()).expect("mac");
    if mode & 1 == 1 {
        let at = usize::from(mode) % signature.len();
        signature[at] ^= 1;
    }
    let token = format!("{input}.{}", b64::encode(&signature));
    let options = match (mode >> 1) & 3 {
        0 => JwsOptions::default(),
        1 => JwsOptions { algorithms: AlgSet::of(&[Algorithm::HS384]), ..JwsOptions::default() },
        2 => JwsOptions { max_depth: 0, ..JwsOptions::default() },
        _ => JwsOptions { max_depth: 1, ..JwsOptions::default() },
    };
    let fresh = KeySet::single(VerifyingKey::hmac(Algorithm::HS256, &MAC_SECRET).expect("key").with_kid("mac"));
    let expected = format!("{:?}", jws::verify(&token, &fresh, &options));
    // The long-lived set remembers the first headers it accepts (from this or an earlier input).
    let _ = jws::verify(&token, &f.mac, &JwsOptions::default());
    assert_eq!(format!("{:?}", jws::verify(&token, &f.mac, &options)), expected);
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    remembered_headers_change_nothing(f, data);
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
