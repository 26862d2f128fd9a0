//! Product news (promise F6): opt-in only, every choice kept as evidence (when, how, under which
//! policy version and text), a one-click unsubscribe token per member (RFC 8058), and
//! newsletters queued through the outbox under one idempotency key per newsletter and member.
//! Minors get product news only when a parent allowed it. It never logs an address.

use crate::error::{Error, Result};
use crate::mail::Mail;
use crate::store::{self, NewsChoice, Store, Tx};
use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The label of the opt-in checkbox (registration and account page); its hash is recorded with
/// each choice.
pub const NEWS_OPT_IN_TEXT: &str = "Send me occasional product news by email. You can leave \
    the list at any time with one click from any news email or from your account page.";

/// Anyone who may still be under this age, knowing the birth year, gets no product news
/// unless a parent allowed it (the same rule as the sale and sharing opt-out).
pub const NEWS_ADULT_AGE: i64 = 16;

/// How a news choice was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewsMethod {
    Registration,
    AccountPage,
    /// RFC 8058: the mail client posted `List-Unsubscribe=One-Click`.
    OneClick,
    /// The confirm button of the page the unsubscribe link opens.
    UnsubscribePage,
    /// A verified objection or withdrawal of consent (R9).
    PrivacyRequest,
}

impl NewsMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registration => "registration",
            Self::AccountPage => "account_page",
            Self::OneClick => "one_click",
            Self::UnsubscribePage => "unsubscribe_page",
            Self::PrivacyRequest => "privacy_request",
        }
    }
}

const SUBSCRIBER_BATCH: i64 = 500;

/// The product-news services.
#[derive(Clone)]
pub struct News {
    store: Store,
    base_url: String,
    site_name: String,
    key: Arc<Vec<u8>>,
}

type HmacSha256 = Hmac<Sha256>;

impl News {
    /// The key that signs unsubscribe tokens is kept in the database (`unsubscribe_key`), so
    /// every node shares it and tokens in old messages keep working after a restart.
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
        unsubscribe_token(&self.key, user_id)
    }

    pub fn token_user(&self, token: &str) -> Option<i64> {
        token_user(&self.key, token)
    }

    pub fn unsubscribe_url(&self, user_id: i64) -> String {
        format!(
            "{}/unsubscribe/{}",
            self.base_url,
            self.unsubscribe_token(user_id)
        )
    }

    /// Records a choice in the caller's transaction.
    pub async fn record_in(
        tx: &mut Tx,
        user_id: i64,
        subscribed: bool,
        method: NewsMethod,
        policy_version: &str,
        now: i64,
    ) -> Result<()> {
        store::insert_news_choice(
            tx,
            &NewsChoice {
                user_id,
                subscribed,
                method: method.as_str(),
                policy_version,
                text_hash: &sha256_hex(NEWS_OPT_IN_TEXT),
                now,
            },
        )
        .await?;
        Ok(())
    }

    /// Records a choice unless it is already the standing one (a second unsubscribe click
    /// adds nothing).
    pub async fn choose(
        &self,
        user_id: i64,
        subscribed: bool,
        method: NewsMethod,
        policy_version: &str,
    ) -> Result<()> {
        if self.is_subscribed(user_id).await? == subscribed {
            return Ok(());
        }
        let mut tx = self.store.begin().await?;
        Self::record_in(
            &mut tx,
            user_id,
            subscribed,
            method,
            policy_version,
            crate::now(),
        )
        .await?;
        tx.commit()
            .await
            .context("committing a product-news choice")?;
        tracing::info!(
            user_id,
            subscribed,
            method = method.as_str(),
            "product-news choice recorded"
        );
        Ok(())
    }

    /// Unsubscribes the member behind a token, without a session.
    pub async fn unsubscribe(
        &self,
        token: &str,
        method: NewsMethod,
        policy_version: &str,
    ) -> Result<()> {
        let user_id = self.token_user(token).ok_or(Error::InvalidToken)?;
        if self.store.age_facts_of(user_id).await?.is_none() {
            return Err(Error::InvalidToken);
        }
        self.choose(user_id, false, method, policy_version).await
    }

    pub async fn is_subscribed(&self, user_id: i64) -> Result<bool> {
        Ok(self
            .store
            .news_choice_of(user_id)
            .await?
            .is_some_and(|choice| choice.subscribed != 0))
    }

    /// Queues a newsletter to every current subscriber, in batches. Running it again with the
    /// same subject and body (after a crash, say) queues only what is missing: the newsletter
    /// is found by its digest and each message's key is `news:<newsletter>:<member>`.
    /// Returns the newsletter id and how many messages were newly queued.
    pub async fn send(&self, subject: &str, body: &str, now: i64) -> Result<(i64, usize)> {
        let subject = subject.trim();
        if subject.is_empty() {
            return Err(Error::invalid(crate::domain::InvalidField::new(
                "subject",
                "is required",
            )));
        }
        if body.trim().is_empty() {
            return Err(Error::invalid(crate::domain::InvalidField::new(
                "body",
                "is required",
            )));
        }
        let digest = sha256_hex(&format!("{subject}\n{body}"));
        let mut tx = self.store.begin().await?;
        let newsletter = store::newsletter_by_digest(&mut tx, &digest, subject, body, now).await?;
        tx.commit().await.context("committing a newsletter")?;
        let year = time::OffsetDateTime::from_unix_timestamp(now)
            .map(|t| i64::from(t.year()))
            .unwrap_or(i64::MAX);
        let mut after = 0;
        let mut queued = 0;
        loop {
            let batch = self
                .store
                .news_subscribers(after, SUBSCRIBER_BATCH, year, NEWS_ADULT_AGE)
                .await?;
            let Some(last) = batch.last() else {
                break;
            };
            after = last.user_id;
            let mut tx = self.store.begin().await?;
            for subscriber in &batch {
                let url = self.unsubscribe_url(subscriber.user_id);
                let mail = Mail {
                    subject: subject.to_string(),
                    body: format!(
                        "Hello {},\n\n{}\n\n--\nYou receive this because you asked for product \
                         news from {}. To stop, open this link (one click, no sign-in):\n{url}\n",
                        subscriber.username,
                        body.trim_end(),
                        self.site_name
                    ),
                };
                if mail
                    .enqueue_unsubscribable(
                        &self.store,
                        &mut tx,
                        &format!("news:{newsletter}:{}", subscriber.user_id),
                        &subscriber.email,
                        subscriber.user_id,
                        now,
                        &url,
                    )
                    .await?
                {
                    queued += 1;
                }
            }
            tx.commit().await.context("committing a newsletter batch")?;
        }
        tracing::info!(newsletter, queued, "newsletter queued");
        Ok((newsletter, queued))
    }
}

fn mac(key: &[u8], user_id: i64) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"unsubscribe:");
    mac.update(&user_id.to_be_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// A member's unsubscribe token: their id and an HMAC of it. It does not expire, as RFC 8058
/// links in old messages must keep working, and it can do nothing but unsubscribe.
pub fn unsubscribe_token(key: &[u8], user_id: i64) -> String {
    let mut bytes = user_id.to_be_bytes().to_vec();
    bytes.extend(mac(key, user_id));
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The member named by a genuine token.
pub fn token_user(key: &[u8], token: &str) -> Option<i64> {
    let bytes = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
    if bytes.len() != 8 + 32 {
        return None;
    }
    let user_id = i64::from_be_bytes(bytes[..8].try_into().ok()?);
    bool::from(mac(key, user_id).ct_eq(&bytes[8..])).then_some(user_id)
}

pub(crate) fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsubscribe_tokens_name_one_member_and_cannot_be_forged() {
        let token = unsubscribe_token(b"key one", 42);
        assert_eq!(token_user(b"key one", &token), Some(42));
        assert_eq!(token_user(b"key two", &token), None);
        let mut forged = URL_SAFE_NO_PAD.decode(&token).unwrap();
        forged[7] = 43;
        assert_eq!(
            token_user(b"key one", &URL_SAFE_NO_PAD.encode(forged)),
            None
        );
        assert_eq!(token_user(b"key one", "nonsense"), None);
    }
}
