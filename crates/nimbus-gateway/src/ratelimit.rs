//! Per-route token-bucket throttling (API Gateway's rate + burst model).
//!
//! A bucket holds up to `burst` tokens and refills at `rate` tokens per
//! second; each request takes one, and an empty bucket means 429. Each bucket
//! has its own small mutex held for a few arithmetic operations, so routes
//! never contend with each other and the lock is uncontended in practice.
//! The set of routes is fixed when the limiter is built (configuration is
//! immutable; a reload builds a new limiter), so lookups need no lock.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

use crate::apigw::gateway_error;

/// Body of a throttled answer, as API Gateway sends it.
pub const TOO_MANY_REQUESTS_BODY: &str = r#"{"message":"Too Many Requests"}"#;

/// A rate limit: steady `rate_per_sec` with bursts up to `burst` requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second.
    pub rate_per_sec: f64,
    /// Bucket capacity (at least 1 request is always allowed on a full bucket).
    pub burst: u32,
}

/// The request must be refused with 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// When a token will be available again.
    pub retry_after: Duration,
}

impl Throttled {
    /// 429 `{"message":"Too Many Requests"}` with `Retry-After` (whole
    /// seconds, rounded up).
    pub fn response(&self, request_id: &str) -> Response<Bytes> {
        let mut r = gateway_error(
            StatusCode::TOO_MANY_REQUESTS,
            TOO_MANY_REQUESTS_BODY,
            request_id,
        );
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        r
    }
}

#[derive(Debug)]
struct BucketState {
    tokens: f64,
    last: Instant,
}

/// One token bucket.
#[derive(Debug)]
pub struct TokenBucket {
    limit: RateLimit,
    state: Mutex<BucketState>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: RateLimit) -> Self {
        Self::new_at(limit, Instant::now())
    }

    fn new_at(limit: RateLimit, now: Instant) -> Self {
        Self {
            limit,
            state: Mutex::new(BucketState {
                tokens: f64::from(limit.burst.max(1)),
                last: now,
            }),
        }
    }

    /// Takes one token now.
    pub fn try_acquire(&self) -> Result<(), Throttled> {
        self.try_acquire_at(Instant::now())
    }

    /// Takes one token at `now` (time is a parameter so tests need no sleeps).
    pub fn try_acquire_at(&self, now: Instant) -> Result<(), Throttled> {
        let capacity = f64::from(self.limit.burst.max(1));
        let rate = self.limit.rate_per_sec.max(0.0);
        // A poisoned lock only means another thread panicked between two float
        // updates; the state is still a number, keep going.
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(s.last).as_secs_f64();
        s.tokens = (s.tokens + elapsed * rate).min(capacity);
        s.last = s.last.max(now);
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            return Ok(());
        }
        let missing = 1.0 - s.tokens;
        let retry_after = if rate > 0.0 {
            Duration::from_secs_f64(missing / rate)
        } else {
            Duration::from_secs(60)
        };
        Err(Throttled { retry_after })
    }
}

/// Buckets per route key.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: HashMap<String, TokenBucket>,
}

impl RateLimiter {
    /// One bucket per `(route key, limit)`; routes not listed are unlimited.
    pub fn new(limits: impl IntoIterator<Item = (String, RateLimit)>) -> Self {
        Self {
            buckets: limits
                .into_iter()
                .map(|(route, limit)| (route, TokenBucket::new(limit)))
                .collect(),
        }
    }

    /// Takes a token from `route_key`'s bucket, if it has one.
    pub fn check(&self, route_key: &str) -> Result<(), Throttled> {
        match self.buckets.get(route_key) {
            Some(b) => b.try_acquire(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let b = TokenBucket::new_at(
            RateLimit {
                rate_per_sec: 2.0,
                burst: 3,
            },
            t0,
        );
        for _ in 0..3 {
            assert!(b.try_acquire_at(t0).is_ok());
        }
        let err = b.try_acquire_at(t0).unwrap_err();
        assert_eq!(err.retry_after, Duration::from_millis(500));
        // Half a second later: exactly one token.
        let t1 = t0 + Duration::from_millis(500);
        assert!(b.try_acquire_at(t1).is_ok());
        assert!(b.try_acquire_at(t1).is_err());
        // Long idle: refills only up to the burst.
        let t2 = t1 + Duration::from_secs(100);
        for _ in 0..3 {
            assert!(b.try_acquire_at(t2).is_ok());
        }
        assert!(b.try_acquire_at(t2).is_err());
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let b = TokenBucket::new_at(
            RateLimit {
                rate_per_sec: 1.0,
                burst: 1,
            },
            t0,
        );
        assert!(b.try_acquire_at(t0).is_ok());
        assert!(b.try_acquire_at(t0 - Duration::from_secs(5)).is_err());
        assert!(b.try_acquire_at(t0 + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn zero_rate_and_zero_burst() {
        let t0 = Instant::now();
        let b = TokenBucket::new_at(
            RateLimit {
                rate_per_sec: 0.0,
                burst: 0,
            },
            t0,
        );
        assert!(b.try_acquire_at(t0).is_ok(), "burst 0 still admits one");
        let err = b
            .try_acquire_at(t0 + Duration::from_secs(3600))
            .unwrap_err();
        assert_eq!(err.retry_after, Duration::from_secs(60));
    }

    #[test]
    fn limiter_is_per_route() {
        let l = RateLimiter::new([
            (
                "GET /a".to_owned(),
                RateLimit {
                    rate_per_sec: 0.001,
                    burst: 1,
                },
            ),
            (
                "GET /b".to_owned(),
                RateLimit {
                    rate_per_sec: 0.001,
                    burst: 2,
                },
            ),
        ]);
        assert!(l.check("GET /a").is_ok());
        assert!(l.check("GET /a").is_err());
        assert!(l.check("GET /b").is_ok());
        assert!(l.check("GET /b").is_ok());
        assert!(l.check("GET /b").is_err());
        for _ in 0..100 {
            assert!(l.check("GET /unlimited").is_ok());
        }
    }

    #[test]
    fn concurrent_acquires_never_exceed_burst() {
        let b = Arc::new(TokenBucket::new(RateLimit {
            rate_per_sec: 0.0001,
            burst: 50,
        }));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let b = Arc::clone(&b);
                std::thread::spawn(move || (0..100).filter(|_| b.try_acquire().is_ok()).count())
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 50);
    }

    #[test]
    fn throttled_response() {
        let r = Throttled {
            retry_after: Duration::from_millis(1200),
        }
        .response("q");
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "2");
        assert_eq!(r.body().as_ref(), TOO_MANY_REQUESTS_BODY.as_bytes());
        let r = Throttled {
            retry_after: Duration::ZERO,
        }
        .response("q");
        assert_eq!(r.headers()["retry-after"], "1");
    }
}
