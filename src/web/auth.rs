//! Who is asking: the session cookie or API bearer token, the client's address, and the
//! anti-forgery tokens every form carries.
//!
//! Pages use a cookie (`HttpOnly`, `SameSite=Lax`, `Secure` under TLS) whose value is a random
//! token; the API uses the same token as `Authorization: Bearer`. Forms of signed-in members
//! carry their session's CSRF token; forms of visitors (sign-in, registration) carry a token
//! signed by the server and dated, so that no cookie is needed before a visitor signs in.

use crate::accounts::{Origin, token_digest};
use crate::error::Error;
use crate::forum::Actor;
use crate::store::SessionUser;
use crate::web::AppState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, USER_AGENT};
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::net::SocketAddr;
use subtle::ConstantTimeEq;

/// The session cookie's name over plain HTTP (development, or a proxy that does not say TLS).
pub const SESSION_COOKIE: &str = "covenant_session";
/// Its name when served over TLS: browsers accept a `__Host-` cookie only with `Secure`,
/// `Path=/` and no `Domain`, so no subdomain or plain-HTTP page can set or shadow it (ASVS 3.4.4).
pub const SECURE_SESSION_COOKIE: &str = "__Host-covenant_session";
const SESSION_TOUCH_SECONDS: i64 = 300;
const VISITOR_FORM_SECONDS: i64 = 4 * 3600;

/// A signed-in member and how they proved it.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: SessionUser,
    pub token: String,
    pub by_bearer: bool,
}

impl SignedIn {
    pub fn actor(&self) -> Actor {
        Actor::from(&self.user)
    }
}

/// The member behind the request, if any.
#[derive(Debug, Clone)]
pub struct Viewer(pub Option<SignedIn>);

impl Viewer {
    pub fn require(&self) -> Result<&SignedIn, Error> {
        self.0.as_ref().ok_or(Error::Unauthenticated)
    }
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    bearer_token(headers.get(AUTHORIZATION)?)
}

/// The token an Authorization header's value carries, if it is a bearer token.
pub(crate) fn bearer_token(value: &axum::http::HeaderValue) -> Option<&str> {
    value.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// The token a request signs in with, and whether it came as a bearer token: the API takes
/// bearer tokens only (a browser attaches cookies to cross-site requests on its own, bearer
/// tokens it never sends unasked, so API calls need no CSRF token); pages take either. `None`:
/// the request is anonymous, and no lookup is needed to say so.
pub(crate) fn credential<'a>(
    headers: &'a HeaderMap,
    path: &str,
    secure_cookies: bool,
) -> Option<(&'a str, bool)> {
    let (token, by_bearer) = match bearer(headers) {
        Some(token) => (token, true),
        None if path.starts_with("/api/") => return None,
        None => (
            crate::web::consent::cookie_value(headers, session_cookie_name(secure_cookies))?,
            false,
        ),
    };
    usable_token(token).then_some((token, by_bearer))
}

/// Whether a token is worth looking up: sessions' tokens are never empty nor this long.
pub(crate) fn usable_token(token: &str) -> bool {
    !token.is_empty() && token.len() < 128
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = crate::web::error::PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(viewer) = parts.extensions.get::<Viewer>() {
            return Ok(viewer.clone());
        }
        // Nested routers see their own part of the path; the original URI says where we are.
        let path = match parts.extensions.get::<axum::extract::OriginalUri>() {
            Some(original) => original.0.path(),
            None => parts.uri.path(),
        };
        let viewer = match credential(&parts.headers, path, state.config.secure_cookies()) {
            Some((token, by_bearer)) => {
                let digest = token_digest(token);
                let now = crate::now();
                let idle = state.config.session.idle_timeout_minutes * 60;
                // A session left idle longer than the idle timeout signs in no more (ASVS
                // 3.3.2); it is not touched, so it stays idle until it expires.
                let user = state
                    .store
                    .session_user(&digest, now)
                    .await?
                    .filter(|user| idle == 0 || now - user.last_seen_at <= idle);
                if let Some(user) = &user
                    && now - user.last_seen_at > SESSION_TOUCH_SECONDS
                {
                    let expires = now + state.config.session.max_age_days * 86_400;
                    state
                        .store
                        .touch_session(&digest, user.user_id, now, expires)
                        .await?;
                }
                Viewer(user.map(|user| SignedIn {
                    user,
                    token: token.to_string(),
                    by_bearer,
                }))
            }
            _ => Viewer(None),
        };
        parts.extensions.insert(viewer.clone());
        Ok(viewer)
    }
}

/// The client's address and user agent, recorded with sign-ins and posts.
pub struct ClientOrigin(pub Origin);

impl FromRequestParts<AppState> for ClientOrigin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let forwarded = state
            .config
            .trust_forwarded_for
            .then(|| parts.headers.get("x-forwarded-for"))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_string());
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip().to_string());
        let ip = forwarded.or(peer).unwrap_or_default();
        let user_agent = parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        Ok(Self(Origin::new(ip, user_agent)))
    }
}

/// The session cookie's name: `__Host-` prefixed when cookies are `Secure` (served over TLS).
pub fn session_cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

/// The `Set-Cookie` value that opens a session.
pub fn session_cookie(token: &str, max_age_seconds: i64, secure: bool) -> String {
    let name = session_cookie_name(secure);
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={token}; Path=/; Max-Age={max_age_seconds}; HttpOnly; SameSite=Lax{secure}")
}

/// The `Clear-Site-Data` value sent with a sign-out: the browser drops this site's cookies and
/// storage, so nothing of the session stays on a shared computer (ASVS 8.2.3).
pub const CLEAR_SITE_DATA: &str = "\"cookies\", \"storage\"";

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_session_cookie(secure: bool) -> String {
    session_cookie("", 0, secure)
}

type HmacSha256 = Hmac<Sha256>;

fn visitor_mac(key: &[u8], issued_at: i64) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"visitor-form:");
    mac.update(&issued_at.to_be_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// A dated, signed token for the forms of visitors who have no session.
pub fn visitor_form_token(key: &[u8], now: i64) -> String {
    let mut bytes = now.to_be_bytes().to_vec();
    bytes.extend(visitor_mac(key, now));
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The token a page's forms must carry for this viewer.
pub fn form_token(state: &AppState, viewer: &Viewer) -> String {
    match &viewer.0 {
        Some(signed_in) => signed_in.user.csrf_token.clone(),
        None => visitor_form_token(&state.form_key, crate::now()),
    }
}

/// Checks a submitted form's token against the viewer, and the request's `Origin` header
/// against the forum's own address when the browser sent one.
pub fn check_form(
    state: &AppState,
    viewer: &Viewer,
    headers: &HeaderMap,
    submitted: &str,
) -> Result<(), Error> {
    if let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok())
        && origin != "null"
    {
        let host = headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let same_host = origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest.trim_end_matches('/') == host);
        if !same_host && origin.trim_end_matches('/') != state.config.base_url() {
            return Err(Error::Csrf);
        }
    }
    let valid = match &viewer.0 {
        Some(signed_in) => bool::from(
            signed_in
                .user
                .csrf_token
                .as_bytes()
                .ct_eq(submitted.as_bytes()),
        ),
        None => visitor_token_is_valid(&state.form_key, submitted, crate::now()),
    };
    if valid { Ok(()) } else { Err(Error::Csrf) }
}

fn visitor_token_is_valid(key: &[u8], token: &str, now: i64) -> bool {
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(token) else {
        return false;
    };
    if bytes.len() != 8 + 32 {
        return false;
    }
    let issued_at = i64::from_be_bytes(bytes[..8].try_into().expect("eight bytes"));
    let fresh = (0..=VISITOR_FORM_SECONDS).contains(&(now - issued_at));
    fresh && bool::from(visitor_mac(key, issued_at).ct_eq(&bytes[8..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visitor_tokens_expire_and_cannot_be_forged() {
        let key = [7u8; 32];
        let token = visitor_form_token(&key, 1_000_000);
        assert!(visitor_token_is_valid(&key, &token, 1_000_100));
        assert!(!visitor_token_is_valid(
            &key,
            &token,
            1_000_000 + VISITOR_FORM_SECONDS + 1
        ));
        assert!(!visitor_token_is_valid(&[8u8; 32], &token, 1_000_100));
        assert!(!visitor_token_is_valid(&key, "garbage", 1_000_100));
        let mut forged = URL_SAFE_NO_PAD.decode(&token).unwrap();
        forged[0] ^= 1;
        assert!(!visitor_token_is_valid(
            &key,
            &URL_SAFE_NO_PAD.encode(forged),
            1_000_100
        ));
    }

    #[test]
    fn session_cookies_are_http_only_and_lax() {
        let cookie = session_cookie("abc", 60, true);
        assert!(
            cookie.contains("HttpOnly")
                && cookie.contains("SameSite=Lax")
                && cookie.contains("Secure")
        );
        assert!(!session_cookie("abc", 60, false).contains("Secure"));
    }

    /// Over TLS the cookie is `__Host-` prefixed, with the `Secure`, `Path=/` and no `Domain`
    /// that the prefix demands; over plain HTTP, where a browser would refuse a `__Host-`
    /// cookie without `Secure`, it keeps its plain name.
    /// Proves: A4
    #[test]
    fn the_session_cookie_is_host_prefixed_over_tls_only() {
        let cookie = session_cookie("abc", 60, true);
        assert!(
            cookie.starts_with("__Host-covenant_session=abc;"),
            "{cookie}"
        );
        assert!(cookie.contains("; Secure") && cookie.contains("; Path=/;"));
        assert!(!cookie.contains("Domain"));
        let plain = session_cookie("abc", 60, false);
        assert!(plain.starts_with("covenant_session=abc;"), "{plain}");
        assert!(clear_session_cookie(true).starts_with("__Host-covenant_session=;"));
    }
}
