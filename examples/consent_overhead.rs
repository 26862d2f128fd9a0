//! What the per-request consent check costs in throughput (issue 4): serves the same pages twice
//! on loopback, from one process and one database, and loads both alternately with wrk.
//!
//! - `with`: the page handlers behind the real consent middleware
//!   (`web::consent::ConsentLayer`: the device's records read from the store, lapses after a
//!   policy change, the core's decision);
//! - `without`: the same handlers with no middleware, so every page gets the fixed
//!   "necessary only" context (`ConsentContext::default()`, what a page gets outside a request
//!   scope).
//!
//! Nothing here changes the product: the server has no way to turn the check off; this example
//! builds its two small routers from the library's public handlers. The load is a visitor whose
//! browser holds a consent cookie with choices recorded (the check's most expensive case: its
//! records are read on every request, from the store or its per-node cache), one who refused
//! everything (the same reading, none of the work a grant allows), and one without any cookie. A benchmark, not
//! a test: see BENCHMARKS.md.
//!
//! cargo run --release --example consent_overhead -- [--rounds 5] [--duration 5s]
//!     [--connections 16] [--threads 1] [--data-dir DIR] [--database-url URL] [--calibrate]
//!     [--in-process]

use axum::Router;
use axum::routing::get;
use covenant::config::Config;
use covenant::consent::{CookieNotice, new_consent_id};
use covenant::web::{AppState, pages};
use covenant_core::consent::{Choice, ConsentSubject, Method};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// The two pages measured: the topic list and a topic's first page.
fn pages_router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::home))
        .route("/t/{slug}/{id}", get(pages::topic))
}

/// The pages measured, each with the cookie its visitor sends.
fn cases_of<'a>(
    topic_path: &'a str,
    cookie: &'a str,
    refuser_cookie: &'a str,
) -> [(&'static str, &'a str, Option<&'a str>); 4] {
    [
        ("topic list, visitor with choices", "/", Some(cookie)),
        ("topic page, visitor with choices", topic_path, Some(cookie)),
        (
            "topic page, visitor who refused all",
            topic_path,
            Some(refuser_cookie),
        ),
        ("topic list, visitor without cookie", "/", None),
    ]
}

/// Mean time of one request through `router`, called in this task (no network, no client).
async fn time_requests(router: &Router, path: &str, cookie: Option<&str>, n: u32) -> f64 {
    use tower::ServiceExt;
    let started = std::time::Instant::now();
    for _ in 0..n {
        let mut request = axum::http::Request::get(path);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let response = router
            .clone()
            .oneshot(request.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        drop(response);
    }
    started.elapsed().as_secs_f64() * 1e9 / f64::from(n)
}

/// `--in-process`: the check's own cost in nanoseconds, measured without a network: each
/// request is handed to the router in this task, alternately with and without the layer, once
/// over the real pages and once over a handler that writes a fixed text (so the difference is
/// the layer alone), then set against the time of the page it guards.
async fn in_process(
    state: &AppState,
    cases: &[(&str, &str, Option<&str>)],
    rounds: usize,
    calibrate: bool,
) -> anyhow::Result<()> {
    let layer = covenant::web::consent::ConsentLayer::new(state.clone());
    let fixed = || async { axum::response::Html("<p>fixed</p>") };
    let bare = || {
        Router::new()
            .route("/", get(fixed))
            .route("/t/{slug}/{id}", get(fixed))
    };
    // `--calibrate`: no layer on either side, as for the load runs.
    let (bare_with, bare_without): (Router, Router) = if calibrate {
        (bare(), bare())
    } else {
        (bare().layer(layer.clone()), bare())
    };
    let (pages_with, pages_without): (Router, Router) = if calibrate {
        (
            pages_router().with_state(state.clone()),
            pages_router().with_state(state.clone()),
        )
    } else {
        (
            pages_router().layer(layer).with_state(state.clone()),
            pages_router().with_state(state.clone()),
        )
    };
    println!(
        "in process, {rounds} rounds, alternating; load average before: {}",
        load_average()
    );
    println!(
        "| page | page with check (µs) | page without (µs) | ratio | layer alone (ns) | layer / page |"
    );
    println!("|---|---|---|---|---|---|");
    for &(name, path, cookie) in cases {
        let (mut page_ratios, mut page_with, mut page_without, mut layer_ns) =
            (vec![], vec![], vec![], vec![]);
        // Warm both, then alternate which goes first.
        time_requests(&pages_with, path, cookie, 200).await;
        time_requests(&pages_without, path, cookie, 200).await;
        for round in 0..rounds {
            let (a, b) = if round % 2 == 0 {
                let a = time_requests(&pages_with, path, cookie, 2_000).await;
                (a, time_requests(&pages_without, path, cookie, 2_000).await)
            } else {
                let b = time_requests(&pages_without, path, cookie, 2_000).await;
                (time_requests(&pages_with, path, cookie, 2_000).await, b)
            };
            page_with.push(a);
            page_without.push(b);
            page_ratios.push(b / a);
            let (c, d) = if round % 2 == 0 {
                let c = time_requests(&bare_with, path, cookie, 100_000).await;
                (c, time_requests(&bare_without, path, cookie, 100_000).await)
            } else {
                let d = time_requests(&bare_without, path, cookie, 100_000).await;
                (time_requests(&bare_with, path, cookie, 100_000).await, d)
            };
            layer_ns.push(c - d);
        }
        let (a, b, layer) = (median(&page_with), median(&page_without), median(&layer_ns));
        println!(
            "| {name} | {:.1} | {:.1} | {:.3} | {layer:.0} | {:.2} % |",
            a / 1000.0,
            b / 1000.0,
            median(&page_ratios),
            layer / b * 100.0
        );
    }
    println!("load average after: {}", load_average());
    Ok(())
}

async fn serve(router: Router) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(error) = axum::serve(listener, service).await {
            eprintln!("server stopped: {error}");
        }
    });
    Ok(address)
}

/// Runs wrk once and returns its requests per second.
fn wrk(url: &str, cookie: Option<&str>, threads: &str, connections: &str, duration: &str) -> f64 {
    let mut command = Command::new("wrk");
    command.args([
        "-t",
        threads,
        "-c",
        connections,
        "-d",
        duration,
        "--latency",
    ]);
    if let Some(cookie) = cookie {
        command.args(["-H", &format!("Cookie: {cookie}")]);
    }
    let output = command
        .arg(url)
        .output()
        .expect("wrk runs (apt-get install wrk)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        !text.contains("Non-2xx"),
        "wrk saw errors from {url}:\n{text}"
    );
    text.lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{text}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = arg("--rounds").map_or(Ok(5), |v| v.parse())?;
    let duration = arg("--duration").unwrap_or_else(|| "5s".into());
    let connections = arg("--connections").unwrap_or_else(|| "16".into());
    let threads = arg("--threads").unwrap_or_else(|| "1".into());
    let scratch = tempfile::tempdir()?;
    let data_dir = arg("--data-dir").map_or_else(|| scratch.path().to_path_buf(), PathBuf::from);
    let config = Config {
        data_dir,
        database_url: arg("--database-url").unwrap_or_default(),
        // Both sides render every page: the visitors' page cache keys on the consent the check
        // finds, so with it on only the side with the check would be served from memory.
        page_cache: covenant::config::PageCacheConfig {
            seconds: 0,
            ..Default::default()
        },
        ..Config::default()
    };
    let state = AppState::open(config).await?;
    if state.store.count_topics("discussion", None).await? == 0 {
        let plan = covenant::demo::Plan {
            users: 2_000,
            topics: 200,
            posts: 20_000,
            seed: 1,
        };
        covenant::demo::generate(&state.store, &plan, false).await?;
    }
    let topic = state
        .store
        .topics("discussion", None, 1, 0)
        .await?
        .into_iter()
        .next()
        .expect("the demo forum has topics");
    let topic_path = format!("/t/{}/{}", topic.slug, topic.id);

    // A visitor who accepted everything on the banner under the policy in force.
    let device = new_consent_id();
    let in_force = state.policy.current().await?;
    let notice = CookieNotice::of(&in_force.policy);
    let choices: Vec<_> = notice
        .optional_categories()
        .map(|category| (category, Choice::Granted))
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
        .await?;
    let cookie = format!("covenant_consent={device}");
    // And one who refused everything: the check reads the same records, but nothing optional
    // runs, so the pair isolates the check from the work a grant allows (the visit counter).
    let refuser = new_consent_id();
    let refusals: Vec<_> = notice
        .optional_categories()
        .map(|category| (category, Choice::Denied))
        .collect();
    state
        .consent
        .record_choices(
            &[ConsentSubject::Device(refuser.clone())],
            &refusals,
            Method::Banner,
            &notice.stamp,
            covenant::now(),
        )
        .await?;
    let refuser_cookie = format!("covenant_consent={refuser}");
    // A subject just written is read from the store, not kept, for the cache's write window:
    // wait it out, so every round measures a returning visitor, as on a live forum.
    tokio::time::sleep(covenant::consent::WRITE_WINDOW + std::time::Duration::from_millis(200))
        .await;

    // `--calibrate`: both sides without the check, to see what ratio two identical servers
    // measure (the benchmark's own bias and noise).
    let calibrate = std::env::args().any(|a| a == "--calibrate");
    let with = if calibrate {
        serve(pages_router().with_state(state.clone())).await?
    } else {
        serve(
            pages_router()
                .layer(covenant::web::consent::ConsentLayer::new(state.clone()))
                .with_state(state.clone()),
        )
        .await?
    };
    let without = serve(pages_router().with_state(state.clone())).await?;

    if std::env::args().any(|a| a == "--in-process") {
        let cases = cases_of(&topic_path, &cookie, &refuser_cookie);
        return in_process(&state, &cases, rounds, calibrate).await;
    }

    // The check runs on one and not the other: the analytics tag is there only when granted.
    let client = reqwest::Client::new();
    for (address, expected) in [(with, !calibrate), (without, false)] {
        let html = client
            .get(format!("http://{address}/"))
            .header("cookie", &cookie)
            .send()
            .await?
            .text()
            .await?;
        anyhow::ensure!(
            html.contains("/static/analytics.js") == expected,
            "unexpected page from {address}"
        );
    }

    println!(
        "wrk -t{threads} -c{connections} -d{duration}, {rounds} rounds, alternating; load average before: {}",
        load_average()
    );
    let cases = cases_of(&topic_path, &cookie, &refuser_cookie);
    println!("| page | round | with check (req/s) | without (req/s) | ratio |");
    println!("|---|---|---|---|---|");
    let mut summary = Vec::new();
    for &(name, path, cookie) in &cases {
        let (mut with_rates, mut without_rates, mut ratios) = (vec![], vec![], vec![]);
        for round in 0..rounds {
            let url_with = format!("http://{with}{path}");
            let url_without = format!("http://{without}{path}");
            // Alternate which goes first, so a drift in the machine's load favours neither.
            let (a, b) = if round % 2 == 0 {
                let a = wrk(&url_with, cookie, &threads, &connections, &duration);
                let b = wrk(&url_without, cookie, &threads, &connections, &duration);
                (a, b)
            } else {
                let b = wrk(&url_without, cookie, &threads, &connections, &duration);
                let a = wrk(&url_with, cookie, &threads, &connections, &duration);
                (a, b)
            };
            println!(
                "| {name} | {} | {a:.0} | {b:.0} | {:.3} |",
                round + 1,
                a / b
            );
            with_rates.push(a);
            without_rates.push(b);
            ratios.push(a / b);
        }
        summary.push((
            name,
            median(&with_rates),
            median(&without_rates),
            median(&ratios),
            ratios.iter().cloned().fold(f64::INFINITY, f64::min),
            ratios.iter().cloned().fold(0.0, f64::max),
        ));
    }
    println!();
    println!(
        "| page | with check, median req/s | without, median req/s | median ratio | ratio range |"
    );
    println!("|---|---|---|---|---|");
    for (name, a, b, ratio, low, high) in summary {
        println!("| {name} | {a:.0} | {b:.0} | {ratio:.3} | {low:.3} – {high:.3} |");
    }
    println!("load average after: {}", load_average());
    Ok(())
}
