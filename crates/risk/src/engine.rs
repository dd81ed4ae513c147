//! The engine: scores each event against the subject's profile and the population, then learns from it.

use std::collections::HashMap;

use crate::event::{fingerprint, Event, Kind};
use crate::geo::GeoIp;
use crate::net::{networks, source};
use crate::profile::{Observed, Profile, Seen, Track, SESSION_NETWORKS};
use crate::reason::{Assessment, Reason};
use crate::sketch::{tally_all, CountMin, Decayed, Distinct, Tally};
use crate::ua::Family;

/// The model's weights and time constants. The defaults were tuned on one simulated corpus (seed 1) and are
/// measured on others; see the README.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    /// Pseudo-sessions of population behaviour mixed into every profile (smoothing for new subjects).
    pub smoothing: f32,
    pub network: f32,
    pub block: f32,
    pub family: f32,
    pub agent: f32,
    pub client: f32,
    /// The autonomous system and the country (with a GeoIP database).
    pub asn: f32,
    pub country: f32,
    /// A move between two places faster than an airliner.
    pub travel: f32,
    pub hour: f32,
    /// A session seen from a second, unfamiliar network while its first was in use.
    pub concurrency: f32,
    /// A session (one device's refresh family) presented by another user-agent family than it started with.
    pub session_agent: f32,
    /// Seconds over which "just used from elsewhere" fades for the first request from a new network.
    pub switch_tau: f64,
    /// Seconds over which alternation between a session's two networks fades.
    pub alternation_tau: f64,
    /// Switches (decaying) at which back-and-forth counts as 63 % of a second party.
    pub switches: f32,
    /// How much a second network the subject has never been on counts as a second party however short its
    /// history (half as much when the subject has been on its block).
    pub unseen_gate: f32,
    /// Novelty (log units) at which a second network counts fully as a second party.
    pub gate: f32,
    pub failure: f32,
    pub account_failures: f32,
    pub source_accounts: f32,
    pub wave: f32,
    pub rate: f32,
    /// Log-odds subtracted before the logistic: where the score crosses 0.5.
    pub bias: f32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            smoothing: 2.0,
            network: 1.0,
            block: 1.0,
            family: 0.8,
            agent: 0.3,
            client: 0.5,
            asn: 0.5,
            country: 0.5,
            travel: 3.0,
            hour: 0.4,
            concurrency: 8.0,
            session_agent: 4.0,
            switch_tau: 300.0,
            alternation_tau: 300.0,
            switches: 1.0,
            unseen_gate: 1.0,
            gate: 3.0,
            failure: 1.0,
            account_failures: 1.5,
            source_accounts: 2.0,
            wave: 4.0,
            rate: 1.0,
            bias: 3.5,
        }
    }
}

/// Distance (km) and speed (km/h) beyond which a move between two requests is impossible travel; GeoIP
/// locations are city-level at best, so short hops never count.
const IMPOSSIBLE_KM: f32 = 500.0;
const IMPOSSIBLE_SPEED: f32 = 1000.0;
/// Seconds a failed login keeps counting against its account and its source.
const FAILURE_TAU: f64 = 900.0;
/// Seconds of quiet after which a session's next request counts as a new visit (and is learnt).
const VISIT_GAP: f64 = 1800.0;
/// Session observations after which the population's counts halve, so it follows change.
const POPULATION_HALF_LIFE: f64 = 1_000_000.0;
/// Sources and accounts followed for abuse signals at once; the idlest are dropped beyond this.
const MAX_FOLLOWED: usize = 200_000;

/// What the whole population looks like, for the "against the population" half of each ratio.
#[derive(Debug, Clone, Default)]
struct Population {
    networks: CountMin,
    blocks: CountMin,
    families: CountMin,
    agents: CountMin,
    clients: CountMin,
    asns: CountMin,
    countries: CountMin,
    hours: [f64; 24],
}

impl Population {
    /// The categorical sketches, in the order of [`Observed::keys`].
    fn sketches(&mut self) -> [&mut CountMin; 7] {
        [
            &mut self.networks,
            &mut self.blocks,
            &mut self.families,
            &mut self.agents,
            &mut self.clients,
            &mut self.asns,
            &mut self.countries,
        ]
    }
}

/// A source address's recent login attempts.
#[derive(Debug, Clone, Copy, Default)]
struct Source {
    attempts: Decayed,
    failures: Decayed,
    accounts: Distinct,
    last: f64,
}

/// The features of one event.
#[derive(Debug, Clone, Copy)]
struct Features {
    network: u32,
    block: u32,
    /// ASN and country fingerprints (0: unknown, or no GeoIP database) and location.
    asn: u32,
    country: u32,
    location: Option<(f32, f32)>,
    family: u32,
    agent: u32,
    client: u32,
    hour: usize,
}

/// The risk engine: profiles, population and abuse counters, all in bounded memory per subject and source.
#[derive(Debug, Default)]
pub struct Engine {
    weights: Weights,
    profiles: HashMap<Box<str>, Profile>,
    population: Population,
    sources: HashMap<u32, Source>,
    account_failures: HashMap<u32, Decayed>,
    wave_short: Decayed,
    wave_long: Decayed,
    geo: Option<GeoIp>,
}

impl Engine {
    pub fn new(weights: Weights) -> Engine {
        Engine { weights, ..Engine::default() }
    }

    /// Judges networks also by autonomous system and country, and flags impossible travel, with `geo`.
    pub fn with_geoip(mut self, geo: GeoIp) -> Engine {
        self.geo = (!geo.is_empty()).then_some(geo);
        self
    }

    /// Subjects with a profile.
    pub fn subjects(&self) -> usize {
        self.profiles.len()
    }

    /// The profile of `sub`, if it has one.
    pub fn profile(&self, sub: &str) -> Option<&Profile> {
        self.profiles.get(sub)
    }

    /// Puts a stored profile in place (profiles are shared through the store).
    pub fn load_profile(&mut self, sub: &str, profile: Profile) {
        self.profiles.insert(sub.into(), profile);
    }

    /// Takes a subject's profile out of memory (after it was stored), so memory follows active subjects.
    pub fn remove_profile(&mut self, sub: &str) -> Option<Profile> {
        self.profiles.remove(sub)
    }

    /// Scores `event` and learns from it. Events should come in time order; a late one is scored, not refused.
    pub fn observe(&mut self, event: &Event) -> Assessment {
        let (network, block) = networks(event.ip);
        let family = Family::parse(&event.ua);
        let place = self.geo.as_ref().map(|g| g.lookup(event.ip)).unwrap_or_default();
        let features = Features {
            network: network.fingerprint(),
            block: block.fingerprint(),
            asn: place.asn.map_or(0, |asn| fingerprint(b'A', &asn.to_le_bytes())),
            country: place.country.map_or(0, |c| fingerprint(b'C', &c)),
            location: place.location,
            family: family.fingerprint(),
            agent: fingerprint(b'a', event.ua.as_bytes()),
            client: fingerprint(b'c', event.client_id.as_bytes()),
            hour: (event.ts / 3600.0).floor().rem_euclid(24.0) as usize,
        };
        let mut out = Assessment::default();
        match event.kind {
            Kind::RefreshReuse => {
                out.add(12.0, Reason::RefreshReuse);
            }
            Kind::LoginFailure => self.failure(event, features, &mut out),
            Kind::Login | Kind::Refresh | Kind::TokenUse => {
                if event.kind == Kind::Login {
                    self.success(event, &mut out);
                }
                self.session(event, features, &mut out);
            }
        }
        out.finish(self.weights.bias, network, family);
        out
    }

    /// A successful use: judged against the profile, within its session, and learnt.
    fn session(&mut self, event: &Event, f: Features, out: &mut Assessment) {
        let w = &self.weights;
        let ts = event.ts;
        let key = event.sid.as_deref().or(event.jti.as_deref()).map(|k| fingerprint(b's', k.as_bytes()));
        if !self.profiles.contains_key(event.sub.as_str()) {
            self.profiles.insert(event.sub.as_str().into(), Profile::default());
        }
        let Some(profile) = self.profiles.get_mut(event.sub.as_str()) else { return };
        let fresh = novelty(w, &self.population, profile, f);
        out.add(w.hour * hour_ratio(w, &self.population, profile, f.hour), Reason::UnusualHour(f.hour as u8));
        let rate = profile.rate.add(ts, 60.0, 1.0);
        if rate > 3.0 * profile.usual_rate + 20.0 {
            out.add(w.rate * (rate / (profile.usual_rate + 5.0)).ln(), Reason::Burst(rate));
        } else {
            profile.usual_rate += 0.05 * (rate - profile.usual_rate);
        }
        // Whether the network is one the subject has never been seen on (or even near).
        let near = profile.blocks.weight(f.block) > 0.0 || (f.asn != 0 && profile.asns.weight(f.asn) > 0.0);
        let unseen = match (profile.networks.weight(f.network) > 0.0, near) {
            (true, _) => 0.0,
            (false, true) => 0.5,
            (false, false) => 1.0,
        };
        if let Some(here) = f.location {
            let (lat, lon, at) = profile.last_place;
            let hours = ((ts - at) / 3600.0).max(1.0 / 60.0) as f32;
            let km = crate::geo::distance_km((lat, lon), here);
            if at > 0.0 && km > IMPOSSIBLE_KM && km / hours > IMPOSSIBLE_SPEED {
                out.add(w.travel, Reason::ImpossibleTravel(km, (ts - at) as f32 / 60.0));
            }
            profile.last_place = (here.0, here.1, ts);
        }
        let within = match key {
            None => Within { novelty: fresh, concurrency: 0.0, agent_changed: false, learn: true },
            Some(key) => within_session(w, profile.track(key).0, f, ts, fresh),
        };
        add_novelty(out, within.novelty);
        let gate = (within.novelty[0] / w.gate).max(unseen * w.unseen_gate).clamp(0.0, 1.0);
        out.add(w.concurrency * within.concurrency * gate, Reason::SharedSession);
        if within.agent_changed {
            out.add(w.session_agent, Reason::SessionAgentChanged);
        }
        if within.learn {
            self.learn(&event.sub, f);
        }
    }

    /// A successful login also answers to the failures before it.
    fn success(&mut self, event: &Event, out: &mut Assessment) {
        let account = fingerprint(b'n', event.sub.as_bytes());
        let failures = self.account_failures.get(&account).map_or(0.0, |d| d.value(event.ts, FAILURE_TAU));
        if failures >= 3.0 {
            out.add(self.weights.account_failures * (failures - 2.0).min(6.0), Reason::LoginAfterFailures(failures));
        }
        self.source_signal(event, false, out);
    }

    /// A failed login: brute force on the account, many accounts from one source, a wave across accounts.
    fn failure(&mut self, event: &Event, f: Features, out: &mut Assessment) {
        let w = self.weights.clone();
        let ts = event.ts;
        out.add(w.failure, Reason::Failure);
        let profile = self.profiles.get(event.sub.as_str());
        let known = profile.is_some();
        let novelty = profile.map_or([0.0; 3], |p| novelty(&w, &self.population, p, f));
        add_novelty(out, novelty);
        let account = fingerprint(b'n', event.sub.as_bytes());
        bound(&mut self.account_failures, |d| d.value(ts, FAILURE_TAU) < 0.05);
        let failures = self.account_failures.entry(account).or_default().add(ts, FAILURE_TAU, 1.0);
        if failures >= 3.0 {
            out.add(w.account_failures * (failures - 2.0).min(6.0), Reason::AccountFailures(failures));
        }
        self.source_signal(event, true, out);
        if !known || novelty[0] > 1.0 {
            let short = self.wave_short.add(ts, 60.0, 1.0);
            let long = self.wave_long.add(ts, 21_600.0, 1.0);
            let ratio = (short / 60.0) / (long / 21_600.0).max(1.0 / 600.0);
            if short >= 5.0 && ratio >= 5.0 {
                out.add(w.wave * (1.0 + (ratio / 5.0).ln()).min(3.0), Reason::FailureWave(short));
            }
        }
    }

    /// Many accounts from one source with mostly failures: credential stuffing or password spraying.
    fn source_signal(&mut self, event: &Event, failed: bool, out: &mut Assessment) {
        let ts = event.ts;
        let key = source(event.ip).fingerprint();
        bound(&mut self.sources, |s| ts - s.last > 3600.0);
        let entry = self.sources.entry(key).or_default();
        if ts - entry.last > 3600.0 {
            *entry = Source::default();
        }
        entry.last = ts;
        let attempts = entry.attempts.add(ts, FAILURE_TAU * 4.0, 1.0);
        let failures = entry.failures.add(ts, FAILURE_TAU * 4.0, if failed { 1.0 } else { 0.0 });
        entry.accounts.add(fingerprint(b'n', event.sub.as_bytes()));
        let accounts = entry.accounts.estimate();
        let ratio = failures / attempts.max(1.0);
        if accounts >= 4.0 && ratio >= 0.5 {
            out.add(self.weights.source_accounts * (accounts / 2.0).ln() * ratio, Reason::SourceAccounts(accounts));
        }
    }

    fn learn(&mut self, sub: &str, f: Features) {
        let Some(profile) = self.profiles.get_mut(sub) else { return };
        let seen = Observed {
            network: f.network,
            block: f.block,
            asn: f.asn,
            country: f.country,
            family: f.family,
            agent: f.agent,
            client: f.client,
            hour: f.hour,
        };
        profile.learn(&seen);
        let p = &mut self.population;
        if p.networks.total() > POPULATION_HALF_LIFE {
            for sketch in p.sketches() {
                sketch.halve();
            }
            for h in &mut p.hours {
                *h *= 0.5;
            }
        }
        let summaries: [&mut dyn Tally; 7] = p.sketches().map(|s| s as &mut dyn Tally);
        tally_all(summaries, seen.keys());
        p.hours[f.hour] += 1.0;
    }
}

/// The session's view of this request: the novelty of its network as when the session first came from it,
/// how much it looks like a second party using the session at once (0..1), and whether to learn from it.
///
/// A second party shows as requests from a network new to the subject while another network of the same
/// session is still in use, switching back and forth; one clean move (Wi-Fi to carrier) switches once.
/// The first request of a session from each network is learnt, unless the session is switching like that.
fn within_session(w: &Weights, track: &mut Track, f: Features, ts: f64, fresh: [f32; 3]) -> Within {
    if track.seen[0].network == 0 {
        track.base = ts;
        track.family = f.family;
        track.seen[0] = Seen { network: f.network, first: 0.0, last: 0.0, novelty: fresh };
        return Within { novelty: fresh, concurrency: 0.0, agent_changed: false, learn: true };
    }
    let at = (ts - track.base) as f32;
    let previous_last = track.last();
    let (slot, new) = match track.seen.iter().position(|s| s.network == f.network) {
        Some(slot) => (slot, false),
        None => {
            let slot = (1..SESSION_NETWORKS)
                .min_by(|&a, &b| track.seen[a].last.total_cmp(&track.seen[b].last).then(a.cmp(&b)))
                .unwrap_or(1);
            let slot = track.seen.iter().position(|s| s.network == 0).unwrap_or(slot);
            track.seen[slot] = Seen { network: f.network, first: at, last: at, novelty: fresh };
            (slot, true)
        }
    };
    let decay = fade(ts - previous_last, w.alternation_tau);
    track.switches *= decay;
    if usize::from(track.current) != slot {
        track.switches += 1.0;
        track.current = slot as u8;
    }
    // Another of the session's networks in use lately, weighted by how much the session has been switching.
    let other = (0..SESSION_NETWORKS)
        .filter(|&i| i != slot && track.seen[i].network != 0)
        .map(|i| fade(f64::from(at - track.seen[i].last), w.switch_tau))
        .fold(0.0, f32::max);
    track.seen[slot].last = track.seen[slot].last.max(at);
    let concurrency = other * (1.0 - (-track.switches / w.switches).exp());
    // A session picked up again after a pause (the laptop opened the next morning) is a new visit: judged
    // afresh, and learnt.
    let visit = new || ts - previous_last > VISIT_GAP;
    if visit {
        track.seen[slot].novelty = fresh;
    }
    let concurrency = if slot == 0 { 0.0 } else { concurrency };
    let agent_changed = track.family != f.family;
    // A network that appears while another is still in use is not learnt now: it may be a second party.
    // If it is the subject's own, the next visit that starts there teaches it.
    Within {
        novelty: track.seen[slot].novelty,
        concurrency,
        agent_changed,
        learn: visit && other < 0.5 && !agent_changed,
    }
}

/// What [`within_session`] makes of a request.
#[derive(Debug, Clone, Copy)]
struct Within {
    novelty: [f32; 3],
    concurrency: f32,
    /// The session started with another user-agent family: its token moved to other software.
    agent_changed: bool,
    learn: bool,
}

fn add_novelty(out: &mut Assessment, novelty: [f32; 3]) {
    out.add(novelty[0], Reason::NewNetwork);
    out.add(novelty[1], Reason::NewAgent);
    out.add(novelty[2], Reason::NewClient);
}

/// How new an event's network, agent and client are to the subject, in log-likelihood-ratio units.
fn novelty(w: &Weights, population: &Population, profile: &Profile, f: Features) -> [f32; 3] {
    let feature = |i: usize, weight: f32, share: f64, copied: f32| {
        let subject = Subject { weight, sessions: profile.sessions, novel: profile.novel[i] };
        log_ratio(subject, share, w.smoothing, copied)
    };
    // An attacker picks the user agent and the client id, and copies the victim's as often as not; the
    // network is not the attacker's to choose, so a familiar one counts in full.
    let mut network = w.network
        * feature(0, profile.networks.weight(f.network), population.networks.share(f.network), 0.0)
        + w.block * feature(1, profile.blocks.weight(f.block), population.blocks.share(f.block), 0.0);
    // Residential proxies are sold by country and by provider: a familiar country or ASN is partly copyable.
    if f.asn != 0 {
        network += w.asn * feature(5, profile.asns.weight(f.asn), population.asns.share(f.asn), 0.3);
    }
    if f.country != 0 {
        network +=
            w.country * feature(6, profile.countries.weight(f.country), population.countries.share(f.country), 0.5);
    }
    let agent = w.family * feature(2, profile.families.weight(f.family), population.families.share(f.family), 0.5)
        + w.agent * feature(3, profile.agents.weight(f.agent), population.agents.share(f.agent), 0.5);
    let client = w.client * feature(4, profile.clients.weight(f.client), population.clients.share(f.client), 0.8);
    [network, agent, client]
}

fn hour_ratio(w: &Weights, population: &Population, profile: &Profile, hour: usize) -> f32 {
    let total: f64 = population.hours.iter().sum();
    let share = if total > 0.0 { population.hours[hour] / total } else { 1.0 / 24.0 };
    let q = share.max(1e-6) as f32;
    let subject = (profile.hours[hour] + w.smoothing * q) / (profile.sessions + w.smoothing);
    (q / subject).ln().clamp(-0.5, 8.0)
}

/// What a subject's history says about one feature's value.
#[derive(Debug, Clone, Copy)]
struct Subject {
    /// Sessions with this value.
    weight: f32,
    sessions: f32,
    /// Sessions that showed a new value of this feature (the values it has shown, give or take ageing).
    novel: f32,
}

/// ln(p(x | attacker) / p(x | subject)) in the spirit of Freeman et al. (NDSS 2016).
///
/// The subject's distribution is its history smoothed towards the population (`smoothing` pseudo-sessions);
/// a value it never showed has the escape probability d/(n+d) of the PPM-C estimator (d values shown in n
/// sessions): a subject who is often somewhere new is not alarming there, and one with no history is not
/// alarming anywhere. The attacker draws from the
/// population, or copies the subject's value with probability `copied`, and is nearly always somewhere new to
/// the subject. Bounded, so no single feature decides alone.
fn log_ratio(s: Subject, share: f64, smoothing: f32, copied: f32) -> f32 {
    let q = share.max(1e-6) as f32;
    let ratio = if s.weight > 0.0 {
        let subject = (s.weight + smoothing * q) / (s.sessions + smoothing);
        (copied * subject + (1.0 - copied) * q) / subject
    } else {
        let subject = if s.sessions > 0.0 { s.novel / (s.sessions + s.novel) } else { 1.0 };
        (1.0 - copied) / subject.max(1e-3)
    };
    ratio.ln().clamp(-3.0, 8.0)
}

/// 1 at no distance, fading with time constant `tau`; 0 for "never".
fn fade(seconds: f64, tau: f64) -> f32 {
    (-(seconds.max(0.0)) / tau).exp() as f32
}

/// Keeps a follow-map under [`MAX_FOLLOWED`] entries by dropping stale ones (all of them as a last resort).
fn bound<V>(map: &mut HashMap<u32, V>, stale: impl Fn(&V) -> bool) {
    if map.len() < MAX_FOLLOWED {
        return;
    }
    map.retain(|_, v| !stale(v));
    if map.len() >= MAX_FOLLOWED {
        map.clear();
    }
}
