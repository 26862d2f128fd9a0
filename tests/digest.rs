//! The digest of followed topics: sent only to members who asked for it, once per period,
//! without their own replies, and stopped by a one-click unsubscribe (promise F6).

mod common;

use common::csrf_of;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn header<'a>(mail: &'a str, name: &str) -> Option<&'a str> {
    mail.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}: ")))
}

/// A browser with a session for a member already registered.
async fn browser_of(app: &common::TestApp, username: &str) -> reqwest::Client {
    let browser = app.new_client();
    let page = app.page(&browser, "/sign-in").await;
    let response = browser
        .post(app.url("/sign-in"))
        .form(&[
            ("csrf", csrf_of(&page).as_str()),
            ("login", username),
            ("password", "a long enough password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    browser
}

async fn reply(app: &common::TestApp, bearer: &str, topic_id: i64, body: &str) {
    let response = app
        .client
        .post(app.url(&format!("/api/v1/topics/{topic_id}/posts")))
        .bearer_auth(bearer)
        .json(&json!({ "body": body }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

/// Follows the topic from its page, as a member clicking the button.
async fn follow(app: &common::TestApp, browser: &reqwest::Client, path: &str) {
    let page = app.page(browser, path).await;
    assert!(
        page.contains("Follow</button>"),
        "the topic page offers to follow"
    );
    let forged = browser
        .post(app.url(&format!("{path}/follow")))
        .form(&[("csrf", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        forged.status(),
        StatusCode::FORBIDDEN,
        "following is CSRF-checked"
    );
    let response = browser
        .post(app.url(&format!("{path}/follow")))
        .form(&[("csrf", csrf_of(&page).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(app.page(browser, path).await.contains("Unfollow</button>"));
}

fn digests_to(app: &common::TestApp, recipient: &str) -> usize {
    app.mail_to(recipient)
        .iter()
        .filter(|mail| mail.contains("Subject: New replies in topics you follow"))
        .count()
}

on_both_stores! {
    /// Proves: F6
    async fn only_members_who_asked_get_the_digest_and_one_click_stops_it(app) {
        let author = app.member("author").await;
        let fan_token = app.member("fan").await;
        app.member("lurker").await;
        let created: Value = app.client.post(app.url("/api/v1/topics")).bearer_auth(&author)
            .json(&json!({"category": "general", "title": "Garden tools", "body": "Which rake?"}))
            .send().await.unwrap().json().await.unwrap();
        let topic_id = created["topic_id"].as_i64().unwrap();
        let topic = app.store.topic_by_id(topic_id).await.unwrap().unwrap();
        let path = format!("/t/{}/{topic_id}", topic.slug);

        let fan = browser_of(app, "fan").await;
        let lurker = browser_of(app, "lurker").await;
        follow(app, &fan, &path).await;
        follow(app, &lurker, &path).await;

        // The choice is separate from product news, unticked, and off until asked.
        let page = app.page(&fan, "/account/email").await;
        assert!(page.contains("name=\"digest\""), "the account page offers the digest");
        assert!(!page.contains("name=\"digest\" value=\"yes\" checked"), "never pre-ticked");
        let forged = fan.post(app.url("/account/email/digest"))
            .form(&[("csrf", "wrong"), ("digest", "yes")]).send().await.unwrap();
        assert_eq!(forged.status(), StatusCode::FORBIDDEN, "the choice is CSRF-checked");
        let response = fan.post(app.url("/account/email/digest"))
            .form(&[("csrf", csrf_of(&page).as_str()), ("digest", "yes")]).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.text().await.unwrap().contains("name=\"digest\" value=\"yes\" checked"));
        let fan_user = app.store.user_by_username("fan").await.unwrap().unwrap();
        let lurker_user = app.store.user_by_username("lurker").await.unwrap().unwrap();
        assert!(app.state.digest.subscribed_since(fan_user.id).await.unwrap().is_some());
        assert!(app.store.digest_choice_of(lurker_user.id).await.unwrap().is_none());

        reply(app, &fan_token, topic_id, "My own reply is not news to me").await;
        reply(app, &author, topic_id, "The one with wooden teeth").await;

        let queued = app.state.digest.send_due(covenant::now()).await.unwrap();
        assert_eq!(queued, 1, "only the member who asked gets a digest");
        assert_eq!(app.state.digest.send_due(covenant::now()).await.unwrap(), 0,
            "running the job again sends nothing twice");
        app.state.mailer.wake();
        let mail = app.wait_for_mail("fan@example.org", "New replies in topics you follow").await;
        assert!(mail.contains("Garden tools (1 new reply)"), "{mail}");
        assert!(mail.contains(&app.url(&path)), "the digest links the topic");
        assert_eq!(header(&mail, "List-Unsubscribe-Post"), Some("List-Unsubscribe=One-Click"));
        let address = header(&mail, "List-Unsubscribe").expect("a List-Unsubscribe header");
        let url = address.trim_start_matches('<').trim_end_matches('>').to_string();
        assert!(url.starts_with(&app.url("/digest/unsubscribe/")), "{url}");
        assert!(mail.contains(&url), "the body carries the same link");
        assert_eq!(digests_to(app, "fan@example.org"), 1);
        assert_eq!(digests_to(app, "lurker@example.org"), 0, "following alone sends nothing");
        // Unfollowing is a button too, and CSRF-checked.
        let page = app.page(&lurker, &path).await;
        let forged = lurker.post(app.url(&format!("{path}/unfollow")))
            .form(&[("csrf", "wrong")]).send().await.unwrap();
        assert_eq!(forged.status(), StatusCode::FORBIDDEN);
        let response = lurker.post(app.url(&format!("{path}/unfollow")))
            .form(&[("csrf", csrf_of(&page).as_str())]).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert!(!app.state.digest.follows(lurker_user.id, topic_id).await.unwrap());
        assert!(app.page(&lurker, &path).await.contains(">Follow</button>"));
        // Visitors see no follow button.
        assert!(!app.page(&app.new_client(), &path).await.contains("Follow</button>"));

        // What a mail provider does: a POST with no cookie, no session and no form token.
        let provider = reqwest::Client::new();
        let response = provider.post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(app.state.digest.subscribed_since(fan_user.id).await.unwrap().is_none());
        // The news link's token does not work here, nor a forged one.
        let news_token = app.state.news.unsubscribe_token(fan_user.id);
        let response = provider.post(app.url(&format!("/digest/unsubscribe/{news_token}")))
            .body("List-Unsubscribe=One-Click").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);

        // Later replies, even on a later day, send nothing to anyone.
        reply(app, &author, topic_id, "Or the metal one").await;
        let tomorrow = covenant::now() + 86_400;
        assert_eq!(app.state.digest.send_due(tomorrow).await.unwrap(), 0);
        app.state.mailer.wake();
        assert_eq!(digests_to(app, "fan@example.org"), 1);
        assert_eq!(digests_to(app, "lurker@example.org"), 0);
    }
}
