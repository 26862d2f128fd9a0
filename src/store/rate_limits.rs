//! Rate-limit counters: one row per keyed digest, counted and blocked by single statements so
//! that every node sees the same limit. Never holds an address or a login, only the digest the
//! caller computed.

use super::Store;
use anyhow::Context;

/// One limit's arithmetic, as the store applies it.
#[derive(Debug, Clone, Copy)]
pub struct LimitStep {
    pub now: i64,
    /// Events before this moment belong to an ended window.
    pub window_start_after: i64,
    /// The event count that blocks the key.
    pub trip_at: i64,
    /// The first wait, doubled by each later block of the same key.
    pub first_wait: i64,
    pub max_wait: i64,
}

impl Store {
    /// Until when `key` is blocked (0 or a past time: not blocked).
    pub async fn rate_limit_blocked_until(&self, key: &str) -> anyhow::Result<i64> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT blocked_until FROM rate_limits WHERE key = $1")
                .bind(key)
                .fetch_optional(self.pool())
                .await
                .context("reading a rate limit")?;
        Ok(row.map_or(0, |(until,)| until))
    }

    /// Counts one event against `key` in one statement: a new window starts when the last
    /// ended; the event that reaches `trip_at` blocks the key for its current wait, doubles the
    /// next wait (up to the maximum) and starts a new window. Returns until when the key is
    /// blocked.
    pub async fn rate_limit_count(&self, key: &str, step: LimitStep) -> anyhow::Result<i64> {
        // `events` below is the count including this event; each SET reads the row as it was.
        let (blocked_until,): (i64,) = sqlx::query_as(
            "INSERT INTO rate_limits \
                 (key, window_start, events, blocked_until, next_wait, updated_at) \
             VALUES ($1, $2, \
                 CASE WHEN 1 >= $4 THEN 0 ELSE 1 END, \
                 CASE WHEN 1 >= $4 THEN $2 + $5 ELSE 0 END, \
                 CASE WHEN 1 >= $4 THEN (CASE WHEN $5 * 2 > $6 THEN $6 ELSE $5 * 2 END) \
                      ELSE $5 END, \
                 $2) \
             ON CONFLICT (key) DO UPDATE SET \
             events = CASE \
                 WHEN (CASE WHEN rate_limits.window_start <= $3 THEN 1 \
                       ELSE rate_limits.events + 1 END) >= $4 THEN 0 \
                 ELSE (CASE WHEN rate_limits.window_start <= $3 THEN 1 \
                       ELSE rate_limits.events + 1 END) END, \
             window_start = CASE \
                 WHEN rate_limits.window_start <= $3 THEN $2 \
                 WHEN rate_limits.events + 1 >= $4 THEN $2 \
                 ELSE rate_limits.window_start END, \
             blocked_until = CASE \
                 WHEN (CASE WHEN rate_limits.window_start <= $3 THEN 1 \
                       ELSE rate_limits.events + 1 END) >= $4 \
                 THEN $2 + rate_limits.next_wait \
                 ELSE rate_limits.blocked_until END, \
             next_wait = CASE \
                 WHEN (CASE WHEN rate_limits.window_start <= $3 THEN 1 \
                       ELSE rate_limits.events + 1 END) >= $4 \
                 THEN (CASE WHEN rate_limits.next_wait * 2 > $6 THEN $6 \
                       ELSE rate_limits.next_wait * 2 END) \
                 ELSE rate_limits.next_wait END, \
             updated_at = $2 \
             RETURNING blocked_until",
        )
        .bind(key)
        .bind(step.now)
        .bind(step.window_start_after)
        .bind(step.trip_at)
        .bind(step.first_wait)
        .bind(step.max_wait)
        .fetch_one(self.pool())
        .await
        .context("counting a rate-limited event")?;
        Ok(blocked_until)
    }

    /// Forgets `key` (a member who proved who they are starts again). Most sign-ins follow no
    /// failure: they only read, so they take no write lock.
    pub async fn rate_limit_clear(&self, key: &str) -> anyhow::Result<()> {
        let counted: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM rate_limits WHERE key = $1")
            .bind(key)
            .fetch_optional(self.pool())
            .await
            .context("reading a rate limit")?;
        if counted.is_none() {
            return Ok(());
        }
        sqlx::query("DELETE FROM rate_limits WHERE key = $1")
            .bind(key)
            .execute(self.pool())
            .await
            .context("clearing a rate limit")?;
        Ok(())
    }

    /// Deletes the counters idle since `before` that block nothing any more.
    pub async fn purge_rate_limits(&self, before: i64, now: i64) -> anyhow::Result<u64> {
        let done =
            sqlx::query("DELETE FROM rate_limits WHERE updated_at < $1 AND blocked_until < $2")
                .bind(before)
                .bind(now)
                .execute(self.pool())
                .await
                .context("purging old rate limits")?;
        Ok(done.rows_affected())
    }
}
