//! What the per-request consent check costs in throughput (issue 4): serves the same pages from
//! three servers on loopback, one process and one database, and loads them in turn with wrk.
//!
//! - `with`: the page handlers behind the real consent layer (`web::consent::ConsentLayer`:
//!   the session and consent cookies, the device's records from the node's cache or the store,
//!   lapses after a policy change, the core's decision);
//! - `without`: the same handlers, each page given the context the check decides for its
//!   visitor, worked out once before the run (`web::consent::scoped`, the layer's own code after
//!   deciding), so both serve the same page (checked byte for byte) and the difference is the
//!   deciding alone;
//! - `twin`: a second `without`, so each run measures what two identical servers differ by.
//!
//! `--default-context` gives the `without` pages the fixed "necessary only" context instead
//! (`ConsentContext::default()`, what a page gets outside a request scope): the benchmark's
//! earlier form, which sets a different page (banner shown, no view counted) against the
//! checked one for every visitor who has chosen.
//!
//! Nothing here changes the product: the server has no way to turn the check off; this example
//! builds its small routers from the library's public handlers. The load is a visitor whose
//! browser holds a consent cookie with every category granted (the page also counts the view),
//! one who refused everything, and one without any cookie. A benchmark, not a test: see
//! BENCHMARKS.md.
//!
//! Each round gives, per server, its requests per second and its CPU per request; the summary
//! sets the check against the two servers without it, and the twin against `without`, as a
//! mean over the rounds with a 95 % confidence interval. `--pin` puts the servers on the first
//! core (one worker thread) and wrk on the second, so that the two never trade cores mid-run.
//!
//! cargo run --release --example consent_overhead -- [--rounds 5] [--duration 5s]
//!     [--connections 16] [--threads 1] [--pin] [--data-dir DIR] [--database-url URL]
//!     [--in-process [--calibrate]] [--default-context] [--serve]

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::get;
use covenant::config::Config;
use covenant::consent::{ConsentContext, ConsentId, RequestSubjects};
use covenant::consent::{CookieNotice, new_consent_id};
use covenant::web::{AppState, pages};
use covenant_core::consent::{Choice, ConsentSubject, Method};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

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

/// The `without` side's stand-in for the check: every page gets `context`, decided before the
/// run, through the code the layer runs once it has decided; boxed like the layer's future.
#[derive(Clone)]
struct Decided<S> {
    context: Arc<ConsentContext>,
    inner: S,
}

impl<S> tower::Service<Request> for Decided<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let uri = request.uri().clone();
        Box::pin(covenant::web::consent::scoped(
            thread_copy(&self.context),
            &uri,
            inner.call(request),
        ))
    }
}

/// This thread's own copy of a context, as the check serves a returning visitor's (so neither
/// side's pages write to a reference count shared between cores).
fn thread_copy(shared: &Arc<ConsentContext>) -> Arc<ConsentContext> {
    thread_local! {
        static COPIES: std::cell::RefCell<std::collections::HashMap<usize, Arc<ConsentContext>>> =
            Default::default();
    }
    COPIES.with_borrow_mut(|copies| {
        copies
            .entry(Arc::as_ptr(shared) as usize)
            .or_insert_with(|| Arc::new(ConsentContext::clone(shared)))
            .clone()
    })
}

/// The pages without the check: with `context` given to every page, or none (the default).
fn without_router(state: &AppState, context: Option<Arc<ConsentContext>>) -> Router {
    match context {
        Some(context) => pages_router()
            .layer(tower::layer::layer_fn(move |inner| Decided {
                context: context.clone(),
                inner,
            }))
            .with_state(state.clone()),
        None => pages_router().with_state(state.clone()),
    }
}

/// What the check decides for a visitor sending `cookie` (no GPC, not signed in).
async fn decided_for(
    state: &AppState,
    cookie: Option<&str>,
) -> anyhow::Result<Arc<ConsentContext>> {
    let device = cookie
        .and_then(|c| c.strip_prefix("covenant_consent="))
        .and_then(ConsentId::parse);
    let subjects = RequestSubjects {
        device,
        account: None,
        gpc: false,
    };
    Ok(Arc::new(
        state
            .consent
            .context(subjects, &state.policy, covenant::now())
            .await?,
    ))
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
    default_context: bool,
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
    let checked = pages_router().layer(layer).with_state(state.clone());
    println!(
        "in process, {rounds} rounds, alternating; load average before: {}",
        load_average()
    );
    println!(
        "| page | page with check (µs) | page without (µs) | ratio | layer alone (ns) | layer / page |"
    );
    println!("|---|---|---|---|---|---|");
    for &(name, path, cookie) in cases {
        let decided = if default_context {
            None
        } else {
            Some(decided_for(state, cookie).await?)
        };
        let pages_without = without_router(state, decided.clone());
        let pages_with = if calibrate {
            without_router(state, decided)
        } else {
            checked.clone()
        };
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

/// CPU time this process has used so far (user and system, every thread it has had), in
/// nanoseconds: the servers' work, since wrk is a process of its own. Linux counts it in
/// clock ticks (100 a second), so a run of a few seconds measures it to a few tenths of a
/// percent.
fn process_cpu_ns() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    // After the command name (in parentheses): state is field 3, utime 14 and stime 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    ticks * 10_000_000
}

/// One wrk run: its requests per second, and the server CPU per request in microseconds.
struct Load {
    rate: f64,
    cpu_us: f64,
}

/// The mean of `samples` and the half-width of its 95 % confidence interval (Student's t):
/// the per-round differences of one run, each round loading the servers back to back.
fn mean_and_interval(samples: &[f64]) -> (f64, f64) {
    // Student's t at 97.5 %, for 1 to 30 degrees of freedom.
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    let n = samples.len();
    let mean = samples.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, f64::NAN);
    }
    let variance = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let t = T.get(n - 2).copied().unwrap_or(1.96);
    (mean, t * (variance / n as f64).sqrt())
}

/// How much `a` is above `b`, in percent of `b`, on a log scale (so that the differences of
/// several rounds average without bias).
fn percent_above(a: f64, b: f64) -> f64 {
    100.0 * (a / b).ln()
}

/// The smallest and largest of `values`.
fn range(values: &[f64]) -> (f64, f64) {
    (
        values.iter().cloned().fold(f64::INFINITY, f64::min),
        values.iter().cloned().fold(0.0, f64::max),
    )
}

/// `--pin`: this process (the servers, every thread they start) on the first core, wrk on
/// the second, so that neither is scheduled onto the other's core mid-run (util-linux
/// `taskset`).
fn pin_servers() -> anyhow::Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", "0", &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "taskset could not pin the servers");
    Ok(())
}

/// Runs wrk once against `url` (on the second core with `pinned`).
fn wrk(
    url: &str,
    cookie: Option<&str>,
    [threads, connections, duration]: [&str; 3],
    pinned: bool,
) -> Load {
    let mut command = if pinned {
        let mut taskset = Command::new("taskset");
        taskset.args(["-c", "1", "wrk"]);
        taskset
    } else {
        Command::new("wrk")
    };
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
    let cpu_before = process_cpu_ns();
    let output = command
        .arg(url)
        .output()
        .expect("wrk runs (apt-get install wrk)");
    let cpu = process_cpu_ns().saturating_sub(cpu_before);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        !text.contains("Non-2xx"),
        "wrk saw errors from {url}:\n{text}"
    );
    let rate: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{text}"));
    let requests: f64 = text
        .lines()
        .find_map(|line| line.trim().split_once(" requests in "))
        .and_then(|(count, _)| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's output:\n{text}"));
    Load {
        rate,
        cpu_us: cpu as f64 / 1000.0 / requests,
    }
}

fn main() -> anyhow::Result<()> {
    let pinned = std::env::args().any(|a| a == "--pin");
    if pinned {
        pin_servers()?;
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    // Pinned, the servers have one core: one worker thread for it.
    if pinned {
        runtime.worker_threads(1);
    }
    runtime.enable_all().build()?.block_on(run(pinned))
}

async fn run(pinned: bool) -> anyhow::Result<()> {
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

    // `--calibrate` (in process only): both sides without the check, to see what ratio two
    // identical routers measure. Under wrk every round measures that itself (the twin below).
    let calibrate = std::env::args().any(|a| a == "--calibrate");
    let default_context = std::env::args().any(|a| a == "--default-context");
    let cases = cases_of(&topic_path, &cookie, &refuser_cookie);
    if std::env::args().any(|a| a == "--in-process") {
        return in_process(&state, &cases, rounds, calibrate, default_context).await;
    }

    // Per page, three servers: the check on one; the context it decides given on the other two
    // (`without` and its twin, whose ratio is what two identical servers measure in the same
    // run: the benchmark's own noise and bias, the band a cost must leave to be measurable).
    let client = reqwest::Client::new();
    let mut servers = Vec::new();
    for &(name, path, cookie) in &cases {
        // Each page its own three servers, none with a history the others lack.
        let checked = serve(
            pages_router()
                .layer(covenant::web::consent::ConsentLayer::new(state.clone()))
                .with_state(state.clone()),
        )
        .await?;
        let decided = if default_context {
            None
        } else {
            Some(decided_for(&state, cookie).await?)
        };
        let without = serve(without_router(&state, decided.clone())).await?;
        let twin = serve(without_router(&state, decided)).await?;
        // What each serves this visitor, set side by side before the load.
        let mut bodies = Vec::new();
        for address in [checked, without, twin] {
            let mut request = client.get(format!("http://{address}{path}"));
            if let Some(cookie) = cookie {
                request = request.header("cookie", cookie);
            }
            bodies.push(request.send().await?.text().await?);
        }
        let same = bodies[0] == bodies[1];
        println!(
            "{name}: {} bytes with the check, {} without, {}",
            bodies[0].len(),
            bodies[1].len(),
            if same {
                "the same page"
            } else {
                "different pages"
            }
        );
        anyhow::ensure!(
            bodies[1] == bodies[2],
            "{name}: the twins serve different pages"
        );
        anyhow::ensure!(
            same || default_context,
            "{name}: the page without the check is not the page the check serves"
        );
        servers.push([checked, without, twin]);
    }

    // `--serve`: only serve, for a profiler or a load of one's own.
    if std::env::args().any(|a| a == "--serve") {
        for (&(name, path, cookie), [with, without, twin]) in cases.iter().zip(&servers) {
            println!(
                "{name}: with http://{with}{path} without http://{without}{path} twin http://{twin}{path} cookie {cookie:?}"
            );
        }
        std::future::pending::<()>().await;
    }

    println!(
        "wrk -t{threads} -c{connections} -d{duration}, {rounds} rounds, order rotated{}; load average before: {}",
        if pinned {
            ", servers on core 0 (one worker thread), wrk on core 1"
        } else {
            ""
        },
        load_average()
    );
    let wrk_args = [threads.as_str(), connections.as_str(), duration.as_str()];
    println!(
        "| page | round | with check (req/s) | without (req/s) | twin (req/s) | with / without | twin / without | server CPU per request, µs: with / without / twin |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut summary = Vec::new();
    let mut statistics = Vec::new();
    for (&(name, path, cookie), addresses) in cases.iter().zip(&servers) {
        let mut rates: [Vec<f64>; 3] = Default::default();
        let mut cpu: [Vec<f64>; 3] = Default::default();
        let (mut ratios, mut twin_ratios, mut cpu_ratios, mut twin_cpu_ratios) =
            (vec![], vec![], vec![], vec![]);
        // Per round, in percent: the check against both servers without it (their geometric
        // mean), and the twin against `without`, for throughput and for CPU per request.
        let mut differences: [Vec<f64>; 4] = Default::default();
        for round in 0..rounds {
            // Rotate which goes first, so a drift in the machine's load favours none.
            let mut load: [Option<Load>; 3] = [None, None, None];
            for k in 0..3 {
                let which = (round + k) % 3;
                let url = format!("http://{}{path}", addresses[which]);
                load[which] = Some(wrk(&url, cookie, wrk_args, pinned));
            }
            let load = load.map(|one| one.expect("each server loaded"));
            let [a, b, c] = [load[0].rate, load[1].rate, load[2].rate];
            let [x, y, z] = [load[0].cpu_us, load[1].cpu_us, load[2].cpu_us];
            println!(
                "| {name} | {} | {a:.0} | {b:.0} | {c:.0} | {:.3} | {:.3} | {x:.1} / {y:.1} / {z:.1} |",
                round + 1,
                a / b,
                c / b
            );
            for (kept, value) in rates.iter_mut().zip([a, b, c]) {
                kept.push(value);
            }
            for (kept, value) in cpu.iter_mut().zip([x, y, z]) {
                kept.push(value);
            }
            ratios.push(a / b);
            twin_ratios.push(c / b);
            cpu_ratios.push(x / y);
            twin_cpu_ratios.push(z / y);
            for (kept, value) in differences.iter_mut().zip([
                percent_above(a, (b * c).sqrt()),
                percent_above(c, b),
                percent_above(x, (y * z).sqrt()),
                percent_above(z, y),
            ]) {
                kept.push(value);
            }
        }
        statistics.push((name, differences.map(|d| mean_and_interval(&d))));
        summary.push((
            name,
            [median(&rates[0]), median(&rates[1])],
            [median(&ratios), median(&twin_ratios)],
            [range(&ratios), range(&twin_ratios)],
            [median(&cpu[0]), median(&cpu[1])],
            [median(&cpu_ratios), median(&twin_cpu_ratios)],
        ));
    }
    println!();
    println!(
        "| page | with check / without, median req/s | with / without: median (range) | twin / without: median (range) | server CPU per request, µs: with / without | CPU with / without, twin / without |"
    );
    println!("|---|---|---|---|---|---|");
    for (
        name,
        [a, b],
        [ratio, twin],
        [(low, high), (twin_low, twin_high)],
        [x, y],
        [cpu, twin_cpu],
    ) in summary
    {
        println!(
            "| {name} | {a:.0} / {b:.0} | {ratio:.3} ({low:.3} – {high:.3}) | {twin:.3} ({twin_low:.3} – {twin_high:.3}) | {x:.1} / {y:.1} | {cpu:.3}, {twin_cpu:.3} |"
        );
    }
    println!();
    println!(
        "Mean difference over the rounds, in percent, with its 95 % confidence interval: the check against the two servers without it, and the twin against `without` (what identical servers differ by). A cost is measurable when its interval lies wholly below 0 (throughput) or above 0 (CPU)."
    );
    println!(
        "| page | throughput: with check vs without | twin vs without | CPU per request: with check vs without | twin vs without | the check's cost |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, [rate, twin_rate, cpu, twin_cpu]) in statistics {
        let shown = |(mean, half): (f64, f64)| format!("{mean:+.2} ± {half:.2}");
        // A cost is fewer requests per second or more CPU per request: only an interval wholly
        // on that side measures one (an interval wholly on the other is noise, as the twins
        // show: the check cannot make a page cheaper).
        let fewer = |(mean, half): (f64, f64)| mean + half < 0.0;
        let more = |(mean, half): (f64, f64)| mean - half > 0.0;
        let verdict = match (fewer(rate), more(cpu)) {
            (false, false) => "no measurable cost",
            (true, false) => "a cost measurable in throughput",
            (false, true) => "a cost measurable in CPU",
            (true, true) => "a measurable cost",
        };
        println!(
            "| {name} | {} | {} | {} | {} | {verdict} |",
            shown(rate),
            shown(twin_rate),
            shown(cpu),
            shown(twin_cpu)
        );
    }
    println!("load average after: {}", load_average());
    Ok(())
}
