//! `dure changes`: the caller's change set (list with `--diff`, `save`,
//! `discard`), and how every configuration verb reports a saved or a
//! staged change.

use crate::cli::{ChangesArgs, ChangesCommand};
use crate::context::Context;
use crate::output::{print_json, Cell, Colour, Table};
use dure_api::{ChangeKind, ChangeOutcome, Changed, DocumentChange, SaveRequest, SaveResult};
use serde::Serialize;

/// What to do after a staged change.
pub const STAGED_HINT: &str =
    "staged in your change set: review with `dure changes --diff`, save with `dure changes save`";

pub async fn run(ctx: &Context, args: ChangesArgs) -> anyhow::Result<()> {
    match args.command {
        None => {
            let view = ctx.client.changes().await?;
            if ctx.json() {
                return print_json(&view);
            }
            if view.changes.is_empty() {
                println!(
                    "no staged changes (the saved configuration is at version {})",
                    view.saved_version
                );
                return Ok(());
            }
            println!(
                "your change set (begun at version {}, saved configuration now at {}):",
                view.base_version, view.saved_version
            );
            print_changes(&view.changes, args.diff);
            if !view.conflicts.is_empty() {
                println!(
                    "conflicts: {} changed in the saved configuration since you staged them; saving is refused until you discard and stage again",
                    view.conflicts.join(", ")
                );
            } else if !args.diff {
                println!("see the diff with `dure changes --diff`; save with `dure changes save`");
            }
            Ok(())
        }
        Some(ChangesCommand::Save { message }) => {
            let result = ctx.client.save_changes(&SaveRequest { message }).await?;
            print_save(ctx, &result, args.diff)
        }
        Some(ChangesCommand::Discard) => {
            let dropped = ctx.client.discard_changes().await?;
            if ctx.json() {
                return print_json(&dropped);
            }
            if dropped.changes.is_empty() {
                println!("nothing to discard: your change set is empty");
            } else {
                println!("discarded {} staged document(s)", dropped.changes.len());
                print_changes(&dropped.changes, false);
            }
            Ok(())
        }
    }
}

/// Prints the answer of a save, an apply or a rollback.
pub fn print_save(ctx: &Context, result: &SaveResult, diff: bool) -> anyhow::Result<()> {
    if ctx.json() {
        return print_json(result);
    }
    println!("{}", result.message);
    print_changes(&result.changes, diff);
    Ok(())
}

/// Prints one line per changed document (`added  /clusters/c/cluster.json`),
/// and with `diff` the unified diff of each.
pub fn print_changes(changes: &[DocumentChange], diff: bool) {
    if diff {
        for change in changes {
            print!("{}", change.diff);
        }
        return;
    }
    if !changes.is_empty() {
        changes_table(changes).print();
    }
}

/// Returns the table of changed documents.
pub fn changes_table(changes: &[DocumentChange]) -> Table {
    let mut table = Table::new(&["CHANGE", "PATH"]);
    for change in changes {
        table.row(vec![kind_cell(change.kind), change.path.as_str().into()]);
    }
    table
}

fn kind_cell(kind: ChangeKind) -> Cell {
    match kind {
        ChangeKind::Added => Cell::coloured("added", Colour::Green),
        ChangeKind::Modified => Cell::coloured("modified", Colour::Yellow),
        ChangeKind::Deleted => Cell::coloured("deleted", Colour::Red),
    }
}

/// Prints the answer of a configuration change: JSON, or the verb's own
/// sentence when it was saved, or what was staged and how to save it.
pub fn print_change<T: Serialize>(
    ctx: &Context,
    changed: &Changed<T>,
    saved: String,
    staged: String,
) -> anyhow::Result<()> {
    if ctx.json() {
        return print_json(&changed.value);
    }
    match changed.outcome {
        ChangeOutcome::Saved => println!("{saved}"),
        ChangeOutcome::Staged => println!("{staged} (not saved)\n{STAGED_HINT}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_list_as_kind_and_path() {
        let changes = [
            DocumentChange {
                path: "/clusters/c/cluster.json".into(),
                kind: ChangeKind::Added,
                diff: String::new(),
            },
            DocumentChange {
                path: "/nodes/n1/servers/web1/server.json".into(),
                kind: ChangeKind::Modified,
                diff: String::new(),
            },
        ];
        assert_eq!(
            changes_table(&changes).render(false),
            "CHANGE    PATH\nadded     /clusters/c/cluster.json\nmodified  /nodes/n1/servers/web1/server.json\n"
        );
    }
}
