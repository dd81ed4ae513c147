//! Scores and the reasons for them, in words.

use std::fmt;

use crate::net::Prefix;
use crate::ua::Family;

/// Why an event scored what it did. Each reason carries its part of the log-likelihood ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Reason {
    /// The network (and block) is new for the subject.
    NewNetwork,
    /// The user-agent family is new for the subject.
    NewAgent,
    /// The client is new for the subject.
    NewClient,
    /// A move from the subject's last place faster than an airliner: kilometres, minutes.
    ImpossibleTravel(f32, f32),
    /// An hour of the day at which the subject is rarely active (UTC).
    UnusualHour(u8),
    /// The session is in use from another network at the same time.
    SharedSession,
    /// The session (one device's) is presented by other software than it started with.
    SessionAgentChanged,
    /// Requests in the last minute, far above the subject's usual rate.
    Burst(f32),
    /// A failed login.
    Failure,
    /// Failed logins for this account lately.
    AccountFailures(f32),
    /// A successful login after that many recent failures.
    LoginAfterFailures(f32),
    /// Accounts this source has tried lately, mostly failing.
    SourceAccounts(f32),
    /// Failed logins from networks new to their accounts in the last minute, far above the usual.
    FailureWave(f32),
    /// A rotated-out refresh token came back.
    RefreshReuse,
}

impl Reason {
    /// The exact signal this reason is, if any (as opposed to a part of the statistical score).
    pub fn signal(&self) -> Option<Signal> {
        match self {
            Reason::SharedSession | Reason::SessionAgentChanged => Some(Signal::SharedSession),
            Reason::AccountFailures(_) | Reason::LoginAfterFailures(_) => Some(Signal::BruteForce),
            Reason::SourceAccounts(_) | Reason::FailureWave(_) => Some(Signal::CredentialStuffing),
            Reason::RefreshReuse => Some(Signal::RefreshReuse),
            _ => None,
        }
    }
}

/// The exact signals, which actions can be configured for beside the score bands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Signal {
    RefreshReuse,
    SharedSession,
    BruteForce,
    /// One source against many accounts, or a wave of failures across accounts (stuffing or spraying).
    CredentialStuffing,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::RefreshReuse => "refresh_reuse",
            Signal::SharedSession => "shared_session",
            Signal::BruteForce => "brute_force",
            Signal::CredentialStuffing => "credential_stuffing",
        }
    }

    pub fn parse(name: &str) -> Option<Signal> {
        [Signal::RefreshReuse, Signal::SharedSession, Signal::BruteForce, Signal::CredentialStuffing]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// A scored event.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// In [0, 1]: the logistic of the log-likelihood ratio less the bias.
    pub score: f32,
    /// The log-likelihood ratio, attack against the subject's own behaviour.
    pub llr: f32,
    parts: Vec<(f32, Reason)>,
    /// The strongest exact signal's part: familiarity elsewhere cannot pull the score below it.
    strongest: f32,
    network: Option<Prefix>,
    family: Option<Family>,
}

impl Default for Assessment {
    fn default() -> Self {
        Assessment { score: 0.0, llr: 0.0, parts: Vec::new(), strongest: 0.0, network: None, family: None }
    }
}

/// A part must add at least this much (log units) to be named as a reason.
const NAMED: f32 = 0.75;

impl Assessment {
    pub(crate) fn add(&mut self, part: f32, reason: Reason) {
        if part == 0.0 || !part.is_finite() {
            return;
        }
        self.llr += part;
        if reason.signal().is_some() {
            self.strongest = self.strongest.max(part);
        }
        if part >= NAMED {
            self.parts.push((part, reason));
        }
    }

    pub(crate) fn finish(&mut self, bias: f32, network: Prefix, family: Family) {
        // An exact signal (200 failures on one account, say) stands even from a network the subject knows.
        self.llr = self.llr.max(self.strongest);
        self.score = 1.0 / (1.0 + (bias - self.llr).exp());
        self.parts.sort_by(|a, b| b.0.total_cmp(&a.0));
        self.network = Some(network);
        self.family = Some(family);
    }

    /// The reasons, weightiest first.
    pub fn reasons(&self) -> impl Iterator<Item = Reason> + '_ {
        self.parts.iter().map(|(_, r)| *r)
    }

    /// The exact signals among the reasons.
    pub fn signals(&self) -> impl Iterator<Item = Signal> + '_ {
        self.reasons().filter_map(|r| r.signal())
    }

    /// The reasons in words, weightiest first.
    pub fn explain(&self) -> Vec<String> {
        self.reasons().map(|r| Explained { reason: r, of: self }.to_string()).collect()
    }
}

struct Explained<'a> {
    reason: Reason,
    of: &'a Assessment,
}

impl fmt::Display for Explained<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            Reason::NewNetwork => match self.of.network {
                Some(network) => write!(f, "network {network} is new for this subject"),
                None => f.write_str("the network is new for this subject"),
            },
            Reason::NewAgent => match self.of.family {
                Some(family) => write!(f, "{family} is new for this subject"),
                None => f.write_str("the user agent is new for this subject"),
            },
            Reason::NewClient => f.write_str("a client this subject has not used"),
            Reason::ImpossibleTravel(km, minutes) => {
                write!(f, "impossible travel: {km:.0} km from the last request {minutes:.0} minutes earlier")
            }
            Reason::UnusualHour(h) => write!(f, "an unusual hour for this subject ({h:02}:00 UTC)"),
            Reason::SharedSession => f.write_str("the session is in use from another network at the same time"),
            Reason::SessionAgentChanged => match self.of.family {
                Some(family) => write!(f, "the session started in other software and is now presented by {family}"),
                None => f.write_str("the session started in other software"),
            },
            Reason::Burst(rate) => write!(f, "{rate:.0} requests in the last minute, far above this subject's usual"),
            Reason::Failure => f.write_str("a failed login"),
            Reason::AccountFailures(n) => write!(f, "{n:.0} failed logins for this account lately"),
            Reason::LoginAfterFailures(n) => write!(f, "a login after {n:.0} recent failures"),
            Reason::SourceAccounts(n) => write!(f, "this source tried about {n:.0} accounts lately, mostly failing"),
            Reason::FailureWave(n) => {
                write!(f, "a wave of failed logins from new networks across accounts ({n:.0} in the last minute)")
            }
            Reason::RefreshReuse => f.write_str("a rotated-out refresh token came back: its family is revoked"),
        }
    }
}
