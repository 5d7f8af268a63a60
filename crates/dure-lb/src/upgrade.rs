//! Protocol upgrades (WebSocket and any other `Upgrade:`): once the member
//! answers 101, the client gets the 101 and both connections are handed
//! over by hyper and copied into each other until either side closes.

use crate::body::{empty, ProxyBody};
use crate::cluster::Attempt;
use crate::headers;
use crate::upstream::Lease;
use dure_core::balance::Outcome;
use http::Response;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// Returns the 101 for the client and starts the tunnel between its
/// connection and the member's.
pub fn tunnel(
    attempt: Attempt,
    mut response: Response<Incoming>,
    lease: Lease,
    client: OnUpgrade,
) -> Response<ProxyBody> {
    let member = hyper::upgrade::on(&mut response);
    let (mut parts, _) = response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    tokio::spawn(async move {
        let upgraded = tokio::try_join!(client, member);
        // The member's connection is the tunnel's now, never pooled again.
        drop(lease);
        let outcome = match upgraded {
            Ok((client, member)) => {
                let (mut client, mut member) = (TokioIo::new(client), TokioIo::new(member));
                match tokio::io::copy_bidirectional(&mut client, &mut member).await {
                    Ok(_) => Outcome::Success,
                    Err(e) => {
                        tracing::debug!(member = %attempt.member.name, error = %e, "upgraded connection ended with an error");
                        Outcome::Aborted
                    }
                }
            }
            Err(e) => {
                tracing::debug!(member = %attempt.member.name, error = %e, "upgrade failed");
                Outcome::Aborted
            }
        };
        attempt.end(outcome);
    });
    Response::from_parts(parts, empty())
}
