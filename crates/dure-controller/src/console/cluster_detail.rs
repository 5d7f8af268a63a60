//! One cluster: its members (state, node, pid, since, restarts, weight),
//! its recent operations with each member's step, and its events (with a
//! link to its applications' page, `apps`); all
//! refreshed live from the event stream. A role that may operate gets the
//! rolling restart button, which is the cluster list's restart action and
//! comes back here.

use super::pages::{self, csrf_field, Frame};
use super::{html, ConsoleState, LoggedIn};
use axum::extract::{Path, State};
use axum::response::Response;
use dure_api::{routes, ClusterView, Event, LbStats, Operation, ServerView};
use dure_core::access::Permission;
use maud::html as markup;
use std::collections::BTreeMap;

/// How many operations and events the page shows.
const RECENT: usize = 10;

pub async fn show(
    State(console): ConsoleState,
    user: LoggedIn,
    Path(name): Path<String>,
) -> Response {
    let token = &user.session.token;
    let cluster: ClusterView = match console.backend.get(token, &routes::cluster(&name)).await {
        Ok(cluster) => cluster,
        Err(refused) => return super::clusters::api_refusal(&user, refused),
    };
    let query = |pairs: &[(&str, String)]| serde_urlencoded::to_string(pairs).unwrap_or_default();
    let operations = console
        .backend
        .get::<Vec<Operation>>(
            token,
            &format!(
                "{}?{}",
                routes::OPERATIONS,
                query(&[("cluster", name.clone()), ("limit", RECENT.to_string())])
            ),
        )
        .await;
    let events = console
        .backend
        .get::<Vec<Event>>(
            token,
            &format!(
                "{}?{}",
                routes::EVENTS,
                query(&[
                    ("subject", format!("cluster/{name}")),
                    ("last", RECENT.to_string())
                ])
            ),
        )
        .await;
    // In flight per member, summed over every balancer routing to it.
    let in_flight: Option<BTreeMap<String, u64>> = console
        .backend
        .get::<Vec<LbStats>>(token, routes::LB_STATS_ALL)
        .await
        .ok()
        .map(|all| {
            let mut sums = BTreeMap::new();
            for figures in all
                .iter()
                .flat_map(|lb| &lb.members)
                .filter(|m| m.cluster == name)
            {
                *sums.entry(figures.member.clone()).or_insert(0) += figures.in_flight;
            }
            sums
        });
    let mut servers = Vec::with_capacity(cluster.members.len());
    for member in &cluster.members {
        servers.push(
            console
                .backend
                .get::<ServerView>(token, &routes::server(&member.server))
                .await
                .ok(),
        );
    }
    let path = format!("{}/{name}", pages::CLUSTERS);
    let frame = Frame::of(&user, pages::CLUSTERS);
    let t = user.lang.texts();
    let flash = console.sessions.take_flash(&user.session.id);
    html(pages::page(
        &frame,
        &name,
        markup! {
            h1 { (t.nav_clusters) " " code { (name) } }
            (pages::flash(flash.as_deref()))
            p { a #cluster-apps href=(super::apps::path(&name)) { (t.nav_apps) } }
            @if frame.may(Permission::Operate) {
                form #cluster-restart .toolbar method="post" action=(pages::CLUSTER_ACTION)
                    hx-post=(pages::CLUSTER_ACTION) hx-target="#restart-result" hx-swap="innerHTML" {
                    (csrf_field(frame.csrf.unwrap_or_default()))
                    input type="hidden" name="cluster" value=(name);
                    input type="hidden" name="back" value=(super::clusters::BACK_TO_DETAIL);
                    button type="submit" name="action" value="restart" { (t.restart) }
                    output #restart-result role="status" aria-live="polite" {}
                }
            }
            div #cluster-live hx-get=(path) hx-select="#cluster-live" hx-trigger="dure:changed from:body"
                hx-target="this" hx-swap="outerHTML" {
                p.status data-status=(cluster.status) {
                    span class={ "light light-" (cluster.status) } aria-hidden="true" {}
                    " " (cluster.status)
                }
                h2 { (t.members) }
                table #member-table {
                    thead { tr {
                        th scope="col" { (t.server) } th scope="col" { (t.status) } th scope="col" { (t.node) }
                        th scope="col" { "pid" } th scope="col" { (t.since) } th scope="col" { (t.restarts) }
                        th scope="col" { (t.weight) } th scope="col" { (t.in_flight) }
                    } }
                    tbody {
                        @for (member, server) in cluster.members.iter().zip(&servers) {
                            tr data-server=(member.server) {
                                td { a href={ (pages::SERVERS) "/" (member.server) } { (member.server) } }
                                td data-state=(member.observed.state) { (member.observed.state) @if member.observed.restart_needed { " · " span.restart-needed { (t.restart_needed) } } }
                                td { (member.node) }
                                td { (member.observed.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())) }
                                td { (super::inventory::since(Some(member.observed.since_ms))) }
                                td { (member.observed.restarts) }
                                td { (server.as_ref().map(|s| s.spec.weight.to_string()).unwrap_or_else(|| "-".into())) }
                                td { (in_flight.as_ref().and_then(|m| m.get(&member.server)).map(|n| n.to_string()).unwrap_or_else(|| "-".into())) }
                            }
                        }
                    }
                }
                h2 { (t.operations) }
                @match &operations {
                    Err(refused) => p.error role="alert" { (refused.message) },
                    Ok(operations) if operations.is_empty() => p.empty { (t.no_operations) },
                    Ok(operations) => {
                        @for op in operations {
                            details.operation data-operation=(op.id) open[op.finished_ms.is_none()] {
                                summary {
                                    code { (op.id) } " " (op.kind) " · " (op.status)
                                    " · " (super::inventory::since(Some(op.created_ms))) " · " (op.actor)
                                    @if let Some(message) = &op.message { " · " (message) }
                                }
                                ol {
                                    @for step in &op.steps {
                                        li { (step.server) ": " (word(&step.status))
                                            @if let Some(message) = &step.message { " — " (message) } }
                                    }
                                }
                            }
                        }
                    }
                }
                h2 { (t.nav_events) }
                @match &events {
                    Err(refused) => p.error role="alert" { (refused.message) },
                    Ok(events) => ul.events {
                        @for event in events.iter().rev() {
                            li { (super::inventory::since(Some(event.time_ms))) " " (event.message) }
                        }
                    },
                }
            }
        },
    ))
}

/// A value's serialized name (`done`, `running`, …).
pub(super) fn word<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(word)) => word,
        Ok(other) => other.to_string(),
        Err(e) => format!("({e})"),
    }
}
