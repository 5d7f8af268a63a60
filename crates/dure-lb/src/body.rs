//! Bodies through the balancer. Bodies stream: nothing is read whole
//! except a request body small enough to buffer for a retry (its
//! Content-Length at most the replay limit). A streamed request body is
//! handed to an attempt through a slot it is taken from on the first read,
//! so an attempt that failed before reading it (a refused connect) leaves
//! it there for the next attempt, and one that read it leaves nothing to
//! replay.

use crate::cluster::Attempt;
use crate::upstream::Lease;
use bytes::Bytes;
use dure_core::balance::{AttemptFailure, Outcome};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// The error type of every body the balancer passes on.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body sent to a client or a member.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Returns a body of `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Returns a body with nothing in it.
pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A request body kept for the attempts of one request.
pub enum RequestBody {
    /// Held whole: every attempt sends a copy.
    Replayable(Bytes),
    /// Streamed: the first attempt that reads it consumes it.
    Streamed(Arc<Mutex<Option<Incoming>>>),
}

impl RequestBody {
    /// Reads a body of at most `limit` bytes whole (by its Content-Length);
    /// any other body is left to stream.
    pub async fn prepare(incoming: Incoming, limit: usize) -> Result<RequestBody, BoxError> {
        match incoming.size_hint().exact() {
            Some(0) if incoming.is_end_stream() => Ok(RequestBody::Replayable(Bytes::new())),
            Some(len) if len <= limit as u64 => {
                let collected = Limited::new(incoming, limit).collect().await?;
                Ok(RequestBody::Replayable(collected.to_bytes()))
            }
            _ => Ok(RequestBody::Streamed(Arc::new(Mutex::new(Some(incoming))))),
        }
    }

    /// Returns the body for the next attempt, or `None` when a streamed body
    /// was already read by an earlier one.
    pub fn for_attempt(&self) -> Option<ProxyBody> {
        match self {
            RequestBody::Replayable(bytes) if bytes.is_empty() => Some(empty()),
            RequestBody::Replayable(bytes) => Some(full(bytes.clone())),
            RequestBody::Streamed(slot) => {
                let guard = slot
                    .lock()
                    .expect("the body slot is never poisoned: nothing panics under it");
                guard.as_ref()?;
                Some(
                    SlotBody {
                        slot: slot.clone(),
                        taken: None,
                    }
                    .boxed_unsync(),
                )
            }
        }
    }
}

/// A streamed body that stays in its slot until first read.
struct SlotBody {
    slot: Arc<Mutex<Option<Incoming>>>,
    taken: Option<Incoming>,
}

impl Body for SlotBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.taken.is_none() {
            let taken = self
                .slot
                .lock()
                .expect("the body slot is never poisoned: nothing panics under it")
                .take();
            match taken {
                Some(body) => self.taken = Some(body),
                None => {
                    return Poll::Ready(Some(Err(
                        "the request body was already sent to another member".into(),
                    )))
                }
            }
        }
        let body = self.taken.as_mut().expect("taken just above");
        Pin::new(body).poll_frame(cx).map_err(BoxError::from)
    }

    fn is_end_stream(&self) -> bool {
        match &self.taken {
            Some(body) => body.is_end_stream(),
            None => self
                .slot
                .lock()
                .map(|s| s.as_ref().is_none_or(|b| b.is_end_stream()))
                .unwrap_or(false),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.taken {
            Some(body) => body.size_hint(),
            None => self
                .slot
                .lock()
                .ok()
                .and_then(|s| s.as_ref().map(|b| b.size_hint()))
                .unwrap_or_default(),
        }
    }
}

/// A member's response body on its way to the client; its attempt ends
/// when the body is done (with the outcome of its headers), fails (a reset
/// after the response began) or is dropped (the client went away). Only a
/// body read whole gives its connection back to the pool.
pub struct Tracked {
    inner: Incoming,
    attempt: Option<(Attempt, Outcome, Lease)>,
}

impl Tracked {
    pub fn new(inner: Incoming, attempt: Attempt, outcome: Outcome, lease: Lease) -> Tracked {
        let mut tracked = Tracked {
            inner,
            attempt: Some((attempt, outcome, lease)),
        };
        // hyper never polls a body that is over before it starts (a 204, a
        // HEAD's answer): such an attempt ends here, not as dropped.
        if tracked.inner.is_end_stream() {
            tracked.done();
        }
        tracked
    }

    /// The body was read whole: the attempt ends with the outcome of its
    /// headers and the connection goes back to the pool.
    fn done(&mut self) {
        if let Some((attempt, outcome, lease)) = self.attempt.take() {
            attempt.end(outcome);
            lease.release();
        }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            // hyper stops polling once a body says it is over (its last
            // Content-Length byte came), so the end is seen here too, not
            // only as the final `None`.
            Poll::Ready(None) => self.done(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.done(),
            Poll::Ready(Some(Err(_))) => {
                if let Some((attempt, _, _)) = self.attempt.take() {
                    attempt.member.stats.error();
                    attempt.end(AttemptFailure::AfterResponseBegan.outcome());
                }
            }
            _ => {}
        }
        polled.map_err(BoxError::from)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
