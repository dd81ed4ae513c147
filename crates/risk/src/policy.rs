//! What to do about a score: actions by score band and by exact signal.

use std::collections::BTreeMap;
use std::fmt;

use crate::reason::{Assessment, Signal};

/// What follows an assessment, mildest first; the strongest that applies wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Allow,
    /// Record it (audit event, metric, log line, webhook) and let it through.
    Flag,
    /// Refuse the request (a login or a refresh), and flag it.
    Deny,
    /// Refuse it and revoke the session (refresh family) or token, through the revocation path.
    Revoke,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Flag => "flag",
            Action::Deny => "deny",
            Action::Revoke => "revoke",
        }
    }

    pub fn parse(name: &str) -> Option<Action> {
        [Action::Allow, Action::Flag, Action::Deny, Action::Revoke].into_iter().find(|a| a.as_str() == name)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Score bands and per-signal actions.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Scores at or above these take the action; `None` turns a band off.
    pub flag_at: Option<f32>,
    pub deny_at: Option<f32>,
    pub revoke_at: Option<f32>,
    pub signals: BTreeMap<SignalName, Action>,
}

/// A [`Signal`] as a map key.
pub type SignalName = &'static str;

/// The default signal actions: flag them all. Refusing or revoking on a signal alone is the operator's choice:
/// a session "shared" between home Wi-Fi and a carrier the subject is new to fires on about 2 % of benign
/// requests in the simulated corpora, and a login after three typos is usually its owner's.
pub const DEFAULT_SIGNALS: &str = "shared_session=flag,brute_force=flag,credential_stuffing=flag,refresh_reuse=flag";

impl Default for Policy {
    fn default() -> Self {
        Policy {
            flag_at: Some(0.8),
            deny_at: None,
            revoke_at: None,
            signals: Policy::parse_signals(DEFAULT_SIGNALS).unwrap_or_default(),
        }
    }
}

impl Policy {
    /// Parses `signal=action,...` (signals: refresh_reuse, shared_session, brute_force, credential_stuffing).
    pub fn parse_signals(spec: &str) -> Result<BTreeMap<SignalName, Action>, String> {
        let mut signals = BTreeMap::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, action) = part.split_once('=').ok_or_else(|| format!("`{part}`: expected signal=action"))?;
            let signal = Signal::parse(name.trim()).ok_or_else(|| {
                format!("`{name}` is not a signal (refresh_reuse, shared_session, brute_force, credential_stuffing)")
            })?;
            let action = Action::parse(action.trim())
                .ok_or_else(|| format!("`{action}` is not an action (allow, flag, deny, revoke)"))?;
            signals.insert(signal.as_str(), action);
        }
        Ok(signals)
    }

    /// The action for an assessment: the strongest of its band's and its signals'.
    pub fn action(&self, assessment: &Assessment) -> Action {
        let score = assessment.score;
        let band = |at: Option<f32>, action| if at.is_some_and(|at| score >= at) { action } else { Action::Allow };
        let mut action = band(self.flag_at, Action::Flag).max(band(self.deny_at, Action::Deny));
        action = action.max(band(self.revoke_at, Action::Revoke));
        for signal in assessment.signals() {
            if let Some(a) = self.signals.get(signal.as_str()) {
                action = action.max(*a);
            }
        }
        action
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Engine, Event, Weights};

    fn assess(kind: &str) -> Assessment {
        let mut engine = Engine::new(Weights::default());
        let line = format!(
            r#"{{"ts":1764547200,"kind":"{kind}","sub":"a","client_id":"web","ip":"198.51.100.1","ua":"x","sid":"s"}}"#
        );
        engine.observe(&Event::from_json(&line).unwrap())
    }

    #[test]
    fn bands_and_signals_pick_the_strongest_action() {
        let quiet = assess("login");
        let reuse = assess("refresh_reuse");
        let policy = Policy::default();
        assert_eq!(policy.action(&quiet), Action::Allow);
        assert_eq!(policy.action(&reuse), Action::Flag);
        let strict = Policy { revoke_at: Some(0.99), ..Policy::default() };
        assert_eq!(strict.action(&reuse), Action::Revoke);
        let by_signal = Policy { signals: Policy::parse_signals("refresh_reuse=deny").unwrap(), ..Policy::default() };
        assert_eq!(by_signal.action(&reuse), Action::Deny);
        let off = Policy { flag_at: None, signals: BTreeMap::new(), ..Policy::default() };
        assert_eq!(off.action(&reuse), Action::Allow);
    }

    #[test]
    fn signal_specs_parse_strictly() {
        assert_eq!(Policy::parse_signals(DEFAULT_SIGNALS).unwrap().len(), 4);
        assert!(Policy::parse_signals("phishing=flag").is_err());
        assert!(Policy::parse_signals("brute_force=ban").is_err());
        assert!(Policy::parse_signals("brute_force").is_err());
        assert_eq!(Policy::parse_signals(" ").unwrap().len(), 0);
    }
}
