//! Bulk loading for generated data: many rows per statement, many statements per transaction.

use super::{Store, StoreKind, Tx};
use anyhow::Context;

pub struct BulkUser {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub password_hash: String,
    pub birth_year: i64,
    pub bio: String,
    pub created_at: i64,
}

pub struct BulkTopic {
    pub id: i64,
    pub category_id: i64,
    pub user_id: i64,
    pub title: String,
    pub slug: String,
    pub created_at: i64,
    pub last_posted_at: i64,
    pub n_posts: i64,
}

pub struct BulkPost {
    pub id: i64,
    pub topic_id: i64,
    pub user_id: i64,
    pub post_number: i64,
    pub body_md: String,
    pub body_html: String,
    pub created_at: i64,
    pub ip: String,
    pub user_agent: String,
}

impl Store {
    /// The largest id in use in each of users, topics and posts.
    pub async fn max_ids(&self) -> anyhow::Result<(i64, i64, i64)> {
        let row: (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM users), \
             (SELECT COALESCE(MAX(id), 0) FROM topics), (SELECT COALESCE(MAX(id), 0) FROM posts)",
        )
        .fetch_one(self.pool())
        .await
        .context("reading the largest ids")?;
        Ok(row)
    }

    /// Ids of the categories whose slugs are given, inserting those missing.
    pub async fn ensure_categories(
        &self,
        categories: &[(&str, &str, &str)],
    ) -> anyhow::Result<Vec<i64>> {
        let mut ids = Vec::with_capacity(categories.len());
        for (slug, name, description) in categories {
            let id = match self.category_by_slug(slug).await? {
                Some(existing) => existing.id,
                None => self.insert_category(slug, name, description).await?,
            };
            ids.push(id);
        }
        Ok(ids)
    }

    /// Moves PostgreSQL's id sequences past rows inserted with explicit ids.
    pub async fn finish_bulk_load(&self) -> anyhow::Result<()> {
        let mut tx = self.begin().await?;
        for table in ["users", "topics", "posts"] {
            self.resync_identity(&mut tx, table).await?;
        }
        tx.commit().await.context("finishing a bulk load")?;
        Ok(())
    }
}

/// Rows that can be written many to a statement.
#[allow(async_fn_in_trait)]
pub trait BulkRows: Sized {
    /// How many rows go in one statement (bound parameters stay under both engines' limits).
    const PER_STATEMENT: usize;
    async fn insert(store: &Store, tx: &mut Tx, rows: &[Self]) -> anyhow::Result<()>;
}

impl BulkRows for BulkUser {
    const PER_STATEMENT: usize = 1000;
    async fn insert(store: &Store, tx: &mut Tx, rows: &[Self]) -> anyhow::Result<()> {
        bulk_insert_users(store, tx, rows).await
    }
}

impl BulkRows for BulkTopic {
    const PER_STATEMENT: usize = 1000;
    async fn insert(store: &Store, tx: &mut Tx, rows: &[Self]) -> anyhow::Result<()> {
        bulk_insert_topics(store.kind, tx, rows).await
    }
}

impl BulkRows for BulkPost {
    const PER_STATEMENT: usize = 500;
    async fn insert(store: &Store, tx: &mut Tx, rows: &[Self]) -> anyhow::Result<()> {
        bulk_insert_posts(store, tx, rows).await
    }
}

impl Store {
    /// Writes `rows` in one transaction, many rows to a statement.
    pub async fn bulk_insert<T: BulkRows>(&self, rows: &[T]) -> anyhow::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        if self.kind == StoreKind::Sqlite {
            // A bulk load (demo data, not the server) rewrites index pages all over the file:
            // with 64 MiB of page cache instead of the server's 8 MiB they stay in memory,
            // which took the system time of a 1M-post load from 20.7 s to 12.4 s.
            sqlx::query("PRAGMA cache_size = -65536")
                .execute(&mut *tx)
                .await
                .context("enlarging the page cache for a bulk load")?;
        }
        for part in rows.chunks(T::PER_STATEMENT) {
            T::insert(self, &mut tx, part).await?;
        }
        tx.commit().await.context("committing a bulk insert")?;
        Ok(())
    }
}

/// `(…), (…)` placeholders for `rows` rows of `columns` values. PostgreSQL needs `$N`. On SQLite
/// the anonymous `?` is used instead: sqlx looks up each named parameter by name, which SQLite
/// answers by a linear search, so thousands of `$N` in one statement cost quadratic time
/// (measured: three quarters of a bulk load went there).
pub(super) fn values_clause(kind: StoreKind, columns: usize, rows: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 6);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            match kind {
                StoreKind::Sqlite => sql.push('?'),
                StoreKind::Postgres => {
                    sql.push('$');
                    sql.push_str(&(row * columns + column + 1).to_string());
                }
            }
        }
        sql.push(')');
    }
    sql
}

/// Members are written with their addresses and birth years sealed under keys made for them in
/// one key store transaction, and the keyed hashes of their addresses.
async fn bulk_insert_users(store: &Store, tx: &mut Tx, users: &[BulkUser]) -> anyhow::Result<()> {
    let subjects: Vec<String> = users.iter().map(|u| crate::sealing::member(u.id)).collect();
    let keys = store.keys()?.keys_for_many(&subjects).await?;
    let sql = format!(
        "INSERT INTO users (id, username, username_lower, email, email_lookup, password_hash, \
         birth_year, bio, email_verified_at, created_at) VALUES {}",
        values_clause(store.kind, 10, users.len())
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for ((u, key), subject) in users.iter().zip(&keys).zip(&subjects) {
        query = query
            .bind(u.id)
            .bind(u.username.clone())
            .bind(u.username.to_ascii_lowercase())
            .bind(key.seal(super::USERS_EMAIL, subject, &u.email))
            .bind(store.lookup_hash(&u.email.to_lowercase())?)
            .bind(u.password_hash.clone())
            .bind(key.seal(super::USERS_BIRTH_YEAR, subject, &u.birth_year.to_string()))
            .bind(u.bio.clone())
            .bind(u.created_at)
            .bind(u.created_at);
    }
    query
        .execute(&mut **tx)
        .await
        .context("inserting demo users")?;
    Ok(())
}

async fn bulk_insert_topics(
    kind: StoreKind,
    tx: &mut Tx,
    topics: &[BulkTopic],
) -> anyhow::Result<()> {
    let sql = format!(
        "INSERT INTO topics (id, kind, category_id, user_id, title, slug, created_at, \
         last_posted_at, n_posts) VALUES {}",
        values_clause(kind, 9, topics.len())
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for t in topics {
        query = query
            .bind(t.id)
            .bind("discussion")
            .bind(t.category_id)
            .bind(t.user_id)
            .bind(t.title.clone())
            .bind(t.slug.clone())
            .bind(t.created_at)
            .bind(t.last_posted_at)
            .bind(t.n_posts);
    }
    query
        .execute(&mut **tx)
        .await
        .context("inserting demo topics")?;
    Ok(())
}

/// Posts are written with their authors' IP addresses and user agents sealed under the
/// authors' keys (made in one key store transaction where missing).
async fn bulk_insert_posts(store: &Store, tx: &mut Tx, posts: &[BulkPost]) -> anyhow::Result<()> {
    let mut authors: Vec<i64> = posts.iter().map(|p| p.user_id).collect();
    authors.sort_unstable();
    authors.dedup();
    let subjects: Vec<String> = authors
        .iter()
        .map(|id| crate::sealing::member(*id))
        .collect();
    let keys = store.keys()?.keys_for_many(&subjects).await?;
    let key_of = |user_id: i64| {
        let at = authors
            .binary_search(&user_id)
            .expect("every author has a key");
        (&keys[at], &subjects[at])
    };
    let sql = format!(
        "INSERT INTO posts (id, topic_id, user_id, post_number, created_at) VALUES {}",
        values_clause(store.kind, 5, posts.len())
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for p in posts {
        query = query
            .bind(p.id)
            .bind(p.topic_id)
            .bind(p.user_id)
            .bind(p.post_number)
            .bind(p.created_at);
    }
    query
        .execute(&mut **tx)
        .await
        .context("inserting demo posts")?;
    let sql = format!(
        "INSERT INTO post_bodies (post_id, body_md, body_html) VALUES {}",
        values_clause(store.kind, 3, posts.len())
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for p in posts {
        query = query
            .bind(p.id)
            .bind(p.body_md.clone())
            .bind(p.body_html.clone());
    }
    query
        .execute(&mut **tx)
        .await
        .context("inserting demo posts' text")?;
    let sql = format!(
        "INSERT INTO post_devices (post_id, user_id, ip, user_agent, created_at) VALUES {}",
        values_clause(store.kind, 5, posts.len())
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for p in posts {
        let (key, subject) = key_of(p.user_id);
        query = query
            .bind(p.id)
            .bind(p.user_id)
            .bind(key.seal("post_devices.ip", subject, &p.ip))
            .bind(key.seal("post_devices.user_agent", subject, &p.user_agent))
            .bind(p.created_at);
    }
    query
        .execute(&mut **tx)
        .await
        .context("inserting demo posts' devices")?;
    Ok(())
}
