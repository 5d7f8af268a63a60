//! Retry rules: whether a failed attempt of a request may be made again on
//! another member. A request that never reached a member (the connection
//! failed) is safe to send elsewhere whatever its method; one that may have
//! been processed (reset or timed out before the first response byte) only
//! when its method is idempotent; one whose response had begun, never.
//! The next member is [`Pool::pick`](super::Pool::pick) with the members
//! already tried in [`PickContext::tried`](super::PickContext::tried).

use super::outlier::Outcome;
use serde::{Deserialize, Serialize};

/// How an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailure {
    /// No connection to the member: the request was not sent.
    ConnectFailed,
    /// The connection was reset or closed before the first response byte.
    ResetBeforeResponse,
    /// No first response byte within the first-byte timeout.
    FirstByteTimeout,
    /// The response had begun when the connection failed.
    AfterResponseBegan,
}

impl AttemptFailure {
    /// Returns what the failure says about the member, for
    /// [`Pool::end`](super::Pool::end).
    pub fn outcome(self) -> Outcome {
        match self {
            AttemptFailure::ConnectFailed => Outcome::ConnectFailed,
            AttemptFailure::ResetBeforeResponse | AttemptFailure::AfterResponseBegan => {
                Outcome::Reset
            }
            AttemptFailure::FirstByteTimeout => Outcome::Timeout,
        }
    }
}

/// The methods that mean the same done twice as once (RFC 9110, 9.2.2).
pub const IDEMPOTENT_METHODS: [&str; 6] = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"];

/// Returns whether `method` is idempotent. Methods are case-sensitive.
pub fn is_idempotent(method: &str) -> bool {
    IDEMPOTENT_METHODS.contains(&method)
}

/// How many times a cluster's requests may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts after the first, each on a member not tried yet.
    pub max_retries: u32,
}

impl Default for RetryConfig {
    fn default() -> RetryConfig {
        RetryConfig { max_retries: 2 }
    }
}

impl RetryConfig {
    /// Returns whether a request with `method` whose attempt failed with
    /// `failure`, after `retries` retries already, may be tried again.
    pub fn may_retry(&self, method: &str, failure: AttemptFailure, retries: u32) -> bool {
        if retries >= self.max_retries {
            return false;
        }
        match failure {
            AttemptFailure::ConnectFailed => true,
            AttemptFailure::ResetBeforeResponse | AttemptFailure::FirstByteTimeout => {
                is_idempotent(method)
            }
            AttemptFailure::AfterResponseBegan => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FAILURES: [AttemptFailure; 4] = [
        AttemptFailure::ConnectFailed,
        AttemptFailure::ResetBeforeResponse,
        AttemptFailure::FirstByteTimeout,
        AttemptFailure::AfterResponseBegan,
    ];

    #[test]
    fn an_unsent_request_is_retried_whatever_its_method() {
        let config = RetryConfig::default();
        for method in ["GET", "POST", "PATCH", "CONNECT", "get"] {
            assert!(
                config.may_retry(method, AttemptFailure::ConnectFailed, 0),
                "{method}"
            );
        }
    }

    #[test]
    fn a_request_maybe_processed_is_retried_only_when_idempotent() {
        let config = RetryConfig::default();
        for failure in [
            AttemptFailure::ResetBeforeResponse,
            AttemptFailure::FirstByteTimeout,
        ] {
            for method in IDEMPOTENT_METHODS {
                assert!(config.may_retry(method, failure, 1), "{method}");
            }
            for method in ["POST", "PATCH", "CONNECT", "get"] {
                assert!(!config.may_retry(method, failure, 0), "{method}");
            }
        }
    }

    #[test]
    fn a_begun_response_is_never_retried() {
        let config = RetryConfig { max_retries: 10 };
        assert!(!config.may_retry("GET", AttemptFailure::AfterResponseBegan, 0));
    }

    #[test]
    fn failures_map_to_outcomes() {
        assert_eq!(
            AttemptFailure::ConnectFailed.outcome(),
            Outcome::ConnectFailed
        );
        assert_eq!(
            AttemptFailure::ResetBeforeResponse.outcome(),
            Outcome::Reset
        );
        assert_eq!(AttemptFailure::FirstByteTimeout.outcome(), Outcome::Timeout);
        let config: RetryConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, RetryConfig::default());
    }

    proptest! {
        /// No request is retried more than the maximum.
        #[test]
        fn retries_are_bounded(max in 0u32..6, failure in 0usize..4, method in "[A-Z]{3,7}") {
            let config = RetryConfig { max_retries: max };
            let failure = FAILURES[failure];
            let mut retries = 0;
            while config.may_retry(&method, failure, retries) {
                retries += 1;
                prop_assert!(retries <= max);
            }
        }
    }
}
