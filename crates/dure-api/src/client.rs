//! The typed async HTTP client of the API, used by the CLI, the agent and
//! the tests.

use crate::routes;
use crate::sse::EventStream;
use crate::tls::ClientTls;
use crate::types::*;
use dure_core::operation::OperationOptions;
use dure_core::{ClusterBalance, ClusterSpec, Intent, LbSpec, NodeSpec, ServerSpec};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The HTTP client of a [`Client`] on `tls`.
fn build_http(tls: &Arc<rustls::ClientConfig>) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .pool_idle_timeout(Duration::from_secs(30))
        .use_preconfigured_tls((**tls).clone())
        .build()
        .unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The controller could not be reached at all.
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The TLS handshake failed: the server's certificate is not one the
    /// client trusts, or the server does not speak TLS.
    #[error("cannot connect securely to {url}: {reason}")]
    Untrusted { url: String, reason: String },
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
            ClientError::Unreachable { .. }
                | ClientError::Untrusted { .. }
                | ClientError::Auth { .. }
        )
    }
}

/// The query of a read that takes none.
const NO_QUERY: [(&str, &str); 0] = [];

/// How long an ordinary request may take; long polls add their wait to it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server stop may take to answer: it drains the server first,
/// for as long as its cluster's drain timeout.
const DRAINING_REQUEST_TIMEOUT: Duration = Duration::from_secs(330);

/// A client bound to one base URL and bearer token.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: String,
    /// Shared by clones: [`Client::reconnect`] replaces it for all.
    http: Arc<RwLock<reqwest::Client>>,
    /// What `http` is built from, to build it again.
    tls_config: Arc<rustls::ClientConfig>,
    /// Sent as `?save=` with every configuration change (`None`: the
    /// controller's default).
    save: Option<bool>,
    /// Reads of nodes, servers and clusters show the caller's change set.
    changes_view: bool,
    /// Sent as `?expect=` with configuration changes (see [`Client::with_expect`]).
    expect: Option<String>,
    /// Where the trusted CA came from, said when a handshake fails.
    ca: Option<String>,
}

/// How the controller handled a configuration change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// Committed at once as its own revision.
    Saved,
    /// Staged in the caller's change set.
    Staged,
}

/// The answer of a configuration change and how it was handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed<T> {
    pub value: T,
    pub outcome: ChangeOutcome,
}

/// The answer of a blocking read and the view index it was taken at: pass
/// `index` to the next read to wait for a change past it. An index lower
/// than the one sent means the controller restarted: start over from 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched<T> {
    pub index: u64,
    pub value: T,
}

/// A configuration-changing call; see [`Client::change`].
#[derive(Debug, Clone, Copy)]
pub enum ConfigChange<'a> {
    CreateNode(&'a NodeSpec),
    PutNode(&'a NodeSpec),
    DeleteNode(&'a str),
    CreateServer(&'a ServerSpec),
    ReplaceServer(&'a ServerSpec),
    DeleteServer {
        name: &'a str,
        stop: bool,
    },
    CreateCluster(&'a ClusterSpec),
    DeleteCluster(&'a str),
    AddMember {
        cluster: &'a str,
        member: &'a AddMember,
    },
    RemoveMember {
        cluster: &'a str,
        server: &'a str,
    },
    SetBalance {
        cluster: &'a str,
        balance: &'a ClusterBalance,
    },
    SetClusterServers {
        cluster: &'a str,
        settings: &'a ClusterServers,
    },
    CreateLb(&'a LbSpec),
    ReplaceLb(&'a LbSpec),
    DeleteLb(&'a str),
    AddRoute {
        lb: &'a str,
        route: &'a RouteChange,
    },
    RemoveRoute {
        lb: &'a str,
        route: &'a RouteChange,
    },
}

impl ConfigChange<'_> {
    /// The method, path, body and `?stop=` of the call.
    fn request(&self) -> (Method, String, Option<serde_json::Value>, Option<bool>) {
        match *self {
            ConfigChange::CreateNode(spec) => {
                (Method::POST, routes::NODES.to_string(), json(spec), None)
            }
            ConfigChange::PutNode(spec) => {
                (Method::PUT, routes::node(&spec.name), json(spec), None)
            }
            ConfigChange::DeleteNode(name) => (Method::DELETE, routes::node(name), None, None),
            ConfigChange::CreateServer(spec) => {
                (Method::POST, routes::SERVERS.to_string(), json(spec), None)
            }
            ConfigChange::ReplaceServer(spec) => {
                (Method::PUT, routes::server(&spec.name), json(spec), None)
            }
            ConfigChange::DeleteServer { name, stop } => {
                (Method::DELETE, routes::server(name), None, Some(stop))
            }
            ConfigChange::CreateCluster(spec) => {
                (Method::POST, routes::CLUSTERS.to_string(), json(spec), None)
            }
            ConfigChange::DeleteCluster(name) => {
                (Method::DELETE, routes::cluster(name), None, None)
            }
            ConfigChange::AddMember { cluster, member } => (
                Method::POST,
                routes::cluster_action(cluster, "members"),
                json(member),
                None,
            ),
            ConfigChange::RemoveMember { cluster, server } => (
                Method::DELETE,
                routes::cluster_member(cluster, server),
                None,
                None,
            ),
            ConfigChange::SetClusterServers { cluster, settings } => (
                Method::PUT,
                routes::cluster_servers(cluster),
                json(settings),
                None,
            ),
            ConfigChange::SetBalance { cluster, balance } => (
                Method::PUT,
                routes::cluster_balance(cluster),
                json(balance),
                None,
            ),
            ConfigChange::CreateLb(spec) => {
                (Method::POST, routes::LBS.to_string(), json(spec), None)
            }
            ConfigChange::ReplaceLb(spec) => {
                (Method::PUT, routes::lb(&spec.name), json(spec), None)
            }
            ConfigChange::DeleteLb(name) => (Method::DELETE, routes::lb(name), None, None),
            ConfigChange::AddRoute { lb, route } => {
                (Method::POST, routes::lb_routes(lb), json(route), None)
            }
            ConfigChange::RemoveRoute { lb, route } => (
                Method::POST,
                routes::lb_routes_remove(lb),
                json(route),
                None,
            ),
        }
    }
}

/// The JSON body of a change; our own spec types always serialize (string
/// keys only).
fn json<T: Serialize>(value: &T) -> Option<serde_json::Value> {
    Some(serde_json::to_value(value).unwrap_or_default())
}

impl Client {
    /// `base` is like `http://127.0.0.1:7070` (a bare `host:port` gets
    /// `http://`). An `https://` base trusts no one: see [`Client::with_tls`].
    pub fn new(base: &str, token: &str) -> Client {
        Client::with_tls(base, token, None)
    }

    /// A client whose HTTPS connections trust `tls`'s CA (and show its
    /// client certificate, if any); `None` trusts no server certificate.
    pub fn with_tls(base: &str, token: &str, tls: Option<&ClientTls>) -> Client {
        let base = if base.contains("://") {
            base.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", base.trim_end_matches('/'))
        };
        let tls_config = match tls {
            Some(tls) => tls.config(),
            None => Arc::new(ClientTls::untrusting()),
        };
        let http = Arc::new(RwLock::new(build_http(&tls_config)));
        Client {
            base,
            token: token.to_string(),
            http,
            tls_config,
            save: None,
            changes_view: false,
            expect: None,
            ca: tls.map(|t| t.ca().to_string()),
        }
    }

    /// Returns the same client with another bearer token.
    pub fn with_token(mut self, token: &str) -> Client {
        self.token = token.to_string();
        self
    }

    /// Returns a client whose configuration changes send `?save=` (`None`:
    /// leave it to the controller's default).
    pub fn with_save(mut self, save: Option<bool>) -> Client {
        self.save = save;
        self
    }

    /// Returns a client whose replacing changes carry the digest of the
    /// document as it was read, so the controller refuses them (409) when
    /// another change came in between.
    pub fn with_expect(mut self, expect: Option<String>) -> Client {
        self.expect = expect;
        self
    }

    /// Returns a client whose reads of nodes, servers and clusters show the
    /// caller's change set on top of the saved configuration.
    pub fn with_changes_view(mut self, on: bool) -> Client {
        self.changes_view = on;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// A request that got no answer: a refused TLS handshake, said in one
    /// sentence, else the controller could not be reached.
    fn transport(&self, url: &str, error: &reqwest::Error) -> ClientError {
        match crate::tls::explain_handshake(error, self.ca.as_deref()) {
            Some(reason) => ClientError::Untrusted {
                url: url.to_string(),
                reason,
            },
            None => ClientError::Unreachable {
                url: url.to_string(),
                reason: describe(error),
            },
        }
    }

    async fn call<Q: Serialize, B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: Option<&Q>,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let mut request = self.request(method, path, timeout);
        if let Some(query) = query {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.exchange(path, request).await.map(|(value, _)| value)
    }

    fn request(&self, method: Method, path: &str, timeout: Duration) -> reqwest::RequestBuilder {
        self.authorized(
            self.http()
                .request(method, format!("{}{}", self.base, path)),
        )
        .timeout(timeout)
    }

    fn http(&self) -> reqwest::Client {
        self.http.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes new connections for the next requests of this client and all
    /// its clones; requests under way finish on theirs. After a renewal
    /// of the client certificate: a kept-alive connection still shows the
    /// certificate of its handshake.
    pub fn reconnect(&self) {
        let fresh = build_http(&self.tls_config);
        *self.http.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    }

    /// `request` with this client's bearer token; none when it has none (an
    /// agent known by its certificate).
    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if self.token.is_empty() {
            request
        } else {
            request.bearer_auth(&self.token)
        }
    }

    /// Sends a request; returns the decoded answer and its headers.
    async fn exchange<T: DeserializeOwned>(
        &self,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(T, reqwest::header::HeaderMap), ClientError> {
        let (bytes, headers) = self.exchange_bytes(path, request).await?;
        serde_json::from_slice(&bytes)
            .map(|value| (value, headers))
            .map_err(|e| ClientError::Decode {
                url: format!("{}{}", self.base, path),
                reason: e.to_string(),
            })
    }

    /// Sends a request; returns the raw body of a success and its headers,
    /// and turns any other answer into the error it carries.
    async fn exchange_bytes(
        &self,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(Vec<u8>, reqwest::header::HeaderMap), ClientError> {
        let url = format!("{}{}", self.base, path);
        let response = request.send().await.map_err(|e| self.transport(&url, &e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport(&url, &e))?;
        if status.is_success() {
            return Ok((bytes.to_vec(), headers));
        }
        Err(answer_error(&url, status, &bytes))
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

    /// Reads nodes, servers or clusters, from the change set view when the
    /// client was made `with_changes_view`.
    async fn get_config<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.get_query(path, &self.config_view()).await
    }

    /// A blocking read of `path` (see [`Watched`]): answers once the view
    /// index passes `index` or `wait` runs out; `index` 0 answers at once.
    async fn watched<Q: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        query: &Q,
        index: u64,
        wait: Duration,
    ) -> Result<Watched<T>, ClientError> {
        let watch = WatchQuery {
            index,
            wait: Some(format!("{}ms", wait.as_millis())),
        };
        // The controller may add up to a sixteenth of the wait at random.
        let timeout = REQUEST_TIMEOUT + wait + wait / 16;
        let request = self
            .request(Method::GET, path, timeout)
            .query(query)
            .query(&watch);
        let (value, headers) = self.exchange(path, request).await?;
        let index = headers
            .get(INDEX_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| ClientError::Decode {
                url: format!("{}{}", self.base, path),
                reason: format!("the answer has no valid `{INDEX_HEADER}` header"),
            })?;
        Ok(Watched { index, value })
    }

    /// The query of reads of nodes, servers and clusters: the change set
    /// view when the client was made `with_changes_view`.
    fn config_view(&self) -> ChangeQuery {
        ChangeQuery {
            view: self.changes_view.then(|| "changes".to_string()),
            ..ChangeQuery::default()
        }
    }

    /// Nodes, once their view index passes `index` (see [`Watched`]).
    pub async fn watch_nodes(
        &self,
        index: u64,
        wait: Duration,
    ) -> Result<Watched<Vec<NodeView>>, ClientError> {
        self.watched(routes::NODES, &self.config_view(), index, wait)
            .await
    }

    /// Servers, once their view index passes `index` (see [`Watched`]).
    pub async fn watch_servers(
        &self,
        index: u64,
        wait: Duration,
    ) -> Result<Watched<Vec<ServerView>>, ClientError> {
        self.watched(routes::SERVERS, &self.config_view(), index, wait)
            .await
    }

    /// One server, once the servers' view index passes `index`.
    pub async fn watch_server(
        &self,
        name: &str,
        index: u64,
        wait: Duration,
    ) -> Result<Watched<ServerView>, ClientError> {
        self.watched(&routes::server(name), &self.config_view(), index, wait)
            .await
    }

    /// Clusters with their members' states, once their view index passes
    /// `index`.
    pub async fn watch_clusters(
        &self,
        index: u64,
        wait: Duration,
    ) -> Result<Watched<Vec<ClusterView>>, ClientError> {
        self.watched(routes::CLUSTERS, &self.config_view(), index, wait)
            .await
    }

    /// One cluster, once the clusters' view index passes `index`.
    pub async fn watch_cluster(
        &self,
        name: &str,
        index: u64,
        wait: Duration,
    ) -> Result<Watched<ClusterView>, ClientError> {
        self.watched(&routes::cluster(name), &self.config_view(), index, wait)
            .await
    }

    /// Balancer definitions (saved), once their view index passes `index`.
    pub async fn watch_lbs(
        &self,
        index: u64,
        wait: Duration,
    ) -> Result<Watched<Vec<LbSpec>>, ClientError> {
        self.watched(routes::LBS, &NO_QUERY, index, wait).await
    }

    /// What balancer `name` runs on, once the view index of anything it
    /// shows passes `index`. Always the saved configuration: a balancer
    /// never runs on staged changes.
    pub async fn watch_lb_table(
        &self,
        name: &str,
        index: u64,
        wait: Duration,
    ) -> Result<Watched<LbTable>, ClientError> {
        self.watched(&routes::lb_table(name), &NO_QUERY, index, wait)
            .await
    }

    /// Operations, once their view index passes `index`.
    pub async fn watch_operations(
        &self,
        query: &OperationQuery,
        index: u64,
        wait: Duration,
    ) -> Result<Watched<Vec<Operation>>, ClientError> {
        self.watched(routes::OPERATIONS, query, index, wait).await
    }

    /// One operation, once the operations' view index passes `index`.
    pub async fn watch_operation(
        &self,
        id: &str,
        index: u64,
        wait: Duration,
    ) -> Result<Watched<Operation>, ClientError> {
        self.watched(&routes::operation(id), &NO_QUERY, index, wait)
            .await
    }

    /// Events, once the event log's view index passes `index`.
    pub async fn watch_events(
        &self,
        query: &EventQuery,
        index: u64,
        wait: Duration,
    ) -> Result<Watched<Vec<Event>>, ClientError> {
        self.watched(routes::EVENTS, query, index, wait).await
    }

    /// Sends a configuration change (with `?save=` when the client has a
    /// save setting) and says whether the controller saved or staged it.
    pub async fn change<T: DeserializeOwned>(
        &self,
        change: ConfigChange<'_>,
    ) -> Result<Changed<T>, ClientError> {
        let (method, path, body, stop) = change.request();
        let mut request = self
            .request(method, &path, REQUEST_TIMEOUT)
            .query(&ChangeQuery {
                save: self.save,
                expect: self.expect.clone(),
                view: None,
            });
        if let Some(stop) = stop {
            request = request.query(&DeleteServerQuery { stop });
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let (value, headers) = self.exchange(&path, request).await?;
        let staged = headers
            .get(CHANGE_HEADER)
            .is_some_and(|v| v.as_bytes() == CHANGE_STAGED.as_bytes());
        let outcome = if staged {
            ChangeOutcome::Staged
        } else {
            ChangeOutcome::Saved
        };
        Ok(Changed { value, outcome })
    }

    async fn change_value<T: DeserializeOwned>(
        &self,
        change: ConfigChange<'_>,
    ) -> Result<T, ClientError> {
        self.change(change).await.map(|c| c.value)
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get(routes::HEALTH).await
    }

    pub async fn list_nodes(&self) -> Result<Vec<NodeView>, ClientError> {
        self.get_config(routes::NODES).await
    }

    pub async fn get_node(&self, name: &str) -> Result<NodeView, ClientError> {
        self.get_config(&routes::node(name)).await
    }

    pub async fn create_node(&self, spec: &NodeSpec) -> Result<NodeView, ClientError> {
        self.change_value(ConfigChange::CreateNode(spec)).await
    }

    pub async fn put_node(&self, spec: &NodeSpec) -> Result<NodeView, ClientError> {
        self.change_value(ConfigChange::PutNode(spec)).await
    }

    pub async fn delete_node(&self, name: &str) -> Result<NodeSpec, ClientError> {
        self.change_value(ConfigChange::DeleteNode(name)).await
    }

    pub async fn list_servers(&self) -> Result<Vec<ServerView>, ClientError> {
        self.get_config(routes::SERVERS).await
    }

    pub async fn get_server(&self, name: &str) -> Result<ServerView, ClientError> {
        self.get_config(&routes::server(name)).await
    }

    pub async fn create_server(&self, spec: &ServerSpec) -> Result<ServerView, ClientError> {
        self.change_value(ConfigChange::CreateServer(spec)).await
    }

    pub async fn replace_server(&self, spec: &ServerSpec) -> Result<ServerView, ClientError> {
        self.change_value(ConfigChange::ReplaceServer(spec)).await
    }

    pub async fn delete_server(&self, name: &str, stop: bool) -> Result<ServerSpec, ClientError> {
        self.change_value(ConfigChange::DeleteServer { name, stop })
            .await
    }

    /// Sets a server's intent: `run` (start), `stop` or `kill`. A stop of
    /// a member balancers serve answers once it is drained, up to its
    /// cluster's drain timeout.
    pub async fn server_intent(
        &self,
        name: &str,
        intent: Intent,
    ) -> Result<ServerView, ClientError> {
        self.call::<(), _, _>(
            Method::POST,
            &routes::server_action(name, intent.action()),
            None,
            Some(&()),
            DRAINING_REQUEST_TIMEOUT,
        )
        .await
    }

    /// The configuration files Dure generates for server `name`.
    pub async fn server_config(&self, name: &str) -> Result<ServerConfig, ClientError> {
        self.get(&routes::server_config(name)).await
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
        self.get_config(routes::CLUSTERS).await
    }

    pub async fn get_cluster(&self, name: &str) -> Result<ClusterView, ClientError> {
        self.get_config(&routes::cluster(name)).await
    }

    pub async fn create_cluster(&self, spec: &ClusterSpec) -> Result<ClusterView, ClientError> {
        self.change_value(ConfigChange::CreateCluster(spec)).await
    }

    pub async fn delete_cluster(&self, name: &str) -> Result<ClusterSpec, ClientError> {
        self.change_value(ConfigChange::DeleteCluster(name)).await
    }

    pub async fn add_member(
        &self,
        cluster: &str,
        member: &AddMember,
    ) -> Result<ClusterView, ClientError> {
        self.change_value(ConfigChange::AddMember { cluster, member })
            .await
    }

    pub async fn remove_member(
        &self,
        cluster: &str,
        server: &str,
    ) -> Result<ClusterView, ClientError> {
        self.change_value(ConfigChange::RemoveMember { cluster, server })
            .await
    }

    /// The caller's change set with a diff of every staged document.
    pub async fn set_balance(
        &self,
        cluster: &str,
        balance: &ClusterBalance,
    ) -> Result<ClusterView, ClientError> {
        self.change_value(ConfigChange::SetBalance { cluster, balance })
            .await
    }

    pub async fn list_lbs(&self) -> Result<Vec<LbSpec>, ClientError> {
        self.get_config(routes::LBS).await
    }

    pub async fn get_lb(&self, name: &str) -> Result<LbSpec, ClientError> {
        self.get_config(&routes::lb(name)).await
    }

    pub async fn create_lb(&self, spec: &LbSpec) -> Result<LbSpec, ClientError> {
        self.change_value(ConfigChange::CreateLb(spec)).await
    }

    pub async fn replace_lb(&self, spec: &LbSpec) -> Result<LbSpec, ClientError> {
        self.change_value(ConfigChange::ReplaceLb(spec)).await
    }

    pub async fn delete_lb(&self, name: &str) -> Result<LbSpec, ClientError> {
        self.change_value(ConfigChange::DeleteLb(name)).await
    }

    pub async fn add_route(&self, lb: &str, route: &RouteChange) -> Result<LbSpec, ClientError> {
        self.change_value(ConfigChange::AddRoute { lb, route })
            .await
    }

    pub async fn remove_route(&self, lb: &str, route: &RouteChange) -> Result<LbSpec, ClientError> {
        self.change_value(ConfigChange::RemoveRoute { lb, route })
            .await
    }

    /// What balancer `name` runs on, at once.
    pub async fn lb_table(&self, name: &str) -> Result<LbTable, ClientError> {
        self.get(&routes::lb_table(name)).await
    }

    /// Sends a balancer instance's figures; a report that takes longer
    /// than a few intervals is given up (the next one says more).
    pub async fn lb_report(&self, name: &str, report: &LbReport) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .call::<(), _, _>(
                Method::POST,
                &routes::lb_report(name),
                None,
                Some(report),
                LB_REPORT_INTERVAL * 3,
            )
            .await?;
        Ok(())
    }

    /// Node `name`'s own view of its peers' membership, as its agent last
    /// reported it (empty before it did).
    pub async fn node_peers(&self, name: &str) -> Result<Vec<crate::PeerView>, ClientError> {
        self.get(&routes::node_peers(name)).await
    }

    /// The figures of balancer `name`'s live instances and their sum.
    pub async fn lb_stats(&self, name: &str) -> Result<LbStats, ClientError> {
        self.get(&routes::lb_stats(name)).await
    }

    /// The figures of every balancer with a live instance.
    pub async fn all_lb_stats(&self) -> Result<Vec<LbStats>, ClientError> {
        self.get(routes::LB_STATS_ALL).await
    }

    /// Cluster `name` as balancers see it (settings, members with their
    /// addresses, the routes to it), from the saved configuration.
    pub async fn cluster_balance(&self, name: &str) -> Result<ClusterBalanceView, ClientError> {
        self.get(&routes::cluster_balance(name)).await
    }

    pub async fn changes(&self) -> Result<ChangeSetView, ClientError> {
        self.get(routes::CHANGES).await
    }

    /// Saves the caller's change set as one revision.
    pub async fn save_changes(&self, request: &SaveRequest) -> Result<SaveResult, ClientError> {
        self.send(Method::POST, routes::CHANGES_SAVE, request).await
    }

    /// Drops the caller's change set; returns what it held.
    pub async fn discard_changes(&self) -> Result<ChangeSetView, ClientError> {
        self.send(Method::POST, routes::CHANGES_DISCARD, &()).await
    }

    /// Saved versions of the configuration, newest first.
    pub async fn config_history(
        &self,
        query: &HistoryQuery,
    ) -> Result<Vec<RevisionInfo>, ClientError> {
        self.get_query(routes::CONFIG_HISTORY, query).await
    }

    /// The whole configuration tree of a version (default: now).
    pub async fn config_documents(
        &self,
        version: Option<u64>,
    ) -> Result<DocumentTree, ClientError> {
        self.get_query(routes::CONFIG_DOCUMENTS, &DocumentsQuery { version })
            .await
    }

    /// What changed from one version to another (default: now).
    pub async fn config_diff(
        &self,
        from: u64,
        to: Option<u64>,
    ) -> Result<Vec<DocumentChange>, ClientError> {
        self.get_query(routes::CONFIG_DIFF, &DiffQuery { from, to })
            .await
    }

    /// Makes the configuration equal to version `version`'s, as a new version.
    pub async fn rollback(&self, version: u64) -> Result<SaveResult, ClientError> {
        self.send(
            Method::POST,
            routes::CONFIG_ROLLBACK,
            &RollbackRequest { version },
        )
        .await
    }

    /// Replaces the whole configuration with `tree` as one revision (or,
    /// with `dry_run`, only says what that would change).
    pub async fn apply(
        &self,
        tree: &DocumentTree,
        query: &ApplyQuery,
    ) -> Result<SaveResult, ClientError> {
        self.call(
            Method::POST,
            routes::CONFIG_APPLY,
            Some(query),
            Some(tree),
            REQUEST_TIMEOUT,
        )
        .await
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

    /// Operations, newest first.
    pub async fn list_operations(
        &self,
        query: &OperationQuery,
    ) -> Result<Vec<Operation>, ClientError> {
        self.get_query(routes::OPERATIONS, query).await
    }

    pub async fn get_operation(&self, id: &str) -> Result<Operation, ClientError> {
        self.get(&routes::operation(id)).await
    }

    /// Creates an API token; the answer holds its secret, shown only here.
    pub async fn create_token(&self, request: &CreateToken) -> Result<CreatedToken, ClientError> {
        self.send(Method::POST, routes::TOKENS, request).await
    }

    /// Every API token, revoked and expired ones too (no secrets).
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, ClientError> {
        self.get(routes::TOKENS).await
    }

    /// Who this client's token is: its id, description and role.
    pub async fn whoami(&self) -> Result<Whoami, ClientError> {
        self.get(routes::WHOAMI).await
    }

    /// Revokes an API token: it is refused from now on.
    pub async fn revoke_token(&self, id: &str) -> Result<TokenInfo, ClientError> {
        self.call::<(), (), TokenInfo>(
            Method::DELETE,
            &routes::token(id),
            None,
            None,
            REQUEST_TIMEOUT,
        )
        .await
    }

    /// The newest lines of the audit log that match `query`, oldest first.
    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, ClientError> {
        self.get_query(routes::AUDIT, query).await
    }

    pub async fn events(&self, query: &EventQuery) -> Result<Vec<Event>, ClientError> {
        self.get_query(routes::EVENTS, query).await
    }

    /// Follows the event log live (`GET /v1/events/stream`): the events
    /// after `last_id` (from the stored log first, so none is missed on a
    /// reconnect) or, without one, the new ones; only those whose subject
    /// starts with `subject` when given.
    pub async fn event_stream(
        &self,
        last_id: Option<u64>,
        subject: Option<&str>,
    ) -> Result<EventStream, ClientError> {
        let url = format!("{}{}", self.base, routes::EVENTS_STREAM);
        // No timeout: the stream lasts; the stream notices silence itself.
        let mut request = self
            .authorized(self.http().get(&url))
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .query(&EventStreamQuery {
                after: None,
                subject: subject.map(str::to_string),
            });
        if let Some(id) = last_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.map_err(|e| self.transport(&url, &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(EventStream::new(url, response));
        }
        let bytes = response.bytes().await.unwrap_or_default();
        Err(answer_error(&url, status, &bytes))
    }

    /// Trades this client's join token (its bearer token) for the node's
    /// certificate.
    pub async fn join(&self, request: &JoinRequest) -> Result<NodeCertificate, ClientError> {
        self.send(Method::POST, routes::AGENT_JOIN, request).await
    }

    /// A new certificate for `node`, asked for with its current one.
    pub async fn renew_certificate(
        &self,
        node: &str,
        request: &RenewRequest,
    ) -> Result<NodeCertificate, ClientError> {
        self.send(Method::POST, &routes::agent_certificate(node), request)
            .await
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

    /// Uploads the artifact in `file` (`POST /v1/artifacts`), streamed
    /// from the file rather than read whole into memory.
    pub async fn upload_artifact(
        &self,
        file: &std::path::Path,
    ) -> Result<ArtifactStored, ClientError> {
        let body =
            crate::file_body::FileBody::open(file)
                .await
                .map_err(|e| ClientError::Decode {
                    url: file.display().to_string(),
                    reason: format!("cannot read {}: {e}", file.display()),
                })?;
        let length = body.len();
        let request = self
            .request(Method::POST, routes::ARTIFACTS, UPLOAD_TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, length)
            .body(reqwest::Body::wrap(body));
        self.exchange(routes::ARTIFACTS, request)
            .await
            .map(|(value, _)| value)
    }

    /// Starts reading artifact `digest` for an agent to install
    /// (`GET /v1/agent/artifacts/{digest}`); the body comes chunk by chunk.
    pub async fn artifact(&self, digest: &str) -> Result<ArtifactDownload, ClientError> {
        let path = routes::agent_artifact(digest);
        let url = format!("{}{}", self.base, path);
        let response = self
            .request(Method::GET, &path, UPLOAD_TIMEOUT)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: url.clone(),
                reason: describe(&e),
            })?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.bytes().await.unwrap_or_default();
            return Err(answer_error(&url, status, &bytes));
        }
        Ok(ArtifactDownload { url, response })
    }

    /// Deploys an uploaded artifact to a cluster.
    pub async fn deploy_app(
        &self,
        cluster: &str,
        request: &DeployRequest,
    ) -> Result<DeployStarted, ClientError> {
        self.send(Method::POST, &routes::cluster_apps(cluster), request)
            .await
    }

    /// Deploys an earlier version's artifact again.
    pub async fn rollback_app(
        &self,
        cluster: &str,
        request: &AppRollbackRequest,
    ) -> Result<DeployStarted, ClientError> {
        self.send(
            Method::POST,
            &routes::cluster_apps_rollback(cluster),
            request,
        )
        .await
    }

    /// Each context of a cluster with its newest version and each
    /// member's copy.
    pub async fn apps(&self, cluster: &str) -> Result<Vec<AppView>, ClientError> {
        self.get(&routes::cluster_apps(cluster)).await
    }

    /// Every application version of a cluster, newest first.
    pub async fn app_history(&self, cluster: &str) -> Result<Vec<AppVersionView>, ClientError> {
        self.get(&routes::cluster_apps_history(cluster)).await
    }

    /// Downloads a pack of the whole domain (`GET /v1/domain/pack`).
    pub async fn domain_pack(&self, include_secrets: bool) -> Result<DomainPack, ClientError> {
        let query = DomainPackQuery { include_secrets };
        let request = self
            .request(Method::GET, routes::DOMAIN_PACK, PACK_TIMEOUT)
            .query(&query);
        let (bytes, headers) = self.exchange_bytes(routes::DOMAIN_PACK, request).await?;
        let file_name = headers
            .get(reqwest::header::CONTENT_DISPOSITION)
            .and_then(|v| v.to_str().ok())
            .and_then(attachment_name)
            .ok_or_else(|| ClientError::Decode {
                url: format!("{}{}", self.base, routes::DOMAIN_PACK),
                reason: "the answer names no file (Content-Disposition)".into(),
            })?;
        Ok(DomainPack { file_name, bytes })
    }
}

impl Client {
    /// Rotates the domain's membership key (`grace`: each step of the
    /// rollout, such as `10s`; the controller's default when `None`).
    pub async fn rotate_domain_key(&self, grace: Option<&str>) -> Result<KeyRotation, ClientError> {
        let query = RotateKeyQuery {
            grace: grace.map(str::to_string),
        };
        let request = self
            .request(Method::POST, routes::DOMAIN_ROTATE_KEY, REQUEST_TIMEOUT)
            .query(&query);
        let (rotation, _) = self.exchange(routes::DOMAIN_ROTATE_KEY, request).await?;
        Ok(rotation)
    }
}

/// How long an artifact may take to upload or download.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(1800);

/// An artifact being read from the controller.
#[derive(Debug)]
pub struct ArtifactDownload {
    url: String,
    response: reqwest::Response,
}

impl ArtifactDownload {
    /// The next piece of the artifact; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, ClientError> {
        self.response
            .chunk()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: self.url.clone(),
                reason: describe(&e),
            })
    }
}

/// How long a domain pack may take to build and download.
const PACK_TIMEOUT: Duration = Duration::from_secs(300);

/// A downloaded domain pack.
#[derive(Debug, Clone)]
pub struct DomainPack {
    /// The name the controller suggests, such as `dure-domain-default-rev42-20240501T120000Z.tar.gz`.
    pub file_name: String,
    pub bytes: Vec<u8>,
}

/// The file name of `attachment; filename="NAME"`, if it is a plain name.
fn attachment_name(disposition: &str) -> Option<String> {
    let name = disposition
        .split(';')
        .find_map(|part| part.trim().strip_prefix("filename="))?
        .trim_matches('"');
    let plain = !name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != "..";
    plain.then(|| name.to_string())
}

/// The error an answer other than a success carries.
fn answer_error(url: &str, status: StatusCode, bytes: &[u8]) -> ClientError {
    let detail = serde_json::from_slice::<ErrorBody>(bytes)
        .map(|b| b.error)
        .unwrap_or_else(|_| ErrorDetail {
            code: "http".into(),
            message: format!(
                "http {} from {url}: {}",
                status.as_u16(),
                String::from_utf8_lossy(bytes).trim()
            ),
        });
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return ClientError::Auth {
            status: status.as_u16(),
            message: detail.message,
        };
    }
    ClientError::Api {
        status: status.as_u16(),
        code: detail.code,
        message: detail.message,
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
