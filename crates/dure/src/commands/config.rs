//! `dure config ...`: the saved configuration's history, any version of
//! it, the differences between two versions, and rollback. Every number
//! here is a configuration version (1, 2, 3, …), never a store revision.

use crate::cli::ConfigCommand;
use crate::commands::changes::{print_changes, print_save};
use crate::context::Context;
use crate::exit::Failure;
use crate::output::{ago, now_ms, print_json, Table};
use crate::tree;
use dure_api::{HistoryQuery, RevisionInfo};
use std::io::Write;

pub async fn run(ctx: &Context, command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::History { limit } => {
            let revisions = ctx.client.config_history(&HistoryQuery { limit }).await?;
            if ctx.json() {
                return print_json(&revisions);
            }
            if revisions.is_empty() {
                println!("no saved versions yet");
                return Ok(());
            }
            history_table(&revisions, now_ms()).print();
            Ok(())
        }
        ConfigCommand::Show { rev, path } => {
            let tree = ctx.client.config_documents(rev).await?;
            let Some(path) = path else {
                if ctx.json() {
                    return print_json(&tree);
                }
                print!("{}", tree::to_toml(&tree)?);
                return Ok(());
            };
            let path = format!("/{}", path.trim_start_matches('/'));
            let Some(doc) = tree.documents.get(&path) else {
                return Err(Failure(format!(
                    "no document `{path}` in version {}; list them with `dure config show --rev {}`",
                    tree.version, tree.version
                ))
                .into());
            };
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&tree::canonical_document(&path, doc))?;
            Ok(())
        }
        ConfigCommand::Diff { from, to } => {
            let changes = ctx.client.config_diff(from, to).await?;
            if ctx.json() {
                return print_json(&changes);
            }
            let to = to.map_or("now".to_string(), |t| format!("version {t}"));
            if changes.is_empty() {
                println!("no differences between version {from} and {to}");
            } else {
                print_changes(&changes, true);
            }
            Ok(())
        }
        ConfigCommand::Rollback { number } => {
            let result = ctx.client.rollback(number).await?;
            print_save(ctx, &result, false)
        }
    }
}

/// Returns the history table, newest first.
pub fn history_table(revisions: &[RevisionInfo], now: u64) -> Table {
    let mut table = Table::new(&["VERSION", "WHEN", "ACTOR", "DOCS", "MESSAGE"]);
    for info in revisions {
        table.row(vec![
            info.version.to_string().into(),
            ago(info.time_ms, now).into(),
            info.actor.as_str().into(),
            info.paths.len().to_string().into(),
            info.message.as_str().into(),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_rows() {
        let revisions = [RevisionInfo {
            version: 3,
            revision: 12,
            actor: "admin".into(),
            time_ms: 1_000,
            message: "created server `web1`".into(),
            paths: vec!["/nodes/n1/servers/web1/server.json".into()],
        }];
        assert_eq!(
            history_table(&revisions, 6_000).render(false),
            "VERSION  WHEN    ACTOR  DOCS  MESSAGE\n3        5s ago  admin  1     created server `web1`\n"
        );
    }
}
