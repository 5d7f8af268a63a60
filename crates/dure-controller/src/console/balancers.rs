//! Balancer statistics from the figures running balancers report (the
//! API's `/v1/lb-stats`): per balancer and cluster, each member's share of
//! the requests as a bar, p50 / p99 latency, errors, in flight and state.

use super::pages::{self, Frame};
use super::{html, ConsoleState, LoggedIn};
use axum::extract::State;
use axum::response::Response;
use dure_api::{routes, LbMemberFigures, LbStats};
use maud::html as markup;
use std::collections::BTreeMap;

pub async fn stats(State(console): ConsoleState, user: LoggedIn) -> Response {
    let all: Vec<LbStats> = match console
        .backend
        .get(&user.session.token, routes::LB_STATS_ALL)
        .await
    {
        Ok(all) => all,
        Err(refused) => return super::clusters::api_refusal(&user, refused),
    };
    let frame = Frame::of(&user, pages::BALANCERS);
    let t = user.lang.texts();
    html(pages::page(
        &frame,
        t.nav_balancers,
        markup! {
            h1 { (t.nav_balancers) }
            div #lb-stats hx-get=(pages::BALANCERS) hx-select="#lb-stats" hx-trigger="every 2s"
                hx-target="this" hx-swap="outerHTML" {
                @if all.is_empty() { p.empty { (t.no_balancers) } }
                @for lb in &all {
                    section.balancer data-lb=(lb.lb) {
                        h2 { code { (lb.lb) } " · " (lb.instances.len()) " " (t.instances) }
                        @for (cluster, members) in by_cluster(&lb.members) {
                            @let total: u64 = members.iter().map(|m| m.requests).sum();
                            h3 { (t.nav_clusters) " " code { (cluster) } " · " (total) " " (t.requests) }
                            table {
                                thead { tr {
                                    th scope="col" { (t.server) } th scope="col" { (t.share) }
                                    th scope="col" { (t.requests) } th scope="col" { "p50 ms" } th scope="col" { "p99 ms" }
                                    th scope="col" { (t.errors) } th scope="col" { "5xx" } th scope="col" { (t.in_flight) }
                                    th scope="col" { (t.status) }
                                } }
                                tbody {
                                    @for member in &members {
                                        @let share = if total == 0 { 0.0 } else { member.requests as f64 * 100.0 / total as f64 };
                                        tr data-member=(member.member) {
                                            td { (member.member) }
                                            td.share {
                                                meter min="0" max="100" value=(format!("{share:.1}"))
                                                    aria-label={ (member.member) " " (t.share) } {}
                                                " " (format!("{share:.0}%"))
                                            }
                                            td { (member.requests) }
                                            td { (millis(member.latency_ms.p50)) }
                                            td { (millis(member.latency_ms.p99)) }
                                            td { (member.errors) }
                                            td { (member.responses.server_error) }
                                            td { (member.in_flight) }
                                            td { (member.health) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

fn by_cluster(members: &[LbMemberFigures]) -> BTreeMap<&str, Vec<&LbMemberFigures>> {
    let mut out: BTreeMap<&str, Vec<&LbMemberFigures>> = BTreeMap::new();
    for member in members {
        out.entry(member.cluster.as_str()).or_default().push(member);
    }
    out
}

fn millis(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"))
}
