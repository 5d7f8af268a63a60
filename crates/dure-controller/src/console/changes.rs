//! Change review: the caller's change set as the API shows it — each
//! document added, modified or deleted with its unified diff, and the
//! paths in conflict with a save made since — with Save and Discard.

use super::pages::{self, csrf_field, Frame};
use super::{html, ConsoleState, LoggedIn, SessionForm};
use axum::extract::State;
use axum::http::Method;
use axum::response::{IntoResponse, Redirect, Response};
use dure_api::{routes, ChangeKind, ChangeSetView, SaveResult};
use dure_core::access::Permission;
use maud::{html as markup, Markup};

pub async fn review(State(console): ConsoleState, user: LoggedIn) -> Response {
    let view: ChangeSetView = match console
        .backend
        .get(&user.session.token, routes::CHANGES)
        .await
    {
        Ok(view) => view,
        Err(refused) => return super::clusters::api_refusal(&user, refused),
    };
    let flash = console.sessions.take_flash(&user.session.id);
    let frame = Frame::of(&user, pages::CHANGES);
    html(page(&frame, &view, flash.as_deref()))
}

/// Saves the change set (with the message, if one is given).
pub async fn save(State(console): ConsoleState, form: SessionForm) -> Response {
    let message = form
        .field("message")
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_string);
    let body = serde_json::json!({ "message": message });
    let outcome = console
        .backend
        .call::<SaveResult>(
            &form.user.session.token,
            Method::POST,
            routes::CHANGES_SAVE,
            Some(&body),
        )
        .await
        .map(|saved| saved.message);
    back(&console, &form.user, outcome.map_err(|r| r.message))
}

pub async fn discard(State(console): ConsoleState, form: SessionForm) -> Response {
    let t = form.user.lang.texts();
    let outcome = console
        .backend
        .call::<ChangeSetView>(
            &form.user.session.token,
            Method::POST,
            routes::CHANGES_DISCARD,
            None,
        )
        .await
        .map(|_| t.discarded.to_string());
    back(&console, &form.user, outcome.map_err(|r| r.message))
}

/// Back to the review with what happened said once at its top.
fn back(console: &super::Console, user: &LoggedIn, outcome: Result<String, String>) -> Response {
    let line = match outcome {
        Ok(done) => markup! { p.ok role="status" { (done) } },
        Err(why) => markup! { p.error role="alert" { (why) } },
    };
    console
        .sessions
        .set_flash(&user.session.id, line.into_string());
    Redirect::to(pages::CHANGES).into_response()
}

pub fn page(frame: &Frame, view: &ChangeSetView, flash: Option<&str>) -> Markup {
    let t = frame.lang.texts();
    let csrf = frame.csrf.unwrap_or_default();
    pages::page(
        frame,
        t.changes_heading,
        markup! {
            h1 { (t.changes_heading) }
            (pages::flash(flash))
            @if view.changes.is_empty() {
                p.empty #no-changes { (t.no_changes) }
            } @else {
                p { (t.changes_base) " " (view.base_version) " · " (t.changes_saved) " " (view.saved_version) }
                @if !view.conflicts.is_empty() {
                    div.error role="alert" #conflicts {
                        p { (t.conflict) }
                        ul { @for path in &view.conflicts { li { code { (path) } } } }
                    }
                }
                @for change in &view.changes {
                    section.change data-path=(change.path) data-kind=(kind_word(change.kind)) {
                        h2 {
                            span class={ "kind kind-" (kind_word(change.kind)) } { (kind_text(t, change.kind)) }
                            " " code { (change.path) }
                        }
                        (diff(&change.diff))
                    }
                }
                (pages::role_note(frame, Permission::Configure))
                @if frame.may(Permission::Configure) { div.buttons {
                    form.inline method="post" action=(pages::CHANGES_SAVE) {
                        (csrf_field(csrf))
                        label for="save-message" { (t.save_message) }
                        " "
                        input #save-message type="text" name="message";
                        " "
                        button #save-changes type="submit" { (t.save) }
                    }
                    form.inline method="post" action=(pages::CHANGES_DISCARD) {
                        (csrf_field(csrf))
                        button #discard-changes .danger type="submit" { (t.discard) }
                    }
                } }
            }
        },
    )
}

fn kind_word(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "added",
        ChangeKind::Modified => "modified",
        ChangeKind::Deleted => "deleted",
    }
}

fn kind_text(t: &super::i18n::Texts, kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => t.added,
        ChangeKind::Modified => t.modified,
        ChangeKind::Deleted => t.deleted,
    }
}

/// A unified diff, each line marked as added, removed or context.
pub(super) fn diff(text: &str) -> Markup {
    markup! {
        pre.diff {
            @for line in text.lines() {
                @let class = if line.starts_with("+++") || line.starts_with("---") || line.starts_with("@@") {
                    "meta"
                } else if line.starts_with('+') {
                    "plus"
                } else if line.starts_with('-') {
                    "minus"
                } else {
                    "same"
                };
                span class=(class) { (line) "\n" }
            }
        }
    }
}
