//! Passive outlier ejection of one member, after Envoy's consecutive
//! errors detection: streaks of failed requests eject the member for a
//! time that grows with each ejection, and the ejection ends at its time.
//!
//! The cap on how many members passive signals may eject at once
//! ([`OutlierConfig::max_ejection_percent`]) is a rule over the whole
//! pool: [`ejection_allowed`] states it and the pool applies it.

use crate::duration::DurationSpec;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How a request to a member ended, as far as the member's health goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response that is not a 5xx.
    Success,
    /// A 5xx response.
    ServerError,
    /// The connection to the member could not be made.
    ConnectFailed,
    /// The connection was reset or closed before the response was complete.
    Reset,
    /// No first response byte within the first-byte timeout.
    Timeout,
    /// The client went away or the proxy gave up for its own reasons: says
    /// nothing about the member.
    Aborted,
}

impl Outcome {
    /// Returns the outcome of a response with HTTP status `status`: a 5xx
    /// is a server error, anything else a success.
    pub fn of_status(status: u16) -> Outcome {
        if (500..600).contains(&status) {
            Outcome::ServerError
        } else {
            Outcome::Success
        }
    }
}

/// Thresholds and times of passive ejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutlierConfig {
    /// Consecutive 5xx responses that eject a member.
    pub consecutive_5xx: u32,
    /// Consecutive connect failures or resets that eject a member.
    pub consecutive_connect_failures: u32,
    /// Consecutive first-byte timeouts that eject a member: one by default,
    /// since a member that accepts and never answers (a frozen process)
    /// would otherwise stall a request per pick.
    pub consecutive_timeouts: u32,
    /// The first ejection's length; the n-th lasts n times as long.
    pub base_ejection_time: DurationSpec,
    /// The longest an ejection lasts; also how long a member must go
    /// without ejection for its count of ejections to start again from 0.
    pub max_ejection_time: DurationSpec,
    /// The share of a pool's members, in percent, that passive signals
    /// may hold ejected at once.
    pub max_ejection_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> OutlierConfig {
        OutlierConfig {
            consecutive_5xx: 5,
            consecutive_connect_failures: 3,
            consecutive_timeouts: 1,
            base_ejection_time: DurationSpec::from_secs(10),
            max_ejection_time: DurationSpec::from_secs(300),
            max_ejection_percent: 50,
        }
    }
}

/// An outlier configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutlierConfigError {
    /// A threshold of zero would eject on success.
    #[error("outlier `{field}` must be at least 1")]
    ZeroThreshold {
        /// The threshold's field name.
        field: &'static str,
    },
    /// A percentage above 100.
    #[error("outlier `max_ejection_percent` is {0}: use 0 to 100")]
    Percent(u32),
}

impl OutlierConfig {
    /// Checks that every field can work.
    pub fn validate(&self) -> Result<(), OutlierConfigError> {
        for (field, value) in [
            ("consecutive_5xx", self.consecutive_5xx),
            (
                "consecutive_connect_failures",
                self.consecutive_connect_failures,
            ),
            ("consecutive_timeouts", self.consecutive_timeouts),
        ] {
            if value == 0 {
                return Err(OutlierConfigError::ZeroThreshold { field });
            }
        }
        if self.max_ejection_percent > 100 {
            return Err(OutlierConfigError::Percent(self.max_ejection_percent));
        }
        Ok(())
    }
}

/// Whether one more member may be ejected by passive signals in a pool of
/// `members` of which `ejected` already are.
pub fn ejection_allowed(ejected: usize, members: usize, max_percent: u32) -> bool {
    (ejected as u64 + 1) * 100 <= members as u64 * u64::from(max_percent)
}

/// One ejection, as it began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejection {
    /// When it ends, on the caller's monotonic clock.
    pub until: Duration,
    /// How many times the member has been ejected, this one included.
    pub count: u32,
}

/// The passive detection state of one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutlierState {
    server_errors: u32,
    connect_failures: u32,
    timeouts: u32,
    ejections: u32,
    /// When the current or last ejection ends.
    ejected_until: Option<Duration>,
}

impl OutlierState {
    /// Records an outcome; returns whether a streak reached its threshold,
    /// i.e. the member should be ejected if the pool allows it.
    pub fn record(&mut self, outcome: Outcome, config: &OutlierConfig) -> bool {
        let (streak, threshold) = match outcome {
            Outcome::Success => {
                self.server_errors = 0;
                self.connect_failures = 0;
                self.timeouts = 0;
                return false;
            }
            Outcome::Aborted => return false,
            Outcome::ServerError => (&mut self.server_errors, config.consecutive_5xx),
            Outcome::ConnectFailed | Outcome::Reset => (
                &mut self.connect_failures,
                config.consecutive_connect_failures,
            ),
            Outcome::Timeout => (&mut self.timeouts, config.consecutive_timeouts),
        };
        *streak = streak.saturating_add(1);
        *streak >= threshold
    }

    /// Ejects the member at `now`: for the base time times the number of
    /// ejections, at most the maximum. A member that went the maximum time
    /// without an ejection counts from one again.
    pub fn eject(&mut self, now: Duration, config: &OutlierConfig) -> Ejection {
        let max = config.max_ejection_time.0;
        if let Some(until) = self.ejected_until {
            if now.saturating_sub(until) >= max {
                self.ejections = 0;
            }
        }
        self.ejections = self.ejections.saturating_add(1);
        let length = config
            .base_ejection_time
            .0
            .saturating_mul(self.ejections)
            .min(max);
        let until = now.saturating_add(length);
        self.ejected_until = Some(until);
        self.server_errors = 0;
        self.connect_failures = 0;
        self.timeouts = 0;
        Ejection {
            until,
            count: self.ejections,
        }
    }

    /// Returns whether the member is ejected at `now`.
    pub fn is_ejected(&self, now: Duration) -> bool {
        self.ejected_until.is_some_and(|until| now < until)
    }

    /// Returns when the current ejection ends, if the member is ejected at
    /// `now`.
    pub fn ejected_until(&self, now: Duration) -> Option<Duration> {
        self.ejected_until.filter(|until| now < *until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_5xx_streak_reaches_its_threshold_and_a_success_ends_it() {
        let config = OutlierConfig::default();
        let mut state = OutlierState::default();
        for _ in 0..4 {
            assert!(!state.record(Outcome::ServerError, &config));
        }
        assert!(!state.record(Outcome::Success, &config));
        for _ in 0..4 {
            assert!(!state.record(Outcome::ServerError, &config));
        }
        assert!(!state.record(Outcome::Aborted, &config));
        assert!(state.record(Outcome::ServerError, &config));
    }

    #[test]
    fn only_a_5xx_status_is_a_server_error() {
        for (status, outcome) in [
            (200, Outcome::Success),
            (404, Outcome::Success),
            (499, Outcome::Success),
            (500, Outcome::ServerError),
            (503, Outcome::ServerError),
            (599, Outcome::ServerError),
        ] {
            assert_eq!(Outcome::of_status(status), outcome, "{status}");
        }
    }

    #[test]
    fn resets_count_with_connect_failures_and_one_timeout_is_enough() {
        let config = OutlierConfig::default();
        let mut state = OutlierState::default();
        assert!(!state.record(Outcome::ConnectFailed, &config));
        assert!(!state.record(Outcome::Reset, &config));
        assert!(state.record(Outcome::ConnectFailed, &config));
        let mut state = OutlierState::default();
        assert!(state.record(Outcome::Timeout, &config));
    }

    #[test]
    fn each_ejection_lasts_longer_up_to_the_maximum() {
        let config = OutlierConfig {
            base_ejection_time: DurationSpec::from_secs(10),
            max_ejection_time: DurationSpec::from_secs(25),
            ..OutlierConfig::default()
        };
        let mut state = OutlierState::default();
        let first = state.eject(SECOND, &config);
        assert_eq!(
            first,
            Ejection {
                until: 11 * SECOND,
                count: 1
            }
        );
        assert!(state.is_ejected(10 * SECOND));
        assert!(!state.is_ejected(11 * SECOND));
        assert_eq!(state.eject(12 * SECOND, &config).until, 32 * SECOND);
        assert_eq!(state.eject(33 * SECOND, &config).until, 58 * SECOND);
        // Quiet for the maximum time since the last ejection ended: from one again.
        let again = state.eject(83 * SECOND, &config);
        assert_eq!(
            again,
            Ejection {
                until: 93 * SECOND,
                count: 1
            }
        );
    }

    #[test]
    fn no_more_than_the_percentage_is_ejected() {
        assert!(!ejection_allowed(0, 1, 50));
        assert!(ejection_allowed(0, 2, 50));
        assert!(!ejection_allowed(1, 2, 50));
        assert!(!ejection_allowed(1, 3, 50));
        assert!(ejection_allowed(1, 4, 50));
        assert!(!ejection_allowed(2, 4, 50));
        assert!(!ejection_allowed(0, 5, 0));
        assert!(ejection_allowed(4, 5, 100));
    }

    #[test]
    fn a_zero_threshold_or_a_percentage_over_100_is_refused() {
        let config = OutlierConfig {
            consecutive_timeouts: 0,
            ..OutlierConfig::default()
        };
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "outlier `consecutive_timeouts` must be at least 1"
        );
        let config = OutlierConfig {
            max_ejection_percent: 101,
            ..OutlierConfig::default()
        };
        assert_eq!(config.validate(), Err(OutlierConfigError::Percent(101)));
        assert_eq!(OutlierConfig::default().validate(), Ok(()));
    }

    proptest! {
        /// Whatever the ejection history, an ejection never lasts more than
        /// the maximum nor less than the base, and ends when it says.
        #[test]
        fn ejections_are_bounded_and_end_at_their_time(
            gaps in proptest::collection::vec(0u64..400, 1..20),
        ) {
            let config = OutlierConfig::default();
            let mut state = OutlierState::default();
            let mut now = Duration::ZERO;
            for gap in gaps {
                now += Duration::from_secs(gap);
                let ejection = state.eject(now, &config);
                let length = ejection.until - now;
                prop_assert!(length >= config.base_ejection_time.0);
                prop_assert!(length <= config.max_ejection_time.0);
                prop_assert!(state.is_ejected(ejection.until - Duration::from_millis(1)));
                prop_assert!(!state.is_ejected(ejection.until));
                now = ejection.until;
            }
        }

        /// Never more than the percentage of members is ejected.
        #[test]
        fn allowed_ejections_stay_within_the_percentage(
            members in 0usize..50,
            percent in 0u32..=100,
        ) {
            let mut ejected = 0;
            while ejection_allowed(ejected, members, percent) {
                ejected += 1;
                prop_assert!(ejected <= members);
            }
            prop_assert!(ejected as u64 * 100 <= members as u64 * u64::from(percent));
            prop_assert!((ejected as u64 + 1) * 100 > members as u64 * u64::from(percent));
        }
    }
}
