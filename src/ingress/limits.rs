//! Rate limits per key: GCRA (governor), requests per minute with a burst of 10 seconds' worth
//! (at least 1), so a key at 240 rpm may send 40 calls at once and then 4 a second. Limiter state
//! lives outside the config snapshot, keyed by key id, so a reload keeps it (a changed limit
//! starts a fresh limiter). Every response to an authenticated call carries `X-RateLimit-Limit`,
//! `-Remaining` and `-Reset`; a refused call is 429 `rate_limit_exceeded` with `Retry-After`.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::config::runtime::ApiKey;
use crate::error::{ErrorKind, GatewayError};

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

struct KeyLimiter {
    rpm: u32,
    burst: u32,
    limiter: Limiter,
}

/// What the rate-limit headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the full burst is available again.
    pub reset_secs: u64,
}

pub struct RateLimits {
    keys: RwLock<HashMap<String, Arc<KeyLimiter>>>,
    clock: DefaultClock,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            keys: RwLock::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }
}

/// The burst a limit allows: 10 seconds' worth of requests, at least one.
pub fn burst_for(rpm: u32) -> u32 {
    (rpm / 6).max(1)
}

impl RateLimits {
    fn limiter(&self, key: &ApiKey) -> Option<Arc<KeyLimiter>> {
        let rpm = key.rpm?;
        if let Ok(m) = self.keys.read()
            && let Some(l) = m.get(&key.id)
            && l.rpm == rpm
        {
            return Some(l.clone());
        }
        let burst = burst_for(rpm);
        let quota = Quota::per_minute(NonZeroU32::new(rpm)?).allow_burst(NonZeroU32::new(burst)?);
        let fresh = Arc::new(KeyLimiter {
            rpm,
            burst,
            limiter: RateLimiter::direct(quota).with_middleware::<StateInformationMiddleware>(),
        });
        let mut m = match self.keys.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let entry = m.entry(key.id.clone()).or_insert_with(|| fresh.clone());
        if entry.rpm != rpm {
            *entry = fresh;
        }
        Some(entry.clone())
    }

    /// Takes one request from the key's allowance. `Ok(None)`: the key has no limit.
    pub fn check(&self, key: &ApiKey) -> Result<Option<RateState>, (GatewayError, RateState)> {
        let Some(l) = self.limiter(key) else {
            return Ok(None);
        };
        let per_request = 60.0 / f64::from(l.rpm);
        match l.limiter.check() {
            Ok(snap) => {
                let remaining = snap.remaining_burst_capacity();
                let reset =
                    (f64::from(l.burst - remaining.min(l.burst)) * per_request).ceil() as u64;
                Ok(Some(RateState {
                    limit: l.rpm,
                    remaining,
                    reset_secs: reset,
                }))
            }
            Err(not_until) => {
                let wait: Duration = not_until.wait_time_from(self.clock.now());
                let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                let state = RateState {
                    limit: l.rpm,
                    remaining: 0,
                    reset_secs: (f64::from(l.burst) * per_request).ceil() as u64,
                };
                let e = GatewayError::new(
                    ErrorKind::RateLimited,
                    format!(
                        "rate limit of {} requests per minute (burst {}) reached for this key; retry in {secs} s",
                        l.rpm, l.burst
                    ),
                )
                .with_retry_after(secs);
                Err((e, state))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(rpm: Option<u32>) -> ApiKey {
        ApiKey {
            id: "k".into(),
            hash: [0; 32],
            models: None,
            enabled: true,
            hedge: false,
            rpm,
        }
    }

    #[test]
    fn burst_then_refusal_with_retry_after() {
        let rl = RateLimits::default();
        let k = key(Some(60)); // burst 10, one a second
        for i in 0..10 {
            let s = rl.check(&k).unwrap().unwrap();
            assert_eq!(s.limit, 60);
            assert_eq!(s.remaining, 9 - i);
        }
        let (e, s) = rl.check(&k).unwrap_err();
        assert_eq!(e.status(), 429);
        assert_eq!(e.retry_after, Some(1));
        assert_eq!(s.remaining, 0);
        assert!(rl.check(&key(None)).unwrap().is_none());
        // A changed limit starts a fresh limiter.
        assert!(rl.check(&key(Some(120))).is_ok());
    }
}
