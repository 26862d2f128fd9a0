//! The consent check as a page request meets it (issue 4: "the per-request consent decision
//! costs well under one microsecond"): `web::consent::ConsentLayer` in front of a page that
//! reads the request's consent, against the same page without the layer. The layer's part is
//! everything the check does for a returning visitor: finding the session and consent cookies
//! and the GPC header, the node's cached records of the device, the context they give (worked
//! out once per cache entry), the return path and the task-local scope the page reads it from.
//! The core's rules alone are `cargo bench -p covenant-core --bench decide`. A benchmark, not a
//! test: see BENCHMARKS.md.
//!
//! cargo bench --bench consent_check

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use covenant::config::Config;
use covenant::consent::{CookieNotice, new_consent_id};
use covenant::web::AppState;
use covenant::web::consent::{ConsentLayer, current};
use covenant_core::consent::{Choice, ConsentSubject, Method};
use divan::Bencher;
use std::convert::Infallible;
use std::future::Future;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use tower::{Layer, Service};

fn main() {
    divan::main();
}

/// The visitors measured: what their browser sends.
const VISITORS: &[&str] = &[
    "no cookie",
    "granted everything",
    "refused everything",
    "granted everything, GPC",
];

struct Setup {
    state: AppState,
    granted: String,
    refused: String,
    _runtime: tokio::runtime::Runtime,
    _data: tempfile::TempDir,
}

/// A page that reads its request's consent, as every page's layout does.
async fn page(_request: Request) -> Result<Response, Infallible> {
    let consent = current();
    divan::black_box(&consent);
    Ok(Response::new(Body::empty()))
}

fn request(cookie: Option<&str>, gpc: bool) -> Request {
    let mut request = Request::get("/t/a-topic/1");
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    if gpc {
        request = request.header("sec-gpc", "1");
    }
    request.body(Body::empty()).expect("a valid request")
}

impl Setup {
    fn get() -> &'static Setup {
        static SETUP: OnceLock<Setup> = OnceLock::new();
        SETUP.get_or_init(Setup::new)
    }

    fn new() -> Setup {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let data = tempfile::tempdir().expect("a scratch directory");
        let config = Config {
            data_dir: data.path().to_path_buf(),
            ..Config::default()
        };
        let (state, granted, refused) = runtime.block_on(async {
            let state = AppState::open(config).await.expect("the forum opens");
            let in_force = state.policy.current().await.expect("a policy in force");
            let notice = CookieNotice::of(&in_force.policy);
            let mut cookies = Vec::new();
            for choice in [Choice::Granted, Choice::Denied] {
                let device = new_consent_id();
                let choices: Vec<_> = notice
                    .optional_categories()
                    .map(|category| (category, choice))
                    .collect();
                state
                    .consent
                    .record_choices(
                        &[ConsentSubject::Device(device.clone())],
                        &choices,
                        Method::Banner,
                        &notice.stamp,
                        covenant::now(),
                    )
                    .await
                    .expect("choices recorded");
                cookies.push(format!("covenant_consent={device}"));
            }
            let refused = cookies.pop().expect("two cookies");
            let granted = cookies.pop().expect("two cookies");
            // The first page with GPC records it (the full path, with a write).
            let mut checked = ConsentLayer::new(state.clone()).layer(tower::service_fn(page));
            checked
                .call(request(Some(&granted), true))
                .await
                .expect("the page");
            (state, granted, refused)
        });
        // A subject just written is read from the store, not kept: wait for a returning
        // visitor, as on a live forum.
        std::thread::sleep(covenant::consent::WRITE_WINDOW + std::time::Duration::from_millis(200));
        Setup {
            state,
            granted,
            refused,
            _runtime: runtime,
            _data: data,
        }
    }

    fn visitor(&self, name: &str) -> (Option<&str>, bool) {
        match name {
            "no cookie" => (None, false),
            "granted everything" => (Some(&self.granted), false),
            "refused everything" => (Some(&self.refused), false),
            "granted everything, GPC" => (Some(&self.granted), true),
            _ => unreachable!("a visitor of VISITORS"),
        }
    }
}

/// Polls a request's future once: a page decided in memory is ready at once, so anything else
/// means the benchmark is not measuring what it says.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the page waited: this visitor was not decided in memory"),
    }
}

/// The page behind the consent check, for a visitor who has been here before: the first page
/// reads the records into the node's cache, the next works out the context the entry keeps.
fn checked_page(
    setup: &Setup,
    (cookie, gpc): (Option<&str>, bool),
) -> impl Service<Request, Response = Response, Error = Infallible> {
    let mut service = ConsentLayer::new(setup.state.clone()).layer(tower::service_fn(page));
    for _ in 0..2 {
        setup
            ._runtime
            .block_on(service.call(request(cookie, gpc)))
            .expect("the page");
    }
    service
}

/// The page behind the consent check.
#[divan::bench(args = VISITORS)]
fn with_check(bencher: Bencher, visitor: &str) {
    let setup = Setup::get();
    let (cookie, gpc) = setup.visitor(visitor);
    let mut service = checked_page(setup, (cookie, gpc));
    bencher
        .with_inputs(|| request(cookie, gpc))
        .bench_local_values(|request| ready(service.call(request)));
}

/// The same page without it (it reads the context outside any request: nothing optional).
#[divan::bench(args = VISITORS)]
fn without_check(bencher: Bencher, visitor: &str) {
    let setup = Setup::get();
    let (cookie, gpc) = setup.visitor(visitor);
    let mut service = tower::service_fn(page);
    bencher
        .with_inputs(|| request(cookie, gpc))
        .bench_local_values(|request| ready(service.call(request)));
}

/// What a page's work leaves of the caches before the next request of a busy server: a
/// buffer larger than the core's own caches, written over before each timed request.
fn evict_caches() {
    thread_local! {
        static SPILL: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 8 << 20]);
    }
    SPILL.with_borrow_mut(|spill| {
        for (i, byte) in spill.iter_mut().enumerate().step_by(64) {
            *byte = byte.wrapping_add(i as u8);
        }
        divan::black_box(&spill[..]);
    });
}

/// The page behind the check, each request timed alone after the caches were spilled: what the
/// check costs where a page's own work has just run, as in the throughput benchmark.
#[divan::bench(args = VISITORS, sample_size = 1, sample_count = 3000)]
fn with_check_cold(bencher: Bencher, visitor: &str) {
    let setup = Setup::get();
    let (cookie, gpc) = setup.visitor(visitor);
    let mut service = checked_page(setup, (cookie, gpc));
    bencher
        .with_inputs(|| {
            // The request itself is fresh, as one just parsed is.
            evict_caches();
            request(cookie, gpc)
        })
        .bench_local_values(|request| ready(service.call(request)));
}

/// The same page given the context the check decides for this visitor, decided beforehand and
/// scoped as the layer scopes it (`web::consent::scoped`): the throughput benchmark's
/// `without` side, each request timed alone after the caches were spilled.
#[divan::bench(args = VISITORS, sample_size = 1, sample_count = 3000)]
fn decided_cold(bencher: Bencher, visitor: &str) {
    let setup = Setup::get();
    let (cookie, gpc) = setup.visitor(visitor);
    let mut checked = ConsentLayer::new(setup.state.clone()).layer(tower::service_fn(
        |_request: Request| async {
            let mut response = Response::new(Body::empty());
            response.extensions_mut().insert(current().context);
            Ok::<_, Infallible>(response)
        },
    ));
    let response = setup
        ._runtime
        .block_on(checked.call(request(cookie, gpc)))
        .expect("the page");
    let context = response
        .extensions()
        .get::<std::sync::Arc<covenant::consent::ConsentContext>>()
        .expect("the context the check decided")
        .clone();
    let mut service = tower::service_fn(page);
    bencher
        .with_inputs(|| {
            // The request itself is fresh, as one just parsed is.
            evict_caches();
            request(cookie, gpc)
        })
        .bench_local_values(|request| {
            let uri = request.uri().clone();
            ready(covenant::web::consent::scoped(
                context.clone(),
                &uri,
                service.call(request),
            ))
        });
}
