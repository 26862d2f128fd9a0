//! What a verified privacy request does to the data: the privacy-request workflow's
//! [`crate::requests::Fulfilment`], carried out by this module's export and erasure. Deletion
//! erases the subject's account at once (public posts stay as "deleted user", as the policy
//! says); access and portability build the archive and give its single-use link in the
//! decision's message. Restriction, objection and withdrawal of consent take effect at once
//! through the purpose gate (R9). Other rights, and subjects without an account, go to
//! privacy staff.

use super::{ContentChoice, Fulfilment};
use crate::error::Error;
use crate::policy::Policies;
use crate::purpose::{Purpose, PurposeGate};
use crate::requests::{
    Fulfilment as Workflow, FulfilmentFuture, FulfilmentOutcome, VerifiedRequest,
};
use crate::store::{self, Tx};
use anyhow::Context;
use covenant_core::policy::Right;
use covenant_core::requests::VerificationLevel;

pub struct RequestEngine {
    fulfilment: Fulfilment,
    policies: Policies,
    gate: PurposeGate,
    base_url: String,
}

impl RequestEngine {
    pub fn new(
        fulfilment: Fulfilment,
        policies: Policies,
        gate: PurposeGate,
        base_url: &str,
    ) -> Self {
        Self {
            fulfilment,
            policies,
            gate,
            base_url: base_url.trim_end_matches('/').to_string(),
        }
    }

    async fn erase(&self, user_id: i64) -> anyhow::Result<FulfilmentOutcome> {
        let in_force = self.policies.current().await?;
        match self
            .fulfilment
            .erase_subject(
                &in_force.policy,
                user_id,
                ContentChoice::KeepAnonymized,
                None,
            )
            .await
        {
            Ok(report) if report.holds.is_empty() => Ok(FulfilmentOutcome::Delivered {
                note: kept_text(&report.kept),
            }),
            // A hold kept part: the answer lists what was kept and why, the hold included.
            Ok(report) => Ok(FulfilmentOutcome::PartlyDone {
                reason: kept_text(&report.kept),
            }),
            // Erased already (a repeated request, or a run cut short after the erasure).
            Err(Error::NotFound(_)) => Ok(FulfilmentOutcome::Done),
            Err(error) => Err(anyhow::Error::new(error).context("erasing a request's subject")),
        }
    }

    /// Erases a requester without an account: whatever the inventory links to the address.
    async fn erase_address(&self, request: &VerifiedRequest) -> anyhow::Result<FulfilmentOutcome> {
        let store = self.fulfilment.store();
        let submission = store
            .submission(request.submission_id())
            .await?
            .context("a request's submission vanished")?;
        let report = self
            .fulfilment
            .erase_address(&submission.subject_email, Some(request.id()))
            .await
            .map_err(|error| anyhow::Error::new(error).context("erasing by address"))?;
        let mut text = String::from("What we held under your address is erased.");
        text.push_str(" We kept only:");
        for item in &report.kept {
            text.push_str(&format!("\n- {}: {}", item.what, item.why));
        }
        Ok(if report.holds.is_empty() {
            FulfilmentOutcome::Delivered { note: text }
        } else {
            FulfilmentOutcome::PartlyDone { reason: text }
        })
    }

    /// Restricts the subject's processing to storage (R9) until staff or the subject lift it,
    /// in the transaction that verified the request.
    async fn restrict(
        &self,
        tx: &mut Tx,
        request: &VerifiedRequest,
        user_id: i64,
    ) -> anyhow::Result<FulfilmentOutcome> {
        self.gate.restrict(tx, user_id, Some(request.id())).await?;
        Ok(FulfilmentOutcome::Delivered {
            note: "Processing of your data is restricted: we only store it. You get no more \
                   news, digests or notices, nothing of yours is counted in statistics, and \
                   others see only your public posts. You can lift the restriction from your \
                   privacy page, or ask us to."
                .to_string(),
        })
    }

    /// Stops what an objection or a withdrawal of consent names (R9), in the transaction that
    /// verified the request.
    async fn stop(
        &self,
        tx: &mut Tx,
        request: &VerifiedRequest,
        user_id: i64,
    ) -> anyhow::Result<FulfilmentOutcome> {
        let in_force = self.policies.current().await?;
        let note = self
            .gate
            .stop(
                tx,
                user_id,
                Purpose::stopped_by(request.right()),
                &in_force.policy,
                request.id(),
            )
            .await?;
        Ok(FulfilmentOutcome::Delivered { note })
    }

    /// Answers an access request verified by the emailed code alone with the categories held.
    async fn summarize(
        &self,
        request: &VerifiedRequest,
        user_id: i64,
    ) -> anyhow::Result<FulfilmentOutcome> {
        let in_force = self.policies.current().await?;
        let summary = super::export::categories_summary(
            self.fulfilment.store(),
            &in_force.policy,
            user_id,
            request.jurisdiction(),
        )
        .await
        .map_err(|error| anyhow::Error::new(error).context("summarizing a request's subject"))?;
        Ok(FulfilmentOutcome::Delivered {
            note: format!(
                "{summary}\nFor a copy of the data itself, ask for access to specific pieces of \
                 data (we then ask one more fact only you would know, or you sign in)."
            ),
        })
    }

    async fn export(
        &self,
        request: &VerifiedRequest,
        user_id: i64,
    ) -> anyhow::Result<FulfilmentOutcome> {
        let in_force = self.policies.current().await?;
        let link = self
            .fulfilment
            .export_subject(
                &in_force.policy,
                in_force.version.as_ref().map(|v| v.label.as_str()),
                user_id,
                request.jurisdiction(),
                None,
            )
            .await
            .map_err(|error| anyhow::Error::new(error).context("exporting a request's subject"))?;
        let until = time::OffsetDateTime::from_unix_timestamp(link.expires_at)
            .map(|at| at.date().to_string())
            .unwrap_or_default();
        Ok(FulfilmentOutcome::Delivered {
            note: format!(
                "Your data is ready: a ZIP archive with JSON and CSV files and a README. The link \
                 works once, until {until}: {}{}",
                self.base_url, link.path
            ),
        })
    }
}

/// What the erasure kept and why, in the words the answer to the requester carries.
fn kept_text(kept: &[super::Kept]) -> String {
    let mut text = String::from("Your account and your personal data are erased.");
    if !kept.is_empty() {
        text.push_str(" We kept only:");
        for item in kept {
            text.push_str(&format!("\n- {}: {}", item.what, item.why));
        }
    }
    text
}

impl Workflow for RequestEngine {
    fn carry_out<'a>(
        &'a self,
        tx: &'a mut Tx,
        request: &'a VerifiedRequest,
    ) -> FulfilmentFuture<'a> {
        Box::pin(async move {
            store::mark_handed_to_fulfilment(tx, request.id(), crate::now()).await?;
            // Restriction, objection and withdrawal of consent protect the subject and can be
            // undone: they take effect with the verification itself, review or not (R9).
            match (request.right(), request.subject_user_id()) {
                (Right::Restriction, Some(user_id)) => self.restrict(tx, request, user_id).await,
                (
                    Right::Objection | Right::ObjectDirectMarketing | Right::WithdrawConsent,
                    Some(user_id),
                ) => self.stop(tx, request, user_id).await,
                _ => Ok(FulfilmentOutcome::HandedOver),
            }
        })
    }

    fn complete<'a>(&'a self, request: &'a VerifiedRequest) -> FulfilmentFuture<'a> {
        Box::pin(async move {
            let Some(user_id) = request.subject_user_id() else {
                return match request.right() {
                    Right::Deletion => self.erase_address(request).await,
                    _ => Ok(FulfilmentOutcome::HandedOver),
                };
            };
            match request.right() {
                Right::Deletion => self.erase(user_id).await,
                // The data itself goes only to a requester verified at the higher level
                // (R3); the code alone earns the categories.
                Right::Access
                    if !request
                        .level()
                        .satisfies(VerificationLevel::EmailCodePlusFact) =>
                {
                    self.summarize(request, user_id).await
                }
                Right::Access | Right::Portability => self.export(request, user_id).await,
                _ => Ok(FulfilmentOutcome::HandedOver),
            }
        })
    }
}
