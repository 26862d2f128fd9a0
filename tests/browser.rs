//! Consent in a real browser: headless Chromium driven through chromedriver over WebDriver, with a
//! small client written on reqwest. Runs when `COVENANT_TEST_CHROMEDRIVER` names the chromedriver
//! binary (Chromium is `/usr/bin/chromium`, or `COVENANT_TEST_CHROMIUM`); without it each test
//! prints that it is skipped, and set but unusable is a failure. Screenshots of the banner and
//! the settings pages go to `target/test-output/`.

mod common;

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The W3C WebDriver key under which an element reference travels.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process started for one test, stopped (by its own id) when dropped.
struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session with a fresh profile.
struct Browser {
    driver: Driver,
    session: String,
    _profile: tempfile::TempDir,
}

fn driver_path() -> Option<String> {
    match std::env::var("COVENANT_TEST_CHROMEDRIVER") {
        Ok(path) if !path.is_empty() => Some(path),
        _ => {
            eprintln!("skipped: COVENANT_TEST_CHROMEDRIVER is not set");
            None
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("binding a free port")
        .local_addr()
        .unwrap()
        .port()
}

impl Driver {
    async fn start(path: &str) -> Driver {
        let port = free_port();
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("COVENANT_TEST_CHROMEDRIVER is set but {path} cannot be started: {e}")
            });
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        };
        for _ in 0..100 {
            if let Ok(response) = driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .await
                && let Ok(status) = response.json::<Value>().await
                && status["value"]["ready"] == true
            {
                return driver;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("COVENANT_TEST_CHROMEDRIVER is set but chromedriver did not become ready");
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile; `None` when skipped.
    async fn open() -> Option<Browser> {
        let path = driver_path()?;
        let driver = Driver::start(&path).await;
        let profile = tempfile::tempdir().unwrap();
        let chromium =
            std::env::var("COVENANT_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let args = [
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1280,900".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args}
        }}});
        let response = driver
            .http
            .post(format!("{}/session", driver.base))
            .json(&capabilities)
            .send()
            .await
            .expect("COVENANT_TEST_CHROMEDRIVER is set but chromedriver does not answer");
        let body: Value = response.json().await.unwrap();
        let session = body["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| {
                panic!("COVENANT_TEST_CHROMEDRIVER is set but no Chromium session starts: {body}")
            })
            .to_string();
        Some(Browser {
            driver,
            session,
            _profile: profile,
        })
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.driver.base, self.session);
        let mut request = self.driver.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("chromedriver answers");
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success(), "WebDriver {path} failed: {body}");
        body["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.command(reqwest::Method::GET, path, None).await
    }

    async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    async fn source(&self) -> String {
        self.get("/source").await.as_str().unwrap().to_string()
    }

    async fn find(&self, css: &str) -> Option<String> {
        let url = format!("{}/session/{}/elements", self.driver.base, self.session);
        let body: Value = self
            .driver
            .http
            .post(url)
            .json(&json!({"using": "css selector", "value": css}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["value"]
            .as_array()
            .and_then(|found| found.first())
            .and_then(|element| element[ELEMENT_KEY].as_str())
            .map(str::to_string)
    }

    async fn click(&self, css: &str) {
        let element = self
            .find(css)
            .await
            .unwrap_or_else(|| panic!("no element matches {css}"));
        self.post(&format!("/element/{element}/click"), json!({}))
            .await;
    }

    async fn text_of(&self, css: &str) -> String {
        let element = self
            .find(css)
            .await
            .unwrap_or_else(|| panic!("no element matches {css}"));
        self.get(&format!("/element/{element}/text"))
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn cookie_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .get("/cookie")
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|cookie| cookie["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }

    /// Saves a PNG of the whole page (the window grown to fit it) into `target/test-output/`.
    async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        let height = self
            .post(
                "/execute/sync",
                json!({"script": "return document.documentElement.scrollHeight;", "args": []}),
            )
            .await
            .as_i64()
            .unwrap_or(900);
        self.post(
            "/window/rect",
            json!({"width": 1280, "height": height.clamp(600, 4000) + 120}),
        )
        .await;
        let encoded = self.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-output");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(name);
        std::fs::write(&file, png).unwrap();
        file
    }

    /// Sends `Sec-GPC: 1` with every request, as a browser with Global Privacy Control does.
    async fn enable_gpc(&self) {
        self.post(
            "/goog/cdp/execute",
            json!({"cmd": "Network.enable", "params": {}}),
        )
        .await;
        self.post(
            "/goog/cdp/execute",
            json!({"cmd": "Network.setExtraHTTPHeaders", "params": {"headers": {"Sec-GPC": "1"}}}),
        )
        .await;
    }

    /// Waits for deferred scripts to run after a navigation.
    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    async fn close(self) {
        let url = format!("{}/session/{}", self.driver.base, self.session);
        let _ = self.driver.http.delete(url).send().await;
    }
}

async fn app() -> common::TestApp {
    common::spawn_app(common::Backend::Sqlite)
        .await
        .expect("SQLite always runs")
}

/// Proves: C1
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_the_banner_appears_and_reject_leaves_no_optional_cookie() {
    let Some(browser) = Browser::open().await else {
        return;
    };
    let app = app().await;
    browser.goto(&app.url("/")).await;
    browser.settle().await;
    assert!(
        browser.find("#consent-banner").await.is_some(),
        "the banner appears"
    );
    let banner = browser.text_of("#consent-banner").await;
    for button in ["Accept all", "Reject all", "Settings"] {
        assert!(banner.contains(button), "{banner}");
    }
    assert!(
        browser.cookie_names().await.is_empty(),
        "no cookie before a choice"
    );
    browser.screenshot("banner.png").await;

    browser.click("#consent-reject").await;
    browser.settle().await;
    for path in ["/", "/blog", "/cookie-settings"] {
        browser.goto(&app.url(path)).await;
        browser.settle().await;
        assert!(
            browser.find("#consent-banner").await.is_none(),
            "{path} asks again"
        );
    }
    assert_eq!(
        browser.cookie_names().await,
        vec!["covenant_consent".to_string()],
        "only the necessary consent cookie, nothing optional"
    );
    browser.close().await;
    app.stop().await;
}

/// Proves: C1
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_accept_all_runs_the_analytics_tag() {
    let Some(browser) = Browser::open().await else {
        return;
    };
    let app = app().await;
    browser.goto(&app.url("/")).await;
    browser.click("#consent-accept").await;
    browser.settle().await;
    let cookies = browser.cookie_names().await;
    assert!(
        cookies.contains(&"covenant_analytics".to_string()),
        "{cookies:?}"
    );
    assert!(
        cookies.contains(&"covenant_advertising".to_string()),
        "{cookies:?}"
    );
    browser.close().await;
    app.stop().await;
}

/// Proves: C1, C3
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_the_settings_page_changes_a_choice() {
    let Some(browser) = Browser::open().await else {
        return;
    };
    let app = app().await;
    browser.goto(&app.url("/")).await;
    browser.click("#consent-settings").await;
    browser.settle().await;
    assert!(browser.source().await.contains("<h1>Cookie Settings</h1>"));
    browser.click("input[name=analytics][value=granted]").await;
    browser
        .click("form.consent-settings button[type=submit]")
        .await;
    browser.settle().await;
    assert!(browser.text_of("#saved").await.contains("saved"));
    assert!(
        browser
            .text_of("#category-analytics")
            .await
            .contains("On because you allowed it."),
        "the page shows the new choice"
    );
    browser.goto(&app.url("/")).await;
    browser.settle().await;
    let cookies = browser.cookie_names().await;
    assert!(
        cookies.contains(&"covenant_analytics".to_string()),
        "{cookies:?}"
    );
    assert!(
        !cookies.contains(&"covenant_advertising".to_string()),
        "{cookies:?}"
    );

    browser.goto(&app.url("/cookie-settings")).await;
    browser.click("input[name=analytics][value=denied]").await;
    browser
        .click("form.consent-settings button[type=submit]")
        .await;
    browser.settle().await;
    assert!(
        browser
            .text_of("#category-analytics")
            .await
            .contains("Off because you withdrew your consent."),
    );
    assert!(
        browser
            .text_of("#consent-records")
            .await
            .contains("granted"),
        "the grant stays on record"
    );
    browser.screenshot("cookie-settings.png").await;
    browser.close().await;
    app.stop().await;
}

/// Proves: C2
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_a_gpc_browser_sees_its_signal_honored() {
    let Some(browser) = Browser::open().await else {
        return;
    };
    let app = app().await;
    browser.enable_gpc().await;
    browser.goto(&app.url("/")).await;
    browser.settle().await;
    assert!(
        browser
            .text_of("#banner-gpc")
            .await
            .contains("Global Privacy Control honored")
    );
    browser.click("#consent-accept").await;
    browser.settle().await;
    let cookies = browser.cookie_names().await;
    assert!(
        cookies.contains(&"covenant_analytics".to_string()),
        "{cookies:?}"
    );
    assert!(
        !cookies.contains(&"covenant_advertising".to_string()),
        "GPC keeps advertising off: {cookies:?}"
    );
    for (path, shot) in [
        ("/cookie-settings", "gpc-cookie-settings.png"),
        ("/privacy-choices", "gpc-privacy-choices.png"),
    ] {
        browser.goto(&app.url(path)).await;
        browser.settle().await;
        assert!(
            browser
                .text_of("#gpc-honored")
                .await
                .contains("Global Privacy Control honored"),
            "{path}"
        );
        assert!(
            browser.find("#consent-banner").await.is_none(),
            "no pop-up asks to undo GPC"
        );
        browser.screenshot(shot).await;
    }
    browser.close().await;
    app.stop().await;
}
