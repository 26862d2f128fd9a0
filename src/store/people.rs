//! Residence and age facts of members, parents' consent, product-news subscriptions and
//! newsletters (promises M1 and F6).

use super::purpose::NOT_RESTRICTED;
use super::{Store, Tx};
use anyhow::Context;
use sqlx::FromRow;

/// Where a new member lives and whether a parent must consent first.
pub struct NewResidence<'a> {
    pub country: &'a str,
    pub us_state: Option<&'a str>,
    pub jurisdiction: &'a str,
    pub parent_consent_needed: bool,
}

pub async fn set_residence(
    tx: &mut Tx,
    user_id: i64,
    residence: &NewResidence<'_>,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE users SET country = $1, us_state = $2, jurisdiction = $3, \
         parent_consent_needed = $4 WHERE id = $5",
    )
    .bind(residence.country)
    .bind(residence.us_state)
    .bind(residence.jurisdiction)
    .bind(i64::from(residence.parent_consent_needed))
    .bind(user_id)
    .execute(&mut **tx)
    .await
    .context("recording a member's residence")?;
    Ok(())
}

/// What the age rules know of a member.
#[derive(Debug, Clone, FromRow)]
pub struct AgeFacts {
    /// Opened from the sealed column (0 when erased or its key is gone).
    #[sqlx(skip)]
    pub birth_year: i64,
    #[sqlx(rename = "birth_year")]
    pub birth_year_stored: String,
    pub jurisdiction: Option<String>,
    pub parent_consent_needed: i64,
    pub parent_consented_at: Option<i64>,
    pub parent_allows_news: i64,
}

impl AgeFacts {
    /// A minor whose parent has not consented yet: the account may not post.
    pub fn awaiting_parent(&self) -> bool {
        self.parent_consent_needed != 0 && self.parent_consented_at.is_none()
    }
}

pub struct NewParentalRequest<'a> {
    pub user_id: i64,
    pub parent_email: &'a str,
    pub token_hash: &'a str,
    pub now: i64,
    pub expires_at: i64,
}

/// Where a parent's address is kept, as the associated data of its seal names it.
pub const PARENT_EMAIL: &str = "parental_consents.parent_email";

/// Stores a request for a parent's consent: the parent's address sealed with the minor's key
/// (R8) beside its keyed hash.
pub async fn insert_parental_request(
    store: &Store,
    tx: &mut Tx,
    request: &NewParentalRequest<'_>,
) -> anyhow::Result<()> {
    let sealed = store
        .seal_for_member(request.user_id, PARENT_EMAIL, request.parent_email)
        .await?;
    let lookup = store.lookup_hash(&crate::sealing::lookup_text(
        PARENT_EMAIL,
        request.parent_email,
    ))?;
    sqlx::query(
        "INSERT INTO parental_consents (user_id, parent_email, parent_email_lookup, token_hash, \
         requested_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(request.user_id)
    .bind(sealed)
    .bind(lookup)
    .bind(request.token_hash)
    .bind(request.now)
    .bind(request.expires_at)
    .execute(&mut **tx)
    .await
    .context("storing a request for parental consent")?;
    Ok(())
}

/// A pending request for a parent's consent, as the parent's page shows it.
#[derive(Debug, Clone, FromRow)]
pub struct ParentalRequestRow {
    pub id: i64,
    pub user_id: i64,
    pub username: String,
}

/// The evidence of a parent's consent.
pub struct ParentalConsentGiven<'a> {
    pub token_hash: &'a str,
    pub now: i64,
    pub policy_version: &'a str,
    pub text_hash: &'a str,
    pub news_allowed: bool,
}

/// Records a parent's consent from the link's token, once: one `UPDATE … RETURNING`, so two
/// clicks cannot both succeed. Returns the minor's account.
pub async fn give_parental_consent(
    tx: &mut Tx,
    consent: &ParentalConsentGiven<'_>,
) -> anyhow::Result<Option<i64>> {
    let row: Option<(i64,)> = sqlx::query_as(
        "UPDATE parental_consents SET consented_at = $1, policy_version = $2, text_hash = $3, \
         news_allowed = $4 WHERE token_hash = $5 AND consented_at IS NULL AND expires_at > $1 \
         RETURNING user_id",
    )
    .bind(consent.now)
    .bind(consent.policy_version)
    .bind(consent.text_hash)
    .bind(i64::from(consent.news_allowed))
    .bind(consent.token_hash)
    .fetch_optional(&mut **tx)
    .await
    .context("recording a parent's consent")?;
    let Some((user_id,)) = row else {
        return Ok(None);
    };
    sqlx::query("UPDATE users SET parent_consented_at = $1, parent_allows_news = $2 WHERE id = $3")
        .bind(consent.now)
        .bind(i64::from(consent.news_allowed))
        .bind(user_id)
        .execute(&mut **tx)
        .await
        .context("admitting a minor after a parent's consent")?;
    Ok(Some(user_id))
}

/// One row of subscription evidence.
pub struct NewsChoice<'a> {
    pub user_id: i64,
    pub subscribed: bool,
    pub method: &'a str,
    pub policy_version: &'a str,
    pub text_hash: &'a str,
    pub now: i64,
}

pub async fn insert_news_choice(tx: &mut Tx, choice: &NewsChoice<'_>) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO news_subscriptions (user_id, subscribed, method, policy_version, \
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
    .context("recording a product-news choice")?;
    // The subscription is a relationship of its own for retention (T1): it starts with an
    // opt-in and ends with the opt-out.
    let relationship = if choice.subscribed {
        "UPDATE users SET news_subscribed_at = $1, news_ended_at = NULL WHERE id = $2"
    } else {
        "UPDATE users SET news_ended_at = $1 WHERE id = $2 AND news_subscribed_at IS NOT NULL"
    };
    sqlx::query(relationship)
        .bind(choice.now)
        .bind(choice.user_id)
        .execute(&mut **tx)
        .await
        .context("recording the product-news relationship")?;
    Ok(())
}

/// A member's standing news choice, as last recorded.
#[derive(Debug, Clone, FromRow)]
pub struct NewsChoiceRow {
    pub subscribed: i64,
    pub method: String,
    pub recorded_at: i64,
}

/// A subscriber a newsletter goes to.
#[derive(Debug, Clone, FromRow)]
pub struct Subscriber {
    pub user_id: i64,
    pub username: String,
    pub email: String,
}

/// Returns the newsletter with this digest, creating it if it is new.
pub async fn newsletter_by_digest(
    tx: &mut Tx,
    digest: &str,
    subject: &str,
    body_text: &str,
    now: i64,
) -> anyhow::Result<i64> {
    sqlx::query(
        "INSERT INTO newsletters (digest, subject, body_text, created_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (digest) DO NOTHING",
    )
    .bind(digest)
    .bind(subject)
    .bind(body_text)
    .bind(now)
    .execute(&mut **tx)
    .await
    .context("storing a newsletter")?;
    let (id,): (i64,) = sqlx::query_as("SELECT id FROM newsletters WHERE digest = $1")
        .bind(digest)
        .fetch_one(&mut **tx)
        .await
        .context("reading a newsletter")?;
    Ok(id)
}

impl Store {
    pub async fn age_facts_of(&self, user_id: i64) -> anyhow::Result<Option<AgeFacts>> {
        let facts: Option<AgeFacts> = sqlx::query_as(
            "SELECT birth_year, jurisdiction, parent_consent_needed, parent_consented_at, \
             parent_allows_news FROM users WHERE id = $1",
        )
        .bind(user_id)
        .fetch_optional(self.pool())
        .await
        .context("reading a member's age facts")?;
        let Some(mut facts) = facts else {
            return Ok(None);
        };
        facts.birth_year = self
            .birth_year_opened(user_id, &facts.birth_year_stored)
            .await?;
        Ok(Some(facts))
    }

    /// The pending request behind a parent's link, if it is still valid.
    pub async fn parental_request(
        &self,
        token_hash: &str,
        now: i64,
    ) -> anyhow::Result<Option<ParentalRequestRow>> {
        sqlx::query_as(
            "SELECT p.id, p.user_id, u.username FROM parental_consents p \
             JOIN users u ON u.id = p.user_id \
             WHERE p.token_hash = $1 AND p.consented_at IS NULL AND p.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(self.pool())
        .await
        .context("reading a request for parental consent")
    }

    pub async fn news_choice_of(&self, user_id: i64) -> anyhow::Result<Option<NewsChoiceRow>> {
        sqlx::query_as(
            "SELECT subscribed, method, recorded_at FROM news_subscriptions \
             WHERE user_id = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(user_id)
        .fetch_optional(self.pool())
        .await
        .context("reading a member's product-news choice")
    }

    /// Current subscribers with an id above `after`, in id order, up to `limit`: members of
    /// open accounts whose latest choice is subscribed, and who are not minors, unless a parent
    /// allowed product news. A member counts as a minor while the birth year says they may
    /// still be under `adult_age`. The birth year is sealed, so it is opened and compared
    /// here, and the walk reads on until it has `limit` subscribers or reaches the end.
    pub async fn news_subscribers(
        &self,
        after: i64,
        limit: i64,
        current_year: i64,
        adult_age: i64,
    ) -> anyhow::Result<Vec<Subscriber>> {
        #[derive(FromRow)]
        struct Candidate {
            user_id: i64,
            username: String,
            email: String,
            birth_year: String,
            parent_allows_news: i64,
        }
        let mut found = Vec::new();
        let mut after = after;
        loop {
            let rows: Vec<Candidate> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT u.id AS user_id, u.username, u.email, u.birth_year, \
                 u.parent_allows_news FROM users u \
                 WHERE u.id > $1 AND u.closed_at IS NULL AND {NOT_RESTRICTED} \
                 AND 1 = (SELECT s.subscribed FROM news_subscriptions s WHERE s.user_id = u.id \
                          ORDER BY s.id DESC LIMIT 1) \
                 ORDER BY u.id LIMIT $2"
            )))
            .bind(after)
            .bind(limit)
            .fetch_all(self.pool())
            .await
            .context("reading product-news subscribers")?;
            let end = (rows.len() as i64) < limit;
            for row in rows {
                after = row.user_id;
                if row.parent_allows_news != 1 {
                    let born = self.birth_year_opened(row.user_id, &row.birth_year).await?;
                    if born >= current_year - adult_age {
                        continue;
                    }
                }
                let email = self
                    .open_for_member(row.user_id, super::USERS_EMAIL, &row.email)
                    .await?;
                found.push(Subscriber {
                    user_id: row.user_id,
                    username: row.username,
                    email,
                });
                if found.len() as i64 >= limit {
                    return Ok(found);
                }
            }
            if end {
                return Ok(found);
            }
        }
    }
}

/// A feedback or support message as staff and the public page see it.
#[derive(Debug, Clone, FromRow)]
pub struct FeedbackRow {
    pub id: i64,
    /// The sender.
    pub user_id: i64,
    pub username: String,
    pub body: String,
    pub may_publish: i64,
    pub may_name: i64,
    pub created_at: i64,
    pub published_at: Option<i64>,
}

const FEEDBACK_COLUMNS: &str = "f.id, f.user_id, u.username, f.body, f.may_publish, f.may_name, \
                                f.created_at, f.published_at";

pub async fn insert_feedback(
    tx: &mut Tx,
    user_id: i64,
    body: &str,
    may_publish: bool,
    may_name: bool,
    now: i64,
) -> anyhow::Result<i64> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO feedback (user_id, body, may_publish, may_name, created_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(user_id)
    .bind(body)
    .bind(i64::from(may_publish))
    .bind(i64::from(may_name))
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .context("storing feedback")?;
    Ok(id)
}

/// Publishes a message only if its sender agreed; returns whether it was published now.
/// The condition is in the statement, so no caller can publish without the sender's agreement.
pub async fn publish_feedback(
    tx: &mut Tx,
    id: i64,
    staff_id: i64,
    now: i64,
) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE feedback SET published_at = $1, published_by = $2 \
         WHERE id = $3 AND may_publish = 1 AND published_at IS NULL",
    )
    .bind(now)
    .bind(staff_id)
    .bind(id)
    .execute(&mut **tx)
    .await
    .context("publishing feedback")?;
    Ok(done.rows_affected() == 1)
}

impl Store {
    pub async fn feedback_by_id(&self, id: i64) -> anyhow::Result<Option<FeedbackRow>> {
        let sql = format!(
            "SELECT {FEEDBACK_COLUMNS} FROM feedback f JOIN users u ON u.id = f.user_id \
             WHERE f.id = $1"
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .context("reading feedback")
    }

    /// The newest messages, published or not (for staff), or only published ones.
    pub async fn feedback_list(
        &self,
        published_only: bool,
        limit: i64,
    ) -> anyhow::Result<Vec<FeedbackRow>> {
        let filter = if published_only {
            "WHERE f.published_at IS NOT NULL AND f.may_publish = 1"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {FEEDBACK_COLUMNS} FROM feedback f JOIN users u ON u.id = f.user_id \
             {filter} ORDER BY f.id DESC LIMIT $1"
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(limit)
            .fetch_all(self.pool())
            .await
            .context("listing feedback")
    }
}
