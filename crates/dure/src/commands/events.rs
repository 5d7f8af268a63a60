//! `dure events`: the controller's event log, once or followed.

use crate::cli::EventsArgs;
use crate::context::Context;
use crate::output::{print_json, timestamp, Table};
use dure_api::{Event, EventQuery};
use std::time::Duration;

/// How often `events -f` asks for more.
const FOLLOW_POLL: Duration = Duration::from_millis(500);
/// The page size while following, so a long backlog comes in pieces.
const FOLLOW_PAGE: usize = 500;
/// How many of the newest events a plain `dure events` shows.
const DEFAULT_LAST: usize = 50;

pub async fn run(ctx: &Context, args: EventsArgs) -> anyhow::Result<()> {
    // Like `tail`: the newest events unless a starting point is given.
    let last = args.last.or((args.after == 0).then_some(DEFAULT_LAST));
    let mut query = EventQuery {
        after: args.after,
        limit: args.limit,
        subject: args.subject,
        last,
    };
    if !args.follow {
        let events = ctx.client.events(&query).await?;
        if ctx.json() {
            return print_json(&events);
        }
        if events.is_empty() {
            println!("no events");
            return Ok(());
        }
        event_table(&events).print();
        return Ok(());
    }
    // Following prints one line per event as it comes, without a header, so
    // the output can be piped like `tail -f`.
    query.limit = Some(query.limit.unwrap_or(FOLLOW_PAGE));
    let mut first_page = true;
    loop {
        let events = ctx.client.events(&query).await?;
        if first_page {
            // `last` picks the starting point; after that, every new event.
            first_page = false;
            query.last = None;
        }
        for event in &events {
            if ctx.json() {
                println!("{}", serde_json::to_string(event)?);
            } else {
                println!("{}", event_line(event));
            }
            query.after = query.after.max(event.seq);
        }
        if events.len() >= query.limit.unwrap_or(FOLLOW_PAGE) {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
            // Ctrl-C is how following ends.
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// Returns one event as a line: time, seq, subject, actor, message.
pub fn event_line(event: &Event) -> String {
    format!(
        "{} #{} {} [{}] {}: {}",
        timestamp(event.time_ms),
        event.seq,
        event.kind,
        event.actor,
        event.subject,
        event.message
    )
}

/// Returns the event table.
pub fn event_table(events: &[Event]) -> Table {
    let mut table = Table::new(&["SEQ", "TIME", "ACTOR", "KIND", "SUBJECT", "MESSAGE"]);
    for event in events {
        table.row(vec![
            event.seq.to_string().into(),
            timestamp(event.time_ms).into(),
            event.actor.as_str().into(),
            event.kind.as_str().into(),
            event.subject.as_str().into(),
            event.message.as_str().into(),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_texts() {
        let event = Event {
            seq: 12,
            time_ms: 1_709_210_096_789,
            actor: "agent:local".into(),
            kind: "server.state".into(),
            subject: "server/demo-1".into(),
            message: "ready".into(),
        };
        assert_eq!(
            event_line(&event),
            "2024-02-29T12:34:56.789Z #12 server.state [agent:local] server/demo-1: ready"
        );
        assert_eq!(
            event_table(&[event]).render(false),
            "SEQ  TIME                      ACTOR        KIND          SUBJECT        MESSAGE\n\
             12   2024-02-29T12:34:56.789Z  agent:local  server.state  server/demo-1  ready\n"
        );
    }
}
