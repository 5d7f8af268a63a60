//! `dure export`, `dure diff -f` and `dure apply -f`: the configuration as
//! files that can be kept in version control, compared with the saved
//! configuration, and applied as one revision.

use crate::cli::{ApplyArgs, ExportArgs, TreeFileArgs};
use crate::commands::changes::print_save;
use crate::context::Context;
use crate::exit::Answer;
use crate::output::print_json;
use crate::tree;
use dure_api::{ApplyQuery, DocumentTree};
use std::path::Path;

pub async fn export(ctx: &Context, args: ExportArgs) -> anyhow::Result<()> {
    let path = args.output.path(args.path)?;
    let tree = ctx.client.config_documents(None).await?;
    match path {
        None if ctx.json() => print_json(&tree),
        None => {
            print!("{}", tree::to_toml(&tree)?);
            Ok(())
        }
        Some(path) => {
            let written = tree::write(&path, &tree)?;
            if ctx.json() {
                return print_json(&tree);
            }
            println!("{written} (version {})", tree.version);
            Ok(())
        }
    }
}

/// Prints what applying the file would change. Exit 0 when nothing, 1
/// when something would change.
pub async fn diff(ctx: &Context, args: TreeFileArgs) -> anyhow::Result<()> {
    let result = ctx
        .client
        .apply(
            &read(&args.file)?,
            &ApplyQuery {
                diff: true,
                ..query(&args.file, true)
            },
        )
        .await?;
    if ctx.json() {
        print_json(&result.changes)?;
    } else if result.changes.is_empty() {
        println!(
            "no changes: {} matches the saved configuration (version {})",
            args.file.display(),
            result.version
        );
    } else {
        crate::commands::changes::print_changes(&result.changes, true);
    }
    if result.changes.is_empty() {
        return Ok(());
    }
    // Exit 1 says "there are changes" to scripts, like diff(1); it is not
    // an error.
    Err(Answer(format!(
        "{} differs from the saved configuration in {} document(s)",
        args.file.display(),
        result.changes.len()
    ))
    .into())
}

pub async fn apply(ctx: &Context, args: ApplyArgs) -> anyhow::Result<()> {
    let file = &args.tree.file;
    let result = ctx
        .client
        .apply(&read(file)?, &query(file, args.dry_run))
        .await?;
    print_save(ctx, &result, false)
}

fn read(path: &Path) -> anyhow::Result<DocumentTree> {
    Ok(DocumentTree {
        version: 0,
        revision: 0,
        documents: tree::read(path)?,
    })
}

fn query(file: &Path, dry_run: bool) -> ApplyQuery {
    ApplyQuery {
        dry_run,
        message: Some(format!("apply {}", file.display())),
        diff: false,
    }
}
