//! The colour theme a visitor or member picks (light or dark). It is remembered in a
//! preferences cookie, set and read only while the request's consent decision allows the
//! preferences category (promise C1); once that is withdrawn the cookie is ignored and cleared.

use crate::web::AppState;
use crate::web::auth::{Viewer, check_form};
use crate::web::consent::{cookie_value, current, local_path};
use crate::web::error::PageResult;
use crate::web::forms::Form;
use axum::extract::State;
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use covenant_core::policy::CookieCategory;
use serde::Deserialize;

pub const THEME_COOKIE: &str = "covenant_theme";
/// Thirteen months, as long as the consent choice that allows it.
const THEME_COOKIE_SECONDS: i64 = 395 * 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Theme {
    Light,
    Dark,
}

impl Theme {
    pub fn as_str(self) -> &'static str {
        match self {
            Theme::Light => "light",
            Theme::Dark => "dark",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "light" => Some(Theme::Light),
            "dark" => Some(Theme::Dark),
            _ => None,
        }
    }
}

/// The theme the browser's cookie names, whatever consent says (the caller decides).
pub fn cookie_theme(headers: &HeaderMap) -> Option<Theme> {
    cookie_value(headers, THEME_COOKIE).and_then(Theme::parse)
}

fn theme_cookie(value: &str, max_age: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{THEME_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

/// The header that removes the theme cookie from the browser.
pub fn clear_theme_cookie(secure: bool) -> String {
    theme_cookie("", 0, secure)
}

#[derive(Deserialize)]
pub struct ThemeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    theme: String,
    #[serde(default)]
    return_to: String,
}

/// `POST /preferences/theme`: remembers the theme when preferences are allowed; otherwise sets
/// nothing and sends the person to Cookie Settings, which says why.
pub async fn choose_theme(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<ThemeForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let Some(theme) = Theme::parse(&form.theme) else {
        return Err(
            crate::error::Error::BadRequest("choose the light or the dark theme".into()).into(),
        );
    };
    if !current().context.allows(CookieCategory::Preferences) {
        return Ok((
            StatusCode::SEE_OTHER,
            [(LOCATION, "/cookie-settings?theme=needs-preferences")],
        )
            .into_response());
    }
    let cookie = theme_cookie(
        theme.as_str(),
        THEME_COOKIE_SECONDS,
        state.config.secure_cookies(),
    );
    let back: Response = (
        StatusCode::SEE_OTHER,
        [
            (LOCATION, local_path(&form.return_to)),
            (SET_COOKIE, cookie),
        ],
    )
        .into_response();
    Ok(back)
}
