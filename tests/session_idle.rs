//! The idle timeout (ASVS 3.3.2): with `session.idle_timeout_minutes` set, a session left unused
//! that long signs in no more, while one in use goes on; on both stores.

mod common;

use common::csrf_of;
use reqwest::StatusCode;

/// Moves the last activity of `user_id`'s sessions `minutes` into the past.
async fn idle_for(app: &common::TestApp, user_id: i64, minutes: i64) {
    sqlx::any::install_default_drivers();
    let url = if app.state.config.database_url.is_empty() {
        format!(
            "sqlite://{}",
            app.data_dir.path().join("covenant.db").display()
        )
    } else {
        app.state.config.database_url.clone()
    };
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    sqlx::query("UPDATE sessions SET last_seen_at = last_seen_at - $1 WHERE user_id = $2")
        .bind(minutes * 60)
        .bind(user_id)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

on_both_stores! {
    /// Proves: A4
    async fn a_session_idle_past_the_timeout_signs_in_no_more(app) where config: |c| c.session.idle_timeout_minutes = 30; {
        let token = app.member("gus").await;
        let gus = app.store.user_by_username("gus").await.unwrap().unwrap().id;
        let browser = app.new_client();
        let form = app.page(&browser, "/sign-in").await;
        let response = browser.post(app.url("/sign-in"))
            .form(&[("csrf", csrf_of(&form).as_str()), ("login", "gus"),
                    ("password", "a long enough password")])
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);

        // Twenty minutes idle: still signed in (and the visit counts as activity).
        idle_for(app, gus, 20).await;
        assert_eq!(browser.get(app.url("/account/security")).send().await.unwrap().status(), StatusCode::OK);
        let response = app.client.get(app.url("/api/v1/me")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);

        // Thirty-one minutes idle: the page sends the browser to sign in, the API refuses.
        idle_for(app, gus, 31).await;
        let response = browser.get(app.url("/account/security")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()["location"], "/sign-in");
        let response = app.client.get(app.url("/api/v1/me")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        // A new sign-in works at once.
        let fresh = app.bearer("gus").await;
        let response = app.client.get(app.url("/api/v1/me")).bearer_auth(&fresh).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}
