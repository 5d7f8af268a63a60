//! `dure lb ...`: define balancers and their routes, and `dure cluster
//! balance`, a cluster's balancing settings. Running a balancer
//! (`dure lb run`) is a role, in `lb_role`.

use crate::cli::{BalanceArgs, LbCommand, RouteArgs, RouteCommand, StickyMode};
use crate::commands::changes::print_change;
use crate::context::Context;
use crate::output::{or_dash, print_json, Table};
use dure_api::{ClusterView, ConfigChange, RouteChange};
use dure_core::balance::Sticky;
use dure_core::{ClusterBalance, LbSpec, Listener, TlsFiles};
use std::path::Path;

pub async fn run(ctx: &Context, command: LbCommand) -> anyhow::Result<()> {
    match command {
        LbCommand::Create {
            name,
            listen,
            tls_cert,
            tls_key,
            routes,
            save,
        } => {
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: absolute(&cert)?,
                    key: absolute(&key)?,
                }),
                _ => None,
            };
            let spec = LbSpec {
                name,
                listeners: listen
                    .into_iter()
                    .map(|listen| Listener {
                        listen,
                        tls: tls.clone(),
                        routes: routes.clone(),
                    })
                    .collect(),
            };
            let client = ctx.client.clone().with_save(save.choice());
            let changed = client
                .change::<LbSpec>(ConfigChange::CreateLb(&spec))
                .await?;
            let name = &spec.name;
            let listens = listens(&spec);
            print_change(
                ctx,
                &changed,
                format!("balancer `{name}` created on {listens}; run it with `dure lb run --name {name}`"),
                format!("balancer `{name}` created on {listens} in your change set"),
            )
        }
        LbCommand::List => {
            let lbs = ctx.client.list_lbs().await?;
            if ctx.json() {
                return print_json(&lbs);
            }
            if lbs.is_empty() {
                println!("no balancers yet: define one with `dure lb create NAME --listen IP:PORT --route CLUSTER`");
                return Ok(());
            }
            lb_table(&lbs).print();
            Ok(())
        }
        LbCommand::Show { name } => {
            let lb = ctx.client.get_lb(&name).await?;
            if ctx.json() {
                return print_json(&lb);
            }
            println!("balancer {}: {} listener(s)", lb.name, lb.listeners.len());
            route_table(&lb).print();
            Ok(())
        }
        LbCommand::Delete { name, save } => {
            let client = ctx.client.clone().with_save(save.choice());
            let changed = client
                .change::<LbSpec>(ConfigChange::DeleteLb(&name))
                .await?;
            print_change(
                ctx,
                &changed,
                format!("balancer `{name}` deleted"),
                format!("balancer `{name}` deleted in your change set"),
            )
        }
        LbCommand::Route { command } => route(ctx, command).await,
        LbCommand::Run(_) => {
            anyhow::bail!("internal: `dure lb run` is a role, not a client verb")
        }
    }
}

async fn route(ctx: &Context, command: RouteCommand) -> anyhow::Result<()> {
    let (lb, route, save, adding) = match command {
        RouteCommand::Add { lb, route, save } => (lb, route, save, true),
        RouteCommand::Remove { lb, route, save } => (lb, route, save, false),
    };
    if adding && route.cluster.is_none() {
        return Err(crate::exit::UsageError(
            "a route needs the cluster it sends requests to: pass --cluster CLUSTER".into(),
        )
        .into());
    }
    let described = describe(&route);
    let change = RouteChange {
        listener: route.listener,
        host: route.host,
        path: route.path,
        cluster: route.cluster,
    };
    let client = ctx.client.clone().with_save(save.choice());
    let (changed, verb) = if adding {
        let changed = client
            .change::<LbSpec>(ConfigChange::AddRoute {
                lb: &lb,
                route: &change,
            })
            .await?;
        (changed, "added to")
    } else {
        let changed = client
            .change::<LbSpec>(ConfigChange::RemoveRoute {
                lb: &lb,
                route: &change,
            })
            .await?;
        (changed, "removed from")
    };
    print_change(
        ctx,
        &changed,
        format!("route {described} {verb} balancer `{lb}`"),
        format!("route {described} {verb} balancer `{lb}` in your change set"),
    )
}

/// Sets the balancing settings given, keeping the others.
pub async fn balance(ctx: &Context, args: BalanceArgs) -> anyhow::Result<()> {
    let name = args.name;
    let mut balance = ctx.client.get_cluster(&name).await?.spec.balance;
    if let Some(policy) = args.policy {
        balance.policy = policy;
    }
    if let Some(mode) = args.sticky {
        balance.sticky = match mode {
            StickyMode::None => None,
            StickyMode::Cookie => Some(Sticky::route_cookie()),
            StickyMode::Session => Some(Sticky::session_suffix()),
        };
    }
    if let Some(cookie) = args.cookie {
        balance.sticky = match balance.sticky {
            Some(Sticky::RouteCookie { .. }) => Some(Sticky::RouteCookie { cookie }),
            Some(Sticky::SessionSuffix { .. }) => Some(Sticky::SessionSuffix { cookie }),
            None => {
                return Err(crate::exit::UsageError(
                    "--cookie names the sticky cookie: pass --sticky cookie or --sticky session with it".into(),
                )
                .into())
            }
        };
    }
    if let Some(check) = args.check {
        balance.check = check;
    }
    if let Some(interval) = args.interval {
        balance.health.interval = interval;
    }
    if let Some(rise) = args.rise {
        balance.health.rise = rise;
    }
    if let Some(fall) = args.fall {
        balance.health.fall = fall;
    }
    if let Some(drain) = args.drain_timeout {
        balance.drain_timeout = drain;
    }
    if args.no_backup {
        balance.backup.clear();
    } else if !args.backup.is_empty() {
        balance.backup = args.backup;
    }
    let client = ctx.client.clone().with_save(args.save.choice());
    let changed = client
        .change::<ClusterView>(ConfigChange::SetBalance {
            cluster: &name,
            balance: &balance,
        })
        .await?;
    let summary = balance_summary(&balance);
    print_change(
        ctx,
        &changed,
        format!("cluster `{name}` balancing: {summary}"),
        format!("cluster `{name}` balancing in your change set: {summary}"),
    )
}

/// A cluster's balancing settings in one line, as `cluster balance` and
/// `cluster show` print them.
pub fn balance_summary(balance: &ClusterBalance) -> String {
    let sticky = balance.sticky.as_ref().map_or("none".to_string(), |s| {
        format!("on cookie {}", s.cookie_name())
    });
    let backup = if balance.backup.is_empty() {
        String::new()
    } else {
        format!(", backup {}", balance.backup.join(", "))
    };
    format!(
        "policy {}, sticky {sticky}, check {} every {} (rise {}, fall {}), drain timeout {}{backup}",
        balance.policy,
        balance.check,
        balance.health.interval,
        balance.health.rise,
        balance.health.fall,
        balance.drain_timeout
    )
}

/// A TLS file as the balancer's host will read it: an absolute path.
fn absolute(path: &Path) -> anyhow::Result<String> {
    let path = std::path::absolute(path)
        .map_err(|e| anyhow::anyhow!("cannot make {} absolute: {e}", path.display()))?;
    path.to_str().map(str::to_string).ok_or_else(|| {
        crate::exit::UsageError(format!("TLS file {} is not valid UTF-8", path.display())).into()
    })
}

fn listens(lb: &LbSpec) -> String {
    lb.listeners
        .iter()
        .map(|l| l.listen.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe(route: &RouteArgs) -> String {
    let matching = format!(
        "{}{}",
        route.host.as_deref().unwrap_or("*"),
        route.path.as_deref().unwrap_or("/")
    );
    match &route.cluster {
        Some(cluster) => format!("{matching} -> {cluster}"),
        None => matching,
    }
}

/// One line per balancer.
pub fn lb_table(lbs: &[LbSpec]) -> Table {
    let mut table = Table::new(&["NAME", "LISTENERS", "ROUTES", "CLUSTERS"]);
    for lb in lbs {
        let routes = lb.listeners.iter().flat_map(|l| &l.routes);
        let mut clusters: Vec<&str> = routes.clone().map(|r| r.cluster.as_str()).collect();
        clusters.sort_unstable();
        clusters.dedup();
        table.row(vec![
            lb.name.as_str().into(),
            listens(lb).into(),
            routes.count().to_string().into(),
            or_dash((!clusters.is_empty()).then(|| clusters.join(", "))).into(),
        ]);
    }
    table
}

/// One line per route (a listener without routes gets a line of dashes).
pub fn route_table(lb: &LbSpec) -> Table {
    let mut table = Table::new(&["LISTEN", "TLS", "HOST", "PATH", "CLUSTER"]);
    for listener in &lb.listeners {
        let tls = if listener.tls.is_some() { "yes" } else { "no" };
        if listener.routes.is_empty() {
            table.row(vec![
                listener.listen.as_str().into(),
                tls.into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        for route in &listener.routes {
            table.row(vec![
                listener.listen.as_str().into(),
                tls.into(),
                or_dash(route.host.as_deref()).into(),
                or_dash(route.path.as_deref()).into(),
                route.cluster.as_str().into(),
            ]);
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::parse_route;

    #[test]
    fn routes_read_from_their_short_form() {
        let route = |text: &str| parse_route(text).unwrap();
        assert_eq!(route("shop").cluster, "shop");
        assert_eq!(route("shop").host, None);
        let r = route("shop.example.com/cart=cart");
        assert_eq!(
            (r.host.as_deref(), r.path.as_deref(), r.cluster.as_str()),
            (Some("shop.example.com"), Some("/cart"), "cart")
        );
        let r = route("/api=api");
        assert_eq!((r.host, r.path.as_deref()), (None, Some("/api")));
        assert_eq!(route("a.example/=x").path, None, "`/` is every path");
        assert!(parse_route("a.example=").is_err());
    }

    #[test]
    fn the_route_table_shows_each_route_and_bare_listeners() {
        let lb = LbSpec {
            name: "front".into(),
            listeners: vec![
                Listener {
                    listen: "0.0.0.0:80".into(),
                    tls: None,
                    routes: vec![parse_route("a.example/x=shop").unwrap()],
                },
                Listener {
                    listen: "0.0.0.0:443".into(),
                    tls: Some(TlsFiles {
                        cert: "/c".into(),
                        key: "/k".into(),
                    }),
                    routes: vec![],
                },
            ],
        };
        let text = route_table(&lb).render(false);
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        assert_eq!(lines[0], "LISTEN       TLS  HOST       PATH  CLUSTER");
        assert_eq!(lines[1], "0.0.0.0:80   no   a.example  /x    shop");
        assert_eq!(lines[2], "0.0.0.0:443  yes  -          -     -");
        let text = lb_table(&[lb]).render(false);
        assert!(
            text.contains("0.0.0.0:80, 0.0.0.0:443  1       shop"),
            "{text}"
        );
    }
}
