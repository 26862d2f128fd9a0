//! The cache of visitors' pages (issue 10), on both stores: a write made through this node
//! shows on the next visitor's page at once (a reply, an edit, a deletion, a moderator hiding a
//! post, an erasure, a sweep batch), visitors with different consent, GPC or theme never share
//! a page, members never get a cached page, and a page from the cache is still a counted view.
//!
//! Entries live a minute here (the longest allowed), so what these tests see comes from the
//! write generation, never from an entry that happened to expire.

mod common;

use common::csrf_of;
use covenant::retention::SweepOptions;
use covenant_core::retention::ClosureReason;
use reqwest::StatusCode;
use time::OffsetDateTime;

fn cached(config: &mut covenant::Config) {
    config.page_cache.seconds = 60;
}

async fn post_topic(app: &common::TestApp, bearer: &str, title: &str, body: &str) -> String {
    let response = app
        .client
        .post(app.url("/api/v1/topics"))
        .bearer_auth(bearer)
        .json(&serde_json::json!({"category": "general", "title": title, "body": body}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: serde_json::Value = response.json().await.unwrap();
    created["url"]
        .as_str()
        .unwrap()
        .strip_prefix(&app.address)
        .unwrap()
        .to_string()
}

async fn reply(app: &common::TestApp, bearer: &str, topic_path: &str, body: &str) -> i64 {
    let topic = topic_path.rsplit('/').next().unwrap();
    let response = app
        .client
        .post(app.url(&format!("/api/v1/topics/{topic}/posts")))
        .bearer_auth(bearer)
        .json(&serde_json::json!({"body": body}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: serde_json::Value = response.json().await.unwrap();
    created["post_id"].as_i64().unwrap()
}

/// Fetches `path` twice as the same visitor and checks the second answer came from the cache
/// and is the same page; returns it.
async fn cached_page(app: &common::TestApp, visitor: &reqwest::Client, path: &str) -> String {
    let first = app.page(visitor, path).await;
    let hits = app.state.page_cache.hits();
    let second = app.page(visitor, path).await;
    assert_eq!(
        app.state.page_cache.hits(),
        hits + 1,
        "{path} came from the cache"
    );
    assert_eq!(strip_token(&first), strip_token(&second));
    second
}

/// The page without its visitors' form tokens (dated to the second).
fn strip_token(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part.to_string()
            } else {
                part.split_once('"').unwrap().1.to_string()
            }
        })
        .collect()
}

async fn signed_in_browser(app: &common::TestApp, login: &str) -> reqwest::Client {
    let browser = app.new_client();
    let page = app.page(&browser, "/sign-in").await;
    let response = browser
        .post(app.url("/sign-in"))
        .form(&[
            ("csrf", csrf_of(&page).as_str()),
            ("login", login),
            ("password", "a long enough password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    browser
}

async fn choose(app: &common::TestApp, browser: &reqwest::Client, choice: &str) {
    let home = app.page(browser, "/").await;
    let response = browser
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
}

on_both_stores! {
    /// A visitor's cached topic page, topic list and category page show a new reply, an edit
    /// and a deletion on the very next request after the write.
    /// Proves: R8
    async fn visitors_see_replies_edits_and_deletions_at_once(app) where config: cached; {
        let ann = app.member("ann").await;
        let visitor = app.new_client();
        let path = post_topic(app, &ann, "Bees in winter", "How do they keep warm").await;
        let page = cached_page(app, &visitor, &path).await;
        assert!(page.contains("How do they keep warm"));
        assert!(cached_page(app, &visitor, "/").await.contains("Bees in winter"));
        assert!(cached_page(app, &visitor, "/c/general").await.contains("Bees in winter"));

        let post = reply(app, &ann, &path, "They shiver their wing muscles").await;
        assert!(app.page(&visitor, &path).await.contains("They shiver their wing muscles"));
        let page = cached_page(app, &visitor, &path).await;
        assert!(page.contains("They shiver their wing muscles"));

        let response = app.client.patch(app.url(&format!("/api/v1/posts/{post}")))
            .bearer_auth(&ann)
            .json(&serde_json::json!({"body": "They cluster and shiver"}))
            .send().await.unwrap();
        assert_eq!(response.status(), 200);
        let page = app.page(&visitor, &path).await;
        assert!(page.contains("They cluster and shiver") && !page.contains("wing muscles"));
        cached_page(app, &visitor, &path).await;

        let response = app.client.delete(app.url(&format!("/api/v1/posts/{post}")))
            .bearer_auth(&ann)
            .send().await.unwrap();
        assert_eq!(response.status(), 200);
        let page = app.page(&visitor, &path).await;
        assert!(!page.contains("They cluster and shiver"));
        assert!(page.contains("This post was deleted by its author."));

        // A new topic shows on the list and its category at once.
        cached_page(app, &visitor, "/").await;
        post_topic(app, &ann, "Wax moths", "A pest of weak colonies").await;
        assert!(app.page(&visitor, "/").await.contains("Wax moths"));
        assert!(app.page(&visitor, "/c/general").await.contains("Wax moths"));
    }
}

on_both_stores! {
    /// A member who asks to be deleted from their privacy page is erased at once, and a
    /// visitor's cached pages stop naming them on the next request.
    /// Proves: R8
    async fn an_erased_members_name_leaves_cached_pages_at_once(app) where config: cached; {
        let zed = app.member("zedkowski").await;
        let path = post_topic(app, &zed, "Queen rearing", "Graft larvae at one day").await;
        let visitor = app.new_client();
        assert!(cached_page(app, &visitor, &path).await.contains("zedkowski"));
        assert!(cached_page(app, &visitor, "/").await.contains("zedkowski"));
        let browser = signed_in_browser(app, "zedkowski").await;
        let page = app.page(&browser, "/account/privacy?jurisdiction=eu_eea").await;
        let response = browser.post(app.url("/account/privacy/requests"))
            .form(&[("csrf", csrf_of(&page).as_str()), ("right", "deletion"), ("jurisdiction", "eu_eea")])
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert!(app.store.user_by_username("zedkowski").await.unwrap().is_none(), "erased at once");
        let page = app.page(&visitor, &path).await;
        assert!(!page.contains("zedkowski"), "the name is gone from the topic page");
        assert!(!app.page(&visitor, "/").await.contains("zedkowski"), "and from the list");
    }
}

on_both_stores! {
    /// An erasure by the request job or the sweep, which no HTTP request carries, makes cached
    /// pages stale too: the sweep's batches end with the same hook the schedule uses.
    /// Proves: T1
    async fn a_sweep_anonymization_shows_on_cached_pages_at_once(app) where config: cached; {
        let old = app.member("oldtimer").await;
        let path = post_topic(app, &old, "Swarm season", "Watch for queen cells").await;
        let id = app.store.user_by_username("oldtimer").await.unwrap().unwrap().id;
        assert!(app.state.retention
            .close_account(id, ClosureReason::ByMember, Some(id)).await.unwrap());
        let visitor = app.new_client();
        assert!(cached_page(app, &visitor, &path).await.contains("oldtimer"));
        let verdicts = app.state.retention.verdicts_of(id, OffsetDateTime::now_utc()).await.unwrap();
        let (_, username) = verdicts.iter()
            .find(|(category, _)| *category == "user.account.username").unwrap();
        let remove_on = username.remove_on.expect("a closed account has a removal day");
        let options = SweepOptions {
            now: remove_on.midnight().assume_utc(),
            dry_run: false,
            batch_size: 100,
            stop_after_batches: None,
        };
        app.state.retention.sweep(&options, &app.state.page_cache.after_batch()).await.unwrap();
        let page = app.page(&visitor, &path).await;
        assert!(!page.contains("oldtimer"), "anonymized on the cached page at once");
        assert!(page.contains("Watch for queen cells"));
    }
}

on_both_stores! {
    /// Visitors with another consent choice, GPC or theme never get one another's page: the
    /// banner only to those who have not chosen, the analytics tag only where it was granted,
    /// the GPC sentence only with the signal, the dark theme only to the one who chose it.
    /// Proves: C1, C2
    async fn visitors_with_other_choices_never_share_a_cached_page(app) where config: cached; {
        let ann = app.member("ann").await;
        let path = post_topic(app, &ann, "Mead", "Honey, water, patience").await;
        let undecided = app.new_client();
        let accepted = app.new_client();
        choose(app, &accepted, "accept_all").await;
        let rejected = app.new_client();
        choose(app, &rejected, "reject_all").await;
        let dark = app.new_client();
        choose(app, &dark, "accept_all").await;
        let home = app.page(&dark, "/").await;
        let response = dark.post(app.url("/preferences/theme"))
            .form(&[("csrf", csrf_of(&home).as_str()), ("theme", "dark"), ("return_to", "/")])
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let gpc = app.new_client();
        for round in 0..2 {
            let page = app.page(&undecided, &path).await;
            assert!(page.contains("id=\"consent-banner\"") && !page.contains("analytics.js"), "round {round}");
            assert!(!page.contains("id=\"banner-gpc\"") && !page.contains("data-theme"));
            let page = app.page(&accepted, &path).await;
            assert!(!page.contains("id=\"consent-banner\"") && page.contains("analytics.js"), "round {round}");
            assert!(!page.contains("data-theme"));
            let page = app.page(&rejected, &path).await;
            assert!(!page.contains("id=\"consent-banner\"") && !page.contains("analytics.js"), "round {round}");
            let page = app.page(&dark, &path).await;
            assert!(page.contains("data-theme=\"dark\"") && page.contains("analytics.js"), "round {round}");
            let response = gpc.get(app.url(&path)).header("sec-gpc", "1").send().await.unwrap();
            let page = response.text().await.unwrap();
            assert!(page.contains("id=\"banner-gpc\"") && !page.contains("advertising.js"), "round {round}");
            // Without the signal the same browser gets the page without the sentence.
            let page = app.page(&gpc, &path).await;
            assert!(!page.contains("id=\"banner-gpc\""), "round {round}");
            // A query string is another page, whose forms return to it.
            let page = app.page(&undecided, &format!("{path}?from=list")).await;
            assert!(page.contains(&format!("value=\"{path}?from=list\"")), "round {round}");
        }
        assert!(app.state.page_cache.hits() >= 7, "the second round came from the cache");
    }
}

on_both_stores! {
    /// A signed-in member never gets a visitor's cached page, nor does their page enter the
    /// cache: they see their own name, forms and reply box.
    /// Proves: R8
    async fn members_never_get_a_cached_page(app) where config: cached; {
        let ann = app.member("annabel").await;
        app.member("bertrand").await;
        let path = post_topic(app, &ann, "Smoker fuel", "Pine needles burn cool").await;
        let visitor = app.new_client();
        cached_page(app, &visitor, &path).await;
        let bert = signed_in_browser(app, "bertrand").await;
        let hits = app.state.page_cache.hits();
        for _ in 0..2 {
            let page = app.page(&bert, &path).await;
            assert!(page.contains("href=\"/u/bertrand\"") && page.contains("Sign out"));
            assert!(page.contains("id=\"body\""), "the reply box");
            let page = app.page(&bert, "/").await;
            assert!(page.contains("href=\"/u/bertrand\""));
        }
        assert_eq!(app.state.page_cache.hits(), hits, "no member's request was a hit");
        let page = app.page(&visitor, &path).await;
        assert!(!page.contains("bertrand") && !page.contains("Sign out"));
    }
}

on_both_stores! {
    /// A topic page answered from the cache is counted in the visitor statistics like a
    /// rendered one (with analytics consent only).
    /// Proves: F2
    async fn cached_topic_pages_are_still_counted_views(app) where config: cached; {
        let ann = app.member("ann").await;
        let path = post_topic(app, &ann, "Frames", "Deep or shallow").await;
        let topic_id: i64 = path.rsplit('/').next().unwrap().parse().unwrap();
        let consenting = app.new_client();
        choose(app, &consenting, "accept_all").await;
        let refusing = app.new_client();
        choose(app, &refusing, "reject_all").await;
        app.state.visits.flush().await.unwrap();
        let hits = app.state.page_cache.hits();
        for _ in 0..4 {
            app.page(&consenting, &path).await;
            app.page(&refusing, &path).await;
        }
        assert!(app.state.page_cache.hits() >= hits + 6, "most views came from the cache");
        app.state.visits.flush().await.unwrap();
        let views: i64 = app.store.popular_topics("2000-01-01", 0, 100).await.unwrap()
            .into_iter().filter(|t| t.topic_id == topic_id).map(|t| t.views).sum();
        assert_eq!(views, 4, "every consenting view counted, cached or not; no refusing one");
    }
}

on_both_stores! {
    /// A moderator hides a post: the visitor's cached page loses its text on the next request.
    /// Proves: R8
    async fn a_post_hidden_by_a_moderator_leaves_cached_pages_at_once(app) where config: cached; {
        let ann = app.member("ann").await;
        let path = post_topic(app, &ann, "Varroa", "Count mites after a sugar roll").await;
        let post = reply(app, &ann, &path, "Buy my miracle cure now").await;
        let visitor = app.new_client();
        assert!(cached_page(app, &visitor, &path).await.contains("miracle cure"));
        app.member("warden").await;
        let id = app.store.user_by_username("warden").await.unwrap().unwrap().id;
        app.state.accounts.set_role(id, covenant::domain::Role::Moderator).await.unwrap();
        let setup = app.state.accounts.two_factor_setup(id, "warden").await.unwrap();
        let step = common::settled_totp_step().await;
        app.state.accounts
            .enable_two_factor(id, &common::totp_code(&setup.secret, step - 1)).await.unwrap();
        let moderator = app.new_client();
        let form = app.page(&moderator, "/sign-in").await;
        let response = moderator.post(app.url("/sign-in"))
            .form(&[("csrf", csrf_of(&form).as_str()), ("login", "warden"),
                ("password", "a long enough password"), ("code", &common::totp_code(&setup.secret, step))])
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let page = app.page(&moderator, &path).await;
        let response = moderator.post(app.url(&format!("/posts/{post}/hide")))
            .form(&[("csrf", csrf_of(&page).as_str())])
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let page = app.page(&visitor, &path).await;
        assert!(!page.contains("miracle cure") && page.contains("This post was hidden by a moderator."));
    }
}
