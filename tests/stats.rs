//! Visitor statistics without personal data (F2): counted only with consent, published only
//! above the smallest count, stored without any column that could identify someone.

mod common;

use common::csrf_of;
use reqwest::StatusCode;

async fn topic(app: &common::TestApp, token: &str, title: &str) -> String {
    let created: serde_json::Value = app
        .client
        .post(app.url("/api/v1/topics"))
        .bearer_auth(token)
        .json(&serde_json::json!({"category": "general", "title": title, "body": "Some text"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["url"]
        .as_str()
        .unwrap()
        .strip_prefix(&app.address)
        .unwrap()
        .to_string()
}

/// A browser that accepted every optional cookie on the banner.
async fn consenting_browser(app: &common::TestApp) -> reqwest::Client {
    let browser = app.new_client();
    let home = app.page(&browser, "/").await;
    let response = browser
        .post(app.url("/consent"))
        .form(&[
            ("csrf", csrf_of(&home).as_str()),
            ("choice", "accept_all"),
            ("return_to", "/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    browser
}

async fn view(app: &common::TestApp, browser: &reqwest::Client, path: &str, times: usize) {
    for _ in 0..times {
        let response = browser
            .get(app.url(path))
            .header(
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            )
            .header("accept-language", "de-CH, de;q=0.9")
            .header("referer", "https://search.example/?q=covenant")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}

on_both_stores! {
    /// Proves: F2
    async fn with_k_10_a_topic_viewed_nine_times_is_not_published(app) {
        let token = app.member("ada").await;
        let nine = topic(app, &token, "Viewed nine times").await;
        let ten = topic(app, &token, "Viewed ten times").await;
        let browser = consenting_browser(app).await;
        view(app, &browser, &nine, 9).await;
        view(app, &browser, &ten, 10).await;
        // A visitor who chose nothing, and one who refused, are not counted at all.
        let visitor = app.new_client();
        view(app, &visitor, &nine, 5).await;
        let refusing = app.new_client();
        let home = app.page(&refusing, "/").await;
        refusing.post(app.url("/consent"))
            .form(&[("csrf", csrf_of(&home).as_str()), ("choice", "reject_all"), ("return_to", "/")])
            .send().await.unwrap();
        view(app, &refusing, &nine, 5).await;
        app.state.visits.flush().await.unwrap();

        let stats = app.page(&app.new_client(), "/stats").await;
        assert!(stats.contains("Viewed ten times"), "{stats}");
        assert!(!stats.contains("Viewed nine times"), "{stats}");
        // 19 views in all pass k for the browser, language and referring site.
        assert!(stats.contains("Firefox") && stats.contains(">de<") && stats.contains("search.example"), "{stats}");
        assert!(stats.contains(">19<"), "{stats}");

        // One more view of the first topic, and it passes the threshold.
        view(app, &browser, &nine, 1).await;
        app.state.visits.flush().await.unwrap();
        let stats = app.page(&app.new_client(), "/stats").await;
        assert!(stats.contains("Viewed nine times"), "{stats}");
    }
}

/// Proves: F2
#[tokio::test]
async fn the_statistics_table_has_no_column_that_could_identify_a_person() {
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
    let columns: Vec<(String,)> =
        sqlx::query_as("SELECT name FROM pragma_table_info('visit_counts')")
            .fetch_all(&pool)
            .await
            .unwrap();
    let columns: Vec<String> = columns.into_iter().map(|(c,)| c).collect();
    assert_eq!(
        columns,
        [
            "day", "topic_id", "browser", "language", "referrer", "views"
        ]
    );
    for column in &columns {
        for identifying in [
            "user", "ip", "cookie", "session", "consent", "agent", "device", "email", "account",
        ] {
            assert!(
                !column.contains(identifying),
                "visit_counts.{column} looks like it could identify someone"
            );
        }
    }
    // The only other table statistics touch is none: no raw event table exists.
    let tables: Vec<(String,)> = sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'table' AND (name LIKE '%visit%' OR name LIKE '%analytic%' OR name LIKE '%stat%')")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(tables, [("visit_counts".to_string(),)]);
}
