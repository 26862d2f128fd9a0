//! 2-step verification secrets, recovery code digests, and the sessions and sign-ins a member
//! sees on the security page.

use super::{Store, Tx};
use anyhow::Context;
use sqlx::FromRow;

#[derive(Debug, Clone, FromRow)]
pub struct TwoFactorRow {
    /// The secret as stored: sealed (`two_factor::SecretSeal`), or plain from before sealing.
    #[sqlx(rename = "secret")]
    pub stored_secret: String,
    pub created_at: i64,
    pub enabled_at: Option<i64>,
    pub last_used_step: i64,
}

/// A live session as its owner sees it.
#[derive(Debug, Clone, FromRow)]
pub struct SessionRow {
    pub token_hash: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub ip: String,
    pub user_agent: String,
}

#[derive(Debug, Clone, FromRow)]
pub struct SignInRow {
    pub at: i64,
    pub ip: String,
    pub user_agent: String,
}

impl Store {
    pub async fn two_factor_of(&self, user_id: i64) -> anyhow::Result<Option<TwoFactorRow>> {
        sqlx::query_as(
            "SELECT secret, created_at, enabled_at, last_used_step FROM two_factor \
             WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(self.pool())
        .await
        .context("reading a member's 2-step verification")
    }

    /// Stores a (sealed) secret waiting for its first code, unless the member already has one.
    pub async fn insert_pending_two_factor(
        &self,
        user_id: i64,
        secret: &str,
        now: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO two_factor (user_id, secret, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user_id)
        .bind(secret)
        .bind(now)
        .execute(self.pool())
        .await
        .context("storing a pending 2-step verification secret")?;
        Ok(())
    }

    /// The members whose 2-step secret is still stored plain, with that secret: sealed at start.
    pub async fn plain_two_factor_secrets(&self) -> anyhow::Result<Vec<(i64, String)>> {
        sqlx::query_as("SELECT user_id, secret FROM two_factor WHERE secret NOT LIKE 'v1:%'")
            .fetch_all(self.pool())
            .await
            .context("reading plain 2-step verification secrets")
    }

    /// Replaces a member's stored secret by its sealed form, if it is still `plain` (another
    /// node starting at the same time may have sealed it already). Whether it was replaced.
    pub async fn seal_two_factor_secret(
        &self,
        user_id: i64,
        plain: &str,
        sealed: &str,
    ) -> anyhow::Result<bool> {
        let done =
            sqlx::query("UPDATE two_factor SET secret = $1 WHERE user_id = $2 AND secret = $3")
                .bind(sealed)
                .bind(user_id)
                .bind(plain)
                .execute(self.pool())
                .await
                .context("sealing a 2-step verification secret")?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn count_unused_recovery_codes(&self, user_id: i64) -> anyhow::Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user_id)
        .fetch_one(self.pool())
        .await
        .context("counting recovery codes")?;
        Ok(n)
    }

    /// The member's live sessions, most recently used first.
    pub async fn sessions_of_user(
        &self,
        user_id: i64,
        now: i64,
    ) -> anyhow::Result<Vec<SessionRow>> {
        let rows: Vec<SessionRow> = sqlx::query_as(
            "SELECT token_hash, created_at, last_seen_at, ip, user_agent FROM sessions \
             WHERE user_id = $1 AND expires_at > $2 ORDER BY last_seen_at DESC, created_at DESC",
        )
        .bind(user_id)
        .bind(now)
        .fetch_all(self.pool())
        .await
        .context("reading a member's sessions")?;
        let mut opened = Vec::with_capacity(rows.len());
        for mut row in rows {
            row.ip = self
                .open_for_member(user_id, "sessions.ip", &row.ip)
                .await?;
            row.user_agent = self
                .open_for_member(user_id, "sessions.user_agent", &row.user_agent)
                .await?;
            opened.push(row);
        }
        Ok(opened)
    }

    pub async fn recent_sign_ins(
        &self,
        user_id: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<SignInRow>> {
        let rows: Vec<SignInRow> = sqlx::query_as(
            "SELECT at, ip, user_agent FROM sign_ins WHERE user_id = $1 \
             ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .context("reading a member's recent sign-ins")?;
        let mut opened = Vec::with_capacity(rows.len());
        for mut row in rows {
            row.ip = self
                .open_for_member(user_id, "sign_ins.ip", &row.ip)
                .await?;
            row.user_agent = self
                .open_for_member(user_id, "sign_ins.user_agent", &row.user_agent)
                .await?;
            opened.push(row);
        }
        Ok(opened)
    }
}

/// Marks a TOTP time step used, only if it is later than the last one used: the same code (or
/// an older one) cannot be used twice. One statement, so two racing sign-ins cannot both win.
pub async fn use_totp_step(tx: &mut Tx, user_id: i64, step: i64) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE two_factor SET last_used_step = $1 WHERE user_id = $2 AND last_used_step < $1",
    )
    .bind(step)
    .bind(user_id)
    .execute(&mut **tx)
    .await
    .context("using a 2-step verification code")?;
    Ok(done.rows_affected() == 1)
}

pub async fn enable_two_factor(tx: &mut Tx, user_id: i64, now: i64) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE two_factor SET enabled_at = $1 WHERE user_id = $2 AND enabled_at IS NULL",
    )
    .bind(now)
    .bind(user_id)
    .execute(&mut **tx)
    .await
    .context("turning on 2-step verification")?;
    Ok(done.rows_affected() == 1)
}

/// Removes the secret and every recovery code of a member.
pub async fn delete_two_factor(tx: &mut Tx, user_id: i64) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await
        .context("deleting recovery codes")?;
    sqlx::query("DELETE FROM two_factor WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await
        .context("turning off 2-step verification")?;
    Ok(())
}

/// Replaces a member's recovery codes with new digests.
pub async fn replace_recovery_codes(
    tx: &mut Tx,
    user_id: i64,
    digests: &[String],
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await
        .context("deleting old recovery codes")?;
    for digest in digests {
        sqlx::query(
            "INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)",
        )
        .bind(user_id)
        .bind(digest)
        .bind(now)
        .execute(&mut **tx)
        .await
        .context("storing a recovery code")?;
    }
    Ok(())
}

/// Uses a recovery code once: true only for an unused code of this member.
pub async fn use_recovery_code(
    tx: &mut Tx,
    user_id: i64,
    digest: &str,
    now: i64,
) -> anyhow::Result<bool> {
    let row: Option<(i64,)> = sqlx::query_as(
        "UPDATE recovery_codes SET used_at = $1 WHERE id = (SELECT id FROM recovery_codes \
         WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL LIMIT 1) \
         AND used_at IS NULL RETURNING id",
    )
    .bind(now)
    .bind(user_id)
    .bind(digest)
    .fetch_optional(&mut **tx)
    .await
    .context("using a recovery code")?;
    Ok(row.is_some())
}

/// How many sign-ins the member had before, and how many from this user agent (compared
/// opened: the stored ones are sealed, each with its own nonce).
pub async fn sign_ins_from(
    store: &Store,
    tx: &mut Tx,
    user_id: i64,
    user_agent: &str,
) -> anyhow::Result<(i64, i64)> {
    let agents: Vec<(String,)> =
        sqlx::query_as("SELECT user_agent FROM sign_ins WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(&mut **tx)
            .await
            .context("looking for an earlier sign-in from the same device")?;
    let mut same = 0;
    for (stored,) in &agents {
        if store
            .open_for_member(user_id, "sign_ins.user_agent", stored)
            .await?
            == user_agent
        {
            same += 1;
        }
    }
    Ok((agents.len() as i64, same))
}

/// Ends the member's session whose handle (a prefix of the token digest) is given; returns the
/// ended session's digest. Only the member's own sessions can match.
pub async fn delete_session_by_handle(
    tx: &mut Tx,
    user_id: i64,
    handle: &str,
) -> anyhow::Result<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as(
        "DELETE FROM sessions WHERE user_id = $1 AND substr(token_hash, 1, 16) = $2 \
         RETURNING token_hash",
    )
    .bind(user_id)
    .bind(handle)
    .fetch_optional(&mut **tx)
    .await
    .context("ending one session")?;
    Ok(row.map(|(hash,)| hash))
}

/// Ends every session of the member but `keep`; returns the ended sessions' digests.
pub async fn delete_other_sessions(
    tx: &mut Tx,
    user_id: i64,
    keep: &str,
) -> anyhow::Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2 RETURNING token_hash",
    )
    .bind(user_id)
    .bind(keep)
    .fetch_all(&mut **tx)
    .await
    .context("ending the other sessions")?;
    Ok(rows.into_iter().map(|(hash,)| hash).collect())
}
