//! Verify and sign per algorithm, every implementation measured in turns: each round times a short batch of
//! each implementation in rotating order, and the table reports each one's median over the rounds. A shared
//! host's drifting speed then affects all columns alike, so the ratios hold where sequential runs would not.
//!
//! Run: `cargo bench -p portcullis-jose --bench interleaved [-- dpop | ALG...]` (prints Markdown tables; about a
//! minute; `dpop` runs the DPoP table alone, algorithm names such as `HS256` restrict the tables to them).
//!
//! With HS256 among the algorithms, a table splits HS256 into parts: the MAC, serializing and encoding the
//! claims (what signing adds), decoding and parsing them (what verifying adds), each timed alone.
//!
//! The last table is the cost of checking one DPoP proof (RFC 9449) at a resource server, against its floor:
//! the bare signature verification of the proof plus one SHA-256 of the access token (for `ath`).

// A benchmark binary: setup failures should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

const ROUNDS: usize = 41;
const BATCH_TARGET: Duration = Duration::from_millis(4);

/// How many calls fill about one batch.
fn batch_size(op: &common::Op) -> u32 {
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < BATCH_TARGET / 4 || n < 3 {
        op();
        n += 1;
    }
    (n * 4).max(1)
}

/// The median time per call of each case, measured in rotating order.
fn measure(cases: &[&common::Case]) -> Vec<f64> {
    let batches: Vec<u32> = cases.iter().map(|c| batch_size(&c.op)).collect();
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(ROUNDS); cases.len()];
    for round in 0..ROUNDS {
        for k in 0..cases.len() {
            let i = (k + round) % cases.len();
            let start = Instant::now();
            for _ in 0..batches[i] {
                (cases[i].op)();
            }
            samples[i].push(start.elapsed().as_nanos() as f64 / f64::from(batches[i]));
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect()
}

fn fmt(ns: f64) -> String {
    if ns >= 1000.0 {
        format!("{:.2} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

fn table(title: &str, cases: Vec<common::Case>) {
    println!("\n{title} (median of {ROUNDS} interleaved rounds; ratio to raw aws-lc-rs)\n");
    println!("| alg | {} |", common::IMPLS.join(" | "));
    println!("|---|{}", "---|".repeat(common::IMPLS.len()));
    let wanted: Vec<String> = std::env::args().filter(|a| common::ALGS.iter().any(|g| g.name() == a)).collect();
    for alg in common::ALGS.into_iter().filter(|a| wanted.is_empty() || wanted.iter().any(|w| w == a.name())) {
        let group: Vec<&common::Case> = cases.iter().filter(|c| c.alg == alg.name()).collect();
        let times = measure(&group);
        let raw = group.iter().zip(&times).find(|(c, _)| c.imp == "raw").map(|(_, t)| *t);
        let cells: Vec<String> = common::IMPLS
            .iter()
            .map(|imp| match group.iter().zip(&times).find(|(c, _)| c.imp == *imp) {
                None => "n/a".into(),
                Some((_, t)) if *imp == "raw" => fmt(*t),
                Some((_, t)) => format!("{} ({:.2}×)", fmt(*t), t / raw.unwrap_or(*t)),
            })
            .collect();
        println!("| {} | {} |", alg.name(), cells.join(" | "));
    }
}

/// HS256 part by part, each against the MAC: the targets (sign within 1.10× of the MAC, verify within 2×) leave
/// 10 % and 100 % of it for the rest, and this shows what the rest costs alone.
fn parts_table() {
    println!("\nHS256, part by part (median of {ROUNDS} interleaved rounds; ratio to the MAC)\n");
    println!("| part | time | ratio to the MAC |");
    println!("|---|---|---|");
    let parts = common::hs256_parts();
    let cases: Vec<common::Case> =
        parts.into_iter().map(|(name, op)| common::Case { alg: "HS256", imp: name, op }).collect();
    let times = measure(&cases.iter().collect::<Vec<_>>());
    for (case, t) in cases.iter().zip(&times) {
        println!("| {} | {} | {:.2}× |", case.imp, fmt(*t), t / times[0]);
    }
}

/// One DPoP proof check per algorithm: the floor (the proof's signature by a pre-parsed key, plus SHA-256 of
/// the access token) against `dpop::verify_proof` (parse, import the header's key, thumbprint, signature, every
/// claim check, `ath`).
fn dpop_table() {
    use std::hint::black_box;

    use aws_lc_rs::digest;
    use portcullis_jose::dpop::{sign_proof, verify_proof, ProofPolicy, ProofRequest};
    use portcullis_jose::{b64, Algorithm, SigningKey, UnixTime};

    println!("\nDPoP proof check (median of {ROUNDS} interleaved rounds; ratio to the floor)\n");
    println!("| alg | floor: signature + SHA-256 of the token | verify_proof |");
    println!("|---|---|---|");
    let now = UnixTime::now();
    let access_token = format!("eyJ0eXAiOiJhdCtqd3QifQ.{}.{}", "x".repeat(600), "y".repeat(86));
    let ath = b64::encode(digest::digest(&digest::SHA256, access_token.as_bytes()).as_ref());
    for alg in [Algorithm::ES256, Algorithm::EdDSA] {
        let key = SigningKey::generate(alg).unwrap();
        let jwk: serde_json::Value = serde_json::from_str(&key.verifying_key().to_jwk().unwrap()).unwrap();
        let url = "https://api.portcullis.example/orders/42";
        let claims =
            format!(r#"{{"jti":"e1j3bSh2-Qm7","htm":"GET","htu":"{url}","iat":{},"ath":"{ath}"}}"#, now.as_secs());
        let proof = sign_proof(&key, &claims).unwrap();
        let (input, signature) = proof.rsplit_once('.').unwrap();
        let (input, signature) = (input.as_bytes().to_vec(), b64::decode(signature.as_bytes()).unwrap());
        let parsed = common::raw_verifier(alg, &jwk);
        let token = access_token.clone();
        let floor = common::Case {
            alg: alg.name(),
            imp: "floor",
            op: Box::new(move || {
                parsed.verify_sig(black_box(&input), &signature).unwrap();
                black_box(digest::digest(&digest::SHA256, black_box(token.as_bytes())));
            }),
        };
        let token = access_token.clone();
        let policy = ProofPolicy::default();
        let ours = common::Case {
            alg: alg.name(),
            imp: "ours",
            op: Box::new(move || {
                let request = ProofRequest { method: "GET", url, access_token: Some(&token), nonce: None };
                black_box(verify_proof(black_box(&proof), &request, &policy, now).unwrap());
            }),
        };
        let times = measure(&[&floor, &ours]);
        println!("| {} | {} | {} ({:.2}×) |", alg.name(), fmt(times[0]), fmt(times[1]), times[1] / times[0]);
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing to run here.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    // `-- dpop` runs the DPoP table alone.
    let dpop_only = std::env::args().any(|a| a == "dpop");
    if !dpop_only {
        table("verify", common::verify_cases());
        table("sign", common::sign_cases());
        let wanted = |name: &str| std::env::args().any(|a| a == name);
        if wanted("HS256") || !common::ALGS.iter().any(|g| wanted(g.name())) {
            parts_table();
        }
    }
    if dpop_only || !std::env::args().any(|a| common::ALGS.iter().any(|g| g.name() == a)) {
        dpop_table();
    }
}
