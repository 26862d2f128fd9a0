//! Retention verdicts (promises T1–T3): for one record, whether it is kept, restricted to
//! storage and security, deleted, anonymized or held, from which day, and why in plain words.
//! It must never read the clock or touch data: the sweep asks, acts and audits.

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime, UtcOffset};

use crate::deadline::{DeadlineRule, due_date};
use crate::policy::{
    CategoryKey, JurisdictionRules, LimitationPeriod, RetentionEnd, RetentionPeriod, RetentionRule,
};
use crate::stored::stored_names;

/// Why an account was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClosureReason {
    ByMember,
    /// The policy's inactivity limit was reached.
    Inactivity,
    ByStaff,
}

stored_names!(ClosureReason, "account closure reason", {
    ByMember => "by_member",
    Inactivity => "inactivity",
    ByStaff => "by_staff",
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Account {
    /// A visitor or requester who never registered.
    None,
    Active,
    Closed {
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        reason: ClosureReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Subscription {
    None,
    Active,
    Ended {
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
}

/// What binds a subject to the forum (T1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relationship {
    /// The subject as holds name it (for members, their user id as text).
    pub subject: String,
    pub account: Account,
    /// The product-news subscription.
    pub subscription: Subscription,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_activity: Option<OffsetDateTime>,
}

impl Relationship {
    pub fn is_ongoing(&self) -> bool {
        self.account == Account::Active || self.subscription == Subscription::Active
    }

    /// When and how it ended, the later end winning; `None` while it lasts.
    fn ended(&self, record_created_at: OffsetDateTime) -> Option<(Date, String)> {
        if self.is_ongoing() {
            return None;
        }
        let closed = match self.account {
            Account::Closed {
                at,
                reason: ClosureReason::Inactivity,
            } => Some((day(at), "the account reached the inactivity limit")),
            Account::Closed { at, .. } => Some((day(at), "the account was closed")),
            _ => None,
        };
        let unsubscribed = match self.subscription {
            Subscription::Ended { at } => Some((day(at), "the product-news subscription ended")),
            _ => None,
        };
        let (on, what) = closed
            .into_iter()
            .chain(unsubscribed)
            .max_by_key(|(on, _)| *on)
            .unwrap_or_else(|| {
                let last = self.last_activity.unwrap_or(record_created_at);
                (day(last), "the last activity took place")
            });
        Some((on, format!("The relationship ended when {what} on {on}")))
    }
}

/// What a legal hold covers: every field that is given narrows it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HoldScope {
    /// One subject's data; `None` holds everyone's.
    pub subject: Option<String>,
    /// Empty holds every category.
    pub categories: Vec<CategoryKey>,
    /// Records created on or after this day.
    #[serde(with = "crate::stored::iso_date::option")]
    pub created_from: Option<Date>,
    /// Records created on or before this day.
    #[serde(with = "crate::stored::iso_date::option")]
    pub created_until: Option<Date>,
}

/// A legal hold (T3): held data is neither restricted nor removed until the hold is released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub scope: HoldScope,
    /// The claim or order it serves, shown to staff.
    pub reason: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub released_at: Option<OffsetDateTime>,
}

impl Hold {
    pub fn covers(
        &self,
        subject: &str,
        category: &CategoryKey,
        created_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> bool {
        let scope = &self.scope;
        let created = day(created_at);
        self.released_at.is_none_or(|released| released > now)
            && scope.subject.as_deref().is_none_or(|held| held == subject)
            && (scope.categories.is_empty() || scope.categories.contains(category))
            && scope.created_from.is_none_or(|from| created >= from)
            && scope.created_until.is_none_or(|until| created <= until)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictState {
    Keep,
    /// Processing restricted to storage and security until the verdict's `remove_on` (T2).
    Restrict,
    Delete,
    Anonymize,
    Held,
}

stored_names!(VerdictState, "retention verdict", {
    Keep => "keep",
    Restrict => "restrict",
    Delete => "delete",
    Anonymize => "anonymize",
    Held => "held",
});

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub state: VerdictState,
    /// Plain words, shown to staff and in exports.
    pub reason: String,
    /// The first day of restriction; `None` while the relationship lasts.
    #[serde(with = "crate::stored::iso_date::option")]
    pub restrict_from: Option<Date>,
    /// The day the record is to be deleted or anonymized; `None` while the relationship lasts.
    #[serde(with = "crate::stored::iso_date::option")]
    pub remove_on: Option<Date>,
}

/// The verdict for one record of `rule.category`, created at `record_created_at`, whose subject
/// is bound by `relationship`, under the law of `jurisdiction`. Days are UTC days.
pub fn retention_verdict(
    rule: &RetentionRule,
    jurisdiction: &JurisdictionRules,
    relationship: &Relationship,
    holds: &[Hold],
    record_created_at: OffsetDateTime,
    now: OffsetDateTime,
) -> Verdict {
    let kept = match rule.period {
        RetentionPeriod::Relationship => relationship.ended(record_created_at),
        fixed => {
            let created = day(record_created_at);
            let until = add_period(created, fixed);
            Some((
                until,
                format!("Kept {} from {created}", period_words(fixed)),
            ))
        }
    };
    let (limitation_months, limitation_words) = match jurisdiction.limitation_period {
        LimitationPeriod::Months(n) => (n, plural(n, "month")),
        LimitationPeriod::Years(n) => (n.saturating_mul(12), plural(n, "year")),
    };
    let dates = kept.as_ref().map(|(restrict_from, _)| {
        let months = limitation_months.saturating_add(rule.restricted_extra_months);
        (*restrict_from, add_months(*restrict_from, months))
    });
    let held = holds.iter().find(|hold| {
        hold.covers(
            &relationship.subject,
            &rule.category,
            record_created_at,
            now,
        )
    });
    let (state, reason) = match (held, &kept, dates) {
        (Some(hold), _, _) => (
            VerdictState::Held,
            format!(
                "Held for a legal claim ({}): neither restricted nor removed while the hold stands.",
                hold.reason
            ),
        ),
        (None, None, _) | (None, _, None) => (
            VerdictState::Keep,
            "Kept while the account or the product-news subscription lasts.".to_owned(),
        ),
        (None, Some((_, why)), Some((restrict_from, remove_on))) => {
            let today = day(now);
            let end = match rule.then {
                RetentionEnd::Delete => "deleted",
                RetentionEnd::Anonymize => "anonymized",
            };
            let limitation = format!(
                "the limitation period under {} ({limitation_words}) plus {}",
                jurisdiction.law,
                plural(rule.restricted_extra_months, "month")
            );
            if today < restrict_from {
                let reason = format!(
                    "{why}, until {restrict_from}; then restricted to storage and security for \
                     {limitation}, then {end} on {remove_on}."
                );
                (VerdictState::Keep, reason)
            } else if today < remove_on {
                let reason = format!(
                    "{why}. Restricted to storage and security from {restrict_from} for \
                     {limitation}; to be {end} on {remove_on}."
                );
                (VerdictState::Restrict, reason)
            } else {
                let state = match rule.then {
                    RetentionEnd::Delete => VerdictState::Delete,
                    RetentionEnd::Anonymize => VerdictState::Anonymize,
                };
                let reason = format!("{why}. After {limitation}, it is {end} as of {remove_on}.");
                (state, reason)
            }
        }
    };
    Verdict {
        state,
        reason,
        restrict_from: dates.map(|(from, _)| from),
        remove_on: dates.map(|(_, on)| on),
    }
}

/// The verdict on where a member lives (their residence), from the verdicts on every other
/// category of theirs, holds applied. Residence decides which law's limitation period applies
/// to all the rest, so it goes last: kept while anything else is kept, restricted while the
/// rest is, held while a hold keeps some of the rest (the law it names still decides what
/// happens once the hold is released), and deleted once every other category is deleted or
/// anonymized, never before.
pub fn residence_verdict(others: &[Verdict]) -> Verdict {
    let remove_on = others.iter().filter_map(|v| v.remove_on).max();
    let restrict_from = others.iter().filter_map(|v| v.restrict_from).min();
    let has = |state| others.iter().any(|v| v.state == state);
    let why = "where the member lives decides which law's limitation period applies to the \
               rest of their data";
    let (state, reason) = if let Some(held) = others.iter().find(|v| v.state == VerdictState::Held)
    {
        (
            VerdictState::Held,
            format!(
                "Kept while a legal hold keeps other data of this member, because {why}. {}",
                held.reason
            ),
        )
    } else if has(VerdictState::Keep) {
        (
            VerdictState::Keep,
            format!("Kept while other data of this member is kept, because {why}."),
        )
    } else if has(VerdictState::Restrict) {
        let until = remove_on.map(|d| format!(" on {d}")).unwrap_or_default();
        (
            VerdictState::Restrict,
            format!(
                "Restricted to storage and security with the rest of this member's data, \
                 because {why}; deleted once all of it is gone{until}."
            ),
        )
    } else {
        let since = remove_on.map(|d| format!(" as of {d}")).unwrap_or_default();
        (
            VerdictState::Delete,
            format!(
                "Kept last because {why}: every other category of this member has been \
                 deleted or anonymized{since}, so it is deleted."
            ),
        )
    };
    Verdict {
        state,
        reason,
        restrict_from,
        remove_on,
    }
}

fn day(at: OffsetDateTime) -> Date {
    at.to_offset(UtcOffset::UTC).date()
}

/// Months are added in one step from the start, clamped to the month's last day, so that
/// 31 January plus one month is 28 (or 29) February and plus two is 31 March.
fn add_months(from: Date, months: u32) -> Date {
    due_date(from, DeadlineRule::CalendarMonths(months), &[])
}

fn add_period(from: Date, period: RetentionPeriod) -> Date {
    match period {
        RetentionPeriod::Relationship => from,
        RetentionPeriod::Days(n) => due_date(from, DeadlineRule::CalendarDays(n), &[]),
        RetentionPeriod::Months(n) => add_months(from, n),
        RetentionPeriod::Years(n) => add_months(from, n.saturating_mul(12)),
    }
}

fn period_words(period: RetentionPeriod) -> String {
    match period {
        RetentionPeriod::Relationship => "while the relationship lasts".to_owned(),
        RetentionPeriod::Days(n) => format!("for {}", plural(n, "day")),
        RetentionPeriod::Months(n) => format!("for {}", plural(n, "month")),
        RetentionPeriod::Years(n) => format!("for {}", plural(n, "year")),
    }
}

fn plural(n: u32, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}
