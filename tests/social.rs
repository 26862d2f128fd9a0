//! Social sign-in against a small OpenID Connect provider started by the test on loopback: real
//! HTTP discovery, a real token exchange with PKCE, RS256 ID tokens signed with a key made here
//! (promise F5).

mod common;

use axum::extract::{Form, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::csrf_of;
use reqwest::StatusCode;
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2_010::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

const CLIENT_ID: &str = "covenant-forum";

/// The provider's signing key and a stranger's, made once per test binary.
fn keys() -> &'static (RsaPrivateKey, RsaPrivateKey) {
    static KEYS: OnceLock<(RsaPrivateKey, RsaPrivateKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rand_08::thread_rng();
        (
            RsaPrivateKey::new(&mut rng, 2048).unwrap(),
            RsaPrivateKey::new(&mut rng, 2048).unwrap(),
        )
    })
}

struct Grant {
    nonce: String,
    challenge: String,
    subject: String,
    used: bool,
}

#[derive(Default)]
struct Faults {
    sign_with_stranger_key: bool,
    expired: bool,
}

struct ProviderState {
    issuer: String,
    grants: Mutex<HashMap<String, Grant>>,
    faults: Mutex<Faults>,
}

#[derive(Clone)]
struct TestProvider(Arc<ProviderState>);

impl TestProvider {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let provider = TestProvider(Arc::new(ProviderState {
            issuer,
            grants: Mutex::new(HashMap::new()),
            faults: Mutex::new(Faults::default()),
        }));
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/token", post(token))
            .with_state(provider.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        provider
    }

    fn issuer(&self) -> &str {
        &self.0.issuer
    }

    /// What the provider does when the member approves: remembers the code for this request.
    fn approve(&self, code: &str, nonce: &str, challenge: &str, subject: &str) {
        self.0.grants.lock().unwrap().insert(
            code.to_string(),
            Grant {
                nonce: nonce.to_string(),
                challenge: challenge.to_string(),
                subject: subject.to_string(),
                used: false,
            },
        );
    }

    fn set_faults(&self, sign_with_stranger_key: bool, expired: bool) {
        *self.0.faults.lock().unwrap() = Faults {
            sign_with_stranger_key,
            expired,
        };
    }

    fn config(&self) -> covenant::config::SocialProviderConfig {
        covenant::config::SocialProviderConfig {
            id: "test-id".into(),
            preset: covenant::config::SocialPreset::Generic,
            name: "Test ID".into(),
            issuer: self.issuer().into(),
            client_id: CLIENT_ID.into(),
            client_secret: "client secret".into(),
            scopes: vec![],
            fields: vec![],
        }
    }
}

async fn discovery(State(provider): State<TestProvider>) -> Json<Value> {
    let issuer = provider.issuer();
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
}

async fn jwks() -> Json<Value> {
    let public = keys().0.to_public_key();
    Json(json!({"keys": [{
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": "test-key",
        "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
    }]}))
}

fn invalid_grant() -> (axum::http::StatusCode, Json<Value>) {
    (
        axum::http::StatusCode::BAD_REQUEST,
        Json(json!({"error": "invalid_grant"})),
    )
}

async fn token(
    State(provider): State<TestProvider>,
    Form(form): Form<HashMap<String, String>>,
) -> (axum::http::StatusCode, Json<Value>) {
    let code = form.get("code").cloned().unwrap_or_default();
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let (nonce, subject) = {
        let mut grants = provider.0.grants.lock().unwrap();
        let Some(grant) = grants.get_mut(&code) else {
            return invalid_grant();
        };
        // A code is good once, and only with the verifier of its challenge (PKCE, S256).
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        if grant.used || challenge != grant.challenge {
            return invalid_grant();
        }
        grant.used = true;
        (grant.nonce.clone(), grant.subject.clone())
    };
    let (stranger, expired) = {
        let faults = provider.0.faults.lock().unwrap();
        (faults.sign_with_stranger_key, faults.expired)
    };
    let now = covenant::now();
    let (issued, expires) = if expired {
        (now - 7200, now - 3600)
    } else {
        (now, now + 600)
    };
    let claims = json!({
        "iss": provider.issuer(), "sub": subject, "aud": CLIENT_ID, "iat": issued, "exp": expires,
        "nonce": nonce, "email": format!("{subject}@provider.example"), "email_verified": true,
        "name": "Sol Provider",
    });
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "test-key"});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let key = if stranger { &keys().1 } else { &keys().0 };
    let signature = SigningKey::<Sha256>::new(key.clone()).sign(input.as_bytes());
    let id_token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()));
    (
        axum::http::StatusCode::OK,
        Json(json!({
            "access_token": "an access token", "token_type": "Bearer", "expires_in": 600,
            "id_token": id_token,
        })),
    )
}

async fn app_with(backend: common::Backend, provider: &TestProvider) -> Option<common::TestApp> {
    let config = provider.config();
    common::spawn_app_with(backend, move |c| c.social_providers = vec![config]).await
}

fn query_of(url: &str) -> HashMap<String, String> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    serde_urlencoded::from_str(query).unwrap()
}

/// Goes through the consent page and the redirect to the provider, approves there as
/// `subject`, and returns the callback URL the provider would send the browser to.
async fn authorize(
    app: &common::TestApp,
    browser: &reqwest::Client,
    provider: &TestProvider,
    subject: &str,
    code: &str,
) -> String {
    let page = app.page(browser, "/auth/test-id").await;
    assert!(page.contains("Test ID will give us"), "{page}");
    assert!(
        page.contains("your email address"),
        "the fields are listed before authorizing"
    );
    let response = browser
        .post(app.url("/auth/test-id"))
        .form(&[("csrf", csrf_of(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("{}/authorize?", provider.issuer())),
        "{location}"
    );
    let query = query_of(&location);
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["code_challenge_method"], "S256");
    assert!(query["scope"].split(' ').any(|s| s == "openid"));
    provider.approve(code, &query["nonce"], &query["code_challenge"], subject);
    format!(
        "{}?code={code}&state={}",
        query["redirect_uri"], query["state"]
    )
}

async fn refused(browser: &reqwest::Client, url: &str) -> String {
    let response = browser.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    response.text().await.unwrap()
}

async fn signed_in_as(app: &common::TestApp, browser: &reqwest::Client) -> Option<String> {
    let response = browser.get(app.url("/account/email")).send().await.unwrap();
    if response.status() != StatusCode::OK {
        return None;
    }
    Some(response.text().await.unwrap())
}

async fn full_sign_in(backend: common::Backend) {
    let provider = TestProvider::start().await;
    let Some(app) = app_with(backend, &provider).await else {
        return;
    };
    let browser = app.new_client();
    let callback = authorize(&app, &browser, &provider, "sol-123", "code-1").await;
    let response = browser.get(&callback).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let complete = response.headers()["location"].to_str().unwrap().to_string();
    assert!(complete.starts_with("/auth/complete/"), "{complete}");
    let form = app.page(&browser, &complete).await;
    assert!(
        form.contains("sol-123@provider.example"),
        "the provider's address is offered"
    );
    let response = browser
        .post(app.url(&complete))
        .form(&[
            ("csrf", csrf_of(&form).as_str()),
            ("username", "sol"),
            ("email", "sol-123@provider.example"),
            ("country", "GB"),
            ("birth_year", "1990"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(
        signed_in_as(&app, &browser).await.is_some(),
        "signed in after registering"
    );
    let user = app.store.user_by_username("sol").await.unwrap().unwrap();
    assert!(user.password_hash.is_empty(), "no password");
    assert!(
        user.email_verified_at.is_some(),
        "the provider vouched for this address"
    );
    let links = app.store.social_links_of(user.id).await.unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].provider, "test-id");
    assert_eq!(
        links[0].fields_received,
        "subject,email,email_verified,name"
    );
    assert!(links[0].authorized_at > 0 && links[0].linked_at >= links[0].authorized_at);
    let page = app.page(&browser, "/account/social").await;
    assert!(page.contains("Test ID") && page.contains("subject, email, email_verified, name"));

    // Next time the same provider account signs straight in.
    let again = app.new_client();
    let callback = authorize(&app, &again, &provider, "sol-123", "code-2").await;
    let response = again.get(&callback).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/");
    assert!(signed_in_as(&app, &again).await.is_some());

    // An account without a password can still close itself...
    let close = app.page(&again, "/account/close").await;
    let response = again
        .post(app.url("/account/close"))
        .form(&[("csrf", csrf_of(&close).as_str()), ("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // ...after which the provider signs it in no more.
    let third = app.new_client();
    let callback = authorize(&app, &third, &provider, "sol-123", "code-3").await;
    let response = third.get(&callback).send().await.unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
    app.stop().await;
}

/// Proves: F5
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_provider_sign_in_registers_signs_in_again_and_closes_on_sqlite() {
    full_sign_in(common::Backend::Sqlite).await;
}

/// Proves: F5
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_provider_sign_in_registers_signs_in_again_and_closes_on_postgres() {
    full_sign_in(common::Backend::Postgres).await;
}

/// Proves: F5
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_state_replayed_code_bad_signature_and_expired_token_are_each_refused() {
    let provider = TestProvider::start().await;
    let app = app_with(common::Backend::Sqlite, &provider).await.unwrap();
    let browser = app.new_client();

    // A state this forum never issued.
    let callback = authorize(&app, &browser, &provider, "eve", "code-a").await;
    let (base, _) = callback.split_once("&state=").unwrap();
    let page = refused(&browser, &format!("{base}&state=forged")).await;
    assert!(page.contains("(state)"), "{page}");

    // A code used once, presented again with a fresh, genuine state.
    let used = authorize(&app, &browser, &provider, "eve", "code-b").await;
    let response = browser.get(&used).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let fresh = authorize(&app, &browser, &provider, "eve", "code-c").await;
    let state = fresh.split("&state=").nth(1).unwrap();
    let replay = format!(
        "{}?code=code-b&state={state}",
        fresh.split('?').next().unwrap()
    );
    let page = refused(&browser, &replay).await;
    assert!(page.contains("refused the authorization code"), "{page}");
    // The first redirect itself cannot be replayed either: its state is spent.
    let page = refused(&browser, &used).await;
    assert!(page.contains("(state)"), "{page}");

    // An ID token signed with a key the provider does not publish.
    provider.set_faults(true, false);
    let callback = authorize(&app, &browser, &provider, "eve", "code-d").await;
    let page = refused(&browser, &callback).await;
    assert!(page.contains("signature does not verify"), "{page}");

    // An ID token past its expiry.
    provider.set_faults(false, true);
    let callback = authorize(&app, &browser, &provider, "eve", "code-e").await;
    let page = refused(&browser, &callback).await;
    assert!(page.contains("has expired"), "{page}");
    provider.set_faults(false, false);

    assert_eq!(
        app.store.count_users().await.unwrap(),
        0,
        "nothing was created"
    );
    app.stop().await;
}

/// Proves: F5
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_links_and_unlinks_a_provider_after_seeing_what_it_gives_on_sqlite() {
    let provider = TestProvider::start().await;
    let app = app_with(common::Backend::Sqlite, &provider).await.unwrap();
    app.member("pia").await;
    let browser = app.new_client();
    let page = app.page(&browser, "/sign-in").await;
    assert!(
        page.contains("href=\"/auth/test-id\""),
        "the sign-in page offers the provider"
    );
    browser
        .post(app.url("/sign-in"))
        .form(&[
            ("csrf", csrf_of(&page).as_str()),
            ("login", "pia"),
            ("password", "a long enough password"),
        ])
        .send()
        .await
        .unwrap();
    let page = app.page(&browser, "/auth/test-id").await;
    assert!(page.contains("Link Test ID to your account?"));
    let callback = authorize(&app, &browser, &provider, "pia-9", "code-l").await;
    let response = browser.get(&callback).send().await.unwrap();
    assert_eq!(response.headers()["location"], "/account/social");
    let user = app.store.user_by_username("pia").await.unwrap().unwrap();
    assert_eq!(app.store.social_links_of(user.id).await.unwrap().len(), 1);
    let page = app.page(&browser, "/account/social").await;
    let response = browser
        .post(app.url("/account/social/test-id/unlink"))
        .form(&[("csrf", csrf_of(&page).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(app.store.social_links_of(user.id).await.unwrap().is_empty());
    app.stop().await;
}

/// Registers a passwordless account through the provider, signs in afresh with the provider and
/// asks for deletion from the account page: the session is the proof, and the erasure runs.
async fn provider_account_deletes_itself(backend: common::Backend) {
    let provider = TestProvider::start().await;
    let Some(app) = app_with(backend, &provider).await else {
        return;
    };
    let browser = app.new_client();
    let callback = authorize(&app, &browser, &provider, "ren-7", "code-a").await;
    let response = browser.get(&callback).send().await.unwrap();
    let complete = response.headers()["location"].to_str().unwrap().to_string();
    let form = app.page(&browser, &complete).await;
    let response = browser
        .post(app.url(&complete))
        .form(&[
            ("csrf", csrf_of(&form).as_str()),
            ("username", "ren"),
            ("email", "ren-7@provider.example"),
            ("country", "GB"),
            ("birth_year", "1990"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let user = app.store.user_by_username("ren").await.unwrap().unwrap();
    assert!(user.password_hash.is_empty(), "no password");

    let fresh = app.new_client();
    let callback = authorize(&app, &fresh, &provider, "ren-7", "code-b").await;
    let response = fresh.get(&callback).send().await.unwrap();
    assert_eq!(response.headers()["location"], "/");
    let page = app.page(&fresh, "/account/privacy").await;
    let response = fresh
        .post(app.url("/account/privacy/requests"))
        .form(&[
            ("csrf", csrf_of(&page).as_str()),
            ("right", "deletion"),
            ("jurisdiction", "uk"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(
        app.store.user_by_username("ren").await.unwrap().is_none(),
        "the account is erased"
    );
    assert!(
        app.store.social_links_of(user.id).await.unwrap().is_empty(),
        "its link is gone"
    );
    assert!(
        signed_in_as(&app, &fresh).await.is_none(),
        "its session ended"
    );
    app.stop().await;
}

/// Proves: F5, R8
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_without_a_password_deletes_itself_after_a_fresh_provider_sign_in_on_sqlite() {
    provider_account_deletes_itself(common::Backend::Sqlite).await;
}

/// Proves: F5, R8
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_without_a_password_deletes_itself_after_a_fresh_provider_sign_in_on_postgres() {
    provider_account_deletes_itself(common::Backend::Postgres).await;
}

/// A passwordless account changes its address: its recent provider sign-in is the proof (the
/// form asks for no password), the link goes to the new address; once the sign-in is old, the
/// confirmation page tells it to sign in again through the provider instead of asking for a
/// password it does not have.
async fn provider_account_changes_its_address(backend: common::Backend) {
    let provider = TestProvider::start().await;
    let Some(app) = app_with(backend, &provider).await else {
        return;
    };
    let browser = app.new_client();
    let callback = authorize(&app, &browser, &provider, "ivo-3", "code-a").await;
    let response = browser.get(&callback).send().await.unwrap();
    let complete = response.headers()["location"].to_str().unwrap().to_string();
    let form = app.page(&browser, &complete).await;
    let response = browser
        .post(app.url(&complete))
        .form(&[
            ("csrf", csrf_of(&form).as_str()),
            ("username", "ivo"),
            ("email", "ivo-3@provider.example"),
            ("country", "GB"),
            ("birth_year", "1990"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let user = app.store.user_by_username("ivo").await.unwrap().unwrap();
    assert!(user.password_hash.is_empty(), "no password");

    let page = app.page(&browser, "/account/security").await;
    assert!(
        !page.contains("email_current_password"),
        "no password is asked"
    );
    assert!(page.contains("your recent sign-in there confirms it is you"));
    let response = browser
        .post(app.url("/account/security/email"))
        .form(&[
            ("csrf", csrf_of(&page).as_str()),
            ("email", "ivo@elsewhere.example"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mail = app
        .wait_for_mail("ivo@elsewhere.example", "Confirm your new email address")
        .await;
    let link = app.link_in(&mail);
    let page = browser
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let response = browser
        .post(&link)
        .form(&[("csrf", csrf_of(&page).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let user = app.store.user_by_id(user.id).await.unwrap().unwrap();
    assert_eq!(user.email, "ivo@elsewhere.example");
    app.wait_for_mail("ivo-3@provider.example", "email address was changed")
        .await;

    // Thirteen hours on, the confirmation page points to the provider.
    sqlx::any::install_default_drivers();
    let url = if app.state.config.database_url.is_empty() {
        format!(
            "sqlite://{}",
            app.data_dir.path().join("covenant.db").display()
        )
    } else {
        app.state.config.database_url.clone()
    };
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    sqlx::query(
        "UPDATE sessions SET authenticated_at = authenticated_at - 46800 WHERE user_id = $1",
    )
    .bind(user.id)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let response = browser
        .get(app.url("/account/two-factor"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["location"], "/account/confirm");
    let confirm = app.page(&browser, "/account/confirm").await;
    assert!(
        confirm.contains("sign in again through your provider"),
        "{confirm}"
    );
    assert!(
        !confirm.contains("type=\"password\""),
        "no password is asked"
    );
    app.stop().await;
}

/// Proves: F5, A4
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_without_a_password_changes_its_address_on_sqlite() {
    provider_account_changes_its_address(common::Backend::Sqlite).await;
}

/// Proves: F5, A4
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_without_a_password_changes_its_address_on_postgres() {
    provider_account_changes_its_address(common::Backend::Postgres).await;
}
