//! The web edge: the only code that knows HTTP, cookies and templates.
//!
//! A request passes the middleware (tracing by route, never by URL; panic catching; security
//! headers; body limit), is routed to a page or API handler, which extracts the viewer and the
//! input, calls the forum or account services, and renders HTML or JSON.

pub mod api;
pub mod auth;
pub mod consent;
pub mod error;
pub mod forms;
pub mod fulfilment;
pub mod page_cache;
pub mod pages;
pub mod people;
pub mod privacy;
pub mod requests;
pub mod retention;
pub mod security;
pub mod social;
pub mod staff;
pub mod theme;
pub mod tls;

use crate::accounts::Accounts;
use crate::config::Config;
use crate::forum::Forum;
use crate::mail::Mailer;
use crate::store::Store;
use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::handler::Handler;
use axum::http::Method;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, post};
use axum::serve::ListenerExt;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

/// What every handler shares: one pointer to the services, so the clones that axum makes for
/// every request (each `State` extractor, each middleware layer and the service it wraps) cost
/// one reference count, not one per service.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services of the forum, shared by every request through [`AppState`].
pub struct Services {
    pub store: Store,
    pub config: Arc<Config>,
    pub accounts: Accounts,
    pub forum: Forum,
    pub mailer: Mailer,
    /// Signs visitors' form tokens; the same on every node (kept in the database).
    pub form_key: Arc<Vec<u8>>,
    /// Signs the audit log; read from a file outside the database.
    pub audit_key: crate::audit::AuditKey,
    /// The privacy policy in force, reloaded when another version is published.
    pub policy: crate::policy::Policies,
    /// Consent records and the per-request consent context.
    pub consent: crate::consent::Consent,
    /// Relationship ends, legal holds and sweeps.
    pub retention: crate::retention::Retention,
    /// Topic views counted in memory for the visitor statistics.
    pub visits: crate::stats::VisitCounter,
    /// Product-news subscriptions, unsubscribe tokens and newsletters.
    pub news: crate::news::News,
    /// Followed topics, digest choices and the digest job.
    pub digest: crate::digest::Digest,
    /// Feedback messages, published only with their sender's agreement.
    pub feedback: crate::feedback::Feedback,
    /// The privacy-request workflow.
    pub requests: crate::requests::Requests,
    /// The purpose gate: restriction, objection and withdrawal of consent (R9).
    pub purpose: crate::purpose::PurposeGate,
    /// Export archives and their links, erasure (R7, R8).
    pub fulfilment: crate::fulfilment::Fulfilment,
    /// Social sign-in providers, flows and links.
    pub social: crate::social::Social,
    /// The log of disclosures to third parties and authorities (A3).
    pub disclosures: crate::disclosures::Disclosures,
    /// Which refusals of staff routes were audited this minute (per member and route).
    pub refusals: security::RefusalThrottle,
    /// Pages rendered for visitors without a session, kept true by a write generation.
    pub page_cache: page_cache::PageCache,
}

impl AppState {
    /// Opens and migrates the store and prepares the services.
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        let store = Store::open(
            &config.data_dir,
            &config.database_url,
            config.db_max_connections,
        )
        .await?;
        store.migrate().await?;
        Self::with_store(config, store).await
    }

    pub async fn with_store(config: Config, store: Store) -> anyhow::Result<Self> {
        let key = store
            .setting_or_insert("form_key", &crate::accounts::random_token())
            .await?;
        let audit_key = crate::audit::AuditKey::load_or_create(&config.audit_key_path())?;
        let store = store
            .with_keys(&config.data_dir, &config.keys_database_url, &audit_key)
            .await?;
        // Private fields stored before their columns were sealed are sealed now (R8), once.
        let sealed = store.seal_plain_fields().await?;
        if sealed > 0 {
            tracing::info!(sealed, "sealed plain private fields");
        }
        let news = crate::news::News::open(store.clone(), &config).await?;
        let digest = crate::digest::Digest::open(store.clone(), &config).await?;
        let config = Arc::new(config);
        let policy = crate::policy::Policies::load(store.clone(), &config).await?;
        let consent = crate::consent::Consent::new(store.clone());
        // A backup restored from before an erasure is erased again before anything is served.
        crate::fulfilment::reapply_erasure_ledger(
            &store,
            &audit_key,
            &policy.current().await?.policy,
            &config.data_dir,
        )
        .await?;
        let fulfilment = crate::fulfilment::Fulfilment::new(
            store.clone(),
            audit_key.clone(),
            config.data_dir.clone(),
        )
        .await?;
        let accounts = Accounts::new(store.clone(), config.clone(), audit_key.clone())?;
        // 2-step secrets stored before they were sealed are sealed now.
        accounts.seal_plain_two_factor_secrets().await?;
        let purpose = crate::purpose::PurposeGate::new(store.clone(), audit_key.clone());
        Ok(Self(Arc::new(Services {
            retention: crate::retention::Retention::new(
                store.clone(),
                audit_key.clone(),
                policy.clone(),
                &config,
            ),
            disclosures: crate::disclosures::Disclosures::new(
                store.clone(),
                audit_key.clone(),
                policy.clone(),
                &config,
            ),
            visits: crate::stats::VisitCounter::new(store.clone()),
            refusals: security::RefusalThrottle::default(),
            page_cache: page_cache::PageCache::new(&config.page_cache),
            // With `requests.fulfil_at_once` off, the engine still carries out what staff
            // fulfil after review.
            requests: crate::requests::Requests::new(
                store.clone(),
                config.clone(),
                audit_key.clone(),
                policy.clone(),
                consent.clone(),
            )
            .with_fulfilment(Arc::new(crate::fulfilment::RequestEngine::new(
                fulfilment.clone(),
                policy.clone(),
                purpose.clone(),
                &config.base_url,
            ))),
            social: crate::social::Social::new(
                store.clone(),
                accounts.clone(),
                audit_key.clone(),
                &config,
            )?,
            accounts,
            forum: Forum::new(
                store.clone(),
                audit_key.clone(),
                config.moderation.filter()?,
            ),
            feedback: crate::feedback::Feedback::new(store.clone(), audit_key.clone()),
            audit_key,
            mailer: Mailer::new(store.clone(), &config, purpose.clone())?,
            purpose,
            form_key: Arc::new(key.into_bytes()),
            policy,
            fulfilment,
            consent,
            news,
            digest,
            store,
            config,
        })))
    }
}

static STYLESHEET: &str = include_str!("../../static/style.css");

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
}

async fn healthz(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ok"})),
        ),
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"status": "unavailable"})),
            )
        }
    }
}

/// One route the forum serves: a method and a path template such as `/t/{slug}/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    pub method: Method,
    pub path: String,
}

/// Builds the router and the list of its routes in the same calls: each method helper adds a
/// handler for exactly one method and path and writes that pair down, so the list is what the
/// router serves by construction (axum cannot list a router's routes itself).
struct Routes {
    router: Router<AppState>,
    entries: Vec<RouteEntry>,
    prefix: &'static str,
}

impl Routes {
    fn new(prefix: &'static str) -> Self {
        Self {
            router: Router::new(),
            entries: Vec::new(),
            prefix,
        }
    }

    fn add(mut self, method: Method, path: &str, handler: MethodRouter<AppState>) -> Self {
        self.entries.push(RouteEntry {
            method,
            path: format!("{}{path}", self.prefix),
        });
        self.router = self.router.route(path, handler);
        self
    }

    fn get<H: Handler<T, AppState>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::GET, path, axum::routing::get(handler))
    }

    fn post<H: Handler<T, AppState>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::POST, path, axum::routing::post(handler))
    }

    fn patch<H: Handler<T, AppState>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::PATCH, path, axum::routing::patch(handler))
    }

    fn delete<H: Handler<T, AppState>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::DELETE, path, axum::routing::delete(handler))
    }

    /// A POST route with its own layers (a larger body limit); `handler` must serve POST only.
    fn post_with(self, path: &str, handler: MethodRouter<AppState>) -> Self {
        self.add(Method::POST, path, handler)
    }

    /// Serves `inner`'s routes under its prefix, with its own fallback.
    fn nest<H: Handler<T, AppState>, T: 'static>(mut self, inner: Routes, fallback: H) -> Self {
        self.entries.extend(inner.entries);
        self.router = self
            .router
            .nest(inner.prefix, inner.router.fallback(fallback));
        self
    }
}

fn api_routes(config: &Config) -> Routes {
    use api::*;
    Routes::new("/api/v1")
        .post("/users", register)
        .post("/users/verify-email", verify_email)
        .get("/users/{username}", profile)
        .post("/session", create_session)
        .delete("/session", delete_session)
        .post("/password-reset", request_password_reset)
        .post("/password-reset/complete", complete_password_reset)
        .get("/me", me)
        .post("/me/export", fulfilment::api_export)
        .get("/categories", categories)
        .get("/categories/{slug}/topics", category_topics)
        .post("/topics", create_topic)
        .get("/topics/{id}", topic)
        .post("/topics/{id}/posts", reply)
        .patch("/posts/{id}", edit_post)
        .delete("/posts/{id}", delete_post)
        .post("/posts/{id}/hide", hide_post)
        .post("/posts/{id}/unhide", unhide_post)
        .get("/blog", blog)
        .post("/blog", create_article)
        .get("/blog/{slug}", blog_article)
        .post("/blog/{slug}/comments", comment)
        .get("/consent/decision", consent::api_decision)
        .post("/consent/choices", consent::api_record_choice)
        .get("/consent/receipts", consent::api_receipts)
        .post("/consent/written-opt-outs", consent::api_written_opt_out)
        .get("/policy", policy)
        .get("/policy/versions", policy_versions)
        .get("/policy/versions/{id}", policy_version)
        .get("/policy/diff", policy_diff)
        .get("/ropa", ropa)
        .post("/privacy-requests", requests::api_create)
        .get("/privacy-requests", requests::api_mine)
        .post("/privacy-requests/verify", requests::api_verify)
        .post("/privacy-requests/appeal", requests::api_appeal)
        .post("/privacy-requests/status", requests::api_status)
        .post("/privacy-requests/withdraw", requests::api_withdraw)
        .post_with(
            "/privacy-requests/evidence",
            // Base64 takes four bytes for every three of the file.
            post(requests::api_evidence).layer(DefaultBodyLimit::max(
                config.requests.evidence_max_bytes / 3 * 4 + 64 * 1024,
            )),
        )
        .get("/staff/privacy-requests", requests::api_queue)
        .post(
            "/staff/privacy-requests/{id}/actions",
            requests::api_staff_action,
        )
}

/// The forum's routes, listed as they are added.
fn routes(config: &Config) -> Routes {
    use pages::*;
    Routes::new("")
        .get("/", home)
        .get("/c/{slug}", category)
        .get("/t/{slug}/{id}", topic)
        .post("/t/{slug}/{id}/reply", reply)
        .post("/t/{slug}/{id}/follow", people::follow_topic)
        .post("/t/{slug}/{id}/unfollow", people::unfollow_topic)
        .get("/new-topic", new_topic_form)
        .post("/new-topic", new_topic)
        .get("/posts/{id}/edit", edit_post_form)
        .post("/posts/{id}/edit", edit_post)
        .post("/posts/{id}/delete", delete_post)
        .post("/posts/{id}/hide", hide_post)
        .post("/posts/{id}/unhide", unhide_post)
        .get("/blog", blog_index)
        .get("/blog/new", new_article_form)
        .post("/blog/new", new_article)
        .get("/blog/{slug}", blog_article)
        .post("/blog/{slug}/reply", blog_comment)
        .get("/u/{username}", profile)
        .get("/register", register_form)
        .post("/register", register)
        .get("/unsubscribe/{token}", people::unsubscribe_page)
        .post("/unsubscribe/{token}", people::unsubscribe)
        .get("/account/profile", people::profile_form)
        .post("/account/profile", people::save_profile)
        .get("/account/email", people::email_preferences)
        .post("/account/email", people::save_email_preferences)
        .post("/account/email/digest", people::save_digest_preference)
        .get(
            "/digest/unsubscribe/{token}",
            people::digest_unsubscribe_page,
        )
        .post("/digest/unsubscribe/{token}", people::digest_unsubscribe)
        .get("/parental-consent/{token}", people::parental_consent_page)
        .post("/parental-consent/{token}", people::give_parental_consent)
        .get(
            "/parental-consent-recorded",
            people::parental_consent_recorded,
        )
        .get("/feedback", people::feedback_form)
        .post("/feedback", people::send_feedback)
        .get("/feedback/published", people::published_feedback)
        .get("/auth/{provider}", social::consent_page)
        .post("/auth/{provider}", social::start)
        .get("/auth/{provider}/callback", social::callback)
        .get("/auth/complete/{token}", social::complete_form)
        .post("/auth/complete/{token}", social::complete)
        .get("/account/social", social::links)
        .post("/account/social/{provider}/unlink", social::unlink)
        .get("/staff/feedback", people::staff_feedback)
        .post("/staff/feedback/{id}/publish", people::publish_feedback)
        .get("/verify-email/{token}", verify_email_form)
        .post("/verify-email/{token}", verify_email)
        .get("/sign-in", sign_in_form)
        .post("/sign-in", sign_in)
        .post("/sign-out", sign_out)
        .get("/password-reset", password_reset_form)
        .post("/password-reset", password_reset_request)
        .get("/password-reset/{token}", password_reset_token_form)
        .post("/password-reset/{token}", password_reset)
        .get("/privacy", privacy::privacy_page)
        .get("/privacy/history", privacy::history)
        .get("/privacy/versions/{id}", privacy::version_page)
        .get("/privacy/automated-decisions", privacy::automated_decisions)
        .post("/privacy/acknowledge", privacy::acknowledge)
        .get("/staff/ropa", privacy::staff_ropa)
        .get("/staff/audit", staff::staff_audit)
        .get("/staff/mail/withheld", staff::withheld_mail)
        .get("/staff/held", staff::held_posts)
        .post("/staff/held/{id}/release", staff::release_held_post)
        .post("/staff/held/{id}/hide", staff::hide_held_post)
        .get("/staff/holds", retention::staff_holds)
        .post("/staff/holds", retention::place_hold)
        .post("/staff/holds/{id}/release", retention::release_hold)
        .get("/staff/disclosures", staff::staff_disclosures)
        .post("/staff/disclosures", staff::record_disclosure)
        .post(
            "/staff/disclosures/{id}/notify",
            staff::allow_disclosure_notice,
        )
        .get("/account/close", retention::close_form)
        .post("/account/close", retention::close_account)
        .get("/stats", retention::stats_page)
        .get("/account/privacy", requests::account_privacy)
        .post("/account/privacy/requests", requests::account_request)
        .post(
            "/account/privacy/restriction/lift",
            requests::lift_restriction,
        )
        .get("/privacy/requests/new", requests::new_request_form)
        .post("/privacy/requests/new", requests::new_request)
        .get("/privacy/requests/sent", requests::request_sent)
        .get("/privacy/requests/verify/{token}", requests::verify_form)
        .post("/privacy/requests/verify/{token}", requests::verify)
        .post(
            "/privacy/requests/verify/{token}/resend",
            requests::resend_code,
        )
        .get("/privacy/requests/status/{token}", requests::status_page)
        .post("/privacy/requests/status/{token}/appeal", requests::appeal)
        .post(
            "/privacy/requests/status/{token}/withdraw",
            requests::withdraw,
        )
        .post_with(
            "/privacy/requests/status/{token}/evidence",
            post(requests::upload_evidence).layer(DefaultBodyLimit::max(
                config.requests.evidence_max_bytes + 64 * 1024,
            )),
        )
        .get("/staff/requests", requests::staff_queue)
        .get("/staff/requests/log", requests::staff_log_form)
        .post("/staff/requests/log", requests::staff_log)
        .get("/staff/requests/report", requests::staff_report)
        .get("/staff/requests/{id}", requests::staff_request)
        .post("/staff/requests/{id}/actions", requests::staff_action)
        .get(
            "/staff/requests/{id}/evidence/{evidence_id}",
            requests::staff_evidence,
        )
        .get("/metrics", requests::metrics)
        .get("/account/privacy/export", fulfilment::export_form)
        .post("/account/privacy/export", fulfilment::export)
        .get("/privacy/export/{token}", fulfilment::download)
        .get("/account/confirm", security::confirm_form)
        .post("/account/confirm", security::confirm)
        .get("/account/security", security::checkup)
        .post(
            "/account/security/sessions/revoke",
            security::revoke_session,
        )
        .post(
            "/account/security/sessions/revoke-others",
            security::revoke_other_sessions,
        )
        .post("/account/security/password", security::change_password)
        .post("/account/security/email", security::change_email)
        .get("/email-change/{token}", security::email_change_form)
        .post("/email-change/{token}", security::email_change)
        .get("/account/two-factor", security::two_factor)
        .post("/account/two-factor/enable", security::enable_two_factor)
        .post("/account/two-factor/disable", security::disable_two_factor)
        .post("/consent", consent::banner_choice)
        .post("/preferences/theme", theme::choose_theme)
        .get("/cookie-settings", consent::cookie_settings)
        .post("/cookie-settings", consent::save_cookie_settings)
        .get("/privacy-choices", consent::privacy_choices)
        .post("/privacy-choices", consent::save_privacy_choices)
        .get("/.well-known/gpc.json", consent::gpc_json)
        .get("/.well-known/security.txt", security::security_txt)
        .get("/static/analytics.js", consent::analytics_js)
        .get("/static/advertising.js", consent::advertising_js)
        .get("/static/style.css", stylesheet)
        .get("/healthz", healthz)
        .get("/api/openapi.json", api::openapi)
        .nest(api_routes(config), api::not_found)
}

/// Every route the forum serves, as (method, path template): the same calls that build the
/// router write this list, so a route cannot be served without being listed. The
/// authorization matrix test walks it.
pub fn route_table(config: &Config) -> Vec<RouteEntry> {
    routes(config).entries
}

/// Every route of the forum.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    let tls = state.config.served_over_tls();
    let router = routes(&state.config)
        .router
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            privacy::policy_notice,
        ))
        .layer(consent::ConsentLayer::new(state.clone()))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security::audit_refused_staff_routes,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .layer(header_layer(
            "content-security-policy",
            "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ))
        .layer(axum::middleware::from_fn(no_store_with_credentials))
        .layer(header_layer("x-content-type-options", "nosniff"))
        .layer(header_layer("referrer-policy", "same-origin"))
        .layer(header_layer("x-frame-options", "DENY"));
    // Over TLS, browsers are told to come back over nothing else for a year; over plain HTTP
    // the header would be ignored, and sent to a development server it would be wrong.
    let router = if tls {
        router.layer(header_layer(
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        ))
    } else {
        router
    };
    router
        // Outside the panic catcher: a write that panicked half-way still ends the generation.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            page_cache::note_writes,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a handler panicked");
            error::PageError(crate::error::Error::Internal(anyhow::anyhow!(
                "handler panicked"
            )))
            .into_response()
        }))
        .layer(
            // Spans name the route template, never the URL: links carry tokens.
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let route = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "unmatched".into());
                tracing::info_span!("request", method = %request.method(), route)
            }),
        )
        .with_state(state)
}

/// An answer to a request that carries credentials (a session cookie or a bearer token) is
/// personal: no browser or shared cache may keep it, unless its handler chose a caching rule
/// itself (public files).
async fn no_store_with_credentials(
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let headers = request.headers();
    let credentials = headers.contains_key(header::AUTHORIZATION)
        || headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains(auth::SESSION_COOKIE));
    let mut response = next.run(request).await;
    if credentials && !response.headers().contains_key(header::CACHE_CONTROL) {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store, private"),
        );
    }
    response
}

fn header_layer(name: &'static str, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(
        HeaderName::from_static(name),
        HeaderValue::from_static(value),
    )
}

/// A running server: its address, and the switch that stops it.
pub struct RunningServer {
    pub local_addr: SocketAddr,
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
}

impl RunningServer {
    /// Stops accepting, lets requests in flight finish, stops the workers.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        self.state.store.close().await;
    }

    /// Waits until the server stops on its own (it does not, unless `stop` is called elsewhere).
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }

    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Starts serving on `listener` with the mail worker beside it: HTTPS when the configuration
/// names a certificate and key (an unreadable or invalid one is an error here, before anything
/// is served), plain HTTP otherwise.
pub async fn start(state: AppState, listener: TcpListener) -> anyhow::Result<RunningServer> {
    let local_addr = listener
        .local_addr()
        .context("reading the listening address")?;
    let tls = if state.config.native_tls() {
        Some(tls::server_config(
            &state.config.tls_cert,
            &state.config.tls_key,
        )?)
    } else {
        None
    };
    let (shutdown, watcher) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let mut http_watcher = watcher.clone();
    let stopping = async move {
        let _ = http_watcher.wait_for(|stop| *stop).await;
    };
    match tls {
        Some(tls) => {
            // `tap_io` (doing nothing) lends the listener axum's `ConnectInfo<SocketAddr>`.
            let listener = tls::TlsListener::new(listener, tls)?.tap_io(|_| {});
            tasks.spawn(async move {
                if let Err(error) = axum::serve(listener, app)
                    .with_graceful_shutdown(stopping)
                    .await
                {
                    tracing::error!(%error, "the HTTPS server stopped with an error");
                }
            });
        }
        None => {
            tasks.spawn(async move {
                if let Err(error) = axum::serve(listener, app)
                    .with_graceful_shutdown(stopping)
                    .await
                {
                    tracing::error!(%error, "the HTTP server stopped with an error");
                }
            });
        }
    }
    if state.config.mail.worker {
        tasks.spawn(state.mailer.clone().run(watcher.clone()));
    }
    // Each round may finish an erasure: cached visitors' pages go stale after it.
    tasks.spawn(state.requests.clone().run(
        state.mailer.clone(),
        state.page_cache.after_batch(),
        watcher.clone(),
    ));
    tasks.spawn(
        state
            .digest
            .clone()
            .run(state.mailer.clone(), watcher.clone()),
    );
    tasks.spawn(state.visits.clone().run(
        std::time::Duration::from_secs(state.config.retention.stats_flush_seconds),
        watcher.clone(),
    ));
    if state.config.retention.sweep_interval_minutes > 0 {
        tasks.spawn(crate::retention::run_schedule(
            state.retention.clone(),
            state.page_cache.after_batch(),
            state.config.retention.sweep_batch,
            std::time::Duration::from_secs(state.config.retention.sweep_interval_minutes * 60),
            watcher.clone(),
        ));
    }
    // This node's anchor of the audit chain, outside the database, follows the chain's head
    // (at most once a second, and at shutdown), so that a rolled-back database is detected.
    let keeper = crate::audit::anchor::Keeper::start(
        state.store.clone(),
        state.audit_key.clone(),
        state.config.audit_anchor_path(),
    )
    .await;
    tasks.spawn(keeper.run(std::time::Duration::from_secs(1), watcher.clone()));
    // Consent choices written by other nodes reach this node's cached records within the
    // consent sync interval.
    let (consent, mut consent_watcher) = (state.consent.clone(), watcher.clone());
    tasks.spawn(async move {
        loop {
            if let Err(error) = consent.sync().await {
                tracing::error!(error = %format!("{error:#}"), "syncing consent records failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(crate::consent::SYNC_INTERVAL) => {}
                _ = consent_watcher.wait_for(|stop| *stop) => break,
            }
        }
    });
    // Export archives are personal data: their files go as soon as their link expires.
    // Rate-limit counters go a day after their last event, with the same rhythm.
    let (fulfilment, mut purge_watcher) = (state.fulfilment.clone(), watcher);
    let limits = state.accounts.limits().clone();
    tasks.spawn(async move {
        loop {
            if let Err(error) = fulfilment.purge_archives().await {
                tracing::error!(error = %format!("{error:#}"), "purging export archives failed");
            }
            if let Err(error) = limits.purge().await {
                tracing::error!(error = %format!("{error:#}"), "purging rate limits failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(600)) => {}
                _ = purge_watcher.wait_for(|stop| *stop) => break,
            }
        }
    });
    // A publisher that died mid-run left notices owed; queue them (idempotently) now. Only
    // when some are owed: a resume racing a publisher that is alive would make it skip its own
    // run (the row is locked) and report the run unfinished.
    let owed = state.store.unfinished_notice_runs().await?;
    let (store, config, mailer) = (
        state.store.clone(),
        state.config.clone(),
        state.mailer.clone(),
    );
    tasks.spawn(async move {
        if owed.is_empty() {
            return;
        }
        match crate::policy::resume_notices(&store, &config).await {
            Ok(0) => {}
            Ok(queued) => {
                tracing::info!(queued, "resumed policy notices");
                mailer.wake();
            }
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "resuming policy notices failed")
            }
        }
    });
    Ok(RunningServer {
        local_addr,
        state,
        shutdown,
        tasks,
    })
}

/// `covenant serve`: binds, serves, and stops cleanly on Ctrl-C or SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let bind = config.bind.clone();
    // The signal handlers are installed before the first request is answered: a SIGTERM that
    // came between the two (a supervisor probing health, then stopping) killed the process
    // with the default action instead of a clean stop.
    let signal = shutdown_signal()?;
    // A bad certificate or key is reported before the database is created or migrated.
    if config.native_tls() {
        tls::server_config(&config.tls_cert, &config.tls_key)?;
    }
    let state = AppState::open(config).await?;
    let listener = TcpListener::bind(&bind)
        .await
        .with_context(|| format!("listening on {bind}"))?;
    let server = start(state, listener).await?;
    tracing::info!(address = %server.local_addr, "Covenant is serving");
    let scheme = if server.state.config.native_tls() {
        "https"
    } else {
        "http"
    };
    println!("Covenant is serving on {scheme}://{}", server.local_addr);
    let stop = server.shutdown_handle();
    tokio::spawn(async move {
        signal.await;
        tracing::info!("shutting down: finishing requests in flight");
        let _ = stop.send(true);
    });
    server.wait().await;
    tracing::info!("stopped");
    Ok(())
}

/// Registers for Ctrl-C and SIGTERM now; the returned future completes on either.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    #[cfg(unix)]
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("listening for Ctrl-C")?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    })
}
