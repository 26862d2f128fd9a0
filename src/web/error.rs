//! How errors look to people and to API clients: a page with a plain message, or a JSON body
//! with a stable code. Internal causes are logged with their whole chain and never shown.

use crate::error::Error;
use crate::web::pages::ErrorPage;
use askama::Template;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;

/// The stable error codes of the JSON API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// One or more fields are invalid; `fields` says which and why.
    InvalidInput,
    /// A unique value (username, email, slug) is already taken; `fields` names it.
    Conflict,
    /// The addressed resource does not exist or is not visible to the caller.
    NotFound,
    /// The call needs a signed-in member (`Authorization: Bearer <token>`).
    Unauthenticated,
    /// The username, email or password is wrong.
    BadCredentials,
    /// The caller is signed in but may not do this.
    Forbidden,
    /// The member must verify their email address first.
    EmailNotVerified,
    /// A social sign-in was refused; the message says which check failed (state, code,
    /// signature, expiry, nonce).
    SocialSignInRefused,
    /// The person is below the minimum age where they live; nothing they sent was kept.
    BelowMinimumAge,
    /// The account belongs to a minor whose parent has not consented yet.
    ParentalConsentPending,
    /// The account has 2-step verification: send the authenticator `code` (or a recovery code)
    /// with the login and password.
    SecondFactorRequired,
    /// The 2-step verification code is wrong, expired or was already used.
    InvalidSecondFactor,
    /// Staff actions need 2-step verification, which this account has not turned on.
    SecondFactorEnrolmentRequired,
    /// A sensitive account action needs a recent sign-in: sign in again (`POST /api/v1/session`)
    /// and repeat the call with the new token. Pages ask for the password at `/account/confirm`.
    ReauthenticationRequired,
    /// The token or link is invalid, used or expired.
    InvalidToken,
    /// The form's anti-forgery token is missing or wrong.
    Csrf,
    /// The request is malformed (bad JSON, wrong content type, invalid UTF-8).
    BadRequest,
    /// The request body exceeds the configured limit.
    PayloadTooLarge,
    /// Too many attempts from this address or for this email address; try again later.
    RateLimited,
    /// The privacy request cannot take this step in its current state.
    RequestStateConflict,
    /// Something failed on the server; the cause is in the server's log.
    Internal,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiErrorBody {
    pub error: ApiErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<crate::domain::InvalidField>,
}

fn classify(error: &Error) -> (StatusCode, ErrorCode) {
    match error {
        Error::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidInput),
        Error::Conflict { .. } => (StatusCode::CONFLICT, ErrorCode::Conflict),
        Error::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
        Error::Unauthenticated => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated),
        Error::BadCredentials => (StatusCode::UNAUTHORIZED, ErrorCode::BadCredentials),
        Error::Forbidden => (StatusCode::FORBIDDEN, ErrorCode::Forbidden),
        Error::EmailNotVerified => (StatusCode::FORBIDDEN, ErrorCode::EmailNotVerified),
        Error::SocialSignIn(_) => (StatusCode::BAD_REQUEST, ErrorCode::SocialSignInRefused),
        Error::BelowMinimumAge { .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::BelowMinimumAge)
        }
        Error::ParentalConsentPending => (StatusCode::FORBIDDEN, ErrorCode::ParentalConsentPending),
        Error::SecondFactorRequired => (StatusCode::UNAUTHORIZED, ErrorCode::SecondFactorRequired),
        Error::InvalidSecondFactor => (StatusCode::UNAUTHORIZED, ErrorCode::InvalidSecondFactor),
        Error::SecondFactorEnrolmentRequired => (
            StatusCode::FORBIDDEN,
            ErrorCode::SecondFactorEnrolmentRequired,
        ),
        Error::ReauthenticationRequired => {
            (StatusCode::FORBIDDEN, ErrorCode::ReauthenticationRequired)
        }
        Error::InvalidToken => (StatusCode::BAD_REQUEST, ErrorCode::InvalidToken),
        Error::Csrf => (StatusCode::FORBIDDEN, ErrorCode::Csrf),
        Error::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
        Error::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge),
        Error::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited),
        Error::RequestRefused(_) => (StatusCode::CONFLICT, ErrorCode::RequestStateConflict),
        Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
    }
}

fn public_message(error: &Error) -> String {
    match error {
        Error::Internal(cause) => {
            tracing::error!(error = %format!("{cause:#}"), "request failed");
            "something went wrong on our side; please try again later".to_string()
        }
        Error::Conflict { field } => format!("that {field} is already taken"),
        other => other.to_string(),
    }
}

fn fields(error: &Error) -> Vec<crate::domain::InvalidField> {
    match error {
        Error::Invalid(fields) => fields.clone(),
        Error::Conflict { field } => {
            vec![crate::domain::InvalidField::new(field, "is already taken")]
        }
        _ => Vec::new(),
    }
}

/// A rate limit's refusal says when to come back (RFC 9110 `Retry-After`, in seconds).
fn with_retry_after(error: &Error, mut response: Response) -> Response {
    if let Error::TooManyRequests {
        retry_after_seconds,
    } = error
    {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(retry_after_seconds.max(&1).to_owned()),
        );
    }
    response
}

/// An error answered with JSON.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl<E: Into<Error>> From<E> for ApiError {
    fn from(error: E) -> Self {
        Self(error.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = classify(&self.0);
        let body = ApiErrorBody {
            error: ApiErrorDetail {
                code,
                message: public_message(&self.0),
                fields: fields(&self.0),
            },
        };
        with_retry_after(&self.0, (status, Json(body)).into_response())
    }
}

/// An error answered with an HTML page.
#[derive(Debug)]
pub struct PageError(pub Error);

impl<E: Into<Error>> From<E> for PageError {
    fn from(error: E) -> Self {
        Self(error.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        // A browser is sent to the password form, which brings it back to the checkup page.
        if matches!(self.0, Error::ReauthenticationRequired) {
            return (
                StatusCode::SEE_OTHER,
                [(axum::http::header::LOCATION, "/account/confirm")],
            )
                .into_response();
        }
        let (status, _) = classify(&self.0);
        let mut message = public_message(&self.0);
        for field in fields(&self.0) {
            message.push_str(&format!("; {field}"));
        }
        let page = ErrorPage::new(status, message);
        let response = match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, page.message).into_response(),
        };
        with_retry_after(&self.0, response)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
pub type PageResult<T = Response> = Result<T, PageError>;
