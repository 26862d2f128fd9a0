//! Request bodies: form and JSON extractors whose every refusal is a clear 4xx in the
//! application's own error format, never the framework's plain text.

use crate::error::Error;
use crate::web::error::{ApiError, PageError};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;

/// A URL-encoded HTML form.
pub struct Form<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Form<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_form = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(Error::BadRequest("expected a form submission".into()).into());
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(body_error)?;
        decode_form(&bytes).map(Form).map_err(PageError)
    }
}

fn body_error(rejection: BytesRejection) -> Error {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        Error::PayloadTooLarge
    } else {
        Error::BadRequest("the request body could not be read".into())
    }
}

/// Decodes a URL-encoded body, refusing text that is not valid UTF-8 once percent-decoded
/// (the usual decoders would silently replace it).
pub fn decode_form<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if !percent_decoded_is_utf8(bytes) {
        return Err(Error::BadRequest("the form is not valid UTF-8 text".into()));
    }
    serde_urlencoded::from_bytes(bytes)
        .map_err(|e| Error::BadRequest(format!("the form could not be read: {e}")))
}

fn percent_decoded_is_utf8(bytes: &[u8]) -> bool {
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        decoded.push(byte);
                        i += 3;
                        continue;
                    }
                    None => decoded.push(b'%'),
                }
            }
            b'+' => decoded.push(b' '),
            byte => decoded.push(byte),
        }
        i += 1;
    }
    std::str::from_utf8(&decoded).is_ok()
}

/// A JSON body for the API.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(ApiError(json_error(rejection))),
        }
    }
}

fn json_error(rejection: JsonRejection) -> Error {
    match rejection {
        JsonRejection::BytesRejection(inner)
            if inner.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
        {
            Error::PayloadTooLarge
        }
        JsonRejection::MissingJsonContentType(_) => {
            Error::BadRequest("expected Content-Type: application/json".into())
        }
        other => Error::BadRequest(other.body_text()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoded_bytes_must_be_utf8() {
        assert!(percent_decoded_is_utf8(b"title=caf%C3%A9+ok"));
        assert!(!percent_decoded_is_utf8(b"title=%FF%FE"));
        assert!(!percent_decoded_is_utf8(b"title=\xff"));
        assert!(percent_decoded_is_utf8(b"title=100%"));
    }
}
