//! Time for the cache: Unix milliseconds derived from Tokio's monotonic clock, so paused-time tests
//! drive expiry, and stores shared between processes can compare wall-clock expiries.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    base: Instant,
    base_unix_ms: u64,
}

impl Clock {
    pub(crate) fn new() -> Self {
        let base_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Self {
            base: Instant::now(),
            base_unix_ms,
        }
    }

    /// Milliseconds since the Unix epoch, advancing with Tokio's clock.
    #[inline]
    pub(crate) fn now_ms(&self) -> u64 {
        self.base_unix_ms + self.base.elapsed().as_millis() as u64
    }

    /// The Tokio instant at which the clock reads `ms`.
    pub(crate) fn instant_at(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms.saturating_sub(self.base_unix_ms))
    }

    pub(crate) fn to_system_time(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    pub(crate) fn from_system_time(time: SystemTime) -> u64 {
        time.duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}
