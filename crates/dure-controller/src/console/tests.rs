//! The console's rules on the controller's router, in process: logged-out
//! access goes to the login page, login takes only a valid token and the
//! login form's CSRF token, every POST needs the session's CSRF token, and
//! every page passes the HTML check in both languages.

use super::html_check::problems;
use super::session::{LOGIN_CSRF_COOKIE, SESSION_COOKIE};
use crate::access::Actor;
use crate::testing::{app_in, populate, TOKEN};
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use dure_core::access::Role;
use std::collections::BTreeMap;
use tower::ServiceExt;

/// A minimal browser: keeps cookies, sends forms.
struct Browser {
    app: std::sync::Arc<crate::app::App>,
    router: Router,
    cookies: BTreeMap<String, String>,
    accept_language: &'static str,
}

struct Answer {
    status: StatusCode,
    location: Option<String>,
    set_cookies: Vec<String>,
    body: String,
}

impl Browser {
    async fn new(dir: &std::path::Path) -> Browser {
        Browser::on(app_in(dir).await).await
    }

    /// A browser on `app`, populated with node `n1`, servers `web1` and
    /// `web2` and cluster `shop`.
    async fn on(app: std::sync::Arc<crate::app::App>) -> Browser {
        populate(&app).await;
        Browser {
            router: super::mount(crate::api::router(app.clone()), false),
            app,
            cookies: BTreeMap::new(),
            accept_language: "en",
        }
    }

    async fn send(&mut self, method: Method, path: &str, form: Option<&[(&str, &str)]>) -> Answer {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::ACCEPT_LANGUAGE, self.accept_language)
            .header(header::COOKIE, cookie);
        let body = match form {
            Some(fields) => {
                request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Body::from(serde_urlencoded::to_string(fields).expect("form encodes"))
            }
            None => Body::empty(),
        };
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).expect("request"))
            .await
            .expect("infallible");
        let set_cookies: Vec<String> = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().expect("ascii").to_string())
            .collect();
        for cookie in &set_cookies {
            let pair = cookie.split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().expect("ascii").to_string());
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        Answer {
            status,
            location,
            set_cookies,
            body: String::from_utf8(bytes.to_vec()).expect("utf-8"),
        }
    }

    async fn get(&mut self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        self.send(Method::POST, path, Some(form)).await
    }

    /// Finishes the create wizard for cluster `name` of `member` at once.
    async fn finish_wizard(&mut self, csrf: &str, name: &str, member: &str) -> Answer {
        let form = [
            ("csrf", csrf),
            ("name", name),
            ("member", member),
            ("step", "finish"),
        ];
        self.post("/ui/clusters/new", &form).await
    }

    /// Deletes `cluster` from the list, confirmed as the dialog does.
    async fn delete_confirmed(&mut self, csrf: &str, cluster: &str) -> Answer {
        let form = [
            ("csrf", csrf),
            ("action", "delete"),
            ("cluster", cluster),
            ("confirmed", "yes"),
        ];
        self.post("/ui/clusters/action", &form).await
    }

    /// Logs in with the admin token; returns the session's CSRF token.
    async fn log_in(&mut self) -> String {
        self.log_in_as(TOKEN).await
    }

    /// Logs in with `token`; returns the session's CSRF token.
    async fn log_in_as(&mut self, token: &str) -> String {
        let page = self.get("/ui/login").await;
        let csrf = hidden_csrf(&page.body);
        let answer = self
            .post("/ui/login", &[("csrf", &csrf), ("token", token)])
            .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        assert_eq!(answer.location.as_deref(), Some("/ui/clusters"));
        hidden_csrf(&self.get("/ui/clusters").await.body)
    }
}

/// The value of the first hidden `csrf` field of a page.
fn hidden_csrf(page: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = page.find(marker).expect("a csrf field") + marker.len();
    page[start..start + 64].to_string()
}

#[tokio::test]
async fn logged_out_access_goes_to_the_login_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut browser = Browser::new(dir.path()).await;
    let root = browser.get("/").await;
    assert_eq!(root.location.as_deref(), Some("/ui"));
    for path in ["/ui", "/ui/clusters", "/ui/clusters/rows", "/ui/stream"] {
        let answer = browser.get(path).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(answer.location.as_deref(), Some("/ui/login"), "{path}");
    }
    // A made-up session id is no session.
    browser
        .cookies
        .insert(SESSION_COOKIE.into(), "f".repeat(64));
    let answer = browser.get("/ui/clusters").await;
    assert_eq!(answer.location.as_deref(), Some("/ui/login"));
    // The API keeps its own answers.
    let api = browser.get("/v1/clusters").await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    assert!(api.body.contains("missing bearer token"), "{}", api.body);
}

#[tokio::test]
async fn login_takes_a_valid_token_with_the_forms_csrf_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut browser = Browser::new(dir.path()).await;
    let page = browser.get("/ui/login").await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = hidden_csrf(&page.body);
    assert!(page.set_cookies[0].starts_with(LOGIN_CSRF_COOKIE));

    let wrong = browser
        .post("/ui/login", &[("csrf", &csrf), ("token", "nope")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong.body.contains("the token is not valid"),
        "{}",
        wrong.body
    );
    assert!(!browser.cookies.contains_key(SESSION_COOKIE));

    let forged = browser
        .post("/ui/login", &[("csrf", "x"), ("token", TOKEN)])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(!browser.cookies.contains_key(SESSION_COOKIE));

    // Each refusal shows a fresh form with a fresh token.
    let csrf = hidden_csrf(&forged.body);
    let ok = browser
        .post("/ui/login", &[("csrf", &csrf), ("token", TOKEN)])
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let session = ok
        .set_cookies
        .iter()
        .find(|c| c.starts_with(SESSION_COOKIE))
        .expect("a session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    let list = browser.get("/ui/clusters").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(
        list.body.contains(r#"data-cluster="shop""#),
        "{}",
        list.body
    );

    // Logging out ends the session for good.
    let csrf = hidden_csrf(&list.body);
    let out = browser.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.location.as_deref(), Some("/ui/login"));
    let after = browser.get("/ui/clusters").await;
    assert_eq!(after.location.as_deref(), Some("/ui/login"));
}

#[tokio::test]
async fn a_post_without_the_sessions_csrf_token_is_refused_and_does_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut browser = Browser::new(dir.path()).await;
    let csrf = browser.log_in().await;
    for form in [
        vec![
            ("action", "delete"),
            ("cluster", "shop"),
            ("confirmed", "yes"),
        ],
        vec![
            ("action", "delete"),
            ("cluster", "shop"),
            ("confirmed", "yes"),
            ("csrf", "0"),
        ],
    ] {
        let answer = browser.post("/ui/clusters/action", &form).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{form:?}");
        assert!(
            answer.body.contains("CSRF token is missing or wrong"),
            "{}",
            answer.body
        );
    }
    let list = browser.get("/ui/clusters").await;
    assert!(list.body.contains(r#"data-cluster="shop""#), "still there");

    // Without confirmation a delete asks first, naming the cluster.
    let ask = browser
        .post(
            "/ui/clusters/action",
            &[("csrf", &csrf), ("action", "delete"), ("cluster", "shop")],
        )
        .await;
    assert_eq!(ask.status, StatusCode::OK);
    assert!(
        ask.body.contains(r#"name="confirmed" value="yes""#),
        "{}",
        ask.body
    );
    assert!(problems(&ask.body).is_empty(), "{:?}", problems(&ask.body));

    // An API refusal comes back in the API's words.
    let ghost = browser
        .post(
            "/ui/clusters/action",
            &[("csrf", &csrf), ("action", "start"), ("cluster", "ghost")],
        )
        .await;
    assert_eq!(ghost.location.as_deref(), Some("/ui/clusters"));
    let list = browser.get("/ui/clusters").await;
    assert!(
        list.body.contains("no such cluster `ghost`") || list.body.contains("cluster `ghost`"),
        "{}",
        list.body
    );
    assert!(list.body.contains("class=\"error\""), "{}", list.body);

    let done = browser.delete_confirmed(&csrf, "shop").await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let list = browser.get("/ui/clusters").await;
    assert!(list.body.contains("deleted"), "{}", list.body);
    assert!(
        !list.body.contains(r#"data-cluster="shop""#),
        "{}",
        list.body
    );
}

#[tokio::test]
async fn every_page_passes_the_html_check_in_both_languages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut browser = Browser::new(dir.path()).await;
    for lang in ["en", "ko"] {
        browser.accept_language = lang;
        let login = browser.get("/ui/login").await.body;
        let csrf = browser.log_in().await;
        let clusters = browser.get("/ui/clusters").await.body;
        assert!(
            clusters.contains(&format!(r#"<html lang="{lang}">"#)),
            "{clusters}"
        );
        let rows = browser.get("/ui/clusters/rows?cluster=shop").await.body;
        assert!(rows.contains("checked"), "{rows}");
        let confirm = browser
            .post(
                "/ui/clusters/action",
                &[("csrf", &csrf), ("action", "kill"), ("cluster", "shop")],
            )
            .await
            .body;
        assert!(
            confirm.contains("web1 (n1)"),
            "names what is killed: {confirm}"
        );
        for (name, page) in [
            ("login", &login),
            ("clusters", &clusters),
            ("rows", &rows),
            ("confirm", &confirm),
        ] {
            let found = problems(page);
            assert!(found.is_empty(), "{lang} {name}: {found:?}\n{page}");
        }
    }
    let korean = browser.get("/ui/clusters").await.body;
    assert!(korean.contains("클러스터"), "{korean}");
}

/// A browser on a controller that stages changes, as a plain `dure
/// controller` does.
async fn staging_browser(dir: &std::path::Path) -> Browser {
    let store: std::sync::Arc<dyn dure_store::Store> = std::sync::Arc::new(
        dure_store::SqliteStore::open(&dir.join("store.db")).expect("open store"),
    );
    let settings = crate::settings::ControllerFile {
        auto_save: Some(false),
        ..crate::settings::ControllerFile::default()
    };
    let app = std::sync::Arc::new(
        crate::app::App::open(
            store,
            TOKEN.into(),
            std::time::Duration::from_secs(1),
            settings,
            crate::audit::AuditLog::in_data_dir(dir),
            crate::artifacts::Artifacts::new(dir, crate::artifacts::DEFAULT_MAX_BYTES),
        )
        .await
        .expect("app"),
    );
    Browser::on(app).await
}

fn assert_valid(name: &str, page: &str) {
    let found = problems(page);
    assert!(found.is_empty(), "{name}: {found:?}\n{page}");
}

#[tokio::test]
async fn the_wizard_stages_a_cluster_that_the_review_saves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut browser = staging_browser(dir.path()).await;
    let csrf = browser.log_in().await;

    let start = browser.get("/ui/clusters/new").await;
    assert_valid("name step", &start.body);
    let bad = browser
        .get("/ui/clusters/new/name?name=no%20spaces")
        .await
        .body;
    assert!(bad.contains("cluster name `no spaces` is invalid"), "{bad}");
    let taken = browser.get("/ui/clusters/new/name?name=shop").await.body;
    assert!(taken.contains("cluster `shop` already exists"), "{taken}");
    let free = browser.get("/ui/clusters/new/name?name=cart").await.body;
    assert!(free.contains(r#"data-valid="yes""#), "{free}");

    // A refused name keeps the wizard on its first step, saying why.
    let again = browser
        .post(
            "/ui/clusters/new",
            &[("csrf", &csrf), ("name", "shop"), ("step", "members")],
        )
        .await
        .body;
    assert!(
        again.contains("already exists") && again.contains(r#"id="cluster-name""#),
        "{again}"
    );

    let members = browser
        .post(
            "/ui/clusters/new",
            &[("csrf", &csrf), ("name", "cart"), ("step", "members")],
        )
        .await
        .body;
    assert_valid("members step", &members);
    assert!(
        members.contains(r#"value="web2""#),
        "a free server is offered: {members}"
    );
    assert!(
        !members.contains(r#"value="web1""#),
        "a member of `shop` is not: {members}"
    );
    let none = browser
        .post(
            "/ui/clusters/new",
            &[("csrf", &csrf), ("name", "cart"), ("step", "summary")],
        )
        .await
        .body;
    assert!(none.contains("choose at least one member"), "{none}");

    let summary = browser
        .post(
            "/ui/clusters/new",
            &[
                ("csrf", &csrf),
                ("name", "cart"),
                ("member", "web2"),
                ("step", "summary"),
            ],
        )
        .await
        .body;
    assert_valid("summary step", &summary);
    assert!(
        summary.contains("web2 (n1, 127.0.0.1, http 9002)"),
        "{summary}"
    );

    let finish = browser.finish_wizard(&csrf, "cart", "web2").await;
    assert_eq!(
        finish.location.as_deref(),
        Some("/ui/clusters"),
        "{}",
        finish.body
    );
    let list = browser.get("/ui/clusters").await.body;
    assert_valid("list with banner", &list);
    assert!(list.contains("Staged in your change set"), "{list}");
    assert!(
        !list.contains(r#"data-cluster="cart""#),
        "staged, not saved: {list}"
    );

    let review = browser.get("/ui/changes").await.body;
    assert_valid("review", &review);
    assert!(
        review.contains(r#"data-path="/clusters/cart/cluster.json" data-kind="added""#),
        "{review}"
    );
    assert!(review.contains(r#"<span class="plus">+"#), "{review}");

    let saved = browser
        .post(
            "/ui/changes/save",
            &[("csrf", &csrf), ("message", "cart for the shop")],
        )
        .await;
    assert_eq!(saved.location.as_deref(), Some("/ui/changes"));
    let after = browser.get("/ui/changes").await.body;
    assert!(after.contains(r#"id="no-changes""#), "{after}");
    let list = browser.get("/ui/clusters").await.body;
    assert!(list.contains(r#"data-cluster="cart""#), "saved: {list}");
}

#[tokio::test]
async fn a_discarded_change_leaves_the_configuration_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut browser = staging_browser(dir.path()).await;
    let csrf = browser.log_in().await;
    let staged = browser.delete_confirmed(&csrf, "shop").await;
    assert_eq!(staged.location.as_deref(), Some("/ui/clusters"));
    let review = browser.get("/ui/changes").await.body;
    assert!(review.contains(r#"data-kind="deleted""#), "{review}");
    assert!(review.contains(r#"<span class="minus">-"#), "{review}");
    let discarded = browser
        .post("/ui/changes/discard", &[("csrf", &csrf)])
        .await;
    assert_eq!(discarded.location.as_deref(), Some("/ui/changes"));
    let after = browser.get("/ui/changes").await.body;
    assert!(after.contains("the change set was discarded"), "{after}");
    assert!(after.contains(r#"id="no-changes""#), "{after}");
    let list = browser.get("/ui/clusters").await.body;
    assert!(list.contains(r#"data-cluster="shop""#), "{list}");
}

#[tokio::test]
async fn every_read_page_renders_and_passes_the_html_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut browser = Browser::new(dir.path()).await;
    for lang in ["en", "ko"] {
        browser.accept_language = lang;
        browser.log_in().await;
        for path in [
            "/ui/clusters/new",
            "/ui/clusters/shop",
            "/ui/nodes",
            "/ui/servers",
            "/ui/servers/web1",
            "/ui/events",
            "/ui/events?subject=cluster%2Fshop",
            "/ui/history",
            "/ui/balancers",
            "/ui/changes",
        ] {
            let page = browser.get(path).await;
            assert_eq!(page.status, StatusCode::OK, "{lang} {path}: {}", page.body);
            assert_valid(&format!("{lang} {path}"), &page.body);
        }
    }
    let detail = browser.get("/ui/clusters/shop").await.body;
    assert!(detail.contains(r#"data-server="web1""#), "{detail}");
    let servers = browser.get("/ui/servers").await.body;
    assert!(servers.contains(r#"data-server="web2""#), "{servers}");
    let ghost = browser.get("/ui/clusters/ghost").await;
    assert_eq!(ghost.status, StatusCode::NOT_FOUND);
    assert!(ghost.body.contains("ghost"), "{}", ghost.body);
}

#[tokio::test]
async fn a_rollback_asks_first_then_restores_the_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut browser = Browser::new(dir.path()).await;
    let csrf = browser.log_in().await;
    let finish = browser.finish_wizard(&csrf, "cart", "web2").await;
    assert_eq!(finish.location.as_deref(), Some("/ui/clusters"));
    let list = browser.get("/ui/clusters").await.body;
    assert!(
        list.contains("Saved:") && list.contains(r#"data-cluster="cart""#),
        "{list}"
    );
    let history = browser.get("/ui/history").await.body;
    assert!(history.contains(r#"data-version="2""#), "{history}");
    assert!(history.contains("/clusters/cart/cluster.json"), "{history}");

    let ask = browser
        .post("/ui/history/rollback", &[("csrf", &csrf), ("version", "1")])
        .await;
    assert!(
        ask.body.contains(r#"id="confirm-rollback""#),
        "{}",
        ask.body
    );
    assert_valid("rollback confirm", &ask.body);
    let list = browser.get("/ui/clusters").await.body;
    assert!(
        list.contains(r#"data-cluster="cart""#),
        "nothing happened yet: {list}"
    );

    let done = browser
        .post(
            "/ui/history/rollback",
            &[("csrf", &csrf), ("version", "1"), ("confirmed", "yes")],
        )
        .await;
    assert_eq!(done.location.as_deref(), Some("/ui/history"));
    let history = browser.get("/ui/history").await.body;
    assert!(history.contains(r#"data-version="3""#), "{history}");
    let list = browser.get("/ui/clusters").await.body;
    assert!(
        !list.contains(r#"data-cluster="cart""#),
        "rolled back: {list}"
    );
}

#[tokio::test]
async fn the_consoles_restart_is_a_rolling_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut browser = Browser::new(dir.path()).await;
    let csrf = browser.log_in().await;
    let answer = browser
        .post(
            "/ui/clusters/action",
            &[("csrf", &csrf), ("action", "restart"), ("cluster", "shop")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let list = browser.get("/ui/clusters").await.body;
    assert!(list.contains("restart operation `op-1`"), "{list}");
    let request = Request::builder()
        .uri("/v1/operations/op-1")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .expect("request");
    let response = browser
        .router
        .clone()
        .oneshot(request)
        .await
        .expect("infallible");
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let operation: dure_api::Operation = serde_json::from_slice(&bytes).expect("an operation");
    assert!(operation.options.rolling, "{operation:?}");
}

/// A token of `role` made by the bootstrap admin.
async fn token_of(app: &crate::app::App, role: Role) -> String {
    let request = dure_api::CreateToken {
        role,
        ttl: None,
        description: format!("console {role}"),
        node: None,
    };
    app.tokens
        .create(
            request,
            &Actor::bootstrap(),
            crate::clock::now_ms(),
            &app.events,
        )
        .await
        .expect("token created")
        .token
}

/// The controls a session's pages offer, by their markers.
const CONFIGURE_CONTROLS: [&str; 2] = [r#"id="create-cluster""#, r#"value="delete""#];
const OPERATE_CONTROLS: [&str; 4] = [
    r#"value="start""#,
    r#"value="stop""#,
    r#"value="restart""#,
    r#"value="kill""#,
];

#[tokio::test]
async fn a_session_shows_only_the_controls_its_tokens_role_allows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut browser = Browser::new(dir.path()).await;
    for (role, operate, configure) in [
        (Role::Viewer, false, false),
        (Role::Operator, true, false),
        (Role::Admin, true, true),
    ] {
        let token = token_of(&browser.app, role).await;
        browser.cookies.clear();
        browser.log_in_as(&token).await;
        let list = browser.get("/ui/clusters").await.body;
        assert!(
            list.contains(r#"id="session-role""#)
                && list.contains(&format!("<strong>{role}</strong>")),
            "{role}: {list}"
        );
        for marker in OPERATE_CONTROLS {
            assert_eq!(list.contains(marker), operate, "{role} {marker}");
        }
        for marker in CONFIGURE_CONTROLS {
            assert_eq!(list.contains(marker), configure, "{role} {marker}");
        }
        assert_eq!(
            list.contains(r#"id="role-note""#),
            !operate,
            "{role}: {list}"
        );
        assert_valid(&format!("{role} clusters"), &list);

        let wizard = browser.get("/ui/clusters/new").await.body;
        assert_eq!(
            wizard.contains(r#"class="wizard""#),
            configure,
            "{role}: {wizard}"
        );
        assert_eq!(
            wizard.contains(r#"id="role-note""#),
            !configure,
            "{role}: {wizard}"
        );
        assert_valid(&format!("{role} wizard"), &wizard);
    }
}

#[tokio::test]
async fn a_viewer_session_cannot_act_even_by_posting_the_form_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut browser = staging_browser(dir.path()).await;
    let viewer = token_of(&browser.app, Role::Viewer).await;
    let csrf = browser.log_in_as(&viewer).await;

    // The hidden controls' requests are still refused, in the API's words.
    let start = browser
        .post(
            "/ui/clusters/action",
            &[("csrf", &csrf), ("action", "start"), ("cluster", "shop")],
        )
        .await;
    assert_eq!(start.location.as_deref(), Some("/ui/clusters"));
    let list = browser.get("/ui/clusters").await.body;
    assert!(list.contains("has role viewer, which may not"), "{list}");
    let finish = browser.finish_wizard(&csrf, "cart", "web2").await;
    assert!(finish.body.contains(r#"id="role-note""#), "{}", finish.body);

    // Nothing was started or staged: the admin sees no operation and an
    // empty change set.
    browser.cookies.clear();
    browser.log_in().await;
    let changes = browser.get("/ui/changes").await.body;
    assert!(changes.contains(r#"id="no-changes""#), "{changes}");
    let operations = browser
        .app
        .operations
        .list(&dure_api::OperationQuery::default())
        .await
        .expect("operations");
    assert!(operations.is_empty(), "{operations:?}");
}

#[tokio::test]
async fn a_clusters_page_restarts_it_and_comes_back_for_a_role_that_may() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut browser = Browser::new(dir.path()).await;
    let viewer = token_of(&browser.app, Role::Viewer).await;
    browser.log_in_as(&viewer).await;
    let page = browser.get("/ui/clusters/shop").await.body;
    assert!(!page.contains(r#"id="cluster-restart""#), "{page}");

    browser.cookies.clear();
    let operator = token_of(&browser.app, Role::Operator).await;
    let csrf = browser.log_in_as(&operator).await;
    let page = browser.get("/ui/clusters/shop").await.body;
    assert!(page.contains(r#"id="cluster-restart""#), "{page}");
    assert_valid("cluster detail", &page);
    let form = [
        ("csrf", csrf.as_str()),
        ("cluster", "shop"),
        ("back", "detail"),
        ("action", "restart"),
    ];
    let restarted = browser.post("/ui/clusters/action", &form).await;
    assert_eq!(restarted.location.as_deref(), Some("/ui/clusters/shop"));
    let page = browser.get("/ui/clusters/shop").await.body;
    assert!(page.contains("restart operation `op-1`"), "{page}");
    assert!(page.contains(r#"data-operation="op-1""#), "{page}");

    // Only a cluster's own page is a way back: anything else is the list.
    let form = [
        ("csrf", csrf.as_str()),
        ("cluster", "shop/../../elsewhere"),
        ("back", "detail"),
        ("action", "stop"),
    ];
    let odd = browser.post("/ui/clusters/action", &form).await;
    assert_eq!(odd.location.as_deref(), Some("/ui/clusters"));
}

#[tokio::test]
async fn a_clusters_applications_page_shows_versions_and_members_and_asks_before_a_rollback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut browser = Browser::new(dir.path()).await;
    let csrf = browser.log_in().await;
    let empty = browser.get("/ui/clusters/shop/apps").await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.body);
    assert!(empty.body.contains(r#"id="no-apps""#), "{}", empty.body);
    for version in [1, 2] {
        let record = dure_core::application::AppVersion {
            cluster: "shop".into(),
            context: "/shop".into(),
            version,
            digest: format!("{version:064}"),
            size: 100 * version,
            kind: dure_core::application::ArtifactKind::War,
            created_ms: crate::clock::now_ms(),
            actor: "admin".into(),
            operation: None,
            rollback_of: None,
        };
        browser
            .app
            .apps
            .write_version(&record)
            .await
            .expect("version");
    }
    browser.app.apps.observe(vec![dure_api::AppObserved {
        server: "web1".into(),
        context: "/shop".into(),
        installed: Some(1),
        installed_digest: None,
        staged: None,
        error: Some(dure_api::AppFailure {
            version: 2,
            message: "artifact failed its checksum".into(),
        }),
    }]);
    for lang in ["en", "ko"] {
        browser.accept_language = lang;
        let page = browser.get("/ui/clusters/shop/apps").await;
        assert_eq!(page.status, StatusCode::OK, "{lang}: {}", page.body);
        assert_valid(&format!("{lang} apps"), &page.body);
        assert!(page.body.contains(r#"data-installed="1""#), "{}", page.body);
        assert!(page.body.contains("failed its checksum"), "{}", page.body);
        assert!(page.body.contains(r#"data-version="2""#), "{}", page.body);
    }
    browser.accept_language = "en";
    let detail = browser.get("/ui/clusters/shop").await.body;
    assert!(
        detail.contains(r#"href="/ui/clusters/shop/apps""#),
        "{detail}"
    );
    let ghost = browser.get("/ui/clusters/ghost/apps").await;
    assert_eq!(ghost.status, StatusCode::NOT_FOUND);

    // Version 1 can be rolled back to, version 2 (the newest) cannot.
    let page = browser.get("/ui/clusters/shop/apps").await.body;
    assert_eq!(
        page.matches("/ui/clusters/shop/apps/rollback").count(),
        1,
        "{page}"
    );
    let ask = browser
        .post(
            "/ui/clusters/shop/apps/rollback",
            &[("csrf", &csrf), ("version", "1")],
        )
        .await;
    assert!(
        ask.body.contains(r#"id="confirm-rollback""#),
        "{}",
        ask.body
    );
    assert_valid("app rollback confirm", &ask.body);
    assert_eq!(
        browser
            .app
            .apps
            .versions("shop")
            .await
            .expect("versions")
            .len(),
        2
    );
    // Confirmed, the API refuses it (its artifact is not stored here)
    // and the page says why; nothing was recorded.
    let done = browser
        .post(
            "/ui/clusters/shop/apps/rollback",
            &[("csrf", &csrf), ("version", "1"), ("confirmed", "yes")],
        )
        .await;
    assert_eq!(done.location.as_deref(), Some("/ui/clusters/shop/apps"));
    let after = browser.get("/ui/clusters/shop/apps").await.body;
    assert!(
        after.contains("is not stored in this controller"),
        "{after}"
    );
    assert_eq!(
        browser
            .app
            .apps
            .versions("shop")
            .await
            .expect("versions")
            .len(),
        2
    );
}
