//! Consent decisions: the rules table, the properties that make GPC, age, withdrawal and the
//! sign-in merge safe, re-consent after a policy change, and receipts.

use covenant_core::consent::{
    Choice, ConsentRecord, ConsentState, ConsentSubject, Decision, Method, Reason, Receipt,
    Signals, decide, needs_reconsent, stricter,
};
use covenant_core::diff::diff;
use covenant_core::policy::{CookieCategory, Policy};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use CookieCategory::{Advertising, Analytics, Necessary, Preferences};

const T0: OffsetDateTime = datetime!(2025-03-01 12:00 UTC);

fn record(category: CookieCategory, choice: Choice, minutes: i64) -> ConsentRecord {
    ConsentRecord {
        id: format!("r{minutes}"),
        subject: ConsentSubject::Device("c0ffee".to_owned()),
        category,
        choice,
        method: Method::Banner,
        policy_version: "2025.1".to_owned(),
        text_hash: "sha256:abc".to_owned(),
        recorded_at: T0 + Duration::minutes(minutes),
    }
}

fn state(records: &[ConsentRecord]) -> ConsentState {
    ConsentState::from_records(records)
}

/// Proves: C1, C2, C4, R9
#[test]
fn decisions_follow_the_rules_table() {
    let granted_all = state(&[
        record(Preferences, Choice::Granted, 0),
        record(Analytics, Choice::Granted, 0),
        record(Advertising, Choice::Granted, 0),
    ]);
    let none = ConsentState::default();
    let gpc = Signals {
        gpc: true,
        ..Signals::default()
    };
    let minor = Signals {
        known_minor_under_16: true,
        ..Signals::default()
    };
    let restricted = Signals {
        restricted: true,
        ..Signals::default()
    };
    let objected = Signals {
        objected: true,
        ..Signals::default()
    };
    let plain = Signals::default();
    #[rustfmt::skip]
    let cases: &[(&str, &ConsentState, CookieCategory, Signals, bool, Reason)] = &[
        ("necessary needs no choice", &none, Necessary, plain, true, Reason::Necessary),
        ("necessary survives restriction", &none, Necessary, restricted, true, Reason::Necessary),
        ("nothing optional without a choice", &none, Analytics, plain, false, Reason::NoChoice),
        ("a grant allows", &granted_all, Analytics, plain, true, Reason::Granted),
        ("GPC denies advertising over a grant", &granted_all, Advertising, gpc, false, Reason::GlobalPrivacyControl),
        ("GPC leaves analytics to the choice", &granted_all, Analytics, gpc, true, Reason::Granted),
        ("under 16 denies advertising over a grant", &granted_all, Advertising, minor, false, Reason::MinorUnder16),
        ("restriction denies every optional use", &granted_all, Preferences, restricted, false, Reason::Restricted),
        ("an objection denies over a grant", &granted_all, Analytics, objected, false, Reason::Objection),
    ];
    for (name, state, category, signals, allowed, reason) in cases {
        let decision = decide(state, *category, *signals);
        assert_eq!(
            decision,
            Decision {
                allowed: *allowed,
                reason: *reason
            },
            "{name}"
        );
    }
}

/// Proves: C3
#[test]
fn a_withdrawal_is_told_apart_from_a_first_refusal() {
    let withdrawn = state(&[
        record(Analytics, Choice::Granted, 0),
        record(Analytics, Choice::Denied, 5),
    ]);
    let refused = state(&[record(Analytics, Choice::Denied, 0)]);
    assert_eq!(
        decide(&withdrawn, Analytics, Signals::default()).reason,
        Reason::Withdrawn
    );
    assert_eq!(
        decide(&refused, Analytics, Signals::default()).reason,
        Reason::Refused
    );
}

#[test]
fn the_latest_record_wins_even_when_records_arrive_out_of_order() {
    let later_denial_first = state(&[
        record(Analytics, Choice::Denied, 10),
        record(Analytics, Choice::Granted, 0),
    ]);
    assert_eq!(later_denial_first.choice(Analytics), Some(Choice::Denied));
}

/// Proves: C2, C3
#[test]
fn a_receipt_carries_the_evidence_of_the_record() {
    let policy = Policy::default_policy();
    let mut gpc = record(Advertising, Choice::Denied, 0);
    gpc.method = Method::Gpc;
    let receipt = Receipt::from_record(&gpc, policy.controller());
    assert_eq!(receipt.receipt_id, "r0");
    assert_eq!(receipt.subject_id, "device:c0ffee");
    assert_eq!(receipt.policy_version, "2025.1");
    assert!(!receipt.explicit);
    let json = serde_json::to_value(&receipt).expect("a receipt serializes");
    assert_eq!(json["schema_version"], "ISO/IEC TS 27560:2023");
    assert_eq!(json["timestamp"], "2025-03-01T12:00:00Z");
    assert_eq!(json["category"], "advertising");
    assert_eq!(json["choice"], "denied");
    assert_eq!(json["method"], "gpc");
    assert_eq!(
        json["controller"]["name"],
        policy.controller().name.as_str()
    );
    let back: Receipt = serde_json::from_value(json).expect("a receipt reads back");
    assert_eq!(back, receipt);
}

#[test]
fn consent_subjects_are_stored_as_prefixed_text() {
    for subject in [
        ConsentSubject::Device("abc-123".to_owned()),
        ConsentSubject::Account(42),
    ] {
        assert_eq!(ConsentSubject::parse(&subject.to_string()), Ok(subject));
    }
    assert!(ConsentSubject::parse("account:x").is_err());
    assert!(ConsentSubject::parse("device:").is_err());
    assert!(ConsentSubject::parse("42").is_err());
}

fn edited_policy(edit: impl Fn(String) -> String) -> Policy {
    let text = edit(include_str!("../policy/default.toml").to_owned());
    Policy::from_toml_str(&text, "edited.toml").unwrap_or_else(|error| panic!("{error}"))
}

/// Proves: A5, C3
#[test]
fn a_new_purpose_asks_again_for_every_optional_choice_but_not_for_necessary() {
    let old = Policy::default_policy();
    let new = edited_policy(|text| {
        text + r#"
[[purposes]]
id = "recommendations"
name = "Recommending topics"
description = "Suggesting topics from what you read."
categories = ["user.content.public"]
subjects = ["members"]
legal_basis = { eu_eea = "consent", uk = "consent", other = "consent" }
"#
    });
    let change = diff(&old, &new);
    for category in [Preferences, Analytics, Advertising] {
        assert!(needs_reconsent(&change, category), "{category}");
    }
    assert!(!needs_reconsent(&change, Necessary));
}

/// Proves: A5
#[test]
fn a_reworded_cookie_description_asks_nothing_again() {
    let old = Policy::default_policy();
    let new = edited_policy(|text| {
        text.replace(
            "Help count visits without identifying you. Set only if you allow them.",
            "Count visits without identifying anyone; set only with your permission.",
        )
    });
    let change = diff(&old, &new);
    assert!(!change.is_empty());
    for category in CookieCategory::ALL {
        assert!(!needs_reconsent(&change, *category), "{category}");
    }
}

/// Proves: A5
#[test]
fn a_material_change_to_one_cookie_group_asks_again_only_for_that_group() {
    let old = Policy::default_policy();
    let new = edited_policy(|text| {
        text.replace(
            "[[cookies]]\ncategory = \"preferences\"\nname = \"Preferences\"\ndescription = \"Remember display settings in this browser, such as the dark theme.\"\noptional = true\n\n",
            "",
        )
    });
    let change = diff(&old, &new);
    assert!(change.is_material(), "{:?}", change.changes());
    assert!(needs_reconsent(&change, Preferences));
    assert!(!needs_reconsent(&change, Analytics));
    assert!(!needs_reconsent(&change, Advertising));
}

/// Proves: C1, C3
#[test]
fn asking_again_lapses_a_grant_but_never_a_refusal() {
    let mut state = state(&[
        record(Preferences, Choice::Denied, 0),
        record(Analytics, Choice::Granted, 0),
        record(Advertising, Choice::Granted, 0),
        record(Advertising, Choice::Denied, 5),
    ]);
    assert!(state.ask_again(Analytics), "a grant lapses");
    assert!(!state.ask_again(Preferences), "a refusal stays");
    assert!(!state.ask_again(Advertising), "a withdrawal stays");
    assert!(!state.ask_again(Necessary), "nothing to lapse");
    let plain = Signals::default();
    assert_eq!(decide(&state, Analytics, plain).reason, Reason::NoChoice);
    assert_eq!(decide(&state, Preferences, plain).reason, Reason::Refused);
    assert_eq!(decide(&state, Advertising, plain).reason, Reason::Withdrawn);
    state.apply(&record(Analytics, Choice::Granted, 10));
    assert_eq!(
        decide(&state, Analytics, plain).reason,
        Reason::Granted,
        "a new choice counts"
    );
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn category() -> impl Strategy<Value = CookieCategory> {
        proptest::sample::select(CookieCategory::ALL)
    }

    fn choice() -> impl Strategy<Value = Choice> {
        proptest::sample::select(Choice::ALL)
    }

    fn records() -> impl Strategy<Value = Vec<ConsentRecord>> {
        proptest::collection::vec(
            (
                category(),
                choice(),
                proptest::sample::select(Method::ALL),
                0i64..1_000,
            ),
            0..12,
        )
        .prop_map(|items| {
            items
                .into_iter()
                .map(|(category, choice, method, minutes)| ConsentRecord {
                    method,
                    ..record(category, choice, minutes)
                })
                .collect()
        })
    }

    fn signals() -> impl Strategy<Value = Signals> {
        any::<(bool, bool, bool, bool)>().prop_map(
            |(gpc, known_minor_under_16, restricted, objected)| Signals {
                gpc,
                known_minor_under_16,
                restricted,
                objected,
            },
        )
    }

    proptest! {
        /// Proves: C2
        #[test]
        fn gpc_always_wins_over_a_grant_for_advertising(
            history in records(), mut signals in signals(), minutes in 1_000i64..2_000,
        ) {
            let mut all = history;
            all.push(record(Advertising, Choice::Granted, minutes));
            signals.gpc = true;
            prop_assert!(!decide(&state(&all), Advertising, signals).allowed);
        }

        /// Proves: C4, M1
        #[test]
        fn anyone_known_to_be_under_16_is_always_opted_out_of_advertising(
            history in records(), mut signals in signals(),
        ) {
            signals.known_minor_under_16 = true;
            prop_assert!(!decide(&state(&history), Advertising, signals).allowed);
        }

        /// Proves: C3
        #[test]
        fn a_withdrawal_after_a_grant_denies(
            history in records(), category in category(), signals in signals(),
        ) {
            prop_assume!(category != Necessary);
            let mut all = history;
            all.push(record(category, Choice::Granted, 1_000));
            all.push(record(category, Choice::Denied, 1_001));
            let decision = decide(&state(&all), category, signals);
            prop_assert!(!decision.allowed);
        }

        /// Proves: C1
        #[test]
        fn necessary_is_always_allowed(history in records(), signals in signals()) {
            prop_assert!(decide(&state(&history), Necessary, signals).allowed);
        }

        /// Proves: C1
        #[test]
        fn nothing_optional_is_allowed_without_a_standing_grant(
            history in records(), category in category(), signals in signals(),
        ) {
            let state = state(&history);
            if decide(&state, category, signals).allowed && category != Necessary {
                prop_assert_eq!(state.choice(category), Some(Choice::Granted));
            }
        }

        /// Proves: C1, C2
        #[test]
        fn the_stricter_merge_never_allows_what_either_side_denies(
            device in records(), account in records(), signals in signals(),
        ) {
            let (device, account) = (state(&device), state(&account));
            let merged = stricter(&device, &account);
            for category in CookieCategory::ALL.iter().copied() {
                let allowed = decide(&merged, category, signals).allowed;
                let refused_by_one = [device, account]
                    .iter()
                    .any(|side| side.choice(category) == Some(Choice::Denied));
                if category != Necessary && refused_by_one {
                    prop_assert!(!allowed);
                }
                if allowed {
                    prop_assert!(
                        decide(&device, category, signals).allowed
                            || decide(&account, category, signals).allowed
                    );
                }
            }
        }
    }
}
