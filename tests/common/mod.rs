//! The one test harness: starts the real server on port 0 over a fresh database, SQLite always
//! and PostgreSQL when `COVENANT_TEST_DATABASE_URL` is set, with a readable mail folder.
#![allow(dead_code)]

use covenant::Store;
use covenant::config::Config;
use covenant::web::{AppState, RunningServer, start};
use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub address: String,
    /// A browser-like client: keeps cookies, does not follow redirects.
    pub client: reqwest::Client,
    pub store: Store,
    pub state: AppState,
    pub data_dir: tempfile::TempDir,
    pub backend: Backend,
    server: Option<RunningServer>,
    /// The fresh PostgreSQL database of this test, dropped by `stop` so that test runs do not
    /// fill the disk (they did: a thousand leftover databases, 8.6 GB).
    postgres_database: Option<String>,
}

fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(
                    "debug,sqlx=warn,hyper=info",
                ))
                .with_test_writer()
                .try_init();
        }
    });
}

/// The PostgreSQL server to test against, if any. Set but unreachable is a failure, not a skip.
pub fn postgres_url() -> Option<String> {
    std::env::var("COVENANT_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// A fresh, empty PostgreSQL database on the test server; returns its URL.
pub async fn fresh_postgres_database(admin_url: &str) -> String {
    sqlx::any::install_default_drivers();
    let name = format!(
        "covenant_test_{}",
        &covenant::accounts::random_token()
            .to_lowercase()
            .replace(['-', '_'], "")[..20]
    );
    let admin = sqlx::AnyPool::connect(admin_url)
        .await
        .expect("COVENANT_TEST_DATABASE_URL is set but PostgreSQL cannot be reached");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("creating a test database");
    admin.close().await;
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("a database URL ends with /dbname");
    format!("{base}/{name}")
}

/// Drops a test database made by [`fresh_postgres_database`]; a failure only leaves it behind.
pub async fn drop_postgres_database(admin_url: &str, database_url: &str) {
    let Some((_, name)) = database_url.rsplit_once('/') else {
        return;
    };
    if !name.starts_with("covenant_test_") {
        return;
    }
    if let Ok(admin) = sqlx::AnyPool::connect(admin_url).await {
        // The key store made beside it (`<name>_keys`) goes with it.
        for database in [name.to_string(), format!("{name}_keys")] {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
            )))
            .execute(&admin)
            .await;
        }
        admin.close().await;
    }
}

/// A test configuration: cheap password hashing, quick mail polling, a private data folder.
pub fn test_config(data_dir: PathBuf, database_url: String) -> Config {
    let mut config = Config {
        data_dir,
        database_url,
        ..Config::default()
    };
    config.argon2.memory_kib = 1024;
    config.argon2.iterations = 1;
    config.mail.poll_seconds = 1;
    config.db_max_connections = 4;
    // Tests register many members from one address; the tests of the limits lower them again.
    config.rate_limits.registrations_per_client_per_hour = 10_000;
    config.rate_limits.resets_per_client_per_hour = 10_000;
    // Many tests write through the services directly, as another node or the command line
    // would, and then read a page at once; the cache of visitors' pages would show them pages
    // up to `page_cache.seconds` old. tests/page_cache.rs turns it on.
    config.page_cache.seconds = 0;
    config
}

/// Starts the application on the given store kind; `None` (with a note) when PostgreSQL is not
/// configured.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Option<TestApp> {
    init_logs();
    let data_dir = tempfile::tempdir().expect("a temporary folder");
    let database_url = match backend {
        Backend::Sqlite => String::new(),
        Backend::Postgres => match postgres_url() {
            Some(admin) => fresh_postgres_database(&admin).await,
            None => {
                eprintln!("skipped on PostgreSQL: COVENANT_TEST_DATABASE_URL is not set");
                return None;
            }
        },
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding port 0");
    let address = format!("http://{}", listener.local_addr().unwrap());
    let mut config = test_config(data_dir.path().to_path_buf(), database_url.clone());
    config.base_url = address.clone();
    adjust(&mut config);
    let state = AppState::open(config)
        .await
        .expect("opening the application");
    let server = start(state.clone(), listener)
        .await
        .expect("starting the server");
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Some(TestApp {
        address,
        client,
        store: state.store.clone(),
        state,
        data_dir,
        backend,
        server: Some(server),
        postgres_database: (backend == Backend::Postgres).then_some(database_url),
    })
}

impl TestApp {
    /// A connection of the test's own to the app's main database, to read and set columns no
    /// store function shows.
    pub async fn raw_pool(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        let url = match self.backend {
            Backend::Sqlite => format!(
                "sqlite://{}",
                self.data_dir.path().join("covenant.db").display()
            ),
            Backend::Postgres => self.state.config.database_url.clone(),
        };
        sqlx::AnyPool::connect(&url).await.unwrap()
    }

    /// A connection of the test's own to the app's key store (beside the SQLite file, or the
    /// PostgreSQL database's name with `_keys`).
    pub async fn key_store_pool(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        let url = match self.backend {
            Backend::Sqlite => format!(
                "sqlite://{}",
                self.data_dir
                    .path()
                    .join("covenant.db.keys.sqlite")
                    .display()
            ),
            Backend::Postgres => format!("{}_keys", self.state.config.database_url),
        };
        sqlx::AnyPool::connect(&url).await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// A second client with its own cookie jar, as another person.
    pub fn new_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
        if let (Some(url), Some(admin)) = (self.postgres_database.take(), postgres_url()) {
            drop_postgres_database(&admin, &url).await;
        }
    }

    /// The mail folder's messages to `recipient`, oldest first.
    pub fn mail_to(&self, recipient: &str) -> Vec<String> {
        let dir = self.data_dir.path().join("mail");
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        names.sort();
        names
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .filter(|m| {
                m.lines()
                    .any(|l| l.starts_with("To: ") && l.contains(recipient))
            })
            .collect()
    }

    /// Waits (up to thirty seconds: CI machines can be busy) for a message to `recipient` whose
    /// subject contains `subject`.
    pub async fn wait_for_mail(&self, recipient: &str, subject: &str) -> String {
        for _ in 0..300 {
            if let Some(mail) = self.mail_to(recipient).into_iter().find(|m| {
                m.lines()
                    .any(|l| l.starts_with("Subject: ") && l.contains(subject))
            }) {
                return mail;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no email with subject containing {subject:?} arrived");
    }

    /// The first link in a message that points at this server.
    pub fn link_in(&self, mail: &str) -> String {
        let start = mail
            .find(&self.address)
            .expect("the message holds a link to the forum");
        mail[start..]
            .split_whitespace()
            .next()
            .unwrap()
            .trim_end_matches(['.', ',', ')'])
            .to_string()
    }

    /// Fetches a page and returns its body, asserting a 200.
    pub async fn page(&self, client: &reqwest::Client, path: &str) -> String {
        let response = client.get(self.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.text().await.unwrap()
    }

    /// Registers through the API and verifies the address from the emailed link; returns the
    /// member's bearer token.
    pub async fn member(&self, username: &str) -> String {
        let email = format!("{username}@example.org");
        let response = self
            .client
            .post(self.url("/api/v1/users"))
            .json(&serde_json::json!({"username": username, "email": email, "password": "a long enough password", "birth_year": 1990, "country": "GB"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        let mail = self.wait_for_mail(&email, "Confirm").await;
        let link = self.link_in(&mail);
        let token = link.rsplit('/').next().unwrap();
        let response = self
            .client
            .post(self.url("/api/v1/users/verify-email"))
            .json(&serde_json::json!({"token": token}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        self.bearer(username).await
    }

    /// Signs in through the API and returns the bearer token.
    pub async fn bearer(&self, username: &str) -> String {
        let response = self
            .client
            .post(self.url("/api/v1/session"))
            .json(&serde_json::json!({"login": username, "password": "a long enough password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: serde_json::Value = response.json().await.unwrap();
        body["token"].as_str().unwrap().to_string()
    }
}

/// The anti-forgery token of the first form on a page.
pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html
        .find(marker)
        .expect("the page has a form with a csrf field")
        + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

/// Runs a test body once on SQLite and once on PostgreSQL (skipped with a note when
/// `COVENANT_TEST_DATABASE_URL` is not set). Doc comments (`/// Proves: …`) go on both.
/// `async fn name(app) where config: adjust; { … }` starts both apps with `adjust`, a
/// `fn(&mut Config)`, applied to the test configuration.
#[macro_export]
macro_rules! on_both_stores {
    ($(#[doc = $doc:literal])* async fn $name:ident($app:ident) $body:block) => {
        $crate::on_both_stores! {
            $(#[doc = $doc])*
            async fn $name($app) where config: |_| {}; $body
        }
    };
    ($(#[doc = $doc:literal])* async fn $name:ident($app:ident) where config: $adjust:expr; $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($app: &common::TestApp) $body

            $(#[doc = $doc])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = common::spawn_app_with(common::Backend::Sqlite, $adjust).await.expect("SQLite always runs");
                body(&app).await;
                app.stop().await;
            }

            $(#[doc = $doc])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(app) = common::spawn_app_with(common::Backend::Postgres, $adjust).await else {
                    return;
                };
                body(&app).await;
                app.stop().await;
            }
        }
    };
}

/// Seconds a TOTP step must still have left when a test starts a sequence of codes.
const TOTP_MARGIN_SECONDS: i64 = 5;

/// The current TOTP step, after waiting out a step boundary that is fewer than
/// [`TOTP_MARGIN_SECONDS`] away. A test computes every code of one sign-in sequence from this
/// step (`totp_code(secret, step - 1)` to enrol, `step` to sign in, `step + 1` next), so a
/// boundary passing in between only makes each code one step older, which the server's window
/// still accepts, and the codes keep increasing, so the replay rule never refuses them.
pub async fn settled_totp_step() -> i64 {
    let step = covenant::two_factor::STEP_SECONDS;
    let left = step - covenant::now().rem_euclid(step);
    if left < TOTP_MARGIN_SECONDS {
        tokio::time::sleep(Duration::from_secs((left + 1) as u64)).await;
    }
    covenant::now() / step
}

/// The authenticator's code of TOTP step `step`.
pub fn totp_code(secret: &str, step: i64) -> String {
    covenant::two_factor::code_at(secret, step * covenant::two_factor::STEP_SECONDS).unwrap()
}
