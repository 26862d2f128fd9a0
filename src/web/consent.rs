//! Consent at the web edge (promises C1–C4): the middleware that computes each request's consent
//! context once, the first-visit banner's form, the Cookie Settings and Your Privacy Choices
//! pages, `/.well-known/gpc.json`, the device consent cookie, and the consent JSON API.
//! The consent cookie is set only in answer to a choice; a visitor who chooses nothing gets no
//! cookie from here. Consent ids never reach a log line.

use crate::consent::{
    CHOICES_NOTICE, ConsentContext, ConsentId, CookieNotice, NoticeStamp, RequestSubjects,
    WrittenOptOut, is_consent_id, new_consent_id,
};
use crate::domain::InvalidField;
use crate::error::Error;
use crate::web::AppState;
use crate::web::auth::{Viewer, check_form};
use crate::web::error::{ApiErrorBody, ApiResult, PageResult};
use crate::web::forms::{Form, Json};
use crate::web::pages::{Layout, date};
use crate::web::theme::{THEME_COOKIE, Theme};
use askama::Template;
use axum::extract::{FromRequestParts, Query, Request, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE,
};
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use covenant_core::consent::{Choice, ConsentSubject, Method, Receipt, Signals, decide};
use covenant_core::policy::CookieCategory;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// The device's consent cookie: a random consent id, set only once the visitor chooses.
pub const CONSENT_COOKIE: &str = "covenant_consent";
/// Thirteen months, the longest a consent choice is commonly held valid.
const CONSENT_COOKIE_SECONDS: i64 = 395 * 86_400;
/// When this site's GPC support last changed, as `/.well-known/gpc.json` reports it.
pub const GPC_LAST_UPDATE: &str = "2026-11-29";

/// The consent of the request being handled, and where a banner choice returns to. Cheap to
/// clone (two reference counts): every page and the layout take a copy.
#[derive(Clone, Default)]
pub struct RequestConsent {
    pub context: Arc<ConsentContext>,
    pub return_to: ReturnTo,
    /// The colour theme remembered for this browser, only while preferences are allowed.
    pub theme: Option<Theme>,
}

/// Where a choice made on a page returns to: the page's own path and query, shared with the
/// request's URI rather than copied (empty outside a page request).
#[derive(Clone, Default)]
pub struct ReturnTo(Option<PathAndQuery>);

impl ReturnTo {
    pub fn as_str(&self) -> &str {
        self.0.as_ref().map_or("", PathAndQuery::as_str)
    }
}

impl std::fmt::Display for ReturnTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

tokio::task_local! {
    // Set around each page request by `ConsentLayer`, read by `Layout::new`: every template
    // asks this one decision before writing an optional tag.
    static REQUEST_CONSENT: RequestConsent;
}

/// Runs a page's future with `context` as its request's consent, decided beforehand: what the
/// layer does once it has decided. Public so the throughput benchmark of issue 4 can serve the
/// very page the check serves, with the deciding left out.
pub fn scoped<F: std::future::Future>(
    context: Arc<ConsentContext>,
    uri: &axum::http::Uri,
    page: F,
) -> tokio::task::futures::TaskLocalFuture<RequestConsent, F> {
    REQUEST_CONSENT.scope(request_consent(context, None, uri).0, page)
}

/// The consent of the request being handled; outside a page request, nothing optional.
pub fn current() -> RequestConsent {
    REQUEST_CONSENT.try_with(Clone::clone).unwrap_or_default()
}

/// Every cookie of the request's Cookie headers, name and value as sent, in order. Read as
/// bytes, and only the values asked for are taken as text: every page reads its cookies, and
/// checking each header's whole text first cost more than the rest of the reading.
fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|value| CookiePairs(value.as_bytes()))
}

/// The `name=value` pairs of one Cookie header; a part without `=` is skipped.
struct CookiePairs<'a>(&'a [u8]);

impl<'a> Iterator for CookiePairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.0.is_empty() {
            let (pair, rest) = match memchr::memchr(b';', self.0) {
                Some(semicolon) => (&self.0[..semicolon], &self.0[semicolon + 1..]),
                None => (self.0, &[][..]),
            };
            self.0 = rest;
            let pair = pair.trim_ascii();
            if let Some(equals) = memchr::memchr(b'=', pair) {
                return Some((&pair[..equals], &pair[equals + 1..]));
            }
        }
        None
    }
}

/// The text of the first cookie named `name`; `None` if there is none or its value is not
/// UTF-8. Every reader of a cookie asks this, so they all agree on what a request carries.
pub(crate) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let (_, value) = cookies(headers).find(|(key, _)| *key == name.as_bytes())?;
    std::str::from_utf8(value).ok()
}

/// What a page request's headers say to the consent check, found in one pass over them.
#[derive(Debug, PartialEq)]
struct PageHeaders<'a> {
    /// The device's consent id, if well-formed (as [`device_id`] finds it).
    device: Option<ConsentId>,
    /// The remembered theme (as [`crate::web::theme::cookie_theme`] finds it).
    theme: Option<Theme>,
    /// The session cookie's value, as [`crate::web::auth::credential`] finds it.
    session: Option<&'a str>,
    /// The bearer token, as [`crate::web::auth::bearer`] finds it.
    bearer: Option<&'a str>,
    /// The GPC signal, as [`gpc_signal`] finds it.
    gpc: bool,
}

/// The consent id, the theme, the session cookie, the bearer token and the GPC signal, in one
/// pass over the headers (a page's are few, and a look-up by name hashes the name); the first
/// of each counts, as where each is looked up on its own.
fn page_headers<'a>(headers: &'a HeaderMap, session_name: &str) -> PageHeaders<'a> {
    let (mut device, mut theme, mut session) = (None, None, None);
    let (mut authorization, mut gpc) = (None, None);
    for (name, value) in headers {
        if *name == COOKIE {
            for (cookie, value) in CookiePairs(value.as_bytes()) {
                if cookie == CONSENT_COOKIE.as_bytes() {
                    device.get_or_insert(value);
                } else if cookie == THEME_COOKIE.as_bytes() {
                    theme.get_or_insert(value);
                } else if cookie == session_name.as_bytes() {
                    session.get_or_insert(value);
                }
            }
        } else if *name == AUTHORIZATION {
            authorization.get_or_insert(value);
        } else if *name == SEC_GPC {
            gpc.get_or_insert(value);
        }
    }
    let text = |value: &'a [u8]| std::str::from_utf8(value).ok();
    PageHeaders {
        device: device.and_then(ConsentId::from_bytes),
        theme: theme.and_then(text).and_then(Theme::parse),
        session: session.and_then(text),
        bearer: authorization.and_then(crate::web::auth::bearer_token),
        gpc: gpc.is_some_and(is_gpc),
    }
}

/// Whether a page request brings a token [`crate::web::auth::credential`] would look up (or,
/// for a bearer token too long to use, a session cookie it would not): such a request takes
/// the consent check's full path, which asks who is signed in.
fn may_sign_in(found: &PageHeaders) -> bool {
    let token = found.bearer.or(found.session);
    token.is_some_and(crate::web::auth::usable_token)
}

/// The device's consent id, if the browser holds a well-formed one.
pub fn device_id(headers: &HeaderMap) -> Option<ConsentId> {
    cookie_value(headers, CONSENT_COOKIE).and_then(ConsentId::parse)
}

/// The Global Privacy Control header, named once rather than parsed on every page.
static SEC_GPC: HeaderName = HeaderName::from_static("sec-gpc");

/// Whether the request carries the Global Privacy Control signal (`Sec-GPC: 1`).
pub fn gpc_signal(headers: &HeaderMap) -> bool {
    headers.get(&SEC_GPC).is_some_and(is_gpc)
}

/// Whether a `Sec-GPC` header's value is the signal: `1`, nothing else.
fn is_gpc(value: &axum::http::HeaderValue) -> bool {
    value.as_bytes().trim_ascii() == b"1"
}

fn consent_cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{CONSENT_COOKIE}={id}; Path=/; Max-Age={CONSENT_COOKIE_SECONDS}; HttpOnly; SameSite=Lax{secure}"
    )
}

fn is_page_path(path: &str) -> bool {
    !(path.starts_with("/api/")
        || path.starts_with("/static/")
        || path.starts_with("/.well-known/")
        || path == "/healthz")
}

/// The layer that computes the consent context of every page request once (records GPC the
/// first time a subject sends it), for the layout and the handlers. A failure to read it fails
/// closed: nothing optional, and the error is logged without identifiers.
///
/// A tower layer written out rather than `axum::middleware::from_fn`: every page passes
/// through it, and `from_fn` boxes a clone of the inner service and runs an extractor chain for
/// each request, which the throughput benchmark of issue 4 counted against the check.
#[derive(Clone)]
pub struct ConsentLayer {
    state: AppState,
}

impl ConsentLayer {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl<S> tower::Layer<S> for ConsentLayer {
    type Service = ConsentService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let secure = self.state.config.secure_cookies();
        ConsentService {
            held: Arc::new(Held {
                state: self.state.clone(),
                secure,
                session_name: crate::web::auth::session_cookie_name(secure),
            }),
            inner,
        }
    }
}

/// The service of [`ConsentLayer`]. The router clones it for every request: it holds one
/// reference count of its own, not the application state's, which every handler's `State`
/// also counts (on two cores that shared count is written from both for every request).
#[derive(Clone)]
pub struct ConsentService<S> {
    held: Arc<Held>,
    inner: S,
}

/// What the check reads besides the request.
struct Held {
    state: AppState,
    /// From the configuration, fixed for the server's life.
    secure: bool,
    session_name: &'static str,
}

type ResponseFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> tower::Service<Request> for ConsentService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if !is_page_path(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        // The service that was made ready serves this request; its clone waits for the next.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        // Most pages go to visitors who are not signed in and whose choices this node holds:
        // their context is decided here, without an await, and the page future is all that
        // runs in the scope.
        let held = &*self.held;
        if let Some((request_consent, clear_theme)) =
            decided_in_memory(&held.state, held.session_name, &request)
        {
            let page = REQUEST_CONSENT.scope(request_consent, inner.call(request));
            // Nothing to add to the response (the usual case): the page's own future, scoped.
            if !clear_theme {
                return Box::pin(page);
            }
            let secure = held.secure;
            return Box::pin(async move {
                let mut response = page.await?;
                append_theme_clearing(&mut response, secure);
                Ok(response)
            });
        }
        Box::pin(with_consent(held.state.clone(), inner, request))
    }
}

/// The consent of a request the store need not be asked about (see
/// [`crate::consent::Consents::context_in_memory`]), and whether a stale theme cookie is to
/// be cleared; `None` sends the request down the full path.
fn decided_in_memory(
    state: &AppState,
    session_name: &str,
    request: &Request,
) -> Option<(RequestConsent, bool)> {
    let headers = request.headers();
    // Anything that may sign someone in takes the full path (a page's path never starts with
    // `/api/`, so `credential` would take the same two places).
    let found = page_headers(headers, session_name);
    if may_sign_in(&found) {
        return None;
    }
    let subjects = RequestSubjects {
        device: found.device,
        account: None,
        gpc: found.gpc,
    };
    let context = state.consent.context_in_memory(subjects, &state.policy)?;
    Some(request_consent(context, found.theme, request.uri()))
}

/// What the layout and the handlers read of the request's consent, and whether a theme cookie
/// left from before preferences were withdrawn is to be cleared (it is also ignored).
fn request_consent(
    context: Arc<ConsentContext>,
    stored_theme: Option<Theme>,
    uri: &axum::http::Uri,
) -> (RequestConsent, bool) {
    let preferences = context.allows(CookieCategory::Preferences);
    let return_to = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let clear_theme = stored_theme.is_some() && !preferences;
    let request_consent = RequestConsent {
        context,
        return_to: ReturnTo(Some(return_to)),
        theme: stored_theme.filter(|_| preferences),
    };
    (request_consent, clear_theme)
}

fn append_theme_clearing(response: &mut Response, secure: bool) {
    let clear = crate::web::theme::clear_theme_cookie(secure);
    if let Ok(value) = clear.parse() {
        response.headers_mut().append(SET_COOKIE, value);
    }
}

async fn with_consent<S>(
    state: AppState,
    mut inner: S,
    request: Request,
) -> Result<Response, Infallible>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    let (mut parts, body) = request.into_parts();
    // The extractor keeps the viewer in the request, so the handler does not look it up again.
    let viewer = Viewer::from_request_parts(&mut parts, &state)
        .await
        .unwrap_or(Viewer(None));
    let session_name = crate::web::auth::session_cookie_name(state.config.secure_cookies());
    let found = page_headers(&parts.headers, session_name);
    let stored_theme = found.theme;
    let subjects = RequestSubjects {
        device: found.device,
        account: viewer.0.as_ref().map(|s| s.user.user_id),
        gpc: found.gpc,
    };
    let context = match state
        .consent
        .context(subjects, &state.policy, crate::now())
        .await
    {
        Ok(context) => context,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "reading consent failed; nothing optional for this request");
            ConsentContext::default()
        }
    };
    let (request_consent, clear_theme) =
        request_consent(Arc::new(context), stored_theme, &parts.uri);
    let request = Request::from_parts(parts, body);
    let mut response = REQUEST_CONSENT
        .scope(request_consent, inner.call(request))
        .await?;
    if clear_theme {
        append_theme_clearing(&mut response, state.config.secure_cookies());
    }
    Ok(response)
}

fn render(template: &impl Template) -> PageResult {
    let html = template
        .render()
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("rendering a page")))?;
    Ok(Html(html).into_response())
}

/// Only paths on this site: an open redirect would turn the banner into a bouncer.
pub(crate) fn local_path(text: &str) -> String {
    let ok = text.starts_with('/') && !text.starts_with("//") && !text.contains('\\');
    if ok { text.to_string() } else { "/".into() }
}

/// Where a choice made in a browser is recorded: the device (a new consent id when it has none)
/// and, when signed in, the account. Returns the subjects and the cookie to set.
fn browser_subjects(state: &AppState, context: &ConsentContext) -> (Vec<ConsentSubject>, String) {
    let id = context
        .device()
        .map(str::to_string)
        .unwrap_or_else(new_consent_id);
    let cookie = consent_cookie(&id, state.config.secure_cookies());
    let mut subjects = vec![ConsentSubject::Device(id)];
    if let Some(account) = context.account() {
        subjects.push(ConsentSubject::Account(account));
    }
    (subjects, cookie)
}

/// A grant of advertising is not recorded while GPC or the age rule keeps it off: the signal is
/// honored, never argued with.
fn grant_is_moot(context: &ConsentContext, category: CookieCategory, choice: Choice) -> bool {
    category == CookieCategory::Advertising
        && choice == Choice::Granted
        && (context.gpc() || context.known_minor_under_16())
}

async fn record_browser_choices(
    state: &AppState,
    context: &ConsentContext,
    choices: Vec<(CookieCategory, Choice)>,
    method: Method,
    stamp: &NoticeStamp,
) -> Result<String, Error> {
    let choices: Vec<_> = choices
        .into_iter()
        .filter(|(category, choice)| !grant_is_moot(context, *category, *choice))
        .collect();
    let (subjects, cookie) = browser_subjects(state, context);
    state
        .consent
        .record_choices(&subjects, &choices, method, stamp, crate::now())
        .await?;
    Ok(cookie)
}

fn see_other_with_cookie(location: &str, cookie: String) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(LOCATION, location.to_string()), (SET_COOKIE, cookie)],
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct BannerForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    choice: String,
    #[serde(default)]
    return_to: String,
}

/// `POST /consent`: the banner's Accept all or Reject all.
pub async fn banner_choice(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<BannerForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let choice = match form.choice.as_str() {
        "accept_all" => Choice::Granted,
        "reject_all" => Choice::Denied,
        _ => return Err(Error::BadRequest("choose accept_all or reject_all".into()).into()),
    };
    let in_force = state.policy.current().await?;
    let notice = CookieNotice::of(&in_force.policy);
    let context = current().context;
    // A banner shown again after a policy change asks only about what the change affects; the
    // person's other choices stand.
    let asked_again: Vec<CookieCategory> = context.asked_again().collect();
    let choices = notice
        .optional_categories()
        .filter(|category| asked_again.is_empty() || asked_again.contains(category))
        .map(|category| (category, choice))
        .collect();
    let cookie =
        record_browser_choices(&state, &context, choices, Method::Banner, &notice.stamp).await?;
    Ok(see_other_with_cookie(&local_path(&form.return_to), cookie))
}

/// One category on the Cookie Settings page.
pub struct CategoryView {
    pub key: &'static str,
    pub name: String,
    pub description: String,
    pub optional: bool,
    pub allowed: bool,
    pub explanation: &'static str,
    /// GPC or the age rule hold it off: the page shows why and offers no switch.
    pub locked: bool,
}

/// One recorded choice, as the settings page lists it.
pub struct RecordLine {
    pub when: String,
    pub category: &'static str,
    pub choice: &'static str,
    pub method: &'static str,
    pub policy_version: String,
}

#[derive(Template)]
#[template(path = "cookie_settings.html")]
struct CookieSettingsPage {
    layout: Layout,
    intro: &'static str,
    categories: Vec<CategoryView>,
    gpc: bool,
    saved: bool,
    /// The person tried to pick a theme while preference cookies are off.
    needs_preferences: bool,
    records: Vec<RecordLine>,
    policy_version: String,
}

#[derive(Deserialize)]
pub struct SavedQuery {
    saved: Option<String>,
    theme: Option<String>,
}

async fn record_lines(
    state: &AppState,
    context: &ConsentContext,
) -> Result<Vec<RecordLine>, Error> {
    let subject = match (context.account(), context.device()) {
        (Some(account), _) => ConsentSubject::Account(account),
        (None, Some(device)) => ConsentSubject::Device(device.to_string()),
        (None, None) => return Ok(vec![]),
    };
    let records = state.consent.records(&subject).await?;
    Ok(records
        .iter()
        .rev()
        .map(|record| RecordLine {
            when: date(record.recorded_at.unix_timestamp()),
            category: record.category.as_str(),
            choice: record.choice.as_str(),
            method: method_label(record.method),
            policy_version: record.policy_version.clone(),
        })
        .collect())
}

fn method_label(method: Method) -> &'static str {
    match method {
        Method::Banner => "cookie banner",
        Method::SettingsPage => "settings page",
        Method::Gpc => "Global Privacy Control",
        Method::Api => "API",
        Method::WrittenRequest => "written request",
        Method::AccountSync => "carried over at sign-in",
    }
}

/// `GET /cookie-settings`: every category with its decision for this request and a switch for
/// each optional one.
pub async fn cookie_settings(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<SavedQuery>,
) -> PageResult {
    let in_force = state.policy.current().await?;
    let notice = CookieNotice::of(&in_force.policy);
    let context = current().context;
    let categories = notice
        .groups
        .iter()
        .map(|group| {
            let decision = context.decide(group.category);
            CategoryView {
                key: group.category.as_str(),
                name: group.name.clone(),
                description: group.description.clone(),
                optional: group.optional,
                allowed: decision.allowed,
                explanation: decision.reason.explanation(),
                locked: group.category == CookieCategory::Advertising
                    && (context.gpc() || context.known_minor_under_16()),
            }
        })
        .collect();
    render(&CookieSettingsPage {
        layout: Layout::new(&state, &viewer, "Cookie Settings"),
        intro: notice.intro,
        categories,
        gpc: context.gpc(),
        saved: query.saved.is_some(),
        needs_preferences: query.theme.as_deref() == Some("needs-preferences")
            && !context.allows(CookieCategory::Preferences),
        records: record_lines(&state, &context).await?,
        policy_version: notice.stamp.policy_version,
    })
}

#[derive(Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    csrf: String,
    preferences: Option<String>,
    analytics: Option<String>,
    advertising: Option<String>,
}

fn parse_choice(field: &'static str, value: &str) -> Result<Choice, Error> {
    Choice::parse(value)
        .map_err(|_| Error::invalid(InvalidField::new(field, "must be granted or denied")))
}

/// `POST /cookie-settings`: records a choice for every optional category the form sent.
pub async fn save_cookie_settings(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<SettingsForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let in_force = state.policy.current().await?;
    let notice = CookieNotice::of(&in_force.policy);
    let optional: Vec<CookieCategory> = notice.optional_categories().collect();
    let mut choices = vec![];
    for (category, value) in [
        (CookieCategory::Preferences, &form.preferences),
        (CookieCategory::Analytics, &form.analytics),
        (CookieCategory::Advertising, &form.advertising),
    ] {
        if let Some(value) = value
            && optional.contains(&category)
        {
            choices.push((category, parse_choice(category.as_str(), value)?));
        }
    }
    let context = current().context;
    // The form sends every switch; only what changed (or was never chosen) is new evidence.
    choices.retain(|(category, choice)| context.state().choice(*category) != Some(*choice));
    let cookie = record_browser_choices(
        &state,
        &context,
        choices,
        Method::SettingsPage,
        &notice.stamp,
    )
    .await?;
    Ok(see_other_with_cookie("/cookie-settings?saved=1", cookie))
}

#[derive(Template)]
#[template(path = "privacy_choices.html")]
struct PrivacyChoicesPage {
    layout: Layout,
    notice: &'static str,
    opted_out: bool,
    explanation: &'static str,
    gpc: bool,
    minor: bool,
    sells: bool,
    shares: bool,
    saved: bool,
}

/// `GET /privacy-choices`: the opt-outs of sale, sharing and targeted advertising.
pub async fn privacy_choices(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<SavedQuery>,
) -> PageResult {
    let in_force = state.policy.current().await?;
    let context = current().context;
    let decision = context.decide(CookieCategory::Advertising);
    render(&PrivacyChoicesPage {
        layout: Layout::new(&state, &viewer, "Your Privacy Choices"),
        notice: CHOICES_NOTICE,
        opted_out: !decision.allowed,
        explanation: decision.reason.explanation(),
        gpc: context.gpc(),
        minor: context.known_minor_under_16(),
        sells: in_force.policy.sells_personal_data(),
        shares: in_force.policy.shares_for_targeted_advertising(),
        saved: query.saved.is_some(),
    })
}

#[derive(Deserialize)]
pub struct ChoicesForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    opt_out_sale: Option<String>,
    #[serde(default)]
    opt_out_targeted_advertising: Option<String>,
}

/// `POST /privacy-choices`: either opt-out denies the advertising category (sale, sharing and
/// targeted advertising are one category); neither ticked allows it again.
pub async fn save_privacy_choices(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<ChoicesForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let in_force = state.policy.current().await?;
    let stamp = NoticeStamp::new(&in_force.policy, CHOICES_NOTICE);
    let opted_out = form.opt_out_sale.is_some() || form.opt_out_targeted_advertising.is_some();
    let choice = if opted_out {
        Choice::Denied
    } else {
        Choice::Granted
    };
    let context = current().context;
    let cookie = record_browser_choices(
        &state,
        &context,
        vec![(CookieCategory::Advertising, choice)],
        Method::SettingsPage,
        &stamp,
    )
    .await?;
    Ok(see_other_with_cookie("/privacy-choices?saved=1", cookie))
}

/// `GET /.well-known/gpc.json`: this site honors Global Privacy Control.
pub async fn gpc_json() -> Response {
    (
        [
            (CONTENT_TYPE, "application/json"),
            (CACHE_CONTROL, "public, max-age=86400"),
        ],
        format!(r#"{{"gpc": true, "lastUpdate": "{GPC_LAST_UPDATE}"}}"#),
    )
        .into_response()
}

static ANALYTICS_JS: &str = include_str!("../../static/analytics.js");
static ADVERTISING_JS: &str = include_str!("../../static/advertising.js");

fn script(body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// The analytics tag: written into a page only when analytics is granted.
pub async fn analytics_js() -> Response {
    script(ANALYTICS_JS)
}

/// The advertising tag: written into a page only when advertising is allowed.
pub async fn advertising_js() -> Response {
    script(ADVERTISING_JS)
}

/// At sign-in the stricter of the device's and the account's choices wins. A failure is logged
/// and does not stop the sign-in: every later request still takes the stricter of the two.
pub async fn merge_at_sign_in(state: &AppState, headers: &HeaderMap, user_id: i64) {
    let device = device_id(headers);
    if let Err(error) = state
        .consent
        .merge_at_sign_in(
            device.as_ref().map(ConsentId::as_str),
            user_id,
            crate::now(),
        )
        .await
    {
        tracing::error!(user_id, error = %format!("{error:#}"), "merging consent at sign-in failed");
    }
}

// ---------------------------------------------------------------------------------------------
// JSON API

fn parse_category(text: &str) -> Result<CookieCategory, Error> {
    CookieCategory::parse(text).map_err(|_| {
        Error::invalid(InvalidField::new(
            "category",
            "must be necessary, preferences, analytics or advertising",
        ))
    })
}

#[derive(Deserialize, IntoParams)]
pub struct DecisionQuery {
    /// necessary, preferences, analytics or advertising.
    category: String,
    /// The device's consent id (the `covenant_consent` cookie); omit when signed in.
    device: Option<String>,
    /// Whether the request being decided for carried `Sec-GPC: 1`.
    gpc: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct DecisionAnswer {
    /// `device` or `account`.
    subject_kind: &'static str,
    category: String,
    allowed: bool,
    /// A stable reason code: necessary, restricted, minor_under_16, global_privacy_control,
    /// objection, granted, refused, withdrawn, no_choice.
    reason: String,
    explanation: &'static str,
}

fn api_subject(viewer: &Viewer, device: Option<&str>) -> Result<ConsentSubject, Error> {
    if let Some(signed_in) = &viewer.0 {
        return Ok(ConsentSubject::Account(signed_in.user.user_id));
    }
    match device {
        Some(id) if is_consent_id(id) => Ok(ConsentSubject::Device(id.to_string())),
        Some(_) => Err(Error::invalid(InvalidField::new(
            "device",
            "is not a consent id issued by this site",
        ))),
        None => Err(Error::invalid(InvalidField::new(
            "device",
            "is required unless signed in",
        ))),
    }
}

/// The effective consent decision for a device or the signed-in member, for one category.
#[utoipa::path(get, path = "/api/v1/consent/decision", params(DecisionQuery),
    responses((status = 200, body = DecisionAnswer), (status = 422, body = ApiErrorBody)))]
pub async fn api_decision(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<DecisionQuery>,
) -> ApiResult<axum::Json<DecisionAnswer>> {
    let category = parse_category(&query.category)?;
    let subject = api_subject(&viewer, query.device.as_deref())?;
    let known_minor = match &subject {
        ConsentSubject::Account(user_id) => {
            state.consent.known_minor(*user_id, crate::now()).await?
        }
        ConsentSubject::Device(_) => false,
    };
    let consent_state = state
        .consent
        .effective_state_of(&subject, &state.policy)
        .await?;
    let decision = decide(
        &consent_state,
        category,
        Signals {
            gpc: query.gpc.unwrap_or(false),
            known_minor_under_16: known_minor,
            ..Signals::default()
        },
    );
    Ok(axum::Json(DecisionAnswer {
        subject_kind: subject_kind(&subject),
        category: category.as_str().into(),
        allowed: decision.allowed,
        reason: decision.reason.as_str().into(),
        explanation: decision.reason.explanation(),
    }))
}

fn subject_kind(subject: &ConsentSubject) -> &'static str {
    match subject {
        ConsentSubject::Device(_) => "device",
        ConsentSubject::Account(_) => "account",
    }
}

#[derive(Deserialize, ToSchema)]
pub struct ChoiceRequest {
    /// The device's consent id; omit when signed in (the choice is the account's).
    #[serde(default)]
    device: Option<String>,
    /// preferences, analytics or advertising.
    #[serde(default)]
    category: String,
    /// granted or denied.
    #[serde(default)]
    choice: String,
}

#[derive(Serialize, ToSchema)]
pub struct RecordedChoice {
    /// The new immutable record, as an ISO/IEC TS 27560-style receipt.
    #[schema(value_type = Object)]
    receipt: Receipt,
    /// Whether the category is now allowed (GPC is not known to this call; the age rule is).
    allowed: bool,
    reason: String,
}

/// Record a choice for a device or the signed-in member (method `api`).
#[utoipa::path(post, path = "/api/v1/consent/choices", request_body = ChoiceRequest,
    responses((status = 201, body = RecordedChoice), (status = 400, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
pub async fn api_record_choice(
    State(state): State<AppState>,
    viewer: Viewer,
    Json(body): Json<ChoiceRequest>,
) -> ApiResult<Response> {
    let category = parse_category(&body.category)?;
    let choice = parse_choice("choice", &body.choice)?;
    let subject = api_subject(&viewer, body.device.as_deref())?;
    let in_force = state.policy.current().await?;
    let notice = CookieNotice::of(&in_force.policy);
    let now = crate::now();
    let mut records = state
        .consent
        .record_choices(
            std::slice::from_ref(&subject),
            &[(category, choice)],
            Method::Api,
            &notice.stamp,
            now,
        )
        .await?;
    let record = records.remove(0);
    let known_minor = match &subject {
        ConsentSubject::Account(user_id) => state.consent.known_minor(*user_id, now).await?,
        ConsentSubject::Device(_) => false,
    };
    let decision = decide(
        &state
            .consent
            .effective_state_of(&subject, &state.policy)
            .await?,
        category,
        Signals {
            known_minor_under_16: known_minor,
            ..Signals::default()
        },
    );
    Ok((
        StatusCode::CREATED,
        axum::Json(RecordedChoice {
            receipt: Receipt::from_record(&record, in_force.policy.controller()),
            allowed: decision.allowed,
            reason: decision.reason.as_str().into(),
        }),
    )
        .into_response())
}

#[derive(Serialize, ToSchema)]
pub struct Receipts {
    schema_version: &'static str,
    /// Every record of the signed-in member, oldest first; withdrawals never remove earlier ones.
    #[schema(value_type = Vec<Object>)]
    receipts: Vec<Receipt>,
}

/// The signed-in member's consent receipts (ISO/IEC TS 27560-style), oldest first.
#[utoipa::path(get, path = "/api/v1/consent/receipts", security(("bearer" = [])),
    responses((status = 200, body = Receipts), (status = 401, body = ApiErrorBody)))]
pub async fn api_receipts(
    State(state): State<AppState>,
    viewer: Viewer,
) -> ApiResult<axum::Json<Receipts>> {
    let signed_in = viewer.require()?;
    let in_force = state.policy.current().await?;
    let receipts = state
        .consent
        .receipts(signed_in.user.user_id, &in_force.policy)
        .await?;
    Ok(axum::Json(Receipts {
        schema_version: covenant_core::consent::RECEIPT_SCHEMA_VERSION,
        receipts,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct WrittenOptOutRequest {
    /// The account the written request is about.
    #[serde(default)]
    user_id: i64,
    /// "California Opt-Out" or "Nevada Sale Opt-Out", as the request's subject line.
    #[serde(default)]
    subject: String,
}

/// Apply a written "California Opt-Out" or "Nevada Sale Opt-Out" request to an account
/// (administrators; recorded with method `written_request`).
#[utoipa::path(post, path = "/api/v1/consent/written-opt-outs", request_body = WrittenOptOutRequest,
    security(("bearer" = [])),
    responses((status = 201, body = RecordedChoice), (status = 401, body = ApiErrorBody),
        (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
pub async fn api_written_opt_out(
    State(state): State<AppState>,
    viewer: Viewer,
    Json(body): Json<WrittenOptOutRequest>,
) -> ApiResult<Response> {
    let signed_in = viewer.require()?;
    let actor = signed_in.actor();
    if !signed_in.by_bearer || actor.role != crate::domain::Role::Administrator {
        return Err(Error::Forbidden.into());
    }
    // Like every staff action, it needs 2-step verification.
    if !actor.two_factor {
        return Err(Error::SecondFactorEnrolmentRequired.into());
    }
    let kind = WrittenOptOut::parse(&body.subject).ok_or_else(|| {
        Error::invalid(InvalidField::new(
            "subject",
            "must be California Opt-Out or Nevada Sale Opt-Out",
        ))
    })?;
    let in_force = state.policy.current().await?;
    let record = state
        .consent
        .written_opt_out(body.user_id, kind, &in_force.policy, crate::now())
        .await?;
    tracing::info!(
        user_id = body.user_id,
        staff_id = signed_in.user.user_id,
        "written opt-out applied"
    );
    Ok((
        StatusCode::CREATED,
        axum::Json(RecordedChoice {
            receipt: Receipt::from_record(&record, in_force.policy.controller()),
            allowed: false,
            reason: "refused".into(),
        }),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_choices_return_only_to_this_site() {
        assert_eq!(local_path("/t/a/1?page=2"), "/t/a/1?page=2");
        assert_eq!(local_path("//evil.example/"), "/");
        assert_eq!(local_path("https://evil.example/"), "/");
        assert_eq!(local_path("/\\evil.example"), "/");
    }

    #[test]
    fn only_a_gpc_value_of_one_is_the_signal() {
        let mut headers = HeaderMap::new();
        assert!(!gpc_signal(&headers));
        headers.insert("sec-gpc", "1".parse().unwrap());
        assert!(gpc_signal(&headers));
        headers.insert("sec-gpc", "0".parse().unwrap());
        assert!(!gpc_signal(&headers));
    }

    #[test]
    fn one_pass_over_the_headers_finds_what_each_reader_finds() {
        use crate::web::auth::{credential, session_cookie_name};
        use axum::http::HeaderValue;
        let id = "a".repeat(43);
        let long = "t".repeat(200);
        for secure in [false, true] {
            let session = session_cookie_name(secure);
            for header in [
                format!("covenant_theme=dark; covenant_consent={id}"),
                format!("x=1; covenant_consent={id}; covenant_consent=short; covenant_theme=light"),
                "covenant_consent=short; covenant_theme=blue".to_string(),
                format!("covenant_consent={id}"),
                "covenant_theme=dark".to_string(),
                "other=1;=;novalue".to_string(),
                format!("{session}=token; covenant_consent={id}"),
                format!("covenant_consent={id}; {session}=; {session}=second"),
                format!("{session}={long}"),
                "covenant_session=a; __Host-covenant_session=b".to_string(),
            ] {
                for (authorization, gpc) in [
                    (None, None),
                    (Some("Bearer abc".to_string()), Some("1")),
                    (Some(format!("Bearer {long}")), Some(" 1 ")),
                    (Some("Basic abc".to_string()), Some("0")),
                    (None, Some("true")),
                ] {
                    let mut headers = HeaderMap::new();
                    headers.insert(COOKIE, header.parse().unwrap());
                    if let Some(value) = &authorization {
                        headers.insert("authorization", value.parse().unwrap());
                    }
                    if let Some(value) = gpc {
                        headers.insert("sec-gpc", HeaderValue::from_str(value).unwrap());
                    }
                    // Other headers, before and after, change nothing.
                    headers.insert("accept", "text/html".parse().unwrap());
                    headers.insert("x-covenant-test", "1".parse().unwrap());
                    let found = page_headers(&headers, session);
                    assert_eq!(found.device, device_id(&headers), "{header}");
                    assert_eq!(
                        found.theme,
                        crate::web::theme::cookie_theme(&headers),
                        "{header}"
                    );
                    assert_eq!(found.gpc, gpc_signal(&headers), "{gpc:?}");
                    assert_eq!(found.bearer, crate::web::auth::bearer(&headers));
                    // Never anonymous where `credential` finds a token to look up.
                    let signs_in = credential(&headers, "/t/a/1", secure).is_some();
                    assert!(
                        !signs_in || may_sign_in(&found),
                        "{header} {authorization:?}"
                    );
                    if authorization.is_none() {
                        assert_eq!(may_sign_in(&found), signs_in, "{header}");
                    }
                }
            }
        }
        let mut two = HeaderMap::new();
        two.append(COOKIE, "covenant_theme=dark".parse().unwrap());
        two.append(COOKIE, format!("covenant_consent={id}").parse().unwrap());
        two.append("sec-gpc", "1".parse().unwrap());
        two.append("sec-gpc", "0".parse().unwrap());
        assert_eq!(
            page_headers(&two, "covenant_session"),
            PageHeaders {
                device: ConsentId::parse(&id),
                theme: Some(Theme::Dark),
                session: None,
                bearer: None,
                gpc: true,
            }
        );
        // A cookie sent in bytes beyond ASCII leaves the others readable, and a value that is
        // not text is no value to any reader: not a session to look up, here or in `credential`.
        let session = session_cookie_name(false);
        let mut bytes =
            format!("x=\u{e9}t\u{e9}; covenant_consent={id}; covenant_theme=dark; {session}=")
                .into_bytes();
        bytes.push(0xff);
        let mut odd = HeaderMap::new();
        odd.insert(COOKIE, HeaderValue::from_bytes(&bytes).unwrap());
        let found = page_headers(&odd, session);
        assert_eq!(
            found,
            PageHeaders {
                device: ConsentId::parse(&id),
                theme: Some(Theme::Dark),
                session: None,
                bearer: None,
                gpc: false,
            }
        );
        assert_eq!(found.device, device_id(&odd));
        assert_eq!(found.theme, crate::web::theme::cookie_theme(&odd));
        assert_eq!(credential(&odd, "/t/a/1", false), None);
        assert!(!may_sign_in(&found));
    }

    #[test]
    fn a_cookie_header_splits_into_its_named_pairs() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, " a=1;b= two ;;c;=e; d=x=y ;".parse().unwrap());
        headers.append(COOKIE, "f=".parse().unwrap());
        let text = |bytes| std::str::from_utf8(bytes).unwrap();
        let pairs: Vec<_> = cookies(&headers)
            .map(|(name, value)| (text(name), text(value)))
            .collect();
        assert_eq!(
            pairs,
            [
                ("a", "1"),
                ("b", " two"),
                ("", "e"),
                ("d", "x=y"),
                ("f", "")
            ]
        );
        assert_eq!(cookie_value(&headers, "d"), Some("x=y"));
        assert_eq!(cookie_value(&headers, "c"), None);
    }

    #[test]
    fn the_return_path_is_the_pages_own_or_empty_outside_a_page() {
        assert_eq!(RequestConsent::default().return_to.to_string(), "");
        let path = ReturnTo(Some(PathAndQuery::from_static("/t/a/1?page=2")));
        assert_eq!(path.to_string(), "/t/a/1?page=2");
    }

    #[test]
    fn the_consent_cookie_is_http_only_lax_and_long_lived() {
        let cookie = consent_cookie("abc", true);
        assert!(cookie.starts_with("covenant_consent=abc;"));
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
        assert!(cookie.contains("Secure"));
    }
}
