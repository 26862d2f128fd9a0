//! Whole `covenant serve` processes: several nodes over one PostgreSQL database, and servers
//! killed with SIGKILL in the middle of work, then restarted on the same data.

mod common;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One `covenant serve` process.
struct Node {
    child: Child,
    base: String,
    data_dir: PathBuf,
}

impl Node {
    fn start(data_dir: &Path, database_url: &str) -> Node {
        Self::start_with(data_dir, database_url, &[])
    }

    /// Starts a node with more settings in its environment.
    fn start_with(data_dir: &Path, database_url: &str, settings: &[(&str, &str)]) -> Node {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_covenant"))
            .args([
                "serve",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
                data_dir.to_str().unwrap(),
            ])
            .env("COVENANT_DATABASE_URL", database_url)
            .env("COVENANT_BASE_URL", &base)
            .env("COVENANT_ARGON2_MEMORY_KIB", "1024")
            .env("COVENANT_ARGON2_ITERATIONS", "1")
            .env("COVENANT_MAIL_POLL_SECONDS", "1")
            .env("COVENANT_DB_MAX_CONNECTIONS", "4")
            // The test registers a crowd from one address.
            .env(
                "COVENANT_RATE_LIMITS_REGISTRATIONS_PER_CLIENT_PER_HOUR",
                "1000",
            )
            .envs(settings.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting covenant serve");
        Node {
            child,
            base,
            data_dir: data_dir.to_path_buf(),
        }
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(response) = client.get(format!("{}/healthz", self.base)).send().await
                && response.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the node at {} did not become healthy", self.base);
    }

    fn kill_hard(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
    }

    fn mail_files(&self) -> Vec<(String, String)> {
        let dir = self.data_dir.join("mail");
        let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                    .map(|e| {
                        (
                            e.file_name().to_string_lossy().to_string(),
                            std::fs::read_to_string(e.path()).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Registers a member on `node`, confirms the address from whichever node's mail folder the
/// message landed in, and returns a bearer token.
async fn member(node: &Node, all: &[&Node], username: &str) -> String {
    let client = reqwest::Client::new();
    let email = format!("{username}@example.org");
    let response = client
        .post(format!("{}/api/v1/users", node.base))
        .json(&json!({"username": username, "email": email, "password": "a long enough password", "birth_year": 1990, "country": "GB"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let mut token = None;
    for _ in 0..200 {
        token = all
            .iter()
            .flat_map(|n| n.mail_files())
            .find_map(|(_, mail)| {
                let to_line = mail
                    .lines()
                    .any(|l| l.starts_with("To: ") && l.contains(&email));
                let start = mail.find("/verify-email/")?;
                to_line.then(|| {
                    mail[start + "/verify-email/".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap()
                        .to_string()
                })
            });
        if token.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = token.expect("the verification mail was delivered by one of the nodes");
    let response = client
        .post(format!("{}/api/v1/users/verify-email", node.base))
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let session: Value = client
        .post(format!("{}/api/v1/session", node.base))
        .json(&json!({"login": username, "password": "a long enough password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    session["token"].as_str().unwrap().to_string()
}

/// Proves: F4
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_sessions_and_posts_and_send_each_email_once() {
    let Some(admin) = common::postgres_url() else {
        eprintln!("skipped on PostgreSQL: COVENANT_TEST_DATABASE_URL is not set");
        return;
    };
    let url = common::fresh_postgres_database(&admin).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Nodes of one forum share the audit key file: the keys sealing members' fields are
    // wrapped under a key derived from it.
    let key_file = dir_a.path().join("shared-audit.key");
    let settings = [("COVENANT_AUDIT_KEY_FILE", key_file.to_str().unwrap())];
    let a = Node::start_with(dir_a.path(), &url, &settings);
    a.wait_ready().await;
    let b = Node::start_with(dir_b.path(), &url, &settings);
    b.wait_ready().await;
    let client = reqwest::Client::new();

    // Sessions work on either node.
    let token = member(&a, &[&a, &b], "roamer").await;
    let me: Value = client
        .get(format!("{}/api/v1/me", b.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "roamer");
    let created: Value = client
        .post(format!("{}/api/v1/topics", b.base))
        .bearer_auth(&token)
        .json(
            &json!({"category": "general", "title": "Written on node B", "body": "Read on node A"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let topic: Value = client
        .get(format!("{}/api/v1/topics/{}", a.base, created["topic_id"]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(topic["posts"][0]["body_md"], "Read on node A");

    // Many emails queued through both nodes: each one is written by exactly one node.
    let mut expected = 1;
    for i in 0..12 {
        let node = if i % 2 == 0 { &a } else { &b };
        let response = client
            .post(format!("{}/api/v1/users", node.base))
            .json(&json!({"username": format!("crowd{i}"), "email": format!("crowd{i}@example.org"), "password": "a long enough password", "birth_year": 1990, "country": "GB"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        expected += 1;
    }
    for _ in 0..200 {
        if a.mail_files().len() + b.mail_files().len() >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut recipients: Vec<String> = a
        .mail_files()
        .into_iter()
        .chain(b.mail_files())
        .filter_map(|(_, mail)| {
            mail.lines()
                .find(|l| l.starts_with("To: "))
                .map(str::to_string)
        })
        .collect();
    recipients.sort();
    let before = recipients.len();
    recipients.dedup();
    assert_eq!(before, expected, "every queued message was sent");
    assert_eq!(
        recipients.len(),
        before,
        "no message was sent by both nodes"
    );
}

async fn replies_survive_a_hard_kill(database_url: String) {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), &database_url);
    node.wait_ready().await;
    let token = member(&node, &[&node], "steady").await;
    let client = reqwest::Client::new();
    let created: Value = client
        .post(format!("{}/api/v1/topics", node.base))
        .bearer_auth(&token)
        .json(&json!({"category": "general", "title": "A stream of replies", "body": "Start"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let topic_id = created["topic_id"].as_i64().unwrap();

    // Four writers post replies until the server dies under them.
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(i64, String)>::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (client, base, token, acknowledged) = (
            client.clone(),
            node.base.clone(),
            token.clone(),
            acknowledged.clone(),
        );
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let body = format!("reply {w}-{n}");
                let sent = client
                    .post(format!("{base}/api/v1/topics/{topic_id}/posts"))
                    .bearer_auth(&token)
                    .json(&json!({"body": body}))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == 201 => {
                        let place: Value = match response.json().await {
                            Ok(place) => place,
                            Err(_) => return,
                        };
                        acknowledged
                            .lock()
                            .unwrap()
                            .push((place["post_id"].as_i64().unwrap(), body));
                    }
                    _ => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    node.kill_hard();
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 5,
        "the stream was running when the server died ({} replies)",
        acknowledged.len()
    );

    let node = Node::start(dir.path(), &database_url);
    node.wait_ready().await;
    let mut stored = std::collections::HashMap::new();
    for page in 1.. {
        let topic: Value = client
            .get(format!(
                "{}/api/v1/topics/{topic_id}?page={page}",
                node.base
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let posts = topic["posts"].as_array().unwrap();
        if posts.is_empty() {
            break;
        }
        for post in posts {
            stored.insert(
                post["id"].as_i64().unwrap(),
                post["body_md"].as_str().unwrap().to_string(),
            );
        }
    }
    for (id, body) in &acknowledged {
        assert_eq!(
            stored.get(id),
            Some(body),
            "acknowledged reply {id} survived the crash"
        );
    }
    // Post numbers stay gapless and unique after the crash.
    let mut numbers: Vec<i64> = Vec::new();
    let store = covenant::Store::open(dir.path(), &database_url, 1)
        .await
        .unwrap();
    for post in store.posts_of_topic(topic_id, 100_000, 0).await.unwrap() {
        numbers.push(post.post_number);
    }
    assert_eq!(numbers, (1..=numbers.len() as i64).collect::<Vec<_>>());
    if database_url.is_empty() {
        let (verdict,): (String,) = sqlx::query_as("PRAGMA integrity_check")
            .fetch_one(
                &sqlx::AnyPool::connect(&format!(
                    "sqlite://{}",
                    dir.path().join("covenant.db").display()
                ))
                .await
                .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(
            verdict, "ok",
            "SQLite's integrity check passes after the crash"
        );
    }
    store.close().await;
}

/// Proves: F4
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_reply_survives_a_hard_kill_on_sqlite() {
    sqlx::any::install_default_drivers();
    replies_survive_a_hard_kill(String::new()).await;
}

/// Proves: F4
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_reply_survives_a_hard_kill_on_postgres() {
    let Some(admin) = common::postgres_url() else {
        eprintln!("skipped on PostgreSQL: COVENANT_TEST_DATABASE_URL is not set");
        return;
    };
    let url = common::fresh_postgres_database(&admin).await;
    replies_survive_a_hard_kill(url).await;
}

/// Proves: A4
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_add_up_across_nodes_sharing_the_database_and_key() {
    let Some(admin) = common::postgres_url() else {
        eprintln!("skipped on PostgreSQL: COVENANT_TEST_DATABASE_URL is not set");
        return;
    };
    let url = common::fresh_postgres_database(&admin).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Nodes of one forum share the audit key file, from which the limits' key is derived.
    let key_file = dir_a.path().join("shared-audit.key");
    let key_file = key_file.to_str().unwrap();
    let settings = [
        ("COVENANT_AUDIT_KEY_FILE", key_file),
        ("COVENANT_RATE_LIMITS_FAILURES_PER_ACCOUNT", "3"),
    ];
    let a = Node::start_with(dir_a.path(), &url, &settings);
    a.wait_ready().await;
    let b = Node::start_with(dir_b.path(), &url, &settings);
    b.wait_ready().await;
    member(&a, &[&a, &b], "target").await;
    let client = reqwest::Client::new();
    let sign_in = |node: &Node, password: &str| {
        client
            .post(format!("{}/api/v1/session", node.base))
            .json(&json!({"login": "target", "password": password}))
            .send()
    };
    for node in [&a, &b, &a] {
        assert_eq!(
            sign_in(node, "not the password at all")
                .await
                .unwrap()
                .status(),
            401
        );
    }
    for node in [&b, &a] {
        let response = sign_in(node, "a long enough password").await.unwrap();
        assert_eq!(response.status(), 429, "{}", node.base);
        assert!(response.headers().contains_key("retry-after"));
    }
    drop((a, b));
    common::drop_postgres_database(&admin, &url).await;
}

/// Queues `n` messages, starts a node to deliver them, kills it with SIGKILL part-way, and
/// starts it again on the same data.
async fn outbox_survives_a_hard_kill(database_url: String) {
    const N: usize = 1500;
    let dir = tempfile::tempdir().unwrap();
    let store = covenant::Store::open(dir.path(), &database_url, 2)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    // The node's key store and audit key file: mail to people without an account is sealed
    // under keys of its own, which the node opens to deliver it.
    let audit_key =
        covenant::audit::AuditKey::load_or_create(&dir.path().join("audit.key")).unwrap();
    let store = store.with_keys(dir.path(), "", &audit_key).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    let mail = covenant::mail::Mail {
        subject: "Queued before the crash".into(),
        body: "One of many.".into(),
    };
    for i in 0..N {
        let queued = mail
            .enqueue(
                &store,
                &mut tx,
                &format!("crash-test:{i}"),
                &format!("reader{i}@example.org"),
                None,
                covenant::now(),
            )
            .await
            .unwrap();
        assert!(queued);
    }
    tx.commit().await.unwrap();
    let settings = [("COVENANT_MAIL_LEASE_SECONDS", "2")];
    let mut node = Node::start_with(dir.path(), &database_url, &settings);
    let mut delivered_before = 0;
    for _ in 0..600 {
        delivered_before = node.mail_files().len();
        if delivered_before >= 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.kill_hard();
    let delivered_before = delivered_before.max(node.mail_files().len());
    assert!(
        (1..N).contains(&delivered_before),
        "the worker was mid-outbox when it died ({delivered_before} of {N} delivered)"
    );

    let node = Node::start_with(dir.path(), &database_url, &settings);
    node.wait_ready().await;
    let mut unsent = i64::MAX;
    for _ in 0..300 {
        unsent = store.count_unsent_mail().await.unwrap();
        if unsent == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        unsent, 0,
        "every queued message is marked sent after the restart"
    );
    // One file per message: a message claimed when the node died was written again under its
    // own name, not added as a second copy; no half-written file is left.
    let files = node.mail_files();
    assert_eq!(files.len(), N, "each message delivered exactly once");
    let mut recipients: Vec<String> = files
        .iter()
        .map(|(_, text)| {
            text.lines()
                .find_map(|line| line.strip_prefix("To: "))
                .expect("a To header")
                .to_string()
        })
        .collect();
    recipients.sort();
    recipients.dedup();
    assert_eq!(recipients.len(), N, "no reader got the message twice");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("mail"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "no partial file is left behind");
    if database_url.is_empty() {
        let (verdict,): (String,) = sqlx::query_as("PRAGMA integrity_check")
            .fetch_one(
                &sqlx::AnyPool::connect(&format!(
                    "sqlite://{}",
                    dir.path().join("covenant.db").display()
                ))
                .await
                .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(
            verdict, "ok",
            "SQLite's integrity check passes after the crash"
        );
    }
    drop(node);
    store.close().await;
}

/// Proves: F6
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_loses_and_repeats_nothing_across_a_hard_kill_on_sqlite() {
    outbox_survives_a_hard_kill(String::new()).await;
}

/// Proves: F6
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_loses_and_repeats_nothing_across_a_hard_kill_on_postgres() {
    let Some(admin) = common::postgres_url() else {
        eprintln!("skipped on PostgreSQL: COVENANT_TEST_DATABASE_URL is not set");
        return;
    };
    let url = common::fresh_postgres_database(&admin).await;
    outbox_survives_a_hard_kill(url.clone()).await;
    common::drop_postgres_database(&admin, &url).await;
}

/// Members ask for their archives until the server dies under them; after the restart every
/// link that was answered hands out a whole archive, and no half-recorded archive is left.
async fn exports_survive_a_hard_kill(database_url: String) {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), &database_url);
    node.wait_ready().await;
    let token = member(&node, &[&node], "exporter").await;
    let client = reqwest::Client::new();
    let created: Value = client
        .post(format!("{}/api/v1/topics", node.base))
        .bearer_auth(&token)
        .json(&json!({"category": "general", "title": "Something to export", "body": "Start"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let topic_id = created["topic_id"].as_i64().unwrap();
    for n in 0..30 {
        let response = client
            .post(format!("{}/api/v1/topics/{topic_id}/posts", node.base))
            .bearer_auth(&token)
            .json(&json!({"body": format!("reply {n}, to be exported")}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }

    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut askers = Vec::new();
    for _ in 0..2 {
        let (client, base, token, acknowledged) = (
            client.clone(),
            node.base.clone(),
            token.clone(),
            acknowledged.clone(),
        );
        askers.push(tokio::spawn(async move {
            loop {
                let sent = client
                    .post(format!("{base}/api/v1/me/export"))
                    .bearer_auth(&token)
                    .json(&json!({"jurisdiction": "oregon"}))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                let Ok(response) = sent else { return };
                if response.status() != 201 {
                    return;
                }
                let Ok(created) = response.json::<Value>().await else {
                    return;
                };
                let url = created["url"].as_str().unwrap();
                let path = url.strip_prefix(&base).expect("a link to this forum");
                acknowledged.lock().unwrap().push(path.to_string());
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    node.kill_hard();
    for asker in askers {
        asker.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 2,
        "archives were being built when the server died ({} answered)",
        acknowledged.len()
    );

    let node = Node::start(dir.path(), &database_url);
    node.wait_ready().await;
    for path in &acknowledged {
        let response = client
            .get(format!("{}{path}", node.base))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "an answered link works after the crash"
        );
        let bytes = response.bytes().await.unwrap();
        assert!(bytes.starts_with(b"PK"), "a zip archive");
        let names = String::from_utf8_lossy(&bytes);
        assert!(
            names.contains("manifest.json"),
            "a whole archive, manifest included"
        );
    }
    let store = covenant::Store::open(dir.path(), &database_url, 1)
        .await
        .unwrap();
    let pool = sqlx::AnyPool::connect(&if database_url.is_empty() {
        format!("sqlite://{}", dir.path().join("covenant.db").display())
    } else {
        database_url.clone()
    })
    .await
    .unwrap();
    let (without_content,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM export_archives WHERE content IS NULL AND purged_at IS NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        without_content, 0,
        "no archive was recorded without its content"
    );
    if database_url.is_empty() {
        let (verdict,): (String,) = sqlx::query_as("PRAGMA integrity_check")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(
            verdict, "ok",
            "SQLite's integrity check passes after the crash"
        );
    }
    pool.close().await;
    drop(node);
    store.close().await;
}

/// Proves: R7
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answered_export_link_works_after_a_hard_kill_on_sqlite() {
    exports_survive_a_hard_kill(String::new()).await;
}

/// Proves: R7
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answered_export_link_works_after_a_hard_kill_on_postgres() {
    let Some(admin) = common::postgres_url() else {
        eprintln!("skipped on PostgreSQL: COVENANT_TEST_DATABASE_URL is not set");
        return;
    };
    let url = common::fresh_postgres_database(&admin).await;
    exports_survive_a_hard_kill(url.clone()).await;
    common::drop_postgres_database(&admin, &url).await;
}
