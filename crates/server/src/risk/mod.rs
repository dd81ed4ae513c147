//! The risk engine in the server: logins, failed logins, refreshes, refresh reuse and guards' token uses are
//! scored as they happen; the configured actions follow (flag, deny, revoke). Profiles are loaded from the store
//! on a subject's first event, written back every few seconds, and dropped from memory when idle, so
//! instances share them (the latest write wins). The population sketch and the abuse counters are each
//! instance's own, learnt from its traffic.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use portcullis_risk::{Action, Assessment, Engine, Event, Kind, Policy, Profile, Weights};

mod webhook;

use crate::config::RiskSettings;
use crate::store::{Store, StoreError};

/// Who is asking, as the HTTP layer saw it: set for each request (a task-local), read where events are made.
#[derive(Debug, Clone, Default)]
pub struct Requester {
    pub ip: Option<IpAddr>,
    pub user_agent: String,
}

tokio::task_local! {
    /// The current request's [`Requester`].
    pub static REQUESTER: Requester;
}

/// The current request's requester, or an empty one outside a request (CLI, background tasks).
pub fn requester() -> Requester {
    REQUESTER.try_with(Clone::clone).unwrap_or_default()
}

/// Subjects idle this long are written back and dropped from memory.
const IDLE_SECONDS: i64 = 900;

/// The engine, its policy, and the bookkeeping that shares profiles through the store.
#[derive(Debug)]
pub struct RiskService {
    engine: Mutex<Engine>,
    policy: Policy,
    store: Arc<dyn Store>,
    /// Subjects in memory, with when each was last scored; those scored since the last flush.
    touched: Mutex<(HashMap<String, i64>, HashSet<String>)>,
    webhook: Option<webhook::Webhook>,
}

/// An event's score and what to do about it.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub assessment: Assessment,
    pub action: Action,
    /// The reasons in words, when the action is more than "allow" (empty otherwise).
    pub reasons: Vec<String>,
}

impl RiskService {
    /// The service, with its GeoIP databases read (a file that cannot be read or is not one is an error).
    pub fn new(settings: &RiskSettings, store: Arc<dyn Store>) -> Result<RiskService, String> {
        let mut geo = portcullis_risk::GeoIp::default();
        for path in &settings.geoip {
            let bytes = std::fs::read(path).map_err(|e| format!("risk_geoip {}: {e}", path.display()))?;
            geo.add(bytes).map_err(|e| format!("risk_geoip {}: {e}", path.display()))?;
        }
        Ok(RiskService {
            engine: Mutex::new(Engine::new(Weights::default()).with_geoip(geo)),
            policy: settings.policy.clone(),
            store,
            touched: Mutex::new((HashMap::new(), HashSet::new())),
            webhook: settings.webhook.as_deref().map(webhook::Webhook::new),
        })
    }

    /// An event about `sub` now, from the current requester.
    pub fn event(kind: Kind, sub: &str, client_id: &str, now: i64) -> Option<Event> {
        let who = requester();
        let ip = who.ip?;
        let ua = portcullis_risk::clip_user_agent(&who.user_agent).to_owned();
        let event = Event {
            ts: now as f64,
            kind,
            sub: sub.to_owned(),
            client_id: client_id.to_owned(),
            ip,
            ua,
            jti: None,
            sid: None,
            label: None,
            attack: None,
        };
        event.check().is_ok().then_some(event)
    }

    /// Scores `event` (loading the subject's stored profile first if it is not in memory) and decides.
    pub async fn assess(&self, event: &Event) -> Verdict {
        let known = self.lock_engine().profile(&event.sub).is_some();
        if !known {
            self.load(&event.sub).await;
        }
        let (assessment, in_memory) = {
            let mut engine = self.lock_engine();
            let assessment = engine.observe(event);
            (assessment, engine.profile(&event.sub).is_some())
        };
        let action = self.policy.action(&assessment);
        if in_memory {
            // Every profile in memory is followed (so it leaves when idle); a failed login changes none.
            let mut touched = self.lock_touched();
            touched.0.insert(event.sub.clone(), event.ts as i64);
            if event.kind != Kind::LoginFailure {
                touched.1.insert(event.sub.clone());
            }
        }
        metrics::counter!("portcullis_risk_events_total", "kind" => event.kind.as_str(), "action" => action.as_str())
            .increment(1);
        metrics::histogram!("portcullis_risk_score").record(f64::from(assessment.score));
        let mut reasons = Vec::new();
        if action > Action::Allow {
            reasons = assessment.explain();
            tracing::warn!(kind = event.kind.as_str(), sub = %event.sub, client_id = %event.client_id,
                jti = ?event.jti, sid = ?event.sid, score = assessment.score, action = action.as_str(),
                reasons = ?reasons, "risk: {action}");
            if let Some(webhook) = &self.webhook {
                webhook.send(event, &assessment, action, &reasons);
            }
        }
        Verdict { assessment, action, reasons }
    }

    async fn load(&self, sub: &str) {
        match self.store.risk_profile(sub).await {
            Ok(Some(bytes)) => match Profile::from_bytes(&bytes) {
                Some(profile) => {
                    let mut engine = self.lock_engine();
                    if engine.profile(sub).is_none() {
                        engine.load_profile(sub, profile);
                    }
                }
                None => tracing::warn!(sub, "risk: a stored profile of another version was ignored"),
            },
            Ok(None) => {}
            Err(e) => {
                // Scoring goes on with what is in memory; the request is not failed for it.
                metrics::counter!("portcullis_risk_store_errors_total").increment(1);
                tracing::warn!(error = %e, "risk: could not load a profile");
            }
        }
    }

    /// Writes the profiles scored since the last flush, and drops those idle for [`IDLE_SECONDS`] from
    /// memory. Returns how many were written; on a store error they stay dirty for the next try.
    pub async fn flush(&self, now: i64) -> Result<usize, StoreError> {
        let dirty: Vec<String> = std::mem::take(&mut self.lock_touched().1).into_iter().collect();
        let profiles: Vec<(String, Vec<u8>)> = {
            let engine = self.lock_engine();
            dirty.iter().filter_map(|s| engine.profile(s).map(|p| (s.clone(), p.to_bytes()))).collect()
        };
        if let Err(e) = self.store.save_risk_profiles(&profiles, now).await {
            self.lock_touched().1.extend(dirty);
            return Err(e);
        }
        let idle: Vec<String> = {
            let mut touched = self.lock_touched();
            let idle: Vec<String> = touched
                .0
                .iter()
                .filter(|(s, at)| now - **at > IDLE_SECONDS && !touched.1.contains(*s))
                .map(|(s, _)| s.clone())
                .collect();
            for s in &idle {
                touched.0.remove(s);
            }
            idle
        };
        let mut engine = self.lock_engine();
        for s in &idle {
            engine.remove_profile(s);
        }
        metrics::gauge!("portcullis_risk_subjects_in_memory").set(engine.subjects() as f64);
        Ok(profiles.len())
    }

    fn lock_engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        // A panic while holding the lock cannot leave the engine half-updated in a way that matters more than
        // losing scoring; carry on with the data.
        self.engine.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_touched(&self) -> std::sync::MutexGuard<'_, (HashMap<String, i64>, HashSet<String>)> {
        self.touched.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Writes risk profiles back every `interval` seconds until the process ends.
pub fn spawn_flush(risk: Arc<RiskService>, clock: Arc<dyn crate::clock::Clock>, interval: std::time::Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = risk.flush(clock.now().as_secs()).await {
                metrics::counter!("portcullis_risk_store_errors_total").increment(1);
                tracing::warn!(error = %e, "risk: could not store profiles; will retry");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    fn event(ts: f64, kind: &str) -> Event {
        let line = format!(
            r#"{{"ts":{ts},"kind":"{kind}","sub":"alice","client_id":"web","ip":"198.51.100.7","ua":"curl/8","sid":"s1"}}"#
        );
        Event::from_json(&line).unwrap()
    }

    #[tokio::test]
    async fn profiles_are_written_back_and_idle_ones_leave_memory() {
        let dir = tempfile::Builder::new().prefix("portcullis-risk-service-").tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&format!("sqlite://{}/p.db", dir.path().display())).await.unwrap());
        let settings = RiskSettings { policy: Policy::default(), webhook: None, geoip: Vec::new() };
        let risk = RiskService::new(&settings, Arc::clone(&store)).unwrap();

        risk.assess(&event(1000.0, "login")).await;
        assert_eq!(risk.flush(1000).await.unwrap(), 1);
        assert!(store.risk_profile("alice").await.unwrap().is_some());
        assert_eq!(risk.flush(1001).await.unwrap(), 0, "nothing new, nothing written");
        // A failed login changes no profile, so it writes nothing.
        risk.assess(&event(1100.0, "login_failure")).await;
        assert_eq!(risk.flush(1100).await.unwrap(), 0);
        // Idle for 15 minutes: gone from memory...
        risk.flush(1100 + IDLE_SECONDS + 1).await.unwrap();
        assert_eq!(risk.lock_engine().subjects(), 0);
        // ...and read back from the store on the subject's next event (a second visit: two sessions counted).
        risk.assess(&event(90_000.0, "refresh")).await;
        assert_eq!(risk.lock_engine().profile("alice").map(|p| p.sessions), Some(2.0));
    }
}
