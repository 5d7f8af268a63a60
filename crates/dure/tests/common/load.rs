//! A bounded load of requests through a balancer, for tests that change
//! members under it (drains, rolling restarts, rolling deploys) and then
//! count what failed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An error with its sources: `error sending request: … : Connection refused`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One request of the load: when it started, its method, its status
/// (`None` when no answer came: a reset, a refused connection, a timeout,
/// and then `error` says which) and the body of a success.
#[derive(Debug, Clone)]
pub struct Sent {
    pub started_ms: u64,
    pub method: &'static str,
    pub status: Option<u16>,
    pub body: Option<String>,
    pub error: Option<String>,
}

/// A bounded load of requests of `path` on a local port, from a few
/// clients at once (with `posts`, GETs and POSTs in turn), until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<Vec<Sent>>>,
}

impl Load {
    pub fn start(port: u16, path: &str, clients: usize, posts: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..clients)
            .map(|i| {
                let stop = stop.clone();
                let url = format!("http://127.0.0.1:{port}{path}");
                tokio::spawn(async move {
                    let http = reqwest::Client::new();
                    let mut sent = Vec::new();
                    // Bounded: at most this many requests per client.
                    for n in 0..2_000 {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let post = posts && (i + n) % 2 == 1;
                        let request = if post {
                            http.post(&url).body("x".repeat(512))
                        } else {
                            http.get(&url)
                        };
                        let started_ms = now_ms();
                        let answer = request.timeout(Duration::from_secs(10)).send().await;
                        let (status, body, error) = match answer {
                            Ok(response) => {
                                let status = response.status().as_u16();
                                (Some(status), response.text().await.ok(), None)
                            }
                            Err(e) => (None, None, Some(error_chain(&e))),
                        };
                        if status != Some(200) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        sent.push(Sent {
                            started_ms,
                            method: if post { "POST" } else { "GET" },
                            status,
                            body,
                            error,
                        });
                    }
                    sent
                })
            })
            .collect();
        Load { stop, clients }
    }

    pub async fn finish(self) -> Vec<Sent> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for client in self.clients {
            all.extend(client.await.expect("a load client ends"));
        }
        all
    }
}
