//! Table tests of retention verdicts: an open relationship, a closed one in every jurisdiction
//! of the default policy, subscribers, holds, and month-end and leap-day edges.

use covenant_core::policy::{
    CategoryKey, Jurisdiction, JurisdictionRules, LimitationPeriod, Policy, RetentionEnd,
    RetentionPeriod, RetentionRule,
};
use covenant_core::retention::{
    Account, ClosureReason, Hold, HoldScope, Relationship, Subscription, Verdict, VerdictState,
    residence_verdict, retention_verdict,
};
use time::macros::date;
use time::{Date, OffsetDateTime};

fn at(day: Date) -> OffsetDateTime {
    day.midnight().assume_utc()
}

fn key(text: &str) -> CategoryKey {
    CategoryKey::parse(text).expect("a well-formed key")
}

fn rule(policy: &Policy, category: &str) -> RetentionRule {
    policy
        .retention_for(&key(category))
        .expect("the default policy has a rule")
        .clone()
}

fn closed_on(day: Date) -> Relationship {
    Relationship {
        subject: "42".to_owned(),
        account: Account::Closed {
            at: at(day),
            reason: ClosureReason::ByMember,
        },
        subscription: Subscription::None,
        last_activity: Some(at(day)),
    }
}

fn active() -> Relationship {
    Relationship {
        account: Account::Active,
        ..closed_on(date!(2025 - 01 - 01))
    }
}

const CREATED: Date = date!(2024 - 06 - 01);

fn verdict(
    rule: &RetentionRule,
    rules: &JurisdictionRules,
    relationship: &Relationship,
    holds: &[Hold],
    now: Date,
) -> Verdict {
    retention_verdict(rule, rules, relationship, holds, at(CREATED), at(now))
}

/// Proves: T1
#[test]
fn data_is_kept_while_the_account_is_open() {
    let policy = Policy::default_policy();
    let email = rule(&policy, "user.contact.email");
    let verdict = verdict(
        &email,
        policy.jurisdiction(Jurisdiction::EuEea),
        &active(),
        &[],
        date!(2040 - 01 - 01),
    );
    assert_eq!(verdict.state, VerdictState::Keep);
    assert_eq!((verdict.restrict_from, verdict.remove_on), (None, None));
    assert!(verdict.reason.contains("account"), "{}", verdict.reason);
}

/// Proves: T1, T2, J1
#[test]
fn a_closed_account_is_restricted_then_removed_on_each_jurisdictions_day() {
    let policy = Policy::default_policy();
    let email = rule(&policy, "user.contact.email");
    let closed = date!(2025 - 01 - 15);
    // Limitation period plus the rule's two months, counted from the day of closing.
    #[rustfmt::skip]
    let cases: &[(Jurisdiction, Date)] = &[
        (Jurisdiction::EuEea, date!(2028-03-15)),
        (Jurisdiction::Uk, date!(2031-03-15)),
        (Jurisdiction::California, date!(2029-03-15)),
        (Jurisdiction::Nevada, date!(2031-03-15)),
        (Jurisdiction::Virginia, date!(2030-03-15)),
        (Jurisdiction::Colorado, date!(2028-03-15)),
        (Jurisdiction::Connecticut, date!(2031-03-15)),
        (Jurisdiction::Montana, date!(2033-03-15)),
        (Jurisdiction::Oregon, date!(2031-03-15)),
        (Jurisdiction::Texas, date!(2029-03-15)),
        (Jurisdiction::Utah, date!(2031-03-15)),
        (Jurisdiction::Other, date!(2031-03-15)),
    ];
    for (jurisdiction, remove_on) in cases {
        let rules = policy.jurisdiction(*jurisdiction);
        let name = jurisdiction.as_str();
        let on = |now| verdict(&email, rules, &closed_on(closed), &[], now);

        let restricted = on(closed);
        assert_eq!(restricted.state, VerdictState::Restrict, "{name}");
        assert_eq!(restricted.restrict_from, Some(closed), "{name}");
        assert_eq!(restricted.remove_on, Some(*remove_on), "{name}");
        assert!(
            restricted.reason.contains(&rules.law),
            "{name}: {}",
            restricted.reason
        );
        assert!(restricted.reason.contains("storage and security"), "{name}");

        let day_before = remove_on.previous_day().expect("a day before");
        assert_eq!(on(day_before).state, VerdictState::Restrict, "{name}");
        assert_eq!(on(*remove_on).state, VerdictState::Delete, "{name}");
    }
}

/// Proves: T4, R8
#[test]
fn posts_are_anonymized_rather_than_deleted() {
    let policy = Policy::default_policy();
    let posts = rule(&policy, "user.content.public");
    let rules = policy.jurisdiction(Jurisdiction::EuEea);
    let verdict = verdict(
        &posts,
        rules,
        &closed_on(date!(2025 - 01 - 15)),
        &[],
        date!(2030 - 01 - 01),
    );
    assert_eq!(verdict.state, VerdictState::Anonymize);
    assert!(verdict.reason.contains("anonymized"), "{}", verdict.reason);
}

/// Proves: T1
#[test]
fn a_subscription_keeps_the_relationship_open_after_the_account_closes() {
    let policy = Policy::default_policy();
    let email = rule(&policy, "user.contact.email");
    let rules = policy.jurisdiction(Jurisdiction::EuEea);
    let subscriber = Relationship {
        subscription: Subscription::Active,
        ..closed_on(date!(2025 - 01 - 15))
    };
    let kept = verdict(&email, rules, &subscriber, &[], date!(2040 - 01 - 01));
    assert_eq!(kept.state, VerdictState::Keep);

    let only_a_subscriber = Relationship {
        account: Account::None,
        ..subscriber.clone()
    };
    let kept = verdict(
        &email,
        rules,
        &only_a_subscriber,
        &[],
        date!(2040 - 01 - 01),
    );
    assert_eq!(kept.state, VerdictState::Keep);

    let unsubscribed_later = Relationship {
        subscription: Subscription::Ended {
            at: at(date!(2026 - 05 - 10)),
        },
        ..subscriber
    };
    let restricted = verdict(
        &email,
        rules,
        &unsubscribed_later,
        &[],
        date!(2026 - 06 - 01),
    );
    assert_eq!(restricted.state, VerdictState::Restrict);
    assert_eq!(restricted.restrict_from, Some(date!(2026 - 05 - 10)));
    assert!(
        restricted.reason.contains("subscription ended"),
        "{}",
        restricted.reason
    );
}

/// Proves: T1
#[test]
fn without_account_or_subscription_the_relationship_ends_at_the_last_activity() {
    let policy = Policy::default_policy();
    let ip = rule(&policy, "user.device.ip_address");
    let visitor = Relationship {
        account: Account::None,
        last_activity: Some(at(date!(2025 - 02 - 03))),
        ..closed_on(date!(2025 - 02 - 03))
    };
    let verdict = verdict(
        &ip,
        policy.jurisdiction(Jurisdiction::Uk),
        &visitor,
        &[],
        date!(2025 - 03 - 01),
    );
    assert_eq!(verdict.restrict_from, Some(date!(2025 - 02 - 03)));
    assert_eq!(verdict.remove_on, Some(date!(2031 - 04 - 03)));
}

/// Proves: T1, T2
#[test]
fn a_fixed_period_runs_from_the_record_not_the_relationship() {
    let policy = Policy::default_policy();
    let requests = rule(&policy, "user.privacy_request.details");
    let rules = policy.jurisdiction(Jurisdiction::EuEea);
    let kept = verdict(&requests, rules, &active(), &[], date!(2025 - 06 - 01));
    assert_eq!(kept.state, VerdictState::Keep);
    assert_eq!(kept.restrict_from, Some(date!(2026 - 06 - 01)));
    assert_eq!(kept.remove_on, Some(date!(2029 - 08 - 01)));
    assert!(
        kept.reason.contains("for 2 years from 2024-06-01"),
        "{}",
        kept.reason
    );
    let restricted = verdict(&requests, rules, &active(), &[], date!(2026 - 06 - 01));
    assert_eq!(restricted.state, VerdictState::Restrict);
}

fn hold(scope: HoldScope, released_at: Option<OffsetDateTime>) -> Hold {
    Hold {
        scope,
        reason: "Claim 2025-17 (Doe v. Example)".to_owned(),
        released_at,
    }
}

/// Proves: T3
#[test]
fn a_hold_over_the_whole_range_keeps_data_past_its_removal_day() {
    let policy = Policy::default_policy();
    let email = rule(&policy, "user.contact.email");
    let rules = policy.jurisdiction(Jurisdiction::EuEea);
    let everything = hold(HoldScope::default(), None);
    let verdict = verdict(
        &email,
        rules,
        &closed_on(date!(2025 - 01 - 15)),
        &[everything],
        date!(2040 - 01 - 01),
    );
    assert_eq!(verdict.state, VerdictState::Held);
    assert!(
        verdict.reason.contains("Claim 2025-17"),
        "{}",
        verdict.reason
    );
    assert_eq!(verdict.remove_on, Some(date!(2028 - 03 - 15)));
}

/// Proves: T3
#[test]
fn a_hold_covers_only_its_subject_categories_and_dates() {
    let policy = Policy::default_policy();
    let email = rule(&policy, "user.contact.email");
    let rules = policy.jurisdiction(Jurisdiction::EuEea);
    let relationship = closed_on(date!(2025 - 01 - 15));
    let now = date!(2040 - 01 - 01);
    let narrow = HoldScope {
        subject: Some("42".to_owned()),
        categories: vec![key("user.contact.email")],
        created_from: Some(date!(2024 - 01 - 01)),
        created_until: Some(CREATED),
    };
    #[rustfmt::skip]
    let cases: &[(&str, HoldScope, VerdictState)] = &[
        ("the subject, category and dates", narrow.clone(), VerdictState::Held),
        ("another subject", HoldScope { subject: Some("7".to_owned()), ..narrow.clone() }, VerdictState::Delete),
        ("another category", HoldScope { categories: vec![key("user.content.public")], ..narrow.clone() }, VerdictState::Delete),
        ("records created later", HoldScope { created_from: Some(date!(2024 - 06 - 02)), ..narrow.clone() }, VerdictState::Delete),
        ("records created earlier", HoldScope { created_until: Some(date!(2024 - 05 - 31)), ..narrow }, VerdictState::Delete),
    ];
    for (name, scope, expected) in cases {
        let holds = [hold(scope.clone(), None)];
        assert_eq!(
            verdict(&email, rules, &relationship, &holds, now).state,
            *expected,
            "{name}"
        );
    }
}

/// Proves: T3, T4
#[test]
fn a_released_hold_lets_the_schedule_resume() {
    let policy = Policy::default_policy();
    let email = rule(&policy, "user.contact.email");
    let rules = policy.jurisdiction(Jurisdiction::EuEea);
    let relationship = closed_on(date!(2025 - 01 - 15));
    let released = hold(HoldScope::default(), Some(at(date!(2029 - 01 - 01))));
    let during = verdict(
        &email,
        rules,
        &relationship,
        std::slice::from_ref(&released),
        date!(2028 - 12 - 31),
    );
    assert_eq!(during.state, VerdictState::Held);
    let after = verdict(
        &email,
        rules,
        &relationship,
        &[released],
        date!(2029 - 01 - 01),
    );
    assert_eq!(after.state, VerdictState::Delete);
}

fn short_limitation(limitation: LimitationPeriod) -> JurisdictionRules {
    JurisdictionRules {
        limitation_period: limitation,
        ..Policy::default_policy()
            .jurisdiction(Jurisdiction::Other)
            .clone()
    }
}

fn relationship_rule(restricted_extra_months: u32) -> RetentionRule {
    RetentionRule {
        category: key("user.contact.email"),
        period: RetentionPeriod::Relationship,
        restricted_extra_months,
        then: RetentionEnd::Delete,
    }
}

/// Proves: T2
#[test]
fn removal_days_clamp_at_month_ends_and_leap_days() {
    #[rustfmt::skip]
    let cases: &[(&str, Date, LimitationPeriod, u32, Date)] = &[
        ("31 January plus one month is 28 February", date!(2025-01-31), LimitationPeriod::Months(1), 0, date!(2025-02-28)),
        ("in a leap year it is 29 February", date!(2028-01-31), LimitationPeriod::Months(1), 0, date!(2028-02-29)),
        ("months are added in one step, not clamped twice", date!(2025-01-31), LimitationPeriod::Months(1), 1, date!(2025-03-31)),
        ("a leap day plus a year is 28 February", date!(2028-02-29), LimitationPeriod::Years(1), 0, date!(2029-02-28)),
        ("a leap day plus four years is a leap day", date!(2028-02-29), LimitationPeriod::Years(4), 0, date!(2032-02-29)),
        ("a leap day plus three years and two months", date!(2028-02-29), LimitationPeriod::Years(3), 2, date!(2031-04-29)),
        ("31 December plus two months crosses the year", date!(2025-12-31), LimitationPeriod::Months(0), 2, date!(2026-02-28)),
    ];
    for (name, closed, limitation, extra, remove_on) in cases {
        let verdict = retention_verdict(
            &relationship_rule(*extra),
            &short_limitation(*limitation),
            &closed_on(*closed),
            &[],
            at(CREATED),
            at(*closed),
        );
        assert_eq!(verdict.remove_on, Some(*remove_on), "{name}");
        assert_eq!(verdict.state, VerdictState::Restrict, "{name}");
    }
}

/// Proves: T2
#[test]
fn with_no_restricted_time_left_the_data_goes_at_once() {
    let verdict = retention_verdict(
        &relationship_rule(0),
        &short_limitation(LimitationPeriod::Months(0)),
        &closed_on(date!(2025 - 01 - 31)),
        &[],
        at(CREATED),
        at(date!(2025 - 01 - 31)),
    );
    assert_eq!(verdict.state, VerdictState::Delete);
}

/// Proves: T4
#[test]
fn verdicts_serialize_with_snake_case_names_and_iso_dates() {
    let policy = Policy::default_policy();
    let email = rule(&policy, "user.contact.email");
    let rules = policy.jurisdiction(Jurisdiction::EuEea);
    let verdict = verdict(
        &email,
        rules,
        &closed_on(date!(2025 - 01 - 15)),
        &[],
        date!(2025 - 02 - 01),
    );
    let json = serde_json::to_value(&verdict).expect("a verdict serializes");
    assert_eq!(json["state"], "restrict");
    assert_eq!(json["remove_on"], "2028-03-15");
    let back: Verdict = serde_json::from_value(json).expect("a verdict reads back");
    assert_eq!(back, verdict);
}

/// Proves: T1, T4
#[test]
fn residence_goes_last_once_every_other_category_of_the_member_is_gone() {
    let verdict = |state, remove_on: Option<Date>| Verdict {
        state,
        reason: format!("{state:?}"),
        restrict_from: remove_on.map(|d| d.previous_day().unwrap()),
        remove_on,
    };
    let gone_on = date!(2030 - 03 - 31);
    let cases = [
        (vec![verdict(VerdictState::Keep, None)], VerdictState::Keep),
        (
            vec![
                verdict(VerdictState::Delete, Some(date!(2030 - 01 - 31))),
                verdict(VerdictState::Restrict, Some(gone_on)),
            ],
            VerdictState::Restrict,
        ),
        (
            vec![
                verdict(VerdictState::Anonymize, Some(gone_on)),
                verdict(VerdictState::Held, Some(gone_on)),
            ],
            VerdictState::Held,
        ),
        (
            vec![
                verdict(VerdictState::Delete, Some(date!(2030 - 01 - 31))),
                verdict(VerdictState::Anonymize, Some(gone_on)),
            ],
            VerdictState::Delete,
        ),
    ];
    for (others, expected) in cases {
        let residence = residence_verdict(&others);
        assert_eq!(residence.state, expected, "{others:?}");
        assert!(
            residence.reason.contains("decides which law"),
            "{}",
            residence.reason
        );
        if expected != VerdictState::Keep {
            assert_eq!(
                residence.remove_on,
                Some(gone_on),
                "the latest of the others"
            );
        }
    }
    let held = residence_verdict(&[verdict(VerdictState::Held, None)]);
    assert!(
        held.reason.contains("Held"),
        "carries the hold's words: {}",
        held.reason
    );
}
