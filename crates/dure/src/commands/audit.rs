//! `dure audit`: the controller's audit log, newest last, filtered by
//! time, actor and refusal.

use crate::cli::AuditArgs;
use crate::context::Context;
use crate::output::{or_dash, print_json, Cell, Colour, Table};
use dure_api::{AuditEntry, AuditQuery};

pub async fn run(ctx: &Context, args: AuditArgs) -> anyhow::Result<()> {
    let query = AuditQuery {
        since: args.since,
        actor: args.actor,
        denied: args.denied,
        limit: Some(args.last),
    };
    let lines = ctx.client.audit(&query).await?;
    if ctx.json() {
        return print_json(&lines);
    }
    if lines.is_empty() {
        println!("no audited calls match");
        return Ok(());
    }
    audit_table(&lines).print();
    Ok(())
}

fn status_cell(line: &AuditEntry) -> Cell {
    let colour = if line.denied {
        Colour::Red
    } else if line.status >= 400 {
        Colour::Yellow
    } else {
        Colour::Green
    };
    Cell::coloured(line.status.to_string(), colour)
}

fn audit_table(lines: &[AuditEntry]) -> Table {
    let mut table = Table::new(&[
        "TIME", "ACTOR", "ROLE", "SOURCE", "METHOD", "PATH", "STATUS", "REQUEST", "ERROR",
    ]);
    for line in lines {
        table.row(vec![
            line.time.clone().into(),
            or_dash(line.actor.as_deref()).into(),
            or_dash(line.role).into(),
            or_dash(line.source.as_deref()).into(),
            line.method.clone().into(),
            line.path.clone().into(),
            status_cell(line),
            line.request_id.clone().into(),
            line.error.clone().unwrap_or_default().into(),
        ]);
    }
    table
}
