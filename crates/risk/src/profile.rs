//! A subject's profile: what its sessions look like, in fixed memory (well under 1 KiB).

use crate::sketch::{tally_all, Decayed, Tally, TopK};

/// Sessions of a subject that are followed at once (phone, laptop, a second browser, one spare).
pub const TRACKS: usize = 4;

/// What one subject's sessions look like. Weights count sessions, not requests, so a chatty session does
/// not drown the rest; they age by halving once `sessions` passes [`Profile::AGE_AT`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    /// Session observations so far (aged).
    pub sessions: f32,
    pub networks: TopK<12>,
    pub blocks: TopK<8>,
    pub families: TopK<4>,
    pub agents: TopK<4>,
    pub clients: TopK<4>,
    /// Autonomous systems and countries (when a GeoIP database is configured).
    pub asns: TopK<4>,
    pub countries: TopK<4>,
    /// Where and when the subject was last seen (latitude, longitude, time), with a GeoIP database.
    pub last_place: (f32, f32, f64),
    /// Sessions whose network, block, agent family, exact agent, client, ASN and country were new at the time
    /// (aged like the rest): how often this subject shows something new, for the escape estimate of novelty.
    pub novel: [f32; 7],
    pub hours: [f32; 24],
    pub tracks: [Track; TRACKS],
    /// Requests, decaying over a minute, and the subject's usual level of it.
    pub rate: Decayed,
    pub usual_rate: f32,
}

/// Networks followed within one session: where it started and the two latest others.
pub const SESSION_NETWORKS: usize = 3;

/// One session (refresh family, or a token without one) as it is being used: the networks it is used from
/// and how often it has switched between them lately.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Track {
    /// Fingerprint of the `sid` (or `jti`); 0 when the slot is free.
    pub key: u32,
    /// When the session was first seen; the times below count from here.
    pub base: f64,
    /// Switches between networks, decaying.
    pub switches: f32,
    /// The slot of the latest request.
    pub current: u8,
    /// Fingerprint of the user-agent family the session started with: a refresh family is one device's.
    pub family: u32,
    /// `seen[0]` is where the session started; the others are replaced, least recent first.
    pub seen: [Seen; SESSION_NETWORKS],
}

/// A network as seen within one session.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Seen {
    /// Fingerprint of the network; 0 when unused.
    pub network: u32,
    /// First and latest request from it, seconds after the track's base.
    pub first: f32,
    pub last: f32,
    /// How new the network, the agent and the client were to the subject when the session first came from
    /// this network, in log-likelihood-ratio units; kept for the rest of the session.
    pub novelty: [f32; 3],
}

impl Profile {
    /// Weights halve when this many sessions have been counted: the profile follows a user who moves.
    pub const AGE_AT: f32 = 200.0;

    /// Counts one session observation.
    pub fn learn(&mut self, seen: &Observed) {
        if self.sessions >= Self::AGE_AT {
            self.sessions *= 0.5;
            for sketch in [&mut self.families, &mut self.agents, &mut self.clients, &mut self.asns, &mut self.countries]
            {
                sketch.scale(0.5);
            }
            self.networks.scale(0.5);
            self.blocks.scale(0.5);
            for h in self.hours.iter_mut().chain(&mut self.novel) {
                *h *= 0.5;
            }
        }
        let [network, block, family, agent, client, asn, country] = seen.keys();
        let new = [
            self.networks.weight(network) == 0.0,
            self.blocks.weight(block) == 0.0,
            self.families.weight(family) == 0.0,
            self.agents.weight(agent) == 0.0,
            self.clients.weight(client) == 0.0,
            asn != 0 && self.asns.weight(asn) == 0.0,
            country != 0 && self.countries.weight(country) == 0.0,
        ];
        for (count, new) in self.novel.iter_mut().zip(new) {
            *count += f32::from(u8::from(new));
        }
        self.sessions += 1.0;
        let summaries: [&mut dyn Tally; 7] = [
            &mut self.networks,
            &mut self.blocks,
            &mut self.families,
            &mut self.agents,
            &mut self.clients,
            &mut self.asns,
            &mut self.countries,
        ];
        tally_all(summaries, seen.keys());
        self.hours[seen.hour % 24] += 1.0;
    }

    /// What an operator can read of the profile (fingerprints are one-way, so counts and rates, no values).
    pub fn summary(&self) -> serde_json::Value {
        let n = self.sessions.max(1.0);
        let rate = |i: usize| ((self.novel[i] / n) * 1000.0).round() / 1000.0;
        let tracks: Vec<serde_json::Value> = self
            .tracks
            .iter()
            .filter(|t| t.key != 0)
            .map(|t| {
                serde_json::json!({
                    "last_seen": t.last(), "networks": t.seen.iter().filter(|s| s.network != 0).count(),
                    "switching": (t.switches * 100.0).round() / 100.0,
                })
            })
            .collect();
        serde_json::json!({
            "sessions": (self.sessions * 10.0).round() / 10.0,
            "known": {
                "networks": self.networks.held(), "blocks": self.blocks.held(), "agent_families": self.families.held(),
                "user_agents": self.agents.held(), "clients": self.clients.held(), "asns": self.asns.held(),
                "countries": self.countries.held(),
            },
            "new_value_rate": {
                "network": rate(0), "block": rate(1), "agent_family": rate(2), "user_agent": rate(3), "client": rate(4),
                "asn": rate(5), "country": rate(6),
            },
            "sessions_followed": tracks,
            "last_place": (self.last_place.2 > 0.0).then(|| serde_json::json!({
                "latitude": self.last_place.0, "longitude": self.last_place.1, "at": self.last_place.2,
            })),
        })
    }

    /// The track of session `key`, made (replacing the longest idle one) when new; the bool says it is new.
    pub fn track(&mut self, key: u32) -> (&mut Track, bool) {
        let index = match self.tracks.iter().position(|t| t.key == key) {
            Some(i) => (i, false),
            None => {
                let mut idle = 0;
                for i in 1..TRACKS {
                    if self.tracks[i].last() < self.tracks[idle].last() {
                        idle = i;
                    }
                }
                self.tracks[idle] = Track { key, ..Track::default() };
                (idle, true)
            }
        };
        (&mut self.tracks[index.0], index.1)
    }

    /// The stored form: fixed size, little-endian, versioned.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::STORED_LEN);
        out.push(Self::VERSION);
        out.extend_from_slice(&self.sessions.to_le_bytes());
        self.networks.write(&mut out);
        self.blocks.write(&mut out);
        self.families.write(&mut out);
        self.agents.write(&mut out);
        self.clients.write(&mut out);
        self.asns.write(&mut out);
        self.countries.write(&mut out);
        out.extend_from_slice(&self.last_place.0.to_le_bytes());
        out.extend_from_slice(&self.last_place.1.to_le_bytes());
        out.extend_from_slice(&self.last_place.2.to_le_bytes());
        for h in self.novel.iter().chain(&self.hours) {
            out.extend_from_slice(&h.to_le_bytes());
        }
        for track in &self.tracks {
            out.extend_from_slice(&track.key.to_le_bytes());
            out.extend_from_slice(&track.base.to_le_bytes());
            out.extend_from_slice(&track.switches.to_le_bytes());
            out.push(track.current);
            out.extend_from_slice(&track.family.to_le_bytes());
            for seen in &track.seen {
                out.extend_from_slice(&seen.network.to_le_bytes());
                for v in [seen.first, seen.last, seen.novelty[0], seen.novelty[1], seen.novelty[2]] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        self.rate.write(&mut out);
        out.extend_from_slice(&self.usual_rate.to_le_bytes());
        out
    }

    /// Reads the stored form; `None` for anything else (a profile of another version starts afresh).
    pub fn from_bytes(bytes: &[u8]) -> Option<Profile> {
        let mut input = Reader { bytes };
        if input.u8()? != Self::VERSION {
            return None;
        }
        let mut profile = Profile {
            sessions: input.f32()?,
            networks: TopK::read(&mut input)?,
            blocks: TopK::read(&mut input)?,
            families: TopK::read(&mut input)?,
            agents: TopK::read(&mut input)?,
            clients: TopK::read(&mut input)?,
            asns: TopK::read(&mut input)?,
            countries: TopK::read(&mut input)?,
            last_place: (input.f32()?, input.f32()?, input.f64()?),
            ..Profile::default()
        };
        for h in profile.novel.iter_mut().chain(&mut profile.hours) {
            *h = input.f32()?;
        }
        for track in &mut profile.tracks {
            track.key = input.u32()?;
            track.base = input.f64()?;
            track.switches = input.f32()?;
            track.current = input.u8()?;
            track.family = input.u32()?;
            for seen in &mut track.seen {
                *seen = Seen {
                    network: input.u32()?,
                    first: input.f32()?,
                    last: input.f32()?,
                    novelty: [input.f32()?, input.f32()?, input.f32()?],
                };
            }
        }
        profile.rate = Decayed::read(&mut input)?;
        profile.usual_rate = input.f32()?;
        input.bytes.is_empty().then_some(profile)
    }

    const VERSION: u8 = 2;
    /// Bytes of the stored form.
    pub const STORED_LEN: usize = 1
        + 4
        + (12 + 8 + 4 + 4 + 4 + 4 + 4) * 8
        + 16
        + (7 + 24) * 4
        + TRACKS * (4 + 8 + 4 + 1 + 4 + SESSION_NETWORKS * 24)
        + 12
        + 4;
}

impl Track {
    /// When the session was last seen on any network.
    pub fn last(&self) -> f64 {
        self.base + f64::from(self.seen.iter().map(|s| s.last).fold(0.0, f32::max))
    }
}

/// The fingerprints of one observation (0: unknown, for ASN and country).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    pub network: u32,
    pub block: u32,
    pub asn: u32,
    pub country: u32,
    pub family: u32,
    pub agent: u32,
    pub client: u32,
    pub hour: usize,
}

impl Observed {
    /// The fingerprints in the order of [`Profile::novel`].
    pub fn keys(&self) -> [u32; 7] {
        [self.network, self.block, self.family, self.agent, self.client, self.asn, self.country]
    }
}

/// Reads little-endian fields off a byte slice.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.bytes.split_first_chunk::<N>()?;
        self.bytes = rest;
        Some(*head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take::<1>()?[0])
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    pub(crate) fn f32(&mut self) -> Option<f32> {
        self.take().map(f32::from_le_bytes)
    }
    pub(crate) fn f64(&mut self) -> Option<f64> {
        self.take().map(f64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_form_round_trips_and_is_small() {
        let mut profile = Profile::default();
        let seen = Observed { network: 1, block: 2, asn: 3, country: 4, family: 5, agent: 6, client: 7, hour: 13 };
        profile.learn(&seen);
        profile.last_place = (48.8, 2.3, 1e9);
        let (track, new) = profile.track(99);
        assert!(new);
        track.base = 1000.5;
        track.switches = 1.5;
        track.seen[1] = Seen { network: 1, first: 10.0, last: 20.5, novelty: [3.25, 1.0, 0.0] };
        profile.rate.add(100.0, 60.0, 2.0);
        let bytes = profile.to_bytes();
        assert_eq!(bytes.len(), Profile::STORED_LEN);
        assert!(bytes.len() <= 1024);
        assert!(std::mem::size_of::<Profile>() <= 1024, "{}", std::mem::size_of::<Profile>());
        assert_eq!(Profile::from_bytes(&bytes), Some(profile));
        assert_eq!(Profile::from_bytes(&bytes[..bytes.len() - 1]), None);
        let mut other_version = bytes.clone();
        other_version[0] = 0;
        assert_eq!(Profile::from_bytes(&other_version), None);
    }

    #[test]
    fn profiles_age() {
        let mut profile = Profile::default();
        for _ in 0..400 {
            profile.learn(&Observed {
                network: 1,
                block: 2,
                family: 3,
                agent: 4,
                client: 5,
                hour: 6,
                ..Observed::default()
            });
        }
        assert!(profile.sessions <= Profile::AGE_AT + 1.0);
        assert_eq!(profile.networks.weight(1), profile.sessions);
    }

    #[test]
    fn tracks_replace_the_idlest() {
        let mut profile = Profile::default();
        for key in 1..=TRACKS as u32 {
            let (track, _) = profile.track(key);
            track.base = f64::from(key) * 10.0;
        }
        let (_, new) = profile.track(2);
        assert!(!new);
        let (track, new) = profile.track(77);
        assert!(new);
        assert_eq!(track.key, 77);
        assert!(profile.tracks.iter().all(|t| t.key != 1));
    }
}
