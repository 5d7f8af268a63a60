//! The cluster list: the page, the live table fragment, and the actions on
//! the ticked clusters (start, stop, rolling restart, immediate stop,
//! delete), each one the same API request the CLI sends; a cluster's own
//! page sends its restart here too.

use super::backend::Refusal;
use super::pages::{self, Frame};
use super::{html, to_login, ConsoleState, LoggedIn, SessionForm};
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use dure_api::{routes, ClusterView, Operation};
use dure_core::name::{validate_name, NameKind};

/// The actions of the cluster list, as the form sends them.
const ACTIONS: [&str; 5] = ["start", "stop", "restart", "kill", "delete"];

pub async fn list(State(console): ConsoleState, user: LoggedIn) -> Response {
    let clusters = match read_clusters(&console, &user).await {
        Ok(clusters) => clusters,
        Err(response) => return response,
    };
    let flash = console.sessions.take_flash(&user.session.id);
    let frame = Frame::of(&user, pages::CLUSTERS);
    html(pages::clusters(&frame, &clusters, flash.as_deref()))
}

/// The table alone, for htmx to swap in; the clusters named in the query
/// (the boxes ticked when it asked) stay ticked.
pub async fn rows(
    State(console): ConsoleState,
    user: LoggedIn,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let ticked: Vec<String> =
        serde_urlencoded::from_str::<Vec<(String, String)>>(query.as_deref().unwrap_or_default())
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k == "cluster")
            .map(|(_, v)| v)
            .collect();
    match read_clusters(&console, &user).await {
        Ok(clusters) => html(pages::cluster_table(user.lang.texts(), &clusters, &ticked)),
        Err(response) => response,
    }
}

async fn read_clusters(
    console: &super::Console,
    user: &LoggedIn,
) -> Result<Vec<ClusterView>, Response> {
    console
        .backend
        .get::<Vec<ClusterView>>(&user.session.token, routes::CLUSTERS)
        .await
        .map_err(|refused| api_refusal(user, refused))
}

/// An API refusal as the console answers it: a token the API no longer
/// takes ends at the login page, anything else is said in the API's words.
pub(super) fn api_refusal(user: &LoggedIn, refused: Refusal) -> Response {
    if refused.status == StatusCode::UNAUTHORIZED {
        return to_login(user.htmx);
    }
    if user.htmx {
        (refused.status, html(pages::notice(&refused.message))).into_response()
    } else {
        super::refusal(refused.status, user.lang, &refused.message)
    }
}

/// Runs one action on every ticked cluster. An immediate stop or a delete
/// must say `confirmed=yes` (the dialog does); without it, as from a
/// browser without JavaScript, a page asks first, naming what goes.
pub async fn action(State(console): ConsoleState, form: SessionForm) -> Response {
    let user = &form.user;
    let t = user.lang.texts();
    let action = form.field("action").unwrap_or_default().to_string();
    let picked = form.all("cluster");
    let back = back_to(&form, &picked);
    if !ACTIONS.contains(&action.as_str()) {
        return answer(
            &console,
            user,
            pages::notice(&format!(
                "unknown action `{action}`: use start, stop, restart, kill or delete"
            )),
            &back,
        );
    }
    if picked.is_empty() {
        return answer(&console, user, pages::notice(t.nothing_selected), &back);
    }
    let dangerous = matches!(action.as_str(), "kill" | "delete");
    if dangerous && form.field("confirmed") != Some("yes") {
        let clusters = match read_clusters(&console, user).await {
            Ok(all) => all
                .into_iter()
                .filter(|c| picked.contains(&c.spec.name))
                .collect::<Vec<_>>(),
            Err(response) => return response,
        };
        let frame = Frame::of(user, pages::CLUSTERS);
        return html(pages::confirm(&frame, &action, &clusters));
    }
    let mut lines = Vec::with_capacity(picked.len());
    for cluster in picked.iter().cloned() {
        let outcome = run(&console, &user.session.token, &action, &cluster).await;
        if matches!(&outcome, Err(r) if r.status == StatusCode::UNAUTHORIZED) {
            return to_login(user.htmx);
        }
        lines.push((cluster, outcome.map_err(|r| r.message)));
    }
    answer(&console, user, pages::outcomes(&lines), &back)
}

/// One action on one cluster through the API; what was done, in words.
async fn run(
    console: &super::Console,
    token: &str,
    action: &str,
    cluster: &str,
) -> Result<String, Refusal> {
    if action == "delete" {
        let _: serde_json::Value = console
            .backend
            .call(token, Method::DELETE, &routes::cluster(cluster), None)
            .await?;
        return Ok("deleted".to_string());
    }
    // The console's restart is the rolling one: members go back in
    // rotation batch by batch, so the cluster keeps serving.
    let options = (action == "restart").then(|| serde_json::json!({ "rolling": true }));
    let operation: Operation = console
        .backend
        .call(
            token,
            Method::POST,
            &routes::cluster_action(cluster, action),
            options.as_ref(),
        )
        .await?;
    let mut done = format!("{action} operation `{}` {}", operation.id, operation.status);
    if let Some(message) = operation.message {
        done.push_str(": ");
        done.push_str(&message);
    }
    Ok(done)
}

/// The value of an action form's `back` field that asks to come back to
/// the one cluster's page rather than the list.
pub const BACK_TO_DETAIL: &str = "detail";

/// Where a browser without JavaScript goes after an action: the cluster's
/// own page when its form asked for it (one cluster, a valid name, so the
/// address is always one of ours), else the list.
fn back_to(form: &SessionForm, picked: &[String]) -> String {
    match picked {
        [one]
            if form.field("back") == Some(BACK_TO_DETAIL)
                && validate_name(NameKind::Cluster, one).is_ok() =>
        {
            format!("{}/{one}", pages::CLUSTERS)
        }
        _ => pages::CLUSTERS.to_string(),
    }
}

/// The result of an action: the fragment for htmx, else back to `back`
/// with the result shown there once.
fn answer(console: &super::Console, user: &LoggedIn, markup: maud::Markup, back: &str) -> Response {
    if user.htmx {
        return html(markup);
    }
    console
        .sessions
        .set_flash(&user.session.id, markup.into_string());
    Redirect::to(back).into_response()
}
