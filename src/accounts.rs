//! Accounts: registration, email verification, sign-in and out, password reset.
//!
//! Passwords are hashed with argon2id at the configured cost. Session and email tokens are
//! random 256-bit values; only their SHA-256 digests are stored, so a copy of the database
//! cannot be used to sign in. Answers never reveal whether an address has an account.

use crate::config::{Argon2Config, Config};
use crate::domain::{BirthYear, EmailAddress, Password, Username};
use crate::error::{Error, Result};
use crate::mail::Mail;
use crate::store::{self, NewSession, NewUser, Store};
use anyhow::Context;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngExt;
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub const VERIFY_EMAIL: &str = "verify_email";
pub const RESET_PASSWORD: &str = "reset_password";
const VERIFY_EMAIL_HOURS: i64 = 48;
const RESET_PASSWORD_HOURS: i64 = 1;

/// Hashes and checks passwords at the configured argon2id cost.
#[derive(Clone)]
pub struct PasswordHasherConfig {
    params: Params,
    /// A hash of a random password, checked when no account matches so that a wrong username
    /// costs the same time as a wrong password.
    decoy: Arc<String>,
}

impl PasswordHasherConfig {
    pub fn new(config: &Argon2Config) -> anyhow::Result<Self> {
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .map_err(|e| anyhow::anyhow!("invalid argon2 settings: {e}"))?;
        let mut hasher = Self {
            params,
            decoy: Arc::new(String::new()),
        };
        hasher.decoy = Arc::new(hasher.hash_now(&random_token())?);
        Ok(hasher)
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    fn hash_now(&self, password: &str) -> anyhow::Result<String> {
        self.argon2()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
    }

    /// Hashes off the async threads: argon2 is deliberately slow.
    pub async fn hash(&self, password: &Password) -> anyhow::Result<String> {
        let hasher = self.clone();
        let password = password.expose().to_string();
        tokio::task::spawn_blocking(move || hasher.hash_now(&password))
            .await
            .context("the password hashing task failed")?
    }

    /// Checks a password against a stored hash, or against the decoy when there is none.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> bool {
        let found = stored.is_some();
        let stored = stored.unwrap_or(&self.decoy).to_string();
        let password = password.to_string();
        let hasher = self.clone();
        let matches = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&stored)
                .map(|hash| {
                    hasher
                        .argon2()
                        .verify_password(password.as_bytes(), &hash)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        found && matches
    }
}

/// A fresh random token, URL-safe.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored in place of a token.
pub fn token_digest(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a request came from, recorded with sign-ins and posts as the policy says.
#[derive(Clone, Debug)]
pub struct Origin {
    pub ip: crate::secret::Redacted<String>,
    pub user_agent: crate::secret::Redacted<String>,
}

impl Origin {
    pub fn new(ip: impl Into<String>, user_agent: impl Into<String>) -> Self {
        let mut user_agent: String = user_agent.into();
        user_agent.truncate(user_agent.floor_char_boundary(512));
        Self {
            ip: crate::secret::Redacted::new(ip.into()),
            user_agent: crate::secret::Redacted::new(user_agent),
        }
    }
}

pub struct Registration<'a> {
    pub username: &'a str,
    pub email: &'a str,
    pub password: &'a str,
    pub birth_year: &'a str,
}

/// A signed-in session as handed to the client.
pub struct NewSessionToken {
    pub token: String,
    pub csrf_token: String,
    pub user_id: i64,
    pub max_age_seconds: i64,
}

/// The account services, over the store and the configuration.
#[derive(Clone)]
pub struct Accounts {
    store: Store,
    config: Arc<Config>,
    hasher: PasswordHasherConfig,
}

impl Accounts {
    pub fn new(store: Store, config: Arc<Config>) -> anyhow::Result<Self> {
        let hasher = PasswordHasherConfig::new(&config.argon2)?;
        Ok(Self {
            store,
            config,
            hasher,
        })
    }

    /// Creates an account and queues the verification email, in one transaction.
    pub async fn register(&self, form: &Registration<'_>) -> Result<i64> {
        let now = crate::now();
        let current_year = time::OffsetDateTime::now_utc().year() as i64;
        let mut invalid = Vec::new();
        let username = Username::parse(form.username)
            .map_err(|e| invalid.push(e))
            .ok();
        let email = EmailAddress::parse(form.email)
            .map_err(|e| invalid.push(e))
            .ok();
        let password = Password::parse(form.password)
            .map_err(|e| invalid.push(e))
            .ok();
        let birth_year = BirthYear::parse(form.birth_year, current_year)
            .map_err(|e| invalid.push(e))
            .ok();
        let (Some(username), Some(email), Some(password), Some(birth_year)) =
            (username, email, password, birth_year)
        else {
            return Err(Error::Invalid(invalid));
        };
        let password_hash = self.hasher.hash(&password).await?;
        let mut tx = self.store.begin().await?;
        let user_id = store::insert_user(
            &mut tx,
            &NewUser {
                username: username.as_str(),
                username_lower: &username.canonical(),
                email: email.as_str(),
                email_lower: &email.canonical(),
                password_hash: &password_hash,
                birth_year: birth_year.get(),
                created_at: now,
            },
        )
        .await?;
        let token = random_token();
        store::insert_account_token(
            &mut tx,
            &token_digest(&token),
            user_id,
            VERIFY_EMAIL,
            now,
            now + VERIFY_EMAIL_HOURS * 3600,
        )
        .await?;
        let link = format!("{}/verify-email/{token}", self.config.base_url());
        Mail::verify_email(&self.config.site_name, username.as_str(), &link)
            .enqueue(
                &mut tx,
                &format!("verify-email:{user_id}:{}", &token_digest(&token)[..16]),
                email.as_str(),
                Some(user_id),
                now,
            )
            .await?;
        tx.commit().await.context("committing a registration")?;
        tracing::info!(user_id, "account registered");
        Ok(user_id)
    }

    /// Confirms the address behind a verification link.
    pub async fn verify_email(&self, token: &str) -> Result<i64> {
        let now = crate::now();
        let mut tx = self.store.begin().await?;
        let user_id =
            store::consume_account_token(&mut tx, &token_digest(token), VERIFY_EMAIL, now)
                .await?
                .ok_or(Error::InvalidToken)?;
        store::mark_email_verified(&mut tx, user_id, now).await?;
        tx.commit()
            .await
            .context("committing an email verification")?;
        tracing::info!(user_id, "email address verified");
        Ok(user_id)
    }

    /// Checks credentials (username or email) and opens a session.
    pub async fn sign_in(
        &self,
        login: &str,
        password: &str,
        origin: &Origin,
    ) -> Result<NewSessionToken> {
        let login = login.trim();
        let user = if login.contains('@') {
            self.store.user_by_email(&login.to_lowercase()).await?
        } else {
            self.store
                .user_by_username(&login.to_ascii_lowercase())
                .await?
        };
        let stored = user.as_ref().map(|u| u.password_hash.as_str());
        if !self.hasher.verify(password, stored).await {
            tracing::info!("sign-in refused");
            return Err(Error::BadCredentials);
        }
        let user = user.ok_or(Error::BadCredentials)?;
        let now = crate::now();
        let max_age_seconds = self.config.session.max_age_days * 86_400;
        let token = random_token();
        let csrf_token = random_token();
        let mut tx = self.store.begin().await?;
        store::insert_session(
            &mut tx,
            &NewSession {
                token_hash: &token_digest(&token),
                user_id: user.id,
                csrf_token: &csrf_token,
                now,
                expires_at: now + max_age_seconds,
                ip: origin.ip.expose(),
                user_agent: origin.user_agent.expose(),
            },
        )
        .await?;
        tx.commit().await.context("committing a sign-in")?;
        tracing::info!(user_id = user.id, "signed in");
        Ok(NewSessionToken {
            token,
            csrf_token,
            user_id: user.id,
            max_age_seconds,
        })
    }

    pub async fn sign_out(&self, token: &str) -> Result<()> {
        self.store.delete_session(&token_digest(token)).await?;
        Ok(())
    }

    /// Sends a reset link if the address has an account; says nothing either way.
    pub async fn request_password_reset(&self, email: &str) -> Result<()> {
        let email = EmailAddress::parse(email)?;
        let Some(user) = self.store.user_by_email(&email.canonical()).await? else {
            tracing::info!("password reset asked for an address with no account");
            return Ok(());
        };
        let now = crate::now();
        let token = random_token();
        let digest = token_digest(&token);
        let mut tx = self.store.begin().await?;
        store::insert_account_token(
            &mut tx,
            &digest,
            user.id,
            RESET_PASSWORD,
            now,
            now + RESET_PASSWORD_HOURS * 3600,
        )
        .await?;
        let link = format!("{}/password-reset/{token}", self.config.base_url());
        Mail::password_reset(&self.config.site_name, &user.username, &link)
            .enqueue(
                &mut tx,
                &format!("reset:{}:{}", user.id, &digest[..16]),
                &user.email,
                Some(user.id),
                now,
            )
            .await?;
        tx.commit()
            .await
            .context("committing a password reset request")?;
        tracing::info!(user_id = user.id, "password reset link queued");
        Ok(())
    }

    /// Sets a new password from a reset link and ends every session of the account.
    pub async fn reset_password(&self, token: &str, new_password: &str) -> Result<i64> {
        let password = Password::parse(new_password)?;
        let hash = self.hasher.hash(&password).await?;
        let now = crate::now();
        let mut tx = self.store.begin().await?;
        let user_id =
            store::consume_account_token(&mut tx, &token_digest(token), RESET_PASSWORD, now)
                .await?
                .ok_or(Error::InvalidToken)?;
        store::set_password_hash(&mut tx, user_id, &hash).await?;
        // Following the link proves the address, as verification would.
        store::mark_email_verified(&mut tx, user_id, now).await?;
        store::delete_sessions_of_user(&mut tx, user_id).await?;
        tx.commit().await.context("committing a password reset")?;
        tracing::info!(user_id, "password reset");
        Ok(user_id)
    }

    pub async fn reset_token_is_valid(&self, token: &str) -> Result<bool> {
        Ok(self
            .store
            .account_token_is_valid(&token_digest(token), RESET_PASSWORD, crate::now())
            .await?)
    }
}
