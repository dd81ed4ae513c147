//! The cost DPoP adds to a request at the guard, measured in one process (no network, no load generator): a
//! request with a DPoP-bound token and a fresh proof (`Guard::authorize_request`) against the same request with a
//! bearer token (`Guard::authorize`), both with the token's verification cached, next to the floor RFC 9449 sets:
//! one ES256 verification of the proof's signature (key already parsed) plus one SHA-256 of the token (`ath`).
//! Each round times a batch of every case in rotating order and the table gives medians, so a shared host's
//! drifting speed affects every column alike.
//!
//! Run: `cargo bench -p portcullis-guard --bench dpop`.

// A benchmark binary: setup failures should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Instant;

use aws_lc_rs::{digest, signature};
use portcullis_guard::{Guard, GuardConfig, PresentedRequest, Requirement};
use portcullis_jose::dpop::{access_token_hash, sign_proof};
use portcullis_jose::{b64, jwt, Algorithm, SigningKey, UnixTime, AT_JWT};

const ROUNDS: usize = 41;
const BATCH: usize = 64;
const ISSUER: &str = "https://auth.portcullis.example";
const URL: &str = "https://api.portcullis.example/orders/42";

async fn jwks_server(doc: String) -> String {
    let app = axum::Router::new().route("/jwks.json", axum::routing::get(move || std::future::ready(doc.clone())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/jwks.json")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing to run here.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let issuer_key = SigningKey::generate(Algorithm::ES256).unwrap().with_kid("k1");
    let jwks = format!(r#"{{"keys":[{}]}}"#, issuer_key.verifying_key().to_jwk().unwrap());
    let client = SigningKey::generate(Algorithm::ES256).unwrap();
    let jkt = client.verifying_key().thumbprint();
    let now = UnixTime::now().as_secs();
    let claims = |cnf: &str| {
        format!(
            r#"{{"iss":"{ISSUER}","sub":"user-7f3c9a2e-5b1d-4c8e-9f20-1a2b3c4d5e6f","aud":"api","iat":{now},"exp":{},"jti":"b1e2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d{}","client_id":"web-frontend-prod","scope":"openid read:orders write:orders","sid":"s-9d8c7b6a5f4e3d2c1b0a"{cnf}}}"#,
            now + 300,
            cnf.len()
        )
    };
    let signer = jwt::Signer::new(issuer_key, Some(AT_JWT));
    let bearer = signer.sign_json(&claims("")).unwrap();
    let bound = signer.sign_json(&claims(&format!(r#","cnf":{{"jkt":"{jkt}"}}"#))).unwrap();

    let guard = rt.block_on(async {
        let config = GuardConfig { jwks_uri: Some(jwks_server(jwks).await), ..GuardConfig::new(ISSUER, "api") };
        Guard::start(config).await.unwrap()
    });
    let requirement = Requirement::scopes(["read:orders"]);
    let ath = access_token_hash(&bound);
    let mut counter = 0u64;
    let mut proofs = std::iter::from_fn(move || {
        counter += 1;
        let claims = format!(r#"{{"jti":"p{counter}","htm":"GET","htu":"{URL}","iat":{now},"ath":"{ath}"}}"#);
        Some(sign_proof(&client, &claims).unwrap())
    });
    // The floor's inputs: one proof's signature and signing input, and its key parsed beforehand.
    let sample = proofs.next().unwrap();
    let (input, sig) = sample.rsplit_once('.').unwrap();
    let (input, sig) = (input.as_bytes().to_vec(), b64::decode(sig.as_bytes()).unwrap());
    let jwk: serde_json::Value = serde_json::from_str(&jwt_header_jwk(&sample)).unwrap();
    let point = [
        vec![4u8],
        b64::decode(jwk["x"].as_str().unwrap().as_bytes()).unwrap(),
        b64::decode(jwk["y"].as_str().unwrap().as_bytes()).unwrap(),
    ]
    .concat();
    let parsed = signature::ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).unwrap();

    let bearer_auth = format!("Bearer {bearer}");
    let dpop_auth = format!("DPoP {bound}");
    // Warm the verified-token cache for both tokens.
    rt.block_on(async {
        guard.authorize(Some(&bearer_auth), &requirement).await.unwrap();
        let p = proofs.next().unwrap();
        let request =
            PresentedRequest { authorization: Some(&dpop_auth), dpop: &[p.as_str()], method: "GET", url: URL };
        guard.authorize_request(&request, &requirement).await.unwrap();
    });

    let mut samples: [Vec<f64>; 3] = Default::default();
    for round in 0..ROUNDS {
        let batch: Vec<String> = (0..BATCH).map(|_| proofs.next().unwrap()).collect();
        for k in 0..3 {
            let case = (k + round) % 3;
            let started = Instant::now();
            match case {
                0 => {
                    for _ in 0..BATCH {
                        parsed.verify_sig(black_box(&input), &sig).unwrap();
                        black_box(digest::digest(&digest::SHA256, black_box(bound.as_bytes())));
                    }
                }
                1 => rt.block_on(async {
                    for _ in 0..BATCH {
                        black_box(guard.authorize(Some(black_box(&bearer_auth)), &requirement).await.unwrap());
                    }
                }),
                _ => rt.block_on(async {
                    for proof in &batch {
                        let dpop = [proof.as_str()];
                        let request =
                            PresentedRequest { authorization: Some(&dpop_auth), dpop: &dpop, method: "GET", url: URL };
                        black_box(guard.authorize_request(black_box(&request), &requirement).await.unwrap());
                    }
                }),
            }
            samples[case].push(started.elapsed().as_nanos() as f64 / BATCH as f64);
        }
    }
    let [floor, bearer, dpop] = samples.map(median);
    let extra = dpop - bearer;
    println!("\nDPoP at the guard, ES256 (median of {ROUNDS} interleaved rounds of {BATCH})\n");
    println!("| case | time per request |");
    println!("|---|---|");
    println!("| floor: ES256 verification of the proof + SHA-256 of the token | {:.2} µs |", floor / 1000.0);
    println!("| bearer token, verification cached (`authorize`) | {:.2} µs |", bearer / 1000.0);
    println!("| DPoP-bound token, cached, fresh proof (`authorize_request`) | {:.2} µs |", dpop / 1000.0);
    println!("| extra cost of DPoP (DPoP − bearer) | {:.2} µs ({:.2}× the floor) |", extra / 1000.0, extra / floor);
}

/// The `jwk` member of a proof's header, as JSON text.
fn jwt_header_jwk(proof: &str) -> String {
    let header = b64::decode(proof.split('.').next().unwrap().as_bytes()).unwrap();
    let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
    header["jwk"].to_string()
}
