//! Feedback and support messages (promise F6): a member writes one with two unticked boxes,
//! "you may publish this" and "you may show my username"; staff can publish only what the
//! sender agreed to, and the public page shows the author only when they agreed to that too.

use crate::audit::{self, AuditKey, AuditKind, Detail, Event};
use crate::domain::{InvalidField, PostBody};
use crate::error::{Error, Result};
use crate::forum::Actor;
use crate::store::{self, FeedbackRow, Store};
use anyhow::Context;

/// The two boxes' labels, as the form shows them.
pub const MAY_PUBLISH_TEXT: &str = "You may publish this message on the forum's feedback page.";
pub const MAY_NAME_TEXT: &str = "You may show my username with it.";

/// A message as the public page shows it: the author only with their agreement.
pub struct PublishedFeedback {
    pub author: Option<String>,
    pub body: String,
    pub published_at: i64,
}

#[derive(Clone)]
pub struct Feedback {
    store: Store,
    audit: AuditKey,
}

impl Feedback {
    pub fn new(store: Store, audit: AuditKey) -> Self {
        Self { store, audit }
    }

    pub async fn submit(
        &self,
        actor: &Actor,
        body: &str,
        may_publish: bool,
        may_name: bool,
    ) -> Result<i64> {
        let body = PostBody::parse(body)?;
        let mut tx = self.store.begin().await?;
        let id = store::insert_feedback(
            &mut tx,
            actor.user_id,
            body.as_str(),
            may_publish,
            // Naming the author means nothing for a message that stays private.
            may_publish && may_name,
            crate::now(),
        )
        .await?;
        tx.commit().await.context("committing feedback")?;
        tracing::info!(feedback_id = id, may_publish, "feedback received");
        Ok(id)
    }

    /// Publishes a message; refused unless the sender agreed.
    pub async fn publish(&self, actor: &Actor, id: i64) -> Result<()> {
        actor.require_staff()?;
        let row = self
            .store
            .feedback_by_id(id)
            .await?
            .ok_or(Error::NotFound("feedback"))?;
        if row.may_publish == 0 {
            return Err(Error::invalid(InvalidField::new(
                "feedback",
                "its sender did not agree to publication",
            )));
        }
        let mut tx = self.store.begin().await?;
        if !store::publish_feedback(&mut tx, id, actor.user_id, crate::now()).await? {
            tx.rollback().await.context("rolling back a publication")?;
            return Err(Error::Conflict {
                field: "publication",
            });
        }
        audit::record(
            &mut tx,
            &self.audit,
            Event::new(AuditKind::FeedbackPublished)
                .actor(Some(actor.user_id))
                .detail(Detail::Feedback(id)),
        )
        .await?;
        tx.commit().await.context("committing a publication")?;
        Ok(())
    }

    pub async fn for_staff(&self, actor: &Actor) -> Result<Vec<FeedbackRow>> {
        actor.require_staff()?;
        Ok(self.store.feedback_list(false, 200).await?)
    }

    pub async fn published(&self) -> Result<Vec<PublishedFeedback>> {
        Ok(self
            .store
            .feedback_list(true, 200)
            .await?
            .into_iter()
            .map(|row| PublishedFeedback {
                author: (row.may_name != 0).then_some(row.username),
                body: row.body,
                published_at: row.published_at.unwrap_or(row.created_at),
            })
            .collect())
    }
}
