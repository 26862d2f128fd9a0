//! Demo data: a deterministic, realistic community for trying Covenant and for benchmarks.
//!
//! The same plan and seed always give the same forum. Rows are generated in memory in chunks
//! and written with multi-row inserts inside transactions, which is what makes a million posts
//! take seconds rather than hours. Every demo member has the same password (one argon2 hash is
//! computed, not a hundred thousand).

use crate::store::{BulkPost, BulkTopic, BulkUser, Store};
use anyhow::{Context, bail};
use argon2::password_hash::PasswordHasher;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

pub const DEMO_PASSWORD: &str = "demo-password";

pub struct Plan {
    pub users: u64,
    pub topics: u64,
    pub posts: u64,
    pub seed: u64,
}

pub struct Summary {
    pub users: u64,
    pub topics: u64,
    pub posts: u64,
    pub seconds: f64,
}

const CATEGORIES: &[(&str, &str, &str)] = &[
    ("announcements", "Announcements", "News from the team."),
    (
        "help",
        "Help",
        "Ask how to set things up and get them working.",
    ),
    ("ideas", "Ideas", "Suggest features and vote on them."),
    ("showcase", "Showcase", "Show what you built."),
    ("off-topic", "Off topic", "Everything else, kindly."),
];

const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ra", "ten", "vo", "sa", "ne", "ti", "ru", "dan", "el", "for", "gi", "hal",
    "is", "jo", "ki", "lu", "mar", "no", "pe", "qui", "ros", "su", "to", "ul", "ve", "wyn", "xa",
    "yo", "zen",
];

const WORDS: &[&str] = &[
    "sensor",
    "hub",
    "light",
    "switch",
    "scene",
    "automation",
    "firmware",
    "update",
    "battery",
    "pairing",
    "signal",
    "network",
    "router",
    "schedule",
    "temperature",
    "humidity",
    "door",
    "window",
    "camera",
    "motion",
    "button",
    "app",
    "setup",
    "works",
    "stopped",
    "after",
    "again",
    "thanks",
    "tried",
    "reset",
    "the",
    "a",
    "it",
    "when",
    "with",
    "my",
    "now",
    "still",
    "which",
    "should",
    "would",
    "could",
    "every",
    "morning",
    "evening",
    "room",
    "kitchen",
    "garden",
    "bridge",
    "range",
    "latency",
    "log",
];

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/131.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 15) Chrome/130.0 Mobile Safari/537.36",
];

fn sentence(rng: &mut ChaCha8Rng, words: usize) -> String {
    let mut text = String::with_capacity(words * 8);
    for i in 0..words {
        let word = WORDS[rng.random_range(0..WORDS.len())];
        if i == 0 {
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                text.push(first.to_ascii_uppercase());
                text.push_str(chars.as_str());
            }
        } else {
            text.push(' ');
            text.push_str(word);
        }
    }
    text
}

fn body(rng: &mut ChaCha8Rng) -> String {
    let paragraphs = rng.random_range(1..=3);
    let mut text = String::new();
    for p in 0..paragraphs {
        if p > 0 {
            text.push_str("\n\n");
        }
        for s in 0..rng.random_range(1..=3) {
            if s > 0 {
                text.push(' ');
            }
            let n = rng.random_range(5..=14);
            text.push_str(&sentence(rng, n));
            text.push('.');
        }
    }
    text
}

fn username(rng: &mut ChaCha8Rng, index: u64) -> String {
    let mut name = String::new();
    for _ in 0..rng.random_range(2..=3) {
        name.push_str(SYLLABLES[rng.random_range(0..SYLLABLES.len())]);
    }
    format!("{name}{index}")
}

/// Writes the plan's members, topics and posts after whatever the forum already holds.
pub async fn generate(store: &Store, plan: &Plan, progress: bool) -> anyhow::Result<Summary> {
    if plan.topics > 0 && plan.users == 0 {
        bail!("topics need authors: ask for at least one user");
    }
    if plan.posts < plan.topics {
        bail!("every topic needs its first post: ask for at least as many posts as topics");
    }
    let started = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
    let (user_base, topic_base, post_base) = store.max_ids().await?;
    let category_ids = store.ensure_categories(CATEGORIES).await?;
    let password_hash = argon2::Argon2::default()
        .hash_password(DEMO_PASSWORD.as_bytes())
        .map_err(|e| anyhow::anyhow!("hashing the demo password: {e}"))?
        .to_string();
    let bar = if progress {
        let bar = ProgressBar::new(plan.users + plan.topics + plan.posts);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} eta {eta}")
                .context("building the progress bar")?,
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let now = crate::now();
    let span = 2 * 365 * 86_400;
    let start = now - span;

    const CHUNK: usize = 5_000;
    let mut users = Vec::with_capacity(CHUNK);
    for i in 1..=plan.users {
        let name = username(&mut rng, user_base as u64 + i);
        users.push(BulkUser {
            id: user_base + i as i64,
            email: format!("{name}@example.com"),
            username: name,
            password_hash: password_hash.clone(),
            birth_year: rng.random_range(1950..=2008),
            bio: if rng.random_bool(0.3) {
                sentence(&mut rng, 8)
            } else {
                String::new()
            },
            created_at: start + rng.random_range(0..span / 2),
        });
        if users.len() == CHUNK || i == plan.users {
            store.bulk_insert(&users).await?;
            bar.inc(users.len() as u64);
            users.clear();
        }
    }

    // Replies go mostly to a few popular topics, as in real forums.
    let mut n_posts = vec![1i64; plan.topics as usize];
    for _ in plan.topics..plan.posts {
        let pick = if rng.random_bool(0.5) {
            rng.random_range(0..plan.topics.div_ceil(20).max(1))
        } else {
            rng.random_range(0..plan.topics)
        };
        n_posts[pick as usize] += 1;
    }

    let mut topics = Vec::with_capacity(CHUNK);
    let mut posts = Vec::with_capacity(CHUNK);
    let mut post_id = post_base;
    for t in 0..plan.topics {
        let topic_id = topic_base + t as i64 + 1;
        let author = user_base + rng.random_range(1..=plan.users) as i64;
        let created_at = start + (span as u64 * t / plan.topics.max(1)) as i64;
        let count = n_posts[t as usize];
        let words = rng.random_range(3..=9);
        let title = sentence(&mut rng, words);
        let mut at = created_at;
        for number in 1..=count {
            post_id += 1;
            let text = body(&mut rng);
            posts.push(BulkPost {
                id: post_id,
                topic_id,
                user_id: if number == 1 {
                    author
                } else {
                    user_base + rng.random_range(1..=plan.users) as i64
                },
                post_number: number,
                body_html: crate::markdown::render_plain_paragraphs(&text),
                body_md: text,
                created_at: at,
                ip: format!("192.0.2.{}", rng.random_range(1..255)),
                user_agent: USER_AGENTS[rng.random_range(0..USER_AGENTS.len())].to_string(),
            });
            at = (at + rng.random_range(60..86_400)).min(now);
        }
        topics.push(BulkTopic {
            id: topic_id,
            category_id: category_ids[rng.random_range(0..category_ids.len())],
            user_id: author,
            slug: crate::domain::slugify(&title),
            title,
            created_at,
            last_posted_at: posts.last().map(|p| p.created_at).unwrap_or(created_at),
            n_posts: count,
        });
        if topics.len() >= 500 || posts.len() >= CHUNK || t + 1 == plan.topics {
            store.bulk_insert(&topics).await?;
            store.bulk_insert(&posts).await?;
            bar.inc((topics.len() + posts.len()) as u64);
            topics.clear();
            posts.clear();
        }
    }
    store.finish_bulk_load().await?;
    bar.finish_and_clear();
    Ok(Summary {
        users: plan.users,
        topics: plan.topics,
        posts: plan.posts,
        seconds: started.elapsed().as_secs_f64(),
    })
}
