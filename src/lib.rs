//! Covenant: a community forum server whose privacy policy is executable.
//!
//! The library holds the whole program so that tests start the real application on port 0.
//! Layers, from the edge inwards: `cli` and `web` (the only code that knows about the command
//! line and HTTP), `accounts`, `forum` and `mail` (what the forum does), `store` (the only code that
//! speaks SQL), and the pure `covenant_core` crate (the policy and the decisions taken from it).

pub mod accounts;
pub mod audit;
pub mod cli;
pub mod config;
pub mod consent;
pub mod demo;
pub mod digest;
pub mod disclosures;
pub mod domain;
pub mod error;
pub mod feedback;
pub mod forum;
pub mod fulfilment;
pub mod inventory;
pub mod mail;
pub mod markdown;
pub mod news;
pub mod policy;
pub mod purpose;
pub mod rate_limit;
pub mod requests;
pub mod retention;
pub mod sealing;
pub mod secret;
pub mod social;
pub mod spam;
pub mod stats;
pub mod store;
pub mod two_factor;
pub mod web;

pub use config::Config;
pub use store::Store;

/// Seconds since the Unix epoch: the one clock every stored time is written in.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
