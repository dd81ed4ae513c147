//! The engine's behaviour, case by case, and its accuracy on a small simulated corpus.

// A test binary: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;

use portcullis_risk::simulate::{simulate, Scenario};
use portcullis_risk::{Assessment, Engine, Evaluation, Event, Kind, Profile, Reason, Signal, Weights};

const DAY: f64 = 86_400.0;
const HOME: &str = "198.51.100.20";
const WORK: &str = "192.0.2.40";
const CHROME: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

fn event(ts: f64, kind: Kind, sub: &str, ip: &str, ua: &str, sid: Option<&str>) -> Event {
    Event {
        ts,
        kind,
        sub: sub.to_owned(),
        client_id: "web".to_owned(),
        ip: ip.parse::<IpAddr>().unwrap(),
        ua: ua.to_owned(),
        jti: sid.map(|s| format!("{s}-jti")),
        sid: sid.map(str::to_owned),
        label: None,
        attack: None,
    }
}

/// Thirty days of a settled user: a session a day from home and one from work, each a few requests.
fn settled(engine: &mut Engine, sub: &str) -> f64 {
    let start = 1_764_547_200.0;
    for day in 0..30 {
        for (place, hour) in [(HOME, 8.0), (WORK, 13.0)] {
            let sid = format!("{sub}-{day}-{hour}");
            let t = start + f64::from(day) * DAY + hour * 3600.0;
            engine.observe(&event(t, Kind::Login, sub, place, CHROME, Some(&sid)));
            for i in 1..5 {
                engine.observe(&event(t + f64::from(i) * 30.0, Kind::TokenUse, sub, place, CHROME, Some(&sid)));
            }
        }
    }
    start + 30.0 * DAY
}

fn has(assessment: &Assessment, wanted: fn(&Reason) -> bool) -> bool {
    assessment.reasons().any(|r| wanted(&r))
}

#[test]
fn a_new_subject_is_not_suspicious_by_itself() {
    let mut engine = Engine::new(Weights::default());
    let first = engine.observe(&event(1e9, Kind::Login, "newbie", "203.0.113.5", CHROME, Some("s1")));
    assert!(first.score < 0.2, "{first:?}");
}

#[test]
fn home_is_familiar_and_a_new_network_is_not() {
    let mut engine = Engine::new(Weights::default());
    let now = settled(&mut engine, "alice");
    let home = engine.observe(&event(now + 8.0 * 3600.0, Kind::Login, "alice", HOME, CHROME, Some("h")));
    let away = engine.observe(&event(now + 9.0 * 3600.0, Kind::Login, "alice", "203.0.113.5", CHROME, Some("a")));
    assert!(home.score < 0.05, "{home:?}");
    assert!(away.score > home.score + 0.3, "home {} away {}", home.score, away.score);
    assert!(has(&away, |r| matches!(r, Reason::NewNetwork)));
    assert!(away.explain()[0].contains("203.0.113.0/24"), "{:?}", away.explain());
    // A new browser from home is noted, but home still counts.
    let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
    let new_browser = engine.observe(&event(now + 10.0 * 3600.0, Kind::Login, "alice", HOME, firefox, Some("f")));
    assert!(has(&new_browser, |r| matches!(r, Reason::NewAgent)));
    assert!(new_browser.score < away.score);
}

#[test]
fn a_session_used_from_two_networks_at_once_is_a_second_party() {
    let mut engine = Engine::new(Weights::default());
    let now = settled(&mut engine, "bob");
    let sid = Some("live");
    engine.observe(&event(now, Kind::Login, "bob", HOME, CHROME, sid));
    let mut attacker = Vec::new();
    let mut owner = Vec::new();
    for i in 0..6 {
        let t = now + 20.0 + f64::from(i) * 20.0;
        owner.push(engine.observe(&event(t, Kind::TokenUse, "bob", HOME, CHROME, sid)));
        attacker.push(engine.observe(&event(t + 5.0, Kind::TokenUse, "bob", "203.0.113.77", CHROME, sid)));
    }
    for a in &attacker {
        assert!(a.score > 0.9, "{a:?}");
        assert!(a.signals().any(|s| s == Signal::SharedSession), "{a:?}");
    }
    // The owner, on the network the session started on, is not the one flagged.
    assert!(owner.iter().all(|a| a.score < 0.2), "{owner:?}");
    // And the attacker's network was not learnt from its own requests.
    let profile = engine.profile("bob").unwrap();
    let attacker_network = portcullis_risk::networks("203.0.113.77".parse().unwrap()).0.fingerprint();
    assert_eq!(profile.networks.weight(attacker_network), 0.0);
}

#[test]
fn one_move_to_a_familiar_carrier_is_not_a_second_party() {
    let mut engine = Engine::new(Weights::default());
    // A population, so that familiarity with a block means something against it.
    for i in 0..50 {
        settled(&mut engine, &format!("other{i}"));
    }
    let now = settled(&mut engine, "carol");
    // Carol's phone has used the carrier block before (another /24 in it).
    for day in 0..10 {
        let t = now + f64::from(day) * DAY + 18.0 * 3600.0;
        engine.observe(&event(t, Kind::Login, "carol", &format!("100.64.{day}.9"), CHROME, Some(&format!("c{day}"))));
    }
    let now = now + 11.0 * DAY;
    let sid = Some("walk");
    engine.observe(&event(now, Kind::Login, "carol", HOME, CHROME, sid));
    engine.observe(&event(now + 30.0, Kind::TokenUse, "carol", HOME, CHROME, sid));
    let moved = engine.observe(&event(now + 60.0, Kind::TokenUse, "carol", "100.64.77.3", CHROME, sid));
    assert!(moved.score < 0.5, "{moved:?}");
}

#[test]
fn a_session_presented_by_other_software_is_flagged() {
    let mut engine = Engine::new(Weights::default());
    let now = settled(&mut engine, "dave");
    engine.observe(&event(now, Kind::Login, "dave", HOME, CHROME, Some("d")));
    let stolen =
        engine.observe(&event(now + 7200.0, Kind::Refresh, "dave", "203.0.113.8", "python-requests/2.32", Some("d")));
    assert!(stolen.score > 0.95, "{stolen:?}");
    assert!(has(&stolen, |r| matches!(r, Reason::SessionAgentChanged)));
}

#[test]
fn refresh_reuse_is_an_exact_signal() {
    let mut engine = Engine::new(Weights::default());
    let reuse = engine.observe(&event(1e9, Kind::RefreshReuse, "erin", HOME, CHROME, Some("x")));
    assert!(reuse.score > 0.99);
    assert_eq!(reuse.signals().collect::<Vec<_>>(), [Signal::RefreshReuse]);
}

#[test]
fn brute_force_on_one_account_is_flagged_within_a_few_attempts() {
    let mut engine = Engine::new(Weights::default());
    let now = settled(&mut engine, "frank");
    let scores: Vec<Assessment> = (0..10)
        .map(|i| engine.observe(&event(now + f64::from(i), Kind::LoginFailure, "frank", "203.0.113.9", "curl/8", None)))
        .collect();
    let first = scores.iter().position(|a| a.signals().any(|s| s == Signal::BruteForce)).unwrap();
    assert!(first <= 3, "first flag at attempt {}", first + 1);
    assert!(scores[9].score > 0.95);
    // The owner's own typo from home is not.
    let typo = engine.observe(&event(now + 7200.0, Kind::LoginFailure, "grace", HOME, CHROME, None));
    assert!(typo.score < 0.5, "{typo:?}");
}

#[test]
fn one_source_against_many_accounts_is_flagged() {
    let mut engine = Engine::new(Weights::default());
    let mut flagged_at = None;
    for i in 0..40 {
        let a = engine.observe(&event(
            1e9 + f64::from(i),
            Kind::LoginFailure,
            &format!("user{i}"),
            "203.0.113.10",
            "curl/8",
            None,
        ));
        if flagged_at.is_none() && a.signals().any(|s| s == Signal::CredentialStuffing) {
            flagged_at = Some(i + 1);
        }
    }
    assert!(flagged_at.is_some_and(|n| n <= 10), "{flagged_at:?}");
}

#[test]
fn a_botnet_wave_is_flagged_though_each_source_tries_once() {
    let mut engine = Engine::new(Weights::default());
    let mut flags = 0;
    for i in 0..60u32 {
        let ip = format!("{}.{}.{}.7", 20 + i % 50, i % 200, i % 250);
        let a = engine.observe(&event(
            1e9 + f64::from(i) * 0.5,
            Kind::LoginFailure,
            &format!("victim{i}"),
            &ip,
            CHROME,
            None,
        ));
        flags += usize::from(a.signals().any(|s| s == Signal::CredentialStuffing));
    }
    assert!(flags >= 40, "{flags} of 60 flagged");
}

#[test]
fn profiles_stay_small_and_survive_the_store() {
    let mut engine = Engine::new(Weights::default());
    settled(&mut engine, "heidi");
    let profile = engine.profile("heidi").unwrap().clone();
    let bytes = profile.to_bytes();
    assert!(bytes.len() <= 1024 && std::mem::size_of::<Profile>() <= 1024);
    let mut other = Engine::new(Weights::default());
    other.load_profile("heidi", Profile::from_bytes(&bytes).unwrap());
    assert_eq!(other.profile("heidi"), Some(&profile));
}

/// A regression guard on a small corpus (the README's figures come from `risk eval` on full-size ones).
#[test]
fn a_small_corpus_separates_attacks_from_benign_use() {
    let events = simulate(&Scenario::new(21, 300, 12));
    let mut engine = Engine::new(Weights::default());
    let mut evaluation = Evaluation::default();
    for e in &events {
        let a = engine.observe(e);
        assert!((0.0..=1.0).contains(&a.score));
        evaluation.record(a.score, e.label.as_deref(), e.attack.as_deref());
    }
    let report = evaluation.report().unwrap();
    assert!(report.auc > 0.98, "{report}");
    assert!(report.tpr[0] > 0.85, "{report}");
}

/// With a GeoIP database: a new address in the subject's own provider is less new than one in another, and a
/// jump across an ocean in minutes is impossible travel.
#[test]
fn a_geoip_database_adds_providers_countries_and_impossible_travel() {
    use portcullis_risk::simulate::mmdb::{write, Entry};
    use portcullis_risk::GeoIp;
    let entries = [
        Entry { prefix: [198, 51], asn: 64_500, country: "DE", location: (52.52, 13.40) },
        Entry { prefix: [198, 52], asn: 64_500, country: "DE", location: (52.52, 13.40) },
        Entry { prefix: [192, 0], asn: 64_501, country: "DE", location: (48.14, 11.58) },
        Entry { prefix: [203, 0], asn: 64_999, country: "US", location: (40.71, -74.01) },
    ];
    let mut geo = GeoIp::default();
    geo.add(write(&entries, 1)).unwrap();
    let mut engine = Engine::new(Weights::default()).with_geoip(geo);
    for i in 0..20 {
        settled(&mut engine, &format!("other{i}"));
    }
    let now = settled(&mut engine, "ivan");
    // The same provider (another of its blocks) against a provider across the Atlantic, an hour apart.
    let same_asn = engine.observe(&event(now + 3600.0, Kind::Login, "ivan", "198.52.7.7", CHROME, Some("a")));
    let elsewhere = engine.observe(&event(now + 7200.0, Kind::Login, "ivan", "203.0.113.5", CHROME, Some("b")));
    assert!(elsewhere.score > same_asn.score, "{same_asn:?} {elsewhere:?}");
    assert!(has(&elsewhere, |r| matches!(r, Reason::ImpossibleTravel(km, _) if *km > 6000.0)), "{elsewhere:?}");
    assert!(elsewhere.explain().iter().any(|r| r.starts_with("impossible travel: ")), "{:?}", elsewhere.explain());
    assert!(!has(&same_asn, |r| matches!(r, Reason::ImpossibleTravel(..))));
    // Without the database the same events carry no travel reason.
    let mut plain = Engine::new(Weights::default());
    let now = settled(&mut plain, "ivan");
    plain.observe(&event(now + 3600.0, Kind::Login, "ivan", "198.52.7.7", CHROME, Some("a")));
    let far = plain.observe(&event(now + 7200.0, Kind::Login, "ivan", "203.0.113.5", CHROME, Some("b")));
    assert!(!has(&far, |r| matches!(r, Reason::ImpossibleTravel(..))));
}
