//! The purpose gate (promise R9, "purpose-bound access"): every use of a member's data that
//! a restriction, an objection or a withdrawal of consent can stop asks here, naming its
//! purpose. One rule decides: while a member's processing is restricted, only storage and
//! what security and the law need go on ([`Purpose::survives_restriction`]). Processing is
//! restricted either at the member's request (`processing_restrictions`) or by the retention
//! sweep for the limitation period after the relationship ended (`users.restricted_at`,
//! promise T2); [`limits_of`] reads both.
//!
//! Where the gate is asked: the mail worker before each message leaves (so news, digests and
//! policy notices queued before a restriction are withheld too), the recipient lists of
//! product news and the digest (restricted members are not even read for them), the
//! request's consent decision (analytics, through the core's `restricted` signal), and the
//! profile page and API (only public posts are shown). Mail delivery is the only hand-over to
//! a processor the forum makes beyond hosting, so withholding mail is what keeps a restricted
//! member's data from processors.
//!
//! An objection or a withdrawal of consent ([`PurposeGate::stop`]) is recorded as the opt-out
//! evidence each purpose already reads (news and digest choices, an analytics refusal), so it
//! stops at once and a later opt-in by the member starts it again.
//!
//! Staff reads (promise A3, need-to-know) go through the same gate: [`staff_may_read`] is the
//! whole table of who may read which data category for which [`StaffPurpose`], and
//! [`PurposeGate::staff_read`] checks it, with the subject's restriction, before a staff
//! page shows personal data, and records the read in the audit log (actor, subject, purpose,
//! categories: identifiers only), or the refusal (with the role and why). Where it is asked:
//! the staff request page, and each record of the disclosure log and of the feedback sent
//! to staff ([`PurposeGate::staff_read_rows`], one subject per row). The request queue
//! (page and API) shows no contact data, so it needs no gate.

use crate::audit::{self, AuditKey, AuditKind, Detail, Event as AuditEvent};
use crate::consent::NoticeStamp;
use crate::domain::Role;
use crate::error::Error;
use crate::error::Result;
use crate::inventory;
use crate::store::{self, DigestChoice, Store, Tx};
use anyhow::Context;
use covenant_core::consent::{Choice, ConsentSubject, Method};
use covenant_core::policy::{CookieCategory, Policy, Right};
use std::collections::HashMap;

/// What a use of a member's data is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Mail the member needs: sign-in links, security alerts, answers to their privacy
    /// requests.
    AccountMail,
    ProductNews,
    /// The digest of followed topics.
    Digest,
    /// Notice of a policy change.
    PolicyNotice,
    /// Visitor statistics.
    Analytics,
    /// Showing the member's profile (about text, joining day, post count) to others; their
    /// public posts are content, shown whatever this says.
    ProfileDetails,
}

impl Purpose {
    /// Whether the purpose goes on while processing is restricted: storage and security only.
    pub fn survives_restriction(self) -> bool {
        matches!(self, Self::AccountMail)
    }

    /// The purpose a queued message serves, from the prefix of its idempotency key.
    pub fn of_mail(key: &str) -> Self {
        match key.split(':').next().unwrap_or_default() {
            "news" => Self::ProductNews,
            "digest" => Self::Digest,
            "policy-notice" => Self::PolicyNotice,
            _ => Self::AccountMail,
        }
    }

    /// The word the audit log and the answer to the requester use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccountMail => "account_mail",
            Self::ProductNews => "product_news",
            Self::Digest => "digest",
            Self::PolicyNotice => "policy_notice",
            Self::Analytics => "analytics",
            Self::ProfileDetails => "profile_details",
        }
    }

    fn described(self) -> &'static str {
        match self {
            Self::AccountMail => "account and security mail",
            Self::ProductNews => "product news",
            Self::Digest => "the digest of followed topics",
            Self::PolicyNotice => "policy notices",
            Self::Analytics => "visitor statistics",
            Self::ProfileDetails => "your profile details",
        }
    }

    /// What a verified request of `right` stops at once; empty for other rights. An objection
    /// (GDPR Art. 21) and a withdrawal of consent stop everything optional we do with the
    /// member's data; an objection to direct marketing stops product news, the one purpose
    /// the policy marks as direct marketing.
    pub fn stopped_by(right: Right) -> &'static [Purpose] {
        match right {
            Right::Objection | Right::WithdrawConsent => {
                &[Self::ProductNews, Self::Digest, Self::Analytics]
            }
            Right::ObjectDirectMarketing => &[Self::ProductNews],
            _ => &[],
        }
    }
}

/// Why a staff member reads a member's personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaffPurpose {
    /// Handling a privacy request (R2-R9).
    RequestHandling,
    /// Handling abuse: spam, attacks, threats (a post's IP address and browser).
    AbuseHandling,
    /// Preparing or recording a disclosure the law requires (A3).
    LegalDisclosure,
    /// Helping the requester of a privacy request assigned to the reader.
    AccountSupport,
    /// Reading the feedback members send to staff, to answer or publish it (F6).
    FeedbackHandling,
}

impl StaffPurpose {
    pub const ALL: [StaffPurpose; 5] = [
        Self::RequestHandling,
        Self::AbuseHandling,
        Self::LegalDisclosure,
        Self::AccountSupport,
        Self::FeedbackHandling,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestHandling => "request_handling",
            Self::AbuseHandling => "abuse_handling",
            Self::LegalDisclosure => "legal_disclosure",
            Self::AccountSupport => "account_support",
            Self::FeedbackHandling => "feedback_handling",
        }
    }

    /// Whether the purpose goes on while the subject's processing is restricted: answering
    /// their requests, the law, and security do; support and feedback do not.
    pub fn survives_restriction(self) -> bool {
        !matches!(self, Self::AccountSupport | Self::FeedbackHandling)
    }
}

/// Contact data: what a support agent may see of a request assigned to them.
const CONTACT: [&str; 3] = [inventory::EMAIL, inventory::USERNAME, inventory::REQUESTS];

/// The need-to-know table (A3): whether `role` may read data of `category` (a policy
/// category key) for `purpose`; `assigned_to_me` says whether the record read (a privacy
/// request) is assigned to the reader. Pure, so the table test covers every case.
pub fn staff_may_read(
    role: Role,
    purpose: StaffPurpose,
    category: &str,
    assigned_to_me: bool,
) -> bool {
    let device = category == inventory::IP || category == inventory::USER_AGENT;
    // Feedback sent to staff: its text and its sender's username.
    let feedback = category == inventory::PRIVATE || category == inventory::USERNAME;
    match role {
        Role::Member => false,
        // A post's IP address and browser, for abuse handling only, and the feedback sent
        // to staff; never contact data.
        Role::Moderator => match purpose {
            StaffPurpose::AbuseHandling => device,
            StaffPurpose::FeedbackHandling => feedback,
            _ => false,
        },
        Role::SupportAgent => {
            purpose == StaffPurpose::AccountSupport && assigned_to_me && CONTACT.contains(&category)
        }
        Role::PrivacyOfficer => matches!(
            purpose,
            StaffPurpose::RequestHandling | StaffPurpose::LegalDisclosure
        ),
        Role::Administrator => match purpose {
            StaffPurpose::RequestHandling | StaffPurpose::LegalDisclosure => true,
            StaffPurpose::AbuseHandling => device,
            StaffPurpose::FeedbackHandling => feedback,
            StaffPurpose::AccountSupport => false,
        },
    }
}

/// One staff read of personal data, as the gate is asked about it.
#[derive(Debug, Clone)]
pub struct StaffRead<'a> {
    pub staff_id: i64,
    pub role: Role,
    pub purpose: StaffPurpose,
    /// Whose data; `None` for a list of many subjects or a requester with no account.
    pub subject: Option<i64>,
    /// The policy category keys the page shows.
    pub categories: &'a [&'a str],
    pub assigned_to_me: bool,
    /// The privacy request read, if any.
    pub request: Option<i64>,
    /// The records read, by count (a list read as a whole).
    pub count: Option<i64>,
    /// The one record read, when a list is read row by row (a disclosure, a feedback
    /// message).
    pub item: Option<Detail>,
}

/// The audit event of a staff read: a read, or a refusal with its reason and the reader's
/// role. Identifiers and fixed words only.
fn read_event(read: &StaffRead<'_>, refused: Option<&'static str>) -> AuditEvent {
    let kind = if refused.is_some() {
        AuditKind::PersonalDataReadRefused
    } else {
        AuditKind::PersonalDataRead
    };
    let mut event = AuditEvent::new(kind)
        .actor(Some(read.staff_id))
        .subject(read.subject)
        .detail(Detail::Reason(read.purpose.as_str()));
    if let Some(why) = refused {
        event = event
            .detail(Detail::Refused(why))
            .detail(Detail::Role(read.role));
    }
    if let Some(id) = read.request {
        event = event.detail(Detail::Request(id));
    }
    if let Some(item) = &read.item {
        event = event.detail(item.clone());
    }
    if let Some(n) = read.count {
        event = event.detail(Detail::Count(n));
    }
    for category in read.categories {
        event = event.detail(Detail::Category((*category).to_string()));
    }
    event
}

/// What limits one member's processing now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub restricted: bool,
}

impl Limits {
    pub fn allows(self, purpose: Purpose) -> bool {
        !self.restricted || purpose.survives_restriction()
    }
}

/// The member's limits, for callers that hold only the store (the consent decision).
pub async fn limits_of(store: &Store, user_id: i64) -> Result<Limits> {
    Ok(Limits {
        restricted: store.is_restricted(user_id).await?,
    })
}

/// How a restriction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiftedBy {
    Staff,
    Subject,
}

impl LiftedBy {
    fn as_str(self) -> &'static str {
        match self {
            Self::Staff => "staff",
            Self::Subject => "subject",
        }
    }
}

#[derive(Clone)]
pub struct PurposeGate {
    store: Store,
    audit: AuditKey,
}

impl PurposeGate {
    pub fn new(store: Store, audit: AuditKey) -> Self {
        Self { store, audit }
    }

    pub async fn limits(&self, user_id: i64) -> Result<Limits> {
        limits_of(&self.store, user_id).await
    }

    /// Whether the member's data may be used for `purpose` now.
    pub async fn allows(&self, user_id: i64, purpose: Purpose) -> Result<bool> {
        if purpose.survives_restriction() {
            return Ok(true);
        }
        Ok(self.limits(user_id).await?.allows(purpose))
    }

    /// The gate of a staff read: refuses (`403`) unless the role may read every category
    /// for the purpose and the subject's restriction lets the purpose go on. Either way the
    /// verdict is recorded in the audit log (`personal_data_read` or
    /// `personal_data_read_refused`, identifiers only) and committed before the caller shows
    /// anything; a refusal changes nothing else, so its entry has a transaction of its own.
    pub async fn staff_read(&self, read: &StaffRead<'_>) -> Result<()> {
        let mut restricted = HashMap::new();
        let refused = self.refusal(read, &mut restricted).await?;
        if let Some(why) = refused {
            tracing::info!(
                staff_id = read.staff_id,
                role = read.role.as_str(),
                purpose = read.purpose.as_str(),
                why,
                "staff read refused"
            );
        }
        let mut tx = self.store.begin().await?;
        audit::record(&mut tx, &self.audit, read_event(read, refused)).await?;
        tx.commit().await.context("recording a staff read")?;
        match refused {
            Some(_) => Err(Error::Forbidden),
            None => Ok(()),
        }
    }

    /// The gate of a list read row by row (the disclosure log, the feedback sent to staff):
    /// each row's subject, restriction and categories are checked as [`Self::staff_read`]
    /// checks one read, and each verdict is recorded, all in one transaction. Returns, in the
    /// rows' order, whether each row's personal fields may be shown.
    pub async fn staff_read_rows(&self, reads: &[StaffRead<'_>]) -> Result<Vec<bool>> {
        let mut restricted = HashMap::new();
        let mut verdicts = Vec::with_capacity(reads.len());
        let mut events = Vec::with_capacity(reads.len());
        for read in reads {
            let refused = self.refusal(read, &mut restricted).await?;
            verdicts.push(refused.is_none());
            events.push(read_event(read, refused));
        }
        if events.is_empty() {
            return Ok(verdicts);
        }
        let mut tx = self.store.begin().await?;
        audit::record_many(&self.store, &mut tx, &self.audit, events).await?;
        tx.commit().await.context("recording staff reads")?;
        Ok(verdicts)
    }

    /// Why `read` must be refused (`need_to_know` or `restricted`), or `None` when it may go
    /// on; `restricted` remembers each subject's restriction across the rows of one list.
    async fn refusal(
        &self,
        read: &StaffRead<'_>,
        restricted: &mut HashMap<i64, bool>,
    ) -> Result<Option<&'static str>> {
        let allowed = read
            .categories
            .iter()
            .all(|c| staff_may_read(read.role, read.purpose, c, read.assigned_to_me));
        if !allowed {
            return Ok(Some("need_to_know"));
        }
        if let Some(subject) = read.subject
            && !read.purpose.survives_restriction()
        {
            let is_restricted = match restricted.get(&subject) {
                Some(known) => *known,
                None => {
                    let known = self.limits(subject).await?.restricted;
                    restricted.insert(subject, known);
                    known
                }
            };
            if is_restricted {
                return Ok(Some("restricted"));
            }
        }
        Ok(None)
    }

    /// Whether a claimed message may leave: mail to no member always may.
    pub async fn allows_mail(&self, key: &str, user_id: Option<i64>) -> Result<bool> {
        match user_id {
            Some(user_id) => self.allows(user_id, Purpose::of_mail(key)).await,
            None => Ok(true),
        }
    }

    /// Restricts the member's processing in the caller's transaction (a verified restriction
    /// request). Returns false when a restriction already stood.
    pub async fn restrict(
        &self,
        tx: &mut Tx,
        user_id: i64,
        request_id: Option<i64>,
    ) -> Result<bool> {
        let started = store::insert_restriction(tx, user_id, request_id, crate::now()).await?;
        if started {
            let mut event = AuditEvent::new(AuditKind::ProcessingRestricted).subject(Some(user_id));
            if let Some(id) = request_id {
                event = event.detail(Detail::Request(id));
            }
            audit::record(tx, &self.audit, event).await?;
        }
        Ok(started)
    }

    /// Lifts the member's standing restriction, recording who did and how. Returns false when
    /// none stood.
    pub async fn lift(&self, user_id: i64, actor_id: i64, how: LiftedBy) -> Result<bool> {
        let mut tx = self.store.begin().await?;
        let Some(id) =
            store::lift_restriction(&mut tx, user_id, actor_id, how.as_str(), crate::now()).await?
        else {
            return Ok(false);
        };
        audit::record(
            &mut tx,
            &self.audit,
            AuditEvent::new(AuditKind::RestrictionLifted)
                .actor(Some(actor_id))
                .subject(Some(user_id))
                .detail(Detail::Method(how.as_str()))
                .detail(Detail::Count(id)),
        )
        .await?;
        tx.commit().await.context("lifting a restriction")?;
        tracing::info!(
            user_id,
            how = how.as_str(),
            "restriction of processing lifted"
        );
        Ok(true)
    }

    /// Stops `purposes` for the member at once, in the caller's transaction, as opt-out
    /// evidence each purpose reads: a news choice, a digest choice, a refusal of analytics
    /// for the account. Returns the sentence the answer to the requester carries.
    pub async fn stop(
        &self,
        tx: &mut Tx,
        user_id: i64,
        purposes: &[Purpose],
        policy: &Policy,
        request_id: i64,
    ) -> Result<String> {
        let now = crate::now();
        for purpose in purposes {
            match purpose {
                Purpose::ProductNews => {
                    crate::news::News::record_in(
                        tx,
                        user_id,
                        false,
                        crate::news::NewsMethod::PrivacyRequest,
                        policy.version(),
                        now,
                    )
                    .await?;
                }
                Purpose::Digest => {
                    store::insert_digest_choice(
                        tx,
                        &DigestChoice {
                            user_id,
                            subscribed: false,
                            method: crate::digest::DigestMethod::PrivacyRequest.as_str(),
                            policy_version: policy.version(),
                            text_hash: &crate::news::sha256_hex(crate::digest::DIGEST_OPT_IN_TEXT),
                            now,
                        },
                    )
                    .await?;
                }
                Purpose::Analytics => {
                    crate::consent::record_in(
                        tx,
                        &ConsentSubject::Account(user_id),
                        CookieCategory::Analytics,
                        Choice::Denied,
                        Method::WrittenRequest,
                        &NoticeStamp::new(policy, "Objection or withdrawal of consent"),
                        now,
                    )
                    .await?;
                }
                Purpose::AccountMail | Purpose::PolicyNotice | Purpose::ProfileDetails => {}
            }
            audit::record(
                tx,
                &self.audit,
                AuditEvent::new(AuditKind::ProcessingStopped)
                    .subject(Some(user_id))
                    .detail(Detail::Request(request_id))
                    .detail(Detail::Reason(purpose.as_str())),
            )
            .await?;
        }
        let named: Vec<&str> = purposes.iter().map(|p| p.described()).collect();
        Ok(format!(
            "We stopped at once: {}. You can ask for any of them again from your account.",
            named.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StaffPurpose::*;
    use inventory::{EMAIL, IP, PRIVATE, REQUESTS, USER_AGENT, USERNAME};

    /// The need-to-know table, whole: role by purpose by category.
    /// Proves: A3
    #[test]
    fn staff_reads_follow_the_need_to_know_table() {
        // (role, purpose, category, assigned to me, allowed)
        let table: &[(Role, StaffPurpose, &str, bool, bool)] = &[
            (Role::Moderator, AbuseHandling, IP, false, true),
            (Role::Moderator, AbuseHandling, USER_AGENT, false, true),
            (Role::Moderator, AbuseHandling, EMAIL, false, false),
            (Role::Moderator, AbuseHandling, EMAIL, true, false),
            (Role::Moderator, RequestHandling, IP, false, false),
            (Role::Moderator, RequestHandling, EMAIL, true, false),
            (Role::Moderator, AccountSupport, EMAIL, true, false),
            (Role::Moderator, LegalDisclosure, IP, false, false),
            (Role::Moderator, FeedbackHandling, PRIVATE, false, true),
            (Role::Moderator, FeedbackHandling, USERNAME, false, true),
            (Role::Moderator, FeedbackHandling, EMAIL, false, false),
            (Role::SupportAgent, FeedbackHandling, PRIVATE, true, false),
            (
                Role::PrivacyOfficer,
                FeedbackHandling,
                PRIVATE,
                false,
                false,
            ),
            (Role::Administrator, FeedbackHandling, PRIVATE, false, true),
            (Role::SupportAgent, AccountSupport, EMAIL, true, true),
            (Role::SupportAgent, AccountSupport, USERNAME, true, true),
            (Role::SupportAgent, AccountSupport, REQUESTS, true, true),
            (Role::SupportAgent, AccountSupport, EMAIL, false, false),
            (Role::SupportAgent, AccountSupport, REQUESTS, false, false),
            (Role::SupportAgent, AccountSupport, IP, true, false),
            (Role::SupportAgent, RequestHandling, EMAIL, true, false),
            (Role::SupportAgent, AbuseHandling, IP, true, false),
            (Role::SupportAgent, LegalDisclosure, REQUESTS, true, false),
            (Role::PrivacyOfficer, RequestHandling, EMAIL, false, true),
            (Role::PrivacyOfficer, RequestHandling, REQUESTS, false, true),
            (Role::PrivacyOfficer, LegalDisclosure, REQUESTS, false, true),
            (Role::PrivacyOfficer, AbuseHandling, IP, false, false),
            (Role::PrivacyOfficer, AccountSupport, EMAIL, true, false),
            (Role::Administrator, RequestHandling, EMAIL, false, true),
            (Role::Administrator, LegalDisclosure, REQUESTS, false, true),
            (Role::Administrator, AbuseHandling, IP, false, true),
            (Role::Administrator, AbuseHandling, EMAIL, false, false),
            (Role::Administrator, AccountSupport, EMAIL, true, false),
        ];
        for (role, purpose, category, mine, allowed) in table {
            assert_eq!(
                staff_may_read(*role, *purpose, category, *mine),
                *allowed,
                "{} reading {category} for {} (assigned: {mine})",
                role.as_str(),
                purpose.as_str()
            );
        }
        // A member reads no one's data as staff, whatever the purpose.
        for purpose in StaffPurpose::ALL {
            for category in [EMAIL, IP, USER_AGENT, REQUESTS, USERNAME, PRIVATE] {
                for mine in [false, true] {
                    assert!(!staff_may_read(Role::Member, purpose, category, mine));
                }
            }
        }
        // A moderator never sees an email, for any purpose.
        for purpose in StaffPurpose::ALL {
            for mine in [false, true] {
                assert!(!staff_may_read(Role::Moderator, purpose, EMAIL, mine));
            }
        }
    }

    #[test]
    fn support_and_feedback_stop_under_a_restriction() {
        let surviving: Vec<_> = StaffPurpose::ALL
            .into_iter()
            .filter(|p| p.survives_restriction())
            .collect();
        assert_eq!(surviving, [RequestHandling, AbuseHandling, LegalDisclosure]);
    }
}
