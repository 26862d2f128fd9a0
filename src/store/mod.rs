//! The store: the only code that speaks SQL.
//!
//! One SQL text serves both stores through sqlx's `Any` driver: the embedded SQLite file (the
//! default) and PostgreSQL (several nodes). Callers never learn which one runs; where the two
//! differ (row locking, sequences), the difference is handled here behind one method.
//! Times are epoch seconds, booleans are 0/1, ids are `i64`.

mod audit;
mod bulk;
mod consent;
mod digest;
mod disclosures;
mod forum;
mod fulfilment;
mod keys;
mod mail;
mod people;
mod policy;
mod purpose;
mod rate_limits;
mod requests;
mod retention;
mod sealed;
mod security;
mod social;
mod stats;
mod users;

pub use audit::*;
pub use bulk::*;
pub use consent::*;
pub use digest::*;
pub use disclosures::*;
pub use forum::*;
pub use fulfilment::*;
pub use keys::*;
pub use mail::*;
pub use people::*;
pub use policy::*;
pub use purpose::*;
pub use rate_limits::*;
pub use requests::*;
pub use retention::*;
pub use sealed::*;
pub use security::*;
pub use social::*;
pub use stats::*;
pub use users::*;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Which database engine is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

/// The database, shared by every request and job. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    kind: StoreKind,
    /// The URL it was opened with (the key store is found beside it).
    url: std::sync::Arc<str>,
    /// The key store of the sealed private fields ([`Store::with_keys`]).
    keys: Option<std::sync::Arc<KeyStore>>,
    /// Pooled SQLite connections that may still have a sweep's settings
    /// ([`Store::begin_sweep`]); the pool restores them when they come back.
    sweep_settings: std::sync::Arc<AtomicUsize>,
}

/// The page cache of each pooled SQLite connection, in KiB as `PRAGMA cache_size` reads it
/// (negative: a size, not a page count).
const SERVER_CACHE_SIZE: i64 = -8192;

/// The settings of every pooled SQLite connection that a sweep changes for its transactions
/// (see `Store::connect` and [`Store::begin_sweep`]).
const SERVER_SETTINGS: &str =
    "PRAGMA cache_size = -8192; PRAGMA temp_store = DEFAULT; PRAGMA wal_autocheckpoint = 1000;";

pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// A write refused by a uniqueness rule, naming the rule so callers can say which field clashed.
#[derive(Debug, thiserror::Error)]
#[error("a record with the same {0} already exists")]
pub struct Duplicate(pub &'static str);

impl Store {
    /// Opens the store named by `database_url`, or the SQLite file in `data_dir` when it is empty.
    pub async fn open(
        data_dir: &Path,
        database_url: &str,
        max_connections: u32,
    ) -> anyhow::Result<Self> {
        if database_url.is_empty() {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating the data folder {}", data_dir.display()))?;
            let file = data_dir.join("covenant.db");
            let url = format!("sqlite://{}?mode=rwc", file.display());
            Self::connect(&url, max_connections).await
        } else {
            Self::connect(database_url, max_connections).await
        }
    }

    /// Connects to a database URL (`sqlite:` or `postgres:`).
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let kind = if url.starts_with("sqlite:") {
            StoreKind::Sqlite
        } else {
            StoreKind::Postgres
        };
        let options = AnyConnectOptions::from_str(url).context("parsing the database URL")?;
        let sweep_settings = std::sync::Arc::new(AtomicUsize::new(0));
        let released = sweep_settings.clone();
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if kind == StoreKind::Sqlite {
                        // WAL lets readers run beside the writer; NORMAL sync is durable in WAL
                        // mode across process crashes; waiting beats failing when busy.
                        // Each pooled connection has a page cache of its own, so its size is
                        // paid once per connection in resident memory: 8 MiB (SQLite's default
                        // is 2 MiB) holds the hot index pages; the rest of the file is read
                        // from the system's file cache, which all connections share and which
                        // is not the server's memory. Pages read through an index, never a
                        // walk over many table rows, keep that cheap (bench/run, BENCHMARKS.md).
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                        conn.execute(SERVER_SETTINGS).await?;
                    }
                    Ok(())
                })
            })
            // A connection a sweep set up ([`Store::begin_sweep`]) gets the server's settings
            // back when it returns to the pool, however its transaction ended (committed,
            // failed half-way, dropped): only while such a connection may be out is each
            // returning connection asked for its page cache size.
            .after_release(move |conn, _meta| {
                let released = released.clone();
                Box::pin(async move {
                    if kind == StoreKind::Sqlite && released.load(Ordering::Acquire) > 0 {
                        let (cache,): (i64,) = sqlx::query_as("PRAGMA cache_size")
                            .fetch_one(&mut *conn)
                            .await?;
                        if cache != SERVER_CACHE_SIZE {
                            conn.execute(SERVER_SETTINGS).await?;
                            released.fetch_sub(1, Ordering::AcqRel);
                        }
                    }
                    Ok(true)
                })
            })
            .connect_with(options)
            .await
            .context("connecting to the database")?;
        Ok(Self {
            pool,
            kind,
            url: url.into(),
            keys: None,
            sweep_settings,
        })
    }

    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// Brings the schema up to date. Safe to run on every start and from several nodes.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.kind {
            StoreKind::Sqlite => &SQLITE_MIGRATIONS,
            StoreKind::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&self.pool)
            .await
            .context("applying database migrations")?;
        Ok(())
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock at once, so two
    /// writers queue instead of one failing half-way.
    pub async fn begin(&self) -> anyhow::Result<Tx> {
        let tx = match self.kind {
            StoreKind::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            StoreKind::Postgres => self.pool.begin().await,
        };
        tx.context("starting a transaction")
    }

    /// Starts a sweep's transaction (it writes). On SQLite its connection gets, before the
    /// transaction begins (SQLite reads them there), settings for a transaction that changes
    /// tens of thousands of pages:
    /// - a 128 MiB page cache instead of 8 MiB: the pages it changes (a post's page for each
    ///   post moved to the deleted user, the deleted user's index pages again and again) were
    ///   written out to the WAL half-way and read back;
    /// - statement journals in memory: each statement that changes many rows keeps the
    ///   original of every page it changes (to undo itself alone if it fails), by default in a
    ///   temporary file, which took a tenth of the sweep's time; in memory it costs at most the
    ///   pages of one statement (a thousand members' posts);
    /// - a checkpoint only once the WAL holds 256 MiB (at 4 KiB pages), not 4 MiB: each
    ///   commit copied the pages of the WAL back into the database and synced it (a page
    ///   changed in several transactions as many times); the sweep checkpoints once more at
    ///   its end ([`Store::checkpoint_after_sweep`]). Without any bound the WAL grew by 1.4 GB
    ///   over the 100,000-member demo forum's sweep (and with it the time to find each page in
    ///   it, and the recovery after a crash).
    ///
    /// The pool gives the connection the server's settings back when it returns, whether the
    /// transaction committed or not (see `Store::connect`).
    pub async fn begin_sweep(&self) -> anyhow::Result<Tx> {
        if self.kind != StoreKind::Sqlite {
            return self.begin().await;
        }
        let mut conn = self
            .pool
            .acquire()
            .await
            .context("starting a sweep's transaction")?;
        self.sweep_settings.fetch_add(1, Ordering::AcqRel);
        let set = conn
            .execute(
                "PRAGMA cache_size = -131072; PRAGMA temp_store = MEMORY; \
                 PRAGMA wal_autocheckpoint = 65536;",
            )
            .await;
        if let Err(error) = set {
            // Settings half set: the connection is not given back to the pool.
            conn.close_on_drop();
            self.sweep_settings.fetch_sub(1, Ordering::AcqRel);
            return Err(error).context("setting up a sweep's connection");
        }
        sqlx::Transaction::begin(
            conn,
            Some(sqlx::SqlSafeStr::into_sql_str("BEGIN IMMEDIATE")),
        )
        .await
        .context("starting a sweep's transaction")
    }

    /// Copies the pages the sweep's transactions left in the WAL back into the database, once
    /// (see [`Store::begin_sweep`]), and empties the WAL if no reader still needs it. A
    /// checkpoint that finds readers in the way leaves the rest to the next one.
    pub async fn checkpoint_after_sweep(&self) -> anyhow::Result<()> {
        if self.kind == StoreKind::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.pool)
                .await
                .context("checkpointing after a sweep")?;
        }
        Ok(())
    }

    /// Starts a transaction that only reads: on SQLite it takes no write lock (writers go on
    /// beside it), on PostgreSQL it is `READ ONLY`, so a write in it fails.
    pub async fn begin_read(&self) -> anyhow::Result<Tx> {
        let tx = match self.kind {
            StoreKind::Sqlite => self.pool.begin_with("BEGIN DEFERRED").await,
            StoreKind::Postgres => self.pool.begin_with("BEGIN READ ONLY").await,
        };
        tx.context("starting a read-only transaction")
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .context("pinging the database")?;
        Ok(())
    }

    /// `FOR UPDATE SKIP LOCKED` where the engine has row locks; SQLite's single writer makes
    /// the plain form safe there.
    pub(crate) fn skip_locked(&self) -> &'static str {
        match self.kind {
            StoreKind::Sqlite => "",
            StoreKind::Postgres => "FOR UPDATE SKIP LOCKED",
        }
    }

    /// After rows were inserted with explicit ids, moves PostgreSQL's identity past them.
    pub(crate) async fn resync_identity(&self, tx: &mut Tx, table: &str) -> anyhow::Result<()> {
        if self.kind == StoreKind::Postgres {
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                 GREATEST((SELECT COALESCE(MAX(id), 0) FROM {table}), 1))"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut **tx)
                .await
                .with_context(|| format!("moving the id sequence of {table}"))?;
        }
        Ok(())
    }

    /// Reads a setting written by [`Store::setting_or_insert`].
    pub async fn setting(&self, key: &str) -> anyhow::Result<Option<String>> {
        let value: Option<(String,)> = sqlx::query_as("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .context("reading a setting")?;
        Ok(value.map(|(v,)| v))
    }

    /// Returns the stored setting, storing `value` first if there is none. Several nodes
    /// starting at once all end up with the first value written.
    pub async fn setting_or_insert(&self, key: &str, value: &str) -> anyhow::Result<String> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .context("storing a setting")?;
        self.setting(key)
            .await?
            .context("a setting vanished right after it was written")
    }

    pub async fn close(&self) {
        self.pool.close().await;
        if let Some(keys) = &self.keys {
            keys.close().await;
        }
    }
}

/// Maps a unique-constraint violation to [`Duplicate`], naming the field by the constraint's
/// column; other errors pass through with `context`.
pub(crate) fn unique_violation(
    error: sqlx::Error,
    fields: &[(&'static str, &'static str)],
    context: &'static str,
) -> anyhow::Error {
    if let sqlx::Error::Database(db) = &error
        && db.is_unique_violation()
    {
        let message = db.message().to_string();
        let constraint = db.constraint().unwrap_or_default().to_string();
        for (needle, field) in fields {
            if message.contains(needle) || constraint.contains(needle) {
                return Duplicate(field).into();
            }
        }
        return Duplicate("value").into();
    }
    anyhow::Error::new(error).context(context)
}
