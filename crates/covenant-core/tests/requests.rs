//! The privacy-request state machine: paths through it, identity levels, declines, appeals and
//! due dates, with properties over random event sequences.

use std::sync::LazyLock;

use covenant_core::policy::{Jurisdiction, Policy, Right};
use covenant_core::requests::{
    Context, DeclineCode, Event, RequestState, RequestStatus, StaffId, TransitionError,
    VerificationLevel, appeal_due_date_for, due_date_for, required_verification, transition,
};
use time::Date;
use time::macros::date;

const ALICE: StaffId = StaffId(1);
const BOB: StaffId = StaffId(2);
const DECIDED: Date = date!(2025 - 03 - 10);

/// Parsed once: the properties below ask for it thousands of times.
static POLICY: LazyLock<Policy> = LazyLock::new(Policy::default_policy);

fn context(required: VerificationLevel, jurisdiction: Jurisdiction) -> Context {
    Context {
        required,
        appeal: POLICY.jurisdiction(jurisdiction).appeal,
    }
}

fn run(context: &Context, events: &[Event]) -> Result<RequestStatus, TransitionError> {
    events
        .iter()
        .try_fold(RequestStatus::received(), |status, event| {
            transition(&status, event, context)
        })
}

fn succeeded(level: VerificationLevel) -> Event {
    Event::VerificationSucceeded { level }
}

fn declined(code: DeclineCode) -> Event {
    Event::Declined {
        code,
        decided_by: Some(ALICE),
        on: DECIDED,
    }
}

fn appeal_decided(upheld: bool, by: StaffId) -> Event {
    Event::AppealDecided {
        upheld,
        decided_by: by,
        reason: "The exception was applied correctly.".to_owned(),
    }
}

/// Proves: R3, R8
#[test]
fn a_deletion_runs_from_receipt_to_fulfilment_once_strongly_verified() {
    let context = context(
        required_verification(Right::Deletion, false),
        Jurisdiction::EuEea,
    );
    let status = run(
        &context,
        &[
            Event::VerificationStarted,
            succeeded(VerificationLevel::EmailCode),
        ],
    )
    .expect("a code is a step on the way");
    assert_eq!(status.state(), RequestState::Verifying);
    assert_eq!(status.verification(), Some(VerificationLevel::EmailCode));

    let status = transition(
        &status,
        &succeeded(VerificationLevel::EmailCodePlusFact),
        &context,
    )
    .and_then(|status| transition(&status, &Event::FulfilmentStarted, &context))
    .and_then(|status| {
        let done = Event::Fulfilled {
            decided_by: None,
            on: DECIDED,
        };
        transition(&status, &done, &context)
    })
    .expect("a verified deletion is fulfilled");
    assert_eq!(status.state(), RequestState::Fulfilled);
    assert_eq!(status.decided_on(), Some(DECIDED));
    assert!(status.reason().is_some());
}

/// Proves: R3
#[test]
fn fulfilment_cannot_start_before_verification() {
    let context = context(VerificationLevel::EmailCode, Jurisdiction::EuEea);
    let error = run(&context, &[Event::FulfilmentStarted]).expect_err("not verified");
    assert!(
        matches!(error, TransitionError::NotAllowed { .. }),
        "{error}"
    );
}

/// Proves: C4, R3
#[test]
fn an_opt_out_needs_no_proof_of_identity() {
    let context = context(
        required_verification(Right::OptOutSale, false),
        Jurisdiction::California,
    );
    let status = run(&context, &[succeeded(VerificationLevel::None)]).expect("verified");
    assert_eq!(status.state(), RequestState::Verified);
}

/// Proves: R3
#[test]
fn each_right_needs_its_level_of_proof() {
    use VerificationLevel::*;
    #[rustfmt::skip]
    let cases: &[(Right, bool, VerificationLevel)] = &[
        (Right::Deletion, false, EmailCodePlusFact),
        (Right::Access, true, EmailCodePlusFact),
        (Right::Portability, false, EmailCodePlusFact),
        (Right::Access, false, EmailCode),
        (Right::Know, false, EmailCode),
        (Right::Rectification, false, EmailCode),
        (Right::OptOutSale, false, None),
        (Right::OptOutTargetedAdvertising, false, None),
        (Right::WithdrawConsent, false, None),
    ];
    for (right, specific_pieces, level) in cases {
        assert_eq!(
            required_verification(*right, *specific_pieces),
            *level,
            "{right:?}"
        );
    }
    assert!(Session.satisfies(EmailCodePlusFact));
    assert!(Session2fa.satisfies(Session));
    assert!(!EmailCode.satisfies(EmailCodePlusFact));
    assert!(!Session.satisfies(Session2fa));
}

/// Proves: R3
#[test]
fn declining_as_not_found_waits_for_verification_so_no_account_is_revealed() {
    let context = context(VerificationLevel::EmailCode, Jurisdiction::Virginia);
    let error = run(&context, &[declined(DeclineCode::NotFound)]).expect_err("unverified");
    assert!(matches!(error, TransitionError::NotVerified(_)), "{error}");
    let status = run(&context, &[declined(DeclineCode::NotResident)]).expect("allowed");
    assert_eq!(status.state(), RequestState::Declined);
}

/// Proves: R3, R6
#[test]
fn verification_that_fails_or_expires_closes_the_request_with_a_reason() {
    let context = context(VerificationLevel::EmailCode, Jurisdiction::EuEea);
    for end in [Event::VerificationFailed, Event::VerificationExpired] {
        let status = run(&context, &[Event::VerificationStarted, end]).expect("closes");
        assert_eq!(status.state(), RequestState::Unverifiable);
        assert!(status.reason().is_some_and(|reason| !reason.is_empty()));
    }
}

/// Proves: R6
#[test]
fn every_decline_code_explains_itself_and_says_whether_appeal_is_open() {
    #[rustfmt::skip]
    let cases: &[(DeclineCode, bool)] = &[
        (DeclineCode::CannotVerify, false),
        (DeclineCode::NotFound, true),
        (DeclineCode::NotResident, true),
        (DeclineCode::LegalException, true),
        (DeclineCode::ManifestlyUnfounded, true),
    ];
    assert_eq!(cases.len(), DeclineCode::ALL.len());
    for (code, appeal_open) in cases {
        assert_eq!(code.appeal_open(), *appeal_open, "{code}");
        assert!(code.explanation().len() > 20, "{code}");
    }
}

fn declined_after_verification() -> Vec<Event> {
    vec![
        succeeded(VerificationLevel::Session),
        Event::FulfilmentStarted,
        declined(DeclineCode::LegalException),
    ]
}

/// Proves: R6
#[test]
fn an_appeal_is_decided_by_someone_other_than_the_original_decider() {
    let context = context(VerificationLevel::EmailCode, Jurisdiction::Virginia);
    let mut events = declined_after_verification();
    events.push(Event::AppealLodged {
        on: date!(2025 - 04 - 01),
    });
    let appealed = run(&context, &events).expect("appeal lodged");
    assert_eq!(appealed.state(), RequestState::Appealed);

    let same = transition(&appealed, &appeal_decided(true, ALICE), &context);
    assert_eq!(same, Err(TransitionError::SameDecider));

    let upheld = transition(&appealed, &appeal_decided(true, BOB), &context).expect("decided");
    assert_eq!(upheld.state(), RequestState::AppealUpheld);
    assert_eq!(
        upheld.reason(),
        Some("The exception was applied correctly.")
    );
}

/// Proves: R6
#[test]
fn a_reversed_appeal_sends_the_request_back_to_be_fulfilled() {
    let context = context(VerificationLevel::EmailCode, Jurisdiction::Colorado);
    let mut events = declined_after_verification();
    events.extend([
        Event::AppealLodged {
            on: date!(2025 - 03 - 20),
        },
        appeal_decided(false, BOB),
        Event::FulfilmentStarted,
        Event::PartlyFulfilled {
            reason: "Posts quoted by others stay, authored by \"deleted user\".".to_owned(),
            decided_by: Some(BOB),
            on: date!(2025 - 04 - 01),
        },
    ]);
    let status = run(&context, &events).expect("handled again");
    assert_eq!(status.state(), RequestState::PartlyFulfilled);
    let again = transition(
        &status,
        &Event::AppealLodged {
            on: date!(2025 - 04 - 02),
        },
        &context,
    );
    assert!(matches!(again, Err(TransitionError::AppealNotOpen(_))));
}

/// Proves: R6, J1
#[test]
fn an_appeal_is_refused_where_the_law_or_the_window_does_not_allow_one() {
    let lodge = |on| Event::AppealLodged { on };
    let cases: &[(&str, Jurisdiction, Vec<Event>)] = &[
        ("no appeal under the GDPR", Jurisdiction::EuEea, {
            let mut events = declined_after_verification();
            events.push(lodge(date!(2025 - 03 - 11)));
            events
        }),
        ("the 60 days have passed", Jurisdiction::Virginia, {
            let mut events = declined_after_verification();
            events.push(lodge(date!(2025 - 05 - 10)));
            events
        }),
        (
            "an unverified request is made again, not appealed",
            Jurisdiction::Virginia,
            vec![
                declined(DeclineCode::CannotVerify),
                lodge(date!(2025 - 03 - 11)),
            ],
        ),
    ];
    for (name, jurisdiction, events) in cases {
        let context = context(VerificationLevel::EmailCode, *jurisdiction);
        let result = run(&context, events);
        assert!(
            matches!(result, Err(TransitionError::AppealNotOpen(_))),
            "{name}: {result:?}"
        );
    }
    let context = context(VerificationLevel::EmailCode, Jurisdiction::Virginia);
    let mut last_day = declined_after_verification();
    last_day.push(lodge(date!(2025 - 05 - 09)));
    assert!(
        run(&context, &last_day).is_ok(),
        "the 60th day is still open"
    );
}

/// Proves: R6
#[test]
fn a_partial_fulfilment_must_say_why() {
    let context = context(VerificationLevel::EmailCode, Jurisdiction::EuEea);
    let result = run(
        &context,
        &[
            succeeded(VerificationLevel::EmailCode),
            Event::PartlyFulfilled {
                reason: "  ".to_owned(),
                decided_by: Some(ALICE),
                on: DECIDED,
            },
        ],
    );
    assert_eq!(result, Err(TransitionError::MissingReason));
}

/// Proves: R5, J1
#[test]
fn due_dates_follow_the_jurisdiction() {
    let policy = Policy::default_policy();
    let holidays = [date!(2025 - 02 - 17)];
    #[rustfmt::skip]
    let cases: &[(Jurisdiction, Date, Date)] = &[
        (Jurisdiction::EuEea, date!(2025-01-31), date!(2025-02-28)),
        (Jurisdiction::Uk, date!(2028-01-31), date!(2028-02-29)),
        (Jurisdiction::California, date!(2025-01-31), date!(2025-03-17)),
        (Jurisdiction::Virginia, date!(2025-01-31), date!(2025-03-03)),
        (Jurisdiction::Other, date!(2025-01-31), date!(2025-03-03)),
    ];
    for (jurisdiction, received, due) in cases {
        assert_eq!(
            due_date_for(&policy, *jurisdiction, *received, &holidays),
            *due,
            "{}",
            jurisdiction.as_str()
        );
    }
    assert_eq!(
        appeal_due_date_for(&policy, Jurisdiction::Virginia, date!(2025 - 03 - 01), &[]),
        Some(date!(2025 - 04 - 30))
    );
    assert_eq!(
        appeal_due_date_for(&policy, Jurisdiction::EuEea, date!(2025 - 03 - 01), &[]),
        None
    );
}

#[test]
fn events_and_statuses_serialize_with_snake_case_names() {
    let event = declined(DeclineCode::NotResident);
    let json = serde_json::to_value(&event).expect("serializes");
    assert_eq!(json["event"], "declined");
    assert_eq!(json["code"], "not_resident");
    assert_eq!(json["on"], "2025-03-10");
    assert_eq!(event.name(), "declined");
    let context = context(VerificationLevel::EmailCode, Jurisdiction::Virginia);
    let status = run(&context, &[event]).expect("declined");
    let json = serde_json::to_value(&status).expect("serializes");
    assert_eq!(json["state"], "declined");
    assert_eq!(json["outcome"]["outcome"], "declined");
    let back: RequestStatus = serde_json::from_value(json).expect("reads back");
    assert_eq!(back, status);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn level() -> impl Strategy<Value = VerificationLevel> {
        proptest::sample::select(VerificationLevel::ALL)
    }

    fn event() -> impl Strategy<Value = Event> {
        let day = (0i64..120).prop_map(|n| DECIDED + time::Duration::days(n));
        let staff = (1i64..3).prop_map(StaffId);
        prop_oneof![
            Just(Event::VerificationStarted),
            level().prop_map(|level| Event::VerificationSucceeded { level }),
            Just(Event::VerificationFailed),
            Just(Event::VerificationExpired),
            Just(Event::FulfilmentStarted),
            (proptest::option::of(staff.clone()), day.clone())
                .prop_map(|(decided_by, on)| Event::Fulfilled { decided_by, on }),
            (
                proptest::option::of(staff.clone()),
                day.clone(),
                "[ a-z]{0,8}"
            )
                .prop_map(|(decided_by, on, reason)| Event::PartlyFulfilled {
                    reason,
                    decided_by,
                    on
                }),
            (
                proptest::sample::select(DeclineCode::ALL),
                proptest::option::of(staff.clone()),
                day.clone()
            )
                .prop_map(|(code, decided_by, on)| Event::Declined {
                    code,
                    decided_by,
                    on
                }),
            Just(Event::Withdrawn),
            day.prop_map(|on| Event::AppealLodged { on }),
            (any::<bool>(), staff, "[ a-z]{0,8}").prop_map(|(upheld, decided_by, reason)| {
                Event::AppealDecided {
                    upheld,
                    decided_by,
                    reason,
                }
            }),
        ]
    }

    fn context() -> impl Strategy<Value = Context> {
        (level(), proptest::sample::select(&Jurisdiction::ALL[..]))
            .prop_map(|(required, jurisdiction)| super::context(required, jurisdiction))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Proves: R3, R6
        #[test]
        fn random_event_sequences_keep_every_rule(
            context in context(), events in proptest::collection::vec(event(), 0..24),
        ) {
            let mut status = RequestStatus::received();
            let mut passed_verified = false;
            for event in &events {
                let before = status.state();
                let Ok(next) = transition(&status, event, &context) else { continue };
                let after = next.state();
                passed_verified |= after == RequestState::Verified;
                if before.is_terminal() {
                    prop_assert_eq!(
                        after, RequestState::Appealed,
                        "left {:?} by {:?}", before, event
                    );
                    prop_assert!(context.appeal.is_some());
                }
                if matches!(after, RequestState::Fulfilled | RequestState::PartlyFulfilled) {
                    prop_assert!(passed_verified, "{:?} without passing verified", after);
                    prop_assert!(next
                        .verification()
                        .is_some_and(|level| level.satisfies(context.required)));
                }
                if after.is_terminal() {
                    prop_assert!(
                        next.reason().is_some_and(|reason| !reason.trim().is_empty()),
                        "{:?} has no reason", after
                    );
                }
                if let Event::AppealDecided { decided_by, .. } = event {
                    prop_assert_ne!(status.decided_by(), Some(*decided_by));
                }
                status = next;
            }
        }

        /// Proves: R5
        #[test]
        fn a_due_date_never_precedes_receipt(
            day in 0i64..20_000, jurisdiction in proptest::sample::select(&Jurisdiction::ALL[..]),
        ) {
            let received = date!(2000 - 01 - 01) + time::Duration::days(day);
            prop_assert!(due_date_for(&POLICY, jurisdiction, received, &[received]) >= received);
        }
    }
}
