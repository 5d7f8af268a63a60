//! `--token-file` and `DURE_TOKEN_FILE` through the real binary: a verb and
//! an agent authenticate with a token read from a file (never on the
//! command line), and a file that cannot be used is a usage error (exit 2)
//! that says which file and why.

mod common;

use common::*;
use dure_testkit::ChildProcess;
use std::process::Output;

/// `dure` with no `DURE_` variable from the caller, and `env` set.
fn dure(args: &[&str], env: &[(&str, &str)]) -> Output {
    dure_isolated(None, args, env)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_read_from_files_and_bad_files_are_refused() {
    let sandbox = sandbox(&[]).await;
    let url = sandbox.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("token");
    std::fs::write(&good, format!("  {}\n", sandbox.token())).expect("write");
    let good = good.to_str().expect("utf-8");
    let addr = ("DURE_ADDR", url.as_str());
    let ca_file = sandbox.ca_file();
    let ca_file = ca_file.to_str().expect("utf-8");
    let ca = ("DURE_CA", ca_file);

    let output = dure(&["node", "list", "--token-file", good], &[addr, ca]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let output = dure(&["node", "list"], &[addr, ca, ("DURE_TOKEN_FILE", good)]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));

    let empty = dir.path().join("empty");
    std::fs::write(&empty, " \n").expect("write");
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-token\n").expect("write");
    let missing = dir.path().join("missing");
    let (empty, wrong, missing) = (
        empty.to_str().expect("utf-8"),
        wrong.to_str().expect("utf-8"),
        missing.to_str().expect("utf-8"),
    );
    // Flags, variables, the exit code and what stderr says.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], i32, &'a str);
    let cases: [Case; 5] = [
        (
            &["--token-file", missing],
            &[],
            2,
            "cannot read the token file",
        ),
        (&["--token-file", empty], &[], 2, "is empty"),
        (
            &[],
            &[("DURE_TOKEN_FILE", missing)],
            2,
            "cannot read the token file",
        ),
        (
            &[],
            &[("DURE_TOKEN_FILE", good), ("DURE_TOKEN", "x")],
            2,
            "both DURE_TOKEN and DURE_TOKEN_FILE are set",
        ),
        (&["--token-file", wrong], &[], 3, "the token was read from"),
    ];
    for (flags, env, code, needle) in cases {
        let mut args = vec!["server", "list"];
        args.extend_from_slice(flags);
        let mut env = env.to_vec();
        env.extend([addr, ca]);
        let output = dure(&args, &env);
        let err = text(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?} {env:?}: {err}");
        assert!(err.contains(needle), "{args:?} {env:?}: {err}");
    }
    let output = dure(
        &["node", "list", "--token", "t", "--token-file", good],
        &[addr, ca],
    );
    assert_eq!(output.status.code(), Some(2), "one of the two");

    // The agent: a bad file stops it at once; a good one gets it registered.
    let data = dir.path().join("agent");
    let data = data.to_str().expect("utf-8");
    let agent_args = |file: &str| {
        [
            "agent",
            "--node",
            "n9",
            "--controller",
            &url,
            "--ca",
            ca_file,
            "--data",
            data,
            "--token-file",
            file,
        ]
        .map(str::to_string)
    };
    let output = dure(&agent_args(empty).each_ref().map(String::as_str), &[]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("is empty"),
        "{}",
        text(&output.stderr)
    );
    let args = agent_args(good);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let log = dir.path().join("agent.log");
    let _agent =
        ChildProcess::spawn(std::path::Path::new(BIN), &args, &[], &log).expect("agent starts");
    let client = sandbox.client();
    eventually("the agent with a token file registers", SETTLE, || async {
        client
            .get_node("n9")
            .await
            .ok()
            .filter(|n| n.status == dure_api::NodeStatus::Online)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}
