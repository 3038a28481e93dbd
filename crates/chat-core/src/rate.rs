//! A token bucket: a sustained rate with a burst allowance.

use tokio::time::Instant;

/// Allows `rate` events per second on average, with bursts of up to `burst` events.
///
/// Uses tokio's clock so tests can drive it with a paused runtime.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_second: u32, burst: u32) -> Self {
        Self::with_rate(f64::from(rate_per_second), burst)
    }

    /// A full bucket refilling at a fractional rate (`5.0 / 60.0` is five a minute).
    pub fn with_rate(rate_per_second: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: rate_per_second.max(0.0),
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Whether a token is available, without taking it.
    pub fn peek(&mut self) -> bool {
        self.refill();
        self.tokens >= 1.0
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
    }

    /// Whether the bucket has refilled completely (its owner has been quiet).
    pub fn is_full(&mut self) -> bool {
        self.refill();
        self.tokens >= self.burst
    }

    /// Takes one token if there is one; `false` means the event is over the limit.
    pub fn try_take(&mut self) -> bool {
        self.refill();
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn burst_then_sustained_rate() {
        let mut b = TokenBucket::new(20, 40);
        assert_eq!((0..100).filter(|_| b.try_take()).count(), 40);
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!((0..100).filter(|_| b.try_take()).count(), 10);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!((0..100).filter(|_| b.try_take()).count(), 40);
    }
}
