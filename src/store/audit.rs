//! The audit log's rows and its chain head. Appends lock the head row, so two writers on
//! PostgreSQL take turns; hashing and keyed MACs are computed by `crate::audit`, never here.

use super::{Store, Tx};
use anyhow::Context;
use sqlx::FromRow;

/// One stored audit entry, as written.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: i64,
    pub at: i64,
    pub actor_id: Option<i64>,
    pub subject_id: Option<i64>,
    pub kind: String,
    pub details: String,
    pub prev_hash: String,
    pub entry_hash: String,
    pub mac: String,
}

/// Which entries an audit page shows.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub subject_id: Option<i64>,
    pub actor_id: Option<i64>,
    pub kind: Option<String>,
    pub from: Option<i64>,
    pub until: Option<i64>,
}

/// Takes the next sequence number and the previous entry's hash, locking the head row until
/// the transaction ends (an `UPDATE` takes the row lock on PostgreSQL).
pub async fn advance_audit_head(tx: &mut Tx) -> anyhow::Result<(i64, String)> {
    sqlx::query_as("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
        .fetch_one(&mut **tx)
        .await
        .context("advancing the audit chain's head")
}

/// Writes an entry and moves the head's hash (and its MAC, `head_mac`) to it.
pub async fn append_audit_row(tx: &mut Tx, row: &AuditRow, head_mac: &str) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor_id, subject_id, kind, details, prev_hash, \
         entry_hash, mac) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(row.seq)
    .bind(row.at)
    .bind(row.actor_id)
    .bind(row.subject_id)
    .bind(&row.kind)
    .bind(&row.details)
    .bind(&row.prev_hash)
    .bind(&row.entry_hash)
    .bind(&row.mac)
    .execute(&mut **tx)
    .await
    .context("writing an audit entry")?;
    sqlx::query("UPDATE audit_head SET hash = $1, mac = $3 WHERE id = 1 AND seq = $2")
        .bind(&row.entry_hash)
        .bind(row.seq)
        .bind(head_mac)
        .execute(&mut **tx)
        .await
        .context("moving the audit chain's head")?;
    Ok(())
}

/// Takes `n` sequence numbers at once (the last is returned) and the previous entry's hash,
/// locking the head row like [`advance_audit_head`].
pub async fn advance_audit_head_by(tx: &mut Tx, n: i64) -> anyhow::Result<(i64, String)> {
    sqlx::query_as("UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash")
        .bind(n)
        .fetch_one(&mut **tx)
        .await
        .context("advancing the audit chain's head")
}

impl Store {
    /// Writes consecutive entries, many to a statement, and moves the head's hash (and its
    /// MAC, `head_mac`) to the last.
    pub async fn append_audit_rows(
        &self,
        tx: &mut Tx,
        rows: &[AuditRow],
        head_mac: &str,
    ) -> anyhow::Result<()> {
        let Some(last) = rows.last() else {
            return Ok(());
        };
        // Nine values a row: 500 rows stay under both engines' limits on bound parameters.
        for part in rows.chunks(500) {
            let sql = format!(
                "INSERT INTO audit_log (seq, at, actor_id, subject_id, kind, details, prev_hash, \
                 entry_hash, mac) VALUES {}",
                super::bulk::values_clause(self.kind(), 9, part.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for row in part {
                query = query
                    .bind(row.seq)
                    .bind(row.at)
                    .bind(row.actor_id)
                    .bind(row.subject_id)
                    .bind(row.kind.clone())
                    .bind(row.details.clone())
                    .bind(row.prev_hash.clone())
                    .bind(row.entry_hash.clone())
                    .bind(row.mac.clone());
            }
            query
                .execute(&mut **tx)
                .await
                .context("writing audit entries")?;
        }
        sqlx::query("UPDATE audit_head SET hash = $1, mac = $3 WHERE id = 1 AND seq = $2")
            .bind(&last.entry_hash)
            .bind(last.seq)
            .bind(head_mac)
            .execute(&mut **tx)
            .await
            .context("moving the audit chain's head")?;
        Ok(())
    }
}

const AUDIT_COLUMNS: &str =
    "seq, at, actor_id, subject_id, kind, details, prev_hash, entry_hash, mac";

const AUDIT_FILTER: &str = "($1 IS NULL OR subject_id = $1) AND ($2 IS NULL OR actor_id = $2) \
     AND ($3 IS NULL OR kind = $3) AND ($4 IS NULL OR at >= $4) AND ($5 IS NULL OR at < $5)";

impl Store {
    /// Entries with `seq` after `after`, in chain order, at most `limit` of them.
    pub async fn audit_rows_after(&self, after: i64, limit: i64) -> anyhow::Result<Vec<AuditRow>> {
        let sql =
            format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2");
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(after)
            .bind(limit)
            .fetch_all(self.pool())
            .await
            .context("reading the audit log")
    }

    /// The chain head: the last sequence number given out, the hash it points at, and the MAC
    /// of both (empty before the first append).
    pub async fn audit_head(&self) -> anyhow::Result<(i64, String, String)> {
        sqlx::query_as("SELECT seq, hash, mac FROM audit_head WHERE id = 1")
            .fetch_one(self.pool())
            .await
            .context("reading the audit chain's head")
    }

    /// One page of entries matching `filter`, newest first, and how many match in all.
    pub async fn audit_page(
        &self,
        filter: &AuditFilter,
        limit: i64,
        offset: i64,
    ) -> anyhow::Result<(Vec<AuditRow>, i64)> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE {AUDIT_FILTER} \
             ORDER BY seq DESC LIMIT $6 OFFSET $7"
        );
        let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(filter.subject_id)
            .bind(filter.actor_id)
            .bind(filter.kind.clone())
            .bind(filter.from)
            .bind(filter.until)
            .bind(limit)
            .bind(offset)
            .fetch_all(self.pool())
            .await
            .context("reading a page of the audit log")?;
        let sql = format!("SELECT COUNT(*) FROM audit_log WHERE {AUDIT_FILTER}");
        let (total,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(filter.subject_id)
            .bind(filter.actor_id)
            .bind(filter.kind.clone())
            .bind(filter.from)
            .bind(filter.until)
            .fetch_one(self.pool())
            .await
            .context("counting audit entries")?;
        Ok((rows, total))
    }
}
