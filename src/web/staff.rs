//! Staff pages: the audit log, for administrators who have turned on 2-step verification
//! (viewing the log is itself recorded in it), and the queue of posts the spam and unsafe-link
//! check held, where moderators release or hide each one.

use crate::audit::{self, AuditKind, Event};
use crate::error::Error;
use crate::forum::HeldDecision;
use crate::spam::HoldReason;
use crate::store::AuditFilter;
use crate::web::AppState;
use crate::web::auth::{Viewer, check_form};
use crate::web::error::PageResult;
use crate::web::forms::Form;
use crate::web::pages::{Layout, date, page, see_other};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;

/// Held posts shown at once, oldest first; deciding on them brings the next ones.
pub const HELD_PER_PAGE: i64 = 100;

pub const AUDIT_PER_PAGE: i64 = 50;

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    subject: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    kind: String,
    /// First day shown (YYYY-MM-DD, UTC).
    #[serde(default)]
    from: String,
    /// Last day shown (YYYY-MM-DD, UTC), included.
    #[serde(default)]
    until: String,
    #[serde(default)]
    page: String,
}

struct AuditLine {
    seq: i64,
    at: String,
    actor: String,
    subject: String,
    kind: String,
    details: String,
}

#[derive(Template)]
#[template(path = "staff/audit.html")]
struct AuditPage {
    layout: Layout,
    query: AuditQuery,
    kinds: Vec<&'static str>,
    lines: Vec<AuditLine>,
    total: i64,
    current: i64,
    count: i64,
    /// The filter as a query string, for the page links.
    filter_query: String,
}

fn parse_member(raw: &str, field: &'static str) -> Result<Option<i64>, Error> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse().map(Some).map_err(|_| {
        Error::invalid(crate::domain::InvalidField::new(
            field,
            "must be a member's number",
        ))
    })
}

fn parse_day(raw: &str, field: &'static str) -> Result<Option<i64>, Error> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(raw, &format)
        .map(|day| Some(day.midnight().assume_utc().unix_timestamp()))
        .map_err(|_| {
            Error::invalid(crate::domain::InvalidField::new(
                field,
                "must be a day such as 2026-01-31",
            ))
        })
}

/// `/staff/audit`: the audit log, filtered by subject, actor, kind and days, newest first.
pub async fn staff_audit(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<AuditQuery>,
) -> PageResult {
    let signed_in = viewer.require()?;
    let actor = signed_in.actor();
    actor.require_staff()?;
    if actor.role != crate::domain::Role::Administrator {
        return Err(Error::Forbidden.into());
    }
    let kind = query.kind.trim();
    let kind = if kind.is_empty() {
        None
    } else {
        Some(
            AuditKind::parse(kind)
                .ok_or_else(|| {
                    Error::invalid(crate::domain::InvalidField::new(
                        "kind",
                        "is not a known kind",
                    ))
                })?
                .as_str()
                .to_string(),
        )
    };
    let filter = AuditFilter {
        subject_id: parse_member(&query.subject, "subject")?,
        actor_id: parse_member(&query.actor, "actor")?,
        kind,
        from: parse_day(&query.from, "from")?,
        until: parse_day(&query.until, "until")?.map(|day| day + 86_400),
    };
    let current: i64 = match query.page.trim() {
        "" => 1,
        raw => raw
            .parse()
            .ok()
            .filter(|n| (1..=1_000_000).contains(n))
            .ok_or_else(|| Error::BadRequest("page must be a positive number".into()))?,
    };
    let (rows, total) = state
        .store
        .audit_page(&filter, AUDIT_PER_PAGE, (current - 1) * AUDIT_PER_PAGE)
        .await?;
    audit::record_alone(
        &state.store,
        &state.audit_key,
        Event::new(AuditKind::AuditLogViewed).actor(Some(actor.user_id)),
    )
    .await?;
    let show = |id: Option<i64>| {
        id.map(|id| id.to_string())
            .unwrap_or_else(|| "system".into())
    };
    let lines = rows
        .into_iter()
        .map(|row| AuditLine {
            seq: row.seq,
            at: date(row.at),
            actor: show(row.actor_id),
            subject: show(row.subject_id),
            kind: row.kind,
            details: row.details,
        })
        .collect();
    let filter_query = serde_urlencoded::to_string([
        ("subject", query.subject.trim()),
        ("actor", query.actor.trim()),
        ("kind", query.kind.trim()),
        ("from", query.from.trim()),
        ("until", query.until.trim()),
    ])
    .unwrap_or_default();
    page(&AuditPage {
        layout: Layout::new(&state, &viewer, "Audit log"),
        kinds: AuditKind::ALL.iter().map(|k| k.as_str()).collect(),
        lines,
        total,
        current,
        count: crate::forum::page_count(total, AUDIT_PER_PAGE),
        filter_query,
        query,
    })
}

struct HeldLine {
    post_id: i64,
    href: String,
    topic_title: String,
    post_number: i64,
    author: String,
    held: String,
    reason: &'static str,
    html: String,
}

#[derive(Template)]
#[template(path = "staff/held.html")]
struct HeldPage {
    layout: Layout,
    lines: Vec<HeldLine>,
    total: i64,
    /// More are waiting than the page shows.
    more: bool,
}

/// `/staff/held`: the posts waiting for a moderator, oldest first, each with its text and the
/// reason it was held, and a form to release or hide it.
pub async fn held_posts(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    let signed_in = viewer.require()?;
    signed_in.actor().require_staff()?;
    let rows = state.store.held_posts(HELD_PER_PAGE).await?;
    let total = state.store.count_held_posts().await?;
    let lines = rows
        .into_iter()
        .map(|row| {
            let topic = if row.topic_kind == "blog" {
                format!("/blog/{}", row.topic_slug)
            } else {
                format!("/t/{}/{}", row.topic_slug, row.post.topic_id)
            };
            let page_number = (row.post.post_number - 1) / crate::forum::POSTS_PER_PAGE + 1;
            let href = if page_number > 1 {
                format!("{topic}?page={page_number}#post-{}", row.post.post_number)
            } else {
                format!("{topic}#post-{}", row.post.post_number)
            };
            HeldLine {
                post_id: row.post.id,
                href,
                topic_title: row.topic_title,
                post_number: row.post.post_number,
                author: row.post.author,
                held: row.post.held_at.map(date).unwrap_or_default(),
                reason: HoldReason::parse(&row.held_reason)
                    .map(HoldReason::describe)
                    .unwrap_or("no reason recorded"),
                html: row.post.body_html,
            }
        })
        .collect::<Vec<_>>();
    page(&HeldPage {
        layout: Layout::new(&state, &viewer, "Held posts"),
        more: total > lines.len() as i64,
        lines,
        total,
    })
}

#[derive(Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    csrf: String,
}

async fn decide(
    state: AppState,
    viewer: Viewer,
    headers: HeaderMap,
    id: String,
    form: DecisionForm,
    decision: HeldDecision,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let signed_in = viewer.require()?;
    let id: i64 = id.parse().map_err(|_| Error::NotFound("held post"))?;
    state
        .forum
        .decide_held(&signed_in.actor(), id, decision)
        .await?;
    Ok(see_other("/staff/held"))
}

/// `POST /staff/held/{id}/release`: the post shows to everyone.
pub async fn release_held_post(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<DecisionForm>,
) -> PageResult {
    decide(state, viewer, headers, id, form, HeldDecision::Release).await
}

/// `POST /staff/held/{id}/hide`: the post is hidden, as a moderator hides any post.
pub async fn hide_held_post(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<DecisionForm>,
) -> PageResult {
    decide(state, viewer, headers, id, form, HeldDecision::Hide).await
}
