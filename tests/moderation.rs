//! The spam and unsafe-link check, on both stores: posts that link to an unsafe domain (or one
//! of its subdomains) or match a spam pattern are saved but held, seen only by their author and
//! moderators; moderators release or hide each one from their queue, and every hold and
//! decision is in the audit log with identifiers only.

mod common;

use common::csrf_of;
use covenant::config::Config;
use covenant::domain::Role;
use covenant::store::AuditFilter;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PASSWORD: &str = "a long enough password";

/// The operator's lists for these tests.
fn lists(config: &mut Config) {
    config.moderation.unsafe_domains = vec!["Spam.Example".into()];
    config.moderation.spam_patterns = vec!["cheap pills".into()];
}

async fn user_id(app: &common::TestApp, name: &str) -> i64 {
    app.store.user_by_username(name).await.unwrap().unwrap().id
}

/// A browser signed in through the sign-in page (with a 2-step code when given).
async fn browser_for(app: &common::TestApp, login: &str, code: Option<String>) -> reqwest::Client {
    let browser = app.new_client();
    let form = app.page(&browser, "/sign-in").await;
    let mut fields = vec![
        ("csrf", csrf_of(&form)),
        ("login", login.to_string()),
        ("password", PASSWORD.to_string()),
    ];
    if let Some(code) = code {
        fields.push(("code", code));
    }
    let response = browser
        .post(app.url("/sign-in"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "sign-in of {login}"
    );
    browser
}

/// A moderator with 2-step verification on: a browser signed in, and a bearer token.
async fn moderator(app: &common::TestApp, name: &str) -> (reqwest::Client, String) {
    let token = app.member(name).await;
    let id = user_id(app, name).await;
    app.state
        .accounts
        .set_role(id, Role::Moderator)
        .await
        .unwrap();
    let setup = app.state.accounts.two_factor_setup(id, name).await.unwrap();
    let step = common::settled_totp_step().await;
    let code = common::totp_code(&setup.secret, step - 1);
    app.state
        .accounts
        .enable_two_factor(id, &code)
        .await
        .unwrap();
    let code = common::totp_code(&setup.secret, step);
    (browser_for(app, name, Some(code)).await, token)
}

async fn new_topic(app: &common::TestApp, token: &str, title: &str, body: &str) -> Value {
    let response = app
        .client
        .post(app.url("/api/v1/topics"))
        .bearer_auth(token)
        .json(&json!({"category": "general", "title": title, "body": body}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

async fn reply(app: &common::TestApp, token: &str, topic_id: i64, body: &str) -> Value {
    let response = app
        .client
        .post(app.url(&format!("/api/v1/topics/{topic_id}/posts")))
        .bearer_auth(token)
        .json(&json!({"body": body}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

/// The topic as the API shows it to `token`'s member, or to a visitor.
async fn api_topic(app: &common::TestApp, token: Option<&str>, topic_id: i64) -> reqwest::Response {
    let request = app
        .client
        .get(app.url(&format!("/api/v1/topics/{topic_id}")));
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
    .send()
    .await
    .unwrap()
}

async fn post_ids_seen(app: &common::TestApp, token: Option<&str>, topic_id: i64) -> Vec<i64> {
    let topic: Value = api_topic(app, token, topic_id).await.json().await.unwrap();
    topic["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect()
}

/// The audit entries of one kind, oldest first, as (actor, subject, details).
async fn audited(app: &common::TestApp, kind: &str) -> Vec<(Option<i64>, Option<i64>, String)> {
    let filter = AuditFilter {
        kind: Some(kind.into()),
        ..AuditFilter::default()
    };
    let (mut rows, _) = app.store.audit_page(&filter, 100, 0).await.unwrap();
    rows.sort_by_key(|row| row.seq);
    rows.into_iter()
        .map(|row| (row.actor_id, row.subject_id, row.details))
        .collect()
}

/// Decides on a held post from the queue page's form.
async fn decide(
    app: &common::TestApp,
    browser: &reqwest::Client,
    post_id: i64,
    decision: &str,
) -> reqwest::Response {
    let queue = app.page(browser, "/staff/held").await;
    browser
        .post(app.url(&format!("/staff/held/{post_id}/{decision}")))
        .form(&[("csrf", csrf_of(&queue))])
        .send()
        .await
        .unwrap()
}

on_both_stores! {
    /// Proves: A6, A4
    async fn replies_linking_to_an_unsafe_domain_wait_for_a_moderator_who_releases_or_hides_each(app) where config: lists; {
        let author = app.member("mallory").await;
        let other = app.member("bob").await;
        let author_id = user_id(app, "mallory").await;
        let created = new_topic(app, &author, "Weekend deals", "Anything good this week?").await;
        assert_eq!(created["held"], false);
        let topic_id = created["topic_id"].as_i64().unwrap();
        let path = format!("/t/weekend-deals/{topic_id}");

        // One reply links to the listed domain, one to a subdomain of it, written in capitals
        // and through the page's form.
        let first = reply(app, &author, topic_id, "Great [offer](https://spam.example/offer) here").await;
        assert_eq!(first["held"], true);
        let first_id = first["post_id"].as_i64().unwrap();
        let author_browser = browser_for(app, "mallory", None).await;
        let page = app.page(&author_browser, &path).await;
        let response = author_browser.post(app.url(&format!("{path}/reply")))
            .form(&[("csrf", csrf_of(&page).as_str()), ("body", "See <https://WWW.Spam.Example/deal> now")])
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let second_id = post_ids_seen(app, Some(&author), topic_id).await[2];
        assert_ne!(second_id, first_id);

        // Neither a visitor nor another member sees them, on the page, the API or a profile.
        let visitor = app.new_client();
        let page = app.page(&visitor, &path).await;
        assert!(page.contains("Anything good this week?"));
        assert!(!page.to_lowercase().contains("spam.example") && !page.contains("Great"), "{page}");
        assert_eq!(post_ids_seen(app, None, topic_id).await.len(), 1);
        assert_eq!(post_ids_seen(app, Some(&other), topic_id).await.len(), 1);
        let other_browser = browser_for(app, "bob", None).await;
        let page = app.page(&other_browser, &path).await;
        assert!(!page.to_lowercase().contains("spam.example") && !page.contains("Waiting for a moderator"));
        let profile: Value = app.client.get(app.url("/api/v1/users/mallory")).send().await.unwrap().json().await.unwrap();
        assert_eq!(profile["n_posts"], 1);

        // Their author sees them, marked.
        let page = app.page(&author_browser, &path).await;
        assert!(page.contains("https://spam.example/offer") && page.contains("https://WWW.Spam.Example/deal"));
        assert_eq!(page.matches("Waiting for a moderator").count(), 2, "{page}");
        let topic: Value = api_topic(app, Some(&author), topic_id).await.json().await.unwrap();
        assert!(topic["posts"][1]["held_at"].is_i64());
        assert!(topic["posts"][0]["held_at"].is_null());

        // Members cannot reach the queue; moderators find it linked and see both posts there.
        let response = other_browser.get(app.url("/staff/held")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let (moderator_browser, moderator_token) = moderator(app, "warden").await;
        let moderator_id = user_id(app, "warden").await;
        assert!(app.page(&moderator_browser, "/").await.contains("href=\"/staff/held\""));
        let queue = app.page(&moderator_browser, "/staff/held").await;
        for id in [first_id, second_id] {
            assert!(queue.contains(&format!("data-held=\"{id}\"")), "{queue}");
        }
        assert!(queue.contains("links to a site on the list of unsafe sites"));
        assert_eq!(post_ids_seen(app, Some(&moderator_token), topic_id).await.len(), 3);

        // A decision needs the form's anti-forgery token.
        let response = moderator_browser.post(app.url(&format!("/staff/held/{first_id}/release")))
            .form(&[("csrf", "forged")]).send().await.unwrap();
        assert!(response.status().is_client_error(), "{}", response.status());
        assert_eq!(post_ids_seen(app, None, topic_id).await.len(), 1);

        // Released, the first shows to everyone; hidden, the second stays out of sight.
        let response = decide(app, &moderator_browser, first_id, "release").await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let page = app.page(&visitor, &path).await;
        assert!(page.contains("https://spam.example/offer") && !page.contains("Waiting for a moderator"));
        assert_eq!(post_ids_seen(app, Some(&other), topic_id).await, [created["post_id"].as_i64().unwrap(), first_id]);
        let response = decide(app, &moderator_browser, second_id, "hide").await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let page = app.page(&visitor, &path).await;
        assert!(!page.to_lowercase().contains("www.spam.example") && page.contains("hidden by a moderator"));
        let hidden = app.store.post_by_id(second_id).await.unwrap().unwrap();
        assert!(hidden.held_at.is_none() && hidden.hidden_at.is_some());
        assert!(app.page(&moderator_browser, "/staff/held").await.contains("No post is waiting"));

        // One decision per hold: deciding again finds nothing to decide.
        let response = decide(app, &moderator_browser, first_id, "hide").await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(app.store.post_by_id(first_id).await.unwrap().unwrap().hidden_at.is_none());

        // The holds and the decisions are audited with identifiers and fixed words only.
        assert_eq!(audited(app, "post_held").await, [
            (None, Some(author_id), format!("post={first_id} reason=unsafe_link")),
            (None, Some(author_id), format!("post={second_id} reason=unsafe_link")),
        ]);
        assert_eq!(audited(app, "held_post_released").await, [(Some(moderator_id), Some(author_id), format!("post={first_id}"))]);
        assert_eq!(audited(app, "held_post_hidden").await, [(Some(moderator_id), Some(author_id), format!("post={second_id}"))]);
    }
}

on_both_stores! {
    /// Proves: A6
    async fn a_new_topic_matching_a_spam_pattern_stays_unlisted_until_a_moderator_releases_it(app) where config: lists; {
        let author = app.member("seller").await;
        let other = app.member("reader").await;
        let created = new_topic(app, &author, "Pharmacy", "Buy CHEAP\npills today").await;
        assert_eq!(created["held"], true);
        let topic_id = created["topic_id"].as_i64().unwrap();
        let post_id = created["post_id"].as_i64().unwrap();
        let path = format!("/t/pharmacy/{topic_id}");

        let visitor = app.new_client();
        assert!(!app.page(&visitor, "/").await.contains("Pharmacy"));
        assert!(!app.page(&visitor, "/c/general").await.contains("Pharmacy"));
        let response = visitor.get(app.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(api_topic(app, Some(&other), topic_id).await.status(), StatusCode::NOT_FOUND);
        // Nobody can reply to it meanwhile.
        let response = app.client.post(app.url(&format!("/api/v1/topics/{topic_id}/posts"))).bearer_auth(&other)
            .json(&json!({"body": "Me too"})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);

        let author_browser = browser_for(app, "seller", None).await;
        let page = app.page(&author_browser, &path).await;
        assert!(page.contains("Waiting for a moderator") && page.contains("is not listed"), "{page}");
        assert!(app.state.store.held_posts(10).await.unwrap().iter().any(|row| row.post.id == post_id && row.held_reason == "spam_pattern"));

        // The API's unhide, on a held post, is the decision to release it.
        let (_, moderator_token) = moderator(app, "warden").await;
        let response = app.client.post(app.url(&format!("/api/v1/posts/{post_id}/unhide"))).bearer_auth(&moderator_token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(app.page(&visitor, "/").await.contains("Pharmacy"));
        assert!(app.page(&visitor, &path).await.contains("pills today"));
        assert_eq!(audited(app, "held_post_released").await.len(), 1);

        // The API's description says which answers carry the flag.
        let spec: Value = app.client.get(app.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
        assert!(spec["components"]["schemas"]["Created"]["properties"]["held"].is_object(), "{}", spec["components"]["schemas"]["Created"]);
        assert!(spec["components"]["schemas"]["PostRow"]["properties"]["held_at"].is_object());
    }
}

on_both_stores! {
    /// Proves: A6, A4
    async fn clean_posts_are_never_held(app) where config: lists; {
        let author = app.member("grace").await;
        let created = new_topic(app, &author, "Links", "Nothing to see").await;
        assert_eq!(created["held"], false);
        let topic_id = created["topic_id"].as_i64().unwrap();
        for body in [
            "[a neighbour](https://notspam.example/)",
            "[another](https://spam.example.org/page)",
            "spam.example is only named here, not linked",
            "[inside](/t/links/1) and [mail](mailto:me@example.org)",
            "Pills are not cheap",
        ] {
            assert_eq!(reply(app, &author, topic_id, body).await["held"], false, "{body}");
        }
        assert_eq!(post_ids_seen(app, None, topic_id).await.len(), 6);
        assert!(app.store.held_posts(10).await.unwrap().is_empty());
        assert!(audited(app, "post_held").await.is_empty());
    }
}

on_both_stores! {
    /// Proves: A6, A4
    async fn an_edit_that_adds_an_unsafe_link_holds_the_post(app) where config: lists; {
        let author = app.member("editor").await;
        let created = new_topic(app, &author, "Tools", "Which editor?").await;
        let topic_id = created["topic_id"].as_i64().unwrap();
        let answer = reply(app, &author, topic_id, "Any will do").await;
        let post_id = answer["post_id"].as_i64().unwrap();
        assert_eq!(post_ids_seen(app, None, topic_id).await.len(), 2);

        let response = app.client.patch(app.url(&format!("/api/v1/posts/{post_id}"))).bearer_auth(&author)
            .json(&json!({"body": "Any will do, or [this one](https://downloads.spam.example/editor.exe)"}))
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let edited: Value = response.json().await.unwrap();
        assert!(edited["held_at"].is_i64(), "{edited}");
        assert_eq!(post_ids_seen(app, None, topic_id).await.len(), 1);
        assert_eq!(post_ids_seen(app, Some(&author), topic_id).await.len(), 2);
        let held = app.store.held_posts(10).await.unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!((held[0].post.id, held[0].held_reason.as_str()), (post_id, "unsafe_link"));
        // The edit's hold is audited like any other, without the text.
        let entries = audited(app, "post_held").await;
        assert_eq!(entries.len(), 1);
        assert!(!entries[0].2.contains("spam"), "{entries:?}");
    }
}
