//! Per-account lockout after failed logins (DESIGN.md §4: the counter lives in the database and is updated
//! atomically; this module only says how long an account with `failures` consecutive failures stays locked).
//! The first few failures cost nothing; then the lock doubles with each failure, up to a ceiling.

/// The schedule, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutRules {
    /// Failures allowed before the first lock.
    pub free_failures: u32,
    /// The first lock's length.
    pub base: i64,
    /// The longest lock.
    pub max: i64,
}

impl Default for LockoutRules {
    fn default() -> Self {
        LockoutRules { free_failures: 5, base: 30, max: 3600 }
    }
}

impl LockoutRules {
    /// How long the account is locked after its `failures`-th consecutive failure (0 = not locked).
    pub fn lock_seconds(&self, failures: u32) -> i64 {
        if failures <= self.free_failures {
            return 0;
        }
        let doublings = (failures - self.free_failures - 1).min(32);
        self.base.saturating_mul(1i64 << doublings).min(self.max)
    }

    /// Whether a login at `now` is refused, given the last failure's time and the failure count.
    pub fn is_locked(&self, failures: u32, last_failure_at: i64, now: i64) -> bool {
        now < last_failure_at.saturating_add(self.lock_seconds(failures))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_double_after_the_free_failures_up_to_the_ceiling() {
        let r = LockoutRules::default();
        assert_eq!((0..=5).map(|f| r.lock_seconds(f)).sum::<i64>(), 0);
        assert_eq!(r.lock_seconds(6), 30);
        assert_eq!(r.lock_seconds(7), 60);
        assert_eq!(r.lock_seconds(8), 120);
        assert_eq!(r.lock_seconds(12), 1920);
        assert_eq!(r.lock_seconds(13), 3600);
        assert_eq!(r.lock_seconds(u32::MAX), 3600);
        assert!(r.is_locked(6, 1000, 1029));
        assert!(!r.is_locked(6, 1000, 1030));
        assert!(!r.is_locked(5, 1000, 1000));
    }
}
