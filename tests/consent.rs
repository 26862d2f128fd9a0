//! Consent, cookies and Global Privacy Control over HTTP, on both stores: nothing optional before
//! a choice, choices kept and provable, GPC honored and recorded once, the stricter choice at
//! sign-in, written opt-outs, minors, receipts, the consent API, and choices asked again after
//! a policy change that their grant did not cover.

mod common;

use common::{TestApp, csrf_of};
use covenant::policy::publish;
use reqwest::StatusCode;
use serde_json::{Value, json};

const ANALYTICS_TAG: &str = "/static/analytics.js";
const ADVERTISING_TAG: &str = "/static/advertising.js";
const BANNER: &str = "id=\"consent-banner\"";
const ASKED_AGAIN: &str = "id=\"banner-asked-again\"";
const DEFAULT_POLICY: &str = include_str!("../crates/covenant-core/policy/default.toml");

/// The default policy under a new label.
fn relabelled(label: &str) -> String {
    DEFAULT_POLICY.replace("version = \"2025.1\"", &format!("version = \"{label}\""))
}

/// A material version that adds a purpose: no earlier grant described it.
fn with_a_new_purpose(label: &str) -> String {
    relabelled(label)
        + r#"
[[purposes]]
id = "recommendations"
name = "Recommending topics"
description = "Suggesting topics from what you read."
categories = ["user.content.public"]
subjects = ["members"]
legal_basis = { eu_eea = "consent", uk = "consent", other = "consent" }
"#
}

/// A material version that adds no use and touches no cookie group: one kind of person fewer.
fn with_fewer_subjects(label: &str) -> String {
    relabelled(label).replace(
        "subjects = [\"members\", \"visitors\"]",
        "subjects = [\"members\"]",
    )
}

/// An editorial change to a version: a provider renamed.
fn with_a_renamed_provider(text: String) -> String {
    text.replace("\"Example Hosting\"", "\"Example Hosting GmbH\"")
}

fn day(text: &str) -> time::Date {
    time::Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .unwrap()
}

/// Publishes a version that takes effect on `effective` (a day in the past: in force at once).
async fn publish_version(
    app: &TestApp,
    text: &str,
    effective: &str,
) -> covenant::policy::Published {
    let starting = app.state.policy.starting().clone();
    let published = publish(&app.store, &starting, text, "policy.toml", day(effective))
        .await
        .unwrap();
    // Versions are published by `covenant policy publish`, another process: the server finds
    // them at its next consent sync (every half second), run here at once.
    app.state.consent.sync().await.unwrap();
    published
}

/// The banner's sentence naming what a policy change asks again for.
fn asked_again_sentence(html: &str) -> &str {
    let start = html
        .find(ASKED_AGAIN)
        .expect("the banner says what it asks again");
    let end = start + html[start..].find("</p>").unwrap();
    &html[start..end]
}

fn gpc_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("sec-gpc", "1".parse().unwrap());
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .unwrap()
}

fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// The device consent id from a response that set the consent cookie.
fn consent_id(response: &reqwest::Response) -> String {
    set_cookies(response)
        .iter()
        .find_map(|c| c.strip_prefix("covenant_consent="))
        .expect("the consent cookie is set")
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// Clicks a banner button on `/`; returns the response (a redirect that sets the cookie).
async fn banner(app: &TestApp, client: &reqwest::Client, choice: &str) -> reqwest::Response {
    let home = app.page(client, "/").await;
    assert!(home.contains(BANNER), "the banner shows before a choice");
    let response = client
        .post(app.url("/consent"))
        .form(&[
            ("csrf", csrf_of(&home).as_str()),
            ("choice", choice),
            ("return_to", "/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/");
    response
}

async fn sign_in(app: &TestApp, client: &reqwest::Client, login: &str) {
    let form = app.page(client, "/sign-in").await;
    let response = client
        .post(app.url("/sign-in"))
        .form(&[
            ("csrf", csrf_of(&form).as_str()),
            ("login", login),
            ("password", "a long enough password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "signing in");
}

async fn save_settings(app: &TestApp, client: &reqwest::Client, fields: &[(&str, &str)]) {
    let page = app.page(client, "/cookie-settings").await;
    let csrf = csrf_of(&page);
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    let response = client
        .post(app.url("/cookie-settings"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/cookie-settings?saved=1");
}

async fn records_of(app: &TestApp, subject: &str) -> Vec<covenant::store::ConsentRecordRow> {
    app.store.consent_records_of(subject).await.unwrap()
}

async fn receipts(app: &TestApp, token: &str) -> Vec<Value> {
    let response = app
        .client
        .get(app.url("/api/v1/consent/receipts"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["receipts"].as_array().unwrap().clone()
}

async fn user_id(app: &TestApp, username: &str) -> i64 {
    app.store
        .user_by_username(username)
        .await
        .unwrap()
        .unwrap()
        .id
}

on_both_stores! {
    /// Proves: C1
    async fn nothing_optional_is_set_or_loaded_before_a_choice(app) {
        let visitor = app.new_client();
        for path in ["/", "/blog", "/sign-in", "/register", "/privacy", "/cookie-settings", "/privacy-choices"] {
            let response = visitor.get(app.url(path)).send().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            assert!(set_cookies(&response).is_empty(), "{path} set a cookie before any choice");
            let html = response.text().await.unwrap();
            assert!(!html.contains(ANALYTICS_TAG), "{path} loads analytics before consent");
            assert!(!html.contains(ADVERTISING_TAG), "{path} loads advertising before consent");
            assert!(html.contains(BANNER), "{path} shows the banner");
            assert!(html.contains("href=\"/cookie-settings\""), "{path} links Cookie Settings in its footer");
        }
        let home = app.page(&visitor, "/").await;
        for button in ["Accept all", "Reject all", "Settings"] {
            assert!(home.contains(&format!(">{button}</button>")), "the banner offers {button}");
        }
        assert_eq!(home.matches("class=\"consent-button\"").count(), 3, "the three choices look alike");
    }
}

on_both_stores! {
    /// Proves: C1, C3
    async fn rejecting_all_leaves_no_optional_tag_on_any_page_ever(app) {
        let visitor = app.new_client();
        let response = banner(app, &visitor, "reject_all").await;
        let cookies = set_cookies(&response);
        assert_eq!(cookies.len(), 1, "{cookies:?}");
        assert!(cookies[0].starts_with("covenant_consent=") && cookies[0].contains("HttpOnly"));
        let device = format!("device:{}", consent_id(&response));
        for _ in 0..2 {
            for path in ["/", "/blog", "/sign-in", "/cookie-settings", "/privacy-choices"] {
                let response = visitor.get(app.url(path)).send().await.unwrap();
                assert!(set_cookies(&response).is_empty(), "{path} set a cookie");
                let html = response.text().await.unwrap();
                assert!(!html.contains(ANALYTICS_TAG) && !html.contains(ADVERTISING_TAG), "{path}");
                assert!(!html.contains(BANNER), "{path} asks again after a choice");
            }
        }
        let records = records_of(app, &device).await;
        assert_eq!(records.len(), 3, "one refusal per optional category");
        assert!(records.iter().all(|r| r.choice == "denied" && r.method == "banner"));
        assert!(records.iter().all(|r| r.text_hash.len() == 64 && !r.policy_version.is_empty()));
    }
}

on_both_stores! {
    /// Proves: C1
    async fn accepting_all_writes_the_analytics_tag(app) {
        let visitor = app.new_client();
        banner(app, &visitor, "accept_all").await;
        let home = app.page(&visitor, "/").await;
        assert!(home.contains(ANALYTICS_TAG), "analytics granted: its tag is written");
        assert!(home.contains(ADVERTISING_TAG), "advertising granted without GPC: its tag is written");
        assert!(!home.contains(BANNER));
        let script = visitor.get(app.url(ANALYTICS_TAG)).send().await.unwrap();
        assert_eq!(script.status(), 200);
        assert!(script.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    }
}

on_both_stores! {
    /// Proves: C1, C3
    async fn the_settings_page_grants_and_withdraws_one_category(app) {
        let visitor = app.new_client();
        banner(app, &visitor, "reject_all").await;
        save_settings(app, &visitor, &[("analytics", "granted")]).await;
        let home = app.page(&visitor, "/").await;
        assert!(home.contains(ANALYTICS_TAG) && !home.contains(ADVERTISING_TAG));
        save_settings(app, &visitor, &[("analytics", "denied")]).await;
        let home = app.page(&visitor, "/").await;
        assert!(!home.contains(ANALYTICS_TAG));
        let settings = app.page(&visitor, "/cookie-settings?saved=1").await;
        assert!(settings.contains("Off because you withdrew your consent."), "{settings}");
        assert!(settings.contains("Your choices are saved"));
        // A settings form without its anti-forgery token is refused.
        let forged = visitor.post(app.url("/cookie-settings")).form(&[("analytics", "granted")]).send().await.unwrap();
        assert_eq!(forged.status(), StatusCode::FORBIDDEN);
        assert!(!app.page(&visitor, "/").await.contains(ANALYTICS_TAG));
    }
}

on_both_stores! {
    /// Proves: C2
    async fn gpc_header_opts_out_of_sale_without_a_banner_asking_to_undo_it(app) {
        // A visitor who chose nothing: honored per request, no cookie, nothing to record against.
        let quiet = gpc_client();
        for _ in 0..3 {
            let response = quiet.get(app.url("/")).send().await.unwrap();
            assert!(set_cookies(&response).is_empty(), "GPC alone sets no cookie");
            let html = response.text().await.unwrap();
            assert!(!html.contains(ADVERTISING_TAG));
            assert!(html.contains("Global Privacy Control honored"), "the banner says GPC is honored");
        }
        // A browser that accepted everything and sends GPC: advertising stays off, recorded once.
        let browser = gpc_client();
        let response = banner(app, &browser, "accept_all").await;
        let device = format!("device:{}", consent_id(&response));
        for _ in 0..5 {
            let home = app.page(&browser, "/").await;
            assert!(!home.contains(ADVERTISING_TAG), "GPC keeps the advertising tag out");
            assert!(home.contains(ANALYTICS_TAG), "GPC does not touch analytics");
            assert!(!home.contains(BANNER), "no pop-up asks to undo the signal");
        }
        for path in ["/cookie-settings", "/privacy-choices"] {
            let html = app.page(&browser, path).await;
            assert!(html.contains("Global Privacy Control honored"), "{path}");
        }
        let records = records_of(app, &device).await;
        let gpc: Vec<_> = records.iter().filter(|r| r.method == "gpc").collect();
        assert_eq!(gpc.len(), 1, "GPC is recorded once, not on every request");
        assert_eq!((gpc[0].category.as_str(), gpc[0].choice.as_str()), ("advertising", "denied"));
        assert!(
            !records.iter().any(|r| r.category == "advertising" && r.choice == "granted"),
            "Accept all under GPC records no advertising grant"
        );
        // A signed-in member sending GPC: recorded once for the account too.
        let token = app.member("gwen").await;
        sign_in(app, &browser, "gwen").await;
        for _ in 0..3 {
            assert!(!app.page(&browser, "/").await.contains(ADVERTISING_TAG));
        }
        let account = format!("account:{}", user_id(app, "gwen").await);
        let gpc_records = records_of(app, &account).await.into_iter().filter(|r| r.method == "gpc").count();
        assert_eq!(gpc_records, 1);
        assert!(receipts(app, &token).await.iter().any(|r| r["method"] == "gpc" && r["explicit"] == false));
    }
}

on_both_stores! {
    /// Proves: C2
    async fn gpc_json_is_served_per_the_spec(app) {
        let response = app.client.get(app.url("/.well-known/gpc.json")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert!(set_cookies(&response).is_empty());
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["gpc"], true);
        let date = body["lastUpdate"].as_str().unwrap();
        assert!(time::Date::parse(date, time::macros::format_description!("[year]-[month]-[day]")).is_ok(), "{date}");
    }
}

on_both_stores! {
    /// Proves: C1, C3
    async fn at_sign_in_the_stricter_of_device_and_account_choice_wins(app) {
        let token = app.member("stella").await;
        // The account allowed analytics and preferences through the API (another device).
        for category in ["analytics", "preferences"] {
            let response = app.client.post(app.url("/api/v1/consent/choices")).bearer_auth(&token)
                .json(&json!({"category": category, "choice": "granted"})).send().await.unwrap();
            assert_eq!(response.status(), 201);
        }
        // This browser refused analytics only, then signs in.
        let browser = app.new_client();
        banner(app, &browser, "reject_all").await;
        save_settings(app, &browser, &[("preferences", "granted")]).await;
        sign_in(app, &browser, "stella").await;
        let home = app.page(&browser, "/").await;
        assert!(!home.contains(ANALYTICS_TAG), "the device's refusal beats the account's grant");
        let account = format!("account:{}", user_id(app, "stella").await);
        let synced: Vec<_> = records_of(app, &account).await.into_iter().filter(|r| r.method == "account_sync").collect();
        assert!(synced.iter().any(|r| r.category == "analytics" && r.choice == "denied"), "the refusal follows the account");
        assert!(synced.iter().any(|r| r.category == "advertising" && r.choice == "denied"));
        assert!(!synced.iter().any(|r| r.category == "preferences"), "both granted preferences: nothing to carry");
        // Another device of the same member now sees the stricter choice too.
        let response = app.client.get(app.url("/api/v1/consent/decision?category=analytics")).bearer_auth(&token).send().await.unwrap();
        let decision: Value = response.json().await.unwrap();
        assert_eq!((decision["allowed"].clone(), decision["subject_kind"].clone()), (json!(false), json!("account")));
    }
}

on_both_stores! {
    /// Proves: C3
    async fn withdrawal_keeps_every_earlier_record_and_receipts_show_them(app) {
        let token = app.member("wanda").await;
        let browser = app.new_client();
        sign_in(app, &browser, "wanda").await;
        let home = app.page(&browser, "/").await;
        assert!(home.contains(BANNER) && !home.contains(ANALYTICS_TAG));
        save_settings(app, &browser, &[("analytics", "granted")]).await;
        assert!(app.page(&browser, "/").await.contains(ANALYTICS_TAG));
        save_settings(app, &browser, &[("analytics", "denied")]).await;
        assert!(!app.page(&browser, "/").await.contains(ANALYTICS_TAG), "withdrawal takes effect at once");
        let receipts = receipts(app, &token).await;
        let analytics: Vec<_> = receipts.iter().filter(|r| r["category"] == "analytics").collect();
        assert_eq!(analytics.len(), 2, "the grant survives its withdrawal");
        assert_eq!(analytics[0]["choice"], "granted");
        assert_eq!(analytics[1]["choice"], "denied");
        let policy_version = covenant_core::policy::Policy::default_policy().version().to_string();
        for receipt in &receipts {
            assert_eq!(receipt["schema_version"], "ISO/IEC TS 27560:2023");
            assert_eq!(receipt["method"], "settings_page");
            assert_eq!(receipt["policy_version"], policy_version.as_str());
            assert_eq!(receipt["text_hash"].as_str().unwrap().len(), 64);
            assert!(receipt["subject_id"].as_str().unwrap().starts_with("account:"));
            assert!(!receipt["controller"]["name"].as_str().unwrap().is_empty());
            assert!(receipt["timestamp"].as_str().unwrap().contains('T'));
        }
        let settings = app.page(&browser, "/cookie-settings").await;
        assert!(settings.contains("id=\"consent-records\""), "the settings page lists what was recorded");
        // Receipts are the member's own and need a sign-in.
        let anonymous = app.new_client().get(app.url("/api/v1/consent/receipts")).send().await.unwrap();
        assert_eq!(anonymous.status(), 401);
    }
}

on_both_stores! {
    /// Proves: C4
    async fn a_written_opt_out_applies_to_the_account_by_an_administrator(app) {
        let member_token = app.member("nora").await;
        let admin_token = app.member("ada").await;
        let nora = user_id(app, "nora").await;
        let response = app.client.post(app.url("/api/v1/consent/choices")).bearer_auth(&member_token)
            .json(&json!({"category": "advertising", "choice": "granted"})).send().await.unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["allowed"], true);

        let request = json!({"user_id": nora, "subject": "Nevada Sale Opt-Out"});
        let refused = app.client.post(app.url("/api/v1/consent/written-opt-outs")).bearer_auth(&member_token)
            .json(&request).send().await.unwrap();
        assert_eq!(refused.status(), 403, "only administrators apply written requests");
        let ada = user_id(app, "ada").await;
        app.store.set_role(ada, "administrator").await.unwrap();
        let admin_token = { let _ = admin_token; app.bearer("ada").await };
        let refused = app.client.post(app.url("/api/v1/consent/written-opt-outs")).bearer_auth(&admin_token)
            .json(&request).send().await.unwrap();
        assert_eq!(refused.status(), 403, "an administrator without 2-step verification is refused");
        let setup = app.state.accounts.two_factor_setup(ada, "ada").await.unwrap();
        let code = covenant::two_factor::code_at(&setup.secret, covenant::now()).unwrap();
        app.state.accounts.enable_two_factor(ada, &code).await.unwrap();
        let applied = app.client.post(app.url("/api/v1/consent/written-opt-outs")).bearer_auth(&admin_token)
            .json(&request).send().await.unwrap();
        assert_eq!(applied.status(), 201);
        let body: Value = applied.json().await.unwrap();
        assert_eq!(body["receipt"]["method"], "written_request");
        assert_eq!(body["receipt"]["choice"], "denied");

        let decision: Value = app.client.get(app.url("/api/v1/consent/decision?category=advertising"))
            .bearer_auth(&member_token).send().await.unwrap().json().await.unwrap();
        assert_eq!(decision["allowed"], false);
        let bad = app.client.post(app.url("/api/v1/consent/written-opt-outs")).bearer_auth(&admin_token)
            .json(&json!({"user_id": nora, "subject": "Please stop"})).send().await.unwrap();
        assert_eq!(bad.status(), 422);
        let missing = app.client.post(app.url("/api/v1/consent/written-opt-outs")).bearer_auth(&admin_token)
            .json(&json!({"user_id": 999_999, "subject": "California Opt-Out"})).send().await.unwrap();
        assert_eq!(missing.status(), 404);
    }
}

on_both_stores! {
    /// Proves: C4
    async fn a_member_known_to_be_under_16_is_never_opted_in_to_advertising(app) {
        let year = time::OffsetDateTime::now_utc().year() - 14;
        let response = app.client.post(app.url("/api/v1/users"))
            .json(&json!({"username": "kim", "email": "kim@example.org", "password": "a long enough password", "birth_year": year, "country": "US", "us_state": "CA"}))
            .send().await.unwrap();
        assert_eq!(response.status(), 201);
        let mail = app.wait_for_mail("kim@example.org", "Confirm").await;
        let token = app.link_in(&mail).rsplit('/').next().unwrap().to_string();
        app.client.post(app.url("/api/v1/users/verify-email")).json(&json!({"token": token})).send().await.unwrap();
        let browser = app.new_client();
        sign_in(app, &browser, "kim").await;
        banner(app, &browser, "accept_all").await;
        let home = app.page(&browser, "/").await;
        assert!(home.contains(ANALYTICS_TAG), "the age rule concerns sale and sharing only");
        assert!(!home.contains(ADVERTISING_TAG), "an under-16 is always opted out");
        let choices = app.page(&browser, "/privacy-choices").await;
        assert!(choices.contains("under 16"));
        let bearer = app.bearer("kim").await;
        let answer: Value = app.client.post(app.url("/api/v1/consent/choices")).bearer_auth(&bearer)
            .json(&json!({"category": "advertising", "choice": "granted"})).send().await.unwrap().json().await.unwrap();
        assert_eq!((answer["allowed"].clone(), answer["reason"].clone()), (json!(false), json!("minor_under_16")));
    }
}

on_both_stores! {
    /// Proves: C1, C3
    async fn other_services_ask_and_record_through_the_api_for_a_device(app) {
        let visitor = app.new_client();
        let response = banner(app, &visitor, "reject_all").await;
        let device = consent_id(&response);
        let ask = |gpc: bool| {
            let url = app.url(&format!("/api/v1/consent/decision?category=analytics&device={device}&gpc={gpc}"));
            async move { app.client.get(url).send().await.unwrap().json::<Value>().await.unwrap() }
        };
        let answer = ask(false).await;
        assert_eq!((answer["allowed"].clone(), answer["reason"].clone()), (json!(false), json!("refused")));
        let recorded = app.new_client().post(app.url("/api/v1/consent/choices"))
            .json(&json!({"device": device, "category": "analytics", "choice": "granted"})).send().await.unwrap();
        assert_eq!(recorded.status(), 201);
        assert_eq!(ask(true).await["allowed"], true, "GPC concerns advertising, not analytics");
        assert!(app.page(&visitor, "/").await.contains(ANALYTICS_TAG), "the page follows the API's record");
        let necessary = app.new_client().post(app.url("/api/v1/consent/choices"))
            .json(&json!({"device": device, "category": "necessary", "choice": "denied"})).send().await.unwrap();
        assert_eq!(necessary.status(), 400);
        let unknown = app.client.get(app.url("/api/v1/consent/decision?category=analytics&device=nope")).send().await.unwrap();
        assert_eq!(unknown.status(), 422);
        let spec: Value = app.client.get(app.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
        for path in ["/api/v1/consent/decision", "/api/v1/consent/choices", "/api/v1/consent/receipts", "/api/v1/consent/written-opt-outs"] {
            assert!(spec["paths"].get(path).is_some(), "{path} is documented");
        }
    }
}

on_both_stores! {
    /// Proves: C1, C3
    async fn a_policy_that_adds_a_purpose_asks_again_before_analytics_runs(app) {
        publish_version(app, DEFAULT_POLICY, "2025-01-01").await;
        let visitor = app.new_client();
        let response = banner(app, &visitor, "reject_all").await;
        let device = consent_id(&response);
        let subject = format!("device:{device}");
        save_settings(app, &visitor, &[("analytics", "granted")]).await;
        let home = app.page(&visitor, "/").await;
        assert!(home.contains(ANALYTICS_TAG) && !home.contains(BANNER), "granted under version A");

        let version_b = publish_version(app, &with_a_new_purpose("2025.2"), "2025-02-01").await;
        assert!(version_b.material && !version_b.diff.added_purposes().is_empty());
        let n_records = records_of(app, &subject).await.len();
        for _ in 0..2 {
            let home = app.page(&visitor, "/").await;
            assert!(home.contains(BANNER), "the banner asks again after the purpose was added");
            assert!(!home.contains(ANALYTICS_TAG), "the grant under version A no longer counts");
            assert!(!home.contains(ADVERTISING_TAG));
            let sentence = asked_again_sentence(&home);
            assert!(sentence.contains("Statistics"), "{sentence}");
            assert!(!sentence.contains("Advertising") && !sentence.contains("Preferences"), "refusals are not asked again: {sentence}");
        }
        let settings = app.page(&visitor, "/cookie-settings").await;
        assert!(settings.contains("Off until you allow it."), "analytics waits for a new choice");
        assert!(settings.contains("Off because you refused it."), "a refusal stays a refusal");
        let decision: Value = app.client.get(app.url(&format!("/api/v1/consent/decision?category=analytics&device={device}")))
            .send().await.unwrap().json().await.unwrap();
        assert_eq!((decision["allowed"].clone(), decision["reason"].clone()), (json!(false), json!("no_choice")), "the API agrees with the page");
        let records = records_of(app, &subject).await;
        assert_eq!(records.len(), n_records, "asking again writes nothing");
        assert!(records.iter().any(|r| r.category == "analytics" && r.choice == "granted" && r.policy_version == "2025.1"), "the earlier grant stays as evidence");

        // Accept all on the banner shown again answers only what it asked.
        banner(app, &visitor, "accept_all").await;
        let records = records_of(app, &subject).await;
        let answered: Vec<_> = records[n_records..].iter().map(|r| (r.category.as_str(), r.choice.as_str(), r.policy_version.as_str())).collect();
        assert_eq!(answered, [("analytics", "granted", "2025.2")]);
        let home = app.page(&visitor, "/").await;
        assert!(home.contains(ANALYTICS_TAG), "the new grant counts under version B");
        assert!(!home.contains(BANNER) && !home.contains(ADVERTISING_TAG));
    }
}

on_both_stores! {
    /// Proves: C1, C3
    async fn a_change_that_adds_no_use_leaves_earlier_choices_in_force(app) {
        publish_version(app, DEFAULT_POLICY, "2025-01-01").await;
        let visitor = app.new_client();
        banner(app, &visitor, "accept_all").await;
        let member = app.member("uma").await;
        let granted = app.client.post(app.url("/api/v1/consent/choices")).bearer_auth(&member)
            .json(&json!({"category": "analytics", "choice": "granted"})).send().await.unwrap();
        assert_eq!(granted.status(), 201);

        let material = publish_version(app, &with_fewer_subjects("2025.2"), "2025-02-01").await;
        assert!(material.material, "a material change, but it adds no purpose and no category");
        let editorial = publish_version(app, &with_a_renamed_provider(with_fewer_subjects("2025.3")), "2025-03-01").await;
        assert!(!editorial.material);
        for _ in 0..2 {
            let home = app.page(&visitor, "/").await;
            assert!(home.contains(ANALYTICS_TAG) && home.contains(ADVERTISING_TAG), "the choices made under version A still hold");
            assert!(!home.contains(BANNER), "nothing is asked again");
        }
        let decision: Value = app.client.get(app.url("/api/v1/consent/decision?category=analytics"))
            .bearer_auth(&member).send().await.unwrap().json().await.unwrap();
        assert_eq!(decision["reason"], "granted", "the account's grant holds too");

        // A version that does add a purpose asks the account again as well.
        publish_version(app, &with_a_new_purpose("2025.4"), "2025-04-01").await;
        let decision: Value = app.client.get(app.url("/api/v1/consent/decision?category=analytics"))
            .bearer_auth(&member).send().await.unwrap().json().await.unwrap();
        assert_eq!(decision["reason"], "no_choice");
        assert!(app.page(&visitor, "/").await.contains(BANNER), "and the device's grants too");
    }
}

/// A second server over the same store and data folder: another node of the same forum.
async fn second_node(app: &TestApp) -> TestApp {
    let (data_dir, database_url) = (
        app.data_dir.path().to_path_buf(),
        app.state.config.database_url.clone(),
    );
    common::spawn_app_with(app.backend, move |config| {
        config.data_dir = data_dir;
        config.database_url = database_url;
    })
    .await
    .expect("the first node's store is reachable")
}

/// Polls `node`'s home page as `visitor` until `holds` says yes, for at most five seconds
/// (ten consent sync intervals).
async fn home_until(
    node: &TestApp,
    visitor: &reqwest::Client,
    holds: impl Fn(&str) -> bool,
) -> bool {
    for _ in 0..50 {
        if holds(&node.page(visitor, "/").await) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

on_both_stores! {
    /// Pages are served from each node's cached consent records; a choice written by another
    /// process reaches the pages of every node within the sync interval, and a choice made
    /// through a node counts there at once, withdrawal included.
    /// Proves: C1, C2
    async fn a_choice_made_elsewhere_reaches_the_pages_of_every_node(app) {
        let other = second_node(app).await;
        let visitor = app.new_client();
        let response = banner(app, &visitor, "reject_all").await;
        let subject = format!("device:{}", consent_id(&response));
        // Records just written are read from the store, not kept, for a moment.
        tokio::time::sleep(covenant::consent::WRITE_WINDOW + std::time::Duration::from_millis(100)).await;
        let home = other.page(&visitor, "/").await;
        assert!(!home.contains(ANALYTICS_TAG) && !home.contains(BANNER), "the other node knows the refusal");
        assert!(app.page(&visitor, "/").await.contains("/cookie-settings"));
        assert!(other.state.consent.cached_subjects() > 0, "the other node holds the visitor's records in memory");

        // Another process (an API client of another node, a command) records a grant.
        let refusal = records_of(app, &subject).await.remove(0);
        let mut tx = app.store.begin().await.unwrap();
        covenant::store::insert_consent_record(&mut tx, &covenant::store::NewConsentRecord {
            receipt_id: "written-elsewhere", subject: &subject, category: "analytics", choice: "granted",
            method: "settings_page", policy_version: &refusal.policy_version, text_hash: &refusal.text_hash,
            recorded_at: covenant::now(),
        }).await.unwrap();
        tx.commit().await.unwrap();
        for node in [app, &other] {
            assert!(home_until(node, &visitor, |home| home.contains(ANALYTICS_TAG)).await,
                "the grant reaches {} within its sync interval", node.address);
        }

        save_settings(&other, &visitor, &[("analytics", "denied")]).await;
        assert!(!other.page(&visitor, "/").await.contains(ANALYTICS_TAG), "a withdrawal counts at once where it was made");
        assert!(home_until(app, &visitor, |home| !home.contains(ANALYTICS_TAG)).await,
            "and on the other node within its sync interval");
        other.stop().await;
    }
}

/// The context of a visitor who is not signed in, by the full path and then from memory;
/// asserts they are the same.
async fn same_context(
    app: &TestApp,
    device: Option<&str>,
    gpc: bool,
) -> std::sync::Arc<covenant::consent::ConsentContext> {
    let (consent, policies) = (&app.state.consent, &app.state.policy);
    let subjects = covenant::consent::RequestSubjects {
        device: device.and_then(covenant::consent::ConsentId::parse),
        account: None,
        gpc,
    };
    let full = consent
        .context(subjects, policies, covenant::now())
        .await
        .unwrap();
    let fast = consent
        .context_in_memory(subjects, policies)
        .expect("decided from memory after one read");
    assert_eq!(format!("{fast:?}"), format!("{full:?}"));
    fast
}

on_both_stores! {
    /// A page for a visitor who is not signed in is decided from the node's memory when it
    /// can be, without a query; that context is the very one the full path reads from the
    /// store, before and after a choice, a GPC signal and a policy change that asks again,
    /// and nothing that needs a read or a write (a subject just written, a GPC signal not yet
    /// recorded, a signed-in member) is decided from memory.
    /// Proves: C1, C2, C3
    async fn a_context_decided_from_memory_is_the_one_read_from_the_store(app) {
        use covenant::consent::{ConsentId, RequestSubjects};
        use covenant_core::policy::CookieCategory;
        publish_version(app, DEFAULT_POLICY, "2025-01-01").await;
        let (consent, policies) = (&app.state.consent, &app.state.policy);
        let wait_out_the_write = || tokio::time::sleep(covenant::consent::WRITE_WINDOW + std::time::Duration::from_millis(100));

        // No cookie: nothing to read.
        let nobody = same_context(app, None, false).await;
        assert!(nobody.show_banner() && !nobody.allows(CookieCategory::Analytics));
        assert!(!same_context(app, None, true).await.allows(CookieCategory::Advertising));

        let visitor = app.new_client();
        let device = consent_id(&banner(app, &visitor, "accept_all").await);
        let subjects = |gpc| RequestSubjects { device: ConsentId::parse(&device), account: None, gpc };
        assert!(consent.context_in_memory(subjects(false), policies).is_none(), "a subject just written is read from the store");
        wait_out_the_write().await;
        let granted = same_context(app, Some(&device), false).await;
        // The next pages take the context worked out for this one: copied once into this
        // thread's memo, then shared by the pages this thread serves (a consent write anywhere
        // in the process, as other tests make, starts the memo over: hence a few tries).
        let again = consent.context_in_memory(subjects(false), policies).unwrap();
        assert_eq!(format!("{again:?}"), format!("{granted:?}"));
        let shared = (0..50).any(|_| {
            let one = consent.context_in_memory(subjects(false), policies).unwrap();
            let next = consent.context_in_memory(subjects(false), policies).unwrap();
            std::sync::Arc::ptr_eq(&one, &next)
        });
        assert!(shared, "the thread's copy is shared");
        assert!(granted.allows(CookieCategory::Analytics) && granted.allows(CookieCategory::Advertising) && !granted.show_banner());

        // GPC: the first signal is recorded by the full path, then decided from memory.
        assert!(consent.context_in_memory(subjects(true), policies).is_none(), "a GPC signal not yet recorded needs a write");
        consent.context(subjects(true), policies, covenant::now()).await.unwrap();
        wait_out_the_write().await;
        let honored = same_context(app, Some(&device), true).await;
        assert!(honored.gpc() && !honored.allows(CookieCategory::Advertising) && honored.allows(CookieCategory::Analytics));
        assert_eq!(records_of(app, &format!("device:{device}")).await.iter().filter(|r| r.method == "gpc").count(), 1);

        // A policy that adds a purpose: the grant lapses, the same way on both paths.
        publish_version(app, &with_a_new_purpose("2025.2"), "2025-02-01").await;
        let asked = same_context(app, Some(&device), false).await;
        assert!(asked.show_banner() && !asked.allows(CookieCategory::Analytics));

        // A signed-in member's context always comes from the full path.
        app.member("vera").await;
        let member = user_id(app, "vera").await;
        let signed_in = RequestSubjects { device: ConsentId::parse(&device), account: Some(member), gpc: false };
        consent.context(signed_in, policies, covenant::now()).await.unwrap();
        assert!(consent.context_in_memory(signed_in, policies).is_none());
    }
}
