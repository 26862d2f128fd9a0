//! The durable mail outbox: messages are written in the same transaction as the change that
//! causes them, then claimed and delivered by a worker, at most one node at a time per message.

use super::{Store, Tx};
use anyhow::Context;
use sqlx::FromRow;

/// Where a member's queued address is kept, as its seal names it.
pub const OUTBOX_RECIPIENT: &str = "mail_outbox.recipient";
/// Where a queued body is kept: sealed under its submission's key for a request's email.
pub const OUTBOX_BODY: &str = "mail_outbox.body_text";
/// Where a queued subject line is kept, sealed like the address.
pub const OUTBOX_SUBJECT: &str = "mail_outbox.subject";
/// How the key of one message to a person without an account, outside any request, is named
/// (`sealing::row`, with the message's idempotency key).
pub const OUTBOX_ROW_KEY: &str = "mail";

/// Whose key seals a message's address and subject line: the member's when it goes to a
/// member; else its request's (correspondence, kept and swept with the request's records);
/// else the message's own.
enum MailKey<'a> {
    Member(i64),
    Submission(i64),
    Row(&'a str),
}

impl<'a> MailKey<'a> {
    fn of(user_id: Option<i64>, submission_id: Option<i64>, idempotency_key: &'a str) -> Self {
        match (user_id, submission_id) {
            (Some(user_id), _) => Self::Member(user_id),
            (None, Some(submission)) => Self::Submission(submission),
            (None, None) => Self::Row(idempotency_key),
        }
    }
}

impl Store {
    async fn seal_mail_field(
        &self,
        key: &MailKey<'_>,
        place: &str,
        plain: &str,
    ) -> anyhow::Result<String> {
        match *key {
            MailKey::Member(user_id) => self.seal_for_member(user_id, place, plain).await,
            MailKey::Submission(id) => self.seal_for_submission(id, place, plain).await,
            MailKey::Row(row) => self.seal_for_row(OUTBOX_ROW_KEY, row, place, plain).await,
        }
    }

    async fn open_mail_field(
        &self,
        key: &MailKey<'_>,
        place: &str,
        stored: &str,
    ) -> anyhow::Result<String> {
        match *key {
            MailKey::Member(user_id) => self.open_for_member(user_id, place, stored).await,
            MailKey::Submission(id) => self.open_for_submission(id, place, stored).await,
            MailKey::Row(row) => self.open_for_row(OUTBOX_ROW_KEY, row, place, stored).await,
        }
    }
}

pub struct OutgoingMail<'a> {
    /// Names the message for good: enqueuing the same key twice stores it once.
    pub idempotency_key: &'a str,
    pub recipient: &'a str,
    pub user_id: Option<i64>,
    pub subject: &'a str,
    pub body_text: &'a str,
    pub now: i64,
    /// The one-click unsubscribe address of non-essential mail (RFC 8058); `None` otherwise.
    pub list_unsubscribe: Option<&'a str>,
    /// The privacy-request submission a request's email belongs to: its body is sealed under
    /// that submission's key (correspondence, R8).
    pub submission_id: Option<i64>,
}

#[derive(Debug, Clone, FromRow)]
pub struct QueuedMail {
    pub id: i64,
    pub idempotency_key: String,
    pub recipient: String,
    pub subject: String,
    pub body_text: String,
    pub attempts: i64,
    pub list_unsubscribe: Option<String>,
    pub user_id: Option<i64>,
    pub submission_id: Option<i64>,
}

/// Queues a message; returns false when a message with the same key was already queued.
/// Its address and subject line are sealed (R8): with the member's key for a member's mail
/// (`inventory::SEALED`); else with its request's key (`inventory::SEALED_BY_SUBMISSION`);
/// else with a key of the message's own (`inventory::SEALED_BY_ROW`). Mail to a person
/// without an account carries the keyed hash of the address, which erasure by address finds.
pub async fn enqueue_mail(
    store: &Store,
    tx: &mut Tx,
    mail: &OutgoingMail<'_>,
) -> anyhow::Result<bool> {
    let key = MailKey::of(mail.user_id, mail.submission_id, mail.idempotency_key);
    let recipient = store
        .seal_mail_field(&key, OUTBOX_RECIPIENT, mail.recipient)
        .await?;
    let subject = store
        .seal_mail_field(&key, OUTBOX_SUBJECT, mail.subject)
        .await?;
    let recipient_lookup = match mail.user_id {
        None if !mail.recipient.is_empty() => store.lookup_hash(&crate::sealing::lookup_text(
            OUTBOX_RECIPIENT,
            mail.recipient,
        ))?,
        _ => String::new(),
    };
    let body = match mail.submission_id {
        Some(submission) => {
            store
                .seal_for_submission(submission, OUTBOX_BODY, mail.body_text)
                .await?
        }
        None => mail.body_text.to_string(),
    };
    let done = sqlx::query(
        "INSERT INTO mail_outbox (idempotency_key, recipient, user_id, subject, body_text, \
         created_at, next_attempt_at, list_unsubscribe, submission_id, recipient_lookup) \
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9) \
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(mail.idempotency_key)
    .bind(recipient)
    .bind(mail.user_id)
    .bind(subject)
    .bind(body)
    .bind(mail.now)
    .bind(mail.list_unsubscribe)
    .bind(mail.submission_id)
    .bind(recipient_lookup)
    .execute(&mut **tx)
    .await
    .context("queuing an email")?;
    Ok(done.rows_affected() == 1)
}

/// Why a message was withheld: the member restricted processing (the purpose gate).
pub const WITHHELD_RESTRICTED: &str = "restricted";
/// Why a message was withheld: it was queued for a member whose account closed before it
/// went out. A privacy request's correspondence (a submission's mail) still goes: the answer
/// to a request is owed whatever became of the account.
pub const WITHHELD_ACCOUNT_CLOSED: &str = "account closed";

/// A withheld message as staff see it: identifiers, when and why, never the address or text.
#[derive(Debug, Clone, FromRow)]
pub struct WithheldMail {
    pub id: i64,
    pub user_id: Option<i64>,
    pub withheld_at: i64,
    pub withheld_reason: String,
}

impl Store {
    /// Claims up to `limit` messages that are due and not claimed by a live worker, until
    /// `lease_until`. A worker that dies leaves its claim to expire; the message is then retried.
    /// Mail queued for a member whose account is closed is withheld first (reason
    /// [`WITHHELD_ACCOUNT_CLOSED`]), except a privacy request's correspondence, which is claimed.
    pub async fn claim_due_mail(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<QueuedMail>> {
        let sql = format!(
            "UPDATE mail_outbox SET claimed_until = $1, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM mail_outbox WHERE sent_at IS NULL \
             AND withheld_at IS NULL AND next_attempt_at <= $2 AND (claimed_until IS NULL OR claimed_until < $2) \
             AND (user_id IS NULL OR submission_id IS NOT NULL OR user_id NOT IN \
             (SELECT id FROM users WHERE closed_at IS NOT NULL)) \
             ORDER BY id LIMIT $3 {}) \
             RETURNING id, idempotency_key, recipient, subject, body_text, attempts, \
             list_unsubscribe, user_id, submission_id",
            self.skip_locked()
        );
        sqlx::query(
            "UPDATE mail_outbox SET withheld_at = $1, withheld_reason = $2, claimed_until = NULL \
             WHERE sent_at IS NULL AND withheld_at IS NULL AND submission_id IS NULL \
             AND (claimed_until IS NULL OR claimed_until < $1) \
             AND user_id IN (SELECT id FROM users WHERE closed_at IS NOT NULL)",
        )
        .bind(now)
        .bind(WITHHELD_ACCOUNT_CLOSED)
        .execute(self.pool())
        .await
        .context("withholding mail to closed accounts")?;
        let mut tx = self.begin().await?;
        let mut claimed: Vec<QueuedMail> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(lease_until)
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .context("claiming queued email")?;
        tx.commit().await.context("claiming queued email")?;
        for mail in &mut claimed {
            let key = MailKey::of(mail.user_id, mail.submission_id, &mail.idempotency_key);
            let recipient = self
                .open_mail_field(&key, OUTBOX_RECIPIENT, &mail.recipient)
                .await?;
            let subject = self
                .open_mail_field(&key, OUTBOX_SUBJECT, &mail.subject)
                .await?;
            (mail.recipient, mail.subject) = (recipient, subject);
            if let Some(submission) = mail.submission_id {
                mail.body_text = self
                    .open_for_submission(submission, OUTBOX_BODY, &mail.body_text)
                    .await?;
            }
        }
        claimed.sort_by_key(|m| m.id);
        Ok(claimed)
    }

    pub async fn mark_mail_sent(&self, id: i64, now: i64) -> anyhow::Result<()> {
        sqlx::query("UPDATE mail_outbox SET sent_at = $1, claimed_until = NULL, last_error = NULL WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(self.pool())
            .await
            .context("marking an email sent")?;
        Ok(())
    }

    /// Puts a message back for another try at `next_attempt_at`, keeping the error's kind.
    pub async fn mark_mail_failed(
        &self,
        id: i64,
        error: &str,
        next_attempt_at: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE mail_outbox SET claimed_until = NULL, last_error = $1, next_attempt_at = $2 \
             WHERE id = $3",
        )
        .bind(error)
        .bind(next_attempt_at)
        .bind(id)
        .execute(self.pool())
        .await
        .context("recording an email failure")?;
        Ok(())
    }

    /// Messages not yet delivered (and not withheld by the purpose gate).
    pub async fn count_unsent_mail(&self) -> anyhow::Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM mail_outbox WHERE sent_at IS NULL AND withheld_at IS NULL",
        )
        .fetch_one(self.pool())
        .await
        .context("counting queued email")?;
        Ok(n)
    }

    /// The withheld messages, newest first: identifiers, when and why (staff's view of what
    /// the outbox held back).
    pub async fn withheld_mail(&self, limit: i64) -> anyhow::Result<Vec<WithheldMail>> {
        sqlx::query_as(
            "SELECT id, user_id, withheld_at, withheld_reason FROM mail_outbox \
             WHERE withheld_at IS NOT NULL ORDER BY withheld_at DESC, id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .context("reading withheld email")
    }
}

/// Messages to a person without an account outside any privacy request (their address and
/// subject sealed under the message's own key) that were sent or withheld before `cutoff`:
/// `(id, idempotency key)`, at most `limit`. A request's mail goes with the request's records.
pub async fn unowned_mail_done_before(
    tx: &mut Tx,
    cutoff: i64,
    limit: i64,
) -> anyhow::Result<Vec<(i64, String)>> {
    sqlx::query_as(
        "SELECT id, idempotency_key FROM mail_outbox \
         WHERE user_id IS NULL AND submission_id IS NULL \
         AND COALESCE(sent_at, withheld_at) < $1 ORDER BY id LIMIT $2",
    )
    .bind(cutoff)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
    .context("finding old mail to people without an account")
}

/// Deletes the messages `ids`; returns how many went.
pub async fn delete_mail_rows(tx: &mut Tx, ids: &[i64]) -> anyhow::Result<u64> {
    let mut deleted = 0;
    for id in ids {
        deleted += sqlx::query("DELETE FROM mail_outbox WHERE id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await
            .context("deleting old mail")?
            .rows_affected();
    }
    Ok(deleted)
}

/// How many messages [`unowned_mail_done_before`] would find without a limit.
pub async fn count_unowned_mail_done_before(tx: &mut Tx, cutoff: i64) -> anyhow::Result<i64> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM mail_outbox WHERE user_id IS NULL AND submission_id IS NULL \
         AND COALESCE(sent_at, withheld_at) < $1",
    )
    .bind(cutoff)
    .fetch_one(&mut **tx)
    .await
    .context("counting old mail to people without an account")
}

/// The idempotency keys of every message sealed under a key of its own (to a person without
/// an account, outside any request).
pub async fn unowned_mail_keys(tx: &mut Tx) -> anyhow::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT idempotency_key FROM mail_outbox WHERE user_id IS NULL AND submission_id IS NULL",
    )
    .fetch_all(&mut **tx)
    .await
    .context("listing mail sealed under its own key")
}
