//! The provider's limits on query calls: a rate limit per grant (a token bucket holding a
//! minute's calls, refilled evenly) kept in memory, and a daily quota per grant whose count is
//! kept in the database (tree `query_usage`), so a restart does not give a grantee a fresh day.
//! Pure decisions with the clock passed in; the service holds the state.

use std::collections::HashMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Most rate buckets kept; beyond it the full ones (idle callers) are dropped.
const MAX_BUCKETS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets by scope (a grant id, or `peer/dataset` for calls without a grant).
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    buckets: parking_lot::Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// Takes one call of `scope` at `now` under a limit of `per_minute`; false when the bucket
    /// is empty (the call is refused and takes nothing).
    pub(crate) fn take(&self, scope: &str, per_minute: u32, now: Instant) -> bool {
        let capacity = f64::from(per_minute.max(1));
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(scope) {
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.last).as_secs_f64() * capacity / 60.0 < capacity
            });
        }
        let b = buckets.entry(scope.to_string()).or_insert(Bucket {
            tokens: capacity,
            last: now,
        });
        let refill = now.duration_since(b.last).as_secs_f64() * capacity / 60.0;
        b.tokens = (b.tokens + refill).min(capacity);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The calls of one scope on one UTC day, as kept in `query_usage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DayUsage {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Calls counted that day.
    pub calls: u32,
}

/// The usage after one more call on `today` under `per_day`, or `None` when the quota is used
/// up (nothing is counted).
pub(crate) fn count_call(held: Option<DayUsage>, today: &str, per_day: u32) -> Option<DayUsage> {
    let calls = match held {
        Some(u) if u.day == today => u.calls,
        _ => 0,
    };
    (calls < per_day).then(|| DayUsage {
        day: today.to_string(),
        calls: calls + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_holds_a_minute_of_calls_and_refills_evenly() {
        let r = RateLimiter::default();
        let t0 = Instant::now();
        assert!(r.take("g", 2, t0));
        assert!(r.take("g", 2, t0));
        assert!(!r.take("g", 2, t0 + Duration::from_secs(1)));
        // Another scope has its own bucket.
        assert!(r.take("h", 2, t0));
        // Half a minute refills one call of two a minute.
        assert!(r.take("g", 2, t0 + Duration::from_secs(31)));
        assert!(!r.take("g", 2, t0 + Duration::from_secs(32)));
    }

    #[test]
    fn the_daily_quota_counts_calls_and_starts_again_each_day() {
        let u = count_call(None, "2026-12-06", 2);
        assert_eq!(u.as_ref().map(|u| u.calls), Some(1));
        let u = count_call(u, "2026-12-06", 2);
        assert_eq!(u.as_ref().map(|u| u.calls), Some(2));
        assert_eq!(count_call(u.clone(), "2026-12-06", 2), None);
        assert_eq!(count_call(u, "2026-12-07", 2).map(|u| u.calls), Some(1));
    }
}
