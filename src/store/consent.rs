//! Consent evidence: immutable consent records and the one-per-subject GPC marker.
//! Records are only ever inserted; nothing here updates one (a trigger refuses it anyway).

use super::{Store, Tx};
use anyhow::Context;
use sqlx::FromRow;

/// One stored consent record, as TEXT names; the service parses them into core types.
#[derive(Debug, Clone, FromRow)]
pub struct ConsentRecordRow {
    pub id: i64,
    pub receipt_id: String,
    pub subject: String,
    pub category: String,
    pub choice: String,
    pub method: String,
    pub policy_version: String,
    pub text_hash: String,
    pub recorded_at: i64,
}

pub struct NewConsentRecord<'a> {
    pub receipt_id: &'a str,
    pub subject: &'a str,
    pub category: &'a str,
    pub choice: &'a str,
    pub method: &'a str,
    pub policy_version: &'a str,
    pub text_hash: &'a str,
    pub recorded_at: i64,
}

/// A record read together with the policy version in force (see
/// [`Store::consent_records_and_policy_in_force`]).
#[derive(FromRow)]
struct RecordAndPolicyInForce {
    #[sqlx(flatten)]
    record: ConsentRecordRow,
    policy_in_force: Option<i64>,
}

const RECORD_COLUMNS: &str =
    "id, receipt_id, subject, category, choice, method, policy_version, text_hash, recorded_at";

pub async fn insert_consent_record(
    tx: &mut Tx,
    record: &NewConsentRecord<'_>,
) -> anyhow::Result<i64> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO consent_records (receipt_id, subject, category, choice, method, \
         policy_version, text_hash, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         RETURNING id",
    )
    .bind(record.receipt_id)
    .bind(record.subject)
    .bind(record.category)
    .bind(record.choice)
    .bind(record.method)
    .bind(record.policy_version)
    .bind(record.text_hash)
    .bind(record.recorded_at)
    .fetch_one(&mut **tx)
    .await
    .context("inserting a consent record")?;
    Ok(id)
}

/// Claims the GPC marker of `subject`; true only for the first claim ever, so the signal is
/// recorded once however many requests carry it, and by whichever node sees it first.
pub async fn claim_gpc_marker(
    tx: &mut Tx,
    subject: &str,
    record_id: i64,
    now: i64,
) -> anyhow::Result<bool> {
    let claimed: Option<(String,)> = sqlx::query_as(
        "INSERT INTO consent_gpc (subject, record_id, first_seen_at) VALUES ($1, $2, $3) \
         ON CONFLICT (subject) DO NOTHING RETURNING subject",
    )
    .bind(subject)
    .bind(record_id)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await
    .context("claiming the GPC marker")?;
    Ok(claimed.is_some())
}

impl Store {
    /// A subject's records, oldest first, with the id of the policy version in force on `today`
    /// (`YYYY-MM-DD`) read by the same statement: a request whose subject holds a grant needs
    /// both, and pays one round trip. The version is `None` when the subject has no record
    /// (nothing was read about it), `Some(None)` when no published version is in force.
    pub async fn consent_records_and_policy_in_force(
        &self,
        subject: &str,
        today: &str,
    ) -> anyhow::Result<(Vec<ConsentRecordRow>, Option<Option<i64>>)> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS}, (SELECT v.id FROM policy_versions v \
             WHERE v.effective_on <= $2 ORDER BY v.effective_on DESC, v.id DESC LIMIT 1) \
             AS policy_in_force FROM consent_records WHERE subject = $1 \
             ORDER BY recorded_at, id"
        );
        let rows: Vec<RecordAndPolicyInForce> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(subject)
            .bind(today)
            .fetch_all(self.pool())
            .await
            .context("reading consent records and the policy in force")?;
        let in_force = rows.first().map(|row| row.policy_in_force);
        Ok((rows.into_iter().map(|row| row.record).collect(), in_force))
    }

    /// A subject's records, oldest first (the order the core folds them in).
    pub async fn consent_records_of(&self, subject: &str) -> anyhow::Result<Vec<ConsentRecordRow>> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM consent_records WHERE subject = $1 \
             ORDER BY recorded_at, id"
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(subject)
            .fetch_all(self.pool())
            .await
            .context("reading consent records")
    }

    /// Whether the GPC signal of `subject` was already recorded.
    pub async fn gpc_recorded(&self, subject: &str) -> anyhow::Result<bool> {
        let found: Option<(i64,)> =
            sqlx::query_as("SELECT record_id FROM consent_gpc WHERE subject = $1")
                .bind(subject)
                .fetch_optional(self.pool())
                .await
                .context("reading the GPC marker")?;
        Ok(found.is_some())
    }

    /// The highest consent record id (0 when there is none): where the consent cache's sync
    /// starts.
    pub async fn latest_consent_record_id(&self) -> anyhow::Result<i64> {
        let (id,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(id), 0) FROM consent_records")
            .fetch_one(self.pool())
            .await
            .context("reading the latest consent record id")?;
        Ok(id)
    }

    /// Records above `after`, by id, with their subject: what the consent cache must forget.
    pub async fn consent_records_after(
        &self,
        after: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<(i64, String)>> {
        sqlx::query_as("SELECT id, subject FROM consent_records WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(self.pool())
            .await
            .context("reading recent consent records")
    }

    /// The highest published policy version id (0 when none is published).
    pub async fn latest_policy_version_id(&self) -> anyhow::Result<i64> {
        let (id,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(id), 0) FROM policy_versions")
            .fetch_one(self.pool())
            .await
            .context("reading the latest policy version id")?;
        Ok(id)
    }

    /// The birth year of an account, for the age rules; `None` if there is no such account.
    pub async fn birth_year_of(&self, user_id: i64) -> anyhow::Result<Option<i64>> {
        let found: Option<(String,)> = sqlx::query_as("SELECT birth_year FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(self.pool())
            .await
            .context("reading a birth year")?;
        match found {
            Some((stored,)) => Ok(Some(self.birth_year_opened(user_id, &stored).await?)),
            None => Ok(None),
        }
    }
}
