//! Social sign-in pages (promise F5): the consent page that lists what a provider will give,
//! the redirect to the provider, its callback, the registration form of a new provider account,
//! and the member's linked providers with unlink.

use crate::accounts::Registration;
use crate::domain::InvalidField;
use crate::error::Error;
use crate::social::Finished;
use crate::web::AppState;
use crate::web::auth::{ClientOrigin, Viewer, check_form, session_cookie};
use crate::web::error::PageResult;
use crate::web::forms::Form;
use crate::web::pages::{Layout, date, page, page_with_status, see_other};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;

#[derive(Template)]
#[template(path = "social_consent.html")]
struct ConsentPage {
    layout: Layout,
    provider_id: String,
    provider_name: String,
    fields: Vec<String>,
    text: String,
    linking: bool,
}

/// `GET /auth/{provider}`: what the provider will give, before anything is asked of it.
pub async fn consent_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(provider_id): Path<String>,
) -> PageResult {
    let provider = state.social.provider(&provider_id)?;
    page(&ConsentPage {
        layout: Layout::new(&state, &viewer, format!("Sign in with {}", provider.name)),
        provider_id: provider.id.clone(),
        provider_name: provider.name.clone(),
        fields: provider.fields.clone(),
        text: provider.consent_text(state.social.site_name()),
        linking: viewer.0.is_some(),
    })
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /auth/{provider}`: the member authorized; off to the provider. A signed-in member
/// links the provider to their account; a visitor signs in (or registers).
pub async fn start(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(provider_id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let policy = state.policy.current().await?;
    let linking = viewer.0.as_ref().map(|s| s.user.user_id);
    let url = state
        .social
        .begin(&provider_id, linking, &policy.policy)
        .await?;
    Ok(see_other(&url))
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    error: String,
}

/// `GET /auth/{provider}/callback`: the provider's answer.
pub async fn callback(
    State(state): State<AppState>,
    viewer: Viewer,
    ClientOrigin(origin): ClientOrigin,
    Path(provider_id): Path<String>,
    Query(query): Query<CallbackQuery>,
) -> PageResult {
    if !query.error.is_empty() {
        return Err(Error::SocialSignIn("the provider did not authorize the sign-in").into());
    }
    match state
        .social
        .finish(&provider_id, &query.state, &query.code, &origin)
        .await?
    {
        Finished::SignedIn(session) => {
            if let Some(old) = &viewer.0 {
                state.accounts.sign_out(&old.token).await?;
            }
            let cookie = session_cookie(
                &session.token,
                session.max_age_seconds,
                state.config.secure_cookies(),
            );
            Ok((
                StatusCode::SEE_OTHER,
                [(LOCATION, "/".to_string()), (SET_COOKIE, cookie)],
            )
                .into_response())
        }
        Finished::Linked => Ok(see_other("/account/social")),
        Finished::NeedsAccount(token) => Ok(see_other(&format!("/auth/complete/{token}"))),
    }
}

#[derive(Template)]
#[template(path = "social_complete.html")]
struct CompletePage {
    layout: Layout,
    action: String,
    provider_name: String,
    username: String,
    email: String,
    birth_year: String,
    country: String,
    us_state: String,
    news: bool,
    ask_birth_date: bool,
    ask_parent: bool,
    news_text: &'static str,
    countries: &'static [(&'static str, &'static str)],
    us_states: &'static [(&'static str, &'static str)],
    errors: Vec<InvalidField>,
}

/// `GET /auth/complete/{token}`: a provider account no member has yet; the age rules and a
/// username are still needed.
pub async fn complete_form(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(token): Path<String>,
) -> PageResult {
    let pending = state.social.pending(&token).await?;
    page(&CompletePage {
        layout: Layout::new(&state, &viewer, "Create your account"),
        action: format!("/auth/complete/{token}"),
        provider_name: pending.provider_name,
        username: String::new(),
        email: pending.email,
        birth_year: String::new(),
        country: String::new(),
        us_state: String::new(),
        news: false,
        ask_birth_date: false,
        ask_parent: false,
        news_text: crate::news::NEWS_OPT_IN_TEXT,
        countries: crate::web::people::COUNTRIES,
        us_states: crate::web::people::US_STATES,
        errors: vec![],
    })
}

#[derive(Deserialize)]
pub struct CompleteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    birth_year: String,
    #[serde(default)]
    country: String,
    #[serde(default)]
    us_state: String,
    #[serde(default)]
    birth_date: String,
    #[serde(default)]
    parent_email: String,
    #[serde(default)]
    news: Option<String>,
}

pub async fn complete(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    ClientOrigin(origin): ClientOrigin,
    Path(token): Path<String>,
    Form(form): Form<CompleteForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let pending = state.social.pending(&token).await?;
    let policy = state.policy.current().await?;
    let result = state
        .accounts
        .register_social(
            &Registration {
                username: &form.username,
                email: &form.email,
                password: "",
                birth_year: &form.birth_year,
                country: &form.country,
                us_state: &form.us_state,
                birth_date: &form.birth_date,
                parent_email: &form.parent_email,
                news: form.news.is_some(),
                client_ip: origin.ip.expose(),
            },
            &policy.policy,
            &token,
            &origin,
        )
        .await;
    let errors = match result {
        Ok((_, session)) => {
            state.mailer.wake();
            let cookie = session_cookie(
                &session.token,
                session.max_age_seconds,
                state.config.secure_cookies(),
            );
            return Ok((
                StatusCode::SEE_OTHER,
                [(LOCATION, "/".to_string()), (SET_COOKIE, cookie)],
            )
                .into_response());
        }
        Err(Error::BelowMinimumAge { minimum_age }) => vec![InvalidField::new(
            "birth_year",
            format!("members must be at least {minimum_age} years old"),
        )],
        Err(Error::Invalid(errors)) => errors,
        Err(Error::Conflict { field }) => vec![InvalidField::new(field, "is already taken")],
        Err(other) => return Err(other.into()),
    };
    let asks = |field: &str| errors.iter().any(|e| e.field == field);
    let below_minimum = errors.iter().any(|e| e.message.contains("at least"));
    page_with_status(
        StatusCode::UNPROCESSABLE_ENTITY,
        &CompletePage {
            layout: Layout::new(&state, &viewer, "Create your account"),
            action: format!("/auth/complete/{token}"),
            provider_name: pending.provider_name,
            ask_birth_date: asks("birth_date"),
            ask_parent: asks("parent_email"),
            // Nothing typed is shown back to someone below the minimum age.
            username: if below_minimum {
                String::new()
            } else {
                form.username
            },
            email: pending.email,
            birth_year: String::new(),
            country: if below_minimum {
                String::new()
            } else {
                form.country
            },
            us_state: String::new(),
            news: false,
            news_text: crate::news::NEWS_OPT_IN_TEXT,
            countries: crate::web::people::COUNTRIES,
            us_states: crate::web::people::US_STATES,
            errors,
        },
    )
}

struct LinkLine {
    provider_id: String,
    provider_name: String,
    fields: String,
    authorized: String,
    linked: String,
    last_sign_in: String,
}

#[derive(Template)]
#[template(path = "account/social.html")]
struct LinksPage {
    layout: Layout,
    links: Vec<LinkLine>,
    unlinked: Vec<(String, String)>,
}

/// `GET /account/social`: the providers linked to the account, what each gave and when.
pub async fn links(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    let signed_in = viewer.require()?;
    let rows = state.store.social_links_of(signed_in.user.user_id).await?;
    let name_of = |id: &str| {
        state
            .social
            .provider(id)
            .map(|p| p.name.clone())
            .unwrap_or_else(|_| id.to_string())
    };
    let unlinked = state
        .social
        .providers()
        .iter()
        .filter(|p| rows.iter().all(|r| r.provider != p.id))
        .map(|p| (p.id.clone(), p.name.clone()))
        .collect();
    let links = rows
        .into_iter()
        .map(|row| LinkLine {
            provider_name: name_of(&row.provider),
            provider_id: row.provider,
            fields: row.fields_received.replace(',', ", "),
            authorized: date(row.authorized_at),
            linked: date(row.linked_at),
            last_sign_in: row.last_sign_in_at.map(date).unwrap_or_default(),
        })
        .collect();
    page(&LinksPage {
        layout: Layout::new(&state, &viewer, "Linked sign-in providers"),
        links,
        unlinked,
    })
}

pub async fn unlink(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(provider_id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    let signed_in = viewer.require()?;
    check_form(&state, &viewer, &headers, &form.csrf)?;
    state
        .social
        .unlink(signed_in.user.user_id, &provider_id)
        .await?;
    Ok(see_other("/account/social"))
}
