//! `/v1/lbs`: balancer definitions and their routes (configuration
//! changes, saved or staged like every other), a cluster's balancing
//! settings (`PUT /v1/clusters/{name}/balance`; `GET` reads them with the
//! members and the routes to the cluster), and the table a running
//! balancer watches (`GET /v1/lbs/{name}/table`, a blocking query on the
//! saved configuration and the observed state, see [`crate::watch`]), and
//! what running instances report of their members (`POST …/report`,
//! `GET …/stats`, `GET /v1/lb-stats`; kept by [`crate::lb_runtime`]).

use super::{Actor, AppState, Body, Path, Query};
use crate::app::App;
use crate::changes::{self, Edit, View};
use crate::error::{ApiError, ApiResult};
use crate::views::cluster_view_by_name;
use crate::watch::{Blocking, Indexed, Topic, LB_TABLE};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use dure_api::{
    ChangeQuery, ClusterBalanceView, LbCluster, LbMember, LbReport, LbRoute, LbStats, LbTable,
    RouteChange,
};
use dure_core::{check_expected, ClusterBalance, Domain, LbSpec, Route};
use std::collections::BTreeMap;

pub async fn list(
    State(app): AppState,
    actor: Actor,
    Query(query): Query<ChangeQuery>,
    blocking: Blocking,
) -> ApiResult<Indexed<Json<Vec<LbSpec>>>> {
    let view = View::from_query(&query)?;
    let index = app.watch.wait(&[Topic::Lbs], blocking).await;
    let lbs = changes::read(&app, actor.name(), view, |d| {
        d.lbs.values().cloned().collect()
    })
    .await?;
    Ok(Indexed(index, Json(lbs)))
}

pub async fn show(
    State(app): AppState,
    actor: Actor,
    Path(name): Path<String>,
    Query(query): Query<ChangeQuery>,
    blocking: Blocking,
) -> ApiResult<Indexed<Json<LbSpec>>> {
    let view = View::from_query(&query)?;
    let index = app.watch.wait(&[Topic::Lbs], blocking).await;
    let lb = lb_by_name(&app, actor.name(), view, &name).await?;
    Ok(Indexed(index, Json(lb)))
}

async fn lb_by_name(app: &App, actor: &str, view: View, name: &str) -> ApiResult<LbSpec> {
    Ok(changes::read(app, actor, view, |d| d.lb(name).cloned()).await??)
}

pub async fn create(
    State(app): AppState,
    actor: Actor,
    Query(query): Query<ChangeQuery>,
    Body(spec): Body<LbSpec>,
) -> ApiResult<impl IntoResponse> {
    let name = spec.name.clone();
    let listens: Vec<&str> = spec.listeners.iter().map(|l| l.listen.as_str()).collect();
    let edit = Edit {
        actor: actor.name(),
        save: query.save,
        subject: format!("lb/{name}"),
        message: format!(
            "created balancer `{name}` listening on {}",
            listens.join(", ")
        ),
    };
    let ((), mode) = changes::edit(&app, edit, |d| d.create_lb(spec)).await?;
    let lb = lb_by_name(&app, actor.name(), mode.view(), &name).await?;
    Ok((StatusCode::CREATED, mode.header(), Json(lb)))
}

pub async fn replace(
    State(app): AppState,
    actor: Actor,
    Path(name): Path<String>,
    Query(query): Query<ChangeQuery>,
    Body(spec): Body<LbSpec>,
) -> ApiResult<impl IntoResponse> {
    if spec.name != name {
        return Err(ApiError::invalid(format!(
            "balancer name in the body (`{}`) differs from the path (`{name}`); renaming is not supported",
            spec.name
        )));
    }
    let edit = Edit {
        actor: actor.name(),
        save: query.save,
        subject: format!("lb/{name}"),
        message: format!("updated balancer `{name}`"),
    };
    let (_, mode) = changes::edit(&app, edit, |d| d.replace_lb(spec)).await?;
    let lb = lb_by_name(&app, actor.name(), mode.view(), &name).await?;
    Ok((mode.header(), Json(lb)))
}

pub async fn delete(
    State(app): AppState,
    actor: Actor,
    Path(name): Path<String>,
    Query(query): Query<ChangeQuery>,
) -> ApiResult<impl IntoResponse> {
    let edit = Edit {
        actor: actor.name(),
        save: query.save,
        subject: format!("lb/{name}"),
        message: format!("deleted balancer `{name}`"),
    };
    let (spec, mode) = changes::edit(&app, edit, |d| d.delete_lb(&name)).await?;
    Ok((mode.header(), Json(spec)))
}

pub async fn add_route(
    State(app): AppState,
    actor: Actor,
    Path(name): Path<String>,
    Query(query): Query<ChangeQuery>,
    Body(change): Body<RouteChange>,
) -> ApiResult<impl IntoResponse> {
    let Some(cluster) = change.cluster else {
        return Err(ApiError::invalid(
            "a route needs the cluster it sends requests to: give `cluster`",
        ));
    };
    let route = Route {
        host: change.host,
        path: change.path,
        cluster,
    };
    let edit = Edit {
        actor: actor.name(),
        save: query.save,
        subject: format!("lb/{name}"),
        message: format!("added route {route} to balancer `{name}`"),
    };
    let listener = change.listener;
    let ((), mode) = changes::edit(&app, edit, |d| {
        d.add_route(&name, listener.as_deref(), route).map(drop)
    })
    .await?;
    let lb = lb_by_name(&app, actor.name(), mode.view(), &name).await?;
    Ok((mode.header(), Json(lb)))
}

pub async fn remove_route(
    State(app): AppState,
    actor: Actor,
    Path(name): Path<String>,
    Query(query): Query<ChangeQuery>,
    Body(change): Body<RouteChange>,
) -> ApiResult<impl IntoResponse> {
    // An empty cluster matches the route of any cluster (see
    // `Domain::remove_route`).
    let route = Route {
        host: change.host,
        path: change.path,
        cluster: change.cluster.unwrap_or_default(),
    };
    let edit = Edit {
        actor: actor.name(),
        save: query.save,
        subject: format!("lb/{name}"),
        message: format!(
            "removed route {} from balancer `{name}`",
            route.describe_match()
        ),
    };
    let listener = change.listener;
    let ((), mode) = changes::edit(&app, edit, |d| {
        d.remove_route(&name, listener.as_deref(), &route).map(drop)
    })
    .await?;
    let lb = lb_by_name(&app, actor.name(), mode.view(), &name).await?;
    Ok((mode.header(), Json(lb)))
}

pub async fn set_balance(
    State(app): AppState,
    actor: Actor,
    Path(name): Path<String>,
    Query(query): Query<ChangeQuery>,
    Body(balance): Body<ClusterBalance>,
) -> ApiResult<impl IntoResponse> {
    let edit = Edit {
        actor: actor.name(),
        save: query.save,
        subject: format!("cluster/{name}"),
        message: format!(
            "set the balancing of cluster `{name}`: policy {}, check {}",
            balance.policy, balance.check
        ),
    };
    let expect = query.expect.as_deref();
    let ((), mode) = changes::edit(&app, edit, |d| {
        let current = &d.cluster(&name)?.balance;
        check_expected(
            || format!("the balancing of cluster `{name}`"),
            current,
            expect,
        )?;
        d.set_balance(&name, balance).map(drop)
    })
    .await?;
    let view = cluster_view_by_name(&app, actor.name(), mode.view(), &name).await?;
    Ok((mode.header(), Json(view)))
}

/// Sets a cluster's application server settings: session replication of
/// Tomcat members, transaction peer recovery of Liberty members. Every
/// member whose generated files change is told by its agent to need a
/// restart.
pub async fn set_cluster_servers(
    State(app): AppState,
    actor: Actor,
    Path(name): Path<String>,
    Query(query): Query<ChangeQuery>,
    Body(settings): Body<dure_api::ClusterServers>,
) -> ApiResult<impl IntoResponse> {
    let recovery = match &settings.transaction_peer_recovery {
        Some(r) if r.enabled => format!(
            "on, logs under {}",
            r.log_dir.as_deref().unwrap_or("(none)")
        ),
        _ => "off".into(),
    };
    let edit = Edit {
        actor: actor.name(),
        save: query.save,
        subject: format!("cluster/{name}"),
        message: format!(
            "set the servers of cluster `{name}`: session replication {}, transaction peer recovery {recovery}",
            settings.session_replication
        ),
    };
    let expect = query.expect.as_deref();
    let ((), mode) = changes::edit(&app, edit, |d| {
        let current = d.cluster(&name)?;
        let read = dure_api::ClusterServers {
            session_replication: current.session_replication,
            transaction_peer_recovery: current.transaction_peer_recovery.clone(),
        };
        check_expected(|| format!("the servers of cluster `{name}`"), &read, expect)?;
        d.set_cluster_servers(
            &name,
            settings.session_replication,
            settings.transaction_peer_recovery,
        )
        .map(drop)
    })
    .await?;
    let view = cluster_view_by_name(&app, actor.name(), mode.view(), &name).await?;
    Ok((mode.header(), Json(view)))
}

/// The table balancer `name` runs on, from the saved configuration only.
pub async fn table(
    State(app): AppState,
    Path(name): Path<String>,
    blocking: Blocking,
) -> ApiResult<Indexed<Json<LbTable>>> {
    let index = app.watch.wait(LB_TABLE, blocking).await;
    let table = app.config.read(|d| lb_table(&app, d, &name))?;
    Ok(Indexed(index, Json(table)))
}

fn lb_table(app: &App, domain: &Domain, name: &str) -> Result<LbTable, dure_core::DomainError> {
    let lb = domain.lb(name)?.clone();
    let mut clusters = BTreeMap::new();
    for route in lb.listeners.iter().flat_map(|l| &l.routes) {
        if clusters.contains_key(&route.cluster) {
            continue;
        }
        clusters.insert(
            route.cluster.clone(),
            balanced_cluster(app, domain, &route.cluster)?,
        );
    }
    Ok(LbTable { lb, clusters })
}

/// Keeps a running instance's figures: refused when the report is
/// malformed (400) or names a balancer that is not defined (404).
pub async fn report(
    State(app): AppState,
    Path(name): Path<String>,
    Body(report): Body<LbReport>,
) -> ApiResult<Json<serde_json::Value>> {
    report
        .check()
        .map_err(|e| ApiError::invalid(format!("the balancer report is invalid: {e}")))?;
    app.config.read(|d| d.lb(&name).map(drop))?;
    app.lb_runtime.report(&name, report);
    Ok(Json(serde_json::json!({})))
}

/// The figures of balancer `name`'s live instances and their sum.
pub async fn stats(
    State(app): AppState,
    Path(name): Path<String>,
    blocking: Blocking,
) -> ApiResult<Indexed<Json<LbStats>>> {
    let index = app.watch.wait(&[Topic::LbStats], blocking).await;
    app.config.read(|d| d.lb(&name).map(drop))?;
    Ok(Indexed(index, Json(app.lb_runtime.stats(&name))))
}

/// The figures of every balancer with a live instance.
pub async fn all_stats(
    State(app): AppState,
    blocking: Blocking,
) -> ApiResult<Indexed<Json<Vec<LbStats>>>> {
    let index = app.watch.wait(&[Topic::LbStats], blocking).await;
    Ok(Indexed(index, Json(app.lb_runtime.all())))
}

/// Cluster `name` as balancers see it, from the saved configuration: its
/// settings, its members, and every balancer route that sends it requests
/// (what `dure cluster export` writes other balancers' configuration from).
pub async fn balance(
    State(app): AppState,
    Path(name): Path<String>,
) -> ApiResult<Json<ClusterBalanceView>> {
    let view = app.config.read(|d| {
        let cluster = balanced_cluster(&app, d, &name)?;
        let routes = d
            .lbs
            .values()
            .flat_map(|lb| {
                lb.listeners.iter().flat_map(move |listener| {
                    listener.routes.iter().map(move |route| LbRoute {
                        lb: lb.name.clone(),
                        listen: listener.listen.clone(),
                        route: route.clone(),
                    })
                })
            })
            .filter(|r| r.route.cluster == name)
            .collect();
        Ok::<_, dure_core::DomainError>(ClusterBalanceView {
            name: name.clone(),
            cluster,
            routes,
        })
    })?;
    Ok(Json(view))
}

/// One cluster's balancing settings and members, each member at its
/// node's address (or else its agent's) and its server's `http` port.
fn balanced_cluster(
    app: &App,
    domain: &Domain,
    name: &str,
) -> Result<LbCluster, dure_core::DomainError> {
    let cluster = domain.cluster(name)?;
    let members = cluster
        .members
        .iter()
        .filter_map(|member| domain.servers().get(member))
        .map(|server| {
            let configured = domain
                .nodes
                .get(&server.node)
                .map(|n| n.address.clone())
                .unwrap_or_default();
            // A node created by its agent's registration may have no
            // address configured: the agent's own is the best known.
            let address = if configured.is_empty() {
                app.runtime
                    .agent_endpoint(&server.node)
                    .map(|e| e.address)
                    .unwrap_or_default()
            } else {
                configured
            };
            LbMember {
                server: server.name.clone(),
                node: server.node.clone(),
                address,
                port: server.ports.get("http").copied(),
                weight: server.weight,
                backup: cluster.balance.backup.contains(&server.name),
                state: app.runtime.observed(&server.node, &server.name).state,
                draining: app.lb_runtime.is_draining(&server.name),
            }
        })
        .collect();
    Ok(LbCluster {
        balance: cluster.balance.clone(),
        members,
    })
}
