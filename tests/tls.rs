//! Native TLS: `covenant serve --tls-cert --tls-key` answers HTTPS itself, tells browsers to
//! keep to it (HSTS), and refuses to start, with a clear message, on a bad certificate or key.

mod common;

use covenant::web::{AppState, start};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A client that trusts only the test certificate (tests/fixtures/README.md).
fn trusting_client() -> reqwest::Client {
    let pem = std::fs::read(fixture("tls-test.crt")).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Proves: A4
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_speaks_https_with_hsts_when_given_a_certificate() {
    let app = common::spawn_app_with(common::Backend::Sqlite, |config| {
        config.tls_cert = fixture("tls-test.crt");
        config.tls_key = fixture("tls-test.key");
        config.base_url = config
            .base_url
            .replace("http://127.0.0.1", "https://localhost");
    })
    .await
    .unwrap();
    let port = app.address.rsplit(':').next().unwrap().to_string();
    let https = format!("https://localhost:{port}");
    let client = trusting_client();
    for path in ["/", "/sign-in", "/no-such-page"] {
        let response = client.get(format!("{https}{path}")).send().await.unwrap();
        assert_eq!(
            response
                .headers()
                .get("strict-transport-security")
                .map(|v| v.to_str().unwrap()),
            Some("max-age=31536000; includeSubDomains"),
            "GET {path} over HTTPS"
        );
        if path == "/" {
            assert!(response.status().is_success());
            let page = response.text().await.unwrap();
            assert!(page.contains("Covenant Forum"), "the front page: {page}");
        }
    }
    // Cookies set over native TLS are `Secure`.
    let sign_in = client.get(format!("{https}/sign-in")).send().await.unwrap();
    for cookie in sign_in.headers().get_all("set-cookie") {
        assert!(
            cookie.to_str().unwrap().contains("Secure"),
            "{cookie:?} over HTTPS"
        );
    }
    // The TLS port does not also answer plain HTTP.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP on the TLS port was answered");
    // A client that does not trust the certificate is refused by its own TLS check.
    let untrusting = reqwest::Client::builder()
        .tls_built_in_root_certs(true)
        .build()
        .unwrap();
    assert!(untrusting.get(format!("{https}/")).send().await.is_err());
    app.stop().await;

    // Without a certificate: plain HTTP, and no HSTS.
    let app = common::spawn_app(common::Backend::Sqlite).await.unwrap();
    let response = app.client.get(app.url("/")).send().await.unwrap();
    assert!(response.status().is_success());
    assert!(
        response
            .headers()
            .get("strict-transport-security")
            .is_none(),
        "HSTS over plain HTTP"
    );
    app.stop().await;
}

/// Starts a server on `cert` and `key`; the error it refuses with.
async fn refusal(cert: PathBuf, key: PathBuf) -> String {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(data_dir.path().to_path_buf(), String::new());
    config.tls_cert = cert;
    config.tls_key = key;
    let state = AppState::open(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = match start(state.clone(), listener).await {
        Ok(server) => {
            server.stop().await;
            panic!("the server started");
        }
        Err(error) => format!("{error:#}"),
    };
    state.store.close().await;
    error
}

/// Proves: A4
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_invalid_certificate_or_key_is_refused_with_a_clear_message() {
    let missing = fixture("no-such.crt");
    let error = refusal(missing.clone(), fixture("tls-test.key")).await;
    assert!(
        error.contains("reading the TLS certificate") && error.contains("no-such.crt"),
        "{error}"
    );

    let error = refusal(fixture("tls-test.crt"), fixture("no-such.key")).await;
    assert!(
        error.contains("reading the TLS key") && error.contains("no-such.key"),
        "{error}"
    );

    // The key given as the certificate: no certificate in it.
    let error = refusal(fixture("tls-test.key"), fixture("tls-test.key")).await;
    assert!(
        error.contains("holds no certificate") && error.contains("tls-test.key"),
        "{error}"
    );

    // The certificate given as the key: no private key in it.
    let error = refusal(fixture("tls-test.crt"), fixture("tls-test.crt")).await;
    assert!(
        error.contains("holds no usable private key") && error.contains("tls-test.crt"),
        "{error}"
    );

    // Not PEM at all.
    let error = refusal(fixture("README.md"), fixture("tls-test.key")).await;
    assert!(error.contains("holds no certificate"), "{error}");

    // Only one of the two: the configuration says they go together.
    let config = covenant::config::Config {
        tls_cert: fixture("tls-test.crt"),
        ..Default::default()
    };
    let error = format!("{:#}", config.validate().unwrap_err());
    assert!(
        error.contains("tls_cert and tls_key go together"),
        "{error}"
    );
}
