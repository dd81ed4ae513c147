//! The audit ledger's costs, in one run:
//!
//! `cargo bench -p portcullis-server --bench ledger -- [--events N] [--leaves N] [--proofs N] [--seconds S]
//! [--rounds R] [--concurrency C] [--only append,proofs,tokens]`
//!
//! - append: N audit events written in group commits, then added to the tree (`ledger::extend`): leaves/s;
//! - proofs: `--leaves` events (10 million by default) written and added to the tree in SQLite, then inclusion
//!   and consistency proofs at random positions, each checked: p50/p99 per proof;
//! - tokens: client_credentials tokens/s from two servers, one with the ledger on and one with it off, in
//!   alternating rounds; the medians and their ratio.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_server::admin::{Admin, ClientKind, NewClient};
use portcullis_server::clock::SystemClock;
use portcullis_server::config::Config;
use portcullis_server::ledger::{self, merkle};
use portcullis_server::model::GrantType;
use portcullis_server::serve;
use portcullis_server::store::sqlite::SqliteStore;
use portcullis_server::store::{AuditEvent, Store};
use support::{arg, arg_text, post_form, report, run, timed_loop};

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

/// A pseudo-random sequence (xorshift), so runs are repeatable.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

async fn store_in(dir: &std::path::Path, name: &str) -> Arc<dyn Store> {
    let path = dir.join(format!("{name}.db"));
    Arc::new(SqliteStore::open(&format!("sqlite://{}", path.display())).await.unwrap())
}

/// Writes `events` audit events in group commits of 512, as the server's audit writer does; returns the time.
async fn write_events(store: &dyn Store, events: u64) -> Duration {
    let t = Instant::now();
    let mut written = 0;
    while written < events {
        let batch: Vec<AuditEvent> = (0..512.min(events - written))
            .map(|i| {
                let mut e = portcullis_server::audit::event(1_764_000_000, "token_issued");
                e.client_id = Some("svc".into());
                e.jti = Some(format!("j{}", written + i));
                e.detail = r#"{"grant":"client_credentials","scope":"read"}"#.into();
                e
            })
            .collect();
        written += batch.len() as u64;
        store.append_audit(&batch).await.unwrap();
    }
    t.elapsed()
}

async fn append(dir: &std::path::Path, events: u64) {
    let store = store_in(dir, "append").await;
    let appended = write_events(store.as_ref(), events).await;
    let t = Instant::now();
    let size = ledger::extend(store.as_ref()).await.unwrap();
    let grown = t.elapsed();
    assert_eq!(size, events);
    println!("audit events appended (group commits of 512)  {:>10.0}/s", events as f64 / appended.as_secs_f64());
    println!("leaves added to the tree (ledger::extend)     {:>10.0}/s", events as f64 / grown.as_secs_f64());
}

async fn proofs(dir: &std::path::Path, leaves: u64, count: u64) {
    let store = store_in(dir, "proofs").await;
    let appended = write_events(store.as_ref(), leaves).await;
    let t = Instant::now();
    assert_eq!(ledger::extend(store.as_ref()).await.unwrap(), leaves);
    println!(
        "{leaves} events written in {:.1} s, added to the tree in {:.1} s",
        appended.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    let root = ledger::root_at(store.as_ref(), leaves).await.unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut inclusion, mut consistency) = (Vec::new(), Vec::new());
    for _ in 0..count {
        let index = rng.below(leaves);
        let t = Instant::now();
        let (leaf, proof) = ledger::inclusion(store.as_ref(), index + 1, leaves).await.unwrap();
        inclusion.push(t.elapsed().as_secs_f64() * 1e6);
        assert!(merkle::verify_inclusion(index, leaves, &leaf, &proof, &root));
        let first = rng.below(leaves) + 1;
        let t = Instant::now();
        let proof = ledger::consistency(store.as_ref(), first, leaves).await.unwrap();
        consistency.push(t.elapsed().as_secs_f64() * 1e6);
        let first_root = ledger::root_at(store.as_ref(), first).await.unwrap();
        assert!(merkle::verify_consistency(first, leaves, &proof, &first_root, &root));
    }
    for (name, v) in [("inclusion proof", &mut inclusion), ("consistency proof", &mut consistency)] {
        println!(
            "{name:<18} at {leaves} leaves: p50 {:>6.0} µs   p99 {:>6.0} µs   ({count} proofs)",
            percentile(v, 0.5),
            percentile(v, 0.99)
        );
    }
}

async fn tokens(dir: &std::path::Path, seconds: u64, rounds: u64, concurrency: u64) {
    let mut bases = Vec::new();
    let mut secrets = Vec::new();
    for ledger_on in [true, false] {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let settings = Config {
            listen: format!("127.0.0.1:{port}"),
            data_dir: dir.join(if ledger_on { "on" } else { "off" }),
            login_rate_per_second: 0,
            log: "warn".into(),
            audit_ledger: ledger_on,
            audit_head_interval: 10,
            ..Config::default()
        }
        .validate()
        .unwrap();
        let (running, _) = serve::start(&settings, Arc::new(SystemClock), std::future::pending::<()>()).await.unwrap();
        let admin = Admin::new(Arc::clone(&running.authority.store), Arc::new(SystemClock));
        let (_, secret) = admin
            .add_client(NewClient {
                id: "svc".into(),
                credential: ClientKind::GenerateSecret,
                grants: vec![GrantType::ClientCredentials],
                scopes: vec!["read".into()],
                audiences: vec!["api".into()],
                ..NewClient::default()
            })
            .await
            .unwrap();
        bases.push(format!("http://127.0.0.1:{port}/oauth2/token"));
        secrets.push(secret.unwrap().expose().to_owned());
    }
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency as usize).build().unwrap();
    let mut rates = [Vec::new(), Vec::new()];
    for round in 0..rounds as usize {
        for k in [round % 2, 1 - round % 2] {
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let cpu_before = cpu_seconds();
            let (url, secret) = (bases[k].clone(), secrets[k].clone());
            let (mut sample, elapsed) = run(concurrency, |_| {
                let (http, url, secret) = (http.clone(), url.clone(), secret.clone());
                timed_loop(deadline, move || {
                    let (http, url, secret) = (http.clone(), url.clone(), secret.clone());
                    Box::pin(async move {
                        let form = [("grant_type", "client_credentials")];
                        post_form(&http, &url, ("svc", &secret), &form).await.is_some()
                    })
                })
            })
            .await;
            let label = if k == 0 { "tokens, ledger on" } else { "tokens, ledger off" };
            let used = cpu_seconds() - cpu_before;
            let (cpu, per_token) = (used / elapsed.as_secs_f64(), used * 1e6 / sample.ok.max(1) as f64);
            rates[k].push(report(label, &mut sample, elapsed));
            println!("{:<34} {cpu:>10.2} cores busy, {per_token:.1} µs of CPU per token (client included)", "");
        }
    }
    // The host's speed drifts from round to round; each round's on/off pair ran back to back, so the median of
    // the pairs' ratios compares fairly.
    let mut ratios: Vec<f64> = rates[0].iter().zip(&rates[1]).map(|(on, off)| on / off).collect();
    let ratio = percentile(&mut ratios, 0.5);
    let (on, off) = (percentile(&mut rates[0], 0.5), percentile(&mut rates[1], 0.5));
    println!(
        "client_credentials tokens/s over {rounds} rounds: medians ledger on {on:.0}, off {off:.0}; median of the \
         rounds' on/off ratios {ratio:.3}x"
    );
}

/// This process's CPU time so far (user + system), from `/proc/self/stat`; 0 where there is none.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line: indexes 11 and 12 of what follows the name (whose first
    // field is the state). Linux counts them in ticks of 1/100 s (USER_HZ).
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let only = arg_text("--only").unwrap_or_else(|| "append,proofs,tokens".into());
    let enabled = |name: &str| only.split(',').any(|s| s == name);
    let dir = std::env::temp_dir().join(format!("portcullis-ledger-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(cores).enable_all().build().unwrap();
    println!("portcullis audit ledger benchmark: {cores} cores, SQLite\n");
    rt.block_on(async {
        if enabled("append") {
            append(&dir, arg("--events", 200_000)).await;
        }
        if enabled("proofs") {
            proofs(&dir, arg("--leaves", 10_000_000), arg("--proofs", 1000)).await;
        }
        if enabled("tokens") {
            tokens(&dir, arg("--seconds", 10), arg("--rounds", 5).max(1), arg("--concurrency", 64)).await;
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}
