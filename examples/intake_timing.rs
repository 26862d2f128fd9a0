//! Whether the privacy-request intake takes as long for an address the forum knows as for one it
//! does not (issue 5: no account enumeration by timing). Starts a server on a scratch forum,
//! then sends `POST /api/v1/privacy-requests` for known and unknown subject addresses in
//! alternation, each address used once, and prints the latency of each kind (median, p90) and
//! their ratio. The answers are compared too: both must be the same status and text. A
//! benchmark, not a test: see BENCHMARKS.md.
//!
//! cargo run --release --example intake_timing -- [--requests 400]

use covenant::config::Config;
use covenant::store::{self, NewUser};
use std::time::Instant;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = arg("--requests").map_or(Ok(400), |v| v.parse())?;
    let scratch = tempfile::tempdir()?;
    let mut config = Config {
        data_dir: scratch.path().to_path_buf(),
        ..Config::default()
    };
    // One client sends everything: the per-client and per-address limits would stop it.
    config.requests.per_ip_per_hour = 1_000_000;
    config.requests.per_address_per_hour = 1_000_000;
    let state = covenant::web::AppState::open(config).await?;

    // Members whose addresses the requests will name, half of them.
    let now = covenant::now();
    let mut tx = state.store.begin().await?;
    for i in 0..n / 2 {
        let (name, email) = (format!("known{i}"), format!("known{i}@example.org"));
        store::insert_user(
            &state.store,
            &mut tx,
            &NewUser {
                username: &name,
                username_lower: &name,
                email: &email,
                email_lower: &email,
                password_hash: "!",
                birth_year: 1990,
                created_at: now,
            },
        )
        .await?;
    }
    tx.commit().await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = covenant::web::start(state, listener).await?;
    let client = reqwest::Client::new();
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    let mut answers = std::collections::BTreeSet::new();
    for i in 0..n {
        let is_known = i % 2 == 0;
        let email = if is_known {
            format!("known{}@example.org", i / 2)
        } else {
            format!("stranger{}@example.org", i / 2)
        };
        let started = Instant::now();
        let response = client
            .post(format!("{base}/api/v1/privacy-requests"))
            .json(&serde_json::json!({
                "requester_name": "Someone", "requester_email": email, "relationship": "self",
                "country": "US", "state": "CA", "rights": ["know"],
            }))
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        // The answer names no address; the status link differs per request, so compare its
        // shape only.
        let shape: String = text
            .split('"')
            .filter(|part| !part.contains("/privacy/requests/status/"))
            .collect::<Vec<_>>()
            .join("\"");
        answers.insert((status.as_u16(), shape));
        if i >= 20 {
            // The first requests warm the caches and the connection pool.
            if is_known { &mut known } else { &mut unknown }.push(elapsed);
        }
    }
    server.stop().await;
    println!(
        "{} requests of each kind after 10 of each to warm up",
        known.len()
    );
    println!("| subject address | median ms | p90 ms |");
    println!("|---|---|---|");
    for (label, values) in [("known (a member's)", &known), ("unknown", &unknown)] {
        println!(
            "| {label} | {:.2} | {:.2} |",
            percentile(values, 0.5),
            percentile(values, 0.9)
        );
    }
    println!(
        "ratio of medians (known / unknown): {:.3}",
        percentile(&known, 0.5) / percentile(&unknown, 0.5)
    );
    println!(
        "distinct answers (status and text, status link aside): {}",
        answers.len()
    );
    Ok(())
}
