//! Attacks, staged among the benign sessions after the first third of the period.

use std::net::IpAddr;

use rand::Rng;

use super::users::{User, TOKEN_LIFETIME};
use super::world::{browser, tool};
use super::{Scenario, SessionLog, Sim};
use crate::event::Kind;

pub fn stage(sim: &mut Sim, users: &[User], scenario: &Scenario) {
    let warm = sim.start + f64::from(scenario.days) * 86_400.0 / 3.0;
    let end = sim.start + f64::from(scenario.days) * 86_400.0;
    let victims: Vec<usize> = (0..sim.sessions.len()).filter(|&i| sim.sessions[i].start >= warm).collect();
    if victims.is_empty() || users.is_empty() {
        return;
    }
    let mut campaign = 0;
    let mut next = |class: &str| {
        campaign += 1;
        format!("{class}-{campaign}")
    };
    for _ in 0..scenario.mix.count("token_replay") {
        let id = next("token_replay");
        let victim = pick(sim, &victims, 2);
        replay(sim, &victim, &id);
    }
    for _ in 0..scenario.mix.count("session_hijack") {
        let id = next("session_hijack");
        let victim = pick(sim, &victims, 6);
        hijack(sim, &victim, &id);
    }
    for _ in 0..scenario.mix.count("refresh_theft") {
        let id = next("refresh_theft");
        let victim = pick(sim, &victims, 1);
        theft(sim, &victim, &id);
    }
    for (class, f) in [
        ("credential_stuffing", stuffing as fn(&mut Sim, &[User], f64, &str)),
        ("password_spraying", spraying),
        ("brute_force", brute_force),
    ] {
        for _ in 0..scenario.mix.count(class) {
            let id = next(class);
            let at = sim.rng.random_range(warm..end.max(warm + 1.0));
            f(sim, users, at, &id);
        }
    }
}

/// A benign session after the warm-up with at least `uses` requests (or the longest of a few tries).
fn pick(sim: &mut Sim, victims: &[usize], uses: usize) -> SessionLog {
    let mut best = victims[sim.rng.random_range(0..victims.len())];
    for _ in 0..20 {
        if sim.sessions[best].uses.len() >= uses {
            break;
        }
        let other = victims[sim.rng.random_range(0..victims.len())];
        if sim.sessions[other].uses.len() > sim.sessions[best].uses.len() {
            best = other;
        }
    }
    sim.sessions[best].clone()
}

fn sub_of(victim: &SessionLog) -> String {
    format!("u{:05}", victim.user)
}

/// The access token in force at `t`.
fn token_at(victim: &SessionLog, t: f64) -> Option<&(f64, String)> {
    victim.tokens.iter().rev().find(|(issued, _)| *issued <= t)
}

/// One stolen access token (from a log, a proxy, a browser extension) replayed from the attacker's network
/// while it lasts, while its owner goes on using it.
fn replay(sim: &mut Sim, victim: &SessionLog, id: &str) {
    let label = Some(("token_replay", id));
    let sub = sub_of(victim);
    let ip = sim.world.attacker_address(&mut sim.rng, 0.5);
    let ua = if sim.rng.random_bool(0.5) { victim.ua.clone() } else { tool(&mut sim.rng) };
    let stolen_at = victim.uses.get(sim.rng.random_range(0..victim.uses.len().max(1))).copied().unwrap_or(victim.start);
    let Some((issued, jti)) = token_at(victim, stolen_at).cloned() else { return };
    let mut t = stolen_at + sim.rng.random_range(5.0..60.0);
    for _ in 0..sim.rng.random_range(3..=20) {
        if t > issued + TOKEN_LIFETIME {
            break;
        }
        sim.emit(t, Kind::TokenUse, &sub, victim.client, ip, &ua, Some(&jti), Some(&victim.sid), label);
        t += sim.exp(15.0);
    }
}

/// A session taken over (cookies or tokens exfiltrated as they rotate) and used alongside its owner, often
/// from a residential proxy with the owner's user agent copied.
fn hijack(sim: &mut Sim, victim: &SessionLog, id: &str) {
    let label = Some(("session_hijack", id));
    let sub = sub_of(victim);
    let ip = sim.world.attacker_address(&mut sim.rng, 0.7);
    let ua = if sim.rng.random_bool(0.7) { victim.ua.clone() } else { browser(sim.rng.random_range(0..8), 131) };
    let span = victim.end - victim.start;
    let mut t = victim.start + span * sim.rng.random_range(0.1..0.5);
    let stop = victim.end + sim.rng.random_range(0.0..120.0);
    while t < stop {
        let Some((issued, jti)) = token_at(victim, t).cloned() else { break };
        if t > issued + TOKEN_LIFETIME {
            break;
        }
        sim.emit(t, Kind::TokenUse, &sub, victim.client, ip, &ua, Some(&jti), Some(&victim.sid), label);
        t += sim.exp(30.0).max(0.5);
    }
}

/// A refresh token stolen from an idle device and used from elsewhere: the attacker refreshes and goes on.
fn theft(sim: &mut Sim, victim: &SessionLog, id: &str) {
    let label = Some(("refresh_theft", id));
    let sub = sub_of(victim);
    let ip = sim.world.attacker_address(&mut sim.rng, 0.5);
    let roll: f64 = sim.rng.random();
    let ua = if roll < 0.4 {
        tool(&mut sim.rng)
    } else if roll < 0.8 {
        browser(sim.rng.random_range(0..8), 131)
    } else {
        victim.ua.clone()
    };
    let mut t = victim.end + sim.rng.random_range(600.0..6.0 * 3600.0);
    let stop = t + sim.rng.random_range(300.0..900.0);
    let mut issued = f64::NEG_INFINITY;
    let mut jti = String::new();
    while t < stop {
        if t - issued >= TOKEN_LIFETIME - 30.0 {
            jti = sim.id('j');
            issued = t;
            sim.emit(t, Kind::Refresh, &sub, victim.client, ip, &ua, Some(&jti), Some(&victim.sid), label);
            t += 0.3;
        }
        sim.emit(t, Kind::TokenUse, &sub, victim.client, ip, &ua, Some(&jti), Some(&victim.sid), label);
        t += sim.exp(30.0).max(0.5);
    }
}

/// A username to try: one of ours, or one from a breach list that does not exist here.
fn account(sim: &mut Sim, users: &[User], existing: f64) -> String {
    if sim.rng.random_bool(existing) {
        users[sim.rng.random_range(0..users.len())].sub.clone()
    } else {
        format!(
            "{}{}",
            ["alex", "maria", "john", "li", "sam", "admin", "test"][sim.rng.random_range(0..7)],
            sim.rng.random_range(1..99_999)
        )
    }
}

/// After a lucky guess the attacker uses the account at once.
fn take_over(sim: &mut Sim, sub: &str, ip: IpAddr, ua: &str, at: f64, label: Option<(&str, &str)>) {
    let sid = sim.id('s');
    let jti = sim.id('j');
    sim.emit(at, Kind::Login, sub, "web", ip, ua, Some(&jti), Some(&sid), label);
    let mut t = at;
    for _ in 0..sim.rng.random_range(2..=6) {
        t += sim.exp(10.0);
        sim.emit(t, Kind::TokenUse, sub, "web", ip, ua, Some(&jti), Some(&sid), label);
    }
}

/// Breached credentials tried in bulk: from one hosting address, or from a botnet (a few tries per address,
/// browser user agents rotated).
fn stuffing(sim: &mut Sim, users: &[User], start: f64, id: &str) {
    let label = Some(("credential_stuffing", id));
    let botnet = sim.rng.random_bool(0.5);
    let rate = if botnet { sim.rng.random_range(0.5..2.0) } else { sim.rng.random_range(1.0..3.0) };
    let mut ip = sim.world.attacker_address(&mut sim.rng, if botnet { 1.0 } else { 0.0 });
    let fixed_ua = if sim.rng.random_bool(0.5) { tool(&mut sim.rng) } else { browser(0, 131) };
    let mut left_on_ip = 0;
    let mut t = start;
    for _ in 0..sim.rng.random_range(300..1500) {
        let ua = if botnet {
            if left_on_ip == 0 {
                ip = sim.world.attacker_address(&mut sim.rng, 1.0);
                left_on_ip = sim.rng.random_range(1..=3);
            }
            left_on_ip -= 1;
            browser(sim.rng.random_range(0..8), sim.rng.random_range(125..132))
        } else {
            fixed_ua.clone()
        };
        let sub = account(sim, users, 0.5);
        if sub.starts_with('u') && sim.rng.random_bool(0.01) {
            take_over(sim, &sub, ip, &ua, t, label);
        } else {
            sim.emit(t, Kind::LoginFailure, &sub, "web", ip, &ua, None, None, label);
        }
        t += sim.exp(1.0 / rate);
    }
}

/// A few common passwords against many accounts, slowly, from a handful of sources.
fn spraying(sim: &mut Sim, users: &[User], start: f64, id: &str) {
    let label = Some(("password_spraying", id));
    let residential = if sim.rng.random_bool(0.5) { 1.0 } else { 0.0 };
    let sources: Vec<IpAddr> =
        (0..sim.rng.random_range(1..=3)).map(|_| sim.world.attacker_address(&mut sim.rng, residential)).collect();
    let ua = if sim.rng.random_bool(0.5) { tool(&mut sim.rng) } else { browser(3, 131) };
    let mut t = start;
    let mut attempts = 0;
    let total = sim.rng.random_range(200..600);
    while attempts < total {
        let sub = account(sim, users, 0.85);
        let ip = sources[sim.rng.random_range(0..sources.len())];
        for _ in 0..sim.rng.random_range(1..=2) {
            if sub.starts_with('u') && sim.rng.random_bool(0.005) {
                take_over(sim, &sub, ip, &ua, t, label);
            } else {
                sim.emit(t, Kind::LoginFailure, &sub, "web", ip, &ua, None, None, label);
            }
            attempts += 1;
            t += sim.rng.random_range(5.0..40.0);
        }
    }
}

/// Many passwords against one account.
fn brute_force(sim: &mut Sim, users: &[User], start: f64, id: &str) {
    let label = Some(("brute_force", id));
    let sub = users[sim.rng.random_range(0..users.len())].sub.clone();
    let sources: Vec<IpAddr> = (0..if sim.rng.random_bool(0.7) { 1 } else { 3 })
        .map(|_| sim.world.attacker_address(&mut sim.rng, 0.5))
        .collect();
    let ua = if sim.rng.random_bool(0.5) { tool(&mut sim.rng) } else { browser(0, 131) };
    let rate = sim.rng.random_range(0.5..2.0);
    let mut t = start;
    let attempts = sim.rng.random_range(50..300);
    for _ in 0..attempts {
        let ip = sources[sim.rng.random_range(0..sources.len())];
        sim.emit(t, Kind::LoginFailure, &sub, "web", ip, &ua, None, None, label);
        t += sim.exp(1.0 / rate);
    }
    if sim.rng.random_bool(0.1) {
        take_over(sim, &sub, sources[0], &ua, t, label);
    }
}
