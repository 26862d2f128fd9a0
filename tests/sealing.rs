//! Crypto-shredding on the running forum, on both stores: a member's private fields are not in
//! the database in plain text, sign-in and intake still find them by their keyed hash, and once
//! the member is erased an older copy of their rows (a backup restored without the erasure
//! ledger) no longer opens, because their key is gone from the key store.

mod common;

use covenant::fulfilment::{self, ContentChoice};
use std::io::Read;

const ADDRESS: &str = "Zq.Sealed-Ann@Example.org";
/// The member's device, as their requests give it (behind a trusted proxy).
const AGENT: &str = "ZqSealedBrowser/9.1 (Distinctive)";
const IP: &str = "198.51.100.177";

/// Every text column of every table of the main database that holds `needle` (any case).
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
            "SELECT COUNT(*) FROM {table} WHERE LOWER(CAST({column} AS TEXT)) LIKE $1"
        )))
        .bind(format!("%{}%", needle.to_lowercase()))
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

/// Registers and verifies a member with `ADDRESS`, signs them in by their address (not their
/// name), and returns their id and bearer token.
async fn sealed_member(app: &common::TestApp) -> (i64, String) {
    let response = app
        .client
        .post(app.url("/api/v1/users"))
        .json(
            &serde_json::json!({"username": "sealedann", "email": ADDRESS,
            "password": "a long enough password", "birth_year": 1990, "country": "GB"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    // The mail worker opens the sealed address to deliver the confirmation.
    let mail = app.wait_for_mail(ADDRESS, "Confirm").await;
    let link = app.link_in(&mail);
    let token = link.rsplit('/').next().unwrap();
    let response = app
        .client
        .post(app.url("/api/v1/users/verify-email"))
        .json(&serde_json::json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = app
        .client
        .post(app.url("/api/v1/session"))
        .header("user-agent", AGENT)
        .header("x-forwarded-for", IP)
        .json(&serde_json::json!({"login": "zq.sealed-ann@EXAMPLE.org",
            "password": "a long enough password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        201,
        "sign-in by address finds the keyed hash"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    let bearer = body["token"].as_str().expect("a bearer token").to_string();
    let id = app
        .store
        .user_by_username("sealedann")
        .await
        .unwrap()
        .expect("the member exists")
        .id;
    // A topic from the same device.
    let response = app
        .client
        .post(app.url("/api/v1/topics"))
        .bearer_auth(&bearer)
        .header("user-agent", AGENT)
        .header("x-forwarded-for", IP)
        .json(
            &serde_json::json!({"category": "general", "title": "A sealed topic",
            "body": "Written from a distinctive device."}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    (id, bearer)
}

/// A database from before the current list of sealed columns has no marker (or an older one),
/// so the next start seals what is plain.
async fn forget_the_sealing_marker(pool: &sqlx::AnyPool) {
    sqlx::query("DELETE FROM settings WHERE key = $1")
        .bind(covenant::store::SEALED_FIELDS_MARKER)
        .execute(pool)
        .await
        .unwrap();
}

/// One stored text value, read raw.
async fn stored(app: &common::TestApp, sql: &str, id: i64) -> String {
    let pool = app.raw_pool().await;
    let (value,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_string()))
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    value
}

/// Requests of the tests come through a proxy the forum trusts, which names the client.
fn behind_proxy(config: &mut covenant::config::Config) {
    config.trust_forwarded_for = true;
}

on_both_stores! {
    /// Proves: R8
    async fn a_members_address_and_devices_are_nowhere_in_the_database_in_plain_text(app)
        where config: behind_proxy; {
        let (id, bearer) = sealed_member(app).await;
        let user = app.store.user_by_id(id).await.unwrap().unwrap();
        assert_eq!(user.email, ADDRESS, "the service reads the address opened");
        // The security page's sources read the device opened.
        let sessions = app.store.sessions_of_user(id, covenant::now()).await.unwrap();
        assert!(sessions.iter().any(|s| s.ip == IP && s.user_agent == AGENT), "{sessions:?}");
        let sign_ins = app.store.recent_sign_ins(id, 10).await.unwrap();
        assert!(sign_ins.iter().any(|s| s.ip == IP && s.user_agent == AGENT), "{sign_ins:?}");
        for needle in ["zq.sealed-ann", "sealed-ann@example", "ZqSealedBrowser", "Distinctive)",
                       IP, "51.100.177"] {
            let found = columns_holding(app, needle).await;
            assert!(found.is_empty(), "{needle} in plain text in {found:?}");
        }
        // Registration's uniqueness holds on the hash, whatever the case.
        let again = app
            .client
            .post(app.url("/api/v1/users"))
            .json(&serde_json::json!({"username": "otherann", "email": ADDRESS.to_uppercase(),
                "password": "a long enough password", "birth_year": 1990, "country": "GB"}))
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 409);
        // A password reset asked by address reaches the member.
        let response = app
            .client
            .post(app.url("/api/v1/password-reset"))
            .json(&serde_json::json!({"email": ADDRESS}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        app.wait_for_mail(ADDRESS, "password").await;
        // The member's own export carries the address opened.
        let response = app
            .client
            .post(app.url("/api/v1/me/export"))
            .bearer_auth(&bearer)
            .json(&serde_json::json!({"jurisdiction": "oregon"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: serde_json::Value = response.json().await.unwrap();
        let archive = app
            .client
            .get(body["url"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(archive)).unwrap();
        let mut emails = String::new();
        archive
            .by_name("data/user.contact.email.json")
            .unwrap()
            .read_to_string(&mut emails)
            .unwrap();
        assert!(emails.contains(ADDRESS), "the archive has the address opened");
        assert!(!emails.contains("s1:"), "and no sealed value");
    }
}

on_both_stores! {
    /// Proves: R8
    async fn an_old_copy_of_an_erased_members_rows_opens_no_more(app)
        where config: behind_proxy; {
        let (id, _) = sealed_member(app).await;
        // What a backup taken now holds of the member: the stored row, as it is.
        let pool = app.raw_pool().await;
        let (stored_email, stored_lookup): (String, String) =
            sqlx::query_as("SELECT email, email_lookup FROM users WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
        let (stored_ip,): (String,) =
            sqlx::query_as("SELECT ip FROM sign_ins WHERE user_id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(app.store.open_for_member(id, "sign_ins.ip", &stored_ip).await.unwrap(), IP);
        assert!(stored_email.starts_with("s1:"), "the address is sealed");
        assert!(stored_lookup.starts_with("k1:"), "the lookup is a keyed hash");
        let in_force = app.state.policy.current().await.unwrap();
        app.state
            .fulfilment
            .erase_subject(&in_force.policy, id, ContentChoice::KeepAnonymized, None)
            .await
            .unwrap();
        let audit = app.store.audit_rows_after(0, 1000).await.unwrap();
        assert!(
            audit.iter().any(|e| e.kind == "subject_key_destroyed" && e.subject_id == Some(id)),
            "the key's destruction is audited"
        );
        // The old copy comes back without the ledger being applied: the rows are there again,
        // but the address does not open and is not found.
        sqlx::query("UPDATE users SET email = $1, email_lookup = $2 WHERE id = $3")
            .bind(&stored_email)
            .bind(&stored_lookup)
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let user = app.store.user_by_id(id).await.unwrap().unwrap();
        assert_eq!(user.email, "", "the restored address reads as erased");
        let found = app.store.user_by_email(&ADDRESS.to_lowercase()).await.unwrap();
        assert_eq!(found.map(|u| u.email), Some(String::new()));
        assert!(columns_holding(app, "sealed-ann@example").await.is_empty());
        // So does the device of any restored sign-in.
        assert_eq!(app.store.open_for_member(id, "sign_ins.ip", &stored_ip).await.unwrap(), "");
    }
}

/// Proves: R8
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_file_taken_before_an_erasure_keeps_the_address_sealed_for_good() {
    let app = common::spawn_app_with(common::Backend::Sqlite, behind_proxy)
        .await
        .unwrap();
    let (id, _) = sealed_member(&app).await;
    let backup = app.data_dir.path().join("before.db");
    fulfilment::backup(&app.store, &backup).await.unwrap();
    assert!(
        !std::fs::read(&backup)
            .unwrap()
            .windows(b"sealed-ann".len())
            .any(|w| w.eq_ignore_ascii_case(b"sealed-ann")),
        "the backup file holds no plain address"
    );
    // The backup read raw, with the live key store beside it.
    let keys_url = format!(
        "sqlite://{}",
        app.data_dir
            .path()
            .join("covenant.db.keys.sqlite")
            .display()
    );
    let audit_key = covenant::audit::AuditKey::load(&app.state.config.audit_key_path()).unwrap();
    let open_backup = || async {
        covenant::Store::connect(&format!("sqlite://{}", backup.display()), 1)
            .await
            .unwrap()
            .with_keys(app.data_dir.path(), &keys_url, &audit_key)
            .await
            .unwrap()
    };
    let copy = open_backup().await;
    let before = copy.user_by_id(id).await.unwrap().unwrap();
    assert_eq!(before.email, ADDRESS, "the copy opens while the key exists");
    copy.close().await;

    let in_force = app.state.policy.current().await.unwrap();
    app.state
        .fulfilment
        .erase_subject(&in_force.policy, id, ContentChoice::KeepAnonymized, None)
        .await
        .unwrap();
    let copy = open_backup().await;
    let after = copy.user_by_id(id).await.unwrap().unwrap();
    assert_eq!(
        after.username, "sealedann",
        "the copy still has the member's row"
    );
    assert_eq!(after.email, "", "but the address opens no more");
    copy.close().await;
    app.stop().await;
}

on_both_stores! {
    /// Proves: R8
    async fn addresses_stored_plain_before_sealing_are_sealed_at_start(app)
        where config: behind_proxy; {
        let (id, _) = sealed_member(app).await;
        // A database from before sealing: the address and its lookup column in plain text.
        let pool = app.raw_pool().await;
        sqlx::query("UPDATE users SET email = $1, email_lookup = $2 WHERE id = $3")
            .bind("Zq.Legacy@Example.org")
            .bind("zq.legacy@example.org")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
        for sql in ["UPDATE sign_ins SET ip = 'zq.legacy.ip' WHERE user_id = $1",
                    "UPDATE post_devices SET user_agent = 'zq.legacy.agent' WHERE user_id = $1"] {
            sqlx::query(sql).bind(id).execute(&pool).await.unwrap();
        }
        forget_the_sealing_marker(&pool).await;
        pool.close().await;
        let state = covenant::web::AppState::open((*app.state.config).clone()).await.unwrap();
        let left = columns_holding(app, "zq.legacy").await;
        assert!(left.is_empty(), "plain values left in {left:?}");
        let sign_ins = state.store.recent_sign_ins(id, 10).await.unwrap();
        assert!(sign_ins.iter().all(|s| s.ip == "zq.legacy.ip"), "{sign_ins:?}");
        let user = state.store.user_by_email("zq.legacy@example.org").await.unwrap().unwrap();
        assert_eq!((user.id, user.email.as_str()), (id, "Zq.Legacy@Example.org"));
        // Starting again changes nothing more.
        assert_eq!(state.store.seal_plain_member_fields().await.unwrap(), 0);
        state.store.close().await;
    }
}

on_both_stores! {
    /// Proves: R8
    async fn a_requests_correspondence_is_sealed_under_its_submissions_own_key(app) {
        const NOTE: &str = "ZqSealedRequestNote: my old handle was zq-ann";
        let visitor = app.new_client();
        let response = visitor
            .post(app.url("/api/v1/privacy-requests"))
            .json(&serde_json::json!({"requester_name": "Zq Requester",
                "requester_email": "zq-requester@example.org", "relationship": "self",
                "country": "US", "state": "CA", "rights": ["know"], "comments": NOTE}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        assert!(columns_holding(app, "ZqSealedRequestNote").await.is_empty(), "no plain copy");
        let pool = app.raw_pool().await;
        let (id, stored): (i64, String) =
            sqlx::query_as("SELECT id, comments FROM privacy_submissions ORDER BY id DESC")
                .fetch_one(&pool)
                .await
                .unwrap();
        pool.close().await;
        assert!(stored.starts_with("s1:"), "sealed");
        // Staff read it through the store; the member's key has nothing to do with it.
        let submission = app.store.submission(id).await.unwrap().unwrap();
        assert_eq!(submission.comments, NOTE);
        assert_eq!(
            app.store.open_for_member(id, "privacy_submissions.comments", &stored).await.unwrap(),
            "",
            "a member's key does not open it"
        );
        // A staff note on its request is correspondence too, under the same key.
        app.member("zqofficer").await;
        let staff = app.store.user_by_username("zqofficer").await.unwrap().unwrap().id;
        app.state.accounts.set_role(staff, covenant::domain::Role::PrivacyOfficer).await.unwrap();
        let request = app.store.requests_of_submission(id).await.unwrap()[0].id;
        app.state.requests.add_note(staff, request, "ZqSealedStaffNote: called back").await.unwrap();
        assert!(columns_holding(app, "ZqSealedStaffNote").await.is_empty(), "no plain note");
        let notes = app.store.request_notes(request).await.unwrap();
        assert_eq!(notes[0].body, "ZqSealedStaffNote: called back");
        // Once its key is destroyed (the sweep does so with the records), no copy opens.
        assert!(app.store.destroy_submission_key(id).await.unwrap());
        assert_eq!(app.store.request_notes(request).await.unwrap()[0].body, "");
        assert_eq!(
            app.store.open_for_submission(id, "privacy_submissions.comments", &stored).await.unwrap(),
            ""
        );
    }
}

on_both_stores! {
    /// Device data that migration 0031 moved from `posts` to `post_devices` was sealed for its
    /// old place (and marked `posts:` by the migration); the forum seals it again for its new
    /// place when it starts, so it still opens there and nothing marked is left.
    /// Proves: R8
    async fn device_data_moved_from_posts_is_sealed_again_for_its_new_place(app)
        where config: behind_proxy; {
        let (id, _) = sealed_member(app).await;
        let pool = app.raw_pool().await;
        let (stored,): (String,) =
            sqlx::query_as("SELECT ip FROM post_devices WHERE user_id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(app.store.open_for_member(id, "post_devices.ip", &stored).await.unwrap(), IP);
        // As the migration leaves a value sealed for posts.ip.
        let old = app.store.seal_for_member(id, "posts.ip", IP).await.unwrap();
        sqlx::query("UPDATE post_devices SET ip = $1 WHERE user_id = $2")
            .bind(format!("posts:{old}"))
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
        forget_the_sealing_marker(&pool).await;
        let state = covenant::web::AppState::open((*app.state.config).clone()).await.unwrap();
        let (moved,): (String,) =
            sqlx::query_as("SELECT ip FROM post_devices WHERE user_id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
        pool.close().await;
        assert!(moved.starts_with("s1:"), "sealed, unmarked: {moved}");
        assert_eq!(state.store.open_for_member(id, "post_devices.ip", &moved).await.unwrap(), IP);
        assert!(columns_holding(app, IP).await.is_empty(), "no plain copy");
        assert_eq!(state.store.seal_plain_member_fields().await.unwrap(), 0);
        state.store.close().await;
    }
}

const PARENT: &str = "Zq.Sealed-Parent@Example.org";
const PROVIDER_ACCOUNT: &str = "ZqProviderAccount-4711";

/// A fourteen-year-old in France, registered with a parent's address (a consent request is
/// stored and mailed), and linked to a provider account. Returns the member's id.
async fn minor_with_parent_and_provider(app: &common::TestApp) -> i64 {
    let year = time::OffsetDateTime::now_utc().year() - 14;
    let response = app
        .client
        .post(app.url("/api/v1/users"))
        .json(
            &serde_json::json!({"username": "sealedkid", "email": "zq-kid@example.org",
            "password": "a long enough password", "birth_year": year, "country": "FR",
            "parent_email": PARENT}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let id = app
        .store
        .user_by_username("sealedkid")
        .await
        .unwrap()
        .unwrap()
        .id;
    let user = app.store.user_by_id(id).await.unwrap().unwrap();
    assert_eq!(
        i32::try_from(user.birth_year).unwrap(),
        year,
        "the service reads the year opened"
    );
    let now = covenant::now();
    let mut tx = app.store.begin().await.unwrap();
    covenant::store::insert_social_link(
        &app.store,
        &mut tx,
        &covenant::store::NewSocialLink {
            user_id: id,
            provider: "test-id",
            subject: PROVIDER_ACCOUNT,
            fields_received: "email",
            policy_version: "2025.1",
            text_hash: "hash",
            authorized_at: now,
            now,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

on_both_stores! {
    /// A member's birth year, a parent's address held about them and their provider account's
    /// id are sealed with the member's key: none is in the database in plain text, the
    /// services still find the parent and the provider account by keyed hash, the export opens
    /// them, and once the member is erased an old copy of them opens no more.
    /// Proves: R7, R8
    async fn birth_year_parents_address_and_provider_id_are_sealed_with_the_members_key(app) {
        let id = minor_with_parent_and_provider(app).await;
        let year = stored(app, "SELECT birth_year FROM users WHERE id = $1", id).await;
        let parent = stored(app, "SELECT parent_email FROM parental_consents WHERE user_id = $1", id).await;
        let parent_lookup =
            stored(app, "SELECT parent_email_lookup FROM parental_consents WHERE user_id = $1", id).await;
        let provider = stored(app, "SELECT subject FROM social_links WHERE user_id = $1", id).await;
        let provider_lookup =
            stored(app, "SELECT subject_lookup FROM social_links WHERE user_id = $1", id).await;
        for value in [&year, &parent, &provider] {
            assert!(value.starts_with("s1:"), "sealed: {value}");
        }
        for value in [&parent_lookup, &provider_lookup] {
            assert!(value.starts_with("k1:"), "a keyed hash: {value}");
        }
        for needle in ["sealed-parent", PROVIDER_ACCOUNT] {
            let found = columns_holding(app, needle).await;
            assert!(found.is_empty(), "{needle} in plain text in {found:?}");
        }
        // The provider account signs the member in, found by its keyed hash; a second link of
        // the same account is refused on the hash.
        let now = covenant::now();
        let mut tx = app.store.begin().await.unwrap();
        let signed_in = covenant::store::social_sign_in(
            &app.store, &mut tx, "test-id", PROVIDER_ACCOUNT, "email", now).await.unwrap();
        assert_eq!(signed_in, Some(id));
        let other = covenant::store::social_sign_in(
            &app.store, &mut tx, "test-id", "ZqSomeoneElse", "email", now).await.unwrap();
        assert_eq!(other, None);
        tx.commit().await.unwrap();
        app.member("otherkid").await;
        let other_id = app.store.user_by_username("otherkid").await.unwrap().unwrap().id;
        let mut tx = app.store.begin().await.unwrap();
        let twice = covenant::store::insert_social_link(
            &app.store,
            &mut tx,
            &covenant::store::NewSocialLink {
                user_id: other_id, provider: "test-id", subject: PROVIDER_ACCOUNT,
                fields_received: "email", policy_version: "2025.1", text_hash: "hash",
                authorized_at: now, now,
            },
        )
        .await;
        assert!(twice.is_err(), "one provider account links one member");
        drop(tx);
        // Once the parent consented, their own request finds that consent by the address.
        let pool = app.raw_pool().await;
        sqlx::query("UPDATE parental_consents SET consented_at = 1 WHERE user_id = $1")
            .bind(id).execute(&pool).await.unwrap();
        pool.close().await;
        let mut tx = app.store.begin().await.unwrap();
        let consent = covenant::store::given_parental_consent(
            &app.store, &mut tx, id, &PARENT.to_lowercase()).await.unwrap();
        assert!(consent.is_some(), "the parent's address finds the consent");
        drop(tx);
        // The member's export opens all three.
        let in_force = app.state.policy.current().await.unwrap();
        let rows = app.store
            .subject_rows(covenant::inventory::table("parental_consents").unwrap(), id)
            .await
            .unwrap();
        assert!(format!("{rows:?}").contains(PARENT), "the export has the parent's address opened");
        let rows = app.store
            .subject_rows(covenant::inventory::table("social_links").unwrap(), id)
            .await
            .unwrap();
        assert!(format!("{rows:?}").contains(PROVIDER_ACCOUNT), "and the provider account's id");
        let rows = app.store
            .subject_rows(covenant::inventory::table("users").unwrap(), id)
            .await
            .unwrap();
        let born = (time::OffsetDateTime::now_utc().year() - 14).to_string();
        assert!(format!("{rows:?}").contains(&format!("\"{born}\"")), "and the birth year");
        // Erased: the member's key is gone, so the copies taken before open no more.
        app.state
            .fulfilment
            .erase_subject(&in_force.policy, id, ContentChoice::KeepAnonymized, None)
            .await
            .unwrap();
        for (place, value) in [("users.birth_year", &year),
                               ("parental_consents.parent_email", &parent),
                               ("social_links.subject", &provider)] {
            assert_eq!(app.store.open_for_member(id, place, value).await.unwrap(), "", "{place}");
        }
        assert!(columns_holding(app, "sealed-parent").await.is_empty());
    }
}

on_both_stores! {
    /// A person known only by their address (a parent) is erased by it although the column
    /// holding it is sealed: the erasure matches the keyed hash.
    /// Proves: R8
    async fn an_erasure_by_address_finds_a_sealed_parents_address_by_its_hash(app) {
        let id = minor_with_parent_and_provider(app).await;
        app.state.fulfilment.erase_address(&PARENT.to_uppercase(), None).await.unwrap();
        let parent = stored(app, "SELECT parent_email FROM parental_consents WHERE user_id = $1", id).await;
        let lookup =
            stored(app, "SELECT parent_email_lookup FROM parental_consents WHERE user_id = $1", id).await;
        assert_eq!((parent.as_str(), lookup.as_str()), ("", ""), "the minor's record keeps no address");
    }
}

on_both_stores! {
    /// Who asked, for whom, the decision and the reason for more time are sealed under the
    /// submission's own key: not in the database in plain text, found by keyed hash, opened
    /// for staff, and unreadable once the key is destroyed.
    /// Proves: R8
    async fn a_requests_names_addresses_and_answers_are_sealed_under_its_submissions_key(app) {
        const NAME: &str = "Zq Sealed Requester";
        const ADDRESS: &str = "Zq-Sealed-Requester@example.org";
        let visitor = app.new_client();
        let response = visitor
            .post(app.url("/api/v1/privacy-requests"))
            .json(&serde_json::json!({"requester_name": NAME, "requester_email": ADDRESS,
                "relationship": "self", "country": "US", "state": "CA", "rights": ["know"],
                "comments": "none"}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let pool = app.raw_pool().await;
        let (submission,): (i64,) =
            sqlx::query_as("SELECT id FROM privacy_submissions ORDER BY id DESC")
                .fetch_one(&pool)
                .await
                .unwrap();
        pool.close().await;
        let request = app.store.requests_of_submission(submission).await.unwrap()[0].clone();
        // The request's emails are correspondence too: queued sealed, delivered readable.
        let pool = app.raw_pool().await;
        let bodies: Vec<(String,)> =
            sqlx::query_as("SELECT body_text FROM mail_outbox WHERE submission_id = $1")
                .bind(submission)
                .fetch_all(&pool)
                .await
                .unwrap();
        pool.close().await;
        assert!(!bodies.is_empty() && bodies.iter().all(|(b,)| b.starts_with("s1:")), "{bodies:?}");
        let code = app.wait_for_mail("equester@example.org", "privacy request code").await;
        assert!(code.contains("enter this code"), "{code}");
        // Staff decide and extend; both texts are correspondence.
        let now = covenant::now();
        let mut tx = app.store.begin().await.unwrap();
        covenant::store::set_extension(&mut tx, &app.store, request.id, "2099-01-01",
            "ZqSealedExtension: the archive is offline", now).await.unwrap();
        covenant::store::update_request(&mut tx, &app.store, &covenant::store::RequestUpdate {
            id: request.id,
            state: &request.state,
            verification: &request.verification,
            status_json: &request.status_json,
            decline_code: None,
            decision_text: Some("ZqSealedDecision: here is what we hold"),
            closed_at: None,
            appeal_due_on: None,
            next_reminder_at: request.next_reminder_at,
            now,
        }).await.unwrap();
        tx.commit().await.unwrap();
        for needle in ["Zq Sealed Requester", "ZqSealedExtension", "ZqSealedDecision"] {
            let found = columns_holding(app, needle).await;
            assert!(found.is_empty(), "{needle} in plain text in {found:?}");
        }
        // The address is only in mail to it (a person without an account), not in the records.
        let found = columns_holding(app, "zq-sealed-requester").await;
        assert!(found.iter().all(|c| c == "mail_outbox.recipient"), "{found:?}");
        for column in ["requester_name", "requester_email", "subject_email"] {
            let value = stored(app, &format!("SELECT {column} FROM privacy_submissions WHERE id = $1"),
                submission).await;
            assert!(value.starts_with("s1:"), "{column} sealed");
        }
        let hash = app.store.lookup_hash(&ADDRESS.to_lowercase()).unwrap();
        for column in ["requester_email_lookup", "subject_email_lookup"] {
            let value = stored(app, &format!("SELECT {column} FROM privacy_submissions WHERE id = $1"),
                submission).await;
            assert_eq!(value, hash, "{column} is the address's keyed hash");
        }
        // Staff read them opened.
        let opened = app.store.submission(submission).await.unwrap().unwrap();
        assert_eq!((opened.requester_name.as_str(), opened.requester_email.as_str(),
                    opened.subject_email.as_str()), (NAME, ADDRESS, ADDRESS));
        let row = app.store.privacy_request(request.id).await.unwrap().unwrap();
        assert_eq!(row.decision_text.as_deref(), Some("ZqSealedDecision: here is what we hold"));
        assert_eq!(row.extension_reason.as_deref(), Some("ZqSealedExtension: the archive is offline"));
        // Once the submission's key is destroyed (the sweep does so with its records), none opens.
        assert!(app.store.destroy_submission_key(submission).await.unwrap());
        let gone = app.store.submission(submission).await.unwrap().unwrap();
        assert_eq!((gone.requester_name.as_str(), gone.requester_email.as_str(),
                    gone.subject_email.as_str()), ("", "", ""));
        let row = app.store.privacy_request(request.id).await.unwrap().unwrap();
        assert_eq!((row.decision_text.as_deref(), row.extension_reason.as_deref()), (Some(""), Some("")));
    }
}

on_both_stores! {
    /// What was stored plain before these columns were sealed (a birth year, a parent's
    /// address, a provider id, a request's names and answers, a staff note) is sealed, and
    /// hashed where it is looked up, when the forum starts; a marker then spares later starts
    /// the scan.
    /// Proves: R8
    async fn plain_values_of_the_newly_sealed_columns_are_sealed_once_at_start(app) {
        let id = minor_with_parent_and_provider(app).await;
        let visitor = app.new_client();
        let response = visitor
            .post(app.url("/api/v1/privacy-requests"))
            .json(&serde_json::json!({"requester_name": "Zq Old Name",
                "requester_email": "zq-old@example.org", "relationship": "self", "country": "US",
                "state": "CA", "rights": ["know"], "comments": "old"}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        let pool = app.raw_pool().await;
        let (submission,): (i64,) =
            sqlx::query_as("SELECT id FROM privacy_submissions ORDER BY id DESC")
                .fetch_one(&pool)
                .await
                .unwrap();
        // A database from before: the values plain, the keyed hashes not there yet.
        for (sql, bind) in [
            ("UPDATE users SET birth_year = '1991' WHERE id = $1", id),
            ("UPDATE parental_consents SET parent_email = 'Zq.Old-Parent@Example.org', \
              parent_email_lookup = '' WHERE user_id = $1", id),
            ("UPDATE social_links SET subject = 'ZqOldProvider', subject_lookup = '' \
              WHERE user_id = $1", id),
            ("UPDATE privacy_submissions SET requester_name = 'Zq Old Name', \
              requester_email = 'zq-old@example.org', subject_email = 'zq-old@example.org', \
              requester_email_lookup = '', subject_email_lookup = '', \
              comments = 'ZqOldComment' WHERE id = $1", submission),
            ("UPDATE privacy_requests SET decision_text = 'ZqOldDecision', \
              extension_reason = 'ZqOldReason' WHERE submission_id = $1", submission),
        ] {
            sqlx::query(sql).bind(bind).execute(&pool).await.unwrap();
        }
        forget_the_sealing_marker(&pool).await;
        pool.close().await;
        let state = covenant::web::AppState::open((*app.state.config).clone()).await.unwrap();
        for needle in ["zq.old-parent", "ZqOldProvider", "Zq Old Name", "ZqOldComment",
                       "ZqOldDecision", "ZqOldReason"] {
            let found = columns_holding(app, needle).await;
            assert!(found.is_empty(), "{needle} left plain in {found:?}");
        }
        let found = columns_holding(app, "zq-old@").await;
        assert!(found.iter().all(|c| c == "mail_outbox.recipient"), "{found:?}");
        assert!(stored(app, "SELECT birth_year FROM users WHERE id = $1", id).await.starts_with("s1:"));
        assert_eq!(state.store.user_by_id(id).await.unwrap().unwrap().birth_year, 1991);
        // The keyed hashes were made from the plain values, so the lookups find them.
        let now = covenant::now();
        let mut tx = state.store.begin().await.unwrap();
        let signed_in = covenant::store::social_sign_in(
            &state.store, &mut tx, "test-id", "ZqOldProvider", "email", now).await.unwrap();
        assert_eq!(signed_in, Some(id));
        tx.commit().await.unwrap();
        assert_eq!(
            stored(app, "SELECT parent_email_lookup FROM parental_consents WHERE user_id = $1", id).await,
            state.store.lookup_hash("zq.old-parent@example.org").unwrap()
        );
        assert_eq!(
            stored(app, "SELECT subject_email_lookup FROM privacy_submissions WHERE id = $1",
                submission).await,
            state.store.lookup_hash("zq-old@example.org").unwrap()
        );
        let opened = state.store.submission(submission).await.unwrap().unwrap();
        assert_eq!((opened.requester_name.as_str(), opened.comments.as_str()), ("Zq Old Name", "ZqOldComment"));
        let row = &state.store.requests_of_submission(submission).await.unwrap()[0];
        assert_eq!(row.decision_text.as_deref(), Some("ZqOldDecision"));
        // The marker is set: a second start finds nothing to do without scanning.
        assert_eq!(
            state.store.setting(covenant::store::SEALED_FIELDS_MARKER).await.unwrap().as_deref(),
            Some(covenant::store::SEALED_FIELDS_VERSION)
        );
        assert_eq!(state.store.seal_plain_fields().await.unwrap(), 0);
        state.store.close().await;
    }
}

const PENDING_ADDRESS: &str = "zq.pending-person@example.org";
const PENDING_ACCOUNT: &str = "ZqPendingProviderAccount-0815";
const VISITOR_ADDRESS: &str = "zq.no-account-person@example.org";
const VISITOR_SUBJECT: &str = "ZqSubjectLine for a visitor";

/// A provider sign-up left unfinished, as the social sign-in stores it (token digest `token`).
async fn pending_sign_up(store: &covenant::store::Store, token: &str, expires_at: i64) {
    let mut tx = store.begin().await.unwrap();
    covenant::store::insert_social_pending(
        store,
        &mut tx,
        &covenant::store::NewSocialPending {
            token_hash: token,
            provider: "test-id",
            subject: PENDING_ACCOUNT,
            email: PENDING_ADDRESS,
            email_verified: true,
            fields_received: "subject,email",
            policy_version: "2025.1",
            text_hash: "hash",
            authorized_at: 1,
            expires_at,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

on_both_stores! {
    /// A provider sign-up nobody finished belongs to nobody yet: its address and provider
    /// account id are sealed under a key of the row's own, found by the keyed hash of the
    /// address, and that key goes when the row does.
    /// Proves: R8
    async fn an_unfinished_provider_sign_up_is_sealed_under_its_own_key_which_goes_with_it(app) {
        let far = covenant::now() + 3600;
        pending_sign_up(&app.store, "zq-pending-token-1", far).await;
        for plain in [PENDING_ADDRESS, PENDING_ACCOUNT] {
            assert!(columns_holding(app, plain).await.is_empty(), "{plain} is stored plain");
        }
        // The registration form reads it opened.
        let row = app.store.social_pending("zq-pending-token-1", covenant::now()).await.unwrap().unwrap();
        assert_eq!((row.email.as_str(), row.subject.as_str()), (PENDING_ADDRESS, PENDING_ACCOUNT));
        // Found by the keyed hash of the address (export and erasure by address).
        let pool = app.raw_pool().await;
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM social_pending WHERE email_lookup = $1")
            .bind(app.store.lookup_hash(PENDING_ADDRESS).unwrap())
            .fetch_one(&pool).await.unwrap();
        assert_eq!(n, 1);
        // Expired: the sweep of sign-in records removes the row, and its key with it.
        let subject = covenant::store::pending_key_subject("zq-pending-token-1");
        assert!(app.store.has_key(&subject).await.unwrap());
        sqlx::query("UPDATE social_pending SET expires_at = 1").execute(&pool).await.unwrap();
        pool.close().await;
        let mut tx = app.store.begin().await.unwrap();
        let gone = covenant::store::delete_expired_social(&mut tx, covenant::now()).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(gone, vec![subject.clone()]);
        app.store.destroy_row_keys(&gone).await.unwrap();
        assert!(!app.store.has_key(&subject).await.unwrap(), "the row's key is gone");
        // Erased by address: the row and its key go too.
        pending_sign_up(&app.store, "zq-pending-token-2", far).await;
        let subject = covenant::store::pending_key_subject("zq-pending-token-2");
        assert!(app.store.has_key(&subject).await.unwrap());
        app.state.fulfilment.erase_address(PENDING_ADDRESS, None).await.unwrap();
        assert!(app.store.social_pending("zq-pending-token-2", covenant::now()).await.unwrap().is_none());
        assert!(!app.store.has_key(&subject).await.unwrap(), "the row's key is gone");
    }
}

on_both_stores! {
    /// Mail to a person without an account keeps their address and its subject line sealed
    /// under the message's own key until it is erased; a member's mail keeps its subject line
    /// sealed under the member's key. The worker still delivers both.
    /// Proves: R8
    async fn mail_to_a_person_without_an_account_is_sealed_and_its_key_goes_with_it(app) {
        app.member("zqmailed").await;
        // (The member's confirmation was delivered: its subject line is not stored plain.)
        assert!(columns_holding(app, "Confirm your email address").await.is_empty());
        let key = "test:visitor-mail";
        let mail = covenant::mail::Mail { subject: VISITOR_SUBJECT.into(), body: "Hello".into() };
        let mut tx = app.store.begin().await.unwrap();
        mail.enqueue(&app.store, &mut tx, key, VISITOR_ADDRESS, None, covenant::now()).await.unwrap();
        tx.commit().await.unwrap();
        for plain in [VISITOR_ADDRESS, VISITOR_SUBJECT] {
            assert!(columns_holding(app, plain).await.is_empty(), "{plain} is stored plain");
        }
        app.state.mailer.wake();
        app.wait_for_mail(VISITOR_ADDRESS, VISITOR_SUBJECT).await;
        let subject = covenant::sealing::row(covenant::store::OUTBOX_ROW_KEY, key);
        assert!(app.store.has_key(&subject).await.unwrap());
        // Erased by address: found by the keyed hash, the mail goes and so does its key.
        app.state.fulfilment.erase_address(VISITOR_ADDRESS, None).await.unwrap();
        let pool = app.raw_pool().await;
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM mail_outbox WHERE idempotency_key = $1")
            .bind(key).fetch_one(&pool).await.unwrap();
        pool.close().await;
        assert_eq!(n, 0);
        assert!(!app.store.has_key(&subject).await.unwrap(), "the mail's key is gone");
    }
}

on_both_stores! {
    /// A database from before 0041 holds unfinished sign-ups and mail to people without an
    /// account in plain text: the next start seals them under their rows' keys and fills the
    /// keyed hashes, once.
    /// Proves: R8
    async fn plain_sign_ups_and_visitor_mail_are_sealed_once_at_start(app) {
        let pool = app.raw_pool().await;
        sqlx::query("INSERT INTO social_pending (token_hash, provider, subject, email, \
            email_verified, fields_received, policy_version, text_hash, authorized_at, expires_at) \
            VALUES ('zq-old-token', 'test-id', $1, $2, 1, 'email', '2025.1', 'hash', 1, $3)")
            .bind(PENDING_ACCOUNT).bind(PENDING_ADDRESS).bind(covenant::now() + 3600)
            .execute(&pool).await.unwrap();
        sqlx::query("INSERT INTO mail_outbox (idempotency_key, recipient, subject, body_text, \
            created_at, next_attempt_at, sent_at) VALUES ('zq-old-mail', $1, $2, 'x', 1, 1, 1)")
            .bind(VISITOR_ADDRESS).bind(VISITOR_SUBJECT).execute(&pool).await.unwrap();
        forget_the_sealing_marker(&pool).await;
        let state = covenant::web::AppState::open((*app.state.config).clone()).await.unwrap();
        for plain in [PENDING_ADDRESS, PENDING_ACCOUNT, VISITOR_ADDRESS, VISITOR_SUBJECT] {
            assert!(columns_holding(app, plain).await.is_empty(), "{plain} is still plain");
        }
        let row = state.store.social_pending("zq-old-token", covenant::now()).await.unwrap().unwrap();
        assert_eq!((row.email.as_str(), row.subject.as_str()), (PENDING_ADDRESS, PENDING_ACCOUNT));
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM mail_outbox WHERE recipient_lookup = $1")
            .bind(state.store.lookup_hash(VISITOR_ADDRESS).unwrap())
            .fetch_one(&pool).await.unwrap();
        assert_eq!(n, 1);
        pool.close().await;
        let table = covenant::inventory::table("mail_outbox").unwrap();
        let rows = state.store.all_rows(table).await.unwrap();
        let at = |name: &str| table.columns.iter().position(|c| c.name == name).unwrap();
        assert!(rows.iter().any(|r| r[at("recipient")]
            == covenant::store::Value::Text(Some(VISITOR_ADDRESS.into()))
            && r[at("subject")] == covenant::store::Value::Text(Some(VISITOR_SUBJECT.into()))),
            "the whole-dataset export opens them");
        assert_eq!(state.store.seal_plain_fields().await.unwrap(), 0, "once");
        state.store.close().await;
    }
}
