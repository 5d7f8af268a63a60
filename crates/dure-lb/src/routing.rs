//! Picks the route of a request: by Host (exact, case-insensitive, port
//! ignored; routes naming the host win over routes for any host), then by
//! the longest path prefix that ends at a segment boundary.

use crate::table::RouteSpec;

/// Returns the route for a request to `host` (the Host header or the
/// URI's authority, if any) and `path`.
pub fn select<'a>(
    routes: &'a [RouteSpec],
    host: Option<&str>,
    path: &str,
) -> Option<&'a RouteSpec> {
    let host = host.map(strip_port);
    let named = |r: &&RouteSpec| match (&r.host, host) {
        (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
        _ => false,
    };
    let candidates: Vec<&RouteSpec> = if routes.iter().any(|r| named(&r)) {
        routes.iter().filter(named).collect()
    } else {
        routes.iter().filter(|r| r.host.is_none()).collect()
    };
    candidates
        .into_iter()
        .filter(|r| prefix_matches(&r.path_prefix, path))
        .max_by_key(|r| r.path_prefix.len())
}

/// Returns the host without its port; an IPv6 literal keeps its brackets.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// `/api` matches `/api` and `/api/x` but not `/apix`; `/` and `/api/`
/// match everything below them.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => {
            prefix.ends_with('/')
                || rest.is_empty()
                || rest.starts_with('/')
                || rest.starts_with('?')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: Option<&str>, prefix: &str, cluster: &str) -> RouteSpec {
        RouteSpec {
            host: host.map(str::to_string),
            path_prefix: prefix.to_string(),
            cluster: cluster.to_string(),
        }
    }

    fn chosen(routes: &[RouteSpec], host: Option<&str>, path: &str) -> Option<String> {
        select(routes, host, path).map(|r| r.cluster.clone())
    }

    #[test]
    fn the_host_is_matched_exactly_ignoring_case_and_port() {
        let routes = [
            route(Some("shop.example"), "/", "shop"),
            route(None, "/", "any"),
        ];
        assert_eq!(
            chosen(&routes, Some("SHOP.example:8080"), "/x").as_deref(),
            Some("shop")
        );
        assert_eq!(
            chosen(&routes, Some("www.shop.example"), "/x").as_deref(),
            Some("any")
        );
        assert_eq!(chosen(&routes, None, "/x").as_deref(), Some("any"));
        let v6 = [route(Some("[::1]"), "/", "v6")];
        assert_eq!(chosen(&v6, Some("[::1]:80"), "/").as_deref(), Some("v6"));
    }

    #[test]
    fn the_longest_prefix_at_a_segment_boundary_wins() {
        let routes = [
            route(None, "/", "root"),
            route(None, "/api", "api"),
            route(None, "/api/v2/", "v2"),
        ];
        assert_eq!(chosen(&routes, None, "/api").as_deref(), Some("api"));
        assert_eq!(chosen(&routes, None, "/api/users").as_deref(), Some("api"));
        assert_eq!(chosen(&routes, None, "/apix").as_deref(), Some("root"));
        assert_eq!(chosen(&routes, None, "/api/v2/x").as_deref(), Some("v2"));
    }

    #[test]
    fn no_matching_route_is_none() {
        let routes = [
            route(Some("a.example"), "/", "a"),
            route(None, "/api", "api"),
        ];
        assert_eq!(chosen(&routes, Some("b.example"), "/"), None);
        assert_eq!(
            chosen(&routes, Some("a.example"), "/api"),
            Some("a".to_string())
        );
    }
}
