//! The Tomcat template: `conf/server.xml` (connector and shutdown ports,
//! `jvmRoute` = the server's name, and the `<Cluster>` of session
//! replication with static membership of the other members) and
//! `bin/setenv.sh` (Java home and heap), plus how `catalina.sh run` is
//! launched on an instance directory (CATALINA_BASE).

use super::{
    ownership_note, ClusterContext, Context, GeneratedFiles, ServerTemplate, SessionReplication,
};
use crate::lb_export::xml_escape as esc;
use crate::model::ServerSpec;
use std::fmt::Write;

/// The port Tomcat answers HTTP on.
pub const HTTP_PORT: &str = "http";
/// The port Tomcat listens on for the shutdown word.
pub const SHUTDOWN_PORT: &str = "shutdown";
/// The port session replication's receiver listens on.
pub const REPLICATION_PORT: &str = "replication";
/// How often static members ping each other, in ms.
pub const PING_INTERVAL_MS: u32 = 500;
/// How long a member may stay silent before the others drop it, in ms: the
/// time a dead member takes to leave the group. Until then a `backup`
/// cluster cannot move a session whose copies it held (`delta` needs no
/// wait: every member holds every session).
pub const EXPIRATION_MS: u32 = 3000;
/// The word that stops Tomcat when sent to its shutdown port.
pub const SHUTDOWN_WORD: &str = "SHUTDOWN";
/// Path of the generated server configuration in the instance.
pub const SERVER_XML: &str = "conf/server.xml";
/// Path of the generated environment script `catalina.sh` reads.
pub const SETENV_SH: &str = "bin/setenv.sh";

/// The files of a Tomcat server.
pub(super) fn files(
    spec: &ServerSpec,
    template: &ServerTemplate,
    context: &Context,
) -> GeneratedFiles {
    GeneratedFiles::from([
        (SERVER_XML.to_string(), server_xml(spec, context)),
        (SETENV_SH.to_string(), setenv_sh(spec, template)),
    ])
}

/// Runs `catalina.sh run` in the foreground — it execs the JVM, so the
/// server's process is Tomcat itself — on the instance directory.
pub(super) fn launch(spec: &mut ServerSpec, template: &ServerTemplate, instance_dir: &str) {
    let home = template.catalina_home();
    spec.argv = vec![format!("{home}/bin/catalina.sh"), "run".into()];
    spec.env.insert("CATALINA_HOME".into(), home.to_string());
    spec.env
        .insert("CATALINA_BASE".into(), instance_dir.to_string());
}

fn server_xml(spec: &ServerSpec, context: &Context) -> String {
    let name = esc(&spec.name);
    // -1: no shutdown port; the agent then stops Tomcat with the stop signal.
    let shutdown = spec
        .ports
        .get(SHUTDOWN_PORT)
        .map_or("-1".to_string(), u16::to_string);
    let http = spec.ports.get(HTTP_PORT).copied().unwrap_or_default();
    // Applications are deployed from the server's `app_dir` when it has
    // one, else from the instance's own `webapps`.
    let app_base = spec
        .app_dir
        .as_ref()
        .map_or("webapps".to_string(), |dir| esc(&dir.to_string_lossy()));
    let cluster = context
        .cluster
        .as_ref()
        .and_then(|c| cluster_xml(spec, c))
        .unwrap_or_default();
    // bindOnInit="false": the connector binds only once the engine and its
    // applications have started, so a TCP check of the http port means the
    // applications are deployed.
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- {note} -->
<Server port="{shutdown}" shutdown="{SHUTDOWN_WORD}">
  <Listener className="org.apache.catalina.startup.VersionLoggerListener"/>
  <Listener className="org.apache.catalina.core.JreMemoryLeakPreventionListener"/>
  <Listener className="org.apache.catalina.mbeans.GlobalResourcesLifecycleListener"/>
  <Listener className="org.apache.catalina.core.ThreadLocalLeakPreventionListener"/>
  <GlobalNamingResources>
    <Resource name="UserDatabase" auth="Container" type="org.apache.catalina.UserDatabase"
              factory="org.apache.catalina.users.MemoryUserDatabaseFactory" pathname="conf/tomcat-users.xml"/>
  </GlobalNamingResources>
  <Service name="Catalina">
    <Connector port="{http}" protocol="HTTP/1.1" connectionTimeout="20000" bindOnInit="false"/>
    <Engine name="Catalina" defaultHost="localhost" jvmRoute="{name}">
{cluster}      <Realm className="org.apache.catalina.realm.LockOutRealm">
        <Realm className="org.apache.catalina.realm.UserDatabaseRealm" resourceName="UserDatabase"/>
      </Realm>
      <Host name="localhost" appBase="{app_base}" unpackWARs="true" autoDeploy="true" deployIgnore="^\.dure$">
        <Valve className="org.apache.catalina.valves.AccessLogValve" directory="logs"
               prefix="localhost_access_log" suffix=".txt" pattern="%h %l %u %t &quot;%r&quot; %s %b"/>
      </Host>
    </Engine>
  </Service>
</Server>
"#,
        note = esc(&ownership_note(&spec.name)),
    )
}

/// The `<Cluster>` element, when the cluster replicates sessions.
///
/// Membership is static (`StaticMembershipService`): every other member
/// with its node's address and `replication` port, so nothing depends on
/// multicast. Messages are sent with synchronous acknowledgement
/// (`channelSendOptions="6"`): a request's changes reach the other members
/// before its response is sent, so a member killed right after answering
/// loses nothing a client saw. Failures are detected by the static
/// membership's own pings: `TcpFailureDetector` would keep a member that
/// died and came back under the same id out of the group for good.
fn cluster_xml(spec: &ServerSpec, cluster: &ClusterContext) -> Option<String> {
    let own_port = *spec.ports.get(REPLICATION_PORT)?;
    let manager = match cluster.session_replication {
        SessionReplication::None => return None,
        SessionReplication::Delta => {
            r#"<Manager className="org.apache.catalina.ha.session.DeltaManager" expireSessionsOnShutdown="false" notifyListenersOnReplication="true"/>"#
        }
        SessionReplication::Backup => {
            r#"<Manager className="org.apache.catalina.ha.session.BackupManager" mapSendOptions="6" notifyListenersOnReplication="true"/>"#
        }
    };
    let mut members = String::new();
    for peer in &cluster.peers {
        let Some(port) = peer.replication_port else {
            continue;
        };
        let _ = writeln!(
            members,
            r#"            <Member className="org.apache.catalina.tribes.membership.StaticMember" host="{}" port="{port}" uniqueId="{}"/>"#,
            esc(&peer.host),
            unique_id(&peer.server)
        );
    }
    Some(format!(
        r#"      <!-- session replication `{replication}` of cluster `{cluster}` -->
      <Cluster className="org.apache.catalina.ha.tcp.SimpleTcpCluster" channelSendOptions="6">
        {manager}
        <Channel className="org.apache.catalina.tribes.group.GroupChannel">
          <Membership className="org.apache.catalina.tribes.membership.StaticMembershipService" pingInterval="{PING_INTERVAL_MS}" expirationTime="{EXPIRATION_MS}">
            <LocalMember className="org.apache.catalina.tribes.membership.StaticMember" uniqueId="{own_id}"/>
{members}          </Membership>
          <Receiver className="org.apache.catalina.tribes.transport.nio.NioReceiver" address="{host}" port="{own_port}" autoBind="1" selectorTimeout="100" maxThreads="6"/>
          <Sender className="org.apache.catalina.tribes.transport.ReplicationTransmitter">
            <Transport className="org.apache.catalina.tribes.transport.nio.PooledParallelSender"/>
          </Sender>
          <Interceptor className="org.apache.catalina.tribes.group.interceptors.MessageDispatchInterceptor"/>
        </Channel>
        <Valve className="org.apache.catalina.ha.tcp.ReplicationValve" filter=""/>
        <Valve className="org.apache.catalina.ha.session.JvmRouteBinderValve"/>
        <ClusterListener className="org.apache.catalina.ha.session.ClusterSessionListener"/>
      </Cluster>
"#,
        replication = cluster.session_replication,
        cluster = esc(&cluster.name),
        own_id = unique_id(&spec.name),
        host = esc(&cluster.host),
    ))
}

/// A member's Tribes id: 16 bytes from the SHA-256 of its server name,
/// each within 0..=127 (Tomcat reads them as signed bytes), so every
/// member writes the same id for it.
pub fn unique_id(server: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(server.as_bytes());
    let bytes: Vec<String> = digest[..16]
        .iter()
        .map(|b| (b & 0x7f).to_string())
        .collect();
    format!("{{{}}}", bytes.join(","))
}

/// `bin/setenv.sh`, which `catalina.sh` sources: the Java home and the heap.
fn setenv_sh(spec: &ServerSpec, template: &ServerTemplate) -> String {
    let mut text = format!("# {}\n", ownership_note(&spec.name));
    match &template.java_home {
        Some(java_home) => {
            let _ = writeln!(text, "JAVA_HOME=\"{java_home}\"\nexport JAVA_HOME");
        }
        // Debian's own way to find a Java for Tomcat, where it is installed.
        None => text.push_str(
            "if [ -z \"$JAVA_HOME\" ] && [ -r /usr/libexec/tomcat10/tomcat-locate-java.sh ]; then\n  . /usr/libexec/tomcat10/tomcat-locate-java.sh\nfi\n",
        ),
    }
    if let Some(heap) = &template.heap {
        let _ = writeln!(
            text,
            "CATALINA_OPTS=\"{} $CATALINA_OPTS\"",
            heap.java_option()
        );
    }
    text.push_str("JAVA_OPTS=\"${JAVA_OPTS:--Djava.awt.headless=true}\"\n");
    text
}
