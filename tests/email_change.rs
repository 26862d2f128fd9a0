//! Changing one's email address (issue 8): a link to the new address, notices to the old one,
//! the change only through the link, and nothing that reveals another member's address; on
//! both stores.

mod common;

use common::csrf_of;
use reqwest::StatusCode;

const PASSWORD: &str = "a long enough password";

/// A connection of our own to the test's database.
async fn db_pool(app: &common::TestApp) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let url = if app.state.config.database_url.is_empty() {
        format!(
            "sqlite://{}",
            app.data_dir.path().join("covenant.db").display()
        )
    } else {
        app.state.config.database_url.clone()
    };
    sqlx::AnyPool::connect(&url).await.unwrap()
}

async fn exec(app: &common::TestApp, sql: &str) {
    let pool = db_pool(app).await;
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// Every audit entry's kind and details, oldest first.
async fn audit_text(app: &common::TestApp) -> Vec<(String, String)> {
    let pool = db_pool(app).await;
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT kind, details FROM audit_log ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    rows
}

/// Signs in through the sign-in page with a fresh browser.
async fn browser_of(app: &common::TestApp, login: &str) -> reqwest::Client {
    let browser = app.new_client();
    let form = app.page(&browser, "/sign-in").await;
    let response = browser
        .post(app.url("/sign-in"))
        .form(&[
            ("csrf", csrf_of(&form).as_str()),
            ("login", login),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "signed in as {login}"
    );
    browser
}

/// Asks for a new address from the security page; returns the answer's status and page.
async fn ask_change(
    app: &common::TestApp,
    browser: &reqwest::Client,
    email: &str,
    password: &str,
) -> (StatusCode, String) {
    let page = app.page(browser, "/account/security").await;
    let response = browser
        .post(app.url("/account/security/email"))
        .form(&[
            ("csrf", csrf_of(&page).as_str()),
            ("email", email),
            ("current_password", password),
        ])
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

/// Opens the link's page and presses its button; returns the answer's status.
async fn follow(browser: &reqwest::Client, link: &str) -> StatusCode {
    let response = browser.get(link).send().await.unwrap();
    if response.status() != StatusCode::OK {
        return response.status();
    }
    let page = response.text().await.unwrap();
    let response = browser
        .post(link)
        .form(&[("csrf", csrf_of(&page).as_str())])
        .send()
        .await
        .unwrap();
    let status = response.status();
    if status == StatusCode::OK {
        let body = response.text().await.unwrap();
        assert!(
            body.contains("Your account now uses this address"),
            "{body}"
        );
    }
    status
}

/// Signs in through the API with `login`; returns the status.
async fn api_sign_in(app: &common::TestApp, login: &str) -> StatusCode {
    app.new_client()
        .post(app.url("/api/v1/session"))
        .json(&serde_json::json!({"login": login, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .status()
}

fn subject_of(mail: &str) -> &str {
    mail.lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or_default()
}

const NOTICE: &str = "We sent a link to the new address, if it can be used";

on_both_stores! {
    /// A member changes their address: the password again, then a single-use link to the new
    /// address; the old address is told at the request and at the change, with the new one
    /// masked; only the link changes anything, and afterwards the member signs in with the new
    /// address and not the old; the audit entry holds no address.
    /// Proves: A4, R1
    async fn a_new_address_takes_effect_only_through_the_link_sent_to_it(app) {
        app.member("ada").await;
        let ada = app.store.user_by_username("ada").await.unwrap().unwrap().id;
        let browser = browser_of(app, "ada").await;

        // A wrong password changes nothing and sends nothing.
        let (status, page) = ask_change(app, &browser, "ada.new@example.net", "not my password at all").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(page.contains("is not your current password"), "{page}");
        // The current address is no change.
        let (status, page) = ask_change(app, &browser, "ADA@example.org", PASSWORD).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(page.contains("is already your address"), "{page}");
        assert!(app.mail_to("ada.new@example.net").is_empty());

        let (status, page) = ask_change(app, &browser, "ada.new@example.net", PASSWORD).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains(NOTICE), "{page}");
        let confirm = app.wait_for_mail("ada.new@example.net", "Confirm your new email address").await;
        let link = app.link_in(&confirm);
        assert!(link.contains("/email-change/"), "{link}");
        let asked = app.wait_for_mail("ada@example.org", "email address was asked").await;
        assert!(asked.contains("a***@e***.net"), "{asked}");
        assert!(!asked.contains("ada.new"), "the old address never sees the new one in full");
        assert!(!asked.contains("/email-change/"), "nor the link");

        // Nothing has changed yet, and opening the link's page changes nothing either.
        let response = browser.get(&link).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(app.store.user_by_id(ada).await.unwrap().unwrap().email, "ada@example.org");
        assert_eq!(api_sign_in(app, "ada.new@example.net").await, StatusCode::UNAUTHORIZED);
        assert_eq!(api_sign_in(app, "ada@example.org").await, StatusCode::CREATED);

        // The link, opened in any browser (the new address's owner may read mail elsewhere).
        assert_eq!(follow(&app.new_client(), &link).await, StatusCode::OK);
        let user = app.store.user_by_id(ada).await.unwrap().unwrap();
        assert_eq!(user.email, "ada.new@example.net");
        assert!(user.email_verified_at.is_some());
        assert_eq!(api_sign_in(app, "ada.new@example.net").await, StatusCode::CREATED);
        assert_eq!(api_sign_in(app, "ada@example.org").await, StatusCode::UNAUTHORIZED);
        let changed = app.wait_for_mail("ada@example.org", "email address was changed").await;
        assert!(changed.contains("a***@e***.net"), "{changed}");
        assert!(!changed.contains("ada.new"), "{changed}");
        assert!(changed.contains("/account/security"), "says where to secure the account");

        // The link works once.
        assert_eq!(follow(&app.new_client(), &link).await, StatusCode::BAD_REQUEST);
        let response = browser.post(&link).form(&[("csrf", "x")]).send().await.unwrap();
        assert_ne!(response.status(), StatusCode::OK);

        // Account mail now goes to the new address: a reset link arrives there.
        let response = app.client.post(app.url("/api/v1/password-reset"))
            .json(&serde_json::json!({"email": "ada.new@example.net"})).send().await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        app.wait_for_mail("ada.new@example.net", "Reset your password").await;

        // The audit log records the rectification with value classes, never an address.
        let entries = audit_text(app).await;
        let rectified: Vec<_> = entries.iter().filter(|(kind, _)| kind == "data_rectified").collect();
        assert_eq!(rectified.len(), 1, "{entries:?}");
        assert!(rectified[0].1.contains("field=email"), "{:?}", rectified[0]);
        for (kind, details) in &entries {
            for value in ["ada.new", "example.net", "ada@", "example.org"] {
                assert!(!details.contains(value), "{kind}: {details}");
            }
        }
    }
}

on_both_stores! {
    /// An expired link, or one superseded by a newer request, changes nothing; the address
    /// waiting for its link is sealed at rest.
    /// Proves: A4, R8
    async fn expired_and_superseded_links_are_refused(app) {
        app.member("bea").await;
        let bea = app.store.user_by_username("bea").await.unwrap().unwrap().id;
        let browser = browser_of(app, "bea").await;
        let (status, _) = ask_change(app, &browser, "bea.one@example.net", PASSWORD).await;
        assert_eq!(status, StatusCode::OK);
        let first = app.link_in(&app.wait_for_mail("bea.one@example.net", "Confirm your new").await);
        // The pending address is sealed at rest under bea's key, never stored plain.
        let pool = db_pool(app).await;
        let stored: Vec<(String,)> = sqlx::query_as(
            "SELECT new_email FROM account_tokens WHERE purpose = 'change_email' AND user_id = $1")
            .bind(bea).fetch_all(&pool).await.unwrap();
        pool.close().await;
        assert_eq!(stored.len(), 1);
        assert!(stored[0].0.starts_with("s1:") && !stored[0].0.contains("bea.one"), "{stored:?}");
        let (status, _) = ask_change(app, &browser, "bea.two@example.net", PASSWORD).await;
        assert_eq!(status, StatusCode::OK);
        let second = app.link_in(&app.wait_for_mail("bea.two@example.net", "Confirm your new").await);
        assert_eq!(follow(&app.new_client(), &first).await, StatusCode::BAD_REQUEST,
            "a newer request replaces the older link");
        exec(app, &format!(
            "UPDATE account_tokens SET expires_at = created_at WHERE user_id = {bea} \
             AND purpose = 'change_email'")).await;
        assert_eq!(follow(&app.new_client(), &second).await, StatusCode::BAD_REQUEST,
            "an expired link");
        assert_eq!(app.store.user_by_id(bea).await.unwrap().unwrap().email, "bea@example.org");
        assert_eq!(api_sign_in(app, "bea.two@example.net").await, StatusCode::UNAUTHORIZED);
    }
}

on_both_stores! {
    /// Asking for another member's address is answered exactly as for a free one: the member
    /// asking learns nothing, no link is made, and the address's owner is told without being
    /// told who asked. An address taken after the link was sent is refused when it is opened.
    /// Proves: A4
    async fn another_members_address_is_never_revealed(app) {
        app.member("cal").await;
        app.member("dot").await;
        let cal = app.store.user_by_username("cal").await.unwrap().unwrap().id;
        let browser = browser_of(app, "cal").await;

        let (free_status, free_page) = ask_change(app, &browser, "cal.free@example.net", PASSWORD).await;
        let (taken_status, taken_page) = ask_change(app, &browser, "DOT@example.org", PASSWORD).await;
        assert_eq!(free_status, taken_status);
        assert!(free_page.contains(NOTICE) && taken_page.contains(NOTICE));
        assert!(!taken_page.contains("dot@example.org") && !taken_page.contains("DOT@example.org"));
        let told = app.wait_for_mail("dot@example.org", "Your email address on").await;
        let body = told.split_once("\r\n\r\n").or_else(|| told.split_once("\n\n")).unwrap().1;
        assert!(!body.contains("cal"), "the owner is not told who asked: {body}");
        assert!(told.contains("already belongs to an account"), "{told}");
        assert!(app.mail_to("dot@example.org").iter().all(|m| !m.contains("/email-change/")),
            "no link to take over dot's address");
        // cal's current address heard of both requests alike.
        let asked = || app.mail_to("cal@example.org").into_iter()
            .filter(|m| subject_of(m).contains("email address was asked")).count();
        for _ in 0..300 {
            if asked() >= 2 { break; }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(asked(), 2);
        assert_eq!(app.store.user_by_id(cal).await.unwrap().unwrap().email, "cal@example.org");
        assert_eq!(app.store.user_by_username("dot").await.unwrap().unwrap().email, "dot@example.org");

        // Someone registers the free address before cal opens its link: the link is refused.
        let (status, _) = ask_change(app, &browser, "cal.later@example.net", PASSWORD).await;
        assert_eq!(status, StatusCode::OK);
        let link = app.link_in(&app.wait_for_mail("cal.later@example.net", "Confirm your new").await);
        let response = app.client.post(app.url("/api/v1/users"))
            .json(&serde_json::json!({"username": "eve", "email": "cal.later@example.net",
                "password": PASSWORD, "birth_year": 1990, "country": "GB"}))
            .send().await.unwrap();
        assert_eq!(response.status(), 201);
        assert_eq!(follow(&app.new_client(), &link).await, StatusCode::BAD_REQUEST);
        assert_eq!(app.store.user_by_id(cal).await.unwrap().unwrap().email, "cal@example.org");
    }
}

on_both_stores! {
    /// The change needs a recent sign-in: an old one is sent to the password form first, and
    /// nothing is mailed.
    /// Proves: A4
    async fn an_old_sign_in_confirms_the_password_before_asking(app) {
        app.member("fay").await;
        let fay = app.store.user_by_username("fay").await.unwrap().unwrap().id;
        let browser = browser_of(app, "fay").await;
        let page = app.page(&browser, "/account/security").await;
        exec(app, &format!(
            "UPDATE sessions SET authenticated_at = authenticated_at - 13 * 3600 WHERE user_id = {fay}")).await;
        let response = browser.post(app.url("/account/security/email"))
            .form(&[("csrf", csrf_of(&page).as_str()), ("email", "fay.new@example.net"),
                    ("current_password", PASSWORD)])
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()["location"], "/account/confirm");
        let confirm = app.page(&browser, "/account/confirm").await;
        assert!(confirm.contains("email address"), "the form says what it guards");
        assert!(app.mail_to("fay.new@example.net").is_empty());
    }
}
