//! The three-step create wizard: a name, checked against the naming rule
//! as it is typed → members chosen from the servers in no other cluster →
//! a summary → finish, which is the API's cluster create. Each step is a
//! plain form carrying the earlier answers, so nothing is kept on the
//! server between steps and the wizard works without JavaScript.

use super::backend::Refusal;
use super::i18n::Texts;
use super::inventory::ports;
use super::pages::{self, csrf_field, Frame};
use super::{html, ConsoleState, LoggedIn, SessionForm};
use axum::extract::{Query, State};
use axum::http::Method;
use axum::response::{IntoResponse, Redirect, Response};
use dure_api::{routes, ClusterView, NodeView, ServerView, CHANGE_STAGED};
use dure_core::access::Permission;
use dure_core::name::{validate_name, NameKind};
use maud::{html as markup, Markup};

/// Reads see the caller's change set, so a staged server is offered and a
/// staged cluster's name is taken.
const STAGED_VIEW: &str = "?view=changes";

#[derive(serde::Deserialize)]
pub struct NameQuery {
    #[serde(default)]
    name: String,
}

/// Step one, empty.
pub async fn start(user: LoggedIn) -> Response {
    let frame = frame(&user);
    if !frame.may(Permission::Configure) {
        return html(not_for_role(&frame));
    }
    html(name_step(&frame, "", None))
}

/// The naming check as the name is typed: a line under the field.
pub async fn check_name(
    State(console): ConsoleState,
    user: LoggedIn,
    Query(query): Query<NameQuery>,
) -> Response {
    let outcome = name_problem(&console, &user, query.name.trim()).await;
    html(name_check(
        user.lang.texts(),
        query.name.trim(),
        outcome.as_deref(),
    ))
}

/// Why `name` cannot be a new cluster's, in the core's or the API's words.
async fn name_problem(console: &super::Console, user: &LoggedIn, name: &str) -> Option<String> {
    if let Err(refused) = validate_name(NameKind::Cluster, name) {
        return Some(refused.to_string());
    }
    match clusters(console, user).await {
        Ok(all) if all.iter().any(|c| c.spec.name == name) => {
            Some(format!("cluster `{name}` already exists"))
        }
        Ok(_) => None,
        Err(refused) => Some(refused.message),
    }
}

/// Every other step: `step` says which one the form asks for next.
pub async fn step(State(console): ConsoleState, form: SessionForm) -> Response {
    let user = &form.user;
    let frame = frame(user);
    if !frame.may(Permission::Configure) {
        return html(not_for_role(&frame));
    }
    let name = form.field("name").unwrap_or_default().trim().to_string();
    let members = form.all("member");
    let step = form.field("step").unwrap_or_default();
    if step == "name" {
        return html(name_step(&frame, &name, None));
    }
    if let Some(problem) = name_problem(&console, user, &name).await {
        return html(name_step(&frame, &name, Some(&problem)));
    }
    let offered = match free_servers(&console, user).await {
        Ok(offered) => offered,
        Err(refused) => return html(name_step(&frame, &name, Some(&refused.message))),
    };
    if step == "members" {
        return html(members_step(&frame, &name, &offered, &members, None));
    }
    if members.is_empty() {
        let t = user.lang.texts();
        return html(members_step(
            &frame,
            &name,
            &offered,
            &members,
            Some(t.at_least_one_member),
        ));
    }
    if step == "summary" {
        return html(summary_step(&frame, &name, &offered, &members, None));
    }
    // Finish: the API's create, saved or staged as the controller says.
    let spec = serde_json::json!({"name": name, "members": members});
    match console
        .backend
        .change(
            &user.session.token,
            Method::POST,
            routes::CLUSTERS,
            Some(&spec),
        )
        .await
    {
        Ok(change) => {
            let banner = banner(&frame, &name, change.as_deref() == Some(CHANGE_STAGED));
            console
                .sessions
                .set_flash(&user.session.id, banner.into_string());
            Redirect::to(pages::CLUSTERS).into_response()
        }
        Err(refused) => html(summary_step(
            &frame,
            &name,
            &offered,
            &members,
            Some(&refused.message),
        )),
    }
}

fn frame(user: &LoggedIn) -> Frame<'_> {
    Frame::of(user, pages::CLUSTER_NEW)
}

/// A server that may join: in no cluster, with its node's address.
pub struct Offered {
    server: ServerView,
    address: String,
}

async fn clusters(console: &super::Console, user: &LoggedIn) -> Result<Vec<ClusterView>, Refusal> {
    console
        .backend
        .get(
            &user.session.token,
            &format!("{}{STAGED_VIEW}", routes::CLUSTERS),
        )
        .await
}

async fn free_servers(console: &super::Console, user: &LoggedIn) -> Result<Vec<Offered>, Refusal> {
    let token = &user.session.token;
    let servers: Vec<ServerView> = console
        .backend
        .get(token, &format!("{}{STAGED_VIEW}", routes::SERVERS))
        .await?;
    let nodes: Vec<NodeView> = console
        .backend
        .get(token, &format!("{}{STAGED_VIEW}", routes::NODES))
        .await?;
    Ok(servers
        .into_iter()
        .filter(|s| s.cluster.is_none())
        .map(|server| {
            let address = nodes
                .iter()
                .find(|n| n.spec.name == server.spec.node)
                .map(|n| n.spec.address.clone())
                .unwrap_or_default();
            Offered { server, address }
        })
        .collect())
}

/// Which of the three steps a page is, for the step list at its top.
fn steps(t: &Texts, current: usize) -> Markup {
    markup! {
        ol.steps {
            @for (i, label) in [t.wizard_name, t.wizard_members, t.wizard_summary].iter().enumerate() {
                li aria-current=[(i + 1 == current).then_some("step")] { (label) }
            }
        }
    }
}

/// The wizard for a role that cannot create clusters: the title and the
/// line saying which role can, no form (the API would refuse the finish).
fn not_for_role(frame: &Frame) -> Markup {
    let t = frame.lang.texts();
    pages::page(
        frame,
        t.wizard_title,
        markup! {
            h1 { (t.wizard_title) }
            (pages::role_note(frame, Permission::Configure))
        },
    )
}

/// The form of a step, carrying the answers given so far.
fn step_form(frame: &Frame, name: &str, members: &[String], content: Markup) -> Markup {
    markup! {
        form.wizard method="post" action=(pages::CLUSTER_NEW) {
            (csrf_field(frame.csrf.unwrap_or_default()))
            input type="hidden" name="name" value=(name);
            @for member in members {
                input type="hidden" name="member" value=(member);
            }
            (content)
        }
    }
}

/// A page of the wizard: its title (with the cluster's name once it has
/// one), which of the three steps it is, then `content`.
fn wizard_page(frame: &Frame, name: Option<&str>, step: usize, content: Markup) -> Markup {
    let t = frame.lang.texts();
    pages::page(
        frame,
        t.wizard_title,
        markup! {
            h1 {
                (t.wizard_title)
                @if let Some(name) = name { ": " code { (name) } }
            }
            (steps(t, step))
            (content)
        },
    )
}

fn name_step(frame: &Frame, name: &str, problem: Option<&str>) -> Markup {
    let t = frame.lang.texts();
    wizard_page(
        frame,
        None,
        1,
        markup! {
            form.wizard method="post" action=(pages::CLUSTER_NEW) {
                (csrf_field(frame.csrf.unwrap_or_default()))
                label for="cluster-name" { (t.name) }
                input #cluster-name type="text" name="name" value=(name) required autofocus
                    autocomplete="off" aria-describedby="name-check"
                    hx-get=(pages::CLUSTER_NEW_NAME) hx-trigger="input changed delay:150ms"
                    hx-target="#name-check" hx-swap="outerHTML";
                (name_check(t, name, problem))
                div.buttons {
                    a.button href=(pages::CLUSTERS) { (t.cancel) }
                    button type="submit" name="step" value="members" { (t.next) }
                }
            }
        },
    )
}

/// The line under the name field: the rule it breaks, or that it is free.
fn name_check(t: &Texts, name: &str, problem: Option<&str>) -> Markup {
    markup! {
        p #name-check .check aria-live="polite" {
            @match problem {
                Some(problem) => span.error data-valid="no" { (problem) },
                None if name.is_empty() => span.hint data-valid="" { (t.name_rule) },
                None => span.ok data-valid="yes" { (t.name_free) },
            }
        }
    }
}

fn members_step(
    frame: &Frame,
    name: &str,
    offered: &[Offered],
    chosen: &[String],
    problem: Option<&str>,
) -> Markup {
    let t = frame.lang.texts();
    wizard_page(
        frame,
        Some(name),
        2,
        step_form(
            frame,
            name,
            &[],
            markup! {
                    fieldset {
                        legend { (t.wizard_members) }
                        @if offered.is_empty() {
                            p.empty { (t.no_free_servers) }
                        } @else {
                            table {
                                thead { tr {
                                    th scope="col" { (t.select) }
                                    th scope="col" { (t.server) }
                                    th scope="col" { (t.node) }
                                    th scope="col" { (t.address) }
                                    th scope="col" { (t.ports) }
                                } }
                                tbody {
                                    @for o in offered {
                                        @let id = format!("member-{}", o.server.spec.name);
                                        tr {
                                            td {
                                                input id=(id) type="checkbox" name="member" value=(o.server.spec.name)
                                                    checked[chosen.contains(&o.server.spec.name)];
                                            }
                                            td { label for=(id) { (o.server.spec.name) } }
                                            td { (o.server.spec.node) }
                                            td { (o.address) }
                                            td { (ports(&o.server)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if let Some(problem) = problem {
                        p.error role="alert" { (problem) }
                    }
                    div.buttons {
                        button type="submit" name="step" value="name" formnovalidate { (t.back) }
                        button type="submit" name="step" value="summary" { (t.next) }
                    }
            },
        ),
    )
}

fn summary_step(
    frame: &Frame,
    name: &str,
    offered: &[Offered],
    members: &[String],
    problem: Option<&str>,
) -> Markup {
    let t = frame.lang.texts();
    wizard_page(
        frame,
        Some(name),
        3,
        markup! {
            dl.summary {
                dt { (t.name) }
                dd #summary-name { (name) }
                dt { (t.members) }
                dd {
                    ol #summary-members {
                        @for member in members {
                            li {
                                (member)
                                @if let Some(o) = offered.iter().find(|o| &o.server.spec.name == member) {
                                    " (" (o.server.spec.node) ", " (o.address) ", " (ports(&o.server)) ")"
                                }
                            }
                        }
                    }
                }
            }
            (step_form(frame, name, members, markup! {
                @if let Some(problem) = problem {
                    p.error role="alert" { (problem) }
                }
                div.buttons {
                    button type="submit" name="step" value="members" { (t.back) }
                    button #finish type="submit" name="step" value="finish" { (t.finish) }
                }
            }))
        },
    )
}

/// What finishing did: saved at once, or staged in the change set with
/// the way to review and save it.
fn banner(frame: &Frame, name: &str, staged: bool) -> Markup {
    let t = frame.lang.texts();
    markup! {
        div.banner role="status" {
            @if staged {
                (t.cluster_staged) " " code { (name) } " "
                a href=(pages::CHANGES) { (t.review) }
                form.inline method="post" action=(pages::CHANGES_SAVE) {
                    (csrf_field(frame.csrf.unwrap_or_default()))
                    button type="submit" { (t.save) }
                }
            } @else {
                (t.cluster_saved) " " code { (name) }
            }
        }
    }
}
