//! Rewrites headers between the client and a member: strips hop-by-hop
//! headers (those of RFC 9110 §7.6.1 and those the Connection header names),
//! keeps `Connection: upgrade` and `Upgrade` on an upgrade, and adds
//! `X-Forwarded-For` (appended), `X-Forwarded-Proto`, `X-Forwarded-Host`
//! and `Forwarded` (appended).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::{IpAddr, SocketAddr};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The headers that concern one connection only, never forwarded.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Returns whether the message asks to switch protocols (`Connection:
/// upgrade` with an `Upgrade` header), as a WebSocket handshake does.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers; an upgrade keeps `Connection: upgrade` and
/// its `Upgrade` header, which the next hop needs to switch too.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let upgrade = if is_upgrade(headers) {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
}

/// Adds the forwarding headers for a request from `client` that named
/// `host` and came over `proto` (`http` or `https`).
pub fn add_forwarded(
    headers: &mut HeaderMap,
    client: SocketAddr,
    host: Option<&str>,
    proto: &'static str,
) {
    let ip = client.ip().to_canonical();
    append_list(headers, X_FORWARDED_FOR, &ip.to_string());
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    let mut forwarded = format!("for={};proto={proto}", forwarded_node(ip));
    if let Some(host) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
        if let Ok(text) = host.to_str() {
            forwarded.push_str(&format!(";host=\"{}\"", text.replace(['"', '\\'], "")));
        }
        headers.insert(X_FORWARDED_HOST, host);
    }
    append_list(headers, header::FORWARDED, &forwarded);
}

/// RFC 7239 §6: an IPv6 node is quoted and bracketed.
fn forwarded_node(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    }
}

/// Appends `item` to a comma-separated list header, joining earlier
/// occurrences into one value.
fn append_list(headers: &mut HeaderMap, name: HeaderName, item: &str) {
    let earlier: Vec<&str> = headers
        .get_all(&name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let joined = if earlier.is_empty() {
        item.to_string()
    } else {
        format!("{}, {item}", earlier.join(", "))
    };
    if let Ok(value) = HeaderValue::from_str(&joined) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_stripped() {
        let mut headers = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut headers);
        let names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["accept"]);
    }

    #[test]
    fn an_upgrade_keeps_its_connection_and_upgrade_headers() {
        let mut headers = map(&[
            ("connection", "Upgrade, keep-alive"),
            ("upgrade", "websocket"),
            ("keep-alive", "1"),
        ]);
        assert!(is_upgrade(&headers));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.get("connection").unwrap(), "upgrade");
        assert_eq!(headers.get("upgrade").unwrap(), "websocket");
        assert!(!headers.contains_key("keep-alive"));
    }

    #[test]
    fn forwarding_headers_append_to_what_came_in() {
        let mut headers = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("forwarded", "for=10.0.0.1"),
        ]);
        add_forwarded(
            &mut headers,
            "[::1]:5000".parse().unwrap(),
            Some("shop.example"),
            "http",
        );
        assert_eq!(headers.get("x-forwarded-for").unwrap(), "10.0.0.1, ::1");
        assert_eq!(headers.get("x-forwarded-proto").unwrap(), "http");
        assert_eq!(headers.get("x-forwarded-host").unwrap(), "shop.example");
        assert_eq!(
            headers.get("forwarded").unwrap(),
            "for=10.0.0.1, for=\"[::1]\";proto=http;host=\"shop.example\""
        );
    }
}
