//! The event log with a subject filter, and the configuration history:
//! each saved version with who, when, why and its diff against the one
//! before, and a rollback to it (asked for on a confirm page first), all
//! through the API.

use super::pages::{self, csrf_field, Frame};
use super::{html, ConsoleState, LoggedIn, SessionForm};
use axum::extract::{Query, State};
use axum::http::Method;
use axum::response::{IntoResponse, Redirect, Response};
use dure_api::{routes, DocumentChange, Event, RevisionInfo, SaveResult};
use dure_core::access::Permission;
use maud::html as markup;

/// How many events and versions a page shows.
const PAGE: usize = 100;

#[derive(serde::Deserialize)]
pub struct EventFilter {
    #[serde(default)]
    subject: String,
}

pub async fn events(
    State(console): ConsoleState,
    user: LoggedIn,
    Query(filter): Query<EventFilter>,
) -> Response {
    let subject = filter.subject.trim().to_string();
    let query =
        serde_urlencoded::to_string([("last", PAGE.to_string()), ("subject", subject.clone())])
            .unwrap_or_default();
    let events: Vec<Event> = match console
        .backend
        .get(&user.session.token, &format!("{}?{query}", routes::EVENTS))
        .await
    {
        Ok(events) => events,
        Err(refused) => return super::clusters::api_refusal(&user, refused),
    };
    let frame = Frame::of(&user, pages::EVENTS);
    let t = user.lang.texts();
    let live = format!(
        "{}?{}",
        pages::EVENTS,
        serde_urlencoded::to_string([("subject", &subject)]).unwrap_or_default()
    );
    html(pages::page(
        &frame,
        t.nav_events,
        markup! {
            h1 { (t.nav_events) }
            form.filters method="get" action=(pages::EVENTS) {
                label for="event-subject" { (t.subject_filter) }
                " "
                input #event-subject type="text" name="subject" value=(subject) placeholder="cluster/shop";
                " "
                button type="submit" { (t.filter) }
            }
            table #event-table hx-get=(live) hx-select="#event-table" hx-trigger="dure:changed from:body"
                hx-target="this" hx-swap="outerHTML" {
                thead { tr {
                    th scope="col" { "#" } th scope="col" { (t.time) } th scope="col" { (t.actor) }
                    th scope="col" { (t.kind) } th scope="col" { (t.subject) } th scope="col" { (t.message) }
                } }
                tbody {
                    @if events.is_empty() { tr { td colspan="6" .empty { (t.no_events) } } }
                    @for event in events.iter().rev() {
                        tr data-seq=(event.seq) {
                            td { (event.seq) }
                            td { (super::inventory::since(Some(event.time_ms))) }
                            td { (event.actor) }
                            td { (event.kind) }
                            td { (event.subject) }
                            td { (event.message) }
                        }
                    }
                }
            }
        },
    ))
}

pub async fn history(State(console): ConsoleState, user: LoggedIn) -> Response {
    let token = &user.session.token;
    let versions: Vec<RevisionInfo> = match console
        .backend
        .get(token, &format!("{}?limit={PAGE}", routes::CONFIG_HISTORY))
        .await
    {
        Ok(versions) => versions,
        Err(refused) => return super::clusters::api_refusal(&user, refused),
    };
    let flash = console.sessions.take_flash(&user.session.id);
    let frame = Frame::of(&user, pages::HISTORY);
    let t = user.lang.texts();
    let current = versions.first().map(|v| v.version).unwrap_or_default();
    let mut diffs = Vec::with_capacity(versions.len());
    for version in &versions {
        let diff = if version.version > 1 {
            console
                .backend
                .get::<Vec<DocumentChange>>(
                    token,
                    &format!(
                        "{}?from={}&to={}",
                        routes::CONFIG_DIFF,
                        version.version - 1,
                        version.version
                    ),
                )
                .await
                .map_err(|r| r.message)
        } else {
            Ok(Vec::new())
        };
        diffs.push(diff);
    }
    html(pages::page(
        &frame,
        t.nav_history,
        markup! {
            h1 { (t.nav_history) }
            (pages::flash(flash.as_deref()))
            (pages::role_note(&frame, Permission::Configure))
            @for (version, diff) in versions.iter().zip(&diffs) {
                details.version data-version=(version.version) {
                    summary {
                        strong { (t.version) " " (version.version) }
                        " · " (super::inventory::since(Some(version.time_ms)))
                        " · " (version.actor) " · " (version.message)
                    }
                    ul { @for path in &version.paths { li { code { (path) } } } }
                    @match diff {
                        Ok(changes) => {
                            @for change in changes {
                                h3 { code { (change.path) } }
                                (super::changes::diff(&change.diff))
                            }
                        }
                        Err(why) => p.error role="alert" { (why) },
                    }
                    @if version.version != current && frame.may(Permission::Configure) {
                        form method="post" action=(pages::HISTORY_ROLLBACK) {
                            (csrf_field(&user.session.csrf))
                            input type="hidden" name="version" value=(version.version);
                            button.danger type="submit" { (t.rollback_to) " " (version.version) }
                        }
                    }
                }
            }
        },
    ))
}

/// A rollback: asked for on a page of its own first, then the API's.
pub async fn rollback(State(console): ConsoleState, form: SessionForm) -> Response {
    let user = &form.user;
    let t = user.lang.texts();
    let Some(version) = form.field("version").and_then(|v| v.parse::<u64>().ok()) else {
        return super::refusal(
            axum::http::StatusCode::BAD_REQUEST,
            user.lang,
            "the rollback needs a version number",
        );
    };
    if form.field("confirmed") != Some("yes") {
        let frame = Frame::of(user, pages::HISTORY);
        return html(pages::page(
            &frame,
            t.nav_history,
            markup! {
                h1 { (t.rollback_to) " " (version) }
                p { (t.confirm_rollback) }
                form method="post" action=(pages::HISTORY_ROLLBACK) {
                    (csrf_field(&user.session.csrf))
                    input type="hidden" name="version" value=(version);
                    input type="hidden" name="confirmed" value="yes";
                    a.button href=(pages::HISTORY) { (t.cancel) }
                    " "
                    button.danger #confirm-rollback type="submit" { (t.confirm) }
                }
            },
        ));
    }
    let body = serde_json::json!({ "version": version });
    let line = match console
        .backend
        .call::<SaveResult>(
            &user.session.token,
            Method::POST,
            routes::CONFIG_ROLLBACK,
            Some(&body),
        )
        .await
    {
        Ok(saved) => markup! { p.ok role="status" { (saved.message) } },
        Err(refused) => markup! { p.error role="alert" { (refused.message) } },
    };
    console
        .sessions
        .set_flash(&user.session.id, line.into_string());
    Redirect::to(pages::HISTORY).into_response()
}
