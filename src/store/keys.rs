//! The key store (R8): each subject's data key, wrapped under the key-encryption key derived
//! from the audit key file, in a database of its own: a SQLite file beside the main one
//! (`covenant.db.keys.sqlite`), or a PostgreSQL database of its own (`keys_database_url`; by
//! default the main database's name with `_keys`, on the same server). A backup of the main
//! database carries no key, so destroying a key reaches every copy of what it sealed.

use super::{Store, StoreKind};
use crate::sealing::{self, DataKey, Sealing};
use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many unwrapped keys a node keeps in memory before it starts over.
const CACHE_LIMIT: usize = 10_000;

/// How long a node trusts a key it unwrapped without reading the key store again: the longest
/// a key destroyed on another node still opens values on this one.
pub const CACHE_TIME_TO_LIVE: Duration = Duration::from_secs(60);

/// The key store: its own pool, the keys derived from the audit key, and the keys unwrapped
/// recently. A key destroyed here leaves this node's cache at once; another node's cache
/// holds it for [`CACHE_TIME_TO_LIVE`] at most after it unwrapped it, then reads the key store
/// again and finds it gone.
pub struct KeyStore {
    pool: AnyPool,
    sqlite: bool,
    sealing: Sealing,
    cache: Mutex<KeyCache>,
}

/// The keys a node unwrapped recently, each with when it was read from the key store.
#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, (DataKey, Instant)>,
}

impl KeyCache {
    /// The key of `subject` if it was read less than [`CACHE_TIME_TO_LIVE`] before `now`; an
    /// older entry is dropped, so the caller reads the key store again.
    fn get(&mut self, subject: &str, now: Instant) -> Option<DataKey> {
        match self.keys.get(subject) {
            Some((key, read_at))
                if now.saturating_duration_since(*read_at) < CACHE_TIME_TO_LIVE =>
            {
                Some(key.clone())
            }
            Some(_) => {
                self.keys.remove(subject);
                None
            }
            None => None,
        }
    }

    fn insert(&mut self, subject: &str, key: &DataKey, read_at: Instant) {
        if self.keys.len() >= CACHE_LIMIT {
            let now = Instant::now();
            self.keys
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < CACHE_TIME_TO_LIVE);
            if self.keys.len() >= CACHE_LIMIT {
                self.keys.clear();
            }
        }
        self.keys
            .insert(subject.to_string(), (key.clone(), read_at));
    }

    fn remove(&mut self, subject: &str) {
        self.keys.remove(subject);
    }
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyStore")
    }
}

/// The key store's URL for a main store: `configured` when set, else beside the main one.
async fn key_store_url(main: &Store, data_dir: &Path, configured: &str) -> anyhow::Result<String> {
    if !configured.is_empty() {
        return Ok(configured.to_string());
    }
    match main.kind {
        StoreKind::Sqlite => {
            let file = match main.url.strip_prefix("sqlite:") {
                Some(rest) if !rest.is_empty() => {
                    let path = rest.trim_start_matches("//");
                    let path = path.split('?').next().unwrap_or(path);
                    format!("{path}.keys.sqlite")
                }
                _ => data_dir
                    .join("covenant.db.keys.sqlite")
                    .display()
                    .to_string(),
            };
            Ok(format!("sqlite://{file}?mode=rwc"))
        }
        StoreKind::Postgres => {
            let (base, name) = main
                .url
                .rsplit_once('/')
                .context("a PostgreSQL URL ends with /dbname")?;
            let (name, query) = match name.split_once('?') {
                Some((name, query)) => (name, format!("?{query}")),
                None => (name, String::new()),
            };
            let keys = format!("{name}_keys");
            anyhow::ensure!(
                keys.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "set keys_database_url: the database name cannot be extended with _keys"
            );
            let exists: Option<(i32,)> =
                sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
                    .bind(&keys)
                    .fetch_optional(main.pool())
                    .await
                    .context("looking for the key store's database")?;
            if exists.is_none() {
                let created = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {keys}")))
                    .execute(main.pool())
                    .await;
                if let Err(error) = created {
                    // Another node created it at the same moment.
                    let again: Option<(i32,)> =
                        sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
                            .bind(&keys)
                            .fetch_optional(main.pool())
                            .await
                            .context("looking for the key store's database")?;
                    if again.is_none() {
                        return Err(
                            anyhow::Error::new(error).context("creating the key store's database")
                        );
                    }
                }
            }
            Ok(format!("{base}/{keys}{query}"))
        }
    }
}

impl KeyStore {
    async fn connect(url: &str, sealing: Sealing) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let options = AnyConnectOptions::from_str(url).context("parsing the key store URL")?;
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if sqlite {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .context("connecting to the key store")?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS subject_keys (subject TEXT PRIMARY KEY, \
             wrapped TEXT NOT NULL, created_at BIGINT NOT NULL)",
        )
        .execute(&pool)
        .await
        .context("preparing the key store")?;
        Ok(Self {
            pool,
            sqlite,
            sealing,
            cache: Mutex::new(KeyCache::default()),
        })
    }

    fn cached(&self, subject: &str) -> Option<DataKey> {
        self.cache
            .lock()
            .expect("the key cache is not poisoned")
            .get(subject, Instant::now())
    }

    fn remember(&self, subject: &str, key: &DataKey, read_at: Instant) {
        self.cache
            .lock()
            .expect("the key cache is not poisoned")
            .insert(subject, key, read_at);
    }

    /// The subject's key, `None` when there is none (never made, or destroyed).
    pub async fn key_of(&self, subject: &str) -> anyhow::Result<Option<DataKey>> {
        if let Some(key) = self.cached(subject) {
            return Ok(Some(key));
        }
        // Taken before the read, so the entry never outlives the bound counted from the read.
        let read_at = Instant::now();
        let row: Option<(String,)> =
            sqlx::query_as("SELECT wrapped FROM subject_keys WHERE subject = $1")
                .bind(subject)
                .fetch_optional(&self.pool)
                .await
                .context("reading a subject's key")?;
        let Some((wrapped,)) = row else {
            return Ok(None);
        };
        let key = self.sealing.unwrap(subject, &wrapped)?;
        self.remember(subject, &key, read_at);
        Ok(Some(key))
    }

    /// The subject's key, made now if there is none.
    pub async fn key_for(&self, subject: &str) -> anyhow::Result<DataKey> {
        if let Some(key) = self.key_of(subject).await? {
            return Ok(key);
        }
        let key = DataKey::random();
        sqlx::query(
            "INSERT INTO subject_keys (subject, wrapped, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (subject) DO NOTHING",
        )
        .bind(subject)
        .bind(self.sealing.wrap(subject, &key))
        .bind(crate::now())
        .execute(&self.pool)
        .await
        .context("storing a subject's key")?;
        // Another node may have made one first: the stored key is the one.
        self.key_of(subject)
            .await?
            .context("a subject's key vanished right after it was stored")
    }

    /// The keys of many subjects, made where missing, in one transaction (bulk loads).
    pub async fn keys_for_many(&self, subjects: &[String]) -> anyhow::Result<Vec<DataKey>> {
        let mut tx = if self.sqlite {
            self.pool.begin_with("BEGIN IMMEDIATE").await
        } else {
            self.pool.begin().await
        }
        .context("starting a key store transaction")?;
        let now = crate::now();
        for subject in subjects {
            sqlx::query(
                "INSERT INTO subject_keys (subject, wrapped, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (subject) DO NOTHING",
            )
            .bind(subject)
            .bind(self.sealing.wrap(subject, &DataKey::random()))
            .bind(now)
            .execute(&mut *tx)
            .await
            .context("storing subjects' keys")?;
        }
        let mut keys = Vec::with_capacity(subjects.len());
        for subject in subjects {
            let (wrapped,): (String,) =
                sqlx::query_as("SELECT wrapped FROM subject_keys WHERE subject = $1")
                    .bind(subject)
                    .fetch_one(&mut *tx)
                    .await
                    .context("reading subjects' keys")?;
            keys.push(self.sealing.unwrap(subject, &wrapped)?);
        }
        tx.commit().await.context("storing subjects' keys")?;
        Ok(keys)
    }

    /// Destroys the subject's key; whether there was one.
    pub async fn destroy(&self, subject: &str) -> anyhow::Result<bool> {
        self.cache
            .lock()
            .expect("the key cache is not poisoned")
            .remove(subject);
        let done = sqlx::query("DELETE FROM subject_keys WHERE subject = $1")
            .bind(subject)
            .execute(&self.pool)
            .await
            .context("destroying a subject's key")?;
        Ok(done.rows_affected() > 0)
    }

    /// The subjects of keys named `prefix:…` (`sealing::row`) made before `cutoff`.
    pub async fn row_subjects_before(
        &self,
        prefix: &str,
        cutoff: i64,
    ) -> anyhow::Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT subject FROM subject_keys WHERE subject LIKE $1 AND created_at < $2",
        )
        .bind(format!("{prefix}:%"))
        .bind(cutoff)
        .fetch_all(&self.pool)
        .await
        .context("listing rows' keys")?;
        Ok(rows.into_iter().map(|(subject,)| subject).collect())
    }

    /// How many keys the store holds (for tests and the operator).
    pub async fn count(&self) -> anyhow::Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM subject_keys")
            .fetch_one(&self.pool)
            .await
            .context("counting keys")?;
        Ok(n)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl Store {
    /// This store with its key store opened (see the module's notes for where it lives):
    /// without one, nothing private can be written or read.
    pub async fn with_keys(
        mut self,
        data_dir: &Path,
        keys_database_url: &str,
        audit_key: &crate::audit::AuditKey,
    ) -> anyhow::Result<Self> {
        let url = key_store_url(&self, data_dir, keys_database_url).await?;
        let keys = KeyStore::connect(&url, Sealing::new(audit_key)).await?;
        // A key of its own that the store checks it can open: a node given another audit key
        // file than the one the keys were wrapped under stops here, not on a member's request.
        keys.key_for("check:audit-key").await.context(
            "the key store's keys were wrapped under another audit key file \
             (every node needs the same audit_key_file)",
        )?;
        self.keys = Some(Arc::new(keys));
        Ok(self)
    }

    /// The key store; an error when this store was opened without one.
    pub fn keys(&self) -> anyhow::Result<&KeyStore> {
        self.keys
            .as_deref()
            .context("the key store is not open (Store::with_keys)")
    }

    /// The keyed hash standing for `normalized` in lookups.
    pub fn lookup_hash(&self, normalized: &str) -> anyhow::Result<String> {
        Ok(self.keys()?.sealing.lookup(normalized))
    }

    /// Seals `plain` as `place` (`table.column`) of member `user_id`; a blank stays blank.
    pub async fn seal_for_member(
        &self,
        user_id: i64,
        place: &str,
        plain: &str,
    ) -> anyhow::Result<String> {
        if plain.is_empty() || sealing::is_sealed(plain) {
            return Ok(plain.to_string());
        }
        let subject = sealing::member(user_id);
        let key = self.keys()?.key_for(&subject).await?;
        Ok(key.seal(place, &subject, plain))
    }

    /// The value of `place` of member `user_id` as stored: a plain value (from before sealing,
    /// or a blank) as it is; a sealed one opened, or empty when the member's key is gone.
    pub async fn open_for_member(
        &self,
        user_id: i64,
        place: &str,
        stored: &str,
    ) -> anyhow::Result<String> {
        if !sealing::is_sealed(stored) {
            return Ok(stored.to_string());
        }
        let subject = sealing::member(user_id);
        let Some(key) = self.keys()?.key_of(&subject).await? else {
            return Ok(String::new());
        };
        match key.open(place, &subject, stored) {
            Ok(plain) => Ok(plain),
            Err(error) => {
                // Moved from another row or column: it reads as nothing, never as an error page.
                tracing::warn!(user_id, place, error = %format!("{error:#}"), "a sealed value does not open");
                Ok(String::new())
            }
        }
    }

    /// Seals `plain` as `place` of privacy-request submission `submission_id`, under the
    /// submission's own key; a blank stays blank.
    pub async fn seal_for_submission(
        &self,
        submission_id: i64,
        place: &str,
        plain: &str,
    ) -> anyhow::Result<String> {
        if plain.is_empty() || sealing::is_sealed(plain) {
            return Ok(plain.to_string());
        }
        let subject = sealing::submission(submission_id);
        let key = self.keys()?.key_for(&subject).await?;
        Ok(key.seal(place, &subject, plain))
    }

    /// The value of `place` of submission `submission_id` as stored, opened like
    /// [`Store::open_for_member`]: empty when the submission's key is gone.
    pub async fn open_for_submission(
        &self,
        submission_id: i64,
        place: &str,
        stored: &str,
    ) -> anyhow::Result<String> {
        if !sealing::is_sealed(stored) {
            return Ok(stored.to_string());
        }
        let subject = sealing::submission(submission_id);
        let Some(key) = self.keys()?.key_of(&subject).await? else {
            return Ok(String::new());
        };
        match key.open(place, &subject, stored) {
            Ok(plain) => Ok(plain),
            Err(error) => {
                tracing::warn!(submission_id, place, error = %format!("{error:#}"), "a sealed value does not open");
                Ok(String::new())
            }
        }
    }

    /// Destroys member `user_id`'s key: what it sealed, in any copy, opens no more.
    pub async fn destroy_member_key(&self, user_id: i64) -> anyhow::Result<bool> {
        self.keys()?.destroy(&sealing::member(user_id)).await
    }

    /// Seals a file of submission `submission_id` (an agent's evidence) under its key.
    pub async fn seal_bytes_for_submission(
        &self,
        submission_id: i64,
        place: &str,
        plain: &[u8],
    ) -> anyhow::Result<Vec<u8>> {
        let subject = sealing::submission(submission_id);
        let key = self.keys()?.key_for(&subject).await?;
        Ok(key.seal_bytes(place, &subject, plain))
    }

    /// A file of submission `submission_id` as stored: plain bytes (from before sealing) as
    /// they are; sealed ones opened, or `None` when the submission's key is gone.
    pub async fn open_bytes_for_submission(
        &self,
        submission_id: i64,
        place: &str,
        stored: Vec<u8>,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        if !sealing::is_sealed_bytes(&stored) {
            return Ok(Some(stored));
        }
        let subject = sealing::submission(submission_id);
        let Some(key) = self.keys()?.key_of(&subject).await? else {
            return Ok(None);
        };
        match key.open_bytes(place, &subject, &stored) {
            Ok(plain) => Ok(Some(plain)),
            Err(error) => {
                tracing::warn!(submission_id, place, error = %format!("{error:#}"), "a sealed file does not open");
                Ok(None)
            }
        }
    }

    /// Seals `plain` as `place` of the row named `sealing::row(prefix, key)`, under the row's
    /// own key (made now if there is none); a blank stays blank.
    pub async fn seal_for_row(
        &self,
        prefix: &str,
        key: &str,
        place: &str,
        plain: &str,
    ) -> anyhow::Result<String> {
        if plain.is_empty() || sealing::is_sealed(plain) {
            return Ok(plain.to_string());
        }
        let subject = sealing::row(prefix, key);
        let data_key = self.keys()?.key_for(&subject).await?;
        Ok(data_key.seal(place, &subject, plain))
    }

    /// The value of `place` of the row named `sealing::row(prefix, key)` as stored, opened
    /// like [`Store::open_for_member`]: empty when the row's key is gone.
    pub async fn open_for_row(
        &self,
        prefix: &str,
        key: &str,
        place: &str,
        stored: &str,
    ) -> anyhow::Result<String> {
        if !sealing::is_sealed(stored) {
            return Ok(stored.to_string());
        }
        let subject = sealing::row(prefix, key);
        let Some(data_key) = self.keys()?.key_of(&subject).await? else {
            return Ok(String::new());
        };
        match data_key.open(place, &subject, stored) {
            Ok(plain) => Ok(plain),
            Err(error) => {
                tracing::warn!(prefix, place, error = %format!("{error:#}"), "a sealed value does not open");
                Ok(String::new())
            }
        }
    }

    /// Destroys the keys of rows that went (`sealing::row` subjects): whatever they sealed,
    /// in any copy, opens no more. Returns how many there were.
    pub async fn destroy_row_keys(&self, subjects: &[String]) -> anyhow::Result<usize> {
        let mut destroyed = 0;
        for subject in subjects {
            if self.keys()?.destroy(subject).await? {
                destroyed += 1;
            }
        }
        Ok(destroyed)
    }

    /// Whether the key store holds a key for `subject` (for tests and the operator).
    pub async fn has_key(&self, subject: &str) -> anyhow::Result<bool> {
        Ok(self.keys()?.key_of(subject).await?.is_some())
    }

    /// Destroys submission `submission_id`'s key (its sealed correspondence opens no more).
    pub async fn destroy_submission_key(&self, submission_id: i64) -> anyhow::Result<bool> {
        self.keys()?
            .destroy(&sealing::submission(submission_id))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves: R8
    #[test]
    fn a_cached_key_is_trusted_for_its_time_to_live_only() {
        let key = DataKey::random();
        let read_at = Instant::now();
        let mut cache = KeyCache::default();
        cache.insert("user:1", &key, read_at);
        assert!(cache.get("user:1", read_at).is_some());
        let almost = read_at + CACHE_TIME_TO_LIVE - Duration::from_millis(1);
        assert!(cache.get("user:1", almost).is_some());
        // Destroyed on another node: past the bound, this node asks the key store again.
        assert!(cache.get("user:1", read_at + CACHE_TIME_TO_LIVE).is_none());
        assert!(
            cache.get("user:1", read_at).is_none(),
            "the stale entry is gone"
        );
        assert!(cache.get("user:2", read_at).is_none());
    }
}
