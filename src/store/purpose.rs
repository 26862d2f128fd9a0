//! The purpose gate's storage (promise R9): restrictions of processing asked for by their
//! subject, their lifting, and the queued mail the gate withheld. What a restriction stops is
//! decided in `crate::purpose`; this module only records and reads.

use super::{Store, Tx};
use anyhow::Context;
use sqlx::FromRow;

/// The condition, on a query over `users u` that picks recipients in bulk, that the member's
/// processing is not restricted now: neither by their request (a standing row of
/// `processing_restrictions`) nor by the retention sweep (`users.restricted_at`, the
/// limitation period after their relationship ended).
pub(super) const NOT_RESTRICTED: &str = "u.restricted_at IS NULL AND u.id NOT IN \
     (SELECT r.user_id FROM processing_restrictions r WHERE r.lifted_at IS NULL)";

/// One restriction, standing or lifted.
#[derive(Debug, Clone, FromRow)]
pub struct RestrictionRow {
    pub id: i64,
    pub user_id: i64,
    pub request_id: Option<i64>,
    pub started_at: i64,
    pub lifted_at: Option<i64>,
    pub lifted_by: Option<i64>,
    pub lifted_how: Option<String>,
}

/// Restricts the member's processing, unless a restriction already stands. Returns whether a
/// new one was recorded.
pub async fn insert_restriction(
    tx: &mut Tx,
    user_id: i64,
    request_id: Option<i64>,
    now: i64,
) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO processing_restrictions (user_id, request_id, started_at) \
         SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM processing_restrictions \
         WHERE user_id = $1 AND lifted_at IS NULL)",
    )
    .bind(user_id)
    .bind(request_id)
    .bind(now)
    .execute(&mut **tx)
    .await
    .context("recording a restriction of processing")?;
    Ok(done.rows_affected() == 1)
}

/// Lifts the member's standing restriction; returns its id, `None` when none stood.
pub async fn lift_restriction(
    tx: &mut Tx,
    user_id: i64,
    lifted_by: i64,
    how: &str,
    now: i64,
) -> anyhow::Result<Option<i64>> {
    let row: Option<(i64,)> = sqlx::query_as(
        "UPDATE processing_restrictions SET lifted_at = $1, lifted_by = $2, lifted_how = $3 \
         WHERE user_id = $4 AND lifted_at IS NULL RETURNING id",
    )
    .bind(now)
    .bind(lifted_by)
    .bind(how)
    .bind(user_id)
    .fetch_optional(&mut **tx)
    .await
    .context("lifting a restriction of processing")?;
    Ok(row.map(|(id,)| id))
}

impl Store {
    /// Whether the member's processing is restricted now: by their request, or by the
    /// retention sweep during the limitation period.
    pub async fn is_restricted(&self, user_id: i64) -> anyhow::Result<bool> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT id FROM processing_restrictions WHERE user_id = $1 AND lifted_at IS NULL \
             UNION ALL SELECT id FROM users WHERE id = $1 AND restricted_at IS NOT NULL \
             LIMIT 1",
        )
        .bind(user_id)
        .fetch_optional(self.pool())
        .await
        .context("reading a restriction of processing")?;
        Ok(row.is_some())
    }

    /// Every restriction of the member, newest first.
    pub async fn restrictions_of(&self, user_id: i64) -> anyhow::Result<Vec<RestrictionRow>> {
        sqlx::query_as(
            "SELECT id, user_id, request_id, started_at, lifted_at, lifted_by, lifted_how \
             FROM processing_restrictions WHERE user_id = $1 ORDER BY id DESC",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await
        .context("reading restrictions of processing")
    }

    /// Marks a claimed message withheld: it is never delivered, and the row says so and why
    /// (`reason`, one of the `WITHHELD_*` words of `store::mail`).
    pub async fn mark_mail_withheld(&self, id: i64, now: i64, reason: &str) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE mail_outbox SET withheld_at = $1, withheld_reason = $2, claimed_until = NULL \
             WHERE id = $3 AND sent_at IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(id)
        .execute(self.pool())
        .await
        .context("withholding an email")?;
        Ok(())
    }
}
