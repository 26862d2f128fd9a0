//! The policy as data on the running forum: the page rendered from the policy value, versions
//! and their history, material-change notices (exactly one per member, even after a crash or
//! a second publish), the record of processing for administrators, and the `policy` commands.

mod common;

use common::csrf_of;
use covenant::policy::{publish, queue_notices};
use covenant::store::{NewUser, insert_user};
use covenant_core::policy::Policy;
use reqwest::StatusCode;
use std::process::Command;

const DEFAULT_POLICY: &str = include_str!("../crates/covenant-core/policy/default.toml");

/// The default policy with a new label and one more kind of person a purpose covers: material.
fn material_change(label: &str) -> String {
    DEFAULT_POLICY
        .replace("version = \"2025.1\"", &format!("version = \"{label}\""))
        .replace(
            "subjects = [\"members\", \"visitors\"]",
            "subjects = [\"members\"]",
        )
}

/// The default policy with a new label and a provider renamed: editorial.
fn editorial_change(label: &str) -> String {
    DEFAULT_POLICY
        .replace("version = \"2025.1\"", &format!("version = \"{label}\""))
        .replace("\"Example Hosting\"", "\"Example Hosting GmbH\"")
}

fn day(text: &str) -> time::Date {
    time::Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .unwrap()
}

/// The page's text with the template's escapes undone, to compare with the policy's wording.
fn unescape(html: &str) -> String {
    html.replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#x22;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Adds members straight through the store (fast); the last one has no email address.
async fn add_members(app: &common::TestApp, n: usize) -> Vec<i64> {
    let mut tx = app.store.begin().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        let name = format!("reader{i}");
        let email = format!("{name}@example.org");
        let id = insert_user(
            &app.store,
            &mut tx,
            &NewUser {
                username: &name,
                username_lower: &name,
                email: &email,
                email_lower: &email,
                password_hash: "not a real hash",
                birth_year: 1990,
                created_at: covenant::now(),
            },
        )
        .await
        .unwrap();
        ids.push(id);
    }
    insert_user(
        &app.store,
        &mut tx,
        &NewUser {
            username: "no_address",
            username_lower: "no_address",
            email: "",
            email_lower: "",
            password_hash: "not a real hash",
            birth_year: 1990,
            created_at: covenant::now(),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    ids
}

/// Asserts that every member with an address has exactly one notice of the version.
async fn assert_one_notice_each(app: &common::TestApp, version_id: i64) {
    let with_address = app.store.user_ids_with_email().await.unwrap();
    let notices = app.store.policy_notices_per_user(version_id).await.unwrap();
    let expected: Vec<(i64, i64)> = with_address.iter().map(|id| (*id, 1)).collect();
    assert_eq!(notices, expected, "one notice per member with an address");
}

on_both_stores! {
    /// Proves: A5, J1, A2, A6
    async fn the_privacy_page_shows_everything_the_policy_declares(app) {
        let visitor = app.new_client();
        let response = visitor.get(app.url("/privacy")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("set-cookie").is_none(), "no cookie for a visitor");
        let page = unescape(&response.text().await.unwrap());
        let policy = Policy::default_policy();
        let must_show = |text: &str, what: &str| {
            assert!(page.contains(text.trim()), "/privacy lacks the {what} {text:?}");
        };
        for category in policy.categories() {
            must_show(&category.name, "category");
            must_show(category.key.as_str(), "category key");
            must_show(&category.description, "category description");
        }
        for source in policy.sources() {
            must_show(&source.name, "source");
        }
        for purpose in policy.purposes() {
            must_show(&purpose.name, "purpose");
            must_show(&purpose.description, "purpose description");
            for basis in purpose.legal_basis.values() {
                must_show(&basis.to_string(), "legal basis");
            }
        }
        for recipient in policy.recipients() {
            must_show(&recipient.name, "recipient");
        }
        for provider in policy.providers() {
            must_show(&provider.name, "service provider");
            must_show(&provider.instructions, "provider instructions");
        }
        for cookie in policy.cookies() {
            must_show(&cookie.name, "cookie category");
        }
        for rule in policy.retention() {
            must_show(&rule.to_string(), "retention rule");
        }
        for rules in policy.jurisdictions() {
            must_show(&rules.name, "jurisdiction");
            must_show(&rules.law, "law");
            must_show(&rules.deadline.to_string(), "deadline");
            for right in &rules.rights {
                must_show(covenant::web::privacy::right_label(*right), "right");
            }
        }
        for process in policy.automated_processes() {
            must_show(&process.name, "automated process");
        }
        must_show(&policy.controller().privacy_email, "privacy email");
        assert!(page.contains("href=\"/privacy/history\""), "links to the history");
        assert!(page.contains("id=\"rights\"") && page.contains("href=\"#rights\""), "anchored table of contents");

        let response = visitor.get(app.url("/privacy/automated-decisions")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("set-cookie").is_none());
        let page = unescape(&response.text().await.unwrap());
        for process in policy.automated_processes() {
            assert!(page.contains(process.explanation.trim()), "{}", process.id);
        }
        let history = visitor.get(app.url("/privacy/history")).send().await.unwrap();
        assert_eq!(history.status(), StatusCode::OK);
        assert!(history.headers().get("set-cookie").is_none());
    }
}

on_both_stores! {
    /// Proves: A5
    async fn a_published_version_enters_the_history_and_the_old_one_stays_readable(app) {
        let starting = app.state.policy.starting().clone();
        let first = publish(&app.store, &starting, DEFAULT_POLICY, "default.toml", day("2025-01-01")).await.unwrap();
        assert!(first.created && !first.material, "the shipped policy differs from nothing shown before");
        let second_text = material_change("2025.2");
        let second = publish(&app.store, &starting, &second_text, "next.toml", day("2025-02-01")).await.unwrap();
        assert!(second.created && second.material);

        let visitor = app.new_client();
        let history = app.page(&visitor, "/privacy/history").await;
        for id in [first.version_id, second.version_id] {
            assert!(history.contains(&format!("/privacy/versions/{id}")), "history lists version {id}");
        }
        assert!(history.contains("2025.1") && history.contains("2025.2"));
        let old = unescape(&app.page(&visitor, &format!("/privacy/versions/{}", first.version_id)).await);
        assert!(old.contains("Version 2025.1") && old.contains("A later version replaced this one"));
        assert!(old.contains("Answering support and feedback"));
        let current = unescape(&app.page(&visitor, "/privacy").await);
        assert!(current.contains("Version 2025.2") && current.contains("Effective 2025-02-01"));

        let api: serde_json::Value = visitor.get(app.url("/api/v1/policy")).send().await.unwrap().json().await.unwrap();
        assert_eq!(api["version"]["id"], second.version_id);
        assert_eq!(api["policy"]["version"], "2025.2");
        let versions: serde_json::Value = visitor.get(app.url("/api/v1/policy/versions")).send().await.unwrap().json().await.unwrap();
        assert_eq!(versions.as_array().unwrap().len(), 2);
        let old_api: serde_json::Value = visitor.get(app.url(&format!("/api/v1/policy/versions/{}", first.version_id))).send().await.unwrap().json().await.unwrap();
        assert_eq!(old_api["version"]["status"], "replaced");
        let diff: serde_json::Value = visitor
            .get(app.url(&format!("/api/v1/policy/diff?from={}&to={}", first.version_id, second.version_id)))
            .send().await.unwrap().json().await.unwrap();
        assert_eq!(diff["material"], true);
        assert!(diff["changes"].as_array().unwrap().iter().any(|c| c["path"] == "purposes[support].subjects" && c["class"] == "material"));
        let missing = visitor.get(app.url("/api/v1/policy/versions/999")).send().await.unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);

        // Publishing the same file again stores nothing new.
        let again = publish(&app.store, &starting, &second_text, "next.toml", day("2025-02-01")).await.unwrap();
        assert!(!again.created);
        assert_eq!(again.version_id, second.version_id);
        assert_eq!(app.store.policy_versions().await.unwrap().len(), 2);
    }
}

on_both_stores! {
    /// Proves: A5, F6
    async fn a_material_change_queues_exactly_one_notice_per_member_with_an_address_even_when_published_twice(app) {
        add_members(app, 7).await;
        let starting = app.state.policy.starting().clone();
        let text = material_change("2025.2");
        let published = publish(&app.store, &starting, &text, "next.toml", day("2025-02-01")).await.unwrap();
        assert!(published.material);
        let progress = queue_notices(&app.store, &app.state.config, published.version_id, 3, None).await.unwrap();
        assert!(progress.finished);
        assert_eq!(progress.queued, 7);
        assert_one_notice_each(app, published.version_id).await;

        let again = publish(&app.store, &starting, &text, "next.toml", day("2025-02-01")).await.unwrap();
        assert!(!again.created);
        let progress = queue_notices(&app.store, &app.state.config, again.version_id, 3, None).await.unwrap();
        assert_eq!(progress.queued, 0);
        assert_one_notice_each(app, published.version_id).await;

        app.state.mailer.wake();
        let mail = app.wait_for_mail("reader0@example.org", "is changing its privacy policy").await;
        assert!(mail.contains(&format!("/privacy/versions/{}", published.version_id)), "{mail}");
        assert!(mail.contains("purposes[support].subjects"), "the notice says what changed");
    }
}

on_both_stores! {
    /// Proves: A5
    async fn a_notice_run_cut_short_after_one_batch_resumes_without_a_second_notice(app) {
        add_members(app, 5).await;
        let starting = app.state.policy.starting().clone();
        let published = publish(&app.store, &starting, &material_change("2025.2"), "next.toml", day("2025-02-01")).await.unwrap();
        // The publisher "dies" after its first batch of two.
        let first = queue_notices(&app.store, &app.state.config, published.version_id, 2, Some(1)).await.unwrap();
        assert_eq!(first.queued, 2);
        assert!(!first.finished);
        let run = app.store.notice_run(published.version_id).await.unwrap().unwrap();
        assert!(run.finished_at.is_none());
        assert_eq!(app.store.unfinished_notice_runs().await.unwrap(), vec![published.version_id]);

        // The next start (or a second publish) resumes; running it twice more changes nothing.
        let resumed = covenant::policy::resume_notices(&app.store, &app.state.config).await.unwrap();
        assert_eq!(resumed, 3);
        assert_eq!(covenant::policy::resume_notices(&app.store, &app.state.config).await.unwrap(), 0);
        let rerun = queue_notices(&app.store, &app.state.config, published.version_id, 2, None).await.unwrap();
        assert!(rerun.finished && rerun.queued == 0);
        assert!(app.store.unfinished_notice_runs().await.unwrap().is_empty());
        assert_one_notice_each(app, published.version_id).await;
    }
}

on_both_stores! {
    /// Proves: A5
    async fn an_editorial_change_sends_no_notice_and_shows_no_site_notice(app) {
        add_members(app, 3).await;
        let starting = app.state.policy.starting().clone();
        let published = publish(&app.store, &starting, &editorial_change("2025.2"), "next.toml", day("2025-02-01")).await.unwrap();
        assert!(published.created && !published.material);
        assert!(app.store.notice_run(published.version_id).await.unwrap().is_none());
        let progress = queue_notices(&app.store, &app.state.config, published.version_id, 10, None).await.unwrap();
        assert_eq!(progress.queued, 0);
        assert!(app.store.policy_notices_per_user(published.version_id).await.unwrap().is_empty());

        let token = app.member("ada").await;
        let page = app.client.get(app.url("/")).bearer_auth(&token).send().await.unwrap().text().await.unwrap();
        assert!(!page.contains("/privacy/acknowledge"), "no site notice for an editorial change");
    }
}

on_both_stores! {
    /// Proves: A5
    async fn a_member_sees_the_site_notice_of_a_material_change_until_acknowledging_it(app) {
        app.member("ada").await;
        let browser = &app.client;
        let sign_in = app.page(browser, "/sign-in").await;
        let response = browser
            .post(app.url("/sign-in"))
            .form(&[("csrf", csrf_of(&sign_in).as_str()), ("login", "ada"), ("password", "a long enough password")])
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let home = app.page(browser, "/").await;
        assert!(!home.contains("/privacy/acknowledge"), "nothing to acknowledge yet");

        let starting = app.state.policy.starting().clone();
        let published = publish(&app.store, &starting, &material_change("2025.2"), "next.toml", day("2025-02-01")).await.unwrap();
        for path in ["/", "/privacy", "/blog"] {
            let page = app.page(browser, path).await;
            assert!(page.contains("/privacy/acknowledge"), "{path} shows the notice");
            assert!(page.contains(&format!("/privacy/versions/{}", published.version_id)));
        }
        let visitor_page = app.page(&app.new_client(), "/").await;
        assert!(!visitor_page.contains("/privacy/acknowledge"), "visitors get no notice");

        let home = app.page(browser, "/").await;
        let forged = browser
            .post(app.url("/privacy/acknowledge"))
            .form(&[("csrf", "forged"), ("version", &published.version_id.to_string())])
            .send().await.unwrap();
        assert_eq!(forged.status(), StatusCode::FORBIDDEN);
        assert!(app.page(browser, "/").await.contains("/privacy/acknowledge"));
        let response = browser
            .post(app.url("/privacy/acknowledge"))
            .form(&[("csrf", csrf_of(&home).as_str()), ("version", &published.version_id.to_string())])
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert!(!app.page(browser, "/").await.contains("/privacy/acknowledge"), "the notice is gone once acknowledged");
    }
}

on_both_stores! {
    /// Proves: A1, A2, A3
    async fn the_record_of_processing_is_for_administrators_only(app) {
        let visitor = app.new_client();
        let response = visitor.get(app.url("/staff/ropa")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()["location"], "/sign-in");
        assert!(response.headers().get("set-cookie").is_none());

        let member = app.member("ada").await;
        let response = app.client.get(app.url("/staff/ropa")).bearer_auth(&member).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let response = app.client.get(app.url("/api/v1/ropa")).bearer_auth(&member).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let response = visitor.get(app.url("/api/v1/ropa")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

        let admin = app.member("grace").await;
        let user = app.store.user_by_username("grace").await.unwrap().unwrap();
        app.store.set_role(user.id, "administrator").await.unwrap();
        let response = app.client.get(app.url("/staff/ropa")).bearer_auth(&admin).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let page = unescape(&response.text().await.unwrap());
        let policy = Policy::default_policy();
        for purpose in policy.purposes() {
            assert!(page.contains(&purpose.name), "{}", purpose.id);
        }
        for provider in policy.providers() {
            assert!(page.contains(&provider.name) && page.contains(&provider.instructions), "{}", provider.id);
        }
        assert!(page.contains("standard contractual clauses"), "transfers name their safeguard");
        let record: serde_json::Value = app.client.get(app.url("/api/v1/ropa")).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
        assert_eq!(record["activities"].as_array().unwrap().len(), policy.purposes().len());
    }
}

on_both_stores! {
    /// Proves: A5, A1
    async fn the_operator_publishes_with_the_command_line_and_the_site_follows(app) {
        add_members(app, 2).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.toml");
        std::fs::write(&file, material_change("2026.1")).unwrap();
        let store_args = |command: &mut Command| {
            command.arg("--data-dir").arg(app.data_dir.path());
            if !app.state.config.database_url.is_empty() {
                command.arg("--database-url").arg(&app.state.config.database_url);
            }
            command.env_remove("COVENANT_DATABASE_URL").env_remove("COVENANT_DATA_DIR").env_remove("COVENANT_CONFIG");
        };
        let mut publish = Command::new(env!("CARGO_BIN_EXE_covenant"));
        publish.args(["policy", "publish"]).arg(&file).args(["--effective", "2025-06-01"]);
        store_args(&mut publish);
        let output = publish.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains("verdict: material") && stdout.contains("Queued 2 notice"), "{stdout}");
        let output = publish.output().unwrap();
        assert!(output.status.success());
        assert!(String::from_utf8_lossy(&output.stdout).contains("already the latest version"));
        let versions = app.store.policy_versions().await.unwrap();
        assert_eq!(versions.len(), 1);
        assert_one_notice_each(app, versions[0].id).await;

        let page = app.page(&app.new_client(), "/privacy").await;
        assert!(page.contains("Version 2026.1"), "the running site shows the version published by another process");

        let mut ropa = Command::new(env!("CARGO_BIN_EXE_covenant"));
        ropa.args(["ropa", "--format", "csv"]);
        store_args(&mut ropa);
        let output = ropa.output().unwrap();
        assert!(output.status.success());
        let csv = String::from_utf8_lossy(&output.stdout);
        assert!(csv.starts_with("purpose,name,legal bases"), "{csv}");
        assert_eq!(csv.lines().count(), 1 + Policy::default_policy().purposes().len());
    }
}

/// Proves: A5
#[test]
fn policy_check_names_the_line_and_field_of_a_bad_file_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text = DEFAULT_POLICY.replace(
        "categories = [\"user.account.birth_year\"]",
        "categories = [\"user.account.birthday\"]",
    );
    let line = text
        .lines()
        .position(|l| l.contains("user.account.birthday"))
        .unwrap()
        + 1;
    std::fs::write(&bad, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_covenant"))
        .args(["policy", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "bad.toml:{line}: purposes[age_rules].categories[0]"
        )),
        "{stderr}"
    );

    let good = dir.path().join("good.toml");
    std::fs::write(&good, DEFAULT_POLICY).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_covenant"))
        .args(["policy", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("OK"));

    let editorial = dir.path().join("editorial.toml");
    std::fs::write(&editorial, editorial_change("2025.2")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_covenant"))
        .args(["policy", "diff"])
        .arg(&good)
        .arg(&editorial)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(
        stdout.contains("editorial  providers[hosting].name")
            && stdout.ends_with("verdict: editorial\n"),
        "{stdout}"
    );
}
