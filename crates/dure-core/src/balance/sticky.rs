//! Sticky sessions: which member a request is bound to, read from its
//! `Cookie` header, and whether the binding holds.
//!
//! Two modes. In [`Sticky::RouteCookie`] the balancer sets a cookie naming
//! the member's route and reads it back. In [`Sticky::SessionSuffix`] the
//! route is the suffix of the application's session id, as Tomcat's
//! `jvmRoute` writes it (`JSESSIONID=<id>.<route>`), and the application
//! sets the cookie. A member's route is its name unless its
//! [`MemberSpec::route`](super::MemberSpec::route) says otherwise.
//!
//! In the session suffix mode a route may also come from the request's
//! path (`;jsessionid=<id>.<route>`, for clients without cookies).
//!
//! Malformed cookies are ignored, never an error: a request with a cookie
//! the balancer cannot read is balanced as one without.

use super::member::{Availability, MemberId};
use super::pool::{PickContext, Pool};
use serde::{Deserialize, Serialize};

/// The default name of the balancer's route cookie.
pub const ROUTE_COOKIE: &str = "DURE_ROUTE";

/// The default name of the application's session cookie (Servlet's).
pub const SESSION_COOKIE: &str = "JSESSIONID";

/// How a cluster binds a client to a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Sticky {
    /// The balancer sets cookie `cookie` to the member's route.
    RouteCookie {
        /// The cookie's name.
        #[serde(default = "route_cookie")]
        cookie: String,
    },
    /// The route is the part of session cookie `cookie`'s value after its
    /// first `.`; the application sets the cookie.
    SessionSuffix {
        /// The session cookie's name.
        #[serde(default = "session_cookie")]
        cookie: String,
    },
}

fn route_cookie() -> String {
    ROUTE_COOKIE.to_string()
}

fn session_cookie() -> String {
    SESSION_COOKIE.to_string()
}

impl Sticky {
    /// Returns the route cookie mode with the default cookie name.
    pub fn route_cookie() -> Sticky {
        Sticky::RouteCookie {
            cookie: route_cookie(),
        }
    }

    /// Returns the session suffix mode with the default cookie name.
    pub fn session_suffix() -> Sticky {
        Sticky::SessionSuffix {
            cookie: session_cookie(),
        }
    }

    /// Returns the name of the cookie the route is read from.
    pub fn cookie_name(&self) -> &str {
        match self {
            Sticky::RouteCookie { cookie } | Sticky::SessionSuffix { cookie } => cookie,
        }
    }

    /// Returns the route a request names in one `Cookie` header value.
    pub fn route<'a>(&self, cookie_header: &'a str) -> Option<&'a str> {
        let value = cookie_value(cookie_header, self.cookie_name())?;
        let route = match self {
            Sticky::RouteCookie { .. } => value,
            Sticky::SessionSuffix { .. } => session_route(value)?,
        };
        Some(route).filter(|route| !route.is_empty())
    }

    /// Returns the route a request names in any of its `Cookie` header
    /// values (HTTP/2 clients may send one per cookie).
    pub fn route_in<'a>(
        &self,
        cookie_headers: impl IntoIterator<Item = &'a str>,
    ) -> Option<&'a str> {
        cookie_headers
            .into_iter()
            .find_map(|header| self.route(header))
    }

    /// Returns the route a request names in its path, in the session
    /// suffix mode: a path parameter named like the session cookie, in any
    /// case, as servlet containers write it for clients without cookies
    /// (`/cart;jsessionid=8F3A.web1?item=2`). `None` in the route cookie
    /// mode.
    pub fn route_in_path<'a>(&self, path: &'a str) -> Option<&'a str> {
        let Sticky::SessionSuffix { cookie } = self else {
            return None;
        };
        let path = path.split(['?', '#']).next().unwrap_or(path);
        path.split('/')
            .flat_map(|segment| segment.split(';').skip(1))
            .find_map(|parameter| {
                let (name, value) = parameter.split_once('=')?;
                if name.eq_ignore_ascii_case(cookie) {
                    session_route(value)
                } else {
                    None
                }
            })
    }

    /// Returns the `Set-Cookie` value binding a client to `route`, in the
    /// route cookie mode, marked `Secure` when the client came over TLS;
    /// `None` in the session suffix mode, where the application sets its
    /// own cookie.
    pub fn set_cookie(&self, route: &str, secure: bool) -> Option<String> {
        match self {
            Sticky::RouteCookie { cookie } => {
                let secure = if secure { "; Secure" } else { "" };
                Some(format!(
                    "{cookie}={route}; Path=/; HttpOnly; SameSite=Lax{secure}"
                ))
            }
            Sticky::SessionSuffix { .. } => None,
        }
    }
}

/// Returns the value of cookie `name` in one `Cookie` header value
/// (`a=1; b=2`), without surrounding double quotes. The first pair of
/// that name wins, as the most specific path comes first; pairs without
/// `=` are skipped.
pub fn cookie_value<'a>(cookie_header: &'a str, name: &str) -> Option<&'a str> {
    cookie_header.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        if key.trim() != name {
            return None;
        }
        let value = value.trim();
        let unquoted = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        Some(unquoted)
    })
}

/// Returns the route in a session id written `<id>.<route>`: everything
/// after the first `.`, as Tomcat and mod_jk read it.
pub fn session_route(session_id: &str) -> Option<&str> {
    session_id
        .split_once('.')
        .map(|(_, route)| route)
        .filter(|route| !route.is_empty())
}

/// Where a sticky request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StickyPick {
    /// The member.
    pub member: MemberId,
    /// Whether the response must bind the client anew
    /// ([`Sticky::set_cookie`] with the member's route): the request had
    /// no route, or its member could not take it.
    pub set_cookie: bool,
}

impl Pool {
    /// Routes a request bound to `route` (`None` when it names none): to
    /// the member of that route when it is available, or draining before
    /// its deadline, and not already tried by this request; otherwise by
    /// the policy, as [`Pool::pick`]. In the route cookie mode a request
    /// routed by the policy is told to set the cookie.
    pub fn pick_sticky(
        &mut self,
        sticky: &Sticky,
        route: Option<&str>,
        ctx: &PickContext<'_>,
    ) -> Option<StickyPick> {
        let bound = route
            .and_then(|route| self.id_by_route(route))
            .filter(|id| !ctx.tried.contains(id))
            .filter(|id| self.availability(*id, ctx.now) != Availability::Unavailable);
        if let Some(member) = bound {
            return Some(StickyPick {
                member,
                set_cookie: false,
            });
        }
        let member = self.pick(ctx)?;
        Some(StickyPick {
            member,
            set_cookie: matches!(sticky, Sticky::RouteCookie { .. }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::{MemberSpec, MemberState, PoolConfig};
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn reads_a_cookie_among_others() {
        let header = "theme=dark; DURE_ROUTE=web2;JSESSIONID=\"abc.web1\" ; x";
        assert_eq!(cookie_value(header, "DURE_ROUTE"), Some("web2"));
        assert_eq!(cookie_value(header, "JSESSIONID"), Some("abc.web1"));
        assert_eq!(cookie_value(header, "theme"), Some("dark"));
        assert_eq!(cookie_value(header, "x"), None);
        assert_eq!(cookie_value(header, "missing"), None);
        assert_eq!(cookie_value("a=1; a=2", "a"), Some("1"));
        assert_eq!(cookie_value("", "a"), None);
    }

    #[test]
    fn reads_the_route_in_each_mode() {
        let header = "JSESSIONID=8F3A.web1; DURE_ROUTE=web2";
        assert_eq!(Sticky::route_cookie().route(header), Some("web2"));
        assert_eq!(Sticky::session_suffix().route(header), Some("web1"));
        assert_eq!(Sticky::session_suffix().route("JSESSIONID=8F3A"), None);
        assert_eq!(Sticky::session_suffix().route("JSESSIONID=8F3A."), None);
        assert_eq!(
            Sticky::session_suffix().route("JSESSIONID=a.b.c"),
            Some("b.c")
        );
        assert_eq!(Sticky::route_cookie().route("DURE_ROUTE="), None);
        let headers = ["theme=dark", "DURE_ROUTE=web3"];
        assert_eq!(Sticky::route_cookie().route_in(headers), Some("web3"));
    }

    #[test]
    fn reads_the_session_route_from_a_path_parameter() {
        let sticky = Sticky::session_suffix();
        for (path, route) in [
            ("/cart;jsessionid=8F3A.web1", Some("web1")),
            ("/cart;jsessionid=8F3A.web1?item=2.x", Some("web1")),
            ("/a;v=1/cart;JSESSIONID=8F3A.web2;x=y/more", Some("web2")),
            ("/cart;jsessionid=8F3A", None),
            ("/cart?jsessionid=8F3A.web1", None),
            ("/cart;other=8F3A.web1", None),
            ("/", None),
            ("", None),
        ] {
            assert_eq!(sticky.route_in_path(path), route, "{path}");
        }
        assert_eq!(
            Sticky::route_cookie().route_in_path("/cart;dure_route=x.web1"),
            None
        );
    }

    #[test]
    fn only_the_route_cookie_mode_sets_a_cookie() {
        assert_eq!(
            Sticky::route_cookie().set_cookie("web1", false).as_deref(),
            Some("DURE_ROUTE=web1; Path=/; HttpOnly; SameSite=Lax")
        );
        assert_eq!(
            Sticky::route_cookie().set_cookie("web1", true).as_deref(),
            Some("DURE_ROUTE=web1; Path=/; HttpOnly; SameSite=Lax; Secure")
        );
        assert_eq!(Sticky::session_suffix().set_cookie("web1", true), None);
    }

    #[test]
    fn reads_from_configuration_with_default_cookie_names() {
        let sticky: Sticky = serde_json::from_str(r#"{"mode":"route_cookie"}"#).unwrap();
        assert_eq!(sticky, Sticky::route_cookie());
        let sticky: Sticky =
            serde_json::from_str(r#"{"mode":"session_suffix","cookie":"SID"}"#).unwrap();
        assert_eq!(sticky.cookie_name(), "SID");
        let err = serde_json::from_str::<Sticky>(r#"{"mode":"ip"}"#).unwrap_err();
        assert!(err.to_string().contains("route_cookie"), "{err}");
    }

    fn pool() -> Pool {
        let mut pool = Pool::new(PoolConfig::default()).unwrap();
        pool.update(&[
            MemberSpec::new("web1"),
            MemberSpec::new("web2"),
            MemberSpec::new("web3").route("w3"),
        ])
        .unwrap();
        for name in ["web1", "web2", "web3"] {
            pool.set_state(name, MemberState::Serving).unwrap();
        }
        pool
    }

    #[test]
    fn a_bound_request_goes_to_its_member_while_it_can_take_it() {
        let mut pool = pool();
        let sticky = Sticky::route_cookie();
        let now = Duration::from_secs(5);
        let ctx = PickContext::at(now);
        let web2 = pool.id("web2").unwrap();
        for _ in 0..5 {
            let pick = pool.pick_sticky(&sticky, Some("web2"), &ctx).unwrap();
            assert_eq!(
                pick,
                StickyPick {
                    member: web2,
                    set_cookie: false
                }
            );
        }
        // A route of its own, not the name.
        let web3 = pool.id("web3").unwrap();
        assert_eq!(
            pool.pick_sticky(&sticky, Some("w3"), &ctx).unwrap().member,
            web3
        );
        // Draining before its deadline: still bound.
        pool.set_state("web2", MemberState::Draining { deadline: now * 2 })
            .unwrap();
        assert_eq!(
            pool.pick_sticky(&sticky, Some("web2"), &ctx)
                .unwrap()
                .member,
            web2
        );
        // After it: another member, and a new cookie.
        let late = PickContext::at(now * 2);
        let pick = pool.pick_sticky(&sticky, Some("web2"), &late).unwrap();
        assert_ne!(pick.member, web2);
        assert!(pick.set_cookie);
    }

    #[test]
    fn an_unbound_or_stale_request_is_balanced() {
        let mut pool = pool();
        let ctx = PickContext::at(Duration::ZERO);
        for (sticky, cookie) in [
            (Sticky::route_cookie(), true),
            (Sticky::session_suffix(), false),
        ] {
            for route in [None, Some("gone"), Some("")] {
                let pick = pool.pick_sticky(&sticky, route, &ctx).unwrap();
                assert_eq!(pick.set_cookie, cookie);
            }
        }
        // Out, or already tried by this request: not bound.
        let web1 = pool.id("web1").unwrap();
        let tried = [web1];
        let retry = PickContext {
            tried: &tried,
            ..ctx
        };
        let pick = pool
            .pick_sticky(&Sticky::route_cookie(), Some("web1"), &retry)
            .unwrap();
        assert_ne!(pick.member, web1);
        pool.set_state("web1", MemberState::Out).unwrap();
        let pick = pool
            .pick_sticky(&Sticky::route_cookie(), Some("web1"), &ctx)
            .unwrap();
        assert_ne!(pick.member, web1);
    }

    proptest! {
        /// No header text makes the parser panic, and what it finds is a
        /// piece of the header.
        #[test]
        fn any_header_is_read_without_panic(header in ".{0,80}", name in "[A-Za-z_]{1,12}") {
            if let Some(value) = cookie_value(&header, &name) {
                prop_assert!(header.contains(value));
            }
            for sticky in [Sticky::route_cookie(), Sticky::session_suffix()] {
                if let Some(route) = sticky.route(&header) {
                    prop_assert!(!route.is_empty() && header.contains(route));
                }
                if let Some(route) = sticky.route_in_path(&header) {
                    prop_assert!(!route.is_empty() && header.contains(route));
                }
            }
        }

        /// A cookie written by `set_cookie` reads back as its route.
        #[test]
        fn a_set_cookie_reads_back(route in "[A-Za-z0-9_-]{1,63}", other in "[a-z]{1,8}=[a-z]{0,8}") {
            let sticky = Sticky::route_cookie();
            let set = sticky.set_cookie(&route, false).unwrap();
            let pair = set.split(';').next().unwrap();
            let header = format!("{other}; {pair}");
            prop_assert_eq!(sticky.route(&header), Some(route.as_str()));
        }
    }
}
