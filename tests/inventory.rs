//! The inventory and the live schema agree: every column of every table of both stores is
//! declared, personal with a policy category or non-personal, and nothing declared is missing.

mod common;

use covenant::inventory::{self, Data};
use std::collections::BTreeSet;

/// The (table, column) pairs of the running store's schema.
pub async fn live_columns(app: &common::TestApp) -> BTreeSet<(String, String)> {
    let pool = app.raw_pool().await;
    let sql = match app.backend {
        common::Backend::Sqlite => {
            "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%'"
        }
        common::Backend::Postgres => {
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx%'"
        }
    };
    let rows: Vec<(String, String)> = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows.into_iter().collect()
}

on_both_stores! {
    /// Proves: R7, R8
    async fn every_column_of_the_live_schema_is_declared_in_the_inventory(app) {
        let live = live_columns(app).await;
        let declared: BTreeSet<(String, String)> = inventory::TABLES
            .iter()
            .flat_map(|t| t.columns.iter().map(|c| (t.name.to_string(), c.name.to_string())))
            .collect();
        let undeclared: Vec<_> = live.difference(&declared).collect();
        let absent: Vec<_> = declared.difference(&live).collect();
        assert!(
            undeclared.is_empty(),
            "columns neither declared personal nor non-personal in src/inventory.rs: {undeclared:?}"
        );
        assert!(absent.is_empty(), "declared in src/inventory.rs but not in the schema: {absent:?}");
    }
}

/// Proves: R7, R8
#[test]
fn every_personal_column_names_a_category_of_the_default_policy() {
    let policy = covenant_core::policy::Policy::default_policy();
    for table in inventory::TABLES {
        for column in table.columns {
            if let Data::Personal(personal) = column.data {
                let key = covenant_core::policy::CategoryKey::parse(personal.category).unwrap();
                assert!(
                    policy.category(&key).is_some() && policy.retention_for(&key).is_some(),
                    "{}.{}: {} has no category or retention rule in the policy",
                    table.name,
                    column.name,
                    personal.category
                );
            }
        }
    }
}
