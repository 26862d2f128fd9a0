//! The member's own security pages: the checkup (`/account/security`: sessions and devices,
//! recent sign-ins, 2-step verification, password age) and 2-step enrolment
//! (`/account/two-factor`). Every form is checked against forgery; a member only ever sees and
//! ends their own sessions.

use crate::accounts::session_handle;
use crate::domain::InvalidField;
use crate::error::Error;
use crate::web::AppState;
use crate::web::auth::{ClientOrigin, Viewer, check_form};
use crate::web::error::PageResult;
use crate::web::forms::Form;
use crate::web::pages::MessagePage;
use crate::web::pages::{Layout, date, page, page_with_status, see_other};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

struct SessionLine {
    handle: String,
    device: String,
    ip: String,
    started: String,
    last_seen: String,
    current: bool,
}

struct SignInLine {
    at: String,
    device: String,
    ip: String,
}

#[derive(Template)]
#[template(path = "account/security.html")]
struct SecurityPage {
    layout: Layout,
    sessions: Vec<SessionLine>,
    sign_ins: Vec<SignInLine>,
    two_factor: bool,
    recovery_codes_left: i64,
    password_changed: String,
    password_age_days: i64,
    staff_without_two_factor: bool,
    errors: Vec<InvalidField>,
    notice: Option<String>,
    /// The member's address, shown to them alone.
    email: String,
    /// The account has a password (a social-only one has none).
    has_password: bool,
    /// Refusals of the email change form.
    email_errors: Vec<InvalidField>,
}

fn device(user_agent: &str) -> String {
    if user_agent.trim().is_empty() {
        "Unnamed browser or app".into()
    } else {
        user_agent.to_string()
    }
}

async fn security_page(
    state: &AppState,
    viewer: &Viewer,
    errors: Vec<InvalidField>,
    notice: Option<String>,
) -> Result<SecurityPage, Error> {
    let signed_in = viewer.require()?;
    let user_id = signed_in.user.user_id;
    let now = crate::now();
    let current = crate::accounts::token_digest(&signed_in.token);
    let user = state
        .store
        .user_by_id(user_id)
        .await?
        .ok_or(Error::NotFound("member"))?;
    let sessions = state
        .store
        .sessions_of_user(user_id, now)
        .await?
        .into_iter()
        .map(|s| SessionLine {
            handle: session_handle(&s.token_hash),
            current: s.token_hash == current,
            device: device(&s.user_agent),
            ip: s.ip,
            started: date(s.created_at),
            last_seen: date(s.last_seen_at),
        })
        .collect();
    let sign_ins = state
        .store
        .recent_sign_ins(user_id, 10)
        .await?
        .into_iter()
        .map(|s| SignInLine {
            at: date(s.at),
            device: device(&s.user_agent),
            ip: s.ip,
        })
        .collect();
    let changed = user.password_changed_at.unwrap_or(user.created_at);
    let actor = signed_in.actor();
    Ok(SecurityPage {
        layout: Layout::new(state, viewer, "Security checkup"),
        sessions,
        sign_ins,
        two_factor: actor.two_factor,
        recovery_codes_left: state.store.count_unused_recovery_codes(user_id).await?,
        password_changed: date(changed),
        password_age_days: (now - changed).max(0) / 86_400,
        staff_without_two_factor: actor.role.is_staff() && !actor.two_factor,
        errors,
        notice,
        has_password: !user.password_hash.is_empty(),
        email: user.email,
        email_errors: vec![],
    })
}

/// `GET /account/security`.
pub async fn checkup(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    if viewer.0.is_none() {
        return Ok(see_other("/sign-in"));
    }
    page(&security_page(&state, &viewer, vec![], None).await?)
}

#[derive(Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    session: String,
}

/// `POST /account/security/sessions/revoke`: ends one of the member's sessions.
pub async fn revoke_session(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<RevokeForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let signed_in = viewer.require()?;
    state.accounts.require_recent_sign_in(&signed_in.user)?;
    let handle = form.session.trim();
    if handle.len() != 16 || !handle.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::NotFound("session").into());
    }
    state
        .accounts
        .revoke_session(signed_in.user.user_id, handle)
        .await?;
    if handle == session_handle(&crate::accounts::token_digest(&signed_in.token)) {
        return Ok(see_other("/"));
    }
    Ok(see_other("/account/security"))
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// `POST /account/security/sessions/revoke-others`: ends every session but this one.
pub async fn revoke_other_sessions(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<CsrfOnly>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let signed_in = viewer.require()?;
    state.accounts.require_recent_sign_in(&signed_in.user)?;
    state
        .accounts
        .revoke_other_sessions(signed_in.user.user_id, &signed_in.token)
        .await?;
    Ok(see_other("/account/security"))
}

#[derive(Deserialize)]
pub struct ChangePasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    password: String,
}

/// `POST /account/security/password`: a new password; every other session ends.
pub async fn change_password(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<ChangePasswordForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let signed_in = viewer.require()?;
    match state
        .accounts
        .change_password(
            signed_in.user.user_id,
            &signed_in.token,
            &form.current_password,
            &form.password,
        )
        .await
    {
        Ok(()) => {
            state.mailer.wake();
            let notice = "Your password is changed and every other session was ended.";
            page(&security_page(&state, &viewer, vec![], Some(notice.into())).await?)
        }
        Err(Error::Invalid(errors)) => page_with_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &security_page(&state, &viewer, errors, None).await?,
        ),
        Err(other) => Err(other.into()),
    }
}

#[derive(Deserialize)]
pub struct ChangeEmailForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    code: String,
}

/// What the member is told after asking for an email change, whatever the new address is.
const EMAIL_CHANGE_ASKED: &str = "We sent a link to the new address, if it can be used: your \
     address changes when you open it. We told your current address too.";

/// `POST /account/security/email`: asks to change the member's address (a recent sign-in, and
/// the password or a 2-step code again); the link goes to the new address.
pub async fn change_email(
    State(state): State<AppState>,
    viewer: Viewer,
    ClientOrigin(origin): ClientOrigin,
    headers: HeaderMap,
    Form(form): Form<ChangeEmailForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let signed_in = viewer.require()?;
    state.accounts.require_recent_sign_in(&signed_in.user)?;
    match state
        .accounts
        .request_email_change(
            signed_in.user.user_id,
            &form.email,
            &form.current_password,
            &form.code,
            origin.ip.expose(),
        )
        .await
    {
        Ok(()) => {
            state.mailer.wake();
            page(&security_page(&state, &viewer, vec![], Some(EMAIL_CHANGE_ASKED.into())).await?)
        }
        Err(Error::Invalid(errors)) => {
            let mut refused = security_page(&state, &viewer, vec![], None).await?;
            refused.email_errors = errors;
            page_with_status(StatusCode::UNPROCESSABLE_ENTITY, &refused)
        }
        Err(other) => Err(other.into()),
    }
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct EmailChangePage {
    layout: Layout,
    action: String,
    fields: Vec<(&'static str, &'static str, &'static str, &'static str)>,
    button: &'static str,
    errors: Vec<InvalidField>,
}

/// `GET /email-change/{token}`: the button that confirms a new address (a link opened by a
/// mail scanner changes nothing).
pub async fn email_change_form(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(token): Path<String>,
) -> PageResult {
    if !state.accounts.email_change_token_is_valid(&token).await? {
        return Err(Error::InvalidToken.into());
    }
    page(&EmailChangePage {
        layout: Layout::new(&state, &viewer, "Confirm your new email address"),
        action: format!("/email-change/{token}"),
        fields: vec![],
        button: "Use this address for my account",
        errors: vec![],
    })
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /email-change/{token}`: applies the change the link was mailed for.
pub async fn email_change(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(form): Form<TokenForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    state.accounts.confirm_email_change(&token).await?;
    state.mailer.wake();
    page(&MessagePage {
        layout: Layout::new(&state, &viewer, "Email address changed"),
        paragraphs: vec![
            "Your account now uses this address: sign in with it, and account mail comes here."
                .into(),
        ],
        link: Some(("/account/security".into(), "Your security page".into())),
    })
}

#[derive(Template)]
#[template(path = "account/two_factor.html")]
struct TwoFactorPage {
    layout: Layout,
    enabled: bool,
    secret: String,
    uri: String,
    qr_svg: String,
    recovery_codes: Vec<String>,
    errors: Vec<InvalidField>,
}

async fn two_factor_page(
    state: &AppState,
    viewer: &Viewer,
    errors: Vec<InvalidField>,
) -> Result<TwoFactorPage, Error> {
    let signed_in = viewer.require()?;
    let layout = Layout::new(state, viewer, "2-step verification");
    if signed_in.user.two_factor != 0 {
        return Ok(TwoFactorPage {
            layout,
            enabled: true,
            secret: String::new(),
            uri: String::new(),
            qr_svg: String::new(),
            recovery_codes: vec![],
            errors,
        });
    }
    let setup = state
        .accounts
        .two_factor_setup(signed_in.user.user_id, &signed_in.user.username)
        .await?;
    Ok(TwoFactorPage {
        layout,
        enabled: false,
        secret: setup.secret,
        uri: setup.uri,
        qr_svg: setup.qr_svg.unwrap_or_default(),
        recovery_codes: vec![],
        errors,
    })
}

/// `GET /account/two-factor`: the setup key and QR code, or the switch to turn it off.
pub async fn two_factor(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    let Some(signed_in) = &viewer.0 else {
        return Ok(see_other("/sign-in"));
    };
    // The page shows a new secret to enrol: only to a recent sign-in.
    state.accounts.require_recent_sign_in(&signed_in.user)?;
    page(&two_factor_page(&state, &viewer, vec![]).await?)
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

/// `POST /account/two-factor/enable`: confirms the first code; shows the recovery codes once.
pub async fn enable_two_factor(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let signed_in = viewer.require()?;
    state.accounts.require_recent_sign_in(&signed_in.user)?;
    match state
        .accounts
        .enable_two_factor(signed_in.user.user_id, &form.code)
        .await
    {
        Ok(codes) => {
            state.mailer.wake();
            page(&TwoFactorPage {
                layout: Layout::new(&state, &viewer, "2-step verification is on"),
                enabled: true,
                secret: String::new(),
                uri: String::new(),
                qr_svg: String::new(),
                recovery_codes: codes,
                errors: vec![],
            })
        }
        Err(Error::InvalidSecondFactor) => page_with_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &two_factor_page(
                &state,
                &viewer,
                vec![InvalidField::new(
                    "code",
                    Error::InvalidSecondFactor.to_string(),
                )],
            )
            .await?,
        ),
        Err(other) => Err(other.into()),
    }
}

/// `POST /account/two-factor/disable`: needs a current code or a recovery code.
pub async fn disable_two_factor(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let signed_in = viewer.require()?;
    state.accounts.require_recent_sign_in(&signed_in.user)?;
    match state
        .accounts
        .disable_two_factor(signed_in.user.user_id, &form.code)
        .await
    {
        Ok(()) => {
            state.mailer.wake();
            Ok(see_other("/account/security"))
        }
        Err(Error::InvalidSecondFactor) => page_with_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &two_factor_page(
                &state,
                &viewer,
                vec![InvalidField::new(
                    "code",
                    Error::InvalidSecondFactor.to_string(),
                )],
            )
            .await?,
        ),
        Err(other) => Err(other.into()),
    }
}

/// How long a served security.txt stays valid: RFC 9116 asks for less than a year, so that a
/// forgotten file stops being trusted; it is written afresh on each request.
const SECURITY_TXT_DAYS: i64 = 180;

/// `/.well-known/security.txt` (RFC 9116): where to report a vulnerability. Not served (404)
/// when the operator gave neither `operator.security_contact` nor a privacy email, since a
/// file without a contact would mislead.
pub async fn security_txt(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(contact) = state.config.security_contact() else {
        return crate::web::error::PageError(Error::NotFound("page")).into_response();
    };
    let expires =
        time::OffsetDateTime::from_unix_timestamp(crate::now() + SECURITY_TXT_DAYS * 86_400)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
            .replace_nanosecond(0)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let expires = expires
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let body = format!(
        "Contact: {contact}\nExpires: {expires}\nCanonical: {}/.well-known/security.txt\n\
         Preferred-Languages: en\n",
        state.config.base_url()
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "account/confirm.html")]
struct ConfirmPage {
    layout: Layout,
    hours: i64,
    errors: Vec<InvalidField>,
    /// The account has a password to enter; a social-only one is told to sign in again
    /// through its provider instead (or to set a password by the reset email).
    has_password: bool,
}

async fn confirm_page(
    state: &AppState,
    viewer: &Viewer,
    errors: Vec<InvalidField>,
) -> Result<ConfirmPage, Error> {
    let signed_in = viewer.require()?;
    let has_password = state
        .store
        .user_by_id(signed_in.user.user_id)
        .await?
        .is_some_and(|user| !user.password_hash.is_empty());
    Ok(ConfirmPage {
        layout: Layout::new(state, viewer, "Confirm it is you"),
        hours: state.config.session.reauthenticate_after_hours,
        errors,
        has_password,
    })
}

/// `GET /account/confirm`: the password form a sensitive action sends a member to when the
/// session's sign-in is older than `session.reauthenticate_after_hours`.
pub async fn confirm_form(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    if viewer.0.is_none() {
        return Ok(see_other("/sign-in"));
    }
    page(&confirm_page(&state, &viewer, vec![]).await?)
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
}

/// `POST /account/confirm`: the password again makes this session fresh for sensitive actions.
pub async fn confirm(
    State(state): State<AppState>,
    viewer: Viewer,
    ClientOrigin(origin): ClientOrigin,
    headers: HeaderMap,
    Form(form): Form<ConfirmForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let signed_in = viewer.require()?;
    match state
        .accounts
        .confirm_password(
            signed_in.user.user_id,
            &signed_in.token,
            &form.password,
            &origin,
        )
        .await
    {
        Ok(()) => Ok(see_other("/account/security")),
        Err(Error::Invalid(errors)) => page_with_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &confirm_page(&state, &viewer, errors).await?,
        ),
        Err(other) => Err(other.into()),
    }
}

/// A refusal's key: the member, the method and the route template.
type RefusalKey = (i64, &'static str, String);

/// The minute in which each (member, method, route template) refusal was last audited, on this
/// node. Bounded: when it grows large, entries of past minutes are dropped.
#[derive(Clone, Default)]
pub struct RefusalThrottle(
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<RefusalKey, i64>>>,
);

impl RefusalThrottle {
    const MAX_ENTRIES: usize = 10_000;

    /// Whether this refusal is the first of its member, method and route in the minute of
    /// `now` (and so is to be audited).
    pub fn first_this_minute(
        &self,
        user_id: i64,
        method: &'static str,
        route: &str,
        now: i64,
    ) -> bool {
        let minute = now.div_euclid(60);
        let mut seen = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.len() >= Self::MAX_ENTRIES {
            seen.retain(|_, at| *at == minute);
        }
        let previous = seen.insert((user_id, method, route.to_string()), minute);
        previous != Some(minute)
    }
}

/// A staff path as its route template: segments that are not plain lowercase words or an API
/// version (`v1`) become `{id}` (numbers, tokens), so the audit entry holds no value from the URL.
fn route_template(path: &str) -> String {
    let word = |segment: &str| segment.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
    let version = |segment: &str| {
        segment.len() <= 3
            && segment.starts_with('v')
            && segment.len() > 1
            && segment[1..].bytes().all(|b| b.is_ascii_digit())
    };
    path.split('/')
        .map(|segment| {
            if word(segment) || version(segment) {
                segment
            } else {
                "{id}"
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn method_word(method: &axum::http::Method) -> &'static str {
    match *method {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::PATCH => "PATCH",
        axum::http::Method::PUT => "PUT",
        axum::http::Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

/// Audits a plain 403 on a staff route (`/staff/…`, `/api/v1/staff/…`) to a signed-in member
/// (ASVS 7.2.2): the member's id, the method and the route template, never the URL's values.
/// Once per member, method and route per minute, so a flood of refusals cannot flood the log.
/// Refused reads of personal data are audited by the purpose gate as well, with their purpose.
pub async fn audit_refused_staff_routes(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path();
    if !(path.starts_with("/staff/") || path == "/staff" || path.starts_with("/api/v1/staff/")) {
        return next.run(request).await;
    }
    let route = route_template(path);
    let method = method_word(request.method());
    let (mut parts, body) = request.into_parts();
    // The handler reuses this viewer (it is kept in the request's extensions).
    let viewer = <Viewer as axum::extract::FromRequestParts<AppState>>::from_request_parts(
        &mut parts, &state,
    )
    .await
    .ok();
    let response = next
        .run(axum::extract::Request::from_parts(parts, body))
        .await;
    if response.status() == StatusCode::FORBIDDEN
        && let Some(Viewer(Some(signed_in))) = viewer
    {
        let user_id = signed_in.user.user_id;
        if state
            .refusals
            .first_this_minute(user_id, method, &route, crate::now())
        {
            let event = crate::audit::Event::new(crate::audit::AuditKind::AccessRefused)
                .actor(Some(user_id))
                .detail(crate::audit::Detail::Method(method))
                .detail(crate::audit::Detail::Route(route));
            if let Err(error) =
                crate::audit::record_alone(&state.store, &state.audit_key, event).await
            {
                tracing::warn!(error = %format!("{error:#}"), "auditing a refused staff route");
            }
        }
    }
    response
}
