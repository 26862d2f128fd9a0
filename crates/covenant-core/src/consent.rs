//! Consent decisions (promises C1–C4, M1): a subject's standing choices built from its records,
//! the per-request decision for a cookie category, the stricter merge at sign-in, when a policy
//! change asks again, and ISO/IEC TS 27560-style receipts. It must never read a clock, store a
//! record or allocate in `decide`, which runs on every request.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::diff::{ChangeClass, PolicyDiff};
use crate::policy::{Controller, CookieCategory};
use crate::stored::{UnknownName, stored_names};

stored_names!(CookieCategory, "cookie category", {
    Necessary => "necessary",
    Preferences => "preferences",
    Analytics => "analytics",
    Advertising => "advertising",
});

impl CookieCategory {
    /// Only necessary cookies may be set without a choice; the policy validator enforces the same.
    pub fn is_optional(self) -> bool {
        self != CookieCategory::Necessary
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Choice {
    Granted,
    Denied,
}

stored_names!(Choice, "consent choice", { Granted => "granted", Denied => "denied" });

/// How a choice reached us; kept as evidence (C3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Banner,
    SettingsPage,
    /// A `Sec-GPC: 1` request header (C2).
    Gpc,
    Api,
    /// A "California Opt-Out" or "Nevada Sale Opt-Out" request (C4).
    WrittenRequest,
    /// Carried over from a device to an account, or back, at sign-in.
    AccountSync,
}

stored_names!(Method, "consent method", {
    Banner => "banner",
    SettingsPage => "settings_page",
    Gpc => "gpc",
    Api => "api",
    WrittenRequest => "written_request",
    AccountSync => "account_sync",
});

/// Whose choice it is: a browser (one random first-party consent id) or a member's account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum ConsentSubject {
    Device(String),
    Account(i64),
}

impl ConsentSubject {
    /// Stored as TEXT: `device:<consent id>` or `account:<user id>`.
    pub fn parse(text: &str) -> Result<ConsentSubject, UnknownName> {
        let unknown = || UnknownName {
            what: "consent subject",
            text: text.to_owned(),
        };
        match text.split_once(':') {
            Some(("device", id)) if !id.is_empty() => Ok(ConsentSubject::Device(id.to_owned())),
            Some(("account", id)) => id
                .parse()
                .map(ConsentSubject::Account)
                .map_err(|_| unknown()),
            _ => Err(unknown()),
        }
    }
}

impl std::fmt::Display for ConsentSubject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConsentSubject::Device(id) => write!(f, "device:{id}"),
            ConsentSubject::Account(id) => write!(f, "account:{id}"),
        }
    }
}

/// One immutable piece of evidence: a grant, a refusal or a withdrawal. Never updated; a new
/// choice is a new record, so earlier lawful processing stays provable (C3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRecord {
    pub id: String,
    pub subject: ConsentSubject,
    pub category: CookieCategory,
    pub choice: Choice,
    pub method: Method,
    pub policy_version: String,
    /// A hash of the exact text shown when the choice was made.
    pub text_hash: String,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
}

/// The choice standing for one category, with where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    pub choice: Choice,
    pub method: Method,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// A denial that followed a grant of the same category.
    pub withdrawn: bool,
}

/// A subject's standing choices, one slot per cookie category. `Copy` and fixed-size so that
/// deciding never allocates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentState {
    standings: [Option<Standing>; 4],
}

impl ConsentState {
    /// Folds records in the order given; per category the latest wins (a later timestamp, or
    /// the later record when two share one).
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a ConsentRecord>) -> ConsentState {
        let mut state = ConsentState::default();
        for record in records {
            state.apply(record);
        }
        state
    }

    pub fn apply(&mut self, record: &ConsentRecord) {
        let slot = &mut self.standings[record.category.index()];
        if slot.is_some_and(|standing| standing.at > record.recorded_at) {
            return;
        }
        let withdrawn = record.choice == Choice::Denied
            && slot
                .is_some_and(|standing| standing.choice == Choice::Granted || standing.withdrawn);
        *slot = Some(Standing {
            choice: record.choice,
            method: record.method,
            at: record.recorded_at,
            withdrawn,
        });
    }

    pub fn standing(&self, category: CookieCategory) -> Option<&Standing> {
        self.standings[category.index()].as_ref()
    }

    pub fn choice(&self, category: CookieCategory) -> Option<Choice> {
        self.standing(category).map(|standing| standing.choice)
    }

    /// A policy change asks again for `category` (see [`needs_reconsent`]): a standing grant
    /// no longer counts, so the category is unchosen (and off) until the subject chooses again.
    /// A refusal stays a refusal. Returns whether a grant lapsed. The records themselves are
    /// untouched: the grant stays evidence of what was allowed before the change.
    pub fn ask_again(&mut self, category: CookieCategory) -> bool {
        let slot = &mut self.standings[category.index()];
        let granted = slot.is_some_and(|standing| standing.choice == Choice::Granted);
        if granted {
            *slot = None;
        }
        granted
    }
}

/// What is known about the request and the subject beyond their choices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signals {
    /// The request carries `Sec-GPC: 1`.
    pub gpc: bool,
    /// The subject is known to be under 16 (C4, M1).
    pub known_minor_under_16: bool,
    /// Processing is restricted (R9): only storage, security and what is necessary go on.
    pub restricted: bool,
    /// The subject objected to the purpose this use serves (R1, GDPR Art. 21); the caller,
    /// which knows the purpose, says so.
    pub objected: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Necessary,
    Restricted,
    #[serde(rename = "minor_under_16")]
    MinorUnder16,
    GlobalPrivacyControl,
    Objection,
    Granted,
    Refused,
    Withdrawn,
    NoChoice,
}

stored_names!(Reason, "consent decision reason", {
    Necessary => "necessary",
    Restricted => "restricted",
    MinorUnder16 => "minor_under_16",
    GlobalPrivacyControl => "global_privacy_control",
    Objection => "objection",
    Granted => "granted",
    Refused => "refused",
    Withdrawn => "withdrawn",
    NoChoice => "no_choice",
});

impl Reason {
    /// Plain words for settings pages and the API.
    pub fn explanation(self) -> &'static str {
        match self {
            Reason::Necessary => "Necessary for the site to work; always on.",
            Reason::Restricted => {
                "Processing is restricted at your request; only what is necessary runs."
            }
            Reason::MinorUnder16 => "Never for anyone known to be under 16.",
            Reason::GlobalPrivacyControl => "Global Privacy Control honored.",
            Reason::Objection => "Off because you objected to this use.",
            Reason::Granted => "On because you allowed it.",
            Reason::Refused => "Off because you refused it.",
            Reason::Withdrawn => "Off because you withdrew your consent.",
            Reason::NoChoice => "Off until you allow it.",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allowed: bool,
    pub reason: Reason,
}

/// Whether `category` may be used for this request. Optional categories are off unless
/// granted; GPC and being under 16 keep advertising (sale, sharing, targeted ads) off even over
/// a grant.
pub fn decide(state: &ConsentState, category: CookieCategory, signals: Signals) -> Decision {
    let deny = |reason| Decision {
        allowed: false,
        reason,
    };
    let advertising = category == CookieCategory::Advertising;
    if category == CookieCategory::Necessary {
        return Decision {
            allowed: true,
            reason: Reason::Necessary,
        };
    }
    if signals.restricted {
        return deny(Reason::Restricted);
    }
    if advertising && signals.known_minor_under_16 {
        return deny(Reason::MinorUnder16);
    }
    if advertising && signals.gpc {
        return deny(Reason::GlobalPrivacyControl);
    }
    if signals.objected {
        return deny(Reason::Objection);
    }
    match state.standing(category) {
        Some(Standing {
            choice: Choice::Granted,
            ..
        }) => Decision {
            allowed: true,
            reason: Reason::Granted,
        },
        Some(Standing {
            withdrawn: true, ..
        }) => deny(Reason::Withdrawn),
        Some(_) => deny(Reason::Refused),
        None => deny(Reason::NoChoice),
    }
}

/// The choices that hold after sign-in: per category a denial on either side wins. A side
/// with no choice yields to the other, because no choice is not a refusal; with neither, the
/// category stays unchosen and so off.
pub fn stricter(device: &ConsentState, account: &ConsentState) -> ConsentState {
    let mut merged = ConsentState::default();
    for (slot, (a, b)) in merged
        .standings
        .iter_mut()
        .zip(device.standings.iter().zip(&account.standings))
    {
        *slot = match (a, b) {
            (Some(a), Some(b)) => Some(match (a.choice, b.choice) {
                (Choice::Denied, Choice::Granted) => *a,
                (Choice::Granted, Choice::Denied) => *b,
                _ if a.at > b.at => *a,
                _ => *b,
            }),
            (one, other) => one.or(*other),
        };
    }
    merged
}

/// Whether a policy change asks again for the choice of `category`. Only a standing grant
/// needs asking again; a refusal stays valid under any policy. A material change to the
/// category's own cookie group asks again for it. The policy file does not say which cookie
/// category a new purpose or data category relies on, so an added one asks again for every
/// optional category: a grant given before cannot be taken to cover a use nobody described.
pub fn needs_reconsent(diff: &PolicyDiff, category: CookieCategory) -> bool {
    if !category.is_optional() {
        return false;
    }
    let adds_a_use = !diff.added_purposes().is_empty() || !diff.added_categories().is_empty();
    adds_a_use
        || diff.changes().iter().any(|change| {
            change.class == ChangeClass::Material && touches_cookie_group(&change.path, category)
        })
}

/// Paths look like `cookies[analytics]` or `cookies[analytics].optional`.
fn touches_cookie_group(path: &str, category: CookieCategory) -> bool {
    path.strip_prefix("cookies[")
        .and_then(|rest| rest.strip_prefix(category.as_str()))
        .is_some_and(|rest| rest.starts_with(']'))
}

/// The version of ISO/IEC TS 27560 the receipt is modelled on.
pub const RECEIPT_SCHEMA_VERSION: &str = "ISO/IEC TS 27560:2023";

/// A consent receipt for export, modelled on ISO/IEC TS 27560: who decided what, about which
/// processing, under which notice, how and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub schema_version: String,
    pub receipt_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    pub controller: ReceiptController,
    pub policy_version: String,
    /// The hash of the notice text the subject saw.
    pub text_hash: String,
    pub subject_id: String,
    pub category: CookieCategory,
    pub choice: Choice,
    pub method: Method,
    /// Whether the choice was an explicit act of the subject rather than a signal (GPC).
    pub explicit: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptController {
    pub name: String,
    pub address: String,
    pub contact: String,
}

impl Receipt {
    pub fn from_record(record: &ConsentRecord, controller: &Controller) -> Receipt {
        Receipt {
            schema_version: RECEIPT_SCHEMA_VERSION.to_owned(),
            receipt_id: record.id.clone(),
            timestamp: record.recorded_at,
            controller: ReceiptController {
                name: controller.name.clone(),
                address: controller.address.clone(),
                contact: controller.privacy_email.clone(),
            },
            policy_version: record.policy_version.clone(),
            text_hash: record.text_hash.clone(),
            subject_id: record.subject.to_string(),
            category: record.category,
            choice: record.choice,
            method: record.method,
            explicit: record.method != Method::Gpc,
        }
    }
}
