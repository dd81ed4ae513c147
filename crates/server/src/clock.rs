//! The one place the server reads the wall clock. Everything else takes `now` from a [`Clock`], so tests can
//! move time (a key rotation, a lockout, a token expiry) without sleeping.

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};

use portcullis_jose::UnixTime;

pub trait Clock: Send + Sync + Debug {
    fn now(&self) -> UnixTime;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        UnixTime::now()
    }
}

/// The wall clock shifted by an offset that tests can advance: time moves on by itself, and jumps on demand.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    offset: AtomicI64,
}

impl ShiftedClock {
    pub fn advance(&self, seconds: i64) {
        self.offset.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> UnixTime {
        UnixTime::from_secs(UnixTime::now().as_secs() + self.offset.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shifted_clock_jumps_forward() {
        let clock = ShiftedClock::default();
        let before = clock.now().as_secs();
        clock.advance(3600);
        assert!(clock.now().as_secs() >= before + 3600);
        assert!(SystemClock.now().as_secs() > 1_700_000_000);
    }
}
