//! `dure cluster export NAME --format haproxy|nginx|plugin-cfg`: reads the
//! cluster as balancers see it (`GET /v1/clusters/{name}/balance`, members
//! at the addresses a `dure lb` would use) and writes it in another
//! balancer's configuration language with `dure_core::lb_export`. What
//! the format cannot express is said on stderr as well as in the file.

use crate::cli::ClusterExportArgs;
use crate::context::Context;
use crate::exit::Failure;
use anyhow::Context as _;
use dure_api::ClusterBalanceView;
use dure_core::lb_export::{export, ExportCluster, ExportMember, ExportRoute};

pub async fn run(ctx: &Context, args: ClusterExportArgs) -> anyhow::Result<()> {
    let view = ctx.client.cluster_balance(&args.name).await?;
    let exported =
        export(&export_cluster(view), args.format).map_err(|e| Failure(e.to_string()))?;
    for note in &exported.notes {
        eprintln!("note: {note}");
    }
    match &args.file {
        None => print!("{}", exported.text),
        Some(path) => {
            std::fs::write(path, &exported.text)
                .with_context(|| format!("cannot write `{}`", path.display()))?;
            eprintln!(
                "cluster `{}` written to {} as {}",
                args.name,
                path.display(),
                args.format
            );
        }
    }
    Ok(())
}

fn export_cluster(view: ClusterBalanceView) -> ExportCluster {
    ExportCluster {
        name: view.name,
        balance: view.cluster.balance,
        members: view
            .cluster
            .members
            .into_iter()
            .map(|m| ExportMember {
                server: m.server,
                address: m.address,
                port: m.port,
                weight: m.weight,
                backup: m.backup,
            })
            .collect(),
        routes: view
            .routes
            .into_iter()
            .map(|r| ExportRoute {
                host: r.route.host,
                path: r.route.path,
            })
            .collect(),
    }
}
