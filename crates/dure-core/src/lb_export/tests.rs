use super::*;
use crate::balance::{Policy, Sticky};
use crate::lb::ActiveCheck;

fn member(server: &str, address: &str, port: u16, weight: u32) -> ExportMember {
    ExportMember {
        server: server.into(),
        address: address.into(),
        port: Some(port),
        weight,
        backup: false,
    }
}

fn shop() -> ExportCluster {
    let mut backup = member("web3", "::1", 8083, 1);
    backup.backup = true;
    ExportCluster {
        name: "shop".into(),
        balance: ClusterBalance {
            backup: vec!["web3".into()],
            ..ClusterBalance::default()
        },
        members: vec![
            member("web1", "10.0.0.1", 8081, 2),
            member("web2", "app2.example", 8082, 0),
            backup,
        ],
        routes: vec![],
    }
}

fn trimmed(text: &str) -> Vec<&str> {
    text.lines().map(str::trim).collect()
}

#[test]
fn format_names_parse_back() {
    for (format, name) in FORMAT_NAMES {
        assert_eq!(name.parse::<ExportFormat>(), Ok(format));
        assert_eq!(format.to_string(), name);
    }
    let err = "apache".parse::<ExportFormat>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "`apache` is not an export format: use haproxy, nginx or plugin-cfg"
    );
}

#[test]
fn a_cluster_without_members_or_reachable_ones_is_refused() {
    let mut cluster = shop();
    cluster.members.clear();
    assert_eq!(
        export(&cluster, ExportFormat::Haproxy),
        Err(ExportError::NoMembers {
            cluster: "shop".into()
        })
    );
    cluster.members = vec![ExportMember {
        port: None,
        ..member("web1", "10.0.0.1", 1, 1)
    }];
    let err = export(&cluster, ExportFormat::Nginx).unwrap_err();
    assert!(
        err.to_string()
            .contains("member `web1` is left out: its server declares no `http` port"),
        "{err}"
    );
}

#[test]
fn unreachable_members_are_left_out_with_a_note() {
    let mut cluster = shop();
    cluster.members.push(member("web4", "", 8084, 1));
    cluster.members.push(member("web5", "a b\n", 8085, 1));
    let exported = export(&cluster, ExportFormat::Haproxy).unwrap();
    assert!(!exported.text.contains("web4 ") && !exported.text.contains("web5 "));
    assert!(exported.notes[0].starts_with("member `web4` is left out: its node has no address"));
    assert!(exported.notes[1].contains("`web5` is left out"));
    assert!(exported
        .text
        .contains("# member `web4` is left out: its node has no address"));
}

#[test]
fn haproxy_backend_maps_policy_checks_weights_and_backups() {
    let text = export(&shop(), ExportFormat::Haproxy).unwrap().text;
    let lines = trimmed(&text);
    assert!(lines[0].starts_with("# cluster shop (3 members, policy round_robin)"));
    assert!(lines.contains(&"backend shop"));
    assert!(lines.contains(&"balance roundrobin"));
    assert!(lines.contains(
        &"default-server check inter 1s rise 2 fall 2 observe layer7 error-limit 5 on-error mark-down"
    ));
    assert!(lines.contains(&"server web1 10.0.0.1:8081 weight 2"));
    assert!(lines.contains(&"server web2 app2.example:8082 weight 0"));
    assert!(lines.contains(&"server web3 [::1]:8083 weight 1 backup"));
    assert!(!text.contains("httpchk") && !text.contains("cookie"));

    let mut cluster = shop();
    cluster.balance.policy = Policy::IpHash;
    cluster.balance.check = ActiveCheck::Http {
        path: "/health".into(),
    };
    cluster.balance.sticky = Some(Sticky::route_cookie());
    let text = export(&cluster, ExportFormat::Haproxy).unwrap().text;
    let lines = trimmed(&text);
    assert!(lines.contains(&"balance source") && lines.contains(&"hash-type consistent"));
    assert!(lines.contains(&"option httpchk GET /health"));
    assert!(lines.contains(&"cookie DURE_ROUTE insert indirect nocache httponly attr SameSite=Lax"));
    assert!(lines.contains(&"server web1 10.0.0.1:8081 weight 2 cookie web1"));

    for (policy, word) in [(Policy::Random, "random"), (Policy::LeastConn, "leastconn")] {
        cluster.balance.policy = policy;
        let text = export(&cluster, ExportFormat::Haproxy).unwrap().text;
        assert!(text.contains(&format!("    balance {word}\n")), "{text}");
    }
}

#[test]
fn haproxy_reads_tomcat_session_suffixes_with_one_rule_per_member() {
    let mut cluster = shop();
    cluster.balance.sticky = Some(Sticky::session_suffix());
    let text = export(&cluster, ExportFormat::Haproxy).unwrap().text;
    assert!(
        text.contains(
            "    use-server web1 if { req.cook(JSESSIONID) -m reg '^[^.]*\\.web1$' } || { path -m reg -i ';JSESSIONID=[^.;/]*\\.web1(;|/|$)' }\n"
        ),
        "{text}"
    );
    assert_eq!(text.matches("use-server").count(), 3);
}

#[test]
fn haproxy_weights_above_its_range_are_scaled_keeping_ratios() {
    let mut cluster = shop();
    cluster.members = vec![
        member("a", "10.0.0.1", 1, 1000),
        member("b", "10.0.0.2", 1, 500),
        member("c", "10.0.0.3", 1, 1),
    ];
    let exported = export(&cluster, ExportFormat::Haproxy).unwrap();
    assert!(exported.text.contains("server a 10.0.0.1:1 weight 256\n"));
    assert!(exported.text.contains("server b 10.0.0.2:1 weight 128\n"));
    assert!(exported.text.contains("server c 10.0.0.3:1 weight 1\n"));
    assert!(exported.notes[0].contains("scaled by 256/1000"));
}

#[test]
fn names_are_escaped_for_each_format() {
    assert_eq!(haproxy::identifier("web-1_a.b"), "web-1_a.b");
    assert_eq!(haproxy::identifier("a b#c"), "a_b_c");
    assert_eq!(haproxy::identifier(""), "_");
    assert_eq!(nginx::identifier("shop_1"), "shop_1");
    assert_eq!(nginx::identifier("a b;\"c\\"), "\"a b;\\\"c\\\\\"");
    assert_eq!(
        plugin_cfg::escape("a&b<c>\"d'\u{1}\n"),
        "a&amp;b&lt;c&gt;&quot;d&apos;_&#10;"
    );
    assert_eq!(comment_safe("a\nb--c"), "a_b-_c");
    let mut cluster = shop();
    cluster.name = "x&y".into();
    let text = export(&cluster, ExportFormat::PluginCfg).unwrap().text;
    let doc = roxmltree::Document::parse(&text).expect("well-formed");
    let found = doc
        .descendants()
        .find(|n| n.has_tag_name("ServerCluster"))
        .expect("ServerCluster");
    assert_eq!(found.attribute("Name"), Some("x&y"));
}

#[test]
fn nginx_upstream_maps_policy_weights_and_passive_settings() {
    let exported = export(&shop(), ExportFormat::Nginx).unwrap();
    let lines = trimmed(&exported.text);
    assert!(lines.contains(&"upstream shop {"));
    assert!(lines.contains(&"server 10.0.0.1:8081 weight=2 max_fails=3 fail_timeout=10s;  # web1"));
    assert!(lines.contains(&"server app2.example:8082 down max_fails=3 fail_timeout=10s;  # web2"));
    assert!(
        lines.contains(&"server [::1]:8083 weight=1 max_fails=3 fail_timeout=10s backup;  # web3")
    );
    assert!(lines.contains(&"keepalive 32;"));
    assert!(exported.notes[0].starts_with("active check `tcp` is not exported"));

    let mut cluster = shop();
    cluster.balance.policy = Policy::IpHash;
    cluster.balance.sticky = Some(Sticky::route_cookie());
    let exported = export(&cluster, ExportFormat::Nginx).unwrap();
    assert!(exported
        .text
        .contains("    hash $remote_addr consistent;\n"));
    assert!(!exported.text.contains("[::1]"), "{}", exported.text);
    assert!(exported.notes.iter().any(|n| n
        == "backup member `web3` is left out: nginx allows no backup servers with policy ip_hash"));
    assert!(exported
        .notes
        .iter()
        .any(|n| n.contains("sticky sessions on cookie DURE_ROUTE are not exported")));
    let method = exported.text.find("hash $remote_addr").unwrap();
    let keepalive = exported.text.find("keepalive").unwrap();
    assert!(
        method < keepalive,
        "nginx wants the method before keepalive"
    );

    cluster.balance.policy = Policy::LeastConn;
    let text = export(&cluster, ExportFormat::Nginx).unwrap().text;
    assert!(text.contains("    least_conn;\n") && text.contains(" backup;"));
    cluster.balance.policy = Policy::Random;
    let text = export(&cluster, ExportFormat::Nginx).unwrap().text;
    assert!(text.contains("    random;\n") && !text.contains(" backup;"));
}

#[test]
fn plugin_cfg_lists_servers_primaries_backups_and_routes() {
    let mut cluster = shop();
    cluster.balance.sticky = Some(Sticky::session_suffix());
    cluster.routes = vec![
        ExportRoute {
            host: None,
            path: None,
        },
        ExportRoute {
            host: Some("Shop.Example".into()),
            path: Some("/api/".into()),
        },
        ExportRoute {
            host: Some("shop.example".into()),
            path: Some("/api".into()),
        },
    ];
    let exported = export(&cluster, ExportFormat::PluginCfg).unwrap();
    assert!(exported
        .text
        .starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- cluster shop"));
    let doc = roxmltree::Document::parse(&exported.text).expect("well-formed");
    let config = doc.root_element();
    assert_eq!(config.tag_name().name(), "Config");
    let cluster_element = config
        .children()
        .find(|n| n.has_tag_name("ServerCluster"))
        .expect("ServerCluster");
    assert_eq!(
        cluster_element.attribute("LoadBalance"),
        Some("Round Robin")
    );
    assert_eq!(cluster_element.attribute("RetryInterval"), Some("10"));
    let servers: Vec<_> = cluster_element
        .children()
        .filter(|n| n.has_tag_name("Server"))
        .map(|s| {
            let transport = s.children().find(|n| n.has_tag_name("Transport")).unwrap();
            (
                s.attribute("Name").unwrap(),
                s.attribute("CloneID").unwrap(),
                s.attribute("LoadBalanceWeight").unwrap(),
                transport.attribute("Hostname").unwrap(),
                transport.attribute("Port").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        servers,
        [
            ("web1", "web1", "2", "10.0.0.1", "8081"),
            ("web2", "web2", "0", "app2.example", "8082"),
            ("web3", "web3", "1", "::1", "8083"),
        ]
    );
    let names_in = |element: &str| -> Vec<&str> {
        cluster_element
            .children()
            .find(|n| n.has_tag_name(element))
            .unwrap()
            .children()
            .filter_map(|n| n.attribute("Name"))
            .collect()
    };
    assert_eq!(names_in("PrimaryServers"), ["web1", "web2"]);
    assert_eq!(names_in("BackupServers"), ["web3"]);

    let routes: Vec<_> = config
        .children()
        .filter(|n| n.has_tag_name("Route"))
        .map(|r| {
            (
                r.attribute("VirtualHostGroup").unwrap(),
                r.attribute("UriGroup").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        routes,
        [
            ("default_host", "default_host_shop_URIs"),
            ("shop.example", "shop.example_shop_URIs")
        ]
    );
    let uris: Vec<_> = config
        .descendants()
        .filter(|n| n.has_tag_name("Uri"))
        .map(|u| {
            (
                u.attribute("Name").unwrap(),
                u.attribute("AffinityCookie").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        uris,
        [
            ("/*", "JSESSIONID"),
            ("/api", "JSESSIONID"),
            ("/api/*", "JSESSIONID")
        ]
    );
    assert!(exported
        .notes
        .iter()
        .any(|n| n.contains("not a `.<route>` suffix")));

    cluster.routes.clear();
    cluster.balance.policy = Policy::LeastConn;
    let exported = export(&cluster, ExportFormat::PluginCfg).unwrap();
    assert!(exported
        .notes
        .iter()
        .any(|n| n.contains("policy least_conn has no plugin-cfg equivalent")));
    assert!(exported
        .notes
        .iter()
        .any(|n| n.starts_with("no balancer routes to cluster `shop`")));
    roxmltree::Document::parse(&exported.text).expect("well-formed");
}
