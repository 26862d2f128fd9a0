//! Published policy versions (written once, never updated), members' acknowledgements of a
//! material version, and the cursor of each run that queues change notices. It stores and
//! reads; deciding what is material or what a notice says belongs to `crate::policy`.

use super::{Store, Tx, unique_violation};
use anyhow::Context;
use sqlx::FromRow;

/// One published version, with the file exactly as it was published.
#[derive(Debug, Clone, FromRow)]
pub struct PolicyVersionRow {
    pub id: i64,
    pub version_label: String,
    /// `YYYY-MM-DD`.
    pub effective_on: String,
    pub published_at: i64,
    pub toml_text: String,
    pub sha256: String,
    /// 1 when the change from the version before it was material.
    pub material: i64,
    /// The changes from the version before, as JSON.
    pub diff_json: String,
}

/// A version without its text, for lists.
#[derive(Debug, Clone, FromRow)]
pub struct PolicyVersionSummary {
    pub id: i64,
    pub version_label: String,
    pub effective_on: String,
    pub published_at: i64,
    pub sha256: String,
    pub material: i64,
}

pub struct NewPolicyVersion<'a> {
    pub version_label: &'a str,
    pub effective_on: &'a str,
    pub published_at: i64,
    pub toml_text: &'a str,
    pub sha256: &'a str,
    pub material: bool,
    pub diff_json: &'a str,
}

/// A member to notify: only the id goes to logs; the address only into the outbox.
#[derive(Debug, Clone, FromRow)]
pub struct NoticeRecipient {
    pub id: i64,
    pub username: String,
    pub email: String,
}

/// Where a notice run stands.
#[derive(Debug, Clone, FromRow)]
pub struct NoticeRun {
    pub version_id: i64,
    pub after_user_id: i64,
    pub n_queued: i64,
    pub finished_at: Option<i64>,
}

const VERSION_COLUMNS: &str =
    "id, version_label, effective_on, published_at, toml_text, sha256, material, diff_json";
const SUMMARY_COLUMNS: &str = "id, version_label, effective_on, published_at, sha256, material";

/// The most recently published version, read inside the publishing transaction.
pub async fn latest_policy_version_in(tx: &mut Tx) -> anyhow::Result<Option<PolicyVersionRow>> {
    let sql = format!("SELECT {VERSION_COLUMNS} FROM policy_versions ORDER BY id DESC LIMIT 1");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_optional(&mut **tx)
        .await
        .context("reading the latest policy version")
}

/// Stores a version and, when it is material, opens its notice run in the same transaction,
/// so that a version whose notices are owed can never exist without the run that owes them.
pub async fn insert_policy_version(
    tx: &mut Tx,
    version: &NewPolicyVersion<'_>,
) -> anyhow::Result<i64> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO policy_versions (version_label, effective_on, published_at, toml_text, \
         sha256, material, diff_json) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(version.version_label)
    .bind(version.effective_on)
    .bind(version.published_at)
    .bind(version.toml_text)
    .bind(version.sha256)
    .bind(i64::from(version.material))
    .bind(version.diff_json)
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| {
        unique_violation(
            e,
            &[("version_label", "version label")],
            "storing a policy version",
        )
    })?;
    if version.material {
        sqlx::query("INSERT INTO policy_notice_runs (version_id, created_at) VALUES ($1, $2)")
            .bind(id)
            .bind(version.published_at)
            .execute(&mut **tx)
            .await
            .context("opening a policy notice run")?;
    }
    Ok(id)
}

impl Store {
    pub async fn policy_version(&self, id: i64) -> anyhow::Result<Option<PolicyVersionRow>> {
        let sql = format!("SELECT {VERSION_COLUMNS} FROM policy_versions WHERE id = $1");
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .context("reading a policy version")
    }

    /// The published version with this label (labels are unique), as consent records name it.
    pub async fn policy_version_by_label(
        &self,
        label: &str,
    ) -> anyhow::Result<Option<PolicyVersionRow>> {
        let sql = format!("SELECT {VERSION_COLUMNS} FROM policy_versions WHERE version_label = $1");
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(label)
            .fetch_optional(self.pool())
            .await
            .context("reading a policy version by its label")
    }

    /// Every published version, newest first.
    pub async fn policy_versions(&self) -> anyhow::Result<Vec<PolicyVersionSummary>> {
        let sql = format!("SELECT {SUMMARY_COLUMNS} FROM policy_versions ORDER BY id DESC");
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await
            .context("listing policy versions")
    }

    /// The id of the version in force on `today` (`YYYY-MM-DD`): the latest effective one.
    pub async fn policy_version_in_force(&self, today: &str) -> anyhow::Result<Option<i64>> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT id FROM policy_versions WHERE effective_on <= $1 \
             ORDER BY effective_on DESC, id DESC LIMIT 1",
        )
        .bind(today)
        .fetch_optional(self.pool())
        .await
        .context("finding the policy version in force")?;
        Ok(row.map(|(id,)| id))
    }

    /// The latest material version, if the member has not acknowledged it.
    pub async fn unacknowledged_material_version(
        &self,
        user_id: i64,
    ) -> anyhow::Result<Option<PolicyVersionSummary>> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM policy_versions v \
             WHERE v.id = (SELECT MAX(id) FROM policy_versions WHERE material = 1) \
             AND NOT EXISTS (SELECT 1 FROM policy_acknowledgements a \
             WHERE a.version_id = v.id AND a.user_id = $1)"
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .fetch_optional(self.pool())
            .await
            .context("checking a member's policy acknowledgement")
    }

    /// Records that a member read the notice of a version; acknowledging twice keeps the first.
    pub async fn acknowledge_policy_version(
        &self,
        user_id: i64,
        version_id: i64,
        now: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO policy_acknowledgements (user_id, version_id, acknowledged_at) \
             VALUES ($1, $2, $3) ON CONFLICT (user_id, version_id) DO NOTHING",
        )
        .bind(user_id)
        .bind(version_id)
        .bind(now)
        .execute(self.pool())
        .await
        .context("recording a policy acknowledgement")?;
        Ok(())
    }

    /// Versions whose notices are not all queued yet.
    pub async fn unfinished_notice_runs(&self) -> anyhow::Result<Vec<i64>> {
        let rows: Vec<(i64,)> = sqlx::query_as(
            "SELECT version_id FROM policy_notice_runs WHERE finished_at IS NULL \
             ORDER BY version_id",
        )
        .fetch_all(self.pool())
        .await
        .context("listing unfinished policy notice runs")?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    pub async fn notice_run(&self, version_id: i64) -> anyhow::Result<Option<NoticeRun>> {
        sqlx::query_as(
            "SELECT version_id, after_user_id, n_queued, finished_at FROM policy_notice_runs \
             WHERE version_id = $1",
        )
        .bind(version_id)
        .fetch_optional(self.pool())
        .await
        .context("reading a policy notice run")
    }

    /// How many notices of a version each member has in the outbox, by member id.
    pub async fn policy_notices_per_user(
        &self,
        version_id: i64,
    ) -> anyhow::Result<Vec<(i64, i64)>> {
        sqlx::query_as(
            "SELECT user_id, COUNT(*) FROM mail_outbox WHERE idempotency_key LIKE $1 \
             AND user_id IS NOT NULL GROUP BY user_id ORDER BY user_id",
        )
        .bind(format!("policy-notice:{version_id}:%"))
        .fetch_all(self.pool())
        .await
        .context("counting policy notices")
    }

    /// The ids of the members who have an email address.
    pub async fn user_ids_with_email(&self) -> anyhow::Result<Vec<i64>> {
        let rows: Vec<(i64,)> =
            sqlx::query_as("SELECT id FROM users WHERE email <> '' ORDER BY id")
                .fetch_all(self.pool())
                .await
                .context("listing members with an address")?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}

/// Takes the run of a version for this transaction. On PostgreSQL a run another node is
/// working on is skipped (`None`), so two nodes never queue the same batch at once.
pub async fn lock_notice_run(
    store: &Store,
    tx: &mut Tx,
    version_id: i64,
) -> anyhow::Result<Option<NoticeRun>> {
    let sql = format!(
        "SELECT version_id, after_user_id, n_queued, finished_at FROM policy_notice_runs \
         WHERE version_id = $1 {}",
        store.skip_locked()
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(version_id)
        .fetch_optional(&mut **tx)
        .await
        .context("taking a policy notice run")
}

/// The next members with an address after `after_user_id`, in id order.
pub async fn notice_recipients_after(
    store: &Store,
    tx: &mut Tx,
    after_user_id: i64,
    limit: i64,
) -> anyhow::Result<Vec<NoticeRecipient>> {
    let rows: Vec<NoticeRecipient> = sqlx::query_as(
        "SELECT id, username, email FROM users WHERE id > $1 AND email <> '' \
         ORDER BY id LIMIT $2",
    )
    .bind(after_user_id)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
    .context("reading the next members to notify")?;
    let mut opened = Vec::with_capacity(rows.len());
    for mut row in rows {
        row.email = store
            .open_for_member(row.id, super::USERS_EMAIL, &row.email)
            .await?;
        opened.push(row);
    }
    Ok(opened)
}

/// Moves a run's cursor past a batch; `finished_at` closes it.
pub async fn advance_notice_run(
    tx: &mut Tx,
    version_id: i64,
    after_user_id: i64,
    n_queued: i64,
    finished_at: Option<i64>,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE policy_notice_runs SET after_user_id = $1, n_queued = n_queued + $2, \
         finished_at = $3 WHERE version_id = $4",
    )
    .bind(after_user_id)
    .bind(n_queued)
    .bind(finished_at)
    .bind(version_id)
    .execute(&mut **tx)
    .await
    .context("advancing a policy notice run")?;
    Ok(())
}
