//! Walks every subcommand of the real binary through its help (the
//! `Commands:` lists) and checks what a user sees: each verb's help and
//! usage lines show only what applies to it, and values that `DURE_`
//! variables give never make a flag look required or print a secret.

use std::process::{Command, Output};

fn dure(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dure"));
    for var in [
        "DURE_ADDR",
        "DURE_TOKEN",
        "DURE_TOKEN_FILE",
        "DURE_DATA",
        "DURE_HOME",
        "DURE_CONTROLLER",
        "DURE_NODE",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run dure")
}

/// The subcommand names a help text lists under `Commands:`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Every runnable subcommand path, such as `["server", "create"]`.
fn leaves() -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let output = dure(&args, &[]);
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        let subs = subcommands(&String::from_utf8_lossy(&output.stdout));
        for sub in &subs {
            let mut next = path.clone();
            next.push(sub.clone());
            todo.push(next);
        }
        if subs.is_empty() {
            out.push(path);
        }
    }
    out
}

const SECRET: &str = "s3cret-token-value";

#[test]
fn variables_never_make_flags_look_required() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, SECRET).expect("write");
    let token_file = token_file.to_str().expect("utf-8");
    let data = dir.path().to_str().expect("utf-8");
    let env = [
        ("DURE_ADDR", "http://127.0.0.1:9"),
        ("DURE_TOKEN", SECRET),
        ("DURE_DATA", data),
        ("DURE_CONTROLLER", "http://127.0.0.1:9"),
        ("DURE_NODE", "n1"),
    ];
    let leaves = leaves();
    assert!(leaves.len() > 40, "{leaves:?}");
    for path in &leaves {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--no-such-flag");
        let output = dure(&args, &env);
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        let usage = err
            .lines()
            .find(|line| line.starts_with("Usage:"))
            .unwrap_or_else(|| panic!("{args:?}: no usage line in {err}"));
        for flag in ["--addr <", "--token <", "--data <", "--controller <"] {
            assert!(!usage.contains(flag), "{args:?}: `{usage}` shows {flag}");
        }
        if path == &["agent"] {
            assert!(!usage.contains("--node <"), "`{usage}`: DURE_NODE gives it");
        }
        args.pop();
        args.push("--help");
        let output = dure(
            &args,
            &[("DURE_TOKEN_FILE", token_file), ("DURE_TOKEN", SECRET)],
        );
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(!help.contains(SECRET), "{args:?} prints the token");
    }
}

#[test]
fn agent_help_lists_one_controller_flag() {
    let output = dure(&["agent", "--help"], &[]);
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--controller <URL>"), "{help}");
    assert!(!help.contains("--addr"), "{help}");
    assert!(help.contains("--token-file <PATH>"), "{help}");
    assert!(!help.contains("--output"), "{help}");
    let output = dure(&["node", "list", "--help"], &[]);
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("-o, --output <table|json>"), "{help}");
    assert!(!help.contains("PATH for"), "{help}");
    let output = dure(&["export", "--help"], &[]);
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("-o, --output <table|json|PATH>"), "{help}");
}
