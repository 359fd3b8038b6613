//! When and how long to wait before sending again. Every retry decision of the producer is here.

use std::time::Duration;

use rand::Rng;

/// How many times a request is tried before the run gives up, and how long it waits between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Consecutive attempts that made no progress (no record accepted) before giving up.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub base_delay: Duration,
    /// Longest wait between two attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Ten attempts over roughly 30 s: long enough to ride out a throttled minute's worth of
    /// bursts, short enough that a dead endpoint is reported promptly.
    fn default() -> Self {
        Self {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`, after `attempt` failed ones (1-based): exponential
    /// backoff with "full jitter", so that many requests throttled together do not come back
    /// together (AWS Architecture Blog, "Exponential Backoff And Jitter").
    pub fn backoff(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let ceiling = self
            .base_delay
            .saturating_mul(1 << exponent)
            .min(self.max_delay);
        ceiling.mul_f64(rng.random_range(0.0..=1.0))
    }

    /// Whether another attempt is allowed after `attempt` failed ones without progress.
    pub fn allows(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }
}

/// Runs `call` until it succeeds, fails for good (as `retry_of` judges), or `policy` gives up,
/// sleeping the policy's backoff between attempts. For whole calls; `PutRecords`, whose entries
/// fail one by one, keeps its own loop in `send.rs` on the same policy.
pub async fn with_retries<T, E, F, Fut>(
    policy: &RetryPolicy,
    retry_of: impl Fn(&E) -> Retry,
    mut call: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Err(e) if retry_of(&e) == Retry::Transient && policy.allows(attempt + 1) => {
                attempt += 1;
                let wait = policy.backoff(attempt, &mut rand::rng());
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

/// Whether a failure is worth another try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Throttling, a service-side failure, a timeout or a dropped connection.
    Transient,
    /// Retrying cannot help: a missing stream, bad credentials, an invalid request.
    Permanent,
}

/// Classifies an AWS error code, of a whole request or of one `PutRecords` entry.
pub fn classify_code(code: &str) -> Retry {
    match code {
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "Throttling"
        | "LimitExceededException"
        | "KMSThrottlingException"
        | "InternalFailure"
        | "InternalFailureException"
        | "InternalServerError"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "RequestTimeout"
        | "RequestTimeoutException" => Retry::Transient,
        _ => Retry::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap_with_jitter() {
        let policy = RetryPolicy::default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for attempt in 1..=12 {
            let ceiling =
                (Duration::from_millis(100) * 2_u32.pow(attempt - 1)).min(policy.max_delay);
            let waits: Vec<Duration> = (0..200)
                .map(|_| policy.backoff(attempt, &mut rng))
                .collect();
            assert!(waits.iter().all(|w| *w <= ceiling), "attempt {attempt}");
            assert!(waits.iter().any(|w| *w < ceiling / 2), "jittered");
        }
        assert!(policy.allows(9));
        assert!(!policy.allows(10));
    }

    #[tokio::test]
    async fn whole_calls_are_retried_while_transient_and_within_the_budget() {
        let policy = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        };
        let calls = std::cell::Cell::new(0);
        let result: Result<(), Retry> = with_retries(
            &policy,
            |r| *r,
            || {
                calls.set(calls.get() + 1);
                async { Err(Retry::Transient) }
            },
        )
        .await;
        assert_eq!((result, calls.get()), (Err(Retry::Transient), 3));
        calls.set(0);
        let result: Result<(), Retry> = with_retries(
            &policy,
            |r| *r,
            || {
                calls.set(calls.get() + 1);
                async { Err(Retry::Permanent) }
            },
        )
        .await;
        assert_eq!((result, calls.get()), (Err(Retry::Permanent), 1));
    }

    #[test]
    fn throttling_and_service_failures_are_retried_and_client_errors_are_not() {
        for code in [
            "ProvisionedThroughputExceededException",
            "InternalFailure",
            "KMSThrottlingException",
        ] {
            assert_eq!(classify_code(code), Retry::Transient, "{code}");
        }
        for code in [
            "ResourceNotFoundException",
            "AccessDeniedException",
            "ValidationException",
            "KMSAccessDeniedException",
        ] {
            assert_eq!(classify_code(code), Retry::Permanent, "{code}");
        }
    }
}
