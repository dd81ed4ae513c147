//! Refresh-token rotation rules (DESIGN.md §3; RFC 9700 §4.14.2). Every use rotates the token. A token
//! presented again after its successor was issued means two parties hold it. Inside a short grace period that
//! is taken for concurrent tabs and refused without harm; after it, the whole family is revoked, with the
//! access tokens it produced. Families also end at an absolute lifetime, and tokens at an idle one.
//!
//! This module only decides. The store applies the decision in one atomic step (compare-and-set on the
//! token's `used_at`), so two concurrent refreshes yield exactly one `Rotate`.

/// A stored refresh token, as the store read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshState {
    /// When the family began (the login).
    pub family_created_at: i64,
    /// When this token was issued.
    pub issued_at: i64,
    /// When this token was exchanged for its successor, if it was.
    pub used_at: Option<i64>,
    /// The family was revoked (logout, reuse, password change, admin action).
    pub family_revoked: bool,
}

/// Lifetimes and the concurrency allowance, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshRules {
    pub absolute_ttl: i64,
    pub idle_ttl: i64,
    pub reuse_grace: i64,
}

impl Default for RefreshRules {
    fn default() -> Self {
        RefreshRules { absolute_ttl: 30 * 24 * 3600, idle_ttl: 7 * 24 * 3600, reuse_grace: 10 }
    }
}

/// Why an expired token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Absolute,
    Idle,
}

/// What to do with a presented refresh token. Everything but `Rotate` is answered `invalid_grant`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Issue a successor and mark this one used (atomically).
    Rotate,
    /// Used moments ago (concurrent requests): refuse, keep the family.
    RefuseDuplicate,
    /// Used before, outside the grace period: revoke the family and its access tokens, and raise an alarm.
    RevokeFamily,
    /// The family was already revoked.
    Revoked,
    Expired(Expiry),
}

/// Decides what a refresh presented at `now` leads to.
pub fn decide(state: &RefreshState, rules: &RefreshRules, now: i64) -> Decision {
    if state.family_revoked {
        return Decision::Revoked;
    }
    // Reuse is judged before expiry: a stolen token replayed late must still burn its family.
    if let Some(used_at) = state.used_at {
        return if now.saturating_sub(used_at) <= rules.reuse_grace {
            Decision::RefuseDuplicate
        } else {
            Decision::RevokeFamily
        };
    }
    if now >= state.family_created_at.saturating_add(rules.absolute_ttl) {
        return Decision::Expired(Expiry::Absolute);
    }
    if now >= state.issued_at.saturating_add(rules.idle_ttl) {
        return Decision::Expired(Expiry::Idle);
    }
    Decision::Rotate
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: RefreshRules = RefreshRules { absolute_ttl: 1000, idle_ttl: 100, reuse_grace: 10 };
    const FRESH: RefreshState =
        RefreshState { family_created_at: 0, issued_at: 500, used_at: None, family_revoked: false };

    #[test]
    fn an_unused_token_rotates_until_it_expires() {
        assert_eq!(decide(&FRESH, &RULES, 550), Decision::Rotate);
        assert_eq!(decide(&FRESH, &RULES, 599), Decision::Rotate);
        assert_eq!(decide(&FRESH, &RULES, 600), Decision::Expired(Expiry::Idle));
        let late = RefreshState { issued_at: 950, ..FRESH };
        assert_eq!(decide(&late, &RULES, 1000), Decision::Expired(Expiry::Absolute));
    }

    #[test]
    fn reuse_is_refused_inside_the_grace_period_and_burns_the_family_after_it() {
        let used = RefreshState { used_at: Some(520), ..FRESH };
        assert_eq!(decide(&used, &RULES, 520), Decision::RefuseDuplicate);
        assert_eq!(decide(&used, &RULES, 530), Decision::RefuseDuplicate);
        assert_eq!(decide(&used, &RULES, 531), Decision::RevokeFamily);
        // Even long after expiry, a replay of a used token is theft, not mere expiry.
        assert_eq!(decide(&used, &RULES, 5000), Decision::RevokeFamily);
        let revoked = RefreshState { family_revoked: true, ..used };
        assert_eq!(decide(&revoked, &RULES, 531), Decision::Revoked);
        assert_eq!(decide(&RefreshState { family_revoked: true, ..FRESH }, &RULES, 550), Decision::Revoked);
    }
}
