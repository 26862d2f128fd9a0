//! The privacy-request life cycle (promises R3, R5, R6, R10) as an explicit state machine:
//! states, events, the one `transition` function, decline codes, verification levels and due
//! dates. It decides what may happen next; it must never send mail, store a request or read
//! the clock (dates arrive inside events).

use serde::{Deserialize, Serialize};
use time::{Date, Duration};

use crate::deadline::due_date;
use crate::policy::{AppealRule, Jurisdiction, Policy, Right};
use crate::stored::{iso_date, stored_names};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Received,
    Verifying,
    Verified,
    InProgress,
    Fulfilled,
    PartlyFulfilled,
    Declined,
    Unverifiable,
    Withdrawn,
    Appealed,
    AppealUpheld,
    /// The decision was reversed on appeal; the request is handled again.
    AppealReversed,
}

stored_names!(RequestState, "request state", {
    Received => "received",
    Verifying => "verifying",
    Verified => "verified",
    InProgress => "in_progress",
    Fulfilled => "fulfilled",
    PartlyFulfilled => "partly_fulfilled",
    Declined => "declined",
    Unverifiable => "unverifiable",
    Withdrawn => "withdrawn",
    Appealed => "appealed",
    AppealUpheld => "appeal_upheld",
    AppealReversed => "appeal_reversed",
});

impl RequestState {
    /// A decision has been made and nothing more happens, except an appeal where one is open.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RequestState::Fulfilled
                | RequestState::PartlyFulfilled
                | RequestState::Declined
                | RequestState::Unverifiable
                | RequestState::Withdrawn
                | RequestState::AppealUpheld
        )
    }
}

/// How sure we are that the requester is the subject (R3). Not a total order: a session and a
/// code plus a matching fact are equally strong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationLevel {
    None,
    EmailCode,
    EmailCodePlusFact,
    Session,
    #[serde(rename = "session_2fa")]
    Session2fa,
}

stored_names!(VerificationLevel, "verification level", {
    None => "none",
    EmailCode => "email_code",
    EmailCodePlusFact => "email_code_plus_fact",
    Session => "session",
    Session2fa => "session_2fa",
});

impl VerificationLevel {
    fn strength(self) -> u8 {
        match self {
            VerificationLevel::None => 0,
            VerificationLevel::EmailCode => 1,
            VerificationLevel::EmailCodePlusFact | VerificationLevel::Session => 2,
            VerificationLevel::Session2fa => 3,
        }
    }

    pub fn satisfies(self, required: VerificationLevel) -> bool {
        self.strength() >= required.strength()
    }
}

/// The proof a right needs (R3). Opt-outs and withdrawals need none, since acting on a false
/// one harms nobody; deletion and handing over specific pieces of data need the higher level.
pub fn required_verification(right: Right, specific_pieces: bool) -> VerificationLevel {
    match right {
        Right::OptOutSale
        | Right::OptOutTargetedAdvertising
        | Right::WithdrawConsent
        | Right::ObjectDirectMarketing => VerificationLevel::None,
        Right::Deletion | Right::Portability => VerificationLevel::EmailCodePlusFact,
        Right::Access if specific_pieces => VerificationLevel::EmailCodePlusFact,
        Right::Know
        | Right::Access
        | Right::Rectification
        | Right::Restriction
        | Right::Objection
        | Right::LimitSensitive
        | Right::Appeal
        | Right::ComplainToAuthority => VerificationLevel::EmailCode,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeclineCode {
    CannotVerify,
    NotFound,
    NotResident,
    LegalException,
    ManifestlyUnfounded,
}

stored_names!(DeclineCode, "decline reason", {
    CannotVerify => "cannot_verify",
    NotFound => "not_found",
    NotResident => "not_resident",
    LegalException => "legal_exception",
    ManifestlyUnfounded => "manifestly_unfounded",
});

impl DeclineCode {
    /// Sent to the requester with the decision (R6).
    pub fn explanation(self) -> &'static str {
        match self {
            DeclineCode::CannotVerify => {
                "We could not confirm that you are the person the request is about. You can make \
                 a new request and verify it."
            }
            DeclineCode::NotFound => "We hold no personal data about the person the request names.",
            DeclineCode::NotResident => {
                "The right you asked for is given by the law of a place where, from what you told \
                 us, you do not live."
            }
            DeclineCode::LegalException => {
                "The law requires or allows us to keep or withhold this data; the decision names \
                 the exception."
            }
            DeclineCode::ManifestlyUnfounded => {
                "The request is manifestly unfounded or excessive, for instance a repeat of one \
                 answered recently."
            }
        }
    }

    /// A request that could not be verified is answered by verifying a new one, not by appeal.
    pub fn appeal_open(self) -> bool {
        self != DeclineCode::CannotVerify
    }

    /// Saying "not found" or naming an exception before verification would tell a stranger
    /// whether an address has an account (R3).
    pub fn requires_verification(self) -> bool {
        matches!(self, DeclineCode::NotFound | DeclineCode::LegalException)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationEnd {
    /// The attempts ran out.
    Failed,
    /// Nobody verified before the time allowed (default 7 days).
    Expired,
}

/// A member of staff, by user id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StaffId(pub i64);

/// How a request ended, always with a reason that can be shown to the requester.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    Fulfilled,
    PartlyFulfilled { reason: String },
    Declined { code: DeclineCode },
    Unverifiable { end: VerificationEnd },
    Withdrawn,
}

impl Outcome {
    pub fn explanation(&self) -> &str {
        match self {
            Outcome::Fulfilled => "We did what you asked.",
            Outcome::PartlyFulfilled { reason } => reason,
            Outcome::Declined { code } => code.explanation(),
            Outcome::Unverifiable {
                end: VerificationEnd::Failed,
            } => "The identity check failed too many times, so the request was closed.",
            Outcome::Unverifiable {
                end: VerificationEnd::Expired,
            } => "The identity check was not completed in time, so the request was closed.",
            Outcome::Withdrawn => "The requester withdrew the request.",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appeal {
    #[serde(with = "iso_date")]
    pub lodged_on: Date,
    pub decision: Option<AppealDecision>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppealDecision {
    pub upheld: bool,
    pub decided_by: StaffId,
    pub reason: String,
}

/// What happens to a request; each one is an audited event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    VerificationStarted,
    /// The requester proved who they are at `level`; below the level the right needs, the
    /// request keeps verifying with the level recorded.
    VerificationSucceeded {
        level: VerificationLevel,
    },
    VerificationFailed,
    VerificationExpired,
    FulfilmentStarted,
    /// `decided_by` is `None` when the fulfilment ran without a person deciding.
    Fulfilled {
        decided_by: Option<StaffId>,
        #[serde(with = "iso_date")]
        on: Date,
    },
    PartlyFulfilled {
        reason: String,
        decided_by: Option<StaffId>,
        #[serde(with = "iso_date")]
        on: Date,
    },
    Declined {
        code: DeclineCode,
        decided_by: Option<StaffId>,
        #[serde(with = "iso_date")]
        on: Date,
    },
    Withdrawn,
    AppealLodged {
        #[serde(with = "iso_date")]
        on: Date,
    },
    AppealDecided {
        upheld: bool,
        decided_by: StaffId,
        reason: String,
    },
}

/// What the machine needs to know about the request beyond its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// From `required_verification` for the rights asked.
    pub required: VerificationLevel,
    /// The appeal rule of the requester's jurisdiction; `None` where the law grants none.
    pub appeal: Option<AppealRule>,
}

/// A request's standing: its state and the facts earlier events left. Only `transition`
/// produces one after `RequestStatus::received`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestStatus {
    state: RequestState,
    verification: Option<VerificationLevel>,
    outcome: Option<Outcome>,
    decided_by: Option<StaffId>,
    #[serde(with = "iso_date::option")]
    decided_on: Option<Date>,
    appeal: Option<Appeal>,
}

impl RequestStatus {
    pub fn received() -> RequestStatus {
        RequestStatus {
            state: RequestState::Received,
            verification: None,
            outcome: None,
            decided_by: None,
            decided_on: None,
            appeal: None,
        }
    }

    pub fn state(&self) -> RequestState {
        self.state
    }
    /// The strongest level reached so far.
    pub fn verification(&self) -> Option<VerificationLevel> {
        self.verification
    }
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }
    pub fn decided_by(&self) -> Option<StaffId> {
        self.decided_by
    }
    pub fn decided_on(&self) -> Option<Date> {
        self.decided_on
    }
    pub fn appeal(&self) -> Option<&Appeal> {
        self.appeal.as_ref()
    }

    /// The reason to show for where the request stands; every terminal state has one.
    pub fn reason(&self) -> Option<&str> {
        match (self.state, &self.appeal) {
            (
                RequestState::AppealUpheld | RequestState::AppealReversed,
                Some(Appeal {
                    decision: Some(decision),
                    ..
                }),
            ) => Some(&decision.reason),
            (state, _) if state.is_terminal() => self.outcome.as_ref().map(Outcome::explanation),
            _ => None,
        }
    }

    fn verified(&self, context: &Context) -> bool {
        self.verification
            .is_some_and(|level| level.satisfies(context.required))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("a request that is {state} cannot take `{event}`")]
    NotAllowed {
        state: RequestState,
        event: &'static str,
    },
    #[error("the request must be verified before it can be {0}")]
    NotVerified(&'static str),
    #[error("a reason is required")]
    MissingReason,
    #[error("no appeal is open: {0}")]
    AppealNotOpen(&'static str),
    #[error("an appeal must be decided by someone other than who made the original decision")]
    SameDecider,
}

/// Appeals are decided by a different member of staff (R6). An automated decision has no
/// decider, so anyone may decide its appeal.
pub fn appeal_decider_must_differ(
    original_decider: Option<StaffId>,
    appeal_decider: StaffId,
) -> Result<(), TransitionError> {
    if original_decider == Some(appeal_decider) {
        Err(TransitionError::SameDecider)
    } else {
        Ok(())
    }
}

impl Event {
    /// The event's name on the audit trail.
    pub fn name(&self) -> &'static str {
        match self {
            Event::VerificationStarted => "verification_started",
            Event::VerificationSucceeded { .. } => "verification_succeeded",
            Event::VerificationFailed => "verification_failed",
            Event::VerificationExpired => "verification_expired",
            Event::FulfilmentStarted => "fulfilment_started",
            Event::Fulfilled { .. } => "fulfilled",
            Event::PartlyFulfilled { .. } => "partly_fulfilled",
            Event::Declined { .. } => "declined",
            Event::Withdrawn => "withdrawn",
            Event::AppealLodged { .. } => "appeal_lodged",
            Event::AppealDecided { .. } => "appeal_decided",
        }
    }
}

/// The one way a request moves. Terminal states accept nothing but an appeal, and only from a
/// decision that can be appealed, in a jurisdiction that grants one, within its window, once.
pub fn transition(
    status: &RequestStatus,
    event: &Event,
    context: &Context,
) -> Result<RequestStatus, TransitionError> {
    use RequestState as S;
    let state = status.state;
    let not_allowed = || TransitionError::NotAllowed {
        state,
        event: event.name(),
    };
    let mut next = status.clone();
    let decide = |next: &mut RequestStatus, to, outcome, decided_by, on| {
        next.state = to;
        next.outcome = Some(outcome);
        next.decided_by = decided_by;
        next.decided_on = Some(on);
    };
    let open = !state.is_terminal() && state != S::Appealed;
    let verified = status.verified(context);
    match event {
        Event::VerificationStarted
            if matches!(state, S::Received | S::Verifying | S::AppealReversed) && !verified =>
        {
            next.state = S::Verifying;
        }
        Event::VerificationSucceeded { level }
            if matches!(state, S::Received | S::Verifying | S::AppealReversed) =>
        {
            let strongest = match status.verification {
                Some(reached) if reached.satisfies(*level) => reached,
                _ => *level,
            };
            next.verification = Some(strongest);
            next.state = if strongest.satisfies(context.required) {
                S::Verified
            } else {
                S::Verifying
            };
        }
        Event::VerificationFailed | Event::VerificationExpired if state == S::Verifying => {
            let end = match event {
                Event::VerificationFailed => VerificationEnd::Failed,
                _ => VerificationEnd::Expired,
            };
            next.state = S::Unverifiable;
            next.outcome = Some(Outcome::Unverifiable { end });
        }
        Event::FulfilmentStarted if matches!(state, S::Verified | S::AppealReversed) => {
            if !verified {
                return Err(TransitionError::NotVerified("handled"));
            }
            next.state = S::InProgress;
        }
        Event::Fulfilled { .. } | Event::PartlyFulfilled { .. }
            if matches!(state, S::Verified | S::InProgress) && !verified =>
        {
            return Err(TransitionError::NotVerified("fulfilled"));
        }
        Event::Fulfilled { decided_by, on } if matches!(state, S::Verified | S::InProgress) => {
            decide(
                &mut next,
                S::Fulfilled,
                Outcome::Fulfilled,
                *decided_by,
                *on,
            );
        }
        Event::PartlyFulfilled {
            reason,
            decided_by,
            on,
        } if matches!(state, S::Verified | S::InProgress) => {
            if reason.trim().is_empty() {
                return Err(TransitionError::MissingReason);
            }
            let outcome = Outcome::PartlyFulfilled {
                reason: reason.clone(),
            };
            decide(&mut next, S::PartlyFulfilled, outcome, *decided_by, *on);
        }
        Event::Declined {
            code,
            decided_by,
            on,
        } if open && state != S::AppealReversed => {
            if code.requires_verification() && !verified {
                return Err(TransitionError::NotVerified("declined for this reason"));
            }
            let outcome = Outcome::Declined { code: *code };
            decide(&mut next, S::Declined, outcome, *decided_by, *on);
        }
        Event::Withdrawn if open || state == S::Appealed => {
            next.state = S::Withdrawn;
            next.outcome = Some(Outcome::Withdrawn);
        }
        Event::AppealLodged { on } if matches!(state, S::Declined | S::PartlyFulfilled) => {
            appeal_is_open(status, *on, context)?;
            next.state = S::Appealed;
            next.appeal = Some(Appeal {
                lodged_on: *on,
                decision: None,
            });
        }
        Event::AppealDecided {
            upheld,
            decided_by,
            reason,
        } if state == S::Appealed => {
            appeal_decider_must_differ(status.decided_by, *decided_by)?;
            if reason.trim().is_empty() {
                return Err(TransitionError::MissingReason);
            }
            next.state = if *upheld {
                S::AppealUpheld
            } else {
                S::AppealReversed
            };
            if let Some(appeal) = &mut next.appeal {
                appeal.decision = Some(AppealDecision {
                    upheld: *upheld,
                    decided_by: *decided_by,
                    reason: reason.clone(),
                });
            }
        }
        _ => return Err(not_allowed()),
    }
    Ok(next)
}

fn appeal_is_open(
    status: &RequestStatus,
    on: Date,
    context: &Context,
) -> Result<(), TransitionError> {
    let Some(rule) = context.appeal else {
        return Err(TransitionError::AppealNotOpen(
            "the law of the requester's jurisdiction grants no appeal",
        ));
    };
    if status.appeal.is_some() {
        return Err(TransitionError::AppealNotOpen(
            "this request was appealed already",
        ));
    }
    if let Some(Outcome::Declined { code }) = &status.outcome
        && !code.appeal_open()
    {
        return Err(TransitionError::AppealNotOpen(
            "an unverified request is answered by making a new one",
        ));
    }
    let decided_on = status.decided_on.unwrap_or(on);
    let closes = decided_on.saturating_add(Duration::days(rule.window_days.into()));
    if on > closes {
        return Err(TransitionError::AppealNotOpen(
            "the time to appeal has passed",
        ));
    }
    Ok(())
}

/// The day a request received on `received` must be answered in `jurisdiction` (R5); never
/// before receipt.
pub fn due_date_for(
    policy: &Policy,
    jurisdiction: Jurisdiction,
    received: Date,
    holidays: &[Date],
) -> Date {
    due_date(
        received,
        policy.jurisdiction(jurisdiction).deadline,
        holidays,
    )
}

/// The day an appeal lodged on `lodged` must be decided; `None` where the law grants no appeal.
pub fn appeal_due_date_for(
    policy: &Policy,
    jurisdiction: Jurisdiction,
    lodged: Date,
    holidays: &[Date],
) -> Option<Date> {
    let rule = policy.jurisdiction(jurisdiction).appeal?;
    Some(due_date(lodged, rule.decide_within, holidays))
}
