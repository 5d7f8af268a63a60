//! The rules of balancers across documents (routes name existing
//! clusters, listeners and routes are not repeated, a routed cluster is
//! not deleted) and of a cluster's balancing settings, with the edits of
//! balancers and of those settings, each checked against them.

use crate::domain::{Domain, DomainError};
use crate::lb::{is_cookie_name, is_path_prefix, ClusterBalance, LbSpec, Route};
use crate::model::{ClusterSpec, NodeSpec};
use crate::name::{validate_name, NameKind};

impl Domain {
    pub fn lb(&self, name: &str) -> Result<&LbSpec, DomainError> {
        self.lbs.get(name).ok_or_else(|| DomainError::NotFound {
            kind: NameKind::Lb,
            name: name.to_string(),
        })
    }

    /// The first balancer (by name) with a route to `cluster`.
    pub fn lb_routing_to(&self, cluster: &str) -> Option<&LbSpec> {
        self.lbs.values().find(|lb| {
            lb.listeners
                .iter()
                .flat_map(|l| &l.routes)
                .any(|r| r.cluster == cluster)
        })
    }

    /// Creates a balancer; refused when one of that name exists.
    pub fn create_lb(&mut self, lb: LbSpec) -> Result<(), DomainError> {
        validate_name(NameKind::Lb, &lb.name)?;
        if self.lbs.contains_key(&lb.name) {
            return Err(DomainError::AlreadyExists {
                kind: NameKind::Lb,
                name: lb.name,
            });
        }
        self.check_lb(&lb)?;
        self.lbs.insert(lb.name.clone(), lb);
        Ok(())
    }

    /// Replaces an existing balancer's definition; returns the old one.
    pub fn replace_lb(&mut self, lb: LbSpec) -> Result<LbSpec, DomainError> {
        self.lb(&lb.name)?;
        self.check_lb(&lb)?;
        let name = lb.name.clone();
        Ok(self.lbs.insert(name, lb).expect("checked to exist above"))
    }

    pub fn delete_lb(&mut self, name: &str) -> Result<LbSpec, DomainError> {
        self.lb(name)?;
        Ok(self.lbs.remove(name).expect("checked to exist above"))
    }

    /// Adds `route` to the listener at `listen` of balancer `lb` (its only
    /// listener when `None`); returns the balancer as it is then.
    pub fn add_route(
        &mut self,
        lb: &str,
        listen: Option<&str>,
        route: Route,
    ) -> Result<&LbSpec, DomainError> {
        let mut updated = self.lb(lb)?.clone();
        listener_index(&updated, listen).map(|i| updated.listeners[i].routes.push(route))?;
        self.replace_lb(updated)?;
        self.lb(lb)
    }

    /// Removes the route matching what `route` matches from the listener at
    /// `listen` (its only listener when `None`); when `route.cluster` is
    /// not empty it must be the route's cluster too.
    pub fn remove_route(
        &mut self,
        lb: &str,
        listen: Option<&str>,
        route: &Route,
    ) -> Result<&LbSpec, DomainError> {
        let mut updated = self.lb(lb)?.clone();
        let index = listener_index(&updated, listen)?;
        let listener = &mut updated.listeners[index];
        let before = listener.routes.len();
        listener.routes.retain(|r| {
            !(r.same_match(route) && (route.cluster.is_empty() || r.cluster == route.cluster))
        });
        if listener.routes.len() == before {
            return Err(DomainError::NoSuchRoute {
                lb: lb.to_string(),
                listen: listener.listen.clone(),
                route: route.describe_match(),
            });
        }
        self.replace_lb(updated)?;
        self.lb(lb)
    }

    /// Replaces the balancing settings of `cluster`.
    pub fn set_balance(
        &mut self,
        cluster: &str,
        balance: ClusterBalance,
    ) -> Result<&ClusterSpec, DomainError> {
        let mut updated = self.cluster(cluster)?.clone();
        updated.balance = balance;
        check_balance(&updated)?;
        Ok(self
            .clusters
            .entry(cluster.to_string())
            .insert_entry(updated)
            .into_mut())
    }

    /// Checks one balancer against the rest of the domain.
    pub(crate) fn check_lb(&self, lb: &LbSpec) -> Result<(), DomainError> {
        let name = || lb.name.clone();
        validate_name(NameKind::Lb, &lb.name)?;
        if lb.listeners.is_empty() {
            return Err(DomainError::NoListeners { lb: name() });
        }
        for (i, listener) in lb.listeners.iter().enumerate() {
            let listen = || listener.listen.clone();
            if listener.addr().is_none() {
                return Err(DomainError::ListenAddressInvalid {
                    lb: name(),
                    listen: listen(),
                });
            }
            if lb.listeners[..i]
                .iter()
                .any(|l| l.same_address(&listener.listen))
            {
                return Err(DomainError::ListenerTwice {
                    lb: name(),
                    listen: listen(),
                });
            }
            if let Some(tls) = &listener.tls {
                for (what, path) in [("certificate", &tls.cert), ("key", &tls.key)] {
                    if !path.starts_with('/') {
                        return Err(DomainError::TlsPathNotAbsolute {
                            lb: name(),
                            listen: listen(),
                            what,
                            path: path.clone(),
                        });
                    }
                }
            }
            for (j, route) in listener.routes.iter().enumerate() {
                if let Some(host) = &route.host {
                    if host.is_empty() || !NodeSpec::address_is_valid(host) {
                        return Err(DomainError::RouteHostInvalid {
                            lb: name(),
                            host: host.clone(),
                        });
                    }
                }
                if let Some(path) = route.path.as_deref().filter(|p| !is_path_prefix(p)) {
                    return Err(DomainError::RoutePathInvalid {
                        lb: name(),
                        path: path.to_string(),
                    });
                }
                if !self.clusters.contains_key(&route.cluster) {
                    return Err(DomainError::RouteToUnknownCluster {
                        lb: name(),
                        cluster: route.cluster.clone(),
                    });
                }
                if listener.routes[..j].iter().any(|r| r.same_match(route)) {
                    return Err(DomainError::RouteTwice {
                        lb: name(),
                        listen: listen(),
                        route: route.describe_match(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// The index of the listener at `listen`, or of the only listener.
fn listener_index(lb: &LbSpec, listen: Option<&str>) -> Result<usize, DomainError> {
    match listen {
        Some(listen) => lb
            .listeners
            .iter()
            .position(|l| l.same_address(listen))
            .ok_or_else(|| DomainError::NoSuchListener {
                lb: lb.name.clone(),
                listen: listen.to_string(),
            }),
        None if lb.listeners.len() == 1 => Ok(0),
        None => Err(DomainError::ListenerAmbiguous {
            lb: lb.name.clone(),
            count: lb.listeners.len(),
        }),
    }
}

/// Checks a cluster's balancing settings against its members.
pub(crate) fn check_balance(cluster: &ClusterSpec) -> Result<(), DomainError> {
    let balance = &cluster.balance;
    let invalid = |reason: String| DomainError::BalanceInvalid {
        cluster: cluster.name.clone(),
        reason,
    };
    balance
        .health
        .validate()
        .map_err(|e| invalid(e.to_string()))?;
    balance
        .outlier
        .validate()
        .map_err(|e| invalid(e.to_string()))?;
    if let Some(sticky) = &balance.sticky {
        if !is_cookie_name(sticky.cookie_name()) {
            return Err(DomainError::CookieNameInvalid {
                cluster: cluster.name.clone(),
                cookie: sticky.cookie_name().to_string(),
            });
        }
    }
    for backup in &balance.backup {
        if !cluster.members.contains(backup) {
            return Err(DomainError::BackupNotMember {
                cluster: cluster.name.clone(),
                server: backup.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::balance::Sticky;
    use crate::lb::{ClusterBalance, LbSpec, Listener, Route, TlsFiles};
    use crate::{ClusterSpec, Domain, DomainError, NodeSpec, ServerSpec};

    fn domain() -> Domain {
        let mut d = Domain::default();
        d.put_node(NodeSpec {
            name: "n1".into(),
            address: "127.0.0.1".into(),
            agent_port: None,
            backup_of: None,
            shared_dirs: Vec::new(),
        })
        .unwrap();
        for (name, port) in [("web1", 9080), ("web2", 9081)] {
            let mut s = ServerSpec::new(name, "n1", vec!["/bin/true".into()]);
            s.ports.insert("http".into(), port);
            d.create_server(s).unwrap();
        }
        d.create_cluster(ClusterSpec::new("shop", vec!["web1".into(), "web2".into()]))
            .unwrap();
        d
    }

    fn route(cluster: &str, host: Option<&str>, path: Option<&str>) -> Route {
        Route {
            host: host.map(str::to_string),
            path: path.map(str::to_string),
            cluster: cluster.into(),
        }
    }

    fn lb(listens: &[&str], routes: Vec<Route>) -> LbSpec {
        LbSpec {
            name: "front".into(),
            listeners: listens
                .iter()
                .map(|l| Listener {
                    listen: l.to_string(),
                    tls: None,
                    routes: routes.clone(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_route_to_an_unknown_cluster_is_refused_naming_it() {
        let mut d = domain();
        let err = d
            .create_lb(lb(&["127.0.0.1:8080"], vec![route("ghost", None, None)]))
            .unwrap_err();
        assert_eq!(
            err,
            DomainError::RouteToUnknownCluster {
                lb: "front".into(),
                cluster: "ghost".into()
            }
        );
        assert!(err.to_string().contains("cluster `ghost`"), "{err}");
        assert!(d.lbs.is_empty(), "a refused edit changes nothing");
    }

    #[test]
    fn a_routed_cluster_cannot_be_deleted_until_its_routes_go() {
        let mut d = domain();
        d.create_lb(lb(&["127.0.0.1:8080"], vec![route("shop", None, None)]))
            .unwrap();
        let err = d.delete_cluster("shop").unwrap_err();
        assert!(matches!(err, DomainError::ClusterRoutedBy { ref lb, .. } if lb == "front"));
        d.remove_route("front", None, &route("", None, None))
            .unwrap();
        d.delete_cluster("shop").unwrap();
    }

    #[test]
    fn bad_listeners_and_routes_are_refused_with_the_reason() {
        let mut d = domain();
        let shop = || route("shop", None, None);
        type Expected = fn(&DomainError) -> bool;
        let cases: Vec<(LbSpec, Expected)> = vec![
            (lb(&[], vec![]), |e| {
                matches!(e, DomainError::NoListeners { .. })
            }),
            (lb(&["localhost:80"], vec![]), |e| {
                matches!(e, DomainError::ListenAddressInvalid { .. })
            }),
            (lb(&["127.0.0.1:0"], vec![]), |e| {
                matches!(e, DomainError::ListenAddressInvalid { .. })
            }),
            (lb(&["[::1]:80", "[0::1]:80"], vec![]), |e| {
                matches!(e, DomainError::ListenerTwice { .. })
            }),
            (lb(&["127.0.0.1:80"], vec![shop(), shop()]), |e| {
                matches!(e, DomainError::RouteTwice { .. })
            }),
            (
                lb(
                    &["127.0.0.1:80"],
                    vec![
                        route("shop", Some("Shop.example.com"), None),
                        route("shop", Some("shop.example.com"), None),
                    ],
                ),
                |e| matches!(e, DomainError::RouteTwice { .. }),
            ),
            (
                lb(&["127.0.0.1:80"], vec![route("shop", Some("a b"), None)]),
                |e| matches!(e, DomainError::RouteHostInvalid { .. }),
            ),
            (
                lb(&["127.0.0.1:80"], vec![route("shop", None, Some("api"))]),
                |e| matches!(e, DomainError::RoutePathInvalid { .. }),
            ),
        ];
        for (spec, expected) in cases {
            let err = d.create_lb(spec.clone()).unwrap_err();
            assert!(expected(&err), "{spec:?}: {err}");
        }
        let mut tls = lb(&["127.0.0.1:443"], vec![]);
        tls.listeners[0].tls = Some(TlsFiles {
            cert: "cert.pem".into(),
            key: "/k.pem".into(),
        });
        let err = d.create_lb(tls).unwrap_err();
        assert!(
            err.to_string().contains("certificate path `cert.pem`"),
            "{err}"
        );
        assert!(d.lbs.is_empty());
    }

    #[test]
    fn routes_are_added_to_the_named_or_only_listener() {
        let mut d = domain();
        d.create_lb(lb(&["127.0.0.1:80"], vec![])).unwrap();
        d.add_route("front", None, route("shop", None, Some("/api")))
            .unwrap();
        let err = d
            .add_route("front", None, route("shop", None, Some("/api")))
            .unwrap_err();
        assert!(matches!(err, DomainError::RouteTwice { .. }), "{err}");
        let mut two = lb(&["127.0.0.1:80", "127.0.0.1:81"], vec![]);
        two.name = "pair".into();
        d.create_lb(two).unwrap();
        let err = d
            .add_route("pair", None, route("shop", None, None))
            .unwrap_err();
        assert!(matches!(
            err,
            DomainError::ListenerAmbiguous { count: 2, .. }
        ));
        d.add_route("pair", Some("127.0.0.1:81"), route("shop", None, None))
            .unwrap();
        assert_eq!(d.lb("pair").unwrap().listeners[1].routes.len(), 1);
        let err = d
            .remove_route("pair", Some("127.0.0.1:80"), &route("", None, None))
            .unwrap_err();
        assert!(matches!(err, DomainError::NoSuchRoute { .. }), "{err}");
        let err = d
            .add_route("pair", Some("127.0.0.1:82"), route("shop", None, None))
            .unwrap_err();
        assert!(matches!(err, DomainError::NoSuchListener { .. }), "{err}");
    }

    #[test]
    fn balance_settings_are_checked_against_the_members() {
        let mut d = domain();
        let with = |f: fn(&mut ClusterBalance)| {
            let mut b = ClusterBalance::default();
            f(&mut b);
            b
        };
        let err = d
            .set_balance("shop", with(|b| b.backup = vec!["web9".into()]))
            .unwrap_err();
        assert!(matches!(err, DomainError::BackupNotMember { .. }), "{err}");
        let err = d
            .set_balance("shop", with(|b| b.health.rise = 0))
            .unwrap_err();
        assert!(
            err.to_string().contains("`rise` must be at least 1"),
            "{err}"
        );
        let err = d
            .set_balance(
                "shop",
                with(|b| {
                    b.sticky = Some(Sticky::RouteCookie {
                        cookie: "a b".into(),
                    })
                }),
            )
            .unwrap_err();
        assert!(
            matches!(err, DomainError::CookieNameInvalid { .. }),
            "{err}"
        );
        d.set_balance("shop", with(|b| b.backup = vec!["web2".into()]))
            .unwrap();
        d.remove_member("shop", "web2").unwrap();
        assert!(d.cluster("shop").unwrap().balance.backup.is_empty());
    }

    #[test]
    fn balancers_round_trip_through_documents() {
        let mut d = domain();
        d.create_lb(lb(
            &["0.0.0.0:8080"],
            vec![route("shop", Some("a.example"), Some("/x"))],
        ))
        .unwrap();
        let docs = d.documents();
        assert!(docs.contains_key("/lbs/front/lb.json"));
        let back =
            Domain::from_documents(docs.iter().map(|(p, b)| (p.as_str(), b.as_slice()))).unwrap();
        assert_eq!(back, d);
        assert!(back.validate().is_empty());
    }
}
