//! The restart policy decision: after a server exits on its own, restart it
//! (after how long) or leave it failed.

use crate::model::{RestartMode, RestartPolicy};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartDecision {
    /// Start again after this wait.
    RestartAfter(Duration),
    /// Leave the server failed.
    GiveUp,
}

/// Decides what to do after an unasked-for exit, given how many restarts in a
/// row have already happened. A clean exit (code 0) is not a failure and is
/// never restarted under `on-failure`.
pub fn decide_restart(
    policy: &RestartPolicy,
    restarts_so_far: u32,
    exit_code: Option<i32>,
) -> RestartDecision {
    let failed = exit_code != Some(0);
    if policy.mode == RestartMode::Never || !failed || restarts_so_far >= policy.max_restarts {
        return RestartDecision::GiveUp;
    }
    RestartDecision::RestartAfter(backoff(policy, restarts_so_far))
}

/// The wait before restart number `restarts_so_far + 1`: `backoff * 2^n`,
/// capped at `max_backoff`.
pub fn backoff(policy: &RestartPolicy, restarts_so_far: u32) -> Duration {
    let cap = policy.max_backoff.0;
    let mut wait = policy.backoff.0;
    // Doubling ends at the cap (a `Duration` reaches any cap within about a
    // hundred doublings) or at zero, which never grows: the loop is short
    // whatever `restarts_so_far` is, and no factor is ever clamped.
    for _ in 0..restarts_so_far {
        if wait >= cap || wait.is_zero() {
            break;
        }
        wait = wait.saturating_mul(2);
    }
    wait.min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::DurationSpec;
    use proptest::prelude::*;

    fn policy(mode: RestartMode, max: u32) -> RestartPolicy {
        RestartPolicy {
            mode,
            max_restarts: max,
            backoff: DurationSpec::from_millis(100),
            max_backoff: DurationSpec::from_millis(1_000),
        }
    }

    #[test]
    fn never_means_never() {
        let p = policy(RestartMode::Never, 10);
        assert_eq!(decide_restart(&p, 0, Some(1)), RestartDecision::GiveUp);
    }

    #[test]
    fn clean_exit_is_not_restarted() {
        let p = policy(RestartMode::OnFailure, 10);
        assert_eq!(decide_restart(&p, 0, Some(0)), RestartDecision::GiveUp);
    }

    #[test]
    fn killed_by_signal_is_a_failure() {
        let p = policy(RestartMode::OnFailure, 10);
        assert_eq!(
            decide_restart(&p, 0, None),
            RestartDecision::RestartAfter(Duration::from_millis(100))
        );
    }

    #[test]
    fn backoff_doubles_then_caps_and_max_restarts_ends_it() {
        let p = policy(RestartMode::OnFailure, 5);
        let waits: Vec<_> = (0..5).map(|n| decide_restart(&p, n, Some(1))).collect();
        assert_eq!(
            waits,
            [100, 200, 400, 800, 1000]
                .map(|ms| RestartDecision::RestartAfter(Duration::from_millis(ms)))
        );
        assert_eq!(decide_restart(&p, 5, Some(1)), RestartDecision::GiveUp);
    }

    proptest! {
        #[test]
        fn backoff_never_exceeds_cap(n in 0u32..1000, base in 0u64..100_000, cap in 0u64..100_000) {
            let p = RestartPolicy {
                mode: RestartMode::OnFailure,
                max_restarts: u32::MAX,
                backoff: DurationSpec::from_millis(base),
                max_backoff: DurationSpec::from_millis(cap),
            };
            prop_assert!(backoff(&p, n) <= Duration::from_millis(cap));
        }

        #[test]
        fn backoff_is_the_doubled_base_up_to_the_cap(
            n in 0u32..200,
            base in 0u64..100_000,
            cap in 0u64..u64::MAX / 1_000_000,
        ) {
            let p = RestartPolicy {
                mode: RestartMode::OnFailure,
                max_restarts: u32::MAX,
                backoff: DurationSpec::from_millis(base),
                max_backoff: DurationSpec::from_millis(cap),
            };
            // base * 2^n in exact arithmetic; beyond u128 it is past any cap.
            let doubled = 1u128
                .checked_shl(n)
                .and_then(|factor| u128::from(base).checked_mul(factor))
                .unwrap_or(u128::MAX);
            let expected = doubled.min(u128::from(cap));
            prop_assert_eq!(backoff(&p, n).as_millis(), expected);
        }
    }

    #[test]
    fn long_caps_keep_doubling_past_thirty_one_restarts() {
        let p = RestartPolicy {
            mode: RestartMode::OnFailure,
            max_restarts: u32::MAX,
            backoff: DurationSpec::from_millis(1),
            max_backoff: DurationSpec::from_millis(1 << 40),
        };
        assert_eq!(backoff(&p, 35), Duration::from_millis(1 << 35));
        assert_eq!(backoff(&p, 60), Duration::from_millis(1 << 40));
    }
}
