//! `dure server logs NAME --tail N` prints the last N lines of the server's
//! log (through the controller, from the node's agent): fewer when the log
//! is shorter, nothing for 0, a last line without a newline counts, and a
//! bad N is a usage error (exit 2).

mod common;

use common::*;
use dure_core::{Intent, ServerState};

/// A server that prints 50 numbered lines and a last one without a
/// newline, then waits. It first waits (boundedly) for the agent's
/// `started` marker in its log, so that its output comes after it.
fn printer(name: &str, node: &str) -> dure_core::ServerSpec {
    let script = "n=0; until grep -q 'dure-agent. started' /proc/$$/fd/1 || [ $n -ge 100 ]; \
                  do sleep 0.1; n=$((n+1)); done; \
                  i=1; while [ $i -le 50 ]; do echo \"line $i\"; i=$((i+1)); done; \
                  printf 'no newline'; exec sleep 600";
    command_server(
        name,
        node,
        free_port(),
        vec!["/bin/sh".into(), "-c".into(), script.into()],
    )
}

fn logs(sandbox: &Sandbox, tail: &str) -> (i32, String, String) {
    cli(sandbox, &["server", "logs", "printer", "--tail", tail])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_counts_lines() {
    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    client
        .create_server(&printer("printer", "n1"))
        .await
        .expect("created");
    client
        .server_intent("printer", Intent::Run)
        .await
        .expect("start");
    wait_server_state(&client, "printer", ServerState::Ready).await;
    eventually("the whole output in the log", SETTLE, || async {
        let (_, out, _) = logs(&sandbox, "1");
        (out == "no newline").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", logs(&sandbox, "1")));

    let (code, out, err) = logs(&sandbox, "3");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "line 49\nline 50\nno newline");

    // More lines than the log has: all of it, the agent's own marker first.
    for many in ["1000", "18446744073709551615"] {
        let (code, out, err) = logs(&sandbox, many);
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with("[dure-agent] "), "{out}");
        assert!(out.contains("\nline 1\nline 2\n"), "{out}");
        assert!(out.ends_with("line 50\nno newline"), "{out}");
    }

    let (code, out, err) = logs(&sandbox, "0");
    assert_eq!((code, out.as_str()), (0, ""), "{err}");

    for bad in ["abc", "-3", "1.5", "18446744073709551616"] {
        let (code, out, err) = logs(&sandbox, bad);
        assert_eq!(code, 2, "--tail {bad}: {out}{err}");
        assert!(err.contains(bad), "--tail {bad}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_a_log_query_asking_for_two_things() {
    let sandbox = sandbox(&["n1"]).await;
    let client = sandbox.client();
    client
        .create_server(&printer("printer", "n1"))
        .await
        .expect("created");
    let url = format!("{}/v1/servers/printer/logs?lines=3&tail=10", sandbox.url());
    let response = sandbox
        .http_client()
        .get(&url)
        .bearer_auth(sandbox.token())
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 400);
    let body = response.text().await.expect("body");
    assert!(
        body.contains("give one of ?offset=N, ?lines=N and ?tail=BYTES"),
        "{body}"
    );
    let url = format!("{}/v1/servers/printer/logs?lines=many", sandbox.url());
    let response = sandbox
        .http_client()
        .get(&url)
        .bearer_auth(sandbox.token())
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 400);
}
