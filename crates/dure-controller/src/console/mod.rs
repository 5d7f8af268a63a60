//! The web console under `/ui` (and `/`, which redirects there): pages
//! rendered on the server, htmx for partial updates, one small script for
//! the live event stream and confirm dialogs, every asset embedded.
//!
//! It owns the browser side only — sessions, CSRF, languages, HTML. What
//! the console shows and does it asks of the REST API (`backend`), with
//! the token the operator logged in with, so it never bypasses a rule the
//! CLI is held to.

mod apps;
mod assets;
mod backend;
mod balancers;
mod changes;
mod cluster_detail;
mod clusters;
mod history;
#[cfg(test)]
mod html_check;
mod i18n;
mod inventory;
mod pages;
mod session;
#[cfg(test)]
mod tests;
mod wizard;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use backend::Backend;
use dure_api::Whoami;
use i18n::{Lang, LANG_COOKIE};
use maud::Markup;
use session::{Session, Sessions, CSRF_FIELD, LOGIN_CSRF_COOKIE, SESSION_COOKIE};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most bytes of a console form.
const MAX_FORM: usize = 64 * 1024;
/// How long the language switch is remembered.
const LANG_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long a login form may sit before it is sent.
const LOGIN_FORM_LIFETIME: Duration = Duration::from_secs(3600);
/// Scripts, styles and everything else only from the console itself, and
/// no framing: what a page can load is what the binary embeds.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What the console's handlers share.
pub struct Console {
    backend: Backend,
    sessions: Sessions,
    /// Whether cookies are marked `Secure`: the console is served over TLS.
    secure_cookies: bool,
}

type ConsoleState = State<Arc<Console>>;

/// The API's router with the console added under `/ui`; the console calls
/// `api` for everything it reads and does; `secure`: it is served over
/// TLS, so its cookies are `Secure`.
pub fn mount(api: Router, secure: bool) -> Router {
    let console = Arc::new(Console {
        backend: Backend::new(api.clone()),
        sessions: Sessions::default(),
        secure_cookies: secure,
    });
    let ui = Router::new()
        .route("/", get(|| async { Redirect::to(pages::BASE) }))
        .route(pages::BASE, get(home))
        .route(pages::LOGIN, get(login_page).post(login))
        .route(pages::LOGOUT, post(logout))
        .route("/ui/lang/{code}", get(switch_language))
        .route("/ui/assets/{name}", get(assets::serve))
        .route(pages::STREAM, get(stream))
        .route(pages::CLUSTERS, get(clusters::list))
        .route(pages::CLUSTER_ROWS, get(clusters::rows))
        .route(pages::CLUSTER_ACTION, post(clusters::action))
        .route(pages::CLUSTER_NEW, get(wizard::start).post(wizard::step))
        .route(pages::CLUSTER_NEW_NAME, get(wizard::check_name))
        .route("/ui/clusters/{name}", get(cluster_detail::show))
        .route("/ui/clusters/{name}/apps", get(apps::show))
        .route("/ui/clusters/{name}/apps/rollback", post(apps::rollback))
        .route(pages::NODES, get(inventory::nodes))
        .route(pages::SERVERS, get(inventory::servers))
        .route("/ui/servers/{name}", get(inventory::server))
        .route(pages::EVENTS, get(history::events))
        .route(pages::HISTORY, get(history::history))
        .route(pages::HISTORY_ROLLBACK, post(history::rollback))
        .route(pages::BALANCERS, get(balancers::stats))
        .route(pages::CHANGES, get(changes::review))
        .route(pages::CHANGES_SAVE, post(changes::save))
        .route(pages::CHANGES_DISCARD, post(changes::discard))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(console);
    api.merge(ui)
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A page for a logged-in operator. Without a live session the request is
/// sent to the login page (an htmx request is told to go there whole).
pub struct LoggedIn {
    pub session: Session,
    pub lang: Lang,
    /// Whether htmx sent the request (it wants a fragment).
    pub htmx: bool,
}

impl FromRequestParts<Arc<Console>> for LoggedIn {
    type Rejection = Response;
    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        let lang = Lang::of_request(&parts.headers);
        let htmx = parts.headers.contains_key("hx-request");
        let session = session::cookie_value(&parts.headers, SESSION_COOKIE)
            .and_then(|id| console.sessions.get(id, Instant::now()));
        match session {
            Some(session) => Ok(LoggedIn {
                session,
                lang,
                htmx,
            }),
            None => Err(to_login(htmx)),
        }
    }
}

/// Sends a browser to the login page: a redirect, or for htmx a header
/// that makes it load the login page whole rather than inside a fragment.
fn to_login(htmx: bool) -> Response {
    if htmx {
        (
            StatusCode::UNAUTHORIZED,
            [("hx-redirect", pages::LOGIN)],
            "log in again",
        )
            .into_response()
    } else {
        Redirect::to(pages::LOGIN).into_response()
    }
}

/// A form posted by a logged-in operator, its CSRF token checked: the
/// session's, in the form's `csrf` field or an `X-CSRF-Token` header.
/// Every POST of a session goes through this.
pub struct SessionForm {
    pub user: LoggedIn,
    pub fields: Vec<(String, String)>,
}

impl SessionForm {
    /// The first value of field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        form_field(&self.fields, name)
    }

    /// Every value of field `name`, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn form_field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl FromRequest<Arc<Console>> for SessionForm {
    type Rejection = Response;
    async fn from_request(request: Request, console: &Arc<Console>) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let user = LoggedIn::from_request_parts(&mut parts, console).await?;
        let fields = read_form(body, user.lang).await?;
        let header = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok());
        let given = form_field(&fields, CSRF_FIELD)
            .or(header)
            .unwrap_or_default();
        if !dure_api::auth::token_matches(&user.session.csrf, given) {
            return Err(refusal(
                StatusCode::FORBIDDEN,
                user.lang,
                user.lang.texts().csrf_refused,
            ));
        }
        Ok(SessionForm { user, fields })
    }
}

/// Reads an `application/x-www-form-urlencoded` body into its fields.
async fn read_form(body: axum::body::Body, lang: Lang) -> Result<Vec<(String, String)>, Response> {
    let bytes: Bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
        refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            lang,
            &format!("the form is larger than {MAX_FORM} bytes"),
        )
    })?;
    serde_urlencoded::from_bytes(&bytes).map_err(|e| {
        refusal(
            StatusCode::BAD_REQUEST,
            lang,
            &format!("the form cannot be read: {e}"),
        )
    })
}

/// A page saying why a request was refused.
fn refusal(status: StatusCode, lang: Lang, message: &str) -> Response {
    (status, pages::refused(lang, message)).into_response()
}

/// `/ui`: the cluster list for a session, else the login page.
async fn home(user: Result<LoggedIn, Response>) -> Response {
    match user {
        Ok(_) => Redirect::to(pages::CLUSTERS).into_response(),
        Err(to_login) => to_login,
    }
}

/// The login form, with a fresh CSRF token in a cookie and in the form.
async fn login_page(State(console): ConsoleState, headers: HeaderMap) -> Response {
    login_form(&console, Lang::of_request(&headers), None, StatusCode::OK)
}

fn login_form(console: &Console, lang: Lang, error: Option<&str>, status: StatusCode) -> Response {
    let csrf = match session::random_hex() {
        Ok(csrf) => csrf,
        Err(e) => return no_randomness(lang, e),
    };
    let cookie = session::cookie(
        LOGIN_CSRF_COOKIE,
        &csrf,
        LOGIN_FORM_LIFETIME,
        console.secure_cookies,
    );
    (
        status,
        [(header::SET_COOKIE, cookie)],
        pages::login(lang, &csrf, error),
    )
        .into_response()
}

fn no_randomness(lang: Lang, error: getrandom::Error) -> Response {
    tracing::error!(%error, "no randomness for a console session");
    refusal(
        StatusCode::INTERNAL_SERVER_ERROR,
        lang,
        &format!("the controller has no randomness for a session: {error}"),
    )
}

/// Checks the token through the API (the same check every API request
/// gets), asking it the token's role, and starts a session for it.
async fn login(State(console): ConsoleState, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let lang = Lang::of_request(&parts.headers);
    let fields = match read_form(body, lang).await {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    // Double submit: a cross-site form cannot read or set the cookie, so
    // it cannot send the matching field.
    let expected = session::cookie_value(&parts.headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    let given = form_field(&fields, CSRF_FIELD).unwrap_or_default();
    if expected.is_empty() || !dure_api::auth::token_matches(expected, given) {
        let t = lang.texts();
        return login_form(&console, lang, Some(t.csrf_refused), StatusCode::FORBIDDEN);
    }
    let token = form_field(&fields, "token").unwrap_or_default().trim();
    if token.is_empty() {
        let t = lang.texts();
        return login_form(
            &console,
            lang,
            Some(t.login_refused),
            StatusCode::UNAUTHORIZED,
        );
    }
    let me: Whoami = match console.backend.get(token, dure_api::routes::WHOAMI).await {
        Ok(me) => me,
        Err(refused) if refused.status == StatusCode::UNAUTHORIZED => {
            let t = lang.texts();
            return login_form(&console, lang, Some(t.login_refused), refused.status);
        }
        Err(refused) => {
            let message = format!(
                "the controller cannot check the token now ({}): {}",
                refused.status, refused.message
            );
            return login_form(&console, lang, Some(&message), refused.status);
        }
    };
    let session = match console
        .sessions
        .create(token.to_string(), me.role, Instant::now())
    {
        Ok(session) => session,
        Err(e) => return no_randomness(lang, e),
    };
    let secure = console.secure_cookies;
    let mut response = Redirect::to(pages::CLUSTERS).into_response();
    for cookie in [
        session::cookie(
            SESSION_COOKIE,
            &session.id,
            session::SESSION_LIFETIME,
            secure,
        ),
        session::expired_cookie(LOGIN_CSRF_COOKIE, secure),
    ] {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

async fn logout(State(console): ConsoleState, form: SessionForm) -> Response {
    console.sessions.remove(&form.user.session.id);
    (
        [(
            header::SET_COOKIE,
            session::expired_cookie(SESSION_COOKIE, console.secure_cookies),
        )],
        Redirect::to(pages::LOGIN),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct Back {
    back: Option<String>,
}

/// The language switch: remembers the choice and goes back to the page it
/// came from (only a console path, so the link cannot send anyone away).
async fn switch_language(
    State(console): ConsoleState,
    Path(code): Path<String>,
    axum::extract::Query(back): axum::extract::Query<Back>,
) -> Response {
    let back = back
        .back
        .filter(|b| b.starts_with("/ui") && !b.contains("//") && !b.contains('\\'))
        .unwrap_or_else(|| pages::BASE.to_string());
    let Some(lang) = Lang::from_code(&code) else {
        return refusal(
            StatusCode::NOT_FOUND,
            Lang::En,
            &format!("unknown language `{code}`: use en or ko"),
        );
    };
    let cookie = session::cookie(
        LANG_COOKIE,
        lang.code(),
        LANG_LIFETIME,
        console.secure_cookies,
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to(&back)).into_response()
}

/// The controller's event stream for a session: the API's
/// `/v1/events/stream` passed through, so the page's script hears of every
/// change and refreshes what it shows.
async fn stream(State(console): ConsoleState, user: LoggedIn) -> Response {
    match console
        .backend
        .send(
            &user.session.token,
            Method::GET,
            dure_api::routes::EVENTS_STREAM,
            None,
        )
        .await
    {
        Ok(answer) => answer,
        Err(refused) => (refused.status, refused.message).into_response(),
    }
}

/// An HTML answer: a whole page or an htmx fragment.
fn html(markup: Markup) -> Response {
    markup.into_response()
}
