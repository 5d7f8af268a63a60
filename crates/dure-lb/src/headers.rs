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

const HOP_BY_HOP_COUNT: usize = 9;

/// The headers that concern one connection only, never forwarded.
const HOP_BY_HOP: [HeaderName; HOP_BY_HOP_COUNT] = [
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

/// Connection options that name no header (or a hop-by-hop one).
const CONNECTION_OPTIONS: [&str; 3] = ["close", "keep-alive", "upgrade"];

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
    // One pass over the names (standard ones compare as small integers)
    // finds which hop-by-hop headers are there, so none is looked up in
    // vain: a message without any costs no lookup, a response with
    // `Connection: keep-alive` two removals.
    let mut present = [false; HOP_BY_HOP_COUNT];
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present[i] = true;
        }
    }
    if !present.contains(&true) {
        return;
    }
    let upgrade = if is_upgrade(headers) {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    // Other headers the Connection header names: rare, so this stays an
    // empty, unallocated list.
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter(|t| !CONNECTION_OPTIONS.iter().any(|o| t.eq_ignore_ascii_case(o)))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .filter(|name| !HOP_BY_HOP.contains(name))
        .collect();
    for name in &named {
        headers.remove(name);
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, there)| *there) {
        headers.remove(name);
    }
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
}

/// What the forwarding headers say of a connection's client, written out
/// once per connection rather than once per request.
#[derive(Debug, Clone)]
pub struct ClientOrigin {
    /// The client's address, as `X-Forwarded-For` lists it.
    address: HeaderValue,
    /// `http` or `https`.
    proto: HeaderValue,
    /// `for=<node>;proto=<proto>`, the start of its `Forwarded` element.
    forwarded: HeaderValue,
}

impl ClientOrigin {
    /// The origin of a connection from `client` over `proto` (`http` or
    /// `https`).
    pub fn new(client: SocketAddr, proto: &'static str) -> ClientOrigin {
        let ip = client.ip().to_canonical();
        let text =
            |s: String| HeaderValue::from_str(&s).expect("an address is a valid header value");
        ClientOrigin {
            address: text(ip.to_string()),
            proto: HeaderValue::from_static(proto),
            forwarded: text(format!("for={};proto={proto}", forwarded_node(ip))),
        }
    }
}

/// Adds the forwarding headers for a request from `origin` that named
/// `host`.
pub fn add_forwarded(headers: &mut HeaderMap, origin: &ClientOrigin, host: Option<&HeaderValue>) {
    append_list(headers, X_FORWARDED_FOR, &origin.address);
    headers.insert(X_FORWARDED_PROTO, origin.proto.clone());
    let forwarded = match host {
        Some(host) => {
            let prefix = origin.forwarded.as_bytes();
            let mut element = Vec::with_capacity(prefix.len() + host.len() + 8);
            element.extend_from_slice(prefix);
            element.extend_from_slice(b";host=\"");
            // A quoted string may not hold a bare quote or backslash.
            element.extend(
                host.as_bytes()
                    .iter()
                    .filter(|b| !matches!(b, b'"' | b'\\')),
            );
            element.push(b'"');
            headers.insert(X_FORWARDED_HOST, host.clone());
            HeaderValue::from_maybe_shared(bytes::Bytes::from(element))
                .unwrap_or_else(|_| origin.forwarded.clone())
        }
        None => origin.forwarded.clone(),
    };
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
fn append_list(headers: &mut HeaderMap, name: HeaderName, item: &HeaderValue) {
    let mut earlier = headers.get_all(&name).iter().peekable();
    if earlier.peek().is_none() {
        headers.insert(name, item.clone());
        return;
    }
    let mut joined = Vec::new();
    for value in earlier {
        joined.extend_from_slice(value.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(item.as_bytes());
    if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)) {
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
        let origin = ClientOrigin::new("[::1]:5000".parse().unwrap(), "http");
        let host = HeaderValue::from_static("shop.example");
        add_forwarded(&mut headers, &origin, Some(&host));
        assert_eq!(headers.get("x-forwarded-for").unwrap(), "10.0.0.1, ::1");
        assert_eq!(headers.get("x-forwarded-proto").unwrap(), "http");
        assert_eq!(headers.get("x-forwarded-host").unwrap(), "shop.example");
        assert_eq!(
            headers.get("forwarded").unwrap(),
            "for=10.0.0.1, for=\"[::1]\";proto=http;host=\"shop.example\""
        );
    }
}
