//! Read pages of what runs where: nodes (state, agent mode, address, agent
//! version, since when) and servers (state, node, ports, pid, restarts,
//! cluster, and the last lines of the log through the API). Both refresh
//! themselves when the event stream says something changed.

use super::pages::{self, Frame};
use super::{html, ConsoleState, LoggedIn};
use axum::extract::{Path, State};
use axum::response::Response;
use dure_api::{routes, LogChunk, NodeView, ServerView};
use maud::{html as markup, Markup};

/// How many lines of a server's log its page shows.
const LOG_LINES: usize = 40;

pub async fn nodes(State(console): ConsoleState, user: LoggedIn) -> Response {
    let nodes: Vec<NodeView> = match console
        .backend
        .get(&user.session.token, routes::NODES)
        .await
    {
        Ok(nodes) => nodes,
        Err(refused) => return super::clusters::api_refusal(&user, refused),
    };
    let frame = Frame::of(&user, pages::NODES);
    let t = user.lang.texts();
    let body = markup! {
        table #node-table .live-table hx-get=(pages::NODES) hx-select="#node-table" hx-trigger="dure:changed from:body"
            hx-target="this" hx-swap="outerHTML" {
            thead { tr {
                th scope="col" { (t.name) } th scope="col" { (t.status) } th scope="col" { (t.mode) }
                th scope="col" { (t.address) } th scope="col" { (t.agent_version) } th scope="col" { (t.since) }
                th scope="col" { (t.servers_count) }
            } }
            tbody {
                @if nodes.is_empty() { tr { td colspan="7" .empty { (t.no_nodes) } } }
                @for node in &nodes {
                    tr data-node=(node.spec.name) {
                        td { (node.spec.name) }
                        td data-state=(node.status) { (node.status) }
                        td { (node.mode) }
                        td { (node.spec.address) }
                        td { (node.agent_version.as_deref().unwrap_or("-")) }
                        td { (since(node.independent_since_ms.or(node.last_seen_ms))) }
                        td { (node.servers) }
                    }
                }
            }
        }
    };
    html(pages::page(
        &frame,
        t.nav_nodes,
        markup! { h1 { (t.nav_nodes) } (body) },
    ))
}

pub async fn servers(State(console): ConsoleState, user: LoggedIn) -> Response {
    let servers: Vec<ServerView> = match console
        .backend
        .get(&user.session.token, routes::SERVERS)
        .await
    {
        Ok(servers) => servers,
        Err(refused) => return super::clusters::api_refusal(&user, refused),
    };
    let frame = Frame::of(&user, pages::SERVERS);
    let t = user.lang.texts();
    let body = markup! {
        table #server-table hx-get=(pages::SERVERS) hx-select="#server-table" hx-trigger="dure:changed from:body"
            hx-target="this" hx-swap="outerHTML" {
            thead { tr {
                th scope="col" { (t.name) } th scope="col" { (t.status) } th scope="col" { (t.node) }
                th scope="col" { (t.nav_clusters) } th scope="col" { (t.ports) } th scope="col" { "pid" }
                th scope="col" { (t.restarts) } th scope="col" { (t.since) }
            } }
            tbody {
                @if servers.is_empty() { tr { td colspan="8" .empty { (t.no_servers) } } }
                @for server in &servers {
                    tr data-server=(server.spec.name) {
                        td { a href={ (pages::SERVERS) "/" (server.spec.name) } { (server.spec.name) } }
                        td data-state=(server.observed.state) { (server.observed.state) @if server.observed.restart_needed { " · " span.restart-needed { (t.restart_needed) } } }
                        td { (server.spec.node) }
                        td { (server.cluster.as_deref().unwrap_or("-")) }
                        td { (ports(server)) }
                        td { (server.observed.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())) }
                        td { (server.observed.restarts) }
                        td { (since(Some(server.observed.since_ms))) }
                    }
                }
            }
        }
    };
    html(pages::page(
        &frame,
        t.nav_servers,
        markup! { h1 { (t.nav_servers) } (body) },
    ))
}

/// One server: its state and the tail of its log, both refreshed live.
pub async fn server(
    State(console): ConsoleState,
    user: LoggedIn,
    Path(name): Path<String>,
) -> Response {
    let token = &user.session.token;
    let server: ServerView = match console.backend.get(token, &routes::server(&name)).await {
        Ok(server) => server,
        Err(refused) => return super::clusters::api_refusal(&user, refused),
    };
    let log = console
        .backend
        .get::<LogChunk>(
            token,
            &format!("{}/logs?lines={LOG_LINES}", routes::server(&name)),
        )
        .await;
    let path = format!("{}/{name}", pages::SERVERS);
    let frame = Frame::of(&user, pages::SERVERS);
    let t = user.lang.texts();
    let body = markup! {
        div #server-live hx-get=(path) hx-select="#server-live" hx-trigger="dure:changed from:body, every 2s"
            hx-target="this" hx-swap="outerHTML" {
            dl.summary {
                dt { (t.status) } dd data-state=(server.observed.state) { (server.observed.state) @if server.observed.restart_needed { " · " span.restart-needed { (t.restart_needed) } } }
                dt { (t.node) } dd { (server.spec.node) }
                dt { (t.ports) } dd { (ports(&server)) }
                dt { "pid" } dd { (server.observed.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())) }
                dt { (t.restarts) } dd { (server.observed.restarts) }
                @if let Some(error) = &server.observed.last_error { dt { (t.last_error) } dd.error { (error) } }
            }
            h2 { (t.log_tail) }
            @match &log {
                Ok(chunk) => pre.log #log-tail { (chunk.data) },
                Err(refused) => p.error role="alert" { (refused.message) },
            }
        }
    };
    html(pages::page(
        &frame,
        &name,
        markup! { h1 { code { (name) } } (body) },
    ))
}

/// A server's ports as `http 8080, shutdown 8005`.
pub fn ports(server: &ServerView) -> String {
    server
        .spec
        .ports
        .iter()
        .map(|(name, port)| format!("{name} {port}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A time as the CLI shows it, or `-`.
pub fn since(ms: Option<u64>) -> Markup {
    markup! {
        @match ms {
            Some(ms) if ms > 0 => time { (dure_core::timefmt::rfc3339_seconds(ms)) },
            _ => "-",
        }
    }
}
