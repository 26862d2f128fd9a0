//! Accounts: registration, email verification, sign-in and out, password reset.
//!
//! Passwords are hashed with argon2id at the configured cost. Session and email tokens are
//! random 256-bit values; only their SHA-256 digests are stored, so a copy of the database
//! cannot be used to sign in. Answers never reveal whether an address has an account.

use crate::audit::{self, AuditKey, AuditKind, Detail, Event};
use crate::config::{Argon2Config, Config};
use crate::domain::{BirthYear, EmailAddress, InvalidField, MINIMUM_AGE, Password, Username};
use crate::error::{Error, Result};
use crate::mail::Mail;
use crate::store::{self, NewSession, NewUser, Store};
use crate::two_factor;
use anyhow::Context;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use covenant_core::age::{
    AgeVerdict, Birth, Residence, ResidenceError, age_verdict, parse_birth_date,
};
use covenant_core::policy::Policy;
use rand::RngExt;
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub const VERIFY_EMAIL: &str = "verify_email";
pub const RESET_PASSWORD: &str = "reset_password";
const VERIFY_EMAIL_HOURS: i64 = 48;
const RESET_PASSWORD_HOURS: i64 = 1;
pub const CHANGE_EMAIL: &str = "change_email";
/// How long the link confirming a new address stays valid.
pub const CHANGE_EMAIL_HOURS: i64 = 24;

/// Hashes and checks passwords at the configured argon2id cost.
#[derive(Clone)]
pub struct PasswordHasherConfig {
    params: Params,
    /// A hash of a random password, checked when no account matches so that a wrong username
    /// costs the same time as a wrong password.
    decoy: Arc<String>,
    /// At most one hash per core at a time: each takes `memory_kib` of memory, and a burst of
    /// sign-ins would otherwise run dozens at once on the blocking pool (measured: 4 GB peak
    /// RSS under 32 concurrent sign-ins) without finishing any sooner.
    slots: Arc<tokio::sync::Semaphore>,
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
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut hasher = Self {
            params,
            decoy: Arc::new(String::new()),
            slots: Arc::new(tokio::sync::Semaphore::new(cores)),
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
        let _slot = self
            .slots
            .acquire()
            .await
            .context("the password hasher closed")?;
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
        let Ok(_slot) = self.slots.acquire().await else {
            return false;
        };
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
    /// ISO 3166-1 alpha-2 country code of residence.
    pub country: &'a str,
    /// Two-letter state code, for residents of the US.
    pub us_state: &'a str,
    /// `YYYY-MM-DD`, asked only when the year alone cannot decide the age rules; never kept.
    pub birth_date: &'a str,
    /// A parent's address, asked when the jurisdiction needs a parent's consent.
    pub parent_email: &'a str,
    /// The member ticked the (never pre-ticked) product-news box.
    pub news: bool,
    /// The client's address, counted by the per-client registration limit; never stored.
    pub client_ip: &'a str,
}

/// What a registration led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    pub user_id: i64,
    /// The account waits for a parent's consent before it can post.
    pub awaiting_parent: bool,
}

/// The text a parent is shown before consenting; its hash is kept with the consent.
pub fn parent_consent_text(site: &str, username: &str) -> String {
    format!(
        "You are asked, as a parent or guardian, to let your child use the account \"{username}\" \
         on {site}. With your consent the account can post in public discussions under its \
         username. We keep the account's email address, birth year, country, posts, and the \
         address and browser of each sign-in and post, as our privacy policy describes; we never \
         sell or share a minor's data for advertising. You can withdraw your consent and have \
         the account and its data deleted at any time through the privacy page."
    )
}

/// The line a parent ticks to also allow product-news email for the child.
pub const PARENT_NEWS_TEXT: &str = "Also allow occasional product-news email to my child.";

const PARENT_CONSENT_DAYS: i64 = 7;

/// What the member needs to add the account to an authenticator app.
pub struct TwoFactorSetup {
    pub secret: String,
    pub uri: String,
    /// The URI as an inline SVG QR code.
    pub qr_svg: Option<String>,
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
    audit: AuditKey,
    seal: two_factor::SecretSeal,
    limits: crate::rate_limit::RateLimits,
}

/// The public handle of a session: a prefix of its token's digest, enough to name it on the
/// security page and in the audit log, useless for signing in.
pub fn session_handle(token_hash: &str) -> String {
    token_hash.chars().take(16).collect()
}

impl Accounts {
    pub fn new(store: Store, config: Arc<Config>, audit: AuditKey) -> anyhow::Result<Self> {
        let hasher = PasswordHasherConfig::new(&config.argon2)?;
        Ok(Self {
            limits: crate::rate_limit::RateLimits::new(store.clone(), &config, &audit),
            seal: two_factor::SecretSeal::new(&audit),
            store,
            config,
            hasher,
            audit,
        })
    }

    /// Seals every 2-step secret still stored plain (from before secrets were sealed); run at
    /// start, before anything is served. Returns how many this node sealed.
    pub async fn seal_plain_two_factor_secrets(&self) -> anyhow::Result<usize> {
        let mut sealed = 0;
        for (user_id, plain) in self.store.plain_two_factor_secrets().await? {
            let sealed_secret = self.seal.seal(user_id, &plain);
            if self
                .store
                .seal_two_factor_secret(user_id, &plain, &sealed_secret)
                .await?
            {
                sealed += 1;
            }
        }
        if sealed > 0 {
            tracing::info!(sealed, "sealed plain 2-step verification secrets");
        }
        Ok(sealed)
    }

    /// The rate limits the account services apply (the purge job uses them too).
    pub fn limits(&self) -> &crate::rate_limit::RateLimits {
        &self.limits
    }

    /// Creates an account and queues the verification email, in one transaction. The age rules
    /// of the jurisdiction where the person lives decide first: someone below the minimum age
    /// is refused before anything is parsed further, and nothing they typed is kept or logged.
    pub async fn register(&self, form: &Registration<'_>, policy: &Policy) -> Result<Registered> {
        self.create_account(form, policy, None).await
    }

    /// Creates an account from a provider account waiting for registration (social sign-in)
    /// and signs it in: the same age rules and fields, no password, the link recorded as the
    /// data's source, and the address verified when the provider vouched for this very address.
    pub async fn register_social(
        &self,
        form: &Registration<'_>,
        policy: &Policy,
        pending_token: &str,
        origin: &Origin,
    ) -> Result<(Registered, NewSessionToken)> {
        let pending = self
            .store
            .social_pending(&token_digest(pending_token), crate::now())
            .await?
            .ok_or(Error::InvalidToken)?;
        let registered = self
            .create_account(form, policy, Some((pending_token, &pending)))
            .await?;
        let user = self
            .store
            .user_by_id(registered.user_id)
            .await?
            .context("an account vanished right after it was created")?;
        let mut tx = self.store.begin().await?;
        let session = self
            .open_session_in(
                &mut tx,
                &user,
                origin,
                "social",
                random_token(),
                random_token(),
                crate::now(),
            )
            .await?;
        tx.commit().await.context("committing a social sign-in")?;
        Ok((registered, session))
    }

    async fn create_account(
        &self,
        form: &Registration<'_>,
        policy: &Policy,
        social: Option<(&str, &store::SocialPendingRow)>,
    ) -> Result<Registered> {
        let now = crate::now();
        let today = time::OffsetDateTime::now_utc().date();
        let current_year = i64::from(today.year());
        if let Ok(year) = form.birth_year.trim().parse::<i64>()
            && year <= current_year
            && current_year - year < MINIMUM_AGE
        {
            tracing::info!("registration refused: below the minimum age");
            return Err(Error::BelowMinimumAge {
                minimum_age: MINIMUM_AGE as u8,
            });
        }
        // Counted only past the age gate: a refused minor leaves nothing behind, not even a
        // counter.
        if social.is_none() {
            self.limits
                .attempt(&[(self.limits.rules.registrations_per_client, form.client_ip)])
                .await?;
        }
        let mut invalid = Vec::new();
        let username = Username::parse(form.username)
            .map_err(|e| invalid.push(e))
            .ok();
        let email = EmailAddress::parse(form.email)
            .map_err(|e| invalid.push(e))
            .ok();
        // A social account has no password: it signs in through its provider.
        let password = match social {
            Some(_) => None,
            None => Password::parse(form.password, &[form.username, form.email])
                .map_err(|e| invalid.push(e))
                .ok(),
        };
        let birth_year = BirthYear::parse(form.birth_year, current_year)
            .map_err(|e| invalid.push(e))
            .ok();
        let us_state = Some(form.us_state).filter(|s| !s.trim().is_empty());
        let residence = Residence::new(form.country, us_state)
            .map_err(|e| {
                let field = match e {
                    ResidenceError::NoCountry => "country",
                    ResidenceError::NoUsState => "us_state",
                };
                invalid.push(InvalidField::new(field, e.to_string()));
            })
            .ok();
        let birth_date = match form.birth_date.trim() {
            "" => None,
            text => match parse_birth_date(text) {
                Some(date) => Some(date),
                None => {
                    invalid.push(InvalidField::new(
                        "birth_date",
                        "must be a date such as 2010-04-30",
                    ));
                    None
                }
            },
        };
        let (Some(username), Some(email), Some(birth_year), Some(residence)) =
            (username, email, birth_year, residence)
        else {
            return Err(Error::Invalid(invalid));
        };
        if !invalid.is_empty() {
            return Err(Error::Invalid(invalid));
        }
        if let Some(date) = birth_date
            && i64::from(date.year()) != birth_year.get()
        {
            return Err(Error::invalid(InvalidField::new(
                "birth_date",
                "must be in the birth year given",
            )));
        }
        let jurisdiction = residence.jurisdiction();
        let birth = Birth {
            year: birth_year.get() as i32,
            date: birth_date,
        };
        let parent_email = match age_verdict(policy.jurisdiction(jurisdiction), birth, today) {
            AgeVerdict::Refused { minimum_age } => {
                tracing::info!("registration refused: below the minimum age");
                return Err(Error::BelowMinimumAge { minimum_age });
            }
            AgeVerdict::NeedsBirthDate => {
                return Err(Error::invalid(InvalidField::new(
                    "birth_date",
                    "is needed where you live, as your birth year alone cannot tell which \
                     age rule applies; it decides this once and is not kept",
                )));
            }
            AgeVerdict::NeedsParentalConsent { under } => {
                let parent = EmailAddress::parse(form.parent_email).map_err(|_| {
                    InvalidField::new(
                        "parent_email",
                        format!(
                            "where you live, members under {under} need a parent's consent: \
                             give a parent's email address and we will ask them"
                        ),
                    )
                })?;
                if parent.canonical() == email.canonical() {
                    return Err(Error::invalid(InvalidField::new(
                        "parent_email",
                        "must be a parent's address, not your own",
                    )));
                }
                Some(parent)
            }
            AgeVerdict::Admitted => None,
        };
        let password_hash = match &password {
            Some(password) => self.hasher.hash(password).await?,
            // No password can match an empty hash.
            None => String::new(),
        };
        let mut tx = self.store.begin().await?;
        if let Some((token, _)) = social
            && store::take_social_pending(&mut tx, &token_digest(token), now)
                .await?
                .is_none()
        {
            tx.rollback().await.context("rolling back a used link")?;
            return Err(Error::InvalidToken);
        }
        let user_id = store::insert_user(
            &self.store,
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
        store::set_residence(
            &mut tx,
            user_id,
            &store::NewResidence {
                country: residence.country(),
                us_state: residence.us_state(),
                jurisdiction: jurisdiction.as_str(),
                parent_consent_needed: parent_email.is_some(),
            },
        )
        .await?;
        if form.news {
            crate::news::News::record_in(
                &mut tx,
                user_id,
                true,
                crate::news::NewsMethod::Registration,
                policy.version(),
                now,
            )
            .await?;
        }
        let vouched = social.is_some_and(|(_, pending)| {
            pending.email_verified != 0 && pending.email.to_lowercase() == email.canonical()
        });
        if let Some((_, pending)) = social {
            store::insert_social_link(
                &self.store,
                &mut tx,
                &store::NewSocialLink {
                    user_id,
                    provider: &pending.provider,
                    subject: &pending.subject,
                    fields_received: &pending.fields_received,
                    policy_version: &pending.policy_version,
                    text_hash: &pending.text_hash,
                    authorized_at: pending.authorized_at,
                    now,
                },
            )
            .await?;
        }
        if vouched {
            store::mark_email_verified(&mut tx, user_id, now).await?;
        } else {
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
                    &self.store,
                    &mut tx,
                    &format!("verify-email:{user_id}:{}", &token_digest(&token)[..16]),
                    email.as_str(),
                    Some(user_id),
                    now,
                )
                .await?;
        }
        if let Some(parent) = &parent_email {
            self.ask_parent(&mut tx, user_id, username.as_str(), parent, now)
                .await?;
        }
        audit::record(
            &mut tx,
            &self.audit,
            Event::by_self(AuditKind::AccountRegistered, user_id),
        )
        .await?;
        tx.commit().await.context("committing a registration")?;
        if let Some((token, _)) = social {
            // The waiting row is gone: its key goes too, so no copy of it opens.
            self.store
                .destroy_row_keys(&[store::pending_key_subject(&token_digest(token))])
                .await?;
        }
        tracing::info!(
            user_id,
            awaiting_parent = parent_email.is_some(),
            "account registered"
        );
        Ok(Registered {
            user_id,
            awaiting_parent: parent_email.is_some(),
        })
    }

    /// Stores a request for a parent's consent and emails the parent a single-use link.
    async fn ask_parent(
        &self,
        tx: &mut store::Tx,
        user_id: i64,
        username: &str,
        parent: &EmailAddress,
        now: i64,
    ) -> Result<()> {
        let token = random_token();
        let digest = token_digest(&token);
        store::insert_parental_request(
            &self.store,
            tx,
            &store::NewParentalRequest {
                user_id,
                parent_email: parent.as_str(),
                token_hash: &digest,
                now,
                expires_at: now + PARENT_CONSENT_DAYS * 86_400,
            },
        )
        .await?;
        let link = format!("{}/parental-consent/{token}", self.config.base_url());
        Mail::parental_consent(&self.config.site_name, username, &link)
            .enqueue(
                &self.store,
                tx,
                &format!("parental-consent:{user_id}:{}", &digest[..16]),
                parent.as_str(),
                Some(user_id),
                now,
            )
            .await?;
        Ok(())
    }

    /// The minor's username behind a parent's link, to show on the consent page.
    pub async fn parental_request(&self, token: &str) -> Result<String> {
        Ok(self
            .store
            .parental_request(&token_digest(token), crate::now())
            .await?
            .ok_or(Error::InvalidToken)?
            .username)
    }

    /// Records a parent's consent from their link, with the policy version and the hash of the
    /// text shown; the minor's account can post from now on.
    pub async fn give_parental_consent(
        &self,
        token: &str,
        news_allowed: bool,
        policy: &Policy,
    ) -> Result<i64> {
        let digest = token_digest(token);
        let now = crate::now();
        let request = self
            .store
            .parental_request(&digest, now)
            .await?
            .ok_or(Error::InvalidToken)?;
        let mut shown = parent_consent_text(&self.config.site_name, &request.username);
        shown.push('\n');
        shown.push_str(PARENT_NEWS_TEXT);
        let mut tx = self.store.begin().await?;
        let user_id = store::give_parental_consent(
            &mut tx,
            &store::ParentalConsentGiven {
                token_hash: &digest,
                now,
                policy_version: policy.version(),
                text_hash: &crate::news::sha256_hex(&shown),
                news_allowed,
            },
        )
        .await?
        .ok_or(Error::InvalidToken)?;
        audit::record(
            &mut tx,
            &self.audit,
            Event::new(AuditKind::ParentalConsentGiven)
                .subject(Some(user_id))
                .detail(Detail::Method("email_link")),
        )
        .await?;
        tx.commit().await.context("committing a parent's consent")?;
        tracing::info!(user_id, "parental consent recorded");
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
        audit::record(
            &mut tx,
            &self.audit,
            Event::by_self(AuditKind::EmailVerified, user_id),
        )
        .await?;
        tx.commit()
            .await
            .context("committing an email verification")?;
        tracing::info!(user_id, "email address verified");
        Ok(user_id)
    }

    /// Checks credentials (username or email) and, when the account has 2-step verification, the
    /// authenticator or recovery code; then opens a session. A sign-in from a user agent the
    /// account has not used before is told to the member by email.
    pub async fn sign_in(
        &self,
        login: &str,
        password: &str,
        code: Option<&str>,
        origin: &Origin,
    ) -> Result<NewSessionToken> {
        let login = login.trim();
        // The limits name the login as typed (in the case lookups ignore) and the client, never
        // an account: a blocked unknown login is refused exactly like a blocked known one, and
        // before the password is checked, so a correct password waits too.
        let login_key = if login.contains('@') {
            login.to_lowercase()
        } else {
            login.to_ascii_lowercase()
        };
        let rules = self.limits.rules;
        let limit_keys = [
            (rules.sign_in_login, login_key.as_str()),
            (rules.client_failures, origin.ip.expose().as_str()),
        ];
        self.limits.check(&limit_keys).await?;
        let user = if login.contains('@') {
            self.store.user_by_email(&login.to_lowercase()).await?
        } else {
            self.store
                .user_by_username(&login.to_ascii_lowercase())
                .await?
        };
        // A closed account is kept for storage only: it signs in no more, and is refused
        // exactly like an unknown login.
        let user = user.filter(|u| u.closed_at.is_none());
        let stored = user.as_ref().map(|u| u.password_hash.as_str());
        if !self.hasher.verify(password, stored).await {
            tracing::info!("sign-in refused");
            self.record_failed_sign_in(user.as_ref().map(|u| u.id), "password")
                .await?;
            self.limits.failed(&limit_keys).await?;
            return Err(Error::BadCredentials);
        }
        let user = user.ok_or(Error::BadCredentials)?;
        let second_factor = self
            .store
            .two_factor_of(user.id)
            .await?
            .filter(|tf| tf.enabled_at.is_some());
        let code = code.map(str::trim).filter(|c| !c.is_empty());
        if second_factor.is_some() && code.is_none() {
            return Err(Error::SecondFactorRequired);
        }
        let now = crate::now();
        let token = random_token();
        let csrf_token = random_token();
        let mut tx = self.store.begin().await?;
        let mut method = "password";
        if let (Some(second_factor), Some(code)) = (&second_factor, code) {
            match self
                .use_second_factor(&mut tx, user.id, &second_factor.stored_secret, code, now)
                .await?
            {
                Some(used) => method = used,
                None => {
                    tx.rollback()
                        .await
                        .context("rolling back a refused sign-in")?;
                    tracing::info!(user_id = user.id, "sign-in refused: second factor");
                    self.record_failed_sign_in(Some(user.id), "second_factor")
                        .await?;
                    self.limits.failed(&limit_keys).await?;
                    return Err(Error::InvalidSecondFactor);
                }
            }
        }
        let session = self
            .open_session_in(&mut tx, &user, origin, method, token, csrf_token, now)
            .await?;
        tx.commit().await.context("committing a sign-in")?;
        self.limits
            .succeeded(rules.sign_in_login, &login_key)
            .await?;
        tracing::info!(user_id = user.id, "signed in");
        Ok(session)
    }

    /// Opens a session for a member who proved who they are (by `method`) in `tx`: records the
    /// sign-in, tells the member about a device not seen before, audits it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn open_session_in(
        &self,
        tx: &mut store::Tx,
        user: &store::UserRow,
        origin: &Origin,
        method: &'static str,
        token: String,
        csrf_token: String,
        now: i64,
    ) -> Result<NewSessionToken> {
        let max_age_seconds = self.config.session.max_age_days * 86_400;
        let token_hash = token_digest(&token);
        let (n_before, n_same_device) =
            store::sign_ins_from(&self.store, tx, user.id, origin.user_agent.expose()).await?;
        if n_before > 0 && n_same_device == 0 {
            Mail::new_device_sign_in(
                &self.config.site_name,
                &user.username,
                origin.user_agent.expose(),
                &crate::web::pages::date(now),
                &format!("{}/account/security", self.config.base_url()),
            )
            .enqueue(
                &self.store,
                tx,
                &format!("new-device:{}:{}", user.id, session_handle(&token_hash)),
                &user.email,
                Some(user.id),
                now,
            )
            .await?;
        }
        store::insert_session(
            &self.store,
            tx,
            &NewSession {
                token_hash: &token_hash,
                user_id: user.id,
                csrf_token: &csrf_token,
                now,
                expires_at: now + max_age_seconds,
                ip: origin.ip.expose(),
                user_agent: origin.user_agent.expose(),
            },
        )
        .await?;
        audit::record(
            tx,
            &self.audit,
            Event::by_self(AuditKind::SignedIn, user.id)
                .detail(Detail::Session(session_handle(&token_hash)))
                .detail(Detail::Method(method)),
        )
        .await?;
        Ok(NewSessionToken {
            token,
            csrf_token,
            user_id: user.id,
            max_age_seconds,
        })
    }

    /// Checks an authenticator code (each time step once) or a recovery code (each code once)
    /// inside `tx`; returns how the member proved it, or `None` when the code is refused.
    async fn use_second_factor(
        &self,
        tx: &mut store::Tx,
        user_id: i64,
        stored_secret: &str,
        code: &str,
        now: i64,
    ) -> Result<Option<&'static str>> {
        if two_factor::looks_like_recovery_code(code) {
            let digest = two_factor::recovery_code_digest(code);
            if store::use_recovery_code(tx, user_id, &digest, now).await? {
                audit::record(
                    tx,
                    &self.audit,
                    Event::by_self(AuditKind::RecoveryCodeUsed, user_id),
                )
                .await?;
                return Ok(Some("recovery_code"));
            }
            return Ok(None);
        }
        // A secret that does not open (sealed for another member, or under another key file)
        // verifies no code.
        let secret = match self.seal.open(user_id, stored_secret) {
            Ok(secret) => secret,
            Err(error) => {
                tracing::warn!(user_id, %error, "a 2-step secret does not open");
                return Ok(None);
            }
        };
        match two_factor::matching_step(&secret, code, now)? {
            Some(step) if store::use_totp_step(tx, user_id, step).await? => Ok(Some("totp")),
            _ => Ok(None),
        }
    }

    /// The secret and setup key for turning on 2-step verification; the same pending secret is
    /// shown until it is confirmed with a code.
    pub async fn two_factor_setup(&self, user_id: i64, username: &str) -> Result<TwoFactorSetup> {
        if let Some(existing) = self.store.two_factor_of(user_id).await?
            && existing.enabled_at.is_some()
        {
            return Err(Error::Conflict {
                field: "2-step verification",
            });
        }
        let sealed = self.seal.seal(user_id, &two_factor::new_secret());
        self.store
            .insert_pending_two_factor(user_id, &sealed, crate::now())
            .await?;
        let stored = self
            .store
            .two_factor_of(user_id)
            .await?
            .context("a pending 2-step secret vanished")?
            .stored_secret;
        let secret = self.seal.open(user_id, &stored)?;
        let uri = two_factor::otpauth_uri(&secret, username, &self.config.site_name)?;
        Ok(TwoFactorSetup {
            qr_svg: two_factor::qr_svg(&uri),
            uri,
            secret,
        })
    }

    /// Turns 2-step verification on once the member typed a code from the pending secret;
    /// returns the ten recovery codes, shown once and stored only as digests.
    pub async fn enable_two_factor(&self, user_id: i64, code: &str) -> Result<Vec<String>> {
        let member = user_id.to_string();
        let limit_keys = [(self.limits.rules.two_factor_member, member.as_str())];
        self.limits.check(&limit_keys).await?;
        let pending = self
            .store
            .two_factor_of(user_id)
            .await?
            .filter(|tf| tf.enabled_at.is_none())
            .ok_or(Error::NotFound("pending 2-step verification"))?;
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(Error::NotFound("member"))?;
        let now = crate::now();
        let mut tx = self.store.begin().await?;
        let secret = self.seal.open(user_id, &pending.stored_secret)?;
        let step_ok = match two_factor::matching_step(&secret, code, now)? {
            Some(step) => store::use_totp_step(&mut tx, user_id, step).await?,
            None => false,
        };
        if !step_ok {
            tx.rollback().await.context("rolling back a refused code")?;
            self.limits.failed(&limit_keys).await?;
            return Err(Error::InvalidSecondFactor);
        }
        if !store::enable_two_factor(&mut tx, user_id, now).await? {
            tx.rollback()
                .await
                .context("rolling back a second enrolment")?;
            return Err(Error::Conflict {
                field: "2-step verification",
            });
        }
        let codes = two_factor::new_recovery_codes();
        let digests: Vec<String> = codes
            .iter()
            .map(|c| two_factor::recovery_code_digest(c))
            .collect();
        store::replace_recovery_codes(&mut tx, user_id, &digests, now).await?;
        audit::record(
            &mut tx,
            &self.audit,
            Event::by_self(AuditKind::TwoFactorEnabled, user_id).detail(Detail::Method("totp")),
        )
        .await?;
        self.two_factor_notice(&mut tx, &user, true, now).await?;
        tx.commit()
            .await
            .context("committing 2-step verification")?;
        tracing::info!(user_id, "2-step verification turned on");
        Ok(codes)
    }

    /// Turns 2-step verification off; the member proves it with a current code or a recovery
    /// code.
    pub async fn disable_two_factor(&self, user_id: i64, code: &str) -> Result<()> {
        let member = user_id.to_string();
        let limit_keys = [(self.limits.rules.two_factor_member, member.as_str())];
        self.limits.check(&limit_keys).await?;
        let enabled = self
            .store
            .two_factor_of(user_id)
            .await?
            .filter(|tf| tf.enabled_at.is_some())
            .ok_or(Error::NotFound("2-step verification"))?;
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(Error::NotFound("member"))?;
        let now = crate::now();
        let mut tx = self.store.begin().await?;
        let Some(method) = self
            .use_second_factor(&mut tx, user_id, &enabled.stored_secret, code, now)
            .await?
        else {
            tx.rollback().await.context("rolling back a refused code")?;
            self.limits.failed(&limit_keys).await?;
            return Err(Error::InvalidSecondFactor);
        };
        store::delete_two_factor(&mut tx, user_id).await?;
        audit::record(
            &mut tx,
            &self.audit,
            Event::by_self(AuditKind::TwoFactorDisabled, user_id).detail(Detail::Method(method)),
        )
        .await?;
        self.two_factor_notice(&mut tx, &user, false, now).await?;
        tx.commit()
            .await
            .context("committing 2-step verification off")?;
        tracing::info!(user_id, "2-step verification turned off");
        Ok(())
    }

    async fn two_factor_notice(
        &self,
        tx: &mut store::Tx,
        user: &store::UserRow,
        enabled: bool,
        now: i64,
    ) -> Result<()> {
        let state = if enabled { "on" } else { "off" };
        Mail::two_factor_changed(
            &self.config.site_name,
            &user.username,
            enabled,
            &format!("{}/account/security", self.config.base_url()),
        )
        .enqueue(
            &self.store,
            tx,
            &format!("two-factor-{state}:{}:{now}", user.id),
            &user.email,
            Some(user.id),
            now,
        )
        .await?;
        Ok(())
    }

    /// Changes the password from the security page (the current one is asked again), ends every
    /// other session and emails a notice.
    pub async fn change_password(
        &self,
        user_id: i64,
        current_token: &str,
        current_password: &str,
        new_password: &str,
    ) -> Result<()> {
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(Error::NotFound("member"))?;
        if !self
            .hasher
            .verify(current_password, Some(&user.password_hash))
            .await
        {
            return Err(Error::invalid(crate::domain::InvalidField::new(
                "current_password",
                "is not your current password",
            )));
        }
        let password = Password::parse(new_password, &[&user.username])?;
        let hash = self.hasher.hash(&password).await?;
        let now = crate::now();
        let mut tx = self.store.begin().await?;
        store::set_password_hash(&mut tx, user_id, &hash, now).await?;
        let ended =
            store::delete_other_sessions(&mut tx, user_id, &token_digest(current_token)).await?;
        audit::record(
            &mut tx,
            &self.audit,
            Event::by_self(AuditKind::PasswordChanged, user_id)
                .detail(Detail::Count(ended.len() as i64)),
        )
        .await?;
        self.password_notice(&mut tx, &user, now).await?;
        tx.commit().await.context("committing a password change")?;
        tracing::info!(user_id, "password changed");
        Ok(())
    }

    async fn password_notice(
        &self,
        tx: &mut store::Tx,
        user: &store::UserRow,
        now: i64,
    ) -> Result<()> {
        Mail::password_changed(
            &self.config.site_name,
            &user.username,
            &format!("{}/account/security", self.config.base_url()),
        )
        .enqueue(
            &self.store,
            tx,
            &format!("password-changed:{}:{now}", user.id),
            &user.email,
            Some(user.id),
            now,
        )
        .await?;
        Ok(())
    }

    /// Asks to change the member's address (issue 8): the member proves it again (the current
    /// password; a 2-step code for an account without one; a social-only account without
    /// 2-step verification relies on its recent provider sign-in), then a single-use link goes
    /// to the new address and a notice to the current one. The answer is the same whether or
    /// not the new address belongs to another account (whose owner is told instead, and no link
    /// is made). Limited per member, per new address and per client, like reset emails.
    pub async fn request_email_change(
        &self,
        user_id: i64,
        new_email: &str,
        password: &str,
        code: &str,
        client_ip: &str,
    ) -> Result<()> {
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .filter(|u| u.closed_at.is_none())
            .ok_or(Error::NotFound("member"))?;
        let email = EmailAddress::parse(new_email)?;
        if email.canonical() == user.email.to_lowercase() {
            return Err(Error::invalid(InvalidField::new(
                "email",
                "is already your address",
            )));
        }
        self.prove_again(&user, password, code, client_ip).await?;
        let rules = self.limits.rules;
        let member = user_id.to_string();
        self.limits
            .attempt(&[
                (rules.email_changes_per_member, member.as_str()),
                (rules.resets_per_client, client_ip),
            ])
            .await?;
        self.limits
            .attempt(&[(rules.resets_per_address, email.canonical().as_str())])
            .await?;
        // The owner of the address, when it is another account's: told at the address as
        // they keep it.
        let owner = self
            .store
            .user_by_email(&email.canonical())
            .await?
            .filter(|other| other.id != user_id);
        let now = crate::now();
        let token = random_token();
        let digest = token_digest(&token);
        let mut tx = self.store.begin().await?;
        // Only the newest link works: earlier ones named another address, or the same.
        store::delete_unused_account_tokens(&mut tx, user_id, [CHANGE_EMAIL, CHANGE_EMAIL]).await?;
        if let Some(owner) = owner {
            let link = format!("{}/password-reset", self.config.base_url());
            Mail::email_change_address_taken(&self.config.site_name, &link)
                .enqueue(
                    &self.store,
                    &mut tx,
                    &format!("email-taken:{}:{}", owner.id, &digest[..16]),
                    &owner.email,
                    Some(owner.id),
                    now,
                )
                .await?;
        } else {
            store::insert_email_change_token(
                &self.store,
                &mut tx,
                &digest,
                user_id,
                CHANGE_EMAIL,
                email.as_str(),
                now,
                now + CHANGE_EMAIL_HOURS * 3600,
            )
            .await?;
            let link = format!("{}/email-change/{token}", self.config.base_url());
            Mail::email_change_confirm(
                &self.config.site_name,
                &user.username,
                CHANGE_EMAIL_HOURS,
                &link,
            )
            .enqueue(
                &self.store,
                &mut tx,
                &format!("email-change:{user_id}:{}", &digest[..16]),
                email.as_str(),
                Some(user_id),
                now,
            )
            .await?;
        }
        Mail::email_change_requested(
            &self.config.site_name,
            &user.username,
            &Mail::masked_address(email.as_str()),
            &format!("{}/account/security", self.config.base_url()),
        )
        .enqueue(
            &self.store,
            &mut tx,
            &format!("email-change-asked:{user_id}:{}", &digest[..16]),
            &user.email,
            Some(user_id),
            now,
        )
        .await?;
        tx.commit()
            .await
            .context("committing an email change request")?;
        tracing::info!(user_id, "email change asked");
        Ok(())
    }

    /// The member's proof for an account change beyond the recent sign-in: the current password
    /// when the account has one, else a 2-step code when it is on. Wrong answers count towards
    /// the sign-in limits, as at the password form.
    async fn prove_again(
        &self,
        user: &store::UserRow,
        password: &str,
        code: &str,
        client_ip: &str,
    ) -> Result<()> {
        let rules = self.limits.rules;
        let login_key = user.username.to_ascii_lowercase();
        let limit_keys = [
            (rules.sign_in_login, login_key.as_str()),
            (rules.client_failures, client_ip),
        ];
        self.limits.check(&limit_keys).await?;
        if !user.password_hash.is_empty() {
            if self
                .hasher
                .verify(password, Some(&user.password_hash))
                .await
            {
                return Ok(());
            }
            self.record_failed_sign_in(Some(user.id), "reauthentication")
                .await?;
            self.limits.failed(&limit_keys).await?;
            return Err(Error::invalid(InvalidField::new(
                "current_password",
                "is not your current password",
            )));
        }
        let Some(second_factor) = self
            .store
            .two_factor_of(user.id)
            .await?
            .filter(|tf| tf.enabled_at.is_some())
        else {
            // A social-only account: its recent sign-in through the provider is the proof.
            return Ok(());
        };
        let now = crate::now();
        let mut tx = self.store.begin().await?;
        if self
            .use_second_factor(&mut tx, user.id, &second_factor.stored_secret, code, now)
            .await?
            .is_some()
        {
            tx.commit().await.context("committing a used code")?;
            return Ok(());
        }
        tx.rollback().await.context("rolling back a refused code")?;
        self.record_failed_sign_in(Some(user.id), "reauthentication")
            .await?;
        self.limits.failed(&limit_keys).await?;
        Err(Error::invalid(InvalidField::new(
            "code",
            Error::InvalidSecondFactor.to_string(),
        )))
    }

    /// Whether an email-change link would be accepted now, without using it.
    pub async fn email_change_token_is_valid(&self, token: &str) -> Result<bool> {
        Ok(self
            .store
            .account_token_is_valid(&token_digest(token), CHANGE_EMAIL, crate::now())
            .await?)
    }

    /// Applies an email change from the link mailed to the new address: the address (sealed,
    /// and its keyed hash) is replaced and counts as verified, links still out to the old
    /// address stop working, the change is audited as a rectification with value classes only,
    /// and the old address is told. A link that is unknown, used, expired, or whose address was
    /// taken by another account since, changes nothing and is refused the same way.
    pub async fn confirm_email_change(&self, token: &str) -> Result<i64> {
        let now = crate::now();
        let mut tx = self.store.begin().await?;
        let Some((user_id, new_email)) = store::consume_email_change_token(
            &self.store,
            &mut tx,
            &token_digest(token),
            CHANGE_EMAIL,
            now,
        )
        .await?
        else {
            tx.rollback().await.context("rolling back a refused link")?;
            return Err(Error::InvalidToken);
        };
        let user = store::user_by_id_in(&self.store, &mut tx, user_id)
            .await?
            .filter(|u| u.closed_at.is_none());
        let (Some(user), Ok(email)) = (user, EmailAddress::parse(&new_email)) else {
            tx.rollback().await.context("rolling back a refused link")?;
            return Err(Error::InvalidToken);
        };
        let taken = self
            .store
            .user_by_email(&email.canonical())
            .await?
            .is_some_and(|other| other.id != user_id);
        if taken {
            tx.rollback()
                .await
                .context("rolling back a taken address")?;
            return Err(Error::InvalidToken);
        }
        match store::set_user_email(
            &self.store,
            &mut tx,
            user_id,
            email.as_str(),
            &email.canonical(),
            now,
        )
        .await
        {
            Ok(()) => {}
            Err(error) if error.downcast_ref::<store::Duplicate>().is_some() => {
                tx.rollback()
                    .await
                    .context("rolling back a taken address")?;
                return Err(Error::InvalidToken);
            }
            Err(error) => return Err(error.into()),
        }
        store::delete_unused_account_tokens(&mut tx, user_id, [CHANGE_EMAIL, RESET_PASSWORD])
            .await?;
        audit::record(
            &mut tx,
            &self.audit,
            Event::by_self(AuditKind::DataRectified, user_id)
                .detail(Detail::Field("email"))
                .detail(Detail::Method("email_link"))
                .detail(Detail::Before(crate::fulfilment::value_class(&user.email)))
                .detail(Detail::After(crate::fulfilment::value_class(
                    email.as_str(),
                ))),
        )
        .await?;
        let contact = self
            .config
            .security_contact()
            .map(|c| c.strip_prefix("mailto:").unwrap_or(&c).to_string());
        Mail::email_changed(
            &self.config.site_name,
            &user.username,
            &Mail::masked_address(email.as_str()),
            &format!("{}/account/security", self.config.base_url()),
            contact.as_deref(),
        )
        .enqueue(
            &self.store,
            &mut tx,
            &format!("email-changed:{user_id}:{now}"),
            &user.email,
            Some(user_id),
            now,
        )
        .await?;
        tx.commit().await.context("committing an email change")?;
        tracing::info!(user_id, "email address changed");
        Ok(user_id)
    }

    /// Ends one of the member's sessions, named by its handle.
    pub async fn revoke_session(&self, user_id: i64, handle: &str) -> Result<()> {
        let mut tx = self.store.begin().await?;
        let Some(ended) = store::delete_session_by_handle(&mut tx, user_id, handle).await? else {
            tx.rollback().await.context("rolling back a revocation")?;
            return Err(Error::NotFound("session"));
        };
        audit::record(
            &mut tx,
            &self.audit,
            Event::by_self(AuditKind::SessionRevoked, user_id)
                .detail(Detail::Session(session_handle(&ended))),
        )
        .await?;
        tx.commit().await.context("committing a revocation")?;
        Ok(())
    }

    /// Ends every session of the member but the current one; returns how many ended.
    pub async fn revoke_other_sessions(&self, user_id: i64, current_token: &str) -> Result<usize> {
        let mut tx = self.store.begin().await?;
        let ended =
            store::delete_other_sessions(&mut tx, user_id, &token_digest(current_token)).await?;
        for hash in &ended {
            audit::record(
                &mut tx,
                &self.audit,
                Event::by_self(AuditKind::SessionRevoked, user_id)
                    .detail(Detail::Session(session_handle(hash))),
            )
            .await?;
        }
        tx.commit().await.context("committing revocations")?;
        Ok(ended.len())
    }

    /// A refused sign-in, recorded with the account only when one matched the login.
    async fn record_failed_sign_in(
        &self,
        user_id: Option<i64>,
        reason: &'static str,
    ) -> Result<()> {
        let event = Event::new(AuditKind::SignInFailed)
            .subject(user_id)
            .detail(Detail::Reason(reason));
        audit::record_alone(&self.store, &self.audit, event).await?;
        Ok(())
    }

    /// Whether this session's sign-in (or last password re-entry) is recent enough for a
    /// sensitive account action ("sudo mode", ASVS 3.3.2): younger than
    /// `session.reauthenticate_after_hours`. Ordinary browsing never asks; the session itself
    /// lasts `session.max_age_days`.
    pub fn require_recent_sign_in(&self, user: &store::SessionUser) -> Result<()> {
        let fresh_for = self.config.session.reauthenticate_after_hours * 3600;
        if crate::now() - user.authenticated_at < fresh_for {
            Ok(())
        } else {
            Err(Error::ReauthenticationRequired)
        }
    }

    /// The member enters the password again on this session: the session counts as freshly
    /// signed in for sensitive actions. Wrong passwords count towards the sign-in limits of
    /// the member's login and of the client, as at the sign-in form.
    pub async fn confirm_password(
        &self,
        user_id: i64,
        token: &str,
        password: &str,
        origin: &Origin,
    ) -> Result<()> {
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(Error::Unauthenticated)?;
        let rules = self.limits.rules;
        let login_key = user.username.to_ascii_lowercase();
        let limit_keys = [
            (rules.sign_in_login, login_key.as_str()),
            (rules.client_failures, origin.ip.expose().as_str()),
        ];
        self.limits.check(&limit_keys).await?;
        if !self
            .hasher
            .verify(password, Some(&user.password_hash))
            .await
        {
            self.record_failed_sign_in(Some(user.id), "reauthentication")
                .await?;
            self.limits.failed(&limit_keys).await?;
            return Err(Error::invalid(InvalidField::new(
                "password",
                "is not your current password",
            )));
        }
        let token_hash = token_digest(token);
        let mut tx = self.store.begin().await?;
        if !store::mark_session_authenticated(&mut tx, &token_hash, user.id, crate::now()).await? {
            return Err(Error::Unauthenticated);
        }
        audit::record(
            &mut tx,
            &self.audit,
            Event::by_self(AuditKind::SignedIn, user.id)
                .detail(Detail::Reason("reauthenticated"))
                .detail(Detail::Session(session_handle(&token_hash))),
        )
        .await?;
        tx.commit()
            .await
            .context("committing a password confirmation")?;
        Ok(())
    }

    pub async fn sign_out(&self, token: &str) -> Result<()> {
        let token_hash = token_digest(token);
        let mut tx = self.store.begin().await?;
        if let Some(user_id) = store::delete_session(&mut tx, &token_hash).await? {
            audit::record(
                &mut tx,
                &self.audit,
                Event::by_self(AuditKind::SignedOut, user_id)
                    .detail(Detail::Session(session_handle(&token_hash))),
            )
            .await?;
        }
        tx.commit().await.context("committing a sign-out")?;
        Ok(())
    }

    /// Sends a reset link if the address has an account; says nothing either way. Limited per
    /// address typed and per client, account or not, so a refusal says nothing either.
    pub async fn request_password_reset(&self, email: &str, client_ip: &str) -> Result<()> {
        let email = EmailAddress::parse(email)?;
        let rules = self.limits.rules;
        self.limits
            .attempt(&[(rules.resets_per_client, client_ip)])
            .await?;
        self.limits
            .attempt(&[(rules.resets_per_address, email.canonical().as_str())])
            .await?;
        let user = self.store.user_by_email(&email.canonical()).await?;
        let Some(user) = user.filter(|u| u.closed_at.is_none()) else {
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
                &self.store,
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
        let password = Password::parse(new_password, &[])?;
        let hash = self.hasher.hash(&password).await?;
        let now = crate::now();
        let mut tx = self.store.begin().await?;
        let user_id =
            store::consume_account_token(&mut tx, &token_digest(token), RESET_PASSWORD, now)
                .await?
                .ok_or(Error::InvalidToken)?;
        store::set_password_hash(&mut tx, user_id, &hash, now).await?;
        // Following the link proves the address, as verification would.
        store::mark_email_verified(&mut tx, user_id, now).await?;
        store::delete_sessions_of_user(&mut tx, user_id).await?;
        if let Some(user) = self.store.user_by_id(user_id).await? {
            self.password_notice(&mut tx, &user, now).await?;
        }
        audit::record(
            &mut tx,
            &self.audit,
            Event::by_self(AuditKind::PasswordReset, user_id).detail(Detail::Method("email_link")),
        )
        .await?;
        tx.commit().await.context("committing a password reset")?;
        tracing::info!(user_id, "password reset");
        Ok(user_id)
    }

    /// Gives a member a role (the operator's `covenant user set-role`), audited with the role
    /// before and after.
    pub async fn set_role(&self, user_id: i64, role: crate::domain::Role) -> Result<()> {
        let mut tx = self.store.begin().await?;
        let previous = store::set_user_role(&mut tx, user_id, role.as_str())
            .await?
            .ok_or(Error::NotFound("member"))?;
        let mut event = Event::new(AuditKind::RoleChanged)
            .subject(Some(user_id))
            .detail(Detail::Role(role));
        if let Some(previous) = crate::domain::Role::parse(&previous) {
            event = event.detail(Detail::PreviousRole(previous));
        }
        audit::record(&mut tx, &self.audit, event).await?;
        tx.commit().await.context("committing a role change")?;
        tracing::info!(user_id, role = role.as_str(), "role changed");
        Ok(())
    }

    pub async fn reset_token_is_valid(&self, token: &str) -> Result<bool> {
        Ok(self
            .store
            .account_token_is_valid(&token_digest(token), RESET_PASSWORD, crate::now())
            .await?)
    }
}
