//! Privacy-request pages and API: the member's `/account/privacy`, the public form, the code
//! and status pages (appeal, withdraw, agent evidence), the staff console and report, the
//! JSON API, and `/metrics`. Every form checks its anti-forgery token; visitors' answers are
//! the same whether or not an address has an account.

use crate::domain::{EmailAddress, InvalidField, Role};
use crate::error::Error;
use crate::forum::page_count;
use crate::inventory;
use crate::purpose::{StaffPurpose, StaffRead};
use crate::requests::{
    self, Channel, Decision, Intake, Relationship, RequestView, SessionProof, Template,
    jurisdiction_of, parse_right, right_label, right_name,
};
use crate::store::{self, QueueFilter, SubmissionRow};
use crate::web::AppState;
use crate::web::auth::{ClientOrigin, Viewer, check_form};
use crate::web::error::{ApiErrorBody, ApiResult, PageResult};
use crate::web::forms::{Form, Json};
use crate::web::pages::{Layout, PageQuery, Pager, date, page, page_with_status};
use axum::extract::{Multipart, Path, Query, State};
use axum::http::header::{self, LOCATION};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use covenant_core::policy::{Jurisdiction, Right};
use covenant_core::requests::{DeclineCode, RequestState};
use covenant_core::rights::rights_for;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to.to_string())]).into_response()
}

#[derive(askama::Template)]
#[template(path = "message.html")]
struct MessagePage {
    layout: Layout,
    paragraphs: Vec<String>,
    link: Option<(String, String)>,
}

fn message(
    state: &AppState,
    viewer: &Viewer,
    title: &str,
    paragraphs: Vec<String>,
    link: Option<(String, String)>,
) -> PageResult {
    page(&MessagePage {
        layout: Layout::new(state, viewer, title),
        paragraphs,
        link,
    })
}

/// One request as a row on a page.
pub struct RequestLine {
    pub id: i64,
    pub right: &'static str,
    pub state: &'static str,
    pub jurisdiction: String,
    pub received_on: String,
    pub due_on: String,
    pub extended: bool,
    pub verification: String,
    /// The proof of identity the request needs (R3).
    pub required: String,
    pub decision: String,
    pub granted: bool,
    pub appeal_open: bool,
    pub appeal_due_on: String,
    pub open: bool,
    pub overdue: bool,
    pub nearly_due: bool,
    pub assigned_to: String,
}

fn state_words(state: RequestState) -> &'static str {
    match state {
        RequestState::Received => "received",
        RequestState::Verifying => "waiting for verification",
        RequestState::Verified => "verified",
        RequestState::InProgress => "in progress",
        RequestState::Fulfilled => "fulfilled",
        RequestState::PartlyFulfilled => "partly fulfilled",
        RequestState::Declined => "declined",
        RequestState::Unverifiable => "closed: unverifiable",
        RequestState::Withdrawn => "withdrawn",
        RequestState::Appealed => "appeal under review",
        RequestState::AppealUpheld => "appeal decided: decision kept",
        RequestState::AppealReversed => "appeal decided: decision reversed",
    }
}

fn line(state: &AppState, view: &RequestView) -> RequestLine {
    let today = requests::day_of(crate::now());
    let due = requests::parse_iso(&view.due_on).unwrap_or(today);
    let open = !view.state().is_terminal();
    let soon = today.saturating_add(time::Duration::days(state.config.requests.nearly_due_days));
    let mut decision = view.status.reason().unwrap_or_default().to_string();
    if let Some(text) = view.row.decision_text.as_deref().filter(|t| !t.is_empty())
        && !decision.contains(text)
    {
        decision = format!("{decision} {text}").trim().to_string();
    }
    RequestLine {
        id: view.row.id,
        right: requests::asked_label(view.right, view.row.specific_pieces != 0),
        state: state_words(view.state()),
        jurisdiction: jurisdiction_name(state, view.jurisdiction),
        received_on: view.row.received_on.clone(),
        due_on: view.due_on.clone(),
        extended: view.row.extended_due_on.is_some(),
        verification: view.row.verification.replace('_', " "),
        required: view.row.required_level.replace('_', " "),
        decision,
        granted: view.granted,
        appeal_open: view.appeal_open,
        appeal_due_on: view.row.appeal_due_on.clone().unwrap_or_default(),
        open,
        overdue: open && due < today,
        nearly_due: open && due >= today && due <= soon,
        assigned_to: view
            .row
            .assigned_to
            .map(|id| format!("#{id}"))
            .unwrap_or_default(),
    }
}

fn jurisdiction_name(state: &AppState, jurisdiction: Jurisdiction) -> String {
    state
        .policy
        .starting()
        .jurisdictions()
        .iter()
        .find(|j| j.id == jurisdiction)
        .map(|j| j.name.clone())
        .unwrap_or_else(|| "Elsewhere".into())
}

// ---------------------------------------------------------------------------------------
// The member's page.

#[derive(askama::Template)]
#[template(path = "requests/account.html")]
struct AccountPage {
    layout: Layout,
    jurisdictions: Vec<(String, String)>,
    chosen: String,
    rights: Vec<(&'static str, &'static str)>,
    due_on: String,
    deadline: String,
    lines: Vec<RequestLine>,
    /// The day the member's standing restriction of processing began (R9), if one stands.
    restricted_since: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct AccountQuery {
    #[serde(default)]
    jurisdiction: String,
}

fn jurisdiction_list(state: &AppState) -> Vec<(String, String)> {
    Jurisdiction::ALL
        .iter()
        .map(|j| (j.as_str().to_string(), jurisdiction_name(state, *j)))
        .collect()
}

/// `/account/privacy`: the rights of the member's jurisdiction, one click each.
pub async fn account_privacy(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<AccountQuery>,
) -> PageResult {
    let signed_in = viewer.require()?;
    let jurisdiction = match query.jurisdiction.trim() {
        "" => residence_of(&state, signed_in.user.user_id).await?,
        chosen => chosen.parse().unwrap_or(Jurisdiction::Other),
    };
    let policy = state.policy.current().await?.policy.clone();
    let profile = rights_for(&policy, jurisdiction);
    let rights = offered_rights(profile.rights.iter().copied());
    let due = state.requests.due_date_today(jurisdiction).await?;
    let views = state
        .requests
        .views(
            state
                .store
                .requests_of_member(signed_in.user.user_id)
                .await?,
        )
        .await?;
    page(&AccountPage {
        layout: Layout::new(&state, &viewer, "Your privacy rights"),
        jurisdictions: jurisdiction_list(&state),
        chosen: jurisdiction.as_str().to_string(),
        rights,
        due_on: due.to_string(),
        deadline: profile.deadline.to_string(),
        lines: views.iter().map(|v| line(&state, v)).collect(),
        restricted_since: state
            .store
            .restrictions_of(signed_in.user.user_id)
            .await?
            .into_iter()
            .find(|r| r.lifted_at.is_none())
            .map(|r| crate::web::pages::date(r.started_at)),
    })
}

/// `POST /account/privacy/restriction/lift`: the member lifts their own restriction (R9).
pub async fn lift_restriction(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<CsrfOnly>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let user_id = viewer.require()?.user.user_id;
    state
        .purpose
        .lift(user_id, user_id, crate::purpose::LiftedBy::Subject)
        .await?;
    Ok(see_other("/account/privacy"))
}

/// The account a request is about, for staff actions on the subject's data.
async fn subject_of_request(state: &AppState, id: i64) -> Result<i64, Error> {
    let row = state
        .store
        .privacy_request(id)
        .await?
        .ok_or(Error::NotFound("request"))?;
    state
        .store
        .submission(row.submission_id)
        .await?
        .and_then(|s| s.subject_user_id)
        .ok_or_else(|| {
            Error::invalid(InvalidField::new(
                "action",
                "needs a request about a member's account",
            ))
        })
}

/// Where a member said they live when they joined: the rights the account page offers first.
async fn residence_of(state: &AppState, user_id: i64) -> Result<Jurisdiction, Error> {
    Ok(state
        .store
        .age_facts_of(user_id)
        .await?
        .and_then(|facts| facts.jurisdiction)
        .and_then(|j| j.parse().ok())
        .unwrap_or(Jurisdiction::Other))
}

#[derive(Deserialize)]
pub struct AccountRequestForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    right: String,
    #[serde(default)]
    jurisdiction: String,
}

pub async fn account_request(
    State(state): State<AppState>,
    viewer: Viewer,
    ClientOrigin(origin): ClientOrigin,
    headers: HeaderMap,
    Form(form): Form<AccountRequestForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let signed_in = viewer.require()?;
    let (right, specific_pieces) = requests::parse_asked(&form.right)
        .ok_or_else(|| Error::invalid(InvalidField::new("right", "is not a known right")))?;
    let jurisdiction: Jurisdiction = form.jurisdiction.parse().unwrap_or(Jurisdiction::Other);
    submit_for_member(
        &state,
        signed_in,
        (vec![right], specific_pieces),
        jurisdiction,
        Channel::Account,
        &origin,
    )
    .await?;
    Ok(see_other(&format!(
        "/account/privacy?jurisdiction={}",
        jurisdiction.as_str()
    )))
}

async fn submit_for_member(
    state: &AppState,
    signed_in: &crate::web::auth::SignedIn,
    (rights, specific_pieces): (Vec<Right>, bool),
    jurisdiction: Jurisdiction,
    channel: Channel,
    origin: &crate::accounts::Origin,
) -> Result<requests::Submitted, Error> {
    let user = state
        .store
        .user_by_id(signed_in.user.user_id)
        .await?
        .ok_or(Error::Unauthenticated)?;
    let email = EmailAddress::parse(&user.email)?;
    state
        .requests
        .submit(Intake {
            channel,
            relationship: Relationship::Subject,
            requester_name: user.username.clone(),
            requester_email: email.clone(),
            subject_email: email,
            country: String::new(),
            state: String::new(),
            postal_code: String::new(),
            jurisdiction,
            rights,
            specific_pieces,
            comments: String::new(),
            emailed_message: None,
            logged_by: None,
            written_opt_out: None,
            session: Some(SessionProof {
                user_id: user.id,
                two_factor: signed_in.user.two_factor != 0,
            }),
            client_ip: origin.ip.expose().clone(),
        })
        .await
}

// ---------------------------------------------------------------------------------------
// The public form.

#[derive(Deserialize, Default)]
pub struct PublicForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    requester_name: String,
    #[serde(default)]
    requester_email: String,
    #[serde(default)]
    relationship: String,
    #[serde(default)]
    subject_email: String,
    #[serde(default)]
    country: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    postal_code: String,
    /// One or more rights, by stored name.
    #[serde(default)]
    rights: Vec<String>,
    #[serde(default)]
    comments: String,
}

#[derive(askama::Template)]
#[template(path = "requests/new.html")]
struct NewRequestPage {
    layout: Layout,
    form: PublicForm,
    errors: Vec<String>,
    rights: Vec<(&'static str, &'static str, bool)>,
}

fn new_request_page(
    state: &AppState,
    viewer: &Viewer,
    form: PublicForm,
    errors: Vec<String>,
) -> NewRequestPage {
    let rights = offered_rights(requests::RIGHTS.iter().map(|(r, _, _)| *r))
        .into_iter()
        .map(|(name, label)| (name, label, form.rights.iter().any(|r| r == name)))
        .collect();
    NewRequestPage {
        layout: Layout::new(state, viewer, "Make a privacy request"),
        form,
        errors,
        rights,
    }
}

pub async fn new_request_form(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    page(&new_request_page(
        &state,
        &viewer,
        PublicForm::default(),
        Vec::new(),
    ))
}

/// The rights asked, by name, and whether access was asked for the specific pieces of data
/// (`access_specific_pieces`, which also asks `access`).
fn parse_rights(names: &[String]) -> Result<(Vec<Right>, bool), Error> {
    let mut rights = Vec::new();
    let mut specific_pieces = false;
    for name in names {
        let (right, specific) = requests::parse_asked(name)
            .ok_or_else(|| Error::invalid(InvalidField::new("rights", "holds an unknown right")))?;
        rights.push(right);
        specific_pieces |= specific;
    }
    Ok((rights, specific_pieces))
}

/// The rights a form offers, by name and label, with the specific pieces of data right after
/// access.
fn offered_rights(rights: impl Iterator<Item = Right>) -> Vec<(&'static str, &'static str)> {
    let mut offered = Vec::new();
    for right in rights.filter(|r| requests::requestable(*r)) {
        offered.push((right_name(right), right_label(right)));
        if right == Right::Access {
            offered.push(requests::SPECIFIC_PIECES);
        }
    }
    offered
}

struct PublicIntake<'a> {
    requester_name: &'a str,
    requester_email: &'a str,
    relationship: &'a str,
    subject_email: &'a str,
    country: &'a str,
    state: &'a str,
    postal_code: &'a str,
    rights: &'a [String],
    comments: &'a str,
}

fn public_intake(
    input: PublicIntake<'_>,
    channel: Channel,
    client_ip: String,
) -> Result<Intake, Error> {
    let mut problems = Vec::new();
    let requester_email = EmailAddress::parse(input.requester_email).map_err(|mut e| {
        e.field = "requester_email";
        e
    });
    let relationship = Relationship::parse(input.relationship);
    let subject_raw =
        if input.subject_email.trim().is_empty() && relationship == Some(Relationship::Subject) {
            input.requester_email
        } else {
            input.subject_email
        };
    let subject_email = EmailAddress::parse(subject_raw).map_err(|mut e| {
        e.field = "subject_email";
        e
    });
    let rights = parse_rights(input.rights);
    if let Err(e) = &requester_email {
        problems.push(e.clone());
    }
    if let Err(e) = &subject_email {
        problems.push(e.clone());
    }
    if relationship.is_none() {
        problems.push(InvalidField::new(
            "relationship",
            "choose self, agent or parent",
        ));
    }
    match &rights {
        Err(Error::Invalid(fields)) => problems.extend(fields.iter().cloned()),
        Err(_) => problems.push(InvalidField::new("rights", "holds an unknown right")),
        Ok(_) => {}
    }
    if !problems.is_empty() {
        return Err(Error::Invalid(problems));
    }
    Ok(Intake {
        channel,
        relationship: relationship.unwrap_or(Relationship::Subject),
        requester_name: input.requester_name.trim().to_string(),
        requester_email: requester_email?,
        subject_email: subject_email?,
        country: input.country.to_string(),
        state: input.state.to_string(),
        postal_code: input.postal_code.to_string(),
        jurisdiction: jurisdiction_of(input.country, input.state),
        rights: rights.as_ref().map(|(r, _)| r.clone()).unwrap_or_default(),
        specific_pieces: rights.is_ok_and(|(_, specific)| specific),
        comments: input.comments.to_string(),
        emailed_message: None,
        logged_by: None,
        written_opt_out: None,
        session: None,
        client_ip,
    })
}

/// `POST /privacy/requests/new`: always the same redirect once the form is valid, so the
/// answer never tells whether the subject's address has an account.
pub async fn new_request(
    State(state): State<AppState>,
    viewer: Viewer,
    ClientOrigin(origin): ClientOrigin,
    headers: HeaderMap,
    axum::extract::RawForm(raw): axum::extract::RawForm,
) -> PageResult {
    // Several `rights` fields: serde_urlencoded cannot gather them into a Vec, so read pairs.
    let pairs: Vec<(String, String)> = crate::web::forms::decode_form(&raw)?;
    let mut form = PublicForm::default();
    for (key, value) in pairs {
        match key.as_str() {
            "csrf" => form.csrf = value,
            "requester_name" => form.requester_name = value,
            "requester_email" => form.requester_email = value,
            "relationship" => form.relationship = value,
            "subject_email" => form.subject_email = value,
            "country" => form.country = value,
            "state" => form.state = value,
            "postal_code" => form.postal_code = value,
            "rights" => form.rights.push(value),
            "comments" => form.comments = value,
            _ => {}
        }
    }
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let intake = public_intake(
        PublicIntake {
            requester_name: &form.requester_name,
            requester_email: &form.requester_email,
            relationship: &form.relationship,
            subject_email: &form.subject_email,
            country: &form.country,
            state: &form.state,
            postal_code: &form.postal_code,
            rights: &form.rights,
            comments: &form.comments,
        },
        Channel::Form,
        origin.ip.expose().clone(),
    );
    let result = match intake {
        Ok(intake) => state.requests.submit(intake).await.map(|_| ()),
        Err(error) => Err(error),
    };
    match result {
        Ok(()) => {
            state.mailer.wake();
            Ok(see_other("/privacy/requests/sent"))
        }
        Err(Error::Invalid(fields)) => {
            let errors = fields.iter().map(|f| f.to_string()).collect();
            page_with_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                &new_request_page(&state, &viewer, form, errors),
            )
        }
        Err(other) => Err(other.into()),
    }
}

pub async fn request_sent(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    message(
        &state,
        &viewer,
        "Check your email",
        vec![
            "Thank you. If the form was complete, we have sent a message with a code to the \
             address of the person the request is about. The request goes on once the code is \
             entered; it closes by itself if nobody confirms it."
                .into(),
        ],
        None,
    )
}

// ---------------------------------------------------------------------------------------
// Verification.

#[derive(askama::Template)]
#[template(path = "requests/verify.html")]
struct VerifyPage {
    layout: Layout,
    token: String,
    error: String,
}

pub async fn verify_form(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(token): Path<String>,
) -> PageResult {
    if !state.requests.verification_link_is_valid(&token).await? {
        return Err(Error::InvalidToken.into());
    }
    page(&VerifyPage {
        layout: Layout::new(&state, &viewer, "Confirm your privacy request"),
        token,
        error: String::new(),
    })
}

#[derive(Deserialize)]
pub struct VerifyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    fact: String,
}

pub async fn verify(
    State(state): State<AppState>,
    viewer: Viewer,
    ClientOrigin(origin): ClientOrigin,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(form): Form<VerifyForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    match state
        .requests
        .verify_code(&token, &form.code, &form.fact, origin.ip.expose())
        .await
    {
        Ok(verified) => {
            state.mailer.wake();
            if verified.waiting_for_evidence {
                return message(
                    &state,
                    &viewer,
                    "Thank you for confirming",
                    vec!["The request goes on as soon as we have the agent's evidence.".into()],
                    Some((verified.status_link, "Follow the request".into())),
                );
            }
            let location = verified
                .status_link
                .strip_prefix(state.config.base_url())
                .unwrap_or(&verified.status_link)
                .to_string();
            Ok(see_other(&location))
        }
        Err(Error::InvalidSecondFactor) => page_with_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &VerifyPage {
                layout: Layout::new(&state, &viewer, "Confirm your privacy request"),
                token,
                error: "That code is wrong. Check the latest message we sent.".into(),
            },
        ),
        Err(Error::Invalid(fields)) if fields.iter().any(|f| f.field == "fact") => {
            page_with_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                &VerifyPage {
                    layout: Layout::new(&state, &viewer, "Confirm your privacy request"),
                    token,
                    error: "That does not match what we hold. Try again, or leave it empty to \
                            confirm with the code alone (some requests then wait for more)."
                        .into(),
                },
            )
        }
        Err(other) => Err(other.into()),
    }
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

pub async fn resend_code(
    State(state): State<AppState>,
    viewer: Viewer,
    ClientOrigin(origin): ClientOrigin,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    state
        .requests
        .resend_code(&token, origin.ip.expose())
        .await?;
    state.mailer.wake();
    message(
        &state,
        &viewer,
        "A new code is on its way",
        vec!["We sent a new code with a new link; the old link no longer works.".into()],
        None,
    )
}

// ---------------------------------------------------------------------------------------
// The status page: decision, appeal, withdrawal, evidence.

#[derive(askama::Template)]
#[template(path = "requests/status.html")]
struct StatusPage {
    layout: Layout,
    token: String,
    lines: Vec<RequestLine>,
    needs_evidence: bool,
    /// The day the requester consented as the minor's parent, when that is the evidence.
    consent_on_record: String,
    evidence_count: usize,
    max_evidence_kib: usize,
    regulator: Option<(String, String)>,
}

pub async fn status_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(token): Path<String>,
) -> PageResult {
    let (submission, views) = state.requests.by_token(&token).await?;
    let evidence = state.store.submission_evidence(submission.id).await?;
    let consent = match submission.parental_consent_id {
        Some(id) => state.store.consent_evidence(id).await?,
        None => None,
    };
    let relationship =
        Relationship::parse(&submission.relationship).unwrap_or(Relationship::Subject);
    let policy = state.policy.current().await?.policy.clone();
    let jurisdiction: Jurisdiction = submission
        .jurisdiction
        .parse()
        .unwrap_or(Jurisdiction::Other);
    let regulator = rights_for(&policy, jurisdiction)
        .regulator
        .map(|r| (r.name, r.url));
    page(&StatusPage {
        layout: Layout::new(&state, &viewer, "Your privacy request"),
        token,
        lines: views.iter().map(|v| line(&state, v)).collect(),
        needs_evidence: relationship.acts_for_another() && consent.is_none(),
        consent_on_record: consent.map(|c| date(c.consented_at)).unwrap_or_default(),
        evidence_count: evidence.len(),
        max_evidence_kib: state.config.requests.evidence_max_bytes / 1024,
        regulator,
    })
}

#[derive(Deserialize)]
pub struct AppealForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    request_id: i64,
    #[serde(default)]
    statement: String,
}

pub async fn appeal(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(form): Form<AppealForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    state
        .requests
        .lodge_appeal(&token, form.request_id, &form.statement)
        .await?;
    Ok(see_other(&format!("/privacy/requests/status/{token}")))
}

#[derive(Deserialize)]
pub struct WithdrawForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    request_id: i64,
}

pub async fn withdraw(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(form): Form<WithdrawForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    state.requests.withdraw(&token, form.request_id).await?;
    Ok(see_other(&format!("/privacy/requests/status/{token}")))
}

/// `POST /privacy/requests/status/{token}/evidence`: a multipart form with `csrf` and one
/// `evidence` file; its type is read from its first bytes.
pub async fn upload_evidence(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(token): Path<String>,
    mut multipart: Multipart,
) -> PageResult {
    let mut csrf = String::new();
    let mut file: Option<Vec<u8>> = None;
    let limit = state.config.requests.evidence_max_bytes;
    let too_large = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::PayloadTooLarge
        } else {
            Error::BadRequest("the upload could not be read".into())
        }
    };
    while let Some(field) = multipart.next_field().await.map_err(too_large)? {
        match field.name() {
            Some("csrf") => csrf = field.text().await.map_err(too_large)?,
            Some("evidence") => {
                let bytes = field.bytes().await.map_err(too_large)?;
                if bytes.len() > limit {
                    return Err(Error::PayloadTooLarge.into());
                }
                file = Some(bytes.to_vec());
            }
            _ => {}
        }
    }
    check_form(&state, &viewer, &headers, &csrf)?;
    let bytes =
        file.ok_or_else(|| Error::invalid(InvalidField::new("evidence", "choose a file")))?;
    state.requests.add_evidence(&token, &bytes).await?;
    state.mailer.wake();
    Ok(see_other(&format!("/privacy/requests/status/{token}")))
}

// ---------------------------------------------------------------------------------------
// Staff console.

fn require_privacy_staff(viewer: &Viewer) -> Result<i64, Error> {
    let signed_in = viewer.require()?;
    signed_in.actor().require_privacy_staff()?;
    Ok(signed_in.user.user_id)
}

/// Who may read the staff queue and request pages, and for what purpose: privacy staff
/// handle requests; a support agent helps the requesters of the requests assigned to them.
/// Both with 2-step verification on.
fn request_reader(viewer: &Viewer) -> Result<(i64, Role, StaffPurpose), Error> {
    let signed_in = viewer.require()?;
    let actor = signed_in.actor();
    let purpose = match actor.role {
        role if role.handles_privacy_requests() => StaffPurpose::RequestHandling,
        Role::SupportAgent => StaffPurpose::AccountSupport,
        _ => return Err(Error::Forbidden),
    };
    if !actor.two_factor {
        return Err(Error::SecondFactorEnrolmentRequired);
    }
    Ok((actor.user_id, actor.role, purpose))
}

#[derive(Deserialize, Default)]
pub struct QueueQuery {
    #[serde(default)]
    right: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    jurisdiction: String,
    #[serde(default)]
    mine: String,
    #[serde(default)]
    all: String,
    #[serde(default)]
    page: Option<String>,
}

/// Requests per page of the staff queue.
pub const QUEUE_PAGE_SIZE: i64 = 50;

impl QueueQuery {
    /// The filters as a query string every page link keeps (`…&`), the page number left out.
    fn filters(&self) -> String {
        let pairs: Vec<(&str, &str)> = [
            ("right", self.right.as_str()),
            ("state", self.state.as_str()),
            ("jurisdiction", self.jurisdiction.as_str()),
            ("mine", self.mine.as_str()),
            ("all", self.all.as_str()),
        ]
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .collect();
        match serde_urlencoded::to_string(pairs) {
            Ok(text) if !text.is_empty() => format!("{text}&"),
            _ => String::new(),
        }
    }
}

#[derive(askama::Template)]
#[template(path = "requests/staff_queue.html")]
struct QueuePage {
    layout: Layout,
    query: QueueQuery,
    lines: Vec<QueueLine>,
    rights: Vec<(&'static str, &'static str)>,
    states: Vec<&'static str>,
    jurisdictions: Vec<(String, String)>,
    overdue: i64,
    nearly_due: i64,
    total: i64,
    pager: Pager,
}

pub struct QueueLine {
    id: i64,
    right: &'static str,
    jurisdiction: String,
    state: String,
    channel: String,
    relationship: String,
    received_on: String,
    due_on: String,
    overdue: bool,
    nearly_due: bool,
    assigned_to: String,
}

fn empty_none(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

pub async fn staff_queue(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<QueueQuery>,
) -> PageResult {
    let (staff_id, role, _) = request_reader(&viewer)?;
    // A support agent's queue holds only the requests assigned to them.
    let mine = !query.mine.is_empty() || role == Role::SupportAgent;
    let filter = QueueFilter {
        right_name: empty_none(&query.right),
        state: empty_none(&query.state),
        jurisdiction: empty_none(&query.jurisdiction),
        assigned_to: mine.then_some(staff_id),
        open_only: query.all.is_empty() && query.state.is_empty(),
    };
    let current = PageQuery {
        page: query.page.clone(),
    }
    .number()?;
    let total = state.store.count_request_queue(&filter).await?;
    let count = page_count(total, QUEUE_PAGE_SIZE);
    if current > count {
        return Err(Error::NotFound("page").into());
    }
    let rows = state
        .store
        .request_queue_page(&filter, QUEUE_PAGE_SIZE, (current - 1) * QUEUE_PAGE_SIZE)
        .await?;
    // The alarms count every open request, not only this page's.
    let (overdue, nearly_due) = state.requests.alarm_counts(crate::now()).await?;
    let today = requests::day_of(crate::now());
    let soon = today.saturating_add(time::Duration::days(state.config.requests.nearly_due_days));
    let lines: Vec<QueueLine> = rows
        .into_iter()
        .map(|row| {
            let due_on = row
                .appeal_due_on
                .clone()
                .or(row.extended_due_on.clone())
                .unwrap_or(row.due_on.clone());
            let due = requests::parse_iso(&due_on).unwrap_or(today);
            let open = RequestState::parse(&row.state).is_ok_and(|s| !s.is_terminal());
            QueueLine {
                id: row.id,
                right: parse_right(&row.right_name)
                    .map(|right| requests::asked_label(right, row.specific_pieces != 0))
                    .unwrap_or("?"),
                jurisdiction: jurisdiction_name(
                    &state,
                    row.jurisdiction.parse().unwrap_or(Jurisdiction::Other),
                ),
                state: RequestState::parse(&row.state)
                    .map(state_words)
                    .unwrap_or("?")
                    .to_string(),
                channel: row.channel,
                relationship: row.relationship,
                received_on: row.received_on,
                due_on,
                overdue: open && due < today,
                nearly_due: open && due >= today && due <= soon,
                assigned_to: row
                    .assigned_to
                    .map(|id| format!("#{id}"))
                    .unwrap_or_default(),
            }
        })
        .collect();
    page(&QueuePage {
        layout: Layout::new(&state, &viewer, "Privacy requests"),
        overdue,
        nearly_due,
        total,
        pager: Pager {
            base: "/staff/requests".into(),
            query: query.filters(),
            current,
            count,
        },
        query,
        lines,
        rights: requests::RIGHTS.iter().map(|(_, n, l)| (*n, *l)).collect(),
        states: RequestState::ALL.iter().map(|s| s.as_str()).collect(),
        jurisdictions: jurisdiction_list(&state),
    })
}

#[derive(askama::Template)]
#[template(path = "requests/staff_request.html")]
struct StaffRequestPage {
    layout: Layout,
    line: RequestLine,
    submission: SubmissionRow,
    received: String,
    notes: Vec<(String, String, String)>,
    evidence: Vec<(i64, String, i64, String)>,
    /// A parent's consent standing as evidence: its number, day and policy version.
    consent: Option<(i64, String, String)>,
    siblings: Vec<i64>,
    templates: Vec<(&'static str, &'static str)>,
    codes: Vec<(&'static str, &'static str)>,
    appealed: bool,
    decided_by: String,
    /// Privacy staff see everything and act; a support agent sees contact data only.
    acts: bool,
}

pub async fn staff_request(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> PageResult {
    let (staff_id, role, purpose) = request_reader(&viewer)?;
    let (submission, view) = state.requests.view(id).await?;
    state
        .purpose
        .staff_read(&StaffRead {
            staff_id,
            role,
            purpose,
            subject: submission.subject_user_id,
            categories: &[inventory::EMAIL, inventory::REQUESTS],
            assigned_to_me: view.row.assigned_to == Some(staff_id),
            request: Some(id),
            count: None,
            item: None,
        })
        .await?;
    let acts = role.handles_privacy_requests();
    let notes = state
        .store
        .request_notes(id)
        .await?
        .into_iter()
        .map(|n| {
            (
                date(n.created_at),
                n.author_id
                    .map(|a| format!("#{a}"))
                    .unwrap_or_else(|| "requester".into()),
                n.body,
            )
        })
        .collect();
    let evidence = state
        .store
        .submission_evidence(submission.id)
        .await?
        .into_iter()
        .map(|e| (e.id, e.content_type, e.size_bytes, e.sha256))
        .collect();
    let consent = match submission.parental_consent_id {
        Some(consent_id) => state.store.consent_evidence(consent_id).await?.map(|c| {
            (
                c.id,
                date(c.consented_at),
                c.policy_version.unwrap_or_default(),
            )
        }),
        None => None,
    };
    let siblings = state
        .store
        .requests_of_submission(submission.id)
        .await?
        .into_iter()
        .map(|r| r.id)
        .filter(|r| *r != id)
        .collect();
    page(&StaffRequestPage {
        layout: Layout::new(&state, &viewer, format!("Privacy request #{id}")),
        received: date(submission.created_at),
        appealed: view.state() == RequestState::Appealed,
        decided_by: view
            .status
            .decided_by()
            .map(|s| format!("#{}", s.0))
            .unwrap_or_default(),
        line: line(&state, &view),
        submission,
        acts,
        notes,
        evidence,
        consent,
        siblings,
        templates: Template::ALL
            .iter()
            .map(|t| (t.as_str(), t.label()))
            .collect(),
        codes: DeclineCode::ALL
            .iter()
            .map(|c| (c.as_str(), c.explanation()))
            .collect(),
    })
}

/// `GET /staff/requests/{id}/evidence/{evidence_id}`: one evidence file, for privacy staff
/// only, as a download the browser neither renders, sniffs nor keeps; each opening is audited.
pub async fn staff_evidence(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((id, evidence_id)): Path<(i64, i64)>,
) -> PageResult {
    let staff_id = require_privacy_staff(&viewer)?;
    let evidence = state
        .requests
        .open_evidence(staff_id, id, evidence_id)
        .await?;
    let disposition = format!("attachment; filename=\"{}\"", evidence.file_name());
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, evidence.content_type.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (header::CACHE_CONTROL, "no-store, private".to_string()),
        ],
        evidence.bytes,
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct StaffActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    template: String,
    #[serde(default)]
    assignee: String,
    #[serde(default)]
    field: String,
}

/// What staff can do to a request, for the page and the API alike.
struct ActionInput<'a> {
    action: &'a str,
    text: &'a str,
    code: &'a str,
    template: &'a str,
    assignee: &'a str,
    /// The profile field a rectification corrects; `text` is its new value.
    field: &'a str,
}

async fn staff_act(
    state: &AppState,
    staff_id: i64,
    id: i64,
    input: ActionInput<'_>,
) -> Result<(), Error> {
    let r = &state.requests;
    let ActionInput {
        action,
        text,
        code,
        template,
        assignee,
        field,
    } = input;
    match action {
        "lift_restriction" => {
            let subject = subject_of_request(state, id).await?;
            if state
                .purpose
                .lift(subject, staff_id, crate::purpose::LiftedBy::Staff)
                .await?
            {
                Ok(())
            } else {
                Err(Error::invalid(InvalidField::new(
                    "action",
                    "no restriction stands",
                )))
            }
        }
        "rectify" => {
            let subject = subject_of_request(state, id).await?;
            state
                .fulfilment
                .rectify(staff_id, subject, Some(id), field, text)
                .await
        }
        "assign" => {
            let assignee = if assignee.trim().is_empty() {
                Some(staff_id)
            } else {
                Some(
                    assignee
                        .trim()
                        .trim_start_matches('#')
                        .parse()
                        .map_err(|_| {
                            Error::invalid(InvalidField::new(
                                "assignee",
                                "must be a member's number",
                            ))
                        })?,
                )
            };
            r.assign(staff_id, id, assignee).await
        }
        "unassign" => r.assign(staff_id, id, None).await,
        "note" => r.add_note(staff_id, id, text).await,
        "template" => {
            let template = Template::parse(template).ok_or_else(|| {
                Error::invalid(InvalidField::new("template", "is not a known template"))
            })?;
            r.send_template(staff_id, id, template).await
        }
        "fulfil" => r.decide(staff_id, id, Decision::Fulfilled).await,
        "partly" => {
            r.decide(
                staff_id,
                id,
                Decision::PartlyFulfilled {
                    reason: text.trim().to_string(),
                },
            )
            .await
        }
        "decline" => {
            let code = DeclineCode::parse(code)
                .map_err(|_| Error::invalid(InvalidField::new("code", "choose a reason")))?;
            r.decide(
                staff_id,
                id,
                Decision::Declined {
                    code,
                    explanation: text.trim().to_string(),
                },
            )
            .await
        }
        "extend" => r.extend(staff_id, id, text).await.map(|_| ()),
        "uphold" => r.decide_appeal(staff_id, id, true, text).await,
        "reverse" => r.decide_appeal(staff_id, id, false, text).await,
        _ => Err(Error::invalid(InvalidField::new(
            "action",
            "is not a known action",
        ))),
    }
}

pub async fn staff_action(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<StaffActionForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let staff_id = require_privacy_staff(&viewer)?;
    staff_act(
        &state,
        staff_id,
        id,
        ActionInput {
            action: &form.action,
            text: &form.text,
            code: &form.code,
            template: &form.template,
            assignee: &form.assignee,
            field: &form.field,
        },
    )
    .await?;
    state.mailer.wake();
    Ok(see_other(&format!("/staff/requests/{id}")))
}

#[derive(askama::Template)]
#[template(path = "requests/staff_log.html")]
struct LogPage {
    layout: Layout,
    rights: Vec<(&'static str, &'static str)>,
    errors: Vec<String>,
}

pub async fn staff_log_form(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    require_privacy_staff(&viewer)?;
    page(&LogPage {
        layout: Layout::new(&state, &viewer, "Log a request received by email"),
        rights: offered_rights(requests::RIGHTS.iter().map(|(r, _, _)| *r)),
        errors: Vec::new(),
    })
}

/// Staff log a request that arrived by email, with the message attached. A subject line of
/// "California Opt-Out" or "Nevada Sale Opt-Out" makes it a written opt-out.
pub async fn staff_log(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    axum::extract::RawForm(raw): axum::extract::RawForm,
) -> PageResult {
    let pairs: Vec<(String, String)> = crate::web::forms::decode_form(&raw)?;
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    check_form(&state, &viewer, &headers, &get("csrf"))?;
    let staff_id = require_privacy_staff(&viewer)?;
    let subject_line = get("subject_line");
    let written = crate::consent::WrittenOptOut::parse(&subject_line);
    let mut rights: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "rights")
        .map(|(_, v)| v.clone())
        .collect();
    if rights.is_empty() {
        match written {
            Some(crate::consent::WrittenOptOut::California) => {
                rights = vec!["opt_out_sale".into(), "opt_out_targeted_advertising".into()]
            }
            Some(crate::consent::WrittenOptOut::NevadaSale) => rights = vec!["opt_out_sale".into()],
            None => {}
        }
    }
    let mut intake = public_intake(
        PublicIntake {
            requester_name: &get("requester_name"),
            requester_email: &get("requester_email"),
            relationship: &get("relationship"),
            subject_email: &get("subject_email"),
            country: &get("country"),
            state: &get("state"),
            postal_code: &get("postal_code"),
            rights: &rights,
            comments: &get("comments"),
        },
        Channel::Email,
        String::new(),
    )?;
    let message_text = get("emailed_message");
    intake.emailed_message = Some(format!("Subject: {subject_line}\n\n{message_text}"));
    intake.logged_by = Some(staff_id);
    intake.written_opt_out = written;
    let submitted = state.requests.submit(intake).await?;
    state.mailer.wake();
    let first = submitted.request_ids.first().copied().unwrap_or_default();
    Ok(see_other(&format!("/staff/requests/{first}")))
}

#[derive(Deserialize, Default)]
pub struct ReportQuery {
    #[serde(default)]
    year: String,
}

#[derive(askama::Template)]
#[template(path = "requests/staff_report.html")]
struct ReportPage {
    layout: Layout,
    report: requests::report::Report,
    chart: String,
    days_chart: String,
    months: Vec<requests::report::MonthFigures>,
}

impl ReportPage {
    fn num(&self, value: &Option<f64>) -> String {
        value
            .map(|v| format!("{v:.1}"))
            .unwrap_or_else(|| "–".into())
    }
    fn reasons(&self, f: &requests::report::RightFigures) -> String {
        f.denied_by_reason
            .iter()
            .map(|(reason, n)| format!("{reason}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub async fn staff_report(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<ReportQuery>,
) -> PageResult {
    require_privacy_staff(&viewer)?;
    let year = query
        .year
        .trim()
        .parse()
        .unwrap_or_else(|_| requests::day_of(crate::now()).year());
    let report = requests::report::for_year(&state.store, year).await?;
    page(&ReportPage {
        layout: Layout::new(&state, &viewer, format!("Privacy requests in {year}")),
        chart: report.svg(),
        days_chart: report.days_to_close_svg(),
        months: report.months(),
        report,
    })
}

/// `/metrics`: Prometheus text format.
pub async fn metrics(
    State(state): State<AppState>,
) -> Result<Response, crate::web::error::PageError> {
    let (overdue, nearly_due) = state.requests.alarm_counts(crate::now()).await?;
    let body = format!(
        "# HELP covenant_privacy_requests_overdue Open privacy requests past their due date.\n\
         # TYPE covenant_privacy_requests_overdue gauge\n\
         covenant_privacy_requests_overdue {overdue}\n\
         # HELP covenant_privacy_requests_nearly_due Open privacy requests due within the warning window.\n\
         # TYPE covenant_privacy_requests_nearly_due gauge\n\
         covenant_privacy_requests_nearly_due {nearly_due}\n"
    );
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------
// JSON API.

#[derive(Deserialize, ToSchema)]
pub struct NewPrivacyRequest {
    /// Ignored for a signed-in member asking for themselves.
    #[serde(default)]
    requester_name: String,
    #[serde(default)]
    requester_email: String,
    /// `self`, `agent` or `parent`.
    #[serde(default)]
    relationship: String,
    #[serde(default)]
    subject_email: String,
    /// ISO country code or name (US, DE, GB…). A signed-in member who gives neither country
    /// nor state asks under the residence given when joining.
    #[serde(default)]
    country: String,
    /// US state code or name, when in the United States.
    #[serde(default)]
    state: String,
    #[serde(default)]
    postal_code: String,
    /// Stored names of rights: know, access, portability, deletion, opt_out_sale…, or
    /// `access_specific_pieces` for access to the specific pieces of data held, which needs a
    /// session or the emailed code plus one more held fact.
    #[serde(default)]
    rights: Vec<String>,
    #[serde(default)]
    comments: String,
}

#[derive(Serialize, ToSchema)]
pub struct PrivacyRequestAccepted {
    /// Always `check_email` for visitors: the same whether or not the address has an account.
    status: &'static str,
    /// The request ids, only for a signed-in member asking for themselves.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    request_ids: Vec<i64>,
}

/// Make a privacy request. Signed in (bearer token): about yourself, verified by the session.
/// Otherwise: a code is emailed to the subject, and the answer is the same for every address.
#[utoipa::path(post, path = "/api/v1/privacy-requests", request_body = NewPrivacyRequest,
    responses((status = 201, body = PrivacyRequestAccepted), (status = 202, body = PrivacyRequestAccepted),
        (status = 422, body = ApiErrorBody), (status = 429, body = ApiErrorBody)))]
pub async fn api_create(
    State(state): State<AppState>,
    viewer: Viewer,
    ClientOrigin(origin): ClientOrigin,
    Json(body): Json<NewPrivacyRequest>,
) -> ApiResult<Response> {
    if let Some(signed_in) = &viewer.0
        && matches!(body.relationship.as_str(), "" | "self")
    {
        let rights = parse_rights(&body.rights)?;
        // No place given: where the member said they live when they joined.
        let jurisdiction = if body.country.trim().is_empty() && body.state.trim().is_empty() {
            residence_of(&state, signed_in.user.user_id).await?
        } else {
            jurisdiction_of(&body.country, &body.state)
        };
        let submitted = submit_for_member(
            &state,
            signed_in,
            rights,
            jurisdiction,
            Channel::Api,
            &origin,
        )
        .await?;
        state.mailer.wake();
        return Ok((
            StatusCode::CREATED,
            axum::Json(PrivacyRequestAccepted {
                status: "received",
                request_ids: submitted.request_ids,
            }),
        )
            .into_response());
    }
    let intake = public_intake(
        PublicIntake {
            requester_name: &body.requester_name,
            requester_email: &body.requester_email,
            relationship: &body.relationship,
            subject_email: &body.subject_email,
            country: &body.country,
            state: &body.state,
            postal_code: &body.postal_code,
            rights: &body.rights,
            comments: &body.comments,
        },
        Channel::Api,
        origin.ip.expose().clone(),
    )?;
    state.requests.submit(intake).await?;
    state.mailer.wake();
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(PrivacyRequestAccepted {
            status: "check_email",
            request_ids: Vec::new(),
        }),
    )
        .into_response())
}

#[derive(Deserialize, ToSchema)]
pub struct VerifyRequestBody {
    /// The token at the end of the emailed verification link.
    #[serde(default)]
    token: String,
    #[serde(default)]
    code: String,
    /// One held fact (the account's username or birth year) for the higher level.
    #[serde(default)]
    fact: String,
}

#[derive(Serialize, ToSchema)]
pub struct VerifiedBody {
    /// `email_code` or `email_code_plus_fact`.
    verification: String,
    /// A link to the status page.
    status_link: String,
    waiting_for_evidence: bool,
}

/// Enter the emailed code of a privacy request.
#[utoipa::path(post, path = "/api/v1/privacy-requests/verify", request_body = VerifyRequestBody,
    responses((status = 200, body = VerifiedBody), (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody), (status = 429, body = ApiErrorBody)))]
pub async fn api_verify(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Json(body): Json<VerifyRequestBody>,
) -> ApiResult<axum::Json<VerifiedBody>> {
    let verified = state
        .requests
        .verify_code(&body.token, &body.code, &body.fact, origin.ip.expose())
        .await?;
    state.mailer.wake();
    Ok(axum::Json(VerifiedBody {
        verification: verified.level.as_str().to_string(),
        status_link: verified.status_link,
        waiting_for_evidence: verified.waiting_for_evidence,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct PrivacyRequestBody {
    id: i64,
    right: String,
    jurisdiction: String,
    state: String,
    /// The level of proof of identity reached so far: none, email_code,
    /// email_code_plus_fact, session or session_2fa.
    verification: String,
    /// The level the request needs before it is handled.
    required_level: String,
    /// Access asked for the specific pieces of data held (which needs the higher level).
    specific_pieces: bool,
    received_on: String,
    due_on: String,
    decline_code: Option<String>,
    decision: Option<String>,
    appeal_open: bool,
}

fn request_body(view: &RequestView) -> PrivacyRequestBody {
    PrivacyRequestBody {
        id: view.row.id,
        right: view.row.right_name.clone(),
        jurisdiction: view.row.jurisdiction.clone(),
        state: view.row.state.clone(),
        verification: view.row.verification.clone(),
        required_level: view.row.required_level.clone(),
        specific_pieces: view.row.specific_pieces != 0,
        received_on: view.row.received_on.clone(),
        due_on: view.due_on.clone(),
        decline_code: view.row.decline_code.clone(),
        decision: view.status.reason().map(str::to_string),
        appeal_open: view.appeal_open,
    }
}

/// The signed-in member's own privacy requests.
#[utoipa::path(get, path = "/api/v1/privacy-requests", security(("bearer" = [])),
    responses((status = 200, body = [PrivacyRequestBody]), (status = 401, body = ApiErrorBody)))]
pub async fn api_mine(
    State(state): State<AppState>,
    viewer: Viewer,
) -> ApiResult<axum::Json<Vec<PrivacyRequestBody>>> {
    let signed_in = viewer.require()?;
    let views = state
        .requests
        .views(
            state
                .store
                .requests_of_member(signed_in.user.user_id)
                .await?,
        )
        .await?;
    Ok(axum::Json(views.iter().map(request_body).collect()))
}

#[derive(Deserialize, ToSchema)]
pub struct AppealBody {
    /// The token of the status link.
    #[serde(default)]
    token: String,
    #[serde(default)]
    request_id: i64,
    #[serde(default)]
    statement: String,
}

/// Appeal a decision, with the token of the status link from the decision email.
#[utoipa::path(post, path = "/api/v1/privacy-requests/appeal", request_body = AppealBody,
    responses((status = 204), (status = 400, body = ApiErrorBody), (status = 409, body = ApiErrorBody)))]
pub async fn api_appeal(
    State(state): State<AppState>,
    Json(body): Json<AppealBody>,
) -> ApiResult<StatusCode> {
    state
        .requests
        .lodge_appeal(&body.token, body.request_id, &body.statement)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
pub struct StatusLinkBody {
    /// The token of the status link (from the email that acknowledged the request or
    /// brought a decision).
    #[serde(default)]
    token: String,
}

#[derive(Serialize, ToSchema)]
pub struct RequestStatusBody {
    /// self, agent or parent.
    relationship: String,
    requests: Vec<PrivacyRequestBody>,
}

/// Where the requests behind a status link stand: what the status page shows, for a
/// requester or an agent without an account. The token travels in the body, not the URL.
#[utoipa::path(post, path = "/api/v1/privacy-requests/status", request_body = StatusLinkBody,
    responses((status = 200, body = RequestStatusBody), (status = 400, body = ApiErrorBody)))]
pub async fn api_status(
    State(state): State<AppState>,
    Json(body): Json<StatusLinkBody>,
) -> ApiResult<axum::Json<RequestStatusBody>> {
    let (submission, views) = state.requests.by_token(&body.token).await?;
    Ok(axum::Json(RequestStatusBody {
        relationship: submission.relationship,
        requests: views.iter().map(request_body).collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct WithdrawBody {
    /// The token of the status link.
    #[serde(default)]
    token: String,
    #[serde(default)]
    request_id: i64,
}

/// Withdraw a request that is not decided yet, with the token of the status link.
#[utoipa::path(post, path = "/api/v1/privacy-requests/withdraw", request_body = WithdrawBody,
    responses((status = 204), (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
        (status = 409, body = ApiErrorBody)))]
pub async fn api_withdraw(
    State(state): State<AppState>,
    Json(body): Json<WithdrawBody>,
) -> ApiResult<StatusCode> {
    state
        .requests
        .withdraw(&body.token, body.request_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
pub struct EvidenceBody {
    /// The token of the status link the agent or parent received.
    #[serde(default)]
    token: String,
    /// The file (PDF, PNG or JPEG, at most `requests.evidence_max_bytes`), base64-encoded.
    #[serde(default)]
    content_base64: String,
}

/// An agent's or parent's evidence (a power of attorney or signed letter): its type is read
/// from its first bytes. With the subject's confirmation the request goes on.
#[utoipa::path(post, path = "/api/v1/privacy-requests/evidence", request_body = EvidenceBody,
    responses((status = 204), (status = 400, body = ApiErrorBody), (status = 409, body = ApiErrorBody),
        (status = 413, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
pub async fn api_evidence(
    State(state): State<AppState>,
    Json(body): Json<EvidenceBody>,
) -> ApiResult<StatusCode> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body.content_base64.trim())
        .map_err(|_| {
            Error::invalid(InvalidField::new(
                "content_base64",
                "must be base64 (RFC 4648)",
            ))
        })?;
    if bytes.is_empty() {
        return Err(Error::invalid(InvalidField::new("content_base64", "choose a file")).into());
    }
    state.requests.add_evidence(&body.token, &bytes).await?;
    state.mailer.wake();
    Ok(StatusCode::NO_CONTENT)
}

/// The most requests one page of the staff queue API holds, and how many when not asked.
pub const API_QUEUE_MAX: i64 = 200;
pub const API_QUEUE_DEFAULT: i64 = 50;

#[derive(Deserialize, IntoParams)]
pub struct QueueParams {
    /// How many requests to return: 1 to 200, 50 when left out.
    limit: Option<i64>,
    /// The `next` value of the previous page; left out for the first page.
    after: Option<String>,
    /// Only this right (its stored name, such as `access`).
    right: Option<String>,
    /// Only this state (such as `verifying`); naming one includes decided requests.
    state: Option<String>,
    /// Only this jurisdiction (such as `california`).
    jurisdiction: Option<String>,
    /// `true` to include decided requests.
    all: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct QueuePageBody {
    /// Earliest due first, then by number.
    requests: Vec<PrivacyRequestBody>,
    /// Pass as `after` to get the next page; `null` on the last page.
    next: Option<String>,
}

fn parse_cursor(text: &str) -> Option<store::QueueCursor> {
    let (day, id) = text.trim().split_once('.')?;
    requests::parse_iso(day)?;
    let id: i64 = id.parse().ok().filter(|id| *id > 0)?;
    Some(store::QueueCursor {
        due_on: day.to_string(),
        id,
    })
}

/// The staff queue, earliest due first, one page at a time (privacy officers and
/// administrators with 2FA). Walk it by passing each page's `next` as `after` until `next` is
/// `null`: every request the filters select comes once, even while others are decided.
#[utoipa::path(get, path = "/api/v1/staff/privacy-requests", params(QueueParams),
    security(("bearer" = [])),
    responses((status = 200, body = QueuePageBody), (status = 400, body = ApiErrorBody),
        (status = 403, body = ApiErrorBody)))]
pub async fn api_queue(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(params): Query<QueueParams>,
) -> ApiResult<axum::Json<QueuePageBody>> {
    require_privacy_staff(&viewer)?;
    let limit = params.limit.unwrap_or(API_QUEUE_DEFAULT);
    if !(1..=API_QUEUE_MAX).contains(&limit) {
        return Err(Error::BadRequest(format!("limit must be 1 to {API_QUEUE_MAX}")).into());
    }
    let after = match params.after.as_deref().filter(|a| !a.trim().is_empty()) {
        None => None,
        Some(text) => Some(parse_cursor(text).ok_or_else(|| {
            Error::BadRequest("after must be the next value of a previous page".into())
        })?),
    };
    let text = |value: &Option<String>| value.as_deref().and_then(empty_none);
    let filter = QueueFilter {
        right_name: text(&params.right),
        state: text(&params.state),
        jurisdiction: text(&params.jurisdiction),
        assigned_to: None,
        open_only: !params.all.unwrap_or(false) && text(&params.state).is_none(),
    };
    // One more than asked says whether a next page exists without a second query.
    let mut rows = state
        .store
        .request_queue_after(&filter, after.as_ref(), limit + 1)
        .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = rows
        .last()
        .filter(|_| more)
        .map(store::QueueCursor::of)
        .map(|c| format!("{}.{}", c.due_on, c.id));
    let views = state.requests.views(rows).await?;
    Ok(axum::Json(QueuePageBody {
        requests: views.iter().map(request_body).collect(),
        next,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct StaffActionBody {
    /// assign, unassign, note, template, fulfil, partly, decline, extend, uphold, reverse,
    /// rectify (a profile `field` set to `text`), lift_restriction.
    action: String,
    /// The note, reason, explanation or appeal decision's reason.
    #[serde(default)]
    text: String,
    /// For `decline`: cannot_verify, not_found, not_resident, legal_exception,
    /// manifestly_unfounded.
    #[serde(default)]
    code: String,
    #[serde(default)]
    template: String,
    #[serde(default)]
    assignee: String,
    /// For `rectify`: the profile field corrected (`bio`).
    #[serde(default)]
    field: String,
}

/// Act on a request as privacy staff: assign, note, message, decide, extend, decide an appeal.
#[utoipa::path(post, path = "/api/v1/staff/privacy-requests/{id}/actions", request_body = StaffActionBody,
    params(("id" = i64, Path, description = "request id")), security(("bearer" = [])),
    responses((status = 200, body = PrivacyRequestBody), (status = 403, body = ApiErrorBody),
        (status = 409, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
pub async fn api_staff_action(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Json(body): Json<StaffActionBody>,
) -> ApiResult<axum::Json<PrivacyRequestBody>> {
    let staff_id = require_privacy_staff(&viewer)?;
    staff_act(
        &state,
        staff_id,
        id,
        ActionInput {
            action: &body.action,
            text: &body.text,
            code: &body.code,
            template: &body.template,
            assignee: &body.assignee,
            field: &body.field,
        },
    )
    .await?;
    state.mailer.wake();
    let (_, view) = state.requests.view(id).await?;
    Ok(axum::Json(request_body(&view)))
}
