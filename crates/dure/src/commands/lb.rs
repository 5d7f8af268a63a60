//! `dure lb ...`: define balancers and their routes, and `dure cluster
//! balance`, a cluster's balancing settings. Running a balancer
//! (`dure lb run`) is a role, in `lb_role`.

use crate::cli::{BalanceArgs, LbCommand, RouteArgs, RouteCommand, StickyMode};
use crate::commands::changes::print_change;
use crate::context::Context;
use crate::output::{ago, now_ms, or_dash, print_json, Table};
use dure_api::{ClusterView, ConfigChange, LbMemberFigures, LbStats, RouteChange};
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
        LbCommand::Stats { lb } => stats(ctx, lb.as_deref()).await,
        LbCommand::Run(_) => {
            anyhow::bail!("internal: `dure lb run` is a role, not a client verb")
        }
    }
}

/// Prints what the running instances of one balancer, or of every
/// balancer, report.
async fn stats(ctx: &Context, lb: Option<&str>) -> anyhow::Result<()> {
    let all = match lb {
        Some(name) => vec![ctx.client.lb_stats(name).await?],
        None => ctx.client.all_lb_stats().await?,
    };
    if ctx.json() {
        return match lb {
            Some(_) => print_json(&all[0]),
            None => print_json(&all),
        };
    }
    if all.is_empty() {
        println!("no balancer instance reports: start one with `dure lb run --name LB`");
        return Ok(());
    }
    let now = now_ms();
    for (i, stats) in all.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("{}", instances_line(stats, now));
        if !stats.members.is_empty() {
            stats_table(&stats.members).print();
        }
    }
    Ok(())
}

/// Returns "balancer `front`: 2 instances (3f2a… 200ms ago, admin …)".
fn instances_line(stats: &LbStats, now: u64) -> String {
    let name = &stats.lb;
    if stats.instances.is_empty() {
        return format!(
            "balancer `{name}`: no instance reports; start one with `dure lb run --name {name}`"
        );
    }
    let each: Vec<String> = stats
        .instances
        .iter()
        .map(|i| {
            let admin = i
                .admin
                .as_deref()
                .map(|a| format!(", admin {a}"))
                .unwrap_or_default();
            format!(
                "{} reported {}{admin}",
                i.instance_id,
                ago(now.saturating_sub(i.age_ms), now)
            )
        })
        .collect();
    let count = stats.instances.len();
    let noun = if count == 1 { "instance" } else { "instances" };
    format!("balancer `{name}`: {count} {noun} ({})", each.join("; "))
}

/// Returns the distribution table: per cluster and member, its share of
/// the cluster's requests and its figures summed over the instances.
fn stats_table(members: &[LbMemberFigures]) -> Table {
    let mut table = Table::new(&[
        "CLUSTER",
        "MEMBER",
        "SHARE",
        "REQUESTS",
        "2XX",
        "3XX",
        "4XX",
        "5XX",
        "ERRORS",
        "RETRIES",
        "IN-FLIGHT",
        "P50",
        "P95",
        "P99",
        "HEALTH",
    ]);
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}ms"));
    for m in members {
        let cluster_total: u64 = members
            .iter()
            .filter(|o| o.cluster == m.cluster)
            .map(|o| o.requests)
            .sum();
        let share = (cluster_total > 0)
            .then(|| format!("{:.1}%", m.requests as f64 * 100.0 / cluster_total as f64));
        table.row(vec![
            m.cluster.as_str().into(),
            m.member.as_str().into(),
            or_dash(share).into(),
            m.requests.to_string().into(),
            m.responses.success.to_string().into(),
            m.responses.redirection.to_string().into(),
            m.responses.client_error.to_string().into(),
            m.responses.server_error.to_string().into(),
            m.errors.to_string().into(),
            m.retries.to_string().into(),
            m.in_flight.to_string().into(),
            ms(m.latency_ms.p50).into(),
            ms(m.latency_ms.p95).into(),
            ms(m.latency_ms.p99).into(),
            m.health.as_str().into(),
        ]);
    }
    table
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
    // Read as the change will apply (with the caller's staged changes,
    // unless --save), and written back only if still so.
    let reader = ctx.client.clone().with_changes_view(!args.save.save);
    let mut balance = reader.get_cluster(&name).await?.spec.balance;
    let read = dure_core::document_digest(&balance);
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
    let client = ctx
        .client
        .clone()
        .with_save(args.save.choice())
        .with_expect(Some(read));
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
    use dure_api::{LatencyPercentiles, LbInstanceStats, ResponseCounts};

    fn figures(member: &str, requests: u64, health: &str) -> LbMemberFigures {
        LbMemberFigures {
            cluster: "shop".into(),
            member: member.into(),
            addr: String::new(),
            requests,
            responses: ResponseCounts {
                success: requests,
                ..ResponseCounts::default()
            },
            errors: 0,
            retries: 0,
            in_flight: 0,
            latency_ms: LatencyPercentiles {
                p50: Some(1.25),
                ..LatencyPercentiles::default()
            },
            latency_buckets: Vec::new(),
            health: health.into(),
            last_check_ms: None,
            last_error: None,
        }
    }

    #[test]
    fn stats_show_each_members_share_of_its_cluster() {
        let members = [figures("web1", 300, "up"), figures("web2", 100, "draining")];
        assert_eq!(
            stats_table(&members).render(false),
            "CLUSTER  MEMBER  SHARE  REQUESTS  2XX  3XX  4XX  5XX  ERRORS  RETRIES  IN-FLIGHT  P50    P95  P99  HEALTH\n\
             shop     web1    75.0%  300       300  0    0    0    0       0        0          1.2ms  -    -    up\n\
             shop     web2    25.0%  100       100  0    0    0    0       0        0          1.2ms  -    -    draining\n"
        );
        let stats = LbStats {
            lb: "front".into(),
            instances: vec![LbInstanceStats {
                instance_id: "00ff".into(),
                admin: Some("127.0.0.1:9100".into()),
                version: None,
                reported_ms: 0,
                age_ms: 300,
                members: Vec::new(),
            }],
            members: Vec::new(),
        };
        assert_eq!(
            instances_line(&stats, 10_000),
            "balancer `front`: 1 instance (00ff reported 300ms ago, admin 127.0.0.1:9100)"
        );
    }

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
