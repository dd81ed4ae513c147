//! Verify and sign per algorithm, every implementation measured in turns: each round times a short batch of
//! each implementation in rotating order, and the table reports each one's median over the rounds. A shared
//! host's drifting speed then affects all columns alike, so the ratios hold where sequential runs would not.
//!
//! Run: `cargo bench -p portcullis-jose --bench interleaved` (prints a Markdown table; about a minute).

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
    for alg in common::ALGS {
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

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing to run here.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    table("verify", common::verify_cases());
    table("sign", common::sign_cases());
}
