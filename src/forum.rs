//! The forum's actions: topics, replies, blog articles and comments, edits, deletions and
//! moderation, with who may do what. Reading goes straight to the store; who may see a held
//! post or topic is decided here ([`may_see_post`], [`may_see_topic`]).
//!
//! New posts and edits pass the spam and unsafe-link check ([`crate::spam`]); a post it flags
//! is saved but held, seen only by its author and moderators until a moderator releases or
//! hides it. Nothing is removed by the check alone.

use crate::accounts::Origin;
use crate::audit::{self, AuditKey, AuditKind, Detail, Event};
use crate::domain::{PostBody, Role, TopicTitle, slugify};
use crate::error::{Error, Result};
use crate::markdown;
use crate::spam::{HoldReason, SpamFilter};
use crate::store::{self, NewPost, PostRow, SessionUser, Store, TopicRow, Tx};
use anyhow::Context;

pub const TOPICS_PER_PAGE: i64 = 30;
pub const POSTS_PER_PAGE: i64 = 20;

/// The signed-in member acting, as far as the forum cares.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: i64,
    pub role: Role,
    pub email_verified: bool,
    /// Whether the account has 2-step verification on.
    pub two_factor: bool,
    /// A minor whose parent has not consented yet (promise M1).
    pub awaiting_parent: bool,
}

impl From<&SessionUser> for Actor {
    fn from(user: &SessionUser) -> Self {
        Self {
            user_id: user.user_id,
            role: Role::parse(&user.role).unwrap_or(Role::Member),
            email_verified: user.email_verified_at.is_some(),
            two_factor: user.two_factor != 0,
            awaiting_parent: user.parent_consent_needed != 0 && user.parent_consented_at.is_none(),
        }
    }
}

impl Actor {
    /// Staff actions need a staff role and 2-step verification on the account.
    pub fn require_staff(&self) -> Result<()> {
        if !self.role.can_moderate() {
            return Err(Error::Forbidden);
        }
        if !self.two_factor {
            return Err(Error::SecondFactorEnrolmentRequired);
        }
        Ok(())
    }

    /// Privacy-request staff actions: a privacy officer or administrator with 2-step
    /// verification on.
    pub fn require_privacy_staff(&self) -> Result<()> {
        if !self.role.handles_privacy_requests() {
            return Err(Error::Forbidden);
        }
        if !self.two_factor {
            return Err(Error::SecondFactorEnrolmentRequired);
        }
        Ok(())
    }

    /// Whether staff powers apply to what this actor sees (hidden posts and such).
    pub fn acts_as_staff(&self) -> bool {
        self.require_staff().is_ok()
    }

    fn may_post(&self) -> Result<()> {
        if self.awaiting_parent {
            return Err(Error::ParentalConsentPending);
        }
        if self.email_verified {
            Ok(())
        } else {
            Err(Error::EmailNotVerified)
        }
    }
}

#[derive(Clone)]
pub struct Forum {
    store: Store,
    audit: AuditKey,
    filter: SpamFilter,
}

/// Where a new post landed.
#[derive(Debug, Clone, Copy)]
pub struct PostPlace {
    pub topic_id: i64,
    pub post_id: i64,
    pub post_number: i64,
    /// The post waits for a moderator (and, for a new topic, so does the topic).
    pub held: bool,
}

/// A moderator's decision on a held post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldDecision {
    /// The post shows to everyone.
    Release,
    /// The post is hidden, as a moderator hides any post.
    Hide,
}

/// Whether the viewer (`None`: a visitor) may see a post at all: a held post only by its author
/// and by moderators. Hidden and deleted posts keep their place, with a notice instead of text.
pub fn may_see_post(post: &PostRow, viewer: Option<&Actor>) -> bool {
    post.held_at.is_none()
        || viewer.is_some_and(|actor| actor.user_id == post.user_id || actor.acts_as_staff())
}

/// Whether the viewer may open a topic: an unlisted one (its opening post held, or hidden from
/// the queue) only by its author and by moderators.
pub fn may_see_topic(topic: &TopicRow, viewer: Option<&Actor>) -> bool {
    topic.hidden == 0
        || viewer.is_some_and(|actor| actor.user_id == topic.user_id || actor.acts_as_staff())
}

impl Forum {
    pub fn new(store: Store, audit: AuditKey, filter: SpamFilter) -> Self {
        Self {
            store,
            audit,
            filter,
        }
    }

    /// Records that the check held a post: the system acted, on the author's post, for a
    /// reason from a fixed list.
    async fn record_hold(
        &self,
        tx: &mut Tx,
        post_id: i64,
        author_id: i64,
        reason: HoldReason,
    ) -> Result<()> {
        let event = Event::new(AuditKind::PostHeld)
            .subject(Some(author_id))
            .detail(Detail::Post(post_id))
            .detail(Detail::Reason(reason.as_str()));
        audit::record(tx, &self.audit, event).await?;
        Ok(())
    }

    /// Opens a discussion in a category with its first post.
    pub async fn create_topic(
        &self,
        actor: &Actor,
        category_slug: &str,
        title: &str,
        body: &str,
        origin: &Origin,
    ) -> Result<PostPlace> {
        actor.may_post()?;
        let (title, body) = parse_title_and_body(title, body)?;
        let category = self
            .store
            .category_by_slug(category_slug)
            .await?
            .ok_or_else(|| {
                Error::invalid(crate::domain::InvalidField::new(
                    "category",
                    "does not exist",
                ))
            })?;
        self.insert_topic_with_post(
            actor,
            "discussion",
            Some(category.id),
            &title,
            &title.slug(),
            &body,
            origin,
        )
        .await
    }

    /// Publishes a blog article; staff only. Its slug is unique among articles.
    pub async fn create_article(
        &self,
        actor: &Actor,
        title: &str,
        body: &str,
        origin: &Origin,
    ) -> Result<(PostPlace, String)> {
        actor.require_staff()?;
        let (title, body) = parse_title_and_body(title, body)?;
        let base = title.slug();
        for attempt in 0..20 {
            let slug = if attempt == 0 {
                base.clone()
            } else {
                format!("{base}-{}", attempt + 1)
            };
            if self.store.blog_topic_by_slug(&slug).await?.is_some() {
                continue;
            }
            match self
                .insert_topic_with_post(actor, "blog", None, &title, &slug, &body, origin)
                .await
            {
                Err(Error::Conflict { .. }) => continue,
                placed => return placed.map(|place| (place, slug)),
            }
        }
        Err(Error::Conflict { field: "title" })
    }

    #[allow(clippy::too_many_arguments)]
    async fn insert_topic_with_post(
        &self,
        actor: &Actor,
        kind: &str,
        category_id: Option<i64>,
        title: &TopicTitle,
        slug: &str,
        body: &PostBody,
        origin: &Origin,
    ) -> Result<PostPlace> {
        let now = crate::now();
        let html = markdown::render(body.as_str());
        let held = self.filter.check(body.as_str(), &html);
        let mut tx = self.store.begin().await?;
        let topic_id = store::insert_topic(
            &mut tx,
            kind,
            category_id,
            actor.user_id,
            title.as_str(),
            slug,
            now,
        )
        .await?;
        let (post_id, post_number) = store::insert_post(
            &self.store,
            &mut tx,
            &NewPost {
                topic_id,
                user_id: actor.user_id,
                body_md: body.as_str(),
                body_html: &html,
                now,
                ip: origin.ip.expose(),
                user_agent: origin.user_agent.expose(),
                held_reason: held.map(HoldReason::as_str),
            },
        )
        .await?;
        if let Some(reason) = held {
            // The title is the opening post's too: the topic stays unlisted with it.
            store::set_topic_hidden(&mut tx, topic_id, true).await?;
            self.record_hold(&mut tx, post_id, actor.user_id, reason)
                .await?;
        }
        tx.commit().await.context("committing a new topic")?;
        tracing::info!(
            topic_id,
            user_id = actor.user_id,
            kind,
            held = held.is_some(),
            "topic created"
        );
        Ok(PostPlace {
            topic_id,
            post_id,
            post_number,
            held: held.is_some(),
        })
    }

    /// Replies to a topic (a comment, on a blog article).
    pub async fn reply(
        &self,
        actor: &Actor,
        topic_id: i64,
        body: &str,
        origin: &Origin,
    ) -> Result<PostPlace> {
        actor.may_post()?;
        let body = PostBody::parse(body)?;
        let topic = self.visible_topic(topic_id, actor).await?;
        let now = crate::now();
        let html = markdown::render(body.as_str());
        let held = self.filter.check(body.as_str(), &html);
        let mut tx = self.store.begin().await?;
        let (post_id, post_number) = store::insert_post(
            &self.store,
            &mut tx,
            &NewPost {
                topic_id: topic.id,
                user_id: actor.user_id,
                body_md: body.as_str(),
                body_html: &html,
                now,
                ip: origin.ip.expose(),
                user_agent: origin.user_agent.expose(),
                held_reason: held.map(HoldReason::as_str),
            },
        )
        .await?;
        if let Some(reason) = held {
            self.record_hold(&mut tx, post_id, actor.user_id, reason)
                .await?;
        }
        tx.commit().await.context("committing a reply")?;
        tracing::info!(
            topic_id,
            post_id,
            user_id = actor.user_id,
            held = held.is_some(),
            "reply posted"
        );
        Ok(PostPlace {
            topic_id,
            post_id,
            post_number,
            held: held.is_some(),
        })
    }

    /// Replaces the text of one's own post.
    pub async fn edit(&self, actor: &Actor, post_id: i64, body: &str) -> Result<PostRow> {
        let body = PostBody::parse(body)?;
        let post = self.own_live_post(actor, post_id).await?;
        let html = markdown::render(body.as_str());
        // A post a moderator hid is out of sight already, and a moderator has decided on it.
        let held = match post.hidden_at {
            None => self.filter.check(body.as_str(), &html),
            Some(_) => None,
        };
        let mut tx = self.store.begin().await?;
        let now = crate::now();
        store::update_post_body(
            &mut tx,
            post.id,
            body.as_str(),
            &html,
            now,
            held.map(HoldReason::as_str),
        )
        .await?;
        if let Some(reason) = held
            && post.held_at.is_none()
        {
            self.record_hold(&mut tx, post.id, actor.user_id, reason)
                .await?;
        }
        tx.commit().await.context("committing an edit")?;
        tracing::info!(
            post_id,
            user_id = actor.user_id,
            held = held.is_some(),
            "post edited"
        );
        self.store
            .post_by_id(post_id)
            .await?
            .ok_or(Error::NotFound("post"))
    }

    /// Deletes the content of one's own post.
    pub async fn delete(&self, actor: &Actor, post_id: i64) -> Result<PostRow> {
        let post = self.own_live_post(actor, post_id).await?;
        let mut tx = self.store.begin().await?;
        store::delete_post_content(&mut tx, post.id, crate::now()).await?;
        tx.commit().await.context("committing a deletion")?;
        tracing::info!(
            post_id,
            user_id = actor.user_id,
            "post deleted by its author"
        );
        Ok(post)
    }

    /// Hides or shows a post; moderators only. For a held post, hiding or showing it is the
    /// decision on its hold ([`Forum::decide_held`]).
    pub async fn set_hidden(&self, actor: &Actor, post_id: i64, hidden: bool) -> Result<PostRow> {
        actor.require_staff()?;
        let post = self
            .store
            .post_by_id(post_id)
            .await?
            .ok_or(Error::NotFound("post"))?;
        if post.held_at.is_some() {
            let decision = if hidden {
                HeldDecision::Hide
            } else {
                HeldDecision::Release
            };
            return self.decide_held(actor, post_id, decision).await;
        }
        let mut tx = self.store.begin().await?;
        let (at, by) = if hidden {
            (Some(crate::now()), Some(actor.user_id))
        } else {
            (None, None)
        };
        store::set_post_hidden(&mut tx, post.id, at, by).await?;
        if !hidden && post.post_number == 1 {
            // Showing an opening post hidden from the queue lists its topic again.
            store::set_topic_hidden(&mut tx, post.topic_id, false).await?;
        }
        let kind = if hidden {
            AuditKind::PostHidden
        } else {
            AuditKind::PostUnhidden
        };
        let event = Event::new(kind)
            .actor(Some(actor.user_id))
            .subject(Some(post.user_id))
            .detail(Detail::Post(post.id));
        audit::record(&mut tx, &self.audit, event).await?;
        tx.commit().await.context("committing a moderation")?;
        tracing::info!(
            post_id,
            moderator_id = actor.user_id,
            hidden,
            "post moderated"
        );
        Ok(post)
    }

    /// A moderator's decision on a post the check held: release it, or hide it. Only one
    /// decision is taken on a hold: when another moderator decided first, the post is no longer
    /// held and this one is refused as not found.
    pub async fn decide_held(
        &self,
        actor: &Actor,
        post_id: i64,
        decision: HeldDecision,
    ) -> Result<PostRow> {
        actor.require_staff()?;
        let post = self
            .store
            .post_by_id(post_id)
            .await?
            .ok_or(Error::NotFound("held post"))?;
        let mut tx = self.store.begin().await?;
        let decided = match decision {
            HeldDecision::Release => store::release_held_post(&mut tx, post.id).await?,
            HeldDecision::Hide => {
                store::hide_held_post(&mut tx, post.id, crate::now(), actor.user_id).await?
            }
        };
        if !decided {
            return Err(Error::NotFound("held post"));
        }
        if decision == HeldDecision::Release && post.post_number == 1 {
            // A new topic waited with its opening post; a topic whose opening post is hidden
            // from the queue stays unlisted.
            store::set_topic_hidden(&mut tx, post.topic_id, false).await?;
        }
        let kind = match decision {
            HeldDecision::Release => AuditKind::HeldPostReleased,
            HeldDecision::Hide => AuditKind::HeldPostHidden,
        };
        let event = Event::new(kind)
            .actor(Some(actor.user_id))
            .subject(Some(post.user_id))
            .detail(Detail::Post(post.id));
        audit::record(&mut tx, &self.audit, event).await?;
        tx.commit()
            .await
            .context("committing a decision on a held post")?;
        tracing::info!(
            post_id,
            moderator_id = actor.user_id,
            ?decision,
            "held post decided"
        );
        Ok(post)
    }

    async fn visible_topic(&self, topic_id: i64, _actor: &Actor) -> Result<TopicRow> {
        match self.store.topic_by_id(topic_id).await? {
            Some(topic) if topic.hidden == 0 => Ok(topic),
            _ => Err(Error::NotFound("topic")),
        }
    }

    async fn own_live_post(&self, actor: &Actor, post_id: i64) -> Result<PostRow> {
        let post = self
            .store
            .post_by_id(post_id)
            .await?
            .ok_or(Error::NotFound("post"))?;
        if post.deleted_at.is_some() {
            return Err(Error::NotFound("post"));
        }
        if post.user_id != actor.user_id {
            return Err(Error::Forbidden);
        }
        Ok(post)
    }
}

fn parse_title_and_body(title: &str, body: &str) -> Result<(TopicTitle, PostBody)> {
    let title = TopicTitle::parse(title);
    let body = PostBody::parse(body);
    match (title, body) {
        (Ok(title), Ok(body)) => Ok((title, body)),
        (title, body) => Err(Error::Invalid(
            [title.err(), body.err()].into_iter().flatten().collect(),
        )),
    }
}

/// The slug shown in a topic's URL; kept for callers that only have the title.
pub fn topic_slug(title: &str) -> String {
    slugify(title)
}

/// How many pages `total` items make at `per_page` a page (at least one).
pub fn page_count(total: i64, per_page: i64) -> i64 {
    ((total + per_page - 1) / per_page).max(1)
}
