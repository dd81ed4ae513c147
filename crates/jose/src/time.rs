//! Time as a value. The crate never reads a clock: callers pass `now` (STYLE.md, "time is a parameter").

/// Seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(pub i64);

impl UnixTime {
    /// The largest NumericDate accepted (9999-12-31T23:59:59Z).
    pub const MAX: i64 = 253_402_300_799;

    pub fn from_secs(secs: i64) -> Self {
        UnixTime(secs)
    }

    pub fn as_secs(self) -> i64 {
        self.0
    }

    /// The wall clock, for the edges of a program (CLIs, servers). Library code takes `now` as an argument.
    #[allow(clippy::disallowed_methods)] // this is the clock adapter
    pub fn now() -> Self {
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        UnixTime(i64::try_from(secs).unwrap_or(i64::MAX))
    }
}
