//! Sealing at start what was stored plain before its column was sealed (R8): the columns of
//! `inventory::SEALED`, `inventory::SEALED_BY_SUBMISSION` and `inventory::SEALED_BY_ROW`, and the keyed hashes beside the
//! ones found by equality. Done once per version of the list: a marker in `settings` says the
//! database holds nothing plain of the columns sealed so far, so a start with nothing left to
//! seal reads one row instead of scanning every sealed column.

use super::Store;
use crate::inventory::{self, SubmissionOf};
use crate::sealing;
use anyhow::Context;
use sqlx::AssertSqlSafe;

/// The setting that marks a database as sealed up to [`SEALED_FIELDS_VERSION`].
pub const SEALED_FIELDS_MARKER: &str = "sealed_fields";

/// Which list of sealed columns the marker stands for: raised whenever a column is added to
/// `inventory::SEALED`, `inventory::SEALED_BY_SUBMISSION` or `inventory::SEALED_BY_ROW`, so the next start seals it.
pub const SEALED_FIELDS_VERSION: &str = "0041";

impl Store {
    /// A member's birth year from its stored text (sealed, or plain decimal from before
    /// sealing): 0 when it was erased, its key is gone, or it is not a year.
    pub(crate) async fn birth_year_opened(
        &self,
        user_id: i64,
        stored: &str,
    ) -> anyhow::Result<i64> {
        let opened = self
            .open_for_member(user_id, super::USERS_BIRTH_YEAR, stored)
            .await?;
        Ok(opened.trim().parse().unwrap_or(0))
    }

    /// Seals whatever is still plain in a sealed column, unless the marker says it was done
    /// for the current list; then sets the marker. Safe with several nodes starting at once
    /// (each row changes only from the value read). Returns how many rows changed.
    pub async fn seal_plain_fields(&self) -> anyhow::Result<usize> {
        if self.setting(SEALED_FIELDS_MARKER).await?.as_deref() == Some(SEALED_FIELDS_VERSION) {
            return Ok(0);
        }
        // The keyed hashes first: they are computed from the plain values.
        let mut changed = self.fill_plain_lookups().await?;
        changed += self.seal_plain_member_fields().await?;
        changed += self.seal_plain_submission_fields().await?;
        changed += self.seal_plain_row_fields().await?;
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(SEALED_FIELDS_MARKER)
        .bind(SEALED_FIELDS_VERSION)
        .execute(self.pool())
        .await
        .context("marking the private fields sealed")?;
        Ok(changed)
    }

    /// Fills the empty keyed-hash columns beside sealed columns from their plain values.
    async fn fill_plain_lookups(&self) -> anyhow::Result<usize> {
        let lookups = inventory::SEALED
            .iter()
            .filter_map(|s| s.lookup.map(|l| (s.table, s.column, l)))
            .chain(
                inventory::SEALED_BY_SUBMISSION
                    .iter()
                    .filter_map(|s| s.lookup.map(|l| (s.table, s.column, l))),
            )
            .chain(
                inventory::SEALED_BY_ROW
                    .iter()
                    .filter_map(|s| s.lookup.map(|l| (s.table, s.column, l))),
            );
        let mut changed = 0;
        for (table, column, lookup) in lookups {
            let plain: Vec<(String,)> = sqlx::query_as(AssertSqlSafe(format!(
                "SELECT DISTINCT {column} FROM {table} WHERE {lookup} = '' AND {column} <> '' \
                 AND {column} NOT LIKE 's1:%'"
            )))
            .fetch_all(self.pool())
            .await
            .with_context(|| format!("reading plain values of {table}.{column}"))?;
            let place = format!("{table}.{column}");
            for (value,) in plain {
                let hash = self.lookup_hash(&sealing::lookup_text(&place, &value))?;
                let done = sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {table} SET {lookup} = $1 WHERE {column} = $2 AND {lookup} = ''"
                )))
                .bind(hash)
                .bind(&value)
                .execute(self.pool())
                .await
                .with_context(|| format!("hashing values of {table}.{column}"))?;
                changed += done.rows_affected() as usize;
            }
        }
        Ok(changed)
    }

    /// Seals the plain text of the columns sealed per submission (correspondence stored before
    /// it was sealed) and the plain evidence files.
    async fn seal_plain_submission_fields(&self) -> anyhow::Result<usize> {
        let mut changed = 0;
        for sealed in inventory::SEALED_BY_SUBMISSION {
            let (table, column) = (sealed.table, sealed.column);
            let place = format!("{table}.{column}");
            let kind = inventory::table(table)
                .and_then(|t| t.column(column))
                .map(|c| c.kind)
                .with_context(|| format!("{place} is declared"))?;
            if kind == inventory::Kind::Bytes {
                changed += self.seal_plain_files(table, column, &place, sealed).await?;
                continue;
            }
            let owner = sealed.submission.column();
            let plain: Vec<(i64, String)> = sqlx::query_as(AssertSqlSafe(format!(
                "SELECT DISTINCT {owner}, {column} FROM {table} WHERE {owner} IS NOT NULL \
                 AND {column} <> '' AND {column} NOT LIKE 's1:%'"
            )))
            .fetch_all(self.pool())
            .await
            .with_context(|| format!("reading plain values of {place}"))?;
            for (owner_id, value) in plain {
                let submission = match sealed.submission {
                    SubmissionOf::Column(_) => Some(owner_id),
                    SubmissionOf::Request(_) => self.submission_of_request(owner_id).await?,
                };
                let Some(submission) = submission else {
                    continue;
                };
                let sealed_value = self.seal_for_submission(submission, &place, &value).await?;
                let done = sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {table} SET {column} = $1 WHERE {owner} = $2 AND {column} = $3"
                )))
                .bind(sealed_value)
                .bind(owner_id)
                .bind(&value)
                .execute(self.pool())
                .await
                .with_context(|| format!("sealing values of {place}"))?;
                changed += done.rows_affected() as usize;
            }
        }
        Ok(changed)
    }

    /// Seals the plain text of the columns sealed per row (`inventory::SEALED_BY_ROW`): rows
    /// sealed under another key (their member's, their request's) are left to those passes.
    async fn seal_plain_row_fields(&self) -> anyhow::Result<usize> {
        let mut changed = 0;
        for sealed in inventory::SEALED_BY_ROW {
            let (table, column, key) = (sealed.table, sealed.column, sealed.key);
            let place = format!("{table}.{column}");
            let unless: String = sealed
                .unless
                .iter()
                .map(|c| format!(" AND {c} IS NULL"))
                .collect();
            let plain: Vec<(String, String)> = sqlx::query_as(AssertSqlSafe(format!(
                "SELECT {key}, {column} FROM {table} WHERE {column} <> '' \
                 AND {column} NOT LIKE 's1:%'{unless}"
            )))
            .fetch_all(self.pool())
            .await
            .with_context(|| format!("reading plain values of {place}"))?;
            for (row, value) in plain {
                let sealed_value = self
                    .seal_for_row(sealed.prefix, &row, &place, &value)
                    .await?;
                let done = sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {table} SET {column} = $1 WHERE {key} = $2 AND {column} = $3"
                )))
                .bind(sealed_value)
                .bind(&row)
                .bind(&value)
                .execute(self.pool())
                .await
                .with_context(|| format!("sealing values of {place}"))?;
                changed += done.rows_affected() as usize;
            }
        }
        Ok(changed)
    }

    /// Seals the plain files of a bytes column sealed per submission, one row at a time (a
    /// file may be large); the rows are named by `id`.
    async fn seal_plain_files(
        &self,
        table: &str,
        column: &str,
        place: &str,
        sealed: &inventory::SubmissionSealedColumn,
    ) -> anyhow::Result<usize> {
        let SubmissionOf::Column(owner) = sealed.submission else {
            anyhow::bail!("{place}: a sealed file names its submission");
        };
        let rows: Vec<(i64, i64)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT id, {owner} FROM {table} ORDER BY id"
        )))
        .fetch_all(self.pool())
        .await
        .with_context(|| format!("listing the files of {place}"))?;
        let mut changed = 0;
        for (id, submission) in rows {
            let (stored,): (Vec<u8>,) = sqlx::query_as(AssertSqlSafe(format!(
                "SELECT {column} FROM {table} WHERE id = $1"
            )))
            .bind(id)
            .fetch_one(self.pool())
            .await
            .with_context(|| format!("reading a file of {place}"))?;
            if stored.is_empty() || sealing::is_sealed_bytes(&stored) {
                continue;
            }
            let sealed_file = self
                .seal_bytes_for_submission(submission, place, &stored)
                .await?;
            let done = sqlx::query(AssertSqlSafe(format!(
                "UPDATE {table} SET {column} = $1 WHERE id = $2 AND {column} = $3"
            )))
            .bind(sealed_file)
            .bind(id)
            .bind(stored)
            .execute(self.pool())
            .await
            .with_context(|| format!("sealing a file of {place}"))?;
            changed += done.rows_affected() as usize;
        }
        Ok(changed)
    }
}
