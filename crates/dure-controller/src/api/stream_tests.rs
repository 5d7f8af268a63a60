//! The event stream over real HTTP: events arrive live, a reconnect with
//! `Last-Event-ID` gets exactly the missed ones, the stream needs the token
//! and a client that goes away leaves no subscriber behind.

use crate::app::App;
use crate::testing::{app_in, TOKEN};
use dure_api::{Client, EventStream, StreamMessage};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Serves the API of `app` on loopback.
async fn serve(app: Arc<App>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, super::router(app)).await });
    addr
}

async fn record(app: &App, count: usize) {
    for i in 0..count {
        app.events
            .record("test", "test", "node/n1", format!("event {i}"))
            .await;
    }
}

async fn next_seq(stream: &mut EventStream) -> u64 {
    match tokio::time::timeout(Duration::from_secs(20), stream.next()).await {
        Ok(Ok(Some(StreamMessage::Event(event)))) => event.seq,
        other => panic!("not an event: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_live_and_a_reconnect_resumes_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_in(dir.path()).await;
    let addr = serve(app.clone()).await;
    let client = Client::new(&addr.to_string(), TOKEN);

    // Without a starting point: only what comes after the connection.
    let before = app.events.newest();
    let mut stream = client.event_stream(None, None).await.expect("stream");
    record(&app, 3).await;
    for n in 1..=3 {
        assert_eq!(next_seq(&mut stream).await, before + n);
    }
    let last = stream.last_id().expect("an id");
    assert_eq!(last, before + 3);

    // The client goes; its subscriber ends (it notices on the next writes).
    drop(stream);
    let mut gone = false;
    for _ in 0..200 {
        if app.watch.waiters() == 0 {
            gone = true;
            break;
        }
        record(&app, 1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the subscriber of a closed stream ended");

    // Missed while away: sent from the log on reconnect, then live, each once.
    record(&app, 5).await;
    let newest = app.events.newest();
    let mut stream = client
        .event_stream(Some(last), None)
        .await
        .expect("resumed");
    for seq in last + 1..=newest {
        assert_eq!(next_seq(&mut stream).await, seq);
    }
    record(&app, 1).await;
    assert_eq!(next_seq(&mut stream).await, newest + 1);

    // A subject filter: only those events.
    app.events
        .record("test", "test", "server/web1", "for the filter")
        .await;
    let mut filtered = client
        .event_stream(Some(last), Some("server/"))
        .await
        .expect("filtered");
    let Ok(Some(StreamMessage::Event(event))) = filtered.next().await else {
        panic!("an event");
    };
    assert_eq!(event.subject, "server/web1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_needs_the_token_and_a_valid_last_event_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_in(dir.path()).await;
    let addr = serve(app.clone()).await;
    let error = Client::new(&addr.to_string(), "wrong")
        .event_stream(None, None)
        .await
        .err()
        .expect("refused");
    assert_eq!(error.status(), Some(401), "{error}");

    let response = reqwest::Client::new()
        .get(format!("http://{addr}{}", dure_api::routes::EVENTS_STREAM))
        .bearer_auth(TOKEN)
        .header("last-event-id", "yesterday")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 400);
    let body: dure_api::ErrorBody = response.json().await.expect("error body");
    assert!(
        body.error
            .message
            .contains("`Last-Event-ID` `yesterday` is invalid"),
        "{}",
        body.error.message
    );
}
