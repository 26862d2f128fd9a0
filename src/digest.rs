//! The digest of followed topics (promise F6): members follow topics, ask for a digest with an
//! unticked box (each choice kept as evidence, like product news), and the digest job queues
//! at most one message per member and UTC day listing the followed topics with new replies
//! from others. It sends nothing to anyone who did not ask, carries a one-click unsubscribe
//! (RFC 8058) of its own, and never logs an address or a topic a member follows.

use crate::error::{Error, Result};
use crate::mail::Mail;
use crate::store::{self, DigestChoice, Store};
use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The label of the digest checkbox on the account page; its hash is recorded with each choice.
pub const DIGEST_OPT_IN_TEXT: &str = "Send me a digest of new replies in topics I follow";

/// A digest covers one UTC day at most: one message per member and day.
pub const DIGEST_PERIOD_SECONDS: i64 = 86_400;

/// How often the scheduled job looks for due digests.
pub const DIGEST_JOB_SECONDS: u64 = 900;

const RECIPIENT_BATCH: i64 = 200;

/// How a digest choice was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestMethod {
    AccountPage,
    /// RFC 8058: the mail client posted `List-Unsubscribe=One-Click`.
    OneClick,
    /// The confirm button of the page the unsubscribe link opens.
    UnsubscribePage,
    /// A verified objection or withdrawal of consent (R9).
    PrivacyRequest,
}

impl DigestMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccountPage => "account_page",
            Self::OneClick => "one_click",
            Self::UnsubscribePage => "unsubscribe_page",
            Self::PrivacyRequest => "privacy_request",
        }
    }
}

/// Follows, digest choices and the digest job.
#[derive(Clone)]
pub struct Digest {
    store: Store,
    base_url: String,
    site_name: String,
    key: Arc<Vec<u8>>,
}

type HmacSha256 = Hmac<Sha256>;

impl Digest {
    /// Shares the product-news key (`unsubscribe_key`), under a label of its own, so a digest
    /// link cannot end a news subscription nor the reverse.
    pub async fn open(store: Store, config: &crate::config::Config) -> anyhow::Result<Self> {
        let key = store
            .setting_or_insert("unsubscribe_key", &crate::accounts::random_token())
            .await?;
        Ok(Self {
            store,
            base_url: config.base_url().to_string(),
            site_name: config.site_name.clone(),
            key: Arc::new(key.into_bytes()),
        })
    }

    pub fn unsubscribe_token(&self, user_id: i64) -> String {
        let mut bytes = user_id.to_be_bytes().to_vec();
        bytes.extend(mac(&self.key, user_id));
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The member named by a genuine digest token.
    pub fn token_user(&self, token: &str) -> Option<i64> {
        let bytes = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
        if bytes.len() != 8 + 32 {
            return None;
        }
        let user_id = i64::from_be_bytes(bytes[..8].try_into().ok()?);
        bool::from(mac(&self.key, user_id).ct_eq(&bytes[8..])).then_some(user_id)
    }

    pub fn unsubscribe_url(&self, user_id: i64) -> String {
        format!(
            "{}/digest/unsubscribe/{}",
            self.base_url,
            self.unsubscribe_token(user_id)
        )
    }

    pub async fn follow(&self, user_id: i64, topic_id: i64) -> Result<()> {
        self.store
            .follow_topic(user_id, topic_id, crate::now())
            .await?;
        Ok(())
    }

    pub async fn unfollow(&self, user_id: i64, topic_id: i64) -> Result<()> {
        self.store.unfollow_topic(user_id, topic_id).await?;
        Ok(())
    }

    pub async fn follows(&self, user_id: i64, topic_id: i64) -> Result<bool> {
        Ok(self.store.follows_topic(user_id, topic_id).await?)
    }

    /// The standing choice: `Some(since)` while the member asked for the digest.
    pub async fn subscribed_since(&self, user_id: i64) -> Result<Option<i64>> {
        Ok(self
            .store
            .digest_choice_of(user_id)
            .await?
            .filter(|choice| choice.subscribed != 0)
            .map(|choice| choice.recorded_at))
    }

    /// Records a choice unless it is already the standing one.
    pub async fn choose(
        &self,
        user_id: i64,
        subscribed: bool,
        method: DigestMethod,
        policy_version: &str,
    ) -> Result<()> {
        if self.subscribed_since(user_id).await?.is_some() == subscribed {
            return Ok(());
        }
        let mut tx = self.store.begin().await?;
        store::insert_digest_choice(
            &mut tx,
            &DigestChoice {
                user_id,
                subscribed,
                method: method.as_str(),
                policy_version,
                text_hash: &crate::news::sha256_hex(DIGEST_OPT_IN_TEXT),
                now: crate::now(),
            },
        )
        .await?;
        tx.commit().await.context("committing a digest choice")?;
        tracing::info!(
            user_id,
            subscribed,
            method = method.as_str(),
            "digest choice recorded"
        );
        Ok(())
    }

    /// Turns the digest off for the member behind a token, without a session.
    pub async fn unsubscribe(
        &self,
        token: &str,
        method: DigestMethod,
        policy_version: &str,
    ) -> Result<()> {
        let user_id = self.token_user(token).ok_or(Error::InvalidToken)?;
        if self.store.age_facts_of(user_id).await?.is_none() {
            return Err(Error::InvalidToken);
        }
        self.choose(user_id, false, method, policy_version).await
    }

    /// Queues the digests due at `now`: for each member whose standing choice asks for it,
    /// one message for the day of `now` if followed topics got replies from others since their
    /// last digest. A second run the same day queues nothing for those already sent. Returns
    /// how many were queued.
    pub async fn send_due(&self, now: i64) -> Result<usize> {
        let period = now.div_euclid(DIGEST_PERIOD_SECONDS);
        let mut after = 0;
        let mut queued = 0;
        loop {
            let batch = self.store.digest_recipients(after, RECIPIENT_BATCH).await?;
            let Some(last) = batch.last() else {
                break;
            };
            after = last.user_id;
            for recipient in &batch {
                let from_post = self.store.last_digest_post(recipient.user_id).await?;
                let topics = self
                    .store
                    .digest_topics(recipient.user_id, from_post, recipient.subscribed_at, now)
                    .await?;
                let Some(up_to) = topics.iter().map(|t| t.last_post_id).max() else {
                    continue;
                };
                let mut tx = self.store.begin().await?;
                if !store::claim_digest_period(&mut tx, recipient.user_id, period, up_to, now)
                    .await?
                {
                    continue;
                }
                let url = self.unsubscribe_url(recipient.user_id);
                let mail = Mail {
                    subject: format!("New replies in topics you follow on {}", self.site_name),
                    body: self.body(&recipient.username, &topics, &url),
                };
                mail.enqueue_unsubscribable(
                    &self.store,
                    &mut tx,
                    &format!("digest:{}:{period}", recipient.user_id),
                    &recipient.email,
                    recipient.user_id,
                    now,
                    &url,
                )
                .await?;
                tx.commit().await.context("committing a digest")?;
                queued += 1;
            }
        }
        if queued > 0 {
            tracing::info!(queued, "digests queued");
        }
        Ok(queued)
    }

    fn body(&self, username: &str, topics: &[store::DigestTopic], url: &str) -> String {
        let mut body = format!("Hello {username},\n\nNew replies in topics you follow:\n\n");
        for topic in topics {
            let replies = if topic.n_replies == 1 {
                "1 new reply".to_string()
            } else {
                format!("{} new replies", topic.n_replies)
            };
            body.push_str(&format!(
                "- {} ({replies})\n  {}/t/{}/{}\n",
                topic.title, self.base_url, topic.slug, topic.topic_id
            ));
        }
        body.push_str(&format!(
            "\n--\nYou receive this because you asked {} for a digest of the topics you \
             follow. To stop, open this link (one click, no sign-in):\n{url}\n",
            self.site_name
        ));
        body
    }

    /// The scheduled job: runs `send_due` every `DIGEST_JOB_SECONDS` until shutdown.
    pub async fn run(
        self,
        mailer: crate::mail::Mailer,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let every = std::time::Duration::from_secs(DIGEST_JOB_SECONDS);
        loop {
            match self.send_due(crate::now()).await {
                Ok(0) => {}
                Ok(_) => mailer.wake(),
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), "the digest job failed")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }
}

fn mac(key: &[u8], user_id: i64) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"digest-unsubscribe:");
    mac.update(&user_id.to_be_bytes());
    mac.finalize().into_bytes().to_vec()
}
