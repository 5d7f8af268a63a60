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
}

pub static EN: Texts = Texts {
    title: "Dure console",
    login_heading: "Log in",
    token_label: "Token",
    token_hint: "The admin token is in the controller's data directory (admin.token).",
    login_button: "Log in",
    login_refused: "the token is not valid for this controller",
    logout: "Log out",
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
};

pub static KO: Texts = Texts {
    title: "두레 콘솔",
    login_heading: "로그인",
    token_label: "토큰",
    token_hint: "관리자 토큰은 컨트롤러 데이터 디렉터리의 admin.token 파일에 있습니다.",
    login_button: "로그인",
    login_refused: "이 컨트롤러에서 유효하지 않은 토큰입니다",
    logout: "로그아웃",
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
