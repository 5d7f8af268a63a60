//! Console sessions: a random id in an HttpOnly, SameSite=Strict cookie
//! that maps, on the controller only, to the token the operator logged in
//! with, a CSRF token and an expiry. Sessions live in memory: a controller
//! restart logs everyone out, which is the safe way round.
//!
//! A session holds the token itself, and every action of the console is an
//! API request carrying it, so the API decides what the session may do: a
//! viewer or operator token's role is enforced on each request, and a
//! refusal is shown in the API's words. `Session::role` is the role the API
//! named for the token at login (`/v1/whoami`), so pages leave out what the
//! role may not do; it only hides controls, it never grants anything.

use dure_core::access::Role;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "dure_session";
/// Name of the cookie that carries the login form's CSRF token before
/// there is a session (double submit: the form field must match it).
pub const LOGIN_CSRF_COOKIE: &str = "dure_login_csrf";
/// Name of the form field (and `X-CSRF-Token` header) with the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// How long a session lasts after login, however it is used.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// How long a session may go unused before it ends.
pub const SESSION_IDLE: Duration = Duration::from_secs(3600);
/// The most sessions kept at once; the oldest goes first beyond that, so
/// logins in a loop cannot grow memory without bound.
const MAX_SESSIONS: usize = 10_000;

/// One logged-in operator.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    /// The bearer token every API request of this session carries.
    pub token: String,
    /// The value every form of this session must send back.
    pub csrf: String,
    /// The role the API named for the token at login; pages show only the
    /// controls it allows (the API still enforces it on every request).
    pub role: Role,
    /// A message for the next page shown, such as the result of an action
    /// done without JavaScript.
    pub flash: Option<String>,
    created: Instant,
    last_used: Instant,
}

/// Every live session, by id.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Starts a session for `token`, returning it.
    pub fn create(
        &self,
        token: String,
        role: Role,
        now: Instant,
    ) -> Result<Session, getrandom::Error> {
        let session = Session {
            id: random_hex()?,
            token,
            csrf: random_hex()?,
            role,
            flash: None,
            created: now,
            last_used: now,
        };
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.is_live(now));
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .values()
                .min_by_key(|s| s.last_used)
                .map(|s| s.id.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(session.id.clone(), session.clone());
        Ok(session)
    }

    /// The live session with `id`, marked used now; an expired one is
    /// forgotten.
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let mut sessions = self.lock();
        let session = sessions.get_mut(id)?;
        if !session.is_live(now) {
            sessions.remove(id);
            return None;
        }
        session.last_used = now;
        Some(session.clone())
    }

    /// Takes the session's flash message, if any.
    pub fn take_flash(&self, id: &str) -> Option<String> {
        self.lock().get_mut(id).and_then(|s| s.flash.take())
    }

    /// Leaves a message for the session's next page.
    pub fn set_flash(&self, id: &str, message: String) {
        if let Some(session) = self.lock().get_mut(id) {
            session.flash = Some(message);
        }
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock leaves the map whole (every
        // change is one map operation), so a poisoned lock is still usable.
        self.by_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Session {
    fn is_live(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.created) < SESSION_LIFETIME
            && now.saturating_duration_since(self.last_used) < SESSION_IDLE
    }
}

/// 32 random bytes in hex: session ids and CSRF tokens.
pub fn random_hex() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// A `Set-Cookie` value for a console cookie: HttpOnly, SameSite=Strict,
/// scoped to the console, `Secure` when the console is served over TLS.
pub fn cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{name}={value}; Path=/ui; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        max_age.as_secs()
    )
}

/// A `Set-Cookie` value that removes a console cookie.
pub fn expired_cookie(name: &str, secure: bool) -> String {
    cookie(name, "", Duration::ZERO, secure)
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie_value<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_ends_when_idle_or_too_old() {
        let sessions = Sessions::default();
        let start = Instant::now();
        let s = sessions.create("t".into(), Role::Viewer, start).unwrap();
        assert_eq!(s.id.len(), 64);
        assert_ne!(s.id, s.csrf);
        assert!(sessions.get(&s.id, start + SESSION_IDLE / 2).is_some());
        assert!(
            sessions.get(&s.id, start + SESSION_IDLE).is_some(),
            "use moved idle on"
        );
        assert!(sessions.get(&s.id, start + SESSION_IDLE * 3).is_none());
        assert!(
            sessions.get(&s.id, start).is_none(),
            "forgotten once expired"
        );

        let old = sessions.create("t".into(), Role::Viewer, start).unwrap();
        let mut at = start;
        while at < start + SESSION_LIFETIME - SESSION_IDLE / 2 {
            at += SESSION_IDLE / 2;
            assert!(sessions.get(&old.id, at).is_some());
        }
        assert!(sessions.get(&old.id, start + SESSION_LIFETIME).is_none());
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_on_tls() {
        let plain = cookie(SESSION_COOKIE, "abc", SESSION_LIFETIME, false);
        assert_eq!(
            plain,
            "dure_session=abc; Path=/ui; Max-Age=28800; HttpOnly; SameSite=Strict"
        );
        assert!(cookie(SESSION_COOKIE, "abc", SESSION_LIFETIME, true).ends_with("; Secure"));
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("cookie", "a=1; dure_session=xyz".parse().unwrap());
        assert_eq!(cookie_value(&headers, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie_value(&headers, "b"), None);
    }
}
