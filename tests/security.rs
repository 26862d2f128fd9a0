//! Security: the tamper-evident audit log, 2-step verification, staff needing it, and the
//! member's security checkup, on both stores.

mod common;

use common::csrf_of;
use covenant::audit::{self, AuditKey, AuditKind, Problem};
use reqwest::StatusCode;
use std::process::Command;

fn audit_key(app: &common::TestApp) -> AuditKey {
    AuditKey::load(&app.state.config.audit_key_path()).unwrap()
}

async fn exec(app: &common::TestApp, sql: &str) {
    let pool = db_pool(app).await;
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// A connection of our own, as an attacker with database access only would have.
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

/// `covenant audit verify` on the test's store; returns (exit code, output).
fn verify_cli(app: &common::TestApp) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_covenant"));
    command
        .args(["audit", "verify", "--data-dir"])
        .arg(app.data_dir.path())
        .env_remove("COVENANT_DATA_DIR")
        .env_remove("COVENANT_DATABASE_URL");
    if !app.state.config.database_url.is_empty() {
        command.args(["--database-url", &app.state.config.database_url]);
    }
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// Signs in through the sign-in page with a fresh browser; returns the client and the response.
async fn sign_in_page(
    app: &common::TestApp,
    login: &str,
    code: Option<&str>,
    user_agent: &str,
) -> (reqwest::Client, reqwest::Response) {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .user_agent(user_agent)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = app.page(&browser, "/sign-in").await;
    let mut fields = vec![
        ("csrf", csrf_of(&form)),
        ("login", login.to_string()),
        ("password", "a long enough password".to_string()),
    ];
    if let Some(code) = code {
        fields.push(("code", code.to_string()));
    }
    let response = browser
        .post(app.url("/sign-in"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    (browser, response)
}

on_both_stores! {
    /// Proves: A3
    async fn audit_verify_finds_edited_deleted_and_swapped_entries(app) {
        for name in ["ada", "bob", "cyd"] {
            app.member(name).await;
        }
        let key = audit_key(app);
        let clean = audit::verify(&app.store, &key).await.unwrap();
        assert!(clean.is_intact(), "{:?}", clean.problems);
        assert!(clean.entries >= 6, "registrations, verifications and sign-ins are recorded");
        let (code, text) = verify_cli(app);
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("OK"), "{text}");

        // Edit: entry 2 now claims another subject.
        exec(app, "UPDATE audit_log SET subject_id = 999 WHERE seq = 2").await;
        // Delete: entry 4 disappears.
        exec(app, "DELETE FROM audit_log WHERE seq = 4").await;
        // Swap: entries 6 and 7 trade places (their contents move, numbers stay).
        exec(app, "UPDATE audit_log SET seq = -6 WHERE seq = 6").await;
        exec(app, "UPDATE audit_log SET seq = 6 WHERE seq = 7").await;
        exec(app, "UPDATE audit_log SET seq = 7 WHERE seq = -6").await;

        let found = audit::verify(&app.store, &key).await.unwrap();
        assert!(found.problems.contains(&Problem::Edited(2)), "{:?}", found.problems);
        assert!(found.problems.contains(&Problem::Deleted(4)), "{:?}", found.problems);
        assert!(found.problems.contains(&Problem::Reordered(6)), "{:?}", found.problems);
        assert!(found.problems.contains(&Problem::Reordered(7)), "{:?}", found.problems);
        let (code, text) = verify_cli(app);
        assert_eq!(code, 1, "{text}");
        for expected in ["entry 2 was edited", "entry 4 was deleted", "entry 6 is out of order", "entry 7 is out of order"] {
            assert!(text.contains(expected), "{expected}: {text}");
        }
    }
}

on_both_stores! {
    /// Proves: A3
    async fn a_database_only_attacker_cannot_rebuild_the_chain_without_the_key(app) {
        app.member("ada").await;
        let key = audit_key(app);
        // Someone who rewrites an entry and recomputes its hash still lacks the MAC key.
        let pool = db_pool(app).await;
        let (hash,): (String,) = sqlx::query_as("SELECT entry_hash FROM audit_log WHERE seq = 1").fetch_one(&pool).await.unwrap();
        sqlx::query("UPDATE audit_log SET mac = $1 WHERE seq = 1").bind(hash).execute(&pool).await.unwrap();
        pool.close().await;
        let found = audit::verify(&app.store, &key).await.unwrap();
        assert_eq!(found.problems, vec![Problem::Edited(1)]);
        // Deleting the newest entry is caught by the chain's head.
        exec(app, "UPDATE audit_log SET mac = 'x' WHERE seq = 1").await;
        let (last,): (i64,) = {
            let pool = db_pool(app).await;
            let row = sqlx::query_as("SELECT MAX(seq) FROM audit_log").fetch_one(&pool).await.unwrap();
            pool.close().await;
            row
        };
        exec(app, &format!("DELETE FROM audit_log WHERE seq = {last}")).await;
        let found = audit::verify(&app.store, &key).await.unwrap();
        assert!(found.problems.contains(&Problem::Deleted(last)), "{:?}", found.problems);
    }
}

/// The newest sequence number in the audit table and an older entry's hash and MAC.
async fn audit_tail(app: &common::TestApp, back: i64) -> (i64, String, String) {
    let pool = db_pool(app).await;
    let (last,): (i64,) = sqlx::query_as("SELECT MAX(seq) FROM audit_log")
        .fetch_one(&pool)
        .await
        .unwrap();
    let (hash, mac): (String, String) =
        sqlx::query_as("SELECT entry_hash, mac FROM audit_log WHERE seq = $1")
            .bind(last - back)
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    (last, hash, mac)
}

on_both_stores! {
    /// Proves: A3
    async fn audit_verify_reports_newest_entries_deleted_even_when_the_head_is_rewound(app) {
        for name in ["ada", "bob"] {
            app.member(name).await;
        }
        let key = audit_key(app);
        assert!(audit::verify(&app.store, &key).await.unwrap().is_intact());
        // Someone with the database alone deletes the two newest entries and points the head at
        // the last entry kept, so that the chain looks whole.
        let (last, kept_hash, kept_mac) = audit_tail(app, 2).await;
        let kept = last - 2;
        exec(app, &format!("DELETE FROM audit_log WHERE seq > {kept}")).await;
        exec(app, &format!("UPDATE audit_head SET seq = {kept}, hash = '{kept_hash}'")).await;
        let found = audit::verify(&app.store, &key).await.unwrap();
        assert_eq!(found.problems, vec![Problem::HeadRewritten]);
        let (code, text) = verify_cli(app);
        assert_eq!(code, 1, "{text}");
        assert!(text.contains("the newest entries may have been deleted"), "{text}");
        // Borrowing a MAC written by the key elsewhere in the chain, or blanking it, does not
        // sign the rewound head either.
        for mac in [kept_mac.as_str(), ""] {
            exec(app, &format!("UPDATE audit_head SET mac = '{mac}'")).await;
            let found = audit::verify(&app.store, &key).await.unwrap();
            assert_eq!(found.problems, vec![Problem::HeadRewritten], "mac {mac:?}");
        }
    }
}

on_both_stores! {
    /// Proves: A3
    async fn the_audit_log_holds_identifiers_and_never_an_email_or_address(app) {
        app.member("zoe").await;
        let (_, response) = sign_in_page(app, "zoe@example.org", None, "Browser/1").await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let (_, response) = sign_in_page(app, "nobody@example.org", None, "Browser/1").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let pool = db_pool(app).await;
        let rows: Vec<(Option<i64>, Option<i64>, String, String)> =
            sqlx::query_as("SELECT actor_id, subject_id, kind, details FROM audit_log ORDER BY seq")
                .fetch_all(&pool).await.unwrap();
        pool.close().await;
        let kinds: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
        for kind in ["account_registered", "email_verified", "signed_in", "sign_in_failed"] {
            assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
        }
        let failed = rows.iter().find(|r| r.2 == "sign_in_failed").unwrap();
        assert_eq!(failed.1, None, "no account matched, so no subject is named");
        for (_, _, kind, details) in &rows {
            let text = format!("{kind} {details}");
            for personal in ["@", "example.org", "127.0.0.1", "Browser", "zoe"] {
                assert!(!text.contains(personal), "{personal} in {text}");
            }
        }
    }
}

/// Enrols the member in 2-step verification through the pages; returns the browser and secret.
async fn enrol(app: &common::TestApp, login: &str) -> (reqwest::Client, String, Vec<String>) {
    let (browser, response) = sign_in_page(app, login, None, "Enrol/1").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let page = app.page(&browser, "/account/two-factor").await;
    assert!(page.contains("<svg"), "a QR code is shown");
    assert!(page.contains("otpauth://totp/"), "the otpauth URI is shown");
    let secret = page
        .split("<code id=\"secret\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    // A wrong code does not turn it on.
    let response = browser
        .post(app.url("/account/two-factor/enable"))
        .form(&[("csrf", csrf_of(&page)), ("code", "000000".into())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Codes of the previous step stay valid (clock drift), so enrolling with it leaves the
    // current code unused for the sign-in that follows.
    let step = common::settled_totp_step().await;
    let code = common::totp_code(&secret, step - 1);
    let response = browser
        .post(app.url("/account/two-factor/enable"))
        .form(&[("csrf", csrf_of(&page)), ("code", code)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let shown = response.text().await.unwrap();
    let codes: Vec<String> = shown
        .match_indices("<li><code>")
        .map(|(i, m)| shown[i + m.len()..].split('<').next().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 10, "ten recovery codes are shown once");
    (browser, secret, codes)
}

on_both_stores! {
    /// Proves: A4
    async fn totp_sign_in_refuses_wrong_and_replayed_codes_and_recovery_codes_work_once(app) {
        app.member("ada").await;
        let (_, secret, recovery) = enrol(app, "ada").await;
        app.wait_for_mail("ada@example.org", "2-step verification is on").await;

        // Password alone is no longer enough, on the pages and in the API.
        let (_, response) = sign_in_page(app, "ada", None, "Enrol/1").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.text().await.unwrap().contains("name=\"code\""), "the page asks for the code");
        let response = app.client.post(app.url("/api/v1/session"))
            .json(&serde_json::json!({"login": "ada", "password": "a long enough password"})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "second_factor_required");

        // A wrong code is refused.
        let response = app.client.post(app.url("/api/v1/session"))
            .json(&serde_json::json!({"login": "ada", "password": "a long enough password", "code": "123456"})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_second_factor");

        // The right code signs in, once.
        let code = covenant::two_factor::code_at(&secret, covenant::now()).unwrap();
        let (_, response) = sign_in_page(app, "ada", Some(&code), "Enrol/1").await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let response = app.client.post(app.url("/api/v1/session"))
            .json(&serde_json::json!({"login": "ada", "password": "a long enough password", "code": code})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "a replayed code is refused");

        // A recovery code works in place of the app's code, once.
        let response = app.client.post(app.url("/api/v1/session"))
            .json(&serde_json::json!({"login": "ada", "password": "a long enough password", "code": recovery[3]})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let response = app.client.post(app.url("/api/v1/session"))
            .json(&serde_json::json!({"login": "ada", "password": "a long enough password", "code": recovery[3]})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

        // The codes are stored as digests only.
        let pool = db_pool(app).await;
        let stored: Vec<(String,)> = sqlx::query_as("SELECT code_hash FROM recovery_codes").fetch_all(&pool).await.unwrap();
        pool.close().await;
        assert_eq!(stored.len(), 10);
        assert!(stored.iter().all(|(h,)| !recovery.iter().any(|c| h.contains(c.as_str())) && h.len() == 64));
        let key = audit_key(app);
        assert!(audit::verify(&app.store, &key).await.unwrap().is_intact());
    }
}

on_both_stores! {
    /// Proves: A3, A4
    async fn staff_cannot_act_until_they_turn_on_two_step_verification(app) {
        let author = app.member("writer").await;
        let moderator = app.member("warden").await;
        let user = app.store.user_by_username("warden").await.unwrap().unwrap();
        app.state.accounts.set_role(user.id, covenant::domain::Role::Moderator).await.unwrap();
        let response = app.client.post(app.url("/api/v1/topics")).bearer_auth(&author)
            .json(&serde_json::json!({"category": "general", "title": "A topic", "body": "Spam"})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let post_id = response.json::<serde_json::Value>().await.unwrap()["post_id"].as_i64().unwrap();

        let response = app.client.post(app.url(&format!("/api/v1/posts/{post_id}/hide"))).bearer_auth(&moderator).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "second_factor_enrolment_required");
        assert!(body["error"]["message"].as_str().unwrap().contains("2-step verification"));

        enrol(app, "warden").await;
        let response = app.client.post(app.url(&format!("/api/v1/posts/{post_id}/hide"))).bearer_auth(&moderator).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);

        let pool = db_pool(app).await;
        let rows: Vec<(Option<i64>, Option<i64>, String, String)> =
            sqlx::query_as("SELECT actor_id, subject_id, kind, details FROM audit_log WHERE kind IN ('role_changed', 'post_hidden') ORDER BY seq")
                .fetch_all(&pool).await.unwrap();
        pool.close().await;
        assert_eq!(rows[0], (None, Some(user.id), "role_changed".into(), "role=moderator previous_role=member".into()));
        assert_eq!(rows[1].0, Some(user.id));
        assert_eq!(rows[1].3, format!("post={post_id}"));
    }
}

on_both_stores! {
    /// Proves: A3, A4
    async fn administrators_filter_the_audit_log_and_members_cannot_see_it(app) {
        app.member("ada").await;
        app.member("root").await;
        let admin = app.store.user_by_username("root").await.unwrap().unwrap();
        let ada = app.store.user_by_username("ada").await.unwrap().unwrap();
        let (member_browser, _) = sign_in_page(app, "ada", None, "B/1").await;
        let response = member_browser.get(app.url("/staff/audit")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);

        app.state.accounts.set_role(admin.id, covenant::domain::Role::Administrator).await.unwrap();
        let (browser, _, _) = enrol(app, "root").await;
        let page = app.page(&browser, &format!("/staff/audit?subject={}&kind=signed_in", ada.id)).await;
        assert!(page.contains("signed_in"));
        assert!(!page.contains("<td>account_registered</td>"), "the kind filter holds");
        let page = app.page(&browser, "/staff/audit?from=2000-01-01&until=2000-01-02").await;
        assert!(page.contains("0 entries"), "the time filter holds");
        let response = browser.get(app.url("/staff/audit?kind=made_up")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let page = app.page(&browser, &format!("/staff/audit?kind=audit_log_viewed&actor={}", admin.id)).await;
        assert!(page.contains("<td>audit_log_viewed</td>"), "viewing the log is itself logged");
    }
}

on_both_stores! {
    /// Proves: A4
    async fn the_checkup_lists_sessions_and_revoking_one_ends_it(app) {
        app.member("ada").await;
        let (laptop, _) = sign_in_page(app, "ada", None, "Laptop/1").await;
        let (phone, _) = sign_in_page(app, "ada", None, "Phone/2").await;
        // Each new device gets its own notice; wait for the phone's, not just the first one.
        let mut phone_noticed = false;
        for _ in 0..100 {
            app.wait_for_mail("ada@example.org", "New sign-in").await;
            phone_noticed = app.mail_to("ada@example.org").iter().any(|m| m.contains("New sign-in") && m.contains("Phone/2"));
            if phone_noticed {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(phone_noticed, "a notice names the new device");

        let page = app.page(&laptop, "/account/security").await;
        assert!(page.contains("Laptop/1") && page.contains("Phone/2"), "sessions show their device");
        assert!(page.contains("This device"));
        assert!(page.contains("Recent sign-ins") && page.contains("Off."), "2FA status is shown");
        assert!(page.contains("days ago"), "the password's age is shown");
        let phone_handle = page.split("<tr data-session=\"").skip(1)
            .find(|row| row.contains("Phone/2")).unwrap().split('"').next().unwrap().to_string();

        let response = laptop.post(app.url("/account/security/sessions/revoke"))
            .form(&[("csrf", csrf_of(&page)), ("session", phone_handle.clone())]).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let home = app.page(&phone, "/").await;
        assert!(home.contains("href=\"/sign-in\""), "the phone is signed out");
        let page = app.page(&laptop, "/account/security").await;
        assert!(!page.contains(&phone_handle));

        // Another member cannot end ada's sessions by naming them.
        let (other, _) = {
            app.member("bob").await;
            sign_in_page(app, "bob", None, "Other/1").await
        };
        let bob_page = app.page(&other, "/account/security").await;
        let laptop_handle = page.split("<tr data-session=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
        let response = other.post(app.url("/account/security/sessions/revoke"))
            .form(&[("csrf", csrf_of(&bob_page)), ("session", laptop_handle)]).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(app.page(&laptop, "/account/security").await.contains("This device"));

        // A password change ends the other sessions and is told by email.
        let (tablet, _) = sign_in_page(app, "ada", None, "Tablet/3").await;
        let response = laptop.post(app.url("/account/security/password"))
            .form(&[("csrf", csrf_of(&page)), ("current_password", "a long enough password".into()), ("password", "another long password".into())])
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        app.wait_for_mail("ada@example.org", "password was changed").await;
        assert!(app.page(&tablet, "/").await.contains("href=\"/sign-in\""));
        assert!(app.page(&laptop, "/account/security").await.contains("This device"));
        assert!(audit::verify(&app.store, &audit_key(app)).await.unwrap().is_intact());
    }
}

/// Proves: A3
#[test]
fn every_audit_kind_is_recorded_somewhere_or_reserved() {
    let mut sources = String::new();
    let mut stack = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src"
    ))];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("audit.rs") {
                sources.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    for kind in AuditKind::ALL {
        let name = format!("AuditKind::{kind:?}");
        let used = sources.contains(&name);
        let reserved = AuditKind::RESERVED.contains(&kind);
        assert!(
            used != reserved,
            "{name}: used outside src/audit.rs = {used}, reserved = {reserved}"
        );
    }
}

/// A security.txt field's value, or `None` when the file lacks it.
fn security_txt_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}: ")))
}

/// Proves: A4
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_txt_names_the_privacy_email_expires_within_a_year_and_is_canonical() {
    let app = common::spawn_app_with(common::Backend::Sqlite, |config| {
        config.operator.privacy_email = "privacy@forum.example".into();
    })
    .await
    .unwrap();
    let response = app
        .client
        .get(app.url("/.well-known/security.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    assert_eq!(
        security_txt_field(&text, "Contact"),
        Some("mailto:privacy@forum.example")
    );
    assert_eq!(
        security_txt_field(&text, "Canonical"),
        Some(format!("{}/.well-known/security.txt", app.address).as_str())
    );
    assert_eq!(security_txt_field(&text, "Preferred-Languages"), Some("en"));
    let expires = time::OffsetDateTime::parse(
        security_txt_field(&text, "Expires").expect("an Expires field"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("Expires is an RFC 3339 time");
    let now = time::OffsetDateTime::now_utc();
    assert!(expires > now + time::Duration::days(30), "{expires}");
    assert!(expires < now + time::Duration::days(365), "{expires}");
    app.stop().await;
}

/// Proves: A4
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_txt_prefers_the_security_contact_and_is_absent_without_any_contact() {
    let app = common::spawn_app_with(common::Backend::Sqlite, |config| {
        config.operator.privacy_email = "privacy@forum.example".into();
        config.operator.security_contact = "https://forum.example/report-a-flaw".into();
    })
    .await
    .unwrap();
    let text = app.page(&app.client, "/.well-known/security.txt").await;
    assert_eq!(
        security_txt_field(&text, "Contact"),
        Some("https://forum.example/report-a-flaw")
    );
    app.stop().await;

    let app = common::spawn_app(common::Backend::Sqlite).await.unwrap();
    let response = app
        .client
        .get(app.url("/.well-known/security.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "no contact, no file"
    );
    app.stop().await;
}

/// Proves: A4
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_is_sent_on_every_answer_over_tls_and_never_over_plain_http() {
    let app = common::spawn_app_with(common::Backend::Sqlite, |config| {
        config.base_url = "https://forum.example".into();
    })
    .await
    .unwrap();
    for path in [
        "/",
        "/sign-in",
        "/no-such-page",
        "/api/v1/categories",
        "/static/style.css",
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(
            response
                .headers()
                .get("strict-transport-security")
                .map(|v| v.to_str().unwrap()),
            Some("max-age=31536000; includeSubDomains"),
            "GET {path}"
        );
    }
    app.stop().await;

    let app = common::spawn_app(common::Backend::Sqlite).await.unwrap();
    for path in ["/", "/sign-in", "/no-such-page"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert!(
            response
                .headers()
                .get("strict-transport-security")
                .is_none(),
            "GET {path} over plain HTTP"
        );
    }
    app.stop().await;
}

/// Signs in through the API from the client address `ip` (the test server trusts
/// `X-Forwarded-For`); returns the status and the `Retry-After` seconds, if any.
async fn api_sign_in_from(
    app: &common::TestApp,
    ip: &str,
    login: &str,
    password: &str,
) -> (StatusCode, Option<i64>) {
    let response = app
        .new_client()
        .post(app.url("/api/v1/session"))
        .header("x-forwarded-for", ip)
        .json(&serde_json::json!({"login": login, "password": password}))
        .send()
        .await
        .unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse::<i64>().unwrap());
    let status = response.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    }
    (status, retry_after)
}

const RIGHT: &str = "a long enough password";
const WRONG: &str = "not the password at all";

fn small_sign_in_limits(config: &mut covenant::Config) {
    config.trust_forwarded_for = true;
    config.rate_limits.failures_per_account = 3;
    config.rate_limits.failures_per_client = 100;
    config.rate_limits.first_wait_seconds = 2;
    config.rate_limits.max_wait_seconds = 60;
}

on_both_stores! {
    /// Proves: A4
    async fn wrong_passwords_make_a_login_wait_longer_each_time_whether_or_not_it_exists(app) where config: small_sign_in_limits; {
        app.member("ada").await;
        app.member("bob").await;
        let attacker = "198.51.100.7";
        for _ in 0..3 {
            assert_eq!(api_sign_in_from(app, attacker, "ada", WRONG).await.0, StatusCode::UNAUTHORIZED);
        }
        // The limit is reached: even the right password waits, and the answer says how long.
        let (status, retry_after) = api_sign_in_from(app, attacker, "ada", RIGHT).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        let first_wait = retry_after.expect("a Retry-After header");
        assert!((1..=2).contains(&first_wait), "{first_wait}");
        // The sign-in page refuses the same way.
        let (_, page) = sign_in_page(app, "ADA", None, "Browser").await;
        assert_eq!(page.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(page.headers().contains_key("retry-after"));
        // The login waits from any client: guesses spread over many addresses add up.
        assert_eq!(api_sign_in_from(app, "203.0.113.9", "ada", RIGHT).await.0, StatusCode::TOO_MANY_REQUESTS);
        // Another account, from the attacker's client or another, is not affected.
        assert_eq!(api_sign_in_from(app, attacker, "bob", RIGHT).await.0, StatusCode::CREATED);
        assert_eq!(api_sign_in_from(app, "203.0.113.9", "bob", RIGHT).await.0, StatusCode::CREATED);

        // A login with no account is limited the same way: a refusal says nothing of accounts.
        for _ in 0..3 {
            assert_eq!(api_sign_in_from(app, attacker, "nobody", WRONG).await.0, StatusCode::UNAUTHORIZED);
        }
        assert_eq!(api_sign_in_from(app, attacker, "nobody", RIGHT).await.0, StatusCode::TOO_MANY_REQUESTS);

        // When the wait ends, the right password works again.
        tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
        assert_eq!(api_sign_in_from(app, attacker, "ada", RIGHT).await.0, StatusCode::CREATED);
        // A login that keeps failing waits longer each time.
        for _ in 0..3 {
            assert_eq!(api_sign_in_from(app, attacker, "nobody", WRONG).await.0, StatusCode::UNAUTHORIZED);
        }
        let (status, retry_after) = api_sign_in_from(app, attacker, "nobody", WRONG).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(retry_after.unwrap() > first_wait, "{retry_after:?} after {first_wait}");

        // The counters hold keyed digests, never an address or a login.
        let pool = db_pool(app).await;
        let keys: Vec<(String,)> = sqlx::query_as("SELECT key FROM rate_limits").fetch_all(&pool).await.unwrap();
        pool.close().await;
        assert!(!keys.is_empty());
        for (key,) in keys {
            assert!(key.len() == 64 && key.chars().all(|c| c.is_ascii_hexdigit()), "{key}");
        }
    }
}

fn failures_per_client_limits(config: &mut covenant::Config) {
    config.trust_forwarded_for = true;
    config.rate_limits.failures_per_account = 100;
    config.rate_limits.failures_per_client = 4;
}

on_both_stores! {
    /// Proves: A4
    async fn one_client_guessing_across_many_logins_waits(app) where config: failures_per_client_limits; {
        app.member("ada").await;
        let attacker = "198.51.100.7";
        for login in ["ann", "ben", "cat", "dan"] {
            assert_eq!(api_sign_in_from(app, attacker, login, WRONG).await.0, StatusCode::UNAUTHORIZED);
        }
        assert_eq!(api_sign_in_from(app, attacker, "ada", RIGHT).await.0, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(api_sign_in_from(app, "203.0.113.9", "ada", RIGHT).await.0, StatusCode::CREATED);
    }
}

fn small_registration_limits(config: &mut covenant::Config) {
    config.trust_forwarded_for = true;
    config.rate_limits.registrations_per_client_per_hour = 2;
    config.rate_limits.resets_per_address_per_hour = 2;
}

async fn register_from(app: &common::TestApp, ip: &str, username: &str) -> reqwest::Response {
    app.new_client()
        .post(app.url("/api/v1/users"))
        .header("x-forwarded-for", ip)
        .json(&serde_json::json!({"username": username, "email": format!("{username}@example.org"), "password": RIGHT, "birth_year": 1990, "country": "GB"}))
        .send()
        .await
        .unwrap()
}

on_both_stores! {
    /// Proves: A4
    async fn registration_bursts_from_one_client_wait_and_others_register(app) where config: small_registration_limits; {
        let burst = "198.51.100.7";
        assert_eq!(register_from(app, burst, "one").await.status(), StatusCode::CREATED);
        // A refusal for bad input counts too: it is the attempts that are limited.
        assert_eq!(register_from(app, burst, "x").await.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let refused = register_from(app, burst, "three").await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.headers().contains_key("retry-after"));
        assert_eq!(register_from(app, "203.0.113.9", "four").await.status(), StatusCode::CREATED);
    }
}

async fn ask_reset_from(app: &common::TestApp, ip: &str, email: &str) -> StatusCode {
    app.new_client()
        .post(app.url("/api/v1/password-reset"))
        .header("x-forwarded-for", ip)
        .json(&serde_json::json!({"email": email}))
        .send()
        .await
        .unwrap()
        .status()
}

on_both_stores! {
    /// Proves: A4
    async fn reset_emails_are_limited_per_address_alike_for_accounts_and_strangers(app) where config: small_registration_limits; {
        app.member("ada").await;
        for email in ["ada@example.org", "stranger@example.org"] {
            for ip in ["198.51.100.1", "198.51.100.2"] {
                assert_eq!(ask_reset_from(app, ip, email).await, StatusCode::ACCEPTED, "{email}");
            }
            assert_eq!(ask_reset_from(app, "198.51.100.3", email).await, StatusCode::TOO_MANY_REQUESTS, "{email}");
        }
        assert_eq!(ask_reset_from(app, "198.51.100.3", "other@example.org").await, StatusCode::ACCEPTED);
    }
}

/// Classic cross-site-scripting payloads: script tags, event handlers, javascript: and data:
/// URLs (plain, cased, entity-encoded, split by whitespace), SVG and MathML, CSS expressions,
/// unclosed tags and attribute breakouts, comments and nesting tricks.
const XSS_CORPUS: &[&str] = &[
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<scr<script>ipt>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<img src=\"x\" onerror=\"alert(1)\"",
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    "<svg><a xlink:href=\"javascript:alert(1)\"><text>x</text></a></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<body onload=alert(1)>",
    "<details open ontoggle=alert(1)>",
    "<input autofocus onfocus=alert(1)>",
    "<a href=\"x\" onmouseover=\"alert(1)",
    "\"><script>alert(1)</script>",
    "'><img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](&#106;avascript:alert(1))",
    "[click]( javascript:alert(1))",
    "![x](javascript:alert(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "<javascript:alert(1)>",
    "[ref]\n\n[ref]: javascript:alert(1)",
    "<a href=\"javascript:alert(1)\">x</a>",
    "<a href=\"&#x6A;avascript&#x3A;alert(1)\">x</a>",
    "<a href=\"jav&#x09;ascript:alert(1)\">x</a>",
    "<a href=\" javascript:alert(1)\">x</a>",
    "<a href=\"vbscript:msgbox(1)\">x</a>",
    "<iframe src=\"javascript:alert(1)\"></iframe>",
    "<object data=\"javascript:alert(1)\"></object>",
    "<embed src=\"data:text/html,<script>alert(1)</script>\">",
    "<form action=\"javascript:alert(1)\"><button>x</button></form>",
    "<button formaction=\"javascript:alert(1)\">x</button>",
    "<div style=\"background:url(javascript:alert(1))\">x</div>",
    "<div style=\"width: expression(alert(1))\">x</div>",
    "<style>@import 'javascript:alert(1)';</style>",
    "<link rel=stylesheet href=\"javascript:alert(1)\">",
    "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert(1)\">",
    "<base href=\"javascript:alert(1)//\">",
    "<!--<img src=\"--><img src=x onerror=alert(1)//\">",
    "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\">",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "<<script>script>alert(1)<</script>/script>",
    "`<img src=x onerror=alert(1)>`",
];

/// What a browser would run or load from a page: each finding names the tag or attribute.
/// The page is read by an HTML tokenizer (html5ever, as browsers read it: entities decoded,
/// attributes split), not by searching text.
fn executable_markup(html: &str) -> Vec<String> {
    use html5ever::tendril::StrTendril;
    use html5ever::tokenizer::{
        BufferQueue, StartTag, TagToken, Token, TokenSink, TokenSinkResult, Tokenizer,
    };
    use std::cell::RefCell;

    struct Findings(RefCell<Vec<String>>);
    impl TokenSink for Findings {
        type Handle = ();
        fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
            let TagToken(tag) = token else {
                return TokenSinkResult::Continue;
            };
            if tag.kind != StartTag {
                return TokenSinkResult::Continue;
            }
            let name = tag.name.to_string();
            let mut found = self.0.borrow_mut();
            if matches!(
                &*name,
                "script"
                    | "iframe"
                    | "object"
                    | "embed"
                    | "svg"
                    | "math"
                    | "style"
                    | "base"
                    | "frame"
                    | "frameset"
                    | "applet"
            ) {
                found.push(format!("<{name}>"));
            }
            for attribute in &tag.attrs {
                let attribute_name = attribute.name.local.to_string().to_ascii_lowercase();
                // Browsers ignore whitespace and control characters inside a URL's scheme.
                let value: String = attribute
                    .value
                    .chars()
                    .filter(|c| !c.is_whitespace() && !c.is_control())
                    .collect::<String>()
                    .to_ascii_lowercase();
                if attribute_name.starts_with("on") {
                    found.push(format!("<{name} {attribute_name}=…>"));
                }
                let url_attribute = matches!(
                    &*attribute_name,
                    "href"
                        | "src"
                        | "action"
                        | "formaction"
                        | "data"
                        | "xlink:href"
                        | "poster"
                        | "background"
                        | "srcset"
                );
                if url_attribute
                    && ["javascript:", "vbscript:", "data:"]
                        .iter()
                        .any(|scheme| value.starts_with(scheme))
                {
                    found.push(format!("<{name} {attribute_name}={value}>"));
                }
                if attribute_name == "style"
                    && (value.contains("expression(")
                        || value.contains("javascript:")
                        || value.contains("url("))
                {
                    found.push(format!("<{name} style={value}>"));
                }
                if name == "meta" && attribute_name == "http-equiv" {
                    found.push(format!("<meta http-equiv={value}>"));
                }
            }
            TokenSinkResult::Continue
        }
    }
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(html));
    let tokenizer = Tokenizer::new(Findings(RefCell::new(Vec::new())), Default::default());
    let _ = tokenizer.feed(&input);
    tokenizer.end();
    tokenizer.sink.0.take()
}

#[test]
fn the_markup_check_sees_what_a_browser_would_run() {
    assert!(executable_markup("<p>Hello <a href=\"https://example.org\">x</a></p>").is_empty());
    for dangerous in [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "<a href=\"&#x6A;avascript&#x3A;alert(1)\">x</a>",
        "<a href=\"jav&#x09;ascript:alert(1)\">x</a>",
        "<div style=\"width: expression(alert(1))\">",
        "<svg onload=alert(1)>",
    ] {
        assert!(!executable_markup(dangerous).is_empty(), "{dangerous}");
    }
}

fn many_requests(config: &mut covenant::Config) {
    config.requests.per_ip_per_hour = 1_000;
    config.requests.per_address_per_hour = 1_000;
}

on_both_stores! {
    /// Proves: F4, A4
    async fn no_payload_of_the_corpus_becomes_executable_markup_in_posts_profiles_or_requests(app) where config: many_requests; {
        let author = app.member("author").await;
        let baseline = app.page(&app.client, "/").await;
        assert_eq!(executable_markup(&baseline), Vec::<String>::new(), "the layout itself is clean");
        let (staff, _) = privacy_staff(app, "olga").await;
        let author_id = app.store.user_by_username("author").await.unwrap().unwrap().id;
        let mut problems = Vec::new();
        for payload in XSS_CORPUS {
            // A Markdown post, with the payload as its title too.
            let created: serde_json::Value = app.client.post(app.url("/api/v1/topics")).bearer_auth(&author)
                .json(&serde_json::json!({"category": "general", "title": payload.replace('\n', " "), "body": payload}))
                .send().await.unwrap().json().await.unwrap();
            let url = created["url"].as_str().unwrap_or_else(|| panic!("{payload}: {created}"));
            let path = url.trim_start_matches(&app.address).split('#').next().unwrap().to_string();
            let page = app.page(&app.client, &path).await;
            for finding in executable_markup(&page) {
                problems.push(format!("post {payload:?}: {finding}"));
            }
            // A profile field.
            app.store.set_bio(author_id, payload).await.unwrap();
            let page = app.page(&app.client, "/u/author").await;
            for finding in executable_markup(&page) {
                problems.push(format!("profile {payload:?}: {finding}"));
            }
            // A privacy request's comments, as privacy staff read them.
            let accepted: serde_json::Value = app.client.post(app.url("/api/v1/privacy-requests")).bearer_auth(&author)
                .json(&serde_json::json!({"requester_name": "Author", "requester_email": "author@example.org",
                    "relationship": "self", "rights": ["know"], "comments": payload}))
                .send().await.unwrap().json().await.unwrap();
            let id = accepted["request_ids"][0].as_i64().unwrap_or_else(|| panic!("{payload}: {accepted}"));
            let page = app.page(&staff, &format!("/staff/requests/{id}")).await;
            for finding in executable_markup(&page) {
                problems.push(format!("request comments {payload:?}: {finding}"));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}

/// A privacy officer with 2-step verification on, signed in through the pages.
async fn privacy_staff(app: &common::TestApp, name: &str) -> (reqwest::Client, String) {
    app.member(name).await;
    let id = app.store.user_by_username(name).await.unwrap().unwrap().id;
    app.state
        .accounts
        .set_role(id, covenant::domain::Role::PrivacyOfficer)
        .await
        .unwrap();
    let setup = app.state.accounts.two_factor_setup(id, name).await.unwrap();
    let step = common::settled_totp_step().await;
    let earlier = common::totp_code(&setup.secret, step - 1);
    app.state
        .accounts
        .enable_two_factor(id, &earlier)
        .await
        .unwrap();
    let code = common::totp_code(&setup.secret, step);
    let (browser, response) = sign_in_page(app, name, Some(&code), "Staff/1").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    (browser, setup.secret)
}

on_both_stores! {
    /// Proves: A4
    async fn the_totp_secret_is_sealed_at_rest_for_its_member_under_the_key_file(app) {
        app.member("ada").await;
        app.member("bob").await;
        let (_, ada_secret, _) = enrol(app, "ada").await;
        let (_, bob_secret, _) = enrol(app, "bob").await;
        let ada = app.store.user_by_username("ada").await.unwrap().unwrap().id;
        let bob = app.store.user_by_username("bob").await.unwrap().unwrap().id;
        let pool = db_pool(app).await;
        let stored = |user_id: i64| {
            let pool = pool.clone();
            async move {
                let (secret,): (String,) = sqlx::query_as("SELECT secret FROM two_factor WHERE user_id = $1")
                    .bind(user_id).fetch_one(&pool).await.unwrap();
                secret
            }
        };
        let ada_stored = stored(ada).await;
        let bob_stored = stored(bob).await;
        for (stored, secret) in [(&ada_stored, &ada_secret), (&bob_stored, &bob_secret)] {
            assert!(!stored.contains(secret.as_str()), "the base32 secret is not in the column: {stored}");
            assert!(!stored.to_uppercase().contains(secret.as_str()));
            assert!(stored.starts_with("v1:"), "sealed, version 1: {stored}");
        }

        // Sign-in with a code of the authenticator still works.
        let code = covenant::two_factor::code_at(&ada_secret, covenant::now()).unwrap();
        let (_, response) = sign_in_page(app, "ada", Some(&code), "Sealed/1").await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);

        // Ada's sealed secret copied into Bob's row verifies no code: neither Ada's (whoever
        // copied it knows hers) nor Bob's.
        sqlx::query("UPDATE two_factor SET secret = $1 WHERE user_id = $2")
            .bind(&ada_stored).bind(bob).execute(&pool).await.unwrap();
        for secret in [&ada_secret, &bob_secret] {
            let code = covenant::two_factor::code_at(secret, covenant::now()).unwrap();
            let (_, response) = sign_in_page(app, "bob", Some(&code), "Copied/1").await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        }
        sqlx::query("UPDATE two_factor SET secret = $1 WHERE user_id = $2")
            .bind(&bob_stored).bind(bob).execute(&pool).await.unwrap();
        let code = covenant::two_factor::code_at(&bob_secret, covenant::now()).unwrap();
        let (_, response) = sign_in_page(app, "bob", Some(&code), "Restored/1").await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "its own sealed secret still verifies");

        // The database alone does not give the secret back: the key is the audit key file's,
        // outside the database; any other key opens nothing.
        let key_file = AuditKey::load(&app.state.config.audit_key_path()).unwrap();
        let seal = covenant::two_factor::SecretSeal::new(&key_file);
        assert_eq!(seal.open(ada, &ada_stored).unwrap(), ada_secret);
        let guessed = covenant::two_factor::SecretSeal::new(&AuditKey::from_bytes(vec![b'k'; 43]));
        assert!(guessed.open(ada, &ada_stored).is_err());
        let key_text = std::fs::read_to_string(app.state.config.audit_key_path()).unwrap();
        let (settings,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM settings WHERE value LIKE $1")
            .bind(format!("%{}%", key_text.trim())).fetch_one(&pool).await.unwrap();
        assert_eq!(settings, 0, "the key file is not copied into the database");
        pool.close().await;
    }
}

on_both_stores! {
    /// Proves: A4
    async fn a_plain_secret_from_before_sealing_keeps_working_and_is_sealed_at_start(app) {
        app.member("ada").await;
        let (_, secret, _) = enrol(app, "ada").await;
        let ada = app.store.user_by_username("ada").await.unwrap().unwrap().id;
        let pool = db_pool(app).await;
        // As a database from before sealing holds it.
        sqlx::query("UPDATE two_factor SET secret = $1 WHERE user_id = $2")
            .bind(&secret).bind(ada).execute(&pool).await.unwrap();
        let code = covenant::two_factor::code_at(&secret, covenant::now()).unwrap();
        let (_, response) = sign_in_page(app, "ada", Some(&code), "Plain/1").await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "a plain secret still verifies");

        // The start-up step seals it (and a second run finds nothing left to seal).
        assert_eq!(app.state.accounts.seal_plain_two_factor_secrets().await.unwrap(), 1);
        assert_eq!(app.state.accounts.seal_plain_two_factor_secrets().await.unwrap(), 0);
        let (stored,): (String,) = sqlx::query_as("SELECT secret FROM two_factor WHERE user_id = $1")
            .bind(ada).fetch_one(&pool).await.unwrap();
        pool.close().await;
        assert!(stored.starts_with("v1:") && !stored.contains(secret.as_str()), "{stored}");
        let code = covenant::two_factor::code_at(&secret, covenant::now() + 30).unwrap();
        let (_, response) = sign_in_page(app, "ada", Some(&code), "Plain/2").await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "the sealed secret verifies");
    }
}

/// `covenant ARGS --data-dir DIR` with the environment's store settings removed; returns
/// (exit code, output).
fn covenant_cli(args: &[&str], data_dir: &std::path::Path, database_url: &str) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_covenant"));
    command
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("COVENANT_DATA_DIR")
        .env_remove("COVENANT_DATABASE_URL")
        .env_remove("COVENANT_AUDIT_ANCHOR_FILE")
        .env_remove("COVENANT_AUDIT_KEY_FILE");
    if !database_url.is_empty() {
        command.args(["--database-url", database_url]);
    }
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// Waits until the server's anchor records entry `seq` or a later one; returns it.
async fn anchored_at_least(app: &common::TestApp, seq: i64) -> audit::anchor::Anchor {
    let path = app.state.config.audit_anchor_path();
    let key = audit_key(app);
    for _ in 0..600 {
        if let Some(anchor) = audit::anchor::Anchor::read(&path, &key).unwrap()
            && anchor.seq >= seq
        {
            return anchor;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the server never anchored entry {seq}");
}

on_both_stores! {
    /// A database rolled back to an older copy has an intact chain; the anchor the server
    /// keeps outside the database shows it, with the numbers, and an operator's restore says
    /// so in the log and anchors anew. Several nodes' anchors are checked together.
    /// Proves: A3
    async fn audit_verify_detects_a_log_rolled_back_behind_its_anchor(app) {
        app.member("ada").await;
        let key = audit_key(app);
        let anchor_path = app.state.config.audit_anchor_path();
        let url = app.state.config.database_url.clone();
        // The older copy: the chain as it stands now.
        let (old_seq, old_hash, old_mac) = app.store.audit_head().await.unwrap();
        let backup = app.data_dir.path().join("older.db");
        if app.backend == common::Backend::Sqlite {
            covenant::fulfilment::backup(&app.store, &backup).await.unwrap();
        }
        // Another node anchored while the chain was there.
        anchored_at_least(app, old_seq).await;
        let other_node = app.data_dir.path().join("other-node.anchor");
        std::fs::copy(&anchor_path, &other_node).unwrap();
        app.member("bob").await;
        let (new_seq, _, _) = app.store.audit_head().await.unwrap();
        assert!(new_seq > old_seq);
        let anchor = anchored_at_least(app, new_seq).await;
        let (code, text) = covenant_cli(&["audit", "verify"], app.data_dir.path(), &url);
        assert_eq!(code, 0, "{text}");

        let rolled_back = format!(
            "the audit log was rolled back: the anchor recorded entry {}, the database's chain ends at entry {old_seq}",
            anchor.seq
        );
        if app.backend == common::Backend::Sqlite {
            // The older copy, as a data folder of its own with the same key.
            let copy = tempfile::tempdir().unwrap();
            std::fs::copy(&backup, copy.path().join("covenant.db")).unwrap();
            std::fs::copy(app.state.config.audit_key_path(), copy.path().join("audit.key")).unwrap();
            let (code, text) = covenant_cli(&["audit", "verify"], copy.path(), "");
            assert_eq!(code, 0, "without an anchor the older copy looks whole: {text}");
            assert!(text.contains("No anchor at"), "{text}");
            let anchors = [
                "audit", "verify", "--anchor", anchor_path.to_str().unwrap(),
                "--anchor", other_node.to_str().unwrap(),
            ];
            let (code, text) = covenant_cli(&anchors, copy.path(), "");
            assert_eq!(code, 1, "{text}");
            assert!(text.contains(&rolled_back), "{text}");
            assert!(text.contains(anchor_path.to_str().unwrap()), "{text}");
            assert!(!text.contains(other_node.to_str().unwrap()), "the other node's anchor is reached: {text}");

            // The operator restores the backup where this node's anchor is: the restore says
            // so, records it, and anchors anew.
            let restored = tempfile::tempdir().unwrap();
            std::fs::copy(app.state.config.audit_key_path(), restored.path().join("audit.key")).unwrap();
            std::fs::copy(&anchor_path, restored.path().join("audit.anchor")).unwrap();
            let (code, text) = covenant_cli(
                &["restore", backup.to_str().unwrap()], restored.path(), "");
            assert_eq!(code, 0, "{text}");
            assert!(text.contains(&rolled_back), "{text}");
            let (code, text) = covenant_cli(&["audit", "verify"], restored.path(), "");
            assert_eq!(code, 0, "{text}");
            let store = covenant::Store::open(restored.path(), "", 1).await.unwrap();
            let (rows, _) = store.audit_page(&Default::default(), 1, 0).await.unwrap();
            assert_eq!(rows[0].kind, "audit_log_rolled_back");
            assert_eq!(rows[0].details, format!("rolled_back_to={old_seq} anchored={}", anchor.seq));
            store.close().await;
        } else {
            // PostgreSQL: the newest entries are deleted and the head put back as it was, as an
            // older dump restored would leave it.
            exec(app, &format!("DELETE FROM audit_log WHERE seq > {old_seq}")).await;
            exec(app, &format!(
                "UPDATE audit_head SET seq = {old_seq}, hash = '{old_hash}', mac = '{old_mac}'"
            )).await;
            let found = audit::verify(&app.store, &key).await.unwrap();
            assert!(found.is_intact(), "the chain alone looks whole: {:?}", found.problems);
            let problem = audit::anchor::check(&app.store, &anchor, None).await.unwrap();
            assert_eq!(problem, Some(Problem::RolledBack { anchored: anchor.seq, head: old_seq }));
            let anchors = [
                "audit", "verify", "--anchor", anchor_path.to_str().unwrap(),
                "--anchor", other_node.to_str().unwrap(),
            ];
            let (code, text) = covenant_cli(&anchors, app.data_dir.path(), &url);
            assert_eq!(code, 1, "{text}");
            assert!(text.contains(&rolled_back), "{text}");
            assert!(!text.contains(other_node.to_str().unwrap()), "{text}");

            // Written again past the anchored number, the log still differs from the anchor.
            app.member("carl").await;
            app.member("dora").await;
            let problem = audit::anchor::check(&app.store, &anchor, None).await.unwrap();
            assert!(matches!(problem, Some(Problem::AnchorDiffers { seq, .. }) if seq == anchor.seq),
                "{problem:?}");
            let (code, text) = covenant_cli(&["audit", "verify"], app.data_dir.path(), &url);
            assert_eq!(code, 1, "{text}");
            assert!(text.contains(&format!("entry {} is not the one the anchor recorded", anchor.seq)), "{text}");

            // The operator accepts the restore: recorded, anchored anew, verified whole.
            let (head, _, _) = app.store.audit_head().await.unwrap();
            let (code, text) = covenant_cli(&["audit", "reanchor"], app.data_dir.path(), &url);
            assert_eq!(code, 0, "{text}");
            let (rows, _) = app.store.audit_page(&Default::default(), 1, 0).await.unwrap();
            assert_eq!(rows[0].kind, "audit_log_rolled_back");
            assert_eq!(rows[0].details, format!("rolled_back_to={head} anchored={}", anchor.seq));
            let (code, text) = covenant_cli(&["audit", "verify"], app.data_dir.path(), &url);
            assert_eq!(code, 0, "{text}");
        }

        // An anchor written without the key is refused.
        let forged = app.data_dir.path().join("forged.anchor");
        std::fs::write(&forged, format!("covenant-audit-anchor-v1 1 {old_hash} 00\n")).unwrap();
        let (code, text) = covenant_cli(
            &["audit", "verify", "--anchor", forged.to_str().unwrap()], app.data_dir.path(), &url);
        assert_eq!(code, 1, "{text}");
        assert!(text.contains("not signed by the audit key"), "{text}");
    }
}

on_both_stores! {
    /// Every answer carries the security headers: pages, the API, errors, static files and
    /// redirects; the content policy allows no inline script and no framing; no answer names
    /// the server's software; answers to a signed-in member are never cached.
    /// Proves: A4
    async fn every_answer_carries_the_security_headers(app) {
        let token = app.member("ada").await;
        let plain = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut answers = Vec::new();
        for path in ["/", "/sign-in", "/no-such-page", "/account/security", "/static/style.css",
                     "/.well-known/security.txt", "/healthz", "/api/v1/privacy-requests"] {
            answers.push((path.to_string(), plain.get(app.url(path)).send().await.unwrap()));
        }
        let with_token = plain.get(app.url("/api/v1/privacy-requests")).bearer_auth(&token)
            .send().await.unwrap();
        answers.push(("/api/v1/privacy-requests (bearer)".into(), with_token));
        let forged = plain.post(app.url("/sign-in")).form(&[("csrf", "forged")]).send().await.unwrap();
        answers.push(("POST /sign-in without a token".into(), forged));
        let statuses: Vec<u16> = answers.iter().map(|(_, r)| r.status().as_u16()).collect();
        for expected in [200, 303, 401, 403, 404] {
            assert!(statuses.contains(&expected), "a {expected} answer is among them: {statuses:?}");
        }
        for (path, response) in &answers {
            let header = |name: &str| {
                response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
            };
            let csp = header("content-security-policy");
            assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
            assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{path}: {csp}");
            assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
            assert_eq!(header("x-frame-options"), "DENY", "{path}");
            assert_eq!(header("referrer-policy"), "same-origin", "{path}");
            assert!(header("server").is_empty() && header("x-powered-by").is_empty(),
                "{path}: no software or version is announced");
        }
        // What a signed-in member is answered is kept by no cache, whether by cookie or token.
        let (browser, _) = sign_in_page(app, "ada", None, "Laptop/1").await;
        let signed_in = [
            ("/account/security", browser.get(app.url("/account/security")).send().await.unwrap()),
            ("/", browser.get(app.url("/")).send().await.unwrap()),
            ("/api/v1/privacy-requests",
             plain.get(app.url("/api/v1/privacy-requests")).bearer_auth(&token).send().await.unwrap()),
        ];
        for (path, response) in signed_in {
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let cache = response.headers().get("cache-control").and_then(|v| v.to_str().ok())
                .unwrap_or_default().to_string();
            assert!(cache.contains("no-store"), "{path}: {cache}");
        }
    }
}

/// The session token a `Set-Cookie` answer opens, if any.
fn session_set(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("covenant_session="))
        .map(|v| v.split(';').next().unwrap_or_default().to_string())
}

on_both_stores! {
    /// Session fixation: a session token planted in the browser before sign-in is never
    /// adopted (sign-in opens a new random one), each sign-in opens a different one, and
    /// signing out ends the session on the server, not only in the browser.
    /// Proves: A4
    async fn a_planted_session_is_never_adopted_and_sign_out_ends_the_session(app) {
        app.member("ada").await;
        let plain = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let planted = "Zm9yZ2VkLXNlc3Npb24tdG9rZW4tY2hvc2VuLWJ5LWFuLWF0dGFja2Vy";
        let cookie = |token: &str| format!("covenant_session={token}");
        let sign_in = |planted: String| {
            let plain = plain.clone();
            async move {
                let form = plain.get(app.url("/sign-in")).header("cookie", &planted)
                    .send().await.unwrap().text().await.unwrap();
                plain.post(app.url("/sign-in")).header("cookie", &planted)
                    .form(&[("csrf", csrf_of(&form).as_str()), ("login", "ada"),
                            ("password", "a long enough password")])
                    .send().await.unwrap()
            }
        };
        let response = sign_in(cookie(planted)).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let first = session_set(&response).expect("sign-in opens a session");
        assert_ne!(first, planted);
        assert!(first.len() >= 32, "a long random token: {first}");
        let security = |token: String| {
            let plain = plain.clone();
            async move {
                plain.get(app.url("/account/security")).header("cookie", cookie(&token))
                    .send().await.unwrap()
            }
        };
        assert_ne!(security(planted.to_string()).await.status(), StatusCode::OK, "the planted token opens nothing");
        assert_eq!(security(first.clone()).await.status(), StatusCode::OK);

        // Signing in again over a session opens a new one and ends the old.
        let second = session_set(&sign_in(cookie(&first)).await).expect("a second sign-in");
        assert_ne!(second, first, "a sign-in never reuses the session it was made from");
        assert_ne!(security(first).await.status(), StatusCode::OK, "the replaced session is over");
        let page = security(second.clone()).await;
        assert_eq!(page.status(), StatusCode::OK);
        let page = page.text().await.unwrap();

        let response = plain.post(app.url("/sign-out")).header("cookie", cookie(&second))
            .form(&[("csrf", csrf_of(&page).as_str())]).send().await.unwrap();
        assert!(response.status().is_redirection(), "{}", response.status());
        assert_eq!(
            response.headers().get("clear-site-data").map(|v| v.to_str().unwrap()),
            Some("\"cookies\", \"storage\""),
            "sign-out tells the browser to drop this site's cookies and storage"
        );
        assert_ne!(security(second).await.status(), StatusCode::OK, "the token kept after sign-out opens nothing");
    }
}

/// Over TLS the session cookie is `__Host-covenant_session` (with `Secure`, `Path=/`, no
/// `Domain`), and only that name opens a session: a plain-named cookie, which a plain-HTTP page
/// or a subdomain could plant, is ignored. Sign-out clears it under the same name.
/// Proves: A4
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_session_cookie_is_host_prefixed_and_only_that_name_counts() {
    // As behind a proxy that terminates TLS: cookies are `Secure`.
    let app = common::spawn_app_with(common::Backend::Sqlite, |config| {
        config.session.secure_cookies = Some(true);
    })
    .await
    .unwrap();
    app.member("ada").await;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = plain
        .get(app.url("/sign-in"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let response = plain
        .post(app.url("/sign-in"))
        .form(&[
            ("csrf", csrf_of(&form).as_str()),
            ("login", "ada"),
            ("password", "a long enough password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let set = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.contains("covenant_session="))
        .expect("sign-in sets the session cookie")
        .to_string();
    assert!(set.starts_with("__Host-covenant_session="), "{set}");
    assert!(
        set.contains("; Secure") && set.contains("; Path=/;") && !set.contains("Domain"),
        "{set}"
    );
    let token = set["__Host-covenant_session=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_string();

    let security = |cookie: String| {
        let plain = plain.clone();
        let url = app.url("/account/security");
        async move {
            plain
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
        }
    };
    let page = security(format!("__Host-covenant_session={token}")).await;
    assert_eq!(
        page.status(),
        StatusCode::OK,
        "the prefixed cookie opens the session"
    );
    let page = page.text().await.unwrap();
    let shadow = security(format!("covenant_session={token}")).await;
    assert_ne!(
        shadow.status(),
        StatusCode::OK,
        "the plain name is not read over TLS"
    );

    let response = plain
        .post(app.url("/sign-out"))
        .header("cookie", format!("__Host-covenant_session={token}"))
        .form(&[("csrf", csrf_of(&page).as_str())])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection());
    let cleared: Vec<&str> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(
        cleared
            .iter()
            .any(|v| v.starts_with("__Host-covenant_session=;") && v.contains("Max-Age=0")),
        "{cleared:?}"
    );
    assert!(response.headers().contains_key("clear-site-data"));
    app.stop().await;
}

on_both_stores! {
    /// Passwords are stored as argon2id hashes (salted, PHC strings), never as themselves.
    /// Proves: A4
    async fn passwords_are_stored_as_salted_argon2id_hashes(app) {
        app.member("ada").await;
        app.member("bob").await;
        let ada = app.store.user_by_username("ada").await.unwrap().unwrap();
        let bob = app.store.user_by_username("bob").await.unwrap().unwrap();
        for user in [&ada, &bob] {
            assert!(user.password_hash.starts_with("$argon2id$"), "{}", user.password_hash);
            assert!(!user.password_hash.contains("a long enough password"));
        }
        assert_ne!(ada.password_hash, bob.password_hash, "the same password, salted apart");
    }
}

/// Moves every session of `user_id` back `hours` since its sign-in, as if signed in that long ago.
async fn age_sign_ins(app: &common::TestApp, user_id: i64, hours: i64) {
    let pool = db_pool(app).await;
    sqlx::query("UPDATE sessions SET authenticated_at = authenticated_at - $1 WHERE user_id = $2")
        .bind(hours * 3600)
        .bind(user_id)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

on_both_stores! {
    /// Sudo mode (ASVS 3.3.2): a sign-in older than `session.reauthenticate_after_hours` (12 by
    /// default) still browses, posts and sees the checkup page, but changing 2-step
    /// verification, ending sessions, exporting data or closing the account first asks for the
    /// password again, on the pages and in the API; a wrong password changes nothing.
    /// Proves: A4
    async fn sensitive_actions_on_an_old_sign_in_ask_for_the_password_again(app) {
        assert_eq!(app.state.config.session.reauthenticate_after_hours, 12);
        let token = app.member("ada").await;
        let ada = app.store.user_by_username("ada").await.unwrap().unwrap().id;
        let (browser, response) = sign_in_page(app, "ada", None, "Sudo/1").await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let status = |response: &reqwest::Response| response.status();
        let location = |response: &reqwest::Response| {
            response.headers().get("location").map(|v| v.to_str().unwrap().to_string())
        };

        // Within the period: straight through.
        let response = browser.get(app.url("/account/two-factor")).send().await.unwrap();
        assert_eq!(status(&response), StatusCode::OK);

        // Eleven hours later still fresh; thirteen hours later no longer.
        age_sign_ins(app, ada, 11).await;
        let response = browser.get(app.url("/account/two-factor")).send().await.unwrap();
        assert_eq!(status(&response), StatusCode::OK, "11 hours is within the period");
        age_sign_ins(app, ada, 2).await;

        // Ordinary browsing keeps the long session.
        for path in ["/", "/account/security", "/account/profile", "/account/privacy"] {
            let response = browser.get(app.url(path)).send().await.unwrap();
            assert_eq!(status(&response), StatusCode::OK, "GET {path}");
        }
        let response = app.client.get(app.url("/api/v1/me")).bearer_auth(&token).send().await.unwrap();
        assert_ne!(response.status(), StatusCode::UNAUTHORIZED, "the API token still works");

        // Each sensitive action sends the browser to the password form, and does nothing.
        let checkup = app.page(&browser, "/account/security").await;
        let csrf = csrf_of(&checkup);
        let response = browser.get(app.url("/account/two-factor")).send().await.unwrap();
        assert_eq!((status(&response), location(&response).as_deref()),
            (StatusCode::SEE_OTHER, Some("/account/confirm")), "GET /account/two-factor");
        for (path, fields) in [
            ("/account/security/sessions/revoke-others", vec![]),
            ("/account/two-factor/enable", vec![("code", "123456")]),
            ("/account/two-factor/disable", vec![("code", "123456")]),
            ("/account/privacy/export", vec![("jurisdiction", "eu_eea")]),
            ("/account/close", vec![("confirm", "yes")]),
        ] {
            let mut form = vec![("csrf", csrf.as_str())];
            form.extend(fields);
            let response = browser.post(app.url(path)).form(&form).send().await.unwrap();
            assert_eq!((status(&response), location(&response).as_deref()),
                (StatusCode::SEE_OTHER, Some("/account/confirm")), "POST {path}");
        }
        let response = app.client.post(app.url("/api/v1/me/export")).bearer_auth(&token)
            .json(&serde_json::json!({"jurisdiction": "eu_eea"})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "reauthentication_required");
        let other = app.bearer("ada").await;
        assert!(app.store.user_by_username("ada").await.unwrap().unwrap().closed_at.is_none(),
            "the account is not closed");

        // A wrong password is refused on the form and leaves the session old.
        let form = app.page(&browser, "/account/confirm").await;
        assert!(form.contains("type=\"password\""), "the form asks for the password");
        let response = browser.post(app.url("/account/confirm"))
            .form(&[("csrf", csrf_of(&form).as_str()), ("password", "not my password at all")])
            .send().await.unwrap();
        assert_eq!(status(&response), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(response.text().await.unwrap().contains("is not your current password"));
        let response = browser.get(app.url("/account/two-factor")).send().await.unwrap();
        assert_eq!(status(&response), StatusCode::SEE_OTHER);

        // The right password makes this session fresh, and only this one.
        let response = browser.post(app.url("/account/confirm"))
            .form(&[("csrf", csrf_of(&form).as_str()), ("password", "a long enough password")])
            .send().await.unwrap();
        assert_eq!((status(&response), location(&response).as_deref()),
            (StatusCode::SEE_OTHER, Some("/account/security")));
        let response = browser.get(app.url("/account/two-factor")).send().await.unwrap();
        assert_eq!(status(&response), StatusCode::OK);
        let response = browser.post(app.url("/account/security/sessions/revoke-others"))
            .form(&[("csrf", csrf.as_str())]).send().await.unwrap();
        assert_eq!(location(&response).as_deref(), Some("/account/security"), "the action is done");
        let response = app.client.get(app.url("/api/v1/me")).bearer_auth(&other).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "the other sessions ended");

        // In the API, a new sign-in is the fresh authentication.
        let fresh = app.bearer("ada").await;
        let response = app.client.post(app.url("/api/v1/me/export")).bearer_auth(&fresh)
            .json(&serde_json::json!({"jurisdiction": "eu_eea"})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
}

on_both_stores! {
    /// New passwords have at least 12 characters and are not common or breached ones (ASVS
    /// 2.1.1, 2.1.7): the registration form says why, without repeating the password, and
    /// keeps nothing.
    /// Proves: A4
    async fn registration_refuses_short_and_common_passwords_with_a_reason(app) {
        let browser = app.new_client();
        for (password, reason) in [
            ("eleven-char", "must be at least 12 characters"),
            ("password1234", "is too easy to guess"),
            ("qwertyuiop123", "is too easy to guess"),
            ("ada_lovelace1815", "is too easy to guess"),
        ] {
            let form = app.page(&browser, "/register").await;
            let response = browser.post(app.url("/register"))
                .form(&[("csrf", csrf_of(&form).as_str()), ("username", "ada_lovelace1815"),
                        ("email", "ada@example.org"), ("password", password),
                        ("birth_year", "1990"), ("country", "GB")])
                .send().await.unwrap();
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{password}");
            let html = response.text().await.unwrap();
            assert!(html.contains(reason), "{password}: {reason}");
            if password != "ada_lovelace1815" {
                assert!(!html.contains(password), "the password is not echoed");
            }
        }
        assert!(app.store.user_by_username("ada_lovelace1815").await.unwrap().is_none());
        let response = app.client.post(app.url("/api/v1/users"))
            .json(&serde_json::json!({"username": "ada", "email": "ada@example.org",
                "password": "letmein123456", "birth_year": 1990, "country": "GB"}))
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["fields"][0]["field"], "password");
    }
}

on_both_stores! {
    /// A plain 403 on a staff route is audited (ASVS 7.2.2) with identifiers only: the member,
    /// the method and the route template, never the URL's values; a flood of refusals writes
    /// one entry per member, method and route per minute, so it cannot flood the log.
    /// Proves: A3
    async fn refused_staff_routes_are_audited_once_a_minute_with_identifiers_only(app) {
        let token = app.member("mallory").await;
        let mallory = app.store.user_by_username("mallory").await.unwrap().unwrap().id;
        let browser = app.new_client();
        let form = app.page(&browser, "/sign-in").await;
        browser.post(app.url("/sign-in"))
            .form(&[("csrf", csrf_of(&form).as_str()), ("login", "mallory"), ("password", "a long enough password")])
            .send().await.unwrap();
        // Start well inside a minute, so the flood below falls in one.
        let left = 60 - covenant::now().rem_euclid(60);
        if left < 15 {
            tokio::time::sleep(std::time::Duration::from_secs(left as u64 + 1)).await;
        }
        for _ in 0..20 {
            let response = browser.get(app.url("/staff/audit")).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
        }
        for id in [4017, 4018, 4019] {
            let response = browser.get(app.url(&format!("/staff/requests/{id}"))).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
        }
        let response = app.client.get(app.url("/api/v1/staff/privacy-requests")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        // A visitor is not a member: nothing to attribute, nothing written.
        let response = app.new_client().get(app.url("/staff/audit")).send().await.unwrap();
        assert_ne!(response.status(), StatusCode::OK);

        let pool = db_pool(app).await;
        let rows: Vec<(Option<i64>, String)> = sqlx::query_as(
            "SELECT actor_id, details FROM audit_log WHERE kind = 'access_refused' ORDER BY seq")
            .fetch_all(&pool).await.unwrap();
        pool.close().await;
        let details: Vec<&str> = rows.iter().map(|(_, d)| d.as_str()).collect();
        assert_eq!(rows.len(), 3, "one per route and minute: {details:?}");
        assert!(rows.iter().all(|(actor, _)| *actor == Some(mallory)));
        assert!(details[0].contains("route=/staff/audit") && details[0].contains("method=GET"), "{details:?}");
        assert!(details[1].contains("route=/staff/requests/{id}") && !details[1].contains("4017"), "{details:?}");
        assert!(details[2].contains("route=/api/v1/staff/privacy-requests"), "{details:?}");
        let (code, output) = verify_cli(app);
        assert_eq!(code, 0, "the chain still verifies: {output}");
    }
}
