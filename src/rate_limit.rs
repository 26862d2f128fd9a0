//! Rate limits with backoff: failed sign-ins and 2-step codes, registrations, password-reset
//! emails and privacy-request attempts, per client address and per account or address.
//!
//! A limit counts events per key in a window; the event that reaches the limit blocks the key
//! for a wait that doubles with each later block (up to a maximum), and a blocked key is
//! refused before anything is checked, so a correct password waits too. Counters live in the
//! store, so the limits hold across nodes. Keys are HMACs of the scope and the value under a
//! key derived from the audit key file: the store never sees an address or a login. Keys name
//! what was typed, never whether an account exists, so a refusal reveals nothing about accounts.

use crate::audit::AuditKey;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::{LimitStep, Store};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::sync::Arc;

/// One limit: what it counts, how many it allows, in which window.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    scope: &'static str,
    allowed: i64,
    window_seconds: i64,
}

impl Rule {
    pub fn new(scope: &'static str, allowed: i64, window_seconds: i64) -> Self {
        Self {
            scope,
            allowed: allowed.max(1),
            window_seconds: window_seconds.max(1),
        }
    }
}

/// The limits of this forum, from `[rate_limits]` and `[requests]`.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Failed sign-ins (password or 2-step code) for one login, from any client.
    pub sign_in_login: Rule,
    /// Failed sign-ins, 2-step codes from one client address, for any login.
    pub client_failures: Rule,
    /// Wrong 2-step codes typed by a signed-in member (turning 2-step verification on or off).
    pub two_factor_member: Rule,
    /// Registrations from one client address.
    pub registrations_per_client: Rule,
    /// Password-reset emails asked for one address, and from one client.
    pub resets_per_address: Rule,
    pub resets_per_client: Rule,
    /// Email-change links asked by one member (each mails two addresses); counted with the
    /// reset limits of the new address and of the client.
    pub email_changes_per_member: Rule,
    /// Privacy requests and new codes per subject address, and per client; code entries per
    /// client.
    pub requests_per_address: Rule,
    pub requests_per_client: Rule,
    pub request_codes_per_client: Rule,
}

impl Rules {
    pub fn from_config(config: &Config) -> Self {
        let limits = &config.rate_limits;
        let window = limits.window_minutes * 60;
        let hour = 3600;
        Self {
            sign_in_login: Rule::new("sign-in-login", limits.failures_per_account, window),
            client_failures: Rule::new("client-failures", limits.failures_per_client, window),
            two_factor_member: Rule::new("two-factor-member", limits.failures_per_account, window),
            registrations_per_client: Rule::new(
                "registration-client",
                limits.registrations_per_client_per_hour,
                hour,
            ),
            resets_per_address: Rule::new(
                "reset-address",
                limits.resets_per_address_per_hour,
                hour,
            ),
            resets_per_client: Rule::new("reset-client", limits.resets_per_client_per_hour, hour),
            email_changes_per_member: Rule::new(
                "email-change-member",
                limits.resets_per_address_per_hour,
                hour,
            ),
            requests_per_address: Rule::new(
                "request-address",
                config.requests.per_address_per_hour,
                hour,
            ),
            requests_per_client: Rule::new("request-client", config.requests.per_ip_per_hour, hour),
            request_codes_per_client: Rule::new(
                "request-code-client",
                config.requests.per_ip_per_hour,
                hour,
            ),
        }
    }
}

/// The limiter: cheap to clone, the same on every node that shares the store and key file.
#[derive(Clone)]
pub struct RateLimits {
    store: Store,
    key: Arc<zeroize::Zeroizing<Vec<u8>>>,
    pub rules: Rules,
    first_wait: i64,
    max_wait: i64,
    forget_after: i64,
}

impl RateLimits {
    pub fn new(store: Store, config: &Config, audit: &AuditKey) -> Self {
        let limits = &config.rate_limits;
        Self {
            store,
            key: Arc::new(audit.derive("covenant-rate-limits")),
            rules: Rules::from_config(config),
            first_wait: limits.first_wait_seconds.max(1),
            max_wait: limits
                .max_wait_seconds
                .max(limits.first_wait_seconds.max(1)),
            forget_after: limits.forget_after_hours.max(1) * 3600,
        }
    }

    /// The stored key of `value` under `rule`: an HMAC, so the value cannot be read back or
    /// guessed from a copy of the database.
    fn key_of(&self, rule: &Rule, value: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(rule.scope.as_bytes());
        mac.update(b"\0");
        mac.update(value.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn step(&self, rule: &Rule, trip_at: i64, now: i64) -> LimitStep {
        LimitStep {
            now,
            window_start_after: now - rule.window_seconds,
            trip_at,
            first_wait: self.first_wait,
            max_wait: self.max_wait,
        }
    }

    /// Refuses (with the wait) when any of the keys is blocked; counts nothing.
    pub async fn check(&self, keys: &[(Rule, &str)]) -> Result<()> {
        let now = crate::now();
        let mut until = 0;
        for (rule, value) in keys {
            until = until.max(
                self.store
                    .rate_limit_blocked_until(&self.key_of(rule, value))
                    .await?,
            );
        }
        refuse_until(until, now)
    }

    /// Counts a failure against each key; the failure that reaches a limit blocks its key, and
    /// the next attempt is refused.
    pub async fn failed(&self, keys: &[(Rule, &str)]) -> Result<()> {
        let now = crate::now();
        for (rule, value) in keys {
            self.store
                .rate_limit_count(
                    &self.key_of(rule, value),
                    self.step(rule, rule.allowed, now),
                )
                .await?;
        }
        Ok(())
    }

    /// Counts an attempt that is limited whatever its outcome (a registration, an email sent):
    /// refused when a key is blocked, or when this attempt goes past a limit.
    pub async fn attempt(&self, keys: &[(Rule, &str)]) -> Result<()> {
        self.check(keys).await?;
        let now = crate::now();
        let mut until = 0;
        for (rule, value) in keys {
            until = until.max(
                self.store
                    .rate_limit_count(
                        &self.key_of(rule, value),
                        self.step(rule, rule.allowed + 1, now),
                    )
                    .await?,
            );
        }
        refuse_until(until, now)
    }

    /// Forgets the failures of a key whose owner has just proved who they are.
    pub async fn succeeded(&self, rule: Rule, value: &str) -> Result<()> {
        self.store
            .rate_limit_clear(&self.key_of(&rule, value))
            .await?;
        Ok(())
    }

    /// Deletes counters idle for `forget_after_hours` that block nothing.
    pub async fn purge(&self) -> Result<u64> {
        let now = crate::now();
        Ok(self
            .store
            .purge_rate_limits(now - self.forget_after, now)
            .await?)
    }
}

fn refuse_until(until: i64, now: i64) -> Result<()> {
    if until > now {
        return Err(Error::TooManyRequests {
            retry_after_seconds: until - now,
        });
    }
    Ok(())
}
