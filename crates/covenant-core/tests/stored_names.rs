//! Every closed set stored as TEXT is spelled the same by `as_str`, `parse` and serde, so a
//! row written through one reads back through the other.

use std::fmt::Debug;

use covenant_core::consent::{Choice, Method, Reason};
use covenant_core::policy::CookieCategory;
use covenant_core::requests::{DeclineCode, RequestState, VerificationLevel};
use covenant_core::retention::{ClosureReason, VerdictState};
use covenant_core::stored::UnknownName;
use serde::Serialize;

fn check<T>(all: &[T], as_str: fn(T) -> &'static str, parse: fn(&str) -> Result<T, UnknownName>)
where
    T: Copy + PartialEq + Debug + Serialize,
{
    for value in all.iter().copied() {
        let name = as_str(value);
        assert_eq!(parse(name), Ok(value), "{name}");
        let serde_name = serde_json::to_value(value).expect("serializes");
        assert_eq!(serde_name, name, "{value:?}");
    }
    assert!(parse("No Such Name").is_err());
}

#[test]
fn stored_names_match_their_serde_names_and_parse_back() {
    check(
        CookieCategory::ALL,
        CookieCategory::as_str,
        CookieCategory::parse,
    );
    check(Choice::ALL, Choice::as_str, Choice::parse);
    check(Method::ALL, Method::as_str, Method::parse);
    check(Reason::ALL, Reason::as_str, Reason::parse);
    check(
        ClosureReason::ALL,
        ClosureReason::as_str,
        ClosureReason::parse,
    );
    check(VerdictState::ALL, VerdictState::as_str, VerdictState::parse);
    check(RequestState::ALL, RequestState::as_str, RequestState::parse);
    check(DeclineCode::ALL, DeclineCode::as_str, DeclineCode::parse);
    check(
        VerificationLevel::ALL,
        VerificationLevel::as_str,
        VerificationLevel::parse,
    );
}

#[test]
fn an_unknown_name_says_what_it_is_not() {
    let error = RequestState::parse("closed").expect_err("unknown");
    assert_eq!(error.to_string(), "`closed` is not a known request state");
}
