//! The two migration folders describe one schema: same tables, same columns.

mod common;

use std::collections::BTreeSet;

async fn sqlite_columns() -> BTreeSet<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let store = covenant::Store::open(dir.path(), "", 1).await.unwrap();
    store.migrate().await.unwrap();
    store.close().await;
    let pool = sqlx::AnyPool::connect(&format!(
        "sqlite://{}",
        dir.path().join("covenant.db").display()
    ))
    .await
    .unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    rows.into_iter().collect()
}

#[tokio::test]
async fn both_migration_folders_build_the_same_tables_and_columns() {
    sqlx::any::install_default_drivers();
    let sqlite = sqlite_columns().await;
    assert!(sqlite.contains(&("post_devices".to_string(), "ip".to_string())));
    let Some(admin) = common::postgres_url() else {
        eprintln!("skipped on PostgreSQL: COVENANT_TEST_DATABASE_URL is not set");
        return;
    };
    let url = common::fresh_postgres_database(&admin).await;
    let store = covenant::Store::connect(&url, 1).await.unwrap();
    store.migrate().await.unwrap();
    store.close().await;
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let postgres: BTreeSet<(String, String)> = rows.into_iter().collect();
    let only_sqlite: Vec<_> = sqlite.difference(&postgres).collect();
    let only_postgres: Vec<_> = postgres.difference(&sqlite).collect();
    assert!(
        only_sqlite.is_empty() && only_postgres.is_empty(),
        "only on SQLite: {only_sqlite:?}; only on PostgreSQL: {only_postgres:?}"
    );
}

/// Builds the schema as it was before posts' text moved out (migrations up to 0042), writes a
/// forum with two posts there, then migrates the rest of the way.
async fn posts_written_before_0043(url: &str, folder: &str) -> sqlx::AnyPool {
    // One connection, so that the foreign keys SQLite enforces per connection stay on.
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap();
    let mut before = sqlx::migrate::Migrator::new(std::path::Path::new(folder))
        .await
        .unwrap();
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < 43)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&pool).await.unwrap();
    for insert in [
        "INSERT INTO users (id, username, username_lower, email, email_lookup, password_hash, \
         created_at) VALUES (7, 'Ada', 'ada', 'e', 'l', 'h', 1)",
        "INSERT INTO topics (id, kind, user_id, title, slug, created_at, last_posted_at, n_posts) \
         VALUES (3, 'discussion', 7, 'Engines', 'engines', 1, 2, 2)",
        "INSERT INTO posts (id, topic_id, user_id, post_number, body_md, body_html, created_at) \
         VALUES (11, 3, 7, 1, 'The *first* words', '<p>The <em>first</em> words</p>', 1)",
        "INSERT INTO posts (id, topic_id, user_id, post_number, body_md, body_html, created_at, \
         edited_at) VALUES (12, 3, 7, 2, 'A reply', '<p>A reply</p>', 2, 5)",
        "INSERT INTO post_devices (post_id, user_id, ip, user_agent, created_at) \
         VALUES (11, 7, 'ip-1', 'agent-1', 1), (12, 7, 'ip-2', 'agent-2', 2)",
    ] {
        sqlx::query(insert).execute(&pool).await.unwrap();
    }
    pool
}

async fn check_posts_kept_their_text(store: &covenant::Store, pool: &sqlx::AnyPool) {
    store.migrate().await.unwrap();
    let bodies: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT post_id, body_md, body_html FROM post_bodies ORDER BY post_id")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(
        bodies,
        [
            (
                11,
                "The *first* words".to_string(),
                "<p>The <em>first</em> words</p>".to_string()
            ),
            (12, "A reply".to_string(), "<p>A reply</p>".to_string()),
        ]
    );
    // The topic reads as before, and the posts kept their places, times and devices.
    let posts = store.posts_of_topic(3, 10, 0).await.unwrap();
    let read: Vec<_> = posts
        .iter()
        .map(|p| {
            (
                p.id,
                p.post_number,
                p.author.as_str(),
                p.body_md.as_str(),
                p.edited_at,
            )
        })
        .collect();
    assert_eq!(
        read,
        [
            (11, 1, "Ada", "The *first* words", None),
            (12, 2, "Ada", "A reply", Some(5))
        ]
    );
    let devices: Vec<(i64, String)> =
        sqlx::query_as("SELECT post_id, ip FROM post_devices ORDER BY post_id")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(
        devices,
        [(11, "ip-1".to_string()), (12, "ip-2".to_string())]
    );
    // A post deleted with its topic takes its text and device row with it.
    sqlx::query("DELETE FROM topics WHERE id = 3")
        .execute(pool)
        .await
        .unwrap();
    for table in ["post_bodies", "post_devices"] {
        let (n,): (i64,) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(n, 0, "{table}");
    }
}

/// Migration 0043 moves the text of posts written before it into `post_bodies` and drops the
/// columns from `posts`: nothing is lost, and the tables that point at posts still follow them.
#[tokio::test]
async fn posts_written_before_their_text_moved_out_keep_it() {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("covenant.db").display()
    );
    let pool = posts_written_before_0043(&url, "migrations/sqlite").await;
    sqlx::query("PRAGMA foreign_keys = ON")
        .execute(&pool)
        .await
        .unwrap();
    let store = covenant::Store::open(dir.path(), "", 1).await.unwrap();
    check_posts_kept_their_text(&store, &pool).await;
    store.close().await;
    let Some(admin) = common::postgres_url() else {
        eprintln!("skipped on PostgreSQL: COVENANT_TEST_DATABASE_URL is not set");
        return;
    };
    let url = common::fresh_postgres_database(&admin).await;
    let pool = posts_written_before_0043(&url, "migrations/postgres").await;
    let store = covenant::Store::connect(&url, 1).await.unwrap();
    check_posts_kept_their_text(&store, &pool).await;
    store.close().await;
    pool.close().await;
    common::drop_postgres_database(&admin, &url).await;
}
