//! `dure events`: the controller's event log, once or followed (`-f`:
//! the newest events, then the live event stream).

use crate::cli::EventsArgs;
use crate::context::Context;
use crate::output::{print_json, Table};
use dure_api::{ClientError, Event, EventQuery, StreamMessage};
use dure_core::timefmt::rfc3339_millis;
use std::time::{Duration, Instant};

/// The most events `events -f` shows before it follows the stream, which
/// then sends the rest.
const FOLLOW_PAGE: usize = 500;
/// How long `events -f` keeps trying to reconnect to a controller that went
/// away (a restart), and how long it pauses between tries.
const RECONNECT_GRACE: Duration = Duration::from_secs(30);
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);
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
    query.limit = Some(query.limit.unwrap_or(FOLLOW_PAGE));
    // Following prints one line per event as it comes, without a header, so
    // the output can be piped like `tail -f`: first what is already there,
    // then the live stream from the last one printed.
    let events = ctx.client.events(&query).await?;
    for event in &events {
        print_event(ctx, event)?;
    }
    let after = events.last().map_or(query.after, |e| e.seq);
    tokio::select! {
        result = follow(ctx, after, query.subject.as_deref()) => result,
        // Ctrl-C is how following ends.
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// Prints the live event stream from after `after`, reconnecting (and
/// resuming where it left off) when the controller goes away for a while.
async fn follow(ctx: &Context, mut after: u64, subject: Option<&str>) -> anyhow::Result<()> {
    let mut away_since: Option<Instant> = None;
    loop {
        let error = match ctx.client.event_stream(Some(after), subject).await {
            Ok(mut stream) => loop {
                match stream.next().await {
                    Ok(Some(StreamMessage::Event(event))) => {
                        away_since = None;
                        print_event(ctx, &event)?;
                        after = event.seq;
                    }
                    Ok(Some(StreamMessage::Lagged(lag))) => {
                        eprintln!(
                            "events {} to {} were trimmed from the log before they could be shown",
                            lag.after + 1,
                            lag.oldest.saturating_sub(1)
                        );
                        after = lag.oldest.saturating_sub(1);
                    }
                    // The controller ended the stream (it is stopping).
                    Ok(None) => break None,
                    Err(error) => break Some(error),
                }
            },
            Err(error) => Some(error),
        };
        match error {
            Some(error) if !matches!(error, ClientError::Unreachable { .. }) => {
                return Err(error.into())
            }
            Some(error) if away_since.is_some_and(|t| t.elapsed() >= RECONNECT_GRACE) => {
                return Err(anyhow::Error::new(error).context(format!(
                    "the controller was away for {}s; stopped following",
                    RECONNECT_GRACE.as_secs()
                )));
            }
            _ => {}
        }
        away_since.get_or_insert_with(Instant::now);
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

fn print_event(ctx: &Context, event: &Event) -> anyhow::Result<()> {
    if ctx.json() {
        println!("{}", serde_json::to_string(event)?);
    } else {
        println!("{}", event_line(event));
    }
    Ok(())
}

/// Returns one event as a line: time, seq, subject, actor, message.
pub fn event_line(event: &Event) -> String {
    format!(
        "{} #{} {} [{}] {}: {}",
        rfc3339_millis(event.time_ms),
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
            rfc3339_millis(event.time_ms).into(),
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
