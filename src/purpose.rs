//! The purpose gate (promise R9, "purpose-bound access"): every use of a member's data that
//! a restriction, an objection or a withdrawal of consent can stop asks here, naming its
//! purpose. One rule decides: while a member's processing is restricted, only storage and
//! what security and the law need go on ([`Purpose::survives_restriction`]).
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

use crate::audit::{self, AuditKey, AuditKind, Detail, Event as AuditEvent};
use crate::consent::NoticeStamp;
use crate::error::Result;
use crate::store::{self, DigestChoice, Store, Tx};
use anyhow::Context;
use covenant_core::consent::{Choice, ConsentSubject, Method};
use covenant_core::policy::{CookieCategory, Policy, Right};

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
