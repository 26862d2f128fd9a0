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
pub mod pages;
pub mod people;
pub mod privacy;
pub mod requests;
pub mod retention;
pub mod security;
pub mod social;
pub mod staff;
pub mod theme;

use crate::accounts::Accounts;
use crate::config::Config;
use crate::forum::Forum;
use crate::mail::Mailer;
use crate::store::Store;
use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
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
    /// Feedback messages, published only with their sender's agreement.
    pub feedback: crate::feedback::Feedback,
    /// The privacy-request workflow.
    pub requests: crate::requests::Requests,
    /// Export archives and their links, erasure (R7, R8).
    pub fulfilment: crate::fulfilment::Fulfilment,
    /// Social sign-in providers, flows and links.
    pub social: crate::social::Social,
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
        let news = crate::news::News::open(store.clone(), &config).await?;
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
        Ok(Self {
            retention: crate::retention::Retention::new(
                store.clone(),
                audit_key.clone(),
                policy.clone(),
                &config,
            ),
            visits: crate::stats::VisitCounter::new(store.clone()),
            requests: {
                let requests = crate::requests::Requests::new(
                    store.clone(),
                    config.clone(),
                    audit_key.clone(),
                    policy.clone(),
                    consent.clone(),
                );
                if config.requests.fulfil_at_once {
                    requests.with_fulfilment(Arc::new(crate::fulfilment::RequestEngine::new(
                        fulfilment.clone(),
                        policy.clone(),
                        &config.base_url,
                    )))
                } else {
                    requests
                }
            },
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
            mailer: Mailer::new(store.clone(), &config)?,
            form_key: Arc::new(key.into_bytes()),
            policy,
            fulfilment,
            consent,
            news,
            store,
            config,
        })
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

fn api_routes() -> Router<AppState> {
    use api::*;
    Router::new()
        .route("/users", post(register))
        .route("/users/verify-email", post(verify_email))
        .route("/users/{username}", get(profile))
        .route("/session", post(create_session).delete(delete_session))
        .route("/password-reset", post(request_password_reset))
        .route("/password-reset/complete", post(complete_password_reset))
        .route("/me", get(me))
        .route("/me/export", post(fulfilment::api_export))
        .route("/categories", get(categories))
        .route("/categories/{slug}/topics", get(category_topics))
        .route("/topics", post(create_topic))
        .route("/topics/{id}", get(topic))
        .route("/topics/{id}/posts", post(reply))
        .route(
            "/posts/{id}",
            axum::routing::patch(edit_post).delete(delete_post),
        )
        .route("/posts/{id}/hide", post(hide_post))
        .route("/posts/{id}/unhide", post(unhide_post))
        .route("/blog", get(blog).post(create_article))
        .route("/blog/{slug}", get(blog_article))
        .route("/blog/{slug}/comments", post(comment))
        .route("/consent/decision", get(consent::api_decision))
        .route("/consent/choices", post(consent::api_record_choice))
        .route("/consent/receipts", get(consent::api_receipts))
        .route(
            "/consent/written-opt-outs",
            post(consent::api_written_opt_out),
        )
        .route("/policy", get(policy))
        .route("/policy/versions", get(policy_versions))
        .route("/policy/versions/{id}", get(policy_version))
        .route("/policy/diff", get(policy_diff))
        .route("/ropa", get(ropa))
        .route(
            "/privacy-requests",
            post(requests::api_create).get(requests::api_mine),
        )
        .route("/privacy-requests/verify", post(requests::api_verify))
        .route("/privacy-requests/appeal", post(requests::api_appeal))
        .route("/staff/privacy-requests", get(requests::api_queue))
        .route(
            "/staff/privacy-requests/{id}/actions",
            post(requests::api_staff_action),
        )
        .fallback(api::not_found)
}

/// Every route of the forum.
pub fn router(state: AppState) -> Router {
    use pages::*;
    let limit = state.config.max_body_bytes;
    let tls = state.config.served_over_tls();
    let router = Router::new()
        .route("/", get(home))
        .route("/c/{slug}", get(category))
        .route("/t/{slug}/{id}", get(topic))
        .route("/t/{slug}/{id}/reply", post(reply))
        .route("/new-topic", get(new_topic_form).post(new_topic))
        .route("/posts/{id}/edit", get(edit_post_form).post(edit_post))
        .route("/posts/{id}/delete", post(delete_post))
        .route("/posts/{id}/hide", post(hide_post))
        .route("/posts/{id}/unhide", post(unhide_post))
        .route("/blog", get(blog_index))
        .route("/blog/new", get(new_article_form).post(new_article))
        .route("/blog/{slug}", get(blog_article))
        .route("/blog/{slug}/reply", post(blog_comment))
        .route("/u/{username}", get(profile))
        .route("/register", get(register_form).post(register))
        .route(
            "/unsubscribe/{token}",
            get(people::unsubscribe_page).post(people::unsubscribe),
        )
        .route(
            "/account/email",
            get(people::email_preferences).post(people::save_email_preferences),
        )
        .route(
            "/parental-consent/{token}",
            get(people::parental_consent_page).post(people::give_parental_consent),
        )
        .route(
            "/parental-consent-recorded",
            get(people::parental_consent_recorded),
        )
        .route(
            "/feedback",
            get(people::feedback_form).post(people::send_feedback),
        )
        .route("/feedback/published", get(people::published_feedback))
        .route(
            "/auth/{provider}",
            get(social::consent_page).post(social::start),
        )
        .route("/auth/{provider}/callback", get(social::callback))
        .route(
            "/auth/complete/{token}",
            get(social::complete_form).post(social::complete),
        )
        .route("/account/social", get(social::links))
        .route("/account/social/{provider}/unlink", post(social::unlink))
        .route("/staff/feedback", get(people::staff_feedback))
        .route(
            "/staff/feedback/{id}/publish",
            post(people::publish_feedback),
        )
        .route(
            "/verify-email/{token}",
            get(verify_email_form).post(verify_email),
        )
        .route("/sign-in", get(sign_in_form).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route(
            "/password-reset",
            get(password_reset_form).post(password_reset_request),
        )
        .route(
            "/password-reset/{token}",
            get(password_reset_token_form).post(password_reset),
        )
        .route("/privacy", get(privacy::privacy_page))
        .route("/privacy/history", get(privacy::history))
        .route("/privacy/versions/{id}", get(privacy::version_page))
        .route(
            "/privacy/automated-decisions",
            get(privacy::automated_decisions),
        )
        .route("/privacy/acknowledge", post(privacy::acknowledge))
        .route("/staff/ropa", get(privacy::staff_ropa))
        .route("/staff/audit", get(staff::staff_audit))
        .route("/staff/held", get(staff::held_posts))
        .route("/staff/held/{id}/release", post(staff::release_held_post))
        .route("/staff/held/{id}/hide", post(staff::hide_held_post))
        .route(
            "/staff/holds",
            get(retention::staff_holds).post(retention::place_hold),
        )
        .route("/staff/holds/{id}/release", post(retention::release_hold))
        .route(
            "/account/close",
            get(retention::close_form).post(retention::close_account),
        )
        .route("/stats", get(retention::stats_page))
        .route("/account/privacy", get(requests::account_privacy))
        .route("/account/privacy/requests", post(requests::account_request))
        .route(
            "/privacy/requests/new",
            get(requests::new_request_form).post(requests::new_request),
        )
        .route("/privacy/requests/sent", get(requests::request_sent))
        .route(
            "/privacy/requests/verify/{token}",
            get(requests::verify_form).post(requests::verify),
        )
        .route(
            "/privacy/requests/verify/{token}/resend",
            post(requests::resend_code),
        )
        .route(
            "/privacy/requests/status/{token}",
            get(requests::status_page),
        )
        .route(
            "/privacy/requests/status/{token}/appeal",
            post(requests::appeal),
        )
        .route(
            "/privacy/requests/status/{token}/withdraw",
            post(requests::withdraw),
        )
        .route(
            "/privacy/requests/status/{token}/evidence",
            post(requests::upload_evidence).layer(DefaultBodyLimit::max(
                state.config.requests.evidence_max_bytes + 64 * 1024,
            )),
        )
        .route("/staff/requests", get(requests::staff_queue))
        .route(
            "/staff/requests/log",
            get(requests::staff_log_form).post(requests::staff_log),
        )
        .route("/staff/requests/report", get(requests::staff_report))
        .route("/staff/requests/{id}", get(requests::staff_request))
        .route("/staff/requests/{id}/actions", post(requests::staff_action))
        .route(
            "/staff/requests/{id}/evidence/{evidence_id}",
            get(requests::staff_evidence),
        )
        .route("/metrics", get(requests::metrics))
        .route(
            "/account/privacy/export",
            get(fulfilment::export_form).post(fulfilment::export),
        )
        .route("/privacy/export/{token}", get(fulfilment::download))
        .route("/account/security", get(security::checkup))
        .route(
            "/account/security/sessions/revoke",
            post(security::revoke_session),
        )
        .route(
            "/account/security/sessions/revoke-others",
            post(security::revoke_other_sessions),
        )
        .route(
            "/account/security/password",
            post(security::change_password),
        )
        .route("/account/two-factor", get(security::two_factor))
        .route(
            "/account/two-factor/enable",
            post(security::enable_two_factor),
        )
        .route(
            "/account/two-factor/disable",
            post(security::disable_two_factor),
        )
        .route("/consent", post(consent::banner_choice))
        .route("/preferences/theme", post(theme::choose_theme))
        .route(
            "/cookie-settings",
            get(consent::cookie_settings).post(consent::save_cookie_settings),
        )
        .route(
            "/privacy-choices",
            get(consent::privacy_choices).post(consent::save_privacy_choices),
        )
        .route("/.well-known/gpc.json", get(consent::gpc_json))
        .route("/.well-known/security.txt", get(security::security_txt))
        .route("/static/analytics.js", get(consent::analytics_js))
        .route("/static/advertising.js", get(consent::advertising_js))
        .route("/static/style.css", get(stylesheet))
        .route("/healthz", get(healthz))
        .route("/api/openapi.json", get(api::openapi))
        .nest("/api/v1", api_routes())
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            privacy::policy_notice,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            consent::consent_context,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .layer(header_layer(
            "content-security-policy",
            "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ))
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

/// Starts serving on `listener` with the mail worker beside it.
pub async fn start(state: AppState, listener: TcpListener) -> anyhow::Result<RunningServer> {
    let local_addr = listener
        .local_addr()
        .context("reading the listening address")?;
    let (shutdown, watcher) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let mut http_watcher = watcher.clone();
    tasks.spawn(async move {
        let stopping = async move {
            let _ = http_watcher.wait_for(|stop| *stop).await;
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(stopping)
            .await
        {
            tracing::error!(%error, "the HTTP server stopped with an error");
        }
    });
    if state.config.mail.worker {
        tasks.spawn(state.mailer.clone().run(watcher.clone()));
    }
    tasks.spawn(
        state
            .requests
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
            state.config.retention.sweep_batch,
            std::time::Duration::from_secs(state.config.retention.sweep_interval_minutes * 60),
            watcher.clone(),
        ));
    }
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
    let state = AppState::open(config).await?;
    let listener = TcpListener::bind(&bind)
        .await
        .with_context(|| format!("listening on {bind}"))?;
    let server = start(state, listener).await?;
    tracing::info!(address = %server.local_addr, "Covenant is serving");
    println!("Covenant is serving on http://{}", server.local_addr);
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
