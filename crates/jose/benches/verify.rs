//! Criterion benchmark of verify and sign per algorithm (cases in `common`): ours, the raw aws-lc-rs
//! primitive, jsonwebtoken and jwt-simple.
//!
//! Run: `cargo bench -p portcullis-jose --bench verify`, then `scripts/bench-table` for the table. On a shared
//! host prefer `cargo bench -p portcullis-jose --bench interleaved`, which measures all of them in turns.

// A benchmark binary: setup failures should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

fn run(c: &mut Criterion, group: &str, cases: Vec<common::Case>) {
    let mut g = c.benchmark_group(group);
    for case in cases {
        g.bench_function(format!("{}/{}", case.alg, case.imp), |b| b.iter(&case.op));
    }
    g.finish();
}

fn bench(c: &mut Criterion) {
    run(c, "verify", common::verify_cases());
    run(c, "sign", common::sign_cases());
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(700))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40)
}

criterion_group! { name = benches; config = config(); targets = bench }
criterion_main!(benches);
