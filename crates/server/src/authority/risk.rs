//! The authority's side of risk scoring: events made where grants happen, actions taken through the normal
//! paths (a refused grant answers like any other refusal; a revocation goes through the revocation set and
//! the `/events` feed, so guards apply it within a second).

use portcullis_risk::{Action, Event, Kind};

use super::{unavailable, Authority};
use crate::audit;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::risk::{RiskService, Verdict};
use crate::store::RevocationKind;

/// Most events one `POST /risk/events` may carry.
pub const MAX_EVENTS_PER_REPORT: usize = 1000;

impl Authority {
    /// Scores an event about `sub` from the current requester (nothing without a risk engine or a peer
    /// address), and records in the audit log any verdict beyond "allow".
    pub(super) async fn risk(
        &self,
        kind: Kind,
        sub: &str,
        client_id: &str,
        sid: Option<&str>,
        now: i64,
    ) -> Option<Verdict> {
        let risk = self.risk.as_ref()?;
        let mut event = RiskService::event(kind, sub, client_id, now)?;
        event.sid = sid.map(str::to_owned);
        let mut verdict = risk.assess(&event).await;
        if matches!(kind, Kind::LoginFailure | Kind::RefreshReuse) {
            // Already refused (and a reused family already revoked): there is nothing more to deny.
            verdict.action = verdict.action.min(Action::Flag);
        }
        self.audit_verdict(&event, &verdict).await;
        Some(verdict)
    }

    async fn audit_verdict(&self, event: &Event, verdict: &Verdict) {
        let name = match verdict.action {
            Action::Allow => return,
            Action::Flag => "risk_flagged",
            Action::Deny => "risk_denied",
            Action::Revoke => "risk_revoked",
        };
        let mut record = audit::event(event.ts as i64, name);
        record.subject = Some(event.sub.clone());
        record.client_id = Some(event.client_id.clone());
        record.jti = event.jti.clone();
        record.detail = serde_json::json!({
            "kind": event.kind.as_str(), "sid": event.sid, "ip": event.ip.to_string(),
            "score": (f64::from(verdict.assessment.score) * 1e4).round() / 1e4,
            "reasons": verdict.reasons, "action": verdict.action.as_str(),
        })
        .to_string();
        if let Err(e) = self.audit.record(record).await {
            // The decision stands; the failure is logged and counted like any store failure.
            let _ = unavailable(e);
        }
    }

    /// Token uses reported by a guard (`POST /risk/events`): each is scored, and acted on through the
    /// revocation path: "deny" revokes the token (`jti`), "revoke" the session (`sid`, else the token).
    /// Returns how many events were scored and how many revocations followed.
    pub async fn report_token_uses(&self, events: Vec<Event>) -> Result<(usize, usize), OAuthError> {
        let Some(risk) = self.risk.as_ref() else {
            return Err(OAuthError::new(ErrorCode::InvalidRequest, "risk scoring is turned off on this server"));
        };
        if events.len() > MAX_EVENTS_PER_REPORT {
            return Err(OAuthError::new(ErrorCode::InvalidRequest, "too many events in one report"));
        }
        if events.iter().any(|e| e.kind != Kind::TokenUse) {
            return Err(OAuthError::new(ErrorCode::InvalidRequest, "guards report token_use events only"));
        }
        let (scored, mut revoked) = (events.len(), 0);
        for event in events {
            let verdict = risk.assess(&event).await;
            self.audit_verdict(&event, &verdict).await;
            let target = match (verdict.action, event.sid.as_deref(), event.jti.as_deref()) {
                (Action::Revoke, Some(sid), _) => Some((RevocationKind::Session, sid)),
                (Action::Revoke | Action::Deny, _, Some(jti)) => Some((RevocationKind::Token, jti)),
                _ => None,
            };
            if let Some((kind, value)) = target {
                let by = serde_json::json!("risk");
                self.revoke_by_admin(kind, value, "risk", by).await?;
                revoked += 1;
            }
        }
        Ok((scored, revoked))
    }
}
