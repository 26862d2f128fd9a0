//! A member's whole path through the forum, in a browser's way (forms and cookies) and through
//! the JSON API, on both stores.

mod common;

use common::csrf_of;
use reqwest::StatusCode;

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_string()
}

on_both_stores! {
    /// Proves: F1, F3, F4
    async fn a_member_registers_verifies_posts_replies_edits_and_deletes_through_pages(app) {
        let browser = &app.client;
        let form = app.page(browser, "/register").await;
        assert!(form.contains("Birth year"), "registration asks for the birth year");
        let response = browser
            .post(app.url("/register"))
            .form(&[("csrf", csrf_of(&form).as_str()), ("username", "ada"), ("email", "ada@example.org"),
                    ("password", "a long enough password"), ("birth_year", "1990"), ("country", "GB")])
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.text().await.unwrap().contains("Check your email"));

        let mail = app.wait_for_mail("ada@example.org", "Confirm your email").await;
        let link = app.link_in(&mail);
        let path = link.strip_prefix(&app.address).unwrap().to_string();
        let confirm = app.page(browser, &path).await;
        let response = browser.post(app.url(&path)).form(&[("csrf", csrf_of(&confirm))]).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.text().await.unwrap().contains("confirmed"));
        // The link works once.
        let again = browser.post(app.url(&path)).form(&[("csrf", csrf_of(&confirm))]).send().await.unwrap();
        assert_eq!(again.status(), StatusCode::BAD_REQUEST);

        let sign_in = app.page(browser, "/sign-in").await;
        let response = browser
            .post(app.url("/sign-in"))
            .form(&[("csrf", csrf_of(&sign_in).as_str()), ("login", "ada@example.org"), ("password", "a long enough password")])
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let cookie = response.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");

        let new_topic = app.page(browser, "/new-topic?category=general").await;
        let response = browser
            .post(app.url("/new-topic"))
            .header("user-agent", "FlowTest/1.0")
            .form(&[("csrf", csrf_of(&new_topic).as_str()), ("category", "general"), ("title", "Pairing a door sensor"),
                    ("body", "It **will not** pair. [docs](https://example.org/docs)")])
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let topic_path = location(&response);
        assert!(topic_path.starts_with("/t/pairing-a-door-sensor/"), "{topic_path}");

        let topic = app.page(browser, &topic_path).await;
        assert!(topic.contains("<strong>will not</strong>"));
        assert!(topic.contains("rel=\"nofollow ugc noopener\""));
        let response = browser
            .post(app.url(&format!("{topic_path}/reply")))
            .form(&[("csrf", csrf_of(&topic).as_str()), ("body", "Fixed it: reset the hub first.")])
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert!(location(&response).ends_with("#post-2"));

        let topic = app.page(browser, &topic_path).await;
        assert!(topic.contains("reset the hub first"));
        let visitor = app.new_client();
        let public = app.page(&visitor, &topic_path).await;
        assert!(public.contains("reset the hub first"), "visitors read without an account");

        // Edit the reply.
        let reply_id: i64 = {
            let marker = "/posts/";
            let edits: Vec<i64> = topic.match_indices(marker)
                .filter_map(|(i, _)| topic[i + marker.len()..].split('/').next()?.parse().ok())
                .collect();
            *edits.iter().max().unwrap()
        };
        let edit = app.page(browser, &format!("/posts/{reply_id}/edit")).await;
        let response = browser
            .post(app.url(&format!("/posts/{reply_id}/edit")))
            .form(&[("csrf", csrf_of(&edit).as_str()), ("body", "Fixed it: power-cycle the hub first.")])
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let topic = app.page(browser, &topic_path).await;
        assert!(topic.contains("power-cycle the hub") && !topic.contains("reset the hub first"));
        assert!(topic.contains("edited"));

        // Delete it.
        let response = browser
            .post(app.url(&format!("/posts/{reply_id}/delete")))
            .form(&[("csrf", csrf_of(&topic))])
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let topic = app.page(&visitor, &topic_path).await;
        assert!(!topic.contains("power-cycle the hub"));
        assert!(topic.contains("deleted by its author"));

        // The post's IP address and user agent were recorded with it; the deleted one's are gone.
        let post = app.store.posts_of_topic(topic_path.rsplit('/').next().unwrap().parse().unwrap(), 20, 0).await.unwrap();
        assert_eq!(post.len(), 2);

        // Sign out ends the session.
        let home = app.page(browser, "/").await;
        let response = browser.post(app.url("/sign-out")).form(&[("csrf", csrf_of(&home))]).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let home = app.page(browser, "/").await;
        assert!(home.contains("Sign in"));
    }
}

on_both_stores! {
    /// Proves: F4
    async fn a_member_does_the_same_through_the_json_api(app) {
        let token = app.member("grace").await;
        let api = &app.client;
        let me: serde_json::Value = api.get(app.url("/api/v1/me")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        assert_eq!(me["username"], "grace");
        assert_eq!(me["email_verified"], true);

        let response = api.post(app.url("/api/v1/topics")).bearer_auth(&token)
            .json(&serde_json::json!({"category": "general", "title": "Hello from the API", "body": "First *post*"}))
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let created: serde_json::Value = response.json().await.unwrap();
        let topic_id = created["topic_id"].as_i64().unwrap();

        let response = api.post(app.url(&format!("/api/v1/topics/{topic_id}/posts"))).bearer_auth(&token)
            .json(&serde_json::json!({"body": "A reply"})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let reply: serde_json::Value = response.json().await.unwrap();
        assert_eq!(reply["post_number"], 2);
        let reply_id = reply["post_id"].as_i64().unwrap();

        let response = api.patch(app.url(&format!("/api/v1/posts/{reply_id}"))).bearer_auth(&token)
            .json(&serde_json::json!({"body": "An edited reply"})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let edited: serde_json::Value = response.json().await.unwrap();
        assert_eq!(edited["body_md"], "An edited reply");
        assert!(edited["edited_at"].is_i64());

        let topic: serde_json::Value = api.get(app.url(&format!("/api/v1/topics/{topic_id}"))).send().await.unwrap().json().await.unwrap();
        assert_eq!(topic["posts"].as_array().unwrap().len(), 2);
        assert_eq!(topic["posts"][0]["body_html"], "<p>First <em>post</em></p>\n");

        // Someone else may not edit or delete it.
        let other = app.member("linus").await;
        let response = api.delete(app.url(&format!("/api/v1/posts/{reply_id}"))).bearer_auth(&other).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "forbidden");

        let response = api.delete(app.url(&format!("/api/v1/posts/{reply_id}"))).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let topic: serde_json::Value = api.get(app.url(&format!("/api/v1/topics/{topic_id}"))).send().await.unwrap().json().await.unwrap();
        assert_eq!(topic["posts"][1]["body_md"], "");
        assert!(topic["posts"][1]["deleted_at"].is_i64());

        // Signing out revokes the token.
        let response = api.delete(app.url("/api/v1/session")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let response = api.get(app.url("/api/v1/me")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
}

on_both_stores! {
    /// Proves: F1, C1
    async fn visitors_browse_every_public_page_without_getting_a_cookie(app) {
        let token = app.member("hopper").await;
        let created: serde_json::Value = app.client.post(app.url("/api/v1/topics")).bearer_auth(&token)
            .json(&serde_json::json!({"category": "general", "title": "Public topic", "body": "Readable by all"}))
            .send().await.unwrap().json().await.unwrap();
        let topic_url = created["url"].as_str().unwrap().strip_prefix(&app.address).unwrap().to_string();
        let visitor = reqwest::Client::new();
        for path in ["/", "/c/general", topic_url.as_str(), "/u/hopper", "/blog", "/privacy", "/cookie-settings",
                     "/privacy-choices", "/register", "/sign-in", "/static/style.css", "/api/v1/categories"] {
            let response = visitor.get(app.url(path)).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert!(response.headers().get("set-cookie").is_none(), "{path} set a cookie for a visitor");
        }
        let home = visitor.get(app.url("/")).send().await.unwrap().text().await.unwrap();
        for link in ["href=\"/privacy\"", "href=\"/cookie-settings\"", "href=\"/privacy-choices\""] {
            assert!(home.contains(link), "the footer links {link}");
        }
    }
}

on_both_stores! {
    /// Proves: F4
    async fn moderators_hide_posts_and_staff_write_blog_articles_that_take_comments(app) {
        let author = app.member("writer").await;
        let moderator = app.member("warden").await;
        let user = app.store.user_by_username("warden").await.unwrap().unwrap();
        app.store.set_role(user.id, "moderator").await.unwrap();
        // Staff act only with 2-step verification on.
        let setup = app.state.accounts.two_factor_setup(user.id, "warden").await.unwrap();
        let code = covenant::two_factor::code_at(&setup.secret, covenant::now()).unwrap();
        app.state.accounts.enable_two_factor(user.id, &code).await.unwrap();
        let api = &app.client;

        // Members may not write blog articles.
        let response = api.post(app.url("/api/v1/blog")).bearer_auth(&author)
            .json(&serde_json::json!({"title": "News", "body": "Hi"})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);

        let response = api.post(app.url("/api/v1/blog")).bearer_auth(&moderator)
            .json(&serde_json::json!({"title": "Release notes", "body": "Version 2 is out."})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let article: serde_json::Value = response.json().await.unwrap();
        assert!(article["url"].as_str().unwrap().ends_with("/blog/release-notes"));

        let response = api.post(app.url("/api/v1/blog/release-notes/comments")).bearer_auth(&author)
            .json(&serde_json::json!({"body": "Spam spam spam"})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let comment: serde_json::Value = response.json().await.unwrap();
        let comment_id = comment["post_id"].as_i64().unwrap();
        let page = app.page(&app.new_client(), "/blog/release-notes").await;
        assert!(page.contains("Version 2 is out.") && page.contains("Spam spam spam"));

        // A member cannot hide; a moderator can, and visitors then see no text.
        let response = api.post(app.url(&format!("/api/v1/posts/{comment_id}/hide"))).bearer_auth(&author).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let response = api.post(app.url(&format!("/api/v1/posts/{comment_id}/hide"))).bearer_auth(&moderator).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let page = app.page(&app.new_client(), "/blog/release-notes").await;
        assert!(!page.contains("Spam spam spam") && page.contains("hidden by a moderator"));
        let blog: serde_json::Value = api.get(app.url("/api/v1/blog/release-notes")).send().await.unwrap().json().await.unwrap();
        assert_eq!(blog["posts"][1]["body_md"], "");
        let response = api.post(app.url(&format!("/api/v1/posts/{comment_id}/unhide"))).bearer_auth(&moderator).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let page = app.page(&app.new_client(), "/blog/release-notes").await;
        assert!(page.contains("Spam spam spam"));
    }
}

on_both_stores! {
    /// Proves: F6, R3, A4
    async fn a_forgotten_password_is_reset_by_emailed_link_and_old_sessions_end(app) {
        let old_token = app.member("turing").await;
        let response = app.client.post(app.url("/api/v1/password-reset"))
            .json(&serde_json::json!({"email": "turing@example.org"})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        // An unknown address gets the very same answer.
        let unknown = app.client.post(app.url("/api/v1/password-reset"))
            .json(&serde_json::json!({"email": "nobody@example.org"})).send().await.unwrap();
        assert_eq!(unknown.status(), StatusCode::ACCEPTED);
        assert_eq!(unknown.text().await.unwrap(), response.text().await.unwrap());

        let mail = app.wait_for_mail("turing@example.org", "Reset your password").await;
        let link = app.link_in(&mail);
        let path = link.strip_prefix(&app.address).unwrap().to_string();
        let browser = app.new_client();
        let form = app.page(&browser, &path).await;
        let response = browser.post(app.url(&path))
            .form(&[("csrf", csrf_of(&form).as_str()), ("password", "a brand new passphrase")])
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let response = app.client.get(app.url("/api/v1/me")).bearer_auth(&old_token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "old sessions end");
        let response = app.client.post(app.url("/api/v1/session"))
            .json(&serde_json::json!({"login": "turing", "password": "a brand new passphrase"})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        // The link cannot be used twice.
        let response = browser.get(app.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
}

on_both_stores! {
    /// Proves: F4
    async fn long_topics_are_paginated_and_replies_land_on_their_page(app) {
        let token = app.member("talker").await;
        let created: serde_json::Value = app.client.post(app.url("/api/v1/topics")).bearer_auth(&token)
            .json(&serde_json::json!({"category": "general", "title": "A long talk", "body": "Post number 1"}))
            .send().await.unwrap().json().await.unwrap();
        let id = created["topic_id"].as_i64().unwrap();
        for n in 2..=25 {
            let response = app.client.post(app.url(&format!("/api/v1/topics/{id}/posts"))).bearer_auth(&token)
                .json(&serde_json::json!({"body": format!("Post number {n}")})).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::CREATED);
        }
        let path = format!("/t/a-long-talk/{id}");
        let first = app.page(&app.client, &path).await;
        assert!(first.contains("Post number 20") && !first.contains("Post number 21"));
        assert!(first.contains("Page 1 of 2") && first.contains("?page=2"));
        let second = app.page(&app.client, &format!("{path}?page=2")).await;
        assert!(second.contains("Post number 25") && !second.contains("Post number 20<"));
        let response = app.client.get(app.url(&format!("{path}?page=3"))).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let api: serde_json::Value = app.client.get(app.url(&format!("/api/v1/topics/{id}?page=2"))).send().await.unwrap().json().await.unwrap();
        assert_eq!(api["posts"].as_array().unwrap().len(), 5);
        // A wrong slug redirects to the right one.
        let response = app.client.get(app.url(&format!("/t/old-title/{id}"))).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
        // The profile lists the member's posts.
        let profile = app.page(&app.client, "/u/talker").await;
        assert!(profile.contains("25 posts") && profile.contains("A long talk"));
    }
}
