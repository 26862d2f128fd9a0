//! Staff pages: the audit log, for administrators who have turned on 2-step verification
//! (viewing the log is itself recorded in it), and the queue of posts the spam and unsafe-link
//! check held, where moderators release or hide each one; and the disclosure log of privacy
//! staff (`/staff/disclosures`, promise A3).

use crate::audit::{self, AuditKind, Event};
use crate::disclosures::{DisclosureRequest, LegalBasis};
use crate::domain::InvalidField;
use crate::error::Error;
use crate::forum::HeldDecision;
use crate::purpose::{StaffPurpose, StaffRead};
use crate::spam::HoldReason;
use crate::store::AuditFilter;
use crate::web::AppState;
use crate::web::auth::{Viewer, check_form};
use crate::web::error::PageResult;
use crate::web::forms::Form;
use crate::web::pages::{Layout, date, page, page_with_status, see_other};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
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

/// How many withheld messages the outbox page lists, newest first.
pub const WITHHELD_MAIL_SHOWN: i64 = 200;

struct WithheldLine {
    id: i64,
    member: String,
    at: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "staff/withheld_mail.html")]
struct WithheldMailPage {
    layout: Layout,
    lines: Vec<WithheldLine>,
}

/// The mail the outbox held back instead of sending, and why ('restricted': the member
/// restricted processing; 'account closed': the account closed before it went out). Numbers,
/// times and reasons only: no address, subject line or text. Administrators only.
pub async fn withheld_mail(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    let signed_in = viewer.require()?;
    let actor = signed_in.actor();
    actor.require_staff()?;
    if actor.role != crate::domain::Role::Administrator {
        return Err(Error::Forbidden.into());
    }
    let lines = state
        .store
        .withheld_mail(WITHHELD_MAIL_SHOWN)
        .await?
        .into_iter()
        .map(|row| WithheldLine {
            id: row.id,
            member: row
                .user_id
                .map(|id| id.to_string())
                .unwrap_or_else(|| "none".into()),
            at: date(row.withheld_at),
            reason: if row.withheld_reason.is_empty() {
                "not recorded".into()
            } else {
                row.withheld_reason
            },
        })
        .collect();
    page(&WithheldMailPage {
        layout: Layout::new(&state, &viewer, "Withheld mail"),
        lines,
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

// ---------------------------------------------------------------------------------------
// The disclosure log (promise A3): privacy officers and administrators record each
// disclosure of a member's data to a third party or an authority, and list them.

/// Privacy officers and administrators, with 2-step verification.
fn require_privacy_staff(viewer: &Viewer) -> Result<i64, Error> {
    let signed_in = viewer.require()?;
    signed_in.actor().require_privacy_staff()?;
    Ok(signed_in.user.user_id)
}

#[derive(Deserialize, Default)]
pub struct DisclosureForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    legal_basis: String,
    #[serde(default)]
    requesting_body: String,
    #[serde(default)]
    reference: String,
    #[serde(default)]
    categories: String,
    #[serde(default)]
    disclosed_on: String,
    /// A checkbox: present ("1") when the law forbids telling the member.
    #[serde(default)]
    notice_forbidden: String,
}

struct DisclosureLine {
    id: i64,
    subject: i64,
    basis: &'static str,
    requesting_body: String,
    reference: String,
    categories: String,
    disclosed_on: String,
    approved_by: i64,
    notice: String,
    /// The law forbids telling the member (staff may lift it once it no longer does).
    gagged: bool,
}

#[derive(Template)]
#[template(path = "staff/disclosures.html")]
struct DisclosuresPage {
    layout: Layout,
    disclosures: Vec<DisclosureLine>,
    bases: Vec<(&'static str, &'static str)>,
    category_keys: Vec<String>,
    form: DisclosureForm,
    errors: Vec<InvalidField>,
}

async fn disclosures_page(
    state: &AppState,
    viewer: &Viewer,
    form: DisclosureForm,
    errors: Vec<InvalidField>,
) -> Result<DisclosuresPage, Error> {
    let signed_in = viewer.require()?;
    let rows = state.disclosures.list().await?;
    // Each record names a member's disclosure (who asked, their reference, what was given):
    // each row is a read of that member's data for the legal-disclosure purpose, gated and
    // audited on its own.
    let role = signed_in.actor().role;
    let categories = [crate::inventory::REQUESTS];
    let reads: Vec<_> = rows
        .iter()
        .map(|row| StaffRead {
            staff_id: signed_in.user.user_id,
            role,
            purpose: StaffPurpose::LegalDisclosure,
            subject: Some(row.subject_user_id),
            categories: &categories,
            assigned_to_me: false,
            request: None,
            count: None,
            item: Some(crate::audit::Detail::Disclosure(row.id)),
        })
        .collect();
    let shown = state.purpose.staff_read_rows(&reads).await?;
    const WITHHELD: &str = "withheld";
    let disclosures = rows
        .into_iter()
        .zip(shown)
        .map(|(row, shown)| DisclosureLine {
            id: row.id,
            subject: row.subject_user_id,
            basis: LegalBasis::parse(&row.legal_basis)
                .map(LegalBasis::label)
                .unwrap_or("unknown"),
            requesting_body: if shown {
                row.requesting_body
            } else {
                WITHHELD.into()
            },
            reference: if shown {
                row.reference
            } else {
                WITHHELD.into()
            },
            categories: if shown {
                row.categories
            } else {
                WITHHELD.into()
            },
            disclosed_on: row.disclosed_on,
            approved_by: row.approved_by,
            gagged: row.notice_forbidden != 0,
            notice: if row.notice_forbidden != 0 {
                "forbidden by law".into()
            } else {
                match row.notified_at {
                    Some(at) => format!("sent {}", date(at)),
                    None => "not reachable".into(),
                }
            },
        })
        .collect();
    let policy = state.policy.current().await?;
    Ok(DisclosuresPage {
        layout: Layout::new(state, viewer, "Disclosures"),
        disclosures,
        bases: LegalBasis::ALL
            .iter()
            .map(|b| (b.as_str(), b.label()))
            .collect(),
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

/// `GET /staff/disclosures`: the log and the form to record one.
pub async fn staff_disclosures(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    require_privacy_staff(&viewer)?;
    let form = DisclosureForm {
        disclosed_on: crate::policy::today(),
        ..DisclosureForm::default()
    };
    page(&disclosures_page(&state, &viewer, form, vec![]).await?)
}

/// `POST /staff/disclosures`: records a disclosure approved by the signed-in staff member.
pub async fn record_disclosure(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<DisclosureForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let approver = require_privacy_staff(&viewer)?;
    let subject =
        form.subject.trim().parse::<i64>().map_err(|_| {
            Error::invalid(InvalidField::new("subject", "must be a member's number"))
        })?;
    let request = DisclosureRequest {
        subject_user_id: subject,
        legal_basis: form.legal_basis.clone(),
        requesting_body: form.requesting_body.clone(),
        reference: form.reference.clone(),
        categories: form.categories.clone(),
        disclosed_on: form.disclosed_on.clone(),
        notice_forbidden: !form.notice_forbidden.is_empty(),
    };
    match state.disclosures.record(approver, &request).await {
        Ok(_) => {
            state.mailer.wake();
            Ok(see_other("/staff/disclosures"))
        }
        Err(Error::Invalid(errors)) => page_with_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &disclosures_page(&state, &viewer, form, errors).await?,
        ),
        Err(other) => Err(other.into()),
    }
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// `POST /staff/disclosures/{id}/notify`: the law no longer forbids telling the member; they
/// are told now, and the record joins their export.
pub async fn allow_disclosure_notice(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let actor = require_privacy_staff(&viewer)?;
    let id: i64 = id.parse().map_err(|_| Error::NotFound("disclosure"))?;
    state.disclosures.lift_notice_ban(actor, id).await?;
    state.mailer.wake();
    Ok(see_other("/staff/disclosures"))
}
