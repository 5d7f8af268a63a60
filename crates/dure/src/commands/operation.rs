//! `dure operation show|list`: tracked cluster operations and their steps.

use crate::cli::OperationCommand;
use crate::context::Context;
use crate::output::{ago, fields, now_ms, or_dash, print_json, span, Cell, Colour, Table};
use crate::progress::step_label;
use dure_api::{Operation, OperationQuery, OperationStatus, StepStatus};

pub async fn run(ctx: &Context, command: OperationCommand) -> anyhow::Result<()> {
    match command {
        OperationCommand::Show { id } => {
            let op = ctx.client.get_operation(&id).await?;
            if ctx.json() {
                return print_json(&op);
            }
            print!("{}", operation_details(&op, now_ms()));
            println!();
            step_table(&op).print();
            Ok(())
        }
        OperationCommand::List { cluster, limit } => {
            let query = OperationQuery {
                cluster,
                limit: Some(limit),
            };
            let ops = ctx.client.list_operations(&query).await?;
            if ctx.json() {
                return print_json(&ops);
            }
            if ops.is_empty() {
                println!("no operations yet: they are made by `dure cluster start|stop|kill`");
                return Ok(());
            }
            operation_table(&ops, now_ms()).print();
            Ok(())
        }
    }
}

fn status_cell(status: OperationStatus) -> Cell {
    let colour = match status {
        OperationStatus::Running => Colour::Yellow,
        OperationStatus::Succeeded => Colour::Green,
        OperationStatus::Failed => Colour::Red,
    };
    Cell::coloured(status.to_string(), colour)
}

fn step_cell(status: StepStatus) -> Cell {
    let colour = match status {
        StepStatus::Done | StepStatus::AlreadyDone => Colour::Green,
        StepStatus::InProgress => Colour::Yellow,
        StepStatus::Failed => Colour::Red,
        StepStatus::Pending | StepStatus::Skipped => Colour::Gray,
    };
    Cell::coloured(step_label(status), colour)
}

fn took(op: &Operation, now: u64) -> String {
    span(op.finished_ms.unwrap_or(now).saturating_sub(op.created_ms))
}

/// Returns the operation list table.
pub fn operation_table(ops: &[Operation], now: u64) -> Table {
    let mut table = Table::new(&[
        "ID", "KIND", "CLUSTER", "STATUS", "STEPS", "CREATED", "TOOK",
    ]);
    for op in ops {
        let finished = op.steps.iter().filter(|s| s.status.is_finished()).count();
        table.row(vec![
            op.id.as_str().into(),
            op.kind.to_string().into(),
            op.cluster.as_str().into(),
            status_cell(op.status),
            format!("{finished}/{}", op.steps.len()).into(),
            ago(op.created_ms, now).into(),
            took(op, now).into(),
        ]);
    }
    table
}

/// Returns the head of `operation show`.
pub fn operation_details(op: &Operation, now: u64) -> String {
    let mut options = Vec::new();
    if op.options.parallel {
        options.push("parallel");
    }
    if op.options.continue_on_error {
        options.push("continue-on-error");
    }
    fields(&[
        ("id", op.id.clone()),
        ("kind", op.kind.to_string()),
        ("cluster", op.cluster.clone()),
        ("status", op.status.to_string()),
        (
            "options",
            if options.is_empty() {
                "-".into()
            } else {
                options.join(", ")
            },
        ),
        ("actor", op.actor.clone()),
        ("created", ago(op.created_ms, now)),
        ("took", took(op, now)),
        ("message", or_dash(op.message.as_deref())),
    ])
}

/// Returns the steps of an operation, one row per member.
pub fn step_table(op: &Operation) -> Table {
    let mut table = Table::new(&["SERVER", "STEP", "TOOK", "MESSAGE"]);
    for step in &op.steps {
        let took = match (step.started_ms, step.finished_ms) {
            (Some(start), Some(end)) => span(end.saturating_sub(start)),
            _ => "-".into(),
        };
        table.row(vec![
            step.server.as_str().into(),
            step_cell(step.status),
            took.into(),
            or_dash(step.message.as_deref()).into(),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use dure_api::{MemberStep, OperationKind};
    use dure_core::operation::OperationOptions;

    fn op() -> Operation {
        Operation {
            id: "op-1".into(),
            kind: OperationKind::Stop,
            cluster: "demo".into(),
            options: OperationOptions::default(),
            status: OperationStatus::Running,
            steps: vec![
                MemberStep {
                    server: "demo-2".into(),
                    status: StepStatus::Done,
                    message: None,
                    started_ms: Some(1_000),
                    finished_ms: Some(3_000),
                },
                MemberStep {
                    server: "demo-1".into(),
                    status: StepStatus::InProgress,
                    message: Some("stopping".into()),
                    started_ms: Some(3_000),
                    finished_ms: None,
                },
            ],
            actor: "admin".into(),
            created_ms: 1_000,
            finished_ms: None,
            message: None,
            left_standing: Vec::new(),
        }
    }

    #[test]
    fn tables() {
        assert_eq!(
            operation_table(&[op()], 5_000).render(false),
            "ID    KIND  CLUSTER  STATUS   STEPS  CREATED  TOOK\n\
             op-1  stop  demo     running  1/2    4s ago   4s\n"
        );
        assert_eq!(
            step_table(&op()).render(false),
            "SERVER  STEP         TOOK  MESSAGE\n\
             demo-2  done         2s    -\n\
             demo-1  in progress  -     stopping\n"
        );
        assert!(operation_details(&op(), 5_000).contains("status:   running\n"));
    }
}
