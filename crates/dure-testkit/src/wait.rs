//! Waiting for things that settle over time, always bounded: a check that
//! itself hangs (a request to a stuck process) is cut off at the deadline.

use std::future::Future;
use std::time::Duration;

/// How often a condition is checked.
const POLL: Duration = Duration::from_millis(50);

/// A bounded wait that polls a condition.
pub struct Deadline {
    until: tokio::time::Instant,
    within: Duration,
}

impl Deadline {
    pub fn after(within: Duration) -> Deadline {
        Deadline {
            until: tokio::time::Instant::now() + within,
            within,
        }
    }

    /// Polls `probe` every 50 ms until it yields a value or time runs out;
    /// a probe still running at the deadline counts as not met (each one
    /// gets at least 50 ms).
    pub async fn until<T, F, Fut>(&self, mut probe: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        loop {
            let left = self
                .until
                .saturating_duration_since(tokio::time::Instant::now());
            if let Ok(Some(value)) = tokio::time::timeout(left.max(POLL), probe()).await {
                return Ok(value);
            }
            if tokio::time::Instant::now() >= self.until {
                anyhow::bail!("condition not met within {:?}", self.within);
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Polls `probe` until it returns `Some` or `within` passes; the error says
/// what was awaited.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    Deadline::after(within)
        .until(probe)
        .await
        .map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_probe_that_never_finishes_is_cut_off_at_the_deadline() {
        let wait = eventually("nothing", Duration::from_millis(200), || {
            std::future::pending::<Option<()>>()
        });
        let result = tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .expect("the wait ends by itself");
        let error = result.unwrap_err().to_string();
        assert!(error.starts_with("nothing: condition not met"), "{error}");
    }
}
