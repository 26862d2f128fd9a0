//! Any request body decodes, through the same function and extractor the handlers use, to the
//! verdict the oracle expects: registration, sign-in, replies, new topics and the two privacy
//! request intake forms; never a panic.
#![no_main]

#[path = "../../tests/oracles/mod.rs"]
mod oracles;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use covenant::web::forms::{Form, decode_form};
use covenant::web::pages::{BodyForm, NewTopicForm, RegisterForm, SignInForm};
use covenant::web::requests::{AccountRequestForm, PublicForm};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
});

fuzz_target!(|body: &[u8]| {
    assert_eq!(
        decode_form::<Vec<(String, String)>>(body).ok(),
        oracles::form_pairs(body),
        "{body:?}"
    );
    oracles::assert_form_verdict(
        body,
        oracles::REGISTER_FIELDS,
        decode_form::<RegisterForm>(body),
    );
    oracles::assert_form_verdict(
        body,
        oracles::SIGN_IN_FIELDS,
        decode_form::<SignInForm>(body),
    );
    oracles::assert_form_verdict(body, oracles::BODY_FIELDS, decode_form::<BodyForm>(body));
    oracles::assert_form_verdict(
        body,
        oracles::NEW_TOPIC_FIELDS,
        decode_form::<NewTopicForm>(body),
    );
    oracles::assert_form_verdict(
        body,
        oracles::PUBLIC_REQUEST_FIELDS,
        decode_form::<PublicForm>(body),
    );
    oracles::assert_form_verdict(
        body,
        oracles::ACCOUNT_REQUEST_FIELDS,
        decode_form::<AccountRequestForm>(body),
    );

    // The extractor in front of the handlers gives the same verdict.
    let request = Request::builder()
        .method("POST")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body.to_vec()))
        .expect("a request");
    let extracted = RUNTIME.block_on(Form::<RegisterForm>::from_request(request, &()));
    assert_eq!(extracted.is_ok(), decode_form::<RegisterForm>(body).is_ok());
});
