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
