//! The console's HTML, rendered on the server with maud: the page frame
//! (header, navigation, language switch, logout), the login page, the
//! cluster list and its live fragment, and the confirm page used when a
//! dangerous action arrives without JavaScript. Pure functions of their
//! inputs, so the HTML checks in `html_check` can render every page.

use super::i18n::{Lang, Texts};
use super::session::CSRF_FIELD;
use dure_api::ClusterView;
use dure_core::access::{Permission, Role};
use dure_core::{ClusterStatus, ServerState};
use maud::{html, Markup, PreEscaped, DOCTYPE};

/// Where the console lives; every link and form is under it.
pub const BASE: &str = "/ui";
pub const LOGIN: &str = "/ui/login";
pub const LOGOUT: &str = "/ui/logout";
pub const CLUSTERS: &str = "/ui/clusters";
pub const CLUSTER_ROWS: &str = "/ui/clusters/rows";
pub const CLUSTER_ACTION: &str = "/ui/clusters/action";
pub const STREAM: &str = "/ui/stream";
pub const CLUSTER_NEW: &str = "/ui/clusters/new";
pub const CLUSTER_NEW_NAME: &str = "/ui/clusters/new/name";
pub const CHANGES: &str = "/ui/changes";
pub const NODES: &str = "/ui/nodes";
pub const SERVERS: &str = "/ui/servers";
pub const EVENTS: &str = "/ui/events";
pub const HISTORY: &str = "/ui/history";
pub const HISTORY_ROLLBACK: &str = "/ui/history/rollback";
pub const BALANCERS: &str = "/ui/balancers";
pub const CHANGES_SAVE: &str = "/ui/changes/save";
pub const CHANGES_DISCARD: &str = "/ui/changes/discard";

/// A logged-in page's context: the language, the session's CSRF token and
/// role, and the path the language switch comes back to.
pub struct Frame<'a> {
    pub lang: Lang,
    pub csrf: Option<&'a str>,
    /// The session's role; `None` on the login page.
    pub role: Option<Role>,
    pub path: &'a str,
}

impl<'a> Frame<'a> {
    /// The frame of a logged-in page at `path`.
    pub fn of(user: &'a super::LoggedIn, path: &'a str) -> Frame<'a> {
        Frame {
            lang: user.lang,
            csrf: Some(&user.session.csrf),
            role: Some(user.session.role),
            path,
        }
    }

    /// Whether the session's role allows what `permission` guards: a
    /// control it does not allow is left out (the API would refuse it).
    pub fn may(&self, permission: Permission) -> bool {
        self.role.is_some_and(|role| role.allows(permission))
    }

    fn t(&self) -> &'static Texts {
        self.lang.texts()
    }
}

/// The hidden CSRF field every form of a session carries.
pub fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(csrf); }
}

/// The whole page around `content`.
pub fn page(frame: &Frame, heading: &str, content: Markup) -> Markup {
    let t = frame.t();
    html! {
        (DOCTYPE)
        html lang=(frame.lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // htmx's own indicator styles would be an inline style the
                // content security policy refuses; the console's CSS has them.
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false}"#;
                title { (heading) " · " (t.title) }
                link rel="stylesheet" href="/ui/assets/console.css";
                script src="/ui/assets/htmx.min.js" defer {}
                script src="/ui/assets/console.js" defer {}
            }
            body data-stream=[frame.csrf.map(|_| STREAM)] {
                header.top {
                    a.brand href=(BASE) { (t.title) }
                    @if frame.csrf.is_some() {
                        nav aria-label=(t.title) {
                            a href=(CLUSTERS) aria-current=[(frame.path == CLUSTERS).then_some("page")] { (t.nav_clusters) }
                            @for (href, label) in [(NODES, t.nav_nodes), (SERVERS, t.nav_servers), (EVENTS, t.nav_events),
                                (HISTORY, t.nav_history), (BALANCERS, t.nav_balancers), (CHANGES, t.nav_changes)] {
                                a href=(href) aria-current=[(frame.path == href).then_some("page")] { (label) }
                            }
                        }
                        span #live .live title=(t.live) { (t.live) }
                    }
                    (language_switch(frame))
                    @if let Some(role) = frame.role {
                        span #session-role .role { (t.role) ": " strong { (role) } }
                    }
                    @if let Some(csrf) = frame.csrf {
                        form.logout method="post" action=(LOGOUT) {
                            (csrf_field(csrf))
                            button type="submit" { (t.logout) }
                        }
                    }
                }
                main { (content) }
            }
        }
    }
}

fn language_switch(frame: &Frame) -> Markup {
    html! {
        nav.lang aria-label=(frame.t().language) {
            @for lang in Lang::ALL {
                @if lang == frame.lang {
                    strong lang=(lang.code()) { (lang.name()) }
                } @else {
                    a lang=(lang.code()) hreflang=(lang.code())
                        href={ "/ui/lang/" (lang.code()) "?back=" (frame.path) } { (lang.name()) }
                }
            }
        }
    }
}

/// The login form; `error` is why the last attempt was refused.
pub fn login(lang: Lang, csrf: &str, error: Option<&str>) -> Markup {
    let t = lang.texts();
    let frame = Frame {
        lang,
        csrf: None,
        role: None,
        path: LOGIN,
    };
    page(
        &frame,
        t.login_heading,
        html! {
            h1 { (t.login_heading) }
            form.login method="post" action=(LOGIN) {
                (csrf_field(csrf))
                label for="token" { (t.token_label) }
                input #token type="password" name="token" autocomplete="current-password" required autofocus
                    aria-describedby="token-hint";
                p #token-hint .hint { (t.token_hint) }
                @if let Some(error) = error {
                    p.error role="alert" { (error) }
                }
                button type="submit" { (t.login_button) }
            }
        },
    )
}

/// The cluster list with its actions, the legend and the confirm dialog.
pub fn clusters(frame: &Frame, clusters: &[ClusterView], flash: Option<&str>) -> Markup {
    let t = frame.t();
    let csrf = frame.csrf.unwrap_or_default();
    page(
        frame,
        t.clusters_heading,
        html! {
            h1 { (t.clusters_heading) }
            (self::flash(flash))
            form #cluster-actions method="post" action=(CLUSTER_ACTION)
                hx-post=(CLUSTER_ACTION) hx-target="#action-result" hx-swap="innerHTML" {
                (csrf_field(csrf))
                input type="hidden" name="confirmed" value="";
                div.toolbar {
                    @if frame.may(Permission::Configure) {
                        a.button #create-cluster href=(CLUSTER_NEW) { (t.create) }
                    }
                    @if frame.may(Permission::Operate) {
                        button type="submit" name="action" value="start" { (t.start) }
                        button type="submit" name="action" value="stop" { (t.stop) }
                        button type="submit" name="action" value="restart" { (t.restart) }
                        button.danger type="submit" name="action" value="kill"
                            data-confirm=(t.confirm_kill) data-confirm-members="yes" { (t.kill) }
                    }
                    @if frame.may(Permission::Configure) {
                        button.danger type="submit" name="action" value="delete"
                            data-confirm=(t.confirm_delete) { (t.delete) }
                    }
                    (role_note(frame, Permission::Operate))
                    output #action-result role="status" aria-live="polite" {}
                }
                (cluster_table(t, clusters, &[]))
            }
            (legend(t))
            dialog #confirm-dialog aria-labelledby="confirm-text" {
                p #confirm-text {}
                ul #confirm-list {}
                div.dialog-buttons {
                    button #confirm-cancel type="button" { (t.cancel) }
                    button #confirm-ok .danger type="button" { (t.confirm) }
                }
            }
        },
    )
}

/// Where controls needing `permission` are left out for the session's
/// role, a line saying so and which role would have them; nothing when the
/// role has them.
pub fn role_note(frame: &Frame, permission: Permission) -> Markup {
    html! {
        @if frame.role.is_some() && !frame.may(permission) {
            p #role-note .note { (frame.t().role_cannot) " " strong { (Role::least_for(permission)) } }
        }
    }
}

/// What the last action without JavaScript did, shown once: markup the
/// console rendered itself (escaped when it was made).
pub fn flash(flash: Option<&str>) -> Markup {
    html! {
        @if let Some(flash) = flash {
            div #flash { (PreEscaped(flash)) }
        }
    }
}

/// The cluster table, which replaces itself whenever the event stream says
/// something changed; `checked` are the clusters whose boxes stay ticked.
pub fn cluster_table(t: &Texts, clusters: &[ClusterView], checked: &[String]) -> Markup {
    html! {
        // Its own target: it sits inside the actions form, whose target
        // htmx would otherwise let it inherit.
        table #cluster-table hx-get=(CLUSTER_ROWS) hx-trigger="dure:changed from:body"
            hx-include="[name='cluster']:checked" hx-target="this" hx-swap="outerHTML" {
            thead {
                tr {
                    th scope="col" {
                        input #select-all type="checkbox" aria-label=(t.select_all);
                    }
                    th scope="col" { (t.name) }
                    th scope="col" { (t.status) }
                    th scope="col" { (t.members) " (" (t.ready_of_total) ")" }
                }
            }
            tbody {
                @if clusters.is_empty() {
                    tr { td colspan="4" .empty { (t.no_clusters) } }
                }
                @for cluster in clusters {
                    (cluster_row(t, cluster, checked.contains(&cluster.spec.name)))
                }
            }
            tfoot {
                tr { td colspan="4" { (t.total) ": " span #cluster-total { (clusters.len()) } } }
            }
        }
    }
}

fn cluster_row(t: &Texts, cluster: &ClusterView, checked: bool) -> Markup {
    let name = &cluster.spec.name;
    let ready = cluster
        .members
        .iter()
        .filter(|m| m.observed.state == ServerState::Ready)
        .count();
    let members = if cluster.members.is_empty() {
        t.no_members.to_string()
    } else {
        cluster
            .members
            .iter()
            .map(|m| format!("{} ({}, {})", m.server, m.node, m.observed.state))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let pick = format!("pick-{name}");
    html! {
        tr data-cluster=(name) {
            td {
                input id=(pick) type="checkbox" name="cluster" value=(name) checked[checked]
                    data-members=(members);
                label.visually-hidden for=(pick) { (t.select) " " (name) }
            }
            td { a href={ (CLUSTERS) "/" (name) } { (name) } }
            td.status data-status=(cluster.status) {
                (light(cluster.status))
                " " (status_text(t, cluster.status))
            }
            td.count title=(members) { (ready) " / " (cluster.members.len()) }
        }
    }
}

fn light(status: ClusterStatus) -> Markup {
    html! { span class={ "light light-" (status) } aria-hidden="true" {} }
}

fn status_text(t: &Texts, status: ClusterStatus) -> &'static str {
    match status {
        ClusterStatus::Green => t.green,
        ClusterStatus::Yellow => t.yellow,
        ClusterStatus::Red => t.red,
        ClusterStatus::Gray => t.gray,
    }
}

fn legend(t: &Texts) -> Markup {
    html! {
        section.legend aria-label=(t.legend) {
            h2 { (t.legend) }
            ul {
                @for status in [ClusterStatus::Green, ClusterStatus::Yellow, ClusterStatus::Red, ClusterStatus::Gray] {
                    li { (light(status)) " " (status) ": " (status_text(t, status)) }
                }
            }
        }
    }
}

/// The outcome of an action on each cluster, shown next to the buttons:
/// `Ok` lines say what was done, `Err` lines are the API's words.
pub fn outcomes(lines: &[(String, Result<String, String>)]) -> Markup {
    html! {
        ul.outcomes {
            @for (cluster, outcome) in lines {
                @match outcome {
                    Ok(done) => li.ok { code { (cluster) } ": " (done) },
                    Err(why) => li.error role="alert" { code { (cluster) } ": " (why) },
                }
            }
        }
    }
}

/// A one-line message next to the buttons (nothing selected, say).
pub fn notice(message: &str) -> Markup {
    html! { p.error role="alert" { (message) } }
}

/// Asks, without JavaScript, to confirm an immediate stop or a delete of
/// `clusters`, naming each one's members.
pub fn confirm(frame: &Frame, action: &str, clusters: &[ClusterView]) -> Markup {
    let t = frame.t();
    let (question, label) = match action {
        "kill" => (t.confirm_kill, t.kill),
        _ => (t.confirm_delete, t.delete),
    };
    page(
        frame,
        label,
        html! {
            h1 { (label) }
            p { (question) }
            ul {
                @for cluster in clusters {
                    li {
                        code { (cluster.spec.name) }
                        @if action == "kill" {
                            ": "
                            @if cluster.members.is_empty() { (t.no_members) }
                            @for (i, member) in cluster.members.iter().enumerate() {
                                @if i > 0 { ", " }
                                (member.server) " (" (member.node) ")"
                            }
                        }
                    }
                }
            }
            form method="post" action=(CLUSTER_ACTION) {
                (csrf_field(frame.csrf.unwrap_or_default()))
                input type="hidden" name="action" value=(action);
                input type="hidden" name="confirmed" value="yes";
                @for cluster in clusters {
                    input type="hidden" name="cluster" value=(cluster.spec.name);
                }
                a.button href=(CLUSTERS) { (t.cancel) }
                " "
                button.danger type="submit" { (t.confirm) }
            }
        },
    )
}

/// A page that says why a request was refused, with a way back.
pub fn refused(lang: Lang, message: &str) -> Markup {
    let frame = Frame {
        lang,
        csrf: None,
        role: None,
        path: BASE,
    };
    page(
        &frame,
        lang.texts().title,
        html! {
            p.error role="alert" { (message) }
            p { a href=(BASE) { (lang.texts().title) } }
        },
    )
}
