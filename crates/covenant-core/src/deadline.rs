//! Response deadlines: the date an answer is due, counted in business days, calendar days or
//! calendar months from the day a request was received. Pure date arithmetic: it never reads
//! the clock, and holidays are given by the caller.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::{Date, Duration, Weekday};

/// How long a law (or the policy, where it promises more) allows for an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineRule {
    /// Days other than Saturday, Sunday and the given holidays.
    BusinessDays(u32),
    /// The same day of the month, `n` months on; clamped to the month's last day.
    CalendarMonths(u32),
    CalendarDays(u32),
}

impl fmt::Display for DeadlineRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, unit) = match *self {
            DeadlineRule::BusinessDays(n) => (n, "business day"),
            DeadlineRule::CalendarMonths(n) => (n, "calendar month"),
            DeadlineRule::CalendarDays(n) => (n, "calendar day"),
        };
        let plural = if n == 1 { "" } else { "s" };
        write!(f, "{n} {unit}{plural}")
    }
}

/// The day by which a request received on `received` must be answered. Never before
/// `received`; the day of receipt itself does not count.
pub fn due_date(received: Date, rule: DeadlineRule, holidays: &[Date]) -> Date {
    match rule {
        DeadlineRule::BusinessDays(n) => add_business_days(received, n, holidays),
        DeadlineRule::CalendarMonths(n) => add_months(received, n),
        DeadlineRule::CalendarDays(n) => received.saturating_add(Duration::days(n.into())),
    }
}

/// The due date once the deadline is extended by `extension` (the requester must have been
/// told before the original due date). Months are counted from receipt in one step, so that
/// 31 January plus one and then two months ends on 30 April, not 28 April.
pub fn extended_due_date(
    received: Date,
    rule: DeadlineRule,
    extension: DeadlineRule,
    holidays: &[Date],
) -> Date {
    match (rule, extension) {
        (DeadlineRule::CalendarMonths(months), DeadlineRule::CalendarMonths(more)) => {
            add_months(received, months.saturating_add(more))
        }
        _ => due_date(due_date(received, rule, holidays), extension, holidays),
    }
}

pub fn is_business_day(day: Date, holidays: &[Date]) -> bool {
    !matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday) && !holidays.contains(&day)
}

fn add_business_days(received: Date, n: u32, holidays: &[Date]) -> Date {
    let mut day = received;
    let mut left = n;
    while left > 0 {
        let Some(next) = day.next_day() else { break };
        day = next;
        if is_business_day(day, holidays) {
            left -= 1;
        }
    }
    day
}

fn add_months(date: Date, months: u32) -> Date {
    let steps_into_year = u8::try_from(months % 12).expect("a remainder of 12 fits in u8");
    let month = date.month().nth_next(steps_into_year);
    let wraps = (month as u8) < (date.month() as u8);
    let years = i32::try_from(months / 12).unwrap_or(i32::MAX);
    let year = date
        .year()
        .saturating_add(years)
        .saturating_add(i32::from(wraps));
    let day = date.day().min(month.length(year));
    Date::from_calendar_date(year, month, day).unwrap_or(Date::MAX)
}
