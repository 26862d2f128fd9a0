//! Table tests of due dates: business days around weekends and holidays, calendar months at
//! the end of a month and in leap years, calendar days.

use covenant_core::deadline::{DeadlineRule, due_date, extended_due_date};
use time::Date;
use time::macros::date;

use DeadlineRule::{BusinessDays, CalendarDays, CalendarMonths};

/// Proves: R5
#[test]
fn due_dates_follow_the_rule_table() {
    let holidays = [
        date!(2025 - 12 - 25),
        date!(2025 - 12 - 26),
        date!(2026 - 01 - 01),
    ];
    #[rustfmt::skip]
    let cases: &[(&str, Date, DeadlineRule, Date)] = &[
        ("a Monday plus 5 business days is the next Monday", date!(2025-03-03), BusinessDays(5), date!(2025-03-10)),
        ("a Friday plus 1 business day is the Monday", date!(2025-03-07), BusinessDays(1), date!(2025-03-10)),
        ("a Saturday plus 1 business day is the Monday", date!(2025-03-08), BusinessDays(1), date!(2025-03-10)),
        ("20 business days are four weeks without holidays", date!(2025-03-03), BusinessDays(20), date!(2025-03-31)),
        ("holidays are skipped", date!(2025-12-24), BusinessDays(2), date!(2025-12-30)),
        ("holidays across the new year are skipped", date!(2025-12-22), BusinessDays(10), date!(2026-01-08)),
        ("one month from mid-month is the same day", date!(2025-03-15), CalendarMonths(1), date!(2025-04-15)),
        ("31 January plus one month is 28 February", date!(2025-01-31), CalendarMonths(1), date!(2025-02-28)),
        ("in a leap year it is 29 February", date!(2028-01-31), CalendarMonths(1), date!(2028-02-29)),
        ("31 March plus one month is 30 April", date!(2025-03-31), CalendarMonths(1), date!(2025-04-30)),
        ("31 December plus one month is 31 January", date!(2025-12-31), CalendarMonths(1), date!(2026-01-31)),
        ("fourteen months cross a year", date!(2025-11-30), CalendarMonths(14), date!(2027-01-30)),
        ("45 calendar days ignore weekends", date!(2025-01-01), CalendarDays(45), date!(2025-02-15)),
        ("calendar days cross a leap day", date!(2028-02-01), CalendarDays(45), date!(2028-03-17)),
        ("zero business days is the day of receipt", date!(2025-03-08), BusinessDays(0), date!(2025-03-08)),
    ];
    for (name, received, rule, expected) in cases {
        assert_eq!(due_date(*received, *rule, &holidays), *expected, "{name}");
    }
}

/// Proves: R5
#[test]
fn an_extension_in_months_counts_from_receipt() {
    let received = date!(2025 - 01 - 31);
    let due = extended_due_date(received, CalendarMonths(1), CalendarMonths(2), &[]);
    assert_eq!(due, date!(2025 - 04 - 30));
}

/// Proves: R5
#[test]
fn an_extension_in_days_runs_from_the_original_due_date() {
    let received = date!(2025 - 01 - 01);
    let due = extended_due_date(received, BusinessDays(20), CalendarDays(45), &[]);
    assert_eq!(due, date!(2025 - 03 - 15));
}

mod never_before_receipt {
    use proptest::prelude::*;

    use super::*;

    fn rule() -> impl Strategy<Value = DeadlineRule> {
        prop_oneof![
            (0u32..400).prop_map(BusinessDays),
            (0u32..40).prop_map(CalendarMonths),
            (0u32..400).prop_map(CalendarDays),
        ]
    }

    proptest! {
        /// Proves: R5
        #[test]
        fn a_due_date_never_precedes_receipt(
            day in 0i32..40_000, rule in rule(), extension in rule(),
        ) {
            let received = date!(2000 - 01 - 01) + time::Duration::days(day.into());
            let holidays = [received, received + time::Duration::days(1)];
            let due = due_date(received, rule, &holidays);
            prop_assert!(due >= received);
            prop_assert!(extended_due_date(received, rule, extension, &holidays) >= due);
        }
    }
}

#[test]
fn deadline_rules_read_as_plain_words() {
    assert_eq!(CalendarDays(45).to_string(), "45 calendar days");
    assert_eq!(CalendarMonths(1).to_string(), "1 calendar month");
    assert_eq!(BusinessDays(20).to_string(), "20 business days");
}
