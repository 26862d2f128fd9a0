//! Rights that change the running system at once (R9), on both stores: a verified restriction
//! stops every email but account mail, every analytics count and every profile detail until
//! it is lifted; a verified objection or withdrawal of consent stops the news, the digest and
//! the statistics it names; members correct their profile, staff correct a profile field from
//! the request's page, and the audit log keeps the classes of the old and new value, never the
//! values.

mod common;

use common::csrf_of;
use covenant::news::NewsMethod;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PASSWORD: &str = "a long enough password";
const NEWS_SUBJECT: &str = "Spring release notes";
const DIGEST_SUBJECT: &str = "New replies in topics you follow";

async fn user_id(app: &common::TestApp, username: &str) -> i64 {
    app.store
        .user_by_username(username)
        .await
        .unwrap()
        .expect("the member exists")
        .id
}

/// A browser signed in through the sign-in page, with a 2-step `code` when given.
async fn browser_of(app: &common::TestApp, login: &str, code: Option<String>) -> reqwest::Client {
    let browser = app.new_client();
    let page = app.page(&browser, "/sign-in").await;
    let mut fields = vec![
        ("csrf", csrf_of(&page)),
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

/// Accepts every optional cookie on the banner, as the member clicking it.
async fn accept_all(app: &common::TestApp, browser: &reqwest::Client) {
    let home = app.page(browser, "/").await;
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
}

async fn post_form(
    app: &common::TestApp,
    client: &reqwest::Client,
    page_path: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let page = app.page(client, page_path).await;
    let mut all = vec![("csrf".to_string(), csrf_of(&page))];
    all.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    client
        .post(app.url(action))
        .form(&all)
        .send()
        .await
        .unwrap()
}

/// The member asks for `right` with one click on their privacy page (EU rights).
async fn ask(app: &common::TestApp, browser: &reqwest::Client, right: &str) {
    let response = post_form(
        app,
        browser,
        "/account/privacy?jurisdiction=eu_eea",
        "/account/privacy/requests",
        &[("right", right), ("jurisdiction", "eu_eea")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

async fn topic(app: &common::TestApp, bearer: &str, title: &str, body: &str) -> (i64, String) {
    let created: Value = app
        .client
        .post(app.url("/api/v1/topics"))
        .bearer_auth(bearer)
        .json(&json!({"category": "general", "title": title, "body": body}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["topic_id"].as_i64().unwrap();
    let slug = app.store.topic_by_id(id).await.unwrap().unwrap().slug;
    (id, format!("/t/{slug}/{id}"))
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

/// Views counted for the statistics so far, after writing what is held in memory.
async fn views_counted(app: &common::TestApp) -> i64 {
    app.state.visits.flush().await.unwrap();
    let pool = app.raw_pool().await;
    let (n,): (i64,) =
        sqlx::query_as("SELECT CAST(COALESCE(SUM(views), 0) AS BIGINT) FROM visit_counts")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    n
}

async fn view(app: &common::TestApp, browser: &reqwest::Client, path: &str) {
    let response = browser
        .get(app.url(path))
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

fn mail_with_subject(app: &common::TestApp, recipient: &str, subject: &str) -> usize {
    app.mail_to(recipient)
        .iter()
        .filter(|m| {
            m.lines()
                .any(|l| l.starts_with("Subject: ") && l.contains(subject))
        })
        .count()
}

/// A member subscribed to product news and the digest, following a topic another member
/// replies in, browsing with analytics allowed. Returns their browser and bearer, the other
/// member's bearer and the followed topic.
async fn engaged_member(
    app: &common::TestApp,
    name: &str,
) -> (reqwest::Client, String, String, (i64, String)) {
    let bearer = app.member(name).await;
    let other = app.member(&format!("{name}s-friend")).await;
    let id = user_id(app, name).await;
    let (topic_id, path) = topic(
        app,
        &other,
        &format!("{name} asks about roses"),
        "Which ones?",
    )
    .await;
    let browser = browser_of(app, name, None).await;
    accept_all(app, &browser).await;
    let page = app.page(&browser, &path).await;
    let response = browser
        .post(app.url(&format!("{path}/follow")))
        .form(&[("csrf", csrf_of(&page).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    app.state
        .news
        .choose(id, true, NewsMethod::AccountPage, "2025.1")
        .await
        .unwrap();
    app.state
        .digest
        .choose(
            id,
            true,
            covenant::digest::DigestMethod::AccountPage,
            "2025.1",
        )
        .await
        .unwrap();
    (browser, bearer, other, (topic_id, path))
}

on_both_stores! {
    /// Proves: R9
    async fn a_restricted_member_gets_no_email_no_analytics_event_and_their_profile_shows_only_public_posts(app) {
        let (rita, rita_bearer, friend, (topic_id, path)) = engaged_member(app, "rita").await;
        let id = user_id(app, "rita").await;
        topic(app, &rita_bearer, "Rita's public post", "Pruning in March").await;
        app.store.set_bio(id, "Grows old roses in Ghent").await.unwrap();
        // A control member with the same subscriptions, who does not restrict anything.
        app.member("carl").await;
        let carl = user_id(app, "carl").await;
        app.state.news.choose(carl, true, NewsMethod::AccountPage, "2025.1").await.unwrap();

        // Before: Rita's views count and her profile shows her details.
        let before = views_counted(app).await;
        view(app, &rita, &path).await;
        assert_eq!(views_counted(app).await, before + 1, "analytics are on for Rita at first");
        let profile = app.page(&app.new_client(), "/u/rita").await;
        assert!(profile.contains("Grows old roses") && profile.contains("Member since"), "{profile}");

        ask(app, &rita, "restriction").await;
        let answer = app.wait_for_mail("rita@example.org", "We did what you asked").await;
        assert!(answer.contains("restricted"), "the answer says what was done: {answer}");
        let audit = app.store.audit_page(&Default::default(), 1000, 0).await.unwrap().0;
        assert!(audit.iter().any(|e| e.kind == "processing_restricted"), "the restriction is audited");

        // No email: news, the digest and a notice queued for her are not delivered.
        let (_, queued) = app.state.news.send(NEWS_SUBJECT, "What is new", covenant::now()).await.unwrap();
        assert_eq!(queued, 1, "only Carl is queued a newsletter");
        reply(app, &friend, topic_id, "Try the Alba ones").await;
        assert_eq!(app.state.digest.send_due(covenant::now()).await.unwrap(), 0, "no digest is made for Rita");
        let mut tx = app.store.begin().await.unwrap();
        covenant::store::enqueue_mail(&app.store, &mut tx, &covenant::store::OutgoingMail {
            idempotency_key: &format!("policy-notice:77:{id}"),
            recipient: "rita@example.org",
            user_id: Some(id),
            subject: "Our policy changes",
            body_text: "A notice",
            now: covenant::now(),
            list_unsubscribe: None,
            submission_id: None,
        }).await.unwrap();
        tx.commit().await.unwrap();
        app.state.mailer.deliver_due().await.unwrap();
        app.wait_for_mail("carl@example.org", NEWS_SUBJECT).await;
        assert_eq!(mail_with_subject(app, "rita@example.org", NEWS_SUBJECT), 0);
        assert_eq!(mail_with_subject(app, "rita@example.org", DIGEST_SUBJECT), 0);
        assert_eq!(mail_with_subject(app, "rita@example.org", "Our policy changes"), 0);
        assert_eq!(app.store.count_unsent_mail().await.unwrap(), 0, "the notice is withheld, not waiting");

        // No analytics event.
        let before = views_counted(app).await;
        view(app, &rita, &path).await;
        view(app, &rita, &path).await;
        assert_eq!(views_counted(app).await, before, "Rita's views are not counted");

        // Her profile shows her public posts and nothing else, on the page and in the API.
        let profile = app.page(&app.new_client(), "/u/rita").await;
        assert!(profile.contains("s public post</a>"), "{profile}");
        assert!(!profile.contains("Grows old roses") && !profile.contains("Member since"), "{profile}");
        let api: Value = app.client.get(app.url("/api/v1/users/rita")).send().await.unwrap().json().await.unwrap();
        assert_eq!(api, json!({"username": "rita"}));

        // Rita lifts it herself from her privacy page; the lifting is recorded.
        let page = app.page(&rita, "/account/privacy").await;
        assert!(page.contains("Lift the restriction"), "{page}");
        let response = post_form(app, &rita, "/account/privacy", "/account/privacy/restriction/lift", &[]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let lifted = app.store.restrictions_of(id).await.unwrap();
        assert_eq!(lifted.len(), 1);
        assert_eq!((lifted[0].lifted_by, lifted[0].lifted_how.as_deref()), (Some(id), Some("subject")));
        let audit = app.store.audit_page(&Default::default(), 1000, 0).await.unwrap().0;
        assert!(audit.iter().any(|e| e.kind == "restriction_lifted" && e.details.contains("method=subject")));
        let profile = app.page(&app.new_client(), "/u/rita").await;
        assert!(profile.contains("Grows old roses"), "the profile is whole again");
        let before = views_counted(app).await;
        view(app, &rita, &path).await;
        assert_eq!(views_counted(app).await, before + 1, "analytics resume with her standing consent");
    }
}

on_both_stores! {
    /// Proves: R9
    async fn an_objection_stops_news_digest_and_analytics_at_once(app) {
        let (otto, _, friend, (topic_id, path)) = engaged_member(app, "otto").await;
        let id = user_id(app, "otto").await;
        ask(app, &otto, "objection").await;
        // At once: the choices each purpose reads say no, recorded as coming from the request.
        let news = app.store.news_choice_of(id).await.unwrap().unwrap();
        assert_eq!((news.subscribed, news.method.as_str()), (0, "privacy_request"));
        assert!(app.state.digest.subscribed_since(id).await.unwrap().is_none());
        let answer = app.wait_for_mail("otto@example.org", "We did what you asked").await;
        assert!(answer.contains("product news") && answer.contains("digest"), "{answer}");

        let (_, queued) = app.state.news.send(NEWS_SUBJECT, "What is new", covenant::now()).await.unwrap();
        assert_eq!(queued, 0);
        reply(app, &friend, topic_id, "A reply Otto is not told about").await;
        assert_eq!(app.state.digest.send_due(covenant::now()).await.unwrap(), 0);
        app.state.mailer.deliver_due().await.unwrap();
        assert_eq!(mail_with_subject(app, "otto@example.org", NEWS_SUBJECT), 0);
        assert_eq!(mail_with_subject(app, "otto@example.org", DIGEST_SUBJECT), 0);
        let before = views_counted(app).await;
        view(app, &otto, &path).await;
        assert_eq!(views_counted(app).await, before, "Otto's views are no longer counted");
    }
}

on_both_stores! {
    /// Proves: R9
    async fn withdrawing_consent_stops_analytics_and_direct_marketing_objection_stops_news(app) {
        let (wanda, _, _, (_, path)) = engaged_member(app, "wanda").await;
        let wanda_id = user_id(app, "wanda").await;
        ask(app, &wanda, "withdraw_consent").await;
        let before = views_counted(app).await;
        view(app, &wanda, &path).await;
        assert_eq!(views_counted(app).await, before);
        assert!(!app.state.news.is_subscribed(wanda_id).await.unwrap());

        let (mark, _, _, _) = engaged_member(app, "mark").await;
        let mark_id = user_id(app, "mark").await;
        ask(app, &mark, "object_direct_marketing").await;
        assert!(!app.state.news.is_subscribed(mark_id).await.unwrap(), "product news stops");
        assert!(app.state.digest.subscribed_since(mark_id).await.unwrap().is_some(),
            "the digest is not direct marketing and goes on");
    }
}

on_both_stores! {
    /// Proves: R9
    async fn staff_correct_a_profile_field_and_the_audit_log_keeps_only_value_classes(app) {
        app.member("rae").await;
        let id = user_id(app, "rae").await;
        app.store.set_bio(id, "Wrong town").await.unwrap();
        let rae = browser_of(app, "rae", None).await;
        ask(app, &rae, "rectification").await;
        let request_id = app.store.requests_of_member(id).await.unwrap()[0].id;

        app.member("olga").await;
        let olga = user_id(app, "olga").await;
        app.state.accounts.set_role(olga, covenant::domain::Role::PrivacyOfficer).await.unwrap();
        let setup = app.state.accounts.two_factor_setup(olga, "olga").await.unwrap();
        let step = common::settled_totp_step().await;
        let code = common::totp_code(&setup.secret, step - 1);
        app.state.accounts.enable_two_factor(olga, &code).await.unwrap();
        let code = common::totp_code(&setup.secret, step);
        let officer = browser_of(app, "olga", Some(code)).await;

        let page_path = format!("/staff/requests/{request_id}");
        let page = app.page(&officer, &page_path).await;
        assert!(page.contains("value=\"rectify\""), "the request page offers the correction");
        let action = format!("/staff/requests/{request_id}/actions");
        let unknown = post_form(app, &officer, &page_path, &action,
            &[("action", "rectify"), ("field", "email"), ("text", "x@example.org")]).await;
        assert_eq!(unknown.status(), StatusCode::UNPROCESSABLE_ENTITY, "only listed fields");
        let response = post_form(app, &officer, &page_path, &action,
            &[("action", "rectify"), ("field", "bio"), ("text", "Lives in Leuven, grows pears and writes long notes about them every week")]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(app.store.user_by_id(id).await.unwrap().unwrap().bio,
            "Lives in Leuven, grows pears and writes long notes about them every week");
        // A member cannot do it for anyone.
        let response = post_form(app, &rae, "/account/privacy", &action,
            &[("action", "rectify"), ("field", "bio"), ("text", "mine")]).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);

        let audit = app.store.audit_page(&Default::default(), 1000, 0).await.unwrap().0;
        let entry = audit.iter().find(|e| e.kind == "data_rectified").expect("the correction is audited");
        assert!(entry.details.contains("field=bio") && entry.details.contains("before=short")
            && entry.details.contains("after=short") && entry.details.contains(&format!("request={request_id}")),
            "{}", entry.details);
        assert!(audit.iter().all(|e| !e.details.contains("Wrong town") && !e.details.contains("Leuven")),
            "no value in the audit log");

        // Staff lift a restriction from a request's page too, and the lifting is recorded.
        ask(app, &rae, "restriction").await;
        assert!(app.store.is_restricted(id).await.unwrap());
        let response = post_form(app, &officer, &page_path, &action, &[("action", "lift_restriction")]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert!(!app.store.is_restricted(id).await.unwrap());
        let lifted = app.store.restrictions_of(id).await.unwrap();
        assert_eq!((lifted[0].lifted_by, lifted[0].lifted_how.as_deref()), (Some(olga), Some("staff")));
        let again = post_form(app, &officer, &page_path, &action, &[("action", "lift_restriction")]).await;
        assert_eq!(again.status(), StatusCode::UNPROCESSABLE_ENTITY, "nothing left to lift");
    }
}

/// Verified requests wait for privacy staff instead of being carried out at once.
fn staff_review(config: &mut covenant::Config) {
    config.requests.fulfil_at_once = false;
}

on_both_stores! {
    /// Proves: R9
    async fn restriction_and_objection_take_effect_at_once_even_where_staff_review_requests(app) where config: staff_review; {
        let (ida, _, _, _) = engaged_member(app, "ida").await;
        let id = user_id(app, "ida").await;
        ask(app, &ida, "restriction").await;
        assert!(app.store.is_restricted(id).await.unwrap(), "restricted with the verification");
        ask(app, &ida, "withdraw_consent").await;
        assert!(!app.state.news.is_subscribed(id).await.unwrap());
        let states: Vec<String> = app.store.requests_of_member(id).await.unwrap()
            .into_iter().map(|r| r.state).collect();
        assert_eq!(states, ["fulfilled", "fulfilled"], "nothing waits for staff");
        ask(app, &ida, "deletion").await;
        assert!(app.store.user_by_username("ida").await.unwrap().is_some(), "deletion still waits for review");
    }
}

on_both_stores! {
    /// Proves: R9
    async fn a_member_corrects_their_own_profile_and_only_value_classes_are_audited(app) {
        app.member("uma").await;
        let id = user_id(app, "uma").await;
        let uma = browser_of(app, "uma", None).await;
        let own = app.page(&uma, "/u/uma").await;
        assert!(own.contains("href=\"/account/profile\""), "the profile links its correction");
        let response = post_form(app, &uma, "/account/profile", "/account/profile",
            &[("bio", "Keeps bees in Graz")]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.text().await.unwrap().contains("Keeps bees in Graz"));
        assert_eq!(app.store.user_by_id(id).await.unwrap().unwrap().bio, "Keeps bees in Graz");
        assert!(app.page(&app.new_client(), "/u/uma").await.contains("Keeps bees in Graz"));
        let forged = uma.post(app.url("/account/profile")).form(&[("csrf", "wrong"), ("bio", "x")])
            .send().await.unwrap();
        assert_eq!(forged.status(), StatusCode::FORBIDDEN);
        let audit = app.store.audit_page(&Default::default(), 1000, 0).await.unwrap().0;
        let entry = audit.iter().find(|e| e.kind == "data_rectified").expect("audited");
        assert!(entry.details.contains("method=member") && entry.details.contains("before=empty")
            && entry.details.contains("after=short"), "{}", entry.details);
        assert!(audit.iter().all(|e| !e.details.contains("bees")), "no value in the audit log");
    }
}
