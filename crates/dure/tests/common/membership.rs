//! Waits on agents' membership views, read from each agent's own status
//! endpoint (so they work with the controller down).

use dure_api::PeerState;
use dure_testkit::Sandbox;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// `node`'s own view of its peers (peer → state), as its agent says now.
pub async fn peer_states(sandbox: &Sandbox, node: &str) -> Option<BTreeMap<String, PeerState>> {
    let status = sandbox.agent_status(node).await.ok()?;
    Some(
        status
            .peers
            .into_iter()
            .map(|p| (p.node, p.state))
            .collect(),
    )
}

/// Waits until every observer sees `peer` in `state`; returns how long
/// that took from `since`. Panics after `within` naming the observers'
/// last views.
pub async fn wait_peer_state(
    sandbox: &Sandbox,
    observers: &[&str],
    peer: &str,
    state: PeerState,
    since: Instant,
    within: Duration,
) -> Duration {
    let deadline = Instant::now() + within;
    loop {
        let mut views = BTreeMap::new();
        for observer in observers {
            views.insert(*observer, peer_states(sandbox, observer).await);
        }
        let all = views
            .values()
            .all(|v| v.as_ref().and_then(|v| v.get(peer)) == Some(&state));
        if all {
            return since.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "`{peer}` is not {state} on every one of {observers:?} within {within:?}: {views:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The membership address of `node`'s agent, `IP:PORT`.
pub async fn membership_address(sandbox: &Sandbox, node: &str) -> String {
    sandbox
        .agent_status(node)
        .await
        .expect("agent status")
        .membership_address
        .expect("the agent says where its membership socket is")
}
