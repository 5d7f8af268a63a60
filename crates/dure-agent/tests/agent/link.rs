//! The controller link against a stand-in controller that answers and then
//! stops answering without closing anything, as a stopped or wedged
//! controller process does: the agent must count it as away after three
//! missed heartbeats, not after the client's whole request timeout.

use crate::support::*;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use dure_agent::{Agent, AgentConfig};
use dure_api::{routes, AgentMode, AgentWelcome, Client, DesiredNode, DesiredQuery};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Whether the stand-in still answers.
type Answering = Arc<AtomicBool>;

/// A controller for node `n1` with 200 ms heartbeats; returns its URL.
async fn stand_in(answering: Answering) -> String {
    let app = Router::new()
        .route(routes::AGENT_REGISTER, post(register))
        .route(&routes::agent_desired("n1"), get(desired))
        .route(&routes::agent_report("n1"), post(report))
        .with_state(answering);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// Holds the request forever once the stand-in stopped answering.
async fn stall_unless(answering: &AtomicBool) {
    if !answering.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
}

async fn register(State(answering): State<Answering>) -> Json<AgentWelcome> {
    stall_unless(&answering).await;
    Json(AgentWelcome {
        node: serde_json::from_value(json!({"name": "n1", "address": "127.0.0.1"})).expect("node"),
        heartbeat_interval_ms: 200,
        membership: None,
    })
}

async fn desired(
    State(answering): State<Answering>,
    Query(query): Query<DesiredQuery>,
) -> Json<DesiredNode> {
    stall_unless(&answering).await;
    if query.index >= 1 {
        // Nothing newer: the long poll blocks.
        std::future::pending::<()>().await;
    }
    Json(DesiredNode {
        index: 1,
        servers: Vec::new(),
        membership_keys: None,
        apps: Vec::new(),
    })
}

async fn report(State(answering): State<Answering>) -> Json<Value> {
    stall_unless(&answering).await;
    Json(json!({}))
}

#[tokio::test]
async fn a_controller_that_stops_answering_counts_as_away_after_three_heartbeats() {
    let sandbox = Sandbox::new();
    let answering = Answering::default();
    answering.store(true, Ordering::SeqCst);
    let url = stand_in(answering.clone()).await;
    let agent = Agent::start(AgentConfig::new("n1", url, "t", sandbox.dir.path()))
        .await
        .expect("agent starts");
    let client = Client::new(&agent.addr().to_string(), "t");
    wait_status(&client, "managed with the controller reachable", |s| {
        s.mode == AgentMode::Managed && s.controller_reachable && s.local_copy_index == Some(1)
    })
    .await;

    answering.store(false, Ordering::SeqCst);
    // The wait (LONG) ends before the client's 30 s request timeout would:
    // only the heartbeat bound on reports gets the agent there in time.
    let away = wait_status(&client, "independent", |s| s.mode == AgentMode::Independent).await;
    assert!(!away.controller_reachable, "{away:?}");
    agent.shutdown().await.expect("shutdown");
}
