//! Active health checks of one member as a state machine: a check result
//! in, the member's health out. A member turns healthy after `rise`
//! consecutive passes and unhealthy after `fall` consecutive failures, so
//! one lost check does not flap it. Running the checks (HTTP or TCP, every
//! `interval`) is the proxy's job; deciding is this module's.

use crate::duration::DurationSpec;
use serde::{Deserialize, Serialize};

/// How a cluster's members are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthConfig {
    /// Time between two checks of a member.
    pub interval: DurationSpec,
    /// Consecutive passes that make an unhealthy member healthy.
    pub rise: u32,
    /// Consecutive failures that make a healthy member unhealthy.
    pub fall: u32,
}

impl Default for HealthConfig {
    fn default() -> HealthConfig {
        HealthConfig {
            interval: DurationSpec::from_secs(1),
            rise: 2,
            fall: 2,
        }
    }
}

/// A health configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthConfigError {
    /// A count of zero would change the health with no result at all.
    #[error("health check `{field}` must be at least 1")]
    ZeroCount {
        /// `rise` or `fall`.
        field: &'static str,
    },
    /// Checking continuously would load the member with checks.
    #[error("health check `interval` must be more than 0s")]
    ZeroInterval,
}

impl HealthConfig {
    /// Checks that every field can work.
    pub fn validate(&self) -> Result<(), HealthConfigError> {
        if self.rise == 0 {
            return Err(HealthConfigError::ZeroCount { field: "rise" });
        }
        if self.fall == 0 {
            return Err(HealthConfigError::ZeroCount { field: "fall" });
        }
        if self.interval.0.is_zero() {
            return Err(HealthConfigError::ZeroInterval);
        }
        Ok(())
    }
}

/// The active health of one member.
///
/// A member starts healthy: it joins the pool because the controller
/// reports it ready, which its agent's readiness probe established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCheck {
    healthy: bool,
    /// Consecutive results against the current health.
    streak: u32,
}

impl Default for HealthCheck {
    fn default() -> HealthCheck {
        HealthCheck {
            healthy: true,
            streak: 0,
        }
    }
}

impl HealthCheck {
    /// Returns whether the member counts as healthy.
    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// Records one check result; returns the new health when it changed.
    pub fn record(&mut self, passed: bool, config: &HealthConfig) -> Option<bool> {
        if passed == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak = self.streak.saturating_add(1);
        let needed = if self.healthy {
            config.fall
        } else {
            config.rise
        };
        if self.streak < needed {
            return None;
        }
        self.healthy = passed;
        self.streak = 0;
        Some(passed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn falls_after_fall_failures_and_rises_after_rise_passes() {
        let config = HealthConfig::default();
        let mut check = HealthCheck::default();
        assert_eq!(check.record(false, &config), None);
        assert!(check.is_healthy());
        assert_eq!(check.record(false, &config), Some(false));
        assert!(!check.is_healthy());
        assert_eq!(check.record(true, &config), None);
        assert_eq!(check.record(false, &config), None);
        assert_eq!(check.record(true, &config), None);
        assert_eq!(check.record(true, &config), Some(true));
        assert!(check.is_healthy());
    }

    #[test]
    fn a_zero_count_or_interval_is_refused() {
        let mut config = HealthConfig::default();
        assert_eq!(config.validate(), Ok(()));
        config.rise = 0;
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "health check `rise` must be at least 1"
        );
        config = HealthConfig {
            interval: DurationSpec::from_millis(0),
            ..HealthConfig::default()
        };
        assert_eq!(config.validate(), Err(HealthConfigError::ZeroInterval));
    }

    #[test]
    fn reads_with_defaults() {
        let config: HealthConfig = serde_json::from_str(r#"{"rise":3}"#).unwrap();
        assert_eq!(config.rise, 3);
        assert_eq!(config.fall, 2);
        assert_eq!(config.interval, DurationSpec::from_secs(1));
    }

    proptest! {
        /// The health turns to a result only after at least `rise` (or
        /// `fall`) of that result in a row, and any such run turns it.
        #[test]
        fn health_follows_runs_of_results(
            results in proptest::collection::vec(any::<bool>(), 0..60),
            rise in 1u32..5,
            fall in 1u32..5,
        ) {
            let config = HealthConfig { rise, fall, ..HealthConfig::default() };
            let mut check = HealthCheck::default();
            for (i, passed) in results.iter().copied().enumerate() {
                let before = check.is_healthy();
                let changed = check.record(passed, &config);
                let run = results[..=i].iter().rev().take_while(|r| **r == passed).count() as u32;
                let needed = if passed { rise } else { fall };
                prop_assert_eq!(changed.is_some(), before != check.is_healthy());
                if changed.is_some() {
                    prop_assert_eq!(check.is_healthy(), passed);
                    prop_assert!(run >= needed, "turned after a run of {}", run);
                }
                if run >= needed {
                    prop_assert_eq!(check.is_healthy(), passed);
                }
            }
        }
    }
}
