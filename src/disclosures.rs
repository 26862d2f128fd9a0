//! The disclosure log (promise A3): privacy staff record each disclosure of a member's data to
//! a third party or an authority, with its legal basis, the body that asked, the policy
//! categories disclosed and who approved it. The member is told by email in the same
//! transaction, unless the record says the law forbids telling them (a gag); the record is part
//! of their access export (R7) on the same condition, and each one is an audit entry holding
//! identifiers and fixed words only.

use crate::audit::{self, AuditKey, Detail, Event};
use crate::domain::InvalidField;
use crate::error::{Error, Result};
use crate::mail::Mail;
use crate::policy::Policies;
use crate::store::{self, DisclosureRow, NewDisclosure, Store};
use anyhow::Context;
use covenant_core::policy::CategoryKey;

/// Why data may be disclosed, as the policy says: in response to a subpoena, court order or
/// other legal request, or to protect the rights of the forum, third parties or the public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegalBasis {
    Subpoena,
    CourtOrder,
    OtherLegalRequest,
    ProtectionOfRights,
}

impl LegalBasis {
    pub const ALL: [LegalBasis; 4] = [
        Self::Subpoena,
        Self::CourtOrder,
        Self::OtherLegalRequest,
        Self::ProtectionOfRights,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subpoena => "subpoena",
            Self::CourtOrder => "court_order",
            Self::OtherLegalRequest => "other_legal_request",
            Self::ProtectionOfRights => "protection_of_rights",
        }
    }

    /// In plain words, for pages and the notice.
    pub fn label(self) -> &'static str {
        match self {
            Self::Subpoena => "a subpoena",
            Self::CourtOrder => "a court order",
            Self::OtherLegalRequest => "another legal or governmental request",
            Self::ProtectionOfRights => {
                "the protection of the rights or property of the forum, third parties or the public"
            }
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.as_str() == raw)
    }
}

/// A disclosure as staff enter it, before it is checked.
#[derive(Debug, Clone, Default)]
pub struct DisclosureRequest {
    pub subject_user_id: i64,
    /// One of [`LegalBasis::as_str`].
    pub legal_basis: String,
    /// The authority or third party that received the data.
    pub requesting_body: String,
    /// Their case, order or letter reference (may be empty).
    pub reference: String,
    /// Category keys of the policy, separated by spaces or commas; at least one.
    pub categories: String,
    /// The day of the disclosure, `YYYY-MM-DD`.
    pub disclosed_on: String,
    /// The law forbids telling the subject (a gag order, an investigation's secrecy).
    pub notice_forbidden: bool,
}

#[derive(Clone)]
pub struct Disclosures {
    store: Store,
    audit: AuditKey,
    policies: Policies,
    site_name: String,
    base_url: String,
}

impl Disclosures {
    pub fn new(
        store: Store,
        audit: AuditKey,
        policies: Policies,
        config: &crate::config::Config,
    ) -> Self {
        Self {
            store,
            audit,
            policies,
            site_name: config.site_name.clone(),
            base_url: config.base_url().to_string(),
        }
    }

    /// Records a disclosure approved by `approver` (privacy staff, checked by the caller),
    /// queues the subject's notice unless the law forbids it, and writes the audit entry, all
    /// in one transaction. Returns the record's number.
    pub async fn record(&self, approver: i64, request: &DisclosureRequest) -> Result<i64> {
        let policy = self.policies.current().await?.policy.clone();
        let mut invalid = Vec::new();
        let basis = LegalBasis::parse(request.legal_basis.trim());
        if basis.is_none() {
            invalid.push(InvalidField::new(
                "legal_basis",
                "must be a subpoena, a court order, another legal request or the protection of rights",
            ));
        }
        let body = request.requesting_body.trim();
        if body.is_empty() || body.chars().count() > 300 {
            invalid.push(InvalidField::new(
                "requesting_body",
                "must name who received the data, in at most 300 characters",
            ));
        }
        let reference = request.reference.trim();
        if reference.chars().count() > 300 {
            invalid.push(InvalidField::new(
                "reference",
                "must be at most 300 characters",
            ));
        }
        let mut keys = Vec::new();
        for key in request
            .categories
            .split([' ', ','])
            .filter(|k| !k.is_empty())
        {
            match CategoryKey::parse(key) {
                Ok(parsed) if policy.category(&parsed).is_some() => keys.push(parsed),
                _ => invalid.push(InvalidField::new(
                    "categories",
                    "must be category keys of the policy, such as user.contact.email",
                )),
            }
        }
        if keys.is_empty() {
            invalid.push(InvalidField::new(
                "categories",
                "must name at least one category of the policy",
            ));
        }
        let day = crate::retention::parse_day(&request.disclosed_on);
        if day.is_none() {
            invalid.push(InvalidField::new(
                "disclosed_on",
                "must be a day such as 2026-01-31",
            ));
        }
        let subject = self.store.user_by_id(request.subject_user_id).await?;
        if subject.is_none() {
            invalid.push(InvalidField::new("subject", "no such member"));
        }
        let (Some(basis), Some(day), Some(subject), true) =
            (basis, day, subject, invalid.is_empty())
        else {
            invalid.dedup_by(|a, b| a.field == b.field);
            return Err(Error::Invalid(invalid));
        };
        keys.sort();
        keys.dedup();
        let key_text: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let now = crate::now();
        let disclosed_on = day.to_string();

        let mut tx = self.store.begin().await?;
        let id = store::insert_disclosure(
            &mut tx,
            &NewDisclosure {
                subject_user_id: subject.id,
                legal_basis: basis.as_str(),
                requesting_body: body,
                reference,
                categories: &key_text.join(" "),
                disclosed_on: &disclosed_on,
                notice_forbidden: request.notice_forbidden,
                approved_by: approver,
                now,
            },
        )
        .await?;
        let notified = !request.notice_forbidden
            && self
                .notify(
                    &mut tx,
                    &policy,
                    &subject,
                    &DisclosureRow {
                        id,
                        subject_user_id: subject.id,
                        legal_basis: basis.as_str().into(),
                        requesting_body: body.into(),
                        reference: reference.into(),
                        categories: key_text.join(" "),
                        disclosed_on: disclosed_on.clone(),
                        notice_forbidden: 0,
                        approved_by: approver,
                        created_at: now,
                        notified_at: None,
                    },
                    now,
                )
                .await?;
        let mut event = Event::new(audit::AuditKind::Disclosure)
            .actor(Some(approver))
            .subject(Some(subject.id))
            .detail(Detail::Disclosure(id))
            .detail(Detail::Method(basis.as_str()))
            .detail(Detail::Reason(if request.notice_forbidden {
                "notice_forbidden_by_law"
            } else if notified {
                "subject_notified"
            } else {
                "subject_unreachable"
            }));
        for key in &key_text {
            event = event.detail(Detail::Category(key.clone()));
        }
        audit::record(&mut tx, &self.audit, event).await?;
        tx.commit().await.context("committing a disclosure")?;
        tracing::info!(disclosure_id = id, notified, "disclosure recorded");
        Ok(id)
    }

    /// Queues the subject's notice of `record` in `tx` and marks the record notified; false
    /// (nothing queued) for a closed or erased account, which receives mail no more.
    async fn notify(
        &self,
        tx: &mut store::Tx,
        policy: &covenant_core::policy::Policy,
        subject: &store::UserRow,
        record: &DisclosureRow,
        now: i64,
    ) -> Result<bool> {
        if subject.closed_at.is_some() || subject.email.trim().is_empty() {
            return Ok(false);
        }
        let names: Vec<String> = record
            .categories
            .split(' ')
            .filter(|k| !k.is_empty())
            .map(|k| {
                match CategoryKey::parse(k)
                    .ok()
                    .and_then(|key| policy.category(&key))
                {
                    Some(category) => format!("{} ({k})", category.name),
                    None => k.to_string(),
                }
            })
            .collect();
        let basis = LegalBasis::parse(&record.legal_basis)
            .map(LegalBasis::label)
            .unwrap_or("a legal request");
        Mail::disclosure_notice(
            &self.site_name,
            &subject.username,
            basis,
            &record.requesting_body,
            &record.reference,
            &names,
            &record.disclosed_on,
            &format!("{}/account/privacy", self.base_url),
        )
        .enqueue(
            &self.store,
            tx,
            &format!("disclosure:{}", record.id),
            &subject.email,
            Some(subject.id),
            now,
        )
        .await?;
        store::mark_disclosure_notified(tx, record.id, now).await?;
        Ok(true)
    }

    /// The law no longer forbids telling the subject of a disclosure (the gag expired or was
    /// lifted): the record joins their export and the notice is queued now, with an audit
    /// entry, in one transaction. `NotFound` if there is no such record with a standing gag.
    pub async fn lift_notice_ban(&self, actor: i64, disclosure_id: i64) -> Result<()> {
        let policy = self.policies.current().await?.policy.clone();
        let now = crate::now();
        let mut tx = self.store.begin().await?;
        let Some(record) = store::lift_disclosure_notice_ban(&mut tx, disclosure_id).await? else {
            return Err(Error::NotFound("disclosure kept from its subject"));
        };
        let subject = store::user_by_id_in(&self.store, &mut tx, record.subject_user_id)
            .await?
            .ok_or(Error::NotFound("member"))?;
        let notified = self
            .notify(&mut tx, &policy, &subject, &record, now)
            .await?;
        audit::record(
            &mut tx,
            &self.audit,
            Event::new(audit::AuditKind::DisclosureNoticeAllowed)
                .actor(Some(actor))
                .subject(Some(record.subject_user_id))
                .detail(Detail::Disclosure(record.id))
                .detail(Detail::Reason(if notified {
                    "subject_notified"
                } else {
                    "subject_unreachable"
                })),
        )
        .await?;
        tx.commit()
            .await
            .context("committing a disclosure's notice")?;
        tracing::info!(disclosure_id, notified, "disclosure notice allowed");
        Ok(())
    }

    /// Every disclosure, newest first, for privacy staff.
    pub async fn list(&self) -> Result<Vec<DisclosureRow>> {
        Ok(self.store.disclosures().await?)
    }
}
