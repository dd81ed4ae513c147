//! A labelled corpus from a seed: thousands of users living their lives, and attacks among them.
//!
//! Users have home networks (some dual-stack), workplaces, a phone on a mobile carrier behind carrier-grade NAT,
//! daily rhythms in their own time zones, browsers that update, new devices, VPNs switched on and off, phones
//! that move from Wi-Fi to the carrier in the middle of a session (and some that flap between the two), and
//! trips abroad. Attacks start after the first third of the period, so profiles have something to go on.

mod attacks;
pub mod mmdb;
mod users;
mod world;

use std::collections::BTreeMap;
use std::net::IpAddr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::event::{Event, Kind};

/// The attack classes, as they appear in `label`.
pub const ATTACKS: [&str; 6] =
    ["token_replay", "session_hijack", "refresh_theft", "credential_stuffing", "password_spraying", "brute_force"];

/// How many campaigns of each attack class to stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    pub campaigns: BTreeMap<&'static str, u32>,
}

impl Mix {
    /// The default mix for `users` users.
    pub fn for_users(users: usize) -> Mix {
        let per_thousand = [40.0, 40.0, 30.0, 4.0, 4.0, 15.0];
        let scale = users as f64 / 1000.0;
        let campaigns =
            ATTACKS.iter().zip(per_thousand).map(|(name, n)| (*name, ((n * scale).round() as u32).max(1))).collect();
        Mix { campaigns }
    }

    /// Changes counts from `class=count,...` (classes not named keep their count).
    pub fn apply(&mut self, spec: &str) -> Result<(), String> {
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, count) = part.split_once('=').ok_or_else(|| format!("`{part}`: expected class=count"))?;
            let class = ATTACKS
                .iter()
                .find(|a| **a == name.trim())
                .ok_or_else(|| format!("`{name}` is not an attack class ({})", ATTACKS.join(", ")))?;
            let count = count.trim().parse().map_err(|_| format!("`{count}` is not a count"))?;
            self.campaigns.insert(class, count);
        }
        Ok(())
    }

    pub fn count(&self, class: &str) -> u32 {
        self.campaigns.get(class).copied().unwrap_or(0)
    }
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub seed: u64,
    pub users: usize,
    pub days: u32,
    /// Unix time of the first day's midnight (UTC).
    pub start: f64,
    pub mix: Mix,
}

impl Scenario {
    pub fn new(seed: u64, users: usize, days: u32) -> Scenario {
        Scenario { seed, users, days, start: 1_764_547_200.0, mix: Mix::for_users(users) }
    }
}

/// The GeoIP database (MaxMind DB format) of the world `scenario` simulates: every provider's blocks with its
/// ASN, country and city. Give it to the engine to score with ASN, country and impossible travel.
pub fn geoip(scenario: &Scenario) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed);
    let world = world::World::new(&mut rng);
    mmdb::write(&world.geoip(), scenario.start as u64)
}

/// The corpus of `scenario`, in time order. The same scenario gives the same corpus, byte for byte.
pub fn simulate(scenario: &Scenario) -> Vec<Event> {
    let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed);
    let world = world::World::new(&mut rng);
    let mut sim = Sim { rng, world, events: Vec::new(), sessions: Vec::new(), start: scenario.start };
    let users = users::population(&mut sim, scenario);
    for user in &users {
        users::live(&mut sim, user, scenario);
    }
    attacks::stage(&mut sim, &users, scenario);
    let mut events = sim.events;
    events.sort_by(|a, b| a.ts.total_cmp(&b.ts));
    events
}

/// A benign session as it happened, for attacks to pick victims from.
#[derive(Debug, Clone)]
struct SessionLog {
    user: usize,
    sid: String,
    client: &'static str,
    ua: String,
    start: f64,
    end: f64,
    /// Access tokens: issued at, `jti`.
    tokens: Vec<(f64, String)>,
    uses: Vec<f64>,
}

/// The simulation's state: randomness, networks, and what has been written.
struct Sim {
    rng: ChaCha8Rng,
    world: world::World,
    events: Vec<Event>,
    sessions: Vec<SessionLog>,
    start: f64,
}

impl Sim {
    fn id(&mut self, prefix: char) -> String {
        format!("{prefix}{:016x}", self.rng.random::<u64>())
    }

    /// Exponentially distributed with the given mean.
    fn exp(&mut self, mean: f64) -> f64 {
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        -mean * u.ln()
    }

    #[allow(clippy::too_many_arguments)] // one event's fields, named at each call
    fn emit(
        &mut self,
        ts: f64,
        kind: Kind,
        sub: &str,
        client: &str,
        ip: IpAddr,
        ua: &str,
        jti: Option<&str>,
        sid: Option<&str>,
        label: Option<(&str, &str)>,
    ) {
        self.events.push(Event {
            ts: (ts * 1000.0).round() / 1000.0,
            kind,
            sub: sub.to_owned(),
            client_id: client.to_owned(),
            ip,
            ua: ua.to_owned(),
            jti: jti.map(str::to_owned),
            sid: sid.map(str::to_owned),
            label: label.map(|(l, _)| l.to_owned()),
            attack: label.map(|(_, a)| a.to_owned()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_corpus() {
        let scenario = Scenario::new(7, 60, 4);
        let a = simulate(&scenario);
        let b = simulate(&scenario);
        assert_eq!(a, b);
        assert_ne!(a, simulate(&Scenario::new(8, 60, 4)));
        assert!(a.windows(2).all(|w| w[0].ts <= w[1].ts));
    }

    #[test]
    fn every_attack_class_is_staged_and_labelled() {
        let scenario = Scenario::new(3, 100, 6);
        let events = simulate(&scenario);
        for class in ATTACKS {
            let n = events.iter().filter(|e| e.label.as_deref() == Some(class)).count();
            assert!(n > 0, "no {class} events");
        }
        assert!(events.iter().all(|e| e.label.is_some() == e.attack.is_some()));
        let benign = events.iter().filter(|e| e.label.is_none()).count();
        assert!(benign > events.len() / 2);
        for kind in [Kind::Login, Kind::LoginFailure, Kind::Refresh, Kind::TokenUse] {
            assert!(events.iter().any(|e| e.kind == kind && e.label.is_none()), "no benign {kind:?}");
        }
        assert!(events.iter().any(|e| e.ip.is_ipv6()));
    }

    #[test]
    fn mixes_parse() {
        let mut mix = Mix::for_users(1000);
        mix.apply("brute_force=3, token_replay=0").unwrap();
        assert_eq!(mix.count("brute_force"), 3);
        assert_eq!(mix.count("token_replay"), 0);
        assert_eq!(mix.count("session_hijack"), 40);
        assert!(mix.apply("phishing=1").is_err());
        assert!(mix.apply("brute_force").is_err());
        assert!(mix.apply("brute_force=x").is_err());
    }
}
