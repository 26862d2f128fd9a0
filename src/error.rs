//! The application's one error type, shared by every layer below the web edge.
//!
//! Variants say what went wrong in terms a member or an API client can act on; `Internal`
//! carries the cause chain for the log and is shown to no one.

use crate::domain::InvalidField;
use crate::store::Duplicate;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("some fields are invalid")]
    Invalid(Vec<InvalidField>),
    #[error("that {field} is already taken")]
    Conflict { field: &'static str },
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("sign in first")]
    Unauthenticated,
    #[error("wrong username, email or password")]
    BadCredentials,
    #[error("you may not do that")]
    Forbidden,
    #[error("verify your email address first")]
    EmailNotVerified,
    #[error("members must be at least {minimum_age} years old")]
    BelowMinimumAge { minimum_age: u8 },
    #[error("social sign-in refused: {0}")]
    SocialSignIn(&'static str),
    #[error("a parent has to agree before this account can post: we emailed them a link")]
    ParentalConsentPending,
    #[error("enter the code from your authenticator app, or a recovery code")]
    SecondFactorRequired,
    #[error("that code is wrong, expired or already used")]
    InvalidSecondFactor,
    #[error("staff actions need 2-step verification: turn it on at /account/two-factor first")]
    SecondFactorEnrolmentRequired,
    /// A sensitive account action on a session whose sign-in is older than
    /// `session.reauthenticate_after_hours`.
    #[error("for your safety, confirm your password first (at /account/confirm), then try again")]
    ReauthenticationRequired,
    #[error("this link is invalid, used or expired")]
    InvalidToken,
    #[error("the form expired or came from another site; reload the page and try again")]
    Csrf,
    #[error("{0}")]
    BadRequest(String),
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// A rate limit refused the attempt; the wait is sent as `Retry-After`.
    #[error("too many attempts; wait a while and try again")]
    TooManyRequests { retry_after_seconds: i64 },
    /// A privacy request cannot take this step now; the message names why (no personal data).
    #[error("{0}")]
    RequestRefused(String),
    #[error(transparent)]
    Internal(anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(field: InvalidField) -> Self {
        Self::Invalid(vec![field])
    }
}

impl From<anyhow::Error> for Error {
    fn from(error: anyhow::Error) -> Self {
        match error.downcast_ref::<Duplicate>() {
            Some(Duplicate(field)) => Self::Conflict { field },
            None => Self::Internal(error),
        }
    }
}

impl From<InvalidField> for Error {
    fn from(field: InvalidField) -> Self {
        Self::invalid(field)
    }
}
