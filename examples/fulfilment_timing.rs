//! Times the export and the erasure of a member with 1,000 posts on an existing forum (load it
//! first with `covenant demo-data`). Each run adds a fresh member with `--posts` posts spread
//! over existing topics, some of them mentioned by others, builds their archive, then erases
//! them; it prints each run and the median. A benchmark, not a test: see BENCHMARKS.md.
//!
//! cargo run --release --example fulfilment_timing -- --data-dir DIR [--database-url URL]
//!     [--posts 1000] [--runs 5] [--old]
//!
//! `--old` dates the member's account before every post, so the search for mentions of their
//! name covers every post (the worst case); by default the account is new.

use covenant::accounts::random_token;
use covenant::fulfilment::{ContentChoice, build_archive, erase_subject};
use covenant::store::{self, NewPost, NewUser, Store};
use covenant_core::policy::Jurisdiction;
use std::path::PathBuf;
use std::time::Instant;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let data_dir = PathBuf::from(arg("--data-dir").unwrap_or_else(|| "covenant-data".into()));
    let url = arg("--database-url").unwrap_or_default();
    let n_posts: i64 = arg("--posts").map_or(Ok(1000), |v| v.parse())?;
    let runs: usize = arg("--runs").map_or(Ok(5), |v| v.parse())?;
    let old = std::env::args().any(|a| a == "--old");
    let store = Store::open(&data_dir, &url, 4).await?;
    store.migrate().await?;
    let audit_key = covenant::audit::AuditKey::load_or_create(&data_dir.join("audit.key"))?;
    let store = store.with_keys(&data_dir, "", &audit_key).await?;
    let policy = covenant_core::policy::Policy::default_policy();
    let n_topics = store.count_topics("discussion", None).await?;
    anyhow::ensure!(n_topics > 0, "load demo data first");
    let (mut exports, mut erasures) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let name = format!(
            "timing{}",
            &random_token()[..8].to_lowercase().replace(['-', '_'], "x")
        );
        let now = covenant::now();
        let mut tx = store.begin().await?;
        let email = format!("{name}@example.org");
        let user_id = store::insert_user(
            &store,
            &mut tx,
            &NewUser {
                username: &name,
                username_lower: &name,
                email: &email,
                email_lower: &email,
                password_hash: "!",
                birth_year: 1990,
                created_at: if old { 0 } else { now },
            },
        )
        .await?;
        let topics = store.topics("discussion", None, 200, 0).await?;
        for i in 0..n_posts {
            let topic = &topics[i as usize % topics.len()];
            let body = format!("Post {i} of the timing member, about topic {}.", topic.id);
            store::insert_post(
                &store,
                &mut tx,
                &NewPost {
                    topic_id: topic.id,
                    user_id,
                    body_md: &body,
                    body_html: &covenant::markdown::render(&body),
                    now,
                    ip: "203.0.113.7",
                    user_agent: "TimingBrowser/1.0",
                    held_reason: None,
                },
            )
            .await?;
        }
        tx.commit().await?;

        let started = Instant::now();
        let archive = build_archive(&store, &policy, None, user_id, Jurisdiction::EuEea)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let export_ms = started.elapsed().as_secs_f64() * 1000.0;

        let started = Instant::now();
        erase_subject(
            &store,
            &audit_key,
            &policy,
            &data_dir,
            user_id,
            ContentChoice::KeepAnonymized,
            None,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let erase_ms = started.elapsed().as_secs_f64() * 1000.0;
        println!(
            "run {}: export {export_ms:.1} ms ({} KiB archive), erasure {erase_ms:.1} ms",
            run + 1,
            archive.len() / 1024
        );
        exports.push(export_ms);
        erasures.push(erase_ms);
    }
    println!(
        "median of {runs}: export {:.1} ms, erasure {:.1} ms ({n_posts} posts)",
        median(&mut exports),
        median(&mut erasures)
    );
    store.close().await;
    Ok(())
}
