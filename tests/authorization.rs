//! The authorization matrix: every route the router serves, asked by every role, against the
//! allow/deny table below; a route added without a line in the table fails the test. And the
//! object checks: one member never reaches another's export, privacy request, sessions or
//! settings.

mod common;

use common::csrf_of;
use covenant::domain::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PASSWORD: &str = "a long enough password";

/// Who asks, in the order of the letters of [`EXPECTED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    Member,
    Moderator,
    PrivacyOfficer,
    Administrator,
    SupportAgent,
}

const EVERYONE: [Who; 6] = [
    Who::Anonymous,
    Who::Member,
    Who::Moderator,
    Who::PrivacyOfficer,
    Who::Administrator,
    Who::SupportAgent,
];

// One letter per role (anonymous, member, moderator, privacy officer, administrator, support
// agent): `A` the
// role gets past authorization, `-` it is refused (401, 403, or sent to the sign-in page).
const PUBLIC: &str = "AAAAAA";
const MEMBERS: &str = "-AAAAA";
/// Moderation: moderators and administrators, with 2-step verification.
const MODERATORS: &str = "--A-A-";
/// Privacy requests: privacy officers and administrators, with 2-step verification.
const PRIVACY_STAFF: &str = "---AA-";
/// The request queue and a request's page: privacy staff, and support agents (who see only
/// the requests assigned to them: the made-up request here is a 404 for them too).
const REQUEST_READERS: &str = "---AAA";
const ADMINISTRATORS: &str = "----A-";
/// Someone else's post: only its author edits or deletes it (moderators hide it instead), and
/// none of the roles asking here is its author.
const AUTHOR_ONLY: &str = "------";

/// The expected table: method, path template as routed, and who gets past authorization.
/// Routes reached with a capability in the path (`{token}`: emailed links, signed export
/// links) are public here: the token is the authorization, and a made-up one opens nothing
/// for anyone (the test checks every role gets the same refusal).
const EXPECTED: &[(&str, &str, &str)] = &[
    ("GET", "/", PUBLIC),
    ("GET", "/c/{slug}", PUBLIC),
    ("GET", "/t/{slug}/{id}", PUBLIC),
    ("POST", "/t/{slug}/{id}/reply", MEMBERS),
    ("POST", "/t/{slug}/{id}/follow", MEMBERS),
    ("POST", "/t/{slug}/{id}/unfollow", MEMBERS),
    ("GET", "/new-topic", MEMBERS),
    ("POST", "/new-topic", MEMBERS),
    ("GET", "/posts/{id}/edit", AUTHOR_ONLY),
    ("POST", "/posts/{id}/edit", AUTHOR_ONLY),
    ("POST", "/posts/{id}/delete", AUTHOR_ONLY),
    ("POST", "/posts/{id}/hide", MODERATORS),
    ("POST", "/posts/{id}/unhide", MODERATORS),
    ("GET", "/blog", PUBLIC),
    ("GET", "/blog/new", MODERATORS),
    ("POST", "/blog/new", MODERATORS),
    ("GET", "/blog/{slug}", PUBLIC),
    ("POST", "/blog/{slug}/reply", MEMBERS),
    ("GET", "/u/{username}", PUBLIC),
    ("GET", "/register", PUBLIC),
    ("POST", "/register", PUBLIC),
    ("GET", "/unsubscribe/{token}", PUBLIC),
    ("POST", "/unsubscribe/{token}", PUBLIC),
    ("GET", "/account/email", MEMBERS),
    ("POST", "/account/email", MEMBERS),
    ("POST", "/account/email/digest", MEMBERS),
    ("GET", "/digest/unsubscribe/{token}", PUBLIC),
    ("POST", "/digest/unsubscribe/{token}", PUBLIC),
    ("GET", "/parental-consent/{token}", PUBLIC),
    ("POST", "/parental-consent/{token}", PUBLIC),
    ("GET", "/parental-consent-recorded", PUBLIC),
    ("GET", "/feedback", MEMBERS),
    ("POST", "/feedback", MEMBERS),
    ("GET", "/feedback/published", PUBLIC),
    ("GET", "/auth/{provider}", PUBLIC),
    ("POST", "/auth/{provider}", PUBLIC),
    ("GET", "/auth/{provider}/callback", PUBLIC),
    ("GET", "/auth/complete/{token}", PUBLIC),
    ("POST", "/auth/complete/{token}", PUBLIC),
    ("GET", "/account/social", MEMBERS),
    ("POST", "/account/social/{provider}/unlink", MEMBERS),
    ("GET", "/staff/feedback", MODERATORS),
    ("POST", "/staff/feedback/{id}/publish", MODERATORS),
    ("GET", "/verify-email/{token}", PUBLIC),
    ("POST", "/verify-email/{token}", PUBLIC),
    ("GET", "/sign-in", PUBLIC),
    ("POST", "/sign-in", PUBLIC),
    ("POST", "/sign-out", PUBLIC),
    ("GET", "/password-reset", PUBLIC),
    ("POST", "/password-reset", PUBLIC),
    ("GET", "/password-reset/{token}", PUBLIC),
    ("POST", "/password-reset/{token}", PUBLIC),
    ("GET", "/privacy", PUBLIC),
    ("GET", "/privacy/history", PUBLIC),
    ("GET", "/privacy/versions/{id}", PUBLIC),
    ("GET", "/privacy/automated-decisions", PUBLIC),
    ("POST", "/privacy/acknowledge", MEMBERS),
    ("GET", "/staff/ropa", ADMINISTRATORS),
    ("GET", "/staff/audit", ADMINISTRATORS),
    ("GET", "/staff/mail/withheld", ADMINISTRATORS),
    ("GET", "/staff/held", MODERATORS),
    ("POST", "/staff/held/{id}/release", MODERATORS),
    ("POST", "/staff/held/{id}/hide", MODERATORS),
    ("GET", "/staff/holds", ADMINISTRATORS),
    ("POST", "/staff/holds", ADMINISTRATORS),
    ("POST", "/staff/holds/{id}/release", ADMINISTRATORS),
    ("GET", "/staff/disclosures", PRIVACY_STAFF),
    ("POST", "/staff/disclosures", PRIVACY_STAFF),
    ("POST", "/staff/disclosures/{id}/notify", PRIVACY_STAFF),
    ("GET", "/account/close", MEMBERS),
    ("POST", "/account/close", MEMBERS),
    ("GET", "/stats", PUBLIC),
    ("GET", "/account/privacy", MEMBERS),
    ("POST", "/account/privacy/requests", MEMBERS),
    ("POST", "/account/privacy/restriction/lift", MEMBERS),
    ("GET", "/account/profile", MEMBERS),
    ("POST", "/account/profile", MEMBERS),
    ("GET", "/privacy/requests/new", PUBLIC),
    ("POST", "/privacy/requests/new", PUBLIC),
    ("GET", "/privacy/requests/sent", PUBLIC),
    ("GET", "/privacy/requests/verify/{token}", PUBLIC),
    ("POST", "/privacy/requests/verify/{token}", PUBLIC),
    ("POST", "/privacy/requests/verify/{token}/resend", PUBLIC),
    ("GET", "/privacy/requests/status/{token}", PUBLIC),
    ("POST", "/privacy/requests/status/{token}/appeal", PUBLIC),
    ("POST", "/privacy/requests/status/{token}/withdraw", PUBLIC),
    ("POST", "/privacy/requests/status/{token}/evidence", PUBLIC),
    ("GET", "/staff/requests", REQUEST_READERS),
    ("GET", "/staff/requests/log", PRIVACY_STAFF),
    ("POST", "/staff/requests/log", PRIVACY_STAFF),
    ("GET", "/staff/requests/report", PRIVACY_STAFF),
    ("GET", "/staff/requests/{id}", REQUEST_READERS),
    ("POST", "/staff/requests/{id}/actions", PRIVACY_STAFF),
    (
        "GET",
        "/staff/requests/{id}/evidence/{evidence_id}",
        PRIVACY_STAFF,
    ),
    // Two gauges (overdue and nearly-due request counts), no personal data.
    ("GET", "/metrics", PUBLIC),
    ("GET", "/account/privacy/export", MEMBERS),
    ("POST", "/account/privacy/export", MEMBERS),
    ("GET", "/privacy/export/{token}", PUBLIC),
    // The password again, for sensitive actions on an old sign-in.
    ("GET", "/account/confirm", MEMBERS),
    ("POST", "/account/confirm", MEMBERS),
    ("GET", "/account/security", MEMBERS),
    ("POST", "/account/security/sessions/revoke", MEMBERS),
    ("POST", "/account/security/sessions/revoke-others", MEMBERS),
    ("POST", "/account/security/password", MEMBERS),
    ("POST", "/account/security/email", MEMBERS),
    ("GET", "/email-change/{token}", PUBLIC),
    ("POST", "/email-change/{token}", PUBLIC),
    ("GET", "/account/two-factor", MEMBERS),
    ("POST", "/account/two-factor/enable", MEMBERS),
    ("POST", "/account/two-factor/disable", MEMBERS),
    ("POST", "/consent", PUBLIC),
    ("POST", "/preferences/theme", PUBLIC),
    ("GET", "/cookie-settings", PUBLIC),
    ("POST", "/cookie-settings", PUBLIC),
    ("GET", "/privacy-choices", PUBLIC),
    ("POST", "/privacy-choices", PUBLIC),
    ("GET", "/.well-known/gpc.json", PUBLIC),
    ("GET", "/.well-known/security.txt", PUBLIC),
    ("GET", "/static/analytics.js", PUBLIC),
    ("GET", "/static/advertising.js", PUBLIC),
    ("GET", "/static/style.css", PUBLIC),
    ("GET", "/healthz", PUBLIC),
    ("GET", "/api/openapi.json", PUBLIC),
    ("POST", "/api/v1/users", PUBLIC),
    ("POST", "/api/v1/users/verify-email", PUBLIC),
    ("GET", "/api/v1/users/{username}", PUBLIC),
    ("POST", "/api/v1/session", PUBLIC),
    ("DELETE", "/api/v1/session", MEMBERS),
    ("POST", "/api/v1/password-reset", PUBLIC),
    ("POST", "/api/v1/password-reset/complete", PUBLIC),
    ("GET", "/api/v1/me", MEMBERS),
    ("POST", "/api/v1/me/export", MEMBERS),
    ("GET", "/api/v1/categories", PUBLIC),
    ("GET", "/api/v1/categories/{slug}/topics", PUBLIC),
    ("POST", "/api/v1/topics", MEMBERS),
    ("GET", "/api/v1/topics/{id}", PUBLIC),
    ("POST", "/api/v1/topics/{id}/posts", MEMBERS),
    ("PATCH", "/api/v1/posts/{id}", AUTHOR_ONLY),
    ("DELETE", "/api/v1/posts/{id}", AUTHOR_ONLY),
    ("POST", "/api/v1/posts/{id}/hide", MODERATORS),
    ("POST", "/api/v1/posts/{id}/unhide", MODERATORS),
    ("GET", "/api/v1/blog", PUBLIC),
    ("POST", "/api/v1/blog", MODERATORS),
    ("GET", "/api/v1/blog/{slug}", PUBLIC),
    ("POST", "/api/v1/blog/{slug}/comments", MEMBERS),
    ("GET", "/api/v1/consent/decision", PUBLIC),
    ("POST", "/api/v1/consent/choices", PUBLIC),
    ("GET", "/api/v1/consent/receipts", MEMBERS),
    // Staff log written opt-outs received by post or email.
    ("POST", "/api/v1/consent/written-opt-outs", ADMINISTRATORS),
    ("GET", "/api/v1/policy", PUBLIC),
    ("GET", "/api/v1/policy/versions", PUBLIC),
    ("GET", "/api/v1/policy/versions/{id}", PUBLIC),
    ("GET", "/api/v1/policy/diff", PUBLIC),
    ("GET", "/api/v1/ropa", ADMINISTRATORS),
    ("POST", "/api/v1/privacy-requests", PUBLIC),
    ("GET", "/api/v1/privacy-requests", MEMBERS),
    ("POST", "/api/v1/privacy-requests/verify", PUBLIC),
    ("POST", "/api/v1/privacy-requests/appeal", PUBLIC),
    ("POST", "/api/v1/privacy-requests/status", PUBLIC),
    ("POST", "/api/v1/privacy-requests/withdraw", PUBLIC),
    ("POST", "/api/v1/privacy-requests/evidence", PUBLIC),
    ("GET", "/api/v1/staff/privacy-requests", PRIVACY_STAFF),
    (
        "POST",
        "/api/v1/staff/privacy-requests/{id}/actions",
        PRIVACY_STAFF,
    ),
];

fn expected_for(method: &Method, path: &str) -> Option<&'static str> {
    EXPECTED
        .iter()
        .find(|(m, p, _)| *m == method.as_str() && *p == path)
        .map(|(_, _, who)| *who)
}

/// Registers `name`, gives it `role` and (for staff) turns on 2-step verification; returns a
/// browser signed in through the sign-in page and an API bearer token.
async fn account(app: &common::TestApp, name: &str, role: Role) -> (reqwest::Client, String) {
    app.member(name).await;
    let user = app.store.user_by_username(name).await.unwrap().unwrap();
    let mut code = None;
    let mut secret = None;
    let step = common::settled_totp_step().await;
    if role != Role::Member {
        app.state.accounts.set_role(user.id, role).await.unwrap();
        let setup = app
            .state
            .accounts
            .two_factor_setup(user.id, name)
            .await
            .unwrap();
        let earlier = common::totp_code(&setup.secret, step - 1);
        app.state
            .accounts
            .enable_two_factor(user.id, &earlier)
            .await
            .unwrap();
        code = Some(common::totp_code(&setup.secret, step));
        secret = Some(setup.secret);
    }
    let browser = app.new_client();
    let form = app.page(&browser, "/sign-in").await;
    let mut fields = vec![
        ("csrf", csrf_of(&form)),
        ("login", name.to_string()),
        ("password", PASSWORD.to_string()),
    ];
    if let Some(code) = &code {
        fields.push(("code", code.clone()));
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
        "sign-in of {name}"
    );
    // The bearer session is opened with the next code step's neighbour: each step works once.
    let mut body = json!({"login": name, "password": PASSWORD});
    if let Some(secret) = &secret {
        body["code"] = json!(common::totp_code(secret, step + 1));
    }
    let response = app
        .new_client()
        .post(app.url("/api/v1/session"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "API sign-in of {name}"
    );
    let token = response.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    (browser, token)
}

/// What the route's placeholders are filled with: content of another member, so that "the
/// author" is never the member asking.
struct Fixture {
    topic_slug: String,
    topic_id: i64,
    post_id: i64,
    article_slug: String,
}

async fn fixture(app: &common::TestApp) -> Fixture {
    let (_, author) = account(app, "author", Role::Member).await;
    let (_, editor) = account(app, "editor", Role::Administrator).await;
    let created: Value = app
        .client
        .post(app.url("/api/v1/topics"))
        .bearer_auth(&author)
        .json(&json!({"category": "general", "title": "A topic of someone else", "body": "Their words."}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = created["url"].as_str().unwrap().to_string();
    let topic_slug = url
        .split("/t/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let article: Value = app
        .client
        .post(app.url("/api/v1/blog"))
        .bearer_auth(&editor)
        .json(&json!({"title": "An article", "body": "News."}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let article_slug = article["url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    Fixture {
        topic_slug,
        topic_id: created["topic_id"].as_i64().unwrap(),
        post_id: created["post_id"].as_i64().unwrap(),
        article_slug,
    }
}

fn fill(path: &str, fixture: &Fixture) -> String {
    let topic_route = path.starts_with("/t/") || path.starts_with("/api/v1/topics/");
    let blog_route = path.starts_with("/blog/") || path.starts_with("/api/v1/blog/");
    let id = if topic_route {
        fixture.topic_id.to_string()
    } else if path.starts_with("/posts/") || path.starts_with("/api/v1/posts/") {
        fixture.post_id.to_string()
    } else if path.contains("versions/") {
        "1".to_string()
    } else {
        // Staff records (requests, holds, held posts, feedback) that do not exist: the role
        // check comes before the lookup, so the answer still says who may ask.
        "999999".to_string()
    };
    let slug = if topic_route {
        fixture.topic_slug.clone()
    } else if blog_route {
        fixture.article_slug.clone()
    } else {
        "general".to_string()
    };
    path.replace("{id}", &id)
        .replace("{slug}", &slug)
        .replace("{username}", "author")
        .replace("{token}", "made-up-token")
        .replace("{provider}", "nowhere")
        .replace("{evidence_id}", "999999")
}

/// How a route answered a role.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// Past authorization: the page, a redirect elsewhere, or a refusal of the input or the
    /// record (`422`, `404`, `400` for a made-up token, `401` for a wrong password).
    Allowed,
    /// Refused for who is asking: sign in first (`401` or a redirect to the sign-in page),
    /// not allowed (`403`), or staff without 2-step verification.
    Refused,
    /// The test's own request was wrong (its anti-forgery token was refused).
    TestError(String),
}

fn answer(path: &str, status: StatusCode, location: Option<&str>, body: &str) -> Answer {
    if path.starts_with("/api/") {
        let code = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
            .unwrap_or_default();
        return match code.as_str() {
            "unauthenticated" | "forbidden" | "second_factor_enrolment_required" => Answer::Refused,
            _ => Answer::Allowed,
        };
    }
    if body.contains("the form expired or came from another site") {
        return Answer::TestError(format!("anti-forgery token refused ({status})"));
    }
    let to_sign_in = status.is_redirection() && location.is_some_and(|l| l.starts_with("/sign-in"));
    let sign_in_first = status == StatusCode::UNAUTHORIZED && body.contains("sign in first");
    if to_sign_in || sign_in_first || status == StatusCode::FORBIDDEN {
        Answer::Refused
    } else {
        Answer::Allowed
    }
}

/// Routes whose plausible input may end the asking role's sessions go last, the browser's
/// own sign-out at the very end.
fn asked_late(path: &str) -> u8 {
    match path {
        "/api/v1/session" => 1,
        "/account/security/sessions/revoke-others"
        | "/account/security/password"
        | "/account/close" => 2,
        "/sign-out" => 3,
        _ => 0,
    }
}

async fn ask(
    app: &common::TestApp,
    browser: &reqwest::Client,
    bearer: Option<&str>,
    csrf: &str,
    method: &Method,
    path: &str,
) -> (StatusCode, Answer) {
    let url = app.url(path);
    let request = if path.starts_with("/api/") {
        // The API is used as clients use it: a bearer token, JSON, no cookies.
        let client = app.new_client();
        let mut request = client.request(method.clone(), url);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if *method != Method::GET && *method != Method::DELETE {
            // Plausible input, so that the answer is about who asks, not about the fields.
            request = request.json(&json!({
                "action": "note", "text": "A note long enough to keep.",
                "category": "general", "title": "A title long enough", "body": "Words long enough to pass.",
            }));
        }
        request
    } else if *method == Method::GET {
        browser.get(url)
    } else {
        browser.request(method.clone(), url).form(&[
            ("csrf", csrf),
            ("title", "A title long enough"),
            ("body", "Words long enough to pass."),
        ])
    };
    let response = request.send().await.unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string());
    let body = response.text().await.unwrap_or_default();
    (status, answer(path, status, location.as_deref(), &body))
}

async fn matrix_for(who: Who, routes: &[covenant::web::RouteEntry]) -> Vec<String> {
    let app = common::spawn_app(common::Backend::Sqlite).await.unwrap();
    let fixture = fixture(&app).await;
    let role = match who {
        Who::Anonymous => None,
        Who::Member => Some(Role::Member),
        Who::Moderator => Some(Role::Moderator),
        Who::PrivacyOfficer => Some(Role::PrivacyOfficer),
        Who::Administrator => Some(Role::Administrator),
        Who::SupportAgent => Some(Role::SupportAgent),
    };
    let (browser, bearer) = match role {
        None => (app.new_client(), None),
        Some(role) => {
            let (browser, token) = account(&app, "asker", role).await;
            (browser, Some(token))
        }
    };
    let csrf = csrf_of(&app.page(&browser, "/cookie-settings").await);
    let index = EVERYONE.iter().position(|w| *w == who).unwrap();
    let mut wrong = Vec::new();
    // Signing out goes last: the requests after it would be a visitor's.
    let mut ordered: Vec<_> = routes.iter().collect();
    ordered.sort_by_key(|r| asked_late(&r.path));
    let mut token_answers = std::collections::BTreeMap::new();
    for route in ordered {
        let Some(expected) = expected_for(&route.method, &route.path) else {
            continue;
        };
        let path = fill(&route.path, &fixture);
        let (status, answer) = ask(
            &app,
            &browser,
            bearer.as_deref(),
            &csrf,
            &route.method,
            &path,
        )
        .await;
        if status.is_server_error() {
            wrong.push(format!("{who:?} {} {}: {status}", route.method, route.path));
            continue;
        }
        let expected = if expected.as_bytes()[index] == b'A' {
            Answer::Allowed
        } else {
            Answer::Refused
        };
        if answer != expected {
            wrong.push(format!(
                "{who:?} {} {}: {status} is {answer:?} but the table says {expected:?}",
                route.method, route.path,
            ));
        }
        if route.path.contains("{token}") {
            token_answers.insert(format!("{} {}", route.method, route.path), status);
        }
    }
    app.stop().await;
    for (route, status) in token_answers {
        wrong.push(format!("token {who:?} {route} {status}"));
    }
    wrong
}

/// Proves: A3
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_role_as_the_authorization_table_says() {
    let config = common::test_config(std::path::PathBuf::from("unused"), String::new());
    let routes = covenant::web::route_table(&config);
    let mut problems = Vec::new();
    for route in &routes {
        if expected_for(&route.method, &route.path).is_none() {
            problems.push(format!(
                "{} {} is served but has no line in the authorization table",
                route.method, route.path
            ));
        }
    }
    for (method, path, _) in EXPECTED {
        if !routes
            .iter()
            .any(|r| r.method.as_str() == *method && r.path == *path)
        {
            problems.push(format!("{method} {path} is in the table but not served"));
        }
    }
    let mut token_statuses: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for who in EVERYONE {
        for line in matrix_for(who, &routes).await {
            if let Some(rest) = line.strip_prefix("token ") {
                let (_, rest) = rest.split_once(' ').unwrap();
                let (route, status) = rest.rsplit_once(' ').unwrap();
                token_statuses
                    .entry(route.to_string())
                    .or_default()
                    .push(status.to_string());
            } else {
                problems.push(line);
            }
        }
    }
    // A made-up capability opens nothing, for anyone: every role gets the same answer.
    for (route, statuses) in token_statuses {
        if statuses.iter().any(|s| s != &statuses[0]) {
            problems.push(format!(
                "{route} answers roles differently without a valid token: {statuses:?}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The `data-session` handles listed on a security page.
fn session_handles(page: &str) -> Vec<String> {
    page.match_indices("data-session=\"")
        .map(|(i, m)| page[i + m.len()..].split('"').next().unwrap().to_string())
        .collect()
}

async fn post_page(
    app: &common::TestApp,
    browser: &reqwest::Client,
    form_page: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let csrf = csrf_of(&app.page(browser, form_page).await);
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    browser
        .post(app.url(path))
        .form(&form)
        .send()
        .await
        .unwrap()
}

on_both_stores! {
    /// Proves: A3
    async fn one_member_never_reaches_another_members_export_request_sessions_or_settings(app) {
        let (ann, ann_token) = account(app, "ann", Role::Member).await;
        let (bea, bea_token) = account(app, "bea", Role::Member).await;

        // Exports: Bea's link is hers alone; Ann's own link with Bea's archive id opens nothing.
        let bea_export: Value = app.client.post(app.url("/api/v1/me/export")).bearer_auth(&bea_token)
            .json(&json!({})).send().await.unwrap().json().await.unwrap();
        let ann_export: Value = app.client.post(app.url("/api/v1/me/export")).bearer_auth(&ann_token)
            .json(&json!({})).send().await.unwrap().json().await.unwrap();
        let bea_link = bea_export["url"].as_str().unwrap();
        let ann_link = ann_export["url"].as_str().unwrap();
        let bea_id = bea_link.rsplit('/').next().unwrap().split('.').next().unwrap();
        let (ann_prefix, ann_token_part) = ann_link.rsplit_once('/').unwrap();
        let (_, ann_rest) = ann_token_part.split_once('.').unwrap();
        let forged = format!("{ann_prefix}/{bea_id}.{ann_rest}");
        let response = ann.get(&forged).send().await.unwrap();
        assert!(response.status().is_client_error(), "forged link: {}", response.status());
        assert_ne!(response.headers().get("content-type").map(|v| v.to_str().unwrap()), Some("application/zip"));
        // Bea's archive is untouched by the attempt: her link still works, once.
        let response = bea.get(bea_link).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "application/zip");

        // Privacy requests: Bea's request is listed to her only, and its staff page is closed.
        let response = post_page(app, &bea, "/account/privacy", "/account/privacy/requests",
            &[("right", "access"), ("jurisdiction", "eu_eea")]).await;
        assert!(response.status().is_redirection() || response.status().is_success(), "{}", response.status());
        let bea_requests: Value = app.client.get(app.url("/api/v1/privacy-requests")).bearer_auth(&bea_token)
            .send().await.unwrap().json().await.unwrap();
        let bea_request = bea_requests[0]["id"].as_i64().expect("Bea sees her request");
        let ann_requests: Value = app.client.get(app.url("/api/v1/privacy-requests")).bearer_auth(&ann_token)
            .send().await.unwrap().json().await.unwrap();
        assert_eq!(ann_requests, json!([]), "Ann sees none of Bea's requests");
        let ann_page = app.page(&ann, "/account/privacy").await;
        assert!(!ann_page.contains(&format!("/staff/requests/{bea_request}")));
        let response = ann.get(app.url(&format!("/staff/requests/{bea_request}"))).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let response = app.client.post(app.url(&format!("/api/v1/staff/privacy-requests/{bea_request}/actions")))
            .bearer_auth(&ann_token).json(&json!({"action": "withdraw"})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);

        // Sessions: Ann sees only her own, and cannot end Bea's by naming its handle.
        let bea_page = app.page(&bea, "/account/security").await;
        let bea_handles = session_handles(&bea_page);
        assert!(!bea_handles.is_empty());
        let ann_page = app.page(&ann, "/account/security").await;
        for handle in &bea_handles {
            assert!(!ann_page.contains(handle.as_str()), "Ann's page lists one of Bea's sessions");
            let response = post_page(app, &ann, "/account/security", "/account/security/sessions/revoke",
                &[("session", handle)]).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND);
        }
        assert_eq!(app.page(&bea, "/account/security").await.matches("data-session=").count(), bea_handles.len());
        let response = app.client.get(app.url("/api/v1/me")).bearer_auth(&bea_token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "Bea's API session still works");

        // Settings: forms act on the signed-in member; naming another member changes nothing.
        let response = post_page(app, &ann, "/account/email", "/account/email",
            &[("news", "on"), ("user_id", "2"), ("username", "bea")]).await;
        assert!(response.status().is_redirection() || response.status().is_success()
            || response.status() == StatusCode::UNPROCESSABLE_ENTITY, "{}", response.status());
        let bea_user = app.store.user_by_username("bea").await.unwrap().unwrap();
        assert!(!app.state.news.is_subscribed(bea_user.id).await.unwrap(), "Bea's news choice is untouched");
        let ann_user = app.store.user_by_username("ann").await.unwrap().unwrap();
        if response.status().is_redirection() || response.status().is_success() {
            assert!(app.state.news.is_subscribed(ann_user.id).await.unwrap(), "Ann's own choice took effect");
        }
        let me: Value = app.client.get(app.url("/api/v1/me")).bearer_auth(&ann_token)
            .send().await.unwrap().json().await.unwrap();
        assert_eq!(me["username"], "ann");
    }
}
