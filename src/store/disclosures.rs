//! Disclosures of a member's data to third parties and authorities (promise A3).

use super::{Store, Tx};
use anyhow::Context;
use sqlx::FromRow;

#[derive(Debug, Clone, FromRow)]
pub struct DisclosureRow {
    pub id: i64,
    pub subject_user_id: i64,
    pub legal_basis: String,
    pub requesting_body: String,
    pub reference: String,
    pub categories: String,
    pub disclosed_on: String,
    pub notice_forbidden: i64,
    pub approved_by: i64,
    pub created_at: i64,
    pub notified_at: Option<i64>,
}

pub struct NewDisclosure<'a> {
    pub subject_user_id: i64,
    pub legal_basis: &'a str,
    pub requesting_body: &'a str,
    pub reference: &'a str,
    pub categories: &'a str,
    pub disclosed_on: &'a str,
    pub notice_forbidden: bool,
    pub approved_by: i64,
    pub now: i64,
}

const DISCLOSURE_COLUMNS: &str = "id, subject_user_id, legal_basis, requesting_body, reference, \
     categories, disclosed_on, notice_forbidden, approved_by, created_at, notified_at";

pub async fn insert_disclosure(tx: &mut Tx, new: &NewDisclosure<'_>) -> anyhow::Result<i64> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO disclosures (subject_user_id, legal_basis, requesting_body, reference, \
         categories, disclosed_on, notice_forbidden, approved_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(new.subject_user_id)
    .bind(new.legal_basis)
    .bind(new.requesting_body)
    .bind(new.reference)
    .bind(new.categories)
    .bind(new.disclosed_on)
    .bind(i64::from(new.notice_forbidden))
    .bind(new.approved_by)
    .bind(new.now)
    .fetch_one(&mut **tx)
    .await
    .context("storing a disclosure")?;
    Ok(id)
}

/// Records that the subject's notice was queued.
pub async fn mark_disclosure_notified(tx: &mut Tx, id: i64, now: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE disclosures SET notified_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(&mut **tx)
        .await
        .context("marking a disclosure notified")?;
    Ok(())
}

/// Ends the ban on telling the subject of a disclosure; the record as it now stands, or
/// `None` if there is no such record with a standing ban.
pub async fn lift_disclosure_notice_ban(
    tx: &mut Tx,
    id: i64,
) -> anyhow::Result<Option<DisclosureRow>> {
    let sql = format!(
        "UPDATE disclosures SET notice_forbidden = 0 WHERE id = $1 AND notice_forbidden = 1 \
         RETURNING {DISCLOSURE_COLUMNS}"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .context("lifting a disclosure's notice ban")
}

impl Store {
    /// Every disclosure, newest first.
    pub async fn disclosures(&self) -> anyhow::Result<Vec<DisclosureRow>> {
        let sql = format!("SELECT {DISCLOSURE_COLUMNS} FROM disclosures ORDER BY id DESC");
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await
            .context("listing disclosures")
    }
}
