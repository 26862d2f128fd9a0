//! Rights by jurisdiction, the right-to-know answer and the record of processing, all read
//! from the default policy.

use covenant_core::deadline::DeadlineRule;
use covenant_core::policy::{Jurisdiction, Policy, Right, TransferSafeguard};
use covenant_core::right_to_know::right_to_know;
use covenant_core::rights::rights_for;
use covenant_core::ropa::record_of_processing;

use Jurisdiction::*;
use Right::*;

/// Proves: R1, J1
#[test]
fn rights_depend_on_the_jurisdiction() {
    let policy = Policy::default_policy();
    // (jurisdiction, rights it must grant, rights it must not grant)
    #[rustfmt::skip]
    let cases: &[(Jurisdiction, &[Right], &[Right])] = &[
        (EuEea, &[Access, Portability, Restriction, Objection, ObjectDirectMarketing, WithdrawConsent, ComplainToAuthority], &[OptOutSale, Appeal]),
        (Uk, &[Access, Rectification, Deletion, Objection, ComplainToAuthority], &[LimitSensitive]),
        (California, &[Know, Access, Deletion, Rectification, OptOutSale, OptOutTargetedAdvertising, LimitSensitive], &[Appeal, Objection]),
        (Nevada, &[OptOutSale], &[Access, Deletion]),
        (Virginia, &[Access, Deletion, OptOutTargetedAdvertising, Appeal], &[LimitSensitive]),
        (Colorado, &[Portability, Appeal], &[Restriction]),
        (Connecticut, &[Appeal, WithdrawConsent], &[Objection]),
        (Montana, &[Appeal], &[Objection]),
        (Oregon, &[Know, Appeal], &[Objection]),
        (Texas, &[Appeal], &[Objection]),
        (Utah, &[Access, Deletion, OptOutSale], &[Rectification, Appeal]),
        (Other, &[Access, Rectification, Deletion, WithdrawConsent], &[OptOutSale]),
    ];
    for (jurisdiction, granted, withheld) in cases {
        let profile = rights_for(&policy, *jurisdiction);
        assert_eq!(profile.jurisdiction, *jurisdiction);
        for right in *granted {
            assert!(
                profile.has(*right),
                "{} lacks {right:?}",
                jurisdiction.as_str()
            );
        }
        for right in *withheld {
            assert!(
                !profile.has(*right),
                "{} grants {right:?}",
                jurisdiction.as_str()
            );
        }
        assert_eq!(
            profile.appeal.is_some(),
            profile.has(Appeal),
            "{}",
            jurisdiction.as_str()
        );
    }
}

/// Proves: R5, R6
#[test]
fn deadlines_extensions_and_appeals_come_with_the_rights() {
    let policy = Policy::default_policy();
    let eu = rights_for(&policy, EuEea);
    assert_eq!(eu.deadline, DeadlineRule::CalendarMonths(1));
    assert_eq!(eu.extension, Some(DeadlineRule::CalendarMonths(2)));
    assert!(eu.regulator.is_some());
    let california = rights_for(&policy, California);
    assert_eq!(california.extension, Some(DeadlineRule::CalendarDays(45)));
    let virginia = rights_for(&policy, Virginia)
        .appeal
        .expect("an appeal in Virginia");
    assert_eq!(virginia.decide_within, DeadlineRule::CalendarDays(60));
}

/// Proves: R7
#[test]
fn the_right_to_know_names_third_parties_only_in_oregon() {
    let policy = Policy::default_policy();
    let oregon = right_to_know(&policy, Oregon);
    let providers = oregon
        .disclosed
        .iter()
        .find(|d| d.recipient == "service_providers")
        .unwrap();
    assert_eq!(
        providers.named_third_parties,
        ["Example Hosting", "Example Mail Relay"]
    );
    let california = right_to_know(&policy, California);
    assert!(
        california
            .disclosed
            .iter()
            .all(|d| d.named_third_parties.is_empty())
    );
}

/// Proves: R7
#[test]
fn the_right_to_know_covers_every_category_purpose_and_recipient_and_sells_nothing() {
    let policy = Policy::default_policy();
    let answer = right_to_know(&policy, California);
    assert_eq!(answer.categories_collected.len(), policy.categories().len());
    assert_eq!(answer.sources.len(), policy.sources().len());
    assert_eq!(answer.purposes.len(), policy.purposes().len());
    assert_eq!(answer.disclosed.len(), policy.recipients().len());
    assert!(answer.sold.is_empty());
    assert!(answer.shared_for_targeted_advertising.is_empty());
    let json = serde_json::to_value(&answer).unwrap();
    assert_eq!(json["jurisdiction"], "california");
    assert_eq!(json["purposes"][0]["legal_basis"], "notice");
}

/// Proves: A1, A2
#[test]
fn the_record_of_processing_has_an_activity_per_purpose_with_its_transfers() {
    let policy = Policy::default_policy();
    let record = record_of_processing(&policy);
    assert_eq!(record.activities.len(), policy.purposes().len());
    let account = &record.activities[0];
    assert_eq!(account.purpose.as_str(), "account");
    assert_eq!(account.retention.len(), account.data_categories.len());
    assert_eq!(
        account.security_measures.len(),
        policy.security_measures().len()
    );
    let transfer = account
        .transfers
        .iter()
        .find(|t| t.provider == "Example Mail Relay")
        .unwrap();
    assert_eq!(
        (transfer.country.as_str(), transfer.safeguard),
        ("US", TransferSafeguard::Sccs)
    );
    // The backup sub-processor sits inside the EEA, so it is no transfer.
    assert!(
        account
            .transfers
            .iter()
            .all(|t| t.provider != "Example Backup Storage")
    );
}

/// Proves: A1
#[test]
fn the_record_of_processing_exports_as_csv_rows_of_equal_width() {
    let record = record_of_processing(&Policy::default_policy());
    let rows = record.to_csv_rows();
    assert_eq!(rows.len(), record.activities.len() + 1);
    assert_eq!(rows[0][0], "purpose");
    assert!(rows.iter().all(|row| row.len() == rows[0].len()));
    assert!(
        rows[1][2].contains("eu_eea: contract (GDPR Art. 6(1)(b))"),
        "{:?}",
        rows[1][2]
    );
}
