//! Retention and statistics at the web edge: the member's "close my account" page, the legal
//! holds page of privacy staff (`/staff/holds`), the public statistics page (`/stats`) and the
//! counting of a topic view when the request's consent decision allows analytics.
//! Every form is checked against forgery; nothing here logs a personal value.

use crate::domain::{InvalidField, Role};
use crate::error::Error;
use crate::retention::HoldRequest;
use crate::store::{LabelViews, TopicViews, VisitDimension};
use crate::web::AppState;
use crate::web::auth::{Viewer, check_form, clear_session_cookie};
use crate::web::error::PageResult;
use crate::web::forms::Form;
use crate::web::pages::{Layout, MessagePage, date, page, page_with_status, see_other};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::header::{ACCEPT_LANGUAGE, HOST, REFERER, SET_COOKIE, USER_AGENT};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use covenant_core::retention::ClosureReason;
use serde::Deserialize;

/// Counts a topic view for the statistics, only if this request's consent allows analytics.
pub fn count_view(state: &AppState, headers: &HeaderMap, topic_id: i64) {
    let consent = crate::web::consent::current();
    if !crate::consent::analytics_allowed(&consent.context) {
        return;
    }
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    state.visits.count(crate::stats::Visit::new(
        topic_id,
        header(USER_AGENT),
        header(ACCEPT_LANGUAGE),
        header(REFERER),
        header(HOST),
    ));
}

#[derive(Template)]
#[template(path = "account/close.html")]
struct ClosePage {
    layout: Layout,
    errors: Vec<InvalidField>,
}

/// `GET /account/close`.
pub async fn close_form(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    if viewer.0.is_none() {
        return Ok(see_other("/sign-in"));
    }
    page(&ClosePage {
        layout: Layout::new(&state, &viewer, "Close your account"),
        errors: vec![],
    })
}

#[derive(Deserialize)]
pub struct CloseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /account/close`: ends the member's account and signs them out.
pub async fn close_account(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<CloseForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let signed_in = viewer.require()?;
    state.accounts.require_recent_sign_in(&signed_in.user)?;
    if form.confirm != "yes" {
        return page_with_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &ClosePage {
                layout: Layout::new(&state, &viewer, "Close your account"),
                errors: vec![InvalidField::new(
                    "confirm",
                    "must be ticked to close the account",
                )],
            },
        );
    }
    let user_id = signed_in.user.user_id;
    state
        .retention
        .close_account(user_id, ClosureReason::ByMember, Some(user_id))
        .await?;
    let mut response = page(&MessagePage {
        layout: Layout::new(&state, &Viewer(None), "Your account is closed"),
        paragraphs: vec![
            "Your account is closed and you are signed out everywhere.".into(),
            "Your data is now kept only as our privacy policy says, and then deleted.".into(),
        ],
        link: Some(("/privacy".into(), "Read the privacy policy".into())),
    })?;
    if let Ok(cookie) = clear_session_cookie(state.config.secure_cookies()).parse() {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    Ok(response.into_response())
}

/// Legal holds are placed by administrators with 2-step verification (the privacy officer
/// role, once it exists, joins them).
fn require_privacy_staff(viewer: &Viewer) -> Result<i64, Error> {
    let actor = viewer.require()?.actor();
    actor.require_staff()?;
    if actor.role != Role::Administrator {
        return Err(Error::Forbidden);
    }
    Ok(actor.user_id)
}

struct HoldLine {
    id: i64,
    subject: String,
    categories: String,
    from: String,
    until: String,
    reason: String,
    placed: String,
    released: String,
    standing: bool,
}

#[derive(Deserialize, Default)]
pub struct HoldForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    categories: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    reason: String,
}

#[derive(Template)]
#[template(path = "staff/holds.html")]
struct HoldsPage {
    layout: Layout,
    holds: Vec<HoldLine>,
    category_keys: Vec<String>,
    form: HoldForm,
    errors: Vec<InvalidField>,
}

async fn holds_page(
    state: &AppState,
    viewer: &Viewer,
    form: HoldForm,
    errors: Vec<InvalidField>,
) -> Result<HoldsPage, Error> {
    let everyone = |text: Option<String>, none: &str| text.unwrap_or_else(|| none.to_string());
    let holds = state
        .retention
        .holds()
        .await?
        .into_iter()
        .map(|row| HoldLine {
            id: row.id,
            subject: everyone(row.subject_user_id.map(|id| id.to_string()), "everyone"),
            categories: if row.categories.is_empty() {
                "every category".into()
            } else {
                row.categories
            },
            from: everyone(row.created_from, "—"),
            until: everyone(row.created_until, "—"),
            reason: row.reason,
            placed: date(row.created_at),
            released: row.released_at.map(date).unwrap_or_default(),
            standing: row.released_at.is_none(),
        })
        .collect();
    let policy = state.policy.current().await?;
    Ok(HoldsPage {
        layout: Layout::new(state, viewer, "Legal holds"),
        holds,
        category_keys: policy
            .policy
            .categories()
            .iter()
            .map(|c| c.key.to_string())
            .collect(),
        form,
        errors,
    })
}

/// `GET /staff/holds`.
pub async fn staff_holds(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    require_privacy_staff(&viewer)?;
    page(&holds_page(&state, &viewer, HoldForm::default(), vec![]).await?)
}

/// `POST /staff/holds`: places a hold.
pub async fn place_hold(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<HoldForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let actor_id = require_privacy_staff(&viewer)?;
    let subject = match form.subject.trim() {
        "" => None,
        raw => Some(raw.parse::<i64>().map_err(|_| {
            Error::invalid(InvalidField::new("subject", "must be a member's number"))
        })?),
    };
    let request = HoldRequest {
        subject_user_id: subject,
        categories: form.categories.clone(),
        created_from: form.from.clone(),
        created_until: form.until.clone(),
        reason: form.reason.clone(),
    };
    match state.retention.place_hold(Some(actor_id), &request).await {
        Ok(_) => Ok(see_other("/staff/holds")),
        Err(Error::Invalid(errors)) => page_with_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &holds_page(&state, &viewer, form, errors).await?,
        ),
        Err(other) => Err(other.into()),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /staff/holds/{id}/release`.
pub async fn release_hold(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let actor_id = require_privacy_staff(&viewer)?;
    let id: i64 = id.parse().map_err(|_| Error::NotFound("legal hold"))?;
    state.retention.release_hold(Some(actor_id), id).await?;
    Ok(see_other("/staff/holds"))
}

/// How far back the statistics page looks.
const STATS_DAYS: i64 = 30;

#[derive(Template)]
#[template(path = "stats.html")]
struct StatsPage {
    layout: Layout,
    from_day: String,
    k: i64,
    topics: Vec<TopicViews>,
    breakdowns: Vec<(&'static str, Vec<LabelViews>)>,
}

/// `GET /stats`: most read topics and visits by browser, language, referring site and day,
/// every figure below the policy's smallest published count left out.
pub async fn stats_page(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    let policy = state.policy.current().await?;
    let k = i64::from(
        policy
            .policy
            .aggregate_statistics()
            .smallest_published_count,
    )
    .max(1);
    let from_day =
        (time::OffsetDateTime::now_utc().date() - time::Duration::days(STATS_DAYS - 1)).to_string();
    let topics = state.store.popular_topics(&from_day, k, 20).await?;
    let mut breakdowns = Vec::new();
    for (heading, dimension) in [
        ("Visits by day", VisitDimension::Day),
        ("Browsers", VisitDimension::Browser),
        ("Languages", VisitDimension::Language),
        ("Referring sites", VisitDimension::Referrer),
    ] {
        breakdowns.push((
            heading,
            state.store.views_by(dimension, &from_day, k).await?,
        ));
    }
    page(&StatsPage {
        layout: Layout::new(&state, &viewer, "Statistics"),
        from_day,
        k,
        topics,
        breakdowns,
    })
}
