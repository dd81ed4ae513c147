//! Scoring cost per event and state per subject, on a simulated corpus.
//!
//! `cargo bench -p portcullis-risk --bench score -- [--users N] [--days N] [--rounds N]`
//!
//! Each round feeds the whole corpus, in time order, to a fresh engine (so it includes creating every profile
//! and learning), one core, and reports nanoseconds per event; parsing the JSON line is measured apart.

use std::hint::black_box;
use std::time::Instant;

use portcullis_risk::simulate::{geoip, simulate, Scenario};
use portcullis_risk::{Engine, Event, GeoIp, Profile, Weights};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let users = arg("--users", 2000);
    let days = arg("--days", 14) as u32;
    let rounds = arg("--rounds", 5).max(1);
    let scenario = Scenario::new(11, users, days);
    let events = simulate(&scenario);
    let world = geoip(&scenario);
    let lines: Vec<String> = events.iter().filter_map(|e| serde_json::to_string(e).ok()).collect();
    println!("corpus: seed 11, {users} users, {days} days, {} events", events.len());

    let mut score_ns = Vec::new();
    let mut geo_ns = Vec::new();
    let mut subjects = 0;
    for _ in 0..rounds {
        for with_geo in [false, true] {
            let mut engine = Engine::new(Weights::default());
            if with_geo {
                let mut geo = GeoIp::default();
                if geo.add(world.clone()).is_ok() {
                    engine = engine.with_geoip(geo);
                }
            }
            let start = Instant::now();
            for event in &events {
                black_box(engine.observe(black_box(event)).score);
            }
            let ns = start.elapsed().as_nanos() as f64 / events.len() as f64;
            if with_geo { &mut geo_ns } else { &mut score_ns }.push(ns);
            subjects = engine.subjects();
        }
    }
    let mut parse_ns = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        for line in &lines {
            black_box(Event::from_json(black_box(line)).map(|e| e.ts).unwrap_or(0.0));
        }
        parse_ns.push(start.elapsed().as_nanos() as f64 / lines.len() as f64);
    }
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    println!();
    println!("| measure | median | best | target |");
    println!("|---|---:|---:|---:|");
    println!(
        "| score one event (learning included) | {:.0} ns | {:.0} ns | ≤ 5,000 ns |",
        median(score_ns.clone()),
        min(&score_ns)
    );
    println!(
        "| score one event, with the world's GeoIP database | {:.0} ns | {:.0} ns | ≤ 5,000 ns |",
        median(geo_ns.clone()),
        min(&geo_ns)
    );
    println!("| parse one JSON line (apart) | {:.0} ns | {:.0} ns | |", median(parse_ns.clone()), min(&parse_ns));
    println!(
        "| profile in memory / stored | {} B / {} B | | ≤ 1,024 B |",
        std::mem::size_of::<Profile>(),
        Profile::STORED_LEN
    );
    println!("| subjects profiled | {subjects} | | |");
}
