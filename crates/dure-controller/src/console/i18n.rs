//! The console's words in English and Korean, and which language a request
//! gets: the `dure_lang` cookie set by the language switch, else the first
//! language of `Accept-Language` the console speaks, else English.
//!
//! Every text is a field of [`Texts`], so a language missing one does not
//! compile. Messages from the API are shown as the API words them.

use axum::http::HeaderMap;

/// Name of the cookie the language switch sets.
pub const LANG_COOKIE: &str = "dure_lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Ko,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Ko];

    /// The language tag, as in `lang=` and the switch's links.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ko => "ko",
        }
    }

    /// The language's own name, for the switch.
    pub fn name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Ko => "한국어",
        }
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        Lang::ALL.into_iter().find(|l| l.code() == code)
    }

    /// The language for a request.
    pub fn of_request(headers: &HeaderMap) -> Lang {
        if let Some(lang) =
            super::session::cookie_value(headers, LANG_COOKIE).and_then(Lang::from_code)
        {
            return lang;
        }
        let accept = headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        from_accept_language(accept)
    }

    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::En => &EN,
            Lang::Ko => &KO,
        }
    }
}

/// The first language of an `Accept-Language` value the console speaks,
/// by quality then order; English when none.
fn from_accept_language(value: &str) -> Lang {
    let mut best: Option<(f32, Lang)> = None;
    for item in value.split(',') {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let quality = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .and_then(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let primary = tag.split('-').next().unwrap_or_default();
        let Some(lang) = Lang::from_code(primary) else {
            continue;
        };
        if quality > 0.0 && best.is_none_or(|(q, _)| quality > q) {
            best = Some((quality, lang));
        }
    }
    best.map_or(Lang::En, |(_, lang)| lang)
}

/// Every text of the console in one language.
pub struct Texts {
    pub title: &'static str,
    pub login_heading: &'static str,
    pub token_label: &'static str,
    pub token_hint: &'static str,
    pub login_button: &'static str,
    pub login_refused: &'static str,
    pub logout: &'static str,
    /// Label of the session's role in the header.
    pub role: &'static str,
    /// Said where controls are left out for the session's role; the role
    /// that would show them follows.
    pub role_cannot: &'static str,
    pub language: &'static str,
    pub nav_clusters: &'static str,
    pub clusters_heading: &'static str,
    pub select: &'static str,
    pub select_all: &'static str,
    pub name: &'static str,
    pub status: &'static str,
    pub members: &'static str,
    pub ready_of_total: &'static str,
    pub total: &'static str,
    pub no_clusters: &'static str,
    pub start: &'static str,
    pub stop: &'static str,
    pub kill: &'static str,
    pub delete: &'static str,
    pub cancel: &'static str,
    pub confirm: &'static str,
    pub nothing_selected: &'static str,
    pub confirm_kill: &'static str,
    pub confirm_delete: &'static str,
    pub no_members: &'static str,
    pub legend: &'static str,
    pub green: &'static str,
    pub yellow: &'static str,
    pub red: &'static str,
    pub gray: &'static str,
    pub live: &'static str,
    pub csrf_refused: &'static str,
    pub restart: &'static str,
    pub nav_nodes: &'static str,
    pub nav_servers: &'static str,
    pub nav_events: &'static str,
    pub nav_history: &'static str,
    pub nav_balancers: &'static str,
    pub mode: &'static str,
    pub agent_version: &'static str,
    pub since: &'static str,
    pub servers_count: &'static str,
    pub no_nodes: &'static str,
    pub restarts: &'static str,
    /// Beside a server's state when its process runs older generated files.
    pub restart_needed: &'static str,
    pub no_servers: &'static str,
    pub last_error: &'static str,
    pub log_tail: &'static str,
    pub subject_filter: &'static str,
    pub filter: &'static str,
    pub time: &'static str,
    pub actor: &'static str,
    pub kind: &'static str,
    pub subject: &'static str,
    pub message: &'static str,
    pub no_events: &'static str,
    pub version: &'static str,
    pub rollback_to: &'static str,
    pub confirm_rollback: &'static str,
    pub no_balancers: &'static str,
    pub instances: &'static str,
    pub requests: &'static str,
    pub share: &'static str,
    pub errors: &'static str,
    pub in_flight: &'static str,
    pub weight: &'static str,
    pub operations: &'static str,
    pub no_operations: &'static str,
    pub nav_changes: &'static str,
    pub create: &'static str,
    pub wizard_title: &'static str,
    pub wizard_name: &'static str,
    pub wizard_members: &'static str,
    pub wizard_summary: &'static str,
    pub next: &'static str,
    pub back: &'static str,
    pub finish: &'static str,
    pub name_rule: &'static str,
    pub name_free: &'static str,
    pub at_least_one_member: &'static str,
    pub no_free_servers: &'static str,
    pub server: &'static str,
    pub node: &'static str,
    pub address: &'static str,
    pub ports: &'static str,
    pub cluster_staged: &'static str,
    pub cluster_saved: &'static str,
    pub review: &'static str,
    pub save: &'static str,
    pub save_message: &'static str,
    pub discard: &'static str,
    pub discarded: &'static str,
    pub changes_heading: &'static str,
    pub no_changes: &'static str,
    pub changes_base: &'static str,
    pub changes_saved: &'static str,
    pub conflict: &'static str,
    pub added: &'static str,
    pub modified: &'static str,
    pub deleted: &'static str,
    pub nav_apps: &'static str,
    pub no_apps: &'static str,
    pub installed: &'static str,
    pub staged: &'static str,
    pub app_error: &'static str,
    pub app_versions: &'static str,
    pub context: &'static str,
    pub digest: &'static str,
    pub size: &'static str,
    pub rollback_of: &'static str,
    pub confirm_app_rollback: &'static str,
}

pub static EN: Texts = Texts {
    title: "Dure console",
    login_heading: "Log in",
    token_label: "Token",
    token_hint: "The admin token is in the controller's data directory (admin.token).",
    login_button: "Log in",
    login_refused: "the token is not valid for this controller",
    logout: "Log out",
    role: "Role",
    role_cannot: "This token's role cannot make changes here; they need a token with the role",
    language: "Language",
    nav_clusters: "Clusters",
    clusters_heading: "Clusters",
    select: "Select",
    select_all: "Select all",
    name: "Name",
    status: "Status",
    members: "Members",
    ready_of_total: "ready / total",
    total: "Total",
    no_clusters: "No clusters yet: create one with `dure cluster create`.",
    start: "Start",
    stop: "Stop",
    kill: "Immediate stop",
    delete: "Delete",
    cancel: "Cancel",
    confirm: "Confirm",
    nothing_selected: "select at least one cluster first",
    confirm_kill: "Immediate stop kills these servers at once, without a graceful stop:",
    confirm_delete: "These clusters will be deleted (their servers are kept):",
    no_members: "(no members)",
    legend: "Legend",
    green: "every member ready",
    yellow: "some members running, not all ready",
    red: "no member running",
    gray: "no member reporting",
    live: "Live",
    csrf_refused: "the form's CSRF token is missing or wrong: reload the page and try again",
    restart: "Rolling restart",
    nav_nodes: "Nodes",
    nav_servers: "Servers",
    nav_events: "Events",
    nav_history: "History",
    nav_balancers: "Balancers",
    mode: "Mode",
    agent_version: "Agent version",
    since: "Since",
    servers_count: "Servers",
    no_nodes: "No nodes yet: start an agent (`dure agent`).",
    restarts: "Restarts",
    restart_needed: "restart needed",
    no_servers: "No servers yet: define one with `dure server create`.",
    last_error: "Last error",
    log_tail: "Log (last lines)",
    subject_filter: "Subject starts with",
    filter: "Filter",
    time: "Time",
    actor: "Actor",
    kind: "Kind",
    subject: "Subject",
    message: "Message",
    no_events: "No events.",
    version: "Version",
    rollback_to: "Roll back to version",
    confirm_rollback: "The configuration becomes what it was at that version again, as a new version; agents follow it.",
    no_balancers: "No balancer instance is reporting.",
    instances: "instances",
    requests: "requests",
    share: "Share",
    errors: "Errors",
    in_flight: "In flight",
    weight: "Weight",
    operations: "Operations",
    no_operations: "No operations yet.",
    nav_changes: "Changes",
    create: "Create",
    wizard_title: "New cluster",
    wizard_name: "Name",
    wizard_members: "Members",
    wizard_summary: "Summary",
    next: "Next",
    back: "Back",
    finish: "Finish",
    name_rule: "1-63 letters, digits, `-` and `_`, starting with a letter or digit",
    name_free: "the name is free",
    at_least_one_member: "choose at least one member",
    no_free_servers: "Every server is in a cluster already: define one with `dure server create`.",
    server: "Server",
    node: "Node",
    address: "Address",
    ports: "Ports",
    cluster_staged: "Staged in your change set, not saved yet:",
    cluster_saved: "Saved:",
    review: "Review",
    save: "Save",
    save_message: "Message",
    discard: "Discard",
    discarded: "the change set was discarded",
    changes_heading: "Change review",
    no_changes: "Nothing is staged: your change set is empty.",
    changes_base: "Based on version",
    changes_saved: "saved version now",
    conflict: "A save since changed these documents too: discard the change set and stage the edits again.",
    added: "added",
    modified: "modified",
    deleted: "deleted",
    nav_apps: "Applications",
    no_apps: "No application is deployed to this cluster: deploy one with `dure app deploy`.",
    installed: "Installed",
    staged: "Staged",
    app_error: "Error",
    app_versions: "Versions",
    context: "Context",
    digest: "Digest",
    size: "Size",
    rollback_of: "rollback to",
    confirm_app_rollback: "That version's artifact is deployed again as a new version, batch by batch through the balancers' drain; a member that fails puts its batch back on the version it has now.",
};

pub static KO: Texts = Texts {
    title: "두레 콘솔",
    login_heading: "로그인",
    token_label: "토큰",
    token_hint: "관리자 토큰은 컨트롤러 데이터 디렉터리의 admin.token 파일에 있습니다.",
    login_button: "로그인",
    login_refused: "이 컨트롤러에서 유효하지 않은 토큰입니다",
    logout: "로그아웃",
    role: "역할",
    role_cannot: "이 토큰의 역할로는 여기서 변경할 수 없습니다. 필요한 토큰 역할:",
    language: "언어",
    nav_clusters: "클러스터",
    clusters_heading: "클러스터",
    select: "선택",
    select_all: "모두 선택",
    name: "이름",
    status: "상태",
    members: "멤버",
    ready_of_total: "준비 / 전체",
    total: "합계",
    no_clusters: "클러스터가 없습니다: `dure cluster create`로 만드십시오.",
    start: "시작",
    stop: "중지",
    kill: "즉시 중지",
    delete: "삭제",
    cancel: "취소",
    confirm: "확인",
    nothing_selected: "먼저 클러스터를 하나 이상 선택하십시오",
    confirm_kill: "즉시 중지는 다음 서버를 정상 종료 없이 바로 종료합니다:",
    confirm_delete: "다음 클러스터가 삭제됩니다 (서버는 유지됩니다):",
    no_members: "(멤버 없음)",
    legend: "범례",
    green: "모든 멤버 준비됨",
    yellow: "일부 멤버 실행 중, 모두 준비되지는 않음",
    red: "실행 중인 멤버 없음",
    gray: "보고하는 멤버 없음",
    live: "실시간",
    csrf_refused: "양식의 CSRF 토큰이 없거나 틀립니다: 페이지를 새로 고친 뒤 다시 시도하십시오",
    restart: "순차 재시작",
    nav_nodes: "노드",
    nav_servers: "서버",
    nav_events: "이벤트",
    nav_history: "이력",
    nav_balancers: "밸런서",
    mode: "모드",
    agent_version: "에이전트 버전",
    since: "시각",
    servers_count: "서버 수",
    no_nodes: "노드가 없습니다: 에이전트(`dure agent`)를 시작하십시오.",
    restarts: "재시작",
    restart_needed: "재시작 필요",
    no_servers: "서버가 없습니다: `dure server create`로 정의하십시오.",
    last_error: "마지막 오류",
    log_tail: "로그 (마지막 줄)",
    subject_filter: "대상 접두어",
    filter: "거르기",
    time: "시각",
    actor: "수행자",
    kind: "종류",
    subject: "대상",
    message: "메시지",
    no_events: "이벤트가 없습니다.",
    version: "버전",
    rollback_to: "다음 버전으로 되돌리기:",
    confirm_rollback:
        "구성이 그 버전의 내용으로 새 버전이 되어 되돌아가며, 에이전트가 이를 따릅니다.",
    no_balancers: "보고하는 밸런서 인스턴스가 없습니다.",
    instances: "인스턴스",
    requests: "요청",
    share: "비율",
    errors: "오류",
    in_flight: "처리 중",
    weight: "가중치",
    operations: "작업",
    no_operations: "작업이 없습니다.",
    nav_changes: "변경 사항",
    create: "만들기",
    wizard_title: "새 클러스터",
    wizard_name: "이름",
    wizard_members: "멤버",
    wizard_summary: "요약",
    next: "다음",
    back: "이전",
    finish: "완료",
    name_rule: "1-63자의 영문자, 숫자, `-`, `_` (영문자나 숫자로 시작)",
    name_free: "사용할 수 있는 이름입니다",
    at_least_one_member: "멤버를 하나 이상 고르십시오",
    no_free_servers:
        "모든 서버가 이미 클러스터에 속해 있습니다: `dure server create`로 서버를 정의하십시오.",
    server: "서버",
    node: "노드",
    address: "주소",
    ports: "포트",
    cluster_staged: "변경 세트에 준비되었으며 아직 저장되지 않았습니다:",
    cluster_saved: "저장되었습니다:",
    review: "검토",
    save: "저장",
    save_message: "메시지",
    discard: "폐기",
    discarded: "변경 세트를 폐기했습니다",
    changes_heading: "변경 검토",
    no_changes: "준비된 변경이 없습니다: 변경 세트가 비어 있습니다.",
    changes_base: "기준 버전",
    changes_saved: "현재 저장된 버전",
    conflict: "이후의 저장이 다음 문서도 바꾸었습니다: 변경 세트를 폐기하고 다시 준비하십시오.",
    added: "추가",
    modified: "수정",
    deleted: "삭제",
    nav_apps: "애플리케이션",
    no_apps: "이 클러스터에 배포된 애플리케이션이 없습니다: `dure app deploy`로 배포하십시오.",
    installed: "설치됨",
    staged: "준비됨",
    app_error: "오류",
    app_versions: "버전",
    context: "컨텍스트",
    digest: "다이제스트",
    size: "크기",
    rollback_of: "되돌린 버전",
    confirm_app_rollback: "그 버전의 아티팩트가 새 버전으로 다시 배포되며, 밸런서의 드레인을 거쳐 배치별로 진행됩니다. 실패한 멤버가 있으면 그 배치는 지금의 버전으로 되돌아갑니다.",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_best_language_spoken() {
        assert_eq!(from_accept_language(""), Lang::En);
        assert_eq!(from_accept_language("ko-KR,ko;q=0.9,en;q=0.8"), Lang::Ko);
        assert_eq!(from_accept_language("fr, en;q=0.5, ko;q=0.7"), Lang::Ko);
        assert_eq!(from_accept_language("de, fr"), Lang::En);
        assert_eq!(from_accept_language("ko;q=0, en"), Lang::En);
    }

    #[test]
    fn the_switch_cookie_wins_over_accept_language() {
        let mut headers = HeaderMap::new();
        headers.insert("accept-language", "en".parse().unwrap());
        headers.insert("cookie", "dure_lang=ko".parse().unwrap());
        assert_eq!(Lang::of_request(&headers), Lang::Ko);
    }
}
