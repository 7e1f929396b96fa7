//! Circuit breaker per endpoint. Closed: calls flow; after `failures` consecutive failures the
//! breaker opens for `open_for` (or until the provider's `Retry-After`, whichever is later).
//! Open: the endpoint is skipped (`circuit_open`). When the time is up, one probe call is let
//! through (half-open); its success closes the breaker, its failure opens it again for twice as
//! long (capped).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    pub failures: u32,
    pub open_for: Duration,
    pub max_open_for: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failures: 5,
            open_for: Duration::from_secs(15),
            max_open_for: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed { consecutive: u32 },
    Open { until: Instant, backoff: Duration },
    HalfOpen { probing: bool, backoff: Duration },
}

#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    settings: BreakerSettings,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Breaker {
            state: Mutex::new(State::Closed { consecutive: 0 }),
            settings,
        }
    }

    /// May a call go to this endpoint now? In half-open state only one probe is let through.
    pub fn allow(&self, now: Instant) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return true;
        };
        match *s {
            State::Closed { .. } => true,
            State::Open { until, backoff } if now >= until => {
                *s = State::HalfOpen {
                    probing: true,
                    backoff,
                };
                true
            }
            State::Open { .. } => false,
            State::HalfOpen {
                probing: false,
                backoff,
            } => {
                *s = State::HalfOpen {
                    probing: true,
                    backoff,
                };
                true
            }
            State::HalfOpen { probing: true, .. } => false,
        }
    }

    /// Would `allow` say yes (without taking the probe)? For planning and listings.
    pub fn peek(&self, now: Instant) -> BreakerState {
        let Ok(s) = self.state.lock() else {
            return BreakerState::Closed;
        };
        match *s {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until, .. } if now >= until => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Opens a closed breaker now (the window's error rate is too high), for `open_for`.
    pub fn trip(&self, now: Instant) {
        if let Ok(mut s) = self.state.lock()
            && matches!(*s, State::Closed { .. })
        {
            *s = State::Open {
                until: now + self.settings.open_for,
                backoff: self.settings.open_for,
            };
        }
    }

    pub fn on_success(&self) {
        if let Ok(mut s) = self.state.lock() {
            *s = State::Closed { consecutive: 0 };
        }
    }

    /// A failed call; `retry_after` is the provider's own word on when to come back.
    pub fn on_failure(&self, now: Instant, retry_after: Option<Duration>) {
        let Ok(mut s) = self.state.lock() else { return };
        let cfg = self.settings;
        let open = |backoff: Duration| {
            let until = now + backoff.max(retry_after.unwrap_or_default());
            State::Open { until, backoff }
        };
        *s = match *s {
            State::Closed { consecutive } => {
                let c = consecutive + 1;
                if c >= cfg.failures || retry_after.is_some_and(|r| r >= cfg.open_for) {
                    open(cfg.open_for)
                } else {
                    State::Closed { consecutive: c }
                }
            }
            State::HalfOpen { backoff, .. } => open((backoff * 2).min(cfg.max_open_for)),
            State::Open { until, backoff } => State::Open {
                until: until.max(now + retry_after.unwrap_or_default()),
                backoff,
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_probes_and_recovers() {
        let b = Breaker::new(BreakerSettings::default());
        for _ in 0..4 {
            b.on_failure(Instant::now(), None);
            assert!(b.allow(Instant::now()));
        }
        b.on_failure(Instant::now(), None);
        assert_eq!(b.peek(Instant::now()), BreakerState::Open);
        assert!(!b.allow(Instant::now()));
        tokio::time::advance(Duration::from_secs(16)).await;
        // One probe only.
        assert!(b.allow(Instant::now()));
        assert!(!b.allow(Instant::now()));
        // The probe fails: open again, for longer.
        b.on_failure(Instant::now(), None);
        tokio::time::advance(Duration::from_secs(16)).await;
        assert!(!b.allow(Instant::now()));
        tokio::time::advance(Duration::from_secs(15)).await;
        assert!(b.allow(Instant::now()));
        b.on_success();
        assert_eq!(b.peek(Instant::now()), BreakerState::Closed);
        assert!(b.allow(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn trip_opens_a_closed_breaker() {
        let b = Breaker::new(BreakerSettings::default());
        b.trip(Instant::now());
        assert_eq!(b.peek(Instant::now()), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(16)).await;
        assert!(b.allow(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn long_retry_after_opens_at_once_and_is_honoured() {
        let b = Breaker::new(BreakerSettings::default());
        b.on_failure(Instant::now(), Some(Duration::from_secs(60)));
        assert!(!b.allow(Instant::now()));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(
            !b.allow(Instant::now()),
            "Retry-After beats the default open time"
        );
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(b.allow(Instant::now()));
    }
}
