//! Social sign-in records (promise F5): started flows, provider accounts waiting for
//! registration, and members' links to provider accounts with the data's source.

use super::{Store, Tx, unique_violation};
use anyhow::Context;
use sqlx::FromRow;

pub struct NewSocialFlow<'a> {
    pub state_hash: &'a str,
    pub provider: &'a str,
    pub pkce_verifier: &'a str,
    pub nonce: &'a str,
    pub user_id: Option<i64>,
    pub policy_version: &'a str,
    pub text_hash: &'a str,
    pub now: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct SocialFlowRow {
    pub provider: String,
    pub pkce_verifier: String,
    pub nonce: String,
    pub user_id: Option<i64>,
    pub policy_version: String,
    pub text_hash: String,
    pub created_at: i64,
    pub expires_at: i64,
}

pub struct NewSocialPending<'a> {
    pub token_hash: &'a str,
    pub provider: &'a str,
    pub subject: &'a str,
    pub email: &'a str,
    pub email_verified: bool,
    pub fields_received: &'a str,
    pub policy_version: &'a str,
    pub text_hash: &'a str,
    pub authorized_at: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct SocialPendingRow {
    pub provider: String,
    pub subject: String,
    pub email: String,
    pub email_verified: i64,
    pub fields_received: String,
    pub policy_version: String,
    pub text_hash: String,
    pub authorized_at: i64,
}

pub struct NewSocialLink<'a> {
    pub user_id: i64,
    pub provider: &'a str,
    pub subject: &'a str,
    pub fields_received: &'a str,
    pub policy_version: &'a str,
    pub text_hash: &'a str,
    pub authorized_at: i64,
    pub now: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct SocialLinkRow {
    pub user_id: i64,
    pub provider: String,
    pub fields_received: String,
    pub authorized_at: i64,
    pub linked_at: i64,
    pub last_sign_in_at: Option<i64>,
}

/// Where a waiting provider account's address and provider account id are kept, as their
/// seals name them (`inventory::SEALED_BY_ROW`).
pub const PENDING_EMAIL: &str = "social_pending.email";
pub const PENDING_SUBJECT: &str = "social_pending.subject";
/// How the key of one waiting provider account is named (`sealing::row`, with its token's
/// digest).
pub const PENDING_ROW_KEY: &str = "social_pending";

/// The key-store subject sealing the waiting provider account with token digest `token_hash`:
/// destroy it (`Store::destroy_row_keys`) once the row is gone.
pub fn pending_key_subject(token_hash: &str) -> String {
    crate::sealing::row(PENDING_ROW_KEY, token_hash)
}

/// Removes flows and waiting provider accounts past their expiry: they hold secrets and, for
/// waiting accounts, an address, which nothing may keep longer than it is needed. Returns the
/// key-store subjects of the waiting accounts removed, for the caller to destroy once the
/// transaction is committed.
pub async fn delete_expired_social(tx: &mut Tx, now: i64) -> anyhow::Result<Vec<String>> {
    sqlx::query("DELETE FROM social_flows WHERE expires_at <= $1")
        .bind(now)
        .execute(&mut **tx)
        .await
        .context("removing expired social sign-in records")?;
    let gone: Vec<(String,)> =
        sqlx::query_as("DELETE FROM social_pending WHERE expires_at <= $1 RETURNING token_hash")
            .bind(now)
            .fetch_all(&mut **tx)
            .await
            .context("removing expired social sign-in records")?;
    Ok(gone
        .into_iter()
        .map(|(token_hash,)| pending_key_subject(&token_hash))
        .collect())
}

pub async fn insert_social_flow(tx: &mut Tx, flow: &NewSocialFlow<'_>) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO social_flows (state_hash, provider, pkce_verifier, nonce, user_id, \
         policy_version, text_hash, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(flow.state_hash)
    .bind(flow.provider)
    .bind(flow.pkce_verifier)
    .bind(flow.nonce)
    .bind(flow.user_id)
    .bind(flow.policy_version)
    .bind(flow.text_hash)
    .bind(flow.now)
    .bind(flow.expires_at)
    .execute(&mut **tx)
    .await
    .context("storing a social sign-in flow")?;
    Ok(())
}

/// Takes a flow by its state, once: one `DELETE … RETURNING`, so a replayed redirect finds
/// nothing. Expired flows are refused (and removed all the same).
pub async fn take_social_flow(
    tx: &mut Tx,
    state_hash: &str,
    provider: &str,
    now: i64,
) -> anyhow::Result<Option<SocialFlowRow>> {
    let row: Option<SocialFlowRow> = sqlx::query_as(
        "DELETE FROM social_flows WHERE state_hash = $1 AND provider = $2 \
         RETURNING provider, pkce_verifier, nonce, user_id, policy_version, text_hash, \
         created_at, expires_at",
    )
    .bind(state_hash)
    .bind(provider)
    .fetch_optional(&mut **tx)
    .await
    .context("taking a social sign-in flow")?;
    Ok(row.filter(|flow| flow.expires_at > now))
}

/// Stores a provider account waiting for registration: its address and provider account id
/// sealed under a key of the row's own (R8), the address found by its keyed hash.
pub async fn insert_social_pending(
    store: &Store,
    tx: &mut Tx,
    pending: &NewSocialPending<'_>,
) -> anyhow::Result<()> {
    let email = store
        .seal_for_row(
            PENDING_ROW_KEY,
            pending.token_hash,
            PENDING_EMAIL,
            pending.email,
        )
        .await?;
    let subject = store
        .seal_for_row(
            PENDING_ROW_KEY,
            pending.token_hash,
            PENDING_SUBJECT,
            pending.subject,
        )
        .await?;
    let email_lookup = if pending.email.is_empty() {
        String::new()
    } else {
        store.lookup_hash(&crate::sealing::lookup_text(PENDING_EMAIL, pending.email))?
    };
    sqlx::query(
        "INSERT INTO social_pending (token_hash, provider, subject, email, email_verified, \
         fields_received, policy_version, text_hash, authorized_at, expires_at, email_lookup) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(pending.token_hash)
    .bind(pending.provider)
    .bind(subject)
    .bind(email)
    .bind(i64::from(pending.email_verified))
    .bind(pending.fields_received)
    .bind(pending.policy_version)
    .bind(pending.text_hash)
    .bind(pending.authorized_at)
    .bind(pending.expires_at)
    .bind(email_lookup)
    .execute(&mut **tx)
    .await
    .context("storing a provider account waiting for registration")?;
    Ok(())
}

/// Takes a waiting provider account by its token, once. Its address and provider account id
/// come back as stored (sealed): read them with `Store::social_pending` first. The caller
/// destroys the row's key (`pending_key_subject`) once its transaction is committed.
pub async fn take_social_pending(
    tx: &mut Tx,
    token_hash: &str,
    now: i64,
) -> anyhow::Result<Option<SocialPendingRow>> {
    sqlx::query_as(
        "DELETE FROM social_pending WHERE token_hash = $1 AND expires_at > $2 \
         RETURNING provider, subject, email, email_verified, fields_received, policy_version, \
         text_hash, authorized_at",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await
    .context("taking a provider account waiting for registration")
}

/// Where a provider account's id is kept, as the associated data of its seal names it.
pub const SOCIAL_SUBJECT: &str = "social_links.subject";

/// Links a provider account to a member: its id sealed with the member's key (R8), found by
/// its keyed hash (`subject_lookup`, unique per provider).
pub async fn insert_social_link(
    store: &Store,
    tx: &mut Tx,
    link: &NewSocialLink<'_>,
) -> anyhow::Result<()> {
    let sealed = store
        .seal_for_member(link.user_id, SOCIAL_SUBJECT, link.subject)
        .await?;
    let lookup = store.lookup_hash(&crate::sealing::lookup_text(SOCIAL_SUBJECT, link.subject))?;
    sqlx::query(
        "INSERT INTO social_links (user_id, provider, subject, subject_lookup, fields_received, \
         policy_version, text_hash, authorized_at, linked_at, last_sign_in_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(link.user_id)
    .bind(link.provider)
    .bind(sealed)
    .bind(lookup)
    .bind(link.fields_received)
    .bind(link.policy_version)
    .bind(link.text_hash)
    .bind(link.authorized_at)
    .bind(link.now)
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        unique_violation(
            e,
            &[
                ("subject_lookup", "provider account"),
                ("social_links_member", "provider"),
                ("user_id", "provider"),
            ],
            "linking a provider account",
        )
    })?;
    Ok(())
}

/// The member linked to a provider account (found by the keyed hash of its id), marking the
/// sign-in.
pub async fn social_sign_in(
    store: &Store,
    tx: &mut Tx,
    provider: &str,
    subject: &str,
    fields_received: &str,
    now: i64,
) -> anyhow::Result<Option<i64>> {
    let lookup = store.lookup_hash(&crate::sealing::lookup_text(SOCIAL_SUBJECT, subject))?;
    let row: Option<(i64,)> = sqlx::query_as(
        "UPDATE social_links SET last_sign_in_at = $1, fields_received = $2 \
         WHERE provider = $3 AND subject_lookup = $4 RETURNING user_id",
    )
    .bind(now)
    .bind(fields_received)
    .bind(provider)
    .bind(lookup)
    .fetch_optional(&mut **tx)
    .await
    .context("signing in with a provider account")?;
    Ok(row.map(|(id,)| id))
}

pub async fn delete_social_link(tx: &mut Tx, user_id: i64, provider: &str) -> anyhow::Result<bool> {
    let done = sqlx::query("DELETE FROM social_links WHERE user_id = $1 AND provider = $2")
        .bind(user_id)
        .bind(provider)
        .execute(&mut **tx)
        .await
        .context("unlinking a provider account")?;
    Ok(done.rows_affected() == 1)
}

impl Store {
    pub async fn social_links_of(&self, user_id: i64) -> anyhow::Result<Vec<SocialLinkRow>> {
        sqlx::query_as(
            "SELECT user_id, provider, fields_received, authorized_at, linked_at, \
             last_sign_in_at FROM social_links WHERE user_id = $1 ORDER BY provider",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await
        .context("reading a member's provider links")
    }
}

impl Store {
    /// A provider account waiting for registration, without taking it (to show the form),
    /// its address and provider account id opened.
    pub async fn social_pending(
        &self,
        token_hash: &str,
        now: i64,
    ) -> anyhow::Result<Option<SocialPendingRow>> {
        let row: Option<SocialPendingRow> = sqlx::query_as(
            "SELECT provider, subject, email, email_verified, fields_received, policy_version, \
             text_hash, authorized_at FROM social_pending \
             WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(self.pool())
        .await
        .context("reading a provider account waiting for registration")?;
        let Some(mut row) = row else {
            return Ok(None);
        };
        row.email = self
            .open_for_row(PENDING_ROW_KEY, token_hash, PENDING_EMAIL, &row.email)
            .await?;
        row.subject = self
            .open_for_row(PENDING_ROW_KEY, token_hash, PENDING_SUBJECT, &row.subject)
            .await?;
        Ok(Some(row))
    }
}

/// How many sign-in flows and waiting provider accounts are past their expiry at `now`: what
/// [`delete_expired_social`] would remove (the retention sweep's dry run).
pub async fn count_expired_social(tx: &mut Tx, now: i64) -> anyhow::Result<(i64, i64)> {
    sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM social_flows WHERE expires_at <= $1), \
         (SELECT COUNT(*) FROM social_pending WHERE expires_at <= $1)",
    )
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .context("counting expired social sign-in records")
}

/// The token digests of every waiting provider account (each names its row's key).
pub async fn pending_token_hashes(tx: &mut Tx) -> anyhow::Result<Vec<String>> {
    sqlx::query_scalar("SELECT token_hash FROM social_pending")
        .fetch_all(&mut **tx)
        .await
        .context("listing waiting provider accounts")
}
