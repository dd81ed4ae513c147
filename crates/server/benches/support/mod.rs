//! What the server benchmarks share: arguments, concurrent timed loops of HTTP requests, and their reports.

#![allow(dead_code)]

use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Sample {
    pub ok: u64,
    pub failed: u64,
    pub micros: Vec<u32>,
}

pub fn arg_text(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

pub fn arg(name: &str, default: u64) -> u64 {
    arg_text(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub fn report(name: &str, s: &mut Sample, elapsed: Duration) -> f64 {
    s.micros.sort_unstable();
    let pct = |p: f64| s.micros.get(((s.micros.len() as f64 * p) as usize).min(s.micros.len().saturating_sub(1)));
    let rate = s.ok as f64 / elapsed.as_secs_f64();
    println!(
        "{name:<34} {rate:>10.0}/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} ok, {} failed)",
        pct(0.50).copied().unwrap_or(0) as f64 / 1000.0,
        pct(0.99).copied().unwrap_or(0) as f64 / 1000.0,
        s.ok,
        s.failed
    );
    rate
}

pub async fn run<F, Fut>(concurrency: u64, make: F) -> (Sample, Duration)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Sample> + Send + 'static,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency).map(|i| tokio::spawn(make(i))).collect();
    let mut total = Sample::default();
    for t in tasks {
        let s = t.await.unwrap();
        total.ok += s.ok;
        total.failed += s.failed;
        total.micros.extend(s.micros);
    }
    (total, started.elapsed())
}

pub async fn post_form(
    http: &reqwest::Client,
    url: &str,
    auth: (&str, &str),
    form: &[(&str, &str)],
) -> Option<serde_json::Value> {
    let resp = http.post(url).basic_auth(auth.0, Some(auth.1)).form(form).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

pub async fn timed_loop<'a>(
    deadline: Instant,
    mut step: impl FnMut() -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>> + Send + 'a,
) -> Sample {
    let mut s = Sample::default();
    while Instant::now() < deadline {
        let t = Instant::now();
        if step().await {
            s.ok += 1;
            s.micros.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
        } else {
            s.failed += 1;
        }
    }
    s
}
