//! A balancer instance that waits for its definition: `dure up` runs one
//! for balancer `--lb` (default `local`) so that the day an operator writes
//! `dure lb create local …` it serves at once, in the same process. It
//! follows the saved balancer definitions with blocking reads and starts
//! the instance when the name appears; a start that fails (a port in use)
//! is said once and tried again at the next change of the definitions.

use super::{LbInstance, WATCH_WAIT};
use dure_api::Client;
use dure_lb::Settings;
use std::time::Duration;

/// How long to wait before reading the definitions again after a failed read.
const RETRY: Duration = Duration::from_secs(1);

/// The instance once started, or the wait for its definition.
pub struct StandbyLb {
    task: tokio::task::JoinHandle<LbInstance>,
}

impl StandbyLb {
    /// Starts waiting for balancer `name` to be defined.
    pub fn start(client: Client, name: &str, settings: Settings) -> StandbyLb {
        let name = name.to_string();
        StandbyLb {
            task: tokio::spawn(async move { serve_when_defined(client, &name, settings).await }),
        }
    }

    /// Stops waiting, or stops the instance it started, giving requests in
    /// flight up to `grace`.
    pub async fn shutdown(self, grace: Duration) {
        if !self.task.is_finished() {
            self.task.abort();
        }
        if let Ok(instance) = self.task.await {
            instance.shutdown(grace).await;
        }
    }
}

async fn serve_when_defined(client: Client, name: &str, settings: Settings) -> LbInstance {
    let mut index = 0;
    let mut read_failed = false;
    loop {
        let defined = match client.watch_lbs(index, WATCH_WAIT).await {
            Ok(watched) => {
                read_failed = false;
                index = watched.index;
                watched.value.iter().any(|lb| lb.name == name)
            }
            Err(error) => {
                if !read_failed {
                    tracing::warn!(lb = name, error = %error, "cannot read the balancer definitions; trying again");
                    read_failed = true;
                }
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if !defined {
            continue;
        }
        match LbInstance::start(client.clone(), name, settings.clone()).await {
            Ok(instance) => {
                let listening = instance.listening().await;
                tracing::info!(lb = name, ?listening, "serving balancer in this process");
                return instance;
            }
            Err(error) => {
                tracing::error!(lb = name, error = %format!("{error:#}"), "cannot serve the balancer; trying again when its definition changes");
            }
        }
    }
}
