//! Privacy requests end to end, on both stores: every intake path, verification by session and
//! by emailed code, enumeration resistance, throttles, agents' evidence, deadlines per
//! jurisdiction with extensions and alarms, decisions, an appeal decided by a second member of
//! staff (and one lodged from the decision email alone), staff downloads of evidence, a parent's
//! recorded consent as evidence, the queue's pages, and the yearly report and its charts.

mod common;

use common::csrf_of;
use covenant::domain::Role;
use covenant_core::policy::{Jurisdiction, Policy};
use covenant_core::requests::due_date_for;
use reqwest::StatusCode;

const PASSWORD: &str = "a long enough password";

/// The 8-digit code in a request email.
fn code_in(mail: &str) -> String {
    mail.lines()
        .map(str::trim)
        .find(|l| l.len() == 8 && l.chars().all(|c| c.is_ascii_digit()))
        .expect("the message holds a code")
        .to_string()
}

/// The link in `mail` whose path starts with `prefix`.
fn link_with(app: &common::TestApp, mail: &str, prefix: &str) -> String {
    let needle = format!("{}{prefix}", app.address);
    let start = mail
        .find(&needle)
        .unwrap_or_else(|| panic!("a {prefix} link in {mail}"));
    mail[start + app.address.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

async fn user_id(app: &common::TestApp, name: &str) -> i64 {
    app.store
        .user_by_email(&format!("{name}@example.org"))
        .await
        .unwrap()
        .unwrap()
        .id
}

/// A browser signed in through the sign-in page.
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

/// A privacy officer with 2-step verification on, signed in with a browser.
async fn privacy_officer(app: &common::TestApp, name: &str) -> (reqwest::Client, i64) {
    staff_member(app, name, Role::PrivacyOfficer).await
}

/// A member of staff in `role` with 2-step verification on, signed in with a browser.
async fn staff_member(app: &common::TestApp, name: &str, role: Role) -> (reqwest::Client, i64) {
    app.member(name).await;
    let id = user_id(app, name).await;
    app.state.accounts.set_role(id, role).await.unwrap();
    let setup = app.state.accounts.two_factor_setup(id, name).await.unwrap();
    let step = common::settled_totp_step().await;
    let code = common::totp_code(&setup.secret, step - 1);
    app.state
        .accounts
        .enable_two_factor(id, &code)
        .await
        .unwrap();
    let code = common::totp_code(&setup.secret, step);
    (browser_for(app, name, Some(code)).await, id)
}

/// Sends the public form as a visitor; returns the response.
async fn public_request(
    app: &common::TestApp,
    client: &reqwest::Client,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let form = app.page(client, "/privacy/requests/new").await;
    let mut all = vec![("csrf".to_string(), csrf_of(&form))];
    all.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    client
        .post(app.url("/privacy/requests/new"))
        .form(&all)
        .send()
        .await
        .unwrap()
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

/// Uploads an evidence file from the status page at `status`, as the agent's browser does.
async fn upload(
    app: &common::TestApp,
    client: &reqwest::Client,
    status: &str,
    bytes: Vec<u8>,
) -> reqwest::Response {
    let page = app.page(client, status).await;
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf_of(&page))
        .part(
            "evidence",
            reqwest::multipart::Part::bytes(bytes).file_name("letter"),
        );
    client
        .post(app.url(&format!("{status}/evidence")))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

async fn audit_kinds(app: &common::TestApp) -> Vec<String> {
    app.store
        .audit_page(&Default::default(), 10_000, 0)
        .await
        .unwrap()
        .0
        .into_iter()
        .map(|row| format!("{} {}", row.kind, row.details))
        .collect()
}

async fn request_state(app: &common::TestApp, id: i64) -> String {
    app.store.privacy_request(id).await.unwrap().unwrap().state
}

async fn last_request_id(app: &common::TestApp) -> i64 {
    app.store
        .request_queue(&covenant::store::QueueFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .max()
        .expect("a request exists")
}

/// Verified requests wait for privacy staff instead of being carried out at once.
fn staff_review(config: &mut covenant::Config) {
    config.requests.fulfil_at_once = false;
}

on_both_stores! {
    /// Proves: R1, R2, R3, J1
    async fn a_member_asks_with_one_click_and_the_session_verifies(app) {
        app.member("ada").await;
        let browser = browser_for(app, "ada", None).await;
        let page = app.page(&browser, "/account/privacy?jurisdiction=california").await;
        assert!(page.contains("data-right=\"opt_out_sale\""), "California grants the sale opt-out");
        assert!(page.contains("45 calendar days"), "{page}");
        let eu = app.page(&browser, "/account/privacy?jurisdiction=eu_eea").await;
        assert!(!eu.contains("data-right=\"opt_out_sale\"") && eu.contains("data-right=\"restriction\""));
        assert!(eu.contains("1 calendar month"));
        let response = post_form(app, &browser, "/account/privacy?jurisdiction=california",
            "/account/privacy/requests", &[("right", "rectification"), ("jurisdiction", "california")]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let id = last_request_id(app).await;
        let row = app.store.privacy_request(id).await.unwrap().unwrap();
        assert_eq!(row.verification, "session", "the session is recorded as the level reached");
        assert_eq!(row.state, "in_progress", "a verified request is handed to fulfilment at once");
        assert!(row.handed_to_fulfilment_at.is_some());
        let page = app.page(&browser, "/account/privacy?jurisdiction=california").await;
        assert!(page.contains(&format!("data-request=\"{id}\"")) && page.contains("in progress"));
        let audit = audit_kinds(app).await;
        for expected in [
            format!("request_received request={id} method=account reason=rectification"),
            format!("request_transitioned request={id} method=verification_succeeded reason=verified"),
            format!("request_transitioned request={id} method=fulfilment_started reason=in_progress"),
            format!("request_handed_to_fulfilment request={id}"),
        ] {
            assert!(audit.contains(&expected), "{expected} in {audit:?}");
        }
        assert!(audit.iter().all(|line| !line.contains('@')), "no address in the audit log");
        // With no place chosen, the page and the API start from where the member said they
        // live when joining (the United Kingdom, for members made by these tests).
        let home = app.page(&browser, "/account/privacy").await;
        assert!(home.contains("<option value=\"uk\" selected>"), "{home}");
        let token = app.bearer("ada").await;
        let response = app.client.post(app.url("/api/v1/privacy-requests")).bearer_auth(&token)
            .json(&serde_json::json!({"rights": ["know"]})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let row = app.store.privacy_request(last_request_id(app).await).await.unwrap().unwrap();
        assert_eq!(row.jurisdiction, "uk");
        // Forms are checked: no token, no request.
        let response = browser.post(app.url("/account/privacy/requests"))
            .form(&[("right", "access"), ("jurisdiction", "other")]).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
}

on_both_stores! {
    /// Proves: R2, R3
    async fn the_public_form_emails_a_code_and_deletion_needs_one_more_fact(app) where config: staff_review; {
        app.member("bea").await;
        let visitor = app.new_client();
        let response = public_request(app, &visitor, &[
            ("requester_name", "Bea"), ("requester_email", "bea@example.org"),
            ("relationship", "self"), ("country", "DE"), ("rights", "deletion"), ("rights", "access"),
        ]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()["location"], "/privacy/requests/sent");
        let mail = app.wait_for_mail("bea@example.org", "privacy request code").await;
        let code = code_in(&mail);
        let verify = link_with(app, &mail, "/privacy/requests/verify/");
        let wrong = post_form(app, &visitor, &verify, &verify, &[("code", "00000000")]).await;
        assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
        // The code alone verifies access, not deletion.
        let right = post_form(app, &visitor, &verify, &verify, &[("code", &code)]).await;
        assert_eq!(right.status(), StatusCode::SEE_OTHER);
        let status_path = right.headers()["location"].to_str().unwrap().to_string();
        let status = app.page(&visitor, &status_path).await;
        assert!(status.contains("waiting for verification") && status.contains("in progress"), "{status}");
        // With the username as the held fact, deletion goes on too.
        let again = post_form(app, &visitor, &verify, &verify, &[("code", &code), ("fact", "bea")]).await;
        assert_eq!(again.status(), StatusCode::SEE_OTHER);
        let queue = app.store.request_queue(&Default::default()).await.unwrap();
        assert_eq!(queue.len(), 2);
        for row in queue {
            let row = app.store.privacy_request(row.id).await.unwrap().unwrap();
            assert_eq!(row.state, "in_progress", "{}", row.right_name);
            let expected = if row.right_name == "deletion" { "email_code_plus_fact" } else { "email_code" };
            assert_eq!(row.verification, expected);
        }
        let audit = audit_kinds(app).await;
        assert!(audit.iter().any(|l| l.starts_with("request_code_failed")));
    }
}

on_both_stores! {
    /// Proves: R3
    async fn answers_are_identical_for_known_and_unknown_addresses(app) {
        app.member("cleo").await;
        let mut pages = Vec::new();
        let mut apis = Vec::new();
        for email in ["cleo@example.org", "nobody-here@example.org"] {
            let visitor = app.new_client();
            let response = public_request(app, &visitor, &[
                ("requester_name", "Someone"), ("requester_email", email),
                ("relationship", "self"), ("country", "US"), ("state", "CA"), ("rights", "access"),
            ]).await;
            let status = response.status();
            let location = response.headers().get("location").cloned();
            pages.push((status, location, response.text().await.unwrap()));
            let response = visitor.post(app.url("/api/v1/privacy-requests"))
                .json(&serde_json::json!({"requester_name": "Someone", "requester_email": email,
                    "relationship": "self", "country": "US", "state": "CA", "rights": ["know"]}))
                .send().await.unwrap();
            apis.push((response.status(), response.text().await.unwrap()));
        }
        assert_eq!(pages[0], pages[1], "the page answers alike");
        assert_eq!(apis[0], apis[1], "the API answers alike");
        assert_eq!(apis[0].0, StatusCode::ACCEPTED);
        // Both addresses get a code: owning the address is what the code proves.
        app.wait_for_mail("cleo@example.org", "privacy request code").await;
        app.wait_for_mail("nobody-here@example.org", "privacy request code").await;
    }
}

mod rate_limits {
    use super::*;

    async fn body(app: &common::TestApp) {
        let visitor = app.new_client();
        let ask = |email: &'static str| {
            let visitor = visitor.clone();
            async move {
                public_request(
                    app,
                    &visitor,
                    &[
                        ("requester_name", "R"),
                        ("requester_email", email),
                        ("relationship", "self"),
                        ("rights", "know"),
                    ],
                )
                .await
                .status()
            }
        };
        assert_eq!(ask("one@example.org").await, StatusCode::SEE_OTHER);
        assert_eq!(ask("one@example.org").await, StatusCode::SEE_OTHER);
        assert_eq!(
            ask("one@example.org").await,
            StatusCode::TOO_MANY_REQUESTS,
            "per address"
        );
        assert_eq!(ask("two@example.org").await, StatusCode::SEE_OTHER);
        assert_eq!(
            ask("three@example.org").await,
            StatusCode::TOO_MANY_REQUESTS,
            "per client address"
        );
        // Codes count too: wrong codes close the request after the allowed attempts.
        let mail = app
            .wait_for_mail("two@example.org", "privacy request code")
            .await;
        let verify = link_with(app, &mail, "/privacy/requests/verify/");
        let token = verify.rsplit('/').next().unwrap().to_string();
        for _ in 0..2 {
            let response = visitor
                .post(app.url("/api/v1/privacy-requests/verify"))
                .json(&serde_json::json!({"token": token, "code": "11111111"}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        }
        let id = last_request_id(app).await;
        assert_eq!(request_state(app, id).await, "unverifiable");
    }

    fn adjust(config: &mut covenant::Config) {
        config.requests.per_address_per_hour = 2;
        config.requests.per_ip_per_hour = 4;
        config.requests.code_attempts = 2;
    }

    /// Proves: R3
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let app = common::spawn_app_with(common::Backend::Sqlite, adjust)
            .await
            .unwrap();
        body(&app).await;
        app.stop().await;
    }

    /// Proves: R3
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let Some(app) = common::spawn_app_with(common::Backend::Postgres, adjust).await else {
            return;
        };
        body(&app).await;
        app.stop().await;
    }
}

on_both_stores! {
    /// Proves: R2, C4
    async fn staff_log_emailed_requests_and_written_opt_outs_apply_at_once(app) {
        app.member("dora").await;
        let dora = user_id(app, "dora").await;
        let (staff, _) = privacy_officer(app, "olga").await;
        let response = post_form(app, &staff, "/staff/requests/log", "/staff/requests/log", &[
            ("requester_name", "Dora"), ("requester_email", "dora@example.org"),
            ("relationship", "self"), ("country", "US"), ("state", "CA"),
            ("subject_line", "California Opt-Out"),
            ("emailed_message", "Please do not sell my data."),
        ]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let id: i64 = response.headers()["location"].to_str().unwrap().rsplit('/').next().unwrap().parse().unwrap();
        assert_eq!(request_state(app, id).await, "fulfilled", "a written opt-out applies when logged");
        let state = app.state.consent
            .state_of(&covenant_core::consent::ConsentSubject::Account(dora)).await.unwrap();
        assert_eq!(state.choice(covenant_core::policy::CookieCategory::Advertising),
            Some(covenant_core::consent::Choice::Denied));
        let page = app.page(&staff, &format!("/staff/requests/{id}")).await;
        assert!(page.contains("Please do not sell my data.") && page.contains("Subject: California Opt-Out"));
        // An ordinary emailed request: a code goes to the subject.
        let response = post_form(app, &staff, "/staff/requests/log", "/staff/requests/log", &[
            ("requester_name", "Dora"), ("requester_email", "dora@example.org"),
            ("relationship", "self"), ("rights", "access"), ("emailed_message", "Send me my data"),
        ]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        app.wait_for_mail("dora@example.org", "privacy request code").await;
        // Members without the role are refused.
        let member = browser_for(app, "dora", None).await;
        let response = member.get(app.url("/staff/requests")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
}

on_both_stores! {
    /// Proves: R2, R3
    async fn the_api_takes_requests_from_members_and_visitors(app) {
        let token = app.member("eve").await;
        let response = app.client.post(app.url("/api/v1/privacy-requests")).bearer_auth(&token)
            .json(&serde_json::json!({"country": "GB", "rights": ["access", "rectification"]}))
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["request_ids"].as_array().unwrap().len(), 2);
        let mine: serde_json::Value = app.client.get(app.url("/api/v1/privacy-requests"))
            .bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        assert_eq!(mine.as_array().unwrap().len(), 2);
        assert_eq!(mine[0]["jurisdiction"], "uk");
        assert_eq!(mine[0]["state"], "in_progress");
        // A visitor: the emailed code verifies through the API.
        let visitor = app.new_client();
        let response = visitor.post(app.url("/api/v1/privacy-requests"))
            .json(&serde_json::json!({"requester_name": "F", "requester_email": "f@example.org",
                "relationship": "self", "rights": ["know"]}))
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let mail = app.wait_for_mail("f@example.org", "privacy request code").await;
        let verify = link_with(app, &mail, "/privacy/requests/verify/");
        let response = visitor.post(app.url("/api/v1/privacy-requests/verify"))
            .json(&serde_json::json!({"token": verify.rsplit('/').next().unwrap(), "code": code_in(&mail)}))
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["verification"], "email_code");
        let bad = visitor.post(app.url("/api/v1/privacy-requests"))
            .json(&serde_json::json!({"requester_email": "x", "relationship": "cousin", "rights": ["fly"]}))
            .send().await.unwrap();
        assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let doc = app.page(&visitor, "/api/openapi.json").await;
        assert!(doc.contains("/api/v1/privacy-requests") && doc.contains("rate_limited"));
    }
}

mod agent_evidence {
    use super::*;

    async fn body(app: &common::TestApp) {
        app.member("gus").await;
        let agent = app.new_client();
        let response = public_request(
            app,
            &agent,
            &[
                ("requester_name", "Agent Smith"),
                ("requester_email", "agent@example.org"),
                ("relationship", "agent"),
                ("subject_email", "gus@example.org"),
                ("country", "US"),
                ("state", "VA"),
                ("rights", "access"),
            ],
        )
        .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let to_agent = app.wait_for_mail("agent@example.org", "We received").await;
        let status = link_with(app, &to_agent, "/privacy/requests/status/");
        let to_subject = app
            .wait_for_mail("gus@example.org", "Did you ask someone")
            .await;
        assert!(!to_subject.contains("Agent Smith") && !to_subject.contains("agent@example.org"));
        let wrong = upload(app, &agent, &status, b"GIF89a not a letter".to_vec()).await;
        assert_eq!(
            wrong.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "wrong type"
        );
        let mut big = b"%PDF-1.7\n".to_vec();
        big.resize(3000, b'x');
        let large = upload(app, &agent, &status, big).await;
        assert_eq!(large.status(), StatusCode::PAYLOAD_TOO_LARGE, "too large");
        // The subject confirms; without evidence the request waits.
        let verify = link_with(app, &to_subject, "/privacy/requests/verify/");
        let subject = app.new_client();
        let response = post_form(
            app,
            &subject,
            &verify,
            &verify,
            &[("code", &code_in(&to_subject))],
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("Thank you for confirming")
        );
        let id = last_request_id(app).await;
        assert_eq!(request_state(app, id).await, "verifying");
        let good = upload(app, &agent, &status, b"%PDF-1.7\nsigned letter".to_vec()).await;
        assert_eq!(good.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            request_state(app, id).await,
            "fulfilled",
            "both confirmation and evidence, and access is carried out at once"
        );
        let decision = app
            .wait_for_mail("agent@example.org", "We did what you asked")
            .await;
        // Confirmed by the emailed code alone: the categories held, not the data itself,
        // which needs the higher level (access to specific pieces).
        assert!(
            decision.contains("The categories of personal data we hold about you"),
            "the categories: {decision}"
        );
        assert!(
            !decision.contains("/privacy/export/"),
            "no archive at this level: {decision}"
        );
        assert!(
            decision.contains("specific pieces"),
            "says how to get the data itself"
        );
        let evidence = app
            .store
            .submission_evidence(
                app.store
                    .privacy_request(id)
                    .await
                    .unwrap()
                    .unwrap()
                    .submission_id,
            )
            .await
            .unwrap();
        assert_eq!(evidence.len(), 1);
        assert_eq!(evidence[0].content_type, "application/pdf");
        assert!(
            audit_kinds(app)
                .await
                .iter()
                .any(|l| l.starts_with("request_evidence_added"))
        );
    }

    fn adjust(config: &mut covenant::Config) {
        config.requests.evidence_max_bytes = 2048;
    }

    /// Proves: R4, R7
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let app = common::spawn_app_with(common::Backend::Sqlite, adjust)
            .await
            .unwrap();
        body(&app).await;
        app.stop().await;
    }

    /// Proves: R4, R7
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let Some(app) = common::spawn_app_with(common::Backend::Postgres, adjust).await else {
            return;
        };
        body(&app).await;
        app.stop().await;
    }
}

on_both_stores! {
    /// Proves: R6
    async fn an_appeal_is_decided_by_a_different_member_of_staff(app) {
        app.member("hal").await;
        let token = app.bearer("hal").await;
        let response = app.client.post(app.url("/api/v1/privacy-requests")).bearer_auth(&token)
            .json(&serde_json::json!({"country": "US", "state": "VA", "rights": ["rectification"]}))
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let id = last_request_id(app).await;
        let (first, first_id) = privacy_officer(app, "ines").await;
        let (second, _) = privacy_officer(app, "jon").await;
        let path = format!("/staff/requests/{id}");
        let action = format!("{path}/actions");
        // A decline needs an explanation.
        let response = post_form(app, &first, &path, &action, &[("action", "decline"), ("code", "legal_exception")]).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let response = post_form(app, &first, &path, &action, &[("action", "decline"), ("code", "legal_exception"),
            ("text", "Tax law makes us keep invoices for ten years.")]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(request_state(app, id).await, "declined");
        let decision = app.wait_for_mail("hal@example.org", "We declined").await;
        assert!(decision.contains("Tax law makes us keep invoices") && decision.contains("appeal this decision within 60 days"));
        assert!(decision.contains("Virginia Attorney General"), "{decision}");
        // The requester appeals from the link in the decision.
        let hal = app.new_client();
        let link = link_with(app, &decision, "/privacy/requests/status/");
        let status = link.split('#').next().unwrap().to_string();
        assert_eq!(link, format!("{status}#request-{id}"), "the link opens this request's part of the page");
        let page = app.page(&hal, &status).await;
        assert!(page.contains("Appeal this decision"));
        let response = post_form(app, &hal, &status, &format!("{status}/appeal"),
            &[("request_id", &id.to_string()), ("statement", "I closed my account")]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let row = app.store.privacy_request(id).await.unwrap().unwrap();
        assert_eq!(row.state, "appealed");
        let expected_due = covenant::requests::day_of(covenant::now()).saturating_add(time::Duration::days(60));
        assert_eq!(row.appeal_due_on.as_deref(), Some(expected_due.to_string().as_str()));
        // The appeal runs on its own clock: the original day, long past, raises no alarm, and
        // the queue orders and shows it by the appeal's day.
        let long_ago = covenant::requests::day_of(covenant::now()).saturating_sub(time::Duration::days(30));
        app.store.backdate_request(id, row.received_at, &row.received_on, &long_ago.to_string()).await.unwrap();
        let round = app.state.requests.run_due(covenant::now()).await.unwrap();
        assert_eq!(round.overdue_alarms, 0, "the appeal is not overdue");
        let queued = app.store.request_queue(&Default::default()).await.unwrap();
        assert_eq!(queued.iter().find(|r| r.id == id).unwrap().due_day(), expected_due.to_string());
        let staff_page = app.page(&second, "/staff/requests").await;
        assert!(staff_page.contains(&expected_due.to_string()), "{staff_page}");
        // The one who declined cannot decide the appeal.
        let response = post_form(app, &first, &path, &action, &[("action", "reverse"), ("text", "ok")]).await;
        assert_eq!(response.status(), StatusCode::CONFLICT);
        let response = post_form(app, &second, &path, &action, &[("action", "uphold"),
            ("text", "The invoices are covered by the legal exception.")]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(request_state(app, id).await, "appeal_upheld");
        let decided = app.wait_for_mail("hal@example.org", "appeal").await;
        assert!(decided.contains("kept our decision") && decided.contains("Virginia Attorney General"));
        let audit = audit_kinds(app).await;
        assert!(audit.contains(&format!("request_transitioned request={id} method=declined reason=declined code=legal_exception")), "{audit:?}");
        assert!(audit.contains(&format!("request_transitioned request={id} method=appeal_lodged reason=appealed")));
        assert!(audit.contains(&format!("request_transitioned request={id} method=appeal_decided reason=appeal_upheld")));
        let entries = app.store.audit_page(&Default::default(), 10_000, 0).await.unwrap().0;
        assert!(entries.iter().any(|e| e.kind == "request_transitioned" && e.actor_id == Some(first_id)
            && e.details.contains("method=declined")));
    }
}

on_both_stores! {
    /// Proves: R5, J1
    async fn deadlines_follow_the_jurisdiction_with_extensions_reminders_and_alarms(app) where config: staff_review; {
        let policy = Policy::default_policy();
        let today = covenant::requests::day_of(covenant::now());
        let cases = [
            ("US", "CA", Jurisdiction::California, "ca@example.org"),
            ("DE", "", Jurisdiction::EuEea, "de@example.org"),
            ("US", "VA", Jurisdiction::Virginia, "va@example.org"),
            ("JP", "", Jurisdiction::Other, "jp@example.org"),
        ];
        let visitor = app.new_client();
        for (country, state, _, email) in cases {
            let response = public_request(app, &visitor, &[
                ("requester_name", "D"), ("requester_email", email), ("relationship", "self"),
                ("country", country), ("state", state), ("rights", "know"),
            ]).await;
            assert_eq!(response.status(), StatusCode::SEE_OTHER);
        }
        let queue = app.store.request_queue(&Default::default()).await.unwrap();
        for (_, _, jurisdiction, _) in cases {
            let row = queue.iter().find(|r| r.jurisdiction == jurisdiction.as_str()).unwrap();
            let expected = due_date_for(&policy, jurisdiction, today, &[]);
            assert_eq!(row.due_on, expected.to_string(), "{jurisdiction:?}");
        }
        let (staff, _) = privacy_officer(app, "kim").await;
        let page = app.page(&staff, "/staff/requests?jurisdiction=california").await;
        let ca = queue.iter().find(|r| r.jurisdiction == "california").unwrap();
        assert!(page.contains(&format!("data-request=\"{}\"", ca.id)));
        assert!(!page.contains(&format!("data-request=\"{}\"", queue.iter().find(|r| r.jurisdiction == "eu_eea").unwrap().id)));
        // An extension tells the requester, with the reason.
        let path = format!("/staff/requests/{}", ca.id);
        let response = post_form(app, &staff, &path, &format!("{path}/actions"),
            &[("action", "extend"), ("text", "Our archive is offline this month.")]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let notice = app.wait_for_mail("ca@example.org", "needs more time").await;
        let extended = today.saturating_add(time::Duration::days(90));
        assert!(notice.contains(&extended.to_string()) && notice.contains("archive is offline"));
        let response = post_form(app, &staff, &path, &format!("{path}/actions"),
            &[("action", "extend"), ("text", "again")]).await;
        assert_eq!(response.status(), StatusCode::CONFLICT, "one extension only");
        // Eight days on, nobody verified: a reminder was sent before, and now they close.
        let round = app.state.requests.run_due(covenant::now() + 3 * 86_400).await.unwrap();
        assert_eq!(round.reminded, 4);
        app.wait_for_mail("de@example.org", "Reminder").await;
        let round = app.state.requests.run_due(covenant::now() + 8 * 86_400).await.unwrap();
        assert_eq!(round.closed, 4);
        assert_eq!(request_state(app, ca.id).await, "unverifiable");
        // An open request past its day raises the alarm once: email, dashboard and metric.
        app.member("lou").await;
        let token = app.bearer("lou").await;
        app.client.post(app.url("/api/v1/privacy-requests")).bearer_auth(&token)
            .json(&serde_json::json!({"country": "US", "state": "CA", "rights": ["access"]}))
            .send().await.unwrap();
        let id = last_request_id(app).await;
        let long_ago = today.saturating_sub(time::Duration::days(60));
        app.store.backdate_request(id, covenant::now() - 60 * 86_400, &long_ago.to_string(),
            &today.saturating_sub(time::Duration::days(15)).to_string()).await.unwrap();
        let round = app.state.requests.run_due(covenant::now()).await.unwrap();
        assert_eq!(round.overdue_alarms, 1);
        let round = app.state.requests.run_due(covenant::now()).await.unwrap();
        assert_eq!(round.overdue_alarms, 0, "once per request");
        app.wait_for_mail("kim@example.org", "overdue").await;
        let page = app.page(&staff, "/staff/requests").await;
        assert!(page.contains("1 overdue"), "{page}");
        let metrics = app.page(&visitor, "/metrics").await;
        assert!(metrics.contains("covenant_privacy_requests_overdue 1"), "{metrics}");
    }
}

on_both_stores! {
    /// Proves: R10
    async fn the_yearly_report_adds_up(app) where config: staff_review; {
        let (staff, _) = privacy_officer(app, "max").await;
        let mut ids = Vec::new();
        for name in ["nadia", "oskar", "petra", "quinn"] {
            let token = app.member(name).await;
            app.client.post(app.url("/api/v1/privacy-requests")).bearer_auth(&token)
                .json(&serde_json::json!({"country": "US", "state": "CO", "rights": ["access", "deletion"]}))
                .send().await.unwrap();
            ids.push(last_request_id(app).await);
        }
        let act = |id: i64, fields: Vec<(&'static str, &'static str)>| {
            let staff = staff.clone();
            async move {
                let path = format!("/staff/requests/{id}");
                let response = post_form(app, &staff, &path, &format!("{path}/actions"), &fields).await;
                assert_eq!(response.status(), StatusCode::SEE_OTHER);
            }
        };
        act(ids[0], vec![("action", "fulfil")]).await;
        act(ids[1], vec![("action", "partly"), ("text", "Old posts are kept anonymized.")]).await;
        act(ids[2], vec![("action", "decline"), ("code", "legal_exception"), ("text", "Legal hold.")]).await;
        let year = covenant::requests::day_of(covenant::now()).year();
        let report = covenant::requests::report::for_year(&app.store, year).await.unwrap();
        assert_eq!(report.total.received, 8);
        let deletion = report.rights.iter().find(|f| f.right == "deletion").unwrap();
        assert_eq!((deletion.received, deletion.complied_in_whole, deletion.complied_in_part, deletion.denied, deletion.open), (4, 1, 1, 1, 1));
        assert_eq!(deletion.denied_by_reason.get("legal_exception"), Some(&1));
        for f in report.rights.iter().chain([&report.total]) {
            assert_eq!(f.received, f.complied_in_whole + f.complied_in_part + f.denied + f.closed_otherwise + f.open, "{}", f.right);
        }
        assert_eq!(report.per_month.iter().sum::<i64>(), 8);
        assert_eq!(deletion.median_days_to_respond, Some(0.0));
        let page = app.page(&staff, &format!("/staff/requests/report?year={year}")).await;
        assert!(page.contains("data-right=\"deletion\"") && page.contains("<svg") && page.contains("legal_exception: 1"));
        assert!(report.csv().contains("deletion,4,1,1,1,legal_exception=1,0,1,"));
        // The command line prints the same figures.
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_covenant"));
        command.args(["privacy", "report", "--year", &year.to_string(), "--format", "csv", "--data-dir"])
            .arg(app.data_dir.path());
        if !app.state.config.database_url.is_empty() {
            command.args(["--database-url", &app.state.config.database_url]);
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(String::from_utf8(output.stdout).unwrap(), report.csv());
    }
}

/// The numbers in every `attribute="…"` of `html`, in page order.
fn ids_of(html: &str, attribute: &str) -> Vec<i64> {
    let needle = format!("{attribute}=\"");
    html.match_indices(&needle)
        .map(|(at, _)| {
            html[at + needle.len()..]
                .split('"')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

/// The text of each cell of the table row that starts with `<tr {marker}>`.
fn row_cells(html: &str, marker: &str) -> Vec<String> {
    let start = html
        .find(&format!("<tr {marker}>"))
        .unwrap_or_else(|| panic!("a row {marker}"));
    let row = &html[start..start + html[start..].find("</tr>").unwrap()];
    row.split(['<', '>'])
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, text)| text.trim().to_string())
        .filter(|text| !text.is_empty())
        .collect()
}

on_both_stores! {
    /// Proves: R4, R10
    async fn privacy_staff_download_an_agents_evidence_and_every_download_is_audited(app) {
        app.member("sam").await;
        let agent = app.new_client();
        let response = public_request(app, &agent, &[
            ("requester_name", "Agent Ames"), ("requester_email", "ames@example.org"),
            ("relationship", "agent"), ("subject_email", "sam@example.org"),
            ("country", "US"), ("state", "VA"), ("rights", "access"),
        ]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let to_agent = app.wait_for_mail("ames@example.org", "We received").await;
        let status = link_with(app, &to_agent, "/privacy/requests/status/");
        let letter = b"%PDF-1.7\n% a signed letter of authority\n\x00\x01\xfe\xff%%EOF\n".to_vec();
        assert_eq!(upload(app, &agent, &status, letter.clone()).await.status(), StatusCode::SEE_OTHER);
        let id = last_request_id(app).await;
        let (officer, officer_id) = privacy_officer(app, "pia").await;
        let page = app.page(&officer, &format!("/staff/requests/{id}")).await;
        let evidence_id = *ids_of(&page, "data-evidence").first().expect("the evidence is listed");
        let download = format!("/staff/requests/{id}/evidence/{evidence_id}");
        assert!(page.contains(&format!("href=\"{download}\"")), "the staff page links the file");

        let response = officer.get(app.url(&download)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "application/pdf");
        assert_eq!(headers["content-disposition"], format!("attachment; filename=\"evidence-{evidence_id}.pdf\""));
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(headers["cache-control"].to_str().unwrap().contains("no-store"));
        assert_eq!(response.bytes().await.unwrap().to_vec(), letter, "the exact bytes uploaded");

        // A member, a moderator (with 2-step verification) and a visitor are refused.
        let member = browser_for(app, "sam", None).await;
        let (moderator, _) = staff_member(app, "moe", Role::Moderator).await;
        for (who, client, expected) in [
            ("member", &member, StatusCode::FORBIDDEN),
            ("moderator", &moderator, StatusCode::FORBIDDEN),
            ("visitor", &app.new_client(), StatusCode::UNAUTHORIZED),
        ] {
            let response = client.get(app.url(&download)).send().await.unwrap();
            assert_eq!(response.status(), expected, "{who}");
            let body = response.bytes().await.unwrap();
            assert!(!body.windows(8).any(|w| w == b"%PDF-1.7"), "{who} sees none of the file");
        }
        // A request number that is not the evidence's opens nothing.
        let other = officer.get(app.url(&format!("/staff/requests/{}/evidence/{evidence_id}", id + 1000)))
            .send().await.unwrap();
        assert_eq!(other.status(), StatusCode::NOT_FOUND);

        let entries = app.store.audit_page(&Default::default(), 10_000, 0).await.unwrap().0;
        let opened: Vec<_> = entries.iter().filter(|e| e.kind == "request_evidence_opened").collect();
        assert_eq!(opened.len(), 1, "one download, one entry; refusals read nothing");
        assert_eq!(opened[0].actor_id, Some(officer_id));
        assert_eq!(opened[0].subject_id, Some(user_id(app, "sam").await));
        assert_eq!(opened[0].details, format!("request={id} evidence={evidence_id}"));
        assert!(entries.iter().all(|e| !e.details.contains('@')), "identifiers only");
    }
}

on_both_stores! {
    /// Proves: R10
    async fn the_report_charts_days_to_close_with_the_reports_own_figures(app) where config: staff_review; {
        let (staff, _) = privacy_officer(app, "rhea").await;
        let year = covenant::requests::day_of(covenant::now()).year() - 1;
        let day = |month: time::Month, d: u8| time::Date::from_calendar_date(year, month, d).unwrap();
        // Four requests of last year: three answered now, one still open.
        let seeds = [
            (day(time::Month::February, 10), Some("fulfil")),
            (day(time::Month::February, 20), Some("decline")),
            (day(time::Month::February, 25), None),
            (day(time::Month::March, 5), Some("partly")),
        ];
        for (i, (received, decision)) in seeds.iter().enumerate() {
            let token = app.member(&format!("seed{i}")).await;
            let response = app.client.post(app.url("/api/v1/privacy-requests")).bearer_auth(&token)
                .json(&serde_json::json!({"country": "US", "state": "CO", "rights": ["access"]}))
                .send().await.unwrap();
            assert_eq!(response.status(), StatusCode::CREATED);
            let id = last_request_id(app).await;
            let at = received.midnight().assume_utc().unix_timestamp() + 12 * 3600;
            app.store.backdate_request(id, at, &received.to_string(),
                &received.saturating_add(time::Duration::days(45)).to_string()).await.unwrap();
            let path = format!("/staff/requests/{id}");
            let fields: Vec<(&str, &str)> = match decision {
                Some("fulfil") => vec![("action", "fulfil")],
                Some("decline") => vec![("action", "decline"), ("code", "not_found"), ("text", "No data.")],
                Some(_) => vec![("action", "partly"), ("text", "Some is gone.")],
                None => continue,
            };
            let response = post_form(app, &staff, &path, &format!("{path}/actions"), &fields).await;
            assert_eq!(response.status(), StatusCode::SEE_OTHER);
        }
        let report = covenant::requests::report::for_year(&app.store, year).await.unwrap();
        assert_eq!(report.per_month[1], 3);
        assert_eq!(&report.answered_per_month[1..3], &[2, 1]);
        // Days to close from the seeded days: both February answers and the March one.
        let now = covenant::now();
        let days_since = |d: time::Date| (now - (d.midnight().assume_utc().unix_timestamp() + 12 * 3600)) as f64 / 86_400.0;
        let round = |v: f64| (v * 10.0).round() / 10.0;
        let february = round((days_since(seeds[0].0) + days_since(seeds[1].0)) / 2.0);
        let march = round(days_since(seeds[3].0));
        for (got, expected) in [(report.median_days_to_close_per_month[1], february), (report.median_days_to_close_per_month[2], march)] {
            assert!((got.unwrap() - expected).abs() <= 0.1, "{got:?} against {expected}");
        }

        let page = app.page(&staff, &format!("/staff/requests/report?year={year}")).await;
        assert!(page.contains("aria-labelledby=\"chart-days-to-close-title chart-days-to-close-desc\""));
        assert!(page.contains(&format!("<title id=\"chart-days-to-close-title\">Median days to close per month in {year}</title>")));
        assert!(page.contains("<desc id=\"chart-received-desc\">"), "both charts describe themselves");
        for (number, month) in report.months().iter().enumerate() {
            let cells = row_cells(&page, &format!("data-month=\"{}\"", number + 1));
            let mut expected = vec![month.month.to_string(), month.received.to_string(), month.answered.to_string()];
            if !month.median_days_to_close.is_empty() {
                expected.push(month.median_days_to_close.clone());
            }
            assert_eq!(cells, expected, "the table's {} row", month.month);
            let bar = match report.median_days_to_close_per_month[number] {
                Some(d) => format!("{}: median {d:.1} days to close, {} answered", month.month, month.answered),
                None => format!("{}: none answered", month.month),
            };
            assert!(page.contains(&format!("<title>{bar}</title>")), "the chart's {} bar", month.month);
            assert!(page.contains(&format!("<title>{}: {} received</title>", month.month, month.received)));
        }
    }
}

on_both_stores! {
    /// Proves: R5
    async fn the_staff_queue_pages_by_due_date_and_keeps_its_filters(app) where config: staff_review; {
        let all_rights: Vec<&str> = covenant::requests::RIGHTS.iter()
            .map(|(_, name, _)| *name)
            .filter(|name| !matches!(*name, "appeal" | "complain_to_authority"))
            .collect();
        // Restriction, objection and withdrawal close at once even under review (R9), so nine
        // members' requests fill more than one page.
        for i in 0..9 {
            let token = app.member(&format!("queue{i}")).await;
            let response = app.client.post(app.url("/api/v1/privacy-requests")).bearer_auth(&token)
                .json(&serde_json::json!({"country": "US", "state": "CA", "rights": all_rights}))
                .send().await.unwrap();
            assert_eq!(response.status(), StatusCode::CREATED);
        }
        let token = app.member("elsewhere").await;
        app.client.post(app.url("/api/v1/privacy-requests")).bearer_auth(&token)
            .json(&serde_json::json!({"country": "DE", "rights": ["access"]}))
            .send().await.unwrap();
        let german = last_request_id(app).await;
        let expected: Vec<i64> = app.store.request_queue(&covenant::store::QueueFilter {
            jurisdiction: Some("california".into()), open_only: true, ..Default::default()
        }).await.unwrap().into_iter().map(|r| r.id).collect();
        let per_page = covenant::web::requests::QUEUE_PAGE_SIZE as usize;
        assert!(expected.len() > per_page, "{} open Californian requests", expected.len());

        let (staff, _) = privacy_officer(app, "quentin").await;
        let first = app.page(&staff, "/staff/requests?right=&state=&jurisdiction=california").await;
        let first_ids = ids_of(&first, "data-request");
        assert_eq!(first_ids.len(), per_page);
        assert!(first.contains("Page 1 of 2") && first.contains(&format!("{} request(s).", expected.len())));
        assert!(!first.contains("rel=\"prev\""));
        let next = first.split("rel=\"next\" href=\"").nth(1).expect("a link to the next page")
            .split('"').next().unwrap().replace("&#38;", "&").replace("&amp;", "&");
        assert_eq!(next, "/staff/requests?jurisdiction=california&page=2", "the filter goes along");
        let second = app.page(&staff, &next).await;
        let second_ids = ids_of(&second, "data-request");
        assert!(second.contains("Page 2 of 2") && second.contains("rel=\"prev\"") && !second.contains("rel=\"next\""));
        assert!(second.contains("<option value=\"california\" selected>"), "the form shows the filter");
        let together: Vec<i64> = first_ids.iter().chain(&second_ids).copied().collect();
        assert_eq!(together, expected, "earliest due first, none repeated or skipped");
        assert!(!together.contains(&german), "the filter holds on every page");
        // The filters that stay on include the closed ones and a right.
        let closed = app.page(&staff, "/staff/requests?right=opt_out_sale&all=1").await;
        assert_eq!(ids_of(&closed, "data-request").len(), 9, "the fulfilled opt-outs");
        assert!(!closed.contains("class=\"pager\""), "one page needs no pager");
        let beyond = staff.get(app.url("/staff/requests?jurisdiction=california&page=3")).send().await.unwrap();
        assert_eq!(beyond.status(), StatusCode::NOT_FOUND);
        let nonsense = staff.get(app.url("/staff/requests?page=0")).send().await.unwrap();
        assert_eq!(nonsense.status(), StatusCode::BAD_REQUEST);

        // The API walks the same queue page by page, with the filter, in the same order; a
        // request decided while the walk goes on makes no other one repeat or go missing.
        let token = staff_bearer(app, "quentin").await;
        let mut walked: Vec<i64> = Vec::new();
        let mut after = String::new();
        let mut pages = 0;
        loop {
            let page = api_queue_page(app, &token, &format!("jurisdiction=california&limit=7&after={after}")).await;
            let ids: Vec<i64> = page["requests"].as_array().unwrap().iter()
                .map(|r| r["id"].as_i64().unwrap()).collect();
            assert!(!ids.is_empty() && ids.len() <= 7, "{page}");
            assert!(page["requests"].as_array().unwrap().iter().all(|r| r["jurisdiction"] == "california"));
            walked.extend(&ids);
            pages += 1;
            if pages == 1 {
                let response = app.client.post(app.url(&format!("/api/v1/staff/privacy-requests/{}/actions", ids[0])))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"action": "decline", "code": "manifestly_unfounded", "text": "A repeat."}))
                    .send().await.unwrap();
                assert_eq!(response.status(), StatusCode::OK, "declined during the walk");
            }
            match page["next"].as_str() {
                Some(next) => after = next.to_string(),
                None => break,
            }
        }
        assert_eq!(pages, expected.len().div_ceil(7), "no empty page at the end");
        assert_eq!(walked, expected, "every request once, earliest due first");
        // The unfiltered open queue too, in pages of the largest size.
        let open: Vec<i64> = app.store.request_queue(&covenant::store::QueueFilter {
            open_only: true, ..Default::default()
        }).await.unwrap().into_iter().map(|r| r.id).collect();
        let first = api_queue_page(app, &token, "limit=200").await;
        let ids: Vec<i64> = first["requests"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
        assert_eq!(ids, open);
        assert!(first["next"].is_null(), "{first}");
        for bad in ["limit=0", "limit=201", "after=yesterday", "after=2026-01-01.x"] {
            let response = app.client.get(app.url(&format!("/api/v1/staff/privacy-requests?{bad}")))
                .bearer_auth(&token).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
        let doc: serde_json::Value = app.client.get(app.url("/api/openapi.json")).send().await.unwrap()
            .json().await.unwrap();
        let params = doc["paths"]["/api/v1/staff/privacy-requests"]["get"]["parameters"].to_string();
        assert!(params.contains("\"after\"") && params.contains("\"limit\""), "{params}");
    }
}

/// One page of the staff queue API.
async fn api_queue_page(app: &common::TestApp, token: &str, query: &str) -> serde_json::Value {
    let response = app
        .client
        .get(app.url(&format!("/api/v1/staff/privacy-requests?{query}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    response.json().await.unwrap()
}

/// An API token of a member of staff made by `staff_member` (password and a fresh 2-step code).
async fn staff_bearer(app: &common::TestApp, name: &str) -> String {
    let id = user_id(app, name).await;
    let stored = app
        .store
        .two_factor_of(id)
        .await
        .unwrap()
        .unwrap()
        .stored_secret;
    // The test holds the server's key file, so it can open the sealed secret as the server does.
    let secret = covenant::two_factor::SecretSeal::new(&app.state.audit_key)
        .open(id, &stored)
        .unwrap();
    let code = covenant::two_factor::code_at(&secret, covenant::now() + 30).unwrap();
    let response = app
        .client
        .post(app.url("/api/v1/session"))
        .json(
            &serde_json::json!({"login": name, "password": "a long enough password", "code": code}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: serde_json::Value = response.json().await.unwrap();
    body["token"].as_str().unwrap().to_string()
}

on_both_stores! {
    /// Proves: R6
    async fn a_requester_without_an_account_appeals_from_the_decision_email(app) {
        let visitor = app.new_client();
        let response = public_request(app, &visitor, &[
            ("requester_name", "Vera"), ("requester_email", "vera@example.org"),
            ("relationship", "self"), ("country", "US"), ("state", "VA"), ("rights", "access"),
        ]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert!(app.store.user_by_email("vera@example.org").await.unwrap().is_none(), "no account");
        let mail = app.wait_for_mail("vera@example.org", "privacy request code").await;
        let verify = link_with(app, &mail, "/privacy/requests/verify/");
        let response = post_form(app, &visitor, &verify, &verify, &[("code", &code_in(&mail))]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let id = last_request_id(app).await;
        assert_eq!(request_state(app, id).await, "in_progress");
        let (staff, _) = privacy_officer(app, "walt").await;
        let path = format!("/staff/requests/{id}");
        let response = post_form(app, &staff, &path, &format!("{path}/actions"), &[("action", "decline"),
            ("code", "not_found"), ("text", "We hold nothing under this address.")]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);

        // From the email alone, in a browser that never saw the site.
        let decision = app.wait_for_mail("vera@example.org", "We declined").await;
        assert!(decision.contains("You can appeal this decision within 60 days"), "{decision}");
        let link = link_with(app, &decision, "/privacy/requests/status/");
        let (status, anchor) = link.split_once('#').expect("the link points at the request");
        assert_eq!(anchor, format!("request-{id}"));
        let fresh = app.new_client();
        let page = app.page(&fresh, status).await;
        let section = &page[page.find(&format!("id=\"{anchor}\"")).expect("the request's section")..];
        let section = &section[..section.find("</section>").unwrap()];
        assert!(section.contains("We hold nothing under this address.") && section.contains("Appeal this decision"));
        assert!(section.contains(&format!("name=\"request_id\" value=\"{id}\"")));
        let response = post_form(app, &fresh, status, &format!("{status}/appeal"),
            &[("request_id", &id.to_string()), ("statement", "I wrote from this address before.")]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(request_state(app, id).await, "appealed");
        let page = app.page(&fresh, status).await;
        assert!(page.contains("Your appeal will be decided by"));
        let staff_page = app.page(&staff, &path).await;
        assert!(staff_page.contains("Appeal statement: I wrote from this address before."));
        let entries = app.store.audit_page(&Default::default(), 10_000, 0).await.unwrap().0;
        assert!(entries.iter().any(|e| e.kind == "request_transitioned" && e.actor_id.is_none()
            && e.details == format!("request={id} method=appeal_lodged reason=appealed")));
    }
}

/// Registers a 14-year-old in France whose parent consents from `parent`'s address.
async fn minor_with_consent(app: &common::TestApp, username: &str, parent: &str) -> i64 {
    let year = covenant::requests::day_of(covenant::now()).year() - 14;
    let response = app
        .client
        .post(app.url("/api/v1/users"))
        .json(
            &serde_json::json!({"username": username, "email": format!("{username}@example.org"),
            "password": PASSWORD, "birth_year": year, "country": "FR", "parent_email": parent}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let mail = app.wait_for_mail(parent, "asks to join").await;
    let path = app
        .link_in(&mail)
        .trim_start_matches(&app.address)
        .to_string();
    let browser = app.new_client();
    let response = post_form(app, &browser, &path, &path, &[]).await;
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "the parent consents"
    );
    user_id(app, username).await
}

on_both_stores! {
    /// Proves: R4, M1, R8
    async fn a_parent_with_consent_on_record_needs_no_upload_and_anyone_else_does(app) {
        let minor = minor_with_consent(app, "mia", "mum@example.org").await;
        // The parent asks, from the address that consented, to delete the minor's data.
        let mum = app.new_client();
        let response = public_request(app, &mum, &[
            ("requester_name", "Mum"), ("requester_email", "Mum@Example.org"),
            ("relationship", "parent"), ("subject_email", "mia@example.org"),
            ("country", "FR"), ("rights", "deletion"),
        ]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()["location"], "/privacy/requests/sent");
        let id = last_request_id(app).await;
        let received = app.wait_for_mail("Mum@Example.org", "We received").await;
        assert!(received.contains("is on record and serves as your evidence") && !received.contains("upload your"), "{received}");
        let status = link_with(app, &received, "/privacy/requests/status/");
        let page = app.page(&mum, &status).await;
        assert!(page.contains("id=\"consent-on-record\"") && !page.contains("name=\"evidence\""), "nothing to upload");
        let submission = app.store.submission(app.store.privacy_request(id).await.unwrap().unwrap().submission_id)
            .await.unwrap().unwrap();
        let consent_id = submission.parental_consent_id.expect("the consent is linked");
        let consent = app.store.consent_evidence(consent_id).await.unwrap().unwrap();
        assert_eq!(consent.user_id, minor);
        // The minor is still asked to confirm; with that, the request goes on.
        assert_eq!(request_state(app, id).await, "verifying");
        let to_minor = app.wait_for_mail("mia@example.org", "Did you ask someone").await;
        assert!(to_minor.contains("a parent or guardian"), "{to_minor}");
        assert!(!to_minor.to_lowercase().contains("mum@example.org"), "the parent's address stays out");
        let verify = link_with(app, &to_minor, "/privacy/requests/verify/");
        let response = post_form(app, &app.new_client(), &verify, &verify,
            &[("code", &code_in(&to_minor)), ("fact", "mia")]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(request_state(app, id).await, "fulfilled", "consent and confirmation suffice, and the deletion is carried out");
        assert!(app.store.user_by_username("mia").await.unwrap().is_none(), "the minor's account is erased");
        let erased: Vec<String> = audit_kinds(app).await.into_iter().filter(|l| l.starts_with("data_erased")).collect();
        assert_eq!(erased.len(), 1, "{erased:?}");
        assert!(app.store.submission_evidence(submission.id).await.unwrap().is_empty(), "no file was needed");
        let audit = audit_kinds(app).await;
        assert!(audit.contains(&format!("request_evidence_added request={id} method=parental_consent")), "{audit:?}");
        assert!(audit.iter().all(|line| !line.contains('@')));

        // Someone else claiming to be a parent uploads evidence, like an agent.
        let other = app.new_client();
        let response = public_request(app, &other, &[
            ("requester_name", "Aunt"), ("requester_email", "aunt@example.org"),
            ("relationship", "parent"), ("subject_email", "mia@example.org"),
            ("country", "FR"), ("rights", "access"),
        ]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()["location"], "/privacy/requests/sent", "the same answer");
        let claimed = last_request_id(app).await;
        let received = app.wait_for_mail("aunt@example.org", "We received").await;
        assert!(received.contains("upload your evidence"));
        let status = link_with(app, &received, "/privacy/requests/status/");
        assert!(app.page(&other, &status).await.contains("name=\"evidence\""));
        let mut to_minor = String::new();
        for _ in 0..300 {
            let asks: Vec<String> = app.mail_to("mia@example.org").into_iter()
                .filter(|m| m.contains("Did you ask someone")).collect();
            if asks.len() == 2 {
                to_minor = asks[1].clone();
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(!to_minor.is_empty(), "the minor is asked again");
        let verify = link_with(app, &to_minor, "/privacy/requests/verify/");
        let response = post_form(app, &app.new_client(), &verify, &verify, &[("code", &code_in(&to_minor))]).await;
        assert!(response.text().await.unwrap().contains("Thank you for confirming"));
        assert_eq!(request_state(app, claimed).await, "verifying", "no consent on record from this address");
        let claimed_submission = app.store.privacy_request(claimed).await.unwrap().unwrap().submission_id;
        assert!(app.store.submission(claimed_submission).await.unwrap().unwrap().parental_consent_id.is_none());
        let response = upload(app, &other, &status, b"%PDF-1.7\nbirth certificate".to_vec()).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(request_state(app, claimed).await, "in_progress");
    }
}

on_both_stores! {
    /// Proves: R8, R2
    async fn a_members_verified_deletion_request_erases_the_account_at_once(app) {
        let token = app.member("wren").await;
        let response = app.client.post(app.url("/api/v1/privacy-requests")).bearer_auth(&token)
            .json(&serde_json::json!({"country": "DE", "rights": ["deletion"]}))
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let id = last_request_id(app).await;
        assert_eq!(request_state(app, id).await, "fulfilled");
        assert!(app.store.user_by_username("wren").await.unwrap().is_none(), "the account is gone");
        let gone = app.client.get(app.url("/api/v1/privacy-requests")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(gone.status(), StatusCode::UNAUTHORIZED, "its sessions and tokens went with it");
        let audit = audit_kinds(app).await;
        assert!(audit.iter().any(|l| l.starts_with("data_erased")), "{audit:?}");
        let decision = app.wait_for_mail("wren@example.org", "We did what you asked").await;
        assert!(decision.contains("Delete my data") && decision.contains("We kept only:"), "{decision}");
    }
}

on_both_stores! {
    /// Proves: R8, R5
    async fn a_hand_over_left_unfinished_by_a_dead_node_is_carried_out_by_the_job(app) where config: staff_review; {
        // This node only records hand-overs, as a node that died right after committing one
        // would have left it.
        let token = app.member("otto").await;
        let response = app.client.post(app.url("/api/v1/privacy-requests")).bearer_auth(&token)
            .json(&serde_json::json!({"country": "DE", "rights": ["deletion"]}))
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let id = last_request_id(app).await;
        assert_eq!(request_state(app, id).await, "in_progress");
        assert!(app.store.user_by_username("otto").await.unwrap().is_some());

        // The next node runs the request job with fulfilment at once.
        let mut config = (*app.state.config).clone();
        config.requests.fulfil_at_once = true;
        let engine = covenant::fulfilment::RequestEngine::new(
            app.state.fulfilment.clone(), app.state.policy.clone(), app.state.purpose.clone(), &config.base_url);
        let next_node = covenant::requests::Requests::new(
            app.store.clone(), std::sync::Arc::new(config), app.state.audit_key.clone(),
            app.state.policy.clone(), app.state.consent.clone(),
        ).with_fulfilment(std::sync::Arc::new(engine));
        let round = next_node.run_due(covenant::now()).await.unwrap();
        assert_eq!(round.completed, 0, "a hand-over younger than ten minutes may still be running");
        let round = next_node.run_due(covenant::now() + 601).await.unwrap();
        assert_eq!(round.completed, 1);
        assert_eq!(request_state(app, id).await, "fulfilled");
        assert!(app.store.user_by_username("otto").await.unwrap().is_none(), "erased");
        let round = next_node.run_due(covenant::now() + 1_300).await.unwrap();
        assert_eq!(round.completed, 0, "done once");
        app.wait_for_mail("otto@example.org", "We did what you asked").await;
    }
}

on_both_stores! {
    /// Proves: R8, R6
    async fn staff_who_fulfil_a_reviewed_deletion_have_it_carried_out(app) where config: staff_review; {
        let token = app.member("pia").await;
        let response = app.client.post(app.url("/api/v1/privacy-requests")).bearer_auth(&token)
            .json(&serde_json::json!({"country": "DE", "rights": ["deletion"]}))
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let id = last_request_id(app).await;
        assert_eq!(request_state(app, id).await, "in_progress", "waiting for review");
        assert!(app.store.user_by_username("pia").await.unwrap().is_some());
        let (staff, _) = privacy_officer(app, "quinn").await;
        let path = format!("/staff/requests/{id}");
        let response = post_form(app, &staff, &path, &format!("{path}/actions"), &[("action", "fulfil")]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(request_state(app, id).await, "fulfilled");
        assert!(app.store.user_by_username("pia").await.unwrap().is_none(), "erased when staff fulfil");
        let decision = app.wait_for_mail("pia@example.org", "We did what you asked").await;
        assert!(decision.contains("We kept only:"), "{decision}");
    }
}

on_both_stores! {
    /// A refused staff action gives its lock back before it answers: the request job, run
    /// straight after, finds every waiting request. The refusal runs on a runtime that is not
    /// driven again until the end, like a node busy elsewhere, so nothing done later on that
    /// runtime's own tasks (where sqlx rolls back a transaction that was only dropped) counts.
    /// Proves: R5
    async fn a_refused_action_leaves_the_request_to_the_job_at_once(app) where config: staff_review; {
        let visitor = app.new_client();
        for email in ["r1@example.org", "r2@example.org", "r3@example.org"] {
            let response = public_request(app, &visitor, &[
                ("requester_name", "R"), ("requester_email", email), ("relationship", "self"),
                ("country", "US"), ("state", "CA"), ("rights", "know"),
            ]).await;
            assert_eq!(response.status(), StatusCode::SEE_OTHER);
        }
        let (_, staff_id) = privacy_officer(app, "ria").await;
        let queue = app.store.request_queue(&Default::default()).await.unwrap();
        assert_eq!(queue.len(), 3);
        let first = queue[0].id;
        app.state.requests.extend(staff_id, first, "The archive is offline.").await.unwrap();
        let requests = app.state.requests.clone();
        let (refused_tx, refused_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let busy_node = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let answer = runtime.block_on(requests.extend(staff_id, first, "again"));
            refused_tx.send(answer.is_err()).unwrap();
            let _ = release_rx.recv();
            drop(runtime);
        });
        assert!(refused_rx.recv().unwrap(), "one extension only");
        let round = app.state.requests.run_due(covenant::now() + 3 * 86_400).await;
        release_tx.send(()).unwrap();
        busy_node.join().unwrap();
        assert_eq!(round.unwrap().reminded, 3, "the refused request is reminded too");
    }
}

on_both_stores! {
    /// Access to the specific pieces of data is a choice of its own on every intake, and it
    /// needs the higher level of proof: the emailed code alone leaves it waiting (no archive
    /// is sent), the code plus a matching held fact lets it go on; the level reached is kept.
    /// Proves: R3, R2
    async fn specific_pieces_of_data_need_the_code_and_one_more_held_fact(app) {
        app.member("sia").await;
        let visitor = app.new_client();
        let form = app.page(&visitor, "/privacy/requests/new").await;
        assert!(form.contains("value=\"access_specific_pieces\""), "the public form offers it");
        let response = public_request(app, &visitor, &[
            ("requester_name", "Sia"), ("requester_email", "sia@example.org"),
            ("relationship", "self"), ("country", "DE"), ("rights", "access_specific_pieces"),
        ]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let id = last_request_id(app).await;
        let row = app.store.privacy_request(id).await.unwrap().unwrap();
        assert_eq!((row.right_name.as_str(), row.specific_pieces), ("access", 1));
        assert_eq!(row.required_level, "email_code_plus_fact");
        let mail = app.wait_for_mail("sia@example.org", "privacy request code").await;
        let code = code_in(&mail);
        let verify = link_with(app, &mail, "/privacy/requests/verify/");
        // The code alone: recorded, but not enough.
        let response = post_form(app, &visitor, &verify, &verify, &[("code", &code)]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let row = app.store.privacy_request(id).await.unwrap().unwrap();
        assert_eq!((row.state.as_str(), row.verification.as_str()), ("verifying", "email_code"));
        let status = app.page(&visitor, response.headers()["location"].to_str().unwrap()).await;
        assert!(status.contains("waiting for verification") && status.contains("specific pieces"), "{status}");
        assert!(app.mail_to("sia@example.org").iter().all(|m| !m.contains("We did what you asked")),
            "no archive on the code alone");
        // A fact that does not match is refused and counted like a wrong code.
        let wrong = post_form(app, &visitor, &verify, &verify, &[("code", &code), ("fact", "1970")]).await;
        assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(wrong.text().await.unwrap().contains("does not match what we hold"));
        assert_eq!(request_state(app, id).await, "verifying");
        assert!(audit_kinds(app).await.iter().any(|l| l.starts_with("request_code_failed") && l.contains("method=held_fact")));
        // The code plus the birth year held: the archive goes out.
        let response = post_form(app, &visitor, &verify, &verify, &[("code", &code), ("fact", "1990")]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let row = app.store.privacy_request(id).await.unwrap().unwrap();
        assert_eq!((row.state.as_str(), row.verification.as_str()), ("fulfilled", "email_code_plus_fact"));
        app.wait_for_mail("sia@example.org", "We did what you asked").await;
        let audit = audit_kinds(app).await;
        assert!(audit.iter().any(|l| l == &format!("request_transitioned request={id} method=verification_succeeded reason=verifying")), "{audit:?}");
        assert!(audit.iter().any(|l| l == &format!("request_transitioned request={id} method=verification_succeeded reason=verified")), "{audit:?}");

        // The API takes the same name; a member's session is proof enough, and the account
        // page offers it with one click.
        let token = app.member("tam").await;
        let response = app.client.post(app.url("/api/v1/privacy-requests")).bearer_auth(&token)
            .json(&serde_json::json!({"country": "DE", "rights": ["access_specific_pieces"]}))
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let mine: serde_json::Value = app.client.get(app.url("/api/v1/privacy-requests")).bearer_auth(&token)
            .send().await.unwrap().json().await.unwrap();
        assert_eq!(mine[0]["specific_pieces"], true);
        assert_eq!(mine[0]["required_level"], "email_code_plus_fact");
        assert_eq!(mine[0]["verification"], "session");
        assert_eq!(mine[0]["state"], "fulfilled");
        let member = browser_for(app, "tam", None).await;
        let account = app.page(&member, "/account/privacy?jurisdiction=eu_eea").await;
        assert!(account.contains("value=\"access_specific_pieces\""), "{account}");
        // A visitor asking by API with the code alone stays below it too; "know" goes on.
        let response = visitor.post(app.url("/api/v1/privacy-requests"))
            .json(&serde_json::json!({"requester_name": "Uma", "requester_email": "uma@example.org",
                "relationship": "self", "country": "DE", "rights": ["access_specific_pieces", "know"]}))
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let mail = app.wait_for_mail("uma@example.org", "privacy request code").await;
        let token = link_with(app, &mail, "/privacy/requests/verify/").rsplit('/').next().unwrap().to_string();
        let response = visitor.post(app.url("/api/v1/privacy-requests/verify"))
            .json(&serde_json::json!({"token": token, "code": code_in(&mail)}))
            .send().await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let last = last_request_id(app).await;
        let states = [request_state(app, last - 1).await, request_state(app, last).await];
        assert!(states.contains(&"verifying".to_string()), "specific pieces wait: {states:?}");
        // Guessing the held fact meets the same limit as guessing the code.
        for _ in 0..app.state.config.requests.code_attempts {
            let response = visitor.post(app.url("/api/v1/privacy-requests/verify"))
                .json(&serde_json::json!({"token": token, "code": code_in(&mail), "fact": "1990"}))
                .send().await.unwrap();
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "no account, no fact to match");
        }
        let states = [request_state(app, last - 1).await, request_state(app, last).await];
        assert!(states.contains(&"unverifiable".to_string()), "closed after the attempts: {states:?}");
    }
}

on_both_stores! {
    /// An authorized agent takes a request from intake to withdrawal through the API alone:
    /// status by the link's token, evidence checked for type and size, the subject's
    /// confirmation, and the request going on only with both.
    /// Proves: R4, R2
    async fn an_agent_works_through_the_api_alone(app) where config: |c| { c.requests.fulfil_at_once = false; c.requests.evidence_max_bytes = 2048; }; {
        use base64::Engine;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        app.member("gil").await;
        let agent = app.new_client();
        let response = agent.post(app.url("/api/v1/privacy-requests"))
            .json(&serde_json::json!({"requester_name": "Agent Api", "requester_email": "api-agent@example.org",
                "relationship": "agent", "subject_email": "gil@example.org", "country": "DE", "rights": ["rectification"]}))
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let to_agent = app.wait_for_mail("api-agent@example.org", "We received").await;
        let token = link_with(app, &to_agent, "/privacy/requests/status/").rsplit('/').next().unwrap().to_string();
        let status = |token: String| {
            let agent = agent.clone();
            async move {
                let response = agent.post(app.url("/api/v1/privacy-requests/status"))
                    .json(&serde_json::json!({"token": token})).send().await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                response.json::<serde_json::Value>().await.unwrap()
            }
        };
        let seen = status(token.clone()).await;
        assert_eq!(seen["relationship"], "agent");
        assert_eq!(seen["requests"][0]["state"], "verifying");
        let id = seen["requests"][0]["id"].as_i64().unwrap();
        let response = agent.post(app.url("/api/v1/privacy-requests/status"))
            .json(&serde_json::json!({"token": "not-a-token"})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{}", response.text().await.unwrap());
        // Evidence: wrong type, too large, not base64, then a letter.
        let send = |content: String| {
            let agent = agent.clone();
            let token = token.clone();
            async move {
                agent.post(app.url("/api/v1/privacy-requests/evidence"))
                    .json(&serde_json::json!({"token": token, "content_base64": content}))
                    .send().await.unwrap().status()
            }
        };
        assert_eq!(send(b64(b"GIF89a not a letter")).await, StatusCode::UNPROCESSABLE_ENTITY, "wrong type");
        let mut big = b"%PDF-1.7\n".to_vec();
        big.resize(3000, b'x');
        assert_eq!(send(b64(&big)).await, StatusCode::PAYLOAD_TOO_LARGE, "too large");
        assert_eq!(send("%%%".into()).await, StatusCode::UNPROCESSABLE_ENTITY, "not base64");
        // The subject confirms; without evidence the request waits.
        let to_subject = app.wait_for_mail("gil@example.org", "Did you ask someone").await;
        let verify_token = link_with(app, &to_subject, "/privacy/requests/verify/").rsplit('/').next().unwrap().to_string();
        let response = app.new_client().post(app.url("/api/v1/privacy-requests/verify"))
            .json(&serde_json::json!({"token": verify_token, "code": code_in(&to_subject)}))
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let verified: serde_json::Value = response.json().await.unwrap();
        assert_eq!(verified["waiting_for_evidence"], true);
        assert_eq!(status(token.clone()).await["requests"][0]["state"], "verifying");
        // With the letter, it goes on.
        assert_eq!(send(b64(b"%PDF-1.7\nsigned letter")).await, StatusCode::NO_CONTENT);
        assert_eq!(status(token.clone()).await["requests"][0]["state"], "in_progress");
        let audit = audit_kinds(app).await;
        assert!(audit.iter().any(|l| l.starts_with("request_evidence_added")), "{audit:?}");
        // The agent withdraws it; a second withdrawal is refused.
        let withdraw = || agent.post(app.url("/api/v1/privacy-requests/withdraw"))
            .json(&serde_json::json!({"token": token, "request_id": id})).send();
        assert_eq!(withdraw().await.unwrap().status(), StatusCode::NO_CONTENT);
        assert_eq!(status(token.clone()).await["requests"][0]["state"], "withdrawn");
        assert_eq!(withdraw().await.unwrap().status(), StatusCode::CONFLICT);
    }
}
