//! The people the policy names: subscribers who leave with one click, children refused or
//! waiting for a parent, and teenagers admitted but never sold (promises F6, M1, C4).

mod common;

use common::csrf_of;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn year_of_age(age: i32) -> i32 {
    time::OffsetDateTime::now_utc().year() - age
}

/// Registers through the API with the given extra fields; returns the response body.
async fn register(app: &common::TestApp, username: &str, extra: Value) -> (StatusCode, Value) {
    let mut body = json!({
        "username": username,
        "email": format!("{username}@example.org"),
        "password": "a long enough password",
        "birth_year": 1990,
        "country": "GB",
    });
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    let response = app
        .client
        .post(app.url("/api/v1/users"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// Confirms the member's address from the emailed link and returns a bearer token.
async fn verify_and_sign_in(app: &common::TestApp, username: &str) -> String {
    let mail = app
        .wait_for_mail(&format!("{username}@example.org"), "Confirm")
        .await;
    let link = app.link_in(&mail);
    let token = link.rsplit('/').next().unwrap();
    let response = app
        .client
        .post(app.url("/api/v1/users/verify-email"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    app.bearer(username).await
}

async fn post_topic(app: &common::TestApp, bearer: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url("/api/v1/topics"))
        .bearer_auth(bearer)
        .json(&json!({"category": "general", "title": "Hello there", "body": "My first post"}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn header<'a>(mail: &'a str, name: &str) -> Option<&'a str> {
    mail.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}: ")))
}

on_both_stores! {
    /// Proves: F6
    async fn one_click_unsubscribe_works_without_a_session(app) {
        let form = app.page(&app.client, "/register").await;
        assert!(form.contains("name=\"news\""), "registration offers product news");
        assert!(!form.contains("name=\"news\" value=\"yes\" checked"), "never pre-ticked");

        let (status, _) = register(app, "reader", json!({"news": true})).await;
        assert_eq!(status, 201);
        let (status, _) = register(app, "quiet", json!({})).await;
        assert_eq!(status, 201);
        let (_, queued) = app.state.news.send("Spring news", "We shipped things.", covenant::now()).await.unwrap();
        assert_eq!(queued, 1, "only the member who opted in");
        app.state.mailer.wake();
        let mail = app.wait_for_mail("reader@example.org", "Spring news").await;
        assert_eq!(header(&mail, "List-Unsubscribe-Post"), Some("List-Unsubscribe=One-Click"));
        let address = header(&mail, "List-Unsubscribe").expect("a List-Unsubscribe header");
        let url = address.trim_start_matches('<').trim_end_matches('>').to_string();
        assert!(url.starts_with(&app.url("/unsubscribe/")), "{url}");
        assert!(mail.contains(&url), "the body carries the same link");

        // What a mail provider does: a POST with no cookie, no session and no form token.
        let provider = reqwest::Client::new();
        let response = provider.post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send().await.unwrap();
        assert_eq!(response.status(), 200);
        let user = app.store.user_by_username("reader").await.unwrap().unwrap();
        let choice = app.store.news_choice_of(user.id).await.unwrap().unwrap();
        assert_eq!((choice.subscribed, choice.method.as_str()), (0, "one_click"));
        let relationship = app.store.relationship(user.id).await.unwrap().unwrap();
        assert!(relationship.news_subscribed_at.is_some() && relationship.news_ended_at.is_some(),
            "unsubscribing ends the subscription relationship for retention");

        // The link opened in a browser shows a confirm button and changes nothing by itself.
        let page = app.page(&provider, url.trim_start_matches(&app.address)).await;
        assert!(page.contains("Unsubscribe</button>"));
        // A forged token is refused.
        let forged = provider.post(app.url("/unsubscribe/AAAAAAAAAAEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
            .body("List-Unsubscribe=One-Click").send().await.unwrap();
        assert_eq!(forged.status(), 400);

        let (_, queued) = app.state.news.send("Summer news", "More things.", covenant::now()).await.unwrap();
        assert_eq!(queued, 0, "an unsubscribed member gets no more news");
    }
}

on_both_stores! {
    /// Proves: F6
    async fn members_opt_in_and_out_on_their_email_page_with_evidence(app) {
        let bearer = app.member("pat").await;
        let _ = bearer;
        let browser = app.new_client();
        let page = app.page(&browser, "/sign-in").await;
        let response = browser.post(app.url("/sign-in"))
            .form(&[("csrf", csrf_of(&page).as_str()), ("login", "pat"), ("password", "a long enough password")])
            .send().await.unwrap();
        assert_eq!(response.status(), 303);
        let page = app.page(&browser, "/account/email").await;
        assert!(!page.contains("checked"), "not subscribed until asked");
        let user = app.store.user_by_username("pat").await.unwrap().unwrap();
        assert!(app.store.news_choice_of(user.id).await.unwrap().is_none());
        let forged = browser.post(app.url("/account/email")).form(&[("csrf", "wrong"), ("news", "yes")]).send().await.unwrap();
        assert_eq!(forged.status(), 403, "the form is CSRF-checked");
        let response = browser.post(app.url("/account/email"))
            .form(&[("csrf", csrf_of(&page).as_str()), ("news", "yes")]).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let choice = app.store.news_choice_of(user.id).await.unwrap().unwrap();
        assert_eq!((choice.subscribed, choice.method.as_str()), (1, "account_page"));
        assert!(choice.recorded_at > 0);
        let (_, queued) = app.state.news.send("News", "Body", covenant::now()).await.unwrap();
        assert_eq!(queued, 1);
        let (_, again) = app.state.news.send("News", "Body", covenant::now()).await.unwrap();
        assert_eq!(again, 0, "the same newsletter is never queued twice for a member");
    }
}

/// No mail worker runs in this server: the test alone claims and delivers, so a worker's first
/// round, however late a loaded machine starts it, cannot take the test's messages.
async fn quiet_app(backend: common::Backend) -> Option<common::TestApp> {
    common::spawn_app_with(backend, |config| config.mail.worker = false).await
}

/// Proves: F6
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_send_and_mark_neither_loses_nor_duplicates_news_on_sqlite() {
    let app = quiet_app(common::Backend::Sqlite).await.unwrap();
    crash_between_send_and_mark(&app).await;
    app.stop().await;
}

/// Proves: F6
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_send_and_mark_neither_loses_nor_duplicates_news_on_postgres() {
    let Some(app) = quiet_app(common::Backend::Postgres).await else {
        return;
    };
    crash_between_send_and_mark(&app).await;
    app.stop().await;
}

async fn crash_between_send_and_mark(app: &common::TestApp) {
    // This server runs no mail worker: the test alone claims and delivers.
    let policy = app.state.policy.current().await.unwrap();
    app.state
        .accounts
        .register(
            &covenant::accounts::Registration {
                username: "sub",
                email: "sub@example.org",
                password: "a long enough password",
                birth_year: "1990",
                country: "GB",
                us_state: "",
                birth_date: "",
                parent_email: "",
                news: true,
                client_ip: "",
            },
            &policy.policy,
        )
        .await
        .unwrap();
    // The verification mail goes first, so that only the newsletter is left to claim.
    assert_eq!(app.state.mailer.deliver_due().await.unwrap(), 1);
    assert_eq!(app.store.count_unsent_mail().await.unwrap(), 0);
    let (_, queued) = app
        .state
        .news
        .send("Crash news", "Body", covenant::now())
        .await
        .unwrap();
    assert_eq!(queued, 1);

    // A worker claims the message, transmits it, and dies before marking it sent; its lease
    // (already lapsed here) expires.
    let now = covenant::now();
    let claimed = app.store.claim_due_mail(now, now - 1, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    app.state.mailer.transmit(&claimed[0]).await.unwrap();
    assert_eq!(
        app.store.count_unsent_mail().await.unwrap(),
        1,
        "not marked"
    );

    // The next worker round (a restart) sends it again: not lost...
    assert_eq!(app.state.mailer.deliver_due().await.unwrap(), 1);
    assert_eq!(app.store.count_unsent_mail().await.unwrap(), 0);
    // ...and not duplicated: the same file name and Message-ID were written once.
    let files: Vec<_> = std::fs::read_dir(app.data_dir.path().join("mail"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|name| name.ends_with(".eml"))
        .collect();
    let news = app.mail_to("sub@example.org");
    let news: Vec<_> = news.iter().filter(|m| m.contains("Crash news")).collect();
    assert_eq!(news.len(), 1, "one file for the message: {files:?}");
    assert!(header(news[0], "Message-ID").is_some());
    // Another round, and queueing the same newsletter again, add nothing.
    assert_eq!(app.state.mailer.deliver_due().await.unwrap(), 0);
    let (_, queued) = app
        .state
        .news
        .send("Crash news", "Body", covenant::now())
        .await
        .unwrap();
    assert_eq!(queued, 0);
}

on_both_stores! {
    /// Proves: M1
    async fn a_twelve_year_old_is_refused_and_nothing_typed_is_kept(app) {
        let form = app.page(&app.client, "/register").await;
        let twelve = year_of_age(12).to_string();
        let response = app.client.post(app.url("/register"))
            .form(&[("csrf", csrf_of(&form).as_str()), ("username", "tiny_tim"), ("email", "tim@example.org"),
                    ("password", "a long enough password"), ("birth_year", twelve.as_str()), ("country", "FR"),
                    ("parent_email", "mum@example.org")])
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let html = response.text().await.unwrap();
        assert!(html.contains("at least 13"), "{html}");
        for typed in ["tiny_tim", "tim@example.org", "mum@example.org", twelve.as_str()] {
            assert!(!html.contains(typed), "the page does not show back {typed}");
        }
        let (status, body) = register(app, "tiny_tom", json!({"birth_year": year_of_age(12), "country": "US", "us_state": "CA"})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["error"]["code"], "below_minimum_age");
        assert!(!body.to_string().contains("tiny_tom"));
        assert_eq!(app.store.count_users().await.unwrap(), 0, "no account");
        assert_eq!(app.store.count_unsent_mail().await.unwrap(), 0, "no mail to anyone");
        assert_eq!(app.store.audit_head().await.unwrap().0, 0, "not even an audit entry");
        assert!(app.mail_to("example.org").is_empty());
    }
}

on_both_stores! {
    /// Proves: M1
    async fn a_fourteen_year_old_in_france_waits_until_the_parent_follows_the_link(app) {
        let (status, body) = register(app, "lea", json!({"birth_year": year_of_age(14), "country": "FR"})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a parent's address is needed");
        assert!(body["error"]["fields"].as_array().unwrap().iter().any(|f| f["field"] == "parent_email"), "{body}");
        assert_eq!(app.store.count_users().await.unwrap(), 0);

        let (status, body) = register(app, "lea", json!({
            "birth_year": year_of_age(14), "country": "FR", "parent_email": "parent@example.org", "news": true,
        })).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["awaiting_parent"], true);
        let bearer = verify_and_sign_in(app, "lea").await;
        let (status, body) = post_topic(app, &bearer).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["error"]["code"], "parental_consent_pending");

        let mail = app.wait_for_mail("parent@example.org", "asks to join").await;
        let link = app.link_in(&mail);
        let path = link.trim_start_matches(&app.address).to_string();
        let parent = app.new_client();
        let page = app.page(&parent, &path).await;
        assert!(page.contains("lea") && page.contains("I consent"));
        assert_eq!(post_topic(app, &bearer).await.0, StatusCode::FORBIDDEN, "opening the link decides nothing");
        let forged = parent.post(app.url(&path)).form(&[("csrf", "forged")]).send().await.unwrap();
        assert_eq!(forged.status(), 403, "the consent form is CSRF-checked");
        let response = parent.post(app.url(&path)).form(&[("csrf", csrf_of(&page).as_str())]).send().await.unwrap();
        assert_eq!(response.status(), 303);

        let user = app.store.user_by_username("lea").await.unwrap().unwrap();
        let facts = app.store.age_facts_of(user.id).await.unwrap().unwrap();
        assert!(facts.parent_consented_at.is_some() && !facts.awaiting_parent());
        assert_eq!(facts.jurisdiction.as_deref(), Some("eu_eea"), "retention reads the same column");
        assert_eq!(facts.parent_allows_news, 0, "the parent did not tick product news");
        assert_eq!(post_topic(app, &bearer).await.0, StatusCode::CREATED);
        let again = parent.post(app.url(&path)).form(&[("csrf", csrf_of(&page).as_str())]).send().await.unwrap();
        assert_eq!(again.status(), 400, "the link works once");
        let (_, queued) = app.state.news.send("News", "Body", covenant::now()).await.unwrap();
        assert_eq!(queued, 0, "a minor gets no product news without the parent's leave");
    }
}

on_both_stores! {
    /// Proves: M1, C4
    async fn a_fourteen_year_old_in_california_is_admitted_but_never_sold_or_shared(app) {
        let (status, body) = register(app, "sam", json!({
            "birth_year": year_of_age(14), "country": "US", "us_state": "CA", "news": true,
        })).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["awaiting_parent"], false);
        let bearer = verify_and_sign_in(app, "sam").await;
        assert_eq!(post_topic(app, &bearer).await.0, StatusCode::CREATED);
        let answer: Value = app.client.post(app.url("/api/v1/consent/choices")).bearer_auth(&bearer)
            .json(&json!({"category": "advertising", "choice": "granted"})).send().await.unwrap().json().await.unwrap();
        assert_eq!((answer["allowed"].clone(), answer["reason"].clone()), (json!(false), json!("minor_under_16")));
        let (_, queued) = app.state.news.send("News", "Body", covenant::now()).await.unwrap();
        assert_eq!(queued, 0, "no product news to a known minor");
    }
}

on_both_stores! {
    /// Proves: M1
    async fn a_birth_year_on_the_threshold_asks_for_the_date_and_keeps_only_the_year(app) {
        let year = year_of_age(13);
        let (status, body) = register(app, "edge", json!({"birth_year": year, "country": "GB"})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body["error"]["fields"].as_array().unwrap().iter().any(|f| f["field"] == "birth_date"), "{body}");
        let (status, body) = register(app, "edge", json!({"birth_year": year, "country": "GB", "birth_date": format!("{year}-01-01")})).await;
        assert_eq!(status, 201, "{body}");
        let user = app.store.user_by_username("edge").await.unwrap().unwrap();
        assert_eq!(user.birth_year, i64::from(year));
    }
}

on_both_stores! {
    /// Proves: F6
    async fn feedback_is_published_only_with_the_senders_agreement(app) {
        app.member("fay").await;
        let browser = app.new_client();
        let page = app.page(&browser, "/sign-in").await;
        browser.post(app.url("/sign-in"))
            .form(&[("csrf", csrf_of(&page).as_str()), ("login", "fay"), ("password", "a long enough password")])
            .send().await.unwrap();
        let form = app.page(&browser, "/feedback").await;
        assert!(form.contains("name=\"may_publish\" value=\"yes\">"), "never pre-ticked");
        for (body, publish, name) in [("Private note", false, false), ("Publish me anonymously", true, false), ("Publish me with my name", true, true)] {
            let mut fields = vec![("csrf", csrf_of(&form)), ("body", body.to_string())];
            if publish { fields.push(("may_publish", "yes".into())); }
            if name { fields.push(("may_name", "yes".into())); }
            let response = browser.post(app.url("/feedback")).form(&fields).send().await.unwrap();
            assert_eq!(response.status(), 200);
        }
        let forged = browser.post(app.url("/feedback")).form(&[("csrf", "x"), ("body", "y")]).send().await.unwrap();
        assert_eq!(forged.status(), 403);

        let staff = covenant::forum::Actor {
            user_id: app.store.user_by_username("fay").await.unwrap().unwrap().id,
            role: covenant::domain::Role::Administrator,
            email_verified: true,
            two_factor: true,
            awaiting_parent: false,
        };
        let rows = app.state.feedback.for_staff(&staff).await.unwrap();
        assert_eq!(rows.len(), 3);
        for row in &rows {
            let result = app.state.feedback.publish(&staff, row.id).await;
            assert_eq!(result.is_ok(), row.may_publish == 1, "{}", row.body);
        }
        let public = app.page(&app.new_client(), "/feedback/published").await;
        assert!(!public.contains("Private note"), "refused without agreement");
        assert!(public.contains("Publish me anonymously") && public.contains("Publish me with my name"));
        assert_eq!(public.matches("fay,").count(), 1, "the username shows only where agreed");
    }
}

/// Proves: F6
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn covenant_news_send_queues_once_per_subscriber_from_the_command_line() {
    let app = common::spawn_app(common::Backend::Sqlite).await.unwrap();
    let (status, _) = register(&app, "cli_reader", json!({"news": true})).await;
    assert_eq!(status, 201);
    let body_file = app.data_dir.path().join("news.txt");
    std::fs::write(&body_file, "Line one.\nLine two.\n").unwrap();
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_covenant"))
            .args(["news", "send", "--subject", "From the CLI", "--body-file"])
            .arg(&body_file)
            .arg("--data-dir")
            .arg(app.data_dir.path())
            .env_remove("COVENANT_DATABASE_URL")
            .output()
            .unwrap()
    };
    let first = run();
    let said = String::from_utf8_lossy(&first.stdout).to_string();
    assert!(
        first.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(said.contains("1 messages queued"), "{said}");
    let second = run();
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("0 messages queued"),
        "a re-run sends nothing twice"
    );
    app.state.mailer.wake();
    let mail = app
        .wait_for_mail("cli_reader@example.org", "From the CLI")
        .await;
    assert!(mail.contains("Line two.") && mail.contains("List-Unsubscribe-Post"));
    app.stop().await;
}
