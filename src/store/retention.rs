//! Retention: members' relationship state, the sweep's runs and its actions on each kind of
//! personal record, and legal holds. Deciding what happens is `crate::retention`'s (through the
//! core's verdicts); this module only reads the inputs and carries out one action at a time.
//! Every action touches only the records still needing it, so a replayed action changes
//! nothing and reports zero.

use super::{Store, StoreKind, Tx};
use anyhow::Context;
use sqlx::FromRow;

/// A member's relationship with the forum, as the sweep reads it.
#[derive(Debug, Clone, FromRow)]
pub struct RelationshipRow {
    pub id: i64,
    pub created_at: i64,
    pub last_active_at: Option<i64>,
    pub news_subscribed_at: Option<i64>,
    pub news_ended_at: Option<i64>,
    pub closed_at: Option<i64>,
    pub closed_reason: Option<String>,
    pub jurisdiction: Option<String>,
    pub restricted_at: Option<i64>,
}

const RELATIONSHIP_COLUMNS: &str = "id, created_at, last_active_at, news_subscribed_at, \
     news_ended_at, closed_at, closed_reason, jurisdiction, restricted_at";

/// The open sweep run a sweeper works on.
#[derive(Debug, Clone, FromRow)]
pub struct SweepRunRow {
    pub id: i64,
    pub as_of: i64,
    pub after_user_id: i64,
    pub finished_at: Option<i64>,
}

/// What one batch did, added to its run's totals.
#[derive(Debug, Clone, Copy, Default)]
pub struct SweepTotals {
    pub n_subjects: i64,
    pub n_restricted: i64,
    pub n_deleted: i64,
    pub n_anonymized: i64,
    pub n_held: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct HoldRow {
    pub id: i64,
    pub subject_user_id: Option<i64>,
    pub categories: String,
    pub created_from: Option<String>,
    pub created_until: Option<String>,
    pub reason: String,
    pub created_by: Option<i64>,
    pub created_at: i64,
    pub released_by: Option<i64>,
    pub released_at: Option<i64>,
}

pub struct NewHold<'a> {
    pub subject_user_id: Option<i64>,
    pub categories: &'a str,
    pub created_from: Option<&'a str>,
    pub created_until: Option<&'a str>,
    pub reason: &'a str,
    pub created_by: Option<i64>,
    pub now: i64,
}

const HOLD_COLUMNS: &str = "id, subject_user_id, categories, created_from, created_until, \
     reason, created_by, created_at, released_by, released_at";

/// Creation times (epoch seconds, `[from, until)`) whose records a legal hold keeps untouched.
pub type Excluded = [(i64, i64)];

/// `AND NOT (col >= a AND col < b) …` for each held range. The bounds are integers written by
/// us, never text from outside.
fn excluding(column: &str, ranges: &Excluded) -> String {
    ranges
        .iter()
        .map(|(from, until)| format!(" AND NOT ({column} >= {from} AND {column} < {until})"))
        .collect()
}

async fn exec(tx: &mut Tx, sql: String, user_id: i64, what: &'static str) -> anyhow::Result<u64> {
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user_id)
        .execute(&mut **tx)
        .await
        .context(what)?;
    Ok(done.rows_affected())
}

impl Store {
    /// `FOR UPDATE` where the engine has row locks; SQLite's `BEGIN IMMEDIATE` already gives
    /// the transaction the only write lock.
    fn for_update(&self) -> &'static str {
        match self.kind() {
            StoreKind::Sqlite => "",
            StoreKind::Postgres => "FOR UPDATE",
        }
    }

    /// Notes activity; the caller writes at most once per few minutes per member.
    pub async fn touch_last_active(&self, user_id: i64, now: i64) -> anyhow::Result<()> {
        sqlx::query("UPDATE users SET last_active_at = $1 WHERE id = $2")
            .bind(now)
            .bind(user_id)
            .execute(self.pool())
            .await
            .context("noting a member's activity")?;
        Ok(())
    }

    pub async fn relationship(&self, user_id: i64) -> anyhow::Result<Option<RelationshipRow>> {
        let sql = format!("SELECT {RELATIONSHIP_COLUMNS} FROM users WHERE id = $1");
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .fetch_optional(self.pool())
            .await
            .context("reading a member's relationship")
    }

    /// The open sweep run, created (as of `as_of`) if there is none. Several sweepers starting
    /// at once all get the same run.
    pub async fn open_sweep_run(&self, as_of: i64, now: i64) -> anyhow::Result<SweepRunRow> {
        sqlx::query(
            "INSERT INTO sweep_runs (open, as_of, started_at) VALUES (1, $1, $2) \
             ON CONFLICT (open) DO NOTHING",
        )
        .bind(as_of)
        .bind(now)
        .execute(self.pool())
        .await
        .context("opening a sweep run")?;
        sqlx::query_as(
            "SELECT id, as_of, after_user_id, finished_at FROM sweep_runs WHERE open = 1",
        )
        .fetch_one(self.pool())
        .await
        .context("reading the open sweep run")
    }

    /// Locks the run for one batch and returns its cursor as committed by the last batch, from
    /// whichever node ran it.
    pub async fn lock_sweep_run(&self, tx: &mut Tx, run_id: i64) -> anyhow::Result<SweepRunRow> {
        let sql = format!(
            "SELECT id, as_of, after_user_id, finished_at FROM sweep_runs WHERE id = $1 {}",
            self.for_update()
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(run_id)
            .fetch_one(&mut **tx)
            .await
            .context("locking the sweep run")
    }

    /// Closed accounts after `after_user_id` with something left to sweep, in id order.
    pub async fn closed_subjects_after(
        &self,
        tx: &mut Tx,
        after_user_id: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<RelationshipRow>> {
        let sql = format!(
            "SELECT {RELATIONSHIP_COLUMNS} FROM users WHERE id > $1 AND closed_at IS NOT NULL \
             AND anonymized_at IS NULL ORDER BY id LIMIT $2"
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(after_user_id)
            .bind(limit)
            .fetch_all(&mut **tx)
            .await
            .context("reading closed accounts to sweep")
    }

    /// How many closed accounts still have something to sweep (for a progress bar).
    pub async fn count_closed_accounts_to_sweep(&self) -> anyhow::Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM users WHERE closed_at IS NOT NULL AND anonymized_at IS NULL",
        )
        .fetch_one(self.pool())
        .await
        .context("counting closed accounts")?;
        Ok(n)
    }

    /// The id of the shared "deleted user" that anonymized posts are attributed to, created on
    /// first use. Its name has a space, which no member's username can have.
    pub async fn ghost_user(&self, tx: &mut Tx, now: i64) -> anyhow::Result<i64> {
        sqlx::query(
            "INSERT INTO users (username, username_lower, email, email_lower, password_hash, \
             birth_year, created_at, closed_at, closed_reason, restricted_at, anonymized_at) \
             VALUES ('deleted user', 'deleted user', 'deleted-user.invalid', \
             'deleted-user.invalid', '', 0, $1, $1, 'by_staff', NULL, $1) \
             ON CONFLICT (username_lower) DO NOTHING",
        )
        .bind(now)
        .execute(&mut **tx)
        .await
        .context("creating the deleted user")?;
        let (id,): (i64,) =
            sqlx::query_as("SELECT id FROM users WHERE username_lower = 'deleted user'")
                .fetch_one(&mut **tx)
                .await
                .context("reading the deleted user")?;
        Ok(id)
    }
}

/// Ends a member's account; returns false if it was already closed. Its sessions and its
/// product-news subscription end with it: a closed account receives no mail, so a subscription
/// left standing would only keep its data forever.
pub async fn close_account(
    tx: &mut Tx,
    user_id: i64,
    reason: &str,
    now: i64,
) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE users SET closed_at = $1, closed_reason = $2 WHERE id = $3 AND closed_at IS NULL",
    )
    .bind(now)
    .bind(reason)
    .bind(user_id)
    .execute(&mut **tx)
    .await
    .context("closing an account")?;
    sqlx::query(
        "UPDATE users SET news_ended_at = $1 WHERE id = $2 AND news_subscribed_at IS NOT NULL \
         AND (news_ended_at IS NULL OR news_ended_at < news_subscribed_at)",
    )
    .bind(now)
    .bind(user_id)
    .execute(&mut **tx)
    .await
    .context("ending a closed account's subscription")?;
    super::delete_sessions_of_user(tx, user_id).await?;
    Ok(done.rows_affected() == 1)
}

/// Moves the cursor past a batch and adds its totals.
pub async fn advance_sweep_run(
    tx: &mut Tx,
    run_id: i64,
    after_user_id: i64,
    totals: &SweepTotals,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE sweep_runs SET after_user_id = $1, n_subjects = n_subjects + $2, \
         n_restricted = n_restricted + $3, n_deleted = n_deleted + $4, \
         n_anonymized = n_anonymized + $5, n_held = n_held + $6 WHERE id = $7",
    )
    .bind(after_user_id)
    .bind(totals.n_subjects)
    .bind(totals.n_restricted)
    .bind(totals.n_deleted)
    .bind(totals.n_anonymized)
    .bind(totals.n_held)
    .bind(run_id)
    .execute(&mut **tx)
    .await
    .context("moving the sweep's cursor")?;
    Ok(())
}

pub async fn finish_sweep_run(tx: &mut Tx, run_id: i64, now: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE sweep_runs SET finished_at = $1, open = NULL WHERE id = $2")
        .bind(now)
        .bind(run_id)
        .execute(&mut **tx)
        .await
        .context("finishing a sweep run")?;
    Ok(())
}

/// Marks the account record (username, email, birth year, credentials) restricted.
pub async fn restrict_account(tx: &mut Tx, user_id: i64, now: i64) -> anyhow::Result<u64> {
    let sql =
        format!("UPDATE users SET restricted_at = {now} WHERE id = $1 AND restricted_at IS NULL");
    exec(tx, sql, user_id, "restricting an account").await
}

/// Marks a member's posts restricted: pages show a placeholder instead of their text.
pub async fn restrict_posts(
    tx: &mut Tx,
    user_id: i64,
    now: i64,
    held: &Excluded,
) -> anyhow::Result<u64> {
    let sql = format!(
        "UPDATE posts SET restricted_at = {now} WHERE user_id = $1 AND restricted_at IS NULL{}",
        excluding("created_at", held)
    );
    exec(tx, sql, user_id, "restricting posts").await
}

pub async fn anonymize_username(tx: &mut Tx, user_id: i64) -> anyhow::Result<u64> {
    let name = format!("deleted-{user_id}");
    let done = sqlx::query(
        "UPDATE users SET username = $1, username_lower = $1 \
         WHERE id = $2 AND username_lower <> $1",
    )
    .bind(&name)
    .bind(user_id)
    .execute(&mut **tx)
    .await
    .context("anonymizing a username")?;
    Ok(done.rows_affected())
}

/// Deletes the address (a unique placeholder keeps the column's rule) and the mail to it.
pub async fn delete_email(tx: &mut Tx, user_id: i64, held: &Excluded) -> anyhow::Result<u64> {
    let placeholder = format!("deleted-{user_id}.invalid");
    let done = sqlx::query(
        "UPDATE users SET email = $1, email_lower = $1 WHERE id = $2 AND email_lower <> $1",
    )
    .bind(&placeholder)
    .bind(user_id)
    .execute(&mut **tx)
    .await
    .context("deleting an email address")?;
    let sql = format!(
        "DELETE FROM mail_outbox WHERE user_id = $1{}",
        excluding("created_at", held)
    );
    Ok(done.rows_affected() + exec(tx, sql, user_id, "deleting mail to a member").await?)
}

pub async fn delete_birth_year(tx: &mut Tx, user_id: i64) -> anyhow::Result<u64> {
    exec(
        tx,
        "UPDATE users SET birth_year = 0 WHERE id = $1 AND birth_year <> 0".into(),
        user_id,
        "deleting a birth year",
    )
    .await
}

/// Deletes the password hash, 2-step secrets, recovery codes, account tokens and sessions.
pub async fn delete_credentials(tx: &mut Tx, user_id: i64) -> anyhow::Result<u64> {
    let mut n = 0;
    for (sql, what) in [
        (
            "UPDATE users SET password_hash = '' WHERE id = $1 AND password_hash <> ''",
            "deleting a password hash",
        ),
        (
            "DELETE FROM two_factor WHERE user_id = $1",
            "deleting a 2-step secret",
        ),
        (
            "DELETE FROM recovery_codes WHERE user_id = $1",
            "deleting recovery codes",
        ),
        (
            "DELETE FROM account_tokens WHERE user_id = $1",
            "deleting account tokens",
        ),
        (
            "DELETE FROM sessions WHERE user_id = $1",
            "deleting sessions",
        ),
    ] {
        n += exec(tx, sql.to_string(), user_id, what).await?;
    }
    Ok(n)
}

/// Empties one device column (`ip` or `user_agent`) in posts, sign-ins and sessions.
pub async fn delete_device_column(
    tx: &mut Tx,
    user_id: i64,
    column: DeviceColumn,
    held: &Excluded,
) -> anyhow::Result<u64> {
    let column = match column {
        DeviceColumn::Ip => "ip",
        DeviceColumn::UserAgent => "user_agent",
    };
    let mut n = 0;
    for (table, created) in [
        ("posts", "created_at"),
        ("sign_ins", "at"),
        ("sessions", "created_at"),
    ] {
        let sql = format!(
            "UPDATE {table} SET {column} = '' WHERE user_id = $1 AND {column} <> ''{}",
            excluding(created, held)
        );
        n += exec(tx, sql, user_id, "deleting device data").await?;
    }
    Ok(n)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceColumn {
    Ip,
    UserAgent,
}

/// Attributes a member's posts and topics to the shared deleted user; the posts lose their
/// device data and their restriction (they are no longer anyone's).
pub async fn anonymize_posts(
    tx: &mut Tx,
    user_id: i64,
    ghost_id: i64,
    held: &Excluded,
) -> anyhow::Result<u64> {
    let sql = format!(
        "UPDATE posts SET user_id = {ghost_id}, ip = '', user_agent = '', restricted_at = NULL \
         WHERE user_id = $1{}",
        excluding("created_at", held)
    );
    let n = exec(tx, sql, user_id, "anonymizing posts").await?;
    // The profile text is public content about the person: it goes with the posts.
    let bio = exec(
        tx,
        "UPDATE users SET bio = '' WHERE id = $1 AND bio <> ''".into(),
        user_id,
        "blanking a profile text",
    )
    .await?;
    let sql = format!(
        "UPDATE topics SET user_id = {ghost_id} WHERE user_id = $1{}",
        excluding("created_at", held)
    );
    Ok(n + bio + exec(tx, sql, user_id, "anonymizing topics").await?)
}

/// Records that nothing of this member is left to sweep.
pub async fn mark_anonymized(tx: &mut Tx, user_id: i64, now: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE users SET anonymized_at = $1 WHERE id = $2")
        .bind(now)
        .bind(user_id)
        .execute(&mut **tx)
        .await
        .context("marking a member swept")?;
    Ok(())
}

pub async fn insert_hold(tx: &mut Tx, hold: &NewHold<'_>) -> anyhow::Result<i64> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO legal_holds (subject_user_id, categories, created_from, created_until, \
         reason, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(hold.subject_user_id)
    .bind(hold.categories)
    .bind(hold.created_from)
    .bind(hold.created_until)
    .bind(hold.reason)
    .bind(hold.created_by)
    .bind(hold.now)
    .fetch_one(&mut **tx)
    .await
    .context("storing a legal hold")?;
    Ok(id)
}

/// Releases a standing hold; returns false if there is none with this id.
pub async fn release_hold(
    tx: &mut Tx,
    hold_id: i64,
    released_by: Option<i64>,
    now: i64,
) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE legal_holds SET released_at = $1, released_by = $2 \
         WHERE id = $3 AND released_at IS NULL",
    )
    .bind(now)
    .bind(released_by)
    .bind(hold_id)
    .execute(&mut **tx)
    .await
    .context("releasing a legal hold")?;
    Ok(done.rows_affected() == 1)
}

impl Store {
    /// Every hold, standing ones first, newest first.
    pub async fn holds(&self) -> anyhow::Result<Vec<HoldRow>> {
        let sql = format!(
            "SELECT {HOLD_COLUMNS} FROM legal_holds \
             ORDER BY CASE WHEN released_at IS NULL THEN 0 ELSE 1 END, id DESC"
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await
            .context("listing legal holds")
    }

    /// The holds standing now, read inside a sweep batch.
    pub async fn standing_holds(&self, tx: &mut Tx) -> anyhow::Result<Vec<HoldRow>> {
        let sql = format!("SELECT {HOLD_COLUMNS} FROM legal_holds WHERE released_at IS NULL");
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut **tx)
            .await
            .context("reading standing legal holds")
    }
}
