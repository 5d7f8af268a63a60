//! The access matrix, generated from the route table: every route the
//! controller serves × every kind of caller (admin, operator, viewer, no
//! token, a forged token, a revoked token, an expired token, an expired
//! join token, and the node certificates of two real agents, A and B —
//! the `{node}` of agent routes is A), over real
//! HTTP to a real controller process. The permission each route declares
//! in `dure_api::routes::TABLE` gives the expectation: a refusal is
//! checked exactly (401 or 403, with its code and reason) and has its line
//! in the audit log; an allowed call is neither 401 nor 403 and reaches a
//! handler (no 404 of an unknown endpoint, no 405), so a route in the
//! table that the router does not serve fails too.

mod common;

use common::*;
use dure_api::routes::{Method, Route, TABLE};
use dure_api::{AuditEntry, AuditQuery, CreateToken, ErrorBody};
use dure_core::access::{Permission, Principal, Role};
use dure_core::DurationSpec;
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Admin,
    Operator,
    Viewer,
    NoToken,
    BadToken,
    Revoked,
    Expired,
    ExpiredJoin,
    NodeA,
    NodeB,
}

const CALLERS: [Caller; 10] = [
    Caller::Admin,
    Caller::Operator,
    Caller::Viewer,
    Caller::NoToken,
    Caller::BadToken,
    Caller::Revoked,
    Caller::Expired,
    Caller::ExpiredJoin,
    Caller::NodeA,
    Caller::NodeB,
];

/// The nodes whose agents run, and whose certificates call.
const NODE_A: &str = "node-a";
const NODE_B: &str = "node-b";

/// What a call must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Reaches its handler: anything but 401 and 403.
    Allowed,
    /// Refused with exactly this status, its code and a reason containing
    /// the text.
    Refused(u16, &'static str, &'static str),
}

fn expected(route: &Route, caller: Caller) -> Expect {
    let by_role = |role: Role| {
        if role.allows(route.permission) {
            Expect::Allowed
        } else if route.permission == Permission::Join {
            Expect::Refused(403, "forbidden", "that needs a join token")
        } else {
            Expect::Refused(403, "forbidden", "that needs role")
        }
    };
    let by_node = |node: &str| {
        let principal = Principal::Node(node.to_string());
        if !principal.allows(route.permission) {
            Expect::Refused(403, "forbidden", "reaches only its own agent calls")
        } else if route
            .node_segment(&path_of(route))
            .is_some_and(|named| !principal.may_act_for(named))
        {
            Expect::Refused(403, "forbidden", "not node `node-a`'s")
        } else {
            Expect::Allowed
        }
    };
    match caller {
        Caller::Admin => by_role(Role::Admin),
        Caller::Operator => by_role(Role::Operator),
        Caller::Viewer => by_role(Role::Viewer),
        Caller::NoToken if route.permission == Permission::Public => Expect::Allowed,
        Caller::NoToken => Expect::Refused(401, "unauthorized", "missing bearer token"),
        // A token that is given must be valid, on public routes too.
        Caller::BadToken => Expect::Refused(401, "unauthorized", "not valid"),
        Caller::Revoked => Expect::Refused(401, "unauthorized", "was revoked at"),
        Caller::Expired | Caller::ExpiredJoin => Expect::Refused(401, "unauthorized", "expired at"),
        Caller::NodeA => by_node(NODE_A),
        Caller::NodeB => by_node(NODE_B),
    }
}

/// The route's pattern with every parameter filled with a name that does
/// not exist (the action with a real action), so allowed calls are
/// answered by their handler without changing anything.
fn path_of(route: &Route) -> String {
    let mut path = String::new();
    for segment in route.pattern.split('/').skip(1) {
        path.push('/');
        path.push_str(match segment {
            "{action}" => "start",
            "{node}" => NODE_A,
            s if s.starts_with('{') => "ghost",
            s => s,
        });
    }
    path
}

fn reqwest_method(method: Method) -> reqwest::Method {
    match method {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Delete => reqwest::Method::DELETE,
    }
}

/// One call's outcome.
struct Answer {
    status: u16,
    request_id: String,
    error: Option<ErrorBody>,
}

async fn send(http: &reqwest::Client, base: &str, route: &Route, token: Option<&str>) -> Answer {
    let mut request = http
        .request(
            reqwest_method(route.method),
            format!("{base}{}", path_of(route)),
        )
        .timeout(Duration::from_secs(30));
    if route.method != Method::Get {
        request = request
            .header("content-type", "application/json")
            .body("{}");
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{route:?}: no answer: {e}"));
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{route:?}: no request id"))
        .to_string();
    let streaming = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    // An event stream never ends; its status and headers are the answer.
    let error = if streaming {
        None
    } else {
        let bytes = response.bytes().await.expect("body");
        serde_json::from_slice::<ErrorBody>(&bytes).ok()
    };
    Answer {
        status,
        request_id,
        error,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_caller_as_its_permission_says() {
    let sandbox = sandbox(&[NODE_A, NODE_B]).await;
    let base = sandbox.url();
    let admin = sandbox.client();
    let create = |role: Role, ttl: Option<DurationSpec>| {
        let admin = admin.clone();
        async move {
            admin
                .create_token(&CreateToken {
                    role,
                    ttl,
                    description: format!("matrix {role}"),
                    node: None,
                })
                .await
                .expect("token created")
        }
    };
    // Admin tokens for the revoked and expired callers: their refusals
    // come from revocation and expiry, not from a role.
    let expired = create(Role::Admin, Some(DurationSpec::from_secs(1))).await;
    let operator = create(Role::Operator, None).await;
    let viewer = create(Role::Viewer, None).await;
    let revoked = create(Role::Admin, None).await;
    let expired_join = admin
        .create_token(&CreateToken {
            role: Role::Viewer,
            ttl: Some(DurationSpec::from_secs(1)),
            description: "matrix join".into(),
            node: Some(NODE_A.into()),
        })
        .await
        .expect("join token created");
    admin.revoke_token(&revoked.info.id).await.expect("revoked");
    let forged = format!("{}.{}", viewer.info.id, "0".repeat(64));
    eventually("the 1s token expires", Duration::from_secs(20), || {
        let client = sandbox.client_with_token(&expired.token);
        async move {
            client
                .list_nodes()
                .await
                .err()
                .filter(|e| e.status() == Some(401))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let token_of = |caller: Caller| -> Option<&str> {
        match caller {
            Caller::Admin => Some(sandbox.token()),
            Caller::Operator => Some(&operator.token),
            Caller::Viewer => Some(&viewer.token),
            Caller::NoToken => None,
            Caller::BadToken => Some(&forged),
            Caller::Revoked => Some(&revoked.token),
            Caller::Expired => Some(&expired.token),
            Caller::ExpiredJoin => Some(&expired_join.token),
            Caller::NodeA | Caller::NodeB => None,
        }
    };
    let http = sandbox.http_client();
    let http_a = sandbox
        .node_http_client(NODE_A)
        .expect("node A's certificate");
    let http_b = sandbox
        .node_http_client(NODE_B)
        .expect("node B's certificate");
    let http_of = |caller: Caller| match caller {
        Caller::NodeA => &http_a,
        Caller::NodeB => &http_b,
        _ => &http,
    };
    let mut failures = Vec::new();
    // Request id → (route, caller, status) of every call the audit log must hold.
    let mut audited: HashMap<String, (&Route, Caller, u16)> = HashMap::new();
    for route in TABLE {
        for caller in CALLERS {
            let answer = send(http_of(caller), &base, route, token_of(caller)).await;
            let what = format!("{} {} as {caller:?}", route.method.as_str(), route.pattern);
            match expected(route, caller) {
                Expect::Refused(status, code, reason) => {
                    let error = answer.error.as_ref().map(|b| &b.error);
                    let matches = answer.status == status
                        && error.is_some_and(|e| e.code == code && e.message.contains(reason));
                    if !matches {
                        failures.push(format!(
                            "{what}: expected {status} {code} ({reason}), got {} {error:?}",
                            answer.status
                        ));
                    }
                    audited.insert(answer.request_id, (route, caller, status));
                }
                Expect::Allowed => {
                    let error = answer.error.as_ref().map(|b| &b.error);
                    let unserved = error.is_some_and(|e| {
                        e.code == "method_not_allowed" || e.message.starts_with("no such endpoint")
                    });
                    if answer.status == 401 || answer.status == 403 || unserved {
                        failures.push(format!(
                            "{what}: expected to be allowed, got {} {error:?}",
                            answer.status
                        ));
                    }
                    if route.audited() {
                        audited.insert(answer.request_id, (route, caller, answer.status));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} calls answered wrongly:\n{}",
        failures.len(),
        TABLE.len() * CALLERS.len(),
        failures.join("\n")
    );

    // Every refusal and every audited allowed call has its line.
    let lines: Vec<AuditEntry> = admin
        .audit(&AuditQuery {
            limit: Some(10_000),
            ..AuditQuery::default()
        })
        .await
        .expect("audit log");
    let by_id: HashMap<&str, &AuditEntry> =
        lines.iter().map(|l| (l.request_id.as_str(), l)).collect();
    let denied = audited
        .values()
        .filter(|(_, _, s)| *s == 401 || *s == 403)
        .count();
    assert!(
        denied > TABLE.len() * 4,
        "every route is refused at least four callers"
    );
    for (id, (route, caller, status)) in &audited {
        let what = format!("{} {} as {caller:?}", route.method.as_str(), route.pattern);
        let line = by_id
            .get(id.as_str())
            .unwrap_or_else(|| panic!("{what}: no audit line"));
        assert_eq!(line.status, *status, "{what}");
        assert_eq!(line.method, route.method.as_str(), "{what}");
        assert_eq!(line.path, path_of(route), "{what}");
        let refused = matches!(expected(route, *caller), Expect::Refused(..));
        assert_eq!(line.denied, refused, "{what}");
        let actor = match caller {
            Caller::Admin => Some("admin".to_string()),
            Caller::Operator => Some(format!("{} (matrix operator)", operator.info.id)),
            Caller::Viewer => Some(format!("{} (matrix viewer)", viewer.info.id)),
            Caller::NodeA => Some(format!("agent:{NODE_A}")),
            Caller::NodeB => Some(format!("agent:{NODE_B}")),
            _ => None,
        };
        assert_eq!(line.actor, actor, "{what}");
    }

    // No secret of any caller is in the audit files.
    let mut text = String::new();
    for file in std::fs::read_dir(sandbox.controller_data().join("audit")).expect("audit dir") {
        text.push_str(&std::fs::read_to_string(file.expect("entry").path()).expect("read"));
    }
    for caller in CALLERS {
        if let Some(token) = token_of(caller) {
            let secret = token.split_once('.').map_or(token, |(_, s)| s);
            assert!(
                !text.contains(secret),
                "the {caller:?} token is in the audit log"
            );
        }
    }
}
