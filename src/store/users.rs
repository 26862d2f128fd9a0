//! Accounts, sessions, sign-in records and single-use account tokens.

use super::{Store, Tx, unique_violation};
use anyhow::Context;
use sqlx::FromRow;

#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub password_hash: String,
    /// Opened from `birth_year_stored` (0 when it is erased or its key is gone).
    #[sqlx(skip)]
    pub birth_year: i64,
    /// The birth year as stored: sealed with the member's key (`USERS_BIRTH_YEAR`).
    #[sqlx(rename = "birth_year")]
    pub birth_year_stored: String,
    pub role: String,
    pub bio: String,
    pub email_verified_at: Option<i64>,
    pub created_at: i64,
    pub password_changed_at: Option<i64>,
    /// When the account was closed; a closed account signs in and receives mail no more.
    pub closed_at: Option<i64>,
}

pub struct NewUser<'a> {
    pub username: &'a str,
    pub username_lower: &'a str,
    pub email: &'a str,
    pub email_lower: &'a str,
    pub password_hash: &'a str,
    pub birth_year: i64,
    pub created_at: i64,
}

/// The signed-in member behind a session token.
#[derive(Debug, Clone, FromRow)]
pub struct SessionUser {
    pub user_id: i64,
    pub username: String,
    pub role: String,
    pub email_verified_at: Option<i64>,
    pub csrf_token: String,
    pub last_seen_at: i64,
    /// When the member last signed in or entered the password again on this session.
    pub authenticated_at: i64,
    /// 1 when 2-step verification is on for the account.
    pub two_factor: i64,
    /// 1 for a minor who needs a parent's consent; posting waits for `parent_consented_at`.
    pub parent_consent_needed: i64,
    pub parent_consented_at: Option<i64>,
}

pub struct NewSession<'a> {
    pub token_hash: &'a str,
    pub user_id: i64,
    pub csrf_token: &'a str,
    pub now: i64,
    pub expires_at: i64,
    pub ip: &'a str,
    pub user_agent: &'a str,
}

const USER_COLUMNS: &str = "id, username, email, password_hash, birth_year, role, bio, \
                            email_verified_at, created_at, password_changed_at, closed_at";

/// Inserts a member: the address sealed with the member's new key, and its keyed hash for
/// lookups (`email_lower` is the address in lower case, hashed here; never stored).
pub async fn insert_user(store: &Store, tx: &mut Tx, user: &NewUser<'_>) -> anyhow::Result<i64> {
    let lookup = store.lookup_hash(user.email_lower)?;
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO users (username, username_lower, email, email_lookup, password_hash, \
         birth_year, created_at, password_changed_at) VALUES ($1, $2, '', $3, $4, $5, $6, $6) \
         RETURNING id",
    )
    .bind(user.username)
    .bind(user.username_lower)
    .bind(&lookup)
    .bind(user.password_hash)
    .bind("")
    .bind(user.created_at)
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| {
        unique_violation(
            e,
            &[
                ("username_lower", "username"),
                ("email_lookup", "email"),
                ("email_lower", "email"),
            ],
            "inserting a user",
        )
    })?;
    let sealed = store.seal_for_member(id, USERS_EMAIL, user.email).await?;
    let year = store
        .seal_for_member(id, USERS_BIRTH_YEAR, &user.birth_year.to_string())
        .await?;
    sqlx::query("UPDATE users SET email = $1, birth_year = $2 WHERE id = $3")
        .bind(sealed)
        .bind(year)
        .bind(id)
        .execute(&mut **tx)
        .await
        .context("sealing a new member's address")?;
    Ok(id)
}

/// A user read inside the caller's transaction.
pub async fn user_by_id_in(store: &Store, tx: &mut Tx, id: i64) -> anyhow::Result<Option<UserRow>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    let row = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .context("reading a user by id")?;
    store.opened_user(row).await
}

/// Where a member's address is kept, as the associated data of its seal names it.
pub const USERS_EMAIL: &str = "users.email";
/// Where a member's birth year is kept (sealed, in decimal).
pub const USERS_BIRTH_YEAR: &str = "users.birth_year";

/// Sets a text column of a member's row (a name from the inventory, never user input) and
/// returns its value before, `None` when there is no such member.
pub async fn rectify_user_column(
    tx: &mut Tx,
    column: &'static str,
    user_id: i64,
    value: &str,
) -> anyhow::Result<Option<String>> {
    let old: Option<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {column} FROM users WHERE id = $1 AND erased_at IS NULL"
    )))
    .bind(user_id)
    .fetch_optional(&mut **tx)
    .await
    .context("reading a field to rectify")?;
    let Some((old,)) = old else {
        return Ok(None);
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE users SET {column} = $1 WHERE id = $2"
    )))
    .bind(value)
    .bind(user_id)
    .execute(&mut **tx)
    .await
    .context("rectifying a field")?;
    Ok(Some(old))
}

impl Store {
    /// A member's row with the address opened (empty when their key is gone).
    pub(crate) async fn opened_user(
        &self,
        row: Option<UserRow>,
    ) -> anyhow::Result<Option<UserRow>> {
        let Some(mut row) = row else {
            return Ok(None);
        };
        row.email = self
            .open_for_member(row.id, USERS_EMAIL, &row.email)
            .await?;
        row.birth_year = self
            .birth_year_opened(row.id, &row.birth_year_stored)
            .await?;
        Ok(Some(row))
    }

    pub async fn user_by_id(&self, id: i64) -> anyhow::Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .context("reading a user by id")?;
        self.opened_user(row).await
    }

    pub async fn user_by_username(&self, username_lower: &str) -> anyhow::Result<Option<UserRow>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE username_lower = $1 AND erased_at IS NULL"
        );
        let row = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(username_lower)
            .fetch_optional(self.pool())
            .await
            .context("reading a user by username")?;
        self.opened_user(row).await
    }

    /// The member whose address, in lower case, is `email_lower`: found by its keyed hash.
    pub async fn user_by_email(&self, email_lower: &str) -> anyhow::Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email_lookup = $1");
        let row = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(self.lookup_hash(email_lower)?)
            .fetch_optional(self.pool())
            .await
            .context("reading a user by email")?;
        self.opened_user(row).await
    }

    /// Seals what was stored plain before sealing existed (R8): members' addresses (and their
    /// lookup column, which held the address in lower case, becomes its keyed hash) and every
    /// other column of `inventory::SEALED`. Idempotent, and safe with several nodes starting
    /// at once (each row changes only from the value read). Returns how many rows changed.
    pub async fn seal_plain_member_fields(&self) -> anyhow::Result<usize> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT id, email, email_lookup FROM users WHERE erased_at IS NULL \
             AND anonymized_at IS NULL AND (email NOT LIKE 's1:%' OR email_lookup NOT LIKE 'k1:%') \
             ORDER BY id",
        )
        .fetch_all(self.pool())
        .await
        .context("reading plain addresses")?;
        let mut changed = 0;
        for (id, email, lookup) in rows {
            let sealed = self.seal_for_member(id, USERS_EMAIL, &email).await?;
            let hashed = if lookup.starts_with(crate::sealing::LOOKUP) {
                lookup.clone()
            } else {
                self.lookup_hash(&lookup.to_lowercase())?
            };
            let done = sqlx::query(
                "UPDATE users SET email = $1, email_lookup = $2 \
                 WHERE id = $3 AND email = $4 AND email_lookup = $5",
            )
            .bind(sealed)
            .bind(hashed)
            .bind(id)
            .bind(&email)
            .bind(&lookup)
            .execute(self.pool())
            .await
            .context("sealing an address")?;
            changed += done.rows_affected() as usize;
        }
        changed += self.rebind_moved_post_devices().await?;
        // The other sealed columns: each member's distinct plain values, sealed once each
        // (rows holding the same value get the same sealed text).
        for sealed in crate::inventory::SEALED {
            if (sealed.table, sealed.column) == ("users", "email") {
                continue;
            }
            let (table, column, member) = (sealed.table, sealed.column, sealed.member);
            let plain: Vec<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT DISTINCT {member}, {column} FROM {table} WHERE {member} IS NOT NULL \
                 AND {column} <> '' AND {column} NOT LIKE 's1:%'"
            )))
            .fetch_all(self.pool())
            .await
            .with_context(|| format!("reading plain values of {table}.{column}"))?;
            let place = format!("{table}.{column}");
            for (user_id, value) in plain {
                let sealed = self.seal_for_member(user_id, &place, &value).await?;
                let done = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {table} SET {column} = $1 WHERE {member} = $2 AND {column} = $3"
                )))
                .bind(sealed)
                .bind(user_id)
                .bind(&value)
                .execute(self.pool())
                .await
                .with_context(|| format!("sealing values of {table}.{column}"))?;
                changed += done.rows_affected() as usize;
            }
        }
        Ok(changed)
    }

    /// Migration 0031 moved posts' device data to `post_devices`, marking what was sealed for
    /// `posts.ip` and `posts.user_agent` with `posts:`: each such value is opened where it was
    /// sealed and sealed again for its new place (a value whose member's key is gone becomes
    /// empty, as it read before). Idempotent; each row changes only from the value read.
    async fn rebind_moved_post_devices(&self) -> anyhow::Result<usize> {
        const MOVED: &str = "posts:";
        let mut changed = 0;
        for column in ["ip", "user_agent"] {
            let moved: Vec<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT DISTINCT user_id, {column} FROM post_devices WHERE {column} LIKE 'posts:%'"
            )))
            .fetch_all(self.pool())
            .await
            .context("reading moved device data")?;
            let (old_place, new_place) =
                (format!("posts.{column}"), format!("post_devices.{column}"));
            for (user_id, stored) in moved {
                let sealed = stored.strip_prefix(MOVED).unwrap_or(&stored);
                let plain = self.open_for_member(user_id, &old_place, sealed).await?;
                let resealed = if plain.is_empty() {
                    String::new()
                } else {
                    self.seal_for_member(user_id, &new_place, &plain).await?
                };
                let done = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE post_devices SET {column} = $1 WHERE user_id = $2 AND {column} = $3"
                )))
                .bind(resealed)
                .bind(user_id)
                .bind(&stored)
                .execute(self.pool())
                .await
                .context("sealing moved device data")?;
                changed += done.rows_affected() as usize;
            }
        }
        Ok(changed)
    }

    pub async fn set_role(&self, user_id: i64, role: &str) -> anyhow::Result<bool> {
        let done = sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
            .bind(role)
            .bind(user_id)
            .execute(self.pool())
            .await
            .context("changing a user's role")?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn set_bio(&self, user_id: i64, bio: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE users SET bio = $1 WHERE id = $2")
            .bind(bio)
            .bind(user_id)
            .execute(self.pool())
            .await
            .context("changing a user's bio")?;
        Ok(())
    }

    pub async fn count_users(&self) -> anyhow::Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
            .fetch_one(self.pool())
            .await
            .context("counting users")?;
        Ok(n)
    }

    /// The member behind a session token hash, if the session is still valid at `now`.
    pub async fn session_user(
        &self,
        token_hash: &str,
        now: i64,
    ) -> anyhow::Result<Option<SessionUser>> {
        sqlx::query_as(
            "SELECT s.user_id, u.username, u.role, u.email_verified_at, s.csrf_token, \
             s.last_seen_at, s.authenticated_at, (SELECT COUNT(*) FROM two_factor t WHERE t.user_id = u.id \
             AND t.enabled_at IS NOT NULL) AS two_factor, u.parent_consent_needed, \
             u.parent_consented_at \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(self.pool())
        .await
        .context("reading a session")
    }

    /// Slides a session's expiry forward and notes the member's last activity (T1); called at
    /// most every few minutes per session.
    pub async fn touch_session(
        &self,
        token_hash: &str,
        user_id: i64,
        now: i64,
        expires_at: i64,
    ) -> anyhow::Result<()> {
        sqlx::query("UPDATE sessions SET last_seen_at = $1, expires_at = $2 WHERE token_hash = $3")
            .bind(now)
            .bind(expires_at)
            .bind(token_hash)
            .execute(self.pool())
            .await
            .context("refreshing a session")?;
        self.touch_last_active(user_id, now).await
    }
}

/// Notes that the member of this session just proved who they are again (password re-entry).
pub async fn mark_session_authenticated(
    tx: &mut Tx,
    token_hash: &str,
    user_id: i64,
    now: i64,
) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE sessions SET authenticated_at = $1 WHERE token_hash = $2 AND user_id = $3",
    )
    .bind(now)
    .bind(token_hash)
    .bind(user_id)
    .execute(&mut **tx)
    .await
    .context("marking a session re-authenticated")?;
    Ok(done.rows_affected() == 1)
}

/// Ends one session; returns its member, if the session existed.
pub async fn delete_session(tx: &mut Tx, token_hash: &str) -> anyhow::Result<Option<i64>> {
    let row: Option<(i64,)> =
        sqlx::query_as("DELETE FROM sessions WHERE token_hash = $1 RETURNING user_id")
            .bind(token_hash)
            .fetch_optional(&mut **tx)
            .await
            .context("deleting a session")?;
    Ok(row.map(|(id,)| id))
}

/// Changes a member's role; returns the role they had, or `None` if there is no such member.
pub async fn set_user_role(
    tx: &mut Tx,
    user_id: i64,
    role: &str,
) -> anyhow::Result<Option<String>> {
    let previous: Option<(String,)> = sqlx::query_as("SELECT role FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(&mut **tx)
        .await
        .context("reading a user's role")?;
    if previous.is_some() {
        sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
            .bind(role)
            .bind(user_id)
            .execute(&mut **tx)
            .await
            .context("changing a user's role")?;
    }
    Ok(previous.map(|(r,)| r))
}

/// Opens a session and records the sign-in with its IP address and user agent, both sealed
/// with the member's key.
pub async fn insert_session(
    store: &Store,
    tx: &mut Tx,
    session: &NewSession<'_>,
) -> anyhow::Result<()> {
    let member = session.user_id;
    let session_ip = store
        .seal_for_member(member, "sessions.ip", session.ip)
        .await?;
    let session_agent = store
        .seal_for_member(member, "sessions.user_agent", session.user_agent)
        .await?;
    let sign_in_ip = store
        .seal_for_member(member, "sign_ins.ip", session.ip)
        .await?;
    let sign_in_agent = store
        .seal_for_member(member, "sign_ins.user_agent", session.user_agent)
        .await?;
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, last_seen_at, \
         authenticated_at, expires_at, ip, user_agent) VALUES ($1, $2, $3, $4, $4, $4, $5, $6, $7)",
    )
    .bind(session.token_hash)
    .bind(session.user_id)
    .bind(session.csrf_token)
    .bind(session.now)
    .bind(session.expires_at)
    .bind(session_ip)
    .bind(session_agent)
    .execute(&mut **tx)
    .await
    .context("inserting a session")?;
    sqlx::query("INSERT INTO sign_ins (user_id, at, ip, user_agent) VALUES ($1, $2, $3, $4)")
        .bind(session.user_id)
        .bind(session.now)
        .bind(sign_in_ip)
        .bind(sign_in_agent)
        .execute(&mut **tx)
        .await
        .context("recording a sign-in")?;
    sqlx::query("UPDATE users SET last_active_at = $1 WHERE id = $2")
        .bind(session.now)
        .bind(session.user_id)
        .execute(&mut **tx)
        .await
        .context("noting a member's activity")?;
    Ok(())
}

/// Ends every session of a member, for example after a password change.
pub async fn delete_sessions_of_user(tx: &mut Tx, user_id: i64) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await
        .context("ending a user's sessions")?;
    Ok(())
}

pub async fn set_password_hash(
    tx: &mut Tx,
    user_id: i64,
    hash: &str,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE users SET password_hash = $1, password_changed_at = $2 WHERE id = $3")
        .bind(hash)
        .bind(now)
        .bind(user_id)
        .execute(&mut **tx)
        .await
        .context("changing a password")?;
    Ok(())
}

pub async fn mark_email_verified(tx: &mut Tx, user_id: i64, now: i64) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE users SET email_verified_at = COALESCE(email_verified_at, $1) WHERE id = $2",
    )
    .bind(now)
    .bind(user_id)
    .execute(&mut **tx)
    .await
    .context("marking an email address verified")?;
    Ok(())
}

pub async fn insert_account_token(
    tx: &mut Tx,
    token_hash: &str,
    user_id: i64,
    purpose: &str,
    now: i64,
    expires_at: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO account_tokens (token_hash, user_id, purpose, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(purpose)
    .bind(now)
    .bind(expires_at)
    .execute(&mut **tx)
    .await
    .context("storing an account token")?;
    Ok(())
}

/// Marks a token used and returns its user, only if it exists, has this purpose, is unused and
/// unexpired. One statement, so two clicks on the same link cannot both succeed.
pub async fn consume_account_token(
    tx: &mut Tx,
    token_hash: &str,
    purpose: &str,
    now: i64,
) -> anyhow::Result<Option<i64>> {
    let row: Option<(i64,)> = sqlx::query_as(
        "UPDATE account_tokens SET used_at = $1 WHERE token_hash = $2 AND purpose = $3 \
         AND used_at IS NULL AND expires_at > $1 RETURNING user_id",
    )
    .bind(now)
    .bind(token_hash)
    .bind(purpose)
    .fetch_optional(&mut **tx)
    .await
    .context("using an account token")?;
    Ok(row.map(|(id,)| id))
}

impl Store {
    /// Whether a token would be accepted now, without using it (to show the form it guards).
    pub async fn account_token_is_valid(
        &self,
        token_hash: &str,
        purpose: &str,
        now: i64,
    ) -> anyhow::Result<bool> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT user_id FROM account_tokens WHERE token_hash = $1 AND purpose = $2 \
             AND used_at IS NULL AND expires_at > $3",
        )
        .bind(token_hash)
        .bind(purpose)
        .bind(now)
        .fetch_optional(self.pool())
        .await
        .context("checking an account token")?;
        Ok(row.is_some())
    }
}

/// Where a pending new address waits (on its email-change token), as its seal names it.
pub const ACCOUNT_TOKENS_NEW_EMAIL: &str = "account_tokens.new_email";

/// Stores a single-use email-change token (only its digest) with the new address sealed under
/// the member's key.
#[allow(clippy::too_many_arguments)]
pub async fn insert_email_change_token(
    store: &Store,
    tx: &mut Tx,
    token_hash: &str,
    user_id: i64,
    purpose: &str,
    new_email: &str,
    now: i64,
    expires_at: i64,
) -> anyhow::Result<()> {
    let sealed = store
        .seal_for_member(user_id, ACCOUNT_TOKENS_NEW_EMAIL, new_email)
        .await?;
    sqlx::query(
        "INSERT INTO account_tokens (token_hash, user_id, purpose, created_at, expires_at, \
         new_email) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(purpose)
    .bind(now)
    .bind(expires_at)
    .bind(sealed)
    .execute(&mut **tx)
    .await
    .context("storing an email-change token")?;
    Ok(())
}

/// Uses an email-change token (unused, unexpired, of this purpose) in one statement and returns
/// its member and the new address, opened (empty when the member's key is gone).
pub async fn consume_email_change_token(
    store: &Store,
    tx: &mut Tx,
    token_hash: &str,
    purpose: &str,
    now: i64,
) -> anyhow::Result<Option<(i64, String)>> {
    let row: Option<(i64, String)> = sqlx::query_as(
        "UPDATE account_tokens SET used_at = $1 WHERE token_hash = $2 AND purpose = $3 \
         AND used_at IS NULL AND expires_at > $1 RETURNING user_id, new_email",
    )
    .bind(now)
    .bind(token_hash)
    .bind(purpose)
    .fetch_optional(&mut **tx)
    .await
    .context("using an email-change token")?;
    let Some((user_id, sealed)) = row else {
        return Ok(None);
    };
    let new_email = store
        .open_for_member(user_id, ACCOUNT_TOKENS_NEW_EMAIL, &sealed)
        .await?;
    Ok(Some((user_id, new_email)))
}

/// Replaces a member's address (sealed, with its keyed hash; `email_lower` is hashed, never
/// stored) and marks it verified: the caller has just had it proven by a link. An address held
/// by another account is a [`super::Duplicate`] of `email`.
pub async fn set_user_email(
    store: &Store,
    tx: &mut Tx,
    user_id: i64,
    email: &str,
    email_lower: &str,
    now: i64,
) -> anyhow::Result<()> {
    let sealed = store.seal_for_member(user_id, USERS_EMAIL, email).await?;
    sqlx::query(
        "UPDATE users SET email = $1, email_lookup = $2, email_verified_at = $3 WHERE id = $4",
    )
    .bind(sealed)
    .bind(store.lookup_hash(email_lower)?)
    .bind(now)
    .bind(user_id)
    .execute(&mut **tx)
    .await
    .map_err(|e| unique_violation(e, &[("email_lookup", "email")], "changing an address"))?;
    Ok(())
}

/// Deletes a member's unused tokens of the two purposes given (links mailed to an address the
/// member no longer has); returns how many.
pub async fn delete_unused_account_tokens(
    tx: &mut Tx,
    user_id: i64,
    purposes: [&str; 2],
) -> anyhow::Result<u64> {
    let done = sqlx::query(
        "DELETE FROM account_tokens WHERE user_id = $1 AND used_at IS NULL \
         AND purpose IN ($2, $3)",
    )
    .bind(user_id)
    .bind(purposes[0])
    .bind(purposes[1])
    .execute(&mut **tx)
    .await
    .context("deleting unused account tokens")?;
    Ok(done.rows_affected())
}
