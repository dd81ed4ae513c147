//! The signing-key lifecycle (DESIGN.md §3). A key is `Pending` (published in the JWKS, not yet signing),
//! `Active` (signing), `Retired` (published, verifying only), or `Revoked` (gone at once). A new key is
//! published for at least the JWKS cache lifetime before it signs. A retired key stays published until the
//! last token it signed has expired, and is then dropped.
//!
//! [`plan`] is pure: given the keys and the rules at `now`, it says which transitions are due. The store
//! applies them (with a lock or an atomic state change, so two instances never both rotate).

/// A key's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Pending,
    Active,
    Retired,
    Revoked,
}

impl KeyState {
    /// Whether the key appears in the JWKS.
    pub fn is_published(self) -> bool {
        matches!(self, KeyState::Pending | KeyState::Active | KeyState::Retired)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
            KeyState::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<KeyState> {
        [KeyState::Pending, KeyState::Active, KeyState::Retired, KeyState::Revoked]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// What the lifecycle needs to know of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub kid: String,
    pub state: KeyState,
    /// When it was created (and, unless revoked, published).
    pub created_at: i64,
    /// For a pending key made by `keys rotate`: activate at this time (at least one JWKS max-age after
    /// creation) rather than at the scheduled rotation.
    pub activate_at: Option<i64>,
    pub activated_at: Option<i64>,
    pub retired_at: Option<i64>,
}

/// Lifecycle timing, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRules {
    /// How long a key signs before its successor takes over.
    pub rotation_interval: i64,
    /// The JWKS `Cache-Control: max-age`; a new key is published at least this long before it signs.
    pub jwks_max_age: i64,
    /// The longest access-token lifetime (a retired key stays published this long after retiring).
    pub max_token_ttl: i64,
}

impl Default for KeyRules {
    fn default() -> Self {
        KeyRules { rotation_interval: 30 * 24 * 3600, jwks_max_age: 300, max_token_ttl: 3600 }
    }
}

impl KeyRules {
    /// Checks that the rules leave room for pre-publication: the interval must exceed twice the cache age.
    pub fn checked(self) -> Result<Self, &'static str> {
        if self.jwks_max_age <= 0 || self.max_token_ttl <= 0 {
            return Err("jwks_max_age and max_token_ttl must be positive");
        }
        if self.rotation_interval <= 2 * self.jwks_max_age {
            return Err("rotation_interval must be longer than twice the JWKS max-age");
        }
        Ok(self)
    }
}

/// A transition that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// No key exists at all: create one that signs at once (no verifier can have cached a JWKS yet).
    CreateActive,
    /// Create the successor, published now, signing later.
    CreatePending,
    /// The pending key has been published long enough: it signs from now.
    Activate(String),
    /// The active key stops signing (its successor was activated).
    Retire(String),
    /// The last token the retired key signed has expired: drop it from the JWKS.
    Drop(String),
}

/// The transitions due at `now`, in the order to apply them.
pub fn plan(keys: &[KeyRecord], rules: &KeyRules, now: i64) -> Vec<Transition> {
    let mut due = Vec::new();
    let active = keys.iter().filter(|k| k.state == KeyState::Active).max_by_key(|k| k.activated_at);
    let pending = keys.iter().filter(|k| k.state == KeyState::Pending).min_by_key(|k| k.created_at);

    let active_since = active.and_then(|k| k.activated_at);
    let rotation_due = active_since.is_some_and(|t| now >= t.saturating_add(rules.rotation_interval));
    match (active, pending) {
        (None, None) => due.push(Transition::CreateActive),
        // The active key is gone (revoked): sign with the successor at once rather than not at all. Guards
        // refetch the JWKS when a token names a kid they lack, so the gap is one fetch, not an outage.
        (None, Some(p)) => due.push(Transition::Activate(p.kid.clone())),
        (Some(a), Some(p))
            if (rotation_due || p.activate_at.is_some_and(|t| now >= t))
                && now >= p.created_at.saturating_add(rules.jwks_max_age) =>
        {
            due.push(Transition::Activate(p.kid.clone()));
            due.push(Transition::Retire(a.kid.clone()));
        }
        (Some(_), None) => {
            // Create the successor early enough that it has been published for the cache lifetime when
            // the rotation falls due.
            let prepublish_at =
                active_since.unwrap_or(now).saturating_add(rules.rotation_interval - rules.jwks_max_age);
            if now >= prepublish_at {
                due.push(Transition::CreatePending);
            }
        }
        _ => {}
    }
    for k in keys.iter().filter(|k| k.state == KeyState::Retired) {
        if k.retired_at.is_some_and(|t| now >= t.saturating_add(rules.max_token_ttl).saturating_add(rules.jwks_max_age))
        {
            due.push(Transition::Drop(k.kid.clone()));
        }
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: KeyRules = KeyRules { rotation_interval: 86_400, jwks_max_age: 300, max_token_ttl: 3600 };

    /// Applies the plan as a store would; dropped keys are deleted and reported as (kid, retired_at, now).
    fn apply(keys: &mut Vec<KeyRecord>, due: &[Transition], now: i64, next_kid: &mut u32) -> Vec<(String, i64, i64)> {
        let mut dropped = Vec::new();
        for t in due {
            match t {
                Transition::CreateActive | Transition::CreatePending => {
                    *next_kid += 1;
                    let active = matches!(t, Transition::CreateActive);
                    keys.push(KeyRecord {
                        kid: format!("k{next_kid}"),
                        state: if active { KeyState::Active } else { KeyState::Pending },
                        created_at: now,
                        activate_at: None,
                        activated_at: active.then_some(now),
                        retired_at: None,
                    });
                }
                Transition::Drop(kid) => {
                    let retired = keys.iter().find(|k| &k.kid == kid).and_then(|k| k.retired_at).unwrap();
                    keys.retain(|k| &k.kid != kid);
                    dropped.push((kid.clone(), retired, now));
                }
                Transition::Activate(kid) | Transition::Retire(kid) => {
                    let Some(k) = keys.iter_mut().find(|k| &k.kid == kid) else { panic!("unknown {kid}") };
                    if matches!(t, Transition::Activate(_)) {
                        k.state = KeyState::Active;
                        k.activated_at = Some(now);
                    } else {
                        k.state = KeyState::Retired;
                        k.retired_at = Some(now);
                    }
                }
            }
        }
        dropped
    }

    #[test]
    fn a_cached_jwks_always_knows_the_signing_key_within_its_max_age() {
        let mut keys = Vec::new();
        let mut next = 0;
        // (time, kids published) snapshots, and (time, signing kid) per step.
        let mut snapshots: Vec<(i64, Vec<String>)> = Vec::new();
        let mut dropped_total = 0;
        let step = 60;
        for now in (0..10 * 86_400).step_by(step as usize) {
            let due = plan(&keys, &RULES, now);
            for (kid, retired, at) in apply(&mut keys, &due, now, &mut next) {
                assert!(at >= retired + RULES.max_token_ttl, "{kid} dropped while its tokens live");
                dropped_total += 1;
            }
            let active: Vec<&KeyRecord> = keys.iter().filter(|k| k.state == KeyState::Active).collect();
            assert_eq!(active.len(), 1, "exactly one signing key at {now}");
            let published: Vec<String> =
                keys.iter().filter(|k| k.state.is_published()).map(|k| k.kid.clone()).collect();
            // A verifier whose cache was fetched up to max-age ago must know the signing key,
            // except in the bootstrap instant when nothing was published before.
            let signer = active[0].kid.clone();
            for (t, kids) in snapshots.iter().rev().take_while(|(t, _)| now - t < RULES.jwks_max_age) {
                if *t > 0 {
                    assert!(kids.contains(&signer), "at {now}, a JWKS cached at {t} lacks signer {signer}");
                }
            }
            snapshots.push((now, published));
        }
        assert!(next >= 10, "rotated daily over ten days: {next} keys");
        assert!(dropped_total >= 8, "retired keys are dropped: {dropped_total}");
        assert!(keys.len() <= 3, "no more than pending, active and a retiring key stay: {keys:?}");
    }

    #[test]
    fn rules_must_leave_room_for_prepublication() {
        assert!(KeyRules::default().checked().is_ok());
        assert!(KeyRules { rotation_interval: 600, jwks_max_age: 300, max_token_ttl: 60 }.checked().is_err());
        assert_eq!(plan(&[], &RULES, 0), vec![Transition::CreateActive]);
        let orphan = KeyRecord {
            kid: "p".into(),
            state: KeyState::Pending,
            created_at: 0,
            activate_at: None,
            activated_at: None,
            retired_at: None,
        };
        assert_eq!(plan(&[orphan], &RULES, 1), vec![Transition::Activate("p".into())], "no key left unsigned");
    }
}
