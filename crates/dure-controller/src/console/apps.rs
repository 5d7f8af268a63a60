//! A cluster's applications (`/ui/clusters/<name>/apps`): each context's
//! newest version with how its deploy went and which version each member
//! has (installed, staged, error), every version of the cluster, and a
//! rollback to one of them (asked for on a confirm page first), all
//! through the API's application routes.

use super::pages::{self, csrf_field, Frame};
use super::{html, ConsoleState, LoggedIn, SessionForm};
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use dure_api::{routes, AppVersionView, AppView, DeployStarted, OperationStatus};
use dure_core::access::Permission;
use maud::{html as markup, Markup};

/// Where a cluster's application page is.
pub fn path(cluster: &str) -> String {
    format!("{}/{cluster}/apps", pages::CLUSTERS)
}

fn rollback_path(cluster: &str) -> String {
    format!("{}/rollback", path(cluster))
}

pub async fn show(
    State(console): ConsoleState,
    user: LoggedIn,
    Path(name): Path<String>,
) -> Response {
    let token = &user.session.token;
    let apps: Vec<AppView> = match console
        .backend
        .get(token, &routes::cluster_apps(&name))
        .await
    {
        Ok(apps) => apps,
        Err(refused) => return super::clusters::api_refusal(&user, refused),
    };
    let versions: Vec<AppVersionView> = match console
        .backend
        .get(token, &routes::cluster_apps_history(&name))
        .await
    {
        Ok(versions) => versions,
        Err(refused) => return super::clusters::api_refusal(&user, refused),
    };
    let flash = console.sessions.take_flash(&user.session.id);
    let here = path(&name);
    let frame = Frame::of(&user, pages::CLUSTERS);
    let t = user.lang.texts();
    // The version each context has now: a rollback to it would change nothing.
    let newest: Vec<u64> = apps.iter().map(|a| a.newest.record.version).collect();
    html(pages::page(
        &frame,
        &name,
        markup! {
            h1 { (t.nav_apps) " " code { a href={ (pages::CLUSTERS) "/" (name) } { (name) } } }
            (pages::flash(flash.as_deref()))
            (pages::role_note(&frame, Permission::Configure))
            div #apps-live hx-get=(here) hx-select="#apps-live" hx-trigger="dure:changed from:body"
                hx-target="this" hx-swap="outerHTML" {
                @if apps.is_empty() { p.empty #no-apps { (t.no_apps) } }
                @for app in &apps {
                    section.app data-context=(app.context) {
                        h2 { code { (app.context) } " · " (t.version) " " (app.newest.record.version)
                            " · " (status_word(app.newest.status)) }
                        table {
                            thead { tr {
                                th scope="col" { (t.server) } th scope="col" { (t.node) }
                                th scope="col" { (t.installed) } th scope="col" { (t.staged) }
                                th scope="col" { (t.app_error) }
                            } }
                            tbody {
                                @for member in &app.members {
                                    tr data-server=(member.server)
                                        data-installed=(member.installed.map(|v| v.to_string()).unwrap_or_default()) {
                                        td { a href={ (pages::SERVERS) "/" (member.server) } { (member.server) } }
                                        td { (member.node) }
                                        td { (number(member.installed)) }
                                        td { (number(member.staged)) }
                                        td { @if let Some(error) = &member.error {
                                            (t.version) " " (error.version) ": " (error.message)
                                        } @else { "-" } }
                                    }
                                }
                            }
                        }
                    }
                }
                h2 { (t.app_versions) }
                table #app-versions {
                    thead { tr {
                        th scope="col" { (t.version) } th scope="col" { (t.context) }
                        th scope="col" { (t.digest) } th scope="col" { (t.size) }
                        th scope="col" { (t.time) } th scope="col" { (t.actor) }
                        th scope="col" { (t.status) } th scope="col" { (t.operations) }
                        th scope="col" { span.visually-hidden { (t.rollback_to) } }
                    } }
                    tbody {
                        @if versions.is_empty() { tr { td colspan="9" .empty { (t.no_apps) } } }
                        @for view in &versions {
                            @let v = &view.record;
                            tr data-version=(v.version) {
                                td { (v.version)
                                    @if let Some(of) = v.rollback_of { " (" (t.rollback_of) " " (of) ")" } }
                                td { code { (v.context) } }
                                td { code title=(v.digest) { (crate::apps::short(&v.digest)) } }
                                td { (v.size) " B · " (super::cluster_detail::word(&v.kind)) }
                                td { (super::inventory::since(Some(v.created_ms))) }
                                td { (v.actor) }
                                td { (status_word(view.status)) }
                                td { (v.operation.as_deref().unwrap_or("-")) }
                                td {
                                    @if frame.may(Permission::Configure) && !newest.contains(&v.version) {
                                        (rollback_form(&frame, &name, v.version, false))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// The form asking for a rollback to `version`; `confirmed`: the one of
/// the confirm page, which carries it out.
fn rollback_form(frame: &Frame, cluster: &str, version: u64, confirmed: bool) -> Markup {
    let t = frame.lang.texts();
    markup! {
        form method="post" action=(rollback_path(cluster)) {
            (csrf_field(frame.csrf.unwrap_or_default()))
            input type="hidden" name="version" value=(version);
            @if confirmed {
                input type="hidden" name="confirmed" value="yes";
                a.button href=(path(cluster)) { (t.cancel) }
                " "
                button.danger #confirm-rollback type="submit" { (t.confirm) }
            } @else {
                button.danger type="submit" { (t.rollback_to) " " (version) }
            }
        }
    }
}

/// A rollback of the cluster's application: asked for on a page of its
/// own first, then the API's, rolling batch by batch.
pub async fn rollback(
    State(console): ConsoleState,
    Path(name): Path<String>,
    form: SessionForm,
) -> Response {
    let user = &form.user;
    let t = user.lang.texts();
    let Some(version) = form.field("version").and_then(|v| v.parse::<u64>().ok()) else {
        return super::refusal(
            StatusCode::BAD_REQUEST,
            user.lang,
            "the rollback needs a version number",
        );
    };
    if form.field("confirmed") != Some("yes") {
        let frame = Frame::of(user, pages::CLUSTERS);
        return html(pages::page(
            &frame,
            t.nav_apps,
            markup! {
                h1 { (t.rollback_to) " " (version) " · " code { (name) } }
                p { (t.confirm_app_rollback) }
                (rollback_form(&frame, &name, version, true))
            },
        ));
    }
    let body = serde_json::json!({ "to": version, "rolling": true });
    let line = match console
        .backend
        .call::<DeployStarted>(
            &user.session.token,
            Method::POST,
            &routes::cluster_apps_rollback(&name),
            Some(&body),
        )
        .await
    {
        Ok(started) => markup! { p.ok role="status" {
            (t.version) " " (started.version.version) " · " code { (started.operation.id) }
        } },
        Err(refused) => markup! { p.error role="alert" { (refused.message) } },
    };
    console
        .sessions
        .set_flash(&user.session.id, line.into_string());
    Redirect::to(&path(&name)).into_response()
}

fn number(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn status_word(status: Option<OperationStatus>) -> String {
    status.map_or_else(|| "-".to_string(), |s| super::cluster_detail::word(&s))
}
