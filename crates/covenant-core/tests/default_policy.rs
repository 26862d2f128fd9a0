//! The shipped policy: it loads, and it states what the forum promises.

use covenant_core::deadline::DeadlineRule;
use covenant_core::policy::{
    CategoryKey, Jurisdiction, LegalBasis, OperatorFacts, Policy, PurposeId, Right, SaleDefinition,
};

fn policy() -> Policy {
    Policy::default_policy()
}

#[test]
fn the_default_policy_loads_and_validates() {
    let text = include_str!("../policy/default.toml");
    if let Err(error) = Policy::from_toml_str(text, "default.toml") {
        panic!("{error}");
    }
}

/// Proves: J1
#[test]
fn the_default_policy_lists_every_jurisdiction() {
    let policy = policy();
    for jurisdiction in Jurisdiction::ALL {
        let listed = policy
            .jurisdictions()
            .iter()
            .any(|rules| rules.id == jurisdiction);
        assert!(listed, "{} is missing", jurisdiction.as_str());
    }
}

/// Proves: R5
#[test]
fn deadlines_are_45_days_in_california_one_month_under_gdpr_and_20_business_days_elsewhere() {
    let policy = policy();
    let deadline = |jurisdiction| policy.jurisdiction(jurisdiction).deadline;
    assert_eq!(
        deadline(Jurisdiction::California),
        DeadlineRule::CalendarDays(45)
    );
    assert_eq!(
        deadline(Jurisdiction::EuEea),
        DeadlineRule::CalendarMonths(1)
    );
    assert_eq!(deadline(Jurisdiction::Uk), DeadlineRule::CalendarMonths(1));
    assert_eq!(
        deadline(Jurisdiction::Other),
        DeadlineRule::BusinessDays(20)
    );
    assert_eq!(
        deadline(Jurisdiction::Virginia),
        DeadlineRule::BusinessDays(20)
    );
}

/// Proves: M1
#[test]
fn members_must_be_13_and_under_16s_in_the_eu_need_a_parent() {
    let policy = policy();
    for rules in policy.jurisdictions() {
        assert_eq!(rules.minimum_age, 13, "{}", rules.name);
    }
    assert_eq!(
        policy
            .jurisdiction(Jurisdiction::EuEea)
            .parental_consent_under,
        Some(16)
    );
}

/// Proves: J1
#[test]
fn nevada_counts_only_an_exchange_for_money_as_a_sale() {
    let rules = policy().jurisdiction(Jurisdiction::Nevada).clone();
    assert_eq!(rules.sale_definition, Some(SaleDefinition::Monetary));
    assert_eq!(rules.rights, [Right::OptOutSale]);
}

/// Proves: C2
#[test]
fn the_default_policy_sells_and_shares_nothing_and_honors_gpc() {
    let policy = policy();
    assert!(!policy.sells_personal_data());
    assert!(!policy.shares_for_targeted_advertising());
    assert!(policy.honors_global_privacy_control());
    for recipient in policy.recipients() {
        assert_eq!(recipient.sold_for, None, "{}", recipient.id);
        assert!(!recipient.targeted_advertising, "{}", recipient.id);
    }
}

/// Proves: F1
#[test]
fn registration_data_is_username_email_password_and_birth_year() {
    let policy = policy();
    let account = policy
        .purpose(&PurposeId::parse("account").unwrap())
        .unwrap();
    let age = policy
        .purpose(&PurposeId::parse("age_rules").unwrap())
        .unwrap();
    let mut keys: Vec<&str> = account.categories.iter().map(CategoryKey::as_str).collect();
    keys.extend(age.categories.iter().map(CategoryKey::as_str));
    for key in [
        "user.account.username",
        "user.contact.email",
        "user.authorization.credentials",
        "user.account.birth_year",
    ] {
        assert!(keys.contains(&key), "{key} is not used for the account");
    }
}

/// Proves: F6
#[test]
fn product_news_is_direct_marketing_on_consent_everywhere() {
    let policy = policy();
    let news = policy
        .purpose(&PurposeId::parse("product_news").unwrap())
        .unwrap();
    assert!(news.direct_marketing);
    for jurisdiction in Jurisdiction::ALL {
        assert_eq!(news.legal_basis_in(jurisdiction), Some(LegalBasis::Consent));
    }
}

/// Proves: T2
#[test]
fn every_category_is_kept_then_restricted_for_the_limitation_period_plus_two_months() {
    let policy = policy();
    for category in policy.categories() {
        let rule = policy
            .retention_for(&category.key)
            .expect("a rule for every category");
        let credentials = category.key.as_str() == "user.authorization.credentials";
        // Sign-in secrets serve no claim, so they go as soon as the account does.
        let expected = if credentials { 0 } else { 2 };
        assert_eq!(rule.restricted_extra_months, expected, "{}", category.key);
    }
}

/// Proves: A6
#[test]
fn no_automated_process_has_a_significant_effect() {
    let policy = policy();
    let ids: Vec<&str> = policy
        .automated_processes()
        .iter()
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(ids, ["spam_filter", "ranking"]);
    assert!(
        policy
            .automated_processes()
            .iter()
            .all(|process| !process.significant_effect)
    );
}

#[test]
fn operator_facts_from_configuration_replace_the_placeholders() {
    let facts = OperatorFacts {
        name: Some("Acme Community".to_owned()),
        privacy_email: Some("privacy@acme.example".to_owned()),
        ..OperatorFacts::default()
    };
    let policy = policy().with_operator(facts);
    let controller = policy.controller();
    assert_eq!(controller.name, "Acme Community");
    assert_eq!(controller.privacy_email, "privacy@acme.example");
    assert_eq!(
        controller.address,
        Policy::default_policy().controller().address
    );
}

#[test]
fn the_policy_serializes_to_json_with_dates_as_text() {
    let json = serde_json::to_value(policy()).unwrap();
    assert_eq!(json["providers"][1]["approval"]["on"], "2025-01-15");
    assert_eq!(json["jurisdictions"][2]["deadline"]["calendar_days"], 45);
}

#[test]
fn jurisdictions_parse_from_their_names_in_the_policy_file() {
    for jurisdiction in Jurisdiction::ALL {
        assert_eq!(
            jurisdiction.as_str().parse::<Jurisdiction>(),
            Ok(jurisdiction)
        );
    }
    assert!("atlantis".parse::<Jurisdiction>().is_err());
}

/// Proves: R1
#[test]
fn objection_applies_only_to_purposes_resting_on_legitimate_interests() {
    let policy = Policy::default_policy();
    let objectable: Vec<&str> = policy
        .purposes()
        .iter()
        .filter(|purpose| {
            let basis = purpose.legal_basis_in(Jurisdiction::EuEea);
            basis.is_some_and(LegalBasis::allows_objection)
        })
        .map(|purpose| purpose.id.as_str())
        .collect();
    assert_eq!(objectable, ["security", "support"]);
}
