//! `dure domain pack|unpack|verify`: domain backup and restore; and
//! `dure domain rotate-key`, a new membership key rolled out to agents.
//!
//! `pack` asks the controller at `--addr` for the archive
//! (`GET /v1/domain/pack`), or — when `--data` (or `DURE_DATA`) names a
//! controller data directory — reads that store directly, which works with
//! or without a controller running on it. Either way the archive is verified
//! before it is saved. `unpack` verifies the whole archive before it writes
//! anything and prepares a data directory for `dure controller --data`.

use crate::cli::{DomainCommand, PackArgs, UnpackArgs};
use crate::context::Context;
use crate::exit::UsageError;
use crate::output::{now_ms, print_json};
use anyhow::Context as _;
use dure_controller::backup::{self, UnpackReport, UnpackRequest, Verified};
use std::path::{Path, PathBuf};

pub async fn run(ctx: &Context, command: DomainCommand) -> anyhow::Result<()> {
    match command {
        DomainCommand::Pack(args) => pack(ctx, args).await,
        DomainCommand::Unpack(args) => unpack(ctx, args).await,
        DomainCommand::Verify { file, .. } => {
            let verified = read_verified(&file)?;
            if ctx.json() {
                return print_json(&verified.manifest);
            }
            println!("{} is a complete, unaltered domain pack", file.display());
            print_summary(&verified);
            Ok(())
        }
        DomainCommand::RotateKey { grace, .. } => {
            let rotation = ctx
                .client
                .rotate_domain_key(Some(&grace.to_string()))
                .await?;
            if ctx.json() {
                return print_json(&rotation);
            }
            println!(
                "membership key rotated: agents learn the new key now, seal with it from {} and stop accepting the old one at {}",
                rotation.seal_new_at, rotation.done_at
            );
            Ok(())
        }
    }
}

async fn pack(ctx: &Context, args: PackArgs) -> anyhow::Result<()> {
    let secrets = args.include_secrets;
    let (file_name, bytes) = match &ctx.data {
        Some(data) => {
            let pack = backup::pack_data_dir(data, secrets, now_ms()).await?;
            (pack.file_name, pack.bytes)
        }
        None => {
            let pack = ctx.client.domain_pack(secrets).await?;
            (pack.file_name, pack.bytes)
        }
    };
    // A pack that does not verify is no backup: say so now, not on the
    // day it is needed.
    let verified = backup::verify(&bytes)
        .map_err(|e| anyhow::anyhow!("the pack just made does not verify: {e}"))?;
    let file = args.output.path(args.file.clone())?;
    let path = destination(file.as_deref(), &file_name);
    backup::save(&path, &bytes, secrets).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
            "{} already exists; choose another file name or remove it first",
            path.display()
        ),
        _ => anyhow::anyhow!("cannot write {}: {e}", path.display()),
    })?;
    if ctx.json() {
        return print_json(&serde_json::json!({
            "file": path,
            "bytes": bytes.len(),
            "manifest": verified.manifest,
        }));
    }
    println!("packed to {} ({} bytes)", path.display(), bytes.len());
    print_summary(&verified);
    if secrets {
        println!("the archive holds the admin token and the membership key: keep it as safe as the token itself");
    }
    Ok(())
}

/// `file` itself, or the default name inside `file` when it is a directory.
fn destination(file: Option<&Path>, default_name: &str) -> PathBuf {
    match file {
        Some(path) if path.is_dir() => path.join(default_name),
        Some(path) => path.to_path_buf(),
        None => PathBuf::from(default_name),
    }
}

async fn unpack(ctx: &Context, args: UnpackArgs) -> anyhow::Result<()> {
    let data = ctx.data.clone().ok_or_else(|| {
        UsageError(
            "unpack needs --data DIR: the data directory of the controller to prepare".into(),
        )
    })?;
    let archive = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let (listen_ip, listen_port) = match args.listen {
        Some((ip, port)) => (Some(ip), port),
        None => (None, None),
    };
    let report = backup::unpack(UnpackRequest {
        archive,
        data_dir: data,
        listen_ip,
        port: args.port.or(listen_port),
        rename: args.node,
        force: args.force,
    })
    .await
    .with_context(|| format!("cannot unpack {}", args.file.display()))?;
    if ctx.json() {
        return print_json(&serde_json::json!({
            "data": report.data_dir,
            "config_file": report.config_file,
            "listen": report.listen,
            "packed_version": report.packed_version,
            "packed_revision": report.packed_revision,
            "version": report.version,
            "revision": report.revision,
            "renamed": report.renamed,
            "token_restored": report.token_restored,
            "replaced": report.replaced,
        }));
    }
    print_unpacked(&report);
    Ok(())
}

fn print_unpacked(report: &UnpackReport) {
    let data = report.data_dir.display();
    println!(
        "unpacked into {data}: version {} · {} · {} · {}",
        report.packed_version,
        nodes(&report.nodes),
        count(report.servers, "server"),
        count(report.clusters, "cluster")
    );
    if let Some((from, to)) = &report.renamed {
        println!(
            "renamed node `{from}` to `{to}` as version {} (see `dure config history`)",
            report.version
        );
    }
    if let Some(aside) = &report.replaced {
        println!(
            "the directory that was there is kept at {}",
            aside.display()
        );
    }
    println!(
        "wrote {} (listen = \"{}\")",
        report.config_file.display(),
        report.listen
    );
    if report.token_restored {
        println!("restored the admin token: agents keep using theirs");
    } else {
        println!(
            "the archive has no admin token: the controller generates a new one at first start; \
             give it to every agent (--token)"
        );
    }
    println!();
    println!("Start the controller:");
    println!("  dure controller --data {data}");
    let host = if report.listen.ip().is_unspecified() {
        "<this host>".to_string()
    } else {
        report.listen.ip().to_string()
    };
    println!(
        "Then start each agent again with --controller http://{host}:{}",
        report.listen.port()
    );
    if let Some((from, to)) = &report.renamed {
        println!("(the agent of node `{from}` as --node {to}, with its same agent data directory)");
    }
}

fn read_verified(file: &Path) -> anyhow::Result<Verified> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    backup::verify(&bytes).with_context(|| format!("{} does not verify", file.display()))
}

fn print_summary(verified: &Verified) {
    let m = &verified.manifest;
    println!(
        "domain `{}` at version {}, packed {} by dure {}",
        m.domain, verified.version, m.created, m.dure_version
    );
    println!(
        "{} · {} · {} · {} · admin token {}",
        nodes(&m.contents.nodes),
        count(m.contents.servers, "server"),
        count(m.contents.clusters, "cluster"),
        count(m.contents.history_changes, "history change"),
        if m.secrets {
            "included"
        } else {
            "not included"
        }
    );
}

fn nodes(names: &[String]) -> String {
    match names {
        [] => "no nodes".to_string(),
        [one] => format!("node {one}"),
        many => format!("nodes {}", many.join(", ")),
    }
}

/// `1 server`, `2 servers`.
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
