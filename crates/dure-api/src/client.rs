//! The typed async HTTP client of the API, used by the CLI, the agent and
//! the tests.

use crate::routes;
use crate::types::*;
use dure_core::operation::OperationOptions;
use dure_core::{ClusterSpec, Intent, NodeSpec, ServerSpec};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The controller could not be reached at all.
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The token was missing or refused (401/403).
    #[error("{message} (http {status})")]
    Auth { status: u16, message: String },
    /// The API answered with an error.
    #[error("{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The answer could not be read.
    #[error("unexpected answer from {url}: {reason}")]
    Decode { url: String, reason: String },
}

impl ClientError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Auth { status, .. } | ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True for failures to reach or authenticate (exit code 3 in the CLI).
    pub fn is_connection_or_auth(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. } | ClientError::Auth { .. }
        )
    }
}

/// How long an ordinary request may take; long polls add their wait to it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client bound to one base URL and bearer token.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// `base` is like `http://127.0.0.1:7070` (a bare `host:port` gets `http://`).
    pub fn new(base: &str, token: &str) -> Client {
        let base = if base.contains("://") {
            base.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", base.trim_end_matches('/'))
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Client {
            base,
            token: token.to_string(),
            http,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn call<Q: Serialize, B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: Option<&Q>,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let url = format!("{}{}", self.base, path);
        let mut request = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .timeout(timeout);
        if let Some(query) = query {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| ClientError::Unreachable {
            url: url.clone(),
            reason: describe(&e),
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: url.clone(),
                reason: describe(&e),
            })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
                url,
                reason: e.to_string(),
            });
        }
        let detail = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|b| b.error)
            .unwrap_or_else(|_| ErrorDetail {
                code: "http".into(),
                message: format!(
                    "http {} from {url}: {}",
                    status.as_u16(),
                    String::from_utf8_lossy(&bytes).trim()
                ),
            });
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(ClientError::Auth {
                status: status.as_u16(),
                message: detail.message,
            });
        }
        Err(ClientError::Api {
            status: status.as_u16(),
            code: detail.code,
            message: detail.message,
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call::<(), (), T>(Method::GET, path, None, None, REQUEST_TIMEOUT)
            .await
    }

    async fn get_query<Q: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        query: &Q,
    ) -> Result<T, ClientError> {
        self.call::<Q, (), T>(Method::GET, path, Some(query), None, REQUEST_TIMEOUT)
            .await
    }

    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call::<(), B, T>(method, path, None, Some(body), REQUEST_TIMEOUT)
            .await
    }

    async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call::<(), (), T>(Method::DELETE, path, None, None, REQUEST_TIMEOUT)
            .await
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get(routes::HEALTH).await
    }

    pub async fn list_nodes(&self) -> Result<Vec<NodeView>, ClientError> {
        self.get(routes::NODES).await
    }

    pub async fn put_node(&self, spec: &NodeSpec) -> Result<NodeView, ClientError> {
        self.send(Method::PUT, &routes::node(&spec.name), spec)
            .await
    }

    pub async fn delete_node(&self, name: &str) -> Result<NodeSpec, ClientError> {
        self.delete(&routes::node(name)).await
    }

    pub async fn list_servers(&self) -> Result<Vec<ServerView>, ClientError> {
        self.get(routes::SERVERS).await
    }

    pub async fn get_server(&self, name: &str) -> Result<ServerView, ClientError> {
        self.get(&routes::server(name)).await
    }

    pub async fn create_server(&self, spec: &ServerSpec) -> Result<ServerView, ClientError> {
        self.send(Method::POST, routes::SERVERS, spec).await
    }

    pub async fn replace_server(&self, spec: &ServerSpec) -> Result<ServerView, ClientError> {
        self.send(Method::PUT, &routes::server(&spec.name), spec)
            .await
    }

    pub async fn delete_server(&self, name: &str, stop: bool) -> Result<ServerSpec, ClientError> {
        let query = DeleteServerQuery { stop };
        self.call::<_, (), _>(
            Method::DELETE,
            &routes::server(name),
            Some(&query),
            None,
            REQUEST_TIMEOUT,
        )
        .await
    }

    /// Sets a server's intent: `run` (start), `stop` or `kill`.
    pub async fn server_intent(
        &self,
        name: &str,
        intent: Intent,
    ) -> Result<ServerView, ClientError> {
        let action = match intent {
            Intent::Run => "start",
            Intent::Stop => "stop",
            Intent::Kill => "kill",
        };
        self.send(Method::POST, &routes::server_action(name, action), &())
            .await
    }

    pub async fn server_logs(&self, name: &str, query: &LogQuery) -> Result<LogChunk, ClientError> {
        self.get_query(&routes::server_action(name, "logs"), query)
            .await
    }

    /// Reads logs straight from an agent (the controller uses this to proxy).
    pub async fn agent_logs(&self, name: &str, query: &LogQuery) -> Result<LogChunk, ClientError> {
        self.get_query(&routes::agent::logs(name), query).await
    }

    pub async fn agent_status(&self) -> Result<AgentStatus, ClientError> {
        self.get(routes::agent::STATUS).await
    }

    pub async fn list_clusters(&self) -> Result<Vec<ClusterView>, ClientError> {
        self.get(routes::CLUSTERS).await
    }

    pub async fn get_cluster(&self, name: &str) -> Result<ClusterView, ClientError> {
        self.get(&routes::cluster(name)).await
    }

    pub async fn create_cluster(&self, spec: &ClusterSpec) -> Result<ClusterView, ClientError> {
        self.send(Method::POST, routes::CLUSTERS, spec).await
    }

    pub async fn delete_cluster(&self, name: &str) -> Result<ClusterSpec, ClientError> {
        self.delete(&routes::cluster(name)).await
    }

    pub async fn add_member(
        &self,
        cluster: &str,
        member: &AddMember,
    ) -> Result<ClusterView, ClientError> {
        self.send(
            Method::POST,
            &routes::cluster_action(cluster, "members"),
            member,
        )
        .await
    }

    pub async fn remove_member(
        &self,
        cluster: &str,
        server: &str,
    ) -> Result<ClusterView, ClientError> {
        self.delete(&routes::cluster_member(cluster, server)).await
    }

    /// Starts, stops or kills a cluster; returns the new operation at once.
    pub async fn cluster_operation(
        &self,
        cluster: &str,
        kind: OperationKind,
        options: &OperationOptions,
    ) -> Result<Operation, ClientError> {
        let path = routes::cluster_action(cluster, &kind.to_string());
        self.send(Method::POST, &path, options).await
    }

    pub async fn list_operations(&self) -> Result<Vec<Operation>, ClientError> {
        self.get(routes::OPERATIONS).await
    }

    pub async fn get_operation(&self, id: &str) -> Result<Operation, ClientError> {
        self.get(&routes::operation(id)).await
    }

    pub async fn events(&self, query: &EventQuery) -> Result<Vec<Event>, ClientError> {
        self.get_query(routes::EVENTS, query).await
    }

    pub async fn register(&self, hello: &AgentHello) -> Result<AgentWelcome, ClientError> {
        self.send(Method::POST, routes::AGENT_REGISTER, hello).await
    }

    /// Long-polls the node's desired state: blocks up to `wait` for an index
    /// greater than `index`.
    pub async fn desired(
        &self,
        node: &str,
        index: u64,
        wait: Duration,
    ) -> Result<DesiredNode, ClientError> {
        let query = DesiredQuery {
            index,
            wait: Some(format!("{}ms", wait.as_millis())),
        };
        self.call::<_, (), _>(
            Method::GET,
            &routes::agent_desired(node),
            Some(&query),
            None,
            REQUEST_TIMEOUT + wait,
        )
        .await
    }

    pub async fn report(&self, node: &str, report: &AgentReport) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .send(Method::POST, &routes::agent_report(node), report)
            .await?;
        Ok(())
    }
}

/// Describes a transport error with its underlying cause (reqwest's own
/// message alone says only "error sending request").
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}
