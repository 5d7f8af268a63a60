//! Waiting for the signals that end a long-running role: SIGINT (Ctrl-C)
//! and SIGTERM (service managers, the agent stopping a server).

use tokio::signal::unix::{signal, Signal, SignalKind};

/// Installed signal handlers. Made before the work starts so a signal that
/// arrives early is not lost to the default handler (which would kill the
/// process without a clean shutdown).
pub struct Shutdown {
    interrupt: Signal,
    terminate: Signal,
}

impl Shutdown {
    pub fn install() -> anyhow::Result<Shutdown> {
        let interrupt = signal(SignalKind::interrupt())
            .map_err(|e| anyhow::anyhow!("cannot install the SIGINT handler: {e}"))?;
        let terminate = signal(SignalKind::terminate())
            .map_err(|e| anyhow::anyhow!("cannot install the SIGTERM handler: {e}"))?;
        Ok(Shutdown {
            interrupt,
            terminate,
        })
    }

    /// Waits for the next SIGINT or SIGTERM and returns its name.
    pub async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
