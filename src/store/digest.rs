//! Followed topics, digest choices and the digests sent (promise F6).

use super::purpose::NOT_RESTRICTED;
use super::{Store, Tx};
use anyhow::Context;
use sqlx::FromRow;

/// One row of digest-choice evidence.
pub struct DigestChoice<'a> {
    pub user_id: i64,
    pub subscribed: bool,
    pub method: &'a str,
    pub policy_version: &'a str,
    pub text_hash: &'a str,
    pub now: i64,
}

/// A member's standing digest choice, as last recorded.
#[derive(Debug, Clone, FromRow)]
pub struct DigestChoiceRow {
    pub subscribed: i64,
    pub recorded_at: i64,
}

/// A member who asked for the digest, with the time of that choice.
#[derive(Debug, Clone, FromRow)]
pub struct DigestRecipient {
    pub user_id: i64,
    pub username: String,
    pub email: String,
    pub subscribed_at: i64,
}

/// A followed topic with new replies for one member.
#[derive(Debug, Clone, FromRow)]
pub struct DigestTopic {
    pub topic_id: i64,
    pub title: String,
    pub slug: String,
    pub n_replies: i64,
    pub last_post_id: i64,
}

pub async fn insert_digest_choice(tx: &mut Tx, choice: &DigestChoice<'_>) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO digest_subscriptions (user_id, subscribed, method, policy_version, \
         text_hash, recorded_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(choice.user_id)
    .bind(i64::from(choice.subscribed))
    .bind(choice.method)
    .bind(choice.policy_version)
    .bind(choice.text_hash)
    .bind(choice.now)
    .execute(&mut **tx)
    .await
    .context("recording a digest choice")?;
    Ok(())
}

/// Claims the member's digest of `period`: false when one was already sent (by this run
/// before a crash, or by another node), so nothing is sent twice.
pub async fn claim_digest_period(
    tx: &mut Tx,
    user_id: i64,
    period: i64,
    up_to_post_id: i64,
    now: i64,
) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO digest_sends (user_id, period, up_to_post_id, sent_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, period) DO NOTHING",
    )
    .bind(user_id)
    .bind(period)
    .bind(up_to_post_id)
    .bind(now)
    .execute(&mut **tx)
    .await
    .context("claiming a digest period")?;
    Ok(done.rows_affected() == 1)
}

impl Store {
    pub async fn follow_topic(&self, user_id: i64, topic_id: i64, now: i64) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO topic_follows (user_id, topic_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, topic_id) DO NOTHING",
        )
        .bind(user_id)
        .bind(topic_id)
        .bind(now)
        .execute(self.pool())
        .await
        .context("following a topic")?;
        Ok(())
    }

    pub async fn unfollow_topic(&self, user_id: i64, topic_id: i64) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM topic_follows WHERE user_id = $1 AND topic_id = $2")
            .bind(user_id)
            .bind(topic_id)
            .execute(self.pool())
            .await
            .context("unfollowing a topic")?;
        Ok(())
    }

    pub async fn follows_topic(&self, user_id: i64, topic_id: i64) -> anyhow::Result<bool> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT topic_id FROM topic_follows WHERE user_id = $1 AND topic_id = $2",
        )
        .bind(user_id)
        .bind(topic_id)
        .fetch_optional(self.pool())
        .await
        .context("reading whether a member follows a topic")?;
        Ok(row.is_some())
    }

    pub async fn digest_choice_of(&self, user_id: i64) -> anyhow::Result<Option<DigestChoiceRow>> {
        sqlx::query_as(
            "SELECT subscribed, recorded_at FROM digest_subscriptions \
             WHERE user_id = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(user_id)
        .fetch_optional(self.pool())
        .await
        .context("reading a member's digest choice")
    }

    /// Members of open accounts with an id above `after` whose latest digest choice is
    /// subscribed, in id order. A member with no choice is never listed.
    pub async fn digest_recipients(
        &self,
        after: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<DigestRecipient>> {
        let rows: Vec<DigestRecipient> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT u.id AS user_id, u.username, u.email, s.recorded_at AS subscribed_at \
             FROM users u JOIN digest_subscriptions s ON s.user_id = u.id \
             WHERE u.id > $1 AND u.closed_at IS NULL AND u.erased_at IS NULL AND s.subscribed = 1 \
             AND {NOT_RESTRICTED} \
             AND s.id = (SELECT MAX(l.id) FROM digest_subscriptions l WHERE l.user_id = u.id) \
             ORDER BY u.id LIMIT $2"
        )))
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .context("reading digest recipients")?;
        let mut opened = Vec::with_capacity(rows.len());
        for mut row in rows {
            row.email = self
                .open_for_member(row.user_id, super::USERS_EMAIL, &row.email)
                .await?;
            opened.push(row);
        }
        Ok(opened)
    }

    /// The followed topics with replies the member can read and did not write: after their
    /// last digest (`after_post_id`), since they followed the topic and asked for the digest
    /// (`since`), up to `until`. Held, hidden, deleted and restricted posts and unlisted
    /// topics are left out.
    pub async fn digest_topics(
        &self,
        user_id: i64,
        after_post_id: i64,
        since: i64,
        until: i64,
    ) -> anyhow::Result<Vec<DigestTopic>> {
        sqlx::query_as(
            "SELECT t.id AS topic_id, t.title, t.slug, COUNT(p.id) AS n_replies, \
             MAX(p.id) AS last_post_id \
             FROM topic_follows f JOIN topics t ON t.id = f.topic_id \
             JOIN posts p ON p.topic_id = t.id \
             WHERE f.user_id = $1 AND t.kind = 'discussion' AND t.hidden = 0 \
             AND p.user_id <> $1 AND p.post_number > 1 AND p.id > $2 \
             AND p.created_at >= f.created_at AND p.created_at >= $3 AND p.created_at <= $4 \
             AND p.hidden_at IS NULL AND p.held_at IS NULL AND p.deleted_at IS NULL \
             AND p.restricted_at IS NULL \
             GROUP BY t.id, t.title, t.slug ORDER BY t.id",
        )
        .bind(user_id)
        .bind(after_post_id)
        .bind(since)
        .bind(until)
        .fetch_all(self.pool())
        .await
        .context("reading a member's followed topics with new replies")
    }

    /// Where the member's next digest starts: the last post their previous digest covered.
    pub async fn last_digest_post(&self, user_id: i64) -> anyhow::Result<i64> {
        let (last,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(up_to_post_id) FROM digest_sends WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(self.pool())
                .await
                .context("reading a member's last digest")?;
        Ok(last.unwrap_or(0))
    }
}
