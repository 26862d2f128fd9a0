//! Access and erasure on the running forum, on both stores: a synthetic subject with a distinct
//! marker in every declared personal column is found whole in the export archive and nowhere
//! in the database after erasure; links are single-use, expiring and signed; an erased subject
//! stays erased when an older copy of the database comes back.

mod common;

use covenant::fulfilment::{self, ContentChoice};
use covenant::inventory::{self, Kind, Link};
use covenant::store::{self, NewConsentRecord};
use std::io::Read;

async fn user_id(app: &common::TestApp, username: &str) -> i64 {
    app.store
        .user_by_username(&username.to_lowercase())
        .await
        .unwrap()
        .expect("the member exists")
        .id
}

async fn post_topic(app: &common::TestApp, bearer: &str, title: &str, body: &str) -> i64 {
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
    created["topic_id"].as_i64().unwrap()
}

async fn reply(app: &common::TestApp, bearer: &str, topic: i64, body: &str) {
    let response = app
        .client
        .post(app.url(&format!("/api/v1/topics/{topic}/posts")))
        .bearer_auth(bearer)
        .json(&serde_json::json!({"body": body}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

/// Asks for an export through the API and returns the download URL.
async fn export_url(app: &common::TestApp, bearer: &str) -> String {
    let response = app
        .client
        .post(app.url("/api/v1/me/export"))
        .bearer_auth(bearer)
        .json(&serde_json::json!({"jurisdiction": "oregon"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    body["url"].as_str().unwrap().to_string()
}

/// Archives still held: stored content not yet cleared, and files left on disk.
async fn archives_held(app: &common::TestApp) -> i64 {
    let pool = app.raw_pool().await;
    let (stored,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM export_archives WHERE content IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    let files = std::fs::read_dir(fulfilment::archive_dir(app.data_dir.path()))
        .map(|d| d.count())
        .unwrap_or(0);
    stored + files as i64
}

/// Every file of the archive, by name.
fn unzip(bytes: &[u8]) -> Vec<(String, String)> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut file = archive.by_index(i).unwrap();
            let mut text = String::new();
            file.read_to_string(&mut text).unwrap();
            (file.name().unwrap().to_string(), text)
        })
        .collect()
}

/// The condition selecting the subject's rows of a table linked to them, `None` for tables
/// whose rows this test does not make.
fn link_filter(link: Link, id: i64) -> Option<(&'static str, String)> {
    match link {
        Link::Subject { column } | Link::UserId { column } => {
            Some((column, format!("{column} = {id}")))
        }
        Link::AccountSubject { column } => Some((column, format!("{column} = 'account:{id}'"))),
        // Posts' text, through the posts the subject wrote.
        Link::Through { column, ids } if ids.contains("FROM posts ") => Some((
            column,
            format!("{column} IN ({})", ids.replace("$1", &id.to_string())),
        )),
        // Request records and throttles are made by the request workflow.
        Link::Through { .. } | Link::EmailKey { .. } | Link::Nobody | Link::IdsOnly => None,
    }
}

/// A subject with a row in every table the inventory links to a member, and a distinct marker
/// in every personal column of those rows. Returns the subject's id, bearer, and the markers
/// (text ones, and the `withheld` flag of their column).
async fn marked_subject(app: &common::TestApp) -> (i64, String, Vec<(String, bool)>) {
    let bearer = app.member("subject").await;
    let id = user_id(app, "subject").await;
    let topic = post_topic(app, &bearer, "A topic by the subject", "First post").await;
    reply(app, &bearer, topic, "A reply by the subject").await;
    let now = covenant::now();
    app.store
        .insert_pending_two_factor(id, "SECRETSECRETSECRET", now)
        .await
        .unwrap();
    let mut tx = app.store.begin().await.unwrap();
    store::replace_recovery_codes(&mut tx, id, &["digest".to_string()], now)
        .await
        .unwrap();
    let subject = format!("account:{id}");
    let record = store::insert_consent_record(
        &mut tx,
        &NewConsentRecord {
            receipt_id: "receipt-1",
            subject: &subject,
            category: "analytics",
            choice: "granted",
            method: "settings_page",
            policy_version: "2025.1",
            text_hash: "hash",
            recorded_at: now,
        },
    )
    .await
    .unwrap();
    store::claim_gpc_marker(&mut tx, &subject, record, now)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // A version not yet in force, only so that an acknowledgement can point at it.
    let pool = app.raw_pool().await;
    let (version,): (i64,) = sqlx::query_as(
        "INSERT INTO policy_versions (version_label, effective_on, published_at, toml_text, \
         sha256, material, diff_json) VALUES ('9999.1', '2999-01-01', 1, '', '', 1, '[]') \
         RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    app.store
        .acknowledge_policy_version(id, version, now)
        .await
        .unwrap();
    for insert in [
        "INSERT INTO parental_consents (user_id, parent_email, token_hash, requested_at, \
         expires_at) VALUES ($1, 'parent@example.org', 'digest', 1, 2)",
        "INSERT INTO news_subscriptions (user_id, subscribed, method, policy_version, text_hash, \
         recorded_at) VALUES ($1, 1, 'settings_page', '2025.1', 'hash', 1)",
        "INSERT INTO feedback (user_id, body, may_publish, may_name, created_at) \
         VALUES ($1, 'Nice forum', 0, 0, 1)",
        "INSERT INTO social_flows (state_hash, provider, pkce_verifier, nonce, user_id, \
         policy_version, text_hash, created_at, expires_at) \
         VALUES ('state', 'test-id', 'verifier', 'nonce', $1, '2025.1', 'hash', 1, 2)",
        "INSERT INTO social_links (user_id, provider, subject, fields_received, policy_version, \
         text_hash, authorized_at, linked_at) \
         VALUES ($1, 'test-id', 'sub-1', 'subject,email', '2025.1', 'hash', 1, 1)",
        // The followed topic's id is the marker the loop below writes into topic_follows.
        "INSERT INTO topics (id, kind, user_id, title, slug, created_at, last_posted_at) \
         VALUES (1917, 'discussion', $1, 'Followed', 'followed', 1, 1)",
        "INSERT INTO topic_follows (user_id, topic_id, created_at) VALUES ($1, 1917, 1)",
        "INSERT INTO digest_subscriptions (user_id, subscribed, method, policy_version, \
         text_hash, recorded_at) VALUES ($1, 1, 'account_page', '2025.1', 'hash', 1)",
        "INSERT INTO digest_sends (user_id, period, up_to_post_id, sent_at) VALUES ($1, 1, 2, 1)",
        // A restriction the subject asked for and lifted again (lifted, so mail still flows).
        "INSERT INTO processing_restrictions (user_id, started_at, lifted_at, lifted_by, \
         lifted_how) VALUES ($1, 1, 2, $1, 'subject')",
    ] {
        sqlx::query(insert).bind(id).execute(&pool).await.unwrap();
    }
    sqlx::query("UPDATE mail_outbox SET list_unsubscribe = 'x' WHERE user_id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    // An archive row exists once an export was asked for.
    let _ = export_url(app, &bearer).await;

    let mut markers = Vec::new();
    for table in inventory::TABLES {
        let Some((link, filter)) = link_filter(table.link, id) else {
            continue;
        };
        if table.rows == inventory::Rows::Evidence {
            continue;
        }
        for (column, personal) in table.personal_columns() {
            if column.name == link {
                continue;
            }
            let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM {} WHERE {filter}",
                table.name
            )))
            .fetch_one(&pool)
            .await
            .unwrap();
            assert!(n > 0, "the subject has no row in {} to mark", table.name);
            let value = match column.kind {
                Kind::Text => format!(
                    "'zqm-{}-{}-' || CAST({} AS TEXT) || '-z'",
                    table.name, column.name, table.key
                ),
                Kind::Int => "1917".to_string(),
                Kind::Bytes => match app.backend {
                    common::Backend::Sqlite => {
                        format!("CAST('zqm-{}-{}' AS BLOB)", table.name, column.name)
                    }
                    common::Backend::Postgres => {
                        format!("convert_to('zqm-{}-{}', 'UTF8')", table.name, column.name)
                    }
                },
            };
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {} SET {} = {value} WHERE {filter}",
                table.name, column.name
            )))
            .execute(&pool)
            .await
            .unwrap();
            if column.kind == Kind::Text {
                let values: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM {} WHERE {filter}",
                    column.name, table.name
                )))
                .fetch_all(&pool)
                .await
                .unwrap();
                markers.extend(values.into_iter().map(|(v,)| (v, personal.withheld)));
            }
        }
    }
    pool.close().await;
    // The marked session no longer matches any token: open a fresh one, itself marked.
    let token = covenant::accounts::random_token();
    let mut tx = app.store.begin().await.unwrap();
    store::insert_session(
        &app.store,
        &mut tx,
        &store::NewSession {
            token_hash: &covenant::accounts::token_digest(&token),
            user_id: id,
            csrf_token: "zqm-fresh-csrf-z",
            now,
            expires_at: now + 3600,
            ip: "zqm-fresh-ip-z",
            user_agent: "zqm-fresh-agent-z",
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    markers.push(("zqm-fresh-csrf-z".into(), true));
    markers.push(("zqm-fresh-ip-z".into(), false));
    markers.push(("zqm-fresh-agent-z".into(), false));
    (id, token, markers)
}

/// Every text column of every table that still holds `needle`.
async fn columns_holding(app: &common::TestApp, needle: &str) -> Vec<String> {
    let pool = app.raw_pool().await;
    let sql = match app.backend {
        common::Backend::Sqlite => {
            "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'"
        }
        common::Backend::Postgres => {
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public'"
        }
    };
    let columns: Vec<(String, String)> = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
    let mut found = Vec::new();
    for (table, column) in columns {
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {table} WHERE CAST({column} AS TEXT) LIKE $1"
        )))
        .bind(format!("%{needle}%"))
        .fetch_one(&pool)
        .await
        .unwrap();
        if n > 0 {
            found.push(format!("{table}.{column}"));
        }
    }
    pool.close().await;
    found
}

on_both_stores! {
    /// Proves: R7, R8
    async fn export_holds_every_marker_and_erasure_leaves_none_in_any_column(app) {
        let (id, bearer, markers) = marked_subject(app).await;
        assert!(markers.len() > 20, "markers: {}", markers.len());
        // Another member mentions the subject by their (marked) name.
        let other = app.member("neighbour").await;
        let username = app.store.user_by_id(id).await.unwrap().unwrap().username;
        let topic = post_topic(app, &other, "Neighbourly", "Hello there").await;
        reply(app, &other, topic, &format!("Thanks @{username}, well said.")).await;

        let url = export_url(app, &bearer).await;
        let response = app.client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/zip");
        let files = unzip(&response.bytes().await.unwrap());
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        for needed in ["README.txt", "manifest.json", "consent/receipts.json",
                       "data/user.contact.email.json", "data/user.contact.email.csv",
                       "data/user.device.ip_address.csv", "data/user.content.public.json"] {
            assert!(names.contains(&needed), "{needed} missing from {names:?}");
        }
        // Each post's text comes with where and when it was written.
        let file = |name: &str| -> serde_json::Value {
            let (_, text) = files.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name} missing"));
            serde_json::from_str(text).unwrap()
        };
        let texts = file("data/user.content.public.json")["records"]["post_bodies"].as_array().expect("the posts' text").clone();
        let places = file("data/context/posts.json")["records"].as_array().expect("the posts' places").clone();
        assert!(!texts.is_empty() && texts.len() == places.len(), "{} texts, {} places", texts.len(), places.len());
        for text in &texts {
            let place = places.iter().find(|p| p["id"] == text["post_id"])
                .unwrap_or_else(|| panic!("no place for post {}", text["post_id"]));
            assert_eq!(place["user_id"], serde_json::json!(id));
            assert!(place["topic_id"].as_i64().is_some() && place["created_at"].as_i64().unwrap() > 0, "{place}");
        }
        let everything: String = files.iter().map(|(_, text)| text.as_str()).collect();
        for (marker, withheld) in &markers {
            assert_eq!(everything.contains(marker.as_str()), !withheld, "marker {marker}");
        }
        // The birth year is text since it is sealed (0035): its marker is checked above.
        let manifest: serde_json::Value = serde_json::from_str(
            &files.iter().find(|(n, _)| n == "manifest.json").unwrap().1,
        )
        .unwrap();
        assert_eq!(manifest["jurisdiction"], "oregon");
        for part in ["categories_collected", "sources", "purposes", "disclosed"] {
            assert!(manifest["right_to_know"][part].is_array(), "{part}");
        }
        let email = manifest["categories"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["key"] == "user.contact.email")
            .unwrap();
        assert!(email["retention"].as_str().unwrap().contains("deleted"));
        assert!(!email["purposes"].as_array().unwrap().is_empty());
        // Oregon names the third parties.
        assert!(everything.contains("Example Mail Relay"));

        let in_force = app.state.policy.current().await.unwrap();
        let report = app
            .state
            .fulfilment
            .erase_subject(&in_force.policy, id, ContentChoice::Remove, None)
            .await
            .unwrap();
        assert_eq!(report.mentions_rewritten, 1);
        assert!(report.holds.is_empty(), "no holds");
        let left = columns_holding(app, "zqm-").await;
        assert!(left.is_empty(), "markers left after erasure in {left:?}");
        let left = columns_holding(app, &format!("account:{id}")).await;
        assert!(left.is_empty(), "consent links left in {left:?}");
        assert_eq!(archives_held(app).await, 0, "no archive outlives its subject");
        let ledger = std::fs::read_to_string(fulfilment::ledger_path(app.data_dir.path())).unwrap();
        assert!(ledger.starts_with(&format!("{id} ")));
        // The subject's bearer session is gone with everything else.
        let me = app.client.get(app.url("/api/v1/me")).bearer_auth(&bearer).send().await.unwrap();
        assert_eq!(me.status(), 401);
    }
}

on_both_stores! {
    /// Proves: R8
    async fn erased_posts_stay_as_deleted_user_with_mentions_rewritten(app) {
        let subject = app.member("leaving").await;
        let topic = post_topic(app, &subject, "Leaving soon", "My last words here").await;
        let other = app.member("staying").await;
        reply(app, &other, topic, "Goodbye @Leaving, and thanks").await;
        let id = user_id(app, "leaving").await;
        let in_force = app.state.policy.current().await.unwrap();
        let report = app
            .state
            .fulfilment
            .erase_subject(&in_force.policy, id, ContentChoice::KeepAnonymized, None)
            .await
            .unwrap();
        assert!(report.kept.iter().any(|k| k.what.contains("public posts")));
        let topic_json: serde_json::Value = app
            .client
            .get(app.url(&format!("/api/v1/topics/{topic}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let text = topic_json.to_string();
        assert!(text.contains("My last words here"), "the post stays: {text}");
        assert!(text.contains("deleted user"));
        assert!(text.contains("@deleted-user"));
        assert!(!text.to_lowercase().contains("@leaving"));
        assert!(!text.contains("leaving@example.org"));
        let profile = app.client.get(app.url("/u/leaving")).send().await.unwrap();
        assert_eq!(profile.status(), 404);
        let sign_in = app
            .client
            .post(app.url("/api/v1/session"))
            .json(&serde_json::json!({"login": "leaving@example.org", "password": "a long enough password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(sign_in.status(), 401);
        // A second erasure finds no live account.
        assert!(app
            .state
            .fulfilment
            .erase_subject(&in_force.policy, id, ContentChoice::Remove, None)
            .await
            .is_err());
    }
}

on_both_stores! {
    /// Proves: R8
    async fn a_mention_edited_into_a_post_older_than_the_account_is_rewritten_too(app) {
        // A post written long before the subject joined, in a topic quiet since then...
        let other = app.member("elder").await;
        let topic = post_topic(app, &other, "Old times", "Nothing to see yet").await;
        let pool = app.raw_pool().await;
        sqlx::query("UPDATE posts SET created_at = 1 WHERE topic_id = $1")
            .bind(topic)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("UPDATE topics SET last_posted_at = 1 WHERE id = $1")
            .bind(topic)
            .execute(&pool)
            .await
            .unwrap();
        let (post_id,): (i64,) = sqlx::query_as("SELECT id FROM posts WHERE topic_id = $1")
            .bind(topic)
            .fetch_one(&pool)
            .await
            .unwrap();
        // ...is edited after they joined to greet them by name.
        let subject = app.member("newcomer").await;
        let edited = app
            .client
            .patch(app.url(&format!("/api/v1/posts/{post_id}")))
            .bearer_auth(&other)
            .json(&serde_json::json!({"body": "Welcome @Newcomer, glad you came"}))
            .send()
            .await
            .unwrap();
        assert_eq!(edited.status(), 200);
        post_topic(app, &subject, "Hello", "Thanks everyone").await;
        let id = user_id(app, "newcomer").await;
        let in_force = app.state.policy.current().await.unwrap();
        let report = app
            .state
            .fulfilment
            .erase_subject(&in_force.policy, id, ContentChoice::KeepAnonymized, None)
            .await
            .unwrap();
        assert_eq!(report.mentions_rewritten, 1);
        let (body,): (String,) = sqlx::query_as("SELECT body_md FROM post_bodies WHERE post_id = $1")
            .bind(post_id)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(body, "Welcome @deleted-user, glad you came");
    }
}

on_both_stores! {
    /// Proves: R7
    async fn download_links_are_refused_when_reused_tampered_or_expired(app) {
        let bearer = app.member("downloader").await;
        let url = export_url(app, &bearer).await;
        let mut tampered = url.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(app.client.get(&tampered).send().await.unwrap().status(), 400);
        assert_eq!(app.client.get(&url).send().await.unwrap().status(), 200);
        assert_eq!(app.client.get(&url).send().await.unwrap().status(), 400, "reused");

        let url = export_url(app, &bearer).await;
        let pool = app.raw_pool().await;
        sqlx::query("UPDATE export_archives SET expires_at = 1 WHERE downloaded_at IS NULL")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        assert_eq!(app.client.get(&url).send().await.unwrap().status(), 400, "expired");
        // The expired archive's file is purged by the next sweep.
        assert_eq!(app.state.fulfilment.purge_archives().await.unwrap(), 1);
        assert_eq!(archives_held(app).await, 0, "the expired archive's content is gone");
    }
}

on_both_stores! {
    /// Proves: R7
    async fn a_member_gets_the_archive_from_the_privacy_page(app) {
        let _ = app.member("pagereader").await;
        let response = app
            .client
            .post(app.url("/sign-in"))
            .form(&[("login", "pagereader"), ("password", "a long enough password"),
                    ("csrf", &common::csrf_of(&app.page(&app.client, "/sign-in").await))])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303);
        let html = app.page(&app.client, "/account/privacy/export").await;
        let csrf = common::csrf_of(&html);
        let refused = app
            .client
            .post(app.url("/account/privacy/export"))
            .form(&[("csrf", "forged"), ("jurisdiction", "eu_eea")])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403);
        let html = app
            .client
            .post(app.url("/account/privacy/export"))
            .form(&[("csrf", csrf.as_str()), ("jurisdiction", "eu_eea")])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let start = html.find(&app.url("/privacy/export/")).expect("a download link");
        let link = html[start..].split('"').next().unwrap();
        let zip = app.client.get(link).send().await.unwrap().bytes().await.unwrap();
        let files = unzip(&zip);
        let manifest = &files.iter().find(|(n, _)| n == "manifest.json").unwrap().1;
        assert!(manifest.contains("\"eu_eea\""));
    }
}

on_both_stores! {
    /// Proves: R8
    async fn an_erasure_in_the_ledger_file_is_applied_again_before_the_server_starts(app) {
        // What a restored backup looks like: the database lacks an erasure the ledger file has.
        let _ = app.member("restored").await;
        let id = user_id(app, "restored").await;
        let ledger = fulfilment::ledger_path(app.data_dir.path());
        std::fs::write(&ledger, format!("{id} 1700000000 remove\n")).unwrap();
        let state = covenant::web::AppState::open((*app.state.config).clone()).await.unwrap();
        let user = state.store.user_by_id(id).await.unwrap().unwrap();
        assert_eq!(user.username, "deleted user");
        assert!(!user.email.contains("restored"));
        assert_eq!(state.store.erasure_ledger().await.unwrap(), vec![(id, 1_700_000_000, "remove".to_string())]);
        state.store.close().await;
    }
}

/// Proves: R8
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restored_after_an_erasure_does_not_resurrect_the_subject() {
    // A data folder that outlives the first server, as the operator's does.
    let data_dir = tempfile::tempdir().unwrap();
    let folder = data_dir.path().to_path_buf();
    let app = common::spawn_app_with(common::Backend::Sqlite, |c| c.data_dir = folder)
        .await
        .unwrap();
    let in_force = app.state.policy.current().await.unwrap();
    app.state
        .accounts
        .register(
            &covenant::accounts::Registration {
                username: "backedup",
                email: "backedup@example.org",
                password: "a long enough password",
                birth_year: "1990",
                country: "FR",
                us_state: "",
                birth_date: "",
                parent_email: "",
                news: false,
                client_ip: "",
            },
            &in_force.policy,
        )
        .await
        .unwrap();
    let id = user_id(&app, "backedup").await;
    let backup = data_dir.path().join("before.db");
    fulfilment::backup(&app.store, &backup).await.unwrap();
    let in_force = app.state.policy.current().await.unwrap();
    app.state
        .fulfilment
        .erase_subject(&in_force.policy, id, ContentChoice::KeepAnonymized, None)
        .await
        .unwrap();
    let config = (*app.state.config).clone();
    app.stop().await;
    fulfilment::restore(&config, &backup).await.unwrap();
    let state = covenant::web::AppState::open(config).await.unwrap();
    let user = state.store.user_by_id(id).await.unwrap().unwrap();
    assert_eq!(user.username, "deleted user");
    assert!(
        state
            .store
            .user_by_email("backedup@example.org")
            .await
            .unwrap()
            .is_none()
    );
    state.store.close().await;
}

/// Rows holding `address` that the erasure by address removes: a provider sign-up never
/// finished, and mail sent to a person without an account, stored as the service stores them
/// (sealed under keys of their own rows, found by the keyed hash of the address).
async fn rows_of_visitor(store: &store::Store, address: &str) {
    let mut tx = store.begin().await.unwrap();
    store::insert_social_pending(
        store,
        &mut tx,
        &store::NewSocialPending {
            token_hash: &format!("token-{address}"),
            provider: "test-id",
            subject: "zqm-pending-subject",
            email: address,
            email_verified: true,
            fields_received: "email",
            policy_version: "2025.1",
            text_hash: "hash",
            authorized_at: 1,
            expires_at: 4102444800,
        },
    )
    .await
    .unwrap();
    let mail = covenant::mail::Mail {
        subject: "zqm-mail-subject".into(),
        body: "zqm-mail-body".into(),
    };
    let key = format!("old-message-{address}");
    mail.enqueue(store, &mut tx, &key, address, None, 1)
        .await
        .unwrap();
    sqlx::query("UPDATE mail_outbox SET sent_at = 1 WHERE idempotency_key = $1")
        .bind(&key)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// How many rows of a person without an account there are, found by the keyed hash of their
/// address (`lookup`), as erasure by address finds them.
async fn count_rows_of(pool: &sqlx::AnyPool, lookup: &str) -> i64 {
    let (a,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM social_pending WHERE email_lookup = $1")
            .bind(lookup)
            .fetch_one(pool)
            .await
            .unwrap();
    let (b,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM mail_outbox WHERE recipient_lookup = $1")
            .bind(lookup)
            .fetch_one(pool)
            .await
            .unwrap();
    a + b
}

on_both_stores! {
    /// Proves: R8
    async fn an_erasure_by_address_is_applied_again_to_an_older_copy_at_start(app) {
        let (gone, kept) = ("zqm-gone@example.org", "zqm-kept@example.org");
        let pool = app.raw_pool().await;
        let (gone_hash, kept_hash) =
            (app.store.lookup_hash(gone).unwrap(), app.store.lookup_hash(kept).unwrap());
        rows_of_visitor(&app.store, gone).await;
        rows_of_visitor(&app.store, kept).await;
        assert_eq!(count_rows_of(&pool, gone_hash.as_str()).await, 2);
        app.state.fulfilment.erase_address(gone, None).await.unwrap();
        assert_eq!(count_rows_of(&pool, &gone_hash).await, 0);
        // The rows' own keys went with them.
        let pending_key = store::pending_key_subject(&format!("token-{gone}"));
        assert!(!app.store.has_key(&pending_key).await.unwrap());
        assert!(app.store.has_key(&store::pending_key_subject(&format!("token-{kept}"))).await.unwrap());
        // The ledger names the person by a keyed hash only.
        let ledger = std::fs::read_to_string(fulfilment::address_ledger_path(app.data_dir.path()))
            .unwrap();
        assert_eq!(ledger.lines().count(), 1);
        assert!(ledger.starts_with("k1:") && !ledger.contains("zqm"), "{ledger}");
        assert!(columns_holding(app, "zqm-gone").await.is_empty());
        // An older copy comes back: the rows again, and no ledger entry in the database.
        sqlx::query("DELETE FROM address_erasures").execute(&pool).await.unwrap();
        rows_of_visitor(&app.store, gone).await;
        assert_eq!(count_rows_of(&pool, &gone_hash).await, 2);
        let state = covenant::web::AppState::open((*app.state.config).clone()).await.unwrap();
        assert_eq!(count_rows_of(&pool, &gone_hash).await, 0, "erased again before serving");
        assert_eq!(count_rows_of(&pool, &kept_hash).await, 2, "nobody else is touched");
        assert_eq!(state.store.address_erasures().await.unwrap().len(), 1);
        pool.close().await;
        state.store.close().await;
    }
}

/// Proves: R8
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restored_after_an_erasure_by_address_does_not_resurrect_the_person() {
    let data_dir = tempfile::tempdir().unwrap();
    let folder = data_dir.path().to_path_buf();
    let app = common::spawn_app_with(common::Backend::Sqlite, |c| c.data_dir = folder)
        .await
        .unwrap();
    let address = "zqm-visitor@example.org";
    let database = format!("sqlite://{}", data_dir.path().join("covenant.db").display());
    let lookup = app.store.lookup_hash(address).unwrap();
    rows_of_visitor(&app.store, address).await;
    let backup = data_dir.path().join("before.db");
    fulfilment::backup(&app.store, &backup).await.unwrap();
    app.state
        .fulfilment
        .erase_address(address, None)
        .await
        .unwrap();
    let config = (*app.state.config).clone();
    app.stop().await;
    let restored = fulfilment::restore(&config, &backup).await.unwrap();
    assert_eq!(restored.erased_again, 1);
    let pool = sqlx::AnyPool::connect(&database).await.unwrap();
    assert_eq!(count_rows_of(&pool, &lookup).await, 0);
    pool.close().await;
}

on_both_stores! {
    /// Proves: A7
    async fn the_whole_dataset_leaves_with_the_policy_obligations_attached(app) {
        let _ = app.member("transferred").await;
        let in_force = app.state.policy.current().await.unwrap();
        let out = app.data_dir.path().join("transfer.zip");
        let n_rows = fulfilment::export_all(&app.store, &in_force.policy, &out).await.unwrap();
        assert!(n_rows > 3);
        let files = unzip(&std::fs::read(&out).unwrap());
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        for table in inventory::TABLES {
            let name = format!("tables/{}.jsonl", table.name);
            assert!(names.contains(&name.as_str()), "{name}");
        }
        let users = &files.iter().find(|(n, _)| n == "tables/users.jsonl").unwrap().1;
        assert!(users.contains("transferred@example.org"));
        let manifest: serde_json::Value = serde_json::from_str(
            &files.iter().find(|(n, _)| n == "manifest.json").unwrap().1,
        )
        .unwrap();
        assert!(manifest["obligations"].as_str().unwrap().contains("promises of this policy"));
        let users_manifest = manifest["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == "users")
            .unwrap();
        assert!(users_manifest["columns"].as_array().unwrap().iter().any(|c| {
            c["column"] == "email" && c["category"] == "user.contact.email"
                && c["retention"].as_str().is_some()
        }));
        assert!(names.contains(&"policy-in-force.json"));
    }
}

on_both_stores! {
    /// Proves: R8, T3
    async fn a_legal_hold_keeps_what_it_covers_and_the_answer_says_why(app) {
        let bearer = app.member("claimant").await;
        let topic = post_topic(app, &bearer, "Disputed", "The disputed words").await;
        let id = user_id(app, "claimant").await;
        let mut tx = app.store.begin().await.unwrap();
        store::insert_hold(
            &mut tx,
            &store::NewHold {
                subject_user_id: Some(id),
                categories: "user.device.ip_address",
                created_from: None,
                created_until: None,
                reason: "claim 2026-17",
                created_by: None,
                now: covenant::now(),
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let in_force = app.state.policy.current().await.unwrap();
        let report = app
            .state
            .fulfilment
            .erase_subject(&in_force.policy, id, ContentChoice::Remove, None)
            .await
            .unwrap();
        assert_eq!(report.holds, ["claim 2026-17"]);
        assert!(report.kept.iter().any(|k| k.what.contains("user.device.ip_address")));
        let pool = app.raw_pool().await;
        let ips: Vec<(String, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT d.ip, d.user_agent FROM post_devices d JOIN posts p ON p.id = d.post_id \
                 WHERE p.topic_id = {topic}"
            )))
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        assert!(ips.iter().all(|(ip, agent)| !ip.is_empty() && agent.is_empty()), "{ips:?}");
        let user = app.store.user_by_id(id).await.unwrap().unwrap();
        assert_eq!(user.username, "deleted user");
    }
}

/// A download link works on whichever node serves it: the archive is in the database, not on
/// the disk of the node that built it.
/// Proves: R7
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_built_on_one_node_is_handed_out_by_another_on_postgres() {
    let Some(app) = common::spawn_app(common::Backend::Postgres).await else {
        return;
    };
    app.member("twonodes").await;
    let bearer = app.bearer("twonodes").await;
    let url = export_url(&app, &bearer).await;
    let (database_url, audit_key_file) = (
        app.state.config.database_url.clone(),
        app.state.config.audit_key_path(),
    );
    let other = common::spawn_app_with(common::Backend::Postgres, move |config| {
        config.database_url = database_url;
        config.audit_key_file = audit_key_file;
    })
    .await
    .unwrap();
    assert_ne!(
        other.data_dir.path(),
        app.data_dir.path(),
        "two nodes, two disks"
    );
    let path = url
        .strip_prefix(&app.address)
        .expect("a link to this forum");
    let response = other.client.get(other.url(path)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let files = unzip(&response.bytes().await.unwrap());
    assert!(files.iter().any(|(name, _)| name == "manifest.json"));
    assert_eq!(
        other
            .client
            .get(other.url(path))
            .send()
            .await
            .unwrap()
            .status(),
        400,
        "used once"
    );
    assert_eq!(
        app.client.get(&url).send().await.unwrap().status(),
        400,
        "on either node"
    );
    assert_eq!(archives_held(&app).await, 0, "handed out, then cleared");
    other.stop().await;
    app.stop().await;
}

/// The 8-digit code in a request email.
fn code_in(mail: &str) -> String {
    mail.lines()
        .map(str::trim)
        .find(|l| l.len() == 8 && l.chars().all(|c| c.is_ascii_digit()))
        .expect("the message holds a code")
        .to_string()
}

/// The path of the link in `mail` that starts with `prefix`.
fn path_with(app: &common::TestApp, mail: &str, prefix: &str) -> String {
    let needle = format!("{}{prefix}", app.address);
    let start = mail.find(&needle).expect("the link is in the message");
    mail[start + app.address.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

async fn post_with_csrf(
    app: &common::TestApp,
    client: &reqwest::Client,
    page_path: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let page = app.page(client, page_path).await;
    let mut all = vec![("csrf".to_string(), common::csrf_of(&page))];
    all.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    client
        .post(app.url(action))
        .form(&all)
        .send()
        .await
        .unwrap()
}

/// Rows of `mail_outbox` addressed to `address`, with their subjects (opened from their
/// seals, as the whole-dataset export reads them).
async fn outbox_subjects(app: &common::TestApp, address: &str) -> Vec<String> {
    let table = inventory::table("mail_outbox").unwrap();
    let at = |name: &str| table.columns.iter().position(|c| c.name == name).unwrap();
    let text = |value: &store::Value| match value {
        store::Value::Text(Some(text)) => text.clone(),
        _ => String::new(),
    };
    app.store
        .all_rows(table)
        .await
        .unwrap()
        .iter()
        .filter(|row| text(&row[at("recipient")]).to_lowercase() == address)
        .map(|row| text(&row[at("subject")]))
        .collect()
}

on_both_stores! {
    /// Proves: R8, R9
    async fn a_requester_without_an_account_is_erased_by_address_and_only_the_proof_stays(app) {
        let address = "zqm-visitor@example.org";
        app.member("kid").await;
        let kid = user_id(app, "kid").await;
        let pool = app.raw_pool().await;
        // The address is a parent's on a minor's consent, a provider sign-up never finished,
        // and the recipient of mail already sent.
        // (Sealed with the minor's key and found by its keyed hash, as the service stores it.)
        let mut tx = app.store.begin().await.unwrap();
        store::insert_parental_request(&app.store, &mut tx, &store::NewParentalRequest {
            user_id: kid, parent_email: address, token_hash: "zqm-parent-token", now: 1,
            expires_at: 2,
        }).await.unwrap();
        tx.commit().await.unwrap();
        sqlx::query("UPDATE parental_consents SET consented_at = 1 WHERE user_id = $1")
            .bind(kid).execute(&pool).await.unwrap();
        pool.close().await;
        rows_of_visitor(&app.store, address).await;

        // The visitor asks for deletion from the public form; the code proves the address.
        let visitor = app.new_client();
        let response = post_with_csrf(app, &visitor, "/privacy/requests/new", "/privacy/requests/new", &[
            ("requester_name", "A visitor"), ("requester_email", address), ("relationship", "self"),
            ("country", "DE"), ("rights", "deletion"), ("comments", "zqm-comment"),
        ]).await;
        assert_eq!(response.status(), reqwest::StatusCode::SEE_OTHER);
        let mail = app.wait_for_mail(address, "privacy request code").await;
        let verify = path_with(app, &mail, "/privacy/requests/verify/");
        let response = post_with_csrf(app, &visitor, &verify, &verify, &[("code", &code_in(&mail))]).await;
        assert_eq!(response.status(), reqwest::StatusCode::SEE_OTHER);
        app.state.mailer.wake();
        let answer = app.wait_for_mail(address, "We did what you asked").await;
        assert!(answer.contains("We kept only") && answer.contains("records of your privacy requests"), "{answer}");

        // Nothing of the address or its markers stays but the request's proof and this answer.
        let left = columns_holding(app, "zqm-").await;
        let proof = ["privacy_submissions.requester_email", "privacy_submissions.subject_email",
            "privacy_submissions.comments", "mail_outbox.recipient"];
        assert!(left.iter().all(|c| proof.contains(&c.as_str())), "left: {left:?}");
        let subjects = outbox_subjects(app, address).await;
        assert_eq!(subjects.len(), 1, "{subjects:?}");
        assert!(subjects[0].contains("We did what you asked"));
        // The minor's consent stays as the minor's record, without the parent's address.
        let pool = app.raw_pool().await;
        let (n, email): (i64, String) = sqlx::query_as(
            "SELECT COUNT(*), MAX(parent_email) FROM parental_consents WHERE user_id = $1")
            .bind(kid).fetch_one(&pool).await.unwrap();
        pool.close().await;
        assert_eq!((n, email.as_str()), (1, ""));
        let audit = app.store.audit_page(&Default::default(), 1000, 0).await.unwrap().0;
        assert!(audit.iter().any(|e| e.kind == "data_erased" && e.details.contains("method=address")));
        assert!(audit.iter().all(|e| !e.details.contains("zqm")), "no address in the audit log");
    }
}

on_both_stores! {
    /// Proves: R8, T3
    async fn a_deletion_request_under_a_legal_hold_keeps_only_the_held_data_and_says_why(app) {
        let bearer = app.member("holder").await;
        let id = user_id(app, "holder").await;
        let topic = post_topic(app, &bearer, "Held words", "Words under a claim").await;
        let mut tx = app.store.begin().await.unwrap();
        store::insert_hold(&mut tx, &store::NewHold {
            subject_user_id: Some(id),
            categories: "user.device.ip_address",
            created_from: None,
            created_until: None,
            reason: "claim 2026-41",
            created_by: None,
            now: covenant::now(),
        }).await.unwrap();
        tx.commit().await.unwrap();

        let response = app.client.post(app.url("/api/v1/privacy-requests")).bearer_auth(&bearer)
            .json(&serde_json::json!({"rights": ["deletion"], "country": "DE"}))
            .send().await.unwrap();
        assert_eq!(response.status(), 201);
        app.state.mailer.wake();
        // (The subject line is folded, so the headline is looked for in the body.)
        let answer = app.wait_for_mail("holder@example.org", "Your privacy request on").await;
        assert!(answer.contains("We did part of what you asked"), "{answer}");
        assert!(answer.contains("user.device.ip_address") && answer.contains("claim 2026-41")
            && answer.contains("legal hold"), "the answer says what was kept and why: {answer}");

        // Held: the IP addresses. Everything else of the member is gone.
        let pool = app.raw_pool().await;
        let posts: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT d.ip, d.user_agent FROM post_devices d JOIN posts p ON p.id = d.post_id \
                 WHERE p.topic_id = {topic}"))).fetch_all(&pool).await.unwrap();
        let sign_ins: Vec<(String,)> = sqlx::query_as("SELECT ip FROM sign_ins WHERE user_id = $1")
            .bind(id).fetch_all(&pool).await.unwrap();
        pool.close().await;
        assert!(!posts.is_empty() && posts.iter().all(|(ip, agent)| !ip.is_empty() && agent.is_empty()), "{posts:?}");
        assert!(sign_ins.iter().all(|(ip,)| !ip.is_empty()), "held sign-in addresses stay");
        let user = app.store.user_by_id(id).await.unwrap().unwrap();
        assert_eq!(user.username, "deleted user");
        let left = columns_holding(app, "holder").await;
        let proof = ["privacy_submissions.requester_name", "privacy_submissions.requester_email",
            "privacy_submissions.subject_email", "mail_outbox.recipient"];
        assert!(left.iter().all(|c| proof.contains(&c.as_str())), "left: {left:?}");
    }
}
