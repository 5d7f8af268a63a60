//! `dure app deploy|list|show|history|rollback`: a cluster's applications.
//! A deploy checks what it can here (the file, the context), packs a
//! directory as a tar in a temporary file, uploads the artifact streamed
//! from its file, and follows the deploy operation like `cluster restart`
//! does (exit 1 when a member fails, naming it and why).

use crate::cli::{AppCommand, RolloutArgs};
use crate::commands::cluster::follow;
use crate::context::Context;
use crate::exit::UsageError;
use crate::output::{ago, now_ms, or_dash, print_json, Cell, Colour, Table};
use dure_api::{AppRollbackRequest, AppVersionView, AppView, DeployRequest, OperationStatus};
use dure_core::application::{check_context, ArtifactKind};
use std::io::Read;
use std::path::Path;

pub async fn run(ctx: &Context, command: AppCommand) -> anyhow::Result<()> {
    match command {
        AppCommand::Deploy {
            cluster,
            artifact,
            context,
            rollout,
            wait,
        } => deploy(ctx, &cluster, &artifact, context, rollout, wait).await,
        AppCommand::List { cluster } => {
            let apps = ctx.client.apps(&cluster).await?;
            if ctx.json() {
                return print_json(&apps);
            }
            if apps.is_empty() {
                println!("cluster `{cluster}` has no applications yet: deploy one with `dure app deploy {cluster} --war FILE`");
                return Ok(());
            }
            list_table(&apps, now_ms()).print();
            Ok(())
        }
        AppCommand::Show { cluster, context } => {
            let mut apps = ctx.client.apps(&cluster).await?;
            if let Some(context) = &context {
                apps.retain(|a| &a.context == context);
                if apps.is_empty() {
                    return Err(UsageError(format!(
                        "cluster `{cluster}` has no application at context `{context}`: see `dure app list {cluster}`"
                    ))
                    .into());
                }
            }
            if ctx.json() {
                return print_json(&apps);
            }
            for (i, app) in apps.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                let newest = &app.newest.record;
                println!(
                    "{}  version {} ({}, {}, {} bytes, {}) by {}",
                    app.context,
                    newest.version,
                    &newest.digest[..newest.digest.len().min(12)],
                    newest.kind,
                    newest.size,
                    status_text(app.newest.status),
                    newest.actor
                );
                member_table(app).print();
            }
            Ok(())
        }
        AppCommand::History { cluster } => {
            let history = ctx.client.app_history(&cluster).await?;
            if ctx.json() {
                return print_json(&history);
            }
            if history.is_empty() {
                println!("cluster `{cluster}` has no application versions yet");
                return Ok(());
            }
            history_table(&history, now_ms()).print();
            Ok(())
        }
        AppCommand::Rollback {
            cluster,
            to,
            rollout,
            wait,
        } => {
            let request = AppRollbackRequest {
                to,
                rolling: rollout.rolling,
                batch: rollout.batch,
            };
            let started = ctx.client.rollback_app(&cluster, &request).await?;
            if !ctx.json() {
                println!(
                    "rolling `{}` of cluster `{cluster}` back to version {to} as version {}",
                    started.version.context, started.version.version
                );
            }
            follow(ctx, &cluster, started.operation, wait).await
        }
    }
}

async fn deploy(
    ctx: &Context,
    cluster: &str,
    artifact: &Path,
    context: Option<String>,
    rollout: RolloutArgs,
    wait: crate::cli::WaitArgs,
) -> anyhow::Result<()> {
    let meta = std::fs::metadata(artifact).map_err(|e| {
        UsageError(format!(
            "cannot read `{}` ({e}): give a WAR file or an application directory with --war",
            artifact.display()
        ))
    })?;
    let context = match context {
        Some(context) => context,
        None => context_of(artifact)?,
    };
    check_context(&context).map_err(|e| UsageError(format!("{e} (--context)")))?;
    // An unknown cluster is said before anything is uploaded.
    ctx.client.get_cluster(cluster).await?;
    // A directory goes up as a tar written beside nothing of the user's:
    // a temporary file, removed when this returns.
    let packed;
    let upload: &Path = if meta.is_dir() {
        packed = pack_dir(artifact)?;
        packed.path()
    } else {
        check_war(artifact)?;
        artifact
    };
    let stored = ctx.client.upload_artifact(upload).await?;
    if !ctx.json() {
        println!(
            "uploaded `{}`: {} bytes, SHA-256 {}",
            artifact.display(),
            stored.size,
            stored.digest
        );
    }
    let request = DeployRequest {
        context,
        digest: stored.digest,
        rolling: rollout.rolling,
        batch: rollout.batch,
    };
    let started = ctx.client.deploy_app(cluster, &request).await?;
    if !ctx.json() {
        println!(
            "deploying `{}` version {} to cluster `{cluster}`{}",
            started.version.context,
            started.version.version,
            if rollout.rolling { ", rolling" } else { "" }
        );
    }
    follow(ctx, cluster, started.operation, wait).await
}

/// The context a file or directory name gives, as Tomcat reads it:
/// `ROOT.war` is `/`, `shop.war` is `/shop`, `a#b.war` is `/a/b`.
fn context_of(artifact: &Path) -> Result<String, UsageError> {
    let named = artifact
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let Some(name) = named else {
        return Err(UsageError(format!(
            "cannot tell a context from `{}`: give --context /PATH",
            artifact.display()
        )));
    };
    let stem = name.strip_suffix(".war").unwrap_or(&name);
    Ok(match stem {
        "ROOT" => "/".to_string(),
        stem => format!("/{}", stem.replace('#', "/")),
    })
}

/// Refuses a file that is not a zip (what a WAR is), before uploading it.
fn check_war(path: &Path) -> Result<(), UsageError> {
    let mut head = [0u8; 4];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head));
    if read.is_err() || ArtifactKind::sniff(&head) != Some(ArtifactKind::War) {
        return Err(UsageError(format!(
            "`{}` is not a WAR file (a zip archive): give a .war file or an application directory",
            path.display()
        )));
    }
    Ok(())
}

/// Packs an application directory as a tar in a temporary file.
fn pack_dir(dir: &Path) -> anyhow::Result<tempfile::NamedTempFile> {
    let file = tempfile::NamedTempFile::new().map_err(|e| {
        anyhow::anyhow!(
            "cannot create a temporary file to pack `{}`: {e}",
            dir.display()
        )
    })?;
    let mut builder = tar::Builder::new(file.as_file());
    builder.follow_symlinks(false);
    builder
        .append_dir_all(".", dir)
        .and_then(|()| builder.finish())
        .map_err(|e| UsageError(format!("cannot pack `{}`: {e}", dir.display())))?;
    drop(builder);
    Ok(file)
}

fn status_text(status: Option<OperationStatus>) -> String {
    status.map_or_else(|| "-".to_string(), |s| s.to_string())
}

fn status_cell(status: Option<OperationStatus>) -> Cell {
    let colour = match status {
        Some(OperationStatus::Succeeded) => Colour::Green,
        Some(OperationStatus::Running) => Colour::Yellow,
        Some(OperationStatus::Failed) => Colour::Red,
        None => Colour::Gray,
    };
    Cell::coloured(status_text(status), colour)
}

fn short(digest: &str) -> String {
    digest.chars().take(12).collect()
}

fn list_table(apps: &[AppView], now: u64) -> Table {
    let mut table = Table::new(&[
        "CONTEXT", "VERSION", "DIGEST", "KIND", "ON IT", "STATUS", "DEPLOYED",
    ]);
    for app in apps {
        let newest = &app.newest.record;
        let on_it = app
            .members
            .iter()
            .filter(|m| m.installed == Some(newest.version))
            .count();
        table.row(vec![
            app.context.as_str().into(),
            newest.version.to_string().into(),
            short(&newest.digest).into(),
            newest.kind.to_string().into(),
            format!("{on_it}/{}", app.members.len()).into(),
            status_cell(app.newest.status),
            ago(now, newest.created_ms).into(),
        ]);
    }
    table
}

fn member_table(app: &AppView) -> Table {
    let mut table = Table::new(&["MEMBER", "NODE", "INSTALLED", "STAGED", "ERROR"]);
    for member in &app.members {
        let error = member
            .error
            .as_ref()
            .map(|e| format!("version {}: {}", e.version, e.message));
        table.row(vec![
            member.server.as_str().into(),
            member.node.as_str().into(),
            or_dash(member.installed).into(),
            or_dash(member.staged).into(),
            or_dash(error).into(),
        ]);
    }
    table
}

fn history_table(history: &[AppVersionView], now: u64) -> Table {
    let mut table = Table::new(&[
        "VERSION",
        "CONTEXT",
        "DIGEST",
        "KIND",
        "SIZE",
        "STATUS",
        "OPERATION",
        "BY",
        "WHEN",
        "NOTE",
    ]);
    for view in history {
        let record = &view.record;
        table.row(vec![
            record.version.to_string().into(),
            record.context.as_str().into(),
            short(&record.digest).into(),
            record.kind.to_string().into(),
            record.size.to_string().into(),
            status_cell(view.status),
            or_dash(record.operation.as_deref()).into(),
            record.actor.as_str().into(),
            ago(now, record.created_ms).into(),
            or_dash(record.rollback_of.map(|v| format!("rollback to {v}"))).into(),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_comes_from_the_file_name_as_tomcat_reads_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, context) in [
            ("ROOT.war", "/"),
            ("shop.war", "/shop"),
            ("a#b.war", "/a/b"),
            ("site", "/site"),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, b"x").expect("file");
            assert_eq!(context_of(&path).expect(name), context, "{name}");
        }
    }

    #[test]
    fn a_file_that_is_no_war_is_refused_before_uploading() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.war");
        std::fs::write(&path, b"<html>").expect("file");
        let refused = check_war(&path).expect_err("not a zip");
        assert!(refused.0.contains("is not a WAR file"), "{}", refused.0);
        std::fs::write(&path, b"PK\x03\x04rest").expect("zip");
        assert!(check_war(&path).is_ok());
    }

    #[test]
    fn a_directory_is_packed_as_a_tar_the_controller_recognises() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("app/WEB-INF")).expect("dirs");
        std::fs::write(dir.path().join("app/index.html"), "hi").expect("file");
        let packed = pack_dir(&dir.path().join("app")).expect("packed");
        let bytes = std::fs::read(packed.path()).expect("read");
        assert_eq!(ArtifactKind::sniff(&bytes), Some(ArtifactKind::Dir));
        let mut names: Vec<String> = tar::Archive::new(bytes.as_slice())
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect();
        names.sort();
        assert!(names.iter().any(|n| n.ends_with("index.html")), "{names:?}");
    }
}
