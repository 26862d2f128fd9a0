//! The privacy-request workflow (promises R1-R6, R10): intake from the account, the public
//! form, staff logging an email and the API; identity verification (session or emailed code,
//! plus a held fact for the higher level); agents' evidence and the subject's confirmation;
//! clocks, extensions and alarms; decisions, appeals and the yearly report.
//!
//! Every move of a request goes through the core's `transition` and is audited in the same
//! transaction. What a right does to the data is not decided here: verified requests are handed
//! to [`Fulfilment`]. Personal values never reach logs or audit entries, only ids.

mod fulfilment;
pub mod messages;
pub mod report;

pub use fulfilment::{
    Fulfilment, FulfilmentFuture, FulfilmentOutcome, RecordHandOff, VerifiedRequest,
};

use crate::accounts::{random_token, token_digest};
use crate::audit::{self, AuditKey, AuditKind, Detail, Event as AuditEvent};
use crate::config::Config;
use crate::consent::{Consent, WrittenOptOut};
use crate::domain::{EmailAddress, InvalidField};
use crate::error::{Error, Result};
use crate::policy::Policies;
use crate::store::{self, RequestRow, Store, SubmissionRow, Tx};
use anyhow::Context as _;
use covenant_core::deadline::extended_due_date;
use covenant_core::policy::{Jurisdiction, Policy, Right};
use covenant_core::requests::{
    Context, DeclineCode, Event, RequestState, RequestStatus, StaffId, VerificationLevel,
    appeal_due_date_for, due_date_for, required_verification, transition,
};
use covenant_core::rights::rights_for;
use messages::Message;
use rand::RngExt;
use sha2::Digest;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use time::{Date, OffsetDateTime};

/// Every right, with its stored name and the words a person reads.
pub const RIGHTS: [(Right, &str, &str); 14] = [
    (Right::Know, "know", "Know what we collect and why"),
    (Right::Access, "access", "Get a copy of my data"),
    (
        Right::Portability,
        "portability",
        "Get my data in a portable format",
    ),
    (Right::Rectification, "rectification", "Correct my data"),
    (Right::Deletion, "deletion", "Delete my data"),
    (
        Right::Restriction,
        "restriction",
        "Restrict the use of my data",
    ),
    (
        Right::Objection,
        "objection",
        "Object to the use of my data",
    ),
    (
        Right::ObjectDirectMarketing,
        "object_direct_marketing",
        "Object to direct marketing",
    ),
    (
        Right::WithdrawConsent,
        "withdraw_consent",
        "Withdraw my consent",
    ),
    (
        Right::OptOutSale,
        "opt_out_sale",
        "Opt out of the sale of my data",
    ),
    (
        Right::OptOutTargetedAdvertising,
        "opt_out_targeted_advertising",
        "Opt out of targeted advertising",
    ),
    (
        Right::LimitSensitive,
        "limit_sensitive",
        "Limit the use of sensitive data",
    ),
    (Right::Appeal, "appeal", "Appeal a decision"),
    (
        Right::ComplainToAuthority,
        "complain_to_authority",
        "Complain to a regulator",
    ),
];

pub fn right_name(right: Right) -> &'static str {
    RIGHTS
        .iter()
        .find(|(r, _, _)| *r == right)
        .map(|(_, name, _)| *name)
        .unwrap_or("know")
}

pub fn right_label(right: Right) -> &'static str {
    RIGHTS
        .iter()
        .find(|(r, _, _)| *r == right)
        .map(|(_, _, label)| *label)
        .unwrap_or("")
}

pub fn parse_right(text: &str) -> Option<Right> {
    RIGHTS
        .iter()
        .find(|(_, name, _)| *name == text.trim())
        .map(|(r, _, _)| *r)
}

/// How someone asks for the specific pieces of data held about them, beside `access`: the same
/// right, the same archive, but the higher proof of identity (R3: a session, or the emailed
/// code plus one more matching held fact).
pub const SPECIFIC_PIECES: (&str, &str) = (
    "access_specific_pieces",
    "Get the specific pieces of data you hold about me (asks one more fact to confirm it is me)",
);

/// A right as a requester names it: a stored right name or [`SPECIFIC_PIECES`]; the flag says
/// whether the specific pieces of data were asked.
pub fn parse_asked(text: &str) -> Option<(Right, bool)> {
    if text.trim() == SPECIFIC_PIECES.0 {
        return Some((Right::Access, true));
    }
    parse_right(text).map(|right| (right, false))
}

/// What a request asks, in the words a person reads.
pub fn asked_label(right: Right, specific_pieces: bool) -> &'static str {
    if right == Right::Access && specific_pieces {
        SPECIFIC_PIECES.1
    } else {
        right_label(right)
    }
}

/// Rights a person asks for themselves: appeals and complaints have their own paths.
pub fn requestable(right: Right) -> bool {
    !matches!(right, Right::Appeal | Right::ComplainToAuthority)
}

const EU_EEA: [&str; 30] = [
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
    "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
];

const US_STATES: [(&str, &str, Jurisdiction); 9] = [
    ("CA", "california", Jurisdiction::California),
    ("NV", "nevada", Jurisdiction::Nevada),
    ("VA", "virginia", Jurisdiction::Virginia),
    ("CO", "colorado", Jurisdiction::Colorado),
    ("CT", "connecticut", Jurisdiction::Connecticut),
    ("MT", "montana", Jurisdiction::Montana),
    ("OR", "oregon", Jurisdiction::Oregon),
    ("TX", "texas", Jurisdiction::Texas),
    ("UT", "utah", Jurisdiction::Utah),
];

/// The jurisdiction whose law applies to someone living in `country` (ISO code or English
/// name) and, in the United States, `state` (postal code or name). Pure; table-tested below.
pub fn jurisdiction_of(country: &str, state: &str) -> Jurisdiction {
    let country = country.trim().to_ascii_uppercase();
    let state = state.trim();
    let us = matches!(
        country.as_str(),
        "US" | "USA" | "UNITED STATES" | "UNITED STATES OF AMERICA"
    );
    if us || (country.is_empty() && !state.is_empty()) {
        return US_STATES
            .iter()
            .find(|(code, name, _)| {
                code.eq_ignore_ascii_case(state) || name.eq_ignore_ascii_case(state)
            })
            .map(|(_, _, j)| *j)
            .unwrap_or(Jurisdiction::Other);
    }
    if matches!(country.as_str(), "GB" | "UK" | "UNITED KINGDOM") {
        return Jurisdiction::Uk;
    }
    if EU_EEA.contains(&country.as_str()) {
        return Jurisdiction::EuEea;
    }
    Jurisdiction::Other
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Account,
    Form,
    Email,
    Api,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Account => "account",
            Channel::Form => "form",
            Channel::Email => "email",
            Channel::Api => "api",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relationship {
    /// The requester is the subject.
    Subject,
    /// An authorized agent.
    Agent,
    /// A parent or guardian acting for a minor.
    Parent,
}

impl Relationship {
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "self" => Some(Self::Subject),
            "agent" => Some(Self::Agent),
            "parent" => Some(Self::Parent),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subject => "self",
            Self::Agent => "agent",
            Self::Parent => "parent",
        }
    }
    /// Someone acting for another must show evidence, and the subject must confirm.
    pub fn acts_for_another(self) -> bool {
        self != Self::Subject
    }
}

/// Proof of identity the intake already has: a signed-in member asking about themselves.
#[derive(Debug, Clone, Copy)]
pub struct SessionProof {
    pub user_id: i64,
    pub two_factor: bool,
}

/// One intake, whatever the channel.
pub struct Intake {
    pub channel: Channel,
    pub relationship: Relationship,
    pub requester_name: String,
    pub requester_email: EmailAddress,
    pub subject_email: EmailAddress,
    pub country: String,
    pub state: String,
    pub postal_code: String,
    /// From [`jurisdiction_of`] for the form's country and state, or chosen by the member.
    pub jurisdiction: Jurisdiction,
    pub rights: Vec<Right>,
    /// Access (in `rights`) is asked for the specific pieces of data, which needs the higher
    /// level of proof.
    pub specific_pieces: bool,
    pub comments: String,
    /// A request that arrived by email, logged by staff: the message as received.
    pub emailed_message: Option<String>,
    pub logged_by: Option<i64>,
    /// The subject line of a written opt-out ("California Opt-Out", "Nevada Sale Opt-Out").
    pub written_opt_out: Option<WrittenOptOut>,
    pub session: Option<SessionProof>,
    /// The client's address, for the per-address throttle; never stored.
    pub client_ip: String,
}

/// What intake tells its caller. Pages and the API for visitors show none of it, so a known
/// and an unknown address get the same answer.
#[derive(Debug)]
pub struct Submitted {
    pub submission_id: i64,
    pub request_ids: Vec<i64>,
    /// The requester's status link token (also emailed).
    pub requester_token: String,
}

/// How one request looks to the requester and to staff.
#[derive(Debug, Clone)]
pub struct RequestView {
    pub row: RequestRow,
    pub right: Right,
    pub jurisdiction: Jurisdiction,
    pub status: RequestStatus,
    /// The answer is due on this day (the extended day when extended).
    pub due_on: String,
    /// Whether the right is granted where the requester lives.
    pub granted: bool,
    pub appeal_open: bool,
}

impl RequestView {
    pub fn state(&self) -> RequestState {
        self.status.state()
    }
}

/// A staff decision on a request.
#[derive(Debug, Clone)]
pub enum Decision {
    Fulfilled,
    PartlyFulfilled {
        reason: String,
    },
    Declined {
        code: DeclineCode,
        explanation: String,
    },
}

/// Messages staff can send with one click; the text is fixed, so it holds no personal data
/// beyond what the request already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    NeedMoreInformation,
    WorkingOnIt,
    VerifyReminder,
}

impl Template {
    pub const ALL: [Template; 3] = [
        Template::NeedMoreInformation,
        Template::WorkingOnIt,
        Template::VerifyReminder,
    ];
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Template::NeedMoreInformation => "need_more_information",
            Template::WorkingOnIt => "working_on_it",
            Template::VerifyReminder => "verify_reminder",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Template::NeedMoreInformation => "We need more information",
            Template::WorkingOnIt => "We are working on it",
            Template::VerifyReminder => "Please verify your request",
        }
    }
}

#[derive(Clone)]
pub struct Requests {
    store: Store,
    config: Arc<Config>,
    audit: AuditKey,
    policies: Policies,
    consent: Consent,
    fulfilment: Arc<dyn Fulfilment>,
    holidays: Arc<Vec<Date>>,
    /// Intake, new codes and code entries, per subject address and per client.
    limits: crate::rate_limit::RateLimits,
}

fn iso(day: Date) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    day.format(&format).unwrap_or_default()
}

pub fn parse_iso(text: &str) -> Option<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text, &format).ok()
}

pub fn day_of(epoch: i64) -> Date {
    OffsetDateTime::from_unix_timestamp(epoch)
        .map(|t| t.date())
        .unwrap_or(Date::MIN)
}

fn code_digest(subject_token_digest: &str, code: &str) -> String {
    token_digest(&format!("{subject_token_digest}:{code}"))
}

fn new_code() -> String {
    let n: u32 = rand::rng().random_range(0..100_000_000);
    format!("{n:08}")
}

/// Ends a transaction by the outcome of the work done in it: committed when it succeeded,
/// rolled back, and waited for, when it failed. A transaction that is only dropped is rolled
/// back later, on a task of its own, and keeps its row locks until then: a refused staff
/// action would go on hiding its request from the request job (`SKIP LOCKED`) after the
/// refusal had been answered.
async fn settle<T>(tx: Tx, result: Result<T>, what: &'static str) -> Result<T> {
    match result {
        Ok(value) => {
            tx.commit().await.context(what)?;
            Ok(value)
        }
        Err(error) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %rollback, step = what, "rolling back failed");
            }
            Err(error)
        }
    }
}

fn refused(error: impl std::fmt::Display) -> Error {
    Error::RequestRefused(error.to_string())
}

fn parse_level(text: &str) -> VerificationLevel {
    VerificationLevel::parse(text).unwrap_or(VerificationLevel::None)
}

impl Requests {
    pub fn new(
        store: Store,
        config: Arc<Config>,
        audit: AuditKey,
        policies: Policies,
        consent: Consent,
    ) -> Self {
        let holidays = config
            .requests
            .holidays
            .iter()
            .filter_map(|day| parse_iso(day))
            .collect();
        Self {
            limits: crate::rate_limit::RateLimits::new(store.clone(), &config, &audit),
            store,
            config,
            audit,
            policies,
            consent,
            fulfilment: Arc::new(RecordHandOff),
            holidays: Arc::new(holidays),
        }
    }

    /// Replaces the default hand-off with the fulfilment engine.
    pub fn with_fulfilment(mut self, fulfilment: Arc<dyn Fulfilment>) -> Self {
        self.fulfilment = fulfilment;
        self
    }

    pub fn holidays(&self) -> &[Date] {
        &self.holidays
    }

    async fn policy(&self) -> Result<Arc<Policy>> {
        Ok(self.policies.current().await?.policy.clone())
    }

    /// The day a request received today in `jurisdiction` is due, from the policy in force.
    pub async fn due_date_today(&self, jurisdiction: Jurisdiction) -> Result<Date> {
        let policy = self.policy().await?;
        Ok(due_date_for(
            &policy,
            jurisdiction,
            day_of(crate::now()),
            &self.holidays,
        ))
    }

    /// Takes in a request from any channel: one submission, one request per right, each with
    /// its clock started at receipt; a code is emailed to the subject unless a session proves
    /// who they are. Answers the same whether or not the subject's address has an account.
    pub async fn submit(&self, intake: Intake) -> Result<Submitted> {
        let mut problems = Vec::new();
        if intake.rights.is_empty() {
            problems.push(InvalidField::new("rights", "choose at least one right"));
        }
        if intake.rights.iter().any(|r| !requestable(*r)) {
            problems.push(InvalidField::new(
                "rights",
                "appeals are made from the decision page",
            ));
        }
        if intake.requester_name.trim().is_empty() || intake.requester_name.chars().count() > 200 {
            problems.push(InvalidField::new(
                "requester_name",
                "must be 1 to 200 characters",
            ));
        }
        if intake.comments.chars().count() > 5000 {
            problems.push(InvalidField::new(
                "comments",
                "must be at most 5000 characters",
            ));
        }
        if intake.country.chars().count() > 100
            || intake.state.chars().count() > 100
            || intake.postal_code.chars().count() > 20
        {
            problems.push(InvalidField::new("region", "is too long"));
        }
        if intake
            .emailed_message
            .as_ref()
            .is_some_and(|m| m.len() > 100_000)
        {
            problems.push(InvalidField::new(
                "emailed_message",
                "must be at most 100000 characters",
            ));
        }
        if intake.relationship == Relationship::Subject
            && intake.session.is_none()
            && intake.requester_email.canonical() != intake.subject_email.canonical()
        {
            problems.push(InvalidField::new(
                "subject_email",
                "must be your own address when you ask for yourself",
            ));
        }
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        // Throttles apply to every address alike, so a refusal says nothing about accounts.
        if intake.session.is_none() && intake.logged_by.is_none() {
            let rules = &self.limits.rules;
            self.limits
                .attempt(&[(rules.requests_per_client, intake.client_ip.as_str())])
                .await?;
            self.limits
                .attempt(&[(
                    rules.requests_per_address,
                    intake.subject_email.canonical().as_str(),
                )])
                .await?;
        }
        let policy = self.policy().await?;
        let jurisdiction = intake.jurisdiction;
        let now = crate::now();
        let today = day_of(now);
        let subject_user_id = match intake.session {
            Some(proof) if intake.relationship == Relationship::Subject => Some(proof.user_id),
            _ => self
                .store
                .user_by_email(&intake.subject_email.canonical())
                .await?
                .map(|user| user.id),
        };
        let subject_token = random_token();
        let subject_digest = token_digest(&subject_token);
        let requester_token = if intake.relationship.acts_for_another() {
            random_token()
        } else {
            subject_token.clone()
        };
        let requester_digest = token_digest(&requester_token);
        let session_level = intake
            .session
            .filter(|_| intake.relationship == Relationship::Subject)
            .map(|proof| {
                if proof.two_factor {
                    VerificationLevel::Session2fa
                } else {
                    VerificationLevel::Session
                }
            });
        let code = new_code();
        let needs_code = session_level.is_none()
            && intake.rights.iter().any(|r| {
                required_verification(*r, false) != VerificationLevel::None
                    || intake.relationship.acts_for_another()
            });
        let expires_at = now + self.config.requests.code_minutes * 60;
        let region = format!("{}/{}", intake.country.trim(), intake.state.trim());
        let mut tx = self.store.begin().await?;
        // A parent whose address is the one that consented when the minor joined has shown
        // parenthood already: that consent is the evidence. Anyone else uploads it, like an
        // agent. Nothing of this shows in the answer to the form.
        let consent = match subject_user_id {
            Some(minor) if intake.relationship == Relationship::Parent => {
                store::given_parental_consent(
                    &self.store,
                    &mut tx,
                    minor,
                    &intake.requester_email.canonical(),
                )
                .await?
            }
            _ => None,
        };
        let submission_id = store::insert_submission(
            &mut tx,
            &self.store,
            &store::NewSubmission {
                channel: intake.channel.as_str(),
                relationship: intake.relationship.as_str(),
                requester_name: intake.requester_name.trim(),
                requester_email: intake.requester_email.as_str(),
                subject_email: intake.subject_email.as_str(),
                subject_user_id,
                requester_user_id: intake.session.map(|proof| proof.user_id),
                region: &region,
                postal_code: intake.postal_code.trim(),
                jurisdiction: jurisdiction.as_str(),
                comments: intake.comments.trim(),
                emailed_message: intake.emailed_message.as_deref(),
                logged_by: intake.logged_by,
                subject_token_digest: &subject_digest,
                requester_token_digest: &requester_digest,
                code_digest: needs_code
                    .then(|| code_digest(&subject_digest, &code))
                    .as_deref(),
                code_expires_at: needs_code.then_some(expires_at),
                created_at: now,
                parental_consent_id: consent.as_ref().map(|c| c.id),
            },
        )
        .await?;
        let due = due_date_for(&policy, jurisdiction, today, &self.holidays);
        let mut rights: Vec<Right> = Vec::new();
        for right in &intake.rights {
            if !rights.contains(right) {
                rights.push(*right);
            }
        }
        let mut request_ids = Vec::new();
        let mut newly_verified = Vec::new();
        for right in rights {
            let specific_pieces = right == Right::Access && intake.specific_pieces;
            // Deletion needs a held fact beyond the code, against someone deleting another's
            // account. Without an account nothing is held but the address, and the code proves
            // that address is the requester's: it is all the proof there can be, and all the
            // erasure reaches (what the inventory links to the address).
            let required = match (right, subject_user_id) {
                (Right::Deletion, None) => VerificationLevel::EmailCode,
                _ => required_verification(right, specific_pieces),
            };
            let status = RequestStatus::received();
            let written = intake
                .written_opt_out
                .filter(|_| matches!(right, Right::OptOutSale | Right::OptOutTargetedAdvertising));
            let id = store::insert_request(
                &mut tx,
                &store::NewRequest {
                    submission_id,
                    right_name: right_name(right),
                    jurisdiction: jurisdiction.as_str(),
                    written_opt_out: written.map(written_name),
                    state: status.state().as_str(),
                    required_level: required.as_str(),
                    status_json: &serde_json::to_string(&status).context("encoding a status")?,
                    received_at: now,
                    received_on: &iso(today),
                    due_on: &iso(due),
                    next_reminder_at: None,
                    specific_pieces,
                },
            )
            .await?;
            audit::record(
                &mut tx,
                &self.audit,
                AuditEvent::new(AuditKind::RequestReceived)
                    .actor(intake.logged_by.or(intake.session.map(|p| p.user_id)))
                    .subject(subject_user_id)
                    .detail(Detail::Request(id))
                    .detail(Detail::Method(intake.channel.as_str()))
                    .detail(Detail::Reason(right_name(right))),
            )
            .await?;
            if consent.is_some() {
                audit::record(
                    &mut tx,
                    &self.audit,
                    AuditEvent::new(AuditKind::RequestEvidenceAdded)
                        .subject(subject_user_id)
                        .detail(Detail::Request(id))
                        .detail(Detail::Method("parental_consent")),
                )
                .await?;
            }
            request_ids.push(id);
            let row = store::request_for_update(&mut tx, &self.store, id)
                .await?
                .context("a request vanished right after it was written")?;
            let event = match session_level {
                Some(level) => Event::VerificationSucceeded { level },
                None if required == VerificationLevel::None
                    && !intake.relationship.acts_for_another() =>
                {
                    Event::VerificationSucceeded {
                        level: VerificationLevel::None,
                    }
                }
                None => Event::VerificationStarted,
            };
            let next = self
                .apply(
                    &mut tx,
                    &row,
                    event,
                    intake.session.map(|p| p.user_id),
                    subject_user_id,
                    None,
                )
                .await?;
            if next.state() == RequestState::Verified {
                newly_verified.push(id);
            }
        }
        if let Some(level) = session_level {
            store::set_submission_verification(&mut tx, submission_id, level.as_str(), Some(now))
                .await?;
        }
        let site = &self.config.site_name;
        let base = self.config.base_url();
        let status_link = format!("{base}/privacy/requests/status/{requester_token}");
        if needs_code {
            let verify_link = format!("{base}/privacy/requests/verify/{subject_token}");
            let message = if intake.relationship.acts_for_another() {
                Message::confirm_agent(
                    site,
                    intake.relationship,
                    &code,
                    &verify_link,
                    self.config.requests.code_minutes,
                )
            } else {
                Message::verify_code(
                    site,
                    &code,
                    &verify_link,
                    &status_link,
                    self.config.requests.code_minutes,
                )
            };
            message
                .enqueue(
                    &self.store,
                    &mut tx,
                    &format!("request-code:{submission_id}:0"),
                    intake.subject_email.as_str(),
                    subject_user_id,
                    Some(submission_id),
                    now,
                )
                .await?;
        }
        if intake.relationship.acts_for_another() || !needs_code {
            let next_step = match (intake.relationship.acts_for_another(), &consent) {
                (false, _) => messages::NextStep::Answer,
                (true, None) => messages::NextStep::ConfirmationAndEvidence,
                (true, Some(_)) => messages::NextStep::ConfirmationOnly,
            };
            Message::received(site, &status_link, next_step)
                .enqueue(
                    &self.store,
                    &mut tx,
                    &format!("request-received:{submission_id}"),
                    intake.requester_email.as_str(),
                    intake.session.map(|p| p.user_id),
                    Some(submission_id),
                    now,
                )
                .await?;
        }
        tx.commit().await.context("committing a privacy request")?;
        tracing::info!(
            submission_id,
            n_requests = request_ids.len(),
            channel = intake.channel.as_str(),
            "privacy request received"
        );
        for id in newly_verified {
            self.proceed(id).await?;
        }
        Ok(Submitted {
            submission_id,
            request_ids,
            requester_token,
        })
    }

    /// Moves one request by the core's `transition`, stores the result and audits it, all in
    /// the caller's transaction.
    async fn apply(
        &self,
        tx: &mut Tx,
        row: &RequestRow,
        event: Event,
        actor: Option<i64>,
        subject: Option<i64>,
        decision_text: Option<&str>,
    ) -> Result<RequestStatus> {
        let policy = self.policy().await?;
        let jurisdiction: Jurisdiction = row.jurisdiction.parse().unwrap_or(Jurisdiction::Other);
        let status: RequestStatus =
            serde_json::from_str(&row.status_json).context("reading a stored request status")?;
        let context = Context {
            required: parse_level(&row.required_level),
            appeal: policy.jurisdiction(jurisdiction).appeal,
        };
        let next = transition(&status, &event, &context).map_err(refused)?;
        let now = crate::now();
        let decline_code = match &event {
            Event::Declined { code, .. } => Some(code.as_str()),
            _ => None,
        };
        let appeal_due = match &event {
            Event::AppealLodged { on } => {
                appeal_due_date_for(&policy, jurisdiction, *on, &self.holidays).map(iso)
            }
            _ => None,
        };
        let next_reminder_at = match next.state() {
            RequestState::Received | RequestState::Verifying => Some(
                row.next_reminder_at
                    .unwrap_or(now + self.config.requests.reminder_days * 86_400),
            ),
            _ => None,
        };
        let closed_at = if next.state().is_terminal() {
            row.closed_at.or(Some(now))
        } else if next.state() == RequestState::AppealReversed {
            None
        } else {
            row.closed_at
        };
        store::update_request(
            tx,
            &self.store,
            &store::RequestUpdate {
                id: row.id,
                state: next.state().as_str(),
                verification: next
                    .verification()
                    .unwrap_or(VerificationLevel::None)
                    .as_str(),
                status_json: &serde_json::to_string(&next).context("encoding a status")?,
                decline_code,
                decision_text,
                closed_at,
                appeal_due_on: appeal_due.as_deref(),
                next_reminder_at,
                now,
            },
        )
        .await?;
        let mut entry = AuditEvent::new(AuditKind::RequestTransitioned)
            .actor(actor)
            .subject(subject)
            .detail(Detail::Request(row.id))
            .detail(Detail::Method(event.name()))
            .detail(Detail::Reason(next.state().as_str()));
        // A decline's reason code goes on the trail with it; the explanation stays on the row.
        if let Event::Declined { code, .. } = &event {
            entry = entry.detail(Detail::Code(code.as_str()));
        }
        audit::record(tx, &self.audit, entry).await?;
        Ok(next)
    }

    /// A verified request goes on: written opt-outs take effect through the consent engine at
    /// once; everything else moves to "in progress" and is handed to fulfilment.
    pub async fn proceed(&self, request_id: i64) -> Result<()> {
        let mut tx = self.store.begin().await?;
        let Some(row) = store::request_for_update(&mut tx, &self.store, request_id).await? else {
            return Err(Error::NotFound("request"));
        };
        let submission = store::submission_in_tx(&mut tx, &self.store, row.submission_id).await?;
        let status: RequestStatus =
            serde_json::from_str(&row.status_json).context("reading a stored request status")?;
        if !matches!(
            status.state(),
            RequestState::Verified | RequestState::AppealReversed
        ) {
            return Ok(());
        }
        let right = parse_right(&row.right_name).context("a stored right is unknown")?;
        let subject = submission.subject_user_id;
        let next = self
            .apply(&mut tx, &row, Event::FulfilmentStarted, None, subject, None)
            .await?;
        if matches!(right, Right::OptOutSale | Right::OptOutTargetedAdvertising) {
            tx.commit().await.context("starting an opt-out")?;
            if let Some(user_id) = subject {
                let kind = match row.written_opt_out.as_deref() {
                    Some("nevada_sale") => WrittenOptOut::NevadaSale,
                    _ => WrittenOptOut::California,
                };
                let policy = self.policy().await?;
                self.consent
                    .written_opt_out(user_id, kind, &policy, crate::now())
                    .await?;
            }
            let mut tx = self.store.begin().await?;
            let row = store::request_for_update(&mut tx, &self.store, request_id)
                .await?
                .context("a request vanished")?;
            self.apply(
                &mut tx,
                &row,
                Event::Fulfilled {
                    decided_by: None,
                    on: day_of(crate::now()),
                },
                None,
                subject,
                None,
            )
            .await?;
            self.queue_decision_mail(&mut tx, &row, &submission, None)
                .await?;
            tx.commit().await.context("recording an opt-out")?;
            return Ok(());
        }
        let verified = VerifiedRequest {
            id: row.id,
            submission_id: row.submission_id,
            right,
            jurisdiction: row.jurisdiction.parse().unwrap_or(Jurisdiction::Other),
            subject_user_id: subject,
            level: next.verification().unwrap_or(VerificationLevel::None),
        };
        let outcome = self.fulfilment.carry_out(&mut tx, &verified).await?;
        audit::record(
            &mut tx,
            &self.audit,
            AuditEvent::new(AuditKind::RequestHandedToFulfilment)
                .subject(subject)
                .detail(Detail::Request(row.id)),
        )
        .await?;
        let today = day_of(crate::now());
        let row = store::request_for_update(&mut tx, &self.store, request_id)
            .await?
            .context("a request vanished")?;
        let handed_over = outcome == FulfilmentOutcome::HandedOver;
        match outcome {
            FulfilmentOutcome::HandedOver => {}
            FulfilmentOutcome::Delivered { note } => {
                self.apply(
                    &mut tx,
                    &row,
                    Event::Fulfilled {
                        decided_by: None,
                        on: today,
                    },
                    None,
                    subject,
                    None,
                )
                .await?;
                self.queue_decision_mail(&mut tx, &row, &submission, Some(&note))
                    .await?;
            }
            FulfilmentOutcome::Done => {
                self.apply(
                    &mut tx,
                    &row,
                    Event::Fulfilled {
                        decided_by: None,
                        on: today,
                    },
                    None,
                    subject,
                    None,
                )
                .await?;
                self.queue_decision_mail(&mut tx, &row, &submission, None)
                    .await?;
            }
            FulfilmentOutcome::PartlyDone { reason } => {
                self.apply(
                    &mut tx,
                    &row,
                    Event::PartlyFulfilled {
                        reason: reason.clone(),
                        decided_by: None,
                        on: today,
                    },
                    None,
                    subject,
                    Some(&reason),
                )
                .await?;
                self.queue_decision_mail(&mut tx, &row, &submission, Some(&reason))
                    .await?;
            }
        }
        tx.commit()
            .await
            .context("handing a request to fulfilment")?;
        if handed_over && self.config.requests.fulfil_at_once {
            self.complete_handed_over(&verified, &submission).await?;
        }
        Ok(())
    }

    /// A request in progress, as the fulfilment sees it; `None` in any other state.
    async fn in_progress(&self, id: i64) -> Result<Option<(VerifiedRequest, SubmissionRow)>> {
        let Some(row) = self.store.privacy_request(id).await? else {
            return Ok(None);
        };
        let status: RequestStatus =
            serde_json::from_str(&row.status_json).context("reading a stored request status")?;
        if status.state() != RequestState::InProgress {
            return Ok(None);
        }
        let Some(submission) = self.store.submission(row.submission_id).await? else {
            return Ok(None);
        };
        let verified = VerifiedRequest {
            id: row.id,
            submission_id: row.submission_id,
            right: parse_right(&row.right_name).context("a stored right is unknown")?,
            jurisdiction: row.jurisdiction.parse().unwrap_or(Jurisdiction::Other),
            subject_user_id: submission.subject_user_id,
            level: status.verification().unwrap_or(VerificationLevel::None),
        };
        Ok(Some((verified, submission)))
    }

    /// Hand-overs whose work never ran (the node died after committing the hand-over) are
    /// carried out; ten minutes after the hand-over, so a node still working is not raced.
    async fn finish_unfinished_hand_overs(&self, now: i64) -> Result<usize> {
        let mut done = 0;
        loop {
            let ids = self
                .store
                .claim_unfinished_hand_overs(now, now - 600, 20)
                .await?;
            if ids.is_empty() {
                return Ok(done);
            }
            for id in ids {
                let Some((verified, submission)) = self.in_progress(id).await? else {
                    continue;
                };
                // One request that cannot be carried out must not stop the job's other work.
                match self.complete_handed_over(&verified, &submission).await {
                    Ok(()) => done += 1,
                    Err(error) => tracing::error!(
                        request_id = id,
                        error = %format!("{error:#}"),
                        "carrying out an unfinished hand-over failed"
                    ),
                }
            }
        }
    }

    /// The second half of a hand-over: the fulfilment's own work (an erasure, an export), then
    /// its outcome recorded as the decision, with the decision's message. A request someone
    /// decided in between is left as it is.
    async fn complete_handed_over(
        &self,
        verified: &VerifiedRequest,
        submission: &SubmissionRow,
    ) -> Result<()> {
        let outcome = self.fulfilment.complete(verified).await?;
        let today = day_of(crate::now());
        let (event, reason, note) = match outcome {
            FulfilmentOutcome::HandedOver => return Ok(()),
            FulfilmentOutcome::Done => (
                Event::Fulfilled {
                    decided_by: None,
                    on: today,
                },
                None,
                None,
            ),
            FulfilmentOutcome::Delivered { note } => (
                Event::Fulfilled {
                    decided_by: None,
                    on: today,
                },
                None,
                Some(note),
            ),
            FulfilmentOutcome::PartlyDone { reason } => (
                Event::PartlyFulfilled {
                    reason: reason.clone(),
                    decided_by: None,
                    on: today,
                },
                Some(reason.clone()),
                Some(reason),
            ),
        };
        let mut tx = self.store.begin().await?;
        let row = store::request_for_update(&mut tx, &self.store, verified.id)
            .await?
            .context("a request vanished")?;
        let status: RequestStatus =
            serde_json::from_str(&row.status_json).context("reading a stored request status")?;
        if status.state() != RequestState::InProgress {
            return Ok(());
        }
        self.apply(
            &mut tx,
            &row,
            event,
            None,
            verified.subject_user_id,
            reason.as_deref(),
        )
        .await?;
        self.queue_decision_mail(&mut tx, &row, submission, note.as_deref())
            .await?;
        tx.commit()
            .await
            .context("recording a fulfilment's outcome")?;
        Ok(())
    }

    /// Checks an emailed code (and, for the higher level, one held fact: the account's
    /// username or birth year). Wrong codes count; too many close the requests.
    pub async fn verify_code(
        &self,
        subject_token: &str,
        code: &str,
        fact: &str,
        client_ip: &str,
    ) -> Result<Verified> {
        self.limits
            .attempt(&[(self.limits.rules.request_codes_per_client, client_ip)])
            .await?;
        let digest = token_digest(subject_token);
        let submission = self
            .store
            .submission_by_subject_token(&digest)
            .await?
            .ok_or(Error::InvalidToken)?;
        let now = crate::now();
        let expected = submission.code_digest.clone().ok_or(Error::InvalidToken)?;
        let given = code_digest(&digest, code.trim());
        let expired = submission.code_expires_at.is_none_or(|at| at < now);
        let matches = bool::from(expected.as_bytes().ct_eq(given.as_bytes()));
        let mut tx = self.store.begin().await?;
        // A held fact that does not match counts like a wrong code: the fact is what stands
        // between someone reading the subject's mailbox and their data, so it cannot be
        // guessed at leisure.
        let fact_given = !fact.trim().is_empty();
        let fact_wrong =
            matches && !expired && fact_given && !self.fact_matches(&submission, fact).await?;
        if !matches || expired || fact_wrong {
            let attempts = store::count_code_attempt(&mut tx, submission.id).await?;
            let mut entry = AuditEvent::new(AuditKind::RequestCodeFailed)
                .subject(submission.subject_user_id)
                .detail(Detail::Count(attempts));
            if fact_wrong {
                entry = entry.detail(Detail::Method("held_fact"));
            }
            audit::record(&mut tx, &self.audit, entry).await?;
            if attempts >= self.config.requests.code_attempts {
                for row in self.store.requests_of_submission(submission.id).await? {
                    if row.state == RequestState::Verifying.as_str() {
                        self.apply(
                            &mut tx,
                            &row,
                            Event::VerificationFailed,
                            None,
                            submission.subject_user_id,
                            None,
                        )
                        .await?;
                    }
                }
            }
            tx.commit().await.context("counting a wrong code")?;
            return Err(if expired {
                Error::InvalidToken
            } else if fact_wrong {
                Error::invalid(InvalidField::new(
                    "fact",
                    "does not match what we hold; leave it empty to confirm with the code alone",
                ))
            } else {
                Error::InvalidSecondFactor
            });
        }
        let level = if fact_given {
            VerificationLevel::EmailCodePlusFact
        } else {
            VerificationLevel::EmailCode
        };
        store::set_submission_verification(&mut tx, submission.id, level.as_str(), Some(now))
            .await?;
        let evidence = store::count_evidence(&mut tx, submission.id).await?;
        let relationship =
            Relationship::parse(&submission.relationship).unwrap_or(Relationship::Subject);
        // An agent's request goes on only with both the subject's confirmation and evidence
        // (an upload, or a parent's recorded consent).
        let proceed = !relationship.acts_for_another()
            || evidence > 0
            || submission.parental_consent_id.is_some();
        let mut verified = Vec::new();
        if proceed {
            verified = self.succeed_all(&mut tx, &submission, level).await?;
        }
        let status_link = self.status_link(&mut tx, submission.id).await?;
        tx.commit().await.context("recording a verification")?;
        for id in verified {
            self.proceed(id).await?;
        }
        Ok(Verified {
            level,
            status_link,
            waiting_for_evidence: !proceed,
        })
    }

    async fn succeed_all(
        &self,
        tx: &mut Tx,
        submission: &SubmissionRow,
        level: VerificationLevel,
    ) -> Result<Vec<i64>> {
        let mut verified = Vec::new();
        for row in self.store.requests_of_submission(submission.id).await? {
            let Some(row) = store::request_for_update(tx, &self.store, row.id).await? else {
                continue;
            };
            if !matches!(row.state.as_str(), "received" | "verifying") {
                continue;
            }
            let next = self
                .apply(
                    tx,
                    &row,
                    Event::VerificationSucceeded { level },
                    None,
                    submission.subject_user_id,
                    None,
                )
                .await?;
            if next.state() == RequestState::Verified {
                verified.push(row.id);
            }
        }
        Ok(verified)
    }

    async fn fact_matches(&self, submission: &SubmissionRow, fact: &str) -> Result<bool> {
        let Some(user_id) = submission.subject_user_id else {
            return Ok(false);
        };
        let Some(user) = self.store.user_by_id(user_id).await? else {
            return Ok(false);
        };
        let fact = fact.trim();
        Ok(user.username.eq_ignore_ascii_case(fact) || user.birth_year.to_string() == fact)
    }

    /// An agent's (or parent's) evidence: PDF, PNG or JPEG by its first bytes, within the size
    /// limit, stored as personal data. With the subject's confirmation the request goes on.
    pub async fn add_evidence(&self, requester_token: &str, bytes: &[u8]) -> Result<()> {
        let content_type = evidence_type(bytes).ok_or_else(|| {
            Error::invalid(InvalidField::new(
                "evidence",
                "must be a PDF, PNG or JPEG file",
            ))
        })?;
        if bytes.len() > self.config.requests.evidence_max_bytes {
            return Err(Error::PayloadTooLarge);
        }
        let digest = token_digest(requester_token);
        let submission = self
            .store
            .submission_by_requester_token(&digest)
            .await?
            .ok_or(Error::InvalidToken)?;
        let relationship =
            Relationship::parse(&submission.relationship).unwrap_or(Relationship::Subject);
        if !relationship.acts_for_another() {
            return Err(Error::RequestRefused(
                "evidence is only asked of agents and parents".into(),
            ));
        }
        let now = crate::now();
        let hash: String = sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut tx = self.store.begin().await?;
        let evidence_id = store::insert_evidence(
            &mut tx,
            &self.store,
            submission.id,
            content_type,
            &hash,
            bytes,
            now,
        )
        .await?;
        audit::record(
            &mut tx,
            &self.audit,
            AuditEvent::new(AuditKind::RequestEvidenceAdded)
                .subject(submission.subject_user_id)
                .detail(Detail::Count(evidence_id))
                .detail(Detail::Method(content_type)),
        )
        .await?;
        let mut verified = Vec::new();
        if submission.subject_confirmed_at.is_some() {
            let level = parse_level(&submission.verification);
            verified = self.succeed_all(&mut tx, &submission, level).await?;
        }
        tx.commit().await.context("storing evidence")?;
        for id in verified {
            self.proceed(id).await?;
        }
        Ok(())
    }

    /// Privacy staff open one evidence file of a request: its type and bytes, read in the
    /// transaction that audits the read (request, evidence and who opened it), so a read that
    /// is not recorded cannot happen. The caller checks the role.
    pub async fn open_evidence(
        &self,
        staff_id: i64,
        request_id: i64,
        evidence_id: i64,
    ) -> Result<Evidence> {
        let row = self
            .store
            .privacy_request(request_id)
            .await?
            .ok_or(Error::NotFound("request"))?;
        let mut tx = self.store.begin().await?;
        let submission = store::submission_in_tx(&mut tx, &self.store, row.submission_id).await?;
        let (content_type, bytes) =
            store::evidence_content(&mut tx, &self.store, submission.id, evidence_id)
                .await?
                .ok_or(Error::NotFound("evidence"))?;
        // Stored types come from `evidence_type`; anything else is served as opaque bytes.
        let content_type = ["application/pdf", "image/png", "image/jpeg"]
            .into_iter()
            .find(|known| *known == content_type)
            .unwrap_or("application/octet-stream");
        audit::record(
            &mut tx,
            &self.audit,
            AuditEvent::new(AuditKind::RequestEvidenceOpened)
                .actor(Some(staff_id))
                .subject(submission.subject_user_id)
                .detail(Detail::Request(row.id))
                .detail(Detail::Evidence(evidence_id)),
        )
        .await?;
        tx.commit().await.context("recording a read of evidence")?;
        Ok(Evidence {
            id: evidence_id,
            content_type,
            bytes,
        })
    }

    /// The submission behind a status link, and its requests.
    pub async fn by_token(&self, token: &str) -> Result<(SubmissionRow, Vec<RequestView>)> {
        let digest = token_digest(token);
        let submission = self
            .store
            .submission_by_requester_token(&digest)
            .await?
            .ok_or(Error::InvalidToken)?;
        let views = self
            .views(self.store.requests_of_submission(submission.id).await?)
            .await?;
        Ok((submission, views))
    }

    pub async fn views(&self, rows: Vec<RequestRow>) -> Result<Vec<RequestView>> {
        let policy = self.policy().await?;
        let today = day_of(crate::now());
        rows.into_iter()
            .map(|row| {
                let right = parse_right(&row.right_name).context("a stored right is unknown")?;
                let jurisdiction: Jurisdiction =
                    row.jurisdiction.parse().unwrap_or(Jurisdiction::Other);
                let status: RequestStatus = serde_json::from_str(&row.status_json)
                    .context("reading a stored request status")?;
                let profile = rights_for(&policy, jurisdiction);
                let window_open = profile.appeal.is_some_and(|rule| {
                    status.decided_on().is_none_or(|on| {
                        today <= on.saturating_add(time::Duration::days(rule.window_days.into()))
                    })
                });
                let appeal_open = window_open
                    && status.appeal().is_none()
                    && match status.state() {
                        RequestState::PartlyFulfilled => true,
                        RequestState::Declined => {
                            row.decline_code.as_deref() != Some("cannot_verify")
                        }
                        _ => false,
                    };
                Ok(RequestView {
                    due_on: row.due_day().to_string(),
                    granted: profile.has(right),
                    appeal_open,
                    right,
                    jurisdiction,
                    status,
                    row,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(Error::from)
    }

    pub async fn view(&self, id: i64) -> Result<(SubmissionRow, RequestView)> {
        let row = self
            .store
            .privacy_request(id)
            .await?
            .ok_or(Error::NotFound("request"))?;
        let submission = self
            .store
            .submission(row.submission_id)
            .await?
            .ok_or(Error::NotFound("request"))?;
        let view = self.views(vec![row]).await?.remove(0);
        Ok((submission, view))
    }

    /// The requester appeals a decision from the status page (or the API with the same link).
    pub async fn lodge_appeal(
        &self,
        requester_token: &str,
        request_id: i64,
        statement: &str,
    ) -> Result<()> {
        let digest = token_digest(requester_token);
        let submission = self
            .store
            .submission_by_requester_token(&digest)
            .await?
            .ok_or(Error::InvalidToken)?;
        if statement.chars().count() > 5000 {
            return Err(Error::invalid(InvalidField::new(
                "statement",
                "must be at most 5000 characters",
            )));
        }
        let mut tx = self.store.begin().await?;
        let result: Result<_> = async {
            let row = store::request_for_update(&mut tx, &self.store, request_id)
                .await?
                .filter(|row| row.submission_id == submission.id)
                .ok_or(Error::NotFound("request"))?;
            let today = day_of(crate::now());
            self.apply(
                &mut tx,
                &row,
                Event::AppealLodged { on: today },
                submission.requester_user_id,
                submission.subject_user_id,
                None,
            )
            .await?;
            if !statement.trim().is_empty() {
                store::insert_note(
                    &mut tx,
                    &self.store,
                    (row.id, row.submission_id),
                    None,
                    &format!("Appeal statement: {}", statement.trim()),
                    crate::now(),
                )
                .await?;
            }
            Ok(())
        }
        .await;
        settle(tx, result, "lodging an appeal").await?;
        Ok(())
    }

    /// Staff decide a request: fulfilled, partly fulfilled or declined with a reason code.
    pub async fn decide(&self, staff_id: i64, request_id: i64, decision: Decision) -> Result<()> {
        // Staff who fulfil a reviewed request have the fulfilment carry it out first (an
        // erasure, an export); what it reports becomes the decision and its message.
        let mut note = None;
        let decision = match decision {
            Decision::Fulfilled => match self.in_progress(request_id).await? {
                Some((verified, _)) => match self.fulfilment.complete(&verified).await? {
                    FulfilmentOutcome::PartlyDone { reason } => {
                        Decision::PartlyFulfilled { reason }
                    }
                    FulfilmentOutcome::Delivered { note: text } => {
                        note = Some(text);
                        Decision::Fulfilled
                    }
                    FulfilmentOutcome::Done | FulfilmentOutcome::HandedOver => Decision::Fulfilled,
                },
                None => Decision::Fulfilled,
            },
            other => other,
        };
        let mut tx = self.store.begin().await?;
        let result: Result<_> = async {
            let row = store::request_for_update(&mut tx, &self.store, request_id)
                .await?
                .ok_or(Error::NotFound("request"))?;
            let submission =
                store::submission_in_tx(&mut tx, &self.store, row.submission_id).await?;
            let today = day_of(crate::now());
            let by = Some(StaffId(staff_id));
            let (event, text) = match &decision {
                Decision::Fulfilled => (
                    Event::Fulfilled {
                        decided_by: by,
                        on: today,
                    },
                    note.as_deref(),
                ),
                Decision::PartlyFulfilled { reason } => (
                    Event::PartlyFulfilled {
                        reason: reason.clone(),
                        decided_by: by,
                        on: today,
                    },
                    Some(reason.as_str()),
                ),
                Decision::Declined { code, explanation } => {
                    if explanation.trim().is_empty() {
                        return Err(Error::invalid(InvalidField::new(
                            "explanation",
                            "say why, in plain words",
                        )));
                    }
                    (
                        Event::Declined {
                            code: *code,
                            decided_by: by,
                            on: today,
                        },
                        Some(explanation.as_str()),
                    )
                }
            };
            self.apply(
                &mut tx,
                &row,
                event,
                Some(staff_id),
                submission.subject_user_id,
                text,
            )
            .await?;
            self.queue_decision_mail(&mut tx, &row, &submission, text)
                .await?;
            Ok(())
        }
        .await;
        settle(tx, result, "recording a decision").await?;
        Ok(())
    }

    /// A different member of staff decides an appeal; the decision is sent with the
    /// regulator's contact where the law names one.
    pub async fn decide_appeal(
        &self,
        staff_id: i64,
        request_id: i64,
        upheld: bool,
        reason: &str,
    ) -> Result<()> {
        let mut tx = self.store.begin().await?;
        let result: Result<_> = async {
            let row = store::request_for_update(&mut tx, &self.store, request_id)
                .await?
                .ok_or(Error::NotFound("request"))?;
            let submission =
                store::submission_in_tx(&mut tx, &self.store, row.submission_id).await?;
            let event = Event::AppealDecided {
                upheld,
                decided_by: StaffId(staff_id),
                reason: reason.trim().to_string(),
            };
            self.apply(
                &mut tx,
                &row,
                event,
                Some(staff_id),
                submission.subject_user_id,
                None,
            )
            .await?;
            let policy = self.policy().await?;
            let jurisdiction: Jurisdiction =
                row.jurisdiction.parse().unwrap_or(Jurisdiction::Other);
            let regulator = rights_for(&policy, jurisdiction).regulator;
            let link = self.status_link(&mut tx, submission.id).await?;
            Message::appeal_decided(
                &self.config.site_name,
                right_label(parse_right(&row.right_name).unwrap_or(Right::Know)),
                upheld,
                reason.trim(),
                regulator.as_ref(),
                &link,
            )
            .enqueue(
                &self.store,
                &mut tx,
                &format!("request-appeal-decided:{}", row.id),
                &submission.requester_email,
                submission.requester_user_id,
                Some(submission.id),
                crate::now(),
            )
            .await?;
            Ok(())
        }
        .await;
        settle(tx, result, "deciding an appeal").await?;
        if !upheld {
            self.proceed(request_id).await?;
        }
        Ok(())
    }

    /// A fresh link to the submission's status page, for a later message.
    async fn status_link(&self, tx: &mut Tx, submission_id: i64) -> Result<String> {
        let token = random_token();
        store::insert_link(tx, &token_digest(&token), submission_id, crate::now()).await?;
        Ok(format!(
            "{}/privacy/requests/status/{token}",
            self.config.base_url()
        ))
    }

    /// Whether a verification link is one we sent (the page asks for the code only then).
    pub async fn verification_link_is_valid(&self, subject_token: &str) -> Result<bool> {
        Ok(self
            .store
            .submission_by_subject_token(&token_digest(subject_token))
            .await?
            .is_some())
    }

    /// Sends a new code under a new link (the old code had expired or was lost). Throttled per
    /// address like intake, so it cannot be used to flood someone's mailbox.
    pub async fn resend_code(&self, subject_token: &str, client_ip: &str) -> Result<()> {
        self.limits
            .attempt(&[(self.limits.rules.requests_per_client, client_ip)])
            .await?;
        let submission = self
            .store
            .submission_by_subject_token(&token_digest(subject_token))
            .await?
            .ok_or(Error::InvalidToken)?;
        self.limits
            .attempt(&[(
                self.limits.rules.requests_per_address,
                submission.subject_email.to_lowercase().as_str(),
            )])
            .await?;
        let mut tx = self.store.begin().await?;
        self.send_new_code(&mut tx, &submission, 0).await?;
        tx.commit().await.context("sending a new code")?;
        Ok(())
    }

    async fn send_new_code(
        &self,
        tx: &mut Tx,
        submission: &SubmissionRow,
        reminder: i64,
    ) -> Result<()> {
        let now = crate::now();
        let token = random_token();
        let digest = token_digest(&token);
        let code = new_code();
        let minutes = self.config.requests.code_minutes;
        store::set_code(
            tx,
            submission.id,
            &digest,
            &code_digest(&digest, &code),
            now + minutes * 60,
        )
        .await?;
        let link = format!("{}/privacy/requests/verify/{token}", self.config.base_url());
        let message = if reminder > 0 {
            Message::reminder(&self.config.site_name, &code, &link, minutes)
        } else {
            Message::verify_code(&self.config.site_name, &code, &link, "", minutes)
        };
        message
            .enqueue(
                &self.store,
                tx,
                &format!("request-code:{}:{}", submission.id, &digest[..16]),
                &submission.subject_email,
                submission.subject_user_id,
                Some(submission.id),
                now,
            )
            .await?;
        Ok(())
    }

    async fn queue_decision_mail(
        &self,
        tx: &mut Tx,
        row: &RequestRow,
        submission: &SubmissionRow,
        staff_text: Option<&str>,
    ) -> Result<()> {
        let after = store::request_for_update(tx, &self.store, row.id)
            .await?
            .context("a request vanished")?;
        let status: RequestStatus =
            serde_json::from_str(&after.status_json).context("reading a stored request status")?;
        let policy = self.policy().await?;
        let jurisdiction: Jurisdiction = after.jurisdiction.parse().unwrap_or(Jurisdiction::Other);
        let profile = rights_for(&policy, jurisdiction);
        let explanation = status.reason().unwrap_or_default().to_string();
        let appeal = profile.appeal.filter(|_| match status.state() {
            RequestState::PartlyFulfilled => true,
            RequestState::Declined => after.decline_code.as_deref() != Some("cannot_verify"),
            _ => false,
        });
        let right = parse_right(&after.right_name).unwrap_or(Right::Know);
        // The link opens the status page at this request, where its appeal form is: a fresh
        // token, so a requester without an account can appeal from the email alone.
        let link = format!(
            "{}#request-{}",
            self.status_link(tx, submission.id).await?,
            after.id
        );
        Message::decision(
            &self.config.site_name,
            right_label(right),
            status.state(),
            &explanation,
            staff_text,
            appeal.map(|rule| rule.window_days),
            profile.regulator.as_ref(),
            &link,
        )
        .enqueue(
            &self.store,
            tx,
            &format!("request-decision:{}:{}", after.id, status.state().as_str()),
            &submission.requester_email,
            submission.requester_user_id,
            Some(submission.id),
            crate::now(),
        )
        .await?;
        Ok(())
    }

    /// Extends the deadline as the requester's law allows, telling the requester why.
    pub async fn extend(&self, staff_id: i64, request_id: i64, reason: &str) -> Result<String> {
        if reason.trim().is_empty() {
            return Err(Error::invalid(InvalidField::new(
                "reason",
                "say why the extension is needed",
            )));
        }
        let policy = self.policy().await?;
        let mut tx = self.store.begin().await?;
        let result: Result<_> = async {
            let row = store::request_for_update(&mut tx, &self.store, request_id)
                .await?
                .ok_or(Error::NotFound("request"))?;
            let submission =
                store::submission_in_tx(&mut tx, &self.store, row.submission_id).await?;
            if row.extended_due_on.is_some() {
                return Err(Error::RequestRefused(
                    "the deadline was extended already".into(),
                ));
            }
            let state = RequestState::parse(&row.state).map_err(|e| Error::Internal(e.into()))?;
            if state.is_terminal() {
                return Err(Error::RequestRefused(
                    "a decided request cannot be extended".into(),
                ));
            }
            let jurisdiction: Jurisdiction =
                row.jurisdiction.parse().unwrap_or(Jurisdiction::Other);
            let rules = policy.jurisdiction(jurisdiction);
            let Some(extension) = rules.extension else {
                return Err(Error::RequestRefused(
                    "the requester's law allows no extension".into(),
                ));
            };
            let received = parse_iso(&row.received_on).unwrap_or(day_of(row.received_at));
            if day_of(crate::now()) > parse_iso(&row.due_on).unwrap_or(received) {
                return Err(Error::RequestRefused(
                    "the notice must be sent before the original due date".into(),
                ));
            }
            let day = iso(extended_due_date(
                received,
                rules.deadline,
                extension,
                &self.holidays,
            ));
            let now = crate::now();
            store::set_extension(&mut tx, &self.store, row.id, &day, reason.trim(), now).await?;
            audit::record(
                &mut tx,
                &self.audit,
                AuditEvent::new(AuditKind::RequestExtended)
                    .actor(Some(staff_id))
                    .subject(submission.subject_user_id)
                    .detail(Detail::Request(row.id)),
            )
            .await?;
            let link = self.status_link(&mut tx, submission.id).await?;
            Message::extended(
                &self.config.site_name,
                right_label(parse_right(&row.right_name).unwrap_or(Right::Know)),
                &day,
                reason.trim(),
                &link,
            )
            .enqueue(
                &self.store,
                &mut tx,
                &format!("request-extended:{}", row.id),
                &submission.requester_email,
                submission.requester_user_id,
                Some(submission.id),
                now,
            )
            .await?;
            Ok(day)
        }
        .await;
        settle(tx, result, "extending a deadline").await
    }

    pub async fn assign(
        &self,
        staff_id: i64,
        request_id: i64,
        assignee: Option<i64>,
    ) -> Result<()> {
        let mut tx = self.store.begin().await?;
        let result: Result<_> = async {
            let row = store::request_for_update(&mut tx, &self.store, request_id)
                .await?
                .ok_or(Error::NotFound("request"))?;
            if let Some(assignee) = assignee {
                let user = self
                    .store
                    .user_by_id(assignee)
                    .await?
                    .ok_or(Error::NotFound("member"))?;
                let role =
                    crate::domain::Role::parse(&user.role).unwrap_or(crate::domain::Role::Member);
                if !role.takes_request_assignments() {
                    return Err(Error::invalid(InvalidField::new(
                        "assignee",
                        "must be a privacy officer, administrator or support agent",
                    )));
                }
            }
            store::set_assignee(&mut tx, row.id, assignee, crate::now()).await?;
            audit::record(
                &mut tx,
                &self.audit,
                AuditEvent::new(AuditKind::RequestAssigned)
                    .actor(Some(staff_id))
                    .subject(assignee)
                    .detail(Detail::Request(row.id)),
            )
            .await?;
            Ok(())
        }
        .await;
        settle(tx, result, "assigning a request").await?;
        Ok(())
    }

    pub async fn add_note(&self, staff_id: i64, request_id: i64, body: &str) -> Result<()> {
        let body = body.trim();
        if body.is_empty() || body.chars().count() > 10_000 {
            return Err(Error::invalid(InvalidField::new(
                "note",
                "must be 1 to 10000 characters",
            )));
        }
        let mut tx = self.store.begin().await?;
        let result: Result<_> = async {
            let row = store::request_for_update(&mut tx, &self.store, request_id)
                .await?
                .ok_or(Error::NotFound("request"))?;
            store::insert_note(
                &mut tx,
                &self.store,
                (row.id, row.submission_id),
                Some(staff_id),
                body,
                crate::now(),
            )
            .await?;
            audit::record(
                &mut tx,
                &self.audit,
                AuditEvent::new(AuditKind::RequestNoteAdded)
                    .actor(Some(staff_id))
                    .detail(Detail::Request(row.id)),
            )
            .await?;
            Ok(())
        }
        .await;
        settle(tx, result, "adding a note").await?;
        Ok(())
    }

    /// Sends one of the templated messages to the requester.
    pub async fn send_template(
        &self,
        staff_id: i64,
        request_id: i64,
        template: Template,
    ) -> Result<()> {
        let mut tx = self.store.begin().await?;
        let result: Result<_> = async {
            let row = store::request_for_update(&mut tx, &self.store, request_id)
                .await?
                .ok_or(Error::NotFound("request"))?;
            let submission =
                store::submission_in_tx(&mut tx, &self.store, row.submission_id).await?;
            let now = crate::now();
            let link = self.status_link(&mut tx, submission.id).await?;
            Message::template(
                &self.config.site_name,
                template,
                right_label(parse_right(&row.right_name).unwrap_or(Right::Know)),
                &link,
            )
            .enqueue(
                &self.store,
                &mut tx,
                &format!("request-template:{}:{}:{now}", row.id, template.as_str()),
                &submission.requester_email,
                submission.requester_user_id,
                Some(submission.id),
                now,
            )
            .await?;
            audit::record(
                &mut tx,
                &self.audit,
                AuditEvent::new(AuditKind::RequestMessageSent)
                    .actor(Some(staff_id))
                    .subject(submission.subject_user_id)
                    .detail(Detail::Request(row.id))
                    .detail(Detail::Method(template.as_str())),
            )
            .await?;
            Ok(())
        }
        .await;
        settle(tx, result, "sending a templated message").await?;
        Ok(())
    }

    /// The requester withdraws a request that is not decided yet.
    pub async fn withdraw(&self, requester_token: &str, request_id: i64) -> Result<()> {
        let digest = token_digest(requester_token);
        let submission = self
            .store
            .submission_by_requester_token(&digest)
            .await?
            .ok_or(Error::InvalidToken)?;
        let mut tx = self.store.begin().await?;
        let result: Result<_> = async {
            let row = store::request_for_update(&mut tx, &self.store, request_id)
                .await?
                .filter(|r| r.submission_id == submission.id)
                .ok_or(Error::NotFound("request"))?;
            self.apply(
                &mut tx,
                &row,
                Event::Withdrawn,
                submission.requester_user_id,
                submission.subject_user_id,
                None,
            )
            .await?;
            Ok(())
        }
        .await;
        settle(tx, result, "withdrawing a request").await?;
        Ok(())
    }

    /// One round of the background job: reminders, closing unverified requests, and alarms.
    /// Safe on several nodes: rows are claimed with `FOR UPDATE SKIP LOCKED`.
    pub async fn run_due(&self, now: i64) -> Result<JobRound> {
        let mut round = JobRound::default();
        if self.config.requests.fulfil_at_once {
            round.completed = self.finish_unfinished_hand_overs(now).await?;
        }
        let close_after = self.config.requests.unverified_close_days * 86_400;
        let every = self.config.requests.reminder_days.max(1) * 86_400;
        loop {
            let ids = self.store.claim_unverified_due(now, now + 600, 50).await?;
            if ids.is_empty() {
                break;
            }
            for id in ids {
                let mut tx = self.store.begin().await?;
                let step: Result<()> = async {
                    let Some(row) = store::request_for_update(&mut tx, &self.store, id).await?
                    else {
                        return Ok(());
                    };
                    let submission =
                        store::submission_in_tx(&mut tx, &self.store, row.submission_id).await?;
                    if now >= row.received_at + close_after {
                        let row = if row.state == "received" {
                            self.apply(
                                &mut tx,
                                &row,
                                Event::VerificationStarted,
                                None,
                                submission.subject_user_id,
                                None,
                            )
                            .await?;
                            store::request_for_update(&mut tx, &self.store, id)
                                .await?
                                .context("a request vanished")?
                        } else {
                            row
                        };
                        self.apply(
                            &mut tx,
                            &row,
                            Event::VerificationExpired,
                            None,
                            submission.subject_user_id,
                            None,
                        )
                        .await?;
                        self.queue_decision_mail(&mut tx, &row, &submission, None)
                            .await?;
                        round.closed += 1;
                    } else {
                        let n = row.reminders_sent + 1;
                        // One reminder per submission and round, whatever the number of rights.
                        if submission.code_digest.is_some()
                            && row.id
                                == self
                                    .store
                                    .requests_of_submission(submission.id)
                                    .await?
                                    .first()
                                    .map(|r| r.id)
                                    .unwrap_or(row.id)
                        {
                            self.send_new_code(&mut tx, &submission, n).await?;
                        }
                        store::set_reminder(
                            &mut tx,
                            id,
                            Some((now + every).min(row.received_at + close_after)),
                            n,
                        )
                        .await?;
                        audit::record(
                            &mut tx,
                            &self.audit,
                            AuditEvent::new(AuditKind::RequestMessageSent)
                                .subject(submission.subject_user_id)
                                .detail(Detail::Request(id))
                                .detail(Detail::Method("verification_reminder")),
                        )
                        .await?;
                        round.reminded += 1;
                    }
                    Ok(())
                }
                .await;
                settle(tx, step, "a request job step").await?;
            }
        }
        let today = day_of(now);
        let soon =
            iso(today.saturating_add(time::Duration::days(self.config.requests.nearly_due_days)));
        let overdue_before = iso(today.previous_day().unwrap_or(today));
        let staff = self.store.privacy_staff_emails().await?;
        for (column, day, overdue) in [
            (store::AlarmColumn::Overdue, overdue_before, true),
            (store::AlarmColumn::NearlyDue, soon, false),
        ] {
            let mut tx = self.store.begin().await?;
            let ids = store::claim_alarms(&mut tx, &self.store, column, &day, now).await?;
            if !ids.is_empty() {
                let link = format!("{}/staff/requests", self.config.base_url());
                let message = Message::alarm(&self.config.site_name, overdue, &ids, &link);
                let key_kind = if overdue { "overdue" } else { "nearly-due" };
                for (staff_id, email) in &staff {
                    message
                        .enqueue(
                            &self.store,
                            &mut tx,
                            &format!(
                                "request-alarm:{key_kind}:{staff_id}:{}:{}",
                                ids[0],
                                ids.len()
                            ),
                            email,
                            Some(*staff_id),
                            None,
                            now,
                        )
                        .await?;
                }
                if overdue {
                    round.overdue_alarms += ids.len();
                } else {
                    round.nearly_due_alarms += ids.len();
                }
            }
            tx.commit().await.context("raising deadline alarms")?;
        }
        Ok(round)
    }

    /// Runs the job until `shutdown` fires; `after_round` runs after each round (the page
    /// cache goes stale then: a round may finish an erasure).
    pub async fn run(
        self,
        mailer: crate::mail::Mailer,
        after_round: impl Fn(u64) + Send + Sync + 'static,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let every = std::time::Duration::from_secs(self.config.requests.job_seconds.max(1));
        loop {
            let result = self.run_due(crate::now()).await;
            if !matches!(&result, Ok(round) if *round == JobRound::default()) {
                after_round(0);
            }
            match result {
                Ok(round) if round != JobRound::default() => {
                    tracing::info!(?round, "request job round");
                    mailer.wake();
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), "the request job failed a round")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Counts for `/metrics`: open requests overdue and nearly due.
    pub async fn alarm_counts(&self, now: i64) -> Result<(i64, i64)> {
        let today = day_of(now);
        let overdue = self
            .store
            .count_open_due_by(&iso(today.previous_day().unwrap_or(today)))
            .await?;
        let soon = self
            .store
            .count_open_due_by(&iso(today.saturating_add(time::Duration::days(
                self.config.requests.nearly_due_days,
            ))))
            .await?;
        Ok((overdue, soon - overdue))
    }
}

/// What a correct code achieved.
#[derive(Debug, Clone)]
pub struct Verified {
    pub level: VerificationLevel,
    /// A fresh link to the status page.
    pub status_link: String,
    /// An agent's request waits for the agent's evidence.
    pub waiting_for_evidence: bool,
}

/// An evidence file as staff download it.
pub struct Evidence {
    pub id: i64,
    /// One of the types `evidence_type` accepts.
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

impl Evidence {
    /// The file name offered to the browser: the evidence number and its type's extension.
    pub fn file_name(&self) -> String {
        let extension = match self.content_type {
            "application/pdf" => "pdf",
            "image/png" => "png",
            "image/jpeg" => "jpg",
            _ => "bin",
        };
        format!("evidence-{}.{extension}", self.id)
    }
}

/// What one job round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JobRound {
    /// Hand-overs a node left unfinished, carried out now.
    pub completed: usize,
    pub reminded: usize,
    pub closed: usize,
    pub overdue_alarms: usize,
    pub nearly_due_alarms: usize,
}

fn written_name(kind: WrittenOptOut) -> &'static str {
    match kind {
        WrittenOptOut::California => "california",
        WrittenOptOut::NevadaSale => "nevada_sale",
    }
}

/// The evidence's type from its first bytes (never from its name or the browser's word).
pub fn evidence_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_someone_lives_decides_the_jurisdiction() {
        let table = [
            ("US", "CA", Jurisdiction::California),
            ("usa", "Nevada", Jurisdiction::Nevada),
            ("United States", "va", Jurisdiction::Virginia),
            ("US", "NY", Jurisdiction::Other),
            ("", "CO", Jurisdiction::Colorado),
            ("DE", "", Jurisdiction::EuEea),
            ("no", "", Jurisdiction::EuEea),
            ("GB", "", Jurisdiction::Uk),
            ("United Kingdom", "", Jurisdiction::Uk),
            ("JP", "", Jurisdiction::Other),
            ("", "", Jurisdiction::Other),
        ];
        for (country, state, expected) in table {
            assert_eq!(
                jurisdiction_of(country, state),
                expected,
                "{country}/{state}"
            );
        }
    }

    #[test]
    fn evidence_is_typed_by_its_first_bytes() {
        assert_eq!(evidence_type(b"%PDF-1.7\n"), Some("application/pdf"));
        assert_eq!(evidence_type(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(evidence_type(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(evidence_type(b"GIF89a"), None);
        assert_eq!(evidence_type(b"<html>%PDF-"), None);
    }

    #[test]
    fn every_right_has_one_name_that_parses_back() {
        for (right, name, _) in RIGHTS {
            assert_eq!(parse_right(name), Some(right));
            assert_eq!(right_name(right), name);
            let serde_name = serde_json::to_value(right).unwrap();
            assert_eq!(
                serde_name.as_str(),
                Some(name),
                "stored names match the policy file's"
            );
        }
    }
}
