//! The Liberty template: `servers/<server>/server.xml` with its
//! `httpEndpoint` ports and an include file Dure owns,
//! `servers/<server>/dure-include.xml`, which carries the cluster's
//! transaction peer recovery (`<transaction recoveryGroup recoveryIdentity
//! transactionLogDirectory>` and the `transaction` feature); the heap goes
//! in `jvm.options`, the Java home in `server.env`. Paths are relative to
//! the instance directory, which is Liberty's user directory
//! (`WLP_USER_DIR`).

use super::{ownership_note, Context, GeneratedFiles, ServerTemplate};
use crate::lb_export::xml_escape as esc;
use crate::model::ServerSpec;
use std::fmt::Write;

/// The feature the transaction element needs.
pub const TRANSACTION_FEATURE: &str = "transaction-2.0";
/// The include file's name, beside `server.xml`.
pub const INCLUDE_FILE: &str = "dure-include.xml";

/// The directory of a server's files in the user directory.
fn server_dir(spec: &ServerSpec) -> String {
    format!("servers/{}", spec.name)
}

pub(super) fn files(
    spec: &ServerSpec,
    template: &ServerTemplate,
    context: &Context,
) -> GeneratedFiles {
    let dir = server_dir(spec);
    let mut files = GeneratedFiles::from([
        (format!("{dir}/server.xml"), server_xml(spec)),
        (format!("{dir}/{INCLUDE_FILE}"), include_xml(spec, context)),
    ]);
    if let Some(heap) = &template.heap {
        files.insert(
            format!("{dir}/jvm.options"),
            format!("{}\n", heap.java_option()),
        );
    }
    if let Some(java_home) = &template.java_home {
        files.insert(
            format!("{dir}/server.env"),
            format!("JAVA_HOME={java_home}\n"),
        );
    }
    files
}

/// Runs `server run <name>` in the foreground on the user directory.
pub(super) fn launch(spec: &mut ServerSpec, template: &ServerTemplate, instance_dir: &str) {
    spec.argv = vec![
        format!("{}/bin/server", template.wlp_home()),
        "run".into(),
        spec.name.clone(),
    ];
    spec.env
        .insert("WLP_USER_DIR".into(), instance_dir.to_string());
}

fn server_xml(spec: &ServerSpec) -> String {
    let http = spec.ports.get("http").copied().unwrap_or_default();
    let https = spec
        .ports
        .get("https")
        .map_or("-1".to_string(), u16::to_string);
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- {note} -->
<server description="{name}">
  <featureManager>
    <feature>servlet-6.0</feature>
  </featureManager>
  <httpEndpoint id="defaultHttpEndpoint" host="*" httpPort="{http}" httpsPort="{https}"/>
  <include location="{INCLUDE_FILE}"/>
</server>
"#,
        note = esc(&ownership_note(&spec.name)),
        name = esc(&spec.name),
    )
}

/// The include file: what the server's cluster adds to it.
fn include_xml(spec: &ServerSpec, context: &Context) -> String {
    let mut body = String::new();
    let recovery = context.cluster.as_ref().and_then(|cluster| {
        let recovery = cluster.transaction_peer_recovery.as_ref()?;
        let log_dir = recovery.log_dir.as_deref().filter(|_| recovery.enabled)?;
        Some((cluster, log_dir.trim_end_matches('/')))
    });
    if let Some((cluster, log_dir)) = recovery {
        let host = &cluster.host;
        let _ = write!(
            body,
            r#"  <!-- transaction peer recovery of cluster `{cluster_name}` -->
  <featureManager>
    <feature>{TRANSACTION_FEATURE}</feature>
  </featureManager>
  <transaction recoveryGroup="clusters:{cluster_name}" recoveryIdentity="hosts:{host}:servers:{server}" transactionLogDirectory="{log_dir}/{host}/{server}"/>
"#,
            cluster_name = esc(&cluster.name),
            host = esc(host),
            server = esc(&spec.name),
            log_dir = esc(log_dir),
        );
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- {} -->\n<server>\n{body}</server>\n",
        esc(&ownership_note(&spec.name))
    )
}
