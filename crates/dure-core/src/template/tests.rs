use super::*;
use crate::model::{canonical_json, NodeSpec, ReadyCheck};

fn node(name: &str, address: &str) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        address: address.into(),
        agent_port: None,
        backup_of: None,
        shared_dirs: Vec::new(),
    }
}

fn tomcat(name: &str, node: &str, http: u16, replication: Option<u16>) -> ServerSpec {
    let mut spec = ServerSpec::new(name, node, Vec::new());
    spec.template = Some(ServerTemplate::new(TemplateKind::Tomcat));
    spec.ports.insert("http".into(), http);
    spec.ports.insert("shutdown".into(), http + 1);
    if let Some(port) = replication {
        spec.ports.insert("replication".into(), port);
    }
    spec
}

fn liberty(name: &str, node: &str, http: u16) -> ServerSpec {
    let mut spec = ServerSpec::new(name, node, Vec::new());
    spec.template = Some(ServerTemplate::new(TemplateKind::Liberty));
    spec.ports.insert("http".into(), http);
    spec
}

/// Three Tomcats on two nodes in cluster `shop` with `replication`.
fn tomcat_domain(replication: SessionReplication) -> Domain {
    let mut d = Domain::default();
    d.put_node(node("n1", "10.0.0.1")).unwrap();
    d.put_node(node("n2", "10.0.0.2")).unwrap();
    d.create_server(tomcat("t1", "n1", 8080, Some(4000)))
        .unwrap();
    d.create_server(tomcat("t2", "n1", 8090, Some(4001)))
        .unwrap();
    d.create_server(tomcat("t3", "n2", 8080, Some(4000)))
        .unwrap();
    let mut cluster = ClusterSpec::new("shop", vec!["t1".into(), "t2".into(), "t3".into()]);
    cluster.session_replication = replication;
    d.create_cluster(cluster).unwrap();
    d
}

fn server_xml(d: &Domain, server: &str) -> String {
    d.template_files(server).expect("a templated server")[tomcat::SERVER_XML].clone()
}

fn class_of<'a>(doc: &'a roxmltree::Document, tag: &str) -> Vec<roxmltree::Node<'a, 'a>> {
    doc.descendants().filter(|n| n.has_tag_name(tag)).collect()
}

#[test]
fn tomcat_server_xml_carries_ports_route_and_static_members() {
    let d = tomcat_domain(SessionReplication::Delta);
    let text = server_xml(&d, "t2");
    let doc = roxmltree::Document::parse(&text).expect("well-formed server.xml");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "Server");
    assert_eq!(root.attribute("port"), Some("8091"));
    assert_eq!(root.attribute("shutdown"), Some(tomcat::SHUTDOWN_WORD));
    let connector = class_of(&doc, "Connector");
    assert_eq!(connector.len(), 1);
    assert_eq!(connector[0].attribute("port"), Some("8090"));
    assert_eq!(
        class_of(&doc, "Engine")[0].attribute("jvmRoute"),
        Some("t2")
    );
    let cluster = &class_of(&doc, "Cluster")[0];
    assert_eq!(
        cluster.attribute("className"),
        Some("org.apache.catalina.ha.tcp.SimpleTcpCluster")
    );
    let manager = &class_of(&doc, "Manager")[0];
    assert_eq!(
        manager.attribute("className"),
        Some("org.apache.catalina.ha.session.DeltaManager")
    );
    let membership = &class_of(&doc, "Membership")[0];
    assert_eq!(
        membership.attribute("className"),
        Some("org.apache.catalina.tribes.membership.StaticMembershipService")
    );
    let members: Vec<(&str, &str, &str)> = class_of(&doc, "Member")
        .iter()
        .map(|m| {
            (
                m.attribute("host").unwrap(),
                m.attribute("port").unwrap(),
                m.attribute("uniqueId").unwrap(),
            )
        })
        .collect();
    let t1 = tomcat::unique_id("t1");
    let t3 = tomcat::unique_id("t3");
    assert_eq!(
        members,
        [
            ("10.0.0.1", "4000", t1.as_str()),
            ("10.0.0.2", "4000", t3.as_str())
        ],
        "the other members, never the server itself"
    );
    let local = &class_of(&doc, "LocalMember")[0];
    assert_eq!(
        local.attribute("uniqueId"),
        Some(tomcat::unique_id("t2").as_str())
    );
    let receiver = &class_of(&doc, "Receiver")[0];
    assert_eq!(receiver.attribute("port"), Some("4001"));
    assert_eq!(receiver.attribute("address"), Some("10.0.0.1"));
    let valves: Vec<&str> = class_of(&doc, "Valve")
        .iter()
        .filter_map(|v| v.attribute("className"))
        .collect();
    assert!(valves.contains(&"org.apache.catalina.ha.tcp.ReplicationValve"));
    assert!(valves.contains(&"org.apache.catalina.ha.session.JvmRouteBinderValve"));
}

#[test]
fn applications_deploy_from_the_app_dir_when_set() {
    let mut d = tomcat_domain(SessionReplication::None);
    let host = |d: &Domain| {
        let text = server_xml(d, "t1");
        let doc = roxmltree::Document::parse(&text).unwrap();
        class_of(&doc, "Host")[0]
            .attribute("appBase")
            .unwrap()
            .to_string()
    };
    assert_eq!(host(&d), "webapps");
    let mut spec = d.server("t1").unwrap().clone();
    spec.app_dir = Some("/srv/apps/t1".into());
    d.replace_server(spec).unwrap();
    assert_eq!(host(&d), "/srv/apps/t1");
}

#[test]
fn backup_replication_uses_the_backup_manager_and_none_writes_no_cluster() {
    let d = tomcat_domain(SessionReplication::Backup);
    let text = server_xml(&d, "t1");
    let doc = roxmltree::Document::parse(&text).unwrap();
    assert_eq!(
        class_of(&doc, "Manager")[0].attribute("className"),
        Some("org.apache.catalina.ha.session.BackupManager")
    );
    let d = tomcat_domain(SessionReplication::None);
    let doc_text = server_xml(&d, "t1");
    let doc = roxmltree::Document::parse(&doc_text).unwrap();
    assert!(class_of(&doc, "Cluster").is_empty());
    assert_eq!(
        class_of(&doc, "Engine")[0].attribute("jvmRoute"),
        Some("t1")
    );
}

#[test]
fn unique_ids_are_sixteen_signed_bytes_and_differ_per_server() {
    let id = tomcat::unique_id("t1");
    let bytes: Vec<i16> = id
        .trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .map(|b| b.parse().unwrap())
        .collect();
    assert_eq!(bytes.len(), 16);
    assert!(bytes.iter().all(|b| (0..=127).contains(b)));
    assert_ne!(id, tomcat::unique_id("t2"));
}

#[test]
fn adding_and_removing_a_member_rewrites_the_others_lists() {
    let mut d = tomcat_domain(SessionReplication::Delta);
    let before = d.template_files("t1").unwrap();
    d.create_server(tomcat("t4", "n2", 8090, Some(4001)))
        .unwrap();
    assert_eq!(d.template_files("t1").unwrap(), before, "not a member yet");
    d.add_member("shop", "t4", None).unwrap();
    let added = d.template_files("t1").unwrap();
    assert_ne!(added, before);
    assert!(added[tomcat::SERVER_XML].contains(&tomcat::unique_id("t4")));
    d.remove_member("shop", "t4").unwrap();
    assert_eq!(d.template_files("t1").unwrap(), before);
}

#[test]
fn heap_and_java_home_go_into_setenv() {
    let mut d = tomcat_domain(SessionReplication::None);
    let mut spec = d.server("t1").unwrap().clone();
    let template = spec.template.as_mut().unwrap();
    template.heap = Some("512m".parse().unwrap());
    template.java_home = Some("/usr/lib/jvm/java-17".into());
    d.replace_server(spec).unwrap();
    let setenv = &d.template_files("t1").unwrap()[tomcat::SETENV_SH];
    assert!(
        setenv.contains("CATALINA_OPTS=\"-Xmx512m $CATALINA_OPTS\""),
        "{setenv}"
    );
    assert!(
        setenv.contains("JAVA_HOME=\"/usr/lib/jvm/java-17\""),
        "{setenv}"
    );
}

#[test]
fn heap_sizes_read_back_what_they_write() {
    for (text, written) in [("512m", "512m"), ("2G", "2g"), ("1024k", "1024k")] {
        assert_eq!(text.parse::<HeapSize>().unwrap().to_string(), written);
    }
    for bad in ["", "m", "512", "0m", "-1m", "5.5g", "512mb", "99999999999m"] {
        let err = bad.parse::<HeapSize>().unwrap_err();
        assert!(err.to_string().contains("such as 512m"), "{bad}: {err}");
    }
}

#[test]
fn template_rules_refuse_with_the_reason() {
    let mut d = Domain::default();
    d.put_node(node("n1", "10.0.0.1")).unwrap();
    let mut no_http = tomcat("a", "n1", 8080, None);
    no_http.ports.remove("http");
    assert_eq!(
        d.create_server(no_http).unwrap_err().to_string(),
        "server `a` uses template `tomcat`, which needs port `http`: define it"
    );
    let mut command = tomcat("a", "n1", 8080, None);
    command.argv = vec!["/bin/true".into()];
    assert!(matches!(
        d.create_server(command).unwrap_err(),
        DomainError::TemplateWithCommand { .. }
    ));
    let mut same = tomcat("a", "n1", 8080, None);
    same.ports.insert("shutdown".into(), 8080);
    assert!(matches!(
        d.create_server(same).unwrap_err(),
        DomainError::PortTwice { .. }
    ));
    let mut relative = tomcat("a", "n1", 8080, None);
    relative.template.as_mut().unwrap().catalina_home = Some("tomcat10".into());
    assert_eq!(
        d.create_server(relative).unwrap_err().to_string(),
        "server `a` template `tomcat` setting `catalina_home` is invalid: `tomcat10` must be an absolute path without quotes or `$`"
    );
    let mut wrong_kind = liberty("a", "n1", 8080);
    wrong_kind.template.as_mut().unwrap().catalina_home = Some("/x".into());
    assert!(d.create_server(wrong_kind).is_err());
    let bad_heap = serde_json::from_str::<ServerSpec>(
        r#"{"name":"a","node":"n1","template":{"kind":"tomcat","heap":"lots"},"ports":{"http":1}}"#,
    )
    .unwrap_err();
    assert!(
        bad_heap.to_string().contains("heap size `lots` is invalid"),
        "{bad_heap}"
    );
    assert!(d.errors_free());
}

impl Domain {
    fn errors_free(&self) -> bool {
        self.validate().is_empty()
    }
}

#[test]
fn replication_needs_tomcat_members_with_a_port_on_nodes_with_an_address() {
    let mut d = tomcat_domain(SessionReplication::None);
    let set = |d: &mut Domain| {
        d.set_cluster_servers("shop", SessionReplication::Delta, None)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    assert_eq!(set(&mut d), Ok(()));
    d.set_cluster_servers("shop", SessionReplication::None, None)
        .unwrap();
    let mut spec = d.server("t3").unwrap().clone();
    spec.ports.remove("replication");
    d.replace_server(spec).unwrap();
    assert_eq!(
        set(&mut d).unwrap_err(),
        "cluster `shop` replicates sessions, but member `t3` has no `replication` port: define one"
    );
    let mut d = tomcat_domain(SessionReplication::None);
    d.put_node(node("n2", "")).unwrap();
    assert!(set(&mut d)
        .unwrap_err()
        .contains("node `n2` of member `t3` has no address"));
    let mut d = tomcat_domain(SessionReplication::None);
    let mut plain = ServerSpec::new("p", "n2", vec!["/bin/true".into()]);
    plain.ports.insert("replication".into(), 4100);
    d.create_server(plain).unwrap();
    d.add_member("shop", "p", None).unwrap();
    assert!(set(&mut d)
        .unwrap_err()
        .contains("member `p` is not a tomcat server"));
    // A member added later must follow the cluster's setting too.
    let mut d = tomcat_domain(SessionReplication::Delta);
    d.create_server(tomcat("t9", "n2", 9000, None)).unwrap();
    assert!(d.add_member("shop", "t9", None).is_err());
}

fn liberty_domain() -> Domain {
    let mut d = Domain::default();
    let mut n1 = node("n1", "host1");
    n1.shared_dirs = vec!["/shared".into()];
    let mut n2 = node("n2", "host2");
    n2.shared_dirs = vec!["/shared/".into(), "/other".into()];
    d.put_node(n1).unwrap();
    d.put_node(n2).unwrap();
    d.create_server(liberty("l1", "n1", 9080)).unwrap();
    d.create_server(liberty("l2", "n2", 9080)).unwrap();
    d.create_cluster(ClusterSpec::new("bank", vec!["l1".into(), "l2".into()]))
        .unwrap();
    d
}

fn recovery(log_dir: Option<&str>) -> Option<TransactionPeerRecovery> {
    Some(TransactionPeerRecovery {
        enabled: true,
        log_dir: log_dir.map(str::to_string),
    })
}

#[test]
fn liberty_members_carry_transaction_peer_recovery_in_their_include() {
    let mut d = liberty_domain();
    d.set_cluster_servers(
        "bank",
        SessionReplication::None,
        recovery(Some("/shared/tx")),
    )
    .unwrap();
    for (server, host) in [("l1", "host1"), ("l2", "host2")] {
        let files = d.template_files(server).unwrap();
        let main = &files[&format!("servers/{server}/server.xml")];
        let doc = roxmltree::Document::parse(main).expect("well-formed server.xml");
        let endpoint = &class_of(&doc, "httpEndpoint")[0];
        assert_eq!(endpoint.attribute("httpPort"), Some("9080"));
        assert_eq!(endpoint.attribute("httpsPort"), Some("-1"));
        assert_eq!(
            class_of(&doc, "include")[0].attribute("location"),
            Some(liberty::INCLUDE_FILE)
        );
        let include = &files[&format!("servers/{server}/{}", liberty::INCLUDE_FILE)];
        let doc = roxmltree::Document::parse(include).expect("well-formed include");
        let tx = &class_of(&doc, "transaction")[0];
        assert_eq!(tx.attribute("recoveryGroup"), Some("clusters:bank"));
        let identity = format!("hosts:{host}:servers:{server}");
        assert_eq!(tx.attribute("recoveryIdentity"), Some(identity.as_str()));
        let dir = format!("/shared/tx/{host}/{server}");
        assert_eq!(tx.attribute("transactionLogDirectory"), Some(dir.as_str()));
        let features: Vec<&str> = class_of(&doc, "feature")
            .iter()
            .filter_map(|f| f.text())
            .collect();
        assert_eq!(features, [liberty::TRANSACTION_FEATURE]);
    }
    // Turned off, the include is empty.
    d.set_cluster_servers("bank", SessionReplication::None, None)
        .unwrap();
    let files = d.template_files("l1").unwrap();
    let doc = roxmltree::Document::parse(&files["servers/l1/dure-include.xml"]).unwrap();
    assert!(class_of(&doc, "transaction").is_empty());
}

#[test]
fn peer_recovery_is_refused_without_a_directory_every_member_shares() {
    let mut d = liberty_domain();
    let refused = |d: &mut Domain, r| {
        d.set_cluster_servers("bank", SessionReplication::None, r)
            .unwrap_err()
            .to_string()
    };
    assert!(refused(&mut d, recovery(None)).contains("give log_dir"));
    assert!(refused(&mut d, recovery(Some("tx"))).contains("absolute"));
    let other = refused(&mut d, recovery(Some("/other/tx")));
    assert!(
        other.contains("not on a filesystem node `n1` (of member `l1`) declares shared"),
        "{other}"
    );
    // `/sharedx` is not inside `/shared`.
    assert!(refused(&mut d, recovery(Some("/sharedx"))).contains("node `n1`"));
    let disabled = Some(TransactionPeerRecovery {
        enabled: false,
        log_dir: None,
    });
    assert!(d
        .set_cluster_servers("bank", SessionReplication::None, disabled)
        .is_ok());
}

#[test]
fn clusters_and_servers_without_templates_keep_their_documents() {
    let cluster = ClusterSpec::new("c", vec!["a".into()]);
    let text = String::from_utf8(canonical_json(&cluster)).unwrap();
    assert!(!text.contains("session_replication"), "{text}");
    assert!(!text.contains("transaction"), "{text}");
    let server = ServerSpec::new("a", "n1", vec!["/bin/true".into()]);
    let text = String::from_utf8(canonical_json(&server)).unwrap();
    assert!(
        !text.contains("template") && !text.contains("app_dir"),
        "{text}"
    );
    let node = node("n1", "");
    assert!(!String::from_utf8(canonical_json(&node))
        .unwrap()
        .contains("shared_dirs"));
}

#[test]
fn the_launch_spec_runs_catalina_on_the_instance() {
    let d = tomcat_domain(SessionReplication::None);
    let spec = d.server("t1").unwrap();
    let launch = launch_spec(spec, "/data/servers/t1/instance");
    assert_eq!(launch.argv, ["/usr/share/tomcat10/bin/catalina.sh", "run"]);
    assert_eq!(launch.env["CATALINA_BASE"], "/data/servers/t1/instance");
    assert_eq!(launch.env["CATALINA_HOME"], DEFAULT_CATALINA_HOME);
    assert_eq!(launch.dir.as_deref(), Some("/data/servers/t1/instance"));
    assert_eq!(
        launch.ready.check,
        ReadyCheck::Tcp {
            port: "http".into()
        }
    );
    let plain = ServerSpec::new("p", "n1", vec!["/bin/true".into()]);
    assert_eq!(launch_spec(&plain, "/x"), plain);
}
