//! Retention on the running forum, on both stores, with the clock under the test's control:
//! closing an account, restriction then anonymization on the verdict's days, dry runs, sweeps
//! cut short and resumed, concurrent sweepers, legal holds, the minimization of sign-ins'
//! device data and expired sessions, consent evidence, feedback and news choices, members'
//! residence (taken last), privacy-request records, and the purpose gate during restriction.

mod common;

use common::csrf_of;
use covenant::retention::{HoldRequest, SweepOptions, SweepReport};
use covenant_core::retention::{ClosureReason, VerdictState};
use reqwest::StatusCode;
use time::{Date, OffsetDateTime};

fn day_at(day: Date) -> OffsetDateTime {
    day.midnight().assume_utc()
}

fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

async fn sweep(app: &common::TestApp, now: Date, dry_run: bool) -> SweepReport {
    sweep_with(app, now, dry_run, 100, None).await
}

async fn sweep_with(
    app: &common::TestApp,
    now: Date,
    dry_run: bool,
    batch_size: i64,
    stop_after_batches: Option<u64>,
) -> SweepReport {
    let options = SweepOptions {
        now: day_at(now),
        dry_run,
        batch_size,
        stop_after_batches,
    };
    app.state.retention.sweep(&options, &|_| {}).await.unwrap()
}

async fn user_id(app: &common::TestApp, username: &str) -> i64 {
    app.store
        .user_by_username(username)
        .await
        .unwrap()
        .unwrap()
        .id
}

/// A member with one topic (so posts, an IP address and a sign-in exist); returns the topic's
/// path and the member's id.
async fn member_with_topic(app: &common::TestApp, username: &str) -> (String, i64) {
    let token = app.member(username).await;
    let created: serde_json::Value = app
        .client
        .post(app.url("/api/v1/topics"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"category": "general", "title": "A topic worth reading", "body": "Words worth keeping"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = created["url"]
        .as_str()
        .unwrap()
        .strip_prefix(&app.address)
        .unwrap()
        .to_string();
    (path, user_id(app, username).await)
}

/// The day the username of a member is to be anonymized, from the verdict itself.
async fn removal_day(app: &common::TestApp, user_id: i64) -> Date {
    let verdicts = app
        .state
        .retention
        .verdicts_of(user_id, OffsetDateTime::now_utc())
        .await
        .unwrap();
    let (_, username) = verdicts
        .iter()
        .find(|(category, _)| *category == "user.account.username")
        .unwrap();
    username
        .remove_on
        .expect("a closed account has a removal day")
}

async fn audit_details(app: &common::TestApp, kind: &str) -> Vec<(Option<i64>, String)> {
    app.store
        .audit_rows_after(0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|row| row.kind == kind)
        .map(|row| (row.subject_id, row.details))
        .collect()
}

async fn close(app: &common::TestApp, user_id: i64) {
    assert!(
        app.state
            .retention
            .close_account(user_id, ClosureReason::ByMember, Some(user_id))
            .await
            .unwrap()
    );
}

on_both_stores! {
    /// Proves: T1
    async fn a_member_closes_their_account_from_the_security_page(app) {
        let browser = app.new_client();
        app.member("ada").await;
        let form = app.page(&browser, "/sign-in").await;
        let response = browser.post(app.url("/sign-in"))
            .form(&[("csrf", csrf_of(&form).as_str()), ("login", "ada"), ("password", "a long enough password")])
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let security = app.page(&browser, "/account/security").await;
        assert!(security.contains("href=\"/account/close\""));
        let page = app.page(&browser, "/account/close").await;
        // A forged form (no token) is refused and changes nothing.
        let forged = browser.post(app.url("/account/close")).form(&[("confirm", "yes")]).send().await.unwrap();
        assert_eq!(forged.status(), StatusCode::FORBIDDEN);
        let id = user_id(app, "ada").await;
        assert!(app.store.relationship(id).await.unwrap().unwrap().closed_at.is_none());
        let response = browser.post(app.url("/account/close"))
            .form(&[("csrf", csrf_of(&page).as_str()), ("confirm", "yes")])
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let relationship = app.store.relationship(id).await.unwrap().unwrap();
        assert!(relationship.closed_at.is_some());
        assert_eq!(relationship.closed_reason.as_deref(), Some("by_member"));
        // Signed out everywhere, and the account signs in no more.
        assert_eq!(browser.get(app.url("/account/security")).send().await.unwrap().status(), StatusCode::SEE_OTHER);
        let refused = app.client.post(app.url("/api/v1/session"))
            .json(&serde_json::json!({"login": "ada", "password": "a long enough password"}))
            .send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.client.get(app.url("/u/ada")).send().await.unwrap().status(), StatusCode::NOT_FOUND);
        let closed = audit_details(app, "account_closed").await;
        assert_eq!(closed, vec![(Some(id), "reason=by_member".to_string())]);
    }
}

on_both_stores! {
    /// Proves: T1, T2, T4, F3
    async fn a_closed_account_is_restricted_then_anonymized_on_the_verdicts_day(app) {
        let (topic, id) = member_with_topic(app, "grace").await;
        let (_, other) = member_with_topic(app, "linus").await;
        // An open account is kept whatever the day (only minimization, which takes old
        // sign-ins' device data and expired sessions from everyone, would act: see its test).
        let report = sweep(app, today() + time::Duration::days(365 * 30), true).await;
        assert_eq!(report.subjects, 0);
        assert!(report.lines.keys().all(|(_, action)| matches!(*action, "minimize" | "expire")));
        close(app, id).await;
        let remove_on = removal_day(app, id).await;
        assert!(remove_on > today() + time::Duration::days(365));

        // Day of closing: restricted to storage; pages show a placeholder, not the name or text.
        let report = sweep(app, today(), false).await;
        assert_eq!(report.total(VerdictState::Restrict), 2, "the account record and one post");
        assert_eq!(report.total(VerdictState::Delete) + report.total(VerdictState::Anonymize), 0);
        let html = app.page(&app.client, &topic).await;
        assert!(!html.contains("grace") && !html.contains("Words worth keeping"), "{html}");
        assert!(html.contains("former member") && html.contains("Kept in storage only"));
        let user = app.store.user_by_id(id).await.unwrap().unwrap();
        assert_eq!(user.username, "grace", "restricted, not yet removed");
        assert!(!app.store.recent_sign_ins(id, 10).await.unwrap()[0].ip.is_empty());
        let restricted = audit_details(app, "data_restricted").await;
        assert!(restricted.iter().all(|(subject, _)| *subject == Some(id)));
        assert!(restricted.iter().any(|(_, d)| d.contains("category=user.content.public") && d.contains("count=1")));

        // The day before removal: still restricted. Only the sign-in secrets, whose rule adds
        // no months to the limitation period, are already gone (besides what minimization
        // takes from every member: old sign-ins' device data, expired sessions and links).
        let report = sweep(app, remove_on.previous_day().unwrap(), false).await;
        let categories: Vec<_> = report.lines.keys().copied()
            .filter(|(_, action)| !matches!(*action, "minimize" | "expire")).collect();
        assert_eq!(categories, [("user.authorization.credentials", "delete")]);
        assert_eq!(app.store.user_by_id(id).await.unwrap().unwrap().username, "grace");

        // The day of removal: deleted and anonymized, every step audited.
        let report = sweep(app, remove_on, false).await;
        assert!(report.total(VerdictState::Delete) > 0 && report.total(VerdictState::Anonymize) > 0);
        let user = app.store.user_by_id(id).await.unwrap().unwrap();
        assert_eq!(user.username, format!("deleted-{id}"));
        assert!(!user.email.contains("grace") && user.password_hash.is_empty() && user.birth_year == 0);
        assert!(app.store.recent_sign_ins(id, 10).await.unwrap().iter().all(|s| s.ip.is_empty() && s.user_agent.is_empty()));
        let html = app.page(&app.client, &topic).await;
        assert!(html.contains("deleted user") && html.contains("Words worth keeping"), "{html}");
        assert!(!html.contains("grace"));
        let anonymized = audit_details(app, "data_anonymized").await;
        assert!(anonymized.iter().any(|(s, d)| *s == Some(id) && d.contains("category=user.account.username")));
        let deleted = audit_details(app, "data_deleted").await;
        for category in ["user.contact.email", "user.device.ip_address"] {
            assert!(deleted.iter().any(|(s, d)| *s == Some(id) && d.contains(category)), "{category}");
        }
        // Nothing is left for later sweeps, and the other member was never touched.
        assert_eq!(sweep(app, remove_on + time::Duration::days(400), false).await.subjects, 0);
        assert_eq!(app.store.user_by_id(other).await.unwrap().unwrap().username, "linus");
        assert!(covenant::audit::verify(&app.store, &app.state.audit_key).await.unwrap().is_intact());
    }
}

/// Every post's stored text, in post order.
async fn post_texts(app: &common::TestApp) -> Vec<(i64, String, String)> {
    let pool = app.raw_pool().await;
    let texts =
        sqlx::query_as("SELECT post_id, body_md, body_html FROM post_bodies ORDER BY post_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    texts
}

on_both_stores! {
    /// Proves: T2, T4
    async fn the_sweep_gives_posts_to_the_deleted_user_and_leaves_their_text_as_written(app) {
        let (topic, id) = member_with_topic(app, "hopper").await;
        let (_, other) = member_with_topic(app, "lovelace").await;
        close(app, id).await;
        let before = post_texts(app).await;
        assert_eq!(before.len(), 2);
        assert!(before.iter().any(|(_, md, html)| md == "Words worth keeping"
            && html.contains("Words worth keeping")));

        // Restricted: the page shows the placeholder, the text stays stored as it was.
        sweep(app, today(), false).await;
        let html = app.page(&app.client, &topic).await;
        assert!(html.contains("Kept in storage only") && !html.contains("Words worth keeping"), "{html}");
        assert_eq!(post_texts(app).await, before);

        // Anonymized: the post is the deleted user's, its text is untouched and shown again.
        sweep(app, removal_day(app, id).await, false).await;
        assert_eq!(post_texts(app).await, before);
        let html = app.page(&app.client, &topic).await;
        assert!(html.contains("deleted user") && html.contains("Words worth keeping"), "{html}");
        assert!(!html.contains("hopper") && !html.contains("Kept in storage only"), "{html}");
        let pool = app.raw_pool().await;
        let authors: Vec<(i64,)> = sqlx::query_as("SELECT user_id FROM posts ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        assert!(!authors.contains(&(id,)) && authors.contains(&(other,)), "{authors:?}");
    }
}

on_both_stores! {
    /// Proves: T4
    async fn a_dry_run_reports_what_and_why_and_changes_nothing(app) {
        let (_, id) = member_with_topic(app, "barbara").await;
        close(app, id).await;
        let remove_on = removal_day(app, id).await;
        let head = app.store.audit_head().await.unwrap();
        let report = sweep(app, remove_on, true).await;
        assert!(report.run_id.is_none());
        let email = &report.lines[&("user.contact.email", "delete")];
        assert!(email.records >= 1);
        assert!(email.example_reason.contains("account was closed") && email.example_reason.contains("deleted"), "{}", email.example_reason);
        assert!(report.lines.contains_key(&("user.content.public", "anonymize")));
        // Nothing changed: not the member, not the audit log; the real run then does the same.
        assert_eq!(app.store.audit_head().await.unwrap(), head);
        let user = app.store.user_by_id(id).await.unwrap().unwrap();
        assert_eq!(user.username, "barbara");
        assert!(app.store.relationship(id).await.unwrap().unwrap().restricted_at.is_none());
        let real = sweep(app, remove_on, false).await;
        let counts = |r: &SweepReport| r.lines.iter().map(|(k, l)| (*k, l.records)).collect::<Vec<_>>();
        assert_eq!(counts(&real), counts(&report));
    }
}

/// Thirty closed demo members with posts, sign-ins and all.
async fn closed_demo_members(app: &common::TestApp) -> Vec<i64> {
    covenant::demo::generate(
        &app.store,
        &covenant::demo::Plan {
            users: 30,
            topics: 10,
            posts: 90,
            seed: 7,
        },
        false,
    )
    .await
    .unwrap();
    let mut ids = Vec::new();
    for id in 1..=30 {
        if app.store.relationship(id).await.unwrap().is_some() {
            close(app, id).await;
            ids.push(id);
        }
    }
    assert_eq!(ids.len(), 30);
    ids
}

/// How many times each member's username was anonymized, by the audit log.
async fn anonymizations_per_member(
    app: &common::TestApp,
) -> std::collections::BTreeMap<i64, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for (subject, details) in audit_details(app, "data_anonymized").await {
        if details.contains("category=user.account.username") {
            *counts.entry(subject.unwrap()).or_insert(0) += 1;
        }
    }
    counts
}

on_both_stores! {
    /// Proves: T4
    async fn a_sweep_cut_short_between_batches_resumes_and_loses_or_repeats_nothing(app) {
        let ids = closed_demo_members(app).await;
        let far = today() + time::Duration::days(365 * 20);
        let first = sweep_with(app, far, false, 4, Some(2)).await;
        assert!(!first.finished);
        assert_eq!(first.subjects, 8);
        // The next sweep, started later, resumes the same run as of its own day.
        let rest = sweep_with(app, far + time::Duration::days(30), false, 4, None).await;
        assert!(rest.finished);
        assert_eq!(rest.run_id, first.run_id);
        assert_eq!(rest.as_of, first.as_of);
        assert_eq!(first.subjects + rest.subjects, 30);
        let counts = anonymizations_per_member(app).await;
        assert_eq!(counts.keys().copied().collect::<Vec<_>>(), ids);
        assert!(counts.values().all(|n| *n == 1), "{counts:?}");
        for id in ids {
            assert_eq!(app.store.user_by_id(id).await.unwrap().unwrap().username, format!("deleted-{id}"));
        }
    }
}

on_both_stores! {
    /// Proves: T4
    async fn two_sweepers_at_once_never_process_a_member_twice(app) {
        let ids = closed_demo_members(app).await;
        let far = today() + time::Duration::days(365 * 20);
        let (a, b) = tokio::join!(
            sweep_with(app, far, false, 3, None),
            sweep_with(app, far, false, 3, None)
        );
        assert_eq!(a.subjects + b.subjects, 30, "{} + {}", a.subjects, b.subjects);
        let counts = anonymizations_per_member(app).await;
        assert_eq!(counts.keys().copied().collect::<Vec<_>>(), ids);
        assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    }
}

on_both_stores! {
    /// Proves: T3
    async fn a_legal_hold_keeps_what_it_covers_until_released(app) {
        let (_, held) = member_with_topic(app, "alan").await;
        let (_, free) = member_with_topic(app, "edsger").await;
        close(app, held).await;
        close(app, free).await;
        let bad = app.state.retention.place_hold(None, &HoldRequest {
            categories: "user.not.a_category".into(), reason: " ".into(), ..Default::default()
        }).await;
        assert!(matches!(bad, Err(covenant::error::Error::Invalid(_))));
        let hold = app.state.retention.place_hold(None, &HoldRequest {
            subject_user_id: Some(held),
            reason: "Claim 2026-17".into(),
            ..Default::default()
        }).await.unwrap();
        let remove_on = removal_day(app, held).await;
        let report = sweep(app, remove_on, false).await;
        assert!(report.lines[&("user.account.username", "held")].example_reason.contains("Claim 2026-17"));
        let user = app.store.user_by_id(held).await.unwrap().unwrap();
        assert_eq!(user.username, "alan");
        assert!(app.store.relationship(held).await.unwrap().unwrap().restricted_at.is_none(), "held data is not restricted either");
        assert_eq!(app.store.user_by_id(free).await.unwrap().unwrap().username, format!("deleted-{free}"));

        app.state.retention.release_hold(None, hold).await.unwrap();
        assert!(app.state.retention.release_hold(None, hold).await.is_err(), "released once");
        sweep(app, remove_on, false).await;
        assert_eq!(app.store.user_by_id(held).await.unwrap().unwrap().username, format!("deleted-{held}"));
        assert_eq!(audit_details(app, "legal_hold_placed").await, vec![(Some(held), format!("hold={hold}"))]);
        assert_eq!(audit_details(app, "legal_hold_released").await.len(), 1);
    }
}

on_both_stores! {
    /// Proves: T3
    async fn a_hold_over_a_date_range_keeps_only_the_records_created_in_it(app) {
        let (_, id) = member_with_topic(app, "frances").await;
        close(app, id).await;
        // Holds the IP addresses of everyone, for records created today only.
        let day = today().to_string();
        app.state.retention.place_hold(None, &HoldRequest {
            categories: "user.device.ip_address".into(),
            created_from: day.clone(),
            created_until: day,
            reason: "Order 99".into(),
            ..Default::default()
        }).await.unwrap();
        let remove_on = removal_day(app, id).await;
        sweep(app, remove_on, false).await;
        let sign_in = &app.store.recent_sign_ins(id, 1).await.unwrap()[0];
        assert!(!sign_in.ip.is_empty(), "held by the date range");
        assert!(sign_in.user_agent.is_empty(), "not held: another category");
        assert_eq!(app.store.user_by_id(id).await.unwrap().unwrap().username, format!("deleted-{id}"));
    }
}

on_both_stores! {
    /// Proves: T3
    async fn staff_place_and_release_holds_on_their_page_and_members_cannot(app) {
        app.member("member").await;
        let browser = app.new_client();
        let form = app.page(&browser, "/sign-in").await;
        browser.post(app.url("/sign-in"))
            .form(&[("csrf", csrf_of(&form).as_str()), ("login", "member"), ("password", "a long enough password")])
            .send().await.unwrap();
        let response = browser.get(app.url("/staff/holds")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
}

on_both_stores! {
    /// Proves: T1
    async fn closing_an_account_ends_its_news_subscription_so_its_data_is_not_kept_forever(app) {
        let response = app.client.post(app.url("/api/v1/users"))
            .json(&serde_json::json!({"username": "reader", "email": "reader@example.org",
                "password": "a long enough password", "birth_year": 1990, "country": "GB", "news": true}))
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let id = user_id(app, "reader").await;
        assert!(app.store.relationship(id).await.unwrap().unwrap().news_subscribed_at.is_some());
        close(app, id).await;
        let relationship = app.store.relationship(id).await.unwrap().unwrap();
        assert!(relationship.news_ended_at.is_some());
        let remove_on = removal_day(app, id).await;
        sweep(app, remove_on, false).await;
        assert_eq!(app.store.user_by_id(id).await.unwrap().unwrap().username, format!("deleted-{id}"));
    }
}

on_both_stores! {
    /// Proves: T3, T4
    async fn a_dry_run_counts_exactly_what_the_real_run_changes_when_a_dated_hold_keeps_posts(app) {
        let (_, kept) = member_with_topic(app, "hedy").await;
        let (_, free) = member_with_topic(app, "katherine").await;
        close(app, kept).await;
        close(app, free).await;
        // Keeps hedy's posts written today with their author; their IP addresses are not held.
        let day = today().to_string();
        app.state.retention.place_hold(None, &HoldRequest {
            subject_user_id: Some(kept),
            categories: "user.content.public".into(),
            created_from: day.clone(),
            created_until: day,
            reason: "Claim 2026-31".into(),
        }).await.unwrap();
        let remove_on = removal_day(app, kept).await;
        let head = app.store.audit_head().await.unwrap();
        let dry = sweep(app, remove_on, true).await;
        assert_eq!(app.store.audit_head().await.unwrap(), head, "a dry run records nothing");
        let real = sweep(app, remove_on, false).await;
        let counts = |r: &SweepReport| r.lines.iter().map(|(k, l)| (*k, l.records)).collect::<Vec<_>>();
        assert_eq!(counts(&dry), counts(&real));
        // hedy's held post loses its IP address (katherine's lost its own in being anonymized,
        // counted there); both sign-ins are older than the security log's 90 days, so
        // minimization takes theirs.
        assert_eq!(real.lines[&("user.device.ip_address", "delete")].records, 1);
        assert_eq!(real.lines[&("user.device.ip_address", "minimize")].records, 2);
        // Only katherine's post went to the deleted user; hedy's stays hers, under her new name.
        assert_eq!(real.lines[&("user.content.public", "anonymize")].records, 2, "katherine's post and topic");
        let posts = app.store.public_posts_of_user(kept, 10).await.unwrap();
        assert_eq!(posts.len(), 1);
        assert_eq!(posts[0].0.author, format!("deleted-{kept}"));
        assert!(app.store.public_posts_of_user(free, 10).await.unwrap().is_empty());
        // Every change is one audit entry per member and category, and the chain holds.
        let deleted = audit_details(app, "data_deleted").await;
        for (id, entries) in [(kept, 2), (free, 1)] {
            let ip: Vec<_> = deleted.iter().filter(|(s, d)| *s == Some(id) && d.contains("category=user.device.ip_address")).collect();
            assert_eq!(ip.len(), entries, "{deleted:?}");
            assert!(ip.iter().all(|(_, d)| d.contains("count=1")), "{ip:?}");
        }
        assert!(covenant::audit::verify(&app.store, &app.state.audit_key).await.unwrap().is_intact());
    }
}

on_both_stores! {
    /// Proves: F3, T4
    async fn sign_ins_lose_ip_and_browser_after_the_policys_days_and_expired_sessions_go(app) {
        app.member("mary").await;
        let id = user_id(app, "mary").await;
        // Signs in again from a browser that names itself.
        let signed_in: serde_json::Value = app.client.post(app.url("/api/v1/session"))
            .header("user-agent", "Mozilla/5.0 (Test) Firefox/140.0")
            .json(&serde_json::json!({"login": "mary", "password": "a long enough password"}))
            .send().await.unwrap().json().await.unwrap();
        let token = signed_in["token"].as_str().unwrap().to_string();
        assert_eq!(app.client.get(app.url("/api/v1/me")).bearer_auth(&token).send().await.unwrap().status(), StatusCode::OK);
        let rows = |v: Vec<covenant::store::SignInRow>| v.into_iter().map(|s| (s.at, s.ip, s.user_agent)).collect::<Vec<_>>();
        let before = rows(app.store.recent_sign_ins(id, 10).await.unwrap());
        assert!(!before.is_empty() && before.iter().all(|(_, ip, _)| !ip.is_empty()) && before.iter().any(|(_, _, agent)| !agent.is_empty()));
        let days = app.state.policy.current().await.unwrap().policy.minimization().security_log_days;
        assert_eq!(days, 90, "the default policy's period");

        // The account stays open. On the period's last day the sign-ins are whole; the session
        // (30 days) and the email link have expired and go.
        let last_day = today() + time::Duration::days(i64::from(days));
        let report = sweep(app, last_day, false).await;
        assert_eq!(report.subjects, 0, "no closed account");
        assert!(report.lines.keys().all(|(_, action)| *action == "expire"), "{:?}", report.lines);
        assert!(report.lines[&("user.authorization.credentials", "expire")].records >= 1);
        assert_eq!(app.client.get(app.url("/api/v1/me")).bearer_auth(&token).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
        assert_eq!(rows(app.store.recent_sign_ins(id, 10).await.unwrap()), before);

        // The day after: the dry run says what and why, then the sweep blanks IP address and
        // browser of each sign-in and keeps its time.
        let dry = sweep(app, last_day.next_day().unwrap(), true).await;
        let line = &dry.lines[&("user.device.ip_address", "minimize")];
        assert_eq!(line.records, before.len() as u64);
        assert!(line.example_reason.contains("90 days"), "{}", line.example_reason);
        let report = sweep(app, last_day.next_day().unwrap(), false).await;
        let named = before.iter().filter(|(_, _, agent)| !agent.is_empty()).count();
        assert_eq!(report.lines[&("user.device.user_agent", "minimize")].records, named as u64);
        let after = rows(app.store.recent_sign_ins(id, 10).await.unwrap());
        let blanked: Vec<_> = before.iter().map(|(at, _, _)| (*at, String::new(), String::new())).collect();
        assert_eq!(after, blanked, "times kept, device data gone");
        // One audit entry per member and category, with ids and counts only; nothing twice.
        let deleted = audit_details(app, "data_deleted").await;
        let mine: Vec<_> = deleted.iter().filter(|(s, _)| *s == Some(id)).map(|(_, d)| d.as_str()).collect();
        for category in ["user.device.ip_address", "user.device.user_agent"] {
            let entries: Vec<_> = mine.iter().filter(|d| d.contains(category)).collect();
            assert_eq!(entries.len(), 1, "{mine:?}");
            assert!(entries[0].contains("reason=minimization") && !entries[0].contains("mary"), "{entries:?}");
        }
        assert!(mine.iter().any(|d| d.contains("category=user.authorization.credentials") && d.contains("reason=expired")));
        assert_eq!(sweep(app, last_day.next_day().unwrap(), false).await.changed(), 0);
        assert_eq!(audit_details(app, "data_deleted").await.len(), deleted.len());
        assert!(covenant::audit::verify(&app.store, &app.state.audit_key).await.unwrap().is_intact());
    }
}

on_both_stores! {
    /// Proves: F3, T3
    async fn a_hold_on_ip_addresses_keeps_old_sign_ins_whole(app) {
        app.member("ida").await;
        let id = user_id(app, "ida").await;
        let response = app.client.post(app.url("/api/v1/session"))
            .header("user-agent", "Mozilla/5.0 (Test) Firefox/140.0")
            .json(&serde_json::json!({"login": "ida", "password": "a long enough password"}))
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        app.state.retention.place_hold(None, &HoldRequest {
            subject_user_id: Some(id),
            categories: "user.device.ip_address".into(),
            reason: "Order 7".into(),
            ..Default::default()
        }).await.unwrap();
        let report = sweep(app, today() + time::Duration::days(400), false).await;
        assert_eq!(report.lines[&("user.device.user_agent", "minimize")].records, 1);
        assert!(!report.lines.contains_key(&("user.device.ip_address", "minimize")));
        let sign_ins = app.store.recent_sign_ins(id, 10).await.unwrap();
        assert!(sign_ins.iter().all(|s| !s.ip.is_empty()), "held");
        assert!(sign_ins.iter().all(|s| s.user_agent.is_empty()), "not held: another category");
    }
}

on_both_stores! {
    /// Proves: T2, T4
    async fn consent_evidence_feedback_and_news_choices_of_a_closed_account_go_on_the_verdicts_day(app) {
        let token = app.member("joan").await;
        let id = user_id(app, "joan").await;
        let response = app.client.post(app.url("/api/v1/consent/choices")).bearer_auth(&token)
            .json(&serde_json::json!({"category": "analytics", "choice": "granted"}))
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let mut tx = app.store.begin().await.unwrap();
        let feedback = covenant::store::insert_feedback(&mut tx, id, "Older topics are hard to find.", false, false, covenant::now()).await.unwrap();
        tx.commit().await.unwrap();
        let response = app.client.post(app.url("/api/v1/users"))
            .json(&serde_json::json!({"username": "reader", "email": "reader@example.org",
                "password": "a long enough password", "birth_year": 1990, "country": "GB", "news": true}))
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let reader = user_id(app, "reader").await;
        let subject = format!("account:{id}");
        assert_eq!(app.store.consent_records_of(&subject).await.unwrap().len(), 1);
        assert!(app.store.news_choice_of(reader).await.unwrap().is_some());
        close(app, id).await;
        close(app, reader).await;
        let remove_on = removal_day(app, id).await;
        assert_eq!(removal_day(app, reader).await, remove_on);

        // Kept, restricted, until the day of removal.
        sweep(app, remove_on.previous_day().unwrap(), false).await;
        assert_eq!(app.store.consent_records_of(&subject).await.unwrap().len(), 1);
        assert!(app.store.feedback_by_id(feedback).await.unwrap().is_some());
        assert!(app.store.news_choice_of(reader).await.unwrap().is_some());

        let dry = sweep(app, remove_on, true).await;
        let report = sweep(app, remove_on, false).await;
        let counts = |r: &SweepReport| r.lines.iter().map(|(k, l)| (*k, l.records)).collect::<Vec<_>>();
        assert_eq!(counts(&dry), counts(&report));
        assert_eq!(report.lines[&("user.content.private", "delete")].records, 1);
        assert!(report.lines[&("user.behavior.consent", "delete")].records >= 2, "joan's record and reader's choice");
        assert!(app.store.consent_records_of(&subject).await.unwrap().is_empty());
        assert!(app.store.feedback_by_id(feedback).await.unwrap().is_none());
        assert!(app.store.news_choice_of(reader).await.unwrap().is_none());
        let deleted = audit_details(app, "data_deleted").await;
        for (who, category) in [(id, "user.behavior.consent"), (id, "user.content.private"), (reader, "user.behavior.consent")] {
            assert_eq!(deleted.iter().filter(|(s, d)| *s == Some(who) && d.contains(&format!("category={category} "))).count(), 1, "{who} {category}: {deleted:?}");
        }
        assert!(!deleted.iter().any(|(_, d)| d.contains("Older topics") || d.contains("reader@")));
        assert!(covenant::audit::verify(&app.store, &app.state.audit_key).await.unwrap().is_intact());
    }
}

on_both_stores! {
    /// Proves: T2, T4
    async fn followed_topics_digest_choices_and_digests_sent_of_a_closed_account_go_on_the_verdicts_day(app) {
        let (path, id) = member_with_topic(app, "fiona").await;
        let topic_id: i64 = path.rsplit('/').next().unwrap().parse().unwrap();
        let now = covenant::now();
        app.store.follow_topic(id, topic_id, now).await.unwrap();
        let mut tx = app.store.begin().await.unwrap();
        covenant::store::insert_digest_choice(&mut tx, &covenant::store::DigestChoice {
            user_id: id, subscribed: true, method: "account_page", policy_version: "2025.1", text_hash: "h", now,
        }).await.unwrap();
        assert!(covenant::store::claim_digest_period(&mut tx, id, now / 86_400, 1, now).await.unwrap());
        tx.commit().await.unwrap();
        close(app, id).await;
        let remove_on = removal_day(app, id).await;

        sweep(app, remove_on.previous_day().unwrap(), false).await;
        assert!(app.store.follows_topic(id, topic_id).await.unwrap(), "kept until the day of removal");
        assert!(app.store.digest_choice_of(id).await.unwrap().is_some());
        assert_eq!(app.store.last_digest_post(id).await.unwrap(), 1);

        let dry = sweep(app, remove_on, true).await;
        let report = sweep(app, remove_on, false).await;
        let counts = |r: &SweepReport| r.lines.iter().map(|(k, l)| (*k, l.records)).collect::<Vec<_>>();
        assert_eq!(counts(&dry), counts(&report), "the dry run counted what the run did");
        assert_eq!(report.lines[&("user.content.private", "delete")].records, 2, "the follow and the digest sent");
        assert!(!app.store.follows_topic(id, topic_id).await.unwrap());
        assert!(app.store.digest_choice_of(id).await.unwrap().is_none());
        assert_eq!(app.store.last_digest_post(id).await.unwrap(), 0, "no digest sent is remembered");
        assert!(covenant::audit::verify(&app.store, &app.state.audit_key).await.unwrap().is_intact());
    }
}

/// Where a member lives, as stored: jurisdiction, country, US state.
async fn residence(
    app: &common::TestApp,
    user_id: i64,
) -> (Option<String>, Option<String>, Option<String>) {
    let pool = app.raw_pool().await;
    let row = sqlx::query_as("SELECT jurisdiction, country, us_state FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    row
}

/// `SELECT COUNT(*) …` on the app's database.
async fn count(app: &common::TestApp, sql: &'static str) -> i64 {
    let pool = app.raw_pool().await;
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&pool).await.unwrap();
    pool.close().await;
    n
}

const COMMENTS: &str = "ZqSealedComment: please also check my old forum handle";

/// A submission's comments as stored.
async fn stored_comments(app: &common::TestApp, submission: i64) -> String {
    let pool = app.raw_pool().await;
    let (stored,): (String,) =
        sqlx::query_as("SELECT comments FROM privacy_submissions WHERE id = $1")
            .bind(submission)
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    stored
}

async fn set_comments(app: &common::TestApp, submission: i64, stored: &str) {
    let pool = app.raw_pool().await;
    sqlx::query("UPDATE privacy_submissions SET comments = $1 WHERE id = $2")
        .bind(stored)
        .bind(submission)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// Messages about privacy requests still in the outbox, sent or not.
async fn request_mail(app: &common::TestApp) -> i64 {
    count(
        app,
        "SELECT COUNT(*) FROM mail_outbox WHERE idempotency_key LIKE 'request-%'",
    )
    .await
}

/// Registers a member who lives in the United Kingdom; returns their id.
async fn resident(app: &common::TestApp, username: &str) -> i64 {
    let response = app
        .client
        .post(app.url("/api/v1/users"))
        .json(
            &serde_json::json!({"username": username, "email": format!("{username}@example.org"),
            "password": "a long enough password", "birth_year": 1990, "country": "GB"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    user_id(app, username).await
}

const REQUESTS: &str = "user.privacy_request.details";

on_both_stores! {
    /// Proves: T1, T3, T4
    async fn residence_goes_last_on_the_day_the_rest_goes_and_a_hold_keeps_it(app) {
        let id = resident(app, "olga").await;
        let held = resident(app, "pat").await;
        let (jurisdiction, country, _) = residence(app, id).await;
        assert!(jurisdiction.is_some() && country.is_some(), "registration stores it");
        close(app, id).await;
        close(app, held).await;
        let hold = app.state.retention.place_hold(None, &HoldRequest {
            subject_user_id: Some(held),
            categories: "user.content.public".into(),
            reason: "Claim 2026-44".into(),
            ..Default::default()
        }).await.unwrap();
        let remove_on = removal_day(app, id).await;
        let verdicts = app.state.retention.verdicts_of(id, OffsetDateTime::now_utc()).await.unwrap();
        let (_, verdict) = verdicts.iter().find(|(c, _)| *c == REQUESTS).unwrap();
        assert_eq!(verdict.state, VerdictState::Restrict, "{}", verdict.reason);
        assert_eq!(verdict.remove_on, Some(remove_on), "it goes with the last of the rest");

        // Until the rest goes, the residence stays.
        sweep(app, remove_on.previous_day().unwrap(), false).await;
        assert_eq!(residence(app, id).await.1.as_deref(), country.as_deref());

        // On the day: the dry run says so and why, and the run does exactly that, last.
        let head = app.store.audit_head().await.unwrap();
        let dry = sweep(app, remove_on, true).await;
        assert_eq!(app.store.audit_head().await.unwrap(), head);
        let line = &dry.lines[&(REQUESTS, "delete")];
        assert_eq!(line.records, 1, "olga's; pat's is held with the rest of theirs");
        assert!(line.example_reason.contains("decides which law") && line.example_reason.contains("deleted"), "{}", line.example_reason);
        assert!(dry.lines[&(REQUESTS, "held")].example_reason.contains("Claim 2026-44"));
        let real = sweep(app, remove_on, false).await;
        let counts = |r: &SweepReport| r.lines.iter().map(|(k, l)| (*k, l.records)).collect::<Vec<_>>();
        assert_eq!(counts(&dry), counts(&real));
        assert_eq!(residence(app, id).await, (None, None, None));
        assert_eq!(app.store.user_by_id(id).await.unwrap().unwrap().username, format!("deleted-{id}"));
        assert!(residence(app, held).await.0.is_some(), "held while the hold keeps their posts");
        let mine = |deleted: &[(Option<i64>, String)], who: i64| deleted.iter()
            .filter(|(s, d)| *s == Some(who) && d.contains(&format!("category={REQUESTS} ")))
            .map(|(_, d)| d.clone()).collect::<Vec<_>>();
        let deleted = audit_details(app, "data_deleted").await;
        assert_eq!(mine(&deleted, id).len(), 1, "{deleted:?}");
        assert!(mine(&deleted, id)[0].contains("count=1"));

        // Released: the next sweep takes the rest of pat's, and their residence with it.
        app.state.retention.release_hold(None, hold).await.unwrap();
        sweep(app, remove_on, false).await;
        assert_eq!(residence(app, held).await, (None, None, None));
        assert_eq!(mine(&audit_details(app, "data_deleted").await, held).len(), 1);
        assert_eq!(sweep(app, remove_on + time::Duration::days(1), false).await.subjects, 0, "nothing left");
        assert!(covenant::audit::verify(&app.store, &app.state.audit_key).await.unwrap().is_intact());
    }
}

on_both_stores! {
    /// Proves: T2, T4
    async fn privacy_request_records_go_with_their_correspondence_on_the_policys_day(app) {
        let token = app.member("nora").await;
        let id = user_id(app, "nora").await;
        let response = app.client.post(app.url("/api/v1/privacy-requests")).bearer_auth(&token)
            .json(&serde_json::json!({"country": "US", "state": "CA", "rights": ["opt_out_sale"]}))
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: serde_json::Value = response.json().await.unwrap();
        let request = body["request_ids"][0].as_i64().unwrap();
        let row = app.store.privacy_request(request).await.unwrap().unwrap();
        assert_eq!(row.jurisdiction, "california");
        // Correspondence is sealed under the submission's own key (the signed-in form takes no
        // comments, so the store seals some as intake does): not in the database in plain
        // text, open to staff through the store.
        let submission = row.submission_id;
        let sealed = app.store.seal_for_submission(submission, "privacy_submissions.comments", COMMENTS).await.unwrap();
        set_comments(app, submission, &sealed).await;
        let stored = stored_comments(app, submission).await;
        assert!(stored.starts_with("s1:") && !stored.contains("Zq"), "{stored}");
        assert_eq!(count(app, "SELECT COUNT(*) FROM privacy_submissions WHERE comments LIKE '%ZqSealedComment%'").await, 0);
        let opened = app.store.submission(submission).await.unwrap().unwrap();
        assert_eq!(opened.comments, COMMENTS);
        let closed = row.closed_at.expect("an opt-out is carried out at once");
        let mail = request_mail(app).await;
        assert!(mail >= 1, "the decision was mailed");
        // The policy keeps request records 2 years from the last answer, then restricted for
        // the law's limitation period (California: 4 years) plus 2 months.
        let closed_on = OffsetDateTime::from_unix_timestamp(closed).unwrap().date();
        let restrict_from = closed_on.replace_year(closed_on.year() + 2).unwrap();
        let remove_on = {
            let later = closed_on.replace_year(closed_on.year() + 6).unwrap();
            let (year, month) = match later.month() {
                time::Month::November => (later.year() + 1, time::Month::January),
                time::Month::December => (later.year() + 1, time::Month::February),
                month => (later.year(), month.next().next()),
            };
            let last = time::util::days_in_month(month, year);
            Date::from_calendar_date(year, month, later.day().min(last)).unwrap()
        };

        // Kept while the account is open, as long as the policy says: the day before, whole.
        for day in [restrict_from, remove_on.previous_day().unwrap()] {
            let report = sweep(app, day, false).await;
            assert!(!report.lines.contains_key(&(REQUESTS, "delete")), "{day}: {:?}", report.lines);
        }
        assert!(app.store.privacy_request(request).await.unwrap().is_some());
        assert_eq!(request_mail(app).await, mail);

        let dry = sweep(app, remove_on, true).await;
        let line = &dry.lines[&(REQUESTS, "delete")];
        let links = count(app, "SELECT COUNT(*) FROM privacy_request_links").await;
        assert_eq!(line.records, (2 + mail + links) as u64, "the submission, the request, its mail and status links");
        assert!(line.example_reason.contains("2 years") && line.example_reason.contains("4 years"), "{}", line.example_reason);
        let real = sweep(app, remove_on, false).await;
        let counts = |r: &SweepReport| r.lines.iter().map(|(k, l)| (*k, l.records)).collect::<Vec<_>>();
        assert_eq!(counts(&dry), counts(&real));
        assert!(app.store.privacy_request(request).await.unwrap().is_none());
        assert_eq!(request_mail(app).await, 0, "the correspondence went with it");
        assert_eq!(count(app, "SELECT COUNT(*) FROM privacy_request_links").await, 0);
        assert_eq!(count(app, "SELECT COUNT(*) FROM privacy_submissions").await, 0);
        // An older copy of the submission (a backup) opens no more: its key went with it.
        assert_eq!(app.store.open_for_submission(submission, "privacy_submissions.comments", &stored).await.unwrap(), "");
        let destroyed = audit_details(app, "subject_key_destroyed").await;
        assert!(destroyed.iter().any(|(s, d)| *s == Some(id) && d.contains(&format!("request={request}"))), "{destroyed:?}");
        // The member and where they live are untouched: the account is still open.
        assert_eq!(app.store.user_by_id(id).await.unwrap().unwrap().username, "nora");
        assert!(residence(app, id).await.0.is_some());
        let deleted = audit_details(app, "data_deleted").await;
        let entries: Vec<_> = deleted.iter().filter(|(_, d)| d.contains(&format!("request={request}"))).collect();
        assert_eq!(entries.len(), 1, "{deleted:?}");
        assert_eq!(entries[0].0, Some(id));
        assert!(entries[0].1.contains(&format!("category={REQUESTS}")) && !entries[0].1.contains('@'));
        assert!(!sweep(app, remove_on, false).await.lines.contains_key(&(REQUESTS, "delete")), "nothing twice");
        assert!(covenant::audit::verify(&app.store, &app.state.audit_key).await.unwrap().is_intact());
    }
}

on_both_stores! {
    /// Proves: T2, R9
    async fn a_member_restricted_by_the_sweep_gets_only_account_mail_and_no_analytics(app) {
        use covenant::purpose::Purpose;
        let (_, id) = member_with_topic(app, "quinn").await;
        let gate = &app.state.purpose;
        assert!(gate.allows(id, Purpose::Analytics).await.unwrap());
        close(app, id).await;
        sweep(app, today(), false).await;
        assert!(app.store.relationship(id).await.unwrap().unwrap().restricted_at.is_some());
        assert!(covenant::purpose::limits_of(&app.store, id).await.unwrap().restricted);
        for purpose in [Purpose::ProductNews, Purpose::Digest, Purpose::PolicyNotice, Purpose::Analytics, Purpose::ProfileDetails] {
            assert!(!gate.allows(id, purpose).await.unwrap(), "{purpose:?}");
        }
        assert!(gate.allows(id, Purpose::AccountMail).await.unwrap());
        assert!(!gate.allows_mail("news:1", Some(id)).await.unwrap());
        assert!(!gate.allows_mail("digest:1:1", Some(id)).await.unwrap());
        assert!(gate.allows_mail("request-decision:1:fulfilled", Some(id)).await.unwrap());
    }
}

/// A sweep's transaction gets a large page cache, statement journals in memory and rare
/// checkpoints (SQLite only). Its connection goes back to the pool with the
/// server's settings whether the transaction committed or failed half-way, so that no later
/// request's connection keeps 128 MiB of cache.
#[tokio::test]
async fn a_sweeps_connection_returns_to_the_pool_with_the_servers_settings_even_after_a_failure() {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    // One connection: every transaction below runs on the sweep's.
    let store = covenant::Store::open(dir.path(), "", 1).await.unwrap();
    store.migrate().await.unwrap();
    let settings = |store: covenant::Store| async move {
        let mut tx = store.begin().await.unwrap();
        let mut read = Vec::new();
        for pragma in ["cache_size", "temp_store", "wal_autocheckpoint"] {
            let (value,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("PRAGMA {pragma}")))
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            read.push(value);
        }
        tx.rollback().await.unwrap();
        read
    };
    let server = settings(store.clone()).await;
    assert_eq!(server, vec![-8192, 0, 1000]);

    let mut tx = store.begin_sweep().await.unwrap();
    for (pragma, value) in [
        ("cache_size", -131072),
        ("temp_store", 2),
        ("wal_autocheckpoint", 65536),
    ] {
        let (read,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("PRAGMA {pragma}")))
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(read, value, "{pragma} in the sweep's transaction");
    }
    // A statement fails half-way; the caller returns its error and drops the transaction.
    assert!(
        sqlx::query("INSERT INTO no_such_table VALUES (1)")
            .execute(&mut *tx)
            .await
            .is_err()
    );
    drop(tx);
    assert_eq!(
        settings(store.clone()).await,
        server,
        "after a failed sweep transaction"
    );

    let mut tx = store.begin_sweep().await.unwrap();
    sqlx::query("UPDATE settings SET value = value")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        settings(store.clone()).await,
        server,
        "after a committed sweep transaction"
    );
    store.checkpoint_after_sweep().await.unwrap();
    store.close().await;
}
