//! The data path's threads. Each worker is an OS thread running its own
//! single-threaded tokio runtime; a connection handed to it is served
//! there from its first byte to its close, through that worker's own
//! upstream connection pool. One worker per core, as HAProxy's threads and
//! Envoy's workers are: a request never leaves the thread that read it, so
//! relaying it wakes no other thread and no work-stealing scheduler sits
//! on the hot path. Accepting stays with the caller's runtime, which hands
//! each new connection to the next worker in turn.
//!
//! Dropping [`Workers`] stops every worker: its runtime shuts down and the
//! connections it still serves are closed.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// The most workers a balancer runs.
pub const MAX_WORKERS: usize = 256;

/// Returns the default number of workers: one per core this process may
/// run on (its CPU affinity, so `taskset -c 1` means one).
pub fn default_count() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

#[derive(Debug)]
struct Worker {
    handle: Handle,
    /// Dropped with the worker: its thread then leaves its runtime.
    _stop: oneshot::Sender<()>,
}

/// The running workers.
#[derive(Debug)]
pub struct Workers {
    workers: Vec<Worker>,
    next: AtomicUsize,
}

impl Workers {
    /// Starts `count` workers (1 to [`MAX_WORKERS`], checked by the
    /// settings), or says why a thread or runtime could not be made.
    pub fn start(count: usize) -> std::io::Result<Workers> {
        if count == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a balancer needs at least one worker",
            ));
        }
        let mut workers = Vec::with_capacity(count);
        for index in 0..count {
            let runtime = Builder::new_current_thread().enable_all().build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            thread::Builder::new()
                .name(format!("dure-lb-{index}"))
                .spawn(move || {
                    // Resolves when the sender is dropped, which is the stop.
                    let _ = runtime.block_on(stopped);
                })?;
            workers.push(Worker {
                handle,
                _stop: stop,
            });
        }
        Ok(Workers {
            workers,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs the future `serve` makes on the next worker in turn; `serve`
    /// is given the worker's index (below the count started) and called on
    /// that worker's thread, so what it registers — a socket, a timer, a
    /// task — belongs to that worker.
    pub fn spawn<S, F>(&self, serve: S)
    where
        S: FnOnce(usize) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        self.spawn_on(index, serve);
    }

    /// Runs the future `serve` makes on worker `index` (below the count
    /// started), as [`Workers::spawn`] does.
    pub fn spawn_on<S, F>(&self, index: usize, serve: S)
    where
        S: FnOnce(usize) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        self.workers[index]
            .handle
            .spawn(async move { serve(index).await });
    }

    /// How many workers there are.
    pub fn count(&self) -> usize {
        self.workers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::mpsc;

    #[test]
    fn connections_go_to_every_worker_in_turn_each_on_its_own_thread() {
        let workers = Workers::start(3).unwrap();
        let (tx, rx) = mpsc::channel();
        for _ in 0..6 {
            let tx = tx.clone();
            workers.spawn(move |index| async move {
                tx.send((index, thread::current().name().map(str::to_string)))
                    .unwrap();
            });
        }
        let mut seen: Vec<(usize, Option<String>)> = (0..6)
            .map(|_| rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap())
            .collect();
        seen.sort();
        let indexes: Vec<usize> = seen.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, vec![0, 0, 1, 1, 2, 2]);
        for (index, name) in &seen {
            assert_eq!(name.as_deref(), Some(format!("dure-lb-{index}").as_str()));
        }
        let threads: HashSet<_> = seen.iter().map(|(_, n)| n.clone()).collect();
        assert_eq!(threads.len(), 3);
    }

    #[test]
    fn dropping_the_workers_ends_what_they_run() {
        let workers = Workers::start(1).unwrap();
        let (started_tx, started) = mpsc::channel();
        let (ended_tx, ended) = mpsc::channel::<()>();
        workers.spawn(move |_| async move {
            // Dropped (and so `ended_tx` with it) when the runtime stops.
            let _guard = ended_tx;
            started_tx.send(()).unwrap();
            std::future::pending::<()>().await;
        });
        started
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        drop(workers);
        assert_eq!(
            ended.recv_timeout(std::time::Duration::from_secs(10)),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
    }
}
