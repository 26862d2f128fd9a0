//! The colour theme: a preference cookie set and read only while preferences are allowed.

mod common;

use common::{TestApp, csrf_of};
use reqwest::StatusCode;

fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

async fn pick_theme(app: &TestApp, client: &reqwest::Client, theme: &str) -> reqwest::Response {
    let page = app.page(client, "/").await;
    client
        .post(app.url("/preferences/theme"))
        .form(&[
            ("csrf", csrf_of(&page).as_str()),
            ("theme", theme),
            ("return_to", "/blog"),
        ])
        .send()
        .await
        .unwrap()
}

async fn set_preferences(app: &TestApp, client: &reqwest::Client, choice: &str) {
    let page = app.page(client, "/cookie-settings").await;
    let response = client
        .post(app.url("/cookie-settings"))
        .form(&[
            ("csrf", csrf_of(&page).as_str()),
            ("preferences", choice),
            ("analytics", "denied"),
            ("advertising", "denied"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

on_both_stores! {
    /// Proves: C1
    async fn a_theme_is_remembered_only_while_preference_cookies_are_allowed(app) {
        let browser = app.new_client();
        // Before any choice: nothing is set, and the settings page says what is needed.
        let response = pick_theme(app, &browser, "dark").await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()["location"], "/cookie-settings?theme=needs-preferences");
        assert!(set_cookies(&response).is_empty(), "no cookie without a choice");
        let settings = app.page(&browser, "/cookie-settings?theme=needs-preferences").await;
        assert!(settings.contains("id=\"theme-needs-preferences\""));
        assert!(!app.page(&browser, "/").await.contains("data-theme="));

        // Preferences refused: still nothing.
        set_preferences(app, &browser, "denied").await;
        let response = pick_theme(app, &browser, "dark").await;
        assert!(set_cookies(&response).iter().all(|c| !c.starts_with("covenant_theme=")));

        // Preferences allowed: the theme is kept and every page wears it.
        set_preferences(app, &browser, "granted").await;
        let response = pick_theme(app, &browser, "dark").await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()["location"], "/blog");
        let cookie = set_cookies(&response)
            .into_iter()
            .find(|c| c.starts_with("covenant_theme=dark"))
            .expect("the theme cookie is set");
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
        assert!(app.page(&browser, "/").await.contains("<html lang=\"en\" data-theme=\"dark\">"));
        assert!(app.page(&browser, "/privacy").await.contains("data-theme=\"dark\""));

        // An unknown theme is refused by name.
        let response = pick_theme(app, &browser, "neon").await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);

        // Withdrawn: the cookie is ignored at once and cleared from the browser.
        set_preferences(app, &browser, "denied").await;
        let response = browser.get(app.url("/")).send().await.unwrap();
        let cleared = set_cookies(&response);
        assert!(cleared.iter().any(|c| c.starts_with("covenant_theme=;") && c.contains("Max-Age=0")), "{cleared:?}");
        assert!(!response.text().await.unwrap().contains("data-theme="));
        assert!(!app.page(&browser, "/").await.contains("data-theme="));
    }
}
