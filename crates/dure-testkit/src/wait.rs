//! Waiting for things that settle over time, always bounded.

use std::future::Future;
use std::time::Duration;

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

    /// Polls `probe` every 50 ms until it yields a value or time runs out.
    pub async fn until<T, F, Fut>(&self, mut probe: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        loop {
            if let Some(value) = probe().await {
                return Ok(value);
            }
            if tokio::time::Instant::now() >= self.until {
                anyhow::bail!("condition not met within {:?}", self.within);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
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
