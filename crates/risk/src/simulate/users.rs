//! Benign users and their days.

use std::net::IpAddr;

use rand::Rng;

use super::world::{app, browser, host, v6_address, World, REGIONS};
use super::{Scenario, SessionLog, Sim};
use crate::event::Kind;

/// Seconds an access token lives; sessions refresh this often while active.
pub const TOKEN_LIFETIME: f64 = 300.0;

/// One simulated person.
#[derive(Debug, Clone)]
pub struct User {
    pub sub: String,
    /// Offset of local time from UTC, hours.
    tz: f64,
    isp: usize,
    home: [u8; 3],
    home_v6: Option<(u16, u16)>,
    work: Option<[u8; 3]>,
    carrier: usize,
    browser: usize,
    /// Phone platform: `Some(true)` for iOS.
    phone: Option<bool>,
    sessions_per_day: f64,
    /// Mean seconds between requests within a session, and mean session minutes.
    pace: f64,
    minutes: f64,
    vpn: Option<usize>,
    /// Day and length of a trip abroad, and the provider there.
    trip: Option<(u32, u32, usize)>,
    /// Day the user changes browser (a new computer).
    new_device: Option<(u32, usize)>,
    /// Day the user signs up.
    joins: u32,
    /// Hours (local) the user is usually active in the evening.
    evening: f64,
}

pub fn population(sim: &mut Sim, scenario: &Scenario) -> Vec<User> {
    (0..scenario.users)
        .map(|i| {
            let rng = &mut sim.rng;
            let world = &sim.world;
            let region = rng.random_range(0..REGIONS.len());
            let local_isps = World::in_region(&world.isps, region);
            let isp = local_isps[rng.random_range(0..local_isps.len())];
            let home = world.isps[isp].network(rng);
            let home_v6 = world.isps[isp].v6.map(|v6| (v6, rng.random()));
            let local_companies: Vec<[u8; 3]> =
                world.companies.iter().filter(|(_, r)| *r == region).map(|(net, _)| *net).collect();
            let work = rng.random_bool(0.6).then(|| local_companies[rng.random_range(0..local_companies.len())]);
            let trip = rng.random_bool(0.08).then(|| {
                let days = scenario.days.max(2);
                let elsewhere = (region + rng.random_range(1..REGIONS.len())) % REGIONS.len();
                let there = World::in_region(&world.isps, elsewhere);
                (rng.random_range(1..days), rng.random_range(2..=5), there[rng.random_range(0..there.len())])
            });
            let new_device =
                rng.random_bool(0.1).then(|| (rng.random_range(1..scenario.days.max(2)), rng.random_range(0..8)));
            let joins = if rng.random_bool(0.05) { rng.random_range(0..scenario.days.max(1)) } else { 0 };
            let local_carriers = World::in_region(&world.carriers, region);
            User {
                sub: format!("u{i:05}"),
                tz: REGIONS[region].0,
                isp,
                home,
                home_v6,
                work,
                carrier: local_carriers[rng.random_range(0..local_carriers.len())],
                browser: rng.random_range(0..8),
                phone: rng.random_bool(0.7).then(|| rng.random_bool(0.5)),
                sessions_per_day: (rng.random_range(-0.7f64..1.6)).exp(),
                pace: rng.random_range(10.0..60.0),
                minutes: rng.random_range(3.0..20.0),
                vpn: rng.random_bool(0.1).then(|| rng.random_range(0..sim.world.vpns.len())),
                trip,
                new_device,
                joins,
                evening: rng.random_range(18.0..22.0),
            }
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Device {
    Laptop,
    Phone,
}

/// A device's refresh family, while it lasts.
#[derive(Debug, Clone, Default)]
struct Family {
    sid: Option<String>,
    born: f64,
    last: f64,
}

/// Where a session runs, and whether it moves in the middle.
#[derive(Debug, Clone, Copy)]
enum Place {
    Home,
    Work,
    Vpn,
    Carrier,
    Abroad,
}

pub fn live(sim: &mut Sim, user: &User, scenario: &Scenario) {
    let mut families = [Family::default(), Family::default()];
    let mut home = user.home;
    let mut starts = Vec::new();
    for day in user.joins..scenario.days {
        if sim.rng.random_bool(0.01) {
            home = sim.world.isps[user.isp].network(&mut sim.rng);
        }
        let weekday = (day + 1) % 7 < 5; // the period starts on a Monday
        let mean = user.sessions_per_day * if weekday { 1.0 } else { 0.7 };
        let n = poisson(sim, mean);
        starts.clear();
        for _ in 0..n {
            let local = local_hour(sim, user, weekday);
            let ts = sim.start + f64::from(day) * 86_400.0 + (local - user.tz) * 3600.0;
            starts.push((ts, local));
        }
        starts.sort_by(|a, b| a.0.total_cmp(&b.0));
        for &(ts, local) in &starts {
            let travelling = user.trip.is_some_and(|(from, len, _)| day >= from && day < from + len);
            let at_work = weekday && user.work.is_some() && (9.0..17.0).contains(&local) && !travelling;
            let device = if at_work || user.phone.is_none() || sim.rng.random_bool(0.45) {
                Device::Laptop
            } else {
                Device::Phone
            };
            let place = if travelling {
                Place::Abroad
            } else if at_work {
                Place::Work
            } else if device == Device::Phone && sim.rng.random_bool(0.4) {
                Place::Carrier
            } else if user.vpn.is_some() && device == Device::Laptop && sim.rng.random_bool(0.3) {
                Place::Vpn
            } else {
                Place::Home
            };
            let family = &mut families[device as usize];
            session(sim, user, day, device, place, home, ts, family);
        }
    }
}

fn local_hour(sim: &mut Sim, user: &User, weekday: bool) -> f64 {
    let roll: f64 = sim.rng.random();
    let centre = if roll < 0.25 {
        7.5
    } else if roll < 0.6 && weekday {
        12.5
    } else if roll < 0.6 {
        14.0
    } else {
        user.evening
    };
    let spread = if (0.25..0.6).contains(&roll) { 2.5 } else { 1.2 };
    (centre + sim.rng.random_range(-spread..spread) * 1.5).clamp(0.0, 23.99)
}

fn poisson(sim: &mut Sim, mean: f64) -> u32 {
    let limit = (-mean).exp();
    let mut product: f64 = sim.rng.random();
    let mut n = 0;
    while product > limit && n < 50 {
        product *= sim.rng.random::<f64>();
        n += 1;
    }
    n
}

#[allow(clippy::too_many_arguments)] // the session's whole context
fn session(
    sim: &mut Sim,
    user: &User,
    day: u32,
    device: Device,
    place: Place,
    home: [u8; 3],
    start: f64,
    family: &mut Family,
) {
    let version = 130 + day / 10;
    let ua = match device {
        Device::Laptop => {
            let kind = match user.new_device {
                Some((from, kind)) if day >= from => kind,
                _ => user.browser,
            };
            browser(kind, version)
        }
        Device::Phone => app(user.phone.unwrap_or(true), day / 7),
    };
    let client = if device == Device::Laptop { "web" } else { "mobile" };
    let abroad = user.trip.map_or(0, |(_, _, isp)| isp);
    let mut ip = address(sim, user, place, home, abroad);
    // Some sessions move: a phone leaves home Wi-Fi for the carrier, or flaps between them; a VPN goes on.
    let mut moves: Vec<(f64, IpAddr)> = Vec::new();
    let minutes = sim.exp(user.minutes).clamp(0.5, 180.0);
    let end = start + minutes * 60.0;
    match (device, place) {
        (Device::Phone, Place::Home) if sim.rng.random_bool(0.2) => {
            let at = sim.rng.random_range(start..end);
            let carrier = address(sim, user, Place::Carrier, home, abroad);
            moves.push((at, carrier));
        }
        (Device::Phone, Place::Home) if sim.rng.random_bool(0.04) => {
            let carrier = address(sim, user, Place::Carrier, home, abroad);
            let wifi = ip;
            let mut at = start;
            for flap in 0..sim.rng.random_range(2..6) {
                at += sim.exp(60.0);
                moves.push((at, if flap % 2 == 0 { carrier } else { wifi }));
            }
        }
        (Device::Laptop, Place::Home) if user.vpn.is_some() && sim.rng.random_bool(0.1) => {
            let at = sim.rng.random_range(start..end);
            let vpn = address(sim, user, Place::Vpn, home, abroad);
            moves.push((at, vpn));
        }
        _ => {}
    }
    let sub = user.sub.as_str();
    let alive = family.sid.is_some() && start - family.last < 86_400.0 && start - family.born < 14.0 * 86_400.0;
    let mut jti = sim.id('j');
    let sid = if alive {
        let sid = family.sid.clone().unwrap_or_default();
        sim.emit(start, Kind::Refresh, sub, client, ip, &ua, Some(&jti), Some(&sid), None);
        sid
    } else {
        if sim.rng.random_bool(0.05) {
            for typo in 0..sim.rng.random_range(1..=2) {
                let at = start - 20.0 + f64::from(typo) * 8.0;
                sim.emit(at, Kind::LoginFailure, sub, client, ip, &ua, None, None, None);
            }
        }
        let sid = sim.id('s');
        sim.emit(start, Kind::Login, sub, client, ip, &ua, Some(&jti), Some(&sid), None);
        family.born = start;
        family.sid = Some(sid.clone());
        sid
    };
    let mut log = SessionLog {
        user: sub[1..].parse().unwrap_or(0),
        sid: sid.clone(),
        client,
        ua: ua.clone(),
        start,
        end,
        tokens: vec![(start, jti.clone())],
        uses: Vec::new(),
    };
    let mut issued = start;
    let mut t = start;
    loop {
        t += sim.exp(user.pace).max(0.2);
        if t > end {
            break;
        }
        while let Some(&(at, next)) = moves.first() {
            if at > t {
                break;
            }
            ip = next;
            moves.remove(0);
        }
        if t - issued >= TOKEN_LIFETIME - 30.0 {
            jti = sim.id('j');
            issued = t;
            sim.emit(t, Kind::Refresh, sub, client, ip, &ua, Some(&jti), Some(&sid), None);
            log.tokens.push((t, jti.clone()));
            t += 0.2;
        }
        sim.emit(t, Kind::TokenUse, sub, client, ip, &ua, Some(&jti), Some(&sid), None);
        log.uses.push(t);
    }
    family.last = end;
    sim.sessions.push(log);
}

fn address(sim: &mut Sim, user: &User, place: Place, home: [u8; 3], abroad: usize) -> IpAddr {
    let rng = &mut sim.rng;
    match place {
        Place::Home => match user.home_v6 {
            Some((v6, site)) if rng.random_bool(0.5) => v6_address(v6, site, rng),
            _ => host(home, rng),
        },
        Place::Work => host(user.work.unwrap_or(home), rng),
        Place::Vpn => sim.world.vpn_exit(user.vpn.unwrap_or(0), rng),
        Place::Carrier => sim.world.carriers[user.carrier].address(rng),
        Place::Abroad => {
            // A hotel network for the trip (the same every time), a café now and then, or roaming on the carrier.
            let roll: f64 = rng.random();
            if roll < 0.6 {
                let isp = &sim.world.isps[abroad];
                let b = isp.blocks[(user.isp + 1) % isp.blocks.len()];
                host([b[0], b[1], user.home[2]], rng)
            } else if roll < 0.8 {
                sim.world.isps[abroad].address(rng)
            } else {
                sim.world.carriers[user.carrier].address(rng)
            }
        }
    }
}
