//! The authority: grants, sessions and revocation with the store, the keys and the clock in hand. It speaks
//! OAuth (RFC names, [`OAuthError`]) and knows no HTTP; the handlers in `http` stay thin around it.

mod cache;
mod client;
mod code_flow;
mod dpop;
mod grants;
mod passwords;
mod resource;
mod risk;
mod tokens;

use std::sync::Arc;

use portcullis_jose::UnixTime;

pub use cache::AccessFacts;
pub use client::Authenticated;
pub use grants::{Issued, TokenRequest};
pub use passwords::PasswordPool;
pub use resource::{parse_authorization, ResourceError, ResourceRequest};
pub use risk::MAX_EVENTS_PER_REPORT;
pub use tokens::{revoke_user, Introspection};

use crate::audit::Audit;
use crate::clock::Clock;
use crate::config::Settings;
use crate::oauth::dpop::{DpopRules, Nonces};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::lockout::LockoutRules;
use crate::oauth::refresh::RefreshRules;
use crate::oauth::session_csrf::SessionCsrf;
use crate::revocation::RevocationSet;
use crate::secrets::PasswordCost;
use crate::signing::KeyManager;
use crate::store::{AuditEvent, Store, StoreError};
use crate::vault::{MasterKey, VaultError};

/// The rules the authority applies, from the validated configuration.
#[derive(Debug, Clone)]
pub struct Rules {
    pub issuer: String,
    pub access_token_ttl: u64,
    pub refresh: RefreshRules,
    pub lockout: LockoutRules,
    pub password_cost: PasswordCost,
    pub dpop: DpopRules,
    /// Whether the tamper-evident audit ledger is kept.
    pub audit_ledger: bool,
}

impl Rules {
    pub fn from_settings(s: &Settings) -> Rules {
        Rules {
            issuer: s.issuer.clone(),
            access_token_ttl: s.access_token_ttl,
            refresh: RefreshRules {
                absolute_ttl: s.refresh_absolute_ttl as i64,
                idle_ttl: s.refresh_idle_ttl as i64,
                ..RefreshRules::default()
            },
            lockout: LockoutRules::default(),
            password_cost: PasswordCost::OWASP,
            dpop: DpopRules { max_age: s.dpop_proof_max_age, require_nonce: s.dpop_require_nonce },
            audit_ledger: s.audit_head_interval.is_some(),
        }
    }

    /// The token endpoint URL: an audience client assertions may name.
    pub fn token_endpoint(&self) -> String {
        format!("{}/oauth2/token", self.issuer)
    }
}

/// The secrets every instance derives from the master key (HKDF, one label each), so that what one instance
/// issues (DPoP nonces, session CSRF tokens) every other accepts, with nothing stored.
#[derive(Debug)]
pub struct DerivedSecrets {
    pub nonces: Nonces,
    pub session_csrf: SessionCsrf,
}

impl DerivedSecrets {
    pub fn from_master(master: &MasterKey) -> Result<Self, VaultError> {
        let nonce_secret = master.derive_secret(crate::oauth::dpop::NONCE_KEY_PURPOSE)?;
        let csrf_secret = master.derive_secret(crate::oauth::session_csrf::KEY_PURPOSE)?;
        Ok(DerivedSecrets {
            nonces: Nonces::new(nonce_secret.as_ref()),
            session_csrf: SessionCsrf::new(csrf_secret.as_ref()),
        })
    }
}

/// Everything a grant needs. Shared by every request (`Arc`).
#[derive(Debug)]
pub struct Authority {
    pub store: Arc<dyn Store>,
    pub keys: KeyManager,
    pub revocations: RevocationSet,
    pub audit: Audit,
    pub clock: Arc<dyn Clock>,
    pub passwords: PasswordPool,
    pub rules: Rules,
    /// DPoP nonces, keyed from the master key so that every instance accepts every instance's.
    pub nonces: Nonces,
    /// CSRF tokens of cookie-mode sessions, keyed from the master key likewise.
    pub session_csrf: SessionCsrf,
    /// The risk engine, when scoring is on.
    pub risk: Option<Arc<crate::risk::RiskService>>,
    pub(crate) clients: cache::Clients,
    pub(crate) verified: cache::VerifiedTokens,
}

impl Authority {
    /// Assembles an authority; the caches start empty.
    pub fn new(
        store: Arc<dyn Store>,
        keys: KeyManager,
        audit: Audit,
        clock: Arc<dyn Clock>,
        passwords: PasswordPool,
        rules: Rules,
        secrets: DerivedSecrets,
    ) -> Authority {
        let DerivedSecrets { nonces, session_csrf } = secrets;
        Authority {
            store,
            keys,
            revocations: RevocationSet::default(),
            audit,
            clock,
            passwords,
            rules,
            nonces,
            session_csrf,
            risk: None,
            clients: cache::Clients::default(),
            verified: cache::VerifiedTokens::default(),
        }
    }

    /// Scores logins, refreshes and reported token uses with `risk`, and acts on its verdicts.
    pub fn with_risk(mut self, risk: Arc<crate::risk::RiskService>) -> Authority {
        self.risk = Some(risk);
        self
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// Records an audit event; the request fails if it cannot be stored (no unaudited issuance).
    async fn audit(&self, event: AuditEvent) -> Result<(), OAuthError> {
        self.audit.record(event).await.map_err(unavailable)
    }
}

/// A store failure as the client sees it: 503 `temporarily_unavailable`, with the cause in the log only.
pub(crate) fn unavailable(e: StoreError) -> OAuthError {
    tracing::error!(error = %e, "store call failed");
    metrics::counter!("portcullis_store_errors_total").increment(1);
    OAuthError::new(ErrorCode::TemporarilyUnavailable, "the service is temporarily unavailable; retry shortly")
}
