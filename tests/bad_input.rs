//! Bad input gets a clear 4xx in the format the caller speaks, and nothing half-written.

mod common;

use common::csrf_of;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn api_error(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let body: Value = response.json().await.expect("API errors are JSON");
    (status, body)
}

on_both_stores! {
    /// Proves: F1, M1
    async fn registration_refuses_each_bad_field_by_name_and_stores_nothing(app) {
        let cases = [
            (json!({"username": "x", "email": "a@example.org", "password": "a long enough password", "birth_year": 1990, "country": "GB"}), "username"),
            (json!({"username": "valid", "email": "not-an-email", "password": "a long enough password", "birth_year": 1990, "country": "GB"}), "email"),
            (json!({"username": "valid", "email": "a@example.org", "password": "short", "birth_year": 1990, "country": "GB"}), "password"),
            (json!({"username": "valid", "email": "a@example.org", "password": "a long enough password", "birth_year": "nineteen", "country": "GB"}), "birth_year"),
            (json!({"username": "valid", "email": "a@example.org", "password": "a long enough password", "birth_year": 1990}), "country"),
            (json!({"email": "a@example.org", "password": "a long enough password", "birth_year": 1990, "country": "GB"}), "username"),
        ];
        for (body, field) in cases {
            let (status, error) = api_error(app.client.post(app.url("/api/v1/users")).json(&body).send().await.unwrap()).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(error["error"]["code"], "invalid_input");
            assert!(error["error"]["fields"].as_array().unwrap().iter().any(|f| f["field"] == field), "{error}");
        }
        assert_eq!(app.store.count_users().await.unwrap(), 0);
        assert_eq!(app.store.count_unsent_mail().await.unwrap(), 0, "no verification mail was queued");

        // The form says the same, keeps what was typed (but not the password) and names the field.
        let form = app.page(&app.client, "/register").await;
        let response = app.client.post(app.url("/register"))
            .form(&[("csrf", csrf_of(&form).as_str()), ("username", "ok_name"), ("email", "nope"), ("password", "a long enough password"), ("birth_year", "1990"), ("country", "GB")])
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let html = response.text().await.unwrap();
        assert!(html.contains("<strong>email</strong> is not a valid email address"), "{html}");
        assert!(html.contains("value=\"ok_name\"") && !html.contains("a long enough password"));
    }
}

on_both_stores! {
    async fn duplicate_usernames_and_emails_are_refused_whatever_their_case(app) {
        app.member("alice").await;
        let (status, error) = api_error(app.client.post(app.url("/api/v1/users"))
            .json(&json!({"username": "ALICE", "email": "other@example.org", "password": "a long enough password", "birth_year": 1990, "country": "GB"}))
            .send().await.unwrap()).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(error["error"]["code"], "conflict");
        assert_eq!(error["error"]["fields"][0]["field"], "username");
        let (status, error) = api_error(app.client.post(app.url("/api/v1/users"))
            .json(&json!({"username": "alice2", "email": "Alice@Example.org", "password": "a long enough password", "birth_year": 1990, "country": "GB"}))
            .send().await.unwrap()).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(error["error"]["fields"][0]["field"], "email");
        assert!(!error.to_string().contains("Alice@Example.org"), "the error does not echo the address");
        assert_eq!(app.store.count_users().await.unwrap(), 1);
    }
}

on_both_stores! {
    async fn malformed_json_wrong_types_and_content_types_are_bad_requests(app) {
        for (body, content_type) in [("{not json", "application/json"), ("[1,2]", "application/json"), ("{}", "text/plain")] {
            let (status, error) = api_error(app.client.post(app.url("/api/v1/session"))
                .header("content-type", content_type).body(body).send().await.unwrap()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(error["error"]["code"], "bad_request");
        }
        let response = app.client.post(app.url("/sign-in")).header("content-type", "application/json").body("{}").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response.text().await.unwrap().contains("expected a form submission"));
    }
}

on_both_stores! {
    async fn invalid_utf8_is_refused_in_forms_and_json(app) {
        let form = app.page(&app.client, "/sign-in").await;
        let body = format!("csrf={}&login=%FF%FE&password=x", csrf_of(&form));
        let response = app.client.post(app.url("/sign-in"))
            .header("content-type", "application/x-www-form-urlencoded").body(body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response.text().await.unwrap().contains("not valid UTF-8"));

        let mut raw = b"{\"login\": \"".to_vec();
        raw.extend([0xff, 0xfe]);
        raw.extend(b"\", \"password\": \"x\"}");
        let (status, error) = api_error(app.client.post(app.url("/api/v1/session"))
            .header("content-type", "application/json").body(raw).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(error["error"]["code"], "bad_request");
    }
}

on_both_stores! {
    async fn oversized_bodies_are_refused_before_anything_is_written(app) {
        let token = app.member("big").await;
        let huge = "x".repeat(app.state.config.max_body_bytes + 1);
        let (status, error) = api_error(app.client.post(app.url("/api/v1/topics")).bearer_auth(&token)
            .json(&json!({"category": "general", "title": "Too big", "body": huge})).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(error["error"]["code"], "payload_too_large");
        // Under the byte limit but over the post limit: a field error.
        let long = "y".repeat(covenant::domain::PostBody::MAX_CHARS + 1);
        let (status, error) = api_error(app.client.post(app.url("/api/v1/topics")).bearer_auth(&token)
            .json(&json!({"category": "general", "title": "Too long", "body": long})).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error["error"]["fields"][0]["field"], "body");
        assert_eq!(app.store.count_topics("discussion", None).await.unwrap(), 0);

        let form = app.page(&app.client, "/sign-in").await;
        let response = app.client.post(app.url("/sign-in"))
            .form(&[("csrf", csrf_of(&form)), ("login", huge.clone())]).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(response.text().await.unwrap().contains("too large"));
    }
}

on_both_stores! {
    async fn unknown_ids_and_pages_answer_404_in_the_callers_format(app) {
        let token = app.member("seeker").await;
        for path in ["/t/nothing/999999", "/t/nothing/abc", "/c/nowhere", "/u/nobody", "/blog/nothing", "/posts/999/edit", "/no/such/page"] {
            let response = app.client.get(app.url(path)).bearer_auth(&token).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"), "{path}");
        }
        for path in ["/api/v1/topics/999999", "/api/v1/topics/abc", "/api/v1/categories/nowhere/topics", "/api/v1/users/nobody", "/api/v1/nothing"] {
            let (status, error) = api_error(app.client.get(app.url(path)).send().await.unwrap()).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(error["error"]["code"], "not_found");
        }
        let (status, _) = api_error(app.client.patch(app.url("/api/v1/posts/424242")).bearer_auth(&token)
            .json(&json!({"body": "x"})).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = api_error(app.client.post(app.url("/api/v1/topics/424242/posts")).bearer_auth(&token)
            .json(&json!({"body": "x"})).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, error) = api_error(app.client.post(app.url("/api/v1/topics")).bearer_auth(&token)
            .json(&json!({"category": "nowhere", "title": "Lost", "body": "x"})).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error["error"]["fields"][0]["field"], "category");
        let response = app.client.get(app.url("/?page=0")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
}

on_both_stores! {
    /// Proves: A4
    async fn forms_without_a_valid_token_or_from_another_site_are_refused(app) {
        let token_page = app.page(&app.client, "/sign-in").await;
        let response = app.client.post(app.url("/sign-in"))
            .form(&[("login", "x"), ("password", "y")]).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let response = app.client.post(app.url("/sign-in"))
            .form(&[("csrf", "forged"), ("login", "x"), ("password", "y")]).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let response = app.client.post(app.url("/sign-in")).header("origin", "https://evil.example")
            .form(&[("csrf", csrf_of(&token_page).as_str()), ("login", "x"), ("password", "y")]).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);

        // A signed-in member's forms need their session's token, not a visitor's.
        app.member("carol").await;
        let sign_in = app.page(&app.client, "/sign-in").await;
        let response = app.client.post(app.url("/sign-in"))
            .form(&[("csrf", csrf_of(&sign_in).as_str()), ("login", "carol"), ("password", "a long enough password")]).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let response = app.client.post(app.url("/new-topic"))
            .form(&[("csrf", csrf_of(&token_page).as_str()), ("category", "general"), ("title", "Forged"), ("body", "x")]).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        // The session cookie does not sign in API calls: only a bearer token does.
        let response = app.client.post(app.url("/api/v1/topics"))
            .json(&json!({"category": "general", "title": "By cookie", "body": "x"})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.store.count_topics("discussion", None).await.unwrap(), 0);
    }
}

on_both_stores! {
    /// Proves: R3
    async fn wrong_passwords_and_unknown_accounts_get_the_same_answer(app) {
        app.member("dave").await;
        let (status_a, a) = api_error(app.client.post(app.url("/api/v1/session"))
            .json(&json!({"login": "dave", "password": "wrong password!"})).send().await.unwrap()).await;
        let (status_b, b) = api_error(app.client.post(app.url("/api/v1/session"))
            .json(&json!({"login": "nobody-here", "password": "wrong password!"})).send().await.unwrap()).await;
        assert_eq!((status_a, status_b), (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED));
        assert_eq!(a, b);
        assert_eq!(a["error"]["code"], "bad_credentials");
    }
}

on_both_stores! {
    async fn unverified_members_cannot_post_until_they_confirm(app) {
        let response = app.client.post(app.url("/api/v1/users"))
            .json(&json!({"username": "fresh", "email": "fresh@example.org", "password": "a long enough password", "birth_year": 1990, "country": "GB"}))
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let token = app.bearer("fresh").await;
        let (status, error) = api_error(app.client.post(app.url("/api/v1/topics")).bearer_auth(&token)
            .json(&json!({"category": "general", "title": "Too early", "body": "x"})).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(error["error"]["code"], "email_not_verified");
    }
}

on_both_stores! {
    async fn a_database_failure_is_an_opaque_500(app) {
        app.store.close().await;
        let response = app.client.get(app.url("/")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let html = response.text().await.unwrap();
        assert!(html.contains("something went wrong on our side"));
        assert!(!html.to_lowercase().contains("pool") && !html.contains("sqlx"), "{html}");
        let (status, error) = api_error(app.client.get(app.url("/api/v1/categories")).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error["error"]["code"], "internal");
        let response = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
